r"""The probe suite in one process against its fits spread over every core.

  python -m benchmarks.probes [--rounds=2]

Times `nar.eval.protocol.run_probe_suite` on the largest feature table the cpu preset probes:
the table of its "Neural (linear) raw" row on its first fold (`experiments.reproduce`'s
`raw_input_table`: every raw ΔF/F window averaged over time and flattened, 1,024 features).
It runs the suite with `probe_jobs=1` (one process) and `probe_jobs=-1` (a probe's
cross-validation fits on every core), in interleaved rounds, reports the median of each and
their ratio, and checks that both give the same scores (bar: identical). The preset's dataset
is simulated and built first if absent.
"""

import dataclasses
import time

from absl import app
from absl import flags
import joblib
import numpy as np

from experiments import execution
from experiments import reproduce
from experiments.configs import reproduce as presets
from nar.eval import protocol as protocol_lib

_ROUNDS = flags.DEFINE_integer("rounds", 2, "Timed rounds of each contender.")


def _scores(results: dict, protocol: protocol_lib.ProbeProtocol) -> list[float]:
  """Every score of a probe-suite result, in a fixed order."""
  return [results[probe][protocol_lib.fraction_key(fraction)][metric]["mean"]
          for probe in (protocol_lib.ACTION_SINGLE_ANIMAL, protocol_lib.ACTION_MULTI_ANIMAL,
                        protocol_lib.IDENTITY)
          for fraction in protocol.label_fractions for metric in protocol_lib.METRICS]


def main(argv):
  del argv
  preset = presets.get_config("cpu")
  reproduce.prepare_dataset(preset)
  config = reproduce.fold_config(preset.training, seed=0)
  table, inputs = execution.raw_input_table(config, "neural")
  print(f"{table.features.shape[0]} windows x {table.features.shape[1]} features; "
        f"{joblib.cpu_count()} cores")
  protocol = protocol_lib.protocol_from_config(config.eval, seed=config.seed)
  seconds = {1: [], -1: []}
  scores = {}
  for _ in range(_ROUNDS.value):
    for jobs in seconds:
      start = time.perf_counter()
      results = protocol_lib.run_probe_suite(
          table, training_animals=inputs.training_animals,
          held_out_animals=inputs.held_out_animals,
          protocol=dataclasses.replace(protocol, probe_jobs=jobs))
      seconds[jobs].append(time.perf_counter() - start)
      scores.setdefault(jobs, _scores(results, protocol))
  serial, parallel = (float(np.median(seconds[jobs])) for jobs in (1, -1))
  same = scores[1] == scores[-1]
  print(f"probe suite, one process:             {serial:6.1f} s")
  print(f"probe suite, fits on every core:      {parallel:6.1f} s")
  print(f"speed-up: {serial / parallel:.2f}x; scores identical: "
        f"{'PASS' if same else 'FAIL'}")


if __name__ == "__main__":
  app.run(main)
