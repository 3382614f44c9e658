"""Engines as objects: ``inference=EM(...)`` / ``inference=NUTS(...)`` fit exactly as
the estimator's own engine parameters do, and follow scikit-learn's nested parameters."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import crowdbayes as cb
from crowdbayes.registry import MODELS
from crowdbayes.simulate import simulate_dawid_skene

BAYESIAN = [key for key, spec in MODELS.items() if spec.nuts]


@pytest.fixture(scope="module")
def sim():
    return simulate_dawid_skene(n_tasks=120, n_workers=10, n_classes=3, labels_per_task=4, seed=8)


@pytest.mark.parametrize("key", BAYESIAN)
def test_every_bayesian_estimator_takes_an_engine(key):
    model = MODELS[key].build(inference=cb.EM(max_iter=3))
    params = model.get_params()
    assert params["inference__max_iter"] == 3 and "inference__tol" in params
    assert "inference" in repr(model) and "inference__" not in repr(model)
    assert model.set_params(inference__tol=1e-3).inference.tol == 1e-3


@pytest.mark.parametrize("key", ["ds", "one-coin", "mace", "recommended"])
def test_em_engine_fits_as_the_parameters_do(sim, key):
    spec = MODELS[key]
    by_params = spec.build(max_iter=7, tol=1e-4).fit(sim.annotations)
    by_engine = spec.build(inference=cb.EM(max_iter=7, tol=1e-4)).fit(sim.annotations)
    assert by_engine.n_iter_ == by_params.n_iter_ <= 7
    np.testing.assert_array_equal(by_engine.proba_, by_params.proba_)
    np.testing.assert_array_equal(by_engine.confusion_, by_params.confusion_)
    short = spec.build(inference=cb.EM(max_iter=2)).fit(sim.annotations)
    assert short.n_iter_ == 2  # the engine's setting is the one used


def test_nuts_engine_draws_as_method_nuts(sim):
    kw = {"num_warmup": 30, "num_samples": 20, "num_chains": 1, "seed": 4}
    with pytest.warns(cb.ConvergenceWarning):
        by_params = cb.OneCoinDawidSkene(method="nuts", **kw).fit(sim.annotations)
    with pytest.warns(cb.ConvergenceWarning):
        by_engine = cb.OneCoinDawidSkene(inference=cb.NUTS(**kw)).fit(sim.annotations)
    assert by_engine.draws_ is not None and by_engine.draws_.keys() == by_params.draws_.keys()
    for site in by_params.draws_:
        np.testing.assert_array_equal(by_engine.draws_[site], by_params.draws_[site])
    np.testing.assert_array_equal(by_engine.proba_, by_params.proba_)


def test_engines_clone_pickle_and_refuse_mixing(sim):
    sklearn_base = pytest.importorskip("sklearn.base")
    model = cb.DawidSkene(inference=cb.EM(max_iter=4))
    copy = sklearn_base.clone(model)
    assert copy.get_params() == model.get_params() and copy.inference is not model.inference
    copy.set_params(inference__max_iter=9)
    assert model.inference.max_iter == 4  # the copy's engine is its own
    fitted = pickle.loads(pickle.dumps(model.fit(sim.annotations)))
    assert fitted.inference == cb.EM(max_iter=4) and fitted.n_iter_ <= 4
    with pytest.raises(ValueError, match="inference= or method=, not both"):
        cb.DawidSkene(method="nuts", inference=cb.EM()).fit(sim.annotations)
    with pytest.raises(ValueError, match=r"inference must be crowdbayes\.EM"):
        cb.DawidSkene(inference="nuts").fit(sim.annotations)
    with pytest.raises(ValueError, match="EM has no setting 'num_chains'"):
        model.set_params(inference__num_chains=2)
    with pytest.raises(ValueError, match="has no parameters to set"):
        cb.DawidSkene().set_params(inference__max_iter=2)


def test_grid_search_style_parameters(sim):
    """What a scikit-learn grid search does: set a nested parameter on a clone, fit."""
    sklearn_base = pytest.importorskip("sklearn.base")
    base = cb.DawidSkene(inference=cb.EM())
    its = []
    for max_iter in (1, 3):
        model = sklearn_base.clone(base).set_params(inference__max_iter=max_iter)
        its.append(model.fit(sim.annotations).n_iter_)
    assert its == [1, 3] and base.inference.max_iter == 100
