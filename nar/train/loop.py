"""The training job: state, the loop, checkpoints and resume, and the evaluation hook.

`train_and_evaluate(config, workdir)` is the whole job: input (`nar.train.inputs`), mesh,
model and optimiser, the jitted sharded step (`nar.train.step`), Orbax checkpoints (train
state, PRNG and data iterator together, resumed automatically), metrics, the held-out
animals' input layers (`nar.train.adapt`), and a final linear-probe evaluation written to
`workdir/eval.json`.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any

from absl import logging
from etils import epath
from flax import nnx
import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import tqdm

from nar import logs
from nar import run as run_lib
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
      pad_rois=inputs.pad_rois, with_animal=True, neural_normalizer=inputs.neural_normalizer)
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
  workdir = epath.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  # --- Input pipeline ---
  inputs = inputs_lib.create_input(config, datasets)
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
  validate.check_model_config(config.model)
  graphdef, tx, state = step_lib.create_train_state(config, inputs)
  state = jax.device_put(state, replicated)
  bank, bank_row_of_animal = step_lib.create_step_constants(config, inputs)
  bank = jax.device_put(bank, replicated)
  # --- Update step ---
  step_fn = step_lib.compile_train_step(graphdef, tx, config, inputs.neural_key, mesh,
                                        len(inputs.dataset.animals),
                                        behaviour_spec=inputs.dataset.behaviour_spec)
  validate.check_step_shapes(step_fn, state, bank, inputs, config.optim.global_batch_size,
                             labels=step_lib.reads_labels(config))
  # --- Data iterator and checkpoints ---
  loader = pipeline.make_loader(
      inputs.train_source, batch_size=config.optim.global_batch_size // jax.process_count(),
      train=True, seed=config.seed, worker_count=config.data.worker_count)
  iterator = iter(loader)
  manager = ocp.CheckpointManager(
      workdir / "checkpoints",
      options=ocp.CheckpointManagerOptions(
          save_interval_steps=config.checkpoint_every_steps, max_to_keep=config.keep_checkpoints,
          enable_async_checkpointing=False),
      item_names=("state", "data"))
  if manager.latest_step() is not None:
    try:
      restored = manager.restore(manager.latest_step(), args=ocp.args.Composite(
          state=ocp.args.StandardRestore(state),
          data=grain.checkpoint.CheckpointRestore(iterator)))
    except ValueError as error:
      if "do not match" not in str(error):  # orbax: the saved and the new state differ
        raise
      raise ValueError(
          f"{workdir / 'checkpoints'} holds checkpoints of another model (made with another "
          "config, or by an earlier version of NAR), so this run cannot resume from them; "
          "pass another workdir, or delete that folder to start over") from error
    state = restored["state"]
    logging.info("Resumed from step %d", int(state.step))
  # --- Training loop ---
  is_chief = jax.process_index() == 0
  writer = None
  if is_chief:
    import tensorboardX  # pylint: disable=g-import-not-at-top
    writer = tensorboardX.SummaryWriter(str(workdir / "tensorboard"))
  first_step = int(state.step)
  num_steps = config.optim.num_train_steps
  progress = tqdm.tqdm(range(first_step, num_steps), initial=first_step, total=num_steps,
                       desc="train", disable=not is_chief)
  last_metrics, timer_start, timed_steps = {}, None, 0
  for step in progress:
    local = step_lib.step_batch(next(iterator), inputs.neural_key, bank_row_of_animal,
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
    if done % config.log_every_steps == 0 or done == num_steps:
      last_metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      if timed_steps:
        last_metrics["windows_per_second"] = (
            timed_steps * config.optim.global_batch_size / (time.perf_counter() - timer_start))
      progress.set_postfix(loss=f"{last_metrics['loss']:.3f}",
                           windows_s=f"{last_metrics.get('windows_per_second', 0):.0f}")
      if is_chief:
        _write_metrics(workdir / logs.METRICS_FILE, done, last_metrics, writer)
    # The last step is saved whatever the interval, so a finished run's checkpoint holds the
    # parameters it was evaluated with.
    manager.save(done, force=done == num_steps, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator)))
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
