"""`experiments.report`: runs summarised over folds, and their tables in the seed's layout."""

import json

import pytest

from experiments import report
from experiments import tables
from nar.eval import protocol as protocol_lib


def _fake_run(single, multi, identity):
  score = lambda value: {"accuracy": {"mean": value, "std": 1.0, "count": 4},
                         "balanced_accuracy": {"mean": value - 1, "std": 1.0, "count": 4}}
  return {protocol_lib.ACTION_SINGLE_ANIMAL: {"0.5": score(single), "1.0": score(single + 5)},
          protocol_lib.ACTION_MULTI_ANIMAL: {"0.5": score(multi), "1.0": score(multi + 5)},
          protocol_lib.IDENTITY: {"0.5": score(identity), "1.0": score(identity + 5)},
          "chance": {"action": 100 / 6, "identity": 100 / 8},
          "held_out_animals": ["fly3"]}


def test_aggregate_runs_gives_mean_and_std_over_runs():
  aggregated = report.aggregate_runs([_fake_run(50, 40, 20), _fake_run(70, 60, 30)])
  single = aggregated[protocol_lib.ACTION_SINGLE_ANIMAL]["0.5"]["accuracy"]
  assert single["mean"] == pytest.approx(60) and single["std"] == pytest.approx(10)
  assert single["runs"] == [50, 70] and single["count"] == 2
  assert aggregated[protocol_lib.IDENTITY]["1.0"]["balanced_accuracy"]["mean"] == \
      pytest.approx(29)
  assert aggregated["chance"]["action"] == pytest.approx(100 / 6)
  assert aggregated["held_out_animals"] == ["fly3"]
  other_fold = _fake_run(0, 0, 0)
  other_fold["held_out_animals"] = ["fly2"]
  assert report.aggregate_runs([_fake_run(0, 0, 0), other_fold])["held_out_animals"] == \
      {"per_run": [["fly3"], ["fly2"]]}


def test_aggregate_runs_keeps_a_setting_that_every_run_leaves_unset():
  runs = [_fake_run(50, 40, 20), _fake_run(70, 60, 30)]
  for run_results in runs:
    run_results["protocol"] = {"probe_threads": None, "seeds": [0]}
  assert report.aggregate_runs(runs)["protocol"] == {"probe_threads": None, "seeds": [0]}


def test_format_table_has_the_seed_columns():
  aggregated = report.aggregate_runs([_fake_run(50, 40, 20), _fake_run(70, 60, 30)])
  text = tables.format_table({"Ours": aggregated, "Raw": _fake_run(30, 18, 100)})
  lines = text.splitlines()
  assert ("| Method | Single-Animal 0.5 | Single-Animal 1.0 | Multi-Animal 0.5 | "
          "Multi-Animal 1.0 |") in lines
  assert "| Method | Identity 0.5 | Identity 1.0 |" in lines
  assert "| Random | 16.7 | 16.7 | 16.7 | 16.7 |" in lines
  assert "| Ours | 60.0 ± 10.0 | 65.0 ± 10.0 | 50.0 ± 10.0 | 55.0 ± 10.0 |" in lines
  assert "| Raw | 30.0 ± 1.0 | 35.0 ± 1.0 | 18.0 ± 1.0 | 23.0 ± 1.0 |" in lines
  assert "| Ours | 25.0 ± 5.0 | 30.0 ± 5.0 |" in lines
  assert "| Random | 12.5 | 12.5 |" in lines
  assert tables.format_table(_fake_run(30, 18, 100)).count("| Ours |") == 2


def _write_eval_json(folder, row, fold, seed, multi, identity):
  score = lambda value: {"accuracy": {"mean": value, "std": 0.0, "count": 1}}
  probes = {protocol_lib.ACTION_SINGLE_ANIMAL: {"1.0": score(50.0)},
            protocol_lib.ACTION_MULTI_ANIMAL: {"0.5": score(multi), "1.0": score(multi + 1)},
            protocol_lib.IDENTITY: {"1.0": score(identity)}}
  (folder / f"{row}_fold{fold}_seed{seed}.eval.json").write_text(json.dumps({"probes": probes}))


def test_a_folder_of_eval_jsons_tabulates_rows_and_their_leads_paired_by_fold(tmp_path):
  for fold, (ours, no_swap) in enumerate([(44.0, 40.0), (40.0, 41.0), (46.0, 42.0)]):
    _write_eval_json(tmp_path, "ours", fold, fold, ours, 20.0 + fold)
    _write_eval_json(tmp_path, "no_swap", fold, fold, no_swap, 30.0)
  _write_eval_json(tmp_path, "ours", 5, 0, 90.0, 0.0)  # no no_swap run to pair with
  (tmp_path / "notes.eval.json").write_text("{}")  # not a run's name: ignored
  lines = report.eval_json_table(tmp_path, reference="no_swap").splitlines()
  assert lines[0].startswith("| Method | runs | Single 1.0 | Multi 0.5 | Multi 1.0 |")
  ours = next(line for line in lines if line.startswith("| Ours |"))
  # Leads over no_swap on the three paired folds: +4, -1, +4 (mean 2.3, std 2.4), ahead on 2.
  assert ours.endswith("| +2.3 ± 2.4 / +2.3 ± 2.4 (ahead in 2 / 2 of 3) |"), ours
  assert "| 4 |" in ours  # four runs of Ours in all
  no_swap = next(line for line in lines if line.startswith("| Multimodal contrastive, no swap |"))
  assert no_swap.endswith("| 30.0 ± 0.0 | – |")
  with pytest.raises(ValueError, match="holds no"):
    report.eval_json_table(tmp_path / "notes.eval.json", reference="no_swap")


def test_objectives_pair_each_switch_with_its_own_baseline_and_leave_baselines_out():
  from experiments import objectives_report
  action, identity = objectives_report.ACTION_COLUMN, objectives_report.IDENTITY_COLUMN
  scores = {"ours": (50, 20), "no_swap": (45, 22), "neural_standardised": (30, 10),
            # The switch is evaluated alike with its pair; the pair alone would lead no-swap
            # clearly and come near the reference, yet it is no candidate.
            "feature_standardised": (50.5, 12), "no_swap_feature_standardised": (50, 11)}
  records = [{"row": row, "seed": seed, action: acc + seed, identity: ident + seed % 2}
             for row, (acc, ident) in scores.items() for seed in range(3)]
  variants = ["ours", "feature_standardised", "no_swap_feature_standardised"]
  rows = objectives_report.objective_rows(records, variants)
  assert rows["feature_standardised"]["baseline"] == "no_swap_feature_standardised"
  assert rows["feature_standardised"]["lead"]["lead"] == pytest.approx(0.5)
  assert rows["no_swap_feature_standardised"]["baseline"] == "no_swap"
  assert rows["no_swap_feature_standardised"]["lead"]["clear"]
  assert rows["no_swap_feature_standardised"]["near"]
  text = objectives_report.objective_table(records, variants, title="test")
  line = next(l for l in text.splitlines() if l.startswith("| feature_standardised |"))
  assert "| no_swap_feature_standardised |" in line and "+0.5 ± 0.0" in line
  assert "No variant meets both targets" in text
  # Paired with no-swap instead, the same switch meets both.
  paired_with_no_swap = objectives_report.objective_table(records, variants[:2], title="test",
                                                          baselines={})
  assert "Both targets met by: feature_standardised." in paired_with_no_swap
