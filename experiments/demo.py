r"""The main job on the embedded default data: `make demo`.

  python -m experiments.demo [--workdir=~/.cache/nar/runs/demo] [--config.FIELD=VALUE ...]

Simulates the default dataset (8 animals x 4 trials x 240 s) if absent, writes it in the MC2P
folder layout, reads it back, builds its TFDS shards and prints a summary; then trains the
`swap_cpu` config on it (resuming if the workdir holds checkpoints) and prints the evaluation.
`--config.FIELD=VALUE` overrides a field of `swap_cpu` (e.g. `--config.optim.num_train_steps`).
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from data_prep import default_dataset
from experiments import tables
from nar import logs
from nar import paths
from nar import train
from nar.data import builder as tfds_builder
from nar.data import shards
from nar.train import validate

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "swap_cpu.py"),
    "The training config (swap_cpu); override its fields with --config.FIELD=VALUE.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", os.path.join(paths.default_root(), "runs", "demo"), "Where the run goes.")


def main(argv):
  del argv
  logs.quiet_checkpoint_logs()
  config = _CONFIG.value
  # Simulated only into the default data root; a named data_dir must hold the dataset.
  try:
    default_dataset.simulate_if_missing(config)
    dataset_dir = shards.resolve_dataset_dir(config.data.data_dir, config.data.name)
    print(tfds_builder.describe(str(dataset_dir)))
    results = train.train_and_evaluate(config, _WORKDIR.value)
  except (validate.ConfigError, shards.DatasetNotFoundError) as error:
    sys.exit(f"error: {error}")
  if results.get("preempted"):
    sys.exit(0)
  print(f"run: {_WORKDIR.value}")
  print(tables.format_table({"Ours (swap_cpu)": results["probes"]}))
  print(train.summary_line(results))


if __name__ == "__main__":
  app.run(main)
