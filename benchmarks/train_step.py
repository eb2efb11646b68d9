r"""Throughput of the jitted training step, swap on and off, its input side and its MFU.

  python -m benchmarks.train_step [--config=swap_cpu] [--steps=30] [--pool_stride=4]
      [--workers=0,2] [--topk=True] [--json=PATH]

Prints, in one run, for the config it is given: steps/s and windows/s of the step without
the swap; with the config's own exact swap (`swap.kernel`, "auto": the rejection kernel of
`nar.method.swap_cells` for behaviour of at most 8 dimensions, the streamed scan otherwise);
with the scan over every frame, and over every `--pool_stride`-th frame (`swap.pool_stride`);
and with the top-K swap (`swap.mode="topk"`, its table build time printed too). Bar: the
config's swap costs at most 25% of the step. Steps run as training runs them
(`data.input_path`: with device-resident windows a batch is gathered inside the step, which
the figures then include). Then the input side beside the step's consumption (bar: at least
5x): the index loader that feeds a device-resident step, and grain's window reads for the
host path. Then the MFU of the step: FLOPs from XLA's cost analysis over the device's peak
(for a CPU, the float32 matmul rate measured in the same run). The default dataset is
simulated and built first if absent. `--json` writes every figure to one file.
"""

import importlib
import json
import time

from absl import app
from absl import flags
import jax
import numpy as np

from benchmarks import peak_flops
from data_prep import default_dataset
from nar import train
from nar.data import device as device_lib
from nar.data import pipeline

_CONFIG = flags.DEFINE_string("config", "swap_cpu", "Config name in experiments/configs.")
_STEPS = flags.DEFINE_integer("steps", 30, "Timed steps per variant.")
_WORKERS = flags.DEFINE_list("workers", ["0", "2"], "grain worker counts to time.")
_POOL_STRIDE = flags.DEFINE_integer(
    "pool_stride", 4, "Stride of the thinned pool timed beside the full one (swap.pool_stride).")
_TOPK = flags.DEFINE_bool("topk", True, "Also time the top-K swap (builds its table).")
_JSON = flags.DEFINE_string("json", None, "Write every figure to this JSON file.")


def _timed_step(config, inputs, windows):
  """`(seconds per step, seconds to build the step's constants, FLOPs per step)`: the median
  of the timed steps after one compiling step, on batches of the loader training uses."""
  graphdef, tx, state = train.create_train_state(config, inputs)
  start = time.perf_counter()
  constants, rows = train.create_step_constants(config, inputs)
  jax.block_until_ready(constants)
  constants_seconds = time.perf_counter() - start
  mesh = train.make_mesh()
  sharding = jax.sharding.NamedSharding(mesh, jax.P("data"))
  replicated = jax.sharding.NamedSharding(mesh, jax.P())
  state, constants = jax.device_put(state, replicated), jax.device_put(constants, replicated)
  if windows is not None:
    constants["windows"] = windows
  step = train.compile_train_step(graphdef, tx, config, inputs.neural_key, mesh,
                                  len(inputs.dataset.animals),
                                  behaviour_spec=inputs.dataset.behaviour_spec)
  loader = iter(pipeline.make_loader(inputs.train_source,
                                     batch_size=config.optim.global_batch_size, train=True,
                                     seed=0, read_windows=windows is None))
  batches = []
  for _ in range(_STEPS.value + 1):
    local = next(loader)
    if windows is None:
      local = train.step_batch(local, inputs.neural_key, rows)
    batches.append({k: jax.device_put(v, sharding) for k, v in local.items()})
  flops = (step.lower(state, batches[0], constants).compile().cost_analysis() or {}).get(
      "flops", float("nan"))
  state, metrics = step(state, batches[0], constants)
  jax.block_until_ready((state, metrics))
  durations = []
  for batch in batches[1:]:
    start = time.perf_counter()
    state, metrics = step(state, batch, constants)
    jax.block_until_ready((state, metrics))
    durations.append(time.perf_counter() - start)
  durations.sort()
  return durations[len(durations) // 2], constants_seconds, float(flops)


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


def _loader_rate(inputs, batch_size: int, workers: int, num_batches: int,
                 read_windows: bool) -> float:
  """Windows/s of the training loader (window reads, or indices for the device path)."""
  loader = pipeline.make_loader(inputs.train_source, batch_size=batch_size, train=True,
                                seed=1, worker_count=workers, read_windows=read_windows)
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
  default_dataset.simulate_if_missing(config)
  inputs = train.create_input(config)
  batch_size = config.optim.global_batch_size
  mesh = train.make_mesh()
  resident, input_path = device_lib.choose_path(
      config.data.input_path, inputs.train_source.frame_arrays_bytes(inputs.neural_key),
      config.data.device_memory_fraction, mesh.devices.flat[0])
  windows = None
  if resident:
    _, rows = train.create_step_constants(config, inputs)
    windows = device_lib.make_device_windows(inputs.train_source, inputs.neural_key, rows, mesh)
  device = jax.devices()[0]
  behaviour_dim = inputs.train_source[0]["pose"].shape[-1]
  kernel = train.swap_kernel(config, behaviour_dim)
  print(f"devices: {jax.devices()}  jax {jax.__version__}  config: {_CONFIG.value}  global "
        f"batch: {batch_size}  neural input: {inputs.neural_key}  behaviour: {behaviour_dim}-d"
        f"\ntraining windows: {input_path}")
  figures = {"device": device.device_kind, "platform": device.platform,
             "num_devices": jax.device_count(), "jax": jax.__version__,
             "config": _CONFIG.value, "global_batch": batch_size, "input_path": input_path}

  own_stride = config.swap.pool_stride
  own = f"the config's exact swap (kernel {kernel}" + (
      f", every {own_stride}th frame)" if own_stride > 1 else ")")
  variants = {own: dict(mode="exact", kernel=kernel, pool_stride=own_stride),
              "the exact swap, scanning every frame": dict(mode="exact", kernel="scan",
                                                           pool_stride=1),
              f"the exact swap, scanning every {_POOL_STRIDE.value}th frame": dict(
                  mode="exact", kernel="scan", pool_stride=_POOL_STRIDE.value)}
  if _TOPK.value:
    variants["the top-K swap"] = dict(mode="topk", pool_stride=1)
  # Variants that repeat the config's own are timed once.
  variants = {name: settings for index, (name, settings) in enumerate(variants.items())
              if index == 0 or settings != variants[own]}
  with config.unlocked():
    config.swap.enabled = False
  without_swap, _, flops = _timed_step(config, inputs, windows)
  timings = {}
  tables = inputs.dataset.path / "swap_tables"
  tables_before = set(tables.iterdir()) if tables.exists() else set()
  for name, settings in variants.items():
    with config.unlocked():
      config.swap.update({"enabled": True, **settings})
    timings[name] = _timed_step(config, inputs, windows)
  # The table is built once per dataset and settings, then read from beside the dataset.
  table_built = tables.exists() and set(tables.iterdir()) != tables_before
  for name, seconds in [("without swap", without_swap)] + [
      (f"with {name}", timing[0]) for name, timing in timings.items()]:
    print(f"step {name:48s} {1 / seconds:8.2f} steps/s  {batch_size / seconds:9.0f} windows/s")
  figures["steps_per_second"] = {"without swap": 1 / without_swap, **{
      name: 1 / timing[0] for name, timing in timings.items()}}
  figures["swap_overhead"] = {}
  for name, (seconds, _, _) in timings.items():
    overhead = seconds / without_swap - 1
    figures["swap_overhead"][name] = overhead
    bar = " (bar <= 25%): " + ("PASS" if overhead <= 0.25 else "FAIL") if "config's" in name \
        else ""
    print(f"{name} costs {100 * overhead:.1f}% of the step without swap{bar}")
  ratio = _thinning_distance_ratio(config, inputs, _POOL_STRIDE.value)
  print(f"pool stride {_POOL_STRIDE.value}: the nearest frame of another animal lies "
        f"{100 * (ratio - 1):.1f}% farther (median over frames) than in the full pool")
  if _TOPK.value:
    table_seconds = timings["the top-K swap"][1]
    figures["topk_table_seconds"] = table_seconds
    how = "built, once per dataset and settings" if table_built else "read from disk"
    figures["topk_table"] = how
    print(f"top-K table (K = {config.swap.topk}) {how}: {table_seconds:.1f} s = "
          f"{table_seconds / without_swap:.0f} steps without swap")

  with_swap = timings[next(iter(timings))][0]
  consumption = batch_size / with_swap
  figures["input_windows_per_second"] = {}
  sources = [("index loader of the device-resident step", 0, False)] if resident else []
  sources += [(f"grain window reads, {w} workers", w, True) for w in map(int, _WORKERS.value)]
  for name, workers, read in sources:
    rate = _loader_rate(inputs, batch_size, workers, max(10, 2 * workers), read)
    figures["input_windows_per_second"][name] = rate
    feeds = "feeds the step" if read != resident else "would feed a host-path step"
    print(f"input side, {name}: {rate:9.0f} windows/s = {rate / consumption:.1f}x what the step "
          f"consumes (bar >= 5x, {feeds}): {'PASS' if rate / consumption >= 5 else 'FAIL'}")

  peak, peak_source = peak_flops.device_peak_flops(device)
  figures.update(flops_per_step=flops, peak_flops=peak, peak_source=peak_source)
  for name, seconds in (("without swap", without_swap), ("with the config's swap", with_swap)):
    achieved = flops / seconds / jax.device_count()
    print(f"MFU {name}: {flops / 1e9:.3f} GFLOP per step (XLA cost analysis, whole mesh) / "
          f"{seconds * 1e3:.2f} ms = {achieved / 1e9:.1f} GFLOP/s per device = "
          f"{100 * achieved / peak:.2f}% of {peak / 1e12:.2f} TFLOP/s ({peak_source})")
    figures[f"mfu {name}"] = achieved / peak
  if _JSON.value:
    with open(_JSON.value, "w", encoding="utf-8") as file:
      json.dump(figures, file, indent=2)
    print(f"wrote {_JSON.value}")


if __name__ == "__main__":
  app.run(main)
