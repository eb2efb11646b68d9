"""Linear probes on frozen features: action recognition and identity recognition.

Multinomial logistic regression on standardised features; the regularisation strength is
chosen by cross-validation on the probe's own training data only.
"""

from __future__ import annotations

import joblib
import numpy as np
from sklearn import linear_model
from sklearn import metrics
from sklearn import model_selection
from sklearn import pipeline
from sklearn import preprocessing


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
  targets = np.asarray(targets)
  classes, counts = np.unique(targets, return_counts=True)
  if len(classes) < 2:
    raise ValueError(f"a probe needs at least two classes, got {classes.tolist()}")
  if not regularisation_grid:
    raise ValueError("the regularisation grid is empty")
  probe = pipeline.make_pipeline(
      preprocessing.StandardScaler(),
      linear_model.LogisticRegression(max_iter=max_iter, random_state=seed))
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
  # A fold whose training part holds a single class cannot be fitted: then no C is validated.
  if not splits or any(len(np.unique(targets[train])) < 2 for train, _ in splits):
    probe.set_params(logisticregression__C=max(regularisation_grid))
    return probe.fit(features, targets)
  # More processes than fits would only cost their start-up.
  n_jobs = min(joblib.effective_n_jobs(n_jobs), len(regularisation_grid) * len(splits))
  search = model_selection.GridSearchCV(
      probe, {"logisticregression__C": list(regularisation_grid)}, cv=splits,
      n_jobs=None if n_jobs == 1 else n_jobs)
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
