"""Behaviour bouts and action sequences: the semi-Markov bout sampler every preset uses, and the
default preset's bout model fitted to the real annotations.

A trial is a chain of bouts. The class of the next bout depends on the current one (the
transition matrix of the real MC2P annotations); a bout's duration follows its class's
log-normal distribution (fitted to the real bouts, truncated); between two bouts the
annotators often left a short unlabelled gap (log-normal too, or none). During a gap the
animal is changing from one action to the next, so its latent action weights ramp from the
previous class to the next one.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
from scipy import ndimage
from scipy import special

from nar.data import recording as recording_lib
from nar.simulation import reference

NUM_CLASSES = len(recording_lib.MC2P_CLASS_NAMES)
# The shortest real bouts last 4-6 frames at 100 Hz.
MIN_BOUT_SECONDS = 0.04
# Pseudo-count per transition, so that rare but plausible transitions are not impossible.
TRANSITION_PSEUDO_COUNT = 0.25


def _truncated_lognormal_mean(log_mean, log_std, low, high):
  """Mean of exp(N(log_mean, log_std^2)) conditioned on lying in [low, high]."""
  log_mean, log_std = np.asarray(log_mean, np.float64), np.asarray(log_std, np.float64)
  a = (np.log(low) - log_mean) / log_std
  b = (np.log(high) - log_mean) / log_std
  mass = special.ndtr(b) - special.ndtr(a)
  shifted = special.ndtr(b - log_std) - special.ndtr(a - log_std)
  return np.exp(log_mean + log_std**2 / 2) * shifted / mass


def _sample_truncated_lognormal(rng, log_mean, log_std, low, high):
  """One draw of exp(N(log_mean, log_std^2)) conditioned on lying in [low, high]."""
  a = special.ndtr((np.log(low) - log_mean) / log_std)
  b = special.ndtr((np.log(high) - log_mean) / log_std)
  quantile = np.clip(rng.uniform(a, b), 1e-12, 1 - 1e-12)
  return float(np.exp(log_mean + log_std * special.ndtri(quantile)))


def stationary_distribution(transition: np.ndarray) -> np.ndarray:
  """`[C]` stationary distribution of a row-stochastic `[C, C]` matrix."""
  values, vectors = np.linalg.eig(transition.T)
  vector = np.real(vectors[:, np.argmin(np.abs(values - 1))])
  vector = np.abs(vector)
  return vector / vector.sum()


@dataclasses.dataclass(frozen=True)
class BoutModel:
  """Semi-Markov model of annotated behaviour bouts.

  Attributes:
    transition: `[C, C]` probability of the next bout's class (columns) given the current
      bout's class (rows); self-transitions are bouts of the same class split by a gap.
    log_duration_mean: `[C]` mean of the log bout duration (log seconds).
    log_duration_std: `[C]` std of the log bout duration.
    max_bout_seconds: bouts are truncated to [MIN_BOUT_SECONDS, max_bout_seconds].
    gap_zero_probability: probability that a bout follows the previous one directly.
    log_gap_mean: mean of the log duration (log seconds) of a non-empty gap.
    log_gap_std: std of the log duration of a non-empty gap.
    max_gap_seconds: gaps are truncated to this duration; 0 means no gaps.
  """

  transition: np.ndarray
  log_duration_mean: np.ndarray
  log_duration_std: np.ndarray
  max_bout_seconds: float
  gap_zero_probability: float
  log_gap_mean: float
  log_gap_std: float
  max_gap_seconds: float

  def mean_bout_seconds(self) -> np.ndarray:
    """`[C]` mean duration of the (truncated) bouts of each class."""
    return _truncated_lognormal_mean(self.log_duration_mean, self.log_duration_std,
                                     MIN_BOUT_SECONDS, self.max_bout_seconds)

  def frame_fractions(self) -> np.ndarray:
    """`[C]` long-run fraction of the labelled frames that each class holds."""
    time = stationary_distribution(self.transition) * self.mean_bout_seconds()
    return time / time.sum()

  def sample_bouts(self, num_frames: int, fps: float, rng: np.random.Generator):
    """Samples the bouts of one trial.

    The trial starts inside a bout drawn from the stationary distribution.

    Returns:
      `(start, end, label)`, each `[B]` int64: bout frames `[start, end)` and class indices;
      bouts are sorted, disjoint, inside `[0, num_frames)` and may be separated by gaps.
    """

    def bout_seconds(label, rng):
      return _sample_truncated_lognormal(
          rng, self.log_duration_mean[label], self.log_duration_std[label], MIN_BOUT_SECONDS,
          self.max_bout_seconds)

    def gap_frames(rng):
      if self.max_gap_seconds > 0 and rng.uniform() >= self.gap_zero_probability:
        gap = _sample_truncated_lognormal(rng, self.log_gap_mean, self.log_gap_std,
                                          0.5 / fps, self.max_gap_seconds)
        return max(1, int(round(gap * fps)))
      return 0

    return sample_bout_chain(num_frames, fps, rng,
                             first_label_probability=stationary_distribution(self.transition),
                             transition=self.transition, bout_seconds=bout_seconds,
                             min_first_seconds=MIN_BOUT_SECONDS, gap_frames=gap_frames)


def sample_bout_chain(num_frames: int, fps: float, rng: np.random.Generator, *,
                      first_label_probability: np.ndarray, transition: np.ndarray,
                      bout_seconds: Callable[[int, np.random.Generator], float],
                      min_first_seconds: float = 0.0,
                      gap_frames: Callable[[np.random.Generator], int] | None = None):
  """Samples a semi-Markov chain of bouts filling one trial; the bout sampler of every preset.

  Draws, in this order: the first bout's class; then per bout its duration
  (`bout_seconds`), for the first bout only the moment the recording starts within it, the
  gap that follows it (`gap_frames`, when given) and the next bout's class. Presets differ
  only in the distributions they pass, so equal seeds give equal bouts however they are
  parameterised.

  Args:
    num_frames: frames of the trial.
    fps: frame rate, Hz.
    rng: the trial's generator.
    first_label_probability: `[C]` probability of the class of the bout under way when the
      recording starts.
    transition: `[C, C]` probability of the next bout's class (columns) given the current
      one's (rows).
    bout_seconds: `(label, rng) -> seconds`, one draw of a bout's duration.
    min_first_seconds: the first bout, cut where the recording starts, lasts at least this.
    gap_frames: `rng -> frames`, one draw of the unlabelled gap after a bout (0 for none);
      None for bouts that follow each other directly.

  Returns:
    `(start, end, label)`, each `[B]` int64: bout frames `[start, end)` and class indices;
    bouts are sorted, disjoint and inside `[0, num_frames)`.
  """
  label = int(rng.choice(len(first_label_probability), p=first_label_probability))
  starts, ends, labels = [], [], []
  frame = 0
  first = True
  while frame < num_frames:
    seconds = bout_seconds(label, rng)
    if first:
      # The recording starts at a random moment of an ongoing bout.
      seconds = max(seconds * rng.uniform(), min_first_seconds)
      first = False
    length = max(1, int(round(seconds * fps)))
    starts.append(frame)
    ends.append(min(frame + length, num_frames))
    labels.append(label)
    frame += length
    if gap_frames is not None:
      frame += gap_frames(rng)
    label = int(rng.choice(len(transition), p=transition[label]))
  return (np.asarray(starts, np.int64), np.asarray(ends, np.int64),
          np.asarray(labels, np.int64))


def real_frame_fractions() -> np.ndarray:
  """`[C]` fraction of the labelled frames of each class in the real annotations."""
  bouts = reference.behaviour_bouts()
  frames = np.bincount(bouts["label"], weights=bouts["end"] - bouts["start"],
                       minlength=NUM_CLASSES)
  return frames / frames.sum()


def fit_real_bout_model(max_bout_seconds: float = 20.0,
                        max_gap_seconds: float = 2.0) -> BoutModel:
  """Fits the bout model to the real MC2P annotations (`nar/assets/`)."""
  bouts = reference.behaviour_bouts()
  fps = reference.REFERENCE_FPS
  seconds = (bouts["end"] - bouts["start"]) / fps
  log_mean = np.zeros(NUM_CLASSES)
  log_std = np.zeros(NUM_CLASSES)
  for label in range(NUM_CLASSES):
    logs = np.log(seconds[bouts["label"] == label])
    log_mean[label], log_std[label] = logs.mean(), logs.std()

  same_recording = bouts["recording"][1:] == bouts["recording"][:-1]
  current, following = bouts["label"][:-1][same_recording], bouts["label"][1:][same_recording]
  counts = np.full((NUM_CLASSES, NUM_CLASSES), TRANSITION_PSEUDO_COUNT)
  np.add.at(counts, (current, following), 1.0)
  transition = counts / counts.sum(axis=1, keepdims=True)

  gaps = (bouts["start"][1:] - bouts["end"][:-1])[same_recording] / fps
  positive = np.log(gaps[gaps > 0])
  return BoutModel(
      transition=transition, log_duration_mean=log_mean, log_duration_std=log_std,
      max_bout_seconds=float(max_bout_seconds),
      gap_zero_probability=float(np.mean(gaps == 0)),
      log_gap_mean=float(positive.mean()), log_gap_std=float(positive.std()),
      max_gap_seconds=float(max_gap_seconds))


def rebalance(model: BoutModel, target_fractions: np.ndarray,
              iterations: int = 500) -> BoutModel:
  """Re-weights the transitions so that the classes hold `target_fractions` of the frames.

  The transition into class j is multiplied by a weight w_j (then rows are renormalised),
  which keeps which transitions are common or rare while shifting how often each class is
  entered. Bout durations are unchanged.

  Args:
    model: the model to re-weight.
    target_fractions: `[C]` wanted long-run fractions of the labelled frames.
    iterations: fixed-point iterations on the weights.

  Returns:
    The re-weighted model.
  """
  target = np.asarray(target_fractions, np.float64)
  target = target / target.sum()
  target_bouts = target / model.mean_bout_seconds()
  target_bouts /= target_bouts.sum()
  weights = np.ones(NUM_CLASSES)
  transition = model.transition
  for _ in range(iterations):
    transition = model.transition * weights
    transition /= transition.sum(axis=1, keepdims=True)
    current = stationary_distribution(transition)
    weights *= np.sqrt(target_bouts / current)
    weights /= weights.max()
  return dataclasses.replace(model, transition=transition)


def balanced_bout_model(class_balance: float, max_bout_seconds: float,
                        max_gap_seconds: float) -> BoutModel:
  """The real bout model with frame fractions flattened to `real ** (1 - class_balance)`."""
  model = fit_real_bout_model(max_bout_seconds, max_gap_seconds)
  target = real_frame_fractions() ** (1.0 - class_balance)
  return rebalance(model, target / target.sum())


@dataclasses.dataclass(frozen=True)
class ActionSequence:
  """The behaviour of one trial, frame by frame.

  Attributes:
    labels: `[T]` int32 annotated class, -1 in the unlabelled gaps between bouts.
    weights: `[T, C]` float32 latent action weights (sum to 1): one-hot inside bouts,
      ramping from one class to the next across gaps, smoothed over the blend window.
    actions: `[T]` int32 latent action, the argmax of `weights` (defined on every frame).
    bout_start, bout_end, bout_label: `[B]` int64 bouts (end exclusive).
  """

  labels: np.ndarray
  weights: np.ndarray
  actions: np.ndarray
  bout_start: np.ndarray
  bout_end: np.ndarray
  bout_label: np.ndarray


def action_sequence(model: BoutModel, num_frames: int, fps: float, blend_seconds: float,
                    rng: np.random.Generator) -> ActionSequence:
  """Samples the behaviour of one trial."""
  start, end, label = model.sample_bouts(num_frames, fps, rng)
  labels = np.full(num_frames, recording_lib.UNLABELLED, np.int32)
  weights = np.zeros((num_frames, NUM_CLASSES), np.float64)
  for index, (a, b, c) in enumerate(zip(start, end, label)):
    labels[a:b] = c
    weights[a:b, c] = 1.0
    gap_end = start[index + 1] if index + 1 < len(start) else num_frames
    if gap_end > b:
      following = label[index + 1] if index + 1 < len(start) else c
      ramp = np.arange(1, gap_end - b + 1) / (gap_end - b + 1)
      weights[b:gap_end, c] += 1.0 - ramp
      weights[b:gap_end, following] += ramp
  blend_frames = int(round(blend_seconds * fps))
  if blend_frames > 1:
    window = np.hanning(blend_frames + 2)[1:-1]
    weights = ndimage.convolve1d(weights, window / window.sum(), axis=0, mode="nearest")
  weights = (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)
  return ActionSequence(labels=labels, weights=weights,
                        actions=weights.argmax(axis=1).astype(np.int32),
                        bout_start=start, bout_end=end, bout_label=label)
