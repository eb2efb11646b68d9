"""Reads a folder of recordings in any supported layout.

Three layouts are supported (see `data_prep/README.md`):
  mc2p: one folder per trial named `<date>_<genotype>_Fly<N>_<trial>` (`data_prep.mc2p`).
  trial_files: one `.npz` / `.h5` / `.hdf5` file per trial (`data_prep.trial_files`).
  nwb: one `.nwb` (Neurodata Without Borders) file per trial (`data_prep.nwb`; needs the
    `nwb` extra).
"""

from __future__ import annotations

import os
import pathlib
from typing import Sequence

from data_prep import errors
from data_prep import mc2p
from data_prep import nwb
from data_prep import trial_files
from nar.data import recording

LAYOUTS = ("auto", "mc2p", "trial_files", "nwb")


def detect_layout(input_dir: str | os.PathLike) -> str:
  """The layout of `input_dir`.

  "mc2p" if it holds MC2P trial folders, else "trial_files" or "nwb" by the files under it.

  Raises:
    RecordingError: if `input_dir` is not a folder, holds no layout, or holds both per-trial
      files and NWB files (the layout must then be named).
  """
  input_dir = pathlib.Path(input_dir)
  if not input_dir.is_dir():
    raise errors.file_error(input_dir, "is not a folder")
  if any(p.is_dir() and mc2p.TRIAL_FOLDER_PATTERN.match(p.name) for p in input_dir.iterdir()):
    return "mc2p"
  has_trial_files = bool(trial_files.find_trial_files(input_dir, required=False))
  has_nwb_files = bool(nwb.find_nwb_files(input_dir, required=False))
  if has_trial_files and has_nwb_files:
    raise errors.file_error(
        input_dir, "holds both per-trial files and NWB files; name the layout to read "
        "(layout='trial_files' or 'nwb')")
  if has_trial_files:
    return "trial_files"
  if has_nwb_files:
    return "nwb"
  raise errors.file_error(
      input_dir,
      "holds no recordings: looked for MC2P trial folders named "
      "<date>_<genotype>_Fly<N>_<trial> (e.g. 200901_G23xU1_Fly1_001) directly inside it, "
      f"and for per-trial files ({', '.join('*' + s for s in trial_files.SUFFIXES)}) "
      f"and NWB files (*{nwb.SUFFIX}) anywhere under it")


def read_recordings(input_dir: str | os.PathLike, *, layout: str = "auto",
                    class_names: Sequence[str] | None = None,
                    nwb_objects: nwb.NwbObjects = nwb.NwbObjects()
                    ) -> list[recording.Recording]:
  """Reads every recording under `input_dir`.

  Args:
    input_dir: the dataset folder.
    layout: "auto" (MC2P if trial folders exist, else per-trial files or NWB files),
      "mc2p", "trial_files" or "nwb".
    class_names: the behaviour vocabulary every recording's labels are expressed in (labels
      are matched by name). None: as stored (MC2P: the trial's `metadata.json`, else
      `nar.data.recording.MC2P_CLASS_NAMES`; trial files: the file's `class_names`; NWB files:
      `nar.data.recording.MC2P_CLASS_NAMES`).
    nwb_objects: NWB only: which objects to read where a file holds several.

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
  if layout == "nwb":
    return nwb.read_nwb_files(input_dir, class_names=class_names, objects=nwb_objects)
  return trial_files.read_trial_files(input_dir, class_names=class_names)
