"""Top-K swap tables saved beside their dataset: built once per dataset and settings, read
back after (`cached_topk_table`), never used when their key or shapes do not match.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Sequence
import uuid
import zipfile

from absl import logging
from etils import epath
import jax
from jax.experimental import multihost_utils
import numpy as np

from nar.method import pose_bank
from nar.method import swap as swap_lib
from nar.method import swap_table


# The folder of a dataset's tables, and the version of the file layout and of what enters the
# key: a change to either must not read old files as current ones.
TABLE_CACHE_DIR = "swap_tables"
_TABLE_FILE_FORMAT = 1


def table_cache_key(bank: pose_bank.PoseBank, k: int, temperature: float,
                    dataset_fingerprint: str) -> str:
  """What a saved table was built from: JSON of everything its entries depend on.

  The dataset (its fingerprint, `nar.run.dataset_fingerprint`), the bank's animals, pool
  stride, distance scale and frame counts, K and the temperature; and a digest of the bank's
  frames and masks, since the fingerprint covers the dataset's metadata only (and the frames
  are normalised by statistics of the training animals). Chunk sizes and devices are left
  out: they do not change the table.

  Example:
    >>> import numpy as np
    >>> bank = pose_bank.make_pose_bank({"a": np.zeros((3, 2)), "b": np.ones((5, 2))}, None,
    ...                                 ["a", "b"])
    >>> key = json.loads(table_cache_key(bank, 2, 0.5, "0123abcd"))
    >>> key["dataset"], key["animals"], key["num_frames"], key["k"], key["temperature"]
    ('0123abcd', ['a', 'b'], [3, 5], 2, 0.5)
  """
  scale = bank.distance_scale
  frames_digest = hashlib.sha256()
  for array in (bank.frames, bank.valid):
    frames_digest.update(np.ascontiguousarray(np.asarray(array)).data)  # no copy
  return json.dumps({
      "format": _TABLE_FILE_FORMAT,
      "dataset": str(dataset_fingerprint),
      "animals": list(bank.animals),
      "pool_stride": int(bank.pool_stride),
      # float32 values as Python floats: exact, so equal scales give equal keys.
      "distance_scale": None if scale is None else np.asarray(scale, np.float32).tolist(),
      "num_frames": np.asarray(bank.num_frames).astype(int).tolist(),
      "frames_sha256": frames_digest.hexdigest()[:16],
      "k": int(k),
      "temperature": float(temperature),
  }, sort_keys=True)


def table_cache_path(cache_dir: str | os.PathLike, key: str) -> epath.Path:
  """The file of the table with `key` (`table_cache_key`): `cache_dir/swap_tables/*.npz`."""
  digest = hashlib.sha256(key.encode()).hexdigest()[:16]
  return epath.Path(cache_dir) / TABLE_CACHE_DIR / f"topk_{digest}.npz"


def _expected_shapes(bank: pose_bank.PoseBank, k: int) -> dict[str, tuple[tuple[int, ...], Any]]:
  num_animals, max_frames = bank.num_animals, int(bank.frames.shape[1])
  pairs = (num_animals, max_frames, num_animals)
  return {"indices": (pairs + (k,), np.int32), "log_weights": (pairs + (k,), np.float32),
          "truncated_mass": (pairs, np.float32)}


def _read_table(path: epath.Path, key: str, bank: pose_bank.PoseBank, k: int,
                temperature: float) -> tuple[swap_table.TopKTable | None, str]:
  """The saved table at `path` if it is the one of `key`, else None and why not."""
  if not path.exists():
    return None, "no saved table"
  try:
    with path.open("rb") as file, np.load(file, allow_pickle=False) as saved:
      if str(saved["key"]) != key:
        return None, "the saved table was built from other data or settings"
      arrays = {}
      for name, (shape, dtype) in _expected_shapes(bank, k).items():
        array = saved[name]  # reading checks the archive's CRC: a damaged file fails here
        if array.shape != shape or array.dtype != dtype:
          return None, (f"its {name} is {array.dtype}{list(array.shape)}, not "
                        f"{np.dtype(dtype)}{list(shape)}")
        arrays[name] = array
  except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as error:
    return None, f"the saved table cannot be read ({type(error).__name__}: {error})"
  return swap_table.TopKTable(**arrays, animals=bank.animals, temperature=float(temperature)), ""


def _write_table(path: epath.Path, key: str, table: swap_table.TopKTable) -> None:
  """Saves `table` so that `path` is either absent, the old file or the whole new one."""
  path.parent.mkdir(parents=True, exist_ok=True)
  # A unique name in the same folder: concurrent writers never share a partial file, and the
  # final rename (os.replace on a local disk) stays within one file system.
  partial = path.parent / f".{path.name}.{uuid.uuid4().hex}.partial"
  try:
    with partial.open("wb") as file:
      np.savez(file, key=np.array(key), indices=np.asarray(table.indices),
               log_weights=np.asarray(table.log_weights),
               truncated_mass=np.asarray(table.truncated_mass))
    partial.replace(path)
  finally:
    if partial.exists():
      partial.unlink()


def _all_processes_agree(found: bool) -> bool:
  """Whether every process found the table: the build is collective, so all build or none."""
  if jax.process_count() == 1:
    return found
  return bool(np.all(multihost_utils.process_allgather(np.array(found))))


def cached_topk_table(bank: pose_bank.PoseBank, k: int, *, temperature: float = 1.0,
                      pool_chunk: int = swap_lib.DEFAULT_POOL_CHUNK, cache_dir: str | os.PathLike,
                      dataset_fingerprint: str, query_chunk: int = 1024, progress: bool = True,
                      devices: Sequence[jax.Device] | None = None,
                      mesh: jax.sharding.Mesh | None = None,
                      max_replicated_bytes: int | None = None) -> swap_table.TopKTable:
  """`build_topk_table`, built once and then loaded from `cache_dir/swap_tables/`.

  The file is named by a hash of `table_cache_key` (the dataset fingerprint, the bank's
  animals, pool stride, distance scale, frame counts and a digest of its frames, K, the
  temperature) and holds that key. A file whose key or array shapes differ from this bank's
  and settings', or that cannot be read, is never used: the table is built again and the file replaced. The file is written
  whole or not at all (a temporary file in the same folder, then a rename), by the first
  process only. Where the folder cannot be written, the table is built in memory (a warning
  says so).

  Args:
    bank: the training animals' frames.
    k, temperature, pool_chunk, query_chunk, progress, devices: as `build_topk_table`.
    cache_dir: the folder to keep tables in, e.g. the dataset's (`ShardedDataset.path`).
    dataset_fingerprint: identifies the dataset the bank was made from
      (`nar.run.dataset_fingerprint`).
    mesh: place the table on this mesh (`place_topk_table`, with `max_replicated_bytes`)
      straight from the host; None: on the default device, as `build_topk_table`.
    max_replicated_bytes: with `mesh`, the largest table replicated on every device.

  Returns:
    The table, loaded or built.

  Raises:
    ValueError: as `build_topk_table`; `mesh` without `max_replicated_bytes`.
  """
  if mesh is not None and max_replicated_bytes is None:
    raise ValueError("placing the table on a mesh needs max_replicated_bytes")
  swap_table.check_build_settings(bank, k, temperature, query_chunk, pool_chunk)
  key = table_cache_key(bank, k, temperature, dataset_fingerprint)
  path = table_cache_path(cache_dir, key)
  table, why_not = _read_table(path, key, bank, k, temperature)
  if not _all_processes_agree(table is not None):
    table = None
  if table is not None:
    logging.info("Top-%d swap table loaded from %s", k, path)
  else:
    logging.info("Building the top-%d swap table (%s at %s)", k, why_not or "not on every host",
                 path)
    table = swap_table.build_on_host(bank, k, temperature=temperature, query_chunk=query_chunk,
                           pool_chunk=pool_chunk, progress=progress, devices=devices)
    if jax.process_index() == 0:
      try:
        _write_table(path, key, table)
        logging.info("Top-%d swap table built and saved to %s", k, path)
      except OSError as error:
        logging.warning("Top-%d swap table built in memory only: it cannot be saved to %s "
                        "(%s: %s); the next run builds it again", k, path,
                        type(error).__name__, error)
  if mesh is None:
    return swap_table.on_default_device(table)
  return swap_table.place_topk_table(table, mesh, max_replicated_bytes=max_replicated_bytes)
