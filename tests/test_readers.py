"""The readers give back what the writers wrote, read real DeepFly3D output, and reject every
class of bad input with one error that names the file and the problem."""

import json
import pickle
import shutil

import h5py
import numpy as np
import pytest
import tifffile

from data_prep import errors
from data_prep import mc2p
from data_prep import mc2p_writer
from data_prep import readers
from data_prep import trial_files
from nar.data import recording as recording_lib

ANIMAL = "200901_G23xU1_Fly1"
NUM_FRAMES = 60
NUM_NEURAL = 10


def _recording(animal_id=ANIMAL, trial_id="001", *, seed=0, num_frames=NUM_FRAMES,
               num_neural=NUM_NEURAL, **overrides):
  rng = np.random.default_rng(seed)
  behaviour = rng.normal(size=(num_frames, 38, 3)).astype(np.float32)
  behaviour[5, 7] = np.nan
  labels = np.full(num_frames, -1, np.int32)
  labels[10:25] = 1
  labels[25:40] = 0
  labels[45:] = 4
  keypoint_mask = np.isfinite(behaviour).all(axis=-1)
  keypoint_mask[9, 2] = False  # A finite but rejected keypoint must survive the round trip.
  fields = dict(
      animal_id=animal_id, trial_id=trial_id, behaviour=behaviour,
      sync=(np.arange(num_frames) * num_neural // num_frames).astype(np.int64),
      labels=labels,
      neural_images=rng.normal(size=(num_neural, 6, 5)).astype(np.float32),
      roi_traces=rng.normal(size=(num_neural, 4)).astype(np.float32),
      keypoint_mask=keypoint_mask,
      rest=rng.random(num_frames) < 0.3,
      neural_timestamps=np.arange(num_neural) / 16.0 + 0.01,
      fps_neural=16.0)
  fields.update(overrides)
  return recording_lib.Recording(**fields)


def _assert_same_recording(actual, expected):
  assert actual.animal_id == expected.animal_id
  assert actual.trial_id == expected.trial_id
  assert actual.class_names == expected.class_names
  assert actual.behaviour_format == expected.behaviour_format
  assert actual.fps_behaviour == expected.fps_behaviour
  assert actual.fps_neural == expected.fps_neural
  assert actual.behaviour.dtype == np.float32
  np.testing.assert_array_equal(actual.behaviour, expected.behaviour)
  for field in ("sync", "labels", "neural_images", "roi_traces", "keypoint_mask", "rest",
                "behaviour_timestamps", "neural_timestamps"):
    a, e = getattr(actual, field), getattr(expected, field)
    assert (a is None) == (e is None), field
    if e is not None:
      assert a.dtype == np.asarray(e).dtype, field
      np.testing.assert_array_equal(a, e, err_msg=field)


def _read_error(function, *args, error_type=recording_lib.RecordingError, **kwargs):
  with pytest.raises(error_type) as error:
    function(*args, **kwargs)
  return str(error.value)


# ----------------------------------------------------------------------------------------
# Real DeepFly3D output.
# ----------------------------------------------------------------------------------------


def test_real_deepfly3d_result_is_read_through_a_nested_trial_folder(tmp_path, fixtures_dir):
  fixture = fixtures_dir / "df3d" / "pose_result_sample.pkl"
  folder = tmp_path / f"{ANIMAL}_002"
  nested = folder / "behData" / "images" / "df3d"
  nested.mkdir(parents=True)
  shutil.copy(fixture, nested / fixture.name)
  np.save(folder / "dff.npy", np.zeros((4, 3, 3), np.float32))
  np.save(folder / "sync_indices.npy", np.arange(15) * 4 // 15)
  (folder / "behaviour_labels.csv").write_text(
      "start_frame,end_frame,behaviour\n0,6,walking\n9,15,resting\n")

  rec = mc2p.read_trial(folder)

  with open(fixture, "rb") as f:
    points3d = pickle.load(f)["points3d"]
  assert rec.pose.shape == (15, 38, 3) and rec.pose.dtype == np.float32
  np.testing.assert_array_equal(rec.pose, points3d.astype(np.float32))
  assert (rec.animal_id, rec.trial_id) == (ANIMAL, "002")
  np.testing.assert_array_equal(rec.labels, [1] * 6 + [-1] * 3 + [0] * 6)
  assert (rec.fps_behaviour, rec.fps_neural) == (100.0, 16.0)
  assert rec.source == str(folder)


# ----------------------------------------------------------------------------------------
# Round trips.
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("image_format", ["npy", "mm", "tif"])
def test_mc2p_round_trip_for_every_neural_image_format(tmp_path, image_format):
  rec = _recording()
  folder = mc2p_writer.write_trial(rec, tmp_path, neural_image_format=image_format)
  assert folder.name == f"{ANIMAL}_001"
  assert (folder / f"dff.{image_format}").exists()
  with open(folder / "pose_result.pkl", "rb") as f:
    assert pickle.load(f)["points3d"].dtype == np.float64
  _assert_same_recording(mc2p.read_trial(folder), rec)


def test_mc2p_round_trip_with_roi_traces_only_and_few_optional_files(tmp_path):
  rec = _recording(neural_images=None, keypoint_mask=None, rest=None, neural_timestamps=None,
                   behaviour_timestamps=np.arange(NUM_FRAMES) / 100.0)
  folder = mc2p_writer.write_trial(rec, tmp_path)
  assert not (folder / "dff.npy").exists() and not (folder / "rest.npy").exists()
  assert not (folder / "keypoint_mask.npy").exists()
  _assert_same_recording(mc2p.read_trial(folder), rec)


def test_mc2p_integer_label_array_with_its_own_class_order(tmp_path):
  rec = _recording()
  folder = mc2p_writer.write_trial(rec, tmp_path)
  (folder / "behaviour_labels.csv").unlink()
  # The file's classes come in another order; labels are matched to the vocabulary by name.
  file_names = list(reversed(recording_lib.MC2P_CLASS_NAMES))
  (folder / "class_names.txt").write_text("\n".join(file_names) + "\n")
  file_labels = np.where(rec.labels >= 0, len(file_names) - 1 - rec.labels, -1)
  np.save(folder / "labels.npy", file_labels.astype(np.int16))
  _assert_same_recording(mc2p.read_trial(folder), rec)


def test_mc2p_string_label_array(tmp_path):
  rec = _recording()
  folder = mc2p_writer.write_trial(rec, tmp_path)
  (folder / "behaviour_labels.csv").unlink()
  names = np.array([rec.class_names[i] if i >= 0 else "" for i in rec.labels])
  np.save(folder / "labels.npy", names)
  _assert_same_recording(mc2p.read_trial(folder), rec)


def test_mc2p_round_trip_keeps_its_own_class_names(tmp_path):
  rec = _recording(class_names=("still", "run", "groom_a", "groom_b", "groom_c"))
  folder = mc2p_writer.write_trial(rec, tmp_path)
  _assert_same_recording(mc2p.read_trial(folder), rec)
  # In another vocabulary the names must be known.
  message = _read_error(mc2p.read_trial, folder, class_names=recording_lib.MC2P_CLASS_NAMES)
  assert "behaviour_labels.csv: unknown behaviour label(s) ['groom_c', 'run', 'still']" in (
      message)


def test_mc2p_published_bout_table_is_filtered_to_its_trial(tmp_path):
  rec = _recording(labels=np.full(NUM_FRAMES, -1, np.int32))
  folder = mc2p_writer.write_trial(rec, tmp_path)
  (folder / "behaviour_labels.csv").write_text(
      "fly,trial,start_frame,end_frame,behaviour\n"
      f"{ANIMAL},1,0,20,walking\n"
      f"{ANIMAL},2,0,50,resting\n"
      f"200901_G23xU1_Fly2,1,30,50,resting\n")
  labels = mc2p.read_trial(folder).labels
  np.testing.assert_array_equal(labels, [1] * 20 + [-1] * 40)


def test_trial_without_labels_is_unlabelled(tmp_path):
  folder = mc2p_writer.write_trial(_recording(), tmp_path)
  (folder / "behaviour_labels.csv").unlink()
  assert (mc2p.read_trial(folder).labels == -1).all()


def test_mc2p_directory_round_trip_ignores_other_entries(tmp_path):
  recs = [_recording(trial_id=t, seed=i) for i, t in enumerate(["002", "001"])]
  recs.append(_recording("201001_SS29893_Fly3", "004", seed=3))
  for rec in recs:
    mc2p_writer.write_trial(rec, tmp_path)
  (tmp_path / "ground_truth.npz").write_bytes(b"not a trial")
  (tmp_path / "notes").mkdir()
  read = readers.read_recordings(tmp_path)
  assert [(r.animal_id, r.trial_id) for r in read] == [
      (ANIMAL, "001"), (ANIMAL, "002"), ("201001_SS29893_Fly3", "004")]
  for actual, expected in zip(read, [recs[1], recs[0], recs[2]]):
    _assert_same_recording(actual, expected)


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".hdf5"])
def test_trial_file_round_trip(tmp_path, suffix):
  rec = _recording("mouse_7", "session 3", class_names=("still", "run", "a", "b", "c"))
  path = trial_files.write_trial_file(rec, tmp_path / f"trial{suffix}")
  assert path.name == f"trial{suffix}"
  _assert_same_recording(trial_files.read_trial_file(path), rec)


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_trial_file_sync_is_derived_from_timestamps(tmp_path, suffix):
  rng = np.random.default_rng(1)
  behaviour_times = np.arange(30) / 100.0
  neural_times = 0.023 + np.arange(5) / 16.0  # Starts after the first behaviour frames.
  arrays = dict(pose=rng.normal(size=(30, 38, 3)), roi_traces=rng.normal(size=(5, 2)),
                behaviour_timestamps=behaviour_times, neural_timestamps=neural_times)
  path = tmp_path / f"trial{suffix}"
  if suffix == ".npz":
    np.savez(path, animal_id="fly", trial_id="1", **arrays)
  else:
    with h5py.File(path, "w") as f:
      f.attrs["animal_id"], f.attrs["trial_id"] = "fly", "1"
      for key, value in arrays.items():
        f.create_dataset(key, data=value)
  rec = trial_files.read_trial_file(path)
  # Frames 0-2 come before the first neural frame and are clipped to it.
  expected = [0] * 9 + [1] * 6 + [2] * 7 + [3] * 6 + [4] * 2
  np.testing.assert_array_equal(rec.sync, expected)
  assert rec.behaviour.dtype == np.float32 and rec.roi_traces.dtype == np.float32
  assert (rec.labels == -1).all() and rec.class_names == recording_lib.MC2P_CLASS_NAMES


def test_read_recordings_detects_trial_files(tmp_path):
  trial_files.write_trial_file(_recording(trial_id="2"), tmp_path / "a" / "t2.h5")
  trial_files.write_trial_file(_recording(trial_id="1"), tmp_path / "t1.npz")
  read = readers.read_recordings(tmp_path)
  assert [r.trial_id for r in read] == ["2", "1"]  # Sorted by path: a/t2.h5 < t1.npz.
  assert readers.detect_layout(tmp_path) == "trial_files"


def test_read_recordings_says_what_it_looked_for(tmp_path):
  (tmp_path / "readme.txt").write_text("nothing here")
  message = _read_error(readers.read_recordings, tmp_path)
  assert "<date>_<genotype>_Fly<N>_<trial>" in message and "*.npz" in message
  message = _read_error(readers.read_recordings, tmp_path, layout="mc2p")
  assert "holds no MC2P trial folder" in message
  with pytest.raises(ValueError, match="layout must be one of"):
    readers.read_recordings(tmp_path, layout="nix")


def test_write_trial_rejects_ids_that_do_not_fit_the_folder_pattern(tmp_path):
  with pytest.raises(ValueError, match="<date>_<genotype>_Fly<N>"):
    mc2p_writer.write_trial(_recording("fly_1", "001"), tmp_path)
  with pytest.raises(ValueError, match="trial_id 'a' is not made of digits"):
    mc2p_writer.write_trial(_recording(ANIMAL, "a"), tmp_path)


# ----------------------------------------------------------------------------------------
# Bad input, MC2P layout.
# ----------------------------------------------------------------------------------------


@pytest.fixture
def trial_folder(tmp_path):
  return mc2p_writer.write_trial(_recording(), tmp_path / "raw")


def test_sync_length_different_from_the_pose(trial_folder):
  np.save(trial_folder / "sync_indices.npy", np.zeros(NUM_FRAMES - 1, np.int64))
  message = _read_error(mc2p.read_trial, trial_folder)
  assert str(trial_folder) in message
  assert f"sync_indices.npy: sync must have shape ({NUM_FRAMES},)" in message


def test_sync_out_of_range_or_decreasing(trial_folder):
  sync = np.load(trial_folder / "sync_indices.npy")
  sync[-1] = NUM_NEURAL
  np.save(trial_folder / "sync_indices.npy", sync)
  message = _read_error(mc2p.read_trial, trial_folder)
  assert f"sync_indices.npy: sync indices must lie in [0, {NUM_NEURAL})" in message
  sync[-1] = 0
  np.save(trial_folder / "sync_indices.npy", sync)
  assert "sync_indices.npy: sync decreases at behaviour frame" in _read_error(
      mc2p.read_trial, trial_folder)


def test_sync_of_floats(trial_folder):
  np.save(trial_folder / "sync_indices.npy", np.zeros(NUM_FRAMES))
  message = _read_error(mc2p.read_trial, trial_folder)
  assert "sync_indices.npy: sync indices must be integers, got dtype float64" in message


def test_nan_in_the_dff_stack(trial_folder):
  images = np.load(trial_folder / "dff.npy")
  images[3, 1, 1] = np.nan
  np.save(trial_folder / "dff.npy", images)
  assert "dff.npy: neural_images holds non-finite values" in _read_error(
      mc2p.read_trial, trial_folder)


def test_dff_stack_of_wrong_shape_or_dtype(trial_folder):
  np.save(trial_folder / "dff.npy", np.zeros((NUM_NEURAL, 30), np.float32))
  assert "dff.npy: ΔF/F stack must be 3-D (T_n, H, W), got shape (10, 30)" in _read_error(
      mc2p.read_trial, trial_folder)
  (trial_folder / "dff.npy").unlink()
  tifffile.imwrite(trial_folder / "dff_raw.tif", np.zeros((NUM_NEURAL, 6, 5), np.uint16))
  assert "dff_raw.tif: ΔF/F stack must hold floats, got dtype uint16" in _read_error(
      mc2p.read_trial, trial_folder)


def test_raw_memmap_of_the_wrong_size_or_without_its_shape(trial_folder):
  (trial_folder / "dff.npy").unlink()
  np.zeros(NUM_NEURAL * 6 * 5 + 1, np.float32).tofile(trial_folder / "dff.mm")
  message = _read_error(mc2p.read_trial, trial_folder)
  assert "dff.mm: size 1204 bytes is not a positive multiple of H*W*4 = 120" in message
  metadata = json.loads((trial_folder / "metadata.json").read_text())
  del metadata["neural_image_shape"]
  (trial_folder / "metadata.json").write_text(json.dumps(metadata))
  assert "dff.mm: a raw .mm stack needs 'neural_image_shape'" in _read_error(
      mc2p.read_trial, trial_folder)


def test_two_candidate_dff_stacks(trial_folder):
  (trial_folder / "motion_corrected").mkdir()
  shutil.copy(trial_folder / "dff.npy", trial_folder / "motion_corrected" / "dff_denoised.npy")
  message = _read_error(mc2p.read_trial, trial_folder)
  assert "more than one ΔF/F stack file" in message
  assert "dff.npy" in message and "motion_corrected/dff_denoised.npy" in message


def test_pose_of_the_wrong_shape(trial_folder):
  with open(trial_folder / "pose_result.pkl", "wb") as f:
    pickle.dump({"points3d": np.zeros((NUM_FRAMES, 30, 3))}, f)
  assert "pose_result.pkl: 'points3d' must have shape (T, 38, 3), got (60, 30, 3)" in (
      _read_error(mc2p.read_trial, trial_folder))


def test_malformed_pickle(trial_folder):
  (trial_folder / "pose_result.pkl").write_bytes(b"\x80\x04garbage")
  message = _read_error(mc2p.read_trial, trial_folder)
  assert "pose_result.pkl: is not a readable DeepFly3D pickle" in message
  with open(trial_folder / "pose_result.pkl", "wb") as f:
    pickle.dump({"points2d": np.zeros((7, 3, 38, 2))}, f)
  assert "pose_result.pkl: holds no 'points3d' (found ['points2d'])" in _read_error(
      mc2p.read_trial, trial_folder)


def test_missing_required_file(trial_folder):
  (trial_folder / "sync_indices.npy").unlink()
  message = _read_error(mc2p.read_trial, trial_folder)
  assert str(trial_folder) in message
  assert "no sync indices file found (looked for sync_indices.npy | indices.npy)" in message


def test_unknown_label_name(trial_folder):
  (trial_folder / "behaviour_labels.csv").write_text(
      "start_frame,end_frame,behaviour\n0,10,walking\n10,20,flying\n")
  message = _read_error(mc2p.read_trial, trial_folder)
  assert "behaviour_labels.csv: unknown behaviour label(s) ['flying']" in message


def test_label_csv_with_missing_columns_overlaps_or_frames_out_of_range(trial_folder):
  csv_path = trial_folder / "behaviour_labels.csv"
  csv_path.write_text("start,end,behaviour\n0,10,walking\n")
  assert "behaviour_labels.csv: missing column(s) ['start_frame', 'end_frame']" in (
      _read_error(mc2p.read_trial, trial_folder))
  csv_path.write_text("start_frame,end_frame,behaviour\n0,10,walking\n5,12,resting\n"
                      f"50,{NUM_FRAMES + 1},resting\n")
  message = _read_error(mc2p.read_trial, trial_folder)
  assert "line 3: bout [5, 12) overlaps an earlier bout" in message
  assert f"line 4: bout [50, 61) is empty or outside the {NUM_FRAMES} behaviour frames" in (
      message)


def test_label_array_of_wrong_length(trial_folder):
  (trial_folder / "behaviour_labels.csv").unlink()
  np.save(trial_folder / "labels.npy", np.zeros(NUM_FRAMES + 2, np.int32))
  assert f"labels.npy: labels must have shape ({NUM_FRAMES},)" in _read_error(
      mc2p.read_trial, trial_folder)


def test_unreadable_metadata(trial_folder):
  (trial_folder / "metadata.json").write_text("{fps_neural: 16")
  assert "metadata.json: is not readable JSON" in _read_error(mc2p.read_trial, trial_folder)


@pytest.mark.parametrize("content", ["[]", "null", "0", '""'])
def test_metadata_that_is_not_a_json_object(trial_folder, content):
  (trial_folder / "metadata.json").write_text(content)
  # Falsy JSON must not pass for "no settings".
  assert "metadata.json: must hold a JSON object of settings" in _read_error(
      mc2p.read_trial, trial_folder)


def test_a_bout_row_with_missing_fields_is_reported_with_its_line(trial_folder):
  # A short row has no behaviour (None); with an unknown label beside it, sorting the names
  # used to crash the whole read with a TypeError naming no file.
  (trial_folder / "behaviour_labels.csv").write_text(
      "start_frame,end_frame,behaviour\n0,5,walkin\n5,9\n")
  with pytest.raises(errors.DatasetReadError) as error:
    readers.read_recordings(trial_folder.parent)
  message = str(error.value)
  assert "1 of 1 trial(s) could not be read" in message
  assert (f"{trial_folder}: behaviour_labels.csv: line 3: no value for column(s) "
          "['behaviour']") in message


def test_errors_of_a_multi_trial_bout_table_give_file_lines(trial_folder):
  (trial_folder / "behaviour_labels.csv").write_text(
      "fly,trial,start_frame,end_frame,behaviour\n"
      f"{ANIMAL},2,0,50,resting\n"
      "\n"
      f"200901_G23xU1_Fly2,1,30,50,resting\n"
      f"{ANIMAL},1,0,20,walking\n"
      f"{ANIMAL},1,10,30,resting\n")
  message = _read_error(mc2p.read_trial, trial_folder)
  # Lines of the file (blank line included), not positions among this trial's rows.
  assert "behaviour_labels.csv: line 6: bout [10, 30) overlaps an earlier bout" in message


def test_files_with_a_byte_order_mark_are_read(trial_folder):
  rec = _recording()
  csv_path = trial_folder / "behaviour_labels.csv"
  # Excel writes UTF-8 with a byte-order mark, which must not join the first header.
  csv_path.write_text(csv_path.read_text(), encoding="utf-8-sig")
  np.testing.assert_array_equal(mc2p.read_trial(trial_folder).labels, rec.labels)
  csv_path.unlink()
  file_names = list(reversed(recording_lib.MC2P_CLASS_NAMES))
  (trial_folder / "class_names.txt").write_text("\n".join(file_names) + "\n",
                                                encoding="utf-8-sig")
  file_labels = np.where(rec.labels >= 0, len(file_names) - 1 - rec.labels, -1)
  np.save(trial_folder / "labels.npy", file_labels.astype(np.int16))
  np.testing.assert_array_equal(mc2p.read_trial(trial_folder).labels, rec.labels)


def test_an_unannotated_trial_without_class_names_takes_the_others_vocabulary(tmp_path):
  names = ("still", "run", "groom_a", "groom_b", "groom_c")
  mc2p_writer.write_trial(_recording(trial_id="001", class_names=names), tmp_path)
  folder = mc2p_writer.write_trial(_recording(trial_id="002", class_names=names), tmp_path)
  (folder / "behaviour_labels.csv").unlink()
  metadata = json.loads((folder / "metadata.json").read_text())
  del metadata["class_names"]
  (folder / "metadata.json").write_text(json.dumps(metadata))
  for class_names in (None, names):
    read = mc2p.read_directory(tmp_path, class_names=class_names)
    assert [r.class_names for r in read] == [names, names]
    assert (read[1].labels == -1).all()


def test_many_trials_with_two_bad_ones_are_all_reported_in_one_error(tmp_path):
  folders = [mc2p_writer.write_trial(_recording(trial_id=f"00{i}", seed=i), tmp_path)
             for i in range(4)]
  np.save(folders[1] / "sync_indices.npy", np.zeros(3, np.int64))
  (folders[3] / "pose_result.pkl").write_bytes(b"")
  with pytest.raises(errors.DatasetReadError) as error:
    readers.read_recordings(tmp_path, layout="mc2p")
  message = str(error.value)
  assert "2 of 4 trial(s) could not be read" in message
  assert f"{folders[1]}: sync_indices.npy: sync must have shape" in message
  assert f"{folders[3]}: pose_result.pkl: is not a readable DeepFly3D pickle" in message
  assert sorted(error.value.trial_errors) == [str(folders[1]), str(folders[3])]
  assert isinstance(error.value, recording_lib.RecordingError)


def test_trials_that_disagree_on_the_image_size(tmp_path):
  mc2p_writer.write_trial(_recording(trial_id="001"), tmp_path)
  other = _recording(trial_id="002",
                     neural_images=np.zeros((NUM_NEURAL, 8, 8), np.float32))
  mc2p_writer.write_trial(other, tmp_path)
  message = _read_error(mc2p.read_directory, tmp_path, error_type=errors.DatasetReadError)
  assert "recordings disagree on the neural image size" in message


# ----------------------------------------------------------------------------------------
# Bad input, per-trial files.
# ----------------------------------------------------------------------------------------


def test_duplicate_animal_and_trial_across_files(tmp_path):
  trial_files.write_trial_file(_recording(), tmp_path / "a.npz")
  trial_files.write_trial_file(_recording(seed=1), tmp_path / "b.h5")
  message = _read_error(readers.read_recordings, tmp_path, error_type=errors.DatasetReadError)
  assert f"duplicate (animal, trial) ('{ANIMAL}', '001')" in message
  assert str(tmp_path / "a.npz") in message and str(tmp_path / "b.h5") in message


def _npz(path, **arrays):
  rng = np.random.default_rng(0)
  contents = dict(animal_id="fly", trial_id="1", behaviour=rng.normal(size=(20, 38, 3)),
                  sync=np.arange(20) // 5, roi_traces=rng.normal(size=(4, 3)))
  contents.update(arrays)
  np.savez(path, **{k: v for k, v in contents.items() if v is not None})
  return path


def test_trial_file_missing_required_keys(tmp_path):
  path = _npz(tmp_path / "t.npz", animal_id=None, sync=None, behaviour=None)
  message = _read_error(trial_files.read_trial_file, path)
  assert str(path) in message
  assert "missing required key 'animal_id'" in message
  assert "missing required key 'behaviour' (or its alias 'pose')" in message
  assert "missing key 'sync' (or both 'behaviour_timestamps' and 'neural_timestamps'" in message


def test_trial_file_non_numeric_values_and_wrong_shapes(tmp_path):
  path = _npz(tmp_path / "t.npz", behaviour=np.array(["a", "b"]), labels=np.zeros(20))
  message = _read_error(trial_files.read_trial_file, path)
  assert "key 'behaviour' must hold numbers, got dtype <U1" in message
  assert "key 'labels' must hold integer class indices, got dtype float64" in message
  path = _npz(tmp_path / "u.npz", pose=np.zeros((20, 37, 3)), behaviour=None)
  assert "key 'pose': behaviour must have shape (T_b, 38, 3), got (20, 37, 3)" in _read_error(
      trial_files.read_trial_file, path)


def test_trial_file_lengths_and_sync_problems_name_the_file(tmp_path):
  path = _npz(tmp_path / "t.npz", sync=np.arange(20)[::-1] // 5, labels=np.zeros(19, np.int32))
  message = _read_error(trial_files.read_trial_file, path)
  assert str(path) in message and "sync decreases at behaviour frame 5" in message
  assert "labels must have shape (20,) like behaviour, got (19,)" in message
  path = _npz(tmp_path / "u.npz", sync=np.arange(20))
  assert "sync indices must lie in [0, 4)" in _read_error(trial_files.read_trial_file, path)


def test_trial_file_unknown_class_name_in_the_vocabulary(tmp_path):
  path = _npz(tmp_path / "t.npz", class_names=np.array(["walking", "flying"]),
              labels=np.zeros(20, np.int32))
  message = _read_error(readers.read_recordings, tmp_path,
                        class_names=recording_lib.MC2P_CLASS_NAMES,
                        error_type=errors.DatasetReadError)
  assert str(path) in message and "unknown behaviour label(s) ['flying']" in message


def test_unreadable_trial_files(tmp_path):
  (tmp_path / "a.npz").write_bytes(b"garbage")
  (tmp_path / "b.h5").write_bytes(b"garbage")
  np.savez(tmp_path / "c.npz", animal_id="x", trial_id="1",
           behaviour=np.array([{"x": 1}], dtype=object))
  whole = _npz(tmp_path / "d.npz", trial_id="2").read_bytes()
  (tmp_path / "d.npz").write_bytes(whole[:len(whole) // 2])  # truncated
  with open(tmp_path / "e.npz", "wb") as f:
    np.save(f, np.zeros((20, 38, 3)))  # a lone .npy array under an .npz name
  _npz(tmp_path / "good.npz", trial_id="3")
  with pytest.raises(errors.DatasetReadError) as error:
    trial_files.read_trial_files(tmp_path)
  message = str(error.value)
  assert "5 of 6 trial(s) could not be read" in message
  assert f"{tmp_path / 'a.npz'}: is not a readable .npz file" in message
  assert f"{tmp_path / 'b.h5'}: is not a readable HDF5 file" in message
  assert f"{tmp_path / 'c.npz'}: key 'behaviour' cannot be read" in message
  assert f"{tmp_path / 'd.npz'}: is not a readable .npz file (BadZipFile" in message
  assert f"{tmp_path / 'e.npz'}: is a single .npy array, not an .npz archive" in message


def test_a_trial_file_without_class_names_or_labels_takes_the_others_vocabulary(tmp_path):
  names = ("stand", "forward")
  labelled = _npz(tmp_path / "a.npz", class_names=np.array(names),
                  labels=np.arange(20, dtype=np.int32) % 3 - 1)
  unannotated = _npz(tmp_path / "b.npz", trial_id="2")
  for class_names in (None, names):
    read = trial_files.read_trial_files(tmp_path, class_names=class_names)
    assert [r.class_names for r in read] == [names, names]
    assert (read[1].labels == -1).all()
  np.testing.assert_array_equal(trial_files.read_trial_file(labelled).labels,
                                np.arange(20) % 3 - 1)
  # Alone, it has no other vocabulary to take than the one imposed, or the default.
  assert trial_files.read_trial_file(unannotated, class_names=names).class_names == names
  assert trial_files.read_trial_file(unannotated).class_names == (
      recording_lib.MC2P_CLASS_NAMES)


