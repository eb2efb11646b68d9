"""Baseline objectives and domain penalties, and the trainer running each method."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import tiny_config

from nar import train
from nar.data import behaviour
from nar.data import pipeline
from nar.method import losses
from nar.method import objectives
from nar.method import swap_schedule
from nar.train import step as train_step


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


def test_unexplained_variance_counts_each_feature_alike_whatever_its_scale():
  behaviour = jax.random.normal(jax.random.key(0), (256, 4))
  noise = jax.random.normal(jax.random.key(1), (256, 4))
  explained = behaviour @ jnp.diag(jnp.array([1.0, 2.0, 3.0, 4.0])) + 5.0
  # An offset is not a miss: only the batch variance counts.
  assert float(objectives.unexplained_variance(explained, behaviour @ jnp.diag(
      jnp.array([1.0, 2.0, 3.0, 4.0])))) < 1e-6
  # One feature of four left unexplained costs a quarter, however small it is.
  half = explained.at[:, 3].set(1e-2 * noise[:, 3])
  predicted = explained.at[:, 3].set(0.0)
  np.testing.assert_allclose(objectives.unexplained_variance(half, predicted), 0.25, rtol=1e-3)
  np.testing.assert_allclose(objectives.unexplained_variance(noise, jnp.zeros_like(noise)), 1.0,
                             rtol=1e-5)


def test_the_action_loss_ignores_unlabelled_windows():
  logits = jnp.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])
  labelled = objectives.action_classification_loss(logits[:2], jnp.array([0, 1]))
  # The third window is unlabelled (-1): whatever its logits, the loss is the other two's.
  np.testing.assert_allclose(
      objectives.action_classification_loss(logits, jnp.array([0, 1, -1])), labelled, rtol=1e-6)
  assert float(objectives.action_classification_loss(logits, jnp.array([2, 0, 1]))) > 3.0
  assert float(objectives.action_classification_loss(logits, jnp.full(3, -1))) == 0.0
  # Accuracy over the labelled windows only: 1 of 2 right, the unlabelled one not counted.
  assert float(objectives.labelled_accuracy(logits, jnp.array([0, 2, -1]))) == 0.5


def test_only_the_supervised_reference_reads_labels_in_its_step(data_dir, tmp_path):
  local = {"pose": np.zeros((2, 3, 4)), "neural_images": np.zeros((2, 2, 4, 4)),
           "bank_frame_index": np.zeros((2, 3), np.int32), "animal": np.array([0, 1]),
           "label": np.array([1, -1])}
  rows = np.array([0, 1], np.int32)
  assert "label" not in train.step_batch(local, "neural_images", rows)
  np.testing.assert_array_equal(
      train.step_batch(local, "neural_images", rows, labels=True)["label"], [1, -1])
  config = tiny_config(data_dir)
  config.method, config.swap.enabled = "supervised", False
  inputs = train.create_input(config)
  graphdef, tx, state = train.create_train_state(config, inputs)
  constants, rows = train.create_step_constants(config, inputs)
  loader = pipeline.make_loader(inputs.train_source, batch_size=16, train=True, shard=(0, 1))
  unlabelled_batch = train.step_batch(next(iter(loader)), "neural_images", rows)
  step = train.compile_train_step(graphdef, tx, config, "neural_images", train.make_mesh(), 4)
  with pytest.raises(ValueError, match="step_batch\\(..., labels=True\\)"):
    step(state, unlabelled_batch, constants)
  config.data.neural_key, config.model.neural_input = "roi_traces", "per_animal"
  with pytest.raises(ValueError, match="per-animal input layers would fit held-out animals"):
    train.train_and_evaluate(config, str(tmp_path))


def _train_on_one_batch(config, num_steps: int = 12) -> list[dict]:
  """The step's metrics over `num_steps` steps on one batch, augmentations off: the batch is
  then the same every step, so what the step minimises must fall."""
  config.augment.pose_enabled = config.augment.neural_enabled = False
  inputs = train.create_input(config)
  graphdef, tx, state = train.create_train_state(config, inputs)
  constants, rows = train.create_step_constants(config, inputs)
  loader = pipeline.make_loader(inputs.train_source, batch_size=16, train=True, shard=(0, 1))
  batch = train.step_batch(next(iter(loader)), "neural_images", rows,
                           labels=config.method == "supervised")
  step = train.compile_train_step(graphdef, tx, config, "neural_images", train.make_mesh(), 4)
  history = []
  for _ in range(num_steps):
    state, metrics = step(state, batch, constants)
    history.append(metrics)
  return history


@pytest.mark.parametrize("method,decoder,penalty", [
    ("simclr", "conv", "none"), ("regression", "conv", "none"),
    ("regression", "recurrent", "none"), ("behavenet", "conv", "none"),
    ("simclr", "conv", "mmd"), ("regression", "conv", "grl"), ("contrastive", "conv", "none"),
    ("supervised", "conv", "none"), ("contrastive", "conv", "moments"),
])
def test_each_method_learns_on_a_repeated_batch(data_dir, method, decoder, penalty):
  config = tiny_config(data_dir, learning_rate=3e-3)
  config.method, config.regression_decoder, config.domain_penalty = method, decoder, penalty
  config.swap.enabled = method == "contrastive"
  config.behavenet_states = 4
  history = _train_on_one_batch(config)
  first, last = float(history[0]["objective"]), float(history[-1]["objective"])
  assert last < first, (first, last)
  if penalty != "none":
    assert {"mmd": "mmd", "grl": "animal_loss", "moments": "moments"}[penalty] in history[-1]


def _train_ours_without_swap_on_one_batch(data_dir, **terms) -> list[dict]:
  """`_train_on_one_batch` of the contrastive method with the given term weights."""
  config = tiny_config(data_dir, learning_rate=3e-3)
  config.update(terms)
  config.swap.enabled = False
  return _train_on_one_batch(config)


def test_the_behaviour_residual_term_is_learned(data_dir):
  history = _train_ours_without_swap_on_one_batch(data_dir, behaviour_residual_weight=1.0)
  unexplained = [float(metrics["unexplained"]) for metrics in history]
  # The total loss carries the term; the objective stays the contrastive loss alone.
  assert float(history[-1]["loss"]) > float(history[-1]["objective"])
  assert unexplained[-1] < unexplained[0], unexplained


def test_the_neural_view_term_adds_simclrs_objective(data_dir):
  history = _train_ours_without_swap_on_one_batch(data_dir, neural_view_weight=2.0)
  views = [float(metrics["neural_view"]) for metrics in history]
  for metrics in history:  # no other term: the loss is the objective plus the weighted term
    np.testing.assert_allclose(float(metrics["loss"]),
                               float(metrics["objective"]) + 2.0 * float(metrics["neural_view"]),
                               rtol=1e-5)
  assert views[-1] < views[0], views


@pytest.mark.parametrize("method,weight", [("simclr", 0.0), ("contrastive", 3.0)])
def test_a_second_neural_view_without_neural_augmentations_is_refused(data_dir, tmp_path,
                                                                       method, weight):
  config = tiny_config(data_dir)
  config.method, config.neural_view_weight, config.swap.enabled = method, weight, False
  config.augment.neural_enabled = False
  with pytest.raises(ValueError, match="two augmented views of each neural window"):
    train.train_and_evaluate(config, str(tmp_path))


@pytest.mark.parametrize("weight,other_method", [("behaviour_residual_weight", "simclr"),
                                                 ("neural_view_weight", "regression")])
def test_ours_extra_terms_are_refused_for_other_methods_and_negative_weights(
    data_dir, tmp_path, weight, other_method):
  config = tiny_config(data_dir)
  config.swap.enabled = False
  config[weight], config.method = 1.0, other_method
  with pytest.raises(ValueError, match=f"set it to 0 for method '{other_method}'"):
    train.train_and_evaluate(config, str(tmp_path))
  config[weight], config.method = -1.0, "contrastive"
  with pytest.raises(ValueError, match=f"{weight} must be >= 0"):
    train.train_and_evaluate(config, str(tmp_path))


def test_a_second_neural_view_is_drawn_only_when_the_objective_compares_two(data_dir):
  config = tiny_config(data_dir)
  pose_augmentation, neural_augmentation = train_step.configured_augmentations(
      config, behaviour.POSE_SPEC)
  inputs = train.create_input(config)
  batch = next(iter(pipeline.make_loader(inputs.train_source, batch_size=4, train=True,
                                               shard=(0, 1))))
  keys = jax.random.split(jax.random.key(0), 3)
  raw = jnp.asarray(batch["neural_images"])
  pose = jnp.asarray(batch["pose"])
  _, neural, view = train_step.augmented_views(keys, pose, raw, pose_augmentation,
                                              neural_augmentation, second_neural_view=True)
  assert not np.allclose(neural, view) and not np.allclose(view, raw)
  _, same_neural, raw_view = train_step.augmented_views(
      keys, pose, raw, pose_augmentation, neural_augmentation, second_neural_view=False)
  np.testing.assert_array_equal(same_neural, neural)  # the first view does not depend on it
  np.testing.assert_array_equal(raw_view, raw)
  config.neural_view_weight = 1.0
  assert train_step.draws_second_neural_view(config)
  config.neural_view_weight, config.method = 0.0, "simclr"
  assert train_step.draws_second_neural_view(config)


def test_the_swap_is_refused_for_methods_without_a_behaviour_branch(data_dir, tmp_path):
  config = tiny_config(data_dir)
  config.method = "simclr"
  with pytest.raises(ValueError, match="set swap.enabled=False for method 'simclr'"):
    train.train_and_evaluate(config, str(tmp_path))


# ----------------------------------------------------------------------------------------------
# Objective switches that keep features animal-free.
# ----------------------------------------------------------------------------------------------
def _unit_rows(key, shape):
  z = jax.random.normal(key, shape)
  return z / jnp.linalg.norm(z, axis=-1, keepdims=True)


def test_same_animal_negatives_are_the_mean_of_each_animal_s_own_infonce():
  keys = jax.random.split(jax.random.key(0), 2)
  z_neural, z_behaviour = _unit_rows(keys[0], (6, 4)), _unit_rows(keys[1], (6, 4))
  animal = jnp.array([0, 0, 0, 1, 1, 1])
  loss = losses.same_animal_infonce_loss(z_neural, z_behaviour, animal, 0.5)
  per_animal = [losses.symmetric_infonce_loss(z_neural[rows], z_behaviour[rows], 0.5)[0]
                for rows in (slice(0, 3), slice(3, 6))]
  np.testing.assert_allclose(float(loss), float(np.mean(per_animal)), rtol=1e-5)
  # With one animal it is the seed's objective.
  seed_loss, _ = losses.symmetric_infonce_loss(z_neural, z_behaviour, 0.5)
  np.testing.assert_allclose(
      float(losses.same_animal_infonce_loss(z_neural, z_behaviour, jnp.zeros(6, int), 0.5)),
      float(seed_loss), rtol=1e-5)
  # Animal 1's windows are no candidates of animal 0's: moving them leaves its share alone,
  # though the seed's objective over the whole batch changes.
  moved = z_behaviour.at[3:].set(-z_behaviour[3:])
  moved_share = losses.symmetric_infonce_loss(z_neural[3:], moved[3:], 0.5)[0]
  np.testing.assert_allclose(
      float(losses.same_animal_infonce_loss(z_neural, moved, animal, 0.5)),
      float(0.5 * (per_animal[0] + moved_share)), rtol=1e-5)
  assert not np.isclose(float(losses.symmetric_infonce_loss(z_neural, moved, 0.5)[0]),
                        float(seed_loss))


def test_partner_positives_ignore_windows_without_a_partner():
  z = _unit_rows(jax.random.key(1), (5, 3))
  with_partners = losses.partner_infonce_loss(z, jnp.array([1, 0, -1, -1, -1]), 0.2)
  # The mean over the two windows with a partner, each against the other four windows.
  logits = np.asarray(z @ z.T / 0.2)
  expected = np.mean([np.log(np.exp(np.delete(logits[i], i)).sum()) - logits[i, 1 - i]
                      for i in (0, 1)])
  np.testing.assert_allclose(float(with_partners), expected, rtol=1e-5)
  assert float(losses.partner_infonce_loss(z, jnp.full(5, -1), 0.2)) == 0.0
  # Its gradient pulls partners together: moving window 1 onto window 0 lowers the loss.
  closer = z.at[1].set(z[0])
  assert float(losses.partner_infonce_loss(closer, jnp.array([1, 0, -1, -1, -1]), 0.2)) < float(
      with_partners)


def test_the_moments_penalty_reads_per_animal_offsets_and_scales_not_the_batch_s():
  features = jax.random.normal(jax.random.key(2), (200, 3))
  animal = jnp.arange(200) % 2
  alike = float(objectives.feature_moments_penalty(features, animal, 4))
  shifted = float(objectives.feature_moments_penalty(
      features + 2.0 * animal[:, None], animal, 4))
  scaled = float(objectives.feature_moments_penalty(
      features * (1.0 + 3.0 * animal[:, None]), animal, 4))
  assert alike < 0.05 and shifted > 10 * alike and scaled > 10 * alike, (alike, shifted, scaled)
  # The same shift of every animal is no gap between animals.
  assert float(objectives.feature_moments_penalty(features + 5.0, animal, 4)) < 0.05
  # An animal with one window in the batch has no spread and is left out.
  lone = jnp.where(jnp.arange(200) == 0, 3, animal)
  assert np.isfinite(float(objectives.feature_moments_penalty(features, lone, 4)))


@pytest.mark.parametrize("schedule,expected", [
    ("constant", [0.4, 0.4, 0.4, 0.4]), ("ramp", [0.0, 0.2, 0.4, 0.4]),
    ("delayed", [0.0, 0.0, 0.4, 0.4])])
def test_the_swap_schedules_under_jit(schedule, expected):
  at = jax.jit(lambda step: swap_schedule.scheduled_probability(
      step, 0.4, schedule=schedule, fraction=0.5, num_steps=8))
  np.testing.assert_allclose([float(at(jnp.int32(step))) for step in (0, 2, 4, 7)], expected,
                             atol=1e-6)


def test_the_same_animal_term_is_added_and_learned(data_dir):
  history = _train_ours_without_swap_on_one_batch(data_dir, same_animal_negatives_weight=0.5)
  terms = [float(metrics["same_animal_negatives"]) for metrics in history]
  for metrics in history:
    np.testing.assert_allclose(
        float(metrics["loss"]),
        float(metrics["objective"]) + 0.5 * float(metrics["same_animal_negatives"]), rtol=1e-5)
  assert terms[-1] < terms[0], terms


def test_the_partner_term_pairs_windows_of_other_animals_and_is_learned(data_dir):
  config = tiny_config(data_dir, learning_rate=3e-3)
  config.partner_positive_weight = 1.0
  history = _train_on_one_batch(config)
  fractions = [float(metrics["partner_fraction"]) for metrics in history]
  terms = [float(metrics["partner_positive"]) for metrics in history]
  assert min(fractions) > 0.5, fractions  # three training animals: nearly every window
  assert terms[-1] < terms[0], terms


def test_the_moments_penalty_trains_ours(data_dir):
  config = tiny_config(data_dir, learning_rate=3e-3)
  config.swap.enabled, config.domain_penalty, config.domain_penalty_weight = False, "moments", 2.0
  history = _train_on_one_batch(config)
  for metrics in history:
    np.testing.assert_allclose(float(metrics["loss"]),
                               float(metrics["objective"]) + 2.0 * float(metrics["moments"]),
                               rtol=1e-5)
  assert float(history[-1]["objective"]) < float(history[0]["objective"])


def test_a_delayed_swap_swaps_nothing_before_its_share_of_training(data_dir):
  config = tiny_config(data_dir, learning_rate=3e-3)
  config.swap.probability, config.swap.schedule, config.swap.schedule_fraction = 1.0, "delayed", 0.5
  config.optim.num_train_steps = 8
  swapped = [float(metrics["swapped_fraction"]) for metrics in _train_on_one_batch(config, 8)]
  assert swapped[:4] == [0.0] * 4 and min(swapped[4:]) > 0.5, swapped


@pytest.mark.parametrize("change,message", [
    ({"partner_positive_weight": 1.0}, "switch the swap on"),
    ({"swap.schedule": "cosine"}, "unknown swap schedule 'cosine'"),
    ({"swap.schedule_fraction": 1.5}, r"fraction must lie in \[0, 1\]"),
    ({"same_animal_negatives_weight": -1.0}, "same_animal_negatives_weight must be >= 0"),
])
def test_bad_objective_switches_are_refused(data_dir, tmp_path, change, message):
  config = tiny_config(data_dir)
  config.swap.enabled = "swap.schedule" in "".join(change)
  for field, value in change.items():
    target = config.swap if field.startswith("swap.") else config
    target[field.removeprefix("swap.")] = value
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(config, str(tmp_path))
