r"""Reproduces the seed's Tables 1 and 2, and the ablations, on a simulated dataset.

  python -m experiments.reproduce --preset=cpu --seeds=3 --out=runs/reproduce   # make reproduce
  python -m experiments.reproduce --preset=smoke --seeds=2 --out=/tmp/reproduce_smoke
  python -m experiments.reproduce --preset=cpu --dataset=locomotion --seeds=3 --out=DIR

Simulates and builds the dataset if absent, trains every method of the preset
(`experiments/configs/reproduce.py`) once per seed, evaluates the untrained reference rows
(raw ΔF/F and raw pose windows), probes, and writes into `--out`:

* `table1.md` (action recognition) and `table2.md` (identity recognition), in the seed's layout
  with the paper's numbers beside ours (on the pose dataset; the paper has no benchmark of the
  others), in accuracy and in balanced accuracy;
* `ablation.md`: each ablation of Ours (swap probability, temperature, exact vs top-K, ŝ per
  frame, each augmentation group off) beside Ours over the same seeds;
* `runs.csv` (one line per run: held-out animals, wall time, every score) and `summary.csv`
  (mean and std over runs, the paper's accuracy);
* `figures/`: 2-D embeddings of held-out features (Ours, no swap, SimCLR), confusion matrices
  of the multi-animal probe, training loss curves;
* `README.md`: the settings, the wall time of every run and in all, and the tables.

Seed k trains with `seed = k` and holds out its own pair of animals (`data.split_seed =
REPORT_SPLIT_SEED_OFFSET + k`; the folds of split seeds 0-2, on which Ours' settings were
chosen, are not among them): held-out animals are excluded from training, from the swap pool and from the probe's training
windows, so the spread over seeds is a spread over leave-2-animals-out folds. Each run lives in
`--out/runs/<row>/seed<k>`; a finished run (with `eval.json`) is skipped and an interrupted one
resumes from its last checkpoint, so the command can be rerun after an interruption or with
more seeds. A run made with another config is never reused: the command stops and says so.

`--train_steps=N` trains every run N steps; `--config.field=value` (repeatable) changes a field of
Ours' training config, from which every run derives, e.g.

  python -m experiments.reproduce --preset=cpu --seeds=3 --train_steps=1500 --skip_ablations \
      --config.swap.neural_probability=0.5 --out=DIR

(Ours with the neural swap; no baseline swaps, so their runs are those of the same command
without it).
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
from typing import Any, Mapping, Sequence

from absl import app
from absl import flags
from absl import logging
import jax
from joblib.externals import loky
import ml_collections
from ml_collections import config_flags
import numpy as np
import tqdm

from experiments import paper_results
from experiments import report
from experiments.configs import reproduce as presets
from nar.eval import features as features_lib
from nar.eval import protocol as protocol_lib
from nar import logs
from nar.eval import plots
from nar.eval import raw_features
from nar.data import shards
from nar import train

# Seed k holds out the animals that `data.split_seed = REPORT_SPLIT_SEED_OFFSET + k` draws.
# Ours' settings were chosen on the folds of split seeds 0-2 (the configs' default is 0);
# reporting on those would let that choice flatter Ours. On 8 animals, split seeds 100-102
# hold out three disjoint pairs, none of them a pair of split seeds 0-2.
REPORT_SPLIT_SEED_OFFSET = 100

# Untrained reference rows -> the raw input their linear probe reads, and whether the neural
# windows are standardised per animal first (`nar.data.normalise`). "pose_swapped": the
# pose windows after Ours' cross-animal swap of every window (`nar.eval.raw_features`).
REFERENCE_ROWS = {"neural_raw": ("neural", False), "neural_standardised": ("neural", True),
                  "behaviour_raw": ("pose", False),
                  "behaviour_swapped": ("pose_swapped", False)}
METHOD, REFERENCE, ABLATION = "method", "reference", "ablation"
CONFIG_FILE, RESULTS_FILE, FEATURES_FILE = "config.json", "eval.json", "features.npz"
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
    "model.baseline_features": None,
    "augment.neural.local_gain": 0.0,
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


# ----------------------------------------------------------------------------------------------
# The plan.
# ----------------------------------------------------------------------------------------------
def fold_config(config: ml_collections.ConfigDict, seed: int) -> ml_collections.ConfigDict:
  """The config of seed `seed`: its own initialisation, data order and held-out animals."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.seed = seed
  config.data.split_seed = REPORT_SPLIT_SEED_OFFSET + seed
  return config


def row_names(preset: presets.Preset) -> tuple[str, ...]:
  """Every runnable row of a preset: references, methods, ablations."""
  return tuple(REFERENCE_ROWS) + tuple(preset.methods) + tuple(preset.ablations)


def check_dataset(dataset: str) -> None:
  """Raises SettingsError for a `--dataset` that is not registered."""
  if dataset not in presets.DATASETS:
    raise SettingsError(f"unknown --dataset {dataset!r}; choose one of "
                        f"{sorted(presets.DATASETS)}")


def check_arguments(preset: presets.Preset, *, num_seeds: int, dataset: str,
                    only: Sequence[str] | None) -> None:
  """Raises SettingsError, saying what to pass instead, for arguments that cannot run."""
  if num_seeds < 1:
    raise SettingsError(f"--seeds must be at least 1, got {num_seeds}")
  check_dataset(dataset)
  if dataset != preset.dataset:
    raise SettingsError(f"the preset was made for --dataset={preset.dataset}, not {dataset}")
  if only is not None and not only:
    raise SettingsError("--only is empty; leave it out to run every row")
  unknown = sorted(set(only or ()) - set(row_names(preset)))
  if unknown:
    raise SettingsError(f"--only names unknown rows {unknown}; choose among "
                        f"{', '.join(row_names(preset))}")


def plan_runs(preset: presets.Preset, *, num_seeds: int, out_dir: str | pathlib.Path,
              only: Sequence[str] | None = None,
              skip_ablations: bool = False) -> list[Run]:
  """The runs of a reproduction, seed by seed (so that early seeds of every row come first).

  Args:
    preset: the preset; its training config must already point at the dataset.
    num_seeds: seeds (= held-out folds) of every method and reference row.
    out_dir: the output folder; runs go to `out_dir/runs/<row>/seed<k>`.
    only: restrict to these rows (methods, references or ablations); all if None.
    skip_ablations: leave the ablations out.

  Returns:
    The runs, references and methods of seed 0, then of seed 1, ..., then the ablations over
    `min(preset.ablation_seeds, num_seeds)` seeds.
  """
  wanted = lambda row: only is None or row in only
  runs_dir = pathlib.Path(out_dir) / "runs"
  runs = []
  for seed in range(num_seeds):
    for row in REFERENCE_ROWS:
      if wanted(row):
        runs.append(Run(row, REFERENCE, seed, runs_dir / row / f"seed{seed}",
                        fold_config(preset.training, seed)))
    for method in preset.methods:
      if wanted(method):
        runs.append(Run(method, METHOD, seed, runs_dir / method / f"seed{seed}",
                        fold_config(presets.method_config(preset, method), seed)))
  if not skip_ablations:
    for seed in range(min(preset.ablation_seeds, num_seeds)):
      for ablation in preset.ablations:
        if wanted(ablation):
          workdir = runs_dir / "ablations" / ablation / f"seed{seed}"
          config = fold_config(presets.ablation_config(preset, ablation), seed)
          runs.append(Run(ablation, ABLATION, seed, workdir, config))
  return runs


# ----------------------------------------------------------------------------------------------
# Running.
# ----------------------------------------------------------------------------------------------
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
                num_time_blocks=config.eval.identity_time_blocks)
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


# The datasets a worker process has opened, shared by the runs it takes (`_start_worker`).
_worker_datasets: shards.DatasetCache | None = None


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


# ----------------------------------------------------------------------------------------------
# Outputs.
# ----------------------------------------------------------------------------------------------
def _summaries(runs: Sequence[Run], rows: Sequence[str]) -> dict[str, dict[str, Any] | None]:
  """Row -> `aggregate_runs` over its finished runs (None without any)."""
  summaries = {}
  for row in rows:
    suites = [load_results(r)["probes"] for r in runs if r.row == row and r.finished]
    summaries[row] = report.aggregate_runs(suites) if suites else None
  return summaries


def _change_text(overrides: Mapping[str, Any]) -> str:
  return ", ".join(f"{field} = {value}" for field, value in overrides.items())


def _ours_settings(preset: presets.Preset) -> str:
  """What the ablations change, as Ours sets it."""
  training = preset.training
  swap, augment = training.swap, training.augment
  groups = [name for name, on in (("pose", augment.pose_enabled),
                                  ("neural", augment.neural_enabled)) if on]
  return (f"swap.probability = {swap.probability}, swap.temperature = {swap.temperature}, "
          f"swap.mode = {swap.mode}, one ŝ per {'frame' if swap.per_frame_target else 'window'}"
          f", swap.neural_probability = {swap.neural_probability}, "
          f"data.neural_normalisation = {training.data.neural_normalisation}, "
          f"behaviour_residual_weight = {training.behaviour_residual_weight}, "
          f"neural_view_weight = {training.neural_view_weight}, "
          f"model.features = {training.model.features}, "
          f"augmentations: {' and '.join(groups) or 'none'}")


def write_tables(runs: Sequence[Run], preset: presets.Preset, out_dir: pathlib.Path,
                 ablation_seeds: int) -> dict[str, str]:
  """Writes table1.md, table2.md, ablation.md, runs.csv and summary.csv. Returns the tables."""
  summaries = _summaries(runs, tuple(report.ROW_LABELS) + tuple(preset.ablations))
  finished = [r for r in runs if r.finished]
  records = [report.run_record(r.row, r.group, r.seed, load_results(r)) for r in finished]
  tables = report.dataset_tables(summaries, records, dataset=preset.dataset)
  title = presets.DATASET_TITLES.get(preset.dataset, preset.dataset)
  # Ours over the ablations' seeds only, so that every line compares like with like.
  ours_runs = [r for r in runs if r.row == presets.OURS and r.seed < ablation_seeds]
  ablation_summaries = {presets.OURS: _summaries(ours_runs, [presets.OURS])[presets.OURS]}
  ablation_summaries.update({a: summaries[a] for a in preset.ablations})
  changes = {presets.OURS: _ours_settings(preset)}
  changes.update({a: _change_text(o) for a, o in preset.ablations.items()})
  tables["ablation.md"] = (
      f"# Ablations of Ours (%; seeds 0-{ablation_seeds - 1}; identity: lower is better), "
      f"{title}\n\n"
      "## Accuracy\n\n" + report.ablation_table(ablation_summaries, changes) +
      "\n## Balanced accuracy\n\n" +
      report.ablation_table(ablation_summaries, changes, metric="balanced_accuracy"))
  for name, text in tables.items():
    (out_dir / name).write_text(text)
  (out_dir / "runs.csv").write_text(report.runs_csv(records))
  groups = {r.row: r.group for r in runs}
  wall = {row: float(np.mean([_wall_seconds(r) for r in finished if r.row == row]))
          for row in groups if any(r.row == row for r in finished)}
  (out_dir / "summary.csv").write_text(report.summary_csv(
      {row: summaries[row] for row in summaries if row in groups or row == "random"},
      groups, wall, paper=paper_results.has_benchmark(preset.dataset)))
  return tables


def _wall_seconds(run: Run) -> float:
  return float(load_results(run).get("wall_seconds", {}).get("total", float("nan")))


def write_figures(runs: Sequence[Run], preset: presets.Preset,
                  figures_dir: pathlib.Path) -> list[str]:
  """Embeddings, confusion matrices and loss curves of the finished runs. Returns the files."""
  figures_dir.mkdir(parents=True, exist_ok=True)
  finished = [r for r in runs if r.finished]
  written = []

  def save(figure, name):
    figure.savefig(figures_dir / name, dpi=130)
    written.append(name)

  # Held-out features of the first finished seed of each method drawn.
  tables = {}
  for method in presets.EMBEDDING_METHODS:
    found = [r for r in finished if r.row == method and (r.workdir / FEATURES_FILE).exists()]
    if found:
      title = f"{report.row_label(method)}, seed {found[0].seed}"
      tables[title] = features_lib.load_feature_table(found[0].workdir / FEATURES_FILE)
  if tables:
    save(plots.embedding_figure(tables, method=preset.embedding,
                                title="the held-out animals' features"),
         "embedding_held_out.png")
  # Multi-animal probe at label fraction 1.0, counts summed over seeds.
  matrices, class_names = {}, None
  for row in tuple(report.ROW_LABELS) + tuple(preset.ablations):
    total = None
    for run in (r for r in finished if r.row == row):
      probe = load_results(run)["probes"].get(protocol_lib.ACTION_MULTI_ANIMAL, {})
      counts = probe.get(protocol_lib.fraction_key(1.0), {}).get("confusion")
      if counts is None:
        continue
      class_names = probe["confusion_classes"]
      total = np.asarray(counts) if total is None else total + np.asarray(counts)
    if total is not None and row not in preset.ablations:
      matrices[report.row_label(row)] = total
  if matrices:
    save(plots.confusion_figure(matrices, class_names), "confusion_multi_animal.png")
  for group, name in ((METHOD, "loss_curves.png"), (ABLATION, "loss_curves_ablations.png")):
    curves = {}
    for run in (r for r in finished if r.group == group):
      curve = logs.read_metric_curve(run.workdir / logs.METRICS_FILE)
      if curve is not None:
        curves.setdefault(report.row_label(run.row), {})[f"seed {run.seed}"] = curve
    if curves:
      save(plots.curves_figure(curves), name)
  return written


def _minutes(seconds: float) -> str:
  return f"{seconds / 60:.1f} min"


def write_readme(runs: Sequence[Run], preset: presets.Preset, out_dir: pathlib.Path, *,
                 command: str, dataset: str, invocation_seconds: float,
                 tables: Mapping[str, str], figures: Sequence[str], workers: int = 1) -> None:
  """`README.md` of the output folder: settings, wall times, tables and figures."""
  finished = [r for r in runs if r.finished]
  seconds = {group: sum(_wall_seconds(r) for r in finished if r.group == group)
             for group in (REFERENCE, METHOD, ABLATION)}
  training = preset.training
  lines = [
      f"# Reproduction, preset `{preset.name}`", "",
      f"Command: `{command}`", "",
      f"- dataset: `{dataset}`, {presets.DATASET_TITLES.get(dataset, dataset)} "
      f"({training.data.name} in {training.data.data_dir})",
      f"- training per run: {training.optim.num_train_steps} steps, global batch "
      f"{training.optim.global_batch_size}" + (
          f"; then the held-out animals' ROI input layers are fitted without labels for "
          f"{training.adapt.num_steps} steps (where the ROI counts differ between animals)"
          if training.data.neural_key == "roi_traces" else ""),
      f"- seeds: {sorted({r.seed for r in runs if r.group != ABLATION})}; seed k holds out its "
      f"own 2 animals (`data.split_seed = {REPORT_SPLIT_SEED_OFFSET} + k`)",
      f"- runs finished: {len(finished)} of {len(runs)}",
      f"- wall time, sum over finished runs: {_minutes(sum(seconds.values()))} "
      f"(methods {_minutes(seconds[METHOD])}, ablations {_minutes(seconds[ABLATION])}, "
      f"references {_minutes(seconds[REFERENCE])}); this invocation: "
      f"{_minutes(invocation_seconds)}",
      f"- runs at once in this invocation: {workers}" + (
          " (each run's wall time includes the other runs' share of the machine, so their "
          "sum exceeds the invocation's)" if workers > 1 else ""),
      "", "Wall time of each run (its last invocation; a resumed run counts from the resume):",
      "", report.markdown_table(
          ["run", "held-out animals", "wall time"],
          [[r.name, " ".join(load_results(r).get("held_out_animals", [])),
            f"{_wall_seconds(r):.0f} s"] for r in finished]),
  ]
  for name in ("table1.md", "table2.md", "ablation.md"):
    lines += [tables[name].replace("# ", "## ", 1)]
  if figures:
    lines += ["## Figures", ""] + [f"![{name}](figures/{name})" for name in figures]
  (out_dir / "README.md").write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------
# The job.
# ----------------------------------------------------------------------------------------------
def prepare_dataset(preset: presets.Preset, dataset: str | None = None) -> None:
  """Points the preset's training config at its dataset, simulating and building it if absent.

  Args:
    preset: the preset.
    dataset: the preset's dataset (`preset.dataset` if None); another one is an error, since
      the preset's training config is made for its own.
  """
  from data_prep import default_dataset  # pylint: disable=g-import-not-at-top
  dataset = dataset or preset.dataset
  if dataset != preset.dataset:
    raise SettingsError(f"the preset was made for --dataset={preset.dataset}, not {dataset}")
  choice = presets.DATASETS[dataset](preset.dataset_size)
  preset.training.data.name = choice.name
  default_dataset.ensure_dataset(choice.simulator, choice.seed,
                                 data_dir=preset.training.data.data_dir, name=choice.name)


def define_config_flag(flag_values: flags.FlagValues = flags.FLAGS,
                       argv: Sequence[str] | None = None) -> flags.FlagHolder:
  """The `--config.FIELD=VALUE` flag: ml_collections' overrides of Ours' training config.

  The flag holds the cpu preset's training config of the pose dataset, which gives every
  field its name and type; only the fields set on the command line are read
  (`config_flags.get_override_values`), then applied to the training config of the preset and
  dataset the command asks for (`presets.with_overrides`). `argv` is the command line the
  overrides are read from (ml_collections defines a flag for each one it finds there;
  default `sys.argv`).
  """
  training = presets.get_config("cpu", "pose").training
  for arg in sys.argv if argv is None else argv:
    if arg.startswith("--config."):
      field = arg[len("--config."):].partition("=")[0]
      node = training
      for part in field.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
          raise SettingsError(f"--config.{field} is not a field of Ours' training config "
                              "(experiments/configs/common.py lists them)")
        node = node[part]
  return config_flags.DEFINE_config_dict(
      "config", training,
      "Override a field of Ours' training config, from which every run derives, with "
      "--config.FIELD=VALUE (e.g. --config.swap.neural_probability=0.5); repeatable. Runs "
      "made with other values in --out are refused, so use a new folder.",
      flag_values=flag_values, sys_argv=None if argv is None else list(argv))


def config_overrides(flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, Any]:
  """`{"dotted.field": value}` of the `--config.FIELD=VALUE` flags given (parsed flags)."""
  return dict(config_flags.get_override_values(flag_values["config"]))


def reproduce(preset_name: str = "cpu", *, num_seeds: int, out_dir: str | pathlib.Path,
              dataset: str = "pose", only: Sequence[str] | None = None,
              skip_ablations: bool = False, train_steps: int | None = None,
              overrides: Mapping[str, Any] | None = None, workers: int | None = 1,
              command: str = "") -> dict[str, Any]:
  """Runs (or resumes) a reproduction and writes its tables, CSVs, figures and README.

  Args:
    preset_name: "cpu", "tpu" or "smoke" (`experiments/configs/reproduce.py`).
    num_seeds: seeds (= leave-2-animals-out folds) of every method and reference row.
    out_dir: the output folder.
    dataset: a name of `presets.DATASETS`.
    only: restrict to these rows (methods, references, ablations); the tables still list
      every row, "–" where nothing ran.
    skip_ablations: leave the ablations out.
    train_steps: train every run this many steps instead of the preset's (a tenth of them
      warming up); None keeps the preset's.
    overrides: `{"dotted.field": value}` changes of Ours' training config, from which every
      run derives (`presets.with_overrides`; on the command line `--config.FIELD=VALUE`).
    workers: runs at once (`execute_all`); None: `default_workers(preset)`.
    command: the command line, recorded in the README.

  Returns:
    `{"ran": [run names trained or evaluated now], "skipped": [finished runs reused],
    "seconds": wall time of this call}`.
  """
  start = time.perf_counter()
  check_dataset(dataset)  # before the preset, whose training config depends on it
  preset = presets.get_config(preset_name, dataset)
  if train_steps is not None:
    try:
      preset = presets.with_train_steps(preset, train_steps)
    except ValueError as error:
      raise SettingsError(f"--train_steps: {error}") from error
  if overrides:
    try:
      preset = presets.with_overrides(preset, overrides)
    except ValueError as error:
      raise SettingsError(str(error)) from error
  check_arguments(preset, num_seeds=num_seeds, dataset=dataset, only=only)
  out_dir = pathlib.Path(out_dir)
  prepare_dataset(preset, dataset)
  runs = plan_runs(preset, num_seeds=num_seeds, out_dir=out_dir, only=only,
                   skip_ablations=skip_ablations)
  if workers is None:
    workers = default_workers(preset)
  progress = tqdm.tqdm(total=len(runs), desc="reproduce", unit="run", position=0)
  ran, skipped = execute_all(runs, workers=workers, progress=progress)
  progress.close()
  ablation_seeds = min(preset.ablation_seeds, num_seeds)
  tables = write_tables(runs, preset, out_dir, ablation_seeds)
  figures = write_figures(runs, preset, out_dir / "figures")
  seconds = time.perf_counter() - start
  write_readme(runs, preset, out_dir, command=command, dataset=dataset,
               invocation_seconds=seconds, tables=tables, figures=figures, workers=workers)
  logging.info("Reproduction written to %s (%d runs now, %d reused, %s)", out_dir, len(ran),
               len(skipped), _minutes(seconds))
  return {"ran": ran, "skipped": skipped, "seconds": seconds}


_PRESET = flags.DEFINE_enum("preset", "cpu", list(presets.PRESETS),
                            "Preset of experiments/configs/reproduce.py.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds (= leave-2-animals-out folds) per method.")
_OUT = flags.DEFINE_string("out", None, "Output folder (tables, CSVs, figures, runs).")
_DATASET = flags.DEFINE_string("dataset", "pose", "Dataset: a name of DATASETS in "
                               "experiments/configs/reproduce.py.")
_ONLY = flags.DEFINE_list("only", None, "Only these rows (methods, neural_raw, "
                          "neural_standardised, behaviour_raw, behaviour_swapped, ablations), "
                          "comma separated; the tables still list every row.")
_SKIP_ABLATIONS = flags.DEFINE_bool("skip_ablations", False, "Leave the ablations out.")
_TRAIN_STEPS = flags.DEFINE_integer(
    "train_steps", None, "Train every run this many steps (a tenth warming up) instead of "
    "the preset's; runs of another length in --out are refused, so use a new folder.")


_WORKERS = flags.DEFINE_integer(
    "workers", None, "Runs at once, each in its own process with its output in the run's "
    f"{LOG_FILE}; default: the preset's cpu_workers on a CPU (2 for cpu: one run's steps "
    "keep 2 cores busy but its input, compilation and probes do not), 1 on an accelerator.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag")
  if not _OUT.value:
    raise app.UsageError("--out is required: the folder for tables, figures and runs")
  logs.quiet_checkpoint_logs()
  try:
    summary = reproduce(_PRESET.value, num_seeds=_SEEDS.value, out_dir=_OUT.value,
                        dataset=_DATASET.value, only=_ONLY.value,
                        skip_ablations=_SKIP_ABLATIONS.value,
                        train_steps=_TRAIN_STEPS.value, overrides=config_overrides(),
                        workers=_WORKERS.value,
                        command="python -m experiments.reproduce " + " ".join(sys.argv[1:]))
  except SettingsError as error:
    raise SystemExit(f"experiments.reproduce: {error}") from error
  print(pathlib.Path(_OUT.value, "table1.md").read_text())
  print(pathlib.Path(_OUT.value, "table2.md").read_text())
  print(f"{len(summary['ran'])} runs now, {len(summary['skipped'])} reused; "
        f"{_minutes(summary['seconds'])}; everything in {_OUT.value}")


if __name__ == "__main__":
  try:
    define_config_flag()
  except SettingsError as error:
    raise SystemExit(f"experiments.reproduce: {error}") from None
  app.run(main)
