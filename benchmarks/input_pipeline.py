r"""Throughput of the input pipeline on the default dataset.

  python -m benchmarks.input_pipeline [--batch_size=64] [--num_batches=40] [--loader_workers=0,2]
      [--setup_folds=3]

Prints windows/s and the time per window for: cutting windows one by one from the shards
with a cold cache (the reference), the same with every neural frame preloaded (what training
sees on a dataset that fits `data.neural_cache_mb`), reading them a batch at a time
(`WindowSource.read_batch`, what the loader does), and the grain loader that training uses,
with 0 and 2 worker processes (workers start with empty caches; timed after each has
delivered a batch). The dataset is simulated and built first if absent (see
`data_prep.default_dataset`).

Then a run's input set-up (`train.create_input` with the cpu reproduction's Ours config, one
held-out fold per `--setup_folds`): opening the dataset for each run (the reference: preload,
behaviour features, normalisers, windows) against one `shards.DatasetCache` shared by the
runs of a process, as `experiments.reproduce` does (its first run opens and preloads).
"""

import time

from absl import app
from absl import flags
import numpy as np

from data_prep import default_dataset
from experiments import reproduce
from experiments.configs import reproduce as presets
from nar import train
from nar.data import pipeline
from nar.data import shards
from nar.data import windows

_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Windows per batch.")
_NUM_BATCHES = flags.DEFINE_integer("num_batches", 40, "Batches timed per configuration.")
_LOADER_WORKERS = flags.DEFINE_list("loader_workers", ["0", "2"], "grain worker counts to time.")
_SETUP_FOLDS = flags.DEFINE_integer("setup_folds", 3, "Runs (held-out folds) whose input "
                                    "set-up is timed each way.")


def _time_loader(loader, num_batches: int, warmup_batches: int = 1) -> float:
  """Windows per second over `num_batches` batches, after `warmup_batches` (one per worker
  process, so that every worker has started before the clock does)."""
  iterator = iter(loader)
  for _ in range(warmup_batches):
    next(iterator)
  start = time.perf_counter()
  count = 0
  for _ in range(num_batches):
    count += len(next(iterator)["label"])
  return count / (time.perf_counter() - start)


def main(argv):
  del argv
  dataset = shards.open_dataset(default_dataset.ensure_dataset())
  spec = windows.WindowSpec()
  training, _ = pipeline.split_animals(dataset.animals, 2, seed=0)
  index = pipeline.select_windows(dataset, spec, animals=training,
                                        drop_unlabelled=True, drop_classes=("resting",))
  normalizer = pipeline.fit_pose_normalizer(dataset, training)
  source = pipeline.WindowSource(dataset, index, spec, normalizer)
  sample = source[0]
  print(f"dataset: {dataset.path}")
  print(f"training windows: {len(source)}; one window: " + ", ".join(
      f"{k} {tuple(v.shape)}" for k, v in sample.items() if np.ndim(v)))

  order = np.random.default_rng(0).permutation(len(source))[:_BATCH_SIZE.value * 10]

  def direct_rate() -> float:
    start = time.perf_counter()
    for item in order:
      source[int(item)]
    return len(order) / (time.perf_counter() - start)

  cold = direct_rate()
  start = time.perf_counter()
  preloaded = dataset.preload_neural(progress=False)
  print(f"preloading {dataset.neural_bytes() / 2**20:.0f} MiB of neural frames: "
        f"{time.perf_counter() - start:.1f} s" + ("" if preloaded else " (did not fit)"))
  warm = direct_rate()
  start = time.perf_counter()
  for batch in np.split(order, 10):
    source.read_batch(batch)
  batched = len(order) / (time.perf_counter() - start)
  print(f"{'direct reads, cold (reference)':34s} {cold:9.0f} windows/s  "
        f"{1e3 / cold:7.3f} ms/window")
  for name, rate in (("direct reads, cache warm", warm), ("batch reads, cache warm", batched)):
    print(f"{name:34s} {rate:9.0f} windows/s  {1e3 / rate:7.3f} ms/window"
          f"  ({rate / cold:.2f}x reference)")
  for workers in map(int, _LOADER_WORKERS.value):
    loader = pipeline.make_loader(source, batch_size=_BATCH_SIZE.value, train=True,
                                        seed=0, worker_count=workers)
    rate = _time_loader(loader, _NUM_BATCHES.value, warmup_batches=max(workers, 1))
    cache = "cache warm" if workers == 0 else "cache per worker, cold"
    print(f"{f'grain loader, {workers} workers':34s} {rate:9.0f} windows/s  "
          f"{1e3 / rate:7.3f} ms/window  ({rate / cold:.2f}x reference; {cache})")
  _time_run_setup()


def _time_run_setup() -> None:
  """Prints the seconds of `train.create_input` per run, opened per run and shared."""
  preset = presets.get_config("cpu")
  reproduce.prepare_dataset(preset)
  configs = [reproduce.fold_config(presets.method_config(preset, presets.OURS), fold)
             for fold in range(_SETUP_FOLDS.value)]

  def seconds_per_run(datasets: shards.DatasetCache | None) -> list[float]:
    times = []
    for config in configs:
      start = time.perf_counter()
      train.create_input(config, datasets)
      times.append(time.perf_counter() - start)
    return times

  alone = seconds_per_run(None)
  shared = seconds_per_run(shards.DatasetCache())
  print(f"\nrun input set-up, cpu preset's Ours, {len(configs)} folds (seconds per run):")
  print(f"{'dataset opened by each run (reference)':42s} " + " ".join(f"{t:6.1f}" for t in alone))
  print(f"{'one DatasetCache for the process':42s} " + " ".join(f"{t:6.1f}" for t in shared))
  if len(configs) > 1:
    later_alone, later_shared = np.mean(alone[1:]), np.mean(shared[1:])
    print(f"after the first run: {later_alone:.1f} s -> {later_shared:.1f} s per run "
          f"({later_alone / later_shared:.1f}x faster)")


if __name__ == "__main__":
  app.run(main)
