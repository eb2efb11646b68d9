"""The data side of a run: config x dataset -> the animal split, windows and normalisers.

`create_input(config)` opens the dataset, draws the held-out animals, fits the pose normaliser
on the training animals, chooses the neural input layer (`resolve_neural_input`) and the
per-animal neural standardisation, and returns them as an `Input`.
"""

from __future__ import annotations

import dataclasses

from absl import logging
import jax
import ml_collections

from nar import models
from nar.data import normalise
from nar.data import pipeline
from nar.data import shards
from nar.data import windows


@dataclasses.dataclass
class Input:
  """The data side of a run.

  Attributes:
    num_rois: the width of `roi_traces` windows (padded to the largest ROI count with a
      per-animal input layer); None for neural images.
    neural_input: "shared" (one encoder for every animal) or "per_animal" (a per-animal
      input layer; `resolve_neural_input`).
    roi_counts: with a per-animal input layer, the ROI count of every dataset animal (in
      `dataset.animals` order, held-out animals included); None otherwise.
    neural_normalizer: the per-animal standardisation of the neural input
      (`config.data.neural_normalisation`), or None.
  """

  dataset: shards.ShardedDataset
  spec: windows.WindowSpec
  training_animals: tuple[str, ...]
  held_out_animals: tuple[str, ...]
  normalizer: windows.PoseNormalizer
  train_source: pipeline.WindowSource
  neural_key: str
  num_rois: int | None
  neural_input: str = "shared"
  roi_counts: tuple[int, ...] | None = None
  neural_normalizer: normalise.NeuralNormalizer | None = None

  @property
  def pad_rois(self) -> bool:
    """Whether ROI traces are padded to the largest ROI count (for a per-animal input)."""
    return self.neural_input == "per_animal"


NEURAL_INPUTS = ("auto", "shared", "per_animal")


def resolve_neural_input(choice: str, dataset: shards.ShardedDataset, neural_key: str) -> str:
  """The neural input layer a run uses: "shared" or "per_animal".

  Args:
    choice: `config.model.neural_input`: "auto" (a per-animal input layer for ROI traces
      whose ROI counts differ between the dataset's animals, one shared encoder otherwise),
      "shared" or "per_animal" (ROI traces only, even with equal ROI counts).
    dataset: the opened dataset.
    neural_key: the neural array the encoder reads.

  Raises:
    ValueError: for an unknown choice, a per-animal layer on neural images, or a shared
      encoder on ROI traces whose counts differ (ROI r is another cell in every animal).
  """
  if choice not in NEURAL_INPUTS:
    raise ValueError(f"model.neural_input must be one of {NEURAL_INPUTS}, got {choice!r}")
  if neural_key != "roi_traces":
    if choice == "per_animal":
      raise ValueError(f"model.neural_input='per_animal' maps each animal's ROI traces; "
                       f"data.neural_key={neural_key!r} is read by one shared encoder (use "
                       "'auto' or 'shared')")
    return "shared"
  counts = sorted(set(dataset.roi_counts.values()))
  if choice == "auto":
    return "per_animal" if len(counts) > 1 else "shared"
  if choice == "shared" and len(counts) > 1:
    raise ValueError(f"the animals of {dataset.path} have different ROI counts {counts}, which "
                     "one shared encoder cannot read; set model.neural_input='per_animal' (or "
                     "'auto')")
  return choice


def probed_animals(inputs: Input) -> tuple[str, ...] | None:
  """The animals the probes see: the training and the held-out ones, or None (every animal of
  the dataset) when `data.num_training_animals` leaves none out."""
  used = set(inputs.training_animals) | set(inputs.held_out_animals)
  if used >= set(inputs.dataset.animals):
    return None
  return tuple(a for a in inputs.dataset.animals if a in used)


def open_and_split(config: ml_collections.ConfigDict,
                   datasets: shards.DatasetCache | None = None
                   ) -> tuple[shards.ShardedDataset, tuple[str, ...], tuple[str, ...]]:
  """Opens the dataset (metadata and behaviour only) and chooses the animal split.

  The held-out animals are those `config.data.held_out_animals` names, when it names any (an
  unknown name is an error that lists the dataset's animals); else
  `config.data.num_held_out_animals` drawn with `config.data.split_seed`. With
  `config.data.num_training_animals`, only that many of the others train (drawn with the same
  seed); the rest are in neither tuple.

  Returns:
    `(dataset, training_animals, held_out_animals)`, before any neural data is read.
  """
  open_dataset = shards.open_dataset if datasets is None else datasets.open
  dataset = open_dataset(config.data.data_dir, config.data.name,
                         neural_cache_bytes=config.data.neural_cache_mb << 20)
  if config.data.held_out_animals:
    training, held_out = pipeline.named_split(dataset.animals, config.data.held_out_animals)
  else:
    training, held_out = pipeline.split_animals(
        dataset.animals, config.data.num_held_out_animals, config.data.split_seed)
  training = pipeline.subsample_animals(training, config.data.get("num_training_animals"),
                                        config.data.split_seed)
  return dataset, training, held_out


def create_input(config: ml_collections.ConfigDict,
                 datasets: shards.DatasetCache | None = None, *,
                 split: tuple[shards.ShardedDataset, tuple[str, ...], tuple[str, ...]]
                 | None = None) -> Input:
  """Opens the dataset, chooses the animal split and builds the training windows.

  Given `datasets`, the dataset (with its preloaded neural data and behaviour features) comes
  from that cache, opened there once for every run of the process that passes it.

  With a per-animal input layer (`config.model.neural_input`, `resolve_neural_input`) ROI
  traces are padded to the dataset's largest ROI count, so that windows of all animals (the
  held-out ones too) share one shape. With `config.data.neural_normalisation="animal"`, every
  animal's neural input (held-out animals' too) is standardised with its own statistics,
  fitted without labels on the first `data.neural_calibration_fraction` of each trial
  (`nar.data.normalise`). The dataset and split come from `open_and_split` unless `split`
  gives them.
  """
  if split is None:
    split = open_and_split(config, datasets)
  dataset, training, held_out = split
  if config.data.preload_neural and not dataset.preload_neural():
    logging.warning("Neural data (%.0f MiB) exceeds data.neural_cache_mb; reading on demand",
                    dataset.neural_bytes() / 2**20)
  spec = windows.WindowSpec(**config.data.window)
  if len(training) < 2 and config.swap.enabled:
    raise ValueError(f"the swap needs at least two training animals, got {list(training)}")
  normalizer = pipeline.fit_pose_normalizer(dataset, training)
  index = pipeline.select_windows(
      dataset, spec, animals=training, drop_unlabelled=config.data.drop_unlabelled,
      drop_classes=tuple(config.data.drop_classes))
  key = config.data.neural_key
  neural_input = resolve_neural_input(config.model.neural_input, dataset, key)
  per_animal = neural_input == "per_animal"
  neural_normalizer = _neural_normalizer(config, dataset, key)
  source = pipeline.WindowSource(dataset, index, spec, normalizer, neural_keys=(key,),
                                 pad_rois=per_animal, neural_normalizer=neural_normalizer)
  num_rois = None
  if key == "roi_traces":
    num_rois = int(source[0]["roi_traces"].shape[-1])
  roi_counts = tuple(dataset.roi_counts.values()) if per_animal else None
  return Input(dataset, spec, training, held_out, normalizer, source, key, num_rois,
               neural_input=neural_input, roi_counts=roi_counts,
               neural_normalizer=neural_normalizer)


def _neural_normalizer(config: ml_collections.ConfigDict, dataset: shards.ShardedDataset,
                       key: str) -> normalise.NeuralNormalizer | None:
  """The configured standardisation of the neural input, checked before any work."""
  mode = config.data.neural_normalisation
  if mode not in normalise.MODES:
    raise ValueError(f"data.neural_normalisation must be one of {normalise.MODES}, "
                     f"got {mode!r}")
  if mode == "none":
    return None
  fraction = normalise.calibration_fraction(
      config.data.neural_calibration_fraction, config.eval.identity_time_blocks)
  return normalise.NeuralNormalizer.fit(
      dataset, key, calibration_fraction=fraction, progress=jax.process_index() == 0)


def neural_image_shape(inputs: Input) -> tuple[int, int] | None:
  if inputs.neural_key != "neural_images":
    return None
  height, width = inputs.train_source[0]["neural_images"].shape[-2:]
  return int(height), int(width)


def model_shapes(inputs: Input) -> models.ModelShapes:
  """The shapes of the run's data that its model is built for (kept in `run.json`)."""
  image_shape = neural_image_shape(inputs)
  return models.ModelShapes(
      pose_dim=int(inputs.train_source[0]["pose"].shape[-1]), neural_key=inputs.neural_key,
      num_rois=inputs.num_rois, image_shape=image_shape, roi_counts=inputs.roi_counts,
      num_animals=len(inputs.dataset.animals), num_classes=len(inputs.dataset.class_names),
      pose_frames=inputs.spec.pose_frames)
