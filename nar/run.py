"""Self-describing run folders: what a run was made of, written beside its checkpoints, so
that the folder can be read back (`nar.load_run`) without the flags that made it.

A run folder holds `run.json` (the resolved config, the dataset, the package version, the
animal split and the shapes the model was built for), `normalisers.npz` (the pose z-scoring of
the training animals and the per-animal neural statistics), `checkpoints/` (Orbax) and, with a
per-animal input layer, `input_layers/` (one file per animal fitted after training: the
held-out animals, and new animals adapted by `nar.embed`).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from etils import epath
import ml_collections

import numpy as np

from nar import logs
from nar import paths
from nar import version
from nar.data import normalise
from nar.data import shards
from nar.data import windows

RUN_FILE = "run.json"
NORMALISERS_FILE = "normalisers.npz"
INPUT_LAYERS_DIR = "input_layers"
# The dataset metadata that says what the behaviour is (`nar.data.behaviour.BehaviourSpec`).
BEHAVIOUR_FIELDS = ("behaviour_format", "behaviour_names", "behaviour_normalisation")


def dataset_fingerprint(dataset: shards.ShardedDataset) -> str:
  """A short hash of a built dataset's metadata: its animals, trials, frame counts, segments.

  Two builds of the same recordings have the same fingerprint; a dataset with other trials,
  animals or lengths has another. It hashes the metadata only, not the frames themselves.
  """
  metadata = json.dumps(dataset.metadata, sort_keys=True, default=str).encode()
  return hashlib.sha256(metadata).hexdigest()[:16]


def run_record(config: ml_collections.ConfigDict, dataset: shards.ShardedDataset,
               training_animals, held_out_animals,
               model: dict[str, Any] | None = None) -> dict[str, Any]:
  """What `run.json` holds: the resolved config, the dataset, the package version, the split.

  Args:
    config: the resolved config of the run.
    dataset: the dataset it trains on.
    training_animals: the animals it trains on.
    held_out_animals: the animals it holds out.
    model: the shapes the model is built for (`nar.train.inputs.model_shapes`), which
      `nar.load_run` rebuilds it from.

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
                  "animals": list(dataset.metadata.get("animals", [])),
                  "class_names": list(dataset.metadata.get("class_names", [])),
                  "behaviour": {key: dataset.metadata.get(key) for key in BEHAVIOUR_FIELDS}},
      "nar_version": version.__version__,
      "training_animals": list(training_animals),
      "held_out_animals": list(held_out_animals),
      "model": dict(model or {}),
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


def write_normalisers(workdir: str | os.PathLike, pose: windows.PoseNormalizer,
                      neural: normalise.NeuralNormalizer | None) -> epath.Path:
  """Writes a run's input normalisers to `workdir/normalisers.npz`. Returns the path.

  Example:
    >>> import tempfile
    >>> pose = windows.PoseNormalizer(np.zeros(3, np.float32), np.ones(3, np.float32))
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_normalisers(folder, pose, None)
    >>> read_normalisers(folder)[0].feature_dim, read_normalisers(folder)[1]
    (3, None)
  """
  arrays = {"pose_mean": pose.mean, "pose_std": pose.std}
  if neural is not None:
    animals = sorted(neural.mean)
    arrays.update(neural_key=np.array(neural.key), neural_animals=np.array(animals, str),
                  neural_calibration_fraction=np.float64(neural.calibration_fraction),
)
    # One array per animal: their shapes differ where their ROI counts do.
    for i, animal in enumerate(animals):
      arrays[f"neural_mean_{i}"] = neural.mean[animal]
      arrays[f"neural_scale_{i}"] = neural.scale[animal]
  path = epath.Path(workdir) / NORMALISERS_FILE
  _write_npz_atomically(path, arrays)
  return path


def read_normalisers(workdir: str | os.PathLike
                     ) -> tuple[windows.PoseNormalizer, normalise.NeuralNormalizer | None]:
  """The `(pose, neural)` normalisers of a run folder (`neural` None when it used none).

  Raises:
    FileNotFoundError: the folder holds no `normalisers.npz`.
  """
  path = epath.Path(workdir) / NORMALISERS_FILE
  if not path.exists():
    raise FileNotFoundError(f"{path} is missing: the run folder {workdir} does not hold its "
                            "input normalisers (made by an earlier version of NAR, or "
                            "interrupted before its first step)")
  with path.open("rb") as f, np.load(f) as arrays:
    pose = windows.PoseNormalizer(arrays["pose_mean"], arrays["pose_std"])
    if "neural_key" not in arrays:
      return pose, None
    animals = [str(a) for a in arrays["neural_animals"]]
    neural = normalise.NeuralNormalizer(
        key=str(arrays["neural_key"]),
        mean={a: arrays[f"neural_mean_{i}"] for i, a in enumerate(animals)},
        scale={a: arrays[f"neural_scale_{i}"] for i, a in enumerate(animals)},
        calibration_fraction=float(arrays["neural_calibration_fraction"]))
  return pose, neural


def input_layer_path(workdir: str | os.PathLike, animal: str) -> epath.Path:
  """Where the fitted input layer of `animal` is kept in a run folder (a safe file name)."""
  return epath.Path(workdir) / INPUT_LAYERS_DIR / f"{paths.safe_file_name(animal)}.npz"


def write_input_layer(workdir: str | os.PathLike, animal: str, kernel: np.ndarray,
                      bias: np.ndarray, *, report: dict[str, Any] | None = None
                      ) -> epath.Path:
  """Keeps the input layer fitted to one animal beside a run. Returns the file's path.

  Args:
    workdir: the run folder.
    animal: the animal's id (kept as it is inside the file; the file name is made safe).
    kernel: `[R, width]` the map from the animal's own R ROIs.
    bias: `[width]`.
    report: how it was fitted (e.g. `nar.train.adapt.fit_input_layers`' report), kept as JSON.

  Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_input_layer(folder, "fly/1", np.ones((3, 2)), np.zeros(2))
    >>> layer = read_input_layers(folder)["fly/1"]
    >>> layer["kernel"].shape, layer["roi_count"]
    ((3, 2), 3)
  """
  kernel, bias = np.asarray(kernel, np.float32), np.asarray(bias, np.float32)
  if kernel.ndim != 2 or bias.shape != kernel.shape[1:]:
    raise ValueError(f"an input layer is a [R, width] kernel and a [width] bias, got shapes "
                     f"{kernel.shape} and {bias.shape}")
  path = input_layer_path(workdir, animal)
  path.parent.mkdir(parents=True, exist_ok=True)
  _write_npz_atomically(path, {"animal": np.array(animal), "kernel": kernel, "bias": bias,
                               "report": np.array(json.dumps(report or {}, default=str))})
  return path


def read_input_layers(workdir: str | os.PathLike) -> dict[str, dict[str, Any]]:
  """Animal -> `{"kernel" [R, width], "bias" [width], "roi_count", "report"}` of every input
  layer kept in a run folder (`write_input_layer`); empty when it keeps none."""
  folder = epath.Path(workdir) / INPUT_LAYERS_DIR
  layers = {}
  if not folder.exists():
    return layers
  for path in sorted(folder.glob("*.npz")):
    with path.open("rb") as f, np.load(f) as arrays:
      layers[str(arrays["animal"])] = {
          "kernel": arrays["kernel"], "bias": arrays["bias"],
          "roi_count": int(arrays["kernel"].shape[0]),
          "report": json.loads(str(arrays["report"]))}
  return layers


def _write_npz_atomically(path: epath.Path, arrays: dict[str, np.ndarray]) -> None:
  """Writes an `.npz` whole or not at all: into a temporary file renamed into place."""
  temporary = path.parent / f".{path.name}.tmp"
  with temporary.open("wb") as f:
    np.savez(f, **arrays)
  temporary.replace(path)  # over an earlier file, unlike `rename`
