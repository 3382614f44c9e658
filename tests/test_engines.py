"""Engines as objects: ``inference=EM(...)`` / ``inference=NUTS(...)`` fit exactly as
the estimator's own engine parameters do, and follow scikit-learn's nested parameters;
the flat NUTS parameters (``method="nuts"``, ``num_chains``, ...) are deprecated for them
(a FutureWarning at fit that says what to write)."""

from __future__ import annotations

import pickle
import re
import warnings

import numpy as np
import pandas as pd
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


def _fit_recording(model, data):
    """``model.fit(data)`` and the warnings it gave, by category."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(data)
    return model, caught


def test_method_nuts_is_deprecated_for_the_same_nuts_engine(sim):
    """``method="nuts"`` (kept for one release) warns with a FutureWarning that names the
    ``inference=cb.NUTS(...)`` to write, with the flat settings carried over, and fits
    exactly as that engine does; the engine itself does not warn."""
    kw = {"num_warmup": 30, "num_samples": 20, "num_chains": 1, "seed": 4}
    by_params, old = _fit_recording(cb.OneCoinDawidSkene(method="nuts", **kw), sim.annotations)
    future = [w for w in old if issubclass(w.category, FutureWarning)]
    assert len(future) == 1 and future[0].filename == __file__  # the caller's line
    message = str(future[0].message)
    assert "method='nuts'" in message and "deprecated" in message
    written = re.search(r"inference=(cb\.NUTS\([^)]*\))", message)
    assert written is not None, message
    engine = eval(written.group(1), {"cb": cb})  # what the message says to write
    assert engine == cb.NUTS(**kw)
    by_engine, new = _fit_recording(cb.OneCoinDawidSkene(inference=engine), sim.annotations)
    assert not [w for w in new if issubclass(w.category, FutureWarning)]
    # the same few draws: both warn alike of convergence, nothing else
    assert {w.category for w in old} == {FutureWarning, cb.ConvergenceWarning}
    assert {w.category for w in new} == {cb.ConvergenceWarning}
    assert by_engine.draws_ is not None and by_engine.draws_.keys() == by_params.draws_.keys()
    for site in by_params.draws_:
        np.testing.assert_array_equal(by_engine.draws_[site], by_params.draws_[site])
    np.testing.assert_array_equal(by_engine.proba_, by_params.proba_)
    pd.testing.assert_frame_equal(
        by_engine.annotator_quality(interval=0.9), by_params.annotator_quality(interval=0.9)
    )


def test_deprecated_parameters_warn_at_fit_only(sim):
    """Building, cloning, ``get_params``/``set_params``, ``repr`` and pickling a model with
    ``method="nuts"`` give no warning (scikit-learn: no work in ``__init__``); EM's flat
    settings and ``seed`` never warn; NUTS's flat settings, ignored by EM, do."""
    sklearn_base = pytest.importorskip("sklearn.base")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = cb.DawidSkene(method="nuts", num_chains=2, seed=1)
        copy = sklearn_base.clone(model).set_params(num_samples=50, method="nuts")
        repr(copy), copy.get_params(), pickle.loads(pickle.dumps(model))
        cb.DawidSkene(**model.get_params(deep=False))
        em = cb.DawidSkene(max_iter=5, tol=1e-4, seed=2, progress=False, method="em")
        em.fit(sim.annotations)
    written = re.escape("write DawidSkene(inference=cb.NUTS(num_chains=2))")
    with pytest.warns(FutureWarning, match=written):
        cb.DawidSkene(num_chains=2, max_iter=3).fit(sim.annotations)
    with pytest.warns(FutureWarning, match="flat NUTS settings are ignored"):
        cb.DawidSkene(num_samples=9, inference=cb.EM(max_iter=3)).fit(sim.annotations)


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
