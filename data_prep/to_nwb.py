r"""Converts a folder of recordings (any layout) into NWB files, one per trial.

  python -m data_prep.to_nwb --input_dir=/tmp/sim --out_dir=/tmp/sim_nwb
  python -m data_prep.build --input_dir=/tmp/sim_nwb --data_dir=/tmp/tfds_nwb

Every trial is read and validated first (`data_prep.readers.read_recordings`: nothing is
written if one is bad), then written as `<out_dir>/<animal>/<animal>_<trial>.nwb`
(`data_prep.nwb_writer.write_nwb_file`). Needs the `nwb` extra (`pip install 'nar[nwb]'`).
"""

from __future__ import annotations

import pathlib
import sys

from absl import app
from absl import flags
import tqdm

from data_prep import nwb
from data_prep import nwb_writer
from data_prep import readers
from nar import paths
from nar.data import recording

_INPUT_DIR = flags.DEFINE_string("input_dir", None, "Folder of recordings.", required=True)
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Folder to write the NWB files into (must not "
                               "hold any of them yet).", required=True)
_LAYOUT = flags.DEFINE_enum("layout", "auto", list(readers.LAYOUTS),
                            "Layout of input_dir.")


def nwb_path(out_dir: str | pathlib.Path, animal_id: str, trial_id: str) -> pathlib.Path:
  """Where the trial of `animal_id` goes: one folder per animal, one file per trial.

  The names are made safe first (`nar.paths.safe_file_name`: path separators and `..` never
  leave `out_dir`); the file keeps the original ids inside.

  Example:
    >>> nwb_path("/out", "../fly1", "002").parent.parent
    PosixPath('/out')
  """
  animal, trial = paths.safe_file_name(animal_id), paths.safe_file_name(trial_id)
  return pathlib.Path(out_dir) / animal / f"{animal}_{trial}{nwb.SUFFIX}"


def convert(input_dir: str, out_dir: str, *, layout: str = "auto") -> list[pathlib.Path]:
  """Reads every recording under `input_dir` and writes it as an NWB file under `out_dir`.

  Returns:
    The files written, in the order of the recordings.

  Raises:
    FileExistsError: if a file to write exists (checked before any is written).
    DatasetReadError: if a recording cannot be read (nothing is written).
  """
  recordings = readers.read_recordings(input_dir, layout=layout)
  targets = [nwb_path(out_dir, rec.animal_id, rec.trial_id) for rec in recordings]
  existing = [str(p) for p in targets if p.exists()]
  if existing:
    raise FileExistsError(f"{len(existing)} NWB file(s) exist already, e.g. {existing[0]}")
  for rec, path in tqdm.tqdm(list(zip(recordings, targets)), desc="Writing NWB files",
                             unit="trial"):
    nwb_writer.write_nwb_file(rec, path)
  return targets


def main(argv):
  del argv
  try:
    written = convert(_INPUT_DIR.value, _OUT_DIR.value, layout=_LAYOUT.value)
  except (recording.RecordingError, FileExistsError, FileNotFoundError,
          NotImplementedError) as error:
    sys.exit(f"error: {error}")
  print(f"wrote {len(written)} NWB file(s) under {_OUT_DIR.value}")


if __name__ == "__main__":
  app.run(main)
