"""Prints this folder's table, 1500 steps against the same runs at 300 steps.

  python results/trials_240s_1500_steps_tuning_folds/table.py

A file `<row>_fold<f>_seed<k>.eval.json` is one run of 1500 steps; the run of the same row,
fold and seed at 300 steps is read from `../trials_240s_tuning_folds/`. Runs of rows that
folder's table does not know (other settings of Ours) are printed one by one. Accuracy in %.
"""

import importlib.util
import json
import pathlib

import numpy as np

FOLDER = pathlib.Path(__file__).parent
SHORT_RUNS = FOLDER.parent / "trials_240s_tuning_folds"


def _load_sibling_table():
  """The 300-step folder's reader (`read_runs`, `pm`, `lead`, `ROWS`), reused as is."""
  spec = importlib.util.spec_from_file_location("table_300_steps", SHORT_RUNS / "table.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def main() -> None:
  table = _load_sibling_table()
  table.ROWS["ours_neural_swap"] = "Ours, neural swap 0.5"  # a row of this folder only
  runs = table.read_runs(FOLDER)
  short = table.read_runs(SHORT_RUNS)
  print("| Method | runs (fold, seed) | Multi 0.5 | Multi 1.0 | Single 1.0 | Identity 1.0 ↓ | "
        "Multi 1.0 / identity at 300 steps, same runs | Ours' lead, 0.5 / 1.0 |")
  print("|---|---|---|---|---|---|---|---|")
  for row in ("ours", "ours_neural_swap", "ours_p1", "no_swap", "simclr",
              "regression_recurrent"):
    if row not in runs:
      continue
    keys = sorted(runs[row])
    scores = np.array([runs[row][key] for key in keys])
    before = np.array([short[row][key] for key in keys if key in short[row]])
    was = (f"{np.mean(before[:, 1]):.1f} / {np.mean(before[:, 3]):.1f}"
           if len(before) == len(keys) else "–")
    ahead = table.lead(runs, "ours", row) if row != "ours" else "–"
    print(f"| {table.ROWS[row]} | {', '.join(f'({f}, {k})' for f, k in keys)} | "
          f"{table.pm(scores[:, 0])} | {table.pm(scores[:, 1])} | {np.mean(scores[:, 2]):.1f} | "
          f"{table.pm(scores[:, 3])} | {was} | {ahead} |")
  print()
  print("Ours with the neural swap against the other rows (its lead, 0.5 / 1.0):")
  for row in ("ours", "no_swap", "simclr", "regression_recurrent"):
    print(f"  {table.ROWS[row]}: {table.lead(runs, 'ours_neural_swap', row)}")
  print()
  print("Per run: multi-animal 0.5 / 1.0 (identity 1.0), at 1500 steps <- at 300 steps:")
  for row, by_key in sorted(runs.items()):
    for key, scores in sorted(by_key.items()):
      line = f"  {row} fold {key[0]} seed {key[1]}: {scores[0]:.1f} / {scores[1]:.1f} ({scores[3]:.1f})"
      if key in short.get(row, {}):
        was = short[row][key]
        line += f" <- {was[0]:.1f} / {was[1]:.1f} ({was[3]:.1f})"
      print(line)
  other = sorted(path for path in FOLDER.glob("*.eval.json")
                 if path.name.split("_fold")[0] not in table.ROWS)
  if other:
    print()
    print("Other settings (the README says which): multi-animal 0.5 / 1.0 (identity 1.0):")
  for path in other:
    probes = json.loads(path.read_text())["probes"]
    multi, identity = probes["action_multi_animal"], probes["identity"]["1.0"]
    print(f"  {path.name.removesuffix('.eval.json')}: {multi['0.5']['accuracy']['mean']:.1f} / "
          f"{multi['1.0']['accuracy']['mean']:.1f} ({identity['accuracy']['mean']:.1f})")


if __name__ == "__main__":
  main()
