"""The per-trial NPZ/HDF5 layout carries every modality: 3D pose, named feature vectors, 2D
keypoints, images and ROI traces; hand-written files with the documented keys read as meant,
and every inconsistency is one clear error naming the file and the key."""

import h5py
import numpy as np
import pytest

from data_prep import errors
from data_prep import readers
from data_prep import trial_files
from nar.data import recording as recording_lib

NUM_FRAMES = 50
NUM_NEURAL = 9
VELOCITIES = ("forward_velocity", "lateral_velocity", "turning_velocity", "heading")
KEYPOINTS = ("nose_x", "nose_y", "left_paw_x", "left_paw_y", "right_paw_x", "right_paw_y")
CLASSES = ("stand", "forward", "turn_left", "turn_right")


def _behaviour(kind: str, rng) -> dict:
  """Behaviour fields of a recording of each modality type."""
  if kind == "pose":
    pose = rng.normal(size=(NUM_FRAMES, 38, 3)).astype(np.float32)
    pose[3, 5] = np.nan
    return dict(behaviour=pose)
  names = VELOCITIES if kind == "vector" else KEYPOINTS
  values = rng.normal(size=(NUM_FRAMES, len(names))).astype(np.float32)
  values[7, 1] = np.nan
  fields = dict(behaviour=values, behaviour_names=names,
                behaviour_format="vector" if kind == "vector" else "keypoints_2d")
  if kind == "vector":
    fields["behaviour_normalisation"] = ("zscore", "zscore", "none", "angle")
  return fields


def _neural(kind: str, rng, num_rois: int = 4) -> dict:
  images = rng.normal(size=(NUM_NEURAL, 5, 6)).astype(np.float32)
  traces = rng.normal(size=(NUM_NEURAL, num_rois)).astype(np.float32)
  return {"images": dict(neural_images=images), "rois": dict(roi_traces=traces),
          "both": dict(neural_images=images, roi_traces=traces)}[kind]


def _recording(behaviour_kind="vector", neural_kind="rois", *, seed=0, animal_id="mouse_1",
               trial_id="a", num_rois=4, **overrides) -> recording_lib.Recording:
  rng = np.random.default_rng(seed)
  labels = rng.integers(-1, len(CLASSES), NUM_FRAMES).astype(np.int32)
  fields = dict(
      animal_id=animal_id, trial_id=trial_id,
      sync=(np.arange(NUM_FRAMES) * NUM_NEURAL // NUM_FRAMES).astype(np.int64), labels=labels,
      class_names=CLASSES, fps_behaviour=50.0, fps_neural=9.0,
      behaviour_timestamps=np.arange(NUM_FRAMES) / 50.0 + 0.003,
      **_behaviour(behaviour_kind, rng), **_neural(neural_kind, rng, num_rois))
  fields.update(overrides)
  return recording_lib.Recording(**fields)


def _assert_same(actual: recording_lib.Recording, expected: recording_lib.Recording):
  for field in ("animal_id", "trial_id", "class_names", "behaviour_format", "behaviour_names",
                "behaviour_normalisation", "behaviour_swap_weights", "fps_behaviour",
                "fps_neural"):
    assert getattr(actual, field) == getattr(expected, field), field
  for field in ("behaviour", "sync", "labels", "neural_images", "roi_traces", "keypoint_mask",
                "rest", "behaviour_timestamps", "neural_timestamps"):
    a, e = getattr(actual, field), getattr(expected, field)
    assert (a is None) == (e is None), field
    if e is not None:
      assert a.dtype == e.dtype, field
      np.testing.assert_array_equal(a, e, err_msg=field)


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
@pytest.mark.parametrize("behaviour_kind,neural_kind", [
    ("pose", "images"), ("pose", "rois"), ("vector", "rois"), ("vector", "both"),
    ("keypoints", "images"), ("keypoints", "rois")])
def test_round_trip_of_every_modality_type(tmp_path, suffix, behaviour_kind, neural_kind):
  rec = _recording(behaviour_kind, neural_kind)
  path = trial_files.write_trial_file(rec, tmp_path / f"trial{suffix}")
  _assert_same(trial_files.read_trial_file(path), rec)


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
@pytest.mark.parametrize("behaviour_kind", ["vector", "keypoints"])
def test_round_trip_of_swap_weights(tmp_path, suffix, behaviour_kind):
  weights = (1.0, 0.25, 0.0, 2.0) if behaviour_kind == "vector" else (1, 1, 3, 3, 3, 3)
  rec = _recording(behaviour_kind, behaviour_swap_weights=weights)
  path = trial_files.write_trial_file(rec, tmp_path / f"trial{suffix}")
  read = trial_files.read_trial_file(path)
  _assert_same(read, rec)
  assert read.behaviour_swap_weights == tuple(float(w) for w in weights)
  assert read.behaviour_spec.swap_weights == read.behaviour_swap_weights


def _write(path, arrays: dict, attributes: dict | None = None):
  """A hand-written trial file: NPZ keys, or HDF5 datasets plus root attributes."""
  if path.suffix == ".npz":
    np.savez(path, **arrays, **(attributes or {}))
  else:
    with h5py.File(path, "w") as f:
      for key, value in (attributes or {}).items():
        f.attrs[key] = value
      for key, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind == "U":
          value = value.astype(h5py.string_dtype())
        f.create_dataset(key, data=value)
  return path


def _generic_arrays(**overrides) -> dict:
  """The documented generic keys: ball velocities, ROI traces, sync from timestamps."""
  rng = np.random.default_rng(1)
  arrays = dict(
      animal_id="ball_fly_3", trial_id="7",
      behaviour=rng.normal(size=(NUM_FRAMES, 3)),
      behaviour_names=np.array(VELOCITIES[:3]),
      behaviour_fps=50.0, neural_fps=9.0,
      roi_traces=rng.normal(size=(NUM_NEURAL, 12)),
      behaviour_timestamps=np.arange(NUM_FRAMES) / 50.0,
      neural_timestamps=0.05 + np.arange(NUM_NEURAL) / 9.0,
      labels=rng.integers(0, 4, NUM_FRAMES), class_names=np.array(CLASSES))
  arrays.update(overrides)
  return {k: v for k, v in arrays.items() if v is not None}


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_generic_keys_written_by_hand_read_as_documented(tmp_path, suffix):
  arrays = _generic_arrays()
  attributes = {k: arrays.pop(k) for k in ("animal_id", "trial_id", "behaviour_fps",
                                           "neural_fps")} if suffix == ".h5" else None
  rec = trial_files.read_trial_file(_write(tmp_path / f"t{suffix}", arrays, attributes))
  assert rec.behaviour_format == "vector"  # named dimensions mean a feature vector
  assert rec.behaviour_names == VELOCITIES[:3]
  assert rec.behaviour_normalisation == ("zscore",) * 3
  assert (rec.fps_behaviour, rec.fps_neural) == (50.0, 9.0)
  assert rec.roi_traces.shape == (NUM_NEURAL, 12) and rec.class_names == CLASSES
  # Each behaviour frame maps to the neural frame being acquired: the last one started.
  times = np.arange(NUM_FRAMES) / 50.0
  neural_times = 0.05 + np.arange(NUM_NEURAL) / 9.0
  expected = np.clip(np.searchsorted(neural_times, times, side="right") - 1, 0, None)
  np.testing.assert_array_equal(rec.sync, expected)
  assert rec.sync[0] == 0 and rec.sync[2] == 0 and rec.sync[3] == 0  # before frame 0: clipped


def _error(tmp_path, **overrides) -> str:
  path = _write(tmp_path / "bad.npz", _generic_arrays(**overrides))
  with pytest.raises(recording_lib.RecordingError) as error:
    trial_files.read_trial_file(path)
  message = str(error.value)
  assert message.startswith(str(path))
  return message


def test_every_inconsistency_of_the_generic_layout_is_named(tmp_path):
  assert "behaviour_names has 2 name(s) for 3 behaviour dimension(s)" in _error(
      tmp_path, behaviour_names=np.array(VELOCITIES[:2]))
  assert "behaviour_normalisation holds ['degrees']" in _error(
      tmp_path, behaviour_normalisation=np.array(["zscore", "none", "degrees"]))
  neural_times = 0.05 + np.arange(NUM_NEURAL) / 9.0
  neural_times[4] = neural_times[3]
  assert ("key 'neural_timestamps' must be strictly increasing to derive the sync; frame 4"
          in _error(tmp_path, neural_timestamps=neural_times))
  assert "key 'behaviour_timestamps' has 49 times for 50 behaviour frames" in _error(
      tmp_path, behaviour_timestamps=np.arange(NUM_FRAMES - 1) / 50.0)
  assert "key 'neural_timestamps' has 8 times for 9 neural frames" in _error(
      tmp_path, neural_timestamps=np.arange(NUM_NEURAL - 1) / 9.0)
  assert "sync indices must lie in [0, 9)" in _error(
      tmp_path, sync=np.full(NUM_FRAMES, NUM_NEURAL))
  assert "key 'labels' needs key 'class_names'" in _error(tmp_path, class_names=None)
  assert "keys 'fps_behaviour' and 'behaviour_fps' both give the same frame rate" in _error(
      tmp_path, fps_behaviour=50.0)
  assert "behaviour_names is required for behaviour_format 'vector'" in _error(
      tmp_path, behaviour_names=None, behaviour_format="vector")
  assert "behaviour_swap_weights has 2 value(s) for 3 behaviour_names" in _error(
      tmp_path, behaviour_swap_weights=np.array([1.0, 2.0]))
  assert "behaviour_swap_weights must be >= 0; dimension(s) ['lateral_velocity']" in _error(
      tmp_path, behaviour_swap_weights=np.array([1.0, -0.5, 1.0]))
  assert "key 'behaviour_swap_weights' must hold numbers, got dtype <U1" in _error(
      tmp_path, behaviour_swap_weights=np.array(["a", "b", "c"]))


def test_swap_weights_written_by_hand_read_as_documented(tmp_path):
  # Integers are numbers too; the weights are read as floats.
  rec = trial_files.read_trial_file(_write(
      tmp_path / "t.npz", _generic_arrays(behaviour_swap_weights=np.array([2, 0, 1]))))
  assert rec.behaviour_swap_weights == (2.0, 0.0, 1.0)
  np.testing.assert_array_equal(rec.behaviour_spec.swap_feature_weights(), [2.0, 0.0, 1.0])
  assert trial_files.read_trial_file(
      _write(tmp_path / "plain.npz", _generic_arrays())).behaviour_swap_weights is None
  rng = np.random.default_rng(0)
  pose = dict(animal_id="fly", trial_id="1", pose=rng.normal(size=(NUM_FRAMES, 38, 3)),
              sync=np.zeros(NUM_FRAMES, np.int64), roi_traces=np.zeros((2, 3)),
              behaviour_swap_weights=np.ones(90))
  path = _write(tmp_path / "pose.npz", pose)
  with pytest.raises(recording_lib.RecordingError,
                     match="behaviour_swap_weights must not be given for deepfly3d_pose"):
    trial_files.read_trial_file(path)
  assert "needs behaviour_format='vector' and behaviour_names" in _error(
      tmp_path, behaviour_names=None, labels=None)
  assert "must be a 1-D array of strings" in _error(tmp_path, behaviour_names=np.arange(3))
  assert "missing neural data: needs key 'neural_images' and/or 'roi_traces'" in _error(
      tmp_path, roi_traces=None)
  assert "come in '<point>_x', '<point>_y' pairs" in _error(
      tmp_path, behaviour=np.zeros((NUM_FRAMES, 4)), behaviour_format="keypoints_2d",
      behaviour_names=np.array(["nose_x", "nose_y", "tail_y", "tail_x"]))


def test_roi_counts_may_differ_between_animals_but_not_within_one(tmp_path):
  trial_files.write_trial_file(_recording(animal_id="m1", trial_id="1", num_rois=4),
                               tmp_path / "m1_1.npz")
  trial_files.write_trial_file(_recording(animal_id="m2", trial_id="1", num_rois=9),
                               tmp_path / "m2_1.h5")
  read = readers.read_recordings(tmp_path)
  assert [r.roi_traces.shape[1] for r in read] == [4, 9]
  trial_files.write_trial_file(_recording(animal_id="m2", trial_id="2", num_rois=8),
                               tmp_path / "m2_2.npz")
  with pytest.raises(errors.DatasetReadError, match="'m2' has roi_traces with different ROI "
                                                    "counts across its trials"):
    readers.read_recordings(tmp_path)


def test_trials_with_different_behaviour_names_do_not_form_a_dataset(tmp_path):
  trial_files.write_trial_file(_recording(trial_id="1"), tmp_path / "a.npz")
  other = _recording(trial_id="2", behaviour_names=("a", "b", "c", "d"))
  trial_files.write_trial_file(other, tmp_path / "b.npz")
  with pytest.raises(errors.DatasetReadError, match="disagree on behaviour_names"):
    readers.read_recordings(tmp_path)
