"""Behavioural and neural augmentations, batched and on device, with explicit PRNG keys.

Every augmentation has a switch and a magnitude (0 switches it off) in a frozen dataclass, so
that configs can ablate each one. Pose augmentations act on normalised leg-relative pose
windows `[B, T, 90]` (6 legs x 5 joints x xyz); the geometric ones (scaling, shear, rotation,
mirror) treat each joint's three z-scored coordinates as a point, which is close to geometric
because the per-axis scales of the coordinates are similar. Neural augmentations mimic the
properties of two-photon imaging: shot noise, point-spread blur, registration error,
indicator expression (gain/offset per clip, and per cell: a smooth gain field over the image
or a gain per ROI), indicator kinetics (calcium smoothing, frame shift),
missing ROIs (erasing) and mixing with another clip.

Other behaviour formats (`nar.data.behaviour`) have their own `BehaviourLayout`, which
`behaviour_augmentation_for` puts into the augmentation config: 2D keypoints get the same
geometric augmentations in the image plane (each point's (x, y), mirror exchanging the points
named left/right); a plain feature vector (joint angles, ball velocities) gets none of them:
only smoothing, noise, scaling (one gain per window), time masking and dimension masking.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from nar.data import behaviour as behaviour_lib

# Augmentations that need points in space; a plain feature vector has none.
GEOMETRIC_AUGMENTATIONS = ("shear", "rotation_deg", "mirror_probability")
# Control points per image side of the smooth gain field (`NeuralAugmentation.local_gain`):
# 4 across the field of view gives patches of a few axons, not single pixels.
LOCAL_GAIN_GRID = 4


@dataclasses.dataclass(frozen=True)
class BehaviourLayout:
  """How a normalised behaviour feature vector is organised, for the augmentations.

  Attributes:
    feature_dim: the feature dimension the layout is for (windows of another one are an
      error).
    point_dims: coordinates per point: 3 (3D pose), 2 (2D keypoints); 1 for a plain vector
      without geometry.
    mirror_permutation: the point each point becomes under a left-right mirror; None where
      there is no mirror (plain vectors).
    mirror_axis: the coordinate the mirror negates.
    behaviour_format: the format it was made for (for error messages).
  """

  feature_dim: int
  point_dims: int
  mirror_permutation: tuple[int, ...] | None
  mirror_axis: int | None
  behaviour_format: str

  @property
  def geometric(self) -> bool:
    return self.point_dims > 1


def behaviour_layout(spec: behaviour_lib.BehaviourSpec) -> BehaviourLayout:
  """The augmentation layout of a behaviour format (`dataset.behaviour_spec`)."""
  return BehaviourLayout(feature_dim=spec.feature_dim, point_dims=spec.point_dims,
                         mirror_permutation=spec.mirror_permutation(),
                         mirror_axis=spec.mirror_axis, behaviour_format=spec.format)


DEEPFLY3D_POSE_LAYOUT = behaviour_layout(behaviour_lib.POSE_SPEC)


@dataclasses.dataclass(frozen=True)
class PoseAugmentation:
  """Magnitudes of the behavioural augmentations (0 = off).

  They act on the 90 leg-relative DeepFly3D pose features; for any other behaviour format
  build a `BehaviourAugmentation` with `behaviour_augmentation_for`, which adds the layout and
  turns off what does not apply.
  """

  smoothing_sigma: float = 1.0  # max temporal Gaussian sigma, in window frames
  jitter_std: float = 0.05  # additive Gaussian noise
  # Keypoint layouts: per-axis scale drawn in [1 - scale, 1 + scale]; plain vectors: one
  # gain per window drawn there.
  scale: float = 0.1
  shear: float = 0.05  # off-diagonal shear in [-shear, shear]
  rotation_deg: float = 10.0  # rotation about the vertical axis (in the image plane for 2D)
  mirror_probability: float = 0.5  # exchange left and right points, negate the lateral axis
  time_mask_frames: int = 4  # longest masked span of frames
  # Each point (each dimension of a plain vector) zeroed with this probability.
  channel_mask_probability: float = 0.05


@dataclasses.dataclass(frozen=True)
class BehaviourAugmentation(PoseAugmentation):
  """The magnitudes of `PoseAugmentation` and the layout of the behaviour they act on."""

  layout: BehaviourLayout = DEEPFLY3D_POSE_LAYOUT


def _layout(config: PoseAugmentation) -> BehaviourLayout:
  return getattr(config, "layout", DEEPFLY3D_POSE_LAYOUT)


def behaviour_augmentation_for(spec: behaviour_lib.BehaviourSpec,
                               config: PoseAugmentation) -> BehaviourAugmentation:
  """The behavioural augmentations that make sense for a behaviour format.

  DeepFly3D pose and 2D keypoints keep every augmentation (geometric ones act on each point's
  coordinates); a plain feature vector ("vector": joint angles, velocities, ...) keeps
  smoothing, noise, scaling (one gain per window), time masking and dimension masking, with
  the geometric ones (rotation, shear, mirror) turned off.

  Args:
    spec: the dataset's behaviour (`ShardedDataset.behaviour_spec`).
    config: the configured magnitudes (e.g. `PoseAugmentation(**config.augment.pose)`).

  Returns:
    The magnitudes of `config` (those that do not apply set to 0) with the layout of `spec`;
    `augment_pose` takes it like a `PoseAugmentation`.
  """
  if not isinstance(spec, behaviour_lib.BehaviourSpec):
    raise TypeError(f"spec must be a nar.data.behaviour.BehaviourSpec (e.g. "
                    f"dataset.behaviour_spec), got {type(spec).__name__}")
  layout = behaviour_layout(spec)
  magnitudes = {field.name: getattr(config, field.name)
                for field in dataclasses.fields(PoseAugmentation)}
  if not layout.geometric:
    magnitudes.update({name: 0 for name in GEOMETRIC_AUGMENTATIONS})
  return BehaviourAugmentation(**magnitudes, layout=layout)


def _check_layout(dim: int, config: PoseAugmentation) -> None:
  layout = _layout(config)
  if dim != layout.feature_dim:
    raise ValueError(
        f"the behaviour augmentation is laid out for {layout.feature_dim} "
        f"{layout.behaviour_format} features, got windows of {dim}; build it with "
        "augment.behaviour_augmentation_for(dataset.behaviour_spec, config)")
  if not layout.geometric:
    on = [name for name in GEOMETRIC_AUGMENTATIONS if getattr(config, name)]
    if on:
      raise ValueError(
          f"{on} are geometric augmentations and {layout.behaviour_format} behaviour has no "
          "points; set them to 0 (behaviour_augmentation_for does)")


@dataclasses.dataclass(frozen=True)
class NeuralAugmentation:
  """Magnitudes of the neural augmentations (0 = off)."""

  shot_noise_std: float = 0.05  # noise std per sqrt(|signal| + 1)
  blur_sigma: float = 0.7  # max spatial Gaussian sigma in pixels (images only)
  shift_pixels: int = 1  # max translation (images only)
  # Placement of the imaging plane, which differs between preparations (images only).
  rotation_deg: float = 0.0  # max rotation about the image centre
  zoom: float = 0.0  # isotropic scale drawn in [1 - zoom, 1 + zoom]
  gain: float = 0.2  # per-clip gain in [1 - gain, 1 + gain]
  offset: float = 0.1  # per-clip offset in [-offset, offset]
  calcium_tau_frames: float = 1.0  # max extra exponential smoothing time constant
  frame_shift: int = 1  # max shift of the clip in time
  erase_fraction: float = 0.25  # max side (images) or ROI fraction (traces) erased
  mix_weight: float = 0.1  # max weight of another clip of the batch mixed in
  # Per-cell expression and gain, which differ between cells and animals: std of a log-gain
  # field, smooth over the image (`LOCAL_GAIN_GRID` control points a side) or one per ROI.
  local_gain: float = 0.0


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


def _rotation_and_shear(key, batch: int, config: PoseAugmentation,
                        point_dims: int = 3) -> jax.Array:
  """`[B, d, d]` random linear maps: rotation in the (x, y) plane (about z in 3D), then
  shear, then per-axis scaling."""
  k_angle, k_shear, k_scale = jax.random.split(key, 3)
  angle = jnp.deg2rad(_uniform(k_angle, (batch,), config.rotation_deg))
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  zero, one = jnp.zeros_like(angle), jnp.ones_like(angle)
  if point_dims == 3:
    rotation = jnp.stack([jnp.stack([cos, -sin, zero], -1), jnp.stack([sin, cos, zero], -1),
                          jnp.stack([zero, zero, one], -1)], -2)
  else:
    rotation = jnp.stack([jnp.stack([cos, -sin], -1), jnp.stack([sin, cos], -1)], -2)
  eye = jnp.eye(point_dims)
  shear = eye + _uniform(k_shear, (batch, point_dims, point_dims), config.shear) * (1 - eye)
  scale = 1 + _uniform(k_scale, (batch, point_dims), config.scale)
  return scale[:, :, None] * (shear @ rotation)


def _mirror(key, pose: jax.Array, probability: float, layout: BehaviourLayout) -> jax.Array:
  """Exchanges left and right points and negates the lateral axis, per window."""
  batch, length, dim = pose.shape
  points = pose.reshape(batch, length, dim // layout.point_dims, layout.point_dims)
  sign = jnp.ones(layout.point_dims).at[layout.mirror_axis].set(-1.0)
  swapped = points[:, :, jnp.asarray(layout.mirror_permutation)] * sign
  flip = jax.random.bernoulli(key, probability, (batch,))[:, None, None, None]
  return jnp.where(flip, swapped, points).reshape(pose.shape)


def augment_pose(key: jax.Array, pose: jax.Array, config: PoseAugmentation) -> jax.Array:
  """Augments normalised behaviour windows `[B, T, D]`: the 90 DeepFly3D pose features for a
  `PoseAugmentation`, the layout of a `BehaviourAugmentation` otherwise."""
  batch, length, dim = pose.shape
  _check_layout(dim, config)
  layout = _layout(config)
  keys = jax.random.split(key, 7)
  if config.smoothing_sigma > 0:
    sigma = jax.random.uniform(keys[0], (batch,), maxval=config.smoothing_sigma)
    pose = jnp.einsum("bst,btd->bsd", _gaussian_smoothing_matrix(sigma, length), pose)
  if layout.geometric and (config.rotation_deg > 0 or config.shear > 0 or config.scale > 0):
    points = pose.reshape(batch, length, dim // layout.point_dims, layout.point_dims)
    transform = _rotation_and_shear(keys[1], batch, config, layout.point_dims)
    pose = jnp.einsum("bij,btkj->btki", transform, points).reshape(pose.shape)
  elif not layout.geometric and config.scale > 0:
    pose = pose * (1 + _uniform(keys[1], (batch, 1, 1), config.scale))
  if config.mirror_probability > 0:
    pose = _mirror(keys[2], pose, config.mirror_probability, layout)
  if config.jitter_std > 0:
    pose = pose + config.jitter_std * jax.random.normal(keys[3], pose.shape)
  if config.time_mask_frames > 0:
    span = jax.random.randint(keys[4], (batch, 1), 0, config.time_mask_frames + 1)
    start = jax.random.randint(keys[5], (batch, 1), 0, length)
    t = jnp.arange(length)[None]
    pose = jnp.where(((t >= start) & (t < start + span))[:, :, None], 0.0, pose)
  if config.channel_mask_probability > 0:
    size = layout.point_dims
    keep = ~jax.random.bernoulli(keys[6], config.channel_mask_probability,
                                 (batch, 1, dim // size, 1))
    pose = (pose.reshape(batch, length, dim // size, size) * keep).reshape(pose.shape)
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
  if is_image and (config.rotation_deg > 0 or config.zoom > 0):
    neural = _rotate_and_zoom(keys[9], neural, config.rotation_deg, config.zoom)
  if config.gain > 0:
    neural = neural * (1 + _uniform(keys[4], per_clip, config.gain))
  if config.offset > 0:
    neural = neural + _uniform(keys[5], per_clip, config.offset)
  if config.local_gain > 0:
    # A key folded from the clip gain's: the other augmentations keep their draws, so runs
    # made before this augmentation existed are reproduced with it off.
    neural = neural * _local_gain(jax.random.fold_in(keys[4], 1), neural.shape,
                                  config.local_gain)
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


def _local_gain(key, shape: tuple[int, ...], log_std: float) -> jax.Array:
  """A gain per clip and cell, constant in time: `[B, 1, H, W]` (images) or `[B, 1, R]`.

  Images get a log-normal field drawn at `LOCAL_GAIN_GRID` x `LOCAL_GAIN_GRID` control points
  and interpolated (bilinear) to the image; ROI traces a log-normal gain per ROI.
  """
  batch = shape[0]
  if len(shape) == 3:
    return jnp.exp(log_std * jax.random.normal(key, (batch, 1, shape[2])))
  coarse = log_std * jax.random.normal(key, (batch, LOCAL_GAIN_GRID, LOCAL_GAIN_GRID))
  field = jax.image.resize(coarse, (batch,) + tuple(shape[2:]), method="linear")
  return jnp.exp(field)[:, None]


def _rotate_and_zoom(key, images: jax.Array, rotation_deg: float, zoom: float) -> jax.Array:
  """Rotates and scales each clip `[B, T, H, W]` about the image centre (bilinear, zero fill).

  One transform per clip: the placement of the imaging plane is fixed within a recording.
  """
  batch, _, height, width = images.shape
  k_angle, k_scale = jax.random.split(key)
  angle = jnp.deg2rad(_uniform(k_angle, (batch,), rotation_deg))
  scale = 1 + _uniform(k_scale, (batch,), zoom)
  rows, cols = jnp.meshgrid(jnp.arange(height) - (height - 1) / 2,
                            jnp.arange(width) - (width - 1) / 2, indexing="ij")

  def warp_clip(clip, angle, scale):
    # Output pixel p shows the input at R(-angle) p / scale.
    cos, sin = jnp.cos(angle) / scale, jnp.sin(angle) / scale
    source_rows = cos * rows - sin * cols + (height - 1) / 2
    source_cols = sin * rows + cos * cols + (width - 1) / 2
    warp = lambda frame: jax.scipy.ndimage.map_coordinates(
        frame, (source_rows, source_cols), order=1, mode="constant", cval=0.0)
    return jax.vmap(warp)(clip)

  return jax.vmap(warp_clip)(images, angle, scale)


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
  top, left = corner[:, 0, None, None], corner[:, 1, None, None]
  inside = ((rows >= top) & (rows < top + size[:, 0, None, None])
            & (cols >= left) & (cols < left + size[:, 1, None, None]))
  return jnp.where(inside[:, None], 0.0, neural)
