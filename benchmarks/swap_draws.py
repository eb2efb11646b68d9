r"""What the swap draws: how far the swapped frames lie and how often they share the action.

  python -m benchmarks.swap_draws [--config=locomotion_cpu] [--temperatures=1,0.3,0.1,0.03]

For `--queries` frames of the training animals of the config's dataset, each with a target
animal drawn as the swap draws it (another training animal), computes the exact distribution
of seed eq. 2, P(l) ∝ exp(-d(b_l, q) / T) over every valid frame l of the target (with the
behaviour's distance weights), at each temperature T, and prints medians over the queries of:

- the distance to the nearest frame of the target, and the expected distance of a swapped
  frame, E_P[d]; beside them the expected distance of a uniformly drawn frame (T = inf);
- the effective neighbourhood, exp(entropy of P), in frames and as a share of the pool;
- the probability mass that the K nearest frames hold (what a top-K table keeps);
- P(same action): the chance that the swapped frame has the query's action, over labelled
  queries and labelled pool frames, against the same for a uniform draw (chance).

No bars: the figures choose the temperature (config `swap.temperature`) and the distance.
"""

import importlib

from absl import app
from absl import flags
import numpy as np

from data_prep import default_dataset
from nar import train
from nar.data import pipeline
from nar.method import swap_draws

_CONFIG = flags.DEFINE_string("config", "locomotion_cpu", "Config name in experiments/configs.")
_TEMPERATURES = flags.DEFINE_list("temperatures", ["1", "0.3", "0.1", "0.03"],
                                  "Swap temperatures to compare.")
_QUERIES = flags.DEFINE_integer("queries", 512, "Query frames (with their target animals).")
_TOP_K = flags.DEFINE_integer("top_k", 64, "K of the top-K mass figure.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the queries.")


def main(argv):
  del argv
  config = importlib.import_module(f"experiments.configs.{_CONFIG.value}").get_config()
  default_dataset.simulate_if_missing(config)
  inputs = train.create_input(config)
  dataset = inputs.dataset
  animals = list(inputs.training_animals)
  frames = pipeline.collect_pose_frames(dataset, inputs.normalizer, animals)
  offsets = pipeline.animal_frame_offsets(dataset)
  labels = dataset.behaviour_index.labels
  pools, pool_labels = [], []
  for animal, animal_frames, valid in zip(frames.animals, frames.frames, frames.valid):
    animal_labels = labels[offsets[animal]:offsets[animal] + len(animal_frames)]
    pools.append(np.asarray(animal_frames, np.float64)[valid])
    pool_labels.append(animal_labels[valid])
  weights = dataset.behaviour_spec.swap_feature_weights()
  scale = None if weights is None else np.sqrt(np.asarray(weights, np.float64))
  rng = np.random.default_rng(_SEED.value)
  sources = rng.integers(0, len(animals), _QUERIES.value)
  picks = [rng.integers(0, len(pools[s])) for s in sources]
  queries = np.stack([pools[s][i] for s, i in zip(sources, picks)])
  query_labels = np.array([pool_labels[s][i] for s, i in zip(sources, picks)])
  other = rng.integers(0, len(animals) - 1, _QUERIES.value)
  targets = other + (other >= sources)
  print(f"config {_CONFIG.value}: {len(animals)} training animals, "
        f"{sum(len(p) for p in pools):,} valid pool frames of {queries.shape[1]} dims "
        f"(median {int(np.median([len(p) for p in pools])):,} per animal); {_QUERIES.value} "
        f"queries; the config's swap.temperature: {config.swap.temperature}")
  header = (f"{'T':>6s} {'nearest':>8s} {'E[d]':>8s} {'neighbourhood':>20s} "
            f"{'top-' + str(_TOP_K.value) + ' mass':>13s} {'same action':>12s}")
  print(header)
  for temperature in [float(t) for t in _TEMPERATURES.value] + [np.inf]:
    stats = swap_draws.draw_statistics(queries, query_labels, pools, pool_labels, targets,
                                 temperature, _TOP_K.value, scale)
    name = "inf" if not np.isfinite(temperature) else f"{temperature:g}"
    print(f"{name:>6s} {stats['nearest']:8.3f} {stats['expected_distance']:8.3f} "
          f"{stats['neighbourhood_frames']:9.0f} frames {100 * stats['neighbourhood_share']:5.1f}% "
          f"{100 * stats['top_k_mass']:12.1f}% {100 * stats['same_action']:11.1f}%")
  print("T = inf is a uniform draw over the target's frames: its 'same action' is chance.")


if __name__ == "__main__":
  app.run(main)
