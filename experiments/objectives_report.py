"""`objectives.md`: Ours and its objective switches against no-swap on new animals and
against the standardised input's identity, fold by fold (`experiments.report` writes it)."""

from __future__ import annotations

from typing import Any, Collection, Mapping, Sequence

import numpy as np

from experiments import tables
from experiments.configs import reproduce as presets
from nar.eval import protocol as protocol_lib

# Ours' identity target: within this many points of the standardised input's.
IDENTITY_TARGET_POINTS = 3.0
ACTION_COLUMN = tables.score_column(protocol_lib.ACTION_MULTI_ANIMAL, 1.0, "balanced_accuracy")
IDENTITY_COLUMN = tables.score_column(protocol_lib.IDENTITY, 1.0, "accuracy")


def objective_variants(rows: Collection[str]) -> tuple[str, ...]:
  """The rows of `objectives.md` among `rows`: Ours, then its objective switches and the
  encoder at initialisation, in that order."""
  extra = presets.OBJECTIVE_SWITCHES + ("encoder_at_initialisation",)
  return (presets.OURS,) + tuple(row for row in extra if row in rows)


def _mean_std(scores: Mapping[int, float]) -> tuple[float, float] | None:
  values = list(scores.values())
  return (float(np.mean(values)), float(np.std(values))) if values else None


def objective_rows(records: Sequence[Mapping[str, Any]], variants: Sequence[str], *,
                   baseline: str = "no_swap",
                   identity_reference: str = "neural_standardised",
                   baselines: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
  """Each variant of Ours against its baseline on new animals and against the identity of
  `identity_reference`, paired by fold.

  Args:
    records: `run_record`s (runs.csv lines).
    variants: rows to compare (Ours, ablations); those without a run are left out.
    baseline: the row whose held-out action score each variant must beat.
    identity_reference: the row whose identity each variant should come near.
    baselines: variant -> its own baseline row, where it is not `baseline` (default
      `presets.OBJECTIVE_BASELINES`: an evaluation-time switch is paired with no-swap
      evaluated alike).

  Returns:
    variant -> {"baseline": the row it is paired with, "action": (mean, std) over its folds,
    "folds", "lead": `tables.paired_lead` against the baseline (None without a shared
    fold), "identity":
    (mean, std) or None, "identity_gap": mean identity minus `identity_reference`'s over the
    shared folds (None without any), "near": gap <= IDENTITY_TARGET_POINTS}.

  Example:
    >>> records = [{"row": row, "seed": seed, ACTION_COLUMN: acc, IDENTITY_COLUMN: identity}
    ...            for row, seed, acc, identity in [
    ...                ("ours", 0, 50.0, 12.0), ("ours", 1, 54.0, 14.0),
    ...                ("no_swap", 0, 45.0, 20.0), ("no_swap", 1, 47.0, 22.0),
    ...                ("neural_standardised", 0, 30.0, 10.0),
    ...                ("neural_standardised", 1, 31.0, 10.0)]]
    >>> row = objective_rows(records, ["ours"])["ours"]
    >>> row["lead"]["lead"], row["lead"]["ahead"], row["lead"]["clear"]
    (6.0, 2, True)
    >>> row["identity_gap"], row["near"]
    (3.0, True)
  """
  baselines = presets.OBJECTIVE_BASELINES if baselines is None else baselines
  reference_identity = tables.fold_scores(records, identity_reference, IDENTITY_COLUMN)
  rows = {}
  for variant in variants:
    action = tables.fold_scores(records, variant, ACTION_COLUMN)
    if not action:
      continue
    paired_with = baselines.get(variant, baseline)
    base_action = tables.fold_scores(records, paired_with, ACTION_COLUMN)
    identity = tables.fold_scores(records, variant, IDENTITY_COLUMN)
    gap = tables.paired_lead(identity, reference_identity)
    rows[variant] = {
        "baseline": paired_with, "action": _mean_std(action), "folds": len(action),
        "lead": tables.paired_lead(action, base_action), "identity": _mean_std(identity),
        "identity_gap": None if gap is None else gap["lead"],
        "near": gap is not None and gap["lead"] <= IDENTITY_TARGET_POINTS}
  return rows


def objective_table(records: Sequence[Mapping[str, Any]], variants: Sequence[str], *,
                    title: str, baseline: str = "no_swap",
                    identity_reference: str = "neural_standardised",
                    baselines: Mapping[str, str] | None = None) -> str:
  """`objectives.md`: `objective_rows` as a table, then which variants meet both targets.

  Args: as `objective_rows`'s, and the table's `title`.

  A row that is another row's baseline is shown but is no candidate: it is the reference an
  evaluation-time switch of Ours is paired with.
  """
  rows = objective_rows(records, variants, baseline=baseline,
                        identity_reference=identity_reference, baselines=baselines)
  base, reference = tables.row_label(baseline), tables.row_label(identity_reference)
  text = (f"# The objective switches, {title}\n\n"
          f"Each row is Ours with one switch (`experiments/configs/reproduce.py`, "
          f"`objective_switches`). Multi-animal balanced accuracy on held-out animals, and "
          f"its lead over the row it is paired with ({base} unless named) by fold (mean ± "
          f"std of the differences over the folds both ran; ahead = folds on which the row "
          f"scores higher; clear = the lead exceeds the seed-to-seed std of both rows). "
          f"Identity accuracy (lower is better) and its gap to {reference}'s on the same "
          f"folds; near = within {IDENTITY_TARGET_POINTS:.0f} points.\n\n")
  if not rows:
    return text + "No variant has a finished run.\n"
  cell = lambda pair: tables.MISSING if pair is None else f"{pair[0]:.1f} ± {pair[1]:.1f}"
  header = ["Variant", "folds", "held-out bal. acc.", "paired with", "lead", "ahead", "clear",
            "identity", f"identity − {reference}", "near"]
  lines = []
  for variant, row in rows.items():
    lead = row["lead"]
    lines.append([
        tables.row_label(variant), str(row["folds"]), cell(row["action"]),
        tables.row_label(row["baseline"]),
        tables.MISSING if lead is None else f"{lead['lead']:+.1f} ± {lead['lead_std']:.1f}",
        tables.MISSING if lead is None else f"{lead['ahead']}/{lead['folds']}",
        "yes" if lead and lead["clear"] else "no", cell(row["identity"]),
        tables.MISSING if row["identity_gap"] is None else f"{row['identity_gap']:+.1f}",
        "yes" if row["near"] else "no"])
  references = {row["baseline"] for row in rows.values()}
  both = [tables.row_label(v) for v, row in rows.items()
          if v not in references and row["lead"] and row["lead"]["clear"] and row["near"]]
  verdict = (f"Both targets met by: {', '.join(both)}." if both else
             f"No variant meets both targets (a clear lead over the row it is paired with and "
             f"an identity within {IDENTITY_TARGET_POINTS:.0f} points of {reference}'s).")
  return text + tables.markdown_table(header, lines) + "\n" + verdict + "\n"
