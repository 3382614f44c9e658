"""The Bayesian CROWDLAB by NUTS: the EM likelihood in NumPyro, the classifier's weight
learned (useful -> clearly > 0, random -> ~0), consensus as good as EM's, intervals."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pandas as pd
import pytest
from interval_checks import assert_mean_in_interval
from jax.scipy.special import gammaln
from numpyro.infer.util import log_density

import crowdbayes as cb
from crowdbayes.inference.em import e_step, em_data
from crowdbayes.inference.nuts import ConvergenceWarning
from crowdbayes.inference.posterior import em_objective
from crowdbayes.models.bayesian_crowdlab import (
    BayesianCrowdLab,
    BayesianCrowdLabModel,
    numpyro_model,
)


def _log_beta(alpha: jnp.ndarray) -> jnp.ndarray:
    return gammaln(alpha).sum(-1) - gammaln(alpha.sum(-1))


def _normal_lp(x: jnp.ndarray, mean: jnp.ndarray, sd: jnp.ndarray) -> jnp.ndarray:
    return (-0.5 * ((x - mean) / sd) ** 2 - jnp.log(sd) - 0.5 * jnp.log(2 * jnp.pi)).sum()


def test_em_objective_and_numpyro_log_density_share_the_likelihood():
    df, gold = cb.datasets.load("wsd")
    ann = cb.as_annotations(df, gold=gold.iloc[:20])  # gold tasks: clamped in both
    W, K = ann.n_workers, ann.n_classes
    pp = np.random.default_rng(0).dirichlet(np.ones(K), size=ann.n_tasks)
    data, hyper = em_data(ann), BayesianCrowdLab()._hyper(ann.with_pred_probs(pp))
    em_fn = jax.jit(lambda p: em_objective(BayesianCrowdLabModel, p, data, hyper))
    nuts_fn = jax.jit(lambda s: log_density(numpyro_model, (data, hyper), {}, s)[0])

    @jax.jit  # one program: run eagerly, each operation would compile on its own
    def factor_fn(sites, params):
        model = numpyro.handlers.substitute(numpyro_model, data=sites)
        tr = numpyro.handlers.trace(model).get_trace(data, hyper)
        _, task_lp = e_step(BayesianCrowdLabModel, params, data)
        return tr["labels"]["fn"].log_prob(tr["labels"]["value"]), task_lp.sum()

    for seed in range(3):
        # random points drawn by NumPy: jax.random.dirichlet compiles for seconds per shape
        rng = np.random.default_rng(seed)
        mu = rng.dirichlet(np.ones(K) * 3.0, K)
        g = rng.gamma(np.broadcast_to(1.0 + 4.0 * mu, (W, K, K)))
        sites = {
            "beta": jnp.float32(rng.normal() + 1.0),
            "bias": jnp.asarray(rng.normal(size=K), jnp.float32),
            "mu": jnp.asarray(mu, jnp.float32),
            "confusion": jnp.asarray(g / g.sum(-1, keepdims=True), jnp.float32),
        }
        params = BayesianCrowdLabModel.params_from_sites(sites, hyper)
        em = float(em_fn(params))
        # what EM's objective leaves out: the normalising constants alone (it has the bias
        # prior and the rows' mu-dependent normaliser log B(pooling * mu))
        rest = (
            _normal_lp(sites["beta"], hyper.beta_mean, hyper.beta_sd)
            + 0.5 * ((sites["beta"] - hyper.beta_mean) / hyper.beta_sd) ** 2
            + _normal_lp(sites["bias"], 0.0, hyper.bias_sd)
            + 0.5 * (sites["bias"] ** 2).sum() / hyper.bias_sd**2
            - _log_beta(hyper.base_counts).sum()
        )
        # EM's objective is the density of the log-ratios: plus sum(log p) of each simplex
        log_jac = float(jnp.log(sites["mu"]).sum() + jnp.log(sites["confusion"]).sum())
        lp = float(nuts_fn(sites)) + log_jac
        assert lp == pytest.approx(em + float(rest), rel=1e-5)
        # and the likelihood alone: the 'labels' factor is EM's marginal log-likelihood
        factor, em_lik = (float(x) for x in factor_fn(sites, params))
        assert factor == pytest.approx(em_lik, rel=1e-6)
        assert factor < -100.0


def _sim(seed: int, useful: bool, T: int = 200, M: int = 12, K: int = 3):
    """Wide labels (~25% of annotators per task, at least one), the classifier's
    probabilities (useful: logits 2 * onehot(truth) + N(0, 1); random: Dirichlet(1)), truth."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(K, size=T)
    acc = rng.uniform(0.45, 0.85, M)
    labels = np.where(rng.random((T, M)) < acc, truth[:, None], rng.integers(K, size=(T, M)))
    mask = rng.random((T, M)) < 0.25
    mask[np.arange(T), rng.integers(M, size=T)] = True
    wide = pd.DataFrame(np.where(mask, labels, np.nan), columns=[f"w{j}" for j in range(M)])
    if useful:
        logits = 2.0 * np.eye(K)[truth] + rng.normal(size=(T, K))
        pp = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    else:
        pp = rng.dirichlet(np.ones(K), size=T)
    return wide.astype("Int64"), pp, truth


def _fit_both(useful: bool):
    wide, pp, truth = _sim(0, useful)
    em = BayesianCrowdLab().fit(wide, pred_probs=pp)
    nuts = BayesianCrowdLab(
        inference=cb.NUTS(num_warmup=100, num_samples=100, num_chains=2, seed=1)
    )
    with warnings.catch_warnings():  # few draws: a low-ESS warning may come; R-hat is checked
        warnings.simplefilter("ignore", ConvergenceWarning)
        nuts.fit(wide, pred_probs=pp)
    return em, nuts, truth


def test_nuts_trusts_a_useful_classifier():
    # one test per NUTS fit: xdist would fit a shared fixture once per worker
    em, nuts, truth = _fit_both(useful=True)
    w = nuts.classifier_weight(interval=0.9)
    assert w["lower"] > 1.0 and 1.5 < w["estimate"] < 3.5  # clearly > 0
    assert w["lower"] < em.classifier_weight_ < w["upper"]
    assert nuts.draws_["beta"].shape == (2, 100)
    assert nuts.convergence_.loc["beta", "r_hat"] < 1.1
    acc_nuts = np.mean(nuts.predict().to_numpy() == truth)
    acc_em = np.mean(em.predict().to_numpy() == truth)
    assert acc_em > 0.9 and abs(acc_nuts - acc_em) <= 0.02
    # the EM weight's Laplace interval is of the same width as NUTS's
    w_em = em.classifier_weight(interval=0.9)
    assert w_em["lower"] < em.classifier_weight_ < w_em["upper"]
    assert 0.5 < w_em["sd"] / w["sd"] < 2.0
    _check_intervals_and_idata(em, nuts, truth)


def test_nuts_ignores_a_random_classifier():
    em, nuts, truth = _fit_both(useful=False)
    w = nuts.classifier_weight(interval=0.9)
    assert abs(w["estimate"]) < 0.15 and w["lower"] < 0.0 < w["upper"]
    assert w["upper"] - w["lower"] < 0.6
    acc_nuts = np.mean(nuts.predict().to_numpy() == truth)
    acc_em = np.mean(em.predict().to_numpy() == truth)
    assert abs(acc_nuts - acc_em) <= 0.02


def _check_intervals_and_idata(
    em: BayesianCrowdLab, nuts: BayesianCrowdLab, truth: np.ndarray
) -> None:
    tu = nuts.task_uncertainty(interval=0.9)
    assert_mean_in_interval(tu["probability"], tu["probability_lower"], tu["probability_upper"])
    wrong = nuts.predict().to_numpy() != truth
    assert tu["probability_lower"][wrong].mean() < tu["probability_lower"][~wrong].mean() - 0.2
    q_nuts, q_em = nuts.annotator_quality(interval=0.9), em.annotator_quality(interval=0.9)
    for q in (q_nuts, q_em):
        assert (q["accuracy_lower"] < q["accuracy"]).all()
        assert (q["accuracy"] < q["accuracy_upper"]).all()
        assert {"sensitivity[0]_lower", "n_labels", "agreement"} <= set(q.columns)
    assert np.abs(q_nuts["accuracy"] - q_em["accuracy"]).max() < 0.06
    overlap = (q_nuts["accuracy_lower"] <= q_em["accuracy_upper"]) & (
        q_em["accuracy_lower"] <= q_nuts["accuracy_upper"]
    )
    assert overlap.all()
    # the class prior averaged over tasks (as EM defines it), not the bias alone
    assert nuts.class_prior_.sum() == pytest.approx(1.0)
    assert np.abs(nuts.class_prior_ - em.class_prior_).max() < 0.05
    idata = nuts.idata_
    assert idata.posterior["beta"].shape == (2, 100)
    assert idata.posterior["confusion"].dims == ("chain", "draw", "worker", "true", "given")
    assert idata.log_likelihood["labels"].shape == (2, 100, 200)


def test_em_users_cannot_get_idata():
    wide, pp, _ = _sim(1, useful=True, T=40)
    bcl = BayesianCrowdLab().fit(wide, pred_probs=pp)
    with pytest.raises(AttributeError, match="NUTS"):
        _ = bcl.idata_
    with pytest.raises(ValueError, match="method"):
        BayesianCrowdLab(method="vi").fit(wide, pred_probs=pp)
