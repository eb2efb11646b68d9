"""Reads datasets built as TFDS array_record shards (no TensorFlow needed).

A built dataset is a TFDS version directory holding one split of trial segments
(`nar.data.builder` writes it) and `behaviour_index.npz`: every trial's behaviour,
keypoint mask, sync and labels. The behaviour index is small and held in memory; neural
frames are read from the shards on demand, one or two segments per window.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import re
from typing import Sequence
import uuid

from etils import epath
import numpy as np
import tqdm

from nar.data import behaviour as behaviour_lib
from nar.data import recording as recording_lib

FORMAT_VERSION = 1
SEGMENTS_SPLIT = "segments"
BEHAVIOUR_INDEX_FILE = "behaviour_index.npz"
BUILDER_NAME = "nar_recordings"


class DatasetNotFoundError(FileNotFoundError):
  """No complete dataset at the given location."""


def write_behaviour_index(path: str, recordings: Sequence[recording_lib.Recording]) -> None:
  """Writes the behaviour of all trials, concatenated, to an `.npz` file (atomically)."""
  lengths = [r.num_behaviour_frames for r in recordings]
  arrays = {
      "animal_ids": np.array([r.animal_id for r in recordings]),
      "trial_ids": np.array([r.trial_id for r in recordings]),
      "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
      "num_neural_frames": np.array([r.num_neural_frames for r in recordings], np.int64),
      "behaviour": np.concatenate([r.behaviour for r in recordings]).astype(np.float32),
      "keypoint_mask": np.concatenate([r.keypoint_mask for r in recordings]),
      "sync": np.concatenate([r.sync for r in recordings]).astype(np.int64),
      "labels": np.concatenate([r.labels for r in recordings]).astype(np.int32),
  }
  directory = os.path.dirname(path) or "."
  temporary = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
  # os.open applies the umask to 0o666 like any new file; a NamedTemporaryFile would be
  # 0o600 and keep the other users of a shared data directory from reading the index.
  descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
  try:
    with os.fdopen(descriptor, "wb") as f:
      np.savez(f, **arrays)
    os.replace(temporary, path)
  except BaseException:
    # Also on KeyboardInterrupt: no half-written file may be left beside the dataset.
    if os.path.exists(temporary):
      os.remove(temporary)
    raise


@dataclasses.dataclass(frozen=True)
class BehaviourIndex:
  """Behaviour of every trial of a dataset, concatenated along frames.

  Attributes:
    animal_ids: `[num_trials]` animal of each trial.
    trial_ids: `[num_trials]` trial name of each trial.
    offsets: `[num_trials + 1]` start of each trial in the concatenated arrays.
    num_neural_frames: `[num_trials]` T_n of each trial.
    behaviour: `[F, ...]` raw behaviour frames (pose `[F, 38, 3]` or a vector `[F, D]`, NaN
      where missing).
    keypoint_mask: `[F, K]` True where observed (K = 38 keypoints, or the D dimensions).
    sync: `[F]` neural frame index within the trial.
    labels: `[F]` labels.
  """

  animal_ids: np.ndarray
  trial_ids: np.ndarray
  offsets: np.ndarray
  num_neural_frames: np.ndarray
  behaviour: np.ndarray
  keypoint_mask: np.ndarray
  sync: np.ndarray
  labels: np.ndarray

  @classmethod
  def load(cls, path: str | os.PathLike) -> "BehaviourIndex":
    with epath.Path(path).open("rb") as f, np.load(f) as data:
      return cls(**{field.name: data[field.name] for field in dataclasses.fields(cls)})

  @property
  def num_trials(self) -> int:
    return len(self.animal_ids)

  def trial_slice(self, trial: int) -> slice:
    return slice(int(self.offsets[trial]), int(self.offsets[trial + 1]))

  def trial_array(self, name: str, trial: int) -> np.ndarray:
    """One trial's part of a concatenated array (`behaviour`, `sync`, ...)."""
    return getattr(self, name)[self.trial_slice(trial)]


@dataclasses.dataclass
class ShardedDataset:
  """A built dataset: metadata, behaviour index and lazily opened shards.

  Attributes:
    path: the TFDS version directory.
    metadata: the builder's metadata (class names, animals, trials, segment table, ...).
    behaviour_index: every trial's behaviour, sync and labels.
    neural_cache_bytes: budget of the least-recently-used cache of decoded neural segments
      (per process). Consecutive windows share segments and an epoch revisits them, so a
      dataset whose neural data fits the budget is decoded once; 0 disables the cache.
  """

  path: epath.Path
  metadata: dict
  behaviour_index: BehaviourIndex
  neural_cache_bytes: int = 1 << 30
  _neural_cache: collections.OrderedDict = dataclasses.field(
      default_factory=collections.OrderedDict, repr=False)
  _neural_cache_size: int = dataclasses.field(default=0, repr=False)
  # trial -> neural key -> that trial's frames, once `preload_neural` has decoded them all.
  _trial_neural: dict = dataclasses.field(default_factory=dict, repr=False)

  @property
  def class_names(self) -> tuple[str, ...]:
    return tuple(self.metadata["class_names"])

  @property
  def animals(self) -> tuple[str, ...]:
    return tuple(self.metadata["animals"])

  @property
  def trials(self) -> list[dict]:
    return self.metadata["trials"]

  @functools.cached_property
  def behaviour_spec(self) -> behaviour_lib.BehaviourSpec:
    """The behaviour's format, dimension names, normalisations and swap weights."""
    return behaviour_lib.BehaviourSpec.from_metadata(self.metadata)

  @functools.cached_property
  def behaviour_features(self) -> np.ndarray:
    """`[F, D]` read-only behaviour features of every frame before z-scoring (NaN where
    missing; `BehaviourSpec.features`), computed once per opened dataset: every run on it
    normalises them with its own training animals' statistics."""
    # A read-only view: a vector format's features can be the behaviour index's own array.
    features = self.behaviour_spec.features(self.behaviour_index.behaviour).view()
    features.flags.writeable = False
    return features

  @property
  def has_roi_traces(self) -> bool:
    return bool(self.metadata["has_roi_traces"])

  @functools.cached_property
  def roi_counts(self) -> dict[str, int]:
    """ROI count R of every animal (in `animals` order); empty without ROI traces.

    R may differ between animals; every trial of an animal has the same ROIs (checked when
    the dataset is built).
    """
    if not self.has_roi_traces:
      return {}
    counts = {}
    for info in self.trials:
      counts.setdefault(info["animal_id"], int(info["num_rois"]))
    return {animal: counts[animal] for animal in self.animals}

  def num_rois(self, animal: str) -> int:
    """The ROI count R of one animal (the width of its `roi_traces`)."""
    if not self.has_roi_traces:
      raise ValueError(f"{self.path} holds no roi_traces (its neural data: "
                       f"{list(self.neural_keys)})")
    if animal not in self.roi_counts:
      raise ValueError(f"unknown animal {animal!r}; the dataset has {list(self.animals)}")
    return self.roi_counts[animal]

  @property
  def max_rois(self) -> int:
    """The largest ROI count of any animal: the width ROI traces are padded to."""
    if not self.has_roi_traces:
      raise ValueError(f"{self.path} holds no roi_traces (its neural data: "
                       f"{list(self.neural_keys)})")
    return max(self.roi_counts.values())

  @property
  def neural_keys(self) -> tuple[str, ...]:
    keys = []
    if self.metadata["neural_image_shape"] is not None:
      keys.append("neural_images")
    if self.metadata["has_roi_traces"]:
      keys.append("roi_traces")
    return tuple(keys)

  @functools.cached_property
  def segment_table(self) -> np.ndarray:
    """`[num_segments, 6]` int64: trial, segment, frame start/end, neural start/end."""
    return np.asarray(self.metadata["segments"], np.int64).reshape(-1, 6)

  @functools.cached_property
  def data_source(self):
    """Random-access source of segments (`tfds` array_record data source)."""
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    builder = tfds.builder_from_directory(str(self.path))
    return builder.as_data_source(split=SEGMENTS_SPLIT)

  def __getstate__(self):
    # The array_record readers are reopened in each worker process.
    state = dict(self.__dict__)
    state.pop("data_source", None)
    state.pop("behaviour_features", None)
    state["_neural_cache"], state["_neural_cache_size"] = collections.OrderedDict(), 0
    state["_trial_neural"] = {}
    return state

  def read_segment(self, segment: int) -> dict:
    return self.data_source[segment]

  def _neural_segment(self, segment: int) -> dict[str, np.ndarray]:
    """The neural arrays of one segment, through the LRU cache."""
    cached = self._neural_cache.get(segment)
    if cached is not None:
      self._neural_cache.move_to_end(segment)
      return cached
    record = self.read_segment(segment)
    arrays = {key: record[key] for key in self.neural_keys}
    size = sum(a.nbytes for a in arrays.values())
    if size <= self.neural_cache_bytes:
      self._neural_cache[segment] = arrays
      self._neural_cache_size += size
      while self._neural_cache_size > self.neural_cache_bytes:
        _, evicted = self._neural_cache.popitem(last=False)
        self._neural_cache_size -= sum(a.nbytes for a in evicted.values())
    return arrays

  @property
  def cached_neural_segments(self) -> int:
    """How many decoded neural segments the cache holds now."""
    return len(self._neural_cache)

  @property
  def cached_neural_bytes(self) -> int:
    """Bytes of decoded neural frames the cache holds now (at most `neural_cache_bytes`)."""
    return self._neural_cache_size

  def neural_bytes(self) -> int:
    """Size of all neural frames of the dataset once decoded."""
    image = self.metadata["neural_image_shape"]
    frame_bytes = 4 * int(np.prod(image)) if image is not None else 0
    total = 0
    for info in self.trials:
      rois = info["num_rois"] or 0
      total += info["num_neural_frames"] * (frame_bytes + 4 * rois)
    return total

  def preload_neural(self, progress: bool = True) -> bool:
    """Decodes every neural segment into the cache if they all fit its budget.

    Each trial's frames are kept as one read-only array per neural key, and the cache holds
    views of them, so that `read_neural` slices a window out of its trial instead of joining
    it from segments. Worker processes start without them (see `__getstate__`).

    Returns:
      Whether the dataset was preloaded (False, with nothing read, if it does not fit).
    """
    if self.neural_bytes() > self.neural_cache_bytes:
      return False
    if len(self._trial_neural) == len(self.trials):
      return True  # already preloaded (a dataset shared by several runs, `DatasetCache`)
    with tqdm.tqdm(total=len(self.segment_table), desc="preloading neural data",
                   unit="segment", disable=not progress) as bar:
      for trial, info in enumerate(self.trials):
        first = info["first_segment"]
        segments = [self._neural_segment(first + k) for k in range(info["num_segments"])]
        arrays = {key: np.concatenate([segment[key] for segment in segments])
                  for key in self.neural_keys}
        for array in arrays.values():
          array.flags.writeable = False
        rows = self.segment_table[first:first + info["num_segments"]]
        for k, (n_start, n_end) in enumerate(rows[:, 4:6]):
          self._neural_cache[first + k] = {key: value[n_start:n_end]
                                           for key, value in arrays.items()}
        self._trial_neural[trial] = arrays
        bar.update(info["num_segments"])
    return True

  def read_neural(self, trial: int, start: int, end: int) -> dict[str, np.ndarray]:
    """Reads neural frames `[start, end)` of one trial from the shards.

    Returns:
      name -> `[end - start, ...]` float32 for each neural key of the dataset; read-only views
      of the trial's frames once `preload_neural` has run.
    """
    info = self.trials[trial]
    if not 0 <= start < end <= info["num_neural_frames"]:
      raise IndexError(f"neural frames [{start}, {end}) outside trial {trial} "
                       f"with {info['num_neural_frames']} frames")
    preloaded = self._trial_neural.get(trial)
    if preloaded is not None:
      return {key: value[start:end] for key, value in preloaded.items()}
    rows = self.segment_table[info["first_segment"]:info["first_segment"] + info["num_segments"]]
    overlapping = np.nonzero((rows[:, 4] < end) & (rows[:, 5] > start))[0]
    parts = {key: [] for key in self.neural_keys}
    for row_index in overlapping:
      n_start, n_end = rows[row_index, 4], rows[row_index, 5]
      segment = self._neural_segment(info["first_segment"] + int(row_index))
      lo, hi = max(start, n_start) - n_start, min(end, n_end) - n_start
      for key in self.neural_keys:
        parts[key].append(segment[key][lo:hi])
    return {key: np.concatenate(value) for key, value in parts.items()}

  def read_trial(self, trial: int) -> dict[str, np.ndarray]:
    """Reassembles one whole trial from its segments (all features)."""
    info = self.trials[trial]
    segments = [self.read_segment(info["first_segment"] + k) for k in range(info["num_segments"])]
    return {key: np.concatenate([s[key] for s in segments])
            for key in segments[0] if np.ndim(segments[0][key]) > 0}


_VERSION_NAME = re.compile(r"^\d+\.\d+\.\d+$")


def resolve_dataset_dir(data_dir: str | os.PathLike, name: str = "default") -> epath.Path:
  """Finds the version directory of a dataset.

  Args:
    data_dir: either a dataset version directory itself, or the TFDS data dir that holds
      `nar_recordings/<name>/<version>/`; local or remote (e.g. `gs://`).
    name: the dataset's name (builder config) inside `data_dir`.
  """
  path = epath.Path(data_dir)
  if (path / "dataset_info.json").exists():
    return path
  parent = path / BUILDER_NAME / name
  # Only version folders: a killed build's `incomplete.*` or staging folder is never opened.
  versions = sorted(p for p in parent.glob("*") if _VERSION_NAME.match(p.name)
                    and (p / "dataset_info.json").exists()) if parent.is_dir() else []
  if not versions:
    raise DatasetNotFoundError(
        f"no complete NAR dataset {name!r} under {path} (looked for "
        f"{parent}/<version>/dataset_info.json); build one with python -m data_prep.build")
  return versions[-1]


def open_dataset(data_dir: str | os.PathLike, name: str = "default", *,
                 neural_cache_bytes: int = 1 << 30) -> ShardedDataset:
  """Opens a built dataset (reads metadata and the behaviour index, not the shards).

  Args:
    data_dir: a TFDS data dir or a dataset's version directory (see `resolve_dataset_dir`).
    name: the dataset's name inside `data_dir`.
    neural_cache_bytes: per-process budget of the decoded neural segment cache.
  """
  import json  # pylint: disable=g-import-not-at-top
  path = resolve_dataset_dir(data_dir, name)
  index_path = path / BEHAVIOUR_INDEX_FILE
  metadata_path = path / "metadata.json"
  if not index_path.exists() or not metadata_path.exists():
    raise DatasetNotFoundError(f"{path} is not a complete NAR dataset: "
                               f"{index_path.name} or {metadata_path.name} is missing")
  metadata = json.loads(metadata_path.read_text())
  if metadata.get("format_version") != FORMAT_VERSION:
    raise DatasetNotFoundError(
        f"{path} has format version {metadata.get('format_version')}, this library reads "
        f"{FORMAT_VERSION}; rebuild it with python -m data_prep.build --overwrite")
  return ShardedDataset(path=path, metadata=metadata,
                        behaviour_index=BehaviourIndex.load(index_path),
                        neural_cache_bytes=neural_cache_bytes)


class DatasetCache:
  """Opened datasets, kept for the next run of the same process that reads the same one.

  Opening a dataset, preloading its neural data and computing its behaviour features take
  seconds to tens of seconds; a command that trains and evaluates many runs on one dataset
  (`experiments.reproduce`) does that once per process through one cache.
  """

  def __init__(self):
    self._opened: dict[tuple[str, int], ShardedDataset] = {}

  def open(self, data_dir: str | os.PathLike, name: str = "default", *,
           neural_cache_bytes: int = 1 << 30) -> ShardedDataset:
    """`open_dataset`, or the dataset this cache opened before with the same arguments."""
    key = (str(resolve_dataset_dir(data_dir, name)), neural_cache_bytes)
    if key not in self._opened:
      self._opened[key] = open_dataset(key[0], neural_cache_bytes=neural_cache_bytes)
    return self._opened[key]

  def __len__(self) -> int:
    return len(self._opened)
