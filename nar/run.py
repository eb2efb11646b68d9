"""Self-describing run folders: what a run was made of, written as `run.json` beside its
checkpoints, so that the folder can be read without the flags that made it."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from etils import epath
import ml_collections

import nar
from nar import logs
from nar.data import shards

RUN_FILE = "run.json"


def dataset_fingerprint(dataset: shards.ShardedDataset) -> str:
  """A short hash of a built dataset's metadata: its animals, trials, frame counts, segments.

  Two builds of the same recordings have the same fingerprint; a dataset with other trials,
  animals or lengths has another. It hashes the metadata only, not the frames themselves.
  """
  metadata = json.dumps(dataset.metadata, sort_keys=True, default=str).encode()
  return hashlib.sha256(metadata).hexdigest()[:16]


def run_record(config: ml_collections.ConfigDict, dataset: shards.ShardedDataset,
               training_animals, held_out_animals) -> dict[str, Any]:
  """What `run.json` holds: the resolved config, the dataset, the package version, the split.

  Example:
    >>> import ml_collections
    >>> class Dataset:  # the two fields of a `ShardedDataset` a record reads
    ...   path, metadata = "/data/nar_recordings/default/1.0.0", {"animals": ["a", "b"]}
    >>> record = run_record(ml_collections.ConfigDict({"seed": 0}), Dataset(), ["a"], ["b"])
    >>> record["config"], record["training_animals"], record["held_out_animals"]
    ({'seed': 0}, ['a'], ['b'])
  """
  return {
      "config": json.loads(config.to_json_best_effort()),
      "dataset": {"path": os.fspath(dataset.path),
                  "fingerprint": dataset_fingerprint(dataset),
                  "animals": list(dataset.metadata.get("animals", []))},
      "nar_version": nar.__version__,
      "training_animals": list(training_animals),
      "held_out_animals": list(held_out_animals),
  }


def write_run_record(workdir: str | os.PathLike, record: dict[str, Any]) -> epath.Path:
  """Writes `record` to `workdir/run.json` (whole or not at all). Returns the path."""
  path = epath.Path(workdir) / RUN_FILE
  logs.write_json_atomically(path, record)
  return path


def read_run_record(workdir: str | os.PathLike) -> dict[str, Any]:
  """The `run.json` of a run folder.

  Raises:
    FileNotFoundError: the folder holds no `run.json` (not a run folder, or one made before
      runs described themselves), with the folder in the message.
  """
  path = epath.Path(workdir) / RUN_FILE
  if not path.exists():
    raise FileNotFoundError(f"{workdir} holds no {RUN_FILE}: it is not a run folder, or it "
                            "was made before runs recorded what they were made of")
  return json.loads(path.read_text())
