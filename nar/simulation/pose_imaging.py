"""The default preset's animals and trials: a tethered fly's 3D pose, behaviour labels and
two-photon imaging of its descending neurons.

An animal is a body and movement style (`pose`), a population of visible descending neurons
(`neurons`), an imaging plane (`imaging`) and a repertoire of behaviour (`actions`); a trial
chains its bouts, moves its legs, drives its cells and images them. `PoseImagingSimulator`
hands these to the dataset loop (`nar.simulation.dataset.simulate_animals`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from nar.data import recording as recording_lib
from nar.simulation import actions
from nar.simulation import config as config_lib
from nar.simulation import dataset as dataset_lib
from nar.simulation import imaging
from nar.simulation import neurons
from nar.simulation import pose as pose_lib

# Mean tarsus speed (mm/s) below which a frame counts as rest (as an optical-flow rest
# detector would flag it).
REST_LEG_SPEED_MM_S = 2.0


@dataclasses.dataclass(frozen=True)
class Animal:
  """One simulated animal.

  Attributes:
    animal_id: `<date>_<genotype>_Fly<N>`.
    body: body and movement style.
    population: visible descending neurons.
    anatomy: imaging plane.
    bout_model: its own repertoire, the bout model of its trials (None until drawn,
      `animal_bout_model`).
  """

  animal_id: str
  body: pose_lib.Body
  population: neurons.Population
  anatomy: imaging.Anatomy
  bout_model: actions.BoutModel | None = None

  def parameters(self) -> dict[str, np.ndarray | float | int]:
    """The animal's parameters by name: arrays and scalars (with `target_frame_fractions`
    `[C]` of its repertoire once drawn)."""
    body, cells, plane = self.body, self.population, self.anatomy
    parameters = {
        "segment_scale": body.segment_scale,
        "body_scale": body.body_scale,
        "posture_tip_offset_mm": body.tip_offset,
        "action_tip_offset_mm": body.action_tip_offset,
        "gait_frequency_hz": body.gait_frequency_hz,
        "rhythm_scale": body.rhythm_scale,
        "walking_speed_mm_s": body.walking_speed_mm_s,
        "alignment_rotation_deg": body.rotation_deg,
        "num_cells": cells.num_cells,
        "cell_type": cells.cell_type,
        "action_tuning": cells.action_tuning,
        "kinematic_tuning": cells.kinematic_tuning,
        "gain": cells.gain,
        "baseline_hz": cells.baseline_hz,
        "shared_noise_loading": cells.shared_noise_loading,
        "connective_centre_fov": plane.connective_centre,
        "connective_rotation_deg": plane.connective_rotation_deg,
        "connective_scale": plane.connective_scale,
        "cell_position_fov": plane.cell_position,
        "cell_sigma_fov": plane.cell_sigma,
        "cell_brightness": plane.cell_brightness,
        "tissue": plane.tissue,
        "motion_scale_fov": plane.motion_scale_fov,
    }
    if self.bout_model is not None:
      parameters["target_frame_fractions"] = self.bout_model.frame_fractions()
    return parameters


def sample_animal(index: int, config: config_lib.SimulatorConfig, type_positions: np.ndarray,
                  rng: np.random.Generator,
                  identified: neurons.Cells | None = None) -> Animal:
  """Draws the `index`-th animal (showing some of the `identified` cells, when given)."""
  body = pose_lib.sample_body(config, rng)
  population = neurons.sample_population(config, rng, identified)
  anatomy = imaging.sample_anatomy(config, population.cell_type, type_positions, rng)
  return Animal(dataset_lib.animal_id(index, config.genotype), body, population, anatomy)


def animal_bout_model(bout_model: actions.BoutModel, repertoire_std: float,
                      rng: np.random.Generator) -> actions.BoutModel:
  """One animal's bout model: the common one with its class frequencies perturbed.

  Each class's frame fraction is multiplied by `exp(repertoire_std * z)`, z ~ N(0, 1), and
  the transitions re-weighted to the result (`actions.rebalance`); 0 returns `bout_model`.
  """
  if repertoire_std == 0:
    return bout_model
  fractions = bout_model.frame_fractions() * np.exp(
      repertoire_std * rng.standard_normal(actions.NUM_CLASSES))
  return actions.rebalance(bout_model, fractions / fractions.sum())


def simulate_trial(animal: Animal, index: int, bout_model: actions.BoutModel,
                   config: config_lib.SimulatorConfig, rng: np.random.Generator,
                   source: str = "") -> tuple[recording_lib.Recording, dict[str, np.ndarray]]:
  """Simulates one trial of an animal.

  The recording's `fps_neural` is the trial's true mean frame rate, which deviates from the
  nominal `config.fps_neural` by a few percent.

  Returns:
    The recording and its ground truth: `actions` `[T_b]` int32 latent action,
    `action_weights` `[T_b, C]`, `walking_speed` `[T_b]` (mm/s), `turning` `[T_b]`,
    `leg_speed` `[T_b, 6]` (mm/s), `firing_rates` `[T_n, R]` (Hz, frame means),
    `calcium_dff` `[T_n, R]` (noiseless), `motion_shift_px` `[T_n, 2]`.
  """
  fps = config.fps_behaviour
  num_frames = int(round(config.trial_seconds * fps))
  sequence = actions.action_sequence(bout_model, num_frames, fps, config.blend_seconds, rng)
  pose, kinematics = pose_lib.simulate_pose(animal.body, sequence, config, rng)
  rates, cell_dff = neurons.simulate_activity(animal.population, sequence.weights, kinematics,
                                              config, rng)
  times, fps_neural = imaging.frame_times(config, rng)
  frame_dff = imaging.frame_averages(cell_dff, fps, times, config.trial_seconds)
  frame_rates = imaging.frame_averages(rates, fps, times, config.trial_seconds)
  mean_leg_speed = kinematics["leg_speed"].mean(axis=1)
  movement = imaging.frame_averages(mean_leg_speed / neurons.LEG_SPEED_SCALE_MM_S, fps, times,
                                    config.trial_seconds)
  imaged = imaging.image_trial(animal.anatomy, frame_dff, movement, times, config, rng)
  smoothed_speed = ndimage.uniform_filter1d(mean_leg_speed, size=max(1, int(0.2 * fps)))

  rec = recording_lib.Recording(
      animal_id=animal.animal_id,
      trial_id=dataset_lib.trial_id(index),
      behaviour=pose,
      sync=dataset_lib.sync_indices(times, num_frames, fps),
      labels=sequence.labels,
      fps_behaviour=fps,
      fps_neural=fps_neural,
      neural_images=imaged.dff_images,
      roi_traces=imaged.roi_traces,
      rest=smoothed_speed < REST_LEG_SPEED_MM_S,
      neural_timestamps=times,
      source=source,
  )
  truth = {
      "actions": sequence.actions,
      "action_weights": sequence.weights,
      "walking_speed": kinematics["walking_speed"],
      "turning": kinematics["turning"],
      "leg_speed": kinematics["leg_speed"],
      "firing_rates": frame_rates.astype(np.float32),
      "calcium_dff": frame_dff.astype(np.float32),
      "motion_shift_px": imaged.shift_px,
  }
  return rec, truth


@dataclasses.dataclass(frozen=True)
class SharedCells:
  """What all animals of a dataset share.

  Attributes:
    type_positions: stereotyped position of every cell type (`imaging.stereotyped_positions`).
    identified: the identified cells every animal shows a subset of; None when each animal
      draws its own (`SimulatorConfig.identified_cells` = 0).
  """

  type_positions: np.ndarray
  identified: neurons.Cells | None


class PoseImagingSimulator:
  """The default preset (`SimulatorConfig`) for `nar.simulation.dataset.simulate_animals`."""

  source = "simulation"

  def __init__(self, config: config_lib.SimulatorConfig):
    self.config = config
    self.bout_model = actions.balanced_bout_model(
        config.class_balance_exponent(), config.max_bout_seconds, config.max_gap_seconds)

  def ground_truth(self) -> dict:
    """Class, cell-type and kinematic names, and the common bout model's statistics."""
    return {
        "class_names": recording_lib.MC2P_CLASS_NAMES,
        "cell_type_names": neurons.CELL_TYPE_NAMES,
        "kinematic_names": neurons.KINEMATIC_NAMES,
        "target_frame_fractions": self.bout_model.frame_fractions(),
        "transition": self.bout_model.transition,
    }

  def sample_shared(self, rng: np.random.Generator) -> SharedCells:
    """Draws the cell types' stereotyped positions, then the identified cells if any."""
    type_positions = imaging.stereotyped_positions(len(neurons.CELL_TYPES), rng)
    identified = (neurons.sample_cells(self.config.identified_cells, rng)
                  if self.config.identified_cells else None)
    return SharedCells(type_positions, identified)

  def sample_animal(self, index: int, shared: SharedCells, rng: np.random.Generator,
                    repertoire_rng: np.random.Generator) -> Animal:
    """Draws the `index`-th animal and its own repertoire."""
    animal = sample_animal(index, self.config, shared.type_positions, rng, shared.identified)
    bouts = animal_bout_model(self.bout_model, self.config.repertoire_std, repertoire_rng)
    return dataclasses.replace(animal, bout_model=bouts)

  def simulate_trial(self, animal: Animal, index: int, rng: np.random.Generator,
                     source: str) -> tuple[recording_lib.Recording, dict[str, np.ndarray]]:
    """Simulates the `index`-th trial of an animal (`simulate_trial`)."""
    return simulate_trial(animal, index, animal.bout_model, self.config, rng, source=source)
