"""Decoders beyond the linear class probes: the kNN probe, the behaviour decoder (ridge R² on
held-out animals), the behaviour column of feature tables and the decoders table."""

import dataclasses
import pathlib

import numpy as np
import pytest
import synthetic_data
from test_evaluation import ANIMALS, HELD_OUT, PROTOCOL, TRAINING, run, synthetic_table

from experiments import report
from experiments import tables
from nar.data import builder as tfds_builder
from nar.data import pipeline
from nar.data import shards
from nar.data import windows
from nar.eval import features as features_lib
from nar.eval import probes
from nar.eval import protocol as protocol_lib
from nar.eval import raw_features


def _with_behaviour(table, behaviour, names=()):
  return dataclasses.replace(table, behaviour=np.asarray(behaviour, np.float32),
                             behaviour_names=tuple(names))


# ----------------------------------------------------------------------------------------------
# The kNN probe.
# ----------------------------------------------------------------------------------------------
def _clusters(seed=0, per_class=60, classes=3):
  rng = np.random.default_rng(seed)
  targets = np.repeat(np.arange(classes), per_class)
  centres = 4.0 * rng.normal(size=(classes, 5))
  return centres[targets] + rng.normal(size=(len(targets), 5)), targets


def test_the_knn_probe_recognises_separable_classes_and_not_shuffled_ones():
  features, targets = _clusters()
  test_features, test_targets = _clusters(seed=0)
  probe = probes.fit_knn_probe(features, targets)
  assert probes.probe_scores(probe, test_features, test_targets)["accuracy"] > 95
  # Labels shuffled at random carry nothing a new sample's neighbours could tell.
  shuffled = np.random.default_rng(1).permutation(targets)
  probe = probes.fit_knn_probe(features, shuffled, seed=1)
  new_features, _ = _clusters(seed=0)
  new_targets = np.random.default_rng(2).integers(0, 3, len(new_features))
  accuracy = probes.probe_scores(probe, new_features, new_targets)["balanced_accuracy"]
  assert abs(accuracy - 100 / 3) < 12, accuracy


def test_the_knn_probe_validates_only_the_neighbour_counts_its_folds_can_hold():
  features, targets = _clusters(per_class=6, classes=2)  # 12 samples, folds train on 8
  probe = probes.fit_knn_probe(features, targets, neighbours_grid=(3, 45))
  assert probe.named_steps["kneighborsclassifier"].n_neighbors == 3
  # A single group: no fold can be cut, so the smallest k (at most every sample) is used.
  probe = probes.fit_knn_probe(features, targets, groups=np.zeros(12), neighbours_grid=(45,))
  assert probe.named_steps["kneighborsclassifier"].n_neighbors == 12
  with pytest.raises(ValueError, match="at least two classes"):
    probes.fit_knn_probe(features, np.zeros(12))
  with pytest.raises(ValueError, match="neighbours grid is empty"):
    probes.fit_knn_probe(features, targets, neighbours_grid=())


# ----------------------------------------------------------------------------------------------
# The ridge decoder.
# ----------------------------------------------------------------------------------------------
def test_ridge_r2_is_near_one_on_a_linear_target_and_at_most_zero_on_noise():
  rng = np.random.default_rng(0)
  features = rng.normal(size=(400, 6))
  weights = rng.normal(size=(6, 3))
  groups = np.repeat(np.arange(8), 50)
  decoder = probes.fit_ridge_decoder(features[:200], features[:200] @ weights,
                                     groups=groups[:200])
  scores = probes.ridge_scores(decoder, features[200:], features[200:] @ weights)
  assert scores["r2_mean"] > 0.99 and len(scores["r2_per_dimension"]) == 3
  noise = rng.normal(size=(400, 3))
  decoder = probes.fit_ridge_decoder(features[:200], noise[:200], groups=groups[:200])
  scores = probes.ridge_scores(decoder, features[200:], noise[200:])
  assert scores["r2_mean"] < 0.02, scores


def test_ridge_leaves_out_non_finite_targets_and_constant_dimensions():
  rng = np.random.default_rng(0)
  features = rng.normal(size=(60, 3))
  targets = np.stack([features[:, 0], np.zeros(60)], axis=1)
  targets[5, 0] = np.nan
  decoder = probes.fit_ridge_decoder(features, targets)
  scores = probes.ridge_scores(decoder, features, targets)
  assert scores["num_samples"] == 59 and scores["r2_per_dimension"][1] is None
  assert scores["r2_mean"] == pytest.approx(scores["r2_per_dimension"][0])
  assert probes.ridge_scores(decoder, features, np.zeros((60, 2)))["r2_mean"] is None


# ----------------------------------------------------------------------------------------------
# The probe suite.
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def decoded():
  table = synthetic_table("label")
  rng = np.random.default_rng(3)
  # Two behaviour dimensions the features read linearly, and one constant one.
  behaviour = np.stack([table.features[:, 0] - table.features[:, 1], table.features[:, 2],
                        np.zeros(len(table))], axis=1)
  behaviour[rng.integers(0, len(table), 5), 0] = np.nan  # missing values are left out
  table = _with_behaviour(table, behaviour, ("speed", "turn", "still"))
  return table, run(table)


def test_the_suite_has_the_knn_probe_and_the_behaviour_decoder(decoded):
  _, results = decoded
  knn = results[protocol_lib.ACTION_MULTI_ANIMAL_KNN]
  for fraction in ("0.5", "1.0"):
    for metric in protocol_lib.METRICS:
      assert knn[fraction][metric]["mean"] > 90, (fraction, metric)
    assert list(knn[fraction]["accuracy"]["per_animal"]) == list(HELD_OUT)
  decoding = results[protocol_lib.BEHAVIOUR_DECODING]
  assert protocol_lib.is_summary(decoding["r2"]) and decoding["r2"]["mean"] > 0.9
  assert list(decoding["r2"]["per_animal"]) == list(HELD_OUT)
  assert decoding["dimension_names"] == ["speed", "turn", "still"]
  assert decoding["r2_per_dimension"][2] is None and decoding["r2_per_dimension"][0] > 0.9
  assert decoding["num_test"] == int(np.sum(np.isin(decoded[0].animal, [3]))) - np.sum(
      np.isnan(decoded[0].behaviour[decoded[0].animal == 3, 0]))
  assert not results["skipped"]


def test_the_new_probes_leave_the_linear_probes_numbers_unchanged(decoded):
  table, results = decoded
  without = run(dataclasses.replace(table, behaviour=None, behaviour_names=()))
  for probe in (protocol_lib.ACTION_SINGLE_ANIMAL, protocol_lib.ACTION_MULTI_ANIMAL,
                protocol_lib.IDENTITY):
    assert results[probe] == without[probe], probe
  # Straight from the linear probe, as before the suite had the other decoders.
  train = np.isin(table.animal, table.animal_index(TRAINING))
  test = ~train
  scores, _ = protocol_lib.fit_and_score(
      table.features[train], table.label[train], table.features[test], table.label[test],
      fraction=1.0, seed=0, protocol=PROTOCOL,
      train_groups=protocol_lib.window_groups(table)[train])
  assert results[protocol_lib.ACTION_MULTI_ANIMAL]["1.0"]["accuracy"]["mean"] == \
      scores["accuracy"]


def test_without_held_out_animals_or_behaviour_the_decoders_are_skipped_with_a_reason(decoded):
  table, _ = decoded
  results = protocol_lib.run_probe_suite(table, training_animals=ANIMALS, held_out_animals=(),
                                         protocol=PROTOCOL)
  reasons = {s["probe"]: s["reason"] for s in results["skipped"]}
  assert results[protocol_lib.ACTION_MULTI_ANIMAL_KNN] == {}
  assert results[protocol_lib.BEHAVIOUR_DECODING] == {}
  assert reasons[protocol_lib.ACTION_MULTI_ANIMAL_KNN] == "no held-out animal"
  assert reasons[protocol_lib.BEHAVIOUR_DECODING] == "no held-out animal"
  results = run(synthetic_table("label"))  # no behaviour column
  assert results[protocol_lib.BEHAVIOUR_DECODING] == {}
  assert {"probe": protocol_lib.BEHAVIOUR_DECODING,
          "reason": "the feature table has no behaviour column"} in results["skipped"]


def test_the_decoders_settings_come_from_the_eval_config():
  protocol = protocol_lib.protocol_from_config({"neighbours_grid": [3, 7],
                                                "ridge_alphas": [1, 2]})
  assert protocol.neighbours_grid == (3, 7) and protocol.ridge_alphas == (1.0, 2.0)
  with pytest.raises(ValueError, match="neighbours_grid"):
    protocol_lib.ProbeProtocol(neighbours_grid=(0,))


# ----------------------------------------------------------------------------------------------
# The behaviour column of feature tables.
# ----------------------------------------------------------------------------------------------
def test_a_feature_table_round_trips_with_and_without_behaviour(tmp_path, decoded):
  table, _ = decoded
  features_lib.save_feature_table(table, tmp_path / "with.npz", animals=HELD_OUT)
  loaded = features_lib.load_feature_table(tmp_path / "with.npz")
  rows = np.isin(table.animal, table.animal_index(HELD_OUT))
  np.testing.assert_array_equal(loaded.behaviour, table.behaviour[rows])
  assert loaded.behaviour_names == table.behaviour_names
  plain = synthetic_table("label")
  features_lib.save_feature_table(plain, tmp_path / "without.npz")
  loaded = features_lib.load_feature_table(tmp_path / "without.npz")
  assert loaded.behaviour is None and loaded.behaviour_names == ()
  np.testing.assert_array_equal(loaded.features, plain.features)
  # A file written before tables had a behaviour column.
  with np.load(tmp_path / "without.npz") as arrays:
    old = {k: arrays[k] for k in arrays.files if k != "behaviour_names"}
  np.savez(tmp_path / "old.npz", **old)
  assert features_lib.load_feature_table(tmp_path / "old.npz").behaviour is None


def test_a_behaviour_column_of_another_length_is_refused():
  table = synthetic_table("label")
  with pytest.raises(ValueError, match="differ in length"):
    _with_behaviour(table, np.zeros((len(table) - 1, 2)))


def test_built_tables_hold_the_normalised_behaviour_of_each_centre_frame(tmp_path):
  rng = np.random.default_rng(0)
  recordings = [synthetic_data.recording(a, 0, 300, rng) for a in range(2)]
  dataset = shards.open_dataset(tfds_builder.build_dataset(recordings, str(tmp_path)))
  spec = windows.WindowSpec(pose_frames=8, pose_stride=2, neural_frames=4)
  normalizer = pipeline.fit_pose_normalizer(dataset, dataset.animals)
  table = raw_features.raw_feature_table(dataset, spec, normalizer, kind="neural", hop=5,
                                         drop_classes=(), num_time_blocks=2)
  frames = dataset.behaviour_index.offsets[table.trial] + table.centre_frame
  expected = normalizer(pipeline.pose_features(dataset))[frames]
  np.testing.assert_array_equal(table.behaviour, expected)
  assert table.behaviour_names == dataset.behaviour_spec.feature_names
  assert table.behaviour.shape == (len(table), 90)


# ----------------------------------------------------------------------------------------------
# The decoders table.
# ----------------------------------------------------------------------------------------------
def _summary(multi, knn=None, r2=None, count=2):
  entry = lambda value: {"mean": value, "std": 1.5, "count": count}
  summary = {protocol_lib.ACTION_MULTI_ANIMAL: {"1.0": {"accuracy": entry(multi)}}}
  if knn is not None:
    summary[protocol_lib.ACTION_MULTI_ANIMAL_KNN] = {"1.0": {"accuracy": entry(knn)}}
  if r2 is not None:
    summary[protocol_lib.BEHAVIOUR_DECODING] = {"r2": {**entry(r2), "std": 0.05}}
  return summary


def _rows(text):
  lines = [line for line in text.splitlines() if line.startswith("|")]
  return [[c.strip() for c in line.strip("|").split("|")] for line in lines[:1] + lines[2:]]


def test_the_decoders_table_has_a_row_per_method_and_dashes_where_absent():
  summaries = {"ours": _summary(60.0, 64.0, 0.5), "simclr": _summary(50.0), "random": None,
               "neural_raw": None}
  rows = _rows(tables.decoders_table(summaries))
  assert rows[0] == ["Method", "Multi-Animal linear", "Multi-Animal kNN",
                     "Behaviour R² (new animals)", "runs"]
  assert [r[0] for r in rows[1:]] == ["Neural (linear) raw", "SimCLR", "Ours"]  # ROW_LABELS
  assert rows[1][1:] == [tables.MISSING] * 3 + ["0"]
  assert rows[2][1:] == ["50.0 ± 1.5", tables.MISSING, tables.MISSING, "2"]
  assert rows[3][1:] == ["60.0 ± 1.5", "64.0 ± 1.5", "0.50 ± 0.05", "2"]


def test_the_decoders_aggregate_over_runs_and_reach_the_csvs():
  runs = [_summary(60.0, 64.0, 0.4, count=1), _summary(70.0, 66.0, 0.6, count=1)]
  aggregated = report.aggregate_runs(runs)
  r2 = tables.behaviour_r2(aggregated)
  assert r2["mean"] == pytest.approx(0.5) and r2["count"] == 2
  records = [report.run_record("ours", "method", seed, {"probes": suite})
             for seed, suite in enumerate(runs)]
  assert records[1][tables.BEHAVIOUR_R2_COLUMN] == 0.6
  assert records[1]["multi_animal_knn_1.0_accuracy"] == 66.0
  text = tables.runs_csv(records)
  assert "multi_animal_knn_1.0_accuracy" in text.splitlines()[0]
  summaries = report.summaries_from_records(
      [{k: str(v) if v is not None else "" for k, v in r.items()} for r in records],
      ["ours", "simclr"])
  assert tables.behaviour_r2(summaries["ours"])["mean"] == pytest.approx(0.5)
  assert tables.decoders_table(summaries) == tables.decoders_table(
      {"ours": aggregated, "simclr": None})
  summary_csv = tables.summary_csv(summaries, {"ours": "method"}, {})
  assert "behaviour_decoding_r2_mean" in summary_csv.splitlines()[0]


def test_the_reproduction_writes_decoders_md_and_leaves_tables_1_and_2_alone(tmp_path):
  committed = pathlib.Path(__file__).resolve().parents[1] / "results" / "pose_cpu"
  texts = report.write_tables_from_runs(report.read_runs_csv(committed / "runs.csv"), tmp_path)
  for name in ("table1.md", "table2.md"):
    assert texts[name] == (committed / name).read_text(), name
  decoders = (tmp_path / "decoders.md").read_text()
  ours = _rows(decoders.split("## Accuracy")[1].split("##")[0])
  ours_row = next(r for r in ours if r[0] == "Ours")
  # Runs made before the kNN probe and the decoder: their cells are absent, not zero.
  assert ours_row[2] == ours_row[3] == tables.MISSING and ours_row[1] != tables.MISSING
