"""Logging set-up shared by the entry points, and the reader of a run's metrics log."""

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
    before its first log).
  """
  path = epath.Path(path)
  if not path.exists():
    return None
  lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  lines = [line for line in lines if metric in line]
  if not lines:
    return None
  return (np.array([line["step"] for line in lines]),
          np.array([line[metric] for line in lines]))
