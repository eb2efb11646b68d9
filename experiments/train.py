r"""Trains and evaluates a NAR model.

  python -m experiments.train --config=swap_cpu --workdir=/tmp/nar/swap_cpu
  python -m experiments.train --config=swap_tpu --workdir=gs://bucket/run \
      --config.data.data_dir=gs://bucket/tfds

`--config=NAME` resolves to `experiments/configs/NAME.py` (a path works too; `NAME:arg` passes
`arg` to the config's `get_config`); `--config.a.b=value` overrides a field.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from nar import logs
from nar import train

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def resolve_config_argument(argv: list[str]) -> list[str]:
  """Rewrites `--config=NAME[:arg]` into the path of `experiments/configs/NAME.py`."""
  resolved = []
  for arg in argv:
    if arg.startswith("--config="):
      name, _, variant = arg[len("--config="):].partition(":")
      if not name.endswith(".py") and os.sep not in name:
        path = os.path.join(CONFIG_DIR, name + ".py")
        if not os.path.exists(path):
          known = sorted(f[:-3] for f in os.listdir(CONFIG_DIR)
                         if f.endswith(".py") and not f.startswith("_") and f != "common.py")
          raise SystemExit(f"unknown config {name!r}; known configs: {', '.join(known)}")
        arg = "--config=" + path + (":" + variant if variant else "")
    resolved.append(arg)
  return resolved


_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints and results go.",
                               required=True)
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() (one process per host).")


def main(argv):
  del argv
  logs.quiet_checkpoint_logs()
  if _MULTIHOST.value:
    jax.distributed.initialize()
  config = _CONFIG.value
  if not config.data.data_dir:
    raise app.UsageError("config.data.data_dir is empty: pass --config.data.data_dir=...")
  logging.info("Process %d of %d; devices: %s", jax.process_index(), jax.process_count(),
               jax.devices())
  if config.data.simulate_if_missing:
    from data_prep import default_dataset  # pylint: disable=g-import-not-at-top
    default_dataset.ensure_dataset(data_dir=config.data.data_dir, name=config.data.name)
  results = train.train_and_evaluate(config, _WORKDIR.value)
  if jax.process_index() == 0:
    print(train.summary_line(results))


if __name__ == "__main__":
  sys.argv = resolve_config_argument(sys.argv)
  app.run(main)
