"""The neural side of the swap: neural windows exchanged between animals doing the same thing.

The pose swap (`nar.method.swap`) replaces a window's behaviour by frames of another animal, so the
behaviour an embedding is matched to no longer tells which animal it came from. It leaves the
neural window alone: nothing in the objective asks two animals' neural windows to embed alike,
and the contrastive denominator even rewards features that tell animals apart (windows of
other animals are easier negatives). The paper's journal version swaps "neural and behavioural
data across animals that seem to be performing similar actions"; this module is that neural
half, done within the (global) batch:

  for each window i of animal s, its partner is the window j of another animal whose
  behaviour window is nearest, compared through `behaviour_descriptor` (per feature: the
  mean, the std and the mean absolute frame-to-frame change over the window, Euclidean, with
  the behaviour's declared swap weights where it has any); with probability `probability`,
  window i's neural data is replaced by window j's.

The descriptor ignores where in a gait cycle or grooming stroke each window starts, which a
frame-by-frame distance between windows does not. On the default simulated dataset both find
partners of the same action about as often (93 % against 90 % of labelled pairs in batches of
64, 95 % against 98 % in batches of 1024: `python -m benchmarks.neural_swap_partners`).

The pair (neural of j, behaviour of i) is then a positive: two animals' neural windows of one
behaviour must embed near the same behaviour embedding, so features that identify the animal
cost the objective instead of helping it. Which behaviour window is i's own is untouched (the
pose swap acts on it independently). Partners come from the batch, so larger batches give
closer partners; the exchanged window keeps its own animal index, which a per-animal input
layer needs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def behaviour_descriptor(behaviour_windows: jax.Array) -> jax.Array:
  """`[B, T, D]` normalised behaviour windows -> `[B, 3 D]` descriptors of what is done.

  Per feature: the mean over the window (posture), its std (how far it moves) and the mean
  absolute change between consecutive frames (how fast). Needs T >= 2.
  """
  if behaviour_windows.ndim != 3 or behaviour_windows.shape[1] < 2:
    raise ValueError(f"behaviour_windows must be [B, T, D] with T >= 2, got shape "
                     f"{behaviour_windows.shape}")
  windows = behaviour_windows.astype(jnp.float32)
  speed = jnp.abs(jnp.diff(windows, axis=1)).mean(axis=1)
  return jnp.concatenate([windows.mean(axis=1), windows.std(axis=1), speed], axis=-1)


def behaviour_partners(behaviour_windows: jax.Array, animal: jax.Array,
                       eligible: jax.Array | None = None,
                       distance_scale: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """The nearest window of another animal in the batch, by behaviour.

  Args:
    behaviour_windows: `[B, T, D]` normalised behaviour windows (missing values already 0).
    animal: `[B]` int animal of each window.
    eligible: `[B]` bool, windows that may serve as partners (e.g. training animals only);
      None: all.
    distance_scale: `[D]` sqrt of each feature's declared swap weight (the pose bank's
      `distance_scale`, `nar.method.swap`), so that partners are compared on the features the pose
      swap weighs; None: every feature weighs 1.

  Returns:
    `(partner [B] int32, distance [B] float32)`: the index of each window's partner and the
    Euclidean distance between their descriptors (`behaviour_descriptor`); partner is -1
    (distance +inf) for a window with no eligible window of another animal in the batch.
  """
  if animal.shape != behaviour_windows.shape[:1]:
    raise ValueError(f"animal must be [B]={behaviour_windows.shape[:1]}, got {animal.shape}")
  if distance_scale is not None:
    # Every part of the descriptor is linear in a feature's scale, so scaling the windows by
    # sqrt(w) weighs the squared differences of a feature's three entries by w.
    behaviour_windows = behaviour_windows * distance_scale
  flat = behaviour_descriptor(behaviour_windows)
  sq_norm = jnp.sum(flat * flat, axis=-1)
  sq_dist = jnp.maximum(sq_norm[:, None] + sq_norm[None, :] - 2.0 * jnp.matmul(
      flat, flat.T, precision=jax.lax.Precision.HIGHEST), 0.0)
  allowed = animal[:, None] != animal[None, :]
  if eligible is not None:
    allowed &= eligible[None, :]
  sq_dist = jnp.where(allowed, sq_dist, jnp.inf)
  partner = jnp.argmin(sq_dist, axis=-1).astype(jnp.int32)
  distance = jnp.sqrt(jnp.min(sq_dist, axis=-1))
  has_partner = jnp.isfinite(distance)
  return jnp.where(has_partner, partner, -1), distance


def close_partners(behaviour_windows: jax.Array, animal: jax.Array,
                   partner_quantile: float = 1.0, eligible: jax.Array | None = None,
                   distance_scale: jax.Array | None = None) -> jax.Array:
  """Each window's partner (`behaviour_partners`), kept only among the batch's closest pairs.

  Args:
    behaviour_windows: `[B, T, D]` normalised behaviour windows.
    animal: `[B]` int animal of each window.
    partner_quantile: in (0, 1]: a window keeps its partner only when their distance is at
      most this quantile of the batch's partner distances; 1 keeps every partner.
    eligible: `[B]` bool windows that may serve as partners; None: all.
    distance_scale: `[D]` per-feature scale of the behaviour distance; None: unweighted.

  Returns:
    `[B]` int32 partner index, -1 for a window without a (close enough) partner.

  Example:
    >>> import jax.numpy as jnp
    >>> walk = jnp.linspace(0.0, 1.0, 4)[None, :, None]  # [1, T=4, D=1]
    >>> windows = jnp.concatenate([walk, walk + 0.1, walk * 0, walk * 0 + 0.05])
    >>> close_partners(windows, jnp.array([0, 1, 0, 1])).tolist()
    [1, 0, 3, 2]
    >>> close_partners(windows, jnp.array([0, 0, 0, 0])).tolist()  # one animal: none
    [-1, -1, -1, -1]
  """
  return keep_close(*behaviour_partners(behaviour_windows, animal, eligible, distance_scale),
                    partner_quantile)


def keep_close(partner: jax.Array, distance: jax.Array, quantile: float) -> jax.Array:
  """`[B]` int32: `behaviour_partners`' partners, -1 where one lies beyond `quantile` of the
  batch's partner distances (`close_partners` on partners computed already).

  Example:
    >>> keep_close(jnp.array([1, 0, -1]), jnp.array([0.1, 0.9, jnp.inf]), 0.5).tolist()
    [1, -1, -1]
  """
  return jnp.where(_within_quantile(partner, distance, quantile), partner, -1)


def _within_quantile(partner: jax.Array, distance: jax.Array, quantile: float) -> jax.Array:
  """`[B]` bool: the window has a partner no farther than `quantile` of the batch's partner
  distances (every window with a partner when `quantile` is 1)."""
  close = partner >= 0
  if quantile < 1.0:
    close &= distance <= jnp.nanquantile(jnp.where(close, distance, jnp.nan), quantile)
  return close


def swap_neural_windows(key: jax.Array, neural: jax.Array, animal: jax.Array,
                        behaviour_windows: jax.Array, probability, *,
                        partner_quantile: float = 1.0, eligible: jax.Array | None = None,
                        distance_scale: jax.Array | None = None,
                        partners: tuple[jax.Array, jax.Array] | None = None
                        ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
  """Replaces, with probability `probability`, each neural window by its partner's.

  With `partner_quantile` < 1 only windows whose partner lies within that quantile of the
  batch's partner distances may be exchanged, so that the exchanged pairs are the batch's
  closest (`python -m benchmarks.neural_swap_partners` prints how often partners share the
  action, all of them and the closer half).

  Args:
    key: PRNG key.
    neural: `[B, ...]` neural windows (images or traces).
    animal: `[B]` int animal of each neural window (dataset indices).
    behaviour_windows: `[B, T, D]` the windows' own behaviour (before any pose swap), which
      chooses the partners.
    probability: probability that a window with a close enough partner is exchanged.
    partner_quantile: in (0, 1]: the quantile of the batch's partner distances below which
      a window may be exchanged; 1 lets every window with a partner be.
    eligible: `[B]` bool windows that may serve as partners; None: all.
    distance_scale: `[D]` per-feature scale of the behaviour distance, as in
      `behaviour_partners`; None: unweighted.
    partners: `behaviour_partners(behaviour_windows, animal, eligible, distance_scale)`
      where computed already (the training step shares them with the partner term).

  Returns:
    `(neural, neural_animal, info)`: the batch's neural windows after the exchange, the
    animal each of them now comes from, and `info` with `swapped` `[B]` bool, `partner`
    `[B]` int32 (-1: none) and `distance` `[B]` (behaviour distance to the partner).
  """
  if neural.shape[:1] != animal.shape:
    raise ValueError(f"neural windows {neural.shape} and animal {animal.shape} disagree on B")
  if partners is None:
    partners = behaviour_partners(behaviour_windows, animal, eligible, distance_scale)
  partner, distance = partners
  swapped = (jax.random.bernoulli(key, probability, partner.shape)
             & _within_quantile(partner, distance, partner_quantile))
  source = jnp.where(swapped, partner, jnp.arange(partner.shape[0], dtype=jnp.int32))
  info = {"swapped": swapped, "partner": partner, "distance": distance}
  return neural[source], animal[source], info
