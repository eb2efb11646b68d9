"""Shared test set-up: a persistent XLA compile cache and the repository's shared data."""

import os
import pathlib

import jax
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "real"

jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.get("JAX_COMPILATION_CACHE_DIR", str(REPO_ROOT / ".venv" / "jax_cache")))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
  return REPO_ROOT / "tests" / "fixtures"
