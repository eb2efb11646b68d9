"""The swap's pools: the training animals' pose frames in one padded, device-resident bank, and
the chunked reads of it and distances to its frames that the exact swap (`nar.method.swap`)
and the top-K table (`nar.method.swap_table`) share.

A `PoseBank` holds the training animals only, so held-out animals are never drawn. Its
frames are padded to whole blocks of `FRAME_BLOCK` frames, the unit of the swap's two-level
draw. A bank may weigh the features of the swap distance (`make_pose_bank(...,
distance_weights=w)`): the weighted distance sqrt(sum_i w_i (a_i - b_i)^2) is the Euclidean
distance of frames multiplied by sqrt(w) (`to_distance_space`), while the frames swapped in
are the unscaled ones.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping, Sequence

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from nar.data import pipeline
from nar.data import shards
from nar.data import windows

# Frames per block of the two-level draw. Fixed, so that the draw depends on the key only and
# not on the chunk sizes, which must be multiples of it; banks are padded to a multiple of it.
FRAME_BLOCK = 64


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=("frames", "valid", "num_frames", "distance_scale"),
                   meta_fields=("animals", "pool_stride"))
@dataclasses.dataclass(frozen=True)
class PoseBank:
  """Device-resident pose frames of the training animals: the pools of the swap.

  A pytree, so it can be passed to (and closed over by) a jitted training step.

  Attributes:
    frames: `[num_animals, max_frames, D]` float32 normalised pose, non-finite values set to 0;
      rows past an animal's frame count are zero padding (max_frames is a multiple of
      `FRAME_BLOCK`).
    valid: `[num_animals, max_frames]` True for frames that may be drawn: False for padding,
      for frames with missing keypoints and for non-finite frames.
    num_frames: `[num_animals]` int32 frame count of each animal (valid or not).
    animals: the training animals, in bank order (row a of `frames` is `animals[a]`).
    distance_scale: `[D]` float32 sqrt of each feature's weight in the swap distance: the
      distance is Euclidean between frames multiplied by it. None: the plain Euclidean
      distance (every weight 1).
    pool_stride: the bank holds every `pool_stride`-th frame of each animal (frames 0, s,
      2s...; `make_pose_bank`); row j of an animal is its frame `pool_stride * j`.
  """

  frames: jax.Array
  valid: jax.Array
  num_frames: jax.Array
  animals: tuple[str, ...]
  distance_scale: jax.Array | None = None
  pool_stride: int = 1

  @property
  def num_animals(self) -> int:
    return len(self.animals)

  @property
  def pose_dim(self) -> int:
    return int(self.frames.shape[-1])


def make_pose_bank(per_animal_frames: Mapping[str, np.ndarray],
                   valid_masks: Mapping[str, np.ndarray] | None,
                   training_animals: Sequence[str], *,
                   distance_weights: np.ndarray | None = None,
                   pool_stride: int = 1) -> PoseBank:
  """Stacks the pose frames of the training animals into a padded, device-resident bank.

  Animals of `per_animal_frames` that are not in `training_animals` (the held-out animals) are
  left out, so they can never be drawn. From a `nar.data.pipeline.PoseFrames` `b`:
  `make_pose_bank(dict(zip(b.animals, b.frames)), dict(zip(b.animals, b.valid)), training)`.

  Args:
    per_animal_frames: animal -> `[M_a, D]` normalised pose of every frame of the animal.
    valid_masks: animal -> `[M_a]` bool, False for frames with missing keypoints; None if all
      frames are complete. Frames with non-finite values are invalid in any case.
    training_animals: the animals whose frames form the pools, in bank order.
    distance_weights: `[D]` weight w_i >= 0 of each feature in the swap distance
      sqrt(sum_i w_i (a_i - b_i)^2) (`BehaviourSpec.swap_feature_weights()`); None, or all 1,
      is the plain Euclidean distance.
    pool_stride: keep every `pool_stride`-th frame of each animal only (frames 0, s, 2s...).
      Pose at 100 Hz changes little between neighbouring frames, so a pool thinned in time
      keeps nearly the same nearest neighbours for an s-th of the exact swap's cost; frame
      i of the bank is then frame `s * i` of the animal. A top-K table looks its rows up by
      the animal's frame index, so it needs 1.

  Returns:
    The bank, with its arrays on the default device.

  Raises:
    ValueError: a pool stride that is not a positive integer, fewer than two training
      animals, a training animal without frames or without a single valid frame, pose
      dimensions that differ between animals, a mask whose shape
      does not match its frames, or distance weights that are not `[D]`, finite, >= 0 and
      not all 0.
  """
  if not isinstance(pool_stride, (int, np.integer)) or isinstance(pool_stride, bool) or (
      pool_stride < 1):
    raise ValueError(f"the pool stride must be a positive integer, got {pool_stride!r}")
  animals = tuple(str(a) for a in training_animals)
  if len(set(animals)) != len(animals):
    raise ValueError(f"training animals must be distinct, got {list(animals)}")
  if len(animals) < 2:
    raise ValueError(
        f"the swap needs at least two training animals (a frame is swapped with another "
        f"animal's), got {list(animals)}")
  missing = [a for a in animals if a not in per_animal_frames]
  if missing:
    raise ValueError(f"no frames given for training animals {missing}")
  frames, valid = [], []
  for animal in animals:
    animal_frames = np.asarray(per_animal_frames[animal], np.float32)[::pool_stride]
    if animal_frames.ndim != 2:
      raise ValueError(f"frames of {animal!r} must be [num_frames, D], got shape "
                       f"{animal_frames.shape}")
    animal_valid = np.isfinite(animal_frames).all(axis=-1)
    if valid_masks is not None and animal in valid_masks:
      mask = np.asarray(valid_masks[animal], bool)[::pool_stride]
      if mask.shape != animal_valid.shape:
        raise ValueError(f"valid mask of {animal!r} has shape {mask.shape}, its frames "
                         f"{animal_frames.shape}")
      animal_valid &= mask
    if not animal_valid.any():
      kept = f" (one in {pool_stride} kept)" if pool_stride > 1 else ""
      raise ValueError(f"the pool of {animal!r} is empty: none of its {len(animal_frames)} "
                       f"frames{kept} is valid")
    # Missing values become 0 (the training mean of normalised pose, as in the input
    # pipeline) so that such frames still serve as queries of the top-K table.
    frames.append(np.where(np.isfinite(animal_frames), animal_frames, 0.0).astype(np.float32))
    valid.append(animal_valid)
  dims = {a: f.shape[1] for a, f in zip(animals, frames)}
  if len(set(dims.values())) != 1:
    raise ValueError(f"pose dimensions differ between animals: {dims}")
  # Padding to whole blocks lets every pool chunk cover whole blocks.
  max_frames = -(-max(len(f) for f in frames) // FRAME_BLOCK) * FRAME_BLOCK
  dim = frames[0].shape[1]
  padded_frames = np.zeros((len(animals), max_frames, dim), np.float32)
  padded_valid = np.zeros((len(animals), max_frames), bool)
  for row, (f, v) in enumerate(zip(frames, valid)):
    padded_frames[row, :len(f)] = f
    padded_valid[row, :len(v)] = v
  return PoseBank(frames=jnp.asarray(padded_frames), valid=jnp.asarray(padded_valid),
                  num_frames=jnp.asarray([len(f) for f in frames], jnp.int32), animals=animals,
                  distance_scale=_distance_scale(distance_weights, dim),
                  pool_stride=int(pool_stride))


def _distance_scale(distance_weights: np.ndarray | None, dim: int) -> jax.Array | None:
  """`[D]` sqrt of validated distance weights; None when every weight is 1."""
  if distance_weights is None:
    return None
  weights = np.asarray(distance_weights, np.float64)
  if weights.shape != (dim,):
    raise ValueError(f"distance_weights must be [D]=[{dim}], one per feature, got shape "
                     f"{weights.shape}")
  if not np.isfinite(weights).all() or (weights < 0).any() or not (weights > 0).any():
    raise ValueError(f"distance_weights must be finite, >= 0 and not all 0, got "
                     f"{weights.tolist()}")
  # All ones is the plain distance: keep the unweighted kernel, whose results it gives.
  if (weights == 1).all():
    return None
  return jnp.asarray(np.sqrt(weights), jnp.float32)


def to_distance_space(x: jax.Array, distance_scale: jax.Array | None) -> jax.Array:
  """Frames `[..., D]` scaled so that the weighted swap distance is their Euclidean one."""
  return x if distance_scale is None else x * distance_scale


def bank_rows(bank: PoseBank, animals: Sequence[str]) -> np.ndarray:
  """`[len(animals)]` int32 bank row of each animal, -1 for animals not in the bank.

  Maps a dataset's animal indices (e.g. the `animal` field of a window) to the
  `source_animal` rows that `nar.method.swap.swap_pose_windows` takes:
  `bank_rows(bank, dataset.animals)[i]`.
  """
  row_of = {a: r for r, a in enumerate(bank.animals)}
  return np.array([row_of.get(str(a), -1) for a in animals], np.int32)


# ------------------------------------------------------------------------------------------
# Chunked reads and distances
# ------------------------------------------------------------------------------------------


def read_pool_chunk(frames: jax.Array, valid: jax.Array, animal: jax.Array,
                    chunk: jax.Array, pool_chunk: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Chunk `chunk` of the pool of bank row `animal`, without padding the bank.

  The last chunk of a pool is shifted back so that it ends at `max_frames` (dynamic slices
  must lie inside the array); frames that an earlier chunk already covered are masked out.
  With `max_frames` and `pool_chunk` multiples of `FRAME_BLOCK` these are whole blocks.

  Returns:
    `(pool [pool_chunk, D], pool_ok [pool_chunk] bool, pool_ids [pool_chunk] int32)`, the ids
    being frame indices within the animal.
  """
  max_frames, dim = frames.shape[1], frames.shape[2]
  nominal_start = chunk * pool_chunk
  start = jnp.minimum(nominal_start, max_frames - pool_chunk)
  pool = lax.dynamic_slice(frames, (animal, start, 0), (1, pool_chunk, dim))[0]
  pool_ok = lax.dynamic_slice(valid, (animal, start), (1, pool_chunk))[0]
  pool_ids = start + jnp.arange(pool_chunk, dtype=jnp.int32)
  return pool, pool_ok & (pool_ids >= nominal_start), pool_ids


def scaled_distances(queries: jax.Array, query_sqnorm: jax.Array, pool: jax.Array,
                     pool_ok: jax.Array, inv_temperature: jax.Array) -> jax.Array:
  """`[Q, P]` ||q - b|| / temperature via the matmul form (clamped at 0 before the root).

  Masking is folded into the squared norms, which costs nothing per pair: a query whose
  `query_sqnorm` is +inf, or a pool frame with `pool_ok` False, gets distance +inf.
  """
  cross = lax.dot_general(queries, pool, (((1,), (1,)), ((), ())),
                          precision=lax.Precision.HIGHEST,
                          preferred_element_type=jnp.float32)
  pool_sqnorm = jnp.where(pool_ok, jnp.sum(pool * pool, axis=-1), jnp.inf)
  sq_dist = (query_sqnorm[:, None] + pool_sqnorm[None, :]) - 2.0 * cross
  return jnp.sqrt(jnp.maximum(sq_dist, 0.0)) * inv_temperature


def pool_chunk_counts(num_frames: jax.Array, pool_chunk: int) -> jax.Array:
  """`[A]` number of pool chunks that cover each animal's `num_frames` frames."""
  return (num_frames + pool_chunk - 1) // pool_chunk


def make_swap_bank(dataset: shards.ShardedDataset, normalizer: windows.PoseNormalizer,
                   animals: Sequence[str], *, pool_stride: int = 1) -> PoseBank:
  """The bank of a dataset's `animals`, weighted as the dataset's behaviour format declares.

  Their frames (`nar.data.pipeline.collect_pose_frames`) padded and stacked by
  `make_pose_bank`, with the swap distance of the dataset's behaviour format
  (`BehaviourSpec.swap_feature_weights`) and every `pool_stride`-th frame kept.
  """
  pools = pipeline.collect_pose_frames(dataset, normalizer, animals)
  return make_pose_bank(
      dict(zip(pools.animals, pools.frames)), dict(zip(pools.animals, pools.valid)),
      list(pools.animals), distance_weights=dataset.behaviour_spec.swap_feature_weights(),
      pool_stride=pool_stride)
