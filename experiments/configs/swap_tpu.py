r"""Contrastive training with the swap as a cloud TPU batch job.

Single host:
  python -m experiments.train --config=swap_tpu --workdir=gs://BUCKET/nar/swap_tpu \
      --config.data.data_dir=gs://BUCKET/tfds
Pod slice (run on every host; `--multihost` calls `jax.distributed.initialize()`):
  gcloud compute tpus tpu-vm ssh NAME --worker=all --command="python -m experiments.train \
      --config=swap_tpu --multihost --workdir=gs://BUCKET/nar/swap_tpu \
      --config.data.data_dir=gs://BUCKET/tfds"

Full-size 128x128 images, a large global batch (negatives from every device), bfloat16 compute
and the exact streamed swap (`nar.method.swap`): its memory is a pool chunk, whatever the pool, and
its cost at MC2P scale (2048 windows x 32 frames against ~190,000 frames of one other animal,
90 dims: ~2e12 FLOPs a step) is a fraction of the model's (~1e13). Its pose bank, every
training frame, is replicated on each device: 2.7 GB for MC2P's 40 animals x 190,000 frames
(`--config.swap.pool_stride=3`, the 33 Hz frames a window uses, a third of that).
`swap_tpu:topk` draws from a precomputed top-K table instead, which is replicated on each
device too and holds A x M x A x K x 8 bytes (animals A, frames per animal M): 1.8 GB for the
simulated 128 px dataset at K = 256, far beyond any device's memory at MC2P scale; it suits
medium pools only.
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
  # "exact", the default, is accepted too: commands written when top-K was the default name it.
  if arg not in (None, "exact", "topk"):
    raise ValueError(f"swap_tpu takes no argument, 'exact' or 'topk', got {arg!r}")
  config.swap.mode = "topk" if arg == "topk" else "exact"
  config.swap.topk = 256
  config.swap.pool_chunk = 16384
  config.eval.batch_size = 2048
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.log_every_steps = 100
  return config
