"""What the swap draws: the exact statistics of eq. 2 that choose its temperature."""

import numpy as np

from nar.method import swap_draws


def _two_animals():
  rng = np.random.default_rng(0)
  pools = [rng.normal(size=(200, 3)), rng.normal(size=(300, 3))]
  # Action = sign of the first dimension, a few frames unlabelled.
  labels = [np.where(p[:, 0] > 0, 1, 0) for p in pools]
  labels[1][:10] = -1
  queries = rng.normal(size=(20, 3))
  return queries, np.where(queries[:, 0] > 0, 1, 0), pools, labels, np.ones(20, int)


def test_a_uniform_draw_spreads_over_the_whole_pool_at_chance():
  queries, query_labels, pools, labels, targets = _two_animals()
  stats = swap_draws.draw_statistics(queries, query_labels, pools, labels, targets,
                                          np.inf, top_k=30)
  assert np.isclose(stats["neighbourhood_frames"], 300)
  assert np.isclose(stats["neighbourhood_share"], 1)
  assert np.isclose(stats["top_k_mass"], 30 / 300)
  assert 0.3 < stats["same_action"] < 0.7


def test_a_cold_draw_takes_the_nearest_frame_and_mostly_its_action():
  queries, query_labels, pools, labels, targets = _two_animals()
  stats = swap_draws.draw_statistics(queries, query_labels, pools, labels, targets,
                                          1e-4, top_k=1)
  assert np.isclose(stats["expected_distance"], stats["nearest"])
  assert stats["neighbourhood_frames"] < 1.01 and stats["top_k_mass"] > 0.999
  assert stats["same_action"] > 0.9


def test_weights_scale_the_distance():
  queries, query_labels, pools, labels, targets = _two_animals()
  plain = swap_draws.draw_statistics(queries, query_labels, pools, labels, targets, 1.0, 8)
  doubled = swap_draws.draw_statistics(queries, query_labels, pools, labels, targets, 2.0,
                                            8, scale=np.full(3, 2.0))
  for name, value in plain.items():
    assert np.isclose(doubled[name], 2 * value if "distance" in name or name == "nearest"
                      else value), name
