"""The correlation of labels within a task from the vote counts given the classes:
recovery on simulated votes, none on independent labels, edge cases."""

import numpy as np
import pytest
from scipy.special import gammaln, logsumexp

import crowdbayes as cb
from crowdbayes.models.vote_correlation import vote_correlation
from crowdbayes.simulate import simulate_dawid_skene


def simulate_votes(n_tasks, n_labels, alpha, phi, pi, seed):
    """Vote counts from the Dirichlet-multinomial: class, task label shares, then counts."""
    rng = np.random.default_rng(seed)
    y = rng.choice(len(pi), size=n_tasks, p=pi)
    theta = np.stack([rng.dirichlet(alpha * phi[k]) for k in y])
    n = rng.choice(n_labels, size=n_tasks)
    votes = np.stack([rng.multinomial(m, t) for m, t in zip(n, theta, strict=True)])
    return votes, np.eye(len(pi))[y]


@pytest.mark.parametrize(("alpha", "K"), [(4.0, 3), (19.0, 2), (9.0, 4)])
def test_recovers_the_correlation_of_simulated_votes(alpha, K):
    phi = np.full((K, K), 0.25 / (K - 1))
    np.fill_diagonal(phi, 0.75)
    pi = np.linspace(1.0, 2.0, K) / np.linspace(1.0, 2.0, K).sum()
    votes, classes = simulate_votes(4000, [1, 3, 5, 10], alpha, phi, pi, seed=K)
    rho = vote_correlation(votes, classes)
    assert abs(rho - 1.0 / (alpha + 1.0)) < 0.2 / (alpha + 1.0), rho
    # the classes unknown: the posterior under the true model does nearly as well
    a = alpha * phi
    log_lik = np.stack(
        [(gammaln(votes + a[k]) - gammaln(a[k])).sum(1) for k in range(K)], axis=1
    ) + np.log(pi)
    posterior = np.exp(log_lik - logsumexp(log_lik, axis=1, keepdims=True))
    assert abs(vote_correlation(votes, posterior) - rho) < 0.2 / (alpha + 1.0)
    # a posterior with mass on wrong classes reads their votes as overdispersion
    assert vote_correlation(votes, 0.8 * classes + 0.2 / K) > rho + 0.2 / (alpha + 1.0)


def test_independent_labels_show_no_correlation():
    # Dawid-Skene labels: independent given the class, annotators of accuracy 0.5-0.9;
    # the classes from Dawid-Skene's own posterior, as CalibratedDawidSkene does
    for K, n in ((2, 10), (4, 5)):
        sim = simulate_dawid_skene(
            n_tasks=1000, n_workers=100, n_classes=K, labels_per_task=n, seed=1
        )
        ann = cb.as_annotations(sim.annotations)
        model = cb.DawidSkene().fit(ann)
        assert vote_correlation(ann.vote_counts(), model.proba_) < 0.01


def test_edge_cases():
    one_label = np.eye(3)[[0, 1, 2, 0]]  # every task has one label: nothing to measure
    assert vote_correlation(one_label, one_label) == 0.0
    assert vote_correlation(np.array([[3.0], [2.0]]), np.ones((2, 1))) == 0.0  # one class
    with pytest.raises(ValueError, match="whole counts >= 0"):
        vote_correlation(np.array([[1.0, -1.0]]), np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="posterior has shape"):
        vote_correlation(np.array([[1.0, 2.0]]), np.array([[1.0, 0.0, 0.0]]))
    # unanimous votes on every task: as correlated as the labels can be given the classes
    # (each class's label shares are not pure, because of the half vote of smoothing)
    unanimous = np.array([[5, 0], [0, 5]] * 50)
    rho = vote_correlation(unanimous, np.eye(2)[[0, 1] * 50])
    assert rho > 0.9
