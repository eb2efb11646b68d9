"""`experiments.report`: runs summarised over folds, and their tables in the seed's layout."""

import pytest

from experiments import report
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
  text = report.format_table({"Ours": aggregated, "Raw": _fake_run(30, 18, 100)})
  lines = text.splitlines()
  assert ("| Method | Single-Animal 0.5 | Single-Animal 1.0 | Multi-Animal 0.5 | "
          "Multi-Animal 1.0 |") in lines
  assert "| Method | Identity 0.5 | Identity 1.0 |" in lines
  assert "| Random | 16.7 | 16.7 | 16.7 | 16.7 |" in lines
  assert "| Ours | 60.0 ± 10.0 | 65.0 ± 10.0 | 50.0 ± 10.0 | 55.0 ± 10.0 |" in lines
  assert "| Raw | 30.0 ± 1.0 | 35.0 ± 1.0 | 18.0 ± 1.0 | 23.0 ± 1.0 |" in lines
  assert "| Ours | 25.0 ± 5.0 | 30.0 ± 5.0 |" in lines
  assert "| Random | 12.5 | 12.5 |" in lines
  assert report.format_table(_fake_run(30, 18, 100)).count("| Ours |") == 2
