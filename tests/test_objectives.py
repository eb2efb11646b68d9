"""Baseline objectives and domain penalties, and the trainer running each method."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import tiny_config

from nar import input_pipeline
from nar import objectives
from nar import train


def test_mmd_is_zero_for_identical_distributions_and_grows_with_a_shift():
  features = jax.random.normal(jax.random.key(0), (40, 5))
  animal = jnp.arange(40) % 4
  same = objectives.mmd_penalty(jnp.tile(features[:10], (4, 1)), jnp.repeat(jnp.arange(4), 10), 4)
  assert abs(float(same)) < 1e-5
  mixed = objectives.mmd_penalty(features, animal, 4)
  shifted = objectives.mmd_penalty(features + 3.0 * (animal == 0)[:, None], animal, 4)
  assert float(shifted) > 5 * float(mixed) > 0


def test_gradient_reversal_is_the_identity_forward_and_flips_the_gradient():
  x = jnp.array([1.0, -2.0, 3.0])
  np.testing.assert_array_equal(objectives.gradient_reversal(x, 0.5), x)
  grad = jax.grad(lambda v: jnp.sum(objectives.gradient_reversal(v, 0.5) ** 2))(x)
  np.testing.assert_allclose(grad, -0.5 * 2 * x)


def test_behaviour_states_are_the_nearest_kmeans_centroids():
  rng = np.random.default_rng(0)
  centres = np.array([[0.0] * 6, [5.0] * 6, [-5.0] * 6], np.float32)
  windows = (centres[rng.integers(0, 3, 300)] + 0.1 * rng.normal(size=(300, 6))).reshape(300, 2, 3)
  centroids = objectives.fit_behaviour_states(windows.astype(np.float32), 3, seed=0)
  states = np.asarray(objectives.nearest_state(jnp.asarray(windows), jnp.asarray(centroids)))
  assert len(np.unique(states)) == 3
  np.testing.assert_allclose(centroids[states].reshape(300, 2, 3), windows, atol=0.5)
  with pytest.raises(ValueError, match="cannot find 3"):
    objectives.fit_behaviour_states(windows[:2], 3, seed=0)


@pytest.mark.parametrize("method,decoder,penalty", [
    ("simclr", "conv", "none"), ("regression", "conv", "none"),
    ("regression", "recurrent", "none"), ("behavenet", "conv", "none"),
    ("simclr", "conv", "mmd"), ("regression", "conv", "grl"), ("contrastive", "conv", "none"),
])
def test_each_method_learns_on_a_repeated_batch(data_dir, method, decoder, penalty):
  config = tiny_config(data_dir, learning_rate=3e-3)
  config.method, config.regression_decoder, config.domain_penalty = method, decoder, penalty
  config.swap.enabled = method == "contrastive"
  config.behavenet_states = 4
  # Without augmentation the batch is the same every step, so the objective must fall.
  config.augment.pose_enabled = config.augment.neural_enabled = False
  inputs = train.create_input(config)
  graphdef, tx, state = train.create_train_state(config, inputs)
  constants, rows = train.create_step_constants(config, inputs)
  loader = input_pipeline.make_loader(inputs.train_source, batch_size=16, train=True, shard=(0, 1))
  batch = train.step_batch(next(iter(loader)), "neural_images", rows)
  step = train.compile_train_step(graphdef, tx, config, "neural_images", train.make_mesh(), 4)
  first = None
  for _ in range(12):
    state, metrics = step(state, batch, constants)
    first = float(metrics["objective"]) if first is None else first
  assert float(metrics["objective"]) < first, (first, float(metrics["objective"]))
  if penalty != "none":
    assert ("mmd" if penalty == "mmd" else "animal_loss") in metrics


def test_the_swap_is_refused_for_methods_without_a_behaviour_branch(data_dir, tmp_path):
  config = tiny_config(data_dir)
  config.method = "simclr"
  with pytest.raises(ValueError, match="set swap.enabled=False for method 'simclr'"):
    train.train_and_evaluate(config, str(tmp_path))
