r"""The `swap_tpu` preset at its real shapes, run on simulated devices of a CPU.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \
      python -m benchmarks.tpu_preset [--steps=50] [--global_batch=64]

Trains `swap_tpu` (width 256, 128 x 128 images, bfloat16, the exact streamed swap with its
16,384-frame pool chunks) through `nar.train.train_and_evaluate` on a small simulated 128-px
dataset, over a mesh of every device, for `--steps` steps, and prints the step time and the
loss. Then it compiles (without running) the step at the preset's own global batch of 2048
and prints XLA's memory analysis per device, so one sees what a device of the slice must hold.
A CPU cannot run the real batch (its activations alone exceed a CI machine's memory), so the
run's batch is `--global_batch` (a multiple of the device count); every other shape is the
preset's.
"""

import json
import pathlib
import tempfile
import time

from absl import app
from absl import flags
import jax
import numpy as np

from experiments.configs import swap_tpu
from nar import simulation
from nar import train
from nar.data import builder

_STEPS = flags.DEFINE_integer("steps", 50, "Training steps.")
_GLOBAL_BATCH = flags.DEFINE_integer("global_batch", 64, "Global batch of the run.")
_ANIMALS = flags.DEFINE_integer("animals", 4, "Simulated animals (one trial each).")
_TRIAL_SECONDS = flags.DEFINE_float("trial_seconds", 20.0, "Seconds of a simulated trial.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Where the dataset is built (default: temp).")


def _build_dataset(data_dir: pathlib.Path) -> None:
  config = simulation.SimulatorConfig(num_animals=_ANIMALS.value, trials_per_animal=1,
                                      trial_seconds=_TRIAL_SECONDS.value, image_size=128)
  recordings = simulation.simulate_dataset(config, seed=0).recordings
  builder.build_dataset(recordings, str(data_dir), config_name="pose_128px_check")


def _memory_at_real_batch(config, inputs) -> dict[str, float]:
  """XLA's per-device memory analysis of the step compiled at the preset's global batch."""
  real_batch = swap_tpu.get_config().optim.global_batch_size
  graphdef, tx, state = train.create_train_state(config, inputs)
  constants, _ = train.create_step_constants(config, inputs)
  mesh = train.make_mesh()
  step = train.compile_train_step(graphdef, tx, config, inputs.neural_key, mesh,
                                  len(inputs.dataset.animals),
                                  behaviour_spec=inputs.dataset.behaviour_spec)
  sample = train.step_batch({k: np.asarray(v)[None] for k, v in inputs.train_source[0].items()},
                            inputs.neural_key, np.zeros(len(inputs.dataset.animals), np.int32))
  batch = {k: jax.ShapeDtypeStruct((real_batch,) + v.shape[1:], v.dtype)
           for k, v in sample.items()}
  memory = step.lower(state, batch, constants).compile().memory_analysis()
  gib = 2.0**30
  return {"global_batch": real_batch,
          "argument_gib": memory.argument_size_in_bytes / gib,
          "temp_gib": memory.temp_size_in_bytes / gib,
          "output_gib": memory.output_size_in_bytes / gib}


def main(argv):
  del argv
  with tempfile.TemporaryDirectory() as scratch:
    data_dir = pathlib.Path(_DATA_DIR.value or scratch) / "tfds"
    start = time.perf_counter()
    if not (data_dir / "nar_recordings" / "pose_128px_check").exists():
      _build_dataset(data_dir)
    print(f"dataset: {_ANIMALS.value} animals x {_TRIAL_SECONDS.value:.0f} s at 128 x 128 px, "
          f"built in {time.perf_counter() - start:.0f} s")
    config = swap_tpu.get_config()
    with config.unlocked():
      config.data.update(data_dir=str(data_dir), name="pose_128px_check", preload_neural=True,
                         worker_count=0)
      config.optim.update(num_train_steps=_STEPS.value, global_batch_size=_GLOBAL_BATCH.value,
                          warmup_steps=min(config.optim.warmup_steps, _STEPS.value // 2))
      config.update(log_every_steps=max(1, _STEPS.value // 5),
                    checkpoint_every_steps=_STEPS.value)
      config.eval.enabled = False
    print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}; swap_tpu shapes: "
          f"model width {config.model.width}, {config.model.dtype}, pool chunk "
          f"{config.swap.pool_chunk}; global batch {_GLOBAL_BATCH.value} (the preset's: "
          f"{swap_tpu.get_config().optim.global_batch_size})")
    workdir = pathlib.Path(scratch) / "run"
    start = time.perf_counter()
    train.train_and_evaluate(config, str(workdir))
    seconds = time.perf_counter() - start
    metrics = [json.loads(line) for line in
               (workdir / "metrics.jsonl").read_text().splitlines() if line]
    last = metrics[-1]
    print(f"trained {last['step']} steps in {seconds:.0f} s (compilation included); last "
          f"logged step: loss {last['loss']:.4f}, "
          f"{last.get('windows_per_second', float('nan')):.1f} windows/s, swapped fraction "
          f"{last.get('swapped_fraction', float('nan')):.2f}")
    if not all(np.isfinite(m["loss"]) for m in metrics):
      raise SystemExit("the loss turned non-finite")
    inputs = train.create_input(config)
    memory = _memory_at_real_batch(config, inputs)
    print(f"per device at the preset's global batch {memory['global_batch']} over "
          f"{jax.device_count()} devices (XLA memory analysis): arguments "
          f"{memory['argument_gib']:.2f} GiB, temporaries {memory['temp_gib']:.2f} GiB, "
          f"outputs {memory['output_gib']:.2f} GiB")


if __name__ == "__main__":
  app.run(main)
