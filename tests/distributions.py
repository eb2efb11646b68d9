"""What the swap's draws are checked against: the exact softmax of eq. 2 and a chi-square fit."""

import numpy as np
from scipy import stats


def softmax_probabilities(query: np.ndarray, pool: np.ndarray, temperature: float,
                          valid: np.ndarray | None = None,
                          weights: np.ndarray | None = None) -> np.ndarray:
  """Exact P(l) ∝ exp(-||b_l - q||_w / temperature) over the valid pool frames, in float64."""
  weights = np.ones(pool.shape[1]) if weights is None else np.asarray(weights, np.float64)
  distances = np.sqrt((((pool.astype(np.float64) - query) ** 2) * weights).sum(-1))
  logits = -distances / temperature
  if valid is not None:
    logits = np.where(valid, logits, -np.inf)
  probabilities = np.exp(logits - logits.max())
  return probabilities / probabilities.sum()


def chi_square_p_value(drawn: np.ndarray, probabilities: np.ndarray) -> float:
  """Chi-square goodness of fit, with categories of expected count < 5 pooled."""
  observed = np.bincount(drawn, minlength=len(probabilities)).astype(np.float64)
  expected = probabilities * len(drawn)
  assert observed[expected == 0].sum() == 0, "drew a frame of probability 0"
  small = expected < 5
  observed = np.append(observed[~small], observed[small].sum())
  expected = np.append(expected[~small], expected[small].sum())
  if expected[-1] == 0:
    observed, expected = observed[:-1], expected[:-1]
  return stats.chisquare(observed, expected).pvalue
