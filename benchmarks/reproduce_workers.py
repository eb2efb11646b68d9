r"""Wall time of a slice of the cpu reproduction, run by run in one process and two at once.

  python -m benchmarks.reproduce_workers [--rows=ours,regression_conv,neural_raw] [--run_seeds=1]
      [--run_steps=300] [--run_preset=cpu]

Runs the same runs of `experiments.reproduce`'s cpu preset (the rows `--rows`, seeds 0 to
`--run_seeds` - 1, `--run_steps` steps each; `--run_preset=smoke --run_steps=4` checks it in a
minute; the flags are not `experiments.reproduce`'s, which this module imports) twice into
fresh folders: with `workers=1` (every run in this process, in order, as on an accelerator) and
with `workers=2` (two spawned processes, the cpu preset's default on a CPU). Prints the wall
time of each, their ratio, and whether every run scored the same both ways (bar: identical
probe scores; the runs are deterministic). The persistent compilation cache is switched off
so that neither contender reuses the other's programs; the preset's dataset is simulated and
built first if absent (not timed).
"""

import os
import pathlib
import tempfile
import time

from absl import app
from absl import flags
import jax

from experiments import execution
from experiments import reproduce
from experiments.configs import reproduce as presets
from nar import logs

_PRESET = flags.DEFINE_enum(
    "run_preset", "cpu", ["cpu", "smoke"],
    "Preset of experiments/configs/reproduce.py (smoke: a check of the script).")
_ROWS = flags.DEFINE_list("rows", ["ours", "regression_conv", "neural_raw"],
                          "Rows of the cpu preset to run (methods, references, ablations).")
_SEEDS = flags.DEFINE_integer("run_seeds", 1, "Seeds (held-out folds) of every row.")
_TRAIN_STEPS = flags.DEFINE_integer(
    "run_steps", 300, "Training steps of every run (the cpu preset's: CPU_TRAIN_STEPS).")


def _probe_scores(results: dict) -> dict:
  """A run's probe scores (its timings differ between any two executions)."""
  return results["probes"]


def _time_runs(preset: presets.Preset, out_dir: pathlib.Path, workers: int
               ) -> tuple[float, dict[str, dict]]:
  """Seconds to execute the benchmark's runs with `workers` at once, and their scores."""
  runs = reproduce.plan_runs(preset, num_seeds=_SEEDS.value, out_dir=out_dir,
                             only=_ROWS.value, skip_ablations=False)
  start = time.perf_counter()
  ran, skipped = execution.execute_all(runs, workers=workers)
  seconds = time.perf_counter() - start
  if skipped or len(ran) != len(runs):
    raise RuntimeError(f"expected {len(runs)} fresh runs, ran {len(ran)}, skipped {skipped}")
  return seconds, {run.name: _probe_scores(execution.load_results(run)) for run in runs}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  logs.quiet_checkpoint_logs()
  # Neither contender may read a program the other compiled from the persistent cache: off
  # here, and in the spawned workers, which inherit this environment.
  jax.config.update("jax_enable_compilation_cache", False)
  os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
  preset = presets.with_train_steps(presets.get_config(_PRESET.value), _TRAIN_STEPS.value)
  reproduce.check_arguments(preset, num_seeds=_SEEDS.value, dataset="pose", only=_ROWS.value)
  reproduce.prepare_dataset(preset)
  num_runs = len(reproduce.plan_runs(preset, num_seeds=_SEEDS.value, out_dir="unused",
                                     only=_ROWS.value))
  print(f"{num_runs} runs of the {preset.name} preset ({', '.join(_ROWS.value)}; "
        f"{_SEEDS.value} seeds; {_TRAIN_STEPS.value} steps each) on {os.cpu_count()} cores")
  with tempfile.TemporaryDirectory() as root:
    root = pathlib.Path(root)
    serial_seconds, serial_scores = _time_runs(preset, root / "one_at_once", workers=1)
    print(f"  one at a time, in this process:   {serial_seconds:7.1f} s", flush=True)
    parallel_seconds, parallel_scores = _time_runs(preset, root / "two_at_once", workers=2)
    print(f"  two at once, in worker processes: {parallel_seconds:7.1f} s")
  same = serial_scores == parallel_scores
  print(f"speed-up of two at once: {serial_seconds / parallel_seconds:.2f}x")
  print(f"same probe scores both ways: {same}  {'PASS' if same else 'FAIL'}")
  if not same:
    differing = [name for name in serial_scores if serial_scores[name] != parallel_scores[name]]
    print(f"  differing runs: {', '.join(differing)}")


if __name__ == "__main__":
  app.run(main)
