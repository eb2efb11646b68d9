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
