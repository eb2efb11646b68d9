"""Comparisons of trained parameters that hold on every backend the tests run on."""

import jax
import numpy as np


def assert_same_training_result(actual, desired) -> None:
  """Asserts that two parameter trees came out of the same training computation.

  On CPU, XLA's kernels are deterministic, so the trees must be bit-identical. GPU kernels
  accumulate some reductions (convolution gradients, scatter-adds) in a nondeterministic
  order, so the same steps agree only to float noise there (about 1e-6 after a few steps,
  1e-4 after the hundred steps of an input-layer fit, on an H200): off CPU the trees must
  agree to rtol 1e-2, atol 1e-4, far closer than another seed or batch order leaves them.

  Args:
    actual: a pytree of arrays.
    desired: a pytree of the same structure.
  """
  if jax.default_backend() == "cpu":
    jax.tree.map(np.testing.assert_array_equal, actual, desired)
  else:
    jax.tree.map(lambda a, d: np.testing.assert_allclose(a, d, rtol=1e-2, atol=1e-4),
                 actual, desired)
