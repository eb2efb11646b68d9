"""The probe suite: synthetic feature tables with known answers, aggregation and tables."""

import dataclasses
import json

import jax
import numpy as np
import pytest
import synthetic_data

from nar.data import builder as tfds_builder
from nar.data import pipeline
from nar.data import shards
from nar.data import windows
from nar.eval import features as features_lib
from nar.eval import probes
from nar.eval import protocol as protocol_lib
from nar.eval import raw_features

ANIMALS = ("fly0", "fly1", "fly2", "fly3")
TRAINING, HELD_OUT = ANIMALS[:3], ANIMALS[3:]
PROTOCOL = protocol_lib.ProbeProtocol(min_train_windows=8, min_test_windows=4)


def synthetic_table(encoding: str, *, num_classes: int = 4, windows_per_trial: int = 48,
                    trials_per_animal: int = 2, num_time_blocks: int = 2, seed: int = 0,
                    labels=None) -> features_lib.FeatureTable:
  """A feature table whose features encode the `label`, the `animal`, or nothing (`noise`)."""
  rng = np.random.default_rng(seed)
  animal = np.repeat(np.arange(len(ANIMALS)), trials_per_animal * windows_per_trial)
  trial = np.repeat(np.arange(len(ANIMALS) * trials_per_animal), windows_per_trial)
  centre = np.tile(np.arange(windows_per_trial), len(ANIMALS) * trials_per_animal)
  time_block = centre * num_time_blocks // windows_per_trial
  if labels is None:
    labels = rng.integers(0, num_classes, len(animal))
  one_hot = lambda values, n: np.eye(n)[values]
  encoded = {"label": one_hot(labels, num_classes), "animal": one_hot(animal, len(ANIMALS)),
             "noise": np.zeros((len(animal), 4))}[encoding]
  features = 3.0 * encoded + 0.3 * rng.standard_normal(encoded.shape)
  return features_lib.FeatureTable(
      features=features.astype(np.float32), label=labels, animal=animal, trial=trial,
      centre_frame=centre, time_block=time_block, num_time_blocks=num_time_blocks,
      animals=ANIMALS, class_names=tuple(f"class{c}" for c in range(num_classes)))


def run(table, protocol=PROTOCOL):
  return protocol_lib.run_probe_suite(table, training_animals=TRAINING,
                                    held_out_animals=HELD_OUT, protocol=protocol)


@pytest.fixture(scope="module")
def label_results():
  return run(synthetic_table("label"))


def test_features_that_encode_the_action_are_recognised_in_every_setting(label_results):
  for probe in (protocol_lib.ACTION_SINGLE_ANIMAL, protocol_lib.ACTION_MULTI_ANIMAL):
    for fraction in ("0.5", "1.0"):
      for metric in protocol_lib.METRICS:
        assert label_results[probe][fraction][metric]["mean"] > 95, (probe, fraction, metric)
  single = label_results[protocol_lib.ACTION_SINGLE_ANIMAL]["1.0"]["accuracy"]
  assert sorted(single["per_animal"]) == list(ANIMALS) and single["count"] == len(ANIMALS)
  multi = label_results[protocol_lib.ACTION_MULTI_ANIMAL]["1.0"]["accuracy"]
  assert list(multi["per_animal"]) == list(HELD_OUT)  # tested on held-out animals only
  assert label_results["chance"] == {"action": 25.0, "identity": 25.0}
  # Only the behaviour decoder, which this table gives no behaviour column to.
  assert [s["probe"] for s in label_results["skipped"]] == [protocol_lib.BEHAVIOUR_DECODING]


def test_features_that_encode_only_the_animal_give_identity_but_chance_action():
  results = run(synthetic_table("animal", windows_per_trial=96))
  for fraction in ("0.5", "1.0"):
    assert results[protocol_lib.IDENTITY][fraction]["accuracy"]["mean"] > 95
    multi = results[protocol_lib.ACTION_MULTI_ANIMAL][fraction]["balanced_accuracy"]["mean"]
    assert abs(multi - 25) < 10, multi
    single = results[protocol_lib.ACTION_SINGLE_ANIMAL][fraction]["balanced_accuracy"]["mean"]
    assert abs(single - 25) < 15, single


def test_half_label_fraction_trains_on_a_stratified_half(label_results):
  multi = label_results[protocol_lib.ACTION_MULTI_ANIMAL]
  assert multi["0.5"]["num_train"] == multi["1.0"]["num_train"] // 2
  assert multi["0.5"]["num_test"] == multi["1.0"]["num_test"]
  targets = np.repeat(np.arange(3), [40, 20, 10])
  chosen = protocol_lib.label_subset(targets, 0.5, seed=0)
  np.testing.assert_array_equal(np.bincount(targets[chosen]), [20, 10, 5])
  np.testing.assert_array_equal(chosen, protocol_lib.label_subset(targets, 0.5, seed=0))
  assert not np.array_equal(chosen, protocol_lib.label_subset(targets, 0.5, seed=1))
  np.testing.assert_array_equal(protocol_lib.label_subset(targets, 1.0, seed=0), np.arange(70))


def test_a_class_too_rare_to_stratify_keeps_one_window():
  targets = np.array([0] * 10 + [1] * 10 + [2])
  chosen = protocol_lib.label_subset(targets, 0.5, seed=0)
  np.testing.assert_array_equal(np.bincount(targets[chosen]), [5, 5, 1])


def test_an_empty_training_set_is_subsampled_to_nothing():
  assert protocol_lib.label_subset(np.zeros(0, np.int64), 0.5, seed=0).shape == (0,)


def test_an_animal_without_training_windows_is_skipped_at_every_label_fraction():
  table = synthetic_table("label")
  # fly1 keeps its last time block only: nothing to train its single-animal probe on.
  keep = (table.animal != 1) | (table.time_block == table.num_time_blocks - 1)
  sparse = features_lib.FeatureTable(
      **{name: getattr(table, name)[keep] for name in
         ("features", "label", "animal", "trial", "centre_frame", "time_block")},
      num_time_blocks=table.num_time_blocks, animals=table.animals,
      class_names=table.class_names)
  results = run(sparse)
  for fraction in ("0.5", "1.0"):
    per_animal = results[protocol_lib.ACTION_SINGLE_ANIMAL][fraction]["accuracy"]["per_animal"]
    assert "fly1" not in per_animal and len(per_animal) == 3


def test_a_probe_validates_its_regularisation_on_stretches_it_did_not_train_on():
  # Each stretch of recording is one class and has features of its own: a probe that
  # memorises the stretches looks perfect on folds that split them, and fails on new ones.
  rng = np.random.default_rng(0)
  stretches = np.repeat(np.arange(12), 20)
  targets = stretches % 2
  features = 3 * rng.standard_normal((12, 30))[stretches] + 0.1 * rng.standard_normal((240, 30))
  grid = (1e-4, 1.0, 100.0)
  memorising = probes.fit_linear_probe(features, targets, regularisation_grid=grid)
  grouped = probes.fit_linear_probe(features, targets, groups=stretches, regularisation_grid=grid)
  assert memorising[-1].C > 1e-4 and grouped[-1].C == 1e-4


def test_a_probe_fitted_in_parallel_is_the_probe_fitted_in_one_process():
  rng = np.random.default_rng(0)
  stretches = np.repeat(np.arange(9), 15)
  targets = rng.integers(0, 3, len(stretches))
  features = rng.standard_normal((len(targets), 6)) + targets[:, None]
  grid = (0.001, 0.01, 0.1, 1.0)
  serial = probes.fit_linear_probe(features, targets, groups=stretches, regularisation_grid=grid)
  parallel = probes.fit_linear_probe(features, targets, groups=stretches, regularisation_grid=grid,
                                     n_jobs=2)
  assert parallel[-1].C == serial[-1].C
  np.testing.assert_array_equal(parallel[-1].coef_, serial[-1].coef_)


def test_the_protocol_refuses_zero_probe_jobs():
  with pytest.raises(ValueError, match="probe_jobs"):
    protocol_lib.ProbeProtocol(probe_jobs=0)


@pytest.mark.filterwarnings("ignore:The least populated class")
def test_the_regularisation_always_comes_from_the_grid():
  targets = np.array([0] * 12 + [1] * 12 + [2])  # class 2: a single window
  features = np.random.default_rng(0).standard_normal((25, 3))
  assert probes.fit_linear_probe(features, targets, regularisation_grid=(0.01,))[-1].C == 0.01
  one_stretch = np.zeros(25, np.int64)  # nothing to validate on: the largest C of the grid
  assert probes.fit_linear_probe(features, targets, groups=one_stretch,
                                 regularisation_grid=(0.01, 0.3))[-1].C == 0.3


@pytest.mark.parametrize("grid", [(0.01, 0.3), (0.3, 0.01)])
@pytest.mark.parametrize("stretch_classes", [[0, 1], [0, 1, 1], [0, 1, 1, 1]])
def test_folds_that_cannot_train_on_two_classes_leave_the_regularisation_unvalidated(
    grid, stretch_classes):
  # Class 0 lives in one stretch: some fold trains on class 1 alone.
  rng = np.random.default_rng(0)
  stretches = np.repeat(np.arange(len(stretch_classes)), 10)
  targets = np.array(stretch_classes)[stretches]
  features = rng.standard_normal((len(targets), 3))
  probe = probes.fit_linear_probe(features, targets, groups=stretches, regularisation_grid=grid)
  assert probe[-1].C == 0.3


@pytest.mark.filterwarnings("ignore:The least populated class")
def test_a_class_of_one_window_leaves_the_regularisation_unvalidated():
  targets = np.array([0] + [1] * 10)
  features = np.random.default_rng(0).standard_normal((11, 3))
  assert probes.fit_linear_probe(features, targets, regularisation_grid=(0.01, 0.3))[-1].C == 0.3


def test_window_groups_are_the_time_blocks_of_each_trial():
  table = synthetic_table("label")
  groups = protocol_lib.window_groups(table)
  for group in np.unique(groups):
    members = groups == group
    assert len(np.unique(table.trial[members])) == 1
    assert len(np.unique(table.time_block[members])) == 1
  assert len(np.unique(groups)) == len(np.unique(table.trial)) * table.num_time_blocks


def test_a_class_missing_from_probe_training_is_scored_as_an_error():
  rng = np.random.default_rng(3)
  table = synthetic_table("label")
  labels = rng.integers(0, 3, len(table))
  held_out = np.isin(table.animal, table.animal_index(HELD_OUT))
  labels[held_out & (rng.random(len(table)) < 0.25)] = 3  # class 3: held-out animals only
  results = run(synthetic_table("label", labels=labels))
  scores = results[protocol_lib.ACTION_MULTI_ANIMAL]["1.0"]
  missing = np.mean(labels[held_out] == 3)
  assert scores["accuracy"]["mean"] == pytest.approx(100 * (1 - missing), abs=2)
  assert scores["balanced_accuracy"]["mean"] == pytest.approx(100 * 3 / 4, abs=2)


def test_animals_with_too_few_windows_are_skipped_with_a_reason():
  table = synthetic_table("label")
  keep = (table.animal != 1) | (table.centre_frame % 8 == 0)  # fly1 keeps 12 windows
  sparse = features_lib.FeatureTable(
      **{name: getattr(table, name)[keep] for name in
         ("features", "label", "animal", "trial", "centre_frame", "time_block")},
      num_time_blocks=table.num_time_blocks, animals=table.animals,
      class_names=table.class_names)
  results = run(sparse)
  single = results[protocol_lib.ACTION_SINGLE_ANIMAL]
  assert "fly1" not in single["1.0"]["accuracy"]["per_animal"]
  assert single["1.0"]["accuracy"]["count"] == 3
  reasons = [s for s in results["skipped"] if s.get("animal") == "fly1"]
  assert reasons and all("min_" in s["reason"] for s in reasons), results["skipped"]


def test_trial_split_tests_each_animal_on_a_trial_it_was_not_trained_on():
  table = synthetic_table("label", trials_per_animal=1)
  two_trials = synthetic_table("label")
  protocol = protocol_lib.ProbeProtocol(single_animal_split="trials", rotate_test_split=True,
                                      min_train_windows=8, min_test_windows=4)
  folds = protocol_lib._single_animal_folds(two_trials, np.flatnonzero(two_trials.animal == 0),
                                          "trials", rotate=True)
  assert len(folds) == 2
  for train, test in folds:
    assert not set(two_trials.trial[train]) & set(two_trials.trial[test])
  splits = run(table, protocol)[protocol_lib.ACTION_SINGLE_ANIMAL]["split_per_animal"]
  assert set(splits.values()) == {"time_blocks"}  # one trial each: time blocks instead
  splits = run(two_trials, protocol)[protocol_lib.ACTION_SINGLE_ANIMAL]["split_per_animal"]
  assert set(splits.values()) == {"trials"}


def test_results_are_json_serialisable(label_results):
  assert json.loads(json.dumps(label_results))["num_windows"]["total"] == 4 * 2 * 48


def test_feature_table_time_blocks_match_the_pipeline_time_blocks(tmp_path):
  rng = np.random.default_rng(0)
  recordings = [synthetic_data.recording(a, 0, 300, rng) for a in range(2)]
  dataset = shards.open_dataset(tfds_builder.build_dataset(recordings, str(tmp_path)))
  spec = windows.WindowSpec(pose_frames=8, pose_stride=2, neural_frames=4)
  normalizer = pipeline.fit_pose_normalizer(dataset, dataset.animals)
  table = features_lib.build_feature_table(
      lambda neural: neural.reshape(len(neural), -1)[:, :3], dataset, spec, normalizer,
      neural_key="neural_images", hop=1, drop_classes=(), num_time_blocks=3, batch_size=64)
  assert table.features.shape[1] == 3 and np.all(table.label >= 0)
  for block in range(3):
    index = pipeline.select_windows(
        dataset, spec, time_block=pipeline.TimeBlock(block, 3), drop_unlabelled=True)
    selected = set(zip(index.trial.tolist(), index.centre.tolist()))
    in_block = table.time_block == block
    assert set(zip(table.trial[in_block].tolist(),
                   table.centre_frame[in_block].tolist())) == selected


def test_feature_standardisation_removes_each_animals_offset_and_spread(tmp_path):
  rng = np.random.default_rng(0)
  recordings = [synthetic_data.recording(a, t, 300, rng) for a in range(2) for t in range(2)]
  dataset = shards.open_dataset(tfds_builder.build_dataset(recordings, str(tmp_path)))
  spec = windows.WindowSpec(pose_frames=8, pose_stride=2, neural_frames=4)
  normalizer = pipeline.fit_pose_normalizer(dataset, dataset.animals)
  features = lambda neural: neural.reshape(len(neural), -1)[:, :3]
  # Animal 1's features are shifted and stretched: only their animal-free part survives.
  own_features = lambda neural, animal: (features(neural) * (1 + 4 * animal[:, None])
                                         + 100.0 * animal[:, None])

  def table(encode, normalisation):
    return features_lib.build_feature_table(
        encode, dataset, spec, normalizer, neural_key="neural_images", hop=1,
        drop_classes=(), num_time_blocks=3, batch_size=64, with_animal=True,
        feature_normalisation=normalisation)

  plain = table(lambda neural, animal: features(neural), "animal")
  shifted = table(own_features, "animal")
  np.testing.assert_allclose(shifted.features, plain.features, rtol=1e-3, atol=1e-3)
  raw = table(own_features, "none")
  assert abs(raw.features[raw.animal == 1].mean() - 100.0) < 5.0
  # Statistics come from the blocks before the identity test block, labelled or not.
  index = features_lib.calibration_windows(dataset, spec, hop=1, num_time_blocks=3)
  blocks = features_lib.window_time_blocks(dataset, spec, index, 3)
  assert np.all((blocks >= 0) & (blocks < 2))
  # Unlabelled windows count too: more windows than the table's in those blocks.
  assert len(index) > np.sum((plain.time_block >= 0) & (plain.time_block < 2))
  # Windows both probed and calibrated on are encoded once; the table keeps its order.
  encoded = []
  counted = table(lambda neural, animal: encoded.append(len(neural)) or features(neural),
                  "animal")
  np.testing.assert_array_equal(counted.trial, raw.trial)
  np.testing.assert_array_equal(counted.centre_frame, raw.centre_frame)
  windows_seen = set(zip(raw.trial, raw.centre_frame)) | set(zip(index.trial, index.centre))
  assert sum(encoded) <= len(windows_seen) + 64  # the last batch is padded to 64
  with pytest.raises(ValueError, match="unknown feature_normalisation 'batch'"):
    table(own_features, "batch")


def test_the_multi_animal_probe_returns_its_confusion_matrix(label_results):
  probe = label_results[protocol_lib.ACTION_MULTI_ANIMAL]
  counts = np.array(probe["1.0"]["confusion"])
  assert probe["confusion_classes"] == [f"class{c}" for c in range(4)]
  assert counts.shape == (4, 4) and counts.sum() == probe["1.0"]["num_test"]
  assert 100 * np.trace(counts) / counts.sum() == pytest.approx(
      probe["1.0"]["accuracy"]["mean"])


def test_a_saved_feature_table_reads_back_with_the_chosen_animals(tmp_path):
  table = synthetic_table("label")
  features_lib.save_feature_table(table, tmp_path / "features.npz", animals=HELD_OUT)
  loaded = features_lib.load_feature_table(tmp_path / "features.npz")
  rows = table.animal == ANIMALS.index(HELD_OUT[0])
  np.testing.assert_array_equal(loaded.features, table.features[rows])
  np.testing.assert_array_equal(loaded.animal, table.animal[rows])
  assert loaded.animals == ANIMALS and loaded.class_names == table.class_names
  assert loaded.num_time_blocks == table.num_time_blocks


def test_raw_pose_and_neural_windows_give_feature_tables(tmp_path):
  rng = np.random.default_rng(0)
  recordings = [synthetic_data.recording(a, 0, 300, rng) for a in range(2)]
  dataset = shards.open_dataset(tfds_builder.build_dataset(recordings, str(tmp_path)))
  spec = windows.WindowSpec(pose_frames=8, pose_stride=2, neural_frames=4)
  normalizer = pipeline.fit_pose_normalizer(dataset, dataset.animals)
  tables = {kind: raw_features.raw_feature_table(
      dataset, spec, normalizer, kind=kind, hop=5, drop_classes=(), num_time_blocks=2)
            for kind in ("neural", "pose")}
  assert tables["neural"].features.shape[1] == 6 * 5  # time-averaged 6 x 5 images
  assert tables["pose"].features.shape[1] == 2 * 90  # mean and std of 90 pose dims
  np.testing.assert_array_equal(tables["neural"].label, tables["pose"].label)
  with pytest.raises(ValueError, match="unknown raw feature kind 'rois'"):
    raw_features.raw_feature_table(dataset, spec, normalizer, kind="rois", hop=5,
                                   drop_classes=(), num_time_blocks=2)


def test_the_swapped_pose_table_reads_every_window_from_another_animal(tmp_path):
  rng = np.random.default_rng(0)
  recordings = [synthetic_data.recording(a, 0, 300, rng) for a in range(2)]
  # Animal 1 moves with three times the amplitude: its windows' spread names it.
  recordings[1] = dataclasses.replace(recordings[1], behaviour=3 * recordings[1].behaviour)
  dataset = shards.open_dataset(tfds_builder.build_dataset(recordings, str(tmp_path)))
  spec = windows.WindowSpec(pose_frames=8, pose_stride=2, neural_frames=4)
  normalizer = pipeline.fit_pose_normalizer(dataset, dataset.animals)
  options = dict(hop=5, drop_classes=(), num_time_blocks=2)
  plain = raw_features.raw_feature_table(dataset, spec, normalizer, kind="pose", **options)
  swapped = raw_features.swapped_pose_feature_table(
      dataset, spec, normalizer, key=jax.random.key(0), temperature=1.0,
      per_frame_target=False, **options)
  np.testing.assert_array_equal(swapped.animal, plain.animal)
  np.testing.assert_array_equal(swapped.label, plain.label)
  spread = lambda table, animal: table.features[table.animal == animal, 90:].mean()
  # With two animals every frame comes from the other one, so the spreads trade places.
  assert spread(plain, 1) > 2 * spread(plain, 0)
  assert spread(swapped, 0) > 2 * spread(swapped, 1)
  again = raw_features.swapped_pose_feature_table(
      dataset, spec, normalizer, key=jax.random.key(0), temperature=1.0,
      per_frame_target=False, **options)
  np.testing.assert_array_equal(again.features, swapped.features)  # keyed, reproducible


def test_the_swapped_pose_table_draws_from_the_thinned_pool_of_training(tmp_path):
  rng = np.random.default_rng(0)
  recordings = [synthetic_data.recording(a, 0, 300, rng) for a in range(2)]
  for i, recording in enumerate(recordings):  # a complete first frame
    pose = recording.behaviour.copy()
    complete = np.isfinite(pose.reshape(len(pose), -1)).all(axis=1)
    pose[0] = pose[np.flatnonzero(complete)[0]]
    recordings[i] = dataclasses.replace(recording, behaviour=pose,
                                        keypoint_mask=np.isfinite(pose).all(axis=-1))
  dataset = shards.open_dataset(tfds_builder.build_dataset(recordings, str(tmp_path)))
  spec = windows.WindowSpec(pose_frames=8, pose_stride=2, neural_frames=4)
  normalizer = pipeline.fit_pose_normalizer(dataset, dataset.animals)
  options = dict(key=jax.random.key(0), temperature=1.0, per_frame_target=True, hop=5,
                 drop_classes=(), num_time_blocks=2)
  every_frame = raw_features.swapped_pose_feature_table(dataset, spec, normalizer, **options)
  # A stride longer than a trial leaves each animal's first frame as its whole pool: every
  # swapped window is that one frame repeated, without any spread.
  one_frame = raw_features.swapped_pose_feature_table(dataset, spec, normalizer,
                                                      pool_stride=1000, **options)
  assert every_frame.features[:, 90:].mean(axis=1).min() > 0.1
  np.testing.assert_allclose(one_frame.features[:, 90:], 0.0, atol=1e-5)
  assert len(np.unique(one_frame.features[:, :90].round(4), axis=0)) == 2  # one per animal


def test_raw_roi_traces_of_different_widths_are_zero_padded(locomotion_data_dir):
  dataset = shards.open_dataset(locomotion_data_dir, synthetic_data.LOCOMOTION_DATASET_NAME)
  spec = windows.WindowSpec()
  normalizer = pipeline.fit_pose_normalizer(dataset, dataset.animals)
  table = raw_features.raw_feature_table(
      dataset, spec, normalizer, kind="neural", hop=20, drop_classes=(), num_time_blocks=2,
      neural_key="roi_traces")
  counts = [dataset.roi_counts[a] for a in dataset.animals]
  assert len(set(counts)) > 1 and table.features.shape[1] == max(counts)
  for animal, count in enumerate(counts):
    rows = table.features[table.animal == animal]
    assert len(rows) and not rows[:, count:].any() and rows[:, :count].any()
  behaviour = raw_features.raw_feature_table(
      dataset, spec, normalizer, kind="pose", hop=20, drop_classes=(), num_time_blocks=2)
  assert behaviour.features.shape[1] == 2 * 3  # mean and std of the 3 ball velocities
