r"""Contrastive training with the swap as a cloud TPU batch job.

Single host:
  python -m experiments.train --config=swap_tpu --workdir=gs://BUCKET/nar/swap_tpu \
      --config.data.data_dir=gs://BUCKET/tfds
Pod slice (run on every host; `--multihost` calls `jax.distributed.initialize()`):
  gcloud compute tpus tpu-vm ssh NAME --worker=all --command="python -m experiments.train \
      --config=swap_tpu --multihost --workdir=gs://BUCKET/nar/swap_tpu \
      --config.data.data_dir=gs://BUCKET/tfds"

Full-size 128x128 images, a large global batch (negatives from every device), bfloat16 compute
and the top-K swap table, which scales to the full MC2P pool (40 animals). `swap_tpu:exact`
uses the exact streamed swap instead.
"""

from experiments.configs import common


def get_config(arg: str | None = None):
  config = common.base_config()
  config.data.data_dir = ""  # required: --config.data.data_dir=gs://... (a built dataset)
  config.data.name = "mc2p"
  config.data.worker_count = 8
  config.data.preload_neural = False  # full MC2P images do not fit in host memory
  config.model.update(width=256, num_blocks=3, features=256, head_hidden=512, embedding=128,
                      image_channels=(32, 64, 128, 256), dtype="bfloat16")
  config.optim.global_batch_size = 2048
  config.optim.num_train_steps = 50_000
  config.optim.learning_rate = 2e-3
  config.optim.warmup_steps = 1000
  config.swap.mode = "exact" if arg == "exact" else "topk"
  config.swap.topk = 256
  config.swap.pool_chunk = 16384
  config.eval.batch_size = 2048
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.log_every_steps = 100
  return config
