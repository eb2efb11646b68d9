"""Descending neurons: cell types, firing rates, spikes and calcium (GCaMP) dynamics.

The cell types are shared by all animals (drawn from one distribution), loosely after the
descending-neuron population imaging of tethered flies: many cells follow walking (its
speed, or turning to one side), some are specific to one grooming movement, to head or to
posterior grooming, some to the movement of one leg pair, a few are active at rest, some mix
random preferences and some follow none of the measured variables. Each animal has its own
draw of visible cells, gains and baselines.

A cell's drive is a weighted sum of the latent action weights and of kinematic variables,
plus slow private and shared noise; its firing rate is a rectified function of the drive.
Spikes are Poisson counts per behaviour frame (10 ms at 100 Hz), and ΔF/F is the spike train
convolved with the real single-spike GCaMP6s response (resampled to the frame step, FFT
convolution), with the indicator's saturation.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import signal

from nar.data import recording as recording_lib
from nar.simulation import config as config_lib
from nar.simulation import pose as pose_lib
from nar.simulation import reference

CLASS_NAMES = recording_lib.MC2P_CLASS_NAMES
NUM_CLASSES = len(CLASS_NAMES)
# Kinematic variables a cell can follow (see `kinematic_features`).
KINEMATIC_NAMES = ("walking_speed", "turn_left", "turn_right", "front_leg_speed",
                   "mid_leg_speed", "hind_leg_speed")
# Normalisers: typical values while the movement happens.
TURNING_SCALE = 0.3
LEG_SPEED_SCALE_MM_S = 20.0

BASELINE_RATE_HZ = 1.0
PEAK_RATE_HZ = 20.0
# Soft rectification of the drive: threshold and sharpness (weak drive, e.g. from the
# mixed selectivity or the noise, barely raises the rate above baseline).
RECTIFICATION_THRESHOLD = 0.15
RECTIFICATION_SHARPNESS = 10.0
# Within-type variability of tuning and its mixed selectivity.
TUNING_LOG_STD = 0.25
MIXED_SELECTIVITY_STD = 0.08
# Private and shared (arousal-like) drive fluctuations.
NOISE_TIMESCALE_S = 1.0
SHARED_NOISE_STD = 0.1
# GCaMP saturation: ΔF/F = x / (1 + x / DFF_SATURATION) for the linear response x (a
# sustained 20 Hz gives x ~ 10.6 and ΔF/F ~ 3.8; 1 Hz gives ~ 0.5).
DFF_SATURATION = 6.0


@dataclasses.dataclass(frozen=True)
class CellType:
  """A type of descending neuron.

  Attributes:
    name: short description.
    prevalence: relative frequency among visible cells.
    action_tuning: drive per action class (`MC2P_CLASS_NAMES` order).
    kinematic_tuning: drive per unit of each kinematic variable (`KINEMATIC_NAMES` order).
  """

  name: str
  prevalence: float
  action_tuning: tuple[float, ...]
  kinematic_tuning: tuple[float, ...] = (0.0,) * len(KINEMATIC_NAMES)


def _actions(**drives) -> tuple[float, ...]:
  return tuple(float(drives.get(name, 0.0)) for name in CLASS_NAMES)


def _kinematics(**drives) -> tuple[float, ...]:
  return tuple(float(drives.get(name, 0.0)) for name in KINEMATIC_NAMES)


CELL_TYPES = (
    CellType("walking", 0.10, _actions(walking=1.0)),
    CellType("walking_speed", 0.10, _actions(walking=0.2), _kinematics(walking_speed=0.8)),
    CellType("turning_left", 0.06, _actions(walking=0.2), _kinematics(turn_left=1.0)),
    CellType("turning_right", 0.06, _actions(walking=0.2), _kinematics(turn_right=1.0)),
    CellType("front_leg_movement", 0.05, _actions(), _kinematics(front_leg_speed=0.8)),
    CellType("hind_leg_movement", 0.05, _actions(), _kinematics(hind_leg_speed=0.8)),
    CellType("resting", 0.05, _actions(resting=0.7)),
    CellType("eye_grooming", 0.05, _actions(eye_grooming=1.0)),
    CellType("antennal_grooming", 0.05, _actions(antennal_grooming=1.0)),
    CellType("foreleg_grooming", 0.05, _actions(foreleg_grooming=1.0)),
    CellType("head_grooming", 0.06,
             _actions(eye_grooming=0.8, antennal_grooming=0.8, foreleg_grooming=0.5)),
    CellType("abdominal_grooming", 0.05, _actions(abdominal_grooming=1.0)),
    CellType("hindleg_grooming", 0.05, _actions(hindleg_grooming=1.0)),
    CellType("posterior_grooming", 0.05, _actions(abdominal_grooming=0.8, hindleg_grooming=0.8)),
    CellType("grooming", 0.04,
             _actions(eye_grooming=0.5, antennal_grooming=0.5, foreleg_grooming=0.5,
                      abdominal_grooming=0.5, hindleg_grooming=0.5)),
    CellType("mixed", 0.06, _actions()),
    CellType("untuned", 0.07, _actions()),
)
CELL_TYPE_NAMES = tuple(t.name for t in CELL_TYPES)
MIXED_TYPE = CELL_TYPE_NAMES.index("mixed")


@dataclasses.dataclass(frozen=True)
class Cells:
  """Descending neurons with their types and tunings, e.g. the identified cells every animal
  shares (`SimulatorConfig.identified_cells`).

  Attributes:
    cell_type: `[R]` int index into `CELL_TYPES`.
    action_tuning: `[R, C]` drive per action class.
    kinematic_tuning: `[R, K]` drive per kinematic variable.
  """

  cell_type: np.ndarray
  action_tuning: np.ndarray
  kinematic_tuning: np.ndarray

  @property
  def num_cells(self) -> int:
    return int(self.cell_type.shape[0])


@dataclasses.dataclass(frozen=True)
class Population(Cells):
  """The visible descending neurons of one animal: `Cells` with the animal's own rates.

  Attributes:
    gain: `[R]` relative peak rate (log-normal).
    baseline_hz: `[R]` baseline firing rate.
    shared_noise_loading: `[R]` how much the cell follows the shared fluctuation.
  """

  gain: np.ndarray
  baseline_hz: np.ndarray
  shared_noise_loading: np.ndarray


def sample_cells(num_cells: int, rng: np.random.Generator) -> Cells:
  """Draws `num_cells` cells: types by prevalence, tunings around their type's."""
  prevalence = np.array([t.prevalence for t in CELL_TYPES])
  cell_type = rng.choice(len(CELL_TYPES), size=num_cells, p=prevalence / prevalence.sum())
  action = np.array([CELL_TYPES[t].action_tuning for t in cell_type])
  kinematic = np.array([CELL_TYPES[t].kinematic_tuning for t in cell_type])
  mixed = cell_type == MIXED_TYPE
  action[mixed] = np.maximum(rng.normal(0.0, 0.6, (mixed.sum(), NUM_CLASSES)), 0.0)
  action = action * np.exp(TUNING_LOG_STD * rng.standard_normal(action.shape))
  action = action + MIXED_SELECTIVITY_STD * rng.standard_normal(action.shape)
  kinematic = kinematic * np.exp(TUNING_LOG_STD * rng.standard_normal(kinematic.shape))
  return Cells(cell_type.astype(np.int64), action, kinematic)


def sample_population(config: config_lib.SimulatorConfig, rng: np.random.Generator,
                      identified: Cells | None = None) -> Population:
  """Draws an animal's visible cells, their types, tunings, gains and baselines.

  Args:
    config: simulator settings.
    rng: the animal's random generator.
    identified: the cells all animals share (`config.identified_cells` > 0): the animal
      shows a random subset of them. None: the animal's cells are drawn for it alone.
  """
  num_cells = int(rng.integers(config.min_visible_cells, config.max_visible_cells + 1))
  if identified is None:
    cells = sample_cells(num_cells, rng)
  else:
    if num_cells > identified.num_cells:
      raise ValueError(f"the animal shows {num_cells} cells, more than the "
                       f"{identified.num_cells} identified")
    visible = np.sort(rng.choice(identified.num_cells, size=num_cells, replace=False))
    cells = Cells(identified.cell_type[visible], identified.action_tuning[visible],
                  identified.kinematic_tuning[visible])
  return Population(
      **vars(cells),
      gain=np.exp(config.gain_std * rng.standard_normal(num_cells)),
      baseline_hz=BASELINE_RATE_HZ * np.exp(config.baseline_std * rng.standard_normal(num_cells)
                                            - config.baseline_std**2 / 2),
      shared_noise_loading=rng.uniform(0.0, 1.0, num_cells),
  )


def kinematic_features(kinematics: dict[str, np.ndarray],
                       walking_speed_mm_s: float) -> np.ndarray:
  """`[T, K]` normalised kinematic variables (`KINEMATIC_NAMES`) of a trial.

  Args:
    kinematics: the output of `nar.simulation.pose.simulate_pose`.
    walking_speed_mm_s: the speed that counts as 1 (the population's mean speed).
  """
  turning = kinematics["turning"] / TURNING_SCALE
  leg_speed = kinematics["leg_speed"] / LEG_SPEED_SCALE_MM_S
  pairs = [leg_speed[:, list(legs)].mean(axis=1)
           for legs in (pose_lib.FRONT_LEGS, pose_lib.MID_LEGS, pose_lib.HIND_LEGS)]
  return np.stack([kinematics["walking_speed"] / walking_speed_mm_s,
                   np.maximum(turning, 0.0), np.maximum(-turning, 0.0)] + pairs, axis=1)


def firing_rates(population: Population, action_weights: np.ndarray, features: np.ndarray,
                 config: config_lib.SimulatorConfig, rng: np.random.Generator) -> np.ndarray:
  """`[T, R]` firing rates (Hz) at the behaviour frame times.

  Args:
    population: the animal's cells.
    action_weights: `[T, C]` latent action weights.
    features: `[T, K]` kinematic variables (`kinematic_features`).
    config: simulator settings.
    rng: random generator of this trial.
  """
  num_frames = action_weights.shape[0]
  timescale = NOISE_TIMESCALE_S * config.fps_behaviour
  private = pose_lib.ornstein_uhlenbeck(rng, (num_frames, population.num_cells), timescale)
  shared = pose_lib.ornstein_uhlenbeck(rng, (num_frames, 1), timescale)
  drive = (action_weights @ population.action_tuning.T + features @ population.kinematic_tuning.T
           + config.rate_noise_std * private
           + SHARED_NOISE_STD * population.shared_noise_loading * shared)
  rectified = np.logaddexp(0.0, RECTIFICATION_SHARPNESS * (drive - RECTIFICATION_THRESHOLD)
                          ) / RECTIFICATION_SHARPNESS
  return population.baseline_hz + PEAK_RATE_HZ * population.gain * rectified


def indicator_kernel(indicator: str, frame_seconds: float) -> np.ndarray:
  """The single-spike ΔF/F response averaged over frame steps of `frame_seconds`.

  Returns:
    `[K]` response in the frames following a spike (frame 0 holds the spike).
  """
  kernel = reference.gcamp_kernel(indicator)
  integral = np.concatenate([[0.0], np.cumsum(kernel) * 1e-3])
  edges = np.arange(0.0, len(kernel) * 1e-3, frame_seconds)
  # Mean response over each frame, for a spike at a uniformly random time in frame 0.
  cumulative = np.interp(edges, np.arange(len(integral)) * 1e-3, integral)
  return np.diff(cumulative) / frame_seconds


def calcium_dff(spikes: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  """`[T, R]` ΔF/F of the indicator for `[T, R]` spike counts per frame step."""
  linear = signal.fftconvolve(spikes, kernel[:, None], axes=0)[:spikes.shape[0]]
  linear = np.maximum(linear, 0.0)  # FFT round-off
  return linear / (1.0 + linear / DFF_SATURATION)


def simulate_activity(population: Population, action_weights: np.ndarray,
                      kinematics: dict[str, np.ndarray], config: config_lib.SimulatorConfig,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Firing rates and calcium ΔF/F of every cell at the behaviour frame times.

  Returns:
    `rates` `[T, R]` (Hz) and `dff` `[T, R]` (noiseless indicator ΔF/F).
  """
  features = kinematic_features(kinematics, config.walking_speed_mm_s)
  rates = firing_rates(population, action_weights, features, config, rng)
  step = 1.0 / config.fps_behaviour
  spikes = rng.poisson(rates * step).astype(np.float64)
  return rates, calcium_dff(spikes, indicator_kernel(config.indicator, step))
