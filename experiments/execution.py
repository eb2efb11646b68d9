"""A reproduction's runs: their folders, claimed for one config, and their execution.

A `Run` is one row of the tables at one seed: a training config (or an untrained reference
row) and its folder. `claim_workdir` refuses a folder made with another config;
`execute_all` trains or evaluates the runs, in the command's process or several at once in
worker processes (each run's output in its folder's `log.txt`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import multiprocessing
import os
import pathlib
import sys
import time
from typing import Any, Sequence

from absl import logging
import jax
from joblib.externals import loky
import ml_collections

from experiments.configs import reproduce as presets
from nar import logs
from nar import train
from nar.data import shards
from nar.eval import features as features_lib
from nar.eval import protocol as protocol_lib
from nar.eval import raw_features
from nar.train import inputs as inputs_lib

# Seed k holds out the animals that `data.split_seed = REPORT_SPLIT_SEED_OFFSET + k` draws.
# Ours' settings were chosen on the folds of split seeds 0-2 (the configs' default is 0);
# reporting on those would let that choice flatter Ours. On 8 animals, split seeds 100-102
# hold out three disjoint pairs, none of them a pair of split seeds 0-2.
REPORT_SPLIT_SEED_OFFSET = 100

# The groups of table rows, and the files of a run folder.
METHOD, REFERENCE, ABLATION = "method", "reference", "ablation"
CONFIG_FILE, RESULTS_FILE, FEATURES_FILE = "config.json", "eval.json", "features.npz"



# Untrained reference rows -> the raw input their linear probe reads, and whether the neural
# windows are standardised per animal first (`nar.data.normalise`). "pose_swapped": the
# pose windows after Ours' cross-animal swap of every window (`nar.eval.raw_features`).
REFERENCE_ROWS = {"neural_raw": ("neural", False), "neural_standardised": ("neural", True),
                  "behaviour_raw": ("pose", False),
                  "behaviour_swapped": ("pose_swapped", False)}


# A run's output when it runs in a worker process (`execute_all` with several workers).
LOG_FILE = "log.txt"


# The pool the "Behaviour (linear), swapped" row draws from, recorded with its runs.
SWAPPED_POSE_POOL = "every swap.pool_stride-th frame"


# Fields a finished run may differ in and still be reused: where the data lives.
_RELOCATABLE_FIELDS = ("data.data_dir",)


# Config fields added after runs of this command existed -> the value that does what the code
# did before the field existed. A saved run lacking such a field is reused only when the run
# asked for now has that value; a saved run lacking any other field is refused, since nothing
# says what it did. Add every new config field here with its old behaviour, if it has one.
FIELDS_ADDED_LATER = {
    "data.neural_normalisation": "none",
    "data.neural_calibration_fraction": None,
    "swap.neural_probability": 0.0,
    "swap.neural_partner_quantile": 1.0,
    "swap.pool_stride": 1,
    "behaviour_residual_weight": 0.0,
    "neural_view_weight": 0.0,
    "same_animal_negatives_weight": 0.0,
    "partner_positive_weight": 0.0,
    "swap.schedule": "constant",
    "swap.schedule_fraction": 0.5,
    "data.num_training_animals": None,
    "model.baseline_features": None,
    "augment.neural.local_gain": 0.0,
    "data.held_out_animals": [],  # as JSON: no named animals, the seeded draw as before
    "eval.enabled": True,
    "eval.feature_normalisation": "none",
    "optim.nan_policy": "stop",  # finite runs train as before; a diverging one now stops
}


class SettingsError(ValueError):
  """Arguments or an output folder the reproduction cannot run with; the message says why."""


@dataclasses.dataclass(frozen=True)
class Run:
  """One training (or reference evaluation) of the reproduction.

  Attributes:
    row: the table row: a method ("ours", "simclr", ...), a reference row ("neural_raw",
      "behaviour_raw", ...) or an ablation name.
    group: METHOD, REFERENCE or ABLATION.
    seed: the seed, which is also the held-out fold.
    workdir: where its checkpoints and results go.
    config: its training config (for a reference row, that of Ours: data and evaluation).
  """

  row: str
  group: str
  seed: int
  workdir: pathlib.Path
  config: ml_collections.ConfigDict

  @property
  def name(self) -> str:
    return f"{self.row} seed {self.seed}"

  @property
  def finished(self) -> bool:
    return (self.workdir / RESULTS_FILE).exists()


def _compared_config(run: Run) -> dict[str, Any]:
  """The part of a run's config its results depend on, as JSON data."""
  config = json.loads(run.config.to_json())
  if run.group == REFERENCE:  # raw inputs: only the data and the probes matter
    swapped = REFERENCE_ROWS[run.row][0] == "pose_swapped"  # depends on Ours' swap too
    keys = ("seed", "data", "eval") + (("swap",) if swapped else ())
    config = {key: config[key] for key in keys}
    if swapped:
      # Runs made before the swapped row read `swap.pool_stride` drew from every frame
      # whatever it said; lacking this entry, they are refused rather than mistaken for
      # runs of the thinned pool.
      config["swapped_pose_pool"] = SWAPPED_POSE_POOL
  for field in _RELOCATABLE_FIELDS:
    *parents, leaf = field.split(".")
    node = config
    for part in parents:
      node = node.get(part, {})
    node.pop(leaf, None)
  return config


_ABSENT = object()


def _differences(saved: Any, now: Any, prefix: str = ""
                 ) -> tuple[list[str], list[tuple[str, Any]]]:
  """`(changed, added)`: fields whose value differs, and `(field, value now)` of the fields
  the saved config lacks."""
  if isinstance(saved, dict) and isinstance(now, dict):
    changed, added = [], []
    for key in sorted(set(saved) | set(now)):
      more = _differences(saved.get(key, _ABSENT), now.get(key, _ABSENT), f"{prefix}{key}.")
      changed += more[0]
      added += more[1]
    return changed, added
  if saved is _ABSENT:
    return [], [(prefix[:-1], now)]
  if saved == now:
    return [], []
  now = "absent" if now is _ABSENT else repr(now)
  return [f"{prefix[:-1]}: {saved!r} (saved) vs {now} (now)"], []


def _unmatched_additions(added: Sequence[tuple[str, Any]]) -> list[str]:
  """The fields among `added` (`(field, value now)`, missing from a saved run) that make the
  run unusable.

  A field is harmless when `FIELDS_ADDED_LATER` knows it and the run asked for now sets it
  to the value that keeps the code's behaviour from before the field existed.
  """
  problems = []
  for field, now in added:
    name = field.removeprefix("config.")
    if name not in FIELDS_ADDED_LATER:
      problems.append(f"{name}: absent (saved) vs {now!r} (now); the field was added after "
                      "the run was made and nothing says what the run did without it")
    elif now != FIELDS_ADDED_LATER[name]:
      problems.append(f"{name}: absent (saved), which behaved as "
                      f"{FIELDS_ADDED_LATER[name]!r}, vs {now!r} (now)")
  return problems


def claim_workdir(run: Run) -> None:
  """Records the run's config in its workdir, or checks it against the recorded one.

  A field the recorded config lacks was added to the configs after the run was made. The
  run is reused (with a warning) only when `FIELDS_ADDED_LATER` knows what the code did
  before that field existed and the run asked for now sets the field to that value.

  Raises:
    SettingsError: the workdir holds a run made with another config, or not made by this
      command; reusing it would mix results of different settings.
  """
  path = run.workdir / CONFIG_FILE
  wanted = {"row": run.row, "group": run.group, "seed": run.seed,
            "config": _compared_config(run)}
  if path.exists():
    saved = json.loads(path.read_text())
    changed, added = _differences(saved, wanted)
    changed += _unmatched_additions(added)
    if changed:
      raise SettingsError(
          f"{run.workdir} holds a run of {run.name} made with another config:\n  "
          + "\n  ".join(changed[:10]) +
          "\nwrite to another --out, or delete that run folder to redo it")
    if added:
      logging.warning("Reusing %s, made before these config fields existed: %s", run.workdir,
                      ", ".join(field for field, _ in added))
    return
  if run.workdir.exists() and any(run.workdir.iterdir()):
    raise SettingsError(f"{run.workdir} is not empty but has no {CONFIG_FILE}, so it was "
                        "not made by experiments.reproduce; delete it or write to another "
                        "--out")
  run.workdir.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(wanted, indent=2))


def raw_input_table(config: ml_collections.ConfigDict, kind: str, *,
                    standardised: bool = False, datasets: shards.DatasetCache | None = None
                    ) -> tuple[features_lib.FeatureTable, train.Input]:
  """The feature table of raw windows that a reference row probes, and the run's input.

  `kind`: "neural", "pose", or "pose_swapped" (the pose windows after the swap of every
  window, with `config.swap`'s temperature, target draw and pool (`swap.pool_stride`: the
  pool Ours draws its targets from), keyed by `config.seed`; always the exact draw, which a
  top-K table approximates).
  `standardised`: the neural windows standardised per animal first, with the statistics the
  encoders' input gets (`data.neural_normalisation="animal"`, whatever `config` says).
  `datasets`: where to open the dataset (`train.create_input`).
  """
  config = ml_collections.ConfigDict(config.to_dict())
  config.data.neural_normalisation = "animal" if standardised else "none"
  inputs = train.create_input(config, datasets)
  common = dict(hop=config.eval.hop, drop_classes=tuple(config.eval.drop_classes),
                num_time_blocks=config.eval.identity_time_blocks,
                animals=inputs_lib.probed_animals(inputs))
  if kind == "pose_swapped":
    table = raw_features.swapped_pose_feature_table(
        inputs.dataset, inputs.spec, inputs.normalizer, key=jax.random.key(config.seed),
        temperature=config.swap.temperature, per_frame_target=config.swap.per_frame_target,
        pool_stride=config.swap.pool_stride, **common)
  else:
    table = raw_features.raw_feature_table(
        inputs.dataset, inputs.spec, inputs.normalizer, kind=kind,
        neural_key=config.data.neural_key, neural_normalizer=inputs.neural_normalizer, **common)
  return table, inputs


def evaluate_raw_inputs(config: ml_collections.ConfigDict, kind: str, *,
                        standardised: bool = False,
                        datasets: shards.DatasetCache | None = None) -> dict[str, Any]:
  """The probe suite on raw windows (`raw_input_table`) with the split of `config`."""
  start = time.perf_counter()
  table, inputs = raw_input_table(config, kind, standardised=standardised, datasets=datasets)
  # The swapped table draws on the held-out animals' poses as well, which a multi-animal
  # probe must not see: this row has no multi-animal score.
  held_out = () if kind == "pose_swapped" else inputs.held_out_animals
  suite = protocol_lib.run_probe_suite(
      table, training_animals=inputs.training_animals, held_out_animals=held_out,
      protocol=protocol_lib.protocol_from_config(config.eval, seed=config.seed))
  seconds = time.perf_counter() - start
  return {"training_animals": list(inputs.training_animals),
          "held_out_animals": list(inputs.held_out_animals), "probes": suite,
          "train_steps": 0, "wall_seconds": {"total": seconds, "evaluation": seconds}}


def execute(run: Run, datasets: shards.DatasetCache | None = None) -> bool:
  """Trains and evaluates one run unless it has finished. Returns whether it ran.

  `datasets`: where to open the dataset, a cache shared by the runs of this process; None
  opens it for this run.
  """
  claim_workdir(run)
  if run.finished:
    return False
  if run.group == REFERENCE:
    kind, standardised = REFERENCE_ROWS[run.row]
    results = evaluate_raw_inputs(run.config, kind, standardised=standardised,
                                  datasets=datasets)
    logs.write_json_atomically(run.workdir / RESULTS_FILE, results)
  else:
    train.train_and_evaluate(run.config, str(run.workdir), datasets=datasets)
  return True


@contextlib.contextmanager
def _output_to(path: pathlib.Path):
  """Sends this process's stdout and stderr (file descriptors 1 and 2, so that absl logs,
  progress bars and XLA's messages follow) to `path`, appending, until the block ends."""
  sys.stdout.flush()
  sys.stderr.flush()
  saved = os.dup(1), os.dup(2)
  try:
    with open(path, "a", encoding="utf-8") as log:
      os.dup2(log.fileno(), 1)
      os.dup2(log.fileno(), 2)
      try:
        yield
      finally:
        sys.stdout.flush()
        sys.stderr.flush()
  finally:
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    os.close(saved[0])
    os.close(saved[1])


# The datasets a worker process has opened, shared by the runs it takes (`_start_worker`).
_worker_datasets: shards.DatasetCache | None = None


def _execute_logged(run: Run) -> bool:
  """`execute` in a worker process, its output in the run's `LOG_FILE` (several runs at once
  would interleave their progress bars on one terminal)."""
  run.workdir.mkdir(parents=True, exist_ok=True)
  with _output_to(run.workdir / LOG_FILE):
    try:
      return execute(run, _worker_datasets)
    except BaseException:
      logging.exception("%s failed", run.name)
      raise
    finally:
      # The probes' joblib processes idle for minutes before they exit, and a worker process
      # waits for its children when it ends; stopping them here lets the pool end at once.
      loky.get_reusable_executor().shutdown(wait=True)


def _start_worker() -> None:
  global _worker_datasets
  logs.quiet_checkpoint_logs()
  _worker_datasets = shards.DatasetCache()


def default_workers(preset: presets.Preset) -> int:
  """Runs at once: the preset's `cpu_workers` on a CPU backend, one on an accelerator (whose
  memory one run takes), never more than the machine's cores."""
  if jax.default_backend() != "cpu":
    return 1
  return max(1, min(preset.cpu_workers, os.cpu_count() or 1))


def execute_all(runs: Sequence[Run], *, workers: int = 1, progress: Any = None
                ) -> tuple[list[str], list[str]]:
  """Runs every unfinished run, `workers` at a time, and returns the names (ran, skipped).

  Every run's workdir is claimed first, so that a run made with another config stops the
  command before any work. With one worker the runs execute in this process in order; with
  more, in that many spawned processes, each run's output going to its `LOG_FILE`. Either
  way the runs of one process share its opened dataset (`shards.DatasetCache`: its preloaded
  neural data and behaviour features) and its compiled programs. A run that fails
  stops the others not yet started and raises, naming it.

  Args:
    runs: the runs, in the order they start.
    workers: runs at once (processes); 1 runs them here.
    progress: a tqdm bar over `runs`, advanced as runs end (and by the skipped ones).
  """
  if workers < 1:
    raise SettingsError(f"--workers must be at least 1, got {workers}")
  for run in runs:
    claim_workdir(run)
  ran, skipped = [], []
  pending = []
  for run in runs:
    if run.finished:
      skipped.append(run.name)
      if progress is not None:
        progress.update()
    else:
      pending.append(run)
  if workers == 1:
    datasets = shards.DatasetCache()
    for run in pending:
      if progress is not None:
        progress.set_description(f"reproduce [{run.name}]")
      execute(run, datasets)
      ran.append(run.name)
      if progress is not None:
        progress.update()
    return ran, skipped
  # Spawned, not forked: a forked child of a process that has started XLA's threads can hang.
  context = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(
      max_workers=workers, mp_context=context, initializer=_start_worker) as pool:
    futures = {pool.submit(_execute_logged, run): run for run in pending}
    if progress is not None:
      progress.set_description(f"reproduce [{workers} at once]")
    for future in concurrent.futures.as_completed(futures):
      run = futures[future]
      try:
        future.result()
      except BaseException as error:
        pool.shutdown(wait=True, cancel_futures=True)
        raise RuntimeError(f"{run.name} failed (its output: {run.workdir / LOG_FILE})"
                           ) from error
      ran.append(run.name)
      if progress is not None:
        progress.set_postfix_str(f"last: {run.name}")
        progress.update()
  return ran, skipped


def load_results(run: Run) -> dict[str, Any]:
  return json.loads((run.workdir / RESULTS_FILE).read_text())
