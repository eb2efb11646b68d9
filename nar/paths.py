"""Default locations of NAR's data, and file names that are safe to make from ids."""

import hashlib
import os
import re


def default_root() -> str:
  """Folder of the default dataset: `$NAR_HOME`, else `~/.cache/nar`."""
  return os.environ.get("NAR_HOME", os.path.join(os.path.expanduser("~"), ".cache", "nar"))


def default_data_dir() -> str:
  """TFDS data dir of the default dataset."""
  return os.path.join(default_root(), "tfds")


_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_name(name: str) -> str:
  """A file name made from an animal or trial id, which never leaves its folder.

  Characters other than letters, digits, `.`, `_` and `-` become `_`, and leading dots go
  (no `..`, no hidden file). A name that had to change gets a short hash of the original, so
  that two ids that differ only in such characters stay two files.

  Example:
    >>> safe_file_name("200101_G23xU1_Fly1")
    '200101_G23xU1_Fly1'
    >>> safe_file_name("../fly1")
    '_fly1-c1deee6d'
  """
  text = str(name)
  safe = _UNSAFE_CHARACTERS.sub("_", text).lstrip(".")
  if safe == text and safe:
    return safe
  digest = hashlib.sha256(text.encode()).hexdigest()[:8]
  return f"{safe or 'unnamed'}-{digest}"
