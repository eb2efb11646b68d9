"""Windows: about one second of behaviour paired with the neural frames of the same second.

A window is defined by its centre behaviour frame `c`. Its pose frames are
`c + pose_stride * (arange(pose_frames) - pose_frames // 2)` and its neural frames are
`sync[c] + arange(neural_frames) - neural_frames // 2`, so both modalities are centred on the
same instant through the sync array. The window's label is the label of its centre frame.

The functions here work on plain arrays of one trial, so that the in-memory path (a
`Recording`) and the shard path (segments read back from TFDS) cut identical windows. "Pose"
in the names below stands for the behaviour of any format (`nar.data.behaviour`): DeepFly3D pose
(leg-relative, 90 dims) or a per-frame feature vector with its declared normalisation.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from nar.data import recording as recording_lib


@dataclasses.dataclass(frozen=True)
class WindowSpec:
  """Geometry of a window.

  Attributes:
    pose_frames: behaviour frames per window.
    pose_stride: take every `pose_stride`-th behaviour frame.
    neural_frames: neural frames per window.

  Example:
    >>> spec = WindowSpec(pose_frames=4, pose_stride=2, neural_frames=2)
    >>> spec.pose_offsets(), spec.pose_span
    (array([-4, -2,  0,  2]), (4, 2))
  """

  pose_frames: int = 32
  pose_stride: int = 3
  neural_frames: int = 16

  def __post_init__(self):
    for name in ("pose_frames", "pose_stride", "neural_frames"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"WindowSpec.{name} must be >= 1, got {getattr(self, name)}")

  def pose_offsets(self) -> np.ndarray:
    """`[pose_frames]` offsets of the pose frames from the centre frame."""
    return self.pose_stride * (np.arange(self.pose_frames) - self.pose_frames // 2)

  def neural_offsets(self) -> np.ndarray:
    """`[neural_frames]` offsets of the neural frames from the centre's neural frame."""
    return np.arange(self.neural_frames) - self.neural_frames // 2

  @property
  def pose_span(self) -> tuple[int, int]:
    """Frames needed before and after the centre frame: `(before, after)`."""
    offsets = self.pose_offsets()
    return int(-offsets[0]), int(offsets[-1])


def valid_centres(sync: np.ndarray, num_neural_frames: int, spec: WindowSpec) -> np.ndarray:
  """Centre frames whose pose and neural frames all lie inside the trial.

  Args:
    sync: `[T_b]` neural frame index of every behaviour frame.
    num_neural_frames: T_n.
    spec: window geometry.

  Returns:
    `[N]` int64 sorted centre frame indices (possibly empty).

  Example:
    >>> sync = np.arange(12) // 2  # two behaviour frames per neural frame
    >>> valid_centres(sync, 6, WindowSpec(pose_frames=4, pose_stride=2, neural_frames=2))
    array([4, 5, 6, 7, 8, 9])
  """
  num_frames = len(sync)
  before, after = spec.pose_span
  centres = np.arange(before, num_frames - after, dtype=np.int64)
  neural_offsets = spec.neural_offsets()
  neural_start = sync[centres] + neural_offsets[0]
  neural_end = sync[centres] + neural_offsets[-1]
  keep = (neural_start >= 0) & (neural_end < num_neural_frames)
  return centres[keep]


def select_centres(
    centres: np.ndarray,
    labels: np.ndarray,
    *,
    drop_unlabelled: bool = False,
    drop_classes: Sequence[int] = (),
) -> np.ndarray:
  """Keeps the centres whose centre-frame label passes the filters."""
  centre_labels = labels[centres]
  keep = np.ones(len(centres), bool)
  if drop_unlabelled:
    keep &= centre_labels != recording_lib.UNLABELLED
  if len(drop_classes):
    keep &= ~np.isin(centre_labels, np.asarray(drop_classes))
  return centres[keep]


def tile_centres(centres: np.ndarray, hop: int, offset: int = 0) -> np.ndarray:
  """Deterministic tiling: every `hop`-th frame (from `offset`) among valid centres."""
  if hop < 1:
    raise ValueError(f"hop must be >= 1, got {hop}")
  return centres[(centres - offset) % hop == 0]


def cut_window(
    pose_features: np.ndarray,
    sync: np.ndarray,
    neural: Mapping[str, np.ndarray],
    labels: np.ndarray,
    centre: int,
    spec: WindowSpec,
) -> dict[str, np.ndarray]:
  """Cuts one window out of the arrays of one trial.

  Args:
    pose_features: `[T_b, D]` per-frame behaviour features (leg-relative pose).
    sync: `[T_b]` neural frame indices.
    neural: name -> `[T_n, ...]` neural arrays (e.g. `neural_images`, `roi_traces`).
    labels: `[T_b]` labels.
    centre: the centre behaviour frame (must be a valid centre).
    spec: window geometry.

  Returns:
    `pose` `[pose_frames, D]`, each neural array as `[neural_frames, ...]`, `label` (scalar),
    and `centre_frame`.
  """
  pose_index = centre + spec.pose_offsets()
  neural_index = sync[centre] + spec.neural_offsets()
  window = {"pose": pose_features[pose_index]}
  for name, array in neural.items():
    window[name] = array[neural_index]
  window["label"] = np.int32(labels[centre])
  window["centre_frame"] = np.int64(centre)
  return window


def recording_pose_features(rec: recording_lib.Recording) -> np.ndarray:
  """`[T_b, F]` behaviour features of a recording before z-scoring (NaN where missing).

  F = 90 leg-relative pose coordinates for DeepFly3D pose; for a vector format, the D
  dimensions with every "angle" dimension as its (cos, sin) pair
  (`rec.behaviour_spec.feature_dim`).
  """
  return rec.behaviour_spec.features(rec.behaviour)


def recording_neural_arrays(rec: recording_lib.Recording) -> dict[str, np.ndarray]:
  """The neural arrays a recording holds, by name."""
  arrays = {}
  if rec.neural_images is not None:
    arrays["neural_images"] = rec.neural_images
  if rec.roi_traces is not None:
    arrays["roi_traces"] = rec.roi_traces
  return arrays


def cut_recording_windows(
    rec: recording_lib.Recording,
    centres: np.ndarray,
    spec: WindowSpec,
) -> dict[str, np.ndarray]:
  """Cuts windows of a recording in memory, stacked along a leading axis.

  Returns:
    `pose` `[N, pose_frames, F]` behaviour features (`recording_pose_features`, not
    normalised), neural arrays `[N, neural_frames, ...]`, `label` `[N]`, `centre_frame` `[N]`.
  """
  features = recording_pose_features(rec)
  neural = recording_neural_arrays(rec)
  windows = [cut_window(features, rec.sync, neural, rec.labels, int(c), spec) for c in centres]
  if not windows:
    raise ValueError(f"no windows to cut from {rec.name}")
  return {key: np.stack([w[key] for w in windows]) for key in windows[0]}


@dataclasses.dataclass(frozen=True)
class PoseNormalizer:
  """Per-dimension z-scoring of behaviour features, fitted on training animals only.

  Serves every behaviour format: features that are not z-scored (angle features, "none"
  dimensions of a vector) have mean 0 and std 1, so they pass unchanged. Missing values (NaN)
  map to 0 (the training mean of a z-scored feature) after normalisation.
  """

  mean: np.ndarray
  std: np.ndarray

  @classmethod
  def fit(cls, features: np.ndarray, min_std: float = 1e-6,
          fitted: np.ndarray | None = None) -> "PoseNormalizer":
    """Fits on `[..., D]` features (NaN ignored).

    Args:
      features: `[..., D]` features of the training frames.
      min_std: floor of the fitted std (constant features stay finite).
      fitted: `[D]` bool, the features to z-score (`BehaviourSpec.fitted_features()`); the
        others get mean 0 and std 1. None z-scores every feature.
    """
    flat = np.asarray(features, np.float64).reshape(-1, features.shape[-1])
    fitted = np.ones(flat.shape[1], bool) if fitted is None else np.asarray(fitted, bool)
    if fitted.shape != (flat.shape[1],):
      raise ValueError(f"fitted must be a bool mask of shape ({flat.shape[1]},), "
                       f"got shape {fitted.shape}")
    empty = np.flatnonzero(fitted & ~np.isfinite(flat).any(axis=0))
    if empty.size:
      raise ValueError(
          f"cannot fit a pose normaliser: feature dimension(s) {empty.tolist()} have no finite "
          "value in the training frames; check the training animals' behaviour for missing "
          "values")
    mean = np.zeros(flat.shape[1])
    std = np.ones(flat.shape[1])
    if fitted.any():
      mean[fitted] = np.nanmean(flat[:, fitted], axis=0)
      std[fitted] = np.maximum(np.nanstd(flat[:, fitted], axis=0), min_std)
    return cls(mean.astype(np.float32), std.astype(np.float32))

  @property
  def feature_dim(self) -> int:
    """Dimension of the features it normalises (the behaviour encoder's input dimension)."""
    return int(self.mean.shape[-1])

  def __call__(self, features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, np.float32)
    if features.shape[-1:] != self.mean.shape:
      raise ValueError(f"the normaliser is for {self.feature_dim} behaviour features, got "
                       f"features of shape {features.shape}; fit it on this dataset's behaviour")
    normalised = (features - self.mean) / self.std
    return np.nan_to_num(normalised, nan=0.0).astype(np.float32)


# The name that says what it is for every behaviour format; `PoseNormalizer` stays valid.
BehaviourNormalizer = PoseNormalizer
