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

from data_prep import mc2p
from data_prep import readers
from data_prep import tfds_builder
from nar import paths
from nar import shards
from nar import simulation

SIMULATION_RECORD = "simulation.json"


def _simulation_record(config: simulation.SimulatorConfig, seed: int) -> dict:
  return {"seed": seed, "config": dataclasses.asdict(config)}


def write_simulated_dataset(config: simulation.SimulatorConfig, seed: int,
                            out_dir: str | os.PathLike) -> pathlib.Path:
  """Simulates recordings and writes them in the MC2P layout, with their ground truth.

  The folder is written under a temporary name and renamed when complete, so an interrupted
  run never leaves a folder that looks finished.

  Returns:
    The folder written.
  """
  out_dir = pathlib.Path(out_dir)
  if out_dir.exists():
    raise FileExistsError(f"{out_dir} exists; remove it or choose another out_dir")
  partial = out_dir.with_name(out_dir.name + ".incomplete")
  shutil.rmtree(partial, ignore_errors=True)
  partial.mkdir(parents=True)
  simulated = simulation.simulate_dataset(config, seed)
  for rec in simulated.recordings:
    mc2p.write_trial(rec, partial)
  simulated.save_ground_truth(partial / "ground_truth.npz")
  record = _simulation_record(config, seed)
  (partial / SIMULATION_RECORD).write_text(json.dumps(record, indent=2, default=str))
  partial.rename(out_dir)
  return out_dir


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
