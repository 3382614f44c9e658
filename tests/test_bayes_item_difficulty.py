"""Item difficulty: one likelihood for EM and NumPyro, ability/difficulty recovery and
interval coverage on simulated data, real-data accuracy, a small NUTS fit."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from exact_shapes import exact_shapes
from interval_checks import assert_mean_in_interval
from jax.scipy.special import gammaln
from numpyro.infer.util import log_density

import crowdbayes as cb
from crowdbayes.inference.em import em_data
from crowdbayes.inference.nuts import ConvergenceWarning
from crowdbayes.inference.posterior import em_objective, marginal_model
from crowdbayes.models.item_difficulty import ItemDifficulty, ItemDifficultyModel

FAMILY = ItemDifficultyModel


def simulate(seed: int, W: int, K: int, T: int, per_task: int, scale: float = 0.8):
    """Labels from the model (an annotator knows the answer with probability
    ``sigmoid(a - d)``, else guesses uniformly): returns labels, true accuracy on a
    typical item, difficulty."""
    rng = np.random.default_rng(seed)
    a = np.log(0.75 / 0.25) + scale * rng.standard_normal(W)
    d = scale * rng.standard_normal(T)
    truth = rng.integers(0, K, T)
    workers = np.argsort(rng.random((T, W)), axis=1)[:, :per_task].ravel()
    tasks = np.repeat(np.arange(T), per_task)
    knows = rng.random(tasks.size) < 1.0 / (1.0 + np.exp(d[tasks] - a[workers]))
    guess = rng.integers(0, K, tasks.size)
    df = pd.DataFrame(
        {"task": tasks, "worker": workers, "label": np.where(knows, truth[tasks], guess)}
    )
    return df, (1.0 + (K - 1.0) / (1.0 + np.exp(-a))) / K, d


def test_em_objective_equals_numpyro_log_density():
    df, gold = cb.datasets.load("wsd")
    ann = cb.as_annotations(df, gold=gold.iloc[:20])  # gold tasks are clamped in both
    data, hyper = em_data(ann, per_label=True), ItemDifficulty()._hyper(ann)
    W, T, K = ann.n_workers, ann.n_tasks, ann.n_classes
    alpha = np.asarray(hyper.class_counts)
    half_log_2pi = 0.5 * np.log(2 * np.pi)
    const = (
        W * (-np.log(float(hyper.ability_scale)) - half_log_2pi)
        + T * (-np.log(float(hyper.difficulty_scale)) - half_log_2pi)
        + float(gammaln(alpha.sum()) - gammaln(alpha).sum())
    )
    em_fn = jax.jit(lambda p: em_objective(FAMILY, p, data, hyper))
    nuts_fn = jax.jit(
        lambda s: log_density(lambda d, h: marginal_model(FAMILY, d, h), (data, hyper), {}, s)[0]
    )
    for seed in range(3):
        k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
        sites = {
            "ability": 1.0 + jax.random.normal(k1, (W,)),
            "difficulty": jax.random.normal(k2, (T,)),
            "pi": jax.random.dirichlet(k3, jnp.full(K, 3.0)),
        }
        em = float(em_fn(FAMILY.params_from_sites(sites, hyper)))
        log_jac = float(jnp.log(sites["pi"]).sum())  # EM: the log-ratio density of pi
        assert float(nuts_fn(sites)) + log_jac == pytest.approx(em + const, rel=1e-5)
    fit = ItemDifficulty().fit(ann)
    assert np.all(np.diff(fit.history_) > -1e-3 * abs(fit.history_[-1]))
    worse = fit.params_._replace(ability=fit.params_.ability - 0.3)
    assert float(em_fn(fit.params_)) > float(em_fn(worse))


def test_em_recovers_abilities_and_difficulties():
    df, true_acc, true_d = simulate(0, W=240, K=3, T=1500, per_task=5)
    m = ItemDifficulty(ability_scale=0.8, difficulty_scale=0.8).fit(df)
    q = m.annotator_quality(interval=0.9).loc[np.arange(240)]
    inside = (q["accuracy_lower"] <= true_acc) & (true_acc <= q["accuracy_upper"])
    assert 0.8 <= inside.mean() <= 0.97
    assert np.corrcoef(q["accuracy"], true_acc)[0, 1] > 0.75
    d = m.difficulty_.loc[np.arange(1500)].to_numpy()
    assert np.corrcoef(d, true_d)[0, 1] > 0.3  # 5 labels per item: noisy but informative


def test_em_intervals_cover_crowds_off_the_prior():
    """A one-coin crowd (accuracy U[0.55, 0.95], K = 2) and the good annotators of a crowd
    with 20% spammers: with the old prior width of the abilities (1) EM's 90% intervals
    covered 0.81 and 0.56 here (the prior pulled good annotators down); an exact
    spammer (accuracy 1/K, this model's boundary) is never inside its interval."""
    from crowdbayes.simulate import simulate_population

    for population in ("one_coin", "spammers"):
        sim = simulate_population(population, n_classes=2, seed=23)
        q = ItemDifficulty().fit(sim.annotations).annotator_quality(interval=0.9)
        truth = sim.accuracy[q.index.to_numpy().astype(int)]
        inside = (q["accuracy_lower"] <= truth) & (truth <= q["accuracy_upper"])
        good = truth > 0.5 + 1e-9
        assert 0.85 <= inside[good].mean() <= 0.97, (population, inside[good].mean())
        assert (q["accuracy_lower"] > 0.5).all()


def test_real_data_accuracy_and_bad_priors():
    df, gold = cb.datasets.load("temp")
    m = ItemDifficulty().fit(df)
    assert (m.predict().loc[gold.index] == gold).mean() >= 0.93
    assert m.converged_
    with pytest.raises(ValueError, match="prior_accuracy"):
        ItemDifficulty(prior_accuracy=0.5).fit(df)  # 2 classes: chance is 1/2


@pytest.mark.slow
def test_nuts_small():
    df, _, _ = simulate(3, W=10, K=2, T=50, per_task=4)
    est = ItemDifficulty(inference=cb.NUTS(num_warmup=150, num_samples=100, num_chains=2))
    with warnings.catch_warnings():  # few draws: a low-ESS warning may come
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(df)
    em = exact_shapes(ItemDifficulty()).fit(df)
    assert est.draws_["difficulty"].shape == (2, 100, 50)
    assert est.convergence_.loc["ability", "r_hat"] < 1.1
    assert (est.predict() == em.predict()).mean() >= 0.9  # 4 labels a task: some near ties
    q = est.annotator_quality(interval=0.9)
    assert ((q["accuracy_lower"] <= q["accuracy"]) & (q["accuracy"] <= q["accuracy_upper"])).all()
    assert (q["accuracy_lower"] < q["accuracy_upper"]).all()
    tu = est.task_uncertainty(interval=0.9)
    assert_mean_in_interval(tu["probability"], tu["probability_lower"], tu["probability_upper"])
    assert est.idata_.posterior["difficulty"].dims == ("chain", "draw", "task")
    assert est.difficulty_.shape == (50,)


@pytest.mark.slow
def test_nuts_matches_em_on_rte():
    """NUTS's posterior-mean labels within a point of EM's on real data. With the old
    likelihood (``p(right) = sigmoid(a - d)``, below chance on a hard item) a large
    difficulty flipped an item's class, and NUTS visited those flips: 0.83 against EM's
    0.91 at these settings, difficulties' R-hat 2.3."""
    df, gold = cb.datasets.load("rte")
    em = exact_shapes(ItemDifficulty()).fit(df)
    est = ItemDifficulty(inference=cb.NUTS(num_warmup=100, num_samples=100, num_chains=2))
    with warnings.catch_warnings():  # few draws: a low-ESS warning may come
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(df)
    acc_em = (em.predict().loc[gold.index] == gold).mean()
    acc_nuts = (est.predict().loc[gold.index] == gold).mean()
    assert acc_em >= 0.92
    assert abs(acc_nuts - acc_em) <= 0.01
    assert est.convergence_.loc["difficulty", "r_hat"] < 1.1
