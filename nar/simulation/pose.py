"""Pose kinematics: 3D DeepFly3D keypoints of a tethered fly performing an action sequence.

Every action is a motion primitive: a mean posture plus a Fourier series of a cycle phase
that advances at the action's own rhythm. The primitives come from real 3D poses
(`nar/assets/`):

- resting: the still posture at the start of the walking clip (no cycle; slow drift only);
- walking: the gait cycle of the walking clip (all six legs, phase from the tarsus tips),
  replayed at the animal's step frequency; stride length and step frequency grow with the
  walking speed, and turning shortens the strides of the inner legs;
- foreleg grooming: the front legs rubbing each other in front of the head (grooming clip,
  first 1.6 s, about 8 Hz);
- eye grooming: the front legs sweeping high over the sides of the head (grooming clip,
  1.65-2.65 s, about 10 Hz);
- antennal grooming: the eye-grooming cycle moved to the midline in front of the antennae,
  with smaller, faster sweeps;
- abdominal grooming: the rest posture with the hind tarsi brought onto the sides of the
  abdomen (inverse kinematics) sweeping front to back in phase, mid legs stepped back;
- hindleg grooming: the hind tarsi brought together behind the abdomen rubbing each other in
  antiphase, mid legs stepped forward.

Actions blend smoothly (weights from `nar.simulation.actions`). Bouts of one class differ
(leg amplitudes, tip positions; abdominal grooming is often one-sided), rhythms and
amplitudes fluctuate, and the posture drifts slowly. Each animal has its own segment lengths
(the posture is re-chained joint by joint), posture offsets, rhythms, typical speed and
residual body-alignment rotation; pose estimation adds noise and rare outliers. The antennae
and the abdominal stripes are placed from the body geometry.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from scipy import ndimage
from scipy import signal

from nar.data import keypoints
from nar.data import recording as recording_lib
from nar.simulation import actions
from nar.simulation import config as config_lib
from nar.simulation import reference

CLASS_INDEX = {name: i for i, name in enumerate(recording_lib.MC2P_CLASS_NAMES)}
NUM_CLASSES = len(recording_lib.MC2P_CLASS_NAMES)
RIGHT_LEGS, LEFT_LEGS = (0, 1, 2), (3, 4, 5)
FRONT_LEGS, MID_LEGS, HIND_LEGS = (0, 3), (1, 4), (2, 5)
# How far each joint (body-coxa ... tarsus tip) follows a displacement of the tarsus tip.
JOINT_WEIGHTS = np.array([0.0, 0.1, 0.4, 0.75, 1.0])
HARMONICS = 3
# Largest factor by which a fitted cycle is scaled up to the real movement energy.
MAX_CYCLE_GAIN = 2.0

# Body points that DeepFly3D tracks besides the legs, mm in the aligned body frame (x
# forward, y left, z up): right side first, as in the 38-keypoint layout.
ANTENNA_POINTS = np.array([[0.95, -0.10, 0.55], [0.95, 0.10, 0.55]])
ABDOMEN_STRIPE_POINTS = np.array([
    [[-0.55, -0.33, 0.30], [-0.90, -0.31, 0.25], [-1.25, -0.24, 0.12]],
    [[-0.55, 0.33, 0.30], [-0.90, 0.31, 0.25], [-1.25, 0.24, 0.12]],
])

# Within-trial variability of the movements (same for all animals).
SPEED_LOG_STD = 0.3  # of the walking speed around the animal's typical speed
SPEED_TIMESCALE_S = 1.0
TURNING_STD = 0.25  # turning index, -1 (hard right) .. 1 (hard left)
TURNING_TIMESCALE_S = 0.6
RHYTHM_LOG_STD = 0.08  # moment-to-moment variation of every action's rhythm
AMPLITUDE_LOG_STD = 0.15  # moment-to-moment variation of every action's amplitude
MODULATION_TIMESCALE_S = 0.5
DRIFT_STD_MM = 0.03  # slow postural drift of each tarsus tip
DRIFT_TIMESCALE_S = 1.5
# Bout-to-bout variation within a class: leg amplitudes and tip positions.
BOUT_AMPLITUDE_LOG_STD = 0.2
BOUT_POSTURE_STD_MM = 0.05
# Abdominal grooming bouts: both hind legs, right only or left only; the other hind leg then
# moves this much.
ABDOMINAL_SIDE_PROBABILITY = (0.3, 0.35, 0.35)
UNILATERAL_OTHER_LEG = 0.15
# Pose-estimation outliers (a keypoint confused or occluded), mm.
OUTLIER_STD_MM = 0.25
# Step frequency and stride length share the speed change: f ~ v^0.6, stride ~ v^0.4.
FREQUENCY_SPEED_EXPONENT = 0.6
STRIDE_SPEED_EXPONENT = 0.4


@dataclasses.dataclass(frozen=True)
class MotionPrimitive:
  """A rhythmic movement as a function of its cycle phase.

  Attributes:
    name: action class name.
    mean: `[6, 5, 3]` mean posture (mm).
    cos: `[H, 6, 5, 3]` cosine coefficients of harmonics 1..H of the phase.
    sin: `[H, 6, 5, 3]` sine coefficients.
    frequency_hz: the rhythm of the real movement (cycles per second).
  """

  name: str
  mean: np.ndarray
  cos: np.ndarray
  sin: np.ndarray
  frequency_hz: float

  def oscillation(self, phase: np.ndarray) -> np.ndarray:
    """`[N, 6, 5, 3]` deviation from the mean posture at `[N]` phases (radians)."""
    harmonic = np.arange(1, self.cos.shape[0] + 1)
    angle = phase[:, None] * harmonic
    return (np.einsum("nh,hljk->nljk", np.cos(angle), self.cos) +
            np.einsum("nh,hljk->nljk", np.sin(angle), self.sin))


def _cycle_phase(pose: np.ndarray, legs, band_hz, fps) -> np.ndarray:
  """`[T]` unwrapped phase of the dominant rhythm of the given legs' lower segments."""
  lower = pose[:, legs, 2:].reshape(len(pose), -1)
  sos = signal.butter(2, band_hz, btype="bandpass", fs=fps, output="sos")
  filtered = signal.sosfiltfilt(sos, lower - lower.mean(axis=0), axis=0)
  _, _, components = np.linalg.svd(filtered, full_matrices=False)
  principal = filtered @ components[0]
  phase = np.unwrap(np.angle(signal.hilbert(principal)))
  # Phase must advance: the sign of the principal component is arbitrary.
  return phase if phase[-1] > phase[0] else -phase


def fit_primitive(name: str, pose: np.ndarray, legs, band_hz,
                  fps: float = reference.REFERENCE_FPS) -> MotionPrimitive:
  """Fits a mean posture and a Fourier series of the cycle phase to a real pose clip.

  Args:
    name: action class name.
    pose: `[T, 6, 5, 3]` real pose of one rhythmic movement.
    legs: the legs whose movement defines the phase.
    band_hz: `(low, high)` frequency band of the rhythm.
    fps: frame rate of `pose`.

  Returns:
    The primitive; its frequency is the mean phase velocity of the clip.
  """
  phase = _cycle_phase(pose, legs, band_hz, fps)
  harmonic = np.arange(1, HARMONICS + 1)
  design = np.concatenate(
      [np.ones((len(phase), 1)), np.cos(phase[:, None] * harmonic),
       np.sin(phase[:, None] * harmonic)], axis=1)
  coefficients, *_ = np.linalg.lstsq(design, pose.reshape(len(pose), -1), rcond=None)
  coefficients = coefficients.reshape((-1,) + pose.shape[1:])
  frequency = (phase[-1] - phase[0]) / (2 * np.pi) / (len(phase) / fps)
  cos, sin = coefficients[1:HARMONICS + 1], coefficients[HARMONICS + 1:]
  # The phase-locked fit misses the cycle-to-cycle variation of irregular movements
  # (grooming); scale the cycle so that the moving legs keep the clip's movement energy.
  sos = signal.butter(2, band_hz, btype="bandpass", fs=fps, output="sos")
  real = signal.sosfiltfilt(sos, pose[:, legs] - pose[:, legs].mean(axis=0), axis=0)
  fitted = (design[:, 1:] @ coefficients[1:].reshape(2 * HARMONICS, -1)).reshape(pose.shape)
  fitted = signal.sosfiltfilt(sos, fitted[:, legs], axis=0)
  scale = np.clip(np.sqrt(np.sum(real**2) / np.sum(fitted**2)), 1.0, MAX_CYCLE_GAIN)
  mean = rechain(coefficients[0][None], *reference_body())[0]
  return MotionPrimitive(name=name, mean=mean, cos=scale * cos, sin=scale * sin,
                         frequency_hz=float(frequency))


def reach(leg: np.ndarray, target: np.ndarray, iterations: int = 30) -> np.ndarray:
  """Moves a leg's tarsus tip to `target`, keeping its body-coxa point and segment lengths.

  FABRIK inverse kinematics started from the given posture, so the solution stays close to
  it.

  Args:
    leg: `[5, 3]` joint positions, body-coxa first.
    target: `[3]` wanted tarsus tip position.
    iterations: forward-backward passes.

  Returns:
    `[5, 3]` joint positions.
  """
  points = np.array(leg, np.float64)
  lengths = np.linalg.norm(np.diff(points, axis=0), axis=-1)
  base = points[0].copy()
  for _ in range(iterations):
    points[-1] = target
    for k in range(len(lengths) - 1, -1, -1):
      direction = points[k] - points[k + 1]
      points[k] = points[k + 1] + lengths[k] * direction / np.linalg.norm(direction)
    points[0] = base
    for k in range(len(lengths)):
      direction = points[k + 1] - points[k]
      points[k + 1] = points[k] + lengths[k] * direction / np.linalg.norm(direction)
  return points


def _tip_field(displacement: np.ndarray) -> np.ndarray:
  """Spreads `[..., 3]` tarsus-tip displacements over the joints: `[..., 5, 3]`."""
  return JOINT_WEIGHTS[:, None] * displacement[..., None, :]


def _synthetic_primitive(name, rest, tip_targets, cos_tip, sin_tip, frequency_hz,
                         tip_shifts=None) -> MotionPrimitive:
  """A primitive built from the rest posture: some tarsi moved by inverse kinematics to
  targets, others shifted, and a first-harmonic oscillation of the tips."""
  mean = rest.copy()
  for leg, target in tip_targets.items():
    mean[leg] = reach(rest[leg], np.asarray(target))
  for leg, shift in (tip_shifts or {}).items():
    mean[leg] = mean[leg] + _tip_field(np.asarray(shift, np.float64))
  cos = np.zeros((HARMONICS, 6, 5, 3))
  sin = np.zeros((HARMONICS, 6, 5, 3))
  for leg, amplitude in cos_tip.items():
    cos[0, leg] = _tip_field(np.asarray(amplitude, np.float64))
  for leg, amplitude in sin_tip.items():
    sin[0, leg] = _tip_field(np.asarray(amplitude, np.float64))
  return MotionPrimitive(name=name, mean=mean, cos=cos, sin=sin, frequency_hz=frequency_hz)


def rest_posture() -> np.ndarray:
  """`[6, 5, 3]` the still posture of the first 1.2 s of the real walking clip."""
  return reference.reference_pose("walking")[:120].mean(axis=0)


@functools.lru_cache(maxsize=None)
def motion_primitives() -> tuple[MotionPrimitive, ...]:
  """The primitive of every class, in `MC2P_CLASS_NAMES` order."""
  walking = reference.reference_pose("walking")
  grooming = reference.reference_pose("grooming")
  rest = rechain(rest_posture()[None], *reference_body())[0]
  primitives = {
      "resting": MotionPrimitive("resting", rest, np.zeros((HARMONICS, 6, 5, 3)),
                                 np.zeros((HARMONICS, 6, 5, 3)), 0.0),
      # Steady walking starts 3 s into the clip.
      "walking": fit_primitive("walking", walking[300:], range(6), (4.0, 12.0)),
      "foreleg_grooming": fit_primitive("foreleg_grooming", grooming[:160], FRONT_LEGS,
                                        (4.0, 14.0)),
      "eye_grooming": fit_primitive("eye_grooming", grooming[165:265], FRONT_LEGS,
                                    (4.0, 14.0)),
  }
  eye = primitives["eye_grooming"]
  antennal_mean = eye.mean.copy()
  for leg, side in zip(FRONT_LEGS, (-1, 1)):
    antennal_mean[leg] = reach(eye.mean[leg], np.array([1.45, side * 0.15, 0.45]))
  primitives["antennal_grooming"] = MotionPrimitive(
      "antennal_grooming", antennal_mean, 0.6 * eye.cos, 0.6 * eye.sin,
      1.15 * eye.frequency_hz)
  right_hind, left_hind = HIND_LEGS
  right_mid, left_mid = MID_LEGS
  primitives["abdominal_grooming"] = _synthetic_primitive(
      "abdominal_grooming", rest,
      tip_targets={right_hind: [-1.2, -0.5, 0.1], left_hind: [-1.2, 0.5, 0.1]},
      cos_tip={right_hind: [0.35, 0.0, 0.0], left_hind: [0.35, 0.0, 0.0]},
      sin_tip={right_hind: [0.0, 0.0, 0.15], left_hind: [0.0, 0.0, 0.15]},
      frequency_hz=5.0,
      tip_shifts={right_mid: [-0.25, -0.1, 0.0], left_mid: [-0.25, 0.1, 0.0]})
  primitives["hindleg_grooming"] = _synthetic_primitive(
      "hindleg_grooming", rest,
      tip_targets={right_hind: [-1.6, -0.15, -0.8], left_hind: [-1.6, 0.15, -0.8]},
      cos_tip={right_hind: [0.3, 0.0, 0.0], left_hind: [-0.3, 0.0, 0.0]},
      sin_tip={right_hind: [0.0, 0.0, 0.08], left_hind: [0.0, 0.0, -0.08]},
      frequency_hz=6.0,
      tip_shifts={right_mid: [0.15, 0.0, 0.0], left_mid: [0.15, 0.0, 0.0]})
  return tuple(primitives[name] for name in recording_lib.MC2P_CLASS_NAMES)


@functools.lru_cache(maxsize=None)
def reference_body() -> tuple[np.ndarray, np.ndarray]:
  """The reference body: `[6, 3]` body-coxa points and `[6, 4]` segment lengths (mm),
  left and right legs of a pair made equal."""
  walking = reference.reference_pose("walking")
  coxa = walking[:, :, 0].mean(axis=0)
  lengths = np.linalg.norm(np.diff(walking, axis=2), axis=-1).mean(axis=0)
  lengths = np.concatenate([(lengths[:3] + lengths[3:]) / 2] * 2)
  mirror = np.array([1.0, -1.0, 1.0])
  right = (coxa[:3] + coxa[3:] * mirror) / 2
  return np.concatenate([right, right * mirror]), lengths


def rotation_matrix(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
  """`[3, 3]` rotation about z (yaw), then y (pitch), then x (roll)."""
  yaw, pitch, roll = np.deg2rad([yaw_deg, pitch_deg, roll_deg])
  rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
  ry = np.array([[np.cos(pitch), 0, np.sin(pitch)], [0, 1, 0],
                 [-np.sin(pitch), 0, np.cos(pitch)]])
  rx = np.array([[1, 0, 0], [0, np.cos(roll), -np.sin(roll)], [0, np.sin(roll), np.cos(roll)]])
  return rz @ ry @ rx


@dataclasses.dataclass(frozen=True)
class Body:
  """An animal's body and its style of movement.

  Attributes:
    segment_scale: `[6, 4]` relative length of each leg segment (left = right).
    body_scale: relative size of the thorax (body-coxa positions, head, abdomen).
    tip_offset: `[6, 3]` constant displacement (mm) of each tarsus tip in every action.
    action_tip_offset: `[C, 6, 3]` extra displacement of each tarsus tip per action.
    gait_frequency_hz: step frequency at the animal's typical walking speed.
    rhythm_scale: `[C]` the animal's rhythm of each action relative to the real one
      (walking: `gait_frequency_hz` / the real clip's frequency).
    walking_speed_mm_s: the animal's typical walking speed.
    rotation_deg: `[3]` residual alignment rotation (yaw, pitch, roll).
  """

  segment_scale: np.ndarray
  body_scale: float
  tip_offset: np.ndarray
  action_tip_offset: np.ndarray
  gait_frequency_hz: float
  rhythm_scale: np.ndarray
  walking_speed_mm_s: float
  rotation_deg: np.ndarray

  @property
  def coxa(self) -> np.ndarray:
    """`[6, 3]` body-coxa points."""
    return reference_body()[0] * self.body_scale

  @property
  def segment_lengths(self) -> np.ndarray:
    """`[6, 4]` leg segment lengths (mm)."""
    return reference_body()[1] * self.segment_scale

  @property
  def rotation(self) -> np.ndarray:
    return rotation_matrix(*self.rotation_deg)


def sample_body(config: config_lib.SimulatorConfig, rng: np.random.Generator) -> Body:
  """Draws an animal's body and movement style."""
  pair_scale = 1.0 + config.morphology_scale_std * rng.standard_normal((3, 4))
  walking = motion_primitives()[CLASS_INDEX["walking"]]
  gait = config.gait_frequency_hz * np.exp(config.gait_frequency_std * rng.standard_normal())
  rhythm = np.exp(config.grooming_rhythm_std * rng.standard_normal(NUM_CLASSES))
  rhythm[CLASS_INDEX["walking"]] = gait / walking.frequency_hz
  rhythm[CLASS_INDEX["resting"]] = 1.0
  return Body(
      segment_scale=np.concatenate([pair_scale, pair_scale]),
      body_scale=float(1.0 + config.morphology_scale_std * rng.standard_normal()),
      tip_offset=config.posture_offset_std * rng.standard_normal((6, 3)),
      action_tip_offset=0.5 * config.posture_offset_std *
      rng.standard_normal((NUM_CLASSES, 6, 3)),
      gait_frequency_hz=float(gait),
      rhythm_scale=rhythm,
      walking_speed_mm_s=float(config.walking_speed_mm_s *
                               np.exp(config.walking_speed_std * rng.standard_normal())),
      rotation_deg=config.alignment_rotation_deg * rng.standard_normal(3),
  )


def ornstein_uhlenbeck(rng: np.random.Generator, shape, timescale_frames: float) -> np.ndarray:
  """Stationary unit-variance AR(1) noise along the first axis of `shape`."""
  decay = np.exp(-1.0 / max(timescale_frames, 1e-6))
  noise = rng.standard_normal(shape)
  noise[0] /= np.sqrt(1 - decay**2)
  return signal.lfilter([np.sqrt(1 - decay**2)], [1.0, -decay], noise, axis=0)


def rechain(pose: np.ndarray, coxa: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  """Rebuilds legs from their segment directions with the given body and segment lengths.

  Args:
    pose: `[T, 6, 5, 3]` joint positions whose segment directions are kept.
    coxa: `[6, 3]` body-coxa points.
    lengths: `[6, 4]` segment lengths.

  Returns:
    `[T, 6, 5, 3]` joint positions.
  """
  segments = np.diff(pose, axis=2)
  unit = segments / np.maximum(np.linalg.norm(segments, axis=-1, keepdims=True), 1e-9)
  joints = coxa[None, :, None, :] + np.cumsum(unit * lengths[None, :, :, None], axis=2)
  return np.concatenate([np.broadcast_to(coxa[None, :, None, :], joints[:, :, :1].shape),
                         joints], axis=2)


def legs_to_keypoints(legs: np.ndarray, antenna: np.ndarray,
                      abdomen: np.ndarray) -> np.ndarray:
  """Places legs `[T, 6, 5, 3]`, antennae `[T, 2, 3]` and abdominal stripes `[T, 2, 3, 3]`
  into the `[T, 38, 3]` DeepFly3D layout."""
  pose = np.zeros((legs.shape[0], keypoints.NUM_KEYPOINTS, 3), legs.dtype)
  pose[:, keypoints.leg_keypoint_indices()] = legs
  pose[:, keypoints.antenna_indices()] = antenna
  pose[:, keypoints.abdomen_indices()] = abdomen
  return pose


def _bout_variation(sequence: actions.ActionSequence, blend_frames: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """How each bout differs from the others of its class, frame by frame.

  Returns:
    `gain` `[T, 6]` amplitude factor of each leg's movement, `shift` `[T, 6, 3]` tarsus tip
    displacement (mm), `engagement` `[T, 6]` how much each leg takes part in the action
    (1) rather than staying at rest (0): abdominal grooming is often one-sided.
  """
  num_frames = len(sequence.labels)
  num_bouts = len(sequence.bout_start)
  gain = np.exp(BOUT_AMPLITUDE_LOG_STD * rng.standard_normal((num_bouts, 6)))
  shift = BOUT_POSTURE_STD_MM * rng.standard_normal((num_bouts, 6, 3))
  engagement = np.ones((num_bouts, 6))
  side = rng.choice(3, size=num_bouts, p=ABDOMINAL_SIDE_PROBABILITY)
  abdominal = sequence.bout_label == CLASS_INDEX["abdominal_grooming"]
  right_hind, left_hind = HIND_LEGS
  engagement[abdominal & (side == 1), left_hind] = UNILATERAL_OTHER_LEG
  engagement[abdominal & (side == 2), right_hind] = UNILATERAL_OTHER_LEG
  bout = np.clip(np.searchsorted(sequence.bout_start, np.arange(num_frames), side="right") - 1,
                 0, max(num_bouts - 1, 0))
  smooth = functools.partial(ndimage.uniform_filter1d, size=max(1, blend_frames), axis=0,
                             mode="nearest")
  return smooth(gain[bout]), smooth(shift[bout]), smooth(engagement[bout])


def simulate_pose(body: Body, sequence: actions.ActionSequence,
                  config: config_lib.SimulatorConfig,
                  rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """Simulates the pose of one trial.

  Args:
    body: the animal.
    sequence: the trial's behaviour (latent action weights and bouts).
    config: simulator settings.
    rng: random generator of this trial.

  Returns:
    `pose` `[T, 38, 3]` float32 DeepFly3D keypoints (mm) and the kinematics `[T]` or
    `[T, 6]` float32: `walking_speed` (mm/s, 0 when not walking), `turning` (-1 right ..
    1 left, 0 when not walking), `leg_speed` (tarsus tip speed of each leg, mm/s), and
    `phase` `[T, C]` (cycle phase of every action, radians).
  """
  fps = config.fps_behaviour
  weights = sequence.weights
  num_frames = weights.shape[0]
  primitives = motion_primitives()
  walking = CLASS_INDEX["walking"]
  rest = primitives[CLASS_INDEX["resting"]].mean
  bout_gain, bout_shift, engagement = _bout_variation(
      sequence, int(round(config.blend_seconds * fps)), rng)

  relative_speed = np.exp(SPEED_LOG_STD * ornstein_uhlenbeck(
      rng, num_frames, SPEED_TIMESCALE_S * fps) - SPEED_LOG_STD**2 / 2)
  turning = np.clip(TURNING_STD * ornstein_uhlenbeck(rng, num_frames, TURNING_TIMESCALE_S * fps),
                    -0.8, 0.8)
  rhythm = np.exp(RHYTHM_LOG_STD * ornstein_uhlenbeck(
      rng, (num_frames, NUM_CLASSES), MODULATION_TIMESCALE_S * fps))
  amplitude = np.exp(AMPLITUDE_LOG_STD * ornstein_uhlenbeck(
      rng, (num_frames, NUM_CLASSES), MODULATION_TIMESCALE_S * fps))
  rhythm[:, walking] = relative_speed**FREQUENCY_SPEED_EXPONENT
  amplitude[:, walking] = np.clip(relative_speed**STRIDE_SPEED_EXPONENT, 0.4, 1.6)
  frequency = np.array([p.frequency_hz for p in primitives]) * body.rhythm_scale * rhythm
  phase = 2 * np.pi * (np.cumsum(frequency, axis=0) / fps + rng.uniform(size=NUM_CLASSES))

  legs = np.zeros((num_frames, 6, 5, 3))
  for index, primitive in enumerate(primitives):
    frames = np.nonzero(weights[:, index] > 1e-3)[0]
    if not len(frames):
      continue
    mean = primitive.mean + _tip_field(body.action_tip_offset[index])
    leg_amplitude = amplitude[frames, index, None] * bout_gain[frames]
    if index == walking:
      # Turning to the left lengthens the strides of the right legs and shortens the left.
      leg_amplitude[:, RIGHT_LEGS] *= 1 + 0.5 * turning[frames, None]
      leg_amplitude[:, LEFT_LEGS] *= 1 - 0.5 * turning[frames, None]
    movement = mean + leg_amplitude[:, :, None, None] * primitive.oscillation(phase[frames,
                                                                                   index])
    movement = rest + engagement[frames, :, None, None] * (movement - rest)
    legs[frames] += weights[frames, index, None, None, None] * movement

  drift = DRIFT_STD_MM * ornstein_uhlenbeck(rng, (num_frames, 6, 3), DRIFT_TIMESCALE_S * fps)
  legs += _tip_field(drift + bout_shift + body.tip_offset)
  legs = rechain(legs, body.coxa, body.segment_lengths)

  tips = legs[:, :, -1]
  leg_speed = np.linalg.norm(np.gradient(tips, axis=0), axis=-1) * fps
  leg_speed = ndimage.uniform_filter1d(leg_speed, size=max(1, int(round(0.05 * fps))), axis=0)

  antennal = weights[:, CLASS_INDEX["antennal_grooming"]]
  abdominal = weights[:, CLASS_INDEX["abdominal_grooming"]]
  antenna = np.broadcast_to(ANTENNA_POINTS * body.body_scale, (num_frames, 2, 3)).copy()
  # The front legs pull the antennae down while cleaning them.
  pull = 0.5 * (1 + np.sin(phase[:, CLASS_INDEX["antennal_grooming"]]))
  antenna[:, :, 2] -= 0.05 * (antennal * pull)[:, None]
  abdomen = np.broadcast_to(ABDOMEN_STRIPE_POINTS * body.body_scale,
                            (num_frames, 2, 3, 3)).copy()
  # The abdomen bends down and sways while the hind legs sweep it.
  sway = np.cos(phase[:, CLASS_INDEX["abdominal_grooming"]])
  abdomen[..., 2] -= 0.06 * abdominal[:, None, None] * np.array([0.3, 0.6, 1.0])
  abdomen[..., 1] += 0.03 * (abdominal * sway)[:, None, None] * np.array([0.3, 0.6, 1.0])

  pose = legs_to_keypoints(legs, antenna, abdomen) @ body.rotation.T
  if config.keypoint_noise_std > 0:
    pose = pose + config.keypoint_noise_std * rng.standard_normal(pose.shape)
  if config.keypoint_outlier_rate > 0:
    outlier = rng.uniform(size=pose.shape[:2]) < config.keypoint_outlier_rate
    pose[outlier] += OUTLIER_STD_MM * rng.standard_normal((outlier.sum(), 3))

  walking_weight = weights[:, walking]
  kinematics = {
      "walking_speed": (body.walking_speed_mm_s * relative_speed * walking_weight),
      "turning": turning * walking_weight,
      "leg_speed": leg_speed,
      "phase": np.mod(phase, 2 * np.pi),
  }
  return pose.astype(np.float32), {k: v.astype(np.float32) for k, v in kinematics.items()}
