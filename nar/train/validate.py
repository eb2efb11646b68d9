"""Checks of a run's config against its data, made before the first step compiles.

`check_config` and `check_model_config` list what a config gets wrong (methods, weights,
probabilities, batch sizes, adaptation) with the field to change; `check_step_shapes` traces
the step on abstract shapes so that a model that does not fit the data fails early.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nar.data import pipeline
from nar.method import objectives
from nar.method import swap
from nar.train import adapt
from nar.train import inputs as inputs_lib
from nar.train import step as step_lib


def check_model_config(model_config: ml_collections.ConfigDict) -> None:
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


def check_step_shapes(step_fn, state, bank, inputs: inputs_lib.Input, batch_size: int, *,
                      labels: bool = False) -> None:
  """Traces the step on abstract shapes (no compilation) to fail early on mismatches."""
  sample = step_lib.step_batch({k: np.asarray(v)[None] for k, v in inputs.train_source[0].items()},
                               inputs.neural_key, np.zeros(len(inputs.dataset.animals), np.int32),
                               labels=labels)
  batch = {key: jax.ShapeDtypeStruct((batch_size,) + value.shape[1:], value.dtype)
           for key, value in sample.items()}
  try:
    jax.eval_shape(step_fn, state, batch, bank)
  except (TypeError, ValueError) as error:
    raise ValueError(f"the model config does not fit the data's shapes "
                     f"({ {k: v.shape for k, v in batch.items()} }): {error}") from error


# Weights of the terms `make_loss_fn` adds to the contrastive objective only.
CONTRASTIVE_TERM_WEIGHTS = ("behaviour_residual_weight", "neural_view_weight")


def check_config(config, inputs: inputs_lib.Input, num_devices: int) -> None:
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
  for term in CONTRASTIVE_TERM_WEIGHTS:
    weight = config[term]
    if weight < 0:
      raise ValueError(f"{term} must be >= 0, got {weight!r}")
    if weight and config.method != "contrastive":
      raise ValueError(f"{term} weighs a term of the contrastive method's objective; set it "
                       f"to 0 for method {config.method!r}")
  if step_lib.draws_second_neural_view(config) and not config.augment.neural_enabled:
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
  adapt_config = config.adapt
  if not isinstance(adapt_config.num_steps, int) or adapt_config.num_steps < 0:
    raise ValueError(f"adapt.num_steps must be an integer >= 0, got {adapt_config.num_steps!r}")
  if not adapt_config.learning_rate > 0:
    raise ValueError(f"adapt.learning_rate must be > 0, got {adapt_config.learning_rate!r}")
  if adapt.fits_held_out_input_layers(config, inputs):
    # Checked now rather than after training: the fit needs one batch of their windows.
    windows_held_out = len(pipeline.select_windows(
        inputs.dataset, inputs.spec, animals=inputs.held_out_animals,
        drop_unlabelled=config.data.drop_unlabelled,
        drop_classes=tuple(config.data.drop_classes)))
    if windows_held_out < batch:
      raise ValueError(f"the held-out animals hold {windows_held_out} windows, fewer than one "
                       f"global batch of {batch} to fit their input layers on")
