"""Contrastive objective: the symmetric InfoNCE of seed eq. 1."""

import jax
import jax.numpy as jnp
import optax


def infonce_loss(z_query: jax.Array, z_key: jax.Array, temperature: float) -> jax.Array:
  """InfoNCE of eq. 1: each query's positive is the key at the same batch position.

  Args:
    z_query: `[B, E]` L2-normalised embeddings (e.g. neural, for the n->b direction).
    z_key: `[B, E]` L2-normalised embeddings of the other modality.
    temperature: tau.

  Returns:
    The mean over the batch of `-log softmax(<z_key, z_query_i> / tau)_i`. Under `jit` with a
    batch sharded over devices, the similarity matrix spans the global batch, so the
    negatives come from every device.

  Example:
    >>> import jax.numpy as jnp
    >>> z = jnp.eye(4)  # four windows, each most similar to its own pair
    >>> round(float(infonce_loss(z, z, temperature=1.0)), 4)
    0.7437
  """
  logits = z_query @ z_key.T / temperature
  labels = jnp.arange(z_query.shape[0])
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def symmetric_infonce_loss(z_neural: jax.Array, z_behaviour: jax.Array,
                           temperature: float) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The n->b InfoNCE plus its b->n twin (averaged), with retrieval accuracies as metrics.

  Example:
    >>> import jax.numpy as jnp
    >>> loss, metrics = symmetric_infonce_loss(jnp.eye(4), jnp.eye(4), temperature=0.1)
    >>> round(float(loss), 4), float(metrics["top1_n2b"])
    (0.0001, 1.0)
  """
  neural_to_behaviour = infonce_loss(z_neural, z_behaviour, temperature)
  behaviour_to_neural = infonce_loss(z_behaviour, z_neural, temperature)
  similarity = z_neural @ z_behaviour.T
  target = jnp.arange(z_neural.shape[0])
  metrics = {
      "loss_n2b": neural_to_behaviour,
      "loss_b2n": behaviour_to_neural,
      "top1_n2b": jnp.mean(jnp.argmax(similarity, axis=1) == target),
      "top1_b2n": jnp.mean(jnp.argmax(similarity, axis=0) == target),
  }
  return 0.5 * (neural_to_behaviour + behaviour_to_neural), metrics


def same_animal_infonce_loss(z_neural: jax.Array, z_behaviour: jax.Array, animal: jax.Array,
                             temperature: float) -> jax.Array:
  """Symmetric InfoNCE whose negatives are the windows of the query's own animal only.

  With negatives of every animal, features that tell animals apart help: another animal's
  window is an easy negative. With negatives of its own animal only, the animal a window comes
  from says nothing about which candidate is its pair, so only what it does can.

  Args:
    z_neural: `[B, E]` L2-normalised neural embeddings.
    z_behaviour: `[B, E]` L2-normalised behaviour embeddings, row i the pair of row i.
    animal: `[B]` int animal of each window.
    temperature: tau.

  Returns:
    The mean of the two directions' losses, each the mean over the batch of
    `-log softmax_j(<z_i, z_j> / tau)_i` over the candidates j of window i's animal (a window
    alone of its animal in the batch has loss 0).

  Example:
    >>> import jax.numpy as jnp
    >>> z = jnp.eye(4)
    >>> animal = jnp.array([0, 0, 1, 1])  # two candidates per query instead of four
    >>> round(float(same_animal_infonce_loss(z, z, animal, temperature=1.0)), 4)
    0.3133
  """
  same = animal[:, None] == animal[None, :]
  labels = jnp.arange(z_neural.shape[0])

  def one_direction(query, key):
    logits = jnp.where(same, query @ key.T / temperature, -jnp.inf)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  return 0.5 * (one_direction(z_neural, z_behaviour) + one_direction(z_behaviour, z_neural))


def partner_infonce_loss(z_neural: jax.Array, partner: jax.Array,
                         temperature: float) -> jax.Array:
  """InfoNCE between neural embeddings of windows and of their partners of another animal.

  Each window's positive is its partner's neural embedding (the behaviour-nearest window of
  another animal in the batch, `nar.method.neural_swap.behaviour_partners`); its negatives are
  the batch's other neural windows, itself excluded. Two animals' neural windows of one
  behaviour must then embed alike, directly rather than through the behaviour embedding.

  Args:
    z_neural: `[B, E]` L2-normalised neural embeddings.
    partner: `[B]` int index of each window's partner, -1 for a window without one (it
      contributes nothing).
    temperature: tau.

  Returns:
    The mean loss over the windows with a partner; 0 when none has one.

  Example:
    >>> import jax.numpy as jnp
    >>> z = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    >>> pairs_alike = partner_infonce_loss(z, jnp.array([1, 0, 3, 2]), temperature=0.1)
    >>> pairs_apart = partner_infonce_loss(z, jnp.array([2, 3, 0, 1]), temperature=0.1)
    >>> bool(pairs_alike < pairs_apart)
    True
  """
  batch = z_neural.shape[0]
  logits = z_neural @ z_neural.T / temperature
  logits = jnp.where(jnp.eye(batch, dtype=bool), -jnp.inf, logits)
  has_partner = partner >= 0
  per_window = optax.softmax_cross_entropy_with_integer_labels(
      logits, jnp.where(has_partner, partner, (jnp.arange(batch) + 1) % batch))
  return (jnp.sum(jnp.where(has_partner, per_window, 0.0))
          / jnp.maximum(jnp.sum(has_partner), 1))
