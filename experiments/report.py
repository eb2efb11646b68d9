r"""Tables and CSVs of a reproduction: aggregated probe-suite results -> markdown and CSV text.

  python -m experiments.report --runs_csv=results/pose_cpu/runs.csv
  python -m experiments.report --runs_csv=A/runs.csv,B/runs.csv --out=DIR

prints, from reproductions' `runs.csv` files, how far Ours leads every other row on new
animals, fold by fold (`lead_table`; the same section closes `table1.md`). With `--out`, also
writes the tables of all their runs together (`write_tables_from_runs`): runs of one
benchmark made by several invocations (e.g. with different `--only`) into different folders.

Rows are keyed by name ("ours", "simclr", "neural_raw", ...). A row's summary is
`aggregate_runs` over its runs (seeds = held-out folds), so every cell is the
mean ± population std over runs; a row without a finished run shows "–". The paper's numbers
(`experiments.paper_results`) sit in a "paper" column beside ours in the accuracy tables of
a dataset the paper has a benchmark for (`paper=False` leaves the column out).
"""

from __future__ import annotations

import csv
import io
import pathlib
from typing import Any, Mapping, Sequence

from absl import app
from absl import flags
import numpy as np
import pandas as pd

from experiments import paper_results
from experiments.configs import reproduce as presets
from nar.eval import protocol as protocol_lib

# Table rows in the seed's order (Ours last), with their labels.
ROW_LABELS = {
    "random": "Random guess",
    "behaviour_raw": "Behaviour (linear)",
    "behaviour_swapped": "Behaviour (linear), swapped",
    "neural_raw": "Neural (linear) raw",
    "neural_standardised": "Neural (linear), standardised",
    "simclr": "SimCLR",
    "regression_recurrent": "Regression (recurrent)",
    "regression_conv": "Regression (conv)",
    "behavenet": "BehaveNet-style",
    "no_swap": "Multimodal contrastive, no swap",
    "simclr_mmd": "SimCLR + MMD",
    "simclr_grl": "SimCLR + GRL",
    "regression_conv_mmd": "Regression (conv) + MMD",
    "regression_conv_grl": "Regression (conv) + GRL",
    "ours": "Ours",
}
# The behaviour rows are identity references of Table 2 only, as in the seed: raw pose, and
# pose after the swap of every window (how much of the animal the swap leaves in Ours' target).
BEHAVIOUR_ROWS = ("behaviour_raw", "behaviour_swapped")
ACTION_ROWS = tuple(row for row in ROW_LABELS if row not in BEHAVIOUR_ROWS)
IDENTITY_ROWS = tuple(ROW_LABELS)

FRACTIONS = (0.5, 1.0)
PROBE_NAMES = {protocol_lib.ACTION_SINGLE_ANIMAL: "Single-Animal",
               protocol_lib.ACTION_MULTI_ANIMAL: "Multi-Animal",
               protocol_lib.IDENTITY: "Identity"}
_PROBE_COLUMNS = {protocol_lib.ACTION_SINGLE_ANIMAL: "single_animal",
                  protocol_lib.ACTION_MULTI_ANIMAL: "multi_animal",
                  protocol_lib.IDENTITY: "identity"}
# Every score of a run: (probe, label fraction, metric).
SCORES = tuple((probe, fraction, metric) for probe in PROBE_NAMES for fraction in FRACTIONS
               for metric in protocol_lib.METRICS)
MISSING = "–"


def row_label(row: str) -> str:
  """The table label of a row key (ablations keep their key)."""
  return ROW_LABELS.get(row, row)


def score_column(probe: str, fraction: float, metric: str) -> str:
  """CSV column of a score, e.g. `multi_animal_1.0_accuracy`."""
  return f"{_PROBE_COLUMNS[probe]}_{protocol_lib.fraction_key(fraction)}_{metric}"


def score(summary: Mapping[str, Any] | None, probe: str, fraction: float,
          metric: str) -> Mapping[str, Any] | None:
  """`{"mean", "std", "count", ...}` of one score of a summary, or None if absent."""
  if summary is None:
    return None
  entry = summary.get(probe, {}).get(protocol_lib.fraction_key(fraction), {}).get(metric)
  return entry if isinstance(entry, Mapping) and "mean" in entry else None


def format_score(entry: Mapping[str, Any] | None) -> str:
  """"53.2 ± 9.8" over several runs, "53.2" for one, "–" when absent."""
  if entry is None:
    return MISSING
  if entry.get("count", 1) > 1:
    return f"{entry['mean']:.1f} ± {entry['std']:.1f}"
  return f"{entry['mean']:.1f}"


def _paper_cell(row: str, probe: str, fraction: float) -> str:
  value = paper_results.paper_accuracy(row, probe, fraction)
  return MISSING if value is None else f"{value:.1f}"


def chance_levels(summaries: Mapping[str, Mapping[str, Any] | None]) -> dict[str, float] | None:
  """Uniform chance (%) of action and identity, from any finished row."""
  for summary in summaries.values():
    if summary and "chance" in summary:
      return {name: float(value["mean"] if isinstance(value, Mapping) else value)
              for name, value in summary["chance"].items()}
  return None


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """A GitHub markdown table."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


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


def format_table(results: Mapping[str, Any], *, metric: str = "accuracy") -> str:
  """Tables 1 (action) and 2 (identity) of one or more methods' probe-suite results, as text.

  Args:
    results: one method's results (`run_probe_suite` or `aggregate_runs`), shown as "Ours",
      or a mapping from method name to such results (one row each).
    metric: "accuracy" or "balanced_accuracy".

  Returns:
    Two markdown tables in the seed's layout, each under a title: action recognition
    (Single-Animal, then Multi-Animal, per label fraction) and identity recognition (lower
    is better), with a "Random" row of the chance levels.
  """
  if protocol_lib.ACTION_SINGLE_ANIMAL in results or protocol_lib.IDENTITY in results:
    results = {"Ours": results}
  names = [f"{fraction:.1f}" for fraction in FRACTIONS]
  action_probes = (protocol_lib.ACTION_SINGLE_ANIMAL, protocol_lib.ACTION_MULTI_ANIMAL)
  action_rows, identity_rows = [], []
  chance = chance_levels(results)
  if chance is not None:
    action_rows.append(["Random"] + [f"{chance['action']:.1f}"] * (2 * len(FRACTIONS)))
    identity_rows.append(["Random"] + [f"{chance['identity']:.1f}"] * len(FRACTIONS))
  for name, method in results.items():
    action_rows.append([name] + [format_score(score(method, probe, fraction, metric))
                                 for probe in action_probes for fraction in FRACTIONS])
    identity_rows.append([name] + [format_score(score(method, protocol_lib.IDENTITY, fraction,
                                                      metric)) for fraction in FRACTIONS])
  action_header = ["Method"] + [f"{PROBE_NAMES[probe]} {fraction}" for probe in action_probes
                                for fraction in names]
  identity_header = ["Method"] + [f"Identity {fraction}" for fraction in names]
  label = metric.replace("_", " ")
  return (f"Table 1: action recognition, {label} (%)\n\n"
          + markdown_table(action_header, action_rows)
          + f"\nTable 2: identity recognition, {label} (%, lower is better)\n\n"
          + markdown_table(identity_header, identity_rows))


def _runs_cell(summary: Mapping[str, Any] | None, probe: str) -> str:
  entry = score(summary, probe, FRACTIONS[-1], "accuracy")
  return str(entry.get("count", 1)) if entry else "0"


def _results_table(summaries: Mapping[str, Mapping[str, Any] | None], rows: Sequence[str],
                   probes: Sequence[str], metric: str, with_paper: bool) -> str:
  header = ["Method"]
  for probe in probes:
    for fraction in FRACTIONS:
      header.append(f"{PROBE_NAMES[probe]} {fraction:.1f}")
      if with_paper:
        header.append("paper")
  header.append("runs")
  chance = chance_levels(summaries)
  lines = []
  for row in rows:
    cells = [row_label(row)]
    for probe in probes:
      for fraction in FRACTIONS:
        if row == "random":
          level = chance and chance["identity" if probe == protocol_lib.IDENTITY else "action"]
          cells.append(MISSING if level is None else f"{level:.1f}")
        else:
          cells.append(format_score(score(summaries.get(row), probe, fraction, metric)))
        if with_paper:
          cells.append(_paper_cell(row, probe, fraction))
    cells.append(MISSING if row == "random" else _runs_cell(summaries.get(row), probes[0]))
    lines.append(cells)
  return markdown_table(header, lines)


def action_table(summaries: Mapping[str, Mapping[str, Any] | None], *,
                 metric: str = "accuracy", rows: Sequence[str] = ACTION_ROWS,
                 paper: bool = True) -> str:
  """Table 1: action recognition, single-animal and multi-animal, per label fraction.

  Args:
    summaries: row -> aggregated results (None for a row without a finished run).
    metric: "accuracy" (with the paper's numbers beside ours) or "balanced_accuracy".
    rows: the rows, in order.
    paper: print the paper's accuracy beside ours (False for a dataset it has no benchmark
      of, `paper_results.has_benchmark`).
  """
  return _results_table(summaries, rows,
                        (protocol_lib.ACTION_SINGLE_ANIMAL, protocol_lib.ACTION_MULTI_ANIMAL),
                        metric, with_paper=paper and metric == "accuracy")


def identity_table(summaries: Mapping[str, Mapping[str, Any] | None], *,
                   metric: str = "accuracy", rows: Sequence[str] = IDENTITY_ROWS,
                   paper: bool = True) -> str:
  """Table 2: identity recognition over all animals (lower is better), per label fraction.

  Args as `action_table`.
  """
  return _results_table(summaries, rows, (protocol_lib.IDENTITY,), metric,
                        with_paper=paper and metric == "accuracy")


def ablation_table(summaries: Mapping[str, Mapping[str, Any] | None],
                   changes: Mapping[str, str], *, metric: str = "accuracy") -> str:
  """The ablations beside Ours: every score at both label fractions.

  Args:
    summaries: row (Ours first, then each ablation) -> aggregated results or None.
    changes: row -> what it changes from Ours, e.g. "swap.probability = 0.25".
    metric: "accuracy" or "balanced_accuracy".
  """
  header = ["Variant", "change"]
  header += [f"{PROBE_NAMES[p]} {f:.1f}" for p in PROBE_NAMES for f in FRACTIONS] + ["runs"]
  lines = []
  for row, summary in summaries.items():
    lines.append([row_label(row), changes.get(row, "")] +
                 [format_score(score(summary, p, f, metric))
                  for p in PROBE_NAMES for f in FRACTIONS] +
                 [_runs_cell(summary, protocol_lib.ACTION_MULTI_ANIMAL)])
  return markdown_table(header, lines)


def _csv_text(columns: Sequence[str], records: Sequence[Mapping[str, Any]]) -> str:
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, columns, lineterminator="\n")
  writer.writeheader()
  for record in records:
    writer.writerow({k: _csv_value(record.get(k)) for k in columns})
  return buffer.getvalue()


def _csv_value(value: Any) -> Any:
  if value is None:
    return ""
  if isinstance(value, float):
    return f"{value:.4f}"
  return value


# Uniform chance (%) of the run's action and identity probes: the random guess row.
CHANCE_COLUMNS = {"action": "action_chance", "identity": "identity_chance"}
RUN_COLUMNS = (("row", "group", "seed", "held_out_animals", "train_steps", "wall_seconds",
                "evaluation_seconds") + tuple(score_column(*s) for s in SCORES) +
               tuple(CHANCE_COLUMNS.values()))


def run_record(row: str, group: str, seed: int, results: Mapping[str, Any]) -> dict[str, Any]:
  """One run's line of `runs.csv`: what it is, its held-out animals, wall time and scores."""
  suite = results["probes"]
  wall = results.get("wall_seconds", {})
  record = {"row": row, "group": group, "seed": seed,
            "held_out_animals": " ".join(results.get("held_out_animals", [])),
            "train_steps": results.get("train_steps"), "wall_seconds": wall.get("total"),
            "evaluation_seconds": wall.get("evaluation")}
  for probe, fraction, metric in SCORES:
    entry = score(suite, probe, fraction, metric)
    record[score_column(probe, fraction, metric)] = entry["mean"] if entry else None
  for name, column in CHANCE_COLUMNS.items():
    record[column] = suite.get("chance", {}).get(name)
  return record


def runs_csv(records: Sequence[Mapping[str, Any]]) -> str:
  """`runs.csv`: one line per run (see `run_record`)."""
  return _csv_text(RUN_COLUMNS, records)


def summary_csv(summaries: Mapping[str, Mapping[str, Any] | None],
                groups: Mapping[str, str], wall_seconds: Mapping[str, float], *,
                paper: bool = True) -> str:
  """`summary.csv`: per row, mean and std over its runs of every score, and the paper's.

  Args:
    summaries: row -> aggregated results or None.
    groups: row -> "method", "reference" or "ablation".
    wall_seconds: row -> mean wall time of its runs.
    paper: with the paper's accuracy columns (False for a dataset it has no benchmark of).
  """
  columns = ["row", "label", "group", "runs", "wall_seconds_mean"]
  for probe, fraction, metric in SCORES:
    name = score_column(probe, fraction, metric)
    columns += [f"{name}_mean", f"{name}_std"]
    if paper and metric == "accuracy":
      columns.append(f"{name}_paper")
  records = []
  for row, summary in summaries.items():
    record = {"row": row, "label": row_label(row), "group": groups.get(row, ""),
              "runs": _runs_cell(summary, protocol_lib.IDENTITY),
              "wall_seconds_mean": wall_seconds.get(row)}
    for probe, fraction, metric in SCORES:
      name = score_column(probe, fraction, metric)
      entry = score(summary, probe, fraction, metric)
      record[f"{name}_mean"] = entry["mean"] if entry else None
      record[f"{name}_std"] = entry["std"] if entry else None
      if paper and metric == "accuracy":
        record[f"{name}_paper"] = paper_results.paper_accuracy(row, probe, fraction)
    records.append(record)
  return _csv_text(columns, records)


def dataset_tables(summaries: Mapping[str, Mapping[str, Any] | None],
                   records: Sequence[Mapping[str, Any]], *, dataset: str) -> dict[str, str]:
  """`table1.md` (action, with Ours' lead fold by fold) and `table2.md` (identity).

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
          "## Accuracy\n\n" + action_table(summaries, paper=paper) +
          "\n## Balanced accuracy\n\n" +
          action_table(summaries, metric="balanced_accuracy", paper=paper) + "\n" +
          lead_section(records)),
      "table2.md": (
          f"# Table 2: identity recognition (%, lower is better), {title}\n\n" + note +
          "## Accuracy\n\n" + identity_table(summaries, paper=paper) +
          "\n## Balanced accuracy\n\n" +
          identity_table(summaries, metric="balanced_accuracy", paper=paper)),
  }


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
    for probe, fraction, metric in SCORES:
      column = score_column(probe, fraction, metric)
      values = mine[column].dropna().tolist() if column in mine else []
      if values:
        summary.setdefault(probe, {}).setdefault(protocol_lib.fraction_key(fraction), {})[
            metric] = {**protocol_lib.summarise(values), "runs": values}
    chance = {name: mine[column].dropna() for name, column in CHANCE_COLUMNS.items()
              if column in mine}
    if len(chance) == len(CHANCE_COLUMNS) and all(len(v) for v in chance.values()):
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
  """Writes `table1.md`, `table2.md`, `runs.csv` and `summary.csv` of some runs into `out_dir`.
  Returns the tables.

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
  rows = [row for row in ROW_LABELS if row in groups or row == "random"]
  rows += [row for row in groups if row not in ROW_LABELS]
  summaries = summaries_from_records(records, rows)
  tables = dataset_tables(summaries, records, dataset=dataset)
  frame = runs_frame(records)
  wall = {row: float(seconds) for row, seconds in
          frame.groupby("row", sort=False)["wall_seconds"].mean().dropna().items()}
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  for name, text in tables.items():
    (out_dir / name).write_text(text)
  (out_dir / "runs.csv").write_text(runs_csv(records))
  (out_dir / "summary.csv").write_text(summary_csv(
      summaries, groups, wall, paper=paper_results.has_benchmark(dataset)))
  return tables


# ----------------------------------------------------------------------------------------------
# Ours against every other method on new animals, fold by fold.
# ----------------------------------------------------------------------------------------------
def _fold_scores(records: Sequence[Mapping[str, Any]], row: str, column: str
                 ) -> dict[int, float]:
  """Seed -> one row's score in `column`, over its runs that have it."""
  scores = {}
  for record in records:
    value = record.get(column)
    if record["row"] == row and value not in (None, ""):
      scores[int(record["seed"])] = float(value)
  return scores


def multi_animal_leads(records: Sequence[Mapping[str, Any]], *, reference: str = presets.OURS,
                       metric: str = "accuracy") -> dict[str, dict[float, dict[str, Any]]]:
  """How far `reference` leads every other method on new animals, per label fraction.

  A lead compares the two rows on the folds (seeds) both finished. It is *clear* when the
  difference of their means exceeds the seed-to-seed std of both rows, the larger of the two:
  a lead smaller than how much either row moves from fold to fold could be the folds' doing.

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
  others = [row for row in ACTION_ROWS if row not in (reference, "random")]
  for fraction in FRACTIONS:
    column = score_column(protocol_lib.ACTION_MULTI_ANIMAL, fraction, metric)
    ours = _fold_scores(records, reference, column)
    for row in others:
      theirs = _fold_scores(records, row, column)
      folds = sorted(set(ours) & set(theirs))
      if not folds:
        continue
      ours_scores = np.array([ours[s] for s in folds])
      their_scores = np.array([theirs[s] for s in folds])
      differences = ours_scores - their_scores
      lead = float(differences.mean())
      leads.setdefault(row, {})[fraction] = {
          "lead": lead, "lead_std": float(differences.std()),
          "ahead": int((differences > 0).sum()), "folds": len(folds),
          "reference_mean": float(ours_scores.mean()),
          "reference_std": float(ours_scores.std()),
          "mean": float(their_scores.mean()), "std": float(their_scores.std()),
          "clear": lead > max(float(ours_scores.std()), float(their_scores.std()))}
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
    return f"No finished run of {row_label(reference)} shares a fold with another method.\n"
  header = ["Method"]
  for fraction in FRACTIONS:
    header += [f"lead {fraction:.1f}", f"ahead {fraction:.1f}", f"clear {fraction:.1f}"]
  lines = []
  for row, by_fraction in leads.items():
    cells = [row_label(row)]
    for fraction in FRACTIONS:
      entry = by_fraction.get(fraction)
      cells += ([MISSING] * 3 if entry is None else
                [f"{entry['lead']:+.1f} ± {entry['lead_std']:.1f}",
                 f"{entry['ahead']}/{entry['folds']}", "yes" if entry["clear"] else "no"])
    lines.append(cells)
  verdicts = []
  for fraction in FRACTIONS:
    entries = {row: f[fraction] for row, f in leads.items() if fraction in f}
    if not entries:
      continue
    best = min(entries, key=lambda row: entries[row]["lead"])
    entry = entries[best]
    spread = max(entry["reference_std"], entry["std"])
    verdicts.append(
        f"- Label fraction {fraction:.1f}: the best other row is {row_label(best)} "
        f"({entry['mean']:.1f} ± {entry['std']:.1f} %), {row_label(reference)} "
        f"{entry['reference_mean']:.1f} ± {entry['reference_std']:.1f} %: a lead of "
        f"{entry['lead']:+.1f} points against a seed-to-seed std of {spread:.1f}, "
        f"{'more' if entry['clear'] else 'not more'} than the std "
        f"(ahead on {entry['ahead']} of {entry['folds']} folds).")
  return markdown_table(header, lines) + "\n" + "\n".join(verdicts) + "\n"


def lead_section(records: Sequence[Mapping[str, Any]], *, reference: str = presets.OURS,
                 metric: str = "accuracy") -> str:
  """`lead_table` under a heading that says how to read it (the end of `table1.md`)."""
  name = row_label(reference)
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


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # Read before anything is written: `--out` may be the folder of one of the files.
  records = merge_runs_csv(_RUNS_CSV.value)
  if _OUT.value:
    write_tables_from_runs(records, _OUT.value, dataset=_DATASET.value)
    print(f"wrote table1.md, table2.md, runs.csv and summary.csv to {_OUT.value}")
  print("\n".join(lead_section(records, metric=metric) for metric in protocol_lib.METRICS))


if __name__ == "__main__":
  # Defined here, not on import: `experiments.reproduce` imports this module with flags of its own.
  _RUNS_CSV = flags.DEFINE_list(
      "runs_csv", None, "Reproductions' runs.csv files (comma-separated); a run (row, seed) "
      "may be in one of them only.", required=True)
  _OUT = flags.DEFINE_string(
      "out", None, "Also write table1.md, table2.md, runs.csv and summary.csv of all their "
      "runs here.")
  _DATASET = flags.DEFINE_string(
      "dataset", "pose", "The runs' dataset (a name of DATASETS in "
      "experiments/configs/reproduce.py): the tables' title and paper column.")
  app.run(main)
