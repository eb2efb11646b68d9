r"""Presets of the reproduction of the seed's tables, `experiments/reproduce.py`.

  python -m experiments.reproduce --preset=cpu --seeds=3 --out=runs/reproduce

A preset names the training config of Ours, the trained methods (Ours and the baselines of
`baselines.py`), the ablations (each a dict of config overrides of Ours, e.g.
`{"swap.probability": 0.25}`), how many seeds the ablations use and the size of the simulated
dataset. Presets:

* `cpu`: the default simulated dataset (8 animals x 4 trials x 240 s) at `swap_cpu` size;
  `CPU_TRAIN_STEPS` steps per run, chosen so that 3 seeds of every method and one seed of
  every ablation fit in about an hour on 2 CPU cores.
* `tpu`: `swap_tpu` size (exact swap, large model and batch) on a 128 x 128 pixel version of
  the simulated dataset; ablations over 3 seeds.
* `smoke`: a few steps of a tiny model on a tiny simulated dataset; for tests.

Datasets are registered in `DATASETS` by name, and each preset has a training config per
dataset. `--dataset=pose` (the default) is the simulated dataset of pose and two-photon imaging
of `nar.simulation`, trained as above. `--dataset=locomotion` is the locomotion simulation
(`nar.simulation.LocomotionConfig`: ball velocities as a behaviour vector, ROI traces with a
different ROI count per animal), trained from `locomotion_cpu`: a per-animal input layer in
front of a shared trunk, and the held-out animals' input layers fitted without labels
(`adapt`) before the probes; its `cpu` preset trains `LOCOMOTION_CPU_TRAIN_STEPS` steps per run
and fits `LOCOMOTION_CPU_ADAPT_STEPS`, its `tpu` preset a `swap_tpu`-sized model on 40 animals.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import ml_collections

from experiments.configs import baselines
from experiments.configs import common
from experiments.configs import locomotion_cpu
from experiments.configs import swap_cpu
from experiments.configs import swap_tpu
from nar import paths
from nar import simulation

# Training steps of every run of the cpu preset: the knob of its wall-time budget. A run
# costs about 25 s besides its steps (input, compilation, probes) and about 0.25 s per step
# of Ours on 2 cores; 43 runs (10 methods x 3 seeds, 13 ablations) of 300 steps and the
# reference rows took 59 min from a fresh data root, within the hour, on the former 60-s
# trials; `swap_cpu` thins the swap pool and the probes' windows of the 240-s default to
# their counts there, so a step and the probes cost about the same.
CPU_TRAIN_STEPS = 300
# The same knob for `--dataset=locomotion`, whose runs also fit the held-out animals' input
# layers for LOCOMOTION_CPU_ADAPT_STEPS steps after training. Measured on one core of the
# 2-core machine (CPU time, so an upper bound of the wall time on 2 cores): a run costs about
# 25 s besides its steps (input 4 s, compiling 5-11 s, fitting's compilation and loss 2-4 s,
# probes 5.5 s); a step of Ours 0.074 s, of a baseline without the swap 0.024-0.04 s, a
# fitting step 0.02 s. 11 runs with the swap (Ours x 3, 8 ablations) and 27 without, at 250
# steps: 38 x 27 s + 250 x (11 x 0.074 + 27 x 0.035) s = 24 min, plus the ablation's top-K
# table (1-2 min) and the reference rows: within 30 min.
LOCOMOTION_CPU_TRAIN_STEPS = 250
# Fitting the held-out input layers: 100 steps at adapt.learning_rate halve the objective of
# a regression run (0.99 -> 0.51) for 2 s; locomotion_cpu's 600 would add 6 min in all.
LOCOMOTION_CPU_ADAPT_STEPS = 100

PRESETS = ("cpu", "tpu", "smoke")
OURS = "ours"
# Methods whose held-out features are drawn as 2-D embeddings.
EMBEDDING_METHODS = (OURS, "no_swap", "simclr")


# ----------------------------------------------------------------------------------------------
# Datasets.
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SimulatedDataset:
  """A simulated dataset of one size: its name in the TFDS data dir and how it is made.

  Attributes:
    name: the dataset's (TFDS config) name.
    simulator: the simulator's settings.
    seed: the simulation seed.
  """

  name: str
  simulator: simulation.SimulatorConfig
  seed: int = 0


def pose_dataset(size: str) -> SimulatedDataset:
  """The simulated pose + two-photon dataset of `nar.simulation` at a preset's size.

  Args:
    size: "default" (the default dataset of `make demo`, shared with it), "large" (the same
      recordings at 128 x 128 pixels, like MC2P) or "tiny" (4 animals x 2 trials x 16 s at
      16 x 16 pixels, built in seconds).
  """
  sizes = {
      "default": SimulatedDataset("default", simulation.SimulatorConfig()),
      "large": SimulatedDataset("pose_128px", simulation.SimulatorConfig(image_size=128)),
      "tiny": SimulatedDataset("pose_tiny", simulation.SimulatorConfig(
          num_animals=4, trials_per_animal=2, trial_seconds=16.0, image_size=16)),
  }
  if size not in sizes:
    raise ValueError(f"unknown dataset size {size!r}; choose one of {sorted(sizes)}")
  return sizes[size]


def locomotion_dataset(size: str) -> SimulatedDataset:
  """The simulated locomotion dataset (ball velocities, ROI traces) at a preset's size.

  Args:
    size: "default" (8 animals x 4 trials x 60 s with 15-40 ROIs each: the dataset of
      `locomotion_cpu`, shared with it), "large" (40 animals, as many as MC2P) or "tiny"
      (4 animals x 2 trials x 16 s with 3-9 ROIs, built in seconds).
  """
  sizes = {
      "default": SimulatedDataset("locomotion", simulation.LocomotionConfig()),
      "large": SimulatedDataset("locomotion_40", simulation.LocomotionConfig(num_animals=40)),
      "tiny": SimulatedDataset("locomotion_tiny", simulation.LocomotionConfig(
          num_animals=4, trials_per_animal=2, trial_seconds=16.0, min_rois=3, max_rois=9)),
  }
  if size not in sizes:
    raise ValueError(f"unknown dataset size {size!r}; choose one of {sorted(sizes)}")
  return sizes[size]


def calibrated_locomotion_dataset(size: str) -> SimulatedDataset:
  """The locomotion simulation calibrated to a real public 19-fly set
  (`nar.simulation.locomotion.calibrated_config`; `experiments.calibrate` compares them).

  Args:
    size: "default" (19 flies x 4 trials x 240 s at 11.4 Hz, 32 ROIs each), "large" (the
      same; the real set has 19 flies) or "tiny" (4 flies x 2 trials x 30 s, 8 ROIs).
  """
  from nar.simulation import locomotion  # pylint: disable=g-import-not-at-top
  sizes = {
      "default": SimulatedDataset("locomotion_calibrated", locomotion.calibrated_config()),
      "large": SimulatedDataset("locomotion_calibrated", locomotion.calibrated_config()),
      "tiny": SimulatedDataset("locomotion_calibrated_tiny", locomotion.calibrated_config(
          num_animals=4, trials_per_animal=2, trial_seconds=30.0, min_rois=8, max_rois=8)),
  }
  if size not in sizes:
    raise ValueError(f"unknown dataset size {size!r}; choose one of {sorted(sizes)}")
  return sizes[size]


# Name (the `--dataset` flag) -> the dataset at a size.
DATASETS: dict[str, Callable[[str], SimulatedDataset]] = {
    "pose": pose_dataset, "locomotion": locomotion_dataset,
    "locomotion_calibrated": calibrated_locomotion_dataset}
# Name -> what the tables' titles call it.
DATASET_TITLES = {
    "pose": "simulated pose and two-photon imaging",
    "locomotion": "simulated locomotion: ball velocities and ROI traces",
    "locomotion_calibrated": "simulated locomotion calibrated to a real 19-fly set",
}
# The real set's protocol: 8-frame windows of behaviour and neural data at 11.4 Hz, folds of
# 4 held-out flies.
CALIBRATED_WINDOW = dict(pose_frames=8, pose_stride=1, neural_frames=8)
CALIBRATED_HELD_OUT = 4


def _calibrated(training: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A locomotion training config made for the calibrated dataset's shapes and folds."""
  training.data.window = dict(CALIBRATED_WINDOW)
  training.data.num_held_out_animals = CALIBRATED_HELD_OUT
  training.eval.hop = 4
  return training


# ----------------------------------------------------------------------------------------------
# Presets.
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Preset:
  """What one reproduction trains and evaluates.

  Attributes:
    name: the preset's name.
    dataset: the name (a key of `DATASETS`) of the dataset its training config is for.
    training: the training config of Ours; every other run is derived from it, and its
      `data.data_dir` is where the dataset is found (and simulated when absent).
    methods: trained rows of the tables: "ours" and names of `baselines.BASELINES`.
    ablations: ablation name -> overrides of Ours, `{"dotted.field": value}`.
    ablation_seeds: seeds (= held-out folds) of each ablation, at most the run's `--seeds`.
    dataset_size: size of the dataset, as `DATASETS[name](dataset_size)`.
    embedding: "tsne" or "pca", the 2-D embedding of the feature plots.
    cpu_workers: runs at once on a CPU backend, each in its own process
      (`experiments.execution.default_workers`).
  """

  name: str
  dataset: str
  training: ml_collections.ConfigDict
  methods: tuple[str, ...]
  ablations: Mapping[str, Mapping[str, Any]]
  ablation_seeds: int
  dataset_size: str
  embedding: str = "tsne"
  cpu_workers: int = 1


# The objective switches meant to keep the features animal-free (`objective_switches`), in
# the order of `objectives.md`.
OBJECTIVE_SWITCHES = ("same_animal_negatives", "partner_positives", "moments_penalty",
                      "swap_ramp", "swap_delayed", "animal_free", "feature_standardised",
                      "no_swap_feature_standardised")
# The row each objective switch is paired with in `objectives.md` (no-swap where not named):
# an evaluation-time switch is compared with no-swap evaluated the same way.
OBJECTIVE_BASELINES = {"feature_standardised": "no_swap_feature_standardised",
                       "no_swap_feature_standardised": "no_swap"}


def _flat_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  flat = {}

  def visit(node, prefix):
    for key, value in node.items():
      if isinstance(value, ml_collections.ConfigDict):
        visit(value, f"{prefix}{key}.")
      else:
        flat[f"{prefix}{key}"] = value

  visit(config, "")
  return flat


def baseline_changes(ours: ml_collections.ConfigDict, name: str) -> dict[str, Any]:
  """The fields (dotted name -> value) that `baselines.apply_baseline` changes in Ours to
  make the baseline `name`, for an ablation row that is that baseline with more changes.

  Example:
    >>> from experiments.configs import locomotion_cpu
    >>> changes = baseline_changes(locomotion_cpu.get_config(), "no_swap")
    >>> changes["swap.enabled"], changes.get("swap.neural_probability", 0.0)
    (False, 0.0)
  """
  before = _flat_fields(ours)
  after = _flat_fields(baselines.apply_baseline(ours.copy_and_resolve_references(), name))
  return {field: value for field, value in after.items()
          if field not in before or before[field] != value}


def objective_switches(ours: ml_collections.ConfigDict) -> dict[str, dict[str, Any]]:
  """The ablations of Ours that switch on one remedy of the features' animal content each.

  Same-animal negatives (an InfoNCE term whose negatives share the query's animal),
  partner positives (neural windows of two animals paired through the swap's behaviour
  partners), the moments penalty (per-animal feature means and spreads against the batch's),
  the swap ramped or delayed over training, the three objective terms together
  (`animal_free`), and the features standardised per animal before the probes
  (`feature_standardised`, with no-swap evaluated alike as its pair,
  `no_swap_feature_standardised`). A switch Ours already has on is left out.

  Example:
    >>> from experiments.configs import locomotion_cpu
    >>> sorted(objective_switches(locomotion_cpu.get_config())) == sorted(OBJECTIVE_SWITCHES)
    True
  """
  terms = {"same_animal_negatives_weight": 1.0, "partner_positive_weight": 1.0,
           "domain_penalty": "moments", "domain_penalty_weight": 1.0}
  switches = {
      "same_animal_negatives": {"same_animal_negatives_weight": 1.0},
      "partner_positives": {"partner_positive_weight": 1.0},
      "moments_penalty": {"domain_penalty": "moments", "domain_penalty_weight": 1.0},
      "swap_ramp": {"swap.schedule": "ramp"},
      "swap_delayed": {"swap.schedule": "delayed"},
      "animal_free": terms,
      "feature_standardised": {"eval.feature_normalisation": "animal"},
      # No-swap (`baselines.BASELINES`) evaluated as `feature_standardised` is.
      "no_swap_feature_standardised": {**baseline_changes(ours, "no_swap"),
                                       "eval.feature_normalisation": "animal"},
  }

  def value_of(field):
    node = ours
    for part in field.split("."):
      node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
    return node

  def already_on(overrides):
    return all(value_of(field) == value for field, value in overrides.items())

  return {name: overrides for name, overrides in switches.items() if not already_on(overrides)}


def ablations_of(ours: ml_collections.ConfigDict) -> dict[str, dict[str, Any]]:
  """The ablations of Ours, one change each.

  The objective switches (`objective_switches`), swap probability and temperature, exact vs top-K swap, one ŝ per window vs per frame, the
  neural swap switched on (or off, if Ours uses it), the neural input's per-animal
  standardisation switched off (or on), Ours' own settings where it has them (the
  behaviour-residual and neural-view terms switched off, the baselines' feature size), and
  each augmentation group switched off, and the encoder at initialisation (what its features
  tell of the animal before training). All of them apply to a behaviour vector too:
  `no_pose_augment` then switches off the vector's augmentations (smoothing, noise, gain, time
  and dimension masks; it has no geometric ones, `augment.behaviour_augmentation_for`).
  """
  other_mode = "topk" if ours.swap.mode == "exact" else "exact"
  if ours.swap.neural_probability > 0:
    neural_swap = {"no_neural_swap": {"swap.neural_probability": 0.0}}
  else:
    neural_swap = {"neural_swap_0.5": {"swap.neural_probability": 0.5}}
  own_settings = {}
  if ours.behaviour_residual_weight:
    own_settings["no_behaviour_residual"] = {"behaviour_residual_weight": 0.0}
  if ours.neural_view_weight:
    own_settings["no_neural_view"] = {"neural_view_weight": 0.0}
  if ours.model.baseline_features not in (None, ours.model.features):
    size = ours.model.baseline_features
    own_settings[f"features_{size}"] = {"model.features": size}
  if ours.data.neural_normalisation == "none":
    standardisation = {"standardised_input": {"data.neural_normalisation": "animal"}}
  else:
    standardisation = {"unstandardised_input": {"data.neural_normalisation": "none"}}
  return {
      **objective_switches(ours),
      "swap_p0.25": {"swap.probability": 0.25},
      "swap_p1.0": {"swap.probability": 1.0},
      "temperature_0.1": {"swap.temperature": 0.1},
      "temperature_10": {"swap.temperature": 10.0},
      f"swap_{other_mode}": {"swap.mode": other_mode},
      "per_frame_target": {"swap.per_frame_target": True},
      **neural_swap,
      **standardisation,
      **own_settings,
      # What the encoder's features tell of the animal before training moves them: a learning
      # rate too small to change a weight (the optimiser needs one above 0).
      "encoder_at_initialisation": {"optim.learning_rate": 1e-12},
      "no_pose_augment": {"augment.pose_enabled": False},
      # The neural-view term compares two augmented views: without augmentations, none.
      "no_neural_augment": {"augment.neural_enabled": False,
                            **({"neural_view_weight": 0.0} if ours.neural_view_weight else {})},
  }


def _smoke_training(dataset: str) -> ml_collections.ConfigDict:
  if dataset.startswith("locomotion"):
    config = locomotion_cpu.get_config("smoke")
  else:
    config = swap_cpu.get_config("smoke")
  config.model.update(width=8, num_blocks=1, features=8, head_hidden=16, embedding=8,
                      image_channels=(4,), baseline_features=None)
  config.behavenet_states = 4
  config.swap.pool_chunk = 256
  config.swap.topk = 8
  config.eval.hop = 10
  return config


def _locomotion_cpu_training() -> ml_collections.ConfigDict:
  """`locomotion_cpu` cut to the cpu preset's budget (`LOCOMOTION_CPU_TRAIN_STEPS`)."""
  training = locomotion_cpu.get_config()
  training.optim.num_train_steps = LOCOMOTION_CPU_TRAIN_STEPS
  training.optim.warmup_steps = max(1, LOCOMOTION_CPU_TRAIN_STEPS // 10)
  training.adapt.num_steps = LOCOMOTION_CPU_ADAPT_STEPS
  return training


def _locomotion_tpu_training() -> ml_collections.ConfigDict:
  """`locomotion_cpu` at `swap_tpu` size: large model, batch and schedule, bfloat16, its
  swap; on the 40-animal version of the dataset (`locomotion_dataset("large")`)."""
  training = locomotion_cpu.get_config()
  tpu = swap_tpu.get_config()
  training.model.update(width=tpu.model.width, num_blocks=tpu.model.num_blocks,
                        features=tpu.model.features, head_hidden=tpu.model.head_hidden,
                        embedding=tpu.model.embedding, dtype=tpu.model.dtype)
  training.optim.update(global_batch_size=tpu.optim.global_batch_size,
                        num_train_steps=tpu.optim.num_train_steps,
                        learning_rate=tpu.optim.learning_rate,
                        warmup_steps=tpu.optim.warmup_steps)
  training.swap.update(mode=tpu.swap.mode, topk=tpu.swap.topk, pool_chunk=tpu.swap.pool_chunk)
  # adapt: locomotion_cpu's 600 steps, each now of 2048 of the held-out animals' ~48,000
  # windows (2 x 4 trials x 60 s).
  training.eval.batch_size = tpu.eval.batch_size
  training.data.worker_count = tpu.data.worker_count
  training.update(checkpoint_every_steps=1000, keep_checkpoints=3, log_every_steps=100)
  return training


def get_config(preset: str = "cpu", dataset: str = "pose") -> Preset:
  """The named preset ("cpu" (default), "tpu" or "smoke") for a dataset of `DATASETS`."""
  if dataset not in DATASETS:
    raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}")
  locomotion = dataset.startswith("locomotion")
  if preset == "cpu":
    if locomotion:
      training = _locomotion_cpu_training()
    else:
      training = swap_cpu.get_config()
      training.optim.num_train_steps = CPU_TRAIN_STEPS
      # A tenth of the run warms up, as 50 of swap_cpu's 500 steps do.
      training.optim.warmup_steps = max(1, CPU_TRAIN_STEPS // 10)
    ablation_seeds, size, embedding = 1, "default", "tsne"
    # Two at once: a run's steps keep both cores busy, but its input, compilation and
    # probes mostly use one, which the other run's steps then take.
    cpu_workers = 2
  elif preset == "tpu":
    training = _locomotion_tpu_training() if locomotion else swap_tpu.get_config()
    training.data.data_dir = paths.default_data_dir()
    training.data.preload_neural = True  # the simulated dataset fits in host memory
    ablation_seeds, size, embedding = 3, "large", "tsne"
    cpu_workers = 1
  elif preset == "smoke":
    training = _smoke_training(dataset)
    ablation_seeds, size, embedding = 1, "tiny", "pca"
    cpu_workers = 1
  else:
    raise ValueError(f"unknown preset {preset!r}; choose one of {list(PRESETS)}")
  if dataset == "locomotion_calibrated":
    training = _calibrated(training)
    if preset == "smoke":
      training.data.num_held_out_animals = 1
  return Preset(name=preset, dataset=dataset, training=training,
                methods=(OURS,) + tuple(baselines.BASELINES),
                ablations=ablations_of(training), ablation_seeds=ablation_seeds,
                dataset_size=size, embedding=embedding, cpu_workers=cpu_workers)


def with_train_steps(preset: Preset, steps: int) -> Preset:
  """The preset with every run trained for `steps` steps, a tenth of them warming up."""
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
    raise ValueError(f"training steps must be a positive integer, got {steps!r}")
  training = ml_collections.ConfigDict(preset.training.to_dict())
  training.optim.num_train_steps = steps
  training.optim.warmup_steps = max(1, steps // 10)
  return dataclasses.replace(preset, training=training)


def with_overrides(preset: Preset, overrides: Mapping[str, Any]) -> Preset:
  """The preset with Ours' training config changed by `{"dotted.field": value}` overrides.

  Every run derives from Ours' config, so a shared field (e.g. `optim.learning_rate`)
  changes every row; a setting of Ours alone (e.g. `swap.neural_probability`, which no
  baseline keeps) changes Ours and its ablations, which are derived again from the new
  config (so the neural swap's ablation becomes switching it off).

  Raises:
    ValueError: an override names a field the config does not have.
  """
  training = ml_collections.ConfigDict(preset.training.to_dict())
  common.apply_overrides(training, overrides, what="--config")
  return dataclasses.replace(preset, training=training, ablations=ablations_of(training))


def method_config(preset: Preset, method: str) -> ml_collections.ConfigDict:
  """The training config of a method of the preset (a copy)."""
  config = ml_collections.ConfigDict(preset.training.to_dict())
  if method == OURS:
    return config
  return baselines.apply_baseline(config, method)


def ablation_config(preset: Preset, ablation: str) -> ml_collections.ConfigDict:
  """Ours with one ablation's overrides (a copy)."""
  if ablation not in preset.ablations:
    raise ValueError(f"unknown ablation {ablation!r}; choose one of {sorted(preset.ablations)}")
  config = ml_collections.ConfigDict(preset.training.to_dict())
  return common.apply_overrides(config, preset.ablations[ablation],
                                what=f"ablation {ablation!r}")
