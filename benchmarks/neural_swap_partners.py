r"""How often the neural swap's partner does the same action, by batch size and comparison.

  python -m benchmarks.neural_swap_partners [--data_dir=...] [--batches=20]

The neural swap (`nar.method.neural_swap`) exchanges a window's neural data for that of the batch's
behaviour-nearest window of another animal. This draws random batches of windows chosen
as training chooses them (resting dropped, unlabelled windows kept) and prints, per batch
size, over the pairs whose two windows are labelled, the fraction whose partner has the same
action when partners are compared through
`behaviour_descriptor` (the reference: the flattened behaviour window, frame by frame), and
the fraction two random labelled windows of the batch would share (the chance level); also the
fraction under the `neural_partner_quantile` 0.5 filter (the closer half of the pairs). The
default dataset is simulated and built first if absent.
"""

from absl import app
from absl import flags
import jax.numpy as jnp
import numpy as np

from data_prep import default_dataset
from nar.data import pipeline
from nar.data import windows
from nar.method import neural_swap

_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir (default dataset if unset).")
_NAME = flags.DEFINE_string("name", "default", "Dataset name inside data_dir.")
_BATCHES = flags.DEFINE_integer("batches", 20, "Random batches per batch size.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["64", "256", "1024"], "Batch sizes.")


def _agreement(partner: np.ndarray, label: np.ndarray, keep: np.ndarray | None = None):
  """Same-action fraction over the windows (in `keep`) whose partner and own label are known."""
  keep = (partner >= 0) if keep is None else keep & (partner >= 0)
  keep &= (label >= 0) & (label[np.maximum(partner, 0)] >= 0)
  return float(np.mean(label[partner[keep]] == label[keep]))


def main(argv):
  del argv
  dataset = default_dataset.open_dataset(_DATA_DIR.value, _NAME.value)
  spec = windows.WindowSpec()
  normalizer = pipeline.fit_pose_normalizer(dataset, dataset.animals)
  index = pipeline.select_windows(dataset, spec, drop_classes=("resting",))
  # Only behaviour is read: no neural keys.
  source = pipeline.WindowSource(dataset, index, spec, normalizer, neural_keys=())
  rng = np.random.default_rng(0)
  print(f"dataset: {dataset.path}; {len(source)} windows of {len(dataset.animals)} "
        f"animals; {_BATCHES.value} random batches per size")
  print("| batch | same action: descriptor | flattened window | descriptor, closer half "
        "| chance |")
  print("|---|---|---|---|---|")
  for batch_size in map(int, _BATCH_SIZES.value):
    scores = []
    for _ in range(_BATCHES.value):
      items = rng.choice(len(source), batch_size, replace=False)
      batch = [source[int(i)] for i in items]
      pose = jnp.asarray(np.stack([w["pose"] for w in batch]))
      animal = jnp.asarray(np.array([w["animal"] for w in batch], np.int32))
      label = np.array([w["label"] for w in batch])
      partner, distance = map(np.asarray, neural_swap.behaviour_partners(pose, animal))
      closer = distance <= np.quantile(distance[np.isfinite(distance)], 0.5)
      # A window given as one frame (twice: the descriptor needs two) has the flattened
      # window as its descriptor's mean and zero spread and speed.
      flat_partner, _ = neural_swap.behaviour_partners(
          pose.reshape(batch_size, 1, -1).repeat(2, axis=1), animal)
      counts = np.bincount(label[label >= 0]) / np.sum(label >= 0)
      scores.append((_agreement(partner, label), _agreement(np.asarray(flat_partner), label),
                     _agreement(partner, label, closer), float(np.sum(counts**2))))
    descriptor, flat, close, chance = np.mean(scores, axis=0) * 100
    print(f"| {batch_size} | {descriptor:.1f} % | {flat:.1f} % | {close:.1f} % | "
          f"{chance:.1f} % |")


if __name__ == "__main__":
  app.run(main)
