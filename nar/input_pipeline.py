"""Input pipeline: built shards -> batches of windows, with grain.

Window selection (animals, trials, time blocks, label filters) happens at load time on the
in-memory behaviour index, so any split can be chosen without rebuilding the shards. Pose is
taken from the behaviour index (leg-relative, z-scored with statistics of the training animals
only); neural frames are read from the shards. Training samples every valid centre frame in a
seeded shuffled order (random window offsets and order in one), evaluation tiles the trials
deterministically. Each host reads its own slice of the windows; the grain iterator is
checkpointable.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import grain
import numpy as np

from nar import keypoints
from nar import shards as shards_lib
from nar import windows as windows_lib


@dataclasses.dataclass(frozen=True)
class TimeBlock:
  """Block `index` of `count` equal consecutive time blocks of every trial."""

  index: int
  count: int

  def __post_init__(self):
    if not 0 <= self.index < self.count:
      raise ValueError(f"time block index must lie in [0, {self.count}), got {self.index}")

  def contains(self, centres: np.ndarray, num_frames: int, spec: windows_lib.WindowSpec):
    """Centres whose whole pose window lies inside this block (disjoint across blocks)."""
    start = num_frames * self.index // self.count
    end = num_frames * (self.index + 1) // self.count
    before, after = spec.pose_span
    return (centres - before >= start) & (centres + after < end)


def split_animals(animals: Sequence[str], num_held_out: int,
                  seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """Draws held-out animals. Returns `(training_animals, held_out_animals)`, each sorted."""
  animals = sorted(animals)
  if not 0 <= num_held_out < len(animals):
    raise ValueError(f"cannot hold out {num_held_out} of {len(animals)} animals")
  held_out = set(np.random.default_rng(seed).choice(animals, num_held_out, replace=False))
  return (tuple(a for a in animals if a not in held_out),
          tuple(a for a in animals if a in held_out))


def class_ids(class_names: Sequence[str], names: Iterable[str]) -> list[int]:
  """Indices of `names` in `class_names`, with a clear error for unknown names."""
  ids = []
  for name in names:
    if name not in class_names:
      raise ValueError(f"unknown class {name!r}; the dataset's classes are {list(class_names)}")
    ids.append(list(class_names).index(name))
  return ids


@dataclasses.dataclass(frozen=True)
class WindowIndex:
  """The windows of a selection: trial index and centre frame of each.

  Attributes:
    trial: `[N]` index into the dataset's trials.
    centre: `[N]` centre behaviour frame within the trial.
  """

  trial: np.ndarray
  centre: np.ndarray

  def __len__(self) -> int:
    return len(self.trial)


def select_windows(
    dataset: shards_lib.ShardedDataset,
    spec: windows_lib.WindowSpec,
    *,
    animals: Sequence[str] | None = None,
    trials: Sequence[str] | None = None,
    time_block: TimeBlock | None = None,
    hop: int = 1,
    drop_unlabelled: bool = False,
    drop_classes: Sequence[str] = (),
) -> WindowIndex:
  """Enumerates the windows of a selection of the dataset.

  Args:
    dataset: an opened dataset.
    spec: window geometry.
    animals: animals to take (all if None).
    trials: trial ids to take (all if None), e.g. for single-animal splits by trial.
    time_block: keep only windows inside this time block of each trial.
    hop: keep every `hop`-th valid centre frame (1 for training, larger for evaluation).
    drop_unlabelled: drop windows whose centre frame is unlabelled.
    drop_classes: class names whose windows are dropped (e.g. `("resting",)`).

  Returns:
    The selected windows, ordered by trial then centre.
  """
  if animals is not None:
    unknown = sorted(set(animals) - set(dataset.animals))
    if unknown:
      raise ValueError(f"unknown animals {unknown}; the dataset has {list(dataset.animals)}")
  drop_ids = class_ids(dataset.class_names, drop_classes)
  index = dataset.behaviour_index
  trial_parts, centre_parts = [], []
  for trial in range(index.num_trials):
    if animals is not None and index.animal_ids[trial] not in animals:
      continue
    if trials is not None and index.trial_ids[trial] not in trials:
      continue
    sync = index.trial_array("sync", trial)
    labels = index.trial_array("labels", trial)
    centres = windows_lib.valid_centres(sync, int(index.num_neural_frames[trial]), spec)
    centres = windows_lib.select_centres(
        centres, labels, drop_unlabelled=drop_unlabelled, drop_classes=drop_ids)
    if time_block is not None:
      centres = centres[time_block.contains(centres, len(sync), spec)]
    if hop > 1:
      centres = windows_lib.tile_centres(centres, hop)
    trial_parts.append(np.full(len(centres), trial, np.int64))
    centre_parts.append(centres)
  if not trial_parts or not sum(map(len, trial_parts)):
    raise ValueError(
        f"the selection holds no window (animals={animals}, trials={trials}, "
        f"time_block={time_block}, drop_classes={list(drop_classes)}); check the split")
  return WindowIndex(np.concatenate(trial_parts), np.concatenate(centre_parts))


def pose_features(dataset: shards_lib.ShardedDataset) -> np.ndarray:
  """`[F, 90]` leg-relative pose of every frame of the dataset (NaN where missing)."""
  return keypoints.leg_relative_pose(dataset.behaviour_index.behaviour)


def fit_pose_normalizer(dataset: shards_lib.ShardedDataset,
                        animals: Sequence[str]) -> windows_lib.PoseNormalizer:
  """Fits pose z-scoring on the frames of the given (training) animals only."""
  index = dataset.behaviour_index
  frames = np.concatenate([np.arange(index.offsets[t], index.offsets[t + 1])
                           for t in range(index.num_trials) if index.animal_ids[t] in animals])
  return windows_lib.PoseNormalizer.fit(pose_features(dataset)[frames])


@dataclasses.dataclass(frozen=True)
class PoseBank:
  """Normalised pose of every frame of some animals: the pool of the swap.

  Attributes:
    animals: the animals, in bank order.
    frames: per animal `[M_a, 90]` normalised pose.
    valid: per animal `[M_a]` True where every leg keypoint was observed.
  """

  animals: tuple[str, ...]
  frames: tuple[np.ndarray, ...]
  valid: tuple[np.ndarray, ...]


def animal_frame_offsets(dataset: shards_lib.ShardedDataset) -> dict[str, int]:
  """First concatenated frame of every animal (trials of an animal are contiguous)."""
  index = dataset.behaviour_index
  offsets = {}
  for trial in range(index.num_trials):
    offsets.setdefault(str(index.animal_ids[trial]), int(index.offsets[trial]))
  return offsets


def make_pose_bank(dataset: shards_lib.ShardedDataset, normalizer: windows_lib.PoseNormalizer,
                   animals: Sequence[str]) -> PoseBank:
  """Collects the normalised pose of every frame of `animals` (training animals only)."""
  index = dataset.behaviour_index
  features = normalizer(pose_features(dataset))
  leg_mask = index.keypoint_mask[:, keypoints.leg_keypoint_indices().ravel()].all(axis=-1)
  frames, valid = [], []
  for animal in animals:
    trials = [t for t in range(index.num_trials) if index.animal_ids[t] == animal]
    if not trials:
      raise ValueError(f"animal {animal!r} is not in the dataset")
    rows = slice(int(index.offsets[trials[0]]), int(index.offsets[trials[-1] + 1]))
    frames.append(features[rows])
    valid.append(leg_mask[rows])
  return PoseBank(tuple(animals), tuple(frames), tuple(valid))


class WindowSource:
  """A grain random-access source of windows.

  Each item holds `pose` `[pose_frames, 90]` (normalised), the dataset's neural arrays
  (`neural_images` `[neural_frames, H, W]`, `roi_traces` `[neural_frames, R]`), `label`,
  `animal` (index into `animals`), `trial` (index into the dataset's trials), `centre_frame`
  and `bank_frame_index` `[pose_frames]` (frame index of each pose frame within its animal's
  frames, as in `make_pose_bank`).
  """

  def __init__(self, dataset: shards_lib.ShardedDataset, index: WindowIndex,
               spec: windows_lib.WindowSpec, normalizer: windows_lib.PoseNormalizer,
               neural_keys: Sequence[str] | None = None):
    self._dataset = dataset
    self._index = index
    self._spec = spec
    roi_counts = {dataset.trials[t]["num_rois"] for t in np.unique(index.trial)}
    if neural_keys is None:
      # Traces with different ROI counts cannot be stacked into one batch.
      neural_keys = [k for k in dataset.neural_keys if k != "roi_traces" or len(roi_counts) == 1]
    self._neural_keys = tuple(neural_keys)
    missing = set(self._neural_keys) - set(dataset.neural_keys)
    if missing:
      raise ValueError(f"the dataset has no {sorted(missing)}; it has {dataset.neural_keys}")
    if "roi_traces" in self._neural_keys and len(roi_counts) > 1:
      raise ValueError(
          f"roi_traces have different ROI counts {sorted(roi_counts)} across the selected "
          "animals, so their windows cannot be batched together; select neural_images, or "
          "animals with equal ROI counts")
    behaviour = dataset.behaviour_index
    self._pose = normalizer(pose_features(dataset))
    self.animals = dataset.animals
    animal_of_trial = {a: i for i, a in enumerate(self.animals)}
    self._trial_animal = np.array([animal_of_trial[str(a)] for a in behaviour.animal_ids])
    offsets = animal_frame_offsets(dataset)
    self._trial_bank_offset = np.array(
        [behaviour.offsets[t] - offsets[str(behaviour.animal_ids[t])]
         for t in range(behaviour.num_trials)], np.int64)

  def __len__(self) -> int:
    return len(self._index)

  def __getitem__(self, item: int) -> dict[str, np.ndarray]:
    trial = int(self._index.trial[item])
    centre = int(self._index.centre[item])
    behaviour = self._dataset.behaviour_index
    frames = centre + self._spec.pose_offsets()
    neural_centre = int(behaviour.trial_array("sync", trial)[centre])
    neural_start = neural_centre + int(self._spec.neural_offsets()[0])
    neural = self._dataset.read_neural(trial, neural_start, neural_start + self._spec.neural_frames)
    window = {key: neural[key] for key in self._neural_keys}
    window["pose"] = self._pose[behaviour.offsets[trial] + frames]
    window["label"] = np.int32(behaviour.trial_array("labels", trial)[centre])
    window["animal"] = np.int32(self._trial_animal[trial])
    window["trial"] = np.int32(trial)
    window["centre_frame"] = np.int64(centre)
    window["bank_frame_index"] = (self._trial_bank_offset[trial] + frames).astype(np.int32)
    return window

  def __repr__(self) -> str:
    return f"WindowSource({len(self)} windows of {self._dataset.path})"


def _host_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
  if shard is None:
    import jax  # pylint: disable=g-import-not-at-top
    shard = (jax.process_index(), jax.process_count())
  index, count = shard
  if not 0 <= index < count:
    raise ValueError(f"shard index must lie in [0, {count}), got {index}")
  return index, count


def make_loader(source: WindowSource, *, batch_size: int, train: bool, seed: int = 0,
                num_epochs: int | None = None, worker_count: int = 0,
                shard: tuple[int, int] | None = None) -> grain.IterDataset:
  """Wraps a window source into a grain pipeline of batches.

  Args:
    source: the windows.
    batch_size: windows per batch on this host (the global batch / process count).
    train: shuffle (seeded, a new order every epoch), repeat and drop the last partial batch;
      otherwise ordered passes that keep the last partial batch.
    seed: shuffling seed.
    num_epochs: passes over the data (default: forever when training, once otherwise).
    worker_count: grain worker processes (0 reads in the main process).
    shard: `(index, count)` of this host's part of the windows; by default
      `(jax.process_index(), jax.process_count())`, so each host reads its own part.

  Returns:
    A `grain.IterDataset`; `iter()` of it has `get_state` / `set_state` for checkpointing.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  index, count = _host_shard(shard)
  dataset = grain.MapDataset.source(source)[index::count]
  if train and len(dataset) < batch_size:
    raise ValueError(f"{source} holds {len(dataset)} windows for this host, fewer than one "
                     f"batch of {batch_size}")
  if train:
    dataset = dataset.seed(seed).shuffle()
  epochs = num_epochs if num_epochs is not None else (None if train else 1)
  if epochs != 1:
    dataset = dataset.repeat(epochs)
  dataset = dataset.batch(batch_size, drop_remainder=train)
  # Reading in the calling thread: grain's thread prefetching costs more than it saves for
  # windows that are cut from memory in tens of microseconds.
  iterable = dataset.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
  if worker_count > 0:
    iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return iterable
