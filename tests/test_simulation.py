"""Tests of the multi-animal recording simulator (`nar.simulation`, `data_prep.simulate`)."""

import dataclasses
import json
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy import signal
import threadpoolctl
from sklearn import exceptions as sklearn_exceptions
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from data_prep import default_dataset
from data_prep import mc2p
from data_prep import readers
from nar import simulation
from nar.data import keypoints
from nar.data import recording as recording_lib
from nar.data import windows
from nar.simulation import actions
from nar.simulation import locomotion
from nar.simulation import pose_imaging
from nar.simulation import reference

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
RESTING = recording_lib.MC2P_CLASS_NAMES.index("resting")
WALKING = recording_lib.MC2P_CLASS_NAMES.index("walking")
NUM_EVALUATED_CLASSES = len(recording_lib.MC2P_CLASS_NAMES) - 1

# Enough data per animal for a within-animal probe trained on two trials of 40 s.
GAP_CONFIG = simulation.SimulatorConfig(num_animals=4, trials_per_animal=3, trial_seconds=40.0,
                                        image_size=16)
TINY_CONFIG = simulation.SimulatorConfig(num_animals=2, trials_per_animal=2, trial_seconds=4.0,
                                         image_size=16)
SPEC = windows.WindowSpec(pose_frames=32, pose_stride=3, neural_frames=16)


@pytest.fixture(scope="module")
def dataset():
  return simulation.simulate_dataset(GAP_CONFIG, seed=0)


def _assert_same_recordings(first, second):
  assert len(first) == len(second)
  for a, b in zip(first, second):
    assert (a.animal_id, a.trial_id) == (b.animal_id, b.trial_id)
    for name in ("behaviour", "sync", "labels", "neural_images", "roi_traces",
                 "neural_timestamps", "rest"):
      np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_recordings_are_valid_with_mc2p_ids_shapes_and_dtypes(dataset):
  recs = dataset.recordings
  recording_lib.check_recording_set(recs)
  assert len(recs) == GAP_CONFIG.num_animals * GAP_CONFIG.trials_per_animal
  assert [r.trial_id for r in recs[:3]] == ["001", "002", "003"]
  num_behaviour = int(GAP_CONFIG.trial_seconds * GAP_CONFIG.fps_behaviour)
  for rec in recs:
    folder = mc2p.TRIAL_FOLDER_PATTERN.match(f"{rec.animal_id}_{rec.trial_id}")
    assert folder and folder["genotype"] == "SimG23xU1", rec.animal_id
    assert rec.behaviour.shape == (num_behaviour, keypoints.NUM_KEYPOINTS, 3)
    assert rec.behaviour.dtype == np.float32 and np.isfinite(rec.behaviour).all()
    assert rec.sync.dtype == np.int64 and rec.labels.dtype == np.int32
    assert rec.neural_images.dtype == np.float32 and rec.roi_traces.dtype == np.float32
    assert rec.neural_images.shape[1:] == (16, 16)
    num_neural = rec.neural_images.shape[0]
    assert abs(num_neural - GAP_CONFIG.trial_seconds * 16.0) < 0.1 * GAP_CONFIG.trial_seconds * 16
    assert rec.roi_traces.shape[0] == num_neural
    assert rec.rest.dtype == np.bool_ and rec.rest.shape == (num_behaviour,)
    assert rec.fps_behaviour == 100.0 and abs(rec.fps_neural - 16.0) < 1.6
    assert (rec.labels == recording_lib.UNLABELLED).any(), "real annotations leave gaps"


def test_sync_maps_every_behaviour_frame_to_the_last_neural_frame_started(dataset):
  for rec in dataset.recordings:
    times = np.arange(rec.num_behaviour_frames) / rec.fps_behaviour
    started = rec.neural_timestamps[rec.sync]
    after_first = times >= rec.neural_timestamps[0]
    assert np.all(started[after_first] <= times[after_first] + 1e-9)
    following = np.append(rec.neural_timestamps, np.inf)[rec.sync + 1]
    assert np.all(following > times)
    # Many behaviour frames per neural frame, and the frame intervals jitter.
    assert 5 <= np.bincount(rec.sync).mean() <= 7
    assert np.diff(rec.neural_timestamps).std() > 0


def test_simulation_is_deterministic_for_a_seed_and_differs_between_seeds():
  first = simulation.simulate_dataset(TINY_CONFIG, seed=3).recordings
  _assert_same_recordings(first, simulation.simulate_dataset(TINY_CONFIG, seed=3).recordings)
  other = simulation.simulate_dataset(TINY_CONFIG, seed=4).recordings
  assert not np.allclose(first[0].behaviour, other[0].behaviour)
  assert not np.allclose(first[0].neural_images[:10], other[0].neural_images[:10])


def test_an_animal_does_not_depend_on_how_many_animals_or_trials_are_simulated():
  small = dataclasses.replace(TINY_CONFIG, num_animals=1, trials_per_animal=1)
  alone = simulation.simulate_dataset(small, seed=5).recordings
  among_others = simulation.simulate_dataset(TINY_CONFIG, seed=5).recordings
  _assert_same_recordings(alone, among_others[:1])


def test_each_config_picks_the_simulator_of_its_preset():
  assert isinstance(simulation.simulator_for(TINY_CONFIG), pose_imaging.PoseImagingSimulator)
  loco = simulation.simulator_for(simulation.LocomotionConfig(num_animals=1))
  assert isinstance(loco, locomotion.LocomotionSimulator) and loco.config.num_animals == 1
  assert set(simulation.SIMULATORS) == set(simulation.PRESETS)
  with pytest.raises(TypeError, match="not a simulator config: dict"):
    simulation.simulate_dataset({"num_animals": 1})


def test_a_bout_chain_fills_the_trial_in_the_order_of_its_transitions():
  alternate = np.array([[0.0, 1.0], [1.0, 0.0]])
  start, end, label = actions.sample_bout_chain(
      1000, 100.0, np.random.default_rng(0), first_label_probability=np.array([1.0, 0.0]),
      transition=alternate, bout_seconds=lambda label, rng: 0.5 + 0.5 * label,
      min_first_seconds=0.2)
  np.testing.assert_array_equal(label, np.arange(len(label)) % 2)
  # Contiguous without gaps; the recording starts within the first bout.
  np.testing.assert_array_equal(start[1:], end[:-1])
  assert start[0] == 0 and end[-1] == 1000 and 20 <= end[0] <= 50
  np.testing.assert_array_equal((end - start)[1:-1], np.where(label[1:-1] == 0, 50, 100))
  gapped = actions.sample_bout_chain(
      1000, 100.0, np.random.default_rng(0), first_label_probability=np.array([1.0, 0.0]),
      transition=alternate, bout_seconds=lambda label, rng: 0.5, gap_frames=lambda rng: 7)
  np.testing.assert_array_equal(gapped[0][1:] - gapped[1][:-1], 7)


def test_roi_counts_differ_between_animals_within_the_configured_range(dataset):
  counts = {}
  for rec in dataset.recordings:
    counts.setdefault(rec.animal_id, set()).add(rec.roi_traces.shape[1])
  assert all(len(c) == 1 for c in counts.values()), "an animal keeps its cells across trials"
  counts = [c.pop() for c in counts.values()]
  assert len(set(counts)) > 1
  assert all(GAP_CONFIG.min_visible_cells <= c <= GAP_CONFIG.max_visible_cells for c in counts)


@pytest.mark.parametrize("class_balance", ["real", 0.75])
def test_class_frequencies_follow_the_configured_distribution(class_balance):
  config = simulation.SimulatorConfig(class_balance=class_balance)
  model = actions.balanced_bout_model(config.class_balance_exponent(), config.max_bout_seconds,
                                      config.max_gap_seconds)
  start, end, label = model.sample_bouts(4 * 3600 * 100, 100.0, np.random.default_rng(0))
  sampled = np.bincount(label, weights=end - start, minlength=7)
  sampled /= sampled.sum()
  np.testing.assert_allclose(sampled, model.frame_fractions(), atol=0.03)
  if class_balance == "real":
    np.testing.assert_allclose(sampled, actions.real_frame_fractions(), atol=0.03)
    assert sampled[RESTING] > 0.5 and sampled[WALKING] > 0.25
    assert np.all(sampled[2:] < 0.05)
  else:
    evaluated = np.delete(sampled, RESTING)
    assert np.all(evaluated >= 0.08), evaluated


def test_each_animal_has_a_repertoire_of_its_own_and_the_rest_is_unchanged():
  common = actions.balanced_bout_model(0.75, 10.0, 2.0)
  fractions = [pose_imaging.animal_bout_model(common, 1.0, np.random.default_rng(seed))
               .frame_fractions() for seed in range(2)]
  # Each class's share moves by a factor of exp(N(0, 1)): far from the common model, and
  # differently for each animal.
  for own in fractions:
    assert np.max(np.abs(np.log(own / common.frame_fractions()))) > 0.3
  assert np.max(np.abs(np.log(fractions[0] / fractions[1]))) > 0.3
  assert pose_imaging.animal_bout_model(common, 0.0, np.random.default_rng(0)) is common
  # Only the behaviour sequences change: the animals' bodies and cells are the same.
  varied = simulation.simulate_dataset(dataclasses.replace(TINY_CONFIG, repertoire_std=1.0),
                                       seed=3)
  plain = simulation.simulate_dataset(TINY_CONFIG, seed=3)
  assert varied.ground_truth["animals"].keys() == plain.ground_truth["animals"].keys()
  for animal, parameters in plain.ground_truth["animals"].items():
    for name, value in parameters.items():
      if name != "target_frame_fractions":
        np.testing.assert_array_equal(varied.ground_truth["animals"][animal][name], value)
  assert not all(np.array_equal(a.labels, b.labels)
                 for a, b in zip(varied.recordings, plain.recordings))
  with pytest.raises(ValueError, match="repertoire_std must be >= 0"):
    simulation.SimulatorConfig(repertoire_std=-0.1)


def test_bout_durations_are_like_the_real_annotations():
  model = actions.balanced_bout_model(0.0, max_bout_seconds=10.0, max_gap_seconds=2.0)
  start, end, label = model.sample_bouts(4 * 3600 * 100, 100.0, np.random.default_rng(1))
  real = reference.behaviour_bouts()
  real_length = real["end"] - real["start"]
  for c in range(7):
    simulated = np.median((end - start)[label == c])
    observed = np.median(real_length[real["label"] == c])
    assert observed / 1.6 < simulated < observed * 1.6, (c, simulated, observed)
  assert (end - start).max() <= 10.0 * 100 + 1
  gaps = start[1:] - end[:-1]
  assert 0.03 < np.mean(gaps == 0) < 0.1 and np.median(gaps) < 50


def test_every_evaluated_class_appears_in_the_dataset(dataset):
  labels = np.concatenate([r.labels for r in dataset.recordings])
  counts = np.bincount(labels[labels >= 0], minlength=7)
  assert np.all(counts[1:] > 0.05 * counts.sum()), counts


def test_walking_shows_a_periodic_gait_at_the_animals_step_frequency(dataset):
  leg = keypoints.LEGS.index("LM")
  checked = 0
  for animal_id, parameters in dataset.ground_truth["animals"].items():
    spectra = []
    for rec in (r for r in dataset.recordings if r.animal_id == animal_id):
      truth = dataset.ground_truth["recordings"][f"{rec.animal_id}_{rec.trial_id}"]
      walking = truth["action_weights"][:, WALKING] > 0.99
      tip = keypoints.leg_relative_pose(rec.pose).reshape(-1, 6, 5, 3)[:, leg, 4, 0]
      edges = np.flatnonzero(np.diff(np.r_[0, walking.astype(int), 0]))
      for a, b in zip(edges[::2], edges[1::2]):
        if b - a >= 128:
          frequencies, power = signal.welch(tip[a:b], fs=100.0, nperseg=128, nfft=512)
          spectra.append(power * (b - a))
    if not spectra:
      continue
    spectrum = np.sum(spectra, axis=0)
    peak = frequencies[np.argmax(spectrum)]
    gait = parameters["gait_frequency_hz"]
    # Step frequency follows the walking speed, which varies around the animal's typical one.
    assert abs(peak - gait) < 0.15 * gait + 0.25, (animal_id, peak, gait)
    assert spectrum.max() > 10 * np.median(spectrum), "walking must be periodic"
    checked += 1
  assert checked >= 3


def test_zero_gap_knobs_give_identical_bodies():
  config = dataclasses.replace(
      TINY_CONFIG, morphology_scale_std=0.0, posture_offset_std=0.0, gait_frequency_std=0.0,
      grooming_rhythm_std=0.0, walking_speed_std=0.0, alignment_rotation_deg=0.0, layout_std=0.0)
  animals = list(simulation.simulate_dataset(config, seed=0).ground_truth["animals"].values())
  for name in ("segment_scale", "posture_tip_offset_mm", "gait_frequency_hz", "rhythm_scale",
               "alignment_rotation_deg", "connective_centre_fov", "connective_scale"):
    np.testing.assert_allclose(animals[0][name], animals[1][name], err_msg=name)


def test_ground_truth_is_saved_as_npz_and_json(dataset, tmp_path):
  path = dataset.save_ground_truth(tmp_path / "ground_truth.npz")
  with np.load(path) as saved:
    rec = dataset.recordings[0]
    key = f"recordings/{rec.animal_id}_{rec.trial_id}"
    assert saved[f"{key}/actions"].shape == (rec.num_behaviour_frames,)
    assert saved[f"{key}/firing_rates"].shape == rec.roi_traces.shape
    assert saved[f"animals/{rec.animal_id}/cell_type"].shape == (rec.roi_traces.shape[1],)
    assert list(saved["class_names"]) == list(recording_lib.MC2P_CLASS_NAMES)
  scalars = json.loads(path.with_suffix(".json").read_text())
  assert scalars["seed"] == 0
  assert scalars["animals"][rec.animal_id]["num_cells"] == rec.roi_traces.shape[1]


def test_cli_writes_the_mc2p_layout_that_reads_back(tmp_path):
  out_dir = tmp_path / "sim"
  # The entry point runs in its own process, as from the command line (its absl flags
  # stay out of this one).
  command = [sys.executable, "-m", "data_prep.simulate", f"--out_dir={out_dir}", "--seed=2",
             f"--num_animals={TINY_CONFIG.num_animals}",
             f"--trials_per_animal={TINY_CONFIG.trials_per_animal}",
             f"--trial_seconds={TINY_CONFIG.trial_seconds}",
             f"--image_size={TINY_CONFIG.image_size}"]
  done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr
  assert "2 animals x 2 trials" in done.stdout
  assert (out_dir / "ground_truth.npz").exists() and (out_dir / "ground_truth.json").exists()
  record = json.loads((out_dir / "simulation.json").read_text())
  settings = dataclasses.asdict(TINY_CONFIG)
  for field in default_dataset.SIMULATOR_FIELDS_ADDED_LATER:
    settings.pop(field, None)  # left out at its default (fields of other presets too)
  assert record == json.loads(json.dumps({"seed": 2, "config": settings}, default=str))
  simulated = simulation.simulate_dataset(TINY_CONFIG, seed=2)
  read = readers.read_recordings(out_dir, layout="mc2p")
  by_name = {(r.animal_id, r.trial_id): r for r in read}
  for rec in simulated.recordings:
    back = by_name[(rec.animal_id, rec.trial_id)]
    np.testing.assert_array_equal(back.labels, rec.labels)
    np.testing.assert_array_equal(back.sync, rec.sync)
    np.testing.assert_allclose(back.neural_images, rec.neural_images)
    np.testing.assert_allclose(back.behaviour, rec.behaviour)


# ------------------------------------------------------------------------------------------
# The domain gap, as in the "Neural (linear) raw" row of the paper.
# ------------------------------------------------------------------------------------------


def _evaluation_windows(dataset):
  """Windows of the 6 evaluated classes: time-averaged raw ΔF/F images and pose."""
  rows = []
  for rec in dataset.recordings:
    centres = windows.valid_centres(rec.sync, rec.num_neural_frames, SPEC)
    centres = windows.select_centres(centres, rec.labels, drop_unlabelled=True,
                                     drop_classes=[RESTING])
    centres = windows.tile_centres(centres, hop=10)
    cut = windows.cut_recording_windows(rec, centres, SPEC)
    rows.append({
        "animal": rec.animal_id,
        "trial": rec.trial_id,
        "centre": centres,
        "neural": cut["neural_images"].mean(axis=1).reshape(len(centres), -1),
        "pose": cut["pose"][:, ::4].reshape(len(centres), -1),
        "label": cut["label"],
    })
  return rows


def _probe_accuracy(train_x, train_y, test_x, test_y):
  scaler = StandardScaler().fit(train_x)
  # One BLAS thread: these small problems slow down by 10x when threads contend for cores
  # (e.g. under pytest-xdist).
  with warnings.catch_warnings(), threadpoolctl.threadpool_limits(limits=1):
    warnings.simplefilter("ignore", sklearn_exceptions.ConvergenceWarning)
    probe = LogisticRegression(max_iter=2000).fit(scaler.transform(train_x), train_y)
  return float(np.mean(probe.predict(scaler.transform(test_x)) == test_y))


def _stack(rows, key, keep=None):
  return np.concatenate([row[key] if keep is None else row[key][k] for row, k in
                         zip(rows, keep or [None] * len(rows))])


@pytest.fixture(scope="module")
def gap_accuracies(dataset):
  """Linear probe accuracies on raw neural (and pose) windows."""
  rows = _evaluation_windows(dataset)
  animals = sorted({row["animal"] for row in rows})
  for row in rows:
    row["animal_index"] = np.full(len(row["label"]), animals.index(row["animal"]))

  # Animal identity on held-out 5 s time blocks (alternating), away from block borders so
  # that no frame is shared between a training and a test window.
  block = [row["centre"] // 500 % 2 for row in rows]
  inner = [np.minimum(row["centre"] % 500, 500 - row["centre"] % 500) >= 60 for row in rows]
  train = [(b == 0) & i for b, i in zip(block, inner)]
  test = [(b == 1) & i for b, i in zip(block, inner)]
  identity = _probe_accuracy(_stack(rows, "neural", train), _stack(rows, "animal_index", train),
                             _stack(rows, "neural", test), _stack(rows, "animal_index", test))

  # Actions within an animal: train on its other trials, test on one.
  within = []
  for animal in animals:
    own = [row for row in rows if row["animal"] == animal]
    for held in own:
      others = [row for row in own if row is not held]
      within.append(_probe_accuracy(_stack(others, "neural"), _stack(others, "label"),
                                    held["neural"], held["label"]))

  # Actions on held-out animals: train on the other animals.
  held_out, pose_transfer = [], []
  for animal in animals:
    train_rows = [row for row in rows if row["animal"] != animal]
    test_rows = [row for row in rows if row["animal"] == animal]
    for key, results in (("neural", held_out), ("pose", pose_transfer)):
      results.append(_probe_accuracy(_stack(train_rows, key), _stack(train_rows, "label"),
                                     _stack(test_rows, key), _stack(test_rows, "label")))
  return {"identity": identity, "within": float(np.mean(within)),
          "held_out": float(np.mean(held_out)), "pose_transfer": float(np.mean(pose_transfer)),
          "num_animals": len(animals)}


def test_raw_neural_activity_identifies_the_animal(gap_accuracies):
  assert gap_accuracies["identity"] > 0.9, gap_accuracies


def test_raw_neural_activity_recognises_actions_within_an_animal(gap_accuracies):
  chance = 1.0 / NUM_EVALUATED_CLASSES
  assert gap_accuracies["within"] > 2 * chance, gap_accuracies


def test_raw_neural_activity_does_not_transfer_to_held_out_animals(gap_accuracies):
  chance = 1.0 / NUM_EVALUATED_CLASSES
  assert gap_accuracies["held_out"] < chance + 0.15, gap_accuracies
  assert gap_accuracies["held_out"] < gap_accuracies["within"] - 0.15, gap_accuracies


def test_pose_transfers_to_held_out_animals(gap_accuracies):
  chance = 1.0 / NUM_EVALUATED_CLASSES
  assert gap_accuracies["pose_transfer"] > 3 * chance, gap_accuracies
  assert gap_accuracies["pose_transfer"] > gap_accuracies["held_out"] + 0.3, gap_accuracies


def _tuning_rows(parameters) -> set:
  return {tuple(np.round(row, 9)) for row in parameters["action_tuning"]}


def test_identified_cells_are_shared_by_the_animals_and_each_shows_a_subset():
  config = dataclasses.replace(TINY_CONFIG, num_animals=3, trials_per_animal=1,
                               min_visible_cells=8, max_visible_cells=10, identified_cells=12)
  animals = list(simulation.simulate_dataset(config, seed=0).ground_truth["animals"].values())
  shown = [_tuning_rows(parameters) for parameters in animals]
  assert len(set().union(*shown)) <= 12  # every animal draws from the same 12 cells
  assert all(8 <= len(rows) <= 10 for rows in shown)
  # Two subsets of at least 8 of the 12 cells share at least 4.
  assert all(len(shown[i] & shown[j]) >= 4 for i in range(3) for j in range(i))
  # Gains stay the animal's own.
  assert not np.allclose(animals[0]["gain"][:8], animals[1]["gain"][:8])
  # Without identified cells, animals share no cell's tuning.
  independent = simulation.simulate_dataset(dataclasses.replace(config, identified_cells=0),
                                            seed=0).ground_truth["animals"].values()
  first, second, _ = [_tuning_rows(parameters) for parameters in independent]
  assert not first & second


def test_identified_cells_must_cover_the_visible_cells():
  with pytest.raises(ValueError, match="identified_cells"):
    simulation.SimulatorConfig(max_visible_cells=40, identified_cells=30)


@pytest.mark.parametrize("field,value", [("identified_cells", 40), ("repertoire_std", 0.5)])
def test_raw_folders_simulated_before_a_field_existed_still_match(tmp_path, field, value):
  raw = tmp_path / "raw"
  default_dataset.write_simulated_dataset(TINY_CONFIG, 0, raw)
  record = json.loads((raw / default_dataset.SIMULATION_RECORD).read_text())
  assert field not in record["config"]  # as the record was before the field
  with pytest.raises(ValueError, match=f"differing: {field}"):
    default_dataset.ensure_dataset(dataclasses.replace(TINY_CONFIG, **{field: value}),
                                   data_dir=tmp_path / "tfds", raw_dir=raw)
