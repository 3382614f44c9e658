"""One-coin, class-conditional and MACE: real-data accuracy, interval coverage on data
simulated from the model, and one likelihood for EM and NumPyro."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from family_checks import log_ratio_jacobian
from numpyro.infer.util import log_density

import crowdbayes as cb
from crowdbayes.inference.em import em_data
from crowdbayes.inference.posterior import em_objective, marginal_model
from crowdbayes.models.class_conditional import ClassConditionalDawidSkene
from crowdbayes.models.dawid_skene import DawidSkene
from crowdbayes.models.mace import MACE, mace_confusion
from crowdbayes.models.one_coin import OneCoinDawidSkene
from crowdbayes.simulate import sample_labels

ESTIMATORS = [OneCoinDawidSkene, ClassConditionalDawidSkene, MACE]


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_real_data_accuracy_close_to_dawid_skene(cls):
    for name in ("rte", "temp"):  # (on bluebirds, with label-dependent biases, one-coin is poor)
        df, gold = cb.datasets.load(name)
        acc = (cls().fit(df).predict().loc[gold.index] == gold).mean()
        ds = (DawidSkene().fit(df).predict().loc[gold.index] == gold).mean()
        assert acc >= ds - 0.07, (name, acc, ds)
        assert acc >= 0.75


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_em_objective_and_numpyro_density_differ_by_a_constant(cls):
    df, _ = cb.datasets.load("wsd")
    ann = cb.as_annotations(df)
    est = cls()
    data, hyper = em_data(ann), est._hyper(ann)
    family = est._family
    em_fn = jax.jit(lambda p: em_objective(family, p, data, hyper))
    nuts_fn = jax.jit(
        lambda s: log_density(lambda d, h: marginal_model(family, d, h), (data, hyper), {}, s)[0]
    )
    fit = cls().fit(df)
    diffs = []
    for scale in (0.0, 0.3):  # the EM estimate and a perturbed one
        sites = family.sites_from_params(fit.params_, hyper)
        key = jax.random.PRNGKey(1)
        sites = {
            k: jnp.clip(v * jnp.exp(scale * jax.random.normal(key, v.shape)), 1e-3, 0.999)
            for k, v in sites.items()
        }
        sites = {
            k: v / v.sum(-1, keepdims=True) if k in ("xi", "pi") else v for k, v in sites.items()
        }
        params = family.params_from_sites(sites, hyper)
        diffs.append(float(nuts_fn(sites)) + log_ratio_jacobian(sites) - float(em_fn(params)))
    assert diffs[0] == pytest.approx(diffs[1], abs=1e-2 * abs(diffs[0]) + 0.05)


def _coverage(est, truth_acc, df):
    q = est.fit(df).annotator_quality(interval=0.9)
    q = q.loc[np.arange(len(truth_acc))]
    inside = (q["accuracy_lower"] <= truth_acc) & (truth_acc <= q["accuracy_upper"])
    return inside.mean()


def test_one_coin_em_intervals_cover():
    rng = np.random.default_rng(2)
    W, K = 240, 3
    acc = rng.beta(1 + 10 * 0.75, 1 + 10 * 0.25, size=W)
    conf = np.where(np.eye(K, dtype=bool), acc[:, None, None], ((1 - acc) / (K - 1))[:, None, None])
    df, _ = sample_labels(conf, np.full(K, 1 / K), n_tasks=1200, labels_per_task=5, rng=rng)
    cover = _coverage(OneCoinDawidSkene(prior_strength=10, prior_accuracy=0.75), acc, df)
    assert 0.8 <= cover <= 0.97


def test_mace_em_intervals_cover():
    rng = np.random.default_rng(3)
    W, K = 240, 3
    t = rng.beta(1 + 10 * 0.7, 1 + 10 * 0.3, size=W)
    xi = rng.dirichlet(np.full(K, 3.0), size=W)
    conf = np.asarray(mace_confusion(jnp.asarray(t), jnp.asarray(xi)))
    pi = np.full(K, 1 / K)
    true_acc = np.diagonal(conf, axis1=1, axis2=2) @ pi
    df, _ = sample_labels(conf, pi, n_tasks=2000, labels_per_task=5, rng=rng)
    est = MACE(prior_strength=10, prior_competence=0.7, spam_prior_strength=2.0)
    cover = _coverage(est, true_acc, df)
    assert 0.8 <= cover <= 0.97
    order = est.annotations_.worker_ids.to_numpy().astype(int)  # codes -> simulated ids
    assert np.corrcoef(est.competence_, t[order])[0, 1] > 0.5
