"""Reads a folder of recordings in any supported layout.

Two layouts are supported (see `data_prep/README.md`):
  mc2p: one folder per trial named `<date>_<genotype>_Fly<N>_<trial>` (`data_prep.mc2p`).
  trial_files: one `.npz` / `.h5` / `.hdf5` file per trial (`data_prep.trial_files`).
"""

from __future__ import annotations

import os
import pathlib
from typing import Sequence

from data_prep import errors
from data_prep import mc2p
from data_prep import trial_files
from nar import recording

LAYOUTS = ("auto", "mc2p", "trial_files")


def detect_layout(input_dir: str | os.PathLike) -> str:
  """The layout of `input_dir`: "mc2p" if it holds MC2P trial folders, else "trial_files".

  Raises:
    RecordingError: if `input_dir` is not a folder or holds neither layout.
  """
  input_dir = pathlib.Path(input_dir)
  if not input_dir.is_dir():
    raise errors.file_error(input_dir, "is not a folder")
  if any(p.is_dir() and mc2p.TRIAL_FOLDER_PATTERN.match(p.name) for p in input_dir.iterdir()):
    return "mc2p"
  if trial_files.find_trial_files(input_dir, required=False):
    return "trial_files"
  raise errors.file_error(
      input_dir,
      "holds no recordings: looked for MC2P trial folders named "
      "<date>_<genotype>_Fly<N>_<trial> (e.g. 200901_G23xU1_Fly1_001) directly inside it, "
      f"and for per-trial files ({', '.join('*' + s for s in trial_files.SUFFIXES)}) "
      "anywhere under it")


def read_recordings(input_dir: str | os.PathLike, *, layout: str = "auto",
                    class_names: Sequence[str] | None = None) -> list[recording.Recording]:
  """Reads every recording under `input_dir`.

  Args:
    input_dir: the dataset folder.
    layout: "auto" (MC2P if trial folders exist, else per-trial files), "mc2p" or
      "trial_files".
    class_names: the behaviour vocabulary every recording's labels are expressed in (labels
      are matched by name). None: as stored (MC2P: the trial's `metadata.json`, else
      `nar.recording.MC2P_CLASS_NAMES`; trial files: the file's `class_names`).

  Returns:
    The validated recordings, sorted by trial folder or file path.

  Raises:
    ValueError: if `layout` is unknown.
    RecordingError: if no recordings are found.
    DatasetReadError: listing every bad trial (never a partial list).
  """
  if layout not in LAYOUTS:
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
  if layout == "auto":
    layout = detect_layout(input_dir)
  if layout == "mc2p":
    return mc2p.read_directory(input_dir, class_names=class_names)
  return trial_files.read_trial_files(input_dir, class_names=class_names)
