"""The calibration of a simulated dataset against the real set it imitates: what the real
set measured, and the same statistics of a simulated dataset (`experiments.calibrate` is the
command that prints them side by side).
"""

import ast
import dataclasses
import hashlib
import json

import ml_collections
import numpy as np

from experiments import execution
from experiments.configs import reproduce as presets
from nar.data import recording
from nar.data import shards

# What the project's probes measured on the real 19-fly set (5 folds of 4 held-out flies);
# in %. Identity is 19-way (chance 5.3 %).
REAL = {
    "stand": 39.0, "forward": 24.0, "turn_left": 20.0, "turn_right": 17.0,
    "unlabelled": 40.0,
    "raw_held_out": 44.0, "raw_within": 59.0,
    "identity_raw": 49.0, "identity_standardised": 5.4, "identity_behaviour": 9.8,
}
ROW_NAMES = {
    "stand": "stand, % of labelled frames",
    "forward": "forward, % of labelled frames",
    "turn_left": "turn left, % of labelled frames",
    "turn_right": "turn right, % of labelled frames",
    "unlabelled": "unlabelled, % of all frames",
    "raw_held_out": "linear probe on raw windows, held-out animals (bal. acc.)",
    "raw_within": "linear probe on raw windows, within an animal (bal. acc.)",
    "identity_raw": "identity from raw windows (acc.)",
    "identity_standardised": "identity from standardised windows (acc.)",
    "identity_behaviour": "identity from behaviour windows (acc.)",
}


def label_shares(dataset: shards.ShardedDataset) -> dict[str, float]:
  """% of the labelled frames of each class, and % of unlabelled frames."""
  labels = dataset.behaviour_index.labels
  labelled = labels[labels != recording.UNLABELLED]
  shares = {name: 100.0 * float(np.mean(labelled == index))
            for index, name in enumerate(dataset.class_names)}
  shares["unlabelled"] = 100.0 * float(np.mean(labels == recording.UNLABELLED))
  return shares


def _score(results: dict, probe: str, metric: str) -> float:
  return float(results["probes"][probe]["1.0"][metric]["mean"])


def probe_figures(config) -> dict[str, float]:
  """The probe rows for the held-out fold of `config` (its seed and split)."""
  raw = execution.evaluate_raw_inputs(config, "neural")
  standardised = execution.evaluate_raw_inputs(config, "neural", standardised=True)
  behaviour = execution.evaluate_raw_inputs(config, "pose")
  return {
      "raw_held_out": _score(raw, "action_multi_animal", "balanced_accuracy"),
      "raw_within": _score(raw, "action_single_animal", "balanced_accuracy"),
      "identity_raw": _score(raw, "identity", "accuracy"),
      "identity_standardised": _score(standardised, "identity", "accuracy"),
      "identity_behaviour": _score(behaviour, "identity", "accuracy"),
  }


def with_settings(choice: presets.SimulatedDataset,
                  settings: list[str]) -> presets.SimulatedDataset:
  """The dataset simulated with `NAME=VALUE` settings changed, under a name of its own.

  Example:
    >>> base = presets.DATASETS["locomotion_calibrated"]("tiny")
    >>> changed = with_settings(base, ["neuropil=0.8"])
    >>> changed.simulator.neuropil, changed.name.startswith(base.name + "_")
    (0.8, True)
  """
  if not settings:
    return choice
  changes = {}
  for setting in settings:
    name, separator, value = setting.partition("=")
    if not separator or not hasattr(choice.simulator, name):
      raise ValueError(f"--set takes NAME=VALUE with NAME a field of "
                       f"{type(choice.simulator).__name__}, got {setting!r}")
    changes[name] = ast.literal_eval(value)
  digest = hashlib.sha256(json.dumps(changes, sort_keys=True).encode()).hexdigest()[:8]
  return dataclasses.replace(choice, name=f"{choice.name}_{digest}",
                             simulator=dataclasses.replace(choice.simulator, **changes))


# The datasets made to imitate a real set: name -> what the real set measured.
CALIBRATED_DATASETS = {"locomotion_calibrated": REAL}


def compare(dataset: shards.ShardedDataset, fold_configs, real: dict[str, float] = REAL
            ) -> list[dict]:
  """The real set's statistics beside the simulated dataset's, one row each.

  Args:
    dataset: the opened simulated dataset.
    fold_configs: training configs of the held-out folds the probes average over.
    real: what the real set measured (`REAL`).

  Returns:
    `[{"statistic", "real", "simulated" (mean over folds), "std", "folds"}]` in the order of
    `real`, for the statistics measured.
  """
  figures = {name: [value] for name, value in label_shares(dataset).items()}
  for config in fold_configs:
    for name, value in probe_figures(config).items():
      figures.setdefault(name, []).append(value)
  rows = []
  for name, real_value in real.items():
    values = figures.get(name)
    if values:
      rows.append({"statistic": name, "real": real_value, "simulated": float(np.mean(values)),
                   "std": float(np.std(values)), "folds": len(values)})
  return rows


def markdown(rows: list[dict]) -> str:
  """`compare`'s rows as a markdown table (statistic, real, simulated ± std, difference).

  Example:
    >>> print(markdown([{"statistic": "stand", "real": 39.0, "simulated": 38.0, "std": 0.0,
    ...                  "folds": 1}]), end="")
    | statistic | real | simulated | simulated − real |
    | --- | --- | --- | --- |
    | stand, % of labelled frames | 39.0 | 38.0 | −1.0 |
  """
  lines = ["| statistic | real | simulated | simulated − real |", "| --- | --- | --- | --- |"]
  for row in rows:
    spread = f" ± {row['std']:.1f}" if row["folds"] > 1 else ""
    difference = f"{row['simulated'] - row['real']:+.1f}".replace("-", "−")
    lines.append(f"| {ROW_NAMES[row['statistic']]} | {row['real']:.1f} | "
                 f"{row['simulated']:.1f}{spread} | {difference} |")
  return "\n".join(lines) + "\n"


def fold_config(config, fold: int):
  """The config of fold `fold`: seed and held-out animals as the reproduction's seed `fold`."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.seed = fold
  config.data.split_seed = execution.REPORT_SPLIT_SEED_OFFSET + fold
  return config
