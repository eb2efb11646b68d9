"""Simulated multi-animal recordings of flies, and the registry of presets that picks a
dataset's simulator by its config.

  from nar import simulation
  dataset = simulation.simulate_dataset(simulation.SimulatorConfig(), seed=0)
  dataset.recordings  # list of nar.data.recording.Recording
  dataset.save_ground_truth("ground_truth.npz")

Modules: `config` (settings of the default preset), `reference` (the real measurements in
`nar/assets/`), `actions` (semi-Markov behaviour bouts), `pose` (kinematics), `neurons`
(cell types, rates, calcium), `imaging` (two-photon frames, ΔF/F, ROI traces),
`pose_imaging` (the default preset's animals and trials), `locomotion` (a second preset:
ball velocities and ROI traces), `dataset` (the dataset and the loop every preset shares).

Presets (`PRESETS`): "default", the pose and two-photon imaging simulator of tethered flies
(`SimulatorConfig`); "locomotion", a fly walking on a ball seen as forward, lateral and
turning velocity, with ROI traces whose number and meaning differ between animals
(`LocomotionConfig`). `simulate_dataset` takes the config of either.
"""

from nar.simulation import dataset
from nar.simulation import locomotion
from nar.simulation import pose_imaging
from nar.simulation.config import SimulatorConfig
from nar.simulation.dataset import SimulatedDataset
from nar.simulation.locomotion import LocomotionConfig

# Preset name -> its config class.
PRESETS = {"default": SimulatorConfig, "locomotion": LocomotionConfig}
# Preset name -> its simulator (`nar.simulation.dataset.Simulator`), built from its config.
SIMULATORS = {"default": pose_imaging.PoseImagingSimulator,
              "locomotion": locomotion.LocomotionSimulator}


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


def simulator_for(config) -> dataset.Simulator:
  """The simulator of a config's preset (`SIMULATORS`), set up with that config."""
  return SIMULATORS[preset_of(config)](config)


def simulate_dataset(config: SimulatorConfig | LocomotionConfig | None = None, seed: int = 0,
                     *, progress: bool = False) -> SimulatedDataset:
  """Simulates a multi-animal dataset.

  Args:
    config: settings (the default demo dataset if None); a `LocomotionConfig` simulates the
      locomotion preset.
    seed: the seed; equal seeds give identical datasets.
    progress: show a progress bar over the trials.

  Returns:
    The recordings and their ground truth.
  """
  config = SimulatorConfig() if config is None else config
  return dataset.simulate_animals(simulator_for(config), seed, progress=progress)


__all__ = ["LocomotionConfig", "PRESETS", "SIMULATORS", "SimulatorConfig", "SimulatedDataset",
           "preset_config_class", "preset_of", "simulate_dataset", "simulator_for"]
