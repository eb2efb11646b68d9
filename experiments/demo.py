r"""The main job on the embedded default data: `make demo`.

  python -m experiments.demo [--data_dir=~/.cache/nar/tfds]

Simulates the default dataset (8 animals x 4 trials x 60 s) if absent, writes it in the MC2P
folder layout, reads it back, builds its TFDS shards and prints a summary of what was built.
"""

from absl import app
from absl import flags

from data_prep import default_dataset
from data_prep import tfds_builder

_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir (default ~/.cache/nar/tfds).")
_SEED = flags.DEFINE_integer("seed", 0, "Simulation seed.")


def main(argv):
  del argv
  dataset_dir = default_dataset.ensure_dataset(seed=_SEED.value, data_dir=_DATA_DIR.value)
  print(tfds_builder.describe(str(dataset_dir)))


if __name__ == "__main__":
  app.run(main)
