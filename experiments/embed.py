r"""Embeds recordings with a trained run: one file per trial, every valid window.

  python -m experiments.embed --workdir=/tmp/nar/run --input=/data/my_trials --out=/tmp/emb
  python -m experiments.embed --workdir=RUN --input=NEW_FLIES --out=DIR --adapt_steps=200 --plot

`--input` is a built dataset (`python -m data_prep.build`: a TFDS data dir or a version
folder), or recordings to build first: a folder of per-trial NPZ/HDF5 files, NWB files or an
MC2P folder (built into `--out/dataset`). Each trial gives `--out/<animal>__<trial>.npz`
(`nar.embed`); NWB recordings also give `--out/<animal>__<trial>.nwb`, the embeddings
as a processing module. A run with a per-animal input layer embeds animals it has not seen
after `--adapt_steps` steps of a label-free fit of their input layers, kept beside the run.
"""

import os
import sys

from absl import app
from absl import flags

from data_prep import readers
from nar import embedding as embed_lib
from nar import logs
from nar import run as run_lib
from nar.data import builder as tfds_builder
from nar.data import recording
from nar.data import shards

_WORKDIR = flags.DEFINE_string("workdir", None, "The trained run's folder.", required=True)
_INPUT = flags.DEFINE_string("input", None, "A built dataset or a folder of recordings.",
                             required=True)
_OUT = flags.DEFINE_string("out", None, "Where the embeddings go.", required=True)
_NAME = flags.DEFINE_string("name", "default", "The dataset's name when --input is a TFDS "
                            "data dir holding several.")
_LAYOUT = flags.DEFINE_enum("layout", "auto", list(readers.LAYOUTS),
                            "Layout of recordings given as --input.")
_HOP = flags.DEFINE_integer("hop", 1, "Embed every hop-th valid centre frame.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Windows per encoder call.")
_ADAPT_STEPS = flags.DEFINE_integer(
    "adapt_steps", 0, "Steps of the label-free input-layer fit of animals new to a run with a "
    "per-animal input layer (0: a new animal is an error).")
_PLOT = flags.DEFINE_bool("plot", False, "Also draw the embeddings coloured by action and by "
                          "animal into --out/embeddings.png.")
_VERBOSE = flags.DEFINE_bool("verbose", False, "Show the traceback of an input error.")

# Errors of the user's input: printed as one line (the traceback with --verbose).
INPUT_ERRORS = (run_lib.RunLoadError, embed_lib.EmbedInputError, recording.RecordingError,
                shards.DatasetNotFoundError)


def open_input(input_path: str, out_dir: str, *, name: str = "default",
               layout: str = "auto") -> tuple[shards.ShardedDataset, str, list]:
  """Opens `--input`: a built dataset as it is, recordings after building them.

  Returns:
    `(dataset, layout, recordings)`: layout "built" for a built dataset (recordings empty),
    else the recordings' layout and the recordings read.
  """
  try:
    return shards.open_dataset(input_path, name, neural_cache_bytes=256 << 20), "built", []
  except shards.DatasetNotFoundError:
    if not os.path.isdir(input_path):
      raise
  layout = readers.detect_layout(input_path) if layout == "auto" else layout
  recordings = readers.read_recordings(input_path, layout=layout)
  built = tfds_builder.build_dataset(recordings, os.path.join(out_dir, "dataset"),
                                     config_name="embedded", overwrite=True)
  return shards.open_dataset(built, neural_cache_bytes=256 << 20), layout, recordings


def write_nwb_modules(out_dir: str, recordings) -> list[str]:
  """Each embedded trial of NWB recordings as `<animal>__<trial>.nwb` beside its `.npz`."""
  from data_prep import nwb  # pylint: disable=g-import-not-at-top
  from data_prep import nwb_writer  # pylint: disable=g-import-not-at-top
  written = []
  for rec in recordings:
    npz = os.path.join(out_dir, embed_lib.trial_file_name(rec.animal_id, rec.trial_id))
    if os.path.exists(npz):
      target = npz[:-len(".npz")] + nwb.SUFFIX
      if os.path.exists(target):
        os.remove(target)  # a rerun's
      written.append(str(nwb_writer.write_embedding_file(npz, rec, target)))
  return written


def write_plot(out_dir: str) -> str:
  """Draws `out_dir`'s embeddings by action and by animal. Returns the figure's path."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from nar.eval import plots  # pylint: disable=g-import-not-at-top
  table = embed_lib.read_embeddings(out_dir)
  animal_names, animals = np.unique(table["animal_id"].astype(str), return_inverse=True)
  figure = plots.plot_embeddings(
      table["embeddings"], actions=table["label"], animals=animals,
      class_names=[str(c) for c in table["class_names"]], animal_names=list(animal_names))
  path = os.path.join(out_dir, "embeddings.png")
  figure.savefig(path, dpi=120, bbox_inches="tight")
  return path


def main(argv):
  del argv
  logs.quiet_checkpoint_logs()
  try:
    run = run_lib.load_run(_WORKDIR.value)
    dataset, layout, recordings = open_input(_INPUT.value, _OUT.value, name=_NAME.value,
                                             layout=_LAYOUT.value)
    summary = embed_lib.embed(run, dataset, out_dir=_OUT.value, hop=_HOP.value,
                              batch_size=_BATCH_SIZE.value, adapt_steps=_ADAPT_STEPS.value)
  except INPUT_ERRORS as error:
    if _VERBOSE.value:
      raise
    sys.exit(f"error: {error}")
  if layout == "nwb":
    from data_prep import nwb_writer  # pylint: disable=g-import-not-at-top
    print(f"wrote {len(write_nwb_modules(_OUT.value, recordings))} NWB files of embeddings "
          f"(processing module {nwb_writer.EMBEDDING_MODULE!r})")
  rate = summary["windows_per_second"]
  print(f"embedded {summary['num_windows']} windows of {summary['num_trials']} trials into "
        f"{_OUT.value} in {summary['seconds']:.1f} s"
        + (f" ({rate:.0f} windows/s after compilation)" if rate else ""))
  if _PLOT.value:
    print(f"plot: {write_plot(_OUT.value)}")


if __name__ == "__main__":
  app.run(main)
