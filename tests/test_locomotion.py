"""The locomotion preset: ball velocities and ROI traces, a small behavioural and a large
neural difference between animals."""

import dataclasses
import hashlib
import json
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
import threadpoolctl
from sklearn import exceptions as sklearn_exceptions
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from data_prep import default_dataset
from data_prep import readers
from nar import simulation
from nar.data import recording as recording_lib
from nar.data import shards
from nar.data import windows
from nar.simulation import locomotion

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
GAP_CONFIG = simulation.LocomotionConfig(num_animals=4, trials_per_animal=3, trial_seconds=30.0)
TINY_CONFIG = simulation.LocomotionConfig(num_animals=3, trials_per_animal=2, trial_seconds=5.0)
OLD_TINY_TRIAL_DIGEST = "33e18157302e6413beb586f51a43c5ca2fd536be8f897f3c63fea8d372b2d5cd"
SPEC = windows.WindowSpec(pose_frames=32, pose_stride=3, neural_frames=16)


@pytest.fixture(scope="module")
def dataset():
  return simulation.simulate_dataset(GAP_CONFIG, seed=0)


def test_recordings_hold_three_named_velocities_and_roi_traces(dataset):
  recording_lib.check_recording_set(dataset.recordings)
  assert len(dataset.recordings) == 12
  for rec in dataset.recordings:
    assert rec.behaviour_format == "vector" and rec.behaviour_names == locomotion.BEHAVIOUR_NAMES
    assert rec.behaviour.shape == (3000, 3) and rec.behaviour.dtype == np.float32
    assert np.isfinite(rec.behaviour).all()
    assert rec.neural_images is None and rec.roi_traces.dtype == np.float32
    assert abs(rec.roi_traces.shape[0] - 30 * 16) < 0.1 * 30 * 16
    assert rec.class_names == ("stand", "forward", "turn_left", "turn_right")
    assert rec.labels.min() >= 0 and rec.fps_behaviour == 100.0


def test_every_action_occurs_and_sets_realistic_velocities(dataset):
  labels = np.concatenate([r.labels for r in dataset.recordings])
  velocity = np.concatenate([r.behaviour for r in dataset.recordings])
  assert np.all(np.bincount(labels, minlength=4) > 0.08 * len(labels))
  forward, _, turning = velocity.T
  assert -2 < np.percentile(forward, 1) and np.percentile(forward, 99) < 16
  assert np.abs(turning).max() < 250 and np.percentile(np.abs(turning), 99) > 80
  mean = lambda c, dim: velocity[labels == c, dim].mean()
  assert mean(locomotion.STAND, 0) < 1.5 < 6 < mean(locomotion.FORWARD, 0)
  assert mean(locomotion.TURN_LEFT, 2) > 60 and mean(locomotion.TURN_RIGHT, 2) < -60
  # Smooth: the ball does not jump between frames.
  assert np.percentile(np.abs(np.diff(forward)), 99) < 1.5


def test_roi_counts_differ_between_animals_and_stay_within_an_animal(dataset):
  counts = {}
  for rec in dataset.recordings:
    counts.setdefault(rec.animal_id, set()).add(rec.roi_traces.shape[1])
  assert all(len(c) == 1 for c in counts.values())
  counts = [c.pop() for c in counts.values()]
  assert len(set(counts)) > 1
  assert all(GAP_CONFIG.min_rois <= c <= GAP_CONFIG.max_rois for c in counts)


def test_simulation_is_deterministic_and_an_animal_does_not_depend_on_the_others():
  first = simulation.simulate_dataset(TINY_CONFIG, seed=3).recordings
  again = simulation.simulate_dataset(TINY_CONFIG, seed=3).recordings
  alone = simulation.simulate_dataset(dataclasses.replace(TINY_CONFIG, num_animals=1),
                                      seed=3).recordings
  other = simulation.simulate_dataset(TINY_CONFIG, seed=4).recordings
  for a, b in zip(first, again):
    for name in ("behaviour", "roi_traces", "labels", "sync", "neural_timestamps"):
      np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
  np.testing.assert_array_equal(alone[0].roi_traces, first[0].roi_traces)
  assert not np.allclose(first[0].behaviour, other[0].behaviour)


def test_bad_settings_are_refused():
  with pytest.raises(ValueError, match="max_rois .* < min_rois"):
    simulation.LocomotionConfig(min_rois=20, max_rois=10)
  with pytest.raises(ValueError, match="rows sum to 1, with a zero diagonal"):
    simulation.LocomotionConfig(transition=((1.0, 0, 0, 0),) * 4)
  with pytest.raises(ValueError, match="indicators must be drawn from"):
    simulation.LocomotionConfig(indicators=("jrgeco",))


def _probe_accuracy(train_rows, test_rows, key):
  x = np.concatenate([r[key] for r in train_rows])
  y = np.concatenate([r["label"] for r in train_rows])
  scaler = StandardScaler().fit(x)
  with warnings.catch_warnings(), threadpoolctl.threadpool_limits(limits=1):
    warnings.simplefilter("ignore", sklearn_exceptions.ConvergenceWarning)
    probe = LogisticRegression(max_iter=1000).fit(scaler.transform(x), y)
  test_x = np.concatenate([r[key] for r in test_rows])
  test_y = np.concatenate([r["label"] for r in test_rows])
  return float(np.mean(probe.predict(scaler.transform(test_x)) == test_y))


def test_roi_traces_recognise_actions_within_an_animal_but_do_not_transfer(dataset):
  max_rois = max(r.roi_traces.shape[1] for r in dataset.recordings)
  rows = []
  for rec in dataset.recordings:
    centres = windows.tile_centres(windows.valid_centres(rec.sync, rec.num_neural_frames, SPEC),
                                   hop=10)
    cut = windows.cut_recording_windows(rec, centres, SPEC)
    traces = cut["roi_traces"].mean(axis=1)  # time-averaged, padded to pool the animals
    rows.append({"animal": rec.animal_id, "label": cut["label"], "behaviour": cut["pose"].mean(1),
                 "neural": np.pad(traces, ((0, 0), (0, max_rois - traces.shape[1])))})
  within, across, behaviour_across = [], [], []
  for animal in sorted({r["animal"] for r in rows}):
    own = [r for r in rows if r["animal"] == animal]
    others = [r for r in rows if r["animal"] != animal]
    within += [_probe_accuracy([r for r in own if r is not held], [held], "neural")
               for held in own]
    across.append(_probe_accuracy(others, own, "neural"))
    behaviour_across.append(_probe_accuracy(others, own, "behaviour"))
  within, across = float(np.mean(within)), float(np.mean(across))
  chance = 0.25
  assert within > chance + 0.25, (within, across)
  assert across < within - 0.2 and across < chance + 0.15, (within, across)
  assert np.mean(behaviour_across) > 0.8, behaviour_across


def test_ensure_dataset_builds_the_locomotion_preset(tmp_path):
  path = default_dataset.ensure_dataset(TINY_CONFIG, seed=1, data_dir=tmp_path / "tfds",
                                        raw_dir=tmp_path / "raw")
  assert path.parent.name == "locomotion"
  assert (tmp_path / "raw" / default_dataset.TRIAL_FILES_FOLDER).is_dir()
  record = json.loads((tmp_path / "raw" / default_dataset.SIMULATION_RECORD).read_text())
  assert record["preset"] == "locomotion"
  opened = shards.open_dataset(path)
  assert opened.behaviour_spec.names == locomotion.BEHAVIOUR_NAMES
  simulated = simulation.simulate_dataset(TINY_CONFIG, seed=1)
  expected = {r.animal_id: r.roi_traces.shape[1] for r in simulated.recordings}
  assert opened.roi_counts == expected
  assert default_dataset.ensure_dataset(TINY_CONFIG, seed=1, data_dir=tmp_path / "tfds",
                                        raw_dir=tmp_path / "raw") == path
  with pytest.raises(ValueError, match="preset 'locomotion' takes a LocomotionConfig"):
    default_dataset.ensure_dataset(simulation.SimulatorConfig(), preset="locomotion",
                                   data_dir=tmp_path / "other")
  # Built shards are not reused for other simulator settings: the raw record tells.
  with pytest.raises(ValueError, match=r"other settings than asked for \(differing: seed\)"):
    default_dataset.ensure_dataset(TINY_CONFIG, seed=2, data_dir=tmp_path / "tfds",
                                   raw_dir=tmp_path / "raw")


def test_cli_writes_trial_files_that_read_back(tmp_path):
  out_dir = tmp_path / "ball"
  command = [sys.executable, "-m", "data_prep.simulate", "--preset=locomotion",
             f"--out_dir={out_dir}", "--seed=2", "--num_animals=2", "--trials_per_animal=1",
             "--trial_seconds=4", "--config.min_rois=5", "--config.indicators=gcamp6s,gcamp6f"]
  done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stderr
  assert "ROIs per animal" in done.stdout
  config = simulation.LocomotionConfig(num_animals=2, trials_per_animal=1, trial_seconds=4.0,
                                       min_rois=5, indicators=("gcamp6s", "gcamp6f"))
  simulated = simulation.simulate_dataset(config, seed=2).recordings
  read = readers.read_recordings(out_dir / default_dataset.TRIAL_FILES_FOLDER)
  for rec, back in zip(simulated, read):
    np.testing.assert_array_equal(back.behaviour, rec.behaviour)
    np.testing.assert_array_equal(back.roi_traces, rec.roi_traces)
    assert back.behaviour_names == rec.behaviour_names and back.class_names == rec.class_names
  done = subprocess.run(command[:4] + [f"--out_dir={tmp_path / 'x'}", "--image_size=8"],
                        cwd=REPO_ROOT, capture_output=True, text=True, check=False)
  assert done.returncode != 0 and "--image_size does not apply to the 'locomotion'" in (
      done.stdout + done.stderr)


def _trial(config, seed=0):
  """One trial of animal 0: the recording and its ground truth."""
  rng = np.random.default_rng(seed)
  animal = locomotion.sample_animal(0, config, rng)
  return locomotion.simulate_trial(animal, 0, config, rng)


def _neural_moving(rec):
  """`[T_n]` the share of a neural frame's behaviour frames in which the ball moves."""
  num_neural = len(rec.roi_traces)
  moving = np.bincount(rec.sync, weights=(~rec.rest).astype(np.float64), minlength=num_neural)
  return moving / np.maximum(np.bincount(rec.sync, minlength=num_neural), 1)


def test_the_shared_locomotion_drive_lifts_every_animal_s_mean_roi_while_moving():
  config = dataclasses.replace(GAP_CONFIG, trial_seconds=60.0)
  driven = dataclasses.replace(config, locomotion_drive=0.7)
  for seed in range(3):
    plain_rec, _ = _trial(config, seed)
    rec, _ = _trial(driven, seed)
    # Behaviour is drawn as without the drive; only the traces change.
    np.testing.assert_array_equal(rec.behaviour, plain_rec.behaviour)
    moving = _neural_moving(rec)
    driven_r = np.corrcoef(rec.roi_traces.mean(axis=1), moving)[0, 1]
    plain_r = np.corrcoef(plain_rec.roi_traces.mean(axis=1), moving)[0, 1]
    assert driven_r > 0.5 and driven_r > plain_r + 0.1, (seed, driven_r, plain_r)
    # Most ROIs, not a few, follow it: the same sign in every ROI.
    per_roi = [np.corrcoef(roi, moving)[0, 1] for roi in rec.roi_traces.T]
    assert np.mean(np.array(per_roi) > 0) > 0.8


def test_slow_roi_noise_keeps_the_noiseless_traces_and_is_correlated_in_time():
  white = dataclasses.replace(GAP_CONFIG, trial_seconds=60.0)
  slow = dataclasses.replace(white, roi_noise_seconds=1.0)
  white_rec, white_truth = _trial(white)
  rec, truth = _trial(slow)
  np.testing.assert_array_equal(truth["roi_dff"], white_truth["roi_dff"])

  def lag_one(rec, truth):
    noise = rec.roi_traces - truth["roi_dff"]
    return float(np.mean([np.corrcoef(n[1:], n[:-1])[0, 1] for n in noise.T]))

  assert abs(lag_one(white_rec, white_truth)) < 0.1
  # 1 s at ~16 Hz: exp(-1 / 16) ~ 0.94 between neighbouring frames.
  assert lag_one(rec, truth) > 0.85


def test_a_slow_roi_drift_changes_each_roi_s_level_over_the_trial_not_its_dynamics():
  still = dataclasses.replace(GAP_CONFIG, trial_seconds=120.0)
  drifting = dataclasses.replace(still, roi_drift_std=0.5, roi_drift_seconds=30.0)
  still_rec, still_truth = _trial(still)
  rec, truth = _trial(drifting)
  np.testing.assert_array_equal(truth["roi_dff"], still_truth["roi_dff"])
  ratio = np.abs(rec.roi_traces) / np.maximum(np.abs(still_rec.roi_traces), 1e-6)
  halves = np.array_split(np.log(np.maximum(ratio, 1e-6)), 2)
  # Each ROI's gain in the first half of the trial differs from the second's.
  assert np.median(np.abs(np.median(halves[0], 0) - np.median(halves[1], 0))) > 0.1


def test_the_new_fields_at_their_defaults_simulate_what_the_simulator_did_before():
  defaults = {name: value for name, value in default_dataset.SIMULATOR_FIELDS_ADDED_LATER.items()
              if hasattr(GAP_CONFIG, name)}
  assert {"locomotion_drive", "roi_noise_seconds", "roi_drift_std"} <= set(defaults)
  assert all(getattr(simulation.LocomotionConfig(), name) == value
             for name, value in defaults.items())
  # Digest of a first trial as the simulator drew it before these fields existed (rounded,
  # so that the last bits of a BLAS matmul do not count).
  rec, _ = _trial(TINY_CONFIG)
  rounded = [np.round(np.asarray(x, np.float64), 4).tobytes() for x in (rec.roi_traces,
                                                                         rec.behaviour)]
  assert hashlib.sha256(b"".join(rounded)).hexdigest() == OLD_TINY_TRIAL_DIGEST
