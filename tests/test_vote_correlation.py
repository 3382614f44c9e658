"""The mixture of Dirichlet-multinomials over vote counts: recovery of the correlation of
labels within a task, none on independent labels, its gradient, and edge cases."""

import numpy as np
import pytest
from scipy.optimize import approx_fprime

import crowdbayes as cb
from crowdbayes.models.vote_correlation import (
    _neg_log_posterior,
    fit_vote_mixture,
    vote_correlation,
)
from crowdbayes.simulate import simulate_dawid_skene


def simulate_votes(n_tasks, n_labels, alpha, phi, pi, seed):
    """Vote counts from the mixture itself: class, task label shares, then counts."""
    rng = np.random.default_rng(seed)
    y = rng.choice(len(pi), size=n_tasks, p=pi)
    theta = np.stack([rng.dirichlet(alpha * phi[k]) for k in y])
    n = rng.choice(n_labels, size=n_tasks)
    return np.stack([rng.multinomial(m, t) for m, t in zip(n, theta, strict=True)])


@pytest.mark.parametrize(("alpha", "K"), [(4.0, 3), (19.0, 2), (9.0, 4)])
def test_recovers_the_correlation_of_simulated_votes(alpha, K):
    phi = np.full((K, K), 0.25 / (K - 1))
    np.fill_diagonal(phi, 0.75)
    pi = np.linspace(1.0, 2.0, K) / np.linspace(1.0, 2.0, K).sum()
    votes = simulate_votes(4000, [3, 5, 10], alpha, phi, pi, seed=K)
    fit = fit_vote_mixture(votes)
    assert abs(fit.correlation - 1.0 / (alpha + 1.0)) < 0.25 / (alpha + 1.0), fit.correlation
    # the classes come back in some order: match each fitted row to the nearest true one
    order = [int(np.abs(phi - row).sum(1).argmin()) for row in fit.label_dist]
    assert sorted(order) == list(range(K))
    np.testing.assert_allclose(fit.label_dist, phi[order], atol=0.05)
    np.testing.assert_allclose(fit.class_prior, pi[order], atol=0.05)


def test_independent_labels_show_no_correlation():
    # Dawid-Skene labels: independent given the class, annotators of accuracy 0.5-0.9
    for K, n in ((2, 10), (4, 5)):
        sim = simulate_dawid_skene(
            n_tasks=1000, n_workers=100, n_classes=K, labels_per_task=n, seed=1
        )
        assert vote_correlation(cb.as_annotations(sim.annotations)) < 0.01


def test_gradient_is_the_objectives():
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 6, size=(30, 3)).astype(float)
    weights = rng.integers(1, 5, size=30).astype(float)
    theta = rng.normal(size=3 + 9 + 1)
    value, grad = _neg_log_posterior(theta, rows, weights, 0.1)
    numeric = approx_fprime(theta, lambda t: _neg_log_posterior(t, rows, weights, 0.1)[0], 1e-6)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-4)
    assert np.isfinite(value)


def test_edge_cases():
    one_label = np.eye(3)[[0, 1, 2, 0]]  # every task has one label: nothing to measure
    assert fit_vote_mixture(one_label).correlation == 0.0
    assert fit_vote_mixture(np.array([[3.0], [2.0]])).correlation == 0.0  # one class
    with pytest.raises(ValueError, match="counts >= 0"):
        fit_vote_mixture(np.array([[1.0, -1.0]]))
    # unanimous votes everywhere fit perfect annotators as well as correlated ones: any
    # correlation will do, but it is a number in [0, 1] and the fit raises no warning
    unanimous = np.array([[5, 0], [0, 5]] * 50)
    fit = fit_vote_mixture(unanimous)
    assert 0.0 <= fit.correlation <= 1.0 and np.isfinite(fit.log_likelihood)
