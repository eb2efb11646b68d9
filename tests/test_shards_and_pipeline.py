"""TFDS shards and the window pipeline: round trip, splits, resumption, host sharding."""

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

from absl import flags
import grain
import numpy as np
import pytest
import synthetic_data

from nar.data import builder as tfds_builder
from nar.data import keypoints
from nar.data import normalise
from nar.data import pipeline
from nar.data import recording as recording_lib
from nar.data import shards
from nar.data import windows

SPEC = windows.WindowSpec(pose_frames=8, pose_stride=2, neural_frames=4)


@pytest.fixture(scope="module")
def recordings():
  rng = np.random.default_rng(0)
  return [synthetic_data.recording(a, t, int(rng.integers(450, 700)), rng)
          for a in range(4) for t in range(2)]


@pytest.fixture(scope="module")
def dataset(recordings, tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds")
  # Short segments so that windows straddle segment boundaries.
  path = tfds_builder.build_dataset(recordings, str(data_dir), segment_seconds=0.9)
  return shards.open_dataset(path)


def test_trials_reassembled_from_segments_equal_the_recordings(recordings, dataset):
  by_name = {(r.animal_id, r.trial_id): r for r in recordings}
  for trial, info in enumerate(dataset.trials):
    rec = by_name[(info["animal_id"], info["trial_id"])]
    stored = dataset.read_trial(trial)
    np.testing.assert_array_equal(stored["behaviour"], rec.behaviour)
    np.testing.assert_array_equal(stored["neural_images"], rec.neural_images)
    np.testing.assert_array_equal(stored["roi_traces"], rec.roi_traces)
    np.testing.assert_array_equal(stored["sync"], rec.sync)
    np.testing.assert_array_equal(stored["labels"], rec.labels)
    np.testing.assert_array_equal(stored["neural_timestamps"], rec.neural_times())
    np.testing.assert_array_equal(stored["keypoint_mask"], rec.keypoint_mask)


def test_storage_is_about_the_size_of_the_raw_data(recordings, dataset):
  raw = sum(r.behaviour.nbytes + r.neural_images.nbytes + r.roi_traces.nbytes for r in recordings)
  shard_bytes = sum(f.stat().length for f in dataset.path.glob("*.array_record*"))
  assert shard_bytes < 1.5 * raw


def test_shard_ranges_cover_every_segment_once_in_order():
  assert tfds_builder.shard_ranges([3, 3, 3, 10, 1, 1], 6) == [(0, 2), (2, 4), (4, 6)]
  assert tfds_builder.shard_ranges([1, 1], 100) == [(0, 2)]
  assert tfds_builder.shard_ranges([], 100) == []
  with pytest.raises(ValueError, match="shard_bytes must be positive"):
    tfds_builder.shard_ranges([1], 0)


def test_a_build_in_many_shards_streams_without_the_shuffler_and_reads_back_in_order(
    recordings, dataset, tmp_path, monkeypatch):
  from tensorflow_datasets.core import shuffle  # pylint: disable=g-import-not-at-top

  class NoShuffler:
    def __init__(self, *args, **kwargs):
      # TFDS's shuffling writer spills past 1 GB through TensorFlow, which is not installed.
      raise AssertionError("the build went through TFDS's shuffling writer")

  monkeypatch.setattr(shuffle, "Shuffler", NoShuffler)
  sharded = shards.open_dataset(tfds_builder.build_dataset(
      recordings, str(tmp_path), segment_seconds=0.9, shard_bytes=20_000))
  assert len(list(sharded.path.glob("*.array_record-*"))) > 3
  np.testing.assert_array_equal(sharded.segment_table, dataset.segment_table)
  for segment in range(len(dataset.segment_table)):
    stored, expected = sharded.read_segment(segment), dataset.read_segment(segment)
    assert stored.keys() == expected.keys()
    for key in expected:
      np.testing.assert_array_equal(stored[key], expected[key], err_msg=key)


def test_a_build_leaves_nothing_in_the_temporary_folder(recordings, tmp_path, monkeypatch):
  temporary_folder = tmp_path / "tmp"
  temporary_folder.mkdir()
  monkeypatch.setattr(tempfile, "tempdir", str(temporary_folder))
  tfds_builder.build_dataset(recordings[:2], str(tmp_path / "data"), segment_seconds=0.9)
  assert not list(temporary_folder.iterdir())


def test_the_behaviour_index_is_readable_by_others_and_leaves_no_temporary_file(
    recordings, tmp_path, monkeypatch):
  path = tmp_path / shards.BEHAVIOUR_INDEX_FILE
  for umask, mode in ((0o022, 0o644), (0o002, 0o664)):
    previous = os.umask(umask)
    try:
      shards.write_behaviour_index(str(path), recordings[:2])
    finally:
      os.umask(previous)
    # Users sharing the data directory read it, as they would any file made with this umask.
    assert path.stat().st_mode & 0o777 == mode
  written = path.read_bytes()

  def full_disk(*args, **kwargs):
    raise OSError("No space left on device")

  monkeypatch.setattr(np, "savez", full_disk)
  with pytest.raises(OSError, match="No space left"):
    shards.write_behaviour_index(str(path), recordings[:2])
  assert [p.name for p in tmp_path.iterdir()] == [path.name]
  assert path.read_bytes() == written


def test_a_second_build_of_the_same_name_is_refused_unless_overwritten(recordings, tmp_path):
  first = tfds_builder.build_dataset(recordings[:2], str(tmp_path), segment_seconds=0.9)
  with pytest.raises(FileExistsError) as error:
    tfds_builder.build_dataset(recordings[2:4], str(tmp_path), segment_seconds=0.9)
  assert str(first) in str(error.value) and "overwrite" in str(error.value)
  assert shards.open_dataset(first).animals == tuple(sorted({r.animal_id for r in recordings[:2]}))
  rebuilt = tfds_builder.build_dataset(recordings[2:4], str(tmp_path), segment_seconds=0.9,
                                       overwrite=True)
  assert rebuilt == first
  assert shards.open_dataset(rebuilt).animals == tuple(
      sorted({r.animal_id for r in recordings[2:4]}))


def test_a_build_without_recordings_says_there_is_nothing_to_build(tmp_path):
  with pytest.raises(ValueError, match="no recordings to build"):
    tfds_builder.build_dataset([], str(tmp_path))
  assert not list(tmp_path.iterdir())


def test_metadata_holds_classes_animals_and_rates(recordings, dataset):
  assert dataset.class_names == recording_lib.MC2P_CLASS_NAMES
  assert dataset.animals == tuple(sorted({r.animal_id for r in recordings}))
  rates = {(t["animal_id"], t["trial_id"]): t["fps_neural"] for t in dataset.trials}
  for rec in recordings:
    assert rates[(rec.animal_id, rec.trial_id)] == pytest.approx(rec.fps_neural)


def test_windows_from_shards_equal_windows_cut_in_memory(recordings, dataset):
  training, _ = pipeline.split_animals(dataset.animals, 1, seed=0)
  normalizer = pipeline.fit_pose_normalizer(dataset, training)
  index = pipeline.select_windows(dataset, SPEC, hop=7)
  source = pipeline.WindowSource(dataset, index, SPEC, normalizer)
  trials = dataset.trials
  by_name = {(r.animal_id, r.trial_id): r for r in recordings}
  for item in range(0, len(source), 3):
    window = source[item]
    info = trials[int(index.trial[item])]
    rec = by_name[(info["animal_id"], info["trial_id"])]
    expected = windows.cut_recording_windows(rec, np.array([index.centre[item]]), SPEC)
    np.testing.assert_array_equal(window["neural_images"], expected["neural_images"][0])
    np.testing.assert_array_equal(window["roi_traces"], expected["roi_traces"][0])
    np.testing.assert_array_equal(window["pose"], normalizer(expected["pose"][0]))
    assert window["label"] == expected["label"][0]
    assert dataset.animals[window["animal"]] == rec.animal_id


def test_pose_normaliser_uses_training_animals_only(dataset):
  training = dataset.animals[:2]
  normalizer = pipeline.fit_pose_normalizer(dataset, training)
  index = dataset.behaviour_index
  rows = np.isin(np.repeat(index.animal_ids, np.diff(index.offsets)), training)
  features = keypoints.leg_relative_pose(index.behaviour[rows])
  np.testing.assert_allclose(normalizer.mean, np.nanmean(features, axis=0), atol=1e-5)
  everyone = pipeline.fit_pose_normalizer(dataset, dataset.animals)
  assert not np.allclose(normalizer.mean, everyone.mean)


def test_held_out_animals_time_blocks_and_trials_are_chosen_at_load_time(dataset):
  training, held_out = pipeline.split_animals(dataset.animals, 2, seed=3)
  assert set(training).isdisjoint(held_out) and len(held_out) == 2
  train_index = pipeline.select_windows(dataset, SPEC, animals=training)
  animals_seen = {dataset.trials[t]["animal_id"] for t in np.unique(train_index.trial)}
  assert animals_seen == set(training)

  blocks = [pipeline.select_windows(dataset, SPEC, time_block=pipeline.TimeBlock(b, 3))
            for b in range(3)]
  for a in range(3):
    for b in range(a + 1, 3):
      for trial in range(len(dataset.trials)):
        frames = lambda idx: {int(c) + o for c in idx.centre[idx.trial == trial]
                              for o in SPEC.pose_offsets()}
        assert frames(blocks[a]).isdisjoint(frames(blocks[b]))

  first_trials = pipeline.select_windows(dataset, SPEC, trials=["000"])
  assert {dataset.trials[t]["trial_id"] for t in np.unique(first_trials.trial)} == {"000"}


def test_label_filters_drop_resting_and_unlabelled(dataset):
  index = pipeline.select_windows(
      dataset, SPEC, drop_unlabelled=True, drop_classes=("resting",))
  labels = np.array([dataset.behaviour_index.trial_array("labels", t)[c]
                     for t, c in zip(index.trial, index.centre)])
  assert labels.min() >= 1
  with pytest.raises(ValueError, match="unknown class 'flying'"):
    pipeline.select_windows(dataset, SPEC, drop_classes=("flying",))


def test_an_empty_selection_fails_clearly(dataset):
  with pytest.raises(ValueError, match="holds no window"):
    pipeline.select_windows(dataset, SPEC, trials=["999"])
  with pytest.raises(ValueError, match="unknown animals"):
    pipeline.select_windows(dataset, SPEC, animals=["nobody"])


def _batches(iterator, count):
  return [next(iterator) for _ in range(count)]


def test_training_order_is_seeded_and_the_iterator_resumes_at_the_exact_batch(dataset):
  normalizer = pipeline.fit_pose_normalizer(dataset, dataset.animals)
  source = pipeline.WindowSource(
      dataset, pipeline.select_windows(dataset, SPEC), SPEC, normalizer)
  make = lambda seed: pipeline.make_loader(source, batch_size=5, train=True, seed=seed,
                                                 shard=(0, 1))
  reference = _batches(iter(make(0)), 6)
  again = _batches(iter(make(0)), 6)
  other = _batches(iter(make(1)), 6)
  assert all(np.array_equal(a["centre_frame"], b["centre_frame"]) for a, b in zip(reference, again))
  assert not all(np.array_equal(a["centre_frame"], b["centre_frame"])
                 for a, b in zip(reference, other))

  iterator = iter(make(0))
  _batches(iterator, 3)
  state = iterator.get_state()
  resumed = iter(make(0))
  resumed.set_state(state)
  for expected, got in zip(reference[3:], _batches(resumed, 3)):
    for key in expected:
      np.testing.assert_array_equal(expected[key], got[key])


def test_hosts_read_disjoint_parts_and_evaluation_tiles_deterministically(dataset):
  normalizer = pipeline.fit_pose_normalizer(dataset, dataset.animals)
  index = pipeline.select_windows(dataset, SPEC, hop=5)
  source = pipeline.WindowSource(dataset, index, SPEC, normalizer)
  seen = []
  for host in range(2):
    loader = pipeline.make_loader(source, batch_size=4, train=False, shard=(host, 2))
    seen.append({(int(t), int(c)) for batch in loader
                 for t, c in zip(batch["trial"], batch["centre_frame"])})
  assert seen[0].isdisjoint(seen[1])
  assert len(seen[0] | seen[1]) >= len(index) - 1  # drop_remainder may drop one window
  full = pipeline.make_loader(source, batch_size=4, train=False, shard=(0, 1))
  centres = np.concatenate([b["centre_frame"] for b in full])
  np.testing.assert_array_equal(centres, index.centre)


def test_pose_bank_marks_frames_with_missing_leg_keypoints_invalid(dataset):
  normalizer = pipeline.fit_pose_normalizer(dataset, dataset.animals)
  bank = pipeline.collect_pose_frames(dataset, normalizer, dataset.animals[:2])
  index = dataset.behaviour_index
  for animal, frames, valid in zip(bank.animals, bank.frames, bank.valid):
    rows = np.repeat(index.animal_ids, np.diff(index.offsets)) == animal
    assert frames.shape == (rows.sum(), keypoints.LEG_FEATURE_DIM)
    leg_nan = np.isnan(keypoints.leg_relative_pose(index.behaviour[rows])).any(axis=-1)
    np.testing.assert_array_equal(~valid, leg_nan)
    assert np.isfinite(frames).all()


def test_bank_frame_index_points_at_the_window_pose(dataset):
  normalizer = pipeline.fit_pose_normalizer(dataset, dataset.animals)
  bank = pipeline.collect_pose_frames(dataset, normalizer, dataset.animals)
  source = pipeline.WindowSource(
      dataset, pipeline.select_windows(dataset, SPEC, hop=11), SPEC, normalizer)
  for item in range(len(source)):
    window = source[item]
    np.testing.assert_array_equal(bank.frames[window["animal"]][window["bank_frame_index"]],
                                  window["pose"])


def test_an_interrupted_build_does_not_read_as_complete(recordings, tmp_path, monkeypatch):
  original = tfds_builder.NarRecordings._generate_examples

  def interrupted(self, *args, **kwargs):
    for count, example in enumerate(original(self, *args, **kwargs)):
      if count == 5:
        raise KeyboardInterrupt
      yield example

  monkeypatch.setattr(tfds_builder.NarRecordings, "_generate_examples", interrupted)
  with pytest.raises(KeyboardInterrupt):
    tfds_builder.build_dataset(recordings, str(tmp_path))
  with pytest.raises(shards.DatasetNotFoundError):
    shards.open_dataset(tmp_path)
  monkeypatch.setattr(tfds_builder.NarRecordings, "_generate_examples", original)
  shards.open_dataset(tfds_builder.build_dataset(recordings, str(tmp_path)))


def test_shards_read_back_without_tensorflow(dataset):
  script = textwrap.dedent(f"""
      import importlib.util, sys
      assert importlib.util.find_spec("tensorflow") is None, "run this in an env without TF"
      from nar.data import pipeline
      from nar.data import shards
      from nar.data import windows
      ds = shards.open_dataset({str(dataset.path)!r})
      spec = windows.WindowSpec(pose_frames=8, pose_stride=2, neural_frames=4)
      norm = pipeline.fit_pose_normalizer(ds, ds.animals)
      src = pipeline.WindowSource(ds, pipeline.select_windows(ds, spec), spec, norm)
      batch = next(iter(pipeline.make_loader(src, batch_size=3, train=True, shard=(0, 1))))
      print(batch["neural_images"].shape, "tensorflow" in sys.modules)
  """)
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"}, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "(3, 4, 6, 5) False" in result.stdout


def test_the_neural_cache_stays_within_its_budget_and_returns_the_stored_frames(dataset):
  segment_bytes = max(dataset.neural_bytes() // len(dataset.segment_table), 1)
  small = shards.open_dataset(dataset.path, neural_cache_bytes=3 * segment_bytes)
  uncached = shards.open_dataset(dataset.path, neural_cache_bytes=0)
  for trial in range(len(dataset.trials)):
    end = dataset.trials[trial]["num_neural_frames"]
    for start in range(0, end - 5, 7):
      expected = uncached.read_neural(trial, start, start + 5)
      got = small.read_neural(trial, start, start + 5)
      for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
      assert small.cached_neural_bytes <= 3 * segment_bytes
  assert uncached.cached_neural_segments == 0
  assert not small.preload_neural(progress=False)
  everything = shards.open_dataset(dataset.path, neural_cache_bytes=2 * dataset.neural_bytes())
  assert everything.preload_neural(progress=False)
  assert everything.cached_neural_segments == len(dataset.segment_table)


def test_a_dataset_cache_opens_each_dataset_once_and_shares_its_preload(dataset,
                                                                         monkeypatch):
  cache = shards.DatasetCache()
  data_dir, name = dataset.path.parent.parent.parent, dataset.path.parent.name
  first = cache.open(dataset.path)
  assert first.preload_neural(progress=False)
  # The same dataset by its data dir and name, or its version directory: the opened one.
  assert cache.open(data_dir, name) is first and cache.open(dataset.path) is first
  assert len(cache) == 1
  reads = []
  monkeypatch.setattr(first, "read_segment", lambda segment: reads.append(segment))
  assert first.preload_neural(progress=False) and not reads  # preloaded once only
  # Another neural cache budget is another opened dataset.
  assert cache.open(dataset.path, neural_cache_bytes=0) is not first and len(cache) == 2
  with pytest.raises(shards.DatasetNotFoundError):
    cache.open(data_dir, "no_such_dataset")


def test_behaviour_features_are_computed_once_read_only_and_not_sent_to_workers(dataset):
  opened = shards.open_dataset(dataset.path)
  features = opened.behaviour_features
  np.testing.assert_array_equal(
      features, opened.behaviour_spec.features(opened.behaviour_index.behaviour))
  assert pipeline.pose_features(opened) is features
  assert not features.flags.writeable
  assert opened.behaviour_index.behaviour.flags.writeable  # a read-only view, not the index
  assert "behaviour_features" not in opened.__getstate__()


def _one_by_one(source, items):
  windows_read = [source[int(item)] for item in items]
  return {key: np.stack([window[key] for window in windows_read]) for key in windows_read[0]}


def _assert_same_batch(got, expected):
  assert sorted(got) == sorted(expected)
  for key in expected:
    assert got[key].dtype == expected[key].dtype, key
    np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


@pytest.mark.parametrize("preloaded", [False, True])
def test_a_batch_read_at_once_equals_its_windows_read_one_by_one(dataset, preloaded):
  opened = shards.open_dataset(dataset.path)
  if preloaded:
    assert opened.preload_neural(progress=False)
  normalizer = pipeline.fit_pose_normalizer(opened, opened.animals[:3])
  neural_normalizer = normalise.NeuralNormalizer.fit(
      opened, "neural_images", calibration_fraction=0.75, progress=False)
  index = pipeline.select_windows(opened, SPEC, hop=3)
  # Unsorted, repeated, and from every animal and segment boundary.
  items = np.random.default_rng(0).integers(0, len(index), 200)
  for standardise in (None, neural_normalizer):
    source = pipeline.WindowSource(opened, index, SPEC, normalizer,
                                         neural_normalizer=standardise)
    _assert_same_batch(source.read_batch(items), _one_by_one(source, items))
    _assert_same_batch(source.read_batch(items[:1]), _one_by_one(source, items[:1]))


def test_the_loader_yields_the_batches_of_reading_window_by_window(dataset):
  # make_loader shuffles and batches indices, then reads each batch at once; the windows and
  # their order are those of grain batching the source's items (so runs before it repeat).
  normalizer = pipeline.fit_pose_normalizer(dataset, dataset.animals)
  source = pipeline.WindowSource(
      dataset, pipeline.select_windows(dataset, SPEC, hop=2), SPEC, normalizer)
  options = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
  by_item = grain.MapDataset.source(source)
  expected = {True: by_item.seed(7).shuffle().repeat(None).batch(16, drop_remainder=True),
              False: by_item.batch(16, drop_remainder=False)}
  for train in (True, False):
    reference = iter(expected[train].to_iter_dataset(options))
    loader = iter(pipeline.make_loader(source, batch_size=16, train=train, seed=7,
                                             shard=(0, 1)))
    count = 2 * (len(source) // 16) + 1 if train else -(-len(source) // 16)
    for _ in range(count):  # into a second epoch when training; the last partial batch too
      _assert_same_batch(next(loader), next(reference))


def test_preloaded_neural_frames_are_read_only_slices_of_the_stored_frames(dataset):
  preloaded = shards.open_dataset(dataset.path)
  assert preloaded.preload_neural(progress=False)
  for trial, info in enumerate(dataset.trials):
    stored = dataset.read_trial(trial)
    for start in range(0, info["num_neural_frames"] - 6, 5):
      got = preloaded.read_neural(trial, start, start + 6)
      for key in dataset.neural_keys:
        np.testing.assert_array_equal(got[key], stored[key][start:start + 6])
        assert not got[key].flags.writeable
  with pytest.raises(IndexError, match="outside trial"):
    preloaded.read_neural(0, 0, dataset.trials[0]["num_neural_frames"] + 1)


def test_a_batch_read_refuses_empty_or_out_of_range_items(dataset):
  normalizer = pipeline.fit_pose_normalizer(dataset, dataset.animals)
  source = pipeline.WindowSource(
      dataset, pipeline.select_windows(dataset, SPEC, hop=5), SPEC, normalizer)
  with pytest.raises(ValueError, match="non-empty 1-D"):
    source.read_batch([])
  with pytest.raises(IndexError, match="out of range"):
    source.read_batch([0, len(source)])


def test_worker_processes_yield_the_batches_of_the_main_process(dataset):
  # Workers rebuild the dataset from its pickle (no shard readers, no preloaded frames).
  flags.FLAGS.mark_as_parsed()  # grain's workers read absl flags, parsed by absl.app otherwise
  preloaded = shards.open_dataset(dataset.path)
  assert preloaded.preload_neural(progress=False)
  source = pipeline.WindowSource(
      preloaded, pipeline.select_windows(preloaded, SPEC, hop=4), SPEC,
      pipeline.fit_pose_normalizer(preloaded, preloaded.animals))
  make = lambda workers: iter(pipeline.make_loader(
      source, batch_size=8, train=True, seed=2, worker_count=workers, shard=(0, 1)))
  for expected, got in zip(_batches(make(0), 5), _batches(make(2), 5)):
    _assert_same_batch(got, expected)


def _process_gone(pid: int) -> bool:
  """True once `pid` has exited (a zombie waiting for its new parent's reaping counts)."""
  try:
    with open(f"/proc/{pid}/stat") as stat:
      return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
  except FileNotFoundError:
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_when_their_main_process_is_killed(dataset, tmp_path):
  # The main process is killed outright (as by the out-of-memory killer) after a few batches.
  script = textwrap.dedent(f"""
      import multiprocessing, os, signal
      from absl import flags
      from nar.data import pipeline
      from nar.data import shards
      from nar.data import windows
      flags.FLAGS.mark_as_parsed()
      ds = shards.open_dataset({str(dataset.path)!r})
      spec = windows.WindowSpec(pose_frames=8, pose_stride=2, neural_frames=4)
      norm = pipeline.fit_pose_normalizer(ds, ds.animals)
      src = pipeline.WindowSource(ds, pipeline.select_windows(ds, spec), spec, norm)
      loader = iter(pipeline.make_loader(src, batch_size=4, train=True, worker_count=2,
                                               shard=(0, 1)))
      for _ in range(4):  # batches come from the workers in turn: both have started
        next(loader)
      print(" ".join(str(child.pid) for child in multiprocessing.active_children()), flush=True)
      os.kill(os.getpid(), signal.SIGKILL)
  """)
  # Output to files, not pipes: workers that outlived the process would hold a pipe open.
  output, errors = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
  with open(output, "w") as stdout, open(errors, "w") as stderr:
    result = subprocess.run([sys.executable, "-c", script], stdout=stdout, stderr=stderr,
                            timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"}, check=False)
  assert result.returncode == -9, errors.read_text()[-3000:]
  workers = [int(pid) for pid in output.read_text().split()]
  assert len(workers) >= 2, output.read_text()
  deadline = time.monotonic() + 20 * pipeline.ORPHAN_CHECK_SECONDS
  try:
    while not all(_process_gone(pid) for pid in workers) and time.monotonic() < deadline:
      time.sleep(0.1)  # polls the condition; the workers notice within ORPHAN_CHECK_SECONDS
    assert all(_process_gone(pid) for pid in workers), workers
  finally:
    for pid in workers:
      if not _process_gone(pid):
        os.kill(pid, signal.SIGKILL)
