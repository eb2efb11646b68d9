"""The exact swap by rejection from cell boxes: cells, distribution, fallback, the train step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from nar import config as config_lib
from nar.method import pose_bank
from nar.method import swap
from nar.method import swap_cells
from nar.train import step as step_lib
import distributions

NUM_DRAWS = 20000
# The exact draw of `swap_pose_windows`: the cells' rounds, then the scan for what is left.
draw_bank_frames = swap._draw_bank_frames  # pylint: disable=protected-access


@pytest.fixture(scope="module")
def bank_and_frames():
  rng = np.random.default_rng(3)
  frames = {"a": rng.normal(size=(150, 3)).astype(np.float32),
            "b": (rng.normal(size=(90, 3)) * [2.0, 1.0, 0.5]).astype(np.float32),
            "c": rng.normal(size=(40, 3)).astype(np.float32)}
  valid = {name: rng.random(len(f)) > 0.2 for name, f in frames.items()}
  return pose_bank.make_pose_bank(frames, valid, ["a", "b", "c"]), frames, valid


def test_cells_partition_every_valid_frame_once_inside_its_box(bank_and_frames):
  bank, frames, valid = bank_and_frames
  cells = swap_cells.build_cell_index(bank, cell_size=16)
  members, count = np.asarray(cells.members), np.asarray(cells.count)
  for row, name in enumerate(["a", "b", "c"]):
    ids = members[row][members[row] >= 0]
    np.testing.assert_array_equal(np.sort(ids), np.flatnonzero(valid[name]))
    assert count[row].sum() == valid[name].sum() and count[row].max() <= 16
    for column in np.flatnonzero(count[row]):
      points = frames[name][members[row, column, :count[row, column]]]
      assert (points >= np.asarray(cells.low[row, column]) - 1e-6).all()
      assert (points <= np.asarray(cells.high[row, column]) + 1e-6).all()


@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_rejection_draws_follow_the_exact_softmax_of_every_valid_frame(bank_and_frames,
                                                                       temperature):
  bank, frames, valid = bank_and_frames
  cells = swap_cells.build_cell_index(bank, cell_size=8)
  query = np.array([0.3, -0.2, 0.5], np.float32)
  queries = jnp.asarray(np.tile(query, (NUM_DRAWS, 1)))
  drawn, done = jax.jit(swap_cells.draw_by_rejection, static_argnames=("max_rounds",))(
      jax.random.key(0), queries, jnp.full((NUM_DRAWS,), 1, jnp.int32), bank, cells,
      jnp.float32(1 / temperature), max_rounds=64)
  assert bool(jnp.all(done))
  probabilities = distributions.softmax_probabilities(query, frames["b"], temperature,
                                                      valid["b"])
  assert distributions.chi_square_p_value(np.asarray(drawn), probabilities) > 1e-3


def test_weighted_distance_is_used_by_the_boxes_and_the_acceptance():
  rng = np.random.default_rng(4)
  frames = {"a": rng.normal(size=(80, 2)).astype(np.float32),
            "b": rng.normal(size=(120, 2)).astype(np.float32)}
  weights = np.array([4.0, 0.25])
  bank = pose_bank.make_pose_bank(frames, None, ["a", "b"], distance_weights=weights)
  cells = swap_cells.build_cell_index(bank, cell_size=16)
  query = np.array([0.5, 0.5], np.float32)
  drawn, _ = swap_cells.draw_by_rejection(
      jax.random.key(1), jnp.asarray(np.tile(query, (NUM_DRAWS, 1))),
      jnp.ones((NUM_DRAWS,), jnp.int32), bank, cells, jnp.float32(2.0))
  probabilities = distributions.softmax_probabilities(query, frames["b"], 0.5,
                                                      weights=weights)
  assert distributions.chi_square_p_value(np.asarray(drawn), probabilities) > 1e-3


def test_window_swap_with_cells_matches_the_scan_in_distribution(bank_and_frames):
  bank, frames, valid = bank_and_frames
  cells = swap_cells.build_cell_index(bank, cell_size=8)
  rng = np.random.default_rng(5)
  windows = jnp.asarray(np.tile(rng.normal(size=(1, 4, 3)), (4000, 1, 1)), jnp.float32)
  source = jnp.zeros((4000,), jnp.int32)  # animal "a": targets are "b" or "c"
  outcomes = {}
  for name, kernel_cells in (("scan", None), ("cells", cells)):
    _, info = swap.swap_pose_windows(jax.random.key(2), windows, source, bank,
                                     swap_probability=1.0, cells=kernel_cells)
    target = np.asarray(info["target_animal"])
    frame = np.asarray(info["frame_index"])[:, 0]
    outcomes[name] = target * 1000 + frame  # one category per (animal, frame)
  categories = np.union1d(outcomes["scan"], outcomes["cells"])
  counts = np.stack([np.searchsorted(categories, outcomes[n]) for n in outcomes])
  table = np.stack([np.bincount(c, minlength=len(categories)) for c in counts])
  table = table[:, table.sum(0) >= 10]
  assert stats.chi2_contingency(table).pvalue > 1e-3


def test_queries_left_after_the_rounds_take_the_streamed_kernel_exactly(bank_and_frames):
  bank, frames, valid = bank_and_frames
  cells = swap_cells.build_cell_index(bank, cell_size=64)
  query = np.array([0.1, 0.4, -0.3], np.float32)
  queries = jnp.asarray(np.tile(query, (NUM_DRAWS, 1)))
  target = jnp.full((NUM_DRAWS,), 1, jnp.int32)
  # No round at all: every query goes to the streamed kernel.
  drawn, done = swap_cells.draw_by_rejection(jax.random.key(3), queries, target, bank, cells,
                                             jnp.float32(1.0), max_rounds=0)
  assert not bool(jnp.any(done))
  drawn = draw_bank_frames(jax.random.key(3), queries, target, bank,
                                 jnp.float32(1.0), cells, 128, 64)
  probabilities = distributions.softmax_probabilities(query, frames["b"], 1.0, valid["b"])
  assert distributions.chi_square_p_value(np.asarray(drawn), probabilities) > 1e-3


def test_very_low_temperature_draws_the_nearest_valid_frame(bank_and_frames):
  bank, frames, valid = bank_and_frames
  cells = swap_cells.build_cell_index(bank)
  queries = frames["b"][:10] + 0.01
  nearest = [int(np.argmin(np.where(valid["b"], np.linalg.norm(frames["b"] - q, axis=1),
                                    np.inf))) for q in queries]
  drawn = draw_bank_frames(jax.random.key(4), jnp.asarray(queries),
                                 jnp.ones((10,), jnp.int32), bank, jnp.float32(1e4), cells,
                                 128, 64)
  np.testing.assert_array_equal(drawn, nearest)


def test_non_finite_and_untargeted_queries_draw_nothing(bank_and_frames):
  bank, _, _ = bank_and_frames
  cells = swap_cells.build_cell_index(bank)
  queries = jnp.array([[np.nan, 0, 0], [0, 0, 0], [0, 0, 0]], jnp.float32)
  drawn, done = swap_cells.draw_by_rejection(jax.random.key(5), queries,
                                             jnp.array([0, -1, 2]), bank, cells,
                                             jnp.float32(1.0))
  assert np.asarray(drawn)[:2].tolist() == [-1, -1] and bool(jnp.all(done))
  assert 0 <= int(drawn[2]) < 40


def test_cells_of_another_bank_and_bad_sizes_are_refused(bank_and_frames):
  bank, _, _ = bank_and_frames
  other = pose_bank.make_pose_bank({"x": np.zeros((5, 2)), "y": np.ones((5, 2))}, None,
                                   ["x", "y"])
  with pytest.raises(ValueError, match="were not built from this bank"):
    swap.swap_pose_windows(jax.random.key(0), jnp.zeros((2, 3, 3)), jnp.zeros((2,), jnp.int32),
                           bank, cells=swap_cells.build_cell_index(other))
  with pytest.raises(ValueError, match="cell_size must be a positive int"):
    swap_cells.build_cell_index(bank, cell_size=0)


def test_auto_kernel_picks_cells_for_few_dimensions_and_the_scan_for_pose():
  config = config_lib.make_config()
  assert step_lib.swap_kernel(config, 3) == "cells"
  assert step_lib.swap_kernel(config, swap_cells.MAX_CELL_DIM + 1) == "scan"
  config.swap.kernel = "scan"
  assert step_lib.swap_kernel(config, 3) == "scan"
  config.swap.kernel = "kd"
  with pytest.raises(ValueError, match="swap.kernel must be one of"):
    step_lib.swap_kernel(config, 3)


def test_acceptance_rate_is_a_probability_that_tighter_cells_raise(bank_and_frames):
  bank, frames, _ = bank_and_frames
  queries = jnp.asarray(frames["a"][:32])
  target = jnp.ones((32,), jnp.int32)
  rates = [swap_cells.acceptance_rate(queries, target, bank,
                                      swap_cells.build_cell_index(bank, size), 1.0)
           for size in (4, 64)]
  assert 0 < rates[1] < rates[0] <= 1
