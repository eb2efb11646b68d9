"""Writing the NWB layout: one recording as an NWB file that `data_prep.nwb` reads back, and
a trial's embeddings (`nar.embed`) as an NWB processing module.

Needs the optional packages pynwb and ndx-pose (`pip install 'nar[nwb]'`).
"""

from __future__ import annotations

import datetime
import os
import pathlib
from typing import Any

import numpy as np

from data_prep import nwb
from data_prep import trial_files
from nar.data import behaviour as behaviour_lib
from nar.data import keypoints
from nar.data import recording

Recording = recording.Recording

def _bout_times(values: np.ndarray, times: np.ndarray, frame_interval: float
                ) -> list[tuple[float, float, int]]:
  """`(start time, stop time, value)` of every run of equal non-negative values; a run stops
  when the next frame starts (the last frame lasts one frame interval)."""
  stop_times = np.append(times[1:], times[-1] + frame_interval)
  return [(float(times[start]), float(stop_times[end - 1]), value)
          for start, end, value in recording.label_bouts(values)]


def _timing(timestamps: np.ndarray | None, rate: float) -> dict[str, Any]:
  """A series' timing: its frame times, or a start and a rate where a recording has none
  (so that the rate is read back exactly)."""
  if timestamps is None:
    return {"starting_time": 0.0, "rate": float(rate)}
  return {"timestamps": np.asarray(timestamps, np.float64)}


def _node_names(rec: Recording) -> list[str]:
  if rec.behaviour_format == behaviour_lib.POSE_FORMAT:
    return list(keypoints.keypoint_names())
  return [name[:-2] for name in rec.behaviour_names[::2]]


def write_nwb_file(rec: Recording, path: str | os.PathLike, *,
                   session_start_time: datetime.datetime | None = None) -> pathlib.Path:
  """Writes one recording as an NWB file that `nwb.read_nwb_file` reads back.

  The pose goes to an ndx-pose `PoseEstimation` (processing module `behavior`; values not
  marked observed in `keypoint_mask` are written as NaN), ΔF/F images to a `TwoPhotonSeries`
  and ROI traces to a `DfOverF` (processing module `ophys`; the ROI masks are not part of a
  recording, so they are written empty), labels and rest flags to `TimeIntervals` bouts.
  The sync is not stored: NWB derives it from the frame times, so it must follow from them.

  Args:
    rec: the recording; DeepFly3D pose or 2-D keypoints.
    path: the file to write, ending in `.nwb`; parent folders are created.
    session_start_time: the session's start (timezone-aware); None: now, in UTC.

  Returns:
    The path written.

  Raises:
    ImportError: if pynwb or ndx-pose is not installed.
    NotImplementedError: for `vector` behaviour (NWB has no pose container for it).
    ValueError: if the suffix is not `.nwb`, or the sync does not follow from the frame times.
    FileExistsError: if the file exists.
  """
  pynwb, ndx_pose = nwb.nwb_modules()
  path = pathlib.Path(path)
  if path.suffix.lower() != nwb.SUFFIX:
    raise ValueError(f"{path}: an NWB file must end in {nwb.SUFFIX}")
  if rec.behaviour_format == behaviour_lib.VECTOR_FORMAT:
    raise NotImplementedError(
        f"{rec.name}: writing 'vector' behaviour to NWB is not implemented (it is not a pose); "
        "write it as a per-trial file (data_prep.trial_files.write_trial_file)")
  lost = [field for field, kept in (
      ("behaviour_normalisation", rec.behaviour_normalisation is None
       or set(rec.behaviour_normalisation) == {behaviour_lib.ZSCORE}),
      ("behaviour_swap_weights", rec.behaviour_swap_weights is None)) if not kept]
  if lost:
    raise ValueError(f"{rec.name}: NWB's pose containers do not keep {lost}; write it as a "
                     "per-trial file (data_prep.trial_files.write_trial_file)")
  if path.exists():
    raise FileExistsError(f"{path} exists")
  behaviour_times, neural_times = rec.behaviour_times(), rec.neural_times()
  derived = trial_files.sync_from_timestamps(behaviour_times, neural_times)
  if not np.array_equal(derived, rec.sync):
    frame = int(np.argmax(derived != rec.sync))
    raise ValueError(
        f"{rec.name}: its sync does not follow from its frame times (behaviour frame {frame}: "
        f"sync {rec.sync[frame]}, times give {derived[frame]}); NWB stores no sync array, so "
        "give the recording the neural_timestamps its sync was made from")
  ophys = pynwb.ophys
  nwbfile = pynwb.NWBFile(
      session_description=f"trial {rec.trial_id} of {rec.animal_id}",
      identifier=f"{rec.animal_id}_{rec.trial_id}", session_id=rec.trial_id,
      session_start_time=session_start_time or datetime.datetime.now(datetime.timezone.utc),
      subject=pynwb.file.Subject(subject_id=rec.animal_id))

  names = _node_names(rec)
  num_frames = rec.num_behaviour_frames
  observed = rec.keypoint_mask.reshape(num_frames, len(names), -1)
  values = np.where(observed, rec.behaviour.reshape(num_frames, len(names), -1), np.nan)
  skeleton = ndx_pose.Skeleton(name="skeleton", nodes=names,
                               edges=np.zeros((0, 2), np.uint8))
  series = []
  for index, name in enumerate(names):
    # Series after the first link to its timestamps instead of storing copies.
    timing = ({"timestamps": series[0]} if index and rec.behaviour_timestamps is not None
              else _timing(rec.behaviour_timestamps, rec.fps_behaviour))
    series.append(ndx_pose.PoseEstimationSeries(
        name=name, data=values[:, index].astype(np.float32), reference_frame="as recorded",
        unit="a.u.", **timing))
  behaviour_module = nwbfile.create_processing_module(name="behavior", description="pose")
  behaviour_module.add(ndx_pose.Skeletons(skeletons=[skeleton]))
  behaviour_module.add(ndx_pose.PoseEstimation(
      name="pose", pose_estimation_series=series, skeleton=skeleton,
      description=f"{rec.behaviour_format} behaviour"))

  device = nwbfile.create_device(name="microscope")
  plane = nwbfile.create_imaging_plane(
      name="imaging_plane", description="imaging plane of the recording", device=device,
      optical_channel=ophys.OpticalChannel(name="channel", description="ΔF/F channel",
                                           emission_lambda=np.nan),
      excitation_lambda=np.nan, indicator="unknown", location="unknown",
      imaging_rate=float(rec.fps_neural))
  ophys_module = nwbfile.create_processing_module(name="ophys", description="ΔF/F")
  imaging = None
  if rec.neural_images is not None:
    imaging = ophys.TwoPhotonSeries(
        name="dff", data=np.asarray(rec.neural_images, np.float32), imaging_plane=plane,
        unit="dF/F", description="ΔF/F images", **_timing(rec.neural_timestamps, rec.fps_neural))
    ophys_module.add(imaging)
  if rec.roi_traces is not None:
    segmentation = ophys.ImageSegmentation()
    ophys_module.add(segmentation)
    rois = segmentation.create_plane_segmentation(
        name="rois", description="ROIs of the traces; their masks are not known (empty)",
        imaging_plane=plane)
    mask_shape = rec.neural_images.shape[1:] if rec.neural_images is not None else (1, 1)
    for _ in range(rec.roi_traces.shape[1]):
      rois.add_roi(image_mask=np.zeros(mask_shape, np.float32))
    region = rois.create_roi_table_region(region=list(range(rec.roi_traces.shape[1])),
                                          description="every ROI")
    # The traces' container joins the module before them, so that their ROI table region
    # and the ROI table share an ancestor when the region is linked.
    dff = ophys.DfOverF()
    ophys_module.add(dff)
    dff.create_roi_response_series(
        name="roi_traces", data=np.asarray(rec.roi_traces, np.float32), rois=region,
        unit="dF/F", **(_timing(rec.neural_timestamps, rec.fps_neural)
                        if imaging is None or rec.neural_timestamps is None
                        else {"timestamps": imaging}))

  frame_interval = 1.0 / float(rec.fps_behaviour)
  bouts = _bout_times(rec.labels, behaviour_times, frame_interval)
  if bouts:  # A trial without labels has no table: it reads back unannotated.
    labels = pynwb.epoch.TimeIntervals(name=nwb.LABEL_TABLE_NAMES[0], description="behaviour bouts")
    labels.add_column(name=nwb.LABEL_COLUMN_NAMES[0], description="behaviour class")
    for start, stop, label in bouts:
      labels.add_interval(start_time=start, stop_time=stop, behavior=rec.class_names[label])
    nwbfile.add_time_intervals(labels)
  if rec.rest is not None:
    rest = pynwb.epoch.TimeIntervals(name=nwb.REST_TABLE_NAME, description="rest bouts")
    flags = np.where(rec.rest, 1, recording.UNLABELLED)
    for start, stop, _ in _bout_times(flags, behaviour_times, frame_interval):
      rest.add_interval(start_time=start, stop_time=stop)
    nwbfile.add_time_intervals(rest)

  path.parent.mkdir(parents=True, exist_ok=True)
  with pynwb.NWBHDF5IO(str(path), "w") as io:
    io.write(nwbfile)
  return path


# ----------------------------------------------------------------------------------------
# Embeddings.
# ----------------------------------------------------------------------------------------
EMBEDDING_MODULE = "nar"


def write_embedding_file(embeddings_file: str | os.PathLike, source: Recording,
                         path: str | os.PathLike) -> pathlib.Path:
  """Writes one trial's embeddings (`nar.embed`'s file) as an NWB processing module.

  The new file holds the session of the NWB file the recording was read from (its
  identifier, start time and subject) and a processing module `nar` with a `TimeSeries`
  `embeddings` `[N, D]` at the times of the windows' centre frames (the source's behaviour
  times) and a `TimeSeries` `labels` `[N]` (-1: unlabelled; the classes in its
  description).

  Args:
    embeddings_file: a trial file written by `nar.embed`.
    source: the recording it embeds, as read from its NWB file (`nwb.read_nwb_file`).
    path: the NWB file to write (must not exist).

  Returns:
    The path written.
  """
  pynwb, _ = nwb.nwb_modules()
  path = pathlib.Path(path)
  if path.exists():
    raise FileExistsError(f"{path} exists")
  with np.load(embeddings_file) as arrays:
    embeddings, centres = arrays["embeddings"], arrays["centre_frame"]
    labels, class_names = arrays["label"], [str(c) for c in arrays["class_names"]]
  with pynwb.NWBHDF5IO(str(source.source), "r", load_namespaces=True) as io:
    original = io.read()
    start_time, identifier = original.session_start_time, original.identifier
  times = source.behaviour_times()[centres]
  nwbfile = pynwb.NWBFile(
      session_description=f"NAR embeddings of trial {source.trial_id} of {source.animal_id}",
      identifier=f"{identifier}_nar_embeddings", session_id=source.trial_id,
      session_start_time=start_time, subject=pynwb.file.Subject(subject_id=source.animal_id))
  module = nwbfile.create_processing_module(
      name=EMBEDDING_MODULE, description="NAR embeddings of neural windows (nar.embed)")
  module.add(pynwb.TimeSeries(name="embeddings", data=embeddings, unit="a.u.",
                              timestamps=times, description="one row per window centre"))
  module.add(pynwb.TimeSeries(name="labels", data=labels, unit="class index",
                              timestamps=module["embeddings"],
                              description=f"-1: unlabelled; classes {class_names}"))
  path.parent.mkdir(parents=True, exist_ok=True)
  with pynwb.NWBHDF5IO(str(path), "w") as io:
    io.write(nwbfile)
  return path
