r"""A trained baseline at `swap_cpu` size on the default simulated dataset.

  python -m experiments.train --config=baseline_cpu:simclr --workdir=/tmp/nar/simclr_cpu

The argument names the baseline: no_swap, simclr, simclr_mmd, simclr_grl,
regression_recurrent, regression_conv, regression_conv_mmd, regression_conv_grl, behavenet
(see `baselines.py`), or the reference `supervised` (trained on action labels: a ceiling).
"""

from experiments.configs import baselines
from experiments.configs import swap_cpu


def get_config(arg: str | None = None):
  return baselines.apply_baseline(swap_cpu.get_config(), arg)
