"""The top-K swap table: saved beside its dataset and reused, built over devices and processes,
and split over devices when it is too large for one."""

import logging
import threading

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from nar import run as run_lib
from nar import train
from nar.method import pose_bank
from nar.method import swap_table
from nar.method import swap_table_cache
import test_train

FINGERPRINT = "0123456789abcdef"


def _bank(frame_counts=(130, 70, 200), dim=5, weighted=True, seed=0) -> pose_bank.PoseBank:
  """Three animals of a few hundred frames, one frame non-finite, a weighted distance."""
  rng = np.random.default_rng(seed)
  frames = {f"fly{i}": rng.normal(size=(count, dim)).astype(np.float32)
            for i, count in enumerate(frame_counts)}
  frames["fly1"][3] = np.nan
  weights = np.linspace(0.5, 2.0, dim) if weighted else None
  return pose_bank.make_pose_bank(frames, None, list(frames), distance_weights=weights)


def reference_table(bank, k, temperature, query_chunk, pool_chunk):
  """The table as one device built it before the build was spread over devices: the kernel
  on one query chunk at a time, the last chunk of an animal shifted back."""
  num_animals, max_frames = bank.num_animals, bank.frames.shape[1]
  num_frames = np.asarray(bank.num_frames)
  indices = np.full((num_animals, max_frames, num_animals, k), -1, np.int32)
  log_weights = np.full((num_animals, max_frames, num_animals, k), -np.inf, np.float32)
  truncated = np.full((num_animals, max_frames, num_animals), np.nan, np.float32)
  query_chunk = min(query_chunk, max_frames)
  for animal in range(num_animals):
    for start in range(0, int(num_frames[animal]), query_chunk):
      start = min(start, max_frames - query_chunk)
      chunk = lax.dynamic_slice(bank.frames, (animal, start, 0),
                                (1, query_chunk, bank.pose_dim))[0]
      outputs = swap_table._top_k_against_bank(  # pylint: disable=protected-access
          chunk, jnp.int32(animal), bank.frames, bank.valid, bank.num_frames,
          jnp.float32(1.0 / temperature), bank.distance_scale, k=k, pool_chunk=pool_chunk)
      for array, output in zip((indices, log_weights, truncated), outputs):
        array[animal, start:start + query_chunk] = output
  for animal in range(num_animals):
    indices[animal, num_frames[animal]:] = -1
    log_weights[animal, num_frames[animal]:] = -np.inf
    truncated[animal, num_frames[animal]:] = np.nan
  return indices, log_weights, truncated


def assert_same_table(table, other) -> None:
  other = (other.indices, other.log_weights, other.truncated_mass) if isinstance(
      other, swap_table.TopKTable) else other
  for ours, theirs in zip((table.indices, table.log_weights, table.truncated_mass), other):
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


@pytest.fixture(name="builds")
def count_builds(monkeypatch):
  """The number of tables built (not loaded) so far."""
  calls = []
  build = swap_table.build_on_host  # pylint: disable=protected-access

  def counting_build(*args, **kwargs):
    calls.append(kwargs)
    return build(*args, **kwargs)

  monkeypatch.setattr(swap_table, "build_on_host", counting_build)
  return calls


def _cached(bank, tmp_path, *, k=4, temperature=0.7, fingerprint=FINGERPRINT, **kwargs):
  return swap_table_cache.cached_topk_table(bank, k, temperature=temperature, pool_chunk=40,
                                      query_chunk=48, cache_dir=tmp_path,
                                      dataset_fingerprint=fingerprint, progress=False, **kwargs)


def _saved_files(tmp_path):
  return sorted((tmp_path / swap_table_cache.TABLE_CACHE_DIR).glob("*.npz"))


# ------------------------------------------------------------------------------------------
# Saved tables
# ------------------------------------------------------------------------------------------


def test_the_first_call_builds_and_saves_the_table_and_the_second_loads_it(tmp_path, builds,
                                                                          caplog):
  caplog.set_level(logging.INFO, logger="absl")
  bank = _bank()
  first = _cached(bank, tmp_path)
  assert len(builds) == 1
  (path,) = _saved_files(tmp_path)
  assert path == swap_table_cache.table_cache_path(
      tmp_path, swap_table_cache.table_cache_key(bank, 4, 0.7, FINGERPRINT))
  assert "built and saved to" in caplog.text and str(path) in caplog.text
  # Nothing but the table is left in the folder (no partial file).
  assert [p.name for p in path.parent.iterdir()] == [path.name]
  assert_same_table(first, reference_table(bank, 4, 0.7, query_chunk=48, pool_chunk=40))
  saved_at = path.stat().st_mtime_ns
  caplog.clear()

  second = _cached(bank, tmp_path)
  assert len(builds) == 1, "the saved table must be loaded, not built again"
  assert path.stat().st_mtime_ns == saved_at
  assert "loaded from" in caplog.text and str(path) in caplog.text
  assert_same_table(second, first)
  assert (second.animals, second.temperature) == (bank.animals, 0.7)
  assert isinstance(second.indices, jax.Array)


@pytest.mark.parametrize("change", [
    {"k": 3}, {"temperature": 0.5}, {"fingerprint": "fedcba9876543210"},
    {"bank": {"frame_counts": (130, 70, 201)}}, {"bank": {"weighted": False}},
    {"bank": {"seed": 1}},
])
def test_another_setting_or_bank_builds_and_saves_another_table(tmp_path, builds, change):
  _cached(_bank(), tmp_path)
  change = dict(change)
  bank = _bank(**change.pop("bank", {}))
  table = _cached(bank, tmp_path, **change)
  assert len(builds) == 2
  assert len(_saved_files(tmp_path)) == 2
  settings = {"k": 4, "temperature": 0.7, **change}
  settings.pop("fingerprint", None)
  assert_same_table(table, reference_table(bank, query_chunk=48, pool_chunk=40, **settings))


def _damage_bytes(path, bank):
  del bank
  path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


def _flip_a_byte(path, bank):
  del bank
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0xFF
  path.write_bytes(bytes(data))


def _other_key(path, bank):
  with np.load(path) as saved:
    arrays = dict(saved)
  arrays["key"] = np.array(swap_table_cache.table_cache_key(bank, 4, 0.9, FINGERPRINT))
  with path.open("wb") as file:
    np.savez(file, **arrays)


def _other_shapes(path, bank):
  del bank
  with np.load(path) as saved:
    arrays = dict(saved)
  arrays["indices"] = arrays["indices"][:, :64]
  with path.open("wb") as file:
    np.savez(file, **arrays)


def _no_key(path, bank):
  del bank
  with np.load(path) as saved:
    arrays = {name: saved[name] for name in ("indices", "log_weights", "truncated_mass")}
  with path.open("wb") as file:
    np.savez(file, **arrays)


@pytest.mark.parametrize("damage", [_damage_bytes, _flip_a_byte, _other_key, _other_shapes,
                                    _no_key])
def test_a_damaged_or_mismatched_file_is_built_again_and_replaced(tmp_path, builds, damage,
                                                                  caplog):
  bank = _bank()
  built = _cached(bank, tmp_path)
  (path,) = _saved_files(tmp_path)
  damage(path, bank)
  caplog.set_level(logging.INFO, logger="absl")
  table = _cached(bank, tmp_path)
  assert len(builds) == 2, "a damaged or mismatched file must never be used"
  assert "Building the top-4 swap table" in caplog.text
  assert_same_table(table, built)
  # The replaced file is whole again: the next call loads it.
  _cached(bank, tmp_path)
  assert len(builds) == 2


def test_a_folder_that_cannot_be_written_gives_the_table_in_memory_with_a_warning(
    tmp_path, builds, caplog):
  caplog.set_level(logging.INFO, logger="absl")
  not_a_folder = tmp_path / "dataset"
  not_a_folder.write_text("a file where the folder would be")
  bank = _bank()
  table = _cached(bank, not_a_folder)
  assert len(builds) == 1
  assert "built in memory only" in caplog.text
  assert any(record.levelno == logging.WARNING for record in caplog.records)
  assert_same_table(table, reference_table(bank, 4, 0.7, query_chunk=48, pool_chunk=40))


def test_the_key_holds_what_the_table_depends_on():
  bank = _bank()
  key = swap_table_cache.table_cache_key(bank, 4, 0.7, FINGERPRINT)
  for other in (swap_table_cache.table_cache_key(bank, 5, 0.7, FINGERPRINT),
                swap_table_cache.table_cache_key(bank, 4, 0.71, FINGERPRINT),
                swap_table_cache.table_cache_key(bank, 4, 0.7, "another"),
                swap_table_cache.table_cache_key(_bank(weighted=False), 4, 0.7, FINGERPRINT),
                swap_table_cache.table_cache_key(_bank(frame_counts=(130, 71, 200)), 4, 0.7,
                                           FINGERPRINT)):
    assert other != key
    assert swap_table_cache.table_cache_path("/data", other) != swap_table_cache.table_cache_path(
        "/data", key)
  # Other frames of the same counts (the same dataset metadata, say): another key.
  assert swap_table_cache.table_cache_key(_bank(seed=1), 4, 0.7, FINGERPRINT) != key
  assert swap_table_cache.table_cache_key(_bank(), 4, 0.7, FINGERPRINT) == key


def test_the_training_step_constants_reuse_the_table_saved_beside_the_dataset(data_dir, caplog):
  caplog.set_level(logging.INFO, logger="absl")
  config = test_train.tiny_config(data_dir)
  config.swap.mode = "topk"
  config.swap.topk = 3
  inputs = train.create_input(config)
  first, _ = train.create_step_constants(config, inputs)
  saved = swap_table_cache.table_cache_path(inputs.dataset.path, swap_table_cache.table_cache_key(
      first["frames"], 3, config.swap.temperature, run_lib.dataset_fingerprint(inputs.dataset)))
  assert saved.exists()
  caplog.clear()
  second, _ = train.create_step_constants(config, inputs)
  assert f"loaded from {saved}" in caplog.text
  assert_same_table(second["table"], first["table"])


# ------------------------------------------------------------------------------------------
# Devices and processes
# ------------------------------------------------------------------------------------------


def test_two_processes_each_building_half_the_chunks_give_the_whole_table():
  bank = _bank()
  arrivals, barrier = {}, threading.Barrier(2)
  tables, errors = {}, []

  def build_as(process_index):
    def allgather(tree):
      # What `multihost_utils.process_allgather` gives: every process's tree, stacked.
      arrivals[process_index] = tree
      barrier.wait()
      return jax.tree.map(lambda *trees: np.stack(trees), arrivals[0], arrivals[1])
    try:
      tables[process_index] = swap_table.build_on_host(  # pylint: disable=protected-access
          bank, 4, temperature=0.7, query_chunk=48, pool_chunk=40, progress=False,
          devices=None, process_index=process_index, process_count=2, allgather=allgather)
    except Exception as error:  # pylint: disable=broad-except
      errors.append(error)
      barrier.abort()

  threads = [threading.Thread(target=build_as, args=(p,)) for p in range(2)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  assert not errors, errors
  # Each process computed every other chunk only.
  assert [len(arrivals[p][0]) for p in range(2)] == [5, 5]  # 3 + 2 + 5 chunks of 48, halved
  expected = reference_table(bank, 4, 0.7, query_chunk=48, pool_chunk=40)
  for table in tables.values():
    assert_same_table(table, expected)


_EIGHT_DEVICES = """
    import sys
    sys.path.insert(0, "tests")
    import jax, jax.numpy as jnp, numpy as np
    from nar.method import pose_bank, swap_table
    from test_swap_table_cache import _bank, assert_same_table, reference_table
    assert jax.device_count() == 8, jax.devices()

    # The build over 8 (and over 3) devices is the single-device build, bit for bit.
    for bank in (_bank(), _bank(weighted=False, frame_counts=(300, 64))):
      expected = reference_table(bank, 5, 0.6, query_chunk=40, pool_chunk=48)
      for devices in (jax.devices()[:1], jax.devices()[:3], jax.devices()):
        table = swap_table.build_topk_table(bank, 5, temperature=0.6, query_chunk=40,
                                            pool_chunk=48, progress=False, devices=devices)
        assert_same_table(table, expected)

    # Placed on 8 devices: replicated within the budget, split along the frames over it.
    bank = _bank()
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",),
                             axis_types=(jax.sharding.AxisType.Auto,))
    table = swap_table.build_topk_table(bank, 4, temperature=0.7, progress=False)
    replicated = swap_table.place_topk_table(table, mesh, max_replicated_bytes=table.nbytes)
    sharded = swap_table.place_topk_table(table, mesh, max_replicated_bytes=table.nbytes - 1)
    assert replicated.indices.sharding.is_fully_replicated
    for array in (sharded.indices, sharded.log_weights, sharded.truncated_mass):
      assert not array.sharding.is_fully_replicated
      assert array.sharding.spec == jax.P(None, "data"), array.sharding
      assert array.addressable_shards[0].data.shape[1] == table.indices.shape[1] // 8
    assert_same_table(sharded, table)

    # The same draws from the split table as from the replicated one, inside jit.
    bank = jax.device_put(bank, jax.sharding.NamedSharding(mesh, jax.P()))
    rng = np.random.default_rng(3)
    windows = jnp.asarray(rng.normal(size=(16, 6, 5)).astype(np.float32))
    source = jnp.asarray(rng.integers(-1, 3, 16), jnp.int32)
    frame_index = jnp.asarray(rng.integers(-2, 200, (16, 6)), jnp.int32)

    @jax.jit
    def step(key, table):
      return swap_table.swap_with_table(key, windows, source, frame_index, table, bank,
                                        swap_probability=0.8, per_frame_target=True)

    for seed in range(3):
      key = jax.random.key(seed)
      (from_replicated, info_replicated), (from_sharded, info_sharded) = (
          step(key, replicated), step(key, sharded))
      np.testing.assert_array_equal(from_sharded, from_replicated)
      jax.tree.map(np.testing.assert_array_equal, info_sharded, info_replicated)
      assert (np.asarray(info_sharded["frame_index"]) >= 0).any()

    # 3 devices cannot split a table of 256 frames.
    three = jax.sharding.Mesh(np.array(jax.devices()[:3]), ("data",))
    try:
      swap_table.place_topk_table(table, three, max_replicated_bytes=0)
    except ValueError as error:
      assert "cannot be split along its 256 frames over 3 devices" in str(error), error
    else:
      raise AssertionError("an uneven split must fail")
    print("OK")
"""


def test_eight_devices_build_the_single_device_table_and_a_split_table_draws_the_same():
  result = test_train._run(  # pylint: disable=protected-access
      _EIGHT_DEVICES, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  assert result.returncode == 0, result.stderr[-4000:]
  assert "OK" in result.stdout


def test_placing_on_a_mesh_needs_a_budget(tmp_path):
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
  with pytest.raises(ValueError, match="needs max_replicated_bytes"):
    _cached(_bank(), tmp_path, mesh=mesh)
  table = _cached(_bank(), tmp_path, mesh=mesh, max_replicated_bytes=1 << 30)
  assert table.indices.sharding.is_fully_replicated
  assert table.indices.sharding.mesh == mesh
