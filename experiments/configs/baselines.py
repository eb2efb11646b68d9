"""The trained baselines of the evaluation, as changes to a named config.

Each baseline shares the trainer and differs from Ours in a few fields; `apply_baseline`
applies them to a `swap_cpu` / `swap_tpu` config (see `baseline_cpu.py`, `baseline_tpu.py`).
"""

import ml_collections

BASELINES = {
    # Multimodal contrastive without the swap: the ablation that isolates the swap.
    "no_swap": dict(method="contrastive", swap=False),
    "simclr": dict(method="simclr"),
    "simclr_mmd": dict(method="simclr", domain_penalty="mmd"),
    "simclr_grl": dict(method="simclr", domain_penalty="grl"),
    "regression_recurrent": dict(method="regression", regression_decoder="recurrent"),
    "regression_conv": dict(method="regression", regression_decoder="conv"),
    "regression_conv_mmd": dict(method="regression", regression_decoder="conv",
                                domain_penalty="mmd"),
    "regression_conv_grl": dict(method="regression", regression_decoder="conv",
                                domain_penalty="grl"),
    "behavenet": dict(method="behavenet"),
}


def apply_baseline(config: ml_collections.ConfigDict, name: str | None):
  """Turns a config of Ours into the named baseline (in place) and returns it."""
  if name not in BASELINES:
    raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(BASELINES)}, "
                     f"e.g. --config=baseline_cpu:simclr")
  changes = dict(BASELINES[name])
  config.swap.enabled = changes.pop("swap", False)
  for field, value in changes.items():
    config[field] = value
  return config
