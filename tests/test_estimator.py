"""`nar.NAREstimator`: fit / transform on in-memory sessions, save / load, sklearn's API."""

import numpy as np
import pytest
from sklearn import base
from sklearn import exceptions
from sklearn.utils import estimator_checks

import nar
from nar import run as run_lib

TINY = {"model.width": 8, "model.features": 8, "model.head_hidden": 16, "model.embedding": 8}


def _sessions(seed: int, roi_counts=(5, 5, 4, 4), frames: int = 240):
  """Sessions whose neural traces are noisy mixtures of a random-walk behaviour."""
  rng = np.random.default_rng(seed)
  behaviour, neural = [], []
  for count in roi_counts:
    walk = np.cumsum(rng.normal(size=(frames, 2)), axis=0).astype(np.float32)
    behaviour.append(walk)
    neural.append((walk @ rng.normal(size=(2, count))
                   + 0.1 * rng.normal(size=(frames, count))).astype(np.float32))
  return neural, behaviour


def _estimator(**params):
  return nar.NAREstimator(num_train_steps=4, batch_size=8, window_frames=8, adapt_steps=3,
                          config_overrides=dict(TINY), **params)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
  neural, behaviour = _sessions(0)
  model = _estimator(workdir=str(tmp_path_factory.mktemp("estimator")))
  model.fit(neural, behaviour, ["a", "a", "b", "b"])
  return model, neural, behaviour


def test_fit_trains_through_the_one_trainer_and_transform_embeds_every_full_window(fitted):
  model, neural, _ = fitted
  record = run_lib.read_run_record(model.run_.workdir)
  assert record["training_animals"] == ["a", "b"] and record["held_out_animals"] == []
  assert model.run_.step == 4 and model.run_.per_animal_input  # ROI counts 5 and 4
  embedded = model.transform(neural[0], "a")
  assert embedded.shape == (240, model.n_features_out_) == (240, 8)
  full = ~np.isnan(embedded).any(axis=1)
  # Only frames too close to either end for a whole window stay NaN.
  edges = np.flatnonzero(~full)
  assert 0 < len(edges) < 16 and np.isfinite(embedded[full]).all()
  assert set(edges) <= set(range(8)) | set(range(240 - 8, 240))
  several = model.transform(neural[2:], ["b", "b"])
  assert isinstance(several, list) and len(several) == 2


def test_a_saved_model_loads_back_and_embeds_to_the_bit(fitted, tmp_path):
  model, neural, _ = fitted
  path = model.save(tmp_path / "saved")
  loaded = nar.NAREstimator.load(path)
  assert loaded.get_params()["num_train_steps"] == 4
  np.testing.assert_array_equal(loaded.transform(neural[1], "a"),
                                model.transform(neural[1], "a"))
  with pytest.raises(FileExistsError):
    model.save(path)


def test_a_new_animal_with_rois_of_its_own_needs_its_behaviour_to_fit_its_layer(fitted,
                                                                               tmp_path):
  model, _, _ = fitted
  loaded = nar.NAREstimator.load(model.save(tmp_path / "copy"))  # leave the fixture's alone
  neural, behaviour = _sessions(3, roi_counts=(6,))
  with pytest.raises(ValueError, match="pass their behaviour"):
    loaded.transform(neural[0], "c")
  embedded = loaded.transform(neural[0], "c", behaviour=behaviour[0])
  assert np.isfinite(embedded[100]).all()
  assert "c" in run_lib.read_input_layers(loaded.run_.workdir)


def test_bad_sessions_are_refused_naming_the_session():
  model = _estimator()
  neural, behaviour = _sessions(1)
  with pytest.raises(ValueError, match="session 1: neural has 240 frames, behaviour 239"):
    model.fit(neural, [behaviour[0], behaviour[1][:-1], *behaviour[2:]], ["a", "a", "b", "b"])
  with pytest.raises(ValueError, match="one behaviour array and one animal id"):
    model.fit(neural, behaviour, ["a", "b"])
  with pytest.raises(ValueError, match=r"behaviour\[0\] has shape \(240,\)"):
    model.fit(neural, [b[:, 0] for b in behaviour], ["a", "a", "b", "b"])
  with pytest.raises(ValueError, match="not a config field"):
    nar.NAREstimator(config_overrides={"model.widht": 8}).make_config("/tmp", "roi_traces", 2)
  with pytest.raises(exceptions.NotFittedError):
    model.transform(neural[0], "a")


@pytest.mark.parametrize("check", [
    estimator_checks.check_no_attributes_set_in_init,
    estimator_checks.check_parameters_default_constructible,
    estimator_checks.check_get_params_invariance,
    estimator_checks.check_set_params,
    estimator_checks.check_estimator_cloneable,
    estimator_checks.check_estimator_repr,
    estimator_checks.check_estimator_tags_renamed,
    estimator_checks.check_valid_tag_types,
], ids=lambda check: check.__name__)
def test_sklearns_checks_of_an_estimators_parameters_pass(check):
  # The checks that fit on sklearn's own random 2-D X and y do not apply: a fit here takes
  # sessions of neural activity, their behaviour and their animals, and trains a network.
  check("NAREstimator", nar.NAREstimator())


def test_clone_keeps_the_parameters_and_drops_the_fit(fitted):
  model, _, _ = fitted
  copy = base.clone(model)
  assert copy.get_params() == model.get_params()
  assert not hasattr(copy, "run_")
  copy.set_params(num_train_steps=7)
  assert copy.get_params()["num_train_steps"] == 7
