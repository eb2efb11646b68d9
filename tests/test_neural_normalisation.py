"""Per-animal standardisation of the neural input, fitted on a calibration period."""

import numpy as np
import pytest

import synthetic_data
from nar import train
from nar.data import builder as tfds_builder
from nar.data import normalise
from nar.data import pipeline
from nar.data import shards
from nar.data import windows

SPEC = windows.WindowSpec(pose_frames=8, pose_stride=2, neural_frames=4)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  rng = np.random.default_rng(4)
  recordings = [synthetic_data.recording(a, t, 500, rng) for a in range(3) for t in range(2)]
  # Each animal's own brightness and offset: what the standardisation takes out.
  for rec in recordings:
    animal = int(rec.animal_id[-1]) if rec.animal_id[-1].isdigit() else 0
    rec.neural_images[:] = rec.neural_images * (1.0 + animal) + 3.0 * animal
  path = tfds_builder.build_dataset(recordings, str(tmp_path_factory.mktemp("tfds")))
  return shards.open_dataset(path)


def _calibration_frames(dataset, animal: str, key: str, fraction: float) -> np.ndarray:
  frames = []
  for trial, info in enumerate(dataset.trials):
    if info["animal_id"] == animal:
      stored = dataset.read_trial(trial)[key]
      frames.append(stored[:int(info["num_neural_frames"] * fraction)])
  return np.concatenate(frames).astype(np.float64)


@pytest.mark.parametrize("key", ["neural_images", "roi_traces"])
def test_statistics_are_each_animals_own_over_its_calibration_period(dataset, key):
  normalizer = normalise.NeuralNormalizer.fit(dataset, key, calibration_fraction=0.5,
                                                         progress=False)
  assert sorted(normalizer.mean) == sorted(dataset.animals)
  for animal in dataset.animals:
    frames = _calibration_frames(dataset, animal, key, 0.5)
    std = frames.std(axis=0)
    np.testing.assert_allclose(normalizer.mean[animal], frames.mean(axis=0), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(
        normalizer.scale[animal], std + normalise.STD_FLOOR * std.mean(), rtol=1e-4)
  # The frames after the calibration period are not in them.
  later = normalise.NeuralNormalizer.fit(dataset, key, calibration_fraction=1.0,
                                                    progress=False)
  animal = dataset.animals[0]
  assert not np.allclose(later.mean[animal], normalizer.mean[animal])


def test_windows_read_standardised_with_their_animals_statistics(dataset):
  normalizer = normalise.NeuralNormalizer.fit(
      dataset, "neural_images", calibration_fraction=0.75, progress=False)
  pose_normalizer = pipeline.fit_pose_normalizer(dataset, dataset.animals)
  index = pipeline.select_windows(dataset, SPEC, hop=37)
  plain = pipeline.WindowSource(dataset, index, SPEC, pose_normalizer)
  standardised = pipeline.WindowSource(dataset, index, SPEC, pose_normalizer,
                                             neural_normalizer=normalizer)
  by_animal = {a: [] for a in dataset.animals}
  for item in range(len(index)):
    raw, window = plain[item], standardised[item]
    animal = dataset.animals[int(raw["animal"])]
    np.testing.assert_allclose(
        window["neural_images"],
        (raw["neural_images"] - normalizer.mean[animal]) / normalizer.scale[animal], rtol=1e-5,
        atol=1e-5)
    # Only the standardised array changes.
    np.testing.assert_array_equal(window["roi_traces"], raw["roi_traces"])
    np.testing.assert_array_equal(window["pose"], raw["pose"])
    by_animal[animal].append((raw["neural_images"].mean(), window["neural_images"].mean()))
  # The animals' brightness and offsets are gone: their windows now share one scale.
  raw_means, means = np.array([np.mean(v, axis=0) for v in by_animal.values()]).T
  assert np.ptp(raw_means) > 5, raw_means
  assert np.ptp(means) < 0.5, means


def test_the_calibration_period_must_end_before_the_identity_test_block():
  assert normalise.calibration_fraction(None, 4) == 0.75
  assert normalise.calibration_fraction(0.5, 4) == 0.5
  with pytest.raises(ValueError, match=r"must lie in \(0, 0.5\].*identity probe's test block"):
    normalise.calibration_fraction(0.75, 2)
  with pytest.raises(ValueError, match="must lie in"):
    normalise.calibration_fraction(0.0, 4)


def test_bad_requests_are_named(dataset):
  with pytest.raises(ValueError, match="has no 'calcium'"):
    normalise.NeuralNormalizer.fit(dataset, "calcium", calibration_fraction=0.5)
  with pytest.raises(ValueError, match=r"animals \['nobody'\] are not in the dataset"):
    normalise.NeuralNormalizer.fit(dataset, "neural_images", calibration_fraction=0.5,
                                              animals=["nobody"])
  normalizer = normalise.NeuralNormalizer.fit(
      dataset, "neural_images", calibration_fraction=0.5, animals=dataset.animals[:1],
      progress=False)
  with pytest.raises(KeyError, match="no neural_images statistics for animal"):
    normalizer(dataset.animals[1], np.zeros((2, 1)))


@pytest.mark.parametrize("key", ["neural_images", "roi_traces"])
def test_windows_standardised_together_equal_each_standardised_alone(dataset, key):
  normalizer = normalise.NeuralNormalizer.fit(dataset, key, calibration_fraction=0.5,
                                                         progress=False)
  rng = np.random.default_rng(1)
  animals = rng.choice(dataset.animals, 9)
  frame_shape = normalizer.mean[dataset.animals[0]].shape
  windows_ = (rng.normal(size=(9, 4) + frame_shape) * 5 + 2).astype(np.float32)
  together = normalizer.standardise_windows(animals, windows_)
  assert together.dtype == np.float32 and together.shape == windows_.shape
  for animal, window, standardised in zip(animals, windows_, together):
    np.testing.assert_array_equal(standardised, normalizer(str(animal), window))
  with pytest.raises(ValueError, match="8 animals for 9 windows"):
    normalizer.standardise_windows(animals[:8], windows_)
  with pytest.raises(KeyError, match="for animal 'nobody'"):
    normalizer.standardise_windows(["nobody"] * 9, windows_)


def test_the_trainer_standardises_as_configured(data_dir):
  from test_train import tiny_config  # pylint: disable=g-import-not-at-top
  config = tiny_config(data_dir)
  inputs = train.create_input(config)
  assert inputs.neural_normalizer is not None
  assert inputs.neural_normalizer.calibration_fraction == 0.5  # 2 identity time blocks
  assert inputs.train_source.neural_normalizer is inputs.neural_normalizer
  config.data.neural_normalisation = "none"
  assert train.create_input(config).neural_normalizer is None
  config.data.neural_normalisation = "trial"
  with pytest.raises(ValueError, match="data.neural_normalisation must be one of"):
    train.create_input(config)
