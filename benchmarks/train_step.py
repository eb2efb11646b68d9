r"""Throughput of the jitted training step at swap_cpu shapes, swap on and off.

  python -m benchmarks.train_step [--config=swap_cpu] [--steps=30] [--pool_stride=4]

Prints, in one run: steps/s and windows/s of the step without the swap, with the exact swap
(`swap.mode="exact"`: every pose frame against all of the target animal's frames, then
against every `--pool_stride`-th of them, `swap.pool_stride`) and with the top-K swap
(`swap.mode="topk"`: a lookup in a table of each frame's K nearest frames, built once per run,
whose build time is printed too); bar: the swap costs at most 25% of the step. Then the input
pipeline's windows/s beside the step's consumption (bar: at least 5x). Batches are read before
timing the step, so the step's figures exclude data loading. Also prints how much farther the
nearest frame of another animal lies in the thinned pool than in the full one. The default
dataset is simulated and built first if absent.
"""

import importlib
import time

from absl import app
from absl import flags
import jax
import numpy as np

from data_prep import default_dataset
from nar import train
from nar.data import pipeline

_CONFIG = flags.DEFINE_string("config", "swap_cpu", "Config name in experiments/configs.")
_STEPS = flags.DEFINE_integer("steps", 30, "Timed steps per variant.")
_WORKERS = flags.DEFINE_list("workers", ["0", "2"], "grain worker counts to time.")
_POOL_STRIDE = flags.DEFINE_integer(
    "pool_stride", 4, "Stride of the thinned pool timed beside the full one (swap.pool_stride).")


def _time_step(config, inputs, batches) -> tuple[float, float]:
  """Seconds per step (median of the timed steps, after one compiling step), and seconds
  to build the step's constants (the swap's pose bank and, in top-K mode, its table)."""
  graphdef, tx, state = train.create_train_state(config, inputs)
  start = time.perf_counter()
  bank, rows = train.create_step_constants(config, inputs)
  jax.block_until_ready(bank)
  constants_seconds = time.perf_counter() - start
  mesh = train.make_mesh()
  step = train.compile_train_step(graphdef, tx, config, inputs.neural_key, mesh,
                                  len(inputs.dataset.animals),
                                  behaviour_spec=inputs.dataset.behaviour_spec)
  sharding = jax.sharding.NamedSharding(mesh, jax.P("data"))
  replicated = jax.sharding.NamedSharding(mesh, jax.P())
  state, bank = jax.device_put(state, replicated), jax.device_put(bank, replicated)
  device_batches = []
  for local in batches:
    local = train.step_batch(local, inputs.neural_key, rows)
    device_batches.append({k: jax.device_put(v, sharding) for k, v in local.items()})
  state, metrics = step(state, device_batches[0], bank)
  jax.block_until_ready((state, metrics))
  durations = []
  for batch in device_batches[1:]:
    start = time.perf_counter()
    state, metrics = step(state, batch, bank)
    jax.block_until_ready((state, metrics))
    durations.append(time.perf_counter() - start)
  durations.sort()
  return durations[len(durations) // 2], constants_seconds


def _thinning_distance_ratio(config, inputs, stride: int, num_queries: int = 512) -> float:
  """Median over frames of one training animal of (distance to the nearest valid frame of
  another animal in the pool thinned to every `stride`-th frame) / (the same, full pool)."""
  banks = {}
  for pool_stride in (1, stride):
    with config.unlocked():
      config.swap.update(enabled=True, mode="exact", pool_stride=pool_stride)
    banks[pool_stride] = train.create_step_constants(config, inputs)[0]["frames"]
  full = banks[1]
  rng = np.random.default_rng(0)
  own = np.asarray(full.frames[0])[np.asarray(full.valid[0])]
  queries = own[rng.choice(len(own), num_queries, replace=False)]

  def nearest(bank):
    pool = np.asarray(bank.frames[1])[np.asarray(bank.valid[1])]
    squared = (queries**2).sum(1)[:, None] + (pool**2).sum(1)[None] - 2 * queries @ pool.T
    return np.sqrt(np.maximum(squared, 0)).min(1)

  return float(np.median(nearest(banks[stride]) / nearest(full)))


def _pipeline_rate(inputs, batch_size: int, workers: int, num_batches: int) -> float:
  loader = pipeline.make_loader(inputs.train_source, batch_size=batch_size, train=True,
                                      seed=1, worker_count=workers)
  iterator = iter(loader)
  for _ in range(max(workers, 1)):  # every worker has started before the clock does
    next(iterator)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(iterator)
  return num_batches * batch_size / (time.perf_counter() - start)


def main(argv):
  del argv
  config = importlib.import_module(f"experiments.configs.{_CONFIG.value}").get_config()
  if config.data.simulate_if_missing:
    default_dataset.ensure_dataset(data_dir=config.data.data_dir, name=config.data.name)
  inputs = train.create_input(config)
  batch_size = config.optim.global_batch_size
  loader = pipeline.make_loader(inputs.train_source, batch_size=batch_size, train=True,
                                      seed=0)
  iterator = iter(loader)
  batches = [next(iterator) for _ in range(_STEPS.value + 1)]
  print(f"devices: {jax.devices()}  config: {_CONFIG.value}  global batch: {batch_size}  "
        f"neural input: {inputs.neural_key} {batches[0][inputs.neural_key].shape[1:]}")

  timings = {}
  swaps = {"the exact swap": ("exact", 1),
           f"the exact swap, pool stride {_POOL_STRIDE.value}": ("exact", _POOL_STRIDE.value),
           "the top-K swap": ("topk", 1)}
  with config.unlocked():
    config.swap.enabled = False
  without_swap = _time_step(config, inputs, batches)[0]
  for name, (mode, stride) in swaps.items():
    with config.unlocked():
      config.swap.enabled, config.swap.mode, config.swap.pool_stride = True, mode, stride
    timings[name] = _time_step(config, inputs, batches)
  for name, seconds in [("without swap", without_swap)] + [
      (f"with {name}", seconds) for name, (seconds, _) in timings.items()]:
    print(f"step {name:34s} {1 / seconds:8.2f} steps/s  {batch_size / seconds:9.0f} windows/s")
  for name, (seconds, _) in timings.items():
    overhead = seconds / without_swap - 1
    print(f"{name} overhead: {100 * overhead:.1f}% of the step without swap "
          f"(bar <= 25%): {'PASS' if overhead <= 0.25 else 'FAIL'}")
  ratio = _thinning_distance_ratio(config, inputs, _POOL_STRIDE.value)
  print(f"pool stride {_POOL_STRIDE.value}: the nearest frame of another animal lies "
        f"{100 * (ratio - 1):.1f}% farther (median over frames) than in the full pool")
  table_seconds = timings["the top-K swap"][1]
  print(f"top-K table build (K = {config.swap.topk}), once per run: {table_seconds:.1f} s = "
        f"{table_seconds / without_swap:.0f} steps without swap")
  with_swap = timings["the exact swap"][0]
  consumption = batch_size / with_swap
  for workers in map(int, _WORKERS.value):
    rate = _pipeline_rate(inputs, batch_size, workers, num_batches=max(10, 2 * workers))
    ratio = rate / consumption
    print(f"input pipeline, {workers} workers: {rate:9.0f} windows/s = {ratio:.1f}x the step's "
          f"consumption (bar >= 5x): {'PASS' if ratio >= 5 else 'FAIL'}")


if __name__ == "__main__":
  app.run(main)
