r"""Trains and evaluates a NAR model.

  python -m experiments.train --config=swap_cpu --workdir=/tmp/nar/swap_cpu
  python -m experiments.train --config=swap_tpu --workdir=gs://bucket/run \
      --config.data.data_dir=gs://bucket/tfds
  # two processes on one machine (CPU), e.g. to try a multi-host job:
  python -m experiments.train --config=locomotion_cpu:smoke --workdir=/tmp/nar/two \
      --multihost --coordinator_address=localhost:12355 --num_processes=2 --process_id=0 &
  python -m experiments.train --config=locomotion_cpu:smoke --workdir=/tmp/nar/two \
      --multihost --coordinator_address=localhost:12355 --num_processes=2 --process_id=1

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
from nar.data import recording
from nar.data import shards
from nar.train import loop
from nar.train import validate

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
# The files of CONFIG_DIR whose `get_config` returns a training config (the others hold the
# baselines' and the reproduction's definitions).
TRAINING_CONFIGS = ("swap_cpu", "swap_gpu", "swap_tpu", "locomotion_cpu", "baseline_cpu",
                    "baseline_tpu")


def resolve_config_argument(argv: list[str]) -> list[str]:
  """Rewrites `--config=NAME[:arg]` into the path of `experiments/configs/NAME.py`."""
  resolved = []
  for arg in argv:
    if arg.startswith("--config="):
      name, _, variant = arg[len("--config="):].partition(":")
      if not name.endswith(".py") and os.sep not in name:
        path = os.path.join(CONFIG_DIR, name + ".py")
        if name not in TRAINING_CONFIGS or not os.path.exists(path):
          raise SystemExit(f"unknown config {name!r}; known configs: "
                           f"{', '.join(TRAINING_CONFIGS)}")
        arg = "--config=" + path + (":" + variant if variant else "")
    resolved.append(arg)
  return resolved


_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints and results go.",
                               required=True)
_MULTIHOST = flags.DEFINE_bool(
    "multihost", False, "Call jax.distributed.initialize() (one process per host). On a TPU "
    "pod slice or a SLURM/Kubernetes job it finds its peers itself; elsewhere pass "
    "--coordinator_address, --num_processes and --process_id.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, for --multihost outside a TPU pod.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes of a --multihost job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in the job.")


_VERBOSE = flags.DEFINE_bool("verbose", False, "Show the traceback of an input error.")

# Errors of the user's input or of the run's files: printed as one line (--verbose: the
# traceback), each naming the file or field and what to do.
INPUT_ERRORS = (validate.ConfigError, loop.NonFiniteError, loop.CheckpointError,
                shards.DatasetNotFoundError, recording.RecordingError)


def check_data_dir(config) -> None:
  """Simulates the default dataset only into the default data root; a named `data_dir`
  that holds no dataset is an error, not a new simulated one."""
  if not config.data.data_dir:
    raise validate.ConfigError("config.data.data_dir is empty: pass "
                               "--config.data.data_dir=...")
  from data_prep import default_dataset  # pylint: disable=g-import-not-at-top
  default_dataset.simulate_if_missing(config)


def main(argv):
  del argv
  logs.quiet_checkpoint_logs()
  if _MULTIHOST.value:
    # CPU devices of several processes exchange their collectives through gloo (the setting
    # leaves accelerators alone; the backend must not be started before initialize()).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  config = _CONFIG.value
  logging.info("Process %d of %d; devices: %s", jax.process_index(), jax.process_count(),
               jax.devices())
  try:
    check_data_dir(config)
    results = train.train_and_evaluate(config, _WORKDIR.value)
  except INPUT_ERRORS as error:
    if _VERBOSE.value:
      raise
    sys.exit(f"error: {error}")
  if jax.process_index() == 0:
    if results.get("preempted"):
      print(f"stopped at step {results['step']} by a signal; checkpoint saved; rerun the same "
            "command to resume")
    else:
      print(train.summary_line(results))


if __name__ == "__main__":
  sys.argv = resolve_config_argument(sys.argv)
  app.run(main)
