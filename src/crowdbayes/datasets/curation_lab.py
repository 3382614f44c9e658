"""The simulated data of the dataset-curation lab (multiple annotators + a classifier).

Reproduces, draw for draw, the generator of the "Dataset Curation with Multiple
Annotators" lab that accompanies cleanlab's CROWDLAB: 3 classes of 2-D Gaussian
features, 50 annotators (the last 10, ``A0041``-``A0050``, worse), each labelling
about 10% of the items. The lab seeds numpy's global RNG with 123; here a private
``RandomState(123)`` gives the same stream without touching global state.

>>> from crowdbayes.datasets.curation_lab import make_data
>>> d = make_data()
>>> d.X.shape, d.labels.shape, int(d.labels.notna().sum().sum())
((299, 2), (299, 50), 1517)
>>> d.labels.index[:3].tolist(), d.truth[:3].tolist()
([247, 290, 262], [2, 2, 2])

:func:`lab_majority_vote` is the lab's majority vote with its annotator-score tie-break
(the labels its classifier is then trained on), and :func:`knn_pred_probs` its
out-of-sample 5-fold KNN probabilities (needs scikit-learn).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

__all__ = ["CurationLabData", "knn_pred_probs", "lab_majority_vote", "make_data"]

BAD_ANNOTATORS = [f"A{i:04d}" for i in range(41, 51)]


class CurationLabData(NamedTuple):
    X: np.ndarray  # [n, 2] features
    labels: pd.DataFrame  # wide: items x annotators (Int64, <NA> where no label)
    truth: np.ndarray  # [n] hidden true class


def _noisy_labels(rs: np.random.RandomState, truth: np.ndarray, quality: float) -> np.ndarray:
    n = len(truth)
    labels = rs.randint(low=0, high=3, size=n)
    correct = rs.random_sample(n) < quality
    labels[correct] = truth[correct]
    return labels


def make_data(sample_size: int = 300, seed: int = 123) -> CurationLabData:
    """The lab's ``make_data`` (same draws in the same order for the same seed)."""
    rs = np.random.RandomState(seed)
    num_annotators = 50
    sizes = [int(np.ceil(f * sample_size)) for f in (0.5, 0.25, 0.25)]
    means = [[3, 2], [7, 7], [0, 8]]
    covs = np.array([[[5, -1.5], [-1.5, 1]], [[1, 0.5], [0.5, 4]], [[5, 1], [1, 5]]])
    X = np.vstack(
        [
            rs.multivariate_normal(mean=m, cov=c, size=s)
            for m, c, s in zip(means, covs, sizes, strict=True)
        ]
    )
    truth = np.repeat(np.arange(3), sizes)
    n = len(truth)
    # one annotator after another, as the lab draws them (quality 0.6, the last 10 0.3)
    given = np.vstack(
        [_noisy_labels(rs, truth, 0.6 if i < num_annotators - 10 else 0.3) for i in range(50)]
    ).T
    hidden = rs.random_sample((num_annotators, n)).T < 0.9  # column by column, as .apply
    s = pd.DataFrame(np.where(hidden, np.nan, given)).astype("Int64")
    s = s.dropna(axis=1, how="all")
    s.columns = [f"A{i:04d}" for i in range(1, s.shape[1] + 1)]
    keep = s.notna().any(axis=1).to_numpy()
    X, truth = X[keep], truth[keep]
    s = s[keep].reset_index(drop=True)
    perm = rs.permutation(len(X))
    return CurationLabData(X[perm], s.iloc[perm], truth[perm])


def lab_majority_vote(labels: pd.DataFrame) -> np.ndarray:
    """The lab's majority vote, ties broken by annotator score (exercise 1, last cell).

    Annotator score: agreement with the first-seen majority label on items with two or
    more labels. A tie goes to the label whose least-scored annotator scores highest
    (on equal scores, the label seen last).
    """
    L = labels.astype("float64").to_numpy()
    M = L.shape[1]
    K = int(np.nanmax(L)) + 1
    given = ~np.isnan(L)
    onehot = given[:, :, None] & (L[:, :, None] == np.arange(K))  # [T, M, K]
    votes = onehot.sum(axis=1)
    top = votes == votes.max(axis=1, keepdims=True)
    first_seen = np.where(onehot.any(axis=1), np.argmax(onehot, axis=1), M)  # [T, K]
    first_mv = np.argmin(np.where(top, first_seen, M + 1), axis=1)
    multi = given.sum(axis=1) > 1
    agree = given & (L == first_mv[:, None]) & multi[:, None]
    score = agree.sum(axis=0) / (given & multi[:, None]).sum(axis=0)
    least = np.where(onehot, score[None, :, None], np.inf).min(axis=1)  # [T, K]
    least = np.where(top, least, -np.inf)
    best = least == least.max(axis=1, keepdims=True)
    return np.argmax(np.where(best, first_seen, -1), axis=1)


def knn_pred_probs(X: np.ndarray, labels: np.ndarray, folds: int = 5) -> np.ndarray:
    """Out-of-sample probabilities of the lab's classifier: distance-weighted KNN,
    ``folds``-fold ``cross_val_predict`` (needs scikit-learn)."""
    from sklearn.model_selection import cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier

    model = KNeighborsClassifier(weights="distance")
    return np.asarray(
        cross_val_predict(model, X=X, y=labels, cv=folds, method="predict_proba"), dtype=float
    )
