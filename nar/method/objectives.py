"""Objectives of the baselines and the domain-adaptation penalties.

Ours and the multimodal contrastive ablation use `nar.method.losses.symmetric_infonce_loss`. The
baselines of the evaluation train the same neural encoder with other targets:

- SimCLR: InfoNCE between two augmented views of the same neural window (neural only).
- Regression: a decoder predicts the synchronised (normalised) pose window from the features.
- BehaveNet-style: the features predict a discrete behavioural state found without labels
  (k-means on pose windows of the training animals).
- MMD / GRL penalties on the neural features against animal identity, and a lighter one on
  the per-animal feature statistics (`moments`: each animal's feature means and spreads
  against the batch's).

One reference is not self-supervised: `"supervised"` trains the same neural encoder to
predict the action labels of the training animals' windows. It is the action accuracy this
encoder reaches on new animals when told the answer, a ceiling for the methods above.

An optional term of the contrastive objective (`unexplained_variance`) asks every neural
feature to be a linear function of the behaviour features.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

METHODS = ("contrastive", "simclr", "regression", "behavenet", "supervised")
DOMAIN_PENALTIES = ("none", "mmd", "grl", "moments")


def pose_regression_loss(predicted: jax.Array, pose: jax.Array) -> jax.Array:
  """Mean squared error between predicted and true pose windows `[B, T, D]`."""
  return jnp.mean((predicted.astype(jnp.float32) - pose) ** 2)


def nearest_state(pose: jax.Array, centroids: jax.Array) -> jax.Array:
  """`[B]` index of the nearest centroid `[K, T*D]` to each flattened pose window `[B, T, D]`."""
  flat = pose.reshape(pose.shape[0], -1)
  distances = (jnp.sum(flat ** 2, -1, keepdims=True) - 2 * flat @ centroids.T
               + jnp.sum(centroids ** 2, -1)[None])
  return jnp.argmin(distances, axis=-1)


def fit_behaviour_states(pose_windows: np.ndarray, num_states: int, seed: int) -> np.ndarray:
  """K-means centroids `[K, T*D]` of flattened pose windows `[N, T, D]` (no labels used)."""
  from sklearn import cluster  # pylint: disable=g-import-not-at-top
  flat = np.asarray(pose_windows, np.float32).reshape(len(pose_windows), -1)
  if len(flat) < num_states:
    raise ValueError(f"cannot find {num_states} behavioural states in {len(flat)} windows")
  kmeans = cluster.KMeans(num_states, n_init=3, random_state=seed).fit(flat)
  return kmeans.cluster_centers_.astype(np.float32)


def state_classification_loss(logits: jax.Array, states: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), states).mean()


def action_classification_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Cross-entropy of `[B, C]` logits over the windows with a label (`labels >= 0`).

  Unlabelled windows (`nar.data.recording.UNLABELLED`, -1) contribute nothing; a batch without
  any labelled window has loss 0.
  """
  labelled = labels >= 0
  per_window = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), jnp.where(labelled, labels, 0))
  return jnp.sum(jnp.where(labelled, per_window, 0.0)) / jnp.maximum(jnp.sum(labelled), 1)


def labelled_accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Share of the labelled windows (`labels >= 0`) whose top logit is their label."""
  labelled = labels >= 0
  hits = jnp.sum((jnp.argmax(logits, -1) == labels) & labelled)
  return hits / jnp.maximum(jnp.sum(labelled), 1)


def mmd_penalty(features: jax.Array, animal: jax.Array, num_animals: int) -> jax.Array:
  """Squared MMD between each animal's features and the other animals' in the batch.

  Gaussian kernel with the median pairwise distance as bandwidth (not differentiated). The
  penalty averages, over the animals present, MMD²(animal, rest); it is 0 when the feature
  distributions do not depend on the animal.

  Args:
    features: `[B, F]` neural features.
    animal: `[B]` int animal index in `[0, num_animals)`.
    num_animals: number of animal indices (static).
  """
  features = features.astype(jnp.float32)
  squared = jnp.sum((features[:, None] - features[None]) ** 2, -1)
  bandwidth = jax.lax.stop_gradient(jnp.median(squared) + 1e-6)
  kernel = jnp.exp(-squared / bandwidth)
  masks = (animal[None, :] == jnp.arange(num_animals)[:, None]).astype(jnp.float32)  # [A, B]
  counts = masks.sum(-1)
  present = (counts > 0) & (counts < features.shape[0])
  own = masks / jnp.maximum(counts, 1)[:, None]
  rest = (1 - masks) / jnp.maximum(features.shape[0] - counts, 1)[:, None]
  quad = lambda u, v: jnp.einsum("ab,bc,ac->a", u, kernel, v)
  mmd = quad(own, own) + quad(rest, rest) - 2 * quad(own, rest)
  return jnp.sum(jnp.where(present, mmd, 0.0)) / jnp.maximum(present.sum(), 1)


def feature_moments_penalty(features: jax.Array, animal: jax.Array,
                            num_animals: int) -> jax.Array:
  """How far each animal's feature means and spreads lie from the batch's, per feature.

  For every animal in the batch and every feature: the squared gap between the animal's mean
  and the batch mean, in units of the batch's variance, plus the squared gap between the log
  of the animal's std and the log of the batch's. A linear identity probe reads exactly these
  per-animal offsets and scales, which the MMD penalty (`mmd_penalty`) only sees through a
  kernel; this one costs O(B F) rather than O(B^2 F).

  Args:
    features: `[B, F]` neural features.
    animal: `[B]` int animal index in `[0, num_animals)`.
    num_animals: number of animal indices (static).

  Returns:
    A scalar >= 0, averaged over the animals with at least two windows in the batch and over
    the features; 0 when every animal's features have the batch's mean and std.

  Example:
    >>> import jax.numpy as jnp
    >>> animal = jnp.array([0, 0, 1, 1])
    >>> alike = jnp.array([[1.0], [-1.0], [1.0], [-1.0]])
    >>> offset = jnp.array([[2.0], [0.0], [0.0], [-2.0]])  # each animal's mean moved by 1
    >>> float(feature_moments_penalty(alike, animal, 2)) < 1e-6
    True
    >>> float(feature_moments_penalty(offset, animal, 2)) > 0.3
    True
  """
  features = features.astype(jnp.float32)
  masks = (animal[None, :] == jnp.arange(num_animals)[:, None]).astype(jnp.float32)  # [A, B]
  counts = masks.sum(-1)
  present = counts >= 2
  batch_mean = features.mean(0)
  batch_var = features.var(0) + 1e-6
  means = masks @ features / jnp.maximum(counts, 1)[:, None]  # [A, F]
  variances = masks @ (features ** 2) / jnp.maximum(counts, 1)[:, None] - means ** 2
  mean_gap = (means - batch_mean) ** 2 / batch_var
  log_std_gap = (0.5 * (jnp.log(jnp.maximum(variances, 0.0) + 1e-6) - jnp.log(batch_var))) ** 2
  per_animal = jnp.mean(mean_gap + log_std_gap, axis=-1)
  return jnp.sum(jnp.where(present, per_animal, 0.0)) / jnp.maximum(present.sum(), 1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def gradient_reversal(x: jax.Array, scale: float) -> jax.Array:
  """Identity forward; multiplies the gradient by `-scale` backward (Ganin & Lempitsky)."""
  del scale
  return x


def _reversal_forward(x, scale):
  del scale
  return x, None


def _reversal_backward(scale, residual, gradient):
  del residual
  return (-scale * gradient,)


gradient_reversal.defvjp(_reversal_forward, _reversal_backward)


def animal_classification_loss(logits: jax.Array, animal: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), animal).mean()


def unexplained_variance(features: jax.Array, predicted: jax.Array) -> jax.Array:
  """Mean over features of the share of each feature's batch variance `predicted` misses.

  `1 - R²` of every feature column, averaged: each feature counts the same whatever its
  scale, as it does for a probe on standardised features, so a low-variance feature that
  the prediction cannot follow costs as much as a large one.

  Args:
    features: `[B, F]` neural features.
    predicted: `[B, F]` their prediction (e.g. a linear map of the behaviour features).

  Returns:
    A scalar, 0 when every feature is predicted up to an offset, at most 1 for a
    least-squares prediction (a worse one, e.g. an untrained map, can exceed 1).
  """
  features = features.astype(jnp.float32)
  residual = features - predicted.astype(jnp.float32)
  residual = residual - residual.mean(0)
  centred = features - features.mean(0)
  return jnp.mean(jnp.sum(residual ** 2, 0) / (jnp.sum(centred ** 2, 0) + 1e-6))
