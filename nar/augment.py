"""Behavioural and neural augmentations, batched and on device, with explicit PRNG keys.

Every augmentation has a switch and a magnitude (0 switches it off) in a frozen dataclass, so
that configs can ablate each one. Pose augmentations act on normalised leg-relative pose
windows `[B, T, 90]` (6 legs x 5 joints x xyz); the geometric ones (scaling, shear, rotation,
mirror) treat each joint's three z-scored coordinates as a point, which is close to geometric
because the per-axis scales of the coordinates are similar. Neural augmentations mimic the
properties of two-photon imaging: shot noise, point-spread blur, registration error,
indicator expression (gain/offset), indicator kinetics (calcium smoothing, frame shift),
missing ROIs (erasing) and mixing with another clip.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from nar import keypoints


@dataclasses.dataclass(frozen=True)
class PoseAugmentation:
  """Magnitudes of the behavioural augmentations (0 = off)."""

  smoothing_sigma: float = 1.0  # max temporal Gaussian sigma, in window frames
  jitter_std: float = 0.05  # additive Gaussian noise
  scale: float = 0.1  # per-axis scale drawn in [1 - scale, 1 + scale]
  shear: float = 0.05  # off-diagonal shear in [-shear, shear]
  rotation_deg: float = 10.0  # rotation about the vertical axis
  mirror_probability: float = 0.5  # swap left and right legs, negate the lateral axis
  time_mask_frames: int = 4  # longest masked span of frames
  channel_mask_probability: float = 0.05  # each of the 30 keypoints zeroed with this prob


@dataclasses.dataclass(frozen=True)
class NeuralAugmentation:
  """Magnitudes of the neural augmentations (0 = off)."""

  shot_noise_std: float = 0.05  # noise std per sqrt(|signal| + 1)
  blur_sigma: float = 0.7  # max spatial Gaussian sigma in pixels (images only)
  shift_pixels: int = 1  # max translation (images only)
  gain: float = 0.2  # per-clip gain in [1 - gain, 1 + gain]
  offset: float = 0.1  # per-clip offset in [-offset, offset]
  calcium_tau_frames: float = 1.0  # max extra exponential smoothing time constant
  frame_shift: int = 1  # max shift of the clip in time
  erase_fraction: float = 0.25  # max side (images) or ROI fraction (traces) erased
  mix_weight: float = 0.1  # max weight of another clip of the batch mixed in


def _uniform(key, shape, magnitude):
  return jax.random.uniform(key, shape, minval=-magnitude, maxval=magnitude)


def _gaussian_smoothing_matrix(sigma: jax.Array, length: int) -> jax.Array:
  """`[B, T, T]` row-normalised Gaussian weights; sigma `[B]` (0 leaves the signal)."""
  t = jnp.arange(length, dtype=jnp.float32)
  distance = (t[:, None] - t[None, :]) ** 2
  sigma = jnp.maximum(sigma, 1e-3)[:, None, None]
  weights = jnp.exp(-0.5 * distance[None] / sigma ** 2)
  return weights / weights.sum(-1, keepdims=True)


def _exponential_smoothing_matrix(tau: jax.Array, length: int) -> jax.Array:
  """`[B, T, T]` causal exponential kernel (an indicator's decay); tau `[B]` in frames."""
  t = jnp.arange(length, dtype=jnp.float32)
  lag = t[:, None] - t[None, :]
  tau = jnp.maximum(tau, 1e-3)[:, None, None]
  weights = jnp.where(lag[None] >= 0, jnp.exp(-lag[None] / tau), 0.0)
  return weights / weights.sum(-1, keepdims=True)


def _time_shift(key, x: jax.Array, max_shift: int) -> jax.Array:
  """Shifts every clip in time by up to `max_shift` frames, repeating the edge frame."""
  batch, length = x.shape[:2]
  shift = jax.random.randint(key, (batch,), -max_shift, max_shift + 1)
  index = jnp.clip(jnp.arange(length)[None] - shift[:, None], 0, length - 1)
  return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


def _rotation_and_shear(key, batch: int, config: PoseAugmentation) -> jax.Array:
  """`[B, 3, 3]` random linear maps: rotation about z, then shear, then per-axis scaling."""
  k_angle, k_shear, k_scale = jax.random.split(key, 3)
  angle = jnp.deg2rad(_uniform(k_angle, (batch,), config.rotation_deg))
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  zero, one = jnp.zeros_like(angle), jnp.ones_like(angle)
  rotation = jnp.stack([jnp.stack([cos, -sin, zero], -1), jnp.stack([sin, cos, zero], -1),
                        jnp.stack([zero, zero, one], -1)], -2)
  shear = jnp.eye(3) + _uniform(k_shear, (batch, 3, 3), config.shear) * (1 - jnp.eye(3))
  scale = 1 + _uniform(k_scale, (batch, 3), config.scale)
  return scale[:, :, None] * (shear @ rotation)


def _mirror(key, pose: jax.Array, probability: float) -> jax.Array:
  """Swaps right and left legs and negates the lateral (y) axis, per window."""
  batch, length = pose.shape[:2]
  legs = pose.reshape(batch, length, keypoints.NUM_LEGS, keypoints.NUM_JOINTS_PER_LEG, 3)
  half = keypoints.NUM_LEGS // 2
  swapped = jnp.concatenate([legs[:, :, half:], legs[:, :, :half]], axis=2)
  swapped = swapped * jnp.array([1.0, -1.0, 1.0])
  flip = jax.random.bernoulli(key, probability, (batch,))[:, None, None, None, None]
  return jnp.where(flip, swapped, legs).reshape(pose.shape)


def augment_pose(key: jax.Array, pose: jax.Array, config: PoseAugmentation) -> jax.Array:
  """Augments normalised pose windows `[B, T, 90]`."""
  batch, length, dim = pose.shape
  keys = jax.random.split(key, 7)
  if config.smoothing_sigma > 0:
    sigma = jax.random.uniform(keys[0], (batch,), maxval=config.smoothing_sigma)
    pose = jnp.einsum("bst,btd->bsd", _gaussian_smoothing_matrix(sigma, length), pose)
  if config.rotation_deg > 0 or config.shear > 0 or config.scale > 0:
    points = pose.reshape(batch, length, dim // 3, 3)
    transform = _rotation_and_shear(keys[1], batch, config)
    pose = jnp.einsum("bij,btkj->btki", transform, points).reshape(pose.shape)
  if config.mirror_probability > 0:
    pose = _mirror(keys[2], pose, config.mirror_probability)
  if config.jitter_std > 0:
    pose = pose + config.jitter_std * jax.random.normal(keys[3], pose.shape)
  if config.time_mask_frames > 0:
    span = jax.random.randint(keys[4], (batch, 1), 0, config.time_mask_frames + 1)
    start = jax.random.randint(keys[5], (batch, 1), 0, length)
    t = jnp.arange(length)[None]
    pose = jnp.where(((t >= start) & (t < start + span))[:, :, None], 0.0, pose)
  if config.channel_mask_probability > 0:
    keep = ~jax.random.bernoulli(keys[6], config.channel_mask_probability,
                                 (batch, 1, dim // 3, 1))
    pose = (pose.reshape(batch, length, dim // 3, 3) * keep).reshape(pose.shape)
  return pose


def _blur_matrix(sigma: jax.Array, size: int) -> jax.Array:
  return _gaussian_smoothing_matrix(sigma, size)


def augment_neural(key: jax.Array, neural: jax.Array, config: NeuralAugmentation) -> jax.Array:
  """Augments neural windows: images `[B, T, H, W]` or ROI traces `[B, T, R]`."""
  is_image = neural.ndim == 4
  batch, length = neural.shape[:2]
  keys = jax.random.split(key, 10)
  per_clip = (batch,) + (1,) * (neural.ndim - 1)
  if config.calcium_tau_frames > 0:
    tau = jax.random.uniform(keys[0], (batch,), maxval=config.calcium_tau_frames)
    neural = jnp.einsum("bst,bt...->bs...", _exponential_smoothing_matrix(tau, length), neural)
  if config.frame_shift > 0:
    neural = _time_shift(keys[1], neural, config.frame_shift)
  if is_image and config.blur_sigma > 0:
    sigma = jax.random.uniform(keys[2], (batch,), maxval=config.blur_sigma)
    rows = _blur_matrix(sigma, neural.shape[2])
    cols = _blur_matrix(sigma, neural.shape[3])
    neural = jnp.einsum("bij,btjk,blk->btil", rows, neural, cols)
  if is_image and config.shift_pixels > 0:
    shifts = jax.random.randint(keys[3], (batch, 2), -config.shift_pixels,
                                config.shift_pixels + 1)
    neural = jax.vmap(lambda clip, s: jnp.roll(clip, s, axis=(1, 2)))(neural, shifts)
  if config.gain > 0:
    neural = neural * (1 + _uniform(keys[4], per_clip, config.gain))
  if config.offset > 0:
    neural = neural + _uniform(keys[5], per_clip, config.offset)
  if config.erase_fraction > 0:
    neural = _erase(keys[6], neural, config.erase_fraction)
  if config.mix_weight > 0:
    weight = jax.random.uniform(keys[7], per_clip, maxval=config.mix_weight)
    other = jnp.roll(neural, 1, axis=0)
    neural = (1 - weight) * neural + weight * other
  if config.shot_noise_std > 0:
    scale = config.shot_noise_std * jnp.sqrt(jnp.abs(neural) + 1.0)
    neural = neural + scale * jax.random.normal(keys[8], neural.shape)
  return neural


def _erase(key, neural: jax.Array, fraction: float) -> jax.Array:
  """Zeroes a random rectangle per clip (images) or a random subset of ROIs (traces)."""
  batch = neural.shape[0]
  if neural.ndim == 3:
    drop = jax.random.uniform(key, (batch,), maxval=fraction)[:, None, None]
    mask = jax.random.uniform(jax.random.fold_in(key, 1), (batch, 1, neural.shape[2])) < drop
    return jnp.where(mask, 0.0, neural)
  height, width = neural.shape[2:]
  k_size, k_pos = jax.random.split(key)
  size = jax.random.uniform(k_size, (batch, 2), maxval=fraction) * jnp.array([height, width])
  corner = jax.random.uniform(k_pos, (batch, 2)) * jnp.array([height, width])
  rows = jnp.arange(height)[None, :, None]
  cols = jnp.arange(width)[None, None, :]
  inside = ((rows >= corner[:, 0, None, None]) & (rows < corner[:, 0, None, None] + size[:, 0, None, None])
            & (cols >= corner[:, 1, None, None]) & (cols < corner[:, 1, None, None] + size[:, 1, None, None]))
  return jnp.where(inside[:, None], 0.0, neural)
