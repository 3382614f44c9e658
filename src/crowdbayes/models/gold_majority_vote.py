r"""Gold majority vote: annotator skill from gold (control) tasks, then a skill-weighted vote.

Each annotator's skill is their accuracy on the gold tasks they labelled,

.. math::

    s_j = \frac{\#\{\text{labels of } j \text{ on gold tasks that equal the gold label}\}}
               {\#\{\text{labels of } j \text{ on gold tasks}\}},

and each task's class probabilities are the skill-weighted vote shares
:math:`p_{ik} \propto \sum_{j \to i} s_j [y_{ij} = k]`, as crowd-kit's
``GoldMajorityVote`` computes them (its ``skills_`` and ``probas_``). Differences,
all documented rules rather than crashes:

* **Annotators with no gold task** get ``missing_skill``: ``"pooled"`` (default) is the
  accuracy of all labels on gold tasks taken together; a number is used as given;
  ``"error"`` raises an :class:`~crowdbayes.data.AnnotationsError` naming them (crowd-kit
  raises a ``ValueError``). They are listed in ``workers_without_gold_``.
* **A task whose annotators all have skill 0** falls back to plain vote shares (listed in
  ``unweighted_tasks_``) instead of 0/0.
* **Gold tasks are clamped** to their gold label (``clamp_gold=True``); crowd-kit
  predicts them by the weighted vote like any task (``clamp_gold=False`` does the same).
* A repeated (task, annotator, label) counts once in the skill, as in crowd-kit.

>>> import pandas as pd
>>> from crowdbayes.models.gold_majority_vote import GoldMajorityVote
>>> df = pd.DataFrame({"task": ["t1", "t1", "t1", "t2", "t2", "t2", "t3"],
...                    "worker": ["p1", "p2", "p3", "p1", "p2", "p3", "p4"],
...                    "label": [0, 0, 1, 1, 0, 1, 1]})
>>> gmv = GoldMajorityVote().fit(df, gold={"t1": 0})
>>> gmv.skills_.tolist()            # p4 saw no gold: pooled accuracy 2/3
[1.0, 1.0, 0.0, 0.6666666666666666]
>>> list(gmv.workers_without_gold_)
['p4']
>>> gmv.predict_proba().loc["t2"].tolist()
[0.5, 0.5]
>>> gmv.predict().tolist()
[0, 0, 1]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..base import Aggregator, check_interval, check_is_fitted, wilson_interval
from ..data import Annotations, AnnotationsError
from .majority_vote import TIE_POLICIES, break_ties

__all__ = ["GoldMajorityVote", "gold_skills"]


def gold_skills(ann: Annotations) -> tuple[np.ndarray, np.ndarray]:
    """Per annotator: accuracy on gold tasks and number of distinct gold labels given.

    Returns ``(skill, n_gold)``, both of shape ``(n_workers,)``; ``skill`` is NaN where
    ``n_gold`` is 0. A repeated (task, annotator, label) triple counts once.

    >>> import pandas as pd
    >>> from crowdbayes.data import Annotations
    >>> ann = Annotations.from_long(pd.DataFrame({"task": [1, 1, 2], "worker": ["a", "b", "a"],
    ...                                           "label": ["x", "y", "y"]}), gold={1: "x"})
    >>> skill, n = gold_skills(ann)
    >>> skill.tolist(), n.tolist()
    ([1.0, 0.0], [1, 1])
    """
    on_gold = ann.gold[ann.task] >= 0
    t, w, lab = ann.task[on_gold], ann.worker[on_gold], ann.label[on_gold]
    key = (w.astype(np.int64) * ann.n_tasks + t) * ann.n_classes + lab
    key = np.unique(key)  # distinct (worker, task, label)
    lab_u = key % ann.n_classes
    t_u = (key // ann.n_classes) % ann.n_tasks
    w_u = key // (ann.n_classes * ann.n_tasks)
    correct = (lab_u == ann.gold[t_u]).astype(float)
    n_gold = np.bincount(w_u, minlength=ann.n_workers)
    hits = np.bincount(w_u, weights=correct, minlength=ann.n_workers)
    skill = np.full(ann.n_workers, np.nan)
    seen = n_gold > 0
    skill[seen] = hits[seen] / n_gold[seen]
    return skill, n_gold


class GoldMajorityVote(Aggregator):
    """Majority vote weighted by each annotator's accuracy on gold tasks.

    Parameters
    ----------
    missing_skill : ``"pooled"``, ``"error"`` or float, default ``"pooled"``
        Skill of annotators who labelled no gold task (see the module notes).
    clamp_gold : bool, default True
        Give gold tasks their gold label (probability 1).
    tie_break : ``"random"``, ``"prior"`` or ``"smallest"``, default ``"smallest"``
        As :class:`~crowdbayes.models.majority_vote.MajorityVote`; ``"smallest"`` (the
        first class in sorted order) is what crowd-kit does.
    seed : int, for ``tie_break="random"``.

    Attributes
    ----------
    skills_ : Series, skill per annotator (crowd-kit's ``skills_``).
    n_gold_ : Series, distinct gold labels per annotator.
    workers_without_gold_ : Index of annotators given ``missing_skill``.
    default_skill_ : float, the skill they were given (NaN when none needed it).
    unweighted_tasks_ : Index of tasks where every annotator had skill 0.
    tied_tasks_ : Index of ordinary tasks whose top weighted vote was tied.
    """

    # parameters (the constructor takes these)
    missing_skill: str | float = "pooled"
    clamp_gold: bool = True
    tie_break: str = "smallest"
    seed: int | None = 0

    def _default_skill(self, ann: Annotations, skill: np.ndarray, n_gold: np.ndarray) -> float:
        missing = n_gold == 0
        if not missing.any():
            return float("nan")
        rule = self.missing_skill
        if isinstance(rule, str):
            if rule == "error":
                names = list(ann.worker_ids[missing][:5])
                more = f" (and {int(missing.sum()) - 5} more)" if missing.sum() > 5 else ""
                raise AnnotationsError(
                    f"annotator(s) {names}{more} labelled no gold task, so GoldMajorityVote has "
                    "no skill for them; add gold tasks they labelled, or use "
                    "missing_skill='pooled' or a number"
                )
            if rule != "pooled":
                raise ValueError(
                    f"missing_skill must be 'pooled', 'error' or a number, got {rule!r}"
                )
            seen = ~missing
            return float((skill[seen] * n_gold[seen]).sum() / n_gold[seen].sum())
        value = float(rule)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"missing_skill must be in [0, 1], got {value}")
        return value

    def _fit(self, ann: Annotations) -> None:
        if self.tie_break not in TIE_POLICIES:
            raise ValueError(f"tie_break must be one of {TIE_POLICIES}, got {self.tie_break!r}")
        if not ann.has_gold:
            raise AnnotationsError(
                "GoldMajorityVote needs gold labels: pass gold= (task id -> label) to fit, "
                "or a platform export with a GOLDEN: column"
            )
        skill, n_gold = gold_skills(ann)
        default = self._default_skill(ann, skill, n_gold)
        missing = n_gold == 0
        skill = np.where(missing, default, skill)
        self.skills_ = pd.Series(skill, index=ann.worker_ids, name="skill")
        self.n_gold_ = pd.Series(n_gold, index=ann.worker_ids, name="n_gold")
        self.workers_without_gold_ = ann.worker_ids[missing]
        self.default_skill_ = default
        proba, codes, tied, unweighted = self._weighted_vote(ann, skill)
        if self.clamp_gold:
            known = ann.gold >= 0
            proba[known] = np.eye(ann.n_classes)[ann.gold[known]]
            codes = np.where(known, ann.gold, codes)
            tied = tied & ~known
        self.proba_ = proba
        self.label_codes_ = codes
        self.tied_tasks_ = ann.task_ids[tied]
        self.unweighted_tasks_ = ann.task_ids[unweighted]

    def _weighted_vote(
        self, ann: Annotations, skill: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        flat = ann.task.astype(np.int64) * ann.n_classes + ann.label
        size = ann.n_tasks * ann.n_classes
        w = skill[ann.worker]
        scores = np.bincount(flat, weights=w, minlength=size).reshape(ann.n_tasks, -1)
        votes = ann.vote_counts().astype(np.float64)
        total = scores.sum(axis=1, keepdims=True)
        unweighted = total[:, 0] <= 0
        scores = np.where(unweighted[:, None], votes, scores)
        proba = scores / scores.sum(axis=1, keepdims=True)
        codes, tied = break_ties(proba, self.tie_break, self.seed, votes.sum(axis=0))
        return proba, codes, tied, unweighted

    def _skills_for(self, ann: Annotations) -> np.ndarray:
        known = self.skills_.to_numpy()
        n_new = ann.n_workers - known.shape[0]
        if n_new <= 0:
            return known
        fill = self.default_skill_
        if np.isnan(fill):
            fill = float(np.average(known, weights=np.maximum(self.n_gold_.to_numpy(), 1e-12)))
        return np.concatenate([known, np.full(n_new, fill)])

    def _predict_proba_new(self, ann: Annotations) -> np.ndarray:
        proba, _, _, _ = self._weighted_vote(ann, self._skills_for(ann))
        return proba

    def annotator_quality(self, interval: float | None = 0.9) -> pd.DataFrame:
        """Per annotator: ``accuracy`` (the skill the vote weighs by: accuracy on the gold
        tasks, the default skill for an annotator without one) with its ``interval``
        Wilson bounds on the gold tasks (``accuracy_lower``/``_upper``; NaN without gold),
        ``n_gold`` (gold tasks labelled), ``n_labels`` and ``agreement`` with the
        aggregated labels (the schema of :meth:`Aggregator.annotator_quality`)."""
        check_interval(interval, "annotator_quality")
        check_is_fitted(self)
        ann = self.annotations_
        skill = self.skills_.to_numpy()
        n_gold = self.n_gold_.to_numpy()
        out = {"accuracy": skill}
        if interval is not None:
            hits = np.where(n_gold > 0, skill, 0.0) * n_gold
            out["accuracy_lower"], out["accuracy_upper"] = wilson_interval(hits, n_gold, interval)
        out.update(
            n_gold=n_gold,
            n_labels=ann.labels_per_worker(),
            agreement=self._agreement_with_consensus(),
        )
        return pd.DataFrame(out, index=ann.worker_ids)
