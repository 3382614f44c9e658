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

>>> import numpy as np, pandas as pd
>>> from crowdbayes.models.crowdlab import CrowdLab
>>> wide = pd.DataFrame({"A": [0, 1, 2, 0, 1], "B": [0, 1, 1, None, 1],
...                      "C": [1, 1, 2, 0, None]})
>>> probs = np.array([[.7, .2, .1], [.1, .8, .1], [.2, .3, .5], [.6, .3, .1], [.3, .4, .3]])
>>> cl = CrowdLab().fit(wide, pred_probs=probs)
>>> cl.predict().tolist()
[0, 1, 2, 0, 1]
>>> cl.label_quality()["consensus_quality_score"].round(3).tolist()
[0.687, 0.828, 0.57, 0.693, 0.563]
>>> print(cl.annotator_quality().round(3).to_string())   # worst first
        annotator_quality  agreement_with_consensus  worst_class  num_examples_labeled
worker
C                   0.645                      0.75            1                     4
B                   0.652                      0.75            1                     4
A                   0.795                      1.00            1                     5
"""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from typing import Any, NamedTuple, TypeAlias

import numpy as np
import pandas as pd

from ..base import AdversarialWarning, Aggregator, check_column_keywords, check_is_fitted
from ..data import (
    Annotations,
    AnnotationsError,
    _normalise,
    _plain,
    _show,
    _show_list,
    _sort_classes,
    as_annotations,
    read_as_wide,
)

__all__ = [
    "CLIPPING_LOWER_BOUND",
    "CrowdLab",
    "CrowdLabResult",
    "active_learning_scores",
    "align_pred_probs",
    "cleanlab_vote_shares",
    "crowdlab",
    "find_best_temperature",
    "majority_vote_label",
    "temperature_scale",
]

CLIPPING_LOWER_BOUND = 1e-6  # cleanlab.internal.constants.CLIPPING_LOWER_BOUND
_SMALL = 1e-30  # cleanlab.internal.multiannotator_utils.SMALL_CONST
_COARSE_TEMPS = (0.1, 0.2, 0.5, 0.8, 1.0, 2.0, 3.0, 5.0, 8.0)

PredProbsLike: TypeAlias = pd.DataFrame | np.ndarray


# ------------------------------------------------------------------ arrays
class _Labels(NamedTuple):
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
    ) -> _Labels:
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
    lab: _Labels, pred_probs: np.ndarray | None, seed: int | None
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
    lab = _Labels.build(task, worker, label, T, W, n_classes)
    return _majority_vote(lab, pred_probs, seed)[0]


# ------------------------------------------------------------------ CROWDLAB
def _agreement_with_annotators(lab: _Labels) -> np.ndarray:
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
    lab: _Labels, pp: np.ndarray, consensus: np.ndarray, a_with_annotators: np.ndarray
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


def _worst_class(lab: _Labels, agree: np.ndarray, consensus_quality: np.ndarray) -> np.ndarray:
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


def _check_multi(lab: _Labels) -> None:
    if not (lab.n_per_task > 1).any():
        raise AnnotationsError(
            "every task has a single label: CROWDLAB needs some tasks labelled by two or more "
            "annotators (with one label per task, score labels by pred_probs alone)"
        )


def crowdlab(
    lab: _Labels,
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


# -------------------------------------------------------------- temperature
def _soft_cross_entropy(empirical: np.ndarray, log_pp: np.ndarray, temperature: float) -> float:
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
    pp = pp / pp.sum(axis=1, keepdims=True)
    x = np.exp(np.log(pp) / max(temperature, 1e-6))
    x = x / x.sum(axis=1, keepdims=True)
    return x / x.sum(axis=1, keepdims=True)


# ------------------------------------------------------------ active learning
def active_learning_scores(
    lab: _Labels | None,
    pred_probs: np.ndarray | None,
    pred_probs_unlabeled: np.ndarray | None = None,
    seed: int | None = 0,
    calibration: str = "cleanlab",
) -> tuple[np.ndarray, np.ndarray]:
    """ActiveLab scores (cleanlab's ``get_active_learning_scores``): low = label next.

    Labelled tasks mix their consensus quality (classifier temperature-scaled to the
    annotators) with ``1/K`` by the weight of their labels and the classifier against
    the mean annotator weight; unlabelled tasks mix the classifier's top probability
    with ``1/K`` by the classifier's and the mean annotator's weights.
    """
    K = None
    temperature, model_weight, mean_aw = 1.0, 1.0, 1.0
    scores = np.array([])
    if pred_probs is not None:
        if lab is None:
            raise ValueError("labelled pred_probs need the annotations")
        pp = np.asarray(pred_probs, dtype=np.float64)
        K = pp.shape[1]
        if (lab.n_per_task == 1).all():
            consensus, _ = _majority_vote(lab, pp, seed)
            quality = pp[np.arange(lab.n_tasks), consensus]
            aw = np.ones(lab.n_workers)
        else:
            temperature = find_best_temperature(lab.votes, pp, calibration)
            res = crowdlab(lab, temperature_scale(pp, temperature), seed=seed)
            quality, model_weight, aw = (
                res.consensus_quality,
                res.model_weight,
                res.annotator_weight,
            )
        mean_aw = float(np.mean(aw))
        label_w = np.bincount(lab.task, weights=aw[lab.worker], minlength=lab.n_tasks)
        w1 = label_w + model_weight
        scores = (quality * w1 + mean_aw / K) / (w1 + mean_aw)
    unlabeled = np.array([])
    if pred_probs_unlabeled is not None:
        ppu = temperature_scale(np.asarray(pred_probs_unlabeled, np.float64), temperature)
        K = ppu.shape[1] if K is None else K
        if ppu.shape[1] != K:
            raise ValueError("pred_probs and pred_probs_unlabeled must have the same classes")
        top = ppu.max(axis=1)
        unlabeled = (top * model_weight + mean_aw / K) / (model_weight + mean_aw)
    elif pred_probs is None:
        raise ValueError("give pred_probs (with annotations), pred_probs_unlabeled, or both")
    return scores, unlabeled


# ----------------------------------------------------------- input handling
def _is_wide(data: Any, task: str = "task", worker: str = "worker", label: str = "label") -> bool:
    """Whether ``data`` is read as a wide table (an error when that is ambiguous)."""
    return isinstance(data, pd.DataFrame) and read_as_wide(
        data, task=task, worker=worker, label=label
    )


def _check_probs(values: np.ndarray, name: str) -> np.ndarray:
    pp = np.asarray(values, dtype=np.float64)
    if pp.ndim != 2:
        raise AnnotationsError(f"{name} must be 2-D (tasks x classes), got shape {pp.shape}")
    bad = ~np.isfinite(pp) | (pp < 0)
    if bad.any():
        r = int(np.argmax(bad.any(axis=1)))
        raise AnnotationsError(f"{name} row {r} has a negative, NaN or infinite probability")
    zero = pp.sum(axis=1) <= 0
    if zero.any():
        raise AnnotationsError(f"{name} row {int(np.argmax(zero))} sums to 0")
    return pp


def align_pred_probs(
    data: Annotations | pd.DataFrame | str | os.PathLike[str],
    pred_probs: PredProbsLike | None,
    **columns: str,
) -> tuple[Annotations, np.ndarray]:
    """Encode ``data`` and align ``pred_probs`` to its tasks and classes.

    A DataFrame of probabilities is matched by task id (index) and class (columns, by
    label, or by the label's text when the columns are text, as read from a file; classes
    nobody chose may be among them), whatever the order of its columns. A NumPy array is
    taken row by row only when the order is unambiguous: a wide table (rows are tasks) or
    an :class:`Annotations` (rows follow ``task_ids``); its columns are the sorted classes,
    or the codes ``0..K-1`` when the labels are those integers.
    """
    if pred_probs is None:
        raise TypeError("fit needs pred_probs: the classifier's out-of-sample probabilities")
    wide = _is_wide(data, **columns)
    fast = _numeric_wide(data) if wide else None
    ann = fast if fast is not None else as_annotations(data, **columns)
    if isinstance(pred_probs, pd.DataFrame):
        if pred_probs.index.has_duplicates:
            dup = pred_probs.index[pred_probs.index.duplicated()][0]
            raise AnnotationsError(f"pred_probs has task {_show(dup)} on more than one row")
        classes, order = _class_columns(ann, pred_probs.columns)
        pos = pred_probs.index.get_indexer(ann.task_ids)
        if (pos < 0).any():
            miss = ann.task_ids[pos < 0]
            raise AnnotationsError(
                f"pred_probs has no row for task {_show(miss[0])} (and {len(miss) - 1} more); "
                "index it by task id"
            )
        if len(pred_probs) > ann.n_tasks:
            extra = pred_probs.index.difference(ann.task_ids)
            raise AnnotationsError(
                f"pred_probs has {len(extra)} task(s) with no annotations (first "
                f"{_show(extra[0])}); score those with active_learning_scores("
                "pred_probs_unlabeled=...)"
            )
        values = pred_probs.to_numpy(dtype=np.float64)[:, order]
        pp = _check_probs(values, "pred_probs")[pos]
        return _with_classes(ann, classes), pp
    if not (wide or isinstance(data, Annotations)):
        raise AnnotationsError(
            "pred_probs as a NumPy array needs wide annotations (rows are tasks); with long "
            "annotations pass a DataFrame indexed by task id with one column per class"
        )
    pp = _check_probs(np.asarray(pred_probs), "pred_probs")
    if pp.shape[0] != ann.n_tasks:
        raise AnnotationsError(
            f"pred_probs has {pp.shape[0]} rows but the annotations have {ann.n_tasks} tasks"
        )
    K = pp.shape[1]
    if K == ann.n_classes:
        return ann, pp
    ints = pd.api.types.is_integer_dtype(ann.classes.dtype)
    if ints and K > ann.n_classes and ann.classes.min() >= 0 and ann.classes.max() < K:
        return _with_classes(ann, list(range(K))), pp
    raise AnnotationsError(
        f"pred_probs has {K} columns but the labels have {ann.n_classes} classes "
        f"{list(ann.classes)}; pass a DataFrame with one column per class"
    )


def _class_columns(ann: Annotations, columns: pd.Index) -> tuple[list[Any], np.ndarray]:
    """The classes of a labelled ``pred_probs`` (the annotations' classes first, then any
    class only the classifier has; sorted when the classes are) and, for each, its column."""
    if columns.has_duplicates:
        dup = columns[columns.duplicated()][0]
        raise AnnotationsError(f"pred_probs has column {_show(dup)} more than once")
    pos = columns.get_indexer(ann.classes)
    names = list(columns)
    if (pos < 0).any() and all(isinstance(c, str) for c in columns):
        by_text = pd.Index([str(c) for c in ann.classes])
        if not by_text.has_duplicates:  # text columns, as a file gives, for numeric labels
            pos = columns.get_indexer(by_text)
            if (pos >= 0).all() and pd.api.types.is_numeric_dtype(ann.classes.dtype):
                as_numbers = pd.to_numeric(pd.Series(names), errors="coerce")
                if as_numbers.notna().all():
                    names = list(_normalise(as_numbers))
    if (pos < 0).any():
        missing = ann.classes[pos < 0][0]
        raise AnnotationsError(
            f"pred_probs has no column for label {_show(missing)}; its columns must be the "
            f"classes (got {_show_list(columns)})"
        )
    extra = np.setdiff1d(np.arange(len(columns)), pos)
    classes = [*ann.classes, *(_plain(names[i]) for i in extra)]
    order = np.concatenate([pos, extra]).astype(np.int64)
    if extra.size and list(ann.classes) == _sort_classes(np.asarray(ann.classes, dtype=object)):
        ranked = _sort_classes(np.asarray(classes, dtype=object))
        if len(ranked) == len(classes):
            perm = [classes.index(c) for c in ranked]
            classes, order = ranked, order[perm]
    return classes, order


def _numeric_wide(df: pd.DataFrame) -> Annotations | None:
    """``Annotations.from_wide`` for integer class labels, in numpy (same result, several
    times faster on large tables); ``None`` to fall back when the table is not that
    simple (bool labels, integers beyond float64's exact range) or not valid, so that
    ``from_wide`` names the problem."""
    if df.shape[0] == 0 or df.shape[1] == 0 or df.index.has_duplicates:
        return None
    if df.columns.has_duplicates or df.index.hasnans or df.columns.hasnans:
        return None
    dtypes = set(df.dtypes)
    if not all(pd.api.types.is_numeric_dtype(d) for d in dtypes):
        return None
    if any(pd.api.types.is_bool_dtype(d) for d in dtypes):
        return None
    values = df.to_numpy(dtype=np.float64, na_value=np.nan)
    present = ~np.isnan(values)
    if not present.any(axis=1).all():
        return None
    rows, cols = np.nonzero(present)
    given = values[rows, cols]
    if not (np.isfinite(given).all() and np.all(given == np.round(given))):
        return None
    if np.abs(given).max() >= 2.0**53:  # not exact in float64: from_wide keeps them exact
        return None
    classes, label = np.unique(given.astype(np.int64), return_inverse=True)
    if classes.size < 2:
        return None
    worker, worker_ids = pd.factorize(cols, sort=False)  # first appearance, as from_wide
    return Annotations(
        task=rows.astype(np.int32),
        worker=worker.astype(np.int32),
        label=label.astype(np.int32),
        task_ids=pd.Index(df.index, name=df.index.name or "task"),
        worker_ids=pd.Index(df.columns.to_numpy()[worker_ids], name="worker"),
        classes=pd.Index(classes, name="class"),
        gold=np.full(df.shape[0], -1, dtype=np.int32),
    )


def _with_classes(ann: Annotations, classes: list[Any]) -> Annotations:
    if list(ann.classes) == classes:
        return ann
    index = pd.Index(classes, name="class")
    remap = index.get_indexer(ann.classes).astype(np.int32)
    gold = np.where(ann.gold >= 0, remap[np.maximum(ann.gold, 0)], -1).astype(np.int32)
    return replace(ann, label=remap[ann.label], classes=index, gold=gold)


def _warn_if_classifier_adversarial(
    ann: Annotations, pred_probs: np.ndarray, majority_vote: np.ndarray
) -> None:
    """Warn when the classifier's top class agrees with the annotators' majority vote
    clearly less often than chance (its agreement if the two were independent, less three
    standard errors): most often its columns are not in the order of the classes."""
    top = np.argmax(pred_probs, axis=1)
    K, T = pred_probs.shape[1], len(top)
    agree = float(np.mean(top == majority_vote))
    chance = float(
        np.dot(np.bincount(top, minlength=K) / T, np.bincount(majority_vote, minlength=K) / T)
    )
    if agree < chance - 3.0 * np.sqrt(chance * (1.0 - chance) / T):
        warnings.warn(
            f"CrowdLab: the classifier's top class agrees with the annotators' majority vote "
            f"on {agree:.1%} of tasks, worse than chance ({chance:.1%}): its pred_probs "
            f"columns are likely not in the class order {_show_list(ann.classes)}; give "
            "pred_probs as a DataFrame whose columns are the class labels",
            AdversarialWarning,
            stacklevel=3,
        )


def _labels_of(ann: Annotations) -> _Labels:
    return _Labels.build(ann.task, ann.worker, ann.label, ann.n_tasks, ann.n_workers, ann.n_classes)


# ------------------------------------------------------------------ estimator
class CrowdLab(Aggregator):
    """CROWDLAB consensus (cleanlab's ``get_label_quality_multiannotator``), vectorised.

    Parameters
    ----------
    consensus_method : {"best_quality", "majority_vote"}, default "best_quality"
    calibrate_probs : bool, default False
        Temperature-scale ``pred_probs`` to the annotators' vote shares first.
    calibration : {"cleanlab", "votes"}, default "cleanlab"
        The vote shares the temperature is fitted to (also in ``active_learning_scores``):
        cleanlab 2.9's (see :func:`cleanlab_vote_shares`, which packs the counts of a task
        lacking some class into the first classes), or the true shares.
    seed : int or None, default 0
        Seeds the last-resort random tie-break of the majority vote.

    Attributes
    ----------
    proba_ : ndarray ``[T, K]``, the weighted posterior.
    model_weight_ : float; ``annotator_weight_`` : Series by annotator.
    temperature_ : float (1.0 unless ``calibrate_probs``).
    majority_vote_ : Series, the initial majority vote.
    random_tied_tasks_ : Index of tasks whose majority vote was decided at random.

    ``fit(annotations, pred_probs)``: annotations long (``task``/``worker``/``label``) or
    wide (tasks x annotators, as cleanlab); ``pred_probs`` a DataFrame indexed by task
    with one column per class (a NumPy array only with wide input).
    """

    def __init__(
        self,
        consensus_method: str = "best_quality",
        calibrate_probs: bool = False,
        calibration: str = "cleanlab",
        seed: int | None = 0,
    ) -> None:
        self.consensus_method = consensus_method
        self.calibrate_probs = calibrate_probs
        self.calibration = calibration
        self.seed = seed

    def fit(  # type: ignore[override]
        self,
        annotations: Annotations | pd.DataFrame | str,
        pred_probs: PredProbsLike | None = None,
        gold: Any = None,
        **columns: str,
    ) -> CrowdLab:
        """Fit to annotations and the classifier's out-of-sample ``pred_probs`` (a DataFrame
        by task with the classes as columns, in any order; an array only with wide input).
        CROWDLAB has no use for ``gold``: giving it is an error that points to
        :class:`~crowdbayes.models.bayesian_crowdlab.BayesianCrowdLab`, which clamps it."""
        check_column_keywords(type(self).__name__, columns)
        ann, pp = align_pred_probs(annotations, pred_probs, **columns)
        if gold is not None or ann.has_gold:
            raise AnnotationsError(
                "CrowdLab does not use gold labels (CROWDLAB has no place for them); "
                "BayesianCrowdLab clamps them: BayesianCrowdLab().fit(annotations, "
                "pred_probs=..., gold=...)"
            )
        self.annotations_ = ann
        # annotators in the wide table's column order (as cleanlab lists them), else as seen
        order = np.arange(ann.n_workers)
        long_columns = {columns.get(c, c) for c in ("task", "worker", "label")}
        if isinstance(annotations, pd.DataFrame) and not long_columns <= set(annotations.columns):
            pos = ann.worker_ids.get_indexer(annotations.columns)  # wide (align checked it)
            order = pos[pos >= 0]
        self.annotator_order_ = order
        lab = _labels_of(ann)
        self.raw_pred_probs_ = pp
        self.temperature_ = 1.0
        if self.calibrate_probs:
            self.temperature_ = find_best_temperature(lab.votes, pp, self.calibration)
            pp = temperature_scale(pp, self.temperature_)
        res = crowdlab(lab, pp, consensus_method=self.consensus_method, seed=self.seed)
        self.pred_probs_ = pp
        self.result_ = res
        self.proba_ = res.post
        self.label_codes_ = res.consensus
        self.model_weight_ = res.model_weight
        self.annotator_weight_ = pd.Series(
            res.annotator_weight, index=ann.worker_ids, name="annotator_weight"
        )
        self.majority_vote_ = pd.Series(
            ann.decode_labels(res.majority_vote), index=ann.task_ids, name="label"
        )
        self.random_tied_tasks_ = ann.task_ids[res.random_ties]
        _warn_if_classifier_adversarial(ann, self.raw_pred_probs_, res.majority_vote)
        return self

    def _fit(self, ann: Annotations) -> None:  # pragma: no cover - fit is overridden
        raise TypeError("CrowdLab.fit needs pred_probs")

    def fit_predict(  # type: ignore[override]
        self,
        annotations: Annotations | pd.DataFrame | str,
        pred_probs: PredProbsLike | None = None,
        gold: Any = None,
        **columns: str,
    ) -> pd.Series:
        """``fit`` then ``predict``."""
        return self.fit(annotations, pred_probs, gold, **columns).predict()

    # ------------------------------------------------------------- outputs
    def label_quality(self) -> pd.DataFrame:
        """Per task (cleanlab's ``label_quality``): ``consensus_label``,
        ``consensus_quality_score``, ``annotator_agreement``, ``num_annotations``."""
        check_is_fitted(self)
        ann, res = self.annotations_, self.result_
        return pd.DataFrame(
            {
                "consensus_label": ann.decode_labels(res.consensus),
                "consensus_quality_score": res.consensus_quality,
                "annotator_agreement": res.annotator_agreement,
                "num_annotations": ann.labels_per_task(),
            },
            index=ann.task_ids,
        )

    def detailed_label_quality(self, format: str = "wide") -> pd.DataFrame:
        """Quality of each label given: the posterior probability of that label.

        ``format="wide"``: cleanlab's ``detailed_label_quality`` (tasks x
        ``quality_annotator_<id>``, NaN where no label; repeated labels of one annotator
        on one task keep the last). ``format="long"``: one row per label given
        (``task``, ``worker``, ``label``, ``quality``), better for large data.
        """
        check_is_fitted(self)
        ann, res = self.annotations_, self.result_
        if format == "long":
            long = ann.to_long()
            long["quality"] = res.label_quality
            return long
        if format != "wide":
            raise ValueError(f"format must be 'wide' or 'long', got {format!r}")
        out = np.full((ann.n_tasks, ann.n_workers), np.nan)
        out[ann.task, ann.worker] = res.label_quality
        order = self.annotator_order_
        if not np.array_equal(order, np.arange(ann.n_workers)):
            out = out[:, order]
        cols = [f"quality_annotator_{w}" for w in ann.worker_ids[order]]
        return pd.DataFrame(out, index=ann.task_ids, columns=cols, copy=False)

    def annotator_quality(self) -> pd.DataFrame:
        """Per annotator, worst first (cleanlab's ``annotator_stats``):
        ``annotator_quality``, ``agreement_with_consensus``, ``worst_class``,
        ``num_examples_labeled``. Quality is NaN for an annotator none of whose tasks
        has another label."""
        check_is_fitted(self)
        ann, res = self.annotations_, self.result_
        stats = pd.DataFrame(
            {
                "annotator_quality": res.annotator_quality,
                "agreement_with_consensus": res.agreement_with_consensus,
                "worst_class": ann.decode_labels(res.worst_class),
                "num_examples_labeled": res.n_labels_per_worker,
            },
            index=ann.worker_ids,
        ).iloc[self.annotator_order_]
        return stats.sort_values(by=["annotator_quality", "agreement_with_consensus"])

    annotator_stats = annotator_quality

    def to_cleanlab(self) -> dict[str, Any]:
        """The results as cleanlab's ``get_label_quality_multiannotator`` returns them."""
        return {
            "label_quality": self.label_quality(),
            "detailed_label_quality": self.detailed_label_quality(),
            "annotator_stats": self.annotator_quality(),
            "model_weight": self.model_weight_,
            "annotator_weight": self.annotator_weight_.to_numpy(),
        }

    def active_learning_scores(
        self, pred_probs_unlabeled: PredProbsLike | None = None
    ) -> tuple[pd.Series, pd.Series | np.ndarray]:
        """ActiveLab scores (cleanlab's ``get_active_learning_scores``) for the fitted
        tasks and, optionally, unlabelled tasks; the lowest are worth labelling next.

        Uses the fitted annotations and the ``pred_probs`` given to ``fit`` (before any
        calibration: ActiveLab calibrates them itself). Unlabelled probabilities in a
        DataFrame (columns = classes) give a Series by its index, an array an array.
        """
        check_is_fitted(self)
        ann = self.annotations_
        pp = self.raw_pred_probs_
        ppu: np.ndarray | None = None
        if isinstance(pred_probs_unlabeled, pd.DataFrame):
            missing = [c for c in ann.classes if c not in set(pred_probs_unlabeled.columns)]
            if missing:
                raise AnnotationsError(
                    f"pred_probs_unlabeled has no column for {_show(missing[0])}"
                )
            ppu = _check_probs(
                pred_probs_unlabeled[list(ann.classes)].to_numpy(np.float64), "pred_probs_unlabeled"
            )
        elif pred_probs_unlabeled is not None:
            ppu = _check_probs(np.asarray(pred_probs_unlabeled), "pred_probs_unlabeled")
        scores, unl = active_learning_scores(
            _labels_of(ann), pp, ppu, seed=self.seed, calibration=self.calibration
        )
        labelled = pd.Series(scores, index=ann.task_ids, name="active_learning_score")
        if isinstance(pred_probs_unlabeled, pd.DataFrame):
            return labelled, pd.Series(
                unl, index=pred_probs_unlabeled.index, name="active_learning_score"
            )
        return labelled, unl
