"""The locomotion preset: its settings, animals and trials, a fly walking on a ball seen as
ball velocities and ROI traces.

Behaviour is low-dimensional: the forward, lateral and turning velocity of the ball at 100 Hz
(a `"vector"` behaviour with named dimensions, `BEHAVIOUR_NAMES`), driven by a semi-Markov
sequence of four actions (`CLASS_NAMES`): stand, forward, turn_left, turn_right. Each action
sets target velocities (forward walking ~9 mm/s, turns ~±120 deg/s at a slower forward speed
with a sideways slip); within a bout the speed varies slowly, velocity noise is added, and a
first-order low-pass filter (the ball's and the fly's inertia) makes every change smooth.
Animals differ a little in behaviour: their typical speed, a constant turning bias and their
velocity noise.

Neural activity is ROI traces `[T_n, R]` at ~16 Hz, and differs a lot between animals. Each
animal has its own population of cells, drawn from cell types shared by all animals (tuned to
forward speed, to turning left or right, to standing still, to sideways slip, or to nothing);
spikes go through the real GCaMP kernel with the animal's own indicator kinetics (GCaMP6s or
6f, time-stretched by an animal factor). The animal's R ROIs (a number of its own, 15-40 by
default) each mix one dominant cell with some contamination from other cells and the neuropil,
in an animal-specific assignment; each ROI has its own gain and baseline and the animal its
own noise level. An ROI index therefore means a different cell in every animal: a linear
probe trained on some animals does not transfer to another, while within an animal the
traces tell the actions apart.

The bouts come from the shared sampler (`nar.simulation.actions.sample_bout_chain`) and the
dataset from the shared loop (`nar.simulation.dataset.simulate_animals`), so randomness
follows `nar.simulation.dataset`: an animal does not depend on how many animals are
simulated, nor a trial on how many trials.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import signal

from nar.data import recording as recording_lib
from nar.simulation import actions
from nar.simulation import dataset as dataset_lib
from nar.simulation import imaging
from nar.simulation import neurons
from nar.simulation import pose as pose_lib

CLASS_NAMES = ("stand", "forward", "turn_left", "turn_right")
STAND, FORWARD, TURN_LEFT, TURN_RIGHT = range(len(CLASS_NAMES))
BEHAVIOUR_NAMES = ("forward_velocity", "lateral_velocity", "turning_velocity")
BEHAVIOUR_UNITS = ("mm/s", "mm/s", "deg/s")
# What a cell can be tuned to (`velocity_features`).
FEATURE_NAMES = ("forward_speed", "turn_left", "turn_right", "stillness", "lateral_slip")


@dataclasses.dataclass(frozen=True)
class LocomotionCellType:
  """A cell type of the locomotion preset: prevalence and drive per `FEATURE_NAMES` unit."""

  name: str
  prevalence: float
  tuning: tuple[float, ...]


def _tuning(**drives) -> tuple[float, ...]:
  return tuple(float(drives.get(name, 0.0)) for name in FEATURE_NAMES)


CELL_TYPES = (
    LocomotionCellType("forward", 0.25, _tuning(forward_speed=1.0)),
    LocomotionCellType("turn_left", 0.15, _tuning(turn_left=1.0, forward_speed=0.2)),
    LocomotionCellType("turn_right", 0.15, _tuning(turn_right=1.0, forward_speed=0.2)),
    LocomotionCellType("stand", 0.15, _tuning(stillness=0.8)),
    LocomotionCellType("lateral", 0.10, _tuning(lateral_slip=0.8)),
    LocomotionCellType("untuned", 0.20, _tuning()),
)
CELL_TYPE_NAMES = tuple(t.name for t in CELL_TYPES)


@dataclasses.dataclass(frozen=True)
class LocomotionConfig:
  """Settings of the locomotion preset.

  Dataset size and rates:
    num_animals, trials_per_animal, trial_seconds: as in `SimulatorConfig`.
    fps_behaviour: ball velocity frame rate (exact), Hz.
    fps_neural: nominal two-photon frame rate, Hz; each trial deviates (`neural_fps_std`)
      and its frame intervals jitter (`frame_interval_jitter`), as in `SimulatorConfig`.
    genotype: genotype written in the animal ids (`<date>_<genotype>_Fly<N>`).

  Actions (semi-Markov; no self-transitions):
    mean_bout_seconds: mean bout duration of stand, forward, turn_left, turn_right.
    bout_log_std: log-normal sigma of the bout durations.
    max_bout_seconds: bouts are truncated to this duration.
    transition: `[4][4]` probability of the next action (columns) after each (rows).
    inertia_seconds: time constant of the low-pass filter of the velocities.
    unlabelled_bout_fraction: probability that a bout is left unannotated (its frames
      labelled `UNLABELLED`; the behaviour and neural activity are simulated all the same),
      as annotators skip bouts they are unsure of.

  Behaviour:
    forward_speed_mm_s: forward speed of a forward bout.
    turn_forward_speed_mm_s: forward speed during a turn.
    turning_speed_deg_s: turning speed of a turn bout.
    lateral_slip_mm_s: sideways slip during a turn (towards the outside of the turn).
    bout_speed_std: log-normal sigma of a bout's own speed.
    velocity_noise: std of the slow velocity fluctuations (forward mm/s, lateral mm/s,
      turning deg/s) while moving; a tenth of it while standing.
    velocity_noise_seconds: their time scale.

  Behaviour differences between animals (small; 0 removes them):
    speed_scale_std: log-normal sigma of the animal's typical speed.
    turning_bias_deg_s: std of the animal's constant turning bias while moving.
    noise_scale_std: log-normal sigma of the animal's velocity noise.

  Neural differences between animals (large):
    min_rois, max_rois: range of the animal's ROI count R (uniform).
    cells_per_roi: cells of the animal's population per ROI (the rest are not imaged
      alone, but contaminate the ROIs).
    composition_spread: how much an animal's mix of cell types departs from the shared
      prevalence: its type frequencies are drawn from Dirichlet(prevalence /
      composition_spread); 0 gives every animal the shared prevalence.
    contamination: weight of the other cells mixed into an ROI, relative to its own cell.
    neuropil: weight of the population mean mixed into every ROI.
    gain_std, baseline_std: log-normal sigma of the cells' gains and baselines.
    animal_gain_std: log-normal sigma of the animal's overall ΔF/F scale (expression level,
      baseline estimation).
    roi_gain_std: log-normal sigma of the ROIs' gains (indicator expression).
    roi_offset_std: std of the ROIs' baseline offsets (ΔF/F).
    roi_noise_std: mean std of the ROIs' ΔF/F noise; `roi_noise_spread` is the log-normal
      sigma of the animal's noise level.
    kinetics_std: log-normal sigma of the animal's time-stretch of the indicator kernel.
    indicators: the kernels an animal's indicator is drawn from, uniformly over the tuple (a
      kernel listed twice is drawn twice as often); GCaMP6f by default: the slow GCaMP6s
      smears short bouts over several seconds.
    rate_noise_std: std of each cell's private, slow drive noise.
    dff_baseline_percentile: if set, each ROI's trace has this percentile of its trial
      subtracted, as ΔF/F pipelines take a low percentile of a trial as an ROI's baseline;
      None leaves the offsets of `roi_offset_std` in place.
    locomotion_drive: drive added to every cell of every animal per unit of locomotion
      (1 minus the `stillness` feature: ~0 standing, ~1 moving), with the same sign in every
      animal, as a brain-wide walking state lifts most cells; 0 (the default) adds none.
    roi_noise_seconds: time scale of the ROIs' ΔF/F noise (an Ornstein-Uhlenbeck process of
      std `roi_noise_std`), as motion, focus and unresolved neuropil make slow errors that a
      window's time average does not remove; 0 (the default) draws it white, per frame.
    roi_drift_std, roi_drift_seconds: log-std and time scale of a slow drift of every ROI's
      gain within a trial (an Ornstein-Uhlenbeck process), as bleaching, focus and
      z-drift change an ROI's brightness over minutes; 0 (the default) adds none.
  """

  num_animals: int = 8
  trials_per_animal: int = 4
  trial_seconds: float = 60.0
  fps_behaviour: float = 100.0
  fps_neural: float = 16.0
  neural_fps_std: float = 0.02
  frame_interval_jitter: float = 0.02
  genotype: str = "SimBall"

  mean_bout_seconds: tuple[float, ...] = (3.0, 3.0, 1.5, 1.5)
  bout_log_std: float = 0.5
  max_bout_seconds: float = 10.0
  transition: tuple[tuple[float, ...], ...] = (
      (0.0, 0.6, 0.2, 0.2),
      (0.3, 0.0, 0.35, 0.35),
      (0.25, 0.6, 0.0, 0.15),
      (0.25, 0.6, 0.15, 0.0),
  )
  inertia_seconds: float = 0.12
  unlabelled_bout_fraction: float = 0.0

  forward_speed_mm_s: float = 9.0
  turn_forward_speed_mm_s: float = 3.0
  turning_speed_deg_s: float = 120.0
  lateral_slip_mm_s: float = 1.5
  bout_speed_std: float = 0.15
  velocity_noise: tuple[float, float, float] = (0.8, 0.4, 12.0)
  velocity_noise_seconds: float = 0.3

  speed_scale_std: float = 0.1
  turning_bias_deg_s: float = 8.0
  noise_scale_std: float = 0.2

  min_rois: int = 15
  max_rois: int = 40
  cells_per_roi: float = 1.5
  composition_spread: float = 0.5
  contamination: float = 0.3
  neuropil: float = 0.2
  gain_std: float = 0.4
  baseline_std: float = 0.5
  animal_gain_std: float = 0.5
  roi_gain_std: float = 0.4
  roi_offset_std: float = 0.3
  roi_noise_std: float = 0.1
  roi_noise_spread: float = 0.3
  kinetics_std: float = 0.3
  indicators: tuple[str, ...] = ("gcamp6f",)
  rate_noise_std: float = 0.15
  dff_baseline_percentile: float | None = None
  locomotion_drive: float = 0.0
  roi_noise_seconds: float = 0.0
  roi_drift_std: float = 0.0
  roi_drift_seconds: float = 60.0

  def __post_init__(self):
    problems = []
    for name in ("num_animals", "trials_per_animal", "min_rois"):
      if int(getattr(self, name)) < 1:
        problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.max_rois < self.min_rois:
      problems.append(f"max_rois ({self.max_rois}) < min_rois ({self.min_rois})")
    for name in ("trial_seconds", "fps_behaviour", "fps_neural", "max_bout_seconds",
                 "inertia_seconds", "velocity_noise_seconds", "forward_speed_mm_s",
                 "turning_speed_deg_s"):
      if not getattr(self, name) > 0:
        problems.append(f"{name} must be > 0, got {getattr(self, name)}")
    if self.dff_baseline_percentile is not None and not (
        0.0 <= self.dff_baseline_percentile <= 100.0):
      problems.append(f"dff_baseline_percentile must lie in [0, 100], got "
                      f"{self.dff_baseline_percentile}")
    if not 0.0 <= self.unlabelled_bout_fraction < 1.0:
      problems.append(f"unlabelled_bout_fraction must lie in [0, 1), got "
                      f"{self.unlabelled_bout_fraction}")
    if self.cells_per_roi < 1:
      problems.append(f"cells_per_roi must be >= 1, got {self.cells_per_roi}")
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if field.name.endswith(("_std", "_jitter", "contamination", "neuropil", "_spread",
                              "_mm_s", "_seconds", "_drive")) and isinstance(value, (int, float)) and value < 0:
        problems.append(f"{field.name} must be >= 0, got {value}")
    if len(self.mean_bout_seconds) != len(CLASS_NAMES) or min(self.mean_bout_seconds) <= 0:
      problems.append(f"mean_bout_seconds must hold {len(CLASS_NAMES)} positive durations "
                      f"({', '.join(CLASS_NAMES)}), got {self.mean_bout_seconds}")
    transition = np.asarray(self.transition, np.float64)
    if transition.shape != (len(CLASS_NAMES),) * 2 or np.any(transition < 0) \
        or not np.allclose(transition.sum(axis=1), 1.0) or np.any(np.diag(transition) > 0):
      problems.append(f"transition must be a {len(CLASS_NAMES)}x{len(CLASS_NAMES)} matrix of "
                      "probabilities whose rows sum to 1, with a zero diagonal, got "
                      f"{self.transition}")
    if len(self.velocity_noise) != 3 or min(self.velocity_noise) < 0:
      problems.append(f"velocity_noise must hold 3 stds >= 0 (forward, lateral, turning), "
                      f"got {self.velocity_noise}")
    unknown = sorted(set(self.indicators) - {"gcamp6s", "gcamp6f"})
    if not self.indicators or unknown:
      problems.append(f"indicators must be drawn from 'gcamp6s', 'gcamp6f', got "
                      f"{self.indicators}")
    if self.trial_seconds * self.fps_neural < 2:
      problems.append("a trial must hold at least 2 neural frames")
    if problems:
      raise ValueError("invalid LocomotionConfig:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclasses.dataclass(frozen=True)
class LocomotionAnimal:
  """One simulated animal of the locomotion preset.

  Attributes:
    animal_id: `<date>_<genotype>_Fly<N>`.
    speed_scale: relative typical speed.
    turning_bias_deg_s: constant turning bias while moving.
    noise_scale: relative velocity noise.
    cell_type: `[N]` index into `CELL_TYPES` of every cell of its population.
    tuning: `[N, len(FEATURE_NAMES)]` drive of every cell per feature unit.
    gain: `[N]` relative peak rate of every cell.
    baseline_hz: `[N]` baseline rate of every cell.
    roi_cells: `[R, N]` how much of each cell's ΔF/F each ROI holds (its assignment).
    roi_gain: `[R]` gain of every ROI (the animal's overall scale included).
    roi_offset: `[R]` baseline offset of every ROI (ΔF/F).
    roi_noise_std: the animal's ROI noise std (ΔF/F).
    indicator: its indicator ("gcamp6s" or "gcamp6f").
    kinetics_scale: time-stretch of its indicator kernel.
  """

  animal_id: str
  speed_scale: float
  turning_bias_deg_s: float
  noise_scale: float
  cell_type: np.ndarray
  tuning: np.ndarray
  gain: np.ndarray
  baseline_hz: np.ndarray
  roi_cells: np.ndarray
  roi_gain: np.ndarray
  roi_offset: np.ndarray
  roi_noise_std: float
  indicator: str
  kinetics_scale: float

  @property
  def num_rois(self) -> int:
    return int(self.roi_cells.shape[0])

  def parameters(self) -> dict:
    """The animal's parameters by name (what `SimulatedDataset.save_ground_truth` saves)."""
    fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    fields.pop("animal_id")
    return {**fields, "num_rois": self.num_rois, "num_cells": int(len(self.cell_type))}


def sample_animal(index: int, config: LocomotionConfig,
                  rng: np.random.Generator) -> LocomotionAnimal:
  """Draws the `index`-th animal: its behaviour style, cells, ROIs and indicator."""
  speed_scale = float(np.exp(config.speed_scale_std * rng.standard_normal()))
  turning_bias = float(config.turning_bias_deg_s * rng.standard_normal())
  noise_scale = float(np.exp(config.noise_scale_std * rng.standard_normal()))

  num_rois = int(rng.integers(config.min_rois, config.max_rois + 1))
  num_cells = int(np.ceil(config.cells_per_roi * num_rois))
  prevalence = np.array([t.prevalence for t in CELL_TYPES])
  prevalence = prevalence / prevalence.sum()
  if config.composition_spread > 0:
    prevalence = rng.dirichlet(prevalence / config.composition_spread)
    # Dirichlet draws may leave a type at ~0 frequency, which is fine; keep p a distribution.
    prevalence = prevalence / prevalence.sum()
  cell_type = rng.choice(len(CELL_TYPES), size=num_cells, p=prevalence)
  tuning = np.array([CELL_TYPES[t].tuning for t in cell_type])
  tuning = tuning * np.exp(neurons.TUNING_LOG_STD * rng.standard_normal(tuning.shape))
  tuning = tuning + neurons.MIXED_SELECTIVITY_STD * rng.standard_normal(tuning.shape)
  gain = np.exp(config.gain_std * rng.standard_normal(num_cells))
  baseline = neurons.BASELINE_RATE_HZ * np.exp(
      config.baseline_std * rng.standard_normal(num_cells) - config.baseline_std**2 / 2)

  # Each ROI holds one cell of its own (in an order of the animal's own) and some of a few
  # others; the neuropil is added when imaging.
  own = rng.permutation(num_cells)[:num_rois]
  roi_cells = np.zeros((num_rois, num_cells))
  roi_cells[np.arange(num_rois), own] = 1.0
  for roi in range(num_rois):
    others = rng.choice(np.delete(np.arange(num_cells), own[roi]),
                        size=min(3, num_cells - 1), replace=False)
    roi_cells[roi, others] += config.contamination * rng.dirichlet(np.ones(len(others)))

  animal_gain = np.exp(config.animal_gain_std * rng.standard_normal())
  return LocomotionAnimal(
      animal_id=dataset_lib.animal_id(index, config.genotype),
      speed_scale=speed_scale, turning_bias_deg_s=turning_bias, noise_scale=noise_scale,
      cell_type=cell_type.astype(np.int64), tuning=tuning, gain=gain, baseline_hz=baseline,
      roi_cells=roi_cells,
      roi_gain=animal_gain * np.exp(config.roi_gain_std * rng.standard_normal(num_rois)),
      roi_offset=config.roi_offset_std * rng.standard_normal(num_rois),
      roi_noise_std=float(config.roi_noise_std * np.exp(
          config.roi_noise_spread * rng.standard_normal() - config.roi_noise_spread**2 / 2)),
      indicator=str(rng.choice(config.indicators)),
      kinetics_scale=float(np.exp(config.kinetics_std * rng.standard_normal())))


def stationary_frame_fractions(config: LocomotionConfig) -> np.ndarray:
  """`[4]` long-run fraction of the frames each action holds."""
  bouts = actions.stationary_distribution(np.asarray(config.transition, np.float64))
  time = bouts * np.asarray(config.mean_bout_seconds)
  return time / time.sum()


def sample_bouts(config: LocomotionConfig, num_frames: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Samples the action bouts of one trial (contiguous, covering every frame).

  Returns:
    `(start, end, label)`, each `[B]` int64, end exclusive.
  """
  # exp(N(mu, s^2)) has mean exp(mu + s^2/2): mu places the mean at the configured one.
  log_std = config.bout_log_std

  def bout_seconds(label, rng):
    log_mean = np.log(config.mean_bout_seconds[label]) - log_std**2 / 2
    return min(float(np.exp(log_mean + log_std * rng.standard_normal())),
               config.max_bout_seconds)

  return actions.sample_bout_chain(
      num_frames, config.fps_behaviour, rng,
      first_label_probability=stationary_frame_fractions(config),
      transition=np.asarray(config.transition, np.float64), bout_seconds=bout_seconds)


def simulate_velocities(animal: LocomotionAnimal, labels: np.ndarray, bout_start: np.ndarray,
                        bout_end: np.ndarray, config: LocomotionConfig,
                        rng: np.random.Generator) -> np.ndarray:
  """`[T, 3]` forward (mm/s), lateral (mm/s) and turning (deg/s, left positive) velocity."""
  num_frames = len(labels)
  fps = config.fps_behaviour
  forward = np.array([0.0, config.forward_speed_mm_s, config.turn_forward_speed_mm_s,
                      config.turn_forward_speed_mm_s])
  turning = np.array([0.0, 0.0, config.turning_speed_deg_s, -config.turning_speed_deg_s])
  lateral = np.array([0.0, 0.0, -config.lateral_slip_mm_s, config.lateral_slip_mm_s])
  moving = (labels != STAND).astype(np.float64)

  # Every bout has its own speed around the animal's typical one.
  bout_speed = np.exp(config.bout_speed_std * rng.standard_normal(len(bout_start)))
  speed = np.repeat(bout_speed, bout_end - bout_start) * animal.speed_scale
  target = np.stack([forward[labels] * speed, lateral[labels] * speed,
                     turning[labels] * speed + animal.turning_bias_deg_s * moving], axis=1)

  noise = pose_lib.ornstein_uhlenbeck(rng, (num_frames, 3), config.velocity_noise_seconds * fps)
  noise_level = animal.noise_scale * (0.1 + 0.9 * moving)[:, None]
  target = target + np.asarray(config.velocity_noise) * noise_level * noise

  # The ball's and the fly's inertia: a first-order low-pass filter, started at rest value.
  decay = np.exp(-1.0 / (config.inertia_seconds * fps))
  initial = signal.lfilter_zi([1 - decay], [1.0, -decay])[:, None] * target[:1]
  smooth, _ = signal.lfilter([1 - decay], [1.0, -decay], target, axis=0, zi=initial)
  return smooth.astype(np.float32)


def velocity_features(velocity: np.ndarray, config: LocomotionConfig) -> np.ndarray:
  """`[T, len(FEATURE_NAMES)]` normalised variables cells are tuned to."""
  forward, lateral, turning = velocity.T.astype(np.float64)
  forward_unit = forward / config.forward_speed_mm_s
  turn_unit = turning / config.turning_speed_deg_s
  stillness = np.exp(-(np.abs(forward_unit) + np.abs(turn_unit)) / 0.1)
  slip = np.abs(lateral) / max(config.lateral_slip_mm_s, 1e-6)
  return np.stack([np.maximum(forward_unit, 0.0), np.maximum(turn_unit, 0.0),
                   np.maximum(-turn_unit, 0.0), stillness, slip], axis=1)


def simulate_roi_traces(animal: LocomotionAnimal, velocity: np.ndarray, times: np.ndarray,
                        config: LocomotionConfig, rng: np.random.Generator):
  """Firing rates, calcium and ROI traces of one trial.

  Returns:
    `(roi_traces [T_n, R] float32, truth)` with truth `firing_rates` `[T_n, N]` (Hz, frame
    means), `cell_dff` `[T_n, N]` and `roi_dff` `[T_n, R]` (noiseless ROI ΔF/F).
  """
  fps = config.fps_behaviour
  num_frames = len(velocity)
  features = velocity_features(velocity, config)
  drive = features @ animal.tuning.T
  if config.locomotion_drive:
    # One drive shared by every cell, the same in every animal: the part of the traces a
    # probe trained on other animals can read (no draw: other settings are unchanged).
    locomotion = 1.0 - features[:, FEATURE_NAMES.index("stillness")]
    drive = drive + config.locomotion_drive * locomotion[:, None]
  drive = drive + config.rate_noise_std * pose_lib.ornstein_uhlenbeck(
      rng, drive.shape, neurons.NOISE_TIMESCALE_S * fps)
  sharpness = neurons.RECTIFICATION_SHARPNESS
  rectified = np.logaddexp(0.0, sharpness * (drive - neurons.RECTIFICATION_THRESHOLD)) / sharpness
  rates = animal.baseline_hz + neurons.PEAK_RATE_HZ * animal.gain * rectified
  step = 1.0 / fps
  spikes = rng.poisson(rates * step).astype(np.float64)
  # A kernel sampled at step / scale and read at every step lasts `scale` times longer.
  kernel = neurons.indicator_kernel(animal.indicator, step / animal.kinetics_scale)
  cell_dff = neurons.calcium_dff(spikes, kernel)

  trial_seconds = num_frames / fps
  frame_cells = imaging.frame_averages(cell_dff, fps, times, trial_seconds)
  frame_rates = imaging.frame_averages(rates, fps, times, trial_seconds)
  neuropil = config.neuropil * frame_cells.mean(axis=1, keepdims=True)
  roi_dff = animal.roi_gain * (frame_cells @ animal.roi_cells.T + neuropil) + animal.roi_offset
  frame_seconds = float(np.median(np.diff(times))) if len(times) > 1 else trial_seconds
  if config.roi_noise_seconds > 0:
    # The same draws as the white noise, filtered: the other settings' trials are unchanged.
    noise = pose_lib.ornstein_uhlenbeck(rng, roi_dff.shape,
                                        config.roi_noise_seconds / frame_seconds)
  else:
    noise = rng.standard_normal(roi_dff.shape)
  traces = roi_dff + animal.roi_noise_std * noise
  if config.roi_drift_std > 0:
    # Drawn only when set, after the other draws: other settings' trials are unchanged.
    traces = traces * np.exp(config.roi_drift_std * pose_lib.ornstein_uhlenbeck(
        rng, traces.shape, config.roi_drift_seconds / frame_seconds))
  if config.dff_baseline_percentile is not None:
    traces = traces - np.percentile(traces, config.dff_baseline_percentile, axis=0)
  truth = {"firing_rates": frame_rates.astype(np.float32),
           "cell_dff": frame_cells.astype(np.float32), "roi_dff": roi_dff.astype(np.float32)}
  return traces.astype(np.float32), truth


def simulate_trial(animal: LocomotionAnimal, index: int, config: LocomotionConfig,
                   rng: np.random.Generator, source: str = ""):
  """Simulates one trial of an animal.

  Returns:
    The recording (behaviour `[T_b, 3]` velocities, ROI traces `[T_n, R]`) and its ground
    truth (`actions` `[T_b]`, `firing_rates`, `cell_dff`, `roi_dff`).
  """
  fps = config.fps_behaviour
  num_frames = int(round(config.trial_seconds * fps))
  start, end, label = sample_bouts(config, num_frames, rng)
  labels = np.repeat(label, end - start).astype(np.int32)
  velocity = simulate_velocities(animal, labels, start, end, config, rng)
  times, fps_neural = imaging.frame_times(config, rng)
  traces, truth = simulate_roi_traces(animal, velocity, times, config, rng)
  rest = (np.abs(velocity[:, 0]) < 1.0) & (np.abs(velocity[:, 2]) < 15.0)
  annotated = labels
  if config.unlabelled_bout_fraction > 0:  # drawn last: other settings' trials are unchanged
    skipped = rng.random(len(label)) < config.unlabelled_bout_fraction
    annotated = np.where(np.repeat(skipped, end - start), recording_lib.UNLABELLED,
                         labels).astype(np.int32)
  rec = recording_lib.Recording(
      animal_id=animal.animal_id, trial_id=dataset_lib.trial_id(index), behaviour=velocity,
      sync=dataset_lib.sync_indices(times, num_frames, fps), labels=annotated,
      class_names=CLASS_NAMES, fps_behaviour=fps, fps_neural=fps_neural, roi_traces=traces,
      rest=rest, neural_timestamps=times, behaviour_format="vector",
      behaviour_names=BEHAVIOUR_NAMES, source=source)
  return rec, {"actions": labels, **truth}


def calibrated_config(**overrides) -> LocomotionConfig:
  """The locomotion preset with the shape of a real public multi-fly set (19 flies, ROI
  traces and ball velocities, both at 11.4 Hz, 32 ROIs per fly, two indicators with
  different kinetics), its action frequencies and unannotated share, and animal differences
  set so that the project's probes on raw windows measure what they measure on that set
  (`python -m experiments.calibrate` prints both side by side).

  Example:
    >>> config = calibrated_config()
    >>> config.num_animals, config.fps_neural, (config.min_rois, config.max_rois)
    (19, 11.4, (32, 32))
  """
  settings = dict(CALIBRATED_SETTINGS)
  settings.update(overrides)
  return LocomotionConfig(**settings)


# The settings of `calibrated_config`; see `experiments/calibrate.py` for what they match.
CALIBRATED_SETTINGS = dict(
    num_animals=19, trials_per_animal=4, trial_seconds=240.0,
    fps_behaviour=11.4, fps_neural=11.4, min_rois=32, max_rois=32,
    # Two flies in three express the fast GCaMP6f: with half of them on the slow GCaMP6s,
    # decoding within a fly stayed 6.5 points below the real set's (52.5 against 59 %).
    indicators=("gcamp6s", "gcamp6f", "gcamp6f"),
    # Bout lengths that give stand 39 %, forward 24 %, turn left 20 %, turn right 17 % of
    # the labelled frames with the default transitions.
    mean_bout_seconds=(3.7, 1.3, 2.0, 1.7),
    unlabelled_bout_fraction=0.4,
    # Behaviour differs a little more between these flies than in the default preset
    # (identity from behaviour windows 9.8 % on the real set).
    speed_scale_std=0.25, turning_bias_deg_s=15.0,
    # ROI traces as ΔF/F pipelines give them: each ROI's 10th percentile of a trial as its
    # baseline; a strong shared (neuropil) component and noise, so that identity from raw
    # windows falls towards the real set's (it stays above it: experiments.calibrate).
    dff_baseline_percentile=10.0, composition_spread=0.1,
    # A locomotion drive shared by every cell, so that standing and moving read alike in
    # every fly (held-out decoding rises towards the real set's), and slow ROI noise
    # (1 s) that an 8-frame window does not average out, so that after per-ROI
    # standardisation a fly's own cells tell little of the fly (identity from standardised
    # windows 6.0 %, real 5.4 %); the neuropil falls from 3.0 to 1.5 as the shared drive
    # carries the common component.
    locomotion_drive=0.7, roi_noise_seconds=1.0, roi_noise_std=0.9, neuropil=1.5,
)


class LocomotionSimulator:
  """The locomotion preset (`LocomotionConfig`) for `nar.simulation.dataset.simulate_animals`.

  Its animals share nothing and have no repertoire of their own: the seeds spawned for those
  go unused.
  """

  source = "locomotion simulation"

  def __init__(self, config: LocomotionConfig):
    self.config = config

  def ground_truth(self) -> dict:
    """Class, cell-type and behaviour names (as `kinematic_names`), and the action chain's
    statistics."""
    return {
        "class_names": CLASS_NAMES,
        "cell_type_names": CELL_TYPE_NAMES,
        "kinematic_names": BEHAVIOUR_NAMES,
        "target_frame_fractions": stationary_frame_fractions(self.config),
        "transition": np.asarray(self.config.transition, np.float64),
    }

  def sample_shared(self, rng: np.random.Generator) -> None:
    """Nothing is shared between animals."""
    del rng

  def sample_animal(self, index: int, shared: None, rng: np.random.Generator,
                    repertoire_rng: np.random.Generator) -> LocomotionAnimal:
    """Draws the `index`-th animal (`sample_animal`)."""
    del shared, repertoire_rng
    return sample_animal(index, self.config, rng)

  def simulate_trial(self, animal: LocomotionAnimal, index: int, rng: np.random.Generator,
                     source: str) -> tuple[recording_lib.Recording, dict[str, np.ndarray]]:
    """Simulates the `index`-th trial of an animal (`simulate_trial`)."""
    return simulate_trial(animal, index, self.config, rng, source=source)
