r"""Embedding's throughput beside the training step's, and its memory as the trials grow.

  python -m benchmarks.embed [--steps=60] [--trial_seconds=60]

Simulates the locomotion preset at `locomotion_cpu` shapes (8 animals, 15-40 ROIs each,
ball velocities) twice: 1 trial per animal, and 4 (the second holds the first's trials and
three more per animal). Trains `locomotion_cpu` for `--steps` steps on the 4x set, then embeds
each set with `nar.embed` (hop 1: every valid window) in a fresh process of its own, and
prints, measured in this one run on this machine:
  - the training step's windows/s (after compilation, input pipeline included) and
    embedding's windows/s (after compilation), and their ratio (bar: >= 10x on CPU);
  - each embedding process's peak resident memory, and the ratio 4x / 1x (bar: flat, <= 1.1).
"""

import dataclasses
import json
import multiprocessing
import os
import resource
import tempfile

from absl import app
from absl import flags

_STEPS = flags.DEFINE_integer("steps", 60, "Training steps of the run that embeds.")
_TRIAL_SECONDS = flags.DEFINE_float("trial_seconds", 60.0, "Seconds of a simulated trial.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 1024, "Windows per embedding call.")


def _build(recordings, data_dir: str, name: str) -> str:
  from nar.data import builder  # pylint: disable=g-import-not-at-top
  return builder.build_dataset(recordings, data_dir, config_name=name)


def _embed_in_child(workdir: str, dataset_dir: str, out_dir: str, batch_size: int,
                    results) -> None:
  import nar  # pylint: disable=g-import-not-at-top
  summary = nar.embed(nar.load_run(workdir), dataset_dir, out_dir=out_dir,
                      batch_size=batch_size, progress=False)
  results.put({"windows_per_second": summary["windows_per_second"],
               "num_windows": summary["num_windows"], "num_trials": summary["num_trials"],
               "peak_rss_mib": _peak_rss_mib()})


def _peak_rss_mib() -> float:
  """This process's peak resident memory since it started its program.

  Linux's `VmHWM` belongs to the process's address space, which `exec` replaces; `ru_maxrss`
  would also count the parent's memory at the fork that started it.
  """
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024  # kB
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _embed(workdir: str, dataset_dir: str, out_dir: str, batch_size: int) -> dict:
  context = multiprocessing.get_context("spawn")  # a fresh process: its own peak memory
  results = context.Queue()
  process = context.Process(target=_embed_in_child,
                            args=(workdir, dataset_dir, out_dir, batch_size, results))
  process.start()
  result = results.get()
  process.join()
  return result


def main(argv):
  del argv
  from experiments.configs import locomotion_cpu  # pylint: disable=g-import-not-at-top
  from nar import simulation  # pylint: disable=g-import-not-at-top
  from nar import train  # pylint: disable=g-import-not-at-top
  root = tempfile.mkdtemp(prefix="nar_embed_benchmark_")
  config = simulation.LocomotionConfig(trials_per_animal=4, trial_seconds=_TRIAL_SECONDS.value)
  recordings = simulation.simulate_dataset(config, seed=0).recordings
  first_trials = {}
  for rec in recordings:
    first_trials.setdefault(rec.animal_id, rec)
  data_dir = os.path.join(root, "tfds")
  one_x = _build(list(first_trials.values()), data_dir, "one_x")
  four_x = _build(recordings, data_dir, "four_x")

  run_config = locomotion_cpu.get_config()
  run_config.data.data_dir, run_config.data.name = data_dir, "four_x"
  run_config.data.simulate_if_missing = False
  run_config.optim.num_train_steps = _STEPS.value
  run_config.optim.warmup_steps = min(run_config.optim.warmup_steps, _STEPS.value // 2)
  run_config.log_every_steps = _STEPS.value
  run_config.checkpoint_every_steps = _STEPS.value
  run_config.adapt.num_steps = 20
  workdir = os.path.join(root, "run")
  results = train.train_and_evaluate(run_config, workdir)
  step_rate = results["final_train_metrics"]["windows_per_second"]

  embedded = {name: _embed(workdir, path, os.path.join(root, f"embeddings_{name}"),
                           _BATCH_SIZE.value)
              for name, path in (("1x", one_x), ("4x", four_x))}
  print(f"training step (locomotion_cpu, batch {run_config.optim.global_batch_size}): "
        f"{step_rate:.0f} windows/s")
  for name, result in embedded.items():
    print(f"embed {name}: {result['num_trials']} trials, {result['num_windows']} windows, "
          f"{result['windows_per_second']:.0f} windows/s, peak memory "
          f"{result['peak_rss_mib']:.0f} MiB")
  ratio = embedded["4x"]["windows_per_second"] / step_rate
  memory = embedded["4x"]["peak_rss_mib"] / embedded["1x"]["peak_rss_mib"]
  print(f"embed / training step: {ratio:.1f}x (bar: >= 10x) -> "
        f"{'met' if ratio >= 10 else 'NOT met'}")
  print(f"peak memory 4x / 1x trials: {memory:.2f} (bar: <= 1.10) -> "
        f"{'met' if memory <= 1.10 else 'NOT met'}")
  print(json.dumps({"step_windows_per_second": step_rate, "embed": embedded,
                    "ratio": ratio, "memory_ratio": memory,
                    "config": dataclasses.asdict(config)}, default=str))


if __name__ == "__main__":
  app.run(main)
