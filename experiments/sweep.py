r"""Where the swap should matter: Ours against no-swap over the number of training animals and
over the simulator's domain-gap knobs, paired by fold.

  python -m experiments.sweep --dataset=locomotion_calibrated --training_animals=2,4,8,15 \
      --seeds=3 --out=results/sweep_calibrated
  python -m experiments.sweep --dataset=locomotion_calibrated --knob=speed_scale_std=0.0,0.4 \
      --seeds=3 --out=results/sweep_calibrated

Every setting trains Ours and no-swap (the `--preset`'s configs of `--dataset`, cpu by
default) on each of
`--seeds` held-out folds (seed k holds out the animals the reproduction's seed k does). A count
of `--training_animals` trains on that many of the animals not held out
(`data.num_training_animals`; the subsets of one fold are nested); the animals left out are
in no probe either. A `--knob=NAME=V1,V2` simulates the dataset once per value with that
simulator field changed (`experiments.calibrate --set` does the same), under a name of its own.
Writes `sweep.md` (held-out balanced accuracy of both rows and Ours' lead fold by fold, identity
of both) and `sweep.csv` into `--out`; runs live in `--out/runs/<setting>/<row>/seed<k>` and a
rerun reuses the finished ones.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import io
import pathlib
from typing import Any, Mapping, Sequence

from absl import app
from absl import flags
import ml_collections
import tqdm

from experiments import calibration
from experiments import execution
from experiments import tables
from experiments.configs import reproduce as presets
from nar import logs
from nar.eval import protocol as protocol_lib

ROWS = (presets.OURS, "no_swap")
ACTION_COLUMN = tables.score_column(protocol_lib.ACTION_MULTI_ANIMAL, 1.0, "balanced_accuracy")
IDENTITY_COLUMN = tables.score_column(protocol_lib.IDENTITY, 1.0, "accuracy")


def parse_knob(text: str) -> tuple[str, list[Any]]:
  """`NAME=V1,V2,...` -> `(NAME, [V1, V2, ...])`, the values as Python literals.

  Example:
    >>> parse_knob("speed_scale_std=0.0,0.4")
    ('speed_scale_std', [0.0, 0.4])
  """
  name, separator, values = text.partition("=")
  if not separator or not name or not values:
    raise execution.SettingsError(f"--knob takes NAME=V1,V2,..., got {text!r}")
  try:
    return name, [ast.literal_eval(value) for value in values.split(",")]
  except (ValueError, SyntaxError) as error:
    raise execution.SettingsError(f"--knob {text!r}: values must be Python literals") from error


def plan_runs(dataset: str, *, num_seeds: int, out_dir: pathlib.Path, preset_name: str = "cpu",
              training_animals: Sequence[int] = (),
              knobs: Sequence[tuple[str, Sequence[Any]]] = ()) -> list[tuple[str, execution.Run]]:
  """`(setting, run)` for every setting, fold and row; simulates the knobs' datasets if absent.

  Raises:
    SettingsError: nothing to sweep, an unknown simulator field, or a count beyond the
      animals not held out.
  """
  from data_prep import default_dataset  # pylint: disable=g-import-not-at-top
  if not training_animals and not knobs:
    raise execution.SettingsError("give --training_animals and/or --knob: nothing to sweep")
  preset = presets.get_config(preset_name, dataset)
  base = presets.DATASETS[dataset](preset.dataset_size)
  settings: list[tuple[str, ml_collections.ConfigDict]] = []
  for count in training_animals:
    limit = base.simulator.num_animals - preset.training.data.num_held_out_animals
    if not 2 <= count <= limit:
      raise execution.SettingsError(f"--training_animals: {count} is not in [2, {limit}] (the "
                                    f"swap needs two; {limit} animals are not held out)")
    training = ml_collections.ConfigDict(preset.training.to_dict())
    training.data.num_training_animals = count
    training.data.name = base.name
    settings.append((f"training_animals={count}", training))
  for name, values in knobs:
    for value in values:
      try:
        choice = calibration.with_settings(base, [f"{name}={value!r}"])
      except ValueError as error:
        raise execution.SettingsError(f"--knob: {error}") from error
      training = ml_collections.ConfigDict(preset.training.to_dict())
      training.data.name = choice.name
      default_dataset.ensure_dataset(choice.simulator, choice.seed,
                                     data_dir=training.data.data_dir, name=choice.name)
      settings.append((f"{name}={value!r}", training))
  if training_animals:
    default_dataset.ensure_dataset(base.simulator, base.seed,
                                   data_dir=preset.training.data.data_dir, name=base.name)
  runs = []
  for setting, training in settings:
    folder = setting.replace("=", "_")
    variant = dataclasses.replace(preset, training=training)
    for seed in range(num_seeds):
      for row in ROWS:
        config = presets.method_config(variant, row)
        config.seed = seed
        config.data.split_seed = execution.REPORT_SPLIT_SEED_OFFSET + seed
        runs.append((setting, execution.Run(row, execution.METHOD, seed,
                                            out_dir / "runs" / folder / row / f"seed{seed}",
                                            config)))
  return runs


def sweep_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """Per setting: both rows' held-out balanced accuracy and identity, and Ours' paired lead.

  Args:
    records: `{"setting", "row", "seed", ACTION_COLUMN, IDENTITY_COLUMN}` of finished runs.

  Returns:
    One dict per setting (in first-seen order): "setting", "folds" (paired), "ours" and
    "no_swap" `(mean, std)` of the action score, "lead" `(mean, std)` of Ours − no-swap over
    the folds both ran, "ahead", "clear" (lead > the larger std of the two rows), and
    "identity_ours", "identity_no_swap" `(mean, std)`.

  Example:
    >>> records = [{"setting": "n=2", "row": row, "seed": seed, ACTION_COLUMN: acc,
    ...             IDENTITY_COLUMN: 20.0}
    ...            for row, seed, acc in [("ours", 0, 50.0), ("ours", 1, 52.0),
    ...                                   ("no_swap", 0, 45.0), ("no_swap", 1, 46.0)]]
    >>> row = sweep_rows(records)[0]
    >>> row["lead"], row["ahead"], row["clear"]
    ((5.5, 0.5), 2, True)
  """
  rows = []
  for setting in dict.fromkeys(r["setting"] for r in records):
    of_setting = [r for r in records if r["setting"] == setting]
    scores = lambda row, column: tables.fold_scores(of_setting, row, column)
    lead = tables.paired_lead(scores(ROWS[0], ACTION_COLUMN), scores(ROWS[1], ACTION_COLUMN))
    if lead is None:
      continue
    identity = tables.paired_lead(scores(ROWS[0], IDENTITY_COLUMN),
                                  scores(ROWS[1], IDENTITY_COLUMN))
    rows.append({
        "setting": setting, "folds": lead["folds"],
        "ours": (lead["reference_mean"], lead["reference_std"]),
        "no_swap": (lead["mean"], lead["std"]), "lead": (lead["lead"], lead["lead_std"]),
        "ahead": lead["ahead"], "clear": lead["clear"],
        "identity_ours": (identity["reference_mean"], identity["reference_std"]),
        "identity_no_swap": (identity["mean"], identity["std"])})
  return rows


def sweep_table(rows: Sequence[Mapping[str, Any]], *, title: str) -> str:
  """`sweep.md`: `sweep_rows` as a markdown table under a heading that says how to read it."""
  cell = lambda pair: f"{pair[0]:.1f} ± {pair[1]:.1f}"
  lines = [[r["setting"], str(r["folds"]), cell(r["ours"]), cell(r["no_swap"]),
            f"{r['lead'][0]:+.1f} ± {r['lead'][1]:.1f}", f"{r['ahead']}/{r['folds']}",
            "yes" if r["clear"] else "no", cell(r["identity_ours"]),
            cell(r["identity_no_swap"])] for r in rows]
  return (f"# Where the swap should matter, {title}\n\n"
          "Multi-animal balanced accuracy on held-out animals (%) of Ours and of no-swap, and "
          "Ours' lead paired by fold (mean ± std of the differences; ahead = folds on which "
          "Ours scores higher; clear = the lead exceeds the seed-to-seed std of both rows); "
          "identity accuracy (%, lower is better) of both.\n\n" +
          tables.markdown_table(
              ["setting", "folds", "Ours", "no swap", "lead", "ahead", "clear",
               "identity, Ours", "identity, no swap"], lines))


def write_outputs(planned: Sequence[tuple[str, execution.Run]], out_dir: pathlib.Path,
                  title: str) -> str:
  """Writes `sweep.csv` and `sweep.md` from the finished runs. Returns the table."""
  records = []
  for setting, run in planned:
    if not run.finished:
      continue
    probes = execution.load_results(run)["probes"]
    record = {"setting": setting, "row": run.row, "seed": run.seed}
    for column, probe, metric in ((ACTION_COLUMN, protocol_lib.ACTION_MULTI_ANIMAL,
                                   "balanced_accuracy"),
                                  (IDENTITY_COLUMN, protocol_lib.IDENTITY, "accuracy")):
      record[column] = probes[probe]["1.0"][metric]["mean"]
    records.append(record)
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, ["setting", "row", "seed", ACTION_COLUMN, IDENTITY_COLUMN],
                          lineterminator="\n")
  writer.writeheader()
  writer.writerows(records)
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / "sweep.csv").write_text(buffer.getvalue())
  text = sweep_table(sweep_rows(records), title=title)
  (out_dir / "sweep.md").write_text(text)
  return text


def define_flags() -> None:
  """The command's flags (defined at run time: the module is imported beside other entry
  points, e.g. by the docstring tests, whose flags share these names)."""
  flags.DEFINE_string("dataset", "locomotion_calibrated",
                      "A dataset of experiments/configs/reproduce.py.")
  flags.DEFINE_enum("preset", "cpu", list(presets.PRESETS),
                    "Preset of experiments/configs/reproduce.py (smoke: tiny data).")
  flags.DEFINE_integer("seeds", 3, "Held-out folds per setting.")
  flags.DEFINE_string("out", None, "Output folder (sweep.md, sweep.csv, runs).")
  flags.DEFINE_list("training_animals", [], "Numbers of training animals, e.g. 2,4,8,15.")
  flags.DEFINE_multi_string("knob", [], "A simulator field and its values, NAME=V1,V2 "
                            "(repeatable).")
  flags.DEFINE_integer("workers", 2, "Runs at once (processes).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag")
  values = flags.FLAGS
  if not values.out:
    raise app.UsageError("--out is required")
  logs.quiet_checkpoint_logs()
  out_dir = pathlib.Path(values.out)
  try:
    if values.dataset not in presets.DATASETS:
      raise execution.SettingsError(f"unknown --dataset {values.dataset!r}; choose one of "
                                    f"{sorted(presets.DATASETS)}")
    counts = [int(count) for count in values.training_animals]
    planned = plan_runs(values.dataset, num_seeds=values.seeds, out_dir=out_dir,
                        preset_name=values.preset, training_animals=counts,
                        knobs=[parse_knob(knob) for knob in values.knob])
  except (execution.SettingsError, ValueError) as error:
    raise SystemExit(f"experiments.sweep: {error}") from error
  progress = tqdm.tqdm(total=len(planned), desc="sweep", unit="run")
  execution.execute_all([run for _, run in planned], workers=values.workers, progress=progress)
  progress.close()
  print(write_outputs(planned, out_dir, presets.DATASET_TITLES.get(values.dataset,
                                                                   values.dataset)))


if __name__ == "__main__":
  define_flags()
  app.run(main)
