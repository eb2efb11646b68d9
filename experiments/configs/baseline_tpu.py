r"""A trained baseline at `swap_tpu` size, as a cloud TPU batch job.

  python -m experiments.train --config=baseline_tpu:regression_conv \
      --workdir=gs://BUCKET/nar/regression_conv --config.data.data_dir=gs://BUCKET/tfds

The argument names the baseline (see `baselines.py`); add `--multihost` on a pod slice.
"""

from experiments.configs import baselines
from experiments.configs import swap_tpu


def get_config(arg: str | None = None):
  return baselines.apply_baseline(swap_tpu.get_config(), arg)
