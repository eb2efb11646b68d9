"""The trainer: sharded step equals single-device step, kill-and-resume, early config errors."""

import importlib
import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

from absl import flags
from flax import nnx
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import train as train_entry
from experiments.configs import baseline_cpu
from experiments.configs import baseline_tpu
from experiments.configs import baselines
from experiments.configs import common
from experiments.configs import swap_cpu
from experiments.configs import swap_tpu
from nar import models
from nar import run as run_lib
from nar import train
from nar.data import pipeline
from nar.data import shards
from nar.train import inputs as train_inputs
from numerics import assert_same_training_result

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def tiny_config(data_dir: str, **optim):
  config = common.base_config()
  config.data.data_dir = data_dir
  config.data.num_held_out_animals = 1
  config.data.window = dict(pose_frames=8, pose_stride=2, neural_frames=4)
  config.data.drop_classes = ()
  config.model.update(width=8, num_blocks=1, features=8, head_hidden=16, embedding=8,
                      image_channels=(4,))
  config.swap.pool_chunk = 256
  config.optim.update({"global_batch_size": 16, "num_train_steps": 8, "warmup_steps": 2, **optim})
  config.checkpoint_every_steps = 2
  config.log_every_steps = 2
  config.eval.hop = 20
  config.eval.identity_time_blocks = 2
  return config


def _run(script: str, **env) -> subprocess.CompletedProcess:
  result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "JAX_PLATFORMS": "cpu", **env})
  return result


_PRELUDE = """
    import sys
    sys.path.insert(0, "tests")
    from test_train import tiny_config
    from nar import train
"""


def test_sharded_step_on_eight_devices_equals_the_single_device_step(data_dir):
  script = _PRELUDE + f"""
    import jax, numpy as np
    from nar.data import pipeline
    assert jax.device_count() == 8, jax.devices()
    config = tiny_config({data_dir!r})
    # The neural swap picks partners across the whole batch, i.e. across devices.
    config.swap.neural_probability = 0.5
    config.swap.neural_partner_quantile = 0.75
    inputs = train.create_input(config)
    graphdef, tx, state = train.create_train_state(config, inputs)
    state = jax.device_get(state)  # host copy: each mesh gets (and donates) its own
    full_bank, _ = train.create_step_constants(config, inputs)
    # The exact swap from a pool thinned to every 2nd frame.
    config.swap.pool_stride = 2
    bank, rows = train.create_step_constants(config, inputs)
    np.testing.assert_array_equal(bank["frames"].num_frames,
                                  (full_bank["frames"].num_frames + 1) // 2)
    loader = pipeline.make_loader(inputs.train_source, batch_size=16, train=True, seed=0)
    local = train.step_batch(next(iter(loader)), "neural_images", rows)
    results = []
    for mesh in (train.make_mesh(), train.make_mesh(jax.devices()[:1])):
      sharding = jax.sharding.NamedSharding(mesh, jax.P("data"))
      replicated = jax.sharding.NamedSharding(mesh, jax.P())
      batch = {{k: jax.device_put(v, sharding) for k, v in local.items()}}
      step = train.compile_train_step(graphdef, tx, config, "neural_images", mesh, 4)
      new_state, metrics = step(jax.device_put(state, replicated), batch,
                                jax.device_put(bank, replicated))
      assert len(batch["pose"].sharding.device_set) == mesh.size
      results.append((jax.device_get(new_state.params), jax.device_get(metrics)))
    (params8, metrics8), (params1, metrics1) = results
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 params8, params1)
    np.testing.assert_allclose(metrics8["loss"], metrics1["loss"], rtol=1e-5)
    assert metrics8["swapped_fraction"] == metrics1["swapped_fraction"]
    assert 0 < metrics8["neural_swapped_fraction"] == metrics1["neural_swapped_fraction"] < 1

    config.optim.global_batch_size = 12
    try:
      train.train_and_evaluate(config, "/tmp/never_written")
    except ValueError as error:
      assert "does not divide over 8 devices" in str(error), error
    else:
      raise AssertionError("a batch of 12 on 8 devices must fail")
    print("OK")
  """
  result = _run(script, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  assert result.returncode == 0, result.stderr[-4000:]
  assert "OK" in result.stdout


def _final_state(workdir: pathlib.Path, step: int):
  manager = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state", "data"))
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return restored["state"]


def test_a_killed_run_resumes_to_the_parameters_of_an_uninterrupted_run(data_dir, tmp_path):
  # 7 steps with a checkpoint every 2: the last one is saved off the interval.
  reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
  killed = _run(_PRELUDE + f"""
    import os, signal
    import orbax.checkpoint as ocp
    save = ocp.CheckpointManager.save

    def save_then_die(self, step, *args, **kwargs):
      saved = save(self, step, *args, **kwargs)
      if step == 4:  # hard kill midway, once the second checkpoint is on disk (saves are async)
        self.wait_until_finished()
        os.kill(os.getpid(), signal.SIGKILL)
      return saved

    ocp.CheckpointManager.save = save_then_die
    train.train_and_evaluate(tiny_config({data_dir!r}, num_train_steps=7), {str(interrupted)!r})
  """)
  assert killed.returncode == -9, killed.stderr[-3000:]
  assert not (interrupted / "eval.json").exists()
  assert sorted(p.name for p in (interrupted / "checkpoints").iterdir()
                if p.name.isdigit()) == ["2", "4"]

  config = tiny_config(data_dir, num_train_steps=7)
  train.train_and_evaluate(config, str(interrupted))
  results = train.train_and_evaluate(config, str(reference))
  resumed_state, reference_state = _final_state(interrupted, 7), _final_state(reference, 7)
  assert int(resumed_state["step"]) == 7
  assert_same_training_result(resumed_state["params"], reference_state["params"])
  for name in ("action_held_out_animals", "identity_held_out_time"):
    assert 0 <= results[name]["accuracy"] <= 100
  assert (reference / "eval.json").exists() and (reference / "metrics.jsonl").exists()
  record = run_lib.read_run_record(reference)
  assert record["held_out_animals"] == results["held_out_animals"]
  assert record["training_animals"] == results["training_animals"]
  assert record["config"]["optim"]["num_train_steps"] == 7
  assert record["dataset"]["fingerprint"] == run_lib.dataset_fingerprint(
      shards.open_dataset(data_dir))
  with pytest.raises(FileNotFoundError, match="holds no run.json"):
    run_lib.read_run_record(tmp_path)
  assert any((reference / "tensorboard").iterdir())


def test_a_workdir_holding_another_models_checkpoints_is_refused_clearly(data_dir, tmp_path):
  config = tiny_config(data_dir)
  config.optim.num_train_steps, config.checkpoint_every_steps = 2, 2
  config.behaviour_residual_weight = 0.0
  train.train_and_evaluate(config, str(tmp_path))
  config.behaviour_residual_weight, config.optim.num_train_steps = 1.0, 4  # one more layer
  with pytest.raises(ValueError, match="checkpoints of a run made with another model") as error:
    train.train_and_evaluate(config, str(tmp_path))
  assert "config.behaviour_residual_weight: 0.0 (checkpoints) vs 1.0 (now)" in str(error.value)
  (tmp_path / run_lib.RUN_FILE).unlink()  # a folder that does not say what made it
  with pytest.raises(ValueError, match="holds checkpoints of another model"):
    train.train_and_evaluate(config, str(tmp_path))


def test_configs_that_cannot_train_fail_before_compiling(data_dir):
  config = tiny_config(data_dir)
  config.data.num_held_out_animals = 3
  with pytest.raises(ValueError, match="at least two training animals"):
    train.create_input(config)
  config = tiny_config(data_dir)
  config.data.drop_classes = tuple(common.base_config().eval.drop_classes) + (
      "walking", "eye_grooming", "antennal_grooming", "foreleg_grooming",
      "abdominal_grooming", "hindleg_grooming")
  config.data.drop_unlabelled = True
  with pytest.raises(ValueError, match="holds no window"):
    train.create_input(config)


@pytest.mark.parametrize("field, value, message", [
    ("optim.temperature", 0.0, "optim.temperature must be > 0"),
    ("swap.probability", 1.5, r"config.swap: swap_probability must lie in \[0, 1\]"),
    ("swap.temperature", -1.0, "config.swap: temperature must be > 0"),
    ("swap.pool_chunk", 100, "config.swap: pool_chunk must be a multiple of FRAME_BLOCK=64"),
])
def test_objective_and_swap_settings_out_of_range_fail_before_compiling(
    data_dir, tmp_path, field, value, message):
  config = tiny_config(data_dir)
  group, name = field.split(".")
  config[group][name] = value
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / "checkpoints").exists()


def test_a_neural_swap_probability_outside_zero_one_fails_before_compiling(data_dir, tmp_path):
  config = tiny_config(data_dir)
  config.swap.neural_probability = 1.5
  with pytest.raises(ValueError, match=r"swap.neural_probability must lie in \[0, 1\]"):
    train.train_and_evaluate(config, str(tmp_path))
  config.swap.neural_probability = 1.0
  config.swap.neural_partner_quantile = 0.0
  with pytest.raises(ValueError, match=r"swap.neural_partner_quantile must lie in \(0, 1\]"):
    train.train_and_evaluate(config, str(tmp_path))
  config.swap.neural_partner_quantile = 1.0
  config.swap.pool_stride = 0
  with pytest.raises(ValueError, match="the pool stride must be a positive integer, got 0"):
    train.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / "checkpoints").exists()


def test_the_top_k_swap_trains_from_a_thinned_pool(data_dir, tmp_path):
  config = tiny_config(data_dir, num_train_steps=2)
  config.swap.update(mode="topk", topk=4, pool_stride=3)
  inputs = train.create_input(config)
  constants, _ = train.create_step_constants(config, inputs)
  # The bank and its table hold every 3rd frame (which frame each window frame then takes:
  # tests/test_swap.py).
  assert constants["frames"].pool_stride == 3
  assert constants["table"].indices.shape[:2] == constants["frames"].frames.shape[:2]
  # The trainer accepts the pair (it refused it) and trains through the table.
  results = train.train_and_evaluate(config, str(tmp_path))
  assert results["train_steps"] == 2
  logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert logged[-1]["step"] == 2 and logged[-1]["swapped_fraction"] > 0


def test_an_invalid_model_config_fails_before_compiling(data_dir, tmp_path):
  config = tiny_config(data_dir)
  config.model.image_channels = ()
  config.model.width = 0
  with pytest.raises(ValueError, match="invalid model config") as error:
    train.train_and_evaluate(config, str(tmp_path))
  assert "model.width" in str(error.value) and "model.image_channels" in str(error.value)
  assert not (tmp_path / "checkpoints").exists()


def test_roi_trace_windows_train_with_the_trace_encoder_in_bfloat16(data_dir):
  config = tiny_config(data_dir)
  config.data.neural_key = "roi_traces"
  config.model.dtype = "bfloat16"
  inputs = train.create_input(config)
  assert inputs.num_rois == 3
  graphdef, tx, state = train.create_train_state(config, inputs)
  bank, rows = train.create_step_constants(config, inputs)
  local = next(iter(pipeline.make_loader(inputs.train_source, batch_size=16, train=True,
                                               shard=(0, 1))))
  batch = train.step_batch(local, "roi_traces", rows)
  step = train.compile_train_step(graphdef, tx, config, "roi_traces", train.make_mesh(), 4)
  new_state, metrics = step(state, batch, bank)
  assert int(new_state.step) == 1 and np.isfinite(float(metrics["loss"]))
  kernel = new_state.params["neural_encoder"]["input"]["kernel"]
  assert kernel[...].shape[1] == 3 and kernel[...].dtype == np.float32


@pytest.mark.parametrize("name", ["swap_cpu", "swap_gpu", "swap_tpu", "locomotion_cpu"])
def test_every_named_config_loads_locks_and_documents_its_launch_command(name):
  module = importlib.import_module(f"experiments.configs.{name}")
  config = module.get_config()
  assert "python -m experiments.train --config=" + name in module.__doc__
  config.lock()
  with pytest.raises(AttributeError):
    config.optim.not_a_field = 1
  assert config.optim.global_batch_size > 0 and config.swap.mode in ("exact", "topk")


def test_swap_tpu_swaps_exactly_unless_asked_for_the_top_k_table():
  # The table is replicated on every device; at MC2P scale it fits none (swap_tpu.py).
  assert swap_tpu.get_config().swap.mode == swap_tpu.get_config("exact").swap.mode == "exact"
  assert swap_tpu.get_config("topk").swap.mode == "topk"
  with pytest.raises(ValueError, match="'exact' or 'topk'"):
    swap_tpu.get_config("fast")


@pytest.mark.parametrize("size", ["cpu", "tpu"])
def test_every_baseline_has_cpu_and_tpu_configs(size):
  module = importlib.import_module(f"experiments.configs.baseline_{size}")
  assert f"--config=baseline_{size}:" in module.__doc__
  for name, changes in baselines.BASELINES.items():
    config = module.get_config(name)
    assert config.method == changes["method"] and not config.swap.enabled
    assert config.domain_penalty == changes.get("domain_penalty", "none")
  with pytest.raises(ValueError, match="unknown baseline 'nope'"):
    module.get_config("nope")


def test_baselines_drop_ours_own_settings_and_the_no_swap_ablation_keeps_them():
  ours = swap_cpu.get_config()
  for name in baselines.BASELINES:
    ours_with_neural_swap = swap_cpu.get_config()
    ours_with_neural_swap.swap.neural_probability = 0.5
    config = baselines.apply_baseline(swap_cpu.get_config(), name)
    # No baseline swaps, and Ours' neural swap leaves its config (and runs) as they are.
    assert config.swap.neural_probability == 0.0
    assert baselines.apply_baseline(ours_with_neural_swap, name).to_dict() == config.to_dict()
  assert ours.behaviour_residual_weight > 0 and ours.neural_view_weight > 0
  assert ours.model.baseline_features not in (None, ours.model.features)
  for name, changes in baselines.BASELINES.items():
    config = baseline_cpu.get_config(name)
    assert config.model.baseline_features is None
    if changes["method"] == "contrastive":  # the ablation that isolates the swap
      assert config.model.features == ours.model.features
      assert config.behaviour_residual_weight == ours.behaviour_residual_weight
      assert config.neural_view_weight == ours.neural_view_weight
    else:
      assert config.model.features == ours.model.baseline_features
      assert config.behaviour_residual_weight == config.neural_view_weight == 0.0
  # Where Ours has no settings of its own, a baseline has Ours' size.
  assert baseline_tpu.get_config("simclr").model.features == swap_tpu.get_config().model.features


def test_config_names_resolve_to_config_files():
  resolved = train_entry.resolve_config_argument(["prog", "--config=swap_cpu:smoke", "--x=1"])
  assert resolved[1].endswith(os.path.join("experiments", "configs", "swap_cpu.py") + ":smoke")
  assert resolved[2] == "--x=1"
  with pytest.raises(SystemExit, match="unknown config 'nope'"):
    train_entry.resolve_config_argument(["prog", "--config=nope"])


def test_initialisation_training_and_fit_draw_from_separate_keys():
  init, training, fit = train.run_keys(0)
  rngs = nnx.Rngs(init)
  draws = {tuple(jax.random.key_data(rngs.params()).tolist()) for _ in range(8)}
  for stream in (training, fit):
    steps = {tuple(jax.random.key_data(jax.random.fold_in(stream, t)).tolist())
             for t in range(8)}
    assert not draws & steps
  assert len({tuple(jax.random.key_data(k).tolist()) for k in (init, training, fit)}) == 3


def test_flattened_feature_maps_of_non_square_images_fit_the_temporal_encoder():
  encoder = models.ImageSequenceEncoder(channels=(4, 8), width=8, num_blocks=1, features=5,
                                        spatial_pooling="flatten", image_shape=(16, 6),
                                        rngs=nnx.Rngs(0))
  assert encoder(jnp.zeros((2, 3, 16, 6))).shape == (2, 5)


def test_fields_that_default_to_none_can_be_set_from_the_command_line():
  # absl parses `--config.*` overrides into the process-wide flags: a process of its own.
  # ml_collections reads the overrides from the process's own arguments.
  script = textwrap.dedent("""
      import sys
      from absl import flags
      from experiments import train
      flags.FLAGS(train.resolve_config_argument(sys.argv))
      config = flags.FLAGS.config
      print(config.data.neural_calibration_fraction, config.model.baseline_features)
  """)
  done = subprocess.run(
      [sys.executable, "-c", script, "--config=swap_tpu", "--workdir=unused",
       "--config.data.neural_calibration_fraction=0.5", "--config.model.baseline_features=16"],
      cwd=REPO_ROOT, capture_output=True, text=True, check=False,
      env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.split() == ["0.5", "16"]


def test_a_run_over_two_processes_trains_and_evaluates(locomotion_data_dir, tmp_path):
  # Through the entry point, as a multi-host job runs it. Each process owns one device of the
  # mesh: features the encoder leaves sharded over the batch would span a device the other
  # process owns, and reading them would fail.
  with socket.socket() as probe:
    probe.bind(("localhost", 0))
    port = probe.getsockname()[1]
  command = [sys.executable, "-m", "experiments.train", "--config=locomotion_cpu:smoke",
             f"--config.data.data_dir={locomotion_data_dir}", f"--workdir={tmp_path / 'run'}",
             "--multihost", f"--coordinator_address=localhost:{port}", "--num_processes=2"]
  processes = [subprocess.Popen(
      command + [f"--process_id={index}"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
      for index in range(2)]
  outputs = [process.communicate(timeout=600) for process in processes]
  for process, (_, stderr) in zip(processes, outputs):
    assert process.returncode == 0, stderr[-4000:]
    assert "Process %d of 2" % processes.index(process) in stderr
  assert "eval: action on held-out animals" in outputs[0][0]
  assert json.loads((tmp_path / "run" / "eval.json").read_text())["probes"]


def test_named_held_out_animals_win_over_the_seeded_draw(data_dir):
  config = tiny_config(data_dir)
  animals = sorted(shards.open_dataset(data_dir).animals)
  config.data.held_out_animals = (animals[0],)
  config.data.split_seed = 12345  # ignored when animals are named
  inputs = train.create_input(config)
  assert inputs.held_out_animals == (animals[0],)
  assert inputs.training_animals == tuple(animals[1:])
  config.data.held_out_animals = ("fly_nobody",)
  with pytest.raises(ValueError, match=r"not animals of the dataset; its animals: \["):
    train.create_input(config)


def test_a_run_on_fewer_training_animals_leaves_the_others_out_of_training_and_probes(
    data_dir, tmp_path, monkeypatch):
  config = tiny_config(data_dir)
  config.data.num_training_animals = 2  # of the 3 not held out
  inputs = train.create_input(config)
  full = tiny_config(data_dir)
  full_inputs = train.create_input(full)
  assert inputs.held_out_animals == full_inputs.held_out_animals
  assert len(inputs.training_animals) == 2
  assert set(inputs.training_animals) < set(full_inputs.training_animals)
  unused = set(full_inputs.training_animals) - set(inputs.training_animals)
  assert not unused & set(train_inputs.probed_animals(inputs))
  assert train_inputs.probed_animals(full_inputs) is None
  windows = inputs.train_source.read_batch(np.arange(len(inputs.train_source)))
  trained_on = {inputs.dataset.animals[i] for i in np.unique(windows["animal"])}
  assert trained_on == set(inputs.training_animals)
  results = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert results["training_animals"] == list(inputs.training_animals)
  # The identity probe tells 3 animals apart, not the dataset's 4.
  assert results["probes"]["chance"]["identity"] == pytest.approx(100 / 3)
  config.data.num_training_animals = 4
  with pytest.raises(ValueError, match=r"num_training_animals must lie in \[1, 3\]"):
    train.create_input(config)


def test_held_out_animals_are_named_on_the_command_line():
  flag_values = flags.FlagValues()
  argv = ["train", "--config.data.held_out_animals=('fly_a', 'fly_b')"]
  config_flags.DEFINE_config_dict("config", common.base_config(), flag_values=flag_values,
                                  sys_argv=argv)
  flag_values(argv)
  assert tuple(flag_values.config.data.held_out_animals) == ("fly_a", "fly_b")


def test_a_top_k_table_split_over_eight_devices_trains_like_a_replicated_one(data_dir):
  script = _PRELUDE + f"""
    import jax, numpy as np
    from nar.data import pipeline
    from nar.train import step as step_lib
    config = tiny_config({data_dir!r})
    config.swap.update(mode="topk", topk=4)
    inputs = train.create_input(config)
    graphdef, tx, state = train.create_train_state(config, inputs)
    state = jax.device_get(state)
    constants, rows = train.create_step_constants(config, inputs)
    mesh = train.make_mesh()
    loader = pipeline.make_loader(inputs.train_source, batch_size=16, train=True, seed=0)
    local = train.step_batch(next(iter(loader)), "neural_images", rows)
    batch = {{k: jax.device_put(v, jax.sharding.NamedSharding(mesh, jax.P("data")))
             for k, v in local.items()}}
    step = train.compile_train_step(graphdef, tx, config, "neural_images", mesh, 4)
    replicated = jax.sharding.NamedSharding(mesh, jax.P())
    results = []
    for budget in (2**40, 0):
      placed = step_lib.place_step_constants(constants, mesh, max_replicated_bytes=budget)
      shards = {{s.data.shape for s in placed["table"].indices.addressable_shards}}
      assert len(shards) == 1
      results.append((shards.pop()[1], step(jax.device_put(state, replicated), batch, placed)))
    (full, (state_a, metrics_a)), (split, (state_b, metrics_b)) = results
    assert split * 8 == full, (split, full)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(state_a.params),
                 jax.device_get(state_b.params))
    print("OK")
  """
  result = _run(script, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  assert result.returncode == 0, result.stderr[-4000:]
  assert "OK" in result.stdout
