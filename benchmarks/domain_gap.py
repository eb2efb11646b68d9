r"""The domain gap of a dataset: linear probes on raw neural windows ("Neural (linear) raw").

  python -m benchmarks.domain_gap [--data_dir=...] [--num_held_out=2]

Runs the probe suite of `nar.eval.protocol` on the raw ΔF/F windows (each window averaged over
time and flattened) with the same splits as training configs use, and prints the seed's
tables. On a dataset with the paper's domain gap, identity is near 100 % and multi-animal
action is near chance while single-animal action is clearly above it. The default dataset is
simulated and built first if absent.
"""

from absl import app
from absl import flags

from data_prep import default_dataset
from experiments import tables
from nar.data import pipeline
from nar.data import windows
from nar.eval import protocol as protocol_lib
from nar.eval import raw_features

_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir (default dataset if unset).")
_NAME = flags.DEFINE_string("name", "default", "Dataset name inside data_dir.")
_NUM_HELD_OUT = flags.DEFINE_integer("num_held_out", 2, "Held-out animals.")
_SPLIT_SEED = flags.DEFINE_integer("split_seed", 0, "Seed of the held-out animals' draw.")
_HOP = flags.DEFINE_integer("hop", 80,
                            "Keep every hop-th window (80: the probes' hop of swap_cpu).")


def main(argv):
  del argv
  dataset = default_dataset.open_dataset(_DATA_DIR.value, _NAME.value)
  dataset.preload_neural()
  spec = windows.WindowSpec()
  training, held_out = pipeline.split_animals(dataset.animals, _NUM_HELD_OUT.value,
                                                    _SPLIT_SEED.value)
  normalizer = pipeline.fit_pose_normalizer(dataset, training)
  table = raw_features.raw_feature_table(
      dataset, spec, normalizer, kind="neural", hop=_HOP.value, drop_classes=("resting",),
      num_time_blocks=4)
  results = protocol_lib.run_probe_suite(table, training_animals=training,
                                       held_out_animals=held_out)
  print(f"dataset: {dataset.path}; {len(table.label)} labelled windows; "
        f"held-out animals: {', '.join(held_out)}")
  print(tables.format_table({"Neural (linear) raw": results}))


if __name__ == "__main__":
  app.run(main)
