"""Input pipeline: built shards -> batches of windows, with grain.

Window selection (animals, trials, time blocks, label filters) happens at load time on the
in-memory behaviour index, so any split can be chosen without rebuilding the shards. Pose is
taken from the behaviour index (leg-relative, z-scored with statistics of the training animals
only); neural frames are read from the shards. Training samples every valid centre frame in a
seeded shuffled order (random window offsets and order in one), evaluation tiles the trials
deterministically. Each host reads its own slice of the windows; the grain iterator is
checkpointable.

"Pose" stands for the behaviour of any format (`nar.data.behaviour`): for a per-frame feature
vector, each dimension gets its declared normalisation instead (statistics of the training
animals only as well). ROI counts that differ between animals are padded on request
(`WindowSource(..., pad_rois=True)`).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import Iterable, Sequence

import grain
import numpy as np

from nar.data import normalise
from nar.data import shards as shards_lib
from nar.data import windows as windows_lib


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
  """Draws held-out animals. Returns `(training_animals, held_out_animals)`, each sorted.

  Example:
    >>> split_animals(["fly_a", "fly_b", "fly_c", "fly_d"], num_held_out=1, seed=0)
    (('fly_a', 'fly_b', 'fly_c'), ('fly_d',))
  """
  animals = sorted(animals)
  if not 0 <= num_held_out < len(animals):
    raise ValueError(f"cannot hold out {num_held_out} of {len(animals)} animals")
  held_out = set(np.random.default_rng(seed).choice(animals, num_held_out, replace=False))
  return (tuple(a for a in animals if a not in held_out),
          tuple(a for a in animals if a in held_out))


def subsample_animals(training_animals: Sequence[str], num_training: int | None,
                      seed: int) -> tuple[str, ...]:
  """The first `num_training` of the training animals in an order drawn by `seed`, sorted.

  The order is one permutation per seed, so that the subsets of one seed are nested: the 2
  animals of `num_training=2` are among the 4 of `num_training=4`.

  Example:
    >>> flies = ["fly_a", "fly_b", "fly_c", "fly_d", "fly_e"]
    >>> subsample_animals(flies, 2, seed=0), subsample_animals(flies, 4, seed=0)
    (('fly_b', 'fly_e'), ('fly_a', 'fly_b', 'fly_d', 'fly_e'))
    >>> subsample_animals(flies, None, seed=0) == tuple(flies)
    True

  Raises:
    ValueError: `num_training` below 1 or above the number of training animals.
  """
  animals = sorted(training_animals)
  if num_training is None:
    return tuple(animals)
  if not 1 <= num_training <= len(animals):
    raise ValueError(f"data.num_training_animals must lie in [1, {len(animals)}] (the animals "
                     f"not held out), got {num_training}")
  # A stream of its own: the held-out draw of the same seed is unchanged.
  order = np.random.default_rng([seed, 1]).permutation(len(animals))
  chosen = set(order[:num_training].tolist())
  return tuple(a for i, a in enumerate(animals) if i in chosen)


def named_split(animals: Sequence[str], held_out_animals: Sequence[str]
                ) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """Holds out the named animals. Returns `(training_animals, held_out_animals)`, each sorted.

  Example:
    >>> named_split(["fly_a", "fly_b", "fly_c"], ["fly_c"])
    (('fly_a', 'fly_b'), ('fly_c',))

  Raises:
    ValueError: a name that is not one of `animals` (the message lists them), a name given
      twice, or every animal held out.
  """
  animals = sorted(animals)
  unknown = sorted(set(held_out_animals) - set(animals))
  if unknown:
    raise ValueError(f"data.held_out_animals names {unknown}, which are not animals of the "
                     f"dataset; its animals: {animals}")
  if len(set(held_out_animals)) != len(held_out_animals):
    raise ValueError(f"data.held_out_animals names an animal twice: {list(held_out_animals)}")
  training = tuple(a for a in animals if a not in held_out_animals)
  if not training:
    raise ValueError("data.held_out_animals holds out every animal; none is left to train on")
  return training, tuple(a for a in animals if a in held_out_animals)


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
  """`[F, D]` behaviour features of every frame before z-scoring (NaN where missing; read
  only, computed once per opened dataset).

  D = 90 leg-relative pose coordinates for DeepFly3D pose; for a vector format, its
  dimensions with each angle as (cos, sin) (`dataset.behaviour_spec.feature_dim`).
  """
  return dataset.behaviour_features


def fit_pose_normalizer(dataset: shards_lib.ShardedDataset,
                        animals: Sequence[str]) -> windows_lib.PoseNormalizer:
  """Fits the behaviour normalisation on the frames of the given (training) animals only.

  Pose features are all z-scored; a vector's "zscore" dimensions are z-scored and its angle
  features and "none" dimensions pass unchanged (`BehaviourSpec.fitted_features`).
  """
  unknown = sorted(set(animals) - set(dataset.animals))
  if unknown or not len(animals):
    raise ValueError(f"cannot fit the behaviour normalisation on animals {list(animals)}: "
                     f"give some of the dataset's animals {list(dataset.animals)}")
  index = dataset.behaviour_index
  frames = np.concatenate([np.arange(index.offsets[t], index.offsets[t + 1])
                           for t in range(index.num_trials) if index.animal_ids[t] in animals])
  return windows_lib.PoseNormalizer.fit(pose_features(dataset)[frames],
                                        fitted=dataset.behaviour_spec.fitted_features())


@dataclasses.dataclass(frozen=True)
class PoseFrames:
  """Normalised pose of every frame of some animals: the pool of the swap.

  Attributes:
    animals: the animals, in bank order.
    frames: per animal `[M_a, D]` normalised behaviour features (D = 90 for pose).
    valid: per animal `[M_a]` True where every leg keypoint (pose) or every dimension
      (vector formats) was observed.
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


def collect_pose_frames(dataset: shards_lib.ShardedDataset,
                        normalizer: windows_lib.PoseNormalizer,
                        animals: Sequence[str]) -> PoseFrames:
  """Collects the normalised behaviour of every frame of `animals` (training animals only)."""
  index = dataset.behaviour_index
  features = normalizer(pose_features(dataset))
  leg_mask = dataset.behaviour_spec.frame_valid(index.keypoint_mask)
  frames, valid = [], []
  for animal in animals:
    trials = [t for t in range(index.num_trials) if index.animal_ids[t] == animal]
    if not trials:
      raise ValueError(f"animal {animal!r} is not in the dataset")
    rows = slice(int(index.offsets[trials[0]]), int(index.offsets[trials[-1] + 1]))
    frames.append(features[rows])
    valid.append(leg_mask[rows])
  return PoseFrames(tuple(animals), tuple(frames), tuple(valid))


class WindowSource:
  """A grain random-access source of windows.

  Each item holds `pose` `[pose_frames, D]` (normalised behaviour features; D = 90 for pose,
  `dataset.behaviour_spec.feature_dim` in general), the dataset's neural arrays
  (`neural_images` `[neural_frames, H, W]`, `roi_traces` `[neural_frames, R]`), `label`,
  `animal` (index into `animals`), `trial` (index into the dataset's trials), `centre_frame`
  and `bank_frame_index` `[pose_frames]` (frame index of each pose frame within its animal's
  frames, as in `collect_pose_frames`).

  ROI counts R may differ between animals. Without padding, windows of animals with
  different R cannot be batched together: `roi_traces` is left out by default and asking for
  it is an error (a shared encoder needs one R). With `pad_rois`, every window's
  `roi_traces` is `[neural_frames, R_pad]`, zero beyond the animal's own R, and the item also
  holds `roi_mask` `[R_pad]` bool (True for the animal's real ROIs) and `num_rois` (its R) for
  a per-animal input layer (`dataset.roi_counts` gives every animal's R).
  """

  def __init__(self, dataset: shards_lib.ShardedDataset, index: WindowIndex,
               spec: windows_lib.WindowSpec, normalizer: windows_lib.PoseNormalizer,
               neural_keys: Sequence[str] | None = None, *, pad_rois: bool | int = False,
               neural_normalizer: normalise.NeuralNormalizer | None = None):
    """Creates the source.

    Args:
      dataset: an opened dataset.
      index: the windows (`select_windows`).
      spec: window geometry.
      normalizer: behaviour normalisation (`fit_pose_normalizer`, training animals only).
      neural_keys: the neural arrays to read; by default all the dataset has, less
        `roi_traces` when their R differ across the selected animals and `pad_rois` is off.
      neural_normalizer: per-animal standardisation of one of the neural arrays (applied
        before ROI padding), or None to read them as stored.
      pad_rois: False: ROI traces as stored. True: zero-pad them to `dataset.max_rois` (the
        largest R of any animal of the dataset, so that training and evaluation sources
        agree). An int: pad to that width (at least the largest R of the selected animals).
    """
    self._dataset = dataset
    self._index = index
    self._spec = spec
    roi_counts = {dataset.trials[t]["num_rois"] for t in np.unique(index.trial)}
    self._roi_width = self._padded_roi_width(dataset, roi_counts, pad_rois)
    if neural_keys is None:
      # Traces with different ROI counts cannot be stacked into one batch unless padded.
      neural_keys = [k for k in dataset.neural_keys
                     if k != "roi_traces" or len(roi_counts) == 1 or self._roi_width]
    self._neural_keys = tuple(neural_keys)
    self._neural_normalizer = neural_normalizer
    missing = set(self._neural_keys) - set(dataset.neural_keys)
    if missing:
      raise ValueError(f"the dataset has no {sorted(missing)}; it has {dataset.neural_keys}")
    if "roi_traces" in self._neural_keys and len(roi_counts) > 1 and not self._roi_width:
      raise ValueError(
          f"roi_traces have different ROI counts {sorted(roi_counts)} across the selected "
          "animals, so their windows cannot be batched together; select neural_images, or "
          "animals with equal ROI counts, or pass pad_rois=True for windows padded to the "
          "largest ROI count with a roi_mask (for a per-animal input layer)")
    behaviour = dataset.behaviour_index
    self._pose = normalizer(pose_features(dataset))
    self.animals = dataset.animals
    animal_of_trial = {a: i for i, a in enumerate(self.animals)}
    self._trial_animal = np.array([animal_of_trial[str(a)] for a in behaviour.animal_ids])
    offsets = animal_frame_offsets(dataset)
    self._trial_bank_offset = np.array(
        [behaviour.offsets[t] - offsets[str(behaviour.animal_ids[t])]
         for t in range(behaviour.num_trials)], np.int64)

  @staticmethod
  def _padded_roi_width(dataset: shards_lib.ShardedDataset, roi_counts: set,
                        pad_rois: bool | int) -> int:
    """The width ROI traces are padded to; 0 for no padding."""
    if pad_rois is False or pad_rois is None:
      return 0
    if not dataset.has_roi_traces:
      raise ValueError(f"pad_rois needs roi_traces, and {dataset.path} holds none (its neural "
                       f"data: {list(dataset.neural_keys)})")
    if pad_rois is True:
      return dataset.max_rois
    if isinstance(pad_rois, (int, np.integer)) and pad_rois >= max(roi_counts):
      return int(pad_rois)
    raise ValueError(f"pad_rois must be True, False or a width >= the largest ROI count of "
                     f"the selected animals ({max(roi_counts)}), got {pad_rois!r}")

  @property
  def neural_normalizer(self) -> normalise.NeuralNormalizer | None:
    """The per-animal standardisation applied to every neural window, or None."""
    return self._neural_normalizer

  @property
  def roi_width(self) -> int | None:
    """The padded ROI width of `roi_traces` windows, or None when they are not padded."""
    return self._roi_width or None

  def __len__(self) -> int:
    return len(self._index)

  def __getitem__(self, item: int) -> dict[str, np.ndarray]:
    return {key: value[0] for key, value in self.read_batch([item]).items()}

  def read_batch(self, items: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
    """Reads many windows at once: `self[i]` for each i, stacked along a leading axis.

    Gathered with one indexing operation per array where the layout allows, so a batch costs
    a fraction of its windows read singly: what keeps an accelerator's step fed
    (`make_loader` reads through it; `self[i]` is a batch of one).

    Args:
      items: `[B]` window indices.

    Returns:
      name -> `[B, ...]` array, the keys and dtypes of `self[i]`.
    """
    items = np.asarray(items, np.int64)
    if items.ndim != 1 or not len(items):
      raise ValueError(f"items must be a non-empty 1-D sequence of indices, got shape "
                       f"{items.shape}")
    if items.min() < -len(self) or items.max() >= len(self):
      raise IndexError(f"window index out of range for {len(self)} windows: "
                       f"[{items.min()}, {items.max()}]")
    behaviour = self._dataset.behaviour_index
    trials = self._index.trial[items].astype(np.int64)
    centres = self._index.centre[items].astype(np.int64)
    frames = centres[:, None] + self._spec.pose_offsets()[None]  # [B, pose_frames]
    trial_starts = behaviour.offsets[trials].astype(np.int64)
    neural_starts = (behaviour.sync[trial_starts + centres].astype(np.int64)
                     + int(self._spec.neural_offsets()[0]))
    length = self._spec.neural_frames
    reads = [self._dataset.read_neural(int(t), int(s), int(s) + length)
             for t, s in zip(trials, neural_starts)]
    neural = {key: [read[key] for read in reads] for key in self._neural_keys}
    standardise = self._neural_normalizer
    if standardise is not None and standardise.key in neural:
      animal_ids = behaviour.animal_ids[trials]
      values = neural[standardise.key]
      if len({value.shape for value in values}) == 1:
        neural[standardise.key] = standardise.standardise_windows(animal_ids, np.stack(values))
      else:  # ROI counts that differ between animals cannot be stacked before padding
        neural[standardise.key] = [standardise(str(animal), value)
                                   for animal, value in zip(animal_ids, values)]
    batch = {}
    for key, values in neural.items():
      if key == "roi_traces" and self._roi_width:
        num_rois = np.array([value.shape[1] for value in values], np.int32)
        padded = np.zeros((len(items), length, self._roi_width), np.float32)
        for row, value in enumerate(values):
          padded[row, :, :value.shape[1]] = value
        batch["roi_traces"] = padded
        batch["roi_mask"] = np.arange(self._roi_width)[None] < num_rois[:, None]
        batch["num_rois"] = num_rois
      else:
        batch[key] = values if isinstance(values, np.ndarray) else np.stack(values)
    batch["pose"] = self._pose[trial_starts[:, None] + frames]
    batch["label"] = behaviour.labels[trial_starts + centres].astype(np.int32)
    batch["animal"] = self._trial_animal[trials].astype(np.int32)
    batch["trial"] = trials.astype(np.int32)
    batch["centre_frame"] = centres
    batch["bank_frame_index"] = (self._trial_bank_offset[trials][:, None] + frames).astype(
        np.int32)
    return batch

  def frame_arrays_bytes(self, neural_key: str) -> int:
    """The bytes `frame_arrays(neural_key)` would hold, computed without reading them."""
    sample = self[0]
    frame_bytes = int(np.prod(sample[neural_key].shape[1:])) * 4
    trials = np.unique(self._index.trial)
    neural = sum(int(self._dataset.trials[t]["num_neural_frames"]) for t in trials)
    pose = self._pose.shape[0] * self._pose.shape[1] * 4
    return neural * frame_bytes + pose + 5 * 4 * len(self)

  def frame_arrays(self, neural_key: str) -> dict[str, np.ndarray]:
    """Every frame the windows read and where each window starts: a copy that can live on a
    device (`nar.data.device`), from which `read_batch` is a gather.

    Window i of `read_batch([i])` is `pose[pose_start[i] + pose_offsets]`,
    `neural[neural_start[i]:neural_start[i] + neural_frames]` (standardised and ROI-padded as
    `read_batch` does), `bank_frame_index = bank_start[i] + pose_offsets`, `animal[i]` and
    `label[i]`.

    Args:
      neural_key: the neural array to hold (one of the source's).

    Returns:
      `pose [F, D]` float32 (every behaviour frame of the dataset), `neural [N, ...]` float32
      (the neural frames of the trials the windows come from, trial after trial),
      `pose_start`, `neural_start`, `bank_start`, `animal`, `label` `[W]` int32 and
      `pose_offsets [T]` int32.
    """
    if neural_key not in self._neural_keys:
      raise ValueError(f"the source reads {list(self._neural_keys)}, not {neural_key!r}")
    behaviour = self._dataset.behaviour_index
    trials = np.unique(self._index.trial).astype(np.int64)
    neural, first_neural_frame = [], {}
    offset = 0
    for trial in trials:
      length = int(self._dataset.trials[trial]["num_neural_frames"])
      values = self._dataset.read_neural(int(trial), 0, length)[neural_key]
      standardise = self._neural_normalizer
      if standardise is not None and standardise.key == neural_key:
        values = standardise(str(behaviour.animal_ids[trial]), values)
      if neural_key == "roi_traces" and self._roi_width:
        values = np.pad(values, ((0, 0), (0, self._roi_width - values.shape[1])))
      neural.append(np.asarray(values, np.float32))
      first_neural_frame[int(trial)] = offset
      offset += length
    window_trials = self._index.trial.astype(np.int64)
    centres = self._index.centre.astype(np.int64)
    trial_starts = behaviour.offsets[window_trials].astype(np.int64)
    neural_starts = (behaviour.sync[trial_starts + centres].astype(np.int64)
                     + int(self._spec.neural_offsets()[0])
                     + np.array([first_neural_frame[t] for t in window_trials], np.int64))
    return {
        "pose": np.asarray(self._pose, np.float32),
        "neural": np.concatenate(neural),
        "pose_start": (trial_starts + centres).astype(np.int32),
        "neural_start": neural_starts.astype(np.int32),
        "bank_start": (self._trial_bank_offset[window_trials] + centres).astype(np.int32),
        "animal": self._trial_animal[window_trials].astype(np.int32),
        "label": behaviour.labels[trial_starts + centres].astype(np.int32),
        "pose_offsets": np.asarray(self._spec.pose_offsets(), np.int32),
    }

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


# How often a worker process checks that the process that started it is alive.
ORPHAN_CHECK_SECONDS = 0.5


def exit_when_orphaned(worker_index: int, worker_count: int) -> None:
  """Worker init (grain's `worker_init_fn`): the worker exits once its parent is gone.

  A main process killed outright (by the out-of-memory killer, `kill -9`, a pre-empted job)
  cannot stop its input workers, and they would keep their memory (each its own neural
  cache) until found by hand. A daemon thread of the worker watches its parent process id,
  which changes when the parent dies (the orphan is re-parented).
  """
  del worker_index, worker_count
  parent = os.getppid()

  def watch():
    while os.getppid() == parent:
      time.sleep(ORPHAN_CHECK_SECONDS)
    os._exit(1)  # pylint: disable=protected-access

  threading.Thread(target=watch, name="exit-when-orphaned", daemon=True).start()


def _window_indices(items: np.ndarray) -> dict[str, np.ndarray]:
  return {"window": np.asarray(items, np.int32)}


def make_loader(source: WindowSource, *, batch_size: int, train: bool, seed: int = 0,
                num_epochs: int | None = None, worker_count: int = 0,
                shard: tuple[int, int] | None = None,
                read_windows: bool = True) -> grain.IterDataset:
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
    read_windows: False yields the same batches as window indices only, `{"window": [B]}`
      int32, for a step that gathers them from a device-resident copy (`nar.data.device`).

  Returns:
    A `grain.IterDataset`; `iter()` of it has `get_state` / `set_state` for checkpointing.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  index, count = _host_shard(shard)
  # Shuffled and batched as indices, then read a batch at a time (`WindowSource.read_batch`):
  # the same windows in the same order as batching the source's items, at a fraction of the
  # per-item cost.
  dataset = grain.MapDataset.range(len(source))[index::count]
  if train and len(dataset) < batch_size:
    raise ValueError(f"{source} holds {len(dataset)} windows for this host, fewer than one "
                     f"batch of {batch_size}")
  if train:
    dataset = dataset.seed(seed).shuffle()
  epochs = num_epochs if num_epochs is not None else (None if train else 1)
  if epochs != 1:
    dataset = dataset.repeat(epochs)
  dataset = dataset.batch(batch_size, drop_remainder=train).map(
      source.read_batch if read_windows else _window_indices)
  # Reading in the calling thread: grain's thread prefetching costs more than it saves for
  # windows that are cut from memory in tens of microseconds.
  iterable = dataset.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
  if worker_count > 0:
    iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count),
                                    worker_init_fn=exit_when_orphaned)
  return iterable
