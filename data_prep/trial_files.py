"""The per-trial file layout: one `.npz` or HDF5 file holds one trial.

For data without the MC2P folder structure, of any behaviour format (`nar.data.behaviour`: DeepFly3D
pose, a named per-frame feature vector, 2D keypoints) and either neural modality (images, ROI
traces). Every array of a `Recording` is stored under its field name; the keys, shapes, dtypes
and defaults are listed in `data_prep/README.md`. Float arrays of any precision are converted
to float32 (behaviour, images, traces); a required key that is missing, or a value of the
wrong kind, is an error naming the file and the key.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Callable, Sequence
import zipfile
import zlib

import h5py
import numpy as np

from data_prep import errors
from nar.data import recording

Recording = recording.Recording
RecordingError = recording.RecordingError

SUFFIXES = (".npz", ".h5", ".hdf5")
HDF5_SUFFIXES = (".h5", ".hdf5")
POSE_ALIAS = "pose"  # Accepted in place of `behaviour` for DeepFly3D pose.
STRING_KEYS = ("animal_id", "trial_id", "behaviour_format")
SCALAR_KEYS = ("fps_behaviour", "fps_neural")
# Accepted spellings of the frame rates, read like the keys they stand for.
RATE_ALIASES = {"fps_behaviour": "behaviour_fps", "fps_neural": "neural_fps"}
STRING_ARRAY_KEYS = ("class_names", "behaviour_names", "behaviour_normalisation")
ARRAY_KEYS = ("behaviour", "sync", "labels", "class_names", "neural_images", "roi_traces",
              "keypoint_mask", "rest", "behaviour_timestamps", "neural_timestamps",
              "behaviour_names", "behaviour_normalisation", "behaviour_swap_weights")


class _KeyProblem(Exception):
  """A problem of one key of a trial file."""


# ----------------------------------------------------------------------------------------
# Writing.
# ----------------------------------------------------------------------------------------


def _fields(rec: Recording) -> dict[str, Any]:
  fields = {
      "animal_id": rec.animal_id,
      "trial_id": rec.trial_id,
      "behaviour_format": rec.behaviour_format,
      "fps_behaviour": float(rec.fps_behaviour),
      "fps_neural": float(rec.fps_neural),
      "behaviour": np.asarray(rec.behaviour, np.float32),
      "sync": np.asarray(rec.sync, np.int64),
      "labels": np.asarray(rec.labels, np.int32),
      "class_names": np.array(rec.class_names, dtype=str),
      "keypoint_mask": np.asarray(rec.keypoint_mask, np.bool_),
  }
  optional = {
      "neural_images": (rec.neural_images, np.float32),
      "roi_traces": (rec.roi_traces, np.float32),
      "rest": (rec.rest, np.bool_),
      "behaviour_timestamps": (rec.behaviour_timestamps, None),
      "neural_timestamps": (rec.neural_timestamps, None),
  }
  for key, (value, dtype) in optional.items():
    if value is not None:
      fields[key] = np.asarray(value, dtype)
  for key in ("behaviour_names", "behaviour_normalisation"):
    if getattr(rec, key) is not None:
      fields[key] = np.array(getattr(rec, key), dtype=str)
  if rec.behaviour_swap_weights is not None:
    # float64 holds the declared weights (Python floats) exactly.
    fields["behaviour_swap_weights"] = np.asarray(rec.behaviour_swap_weights, np.float64)
  return fields


def write_trial_file(rec: Recording, path: str | os.PathLike) -> pathlib.Path:
  """Writes one recording as a per-trial `.npz` or HDF5 file, as `read_trial_file` reads it.

  In HDF5 files the strings and frame rates are attributes of the root group and the arrays
  are datasets; in `.npz` files every key is an array (strings as 0-d unicode arrays).

  Args:
    rec: the recording.
    path: the file to write; its suffix (`.npz`, `.h5`, `.hdf5`) picks the format. Parent
      folders are created.

  Returns:
    The path written.

  Raises:
    ValueError: if the suffix is not one of `SUFFIXES`.
    FileExistsError: if the file exists.
  """
  path = pathlib.Path(path)
  suffix = path.suffix.lower()
  if suffix not in SUFFIXES:
    raise ValueError(f"{path}: a trial file must end in one of {SUFFIXES}")
  if path.exists():
    raise FileExistsError(f"{path} exists")
  path.parent.mkdir(parents=True, exist_ok=True)
  fields = _fields(rec)
  if suffix == ".npz":
    # np.savez would add ".npz" to a name without it; an open file keeps the name as given.
    with open(path, "wb") as f:
      np.savez(f, **{k: np.asarray(v) for k, v in fields.items()})
  else:
    with h5py.File(path, "w") as f:
      for key, value in fields.items():
        if key in STRING_KEYS or key in SCALAR_KEYS:
          f.attrs[key] = value
        elif key in STRING_ARRAY_KEYS:
          f.create_dataset(key, data=np.array(value, dtype=h5py.string_dtype()))
        else:
          f.create_dataset(key, data=value)
  return path


# ----------------------------------------------------------------------------------------
# Reading.
# ----------------------------------------------------------------------------------------


def _load(path: pathlib.Path) -> dict[str, Any]:
  """Every key of a trial file: arrays (and, for HDF5, root attributes)."""
  if path.suffix.lower() == ".npz":
    try:
      npz = np.load(path, allow_pickle=False)
      if not isinstance(npz, np.lib.npyio.NpzFile):
        # np.load reads by content: a lone .npy array renamed to .npz comes back as an array.
        raise errors.file_error(
            path, "is a single .npy array, not an .npz archive of named arrays; save the "
            "trial with np.savez(path, behaviour=..., sync=..., ...)")
      with npz:
        contents = {}
        for key in npz.files:
          try:
            contents[key] = npz[key]
          except ValueError as error:
            # Object arrays need pickle, which is refused for safety.
            raise errors.file_error(path, f"key {key!r} cannot be read: {error}") from None
        return contents
    except RecordingError:
      raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
      # A truncated or damaged archive (zipfile.BadZipFile) is one bad trial, to be reported
      # with the others, not a crash of the whole read.
      raise errors.file_error(path, f"is not a readable .npz file ({type(error).__name__}: "
                              f"{error}); write it again or remove it") from None
  try:
    with h5py.File(path, "r") as f:
      contents = {key: value for key, value in f.attrs.items()}
      for key, item in f.items():
        if not isinstance(item, h5py.Dataset):
          continue
        if h5py.check_string_dtype(item.dtype) is not None:
          contents[key] = item.asstr()[()]
        else:
          contents[key] = item[()]
      return contents
  except (OSError, ValueError, TypeError) as error:
    raise errors.file_error(path, f"is not a readable HDF5 file: {error}") from None


def _as_string(value: Any) -> str:
  if isinstance(value, bytes):
    return value.decode()
  if isinstance(value, np.ndarray) and value.ndim == 0:
    value = value[()]
  if isinstance(value, (bytes, np.bytes_)):
    return bytes(value).decode()
  if isinstance(value, str):
    return str(value)
  raise _KeyProblem(f"must be a string, got {type(value).__name__} "
                    f"{getattr(value, 'dtype', '')}".rstrip())


def _as_number(value: Any) -> float:
  array = np.asarray(value)
  if array.ndim != 0 or array.dtype.kind not in "iuf":
    raise _KeyProblem(f"must be a number, got {value!r}")
  return float(array)


def _as_array(value: Any, kinds: str, dtype: Any, what: str) -> np.ndarray:
  array = np.asarray(value)
  if array.dtype.kind not in kinds:
    raise _KeyProblem(f"must hold {what}, got dtype {array.dtype}")
  return array.astype(dtype, copy=False) if dtype is not None else array


def _as_float32(value: Any) -> np.ndarray:
  return _as_array(value, "iuf", np.float32, "numbers")


def _as_bool(value: Any) -> np.ndarray:
  array = np.asarray(value)
  if array.dtype == np.bool_:
    return array
  if array.dtype.kind in "iu" and np.isin(array, (0, 1)).all():
    return array.astype(np.bool_)
  raise _KeyProblem(f"must be bool (or 0/1 integers), got dtype {array.dtype}")


def _as_class_names(value: Any) -> tuple[str, ...]:
  array = np.asarray(value)
  if array.ndim != 1 or array.dtype.kind not in "USO":
    raise _KeyProblem(f"must be a 1-D array of strings, got dtype {array.dtype}, "
                      f"shape {array.shape}")
  return tuple(_as_string(name) for name in array)


def timestamp_problems(key: str, stamps: np.ndarray) -> list[str]:
  """Why `stamps` cannot serve to derive the sync (1-D, finite, strictly increasing)."""
  if stamps.ndim != 1 or not len(stamps):
    return [f"key {key!r} must be a non-empty 1-D array of seconds to derive the sync, got "
            f"shape {stamps.shape}"]
  if not np.all(np.isfinite(stamps)):
    return [f"key {key!r} holds non-finite times"]
  steps = np.diff(stamps)
  if np.any(steps <= 0):
    first = int(np.argmax(steps <= 0)) + 1
    return [f"key {key!r} must be strictly increasing to derive the sync; frame {first} "
            f"({stamps[first]:g} s) is not after frame {first - 1} ({stamps[first - 1]:g} s)"]
  return []


def sync_from_timestamps(behaviour_timestamps: np.ndarray,
                         neural_timestamps: np.ndarray) -> np.ndarray:
  """The neural frame recorded at every behaviour frame, from the frame times.

  Args:
    behaviour_timestamps: `[T_b]` seconds.
    neural_timestamps: `[T_n]` seconds, increasing.

  Returns:
    `[T_b]` int64: the index of the last neural frame whose timestamp is <= the behaviour
    frame's; behaviour frames before the first neural frame get 0 (clipped).
  """
  index = np.searchsorted(neural_timestamps, behaviour_timestamps, side="right") - 1
  return np.clip(index, 0, None).astype(np.int64)


def read_trial_file(path: str | os.PathLike, *,
                    class_names: Sequence[str] | None = None) -> Recording:
  """Reads one per-trial `.npz` / `.h5` / `.hdf5` file.

  Args:
    path: the trial file.
    class_names: the behaviour vocabulary to express the labels in (matched by name with
      the file's `class_names`; a file with neither `class_names` nor `labels` takes it
      as given). None: the file's `class_names`.

  Returns:
    The validated recording; its `source` is the file.

  Raises:
    RecordingError: with the file as source, one line per problem, naming the key.
  """
  return _read_trial_file(pathlib.Path(path), class_names)[0]


def _read_trial_file(path: pathlib.Path, class_names: Sequence[str] | None
                     ) -> tuple[Recording, bool]:
  """The recording of a trial file, and whether the file names its behaviour classes.

  A file names its classes when it holds `class_names` or `labels`; one that holds neither
  fits any vocabulary (see `errors.adopt_class_names`).
  """
  contents = _load(path)
  problems: list[str] = []

  def get(key: str, convert: Callable[[Any], Any], *, required: bool = False,
          default: Any = None) -> Any:
    if key not in contents:
      if required:
        problems.append(f"missing required key {key!r}")
      return default
    try:
      return convert(contents[key])
    except _KeyProblem as problem:
      problems.append(f"key {key!r} {problem}")
      return default

  animal_id = get("animal_id", _as_string, required=True)
  trial_id = get("trial_id", _as_string, required=True)
  behaviour_names = get("behaviour_names", _as_class_names)
  behaviour_normalisation = get("behaviour_normalisation", _as_class_names)
  behaviour_swap_weights = get("behaviour_swap_weights",
                               lambda v: _as_array(v, "iuf", np.float64, "numbers"))
  # Named dimensions mean a feature vector unless the file says otherwise.
  default_format = "vector" if "behaviour_names" in contents else "deepfly3d_pose"
  behaviour_format = get("behaviour_format", _as_string, default=default_format)
  behaviour_key = "behaviour"
  if "behaviour" not in contents and POSE_ALIAS in contents:
    behaviour_key = POSE_ALIAS
  if "behaviour" not in contents and POSE_ALIAS not in contents:
    problems.append(f"missing required key 'behaviour' (or its alias {POSE_ALIAS!r})")
  behaviour = get(behaviour_key, _as_float32)
  for key, alias in RATE_ALIASES.items():
    if key in contents and alias in contents:
      problems.append(f"keys {key!r} and {alias!r} both give the same frame rate; keep one")
  rate_key = lambda key: key if key in contents else RATE_ALIASES[key]
  fps_behaviour = get(rate_key("fps_behaviour"), _as_number, default=100.0)
  fps_neural = get(rate_key("fps_neural"), _as_number, default=16.0)
  neural_images = get("neural_images", _as_float32)
  roi_traces = get("roi_traces", _as_float32)
  if "neural_images" not in contents and "roi_traces" not in contents:
    problems.append("missing neural data: needs key 'neural_images' and/or 'roi_traces'")
  as_times = lambda v: _as_array(v, "iuf", np.float64, "numbers (seconds)")
  behaviour_timestamps = get("behaviour_timestamps", as_times)
  neural_timestamps = get("neural_timestamps", as_times)
  if "sync" in contents:
    sync = get("sync", lambda v: _as_array(v, "iu", np.int64, "integer frame indices"))
  elif behaviour_timestamps is not None and neural_timestamps is not None:
    timing = (timestamp_problems("behaviour_timestamps", behaviour_timestamps)
              + timestamp_problems("neural_timestamps", neural_timestamps))
    if (not timing and behaviour is not None and behaviour.ndim
        and len(behaviour_timestamps) != len(behaviour)):
      timing.append(f"key 'behaviour_timestamps' has {len(behaviour_timestamps)} times for "
                    f"{len(behaviour)} behaviour frames; give one time per frame")
    neural = neural_images if neural_images is not None else roi_traces
    if not timing and neural is not None and neural.ndim and \
        len(neural_timestamps) != len(neural):
      timing.append(f"key 'neural_timestamps' has {len(neural_timestamps)} times for "
                    f"{len(neural)} neural frames; give one time per frame")
    problems.extend(timing)
    sync = None if timing else sync_from_timestamps(behaviour_timestamps, neural_timestamps)
  else:
    problems.append("missing key 'sync' (or both 'behaviour_timestamps' and "
                    "'neural_timestamps' to derive it)")
    sync = None
  file_class_names = get("class_names", _as_class_names,
                         default=recording.MC2P_CLASS_NAMES)
  if ("labels" in contents and "class_names" not in contents
      and behaviour_format != "deepfly3d_pose"):
    # The MC2P vocabulary is a default for fly pose only; other labels need their names.
    problems.append("key 'labels' needs key 'class_names' (the name of every class index) "
                    f"for {behaviour_format!r} behaviour")
  num_frames = behaviour.shape[0] if behaviour is not None and behaviour.ndim else 0
  labels = get("labels", lambda v: _as_array(v, "iu", np.int32, "integer class indices"),
               default=np.full(num_frames, recording.UNLABELLED, np.int32))
  keypoint_mask = get("keypoint_mask", _as_bool)
  rest = get("rest", _as_bool)

  names_classes = "class_names" in contents or "labels" in contents
  names = file_class_names
  if class_names is not None and not names_classes:
    # Nothing to match: an unannotated trial without class names takes the vocabulary as
    # given, like a trial folder of mc2p.read_trial. Checking the default MC2P names against
    # it would refuse every custom vocabulary.
    names = tuple(class_names)
  elif class_names is not None and tuple(class_names) != tuple(file_class_names):
    names = tuple(class_names)
    lookup = {name: index for index, name in enumerate(names)}
    unknown = sorted(set(file_class_names) - set(lookup))
    if unknown:
      problems.append(f"key 'class_names': unknown behaviour label(s) {unknown}; "
                      f"known: {list(names)}")
    elif labels is not None and labels.ndim == 1:
      mapping = np.array([lookup[n] for n in file_class_names], np.int32)
      valid = (labels >= 0) & (labels < len(mapping))
      if np.any(~valid & (labels != recording.UNLABELLED)):
        problems.append(f"key 'labels' must lie in [-1, {len(mapping)})")
      else:
        labels = np.where(valid, mapping[np.where(valid, labels, 0)], labels).astype(np.int32)
  if problems:
    raise RecordingError(str(path), problems)
  try:
    rec = Recording(
        animal_id=animal_id, trial_id=trial_id, behaviour=behaviour, sync=sync, labels=labels,
        class_names=names, fps_behaviour=fps_behaviour, fps_neural=fps_neural,
        neural_images=neural_images, roi_traces=roi_traces, keypoint_mask=keypoint_mask,
        rest=rest, behaviour_timestamps=behaviour_timestamps,
        neural_timestamps=neural_timestamps, behaviour_format=behaviour_format,
        behaviour_names=behaviour_names, behaviour_normalisation=behaviour_normalisation,
        behaviour_swap_weights=behaviour_swap_weights, source=str(path))
  except RecordingError as error:
    problems = [f"key {behaviour_key!r}: {p}" if behaviour_key == POSE_ALIAS
                and p.startswith("behaviour ") else p for p in error.problems]
    raise RecordingError(str(path), problems) from None
  return rec, names_classes


def find_trial_files(root: str | os.PathLike, *, required: bool = True) -> list[pathlib.Path]:
  """Every `.npz`, `.h5` and `.hdf5` file under `root` (recursively), sorted
  (`errors.find_files`)."""
  return errors.find_files(root, SUFFIXES, "trial file", required=required)


def read_trial_files(root: str | os.PathLike, *,
                     class_names: Sequence[str] | None = None) -> list[Recording]:
  """Reads every trial file under `root`.

  Args:
    root: folder searched recursively for `*.npz`, `*.h5`, `*.hdf5`.
    class_names: behaviour vocabulary, as in `read_trial_file`.

  Returns:
    One recording per file, sorted by path. Without `class_names`, a file that holds
    neither `class_names` nor `labels` takes the class names of the other files (when they
    agree on them).

  Raises:
    DatasetReadError: listing every bad file with its problems, or the problems of the set
      (duplicate (animal, trial), differing class names or image sizes). Never a partial
      list.
  """
  return errors.read_all(find_trial_files(root), lambda f: _read_trial_file(f, class_names),
                         source=str(root), desc="Reading trial files")
