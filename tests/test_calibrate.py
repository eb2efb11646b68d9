"""The calibrated locomotion preset and the command that compares it with the real set."""

import json
import subprocess
import sys

import numpy as np
import pytest

from experiments import calibration
from experiments.configs import reproduce as presets
from nar import simulation
from nar.data import recording
from nar.simulation import locomotion

REPO_ROOT = calibration.__file__.rsplit("/experiments/", 1)[0]


def test_unannotated_bouts_keep_the_behaviour_and_label_about_their_share():
  base = locomotion.calibrated_config(num_animals=2, trials_per_animal=1, trial_seconds=300.0,
                                      min_rois=4, max_rois=4, unlabelled_bout_fraction=0.0)
  skipped = locomotion.calibrated_config(num_animals=2, trials_per_animal=1,
                                         trial_seconds=300.0, min_rois=4, max_rois=4)
  plain = simulation.simulate_dataset(base, seed=0).recordings
  partly = simulation.simulate_dataset(skipped, seed=0).recordings
  for a, b in zip(plain, partly):
    np.testing.assert_array_equal(a.behaviour, b.behaviour)
    np.testing.assert_array_equal(a.roi_traces, b.roi_traces)
    kept = b.labels != recording.UNLABELLED
    np.testing.assert_array_equal(a.labels[kept], b.labels[kept])
    assert (a.labels != recording.UNLABELLED).all()
  share = np.mean(np.concatenate([r.labels for r in partly]) == recording.UNLABELLED)
  assert 0.25 < share < 0.55


def test_the_baseline_percentile_of_every_roi_is_zero():
  config = locomotion.calibrated_config(num_animals=1, trials_per_animal=1, trial_seconds=60.0,
                                        min_rois=5, max_rois=5)
  traces = simulation.simulate_dataset(config, seed=1).recordings[0].roi_traces
  np.testing.assert_allclose(np.percentile(traces, 10.0, axis=0), 0.0, atol=1e-5)


def test_bad_settings_are_refused():
  with pytest.raises(ValueError, match="unlabelled_bout_fraction"):
    locomotion.calibrated_config(unlabelled_bout_fraction=1.0)
  with pytest.raises(ValueError, match="dff_baseline_percentile"):
    locomotion.calibrated_config(dff_baseline_percentile=120.0)
  base = presets.DATASETS["locomotion_calibrated"]("tiny")
  with pytest.raises(ValueError, match="--set takes NAME=VALUE"):
    calibration.with_settings(base, ["no_such_field=1"])


def test_the_command_prints_every_statistic_beside_the_real_one(tmp_path):
  out = tmp_path / "rows.json"
  result = subprocess.run(
      [sys.executable, "-m", "experiments.calibrate", "--size=tiny", f"--json={out}",
       "--set=neuropil=1.0"], cwd=REPO_ROOT, capture_output=True, text=True, check=False,
      timeout=600, env={"JAX_PLATFORMS": "cpu", "HOME": str(tmp_path),
                        "PATH": "/usr/bin:/bin"})
  assert result.returncode == 0, result.stderr[-3000:]
  rows = {row["statistic"]: row for row in json.loads(out.read_text())}
  assert sorted(rows) == sorted(calibration.REAL)
  shares = sum(rows[name]["simulated"] for name in ("stand", "forward", "turn_left",
                                                     "turn_right"))
  assert abs(shares - 100) < 1e-6
  assert all(0 <= row["simulated"] <= 100 for row in rows.values())
  assert "identity from standardised windows" in result.stdout
