r"""Converts recordings into NAR's TFDS shards.

  python -m data_prep.build --input_dir=/tmp/sim --data_dir=/tmp/tfds

Reads every trial under `--input_dir` (MC2P folder layout, per-trial NPZ/HDF5 files or NWB
files, see `data_prep/README.md`), validates all of them (every bad trial is reported, nothing
is written if one is bad), and writes array_record shards readable with
`nar.data.shards.open_dataset`.
"""

import dataclasses
import sys

from absl import app
from absl import flags
from absl import logging

from data_prep import nwb
from data_prep import readers
from nar.data import builder as tfds_builder
from nar.data import recording

_INPUT_DIR = flags.DEFINE_string("input_dir", None, "Folder of recordings.", required=True)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data directory to write.", required=True)
_NAME = flags.DEFINE_string("name", "default", "Name of the dataset inside data_dir.")
_LAYOUT = flags.DEFINE_enum("layout", "auto", list(readers.LAYOUTS),
                            "Layout of input_dir.")
_CLASS_NAMES = flags.DEFINE_list(
    "class_names", None, "Behaviour vocabulary to express every trial's labels in "
    "(comma-separated, matched by name); default: the one stored with the data.")
_NWB_OBJECTS = {
    field.name: flags.DEFINE_string(
        f"nwb_{field.name}", None, f"NWB files: name of the {field.name.replace('_', ' ')} to "
        "read where a file holds several.")
    for field in dataclasses.fields(nwb.NwbObjects)}
_SEGMENT_SECONDS = flags.DEFINE_float("segment_seconds", 2.0, "Seconds of a stored segment.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Replace an existing dataset of that name; without it, one is "
                               "an error.")


_VERBOSE = flags.DEFINE_bool("verbose", False, "Show the traceback of an input error.")


def main(argv):
  del argv
  nwb_objects = nwb.NwbObjects(**{name: flag.value for name, flag in _NWB_OBJECTS.items()})
  try:
    recordings = readers.read_recordings(_INPUT_DIR.value, layout=_LAYOUT.value,
                                         class_names=_CLASS_NAMES.value,
                                         nwb_objects=nwb_objects)
    logging.info("Read %d recordings from %s", len(recordings), _INPUT_DIR.value)
    dataset_dir = tfds_builder.build_dataset(
        recordings, _DATA_DIR.value, config_name=_NAME.value,
        segment_seconds=_SEGMENT_SECONDS.value, overwrite=_OVERWRITE.value)
  except (recording.RecordingError, FileExistsError, FileNotFoundError) as error:
    if _VERBOSE.value:
      raise
    # Every bad trial is in the message, one per line; no traceback.
    sys.exit(f"error: {error}")
  print(tfds_builder.describe(dataset_dir))


if __name__ == "__main__":
  app.run(main)
