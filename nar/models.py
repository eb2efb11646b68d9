"""Flax NNX encoders of behaviour windows and neural windows, and projection heads.

Encoders map a window to a feature vector (what the linear probes read); projection heads map
features to the L2-normalised embedding of the contrastive objective. All modules compute in
`dtype` (bfloat16 on accelerators if asked) and keep float32 parameters.
"""

from __future__ import annotations

from typing import Sequence

from flax import nnx
import jax
import jax.numpy as jnp


class TemporalResidualBlock(nnx.Module):
  """Pre-norm residual block of two temporal convolutions: `[B, T, C] -> [B, T, C]`."""

  def __init__(self, channels: int, kernel_size: int, *, dtype, rngs: nnx.Rngs):
    self.norm = nnx.LayerNorm(channels, dtype=dtype, rngs=rngs)
    self.conv1 = nnx.Conv(channels, channels, (kernel_size,), dtype=dtype, rngs=rngs)
    self.conv2 = nnx.Conv(channels, channels, (kernel_size,), dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = self.conv1(nnx.gelu(self.norm(x)))
    return x + self.conv2(nnx.gelu(y))


class TemporalEncoder(nnx.Module):
  """Encodes a sequence of per-frame vectors: `[B, T, D] -> [B, features]`.

  Used for pose windows (D = 90) and ROI-trace windows (D = R).
  """

  def __init__(self, input_dim: int, *, width: int = 64, num_blocks: int = 2,
               kernel_size: int = 5, features: int = 64, dtype=jnp.float32, rngs: nnx.Rngs):
    self.input = nnx.Conv(input_dim, width, (kernel_size,), dtype=dtype, rngs=rngs)
    self.blocks = nnx.List([TemporalResidualBlock(width, kernel_size, dtype=dtype, rngs=rngs)
                            for _ in range(num_blocks)])
    self.norm = nnx.LayerNorm(width, dtype=dtype, rngs=rngs)
    self.output = nnx.Linear(width, features, dtype=dtype, rngs=rngs)
    self.dtype = dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    x = self.input(x.astype(self.dtype))
    for block in self.blocks:
      x = block(x)
    x = nnx.gelu(self.norm(x)).mean(axis=1)  # average over time
    return self.output(x).astype(jnp.float32)


class ImageSequenceEncoder(nnx.Module):
  """Encodes a window of neural images: `[B, T, H, W] -> [B, features]`.

  Each frame goes through a small 2D CNN (strided convolutions, global average pooling); the
  per-frame vectors are then mixed over time by a `TemporalEncoder`.
  """

  def __init__(self, *, channels: Sequence[int] = (16, 32, 64), width: int = 64,
               num_blocks: int = 1, kernel_size: int = 3, features: int = 64,
               dtype=jnp.float32, rngs: nnx.Rngs):
    in_channels = (1,) + tuple(channels[:-1])
    self.convs = nnx.List([
        nnx.Conv(c_in, c_out, (3, 3), strides=(2, 2), dtype=dtype, rngs=rngs)
        for c_in, c_out in zip(in_channels, channels)])
    self.temporal = TemporalEncoder(channels[-1], width=width, num_blocks=num_blocks,
                                    kernel_size=kernel_size, features=features, dtype=dtype,
                                    rngs=rngs)
    self.dtype = dtype

  def __call__(self, images: jax.Array) -> jax.Array:
    batch, time, height, width = images.shape
    x = images.reshape(batch * time, height, width, 1).astype(self.dtype)
    for conv in self.convs:
      x = nnx.gelu(conv(x))
    x = x.mean(axis=(1, 2)).reshape(batch, time, -1)
    return self.temporal(x)


class ProjectionHead(nnx.Module):
  """Two-layer MLP to the unit sphere: `[B, features] -> [B, embedding]`, L2-normalised."""

  def __init__(self, features: int, *, hidden: int = 128, embedding: int = 64,
               dtype=jnp.float32, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(features, hidden, dtype=dtype, rngs=rngs)
    self.output = nnx.Linear(hidden, embedding, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    z = self.output(nnx.gelu(self.hidden(x))).astype(jnp.float32)
    return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-6)


class PoseDecoder(nnx.Module):
  """Decodes features into a pose window: `[B, features] -> [B, T, D]` (regression baselines).

  `kind="conv"`: a learned `[T, width]` sequence modulated by the features, then temporal
  residual convolutions. `kind="recurrent"`: a GRU unrolled over T with the features as input
  at every step.
  """

  def __init__(self, features: int, frames: int, pose_dim: int, *, kind: str = "conv",
               width: int = 64, dtype=jnp.float32, rngs: nnx.Rngs):
    if kind not in ("conv", "recurrent"):
      raise ValueError(f"decoder kind must be 'conv' or 'recurrent', got {kind!r}")
    self.kind, self.frames, self.dtype = kind, frames, dtype
    if kind == "conv":
      self.expand = nnx.Linear(features, frames * width, dtype=dtype, rngs=rngs)
      self.block = TemporalResidualBlock(width, 5, dtype=dtype, rngs=rngs)
    else:
      self.rnn = nnx.RNN(nnx.GRUCell(features, width, dtype=dtype, rngs=rngs), rngs=False)
    self.output = nnx.Linear(width, pose_dim, dtype=dtype, rngs=rngs)

  def __call__(self, features: jax.Array) -> jax.Array:
    batch = features.shape[0]
    if self.kind == "conv":
      x = self.block(self.expand(features).reshape(batch, self.frames, -1))
    else:
      inputs = jnp.repeat(features[:, None], self.frames, axis=1).astype(self.dtype)
      # A zero initial state: the decoder is deterministic and holds no random state.
      carry = jnp.zeros((batch, self.output.in_features), self.dtype)
      x = self.rnn(inputs, initial_carry=carry)
    return self.output(nnx.gelu(x)).astype(jnp.float32)
