"""The peak FLOP rate of a device, the denominator of a step's MFU.

Accelerators: the vendor's dense bfloat16 matrix peak per chip (the usual MFU convention).
A CPU has no such figure that holds across machines, so its peak is the float32 matmul rate
measured on the spot (a 2048 x 2048 matmul, best of five): an MFU relative to what this CPU
reaches on dense matmuls.
"""

import time

import jax
import jax.numpy as jnp

# Substrings of `device.device_kind`, most specific first, and dense bf16 FLOP/s per chip.
ACCELERATOR_PEAKS = (
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("GH200", 989e12),
    ("A100", 312e12),
    ("L4", 121e12),
    ("T4", 65e12),
    ("V100", 125e12),
    ("TPU v6", 918e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5e", 197e12),
    ("TPU v5", 459e12),
    ("TPU v4", 275e12),
    ("TPU v3", 123e12),
)


def measured_matmul_flops(device: jax.Device, size: int = 2048, repeats: int = 5) -> float:
  """FLOP/s of a float32 `size` x `size` matmul on `device` (best of `repeats`)."""
  a = jax.device_put(jnp.ones((size, size), jnp.float32), device)
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * size**3 / best


def device_peak_flops(device: jax.Device) -> tuple[float, str]:
  """`(peak FLOP/s, where the figure comes from)` for `device`."""
  for name, peak in ACCELERATOR_PEAKS:
    if name in device.device_kind:
      return peak, f"{device.device_kind}: dense bf16 peak"
  return measured_matmul_flops(device), (
      f"{device.device_kind or device.platform}: float32 2048^2 matmul measured now")
