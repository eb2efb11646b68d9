"""Animals with different ROI counts: a per-animal input layer feeding a shared trunk, trained
jointly, and fitted without labels for a new animal with the rest of the model frozen."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import locomotion_cpu
from nar import models
from nar import train
from nar.data import pipeline
from numerics import assert_same_training_result
from synthetic_data import LOCOMOTION_DATASET_NAME
from test_train import tiny_config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def locomotion_config(data_dir: str, **optim):
  """The tiny trainer config on the locomotion dataset: velocities and ROI traces."""
  config = tiny_config(data_dir, **optim)
  config.data.name = LOCOMOTION_DATASET_NAME
  config.data.neural_key = "roi_traces"
  config.data.drop_classes = ()
  config.eval.drop_classes = ()
  config.adapt.num_steps = 40
  return config


def _animal_leaves(params, animal_rows: bool):
  """The leaves of the per-animal input layer (True) or of everything else (False)."""
  is_variable = lambda x: isinstance(x, nnx.Variable)
  leaves = jax.tree_util.tree_leaves_with_path(params, is_leaf=is_variable)
  return {jax.tree_util.keystr(path): np.asarray(leaf[...]) for path, leaf in leaves
          if isinstance(leaf, models.AnimalParam) == animal_rows}


@pytest.fixture(scope="module")
def trained(locomotion_data_dir):
  """A few training steps of a per-animal input model on the training animals."""
  config = locomotion_config(locomotion_data_dir)
  inputs = train.create_input(config)
  graphdef, tx, state = train.create_train_state(config, inputs)
  initial = jax.device_get(state.params)
  bank, rows = train.create_step_constants(config, inputs)
  step = train.compile_train_step(graphdef, tx, config, "roi_traces", train.make_mesh(),
                                  len(inputs.dataset.animals),
                                  behaviour_spec=inputs.dataset.behaviour_spec)
  loader = iter(pipeline.make_loader(inputs.train_source, batch_size=16, train=True,
                                           shard=(0, 1)))
  metrics = []
  for _ in range(4):
    state, step_metrics = step(state, train.step_batch(next(loader), "roi_traces", rows), bank)
    metrics.append(jax.device_get(step_metrics))
  return dict(config=config, inputs=inputs, graphdef=graphdef, initial=initial,
              params=jax.device_get(state.params), metrics=metrics, bank=bank)


def test_a_per_animal_input_maps_each_window_with_its_own_animals_rows_only():
  layer = models.PerAnimalInput((2, 4, 3), 5, rngs=nnx.Rngs(0))
  kernel, bias = np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])
  assert kernel.shape == (3, 4, 5) and bias.shape == (3, 5)
  assert np.all(kernel[0, 2:] == 0) and np.all(kernel[2, 3:] == 0)
  traces = jax.random.normal(jax.random.key(1), (3, 6, 4))
  animal = jnp.array([2, 0, 1])
  out = np.asarray(layer(traces, animal))
  for window, a in enumerate([2, 0, 1]):
    rois = (2, 4, 3)[a]
    expected = np.asarray(traces[window, :, :rois]) @ kernel[a, :rois] + bias[a]
    np.testing.assert_allclose(out[window], expected, rtol=1e-5, atol=1e-6)
  # What augmentations write beyond an animal's ROIs does not reach the trunk.
  noisy_padding = traces.at[0, :, 3:].set(50.0).at[1, :, 2:].set(-7.0)
  np.testing.assert_array_equal(np.asarray(layer(noisy_padding, animal)), out)
  with pytest.raises(ValueError, match=r"ROI traces \[B, T, 4\]"):
    layer(traces[..., :3], animal)
  with pytest.raises(ValueError, match="positive ROI count"):
    models.PerAnimalInput((2, 0), 5, rngs=nnx.Rngs(0))


def test_the_optimiser_leaves_rows_of_untrained_animals_exactly_as_they_are():
  layer = models.PerAnimalInput((2, 3, 3), 4, rngs=nnx.Rngs(0))
  _, params = nnx.split(layer)
  grads = jax.tree.map(jnp.ones_like, params)
  decay = optax.adamw(0.1, weight_decay=0.5)
  masked = optax.chain(decay, train.keep_animal_rows([True, False, True]))
  for tx, frozen_rows_kept in ((decay, False), (masked, True)):
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    for name in ("kernel", "bias"):
      before, after = np.asarray(params[name][...]), np.asarray(new[name][...])
      assert np.array_equal(before[1], after[1]) == frozen_rows_kept, name
      assert not np.array_equal(before[0], after[0]), name
  with pytest.raises(ValueError, match="does not have one row per animal of the 2"):
    train.keep_animal_rows([True, False]).update(grads, optax.EmptyState())


def test_per_animal_input_layers_train_jointly_on_animals_with_different_roi_counts(trained):
  inputs = trained["inputs"]
  counts = inputs.dataset.roi_counts
  assert len(set(counts.values())) == len(counts) == 4
  assert inputs.neural_input == "per_animal" and inputs.roi_counts == tuple(counts.values())
  assert inputs.num_rois == max(counts.values()) == inputs.train_source.roi_width
  assert inputs.dataset.behaviour_spec.format == "vector"
  before, after = trained["initial"], trained["params"]
  kernel = after["neural_encoder"]["input"]["kernel"][...]
  assert kernel.shape == (4, max(counts.values()), 8)
  for row, animal in enumerate(inputs.dataset.animals):
    changed = not np.array_equal(before["neural_encoder"]["input"]["kernel"][...][row],
                                 kernel[row])
    # Held-out rows get neither a gradient nor weight decay.
    assert changed == (animal in inputs.training_animals), animal
  trunk_before, trunk_after = _animal_leaves(before, False), _animal_leaves(after, False)
  assert any(not np.array_equal(trunk_before[k], trunk_after[k]) for k in trunk_before)
  assert all(np.isfinite(m["loss"]) for m in trained["metrics"])


def test_the_train_step_swaps_generic_behaviour_vectors(trained):
  # The swap on velocity vectors draws other training animals' frames in the jitted step.
  swapped = [float(m["swapped_fraction"]) for m in trained["metrics"]]
  assert trained["config"].swap.enabled and 0 < np.mean(swapped) < 1


def test_a_new_animal_with_an_unseen_roi_count_is_embedded_after_fitting_its_input_layer(
    trained):
  inputs, config, graphdef = trained["inputs"], trained["config"], trained["graphdef"]
  (new_animal,) = inputs.held_out_animals
  counts = inputs.dataset.roi_counts
  assert counts[new_animal] not in {counts[a] for a in inputs.training_animals}
  row = inputs.dataset.animals.index(new_animal)
  mesh = train.make_mesh()
  params, report = train.fit_input_layers(graphdef, trained["params"], inputs, config, mesh,
                                          [new_animal], constants=trained["bank"])
  params = jax.device_get(params)
  assert report["animals"] == [new_animal] and report["num_steps"] == config.adapt.num_steps
  assert report["loss_after"] < report["loss_before"] - 0.05, report
  # Only the new animal's rows of the input layer moved.
  trunk_before, trunk_after = _animal_leaves(trained["params"], False), _animal_leaves(
      params, False)
  assert trunk_before.keys() == trunk_after.keys()
  for name, value in trunk_before.items():
    np.testing.assert_array_equal(trunk_after[name], value, err_msg=name)
  rows_before, rows_after = _animal_leaves(trained["params"], True), _animal_leaves(params,
                                                                                 True)
  others = np.arange(len(inputs.dataset.animals)) != row
  for name, value in rows_before.items():
    np.testing.assert_array_equal(rows_after[name][others], value[others], err_msg=name)
  kernel = lambda p: np.asarray(p["neural_encoder"]["input"]["kernel"][...])
  assert not np.array_equal(kernel(params)[row], kernel(trained["params"])[row])
  # A resumed run refits the same rows: the fit is deterministic given the seed.
  again, _ = train.fit_input_layers(graphdef, trained["params"], inputs, config, mesh,
                                    [new_animal], constants=trained["bank"])
  assert_same_training_result(jax.device_get(again), params)
  # Its windows embed through its own, fitted rows.
  source = train.fit_windows(config, inputs, [new_animal])
  window = source[0]
  assert window["roi_mask"].sum() == counts[new_animal]
  model = nnx.merge(graphdef, params)
  features = model.encode_neural(window["roi_traces"][None], jnp.array([row]))
  assert features.shape == (1, config.model.features) and np.all(np.isfinite(features))


def test_auto_neural_input_shares_one_encoder_when_roi_counts_are_equal(data_dir,
                                                                        locomotion_data_dir):
  config = tiny_config(data_dir)
  config.data.neural_key = "roi_traces"
  inputs = train.create_input(config)
  assert inputs.neural_input == "shared" and inputs.roi_counts is None
  assert inputs.num_rois == 3 and not inputs.pad_rois
  config.model.neural_input = "per_animal"  # a choice even with equal counts
  inputs = train.create_input(config)
  assert inputs.neural_input == "per_animal" and inputs.roi_counts == (3, 3, 3, 3)
  config.data.neural_key = "neural_images"
  with pytest.raises(ValueError, match="'per_animal' maps each animal's ROI traces"):
    train.create_input(config)
  config.model.neural_input = "auto"
  assert train.create_input(config).neural_input == "shared"
  config.model.neural_input = "per_cell"
  with pytest.raises(ValueError, match="model.neural_input must be one of"):
    train.create_input(config)
  config = locomotion_config(locomotion_data_dir)
  config.model.neural_input = "shared"
  with pytest.raises(ValueError, match=r"different ROI counts \[3, 4, 6, 9\].*'per_animal'"):
    train.create_input(config)


def test_fitting_needs_a_per_animal_input_layer(data_dir):
  config = tiny_config(data_dir)
  config.data.neural_key = "roi_traces"
  inputs = train.create_input(config)
  graphdef, _, state = train.create_train_state(config, inputs)
  with pytest.raises(ValueError, match="only a per-animal input layer can be fitted"):
    train.fit_input_layers(graphdef, state.params, inputs, config, train.make_mesh(),
                           inputs.held_out_animals)


def test_the_locomotion_config_trains_and_evaluates_end_to_end_on_npz_trials(
    locomotion_data_dir, tmp_path):
  config = locomotion_cpu.get_config("smoke")
  config.data.data_dir = locomotion_data_dir
  config.data.simulate_if_missing = False
  small = tiny_config(locomotion_data_dir)
  config.data.window = small.data.window
  config.data.num_held_out_animals = 1
  config.model = small.model
  config.eval.update(hop=20, identity_time_blocks=2)
  config.adapt.num_steps = 10
  results = train.train_and_evaluate(config, str(tmp_path))
  saved = json.loads((tmp_path / "eval.json").read_text())
  assert saved["held_out_animals"] == results["held_out_animals"] and \
      len(saved["held_out_animals"]) == 1
  for name in ("action_held_out_animals", "identity_held_out_time"):
    assert 0 <= saved[name]["accuracy"] <= 100, name
  assert saved["action_chance"] == 25.0 and saved["identity_chance"] == 25.0
  classes = saved["probes"]["action_multi_animal"]["confusion_classes"]
  assert classes == ["stand", "forward", "turn_left", "turn_right"]
  assert saved["adaptation"]["animals"] == saved["held_out_animals"]
  assert saved["adaptation"]["num_steps"] == 10
  assert "action on held-out animals" in train.summary_line(results)


def test_per_animal_training_and_fitting_on_eight_devices_equal_one_device(locomotion_data_dir):
  script = f"""
    import sys
    sys.path.insert(0, "tests")
    import jax, numpy as np
    from nar.data import pipeline
    from nar import train
    from test_per_animal_input import locomotion_config
    assert jax.device_count() == 8, jax.devices()
    config = locomotion_config({locomotion_data_dir!r})
    config.adapt.num_steps = 3
    inputs = train.create_input(config)
    graphdef, tx, state = train.create_train_state(config, inputs)
    state = jax.device_get(state)
    bank, rows = train.create_step_constants(config, inputs)
    loader = pipeline.make_loader(inputs.train_source, batch_size=16, train=True, seed=0)
    local = train.step_batch(next(iter(loader)), "roi_traces", rows)
    results = []
    for mesh in (train.make_mesh(), train.make_mesh(jax.devices()[:1])):
      sharding = jax.sharding.NamedSharding(mesh, jax.P("data"))
      replicated = jax.sharding.NamedSharding(mesh, jax.P())
      batch = {{k: jax.device_put(v, sharding) for k, v in local.items()}}
      step = train.compile_train_step(graphdef, tx, config, "roi_traces", mesh, 4,
                                      behaviour_spec=inputs.dataset.behaviour_spec)
      new_state, _ = step(jax.device_put(state, replicated), batch,
                          jax.device_put(bank, replicated))
      fitted, report = train.fit_input_layers(graphdef, new_state.params, inputs, config, mesh,
                                              inputs.held_out_animals)
      results.append((jax.device_get(fitted), report))
    (params8, report8), (params1, report1) = results
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 params8, params1)
    np.testing.assert_allclose(report8["loss_after"], report1["loss_after"], rtol=1e-4)
    print("OK")
  """
  result = subprocess.run(
      [sys.executable, "-c", textwrap.dedent(script)], cwd=REPO_ROOT, capture_output=True,
      text=True, check=False,
      env={**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert result.returncode == 0, result.stderr[-4000:]
  assert "OK" in result.stdout
