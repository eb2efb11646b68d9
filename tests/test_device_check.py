"""The prepared device check runs every accelerator benchmark and writes one JSON."""

import json
import os
import pathlib
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_device_check_runs_every_benchmark_into_one_json(tmp_path):
  out = tmp_path / "check.json"
  result = subprocess.run(
      ["bash", "benchmarks/device_check.sh", str(out)], cwd=REPO_ROOT, capture_output=True,
      text=True, check=False, timeout=900,
      env={**os.environ, "SMOKE": "1", "PYTHON": sys.executable, "JAX_PLATFORMS": "cpu"})
  assert result.returncode == 0, result.stderr[-4000:]
  report = json.loads(out.read_text())
  assert report["platform"] == "cpu" and report["jax"]
  benchmarks = report["benchmarks"]
  assert sorted(benchmarks) == ["embed", "swap", "train_step_locomotion",
                                "train_step_swap_gpu"]
  assert all(b["returncode"] == 0 and b["lines"] for b in benchmarks.values())
  step = benchmarks["train_step_locomotion"]["figures"]
  assert step["config"] == "locomotion_cpu" and step["flops_per_step"] > 0
  assert set(step["swap_overhead"]) >= {"the config's exact swap (kernel cells)"}
  assert any("MFU" in line for line in benchmarks["train_step_swap_gpu"]["lines"])
