"""Default locations of NAR's data."""

import os


def default_root() -> str:
  """Folder of the default dataset: `$NAR_HOME`, else `~/.cache/nar`."""
  return os.environ.get("NAR_HOME", os.path.join(os.path.expanduser("~"), ".cache", "nar"))


def default_data_dir() -> str:
  """TFDS data dir of the default dataset."""
  return os.path.join(default_root(), "tfds")
