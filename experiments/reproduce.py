r"""The plan and command line of a reproduction of the seed's Tables 1-2 and the ablations.

  python -m experiments.reproduce --preset=cpu --seeds=3 --out=runs/reproduce   # make reproduce
  python -m experiments.reproduce --preset=smoke --seeds=2 --out=/tmp/reproduce_smoke
  python -m experiments.reproduce --preset=cpu --dataset=locomotion --seeds=3 --out=DIR

Simulates and builds the dataset if absent, trains every method of the preset
(`experiments/configs/reproduce.py`) once per seed, evaluates the untrained reference rows
(raw ΔF/F and raw pose windows), probes, and writes into `--out`:

* `table1.md` (action recognition) and `table2.md` (identity recognition), in the seed's layout
  with the paper's numbers beside ours (on the pose dataset; the paper has no benchmark of the
  others), in accuracy and in balanced accuracy;
* `calibration.md` (on a dataset calibrated to a real set, `locomotion_calibrated`): its
  statistics beside the real set's, on the reproduction's folds;
* `objectives.md`: Ours and each objective switch (same-animal negatives, partner positives,
  moments penalty, swap schedules) against no-swap on new animals and against the
  standardised input's identity, paired by fold (`--ablation_seeds=3` for three folds);
* `ablation.md`: each ablation of Ours (swap probability, temperature, exact vs top-K, ŝ per
  frame, each augmentation group off) beside Ours over the same seeds;
* `runs.csv` (one line per run: held-out animals, wall time, every score) and `summary.csv`
  (mean and std over runs, the paper's accuracy);
* `figures/`: 2-D embeddings of held-out features (Ours, no swap, SimCLR), confusion matrices
  of the multi-animal probe, training loss curves;
* `README.md`: the settings, the wall time of every run and in all, and the tables.

Seed k trains with `seed = k` and holds out its own pair of animals (`data.split_seed =
execution.REPORT_SPLIT_SEED_OFFSET + k`; the folds of split seeds 0-2, on which Ours' settings
were chosen, are not among them): held-out animals are excluded from training, from the swap
pool and from the probe's training windows, so the spread over seeds is a spread over
leave-2-animals-out folds. Each run lives in
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

import dataclasses
import pathlib
import sys
import time
from typing import Any, Mapping, Sequence

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags
import numpy as np
import tqdm

from experiments import calibration
from experiments import execution
from experiments import report
from experiments import tables as tables_lib
from experiments.configs import reproduce as presets
from nar import logs
from nar.data import recording
from nar.data import shards
from nar.eval import features as features_lib
from nar.eval import plots
from nar.eval import protocol as protocol_lib
from nar.train import validate


# ----------------------------------------------------------------------------------------------
# The plan.
# ----------------------------------------------------------------------------------------------
def fold_config(config: ml_collections.ConfigDict, seed: int,
                held_out_animals: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The config of seed `seed`: its own initialisation, data order and held-out animals.

  The held-out animals are `held_out_animals` when any are named (a fold of `--folds`), else
  those that `data.split_seed = REPORT_SPLIT_SEED_OFFSET + seed` draws.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  config.seed = seed
  config.data.split_seed = execution.REPORT_SPLIT_SEED_OFFSET + seed
  config.data.held_out_animals = tuple(held_out_animals)
  return config


def parse_folds(text: str | None) -> list[tuple[str, ...]] | None:
  """`--folds`: folds separated by ";", each a fold's held-out animals separated by ",".

  Example:
    >>> parse_folds("fly_a,fly_b; fly_c,fly_d")
    [('fly_a', 'fly_b'), ('fly_c', 'fly_d')]
  """
  if not text:
    return None
  folds = [tuple(a.strip() for a in fold.split(",") if a.strip()) for fold in text.split(";")]
  if not all(folds):
    raise execution.SettingsError(f"--folds has an empty fold: {text!r}; write "
                                  "--folds='fly_a,fly_b;fly_c,fly_d'")
  return folds


def check_folds(folds: Sequence[Sequence[str]], animals: Sequence[str]) -> None:
  """Raises SettingsError, listing the dataset's animals, for a fold naming another animal."""
  for k, fold in enumerate(folds):
    unknown = sorted(set(fold) - set(animals))
    if unknown:
      raise execution.SettingsError(f"--folds: fold {k} names {unknown}, which are not "
                                    f"animals of the dataset; its animals: {sorted(animals)}")


def row_names(preset: presets.Preset) -> tuple[str, ...]:
  """Every runnable row of a preset: references, methods, ablations."""
  return tuple(execution.REFERENCE_ROWS) + tuple(preset.methods) + tuple(preset.ablations)


def check_dataset(dataset: str) -> None:
  """Raises SettingsError for a `--dataset` that is not registered."""
  if dataset not in presets.DATASETS:
    raise execution.SettingsError(f"unknown --dataset {dataset!r}; choose one of "
                                  f"{sorted(presets.DATASETS)}")


def check_arguments(preset: presets.Preset, *, num_seeds: int, dataset: str,
                    only: Sequence[str] | None) -> None:
  """Raises SettingsError, saying what to pass instead, for arguments that cannot run."""
  if num_seeds < 1:
    raise execution.SettingsError(f"--seeds must be at least 1, got {num_seeds}")
  check_dataset(dataset)
  if dataset != preset.dataset:
    raise execution.SettingsError(
        f"the preset was made for --dataset={preset.dataset}, not {dataset}")
  if only is not None and not only:
    raise execution.SettingsError("--only is empty; leave it out to run every row")
  unknown = sorted(set(only or ()) - set(row_names(preset)))
  if unknown:
    raise execution.SettingsError(f"--only names unknown rows {unknown}; choose among "
                                  f"{', '.join(row_names(preset))}")


def plan_runs(preset: presets.Preset, *, num_seeds: int, out_dir: str | pathlib.Path,
              only: Sequence[str] | None = None, skip_ablations: bool = False,
              folds: Sequence[Sequence[str]] | None = None) -> list[execution.Run]:
  """The runs of a reproduction, seed by seed (so that early seeds of every row come first).

  Args:
    preset: the preset; its training config must already point at the dataset.
    num_seeds: seeds (= held-out folds) of every method and reference row.
    out_dir: the output folder; runs go to `out_dir/runs/<row>/seed<k>`.
    only: restrict to these rows (methods, references or ablations); all if None.
    skip_ablations: leave the ablations out.
    folds: the held-out animals of each seed, by name (`num_seeds` folds); None draws them.

  Returns:
    The runs, references and methods of seed 0, then of seed 1, ..., then the ablations over
    `min(preset.ablation_seeds, num_seeds)` seeds.
  """
  wanted = lambda row: only is None or row in only
  if folds is not None and len(folds) != num_seeds:
    raise execution.SettingsError(f"{len(folds)} folds for {num_seeds} seeds")
  held_out = lambda seed: folds[seed] if folds is not None else ()
  runs_dir = pathlib.Path(out_dir) / "runs"
  runs = []
  for seed in range(num_seeds):
    for row in execution.REFERENCE_ROWS:
      if wanted(row):
        runs.append(execution.Run(row, execution.REFERENCE, seed, runs_dir / row / f"seed{seed}",
                                  fold_config(preset.training, seed, held_out(seed))))
    for method in preset.methods:
      if wanted(method):
        runs.append(execution.Run(method, execution.METHOD, seed, runs_dir / method / f"seed{seed}",
                                  fold_config(presets.method_config(preset, method), seed,
                                              held_out(seed))))
  if not skip_ablations:
    for seed in range(min(preset.ablation_seeds, num_seeds)):
      for ablation in preset.ablations:
        if wanted(ablation):
          workdir = runs_dir / "ablations" / ablation / f"seed{seed}"
          config = fold_config(presets.ablation_config(preset, ablation), seed,
                               held_out(seed))
          runs.append(execution.Run(ablation, execution.ABLATION, seed, workdir, config))
  return runs


# ----------------------------------------------------------------------------------------------
# Running.
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Outputs.
# ----------------------------------------------------------------------------------------------


def write_figures(runs: Sequence[execution.Run], preset: presets.Preset,
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
    found = [r for r in finished
             if r.row == method and (r.workdir / execution.FEATURES_FILE).exists()]
    if found:
      title = f"{tables_lib.row_label(method)}, seed {found[0].seed}"
      tables[title] = features_lib.load_feature_table(found[0].workdir / execution.FEATURES_FILE)
  if tables:
    save(plots.embedding_figure(tables, method=preset.embedding,
                                title="the held-out animals' features"),
         "embedding_held_out.png")
  # Multi-animal probe at label fraction 1.0, counts summed over seeds.
  matrices, class_names = {}, None
  for row in tuple(tables_lib.ROW_LABELS) + tuple(preset.ablations):
    total = None
    for run in (r for r in finished if r.row == row):
      probe = execution.load_results(run)["probes"].get(protocol_lib.ACTION_MULTI_ANIMAL, {})
      counts = probe.get(protocol_lib.fraction_key(1.0), {}).get("confusion")
      if counts is None:
        continue
      class_names = probe["confusion_classes"]
      total = np.asarray(counts) if total is None else total + np.asarray(counts)
    if total is not None and row not in preset.ablations:
      matrices[tables_lib.row_label(row)] = total
  if matrices:
    save(plots.confusion_figure(matrices, class_names), "confusion_multi_animal.png")
  for group, name in ((execution.METHOD, "loss_curves.png"),
                      (execution.ABLATION, "loss_curves_ablations.png")):
    curves = {}
    for run in (r for r in finished if r.group == group):
      curve = logs.read_metric_curve(run.workdir / logs.METRICS_FILE)
      if curve is not None:
        curves.setdefault(tables_lib.row_label(run.row), {})[f"seed {run.seed}"] = curve
    if curves:
      save(plots.curves_figure(curves), name)
  return written


# ----------------------------------------------------------------------------------------------
# The job.
# ----------------------------------------------------------------------------------------------
def write_calibration(preset: presets.Preset, dataset: str, out_dir: pathlib.Path, *,
                      num_seeds: int, folds: Sequence[Sequence[str]] | None = None) -> str:
  """Writes `calibration.md`: the simulated dataset's statistics beside those of the real set
  it imitates (`experiments.calibration`), probed on the reproduction's own held-out folds.
  Returns its text."""
  configs = [fold_config(preset.training, seed, folds[seed] if folds else ())
             for seed in range(num_seeds)]
  data = preset.training.data
  simulated = shards.open_dataset(data.data_dir, data.name)
  rows = calibration.compare(simulated, configs, calibration.CALIBRATED_DATASETS[dataset])
  text = (f"# The simulated dataset against the real set it imitates\n\n"
          f"`{data.name}`, probed with the project's own probes on the {num_seeds} held-out "
          f"fold(s) of this reproduction (mean ± std over folds; identity is "
          f"{len(simulated.animals)}-way). "
          f"`python -m experiments.calibrate --dataset={dataset}` prints the same rows.\n\n"
          + calibration.markdown(rows))
  (out_dir / "calibration.md").write_text(text)
  return text


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
    raise execution.SettingsError(
        f"the preset was made for --dataset={preset.dataset}, not {dataset}")
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
          raise execution.SettingsError(f"--config.{field} is not a field of Ours' training config "
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
              folds: Sequence[Sequence[str]] | None = None,
              ablation_seeds: int | None = None,
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
    folds: the held-out animals of each seed, by name; then `num_seeds` must be their number.
      An animal the dataset does not have stops the command before any run.
    ablation_seeds: seeds of every ablation (at most `num_seeds`); None keeps the preset's.
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
      raise execution.SettingsError(f"--train_steps: {error}") from error
  if overrides:
    try:
      preset = presets.with_overrides(preset, overrides)
    except ValueError as error:
      raise execution.SettingsError(str(error)) from error
  check_arguments(preset, num_seeds=num_seeds, dataset=dataset, only=only)
  if ablation_seeds is not None:
    if ablation_seeds < 1:
      raise execution.SettingsError(f"--ablation_seeds must be at least 1, got {ablation_seeds}")
    preset = dataclasses.replace(preset, ablation_seeds=ablation_seeds)
  out_dir = pathlib.Path(out_dir)
  if folds is not None and len(folds) != num_seeds:
    raise execution.SettingsError(f"--folds gives {len(folds)} folds but --seeds={num_seeds}; "
                                  "pass one fold per seed")
  prepare_dataset(preset, dataset)
  if folds is not None:
    check_folds(folds, shards.open_dataset(preset.training.data.data_dir,
                                           preset.training.data.name).animals)
  runs = plan_runs(preset, num_seeds=num_seeds, out_dir=out_dir, only=only,
                   skip_ablations=skip_ablations, folds=folds)
  if workers is None:
    workers = execution.default_workers(preset)
  progress = tqdm.tqdm(total=len(runs), desc="reproduce", unit="run", position=0)
  ran, skipped = execution.execute_all(runs, workers=workers, progress=progress)
  progress.close()
  ablation_seeds = min(preset.ablation_seeds, num_seeds)
  tables = report.write_tables(runs, preset, out_dir, ablation_seeds)
  if dataset in calibration.CALIBRATED_DATASETS:
    tables["calibration.md"] = write_calibration(preset, dataset, out_dir, num_seeds=num_seeds,
                                                 folds=folds)
  figures = write_figures(runs, preset, out_dir / "figures")
  seconds = time.perf_counter() - start
  report.write_readme(runs, preset, out_dir, command=command, dataset=dataset,
                      invocation_seconds=seconds, texts=tables, figures=figures, workers=workers)
  logging.info("Reproduction written to %s (%d runs now, %d reused, %s)", out_dir, len(ran),
               len(skipped), report.format_minutes(seconds))
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
_ABLATION_SEEDS = flags.DEFINE_integer(
    "ablation_seeds", None, "Seeds of every ablation, at most --seeds (default: the preset's, "
    "1 on cpu); the objective switches' table (objectives.md) pairs them with no-swap by fold.")
_TRAIN_STEPS = flags.DEFINE_integer(
    "train_steps", None, "Train every run this many steps (a tenth warming up) instead of "
    "the preset's; runs of another length in --out are refused, so use a new folder.")


_FOLDS = flags.DEFINE_string(
    "folds", None, "Held-out animals by name, one fold per seed: folds separated by ';', "
    "animals by ',' (e.g. --folds='fly_a,fly_b;fly_c,fly_d' with --seeds=2); default: each "
    "seed draws its own.")
_WORKERS = flags.DEFINE_integer(
    "workers", None, "Runs at once, each in its own process with its output in the run's "
    f"{execution.LOG_FILE}; default: the preset's cpu_workers on a CPU (2 for cpu: one run's steps "
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
                        folds=parse_folds(_FOLDS.value),
                        ablation_seeds=_ABLATION_SEEDS.value,
                        workers=_WORKERS.value,
                        command="python -m experiments.reproduce " + " ".join(sys.argv[1:]))
  except (execution.SettingsError, validate.ConfigError, recording.RecordingError,
          shards.DatasetNotFoundError) as error:
    raise SystemExit(f"experiments.reproduce: {error}") from error
  print(pathlib.Path(_OUT.value, "table1.md").read_text())
  print(pathlib.Path(_OUT.value, "table2.md").read_text())
  print(f"{len(summary['ran'])} runs now, {len(summary['skipped'])} reused; "
        f"{report.format_minutes(summary['seconds'])}; everything in {_OUT.value}")


if __name__ == "__main__":
  try:
    define_config_flag()
  except execution.SettingsError as error:
    raise SystemExit(f"experiments.reproduce: {error}") from None
  app.run(main)
