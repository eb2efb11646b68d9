"""Behaviour formats: how a recording's per-frame behaviour is laid out, named and normalised.

The paper's method needs a per-frame behaviour vector with a distance between frames (the
swap) and windows of it (the behaviour encoder); nothing in it is fly-pose specific. Three
formats are known:

  deepfly3d_pose (the default): `[T_b, 38, 3]` DeepFly3D keypoints. Features: each leg
    relative to its body-coxa point, 90 dims (`nar.data.keypoints.leg_relative_pose`), every one
    z-scored. NaN marks a missing keypoint.
  vector: `[T_b, D]` any per-frame feature vector with named dimensions (joint angles, ball
    or treadmill velocities, ...), each dimension with its own declared normalisation.
  keypoints_2d: `[T_b, 2K]` 2D keypoints of any species, a vector whose names come in
    `<point>_x, <point>_y` pairs (e.g. `nose_x, nose_y`). Declaring them as keypoints is what
    allows the geometric augmentations (rotation, shear, per-axis scaling, mirror).

In the vector formats NaN marks a missing value, as it marks a missing keypoint in the pose.

Normalisation of a vector dimension (`NORMALISATIONS`):

  zscore (default): `(x - mean) / std`, statistics of the training animals only.
  angle: an angle in radians (any range), represented by the two features
    `(cos x, sin x)`. The representation is continuous across the wrap-around, so the
    Euclidean swap distance between two frames is the chord distance on the circle; it is not
    z-scored (both features already lie in [-1, 1]). Convert degrees to radians first.
  none: taken as is.

Swap distance: Euclidean on the normalised feature vector, optionally weighted per dimension.
A vector format may declare `swap_weights`, one non-negative weight w_i per dimension, and the
swap then uses d(a, b) = sqrt(sum_i w_i (a_i - b_i)^2) on the normalised features: an angle
dimension's weight applies to both its cosine and sine features (w times the squared chord),
a weight of 0 leaves a dimension out of the distance (it is still swapped in with the frame).
Without weights every dimension weighs 1, the plain Euclidean distance; DeepFly3D pose always
uses it.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from nar.data import keypoints

POSE_FORMAT = "deepfly3d_pose"
VECTOR_FORMAT = "vector"
KEYPOINTS_2D_FORMAT = "keypoints_2d"
# Per-frame shape of the behaviour of each format; None stands for the vector's D.
BEHAVIOUR_FORMATS = {
    POSE_FORMAT: (keypoints.NUM_KEYPOINTS, 3),
    VECTOR_FORMAT: (None,),
    KEYPOINTS_2D_FORMAT: (None,),
}
VECTOR_FORMATS = (VECTOR_FORMAT, KEYPOINTS_2D_FORMAT)

ZSCORE = "zscore"
ANGLE = "angle"
NO_NORMALISATION = "none"
NORMALISATIONS = (ZSCORE, ANGLE, NO_NORMALISATION)
# Normalisations that keep a keypoint's coordinates as coordinates (no angle features).
KEYPOINT_NORMALISATIONS = (ZSCORE, NO_NORMALISATION)
KEYPOINT_AXES_2D = ("x", "y")
# Name tokens that a left-right mirror exchanges (compared in lower case).
MIRROR_TOKENS = {"left": "right", "right": "left", "l": "r", "r": "l"}


def _weights_array(swap_weights) -> np.ndarray | None:
  """Weights as a 1-D float64 array; None unless they are a 1-D sequence of numbers."""
  if isinstance(swap_weights, str):
    return None
  try:
    weights = np.asarray(swap_weights)
  except ValueError:  # A ragged sequence.
    return None
  if weights.ndim != 1 or weights.dtype.kind not in "iuf":
    return None
  return weights.astype(np.float64)


def swap_weights_tuple(swap_weights):
  """Per-dimension swap weights as a tuple of floats, the form the declarations hold.

  A value that is not a 1-D sequence of numbers is returned as it is, for `spec_problems` to
  report; None stays None.
  """
  if swap_weights is None:
    return None
  weights = _weights_array(swap_weights)
  return swap_weights if weights is None else tuple(float(w) for w in weights)


def spec_problems(behaviour_format, names, normalisation, dim: int | None = None, *,
                  swap_weights=None) -> list[str]:
  """Lists every problem of a behaviour declaration; empty when it is valid.

  Args:
    behaviour_format: a key of `BEHAVIOUR_FORMATS`.
    names: the names of the dimensions (vector formats), else None.
    normalisation: per-dimension normalisation (vector formats; None = all "zscore"), else
      None.
    dim: D of the behaviour array when known, to check the counts against.
    swap_weights: per-dimension weights of the swap distance (vector formats; None = all 1),
      else None.
  """
  if behaviour_format not in BEHAVIOUR_FORMATS:
    return [f"unknown behaviour_format {behaviour_format!r}; known: {sorted(BEHAVIOUR_FORMATS)}"]
  problems = []
  if behaviour_format == POSE_FORMAT:
    if names is not None:
      problems.append(
          "behaviour_names must not be given for deepfly3d_pose (the 38 keypoints are named by "
          "nar.data.keypoints.keypoint_names()); for a per-frame feature vector use "
          "behaviour_format='vector'")
    if normalisation is not None:
      problems.append("behaviour_normalisation must not be given for deepfly3d_pose (its leg "
                      "features are always z-scored)")
    if swap_weights is not None:
      problems.append("behaviour_swap_weights must not be given for deepfly3d_pose (its swap "
                      "distance is the plain Euclidean distance of the 90 leg features); "
                      "per-dimension weights need behaviour_format='vector' or 'keypoints_2d'")
    return problems

  if names is None:
    return [f"behaviour_names is required for behaviour_format {behaviour_format!r}: one name "
            "per behaviour dimension"]
  names = tuple(names)
  if not names or any(not isinstance(n, str) or not n for n in names):
    problems.append(f"behaviour_names must be non-empty strings, got {names!r}")
  elif len(set(names)) != len(names):
    duplicates = sorted({n for n in names if names.count(n) > 1})
    problems.append(f"behaviour_names has duplicates: {duplicates}")
  elif dim is not None and len(names) != dim:
    problems.append(f"behaviour_names has {len(names)} name(s) for {dim} behaviour "
                    "dimension(s); give one name per dimension")
  if behaviour_format == KEYPOINTS_2D_FORMAT and not problems:
    problems.extend(_keypoint_name_problems(names))

  if normalisation is not None:
    normalisation = tuple(normalisation)
    allowed = KEYPOINT_NORMALISATIONS if behaviour_format == KEYPOINTS_2D_FORMAT \
        else NORMALISATIONS
    unknown = sorted({str(n) for n in normalisation if n not in allowed})
    if unknown:
      problems.append(f"behaviour_normalisation holds {unknown}; allowed for "
                      f"{behaviour_format}: {list(allowed)}")
    if len(normalisation) != len(names):
      problems.append(f"behaviour_normalisation has {len(normalisation)} value(s) for "
                      f"{len(names)} behaviour_names; give one per dimension")
  if swap_weights is not None:
    problems.extend(_swap_weight_problems(swap_weights, names))
  return problems


def _swap_weight_problems(swap_weights, names: Sequence[str]) -> list[str]:
  weights = _weights_array(swap_weights)
  if weights is None:
    return [f"behaviour_swap_weights must be a sequence of numbers, one per dimension, got "
            f"{swap_weights!r}"]
  if len(weights) != len(names):
    return [f"behaviour_swap_weights has {len(weights)} value(s) for {len(names)} "
            "behaviour_names; give one per dimension"]
  for bad, rule in ((~np.isfinite(weights), "finite"), (weights < 0, ">= 0")):
    if bad.any():
      return [f"behaviour_swap_weights must be {rule}; dimension(s) "
              f"{[names[i] for i in np.flatnonzero(bad)]} have weight(s) "
              f"{weights[bad].tolist()}"]
  if not (weights > 0).any():
    return ["behaviour_swap_weights are all 0: the swap distance needs at least one dimension "
            "with a positive weight"]
  return []


def _keypoint_name_problems(names: Sequence[str]) -> list[str]:
  if len(names) % 2:
    return [f"keypoints_2d needs an even number of dimensions (x, y per point), got "
            f"{len(names)}"]
  for index in range(0, len(names), 2):
    x_name, y_name = names[index], names[index + 1]
    point = x_name[:-2]
    if not (x_name.endswith("_x") and point and y_name == f"{point}_y"):
      return [f"keypoints_2d names must come in '<point>_x', '<point>_y' pairs; dimensions "
              f"{index} and {index + 1} are {x_name!r}, {y_name!r}"]
  return []


def _mirrored_name(name: str) -> str:
  tokens = name.split("_")
  return "_".join(
      (MIRROR_TOKENS[t.lower()].upper() if t.isupper() else MIRROR_TOKENS[t.lower()])
      if t.lower() in MIRROR_TOKENS else t for t in tokens)


@dataclasses.dataclass(frozen=True)
class BehaviourSpec:
  """What a dataset's behaviour is: its format, dimension names, normalisations and swap
  weights.

  Attributes:
    format: a key of `BEHAVIOUR_FORMATS`.
    names: names of the D dimensions (vector formats); None for DeepFly3D pose.
    normalisation: per-dimension normalisation (vector formats; given as None it becomes
      "zscore" for every dimension); None for DeepFly3D pose.
    swap_weights: per-dimension weight w_i >= 0 of the swap distance
      sqrt(sum_i w_i (a_i - b_i)^2) (vector formats only); None weighs every dimension 1.
  """

  format: str = POSE_FORMAT
  names: tuple[str, ...] | None = None
  normalisation: tuple[str, ...] | None = None
  swap_weights: tuple[float, ...] | None = None

  def __post_init__(self):
    names = None if self.names is None else tuple(str(n) for n in self.names)
    normalisation = None if self.normalisation is None else tuple(self.normalisation)
    if normalisation is None and names is not None and self.format in VECTOR_FORMATS:
      normalisation = (ZSCORE,) * len(names)
    swap_weights = swap_weights_tuple(self.swap_weights)
    object.__setattr__(self, "names", names)
    object.__setattr__(self, "normalisation", normalisation)
    object.__setattr__(self, "swap_weights", swap_weights)
    problems = spec_problems(self.format, names, normalisation, swap_weights=swap_weights)
    if problems:
      raise ValueError("invalid behaviour declaration:\n" +
                       "\n".join(f"  - {p}" for p in problems))

  @classmethod
  def from_metadata(cls, metadata: dict) -> "BehaviourSpec":
    """The spec stored in a dataset's metadata (datasets built before vector behaviour
    existed hold DeepFly3D pose; those built before swap weights existed weigh every
    dimension 1)."""
    return cls(metadata.get("behaviour_format", POSE_FORMAT),
               metadata.get("behaviour_names"), metadata.get("behaviour_normalisation"),
               metadata.get("behaviour_swap_weights"))

  def to_metadata(self) -> dict:
    """The spec as JSON-ready metadata entries (`from_metadata` reads them back)."""
    return {"behaviour_format": self.format,
            "behaviour_names": None if self.names is None else list(self.names),
            "behaviour_normalisation": (None if self.normalisation is None
                                        else list(self.normalisation)),
            "behaviour_swap_weights": (None if self.swap_weights is None
                                       else list(self.swap_weights))}

  @property
  def is_vector(self) -> bool:
    return self.format in VECTOR_FORMATS

  @property
  def frame_shape(self) -> tuple[int, ...]:
    """Shape of one raw behaviour frame: `(38, 3)` for pose, `(D,)` for vectors."""
    if self.is_vector:
      return (len(self.names),)
    return BEHAVIOUR_FORMATS[self.format]

  @property
  def feature_names(self) -> tuple[str, ...]:
    """Names of the normalised features the encoder and the swap see."""
    if not self.is_vector:
      return tuple(f"{leg}_{joint}_{axis}" for leg in keypoints.LEGS
                   for joint in keypoints.JOINTS for axis in "xyz")
    names = []
    for name, kind in zip(self.names, self.normalisation):
      names.extend((f"{name}_cos", f"{name}_sin") if kind == ANGLE else (name,))
    return tuple(names)

  @property
  def feature_dim(self) -> int:
    """Dimension of the normalised features: the behaviour encoder's input dimension."""
    return len(self.feature_names)

  def _feature_sources(self) -> tuple[np.ndarray, np.ndarray]:
    """`(source dimension, kind)` of every feature; kind 0 value, 1 cosine, 2 sine."""
    sources, kinds = [], []
    for index, kind in enumerate(self.normalisation):
      if kind == ANGLE:
        sources += [index, index]
        kinds += [1, 2]
      else:
        sources.append(index)
        kinds.append(0)
    return np.asarray(sources, np.int64), np.asarray(kinds, np.int64)

  def features(self, behaviour: np.ndarray) -> np.ndarray:
    """Per-frame features before z-scoring, NaN where a value is missing.

    Args:
      behaviour: `[..., *frame_shape]` raw behaviour.

    Returns:
      `[..., feature_dim]` float32: leg-relative pose, or the vector with every angle
      dimension replaced by its cosine and sine.
    """
    if not self.is_vector:
      return keypoints.leg_relative_pose(behaviour)
    behaviour = np.asarray(behaviour, np.float32)
    if behaviour.ndim < 1 or behaviour.shape[-1] != len(self.names):
      raise ValueError(f"{self.format} behaviour must end in {len(self.names)} dimensions "
                       f"({', '.join(self.names[:4])}{', ...' if len(self.names) > 4 else ''})"
                       f", got shape {behaviour.shape}")
    if ANGLE not in self.normalisation:
      return behaviour
    sources, kinds = self._feature_sources()
    features = behaviour[..., sources]
    features[..., kinds == 1] = np.cos(features[..., kinds == 1])
    features[..., kinds == 2] = np.sin(features[..., kinds == 2])
    return features

  def swap_feature_weights(self) -> np.ndarray:
    """`[feature_dim]` float32 weight of every feature in the swap distance.

    Each dimension's declared weight, repeated for the cosine and sine features of an angle;
    all 1 (the plain Euclidean distance) for DeepFly3D pose and when no weights are declared.
    """
    if not self.is_vector or self.swap_weights is None:
      return np.ones(self.feature_dim, np.float32)
    sources, _ = self._feature_sources()
    return np.asarray(self.swap_weights, np.float32)[sources]

  def fitted_features(self) -> np.ndarray:
    """`[feature_dim]` bool: features z-scored with statistics fitted on training animals
    (the others are kept as they are: angle features and "none" dimensions)."""
    if not self.is_vector:
      return np.ones(self.feature_dim, bool)
    sources, kinds = self._feature_sources()
    zscored = np.array([kind == ZSCORE for kind in self.normalisation])
    return zscored[sources] & (kinds == 0)

  def frame_valid(self, observed: np.ndarray) -> np.ndarray:
    """Frames the swap may draw: every feature observed.

    Args:
      observed: `[..., K]` the recordings' `keypoint_mask` (per keypoint for pose, per
        dimension for vectors).

    Returns:
      `[...]` bool: for pose, every leg keypoint observed; for vectors, every dimension.
    """
    observed = np.asarray(observed, bool)
    if not self.is_vector:
      return observed[..., keypoints.leg_keypoint_indices().ravel()].all(axis=-1)
    return observed.all(axis=-1)

  @property
  def point_dims(self) -> int:
    """Coordinates per point of the features: 3 (pose), 2 (2D keypoints), 1 (no geometry)."""
    return {POSE_FORMAT: 3, KEYPOINTS_2D_FORMAT: 2}.get(self.format, 1)

  @property
  def mirror_axis(self) -> int | None:
    """The coordinate a left-right mirror negates: y (lateral) of the fly's body frame, x of
    an image; None for vectors without geometry."""
    return {POSE_FORMAT: 1, KEYPOINTS_2D_FORMAT: 0}.get(self.format)

  def mirror_permutation(self) -> tuple[int, ...] | None:
    """The point each feature point becomes under a left-right mirror; None for vectors.

    Pose: right and left legs exchange. 2D keypoints: points whose names differ by a
    `left`/`right` (or `l`/`r`) token exchange (`left_ear` <-> `right_ear`, `paw_L` <->
    `paw_R`); the others (on the midline, e.g. `nose`) stay.
    """
    if self.format == POSE_FORMAT:
      points_per_side = keypoints.NUM_LEG_KEYPOINTS // 2
      return tuple(range(points_per_side, 2 * points_per_side)) + tuple(range(points_per_side))
    if self.format == KEYPOINTS_2D_FORMAT:
      points = [name[:-2] for name in self.names[::2]]
      index = {point: i for i, point in enumerate(points)}
      return tuple(index.get(_mirrored_name(point), i) for i, point in enumerate(points))
    return None


POSE_SPEC = BehaviourSpec()
