"""Device-resident windows: a dataset's frames on the accelerator, batches gathered in the step.

When the frames the training windows read fit in a share of device memory, they are placed on
the devices once (replicated over the mesh) and the host only draws window indices: the
jitted step gathers its batch from them (`gather_batch`), so no window is cut, copied or
transferred per step. The indices come from the same grain pipeline as the windows would
(`nar.data.pipeline.make_loader(..., read_windows=False)`): the same windows in the same
order, checkpointed the same way. Larger data keeps the host path (windows read by grain
and transferred each step). `choose_path` makes the choice and says why.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from nar.data import pipeline

# The settings of `config.data.input_path`.
INPUT_PATHS = ("auto", "device", "host")


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=("pose", "neural", "pose_start", "neural_start", "bank_start", "animal",
                 "label", "pose_offsets", "bank_row_of_animal"),
    meta_fields=("neural_key", "neural_frames"))
@dataclasses.dataclass(frozen=True)
class DeviceWindows:
  """The frames of a window source and where its windows start (`WindowSource.frame_arrays`).

  A pytree of device arrays, passed to the jitted step with its other constants.
  """

  pose: jax.Array
  neural: jax.Array
  pose_start: jax.Array
  neural_start: jax.Array
  bank_start: jax.Array
  animal: jax.Array
  label: jax.Array
  pose_offsets: jax.Array
  bank_row_of_animal: jax.Array
  neural_key: str
  neural_frames: int

  def __len__(self) -> int:
    return int(self.pose_start.shape[0])

  @property
  def nbytes(self) -> int:
    """Bytes of the arrays (on each device: they are replicated)."""
    return sum(int(np.prod(leaf.shape)) * leaf.dtype.itemsize
               for leaf in jax.tree.leaves(self))


def device_memory_bytes(device: jax.Device) -> int:
  """The memory of `device`: its allocator's limit, or the host's memory for a CPU."""
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def choose_path(setting, needed_bytes: int, memory_fraction: float,
                device: jax.Device) -> tuple[bool, str]:
  """Whether the windows live on the device, and why.

  Example:
    >>> import jax
    >>> resident, why = choose_path("auto", 2**20, 0.25, jax.devices()[0])
    >>> resident, why.startswith("device-resident")
    (True, True)

  Args:
    setting: `config.data.input_path`: "auto" (resident when `needed_bytes` fit in
      `memory_fraction` of the device's memory), "device" (resident) or "host".
    needed_bytes: `WindowSource.frame_arrays_bytes` of the training windows.
    memory_fraction: share of the device's memory the frames may take, in (0, 1].
    device: a device of the mesh.

  Returns:
    `(resident, reason)`, the reason a sentence for the log.
  """
  if setting not in INPUT_PATHS:
    raise ValueError(f"data.input_path must be one of {INPUT_PATHS}, got {setting!r}")
  if not 0.0 < memory_fraction <= 1.0:
    raise ValueError(f"data.device_memory_fraction must lie in (0, 1], got {memory_fraction!r}")
  size = f"{needed_bytes / 2**20:.1f} MiB of frames"
  if setting == "host":
    return False, f"host path: data.input_path='host' ({size} read by grain every step)"
  if setting == "device":
    return True, f"device-resident: data.input_path='device' ({size} on every device)"
  budget = memory_fraction * device_memory_bytes(device)
  share = f"{memory_fraction:.0%} of {device.platform} memory ({budget / 2**30:.1f} GiB)"
  if needed_bytes <= budget:
    return True, f"device-resident: {size} fit in {share}; the step gathers its windows"
  return False, f"host path: {size} exceed {share}; grain reads the windows every step"


def make_device_windows(source: pipeline.WindowSource, neural_key: str,
                        bank_row_of_animal: np.ndarray,
                        mesh: jax.sharding.Mesh) -> DeviceWindows:
  """Places the frames of `source` on every device of `mesh` (replicated).

  Every process builds the same arrays from its copy of the dataset, so the placement works
  across hosts too.

  Args:
    source: the training windows.
    neural_key: the neural array the step reads.
    bank_row_of_animal: `[num_animals]` bank row of every dataset animal, -1 for animals not
      in the swap's bank (`create_step_constants`).
    mesh: the training mesh.
  """
  arrays = source.frame_arrays(neural_key)
  neural_frames = int(source[0][neural_key].shape[0])
  arrays["bank_row_of_animal"] = np.asarray(bank_row_of_animal, np.int32)
  replicated = jax.sharding.NamedSharding(mesh, jax.P())

  def place(value):
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, replicated, lambda index: value[index])

  return DeviceWindows(**{name: place(value) for name, value in arrays.items()},
                       neural_key=neural_key, neural_frames=neural_frames)


def gather_batch(windows: DeviceWindows, window_index: jax.Array, *,
                 labels: bool = False) -> dict[str, jax.Array]:
  """The step's batch of windows `window_index` `[B]`, gathered on the device (traceable).

  Holds what `nar.train.step.step_batch` makes of `read_batch(window_index)` on the host:
  `pose`, the neural key, `bank_frame_index`, `animal`, `bank_animal` and, with `labels`,
  `label`.
  """
  pose_frames = windows.pose_start[window_index][:, None] + windows.pose_offsets[None]
  neural_frames = (windows.neural_start[window_index][:, None]
                   + jnp.arange(windows.neural_frames, dtype=jnp.int32)[None])
  animal = windows.animal[window_index]
  batch = {
      "pose": windows.pose[pose_frames],
      windows.neural_key: windows.neural[neural_frames],
      "bank_frame_index": windows.bank_start[window_index][:, None] + windows.pose_offsets[None],
      "animal": animal,
      "bank_animal": windows.bank_row_of_animal[animal],
  }
  if labels:
    batch["label"] = windows.label[window_index]
  return batch
