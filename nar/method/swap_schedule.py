"""Swap schedules: the swap probability as a function of the training step.

A constant probability swaps from the first step, when the encoders have learnt nothing yet
and a swapped target is only noise. A `ramp` lets the encoders first learn to pair each
neural window with its own behaviour and then raises the swap linearly; `delayed` switches
it on at once after the same share of training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SCHEDULES = ("constant", "ramp", "delayed")


def check_schedule(schedule: str, fraction: float) -> None:
  """Raises ValueError for an unknown schedule or a fraction outside [0, 1]."""
  if schedule not in SCHEDULES:
    raise ValueError(f"unknown swap schedule {schedule!r}; choose one of {SCHEDULES}")
  if not 0.0 <= fraction <= 1.0:
    raise ValueError(f"the swap schedule's fraction must lie in [0, 1], got {fraction!r}")


def scheduled_probability(step: jax.Array, probability: float, *, schedule: str,
                          fraction: float, num_steps: int) -> jax.Array:
  """The swap probability at a training step.

  Args:
    step: the (traced) step, counting from 0.
    probability: the probability the schedule reaches.
    schedule: "constant" (`probability` throughout), "ramp" (linear from 0 at step 0 to
      `probability` at `fraction` of `num_steps`, then constant) or "delayed" (0 before
      `fraction` of `num_steps`, `probability` from there on).
    fraction: in [0, 1], the share of training the ramp or the delay lasts.
    num_steps: the run's number of training steps.

  Returns:
    A float32 scalar in [0, probability].

  Example:
    >>> steps = [0, 25, 50, 99]
    >>> [float(scheduled_probability(s, 0.5, schedule="ramp", fraction=0.5, num_steps=100))
    ...  for s in steps]
    [0.0, 0.25, 0.5, 0.5]
    >>> [float(scheduled_probability(s, 0.5, schedule="delayed", fraction=0.5, num_steps=100))
    ...  for s in steps]
    [0.0, 0.0, 0.5, 0.5]
  """
  check_schedule(schedule, fraction)
  probability = jnp.float32(probability)
  if schedule == "constant" or fraction == 0.0:
    return probability
  progress = jnp.asarray(step, jnp.float32) / (fraction * max(num_steps, 1))
  if schedule == "ramp":
    return probability * jnp.clip(progress, 0.0, 1.0)
  return jnp.where(progress >= 1.0, probability, jnp.float32(0.0))
