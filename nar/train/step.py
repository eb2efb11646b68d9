"""The update step: augmented views, the objective of each method, the jitted sharded step.

`make_train_step` builds the pure `(state, batch, constants) -> (state, metrics)` step (swap,
augmentations, loss, optimiser update); `compile_train_step` jits it over a one-axis `data`
mesh (`make_mesh`), state and constants replicated, the batch split. `create_train_state` and
`create_step_constants` make what it reads; `run_keys` the run's independent PRNG keys.
"""

from __future__ import annotations

from typing import Any, Sequence

from absl import logging
from flax import nnx
from flax import struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from nar import models
from nar import run as run_lib
from nar.data import behaviour as behaviour_lib
from nar.data import device as device_lib
from nar.method import augment
from nar.method import losses
from nar.method import neural_swap
from nar.method import objectives
from nar.method import pose_bank
from nar.method import swap
from nar.method import swap_cells
from nar.method import swap_schedule
from nar.method import swap_table
from nar.method import swap_table_cache
from nar.train import inputs as inputs_lib


@struct.dataclass
class TrainState:
  """Everything the step changes: a pytree, checkpointed as one item."""

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array  # raw key data, so that the state is a plain array pytree


def configured_augmentations(config, behaviour_spec: behaviour_lib.BehaviourSpec):
  """The configured augmentations; the behavioural ones made for the behaviour's format."""
  pose = augment.behaviour_augmentation_for(
      behaviour_spec, augment.PoseAugmentation(**config.augment.pose)) \
      if config.augment.pose_enabled else None
  neural = augment.NeuralAugmentation(**config.augment.neural) \
      if config.augment.neural_enabled else None
  return pose, neural


def draws_second_neural_view(config) -> bool:
  """Whether the objective compares two augmented views of each neural window."""
  return config.method == "simclr" or bool(config.neural_view_weight)


def augmented_views(keys, pose, raw_neural, pose_augmentation, neural_augmentation,
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


def make_loss_fn(graphdef, config, num_animals: int):
  """The training objective `(params, pose, target_pose, neural, neural_view, animal,
  constants, labels=None) -> (loss, metrics)` of `config.method`, with its domain penalty and,
  for the contrastive method, the behaviour-residual and neural-view terms.
  `metrics["objective"]` is the method's objective alone. `labels` (`[B]`, the windows' action
  labels) is read by the supervised reference only; `partner` (`[B]`, each window's swap
  partner, -1 for none) by the partner-positive term only."""
  method, penalty = config.method, config.domain_penalty

  def loss_fn(params, pose, target_pose, neural, neural_view, animal, constants, labels=None,
              partner=None):
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
      projected_behaviour = model.behaviour_head(behaviour_features)
      loss, metrics = losses.symmetric_infonce_loss(projected, projected_behaviour,
                                                    config.optim.temperature)
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
    if method == "contrastive" and config.get("same_animal_negatives_weight", 0.0):
      metrics["same_animal_negatives"] = losses.same_animal_infonce_loss(
          projected, projected_behaviour, animal, config.optim.temperature)
      loss = loss + config.same_animal_negatives_weight * metrics["same_animal_negatives"]
    if method == "contrastive" and config.get("partner_positive_weight", 0.0):
      if partner is None:
        raise ValueError("the partner-positive term needs each window's swap partner")
      metrics["partner_positive"] = losses.partner_infonce_loss(
          projected, partner, config.optim.temperature)
      loss = loss + config.partner_positive_weight * metrics["partner_positive"]
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
    elif penalty == "moments":
      metrics["moments"] = objectives.feature_moments_penalty(features, animal, num_animals)
      loss = loss + config.domain_penalty_weight * metrics["moments"]
    elif penalty == "grl":
      logits = model.animal_classifier(objectives.gradient_reversal(
          features, config.domain_penalty_weight))
      metrics["animal_loss"] = objectives.animal_classification_loss(logits, animal)
      loss = loss + metrics["animal_loss"]
    return loss, metrics

  return loss_fn


# The neural swap draws from a stream of the swap's key of its own (`jax.random.fold_in`).
_NEURAL_SWAP_STREAM = 1
# The partner-positive term's schedule draws from a stream of its own.
_PARTNER_STREAM = 2


def make_train_step(graphdef, tx, config, neural_key: str, num_animals: int, *,
                    behaviour_spec: behaviour_lib.BehaviourSpec = behaviour_lib.POSE_SPEC):
  """Builds the pure update step `(state, batch, constants) -> (state, metrics)`.

  `constants` holds the device-resident arrays the method needs (the swap's pose bank and
  top-K table, BehaveNet's state centroids), see `create_step_constants`, and with
  device-resident data its `windows` (`nar.data.device.DeviceWindows`): a batch of window
  indices, `{"window": [B]}`, is then gathered from them inside the step. `behaviour_spec`
  (`dataset.behaviour_spec`) chooses the behavioural augmentations that make sense for the
  behaviour's format (DeepFly3D pose by default).

  With the swap enabled, the pose swap (`swap.probability`, exact or top-K) replaces
  behaviour frames by other animals' and the neural swap (`swap.neural_probability`,
  `nar.method.neural_swap`) replaces neural windows by those of the batch's behaviour-nearest window
  of another animal; each acts on its own modality, independently.
  """
  pose_augmentation, neural_augmentation = configured_augmentations(config, behaviour_spec)
  swap_config = config.swap
  loss_fn = make_loss_fn(graphdef, config, num_animals)

  def train_step(state: TrainState, batch, constants):
    if "window" in batch:  # window indices: the batch is gathered from device-resident frames
      batch = device_lib.gather_batch(constants["windows"], batch["window"],
                                      labels=reads_labels(config))
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    swap_key, pose_key, neural_key_, view_key = jax.random.split(key, 4)
    target_pose = pose = batch["pose"]
    metrics = {}
    schedule = lambda probability: swap_schedule.scheduled_probability(
        state.step, probability, schedule=swap_config.get("schedule", "constant"),
        fraction=swap_config.get("schedule_fraction", 0.5),
        num_steps=config.optim.num_train_steps)
    pose_probability = schedule(swap_config.probability)
    if swap_config.enabled and swap_config.mode == "topk":
      pose, info = swap_table.swap_with_table(
          swap_key, pose, batch["bank_animal"], batch["bank_frame_index"], constants["table"],
          constants["frames"], swap_probability=pose_probability,
          per_frame_target=swap_config.per_frame_target)
      metrics["swapped_fraction"] = jnp.mean(info["swapped"].astype(jnp.float32))
    elif swap_config.enabled:
      pose, info = swap.swap_pose_windows(
          swap_key, pose, batch["bank_animal"], constants["frames"],
          swap_probability=pose_probability, temperature=swap_config.temperature,
          pool_chunk=swap_config.pool_chunk, per_frame_target=swap_config.per_frame_target,
          cells=constants.get("cells"))
      metrics["swapped_fraction"] = jnp.mean(info["swapped"].astype(jnp.float32))
    raw_neural, neural_animal = batch[neural_key], batch["animal"]
    partner = partners = None
    partner_term = bool(swap_config.enabled and config.get("partner_positive_weight", 0.0))
    exchanges_neural = bool(swap_config.enabled and swap_config.neural_probability > 0)
    if partner_term or exchanges_neural:
      # The windows' own behaviour, before any swap, chooses the partners of both.
      partners = neural_swap.behaviour_partners(
          batch["pose"], batch["animal"], distance_scale=constants["frames"].distance_scale)
    if partner_term:
      # Beyond the quantile a window has no partner.
      partner = neural_swap.keep_close(*partners, swap_config.neural_partner_quantile)
      partner = jnp.where(jax.random.bernoulli(
          jax.random.fold_in(swap_key, _PARTNER_STREAM), schedule(1.0), partner.shape),
                          partner, -1)
      metrics["partner_fraction"] = jnp.mean((partner >= 0).astype(jnp.float32))
    if exchanges_neural:
      # Held-out animals are never in a training batch, so every window may be a partner.
      raw_neural, neural_animal, info = neural_swap.swap_neural_windows(
          jax.random.fold_in(swap_key, _NEURAL_SWAP_STREAM), raw_neural, neural_animal,
          batch["pose"], schedule(swap_config.neural_probability),
          partner_quantile=swap_config.neural_partner_quantile, partners=partners)
      metrics["neural_swapped_fraction"] = jnp.mean(info["swapped"].astype(jnp.float32))
    pose, neural, neural_view = augmented_views(
        (pose_key, neural_key_, view_key), pose, raw_neural, pose_augmentation,
        neural_augmentation, draws_second_neural_view(config))
    # A window whose neural data was exchanged is encoded as its partner animal's (a
    # per-animal input layer reads the animal; domain penalties compare animals).
    (loss, loss_metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, pose, target_pose, neural, neural_view, neural_animal, constants,
        batch.get("label"), partner)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics.update(loss_metrics, loss=loss, grad_norm=optax.tree.norm(grads))
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    if config.optim.get("nan_policy", "stop") == "skip":
      # A non-finite loss or gradient leaves the parameters and the optimiser as they were.
      finite = jnp.isfinite(loss) & jnp.isfinite(metrics["grad_norm"])
      kept = state.replace(step=state.step + 1)
      new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, kept)
      metrics["skipped"] = 1.0 - finite.astype(jnp.float32)
    return new_state, metrics

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


def make_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A one-axis (`data`) mesh over all devices (or the given ones)."""
  devices = list(devices if devices is not None else jax.devices())
  return jax.sharding.Mesh(np.array(devices), ("data",),
                           axis_types=(jax.sharding.AxisType.Auto,))


def run_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Independent PRNG keys of a run: parameter init, training steps, input-layer fit.

  From one root key they would collide: `nnx.Rngs(key)` makes its c-th draw with
  `fold_in(key, c)`, training step t draws from `fold_in(key, t)`, and the fit's stream is
  another `fold_in` of the root.
  """
  init, training, fit = jax.random.split(jax.random.key(seed), 3)
  return init, training, fit


def create_train_state(config: ml_collections.ConfigDict, inputs: inputs_lib.Input):
  """Initialises the model and optimiser. Returns `(graphdef, tx, state)` on the host."""
  init_key, train_key, _ = run_keys(config.seed)
  model = models.build_model(config, inputs_lib.model_shapes(inputs), nnx.Rngs(init_key))
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


def _behaviour_state_centroids(config, inputs: inputs_lib.Input) -> np.ndarray:
  """K-means states of pose windows of the training animals (BehaveNet; no labels)."""
  rng = np.random.default_rng(config.seed)
  items = rng.choice(len(inputs.train_source), min(len(inputs.train_source), 4000),
                     replace=False)
  pose = inputs.train_source.read_batch(items)["pose"]
  return objectives.fit_behaviour_states(pose, config.behavenet_states, config.seed)


SWAP_KERNELS = ("auto", "scan", "cells")


def swap_kernel(config: ml_collections.ConfigDict, behaviour_dim: int) -> str:
  """The exact swap's kernel for behaviour of `behaviour_dim` features: "scan" or "cells".

  Example:
    >>> from nar import config as config_lib
    >>> config = config_lib.make_config()
    >>> swap_kernel(config, 3), swap_kernel(config, 90)
    ('cells', 'scan')
  """
  kernel = config.swap.get("kernel", "scan")
  if kernel not in SWAP_KERNELS:
    raise ValueError(f"swap.kernel must be one of {SWAP_KERNELS}, got {kernel!r}")
  if kernel == "auto":
    return "cells" if behaviour_dim <= swap_cells.MAX_CELL_DIM else "scan"
  return kernel


def create_step_constants(config: ml_collections.ConfigDict, inputs: inputs_lib.Input):
  """Device-independent arrays the step reads, and the bank row of every dataset animal.

  Returns:
    `(constants, bank_row_of_animal)`: constants is a dict with the swap's pose bank
    (`frames`, a `nar.method.pose_bank.PoseBank`), with the "cells" kernel its `cells`
    (`nar.method.swap_cells.CellIndex`) and, in top-K mode, its `table`; BehaveNet's
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
  frames = pose_bank.make_swap_bank(inputs.dataset, inputs.normalizer,
                                    inputs.training_animals,
                                    pool_stride=config.swap.pool_stride)
  constants["frames"] = frames
  if config.swap.mode == "exact" and swap_kernel(config, frames.pose_dim) == "cells":
    constants["cells"] = swap_cells.build_cell_index(
        frames, config.swap.get("cell_size", swap_cells.DEFAULT_CELL_SIZE))
    logging.info("Exact swap by rejection from %d cells of <= %d frames per animal (%d-d "
                 "behaviour)", constants["cells"].num_cells, constants["cells"].cell_size,
                 frames.pose_dim)
  if config.swap.mode == "topk":
    # Built once per dataset and settings, then read from beside the dataset (in memory only,
    # with a warning, where its folder cannot be written).
    constants["table"] = swap_table_cache.cached_topk_table(
        frames, config.swap.topk, temperature=config.swap.temperature,
        pool_chunk=config.swap.pool_chunk, cache_dir=inputs.dataset.path,
        dataset_fingerprint=run_lib.dataset_fingerprint(inputs.dataset))
    logging.info("Top-%d swap table: truncated probability mass %s", config.swap.topk,
                 constants["table"].truncated_mass_stats())
  return constants, bank_row_of_animal


def place_step_constants(constants: dict, mesh: jax.sharding.Mesh, *,
                         max_replicated_bytes: int) -> dict:
  """The step's constants on `mesh`: replicated on every device, except a top-K table larger
  than `max_replicated_bytes`, which is split along its frames over the devices
  (`swap_table.place_topk_table`); the jitted step reads either placement."""
  replicated = jax.sharding.NamedSharding(mesh, jax.P())
  placed = {name: value if name == "table" else jax.device_put(value, replicated)
            for name, value in constants.items()}
  if "table" in constants:
    placed["table"] = swap_table.place_topk_table(constants["table"], mesh,
                                                  max_replicated_bytes=max_replicated_bytes)
    logging.info("Top-K table: %.1f MiB, %s", constants["table"].nbytes / 2**20,
                 "replicated" if constants["table"].nbytes <= max_replicated_bytes
                 else f"split over {mesh.size} devices")
  return placed


def reads_labels(config) -> bool:
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
  """Jits the step over `mesh`: state replicated, batch split along `data`, constants as
  placed (`place_step_constants`: replicated, a large top-K table split)."""
  replicated = jax.sharding.NamedSharding(mesh, jax.P())
  batch_sharding = jax.sharding.NamedSharding(mesh, jax.P("data"))
  return jax.jit(make_train_step(graphdef, tx, config, neural_key, num_animals,
                                 behaviour_spec=behaviour_spec),
                 in_shardings=(replicated, batch_sharding, None),
                 out_shardings=(replicated, replicated), donate_argnums=(0,))
