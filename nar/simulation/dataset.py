"""Simulated multi-animal datasets: animals, their trials as `Recording`s, and ground truth.

Randomness is organised so that an animal does not depend on how many animals are
simulated, nor a trial on how many trials: `SeedSequence(seed)` spawns one child for what all
animals share (the stereotyped cell-type positions) and one per animal; each animal's child
spawns one for the animal's own parameters and one per trial.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib

import numpy as np
import tqdm
from scipy import ndimage

from nar.data import recording as recording_lib
from nar.simulation import actions
from nar.simulation import config as config_lib
from nar.simulation import imaging
from nar.simulation import neurons
from nar.simulation import pose as pose_lib

FIRST_RECORDING_DATE = datetime.date(2020, 10, 1)
FLIES_PER_DAY = 2
# Mean tarsus speed (mm/s) below which a frame counts as rest (as an optical-flow rest
# detector would flag it).
REST_LEG_SPEED_MM_S = 2.0


@dataclasses.dataclass(frozen=True)
class Animal:
  """One simulated animal.

  Attributes:
    animal_id: `<date>_<genotype>_Fly<N>`.
    body: body and movement style.
    population: visible descending neurons.
    anatomy: imaging plane.
  """

  animal_id: str
  body: pose_lib.Body
  population: neurons.Population
  anatomy: imaging.Anatomy

  def parameters(self) -> dict[str, np.ndarray | float | int]:
    """The animal's parameters by name: arrays and scalars."""
    body, cells, plane = self.body, self.population, self.anatomy
    return {
        "segment_scale": body.segment_scale,
        "body_scale": body.body_scale,
        "posture_tip_offset_mm": body.tip_offset,
        "action_tip_offset_mm": body.action_tip_offset,
        "gait_frequency_hz": body.gait_frequency_hz,
        "rhythm_scale": body.rhythm_scale,
        "walking_speed_mm_s": body.walking_speed_mm_s,
        "alignment_rotation_deg": body.rotation_deg,
        "num_cells": cells.num_cells,
        "cell_type": cells.cell_type,
        "action_tuning": cells.action_tuning,
        "kinematic_tuning": cells.kinematic_tuning,
        "gain": cells.gain,
        "baseline_hz": cells.baseline_hz,
        "shared_noise_loading": cells.shared_noise_loading,
        "connective_centre_fov": plane.connective_centre,
        "connective_rotation_deg": plane.connective_rotation_deg,
        "connective_scale": plane.connective_scale,
        "cell_position_fov": plane.cell_position,
        "cell_sigma_fov": plane.cell_sigma,
        "cell_brightness": plane.cell_brightness,
        "tissue": plane.tissue,
        "motion_scale_fov": plane.motion_scale_fov,
    }


def animal_id(index: int, genotype: str) -> str:
  """The id of the `index`-th animal: two flies per recording day, as in MC2P."""
  day, fly = divmod(index, FLIES_PER_DAY)
  date = FIRST_RECORDING_DATE + datetime.timedelta(days=day)
  return f"{date:%y%m%d}_{genotype}_Fly{fly + 1}"


def trial_id(index: int) -> str:
  return f"{index + 1:03d}"


def sample_animal(index: int, config: config_lib.SimulatorConfig, type_positions: np.ndarray,
                  rng: np.random.Generator,
                  identified: neurons.Cells | None = None) -> Animal:
  """Draws the `index`-th animal (showing some of the `identified` cells, when given)."""
  body = pose_lib.sample_body(config, rng)
  population = neurons.sample_population(config, rng, identified)
  anatomy = imaging.sample_anatomy(config, population.cell_type, type_positions, rng)
  return Animal(animal_id(index, config.genotype), body, population, anatomy)


def sync_indices(neural_times: np.ndarray, num_behaviour_frames: int,
                 fps_behaviour: float) -> np.ndarray:
  """`[T_b]` int64 index of the last neural frame started at or before each behaviour frame
  (behaviour frames before the first neural frame map to frame 0)."""
  behaviour_times = np.arange(num_behaviour_frames) / fps_behaviour
  index = np.searchsorted(neural_times, behaviour_times, side="right") - 1
  return np.clip(index, 0, len(neural_times) - 1).astype(np.int64)


def animal_bout_model(bout_model: actions.BoutModel, repertoire_std: float,
                      rng: np.random.Generator) -> actions.BoutModel:
  """One animal's bout model: the common one with its class frequencies perturbed.

  Each class's frame fraction is multiplied by `exp(repertoire_std * z)`, z ~ N(0, 1), and
  the transitions re-weighted to the result (`actions.rebalance`); 0 returns `bout_model`.
  """
  if repertoire_std == 0:
    return bout_model
  fractions = bout_model.frame_fractions() * np.exp(
      repertoire_std * rng.standard_normal(actions.NUM_CLASSES))
  return actions.rebalance(bout_model, fractions / fractions.sum())


def simulate_trial(animal: Animal, index: int, bout_model: actions.BoutModel,
                   config: config_lib.SimulatorConfig, rng: np.random.Generator,
                   source: str = "") -> tuple[recording_lib.Recording, dict[str, np.ndarray]]:
  """Simulates one trial of an animal.

  The recording's `fps_neural` is the trial's true mean frame rate, which deviates from the
  nominal `config.fps_neural` by a few percent.

  Returns:
    The recording and its ground truth: `actions` `[T_b]` int32 latent action,
    `action_weights` `[T_b, C]`, `walking_speed` `[T_b]` (mm/s), `turning` `[T_b]`,
    `leg_speed` `[T_b, 6]` (mm/s), `firing_rates` `[T_n, R]` (Hz, frame means),
    `calcium_dff` `[T_n, R]` (noiseless), `motion_shift_px` `[T_n, 2]`.
  """
  fps = config.fps_behaviour
  num_frames = int(round(config.trial_seconds * fps))
  sequence = actions.action_sequence(bout_model, num_frames, fps, config.blend_seconds, rng)
  pose, kinematics = pose_lib.simulate_pose(animal.body, sequence, config, rng)
  rates, cell_dff = neurons.simulate_activity(animal.population, sequence.weights, kinematics,
                                              config, rng)
  times, fps_neural = imaging.frame_times(config, rng)
  frame_dff = imaging.frame_averages(cell_dff, fps, times, config.trial_seconds)
  frame_rates = imaging.frame_averages(rates, fps, times, config.trial_seconds)
  mean_leg_speed = kinematics["leg_speed"].mean(axis=1)
  movement = imaging.frame_averages(mean_leg_speed / neurons.LEG_SPEED_SCALE_MM_S, fps, times,
                                    config.trial_seconds)
  imaged = imaging.image_trial(animal.anatomy, frame_dff, movement, times, config, rng)
  smoothed_speed = ndimage.uniform_filter1d(mean_leg_speed, size=max(1, int(0.2 * fps)))

  rec = recording_lib.Recording(
      animal_id=animal.animal_id,
      trial_id=trial_id(index),
      behaviour=pose,
      sync=sync_indices(times, num_frames, fps),
      labels=sequence.labels,
      fps_behaviour=fps,
      fps_neural=fps_neural,
      neural_images=imaged.dff_images,
      roi_traces=imaged.roi_traces,
      rest=smoothed_speed < REST_LEG_SPEED_MM_S,
      neural_timestamps=times,
      source=source,
  )
  truth = {
      "actions": sequence.actions,
      "action_weights": sequence.weights,
      "walking_speed": kinematics["walking_speed"],
      "turning": kinematics["turning"],
      "leg_speed": kinematics["leg_speed"],
      "firing_rates": frame_rates.astype(np.float32),
      "calcium_dff": frame_dff.astype(np.float32),
      "motion_shift_px": imaged.shift_px,
  }
  return rec, truth


@dataclasses.dataclass
class SimulatedDataset:
  """Simulated recordings and what generated them.

  Attributes:
    recordings: one validated `Recording` per trial, animal by animal.
    ground_truth: `class_names`, `cell_type_names`, `kinematic_names`,
      `target_frame_fractions` `[C]` and `transition` `[C, C]` of the bout model;
      `animals`: animal id -> parameters (`Animal.parameters`);
      `recordings`: `<animal_id>_<trial_id>` -> per-trial arrays (`simulate_trial`).
    config: the settings.
    seed: the seed.
  """

  recordings: list[recording_lib.Recording]
  ground_truth: dict
  # A `SimulatorConfig`, or the `LocomotionConfig` of the locomotion preset.
  config: config_lib.SimulatorConfig
  seed: int

  def save_ground_truth(self, path: str | os.PathLike) -> pathlib.Path:
    """Writes the ground truth to `path` (`.npz`) and its scalars beside it (`.json`).

    The npz keys are `class_names`, `cell_type_names`, `kinematic_names`,
    `target_frame_fractions`, `transition`, `animals/<animal_id>/<name>` and
    `recordings/<animal_id>_<trial_id>/<name>`. The JSON holds the seed, the settings and
    every scalar animal parameter.

    Returns:
      The npz path.
    """
    path = pathlib.Path(path)
    if path.suffix != ".npz":
      path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    truth = self.ground_truth
    arrays = {key: np.asarray(truth[key]) for key in
              ("class_names", "cell_type_names", "kinematic_names", "target_frame_fractions",
               "transition")}
    scalars = {}
    for name, parameters in truth["animals"].items():
      scalars[name] = {}
      for key, value in parameters.items():
        if np.ndim(value) == 0:
          scalars[name][key] = value.item() if hasattr(value, "item") else value
        arrays[f"animals/{name}/{key}"] = np.asarray(value)
    for name, values in truth["recordings"].items():
      for key, value in values.items():
        arrays[f"recordings/{name}/{key}"] = np.asarray(value)
    with open(path, "wb") as f:
      np.savez_compressed(f, **arrays)
    record = {"seed": self.seed, "config": dataclasses.asdict(self.config), "animals": scalars}
    path.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str))
    return path

  def summary(self) -> str:
    """A few lines describing the dataset."""
    recs = self.recordings
    animals = sorted({r.animal_id for r in recs})
    class_names = tuple(self.ground_truth["class_names"])
    labels = np.concatenate([r.labels for r in recs])
    counts = np.bincount(labels[labels >= 0], minlength=len(class_names))
    fractions = ", ".join(f"{name} {c / max(counts.sum(), 1):.1%}"
                          for name, c in zip(class_names, counts))
    if recs[0].neural_images is not None:
      image = recs[0].neural_images.shape[1:]
      neural = f"{image[0]}x{image[1]}"
      cells = {a: self.ground_truth["animals"][a]["num_cells"] for a in animals}
      cell_line = f"visible cells per animal: {', '.join(str(cells[a]) for a in animals)}"
    else:
      neural = "ROI traces"
      rois = {r.animal_id: r.roi_traces.shape[1] for r in recs}
      cell_line = f"ROIs per animal: {', '.join(str(rois[a]) for a in animals)}"
    behaviour = recs[0].behaviour_spec
    behaviour_line = (f"behaviour: {', '.join(behaviour.names)}" if behaviour.is_vector
                      else "behaviour: DeepFly3D pose (38 keypoints)")
    return "\n".join([
        f"{len(animals)} animals x {len(recs) // len(animals)} trials, seed {self.seed}",
        f"behaviour frames {sum(r.num_behaviour_frames for r in recs)} at "
        f"{self.config.fps_behaviour:g} Hz, neural frames "
        f"{sum(r.num_neural_frames for r in recs)} (~{self.config.fps_neural:g} Hz, "
        f"{neural})",
        behaviour_line,
        cell_line,
        f"labelled {np.mean(labels >= 0):.1%} of frames: {fractions}",
    ])


def simulate_dataset(config: config_lib.SimulatorConfig | None = None, seed: int = 0, *,
                     progress: bool = False) -> SimulatedDataset:
  """Simulates a multi-animal dataset.

  Args:
    config: settings (the default demo dataset if None); a
      `nar.simulation.locomotion.LocomotionConfig` simulates the locomotion preset.
    seed: the seed; equal seeds give identical datasets.
    progress: show a progress bar over the trials.

  Returns:
    The recordings and their ground truth.
  """
  from nar.simulation import locomotion  # pylint: disable=g-import-not-at-top
  if isinstance(config, locomotion.LocomotionConfig):
    return locomotion.simulate_locomotion_dataset(config, seed, progress=progress)
  config = config or config_lib.SimulatorConfig()
  if not isinstance(config, config_lib.SimulatorConfig):
    raise TypeError(f"config must be a SimulatorConfig or a LocomotionConfig, got "
                    f"{type(config).__name__}")
  bout_model = actions.balanced_bout_model(config.class_balance_exponent(),
                                           config.max_bout_seconds, config.max_gap_seconds)
  shared_seed, *animal_seeds = np.random.SeedSequence(seed).spawn(1 + config.num_animals)
  shared_rng = np.random.default_rng(shared_seed)
  type_positions = imaging.stereotyped_positions(len(neurons.CELL_TYPES), shared_rng)
  identified = (neurons.sample_cells(config.identified_cells, shared_rng)
                if config.identified_cells else None)
  recordings = []
  truth = {
      "class_names": recording_lib.MC2P_CLASS_NAMES,
      "cell_type_names": neurons.CELL_TYPE_NAMES,
      "kinematic_names": neurons.KINEMATIC_NAMES,
      "target_frame_fractions": bout_model.frame_fractions(),
      "transition": bout_model.transition,
      "animals": {},
      "recordings": {},
  }
  bar = tqdm.tqdm(total=config.num_animals * config.trials_per_animal, desc="simulating",
                  unit="trial", disable=not progress)
  with bar:
    for index, animal_seed in enumerate(animal_seeds):
      parameter_seed, *trial_seeds = animal_seed.spawn(1 + config.trials_per_animal)
      animal = sample_animal(index, config, type_positions, np.random.default_rng(parameter_seed),
                             identified)
      truth["animals"][animal.animal_id] = animal.parameters()
      # Spawned after the trials' seeds, so that the rest of the dataset does not depend on it.
      repertoire_seed, = animal_seed.spawn(1)
      animal_bouts = animal_bout_model(bout_model, config.repertoire_std,
                                       np.random.default_rng(repertoire_seed))
      truth["animals"][animal.animal_id]["target_frame_fractions"] = (
          animal_bouts.frame_fractions())
      for trial, trial_seed in enumerate(trial_seeds):
        bar.set_postfix_str(f"{animal.animal_id} trial {trial_id(trial)}")
        rec, trial_truth = simulate_trial(animal, trial, animal_bouts, config,
                                          np.random.default_rng(trial_seed),
                                          source=f"simulation (seed {seed})")
        recordings.append(rec)
        truth["recordings"][f"{rec.animal_id}_{rec.trial_id}"] = trial_truth
        bar.update()
  recording_lib.check_recording_set(recordings, source=f"simulation (seed {seed})")
  return SimulatedDataset(recordings=recordings, ground_truth=truth, config=config, seed=seed)
