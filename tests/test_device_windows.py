"""Device-resident windows: the gathered batch equals the host's, the path is chosen and
logged, a run trains to the same parameters on either path, on one device or eight."""

import jax
import numpy as np
import pytest

from nar import train
from nar.data import device
from nar.data import pipeline
from nar.train import validate
import test_train
from test_train import tiny_config


def _host_and_device_batches(config, items):
  inputs = train.create_input(config)
  _, rows = train.create_step_constants(config, inputs)
  labels = config.method == "supervised"
  host = train.step_batch(inputs.train_source.read_batch(items), inputs.neural_key, rows,
                          labels=labels)
  windows = device.make_device_windows(inputs.train_source, inputs.neural_key, rows,
                                       train.make_mesh())
  gathered = jax.jit(device.gather_batch, static_argnames="labels")(
      windows, np.asarray(items, np.int32), labels=labels)
  return host, jax.device_get(gathered), windows, inputs


@pytest.mark.parametrize("dataset", ["images", "roi_traces"])
def test_the_gathered_batch_equals_the_host_batch_bit_for_bit(dataset, data_dir,
                                                              locomotion_data_dir):
  if dataset == "images":
    config = tiny_config(data_dir)
    config.method, config.swap.enabled = "supervised", False  # reads the labels too
  else:  # standardised, ROI counts padded per animal
    config = tiny_config(locomotion_data_dir)
    config.data.update(name="locomotion", neural_key="roi_traces",
                       neural_normalisation="animal")
    config.model.neural_input = "auto"
  items = np.random.default_rng(0).choice(40, 16, replace=False)
  host, gathered, windows, inputs = _host_and_device_batches(config, items)
  assert sorted(host) == sorted(gathered)
  for key, value in host.items():
    assert gathered[key].dtype == value.dtype, key
    np.testing.assert_array_equal(gathered[key], value, err_msg=key)
  assert len(windows) == len(inputs.train_source)
  assert windows.nbytes <= inputs.train_source.frame_arrays_bytes(inputs.neural_key) * 1.01


def test_the_path_follows_the_setting_and_the_memory_budget():
  cpu = jax.devices()[0]
  memory = device.device_memory_bytes(cpu)
  assert device.choose_path("auto", memory // 8, 0.25, cpu)[0]
  resident, why = device.choose_path("auto", memory // 2, 0.25, cpu)
  assert not resident and "exceed 25% of cpu memory" in why
  assert device.choose_path("device", memory * 2, 0.25, cpu)[0]
  resident, why = device.choose_path("host", 10, 0.25, cpu)
  assert not resident and "input_path='host'" in why
  with pytest.raises(ValueError, match="input_path must be one of"):
    device.choose_path(True, 10, 0.25, cpu)
  with pytest.raises(ValueError, match="device_memory_fraction must lie in"):
    device.choose_path("auto", 10, 0.0, cpu)


def test_a_run_trains_to_the_same_parameters_on_either_path_and_logs_which(data_dir,
                                                                           tmp_path):
  finals = {}
  for path in ("host", "device"):
    config = tiny_config(data_dir)
    config.eval.enabled = False
    config.data.input_path = path
    workdir = tmp_path / path
    train.train_and_evaluate(config, str(workdir))
    finals[path] = jax.device_get(test_train._final_state(workdir, 8)["params"])  # pylint: disable=protected-access
  jax.tree.map(np.testing.assert_array_equal, finals["host"], finals["device"])


def test_the_device_path_on_eight_devices_trains_like_one(data_dir, tmp_path):
  script = test_train._PRELUDE + f"""
    import jax, numpy as np
    from absl import logging
    assert jax.device_count() == 8
    logging.set_verbosity(logging.INFO)
    config = tiny_config({data_dir!r})
    config.eval.enabled = False
    train.train_and_evaluate(config, {str(tmp_path / "eight")!r})
    from test_train import _final_state
    import pathlib
    params = jax.device_get(_final_state(pathlib.Path({str(tmp_path / "eight")!r}), 8)["params"])
    np.savez({str(tmp_path / "eight.npz")!r}, *jax.tree.leaves(params))
    print("OK")
  """
  result = test_train._run(script, XLA_FLAGS="--xla_force_host_platform_device_count=8")  # pylint: disable=protected-access
  assert result.returncode == 0, result.stderr[-4000:]
  assert "Training windows: device-resident" in result.stderr
  config = tiny_config(data_dir)
  config.eval.enabled = False
  train.train_and_evaluate(config, str(tmp_path / "one"))
  eight = np.load(tmp_path / "eight.npz")
  one = jax.tree.leaves(jax.device_get(test_train._final_state(tmp_path / "one", 8)["params"]))  # pylint: disable=protected-access
  assert len(eight.files) == len(one)
  for index, leaf in enumerate(one):
    np.testing.assert_allclose(eight[f"arr_{index}"], leaf, rtol=1e-4, atol=1e-5)


def test_a_bad_input_path_fails_before_the_data_is_placed(data_dir):
  config = tiny_config(data_dir)
  config.data.input_path = "gpu"
  inputs = train.create_input(config)
  with pytest.raises(ValueError, match="data.input_path must be one of"):
    validate.check_config(config, inputs, 1)


def test_the_index_loader_yields_the_windows_of_the_reading_loader(data_dir):
  inputs = train.create_input(tiny_config(data_dir))
  reading = iter(pipeline.make_loader(inputs.train_source, batch_size=8, train=True, seed=3))
  indices = iter(pipeline.make_loader(inputs.train_source, batch_size=8, train=True, seed=3,
                                      read_windows=False))
  for _ in range(3):
    batch, window = next(reading), next(indices)["window"]
    np.testing.assert_array_equal(batch["pose"],
                                  inputs.train_source.read_batch(window)["pose"])
