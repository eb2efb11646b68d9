"""TFDS builder that stores recordings as fixed-length segments in array_record shards.

Each example is one segment: `segment_seconds` of behaviour frames of one trial and the neural
frames that belong to it. Neural frames are partitioned between the segments of a trial
(segment k holds neural frames `[sync[start_k], sync[start_{k+1}])`, the first one also the
frames before the first behaviour frame, the last one those after the last), so every frame is
stored exactly once and storage stays about 1x the raw data. Windows are cut at read time by
`nar.data.shards` / `nar.data.pipeline`.

The dataset's metadata carries the behaviour format, its dimension names, normalisations and
swap weights (`nar.data.behaviour.BehaviourSpec.to_metadata`), the ROI count of every trial
(`num_rois`, which may differ between animals) and every animal's (`roi_counts`), so that a
built dataset reads back exactly what was written.

Segments are written in order, shard after shard (`tfds.core.ShardBasedBuilder`), each shard
holding about `shard_bytes` of data: a build streams through the recordings and needs no
TensorFlow whatever the dataset's size (TFDS's shuffling writer spills what exceeds 1 GB of
memory to temporary files through TensorFlow's file API).

Beside the shards, the builder writes `behaviour_index.npz` (every trial's behaviour, keypoint
mask, sync and labels: small, no images). It is the pose bank of the swap and the index from
which windows are enumerated, so readers never scan the image shards to plan an epoch. It is
written into TFDS's temporary directory, which is renamed into place only when the whole build
succeeded: an interrupted build never reads as complete.
"""

from __future__ import annotations

import functools
import os
import uuid
from typing import Iterator, Sequence

from etils import epath
import numpy as np
import tensorflow_datasets as tfds
import tqdm

from nar.data import recording as recording_lib
from nar.data import shards as shards_lib

_VERSION = "1.0.0"
# Data per shard: large enough that a dataset has few files, small enough that writing one
# (TFDS holds a shard's examples until it is written) takes little memory.
DEFAULT_SHARD_BYTES = 256 << 20


def _float_tensor(shape) -> tfds.features.Tensor:
  # Raw bytes: fast to decode without TensorFlow and exact for float data.
  return tfds.features.Tensor(shape=shape, dtype=np.float32, encoding="bytes")


def segment_bounds(num_frames: int, segment_frames: int) -> list[tuple[int, int]]:
  """`[start, end)` behaviour-frame bounds of the consecutive segments of a trial."""
  return [(s, min(s + segment_frames, num_frames)) for s in range(0, num_frames, segment_frames)]


def neural_partition(sync: np.ndarray, bounds: Sequence[tuple[int, int]],
                     num_neural_frames: int) -> list[tuple[int, int]]:
  """`[start, end)` neural-frame bounds owned by each segment; together they cover all frames."""
  starts = [0] + [int(sync[start]) for start, _ in bounds[1:]] + [num_neural_frames]
  return [(starts[i], starts[i + 1]) for i in range(len(bounds))]


def shard_ranges(segment_bytes: Sequence[int], shard_bytes: int) -> list[tuple[int, int]]:
  """Splits consecutive segments into shards `[start, end)` of about `shard_bytes` each.

  A shard closes once it holds at least `shard_bytes`; a segment larger than that is a shard
  of its own. Every segment lands in exactly one shard, in order.
  """
  if shard_bytes <= 0:
    raise ValueError(f"shard_bytes must be positive, got {shard_bytes}")
  ranges, start, filled = [], 0, 0
  for index, size in enumerate(segment_bytes):
    filled += int(size)
    if filled >= shard_bytes:
      ranges.append((start, index + 1))
      start, filled = index + 1, 0
  if start < len(segment_bytes):
    ranges.append((start, len(segment_bytes)))
  return ranges


class _LocalDatasetInfo(tfds.core.DatasetInfo):
  """The `DatasetInfo` of a dataset that exists only where it is built.

  Before a dataset is built, TFDS looks for its metadata in the public TFDS bucket through a
  fresh temporary directory that it never deletes, so every build would leave an empty
  `tmp*tfds` directory behind in the system's temporary folder. These datasets are never in
  that bucket.
  """

  def initialize_from_bucket(self) -> None:
    """Does nothing: there is no published metadata to start from."""


class NarRecordings(tfds.core.ShardBasedBuilder):
  """Paired behaviour and neural recordings of many animals, as trial segments."""

  VERSION = tfds.core.Version(_VERSION)
  RELEASE_NOTES = {_VERSION: "Trial segments with pose, sync, labels and neural data."}

  def __init__(self, *, recordings: Sequence[recording_lib.Recording] | None = None,
               segment_seconds: float = 2.0, shard_bytes: int = DEFAULT_SHARD_BYTES,
               **kwargs):
    """Creates the builder.

    Args:
      recordings: the validated recordings to store (needed only to build).
      segment_seconds: length of a stored segment, in seconds of behaviour.
      shard_bytes: about how much data each shard file holds.
      **kwargs: forwarded to `tfds.core.ShardBasedBuilder` (`data_dir`, `config`,
        `file_format`).
    """
    self._recordings = list(recordings or [])
    if self._recordings:
      recording_lib.check_recording_set(self._recordings)
    if segment_seconds <= 0:
      raise ValueError(f"segment_seconds must be positive, got {segment_seconds}")
    self._segment_seconds = segment_seconds
    self._shard_bytes = int(shard_bytes)  # checked by `shard_ranges` before any write
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    if not self._recordings:
      raise ValueError(
          "NarRecordings needs recordings to build; read built data with nar.data.shards")
    first = self._recordings[0]
    frame_shape = tuple(first.behaviour.shape[1:])
    features = {
        "animal_id": tfds.features.Text(),
        "trial_id": tfds.features.Text(),
        "segment_index": np.int32,
        "start_frame": np.int64,
        "neural_start": np.int64,
        "behaviour": _float_tensor((None,) + frame_shape),
        "keypoint_mask": tfds.features.Tensor(shape=(None,) + frame_shape[:1], dtype=np.bool_),
        "sync": tfds.features.Tensor(shape=(None,), dtype=np.int64),
        "labels": tfds.features.Tensor(shape=(None,), dtype=np.int32),
        "rest": tfds.features.Tensor(shape=(None,), dtype=np.bool_),
        # Bytes keep float64 exact (example protos store floats as float32).
        "behaviour_timestamps": tfds.features.Tensor(
            shape=(None,), dtype=np.float64, encoding="bytes"),
        "neural_timestamps": tfds.features.Tensor(
            shape=(None,), dtype=np.float64, encoding="bytes"),
    }
    if first.neural_images is not None:
      features["neural_images"] = _float_tensor((None,) + first.neural_images.shape[1:])
    if first.roi_traces is not None:
      # ROI counts may differ between animals.
      features["roi_traces"] = _float_tensor((None, None))
    return _LocalDatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict(features),
        metadata=tfds.core.MetadataDict(),
        # Records keep generation order, so the segment table below indexes them directly.
        disable_shuffling=True,
    )

  def _segment_frames(self, rec: recording_lib.Recording) -> int:
    return max(1, int(round(self._segment_seconds * rec.fps_behaviour)))

  def _shard_iterators_per_split(self, dl_manager):
    del dl_manager
    recordings = sorted(self._recordings, key=lambda r: (r.animal_id, r.trial_id))
    segments, trials = [], []
    for rec in recordings:
      bounds = segment_bounds(rec.num_behaviour_frames, self._segment_frames(rec))
      neural = neural_partition(rec.sync, bounds, rec.num_neural_frames)
      trials.append({
          "animal_id": rec.animal_id,
          "trial_id": rec.trial_id,
          "num_behaviour_frames": rec.num_behaviour_frames,
          "num_neural_frames": rec.num_neural_frames,
          "fps_behaviour": float(rec.fps_behaviour),
          "fps_neural": float(rec.fps_neural),
          "first_segment": len(segments),
          "num_segments": len(bounds),
          "num_rois": None if rec.roi_traces is None else int(rec.roi_traces.shape[1]),
      })
      for k, ((start, end), (n_start, n_end)) in enumerate(zip(bounds, neural)):
        segments.append([len(trials) - 1, k, start, end, n_start, n_end])
    first = recordings[0]
    roi_counts = {t["animal_id"]: t["num_rois"] for t in trials if t["num_rois"] is not None}
    self.info.metadata.update({
        "format_version": shards_lib.FORMAT_VERSION,
        "class_names": list(first.class_names),
        **first.behaviour_spec.to_metadata(),
        "animals": sorted({r.animal_id for r in recordings}),
        "neural_image_shape": (None if first.neural_images is None
                               else list(first.neural_images.shape[1:])),
        "has_roi_traces": first.roi_traces is not None,
        "roi_counts": dict(sorted(roi_counts.items())) if roi_counts else None,
        "segment_seconds": self._segment_seconds,
        "trials": trials,
        # Columns: trial, segment index, frame start, frame end, neural start, neural end.
        "segments": segments,
    })
    ranges = shard_ranges([_segment_bytes(recordings[row[0]], *row[2:]) for row in segments],
                          self._shard_bytes)
    shards_lib.write_behaviour_index(
        os.path.join(self.data_dir, shards_lib.BEHAVIOUR_INDEX_FILE), recordings)
    progress = tqdm.tqdm(total=len(segments), desc="Writing segments", unit="segment")
    return {shards_lib.SEGMENTS_SPLIT: [
        functools.partial(self._generate_examples, recordings, segments[start:end], progress,
                          last=end == len(segments))
        for start, end in ranges]}

  def _generate_examples(self, recordings, segments, progress: tqdm.tqdm | None = None, *,
                         last: bool = True) -> Iterator[tuple[str, dict]]:
    """The examples of consecutive segments (one shard), advancing `progress`."""
    for trial_index, k, start, end, n_start, n_end in segments:
      rec = recordings[trial_index]
      example = {
          "animal_id": rec.animal_id,
          "trial_id": rec.trial_id,
          "segment_index": np.int32(k),
          "start_frame": np.int64(start),
          "neural_start": np.int64(n_start),
          "behaviour": np.asarray(rec.behaviour[start:end], np.float32),
          "keypoint_mask": np.asarray(rec.keypoint_mask[start:end]),
          "sync": np.asarray(rec.sync[start:end], np.int64),
          "labels": np.asarray(rec.labels[start:end], np.int32),
          "rest": (np.zeros(end - start, bool) if rec.rest is None
                   else np.asarray(rec.rest[start:end])),
          "behaviour_timestamps": rec.behaviour_times()[start:end],
          "neural_timestamps": rec.neural_times()[n_start:n_end],
      }
      if rec.neural_images is not None:
        example["neural_images"] = np.asarray(rec.neural_images[n_start:n_end], np.float32)
      if rec.roi_traces is not None:
        example["roi_traces"] = np.asarray(rec.roi_traces[n_start:n_end], np.float32)
      yield f"{trial_index:06d}_{k:06d}", example
      if progress is not None:
        progress.update()
    if progress is not None and last:
      progress.close()


def _segment_bytes(rec: recording_lib.Recording, start: int, end: int, n_start: int,
                   n_end: int) -> int:
  """About how many bytes a segment's example holds (its arrays, as stored)."""
  # Per behaviour frame: pose (float32), keypoint mask (bool), sync (int64), label (int32),
  # rest (bool), timestamp (float64); per neural frame: its arrays (float32), timestamp.
  per_frame = (4 * rec.behaviour[0].size + rec.keypoint_mask[0].size + 8 + 4 + 1 + 8)
  per_neural_frame = 8 + sum(4 * neural[0].size for neural in (rec.neural_images, rec.roi_traces)
                             if neural is not None)
  return (end - start) * per_frame + (n_end - n_start) * per_neural_frame


def build_dataset(recordings: Sequence[recording_lib.Recording], data_dir: str, *,
                  config_name: str = "default", segment_seconds: float = 2.0,
                  overwrite: bool = False, shard_bytes: int = DEFAULT_SHARD_BYTES) -> str:
  """Writes recordings as TFDS array_record shards.

  Args:
    recordings: validated recordings forming one dataset.
    data_dir: TFDS data directory (local or remote path).
    config_name: the dataset's name inside `data_dir`.
    segment_seconds: length of a stored segment.
    overwrite: replace a complete dataset of the same name; without it such a dataset is
      an error (to reuse a built dataset, open it with `nar.data.shards.open_dataset`).
    shard_bytes: about how much data each shard file holds.

  Returns:
    The directory of the built dataset (pass it to `nar.data.shards.open_dataset`).

  Raises:
    ValueError: if there are no recordings.
    FileExistsError: if a complete dataset of that name exists and not `overwrite`.
  """
  if not recordings:
    raise ValueError(f"no recordings to build into dataset {config_name!r} of {data_dir}: "
                     "read them first (data_prep.readers.read_recordings) and check that "
                     "the input folder holds trials")
  # TFDS builds in a temporary directory renamed into place at the end, so the version
  # directory exists only for a complete build. It is looked at before the builder is made:
  # the builder would read the existing dataset's features, which need not match these
  # recordings.
  dataset_dir = epath.Path(data_dir) / shards_lib.BUILDER_NAME / config_name / _VERSION
  if dataset_dir.exists() and not overwrite:
    # Reusing it would silently ignore `recordings`.
    raise FileExistsError(
        f"{dataset_dir} already holds a built dataset {config_name!r}; pass overwrite=True "
        "(--overwrite for python -m data_prep.build) to replace it with these recordings, "
        "choose another name (config_name, --name) or data_dir, or open the existing one "
        "with nar.data.shards.open_dataset")
  remove_unfinished_builds(data_dir, config_name)
  # Built in a staging data dir beside the dataset, and moved into place by a rename only once
  # complete: a killed build leaves the old dataset (with --overwrite) whole.
  staging = epath.Path(data_dir) / shards_lib.BUILDER_NAME / config_name / (
      f"{STAGING_PREFIX}{uuid.uuid4().hex[:8]}")
  try:
    config = tfds.core.BuilderConfig(name=config_name,
                                     description=f"NAR dataset {config_name}")
    builder = NarRecordings(recordings=recordings, segment_seconds=segment_seconds,
                            shard_bytes=shard_bytes, data_dir=os.fspath(staging),
                            config=config)
    builder.download_and_prepare()
    built = epath.Path(builder.data_dir)
    replaced = None
    if dataset_dir.exists():
      replaced = dataset_dir.parent / f"{STAGING_PREFIX}replaced-{uuid.uuid4().hex[:8]}"
      dataset_dir.rename(replaced)
    built.rename(dataset_dir)
    if replaced is not None:
      replaced.rmtree()
  finally:
    if staging.exists():
      staging.rmtree()
  return os.fspath(dataset_dir)


STAGING_PREFIX = ".building-"


def remove_unfinished_builds(data_dir: str | os.PathLike, config_name: str) -> list[str]:
  """Removes what killed builds of a dataset left: staging folders and TFDS's `incomplete.*`
  folders. Returns the paths removed."""
  parent = epath.Path(data_dir) / shards_lib.BUILDER_NAME / config_name
  removed = []
  if parent.exists():
    for path in parent.iterdir():
      if path.name.startswith(STAGING_PREFIX) or "incomplete." in path.name:
        path.rmtree()
        removed.append(os.fspath(path))
  return removed


def describe(dataset_dir: str) -> str:
  """A short human-readable summary of a built dataset."""
  dataset = shards_lib.open_dataset(dataset_dir)
  meta = dataset.metadata
  num_frames = sum(t["num_behaviour_frames"] for t in meta["trials"])
  num_neural = sum(t["num_neural_frames"] for t in meta["trials"])
  size = sum(f.stat().length for f in dataset.path.iterdir() if f.is_file())
  per_animal = {}
  for t in meta["trials"]:
    per_animal[t["animal_id"]] = per_animal.get(t["animal_id"], 0) + 1
  labels = dataset.behaviour_index.labels
  counts = np.bincount(labels[labels >= 0], minlength=len(meta["class_names"]))
  spec = dataset.behaviour_spec
  if spec.is_vector:
    weights = [""] * len(spec.names) if spec.swap_weights is None else [
        f", swap weight {w:g}" for w in spec.swap_weights]
    names = ", ".join(f"{n} ({k}{w})"
                      for n, k, w in zip(spec.names[:8], spec.normalisation[:8], weights[:8]))
    more = f", ... ({len(spec.names)} in all)" if len(spec.names) > 8 else ""
    behaviour = f"behaviour: {spec.format} [{len(spec.names)}]: {names}{more}"
  else:
    behaviour = f"behaviour: {spec.format} {list(spec.frame_shape)}"
  rois = ""
  if dataset.has_roi_traces:
    counts_of_animals = sorted(set(dataset.roi_counts.values()))
    rois = (f"  ROIs per animal: {counts_of_animals[0]}" if len(counts_of_animals) == 1 else
            f"  ROIs per animal: {counts_of_animals[0]}-{counts_of_animals[-1]}")
  lines = [
      f"dataset: {dataset.path}",
      f"animals: {len(meta['animals'])}  trials: {len(meta['trials'])}  "
      f"segments: {len(meta['segments'])}  size: {size / 2**20:.1f} MiB",
      f"behaviour frames: {num_frames} ({num_frames / meta['trials'][0]['fps_behaviour'] / 60:.1f}"
      f" min)  neural frames: {num_neural}  image: {meta['neural_image_shape']}  "
      f"ROI traces: {meta['has_roi_traces']}{rois}",
      behaviour,
      "trials per animal: " + ", ".join(f"{a}: {n}" for a, n in sorted(per_animal.items())),
      "labelled frames per class: " + ", ".join(
          f"{name} {100 * c / max(1, len(labels)):.1f}%"
          for name, c in zip(meta["class_names"], counts)) +
      f", unlabelled {100 * np.mean(labels < 0):.1f}%",
  ]
  return "\n".join(lines)

