"""NWB files: the writer's files read back as the recording written, files written by other
tools (pynwb directly) are read by the conventions `data_prep.nwb` documents, real DeepFly3D
pose and two-photon frames survive the trip, and bad files fail with errors naming the
problem."""

import dataclasses
import datetime
import pathlib
import subprocess
import sys

import ndx_pose
import numpy as np
import pynwb
import pytest
import tifffile

from data_prep import errors
from data_prep import mc2p
from data_prep import mc2p_writer
from data_prep import nwb
from data_prep import nwb_writer
from data_prep import readers
from data_prep import to_nwb
from data_prep import trial_files
from nar.data import keypoints
from nar.data import recording as recording_lib
from test_readers import _assert_same_recording
from test_readers import _read_error
from test_readers import _recording

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
START = datetime.datetime(2020, 9, 1, tzinfo=datetime.timezone.utc)


def _nwb_recording(**overrides):
  """A test recording whose sync follows from its frame times, as NWB needs."""
  rec = _recording(**overrides)
  return dataclasses.replace(rec, sync=trial_files.sync_from_timestamps(rec.behaviour_times(),
                                                                        rec.neural_times()))


def _as_read_back(rec):
  """What an NWB round trip gives: unobserved keypoints become NaN, times become explicit."""
  observed = rec.keypoint_mask.reshape(rec.keypoint_mask.shape[:2] + (-1,))
  behaviour = np.where(observed, rec.behaviour.reshape(observed.shape[:2] + (-1,)), np.nan)
  return dataclasses.replace(
      rec, behaviour=behaviour.reshape(rec.behaviour.shape).astype(np.float32),
      behaviour_timestamps=rec.behaviour_times(), neural_timestamps=rec.neural_times())


def test_written_files_read_back_as_the_recording(tmp_path):
  rec = _nwb_recording()
  path = nwb_writer.write_nwb_file(rec, tmp_path / "a" / "trial.nwb", session_start_time=START)
  read = nwb.read_nwb_file(path)
  _assert_same_recording(read, _as_read_back(rec))
  assert not read.keypoint_mask[9, 2] and np.isnan(read.behaviour[9, 2]).all()
  assert read.source == str(path)


def test_2d_keypoints_and_explicit_frame_times_round_trip(tmp_path):
  rng = np.random.default_rng(3)
  names = ("head_x", "head_y", "left_paw_x", "left_paw_y", "right_paw_x", "right_paw_y")
  behaviour = rng.normal(size=(50, 6)).astype(np.float32)
  behaviour[4, 2:4] = np.nan
  times = np.cumsum(rng.uniform(0.009, 0.011, 50))
  rec = _nwb_recording(behaviour=behaviour, behaviour_format="keypoints_2d",
                       behaviour_names=names, keypoint_mask=None, behaviour_timestamps=times,
                       num_frames=50, labels=np.repeat(np.array([-1, 1, 2, 2, 5], np.int32), 10))
  read = nwb.read_nwb_file(nwb_writer.write_nwb_file(rec, tmp_path / "t.nwb"))
  assert read.behaviour_names == names and read.behaviour_format == "keypoints_2d"
  # The rate of irregular frames is estimated from their times.
  assert read.fps_behaviour == pytest.approx(1 / np.median(np.diff(times)))
  _assert_same_recording(dataclasses.replace(read, fps_behaviour=rec.fps_behaviour),
                         _as_read_back(rec))


def test_writer_refuses_what_nwb_would_lose(tmp_path):
  rec = _nwb_recording()
  shifted = dataclasses.replace(rec, neural_timestamps=rec.neural_timestamps + 0.03)
  with pytest.raises(ValueError, match="sync does not follow from its frame times"):
    nwb_writer.write_nwb_file(shifted, tmp_path / "a.nwb")
  vector = _nwb_recording(behaviour=np.zeros((60, 2), np.float32), behaviour_format="vector",
                          behaviour_names=("speed", "turn"), keypoint_mask=None)
  with pytest.raises(NotImplementedError, match="'vector' behaviour to NWB is not implemented"):
    nwb_writer.write_nwb_file(vector, tmp_path / "b.nwb")
  with pytest.raises(ValueError, match="must end in .nwb"):
    nwb_writer.write_nwb_file(rec, tmp_path / "c.h5")
  nwb_writer.write_nwb_file(rec, tmp_path / "d.nwb")
  with pytest.raises(FileExistsError):
    nwb_writer.write_nwb_file(rec, tmp_path / "d.nwb")
  assert not any((tmp_path / n).exists() for n in ("a.nwb", "b.nwb", "c.h5"))


def test_real_deepfly3d_pose_and_two_photon_frames_survive_nwb(tmp_path, fixtures_dir):
  pose = mc2p.read_pose_result(fixtures_dir / "df3d" / "pose_result_sample.pkl")
  frames = tifffile.imread(fixtures_dir / "twophoton" / "vnc_gcamp6s_10frames.tif")
  frames = np.asarray(frames, np.float32)
  num_neural = len(frames)
  neural_times = np.arange(num_neural) * len(pose) / 100.0 / num_neural
  rec = recording_lib.Recording(
      animal_id="200901_G23xU1_Fly1", trial_id="002", behaviour=pose,
      sync=trial_files.sync_from_timestamps(np.arange(len(pose)) / 100.0, neural_times),
      labels=np.full(len(pose), -1, np.int32), neural_images=frames, rest=np.zeros(len(pose), bool),
      neural_timestamps=neural_times, fps_neural=float(num_neural * 100.0 / len(pose)))
  read = nwb.read_nwb_file(nwb_writer.write_nwb_file(rec, tmp_path / "real.nwb"))
  np.testing.assert_array_equal(read.behaviour, pose)
  np.testing.assert_array_equal(read.neural_images, frames)
  np.testing.assert_array_equal(read.sync, rec.sync)
  assert (read.labels == -1).all() and read.rest is not None and not read.rest.any()


def _third_party_file(path, *, pose_names=("RF_coxa_femur", "LH_tarsus_tip"), num_frames=40,
                      pose_estimations=1, label_rows=(("walking", 0.05, 0.15),),
                      label_table="behavior", label_column="behavior", subject_id="fly7",
                      conversion=1.0, with_imaging=True, roi_containers=()):
  """An NWB file written with pynwb and ndx-pose directly, the way other tools write them."""
  nwbfile = pynwb.NWBFile(session_description="s", identifier=path.stem, session_start_time=START,
                          subject=pynwb.file.Subject(subject_id=subject_id) if subject_id else None)
  behaviour = nwbfile.create_processing_module(name="behavior", description="pose")
  rng = np.random.default_rng(0)
  for index in range(pose_estimations):
    series = [ndx_pose.PoseEstimationSeries(
        name=name, data=rng.normal(size=(num_frames, 3)), reference_frame="fly", unit="mm",
        starting_time=0.0, rate=100.0) for name in pose_names]
    behaviour.add(ndx_pose.PoseEstimation(name=f"pose{index}", pose_estimation_series=series))
  device = nwbfile.create_device(name="scope")
  plane = nwbfile.create_imaging_plane(
      name="plane", description="connective", device=device, excitation_lambda=930.0,
      optical_channel=pynwb.ophys.OpticalChannel(name="green", description="g",
                                                 emission_lambda=510.0),
      indicator="GCaMP6s", location="cervical connective", imaging_rate=16.0)
  if with_imaging:
    nwbfile.add_acquisition(pynwb.ophys.TwoPhotonSeries(
        name="dff", data=np.ones((7, 4, 4), np.int16) * 3, imaging_plane=plane, unit="dF/F",
        conversion=conversion, starting_time=0.0, rate=16.0))
  if roi_containers:
    ophys = nwbfile.create_processing_module(name="ophys", description="o")
    segmentation = pynwb.ophys.ImageSegmentation()
    ophys.add(segmentation)
    rois = segmentation.create_plane_segmentation(name="rois", description="r",
                                                  imaging_plane=plane)
    for _ in range(2):
      rois.add_roi(image_mask=np.ones((4, 4), np.float32))
    region = rois.create_roi_table_region(region=[0, 1], description="all")
    for name in roi_containers:
      container = getattr(pynwb.ophys, name)()
      ophys.add(container)
      container.create_roi_response_series(
          name=f"{type(container).__name__}_traces", data=np.ones((7, 2)), rois=region,
          unit="a.u.", starting_time=0.0, rate=16.0)
  if label_table:
    table = pynwb.epoch.TimeIntervals(name=label_table, description="bouts")
    table.add_column(name=label_column, description="class")
    for name, start, stop in label_rows:
      table.add_interval(start_time=start, stop_time=stop, **{label_column: name})
    nwbfile.add_time_intervals(table)
  with pynwb.NWBHDF5IO(str(path), "w") as io:
    io.write(nwbfile)
  return path


def test_files_of_other_tools_are_read_by_the_documented_conventions(tmp_path):
  path = _third_party_file(tmp_path / "session_a.nwb", conversion=0.5,
                           roi_containers=("DfOverF", "Fluorescence"))
  rec = nwb.read_nwb_file(path)
  assert (rec.animal_id, rec.trial_id) == ("fly7", "session_a")  # No session_id: file name.
  assert rec.behaviour_format == "deepfly3d_pose" and rec.fps_behaviour == 100.0
  names = keypoints.keypoint_names()
  observed = np.flatnonzero(rec.keypoint_mask[0])
  assert sorted(names[i] for i in observed) == ["LH_tarsus_tip", "RF_coxa_femur"]
  np.testing.assert_array_equal(rec.neural_images, np.full((7, 4, 4), 1.5, np.float32))
  # ROI traces come from the DfOverF container, not from raw Fluorescence.
  np.testing.assert_array_equal(rec.roi_traces, np.ones((7, 2), np.float32))
  assert rec.fps_neural == 16.0
  np.testing.assert_array_equal(rec.sync, np.arange(40) * 16 // 100)
  walking = recording_lib.MC2P_CLASS_NAMES.index("walking")
  np.testing.assert_array_equal(np.flatnonzero(rec.labels == walking), np.arange(5, 15))
  assert (rec.labels[:5] == -1).all() and (rec.labels[15:] == -1).all()

  other = _third_party_file(tmp_path / "b.nwb", pose_names=("nose", "tail"), with_imaging=True)
  rec = nwb.read_nwb_file(other)
  assert rec.behaviour_format == "vector"
  assert rec.behaviour_names == ("nose_x", "nose_y", "nose_z", "tail_x", "tail_y", "tail_z")
  custom = _third_party_file(tmp_path / "c.nwb", label_rows=(("run", 0.0, 0.1),),
                             label_column="label")
  rec = nwb.read_nwb_file(custom, class_names=("rest", "run"))
  assert rec.class_names == ("rest", "run") and (rec.labels[:10] == 1).all()


def test_bad_files_fail_with_errors_that_name_the_problem(tmp_path):
  message = _read_error(nwb.read_nwb_file, _third_party_file(tmp_path / "a.nwb", subject_id=None))
  assert "subject.subject_id" in message
  message = _read_error(nwb.read_nwb_file, _third_party_file(
      tmp_path / "a2.nwb", subject_id=None, pose_estimations=0))
  assert "2 problem(s)" in message and "holds no ndx-pose PoseEstimation" in message
  message = _read_error(nwb.read_nwb_file, _third_party_file(tmp_path / "b.nwb",
                                                             pose_estimations=2))
  assert "2 PoseEstimations ['behavior/pose0', 'behavior/pose1']" in message
  rec = nwb.read_nwb_file(tmp_path / "b.nwb", objects=nwb.NwbObjects(pose_estimation="pose1"))
  assert rec.keypoint_mask.sum() == 2 * 40
  message = _read_error(nwb.read_nwb_file, tmp_path / "b.nwb",
                        objects=nwb.NwbObjects(pose_estimation="pose9"))
  assert "no PoseEstimation named 'pose9'" in message
  message = _read_error(nwb.read_nwb_file, _third_party_file(
      tmp_path / "c.nwb", label_rows=(("flying", 0.0, 0.1),)))
  assert "unknown behaviour label(s) ['flying']" in message and "--class_names" in message
  message = _read_error(nwb.read_nwb_file, _third_party_file(
      tmp_path / "d.nwb", label_rows=(("walking", 0.0, 0.1), ("resting", 0.05, 0.2))))
  assert "row 1 ('resting') overlaps an earlier bout" in message
  message = _read_error(nwb.read_nwb_file, _third_party_file(
      tmp_path / "e.nwb", label_column="state"))
  assert "intervals/behavior has no label column" in message
  message = _read_error(nwb.read_nwb_file, _third_party_file(tmp_path / "f.nwb",
                                                             with_imaging=False))
  assert "holds no neural data" in message and "other ROI series" not in message
  raw = _third_party_file(tmp_path / "f2.nwb", with_imaging=False,
                          roi_containers=("Fluorescence",))
  message = _read_error(nwb.read_nwb_file, raw)
  assert "other ROI series ['Fluorescence/Fluorescence_traces'] are read only when named" in message
  rec = nwb.read_nwb_file(raw, objects=nwb.NwbObjects(roi_series="Fluorescence_traces"))
  assert rec.roi_traces.shape == (7, 2) and rec.neural_images is None
  (tmp_path / "g.nwb").write_bytes(b"not hdf5")
  assert "is not a readable NWB file" in _read_error(nwb.read_nwb_file, tmp_path / "g.nwb")


def test_a_folder_of_nwb_files_is_read_whole_or_not_at_all(tmp_path):
  good, bad = _nwb_recording(trial_id="001"), _nwb_recording(trial_id="002")
  nwb_writer.write_nwb_file(good, tmp_path / "x" / "one.nwb")
  _third_party_file(tmp_path / "two.nwb", subject_id=None)
  assert readers.detect_layout(tmp_path) == "nwb"
  with pytest.raises(errors.DatasetReadError) as error:
    readers.read_recordings(tmp_path)
  assert "1 of 2 trial(s) could not be read" in str(error.value)
  assert list(error.value.trial_errors) == [str(tmp_path / "two.nwb")]
  (tmp_path / "two.nwb").unlink()
  nwb_writer.write_nwb_file(bad, tmp_path / "two.nwb")
  read = readers.read_recordings(tmp_path)
  assert [r.trial_id for r in read] == ["002", "001"]  # Sorted by path: two.nwb < x/one.nwb.
  trial_files.write_trial_file(good, tmp_path / "t.npz")
  assert "holds both per-trial files and NWB files" in _read_error(readers.detect_layout, tmp_path)
  assert len(readers.read_recordings(tmp_path, layout="nwb")) == 2


def test_any_layout_converts_to_nwb_and_back(tmp_path):
  source = tmp_path / "mc2p"
  recordings = [_nwb_recording(trial_id=t, seed=i) for i, t in enumerate(("001", "002"))]
  for rec in recordings:
    mc2p_writer.write_trial(rec, source)
  paths = to_nwb.convert(str(source), str(tmp_path / "nwb"))
  assert paths == [tmp_path / "nwb" / rec.animal_id / f"{rec.animal_id}_{rec.trial_id}.nwb"
                   for rec in recordings]
  for read, rec in zip(readers.read_recordings(tmp_path / "nwb"),
                       readers.read_recordings(source)):
    _assert_same_recording(read, _as_read_back(rec))
  with pytest.raises(FileExistsError, match="2 NWB file"):
    to_nwb.convert(str(source), str(tmp_path / "nwb"))


def test_command_line_converts_to_nwb_and_builds_shards_from_it(tmp_path):
  source = tmp_path / "mc2p"
  for index, trial_id in enumerate(("001", "002")):
    mc2p_writer.write_trial(_nwb_recording(trial_id=trial_id, seed=index, num_frames=300,
                                           num_neural=50), source)
  run = lambda *args: subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT,
                                     capture_output=True, text=True, check=False)
  done = run("data_prep.to_nwb", f"--input_dir={source}", f"--out_dir={tmp_path / 'nwb'}")
  assert done.returncode == 0, done.stderr
  assert "wrote 2 NWB file(s)" in done.stdout
  build = ["data_prep.build", f"--input_dir={tmp_path / 'nwb'}",
           f"--data_dir={tmp_path / 'tfds'}", "--segment_seconds=1"]
  vocabulary = ",".join(recording_lib.MC2P_CLASS_NAMES[::-1])
  done = run(*build, "--nwb_pose_estimation=pose", f"--class_names={vocabulary}")
  assert done.returncode == 0, done.stderr
  assert "animals: 1  trials: 2" in done.stdout
  assert "labelled frames per class: hindleg_grooming" in done.stdout  # The vocabulary given.
