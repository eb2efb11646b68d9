"""Simulated multi-animal recordings of tethered flies: pose, behaviour labels and two-photon
imaging of descending neurons, with a tunable domain gap between animals.

  from nar import simulation
  dataset = simulation.simulate_dataset(simulation.SimulatorConfig(), seed=0)
  dataset.recordings  # list of nar.recording.Recording
  dataset.save_ground_truth("ground_truth.npz")

Modules: `config` (settings), `reference` (the real measurements in `nar/assets/`),
`actions` (semi-Markov behaviour sequences), `pose` (kinematics), `neurons` (cell types,
rates, calcium), `imaging` (two-photon frames, ΔF/F, ROI traces), `dataset` (putting it
together).
"""

from nar.simulation.config import SimulatorConfig
from nar.simulation.dataset import SimulatedDataset
from nar.simulation.dataset import simulate_dataset

__all__ = ["SimulatorConfig", "SimulatedDataset", "simulate_dataset"]
