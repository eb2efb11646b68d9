"""What a simulated dataset is, and the loop that fills it with every preset's animals and trials.

Randomness is organised so that an animal does not depend on how many animals are
simulated, nor a trial on how many trials: `SeedSequence(seed)` spawns one child for what all
animals share (the default preset's stereotyped cell-type positions) and one per animal; each
animal's child spawns one for the animal's own parameters and one per trial, then one for its
own repertoire. A preset (`Simulator`) says how to draw an animal and simulate a trial;
`simulate_animals` does the rest.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
from typing import Any, Protocol

import numpy as np
import tqdm

from nar.data import recording as recording_lib

FIRST_RECORDING_DATE = datetime.date(2020, 10, 1)
FLIES_PER_DAY = 2


class PresetConfig(Protocol):
  """The settings every preset's config holds (`SimulatorConfig`, `LocomotionConfig`)."""

  num_animals: int
  trials_per_animal: int
  trial_seconds: float
  fps_behaviour: float
  fps_neural: float


class SimulatedAnimal(Protocol):
  """What the dataset loop reads of a preset's animal."""

  animal_id: str

  def parameters(self) -> dict:
    """The animal's parameters by name: arrays and scalars (its ground truth)."""


class Simulator(Protocol):
  """A preset: how to draw its animals and simulate their trials.

  Attributes:
    config: the preset's settings.
    source: what its recordings are called, before ` (seed N)`.
  """

  config: PresetConfig
  source: str

  def ground_truth(self) -> dict:
    """The dataset-wide ground truth: `class_names`, `cell_type_names`, `kinematic_names`,
    `target_frame_fractions` `[C]` and `transition` `[C, C]`."""

  def sample_shared(self, rng: np.random.Generator) -> Any:
    """Draws what all animals share (from the first child of the dataset's seed)."""

  def sample_animal(self, index: int, shared: Any, rng: np.random.Generator,
                    repertoire_rng: np.random.Generator) -> SimulatedAnimal:
    """Draws the `index`-th animal: its parameters from `rng`, its own repertoire of
    behaviour from `repertoire_rng`."""

  def simulate_trial(self, animal: SimulatedAnimal, index: int, rng: np.random.Generator,
                     source: str) -> tuple[recording_lib.Recording, dict[str, np.ndarray]]:
    """Simulates the `index`-th trial of an animal: its recording and per-trial ground truth."""


def animal_id(index: int, genotype: str) -> str:
  """The id of the `index`-th animal: two flies per recording day, as in MC2P."""
  day, fly = divmod(index, FLIES_PER_DAY)
  date = FIRST_RECORDING_DATE + datetime.timedelta(days=day)
  return f"{date:%y%m%d}_{genotype}_Fly{fly + 1}"


def trial_id(index: int) -> str:
  """The id of the `index`-th trial of an animal: `001`, `002`, ..."""
  return f"{index + 1:03d}"


def sync_indices(neural_times: np.ndarray, num_behaviour_frames: int,
                 fps_behaviour: float) -> np.ndarray:
  """`[T_b]` int64 index of the last neural frame started at or before each behaviour frame
  (behaviour frames before the first neural frame map to frame 0)."""
  behaviour_times = np.arange(num_behaviour_frames) / fps_behaviour
  index = np.searchsorted(neural_times, behaviour_times, side="right") - 1
  return np.clip(index, 0, len(neural_times) - 1).astype(np.int64)


@dataclasses.dataclass
class SimulatedDataset:
  """Simulated recordings and what generated them.

  Attributes:
    recordings: one validated `Recording` per trial, animal by animal.
    ground_truth: `class_names`, `cell_type_names`, `kinematic_names`,
      `target_frame_fractions` `[C]` and `transition` `[C, C]` of the bout model;
      `animals`: animal id -> parameters (`Animal.parameters`);
      `recordings`: `<animal_id>_<trial_id>` -> per-trial arrays (the preset's
      `simulate_trial`).
    config: the settings.
    seed: the seed.
  """

  recordings: list[recording_lib.Recording]
  ground_truth: dict
  # A `SimulatorConfig`, or the `LocomotionConfig` of the locomotion preset.
  config: PresetConfig
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


def simulate_animals(simulator: Simulator, seed: int, *,
                     progress: bool = False) -> SimulatedDataset:
  """Simulates a multi-animal dataset of a preset.

  Args:
    simulator: the preset.
    seed: the seed; equal seeds give identical datasets.
    progress: show a progress bar over the trials.

  Returns:
    The recordings and their ground truth.
  """
  config = simulator.config
  source = f"{simulator.source} (seed {seed})"
  shared_seed, *animal_seeds = np.random.SeedSequence(seed).spawn(1 + config.num_animals)
  shared = simulator.sample_shared(np.random.default_rng(shared_seed))
  truth = {**simulator.ground_truth(), "animals": {}, "recordings": {}}
  recordings = []
  bar = tqdm.tqdm(total=config.num_animals * config.trials_per_animal, desc="simulating",
                  unit="trial", disable=not progress)
  with bar:
    for index, animal_seed in enumerate(animal_seeds):
      parameter_seed, *trial_seeds = animal_seed.spawn(1 + config.trials_per_animal)
      # Spawned after the trials' seeds, so that the rest of the dataset does not depend on it.
      repertoire_seed, = animal_seed.spawn(1)
      animal = simulator.sample_animal(index, shared, np.random.default_rng(parameter_seed),
                                       np.random.default_rng(repertoire_seed))
      truth["animals"][animal.animal_id] = animal.parameters()
      for trial, trial_seed in enumerate(trial_seeds):
        bar.set_postfix_str(f"{animal.animal_id} trial {trial_id(trial)}")
        rec, trial_truth = simulator.simulate_trial(animal, trial,
                                                    np.random.default_rng(trial_seed), source)
        recordings.append(rec)
        truth["recordings"][f"{rec.animal_id}_{rec.trial_id}"] = trial_truth
        bar.update()
  recording_lib.check_recording_set(recordings, source=source)
  return SimulatedDataset(recordings=recordings, ground_truth=truth, config=config, seed=seed)
