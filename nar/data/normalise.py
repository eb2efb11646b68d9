"""Per-animal standardisation of neural data, fitted without labels on a calibration period.

ΔF/F removes each pixel's resting fluorescence, but not everything that is the animal's own:
the mean ΔF/F of a pixel (how far its noise and activity lift it above the baseline
percentile) and its spread follow the animal's tissue brightness, expression level and
anatomy, so that a linear read-out of raw ΔF/F names the animal perfectly. Standardising each
pixel (or ROI) with statistics of the animal's own recordings is the usual first step of
neural analysis; it needs no labels, and a new animal's statistics come from its own data, as
its ΔF/F baseline does.

The statistics are fitted on a calibration period only: the first `calibration_fraction` of
every trial. That keeps them apart from the identity probe's test windows (the last time
block of every trial, `nar.eval.protocol.identity`): centring with statistics that include the
test windows would tie each test block to its own animal's training blocks (their deviations
from the animal's mean sum to zero) and bias the identity probe. `nar.train` checks that the
calibration period ends before the identity test block starts.

What standardising cannot remove (where on the image an animal's cells lie, how many are
visible, how strongly each responds) is left to the encoders and, for the identity of the
features, to the swap.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np
import tqdm

from nar.data import shards as shards_lib

# Standardisation divides by std + STD_FLOOR x (the animal's mean std over pixels), so that
# nearly constant pixels (outside the tissue, padded ROIs) are not blown up into noise.
STD_FLOOR = 0.05
MODES = ("none", "animal")


def floored_scale(std: np.ndarray) -> np.ndarray:
  """The divisor of a standardisation: `std` plus `STD_FLOOR` x its mean over all elements.

  The same rule serves the input (`NeuralNormalizer`) and the features
  (`nar.eval.features.animal_feature_statistics`).

  Example:
    >>> floored_scale(np.array([1.0, 0.0])).tolist()
    [1.025, 0.025]
  """
  std = np.asarray(std, np.float64)
  return std + STD_FLOOR * max(float(std.mean()), 1e-12)


@dataclasses.dataclass(frozen=True)
class NeuralNormalizer:
  """Per-animal, per-element mean and scale of one neural array.

  Attributes:
    key: the neural array it standardises ("neural_images" or "roi_traces").
    mean: animal -> `[*frame_shape]` float32 mean of every pixel (or ROI).
    scale: animal -> `[*frame_shape]` float32 divisor (std + floor) of every pixel (or ROI).
    calibration_fraction: the leading fraction of every trial the statistics come from.
  """

  key: str
  mean: Mapping[str, np.ndarray]
  scale: Mapping[str, np.ndarray]
  calibration_fraction: float

  @classmethod
  def fit(cls, dataset: shards_lib.ShardedDataset, key: str, *,
          calibration_fraction: float, animals: Sequence[str] | None = None,
          progress: bool = True) -> "NeuralNormalizer":
    """Fits the statistics of every animal on the first part of each of its trials.

    Args:
      dataset: an opened dataset.
      key: the neural array to standardise.
      calibration_fraction: in (0, 1]: the leading fraction of every trial to fit on.
      animals: the animals to fit (default: all of the dataset's, held-out ones included:
        each animal's own statistics, no labels).
      progress: show a progress bar over trials.

    Raises:
      ValueError: an unknown key or animal, or a fraction outside (0, 1] that leaves a trial
        without a calibration frame.
    """
    if key not in dataset.neural_keys:
      raise ValueError(f"the dataset has no {key!r} to standardise; it has "
                       f"{list(dataset.neural_keys)}")
    if not 0.0 < calibration_fraction <= 1.0:
      raise ValueError(f"calibration_fraction must lie in (0, 1], got {calibration_fraction}")
    animals = tuple(dataset.animals if animals is None else animals)
    unknown = sorted(set(animals) - set(dataset.animals))
    if unknown:
      raise ValueError(f"animals {unknown} are not in the dataset ({list(dataset.animals)})")
    index = dataset.behaviour_index
    trials = [t for t in range(index.num_trials) if str(index.animal_ids[t]) in animals]
    sums: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}
    for trial in tqdm.tqdm(trials, desc=f"fitting {key} statistics", unit="trial",
                           disable=not progress):
      num_frames = int(dataset.trials[trial]["num_neural_frames"])
      end = int(num_frames * calibration_fraction)
      if end < 1:
        raise ValueError(f"calibration_fraction={calibration_fraction} leaves trial {trial} "
                         f"({num_frames} neural frames) without a calibration frame")
      frames = dataset.read_neural(trial, 0, end)[key].astype(np.float64)
      animal = str(index.animal_ids[trial])
      count, total, total_sq = sums.get(animal, (0, 0.0, 0.0))
      sums[animal] = (count + len(frames), total + frames.sum(axis=0),
                      total_sq + np.square(frames).sum(axis=0))
    mean, scale = {}, {}
    for animal, (count, total, total_sq) in sums.items():
      animal_mean = total / count
      std = np.sqrt(np.maximum(total_sq / count - np.square(animal_mean), 0.0))
      mean[animal] = animal_mean.astype(np.float32)
      scale[animal] = floored_scale(std).astype(np.float32)
    return cls(key=key, mean=mean, scale=scale, calibration_fraction=calibration_fraction)

  def __call__(self, animal: str, neural: np.ndarray) -> np.ndarray:
    """Standardises `[T, *frame_shape]` neural frames of `animal`."""
    self._check_animals([animal])
    return ((neural - self.mean[animal]) / self.scale[animal]).astype(np.float32)

  def standardise_windows(self, animals: Sequence[str], neural: np.ndarray) -> np.ndarray:
    """Standardises a batch of windows of several animals at once.

    Args:
      animals: `[B]` the animal of each window.
      neural: `[B, T, *frame_shape]` float32 frames.

    Returns:
      `[B, T, *frame_shape]` float32: window b equal, to the bit, to `self(animals[b],
      neural[b])`.
    """
    names = [str(animal) for animal in animals]
    self._check_animals(names)
    if len(names) != len(neural):
      raise ValueError(f"{len(names)} animals for {len(neural)} windows")
    unique, inverse = np.unique(names, return_inverse=True)
    mean = np.stack([self.mean[name] for name in unique])[inverse][:, None]
    scale = np.stack([self.scale[name] for name in unique])[inverse][:, None]
    standardised = np.subtract(neural, mean, dtype=np.float32)
    return np.divide(standardised, scale, out=standardised)

  def _check_animals(self, animals: Sequence[str]) -> None:
    for animal in animals:
      if animal not in self.mean:
        raise KeyError(f"no {self.key} statistics for animal {animal!r}; fitted for "
                       f"{sorted(self.mean)}")


def calibration_fraction(requested: float | None, identity_time_blocks: int) -> float:
  """The calibration period, checked to end before the identity probe's test block.

  Args:
    requested: the leading fraction of every trial to fit on; None: every time block before
      the identity test block.
    identity_time_blocks: the identity probe tests on the last of this many equal blocks of
      every trial.

  Raises:
    ValueError: a fraction that reaches into the test block, or is not positive.
  """
  limit = 1.0 - 1.0 / identity_time_blocks
  if requested is None:
    return limit
  if not 0.0 < requested <= limit + 1e-9:
    raise ValueError(
        f"data.neural_calibration_fraction={requested} must lie in (0, {limit:g}]: "
        f"the statistics must not include the identity probe's test block, the last of "
        f"eval.identity_time_blocks={identity_time_blocks} blocks of every trial")
  return float(requested)
