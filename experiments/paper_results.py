"""The seed paper's reported results, as data, to print beside ours.

Günel et al., "Overcoming the Domain Gap in Contrastive Learning of Neural Action
Representations" (arXiv 2112.01176 / IJCV 2022), Tables 1 and 2: linear probes on MC2P, accuracy
in %. Rows are keyed like the rows of `experiments.reproduce`; a row or setting the paper does
not report is absent. The paper reports accuracy only, no balanced accuracy and no spread.
"""

from __future__ import annotations

from nar.eval import protocol as protocol_lib

SOURCE = "Günel et al. 2022 (arXiv 2112.01176), Tables 1-2, MC2P"
# The reproduction's datasets (`--dataset`) whose tables print these numbers: the simulated
# pose and two-photon dataset stands in for MC2P. The paper has no benchmark of the others
# (e.g. "locomotion": ball velocities and ROI traces), so theirs print none.
DATASETS = ("pose",)


def has_benchmark(dataset: str) -> bool:
  """Whether the paper reports numbers the reproduction on `dataset` compares with."""
  return dataset in DATASETS

# Action recognition accuracy: (single-animal 0.5, single-animal 1.0, multi-animal 0.5,
# multi-animal 1.0), label fractions of the probe's training windows.
ACTION_ACCURACY = {
    "random": (16.6, 16.6, 16.6, 16.6),
    "neural_raw": (29.3, 32.5, 18.4, 18.4),
    "simclr": (54.3, 57.6, 46.9, 50.6),
    "regression_recurrent": (53.6, 59.7, 49.4, 51.2),
    "regression_conv": (52.6, 59.6, 50.6, 55.8),
    "behavenet": (54.6, 60.2, 50.5, 56.8),
    "simclr_mmd": (53.6, 57.8, 50.1, 53.1),
    "simclr_grl": (53.5, 56.3, 49.9, 52.3),
    "regression_conv_mmd": (54.5, 60.7, 52.6, 55.4),
    "regression_conv_grl": (55.5, 60.2, 51.8, 55.7),
    "ours": (57.9, 63.3, 54.8, 61.9),
}

# Identity recognition accuracy (lower is better): (0.5, 1.0).
IDENTITY_ACCURACY = {
    "random": (12.5, 12.5),
    "behaviour_raw": (88.6, 89.7),
    "neural_raw": (100.0, 100.0),
    "simclr": (69.9, 80.3),
    "regression_recurrent": (89.5, 91.8),
    "regression_conv": (88.7, 92.5),
    "behavenet": (80.2, 83.4),
    "simclr_mmd": (18.4, 21.2),
    "simclr_grl": (16.7, 19.1),
    "ours": (12.5, 12.5),
}

_FRACTIONS = (0.5, 1.0)


def paper_accuracy(row: str, probe: str, fraction: float) -> float | None:
  """The paper's accuracy of a row in one setting, or None where it reports none.

  Args:
    row: a row key, e.g. "ours", "simclr", "neural_raw".
    probe: `nar.eval.protocol.ACTION_SINGLE_ANIMAL`, `ACTION_MULTI_ANIMAL` or `IDENTITY`.
    fraction: label fraction, 0.5 or 1.0.
  """
  if float(fraction) not in _FRACTIONS:
    return None
  column = _FRACTIONS.index(float(fraction))
  if probe == protocol_lib.IDENTITY:
    values = IDENTITY_ACCURACY.get(row)
  elif probe in (protocol_lib.ACTION_SINGLE_ANIMAL, protocol_lib.ACTION_MULTI_ANIMAL):
    values = ACTION_ACCURACY.get(row)
    column += 2 if probe == protocol_lib.ACTION_MULTI_ANIMAL else 0
  else:
    known = (protocol_lib.ACTION_SINGLE_ANIMAL, protocol_lib.ACTION_MULTI_ANIMAL,
             protocol_lib.IDENTITY)
    raise ValueError(f"unknown probe {probe!r}; choose one of {list(known)}")
  return None if values is None else values[column]
