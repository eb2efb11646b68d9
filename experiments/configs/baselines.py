"""The trained baselines of the evaluation, as changes to a named config.

Each baseline shares the trainer and differs from Ours in a few fields; `apply_baseline`
applies them to a `swap_cpu` / `swap_tpu` config (see `baseline_cpu.py`, `baseline_tpu.py`).
"""

import ml_collections

from experiments.configs import common

# SimCLR's InfoNCE temperature: 0.1, its usual value, which did as well as or better than
# Ours' 0.5 for SimCLR on the default simulated dataset (42.3 against 41.2 % multi-animal
# over two folds at 300 steps).
SIMCLR_TEMPERATURE = 0.1

BASELINES = {
    # Multimodal contrastive without the swap: the ablation that isolates the swap.
    "no_swap": dict(method="contrastive", swap=False),
    "simclr": {"method": "simclr", "optim.temperature": SIMCLR_TEMPERATURE},
    "simclr_mmd": {"method": "simclr", "domain_penalty": "mmd",
                   "optim.temperature": SIMCLR_TEMPERATURE},
    "simclr_grl": {"method": "simclr", "domain_penalty": "grl",
                   "optim.temperature": SIMCLR_TEMPERATURE},
    "regression_recurrent": dict(method="regression", regression_decoder="recurrent"),
    "regression_conv": dict(method="regression", regression_decoder="conv"),
    "regression_conv_mmd": dict(method="regression", regression_decoder="conv",
                                domain_penalty="mmd"),
    "regression_conv_grl": dict(method="regression", regression_decoder="conv",
                                domain_penalty="grl"),
    "behavenet": dict(method="behavenet"),
}

# References that are not self-supervised, configs like the baselines' but not rows of the
# reproduction's tables: "supervised" trains the neural encoder on the training animals'
# action labels, the accuracy on new animals this encoder reaches when told the answer.
REFERENCES = {
    "supervised": dict(method="supervised"),
}


def apply_baseline(config: ml_collections.ConfigDict, name: str | None):
  """Turns a config of Ours into the named baseline or reference (in place) and returns it."""
  known = {**BASELINES, **REFERENCES}
  if name not in known:
    raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(known)}, "
                     f"e.g. --config=baseline_cpu:simclr")
  changes = dict(known[name])
  config.swap.enabled = changes.pop("swap", False)
  if not config.swap.enabled:
    # No swap of either kind: the neural swap is off too (the step skips it without the
    # swap anyway; zero keeps a baseline's config the same whatever Ours' setting).
    config.swap.neural_probability = 0.0
    # Swap partners' positives are part of the swap, too.
    config.partner_positive_weight = 0.0
  if changes.get("method", "contrastive") != "contrastive":
    # Ours' own settings: its two extra terms belong to the contrastive objective, and the
    # baselines have a feature size of their own where the config names one.
    config.behaviour_residual_weight = 0.0
    config.neural_view_weight = 0.0
    config.same_animal_negatives_weight = 0.0
    if config.model.baseline_features is not None:
      config.model.features = config.model.baseline_features
  config.model.baseline_features = None
  return common.apply_overrides(config, changes, what=f"baseline {name!r}")
