"""How correlated the labels on one task are, given its class.

Dawid–Skene treats a task's labels as independent given its class; on real data they
are not (an item that misleads one annotator tends to mislead others). A
Dirichlet-multinomial over each task's vote counts measures by how much:

    theta_i | y_i = k ~ Dirichlet(alpha * phi[k]),   votes_i | theta_i ~ Multinomial(n_i, theta_i).

Given the class, two labels on one task are then correlated by ``rho = 1 / (alpha + 1)``
(the Dirichlet-multinomial's intra-class correlation), and ``n`` labels on a task carry
about the information of ``n / (1 + (n - 1) * rho)`` independent ones (Kish's design
effect). With the classes given as a posterior ``r`` (an aggregator's ``[n_tasks, K]``
probabilities), ``phi[k]`` is the ``r``-weighted share of each label among the votes on
class ``k``'s tasks (plus half a vote per label), and ``alpha`` maximises the
``r``-weighted log likelihood ``sum_i sum_k r_ik log DirMult(votes_i; alpha * phi[k])``,
a one-dimensional search (Brent's method on ``log alpha``). Tasks with one label say
nothing about ``alpha`` and are left out; tasks with the same votes are summed into one
row, and only the labels a row has are evaluated, so the cost grows with the distinct
vote rows, not the labels. Annotators of different quality alone do not make ``rho``
large: on labels simulated from Dawid–Skene (independent given the class, accuracies
0.5-0.9) it comes out below 0.01. When nearly every task is unanimous, perfect
annotators and correlated ones fit the votes alike; the half vote of smoothing then tips
``rho`` high, which only makes probabilities tempered by it more cautious.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = rng.integers(0, 2, 3000)  # labels correlated within a task by 1 / (9 + 1)
>>> theta = rng.dirichlet([7.2, 1.8], size=3000)
>>> theta[y == 1] = theta[y == 1, ::-1]
>>> votes = np.stack([rng.multinomial(8, t) for t in theta])
>>> round(vote_correlation(votes, np.eye(2)[y]), 2)
0.1
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import gammaln

__all__ = ["vote_correlation"]

_LOG_ALPHA_BOUNDS = (float(np.log(1e-3)), float(np.log(1e8)))


def _distinct_rows(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of whole counts ``votes`` and each row's index among them; rows
    are keyed by one integer (their counts as digits) when that fits in 62 bits, which
    sorts far faster than ``np.unique(..., axis=0)``."""
    counts = votes.astype(np.int64)
    base, K = int(counts.max()) + 1, counts.shape[1]
    if K * np.log2(base) < 62:
        key = counts @ (base ** np.arange(K, dtype=np.int64))
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        return votes[first], inverse.ravel()
    rows, inverse = np.unique(votes, axis=0, return_inverse=True)
    return rows, inverse.ravel()


def vote_correlation(votes: np.ndarray, posterior: np.ndarray, smoothing: float = 0.5) -> float:
    """``rho``: the correlation of two labels on one task given its class, from ``votes``
    ``[n_tasks, K]`` (vote counts per task and label) and the class ``posterior``
    ``[n_tasks, K]`` (rows summing to 1). 0 when no task has two labels or there is one
    class.

    >>> import crowdbayes as cb
    >>> annotations, _ = cb.datasets.load("rte")
    >>> ann = cb.as_annotations(annotations)
    >>> model = cb.DawidSkene().fit(ann)
    >>> round(vote_correlation(ann.vote_counts(), model.proba_), 3)
    0.007
    """
    votes = np.asarray(votes, dtype=np.float64)
    posterior = np.asarray(posterior, dtype=np.float64)
    if votes.ndim != 2 or (votes < 0).any() or (votes != np.round(votes)).any():
        raise ValueError("votes must be a [n_tasks, n_classes] array of whole counts >= 0")
    if posterior.shape != votes.shape:
        raise ValueError(f"posterior has shape {posterior.shape}, votes {votes.shape}")
    keep = votes.sum(axis=1) >= 2
    K = votes.shape[1]
    if K < 2 or not keep.any():
        return 0.0
    votes, posterior = votes[keep], posterior[keep]
    share = posterior.T @ votes + smoothing  # [K, K]: class -> votes per label
    phi = share / share.sum(axis=1, keepdims=True)
    rows, inverse = _distinct_rows(votes)
    resp = np.stack([np.bincount(inverse, posterior[:, k], len(rows)) for k in range(K)], 1)
    n_row, tasks_row = rows.sum(axis=1), resp.sum(axis=1)
    nz_row, nz_label = np.nonzero(rows)
    nz_count, nz_resp = rows[nz_row, nz_label], resp[nz_row]  # [nnz], [nnz, K]

    def neg_log_lik(log_alpha: float) -> float:
        alpha = np.exp(log_alpha)
        a = alpha * phi[:, nz_label].T  # [nnz, K]: Dirichlet parameter of each label, class
        value = tasks_row @ (gammaln(alpha) - gammaln(n_row + alpha))
        value += (nz_resp * (gammaln(nz_count[:, None] + a) - gammaln(a))).sum()
        return -float(value)

    res = minimize_scalar(neg_log_lik, bounds=_LOG_ALPHA_BOUNDS, method="bounded")
    return float(1.0 / (np.exp(res.x) + 1.0))
