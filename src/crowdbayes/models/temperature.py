"""Temperature scaling of a classifier's probabilities: :func:`temper` (the one
definition, also what :func:`crowdbayes.recommend` tempers with) and cleanlab's search for
the temperature that fits the annotators' vote shares (:func:`find_best_temperature`,
:func:`temperature_scale`, as cleanlab 2.9's ``find_best_temp_scaler`` and
``temp_scale_pred_probs``), which CROWDLAB's ``calibrate_probs`` and ActiveLab use."""

from __future__ import annotations

import numpy as np

__all__ = [
    "cleanlab_vote_shares",
    "find_best_temperature",
    "temper",
    "temperature_scale",
]

_SMALL = 1e-30  # cleanlab.internal.multiannotator_utils.SMALL_CONST
_COARSE_TEMPS = (0.1, 0.2, 0.5, 0.8, 1.0, 2.0, 3.0, 5.0, 8.0)


def temper(proba: np.ndarray, temperature: float | np.ndarray) -> np.ndarray:
    """Rows of ``proba`` raised to ``1 / temperature`` and renormalised (``temperature``
    a number, or one per row with shape ``[n_rows, 1]``).

    >>> temper(np.array([[0.9, 0.1]]), 2.0).round(3).tolist()
    [[0.75, 0.25]]
    >>> temper(np.array([[0.9, 0.1], [0.9, 0.1]]), np.array([[1.0], [2.0]])).round(3).tolist()
    [[0.9, 0.1], [0.75, 0.25]]
    """
    logp = np.log(np.clip(proba, 1e-300, 1.0)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(axis=1, keepdims=True)


def _soft_cross_entropy(empirical: np.ndarray, log_pp: np.ndarray, temperature: float) -> float:
    """cleanlab's score of a temperature, in its arithmetic (not :func:`temper`'s): with
    flat probabilities every temperature scores alike, and which one wins is rounding."""
    x = np.exp(log_pp / max(temperature, 1e-6))
    scaled = x / x.sum(axis=1, keepdims=True)
    K = log_pp.shape[1]
    ce = -(empirical * np.log(np.clip(scaled, _SMALL, None))).sum(axis=1) / np.log(K)
    return float(np.mean(ce))


def _fine_range(min_ind: int, size: int = 4) -> np.ndarray:
    coarse = _COARSE_TEMPS
    parts = []
    if min_ind != 0:
        parts.append(np.linspace(coarse[min_ind - 1], coarse[min_ind], size, endpoint=False))
    if min_ind != len(coarse) - 1:
        parts.append(np.linspace(coarse[min_ind], coarse[min_ind + 1], size + 1, endpoint=True))
    return np.concatenate(parts)


def cleanlab_vote_shares(votes: np.ndarray) -> np.ndarray:
    """Vote shares as cleanlab 2.9's calibration computes them: its ``value_counts`` gets
    float labels, so a task that lacks some class has its counts packed into the first
    classes (votes ``[0, 2, 1]`` read as ``[2, 1, 0]``). Tasks with every class are unchanged.

    >>> cleanlab_vote_shares(np.array([[0, 2, 1], [1, 1, 1]])).round(3).tolist()
    [[0.667, 0.333, 0.0], [0.333, 0.333, 0.333]]
    """
    votes = np.asarray(votes)
    present = votes > 0
    rank = np.cumsum(present, axis=1) - 1
    T, K = votes.shape
    packed = np.zeros((T, K), dtype=np.float64)
    rows = np.broadcast_to(np.arange(T)[:, None], (T, K))
    packed[rows[present], rank[present]] = votes[present]
    return packed / packed.sum(axis=1, keepdims=True)


def find_best_temperature(
    votes: np.ndarray, pred_probs: np.ndarray, calibration: str = "cleanlab"
) -> float:
    """The temperature (coarse grid, then a finer one) whose scaled ``pred_probs`` best fit
    each task's vote shares (``votes`` ``[T, K]``) by soft cross-entropy, as cleanlab's
    ``find_best_temp_scaler``. ``calibration="cleanlab"`` uses cleanlab's vote shares
    (:func:`cleanlab_vote_shares`); ``"votes"`` the true ones.

    >>> votes, probs = np.array([[2, 1], [1, 2]]), np.array([[.99, .01], [.01, .99]])
    >>> find_best_temperature(votes, probs), find_best_temperature(votes, probs, "votes")
    (6.5, 6.5)
    """
    pp = np.asarray(pred_probs, dtype=np.float64)
    votes = np.asarray(votes, dtype=np.float64)
    if calibration == "cleanlab":
        empirical = cleanlab_vote_shares(votes)
    elif calibration == "votes":
        empirical = votes / votes.sum(axis=1, keepdims=True)
    else:
        raise ValueError(f"calibration must be 'cleanlab' or 'votes', got {calibration!r}")
    log_pp = np.log(pp, where=pp > 0, out=np.full(pp.shape, -np.inf))
    coarse = [_soft_cross_entropy(empirical, log_pp, t) for t in _COARSE_TEMPS]
    fine = _fine_range(int(np.argmin(coarse)))
    scores = [_soft_cross_entropy(empirical, log_pp, t) for t in fine]
    return float(fine[int(np.argmin(scores))])


def temperature_scale(pred_probs: np.ndarray, temperature: float) -> np.ndarray:
    """Scale probabilities by a temperature (``p ** (1 / t)``, renormalised), as cleanlab.

    >>> temperature_scale(np.array([[.8, .2]]), 2.0).round(3).tolist()
    [[0.667, 0.333]]
    """
    pp = np.clip(np.asarray(pred_probs, dtype=np.float64), _SMALL, None)
    return temper(pp / pp.sum(axis=1, keepdims=True), max(temperature, 1e-6))
