"""The neural swap: behaviour-nearest partners of other animals, and the exchange itself."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nar.method import neural_swap


def _windows(rng, num_windows: int, frames: int = 6, dim: int = 4) -> np.ndarray:
  return rng.normal(size=(num_windows, frames, dim)).astype(np.float32)


def _numpy_partners(windows: np.ndarray, animal: np.ndarray, eligible=None) -> np.ndarray:
  speed = np.abs(np.diff(windows, axis=1)).mean(axis=1)
  descriptor = np.concatenate([windows.mean(1), windows.std(1), speed], axis=-1)
  distance = np.linalg.norm(descriptor[:, None] - descriptor[None], axis=-1)
  allowed = animal[:, None] != animal[None, :]
  if eligible is not None:
    allowed &= eligible[None, :]
  distance = np.where(allowed, distance, np.inf)
  partner = distance.argmin(axis=1)
  return np.where(np.isfinite(distance.min(axis=1)), partner, -1)


def test_partners_are_the_nearest_windows_of_other_animals():
  rng = np.random.default_rng(0)
  windows = _windows(rng, 24)
  animal = rng.integers(0, 4, 24).astype(np.int32)
  partner, distance = neural_swap.behaviour_partners(jnp.asarray(windows), jnp.asarray(animal))
  partner = np.asarray(partner)
  np.testing.assert_array_equal(partner, _numpy_partners(windows, animal))
  assert (animal[partner] != animal).all()
  assert np.isfinite(np.asarray(distance)).all()


def test_only_eligible_windows_are_partners_and_a_lone_animal_has_none():
  rng = np.random.default_rng(1)
  windows = _windows(rng, 12)
  animal = np.array([0] * 6 + [1] * 3 + [2] * 3, np.int32)
  eligible = np.array([True] * 6 + [False] * 3 + [True] * 3)
  partner, _ = neural_swap.behaviour_partners(jnp.asarray(windows), jnp.asarray(animal),
                                              jnp.asarray(eligible))
  partner = np.asarray(partner)
  np.testing.assert_array_equal(partner, _numpy_partners(windows, animal, eligible))
  assert eligible[partner].all()

  partner, distance = neural_swap.behaviour_partners(jnp.asarray(windows),
                                                     jnp.zeros(12, jnp.int32))
  assert (np.asarray(partner) == -1).all() and np.isinf(np.asarray(distance)).all()


def test_the_descriptor_matches_a_movement_whatever_its_phase():
  """A gait cycle seen from another phase is nearer than the same posture at another speed."""
  t = np.arange(32)[:, None] / 32.0
  slow = np.sin(2 * np.pi * 2 * t + np.arange(3)[None])
  shifted = np.sin(2 * np.pi * 2 * t + np.arange(3)[None] + np.pi)  # half a cycle later
  fast = np.sin(2 * np.pi * 5 * t + np.arange(3)[None])
  windows = np.stack([slow, shifted, fast]).astype(np.float32)
  partner, _ = neural_swap.behaviour_partners(jnp.asarray(windows), jnp.arange(3))
  assert int(partner[0]) == 1
  # Frame by frame the shifted cycle is the farther one: the descriptor is what matches it.
  flat = windows.reshape(3, -1)
  assert np.linalg.norm(flat[0] - flat[1]) > np.linalg.norm(flat[0] - flat[2])


@pytest.mark.parametrize("probability", [0.0, 1.0])
def test_the_exchange_takes_the_partners_neural_window_and_animal(probability):
  rng = np.random.default_rng(2)
  windows = _windows(rng, 16)
  animal = np.repeat(np.arange(4, dtype=np.int32), 4)
  neural = rng.normal(size=(16, 3, 5, 5)).astype(np.float32)
  swapped, neural_animal, info = neural_swap.swap_neural_windows(
      jax.random.key(0), jnp.asarray(neural), jnp.asarray(animal), jnp.asarray(windows),
      probability)
  partner = _numpy_partners(windows, animal)
  source = partner if probability == 1.0 else np.arange(16)
  np.testing.assert_array_equal(np.asarray(swapped), neural[source])
  np.testing.assert_array_equal(np.asarray(neural_animal), animal[source])
  assert np.asarray(info["swapped"]).all() == (probability == 1.0)


def test_half_of_the_windows_are_exchanged_at_probability_one_half():
  rng = np.random.default_rng(3)
  windows = _windows(rng, 512, frames=4, dim=2)
  animal = rng.integers(0, 6, 512).astype(np.int32)
  neural = np.arange(512, dtype=np.float32)[:, None]
  swapped, neural_animal, info = jax.jit(neural_swap.swap_neural_windows)(
      jax.random.key(1), jnp.asarray(neural), jnp.asarray(animal), jnp.asarray(windows), 0.5)
  exchanged = np.asarray(info["swapped"])
  assert 0.4 < exchanged.mean() < 0.6
  # Exchanged windows come from another animal; the others are their own.
  assert (np.asarray(neural_animal)[exchanged] != animal[exchanged]).all()
  np.testing.assert_array_equal(np.asarray(swapped)[~exchanged, 0], np.flatnonzero(~exchanged))


def test_bad_shapes_are_named():
  with pytest.raises(ValueError, match=r"\[B, T, D\] with T >= 2"):
    neural_swap.behaviour_partners(jnp.zeros((4, 1, 3)), jnp.arange(4))
  with pytest.raises(ValueError, match="animal must be"):
    neural_swap.behaviour_partners(jnp.zeros((4, 5, 3)), jnp.arange(3))
  with pytest.raises(ValueError, match="disagree on B"):
    neural_swap.swap_neural_windows(jax.random.key(0), jnp.zeros((3, 2)), jnp.arange(4),
                                    jnp.zeros((4, 5, 3)), 0.5)


def test_only_the_batchs_closest_pairs_are_exchanged_under_a_partner_quantile():
  rng = np.random.default_rng(5)
  windows = _windows(rng, 40)
  animal = rng.integers(0, 3, 40).astype(np.int32)
  neural = np.arange(40, dtype=np.float32)[:, None]
  _, distance = neural_swap.behaviour_partners(jnp.asarray(windows), jnp.asarray(animal))
  distance = np.asarray(distance)
  swapped, _, info = neural_swap.swap_neural_windows(
      jax.random.key(2), jnp.asarray(neural), jnp.asarray(animal), jnp.asarray(windows), 1.0,
      partner_quantile=0.5)
  exchanged = np.asarray(info["swapped"])
  np.testing.assert_array_equal(exchanged, distance <= np.quantile(distance, 0.5))
  assert exchanged.sum() == 20
  partner = _numpy_partners(windows, animal)
  np.testing.assert_array_equal(np.asarray(swapped)[:, 0], np.where(exchanged, partner,
                                                                     np.arange(40)))


def test_declared_swap_weights_choose_the_partners():
  """A feature of weight 0 is left out of the comparison, as in the pose swap."""
  rng = np.random.default_rng(6)
  windows = _windows(rng, 30, dim=3)
  animal = rng.integers(0, 3, 30).astype(np.int32)
  scale = np.array([1.0, 0.0, 1.0], np.float32)
  weighted, _ = neural_swap.behaviour_partners(jnp.asarray(windows), jnp.asarray(animal),
                                               distance_scale=jnp.asarray(scale))
  weighted = np.asarray(weighted)
  np.testing.assert_array_equal(weighted, _numpy_partners(windows * scale, animal))
  # Feature 1 alone changes who is nearest: the weights are what the partners follow.
  assert (weighted != _numpy_partners(windows, animal)).any()


def test_partners_computed_once_serve_the_exchange_and_the_partner_term_alike():
  rng = np.random.default_rng(6)
  windows, animal = jnp.asarray(_windows(rng, 24)), jnp.asarray(rng.integers(0, 3, 24),
                                                                jnp.int32)
  neural = jnp.arange(24, dtype=jnp.float32)[:, None]
  partners = neural_swap.behaviour_partners(windows, animal)
  shared = neural_swap.swap_neural_windows(jax.random.key(4), neural, animal, windows, 0.7,
                                           partner_quantile=0.5, partners=partners)
  own = neural_swap.swap_neural_windows(jax.random.key(4), neural, animal, windows, 0.7,
                                        partner_quantile=0.5)
  np.testing.assert_array_equal(np.asarray(shared[0]), np.asarray(own[0]))
  np.testing.assert_array_equal(np.asarray(shared[2]["partner"]), np.asarray(partners[0]))
  close = neural_swap.close_partners(windows, animal, 0.5)
  np.testing.assert_array_equal(np.asarray(neural_swap.keep_close(*partners, 0.5)),
                                np.asarray(close))
  # The partner term's partners are the exchange's close pairs.
  np.testing.assert_array_equal(np.asarray(close) >= 0,
                                np.asarray(shared[2]["distance"]) <= np.quantile(
                                    np.asarray(partners[1]), 0.5))
