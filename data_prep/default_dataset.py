"""The embedded default dataset: simulated recordings, written raw, then built into shards.

The default run goes through the same path as real data: the simulator writes the MC2P
folder layout, the MC2P reader reads it back, and the TFDS builder writes the shards. Each
stage is skipped when its output is already complete, so the first run pays for it once.

The "locomotion" preset (`nar.simulation.LocomotionConfig`: ball velocities and ROI traces)
goes the same way through the per-trial NPZ layout (`data_prep.trial_files`), since its
behaviour is not DeepFly3D pose.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil

from absl import logging
import tqdm

from data_prep import mc2p_writer
from data_prep import readers
from data_prep import trial_files
from nar import paths
from nar import simulation
from nar.data import builder as tfds_builder
from nar.data import shards

SIMULATION_RECORD = "simulation.json"
GROUND_TRUTH = "ground_truth.npz"
# Trial files go in their own folder: the trial-file reader takes every .npz it finds, and the
# ground truth is one.
TRIAL_FILES_FOLDER = "trials"


# Simulator fields added after the first datasets were simulated, with the value that
# simulates what the simulator did without them: at that value they stay out of the record,
# so that raw folders simulated before the field existed still match.
SIMULATOR_FIELDS_ADDED_LATER = {"identified_cells": 0, "repertoire_std": 0.0,
                                "unlabelled_bout_fraction": 0.0, "dff_baseline_percentile": None,
                                "locomotion_drive": 0.0, "roi_noise_seconds": 0.0,
                                "roi_drift_std": 0.0, "roi_drift_seconds": 60.0}


def _simulation_record(config, seed: int) -> dict:
  settings = dataclasses.asdict(config)
  for field, value in SIMULATOR_FIELDS_ADDED_LATER.items():
    if field in settings and settings[field] == value:
      del settings[field]
  record = {"seed": seed, "config": settings}
  preset = simulation.preset_of(config)
  if preset != "default":
    # Records of the default preset stay as they were, so existing raw folders still match.
    record["preset"] = preset
  return record


def raw_layout(preset: str) -> str:
  """The folder layout a preset's raw recordings are written in."""
  return "mc2p" if preset == "default" else "trial_files"


def recordings_dir(raw_dir: str | os.PathLike, preset: str) -> pathlib.Path:
  """Where a preset's raw recordings lie in the folder `write_simulated_dataset` wrote."""
  raw_dir = pathlib.Path(raw_dir)
  return raw_dir if raw_layout(preset) == "mc2p" else raw_dir / TRIAL_FILES_FOLDER


def write_simulated_dataset(config: simulation.SimulatorConfig, seed: int,
                            out_dir: str | os.PathLike, *, overwrite: bool = False,
                            neural_image_format: str = "npy") -> simulation.SimulatedDataset:
  """Simulates recordings and writes them in the MC2P layout, with their ground truth.

  Writes one trial folder per recording (`data_prep.mc2p_writer.write_trial`), `ground_truth.npz`
  (+ `.json`) and `simulation.json` (settings and seed). The folder is written under a
  temporary name and renamed when complete, so an interrupted run never leaves a folder that
  looks finished. The locomotion preset writes one `trials/<animal_id>_<trial_id>.npz` trial
  file per recording instead (`data_prep.trial_files.write_trial_file`; build from the
  `trials` folder, `recordings_dir` names it).

  Args:
    config: simulator settings (`SimulatorConfig` or `LocomotionConfig`).
    seed: simulation seed.
    out_dir: the folder to write; it must not exist unless `overwrite`.
    overwrite: replace an existing `out_dir`.
    neural_image_format: file format of the dF/F stacks ("npy", "mm" or "tif").

  Returns:
    The simulated dataset (recordings and ground truth).
  """
  out_dir = pathlib.Path(out_dir)
  if out_dir.exists():
    if not overwrite:
      raise FileExistsError(f"{out_dir} exists; remove it, choose another folder or overwrite")
    shutil.rmtree(out_dir)
  partial = out_dir.with_name(out_dir.name + ".incomplete")
  shutil.rmtree(partial, ignore_errors=True)
  partial.mkdir(parents=True)
  simulated = simulation.simulate_dataset(config, seed, progress=True)
  layout = raw_layout(simulation.preset_of(config))
  for rec in tqdm.tqdm(simulated.recordings, desc="writing", unit="trial"):
    if layout == "mc2p":
      mc2p_writer.write_trial(rec, partial, neural_image_format=neural_image_format)
    else:
      trial_files.write_trial_file(
          rec, partial / TRIAL_FILES_FOLDER / f"{rec.animal_id}_{rec.trial_id}.npz")
  simulated.save_ground_truth(partial / GROUND_TRUTH)
  (partial / SIMULATION_RECORD).write_text(
      json.dumps(_simulation_record(config, seed), indent=2, default=str))
  partial.rename(out_dir)
  return simulated


def _check_simulation_record(raw_dir: pathlib.Path, config, seed: int,
                             shards_dir: pathlib.Path) -> None:
  """Raises if `raw_dir` holds recordings simulated with other settings than asked for."""
  record_path = raw_dir / SIMULATION_RECORD
  if not record_path.exists():
    return
  recorded = json.loads(record_path.read_text())
  wanted = json.loads(json.dumps(_simulation_record(config, seed), default=str))
  if recorded == wanted:
    return
  changed = sorted(key for key in set(recorded.get("config", {})) | set(wanted["config"])
                   if recorded.get("config", {}).get(key) != wanted["config"].get(key))
  if recorded.get("seed") != wanted["seed"]:
    changed.append("seed")
  raise ValueError(f"{raw_dir} was simulated with other settings than asked for (differing: "
                   f"{', '.join(changed) or 'preset'}); remove it and {shards_dir} to simulate "
                   "and build again, or give another name")


def ensure_dataset(config=None, seed: int = 0, *,
                   data_dir: str | os.PathLike | None = None,
                   raw_dir: str | os.PathLike | None = None,
                   name: str | None = None, preset: str | None = None) -> pathlib.Path:
  """Simulates and builds a dataset unless it is already there.

  Args:
    config: simulator settings, a `SimulatorConfig` or a `LocomotionConfig` (the preset's
      defaults if None).
    seed: simulation seed.
    data_dir: TFDS data dir of the shards (default `paths.default_data_dir()`).
    raw_dir: folder of the raw recordings (default `<root>/raw/<name>`).
    name: the dataset's name inside `data_dir` (default: the preset's name, "default" or
      "locomotion").
    preset: "default" or "locomotion" (`nar.simulation.PRESETS`). None: the preset of
      `config`; without a config, `name` when it names a preset (so `name="locomotion"`
      gives the locomotion dataset), else "default".

  Returns:
    The dataset directory, for `nar.data.shards.open_dataset`.
  """
  if preset is None:
    if config is not None:
      preset = simulation.preset_of(config)
    else:
      preset = name if name in simulation.PRESETS else "default"
  config_class = simulation.preset_config_class(preset)
  config = config if config is not None else config_class()
  if not isinstance(config, config_class):
    raise ValueError(f"preset {preset!r} takes a {config_class.__name__}, got a "
                     f"{type(config).__name__}")
  name = name or preset
  data_dir = pathlib.Path(data_dir or paths.default_data_dir())
  raw_dir = pathlib.Path(raw_dir or pathlib.Path(paths.default_root()) / "raw" / name)
  # Shards built from raw recordings of other settings (e.g. an older simulator default) must
  # not be reused silently; the raw folder's record tells.
  _check_simulation_record(raw_dir, config, seed, data_dir / "nar_recordings" / name)
  try:
    return shards.resolve_dataset_dir(data_dir, name)
  except shards.DatasetNotFoundError:
    pass
  if not raw_dir.exists():
    logging.info("Simulating dataset %r into %s", name, raw_dir)
    write_simulated_dataset(config, seed, raw_dir)
  recordings = readers.read_recordings(recordings_dir(raw_dir, preset),
                                       layout=raw_layout(preset))
  return pathlib.Path(tfds_builder.build_dataset(recordings, str(data_dir), config_name=name))


def open_dataset(data_dir: str | os.PathLike | None = None,
                 name: str = "default") -> shards.ShardedDataset:
  """Opens dataset `name` of `data_dir`; without a `data_dir`, the simulated one of that name
  under the default data root, simulated and built first if absent (`ensure_dataset`)."""
  if data_dir:
    return shards.open_dataset(data_dir, name)
  return shards.open_dataset(ensure_dataset(name=name))


def simulate_if_missing(config) -> bool:
  """Simulates and builds a run's dataset when its config asks for it and it is absent, but
  only into the default data root: a `data_dir` the user named is never filled with a
  simulation (a misspelt one must fail, not train on simulated data).

  Args:
    config: an experiment config (`config.data.data_dir`, `.name`, `.simulate_if_missing`).

  Returns:
    Whether the dataset is (now) the simulated default one.
  """
  data_dir = os.path.abspath(os.path.expanduser(config.data.data_dir))
  if not config.data.simulate_if_missing or data_dir != os.path.abspath(
      paths.default_data_dir()):
    return False
  ensure_dataset(data_dir=data_dir, name=config.data.name)
  return True
