r"""Number-by-number comparison of two runs or reproductions: are their results the same?

  python -m experiments.compare_runs --a=RUN_OR_FOLDER --b=RUN_OR_FOLDER [--tolerance=0]

Compares every result file the two folders share (or two single files): `eval.json`,
`config.json` and other JSON, `metrics.jsonl`, CSVs (`runs.csv`, `summary.csv`), `features.npz`
and the markdown tables (`table1.md`, `table2.md`, `ablation.md`). Fields that record when, how
fast or where a run was made (wall times, throughput, folders, versions) are left out, so two
runs of the same code with the same seeds compare equal however long they took and wherever
their data lived. Checkpoints, TensorBoard logs, figures and READMEs (which quote wall times)
are not compared. Exits 1 and lists every difference when the results differ, so that a
refactor that must keep the numbers can be checked by:

  python -m experiments.reproduce --preset=smoke --seeds=2 --out=/tmp/after
  python -m experiments.compare_runs --a=/tmp/before --b=/tmp/after
"""

from __future__ import annotations

import csv
import json
import math
import pathlib
import re
import sys
from typing import Any, Iterator

from absl import app
from absl import flags
import numpy as np

# Keys (JSON fields, CSV columns) that describe how or where a run was made, not its results.
IGNORED_KEYS = re.compile(
    r"(wall|seconds|per_second|windows_s|steps_s|elapsed|time_s|_dir$|^dir$|path|workdir"
    r"|version|date|host)", re.IGNORECASE)
# Files compared, by name pattern; everything else (checkpoints, logs, figures) is skipped.
COMPARED_FILES = ("*.json", "*.jsonl", "*.csv", "*.npz", "table*.md", "ablation.md")
SKIPPED_FOLDERS = ("checkpoints", "tensorboard", "figures")


def _numbers_differ(a: float, b: float, tolerance: float) -> bool:
  if math.isnan(a) and math.isnan(b):
    return False
  return abs(a - b) > tolerance * max(1.0, abs(a), abs(b)) if tolerance else a != b


def compare_values(a: Any, b: Any, *, where: str = "", tolerance: float = 0.0
                   ) -> Iterator[str]:
  """Yields one line per difference between two JSON-like values, ignoring run-environment keys.

  Example:
    >>> list(compare_values({"accuracy": 50.0, "wall_seconds": 3.0},
    ...                     {"accuracy": 50.5, "wall_seconds": 9.0}))
    ['accuracy: 50.0 != 50.5']

  Args:
    a, b: values parsed from JSON (dicts, lists, numbers, strings, None).
    where: the path of `a` and `b` inside their documents, for the messages.
    tolerance: relative tolerance of numbers (0: exactly equal).
  """
  label = where or "(top)"
  if isinstance(a, dict) and isinstance(b, dict):
    for key in sorted(set(a) | set(b), key=str):
      if IGNORED_KEYS.search(str(key)):
        continue
      inner = f"{where}.{key}" if where else str(key)
      if key not in a or key not in b:
        yield f"{inner}: only in {'b' if key not in a else 'a'}"
      else:
        yield from compare_values(a[key], b[key], where=inner, tolerance=tolerance)
  elif isinstance(a, list) and isinstance(b, list):
    if len(a) != len(b):
      yield f"{label}: {len(a)} != {len(b)} items"
    for i, (x, y) in enumerate(zip(a, b)):
      yield from compare_values(x, y, where=f"{where}[{i}]", tolerance=tolerance)
  elif (isinstance(a, (int, float)) and isinstance(b, (int, float))
        and not isinstance(a, bool) and not isinstance(b, bool)):
    if _numbers_differ(float(a), float(b), tolerance):
      yield f"{label}: {a!r} != {b!r}"
  elif a != b:
    yield f"{label}: {a!r} != {b!r}"


def _csv_rows(path: pathlib.Path) -> list[dict[str, Any]]:
  def parse(value: str) -> Any:
    try:
      return float(value)
    except ValueError:
      return value
  with open(path, newline="") as f:
    return [{k: parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def compare_files(a: pathlib.Path, b: pathlib.Path, *, tolerance: float = 0.0
                  ) -> list[str]:
  """The differences between two result files of the same kind (by suffix), one line each.

  Example:
    >>> import json, pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.json").write_text(json.dumps({"identity": 20.5}))
    >>> _ = (folder / "b.json").write_text(json.dumps({"identity": 20.5}))
    >>> compare_files(folder / "a.json", folder / "b.json")
    []
  """
  suffix = a.suffix
  if suffix == ".json":
    return list(compare_values(json.loads(a.read_text()), json.loads(b.read_text()),
                               tolerance=tolerance))
  if suffix == ".jsonl":
    lines_a, lines_b = a.read_text().splitlines(), b.read_text().splitlines()
    return list(compare_values([json.loads(x) for x in lines_a],
                               [json.loads(x) for x in lines_b], where="line",
                               tolerance=tolerance))
  if suffix == ".csv":
    return list(compare_values(_csv_rows(a), _csv_rows(b), where="row", tolerance=tolerance))
  if suffix == ".npz":
    with np.load(a) as x, np.load(b) as y:
      problems = [f"{k}: only in {'a' if k in x.files else 'b'}"
                  for k in sorted(set(x.files) ^ set(y.files))]
      for key in sorted(set(x.files) & set(y.files)):
        u, v = x[key], y[key]
        if u.shape != v.shape:
          problems.append(f"{key}: shape {u.shape} != {v.shape}")
        elif u.dtype.kind in "fc" and tolerance:
          if not np.allclose(u, v, rtol=tolerance, atol=0, equal_nan=True):
            problems.append(f"{key}: max |a - b| = {np.nanmax(np.abs(u - v)):.3g}")
        elif not np.array_equal(u, v, equal_nan=u.dtype.kind in "fc"):
          problems.append(f"{key}: {int(np.sum(u != v))} of {u.size} values differ")
      return problems
  text_a, text_b = a.read_text().splitlines(), b.read_text().splitlines()
  if len(text_a) != len(text_b):
    return [f"{len(text_a)} != {len(text_b)} lines"]
  return [f"line {i + 1}: {x!r} != {y!r}" for i, (x, y) in enumerate(zip(text_a, text_b))
          if x != y]


def _result_files(folder: pathlib.Path) -> set[pathlib.Path]:
  found = set()
  for pattern in COMPARED_FILES:
    for path in folder.rglob(pattern):
      relative = path.relative_to(folder)
      if not any(part in SKIPPED_FOLDERS for part in relative.parts):
        found.add(relative)
  return found


def compare(a: str | pathlib.Path, b: str | pathlib.Path, *, tolerance: float = 0.0
            ) -> tuple[int, list[str]]:
  r"""Compares two runs, reproductions or result files.

  Example:
    >>> import pathlib, tempfile
    >>> a, b = pathlib.Path(tempfile.mkdtemp()), pathlib.Path(tempfile.mkdtemp())
    >>> for folder, score in ((a, "54.6"), (b, "54.7")):
    ...   _ = (folder / "runs.csv").write_text(f"row,accuracy,wall_seconds\nours,{score},9\n")
    >>> compare(a, b)
    (1, ['runs.csv: row[0].accuracy: 54.6 != 54.7'])

  Args:
    a, b: two folders (every result file they share is compared, and a result file in only
      one of them is a difference) or two files.
    tolerance: relative tolerance of numbers (0: exactly equal).

  Returns:
    The number of files compared and the differences, one line each, prefixed by the file.
  """
  a, b = pathlib.Path(a), pathlib.Path(b)
  for path in (a, b):
    if not path.exists():
      raise FileNotFoundError(f"{path} does not exist")
  if a.is_file() or b.is_file():
    return 1, [f"{a.name}: {line}" for line in compare_files(a, b, tolerance=tolerance)]
  files_a, files_b = _result_files(a), _result_files(b)
  problems = [f"{path}: only in {'a' if path in files_a else 'b'}"
              for path in sorted(files_a ^ files_b)]
  for path in sorted(files_a & files_b):
    problems += [f"{path}: {line}"
                 for line in compare_files(a / path, b / path, tolerance=tolerance)]
  return len(files_a & files_b), problems


_A = flags.DEFINE_string("a", None, "A run folder, a reproduction's folder or a result file.",
                         required=True)
_B = flags.DEFINE_string("b", None, "The run, folder or file to compare it with.",
                         required=True)
_TOLERANCE = flags.DEFINE_float("tolerance", 0.0,
                                "Relative tolerance of numbers; 0 asks for exact equality.")


def main(argv):
  del argv
  compared, problems = compare(_A.value, _B.value, tolerance=_TOLERANCE.value)
  for line in problems:
    print(line)
  verdict = "the same results" if not problems else f"{len(problems)} differences"
  print(f"compared {compared} result files of {_A.value} and {_B.value}: {verdict}")
  sys.exit(1 if problems or not compared else 0)


if __name__ == "__main__":
  app.run(main)
