r"""Speed and memory of the exact pose-swap kernel (`nar.method.swap`) and of the top-K table build.

  python -m benchmarks.swap [--num_queries=4096] [--pool_size=50000] [--dim=90]
                            [--query_chunk=512] [--pool_chunk=2048] [--repeats=5]

For `num_queries` query frames against a pool of `pool_size` frames, prints the median time per
call (jitted, after warm-up, `block_until_ready`; the rounds of all contenders interleaved so
that load from other processes hits them alike) of:
  * ours: `nar.method.swap.draw_pool_frames`, the streamed two-level exponential race;
  * the NumPy reference with the same semantics (`tests/reference_swap.py`: chunked
    the same way, same hash noise and race, float32), and how often both draw the same frame;
  * distance floors: the same chunked scan (query chunks × pool chunks) over the bare
    `||a||² + ||b||² - 2 a·b`, without noise, square root or masks, followed by a running
    reduction: "argmin (first min)" (min, then the first index attaining it: the reduction
    ours uses, and the floor the bar uses), XLA's own argmin (a variadic reduction that does
    not vectorise on CPU, so a slower, flattering floor) and a bare min (no index). The dense
    floor (one [N, M] matrix, then argmin; O(N × M) memory) is printed for information.
Peak memory of ours is the largest of the process's max-RSS growth over its first call (the
program is compiled ahead, so compilation does not count), XLA's temp-buffer size and the
device's peak bytes in use (where the backend reports it).
Bars (2-core CPU): >= 2x faster than NumPy, <= 1.5x the floor, peak memory < 1 GB.

Then it times `nar.method.swap.swap_pose_windows` at training-step scale (a batch of windows against
a bank of several animals, one target animal per window and per frame), and the top-K table
build (`nar.method.swap_table`) for `table_queries` frames against one pool of `table_pool_size`
frames, projected to the full build at MC2P scale: per (query frame, pool frame) time ×
`table_animals` × `table_frames_per_animal` queries × (`table_animals` - 1) pools ×
`table_frames_per_animal` frames. It then times the build spread over every local device (one
query chunk per device, as `build_topk_table` runs it) and projects the full build onto
`projected_devices` accelerators: that work / (the per-device rate measured in this run ×
`projected_devices`), against the bar of 1 h. On CPU, where the devices are host devices
sharing the CPU's cores (`XLA_FLAGS=--xla_force_host_platform_device_count=8`), the figure
is a CPU projection, not an accelerator's.
"""

import functools
import os
import resource
import statistics
import time

from absl import app
from absl import flags
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from nar.method import pose_bank
from nar.method import swap
from nar.method import swap_table
from tests import reference_swap

_NUM_QUERIES = flags.DEFINE_integer("num_queries", 4096, "Query frames per call.")
_POOL_SIZE = flags.DEFINE_integer("pool_size", 50_000, "Frames in the pool.")
_DIM = flags.DEFINE_integer("dim", 90, "Pose dimension.")
_QUERY_CHUNK = flags.DEFINE_integer("query_chunk", swap.DEFAULT_QUERY_CHUNK,
                                    "Query frames per block.")
_POOL_CHUNK = flags.DEFINE_integer("pool_chunk", swap.DEFAULT_POOL_CHUNK,
                                   "Pool frames per block.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per jitted kernel (median).")
_NUMPY_REPEATS = flags.DEFINE_integer("numpy_repeats", 2, "Timed calls of the NumPy reference.")
_DENSE_FLOOR = flags.DEFINE_bool("dense_floor", True,
                                 "Also time the dense [N, M] floor (needs N × M × 4 bytes).")
_WINDOWS = flags.DEFINE_integer("windows", 64, "Windows per batch of the window swap.")
_WINDOW_LENGTH = flags.DEFINE_integer("window_length", 32, "Pose frames per window.")
_BANK_ANIMALS = flags.DEFINE_integer("bank_animals", 8, "Training animals in the bank.")
_BANK_FRAMES = flags.DEFINE_integer("bank_frames", 20_000, "Frames per animal in the bank.")
_WINDOW_QUERY_CHUNK = flags.DEFINE_integer("window_query_chunk",
                                           swap.DEFAULT_WINDOW_QUERY_CHUNK,
                                           "Query frames per chunk of the window swap.")
_TABLE_QUERIES = flags.DEFINE_integer("table_queries", 1024,
                                      "Query frames timed for the top-K table build.")
_TABLE_POOL_SIZE = flags.DEFINE_integer("table_pool_size", 190_000,
                                        "Frames of the pool timed for the table build.")
_TABLE_K = flags.DEFINE_integer("table_k", 16, "Neighbours per (frame, animal) in the table.")
_TABLE_ANIMALS = flags.DEFINE_integer("table_animals", 40, "Animals of the projected build.")
_TABLE_FRAMES = flags.DEFINE_integer("table_frames_per_animal", 190_000,
                                     "Frames per animal of the projected build (100 Hz).")
_PROJECTED_DEVICES = flags.DEFINE_integer(
    "projected_devices", 8, "Accelerators the full table build is projected onto.")

SPEEDUP_OVER_NUMPY_BAR = 2.0
RATIO_TO_FLOOR_BAR = 1.5
PEAK_MEMORY_BAR_BYTES = 1 << 30
FULL_TABLE_BUILD_BAR_SECONDS = 3600.0


def _max_rss_bytes() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB.


def _median_seconds(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _chunked_distance_floor(queries, pool, *, query_chunk: int, pool_chunk: int,
                            reduction: str):
  """The bare matmul distance form, chunked as our kernel, then a cheap reduction.

  Args:
    queries: `[N, D]` with N a multiple of `query_chunk`.
    pool: `[M, D]`.
    query_chunk, pool_chunk: block sizes.
    reduction: "argmin" (XLA's argmin, a variadic (value, index) reduction), "fast_argmin"
      (min, then the first index attaining it: the reduction our kernel uses) or "min"
      (the running min distance only, no index: the lowest floor).

  Returns:
    `[N]` nearest pool frame (or its squared distance for "min").
  """
  num_queries, dim = queries.shape
  pool_size = pool.shape[0]
  num_pool_chunks = -(-pool_size // pool_chunk)
  pool = jnp.pad(pool, ((0, num_pool_chunks * pool_chunk - pool_size), (0, 0)))
  pool_sqnorm = jnp.pad(jnp.sum(pool[:pool_size] * pool[:pool_size], axis=-1),
                        (0, num_pool_chunks * pool_chunk - pool_size), constant_values=jnp.inf)

  def per_query_chunk(chunk):
    chunk_sqnorm = jnp.sum(chunk * chunk, axis=-1)

    def body(index, carry):
      best, best_index = carry
      block = lax.dynamic_slice_in_dim(pool, index * pool_chunk, pool_chunk)
      block_sqnorm = lax.dynamic_slice_in_dim(pool_sqnorm, index * pool_chunk, pool_chunk)
      cross = lax.dot_general(chunk, block, (((1,), (1,)), ((), ())),
                              precision=lax.Precision.HIGHEST)
      sq_dist = (chunk_sqnorm[:, None] + block_sqnorm[None, :]) - 2.0 * cross
      block_best = jnp.min(sq_dist, axis=-1)
      if reduction == "min":
        return jnp.minimum(best, block_best), best_index
      ids = index * pool_chunk + jnp.arange(pool_chunk, dtype=jnp.int32)
      if reduction == "argmin":
        block_index = ids[jnp.argmin(sq_dist, axis=-1)]
      else:
        block_index = jnp.min(jnp.where(sq_dist == block_best[:, None], ids[None, :],
                                        jnp.iinfo(jnp.int32).max), axis=-1)
      better = block_best < best
      return jnp.where(better, block_best, best), jnp.where(better, block_index, best_index)

    init = (jnp.full((query_chunk,), jnp.inf), jnp.zeros((query_chunk,), jnp.int32))
    best, best_index = lax.fori_loop(0, num_pool_chunks, body, init)
    return best if reduction == "min" else best_index

  return lax.map(per_query_chunk, queries.reshape(num_queries // query_chunk, query_chunk, dim))


def _dense_distance_floor(queries, pool):
  sq_dist = (jnp.sum(queries * queries, -1)[:, None] + jnp.sum(pool * pool, -1)[None, :]
             - 2.0 * jnp.matmul(queries, pool.T, precision=lax.Precision.HIGHEST))
  return jnp.argmin(sq_dist, axis=-1)


def _verdict(ok: bool) -> str:
  return "PASS" if ok else "FAIL"


def _time_kernel_and_floors(queries, pool, valid, key) -> None:
  query_chunk, pool_chunk, repeats = _QUERY_CHUNK.value, _POOL_CHUNK.value, _REPEATS.value
  num_queries, pool_size = queries.shape[0], pool.shape[0]
  print(f"kernel: {num_queries} queries x {pool_size} pool frames x {queries.shape[1]} dims; "
        f"chunks {query_chunk} x {pool_chunk}")

  # Compiled ahead so that the RSS growth over the calls is the kernel's run-time memory.
  compiled = swap._draw_pool_frames_jit.lower(  # pylint: disable=protected-access
      key, queries, pool, valid, jnp.asarray(0), 1.0, query_chunk=query_chunk,
      pool_chunk=pool_chunk).compile()
  run = lambda: compiled(key, queries, pool, valid, jnp.asarray(0), 1.0)
  numpy_queries, numpy_pool, numpy_valid = map(np.asarray, (queries, pool, valid))
  run_numpy = lambda: reference_swap.draw_pool_frames(
      key, numpy_queries, numpy_pool, numpy_valid, query_chunk=query_chunk,
      pool_chunk=pool_chunk)
  padded_queries = num_queries - num_queries % -query_chunk
  floor_queries = jnp.pad(queries, ((0, padded_queries - num_queries), (0, 0)))
  floor = jax.jit(_chunked_distance_floor,
                  static_argnames=("query_chunk", "pool_chunk", "reduction"))
  floors = {
      reduction: functools.partial(floor, floor_queries, pool, query_chunk=query_chunk,
                                   pool_chunk=pool_chunk, reduction=reduction)
      for reduction in ("fast_argmin", "argmin", "min")
  }

  rss_before = _max_rss_bytes()
  ours = run()
  ours_rss_growth = _max_rss_bytes() - rss_before
  rss_before = _max_rss_bytes()
  reference = run_numpy()
  numpy_rss_growth = _max_rss_bytes() - rss_before
  for run_floor in floors.values():
    jax.block_until_ready(run_floor())
  # Interleaved rounds, so that load from other processes hits all alike.
  times = {name: [] for name in ["ours", "numpy", *floors]}
  for round_index in range(repeats):
    times["ours"].append(_median_seconds(run, 1))
    for reduction, run_floor in floors.items():
      times[reduction].append(_median_seconds(run_floor, 1))
    if round_index < _NUMPY_REPEATS.value:
      times["numpy"].append(_median_seconds(run_numpy, 1))
  seconds = {name: statistics.median(values) for name, values in times.items()}
  memory = compiled.memory_analysis()
  temp_bytes = getattr(memory, "temp_size_in_bytes", None) if memory is not None else None
  device_stats = jax.devices()[0].memory_stats() or {}
  agreement = float(np.mean(np.asarray(ours) == reference))
  print(f"{'ours (streamed two-level race)':40s} {1e3 * seconds['ours']:9.1f} ms")
  print(f"{'numpy reference (same semantics)':40s} {1e3 * seconds['numpy']:9.1f} ms  "
        f"(same frame drawn for {100 * agreement:.2f}% of queries)")
  print(f"{'floor: distances + argmin (first min)':40s} {1e3 * seconds['fast_argmin']:9.1f} ms"
        "  <- the bar's floor")
  print(f"{'floor: distances + XLA argmin':40s} {1e3 * seconds['argmin']:9.1f} ms")
  print(f"{'floor: distances + min (no index)':40s} {1e3 * seconds['min']:9.1f} ms")

  print()
  speedup = seconds["numpy"] / seconds["ours"]
  ratio = seconds["ours"] / seconds["fast_argmin"]
  print(f"speed-up over numpy:        {speedup:6.2f}x  (bar >= {SPEEDUP_OVER_NUMPY_BAR}x)  "
        f"{_verdict(speedup >= SPEEDUP_OVER_NUMPY_BAR)}")
  print(f"time / distance floor:      {ratio:6.2f}x  (bar <= {RATIO_TO_FLOOR_BAR}x)  "
        f"{_verdict(ratio <= RATIO_TO_FLOOR_BAR)}  [/ XLA-argmin floor "
        f"{seconds['ours'] / seconds['argmin']:.2f}x, / min-only floor "
        f"{seconds['ours'] / seconds['min']:.2f}x]")
  peak = max(ours_rss_growth, temp_bytes or 0, device_stats.get("peak_bytes_in_use", 0))
  print(f"peak memory of ours:        {peak / 2**20:6.1f} MiB (bar < 1 GiB)  "
        f"{_verdict(peak < PEAK_MEMORY_BAR_BYTES)}  [max RSS growth "
        f"{ours_rss_growth / 2**20:.1f} MiB; XLA temp buffers "
        f"{(temp_bytes or 0) / 2**20:.1f} MiB; device peak "
        f"{device_stats.get('peak_bytes_in_use', 0) / 2**20:.1f} MiB]")
  print(f"numpy reference max RSS growth: {numpy_rss_growth / 2**20:.1f} MiB")

  if _DENSE_FLOOR.value:
    dense = jax.jit(_dense_distance_floor)
    dense(queries, pool).block_until_ready()
    dense_seconds = _median_seconds(lambda: dense(queries, pool), repeats)
    print(f"(dense floor, one [N, M] matrix: {1e3 * dense_seconds:.1f} ms; ours / dense = "
          f"{seconds['ours'] / dense_seconds:.2f}x)")
    # The matmul alone: what the hardware's FP32 matrix rate allows for these distances.
    matmul = jax.jit(lambda a, b: jnp.sum(
        lax.dot_general(a, b, (((1,), (1,)), ((), ())), precision=lax.Precision.HIGHEST),
        axis=-1))
    matmul(queries, pool).block_until_ready()
    matmul_seconds = _median_seconds(lambda: matmul(queries, pool), repeats)
    matmul_ratio = seconds["ours"] / matmul_seconds
    on_gpu = jax.default_backend() == "gpu"
    print(f"FP32 matmul of the same distances: {1e3 * matmul_seconds:.1f} ms; ours / matmul = "
          f"{matmul_ratio:.2f}x (bar <= 2x on a GPU): "
          + (_verdict(matmul_ratio <= 2.0) if on_gpu else "no bar on this backend"))


def _time_window_swap(dim: int, key) -> None:
  rng = np.random.default_rng(2)
  num_animals, frames = _BANK_ANIMALS.value, _BANK_FRAMES.value
  bank = pose_bank.make_pose_bank(
      {f"animal{a}": rng.normal(size=(frames, dim)).astype(np.float32)
       for a in range(num_animals)}, None, [f"animal{a}" for a in range(num_animals)])
  windows = jnp.asarray(
      rng.normal(size=(_WINDOWS.value, _WINDOW_LENGTH.value, dim)).astype(np.float32))
  source = jnp.asarray(rng.integers(0, num_animals, _WINDOWS.value), jnp.int32)
  print()
  print(f"window swap: {_WINDOWS.value} windows x {_WINDOW_LENGTH.value} frames against "
        f"{num_animals} animals x {frames} frames, swap probability 1, query chunk "
        f"{_WINDOW_QUERY_CHUNK.value}")
  for per_frame_target in (False, True):
    run = lambda: swap.swap_pose_windows(  # pylint: disable=cell-var-from-loop
        key, windows, source, bank, swap_probability=1.0, per_frame_target=per_frame_target,
        query_chunk=_WINDOW_QUERY_CHUNK.value, pool_chunk=_POOL_CHUNK.value)
    jax.block_until_ready(run())
    seconds = _median_seconds(run, _REPEATS.value)
    print(f"  {'one target per frame' if per_frame_target else 'one target per window':24s} "
          f"{1e3 * seconds:8.1f} ms per batch")


def _time_table_build(dim: int) -> None:
  num_queries, pool_size, k = _TABLE_QUERIES.value, _TABLE_POOL_SIZE.value, _TABLE_K.value
  rng = np.random.default_rng(1)
  # Animal 0 holds the query frames, animal 1 the pool: one pool is scanned per query chunk.
  bank = pose_bank.make_pose_bank(
      {"queries": rng.normal(size=(num_queries, dim)).astype(np.float32),
       "pool": rng.normal(size=(pool_size, dim)).astype(np.float32)}, None,
      ["queries", "pool"])
  queries = bank.frames[0, :num_queries]
  build = lambda: swap_table._top_k_against_bank(  # pylint: disable=protected-access
      queries, jnp.int32(0), bank.frames, bank.valid, bank.num_frames, jnp.float32(1.0), k=k,
      pool_chunk=_POOL_CHUNK.value)
  build()
  seconds = _median_seconds(build, max(1, _REPEATS.value // 2))
  per_pair = seconds / (num_queries * pool_size)
  animals, frames = _TABLE_ANIMALS.value, _TABLE_FRAMES.value
  total = per_pair * animals * frames * (animals - 1) * frames
  table_bytes = animals * frames * animals * k * 8
  print()
  print(f"top-K table build (K={k}): {num_queries} queries x {pool_size} pool frames in "
        f"{1e3 * seconds:.1f} ms = {1e9 * per_pair:.2f} ns per (query, pool frame)")
  print(f"projected full build, {animals} animals x {frames} frames against {animals - 1} "
        f"pools each: {total / 3600:.1f} h on {jax.devices()[0].device_kind}; the table takes "
        f"{table_bytes / 2**30:.1f} GiB")
  _time_table_build_over_devices(bank, num_queries, pool_size, k,
                                 total_pairs=animals * frames * (animals - 1) * frames)


def _time_table_build_over_devices(bank, num_queries: int, pool_size: int, k: int, *,
                                   total_pairs: int) -> None:
  """Times one query chunk per local device at once, and projects the full build from it."""
  devices = jax.local_devices()
  num_devices, projected_devices = len(devices), _PROJECTED_DEVICES.value
  mesh = jax.sharding.Mesh(np.array(devices), (swap_table.DATA_AXIS,))
  split = jax.sharding.NamedSharding(mesh, jax.P(swap_table.DATA_AXIS))
  replicated = jax.sharding.NamedSharding(mesh, jax.P())
  # Every device takes the chunk of query frames against the pool, as the build spreads them.
  first_frames = jax.device_put(np.zeros(num_devices, np.int32), split)
  query_animals = jax.device_put(np.zeros(num_devices, np.int32), split)
  bank_arrays = jax.device_put((bank.frames, bank.valid, bank.num_frames, jnp.float32(1.0),
                                bank.distance_scale), replicated)
  build = lambda: swap_table._top_k_of_query_chunks(  # pylint: disable=protected-access
      query_animals, first_frames, *bank_arrays, k=k, pool_chunk=_POOL_CHUNK.value,
      query_chunk=num_queries, mesh=mesh)
  jax.block_until_ready(build())
  seconds = _median_seconds(build, max(1, _REPEATS.value // 2))
  # The devices run at once: each one's rate is its own chunk's pairs over the call's time.
  pairs_per_second_per_device = num_queries * pool_size / seconds
  projected = total_pairs / (pairs_per_second_per_device * projected_devices)
  kind = devices[0].device_kind
  print(f"top-K table build over {num_devices} local device(s) ({kind}), one chunk of "
        f"{num_queries} queries x {pool_size} pool frames each: {1e3 * seconds:.1f} ms = "
        f"{pairs_per_second_per_device / 1e9:.3f} G (query, pool frame) pairs/s per device")
  if devices[0].platform == "cpu":
    basis = (f"a CPU projection: {num_devices} host device(s) sharing {os.cpu_count()} CPU "
             f"cores, not {projected_devices} accelerators")
  elif num_devices == projected_devices:
    basis = f"measured on {num_devices} {kind} in this run"
  else:
    basis = (f"the per-device rate measured on {num_devices} {kind} in this run, assumed to "
             f"hold on {projected_devices}")
  under_bar = projected < FULL_TABLE_BUILD_BAR_SECONDS
  print(f"projected full table build on {projected_devices} accelerators (per-device rate x "
        f"work / {projected_devices}): {projected / 3600:.2f} h, under 1 h: "
        f"{'yes' if under_bar else 'no'} ({basis})")


def main(argv):
  del argv
  print(f"devices: {jax.devices()}")
  rng = np.random.default_rng(0)
  dim = _DIM.value
  queries = jnp.asarray(rng.normal(size=(_NUM_QUERIES.value, dim)).astype(np.float32))
  pool = jnp.asarray(rng.normal(size=(_POOL_SIZE.value, dim)).astype(np.float32))
  valid = jnp.asarray(rng.random(_POOL_SIZE.value) > 0.05)
  key = jax.random.key(0)
  _time_kernel_and_floors(queries, pool, valid, key)
  _time_window_swap(dim, key)
  _time_table_build(dim)


if __name__ == "__main__":
  app.run(main)
