"""Checks of a run's config against its data, made before the first step compiles.

`check_ranges` lists every numeric field out of its range before the dataset is opened;
`check_resume` refuses to resume a workdir whose checkpoints were made with another model,
dataset or animal split; `check_config` and `check_model_config` list what a config gets
wrong (methods, weights, probabilities, batch sizes, adaptation) with the field to change;
`check_step_shapes` traces the step on abstract shapes so that a model that does not fit the
data fails early.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from nar.data import device
from nar.data import pipeline
from nar.eval import features as features_lib
from nar.method import objectives
from nar.method import swap
from nar.method import swap_schedule
from nar.train import adapt
from nar.train import inputs as inputs_lib
from nar.train import step as step_lib


class ConfigError(ValueError):
  """A config, or a resume, that cannot run as asked: the message lists every field to change."""


# (field, lower bound, whether the bound itself is allowed, integer only).
_RANGES = (
    ("optim.num_train_steps", 1, True, True),
    ("optim.global_batch_size", 1, True, True),
    ("optim.warmup_steps", 0, True, True),
    ("optim.learning_rate", 0.0, False, False),
    ("optim.weight_decay", 0.0, True, False),
    ("optim.grad_clip", 0.0, False, False),
    ("optim.temperature", 0.0, False, False),
    ("log_every_steps", 1, True, True),
    ("checkpoint_every_steps", 1, True, True),
    ("keep_checkpoints", 1, True, True),
    ("eval.hop", 1, True, True),
    ("eval.batch_size", 1, True, True),
    ("eval.identity_time_blocks", 2, True, True),
    ("adapt.num_steps", 0, True, True),
    ("adapt.learning_rate", 0.0, False, False),
    ("data.num_held_out_animals", 0, True, True),
    ("data.neural_cache_mb", 0, True, True),
)
NAN_POLICIES = ("stop", "skip")


def _field(config, dotted: str):
  node = config
  for part in dotted.split("."):
    node = node[part]
  return node


def check_ranges(config: ml_collections.ConfigDict) -> None:
  """Checks every numeric field's range; run before the dataset is opened.

  Raises:
    ConfigError: listing every field out of range (not a number, NaN, infinite, negative,
      zero where a positive value is needed, fractional where a count is), and an unknown
      `optim.nan_policy`.

  Example:
    >>> from nar import config as config_lib
    >>> config = config_lib.make_config()
    >>> config.optim.learning_rate, config.log_every_steps = -1.0, 0
    >>> try:
    ...   check_ranges(config)
    ... except ConfigError as error:
    ...   print(error)
    invalid config:
      - optim.learning_rate must be > 0, got -1.0
      - log_every_steps must be an integer >= 1, got 0
  """
  problems = []
  for name, low, inclusive, integer in _RANGES:
    value = _field(config, name)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if integer:
      valid = isinstance(value, int) and not isinstance(value, bool) and value >= low
      if not valid:
        problems.append(f"{name} must be an integer >= {low}, got {value!r}")
      continue
    valid = is_number and math.isfinite(value) and (value >= low if inclusive else value > low)
    if not valid:
      problems.append(f"{name} must be {'>=' if inclusive else '>'} {low:g}, got {value!r}")
  policy = config.optim.get("nan_policy", "stop")
  if policy not in NAN_POLICIES:
    problems.append(f"optim.nan_policy must be one of {NAN_POLICIES}, got {policy!r}")
  feature_normalisation = config.eval.get("feature_normalisation", "none")
  if feature_normalisation not in features_lib.FEATURE_NORMALISATIONS:
    problems.append(f"eval.feature_normalisation must be one of "
                    f"{features_lib.FEATURE_NORMALISATIONS}, got {feature_normalisation!r}")
  if problems:
    raise ConfigError("invalid config:\n" + "\n".join(f"  - {p}" for p in problems))


# Fields a resumed run may change: how long it trains and logs, how it reads its data, how it
# is evaluated and how its new animals are fitted after training. Any other field changes the
# model, the objective or the data it was trained on.
RESUMABLE_FIELDS = (
    "optim.num_train_steps", "log_every_steps", "checkpoint_every_steps", "keep_checkpoints",
    "data.data_dir", "data.worker_count", "data.neural_cache_mb", "data.preload_neural",
    "data.simulate_if_missing", "data.input_path", "data.device_memory_fraction",
    "eval.", "adapt.",
    # How the exact swap computes its draws; their distribution is the same.
    "swap.kernel", "swap.cell_size", "swap.pool_chunk",
)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def resume_differences(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
  """What a resume would change: fields of two run records (`nar.run.run_record`) that
  differ, other than `RESUMABLE_FIELDS`, the dataset's fingerprint and the animal split.

  Fields the saved record lacks (made before they existed) are not compared.

  Example:
    >>> saved = {"config": {"seed": 0, "data": {"split_seed": 0}},
    ...          "dataset": {"fingerprint": "a"}, "held_out_animals": ["x"]}
    >>> now = {"config": {"seed": 0, "data": {"split_seed": 1}},
    ...        "dataset": {"fingerprint": "a"}, "held_out_animals": ["y"]}
    >>> resume_differences(saved, now)
    ['config.data.split_seed: 0 (checkpoints) vs 1 (now)', "held_out_animals: ['x'] (checkpoints) vs ['y'] (now)"]
  """
  problems = []
  saved_config, now_config = _flatten(saved["config"]), _flatten(now["config"])
  for name in sorted(set(saved_config) & set(now_config)):
    if any(name == field or (field.endswith(".") and name.startswith(field))
           for field in RESUMABLE_FIELDS):
      continue
    if _normalised(saved_config[name]) != _normalised(now_config[name]):
      problems.append(f"config.{name}: {saved_config[name]!r} (checkpoints) vs "
                      f"{now_config[name]!r} (now)")
  if saved["dataset"]["fingerprint"] != now["dataset"]["fingerprint"]:
    problems.append(f"dataset: {saved['dataset'].get('path')} (fingerprint "
                    f"{saved['dataset']['fingerprint']}, checkpoints) vs "
                    f"{now['dataset'].get('path')} (fingerprint {now['dataset']['fingerprint']}, "
                    "now)")
  for key in ("training_animals", "held_out_animals"):
    if key in saved and list(saved[key]) != list(now.get(key, [])):
      problems.append(f"{key}: {list(saved[key])} (checkpoints) vs {list(now.get(key, []))} "
                      "(now)")
  return problems


def _normalised(value):
  return list(value) if isinstance(value, tuple) else value


def check_resume(workdir, saved: Mapping[str, Any] | None, now: Mapping[str, Any]) -> None:
  """Refuses to resume `workdir`'s checkpoints with another model, dataset or split.

  Raises:
    ConfigError: listing the differences, and what to do.
  """
  if saved is None:
    return
  problems = resume_differences(saved, now)
  if problems:
    raise ConfigError(
        f"{workdir} holds checkpoints of a run made with another model, dataset or animal "
        "split, so resuming would train (and evaluate) on the wrong terms; pass another "
        "workdir, or delete its checkpoints to start over. Differences:\n"
        + "\n".join(f"  - {p}" for p in problems))


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
CONTRASTIVE_TERM_WEIGHTS = ("behaviour_residual_weight", "neural_view_weight",
                            "same_animal_negatives_weight", "partner_positive_weight")


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
    weight = config.get(term, 0.0)
    if weight < 0:
      raise ValueError(f"{term} must be >= 0, got {weight!r}")
    if weight and config.method != "contrastive":
      raise ValueError(f"{term} weighs a term of the contrastive method's objective; set it "
                       f"to 0 for method {config.method!r}")
  if config.get("partner_positive_weight", 0.0) and not config.swap.enabled:
    raise ValueError("partner_positive_weight pairs neural windows with their swap partners; "
                     "switch the swap on (swap.enabled=True) or set it to 0")
  try:
    swap_schedule.check_schedule(config.swap.get("schedule", "constant"),
                                 config.swap.get("schedule_fraction", 0.5))
  except ValueError as error:
    raise ValueError(f"config.swap: {error}") from None
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
  if config.data.get("input_path", "host") not in device.INPUT_PATHS:
    raise ValueError(f"data.input_path must be one of {device.INPUT_PATHS}, got "
                     f"{config.data.input_path!r}")
  if not 0.0 < config.data.get("device_memory_fraction", 0.25) <= 1.0:
    raise ValueError(f"data.device_memory_fraction must lie in (0, 1], got "
                     f"{config.data.device_memory_fraction!r}")
  if config.swap.get("kernel", "scan") not in step_lib.SWAP_KERNELS:
    raise ValueError(f"swap.kernel must be one of {step_lib.SWAP_KERNELS}, got {config.swap.kernel!r}")
  if not isinstance(config.swap.get("cell_size", 1), int) or config.swap.get("cell_size", 1) < 1:
    raise ValueError(f"swap.cell_size must be a positive int, got {config.swap.cell_size!r}")
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
