"""Probes on frozen features: action and identity classifiers, and behaviour regression.

* `fit_linear_probe`: multinomial logistic regression on standardised features.
* `fit_knn_probe`: k-nearest neighbours on standardised features (a non-linear read-out: how
  much of the class the neighbourhoods of the feature space hold, linearly separable or not).
* `fit_ridge_decoder`: ridge regression from standardised features to continuous behaviour,
  scored by R² per behaviour dimension (`ridge_scores`).

Each probe's hyperparameter (C, k or alpha) is chosen by cross-validation on the probe's own
training data only.
"""

from __future__ import annotations

from typing import Any

import joblib
import numpy as np
from sklearn import linear_model
from sklearn import metrics
from sklearn import model_selection
from sklearn import neighbors
from sklearn import pipeline
from sklearn import preprocessing


def _classifier_folds(features: np.ndarray, targets: np.ndarray, groups: np.ndarray | None,
                      seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """Up to 3 stratified (and grouped, with `groups`) CV folds; empty where none can be cut.

  A fold whose training part holds a single class cannot be fitted: then no fold is returned.
  """
  _, counts = np.unique(targets, return_counts=True)
  if groups is not None:
    groups = np.asarray(groups)
    if groups.shape != targets.shape:
      raise ValueError(f"groups {groups.shape} and targets {targets.shape} differ in shape")
  folds = int(min(3, counts.max() if groups is None else len(np.unique(groups))))
  splits = []
  if folds >= 2:
    if groups is None:
      splitter = model_selection.StratifiedKFold(folds, shuffle=True, random_state=seed)
    else:
      splitter = model_selection.StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(features, targets, groups))
  if any(len(np.unique(targets[train])) < 2 for train, _ in splits):
    return []
  return splits


def _search_jobs(n_jobs: int | None, fits: int) -> int | None:
  """GridSearchCV's `n_jobs`: more processes than fits would only cost their start-up."""
  n_jobs = min(joblib.effective_n_jobs(n_jobs), fits)
  return None if n_jobs == 1 else n_jobs


def _checked_targets(targets) -> np.ndarray:
  """The targets as an array, checked to hold two classes or more."""
  targets = np.asarray(targets)
  classes = np.unique(targets)
  if len(classes) < 2:
    raise ValueError(f"a probe needs at least two classes, got {classes.tolist()}")
  return targets


def fit_linear_probe(features: np.ndarray, targets: np.ndarray, *,
                     groups: np.ndarray | None = None, seed: int = 0,
                     regularisation_grid=(0.01, 0.1, 1.0),
                     max_iter: int = 1000, n_jobs: int | None = None) -> pipeline.Pipeline:
  """Fits standardisation + logistic regression, choosing C by 3-fold CV on the given data.

  Args:
    features: `[N, D]` training features.
    targets: `[N]` training targets.
    groups: `[N]` optional group of each sample (e.g. a trial's time block): a group lies
      wholly in one CV fold. Overlapping windows of one stretch of recording are near copies
      of each other; split apart, they would make the validation folds flatter the weakest
      regularisation.
    seed: CV fold seed (and the solver's).
    regularisation_grid: the inverse regularisation strengths C searched.
    max_iter: logistic-regression iterations.
    n_jobs: processes that make the cross-validation's fits (one per C and fold) in parallel,
      as joblib counts them (None: 1, -1: every core), at most one per fit. The fitted probe
      does not depend on it.

  Returns:
    The fitted pipeline. Where no C can be validated (fewer than two groups, or samples of
    every class, to split into folds; or a fold whose training part holds a single class),
    the largest C of the grid is used.

  Example:
    >>> rng = np.random.default_rng(0)
    >>> features = rng.normal(size=(60, 3))
    >>> targets = (features[:, 0] > 0).astype(int)
    >>> probe = fit_linear_probe(features, targets)
    >>> {k: round(v, 1) for k, v in probe_scores(probe, features, targets).items()}
    {'accuracy': 98.3, 'balanced_accuracy': 98.4}
  """
  targets = _checked_targets(targets)
  if not regularisation_grid:
    raise ValueError("the regularisation grid is empty")
  probe = pipeline.make_pipeline(
      preprocessing.StandardScaler(),
      linear_model.LogisticRegression(max_iter=max_iter, random_state=seed))
  splits = _classifier_folds(features, targets, groups, seed)
  if not splits:
    probe.set_params(logisticregression__C=max(regularisation_grid))
    return probe.fit(features, targets)
  search = model_selection.GridSearchCV(
      probe, {"logisticregression__C": list(regularisation_grid)}, cv=splits,
      n_jobs=_search_jobs(n_jobs, len(regularisation_grid) * len(splits)))
  return search.fit(features, targets).best_estimator_


def fit_knn_probe(features: np.ndarray, targets: np.ndarray, *,
                  groups: np.ndarray | None = None, seed: int = 0,
                  neighbours_grid=(5, 15, 45), n_jobs: int | None = None) -> pipeline.Pipeline:
  """Fits standardisation + a k-nearest-neighbours classifier, choosing k by 3-fold CV.

  The folds are those of `fit_linear_probe` (stratified; grouped with `groups`), so both
  probes validate on stretches of recording they did not train on.

  Args:
    features: `[N, D]` training features.
    targets: `[N]` training targets.
    groups: `[N]` optional group of each sample (e.g. a trial's time block): a group lies
      wholly in one CV fold (see `fit_linear_probe`).
    seed: CV fold seed.
    neighbours_grid: the neighbour counts k searched; those larger than a fold's training
      part are left out of the search.
    n_jobs: processes that make the cross-validation's fits in parallel, as joblib counts
      them; the fitted probe does not depend on it.

  Returns:
    The fitted pipeline. Where no k can be validated (as for `fit_linear_probe`'s C), the
    smallest k of the grid is used (the least smoothing, as the linear probe then takes its
    weakest regularisation), at most the number of samples.

  Example:
    >>> rng = np.random.default_rng(0)
    >>> features = rng.normal(size=(90, 2))
    >>> targets = (np.hypot(features[:, 0], features[:, 1]) > 1).astype(int)  # a ring
    >>> probe = fit_knn_probe(features, targets, neighbours_grid=(3, 9))
    >>> probe.named_steps["kneighborsclassifier"].n_neighbors
    3
    >>> probe_scores(probe, features, targets)["accuracy"] > 90
    True
  """
  targets = _checked_targets(targets)
  if not neighbours_grid:
    raise ValueError("the neighbours grid is empty")
  if min(neighbours_grid) < 1:
    raise ValueError(f"neighbour counts must be >= 1, got {list(neighbours_grid)}")
  probe = pipeline.make_pipeline(preprocessing.StandardScaler(),
                                 neighbors.KNeighborsClassifier())
  splits = _classifier_folds(features, targets, groups, seed)
  # k neighbours need k training samples in every fold.
  smallest_fold = min((len(train) for train, _ in splits), default=0)
  grid = sorted(int(k) for k in neighbours_grid if k <= smallest_fold)
  if not grid:
    probe.set_params(kneighborsclassifier__n_neighbors=int(
        min(min(neighbours_grid), len(targets))))
    return probe.fit(features, targets)
  search = model_selection.GridSearchCV(
      probe, {"kneighborsclassifier__n_neighbors": grid}, cv=splits,
      n_jobs=_search_jobs(n_jobs, len(grid) * len(splits)))
  return search.fit(features, targets).best_estimator_


def probe_scores(probe, features: np.ndarray, targets: np.ndarray) -> dict[str, float]:
  """Accuracy and balanced accuracy (in %) of a fitted probe."""
  predicted = probe.predict(features)
  return {
      "accuracy": 100.0 * metrics.accuracy_score(targets, predicted),
      "balanced_accuracy": 100.0 * metrics.balanced_accuracy_score(targets, predicted),
  }


def confusion_counts(probe, features: np.ndarray, targets: np.ndarray,
                     classes: np.ndarray) -> list[list[int]]:
  """Confusion matrix of a fitted probe over `classes`: counts, rows true, columns predicted."""
  predicted = probe.predict(features)
  return metrics.confusion_matrix(targets, predicted, labels=classes).tolist()


def subsample_fraction(targets: np.ndarray, fraction: float, seed: int) -> np.ndarray:
  """Indices of a stratified `fraction` of the samples (all of them for fraction 1).

  Example:
    >>> subsample_fraction(np.array([0, 0, 1, 1, 0, 1]), 0.5, seed=0)
    array([2, 4, 5])
  """
  if not 0 < fraction <= 1:
    raise ValueError(f"label fraction must lie in (0, 1], got {fraction}")
  indices = np.arange(len(targets))
  if fraction == 1:
    return indices
  chosen, _ = model_selection.train_test_split(
      indices, train_size=fraction, stratify=targets, random_state=seed)
  return np.sort(chosen)


def _finite_rows(features: np.ndarray, targets: np.ndarray) -> np.ndarray:
  """`[N]` True where a sample's features and targets are all finite."""
  return (np.isfinite(features).reshape(len(features), -1).all(axis=1) &
          np.isfinite(targets).reshape(len(targets), -1).all(axis=1))


def _as_matrix(targets: np.ndarray) -> np.ndarray:
  targets = np.asarray(targets, np.float64)
  return targets[:, None] if targets.ndim == 1 else targets


def fit_ridge_decoder(features: np.ndarray, targets: np.ndarray, *,
                      groups: np.ndarray | None = None,
                      alphas=(0.1, 1, 10, 100)) -> pipeline.Pipeline:
  """Fits standardisation + ridge regression to continuous targets, choosing alpha by CV.

  Samples with a non-finite feature or target (e.g. a missing keypoint) are left out.

  Args:
    features: `[N, D]` training features.
    targets: `[N, B]` (or `[N]`) continuous targets, e.g. behaviour features.
    groups: `[N]` optional group of each sample (e.g. a stretch of recording): alpha is
      validated by `GroupKFold` (up to 3 folds), a group wholly in one fold. Without groups
      the folds are 3 contiguous runs of samples: neighbouring windows overlap, and shuffled
      folds would validate on near copies of their training windows.
    alphas: the regularisation strengths searched (by mean R² over the target dimensions).

  Returns:
    The fitted pipeline. Where no alpha can be validated (fewer than 2 groups, or fewer than
    2 samples per fold), the smallest alpha is used (the weakest regularisation, as
    `fit_linear_probe` takes then).

  Example:
    >>> rng = np.random.default_rng(0)
    >>> features = rng.normal(size=(120, 4))
    >>> targets = features @ rng.normal(size=(4, 2))
    >>> decoder = fit_ridge_decoder(features, targets)
    >>> scores = ridge_scores(decoder, features, targets)
    >>> round(scores["r2_mean"], 2), [round(r2, 2) for r2 in scores["r2_per_dimension"]]
    (1.0, [1.0, 1.0])
  """
  features = np.asarray(features, np.float64)
  targets = _as_matrix(targets)
  if len(features) != len(targets):
    raise ValueError(f"features ({len(features)}) and targets ({len(targets)}) differ in length")
  if not alphas:
    raise ValueError("the alpha grid is empty")
  finite = _finite_rows(features, targets)
  features, targets = features[finite], targets[finite]
  if groups is not None:
    groups = np.asarray(groups)
    if groups.shape != finite.shape:
      raise ValueError(f"groups {groups.shape} and targets {finite.shape} differ in shape")
    groups = groups[finite]
  if not len(targets):
    raise ValueError("no sample with finite features and targets to fit a decoder on")
  decoder = pipeline.make_pipeline(preprocessing.StandardScaler(), linear_model.Ridge())
  if groups is None:
    folds = min(3, len(targets) // 2)
    splitter = model_selection.KFold(folds) if folds >= 2 else None
  else:
    folds = min(3, len(np.unique(groups)))
    splitter = model_selection.GroupKFold(folds) if folds >= 2 else None
  if splitter is None:
    decoder.set_params(ridge__alpha=float(min(alphas)))
    return decoder.fit(features, targets)
  splits = list(splitter.split(features, targets, groups))
  search = model_selection.GridSearchCV(
      decoder, {"ridge__alpha": [float(a) for a in alphas]}, cv=splits, scoring="r2")
  return search.fit(features, targets).best_estimator_


def ridge_scores(decoder, features: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
  """R² of a fitted decoder per target dimension, and their mean.

  Samples with a non-finite feature or target are left out. A dimension whose targets do not
  vary over the scored samples has no R² (its denominator is 0): it is None in
  `r2_per_dimension` and left out of `r2_mean`.

  Returns:
    `{"r2_mean": float, or None where no dimension varies, "r2_per_dimension": [float or
    None per dimension], "num_samples": int}`.

  Example:
    >>> features = np.arange(12.0).reshape(6, 2)
    >>> targets = np.stack([features[:, 0], np.ones(6)], axis=1)  # the second is constant
    >>> decoder = fit_ridge_decoder(features, targets, alphas=(1e-6,))
    >>> scores = ridge_scores(decoder, features, targets)
    >>> round(scores["r2_mean"], 3), scores["r2_per_dimension"][1]
    (1.0, None)
  """
  features = np.asarray(features, np.float64)
  targets = _as_matrix(targets)
  finite = _finite_rows(features, targets)
  features, targets = features[finite], targets[finite]
  per_dimension: list[float | None] = [None] * targets.shape[1]
  varying = np.flatnonzero(np.ptp(targets, axis=0) > 0) if len(targets) else np.zeros(0, int)
  if len(varying):
    predicted = _as_matrix(decoder.predict(features))
    values = metrics.r2_score(targets[:, varying], predicted[:, varying],
                              multioutput="raw_values")
    for dimension, value in zip(varying, values):
      per_dimension[int(dimension)] = float(value)
  known = [value for value in per_dimension if value is not None]
  return {"r2_mean": float(np.mean(known)) if known else None,
          "r2_per_dimension": per_dimension, "num_samples": int(len(targets))}
