"""The probe suite of the evaluation protocol: frozen features -> scores.

Features of one window selection are extracted once into a `nar.eval.features.FeatureTable`;
every probe then slices that table in numpy. The suite (`run_probe_suite`) reports, at each
label fraction of the probe's training windows (0.5 and 1.0 by default):

* `action_single_animal`: one probe per animal, trained and tested on the same animal on
  disjoint time blocks (or disjoint trials); mean ± std over animals.
* `action_multi_animal`: one probe trained on the training animals, tested on the held-out
  animals only.
* `identity`: one probe predicting the animal over all animals, trained on the first time
  blocks and tested on the last one (LOWER is better: domain invariance).
* `action_multi_animal_knn`: as `action_multi_animal`, with a k-nearest-neighbours probe
  (`probes.fit_knn_probe`) in place of the linear one.

and, once (ridge regression draws nothing at random, so seeds would repeat it):

* `behaviour_decoding`: ridge regression from the features to the normalised behaviour of each
  window's centre frame (`FeatureTable.behaviour`), trained on the training animals' windows
  and scored on the held-out animals' windows by R² per behaviour dimension.

Class scores are accuracy and balanced accuracy in %. Classes that appear in a probe's test windows
but not in its training windows are kept and scored as errors: the probe cannot predict them,
so they lower accuracy and contribute a recall of 0 to balanced accuracy. Probes that cannot be
fitted (too few windows, a single class) are skipped and listed under `skipped` with a reason.

Standard deviations are population standard deviations (numpy's `ddof=0`); a single value has
a standard deviation of 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence
import warnings

import numpy as np
import threadpoolctl

from nar.eval import features as features_lib
from nar.eval import probes

ACTION_SINGLE_ANIMAL = "action_single_animal"
ACTION_MULTI_ANIMAL = "action_multi_animal"
IDENTITY = "identity"
ACTION_MULTI_ANIMAL_KNN = "action_multi_animal_knn"
BEHAVIOUR_DECODING = "behaviour_decoding"
METRICS = ("accuracy", "balanced_accuracy")
CLASSIFIERS = ("linear", "knn")


# ----------------------------------------------------------------------------------------------
# Protocol settings.
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ProbeProtocol:
  """The choices of the probe suite.

  Attributes:
    label_fractions: fractions of each probe's training windows used (stratified subsample).
    seeds: probe seeds (label subsample and CV folds); scores are averaged over them.
    single_animal_split: "time_blocks" (train on some time blocks of each trial, test on
      another) or "trials" (train on some trials, test on another). Animals with a single
      trial fall back to time blocks under "trials"; the split used is recorded per animal.
    rotate_test_split: test on every block (or trial) in turn and average (k-fold); otherwise
      test only on the last block (or trial).
    min_train_windows: probes with fewer training windows (after subsampling) are skipped.
    min_test_windows: probes with fewer test windows are skipped.
    regularisation_grid: inverse regularisation strengths C searched by CV.
    max_iter: logistic-regression iterations.
    neighbours_grid: neighbour counts k the kNN probe searches by CV.
    ridge_alphas: regularisation strengths the behaviour decoder searches by CV.
    probe_threads: BLAS threads during the fits (None leaves them as they are); small probes
      fit faster on one thread than on many that contend.
    probe_jobs: processes that make a probe's cross-validation fits in parallel (joblib's
      `n_jobs`: -1 every core, 1 none); the scores do not depend on it.
  """

  label_fractions: tuple[float, ...] = (0.5, 1.0)
  seeds: tuple[int, ...] = (0,)
  single_animal_split: str = "time_blocks"
  rotate_test_split: bool = False
  min_train_windows: int = 10
  min_test_windows: int = 5
  regularisation_grid: tuple[float, ...] = (0.01, 0.1, 1.0)
  max_iter: int = 1000
  probe_threads: int | None = 1
  probe_jobs: int = -1
  neighbours_grid: tuple[int, ...] = (5, 15, 45)
  ridge_alphas: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)

  def __post_init__(self):
    if self.single_animal_split not in ("time_blocks", "trials"):
      raise ValueError("single_animal_split must be 'time_blocks' or 'trials', got "
                       f"{self.single_animal_split!r}")
    if not self.label_fractions or not self.seeds:
      raise ValueError("the protocol needs at least one label fraction and one seed")
    for fraction in self.label_fractions:
      if not 0 < fraction <= 1:
        raise ValueError(f"label fractions must lie in (0, 1], got {fraction}")
    if not self.neighbours_grid or min(self.neighbours_grid) < 1:
      raise ValueError(f"neighbours_grid needs counts >= 1, got {self.neighbours_grid!r}")
    if not self.ridge_alphas or min(self.ridge_alphas) <= 0:
      raise ValueError(f"ridge_alphas needs strengths > 0, got {self.ridge_alphas!r}")
    if not isinstance(self.probe_jobs, int) or self.probe_jobs == 0:
      raise ValueError("probe_jobs must be a nonzero integer (-1: every core), got "
                       f"{self.probe_jobs!r}")


def fraction_key(fraction: float) -> str:
  """The results key of a label fraction: `"0.5"`, `"1.0"`."""
  return repr(float(fraction))


# ----------------------------------------------------------------------------------------------
# One probe.
# ----------------------------------------------------------------------------------------------
def label_subset(targets: np.ndarray, fraction: float, seed: int) -> np.ndarray:
  """Indices of a stratified `fraction` of the training windows, seeded.

  Uses `probes.subsample_fraction`; where a class is too rare for its exact stratification,
  keeps `round(fraction * count)` windows of every class, at least one.
  """
  if not len(targets):
    return np.zeros(0, np.int64)
  try:
    return probes.subsample_fraction(targets, fraction, seed)
  except ValueError:
    if not 0 < fraction <= 1:
      raise
  rng = np.random.default_rng(seed)
  chosen = []
  for value in np.unique(targets):
    members = np.flatnonzero(targets == value)
    keep = max(1, int(round(fraction * len(members))))
    chosen.append(rng.choice(members, keep, replace=False))
  return np.sort(np.concatenate(chosen))


def fit_and_score(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                  test_y: np.ndarray, *, fraction: float, seed: int,
                  protocol: ProbeProtocol, train_groups: np.ndarray | None = None,
                  test_groups: np.ndarray | None = None,
                  confusion_classes: np.ndarray | None = None, classifier: str = "linear"
                  ) -> tuple[dict[str, Any] | None, str | None]:
  """Fits one probe on a label fraction of its training windows and scores it.

  Args:
    train_x: `[N_train, D]` training features.
    train_y: `[N_train]` training targets.
    test_x: `[N_test, D]` test features.
    test_y: `[N_test]` test targets; classes absent from training count as errors.
    fraction: label fraction of the training windows.
    seed: subsample and CV seed.
    protocol: the suite's settings.
    train_groups: `[N_train]` optional stretch of recording of each training window (see
      `window_groups`); the probe's cross-validation keeps each stretch in one fold.
    test_groups: `[N_test]` optional group (e.g. animal) of each test window, to also score
      each group.
    confusion_classes: optional classes (rows and columns, in order) of a confusion matrix of
      the test windows to return as `confusion` (counts, rows true, columns predicted).
    classifier: "linear" (`probes.fit_linear_probe`) or "knn" (`probes.fit_knn_probe`).

  Returns:
    `(scores, None)` with `accuracy`, `balanced_accuracy` (%), `num_train`, `num_test` and,
    with `test_groups`, `per_group` scores; or `(None, reason)` when the probe was skipped.
  """
  if classifier not in CLASSIFIERS:
    raise ValueError(f"unknown classifier {classifier!r}; choose one of {list(CLASSIFIERS)}")
  chosen = label_subset(train_y, fraction, seed)
  train_x, train_y = train_x[chosen], train_y[chosen]
  if train_groups is not None:
    train_groups = train_groups[chosen]
  if len(train_y) < protocol.min_train_windows:
    return None, (f"{len(train_y)} training windows, fewer than "
                  f"min_train_windows={protocol.min_train_windows}")
  if len(test_y) < protocol.min_test_windows:
    return None, (f"{len(test_y)} test windows, fewer than "
                  f"min_test_windows={protocol.min_test_windows}")
  if len(np.unique(train_y)) < 2:
    return None, f"a single class {np.unique(train_y).tolist()} in the training windows"
  with threadpoolctl.threadpool_limits(protocol.probe_threads), warnings.catch_warnings():
    # Rare classes make some CV folds miss a class, and a probe can predict classes absent
    # from a test split; both only warn, and both are expected on small animals.
    warnings.simplefilter("ignore", UserWarning)
    warnings.simplefilter("ignore", RuntimeWarning)
    if classifier == "knn":
      probe = probes.fit_knn_probe(train_x, train_y, groups=train_groups, seed=seed,
                                   neighbours_grid=protocol.neighbours_grid,
                                   n_jobs=protocol.probe_jobs)
    else:
      probe = probes.fit_linear_probe(train_x, train_y, groups=train_groups, seed=seed,
                                      regularisation_grid=protocol.regularisation_grid,
                                      max_iter=protocol.max_iter,
                                      n_jobs=protocol.probe_jobs)
    scores: dict[str, Any] = dict(probes.probe_scores(probe, test_x, test_y))
    if test_groups is not None:
      scores["per_group"] = {
          int(group): probes.probe_scores(probe, test_x[test_groups == group],
                                          test_y[test_groups == group])
          for group in np.unique(test_groups)}
    if confusion_classes is not None:
      scores["confusion"] = probes.confusion_counts(probe, test_x, test_y, confusion_classes)
  scores.update(num_train=int(len(train_y)), num_test=int(len(test_y)))
  return scores, None


def summarise(values: Sequence[float]) -> dict[str, float]:
  """Mean and (population) standard deviation of some scores."""
  values = np.asarray(values, np.float64)
  return {"mean": float(values.mean()), "std": float(values.std()), "count": int(len(values))}


# ----------------------------------------------------------------------------------------------
# The probes of the protocol.
# ----------------------------------------------------------------------------------------------
def window_groups(table: features_lib.FeatureTable) -> np.ndarray:
  """`[N]` stretch of recording of each window, for the probes' cross-validation folds.

  A stretch is one time block of one trial of one animal; windows that straddle two blocks
  form a stretch per trial of their own. Neighbouring windows overlap (the hop is shorter
  than a window), so a fold that holds one of them and not the other would validate on
  near copies of its training windows.
  """
  _, trial_ids = np.unique(np.stack([table.animal, table.trial]), axis=1, return_inverse=True)
  return trial_ids.reshape(-1) * (table.num_time_blocks + 1) + table.time_block + 1


def _single_animal_folds(table: features_lib.FeatureTable, rows: np.ndarray, split: str,
                         rotate: bool) -> list[tuple[np.ndarray, np.ndarray]]:
  """`(train_rows, test_rows)` of each fold of one animal's windows."""
  if split == "trials":
    groups, units = table.trial[rows], np.unique(table.trial[rows])
  else:
    groups, units = table.time_block[rows], np.arange(table.num_time_blocks)
  tests = units if rotate else units[-1:]
  folds = []
  for test_unit in tests:
    test = rows[groups == test_unit]
    train = rows[(groups != test_unit) & (groups >= 0)]
    folds.append((train, test))
  return folds


def action_single_animal(table: features_lib.FeatureTable, protocol: ProbeProtocol,
                         skipped: list[dict[str, Any]]) -> dict[str, Any]:
  """Per-animal action probes on disjoint time blocks or trials; mean ± std over animals.

  Args:
    table: the evaluated windows of every animal.
    protocol: the suite's settings.
    skipped: skipped probes are appended here, each with its reason.

  Returns:
    Per label fraction key: per metric `{"mean", "std", "count", "per_animal", "per_seed"}`,
    and `split_per_animal` (the split each animal used).
  """
  results: dict[str, Any] = {}
  splits = {}
  groups = window_groups(table)
  for fraction in protocol.label_fractions:
    per_animal = {metric: {} for metric in METRICS}
    per_seed = {metric: {seed: [] for seed in protocol.seeds} for metric in METRICS}
    for animal_id, animal in enumerate(table.animals):
      rows = np.flatnonzero(table.animal == animal_id)
      if not len(rows):
        skipped.append(dict(probe=ACTION_SINGLE_ANIMAL, fraction=fraction, animal=animal,
                            reason="no evaluated window"))
        continue
      split = protocol.single_animal_split
      if split == "trials" and len(np.unique(table.trial[rows])) < 2:
        split = "time_blocks"  # one trial: only its time blocks are disjoint
      splits[animal] = split
      values = {metric: [] for metric in METRICS}
      for seed in protocol.seeds:
        seed_values = {metric: [] for metric in METRICS}
        for train, test in _single_animal_folds(table, rows, split,
                                                protocol.rotate_test_split):
          scores, reason = fit_and_score(
              table.features[train], table.label[train], table.features[test],
              table.label[test], fraction=fraction, seed=seed, protocol=protocol,
              train_groups=groups[train])
          if scores is None:
            skipped.append(dict(probe=ACTION_SINGLE_ANIMAL, fraction=fraction, animal=animal,
                                seed=seed, reason=reason))
            continue
          for metric in METRICS:
            seed_values[metric].append(scores[metric])
        for metric in METRICS:
          if seed_values[metric]:
            seed_mean = float(np.mean(seed_values[metric]))
            values[metric].append(seed_mean)
            per_seed[metric][seed].append(seed_mean)
      for metric in METRICS:
        if values[metric]:
          per_animal[metric][animal] = float(np.mean(values[metric]))
    entry = {}
    for metric in METRICS:
      if per_animal[metric]:
        entry[metric] = {**summarise(list(per_animal[metric].values())),
                         "per_animal": per_animal[metric],
                         "per_seed": {str(s): float(np.mean(v))
                                      for s, v in per_seed[metric].items() if v}}
    results[fraction_key(fraction)] = entry
  results["split_per_animal"] = splits
  return results


def _over_seeds(runs: list[dict[str, Any]], group_names: Sequence[str] | None
                ) -> dict[str, Any]:
  """Mean ± std over seeds of one probe's scores (and mean per group)."""
  entry = {}
  for metric in METRICS:
    values = [run[metric] for run in runs]
    entry[metric] = {**summarise(values), "per_seed": values}
    if group_names is not None:
      entry[metric]["per_animal"] = {
          group_names[group]: float(np.mean([run["per_group"][group][metric] for run in runs]))
          for group in runs[0]["per_group"]}
  if "confusion" in runs[0]:  # counts add up over seeds
    entry["confusion"] = np.sum([run["confusion"] for run in runs], axis=0).tolist()
  entry["num_train"] = runs[0]["num_train"]
  entry["num_test"] = runs[0]["num_test"]
  return entry


def _multi_animal_probe(table: features_lib.FeatureTable, training_animals: Sequence[str],
                        held_out_animals: Sequence[str], protocol: ProbeProtocol,
                        skipped: list[dict[str, Any]], *, probe: str, classifier: str,
                        with_confusion: bool) -> dict[str, Any]:
  """An action probe trained on the training animals, tested on the held-out animals only."""
  results: dict[str, Any] = {}
  if not held_out_animals:
    skipped.append(dict(probe=probe, reason="no held-out animal"))
    return results
  train = np.isin(table.animal, table.animal_index(training_animals))
  test = np.isin(table.animal, table.animal_index(held_out_animals))
  classes = None
  if with_confusion:
    # Every evaluated class, so that the matrices of all methods on one dataset align.
    classes = np.unique(table.label)
    results["confusion_classes"] = [
        table.class_names[c] if c < len(table.class_names) else str(c) for c in classes]
  groups = window_groups(table)[train]
  for fraction in protocol.label_fractions:
    runs = []
    for seed in protocol.seeds:
      scores, reason = fit_and_score(
          table.features[train], table.label[train], table.features[test], table.label[test],
          fraction=fraction, seed=seed, protocol=protocol, train_groups=groups,
          test_groups=table.animal[test], confusion_classes=classes, classifier=classifier)
      if scores is None:
        skipped.append(dict(probe=probe, fraction=fraction, seed=seed, reason=reason))
      else:
        runs.append(scores)
    results[fraction_key(fraction)] = _over_seeds(runs, table.animals) if runs else {}
  return results


def action_multi_animal(table: features_lib.FeatureTable, training_animals: Sequence[str],
                        held_out_animals: Sequence[str], protocol: ProbeProtocol,
                        skipped: list[dict[str, Any]]) -> dict[str, Any]:
  """Action probe trained on the training animals, tested on the held-out animals only.

  Returns:
    Per label fraction key: per metric `{"mean", "std", "count", "per_seed", "per_animal"}`
    (over seeds; `per_animal`: accuracy on each held-out animal) and `confusion` (test-window
    counts summed over seeds, rows true, columns predicted), empty where skipped; and
    `confusion_classes`, the class names of the confusion matrices' rows and columns.
  """
  return _multi_animal_probe(table, training_animals, held_out_animals, protocol, skipped,
                             probe=ACTION_MULTI_ANIMAL, classifier="linear",
                             with_confusion=True)


def action_multi_animal_knn(table: features_lib.FeatureTable,
                            training_animals: Sequence[str], held_out_animals: Sequence[str],
                            protocol: ProbeProtocol,
                            skipped: list[dict[str, Any]]) -> dict[str, Any]:
  """`action_multi_animal` with a k-nearest-neighbours probe (`probes.fit_knn_probe`).

  Same training and test windows, label fractions and seeds as the linear probe; a
  representation whose classes form neighbourhoods but are not linearly separable scores
  higher here.

  Returns:
    Per label fraction key: per metric `{"mean", "std", "count", "per_seed", "per_animal"}`,
    empty where skipped.
  """
  return _multi_animal_probe(table, training_animals, held_out_animals, protocol, skipped,
                             probe=ACTION_MULTI_ANIMAL_KNN, classifier="knn",
                             with_confusion=False)


def behaviour_decoding(table: features_lib.FeatureTable, training_animals: Sequence[str],
                       held_out_animals: Sequence[str], protocol: ProbeProtocol,
                       skipped: list[dict[str, Any]]) -> dict[str, Any]:
  """Ridge regression from features to behaviour, trained on the training animals' windows
  and scored on the held-out animals' windows (R², higher is better).

  The targets are the normalised behaviour features of each window's centre frame
  (`FeatureTable.behaviour`); windows with a non-finite target are left out. Alpha is chosen
  by CV over stretches of recording (`window_groups`). The fit draws nothing at random, so
  it is made once whatever the protocol's seeds and label fractions.

  Args:
    table: the evaluated windows of every animal.
    training_animals: animals the decoder trains on.
    held_out_animals: animals it is scored on.
    protocol: the suite's settings (`ridge_alphas`, `min_train_windows`, `min_test_windows`).
    skipped: the reason is appended here where the decoder is not fitted (no held-out
      animal, no behaviour column, too few windows).

  Returns:
    `{"r2": {"mean", "std", "count", "per_animal"}` (R² averaged over the behaviour
    dimensions that vary in the test windows; `per_animal`: of each held-out animal's
    windows), `"r2_per_dimension"` (None for a dimension that does not vary),
    `"dimension_names"` (where the table names them), `"alpha"`, `"num_train"`,
    `"num_test"}`; empty where skipped.

  Example:
    >>> rng = np.random.default_rng(0)
    >>> features = rng.normal(size=(80, 3)).astype(np.float32)
    >>> table = features_lib.FeatureTable(
    ...     features=features, label=np.zeros(80, int), animal=np.repeat([0, 1], 40),
    ...     trial=np.repeat([0, 1], 40), centre_frame=np.tile(np.arange(40), 2),
    ...     time_block=np.tile(np.arange(40) // 20, 2), num_time_blocks=2,
    ...     animals=("fly0", "fly1"), behaviour=2 * features[:, :2],
    ...     behaviour_names=("speed", "turn"))
    >>> skipped = []
    >>> result = behaviour_decoding(table, ["fly0"], ["fly1"], ProbeProtocol(), skipped)
    >>> round(result["r2"]["mean"], 2), result["dimension_names"], skipped
    (1.0, ['speed', 'turn'], [])
  """
  if not held_out_animals:
    skipped.append(dict(probe=BEHAVIOUR_DECODING, reason="no held-out animal"))
    return {}
  if table.behaviour is None:
    skipped.append(dict(probe=BEHAVIOUR_DECODING,
                        reason="the feature table has no behaviour column"))
    return {}
  finite = np.isfinite(table.behaviour).all(axis=1) & np.isfinite(table.features).all(axis=1)
  train = np.isin(table.animal, table.animal_index(training_animals)) & finite
  test = np.isin(table.animal, table.animal_index(held_out_animals)) & finite
  reason = None
  if train.sum() < protocol.min_train_windows:
    reason = (f"{train.sum()} training windows, fewer than "
              f"min_train_windows={protocol.min_train_windows}")
  elif test.sum() < protocol.min_test_windows:
    reason = (f"{test.sum()} test windows, fewer than "
              f"min_test_windows={protocol.min_test_windows}")
  if reason is not None:
    skipped.append(dict(probe=BEHAVIOUR_DECODING, reason=reason))
    return {}
  with threadpoolctl.threadpool_limits(protocol.probe_threads):
    decoder = probes.fit_ridge_decoder(
        table.features[train], table.behaviour[train], groups=window_groups(table)[train],
        alphas=protocol.ridge_alphas)
    scores = probes.ridge_scores(decoder, table.features[test], table.behaviour[test])
    per_animal = {}
    for animal in np.unique(table.animal[test]):
      rows = test & (table.animal == animal)
      animal_scores = probes.ridge_scores(decoder, table.features[rows], table.behaviour[rows])
      if animal_scores["r2_mean"] is not None:
        per_animal[table.animals[int(animal)]] = animal_scores["r2_mean"]
  if scores["r2_mean"] is None:
    skipped.append(dict(probe=BEHAVIOUR_DECODING,
                        reason="no behaviour dimension varies in the test windows"))
    return {}
  results: dict[str, Any] = {
      "r2": {**summarise([scores["r2_mean"]]), "per_animal": per_animal},
      "r2_per_dimension": scores["r2_per_dimension"]}
  if len(table.behaviour_names) == table.behaviour.shape[1]:
    results["dimension_names"] = list(table.behaviour_names)
  results.update(alpha=float(decoder.named_steps["ridge"].alpha),
                 num_train=int(train.sum()), num_test=int(test.sum()))
  return results


def identity(table: features_lib.FeatureTable, protocol: ProbeProtocol,
             skipped: list[dict[str, Any]]) -> dict[str, Any]:
  """Identity probe over all animals: trained on the first time blocks, tested on the last.

  LOWER is better: a domain-invariant representation leaves the animal at chance.

  Returns:
    Per label fraction key: per metric `{"mean", "std", "count", "per_seed", "per_animal"}`
    (`per_animal`: how often each animal's test windows are recognised).
  """
  results: dict[str, Any] = {}
  last = table.num_time_blocks - 1
  train = (table.time_block >= 0) & (table.time_block < last)
  test = table.time_block == last
  groups = window_groups(table)[train]
  for fraction in protocol.label_fractions:
    runs = []
    for seed in protocol.seeds:
      scores, reason = fit_and_score(
          table.features[train], table.animal[train], table.features[test],
          table.animal[test], fraction=fraction, seed=seed, protocol=protocol,
          train_groups=groups, test_groups=table.animal[test])
      if scores is None:
        skipped.append(dict(probe=IDENTITY, fraction=fraction, seed=seed, reason=reason))
      else:
        runs.append(scores)
    results[fraction_key(fraction)] = _over_seeds(runs, table.animals) if runs else {}
  return results


def run_probe_suite(table: features_lib.FeatureTable, *, training_animals: Sequence[str],
                    held_out_animals: Sequence[str],
                    protocol: ProbeProtocol = ProbeProtocol()) -> dict[str, Any]:
  """Every probe of the protocol on one feature table.

  Args:
    table: the evaluated windows of every animal (labelled, without dropped classes).
    training_animals: animals the representation and the multi-animal probe train on.
    held_out_animals: animals the multi-animal probe is tested on.
    protocol: the suite's settings.

  Returns:
    A JSON-serialisable dict: `action_single_animal`, `action_multi_animal`, `identity`,
    `action_multi_animal_knn` (per label fraction key `"0.5"`, `"1.0"`, per metric
    `{"mean", "std", ...}`), `behaviour_decoding` (see `behaviour_decoding`), `chance`
    (uniform chance in %), `num_windows`, `skipped` (probes not fitted, with reasons) and
    `protocol`.
  """
  if table.num_time_blocks < 2:
    raise ValueError(f"the time-block splits need >= 2 blocks, got {table.num_time_blocks}")
  skipped: list[dict[str, Any]] = []
  results = {
      ACTION_SINGLE_ANIMAL: action_single_animal(table, protocol, skipped),
      ACTION_MULTI_ANIMAL: action_multi_animal(table, training_animals, held_out_animals,
                                               protocol, skipped),
      IDENTITY: identity(table, protocol, skipped),
      # After the linear probes, which they share no random state with: the linear
      # probes' numbers do not depend on them.
      ACTION_MULTI_ANIMAL_KNN: action_multi_animal_knn(table, training_animals,
                                                       held_out_animals, protocol, skipped),
      BEHAVIOUR_DECODING: behaviour_decoding(table, training_animals, held_out_animals,
                                             protocol, skipped),
  }
  classes, counts = np.unique(table.label, return_counts=True)
  animals, animal_counts = np.unique(table.animal, return_counts=True)
  name = lambda names, i: names[i] if i < len(names) else str(i)
  results["chance"] = {"action": 100.0 / len(classes), "identity": 100.0 / len(animals)}
  results["num_windows"] = {
      "total": int(len(table)),
      "per_class": {name(table.class_names, int(c)): int(n) for c, n in zip(classes, counts)},
      "per_animal": {table.animals[int(a)]: int(n) for a, n in zip(animals, animal_counts)},
  }
  results["skipped"] = skipped
  results["protocol"] = dataclasses.asdict(protocol)
  results["training_animals"] = list(training_animals)
  results["held_out_animals"] = list(held_out_animals)
  return results


# ----------------------------------------------------------------------------------------------
# Several runs and tables.
# ----------------------------------------------------------------------------------------------
def is_summary(node: Any) -> bool:
  """Whether a node of probe-suite results is one score's summary (`{"mean", "std", ...}`)."""
  return isinstance(node, Mapping) and "mean" in node and "std" in node


def headline_scores(results: Mapping[str, Any], probe: str,
                    fraction: float = 1.0) -> dict[str, float] | None:
  """`{"accuracy", "balanced_accuracy"}` means of one probe at one fraction (None if absent)."""
  entry = results.get(probe, {}).get(fraction_key(fraction), {})
  if not all(is_summary(entry.get(metric)) for metric in METRICS):
    return None
  return {metric: entry[metric]["mean"] for metric in METRICS}


def protocol_from_config(eval_config, seed: int = 0) -> ProbeProtocol:
  """The probe settings of a config's `eval` group; fields it lacks keep their defaults.

  Args:
    eval_config: the `eval` ConfigDict (or a mapping).
    seed: the probe seed when the group has no `probe_seeds`.
  """
  defaults = ProbeProtocol()
  get = lambda name, default: eval_config.get(name, default)
  return ProbeProtocol(
      label_fractions=tuple(float(f) for f in get("label_fractions", defaults.label_fractions)),
      seeds=tuple(int(s) for s in get("probe_seeds", (seed,))),
      single_animal_split=get("single_animal_split", defaults.single_animal_split),
      rotate_test_split=bool(get("rotate_test_split", defaults.rotate_test_split)),
      min_train_windows=int(get("min_train_windows", defaults.min_train_windows)),
      min_test_windows=int(get("min_test_windows", defaults.min_test_windows)),
      regularisation_grid=tuple(
          float(c) for c in get("regularisation_grid", defaults.regularisation_grid)),
      max_iter=int(get("max_iter", defaults.max_iter)),
      probe_threads=get("probe_threads", defaults.probe_threads),
      probe_jobs=int(get("probe_jobs", defaults.probe_jobs)),
      neighbours_grid=tuple(int(k) for k in get("neighbours_grid", defaults.neighbours_grid)),
      ridge_alphas=tuple(float(a) for a in get("ridge_alphas", defaults.ridge_alphas)))
