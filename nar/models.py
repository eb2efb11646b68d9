"""The models: Flax NNX encoders of behaviour and neural windows, heads, and the model wrapper.

Encoders map a window to a feature vector (what the linear probes read); projection heads map
features to the L2-normalised embedding of the contrastive objective. All modules compute in
`dtype` (bfloat16 on accelerators if asked) and keep float32 parameters. `ContrastiveModel`
holds the neural encoder and whatever a training method needs beside it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections

from nar.method import objectives


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


class AnimalParam(nnx.Param):
  """A parameter whose leading axis indexes the dataset's animals, one row per animal.

  Its own type lets the optimiser tell these rows apart (`nar.train`): the rows of animals
  held out of training get no update and no weight decay while the rest of the model trains,
  and are fitted afterwards on their own.
  """


class PerAnimalInput(nnx.Module):
  """One linear map per animal from its own ROIs to a shared space.

  `([B, T, R_pad] traces, [B] animal) -> [B, T, width]`. ROI `r` of one animal and ROI `r` of
  another are different cells, so each animal has its own weights. All animals' weights lie
  in one `[num_animals, R_pad, width]` array (`AnimalParam`) and each window takes its
  animal's row (a gather and an einsum), so that a batch mixing animals is one op. Traces
  beyond an animal's own R (the padding) are masked out: neural augmentations (offsets,
  noise) write into them too, and they must not reach the shared layers.
  """

  def __init__(self, roi_counts: Sequence[int], width: int, *, dtype=jnp.float32,
               rngs: nnx.Rngs):
    """Creates the layer.

    Args:
      roi_counts: the ROI count R of every animal, indexed like the windows' `animal`
        (the dataset's animals, held-out ones included).
      width: the output dimension (the shared trunk's input).
      dtype: computation dtype; parameters stay float32.
      rngs: parameter initialisation.
    """
    counts = tuple(int(c) for c in roi_counts)
    if not counts or min(counts) < 1:
      raise ValueError(f"roi_counts must give every animal a positive ROI count, got "
                       f"{list(roi_counts)}")
    if width < 1:
      raise ValueError(f"width must be positive, got {width}")
    self.roi_counts = counts
    self.max_rois = max(counts)
    self.dtype = dtype
    mask = jnp.arange(self.max_rois)[None, :] < jnp.asarray(counts)[:, None]
    # LeCun normal with each animal's own fan-in (its R), zero on its padded ROIs.
    fan_in = jnp.asarray(counts, jnp.float32)[:, None, None]
    kernel = jax.random.normal(rngs.params(), (len(counts), self.max_rois, width))
    self.kernel = AnimalParam(kernel / jnp.sqrt(fan_in) * mask[:, :, None])
    self.bias = AnimalParam(jnp.zeros((len(counts), width), jnp.float32))

  @property
  def num_animals(self) -> int:
    return len(self.roi_counts)

  def roi_mask(self, animal: jax.Array) -> jax.Array:
    """`[B, R_pad]` True on the real ROIs of each window's animal."""
    counts = jnp.asarray(self.roi_counts)[animal]
    return jnp.arange(self.max_rois)[None, :] < counts[:, None]

  def __call__(self, traces: jax.Array, animal: jax.Array) -> jax.Array:
    if traces.ndim != 3 or traces.shape[-1] != self.max_rois:
      raise ValueError(f"PerAnimalInput takes ROI traces [B, T, {self.max_rois}] (padded to "
                       f"the largest ROI count), got shape {traces.shape}")
    if animal.shape != traces.shape[:1]:
      raise ValueError(f"animal must hold one index per window {traces.shape[:1]}, got shape "
                       f"{animal.shape}")
    traces = jnp.where(self.roi_mask(animal)[:, None, :], traces, 0).astype(self.dtype)
    kernel = self.kernel[...][animal].astype(self.dtype)
    bias = self.bias[...][animal].astype(self.dtype)
    return jnp.einsum("btr,brw->btw", traces, kernel) + bias[:, None, :]


class PerAnimalTraceEncoder(nnx.Module):
  """Encodes ROI traces of animals with ROIs of their own: `([B, T, R_pad], [B]) -> [B, features]`.

  A per-animal input layer (`PerAnimalInput`) maps each animal's ROIs into one space, where a
  temporal encoder shared by all animals (the trunk) reads them.
  """

  def __init__(self, roi_counts: Sequence[int], *, width: int = 64, num_blocks: int = 2,
               kernel_size: int = 5, features: int = 64, dtype=jnp.float32, rngs: nnx.Rngs):
    self.input = PerAnimalInput(roi_counts, width, dtype=dtype, rngs=rngs)
    self.trunk = TemporalEncoder(width, width=width, num_blocks=num_blocks,
                                 kernel_size=kernel_size, features=features, dtype=dtype,
                                 rngs=rngs)

  def __call__(self, traces: jax.Array, animal: jax.Array) -> jax.Array:
    return self.trunk(self.input(traces, animal))


class ImageSequenceEncoder(nnx.Module):
  """Encodes a window of neural images: `[B, T, H, W] -> [B, features]`.

  Each frame goes through a small 2D CNN of strided convolutions; its output map is either
  averaged over space (`spatial_pooling="mean"`: invariant to where a cell lies) or flattened
  (`"flatten"`: keeps the coarse position of active cells, which identifies a cell type where
  axon positions are stereotyped across animals). The per-frame vectors are then mixed over
  time by a `TemporalEncoder`.
  """

  POOLINGS = ("mean", "flatten")

  def __init__(self, *, channels: Sequence[int] = (16, 32, 64), width: int = 64,
               num_blocks: int = 1, kernel_size: int = 3, features: int = 64,
               spatial_pooling: str = "mean",
               image_shape: tuple[int, int] | None = None,
               dtype=jnp.float32, rngs: nnx.Rngs):
    if spatial_pooling not in self.POOLINGS:
      raise ValueError(f"spatial_pooling must be one of {self.POOLINGS}, got "
                       f"{spatial_pooling!r}")
    in_channels = (1,) + tuple(channels[:-1])
    self.convs = nnx.List([
        nnx.Conv(c_in, c_out, (3, 3), strides=(2, 2), dtype=dtype, rngs=rngs)
        for c_in, c_out in zip(in_channels, channels)])
    self.spatial_pooling = spatial_pooling
    frame_dim = channels[-1]
    if spatial_pooling == "flatten":
      if image_shape is None:
        raise ValueError("spatial_pooling='flatten' needs the image_shape (height, width)")
      height, width_px = image_shape
      for _ in channels:
        height, width_px = -(-height // 2), -(-width_px // 2)  # SAME padding, stride 2
      frame_dim = height * width_px * channels[-1]
    self.temporal = TemporalEncoder(frame_dim, width=width, num_blocks=num_blocks,
                                    kernel_size=kernel_size, features=features, dtype=dtype,
                                    rngs=rngs)
    self.dtype = dtype

  def __call__(self, images: jax.Array) -> jax.Array:
    batch, time, height, width = images.shape
    x = images.reshape(batch * time, height, width, 1).astype(self.dtype)
    for conv in self.convs:
      x = nnx.gelu(conv(x))
    if self.spatial_pooling == "mean":
      x = x.mean(axis=(1, 2))
    return self.temporal(x.reshape(batch, time, -1))


class ProjectionHead(nnx.Module):
  """Maps features to the unit sphere: `[B, features] -> [B, embedding]`, L2-normalised.

  `kind="mlp"`: two layers (SimCLR's head); `kind="linear"`: one layer; `kind="none"`: the
  features themselves, normalised (`embedding` is then `features`). Without a head the
  features the probes read are the embedding the objective aligns, so whatever the
  objective removes (e.g. the animal's identity, with the swap) is removed from them too;
  an MLP head lets the features keep what the head then discards.
  """

  KINDS = ("mlp", "linear", "none")

  def __init__(self, features: int, *, hidden: int = 128, embedding: int = 64,
               kind: str = "mlp", dtype=jnp.float32, rngs: nnx.Rngs):
    if kind not in self.KINDS:
      raise ValueError(f"projection head kind must be one of {self.KINDS}, got {kind!r}")
    self.kind = kind
    if kind == "mlp":
      self.hidden = nnx.Linear(features, hidden, dtype=dtype, rngs=rngs)
      self.output = nnx.Linear(hidden, embedding, dtype=dtype, rngs=rngs)
    elif kind == "linear":
      self.output = nnx.Linear(features, embedding, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    if self.kind == "mlp":
      x = self.output(nnx.gelu(self.hidden(x)))
    elif self.kind == "linear":
      x = self.output(x)
    z = x.astype(jnp.float32)
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


class ContrastiveModel(nnx.Module):
  """The neural encoder, and the parts the training method needs besides it.

  `contrastive` (ours, and the no-swap ablation): behaviour encoder and both projection heads;
  `simclr`: the neural projection head; `regression`: a pose decoder; `behavenet`: a
  behavioural-state classifier; a `grl` penalty adds an animal classifier, and
  `behaviour_predictor=True` (contrastive only) a linear map from behaviour features to neural
  features for the term weighted by `config.behaviour_residual_weight`.

  ROI traces go through one encoder shared by all animals, or, given `roi_counts`, through a
  per-animal input layer feeding a shared trunk (`models.PerAnimalTraceEncoder`); call
  `encode_neural`, which passes the windows' animal where the encoder needs it.
  """

  def __init__(self, config: ml_collections.ConfigDict, *, pose_dim: int, neural_key: str,
               num_rois: int | None, rngs: nnx.Rngs, method: str = "contrastive",
               image_shape: tuple[int, int] | None = None,
               pose_frames: int = 32, num_states: int = 0, num_animals: int = 0,
               decoder: str = "conv", domain_penalty: str = "none",
               roi_counts: Sequence[int] | None = None,
               behaviour_predictor: bool = False, num_classes: int = 0):
    dtype = jnp.dtype(config.dtype)
    if roi_counts is not None and neural_key != "roi_traces":
      raise ValueError(f"a per-animal input layer (roi_counts) maps each animal's ROIs; the "
                       f"neural data {neural_key!r} is not ROI traces")
    self.per_animal_input = roi_counts is not None
    if method not in objectives.METHODS:
      raise ValueError(f"unknown method {method!r}; known: {objectives.METHODS}")
    if method == "contrastive":
      self.behaviour_encoder = TemporalEncoder(
          pose_dim, width=config.width, num_blocks=config.num_blocks,
          features=config.features, dtype=dtype, rngs=rngs)
    if neural_key == "neural_images":
      self.neural_encoder = ImageSequenceEncoder(
          channels=tuple(config.image_channels), width=config.width,
          num_blocks=config.num_blocks, features=config.features,
          spatial_pooling=config.spatial_pooling, image_shape=image_shape, dtype=dtype,
          rngs=rngs)
    elif self.per_animal_input:
      self.neural_encoder = PerAnimalTraceEncoder(
          roi_counts, width=config.width, num_blocks=config.num_blocks,
          features=config.features, dtype=dtype, rngs=rngs)
    else:
      self.neural_encoder = TemporalEncoder(
          num_rois, width=config.width, num_blocks=config.num_blocks,
          features=config.features, dtype=dtype, rngs=rngs)
    head = lambda: ProjectionHead(config.features, hidden=config.head_hidden,
                                  embedding=config.embedding, kind=config.projection,
                                  dtype=dtype, rngs=rngs)
    if method == "contrastive":
      self.behaviour_head = head()
    if behaviour_predictor:
      if method != "contrastive":
        raise ValueError(f"a behaviour predictor needs the behaviour encoder of the "
                         f"contrastive method, not {method!r}")
      self.behaviour_predictor = nnx.Linear(config.features, config.features, dtype=dtype,
                                            rngs=rngs)
    if method in ("contrastive", "simclr"):
      self.neural_head = head()
    if method == "regression":
      self.pose_decoder = PoseDecoder(config.features, pose_frames, pose_dim,
                                      kind=decoder, width=config.width, dtype=dtype,
                                      rngs=rngs)
    if method == "behavenet":
      self.state_classifier = nnx.Linear(config.features, num_states, dtype=dtype, rngs=rngs)
    if method == "supervised":
      if num_classes < 1:
        raise ValueError(f"the supervised reference needs the number of action classes, got "
                         f"num_classes={num_classes!r}")
      self.action_classifier = nnx.Linear(config.features, num_classes, dtype=dtype,
                                          rngs=rngs)
    if domain_penalty == "grl":
      self.animal_classifier = nnx.Linear(config.features, num_animals, dtype=dtype, rngs=rngs)

  def encode_neural(self, neural: jax.Array, animal: jax.Array) -> jax.Array:
    """Features `[B, features]` of neural windows; `animal` `[B]` indexes the dataset's
    animals (read by a per-animal input layer only)."""
    if self.per_animal_input:
      return self.neural_encoder(neural, animal)
    return self.neural_encoder(neural)


@dataclasses.dataclass(frozen=True)
class ModelShapes:
  """What a model is built for besides its config: the shapes of its data.

  Attributes:
    pose_dim: behaviour features per frame.
    neural_key: the neural array the encoder reads ("roi_traces" or "neural_images").
    num_rois: the width of ROI trace windows (padded with a per-animal input), else None.
    image_shape: `(H, W)` of neural images, else None.
    roi_counts: with a per-animal input layer, every dataset animal's ROI count, else None.
    num_animals: the dataset's animals (rows of per-animal parameters).
    num_classes: the dataset's behaviour classes.
    pose_frames: behaviour frames of a window.
  """

  pose_dim: int
  neural_key: str
  num_rois: int | None
  image_shape: tuple[int, int] | None
  roi_counts: tuple[int, ...] | None
  num_animals: int
  num_classes: int
  pose_frames: int

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, value: dict[str, Any]) -> "ModelShapes":
    value = dict(value)
    for name in ("image_shape", "roi_counts"):
      if value.get(name) is not None:
        value[name] = tuple(int(v) for v in value[name])
    return cls(**value)


def build_model(config: ml_collections.ConfigDict, shapes: ModelShapes,
                rngs: nnx.Rngs) -> ContrastiveModel:
  """The `ContrastiveModel` of an experiment config for data of the given shapes."""
  return ContrastiveModel(
      config.model, pose_dim=shapes.pose_dim, neural_key=shapes.neural_key,
      num_rois=shapes.num_rois, rngs=rngs, image_shape=shapes.image_shape,
      method=config.method, pose_frames=shapes.pose_frames,
      num_states=config.behavenet_states, num_animals=shapes.num_animals,
      decoder=config.regression_decoder, domain_penalty=config.domain_penalty,
      roi_counts=shapes.roi_counts,
      behaviour_predictor=bool(config.behaviour_residual_weight),
      num_classes=shapes.num_classes)
