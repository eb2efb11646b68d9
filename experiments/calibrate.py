r"""How close the calibrated simulation comes to the real set it imitates, side by side.

  python -m experiments.calibrate [--dataset=locomotion_calibrated] [--folds=1]

Simulates and builds the dataset if absent (the reproduction's, `experiments.reproduce
--dataset=...`), then measures with the project's own probes what was measured on a real
public multi-fly set (19 flies, ROI traces and ball velocities at 11.4 Hz, 8-frame windows,
folds of 4 held-out flies): the share of each action among the labelled frames and of the
unlabelled frames; the balanced accuracy of a linear probe on raw windows (time-averaged
traces) on held-out animals and within an animal; identity from raw windows, from
per-animal-standardised windows and from behaviour windows. Each row prints the real figure,
the simulated one (mean over `--folds` held-out folds, with their std) and the difference.
`--json` writes the rows to a file.
"""

import json
import sys

from absl import app
from absl import flags

from data_prep import default_dataset
from experiments import calibration
from experiments.configs import reproduce as presets
from nar.data import shards

_DATASET = flags.DEFINE_string("dataset", "locomotion_calibrated",
                               "A dataset of the reproduction (experiments/configs/reproduce.py).")
_FOLDS = flags.DEFINE_integer("folds", 1, "Held-out folds the probes are averaged over.")
_SIZE = flags.DEFINE_string("size", None, "Dataset size (default: the cpu preset's); 'tiny' "
                            "checks the command in seconds.")
_JSON = flags.DEFINE_string("json", None, "Write the rows to this JSON file.")
_SET = flags.DEFINE_multi_string(
    "set", [], "A simulator setting to try, NAME=VALUE (a Python literal), e.g. "
    "--set=neuropil=0.8; the dataset is then simulated under a name of its own.")


def main(argv):
  del argv
  try:
    preset = presets.get_config("cpu", _DATASET.value)
    choice = presets.DATASETS[_DATASET.value](_SIZE.value or preset.dataset_size)
    choice = calibration.with_settings(choice, _SET.value)
  except ValueError as error:
    sys.exit(f"error: {error}")
  config = preset.training
  config.data.name = choice.name
  if _SIZE.value == "tiny":  # four animals: one held out
    config.data.num_held_out_animals = 1
  default_dataset.ensure_dataset(choice.simulator, choice.seed, data_dir=config.data.data_dir,
                                 name=choice.name)
  dataset = shards.open_dataset(config.data.data_dir, config.data.name)
  rows = calibration.compare(
      dataset, [calibration.fold_config(config, fold) for fold in range(_FOLDS.value)])
  print(f"dataset {config.data.name}: {len(dataset.animals)} animals; probes over "
        f"{_FOLDS.value} fold(s) of {config.data.num_held_out_animals} held-out animals; "
        f"chance: identity {100 / len(dataset.animals):.1f} %, action "
        f"{100 / len(dataset.class_names):.1f} %")
  print(f"{'statistic':60s} {'real':>7s} {'simulated':>16s} {'sim - real':>11s}")
  for row in rows:
    spread = f" ± {row['std']:4.1f}" if row["folds"] > 1 else ""
    print(f"{calibration.ROW_NAMES[row['statistic']]:60s} {row['real']:7.1f} "
          f"{row['simulated']:9.1f}{spread:7s} {row['simulated'] - row['real']:+11.1f}")
  if _JSON.value:
    with open(_JSON.value, "w", encoding="utf-8") as file:
      json.dump(rows, file, indent=2)


if __name__ == "__main__":
  app.run(main)
