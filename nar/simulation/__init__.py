"""Simulated multi-animal recordings of tethered flies: pose, behaviour labels and two-photon
imaging of descending neurons, with a tunable domain gap between animals.

  from nar import simulation
  dataset = simulation.simulate_dataset(simulation.SimulatorConfig(), seed=0)
  dataset.recordings  # list of nar.data.recording.Recording
  dataset.save_ground_truth("ground_truth.npz")

Modules: `config` (settings), `reference` (the real measurements in `nar/assets/`),
`actions` (semi-Markov behaviour sequences), `pose` (kinematics), `neurons` (cell types,
rates, calcium), `imaging` (two-photon frames, ΔF/F, ROI traces), `dataset` (putting it
together), `locomotion` (a second preset: ball velocities and ROI traces).

Presets (`PRESETS`): "default", the pose and two-photon imaging simulator above
(`SimulatorConfig`); "locomotion", a fly walking on a ball seen as forward, lateral and
turning velocity, with ROI traces whose number and meaning differ between animals
(`LocomotionConfig`). `simulate_dataset` takes the config of either.
"""

from nar.simulation.config import SimulatorConfig
from nar.simulation.dataset import SimulatedDataset
from nar.simulation.dataset import simulate_dataset
from nar.simulation.locomotion import LocomotionConfig

PRESETS = {"default": SimulatorConfig, "locomotion": LocomotionConfig}


def preset_config_class(preset: str) -> type:
  """The config class of a preset name (a key of `PRESETS`)."""
  if preset not in PRESETS:
    raise ValueError(f"unknown simulator preset {preset!r}; known: {sorted(PRESETS)}")
  return PRESETS[preset]


def preset_of(config) -> str:
  """The preset name of a config."""
  for name, config_class in PRESETS.items():
    if isinstance(config, config_class):
      return name
  raise TypeError(f"not a simulator config: {type(config).__name__}; known: "
                  f"{[c.__name__ for c in PRESETS.values()]}")


__all__ = ["LocomotionConfig", "PRESETS", "SimulatorConfig", "SimulatedDataset",
           "preset_config_class", "preset_of", "simulate_dataset"]
