"""Shared test set-up: a persistent XLA compile cache and the repository's shared data."""

import os
import pathlib

import jax
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "real"

# Set in the environment so that test subprocesses share the cache too.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO_ROOT / ".venv" / "jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
  return REPO_ROOT / "tests" / "fixtures"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
  """A small built dataset (4 animals x 2 trials of synthetic recordings) for trainer tests."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import synthetic_data  # pylint: disable=g-import-not-at-top
  from nar.data import builder as tfds_builder  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  recordings = [synthetic_data.recording(a, t, 600, rng) for a in range(4) for t in range(2)]
  directory = tmp_path_factory.mktemp("tfds")
  tfds_builder.build_dataset(recordings, str(directory))
  return str(directory)


@pytest.fixture(scope="session")
def locomotion_data_dir(tmp_path_factory) -> str:
  """A small dataset given only as NPZ trial files, built into shards (name "locomotion").

  4 animals x 2 trials x 8 s of the locomotion preset: ball velocities (a behaviour vector
  of 3 named dimensions, 4 actions) and ROI traces of 6, 3, 9 and 4 ROIs.
  """
  from data_prep import readers  # pylint: disable=g-import-not-at-top
  from nar.data import builder as tfds_builder  # pylint: disable=g-import-not-at-top
  from data_prep import trial_files  # pylint: disable=g-import-not-at-top
  from nar import simulation  # pylint: disable=g-import-not-at-top
  import synthetic_data  # pylint: disable=g-import-not-at-top
  config = simulation.LocomotionConfig(num_animals=4, trials_per_animal=2, trial_seconds=8.0,
                                       min_rois=3, max_rois=9)
  trials_dir = tmp_path_factory.mktemp("locomotion_trials")
  for rec in simulation.simulate_dataset(config, seed=0).recordings:
    trial_files.write_trial_file(rec, trials_dir / f"{rec.animal_id}_{rec.trial_id}.npz")
  recordings = readers.read_recordings(trials_dir, layout="trial_files")
  directory = tmp_path_factory.mktemp("locomotion_tfds")
  tfds_builder.build_dataset(recordings, str(directory),
                             config_name=synthetic_data.LOCOMOTION_DATASET_NAME)
  return str(directory)
