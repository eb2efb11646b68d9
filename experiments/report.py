r"""The reporting path of reproductions: runs -> summaries -> tables, CSVs and leads by fold.

  python -m experiments.report --runs_csv=results/pose_cpu/runs.csv
  python -m experiments.report --runs_csv=A/runs.csv,B/runs.csv --out=DIR
  python -m experiments.report --eval_json_dir=DIR --reference=no_swap

prints, from reproductions' `runs.csv` files, how far Ours leads every other row on new
animals, fold by fold (`lead_table`; the same section closes `table1.md`). With `--out`, also
writes the tables of all their runs together (`write_tables_from_runs`): runs of one
benchmark made by several invocations (e.g. with different `--only`) into different folders.

Runs are summarised here (`aggregate_runs` over runs' results, or `summaries_from_records`
over `runs.csv` lines, grouped with pandas); `experiments.tables` writes their text.
Rows are keyed by name ("ours", "simclr", "neural_raw", ...). A row's summary is
`aggregate_runs` over its runs (seeds = held-out folds), so every cell is the
mean ± population std over runs; a row without a finished run shows "–". The paper's numbers
(`experiments.paper_results`) sit in a "paper" column beside ours in the accuracy tables of
a dataset the paper has a benchmark for (`paper=False` leaves the column out).
"""

from __future__ import annotations

import csv
import json
import pathlib
import re
from typing import Any, Mapping, Sequence

from absl import app
from absl import flags
import numpy as np
import pandas as pd

from experiments import execution
from experiments import objectives_report
from experiments import paper_results
from experiments import tables
from experiments.configs import reproduce as presets
from nar.eval import protocol as protocol_lib


def aggregate_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """Mean ± std over runs (seeds or held-out folds) of probe-suite results.

  Every score summary (`{"mean", "std", ...}`) becomes `{"mean", "std", "count", "runs"}`:
  the mean and population std over the runs' means, and each run's mean (a run missing the
  score is left out). Other numbers are averaged; other values are kept when every run agrees
  and listed per run otherwise.

  Args:
    runs: results of `run_probe_suite` (or of several `aggregate_runs`, treated as runs).

  Returns:
    One results dict of the same layout.
  """
  if not runs:
    raise ValueError("aggregate_runs needs at least one run")

  def merge(nodes: list[Any]) -> Any:
    present = [n for n in nodes if n is not None]
    if not present:
      return None
    if any(protocol_lib.is_summary(n) for n in present):
      summaries = [n for n in present if protocol_lib.is_summary(n)]
      means = [float(n["mean"]) for n in summaries]
      details = merge([{k: v for k, v in n.items() if k not in ("mean", "std", "count", "runs")}
                       for n in summaries])
      return {**details, **protocol_lib.summarise(means), "runs": means}
    if present and all(isinstance(n, Mapping) for n in present):
      keys = list(dict.fromkeys(k for n in present for k in n))
      return {k: merge([n.get(k) for n in present]) for k in keys}
    if present and all(isinstance(n, (int, float)) and not isinstance(n, bool)
                       for n in present):
      return float(np.mean(present))
    if all(n == present[0] for n in present):
      return present[0]
    return {"per_run": present}

  return merge(list(runs))


def run_record(row: str, group: str, seed: int, results: Mapping[str, Any]) -> dict[str, Any]:
  """One run's line of `runs.csv`: what it is, its held-out animals, wall time and scores."""
  suite = results["probes"]
  wall = results.get("wall_seconds", {})
  record = {"row": row, "group": group, "seed": seed,
            "held_out_animals": " ".join(results.get("held_out_animals", [])),
            "train_steps": results.get("train_steps"), "wall_seconds": wall.get("total"),
            "evaluation_seconds": wall.get("evaluation")}
  for probe, fraction, metric in tables.SCORES + tables.KNN_SCORES:
    entry = tables.score(suite, probe, fraction, metric)
    record[tables.score_column(probe, fraction, metric)] = entry["mean"] if entry else None
  for name, column in tables.CHANCE_COLUMNS.items():
    record[column] = suite.get("chance", {}).get(name)
  r2 = tables.behaviour_r2(suite)
  record[tables.BEHAVIOUR_R2_COLUMN] = r2["mean"] if r2 else None
  return record


def dataset_tables(summaries: Mapping[str, Mapping[str, Any] | None],
                   records: Sequence[Mapping[str, Any]], *, dataset: str) -> dict[str, str]:
  """`table1.md` (action, with Ours' lead fold by fold), `table2.md` (identity) and
  `decoders.md` (linear and kNN action probes and the behaviour decoder on new animals).

  Args:
    summaries: row -> aggregated results or None (`summaries_from_records`, or
      `aggregate_runs` over each row's runs).
    records: the runs' `run_record`s, for the lead section.
    dataset: the dataset's name (`presets.DATASETS`): the tables' title, and whether the
      paper's numbers sit beside ours (`paper_results.has_benchmark`).
  """
  paper = paper_results.has_benchmark(dataset)
  note = "Mean ± std over runs (seed k holds out its own 2 animals; population std); "
  if paper:
    note += ("'paper': the seed's MC2P numbers (accuracy only), " + paper_results.SOURCE +
             "; '–': not reported / not run.\n\n")
  else:
    note += ("'–': not run.\n\nThe paper has no benchmark of this dataset, so there are no "
             "paper numbers to compare with.\n\n")
  title = presets.DATASET_TITLES.get(dataset, dataset)
  return {
      "table1.md": (
          f"# Table 1: action recognition (%), {title}\n\n" + note +
          "## Accuracy\n\n" + tables.action_table(summaries, paper=paper) +
          "\n## Balanced accuracy\n\n" +
          tables.action_table(summaries, metric="balanced_accuracy", paper=paper) + "\n" +
          lead_section(records)),
      "table2.md": (
          f"# Table 2: identity recognition (%, lower is better), {title}\n\n" + note +
          "## Accuracy\n\n" + tables.identity_table(summaries, paper=paper) +
          "\n## Balanced accuracy\n\n" +
          tables.identity_table(summaries, metric="balanced_accuracy", paper=paper)),
      "decoders.md": decoders_text(summaries, title=title),
  }


# The decoders table's rows: the methods and references, without the ablations.
DECODER_ROWS = tuple(row for row in tables.ROW_LABELS if row != "random")


def decoders_text(summaries: Mapping[str, Mapping[str, Any] | None], *, title: str) -> str:
  """`decoders.md`: `tables.decoders_table` at label fraction 1.0, accuracy and balanced
  accuracy, under a heading that says what each column decodes."""
  fraction = tables.FRACTIONS[-1]
  note = (f"Mean ± std over runs (population std), label fraction {fraction:.1f}. "
          "Multi-Animal linear / kNN: action probes (logistic regression / k-nearest "
          "neighbours on standardised features) trained on the training animals, tested on "
          "the held-out animals (%). Behaviour R²: ridge regression from the features to the "
          "normalised behaviour of each window's centre frame, trained on the training "
          "animals and scored on the held-out animals (R² averaged over the behaviour "
          "dimensions; 1 is perfect, 0 predicts no better than the mean). '–': not run, or a "
          "run made before the score was recorded.\n\n")
  return (f"# Decoders on new animals, {title}\n\n" + note + "## Accuracy\n\n" +
          tables.decoders_table(summaries, fraction=fraction, rows=DECODER_ROWS) +
          "\n## Balanced accuracy\n\n" +
          tables.decoders_table(summaries, metric="balanced_accuracy", fraction=fraction,
                                rows=DECODER_ROWS))


# ----------------------------------------------------------------------------------------------
# Tables from runs.csv files alone: runs made by several invocations, in several folders.
# ----------------------------------------------------------------------------------------------
def runs_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
  """`runs.csv` records as a frame: one row per run, scores as floats (NaN where absent)."""
  frame = pd.DataFrame.from_records(list(records))
  numeric = [c for c in frame.columns
             if c not in ("row", "group", "held_out_animals", "seed")]
  frame[numeric] = frame[numeric].replace("", np.nan).apply(pd.to_numeric, errors="coerce")
  return frame


def summaries_from_records(records: Sequence[Mapping[str, Any]], rows: Sequence[str]
                           ) -> dict[str, dict[str, Any] | None]:
  """Row -> the summary of its runs, as `aggregate_runs` makes it (every score's mean,
  population std and count over runs; the chance levels), from `runs.csv` records.

  The scores are those `runs.csv` keeps (4 decimals), so a cell may differ from the table of
  the runs' own results in the last of those decimals. A row without a record maps to None.
  """
  frame = runs_frame(records)
  by_row = dict(tuple(frame.groupby("row", sort=False))) if len(frame) else {}
  summaries: dict[str, dict[str, Any] | None] = {}
  for row in rows:
    if row not in by_row:
      summaries[row] = None
      continue
    mine, summary = by_row[row], {}
    for probe, fraction, metric in tables.SCORES + tables.KNN_SCORES:
      column = tables.score_column(probe, fraction, metric)
      values = mine[column].dropna().tolist() if column in mine else []
      if values:
        summary.setdefault(probe, {}).setdefault(protocol_lib.fraction_key(fraction), {})[
            metric] = {**protocol_lib.summarise(values), "runs": values}
    column = tables.BEHAVIOUR_R2_COLUMN
    values = mine[column].dropna().tolist() if column in mine else []
    if values:
      summary[protocol_lib.BEHAVIOUR_DECODING] = {
          "r2": {**protocol_lib.summarise(values), "runs": values}}
    chance = {name: mine[column].dropna() for name, column in tables.CHANCE_COLUMNS.items()
              if column in mine}
    if len(chance) == len(tables.CHANCE_COLUMNS) and all(len(v) for v in chance.values()):
      summary["chance"] = {name: float(np.mean(v)) for name, v in chance.items()}
    summaries[row] = summary
  return summaries


def merge_runs_csv(paths: Sequence[str | pathlib.Path]) -> list[dict[str, Any]]:
  """The records of several `runs.csv` files, in order.

  Raises:
    ValueError: a run (row and seed) is in two of them: which one to keep is not for this
      function to guess.
  """
  records, origin = [], {}
  for path in paths:
    for record in read_runs_csv(path):
      run = (record["row"], int(record["seed"]))
      if run in origin:
        raise ValueError(f"run {run[0]} seed {run[1]} is in both {origin[run]} and {path}; "
                         "leave it out of one of them")
      origin[run] = path
      records.append(record)
  return records


def write_tables_from_runs(records: Sequence[Mapping[str, Any]], out_dir: str | pathlib.Path,
                           *, dataset: str = "pose") -> dict[str, str]:
  """Writes `table1.md`, `table2.md`, `decoders.md`, `objectives.md`, `runs.csv` and
  `summary.csv` of some runs into `out_dir`. Returns the tables.

  Args:
    records: `runs.csv` records, e.g. `merge_runs_csv` of the files of invocations with
      different `--only` into different folders.
    out_dir: the output folder (it may hold one of those files: the records are already read).
    dataset: as `dataset_tables`.

  Rows keep the tables' order, then any ablation in the order first met. A row's chance level
  comes from the records that carry it (`runs.csv` files written before it was recorded show
  the random guess as '–' unless another record carries it).
  """
  groups = {r["row"]: r["group"] for r in records}
  rows = [row for row in tables.ROW_LABELS if row in groups or row == "random"]
  rows += [row for row in groups if row not in tables.ROW_LABELS]
  summaries = summaries_from_records(records, rows)
  texts = dataset_tables(summaries, records, dataset=dataset)
  frame = runs_frame(records)
  wall = {row: float(seconds) for row, seconds in
          frame.groupby("row", sort=False)["wall_seconds"].mean().dropna().items()}
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  texts["objectives.md"] = objectives_report.objective_table(
      records, objectives_report.objective_variants(groups),
      title=presets.DATASET_TITLES.get(dataset, dataset))
  for name, text in texts.items():
    (out_dir / name).write_text(text)
  (out_dir / "runs.csv").write_text(tables.runs_csv(records))
  (out_dir / "summary.csv").write_text(tables.summary_csv(
      summaries, groups, wall, paper=paper_results.has_benchmark(dataset)))
  return texts


# ----------------------------------------------------------------------------------------------
# Ours against every other method on new animals, fold by fold.
# ----------------------------------------------------------------------------------------------
def multi_animal_leads(records: Sequence[Mapping[str, Any]], *, reference: str = presets.OURS,
                       metric: str = "accuracy") -> dict[str, dict[float, dict[str, Any]]]:
  """How far `reference` leads every other method on new animals, per label fraction.

  A lead compares the two rows on the folds (seeds) both finished (`tables.paired_lead`, which
  also says when it is *clear*).

  Args:
    records: `run_record`s (runs.csv lines); ablations and rows without a multi-animal score
      are left out, as is the random guess (a constant, not a run).
    reference: the row whose lead is measured.
    metric: "accuracy" or "balanced_accuracy".

  Returns:
    row -> label fraction -> {"lead": mean difference, "lead_std": its std over folds,
    "ahead": folds on which `reference` scores higher, "folds", "reference_mean",
    "reference_std", "mean", "std" (of the row), "clear": bool}, for every row of
    `ACTION_ROWS` with a fold in common with `reference`.
  """
  leads: dict[str, dict[float, dict[str, Any]]] = {}
  others = [row for row in tables.ACTION_ROWS if row not in (reference, "random")]
  for fraction in tables.FRACTIONS:
    column = tables.score_column(protocol_lib.ACTION_MULTI_ANIMAL, fraction, metric)
    ours = tables.fold_scores(records, reference, column)
    for row in others:
      lead = tables.paired_lead(ours, tables.fold_scores(records, row, column))
      if lead is not None:
        leads.setdefault(row, {})[fraction] = lead
  return leads


def lead_table(records: Sequence[Mapping[str, Any]], *, reference: str = presets.OURS,
               metric: str = "accuracy") -> str:
  """Markdown: `multi_animal_leads` as a table, then the verdict against the best other row.

  Each lead cell is the mean ± std over folds of (reference − row), in points; "ahead" counts
  the folds on which the reference scores higher; "clear" is `multi_animal_leads`' test.
  Returns an explanation that there is nothing to compare when the reference has no run.
  """
  leads = multi_animal_leads(records, reference=reference, metric=metric)
  if not leads:
    return f"No finished run of {tables.row_label(reference)} shares a fold with another method.\n"
  header = ["Method"]
  for fraction in tables.FRACTIONS:
    header += [f"lead {fraction:.1f}", f"ahead {fraction:.1f}", f"clear {fraction:.1f}"]
  lines = []
  for row, by_fraction in leads.items():
    cells = [tables.row_label(row)]
    for fraction in tables.FRACTIONS:
      entry = by_fraction.get(fraction)
      cells += ([tables.MISSING] * 3 if entry is None else
                [f"{entry['lead']:+.1f} ± {entry['lead_std']:.1f}",
                 f"{entry['ahead']}/{entry['folds']}", "yes" if entry["clear"] else "no"])
    lines.append(cells)
  verdicts = []
  for fraction in tables.FRACTIONS:
    entries = {row: f[fraction] for row, f in leads.items() if fraction in f}
    if not entries:
      continue
    best = min(entries, key=lambda row: entries[row]["lead"])
    entry = entries[best]
    spread = max(entry["reference_std"], entry["std"])
    verdicts.append(
        f"- Label fraction {fraction:.1f}: the best other row is {tables.row_label(best)} "
        f"({entry['mean']:.1f} ± {entry['std']:.1f} %), {tables.row_label(reference)} "
        f"{entry['reference_mean']:.1f} ± {entry['reference_std']:.1f} %: a lead of "
        f"{entry['lead']:+.1f} points against a seed-to-seed std of {spread:.1f}, "
        f"{'more' if entry['clear'] else 'not more'} than the std "
        f"(ahead on {entry['ahead']} of {entry['folds']} folds).")
  return tables.markdown_table(header, lines) + "\n" + "\n".join(verdicts) + "\n"


def lead_section(records: Sequence[Mapping[str, Any]], *, reference: str = presets.OURS,
                 metric: str = "accuracy") -> str:
  """`lead_table` under a heading that says how to read it (the end of `table1.md`)."""
  name = tables.row_label(reference)
  return (f"## {name} against every other row on new animals ({metric.replace('_', ' ')})"
          f"\n\nMulti-animal {metric.replace('_', ' ')}, fold by fold: lead = {name} minus "
          "the row, in points, mean ± std over the folds both finished; ahead = folds on which "
          f"{name} scores higher; clear = the lead exceeds the seed-to-seed std of both rows."
          "\n\n" + lead_table(records, reference=reference, metric=metric))


def read_runs_csv(path: str | pathlib.Path) -> list[dict[str, Any]]:
  """The records of a `runs.csv` (`runs_csv`), scores as text ("" where absent)."""
  with pathlib.Path(path).open(newline="") as f:
    records = list(csv.DictReader(f))
  if records and not {"row", "seed"} <= set(records[0]):
    raise ValueError(f"{path} is not a reproduction's runs.csv: it has no row and seed columns")
  return records


# ----------------------------------------------------------------------------------------------
# A reproduction's folder: its tables, CSVs and README from its runs.
# ----------------------------------------------------------------------------------------------
def _summaries(runs: Sequence[execution.Run], rows: Sequence[str]
               ) -> dict[str, dict[str, Any] | None]:
  """Row -> `aggregate_runs` over its finished runs (None without any)."""
  summaries = {}
  for row in rows:
    suites = [execution.load_results(r)["probes"] for r in runs if r.row == row and r.finished]
    summaries[row] = aggregate_runs(suites) if suites else None
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


def write_tables(runs: Sequence[execution.Run], preset: presets.Preset, out_dir: pathlib.Path,
                 ablation_seeds: int) -> dict[str, str]:
  """Writes table1.md, table2.md, decoders.md, ablation.md, objectives.md, runs.csv and
  summary.csv. Returns the tables."""
  summaries = _summaries(runs, tuple(tables.ROW_LABELS) + tuple(preset.ablations))
  finished = [r for r in runs if r.finished]
  records = [run_record(r.row, r.group, r.seed, execution.load_results(r)) for r in finished]
  texts = dataset_tables(summaries, records, dataset=preset.dataset)
  title = presets.DATASET_TITLES.get(preset.dataset, preset.dataset)
  # Ours over the ablations' seeds only, so that every line compares like with like.
  ours_runs = [r for r in runs if r.row == presets.OURS and r.seed < ablation_seeds]
  ablation_summaries = {presets.OURS: _summaries(ours_runs, [presets.OURS])[presets.OURS]}
  ablation_summaries.update({a: summaries[a] for a in preset.ablations})
  changes = {presets.OURS: _ours_settings(preset)}
  changes.update({a: _change_text(o) for a, o in preset.ablations.items()})
  texts["ablation.md"] = (
      f"# Ablations of Ours (%; seeds 0-{ablation_seeds - 1}; identity: lower is better), "
      f"{title}\n\n"
      "## Accuracy\n\n" + tables.ablation_table(ablation_summaries, changes) +
      "\n## Balanced accuracy\n\n" +
      tables.ablation_table(ablation_summaries, changes, metric="balanced_accuracy"))
  texts["objectives.md"] = objectives_report.objective_table(records, objectives_report.objective_variants(preset.ablations),
                                           title=title)
  for name, text in texts.items():
    (out_dir / name).write_text(text)
  (out_dir / "runs.csv").write_text(tables.runs_csv(records))
  groups = {r.row: r.group for r in runs}
  wall = {row: float(np.mean([_wall_seconds(r) for r in finished if r.row == row]))
          for row in groups if any(r.row == row for r in finished)}
  (out_dir / "summary.csv").write_text(tables.summary_csv(
      {row: summaries[row] for row in summaries if row in groups or row == "random"},
      groups, wall, paper=paper_results.has_benchmark(preset.dataset)))
  return texts


def _wall_seconds(run: execution.Run) -> float:
  return float(execution.load_results(run).get("wall_seconds", {}).get("total", float("nan")))


def format_minutes(seconds: float) -> str:
  return f"{seconds / 60:.1f} min"


def write_readme(runs: Sequence[execution.Run], preset: presets.Preset, out_dir: pathlib.Path, *,
                 command: str, dataset: str, invocation_seconds: float,
                 texts: Mapping[str, str], figures: Sequence[str], workers: int = 1) -> None:
  """`README.md` of the output folder: settings, wall times, tables and figures."""
  finished = [r for r in runs if r.finished]
  seconds = {group: sum(_wall_seconds(r) for r in finished if r.group == group)
             for group in (execution.REFERENCE, execution.METHOD, execution.ABLATION)}
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
      f"- seeds: {sorted({r.seed for r in runs if r.group != execution.ABLATION})}; "
      + ("seed k holds out the animals of fold k of --folds"
         if any(r.config.data.get("held_out_animals") for r in runs) else
         f"seed k holds out its own animals (`data.split_seed = "
         f"{execution.REPORT_SPLIT_SEED_OFFSET} + k`)"),
      f"- runs finished: {len(finished)} of {len(runs)}",
      f"- wall time, sum over finished runs: {format_minutes(sum(seconds.values()))} "
      f"(methods {format_minutes(seconds[execution.METHOD])}, "
      f"ablations {format_minutes(seconds[execution.ABLATION])}, "
      f"references {format_minutes(seconds[execution.REFERENCE])}); this invocation: "
      f"{format_minutes(invocation_seconds)}",
      f"- runs at once in this invocation: {workers}" + (
          " (each run's wall time includes the other runs' share of the machine, so their "
          "sum exceeds the invocation's)" if workers > 1 else ""),
      "", "Wall time of each run (its last invocation; a resumed run counts from the resume):",
      "", tables.markdown_table(
          ["run", "held-out animals", "wall time"],
          [[r.name, " ".join(execution.load_results(r).get("held_out_animals", [])),
            f"{_wall_seconds(r):.0f} s"] for r in finished]),
  ]
  for name in ("calibration.md", "table1.md", "table2.md", "decoders.md", "objectives.md",
               "ablation.md"):
    if name in texts:
      lines += [texts[name].replace("# ", "## ", 1)]
  if figures:
    lines += ["## Figures", ""] + [f"![{name}](figures/{name})" for name in figures]
  (out_dir / "README.md").write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------
# A folder of runs' eval.json files, paired by fold and seed.
# ----------------------------------------------------------------------------------------------
EVAL_JSON_NAME = re.compile(r"(\w+?)_fold(\d+)_seed(\d+)\.eval\.json")
EVAL_JSON_COLUMNS = {"Single 1.0": (protocol_lib.ACTION_SINGLE_ANIMAL, 1.0),
                     "Multi 0.5": (protocol_lib.ACTION_MULTI_ANIMAL, 0.5),
                     "Multi 1.0": (protocol_lib.ACTION_MULTI_ANIMAL, 1.0),
                     "Identity 1.0 ↓": (protocol_lib.IDENTITY, 1.0)}


def eval_json_table(folder: str | pathlib.Path, reference: str) -> str:
  """Markdown: the runs `<row>_fold<f>_seed<k>.eval.json` of a folder, row by row.

  Each row's accuracy (mean ± population std over its runs) and its multi-animal lead over
  `reference` at label fractions 0.5 / 1.0, paired by (fold, seed): the mean ± std of the
  differences and on how many pairs the row is ahead.
  """
  records = []
  for path in sorted(pathlib.Path(folder).glob("*.eval.json")):
    match = EVAL_JSON_NAME.fullmatch(path.name)
    if match is not None:
      probes = json.loads(path.read_text())["probes"]
      records.append({"row": match[1], "fold": int(match[2]), "seed": int(match[3]), **{
          name: probes[probe][protocol_lib.fraction_key(fraction)]["accuracy"]["mean"]
          for name, (probe, fraction) in EVAL_JSON_COLUMNS.items()}})
  if not records:
    raise ValueError(f"{folder} holds no <row>_fold<f>_seed<k>.eval.json files")
  frame = pd.DataFrame.from_records(records)
  multi = ["Multi 0.5", "Multi 1.0"]
  paired = frame.merge(frame[frame.row == reference], on=["fold", "seed"], suffixes=("", "_ref"))
  for name in multi:
    paired[name] = paired[name] - paired[f"{name}_ref"]
  lines = []
  for row, runs in frame.groupby("row", sort=True):
    cells = [tables.row_label(row), str(len(runs))] + [
        tables.format_score({**protocol_lib.summarise(runs[name].tolist())})
        for name in EVAL_JSON_COLUMNS]
    leads = paired[paired.row == row]
    if row == reference or leads.empty:
      cells.append(tables.MISSING)
    else:
      cells.append(" / ".join(f"{leads[n].mean():+.1f} ± {leads[n].std(ddof=0):.1f}"
                              for n in multi) + f" (ahead in "
                   f"{' / '.join(str(int((leads[n] > 0).sum())) for n in multi)} of {len(leads)})")
    lines.append(cells)
  header = (["Method", "runs"] + list(EVAL_JSON_COLUMNS) +
            [f"Lead over {tables.row_label(reference)}, 0.5 / 1.0"])
  return tables.markdown_table(header, lines)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _EVAL_JSON_DIR.value:
    print(eval_json_table(_EVAL_JSON_DIR.value, _REFERENCE.value))
    return
  if not _RUNS_CSV.value:
    raise app.UsageError("give --runs_csv=A/runs.csv[,B/runs.csv] or --eval_json_dir=DIR")
  # Read before anything is written: `--out` may be the folder of one of the files.
  records = merge_runs_csv(_RUNS_CSV.value)
  if _OUT.value:
    write_tables_from_runs(records, _OUT.value, dataset=_DATASET.value)
    print(f"wrote table1.md, table2.md, decoders.md, runs.csv and summary.csv to {_OUT.value}")
  print("\n".join(lead_section(records, metric=metric) for metric in protocol_lib.METRICS))


if __name__ == "__main__":
  # Defined here, not on import: `experiments.reproduce` imports this module with flags of its own.
  _RUNS_CSV = flags.DEFINE_list(
      "runs_csv", None, "Reproductions' runs.csv files (comma-separated); a run (row, seed) "
      "may be in one of them only.")
  _OUT = flags.DEFINE_string(
      "out", None, "Also write table1.md, table2.md, decoders.md, runs.csv and summary.csv of "
      "all their runs here.")
  _DATASET = flags.DEFINE_string(
      "dataset", "pose", "The runs' dataset (a name of DATASETS in "
      "experiments/configs/reproduce.py): the tables' title and paper column.")
  _EVAL_JSON_DIR = flags.DEFINE_string(
      "eval_json_dir", None, "Instead: print the table of a folder of runs' "
      "<row>_fold<f>_seed<k>.eval.json files, with each row's lead over --reference.")
  _REFERENCE = flags.DEFINE_string("reference", "no_swap", "The row --eval_json_dir leads "
                                   "are measured against.")
  app.run(main)
