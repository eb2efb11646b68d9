"""`NAREstimator`: NAR's trainer and embedder behind scikit-learn's fit / transform.

Sessions given as arrays become recordings of a built dataset (`nar.data.builder`) in a
working folder, trained on by the one trainer (`nar.train.train_and_evaluate`) and embedded
by `nar.embed`: no second training loop, no second data path.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Sequence

from etils import epath
import numpy as np
from sklearn import base
from sklearn.utils import validation

from nar import config as config_lib
from nar import embedding
from nar import run as run_lib
from nar.data import builder
from nar.data import recording as recording_lib
from nar.train import loop

ESTIMATOR_FILE = "estimator.json"
RUN_DIR = "run"


def _session_arrays(name: str, arrays, *, ndims: tuple[int, ...]) -> list[np.ndarray]:
  """A list of float32 session arrays, each checked to have one of `ndims` dimensions."""
  if isinstance(arrays, np.ndarray):
    arrays = [arrays]
  if not isinstance(arrays, (list, tuple)) or not arrays:
    raise ValueError(f"{name} must be a non-empty list of per-session arrays")
  checked = []
  for index, array in enumerate(arrays):
    array = np.asarray(array, np.float32)
    if array.ndim not in ndims:
      raise ValueError(f"{name}[{index}] has shape {array.shape}; expected "
                       f"{' or '.join(f'{n}-D' for n in ndims)} (frames first)")
    checked.append(array)
  return checked


class NAREstimator(base.TransformerMixin, base.BaseEstimator):
  """Learns embeddings of neural activity that encode behaviour, not the animal.

  Each session is one `[T, R]` array of ROI traces (or `[T, H, W]` of images) and one
  `[T, D]` array of behaviour features (e.g. velocities, flattened pose) sampled on the same
  `T` frames at `fps` Hz (resample first where the rates differ), with the id of its animal.
  ROI counts may differ between animals (each then gets an input layer of its own).

  Args:
    num_train_steps: training steps.
    batch_size: windows per step.
    window_frames: frames of a window (behaviour and neural alike).
    fps: the sessions' frame rate.
    temperature: the contrastive objective's temperature.
    learning_rate: the optimiser's peak learning rate.
    swap: the cross-animal behaviour swap (needs two animals or more).
    features: the embedding's dimension.
    adapt_steps: steps of the label-free input-layer fit of an animal new to the model
      (with per-animal input layers), at `transform`.
    config_overrides: any other config fields, `{"model.width": 32}` (`nar.config`).
    workdir: where the dataset and the run go; None: a new temporary folder.
    seed: the run's seed.

  Of `sklearn.utils.estimator_checks`, the checks of an estimator's parameters pass (no
  attribute set in `__init__`, default-constructible, `get_params` / `set_params`, `clone`,
  repr, tags: `tests/test_estimator.py`). Those that fit on sklearn's own random 2-D `X` and
  `y` do not apply: a fit takes sessions of neural activity, their behaviour and their
  animals, and trains a network.

  Attributes (after `fit`):
    run_: the trained run (`nar.Run`).
    workdir_: the working folder.
    n_features_out_: the embedding's dimension.

  Example:
    >>> rng = np.random.default_rng(0)
    >>> behaviour = [rng.normal(size=(300, 2)).astype(np.float32) for _ in range(4)]
    >>> neural = [np.c_[b, b @ rng.normal(size=(2, 3))] for b in behaviour]
    >>> model = NAREstimator(num_train_steps=4, batch_size=8, window_frames=8,
    ...                      config_overrides={"model.width": 8, "model.features": 8})
    >>> model = model.fit(neural, behaviour, ["a", "a", "b", "b"])  # doctest: +SKIP
    >>> model.transform(neural[0], "a").shape  # doctest: +SKIP
    (300, 8)
  """

  def __init__(self, *, num_train_steps: int = 500, batch_size: int = 64,
               window_frames: int = 16, fps: float = 30.0, temperature: float = 0.1,
               learning_rate: float = 1e-3, swap: bool = True, features: int = 64,
               adapt_steps: int = 200, config_overrides: dict[str, Any] | None = None,
               workdir: str | None = None, seed: int = 0):
    self.num_train_steps = num_train_steps
    self.batch_size = batch_size
    self.window_frames = window_frames
    self.fps = fps
    self.temperature = temperature
    self.learning_rate = learning_rate
    self.swap = swap
    self.features = features
    self.adapt_steps = adapt_steps
    self.config_overrides = config_overrides
    self.workdir = workdir
    self.seed = seed

  # ------------------------------------------------------------------------------------------
  def make_config(self, data_dir: str, neural_key: str, num_animals: int):
    """The experiment config `fit` trains with."""
    config = config_lib.make_config()
    config.seed = int(self.seed)
    config.data.data_dir, config.data.name = data_dir, "estimator"
    config.data.neural_key = neural_key
    config.data.num_held_out_animals = 0
    config.data.drop_classes = ()
    config.data.window = dict(pose_frames=int(self.window_frames), pose_stride=1,
                              neural_frames=int(self.window_frames))
    config.data.neural_normalisation = "animal"
    config.model.neural_input = "auto"
    config.model.features = int(self.features)
    config.swap.enabled = bool(self.swap) and num_animals >= 2
    config.optim.num_train_steps = int(self.num_train_steps)
    config.optim.global_batch_size = int(self.batch_size)
    config.optim.warmup_steps = min(config.optim.warmup_steps, int(self.num_train_steps) // 2)
    config.optim.temperature = float(self.temperature)
    config.optim.learning_rate = float(self.learning_rate)
    config.eval.enabled = False  # no labels: `transform`, then probes of the user's choice
    config.eval.drop_classes = ()
    config.log_every_steps = max(1, min(config.log_every_steps, int(self.num_train_steps)))
    config.checkpoint_every_steps = max(1, int(self.num_train_steps))
    config.adapt.num_steps = int(self.adapt_steps)
    config_lib.apply_overrides(config, self.config_overrides or {},
                               what="NAREstimator(config_overrides=...)")
    return config

  def _recordings(self, neural, behaviour, animal_ids) -> list[recording_lib.Recording]:
    neural = _session_arrays("neural", neural, ndims=(2, 3))
    behaviour = _session_arrays("behaviour", behaviour, ndims=(2,))
    if isinstance(animal_ids, str):
      animal_ids = [animal_ids]
    animal_ids = [str(a) for a in animal_ids]
    if not len(neural) == len(behaviour) == len(animal_ids):
      raise ValueError(f"give one behaviour array and one animal id per neural array: got "
                       f"{len(neural)} neural, {len(behaviour)} behaviour, "
                       f"{len(animal_ids)} animal ids")
    if len({n.ndim for n in neural}) != 1:
      raise ValueError("neural arrays must all be ROI traces [T, R] or all images [T, H, W]")
    dims = {b.shape[1] for b in behaviour}
    if len(dims) != 1:
      raise ValueError(f"behaviour arrays must share one dimension D, got {sorted(dims)}")
    recordings, trials = [], {}
    for index, (n, b, animal) in enumerate(zip(neural, behaviour, animal_ids)):
      if len(n) != len(b):
        raise ValueError(f"session {index}: neural has {len(n)} frames, behaviour {len(b)}; "
                         "both must be sampled on the same frames")
      trials[animal] = trials.get(animal, -1) + 1
      arrays = {"roi_traces": n} if n.ndim == 2 else {"neural_images": n}
      recordings.append(recording_lib.Recording(
          animal_id=animal, trial_id=f"{trials[animal]:03d}", behaviour=b,
          sync=np.arange(len(b), dtype=np.int64),
          labels=np.full(len(b), recording_lib.UNLABELLED, np.int32), class_names=("any",),
          fps_behaviour=float(self.fps), fps_neural=float(self.fps),
          behaviour_format="vector", behaviour_names=tuple(f"d{i}" for i in range(b.shape[1])),
          source=f"session {index}", **arrays))
    return recordings

  def fit(self, neural, behaviour, animal_ids) -> "NAREstimator":
    """Trains on sessions of several animals.

    Args:
      neural: per-session `[T, R]` ROI traces or `[T, H, W]` images.
      behaviour: per-session `[T, D]` behaviour features on the same frames.
      animal_ids: the animal of each session.

    Returns:
      self.
    """
    recordings = self._recordings(neural, behaviour, animal_ids)
    workdir = epath.Path(self.workdir or tempfile.mkdtemp(prefix="nar_estimator_"))
    data_dir = builder.build_dataset(recordings, os.fspath(workdir / "tfds"),
                                     config_name="estimator", overwrite=True)
    key = "roi_traces" if recordings[0].roi_traces is not None else "neural_images"
    config = self.make_config(os.fspath(data_dir), key,
                              len({r.animal_id for r in recordings}))
    run_dir = workdir / RUN_DIR
    if run_dir.exists():  # a new fit replaces the folder's earlier one
      shutil.rmtree(run_dir)
    loop.train_and_evaluate(config, os.fspath(run_dir))
    (workdir / ESTIMATOR_FILE).write_text(json.dumps(self.get_params(), default=str))
    self.workdir_ = workdir
    self.run_ = run_lib.load_run(run_dir)
    self.n_features_out_ = int(self.run_.config.model.features)
    self.behaviour_dim_ = int(recordings[0].behaviour.shape[1])
    return self

  def transform(self, neural, animal_id, behaviour=None):
    """Embeds sessions: `[T, n_features_out_]` per session, NaN on frames without a full window.

    Args:
      neural: one session's `[T, ...]` array, or a list of them.
      animal_id: the animal (of every session, or one per session).
      behaviour: the sessions' behaviour; needed only to fit the input layer of an animal new
        to a model with per-animal input layers (label-free, `adapt_steps`).

    Returns:
      One array, or a list of them when `neural` is a list.
    """
    validation.check_is_fitted(self, "run_")
    single = isinstance(neural, np.ndarray)
    sessions = [neural] if single else list(neural)
    ids = [animal_id] * len(sessions) if isinstance(animal_id, str) else list(animal_id)
    if behaviour is None:
      behaviour = [np.zeros((len(n), self.behaviour_dim_), np.float32) for n in sessions]
      known = self.run_.embeddable_animals()
      new = sorted({a for a in ids if self.run_.per_animal_input and a not in known})
      if new:
        raise ValueError(f"animals {new} are new to this model, whose ROIs get an input layer "
                         "per animal: pass their behaviour too (transform(neural, animal_id, "
                         "behaviour)) so that their layer can be fitted label-free")
    recordings = self._recordings(sessions, behaviour, ids)
    with tempfile.TemporaryDirectory(prefix="nar_transform_") as folder:
      data_dir = builder.build_dataset(recordings, os.path.join(folder, "tfds"),
                                       config_name="transform")
      summary = embedding.embed(self.run_, data_dir, out_dir=os.path.join(folder, "out"),
                                adapt_steps=int(self.adapt_steps), progress=False)
      table = embedding.read_embeddings(os.path.join(folder, "out"))
    del summary
    outputs = []
    trial_counts: dict[str, int] = {}
    for session, animal in zip(sessions, ids):
      trial_counts[animal] = trial_counts.get(animal, -1) + 1
      rows = (table["animal_id"] == animal) & (table["trial_id"] == f"{trial_counts[animal]:03d}")
      out = np.full((len(session), self.n_features_out_), np.nan, np.float32)
      out[table["centre_frame"][rows]] = table["embeddings"][rows]
      outputs.append(out)
    return outputs[0] if single else outputs

  def fit_transform(self, neural, behaviour=None, animal_ids=None, **unused):
    """`fit`, then `transform` of the same sessions (a list of `[T, n_features_out_]`)."""
    del unused
    if behaviour is None or animal_ids is None:
      raise ValueError("fit_transform needs neural, behaviour and animal_ids")
    return self.fit(neural, behaviour, animal_ids).transform(neural, animal_ids)

  def save(self, path: str | os.PathLike) -> str:
    """Copies the fitted model (its run folder and parameters) to `path`. Returns `path`."""
    validation.check_is_fitted(self, "run_")
    path = epath.Path(path)
    if path.exists():
      raise FileExistsError(f"{path} exists; save into a new folder")
    shutil.copytree(self.run_.workdir, path / RUN_DIR)
    (path / ESTIMATOR_FILE).write_text(json.dumps(
        {"params": self.get_params(), "behaviour_dim": self.behaviour_dim_}, default=str))
    return os.fspath(path)

  @classmethod
  def load(cls, path: str | os.PathLike) -> "NAREstimator":
    """Reads a model written by `save`."""
    path = epath.Path(path)
    if not (path / ESTIMATOR_FILE).exists():
      raise FileNotFoundError(f"{path} holds no {ESTIMATOR_FILE}: not a saved NAREstimator")
    saved = json.loads((path / ESTIMATOR_FILE).read_text())
    params = {k: v for k, v in saved["params"].items() if k != "workdir"}
    model = cls(**params, workdir=os.fspath(path))
    model.workdir_ = path
    model.run_ = run_lib.load_run(path / RUN_DIR)
    model.n_features_out_ = int(model.run_.config.model.features)
    model.behaviour_dim_ = int(saved["behaviour_dim"])
    return model


__all__: Sequence[str] = ("NAREstimator",)
