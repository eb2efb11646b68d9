"""The embedded default dataset: simulated recordings, written raw, then built into shards.

The default run goes through the same path as real data: the simulator writes the MC2P
folder layout, the MC2P reader reads it back, and the TFDS builder writes the shards. Each
stage is skipped when its output is already complete, so the first run pays for it once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil

from absl import logging
import tqdm

from data_prep import mc2p
from data_prep import readers
from data_prep import tfds_builder
from nar import paths
from nar import shards
from nar import simulation

SIMULATION_RECORD = "simulation.json"
GROUND_TRUTH = "ground_truth.npz"


def _simulation_record(config: simulation.SimulatorConfig, seed: int) -> dict:
  return {"seed": seed, "config": dataclasses.asdict(config)}


def write_simulated_dataset(config: simulation.SimulatorConfig, seed: int,
                            out_dir: str | os.PathLike, *, overwrite: bool = False,
                            neural_image_format: str = "npy") -> simulation.SimulatedDataset:
  """Simulates recordings and writes them in the MC2P layout, with their ground truth.

  Writes one trial folder per recording (`data_prep.mc2p.write_trial`), `ground_truth.npz`
  (+ `.json`) and `simulation.json` (settings and seed). The folder is written under a
  temporary name and renamed when complete, so an interrupted run never leaves a folder that
  looks finished.

  Args:
    config: simulator settings.
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
  for rec in tqdm.tqdm(simulated.recordings, desc="writing", unit="trial"):
    mc2p.write_trial(rec, partial, neural_image_format=neural_image_format)
  simulated.save_ground_truth(partial / GROUND_TRUTH)
  (partial / SIMULATION_RECORD).write_text(
      json.dumps(_simulation_record(config, seed), indent=2, default=str))
  partial.rename(out_dir)
  return simulated


def ensure_dataset(config: simulation.SimulatorConfig | None = None, seed: int = 0, *,
                   data_dir: str | os.PathLike | None = None,
                   raw_dir: str | os.PathLike | None = None,
                   name: str = "default") -> pathlib.Path:
  """Simulates and builds a dataset unless it is already there.

  Args:
    config: simulator settings (the default demo dataset if None).
    seed: simulation seed.
    data_dir: TFDS data dir of the shards (default `paths.default_data_dir()`).
    raw_dir: folder of the raw MC2P-layout recordings (default `<root>/raw/<name>`).
    name: the dataset's name inside `data_dir`.

  Returns:
    The dataset directory, for `nar.shards.open_dataset`.
  """
  config = config or simulation.SimulatorConfig()
  data_dir = pathlib.Path(data_dir or paths.default_data_dir())
  try:
    return shards.resolve_dataset_dir(data_dir, name)
  except shards.DatasetNotFoundError:
    pass
  raw_dir = pathlib.Path(raw_dir or pathlib.Path(paths.default_root()) / "raw" / name)
  if raw_dir.exists():
    recorded = json.loads((raw_dir / SIMULATION_RECORD).read_text())
    wanted = json.loads(json.dumps(_simulation_record(config, seed), default=str))
    if recorded != wanted:
      raise ValueError(f"{raw_dir} was simulated with other settings ({recorded}); "
                       "remove it or use another name")
  else:
    logging.info("Simulating dataset %r into %s", name, raw_dir)
    write_simulated_dataset(config, seed, raw_dir)
  recordings = readers.read_recordings(raw_dir, layout="mc2p")
  return pathlib.Path(tfds_builder.build_dataset(recordings, str(data_dir), config_name=name))
