"""Generic behaviour (named feature vectors, 2D keypoints) and ROI counts that differ between
animals: validation, normalisation, shards, windows, swap and augmentations."""

import dataclasses
import types

import jax
import ml_collections
import numpy as np
import pytest

from nar import train
from nar.data import behaviour
from nar.data import builder as tfds_builder
from nar.data import normalise
from nar.data import pipeline
from nar.data import recording as recording_lib
from nar.data import shards
from nar.data import windows
from nar.method import augment
from nar.method import pose_bank
from nar.method import swap

NAMES = ("forward_velocity", "lateral_velocity", "heading", "joint_angle", "raw_count")
NORMALISATION = ("zscore", "zscore", "angle", "angle", "none")
SWAP_WEIGHTS = (2.0, 1.0, 0.5, 0.0, 1.0)
# Per feature: an angle's weight goes to its cosine and its sine.
SWAP_FEATURE_WEIGHTS = (2.0, 1.0, 0.5, 0.5, 0.0, 0.0, 1.0)
KEYPOINT_NAMES = ("nose_x", "nose_y", "left_ear_x", "left_ear_y", "right_ear_x", "right_ear_y",
                  "tail_x", "tail_y")
CLASSES = ("stand", "walk", "turn")
SPEC = windows.WindowSpec(pose_frames=8, pose_stride=2, neural_frames=4)


def _vector_recording(animal: int, trial: int, num_frames: int, rng, *, num_rois: int,
                      **overrides) -> recording_lib.Recording:
  """A recording of a 5-dimensional behaviour vector and `num_rois` ROI traces."""
  num_neural = num_frames // 6 + 1
  behaviour_vector = rng.normal(size=(num_frames, len(NAMES))).astype(np.float32)
  behaviour_vector[:, 0] += 3.0 * animal
  behaviour_vector[:, 2] = rng.uniform(-np.pi, np.pi, num_frames)
  behaviour_vector[rng.integers(0, num_frames, 4), 1] = np.nan
  fields = dict(
      animal_id=f"mouse_{animal}", trial_id=f"{trial}", behaviour=behaviour_vector,
      sync=np.minimum(np.arange(num_frames) // 6, num_neural - 1).astype(np.int64),
      labels=rng.integers(-1, len(CLASSES), num_frames).astype(np.int32), class_names=CLASSES,
      roi_traces=rng.normal(size=(num_neural, num_rois)).astype(np.float32),
      behaviour_format="vector", behaviour_names=NAMES, behaviour_normalisation=NORMALISATION)
  fields.update(overrides)
  return recording_lib.Recording(**fields)


def _problems(**overrides) -> str:
  with pytest.raises(recording_lib.RecordingError) as error:
    _vector_recording(0, 0, 60, np.random.default_rng(0), num_rois=3, **overrides)
  return str(error.value)


# ----------------------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------------------


def test_a_vector_recording_keeps_names_and_derives_a_per_dimension_mask():
  rec = _vector_recording(0, 0, 60, np.random.default_rng(0), num_rois=3)
  assert rec.behaviour_names == NAMES and rec.behaviour_normalisation == NORMALISATION
  assert rec.keypoint_mask.shape == (60, len(NAMES))
  np.testing.assert_array_equal(rec.keypoint_mask, np.isfinite(rec.behaviour))
  assert rec.behaviour_spec.feature_dim == len(NAMES) + 2
  default = _vector_recording(0, 0, 60, np.random.default_rng(0), num_rois=3,
                              behaviour_normalisation=None)
  assert default.behaviour_normalisation == ("zscore",) * len(NAMES)
  with pytest.raises(AttributeError, match="holds vector, not pose"):
    _ = rec.pose


def test_vector_behaviour_problems_are_reported_clearly():
  assert "behaviour_names is required for behaviour_format 'vector'" in _problems(
      behaviour_names=None)
  assert "behaviour_names has 4 name(s) for 5 behaviour dimension(s)" in _problems(
      behaviour_names=NAMES[:4], behaviour_normalisation=None)
  assert "behaviour_names has duplicates: ['a']" in _problems(
      behaviour_names=("a", "a", "b", "c", "d"))
  assert "behaviour_normalisation holds ['circular']" in _problems(
      behaviour_normalisation=("zscore",) * 4 + ("circular",))
  assert "behaviour_normalisation has 2 value(s) for 5 behaviour_names" in _problems(
      behaviour_normalisation=("zscore", "none"))
  assert "must be a sequence of strings, one per dimension, got the string 'zscore'" in (
      _problems(behaviour_normalisation="zscore"))
  assert "vector behaviour must have shape (T_b, D) with D >= 1, got (60, 5, 1)" in _problems(
      behaviour=np.zeros((60, 5, 1), np.float32))
  mask = np.ones((60, len(NAMES)), bool)
  behaviour_vector = np.zeros((60, len(NAMES)), np.float32)
  behaviour_vector[7, 1] = np.nan
  assert ("non-finite value(s) marked as observed in keypoint_mask (first: frame 7, dimension "
          "1 'lateral_velocity')") in _problems(behaviour=behaviour_vector, keypoint_mask=mask)


def test_pose_keeps_its_format_and_says_how_to_declare_a_vector():
  rng = np.random.default_rng(0)
  fields = dict(animal_id="fly", trial_id="1", sync=np.zeros(10, np.int64),
                labels=np.zeros(10, np.int32), roi_traces=np.zeros((2, 3), np.float32))
  with pytest.raises(recording_lib.RecordingError, match="needs behaviour_format='vector'"):
    recording_lib.Recording(behaviour=rng.normal(size=(10, 4)).astype(np.float32), **fields)
  pose = rng.normal(size=(10, 38, 3)).astype(np.float32)
  with pytest.raises(recording_lib.RecordingError, match="must not be given for deepfly3d"):
    recording_lib.Recording(behaviour=pose, behaviour_names=("a",), **fields)
  rec = recording_lib.Recording(behaviour=pose, **fields)
  assert rec.behaviour_spec == behaviour.POSE_SPEC and rec.behaviour_names is None


def test_keypoints_2d_need_x_y_name_pairs_and_coordinate_normalisations():
  rng = np.random.default_rng(0)
  fields = dict(animal_id="mouse", trial_id="1", sync=np.zeros(10, np.int64),
                labels=np.zeros(10, np.int32), roi_traces=np.zeros((2, 3), np.float32),
                behaviour=rng.normal(size=(10, 8)).astype(np.float32),
                behaviour_format="keypoints_2d")
  rec = recording_lib.Recording(behaviour_names=KEYPOINT_NAMES, **fields)
  assert rec.behaviour_spec.point_dims == 2
  with pytest.raises(recording_lib.RecordingError, match="come in '<point>_x', '<point>_y'"):
    recording_lib.Recording(behaviour_names=KEYPOINT_NAMES[1:] + ("nose_x",), **fields)
  with pytest.raises(recording_lib.RecordingError, match=r"holds \['angle'\]; allowed"):
    recording_lib.Recording(behaviour_names=KEYPOINT_NAMES,
                            behaviour_normalisation=("angle",) * 8, **fields)


def test_recordings_of_one_dataset_must_agree_on_the_behaviour_and_an_animals_rois():
  rng = np.random.default_rng(0)
  first = _vector_recording(0, 0, 60, rng, num_rois=3)
  renamed = _vector_recording(0, 1, 60, rng, num_rois=3,
                              behaviour_names=("a", "b", "c", "d", "e"))
  with pytest.raises(recording_lib.RecordingError, match="disagree on behaviour_names"):
    recording_lib.check_recording_set([first, renamed])
  other_rois = _vector_recording(0, 1, 60, rng, num_rois=4)
  with pytest.raises(recording_lib.RecordingError,
                     match=r"'mouse_0' has roi_traces with different ROI counts across its "
                           r"trials \(3 ROIs in trial\(s\) \['0'\], "
                           r"4 ROIs in trial\(s\) \['1'\]\)"):
    recording_lib.check_recording_set([first, other_rois])
  recording_lib.check_recording_set([first, _vector_recording(1, 0, 60, rng, num_rois=4)])


def test_swap_weights_are_declared_one_per_dimension_finite_non_negative_not_all_zero():
  rec = _vector_recording(0, 0, 60, np.random.default_rng(0), num_rois=3,
                          behaviour_swap_weights=np.array([2, 1, 0.5, 0, 1]))
  assert rec.behaviour_swap_weights == SWAP_WEIGHTS
  assert rec.behaviour_spec.swap_weights == SWAP_WEIGHTS
  assert "behaviour_swap_weights has 2 value(s) for 5 behaviour_names" in _problems(
      behaviour_swap_weights=(1.0, 1.0))
  assert ("behaviour_swap_weights must be finite; dimension(s) ['heading'] have weight(s) "
          "[nan]") in _problems(behaviour_swap_weights=(1, 1, np.nan, 1, 1))
  assert ("behaviour_swap_weights must be >= 0; dimension(s) ['forward_velocity', "
          "'raw_count'] have weight(s) [-1.0, -2.0]") in _problems(
              behaviour_swap_weights=(-1, 1, 1, 1, -2))
  assert "behaviour_swap_weights are all 0" in _problems(behaviour_swap_weights=(0,) * 5)
  assert "behaviour_swap_weights must be a sequence of numbers" in _problems(
      behaviour_swap_weights=("a",) * 5)
  with pytest.raises(ValueError, match="behaviour_swap_weights must not be given for "
                                       "deepfly3d_pose"):
    behaviour.BehaviourSpec(swap_weights=(1.0,) * 90)
  with pytest.raises(ValueError, match="behaviour_swap_weights are all 0"):
    behaviour.BehaviourSpec("vector", NAMES, swap_weights=(0,) * 5)
  rng = np.random.default_rng(0)
  weighted = _vector_recording(0, 1, 60, rng, num_rois=3, behaviour_swap_weights=SWAP_WEIGHTS)
  with pytest.raises(recording_lib.RecordingError,
                     match="disagree on behaviour_swap_weights"):
    recording_lib.check_recording_set([_vector_recording(0, 0, 60, rng, num_rois=3), weighted])


def test_swap_weights_expand_to_features_and_round_trip_through_metadata():
  spec = behaviour.BehaviourSpec("vector", NAMES, NORMALISATION, SWAP_WEIGHTS)
  np.testing.assert_array_equal(spec.swap_feature_weights(), SWAP_FEATURE_WEIGHTS)
  assert spec.swap_feature_weights().shape == (spec.feature_dim,)
  metadata = spec.to_metadata()
  assert metadata["behaviour_swap_weights"] == list(SWAP_WEIGHTS)
  assert behaviour.BehaviourSpec.from_metadata(metadata) == spec
  # Undeclared weights, and metadata written before weights existed, weigh every feature 1.
  plain = behaviour.BehaviourSpec("vector", NAMES, NORMALISATION)
  assert plain.to_metadata()["behaviour_swap_weights"] is None
  old_metadata = {k: v for k, v in plain.to_metadata().items()
                  if k != "behaviour_swap_weights"}
  assert behaviour.BehaviourSpec.from_metadata(old_metadata) == plain
  np.testing.assert_array_equal(plain.swap_feature_weights(), np.ones(7))
  np.testing.assert_array_equal(behaviour.POSE_SPEC.swap_feature_weights(), np.ones(90))


# ----------------------------------------------------------------------------------------
# Features and normalisation.
# ----------------------------------------------------------------------------------------


def test_angles_become_cosine_and_sine_and_only_zscore_dimensions_are_fitted():
  spec = behaviour.BehaviourSpec("vector", NAMES, NORMALISATION)
  assert spec.feature_names == ("forward_velocity", "lateral_velocity", "heading_cos",
                                "heading_sin", "joint_angle_cos", "joint_angle_sin",
                                "raw_count")
  raw = np.array([[1.0, 2.0, np.pi, -np.pi / 2, 5.0], [3.0, np.nan, 0.0, 2 * np.pi, 7.0]],
                 np.float32)
  features = spec.features(raw)
  np.testing.assert_allclose(features[0], [1, 2, -1, 0, 0, -1, 5], atol=1e-6)
  np.testing.assert_allclose(features[1, 2:], [1, 0, 1, 0, 7], atol=1e-6)
  assert np.isnan(features[1, 1])
  # An angle and the same angle one turn later are the same feature: no wrap-around jump.
  np.testing.assert_allclose(spec.features(raw[:, [0, 1, 2, 2, 4]] + [0, 0, 0, 2 * np.pi, 0]),
                             spec.features(raw[:, [0, 1, 2, 2, 4]]), atol=1e-5)
  fitted = spec.fitted_features()
  np.testing.assert_array_equal(fitted, [True, True, False, False, False, False, False])
  normalizer = windows.PoseNormalizer.fit(features, fitted=fitted)
  normalised = normalizer(features)
  np.testing.assert_allclose(normalised[:, 2:], np.nan_to_num(features[:, 2:]), atol=1e-6)
  np.testing.assert_allclose(normalised[:, 0], [-1, 1], atol=1e-6)
  assert normalised[1, 1] == 0.0  # missing -> the training mean
  with pytest.raises(ValueError, match=r"feature dimension\(s\) \[1\] have no finite value"):
    windows.PoseNormalizer.fit(np.array([[1.0, np.nan]] * 3), fitted=np.array([True, True]))


def test_behaviour_spec_rejects_bad_declarations():
  with pytest.raises(ValueError, match="unknown behaviour_format 'imu'"):
    behaviour.BehaviourSpec("imu", ("a",))
  with pytest.raises(ValueError, match="behaviour_names is required"):
    behaviour.BehaviourSpec("vector")
  with pytest.raises(ValueError, match="must end in 5 dimensions"):
    behaviour.BehaviourSpec("vector", NAMES).features(np.zeros((4, 3)))


# ----------------------------------------------------------------------------------------
# Shards: metadata, windows, ROI counts.
# ----------------------------------------------------------------------------------------

ROI_COUNTS = (3, 5, 4, 6)


@pytest.fixture(scope="module")
def recordings():
  rng = np.random.default_rng(0)
  return [_vector_recording(a, t, int(rng.integers(300, 400)), rng, num_rois=ROI_COUNTS[a],
                            behaviour_swap_weights=SWAP_WEIGHTS)
          for a in range(len(ROI_COUNTS)) for t in range(2)]


@pytest.fixture(scope="module")
def dataset(recordings, tmp_path_factory):
  path = tfds_builder.build_dataset(recordings, str(tmp_path_factory.mktemp("vector_tfds")),
                                    config_name="vector", segment_seconds=0.7)
  return shards.open_dataset(path)


def test_a_vector_dataset_reads_back_exactly(recordings, dataset):
  assert dataset.behaviour_spec == recordings[0].behaviour_spec
  assert dataset.metadata["behaviour_names"] == list(NAMES)
  assert dataset.metadata["behaviour_swap_weights"] == list(SWAP_WEIGHTS)
  assert dataset.behaviour_spec.swap_weights == SWAP_WEIGHTS
  assert "heading (angle, swap weight 0.5)" in tfds_builder.describe(str(dataset.path))
  assert dataset.class_names == CLASSES
  by_name = {(r.animal_id, r.trial_id): r for r in recordings}
  for trial, info in enumerate(dataset.trials):
    rec = by_name[(info["animal_id"], info["trial_id"])]
    stored = dataset.read_trial(trial)
    np.testing.assert_array_equal(stored["behaviour"], rec.behaviour)
    np.testing.assert_array_equal(stored["keypoint_mask"], rec.keypoint_mask)
    np.testing.assert_array_equal(stored["roi_traces"], rec.roi_traces)
    np.testing.assert_array_equal(stored["labels"], rec.labels)
    assert info["num_rois"] == rec.roi_traces.shape[1]


def test_roi_counts_of_every_animal_are_exposed(dataset):
  animals = dataset.animals
  assert dataset.roi_counts == dict(zip(animals, ROI_COUNTS))
  assert dataset.metadata["roi_counts"] == dict(zip(animals, ROI_COUNTS))
  assert dataset.num_rois(animals[2]) == 4 and dataset.max_rois == 6
  with pytest.raises(ValueError, match="unknown animal 'rat'"):
    dataset.num_rois("rat")


def test_vector_windows_from_shards_equal_windows_cut_in_memory(recordings, dataset):
  training = dataset.animals[:3]
  normalizer = pipeline.fit_pose_normalizer(dataset, training)
  index = dataset.behaviour_index
  rows = np.isin(np.repeat(index.animal_ids, np.diff(index.offsets)), training)
  expected_mean = np.nanmean(index.behaviour[rows][:, :2], axis=0)
  np.testing.assert_allclose(normalizer.mean[:2], expected_mean, rtol=1e-5)
  np.testing.assert_array_equal(normalizer.mean[2:], 0)
  np.testing.assert_array_equal(normalizer.std[2:], 1)

  selection = pipeline.select_windows(dataset, SPEC, animals=dataset.animals[:1], hop=5)
  source = pipeline.WindowSource(dataset, selection, SPEC, normalizer)
  by_name = {(r.animal_id, r.trial_id): r for r in recordings}
  for item in range(0, len(source), 4):
    window = source[item]
    info = dataset.trials[int(selection.trial[item])]
    rec = by_name[(info["animal_id"], info["trial_id"])]
    expected = windows.cut_recording_windows(rec, np.array([selection.centre[item]]), SPEC)
    assert window["pose"].shape == (SPEC.pose_frames, len(NAMES) + 2)
    np.testing.assert_allclose(window["pose"], normalizer(expected["pose"][0]), atol=1e-6)
    np.testing.assert_array_equal(window["roi_traces"], expected["roi_traces"][0])


def test_different_roi_counts_are_padded_with_a_mask_or_refused(dataset):
  normalizer = pipeline.fit_pose_normalizer(dataset, dataset.animals)
  selection = pipeline.select_windows(dataset, SPEC, hop=9)
  unpadded = pipeline.WindowSource(dataset, selection, SPEC, normalizer)
  assert "roi_traces" not in unpadded[0] and unpadded.roi_width is None
  with pytest.raises(ValueError, match="pass pad_rois=True"):
    pipeline.WindowSource(dataset, selection, SPEC, normalizer, neural_keys=("roi_traces",))
  with pytest.raises(ValueError, match="a width >= the largest ROI count of the selected"):
    pipeline.WindowSource(dataset, selection, SPEC, normalizer, pad_rois=5)

  padded = pipeline.WindowSource(dataset, selection, SPEC, normalizer, pad_rois=True)
  assert padded.roi_width == dataset.max_rois
  batch = next(iter(pipeline.make_loader(padded, batch_size=len(padded), train=False,
                                               shard=(0, 1))))
  assert batch["roi_traces"].shape == (len(padded), SPEC.neural_frames, dataset.max_rois)
  counts = np.array(list(dataset.roi_counts.values()))[batch["animal"]]
  np.testing.assert_array_equal(batch["num_rois"], counts)
  np.testing.assert_array_equal(batch["roi_mask"].sum(axis=1), counts)
  outside = ~batch["roi_mask"][:, None, :].repeat(SPEC.neural_frames, axis=1)
  assert np.all(batch["roi_traces"][outside] == 0)
  one = padded[0]
  trial, centre = int(selection.trial[0]), int(selection.centre[0])
  start = int(dataset.behaviour_index.trial_array("sync", trial)[centre] +
              SPEC.neural_offsets()[0])
  stored = dataset.read_neural(trial, start, start + SPEC.neural_frames)["roi_traces"]
  np.testing.assert_array_equal(one["roi_traces"][:, :one["num_rois"]], stored)

  wide = pipeline.WindowSource(dataset, selection, SPEC, normalizer, pad_rois=8)
  assert wide[0]["roi_traces"].shape == (SPEC.neural_frames, 8)

  # Read a batch at a time, standardised per animal, the windows are those read one by one.
  standardised = pipeline.WindowSource(
      dataset, selection, SPEC, normalizer, pad_rois=True,
      neural_normalizer=normalise.NeuralNormalizer.fit(
          dataset, "roi_traces", calibration_fraction=0.5, progress=False))
  items = np.random.default_rng(0).permutation(len(selection))[:40]
  together = standardised.read_batch(items)
  assert len(set(together["num_rois"])) > 1
  for row, item in enumerate(items):
    alone = standardised[int(item)]
    assert sorted(alone) == sorted(together)
    for key, value in alone.items():
      np.testing.assert_array_equal(together[key][row], value, err_msg=key)


def test_a_pose_augmentation_or_normaliser_of_another_dimension_is_refused(dataset):
  selection = pipeline.select_windows(dataset, SPEC, hop=9)
  pose_normalizer = windows.PoseNormalizer(np.zeros(90, np.float32), np.ones(90, np.float32))
  with pytest.raises(ValueError, match="normaliser is for 90 behaviour features"):
    pipeline.WindowSource(dataset, selection, SPEC, pose_normalizer)
  windows_of_vectors = np.zeros((2, 8, dataset.behaviour_spec.feature_dim), np.float32)
  with pytest.raises(ValueError, match="laid out for 90 deepfly3d_pose features, got windows "
                                       "of 7"):
    augment.augment_pose(jax.random.key(0), windows_of_vectors, augment.PoseAugmentation())


def test_swap_on_a_generic_behaviour_vector_draws_frames_of_other_training_animals(dataset):
  training = dataset.animals[:3]
  normalizer = pipeline.fit_pose_normalizer(dataset, training)
  bank_frames = pipeline.collect_pose_frames(dataset, normalizer, training)
  index = dataset.behaviour_index
  for animal, valid in zip(bank_frames.animals, bank_frames.valid):
    rows = np.repeat(index.animal_ids, np.diff(index.offsets)) == animal
    np.testing.assert_array_equal(valid, np.isfinite(index.behaviour[rows]).all(axis=-1))
  bank = pose_bank.make_pose_bank(dict(zip(bank_frames.animals, bank_frames.frames)),
                             dict(zip(bank_frames.animals, bank_frames.valid)), training)
  assert bank.pose_dim == dataset.behaviour_spec.feature_dim

  selection = pipeline.select_windows(dataset, SPEC, animals=training, hop=13)
  source = pipeline.WindowSource(dataset, selection, SPEC, normalizer)
  batch = next(iter(pipeline.make_loader(source, batch_size=16, train=True, seed=0,
                                               shard=(0, 1))))
  source_rows = pose_bank.bank_rows(bank, dataset.animals)[batch["animal"]]
  swapped, info = swap.swap_pose_windows(jax.random.key(3), batch["pose"], source_rows, bank,
                                         swap_probability=1.0)
  swapped, target = np.asarray(swapped), np.asarray(info["target_animal"])
  frame_index = np.asarray(info["frame_index"])
  assert np.all(target != source_rows) and np.all(target >= 0)
  for window in range(len(swapped)):
    pool = bank_frames.frames[target[window]]
    np.testing.assert_array_equal(swapped[window], pool[frame_index[window]])
    assert bank_frames.valid[target[window]][frame_index[window]].all()


def test_the_trainers_swap_bank_weighs_the_dimensions_declared_in_the_dataset(dataset):
  training = dataset.animals[:3]
  inputs = types.SimpleNamespace(
      dataset=dataset, training_animals=training,
      normalizer=pipeline.fit_pose_normalizer(dataset, training))
  config = ml_collections.ConfigDict({"method": "ours",
                                      "swap": {"enabled": True, "mode": "exact",
                                               "pool_stride": 1}})
  constants, _ = train.create_step_constants(config, inputs)
  np.testing.assert_allclose(constants["frames"].distance_scale,
                             np.sqrt(SWAP_FEATURE_WEIGHTS), rtol=1e-6)


# ----------------------------------------------------------------------------------------
# Augmentations per behaviour format.
# ----------------------------------------------------------------------------------------

VECTOR_SPEC = behaviour.BehaviourSpec("vector", NAMES, NORMALISATION)
KEYPOINT_SPEC = behaviour.BehaviourSpec("keypoints_2d", KEYPOINT_NAMES)
OFF = augment.PoseAugmentation(**{f.name: 0 for f in dataclasses.fields(
    augment.PoseAugmentation)})


def test_a_plain_vector_gets_no_geometric_augmentation():
  config = augment.behaviour_augmentation_for(VECTOR_SPEC, augment.PoseAugmentation())
  assert (config.shear, config.rotation_deg, config.mirror_probability) == (0, 0, 0)
  assert config.scale == augment.PoseAugmentation().scale and config.jitter_std > 0
  assert config.layout.feature_dim == 7 and not config.layout.geometric
  pose_config = augment.behaviour_augmentation_for(behaviour.POSE_SPEC,
                                                   augment.PoseAugmentation())
  assert pose_config.layout == augment.DEEPFLY3D_POSE_LAYOUT and pose_config.rotation_deg == 10
  with pytest.raises(ValueError, match="are geometric augmentations and vector behaviour"):
    augment.augment_pose(jax.random.key(0), np.zeros((2, 8, 7), np.float32),
                         dataclasses.replace(config, rotation_deg=5.0))
  with pytest.raises(TypeError, match="must be a nar.data.behaviour.BehaviourSpec"):
    augment.behaviour_augmentation_for("vector", augment.PoseAugmentation())


@pytest.mark.parametrize("name,value", [
    ("smoothing_sigma", 2.0), ("jitter_std", 0.1), ("scale", 0.3), ("time_mask_frames", 4),
    ("channel_mask_probability", 0.5)])
def test_each_vector_augmentation_changes_the_windows(name, value):
  config = augment.behaviour_augmentation_for(
      VECTOR_SPEC, dataclasses.replace(OFF, **{name: value}))
  windows_in = jax.random.normal(jax.random.key(1), (6, 12, VECTOR_SPEC.feature_dim))
  out = jax.jit(lambda k, p: augment.augment_pose(k, p, config))(jax.random.key(0), windows_in)
  assert out.shape == windows_in.shape and not np.allclose(out, windows_in)
  if name == "scale":  # one gain per window, the same for every frame and dimension
    ratio = np.asarray(out / windows_in).reshape(6, -1)
    np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones_like(ratio), rtol=1e-4)


def test_2d_keypoints_rotate_in_the_plane_and_mirror_left_and_right():
  assert KEYPOINT_SPEC.mirror_permutation() == (0, 2, 1, 3)
  points = jax.random.normal(jax.random.key(2), (4, 6, 8))
  mirror = augment.behaviour_augmentation_for(
      KEYPOINT_SPEC, dataclasses.replace(OFF, mirror_probability=1.0))
  once = np.asarray(augment.augment_pose(jax.random.key(0), points, mirror)).reshape(4, 6, 4, 2)
  original = np.asarray(points).reshape(4, 6, 4, 2)
  np.testing.assert_allclose(once[:, :, 1], original[:, :, 2] * [-1, 1], atol=1e-6)
  np.testing.assert_allclose(once[:, :, 0], original[:, :, 0] * [-1, 1], atol=1e-6)
  rotate = augment.behaviour_augmentation_for(
      KEYPOINT_SPEC, dataclasses.replace(OFF, rotation_deg=30.0))
  rotated = np.asarray(augment.augment_pose(jax.random.key(0), points, rotate)).reshape(4, 6, 4, 2)
  np.testing.assert_allclose(np.linalg.norm(rotated, axis=-1), np.linalg.norm(original, axis=-1),
                             rtol=1e-5)
  assert not np.allclose(rotated, original)
