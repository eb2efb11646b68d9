"""Settings of the multi-animal recording simulator.

Every source of difference between animals (the "domain gap") has its own knob, so that its
effect can be measured by turning it off: a gap knob set to 0 removes that source (all
animals then share that property). Spatial imaging sizes are fractions of the field of view
(FOV), so a setting means the same anatomy at any `image_size`.
"""

from __future__ import annotations

import dataclasses
import math

CLASS_BALANCE_PRESETS = {"real": 0.0, "uniform": 1.0}


@dataclasses.dataclass(frozen=True)
class SimulatorConfig:
  """What to simulate and how large each source of difference between animals is.

  Dataset size and rates:
    num_animals: number of animals.
    trials_per_animal: trials (recordings) per animal.
    trial_seconds: duration of a trial. The default 240 s is near MC2P's: its 20.7 h of
      recording in 364 trials average 205 s, and the annotated trials last 250 s.
    fps_behaviour: pose frame rate (exact), Hz.
    fps_neural: nominal two-photon frame rate, Hz; each trial's true rate deviates from it
      (`neural_fps_std`) and its frame intervals jitter (`frame_interval_jitter`).
    image_size: side of the square ΔF/F images in pixels (32 for the demo, 128 like MC2P).
    genotype: genotype written in the animal ids (`<date>_<genotype>_Fly<N>`).

  Behaviour sequence (semi-Markov, fitted to the real MC2P annotations):
    class_balance: how far the frequencies of the 7 classes are flattened away from the
      real ones. "real" (= 0.0) keeps the real frame fractions (resting 56 %, walking 33 %,
      each grooming class 1-3.5 %); "uniform" (= 1.0) makes all 7 equal; a number b in
      [0, 1] targets frame fractions proportional to `real_fraction ** (1 - b)`. Bout
      durations keep their real (truncated log-normal) distributions and the real
      transition structure is kept; only the rates of entering each class are re-weighted.
      The default 0.75 is a choice for statistical power, not realism: over many trials
      each of the 5 grooming classes holds 9-12 % of the labelled frames, walking 21 % and
      resting 25 %, so each of the 6 non-resting classes evaluated downstream holds at
      least 8 %. Single trials vary around this, since the real chain clusters bouts
      (head grooming classes follow each other, as do abdominal and hindleg grooming): a
      grooming class fills less than 2 s of roughly 10-35 % of 60-s trials.
    max_bout_seconds: bouts are truncated to this duration. Real resting and walking bouts
      reach 2 min and 40 s, which short trials cannot hold; 90 % of the real bouts of
      every class are shorter than 10 s.
    max_gap_seconds: unlabelled gaps between bouts follow the real (log-normal) gap
      distribution truncated to this duration; 0 labels every frame.
    blend_seconds: width of the smooth transition between the postures of consecutive
      actions.
    repertoire_std: how much each animal's own repertoire departs from the common one: the
      frame fraction of every class is multiplied by `exp(repertoire_std * z)`, z ~ N(0, 1)
      drawn per animal and class, before the bout model is re-weighted to it. In the real
      MC2P annotations (7 flies) the log fractions of the classes, centred per fly, spread
      with a std of 0.4-0.6 across flies (0.47 with a pseudo-count of 1 % of the frames):
      one fly walks in all its non-resting frames, another in half and grooms its antennae
      in 17 %. 0 gives every animal the same repertoire.

  Behaviour differences between animals (all 0 = identical bodies and movements):
    morphology_scale_std: relative std of each leg segment's length (shared by the left and
      right leg of a pair); 0.1/sqrt(3) gives the spread of a uniform +-10 %.
    posture_offset_std: std (mm) of each animal's constant displacement of every tarsus tip,
      carried by the leg's joints, i.e. how the animal holds its legs.
    gait_frequency_hz: mean step frequency at the animal's typical walking speed.
    gait_frequency_std: relative (log-normal) std of the animal's step frequency.
    grooming_rhythm_std: relative (log-normal) std of the animal's grooming rhythms.
    walking_speed_mm_s: mean walking speed across animals (ball-surface speed).
    walking_speed_std: relative (log-normal) std of the animal's typical speed.
    alignment_rotation_deg: std of the animal's residual body-alignment rotation (yaw, pitch,
      roll), as left by imperfect alignment of the 3D pose to the body frame.
    keypoint_noise_std: std (mm) of the pose-estimation noise on every keypoint (not a
      difference between animals, but set it to 0 for noiseless pose).
    keypoint_outlier_rate: fraction of keypoints per frame displaced by a gross
      pose-estimation error (0.25 mm std); 0 for none.

  Neural differences between animals:
    min_visible_cells, max_visible_cells: range of the number of descending-neuron axons
      visible in an animal's imaging plane (uniform; equal values fix the number).
    identified_cells: 0 draws each animal's visible cells independently from the cell-type
      prevalences, so animals differ in which types they carry and how many of each. N > 0
      draws one set of N identified cells per dataset (types and tunings), shared by every
      animal as identified descending neurons are across flies; each animal shows a random
      subset of `min_visible_cells`..`max_visible_cells` of them (N must be at least
      `max_visible_cells`), with its own gains, baselines and placement.
    cell_position_randomness: 0 places every cell at its type's stereotyped position in the
      left or right hemi-connective (the same in every animal); 1 places cells at random
      inside the two hemi-connective bundles. Which types an animal shows is drawn anyway.
      The default 0.2 keeps positions mostly stereotyped, as identified descending-neuron
      axons are across flies, with an individual scatter of a fifth of the bundle. With
      the per-animal placement (`layout_std`) a linear probe on raw ΔF/F still does not
      transfer to a new animal, as in the paper (multi-animal raw 18.4 %).
    layout_std: size of each animal's own placement of the connective in the image: centre
      shift (x 0.05 FOV), rotation (x 15 deg) and scale (x 0.08, relative). 0: same placement.
    gain_std: log-normal sigma of each cell's gain (peak rate scale).
    baseline_std: log-normal sigma of each cell's baseline rate.
    brightness_std: log-normal sigma of each cell's resting fluorescence (GCaMP expression).
    background_strength: brightness of the anatomical background (tissue fluorescence,
      textured per animal) in units of `photons_per_pixel`; resting axons peak at about
      1.5 units. 0 leaves only the axons.
    neuropil_strength: how much the diffuse neuropil fluorescence follows population activity.
    cell_radius_fov: mean Gaussian sigma of an axon's footprint, FOV fraction.
    cell_radius_std: log-normal sigma of an animal's mean footprint size (optics, depth).
    psf_sigma_fov: sigma of the point-spread blur, FOV fraction.
    photons_per_pixel: mean photons per pixel per frame of resting tissue at 256 x 256
      pixels (about 5 in real two-photon frames of the VNC; scaled by the pixel area at other
      image sizes). 0 turns shot and read noise off.
    read_noise_photons: Gaussian detector noise per 256 x 256 pixel, in photons.
    motion_jitter_fov: std of the per-frame residual motion (after registration), FOV
      fraction; each animal has its own scale and it grows with leg movement. 0: no motion.
    neural_fps_std: relative std of a trial's true frame rate around `fps_neural`.
    frame_interval_jitter: relative half-width of the uniform jitter of frame intervals.
    rate_noise_std: std of each cell's private, slowly varying drive noise.
    roi_noise_std: std of the extra ΔF/F noise of ROI traces (segmentation, neuropil
      subtraction residuals).
    indicator: calcium indicator kernel, "gcamp6s" (MC2P) or "gcamp6f".
  """

  # Dataset size and rates.
  num_animals: int = 8
  trials_per_animal: int = 4
  trial_seconds: float = 240.0
  fps_behaviour: float = 100.0
  fps_neural: float = 16.0
  image_size: int = 32
  genotype: str = "SimG23xU1"

  # Behaviour sequence.
  class_balance: str | float = 0.75
  max_bout_seconds: float = 10.0
  max_gap_seconds: float = 2.0
  blend_seconds: float = 0.08
  repertoire_std: float = 0.0

  # Behaviour differences between animals.
  morphology_scale_std: float = 0.1 / math.sqrt(3)
  posture_offset_std: float = 0.04
  gait_frequency_hz: float = 7.0
  gait_frequency_std: float = 0.1
  grooming_rhythm_std: float = 0.1
  walking_speed_mm_s: float = 10.0
  walking_speed_std: float = 0.2
  alignment_rotation_deg: float = 3.0
  keypoint_noise_std: float = 0.015
  keypoint_outlier_rate: float = 0.005

  # Neural differences between animals.
  min_visible_cells: int = 20
  max_visible_cells: int = 40
  identified_cells: int = 0
  cell_position_randomness: float = 0.2
  layout_std: float = 1.0
  gain_std: float = 0.4
  baseline_std: float = 0.5
  brightness_std: float = 0.4
  background_strength: float = 1.0
  neuropil_strength: float = 0.3
  cell_radius_fov: float = 0.015
  cell_radius_std: float = 0.15
  psf_sigma_fov: float = 0.008
  photons_per_pixel: float = 5.0
  read_noise_photons: float = 0.3
  motion_jitter_fov: float = 0.004
  neural_fps_std: float = 0.02
  frame_interval_jitter: float = 0.02
  rate_noise_std: float = 0.15
  roi_noise_std: float = 0.02
  indicator: str = "gcamp6s"

  def __post_init__(self):
    problems = []
    for name in ("num_animals", "trials_per_animal", "image_size", "min_visible_cells"):
      if int(getattr(self, name)) < 1:
        problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.max_visible_cells < self.min_visible_cells:
      problems.append(f"max_visible_cells ({self.max_visible_cells}) < min_visible_cells "
                      f"({self.min_visible_cells})")
    for name in ("trial_seconds", "fps_behaviour", "fps_neural", "gait_frequency_hz",
                 "walking_speed_mm_s", "cell_radius_fov", "max_bout_seconds"):
      if not getattr(self, name) > 0:
        problems.append(f"{name} must be > 0, got {getattr(self, name)}")
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if field.name.endswith(("_std", "_jitter", "_deg", "_strength", "_fov", "_photons",
                              "_seconds")) and isinstance(value, (int, float)) and value < 0:
        problems.append(f"{field.name} must be >= 0, got {value}")
    if self.identified_cells and not self.identified_cells >= self.max_visible_cells:
      problems.append(f"identified_cells ({self.identified_cells}) must be 0 or at least "
                      f"max_visible_cells ({self.max_visible_cells})")
    if not 0 <= self.keypoint_outlier_rate <= 1:
      problems.append(f"keypoint_outlier_rate must lie in [0, 1], got {self.keypoint_outlier_rate}")
    if not 0 <= self.cell_position_randomness <= 1:
      problems.append(f"cell_position_randomness must lie in [0, 1], "
                      f"got {self.cell_position_randomness}")
    if self.repertoire_std < 0:
      problems.append(f"repertoire_std must be >= 0, got {self.repertoire_std}")
    if self.photons_per_pixel < 0:
      problems.append(f"photons_per_pixel must be >= 0, got {self.photons_per_pixel}")
    if self.trial_seconds * self.fps_neural < 2:
      problems.append("a trial must hold at least 2 neural frames")
    if self.indicator not in ("gcamp6s", "gcamp6f"):
      problems.append(f"indicator must be 'gcamp6s' or 'gcamp6f', got {self.indicator!r}")
    try:
      self.class_balance_exponent()
    except ValueError as error:
      problems.append(str(error))
    if problems:
      raise ValueError("invalid SimulatorConfig:\n" + "\n".join(f"  - {p}" for p in problems))

  def class_balance_exponent(self) -> float:
    """`class_balance` as a number in [0, 1] (0 = real frequencies, 1 = uniform)."""
    value = self.class_balance
    if isinstance(value, str):
      if value not in CLASS_BALANCE_PRESETS:
        raise ValueError(f"class_balance must be a number in [0, 1] or one of "
                         f"{sorted(CLASS_BALANCE_PRESETS)}, got {value!r}")
      return CLASS_BALANCE_PRESETS[value]
    value = float(value)
    if not 0 <= value <= 1:
      raise ValueError(f"class_balance must lie in [0, 1], got {value}")
    return value

  @property
  def pixel_area_256(self) -> float:
    """Area of one pixel in units of a 256 x 256 pixel (photon counts scale with it)."""
    return (256.0 / self.image_size) ** 2
