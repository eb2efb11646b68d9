"""Logging set-up shared by the entry points, and the writers and readers of a run's logs."""

import json
import logging as logging_std
import os

from absl import logging
from etils import epath
import numpy as np

# One JSON object per logged step, written by `nar.train.train_and_evaluate` into the workdir.
METRICS_FILE = "metrics.jsonl"


class _DropOrbaxInfo(logging_std.Filter):
  """Drops Orbax's INFO lines (several per checkpoint); its warnings and errors pass."""

  def filter(self, record: logging_std.LogRecord) -> bool:
    return record.levelno > logging_std.INFO or "/orbax/" not in record.pathname


def quiet_checkpoint_logs() -> None:
  """Keeps the console readable: progress bars and summaries instead of per-save logs."""
  logging.get_absl_handler().addFilter(_DropOrbaxInfo())


def read_metric_curve(path: str | os.PathLike, metric: str = "loss"
                      ) -> tuple[np.ndarray, np.ndarray] | None:
  """`(steps, values)` of one metric from a metrics log (`METRICS_FILE` of a workdir).

  Args:
    path: the log, local or remote (any path `etils.epath` reads, like the workdir).
    metric: the metric's name in the log.

  Returns:
    None when the file does not exist or no line holds the metric (e.g. a run that stopped
    before its first log). A resumed run logs again the steps after its last checkpoint:
    the latest entry of a step wins, and steps come out in order. A line cut short by an
    interruption is skipped.
  """
  path = epath.Path(path)
  if not path.exists():
    return None
  values_by_step = {}
  for line in path.read_text().splitlines():
    try:
      entry = json.loads(line)
    except json.JSONDecodeError:
      continue
    if isinstance(entry, dict) and metric in entry and "step" in entry:
      values_by_step[int(entry["step"])] = entry[metric]
  if not values_by_step:
    return None
  steps = np.array(sorted(values_by_step))
  return steps, np.array([values_by_step[step] for step in steps])


def write_json_atomically(path: str | os.PathLike, value) -> None:
  """Writes `value` as JSON so that `path` is either absent or complete.

  Readers treat a run's results file as the mark of a finished run; written in place, an
  interruption could leave a truncated file that reads as finished.
  """
  path = epath.Path(path)
  partial = path.parent / (path.name + ".partial")
  partial.write_text(json.dumps(value, indent=2))
  partial.replace(path)  # over an earlier result (a rerun's), unlike `rename`


def truncate_metrics(path: str | os.PathLike, last_step: int) -> int:
  """Drops the lines of a `metrics.jsonl` logged after `last_step` (a resumed run's restored
  step), so that the steps it trains again are logged once. Returns the lines dropped."""
  path = epath.Path(path)
  if not path.exists():
    return 0
  lines = path.read_text().splitlines()
  kept = []
  for line in lines:
    try:
      if json.loads(line).get("step", 0) <= last_step:
        kept.append(line)
    except json.JSONDecodeError:  # a line cut short by a kill
      continue
  if len(kept) != len(lines):
    partial = path.parent / (path.name + ".partial")
    partial.write_text("".join(line + "\n" for line in kept))
    partial.replace(path)
  return len(lines) - len(kept)


def write_npz_atomically(path: str | os.PathLike, arrays) -> None:
  """Writes an `.npz` whole or not at all: into a temporary file renamed into place."""
  path = epath.Path(path)
  temporary = path.parent / f".{path.name}.tmp"
  with temporary.open("wb") as f:
    np.savez(f, **arrays)
  temporary.replace(path)  # over an earlier file, unlike `rename`
