"""Frozen features of windows: encoded in batches into a `FeatureTable`, saved and loaded.

The probes (`nar.eval.protocol`) read a `FeatureTable`: the features of every window of one
selection, with its animal, trial, label, centre frame and identity time block, and the
(normalised) behaviour of its centre frame for the continuous decoders.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from etils import epath
import numpy as np

from nar.data import normalise
from nar.data import pipeline
from nar.data import shards
from nar.data import windows


# The columns every table has, one row per window.
ROW_COLUMNS = ("features", "label", "animal", "trial", "centre_frame", "time_block")
# How a table's features are normalised after encoding, the input's choices
# (`normalise.MODES`): "none", or "animal": each feature standardised with the animal's own
# mean and spread (`animal_feature_statistics`).
FEATURE_NORMALISATIONS = normalise.MODES


@dataclasses.dataclass(frozen=True)
class FeatureTable:
  """Frozen features of a window selection and what each window is.

  Attributes:
    features: `[N, D]` features of each window.
    label: `[N]` behaviour class of the centre frame.
    animal: `[N]` index into `animals`.
    trial: `[N]` index into the dataset's trials.
    centre_frame: `[N]` centre behaviour frame within the trial.
    time_block: `[N]` time block of the window among `num_time_blocks` equal blocks of its
      trial, or -1 where the window straddles two blocks (used by no time-block split).
    num_time_blocks: how many blocks each trial is cut into.
    animals: animal names, indexed by `animal`.
    class_names: class names, indexed by `label`.
    behaviour: `[N, B]` optional normalised behaviour features of each window's centre frame
      (the targets of the behaviour decoder), or None where not recorded (older tables).
    behaviour_names: names of the B behaviour dimensions (`BehaviourSpec.feature_names`), or
      () where unknown.
  """

  features: np.ndarray
  label: np.ndarray
  animal: np.ndarray
  trial: np.ndarray
  centre_frame: np.ndarray
  time_block: np.ndarray
  num_time_blocks: int
  animals: tuple[str, ...]
  class_names: tuple[str, ...] = ()
  behaviour: np.ndarray | None = None
  behaviour_names: tuple[str, ...] = ()

  def __post_init__(self):
    lengths = {len(getattr(self, name)) for name in self.row_columns()}
    if len(lengths) != 1:
      raise ValueError(f"feature table columns differ in length: {sorted(lengths)}")
    if self.features.ndim != 2:
      raise ValueError(f"features must be [N, D], got shape {self.features.shape}")
    if self.behaviour is not None and self.behaviour.ndim != 2:
      raise ValueError(f"behaviour must be [N, B], got shape {self.behaviour.shape}")

  def row_columns(self) -> tuple[str, ...]:
    """The names of the columns with a row per window (`behaviour` where present)."""
    return ROW_COLUMNS + (() if self.behaviour is None else ("behaviour",))

  def __len__(self) -> int:
    return len(self.label)

  def animal_index(self, names: Sequence[str]) -> list[int]:
    """Indices of animal `names` in `animals`."""
    unknown = sorted(set(names) - set(self.animals))
    if unknown:
      raise ValueError(f"unknown animals {unknown}; the table has {list(self.animals)}")
    return [self.animals.index(name) for name in names]


def window_time_blocks(dataset: shards.ShardedDataset, spec: windows.WindowSpec,
                       index: pipeline.WindowIndex, count: int) -> np.ndarray:
  """`[N]` time block (of `count` per trial) of each window, -1 where it straddles two."""
  offsets = dataset.behaviour_index.offsets
  blocks = np.full(len(index), -1, np.int64)
  for trial in np.unique(index.trial):
    rows = np.flatnonzero(index.trial == trial)
    num_frames = int(offsets[trial + 1] - offsets[trial])
    for block in range(count):
      inside = pipeline.TimeBlock(block, count).contains(index.centre[rows], num_frames,
                                                               spec)
      blocks[rows[inside]] = block
  return blocks


def pad_batch(array: np.ndarray, size: int) -> np.ndarray:
  """Fills a short last batch up to `size` by repeating its last window, so that a jitted
  encoder sees one batch shape.

  Example:
    >>> pad_batch(np.array([1, 2]), 4).tolist()
    [1, 2, 2, 2]
  """
  if len(array) >= size:
    return array
  return np.concatenate([array, np.repeat(array[-1:], size - len(array), axis=0)])


def encode_windows(encode: Callable[..., Any], source: pipeline.WindowSource, *,
                   neural_key: str, batch_size: int,
                   with_animal: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """Runs a model-agnostic encoder over every window of a source, in order.

  Args:
    encode: maps a neural batch `[batch_size, ...]` to features `[batch_size, D]` (e.g. a
      jitted neural encoder); always called with `batch_size` windows (the last batch padded
      by repeating its last window), so a jitted encoder compiles once.
    source: the windows.
    neural_key: which neural array the encoder reads.
    batch_size: windows per call.
    with_animal: call `encode(neural, animal)` with the `[batch_size]` animal index of each
      window too (an encoder with a per-animal input layer needs it).

  Returns:
    `(features [N, D], fields)`, fields holding `label`, `animal`, `trial`, `centre_frame`
    `[N]` and, where the source yields pose windows, `behaviour` `[N, B]`: the normalised
    behaviour features of each window's centre frame.
  """
  features = []
  fields = {"label": [], "animal": [], "trial": [], "centre_frame": []}
  loader = pipeline.make_loader(source, batch_size=batch_size, train=False, shard=(0, 1))
  for batch in loader:
    if "pose" in batch:
      # The centre frame sits at offset 0 of the window, index pose_frames // 2
      # (`windows.WindowSpec.pose_offsets`).
      pose = np.asarray(batch["pose"])
      fields.setdefault("behaviour", []).append(pose[:, pose.shape[1] // 2])
    neural = np.asarray(batch[neural_key])
    count = len(neural)
    arguments = [pad_batch(neural, batch_size)]
    if with_animal:
      arguments.append(pad_batch(np.asarray(batch["animal"], np.int32), batch_size))
    features.append(np.asarray(encode(*arguments), np.float32)[:count])
    for name in ("label", "animal", "trial", "centre_frame"):
      fields[name].append(np.asarray(batch[name]))
  return np.concatenate(features), {k: np.concatenate(v) for k, v in fields.items()}


def animal_feature_statistics(features: np.ndarray, animal: np.ndarray, num_animals: int
                              ) -> tuple[np.ndarray, np.ndarray]:
  """Each animal's mean and spread of every feature, for `standardise_features`.

  Args:
    features: `[N, D]` features of some windows.
    animal: `[N]` animal index of each window, in `[0, num_animals)`.
    num_animals: how many animals the index spans.

  Returns:
    `(mean, scale)`, both `[num_animals, D]` float32: the mean of every feature over the
    animal's windows, and its std floored as the input's is (`normalise.floored_scale`);
    NaN rows for animals without a window.

  Example:
    >>> features = np.array([[0.0, 1.0], [2.0, 1.0], [10.0, 5.0], [12.0, 7.0]])
    >>> mean, scale = animal_feature_statistics(features, np.array([0, 0, 1, 1]), 2)
    >>> mean.tolist(), scale.astype(float).round(3).tolist()
    ([[1.0, 1.0], [11.0, 6.0]], [[1.025, 0.025], [1.05, 1.05]])
  """
  features = np.asarray(features, np.float64)
  mean = np.full((num_animals, features.shape[1]), np.nan)
  scale = np.full_like(mean, np.nan)
  for index in np.unique(animal):
    rows = features[animal == index]
    mean[index] = rows.mean(axis=0)
    scale[index] = normalise.floored_scale(rows.std(axis=0))
  return mean.astype(np.float32), scale.astype(np.float32)


def standardise_features(features: np.ndarray, animal: np.ndarray, mean: np.ndarray,
                         scale: np.ndarray) -> np.ndarray:
  """`[N, D]` features standardised with their animals' statistics
  (`animal_feature_statistics`).

  Raises:
    ValueError: a window's animal has no statistics.

  Example:
    >>> mean, scale = np.array([[1.0], [10.0]]), np.array([[2.0], [5.0]])
    >>> standardise_features(np.array([[3.0], [0.0]]), np.array([0, 1]), mean, scale).tolist()
    [[1.0], [-2.0]]
  """
  missing = sorted({int(a) for a in np.unique(animal) if not np.isfinite(mean[a]).all()})
  if missing:
    raise ValueError(f"no feature statistics for animals {missing}: they have no window in "
                     f"the calibration period")
  return ((features - mean[animal]) / scale[animal]).astype(np.float32)


def calibration_windows(dataset: shards.ShardedDataset, spec: windows.WindowSpec, *,
                        hop: int, num_time_blocks: int,
                        animals: Sequence[str] | None = None) -> pipeline.WindowIndex:
  """The windows the feature statistics are fitted on, labelled or not: every `hop`-th window
  of each trial's time blocks before the last, the one the identity probe tests on (as the
  input's statistics, `nar.data.normalise`, stay out of it)."""
  index = pipeline.select_windows(dataset, spec, animals=animals, hop=hop)
  blocks = window_time_blocks(dataset, spec, index, num_time_blocks)
  keep = (blocks >= 0) & (blocks < num_time_blocks - 1)
  return pipeline.WindowIndex(trial=index.trial[keep], centre=index.centre[keep])


def _union_of_windows(*indices: pipeline.WindowIndex
                      ) -> tuple[pipeline.WindowIndex, list[np.ndarray]]:
  """Every window of `indices` once, and for each index the rows of the union it maps to."""
  trial = np.concatenate([index.trial for index in indices])
  centre = np.concatenate([index.centre for index in indices])
  union, inverse = np.unique(np.stack([trial, centre], axis=1), axis=0, return_inverse=True)
  bounds = np.cumsum([0] + [len(index) for index in indices])
  rows = [inverse.reshape(-1)[start:end] for start, end in zip(bounds[:-1], bounds[1:])]
  return pipeline.WindowIndex(trial=union[:, 0], centre=union[:, 1]), rows


def build_feature_table(encode: Callable[..., Any], dataset: shards.ShardedDataset,
                        spec: windows.WindowSpec, normalizer: windows.PoseNormalizer, *,
                        neural_key: str, hop: int, drop_classes: Sequence[str],
                        num_time_blocks: int, batch_size: int, pad_rois: bool | int = False,
                        with_animal: bool = False,
                        neural_normalizer: normalise.NeuralNormalizer | None = None,
                        animals: Sequence[str] | None = None,
                        feature_normalisation: str = "none") -> FeatureTable:
  """Extracts the features of every labelled, evaluated window of every animal once.

  Args:
    encode: neural batch -> features (or `(neural, animal)` -> features with
      `with_animal`), as in `encode_windows`.
    dataset: an opened dataset.
    spec: window geometry.
    normalizer: pose z-scoring (of the training animals); needed to cut windows, and the
      features themselves when `neural_key` is "pose".
    neural_key: which neural array the encoder reads, or "pose" to encode the normalised pose
      window instead (behaviour baselines).
    hop: keep every `hop`-th valid centre frame.
    drop_classes: classes left out of the evaluation (e.g. `("resting",)`).
    num_time_blocks: blocks each trial is cut into for the time-block splits.
    batch_size: windows per encoder call.
    pad_rois: pad ROI traces whose counts differ between animals, as
      `pipeline.WindowSource` does (for a per-animal input layer).
    with_animal: pass each window's animal index to `encode` too.
    neural_normalizer: the per-animal standardisation the encoder was trained with, or None.
    animals: only these animals' windows (`animal` still indexes every dataset animal);
      None: every animal.
    feature_normalisation: "none", or "animal": every animal's features standardised with
      its own statistics (`animal_feature_statistics`), fitted without labels on its
      `calibration_windows`, which are encoded for it: what a linear probe reads of the
      animal from feature means and spreads is removed, for new animals too.

  Returns:
    The feature table, with the normalised behaviour of each window's centre frame;
    unlabelled windows and `drop_classes` are excluded.
  """
  if feature_normalisation not in FEATURE_NORMALISATIONS:
    raise ValueError(f"unknown feature_normalisation {feature_normalisation!r}; choose one "
                     f"of {FEATURE_NORMALISATIONS}")

  def encode_index(index):
    source = pipeline.WindowSource(
        dataset, index, spec, normalizer,
        neural_keys=() if neural_key == "pose" else (neural_key,), pad_rois=pad_rois,
        neural_normalizer=neural_normalizer)
    return encode_windows(encode, source, neural_key=neural_key, batch_size=batch_size,
                          with_animal=with_animal)

  index = pipeline.select_windows(dataset, spec, animals=animals, hop=hop,
                                  drop_unlabelled=True, drop_classes=tuple(drop_classes))
  if feature_normalisation == "animal":
    calibration = calibration_windows(dataset, spec, hop=hop, num_time_blocks=num_time_blocks,
                                      animals=animals)
    # A window both probed and calibrated on is encoded once.
    union, (table_rows, calibration_rows) = _union_of_windows(index, calibration)
    every_feature, every_field = encode_index(union)
    mean, scale = animal_feature_statistics(every_feature[calibration_rows],
                                            every_field["animal"][calibration_rows],
                                            len(dataset.animals))
    fields = {name: values[table_rows] for name, values in every_field.items()}
    features = standardise_features(every_feature[table_rows], fields["animal"], mean, scale)
  else:
    features, fields = encode_index(index)
  behaviour = fields.get("behaviour")
  return FeatureTable(
      features=features, label=fields["label"].astype(np.int64),
      animal=fields["animal"].astype(np.int64), trial=fields["trial"].astype(np.int64),
      centre_frame=fields["centre_frame"].astype(np.int64),
      time_block=window_time_blocks(dataset, spec, index, num_time_blocks),
      num_time_blocks=num_time_blocks, animals=tuple(dataset.animals),
      class_names=tuple(dataset.class_names),
      behaviour=None if behaviour is None else behaviour.astype(np.float32),
      behaviour_names=tuple(dataset.behaviour_spec.feature_names))


def save_feature_table(table: FeatureTable, path, animals: Sequence[str] | None = None) -> None:
  """Writes the windows of some animals (all if None) of a table to an `.npz` file.

  Args:
    table: the feature table.
    path: where to write (a local or `etils.epath` path).
    animals: names of the animals whose windows are kept; `animal` keeps indexing the
      table's full `animals`.

  Example:
    >>> import tempfile
    >>> table = FeatureTable(
    ...     features=np.zeros((2, 3), np.float32), label=np.array([0, 1]),
    ...     animal=np.array([0, 1]), trial=np.array([0, 1]), centre_frame=np.array([5, 5]),
    ...     time_block=np.array([0, 0]), num_time_blocks=2, animals=("fly0", "fly1"),
    ...     behaviour=np.ones((2, 4), np.float32))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...   save_feature_table(table, f"{folder}/features.npz", animals=["fly1"])
    ...   loaded = load_feature_table(f"{folder}/features.npz")
    >>> len(loaded), loaded.behaviour.shape, loaded.animals
    (1, (1, 4), ('fly0', 'fly1'))
  """
  rows = np.ones(len(table), bool) if animals is None else np.isin(
      table.animal, table.animal_index(animals))
  columns = {name: getattr(table, name)[rows] for name in table.row_columns()}
  with epath.Path(path).open("wb") as f:
    np.savez(f, **columns, num_time_blocks=table.num_time_blocks,
             animals=np.array(table.animals, str), class_names=np.array(table.class_names, str),
             behaviour_names=np.array(table.behaviour_names, str))


def load_feature_table(path) -> FeatureTable:
  """Reads a table written by `save_feature_table`; one written before tables had a
  behaviour column reads back with `behaviour=None`."""
  with epath.Path(path).open("rb") as f, np.load(f) as arrays:
    return FeatureTable(
        features=arrays["features"], label=arrays["label"], animal=arrays["animal"],
        trial=arrays["trial"], centre_frame=arrays["centre_frame"],
        time_block=arrays["time_block"], num_time_blocks=int(arrays["num_time_blocks"]),
        animals=tuple(str(a) for a in arrays["animals"]),
        class_names=tuple(str(c) for c in arrays["class_names"]),
        behaviour=arrays["behaviour"] if "behaviour" in arrays else None,
        behaviour_names=tuple(str(n) for n in arrays.get("behaviour_names", ())))
