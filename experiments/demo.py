r"""The main job on the embedded default data: `make demo`.

  python -m experiments.demo [--workdir=~/.cache/nar/runs/demo]

Simulates the default dataset (8 animals x 4 trials x 240 s) if absent, writes it in the MC2P
folder layout, reads it back, builds its TFDS shards and prints a summary; then trains the
`swap_cpu` config on it (resuming if the workdir holds checkpoints) and prints the evaluation.
"""

import os

from absl import app
from absl import flags

from data_prep import default_dataset
from data_prep import tfds_builder
from experiments.configs import swap_cpu
from nar.eval import protocol as protocol_lib
from nar import logs
from nar import paths
from nar import train

_WORKDIR = flags.DEFINE_string(
    "workdir", os.path.join(paths.default_root(), "runs", "demo"), "Where the run goes.")


def main(argv):
  del argv
  logs.quiet_checkpoint_logs()
  config = swap_cpu.get_config()
  dataset_dir = default_dataset.ensure_dataset(data_dir=config.data.data_dir,
                                               name=config.data.name)
  print(tfds_builder.describe(str(dataset_dir)))
  results = train.train_and_evaluate(config, _WORKDIR.value)
  print(f"run: {_WORKDIR.value}")
  print(protocol_lib.format_table({"Ours (swap_cpu)": results["probes"]}))
  print(train.summary_line(results))


if __name__ == "__main__":
  app.run(main)
