"""Trained runs read back (`nar.load_run`) and embedding any dataset with them (`nar.embed`)."""

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

import nar
from data_prep import trial_files
from nar import embedding as embed_lib
from nar import run as run_lib
from nar import simulation
from nar import train
from nar.data import builder as tfds_builder
from nar.data import shards
from nar.eval import features as features_lib
from synthetic_data import LOCOMOTION_DATASET_NAME
from test_per_animal_input import locomotion_config
from test_train import tiny_config

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def locomotion_run(locomotion_data_dir, tmp_path_factory):
  """A finished run with a per-animal input layer: 3 training animals, 1 held out (fitted)."""
  config = locomotion_config(locomotion_data_dir)
  workdir = tmp_path_factory.mktemp("locomotion_run")
  train.train_and_evaluate(config, str(workdir))
  return workdir


@pytest.fixture(scope="module")
def images_run(data_dir, tmp_path_factory):
  """A finished run with one shared encoder of neural images."""
  workdir = tmp_path_factory.mktemp("images_run")
  train.train_and_evaluate(tiny_config(data_dir), str(workdir))
  return workdir


def _locomotion_recordings(seed: int, rename: dict[str, str] | None = None, **config):
  settings = dict(num_animals=2, trials_per_animal=2, trial_seconds=8.0, min_rois=3,
                  max_rois=9)
  settings.update(config)
  recordings = simulation.simulate_dataset(simulation.LocomotionConfig(**settings),
                                           seed=seed).recordings
  rename = rename or {}
  return [dataclasses.replace(rec, animal_id=rename.get(rec.animal_id, rec.animal_id))
          for rec in recordings]


def _build(recordings, directory) -> shards.ShardedDataset:
  return shards.open_dataset(tfds_builder.build_dataset(recordings, str(directory)))


def _open_locomotion(data_dir) -> shards.ShardedDataset:
  return shards.open_dataset(data_dir, LOCOMOTION_DATASET_NAME)


def test_a_run_loads_back_from_its_folder_alone(locomotion_run):
  run = nar.load_run(locomotion_run)
  assert run.step == run.config.optim.num_train_steps == 8
  assert len(run.held_out_animals) == 1 and len(run.training_animals) == 3
  # The held-out animal's input layer was fitted after training and kept beside the run.
  assert set(run.input_layers) == set(run.held_out_animals)
  assert run.embeddable_animals().keys() == set(run.animals)
  assert run.pose_normalizer.feature_dim == 3 and run.neural_normalizer is not None


def test_embedding_the_training_dataset_gives_the_evaluated_features(locomotion_run,
                                                                      locomotion_data_dir,
                                                                      tmp_path):
  run = nar.load_run(locomotion_run)
  dataset = _open_locomotion(locomotion_data_dir)
  summary = nar.embed(run, dataset, out_dir=tmp_path, progress=False)
  assert summary["num_trials"] == len(dataset.trials) == len(summary["files"])
  table = features_lib.load_feature_table(locomotion_run / "features.npz")
  embedded = embed_lib.read_embeddings(tmp_path)
  trial_of = {(info["animal_id"], info["trial_id"]): t for t, info in enumerate(dataset.trials)}
  row_of = {(trial_of[(a, t)], int(c)): row for row, (a, t, c) in enumerate(zip(
      embedded["animal_id"], embedded["trial_id"], embedded["centre_frame"]))}
  rows = [row_of[(int(t), int(c))] for t, c in zip(table.trial, table.centre_frame)]
  assert len(rows) == len(table) > 0
  np.testing.assert_allclose(embedded["embeddings"][rows], table.features, rtol=1e-4,
                             atol=1e-5)
  np.testing.assert_array_equal(embedded["label"][rows], table.label)
  # Standardised per animal: every animal's embeddings centred, spread near 1, order kept.
  standardised = embed_lib.standardise_embeddings(embedded)
  for animal in np.unique(embedded["animal_id"]):
    own = standardised["embeddings"][embedded["animal_id"] == animal]
    np.testing.assert_allclose(own.mean(axis=0), 0.0, atol=1e-3)
    assert np.all(own.std(axis=0) <= 1.0) and np.median(own.std(axis=0)) > 0.5
  np.testing.assert_array_equal(standardised["centre_frame"], embedded["centre_frame"])


def test_every_valid_window_of_every_trial_is_embedded_labelled_or_not(images_run, data_dir,
                                                                       tmp_path):
  run = nar.load_run(images_run)
  dataset = shards.open_dataset(data_dir)
  summary = nar.embed(run, dataset, out_dir=tmp_path, hop=3, batch_size=7, progress=False)
  total = 0
  for name in summary["files"]:
    with np.load(tmp_path / name) as arrays:
      centre = arrays["centre_frame"]
      assert arrays["embeddings"].shape == (len(centre), run.config.model.features)
      assert np.all(np.diff(centre) == 3)  # every 3rd valid centre, in order
      info = next(i for i in dataset.trials if i["animal_id"] == str(arrays["animal_id"])
                  and i["trial_id"] == str(arrays["trial_id"]))
      np.testing.assert_allclose(arrays["timestamps"], centre / info["fps_behaviour"])
      assert np.isfinite(arrays["embeddings"]).all()
      start = int(dataset.behaviour_index.offsets[dataset.trials.index(info)])
      np.testing.assert_array_equal(arrays["behaviour"],
                                    dataset.behaviour_features[start + centre])
      assert len(arrays["behaviour_names"]) == arrays["behaviour"].shape[1] == 90
      total += len(centre)
  assert total == summary["num_windows"]
  written = json.loads((tmp_path / embed_lib.SUMMARY_FILE).read_text())
  assert written["num_windows"] == total and written["windows_per_second"] > 0


def test_a_new_animal_needs_its_input_layer_fitted_then_embeds_without_labels(
    locomotion_run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(locomotion_run, workdir)
  recordings = _locomotion_recordings(seed=5)
  names = sorted({rec.animal_id for rec in recordings})
  recordings = _locomotion_recordings(seed=5, rename={n: f"new_{n}" for n in names})
  # No labels at all: the fit and the embedding read none.
  recordings = [dataclasses.replace(rec, labels=np.full_like(rec.labels, -1))
                for rec in recordings]
  dataset = _build(recordings, tmp_path / "tfds")
  run = nar.load_run(workdir)
  with pytest.raises(embed_lib.EmbedInputError, match="adapt_steps"):
    nar.embed(run, dataset, out_dir=tmp_path / "out", progress=False)
  assert not (tmp_path / "out").exists()  # refused before anything was written
  summary = nar.embed(run, dataset, out_dir=tmp_path / "out", adapt_steps=5, progress=False)
  assert summary["adapted"]["animals"] == [f"new_{n}" for n in names]
  assert {f"new_{n}" for n in names} <= set(run_lib.read_input_layers(workdir))
  first = embed_lib.read_embeddings(tmp_path / "out")
  assert (first["label"] == -1).all()
  # Loaded again, the run embeds those animals with the kept layers, to the bit.
  again = nar.embed(nar.load_run(workdir), dataset, out_dir=tmp_path / "again",
                    progress=False)
  assert again["adapted"] is None
  np.testing.assert_array_equal(embed_lib.read_embeddings(tmp_path / "again")["embeddings"],
                                first["embeddings"])


def test_a_shared_encoder_embeds_an_animal_it_has_not_seen_directly(images_run, tmp_path):
  import synthetic_data  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(7)
  recordings = [dataclasses.replace(synthetic_data.recording(0, t, 600, rng),
                                    animal_id="200909_New_Fly9") for t in range(2)]
  dataset = _build(recordings, tmp_path / "tfds")
  summary = nar.embed(nar.load_run(images_run), dataset, out_dir=tmp_path / "out",
                      progress=False)
  assert summary["num_trials"] == 2 and summary["adapted"] is None


def test_load_run_refuses_folders_it_cannot_read_back(locomotion_run, data_dir, tmp_path):
  with pytest.raises(run_lib.RunLoadError, match="run.json"):
    nar.load_run(tmp_path)
  copy = tmp_path / "copy"
  shutil.copytree(locomotion_run, copy)
  with pytest.raises(run_lib.RunLoadError, match="trained on"):
    nar.load_run(copy, dataset=shards.open_dataset(data_dir))
  # A run that stopped before its last step.
  shutil.rmtree(copy / "checkpoints" / "8")
  with pytest.raises(run_lib.RunLoadError, match="stopped at step 6 of 8"):
    nar.load_run(copy)
  assert nar.load_run(copy, allow_unfinished=True).step == 6
  # A half-written checkpoint (Orbax's temporary folder) is not a checkpoint.
  for step in [p for p in (copy / "checkpoints").iterdir() if p.name.isdigit()]:
    step.rename(step.with_name(f"{step.name}.orbax-checkpoint-tmp-1"))
  with pytest.raises(run_lib.RunLoadError, match="no finished checkpoint"):
    nar.load_run(copy)


def test_a_damaged_checkpoint_is_an_error_naming_it(locomotion_run, tmp_path):
  copy = tmp_path / "copy"
  shutil.copytree(locomotion_run, copy)
  for path in (copy / "checkpoints" / "8" / "state").rglob("*"):
    if path.is_file() and path.name in ("_METADATA", "manifest.ocdbt"):
      path.write_bytes(path.read_bytes()[:10])
  with pytest.raises(run_lib.RunLoadError, match="checkpoints/8/state"):
    nar.load_run(copy)


def test_data_that_does_not_fit_the_run_is_refused_before_any_compute(
    locomotion_run, images_run, data_dir, locomotion_data_dir, tmp_path):
  locomotion = nar.load_run(locomotion_run)
  images = nar.load_run(images_run)
  # Behaviour of another format and dimension, and no ROI traces of the run's kind.
  with pytest.raises(embed_lib.EmbedInputError) as error:
    nar.embed(locomotion, shards.open_dataset(data_dir), out_dir=tmp_path / "a")
  assert "behaviour_format" in str(error.value) and "features per frame" in str(error.value)
  with pytest.raises(embed_lib.EmbedInputError, match="neural_images"):
    nar.embed(images, _open_locomotion(locomotion_data_dir), out_dir=tmp_path / "b")
  # A known animal whose trials now have another ROI count.
  animal = locomotion.training_animals[0]
  count = locomotion.embeddable_animals()[animal]
  recordings = [rec for rec in _locomotion_recordings(seed=0, num_animals=4)
                if rec.animal_id == animal]
  assert recordings
  rois = recordings[0].roi_traces
  changed = [dataclasses.replace(rec, roi_traces=np.concatenate(
      [rec.roi_traces, rec.roi_traces[:, :1]], axis=1)) for rec in recordings]
  assert changed[0].roi_traces.shape[1] == count + 1 == rois.shape[1] + 1
  dataset = _build(changed, tmp_path / "tfds")
  with pytest.raises(embed_lib.EmbedInputError, match=f"has {count + 1} ROIs"):
    nar.embed(locomotion, dataset, out_dir=tmp_path / "c", adapt_steps=5)
  assert not any((tmp_path / name).exists() for name in ("a", "b", "c"))


def _embed_cli(*args) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "experiments.embed", *args], cwd=REPO_ROOT,
                        capture_output=True, text=True, check=False,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_the_embed_command_builds_npz_trials_embeds_and_plots(locomotion_run, tmp_path):
  trials = tmp_path / "trials"
  trials.mkdir()
  for rec in _locomotion_recordings(seed=0, num_animals=4)[:3]:
    trial_files.write_trial_file(rec, trials / f"{rec.animal_id}_{rec.trial_id}.npz")
  result = _embed_cli(f"--workdir={locomotion_run}", f"--input={trials}",
                      f"--out={tmp_path / 'out'}", "--hop=2", "--plot")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "windows/s" in result.stdout and "plot:" in result.stdout
  assert (tmp_path / "out" / "embeddings.png").stat().st_size > 0
  assert len(list((tmp_path / "out").glob("*__*.npz"))) == 3


def test_the_embed_command_says_what_is_wrong_in_one_line(tmp_path):
  result = _embed_cli(f"--workdir={tmp_path}", f"--input={tmp_path}", f"--out={tmp_path}/o")
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith("error: ")
  assert "run.json" in result.stderr


def test_nwb_recordings_also_get_their_embeddings_as_an_nwb_processing_module(images_run,
                                                                              tmp_path):
  import pynwb  # pylint: disable=g-import-not-at-top
  import synthetic_data  # pylint: disable=g-import-not-at-top
  from data_prep import nwb  # pylint: disable=g-import-not-at-top
  from data_prep import nwb_writer  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  recordings = []
  for trial in range(2):
    rec = synthetic_data.recording(0, trial, 600, rng)
    rec = dataclasses.replace(rec, sync=trial_files.sync_from_timestamps(
        rec.behaviour_times(), rec.neural_times()))
    nwb_writer.write_nwb_file(rec, tmp_path / "nwb" / f"trial{trial}.nwb")
    recordings.append(rec)
  result = _embed_cli(f"--workdir={images_run}", f"--input={tmp_path / 'nwb'}",
                      f"--out={tmp_path / 'out'}", "--hop=5")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "wrote 2 NWB files of embeddings" in result.stdout
  for rec in recordings:
    stem = embed_lib.trial_file_name(rec.animal_id, rec.trial_id)[:-len(".npz")]
    with np.load(tmp_path / "out" / f"{stem}.npz") as arrays:
      embeddings, centres = arrays["embeddings"], arrays["centre_frame"]
    with pynwb.NWBHDF5IO(str(tmp_path / "out" / f"{stem}.nwb"), "r") as io:
      series = io.read().processing["nar"]["embeddings"]
      np.testing.assert_array_equal(series.data[:], embeddings)
      np.testing.assert_allclose(series.timestamps[:], rec.behaviour_times()[centres])


def test_embedding_on_eight_devices_equals_one_device(images_run, data_dir, tmp_path):
  script = f"""
import jax, nar
assert jax.device_count() == 8, jax.devices()
nar.embed(nar.load_run({str(images_run)!r}), {data_dir!r}, out_dir={str(tmp_path / 'eight')!r},
          hop=7, batch_size=20, progress=False)
"""
  result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=False,
                          env={**os.environ, "JAX_PLATFORMS": "cpu",
                               "XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert result.returncode == 0, result.stderr[-3000:]
  nar.embed(nar.load_run(images_run), data_dir, out_dir=tmp_path / "one", hop=7,
            batch_size=20, progress=False)
  eight = embed_lib.read_embeddings(tmp_path / "eight")
  one = embed_lib.read_embeddings(tmp_path / "one")
  np.testing.assert_array_equal(eight["centre_frame"], one["centre_frame"])
  np.testing.assert_allclose(eight["embeddings"], one["embeddings"], rtol=1e-5, atol=1e-6)
