"""Majority vote, the baseline, with a documented tie policy.

>>> import pandas as pd
>>> import crowdbayes as cb
>>> df = pd.DataFrame({"task": [1, 1, 2, 2], "worker": ["a", "b", "a", "b"],
...                    "label": ["x", "x", "x", "y"]})
>>> mv = cb.MajorityVote(tie_break="smallest").fit(df)
>>> mv.predict().tolist()
['x', 'x']
>>> list(mv.tied_tasks_)
[2]
>>> mv.predict_proba().loc[2].tolist()
[0.5, 0.5]
"""

from __future__ import annotations

import numpy as np

from ..base import Aggregator
from ..data import Annotations

__all__ = ["MajorityVote", "break_ties"]

TIE_POLICIES = ("random", "prior", "smallest")


def break_ties(
    votes: np.ndarray, policy: str, seed: int | None = 0, class_weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pick the top class per row of ``votes`` ``[n, K]``; return (codes, tied mask).

    ``random``: uniformly among the tied classes (seeded); ``prior``: the tied class
    with the larger ``class_weight`` (overall vote share), then the smallest;
    ``smallest``: the first class in the sorted class order.
    """
    if policy not in TIE_POLICIES:
        raise ValueError(f"tie_break must be one of {TIE_POLICIES}, got {policy!r}")
    top = votes.max(axis=1, keepdims=True)
    is_top = np.isclose(votes, top, rtol=1e-12, atol=1e-12)
    tied = is_top.sum(axis=1) > 1
    if policy == "smallest":
        score = is_top.astype(float)
    elif policy == "prior":
        w = votes.sum(axis=0) if class_weight is None else class_weight
        rank = np.argsort(np.argsort(-np.asarray(w, dtype=float), kind="stable"), kind="stable")
        score = is_top * (votes.shape[1] - rank)[None, :]
    else:
        rng = np.random.default_rng(seed)
        score = is_top * (1.0 + rng.random(votes.shape))
    return np.argmax(score, axis=1), tied


class MajorityVote(Aggregator):
    """Each task gets the label most of its annotators gave.

    ``predict_proba`` gives the vote shares. Ties are broken by ``tie_break``:
    ``"random"`` (default; seeded by ``seed``, so repeatable), ``"prior"`` (the
    more frequent class overall) or ``"smallest"`` (first in sorted class order).
    Tied tasks are listed in ``tied_tasks_``. Gold labels passed to ``fit`` are
    clamped.
    """

    # parameters (the constructor takes these)
    tie_break: str = "random"
    seed: int | None = 0

    def _fit(self, ann: Annotations) -> None:
        votes = ann.vote_counts().astype(np.float64)
        codes, tied = break_ties(votes, self.tie_break, self.seed)
        proba = votes / votes.sum(axis=1, keepdims=True)
        known = ann.gold >= 0
        proba[known] = np.eye(ann.n_classes)[ann.gold[known]]
        codes = np.where(known, ann.gold, codes)
        self.proba_ = proba
        self.label_codes_ = codes
        self.tied_tasks_ = ann.task_ids[tied & ~known]

    def _predict_proba_new(self, ann: Annotations) -> np.ndarray:
        votes = ann.vote_counts().astype(np.float64)
        return votes / votes.sum(axis=1, keepdims=True)
