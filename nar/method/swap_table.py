r"""Top-K neighbour table for the pose swap: for pools too large to scan every step.

For every frame of every training animal s and every other training animal ŝ, the table keeps
the K frames of ŝ with the largest weight exp(-||b_l - b_k|| / temperature) (the K nearest
frames), with their unnormalised log-weights. Swapping then costs a gather and a categorical
draw over K per frame, instead of a scan of the whole pool. The draw is the exact softmax
restricted to the K nearest frames; the probability mass left out,

    truncated_mass = 1 - sum_{l in top K} w_l / sum_{all valid l} w_l,

is computed exactly while the table is built (a running logsumexp over every pool frame) and
reported, so one knows how far the table is from the exact full-softmax swap of `nar.method.swap`.
With K = the pool size the table is exact.

The build streams the pools with the same chunked distance kernel as `nar.method.swap` (a running
top-K merge per pool chunk) over query chunks, with a progress bar. It uses the bank's distance,
weighted per feature when the bank has a `distance_scale`, as the exact swap does.

Memory: the table holds A × M_max × A × K entries of an int32 index and a float32 log-weight
(8 bytes), plus A × M_max × A float32 truncated masses. For MC2P scale (A = 40 animals,
M ≈ 190,000 frames at 100 Hz) and K = 16 that is 40 × 190,000 × 40 × 16 × 8 B ≈ 39 GB: such a
table belongs on the host or on disk (subsample the frames, e.g. the 33 Hz frames a window
uses, and keep only the training animals), and only toy and medium tables on the accelerator.
The temperature is fixed when the table is built.

The build spreads its query chunks over every local device (one chunk per device at a time, the
bank replicated) and over the processes of a multi-host job (process p builds every
`process_count`-th chunk, then the chunks are gathered); each chunk is computed as on one
device, so the table is the same bit for bit whatever the devices.
`nar.method.swap_table_cache` builds a table once and saves it beside its dataset, so that
later runs on the same dataset and settings load it instead; `place_topk_table` replicates a table over a mesh, or splits it along its
frame axis when it is too large for one device.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
from jax import lax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np
import tqdm

from nar.method import pose_bank
from nar.method import swap as swap_lib


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=("indices", "log_weights", "truncated_mass"),
                   meta_fields=("animals", "temperature"))
@dataclasses.dataclass(frozen=True)
class TopKTable:
  """The K nearest frames of every other training animal, for every bank frame.

  Attributes:
    indices: `[A, M_max, A, K]` int32: `indices[s, k, t]` are frames of animal t (bank rows)
      nearest to frame k of animal s, nearest first; -1 on the diagonal s == t, for padding
      rows and where the pool of t has fewer than K valid frames.
    log_weights: `[A, M_max, A, K]` float32 -distance / temperature of those frames; -inf where
      `indices` is -1.
    truncated_mass: `[A, M_max, A]` float32 softmax mass outside the top K; NaN on the
      diagonal and for padding rows.
    animals: the bank's animals, in bank order.
    temperature: the temperature the weights were computed with.
  """

  indices: jax.Array
  log_weights: jax.Array
  truncated_mass: jax.Array
  animals: tuple[str, ...]
  temperature: float

  @property
  def k(self) -> int:
    return int(self.indices.shape[-1])

  @property
  def nbytes(self) -> int:
    """Bytes of the table's three arrays (on one device, when replicated)."""
    return int(self.indices.nbytes + self.log_weights.nbytes + self.truncated_mass.nbytes)

  def truncated_mass_stats(self) -> dict[str, float]:
    """Mean and max of the truncated mass over all (frame, other animal) pairs."""
    mass = np.asarray(self.truncated_mass)
    return {"mean": float(np.nanmean(mass)), "max": float(np.nanmax(mass))}


@functools.partial(jax.jit, static_argnames=("k", "pool_chunk"))
def _top_k_against_bank(queries: jax.Array, source_animal: jax.Array, frames: jax.Array,
                        valid: jax.Array, num_frames: jax.Array, inv_temperature: jax.Array,
                        distance_scale: jax.Array | None = None, *, k: int, pool_chunk: int):
  """Top-K frames of every other animal for a chunk of queries of `source_animal`.

  Args:
    queries: `[Q, D]` query frames.
    source_animal: scalar bank row of the queries' animal (its own pool is skipped).
    frames, valid, num_frames: the bank's arrays.
    inv_temperature: scalar 1 / temperature.
    distance_scale: the bank's `[D]` per-feature scale of the weighted distance, or None.
    k: neighbours kept (static, <= max_frames).
    pool_chunk: pool frames per chunk (static).

  Returns:
    `(indices [Q, A, K] int32, log_weights [Q, A, K], truncated_mass [Q, A])`.
  """
  num_queries = queries.shape[0]
  num_animals, max_frames, _ = frames.shape
  pool_chunk = min(pool_chunk, max_frames)
  queries = pose_bank.to_distance_space(queries, distance_scale)
  query_sqnorm = jnp.sum(queries * queries, axis=-1)
  chunk_counts = pose_bank.pool_chunk_counts(num_frames, pool_chunk)

  def against_animal(animal):

    def scan_pool_chunk(chunk, carry):
      top_scores, top_indices, running_max, running_sum = carry
      pool, pool_ok, pool_ids = pose_bank.read_pool_chunk(frames, valid, animal, chunk, pool_chunk)
      pool = pose_bank.to_distance_space(pool, distance_scale)
      scores = -pose_bank.scaled_distances(queries, query_sqnorm, pool, pool_ok,
                                           inv_temperature)
      merged_scores, merged_at = lax.top_k(jnp.concatenate([top_scores, scores], axis=-1), k)
      merged_ids = jnp.concatenate(
          [top_indices, jnp.broadcast_to(pool_ids, (num_queries, pool_chunk))], axis=-1)
      new_max = jnp.maximum(running_max, jnp.max(scores, axis=-1))
      # A max of -inf means nothing valid yet: keep the sum at 0 instead of exp(nan).
      safe_max = jnp.where(jnp.isfinite(new_max), new_max, 0.0)
      running_sum = (running_sum * jnp.exp(running_max - safe_max)
                     + jnp.sum(jnp.exp(scores - safe_max[:, None]), axis=-1))
      return (merged_scores, jnp.take_along_axis(merged_ids, merged_at, axis=-1), new_max,
              running_sum)

    init = (jnp.full((num_queries, k), -jnp.inf, jnp.float32),
            jnp.full((num_queries, k), -1, jnp.int32),
            jnp.full((num_queries,), -jnp.inf, jnp.float32),
            jnp.zeros((num_queries,), jnp.float32))
    top_scores, top_indices, running_max, running_sum = lax.fori_loop(
        0, chunk_counts[animal], scan_pool_chunk, init)
    top_indices = jnp.where(jnp.isfinite(top_scores), top_indices, -1)
    log_total = running_max + jnp.log(running_sum)
    log_top = jax.nn.logsumexp(top_scores, axis=-1)
    truncated = -jnp.expm1(log_top - log_total)
    return top_indices, top_scores, jnp.maximum(truncated, 0.0)

  def skipped(animal):
    del animal
    return (jnp.full((num_queries, k), -1, jnp.int32),
            jnp.full((num_queries, k), -jnp.inf, jnp.float32),
            jnp.full((num_queries,), jnp.nan, jnp.float32))

  indices, log_weights, truncated = lax.map(
      lambda animal: lax.cond(animal == source_animal, skipped, against_animal, animal),
      jnp.arange(num_animals, dtype=jnp.int32))
  return (indices.transpose(1, 0, 2), log_weights.transpose(1, 0, 2), truncated.T)


# The axis of the build's mesh (and of `place_topk_table`'s) that query chunks are split along.
DATA_AXIS = "data"


@functools.partial(jax.jit, static_argnames=("k", "pool_chunk", "query_chunk", "mesh"))
def _top_k_of_query_chunks(animals: jax.Array, starts: jax.Array, frames: jax.Array,
                           valid: jax.Array, num_frames: jax.Array, inv_temperature: jax.Array,
                           distance_scale: jax.Array | None, *, k: int, pool_chunk: int,
                           query_chunk: int, mesh: jax.sharding.Mesh):
  """One query chunk per device of `mesh`: `_top_k_against_bank` of each, the bank replicated.

  Args:
    animals, starts: `[num_devices]` int32 bank row and first frame of each device's chunk,
      split along the mesh axis.
    frames, valid, num_frames, inv_temperature, distance_scale: as `_top_k_against_bank`,
      replicated.
    k, pool_chunk: as `_top_k_against_bank`.
    query_chunk: query frames per chunk (static).
    mesh: a one-axis (`DATA_AXIS`) mesh (static).

  Returns:
    `(indices [N, Q, A, K], log_weights [N, Q, A, K], truncated_mass [N, Q, A])` for the N
    chunks, split along the mesh axis.
  """

  def per_device(animal, start, frames, valid, num_frames, inv_temperature, distance_scale):
    # Each device slices its queries from its replica of the bank: nothing crosses devices.
    queries = lax.dynamic_slice(frames, (animal[0], start[0], 0),
                                (1, query_chunk, frames.shape[-1]))[0]
    outputs = _top_k_against_bank(queries, animal[0], frames, valid, num_frames,
                                  inv_temperature, distance_scale, k=k, pool_chunk=pool_chunk)
    return jax.tree.map(lambda x: x[None], outputs)

  split, replicated = jax.P(DATA_AXIS), jax.P()
  # No collectives: the body is the single-device kernel as it stands, its loop carries not
  # annotated as varying over the mesh (which the check would ask for).
  return jax.shard_map(per_device, mesh=mesh, in_specs=(split, split) + (replicated,) * 5,
                       out_specs=split, check_vma=False)(
                           animals, starts, frames, valid, num_frames, inv_temperature,
                           distance_scale)


def check_build_settings(bank: pose_bank.PoseBank, k: int, temperature: float,
                         query_chunk: int, pool_chunk: int) -> None:
  """Raises ValueError, before any work, for settings a table cannot be built with."""
  if bank.num_animals < 2:
    raise ValueError(f"the swap needs at least two training animals, the bank has "
                     f"{list(bank.animals)}")
  max_frames = int(bank.frames.shape[1])
  if not isinstance(k, (int, np.integer)) or not 1 <= k <= max_frames:
    raise ValueError(f"k must be an int in [1, {max_frames}] (the largest pool), got {k!r}")
  swap_lib.check_settings(temperature=temperature, query_chunk=query_chunk)
  # Unlike the draw's, the table's pool chunk need not be a multiple of FRAME_BLOCK.
  if not isinstance(pool_chunk, (int, np.integer)) or pool_chunk < 1:
    raise ValueError(f"pool_chunk must be a positive int, got {pool_chunk!r}")


def build_on_host(bank: pose_bank.PoseBank, k: int, *, temperature: float, query_chunk: int,
                  pool_chunk: int, progress: bool, devices: Sequence[jax.Device] | None,
                  process_index: int | None = None, process_count: int | None = None,
                  allgather: Callable[[Any], Any] = multihost_utils.process_allgather
                  ) -> TopKTable:
  """`build_topk_table`, its arrays left in host memory (NumPy).

  `process_index`, `process_count` (the job's, by default) and `allgather` (a gather of a
  pytree of arrays over the processes, stacked along a new leading axis) say which chunks this
  process builds and how the others' chunks reach it.
  """
  check_build_settings(bank, k, temperature, query_chunk, pool_chunk)
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  devices = list(jax.local_devices() if devices is None else devices)
  mesh = jax.sharding.Mesh(np.array(devices), (DATA_AXIS,),
                           axis_types=(jax.sharding.AxisType.Auto,))
  num_devices = len(devices)
  num_animals = bank.num_animals
  max_frames = int(bank.frames.shape[1])
  num_frames = np.asarray(bank.num_frames)
  indices = np.full((num_animals, max_frames, num_animals, k), -1, np.int32)
  log_weights = np.full((num_animals, max_frames, num_animals, k), -np.inf, np.float32)
  truncated = np.full((num_animals, max_frames, num_animals), np.nan, np.float32)
  query_chunk = min(query_chunk, max_frames)
  # Fixed-size query chunks (the last one of an animal shifted back) compile once.
  steps = [(animal, min(start, max_frames - query_chunk)) for animal in range(num_animals)
           for start in range(0, int(num_frames[animal]), query_chunk)]
  # Every chunk costs about the same (a scan of every other pool): a stride balances the load.
  own_steps = steps[process_index::process_count]
  replicated = jax.sharding.NamedSharding(mesh, jax.P())
  split = jax.sharding.NamedSharding(mesh, jax.P(DATA_AXIS))
  bank_arrays = jax.device_put((bank.frames, bank.valid, bank.num_frames,
                                jnp.float32(1.0 / temperature), bank.distance_scale), replicated)
  groups = [own_steps[i:i + num_devices] for i in range(0, len(own_steps), num_devices)]

  def dispatch(group):
    # A short last group repeats its last chunk on the idle devices; the copies are dropped.
    padded = group + [group[-1]] * (num_devices - len(group))
    animals = np.array([animal for animal, _ in padded], np.int32)
    starts = np.array([start for _, start in padded], np.int32)
    return _top_k_of_query_chunks(jax.device_put(animals, split), jax.device_put(starts, split),
                                  *bank_arrays, k=k, pool_chunk=pool_chunk,
                                  query_chunk=query_chunk, mesh=mesh)

  def write(animal, start, chunk_indices, chunk_weights, chunk_truncated):
    rows = slice(start, start + query_chunk)
    indices[animal, rows] = chunk_indices
    log_weights[animal, rows] = chunk_weights
    truncated[animal, rows] = chunk_truncated

  gathered_shape = (-(-len(steps) // process_count), query_chunk, num_animals)
  if process_count > 1:  # this process's chunks, in its order, until gathered
    own = (np.full(gathered_shape + (k,), -1, np.int32),
           np.full(gathered_shape + (k,), -np.inf, np.float32),
           np.full(gathered_shape, np.nan, np.float32))
  position = 0
  pending = dispatch(groups[0]) if groups else None
  with tqdm.tqdm(total=len(own_steps), desc="top-K swap table", disable=not progress) as bar:
    for group_index, group in enumerate(groups):
      outputs = pending
      # The next group runs on the devices while this one is copied to the host.
      pending = dispatch(groups[group_index + 1]) if group_index + 1 < len(groups) else None
      outputs = [np.asarray(x) for x in outputs]
      for slot, (animal, start) in enumerate(group):
        if process_count > 1:
          for buffer, output in zip(own, outputs):
            buffer[position] = output[slot]
        else:
          write(animal, start, *(output[slot] for output in outputs))
        position += 1
      bar.update(len(group))
  if process_count > 1:
    everyone = [np.asarray(x) for x in allgather(own)]
    # In the single-process order, so that rows two chunks share end up the same.
    for step_index, (animal, start) in enumerate(steps):
      source = (step_index % process_count, step_index // process_count)
      write(animal, start, *(x[source] for x in everyone))
  for animal in range(num_animals):
    # Rows past an animal's frames are padding, not frames.
    indices[animal, num_frames[animal]:] = -1
    log_weights[animal, num_frames[animal]:] = -np.inf
    truncated[animal, num_frames[animal]:] = np.nan
  return TopKTable(indices=indices, log_weights=log_weights, truncated_mass=truncated,
                   animals=bank.animals, temperature=float(temperature))


def build_topk_table(bank: pose_bank.PoseBank, k: int, *, temperature: float = 1.0,
                     query_chunk: int = 1024, pool_chunk: int = swap_lib.DEFAULT_POOL_CHUNK,
                     progress: bool = True,
                     devices: Sequence[jax.Device] | None = None) -> TopKTable:
  """Builds the top-K neighbour table of a bank with the streamed distance kernel.

  The query chunks are spread over `devices` (one chunk per device at a time, the bank
  replicated on each) and, in a multi-process job, over the processes (each builds every
  `jax.process_count()`-th chunk; every process returns the whole table). Every chunk is
  computed as on a single device, so the table does not depend on the devices.

  Args:
    bank: the training animals' frames.
    k: neighbours per (frame, other animal); at most the bank's `max_frames`.
    temperature: > 0; fixed for the table.
    query_chunk: query frames per chunk (one chunk per device per call).
    pool_chunk: pool frames per chunk.
    progress: show a tqdm progress bar.
    devices: the devices that build this process's chunks; None: all its local devices.

  Returns:
    The table (see `TopKTable`), on the default device; `truncated_mass_stats()` summarises
    how far it is from the exact draw.

  Raises:
    ValueError: fewer than two animals, a bad K, temperature or chunk size.
  """
  table = build_on_host(bank, k, temperature=temperature, query_chunk=query_chunk,
                         pool_chunk=pool_chunk, progress=progress, devices=devices)
  return on_default_device(table)


def on_default_device(table: TopKTable) -> TopKTable:
  """The table with its arrays on the default device."""
  return dataclasses.replace(table, indices=jnp.asarray(table.indices),
                             log_weights=jnp.asarray(table.log_weights),
                             truncated_mass=jnp.asarray(table.truncated_mass))


def place_topk_table(table: TopKTable, mesh: jax.sharding.Mesh, *,
                     max_replicated_bytes: int, axis_name: str = DATA_AXIS) -> TopKTable:
  """The table on `mesh`: replicated if it fits the budget, else split along its frame axis.

  A table split along the frames (`NamedSharding(mesh, P(None, axis_name))` for each of its
  arrays) holds an n-th of it on each of the axis's n devices; `swap_with_table` reads it
  inside jit all the same (the compiler turns its gather into one across devices), and draws
  the same frames as from a replicated table.

  Args:
    table: a table, on the host (NumPy arrays) or on devices.
    mesh: the mesh to place it on (e.g. the training step's, `nar.train.make_mesh()`).
    max_replicated_bytes: the largest `table.nbytes` replicated on every device.
    axis_name: the mesh axis that a table over budget is split along.

  Returns:
    The table with its arrays placed.

  Raises:
    ValueError: a table over budget whose frame count does not divide over the axis's
      devices.
  """
  if table.nbytes <= max_replicated_bytes:
    spec = jax.P()
  else:
    num_shards = mesh.shape[axis_name]
    max_frames = int(table.indices.shape[1])
    if max_frames % num_shards:
      raise ValueError(f"the table ({table.nbytes / 2**30:.2f} GiB, over the budget of "
                       f"{max_replicated_bytes / 2**30:.2f} GiB) cannot be split along its "
                       f"{max_frames} frames over {num_shards} devices")
    spec = jax.P(None, axis_name)
  sharding = jax.sharding.NamedSharding(mesh, spec)

  def put(array):
    if isinstance(array, jax.Array) and sharding.is_fully_addressable:
      return jax.device_put(array, sharding)
    host = np.asarray(array)
    # Each process puts the parts its own devices hold (the whole table is on every host).
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return dataclasses.replace(table, indices=put(table.indices),
                             log_weights=put(table.log_weights),
                             truncated_mass=put(table.truncated_mass))


@functools.partial(jax.jit, static_argnames=("per_frame_target",))
def _swap_with_table_jit(key, pose_windows, source_animal, source_frame_index, table, bank,
                         swap_probability, *, per_frame_target):
  batch, window_length, _ = pose_windows.shape
  target_key, draw_key = jax.random.split(key)
  target_shape = (batch, window_length) if per_frame_target else (batch,)
  target, swapped = swap_lib.draw_swap_targets(target_key, source_animal, bank.num_animals,
                                               swap_probability, target_shape)
  frame_target = jnp.broadcast_to(target.reshape(batch, -1), (batch, window_length))
  source = jnp.broadcast_to(source_animal.astype(jnp.int32)[:, None], (batch, window_length))
  # A thinned bank holds frames 0, s, 2s...: a frame takes the row of the pool frame at or
  # before it (floor division keeps negative indices, frames outside the bank, negative).
  frame = source_frame_index.astype(jnp.int32) // bank.pool_stride
  in_bank = (frame >= 0) & (frame < bank.num_frames[jnp.maximum(source, 0)])
  row = (jnp.maximum(source, 0), jnp.clip(frame, 0, table.indices.shape[1] - 1),
         jnp.maximum(frame_target, 0))
  candidates = table.indices[row]  # [B, T, K]
  logits = table.log_weights[row]
  choice = jax.random.categorical(draw_key, logits, axis=-1)
  drawn = jnp.take_along_axis(candidates, choice[..., None], axis=-1)[..., 0]
  drawn = jnp.where((frame_target >= 0) & in_bank & (drawn >= 0), drawn, -1)
  new_frames = bank.frames[jnp.maximum(frame_target, 0), jnp.maximum(drawn, 0)]
  swapped_windows = jnp.where((drawn >= 0)[..., None], new_frames.astype(pose_windows.dtype),
                              pose_windows)
  return swapped_windows, {"target_animal": target, "swapped": swapped, "frame_index": drawn}


def swap_with_table(key: jax.Array, pose_windows: jax.Array, source_animal: jax.Array,
                    source_frame_index: jax.Array, table: TopKTable,
                    bank: pose_bank.PoseBank, *, swap_probability: float = 0.5,
                    per_frame_target: bool = False) -> tuple[jax.Array, dict]:
  """Cross-animal pose swap drawn from a top-K table (a gather and a categorical over K).

  Same semantics as `nar.method.swap.swap_pose_windows`, with the draw restricted to the K nearest
  frames and the temperature of the table. The query frames are identified by their index in
  the bank, since the table holds neighbours of bank frames only.

  Args:
    key: PRNG key.
    pose_windows: `[B, T, D]` normalised pose windows (returned where not swapped).
    source_animal: `[B]` int bank row of each window's animal; negative: never swapped.
    source_frame_index: `[B, T]` int frame index of each pose frame within its animal's frames
      (the window's `bank_frame_index`); frames outside the animal's frames are unchanged.
    table: built from `bank` by `build_topk_table`.
    bank: the training animals' frames. A bank thinned to every s-th frame
      (`bank.pool_stride`) has a table of neighbours of those frames only: frame i of a window
      is then swapped by the neighbours of frame `s * (i // s)`, the pool frame at or before it.
    swap_probability: probability that a window is swapped.
    per_frame_target: draw ŝ per frame instead of per window.

  Returns:
    `(swapped_windows [B, T, D], info)`, info as in `nar.method.swap.swap_pose_windows`.

  Raises:
    ValueError: shapes that do not fit the bank, or a table of another bank.
  """
  swap_lib.check_windows(pose_windows, source_animal, bank)
  if tuple(source_frame_index.shape) != tuple(pose_windows.shape[:2]):
    raise ValueError(f"source_frame_index must be [B, T]={list(pose_windows.shape[:2])}, got "
                     f"shape {source_frame_index.shape}")
  if table.animals != bank.animals or table.indices.shape[:2] != bank.frames.shape[:2]:
    raise ValueError(f"the table was built for animals {list(table.animals)} with "
                     f"{table.indices.shape[1]} frames, the bank holds {list(bank.animals)} "
                     f"with {bank.frames.shape[1]}")
  swap_lib.check_settings(swap_probability=swap_probability)
  return _swap_with_table_jit(key, pose_windows, source_animal, source_frame_index, table,
                              bank, swap_probability, per_frame_target=per_frame_target)
