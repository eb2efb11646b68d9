"""What the swap of seed eq. 2 draws, computed exactly: distances, neighbourhood, actions.

`draw_statistics` gives, for query frames and their target animals, how far a swapped frame
lies, how many frames the draw effectively spreads over, how much mass K nearest frames hold
and how often the swapped frame shares the query's action (`benchmarks/swap_draws.py` prints
them per temperature). Exact float64 sums over every pool frame: for hundreds of queries.
"""

from __future__ import annotations

import numpy as np


def draw_statistics(queries: np.ndarray, query_labels: np.ndarray, pools: list,
                    pool_labels: list, targets: np.ndarray, temperature: float,
                    top_k: int, scale: np.ndarray | None = None) -> dict[str, float]:
  """Medians over queries of what eq. 2 draws at `temperature` (exact, float64).

  Example:
    >>> import numpy as np
    >>> pool = np.array([[0.0], [1.0], [5.0]])
    >>> stats = draw_statistics(np.array([[0.0]]), np.array([0]), [pool, pool],
    ...                         [np.array([0, 0, 1]), np.array([0, 0, 1])], np.array([1]),
    ...                         temperature=1.0, top_k=2)
    >>> round(stats["top_k_mass"], 3), round(stats["same_action"], 3)
    (0.995, 0.995)

  Args:
    queries: `[Q, D]` query frames.
    query_labels: `[Q]` their actions (-1: unlabelled).
    pools: per animal `[M_a, D]` valid pool frames.
    pool_labels: per animal `[M_a]` their actions.
    targets: `[Q]` the target animal of each query (index into `pools`).
    temperature: T > 0, or `np.inf` for a uniform draw.
    top_k: K of the top-K mass.
    scale: `[D]` per-feature scale of the distance (sqrt of its weights), or None.

  Returns:
    `nearest`, `expected_distance`, `neighbourhood_frames`, `neighbourhood_share`,
    `top_k_mass`, `same_action` (over labelled queries; NaN if none).
  """
  scale = np.ones(queries.shape[1]) if scale is None else np.asarray(scale, np.float64)
  rows = {name: [] for name in ("nearest", "expected_distance", "neighbourhood_frames",
                                "neighbourhood_share", "top_k_mass", "same_action")}
  for query, label, target in zip(queries, query_labels, targets):
    distances = np.sqrt((((pools[target] - query) * scale) ** 2).sum(-1))
    logits = -distances / temperature if np.isfinite(temperature) else np.zeros_like(distances)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    entropy = -(probabilities * np.log(np.maximum(probabilities, 1e-300))).sum()
    rows["nearest"].append(distances.min())
    rows["expected_distance"].append((probabilities * distances).sum())
    rows["neighbourhood_frames"].append(np.exp(entropy))
    rows["neighbourhood_share"].append(np.exp(entropy) / len(distances))
    rows["top_k_mass"].append(np.sort(probabilities)[::-1][:top_k].sum())
    labelled = pool_labels[target] >= 0
    if label >= 0 and labelled.any():
      mass = probabilities[labelled]
      rows["same_action"].append(mass[pool_labels[target][labelled] == label].sum() / mass.sum())
  return {name: float(np.median(values)) if values else float("nan")
          for name, values in rows.items()}
