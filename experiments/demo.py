r"""The main job on the embedded default data: `make demo`.

  python -m experiments.demo [--root=~/.cache/nar]

Simulates the default dataset (8 animals x 4 trials x 60 s) if absent, writes it in the MC2P
folder layout, reads it back, builds its TFDS shards and prints a summary of what was built.
"""

from absl import app
from absl import flags

from data_prep import default_dataset
from data_prep import tfds_builder

_ROOT = flags.DEFINE_string("root", default_dataset.DEFAULT_ROOT,
                            "Folder for the raw recordings and the shards.")
_SEED = flags.DEFINE_integer("seed", 0, "Simulation seed.")


def main(argv):
  del argv
  dataset_dir = default_dataset.ensure_dataset(seed=_SEED.value, root=_ROOT.value)
  print(tfds_builder.describe(str(dataset_dir)))


if __name__ == "__main__":
  app.run(main)
