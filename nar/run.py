"""Self-describing run folders: what a run was made of, written beside its checkpoints, and
the run read back from them (`load_run`, `nar.load_run`) without the flags that made it.

A run folder holds `run.json` (the resolved config, the dataset, the package version, the
animal split and the shapes the model was built for), `normalisers.npz` (the pose z-scoring of
the training animals and the per-animal neural statistics), `checkpoints/` (Orbax) and, with a
per-animal input layer, `input_layers/` (one file per animal fitted after training: the
held-out animals, and new animals adapted by `nar.embed`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

from etils import epath
from flax import nnx
import jax
import ml_collections

import numpy as np
import orbax.checkpoint as ocp

from nar import logs
from nar import models
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
  logs.write_npz_atomically(path, arrays)
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
  logs.write_npz_atomically(path, {"animal": np.array(animal), "kernel": kernel, "bias": bias,
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


# ----------------------------------------------------------------------------------------------
# A run read back.
# ----------------------------------------------------------------------------------------------
CHECKPOINT_DIR = "checkpoints"


class RunLoadError(ValueError):
  """A run folder that cannot be loaded back: the message names the file and what to do."""



@dataclasses.dataclass
class Run:
  """A trained run, read back from its folder by `load_run`.

  Attributes:
    workdir: the run folder.
    record: its `run.json` (`nar.run.run_record`).
    config: the resolved config it was trained with.
    shapes: the shapes its model was built for.
    graphdef: the model's graph definition.
    params: its trained parameters (an `nnx.State`).
    step: the training step of the checkpoint read.
    pose_normalizer: the z-scoring of behaviour fitted on the training animals.
    neural_normalizer: the per-animal neural standardisation it was trained with, or None.
    input_layers: animal -> input layer fitted after training (`nar.run.read_input_layers`).
  """

  workdir: epath.Path
  record: dict[str, Any]
  config: ml_collections.ConfigDict
  shapes: models.ModelShapes
  graphdef: Any
  params: Any
  step: int
  pose_normalizer: windows.PoseNormalizer
  neural_normalizer: normalise.NeuralNormalizer | None
  input_layers: dict[str, dict[str, Any]]

  @property
  def animals(self) -> tuple[str, ...]:
    """The animals of the dataset the run was trained on (the rows of per-animal layers)."""
    return tuple(self.record["dataset"]["animals"])

  @property
  def training_animals(self) -> tuple[str, ...]:
    return tuple(self.record["training_animals"])

  @property
  def held_out_animals(self) -> tuple[str, ...]:
    return tuple(self.record["held_out_animals"])

  @property
  def per_animal_input(self) -> bool:
    """Whether each animal's ROIs go through an input layer of its own."""
    return self.shapes.roi_counts is not None

  @property
  def spec(self) -> windows.WindowSpec:
    return windows.WindowSpec(**self.config.data.window)

  def embeddable_animals(self) -> dict[str, int]:
    """Animal -> ROI count of the animals this run embeds as it is (with a per-animal input
    layer: its training animals and those with a fitted input layer); empty for a shared
    encoder, which embeds any animal."""
    if not self.per_animal_input:
      return {}
    counts = dict(zip(self.animals, self.shapes.roi_counts))
    known = {animal: counts[animal] for animal in self.training_animals}
    known.update({animal: layer["roi_count"] for animal, layer in self.input_layers.items()})
    return known


def _strip_variable_values(tree):
  """A restored state's nested dicts, with `{"value": array}` leaves (`nnx.Variable`s as Orbax
  stores them) turned into the arrays themselves."""
  if isinstance(tree, dict):
    if set(tree) == {"value"}:
      return tree["value"]
    return {key: _strip_variable_values(value) for key, value in tree.items()}
  return tree


def finished_steps(workdir: str | os.PathLike) -> list[int]:
  """The steps of a run folder's complete checkpoints (Orbax's half-written ones excluded)."""
  folder = epath.Path(workdir) / CHECKPOINT_DIR
  if not folder.exists():
    return []
  return sorted(int(path.name) for path in folder.iterdir()
                if path.name.isdigit() and (path / "state").exists()
                and ((path / "commit_success.txt").exists()
                     or (path / "_CHECKPOINT_METADATA").exists()))


def run_folder(workdir: str | os.PathLike) -> epath.Path:
  """A run folder as an absolute path (Orbax refuses relative checkpoint paths); a remote
  path (`gs://...`) is returned as given.

  Example:
    >>> run_folder("runs/ours").is_absolute(), str(run_folder("gs://bucket/run"))
    (True, 'gs://bucket/run')
  """
  if "://" in os.fspath(workdir):
    return epath.Path(workdir)
  return epath.Path(os.path.abspath(os.fspath(workdir)))


def load_run(workdir: str | os.PathLike, *, dataset: shards.ShardedDataset | str | None = None,
             allow_unfinished: bool = False) -> Run:
  """Reads a trained run back from its folder, ready to embed, with no flags.

  Args:
    workdir: the run folder (`python -m experiments.train --workdir=...`).
    dataset: if given (an opened dataset or its path), the run must have been trained on it:
      a dataset with another fingerprint (other trials, animals or lengths) is an error.
    allow_unfinished: read the latest checkpoint of a run whose training has not reached
      `config.optim.num_train_steps` (by default an error).

  Returns:
    The run.

  Raises:
    RunLoadError: the folder is not a run folder, holds no finished checkpoint, or a
      damaged one, or was trained on another dataset than `dataset`; the message names the
      file and what to do.

  Example:
    >>> run = load_run(workdir)  # doctest: +SKIP
    >>> summary = nar.embed(run, dataset_dir, out_dir="/tmp/embeddings")  # doctest: +SKIP
  """
  workdir = run_folder(workdir)
  try:
    record = read_run_record(workdir)
  except FileNotFoundError as error:
    raise RunLoadError(str(error)) from None
  if not record.get("model"):
    raise RunLoadError(f"{workdir / RUN_FILE} does not say which shapes the model was "
                       "built for (made by an earlier version of NAR); train it again to "
                       "embed with it")
  config = ml_collections.ConfigDict(record["config"])
  if dataset is not None:
    opened = dataset if isinstance(dataset, shards.ShardedDataset) else shards.open_dataset(
        dataset)
    fingerprint = dataset_fingerprint(opened)
    if fingerprint != record["dataset"]["fingerprint"]:
      raise RunLoadError(
          f"{workdir} was trained on {record['dataset']['path']} (fingerprint "
          f"{record['dataset']['fingerprint']}), not on {opened.path} (fingerprint "
          f"{fingerprint}); pass the dataset it was trained on, or embed this one with "
          "nar.embed, which reads any dataset")
  steps = finished_steps(workdir)
  if not steps:
    raise RunLoadError(f"{workdir / CHECKPOINT_DIR} holds no finished checkpoint; train the "
                       f"run (python -m experiments.train --workdir={workdir}) first")
  num_steps = int(config.optim.num_train_steps)
  if steps[-1] < num_steps and not allow_unfinished:
    raise RunLoadError(f"{workdir} stopped at step {steps[-1]} of {num_steps}; resume it "
                       f"(python -m experiments.train --workdir={workdir} with its config) or "
                       "pass allow_unfinished=True")
  shapes = models.ModelShapes.from_json(record["model"])
  abstract = nnx.eval_shape(lambda: models.build_model(config, shapes, nnx.Rngs(0)))
  graphdef, params = nnx.split(abstract)
  step = steps[-1]
  logs.quiet_checkpoint_logs()
  checkpoint = workdir / CHECKPOINT_DIR / str(step) / "state"
  try:
    restored = ocp.StandardCheckpointer().restore(checkpoint)
    nnx.replace_by_pure_dict(params, _strip_variable_values(restored["params"]))
  except (ValueError, KeyError, TypeError, OSError) as error:
    raise RunLoadError(f"{checkpoint} cannot be read back into the model its run.json "
                       f"describes ({type(error).__name__}: {str(error)[:300]}); the "
                       "checkpoint is damaged or was written by another run") from None
  params = jax.tree.map(np.asarray, params)
  try:
    pose_normalizer, neural_normalizer = read_normalisers(workdir)
  except FileNotFoundError as error:
    raise RunLoadError(str(error)) from None
  return Run(workdir=workdir, record=record, config=config, shapes=shapes, graphdef=graphdef,
             params=params, step=step, pose_normalizer=pose_normalizer,
             neural_normalizer=neural_normalizer,
             input_layers=read_input_layers(workdir))
