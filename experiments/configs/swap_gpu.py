r"""Contrastive training with the swap on one GPU (e.g. a free Colab GPU).

  pip install -e '.[cuda]'
  python -m experiments.train --config=swap_gpu --workdir=/content/nar/swap_gpu

Simulates and builds the default dataset when absent (64x64 images); larger batch and model
than `swap_cpu`, bfloat16 compute. `swap_gpu:real` expects `--config.data.data_dir` pointing at
a built dataset of real recordings.
"""

from experiments.configs import common
from nar import paths


def get_config(arg: str | None = None):
  config = common.base_config()
  config.data.data_dir = paths.default_data_dir()
  config.data.simulate_if_missing = arg != "real"
  config.data.worker_count = 2
  config.model.update(width=128, features=128, head_hidden=256, embedding=128,
                      image_channels=(32, 64, 128), dtype="bfloat16")
  config.optim.global_batch_size = 256
  config.optim.num_train_steps = 5000
  config.swap.pool_chunk = 8192
  config.checkpoint_every_steps = 500
  config.log_every_steps = 50
  return config
