"""Untrained reference features: linear probes on the raw inputs.

These give the reference rows of the evaluation tables: "Neural (linear) raw" (what a linear
read-out of ΔF/F windows achieves, the domain gap of a dataset), "Neural (linear),
standardised" (the same after each animal's per-pixel standardisation,
`nar.data.normalise`: what the encoders' input still tells of the animal) and
"Behaviour (linear)" (how well pose alone identifies the animal) and "Behaviour (linear),
swapped" (the same after the cross-animal swap of every window: how much of the animal the
swap leaves in the target that Ours' neural encoder is trained to match). All go through the
probe suite of `nar.eval.protocol` exactly as the features of a trained encoder do.

ROI traces whose ROI count differs between animals are zero-padded to the largest count, so
that every animal's time-averaged traces stack into one feature matrix. ROI i of one animal is
not ROI i of another (each animal images cells of its own), so a probe trained on some
animals reads the padded columns of a new animal as other cells: exactly the domain gap the
neural row measures.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from nar.data import shards
from nar.data import windows
from nar.eval import features as features_lib
from nar.method import pose_bank
from nar.method import swap

# Which window array each kind of raw feature reads.
INPUT_KEYS = {"neural": "neural_images", "pose": "pose"}


def neural_window_features(neural: np.ndarray) -> np.ndarray:
  """`[B, T, ...]` neural windows -> `[B, features]`: the time average, flattened."""
  return np.asarray(neural).mean(axis=1).reshape(len(neural), -1)


def pose_window_features(pose: np.ndarray) -> np.ndarray:
  """`[B, T, D]` normalised pose windows -> `[B, 2 D]`: mean and std of each dim over time.

  The mean carries the animal's posture and the std its movement amplitude, in a vector small
  enough for a quick linear probe (a flattened window has T x D = 2,880 dims).
  """
  pose = np.asarray(pose, np.float32)
  return np.concatenate([pose.mean(axis=1), pose.std(axis=1)], axis=-1)


_ENCODERS = {"neural": neural_window_features, "pose": pose_window_features}


def raw_feature_table(dataset: shards.ShardedDataset, spec: windows.WindowSpec,
                      normalizer: windows.PoseNormalizer, *, kind: str, hop: int,
                      drop_classes: Sequence[str], num_time_blocks: int,
                      neural_key: str | None = None, batch_size: int = 256,
                      neural_normalizer=None, animals: Sequence[str] | None = None
                      ) -> features_lib.FeatureTable:
  """The feature table of raw windows, for `nar.eval.protocol.run_probe_suite`.

  Args:
    dataset: an opened dataset.
    spec: window geometry.
    normalizer: pose z-scoring fitted on the training animals.
    kind: "neural" (time-averaged ΔF/F windows, ROI traces zero-padded to the largest ROI
      count where the counts differ) or "pose" (behaviour-window statistics).
    hop: keep every `hop`-th valid centre frame.
    drop_classes: classes left out of the evaluation.
    num_time_blocks: blocks each trial is cut into for the time-block splits.
    neural_key: the neural array of `kind="neural"` (default "neural_images").
    batch_size: windows per call.
    neural_normalizer: a `nar.data.normalise.NeuralNormalizer` to standardise the
      neural windows with before averaging (the "standardised" reference row), or None.
    animals: only these animals' windows; None: every animal.

  Returns:
    The feature table of every labelled, evaluated window of every animal.
  """
  if kind not in _ENCODERS:
    raise ValueError(f"unknown raw feature kind {kind!r}; choose one of {sorted(_ENCODERS)}")
  key = neural_key if kind == "neural" and neural_key else INPUT_KEYS[kind]
  # Padded to the dataset's largest ROI count (columns beyond an animal's own R are zero);
  # see the module docstring for what the padded columns mean across animals.
  pad_rois = key == "roi_traces" and len(set(dataset.roi_counts.values())) > 1
  return features_lib.build_feature_table(
      _ENCODERS[kind], dataset, spec, normalizer, neural_key=key, hop=hop,
      drop_classes=drop_classes, num_time_blocks=num_time_blocks, batch_size=batch_size,
      pad_rois=pad_rois, neural_normalizer=neural_normalizer if kind == "neural" else None,
      animals=animals)


def swapped_pose_feature_table(dataset: shards.ShardedDataset, spec: windows.WindowSpec,
                               normalizer: windows.PoseNormalizer, *, key: jax.Array,
                               temperature: float, per_frame_target: bool, hop: int,
                               drop_classes: Sequence[str], num_time_blocks: int,
                               pool_stride: int = 1, batch_size: int = 256,
                               animals: Sequence[str] | None = None
                               ) -> features_lib.FeatureTable:
  """The "Behaviour (linear)" table after the cross-animal swap of every window.

  Every window of animal s is swapped (probability 1) by `nar.method.swap.swap_pose_windows` with a
  pool of every animal of the dataset (held-out ones too, so that each animal's windows are
  measured alike), with the swap distance and the pool thinning of training; its window
  statistics
  (`pose_window_features`) then go to the probes. A swap that hides the animal leaves the
  identity probe near chance on this table.

  Args:
    dataset: an opened dataset with at least two animals.
    spec: window geometry.
    normalizer: pose z-scoring fitted on the training animals.
    key: PRNG key of the swap (one draw per batch, folded in by batch number).
    temperature: swap temperature (> 0).
    per_frame_target: draw the other animal per frame instead of per window.
    hop: keep every `hop`-th valid centre frame.
    drop_classes: classes left out of the evaluation.
    num_time_blocks: blocks each trial is cut into for the time-block splits.
    pool_stride: keep every `pool_stride`-th frame of each animal in the pool, as training's
      `swap.pool_stride` does (the targets Ours is trained with come from that pool).
    batch_size: windows per call.
    animals: only these animals' windows (the pool keeps every animal); None: all.

  Returns:
    The feature table of every labelled, evaluated window of every animal.
  """
  bank = pose_bank.make_swap_bank(dataset, normalizer, dataset.animals,
                                  pool_stride=pool_stride)
  bank_row_of_animal = pose_bank.bank_rows(bank, dataset.animals)
  batches_done = [0]

  def encode(pose: np.ndarray, animal: np.ndarray) -> np.ndarray:
    batch_key = jax.random.fold_in(key, batches_done[0])
    batches_done[0] += 1
    swapped, _ = swap.swap_pose_windows(
        batch_key, pose, bank_row_of_animal[animal], bank, swap_probability=1.0,
        temperature=temperature, per_frame_target=per_frame_target)
    return pose_window_features(np.asarray(swapped))

  return features_lib.build_feature_table(
      encode, dataset, spec, normalizer, neural_key="pose", hop=hop,
      drop_classes=drop_classes, num_time_blocks=num_time_blocks, batch_size=batch_size,
      with_animal=True, animals=animals)
