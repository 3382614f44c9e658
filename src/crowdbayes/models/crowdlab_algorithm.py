r"""CROWDLAB: consensus labels from several annotators plus a classifier.

The algorithm of Goh, Tkachenko & Mueller (2022), as cleanlab 2.9's
``cleanlab.multiannotator.get_label_quality_multiannotator`` computes it, to
1e-6 and with the same consensus labels, on the long label arrays:

1. A majority vote, ties broken by the classifier's probabilities, then the rarer
   class overall, then the mean agreement (on untied tasks) of the annotators who
   gave each tied label, then at random (seeded here; cleanlab uses numpy's global RNG).
2. On tasks with two or more labels: the *most-likely-class error* ``e_0`` (how often
   the consensus differs from its most common class), each annotator's agreement
   ``a_j`` with the other annotators of its tasks, and the classifier's error ``e_M``
   against the consensus. Weights relative to that baseline:

   .. math::

       w_j = \max\bigl(1 - (1 - a_j)/e_0,\ 10^{-6}\bigr), \qquad
       w_M = \max\bigl(1 - e_M/e_0,\ 10^{-6}\bigr)\,\sqrt{\bar n},

   with ``\bar n`` the mean number of labels per task (annotators who share no task
   with another get the mean ``a_j``).
3. The weighted posterior of each task: the classifier's probabilities (weight
   ``w_M``) averaged with one distribution per label (weight ``w_j``) that puts
   ``P`` (the mean share of labels agreeing with the consensus) on the given class
   and ``(1 - P)/(K - 1)`` on each other class.
4. ``best_quality`` consensus: the posterior's top class (the majority vote where
   it ties), then steps 2–3 again with that consensus. The consensus quality score is
   the posterior probability of the consensus label; an annotator's label quality is
   the posterior probability of the label it gave; an annotator's quality mixes the
   mean quality of its labels with its agreement with the consensus (on tasks with
   two or more labels) by ``w_M / (w_M + \bar n / M \sum_j w_j)``.

The algorithm here, on the long label arrays (:class:`Labels`, built from an
:class:`~crowdbayes.data.Annotations` by :func:`labels_of`); the estimator is
:class:`~crowdbayes.models.crowdlab.CrowdLab`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..data import Annotations, AnnotationsError

__all__ = [
    "CLIPPING_LOWER_BOUND",
    "CrowdLabResult",
    "Labels",
    "crowdlab",
    "labels_of",
    "majority_vote_label",
]

CLIPPING_LOWER_BOUND = 1e-6  # cleanlab.internal.constants.CLIPPING_LOWER_BOUND


# ------------------------------------------------------------------ arrays
class Labels(NamedTuple):
    """The long label arrays plus the per-task sums every step needs."""

    task: np.ndarray
    worker: np.ndarray
    label: np.ndarray
    n_tasks: int
    n_workers: int
    n_classes: int
    n_per_task: np.ndarray  # [T]
    votes: np.ndarray  # [T, K]
    by_depth: tuple[np.ndarray, ...]  # label indices, the r-th label of each task in group r

    @classmethod
    def build(
        cls, task: np.ndarray, worker: np.ndarray, label: np.ndarray, T: int, W: int, K: int
    ) -> Labels:
        task = np.asarray(task, dtype=np.int64)
        label = np.asarray(label, dtype=np.int64)
        n_t = np.bincount(task, minlength=T)
        votes = np.bincount(task * K + label, minlength=T * K).reshape(T, K)
        # the r-th label of every task (in the order given) in group r, so that per-task
        # sums run in the same order as cleanlab's loop over annotator columns
        order = np.argsort(task, kind="stable")
        starts = np.cumsum(n_t) - n_t
        depth = np.empty(task.size, dtype=np.int64)
        depth[order] = np.arange(task.size) - starts[task[order]]
        by_depth_order = np.argsort(depth, kind="stable")
        cuts = np.cumsum(np.bincount(depth))[:-1]
        groups = tuple(np.split(by_depth_order, cuts))
        return cls(task, np.asarray(worker, np.int64), label, T, W, K, n_t, votes, groups)


class CrowdLabResult(NamedTuple):
    """Everything CROWDLAB computes, as arrays (codes, not user values)."""

    consensus: np.ndarray  # [T] class codes
    majority_vote: np.ndarray  # [T] class codes
    post: np.ndarray  # [T, K] weighted posterior
    consensus_quality: np.ndarray  # [T]
    annotator_agreement: np.ndarray  # [T]: share of the task's labels equal to the consensus
    label_quality: np.ndarray  # [n_labels]: posterior probability of each label given
    model_weight: float
    annotator_weight: np.ndarray  # [W]
    annotator_quality: np.ndarray  # [W] (NaN for annotators with no multiply-labelled task)
    agreement_with_consensus: np.ndarray  # [W]
    worst_class: np.ndarray  # [W] class codes
    n_labels_per_worker: np.ndarray  # [W]
    random_ties: np.ndarray  # [T] bool: majority-vote ties that were left to the RNG


# ----------------------------------------------------------- majority vote
def _safe_div(num: np.ndarray, den: np.ndarray, fill: float = np.nan) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, fill, dtype=np.float64)
    return np.divide(num, den, out=out, where=np.asarray(den) > 0)


def _majority_vote(
    lab: Labels, pred_probs: np.ndarray | None, seed: int | None
) -> tuple[np.ndarray, np.ndarray]:
    votes = lab.votes
    modes = votes == votes.max(axis=1, keepdims=True)
    cand = modes.copy()
    # tie-break 1: the classifier's probability among the tied classes
    if pred_probs is not None:
        p = np.where(cand, pred_probs, -np.inf)
        cand &= p == p.max(axis=1, keepdims=True)
    # tie-break 2: the class with fewer labels overall (against class imbalance)
    freq = votes.sum(axis=0).astype(np.float64)
    f = np.where(cand, freq[None, :], np.inf)
    cand &= f == f.min(axis=1, keepdims=True)
    # tie-break 3: mean agreement (with the untied majority) of those who gave each label
    still = cand.sum(axis=1) > 1
    if still.any():
        untied = modes.sum(axis=1) == 1
        first = np.argmax(modes, axis=1)
        on = untied[lab.task]
        agree = (lab.label[on] == first[lab.task[on]]).astype(np.float64)
        a = _safe_div(
            np.bincount(lab.worker[on], weights=agree, minlength=lab.n_workers),
            np.bincount(lab.worker[on], minlength=lab.n_workers),
        )
        known = ~np.isnan(a)
        a[~known] = a[known].mean() if known.any() else 0.0
        sel = still[lab.task]
        key = lab.task[sel] * lab.n_classes + lab.label[sel]
        size = lab.n_tasks * lab.n_classes
        score = _safe_div(
            np.bincount(key, weights=a[lab.worker[sel]], minlength=size),
            np.bincount(key, minlength=size),
        ).reshape(lab.n_tasks, lab.n_classes)
        score = np.where(cand & still[:, None], score, -np.inf)
        best = score == score.max(axis=1, keepdims=True)
        cand = np.where(still[:, None], cand & best, cand)
    # last resort: at random among what is left (seeded)
    random_ties = cand.sum(axis=1) > 1
    if random_ties.any():
        rng = np.random.default_rng(seed)
        cand = cand * (1.0 + rng.random(cand.shape))
    return np.argmax(cand, axis=1), random_ties


def majority_vote_label(
    task: np.ndarray,
    label: np.ndarray,
    worker: np.ndarray,
    n_classes: int,
    pred_probs: np.ndarray | None = None,
    seed: int | None = 0,
) -> np.ndarray:
    """cleanlab's ``get_majority_vote_label`` on long arrays (codes ``0..K-1``).

    >>> majority_vote_label(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]),
    ...                     np.array([0, 1, 0, 1]), 2, np.array([[.4, .6], [.5, .5]])).tolist()
    [1, 1]
    """
    T = int(np.max(task)) + 1
    W = int(np.max(worker)) + 1
    lab = Labels.build(task, worker, label, T, W, n_classes)
    return _majority_vote(lab, pred_probs, seed)[0]


# ------------------------------------------------------------------ CROWDLAB
def _agreement_with_annotators(lab: Labels) -> np.ndarray:
    """Each annotator's agreement with the others on its multiply-labelled tasks
    (cleanlab's ``_get_annotator_agreement_with_annotators``); the mean where none."""
    same = lab.votes[lab.task, lab.label] - 1.0
    others = lab.n_per_task[lab.task] - 1.0
    a = _safe_div(
        np.bincount(lab.worker, weights=same, minlength=lab.n_workers),
        np.bincount(lab.worker, weights=others, minlength=lab.n_workers),
    )
    known = ~np.isnan(a)
    a[~known] = a[known].mean()
    return a


class _Stats(NamedTuple):
    agreement: np.ndarray  # [T]
    post: np.ndarray  # [T, K]
    quality: np.ndarray  # [T]
    model_weight: float
    annotator_weight: np.ndarray  # [W]


def _consensus_stats(
    lab: Labels, pp: np.ndarray, consensus: np.ndarray, a_with_annotators: np.ndarray
) -> _Stats:
    K = lab.n_classes
    agree = (lab.label == consensus[lab.task]).astype(np.float64)
    agreement = np.bincount(lab.task, weights=agree, minlength=lab.n_tasks) / lab.n_per_task
    multi = lab.n_per_task != 1
    p_consensus = float(np.mean(agreement[multi]))
    p_other = (1.0 - p_consensus) / (K - 1)
    c_multi = consensus[multi]
    baseline = np.argmax(np.bincount(c_multi, minlength=K))
    mlc_error = max(float(np.mean(c_multi != baseline)), CLIPPING_LOWER_BOUND)
    annotator_weight = np.clip(
        1.0 - (1.0 - a_with_annotators) / mlc_error, CLIPPING_LOWER_BOUND, None
    )
    model_error = float(np.mean(np.argmax(pp[multi], axis=1) != c_multi))
    model_weight = max(1.0 - model_error / mlc_error, CLIPPING_LOWER_BOUND) * float(
        np.sqrt(np.mean(lab.n_per_task))
    )
    # weighted average, summed in label order as cleanlab sums over annotator columns
    post = pp * model_weight
    label_weight = np.zeros(lab.n_tasks)
    classes = np.arange(K)
    for group in lab.by_depth:  # one pass per label position (max labels per task)
        t = lab.task[group]
        w = annotator_weight[lab.worker[group]][:, None]
        post[t] += np.where(lab.label[group][:, None] == classes, w * p_consensus, w * p_other)
        label_weight[t] += w[:, 0]
    post /= (label_weight + model_weight)[:, None]
    quality = post[np.arange(lab.n_tasks), consensus]
    return _Stats(agreement, post, quality, model_weight, annotator_weight)


def _best_quality(post: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    top = post == post.max(axis=1, keepdims=True)
    return np.where(top.sum(axis=1) == 1, np.argmax(top, axis=1), fallback)


def _worst_class(lab: Labels, agree: np.ndarray, consensus_quality: np.ndarray) -> np.ndarray:
    """cleanlab's ``_get_single_annotator_worst_class`` for all annotators at once: the
    given class whose labels agree least with the consensus, then the more used, then
    the one whose tasks have the higher mean consensus quality, then the first."""
    W, K = lab.n_workers, lab.n_classes
    key = lab.worker * K + lab.label
    count = np.bincount(key, minlength=W * K).reshape(W, K)
    present = count > 0
    acc = _safe_div(np.bincount(key, weights=agree, minlength=W * K).reshape(W, K), count)
    acc = np.where(present, acc, np.inf)
    cand = present & (acc == acc.min(axis=1, keepdims=True))
    c = np.where(cand, count, -1)
    cand &= c == c.max(axis=1, keepdims=True)
    q = _safe_div(
        np.bincount(key, weights=consensus_quality[lab.task], minlength=W * K).reshape(W, K),
        count,
    )
    q = np.where(cand, q, -np.inf)
    cand &= q == q.max(axis=1, keepdims=True)
    return np.argmax(cand, axis=1)


def _check_multi(lab: Labels) -> None:
    if not (lab.n_per_task > 1).any():
        raise AnnotationsError(
            "every task has a single label: CROWDLAB needs some tasks labelled by two or more "
            "annotators (with one label per task, score labels by pred_probs alone)"
        )


def crowdlab(
    lab: Labels,
    pred_probs: np.ndarray,
    consensus_method: str = "best_quality",
    seed: int | None = 0,
) -> CrowdLabResult:
    """Run CROWDLAB on encoded labels and aligned ``pred_probs`` ``[T, K]`` (float64)."""
    _check_multi(lab)
    pp = np.asarray(pred_probs, dtype=np.float64)
    mv, random_ties = _majority_vote(lab, pp, seed)
    a_with = _agreement_with_annotators(lab)
    stats = _consensus_stats(lab, pp, mv, a_with)
    consensus = mv
    if consensus_method == "best_quality":
        consensus = _best_quality(stats.post, mv)
        stats = _consensus_stats(lab, pp, consensus, a_with)
    elif consensus_method != "majority_vote":
        raise ValueError(
            f"consensus_method must be 'best_quality' or 'majority_vote', got {consensus_method!r}"
        )
    W = lab.n_workers
    agree = (lab.label == consensus[lab.task]).astype(np.float64)
    label_quality = stats.post[lab.task, lab.label]
    n_w = np.bincount(lab.worker, minlength=W)
    mean_label_quality = _safe_div(np.bincount(lab.worker, weights=label_quality, minlength=W), n_w)
    on = (lab.n_per_task != 1)[lab.task]
    agree_multi = _safe_div(
        np.bincount(lab.worker[on], weights=agree[on], minlength=W),
        np.bincount(lab.worker[on], minlength=W),
    )
    mw = stats.model_weight
    adjusted = stats.annotator_weight.sum() * (np.mean(lab.n_per_task) / W)
    share = mw / (mw + adjusted)
    annotator_quality = share * mean_label_quality + (1.0 - share) * agree_multi
    return CrowdLabResult(
        consensus=consensus,
        majority_vote=mv,
        post=stats.post,
        consensus_quality=stats.quality,
        annotator_agreement=stats.agreement,
        label_quality=label_quality,
        model_weight=mw,
        annotator_weight=stats.annotator_weight,
        annotator_quality=annotator_quality,
        agreement_with_consensus=_safe_div(
            np.bincount(lab.worker, weights=agree, minlength=W), n_w
        ),
        worst_class=_worst_class(lab, agree, stats.quality),
        n_labels_per_worker=n_w,
        random_ties=random_ties,
    )


def labels_of(ann: Annotations) -> Labels:
    return Labels.build(ann.task, ann.worker, ann.label, ann.n_tasks, ann.n_workers, ann.n_classes)
