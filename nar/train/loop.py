"""Contrastive training of neural and behaviour encoders with the cross-animal swap.

`train_and_evaluate(config, workdir)` is the whole job: input pipeline, mesh, model and
optimiser, the jitted sharded step, Orbax checkpoints (train state, PRNG and data iterator
together, resumed automatically), metrics, and a final linear-probe evaluation written to
`workdir/eval.json`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import time
from typing import Any, Sequence

from absl import logging
from etils import epath
from flax import nnx
from flax import struct
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm

from nar.method import augment
from nar.data import behaviour as behaviour_lib
from nar.eval import protocol as protocol_lib
from nar.data import pipeline
from nar import logs
from nar.method import losses
from nar import models
from nar.data import normalise
from nar.method import neural_swap
from nar.method import objectives
from nar.data import shards
from nar.method import swap
from nar.method import swap_table
from nar.data import windows


# ----------------------------------------------------------------------------------------------
# Model.
# ----------------------------------------------------------------------------------------------
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
      self.behaviour_encoder = models.TemporalEncoder(
          pose_dim, width=config.width, num_blocks=config.num_blocks,
          features=config.features, dtype=dtype, rngs=rngs)
    if neural_key == "neural_images":
      self.neural_encoder = models.ImageSequenceEncoder(
          channels=tuple(config.image_channels), width=config.width,
          num_blocks=config.num_blocks, features=config.features,
          spatial_pooling=config.spatial_pooling, image_shape=image_shape, dtype=dtype,
          rngs=rngs)
    elif self.per_animal_input:
      self.neural_encoder = models.PerAnimalTraceEncoder(
          roi_counts, width=config.width, num_blocks=config.num_blocks,
          features=config.features, dtype=dtype, rngs=rngs)
    else:
      self.neural_encoder = models.TemporalEncoder(
          num_rois, width=config.width, num_blocks=config.num_blocks,
          features=config.features, dtype=dtype, rngs=rngs)
    head = lambda: models.ProjectionHead(config.features, hidden=config.head_hidden,
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
      self.pose_decoder = models.PoseDecoder(config.features, pose_frames, pose_dim,
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


@struct.dataclass
class TrainState:
  """Everything the step changes: a pytree, checkpointed as one item."""

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array  # raw key data, so that the state is a plain array pytree


# ----------------------------------------------------------------------------------------------
# Input pipeline.
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Input:
  """The data side of a run.

  Attributes:
    num_rois: the width of `roi_traces` windows (padded to the largest ROI count with a
      per-animal input layer); None for neural images.
    neural_input: "shared" (one encoder for every animal) or "per_animal" (a per-animal
      input layer; `resolve_neural_input`).
    roi_counts: with a per-animal input layer, the ROI count of every dataset animal (in
      `dataset.animals` order, held-out animals included); None otherwise.
    neural_normalizer: the per-animal standardisation of the neural input
      (`config.data.neural_normalisation`), or None.
  """

  dataset: shards.ShardedDataset
  spec: windows.WindowSpec
  training_animals: tuple[str, ...]
  held_out_animals: tuple[str, ...]
  normalizer: windows.PoseNormalizer
  train_source: pipeline.WindowSource
  neural_key: str
  num_rois: int | None
  neural_input: str = "shared"
  roi_counts: tuple[int, ...] | None = None
  neural_normalizer: normalise.NeuralNormalizer | None = None

  @property
  def pad_rois(self) -> bool:
    """Whether ROI traces are padded to the largest ROI count (for a per-animal input)."""
    return self.neural_input == "per_animal"


NEURAL_INPUTS = ("auto", "shared", "per_animal")


def resolve_neural_input(choice: str, dataset: shards.ShardedDataset, neural_key: str) -> str:
  """The neural input layer a run uses: "shared" or "per_animal".

  Args:
    choice: `config.model.neural_input`: "auto" (a per-animal input layer for ROI traces
      whose ROI counts differ between the dataset's animals, one shared encoder otherwise),
      "shared" or "per_animal" (ROI traces only, even with equal ROI counts).
    dataset: the opened dataset.
    neural_key: the neural array the encoder reads.

  Raises:
    ValueError: for an unknown choice, a per-animal layer on neural images, or a shared
      encoder on ROI traces whose counts differ (ROI r is another cell in every animal).
  """
  if choice not in NEURAL_INPUTS:
    raise ValueError(f"model.neural_input must be one of {NEURAL_INPUTS}, got {choice!r}")
  if neural_key != "roi_traces":
    if choice == "per_animal":
      raise ValueError(f"model.neural_input='per_animal' maps each animal's ROI traces; "
                       f"data.neural_key={neural_key!r} is read by one shared encoder (use "
                       "'auto' or 'shared')")
    return "shared"
  counts = sorted(set(dataset.roi_counts.values()))
  if choice == "auto":
    return "per_animal" if len(counts) > 1 else "shared"
  if choice == "shared" and len(counts) > 1:
    raise ValueError(f"the animals of {dataset.path} have different ROI counts {counts}, which "
                     "one shared encoder cannot read; set model.neural_input='per_animal' (or "
                     "'auto')")
  return choice


def create_input(config: ml_collections.ConfigDict,
                 datasets: shards.DatasetCache | None = None) -> Input:
  """Opens the dataset, chooses the animal split and builds the training windows.

  Given `datasets`, the dataset (with its preloaded neural data and behaviour features) comes
  from that cache, opened there once for every run of the process that passes it.

  With a per-animal input layer (`config.model.neural_input`, `resolve_neural_input`) ROI
  traces are padded to the dataset's largest ROI count, so that windows of all animals (the
  held-out ones too) share one shape. With `config.data.neural_normalisation="animal"`, every
  animal's neural input (held-out animals' too) is standardised with its own statistics,
  fitted without labels on the first `data.neural_calibration_fraction` of each trial
  (`nar.data.normalise`).
  """
  open_dataset = shards.open_dataset if datasets is None else datasets.open
  dataset = open_dataset(config.data.data_dir, config.data.name,
                         neural_cache_bytes=config.data.neural_cache_mb << 20)
  if config.data.preload_neural and not dataset.preload_neural():
    logging.warning("Neural data (%.0f MiB) exceeds data.neural_cache_mb; reading on demand",
                    dataset.neural_bytes() / 2**20)
  spec = windows.WindowSpec(**config.data.window)
  training, held_out = pipeline.split_animals(
      dataset.animals, config.data.num_held_out_animals, config.data.split_seed)
  if len(training) < 2 and config.swap.enabled:
    raise ValueError(f"the swap needs at least two training animals, got {list(training)}")
  normalizer = pipeline.fit_pose_normalizer(dataset, training)
  index = pipeline.select_windows(
      dataset, spec, animals=training, drop_unlabelled=config.data.drop_unlabelled,
      drop_classes=tuple(config.data.drop_classes))
  key = config.data.neural_key
  neural_input = resolve_neural_input(config.model.neural_input, dataset, key)
  per_animal = neural_input == "per_animal"
  neural_normalizer = _neural_normalizer(config, dataset, key)
  source = pipeline.WindowSource(dataset, index, spec, normalizer, neural_keys=(key,),
                                       pad_rois=per_animal, neural_normalizer=neural_normalizer)
  num_rois = None
  if key == "roi_traces":
    num_rois = int(source[0]["roi_traces"].shape[-1])
  roi_counts = tuple(dataset.roi_counts.values()) if per_animal else None
  return Input(dataset, spec, training, held_out, normalizer, source, key, num_rois,
               neural_input=neural_input, roi_counts=roi_counts,
               neural_normalizer=neural_normalizer)


def _neural_normalizer(config: ml_collections.ConfigDict, dataset: shards.ShardedDataset,
                       key: str) -> normalise.NeuralNormalizer | None:
  """The configured standardisation of the neural input, checked before any work."""
  mode = config.data.neural_normalisation
  if mode not in normalise.MODES:
    raise ValueError(f"data.neural_normalisation must be one of {normalise.MODES}, "
                     f"got {mode!r}")
  if mode == "none":
    return None
  fraction = normalise.calibration_fraction(
      config.data.neural_calibration_fraction, config.eval.identity_time_blocks)
  return normalise.NeuralNormalizer.fit(
      dataset, key, calibration_fraction=fraction, progress=jax.process_index() == 0)


# ----------------------------------------------------------------------------------------------
# Update step.
# ----------------------------------------------------------------------------------------------
def _augmentations(config, behaviour_spec: behaviour_lib.BehaviourSpec):
  """The configured augmentations; the behavioural ones made for the behaviour's format."""
  pose = augment.behaviour_augmentation_for(
      behaviour_spec, augment.PoseAugmentation(**config.augment.pose)) \
      if config.augment.pose_enabled else None
  neural = augment.NeuralAugmentation(**config.augment.neural) \
      if config.augment.neural_enabled else None
  return pose, neural


def _draws_second_neural_view(config) -> bool:
  """Whether the objective compares two augmented views of each neural window."""
  return config.method == "simclr" or bool(config.neural_view_weight)


def _augmented_views(keys, pose, raw_neural, pose_augmentation, neural_augmentation,
                     second_neural_view: bool):
  """The augmented behaviour window and neural view(s) of a batch.

  Args:
    keys: `(pose_key, neural_key, view_key)`.
    pose: `[B, T, D]` behaviour windows (after the swap, if any).
    raw_neural: the batch's neural windows.
    pose_augmentation: behavioural augmentation, or None.
    neural_augmentation: neural augmentation, or None.
    second_neural_view: draw a second, independent neural view (SimCLR, and the
      neural-view term of the contrastive method); otherwise `neural_view` is the raw window.

  Returns:
    `(pose, neural, neural_view)`.
  """
  pose_key, neural_key, view_key = keys
  if pose_augmentation is not None:
    pose = augment.augment_pose(pose_key, pose, pose_augmentation)
  neural = neural_view = raw_neural
  if neural_augmentation is not None:
    neural = augment.augment_neural(neural_key, raw_neural, neural_augmentation)
    if second_neural_view:
      neural_view = augment.augment_neural(view_key, raw_neural, neural_augmentation)
  return pose, neural, neural_view


def _make_loss_fn(graphdef, config, num_animals: int):
  """The training objective `(params, pose, target_pose, neural, neural_view, animal,
  constants, labels=None) -> (loss, metrics)` of `config.method`, with its domain penalty and,
  for the contrastive method, the behaviour-residual and neural-view terms.
  `metrics["objective"]` is the method's objective alone. `labels` (`[B]`, the windows' action
  labels) is read by the supervised reference only."""
  method, penalty = config.method, config.domain_penalty

  def loss_fn(params, pose, target_pose, neural, neural_view, animal, constants, labels=None):
    # Fresh Variables of the current trace: the fit step (`make_fit_step`) merges frozen
    # parameters from outside its gradient's trace, and an nnx transform inside the model
    # (the recurrent decoder's scan) refuses Variables of another trace.
    model = nnx.merge(graphdef, params, copy=True)
    features = model.encode_neural(neural, animal)
    metrics = {}

    def two_neural_views_loss(projected):
      """SimCLR's objective: the window's two augmented views embed alike."""
      return losses.symmetric_infonce_loss(
          projected, model.neural_head(model.encode_neural(neural_view, animal)),
          config.optim.temperature)

    if method == "contrastive":
      behaviour_features = model.behaviour_encoder(pose)
      projected = model.neural_head(features)
      loss, metrics = losses.symmetric_infonce_loss(
          projected, model.behaviour_head(behaviour_features), config.optim.temperature)
    elif method == "simclr":
      loss, metrics = two_neural_views_loss(model.neural_head(features))
    elif method == "regression":
      loss = objectives.pose_regression_loss(model.pose_decoder(features), target_pose)
    elif method == "supervised":
      if labels is None:
        raise ValueError("the supervised reference trains on the windows' action labels; "
                         "build its batches with step_batch(..., labels=True)")
      logits = model.action_classifier(features)
      loss = objectives.action_classification_loss(logits, labels)
      metrics["label_accuracy"] = objectives.labelled_accuracy(logits, labels)
    else:  # behavenet
      states = objectives.nearest_state(target_pose, constants["state_centroids"])
      logits = model.state_classifier(features)
      loss = objectives.state_classification_loss(logits, states)
      metrics["state_accuracy"] = jnp.mean(jnp.argmax(logits, -1) == states)
    metrics["objective"] = loss
    if method == "contrastive" and config.behaviour_residual_weight:
      # The behaviour side is only the regressor here: it must not move towards the neural
      # features to make them look explained.
      predicted = model.behaviour_predictor(jax.lax.stop_gradient(behaviour_features))
      metrics["unexplained"] = objectives.unexplained_variance(features, predicted)
      loss = loss + config.behaviour_residual_weight * metrics["unexplained"]
    if method == "contrastive" and config.neural_view_weight:
      # On the same neural projection head: features must not change with what the neural
      # augmentations change, as between animals.
      metrics["neural_view"], _ = two_neural_views_loss(projected)
      loss = loss + config.neural_view_weight * metrics["neural_view"]
    if penalty == "mmd":
      metrics["mmd"] = objectives.mmd_penalty(features, animal, num_animals)
      loss = loss + config.domain_penalty_weight * metrics["mmd"]
    elif penalty == "grl":
      logits = model.animal_classifier(objectives.gradient_reversal(
          features, config.domain_penalty_weight))
      metrics["animal_loss"] = objectives.animal_classification_loss(logits, animal)
      loss = loss + metrics["animal_loss"]
    return loss, metrics

  return loss_fn


# The neural swap draws from a stream of the swap's key of its own (`jax.random.fold_in`).
_NEURAL_SWAP_STREAM = 1


def make_train_step(graphdef, tx, config, neural_key: str, num_animals: int, *,
                    behaviour_spec: behaviour_lib.BehaviourSpec = behaviour_lib.POSE_SPEC):
  """Builds the pure update step `(state, batch, constants) -> (state, metrics)`.

  `constants` holds the device-resident arrays the method needs (the swap's pose bank and
  top-K table, BehaveNet's state centroids), see `create_step_constants`. `behaviour_spec`
  (`dataset.behaviour_spec`) chooses the behavioural augmentations that make sense for the
  behaviour's format (DeepFly3D pose by default).

  With the swap enabled, the pose swap (`swap.probability`, exact or top-K) replaces
  behaviour frames by other animals' and the neural swap (`swap.neural_probability`,
  `nar.method.neural_swap`) replaces neural windows by those of the batch's behaviour-nearest window
  of another animal; each acts on its own modality, independently.
  """
  pose_augmentation, neural_augmentation = _augmentations(config, behaviour_spec)
  swap_config, method = config.swap, config.method
  loss_fn = _make_loss_fn(graphdef, config, num_animals)

  def train_step(state: TrainState, batch, constants):
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    swap_key, pose_key, neural_key_, view_key = jax.random.split(key, 4)
    target_pose = pose = batch["pose"]
    metrics = {}
    if swap_config.enabled and swap_config.mode == "topk":
      pose, info = swap_table.swap_with_table(
          swap_key, pose, batch["bank_animal"], batch["bank_frame_index"], constants["table"],
          constants["frames"], swap_probability=swap_config.probability,
          per_frame_target=swap_config.per_frame_target)
      metrics["swapped_fraction"] = jnp.mean(info["swapped"].astype(jnp.float32))
    elif swap_config.enabled:
      pose, info = swap.swap_pose_windows(
          swap_key, pose, batch["bank_animal"], constants["frames"],
          swap_probability=swap_config.probability, temperature=swap_config.temperature,
          pool_chunk=swap_config.pool_chunk, per_frame_target=swap_config.per_frame_target)
      metrics["swapped_fraction"] = jnp.mean(info["swapped"].astype(jnp.float32))
    raw_neural, neural_animal = batch[neural_key], batch["animal"]
    if swap_config.enabled and swap_config.neural_probability > 0:
      # Partners are chosen on the windows' own behaviour, before the pose swap; held-out
      # animals are never in a training batch, so every window may be a partner.
      raw_neural, neural_animal, info = neural_swap.swap_neural_windows(
          jax.random.fold_in(swap_key, _NEURAL_SWAP_STREAM), raw_neural, neural_animal,
          batch["pose"], swap_config.neural_probability,
          partner_quantile=swap_config.neural_partner_quantile,
          distance_scale=constants["frames"].distance_scale)
      metrics["neural_swapped_fraction"] = jnp.mean(info["swapped"].astype(jnp.float32))
    pose, neural, neural_view = _augmented_views(
        (pose_key, neural_key_, view_key), pose, raw_neural, pose_augmentation,
        neural_augmentation, _draws_second_neural_view(config))
    # A window whose neural data was exchanged is encoded as its partner animal's (a
    # per-animal input layer reads the animal; domain penalties compare animals).
    (loss, loss_metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, pose, target_pose, neural, neural_view, neural_animal, constants,
        batch.get("label"))
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics.update(loss_metrics, loss=loss, grad_norm=optax.tree.norm(grads))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def keep_animal_rows(trainable_rows: Sequence[bool]) -> optax.GradientTransformation:
  """Zeroes the updates of the rows of `models.AnimalParam`s whose animal is not trainable.

  Last in a chain, it leaves those rows exactly as they are: no gradient step and no weight
  decay either (decoupled weight decay would shrink them although their animal is never
  seen). Other parameters pass unchanged.

  Args:
    trainable_rows: `[num_animals]` True for the animals whose rows may change.
  """
  trainable = np.asarray(trainable_rows, bool)

  def mask(leaf):
    if not isinstance(leaf, models.AnimalParam):
      return leaf
    value = leaf[...]
    if value.shape[0] != len(trainable):
      raise ValueError(f"an AnimalParam of shape {value.shape} does not have one row per "
                       f"animal of the {len(trainable)} trainable_rows")
    keep = trainable.reshape((-1,) + (1,) * (value.ndim - 1))
    return leaf.replace(jnp.where(keep, value, jnp.zeros_like(value)))

  def update(updates, state, params=None):
    del params
    return jax.tree.map(mask, updates, is_leaf=lambda x: isinstance(x, nnx.Variable)), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(config: ml_collections.ConfigDict,
                   trainable_rows: Sequence[bool] | None = None) -> optax.GradientTransformation:
  """AdamW with warm-up and cosine decay, after gradient clipping.

  Args:
    config: the experiment (`optim` group).
    trainable_rows: with a per-animal input layer, `[num_animals]` True for the animals it
      trains (the training animals); the rows of the others stay as they are
      (`keep_animal_rows`).
  """
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, config.optim.learning_rate, config.optim.warmup_steps,
      max(config.optim.num_train_steps, config.optim.warmup_steps + 1))
  parts = [optax.clip_by_global_norm(config.optim.grad_clip),
           optax.adamw(schedule, weight_decay=config.optim.weight_decay)]
  if trainable_rows is not None:
    parts.append(keep_animal_rows(trainable_rows))
  return optax.chain(*parts)


# ----------------------------------------------------------------------------------------------
# Features and evaluation.
# ----------------------------------------------------------------------------------------------
def _round_up(value: int, multiple: int) -> int:
  return -(-value // multiple) * multiple


def evaluate(graphdef, params, inputs: Input, config, mesh,
             features_path: str | epath.Path | None = None) -> dict[str, Any]:
  """The probe suite (`nar.eval.protocol`) on frozen neural-encoder features of every animal.

  Args:
    graphdef: the model's graph definition.
    params: its parameters; with a per-animal input layer, the held-out animals' rows fitted
      (`fit_input_layers`), else they embed through their initial rows.
    inputs: the data side of the run.
    config: the experiment.
    mesh: the mesh the encoder runs on.
    features_path: if set, the features of the held-out animals' windows are written there
      (`nar.eval.protocol.save_feature_table`), e.g. for embedding plots.

  Returns:
    `probes`: the full suite (single- and multi-animal action, identity, at each label
    fraction); and at the top level, for a one-line summary, the multi-animal action scores
    (`action_held_out_animals`, at label fraction 1.0, when animals are held out) and the
    identity scores on held-out time (`identity_held_out_time`), with their chance levels.
  """
  # Replicated features: every process of a multi-host run reads all of them (a batch-sharded
  # output would span devices other processes own).
  @functools.partial(jax.jit, out_shardings=jax.sharding.NamedSharding(mesh, jax.P()))
  def encode_on_mesh(params, neural, animal):
    return nnx.merge(graphdef, params).encode_neural(neural, animal)

  batch_sharding = jax.sharding.NamedSharding(mesh, jax.P("data"))
  encode = lambda neural, animal: np.asarray(encode_on_mesh(
      params, jax.device_put(neural, batch_sharding), jax.device_put(animal, batch_sharding)))
  eval_config = config.eval
  table = protocol_lib.build_feature_table(
      encode, inputs.dataset, inputs.spec, inputs.normalizer, neural_key=inputs.neural_key,
      hop=eval_config.hop, drop_classes=tuple(eval_config.drop_classes),
      num_time_blocks=eval_config.identity_time_blocks,
      # One batch shape that splits evenly over the mesh, so the encoder compiles once.
      batch_size=_round_up(eval_config.batch_size, mesh.size),
      pad_rois=inputs.pad_rois, with_animal=True, neural_normalizer=inputs.neural_normalizer)
  if features_path is not None:
    protocol_lib.save_feature_table(table, features_path,
                                  animals=inputs.held_out_animals or None)
  suite = protocol_lib.run_probe_suite(
      table, training_animals=inputs.training_animals, held_out_animals=inputs.held_out_animals,
      protocol=protocol_lib.protocol_from_config(eval_config, seed=config.seed))
  for skipped in suite["skipped"]:
    logging.warning("Probe skipped: %s", skipped)
  results: dict[str, Any] = {"training_animals": list(inputs.training_animals),
                             "held_out_animals": list(inputs.held_out_animals)}
  action = protocol_lib.headline_scores(suite, protocol_lib.ACTION_MULTI_ANIMAL)
  if action is not None:
    results["action_held_out_animals"] = action
    results["action_chance"] = suite["chance"]["action"]
  results["identity_held_out_time"] = protocol_lib.headline_scores(suite, protocol_lib.IDENTITY)
  results["identity_chance"] = suite["chance"]["identity"]
  results["probes"] = suite
  return results


# ----------------------------------------------------------------------------------------------
# The job.
# ----------------------------------------------------------------------------------------------
def _check_model_config(model_config: ml_collections.ConfigDict) -> None:
  problems = [f"model.{name} must be a positive integer, got {model_config[name]!r}"
              for name in ("width", "num_blocks", "features", "head_hidden", "embedding")
              if not isinstance(model_config[name], int) or model_config[name] < 1]
  channels = tuple(model_config.image_channels)
  if not channels or any(not isinstance(c, int) or c < 1 for c in channels):
    problems.append(f"model.image_channels must list positive channel counts, got {channels}")
  try:
    jnp.dtype(model_config.dtype)
  except TypeError:
    problems.append(f"model.dtype {model_config.dtype!r} is not a dtype")
  if problems:
    raise ValueError("invalid model config:\n" + "\n".join(f"  - {p}" for p in problems))


def _check_step_shapes(step_fn, state, bank, inputs: Input, batch_size: int, *,
                       labels: bool = False) -> None:
  """Traces the step on abstract shapes (no compilation) to fail early on mismatches."""
  sample = step_batch({k: np.asarray(v)[None] for k, v in inputs.train_source[0].items()},
                      inputs.neural_key, np.zeros(len(inputs.dataset.animals), np.int32),
                      labels=labels)
  batch = {key: jax.ShapeDtypeStruct((batch_size,) + value.shape[1:], value.dtype)
           for key, value in sample.items()}
  try:
    jax.eval_shape(step_fn, state, batch, bank)
  except (TypeError, ValueError) as error:
    raise ValueError(f"the model config does not fit the data's shapes "
                     f"({ {k: v.shape for k, v in batch.items()} }): {error}") from error


# Weights of the terms `_make_loss_fn` adds to the contrastive objective only.
_CONTRASTIVE_TERM_WEIGHTS = ("behaviour_residual_weight", "neural_view_weight")


def _check_config(config, inputs: Input, num_devices: int) -> None:
  if config.method not in objectives.METHODS:
    raise ValueError(f"unknown method {config.method!r}; known: {objectives.METHODS}")
  if config.domain_penalty not in objectives.DOMAIN_PENALTIES:
    raise ValueError(f"unknown domain_penalty {config.domain_penalty!r}; known: "
                     f"{objectives.DOMAIN_PENALTIES}")
  if config.method == "supervised" and inputs.roi_counts is not None:
    # Fitting a held-out animal's input layer with this objective would read its labels.
    raise ValueError("the supervised reference trains on action labels, and per-animal input "
                     "layers would fit held-out animals on theirs; use one shared encoder "
                     "(model.neural_input='shared') or neural images")
  if config.swap.enabled and config.method != "contrastive":
    raise ValueError(f"the swap augments the behaviour branch of the contrastive method; "
                     f"set swap.enabled=False for method {config.method!r}")
  for term in _CONTRASTIVE_TERM_WEIGHTS:
    weight = config[term]
    if weight < 0:
      raise ValueError(f"{term} must be >= 0, got {weight!r}")
    if weight and config.method != "contrastive":
      raise ValueError(f"{term} weighs a term of the contrastive method's objective; set it "
                       f"to 0 for method {config.method!r}")
  if _draws_second_neural_view(config) and not config.augment.neural_enabled:
    what = ("SimCLR's objective" if config.method == "simclr"
            else f"the neural-view term (neural_view_weight={config.neural_view_weight!r})")
    raise ValueError(f"{what} compares two augmented views of each neural window; with "
                     "augment.neural_enabled=False both are the window itself. Switch the "
                     "neural augmentations on" + (
                         "" if config.method == "simclr" else ", or set neural_view_weight=0"))
  if config.optim.temperature <= 0:
    # Zero divides the similarities into NaN; a negative value reverses the objective.
    raise ValueError(f"optim.temperature must be > 0, got {config.optim.temperature!r}")
  try:  # before the pose bank is built and the step traced
    swap.check_settings(swap_probability=config.swap.probability,
                        temperature=config.swap.temperature, pool_chunk=config.swap.pool_chunk)
  except ValueError as error:
    raise ValueError(f"config.swap: {error}") from None
  if not 0.0 <= config.swap.neural_probability <= 1.0:
    raise ValueError(f"swap.neural_probability must lie in [0, 1], got "
                     f"{config.swap.neural_probability!r}")
  if not 0.0 < config.swap.neural_partner_quantile <= 1.0:
    raise ValueError(f"swap.neural_partner_quantile must lie in (0, 1], got "
                     f"{config.swap.neural_partner_quantile!r}")
  batch = config.optim.global_batch_size
  if batch % num_devices:
    raise ValueError(f"global batch {batch} does not divide over {num_devices} devices; "
                     f"use a multiple of {num_devices}")
  if batch % jax.process_count():
    raise ValueError(f"global batch {batch} does not divide over {jax.process_count()} hosts")
  if len(inputs.train_source) < batch:
    raise ValueError(f"the training split holds {len(inputs.train_source)} windows, fewer "
                     f"than one global batch of {batch}")
  adapt = config.adapt
  if not isinstance(adapt.num_steps, int) or adapt.num_steps < 0:
    raise ValueError(f"adapt.num_steps must be an integer >= 0, got {adapt.num_steps!r}")
  if not adapt.learning_rate > 0:
    raise ValueError(f"adapt.learning_rate must be > 0, got {adapt.learning_rate!r}")
  if _fits_held_out_input_layers(config, inputs):
    # Checked now rather than after training: the fit needs one batch of their windows.
    windows_held_out = len(pipeline.select_windows(
        inputs.dataset, inputs.spec, animals=inputs.held_out_animals,
        drop_unlabelled=config.data.drop_unlabelled,
        drop_classes=tuple(config.data.drop_classes)))
    if windows_held_out < batch:
      raise ValueError(f"the held-out animals hold {windows_held_out} windows, fewer than one "
                       f"global batch of {batch} to fit their input layers on")


def _fits_held_out_input_layers(config, inputs: Input) -> bool:
  """Whether training is followed by fitting the held-out animals' input layers."""
  return (inputs.roi_counts is not None and bool(inputs.held_out_animals)
          and config.adapt.num_steps > 0)


def _write_metrics(path: epath.Path, step: int, metrics: dict, writer) -> None:
  with path.open("a") as f:
    f.write(json.dumps({"step": step, **metrics}) + "\n")
  if writer is not None:
    for name, value in metrics.items():
      writer.add_scalar(name, value, step)


def make_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A one-axis (`data`) mesh over all devices (or the given ones)."""
  devices = list(devices if devices is not None else jax.devices())
  return jax.sharding.Mesh(np.array(devices), ("data",),
                           axis_types=(jax.sharding.AxisType.Auto,))


def _image_shape(inputs: Input) -> tuple[int, int] | None:
  if inputs.neural_key != "neural_images":
    return None
  height, width = inputs.train_source[0]["neural_images"].shape[-2:]
  return int(height), int(width)


def run_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Independent PRNG keys of a run: parameter init, training steps, input-layer fit.

  From one root key they would collide: `nnx.Rngs(key)` makes its c-th draw with
  `fold_in(key, c)`, training step t draws from `fold_in(key, t)`, and the fit's stream is
  another `fold_in` of the root.
  """
  init, training, fit = jax.random.split(jax.random.key(seed), 3)
  return init, training, fit


def create_train_state(config: ml_collections.ConfigDict, inputs: Input):
  """Initialises the model and optimiser. Returns `(graphdef, tx, state)` on the host."""
  init_key, train_key, _ = run_keys(config.seed)
  model = ContrastiveModel(
      config.model, pose_dim=inputs.train_source[0]["pose"].shape[-1],
      neural_key=inputs.neural_key, num_rois=inputs.num_rois, rngs=nnx.Rngs(init_key),
      image_shape=_image_shape(inputs),
      method=config.method, pose_frames=inputs.spec.pose_frames,
      num_states=config.behavenet_states, num_animals=len(inputs.dataset.animals),
      decoder=config.regression_decoder, domain_penalty=config.domain_penalty,
      roi_counts=inputs.roi_counts,
      behaviour_predictor=bool(config.behaviour_residual_weight),
      num_classes=len(inputs.dataset.class_names))
  graphdef, params = nnx.split(model)
  trainable_rows = None
  if inputs.roi_counts is not None:
    # Held-out animals have input rows too (fitted after training, `fit_input_layers`); the
    # main optimiser must leave them as initialised.
    trainable_rows = np.isin(inputs.dataset.animals, inputs.training_animals)
  tx = make_optimizer(config, trainable_rows)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                     rng=jax.random.key_data(train_key))
  return graphdef, tx, state


def _behaviour_state_centroids(config, inputs: Input) -> np.ndarray:
  """K-means states of pose windows of the training animals (BehaveNet; no labels)."""
  rng = np.random.default_rng(config.seed)
  items = rng.choice(len(inputs.train_source), min(len(inputs.train_source), 4000),
                     replace=False)
  pose = inputs.train_source.read_batch(items)["pose"]
  return objectives.fit_behaviour_states(pose, config.behavenet_states, config.seed)


def create_step_constants(config: ml_collections.ConfigDict, inputs: Input):
  """Device-independent arrays the step reads, and the bank row of every dataset animal.

  Returns:
    `(constants, bank_row_of_animal)`: constants is a dict with the swap's pose bank
    (`frames`, a `nar.method.swap.PoseBank`) and, in top-K mode, its `table`; BehaveNet's
    `state_centroids`; empty for methods that need none of these.
  """
  rows = {a: i for i, a in enumerate(inputs.training_animals)}
  bank_row_of_animal = np.array([rows.get(a, -1) for a in inputs.dataset.animals], np.int32)
  constants = {}
  if config.method == "behavenet":
    constants["state_centroids"] = _behaviour_state_centroids(config, inputs)
  if not config.swap.enabled:
    return constants, bank_row_of_animal
  if config.swap.mode not in ("exact", "topk"):
    raise ValueError(f"swap.mode must be 'exact' or 'topk', got {config.swap.mode!r}")
  frames = pipeline.make_swap_bank(inputs.dataset, inputs.normalizer,
                                         inputs.training_animals,
                                         pool_stride=config.swap.pool_stride)
  constants["frames"] = frames
  if config.swap.mode == "topk":
    constants["table"] = swap_table.build_topk_table(
        frames, config.swap.topk, temperature=config.swap.temperature,
        pool_chunk=config.swap.pool_chunk)
    logging.info("Top-%d swap table: truncated probability mass %s", config.swap.topk,
                 constants["table"].truncated_mass_stats())
  return constants, bank_row_of_animal


def _reads_labels(config) -> bool:
  """Whether the training step reads action labels (the supervised reference only)."""
  return config.method == "supervised"


def step_batch(local: dict[str, np.ndarray], neural_key: str,
               bank_row_of_animal: np.ndarray, *, labels: bool = False
               ) -> dict[str, np.ndarray]:
  """The fields of a host batch of windows that the step reads; the action labels only with
  `labels=True` (the self-supervised methods never see them)."""
  keys = ("pose", neural_key, "bank_frame_index", "animal") + (("label",) if labels else ())
  batch = {key: local[key] for key in keys}
  batch["bank_animal"] = bank_row_of_animal[local["animal"]]
  return batch


def compile_train_step(graphdef, tx, config, neural_key: str, mesh: jax.sharding.Mesh,
                       num_animals: int, *,
                       behaviour_spec: behaviour_lib.BehaviourSpec = behaviour_lib.POSE_SPEC):
  """Jits the step over `mesh`: state and constants replicated, batch split along `data`."""
  replicated = jax.sharding.NamedSharding(mesh, jax.P())
  batch_sharding = jax.sharding.NamedSharding(mesh, jax.P("data"))
  return jax.jit(make_train_step(graphdef, tx, config, neural_key, num_animals,
                                 behaviour_spec=behaviour_spec),
                 in_shardings=(replicated, batch_sharding, replicated),
                 out_shardings=(replicated, replicated), donate_argnums=(0,))


# ----------------------------------------------------------------------------------------------
# Input layers of new animals.
# ----------------------------------------------------------------------------------------------
# Batches of the fitted animals' windows on which the objective is reported before and after.
FIT_LOSS_BATCHES = 4


def make_fit_step(graphdef, tx, config, neural_key: str, num_animals: int, *,
                  behaviour_spec: behaviour_lib.BehaviourSpec = behaviour_lib.POSE_SPEC):
  """Builds the pure step that fits per-animal input rows with the rest of the model frozen.

  `(state, batch, frozen, constants) -> (state, metrics)`: `state.params` holds only the
  `models.AnimalParam`s (the per-animal input layer), `frozen` every other parameter (the
  trunk, the heads, the behaviour encoder), which gets no gradient. The objective is the
  training objective (`_make_loss_fn`) with the same augmentations and without the swap: a
  new animal's behaviour pairs with its own neural activity.
  """
  pose_augmentation, neural_augmentation = _augmentations(config, behaviour_spec)
  loss_fn = _make_loss_fn(graphdef, config, num_animals)

  def fit_step(state: TrainState, batch, frozen, constants):
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    # Split like the training step's keys; the first (the swap's there) goes unused.
    _, pose_key, neural_key_, view_key = jax.random.split(key, 4)
    pose, neural, neural_view = _augmented_views(
        (pose_key, neural_key_, view_key), batch["pose"], batch[neural_key],
        pose_augmentation, neural_augmentation, _draws_second_neural_view(config))

    def adapted_loss(adapted):
      return loss_fn(nnx.merge_state(frozen, adapted), pose, batch["pose"], neural,
                     neural_view, batch["animal"], constants)

    (loss, metrics), grads = jax.value_and_grad(adapted_loss, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**metrics, "loss": loss}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return fit_step


def make_objective(graphdef, config, neural_key: str, num_animals: int):
  """`(params, batch, constants) -> loss`: the training objective on windows as they are
  (no swap, no augmentation), a deterministic measure of how well neural windows match."""
  loss_fn = _make_loss_fn(graphdef, config, num_animals)

  def objective(params, batch, constants):
    pose, neural = batch["pose"], batch[neural_key]
    return loss_fn(params, pose, pose, neural, neural, batch["animal"], constants)[0]

  return objective


def fit_windows(config: ml_collections.ConfigDict, inputs: Input,
                animals: Sequence[str]) -> pipeline.WindowSource:
  """The windows an input layer is fitted on: the animals' windows chosen like the training
  windows (`data.drop_classes`, `data.drop_unlabelled`; with neither, no label is read)."""
  index = pipeline.select_windows(
      inputs.dataset, inputs.spec, animals=animals, drop_unlabelled=config.data.drop_unlabelled,
      drop_classes=tuple(config.data.drop_classes))
  return pipeline.WindowSource(inputs.dataset, index, inputs.spec, inputs.normalizer,
                                     neural_keys=(inputs.neural_key,), pad_rois=inputs.pad_rois,
                                     neural_normalizer=inputs.neural_normalizer)


def fit_input_layers(graphdef, params, inputs: Input, config: ml_collections.ConfigDict,
                     mesh: jax.sharding.Mesh, animals: Sequence[str], *,
                     constants: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
  """Fits the per-animal input rows of `animals` without labels, the rest of the model frozen.

  A new animal's ROIs are other cells than any training animal's, so its input layer is
  learnt: `config.adapt.num_steps` steps of Adam (`config.adapt.learning_rate`) through the
  training objective against the animal's own behaviour (no swap), on batches of
  `config.optim.global_batch_size` of the animals' windows (`fit_windows`), jitted over
  `mesh` like the training step. Only the animals' rows of the input layer change; the trunk,
  the heads and the behaviour encoder stay bit-identical, and so do other animals' rows.
  Deterministic given `config.seed`.

  Args:
    graphdef: the model's graph definition (with a per-animal input layer).
    params: its trained parameters.
    inputs: the data side of the run.
    config: the experiment.
    mesh: the mesh the fit runs on (batch split along `data`).
    animals: the animals whose input rows are fitted (e.g. the held-out animals).
    constants: the step constants (`create_step_constants`); only BehaveNet's
      `state_centroids` are read.

  Returns:
    `(params, report)`: the parameters with the animals' input rows fitted; `report` holds
    `animals`, `num_steps`, `num_windows`, `learning_rate`, and `loss_before` / `loss_after`,
    the objective on un-augmented windows (`make_objective`) averaged over the same first
    `FIT_LOSS_BATCHES` batches of a seeded shuffle of the animals' windows, and
    `wall_seconds`.
  """
  if inputs.roi_counts is None:
    raise ValueError(f"only a per-animal input layer can be fitted to new animals; this run "
                     f"uses a {inputs.neural_input!r} neural input (model.neural_input)")
  animals = tuple(animals)
  unknown = sorted(set(animals) - set(inputs.dataset.animals))
  if not animals or unknown:
    raise ValueError(f"give animals of the dataset {list(inputs.dataset.animals)} to fit, got "
                     f"{list(animals)}")
  num_steps, learning_rate = int(config.adapt.num_steps), float(config.adapt.learning_rate)
  batch_size = config.optim.global_batch_size
  if batch_size % mesh.size or batch_size % jax.process_count():
    raise ValueError(f"global batch {batch_size} does not divide over {mesh.size} devices "
                     f"and {jax.process_count()} hosts")
  constants = {k: v for k, v in (constants or {}).items() if k == "state_centroids"}
  if config.method == "behavenet" and not constants:
    raise ValueError("BehaveNet's objective needs constants['state_centroids'] "
                     "(create_step_constants)")
  replicated = jax.sharding.NamedSharding(mesh, jax.P())
  batch_sharding = jax.sharding.NamedSharding(mesh, jax.P("data"))
  num_animals = len(inputs.dataset.animals)
  tx = optax.chain(optax.clip_by_global_norm(config.optim.grad_clip),
                   optax.adam(learning_rate),
                   keep_animal_rows(np.isin(inputs.dataset.animals, animals)))
  adapted, frozen = nnx.split_state(params, models.AnimalParam, ...)
  _, _, rng = run_keys(config.seed)  # the fit's augmentations, apart from training's
  state = jax.device_put(TrainState(step=jnp.zeros((), jnp.int32), params=adapted,
                                    opt_state=tx.init(adapted), rng=jax.random.key_data(rng)),
                         replicated)
  frozen, constants = jax.device_put((frozen, constants), replicated)
  fit_step = jax.jit(
      make_fit_step(graphdef, tx, config, inputs.neural_key, num_animals,
                    behaviour_spec=inputs.dataset.behaviour_spec),
      in_shardings=(replicated, batch_sharding, replicated, replicated),
      out_shardings=(replicated, replicated), donate_argnums=(0,))
  objective = jax.jit(make_objective(graphdef, config, inputs.neural_key, num_animals),
                      in_shardings=(replicated, batch_sharding, replicated))

  start_time = time.perf_counter()
  source = fit_windows(config, inputs, animals)
  local_batch = batch_size // jax.process_count()
  to_global = lambda local: {
      key: jax.make_array_from_process_local_data(batch_sharding, np.asarray(local[key]))
      for key in ("pose", inputs.neural_key, "animal")}
  one_pass = pipeline.make_loader(source, batch_size=local_batch, train=True,
                                        seed=config.seed + 1, num_epochs=1)
  loss_batches = [to_global(b) for b in itertools.islice(one_pass, FIT_LOSS_BATCHES)]
  mean_loss = lambda adapted: float(np.mean([
      objective(nnx.merge_state(frozen, adapted), batch, constants) for batch in loss_batches]))
  loss_before = mean_loss(state.params)
  iterator = iter(pipeline.make_loader(source, batch_size=local_batch, train=True,
                                             seed=config.seed))
  for _ in tqdm.trange(num_steps, desc="fit input layers",
                       disable=jax.process_index() != 0):
    state, _ = fit_step(state, to_global(next(iterator)), frozen, constants)
  loss_after = mean_loss(state.params)
  logging.info("Input layers of %s fitted in %d steps: objective %.4f -> %.4f", list(animals),
               num_steps, loss_before, loss_after)
  report = {"animals": list(animals), "num_steps": num_steps, "num_windows": len(source),
            "learning_rate": learning_rate, "loss_before": loss_before,
            "loss_after": loss_after, "wall_seconds": time.perf_counter() - start_time}
  return nnx.merge_state(frozen, state.params), report


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       datasets: shards.DatasetCache | None = None) -> dict[str, Any]:
  """Trains, checkpoints, resumes if `workdir` holds checkpoints, and evaluates.

  With a per-animal input layer, the held-out animals' input rows are fitted after training
  (`fit_input_layers`, `config.adapt`) so that the evaluation can embed them; the fit is not
  checkpointed but recomputed (deterministically) by every invocation that evaluates, and
  its report goes to `eval.json` under `adaptation`.

  Args:
    config: the experiment (see `experiments/configs/`).
    workdir: where checkpoints, metrics, `eval.json` (with the run's `wall_seconds`) and
      `features.npz` (held-out animals' features) go (local or remote path).
    datasets: where to open the dataset (`create_input`): a cache shared with the process's
      other runs; None opens it for this run.

  Returns:
    The evaluation results, also written to `workdir/eval.json`.
  """
  start_time = time.perf_counter()
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  # --- Input pipeline ---
  inputs = create_input(config, datasets)
  # --- Mesh ---
  mesh = make_mesh()
  _check_config(config, inputs, mesh.size)
  replicated = jax.sharding.NamedSharding(mesh, jax.P())
  batch_sharding = jax.sharding.NamedSharding(mesh, jax.P("data"))
  # --- Model, optimiser and swap pool ---
  _check_model_config(config.model)
  graphdef, tx, state = create_train_state(config, inputs)
  state = jax.device_put(state, replicated)
  bank, bank_row_of_animal = create_step_constants(config, inputs)
  bank = jax.device_put(bank, replicated)
  # --- Update step ---
  step_fn = compile_train_step(graphdef, tx, config, inputs.neural_key, mesh,
                               len(inputs.dataset.animals),
                               behaviour_spec=inputs.dataset.behaviour_spec)
  _check_step_shapes(step_fn, state, bank, inputs, config.optim.global_batch_size,
                     labels=_reads_labels(config))
  # --- Data iterator and checkpoints ---
  loader = pipeline.make_loader(
      inputs.train_source, batch_size=config.optim.global_batch_size // jax.process_count(),
      train=True, seed=config.seed, worker_count=config.data.worker_count)
  iterator = iter(loader)
  manager = ocp.CheckpointManager(
      workdir / "checkpoints",
      options=ocp.CheckpointManagerOptions(
          save_interval_steps=config.checkpoint_every_steps, max_to_keep=config.keep_checkpoints,
          enable_async_checkpointing=False),
      item_names=("state", "data"))
  if manager.latest_step() is not None:
    try:
      restored = manager.restore(manager.latest_step(), args=ocp.args.Composite(
          state=ocp.args.StandardRestore(state),
          data=grain.checkpoint.CheckpointRestore(iterator)))
    except ValueError as error:
      if "do not match" not in str(error):  # orbax: the saved and the new state differ
        raise
      raise ValueError(
          f"{workdir / 'checkpoints'} holds checkpoints of another model (made with another "
          "config, or by an earlier version of NAR), so this run cannot resume from them; "
          "pass another workdir, or delete that folder to start over") from error
    state = restored["state"]
    logging.info("Resumed from step %d", int(state.step))
  # --- Training loop ---
  is_chief = jax.process_index() == 0
  writer = None
  if is_chief:
    import tensorboardX  # pylint: disable=g-import-not-at-top
    writer = tensorboardX.SummaryWriter(str(workdir / "tensorboard"))
  first_step = int(state.step)
  num_steps = config.optim.num_train_steps
  progress = tqdm.tqdm(range(first_step, num_steps), initial=first_step, total=num_steps,
                       desc="train", disable=not is_chief)
  last_metrics, timer_start, timed_steps = {}, None, 0
  for step in progress:
    local = step_batch(next(iterator), inputs.neural_key, bank_row_of_animal,
                       labels=_reads_labels(config))
    batch = {key: jax.make_array_from_process_local_data(batch_sharding, value)
             for key, value in local.items()}
    state, metrics = step_fn(state, batch, bank)
    done = step + 1
    if timer_start is None:  # the first step includes compilation
      jax.block_until_ready(state)
      timer_start = time.perf_counter()
    else:
      timed_steps += 1
    if done % config.log_every_steps == 0 or done == num_steps:
      last_metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      if timed_steps:
        last_metrics["windows_per_second"] = (
            timed_steps * config.optim.global_batch_size / (time.perf_counter() - timer_start))
      progress.set_postfix(loss=f"{last_metrics['loss']:.3f}",
                           windows_s=f"{last_metrics.get('windows_per_second', 0):.0f}")
      if is_chief:
        _write_metrics(workdir / logs.METRICS_FILE, done, last_metrics, writer)
    # The last step is saved whatever the interval, so a finished run's checkpoint holds the
    # parameters it was evaluated with.
    manager.save(done, force=done == num_steps, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator)))
  manager.wait_until_finished()
  if writer is not None:
    writer.close()
  # --- Input layers of the held-out animals ---
  params, adaptation = state.params, None
  if _fits_held_out_input_layers(config, inputs):
    # Not checkpointed: it follows training in every invocation, a resumed one included, and
    # is deterministic given the seed, so a resumed run fits the same rows.
    params, adaptation = fit_input_layers(graphdef, params, inputs, config, mesh,
                                          inputs.held_out_animals, constants=bank)
  elif inputs.roi_counts is not None and inputs.held_out_animals:
    logging.warning("adapt.num_steps=0: the held-out animals %s embed through the initial "
                    "rows of their input layers", list(inputs.held_out_animals))
  # --- Evaluation ---
  eval_start_time = time.perf_counter()
  results = evaluate(graphdef, params, inputs, config, mesh,
                     features_path=workdir / "features.npz" if is_chief else None)
  # Of this invocation only: a resumed run does not count the time before it was interrupted.
  results["wall_seconds"] = {"total": time.perf_counter() - start_time,
                             "evaluation": time.perf_counter() - eval_start_time}
  if adaptation is not None:
    results["adaptation"] = adaptation
  results["train_steps"] = num_steps
  results["final_train_metrics"] = last_metrics
  if is_chief:
    logs.write_json_atomically(workdir / "eval.json", results)
  return results


def summary_line(results: dict[str, Any]) -> str:
  """One line: held-out-animal action accuracy and identity accuracy against chance."""
  parts = []
  if results.get("action_held_out_animals"):
    parts.append(f"action on held-out animals {results['action_held_out_animals']['accuracy']:.1f}%"
                 f" (chance {results['action_chance']:.1f}%)")
  if results.get("identity_held_out_time"):
    parts.append(f"identity {results['identity_held_out_time']['accuracy']:.1f}% "
                 f"(chance {results['identity_chance']:.1f}%, lower is better)")
  else:
    parts.append("identity not measured (see eval.json 'probes.skipped')")
  return "eval: " + "; ".join(parts)
