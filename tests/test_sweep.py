"""`experiments.sweep`: Ours against no-swap over training-animal counts and simulator knobs,
and the reproduction's calibration and objective-switch tables on the calibrated preset."""

import json
import pathlib
import subprocess
import sys

import pytest

from experiments import execution
from experiments import reproduce
from experiments import sweep

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _sweep(tmp_path, *flags):
  return subprocess.run(
      [sys.executable, "-m", "experiments.sweep", "--preset=smoke",
       "--dataset=locomotion_calibrated", "--seeds=1", "--workers=1",
       f"--out={tmp_path / 'out'}", *flags], cwd=REPO_ROOT, capture_output=True, text=True,
      check=False, timeout=900, env={"JAX_PLATFORMS": "cpu", "HOME": str(tmp_path),
                                     "PATH": "/usr/bin:/bin"})


def test_the_sweep_trains_both_rows_per_setting_on_nested_animal_subsets(tmp_path):
  result = _sweep(tmp_path, "--training_animals=2,3", "--knob=speed_scale_std=0.0")
  assert result.returncode == 0, result.stderr[-3000:]
  table = (tmp_path / "out" / "sweep.md").read_text()
  for setting in ("training_animals=2", "training_animals=3", "speed_scale_std=0.0"):
    assert f"| {setting} | 1 |" in table, table
  runs = tmp_path / "out" / "runs"
  animals = {count: json.loads((runs / f"training_animals_{count}" / row / "seed0" /
                                execution.RESULTS_FILE).read_text())["training_animals"]
             for count in (2, 3) for row in sweep.ROWS}
  two = json.loads((runs / "training_animals_2" / "ours" / "seed0" /
                    execution.RESULTS_FILE).read_text())
  assert len(two["training_animals"]) == 2
  assert set(two["training_animals"]) < set(animals[3]) and len(animals[3]) == 3
  csv_lines = (tmp_path / "out" / "sweep.csv").read_text().splitlines()
  assert len(csv_lines) == 1 + 3 * len(sweep.ROWS)


@pytest.mark.parametrize("flags,message", [
    (("--training_animals=1",), "1 is not in [2, 3]"),
    (("--knob=no_such_field=1",), "--set takes NAME=VALUE with NAME a field"),
    ((), "nothing to sweep"),
])
def test_bad_sweeps_are_refused_before_any_run(tmp_path, flags, message):
  result = _sweep(tmp_path, *flags)
  assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]
  assert not (tmp_path / "out" / "runs").exists()


def test_a_calibrated_reproduction_writes_its_calibration_and_objective_tables(
    tmp_path, monkeypatch):
  monkeypatch.setenv("NAR_HOME", str(tmp_path / "nar_home"))
  reproduce.reproduce("smoke", num_seeds=1, out_dir=tmp_path / "out",
                      dataset="locomotion_calibrated",
                      only=["ours", "no_swap", "neural_standardised", "same_animal_negatives"])
  calibration_text = (tmp_path / "out" / "calibration.md").read_text()
  assert "identity from standardised windows" in calibration_text
  objectives = (tmp_path / "out" / "objectives.md").read_text()
  assert "| Ours | 1 |" in objectives and "| same_animal_negatives | 1 |" in objectives
  # A switch that did not run is not in the table.
  assert "partner_positives" not in objectives.split("|---|")[-1]
  readme = (tmp_path / "out" / "README.md").read_text()
  assert "The simulated dataset against the real set" in readme
