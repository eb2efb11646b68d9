"""Logging set-up shared by the entry points."""

import logging as logging_std

from absl import logging


class _DropOrbaxInfo(logging_std.Filter):
  """Drops Orbax's INFO lines (several per checkpoint); its warnings and errors pass."""

  def filter(self, record: logging_std.LogRecord) -> bool:
    return record.levelno > logging_std.INFO or "/orbax/" not in record.pathname


def quiet_checkpoint_logs() -> None:
  """Keeps the console readable: progress bars and summaries instead of per-save logs."""
  logging.get_absl_handler().addFilter(_DropOrbaxInfo())
