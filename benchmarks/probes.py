r"""The probe suite in one process against its fits spread over every core.

  python -m benchmarks.probes [--data_dir=...] [--rounds=2]

Times `nar.evaluation.run_probe_suite` on the largest feature table the cpu preset probes:
the raw ΔF/F windows of the default dataset (the "Neural (linear) raw" row: every window
averaged over time and flattened, 1,024 features), on the preset's first fold and with its
window hop. It runs the suite with `probe_jobs=1` (one process) and `probe_jobs=-1` (a
probe's cross-validation fits on every core), in interleaved rounds, reports the median of
each and their ratio, and checks that both give the same scores (bar: identical). The default
dataset is simulated and built first if absent.
"""

import time

from absl import app
from absl import flags
import joblib
import numpy as np

from data_prep import default_dataset
from experiments import reproduce
from experiments.configs import swap_cpu
from nar import evaluation
from nar import input_pipeline
from nar import raw_features
from nar import windows

_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir (default dataset if unset).")
_NAME = flags.DEFINE_string("name", "default", "Dataset name inside data_dir.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Timed rounds of each contender.")


def _scores(results: dict) -> list[float]:
  """Every accuracy of a probe-suite result, in a fixed order."""
  return [results[probe][fraction][metric]["mean"]
          for probe in (evaluation.ACTION_SINGLE_ANIMAL, evaluation.ACTION_MULTI_ANIMAL,
                        evaluation.IDENTITY)
          for fraction in ("0.5", "1.0") for metric in evaluation.METRICS]


def main(argv):
  del argv
  config = swap_cpu.get_config()
  dataset = default_dataset.open_dataset(_DATA_DIR.value, _NAME.value)
  dataset.preload_neural()
  # The fold of the cpu preset's seed 0.
  training, held_out = input_pipeline.split_animals(
      dataset.animals, config.data.num_held_out_animals, reproduce.REPORT_SPLIT_SEED_OFFSET)
  normalizer = input_pipeline.fit_pose_normalizer(dataset, training)
  table = raw_features.raw_feature_table(
      dataset, windows.WindowSpec(), normalizer, kind="neural", hop=config.eval.hop,
      drop_classes=tuple(config.eval.drop_classes),
      num_time_blocks=config.eval.identity_time_blocks)
  print(f"dataset: {dataset.path}; {table.features.shape[0]} windows x "
        f"{table.features.shape[1]} features; {joblib.cpu_count()} cores")
  seconds = {1: [], -1: []}
  scores = {}
  for _ in range(_ROUNDS.value):
    for jobs in seconds:
      start = time.perf_counter()
      results = evaluation.run_probe_suite(
          table, training_animals=training, held_out_animals=held_out,
          protocol=evaluation.ProbeProtocol(probe_jobs=jobs))
      seconds[jobs].append(time.perf_counter() - start)
      scores.setdefault(jobs, _scores(results))
  serial, parallel = (float(np.median(seconds[jobs])) for jobs in (1, -1))
  same = scores[1] == scores[-1]
  print(f"probe suite, one process:             {serial:6.1f} s")
  print(f"probe suite, fits on every core:      {parallel:6.1f} s")
  print(f"speed-up: {serial / parallel:.2f}x; scores identical: "
        f"{'PASS' if same else 'FAIL'}")


if __name__ == "__main__":
  app.run(main)
