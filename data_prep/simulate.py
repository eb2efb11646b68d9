r"""The command line that simulates multi-animal recordings and writes them raw: the MC2P
folder layout, or NPZ trial files for the locomotion preset.

  python -m data_prep.simulate --out_dir=/tmp/sim --num_animals=8 --trials_per_animal=4 \
      --trial_seconds=240 --seed=0

Writes one `<date>_<genotype>_Fly<N>_<trial>` folder per trial
(`data_prep.mc2p_writer.write_trial`), and beside them `ground_truth.npz` (actions, latent
rates, kinematics, every animal's parameters), `ground_truth.json` (scalar animal parameters)
and `simulation.json` (the settings and seed, as `data_prep.default_dataset` records them).
Any `SimulatorConfig` field can be set with `--config.name=value` (repeatable; tuples as
comma-separated values), the override syntax of every NAR entry point; the main ones have
their own flags.

  python -m data_prep.simulate --preset=locomotion --out_dir=/tmp/ball --num_animals=8

simulates the locomotion preset (`nar.simulation.LocomotionConfig`: forward, lateral and
turning velocity of a fly on a ball, ROI traces) and writes one NPZ trial file per trial in
`<out_dir>/trials/` (build them with `python -m data_prep.build --input_dir=<out_dir>/trials`);
`--config.name=value` then takes `LocomotionConfig` fields, and of the named flags only
`--num_animals`, `--trials_per_animal` and `--trial_seconds` apply.
"""

from __future__ import annotations

import dataclasses
import sys
import time

from absl import app
from absl import flags

from data_prep import default_dataset
from nar import simulation

_OUT_DIR = flags.DEFINE_string("out_dir", None, "Folder to write (must not exist).",
                               required=True)
_SEED = flags.DEFINE_integer("seed", 0, "Simulation seed.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace out_dir if it exists.")
_NEURAL_IMAGE_FORMAT = flags.DEFINE_enum("neural_image_format", "npy", ["npy", "mm", "tif"],
                                         "File format of the ΔF/F stacks.")
# `--config.name=value` pairs, taken out of the command line before absl parses it: the
# simulator's settings are a dataclass whose type the --preset flag chooses.
CONFIG_PREFIX = "--config."
_PRESET = flags.DEFINE_enum("preset", "default", sorted(simulation.PRESETS),
                            "What to simulate: 'default' (pose and two-photon images) or "
                            "'locomotion' (ball velocities and ROI traces).")

# Flags named after `SimulatorConfig` fields; unset ones keep the config's defaults.
_FIELD_FLAGS = {
    "num_animals": flags.DEFINE_integer("num_animals", None, "Animals."),
    "trials_per_animal": flags.DEFINE_integer("trials_per_animal", None, "Trials per animal."),
    "trial_seconds": flags.DEFINE_float("trial_seconds", None, "Trial duration (s)."),
    "image_size": flags.DEFINE_integer("image_size", None, "ΔF/F image side (pixels)."),
    "class_balance": flags.DEFINE_string(
        "class_balance", None, "'real', 'uniform' or a number in [0, 1] (flattening)."),
    "morphology_scale_std": flags.DEFINE_float("morphology_scale_std", None,
                                               "Relative std of leg segment lengths."),
    "posture_offset_std": flags.DEFINE_float("posture_offset_std", None,
                                             "Std (mm) of each animal's posture offsets."),
    "gait_frequency_std": flags.DEFINE_float("gait_frequency_std", None,
                                             "Relative std of the step frequency."),
    "alignment_rotation_deg": flags.DEFINE_float("alignment_rotation_deg", None,
                                                 "Std of the body-alignment rotation."),
    "keypoint_noise_std": flags.DEFINE_float("keypoint_noise_std", None,
                                             "Keypoint noise std (mm)."),
    "cell_position_randomness": flags.DEFINE_float(
        "cell_position_randomness", None, "0: stereotyped cell positions, 1: random."),
    "layout_std": flags.DEFINE_float("layout_std", None,
                                     "Size of each animal's connective placement."),
    "gain_std": flags.DEFINE_float("gain_std", None, "Log-normal sigma of cell gains."),
    "background_strength": flags.DEFINE_float("background_strength", None,
                                              "Tissue background brightness."),
    "photons_per_pixel": flags.DEFINE_float("photons_per_pixel", None,
                                            "Photons per 256x256 pixel (0: no noise)."),
    "motion_jitter_fov": flags.DEFINE_float("motion_jitter_fov", None,
                                            "Residual motion std (FOV fraction)."),
}


def _parse_scalar(kind: type, text: str):
  return kind(text) if kind is not bool else text.lower() in ("1", "true", "yes")


def _parse_value(config_class: type, field: dataclasses.Field, text: str):
  if field.name == "class_balance":
    try:
      return float(text)
    except ValueError:
      return text
  default = getattr(config_class(), field.name)
  if isinstance(default, tuple):
    if default and isinstance(default[0], tuple):
      raise app.UsageError(f"{CONFIG_PREFIX}{field.name} is a nested tuple and cannot be set "
                           "from the command line; build the config in Python")
    kind = type(default[0]) if default else str
    return tuple(_parse_scalar(kind, item) for item in text.split(",") if item)
  return _parse_scalar(type(default), text)


def split_config_arguments(argv: list[str]) -> tuple[list[str], list[str]]:
  """`(other arguments, ["name=value", ...])` of the `--config.name=value` arguments."""
  rest, pairs = [], []
  for arg in argv:
    if arg.startswith(CONFIG_PREFIX):
      pairs.append(arg[len(CONFIG_PREFIX):])
    else:
      rest.append(arg)
  return rest, pairs


def config_from_flags(pairs: list[str] = ()):
  """The preset's settings: defaults, then the named flags, then `--config.name=value`."""
  config_class = simulation.preset_config_class(_PRESET.value)
  fields = {f.name: f for f in dataclasses.fields(config_class)}
  overrides = {}
  for name, flag in _FIELD_FLAGS.items():
    if flag.value is None:
      continue
    if name not in fields:
      raise app.UsageError(f"--{name} does not apply to the {_PRESET.value!r} preset; its "
                           f"fields: {', '.join(sorted(fields))}")
    overrides[name] = _parse_value(config_class, fields[name], str(flag.value))
  for pair in pairs:
    name, equals, text = pair.partition("=")
    if not equals:
      raise app.UsageError(f"{CONFIG_PREFIX}{pair} needs a value: {CONFIG_PREFIX}{name}=VALUE")
    if name not in fields:
      raise app.UsageError(f"{CONFIG_PREFIX}{name}: unknown {config_class.__name__} field "
                           f"{name!r}; known: {', '.join(sorted(fields))}")
    overrides[name] = _parse_value(config_class, fields[name], text)
  return config_class(**overrides)


_CONFIG_PAIRS: list[str] = []


def main(argv):
  del argv
  start = time.time()
  simulated = default_dataset.write_simulated_dataset(
      config_from_flags(_CONFIG_PAIRS), _SEED.value, _OUT_DIR.value, overwrite=_OVERWRITE.value,
      neural_image_format=_NEURAL_IMAGE_FORMAT.value)
  print(simulated.summary())
  print(f"wrote {_OUT_DIR.value} in {time.time() - start:.1f} s")


if __name__ == "__main__":
  sys.argv, _CONFIG_PAIRS[:] = split_config_arguments(sys.argv)
  app.run(main)
