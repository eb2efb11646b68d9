"""Bad configs, diverging runs, damaged checkpoints, preemption and unsafe names: a clear
error before compute, and nothing wrong kept."""

import copy
import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import train as train_entry
from experiments.configs import swap_cpu
from nar import train
from nar.data import recording as recording_lib
from nar.data import shards
from nar.train import loop
from nar.train import step as step_lib
from nar.train import validate
from test_train import tiny_config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _params(workdir, step):
  restored = ocp.StandardCheckpointer().restore(
      pathlib.Path(workdir) / "checkpoints" / str(step) / "state")
  return restored["params"]


def _finite(tree) -> bool:
  return all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(tree))


def _metric_steps(workdir) -> list[int]:
  lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
  return [json.loads(line)["step"] for line in lines]


@pytest.mark.parametrize("field,value,message", [
    ("optim.learning_rate", -1.0, "optim.learning_rate must be > 0, got -1.0"),
    ("optim.learning_rate", float("nan"), "optim.learning_rate must be > 0, got nan"),
    ("optim.num_train_steps", 0, "optim.num_train_steps must be an integer >= 1, got 0"),
    ("optim.num_train_steps", -1, "optim.num_train_steps must be an integer >= 1"),
    ("optim.global_batch_size", 0, "optim.global_batch_size must be an integer >= 1"),
    ("log_every_steps", 0, "log_every_steps must be an integer >= 1"),
    ("checkpoint_every_steps", 0, "checkpoint_every_steps must be an integer >= 1"),
    ("optim.nan_policy", "ignore", "optim.nan_policy must be one of"),
])
def test_a_field_out_of_range_is_refused_before_the_dataset_is_opened(field, value, message,
                                                                       tmp_path):
  config = tiny_config(str(tmp_path / "no_dataset_here"))
  with config.unlocked():
    config.update_from_flattened_dict({field: value})
  with pytest.raises(validate.ConfigError, match=message.replace("(", r"\(")):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_a_resume_that_would_change_the_held_out_animals_is_refused(data_dir, tmp_path):
  config = tiny_config(data_dir, num_train_steps=4)
  train.train_and_evaluate(config, str(tmp_path))
  config.data.split_seed = 1
  config.optim.num_train_steps = 6
  with pytest.raises(validate.ConfigError) as error:
    train.train_and_evaluate(config, str(tmp_path))
  message = str(error.value)
  assert "config.data.split_seed: 0 (checkpoints) vs 1 (now)" in message
  assert "held_out_animals:" in message and "training_animals:" in message
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()
                if p.name.isdigit())[-1] == 4  # nothing trained
  # Training longer on the same terms is a resume.
  config.data.split_seed = 0
  assert train.train_and_evaluate(config, str(tmp_path))["train_steps"] == 6


def test_a_diverging_run_stops_and_saves_nothing_non_finite(data_dir, tmp_path):
  config = tiny_config(data_dir, num_train_steps=8, learning_rate=1e30, warmup_steps=0)
  with pytest.raises(loop.NonFiniteError, match="not finite"):
    train.train_and_evaluate(config, str(tmp_path))
  steps = [int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
  assert all(_finite(_params(tmp_path, step)) for step in steps)
  assert not (tmp_path / "eval.json").exists()


def test_the_skip_policy_leaves_the_parameters_of_non_finite_steps_as_they_were(data_dir,
                                                                               tmp_path):
  config = tiny_config(data_dir, num_train_steps=6, learning_rate=1e30, warmup_steps=0)
  config.optim.nan_policy = "skip"
  config.log_every_steps = 1
  config.eval.enabled = False  # the one finite step left parameters of 1e30: no probe
  train.train_and_evaluate(config, str(tmp_path))
  assert _finite(_params(tmp_path, 6))
  skipped = [json.loads(line)["skipped"]
             for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert max(skipped) == 1.0


def _damage(path: pathlib.Path) -> None:
  data = bytearray(path.read_bytes())
  for offset in range(len(data) // 3, len(data) // 3 + 64):
    data[offset] ^= 0xFF
  path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flipped_array_bytes", "truncated_metadata",
                                    "truncated_iterator_state"])
def test_a_damaged_checkpoint_falls_back_to_the_one_before(damage, data_dir, tmp_path,
                                                           caplog):
  config = tiny_config(data_dir, num_train_steps=4)
  train.train_and_evaluate(config, str(tmp_path))
  state_dir = tmp_path / "checkpoints" / "4" / "state"
  if damage == "flipped_array_bytes":
    arrays = [p for p in state_dir.rglob("*") if p.is_file() and "d" == p.parent.name]
    assert arrays, sorted(state_dir.rglob("*"))
    for path in arrays:
      _damage(path)
  elif damage == "truncated_metadata":
    metadata = state_dir / "_METADATA"
    metadata.write_bytes(metadata.read_bytes()[:20])
  else:
    (iterator_state,) = (tmp_path / "checkpoints" / "4" / "data").glob("process_*.json")
    iterator_state.write_text(iterator_state.read_text()[:10])
  config.optim.num_train_steps = 6
  with caplog.at_level("WARNING"):
    train.train_and_evaluate(config, str(tmp_path))
  assert any("Checkpoint 4 of" in r.getMessage() and "resuming from step 2" in r.getMessage()
             for r in caplog.records), [r.getMessage() for r in caplog.records]
  assert _finite(_params(tmp_path, 6))
  assert _metric_steps(tmp_path) == sorted(set(_metric_steps(tmp_path)))


def test_a_signal_saves_the_current_step_and_the_rerun_resumes_it_exactly(data_dir, tmp_path,
                                                                          monkeypatch):
  compile_step = step_lib.compile_train_step

  def compile_then_signal_at_step_3(*args, **kwargs):
    step_fn = compile_step(*args, **kwargs)

    def step(state, batch, bank):
      state, metrics = step_fn(state, batch, bank)
      if not isinstance(state.step, jax.core.Tracer) and int(state.step) == 3:
        os.kill(os.getpid(), signal.SIGTERM)
      return state, metrics
    return step

  config = tiny_config(data_dir, num_train_steps=7)
  config.log_every_steps = 1
  monkeypatch.setattr(step_lib, "compile_train_step", compile_then_signal_at_step_3)
  results = train.train_and_evaluate(config, str(tmp_path / "stopped"))
  assert results == {"preempted": True, "step": 3}
  assert 3 in [int(p.name) for p in (tmp_path / "stopped" / "checkpoints").iterdir()
               if p.name.isdigit()]
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone again
  monkeypatch.setattr(step_lib, "compile_train_step", compile_step)
  (tmp_path / "stopped" / "metrics.jsonl").open("a").write('{"step": 5, "loss": 0}\n')
  train.train_and_evaluate(config, str(tmp_path / "stopped"))
  train.train_and_evaluate(config, str(tmp_path / "reference"))
  jax.tree.map(np.testing.assert_array_equal, _params(tmp_path / "stopped", 7),
               _params(tmp_path / "reference", 7))  # bit-identical
  assert _metric_steps(tmp_path / "stopped") == list(range(1, 8))  # each step logged once


def test_a_named_data_dir_is_never_filled_with_a_simulation(tmp_path):
  config = swap_cpu.get_config()
  config.data.data_dir = str(tmp_path / "typo")
  train_entry.check_data_dir(config)  # simulates nothing
  assert not (tmp_path / "typo").exists()
  with pytest.raises(shards.DatasetNotFoundError, match="no complete NAR dataset"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "typo").exists()


def _train_cli(*args) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=REPO_ROOT,
                        capture_output=True, text=True, check=False,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_the_train_command_says_what_is_wrong_in_one_line(tmp_path):
  result = _train_cli("--config=swap_cpu", f"--workdir={tmp_path}/run",
                      "--config.optim.learning_rate=-1", "--config.log_every_steps=0")
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert "error: invalid config" in result.stderr
  assert "optim.learning_rate must be > 0" in result.stderr
  assert "log_every_steps must be an integer >= 1" in result.stderr
  result = _train_cli("--config=swap_cpu", f"--workdir={tmp_path}/run",
                      f"--config.data.data_dir={tmp_path}/typo")
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith("error: no complete NAR dataset")
  assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("name", ["baselines", "reproduce", "common"])
def test_files_that_are_not_training_configs_are_not_offered_as_configs(name):
  with pytest.raises(SystemExit) as error:
    train_entry.resolve_config_argument(["prog", f"--config={name}"])
  assert f"unknown config {name!r}" in str(error.value)
  assert "baselines," not in str(error.value) and "swap_cpu" in str(error.value)


def test_to_nwb_keeps_every_file_inside_its_output_folder(tmp_path):
  from data_prep import to_nwb  # pylint: disable=g-import-not-at-top
  for animal in ("../fly1", "a/b", "..", "/abs"):
    path = to_nwb.nwb_path(tmp_path / "out", animal, "../2")
    assert path.resolve().is_relative_to((tmp_path / "out").resolve()), path


def _trial(seed: int = 0, **changes):
  from nar import simulation  # pylint: disable=g-import-not-at-top
  config = simulation.LocomotionConfig(num_animals=2, trials_per_animal=1, trial_seconds=6.0,
                                       min_rois=3, max_rois=4)
  recordings = simulation.simulate_dataset(config, seed=seed).recordings
  return [dataclasses.replace(rec, **changes) for rec in recordings]


def test_an_empty_trial_file_is_an_error_naming_the_file(tmp_path):
  from data_prep import readers  # pylint: disable=g-import-not-at-top
  np.savez(tmp_path / "empty.npz", animal_id="fly1", trial_id="001",
           behaviour=np.zeros((0, 3), np.float32), behaviour_names=["a", "b", "c"],
           roi_traces=np.zeros((0, 4), np.float32), sync=np.zeros(0, np.int64))
  with pytest.raises(recording_lib.RecordingError) as error:
    readers.read_recordings(tmp_path, layout="trial_files")
  assert "empty.npz" in str(error.value) and "no frames" in str(error.value)


def test_behaviour_that_is_mostly_missing_or_infinite_is_an_error(tmp_path):
  (rec, _) = _trial()
  missing = rec.behaviour.copy()
  missing[: int(0.6 * len(missing))] = np.nan
  with pytest.raises(recording_lib.RecordingError, match="missing .* in 60% of its frames"):
    dataclasses.replace(rec, behaviour=missing, keypoint_mask=None)
  infinite = rec.behaviour.copy()
  infinite[5, 1] = np.inf
  with pytest.raises(recording_lib.RecordingError, match="infinite values in 1 frames"):
    dataclasses.replace(rec, behaviour=infinite, keypoint_mask=None)
  partly_tracked = copy.copy(rec)  # the share is a parameter of the check
  object.__setattr__(partly_tracked, "behaviour", missing)
  object.__setattr__(partly_tracked, "keypoint_mask", ~np.isnan(missing))
  assert recording_lib.recording_problems(partly_tracked)
  assert not recording_lib.recording_problems(partly_tracked, max_missing_behaviour=0.7)


def test_neural_timestamps_must_cover_the_behaviour(tmp_path):
  (rec, _) = _trial()
  behaviour_times = np.arange(rec.num_behaviour_frames) / rec.fps_behaviour
  half = np.arange(rec.num_neural_frames) / rec.fps_neural / 2  # half the trial's span
  with pytest.raises(recording_lib.RecordingError, match="do not cover the behaviour"):
    dataclasses.replace(rec, behaviour_timestamps=behaviour_times, neural_timestamps=half)


def test_an_interrupted_overwrite_leaves_the_old_dataset_whole(tmp_path, monkeypatch):
  from nar.data import builder  # pylint: disable=g-import-not-at-top
  first = builder.build_dataset(_trial(seed=0), str(tmp_path))
  before = shards.open_dataset(first).metadata

  def killed(self, *args, **kwargs):
    raise KeyboardInterrupt("killed while writing")

  monkeypatch.setattr(builder.NarRecordings, "download_and_prepare", killed)
  with pytest.raises(KeyboardInterrupt):
    builder.build_dataset(_trial(seed=1), str(tmp_path), overwrite=True)
  assert shards.open_dataset(first).metadata == before
  assert sorted(p.name for p in pathlib.Path(first).parent.iterdir()) == ["1.0.0"]
  monkeypatch.undo()
  builder.build_dataset(_trial(seed=1), str(tmp_path), overwrite=True)
  assert shards.open_dataset(first).metadata != before


def test_an_unfinished_build_is_never_opened_and_the_next_build_removes_it(tmp_path):
  from nar.data import builder  # pylint: disable=g-import-not-at-top
  leftover = tmp_path / shards.BUILDER_NAME / "default" / "incomplete.1a2b" / "1.0.0"
  leftover.mkdir(parents=True)
  (leftover.parent / "dataset_info.json").write_text("{}")
  (leftover / "dataset_info.json").write_text("{}")
  with pytest.raises(shards.DatasetNotFoundError):
    shards.open_dataset(tmp_path)
  builder.build_dataset(_trial(), str(tmp_path))
  assert not leftover.parent.exists()
  assert shards.open_dataset(tmp_path).animals


def test_the_build_command_lists_bad_trials_without_a_traceback(tmp_path):
  np.savez(tmp_path / "empty.npz", animal_id="fly1", trial_id="001",
           behaviour=np.zeros((0, 3), np.float32), behaviour_names=["a", "b", "c"],
           roi_traces=np.zeros((0, 4), np.float32), sync=np.zeros(0, np.int64))
  result = subprocess.run(
      [sys.executable, "-m", "data_prep.build", f"--input_dir={tmp_path}",
       f"--data_dir={tmp_path}/tfds"], cwd=REPO_ROOT, capture_output=True, text=True,
      check=False, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert "error: " in result.stderr and "empty.npz" in result.stderr
  assert not (tmp_path / "tfds").exists()


def test_an_empty_mc2p_trial_is_an_error_naming_its_folder(tmp_path):
  import pickle  # pylint: disable=g-import-not-at-top
  import synthetic_data  # pylint: disable=g-import-not-at-top
  from data_prep import mc2p_writer  # pylint: disable=g-import-not-at-top
  from data_prep import readers  # pylint: disable=g-import-not-at-top
  rec = synthetic_data.recording(0, 0, 600, np.random.default_rng(0))
  folder = mc2p_writer.write_trial(rec, tmp_path)
  with open(folder / "pose_result.pkl", "wb") as f:
    pickle.dump({"points3d": np.zeros((0, 38, 3))}, f)
  with pytest.raises(recording_lib.RecordingError) as error:
    readers.read_recordings(tmp_path, layout="mc2p")
  assert folder.name in str(error.value) and "no frames" in str(error.value)
