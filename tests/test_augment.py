"""Augmentations: each one acts when on, none acts at magnitude 0, keys decide the draw."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nar.data import keypoints
from nar.method import augment

POSE_OFF = augment.PoseAugmentation(**{f.name: 0 for f in dataclasses.fields(
    augment.PoseAugmentation)})
NEURAL_OFF = augment.NeuralAugmentation(**{f.name: 0 for f in dataclasses.fields(
    augment.NeuralAugmentation)})
KEY = jax.random.key(0)
POSE = jax.random.normal(jax.random.key(1), (6, 12, keypoints.LEG_FEATURE_DIM))
IMAGES = jax.random.normal(jax.random.key(2), (6, 8, 10, 10)) + 1.0
TRACES = jax.random.normal(jax.random.key(3), (6, 8, 7)) + 1.0


def test_magnitude_zero_leaves_every_input_unchanged():
  np.testing.assert_allclose(augment.augment_pose(KEY, POSE, POSE_OFF), POSE, atol=1e-6)
  np.testing.assert_allclose(augment.augment_neural(KEY, IMAGES, NEURAL_OFF), IMAGES, atol=1e-6)
  np.testing.assert_allclose(augment.augment_neural(KEY, TRACES, NEURAL_OFF), TRACES, atol=1e-6)


@pytest.mark.parametrize("name,value", [
    ("smoothing_sigma", 2.0), ("jitter_std", 0.1), ("scale", 0.2), ("shear", 0.1),
    ("rotation_deg", 20.0), ("mirror_probability", 1.0), ("time_mask_frames", 4),
    ("channel_mask_probability", 0.3)])
def test_each_pose_augmentation_changes_the_windows_alone(name, value):
  config = dataclasses.replace(POSE_OFF, **{name: value})
  out = jax.jit(lambda k, p: augment.augment_pose(k, p, config))(KEY, POSE)
  assert out.shape == POSE.shape and out.dtype == POSE.dtype
  assert not np.allclose(out, POSE)
  np.testing.assert_allclose(out, augment.augment_pose(KEY, POSE, config), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,value", [
    ("shot_noise_std", 0.1), ("blur_sigma", 1.0), ("shift_pixels", 2), ("gain", 0.3),
    ("offset", 0.2), ("calcium_tau_frames", 2.0), ("frame_shift", 2), ("erase_fraction", 0.5),
    ("mix_weight", 0.3), ("local_gain", 0.3)])
def test_each_neural_augmentation_changes_image_windows(name, value):
  config = dataclasses.replace(NEURAL_OFF, **{name: value})
  out = jax.jit(lambda k, x: augment.augment_neural(k, x, config))(KEY, IMAGES)
  assert out.shape == IMAGES.shape
  assert not np.allclose(out, IMAGES)


def test_neural_augmentations_apply_to_roi_traces_too():
  out = augment.augment_neural(KEY, TRACES, augment.NeuralAugmentation())
  assert out.shape == TRACES.shape and not np.allclose(out, TRACES)


def test_mirroring_twice_gives_back_the_pose_and_swaps_left_and_right_legs():
  config = dataclasses.replace(POSE_OFF, mirror_probability=1.0)
  once = augment.augment_pose(KEY, POSE, config)
  legs = lambda x: np.asarray(x).reshape(6, 12, 6, 5, 3)
  np.testing.assert_allclose(legs(once)[:, :, 0, :, 0], legs(POSE)[:, :, 3, :, 0])
  np.testing.assert_allclose(legs(once)[:, :, 0, :, 1], -legs(POSE)[:, :, 3, :, 1])
  np.testing.assert_allclose(augment.augment_pose(KEY, once, config), POSE, atol=1e-6)


def test_gain_and_offset_are_drawn_per_clip():
  config = dataclasses.replace(NEURAL_OFF, gain=0.5)
  ratio = np.asarray(augment.augment_neural(KEY, IMAGES, config) / IMAGES)
  per_clip = ratio.reshape(6, -1)
  np.testing.assert_allclose(per_clip, per_clip[:, :1] * jnp.ones_like(per_clip), rtol=1e-5)
  assert np.unique(per_clip[:, 0].round(5)).size == 6


def test_local_gain_is_constant_in_time_and_varies_across_the_image_and_rois():
  config = dataclasses.replace(NEURAL_OFF, local_gain=0.5)
  ratio = np.asarray(augment.augment_neural(KEY, IMAGES, config) / IMAGES)
  np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones_like(ratio), rtol=1e-5)
  field = ratio[:, 0]
  assert (field > 0).all() and field.std(axis=(1, 2)).min() > 0.05
  # Smooth: neighbouring pixels differ far less than the field varies.
  assert np.abs(np.diff(field, axis=2)).mean() < 0.5 * field.std()
  traces = np.asarray(augment.augment_neural(KEY, TRACES, config) / TRACES)
  np.testing.assert_allclose(traces, traces[:, :1] * np.ones_like(traces), rtol=1e-5)
  assert np.unique(traces[0, 0].round(5)).size == TRACES.shape[2]
