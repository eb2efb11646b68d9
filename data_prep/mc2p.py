"""Reading the MC2P folder layout: one folder per trial, DeepFly3D pose, ΔF/F stack, sync
indices; the layout's names and patterns, which its writer (`data_prep.mc2p_writer`) shares.

A trial folder is named `<date>_<genotype>_Fly<N>_<trial>` (e.g. `200901_G23xU1_Fly1_001`).
Its files may sit in sub-folders (real MC2P trials keep the pose in `behData/images/df3d/`),
so every file is looked up recursively inside the trial folder, by name. The naming rules,
keys, shapes and defaults are listed in `data_prep/README.md`.

A trial is read into a validated `nar.data.recording.Recording`; every problem of a trial is
reported in one `RecordingError` whose source is the trial folder and whose lines name the
file concerned. `read_directory` reads all trials and raises one `DatasetReadError` for all
bad trials. `data_prep.mc2p_writer.write_trial` writes a `Recording` as such a folder.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import os
import pathlib
import pickle
import re
from typing import Any, Sequence

import numpy as np
import tifffile

from data_prep import errors
from nar.data import keypoints
from nar.data import recording

Recording = recording.Recording
RecordingError = recording.RecordingError
DatasetReadError = errors.DatasetReadError

# `<date>_<genotype>_Fly<N>_<trial>`; the genotype may itself hold underscores.
TRIAL_FOLDER_PATTERN = re.compile(
    r"^(?P<animal_id>(?P<date>\d{6})_(?P<genotype>.+)_Fly(?P<fly>\d+))_(?P<trial_id>\d+)$")
ANIMAL_ID_PATTERN = re.compile(r"^\d{6}_.+_Fly\d+$")
TRIAL_ID_PATTERN = re.compile(r"^\d+$")

# File names (glob patterns) looked up inside a trial folder.
POSE_GLOB = "pose_result*.pkl"
NEURAL_IMAGE_GLOBS = ("dff*.npy", "dff*.mm", "dff*.tif", "dff*.tiff")
SYNC_NAMES = ("sync_indices.npy", "indices.npy")
ROI_TRACES_NAME = "roi_traces.npy"
LABEL_ARRAY_NAME = "labels.npy"
LABEL_BOUT_NAMES = ("behaviour_labels.csv", "labels.csv")
CLASS_NAME_FILES = ("class_names.txt", "class_names.json")
REST_NAME = "rest.npy"
KEYPOINT_MASK_NAME = "keypoint_mask.npy"
METADATA_NAME = "metadata.json"
BEHAVIOUR_TIMESTAMPS_NAME = "behaviour_timestamps.npy"
NEURAL_TIMESTAMPS_NAME = "neural_timestamps.npy"

BOUT_COLUMNS = ("start_frame", "end_frame", "behaviour")
DEFAULT_FPS_BEHAVIOUR = 100.0
DEFAULT_FPS_NEURAL = 16.0


class _FileProblem(Exception):
  """A problem of one file of a trial; collected, then reported with the others."""

  def __init__(self, path: pathlib.Path, problem: str):
    super().__init__(problem)
    self.path = path
    self.problem = problem


# ----------------------------------------------------------------------------------------
# Finding files.
# ----------------------------------------------------------------------------------------


def _files_in(folder: pathlib.Path) -> list[pathlib.Path]:
  """Every file under `folder`, listed once: real trials hold ~10^5 camera images."""
  return [pathlib.Path(root) / name for root, _, names in os.walk(folder) for name in names]


def _find(folder: pathlib.Path, files: Sequence[pathlib.Path], patterns: Sequence[str],
          what: str, *, required: bool) -> pathlib.Path | None:
  """The one file of `files` (those under `folder`) whose name matches any of `patterns`."""
  matches = sorted({p for p in files if any(fnmatch.fnmatchcase(p.name, pattern)
                                            for pattern in patterns)})
  if len(matches) > 1:
    names = ", ".join(str(m.relative_to(folder)) for m in matches)
    raise _FileProblem(folder, f"more than one {what} file ({' | '.join(patterns)}): {names}")
  if not matches:
    if required:
      raise _FileProblem(folder, f"no {what} file found (looked for {' | '.join(patterns)})")
    return None
  return matches[0]


def _load_npy(path: pathlib.Path, *, mmap: bool = False) -> np.ndarray:
  try:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
  except (OSError, ValueError, EOFError) as error:
    raise _FileProblem(path, f"is not a readable .npy array: {error}") from None


def _read_text(path: pathlib.Path) -> str:
  # utf-8-sig drops the byte-order mark that Excel and Windows editors write, which would
  # otherwise become part of the first name or header.
  return path.read_text(encoding="utf-8-sig")


def _load_json(path: pathlib.Path) -> Any:
  try:
    return json.loads(_read_text(path))
  except (OSError, ValueError) as error:
    raise _FileProblem(path, f"is not readable JSON: {error}") from None


def _read_metadata(path: pathlib.Path) -> dict[str, Any]:
  """The settings of `metadata.json`: a JSON object (an empty one gives the defaults)."""
  metadata = _load_json(path)
  if not isinstance(metadata, dict):
    # [], null, 0 or "" are not "no settings": the file is not what it should be.
    kind = {list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(metadata), "null")
    raise _FileProblem(path, f"must hold a JSON object of settings (e.g. "
                       f'{{"fps_behaviour": 100, "fps_neural": 16}}, or {{}} for the '
                       f"defaults), got {kind}; fix the file or remove it")
  return metadata


# ----------------------------------------------------------------------------------------
# Reading the parts of a trial.
# ----------------------------------------------------------------------------------------


def read_pose_result(path: str | os.PathLike) -> np.ndarray:
  """Reads `points3d` from a DeepFly3D `pose_result*.pkl`.

  DeepFly3D results are pickles, so only read files from a source you trust.

  Returns:
    `[T, 38, 3]` float32 pose (NaN where a keypoint is missing).

  Raises:
    RecordingError: naming the file, if it is not a pickled dict with a numeric `points3d`
      of shape `[T, 38, 3]`.
  """
  path = pathlib.Path(path)
  try:
    return _read_pose_result(path)
  except _FileProblem as problem:
    raise errors.file_error(problem.path, problem.problem) from None


def _read_pose_result(path: pathlib.Path) -> np.ndarray:
  try:
    with open(path, "rb") as f:
      result = pickle.load(f)
  except Exception as error:  # pylint: disable=broad-except
    # A damaged pickle can fail in many ways (EOFError, UnpicklingError, ImportError, ...).
    raise _FileProblem(
        path, f"is not a readable DeepFly3D pickle: {type(error).__name__}: {error}") from None
  if not isinstance(result, dict) or "points3d" not in result:
    keys = sorted(map(str, result)) if isinstance(result, dict) else type(result).__name__
    raise _FileProblem(path, f"holds no 'points3d' (found {keys})")
  try:
    points = np.asarray(result["points3d"])
  except Exception as error:  # pylint: disable=broad-except
    raise _FileProblem(path, f"'points3d' is not an array: {error}") from None
  if not (np.issubdtype(points.dtype, np.floating) or np.issubdtype(points.dtype, np.integer)):
    raise _FileProblem(path, f"'points3d' must be numeric, got dtype {points.dtype}")
  if points.ndim != 3 or points.shape[1:] != (keypoints.NUM_KEYPOINTS, 3):
    raise _FileProblem(
        path, f"'points3d' must have shape (T, {keypoints.NUM_KEYPOINTS}, 3), got {points.shape}")
  if not len(points):
    raise _FileProblem(path, "'points3d' holds no frames: the trial is empty")
  return points.astype(np.float32)


def _metadata_image_shape(metadata: dict, metadata_path: pathlib.Path | None,
                          stack_path: pathlib.Path) -> tuple[int, ...]:
  shape = metadata.get("neural_image_shape")
  if shape is None:
    raise _FileProblem(stack_path, f"a raw .mm stack needs 'neural_image_shape' ([H, W] or "
                       f"[T, H, W]) in {METADATA_NAME}, which has none")
  if (not isinstance(shape, list) or len(shape) not in (2, 3)
      or not all(isinstance(s, int) and s > 0 for s in shape)):
    raise _FileProblem(metadata_path or stack_path,
                       f"'neural_image_shape' must be [H, W] or [T, H, W] positive integers, "
                       f"got {shape!r}")
  return tuple(shape)


def _read_neural_images(path: pathlib.Path, metadata: dict,
                        metadata_path: pathlib.Path | None) -> np.ndarray:
  """Reads the ΔF/F stack `[T_n, H, W]` as float32 (memory-mapped for .npy and .mm)."""
  suffix = path.suffix.lower()
  if suffix == ".mm":
    shape = _metadata_image_shape(metadata, metadata_path, path)
    height, width = shape[-2:]
    frame_bytes = height * width * np.dtype(np.float32).itemsize
    size = path.stat().st_size
    if size == 0 or size % frame_bytes:
      raise _FileProblem(path, f"size {size} bytes is not a positive multiple of "
                         f"H*W*4 = {frame_bytes} (float32 frames of {height}x{width})")
    num_frames = size // frame_bytes
    if len(shape) == 3 and shape[0] != num_frames:
      raise _FileProblem(path, f"holds {num_frames} frames of {height}x{width}, but "
                         f"{METADATA_NAME} says {shape[0]}")
    return np.memmap(path, dtype=np.float32, mode="r", shape=(num_frames, height, width))
  if suffix == ".npy":
    images = _load_npy(path, mmap=True)
  else:
    try:
      try:
        # Uncompressed stacks can be memory-mapped; others are read whole.
        images = tifffile.memmap(path, mode="r")
      except ValueError:
        images = tifffile.imread(path)
    except Exception as error:  # pylint: disable=broad-except
      raise _FileProblem(
          path, f"is not a readable TIFF stack: {type(error).__name__}: {error}") from None
  if images.ndim != 3:
    raise _FileProblem(path, f"ΔF/F stack must be 3-D (T_n, H, W), got shape {images.shape}")
  if not np.issubdtype(images.dtype, np.floating):
    raise _FileProblem(path, f"ΔF/F stack must hold floats, got dtype {images.dtype}")
  if images.dtype != np.float32:
    images = images.astype(np.float32)
  return images


def _read_float_array(path: pathlib.Path, ndim: int, what: str, *,
                      mmap: bool = False) -> np.ndarray:
  array = _load_npy(path, mmap=mmap)
  if array.ndim != ndim:
    raise _FileProblem(path, f"{what} must be {ndim}-D, got shape {array.shape}")
  if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
    raise _FileProblem(path, f"{what} must be numeric, got dtype {array.dtype}")
  return array


def _read_sync(path: pathlib.Path) -> np.ndarray:
  sync = _load_npy(path)
  if sync.ndim != 1:
    raise _FileProblem(path, f"sync indices must be 1-D (T_b,), got shape {sync.shape}")
  if not np.issubdtype(sync.dtype, np.integer):
    raise _FileProblem(path, f"sync indices must be integers, got dtype {sync.dtype}")
  return sync.astype(np.int64)


def _read_bool_array(path: pathlib.Path, what: str) -> np.ndarray:
  array = _load_npy(path)
  if array.dtype == np.bool_:
    return array
  if np.issubdtype(array.dtype, np.integer) and np.isin(array, (0, 1)).all():
    return array.astype(np.bool_)
  raise _FileProblem(path, f"{what} must be bool (or 0/1 integers), got dtype {array.dtype}")


def _read_class_names_file(path: pathlib.Path) -> list[str]:
  if path.suffix == ".json":
    names = _load_json(path)
  else:
    try:
      names = [line.strip() for line in _read_text(path).splitlines() if line.strip()]
    except (OSError, ValueError) as error:
      raise _FileProblem(path, f"cannot be read: {error}") from None
  if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
    raise _FileProblem(path, f"must list class names as strings, got {names!r}")
  return names


def _indices_in_vocabulary(names: Sequence[str], vocabulary: Sequence[str],
                           path: pathlib.Path) -> np.ndarray:
  """Index into `vocabulary` of every name; an unknown name is an error naming it."""
  lookup = {name: index for index, name in enumerate(vocabulary)}
  unknown = sorted({n for n in names if n not in lookup})
  if unknown:
    raise _FileProblem(path, f"unknown behaviour label(s) {unknown}; known: {list(vocabulary)}")
  return np.array([lookup[n] for n in names], np.int32)


def _read_label_array(path: pathlib.Path, class_names_path: pathlib.Path | None,
                      stored_names: Sequence[str], vocabulary: Sequence[str]) -> np.ndarray:
  """Per-frame labels from `labels.npy`, as indices into `vocabulary`.

  String labels are looked up by name ("" or "-1" means unlabelled). Integer labels index
  the class names of `class_names_path` if given, else `stored_names` (those of
  `metadata.json`, or the vocabulary).
  """
  labels = _load_npy(path)
  if labels.ndim != 1:
    raise _FileProblem(path, f"labels must be 1-D (T_b,), got shape {labels.shape}")
  if labels.dtype.kind in "US":
    names = labels.astype(str)
    labelled = (names != "") & (names != str(recording.UNLABELLED))
    out = np.full(labels.shape, recording.UNLABELLED, np.int32)
    out[labelled] = _indices_in_vocabulary(names[labelled].tolist(), vocabulary, path)
    return out
  if not np.issubdtype(labels.dtype, np.integer):
    raise _FileProblem(path, f"labels must be integers or strings, got dtype {labels.dtype}")
  file_names = (_read_class_names_file(class_names_path) if class_names_path
                else list(stored_names))
  if labels.size and (labels.min() < recording.UNLABELLED or labels.max() >= len(file_names)):
    raise _FileProblem(path, f"labels must lie in [-1, {len(file_names)}) for "
                       f"{len(file_names)} classes, got [{labels.min()}, {labels.max()}]")
  mapping = _indices_in_vocabulary(file_names, vocabulary, class_names_path or path)
  out = np.full(labels.shape, recording.UNLABELLED, np.int32)
  labelled = labels >= 0
  out[labelled] = mapping[labels[labelled]]
  return out


def _read_label_bouts(path: pathlib.Path, num_frames: int, vocabulary: Sequence[str], *,
                      animal_id: str, trial_id: str) -> np.ndarray:
  """Per-frame labels from a CSV of bouts `start_frame,end_frame,behaviour` (end exclusive).

  A CSV with `fly` and `trial` columns (like the published MC2P annotations) may hold many
  trials; only the rows of this trial are used.
  """
  try:
    # utf-8-sig: a byte-order mark (Excel) would otherwise join the first column's name.
    with open(path, newline="", encoding="utf-8-sig") as f:
      reader = csv.DictReader(f)
      # The file line of every row (line_num counts lines, so blank lines and multi-line
      # fields too), kept for the messages after rows of other trials are dropped.
      rows = [(reader.line_num, row) for row in reader]
      columns = list(reader.fieldnames or ())
  except (OSError, UnicodeDecodeError, csv.Error) as error:
    raise _FileProblem(path, f"is not a readable CSV: {error}") from None
  missing = [c for c in BOUT_COLUMNS if c not in columns]
  if missing:
    raise _FileProblem(path, f"missing column(s) {missing}; needs {list(BOUT_COLUMNS)}")
  filtered = "fly" in columns and "trial" in columns
  needed = BOUT_COLUMNS + (("fly", "trial") if filtered else ())
  # csv.DictReader fills the columns a short row lacks with None.
  short = [f"line {line}: no value for column(s) {[c for c in needed if row[c] is None]}; "
           f"every row needs {list(needed)}" for line, row in rows
           if any(row[c] is None for c in needed)]
  if short:
    raise _FileProblem(path, "; ".join(short))
  if filtered:
    rows = [(line, r) for line, r in rows
            if r["fly"] == animal_id and r["trial"].strip().isdigit()
            and int(r["trial"]) == int(trial_id)]
  labels = np.full(num_frames, recording.UNLABELLED, np.int32)
  covered = np.zeros(num_frames, np.bool_)
  problems = []
  names = [row["behaviour"] for _, row in rows]
  try:
    indices = _indices_in_vocabulary(names, vocabulary, path)
  except _FileProblem as problem:
    problems.append(problem.problem)
    indices = None
  for row_index, (line, row) in enumerate(rows):
    try:
      start, end = int(row["start_frame"]), int(row["end_frame"])
    except (TypeError, ValueError):
      problems.append(f"line {line}: frames must be integers, got "
                      f"{row['start_frame']!r}, {row['end_frame']!r}")
      continue
    if not 0 <= start < end <= num_frames:
      problems.append(f"line {line}: bout [{start}, {end}) is empty or outside the "
                      f"{num_frames} behaviour frames")
      continue
    if covered[start:end].any():
      problems.append(f"line {line}: bout [{start}, {end}) overlaps an earlier bout")
      continue
    covered[start:end] = True
    if indices is not None:
      labels[start:end] = indices[row_index]
  if problems:
    raise _FileProblem(path, "; ".join(problems))
  return labels


# ----------------------------------------------------------------------------------------
# Reading trials.
# ----------------------------------------------------------------------------------------


def _field_files(files: dict[str, pathlib.Path | None]) -> list[tuple[str, str]]:
  """(Recording field, file) pairs, longest field first so prefixes match correctly."""
  pairs = [(field, str(path)) for field, path in files.items() if path is not None]
  return sorted(pairs, key=lambda pair: -len(pair[0]))


def _attribute_problems(problems: Sequence[str], files: dict[str, pathlib.Path | None],
                        folder: pathlib.Path) -> list[str]:
  """Prefixes each validation problem with the file of the field it is about."""
  pairs = _field_files(files)
  out = []
  for problem in problems:
    for field, path in pairs:
      if problem.startswith(field + " ") or problem.startswith(field + ":"):
        out.append(f"{os.path.relpath(path, folder)}: {problem}")
        break
    else:
      out.append(problem)
  return out


def read_trial(folder: str | os.PathLike, *,
               class_names: Sequence[str] | None = None) -> Recording:
  """Reads one MC2P trial folder.

  Args:
    folder: the trial folder `<date>_<genotype>_Fly<N>_<trial>`.
    class_names: the behaviour vocabulary the labels are expressed in. None: the
      `class_names` of the trial's `metadata.json`, else `nar.data.recording.MC2P_CLASS_NAMES`.
      Label names in the trial's files are looked up in it by name.

  Returns:
    The validated recording; its `source` is the trial folder.

  Raises:
    RecordingError: with the trial folder as source, one line per problem, each naming the
      file concerned (relative to the folder).
  """
  return _read_trial(pathlib.Path(folder), class_names)[0]


def _read_trial(folder: pathlib.Path, class_names: Sequence[str] | None
                ) -> tuple[Recording, bool]:
  """The recording of a trial folder, and whether the folder names its behaviour classes.

  A folder names its classes when its `metadata.json` has `class_names` or it holds class
  names or labels; one that does neither fits any vocabulary (see
  `errors.adopt_class_names`).
  """
  if not folder.is_dir():
    raise errors.file_error(folder, "is not a folder")
  match = TRIAL_FOLDER_PATTERN.match(folder.name)
  if not match:
    raise errors.file_error(
        folder, "folder name is not <date>_<genotype>_Fly<N>_<trial> (e.g. 200901_G23xU1_Fly1_001)")
  animal_id, trial_id = match.group("animal_id"), match.group("trial_id")
  problems: list[str] = []

  def attempt(function, *args, **kwargs):
    try:
      return function(*args, **kwargs)
    except _FileProblem as problem:
      where = os.path.relpath(problem.path, folder) if problem.path != folder else ""
      problems.append(f"{where}: {problem.problem}" if where else problem.problem)
      return None

  files_in_folder = _files_in(folder)
  find = lambda patterns, what, required=False: attempt(
      _find, folder, files_in_folder, patterns, what, required=required)
  pose_path = find((POSE_GLOB,), "DeepFly3D pose", True)
  images_path = find(NEURAL_IMAGE_GLOBS, "ΔF/F stack")
  sync_path = find(SYNC_NAMES, "sync indices", True)
  roi_path = find((ROI_TRACES_NAME,), "ROI traces")
  label_array_path = find((LABEL_ARRAY_NAME,), "label array")
  label_bouts_path = find(LABEL_BOUT_NAMES, "label bouts")
  class_names_path = find(CLASS_NAME_FILES, "class names")
  rest_path = find((REST_NAME,), "rest flags")
  mask_path = find((KEYPOINT_MASK_NAME,), "keypoint mask")
  metadata_path = find((METADATA_NAME,), "metadata")
  behaviour_times_path = find((BEHAVIOUR_TIMESTAMPS_NAME,), "behaviour timestamps")
  neural_times_path = find((NEURAL_TIMESTAMPS_NAME,), "neural timestamps")

  # None only when metadata.json is unreadable or not an object: its problem is recorded.
  metadata = (attempt(_read_metadata, metadata_path) if metadata_path else None) or {}
  metadata_name = os.path.relpath(metadata_path, folder) if metadata_path else METADATA_NAME
  stored_names = metadata.get("class_names")
  if stored_names is not None and (
      not isinstance(stored_names, list) or not stored_names
      or not all(isinstance(n, str) for n in stored_names)):
    problems.append(f"{metadata_name}: 'class_names' must be a list of strings, "
                    f"got {stored_names!r}")
    stored_names = None
  vocabulary = tuple(class_names or stored_names or recording.MC2P_CLASS_NAMES)

  pose = attempt(_read_pose_result, pose_path) if pose_path else None
  images = (attempt(_read_neural_images, images_path, metadata, metadata_path)
            if images_path else None)
  sync = attempt(_read_sync, sync_path) if sync_path else None
  roi_traces = (attempt(_read_float_array, roi_path, 2, "ROI traces", mmap=True)
                if roi_path else None)
  if roi_traces is not None and roi_traces.dtype != np.float32:
    roi_traces = roi_traces.astype(np.float32)
  if images_path is None and roi_path is None:
    problems.append(f"no neural data: neither a ΔF/F stack ({' | '.join(NEURAL_IMAGE_GLOBS)}) "
                    f"nor {ROI_TRACES_NAME}")
  rest = attempt(_read_bool_array, rest_path, "rest flags") if rest_path else None
  mask = attempt(_read_bool_array, mask_path, "keypoint mask") if mask_path else None
  behaviour_times = (attempt(_read_float_array, behaviour_times_path, 1, "behaviour timestamps")
                     if behaviour_times_path else None)
  neural_times = (attempt(_read_float_array, neural_times_path, 1, "neural timestamps")
                  if neural_times_path else None)

  if label_array_path and label_bouts_path:
    problems.append(f"labels given twice: {os.path.relpath(label_array_path, folder)} and "
                    f"{os.path.relpath(label_bouts_path, folder)}; keep one")
    labels = None
  elif label_array_path:
    labels = attempt(_read_label_array, label_array_path, class_names_path,
                     stored_names or vocabulary, vocabulary)
  elif pose is not None and label_bouts_path:
    labels = attempt(_read_label_bouts, label_bouts_path, len(pose), vocabulary,
                     animal_id=animal_id, trial_id=trial_id)
  elif pose is not None:
    # Most MC2P trials are not annotated.
    labels = np.full(len(pose), recording.UNLABELLED, np.int32)
  else:
    labels = None

  fps = {}
  for key, default in (("fps_behaviour", DEFAULT_FPS_BEHAVIOUR),
                       ("fps_neural", DEFAULT_FPS_NEURAL)):
    fps[key] = metadata.get(key, default)
    if isinstance(fps[key], bool) or not isinstance(fps[key], (int, float)):
      problems.append(f"{metadata_name}: {key!r} must be a number, got {fps[key]!r}")

  if problems or pose is None or sync is None or labels is None:
    raise RecordingError(str(folder), problems or ["cannot be read"])
  files = {
      "behaviour": pose_path, "keypoint_mask": mask_path, "neural_images": images_path,
      "roi_traces": roi_path, "sync": sync_path,
      "labels": label_array_path or label_bouts_path, "rest": rest_path,
      "behaviour_timestamps": behaviour_times_path, "neural_timestamps": neural_times_path,
      "fps_behaviour": metadata_path, "fps_neural": metadata_path,
      "class_names": metadata_path,
  }
  names_classes = bool(stored_names or class_names_path or label_array_path
                       or label_bouts_path)
  try:
    rec = Recording(
        animal_id=animal_id, trial_id=trial_id, behaviour=pose, sync=sync, labels=labels,
        class_names=vocabulary, fps_behaviour=fps["fps_behaviour"],
        fps_neural=fps["fps_neural"], neural_images=images, roi_traces=roi_traces,
        keypoint_mask=mask, rest=rest,
        behaviour_timestamps=None if behaviour_times is None else np.asarray(behaviour_times),
        neural_timestamps=None if neural_times is None else np.asarray(neural_times),
        source=str(folder))
  except RecordingError as error:
    raise RecordingError(str(folder), _attribute_problems(error.problems, files, folder)) from None
  return rec, names_classes


def find_trial_folders(root: str | os.PathLike) -> list[pathlib.Path]:
  """The trial folders directly under `root` whose names match `<date>_<genotype>_Fly<N>_<trial>`.

  Other entries (files, folders with other names) are ignored.

  Returns:
    The matching folders, sorted by name.

  Raises:
    RecordingError: if `root` is not a folder or holds no trial folder.
  """
  root = pathlib.Path(root)
  if not root.is_dir():
    raise errors.file_error(root, "is not a folder")
  folders = sorted(p for p in root.iterdir()
                   if p.is_dir() and TRIAL_FOLDER_PATTERN.match(p.name))
  if not folders:
    raise errors.file_error(
        root, "holds no MC2P trial folder named <date>_<genotype>_Fly<N>_<trial> "
        "(e.g. 200901_G23xU1_Fly1_001)")
  return folders


def read_directory(root: str | os.PathLike, *,
                   class_names: Sequence[str] | None = None) -> list[Recording]:
  """Reads every MC2P trial folder under `root`.

  Args:
    root: folder holding the trial folders.
    class_names: behaviour vocabulary, as in `read_trial`.

  Returns:
    One recording per trial folder, sorted by folder name. Without `class_names`, a trial
    that names no classes (no `class_names` in its `metadata.json`, no class names file)
    and holds no labels takes the class names of the other trials (when they agree on them).

  Raises:
    DatasetReadError: listing every bad trial with its problems, or the problems of the set
      (duplicate (animal, trial), differing class names or image sizes). Never a partial
      list.
  """
  return errors.read_all(find_trial_folders(root), lambda f: _read_trial(f, class_names),
                         source=str(root), desc="Reading MC2P trials")
