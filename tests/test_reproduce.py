"""`experiments.reproduce` on the smoke preset: outputs, every table row, resuming, bad flags;
and on the locomotion dataset (ROI traces of different widths, no paper numbers)."""

import csv
import dataclasses
import importlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
from absl import flags
import pytest

from experiments import execution
from experiments import paper_results
from experiments import report
from experiments import reproduce
from experiments import tables
from experiments.configs import common
from experiments.configs import reproduce as presets
from nar import train
from nar.data import pipeline
from nar.data import shards
from nar.eval import features as features_lib
from nar.eval import protocol as protocol_lib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# A few rows of every kind keep the test short; the tables must still list every row.
ONLY = ("ours", "neural_raw", "neural_standardised", "behaviour_raw", "behaviour_swapped",
        "no_neural_augment")
NUM_SEEDS = 2
# On the locomotion dataset: the references (the neural one reads ROI traces of different
# widths), two methods whose held-out input layers are fitted, one through a recurrent
# decoder, and the ablation of the behaviour vector's augmentations.
LOCOMOTION_ONLY = ("neural_raw", "behaviour_raw", "ours", "regression_recurrent",
                   "no_pose_augment")


@pytest.fixture(scope="module")
def reproduction(tmp_path_factory):
  """A smoke reproduction over two seeds (its own tiny simulated dataset under NAR_HOME)."""
  root = tmp_path_factory.mktemp("reproduce")
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("NAR_HOME", str(root / "nar_home"))
    summary = reproduce.reproduce("smoke", num_seeds=NUM_SEEDS, out_dir=root / "out",
                                  only=ONLY)
  return root, summary


def test_every_output_is_written(reproduction):
  root, summary = reproduction
  out = root / "out"
  assert len(summary["ran"]) == 5 * NUM_SEEDS + 1 and not summary["skipped"]
  for name in ("table1.md", "table2.md", "ablation.md", "runs.csv", "summary.csv",
               "README.md"):
    assert (out / name).stat().st_size > 0, name
  for name in ("embedding_held_out.png", "confusion_multi_animal.png", "loss_curves.png",
               "loss_curves_ablations.png"):
    assert (out / "figures" / name).stat().st_size > 0, name
  with (out / "runs.csv").open() as f:
    runs = list(csv.DictReader(f))
  assert sorted((r["row"], r["seed"]) for r in runs) == sorted(
      [(row, str(seed)) for row in ONLY[:5] for seed in range(NUM_SEEDS)] +
      [("no_neural_augment", "0")])
  # Seed k holds out its own animals, and every run records its wall time.
  assert len({r["held_out_animals"] for r in runs if r["row"] == "ours"}) == NUM_SEEDS
  assert all(float(r["wall_seconds"]) > 0 for r in runs)
  readme = (out / "README.md").read_text()
  assert "wall time, sum over finished runs" in readme
  assert "runs at once in this invocation: 1\n" in readme
  features = features_lib.load_feature_table(out / "runs" / "ours" / "seed0" / "features.npz")
  held_out = next(r["held_out_animals"] for r in runs if r["row"] == "ours" and r["seed"] == "0")
  assert {features.animals[a] for a in set(features.animal)} == set(held_out.split())
  # Standardising each animal's pixels takes from a linear read-out much of what names the
  # animal in raw ΔF/F.
  identity = {row: np.mean([float(r["identity_1.0_accuracy"]) for r in runs if r["row"] == row])
              for row in ("neural_raw", "neural_standardised", "behaviour_raw",
                          "behaviour_swapped")}
  assert identity["neural_standardised"] < identity["neural_raw"] - 10, identity
  # Swapping every pose window with another animal's frames hides much of the animal.
  assert identity["behaviour_swapped"] < identity["behaviour_raw"] - 10, identity


def test_tables_list_every_row_with_the_paper_beside_ours(reproduction):
  out = reproduction[0] / "out"
  table1, table2 = (out / "table1.md").read_text(), (out / "table2.md").read_text()
  for row in tables.ACTION_ROWS:
    assert f"| {tables.row_label(row)} |" in table1, row
  for row in tables.IDENTITY_ROWS:
    assert f"| {tables.row_label(row)} |" in table2, row
  for row in tables.BEHAVIOUR_ROWS:  # identity references only, as in the seed
    assert f"| {tables.row_label(row)} |" not in table1 and row not in tables.ACTION_ROWS
  ours = next(line for line in table1.splitlines() if line.startswith("| Ours |"))
  cells = [c.strip() for c in ours.strip("|").split("|")]
  assert "±" in cells[1] and cells[2] == "57.9" and cells[-1] == str(NUM_SEEDS)
  simclr = next(line for line in table1.splitlines() if line.startswith("| SimCLR |"))
  assert simclr.count(tables.MISSING) == 4 and simclr.endswith("| 0 |")  # not run
  assert "Balanced accuracy" in table1 and "Balanced accuracy" in table2
  # Ours' lead over the rows that ran, fold by fold, and the verdict against the best of them.
  leads = table1.split("## Ours against every other row on new animals (accuracy)")[1]
  lead, ahead, clear = _cells(leads, "Neural (linear) raw")[:3]
  assert "±" in lead and ahead.endswith(f"/{NUM_SEEDS}") and clear in ("yes", "no")
  assert "| SimCLR |" not in leads and "the best other row is" in leads
  # The same section, from runs.csv alone (`python -m experiments.report --runs_csv=...`).
  assert report.lead_table(report.read_runs_csv(out / "runs.csv")) in leads
  with pytest.raises(ValueError, match="not a reproduction's runs.csv"):
    report.read_runs_csv(out / "summary.csv")
  ablation = (out / "ablation.md").read_text()
  for name, overrides in presets.get_config("smoke").ablations.items():
    assert f"| {name} |" in ablation and next(iter(overrides)) in ablation
  with (out / "summary.csv").open() as f:
    summary = {r["row"]: r for r in csv.DictReader(f)}
  assert summary["ours"]["runs"] == str(NUM_SEEDS)
  assert float(summary["ours"]["multi_animal_1.0_accuracy_paper"]) == 61.9


def test_tables_rebuilt_from_runs_csv_files_of_several_folders_equal_the_reproductions(
    reproduction, tmp_path):
  out = reproduction[0] / "out"
  records = report.read_runs_csv(out / "runs.csv")
  assert all(float(r["action_chance"]) > 0 and float(r["identity_chance"]) > 0
             for r in records)
  # The runs split over two folders, as by two invocations with different `--only`.
  parts = {"a": [r for r in records if r["row"] in ("ours", "neural_raw")],
           "b": [r for r in records if r["row"] not in ("ours", "neural_raw")]}
  paths = []
  for name, part in parts.items():
    (tmp_path / name).mkdir()
    paths.append(tmp_path / name / "runs.csv")
    paths[-1].write_text(tables.runs_csv(part))
  # Written into the folder of one of them, whose runs.csv it replaces.
  subprocess.run([sys.executable, "-m", "experiments.report",
                  f"--runs_csv={paths[0]},{paths[1]}", f"--out={tmp_path / 'a'}"],
                 cwd=REPO_ROOT, check=True, capture_output=True)
  for name in ("table1.md", "table2.md"):
    assert (tmp_path / "a" / name).read_text() == (out / name).read_text(), name
  merged = report.read_runs_csv(tmp_path / "a" / "runs.csv")
  assert sorted((r["row"], r["seed"]) for r in merged) == sorted(
      (r["row"], r["seed"]) for r in records)
  with (tmp_path / "a" / "summary.csv").open() as f, (out / "summary.csv").open() as g:
    rebuilt, made = list(csv.DictReader(f)), list(csv.DictReader(g))
  assert [r["row"] for r in rebuilt] == [r["row"] for r in made]
  for again, first in zip(rebuilt, made):  # runs.csv keeps 4 decimals
    for column, value in first.items():
      if column.endswith(("_mean", "_std")) and value:
        assert float(again[column]) == pytest.approx(float(value), abs=2e-4), column
  # A run in two of the files is refused, not silently counted twice.
  with pytest.raises(ValueError, match="neural_raw seed 0 is in both"):
    report.merge_runs_csv([paths[0], paths[0]])


def test_a_second_invocation_reuses_finished_runs(reproduction, monkeypatch):
  root, _ = reproduction
  table1 = (root / "out" / "table1.md").read_text()

  def must_not_run(*args, **kwargs):
    raise AssertionError("a finished run was run again")

  monkeypatch.setattr(train, "train_and_evaluate", must_not_run)
  monkeypatch.setattr(execution, "evaluate_raw_inputs", must_not_run)
  monkeypatch.setenv("NAR_HOME", str(root / "nar_home"))
  summary = reproduce.reproduce("smoke", num_seeds=NUM_SEEDS, out_dir=root / "out", only=ONLY)
  assert not summary["ran"] and len(summary["skipped"]) == 5 * NUM_SEEDS + 1
  assert (root / "out" / "table1.md").read_text() == table1


def test_a_run_made_with_another_config_is_not_reused(reproduction, monkeypatch):
  root, _ = reproduction
  monkeypatch.setenv("NAR_HOME", str(root / "nar_home"))
  preset = presets.get_config("smoke")
  reproduce.prepare_dataset(preset, "pose")  # built by the fixture: only points at it
  preset.training.optim.num_train_steps += 1
  run = next(r for r in reproduce.plan_runs(preset, num_seeds=1, out_dir=root / "out")
             if r.row == "ours")
  with pytest.raises(execution.SettingsError, match="optim.num_train_steps: 4 .saved. vs 5"):
    execution.execute(run)
  # A field added to the configs after the run was made: the run is reused only where the
  # field is known to keep, at the value asked for, what the code did before it existed.
  preset.training.optim.num_train_steps -= 1
  preset.training.a_later_field = 1
  ours = lambda: next(r for r in reproduce.plan_runs(preset, num_seeds=1, out_dir=root / "out")
                      if r.row == "ours")
  with pytest.raises(execution.SettingsError,
                     match="a_later_field: absent .saved. vs 1 .now.; the field was added"):
    execution.execute(ours())
  monkeypatch.setitem(execution.FIELDS_ADDED_LATER, "a_later_field", 1)
  assert not execution.execute(ours())
  preset.training.a_later_field = 2
  with pytest.raises(execution.SettingsError,
                     match="a_later_field: absent .saved., which behaved as 1, vs 2 .now."):
    execution.execute(ours())


def _fixture_smoke_preset(root: pathlib.Path, monkeypatch) -> presets.Preset:
  """The smoke preset pointed at the dataset the `reproduction` fixture built under `root`."""
  monkeypatch.setenv("NAR_HOME", str(root / "nar_home"))
  preset = presets.get_config("smoke")
  reproduce.prepare_dataset(preset, "pose")
  return preset


def _scores(results: dict) -> dict:
  """A run's results without its timings, which differ between any two executions."""
  scores = {key: value for key, value in results.items() if key != "wall_seconds"}
  if "final_train_metrics" in scores:
    scores["final_train_metrics"] = {key: value for key, value
                                     in scores["final_train_metrics"].items()
                                     if key != "windows_per_second"}
  return scores


def test_runs_in_worker_processes_give_the_results_of_runs_in_this_one(
    reproduction, monkeypatch, tmp_path):
  root, _ = reproduction
  preset = _fixture_smoke_preset(root, monkeypatch)
  wanted = ("ours", "behaviour_raw")
  here = [r for r in reproduce.plan_runs(preset, num_seeds=1, out_dir=root / "out")
          if r.row in wanted]
  runs = reproduce.plan_runs(preset, num_seeds=1, out_dir=tmp_path, only=wanted)
  ran, skipped = execution.execute_all(runs, workers=2)
  assert sorted(ran) == sorted(run.name for run in runs) and not skipped
  for run, reference in zip(runs, here):
    assert run.name == reference.name
    assert _scores(execution.load_results(run)) == _scores(execution.load_results(reference))
    # Each worker's run writes its progress and logs to its own file, not the terminal.
    assert (run.workdir / execution.LOG_FILE).stat().st_size > 0
  assert "train" in (runs[-1].workdir / execution.LOG_FILE).read_text()
  # Finished runs are skipped without starting a worker.
  assert execution.execute_all(runs, workers=2) == ([], [run.name for run in runs])


def test_the_runs_of_one_process_open_their_dataset_once_and_score_as_alone(
    reproduction, monkeypatch, tmp_path):
  root, _ = reproduction
  preset = _fixture_smoke_preset(root, monkeypatch)
  opened, open_dataset = [], shards.open_dataset
  monkeypatch.setattr(shards, "open_dataset",
                      lambda *args, **kwargs: opened.append(args) or open_dataset(*args, **kwargs))
  wanted = ("neural_standardised", "behaviour_swapped")
  shared = reproduce.plan_runs(preset, num_seeds=1, out_dir=tmp_path / "shared", only=wanted)
  assert len(execution.execute_all(shared, workers=1)[0]) == 2
  assert len(opened) == 1
  alone = reproduce.plan_runs(preset, num_seeds=1, out_dir=tmp_path / "alone", only=wanted)
  for run in alone:
    assert execution.execute(run)
  assert len(opened) == 3
  for run, reference in zip(shared, alone):
    assert _scores(execution.load_results(run)) == _scores(execution.load_results(reference))


def test_a_run_failing_in_a_worker_stops_the_reproduction_and_is_named(tmp_path):
  preset = presets.get_config("smoke")
  config = reproduce.fold_config(preset.training, 0)
  config.data.data_dir = str(tmp_path / "no_dataset_here")
  run = execution.Run("ours", execution.METHOD, 0, tmp_path / "ours" / "seed0", config)
  with pytest.raises(RuntimeError, match="ours seed 0 failed .its output: .*log.txt"):
    execution.execute_all([run], workers=2)
  assert not run.finished
  with pytest.raises(execution.SettingsError, match="--workers must be at least 1"):
    execution.execute_all([run], workers=0)


def test_the_workers_benchmark_imports_beside_the_reproduction():
  # Both define absl flags in one process; a flag defined twice would stop the benchmark.
  benchmark = importlib.import_module("benchmarks.reproduce_workers")
  assert callable(benchmark.main)


def test_the_cpu_preset_runs_two_at_once_on_a_cpu_and_one_on_an_accelerator(monkeypatch):
  cpu, smoke = presets.get_config("cpu"), presets.get_config("smoke")
  monkeypatch.setattr(os, "cpu_count", lambda: 2)
  assert execution.default_workers(cpu) == 2 and execution.default_workers(smoke) == 1
  monkeypatch.setattr(os, "cpu_count", lambda: 1)
  assert execution.default_workers(cpu) == 1
  monkeypatch.setattr(os, "cpu_count", lambda: 2)
  monkeypatch.setattr(execution.jax, "default_backend", lambda: "gpu")
  assert execution.default_workers(cpu) == 1


def test_a_swapped_pose_run_made_before_it_read_the_pool_stride_is_refused(
    reproduction, monkeypatch, tmp_path):
  root, _ = reproduction
  preset = _fixture_smoke_preset(root, monkeypatch)
  run = next(r for r in reproduce.plan_runs(preset, num_seeds=1, out_dir=root / "out")
             if r.row == "behaviour_swapped")
  assert not execution.execute(run)  # made by this code: reused
  # The same run as it was recorded before the row drew from `swap.pool_stride`'s pool.
  old = tmp_path / "behaviour_swapped"
  shutil.copytree(run.workdir, old)
  recorded = json.loads((old / execution.CONFIG_FILE).read_text())
  del recorded["config"]["swapped_pose_pool"]
  (old / execution.CONFIG_FILE).write_text(json.dumps(recorded))
  with pytest.raises(execution.SettingsError, match="swapped_pose_pool: absent .saved."):
    execution.execute(dataclasses.replace(run, workdir=old))


def test_train_steps_change_every_run_and_runs_of_another_length_are_refused(
    reproduction, monkeypatch):
  root, _ = reproduction
  longer = presets.with_train_steps(presets.get_config("smoke"), 40)
  for run in reproduce.plan_runs(longer, num_seeds=1, out_dir=root / "never_written"):
    if run.group != execution.REFERENCE:
      assert run.config.optim.num_train_steps == 40, run.name
      assert run.config.optim.warmup_steps == 4, run.name
  assert presets.get_config("smoke").training.optim.num_train_steps == 4  # a copy
  monkeypatch.setenv("NAR_HOME", str(root / "nar_home"))
  with pytest.raises(execution.SettingsError, match="optim.num_train_steps: 4 .saved. vs 40"):
    reproduce.reproduce("smoke", num_seeds=1, out_dir=root / "out", only=("ours",),
                        train_steps=40)
  with pytest.raises(execution.SettingsError, match="--train_steps: .* positive integer"):
    reproduce.reproduce("smoke", num_seeds=1, out_dir=root / "out", train_steps=0)


def test_overrides_change_ours_and_its_ablations_and_leave_the_baselines_alone():
  preset = presets.get_config("cpu")
  changed = presets.with_overrides(preset, {"swap.neural_probability": 0.5})
  runs = {(r.row, r.seed): r for r in reproduce.plan_runs(changed, num_seeds=1,
                                                          out_dir="/tmp/never_written")}
  before = {(r.row, r.seed): r for r in reproduce.plan_runs(preset, num_seeds=1,
                                                            out_dir="/tmp/never_written")}
  assert runs["ours", 0].config.swap.neural_probability == 0.5
  assert preset.training.swap.neural_probability == 0.0  # a copy
  # The neural swap's ablation is now switching it off.
  assert "no_neural_swap" in changed.ablations and "neural_swap_0.5" not in changed.ablations
  assert runs["no_neural_swap", 0].config.swap.neural_probability == 0.0
  for name in presets.baselines.BASELINES:
    assert runs[name, 0].config.to_dict() == before[name, 0].config.to_dict(), name
  with pytest.raises(ValueError, match="'swap.neural_prob', which is not a config field"):
    presets.with_overrides(preset, {"swap.neural_prob": 0.5})


def _parsed_overrides(argv):
  """The overrides `experiments.reproduce` reads from a command line of --config flags."""
  flag_values = flags.FlagValues()
  command_line = ["reproduce"] + list(argv)
  reproduce.define_config_flag(flag_values, argv=command_line)
  flag_values(command_line)
  return reproduce.config_overrides(flag_values)


@pytest.mark.parametrize("argv, expected", [
    (["--config.swap.neural_probability=0.5"], {"swap.neural_probability": 0.5}),
    (["--config.swap.probability=1", "--config.swap.mode=topk",
      "--config.swap.per_frame_target=true", "--config.optim.num_train_steps=7"],
     {"swap.probability": 1.0, "swap.mode": "topk", "swap.per_frame_target": True,
      "optim.num_train_steps": 7}),
    ([], {}),
])
def test_config_flags_parse_as_the_fields_types(argv, expected):
  parsed = _parsed_overrides(argv)
  assert parsed == expected
  assert [type(value) for value in parsed.values()] == [type(v) for v in expected.values()]


@pytest.mark.parametrize("argument", [
    "--config.swap.nope=1",                 # not a field
    "--config.optim.num_train_steps=1.5",   # an int field
    "--config.swap.per_frame_target=maybe",  # a bool field
])
def test_bad_config_flags_are_refused_when_the_command_line_is_parsed(argument):
  with pytest.raises((flags.Error, execution.SettingsError), match="nope|num_train_steps|"
                     "per_frame_target"):
    _parsed_overrides([argument])


def test_a_reproduction_with_an_unknown_field_stops_before_any_work(tmp_path, monkeypatch):
  monkeypatch.setenv("NAR_HOME", str(tmp_path / "home"))
  with pytest.raises(execution.SettingsError, match="'swap.nope', which is not a config field"):
    reproduce.reproduce("smoke", num_seeds=1, out_dir=tmp_path / "out",
                        overrides={"swap.nope": 1})
  assert not (tmp_path / "out").exists() and not (tmp_path / "home").exists()


def test_fields_added_later_name_config_fields():
  config = presets.method_config(presets.get_config("cpu"), "ours")
  for field in execution.FIELDS_ADDED_LATER:
    node = config
    for part in field.split("."):
      assert part in node, field
      node = node[part]


def test_the_reported_folds_are_not_the_folds_the_settings_were_chosen_on():
  animals = [f"animal{i}" for i in range(8)]  # the default dataset's count
  tuning = {pipeline.split_animals(animals, 2, seed)[1] for seed in range(3)}
  reported = [pipeline.split_animals(animals, 2, run.config.data.split_seed)[1]
              for run in reproduce.plan_runs(presets.get_config("cpu"), num_seeds=3,
                                             out_dir="/tmp/never_written")
              if run.row == "ours"]
  assert len(reported) == 3 and not tuning & set(reported)
  assert len(set(sum(reported, ()))) == 6  # three disjoint pairs


def test_the_plan_covers_every_method_ablation_and_fold():
  preset = presets.get_config("cpu")
  runs = reproduce.plan_runs(preset, num_seeds=3, out_dir="/tmp/never_written")
  rows = len(execution.REFERENCE_ROWS) + len(preset.methods)
  assert len(runs) == 3 * rows + len(preset.ablations) * preset.ablation_seeds
  assert set(preset.methods) == {"ours"} | set(presets.baselines.BASELINES)
  for run in runs:
    assert run.config.seed == run.seed
    assert run.config.data.split_seed == execution.REPORT_SPLIT_SEED_OFFSET + run.seed
  topk = next(r for r in runs if r.row == "swap_topk")
  assert topk.config.swap.mode == "topk" and preset.training.swap.mode == "exact"
  assert runs[0].seed == 0 and runs[-1].group == execution.ABLATION
  assert not any(r.group == execution.ABLATION for r in reproduce.plan_runs(
      preset, num_seeds=1, out_dir="/tmp/never_written", skip_ablations=True))
  assert presets.get_config("cpu").training.optim.num_train_steps == presets.CPU_TRAIN_STEPS


@pytest.mark.parametrize("arguments, message", [
    (dict(num_seeds=0), "--seeds must be at least 1"),
    (dict(dataset="nope"),
     "unknown --dataset 'nope'; choose one of "
     "\\['locomotion', 'locomotion_calibrated', 'pose'\\]"),
    (dict(dataset="locomotion"), "the preset was made for --dataset=pose, not locomotion"),
    (dict(only=["ours", "nope"]), "--only names unknown rows \\['nope'\\]"),
    (dict(only=[]), "--only is empty"),
])
def test_bad_arguments_say_what_to_pass(arguments, message):
  arguments = {"num_seeds": 1, "dataset": "pose", "only": None, **arguments}
  with pytest.raises(execution.SettingsError, match=message):
    reproduce.check_arguments(presets.get_config("smoke"), **arguments)
  with pytest.raises(ValueError, match="unknown preset 'gpu'"):
    presets.get_config("gpu")
  with pytest.raises(ValueError, match="'swap.probabilty', which is not a config field"):
    common.apply_overrides(presets.get_config("smoke").training, {"swap.probabilty": 1.0})


def test_the_command_line_rejects_bad_flags_before_any_work(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "experiments.reproduce", "--preset=smoke", "--seeds=0",
       f"--out={tmp_path / 'out'}"], cwd=REPO_ROOT, capture_output=True, text=True,
      env={**os.environ, "NAR_HOME": str(tmp_path / "home"), "JAX_PLATFORMS": "cpu"},
      check=False)
  assert result.returncode != 0
  assert "--seeds must be at least 1" in result.stderr
  assert not (tmp_path / "out").exists() and not (tmp_path / "home").exists()


def test_paper_results_hold_the_seed_numbers():
  assert paper_results.paper_accuracy("ours", protocol_lib.ACTION_MULTI_ANIMAL, 1.0) == 61.9
  assert paper_results.paper_accuracy("simclr", protocol_lib.ACTION_SINGLE_ANIMAL, 0.5) == 54.3
  assert paper_results.paper_accuracy("behaviour_raw", protocol_lib.IDENTITY, 1.0) == 89.7
  assert paper_results.paper_accuracy("no_swap", protocol_lib.IDENTITY, 1.0) is None
  assert paper_results.paper_accuracy("behaviour_raw", protocol_lib.ACTION_MULTI_ANIMAL,
                                      1.0) is None
  assert set(paper_results.ACTION_ACCURACY) | set(paper_results.IDENTITY_ACCURACY) <= set(
      tables.ROW_LABELS)


@pytest.fixture(scope="module")
def locomotion_reproduction(tmp_path_factory):
  """A smoke reproduction on the tiny locomotion dataset, one seed (simulated under NAR_HOME)."""
  root = tmp_path_factory.mktemp("reproduce_locomotion")
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("NAR_HOME", str(root / "nar_home"))
    summary = reproduce.reproduce("smoke", num_seeds=1, out_dir=root / "out",
                                  dataset="locomotion", only=LOCOMOTION_ONLY)
  return root / "out", summary


def _cells(table: str, label: str) -> list[str]:
  line = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
  return [c.strip() for c in line.strip("|").split("|")][1:]


def test_locomotion_tables_list_every_row_without_paper_numbers(locomotion_reproduction):
  out, summary = locomotion_reproduction
  assert len(summary["ran"]) == len(LOCOMOTION_ONLY) and not summary["skipped"]
  table1, table2 = (out / "table1.md").read_text(), (out / "table2.md").read_text()
  for table, rows in ((table1, tables.ACTION_ROWS), (table2, tables.IDENTITY_ROWS)):
    assert table.splitlines()[0].endswith(presets.DATASET_TITLES["locomotion"])
    assert "The paper has no benchmark of this dataset" in table
    assert "| paper |" not in table and paper_results.SOURCE not in table
    for row in rows:
      assert f"| {tables.row_label(row)} |" in table, row
  # Every row that ran has a score in every column (the raw ROI traces, of 3-9 ROIs per
  # animal, padded); the others show "–".
  for row in ("neural_raw", "regression_recurrent", "ours"):
    cells = _cells(table1, tables.row_label(row))
    assert tables.MISSING not in cells and cells[-1] == "1", row
  assert tables.MISSING not in _cells(table2, "Behaviour (linear)")
  assert _cells(table1, "SimCLR")[:-1] == [tables.MISSING] * 4
  with (out / "summary.csv").open() as f:
    reader = csv.DictReader(f)
    assert not [c for c in reader.fieldnames if c.endswith("_paper")]
    summary_rows = {r["row"]: r for r in reader}
  assert summary_rows["regression_recurrent"]["runs"] == "1"
  ablation = (out / "ablation.md").read_text()
  assert presets.DATASET_TITLES["locomotion"] in ablation.splitlines()[0]
  assert tables.MISSING not in _cells(ablation, "no_pose_augment")
  assert _cells(ablation, "no_neural_augment")[1:-1] == [tables.MISSING] * 6
  assert "`locomotion`" in (out / "README.md").read_text()


def test_each_preset_has_a_training_config_per_dataset():
  cpu = presets.get_config("cpu", "locomotion")
  assert cpu.dataset == "locomotion" and cpu.training.data.neural_key == "roi_traces"
  assert cpu.training.optim.num_train_steps == presets.LOCOMOTION_CPU_TRAIN_STEPS
  assert cpu.training.adapt.num_steps == presets.LOCOMOTION_CPU_ADAPT_STEPS
  assert presets.get_config("tpu", "locomotion").training.model.dtype == "bfloat16"
  assert presets.get_config("smoke", "locomotion").dataset_size == "tiny"
  assert presets.DATASETS["locomotion"]("default").name == "locomotion"  # locomotion_cpu's
  assert presets.get_config("cpu").dataset == "pose"
  with pytest.raises(ValueError, match="unknown dataset 'nope'"):
    presets.get_config("cpu", "nope")


def test_ours_own_settings_are_ablated_only_where_ours_has_them():
  pose = presets.get_config("cpu").ablations
  ours = presets.get_config("cpu").training
  assert pose["no_behaviour_residual"] == {"behaviour_residual_weight": 0.0}
  assert pose["no_neural_view"] == {"neural_view_weight": 0.0}
  assert pose[f"features_{ours.model.baseline_features}"] == {
      "model.features": ours.model.baseline_features}
  # Without neural augmentations there is no second view for the neural-view term.
  assert pose["no_neural_augment"] == {"augment.neural_enabled": False,
                                       "neural_view_weight": 0.0}
  locomotion = presets.get_config("cpu", "locomotion").ablations
  assert not any(name.startswith(("features_", "no_behaviour_residual", "no_neural_view"))
                 for name in locomotion)
  assert locomotion["no_neural_augment"] == {"augment.neural_enabled": False}


def _multi_animal_records(scores: dict[str, list[float]], fraction: float = 1.0) -> list[dict]:
  column = tables.score_column(protocol_lib.ACTION_MULTI_ANIMAL, fraction, "accuracy")
  return [{"row": row, "group": "method", "seed": seed, column: value}
          for row, values in scores.items() for seed, value in enumerate(values)
          if value is not None]


def test_leads_are_paired_by_fold_and_clear_only_beyond_both_stds():
  records = _multi_animal_records({
      "ours": [40.0, 44.0, 42.0],
      "simclr": [35.0, 39.0, 37.0],        # 5 points behind on every fold
      "no_swap": [41.0, 43.0, 40.0],       # within a std of Ours
      "behavenet": [30.0, 50.0, None],     # one fold unfinished, a large spread
  })
  leads = report.multi_animal_leads(records)
  assert set(leads) == {"simclr", "no_swap", "behavenet"}
  simclr = leads["simclr"][1.0]
  assert simclr["lead"] == pytest.approx(5.0) and simclr["lead_std"] == pytest.approx(0.0)
  assert simclr["ahead"] == 3 and simclr["folds"] == 3 and simclr["clear"]
  no_swap = leads["no_swap"][1.0]
  assert no_swap["lead"] == pytest.approx(2 / 3) and no_swap["ahead"] == 2
  assert not no_swap["clear"]
  # Compared on the two folds both finished: Ours 42 ± 2 there, BehaveNet-style 40 ± 10.
  behavenet = leads["behavenet"][1.0]
  assert behavenet["folds"] == 2 and behavenet["lead"] == pytest.approx(2.0)
  assert behavenet["reference_mean"] == pytest.approx(42.0)
  assert behavenet["std"] == pytest.approx(10.0) and not behavenet["clear"]
  assert 0.5 not in leads["simclr"]  # the records have no score at 0.5
  table = report.lead_table(records)
  assert "| SimCLR | – | – | – | +5.0 ± 0.0 | 3/3 | yes |" in table
  assert ("the best other row is Multimodal contrastive, no swap (41.3 ± 1.2 %), Ours "
          "42.0 ± 1.6 %: a lead of +0.7 points" in table), table
  assert "not more than the std (ahead on 2 of 3 folds)" in table


def test_a_lead_table_without_ours_says_so():
  records = _multi_animal_records({"simclr": [35.0, 39.0]})
  assert report.multi_animal_leads(records) == {}
  assert report.lead_table(records).startswith("No finished run of Ours")


def test_folds_name_each_seed_s_held_out_animals():
  preset = presets.get_config("smoke")
  folds = [("fly_a", "fly_b"), ("fly_c",)]
  runs = reproduce.plan_runs(preset, num_seeds=2, out_dir="/tmp/never_written", folds=folds)
  for run in runs:
    assert run.config.data.held_out_animals == folds[run.seed], run.name
  assert {run.seed for run in runs} == {0, 1}
  with pytest.raises(execution.SettingsError, match="2 folds for 3 seeds"):
    reproduce.plan_runs(preset, num_seeds=3, out_dir="/tmp/never_written", folds=folds)
  assert reproduce.parse_folds("fly_a, fly_b;fly_c") == [("fly_a", "fly_b"), ("fly_c",)]
  assert reproduce.parse_folds(None) is None
  with pytest.raises(execution.SettingsError, match="empty fold"):
    reproduce.parse_folds("fly_a;;fly_b")


def test_a_fold_naming_an_unknown_animal_stops_before_any_run(tmp_path, monkeypatch):
  monkeypatch.setenv("NAR_HOME", str(tmp_path / "home"))
  with pytest.raises(execution.SettingsError, match="--folds gives 1 folds but --seeds=2"):
    reproduce.reproduce("smoke", num_seeds=2, out_dir=tmp_path / "out", folds=[("fly_a",)])
  with pytest.raises(execution.SettingsError, match=r"fold 0 names \['fly_nobody'\], which are "
                     r"not animals of the dataset; its animals: \["):
    reproduce.reproduce("smoke", num_seeds=1, out_dir=tmp_path / "out",
                        folds=[("fly_nobody",)])
  assert not (tmp_path / "out").exists()
