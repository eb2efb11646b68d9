"""Input layers of new animals: per-animal rows fitted without labels, the trunk frozen.

`fit_input_layers` fits the per-animal input rows of animals the model was not trained on
(e.g. the held-out animals) through the training objective against their own behaviour.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Sequence

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from nar import models
from nar import run as run_lib
from nar.data import behaviour as behaviour_lib
from nar.data import pipeline
from nar.train import inputs as inputs_lib
from nar.train import step as step_lib


# Batches of the fitted animals' windows on which the objective is reported before and after.
FIT_LOSS_BATCHES = 4


def make_fit_step(graphdef, tx, config, neural_key: str, num_animals: int, *,
                  behaviour_spec: behaviour_lib.BehaviourSpec = behaviour_lib.POSE_SPEC):
  """Builds the pure step that fits per-animal input rows with the rest of the model frozen.

  `(state, batch, frozen, constants) -> (state, metrics)`: `state.params` holds only the
  `models.AnimalParam`s (the per-animal input layer), `frozen` every other parameter (the
  trunk, the heads, the behaviour encoder), which gets no gradient. The objective is the
  training objective (`make_loss_fn`) with the same augmentations and without the swap: a
  new animal's behaviour pairs with its own neural activity.
  """
  pose_augmentation, neural_augmentation = step_lib.configured_augmentations(config, behaviour_spec)
  loss_fn = step_lib.make_loss_fn(graphdef, config, num_animals)

  def fit_step(state: step_lib.TrainState, batch, frozen, constants):
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    # Split like the training step's keys; the first (the swap's there) goes unused.
    _, pose_key, neural_key_, view_key = jax.random.split(key, 4)
    pose, neural, neural_view = step_lib.augmented_views(
        (pose_key, neural_key_, view_key), batch["pose"], batch[neural_key],
        pose_augmentation, neural_augmentation, step_lib.draws_second_neural_view(config))

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
  loss_fn = step_lib.make_loss_fn(graphdef, config, num_animals)

  def objective(params, batch, constants):
    pose, neural = batch["pose"], batch[neural_key]
    return loss_fn(params, pose, pose, neural, neural, batch["animal"], constants)[0]

  return objective


def fit_windows(config: ml_collections.ConfigDict, inputs: inputs_lib.Input,
                animals: Sequence[str]) -> pipeline.WindowSource:
  """The windows an input layer is fitted on: the animals' windows chosen like the training
  windows (`data.drop_classes`, `data.drop_unlabelled`; with neither, no label is read)."""
  index = pipeline.select_windows(
      inputs.dataset, inputs.spec, animals=animals, drop_unlabelled=config.data.drop_unlabelled,
      drop_classes=tuple(config.data.drop_classes))
  return pipeline.WindowSource(inputs.dataset, index, inputs.spec, inputs.normalizer,
                               neural_keys=(inputs.neural_key,), pad_rois=inputs.pad_rois,
                               neural_normalizer=inputs.neural_normalizer)


def fit_input_layers(graphdef, params, inputs: inputs_lib.Input, config: ml_collections.ConfigDict,
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
                   step_lib.keep_animal_rows(np.isin(inputs.dataset.animals, animals)))
  adapted, frozen = nnx.split_state(params, models.AnimalParam, ...)
  _, _, rng = step_lib.run_keys(config.seed)  # the fit's augmentations, apart from training's
  state = jax.device_put(step_lib.TrainState(step=jnp.zeros((), jnp.int32), params=adapted,
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


def fits_held_out_input_layers(config, inputs: inputs_lib.Input) -> bool:
  """Whether training is followed by fitting the held-out animals' input layers."""
  return (inputs.roi_counts is not None and bool(inputs.held_out_animals)
          and config.adapt.num_steps > 0)


def input_layer_arrays(params) -> tuple[np.ndarray, np.ndarray]:
  """`(kernel [A, R_pad, width], bias [A, width])` of a model's per-animal input layer."""
  layer = params["neural_encoder"]["input"]
  return np.asarray(layer["kernel"][...]), np.asarray(layer["bias"][...])


def write_input_layers(workdir, params, dataset_animals: Sequence[str], animals: Sequence[str],
                       roi_counts: Sequence[int], *, report: dict[str, Any] | None = None
                       ) -> list:
  """Keeps the fitted input rows of `animals` beside a run (`nar.run.write_input_layer`).

  Args:
    workdir: the run folder.
    params: the model's parameters, with those animals' rows fitted.
    dataset_animals: the animals the rows are indexed by.
    animals: the animals to keep.
    roi_counts: every row's ROI count (in `dataset_animals` order).
    report: how the rows were fitted.

  Returns:
    The paths written.
  """
  kernel, bias = input_layer_arrays(params)
  written = []
  for animal in animals:
    row = list(dataset_animals).index(animal)
    written.append(run_lib.write_input_layer(
        workdir, animal, kernel[row, :int(roi_counts[row])], bias[row], report=report))
  return written
