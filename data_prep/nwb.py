"""Reading the NWB layout: one Neurodata Without Borders file (`.nwb`) holds one trial
(`data_prep.nwb_writer` writes it).

Reading and writing NWB needs the optional packages pynwb and ndx-pose
(`pip install 'nar[nwb]'`); they are imported only when an NWB file is read or written.

What a trial's file must hold, and where the reader finds it (`data_prep/README.md` has the
table):

  animal: `subject.subject_id` (required).
  trial: `session_id`, else the file name without `.nwb`.
  behaviour: the file's ndx-pose `PoseEstimation` (in any processing module), one
    `PoseEstimationSeries` per keypoint sharing one time base. 3-D series named by the 38
    DeepFly3D keypoints (`nar.data.keypoints.keypoint_names()`; absent ones are missing) are read
    as DeepFly3D pose; 2-D series as `keypoints_2d` (`<node>_x`, `<node>_y`); 3-D series of
    other names as a z-scored `vector` (`<node>_x`, `<node>_y`, `<node>_z`). Nodes come in the
    order of the skeleton, else of the series. NaN marks a missing keypoint.
  neural images: the file's `TwoPhotonSeries` or `OnePhotonSeries`, `[T_n, H, W]` ΔF/F.
  ROI traces: the `RoiResponseSeries` of the file's `DfOverF`, `[T_n, R]` ΔF/F.
  sync: derived from the frame times (`trial_files.sync_from_timestamps`): NWB keeps every
    series on the session's clock, so the neural frame recorded at a behaviour frame is the
    last one that started at or before it.
  labels: the `TimeIntervals` table `behavior` (or `behaviour`) in `intervals`, with a text
    column `behavior`, `behaviour` or `label`: a behaviour frame whose time t lies in
    `[start_time, stop_time)` of a row takes that row's class; other frames are unlabelled.
    No table: the trial is unannotated.
  rest: the `TimeIntervals` table `rest`, if any (frames inside a row rest).

Where a file holds several candidates (two pose estimations, two imaging series), the
reader names them and `NwbObjects` picks one by name; it never picks one silently. Series
values are read in their declared unit (`data * conversion + offset`).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Sequence

import numpy as np

from data_prep import errors
from data_prep import trial_files
from nar.data import behaviour as behaviour_lib
from nar.data import keypoints
from nar.data import recording

Recording = recording.Recording
RecordingError = recording.RecordingError

SUFFIX = ".nwb"
LABEL_TABLE_NAMES = ("behavior", "behaviour")
LABEL_COLUMN_NAMES = ("behavior", "behaviour", "label")
REST_TABLE_NAME = "rest"
INSTALL_HINT = "reading or writing NWB files needs pynwb and ndx-pose: pip install 'nar[nwb]'"
_AXES = ("x", "y", "z")


@dataclasses.dataclass(frozen=True)
class NwbObjects:
  """Names of the NWB objects to read where a file holds more than one candidate.

  Attributes:
    pose_estimation: name of the ndx-pose `PoseEstimation` holding the behaviour.
    imaging_series: name of the `TwoPhotonSeries` / `OnePhotonSeries` of ΔF/F images.
    roi_series: name of the `RoiResponseSeries` of ROI ΔF/F traces (any container, not only
      `DfOverF`).
    label_table: name of the `TimeIntervals` table of behaviour labels.
  """
  pose_estimation: str | None = None
  imaging_series: str | None = None
  roi_series: str | None = None
  label_table: str | None = None


def nwb_modules():
  """pynwb and ndx_pose, imported on first use (optional dependencies)."""
  try:
    import ndx_pose  # pylint: disable=import-outside-toplevel
    import pynwb  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise ImportError(f"{INSTALL_HINT} ({error})") from None
  return pynwb, ndx_pose


class _Problem(Exception):
  """A problem of one NWB file that stops one of its parts from being read."""


# ----------------------------------------------------------------------------------------
# Reading.
# ----------------------------------------------------------------------------------------


def _location(obj: Any) -> str:
  parent = getattr(obj, "parent", None)
  if parent is None or getattr(parent, "name", "root") == "root":
    return obj.name
  return f"{parent.name}/{obj.name}"


def _pick(objects: Sequence[Any], kinds: tuple[type, ...], name: str | None, what: str,
          field: str) -> Any | None:
  """The one object of `kinds` (named `name` when given); None when there is none."""
  candidates = [o for o in objects if isinstance(o, kinds)]
  if name is not None:
    named = [o for o in candidates if o.name == name]
    if not named:
      raise _Problem(f"holds no {what} named {name!r} (NwbObjects.{field}); its {what}s: "
                     f"{sorted(_location(o) for o in candidates) or 'none'}")
    candidates = named
  if len(candidates) > 1:
    raise _Problem(f"holds {len(candidates)} {what}s {sorted(_location(o) for o in candidates)}; "
                   f"name the one to read with NwbObjects.{field}")
  return candidates[0] if candidates else None


def _values(series: Any) -> np.ndarray:
  """A time series' data in its unit, float32 (`data * conversion + offset`)."""
  data = series.data
  if data is None or getattr(data, "size", 1) == 0 or len(data) == 0:
    external = getattr(series, "external_file", None)
    where = " (its frames are in external files, which are not read)" if external is not None \
        else ""
    raise _Problem(f"{_location(series)} holds no data{where}")
  values = np.asarray(data[:], np.float32)
  conversion = float(getattr(series, "conversion", 1.0) or 1.0)
  offset = float(getattr(series, "offset", 0.0) or 0.0)
  if conversion != 1.0 or offset != 0.0:
    values = values * np.float32(conversion) + np.float32(offset)
  return values


def _times(series: Any, num_frames: int) -> np.ndarray:
  """A time series' frame times in seconds on the session clock."""
  if series.timestamps is not None:
    stamps = np.asarray(series.timestamps[:], np.float64)
    if stamps.shape != (num_frames,):
      raise _Problem(f"{_location(series)} has {len(stamps)} timestamps for {num_frames} frames")
  elif series.rate:
    stamps = float(series.starting_time or 0.0) + np.arange(num_frames) / float(series.rate)
  else:
    raise _Problem(f"{_location(series)} has neither timestamps nor a rate")
  problems = trial_files.timestamp_problems(f"{_location(series)} timestamps", stamps)
  if problems:
    raise _Problem(problems[0])
  return stamps


def _frame_rate(series: Any, stamps: np.ndarray) -> float:
  if series.rate:
    return float(series.rate)
  if len(stamps) < 2:
    raise _Problem(f"{_location(series)} has one frame and no rate: its frame rate is unknown")
  return float(1.0 / np.median(np.diff(stamps)))


def _node_order(pose: Any) -> list[str]:
  names = list(pose.pose_estimation_series)
  skeleton = getattr(pose, "skeleton", None)
  nodes = [] if skeleton is None else [str(n) for n in np.asarray(skeleton.nodes[:]).astype(str)]
  return [n for n in nodes if n in names] + [n for n in names if n not in nodes]


def _read_behaviour(pose: Any) -> dict[str, Any]:
  """The behaviour fields of a recording from an ndx-pose `PoseEstimation`."""
  names = _node_order(pose)
  if not names:
    raise _Problem(f"{_location(pose)} holds no PoseEstimationSeries")
  series = [pose.pose_estimation_series[n] for n in names]
  values = [_values(s) for s in series]
  shapes = {v.shape for v in values}
  if len(shapes) != 1:
    raise _Problem(f"{_location(pose)}: its series differ in shape "
                   f"({dict(zip(names, (v.shape for v in values)))}); every keypoint needs "
                   "the same frames")
  (shape,) = shapes
  if len(shape) != 2 or shape[1] not in (2, 3):
    raise _Problem(f"{_location(pose)}: keypoint series must be [T, 2] or [T, 3], got {shape}")
  stamps = _times(series[0], shape[0])
  for name, other in zip(names[1:], series[1:]):
    if not np.array_equal(_times(other, shape[0]), stamps):
      raise _Problem(f"{_location(pose)}: series {name!r} has other frame times than "
                     f"{names[0]!r}; every keypoint needs one time base")
  fields = {"behaviour_timestamps": stamps, "fps_behaviour": _frame_rate(series[0], stamps)}
  pose_names = keypoints.keypoint_names()
  if shape[1] == 3 and set(names) <= set(pose_names):
    pose_array = np.full((shape[0], keypoints.NUM_KEYPOINTS, 3), np.nan, np.float32)
    for name, value in zip(names, values):
      pose_array[:, pose_names.index(name)] = value
    fields.update(behaviour=pose_array, behaviour_format=behaviour_lib.POSE_FORMAT)
    return fields
  axes = _AXES[:shape[1]]
  fields.update(
      behaviour=np.concatenate(values, axis=1).astype(np.float32),
      behaviour_names=tuple(f"{name}_{axis}" for name in names for axis in axes),
      behaviour_format=(behaviour_lib.KEYPOINTS_2D_FORMAT if shape[1] == 2
                        else behaviour_lib.VECTOR_FORMAT))
  return fields


def _read_neural(objects: Sequence[Any], pynwb: Any, choice: NwbObjects) -> dict[str, Any]:
  """The neural fields of a recording: ΔF/F images and/or ROI traces, and their frame times."""
  ophys = pynwb.ophys
  imaging = _pick(objects, (ophys.TwoPhotonSeries, ophys.OnePhotonSeries),
                  choice.imaging_series, "imaging series", "imaging_series")
  if choice.roi_series is not None:
    rois = _pick(objects, (ophys.RoiResponseSeries,), choice.roi_series,
                 "RoiResponseSeries", "roi_series")
  else:
    in_dff = [o for o in objects if isinstance(o, ophys.RoiResponseSeries)
              and isinstance(getattr(o, "parent", None), ophys.DfOverF)]
    rois = _pick(in_dff, (ophys.RoiResponseSeries,), None, "RoiResponseSeries in DfOverF",
                 "roi_series")
  if imaging is None and rois is None:
    others = sorted(_location(o) for o in objects if isinstance(o, ophys.RoiResponseSeries))
    hint = (f"; its other ROI series {others} are read only when named with "
            "NwbObjects.roi_series (they may not be ΔF/F)" if others else "")
    raise _Problem("holds no neural data: neither a TwoPhotonSeries / OnePhotonSeries nor a "
                   f"RoiResponseSeries in a DfOverF{hint}")
  fields: dict[str, Any] = {}
  timed = []
  if imaging is not None:
    images = _values(imaging)
    if images.ndim != 3:
      raise _Problem(f"{_location(imaging)}: ΔF/F images must be [T, H, W], got {images.shape}"
                     + (" (volumetric imaging is not supported)" if images.ndim == 4 else ""))
    fields["neural_images"] = images
    timed.append((imaging, len(images)))
  if rois is not None:
    traces = _values(rois)
    fields["roi_traces"] = traces[:, None] if traces.ndim == 1 else traces
    timed.append((rois, len(traces)))
  stamps = [_times(series, length) for series, length in timed]
  if len(stamps) == 2 and not np.array_equal(stamps[0], stamps[1]):
    raise _Problem(f"{_location(imaging)} and {_location(rois)} have different frame times; "
                   "NAR needs one neural time base")
  series, _ = timed[0]
  rate = series.rate or getattr(getattr(series, "imaging_plane", None), "imaging_rate", None)
  fields["neural_timestamps"] = stamps[0]
  fields["fps_neural"] = float(rate) if rate else _frame_rate(series, stamps[0])
  return fields


def _intervals(table: Any) -> tuple[np.ndarray, np.ndarray]:
  starts = np.asarray(table["start_time"][:], np.float64)
  stops = np.asarray(table["stop_time"][:], np.float64)
  return starts, stops


def _frames_in_intervals(table: Any, times: np.ndarray) -> list[tuple[int, int, int]]:
  """`(row, first frame, end frame)` of every row: the frames with start <= t < stop."""
  starts, stops = _intervals(table)
  bad = np.flatnonzero(~(stops > starts))
  if bad.size:
    row = int(bad[0])
    raise _Problem(f"intervals/{table.name}: row {row} ends at {stops[row]:g} s, not after its "
                   f"start {starts[row]:g} s")
  first = np.searchsorted(times, starts, side="left")
  end = np.searchsorted(times, stops, side="left")
  return [(row, int(a), int(b)) for row, (a, b) in enumerate(zip(first, end))]


def _read_labels(table: Any, times: np.ndarray, vocabulary: Sequence[str]) -> np.ndarray:
  """Per-frame class indices into `vocabulary` from a `TimeIntervals` table of bouts."""
  column = next((c for c in LABEL_COLUMN_NAMES if c in table.colnames), None)
  if column is None:
    raise _Problem(f"intervals/{table.name} has no label column: needs one of "
                   f"{list(LABEL_COLUMN_NAMES)}, has {list(table.colnames)}")
  names = [n.decode() if isinstance(n, bytes) else str(n) for n in table[column][:]]
  lookup = {name: index for index, name in enumerate(vocabulary)}
  unknown = sorted({n for n in names if n not in lookup})
  if unknown:
    raise _Problem(f"intervals/{table.name}: unknown behaviour label(s) {unknown}; known: "
                   f"{list(vocabulary)} (pass the dataset's class names to read others, e.g. "
                   "data_prep.build --class_names=...)")
  labels = np.full(len(times), recording.UNLABELLED, np.int32)
  covered = np.zeros(len(times), np.bool_)
  for row, first, end in _frames_in_intervals(table, times):
    if covered[first:end].any():
      raise _Problem(f"intervals/{table.name}: row {row} ({names[row]!r}) overlaps an earlier "
                     "bout")
    covered[first:end] = True
    labels[first:end] = lookup[names[row]]
  return labels


def _read_rest(table: Any, times: np.ndarray) -> np.ndarray:
  rest = np.zeros(len(times), np.bool_)
  for _, first, end in _frames_in_intervals(table, times):
    rest[first:end] = True
  return rest


def _label_table(nwbfile: Any, name: str | None) -> Any | None:
  intervals = nwbfile.intervals or {}
  if name is not None:
    if name not in intervals:
      raise _Problem(f"holds no intervals table named {name!r} (NwbObjects.label_table); its "
                     f"tables: {sorted(intervals) or 'none'}")
    return intervals[name]
  found = [intervals[n] for n in LABEL_TABLE_NAMES if n in intervals]
  if len(found) > 1:
    raise _Problem(f"holds label tables {[t.name for t in found]}; keep one or name it with "
                   "NwbObjects.label_table")
  return found[0] if found else None


def read_nwb_file(path: str | os.PathLike, *, class_names: Sequence[str] | None = None,
                  objects: NwbObjects = NwbObjects()) -> Recording:
  """Reads one trial's `.nwb` file.

  Args:
    path: the NWB file.
    class_names: the behaviour vocabulary of the labels; None: `recording.MC2P_CLASS_NAMES`.
    objects: which pose estimation, imaging series, ROI series and label table to read where
      the file holds several.

  Returns:
    The validated recording; its `source` is the file.

  Raises:
    ImportError: if pynwb or ndx-pose is not installed.
    RecordingError: with the file as source, one line per problem.
  """
  return _read_nwb_file(pathlib.Path(path), class_names, objects)[0]


def _read_nwb_file(path: pathlib.Path, class_names: Sequence[str] | None,
                   choice: NwbObjects) -> tuple[Recording, bool]:
  """The recording of an NWB file, and whether the file labels its behaviour."""
  pynwb, ndx_pose = nwb_modules()
  if not path.is_file():
    raise errors.file_error(path, "is not a file")
  # h5py and hdmf raise many kinds of errors for a file that is not valid NWB.
  try:
    io = pynwb.NWBHDF5IO(str(path), "r", load_namespaces=True)
  except Exception as error:  # pylint: disable=broad-except
    raise errors.file_error(path, f"is not a readable NWB file: {error}") from None
  with io:
    try:
      nwbfile = io.read()
    except Exception as error:  # pylint: disable=broad-except
      raise errors.file_error(path, f"is not a readable NWB file: {error}") from None
    problems: list[str] = []

    def attempt(function, *args):
      try:
        return function(*args)
      except _Problem as problem:
        problems.append(str(problem))
        return None

    objects = list(nwbfile.objects.values())
    subject = nwbfile.subject
    animal_id = getattr(subject, "subject_id", None) if subject is not None else None
    if not animal_id:
      problems.append("has no subject.subject_id: every trial must name its animal")
    trial_id = nwbfile.session_id or path.name[:-len(SUFFIX)]
    known_problems = len(problems)
    pose = attempt(_pick, objects, (ndx_pose.PoseEstimation,), choice.pose_estimation,
                   "PoseEstimation", "pose_estimation")
    if pose is None and len(problems) == known_problems:  # Not picked: none there.
      problems.append("holds no ndx-pose PoseEstimation: the behaviour of the trial")
    fields = (attempt(_read_behaviour, pose) if pose is not None else None) or {}
    fields.update(attempt(_read_neural, objects, pynwb, choice) or {})
    vocabulary = tuple(class_names or recording.MC2P_CLASS_NAMES)
    table = attempt(_label_table, nwbfile, choice.label_table)
    intervals = nwbfile.intervals or {}
    times = fields.get("behaviour_timestamps")
    labels = rest = None
    if times is not None:
      labels = (attempt(_read_labels, table, times, vocabulary) if table is not None
                else np.full(len(times), recording.UNLABELLED, np.int32))
      if REST_TABLE_NAME in intervals:
        rest = attempt(_read_rest, intervals[REST_TABLE_NAME], times)
    if problems or labels is None or "neural_timestamps" not in fields:
      raise RecordingError(str(path), problems or ["cannot be read"])
  sync = trial_files.sync_from_timestamps(fields["behaviour_timestamps"],
                                          fields["neural_timestamps"])
  rec = Recording(animal_id=str(animal_id), trial_id=str(trial_id), sync=sync, labels=labels,
                  class_names=vocabulary, rest=rest, source=str(path), **fields)
  return rec, table is not None


def find_nwb_files(root: str | os.PathLike, *, required: bool = True) -> list[pathlib.Path]:
  """Every `.nwb` file under `root` (recursively), sorted (`errors.find_files`)."""
  return errors.find_files(root, (SUFFIX,), "NWB file", required=required)


def read_nwb_files(root: str | os.PathLike, *, class_names: Sequence[str] | None = None,
                   objects: NwbObjects = NwbObjects()) -> list[Recording]:
  """Reads every `.nwb` file under `root`, one trial each.

  Args:
    root: folder searched recursively for `*.nwb`.
    class_names: behaviour vocabulary, as in `read_nwb_file`.
    objects: the objects to read where files hold several, as in `read_nwb_file`.

  Returns:
    One recording per file, sorted by path.

  Raises:
    ImportError: if pynwb or ndx-pose is not installed.
    DatasetReadError: listing every bad file with its problems, or the problems of the set.
      Never a partial list.
  """
  return errors.read_all(find_nwb_files(root),
                         lambda f: _read_nwb_file(f, class_names, objects),
                         source=str(root), desc="Reading NWB files")
