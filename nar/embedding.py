"""The embedding of any built dataset with a trained run (`nar.run.load_run`).

`embed(run, dataset, out_dir=...)` writes one file per trial with the neural
encoder's features of every valid window, labelled or not; animals the run has not seen are
embedded directly by a shared encoder, and through input layers fitted label-free
(`adapt_steps`) where the run has a per-animal input layer.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Sequence

from absl import logging
from etils import epath
from flax import nnx
import jax
import ml_collections
import numpy as np
import tqdm

from nar import logs
from nar import models
from nar import paths
from nar import run as run_lib
from nar.data import normalise
from nar.data import pipeline
from nar.data import shards
from nar.eval import features as features_lib
from nar.train import adapt
from nar.train import inputs as inputs_lib
from nar.train import step as step_lib

SUMMARY_FILE = "embed.json"


class EmbedInputError(ValueError):
  """Data the run cannot embed as it is: the message names the file or field and what to do."""


# ----------------------------------------------------------------------------------------------
# Checks of a dataset against a run, before anything is read or compiled.
# ----------------------------------------------------------------------------------------------
def _trial_file(dataset: shards.ShardedDataset, trial: int) -> str:
  info = dataset.trials[trial]
  return f"{dataset.path} (animal {info['animal_id']!r}, trial {info['trial_id']!r})"


def check_dataset(run: run_lib.Run, dataset: shards.ShardedDataset, *,
                  adapt_steps: int = 0) -> list[str]:
  """The animals of `dataset` whose input layer must be fitted before they can be embedded.

  Raises:
    EmbedInputError: the dataset lacks the run's neural array, its behaviour has another
      format or dimension, an animal's ROI count or image shape differs from what the run
      reads, or (without `adapt_steps`) an animal needs an input layer of its own; every
      problem is listed, each naming the dataset, trial and field.
  """
  problems = []
  key = run.shapes.neural_key
  if key not in dataset.neural_keys:
    problems.append(f"{dataset.path}: no {key!r}, which the run's encoder reads "
                    f"(data.neural_key); the dataset holds {list(dataset.neural_keys)}")
  behaviour = run.record["dataset"].get("behaviour", {})
  for field in run_lib.BEHAVIOUR_FIELDS:
    if field in behaviour and dataset.metadata.get(field) != behaviour[field]:
      problems.append(f"{dataset.path}: {field} is {dataset.metadata.get(field)!r}, the run "
                      f"was trained on {behaviour[field]!r}")
  feature_dim = int(dataset.behaviour_features.shape[-1])
  run_dim = run.pose_normalizer.feature_dim
  if feature_dim != run_dim:
    problems.append(f"{dataset.path}: behaviour has {feature_dim} features per frame, the "
                    f"run's has {run_dim}")
  needs_adapter = []
  if key in dataset.neural_keys and key == "roi_traces":
    known = run.embeddable_animals()
    for trial, info in enumerate(dataset.trials):
      count, animal = int(info["num_rois"]), info["animal_id"]
      if not run.per_animal_input:
        if count != run.shapes.num_rois:
          problems.append(f"{_trial_file(dataset, trial)}: roi_traces has {count} ROIs, the "
                          f"run's shared encoder reads {run.shapes.num_rois}")
      elif animal in known and known[animal] != count:
        problems.append(f"{_trial_file(dataset, trial)}: roi_traces has {count} ROIs, the "
                        f"input layer of {animal!r} maps {known[animal]}; name the animal "
                        "apart if these are other cells")
      elif animal not in known and animal not in needs_adapter:
        needs_adapter.append(animal)
  elif key in dataset.neural_keys:
    shape = tuple(dataset.metadata["neural_image_shape"])
    if run.shapes.image_shape is not None and shape != tuple(run.shapes.image_shape):
      problems.append(f"{dataset.path}: neural_images are {shape}, the run's encoder reads "
                      f"{tuple(run.shapes.image_shape)}")
  if needs_adapter and adapt_steps <= 0:
    problems.append(
        f"{dataset.path}: animals {needs_adapter} are new to the run, whose per-animal input "
        "layer has no row for their ROIs; fit one label-free first with --adapt_steps=N "
        "(nar.embed(..., adapt_steps=N), e.g. 200), which keeps it beside the run")
  if problems:
    raise EmbedInputError("; ".join(problems))
  return needs_adapter


# ----------------------------------------------------------------------------------------------
# The encoder for a dataset's animals.
# ----------------------------------------------------------------------------------------------
def _shapes_for(run: run_lib.Run, dataset: shards.ShardedDataset) -> models.ModelShapes:
  roi_counts = tuple(dataset.roi_counts.values()) if run.per_animal_input else None
  return dataclasses.replace(
      run.shapes, roi_counts=roi_counts, num_animals=len(dataset.animals),
      num_rois=dataset.max_rois if run.per_animal_input else run.shapes.num_rois)


def _encoder_config(run: run_lib.Run) -> ml_collections.ConfigDict:
  # The animal classifier of a GRL penalty has one output per training-dataset animal; neither
  # embedding nor a label-free input-layer fit of new animals reads it.
  config = ml_collections.ConfigDict(run.config.to_dict())
  config.domain_penalty = "none"
  return config


def model_for_dataset(run: run_lib.Run, dataset: shards.ShardedDataset, *, seed: int = 0):
  """`(graphdef, params)` of the run's model with per-animal rows for `dataset`'s animals.

  Every parameter is the run's; with a per-animal input layer, each of the dataset's animals
  gets its trained row (a training animal), its fitted one (`run.input_layers`), or, for an
  animal new to the run, a freshly initialised row (seeded) to be fitted (`adapt_animals`).
  """
  config = _encoder_config(run)
  model = models.build_model(config, _shapes_for(run, dataset), nnx.Rngs(seed))
  graphdef, params = nnx.split(model)
  target = nnx.to_pure_dict(params)
  source = nnx.to_pure_dict(run.params)

  def copy(target_node, source_node):
    for name, value in target_node.items():
      if name not in source_node:
        continue
      if isinstance(value, dict):
        copy(value, source_node[name])
      elif np.shape(value) == np.shape(source_node[name]):
        target_node[name] = np.asarray(source_node[name])

  copy(target, source)
  if run.per_animal_input:
    kernel = np.array(target["neural_encoder"]["input"]["kernel"])
    bias = np.array(target["neural_encoder"]["input"]["bias"])
    trained_kernel, trained_bias = adapt.input_layer_arrays(run.params)
    counts = dataset.roi_counts
    for row, animal in enumerate(dataset.animals):
      count = counts[animal]
      if animal in run.input_layers:
        layer = run.input_layers[animal]
        kernel[row] = 0.0
        kernel[row, :count], bias[row] = layer["kernel"], layer["bias"]
      elif animal in run.training_animals:
        trained_row = run.animals.index(animal)
        kernel[row] = 0.0
        kernel[row, :count] = trained_kernel[trained_row, :count]
        bias[row] = trained_bias[trained_row]
    target["neural_encoder"]["input"]["kernel"] = kernel
    target["neural_encoder"]["input"]["bias"] = bias
  nnx.replace_by_pure_dict(params, target)
  return graphdef, params


def _neural_normalizer(run: run_lib.Run, dataset: shards.ShardedDataset, progress: bool
                       ) -> normalise.NeuralNormalizer | None:
  """The run's standardisation, with every animal's statistics from its own recordings."""
  if run.neural_normalizer is None:
    return None
  return normalise.NeuralNormalizer.fit(
      dataset, run.neural_normalizer.key,
      calibration_fraction=run.neural_normalizer.calibration_fraction, progress=progress)


def _dataset_input(run: run_lib.Run, dataset: shards.ShardedDataset, new_animals: Sequence[str],
                   neural_normalizer) -> inputs_lib.Input:
  """The data side of a label-free input-layer fit on `dataset`'s windows."""
  spec = run.spec
  index = pipeline.select_windows(dataset, spec, animals=list(new_animals))
  source = pipeline.WindowSource(dataset, index, spec, run.pose_normalizer,
                                 neural_keys=(run.shapes.neural_key,), pad_rois=True,
                                 neural_normalizer=neural_normalizer)
  known = tuple(a for a in dataset.animals if a not in new_animals)
  return inputs_lib.Input(
      dataset=dataset, spec=spec, training_animals=known, held_out_animals=tuple(new_animals),
      normalizer=run.pose_normalizer, train_source=source, neural_key=run.shapes.neural_key,
      num_rois=dataset.max_rois, neural_input="per_animal",
      roi_counts=tuple(dataset.roi_counts.values()), neural_normalizer=neural_normalizer)


def adapt_animals(run: run_lib.Run, dataset: shards.ShardedDataset, animals: Sequence[str], *,
                  num_steps: int, mesh: jax.sharding.Mesh | None = None,
                  neural_normalizer: normalise.NeuralNormalizer | None = None
                  ) -> dict[str, Any]:
  """Fits input layers of animals new to the run, label-free, and keeps them beside it.

  The trunk, the heads and the behaviour encoder stay frozen; each animal's row is fitted
  through the run's objective against the animal's own behaviour (no labels are read), as
  `nar.train.adapt.fit_input_layers` does for held-out animals after training. The rows are
  written to `run.workdir/input_layers/` and added to `run.input_layers`.

  Returns:
    The fit's report (objective before and after, steps, windows, seconds).
  """
  if run.config.method == "behavenet":
    raise NotImplementedError("fitting input layers of new animals to a BehaveNet-style run "
                              "needs its behavioural states, which a run folder does not keep")
  mesh = mesh or step_lib.make_mesh()
  if neural_normalizer is None:
    neural_normalizer = _neural_normalizer(run, dataset, progress=True)
  inputs = _dataset_input(run, dataset, animals, neural_normalizer)
  config = _encoder_config(run)
  config.adapt.num_steps = int(num_steps)
  config.data.drop_unlabelled = False  # label-free: every window of the animal
  config.data.drop_classes = ()
  graphdef, params = model_for_dataset(run, dataset, seed=int(config.seed))
  params, report = adapt.fit_input_layers(graphdef, params, inputs, config, mesh, animals)
  report["dataset"] = os.fspath(dataset.path)
  if jax.process_index() == 0:
    adapt.write_input_layers(run.workdir, params, dataset.animals, animals,
                             inputs.roi_counts, report=report)
  run.input_layers = run_lib.read_input_layers(run.workdir)
  return report


# ----------------------------------------------------------------------------------------------
# Embedding.
# ----------------------------------------------------------------------------------------------
def trial_file_name(animal_id: str, trial_id: str) -> str:
  """The output file of one trial's embeddings: safe names of the animal and the trial.

  Example:
    >>> trial_file_name("200101_G23xU1_Fly1", "003")
    '200101_G23xU1_Fly1__003.npz'
  """
  return f"{paths.safe_file_name(animal_id)}__{paths.safe_file_name(trial_id)}.npz"


def embed(run: run_lib.Run, dataset: shards.ShardedDataset | str | os.PathLike, *,
          out_dir: str | os.PathLike, hop: int = 1, batch_size: int = 256,
          adapt_steps: int = 0, progress: bool = True,
          mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]:
  """Embeds every valid window of every trial of a built dataset, one output file per trial.

  Windows are read in order, encoded in batches by the jitted neural encoder, data-parallel
  over every device of `mesh`, and each trial's file is written as soon as its last window is
  encoded: memory does not grow with the number of trials.

  Args:
    run: a trained run (`load_run`).
    dataset: a built dataset (`python -m data_prep.build`), opened or its path.
    out_dir: where the files go (created if needed).
    hop: embed every `hop`-th valid centre frame.
    batch_size: windows per encoder call (rounded up to a multiple of the device count).
    adapt_steps: with a per-animal input layer, steps of the label-free fit of the input
      layer of every animal new to the run (`adapt_animals`); 0 makes a new animal an error.
    progress: show a progress bar.
    mesh: the devices to encode on (default: all).

  Returns:
    A summary (also written to `out_dir/embed.json`): `files` (names in `out_dir`), `num_windows`,
    `num_trials`, `seconds` and `windows_per_second` of the encoding, `adapted` (the fit's
    report, if any).

  Each file `<animal>__<trial>.npz` holds `embeddings` `[N, D]` float32, `centre_frame` `[N]`
  (behaviour frame of each window's centre), `timestamps` `[N]` (seconds from the trial's
  first behaviour frame), `label` `[N]` (-1 where unlabelled), `class_names`, `behaviour`
  `[N, D]` (the centre frame's behaviour features, before z-scoring, NaN where missing) and
  `behaviour_names`, `animal_id`, `trial_id` and `run` (the run folder).

  Raises:
    EmbedInputError: the dataset does not fit the run (`check_dataset`), before anything is
      read or compiled.

  Example:
    >>> summary = embed(load_run(workdir), dataset_dir, out_dir=out)  # doctest: +SKIP
    >>> np.load(f"{out}/{summary['files'][0]}")["embeddings"].shape  # doctest: +SKIP
    (1130, 64)
  """
  if hop < 1 or batch_size < 1:
    raise ValueError(f"hop and batch_size must be >= 1, got hop={hop}, batch_size={batch_size}")
  if not isinstance(dataset, shards.ShardedDataset):
    dataset = shards.open_dataset(dataset, neural_cache_bytes=256 << 20)
  new_animals = check_dataset(run, dataset, adapt_steps=adapt_steps)
  mesh = mesh or step_lib.make_mesh()
  neural_normalizer = _neural_normalizer(run, dataset, progress)
  adapted = None
  if new_animals:
    adapted = adapt_animals(run, dataset, new_animals, num_steps=adapt_steps, mesh=mesh,
                            neural_normalizer=neural_normalizer)
  graphdef, params = model_for_dataset(run, dataset)
  replicated = jax.sharding.NamedSharding(mesh, jax.P())
  batch_sharding = jax.sharding.NamedSharding(mesh, jax.P("data"))
  params = jax.device_put(params, replicated)

  @functools.partial(jax.jit, out_shardings=replicated)
  def encode(params, neural, animal):
    return nnx.merge(graphdef, params).encode_neural(neural, animal)

  spec = run.spec
  key = run.shapes.neural_key
  index = pipeline.select_windows(dataset, spec, hop=hop)
  batch_size = -(-batch_size // mesh.size) * mesh.size
  out_dir = epath.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  class_names = np.array(dataset.class_names, str)
  behaviour_names = np.array(dataset.behaviour_spec.feature_names, str)
  behaviour_features = dataset.behaviour_features
  behaviour_index = dataset.behaviour_index
  roi_width = dataset.max_rois if run.per_animal_input else None
  animal_row = {animal: row for row, animal in enumerate(dataset.animals)}
  files = []

  def write(trial: int, embeddings: np.ndarray, centres: np.ndarray):
    info = dataset.trials[trial]
    frames = int(behaviour_index.offsets[trial]) + centres
    path = out_dir / trial_file_name(info["animal_id"], info["trial_id"])
    logs.write_npz_atomically(path, {
        "embeddings": embeddings, "centre_frame": centres,
        "timestamps": centres / float(info["fps_behaviour"]),
        "label": behaviour_index.labels[frames].astype(np.int32), "class_names": class_names,
        "behaviour": behaviour_features[frames], "behaviour_names": behaviour_names,
        "animal_id": np.array(info["animal_id"]), "trial_id": np.array(info["trial_id"]),
        "run": np.array(os.fspath(run.workdir))})
    files.append(path.name)

  def encode_batch(neural: np.ndarray, animal: np.ndarray) -> np.ndarray:
    count = len(neural)
    features = encode(params, jax.device_put(features_lib.pad_batch(neural, batch_size), batch_sharding),
                      jax.device_put(features_lib.pad_batch(animal, batch_size), batch_sharding))
    return np.asarray(features)[:count].astype(np.float32)

  bar = tqdm.tqdm(total=len(index), desc="embed", unit="window", disable=not progress)
  start, timed_from, timed_windows = time.perf_counter(), None, 0
  # Windows of consecutive trials fill one batch; a trial's file is written once its last
  # window is encoded, and only its own frames are held in memory meanwhile.
  # (trial, its standardised neural frames, first neural frame and centre of each window)
  queued: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
  done: dict[int, list[np.ndarray]] = {}
  queued_windows = 0

  def drain(final: bool):
    nonlocal queued_windows, timed_from, timed_windows
    while queued_windows >= batch_size or (final and queued_windows):
      take, parts, owners = batch_size, [], []
      while take and queued:
        trial, frames, starts, centres = queued[0]
        used = min(take, len(starts))
        parts.append(frames[starts[:used, None] + np.arange(spec.neural_frames)[None]])
        owners.append((trial, used, centres[:used]))
        if used == len(starts):
          queued.pop(0)
        else:
          queued[0] = (trial, frames, starts[used:], centres[used:])
        take -= used
      animal = np.concatenate([np.full(used, animal_row[str(
          behaviour_index.animal_ids[trial])], np.int32) for trial, used, _ in owners])
      features = encode_batch(np.concatenate(parts), animal)
      if timed_from is None:  # the first call compiles
        timed_from = time.perf_counter()
      else:
        timed_windows += len(features)
      row = 0
      for trial, used, centres in owners:
        done.setdefault(trial, []).append(features[row:row + used])
        row += used
        if sum(map(len, done[trial])) == trial_counts[trial]:
          write(trial, np.concatenate(done.pop(trial)), trial_centres.pop(trial))
      queued_windows -= len(features)
      bar.update(len(features))

  trial_counts = np.bincount(index.trial, minlength=behaviour_index.num_trials)
  trial_centres: dict[int, np.ndarray] = {}
  first_offset = int(spec.neural_offsets()[0])
  for trial in np.unique(index.trial):
    trial = int(trial)
    centres = index.centre[index.trial == trial].astype(np.int64)
    animal = str(behaviour_index.animal_ids[trial])
    neural = dataset.read_neural(trial, 0, int(dataset.trials[trial]["num_neural_frames"]))[key]
    if neural_normalizer is not None and neural_normalizer.key == key:
      neural = neural_normalizer(animal, neural)
    if roi_width is not None and neural.shape[-1] < roi_width:
      neural = np.pad(neural, ((0, 0), (0, roi_width - neural.shape[-1])))
    sync = behaviour_index.trial_array("sync", trial).astype(np.int64)
    starts = sync[centres] + first_offset
    trial_centres[trial] = centres
    queued.append((trial, np.asarray(neural, np.float32), starts, centres))
    queued_windows += len(starts)
    drain(final=False)
  drain(final=True)
  bar.close()
  elapsed = time.perf_counter() - (timed_from or start)
  summary = {
      "run": os.fspath(run.workdir), "dataset": os.fspath(dataset.path), "hop": hop,
      "files": files, "num_trials": len(files), "num_windows": int(len(index)),
      "seconds": time.perf_counter() - start,
      "windows_per_second": (timed_windows / elapsed if timed_windows and elapsed > 0
                             else None),
      "adapted": adapted,
  }
  logs.write_json_atomically(out_dir / SUMMARY_FILE, summary)
  logging.info("Embedded %d windows of %d trials into %s", len(index), len(files), out_dir)
  return summary


def read_embeddings(out_dir: str | os.PathLike) -> dict[str, np.ndarray]:
  """Every trial file of an `embed` output folder, concatenated, with `animal_id` and
  `trial_id` per window (for probes and plots).

  Example:
    >>> table = read_embeddings(out)  # doctest: +SKIP
    >>> table["embeddings"].shape, table["animal_id"][:2]  # doctest: +SKIP
  """
  out_dir = epath.Path(out_dir)
  summary = json.loads((out_dir / SUMMARY_FILE).read_text())
  columns: dict[str, list] = {"embeddings": [], "centre_frame": [], "timestamps": [],
                              "label": [], "behaviour": [], "animal_id": [], "trial_id": []}
  class_names = behaviour_names = None
  for name in summary["files"]:
    with (out_dir / name).open("rb") as f, np.load(f) as arrays:
      count = len(arrays["embeddings"])
      for name in ("embeddings", "centre_frame", "timestamps", "label", "behaviour"):
        columns[name].append(arrays[name])
      columns["animal_id"].append(np.full(count, str(arrays["animal_id"]), object))
      columns["trial_id"].append(np.full(count, str(arrays["trial_id"]), object))
      class_names = arrays["class_names"]
      behaviour_names = arrays["behaviour_names"]
  table = {name: np.concatenate(parts) for name, parts in columns.items()}
  table["class_names"] = class_names
  table["behaviour_names"] = behaviour_names
  return table


def standardise_embeddings(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """A `read_embeddings` table with every animal's embeddings standardised with its own mean
  and spread over all of its windows, as `eval.feature_normalisation="animal"` does for the
  probes (there fitted on the time blocks before the identity test block only).

  It needs no labels, so it serves new animals too: what a linear read-out takes of the
  animal from its embeddings' means and spreads is removed.

  Example:
    >>> table = {"embeddings": np.array([[0.0], [2.0], [10.0], [14.0]], np.float32),
    ...          "animal_id": np.array(["a", "a", "b", "b"], object)}
    >>> standardise_embeddings(table)["embeddings"].astype(float).round(2).ravel().tolist()
    [-0.95, 0.95, -0.95, 0.95]
  """
  names, animal = np.unique(np.asarray(table["animal_id"], str), return_inverse=True)
  mean, scale = features_lib.animal_feature_statistics(table["embeddings"], animal, len(names))
  standardised = dict(table)
  standardised["embeddings"] = features_lib.standardise_features(
      table["embeddings"], animal, mean, scale)
  return standardised
