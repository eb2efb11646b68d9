"""Figures of an evaluation: feature embeddings, confusion matrices and training curves.

Every figure function returns a `matplotlib.figure.Figure` built without pyplot, so it needs
no display and leaves no global figure state; save it with `figure.savefig(path)`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib
from matplotlib import figure as figure_lib
import numpy as np
from sklearn import decomposition
from sklearn import manifold
from sklearn import preprocessing
import threadpoolctl

from nar.eval import features as features_lib

EMBEDDINGS = ("pca", "tsne")
_EMBEDDING_TITLES = {"pca": "PCA", "tsne": "t-SNE"}


def embed_2d(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
  """`[N, D]` features -> `[N, 2]`: PCA or t-SNE of the standardised features.

  Args:
    features: the features.
    method: "pca" (instant, linear) or "tsne" (seconds for a few thousand points; shows
      cluster structure that a linear projection hides).
    seed: t-SNE seed.
  """
  if method not in EMBEDDINGS:
    raise ValueError(f"unknown embedding {method!r}; choose one of {list(EMBEDDINGS)}")
  if len(features) < 3:
    raise ValueError(f"a 2-D embedding needs at least 3 points, got {len(features)}")
  scaled = preprocessing.StandardScaler().fit_transform(np.asarray(features, np.float64))
  if method == "pca":
    components = min(2, scaled.shape[1])
    points = decomposition.PCA(components, random_state=seed).fit_transform(scaled)
    return np.pad(points, ((0, 0), (0, 2 - components)))
  perplexity = float(min(30.0, (len(scaled) - 1) / 3))
  # One thread: t-SNE's OpenMP threads spin against each other on a busy machine (40 points
  # took 5-30 s on 2 shared cores, against 0.1 s on one thread).
  with threadpoolctl.threadpool_limits(1):
    return manifold.TSNE(2, perplexity=perplexity, init="pca",
                         random_state=seed).fit_transform(scaled)


def _scatter(axis, points: np.ndarray, groups: np.ndarray, names: Sequence[str],
             title: str) -> None:
  colours = matplotlib.colormaps["tab10"]
  for group in np.unique(groups):
    chosen = groups == group
    name = names[group] if 0 <= group < len(names) else str(group)
    # Colour by the group's own index, so a class has one colour in every panel.
    axis.scatter(points[chosen, 0], points[chosen, 1], s=4, alpha=0.7, color=colours(group % 10),
                 label=name, linewidths=0)
  axis.set_title(title, fontsize=9)
  axis.set_xticks([])
  axis.set_yticks([])
  axis.legend(fontsize=6, markerscale=2, loc="best", frameon=False)


def embedding_figure(tables: Mapping[str, features_lib.FeatureTable], *, method: str = "pca",
                     max_points: int = 3000, seed: int = 0,
                     title: str = "features") -> figure_lib.Figure:
  """2-D embeddings of feature tables, coloured by action (left) and by animal (right).

  Args:
    tables: row title (e.g. a method) -> its feature table (e.g. of the held-out animals).
    method: "pca" or "tsne", see `embed_2d`.
    max_points: windows drawn per table (a seeded random subset beyond it).
    seed: subset and t-SNE seed.
    title: what the features are, for the figure's title.
  """
  if not tables:
    raise ValueError("embedding_figure needs at least one feature table")
  figure = figure_lib.Figure(figsize=(8, 3.6 * len(tables)), layout="constrained")
  axes = figure.subplots(len(tables), 2, squeeze=False)
  rng = np.random.default_rng(seed)
  for row, (name, table) in enumerate(tables.items()):
    rows = np.arange(len(table))
    if len(rows) > max_points:
      rows = np.sort(rng.choice(rows, max_points, replace=False))
    points = embed_2d(table.features[rows], method, seed)
    _scatter(axes[row, 0], points, table.label[rows], table.class_names,
             f"{name}: coloured by action")
    _scatter(axes[row, 1], points, table.animal[rows], table.animals,
             f"{name}: coloured by animal")
  figure.suptitle(f"{_EMBEDDING_TITLES[method]} of {title}", fontsize=10)
  return figure


def confusion_figure(matrices: Mapping[str, np.ndarray], class_names: Sequence[str], *,
                     columns: int = 4) -> figure_lib.Figure:
  """Row-normalised confusion matrices (%, rows true, columns predicted), one panel each.

  Args:
    matrices: panel title -> `[C, C]` counts.
    class_names: the C class names.
    columns: panels per figure row.
  """
  if not matrices:
    raise ValueError("confusion_figure needs at least one matrix")
  columns = min(columns, len(matrices))
  rows = -(-len(matrices) // columns)
  figure = figure_lib.Figure(figsize=(3.2 * columns, 3.3 * rows), layout="constrained")
  axes = figure.subplots(rows, columns, squeeze=False)
  short = [name.replace("_grooming", " gr.") for name in class_names]
  for axis in axes.ravel()[len(matrices):]:
    axis.set_axis_off()
  for axis, (title, counts) in zip(axes.ravel(), matrices.items()):
    counts = np.asarray(counts, np.float64)
    if counts.shape != (len(class_names), len(class_names)):
      raise ValueError(f"the confusion matrix of {title!r} is {counts.shape}, not "
                       f"{len(class_names)} x {len(class_names)} classes")
    percent = 100 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    accuracy = 100 * np.trace(counts) / max(counts.sum(), 1)
    axis.imshow(percent, vmin=0, vmax=100, cmap="Blues")
    for (i, j), value in np.ndenumerate(percent):
      axis.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=6,
                color="white" if value > 50 else "black")
    axis.set_xticks(range(len(short)), short, rotation=60, ha="right", fontsize=6)
    axis.set_yticks(range(len(short)), short, fontsize=6)
    axis.set_title(f"{title} ({accuracy:.1f} %)", fontsize=8)
  figure.supxlabel("predicted", fontsize=8)
  figure.supylabel("true", fontsize=8)
  return figure


def curves_figure(curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]], *,
                  ylabel: str = "training loss", columns: int = 4) -> figure_lib.Figure:
  """Training curves, one panel per title and one line per run (e.g. per seed).

  Args:
    curves: panel title -> run label (the legend) -> `(steps, values)`.
    ylabel: the quantity.
    columns: panels per figure row.
  """
  if not curves:
    raise ValueError("curves_figure needs at least one curve")
  columns = min(columns, len(curves))
  rows = -(-len(curves) // columns)
  figure = figure_lib.Figure(figsize=(3.2 * columns, 2.6 * rows), layout="constrained")
  axes = figure.subplots(rows, columns, squeeze=False)
  for axis in axes.ravel()[len(curves):]:
    axis.set_axis_off()
  for axis, (title, runs) in zip(axes.ravel(), curves.items()):
    for label, (steps, values) in runs.items():
      axis.plot(steps, values, linewidth=1, label=label)
    axis.legend(fontsize=6, frameon=False)
    axis.set_title(title, fontsize=8)
    axis.tick_params(labelsize=6)
  figure.supxlabel("step", fontsize=8)
  figure.supylabel(ylabel, fontsize=8)
  return figure


# Unlabelled windows (action -1) are drawn in this grey, which no palette colour repeats.
UNLABELLED_COLOUR = (0.6, 0.6, 0.6, 1.0)


def distinct_colours(count: int) -> np.ndarray:
  """`[count, 4]` RGBA colours, no two alike, for `count` classes or animals.

  Up to 54: the qualitative palettes tab20 (its 9 dark colours first, then their light
  pairs), tab20b and tab20c, without their greys (grey is the unlabelled windows' colour).
  Beyond: evenly spaced samples of the perceptual colormap "turbo".

  Example:
    >>> colours = distinct_colours(20)
    >>> colours.shape, len({tuple(c) for c in colours})
    ((20, 4), 20)
  """
  if count < 0:
    raise ValueError(f"count must be >= 0, got {count}")
  tab20 = np.asarray(matplotlib.colormaps["tab20"].colors)
  palette = np.concatenate([tab20[0::2], tab20[1::2],
                            np.asarray(matplotlib.colormaps["tab20b"].colors),
                            np.asarray(matplotlib.colormaps["tab20c"].colors)])
  palette = palette[np.ptp(palette, axis=1) > 0]  # drop the greys
  if count <= len(palette):
    return np.concatenate([palette[:count], np.ones((count, 1))], axis=1)
  return matplotlib.colormaps["turbo"](np.linspace(0, 1, count))


def _group_name(names: Sequence[str] | None, group: int) -> str:
  return names[group] if names is not None and 0 <= group < len(names) else str(group)


def _draw_groups(axis, points: np.ndarray, groups: np.ndarray, names: Sequence[str] | None,
                 title: str) -> None:
  """Scatters points coloured by group (negative groups: unlabelled), legend outside."""
  labelled = groups[groups >= 0]
  count = max(len(names) if names is not None else 0,
              int(labelled.max()) + 1 if len(labelled) else 0)
  colours = distinct_colours(count)
  for group in np.unique(groups):
    chosen = groups == group
    if group < 0:
      colour, name = UNLABELLED_COLOUR, "unlabelled"
    else:
      # Colour by the group's own index, so that a name has one colour whichever are drawn.
      colour, name = colours[group], _group_name(names, int(group))
    axis.scatter(points[chosen, 0], points[chosen, 1], s=4, alpha=0.7, color=colour,
                 label=name, linewidths=0)
  axis.set_title(title, fontsize=9)
  axis.set_xticks([])
  axis.set_yticks([])
  entries = len(np.unique(groups))
  axis.legend(fontsize=6, markerscale=2, frameon=False, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), ncols=-(-entries // 25))


def _labels(values, name: str, length: int) -> np.ndarray | None:
  if values is None:
    return None
  values = np.asarray(values)
  if values.ndim != 1 or len(values) != length:
    raise ValueError(f"{name} must hold one label per embedding row ({length}), got shape "
                     f"{values.shape}")
  if not np.issubdtype(values.dtype, np.integer):
    raise ValueError(f"{name} must be integer labels, got dtype {values.dtype}")
  return values.astype(np.int64)


def plot_embeddings(embeddings: np.ndarray, *, actions: np.ndarray | None = None,
                    animals: np.ndarray | None = None,
                    class_names: Sequence[str] | None = None,
                    animal_names: Sequence[str] | None = None, method: str = "pca",
                    seed: int = 0, max_points: int = 20000) -> figure_lib.Figure:
  """2-D projection of embeddings, one panel coloured by action and one by animal.

  Only the panels whose labels are given are drawn (a single uncoloured panel without any).
  Colours never repeat within a panel (`distinct_colours`); unlabelled windows (action -1)
  are grey, "unlabelled" in the legend, which sits outside the axes.

  Args:
    embeddings: `[N, D]` features or embeddings of N windows.
    actions: `[N]` optional action class of each window, -1 where unlabelled.
    animals: `[N]` optional animal index of each window.
    class_names: names of the action classes, indexed by `actions`.
    animal_names: names of the animals, indexed by `animals`.
    method: "pca" or "tsne", see `embed_2d`.
    seed: the subset and t-SNE seed.
    max_points: windows drawn at most: a seeded random subset beyond it.

  Returns:
    The figure.

  Raises:
    ValueError: `embeddings` is not `[N, D]`, or `actions` / `animals` do not hold one
      integer label per row.

  Example:
    >>> rng = np.random.default_rng(0)
    >>> embeddings = rng.normal(size=(300, 8))
    >>> figure = plot_embeddings(embeddings, actions=rng.integers(-1, 3, 300),
    ...                          animals=rng.integers(0, 12, 300),
    ...                          class_names=("walk", "groom", "rest"))
    >>> [axis.get_title() for axis in figure.axes]
    ['coloured by action', 'coloured by animal']
    >>> legend = figure.axes[1].get_legend()
    >>> len({tuple(handle.get_facecolor()[0]) for handle in legend.legend_handles})
    12
  """
  embeddings = np.asarray(embeddings)
  if embeddings.ndim != 2:
    raise ValueError(f"embeddings must be [N, D], got shape {embeddings.shape}")
  if max_points < 3:
    raise ValueError(f"max_points must be >= 3 (a 2-D embedding needs 3 points), got "
                     f"{max_points}")
  panels = [(values, names, title) for values, names, title in (
      (_labels(actions, "actions", len(embeddings)), class_names, "coloured by action"),
      (_labels(animals, "animals", len(embeddings)), animal_names, "coloured by animal"))
            if values is not None]
  rows = np.arange(len(embeddings))
  if len(rows) > max_points:
    rows = np.sort(np.random.default_rng(seed).choice(rows, max_points, replace=False))
  points = embed_2d(embeddings[rows], method, seed)
  figure = figure_lib.Figure(figsize=(4.6 * max(len(panels), 1), 3.6), layout="constrained")
  axes = figure.subplots(1, max(len(panels), 1), squeeze=False)[0]
  for axis, (values, names, title) in zip(axes, panels):
    _draw_groups(axis, points, values[rows], names, title)
  if not panels:
    axes[0].scatter(points[:, 0], points[:, 1], s=4, alpha=0.7, linewidths=0)
    axes[0].set_xticks([])
    axes[0].set_yticks([])
  figure.suptitle(f"{_EMBEDDING_TITLES[method]} of {len(rows)} windows", fontsize=10)
  return figure
