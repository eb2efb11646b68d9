"""Figures: embeddings, confusion matrices and curves render headless and check their inputs."""

import numpy as np
import pytest
from test_evaluation import synthetic_table

from nar.eval import plots


@pytest.mark.parametrize("method", plots.EMBEDDINGS)
def test_embeddings_are_two_dimensional(method):
  features = np.random.default_rng(0).normal(size=(40, 5))
  assert plots.embed_2d(features, method).shape == (40, 2)
  assert plots.embed_2d(features[:, :1], "pca").shape == (40, 2)  # padded from one component


def test_figures_render_and_save(tmp_path):
  table = synthetic_table("label")
  figures = {
      "embedding": plots.embedding_figure({"Ours": table, "SimCLR": table}, max_points=50,
                                          title="held-out features"),
      "confusion": plots.confusion_figure({"Ours": np.eye(4) * 5 + 1}, table.class_names),
      "curves": plots.curves_figure({"Ours": {"seed 0": (np.arange(5), np.arange(5.0))}}),
  }
  assert figures["embedding"].texts[0].get_text() == "PCA of held-out features"
  for name, figure in figures.items():
    figure.savefig(tmp_path / f"{name}.png")
    assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_bad_inputs_say_what_is_wrong():
  with pytest.raises(ValueError, match="unknown embedding 'umap'"):
    plots.embed_2d(np.zeros((5, 2)), "umap")
  with pytest.raises(ValueError, match="is \\(3, 3\\), not 4 x 4 classes"):
    plots.confusion_figure({"Ours": np.ones((3, 3))}, ["a", "b", "c", "d"])
  with pytest.raises(ValueError, match="at least one"):
    plots.curves_figure({})


def _legend_colours(axis):
  return {tuple(np.round(handle.get_facecolor()[0], 6))
          for handle in axis.get_legend().legend_handles}


def test_ten_animals_get_ten_distinct_colours_and_unlabelled_windows_grey():
  rng = np.random.default_rng(0)
  embeddings = rng.normal(size=(500, 6))
  actions = rng.integers(-1, 4, 500)
  animals = np.arange(500) % 10
  figure = plots.plot_embeddings(embeddings, actions=actions, animals=animals,
                                 class_names=("walk", "groom", "rest", "turn"),
                                 animal_names=[f"fly{a}" for a in range(10)])
  assert len(figure.axes) == 2
  action_axis, animal_axis = figure.axes
  assert len(_legend_colours(animal_axis)) == 10
  assert [t.get_text() for t in animal_axis.get_legend().get_texts()] == [
      f"fly{a}" for a in range(10)]
  labels = [t.get_text() for t in action_axis.get_legend().get_texts()]
  assert labels == ["unlabelled", "walk", "groom", "rest", "turn"]
  grey = tuple(np.round(action_axis.get_legend().legend_handles[0].get_facecolor()[0][:3], 6))
  assert grey == (0.6, 0.6, 0.6) and len(_legend_colours(action_axis)) == 5
  # Colours do not repeat for many more animals either.
  for count in (20, 54, 80):
    assert len({tuple(c) for c in plots.distinct_colours(count)}) == count


def test_only_the_panels_whose_labels_are_given_are_drawn(tmp_path):
  rng = np.random.default_rng(0)
  embeddings = rng.normal(size=(60, 4))
  figure = plots.plot_embeddings(embeddings, animals=np.arange(60) % 3)
  assert [axis.get_title() for axis in figure.axes] == ["coloured by animal"]
  assert len(plots.plot_embeddings(embeddings).axes) == 1
  figure.savefig(tmp_path / "embedding.png")
  assert (tmp_path / "embedding.png").stat().st_size > 1000


def test_embeddings_above_max_points_are_subsampled_by_the_seed():
  rng = np.random.default_rng(0)
  embeddings = rng.normal(size=(300, 4))
  animals = np.arange(300) % 4
  offsets = lambda seed: np.concatenate([
      c.get_offsets() for c in plots.plot_embeddings(
          embeddings, animals=animals, max_points=100, seed=seed).axes[0].collections])
  assert len(offsets(0)) == 100
  np.testing.assert_array_equal(offsets(0), offsets(0))
  assert not np.array_equal(offsets(0), offsets(1))


def test_labels_of_the_wrong_length_name_their_argument():
  embeddings = np.zeros((10, 3))
  with pytest.raises(ValueError, match="actions must hold one label per embedding row"):
    plots.plot_embeddings(embeddings, actions=np.zeros(9, int))
  with pytest.raises(ValueError, match="animals must hold one label per embedding row"):
    plots.plot_embeddings(embeddings, animals=np.zeros(11, int))
  with pytest.raises(ValueError, match="embeddings must be"):
    plots.plot_embeddings(np.zeros(10))
