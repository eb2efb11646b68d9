"""The recording model rejects every class of inconsistent input with a clear message."""

import numpy as np
import pytest

from nar.data import keypoints
from nar.data import recording as recording_lib
from nar.data import windows


def _fields(num_frames=200, num_neural=40, **overrides):
  rng = np.random.default_rng(0)
  fields = dict(
      animal_id="200901_G23xU1_Fly1",
      trial_id="001",
      behaviour=rng.normal(size=(num_frames, 38, 3)).astype(np.float32),
      sync=(np.arange(num_frames) * num_neural // num_frames).astype(np.int64),
      labels=rng.integers(-1, 7, num_frames).astype(np.int32),
      neural_images=rng.normal(size=(num_neural, 8, 8)).astype(np.float32),
      roi_traces=rng.normal(size=(num_neural, 5)).astype(np.float32),
  )
  fields.update(overrides)
  return fields


def _problems(**overrides):
  with pytest.raises(recording_lib.RecordingError) as error:
    recording_lib.Recording(**_fields(**overrides))
  return str(error.value)


def test_a_valid_recording_derives_its_keypoint_mask_from_missing_values():
  behaviour = _fields()["behaviour"]
  behaviour[3, 7] = np.nan
  rec = recording_lib.Recording(**_fields(behaviour=behaviour))
  assert rec.keypoint_mask.shape == (200, 38)
  assert not rec.keypoint_mask[3, 7] and rec.keypoint_mask.sum() == 200 * 38 - 1
  np.testing.assert_allclose(rec.behaviour_times()[:3], [0, 0.01, 0.02])


def test_lengths_that_do_not_match():
  assert "sync must have shape (200,)" in _problems(sync=np.zeros(150, np.int64))
  assert "labels must have shape (200,)" in _problems(labels=np.zeros(199, np.int32))
  message = _problems(roi_traces=np.zeros((39, 5), np.float32))
  assert "neural lengths do not match" in message


def test_sync_out_of_range_or_decreasing():
  sync = _fields()["sync"].copy()
  sync[-1] = 40
  assert "sync indices must lie in [0, 40)" in _problems(sync=sync)
  sync = _fields()["sync"].copy()
  sync[100] = 0
  assert "sync decreases at behaviour frame 100" in _problems(sync=sync)


def test_unsigned_sync_is_checked_and_stored_as_int64():
  sync = _fields()["sync"].astype(np.uint32)
  sync[100] = 0  # Unsigned differences wrap around: the decrease must still be seen.
  assert "sync decreases at behaviour frame 100" in _problems(sync=sync)
  huge = _fields()["sync"].astype(np.uint64)
  huge[-1] = np.uint64(2**63)
  assert "beyond the int64 range" in _problems(sync=huge)
  rec = recording_lib.Recording(**_fields(sync=_fields()["sync"].astype(np.uint64)))
  assert rec.sync.dtype == np.int64
  spec = windows.WindowSpec(pose_frames=8, pose_stride=3, neural_frames=4)
  centres = windows.valid_centres(rec.sync, rec.num_neural_frames, spec)
  cut = windows.cut_recording_windows(rec, centres[:2], spec)
  neural_start = rec.sync[centres[0]] - 2
  np.testing.assert_array_equal(cut["neural_images"][0],
                                rec.neural_images[neural_start:neural_start + 4])


def test_non_finite_values_where_they_are_not_allowed():
  images = _fields()["neural_images"]
  images[2, 3, 3] = np.inf
  assert "neural_images holds non-finite values" in _problems(neural_images=images)
  behaviour = _fields()["behaviour"]
  behaviour[5, 2, 0] = np.nan
  mask = np.ones((200, 38), bool)
  message = _problems(behaviour=behaviour, keypoint_mask=mask)
  assert "non-finite keypoint(s) marked as observed (first: frame 5, keypoint 2)" in message


def test_wrong_shapes_or_dtypes():
  assert "behaviour must have shape (T_b, 38, 3)" in _problems(
      behaviour=np.zeros((200, 30, 3), np.float32))
  assert "behaviour must be float32, got float64" in _problems(
      behaviour=np.zeros((200, 38, 3)))
  assert "neural_images must have shape (T_n, H, W)" in _problems(
      neural_images=np.zeros((40, 64), np.float32))
  assert "sync must hold integer frame indices" in _problems(sync=np.zeros(200))
  assert "a recording needs neural_images or roi_traces" in _problems(
      neural_images=None, roi_traces=None)


def test_unknown_labels_and_bad_class_names():
  assert "labels must lie in [-1, 7)" in _problems(labels=np.full(200, 7, np.int32))
  assert "class_names has duplicates" in _problems(class_names=("walking", "walking"))


def test_every_problem_is_reported_at_once():
  with pytest.raises(recording_lib.RecordingError) as error:
    recording_lib.Recording(**_fields(trial_id="", labels=np.full(200, 9, np.int32),
                                      fps_neural=-1.0, source="/data/trial_7"))
  assert len(error.value.problems) == 3
  assert str(error.value).startswith("/data/trial_7 (animal '200901_G23xU1_Fly1', trial '')")


def test_duplicate_animal_and_trial_in_one_dataset():
  first = recording_lib.Recording(**_fields(source="a"))
  second = recording_lib.Recording(**_fields(source="b"))
  with pytest.raises(recording_lib.RecordingError, match="duplicate .* a and b"):
    recording_lib.check_recording_set([first, second])
  other = recording_lib.Recording(**_fields(trial_id="002",
                                            neural_images=np.zeros((40, 4, 4), np.float32)))
  with pytest.raises(recording_lib.RecordingError, match="neural image size"):
    recording_lib.check_recording_set([first, other])


def test_leg_relative_pose_puts_every_coxa_at_the_origin():
  pose = np.random.default_rng(1).normal(size=(4, 38, 3)).astype(np.float32)
  features = keypoints.leg_relative_pose(pose).reshape(4, 6, 5, 3)
  np.testing.assert_array_equal(features[:, :, 0], 0)
  legs = keypoints.leg_keypoint_indices()
  np.testing.assert_allclose(features[:, 2, 4], pose[:, legs[2, 4]] - pose[:, legs[2, 0]])
  assert len(set(keypoints.keypoint_names())) == 38


def test_windows_pair_pose_and_neural_frames_of_the_same_instant():
  rec = recording_lib.Recording(**_fields())
  spec = windows.WindowSpec(pose_frames=8, pose_stride=3, neural_frames=4)
  centres = windows.valid_centres(rec.sync, rec.num_neural_frames, spec)
  before, after = spec.pose_span
  assert centres.min() >= before and centres.max() < 200 - after
  cut = windows.cut_recording_windows(rec, centres[:2], spec)
  neural_start = rec.sync[centres[0]] - 2
  np.testing.assert_array_equal(cut["neural_images"][0],
                                rec.neural_images[neural_start:neural_start + 4])
  np.testing.assert_array_equal(
      cut["pose"][0], keypoints.leg_relative_pose(rec.pose[centres[0] + spec.pose_offsets()]))
  assert cut["label"][0] == rec.labels[centres[0]]


def test_label_bouts_are_the_runs_of_labelled_frames():
  labels = np.array([-1, 2, 2, 0, -1, -1, 0, 0], np.int32)
  assert recording_lib.label_bouts(labels) == [(1, 3, 2), (3, 4, 0), (6, 8, 0)]
  assert recording_lib.label_bouts(np.full(4, -1)) == []
  assert recording_lib.label_bouts(np.zeros(0, np.int32)) == []
