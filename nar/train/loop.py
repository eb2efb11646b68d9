"""The training job: state, the loop, checkpoints and resume, and the evaluation hook.

`train_and_evaluate(config, workdir)` is the whole job: input (`nar.train.inputs`), mesh,
model and optimiser, the jitted sharded step (`nar.train.step`), Orbax checkpoints (train
state, PRNG and data iterator together, resumed automatically), metrics, the held-out
animals' input layers (`nar.train.adapt`), and a final linear-probe evaluation written to
`workdir/eval.json`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import signal
import threading
import time
from typing import Any

from absl import logging
from etils import epath
from flax import nnx
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import tqdm

from nar import logs
from nar import run as run_lib
from nar.data import device as device_lib
from nar.data import pipeline
from nar.data import shards
from nar.eval import features as features_lib
from nar.eval import protocol as protocol_lib
from nar.train import adapt
from nar.train import inputs as inputs_lib
from nar.train import step as step_lib
from nar.train import validate


def _round_up(value: int, multiple: int) -> int:
  return -(-value // multiple) * multiple


def evaluate(graphdef, params, inputs: inputs_lib.Input, config, mesh,
             features_path: str | epath.Path | None = None) -> dict[str, Any]:
  """The probe suite (`nar.eval.protocol`) on frozen neural-encoder features of every animal.

  Args:
    graphdef: the model's graph definition.
    params: its parameters; with a per-animal input layer, the held-out animals' rows fitted
      (`fit_input_layers`), else they embed through their initial rows.
    inputs: the data side of the run.
    config: the experiment.
    mesh: the mesh the encoder runs on.
    features_path: if set, the features of the held-out animals' windows are written there
      (`nar.eval.protocol.save_feature_table`), e.g. for embedding plots.

  Returns:
    `probes`: the full suite (single- and multi-animal action, identity, at each label
    fraction); and at the top level, for a one-line summary, the multi-animal action scores
    (`action_held_out_animals`, at label fraction 1.0, when animals are held out) and the
    identity scores on held-out time (`identity_held_out_time`), with their chance levels.
  """
  # Replicated features: every process of a multi-host run reads all of them (a batch-sharded
  # output would span devices other processes own).
  @functools.partial(jax.jit, out_shardings=jax.sharding.NamedSharding(mesh, jax.P()))
  def encode_on_mesh(params, neural, animal):
    return nnx.merge(graphdef, params).encode_neural(neural, animal)

  batch_sharding = jax.sharding.NamedSharding(mesh, jax.P("data"))
  encode = lambda neural, animal: np.asarray(encode_on_mesh(
      params, jax.device_put(neural, batch_sharding), jax.device_put(animal, batch_sharding)))
  eval_config = config.eval
  table = features_lib.build_feature_table(
      encode, inputs.dataset, inputs.spec, inputs.normalizer, neural_key=inputs.neural_key,
      hop=eval_config.hop, drop_classes=tuple(eval_config.drop_classes),
      num_time_blocks=eval_config.identity_time_blocks,
      # One batch shape that splits evenly over the mesh, so the encoder compiles once.
      batch_size=_round_up(eval_config.batch_size, mesh.size),
      pad_rois=inputs.pad_rois, with_animal=True, neural_normalizer=inputs.neural_normalizer,
      animals=inputs_lib.probed_animals(inputs),
      feature_normalisation=eval_config.get("feature_normalisation", "none"))
  if features_path is not None:
    features_lib.save_feature_table(table, features_path,
                                    animals=inputs.held_out_animals or None)
  suite = protocol_lib.run_probe_suite(
      table, training_animals=inputs.training_animals, held_out_animals=inputs.held_out_animals,
      protocol=protocol_lib.protocol_from_config(eval_config, seed=config.seed))
  for skipped in suite["skipped"]:
    logging.warning("Probe skipped: %s", skipped)
  results: dict[str, Any] = {"training_animals": list(inputs.training_animals),
                             "held_out_animals": list(inputs.held_out_animals)}
  action = protocol_lib.headline_scores(suite, protocol_lib.ACTION_MULTI_ANIMAL)
  if action is not None:
    results["action_held_out_animals"] = action
    results["action_chance"] = suite["chance"]["action"]
  results["identity_held_out_time"] = protocol_lib.headline_scores(suite, protocol_lib.IDENTITY)
  results["identity_chance"] = suite["chance"]["identity"]
  results["probes"] = suite
  return results


def _write_metrics(path: epath.Path, step: int, metrics: dict, writer) -> None:
  with path.open("a") as f:
    f.write(json.dumps({"step": step, **metrics}) + "\n")
  if writer is not None:
    for name, value in metrics.items():
      writer.add_scalar(name, value, step)


CHECKPOINT_ITEMS = ("state", "data", "checksum")


class NonFiniteError(FloatingPointError):
  """Training produced a non-finite loss or parameters (`optim.nan_policy="stop"`)."""


class CheckpointError(RuntimeError):
  """No checkpoint of a workdir can be restored: the message names each and why."""


def params_checksum(params) -> str:
  """SHA-256 of every parameter's bytes, in the state's order: flipped bytes change it."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(jax.device_get(params)):
    array = np.ascontiguousarray(np.asarray(leaf))
    digest.update(str((array.dtype, array.shape)).encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def _restore_latest(manager, state, loader, workdir: epath.Path):
  """The state and data iterator of the newest checkpoint that restores whole.

  A checkpoint that fails to restore, or whose parameters do not match the checksum saved
  with them, is skipped with a warning naming its step, for the one before it. A checkpoint
  of another model is an error (`check_resume` catches most before this).

  Returns:
    `(state, iterator)`: as initialised when the workdir holds no checkpoint.
  """
  damaged = []
  for step in reversed(manager.all_steps()):
    iterator = iter(loader)  # fresh: a failed restore may have moved it
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(state),
          data=grain.checkpoint.CheckpointRestore(iterator)))
    except ValueError as error:
      if "do not match" in str(error):  # orbax: the saved and the new state differ
        raise validate.ConfigError(
            f"{manager.directory} holds checkpoints of another model (made with another "
            "config, or by an earlier version of NAR), so this run cannot resume from them; "
            "pass another workdir, or delete that folder to start over") from error
      damaged.append((step, f"{type(error).__name__}: {str(error)[:200]}"))
      continue
    except Exception as error:  # pylint: disable=broad-except
      # A truncated or overwritten file surfaces as many kinds of errors (JSON, tensorstore).
      damaged.append((step, f"{type(error).__name__}: {str(error)[:200]}"))
      continue
    checksum_dir = epath.Path(manager.directory) / str(step) / "checksum"
    if checksum_dir.exists():
      try:
        saved = manager.restore(step, args=ocp.args.Composite(
            checksum=ocp.args.JsonRestore()))["checksum"]["params_sha256"]
      except Exception as error:  # pylint: disable=broad-except
        damaged.append((step, f"its checksum cannot be read ({type(error).__name__})"))
        continue
      if saved != params_checksum(restored["state"].params):
        damaged.append((step, "its parameters do not match the checksum saved with them"))
        continue
    for bad_step, reason in damaged:
      logging.warning("Checkpoint %d of %s is damaged (%s); resuming from step %d instead",
                      bad_step, workdir, reason, step)
    logging.info("Resumed from step %d", int(restored["state"].step))
    return restored["state"], iterator
  if damaged:
    raise CheckpointError(
        f"no checkpoint of {manager.directory} restores: "
        + "; ".join(f"step {step}: {reason}" for step, reason in damaged)
        + "; delete the folder to start over")
  return state, iter(loader)


def _stop_if_non_finite(metrics, params, step: int, manager) -> None:
  """Raises `NonFiniteError` (saving nothing) if the loss or any parameter is not finite."""
  values = jax.device_get({k: metrics[k] for k in ("loss", "grad_norm") if k in metrics})
  finite = all(np.isfinite(v) for v in values.values()) and bool(_all_finite(params))
  if not finite:
    last = manager.latest_step()
    raise NonFiniteError(
        f"training diverged by step {step}: the loss ({float(values['loss'])!r}) or the "
        f"parameters are not finite; nothing was saved, the last checkpoint is "
        f"{'step ' + str(last) if last is not None else 'none'}. Lower optim.learning_rate, "
        "or set optim.nan_policy='skip' to skip such steps")


@jax.jit
def _all_finite(params) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(params)
            if jnp.issubdtype(leaf.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


class _PreemptionFlag:
  """Within its `with`, SIGTERM and SIGINT set a flag (the loop then saves and stops) instead
  of killing the process; outside, the previous handlers are back. Only the main thread can
  install signal handlers; elsewhere signals keep their usual effect."""

  def __enter__(self):
    self._event = threading.Event()
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      for signum in (signal.SIGTERM, signal.SIGINT):
        self._previous[signum] = signal.signal(signum, self._handle)
    return self._event

  def _handle(self, signum, frame):
    del frame
    if self._event.is_set():  # a second signal: stop now
      raise KeyboardInterrupt(f"signal {signum}")
    logging.warning("Signal %d: saving a checkpoint at the end of this step", signum)
    self._event.set()

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    return False


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       datasets: shards.DatasetCache | None = None) -> dict[str, Any]:
  """Trains, checkpoints, resumes if `workdir` holds checkpoints, and evaluates.

  With a per-animal input layer, the held-out animals' input rows are fitted after training
  (`fit_input_layers`, `config.adapt`) so that the evaluation can embed them; the fit is not
  checkpointed but recomputed (deterministically) by every invocation that evaluates, and
  its report goes to `eval.json` under `adaptation`.

  Args:
    config: the experiment (see `experiments/configs/`).
    workdir: where checkpoints, metrics, `eval.json` (with the run's `wall_seconds`) and
      `features.npz` (held-out animals' features) go (local or remote path).
    datasets: where to open the dataset (`create_input`): a cache shared with the process's
      other runs; None opens it for this run.

  Returns:
    The evaluation results, also written to `workdir/eval.json`.
  """
  start_time = time.perf_counter()
  workdir = run_lib.run_folder(workdir)
  # --- Checks of the config alone, before any data is read ---
  validate.check_ranges(config)
  validate.check_model_config(config.model)
  # --- Input pipeline ---
  split = inputs_lib.open_and_split(config, datasets)
  checkpoint_dir = workdir / run_lib.CHECKPOINT_DIR
  if run_lib.finished_steps(workdir) and (workdir / run_lib.RUN_FILE).exists():
    # Before the neural data is preloaded: a resume on other terms costs nothing.
    validate.check_resume(workdir, run_lib.read_run_record(workdir),
                          run_lib.run_record(config, *split))
  workdir.mkdir(parents=True, exist_ok=True)
  inputs = inputs_lib.create_input(config, datasets, split=split)
  if jax.process_index() == 0:  # what the run is made of, before any step (`nar.run`)
    run_lib.write_run_record(workdir, run_lib.run_record(
        config, inputs.dataset, inputs.training_animals, inputs.held_out_animals,
        model=inputs_lib.model_shapes(inputs).to_json()))
    run_lib.write_normalisers(workdir, inputs.normalizer, inputs.neural_normalizer)
  # --- Mesh ---
  mesh = step_lib.make_mesh()
  validate.check_config(config, inputs, mesh.size)
  replicated = jax.sharding.NamedSharding(mesh, jax.P())
  batch_sharding = jax.sharding.NamedSharding(mesh, jax.P("data"))
  # --- Model, optimiser and swap pool ---
  graphdef, tx, state = step_lib.create_train_state(config, inputs)
  state = jax.device_put(state, replicated)
  bank, bank_row_of_animal = step_lib.create_step_constants(config, inputs)
  memory_fraction = config.data.get("device_memory_fraction", 0.25)
  bank = step_lib.place_step_constants(bank, mesh, max_replicated_bytes=int(
      memory_fraction * device_lib.device_memory_bytes(mesh.devices.flat[0])))
  resident, input_path = device_lib.choose_path(
      config.data.get("input_path", "host"),
      inputs.train_source.frame_arrays_bytes(inputs.neural_key), memory_fraction,
      mesh.devices.flat[0])
  logging.info("Training windows: %s", input_path)
  if resident:
    bank["windows"] = device_lib.make_device_windows(inputs.train_source, inputs.neural_key,
                                                     bank_row_of_animal, mesh)
  # --- Update step ---
  step_fn = step_lib.compile_train_step(graphdef, tx, config, inputs.neural_key, mesh,
                                        len(inputs.dataset.animals),
                                        behaviour_spec=inputs.dataset.behaviour_spec)
  validate.check_step_shapes(step_fn, state, bank, inputs, config.optim.global_batch_size,
                             labels=step_lib.reads_labels(config))
  # --- Data iterator and checkpoints ---
  loader = pipeline.make_loader(
      inputs.train_source, batch_size=config.optim.global_batch_size // jax.process_count(),
      train=True, seed=config.seed, worker_count=0 if resident else config.data.worker_count,
      read_windows=not resident)
  manager = ocp.CheckpointManager(
      checkpoint_dir,
      options=ocp.CheckpointManagerOptions(
          save_interval_steps=config.checkpoint_every_steps, max_to_keep=config.keep_checkpoints,
          # The train state is written in a background thread while training goes on (grain's
          # iterator state, a small JSON, is written at once); a save lands on disk before the
          # next one starts, and before the run evaluates or stops.
          enable_async_checkpointing=True),
      item_names=CHECKPOINT_ITEMS)
  state, iterator = _restore_latest(manager, state, loader, workdir)
  is_chief = jax.process_index() == 0
  if is_chief:  # a resumed run logs each step once: what came after its checkpoint goes
    logs.truncate_metrics(workdir / logs.METRICS_FILE, int(state.step))
  # --- Training loop ---
  writer = None
  if is_chief:
    import tensorboardX  # pylint: disable=g-import-not-at-top
    writer = tensorboardX.SummaryWriter(str(workdir / "tensorboard"))
  first_step = int(state.step)
  num_steps = config.optim.num_train_steps
  progress = tqdm.tqdm(range(first_step, num_steps), initial=first_step, total=num_steps,
                       desc="train", disable=not is_chief)
  last_metrics, timer_start, timed_steps = {}, None, 0
  stop_on_non_finite = config.optim.get("nan_policy", "stop") == "stop"
  with _PreemptionFlag() as preempted:
    for step in progress:
      local = next(iterator)
      if not resident:
        local = step_lib.step_batch(local, inputs.neural_key, bank_row_of_animal,
                                    labels=step_lib.reads_labels(config))
      batch = {key: jax.make_array_from_process_local_data(batch_sharding, value)
               for key, value in local.items()}
      state, metrics = step_fn(state, batch, bank)
      done = step + 1
      if timer_start is None:  # the first step includes compilation
        jax.block_until_ready(state)
        timer_start = time.perf_counter()
      else:
        timed_steps += 1
      logged = done % config.log_every_steps == 0 or done == num_steps
      # The last step is saved whatever the interval, so a finished run's checkpoint holds
      # the parameters it was evaluated with; a preempted run saves where it stopped.
      saving = (done == num_steps or preempted.is_set()
                or manager.should_save(done))
      if stop_on_non_finite and (logged or saving):
        _stop_if_non_finite(metrics, state.params, done, manager)
      if logged:
        last_metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if timed_steps:
          last_metrics["windows_per_second"] = (
              timed_steps * config.optim.global_batch_size / (time.perf_counter() - timer_start))
        progress.set_postfix(loss=f"{last_metrics['loss']:.3f}",
                             windows_s=f"{last_metrics.get('windows_per_second', 0):.0f}")
        if is_chief:
          _write_metrics(workdir / logs.METRICS_FILE, done, last_metrics, writer)
      if saving:
        manager.save(done, force=True, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator),
            checksum=ocp.args.JsonSave({"params_sha256": params_checksum(state.params)})))
      if preempted.is_set() and done < num_steps:
        manager.wait_until_finished()
        logging.warning("Stopped by a signal at step %d; its checkpoint is saved, and a rerun "
                        "with the same workdir resumes from it", done)
        if writer is not None:
          writer.close()
        return {"preempted": True, "step": done}
  manager.wait_until_finished()
  if writer is not None:
    writer.close()
  # --- Input layers of the held-out animals ---
  params, adaptation = state.params, None
  if adapt.fits_held_out_input_layers(config, inputs):
    # Not checkpointed: it follows training in every invocation, a resumed one included, and
    # is deterministic given the seed, so a resumed run fits the same rows.
    params, adaptation = adapt.fit_input_layers(graphdef, params, inputs, config, mesh,
                                                inputs.held_out_animals, constants=bank)
    if is_chief:  # kept, so that the run embeds its held-out animals when loaded back
      adapt.write_input_layers(workdir, params, inputs.dataset.animals,
                               inputs.held_out_animals, inputs.roi_counts, report=adaptation)
  elif inputs.roi_counts is not None and inputs.held_out_animals:
    logging.warning("adapt.num_steps=0: the held-out animals %s embed through the initial "
                    "rows of their input layers", list(inputs.held_out_animals))
  # --- Evaluation ---
  eval_start_time = time.perf_counter()
  if config.eval.get("enabled", True):
    results = evaluate(graphdef, params, inputs, config, mesh,
                       features_path=workdir / "features.npz" if is_chief else None)
  else:
    results = {"training_animals": list(inputs.training_animals),
               "held_out_animals": list(inputs.held_out_animals), "probes": None}
  # Of this invocation only: a resumed run does not count the time before it was interrupted.
  results["wall_seconds"] = {"total": time.perf_counter() - start_time,
                             "evaluation": time.perf_counter() - eval_start_time}
  if adaptation is not None:
    results["adaptation"] = adaptation
  results["train_steps"] = num_steps
  results["final_train_metrics"] = last_metrics
  if is_chief:
    logs.write_json_atomically(workdir / "eval.json", results)
  return results


def summary_line(results: dict[str, Any]) -> str:
  """One line: held-out-animal action accuracy and identity accuracy against chance."""
  if "probes" in results and results["probes"] is None:
    return "eval: off (config.eval.enabled=False)"
  parts = []
  if results.get("action_held_out_animals"):
    parts.append(f"action on held-out animals {results['action_held_out_animals']['accuracy']:.1f}%"
                 f" (chance {results['action_chance']:.1f}%)")
  if results.get("identity_held_out_time"):
    parts.append(f"identity {results['identity_held_out_time']['accuracy']:.1f}% "
                 f"(chance {results['identity_chance']:.1f}%, lower is better)")
  else:
    parts.append("identity not measured (see eval.json 'probes.skipped')")
  return "eval: " + "; ".join(parts)
