"""Dawid–Skene by EM and NUTS: one likelihood, intervals that cover, NUTS output."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from exact_shapes import exact_shapes
from interval_checks import assert_mean_in_interval
from jax.scipy.special import gammaln
from numpyro.infer.util import log_density

import crowdbayes as cb
from crowdbayes.inference.em import em_data
from crowdbayes.inference.nuts import ConvergenceWarning, check_convergence
from crowdbayes.inference.posterior import em_objective
from crowdbayes.models.dawid_skene import DawidSkene, DawidSkeneModel, DSParams, numpyro_model
from crowdbayes.simulate import dirichlet_confusion, sample_labels
from crowdbayes.simulate import true_accuracy as accuracy


def _log_beta(alpha: jnp.ndarray) -> jnp.ndarray:
    return gammaln(alpha).sum(-1) - gammaln(alpha.sum(-1))


def test_em_objective_equals_numpyro_log_density():
    df, gold = cb.datasets.load("wsd")
    ann = cb.as_annotations(df, gold=gold.iloc[:20])  # some gold tasks: clamped in both
    data, hyper = em_data(ann), DawidSkene()._hyper(ann)
    W, K = ann.n_workers, ann.n_classes
    const = -(W * _log_beta(hyper.confusion_counts).sum() + _log_beta(hyper.class_counts))
    em_fn = jax.jit(lambda p: em_objective(DawidSkeneModel, p, data, hyper))
    nuts_fn = jax.jit(lambda s: log_density(numpyro_model, (data, hyper), {}, s)[0])
    for seed in range(3):
        # drawn by NumPy: jax.random.dirichlet compiles for seconds per shape
        rng = np.random.default_rng(seed)
        conf = jnp.asarray(rng.dirichlet(np.ones(K) * 2.0, (W, K)), jnp.float32)
        pi = jnp.asarray(rng.dirichlet(np.ones(K) * 3.0), jnp.float32)
        params = DSParams(jnp.log(conf), jnp.log(pi))
        em = float(em_fn(params))
        lp = nuts_fn({"confusion": conf, "pi": pi})
        # EM's objective is the density of the log-ratios (the mode EM finds there is the
        # Dirichlet's mean given the counts): the NumPyro density plus the log-Jacobian
        # sum(log p) of every simplex, less the normalising constants
        log_jac = float(jnp.log(conf).sum() + jnp.log(pi).sum())
        assert float(lp) + log_jac == pytest.approx(em + float(const), rel=1e-5)


def test_unconstrained_potential_is_the_numpyro_density():
    # NUTS samples log-ratios z (softmax with the last logit pinned to 0): its potential
    # must be minus the NumPyro model's log density at softmax(z) minus the log-Jacobian
    # sum(log p) of each simplex, up to one constant
    df, gold = cb.datasets.load("wsd")
    ann = cb.as_annotations(df, gold=gold.iloc[:20])
    data, hyper = em_data(ann), DawidSkene()._hyper(ann)
    W, K = ann.n_workers, ann.n_classes
    pot = jax.jit(lambda z: DawidSkeneModel.unconstrained_potential(z, data, hyper))
    nuts_fn = jax.jit(lambda s: log_density(numpyro_model, (data, hyper), {}, s)[0])
    gaps = []
    for seed in range(3):
        k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
        z = {
            "confusion": jax.random.normal(k1, (W, K, K - 1)),
            "pi": jax.random.normal(k2, (K - 1,)),
        }
        sites = DawidSkeneModel.sites_from_unconstrained(z, hyper)
        log_jac = jnp.log(sites["confusion"]).sum() + jnp.log(sites["pi"]).sum()
        gaps.append(float(pot(z)) + float(nuts_fn(sites) + log_jac))
        back = DawidSkeneModel.unconstrained_from_params(
            DawidSkeneModel.params_from_sites(sites, hyper), hyper
        )
        np.testing.assert_allclose(back["confusion"], z["confusion"], atol=1e-4)
    assert max(gaps) - min(gaps) == pytest.approx(0.0, abs=1e-2 + 1e-5 * abs(gaps[0]))


def test_em_intervals_cover_true_accuracy():
    # confusion rows drawn from the model's own prior, 240 annotators, ~31 labels each
    rng = np.random.default_rng(0)
    conf = dirichlet_confusion(240, 3, strength=10.0, accuracy=0.8, rng=rng)
    pi = np.full(3, 1 / 3)
    df, _ = sample_labels(conf, pi, n_tasks=1500, labels_per_task=5, rng=rng)
    ds = DawidSkene(prior_strength=10.0, prior_accuracy=0.8).fit(df)
    q = ds.annotator_quality(interval=0.9).loc[np.arange(240)]
    true_acc = accuracy(conf, pi)
    inside = (q["accuracy_lower"] <= true_acc) & (true_acc <= q["accuracy_upper"])
    assert 0.8 <= inside.mean() <= 0.97
    assert (q["accuracy_lower"] < q["accuracy_upper"]).all()
    assert np.corrcoef(q["accuracy"], true_acc)[0, 1] > 0.4
    # per-class sensitivities with bounds, seeded: the same twice
    assert {"sensitivity[0]", "sensitivity[0]_lower", "sensitivity[2]_upper"} <= set(q.columns)
    again = ds.annotator_quality(interval=0.9).loc[np.arange(240)]
    np.testing.assert_allclose(again["accuracy_lower"], q["accuracy_lower"])


@pytest.mark.slow
def test_nuts_intervals_cover_true_accuracy():
    # the NUTS side of parameter recovery (benchmarks/coverage.py runs every model):
    # 200 annotators, confusion rows from the model's own prior, ~25 labels each
    rng = np.random.default_rng(0)
    conf = dirichlet_confusion(200, 3, strength=10.0, accuracy=0.8, rng=rng)
    pi = np.full(3, 1 / 3)
    df, _ = sample_labels(conf, pi, n_tasks=1000, labels_per_task=5, rng=rng)
    kw = {"prior_strength": 10.0, "prior_accuracy": 0.8}
    nuts = cb.NUTS(num_warmup=150, num_samples=150, num_chains=2, seed=1)
    ds = DawidSkene(inference=nuts, **kw)
    with warnings.catch_warnings():  # few draws: R-hat of a confusion cell may pass 1.01
        warnings.simplefilter("ignore", ConvergenceWarning)
        ds.fit(df)
    q = ds.annotator_quality(interval=0.9).loc[np.arange(200)]
    true_acc = accuracy(conf, pi)
    inside = (q["accuracy_lower"] <= true_acc) & (true_acc <= q["accuracy_upper"])
    assert 0.8 <= inside.mean() <= 0.97
    assert np.corrcoef(q["accuracy"], true_acc)[0, 1] > 0.4
    acc_draws = ds.idata_.posterior["accuracy"].values
    assert check_convergence({"accuracy": acc_draws}, warn=False).loc["accuracy", "r_hat"] < 1.05
    # EM's intervals on the same data: they cover too, and overlap NUTS's
    q_em = (
        exact_shapes(DawidSkene(**kw)).fit(df).annotator_quality(interval=0.9).loc[np.arange(200)]
    )
    inside_em = (q_em["accuracy_lower"] <= true_acc) & (true_acc <= q_em["accuracy_upper"])
    assert 0.8 <= inside_em.mean() <= 0.97
    overlap = (q["accuracy_lower"] <= q_em["accuracy_upper"]) & (
        q_em["accuracy_lower"] <= q["accuracy_upper"]
    )
    assert overlap.mean() >= 0.95


def test_defaults_keep_accuracy():
    for name, floor in (("rte", 0.925), ("bluebirds", 0.88)):
        df, gold = cb.datasets.load(name)
        ds = DawidSkene().fit(df)
        assert (ds.predict().loc[gold.index] == gold).mean() >= floor


def _nuts_wsd():
    """wsd (177 tasks, 34 annotators, 3 classes) by NUTS, and by EM."""
    df, gold = cb.datasets.load("wsd")
    ds = DawidSkene(inference=cb.NUTS(num_warmup=200, num_samples=200, num_chains=2, seed=3))
    with warnings.catch_warnings():  # few draws: a low-ESS warning may come; R-hat is checked
        warnings.simplefilter("ignore", ConvergenceWarning)
        ds.fit(df)
    return ds, gold, exact_shapes(DawidSkene()).fit(df)


def test_nuts_posterior_agrees_with_em():
    # one test for the one NUTS fit: xdist would fit a shared fixture once per worker
    nuts, gold, em = _nuts_wsd()
    assert nuts.draws_["confusion"].shape == (2, 200, 34, 3, 3)
    assert nuts.convergence_.loc["pi", "r_hat"] < 1.05
    acc = (nuts.predict().loc[gold.index] == gold).mean()
    assert acc >= 0.98
    agree = (nuts.predict() == em.predict()).mean()
    assert agree >= 0.98
    # busy annotators: posterior mean near the MAP, and the MAP inside the interval
    q_nuts, q_em = nuts.annotator_quality(), em.annotator_quality()
    busy = q_em["n_labels"] >= 100
    assert busy.sum() >= 5
    assert np.abs(q_nuts["accuracy"] - q_em["accuracy"])[busy].max() < 0.05
    overlap = (q_nuts["accuracy_lower"] <= q_em["accuracy_upper"]) & (
        q_em["accuracy_lower"] <= q_nuts["accuracy_upper"]
    )
    assert overlap.mean() >= 0.9
    _check_task_uncertainty_and_idata(nuts, em)


def _check_task_uncertainty_and_idata(nuts: DawidSkene, em: DawidSkene) -> None:
    tu = nuts.task_uncertainty(interval=0.9)
    assert_mean_in_interval(tu["probability"], tu["probability_lower"], tu["probability_upper"])
    # wsd is easy (majority vote 99.4% right): with a prior that does not invent errors
    # for good annotators nearly every task is certain, but the draws still vary
    assert (tu["probability_upper"] - tu["probability_lower"]).max() > 0
    idata = nuts.idata_
    assert idata.log_likelihood["labels"].shape == (2, 200, 177)
    assert idata.posterior["accuracy"].dims == ("chain", "draw", "worker")
    ll = nuts.log_likelihood()
    assert ll.shape == (177,) and (ll < 0).all()
    em_ll = em.log_likelihood()  # EM's fit of the same labels
    # the MAP fits the labels better than the posterior averages them, but not wildly
    assert em_ll.sum() > ll.sum() > 2 * em_ll.sum()


def test_check_convergence_names_bad_parameters():
    rng = np.random.default_rng(0)
    good = rng.normal(size=(4, 500))
    stuck = good + np.arange(4)[:, None]  # chains in different places
    with pytest.warns(ConvergenceWarning, match=r"R-hat above 1.01: stuck"):
        table = check_convergence({"good": good, "stuck": stuck})
    assert table.loc["good", "r_hat"] < 1.01 and table.loc["stuck", "r_hat"] > 1.5


def test_em_users_cannot_get_idata():
    ds = DawidSkene().fit(cb.datasets.load("wsd")[0])
    with pytest.raises(AttributeError, match="NUTS"):
        _ = ds.idata_
    with pytest.raises(ValueError, match="method"):
        DawidSkene(method="vi").fit(cb.datasets.load("wsd")[0])
