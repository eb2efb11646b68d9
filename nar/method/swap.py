r"""Cross-animal pose swapping (seed eq. 2): an exact, streamed nearest-pose sampler.

For a pose frame b_k of a training animal s, the swap draws a frame b_l of another training
animal ŝ with

    P(l) ∝ w_l = exp(-||b_l - b_k||_2 / temperature)        over ALL frames l of ŝ

(temperature 1 is the paper's formula; the distance is Euclidean, not squared). A bank may
weigh the features: with per-feature weights w_i (`make_pose_bank(..., distance_weights=w)`,
from a behaviour's declared swap weights), the distance is sqrt(sum_i w_i (b_l,i - b_k,i)^2),
computed as the Euclidean distance of queries and pool frames scaled by sqrt(w) (the bank's
`distance_scale`); the frames swapped in are the unscaled ones. Held-out animals are never in
the pool: a `PoseBank` holds the training animals only (`nar.method.pose_bank`).

Algorithm: a two-level, streamed exponential race (Gumbel-max), exact in distribution.
  1. The pool is cut into fixed blocks of `FRAME_BLOCK` consecutive frames. Streaming over
     pool chunks (whole numbers of blocks), the kernel computes the distances of a query chunk
     to a pool chunk with the matrix form ||a||² + ||b||² - 2 a·b (clamped at 0 before the
     square root), the log-weight of every block, log W_b = log Σ_{l in b} w_l (a log-sum-exp
     shifted by the block's nearest frame, so it never under- or overflows), and keeps a
     running argmin over blocks of log E_b - log W_b with E_b ~ Exp(1): block b wins with
     probability W_b / Σ W (the exponential race, i.e. Gumbel-max over log W_b).
  2. Within the winning block it recomputes the FRAME_BLOCK distances and draws frame l with
     probability w_l / W_b by a second exponential race over the frames.
  So P(l) = W_b / W · w_l / W_b = w_l / W exactly. Memory is O(query_chunk × pool_chunk), never
  O(queries × pool), and the same code runs on CPU, GPU and TPU. Drawing per block rather than
  per frame matters for speed: one random variate and two logs per (query, frame) pair cost
  more than the 90-dim distance itself on a CPU, while one exp per pair and one variate per
  block bring the kernel close to the bare distance matmul.

Noise. Each exponential variate is a pure function of (key, global query id, block or frame
index within the animal): a counter-based hash (`_mix32`, a bijective 32-bit integer mixer with
full avalanche, applied to per-query and per-block/frame words) gives 32 random bits, mapped
to u ∈ [2^-33, 1 - 2^-24] and log E = log(-log1p(-u)). The blocks are fixed and the query and
pool ids global, so the drawn index does not depend on the chunk sizes for the same key (the
tests check exact equality; the only caveat is the last-bit rounding of the distance matmul,
which could in principle differ between matmul shapes and flip a near-exact tie). The hash
replaces `jax.random` because threefry per chunk would cost more than the distance matmul on
a CPU. Resolving u down to 2^-33 keeps the tail of small E (the winners) accurate to
Gumbel values of 22.9 (exceeded with probability 1e-10); the draw is exact up to this and to
the quality of the 32-bit hash.

Grouping by target. Each query only competes within its target animal's pool. The kernel sorts
the queries by target animal and cuts the sorted queries into query chunks; a chunk scans the
pool chunks of the animals present in it only, with the other queries of the chunk masked. The
work is at most (queries + animals × query_chunk) × pool frames, so one ŝ per window and one ŝ
per frame cost about the same, and windows that are not swapped cost nothing. Banks may hold
animals of different sizes: the scan of an animal stops at its last block.

Few behaviour dimensions. For ball velocities (D = 3) the scan's work is all pool length and
no arithmetic: `swap_pose_windows(..., cells=swap_cells.build_cell_index(bank))` draws from the
same distribution by rejection from bounding boxes of cells of frames (`nar.method.swap_cells`),
scanning one box per cell instead of every frame; the train step does so for behaviour of at
most `swap_cells.MAX_CELL_DIM` dimensions (`swap.kernel="auto"`).

Numerics: the matmul form loses about 1e-7 × ||b||² of the squared distance to cancellation,
i.e. distances below ~1e-3 for unit-scale poses are not resolved; irrelevant at temperature 1.
Matmuls run at `Precision.HIGHEST` so that GPUs do not fall back to TF32.
"""

from __future__ import annotations

import functools

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from nar.method import pose_bank
from nar.method import swap_cells


# Chunk sizes tuned on a 2-core CPU (see benchmarks/README.md); on a GPU larger chunks (e.g.
# 4096 x 16384) amortise the loop overhead better.
DEFAULT_QUERY_CHUNK = 512
DEFAULT_POOL_CHUNK = 2048
# A query chunk scans the pool of every target animal present in it, so the work of a batch of
# N frames over A target animals is at most (N + A × query_chunk) × pool frames: batches of
# windows, whose targets are spread over the animals, want smaller query chunks.
DEFAULT_WINDOW_QUERY_CHUNK = 128

# Odd constants that decorrelate the query, frame and block streams of the hash (public, like
# `seed_words`, so that a reference implementation can reproduce the noise).
QUERY_STREAM = 0x9E3779B9
FRAME_STREAM = 0x632BE5AB
BLOCK_STREAM = 0x2545F491


# ------------------------------------------------------------------------------------------
# Counter-based Gumbel noise
# ------------------------------------------------------------------------------------------


def _mix32(x: jax.Array) -> jax.Array:
  """A bijective 32-bit integer mixer with full avalanche (Wellons' `lowbias32`, tuned)."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x21F0AAAD)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x735A2D97)
  return x ^ (x >> 15)


def seed_words(key: jax.Array) -> jax.Array:
  """`[3]` uint32 words of a PRNG key (any key implementation) that seed the hash streams."""
  return jax.random.bits(key, (3,), jnp.uint32)


def _stream_words(ids: jax.Array, seed: jax.Array, stream: int) -> jax.Array:
  """uint32 hash words of uint32 `ids` (queries, blocks or frames), one stream per seed."""
  return _mix32(_mix32(ids ^ seed) + jnp.uint32(stream))


def _log_exponential(bits: jax.Array) -> jax.Array:
  """log(E), E ~ Exp(1) (i.e. minus a Gumbel variate), from uniform uint32 bits."""
  # log1p(-u) with u resolved down to 2^-33 keeps small E, i.e. the large Gumbel values that
  # win, accurate; 1 - 2^-24 is the largest float32 below 1.
  u = bits.astype(jnp.float32) * jnp.float32(2.0**-32) + jnp.float32(2.0**-33)
  u = jnp.minimum(u, jnp.float32(1.0 - 2.0**-24))
  return jnp.log(-jnp.log1p(-u))


def _first_argmin(keys: jax.Array, ids: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Min over the last axis of `[Q, P]` keys and the first of the ids attaining it.

  Two plain reductions: XLA's CPU argmin is a variadic (value, index) reduction that does not
  vectorise. The lowest id wins exact ties, as one unchunked argmin would.

  Args:
    keys: `[Q, P]`.
    ids: int32 ids of the keys, broadcastable to `[Q, P]`.

  Returns:
    `(min [Q], id [Q])`.
  """
  best = jnp.min(keys, axis=-1)
  best_id = jnp.min(jnp.where(keys == best[:, None], ids, jnp.iinfo(jnp.int32).max), axis=-1)
  return best, best_id


# ------------------------------------------------------------------------------------------
# Streamed kernel
# ------------------------------------------------------------------------------------------


def _block_race_keys(distances: jax.Array, block_noise: jax.Array) -> jax.Array:
  """`[Q, P / FRAME_BLOCK]` race keys log E_b - log W_b of the blocks of a pool chunk.

  Args:
    distances: `[Q, P]` scaled distances d / temperature, +inf where masked.
    block_noise: `[Q, P / FRAME_BLOCK]` log E_b.
  """
  num_queries, chunk = distances.shape
  blocks = distances.reshape(num_queries, chunk // pose_bank.FRAME_BLOCK, pose_bank.FRAME_BLOCK)
  # Shifting by the block's nearest frame keeps the sum in [1, FRAME_BLOCK] at any temperature.
  nearest = jnp.min(blocks, axis=-1)
  shifted_sum = jnp.sum(jnp.exp(nearest[..., None] - blocks), axis=-1)
  # log W_b = log(shifted_sum) - nearest; a fully masked block (nearest = inf) never wins.
  return jnp.where(nearest < jnp.inf, block_noise + nearest - jnp.log(shifted_sum), jnp.inf)


def _draw_grouped(seed: jax.Array, queries: jax.Array, query_ids: jax.Array,
                  query_target: jax.Array, frames: jax.Array, valid: jax.Array,
                  num_frames: jax.Array, inv_temperature: jax.Array, query_chunk: int,
                  pool_chunk: int, distance_scale: jax.Array | None = None) -> jax.Array:
  """Exact draw of one pool frame per query from its target animal's pool.

  Args:
    seed: `[3]` uint32 words from `seed_words`.
    queries: `[N, D]` float32 query frames.
    query_ids: `[N]` uint32 global ids that index the noise.
    query_target: `[N]` int32 bank row to draw from; -1 draws nothing.
    frames, valid, num_frames: the bank's arrays (max_frames a multiple of FRAME_BLOCK).
    inv_temperature: scalar 1 / temperature.
    query_chunk: static query chunk (clamped to the number of queries).
    pool_chunk: static pool chunk, a multiple of FRAME_BLOCK (clamped to max_frames).
    distance_scale: `[D]` per-feature scale of the weighted distance (`PoseBank`), or None.

  Returns:
    `[N]` int32 frame index within the target animal, -1 where nothing was drawn (target -1,
    non-finite query).
  """
  num_queries, dim = queries.shape
  num_animals, max_frames, _ = frames.shape
  query_chunk = max(1, min(query_chunk, num_queries))
  pool_chunk = min(pool_chunk, max_frames)
  num_query_chunks = -(-num_queries // query_chunk)
  padded = num_query_chunks * query_chunk

  finite = jnp.all(jnp.isfinite(queries), axis=-1)
  query_target = jnp.where(finite, query_target, -1)
  queries = pose_bank.to_distance_space(jnp.where(finite[:, None], queries, 0.0),
                                        distance_scale)
  # Sorting by target makes a query chunk span few animals, so few pools are scanned for it.
  order = jnp.argsort(query_target, stable=True)
  pad = padded - num_queries

  def sorted_and_padded(x, fill):
    return jnp.pad(x[order], [(0, pad)] + [(0, 0)] * (x.ndim - 1), constant_values=fill)

  chunks = (
      sorted_and_padded(queries, 0.0).reshape(num_query_chunks, query_chunk, dim),
      sorted_and_padded(query_ids, 0).reshape(num_query_chunks, query_chunk),
      sorted_and_padded(query_target, -1).reshape(num_query_chunks, query_chunk),
  )
  chunk_counts = pose_bank.pool_chunk_counts(num_frames, pool_chunk)
  animal_rows = jnp.arange(num_animals, dtype=jnp.int32)
  block_offsets = jnp.arange(pool_chunk // pose_bank.FRAME_BLOCK, dtype=jnp.int32)
  frame_offsets = jnp.arange(pose_bank.FRAME_BLOCK, dtype=jnp.int32)

  def draw_chunk(chunk):
    chunk_queries, chunk_ids, chunk_target = chunk
    present = jnp.any(chunk_target[:, None] == animal_rows[None, :], axis=0)
    steps = jnp.where(present, chunk_counts, 0)
    step_ends = jnp.cumsum(steps)
    query_sqnorm = jnp.sum(chunk_queries * chunk_queries, axis=-1)
    query_words = _stream_words(chunk_ids, seed[0], QUERY_STREAM)

    # Level 1: a running exponential race over the blocks of the target's pool.
    def scan_pool_chunk(step, carry):
      best_key, best_block = carry
      animal = jnp.searchsorted(step_ends, step, side="right").astype(jnp.int32)
      pool_chunk_index = step - (step_ends[animal] - steps[animal])
      pool, pool_ok, pool_ids = pose_bank.read_pool_chunk(frames, valid, animal,
                                                          pool_chunk_index, pool_chunk)
      # Scaling each chunk as it is read, rather than keeping a scaled copy of the bank, costs
      # one multiply per pool value against D per (query, frame) pair of the matmul.
      pool = pose_bank.to_distance_space(pool, distance_scale)
      # Queries of other targets in this chunk are masked out through an infinite norm.
      masked_sqnorm = jnp.where(chunk_target == animal, query_sqnorm, jnp.inf)
      distances = pose_bank.scaled_distances(chunk_queries, masked_sqnorm, pool, pool_ok,
                                             inv_temperature)
      block_ids = pool_ids[0] // pose_bank.FRAME_BLOCK + block_offsets
      block_words = _stream_words(block_ids.astype(jnp.uint32), seed[2], BLOCK_STREAM)
      block_noise = _log_exponential(_mix32(query_words[:, None] ^ block_words[None, :]))
      chunk_key, chunk_block = _first_argmin(_block_race_keys(distances, block_noise),
                                             block_ids[None, :])
      # Strictly less, so exact ties go to the lower block as in one unchunked argmin;
      # infinite keys (masked blocks) never win.
      better = chunk_key < best_key
      return (jnp.where(better, chunk_key, best_key),
              jnp.where(better, chunk_block, best_block))

    init = (jnp.full((query_chunk,), jnp.inf, jnp.float32),
            jnp.full((query_chunk,), -1, jnp.int32))
    _, best_block = lax.fori_loop(0, step_ends[-1], scan_pool_chunk, init)

    # Level 2: an exponential race over the frames of the winning block.
    drew_block = best_block >= 0
    animal = jnp.maximum(chunk_target, 0)[:, None]
    frame_ids = jnp.maximum(best_block, 0)[:, None] * pose_bank.FRAME_BLOCK + frame_offsets[None, :]
    # [query_chunk, FRAME_BLOCK, D]
    candidates = pose_bank.to_distance_space(frames[animal, frame_ids], distance_scale)
    candidate_ok = valid[animal, frame_ids] & drew_block[:, None]
    cross = jnp.einsum("qd,qfd->qf", chunk_queries, candidates,
                       precision=lax.Precision.HIGHEST)
    candidate_sqnorm = jnp.where(candidate_ok, jnp.sum(candidates * candidates, axis=-1),
                                 jnp.inf)
    sq_dist = (query_sqnorm[:, None] + candidate_sqnorm) - 2.0 * cross
    distances = jnp.sqrt(jnp.maximum(sq_dist, 0.0)) * inv_temperature
    frame_words = _stream_words(frame_ids.astype(jnp.uint32), seed[1], FRAME_STREAM)
    frame_key, drawn = _first_argmin(
        distances + _log_exponential(_mix32(query_words[:, None] ^ frame_words)), frame_ids)
    return jnp.where(drew_block & (frame_key < jnp.inf), drawn, -1)

  drawn_sorted = lax.map(draw_chunk, chunks).reshape(padded)[:num_queries]
  return jnp.zeros((num_queries,), jnp.int32).at[order].set(drawn_sorted)


# ------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def check_settings(*, swap_probability=None, temperature=None, query_chunk=None,
                   pool_chunk=None) -> None:
  """Checks the swap's settings that are given (and concrete, not traced).

  The kernels call it; a trainer can call it on its config before building anything.

  Raises:
    ValueError: naming the setting that is out of range.
  """
  if (swap_probability is not None and _is_concrete(swap_probability)
      and not 0.0 <= float(swap_probability) <= 1.0):
    raise ValueError(f"swap_probability must lie in [0, 1], got {swap_probability}")
  if temperature is not None and _is_concrete(temperature) and not float(temperature) > 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  for name, value in (("query_chunk", query_chunk), ("pool_chunk", pool_chunk)):
    if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
      raise ValueError(f"{name} must be a positive int, got {value!r}")
  if pool_chunk is not None and pool_chunk % pose_bank.FRAME_BLOCK:
    raise ValueError(f"pool_chunk must be a multiple of FRAME_BLOCK={pose_bank.FRAME_BLOCK} "
                     f"(the draw's fixed block of frames), got {pool_chunk}")


@functools.partial(jax.jit, static_argnames=("query_chunk", "pool_chunk"))
def _draw_pool_frames_jit(key, queries, pool, pool_valid, query_offset, temperature, *,
                          query_chunk, pool_chunk):
  flat = queries.reshape(-1, queries.shape[-1]).astype(jnp.float32)
  ids = (jnp.arange(flat.shape[0], dtype=jnp.uint32) + query_offset.astype(jnp.uint32))
  # A one-animal bank: the pool padded to whole blocks.
  pad = -pool.shape[0] % pose_bank.FRAME_BLOCK
  frames = jnp.pad(pool.astype(jnp.float32), ((0, pad), (0, 0)))[None]
  valid = jnp.pad(pool_valid, (0, pad))[None]
  drawn = _draw_grouped(
      seed_words(key), flat, ids, jnp.zeros((flat.shape[0],), jnp.int32), frames, valid,
      jnp.array([pool.shape[0]], jnp.int32), 1.0 / jnp.asarray(temperature, jnp.float32),
      query_chunk, pool_chunk)
  return drawn.reshape(queries.shape[:-1])


def draw_pool_frames(key: jax.Array, queries: jax.Array, pool: jax.Array,
                     pool_valid: jax.Array | None = None, *, temperature: float = 1.0,
                     query_chunk: int = DEFAULT_QUERY_CHUNK,
                     pool_chunk: int = DEFAULT_POOL_CHUNK, query_offset: int = 0) -> jax.Array:
  """Draws, for every query frame, a pool frame l with P(l) ∝ exp(-||b_l - q|| / temperature).

  The exact streamed kernel on a single pool. The draw depends only on `key`, the query's id
  (`query_offset` + its flat position) and the pool, never on the chunk sizes, so a large job
  can be split over calls by advancing `query_offset`.

  Args:
    key: PRNG key.
    queries: `[..., D]` query frames.
    pool: `[M, D]` pool frames.
    pool_valid: `[M]` bool, False for frames that must never be drawn; None if all may be.
    temperature: > 0; 1 is the paper's formula, smaller values approach nearest neighbour.
    query_chunk: query frames per chunk (static).
    pool_chunk: pool frames per chunk (static), a multiple of `FRAME_BLOCK`.
    query_offset: id of the first query (for splitting a job over calls).

  Returns:
    `[...]` int32 index into `pool`; -1 for a query with non-finite values or if no pool frame
    is valid.
  """
  queries = jnp.asarray(queries)
  pool = jnp.asarray(pool)
  if pool.ndim != 2 or queries.ndim < 1 or queries.shape[-1] != pool.shape[-1]:
    raise ValueError(f"queries [..., D] and pool [M, D] must share D; got queries "
                     f"{queries.shape}, pool {pool.shape}")
  if pool.shape[0] == 0:
    raise ValueError("the pool is empty")
  if pool_valid is None:
    pool_valid = jnp.ones(pool.shape[:1], bool)
  pool_valid = jnp.asarray(pool_valid, bool)
  if pool_valid.shape != pool.shape[:1]:
    raise ValueError(f"pool_valid must be [{pool.shape[0]}], got {pool_valid.shape}")
  check_settings(temperature=temperature, query_chunk=query_chunk, pool_chunk=pool_chunk)
  return _draw_pool_frames_jit(key, queries, pool, pool_valid, jnp.asarray(query_offset),
                               temperature, query_chunk=query_chunk, pool_chunk=pool_chunk)


def draw_swap_targets(key: jax.Array, source_animal: jax.Array, num_animals: int,
                      swap_probability, shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
  """Draws ŝ ≠ s uniformly among the bank's animals and which windows are swapped.

  Args:
    key: PRNG key.
    source_animal: `[B]` bank row of each window's animal (negative: not in the bank).
    num_animals: animals in the bank (>= 2).
    swap_probability: probability that a window is swapped.
    shape: `(B,)` for one ŝ per window or `(B, T)` for one per frame.

  Returns:
    `(target [*shape] int32, swapped [B] bool)`; target is -1 where the window is not swapped.
  """
  target_key, swap_key = jax.random.split(key)
  source = source_animal.astype(jnp.int32).reshape((-1,) + (1,) * (len(shape) - 1))
  other = jax.random.randint(target_key, shape, 0, num_animals - 1, jnp.int32)
  target = other + (other >= source).astype(jnp.int32)
  swapped = (jax.random.bernoulli(swap_key, swap_probability, source_animal.shape)
             & (source_animal >= 0))
  swapped_like_target = swapped.reshape((-1,) + (1,) * (len(shape) - 1))
  return jnp.where(swapped_like_target, target, -1), swapped


def _draw_bank_frames(key, queries, query_target, bank, inv_temperature, cells, query_chunk,
                      pool_chunk, group_size=1):
  """`[N]` exact draws from the bank: by the cells when given, else by the streamed kernel.

  Queries that the cells' rejection rounds leave without a frame take the streamed kernel's
  (exact too: a draw after rejected trials has the target distribution).
  """
  query_ids = jnp.arange(queries.shape[0], dtype=jnp.uint32)
  if cells is None:
    return _draw_grouped(seed_words(key), queries, query_ids, query_target, bank.frames,
                         bank.valid, bank.num_frames, inv_temperature, query_chunk, pool_chunk,
                         bank.distance_scale)
  rejection_key, rest_key = jax.random.split(key)
  drawn, done = swap_cells.draw_by_rejection(rejection_key, queries, query_target, bank, cells,
                                             inv_temperature, group_size=group_size)

  def streamed_rest(drawn):
    rest = _draw_grouped(seed_words(rest_key), queries, query_ids,
                         jnp.where(done, -1, query_target), bank.frames, bank.valid,
                         bank.num_frames, inv_temperature, query_chunk, pool_chunk,
                         bank.distance_scale)
    return jnp.where(done, drawn, rest)

  return lax.cond(jnp.all(done), lambda drawn: drawn, streamed_rest, drawn)


@functools.partial(jax.jit, static_argnames=("per_frame_target", "query_chunk", "pool_chunk"))
def _swap_pose_windows_jit(key, pose_windows, source_animal, bank, swap_probability,
                           temperature, cells, *, per_frame_target, query_chunk, pool_chunk):
  batch, window_length, dim = pose_windows.shape
  num_queries = batch * window_length
  target_key, draw_key = jax.random.split(key)
  target_shape = (batch, window_length) if per_frame_target else (batch,)
  target, swapped = draw_swap_targets(target_key, source_animal, bank.num_animals,
                                      swap_probability, target_shape)
  frame_target = jnp.broadcast_to(target.reshape(batch, -1), (batch, window_length)).reshape(-1)
  queries = pose_windows.reshape(num_queries, dim).astype(jnp.float32)
  # Query ids are window-major frame positions, so a window's draw does not depend on which
  # other windows are swapped.
  # Frames of a window share their target unless it is drawn per frame, so groups of them
  # may share the cells' envelope.
  group_size = 1 if per_frame_target else max(
      g for g in range(1, swap_cells.DEFAULT_GROUP_SIZE + 1) if window_length % g == 0)
  drawn = _draw_bank_frames(draw_key, queries, frame_target, bank,
                            1.0 / jnp.asarray(temperature, jnp.float32), cells, query_chunk,
                            pool_chunk, group_size)
  # The distance is weighted, the frames swapped in are the bank's own.
  replaced = drawn >= 0
  new_frames = bank.frames[jnp.maximum(frame_target, 0), jnp.maximum(drawn, 0)]
  swapped_windows = jnp.where(replaced[:, None], new_frames.astype(pose_windows.dtype),
                              pose_windows.reshape(num_queries, dim))
  info = {
      "target_animal": target,
      "swapped": swapped,
      "frame_index": drawn.reshape(batch, window_length),
  }
  return swapped_windows.reshape(batch, window_length, dim), info


def check_windows(pose_windows, source_animal, bank: pose_bank.PoseBank) -> None:
  """Raises ValueError unless `[B, T, D]` windows and `[B]` sources fit the bank."""
  if bank.num_animals < 2:
    raise ValueError(f"the swap needs at least two training animals, the bank has "
                     f"{list(bank.animals)}")
  if len(pose_windows.shape) != 3:
    raise ValueError(f"pose_windows must be [B, T, D], got shape {pose_windows.shape}")
  if pose_windows.shape[-1] != bank.pose_dim:
    raise ValueError(f"pose windows have D={pose_windows.shape[-1]} but the bank's frames "
                     f"have D={bank.pose_dim}")
  if tuple(source_animal.shape) != tuple(pose_windows.shape[:1]):
    raise ValueError(f"source_animal must be [B]=[{pose_windows.shape[0]}], got shape "
                     f"{source_animal.shape}")


def swap_pose_windows(key: jax.Array, pose_windows: jax.Array, source_animal: jax.Array,
                      bank: pose_bank.PoseBank, *, swap_probability: float = 0.5,
                      temperature: float = 1.0, per_frame_target: bool = False,
                      query_chunk: int = DEFAULT_WINDOW_QUERY_CHUNK,
                      pool_chunk: int = DEFAULT_POOL_CHUNK,
                      cells: swap_cells.CellIndex | None = None) -> tuple[jax.Array, dict]:
  """Cross-animal pose swap of a batch of windows, with the exact full-softmax draw.

  With probability `swap_probability` a window of animal s gets a target animal ŝ ≠ s drawn
  uniformly among the bank's (training) animals, and each of its frames b_k is replaced by a
  frame b_l of ŝ with P(l) ∝ exp(-||b_l - b_k|| / temperature) over every valid frame of ŝ
  (the distance weighted per feature when the bank has a `distance_scale`). Other windows are
  returned unchanged. Runs inside a jitted training step (shapes are checked
  here, before tracing the kernel); the neural window is not touched.

  Args:
    key: PRNG key.
    pose_windows: `[B, T, D]` normalised pose windows.
    source_animal: `[B]` int bank row of each window's animal (see `bank_rows`); windows with
      a negative row (animals not in the bank) are never swapped.
    bank: the training animals' frames.
    swap_probability: probability that a window is swapped (0 leaves all, 1 swaps all).
    temperature: > 0; 1 is the paper's formula.
    per_frame_target: draw ŝ per frame instead of per window (an ablation).
    query_chunk: query frames per chunk (static); see `DEFAULT_WINDOW_QUERY_CHUNK`.
    pool_chunk: pool frames per chunk (static), a multiple of `FRAME_BLOCK`.
    cells: `nar.method.swap_cells.build_cell_index(bank)` to draw by rejection from the
      cells' boxes instead of scanning every pool frame: the same distribution, far less work
      for low-dimensional behaviour (`swap_cells.MAX_CELL_DIM`); None scans.

  Returns:
    `(swapped_windows [B, T, D], info)` with info:
      `target_animal`: `[B]` (`[B, T]` per frame) int32 bank row of ŝ, -1 if not swapped;
      `swapped`: `[B]` bool;
      `frame_index`: `[B, T]` int32 frame of ŝ drawn, -1 where the frame is unchanged (not
        swapped, or a non-finite input frame).

  Raises:
    ValueError: bank with fewer than two animals, shapes that do not fit the bank, a
      non-positive temperature or bad chunk sizes.
  """
  check_windows(pose_windows, source_animal, bank)
  check_settings(swap_probability=swap_probability, temperature=temperature,
                 query_chunk=query_chunk, pool_chunk=pool_chunk)
  if cells is not None:
    swap_cells.check_cells(cells, bank)
  return _swap_pose_windows_jit(key, pose_windows, source_animal, bank, swap_probability,
                                temperature, cells, per_frame_target=per_frame_target,
                                query_chunk=query_chunk, pool_chunk=pool_chunk)
