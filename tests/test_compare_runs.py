"""`experiments.compare_runs`: equal results compare equal whatever the run's environment;
any changed number, missing file or changed table line is reported."""

import json
import pathlib

import numpy as np
import pytest

from experiments import compare_runs


def _write_run(folder: pathlib.Path, *, accuracy: float, wall: float, data_dir: str,
               features: np.ndarray, table_line: str = "| Ours | 54.6 |") -> pathlib.Path:
  folder.mkdir(parents=True)
  (folder / "eval.json").write_text(json.dumps({
      "probes": {"identity": {"1.0": {"accuracy": {"mean": accuracy}}}},
      "wall_seconds": {"total": wall}, "train_steps": 4}))
  (folder / "config.json").write_text(json.dumps({"data": {"data_dir": data_dir}, "seed": 0}))
  (folder / "metrics.jsonl").write_text(
      json.dumps({"step": 2, "loss": 3.5, "windows_per_second": wall}) + "\n")
  (folder / "runs.csv").write_text(f"row,accuracy,wall_seconds\nours,{accuracy},{wall}\n")
  (folder / "table1.md").write_text(f"| Method | Multi |\n{table_line}\n")
  np.savez(folder / "features.npz", features=features)
  checkpoints = folder / "checkpoints"
  checkpoints.mkdir()
  (checkpoints / "state.json").write_text(json.dumps({"written_at": wall}))
  return folder


def test_runs_that_differ_only_in_time_and_place_compare_equal(tmp_path):
  features = np.arange(6, dtype=np.float32).reshape(2, 3)
  a = _write_run(tmp_path / "a", accuracy=20.5, wall=3.0, data_dir="/x", features=features)
  b = _write_run(tmp_path / "b", accuracy=20.5, wall=9.0, data_dir="/y", features=features)
  compared, problems = compare_runs.compare(a, b)
  assert problems == []
  assert compared == 6  # checkpoints are not compared


@pytest.mark.parametrize("change, expected", [
    (dict(accuracy=20.6), "eval.json: probes.identity.1.0.accuracy.mean: 20.5 != 20.6"),
    (dict(features=np.ones((2, 3), np.float32)), "features.npz: features: 5 of 6 values differ"),
    (dict(table_line="| Ours | 54.7 |"), "table1.md: line 2"),
])
def test_a_changed_result_is_reported_with_its_file_and_field(tmp_path, change, expected):
  base = dict(accuracy=20.5, wall=3.0, data_dir="/x",
              features=np.arange(6, dtype=np.float32).reshape(2, 3))
  a = _write_run(tmp_path / "a", **base)
  b = _write_run(tmp_path / "b", **{**base, **change})
  _, problems = compare_runs.compare(a, b)
  assert any(line.startswith(expected) for line in problems), problems


def test_a_result_file_in_one_folder_only_is_a_difference(tmp_path):
  features = np.zeros((1, 1))
  a = _write_run(tmp_path / "a", accuracy=1.0, wall=1.0, data_dir="/x", features=features)
  b = _write_run(tmp_path / "b", accuracy=1.0, wall=1.0, data_dir="/x", features=features)
  (b / "table1.md").unlink()
  assert compare_runs.compare(a, b)[1] == ["table1.md: only in a"]


def test_tolerance_accepts_float_noise_only(tmp_path):
  one, two = tmp_path / "one.json", tmp_path / "two.json"
  one.write_text(json.dumps({"loss": 1.0}))
  two.write_text(json.dumps({"loss": 1.0 + 1e-9}))
  assert compare_runs.compare(one, two)[1]
  assert not compare_runs.compare(one, two, tolerance=1e-6)[1]

