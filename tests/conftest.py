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
