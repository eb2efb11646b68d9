"""The DeepFly3D 38-keypoint layout of the fly and the leg-relative pose features.

DeepFly3D writes 38 keypoints per frame: two sides of 19 points. Per side: front, mid and
hind leg with 5 points each (body-coxa, coxa-femur, femur-tibia, tibia-tarsus, tarsus tip),
then the antenna, then 3 abdominal stripes. Points 0-18 are the right side and 19-37 the
left side (the order of DeepFly3D's camera ordering and of its aligned-pose exports, whose
legs come as RF, RM, RH, LF, LM, LH).
"""

from __future__ import annotations

import numpy as np

NUM_KEYPOINTS = 38
NUM_KEYPOINTS_PER_SIDE = 19
SIDES = ("R", "L")
LEG_POSITIONS = ("F", "M", "H")
LEGS = tuple(side + position for side in SIDES for position in LEG_POSITIONS)
JOINTS = ("body_coxa", "coxa_femur", "femur_tibia", "tibia_tarsus", "tarsus_tip")
NUM_LEGS = len(LEGS)
NUM_JOINTS_PER_LEG = len(JOINTS)
NUM_LEG_KEYPOINTS = NUM_LEGS * NUM_JOINTS_PER_LEG  # 30
LEG_FEATURE_DIM = NUM_LEG_KEYPOINTS * 3  # 90


def _side_offset(side_index: int) -> int:
  return side_index * NUM_KEYPOINTS_PER_SIDE


def leg_keypoint_indices() -> np.ndarray:
  """Indices into the 38 keypoints of every leg point.

  Returns:
    int array `[6 legs, 5 joints]`, legs in `LEGS` order, joints in `JOINTS` order.
  """
  indices = np.zeros((NUM_LEGS, NUM_JOINTS_PER_LEG), np.int64)
  for leg_index in range(NUM_LEGS):
    side_index, position_index = divmod(leg_index, len(LEG_POSITIONS))
    start = _side_offset(side_index) + position_index * NUM_JOINTS_PER_LEG
    indices[leg_index] = np.arange(start, start + NUM_JOINTS_PER_LEG)
  return indices


def antenna_indices() -> np.ndarray:
  """Indices of the right and left antenna points, `[2]`."""
  return np.array([_side_offset(s) + 15 for s in range(len(SIDES))])


def abdomen_indices() -> np.ndarray:
  """Indices of the abdominal stripe points, `[2 sides, 3 stripes]`."""
  return np.array([[_side_offset(s) + 16 + i for i in range(3)] for s in range(len(SIDES))])


def keypoint_names() -> tuple[str, ...]:
  """Human-readable names of the 38 keypoints in DeepFly3D order."""
  names = [""] * NUM_KEYPOINTS
  for leg_index, leg in enumerate(LEGS):
    for joint_index, joint in enumerate(JOINTS):
      names[leg_keypoint_indices()[leg_index, joint_index]] = f"{leg}_{joint}"
  for side_index, side in enumerate(SIDES):
    names[antenna_indices()[side_index]] = f"{side}_antenna"
    for stripe, index in enumerate(abdomen_indices()[side_index]):
      names[index] = f"{side}_abdomen_stripe{stripe + 1}"
  return tuple(names)


def mirror_permutation() -> np.ndarray:
  """Permutation of the 38 keypoints that swaps left and right (for mirror augmentation)."""
  return np.concatenate([
      np.arange(NUM_KEYPOINTS_PER_SIDE, NUM_KEYPOINTS),
      np.arange(0, NUM_KEYPOINTS_PER_SIDE),
  ])


def leg_relative_pose(pose: np.ndarray) -> np.ndarray:
  """Expresses each leg relative to its own body-coxa point and keeps the 30 leg points.

  This removes the body's position and the tethering alignment from the pose, as the public
  MC2P loader does. The body-coxa points themselves become zero; they are kept so that the
  feature stays 90-dimensional and keypoint-aligned.

  Args:
    pose: `[..., 38, 3]` DeepFly3D keypoints (NaN where missing).

  Returns:
    `[..., 90]` float32 leg-relative coordinates, flattened as (leg, joint, xyz).
  """
  pose = np.asarray(pose, np.float32)
  if pose.shape[-2:] != (NUM_KEYPOINTS, 3):
    raise ValueError(f"pose must end in ({NUM_KEYPOINTS}, 3), got shape {pose.shape}")
  legs = pose[..., leg_keypoint_indices(), :]  # [..., 6, 5, 3]
  relative = legs - legs[..., :1, :]
  return relative.reshape(pose.shape[:-2] + (LEG_FEATURE_DIM,))
