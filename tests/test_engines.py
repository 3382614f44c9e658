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


@pytest.mark.filterwarnings("ignore::crowdbayes.inference.nuts.ConvergenceWarning")  # short chains
def test_an_engine_runs_a_family_and_returns_its_posterior(sim):
    """``EM(...).run(family, data, hyper, init)`` is what an estimator's fit runs: the same
    class posterior, confusions and class prior as the fitted estimator's, which keeps
    it as ``posterior_``; NUTS's run starts at EM's estimate and adds the draws."""
    from crowdbayes.inference.em import em_data
    from crowdbayes.inference.posterior import Posterior
    from crowdbayes.models.bayesian import vote_shares

    ann = cb.as_annotations(sim.annotations)
    model = cb.DawidSkene(inference=cb.EM(max_iter=20)).fit(ann)
    est = cb.DawidSkene()
    family, hyper = est._family, est._hyper(ann)
    post = cb.EM(max_iter=20).run(family, em_data(ann), hyper, vote_shares(ann))
    assert isinstance(post, Posterior) and post.method == "em" and not post.sampled
    assert isinstance(model.posterior_, Posterior) and model.posterior_.draws is None
    np.testing.assert_allclose(post.proba, model.proba_, atol=1e-5)
    np.testing.assert_allclose(post.confusion, model.confusion_, atol=1e-5)
    np.testing.assert_allclose(post.class_prior, model.class_prior_, atol=1e-5)
    assert post.n_iter == model.n_iter_ and post.confusion.shape == (10, 3, 3)
    # an EM posterior's mean of a quantity is its value at the estimate
    log_pi = post.mean("pi", lambda p: p.log_pi)
    np.testing.assert_allclose(log_pi, np.log(post.class_prior), rtol=1e-6)
    with pytest.raises(ValueError, match="NUTS"):
        post.require_samples()

    engine = cb.NUTS(num_warmup=40, num_samples=30, num_chains=1, seed=2)
    sampled = engine.run(family, em_data(ann), hyper, vote_shares(ann), em=cb.EM(max_iter=20))
    assert sampled.method == "nuts" and sampled.samples is not None
    pi = sampled.samples.site("pi")
    assert pi.shape == (30, 3) and sampled.samples.confusion.shape == (30, 10, 3, 3)
    # NUTS's mean of a site is over its draws; its confusions and class prior are means too
    np.testing.assert_allclose(sampled.mean("pi", lambda p: None), pi.mean(axis=0))
    np.testing.assert_allclose(sampled.class_prior, sampled.samples.class_prior.mean(axis=0))
    np.testing.assert_allclose(sampled.proba.sum(axis=1), 1.0, rtol=1e-6)
    # intervals of a site or of a quantity derived from it, from the draws
    lo, hi = sampled.samples.interval("pi", 0.9)
    np.testing.assert_allclose(lo, np.quantile(pi, 0.05, axis=0))
    np.testing.assert_allclose(hi, np.quantile(pi, 0.95, axis=0))
    lo_max, hi_max = sampled.samples.interval("pi", 0.5, of=lambda d: d.max(axis=-1))
    assert lo_max <= np.median(pi.max(axis=-1)) <= hi_max and lo_max.shape == ()
    np.testing.assert_allclose(sampled.params.log_pi, post.params.log_pi)  # EM's start
    fitted = cb.DawidSkene(inference=engine).fit(ann)
    np.testing.assert_allclose(fitted.posterior_.samples.site("pi"), pi, rtol=1e-6)
    np.testing.assert_allclose(fitted.proba_, sampled.proba, rtol=1e-6)


def test_empirical_bayes_rounds_are_the_em_engines_refit():
    """HierarchicalDawidSkene's empirical-Bayes scales come from EM's ``refit`` rounds:
    running its family through ``EM.run`` with the estimator's ``_refit`` gives the
    fitted scales and posterior; with both scales fixed there is no refit."""
    from crowdbayes.inference.em import em_data

    df, _ = cb.datasets.load("bluebirds")
    model = cb.HierarchicalDawidSkene().fit(df)
    assert model.posterior_.hyper is None and model.data_ is None  # a bucketed fit's
    ann = cb.as_annotations(df)
    est = cb.HierarchicalDawidSkene()
    est._eb_scales = None
    data = em_data(ann)
    refit = est._refit(ann, data)
    assert refit is not None
    post = cb.EM().run(est._family, data, est._hyper(ann), est._init_post(ann), refit=refit)
    assert post.hyper.sigma != 1.0  # the scales moved off their start
    np.testing.assert_allclose(float(post.hyper.sigma), model.population_scale_, rtol=1e-6)
    np.testing.assert_allclose(float(post.hyper.tau), model.ability_scale_, rtol=1e-6)
    assert est._eb_scales == pytest.approx((model.population_scale_, model.ability_scale_))
    np.testing.assert_allclose(post.proba, model.proba_, atol=1e-4)
    fixed = cb.HierarchicalDawidSkene(population_scale=0.5, ability_scale=0.5)
    assert fixed._refit(ann, data) is None


def test_the_engine_places_the_data():
    """Where an EM fit's data go is the engine's: its devices (sharded), else a shape
    bucket up to BUCKET_MAX_LABELS labels, exact shapes above or without buckets; NUTS
    always on exact shapes. The estimator lays the data out where its engine says."""
    from crowdbayes.inference.em import BUCKET_MAX_LABELS, BUCKETS

    assert cb.EM().placement(100) is BUCKETS
    assert cb.EM().placement(BUCKET_MAX_LABELS + 1) is None
    assert cb.EM().placement(100, buckets=False) is None
    assert cb.EM(devices=2).placement(100) == 2
    assert cb.NUTS().placement(100) is None
    df, _ = cb.datasets.load("wsd")
    model = cb.DawidSkene(inference=cb.EM(devices=1)).fit(df)
    assert model._fit_devices() == 1 and model.data_ is None  # a sharded layout: not kept
    assert cb.DawidSkene().fit(df)._fit_devices() is BUCKETS


def test_em_goes_on_where_its_objective_fell():
    # the loop's stop rule reads |gain|: an objective that fell by more than tol per label
    # is an M-step that ran off, not convergence (EM stopped there before 2026-12-03)
    import jax

    from crowdbayes.inference.em import _em_chunk_jit, em_data, initial_state
    from crowdbayes.models.bayesian import vote_shares
    from crowdbayes.models.dawid_skene import DawidSkene, DawidSkeneModel

    ann = cb.as_annotations(cb.datasets.load("rte")[0])
    data = em_data(ann)
    hyper = DawidSkene()._hyper(ann)
    post0 = jax.device_put(np.asarray(vote_shares(ann), np.float32).T)
    shapes = jax.eval_shape(DawidSkeneModel.m_step, post0, data, hyper)
    history0 = jax.device_put(np.full(20, np.nan, np.float32))
    start = initial_state(shapes, post0, history0, jax.device_put)
    stop_at, tol = jax.device_put(np.int32(20)), jax.device_put(np.float32(1e-6))
    for gain, runs in ((-1e4, True), (1e4, True), (-1e-4, False)):
        state = start._replace(
            n_iter=jax.device_put(np.int32(2)), gain=jax.device_put(np.float32(gain))
        )
        out = _em_chunk_jit(DawidSkeneModel, state, data, hyper, stop_at, tol)
        assert (int(out.n_iter) > 2) == runs, (gain, int(out.n_iter))
