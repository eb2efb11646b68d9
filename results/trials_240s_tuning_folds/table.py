"""Prints this folder's table and the figures the READMEs quote, from its eval.json files.

  python results/trials_240s_tuning_folds/table.py

A file `<row>_fold<f>_seed<k>.eval.json` is one run; runs of two rows pair by fold and seed.
Accuracy in %: multi-animal action at label fractions 0.5 and 1.0, single-animal at 1.0 and
identity at 1.0, mean ± population std over the runs.
"""

import collections
import json
import pathlib
import re

import numpy as np

FOLDER = pathlib.Path(__file__).parent
ROWS = {"no_swap": "Multimodal contrastive, no swap", "ours": "**Ours**",
        "ours_p1": "Ours, swap probability 1", "simclr": "SimCLR",
        "regression_recurrent": "Regression (recurrent)"}
COLUMNS = (("action_multi_animal", "0.5"), ("action_multi_animal", "1.0"),
           ("action_single_animal", "1.0"), ("identity", "1.0"))


def read_runs(folder: pathlib.Path) -> dict[str, dict[tuple[int, int], np.ndarray]]:
  """`runs[row][(fold, seed)]`: the run's scores in `COLUMNS` order."""
  runs = collections.defaultdict(dict)
  for path in sorted(folder.glob("*.eval.json")):
    match = re.fullmatch(r"(\w+?)_fold(\d+)_seed(\d+)\.eval\.json", path.name)
    if match is None or match[1] not in ROWS:
      continue  # e.g. exact_pool_hop20_*: other settings, quoted in the README by run
    probes = json.loads(path.read_text())["probes"]
    runs[match[1]][int(match[2]), int(match[3])] = np.array(
        [probes[probe][fraction]["accuracy"]["mean"] for probe, fraction in COLUMNS])
  return runs


def pm(values: np.ndarray) -> str:
  """Mean ± population std; a single run's value alone (it has no spread)."""
  if len(values) == 1:
    return f"{values[0]:.1f}"
  return f"{np.mean(values):.1f} ± {np.std(values):.1f}"


def lead(runs, row: str, reference: str, fold: int | None = None) -> str:
  """`row` minus `reference` at 0.5 / 1.0 over their shared (fold, seed) pairs (of `fold`)."""
  keys = sorted(key for key in set(runs[row]) & set(runs[reference])
                if fold is None or key[0] == fold)
  diffs = np.array([runs[row][key][:2] - runs[reference][key][:2] for key in keys])
  ahead = (diffs > 0).sum(0)
  if len(keys) == 1:
    return f"{diffs[0, 0]:+.1f} / {diffs[0, 1]:+.1f} (one pair of runs)"
  return (f"{np.mean(diffs[:, 0]):+.1f} ± {np.std(diffs[:, 0]):.1f} / "
          f"{np.mean(diffs[:, 1]):+.1f} ± {np.std(diffs[:, 1]):.1f} "
          f"(ahead in {ahead[0]} / {ahead[1]} of {len(keys)})")


def main() -> None:
  runs = read_runs(FOLDER)
  print("| Method | runs | Single 1.0 | Multi 0.5 | Multi 1.0 | Multi 1.0 by fold | "
        "Identity 1.0 ↓ | Lead over no swap, 0.5 / 1.0 |")
  print("|---|---|---|---|---|---|---|---|")
  for row in ("no_swap", "ours", "ours_p1"):
    scores = np.array(list(runs[row].values()))
    folds = sorted({fold for fold, _ in runs[row]})
    by_fold = " / ".join(
        f"{np.mean([s[1] for (f, _), s in runs[row].items() if f == fold]):.1f}"
        for fold in folds)
    print(f"| {ROWS[row]} | {len(scores)} | {np.mean(scores[:, 2]):.1f} | "
          f"{pm(scores[:, 0])} | {pm(scores[:, 1])} | {by_fold} | {pm(scores[:, 3])} | "
          f"{lead(runs, row, 'no_swap') if row != 'no_swap' else '–'} |")
  print()
  for row in ("ours", "ours_p1", "no_swap"):
    by_fold = collections.defaultdict(list)
    for (fold, _), scores in runs[row].items():
      by_fold[fold].append(scores[:2])
    within = np.mean([np.std(scores, axis=0) for scores in by_fold.values()], axis=0)
    print(f"{row}: seed-to-seed std within a fold, mean over folds: "
          f"{within[0]:.1f} / {within[1]:.1f}")
  print(f"ours_p1 minus ours: {lead(runs, 'ours_p1', 'ours')}")
  print()
  print("Fold 0 (Multi 0.5 / Multi 1.0, identity 1.0):")
  for row in ("ours", "no_swap", "simclr", "regression_recurrent"):
    scores = np.array([s for (fold, _), s in runs[row].items() if fold == 0])
    line = (f"  {ROWS[row]} ({len(scores)} seeds): {pm(scores[:, 0])} / {pm(scores[:, 1])}, "
            f"identity {np.mean(scores[:, 3]):.1f}")
    if row != "ours":
      line += f"; Ours' lead {lead(runs, 'ours', row, fold=0)}"
    print(line)


if __name__ == "__main__":
  main()
