"""Cross-animal pose swap: exact draw, chunking, pools, top-K table and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from nar.method import pose_bank
from nar.method import swap
from nar.method import swap_table
import distributions
import reference_swap

NUM_DRAWS = 20000


def _tagged_bank_frames(rng, counts: dict[str, int], dim: int) -> dict[str, np.ndarray]:
  """Distinct random frames per animal, so a frame identifies its animal and index."""
  return {animal: rng.normal(size=(count, dim)).astype(np.float32)
          for animal, count in counts.items()}


def _frame_owner(per_animal_frames: dict[str, np.ndarray]) -> dict[bytes, tuple[str, int]]:
  return {frame.tobytes(): (animal, index) for animal, frames in per_animal_frames.items()
          for index, frame in enumerate(frames)}


# ------------------------------------------------------------------------------------------
# The exact draw
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 0.4])
def test_draws_over_keys_follow_the_exact_softmax(temperature):
  rng = np.random.default_rng(0)
  pool = rng.normal(size=(20, 3)).astype(np.float32)
  query = rng.normal(size=(1, 3)).astype(np.float32)
  keys = jax.random.split(jax.random.key(1), NUM_DRAWS)
  drawn = jax.vmap(lambda key: swap.draw_pool_frames(
      key, query, pool, temperature=temperature, pool_chunk=64))(keys)
  p_value = distributions.chi_square_p_value(np.asarray(drawn).ravel(),
                                distributions.softmax_probabilities(query[0], pool, temperature))
  assert p_value > 1e-3


def test_draws_over_query_ids_follow_the_exact_softmax_across_blocks_and_chunks():
  # 300 frames: five blocks of the two-level draw over three pool chunks, invalid frames.
  rng = np.random.default_rng(1)
  pool = rng.normal(size=(300, 2)).astype(np.float32)
  valid = rng.random(300) > 0.1
  query = rng.normal(size=(2,)).astype(np.float32)
  # Repeated queries have distinct ids, hence independent noise under one key.
  drawn = np.asarray(swap.draw_pool_frames(jax.random.key(2), np.tile(query, (NUM_DRAWS, 1)),
                                           pool, valid, temperature=0.7, query_chunk=4096,
                                           pool_chunk=128))
  assert valid[drawn].all()
  probabilities = distributions.softmax_probabilities(query, pool, 0.7, valid)
  assert distributions.chi_square_p_value(drawn, probabilities) > 1e-3
  block_probabilities = np.add.reduceat(probabilities, np.arange(0, 300, pose_bank.FRAME_BLOCK))
  blocks = drawn // pose_bank.FRAME_BLOCK
  assert distributions.chi_square_p_value(blocks, block_probabilities) > 1e-3


def test_draws_of_neighbouring_queries_are_independent():
  rng = np.random.default_rng(3)
  pool = rng.normal(size=(6, 2)).astype(np.float32)
  query = rng.normal(size=(2,)).astype(np.float32)
  drawn = np.asarray(swap.draw_pool_frames(jax.random.key(4), np.tile(query, (NUM_DRAWS, 1)),
                                           pool))
  counts = np.zeros((6, 6))
  np.add.at(counts, (drawn[0::2], drawn[1::2]), 1)
  assert stats.chi2_contingency(counts).pvalue > 1e-3


def test_chunked_draw_equals_unchunked_draw_for_the_same_key():
  rng = np.random.default_rng(2)
  queries = rng.normal(size=(300, 7)).astype(np.float32)
  pool = rng.normal(size=(1000, 7)).astype(np.float32)
  valid = rng.random(1000) > 0.2
  key = jax.random.key(3)
  unchunked = swap.draw_pool_frames(key, queries, pool, valid, query_chunk=300,
                                    pool_chunk=1024)
  for query_chunk, pool_chunk in [(64, 128), (7, 64), (300, 192)]:
    chunked = swap.draw_pool_frames(key, queries, pool, valid, query_chunk=query_chunk,
                                    pool_chunk=pool_chunk)
    np.testing.assert_array_equal(chunked, unchunked)
  assert valid[np.asarray(unchunked)].all()
  assert len(np.unique(np.asarray(unchunked))) > 100


def test_query_offset_continues_the_noise_of_a_split_job():
  rng = np.random.default_rng(3)
  queries = rng.normal(size=(40, 4)).astype(np.float32)
  pool = rng.normal(size=(100, 4)).astype(np.float32)
  key = jax.random.key(4)
  whole = swap.draw_pool_frames(key, queries, pool)
  parts = [swap.draw_pool_frames(key, queries[:25], pool),
           swap.draw_pool_frames(key, queries[25:], pool, query_offset=25)]
  np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_very_low_temperature_draws_the_nearest_valid_frame():
  rng = np.random.default_rng(4)
  queries = rng.normal(size=(50, 5)).astype(np.float32)
  pool = rng.normal(size=(400, 5)).astype(np.float32)
  valid = rng.random(400) > 0.3
  distances = np.linalg.norm(queries[:, None].astype(np.float64) - pool[None], axis=-1)
  nearest = np.argmin(np.where(valid, distances, np.inf), axis=-1)
  drawn = swap.draw_pool_frames(jax.random.key(5), queries, pool, valid, temperature=1e-5,
                                pool_chunk=128)
  np.testing.assert_array_equal(drawn, nearest)


def test_numpy_reference_draws_the_same_frames():
  rng = np.random.default_rng(5)
  queries = rng.normal(size=(200, 6)).astype(np.float32)
  pool = rng.normal(size=(500, 6)).astype(np.float32)
  key = jax.random.key(6)
  ours = np.asarray(swap.draw_pool_frames(key, queries, pool, query_chunk=64, pool_chunk=128))
  reference = reference_swap.draw_pool_frames(key, queries, pool, query_chunk=50,
                                              pool_chunk=192)
  # Equal but for ulp-level differences of matmul and log between XLA and NumPy.
  assert np.mean(ours == reference) >= 0.99


def test_non_finite_queries_draw_nothing():
  pool = np.eye(4, dtype=np.float32)
  queries = np.array([[0, 0, 0, 1], [np.nan, 0, 0, 0]], np.float32)
  drawn = swap.draw_pool_frames(jax.random.key(0), queries, pool, temperature=1e-4)
  np.testing.assert_array_equal(drawn, [3, -1])


# ------------------------------------------------------------------------------------------
# Windows and banks
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tagged_bank():
  """Four training animals of different sizes (with invalid frames) and a held-out one."""
  rng = np.random.default_rng(6)
  counts = {"fly0": 60, "fly1": 45, "fly2": 80, "fly3": 30, "held_out": 50}
  frames = _tagged_bank_frames(rng, counts, dim=5)
  valid = {animal: rng.random(len(f)) > 0.25 for animal, f in frames.items()}
  # Invalid frames and held-out frames sit right on the queries below, so a draw that could
  # reach them would.
  queries = rng.normal(size=(12, 6, 5)).astype(np.float32)
  frames["fly2"][:20] = queries.reshape(-1, 5)[:20]
  valid["fly2"][:20] = False
  frames["held_out"][:50] = queries.reshape(-1, 5)[:50]
  frames["fly1"][3] = np.nan  # Non-finite frames are invalid whatever the mask says.
  training = ["fly0", "fly1", "fly2", "fly3"]
  bank = pose_bank.make_pose_bank(frames, valid, training)
  return bank, frames, valid, training, queries


def test_pose_bank_holds_training_animals_padded_and_masked(tagged_bank):
  bank, frames, valid, training, _ = tagged_bank
  assert bank.animals == tuple(training)
  # Padded to whole blocks of frames.
  assert bank.frames.shape == (4, 128, 5) and bank.frames.dtype == jnp.float32
  assert bank.valid.shape == (4, 128) and bank.valid.dtype == jnp.bool_
  np.testing.assert_array_equal(bank.num_frames, [60, 45, 80, 30])
  assert not bank.valid[3, 30:].any()
  assert not bank.valid[1, 3]
  np.testing.assert_array_equal(bank.valid[0, :60], valid["fly0"])
  np.testing.assert_array_equal(pose_bank.bank_rows(bank, ["fly2", "held_out", "fly0"]), [2, -1, 0])


@pytest.mark.parametrize("per_frame_target", [False, True])
def test_swapped_frames_come_from_another_training_animal_and_valid_frames(
    tagged_bank, per_frame_target):
  bank, frames, valid, training, queries = tagged_bank
  owner = _frame_owner({a: frames[a] for a in training + ["held_out"]})
  source = np.arange(12) % 4
  swapped, info = swap.swap_pose_windows(
      jax.random.key(7), jnp.asarray(queries), jnp.asarray(source), bank, swap_probability=1.0,
      per_frame_target=per_frame_target, query_chunk=16, pool_chunk=64)
  swapped = np.asarray(swapped)
  target = np.asarray(info["target_animal"])
  assert target.shape == ((12, 6) if per_frame_target else (12,))
  frame_target = np.broadcast_to(target.reshape(12, -1), (12, 6))
  assert (frame_target != source[:, None]).all()
  for window in range(12):
    for step in range(6):
      animal, index = owner[swapped[window, step].tobytes()]
      assert animal == training[frame_target[window, step]]
      assert index == info["frame_index"][window, step]
      assert valid[animal][index] and np.isfinite(frames[animal][index]).all()
  if per_frame_target:
    assert len(np.unique(frame_target[0])) > 1 or len(np.unique(frame_target[1])) > 1


def test_swap_probability_zero_leaves_windows_and_one_swaps_all(tagged_bank):
  bank, _, _, _, queries = tagged_bank
  source = jnp.arange(12) % 4
  unchanged, info = swap.swap_pose_windows(jax.random.key(8), jnp.asarray(queries), source,
                                           bank, swap_probability=0.0)
  np.testing.assert_array_equal(unchanged, queries)
  assert not info["swapped"].any()
  assert (info["target_animal"] == -1).all() and (info["frame_index"] == -1).all()
  swapped, info = swap.swap_pose_windows(jax.random.key(8), jnp.asarray(queries), source, bank,
                                         swap_probability=1.0)
  assert info["swapped"].all() and (info["frame_index"] >= 0).all()
  assert not np.isclose(np.asarray(swapped), queries).all(axis=-1).any()


def test_partial_swap_probability_swaps_windows_independently(tagged_bank):
  bank, _, _, _, queries = tagged_bank
  windows = jnp.asarray(np.tile(queries, (20, 1, 1)))  # 240 windows
  swapped, info = swap.swap_pose_windows(jax.random.key(9), windows, jnp.arange(240) % 4, bank,
                                         swap_probability=0.3)
  mask = np.asarray(info["swapped"])
  assert 0.2 < mask.mean() < 0.4
  np.testing.assert_array_equal(np.asarray(swapped)[~mask], np.asarray(windows)[~mask])
  assert (np.asarray(info["frame_index"])[mask] >= 0).all()
  targets = np.asarray(info["target_animal"])[mask]
  assert set(targets) == {0, 1, 2, 3}


def test_windows_of_animals_outside_the_bank_are_never_swapped(tagged_bank):
  bank, _, _, _, queries = tagged_bank
  source = jnp.full((12,), -1, jnp.int32)
  swapped, info = swap.swap_pose_windows(jax.random.key(10), jnp.asarray(queries), source, bank,
                                         swap_probability=1.0)
  np.testing.assert_array_equal(swapped, queries)
  assert not info["swapped"].any()


def test_window_swap_is_independent_of_chunk_sizes_and_runs_in_a_jitted_step(tagged_bank):
  bank, _, _, _, queries = tagged_bank
  key = jax.random.key(11)
  source = jnp.arange(12) % 4
  reference, reference_info = swap.swap_pose_windows(
      key, jnp.asarray(queries), source, bank, swap_probability=0.8, query_chunk=72,
      pool_chunk=128)

  @jax.jit
  def training_step(key, windows, source, bank):
    swapped, info = swap.swap_pose_windows(key, windows, source, bank, swap_probability=0.8,
                                           query_chunk=5, pool_chunk=64)
    return swapped, info

  swapped, info = training_step(key, jnp.asarray(queries), source, bank)
  np.testing.assert_array_equal(swapped, reference)
  np.testing.assert_array_equal(info["frame_index"], reference_info["frame_index"])
  assert swapped.shape == (12, 6, 5) and swapped.dtype == jnp.float32
  assert info["frame_index"].dtype == jnp.int32 and info["swapped"].dtype == jnp.bool_


# ------------------------------------------------------------------------------------------
# Top-K table
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_animal_bank():
  rng = np.random.default_rng(12)
  frames = {"fly0": rng.normal(size=(18, 3)).astype(np.float32),
            "fly1": rng.normal(size=(20, 3)).astype(np.float32)}
  valid = {"fly0": np.ones(18, bool), "fly1": np.arange(20) != 4}
  return pose_bank.make_pose_bank(frames, valid, ["fly0", "fly1"]), frames, valid


def test_full_top_k_table_draws_the_exact_softmax(two_animal_bank):
  bank, frames, valid = two_animal_bank
  table = swap_table.build_topk_table(bank, k=20, temperature=0.8, query_chunk=8, pool_chunk=6,
                                      progress=False)
  assert table.truncated_mass_stats()["max"] < 1e-5
  assert table.indices.shape == (2, 64, 2, 20) and table.log_weights.shape == (2, 64, 2, 20)
  batch, time = 2000, 10
  source_frame = 5
  windows = jnp.asarray(np.broadcast_to(frames["fly0"][source_frame], (batch, time, 3)))
  _, info = swap_table.swap_with_table(
      jax.random.key(13), windows, jnp.zeros((batch,), jnp.int32),
      jnp.full((batch, time), source_frame), table, bank, swap_probability=1.0)
  assert (np.asarray(info["target_animal"]) == 1).all()
  drawn = np.asarray(info["frame_index"]).ravel()
  exact = distributions.softmax_probabilities(frames["fly0"][source_frame], frames["fly1"], 0.8,
                                 valid["fly1"])
  assert distributions.chi_square_p_value(drawn, exact) > 1e-3


@pytest.mark.parametrize("settings, message", [
    (dict(temperature=0.0), "temperature must be > 0"),
    (dict(query_chunk=0), "query_chunk must be a positive int"),
    (dict(pool_chunk=2.5), "pool_chunk must be a positive int"),
])
def test_top_k_table_refuses_bad_settings(two_animal_bank, settings, message):
  bank, _, _ = two_animal_bank
  with pytest.raises(ValueError, match=message):
    swap_table.build_topk_table(bank, k=2, progress=False, **settings)


def test_small_top_k_table_reports_the_truncated_mass(two_animal_bank):
  bank, frames, valid = two_animal_bank
  k = 3
  table = swap_table.build_topk_table(bank, k=k, query_chunk=7, pool_chunk=5, progress=False)
  truncated = np.asarray(table.truncated_mass)
  indices = np.asarray(table.indices)
  expected = []
  for source, target in [(0, 1), (1, 0)]:
    pool, pool_valid = frames[bank.animals[target]], valid[bank.animals[target]]
    for index, query in enumerate(frames[bank.animals[source]]):
      probabilities = distributions.softmax_probabilities(query, pool, 1.0, pool_valid)
      nearest = np.argsort(-probabilities)[:k]
      np.testing.assert_array_equal(np.sort(indices[source, index, target]), np.sort(nearest))
      expected.append(1.0 - probabilities[nearest].sum())
      np.testing.assert_allclose(truncated[source, index, target], expected[-1], atol=1e-5)
  assert np.isnan(truncated[0, :, 0]).all() and np.isnan(truncated[0, 18:]).all()
  stats_ = table.truncated_mass_stats()
  np.testing.assert_allclose(stats_["mean"], np.mean(expected), atol=1e-5)
  np.testing.assert_allclose(stats_["max"], np.max(expected), atol=1e-5)
  assert not np.isin(indices[0, :18, 1], [4]).any()


def test_table_swap_per_frame_draws_top_k_frames_of_other_animals(tagged_bank):
  bank, frames, valid, training, _ = tagged_bank
  table = swap_table.build_topk_table(bank, k=4, query_chunk=32, pool_chunk=64, progress=False)
  source = np.arange(12) % 4
  frame_index = np.tile(np.arange(6), (12, 1)) * 5
  frame_index[0, 0] = -1  # Not a frame of the bank: left unchanged.
  windows = np.stack([frames[training[s]][frame_index[w]] for w, s in enumerate(source)])
  windows = np.nan_to_num(windows)
  swapped, info = swap_table.swap_with_table(
      jax.random.key(14), jnp.asarray(windows), jnp.asarray(source), jnp.asarray(frame_index),
      table, bank, swap_probability=1.0, per_frame_target=True)
  target = np.asarray(info["target_animal"])
  drawn = np.asarray(info["frame_index"])
  assert target.shape == (12, 6) and (target != source[:, None]).all()
  assert drawn[0, 0] == -1
  np.testing.assert_array_equal(np.asarray(swapped)[0, 0], windows[0, 0])
  indices = np.asarray(table.indices)
  for w in range(12):
    for t in range(6):
      if drawn[w, t] < 0:
        continue
      assert drawn[w, t] in indices[source[w], frame_index[w, t], target[w, t]]
      assert valid[training[target[w, t]]][drawn[w, t]]
      np.testing.assert_array_equal(np.asarray(swapped)[w, t],
                                    np.asarray(bank.frames)[target[w, t], drawn[w, t]])


# ------------------------------------------------------------------------------------------
# Weighted distance
# ------------------------------------------------------------------------------------------

DISTANCE_WEIGHTS = np.array([1.0, 0.0, 4.0], np.float32)


@pytest.fixture(scope="module")
def weighted_bank():
  """Two animals whose nearest frames under the weights (1, 0, 4) are mostly not the
  Euclidean nearest ones: the weight-0 dimension is large and the weight-4 one small."""
  rng = np.random.default_rng(20)
  scale = np.array([1.0, 3.0, 0.5], np.float32)
  frames = {"fly0": (rng.normal(size=(30, 3)) * scale).astype(np.float32),
            "fly1": (rng.normal(size=(70, 3)) * scale).astype(np.float32)}
  valid = {"fly0": np.ones(30, bool), "fly1": np.arange(70) % 9 != 0}
  bank = pose_bank.make_pose_bank(frames, valid, ["fly0", "fly1"],
                             distance_weights=DISTANCE_WEIGHTS)
  return bank, frames, valid


def _weighted_distances(queries: np.ndarray, pool: np.ndarray, weights: np.ndarray):
  """`[Q, M]` sqrt(sum_i w_i (q_i - b_i)^2) in float64."""
  difference = queries[:, None].astype(np.float64) - pool[None]
  return np.sqrt(np.sum(weights * difference**2, axis=-1))


def test_weighted_swap_at_low_temperature_draws_the_weighted_nearest_frame(weighted_bank):
  bank, frames, valid = weighted_bank
  np.testing.assert_allclose(bank.distance_scale, np.sqrt(DISTANCE_WEIGHTS))
  windows = frames["fly0"].reshape(5, 6, 3)
  swapped, info = swap.swap_pose_windows(
      jax.random.key(21), jnp.asarray(windows), jnp.zeros(5, jnp.int32), bank,
      swap_probability=1.0, temperature=1e-5, pool_chunk=64)
  drawn = np.asarray(info["frame_index"]).ravel()
  weighted = np.where(valid["fly1"], _weighted_distances(frames["fly0"], frames["fly1"],
                                                         DISTANCE_WEIGHTS), np.inf)
  plain = np.where(valid["fly1"], _weighted_distances(frames["fly0"], frames["fly1"],
                                                      np.ones(3)), np.inf)
  # The case discriminates: the weights change the nearest frame of most queries.
  assert np.mean(weighted.argmin(axis=-1) != plain.argmin(axis=-1)) > 0.5
  np.testing.assert_array_equal(drawn, weighted.argmin(axis=-1))
  # The frames swapped in are the bank's own, not the scaled ones the distance used.
  np.testing.assert_array_equal(np.asarray(swapped).reshape(-1, 3), frames["fly1"][drawn])

  unweighted_bank = pose_bank.make_pose_bank(frames, valid, ["fly0", "fly1"])
  _, info = swap.swap_pose_windows(
      jax.random.key(21), jnp.asarray(windows), jnp.zeros(5, jnp.int32), unweighted_bank,
      swap_probability=1.0, temperature=1e-5, pool_chunk=64)
  np.testing.assert_array_equal(np.asarray(info["frame_index"]).ravel(), plain.argmin(axis=-1))


def test_weighted_swap_draws_the_exact_softmax_of_the_weighted_distance(weighted_bank):
  bank, frames, valid = weighted_bank
  source_frame = 4
  windows = np.broadcast_to(frames["fly0"][source_frame], (2000, 10, 3))
  _, info = swap.swap_pose_windows(jax.random.key(22), jnp.asarray(windows),
                                   jnp.zeros(2000, jnp.int32), bank, swap_probability=1.0,
                                   temperature=0.5, pool_chunk=64)
  logits = -_weighted_distances(frames["fly0"][[source_frame]], frames["fly1"],
                                DISTANCE_WEIGHTS)[0] / 0.5
  logits = np.where(valid["fly1"], logits, -np.inf)
  probabilities = np.exp(logits - logits.max())
  probabilities /= probabilities.sum()
  drawn = np.asarray(info["frame_index"]).ravel()
  assert distributions.chi_square_p_value(drawn, probabilities) > 1e-3


def test_uniform_weights_scale_the_distance_and_all_ones_keep_the_plain_kernel(tagged_bank):
  bank, frames, valid, training, queries = tagged_bank
  ones = pose_bank.make_pose_bank(frames, valid, training, distance_weights=np.ones(5))
  assert ones.distance_scale is None
  # Weights of 4 double every distance, exactly (powers of two), so at twice the temperature
  # the draw is the plain one, frame for frame.
  fours = pose_bank.make_pose_bank(frames, valid, training, distance_weights=np.full(5, 4.0))
  source = jnp.arange(12) % 4
  plain, plain_info = swap.swap_pose_windows(jax.random.key(23), jnp.asarray(queries), source,
                                             bank, swap_probability=1.0, temperature=0.3)
  doubled, doubled_info = swap.swap_pose_windows(jax.random.key(23), jnp.asarray(queries),
                                                 source, fours, swap_probability=1.0,
                                                 temperature=0.6)
  np.testing.assert_array_equal(doubled_info["frame_index"], plain_info["frame_index"])
  np.testing.assert_array_equal(doubled, plain)


def test_top_k_table_uses_the_weighted_distance(weighted_bank):
  bank, frames, valid = weighted_bank
  table = swap_table.build_topk_table(bank, k=3, temperature=0.5, query_chunk=16, pool_chunk=64,
                                      progress=False)
  weighted = np.where(valid["fly1"], _weighted_distances(frames["fly0"], frames["fly1"],
                                                         DISTANCE_WEIGHTS), np.inf)
  nearest = np.argsort(weighted, axis=-1, kind="stable")[:, :3]
  indices = np.asarray(table.indices)[0, :30, 1]
  np.testing.assert_array_equal(indices, nearest)
  np.testing.assert_allclose(np.asarray(table.log_weights)[0, :30, 1],
                             -np.take_along_axis(weighted, nearest, axis=-1) / 0.5, atol=1e-4)
  # The table swap gathers the bank's own frames.
  swapped, info = swap_table.swap_with_table(
      jax.random.key(24), jnp.asarray(frames["fly0"][None, :6]), jnp.zeros(1, jnp.int32),
      jnp.arange(6)[None], table, bank, swap_probability=1.0)
  drawn = np.asarray(info["frame_index"])[0]
  assert all(drawn[t] in nearest[t] for t in range(6))
  np.testing.assert_array_equal(np.asarray(swapped)[0], frames["fly1"][drawn])


def test_top_k_table_of_a_thinned_bank_swaps_every_frame_from_its_pool_frame():
  rng = np.random.default_rng(31)
  frames = {"fly0": rng.normal(size=(40, 4)).astype(np.float32),
            "fly1": rng.normal(size=(36, 4)).astype(np.float32)}
  stride = 4
  bank = pose_bank.make_pose_bank(frames, None, ["fly0", "fly1"], pool_stride=stride)
  table = swap_table.build_topk_table(bank, k=2, temperature=1e-4, progress=False)
  thinned_fly1 = frames["fly1"][::stride]
  # Frames past the thinned count (here 10) exist: without the stride they left the bank.
  frame_index = jnp.arange(8, 40).reshape(4, 8)
  windows = jnp.asarray(frames["fly0"][8:40].reshape(4, 8, 4))
  swapped, info = swap_table.swap_with_table(
      jax.random.key(32), windows, jnp.zeros(4, jnp.int32), frame_index, table, bank,
      swap_probability=1.0)
  drawn = np.asarray(info["frame_index"]).reshape(-1)
  pool_frames = frames["fly0"][stride * (np.arange(8, 40) // stride)]
  distances = np.linalg.norm(pool_frames[:, None] - thinned_fly1[None], axis=-1)
  np.testing.assert_array_equal(drawn, np.argmin(distances, axis=-1))
  np.testing.assert_array_equal(np.asarray(swapped).reshape(-1, 4), thinned_fly1[drawn])


# ------------------------------------------------------------------------------------------
# Errors, raised before anything is compiled
# ------------------------------------------------------------------------------------------


def test_bank_needs_two_training_animals():
  frames = {"fly0": np.zeros((4, 3)), "fly1": np.zeros((4, 3))}
  with pytest.raises(ValueError, match="at least two training animals"):
    pose_bank.make_pose_bank(frames, None, ["fly0"])


def test_bank_rejects_an_empty_pool():
  frames = {"fly0": np.zeros((4, 3)), "fly1": np.zeros((4, 3))}
  with pytest.raises(ValueError, match="pool of 'fly1' is empty"):
    pose_bank.make_pose_bank(frames, {"fly1": np.zeros(4, bool)}, ["fly0", "fly1"])
  with pytest.raises(ValueError, match="pool of 'fly1' is empty"):
    pose_bank.make_pose_bank({"fly0": np.zeros((4, 3)), "fly1": np.full((2, 3), np.nan)}, None,
                        ["fly0", "fly1"])


def test_bank_rejects_bad_distance_weights():
  frames = {"fly0": np.zeros((4, 3)), "fly1": np.zeros((4, 3))}
  with pytest.raises(ValueError, match=r"distance_weights must be \[D\]=\[3\]"):
    pose_bank.make_pose_bank(frames, None, ["fly0", "fly1"], distance_weights=np.ones(2))
  for weights in ([1.0, -1.0, 1.0], [0.0, 0.0, 0.0], [1.0, np.inf, 1.0]):
    with pytest.raises(ValueError, match="finite, >= 0 and not all 0"):
      pose_bank.make_pose_bank(frames, None, ["fly0", "fly1"], distance_weights=np.array(weights))


def test_bank_rejects_mismatched_pose_dimensions():
  frames = {"fly0": np.zeros((4, 3)), "fly1": np.zeros((4, 5))}
  with pytest.raises(ValueError, match="pose dimensions differ"):
    pose_bank.make_pose_bank(frames, None, ["fly0", "fly1"])


def test_mismatched_query_dimension_is_rejected_before_compiling(tagged_bank):
  bank = tagged_bank[0]
  # Shapes without arrays: the checks read shapes only, and tracing the kernel with them would
  # fail with a TypeError, not the ValueError expected.
  windows = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
  sources = lambda size: jax.ShapeDtypeStruct((size,), jnp.int32)
  with pytest.raises(ValueError, match="D=4 but the bank's frames have D=5"):
    swap.swap_pose_windows(jax.random.key(0), windows(2, 3, 4), sources(2), bank)
  with pytest.raises(ValueError, match="source_animal must be"):
    swap.swap_pose_windows(jax.random.key(0), windows(2, 3, 5), sources(3), bank)
  with pytest.raises(ValueError, match="temperature"):
    swap.swap_pose_windows(jax.random.key(0), windows(2, 3, 5), sources(2), bank,
                           temperature=0.0)
  with pytest.raises(ValueError, match="share D"):
    swap.draw_pool_frames(jax.random.key(0), jnp.zeros((2, 4)), jnp.zeros((6, 5)))
  with pytest.raises(TypeError):
    swap.swap_pose_windows(jax.random.key(0), windows(2, 3, 5), sources(2), bank)


def test_table_swap_rejects_a_table_of_another_bank(two_animal_bank, tagged_bank):
  bank = two_animal_bank[0]
  table = swap_table.build_topk_table(bank, k=2, progress=False)
  other_bank = tagged_bank[0]
  with pytest.raises(ValueError, match="table was built for"):
    swap_table.swap_with_table(jax.random.key(0), jnp.zeros((2, 3, 5)), jnp.zeros(2, jnp.int32),
                               jnp.zeros((2, 3), jnp.int32), table, other_bank)


def test_thinned_pool_keeps_every_stride_th_frame_and_its_mask(weighted_bank):
  bank, frames, valid = weighted_bank
  thinned = pose_bank.make_pose_bank(frames, valid, ["fly0", "fly1"],
                                distance_weights=DISTANCE_WEIGHTS, pool_stride=3)
  np.testing.assert_array_equal(thinned.num_frames, [10, 24])  # ceil(30 / 3), ceil(70 / 3)
  for row, animal in enumerate(bank.animals):
    count = int(thinned.num_frames[row])
    np.testing.assert_array_equal(thinned.frames[row, :count], frames[animal][::3])
    np.testing.assert_array_equal(thinned.valid[row, :count], valid[animal][::3])
    assert not np.asarray(thinned.valid[row, count:]).any()
  np.testing.assert_array_equal(thinned.distance_scale, bank.distance_scale)
  for stride in (0, 2.0, True):
    with pytest.raises(ValueError, match="the pool stride must be a positive integer"):
      pose_bank.make_pose_bank(frames, valid, ["fly0", "fly1"], pool_stride=stride)
  with pytest.raises(ValueError, match=r"the pool of 'fly1' is empty: none of its 35 frames "
                                       r"\(one in 2 kept\) is valid"):
    pose_bank.make_pose_bank(frames, {"fly1": np.arange(70) % 2 == 1}, ["fly0", "fly1"],
                        pool_stride=2)


def test_swap_from_a_thinned_pool_draws_the_nearest_kept_frame(weighted_bank):
  _, frames, valid = weighted_bank
  thinned = pose_bank.make_pose_bank(frames, valid, ["fly0", "fly1"],
                                distance_weights=DISTANCE_WEIGHTS, pool_stride=3)
  windows = frames["fly0"].reshape(5, 6, 3)
  swapped, info = swap.swap_pose_windows(
      jax.random.key(22), jnp.asarray(windows), jnp.zeros(5, jnp.int32), thinned,
      swap_probability=1.0, temperature=1e-5, pool_chunk=64)
  kept = np.arange(0, 70, 3)
  distances = np.where(valid["fly1"][kept], _weighted_distances(
      frames["fly0"], frames["fly1"][kept], DISTANCE_WEIGHTS), np.inf)
  drawn = np.asarray(info["frame_index"]).ravel()
  np.testing.assert_array_equal(drawn, distances.argmin(axis=-1))
  np.testing.assert_array_equal(np.asarray(swapped).reshape(-1, 3),
                                frames["fly1"][kept[drawn]])
