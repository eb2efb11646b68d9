"""The recording model: one trial of one animal, behaviour and neural activity in sync.

A `Recording` is validated when it is made, so that every later stage (shards, windows,
training) can trust it. Every problem found is reported, each on its own line, in one
`RecordingError` that names the recording's source.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import numpy as np

from nar.data import behaviour as behaviour_lib

# Behaviour classes of the manual annotations of the MC2P flies.
MC2P_CLASS_NAMES = (
    "resting",
    "walking",
    "eye_grooming",
    "antennal_grooming",
    "foreleg_grooming",
    "abdominal_grooming",
    "hindleg_grooming",
)
UNLABELLED = -1

# Per-frame shape of each known behaviour format (None: the vector's D); see `nar.data.behaviour`.
BEHAVIOUR_FORMATS = behaviour_lib.BEHAVIOUR_FORMATS


class RecordingError(ValueError):
  """A recording (or a set of recordings) is inconsistent.

  Attributes:
    source: what was being checked (a file, a folder, or a recording's name).
    problems: one sentence per problem found.
  """

  def __init__(self, source: str, problems: Sequence[str]):
    self.source = source
    self.problems = list(problems)
    lines = "\n".join(f"  - {p}" for p in self.problems)
    super().__init__(f"{source}: {len(self.problems)} problem(s):\n{lines}")


def _is_float32(array: np.ndarray) -> bool:
  return array.dtype == np.float32


@dataclasses.dataclass(frozen=True, eq=False)
class Recording:
  """One trial of one animal.

  Attributes:
    animal_id: name of the animal, unique across the dataset.
    trial_id: name of the trial, unique within the animal.
    behaviour: `[T_b, 38, 3]` float32 DeepFly3D pose for the default `behaviour_format`,
      NaN where a keypoint is missing; `[T_b, D]` float32 for the vector formats ("vector",
      "keypoints_2d"), NaN where a value is missing.
    sync: `[T_b]` int64, the neural frame index recorded at every behaviour frame
      (non-decreasing, within the neural recording). Other integer dtypes are accepted and
      stored as int64.
    labels: `[T_b]` int32 index into `class_names`, `UNLABELLED` (-1) where unannotated.
    class_names: names of the behaviour classes.
    fps_behaviour: behaviour frame rate in Hz.
    fps_neural: nominal neural frame rate in Hz.
    neural_images: optional `[T_n, H, W]` float32 dF/F images.
    roi_traces: optional `[T_n, R]` float32 ROI dF/F traces.
    keypoint_mask: `[T_b, 38]` bool, True where a keypoint was observed (`[T_b, D]`, per
      dimension, for the vector formats). Derived from the finiteness of `behaviour` when not
      given.
    rest: optional `[T_b]` bool rest flags.
    behaviour_timestamps: optional `[T_b]` seconds; `arange(T_b) / fps_behaviour` if absent.
    neural_timestamps: optional `[T_n]` seconds; `arange(T_n) / fps_neural` if absent.
    behaviour_format: key of `BEHAVIOUR_FORMATS` naming the behaviour feature layout
      (`nar.data.behaviour` describes each).
    source: where the recording came from, used in error messages.
    behaviour_names: vector formats only (required there): the name of each of the D
      dimensions, e.g. `("forward_velocity", "lateral_velocity", "turning_velocity")`.
    behaviour_normalisation: vector formats only: per-dimension "zscore", "angle" or "none"
      (`nar.data.behaviour.NORMALISATIONS`); None means "zscore" for every dimension.
    behaviour_swap_weights: vector formats only: per-dimension weight (finite, >= 0, not all
      0) of the dimension in the swap distance on the normalised features (`nar.data.behaviour`);
      None weighs every dimension 1.
  """

  animal_id: str
  trial_id: str
  behaviour: np.ndarray
  sync: np.ndarray
  labels: np.ndarray
  class_names: tuple[str, ...] = MC2P_CLASS_NAMES
  fps_behaviour: float = 100.0
  fps_neural: float = 16.0
  neural_images: np.ndarray | None = None
  roi_traces: np.ndarray | None = None
  keypoint_mask: np.ndarray | None = None
  rest: np.ndarray | None = None
  behaviour_timestamps: np.ndarray | None = None
  neural_timestamps: np.ndarray | None = None
  behaviour_format: str = "deepfly3d_pose"
  source: str = ""
  behaviour_names: tuple[str, ...] | None = None
  behaviour_normalisation: tuple[str, ...] | None = None
  behaviour_swap_weights: tuple[float, ...] | None = None

  def __post_init__(self):
    object.__setattr__(self, "class_names", tuple(self.class_names))
    names, normalisation = self.behaviour_names, self.behaviour_normalisation
    if names is not None and not isinstance(names, str):
      names = tuple(names)
      object.__setattr__(self, "behaviour_names", names)
    if normalisation is not None and not isinstance(normalisation, str):
      object.__setattr__(self, "behaviour_normalisation", tuple(normalisation))
    elif (normalisation is None and isinstance(names, tuple)
          and self.behaviour_format in behaviour_lib.VECTOR_FORMATS):
      object.__setattr__(self, "behaviour_normalisation", (behaviour_lib.ZSCORE,) * len(names))
    # A tuple, so that recordings of a dataset can be compared by value.
    object.__setattr__(self, "behaviour_swap_weights",
                       behaviour_lib.swap_weights_tuple(self.behaviour_swap_weights))
    sync = self.sync
    if (isinstance(sync, np.ndarray) and sync.dtype.kind in "iu" and sync.dtype != np.int64
        and not _beyond_int64(sync)):
      # Unsigned indices wrap on subtraction (a decrease would pass unseen, and window
      # offsets would overflow), so every later stage gets int64.
      object.__setattr__(self, "sync", sync.astype(np.int64))
    if self.keypoint_mask is None and isinstance(self.behaviour, np.ndarray):
      if self.behaviour.ndim >= 2:
        # An explicit last size: a trial without frames (an error, reported below) cannot
        # infer a -1.
        values = int(np.prod(self.behaviour.shape[2:], dtype=np.int64))
        finite = np.isfinite(self.behaviour.reshape(self.behaviour.shape[:2] + (values,)))
        object.__setattr__(self, "keypoint_mask", finite.all(axis=-1))
    problems = recording_problems(self)
    if problems:
      raise RecordingError(self.name, problems)

  @property
  def name(self) -> str:
    """A readable name: the source if known, else animal and trial."""
    label = f"animal {self.animal_id!r}, trial {self.trial_id!r}"
    return f"{self.source} ({label})" if self.source else label

  @property
  def pose(self) -> np.ndarray:
    """The `[T_b, 38, 3]` pose (only for the `deepfly3d_pose` behaviour format)."""
    if self.behaviour_format != "deepfly3d_pose":
      raise AttributeError(f"recording {self.name} holds {self.behaviour_format}, not pose")
    return self.behaviour

  @property
  def behaviour_spec(self) -> behaviour_lib.BehaviourSpec:
    """The behaviour's format, dimension names, normalisations and swap weights."""
    return behaviour_lib.BehaviourSpec(self.behaviour_format, self.behaviour_names,
                                       self.behaviour_normalisation, self.behaviour_swap_weights)

  @property
  def num_behaviour_frames(self) -> int:
    return int(self.behaviour.shape[0])

  @property
  def num_neural_frames(self) -> int:
    neural = self.neural_images if self.neural_images is not None else self.roi_traces
    return int(neural.shape[0])

  def behaviour_times(self) -> np.ndarray:
    """`[T_b]` float64 behaviour frame times in seconds."""
    if self.behaviour_timestamps is not None:
      return np.asarray(self.behaviour_timestamps, np.float64)
    return np.arange(self.num_behaviour_frames) / self.fps_behaviour

  def neural_times(self) -> np.ndarray:
    """`[T_n]` float64 neural frame times in seconds."""
    if self.neural_timestamps is not None:
      return np.asarray(self.neural_timestamps, np.float64)
    return np.arange(self.num_neural_frames) / self.fps_neural


def label_bouts(labels: np.ndarray) -> list[tuple[int, int, int]]:
  """Runs of equal non-negative labels as `(start, end_exclusive, label)`, in frames.

  Example:
    >>> label_bouts(np.array([0, 0, 1, 1, 1, -1, -1, 2]))  # -1: unlabelled
    [(0, 2, 0), (2, 5, 1), (7, 8, 2)]
  """
  labels = np.asarray(labels)
  if labels.size == 0:
    return []
  change = np.flatnonzero(np.diff(labels)) + 1
  starts = np.concatenate([[0], change])
  ends = np.concatenate([change, [len(labels)]])
  return [(int(start), int(end), int(labels[start]))
          for start, end in zip(starts, ends) if labels[start] >= 0]


def _beyond_int64(array: np.ndarray) -> bool:
  """Whether an integer array holds values that int64 cannot (only unsigned ones can)."""
  return (array.dtype.kind == "u" and array.size > 0
          and array.max() > np.uint64(np.iinfo(np.int64).max))


def _check_timestamps(name, stamps, length, problems):
  if stamps is None:
    return
  if not isinstance(stamps, np.ndarray) or stamps.shape != (length,):
    shape = getattr(stamps, "shape", type(stamps).__name__)
    problems.append(f"{name} must have shape ({length},), got {shape}")
  elif not np.all(np.isfinite(stamps)):
    problems.append(f"{name} holds non-finite values")
  elif length > 1 and np.any(np.diff(stamps) <= 0):
    problems.append(f"{name} must be strictly increasing")


# Behaviour may be missing (NaN) in at most this share of a trial's frames: beyond it, the
# trial is more likely misread than partly tracked.
MAX_MISSING_BEHAVIOUR = 0.5


def _coverage_problems(rec: Recording, num_frames: int, num_neural: int) -> list[str]:
  """Behaviour frames that lie outside the neural recording's time span, by their times."""
  if rec.behaviour_timestamps is None and rec.neural_timestamps is None:
    return []
  behaviour, neural = rec.behaviour_times(), rec.neural_times()
  if len(behaviour) != num_frames or len(neural) != num_neural or not num_neural:
    return []  # reported as shape problems
  interval = 1.0 / float(rec.fps_neural)
  outside = (behaviour < neural[0] - interval) | (behaviour > neural[-1] + interval)
  if not outside.any():
    return []
  return [f"neural_timestamps ({neural[0]:.3f}-{neural[-1]:.3f} s) do not cover the behaviour "
          f"({behaviour[0]:.3f}-{behaviour[-1]:.3f} s): {int(outside.sum())} of {num_frames} "
          "behaviour frames lie outside the neural recording"]


def recording_problems(rec: Recording, *,
                       max_missing_behaviour: float = MAX_MISSING_BEHAVIOUR) -> list[str]:
  """Lists every problem of a recording; empty when it is valid.

  Args:
    rec: the recording.
    max_missing_behaviour: the largest share of frames whose behaviour may be missing (NaN
      in every value: nothing tracked); infinite values are always an error.
  """
  problems: list[str] = []
  for field in ("animal_id", "trial_id"):
    value = getattr(rec, field)
    if not isinstance(value, str) or not value:
      problems.append(f"{field} must be a non-empty string, got {value!r}")

  behaviour = rec.behaviour
  is_vector = rec.behaviour_format in behaviour_lib.VECTOR_FORMATS
  dim = behaviour.shape[1] if (is_vector and isinstance(behaviour, np.ndarray)
                               and behaviour.ndim == 2) else None
  strings = [f"{field} must be a sequence of strings, one per dimension, got the string "
             f"{value!r}" for field, value in (("behaviour_names", rec.behaviour_names),
                                               ("behaviour_normalisation",
                                                rec.behaviour_normalisation))
             if isinstance(value, str)]
  if strings:
    return problems + strings
  problems.extend(behaviour_lib.spec_problems(
      rec.behaviour_format, rec.behaviour_names, rec.behaviour_normalisation, dim,
      swap_weights=rec.behaviour_swap_weights))
  if rec.behaviour_format not in BEHAVIOUR_FORMATS:
    return problems
  frame_shape = BEHAVIOUR_FORMATS[rec.behaviour_format]
  if not isinstance(behaviour, np.ndarray):
    return problems + [f"behaviour must be a numpy array, got {type(behaviour).__name__}"]
  if is_vector:
    if behaviour.ndim != 2 or behaviour.shape[1] == 0:
      return problems + [
          f"{rec.behaviour_format} behaviour must have shape (T_b, D) with D >= 1, "
          f"got {behaviour.shape}"]
  elif behaviour.ndim != 1 + len(frame_shape) or behaviour.shape[1:] != frame_shape:
    hint = ("; a per-frame feature vector [T_b, D] needs behaviour_format='vector' and "
            "behaviour_names" if behaviour.ndim == 2 else "")
    return problems + [
        f"behaviour must have shape (T_b, {', '.join(map(str, frame_shape))}), "
        f"got {behaviour.shape}{hint}"]
  if not _is_float32(behaviour):
    problems.append(f"behaviour must be float32, got {behaviour.dtype}")
  num_frames = behaviour.shape[0]
  if num_frames == 0:
    problems.append("behaviour has no frames")
  elif np.issubdtype(behaviour.dtype, np.floating):
    flat = behaviour.reshape(num_frames, -1)
    infinite = np.isinf(flat).any(axis=1)
    if infinite.any():
      problems.append(f"behaviour holds infinite values in {int(infinite.sum())} frames "
                      f"(first: {int(np.argmax(infinite))}); mark missing values NaN")
    missing = np.isnan(flat).all(axis=1).mean()
    if missing > max_missing_behaviour:
      problems.append(f"behaviour is missing (NaN in every value) in {missing:.0%} of its "
                      f"frames, more than {max_missing_behaviour:.0%}")

  mask = rec.keypoint_mask
  if not isinstance(mask, np.ndarray) or mask.shape != behaviour.shape[:2]:
    problems.append(
        f"keypoint_mask must have shape {behaviour.shape[:2]}, got {getattr(mask, 'shape', None)}")
  elif mask.dtype != np.bool_:
    problems.append(f"keypoint_mask must be bool, got {mask.dtype}")
  else:
    values = int(np.prod(behaviour.shape[2:], dtype=np.int64))
    finite = np.isfinite(behaviour.reshape(behaviour.shape[:2] + (values,))).all(axis=-1)
    bad = mask & ~finite
    if bad.any():
      frame, point = np.argwhere(bad)[0]
      if is_vector:
        name = (f" {rec.behaviour_names[point]!r}" if rec.behaviour_names is not None
                and len(rec.behaviour_names) == behaviour.shape[1] else "")
        problems.append(
            f"behaviour holds {int(bad.sum())} non-finite value(s) marked as observed in "
            f"keypoint_mask (first: frame {frame}, dimension {point}{name}); mark missing "
            "values False or leave keypoint_mask out")
      else:
        problems.append(
            f"behaviour holds {int(bad.sum())} non-finite keypoint(s) marked as observed "
            f"(first: frame {frame}, keypoint {point})")

  neural_lengths = {}
  if rec.neural_images is not None:
    images = rec.neural_images
    if not isinstance(images, np.ndarray) or images.ndim != 3:
      problems.append(
          f"neural_images must have shape (T_n, H, W), got {getattr(images, 'shape', None)}")
    else:
      neural_lengths["neural_images"] = images.shape[0]
      if not _is_float32(images):
        problems.append(f"neural_images must be float32, got {images.dtype}")
      elif not np.all(np.isfinite(images)):
        problems.append("neural_images holds non-finite values")
  if rec.roi_traces is not None:
    traces = rec.roi_traces
    if not isinstance(traces, np.ndarray) or traces.ndim != 2:
      problems.append(f"roi_traces must have shape (T_n, R), got {getattr(traces, 'shape', None)}")
    else:
      neural_lengths["roi_traces"] = traces.shape[0]
      if not _is_float32(traces):
        problems.append(f"roi_traces must be float32, got {traces.dtype}")
      elif not np.all(np.isfinite(traces)):
        problems.append("roi_traces holds non-finite values")
  if rec.neural_images is None and rec.roi_traces is None:
    problems.append("a recording needs neural_images or roi_traces (or both)")
  if len(set(neural_lengths.values())) > 1:
    problems.append(f"neural lengths do not match: {neural_lengths}")
  num_neural = min(neural_lengths.values()) if neural_lengths else None
  if num_neural == 0:
    problems.append("the neural data has no frames")

  sync = rec.sync
  if not isinstance(sync, np.ndarray) or sync.shape != (num_frames,):
    problems.append(
        f"sync must have shape ({num_frames},) like behaviour, got {getattr(sync, 'shape', None)}")
  elif not np.issubdtype(sync.dtype, np.integer):
    problems.append(f"sync must hold integer frame indices, got {sync.dtype}")
  elif _beyond_int64(sync):
    problems.append(f"sync indices must lie in [0, {num_neural}) (the neural frames), "
                    f"got {sync.max()}, beyond the int64 range")
  elif num_frames:
    steps = np.diff(sync)  # int64 (`Recording` stores integer sync so): no wrap-around
    if np.any(steps < 0):
      first = int(np.argmax(steps < 0))
      problems.append(f"sync decreases at behaviour frame {first + 1}")
    if sync.min() < 0 or (num_neural is not None and sync.max() >= num_neural):
      problems.append(
          f"sync indices must lie in [0, {num_neural}) (the neural frames), "
          f"got range [{sync.min()}, {sync.max()}]")

  names = rec.class_names
  if not names or any(not isinstance(n, str) or not n for n in names):
    problems.append(f"class_names must be non-empty strings, got {names!r}")
  elif len(set(names)) != len(names):
    problems.append(f"class_names has duplicates: {names!r}")
  labels = rec.labels
  if not isinstance(labels, np.ndarray) or labels.shape != (num_frames,):
    problems.append(
        f"labels must have shape ({num_frames},) like behaviour, "
        f"got {getattr(labels, 'shape', None)}")
  elif not np.issubdtype(labels.dtype, np.integer):
    problems.append(f"labels must be integers, got {labels.dtype}")
  elif num_frames and (labels.min() < UNLABELLED or labels.max() >= len(names)):
    problems.append(
        f"labels must lie in [-1, {len(names)}) for {len(names)} classes, "
        f"got range [{labels.min()}, {labels.max()}]")

  if rec.rest is not None and (
      not isinstance(rec.rest, np.ndarray) or rec.rest.shape != (num_frames,)
      or rec.rest.dtype != np.bool_):
    problems.append(f"rest must be a bool array of shape ({num_frames},)")

  for name, rate in (("fps_behaviour", rec.fps_behaviour), ("fps_neural", rec.fps_neural)):
    if not isinstance(rate, (int, float, np.floating, np.integer)) or not np.isfinite(rate) \
        or rate <= 0:
      problems.append(f"{name} must be a positive number, got {rate!r}")
  _check_timestamps("behaviour_timestamps", rec.behaviour_timestamps, num_frames, problems)
  if num_neural is not None:
    _check_timestamps("neural_timestamps", rec.neural_timestamps, num_neural, problems)
    if not problems:
      problems.extend(_coverage_problems(rec, num_frames, num_neural))
  return problems


def check_recording_set(recordings: Iterable[Recording], source: str = "dataset") -> None:
  """Checks that recordings form one dataset.

  Raises:
    RecordingError: listing duplicate (animal, trial) pairs, differing class names,
      behaviour formats, behaviour names, normalisations or swap weights, or image sizes, an
      animal whose trials have different ROI counts, or an empty set.
  """
  recordings = list(recordings)
  problems = []
  if not recordings:
    problems.append("no recordings")
  seen: dict[tuple[str, str], str] = {}
  for rec in recordings:
    key = (rec.animal_id, rec.trial_id)
    if key in seen:
      problems.append(
          f"duplicate (animal, trial) {key}: {seen[key] or 'first'} and {rec.source or 'second'}")
    seen[key] = rec.source
  for attribute in ("class_names", "behaviour_format", "behaviour_names",
                    "behaviour_normalisation", "behaviour_swap_weights"):
    values = {getattr(r, attribute) for r in recordings}
    if len(values) > 1:
      problems.append(f"recordings disagree on {attribute}: {sorted(map(str, values))}")
  # ROI counts may differ between animals (a per-animal input layer reads them), but an
  # animal's ROIs are the same cells in all its trials.
  roi_counts: dict[str, dict[int, list[str]]] = {}
  for rec in recordings:
    if rec.roi_traces is not None:
      roi_counts.setdefault(rec.animal_id, {}).setdefault(
          int(rec.roi_traces.shape[1]), []).append(rec.trial_id)
  for animal, counts in roi_counts.items():
    if len(counts) > 1:
      detail = ", ".join(f"{count} ROIs in trial(s) {trials}"
                         for count, trials in sorted(counts.items()))
      problems.append(f"animal {animal!r} has roi_traces with different ROI counts across its "
                      f"trials ({detail}); an animal's trials must share its ROIs")
  image_shapes = {r.neural_images.shape[1:] for r in recordings if r.neural_images is not None}
  if len(image_shapes) > 1:
    problems.append(f"recordings disagree on the neural image size: {sorted(image_shapes)}")
  if len({r.neural_images is None for r in recordings}) > 1:
    problems.append("some recordings have neural_images and others do not")
  if len({r.roi_traces is None for r in recordings}) > 1:
    problems.append("some recordings have roi_traces and others do not")
  if problems:
    raise RecordingError(source, problems)
