"""The text of results: row labels, score cells, the markdown tables in the seed's layout
(Table 1 action, Table 2 identity, the ablations), the decoders table (linear and kNN action
probes and the behaviour decoder on new animals) and the CSVs, from summaries of runs.

A summary maps probe -> label fraction -> metric -> `{"mean", "std", "count", ...}`, as
`experiments.report.aggregate_runs` and `summaries_from_records` make it.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Mapping, Sequence

import numpy as np

from experiments import paper_results
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


MISSING = "–"


def row_label(row: str) -> str:
  """The table label of a row key (ablations keep their key)."""
  return ROW_LABELS.get(row, row)


def score(summary: Mapping[str, Any] | None, probe: str, fraction: float,
          metric: str) -> Mapping[str, Any] | None:
  """`{"mean", "std", "count", ...}` of one score of a summary, or None if absent."""
  if summary is None:
    return None
  entry = summary.get(probe, {}).get(protocol_lib.fraction_key(fraction), {}).get(metric)
  return entry if isinstance(entry, Mapping) and "mean" in entry else None


def format_score(entry: Mapping[str, Any] | None, digits: int = 1) -> str:
  """"53.2 ± 9.8" over several runs, "53.2" for one, "–" when absent (`digits` decimals)."""
  if entry is None:
    return MISSING
  if entry.get("count", 1) > 1:
    return f"{entry['mean']:.{digits}f} ± {entry['std']:.{digits}f}"
  return f"{entry['mean']:.{digits}f}"


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


def behaviour_r2(summary: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
  """`{"mean", "std", "count", ...}` of the behaviour decoder's R² on new animals, or None."""
  if summary is None:
    return None
  entry = summary.get(protocol_lib.BEHAVIOUR_DECODING, {}).get("r2")
  return entry if protocol_lib.is_summary(entry) else None


DECODER_COLUMNS = ("Multi-Animal linear", "Multi-Animal kNN", "Behaviour R² (new animals)")


def decoders_table(summaries: Mapping[str, Mapping[str, Any] | None], *,
                   metric: str = "accuracy", fraction: float = 1.0,
                   rows: Sequence[str] | None = None) -> str:
  """The decoders on new animals: linear and kNN action probes, and behaviour regression.

  Args:
    summaries: row -> aggregated results (None for a row without a finished run).
    metric: the action probes' metric, "accuracy" or "balanced_accuracy" (%).
    fraction: the action probes' label fraction.
    rows: the rows, in order; default: those of `ROW_LABELS` in `summaries` but the random
      guess, then the others (ablations) in the order of `summaries`.

  Returns:
    A markdown table: per row, the multi-animal action score of the linear and of the kNN
    probe, the behaviour decoder's R² (mean over behaviour dimensions, 2 decimals) and the
    runs; "–" where a score is absent (e.g. runs made before the kNN probe and the decoder).

  Example:
    >>> ours = {"action_multi_animal": {"1.0": {"accuracy": {"mean": 61.0, "std": 2.0,
    ...                                                       "count": 3}}},
    ...         "behaviour_decoding": {"r2": {"mean": 0.42, "std": 0.05, "count": 3}}}
    >>> print(decoders_table({"ours": ours, "simclr": None}), end="")
    | Method | Multi-Animal linear | Multi-Animal kNN | Behaviour R² (new animals) | runs |
    |---|---|---|---|---|
    | SimCLR | – | – | – | 0 |
    | Ours | 61.0 ± 2.0 | – | 0.42 ± 0.05 | 3 |
  """
  if rows is None:
    rows = [row for row in ROW_LABELS if row in summaries and row != "random"]
    rows += [row for row in summaries if row not in ROW_LABELS]
  lines = []
  for row in rows:
    summary = summaries.get(row)
    lines.append([
        row_label(row),
        format_score(score(summary, protocol_lib.ACTION_MULTI_ANIMAL, fraction, metric)),
        format_score(score(summary, protocol_lib.ACTION_MULTI_ANIMAL_KNN, fraction, metric)),
        format_score(behaviour_r2(summary), digits=2),
        _decoder_runs_cell(summary)])
  return markdown_table(["Method", *DECODER_COLUMNS, "runs"], lines)


def _decoder_runs_cell(summary: Mapping[str, Any] | None) -> str:
  """Runs behind the row's cells: the most any of its decoders' scores counts."""
  entries = [score(summary, probe, fraction, "accuracy") for fraction in FRACTIONS
             for probe in (protocol_lib.ACTION_MULTI_ANIMAL, protocol_lib.ACTION_MULTI_ANIMAL_KNN)]
  counts = [entry.get("count", 1) for entry in entries + [behaviour_r2(summary)] if entry]
  return str(max(counts, default=0))


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


# ----------------------------------------------------------------------------------------------
# CSV text: one line per run (runs.csv) or per row (summary.csv).
# ----------------------------------------------------------------------------------------------
_PROBE_COLUMNS = {protocol_lib.ACTION_SINGLE_ANIMAL: "single_animal",
                  protocol_lib.ACTION_MULTI_ANIMAL: "multi_animal",
                  protocol_lib.IDENTITY: "identity",
                  protocol_lib.ACTION_MULTI_ANIMAL_KNN: "multi_animal_knn"}


# Every score of a run in Tables 1 and 2: (probe, label fraction, metric).
SCORES = tuple((probe, fraction, metric) for probe in PROBE_NAMES
               for fraction in FRACTIONS for metric in protocol_lib.METRICS)


# The kNN probe's scores, kept in the CSVs after those of `SCORES` (older files lack them).
KNN_SCORES = tuple((protocol_lib.ACTION_MULTI_ANIMAL_KNN, fraction, metric)
                   for fraction in FRACTIONS for metric in protocol_lib.METRICS)


# The behaviour decoder's R² on new animals (mean over behaviour dimensions).
BEHAVIOUR_R2_COLUMN = "behaviour_decoding_r2"


def score_column(probe: str, fraction: float, metric: str) -> str:
  """CSV column of a score, e.g. `multi_animal_1.0_accuracy`."""
  return f"{_PROBE_COLUMNS[probe]}_{protocol_lib.fraction_key(fraction)}_{metric}"


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
               tuple(CHANCE_COLUMNS.values()) + tuple(score_column(*s) for s in KNN_SCORES) +
               (BEHAVIOUR_R2_COLUMN,))


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
  for name in [score_column(*s) for s in KNN_SCORES] + [BEHAVIOUR_R2_COLUMN]:
    columns += [f"{name}_mean", f"{name}_std"]
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
    decoders = {score_column(*s): score(summary, *s) for s in KNN_SCORES}
    decoders[BEHAVIOUR_R2_COLUMN] = behaviour_r2(summary)
    for name, entry in decoders.items():
      record[f"{name}_mean"] = entry["mean"] if entry else None
      record[f"{name}_std"] = entry["std"] if entry else None
    records.append(record)
  return _csv_text(columns, records)


# ----------------------------------------------------------------------------------------------
# Two rows compared fold by fold.
# ----------------------------------------------------------------------------------------------
def fold_scores(records: Sequence[Mapping[str, Any]], row: str, column: str) -> dict[int, float]:
  """Seed (= held-out fold) -> one row's score in `column`, over its runs that have it."""
  scores = {}
  for record in records:
    value = record.get(column)
    if record["row"] == row and value not in (None, ""):
      scores[int(record["seed"])] = float(value)
  return scores


def paired_lead(reference: Mapping[int, float], other: Mapping[int, float]
                ) -> dict[str, Any] | None:
  """How far `reference` leads `other` on the folds both have (fold -> score each).

  The lead is *clear* when the mean difference exceeds the seed-to-seed std of both rows, the
  larger of the two: a lead smaller than how much either row moves from fold to fold could be
  the folds' doing.

  Returns:
    {"lead": mean difference, "lead_std": its std, "ahead": folds on which `reference` scores
    higher, "folds", "reference_mean", "reference_std", "mean", "std" (of `other`), "clear"},
    or None when no fold is shared.

  Example:
    >>> lead = paired_lead({0: 50.0, 1: 54.0}, {0: 45.0, 1: 47.0, 2: 60.0})
    >>> lead["lead"], lead["lead_std"], lead["ahead"], lead["folds"], lead["clear"]
    (6.0, 1.0, 2, 2, True)
  """
  folds = sorted(set(reference) & set(other))
  if not folds:
    return None
  ours = np.array([reference[s] for s in folds])
  theirs = np.array([other[s] for s in folds])
  differences = ours - theirs
  lead = float(differences.mean())
  return {"lead": lead, "lead_std": float(differences.std()),
          "ahead": int((differences > 0).sum()), "folds": len(folds),
          "reference_mean": float(ours.mean()), "reference_std": float(ours.std()),
          "mean": float(theirs.mean()), "std": float(theirs.std()),
          "clear": bool(lead > max(float(ours.std()), float(theirs.std())))}
