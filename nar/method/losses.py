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
