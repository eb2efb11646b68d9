"""The NumPy reference of the exact pose swap's kernel (`nar.method.swap.draw_pool_frames`),
which the tests and `benchmarks/swap.py` compare the kernel with.

It runs the same chunked two-level exponential race with the same counter-based noise in
float32 NumPy, so it draws the same frames up to float rounding of the matmul, `exp` and `log`.
Import it as `import reference_swap` from the tests (pytest puts `tests/` on the path) and as
`from tests import reference_swap` from the repository root.
"""

import jax
import numpy as np

from nar.method import swap
from nar.method.pose_bank import FRAME_BLOCK
from nar.method.swap import BLOCK_STREAM
from nar.method.swap import FRAME_STREAM
from nar.method.swap import QUERY_STREAM


def mix32(x: np.ndarray) -> np.ndarray:
  """NumPy twin of the swap's 32-bit hash mixer, on uint32 arrays."""
  x = x ^ (x >> np.uint32(16))
  x = x * np.uint32(0x21F0AAAD)
  x = x ^ (x >> np.uint32(15))
  x = x * np.uint32(0x735A2D97)
  return x ^ (x >> np.uint32(15))


def draw_pool_frames(key: jax.Array, queries: np.ndarray, pool: np.ndarray,
                     pool_valid: np.ndarray | None = None, *, temperature: float = 1.0,
                     query_chunk: int = swap.DEFAULT_QUERY_CHUNK,
                     pool_chunk: int = swap.DEFAULT_POOL_CHUNK) -> np.ndarray:
  """NumPy float32 twin of `swap.draw_pool_frames`: same noise, same chunked two-level race.

  Matches the JAX kernel up to float rounding differences of the matmul, `exp` and `log`.

  Args: as `swap.draw_pool_frames`, with `[Q, D]` queries.

  Returns:
    `[Q]` int32 index into `pool`.
  """
  swap.check_settings(query_chunk=query_chunk, pool_chunk=pool_chunk)
  seed = np.asarray(swap.seed_words(key))
  float32 = np.float32
  pad = -len(pool) % FRAME_BLOCK
  queries = np.asarray(queries, float32)
  pool_ok = np.ones(len(pool), bool) if pool_valid is None else np.asarray(pool_valid, bool)
  pool = np.pad(np.asarray(pool, float32), ((0, pad), (0, 0)))
  pool_ok = np.pad(pool_ok, (0, pad))
  pool_sqnorm = np.where(pool_ok, np.sum(pool * pool, axis=-1), float32(np.inf))
  inv_temperature = float32(1.0) / float32(temperature)

  def stream_words(ids, seed_word, stream):
    return mix32(mix32(ids.astype(np.uint32) ^ seed_word) + np.uint32(stream))

  def log_exponential(bits):
    u = bits.astype(float32) * float32(2.0**-32) + float32(2.0**-33)
    return np.log(-np.log1p(-np.minimum(u, float32(1.0 - 2.0**-24))))

  def scaled_distances(chunk, chunk_sqnorm, block, block_sqnorm):
    if block.ndim == 2:
      cross = chunk @ block.T
    else:
      cross = np.einsum("qd,qfd->qf", chunk, block)
    sq_dist = (chunk_sqnorm[:, None] + block_sqnorm) - float32(2.0) * cross
    return np.sqrt(np.maximum(sq_dist, float32(0.0))) * inv_temperature

  drawn = np.full(len(queries), -1, np.int32)
  with np.errstate(over="ignore", invalid="ignore"):
    frame_words = stream_words(np.arange(len(pool)), seed[1], FRAME_STREAM)
    block_words = stream_words(np.arange(len(pool) // FRAME_BLOCK), seed[2], BLOCK_STREAM)
    for q_start in range(0, len(queries), query_chunk):
      chunk = queries[q_start:q_start + query_chunk]
      query_words = stream_words(np.arange(q_start, q_start + len(chunk)), seed[0],
                                 QUERY_STREAM)
      chunk_sqnorm = np.sum(chunk * chunk, axis=-1)
      best_key = np.full(len(chunk), np.inf, float32)
      best_block = np.full(len(chunk), -1, np.int64)
      for p_start in range(0, len(pool), pool_chunk):
        rows = slice(p_start, p_start + pool_chunk)
        distances = scaled_distances(chunk, chunk_sqnorm, pool[rows], pool_sqnorm[None, rows])
        blocks = distances.reshape(len(chunk), -1, FRAME_BLOCK)
        nearest = blocks.min(axis=-1)
        shifted_sum = np.exp(nearest[..., None] - blocks).sum(axis=-1)
        block_ids = np.arange(p_start // FRAME_BLOCK, p_start // FRAME_BLOCK + blocks.shape[1])
        noise = log_exponential(mix32(query_words[:, None] ^ block_words[None, block_ids]))
        keys = np.where(nearest < np.inf, noise + nearest - np.log(shifted_sum), np.inf)
        chunk_best = keys.min(axis=-1)
        better = chunk_best < best_key
        best_key = np.where(better, chunk_best, best_key)
        best_block = np.where(better, block_ids[keys.argmin(axis=-1)], best_block)
      frame_ids = np.maximum(best_block, 0)[:, None] * FRAME_BLOCK + np.arange(FRAME_BLOCK)
      candidate_sqnorm = np.where(best_block[:, None] >= 0, pool_sqnorm[frame_ids],
                                  float32(np.inf))
      distances = scaled_distances(chunk, chunk_sqnorm, pool[frame_ids], candidate_sqnorm)
      keys = distances + log_exponential(mix32(query_words[:, None] ^
                                                      frame_words[frame_ids]))
      chosen = frame_ids[np.arange(len(chunk)), keys.argmin(axis=-1)]
      drawn[q_start:q_start + len(chunk)] = np.where(keys.min(axis=-1) < np.inf, chosen, -1)
  return drawn
