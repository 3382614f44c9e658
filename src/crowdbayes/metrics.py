r"""Quality metrics of an annotation project: uncertainty, consistency, agreement, accuracy.

Two families, each a public function:

**Over a fitted model** (any :class:`~crowdbayes.base.Aggregator`): a task's
*uncertainty* is the entropy (nats) of its posterior over classes and its
*consistency* the posterior probability of the label the model chose. Gold tasks
are clamped in the fit, which would make both trivial there, so for gold tasks
the posterior is the *crowd posterior*: the annotators' labels scored with the
fitted annotator model, the gold label left out. A gold task with low consistency
is one where the crowd does not back the gold label (a suspicious control task).

**Over labels plus annotator skills**, crowd-kit's definitions
(``crowdkit.metrics.data.uncertainty`` and ``consistency``), so numbers carry over.
Each label ``y`` from an annotator of skill ``s`` says class ``k`` with probability
:math:`q_k = s` if :math:`k = y`, else :math:`(1 - s)/(K - 1)`;

* uncertainty: entropy of the average of ``q`` over a task's (or an annotator's) labels,
* consistency: :math:`\prod q_k / \sum_{k'} \prod q_{k'}` at the majority-vote label
  (the one-coin posterior with a flat prior), 0 where every class has probability 0.

Here these are computed in log space (no underflow, no ``log(0)`` warnings).

Agreement: :func:`krippendorff_alpha` (nominal), :func:`fleiss_kappa`. Accuracy against
gold with Wilson intervals: :func:`gold_accuracy`, :func:`annotator_accuracy`. The
probabilities against gold: :func:`log_loss` (probabilities clipped at :data:`PROB_CLIP`)
and :func:`expected_calibration_error`.

>>> import pandas as pd
>>> from crowdbayes import metrics
>>> df = pd.DataFrame({"task": ["X", "X", "Y", "Y"], "worker": ["A", "B", "A", "B"],
...                    "label": ["Yes", "No", "Yes", "Yes"]})
>>> metrics.uncertainty(df, pd.Series({"A": 1.0, "B": 1.0})).round(6).to_dict()
{'X': 0.693147, 'Y': 0.0}
>>> metrics.consistency(df, pd.Series({"A": 0.9, "B": 0.6})).round(4).to_dict()
{'X': 0.1429, 'Y': 0.931}
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from .base import Aggregator, check_is_fitted, entropy, wilson_interval
from .data import Annotations, AnnotationsError, GoldLike, as_annotations
from .models.majority_vote import break_ties

__all__ = [
    "PROB_CLIP",
    "annotator_accuracy",
    "consistency",
    "crowd_posterior",
    "expected_calibration_error",
    "fleiss_kappa",
    "gold_accuracy",
    "krippendorff_alpha",
    "log_loss",
    "quality_summary",
    "task_metrics",
    "uncertainty",
    "wilson_interval",
]

AnswersLike: TypeAlias = Aggregator | Annotations | pd.DataFrame


# ------------------------------------------------------------------ helpers
def _annotations(data: AnswersLike) -> Annotations:
    if isinstance(data, Aggregator):
        check_is_fitted(data)
        return data.annotations_
    return as_annotations(data)


def model_skills(model: Aggregator) -> pd.Series:
    """A fitted model's annotator skills: ``skills_`` where the model has them, else the
    ``accuracy`` (or ``agreement``) column of ``annotator_quality()``."""
    check_is_fitted(model)
    skills = getattr(model, "skills_", None)
    if isinstance(skills, pd.Series):
        return skills
    quality_fn = getattr(model, "annotator_quality", None)
    if quality_fn is not None:
        quality = quality_fn()
        for col in ("accuracy", "agreement"):
            if col in quality.columns:
                return quality[col].rename("skill")
    raise AnnotationsError(
        f"{type(model).__name__} has no annotator skills; pass skills= (annotator -> skill)"
    )


def _skill_array(ann: Annotations, skills: pd.Series | Any) -> np.ndarray:
    s = skills if isinstance(skills, pd.Series) else pd.Series(skills)
    values = s.reindex(ann.worker_ids).to_numpy(dtype=float)
    bad = np.isnan(values)
    if bad.any():
        names = list(ann.worker_ids[bad][:5])
        raise AnnotationsError(
            f"no skill given for annotator(s) {names} ({int(bad.sum())} in all); skills must "
            "cover every annotator in the labels"
        )
    out = (values < 0) | (values > 1)
    if out.any():
        i = int(np.argmax(out))
        raise AnnotationsError(
            f"skill of annotator {ann.worker_ids[i]!r} is {values[i]}, outside [0, 1]"
        )
    return values


def _safe_log(x: np.ndarray) -> np.ndarray:
    return np.log(np.where(x > 0, x, 1.0))


def _mv_codes(ann: Annotations) -> np.ndarray:
    codes, _ = break_ties(ann.vote_counts().astype(float), "smallest")
    return codes


def _agreement_skills(ann: Annotations, codes: np.ndarray) -> np.ndarray:
    """Share of each annotator's distinct (task, label) pairs equal to ``codes`` (crowd-kit's
    ``MajorityVote().skills_``)."""
    key = np.unique(
        (ann.worker.astype(np.int64) * ann.n_tasks + ann.task) * ann.n_classes + ann.label
    )
    lab = key % ann.n_classes
    t = (key // ann.n_classes) % ann.n_tasks
    w = key // (ann.n_classes * ann.n_tasks)
    hits = np.bincount(w, weights=(lab == codes[t]).astype(float), minlength=ann.n_workers)
    return hits / np.maximum(np.bincount(w, minlength=ann.n_workers), 1)


def _soft_label_sums(ann: Annotations, skill: np.ndarray, by: np.ndarray, n: int) -> np.ndarray:
    """``[n, K]``: sum of each label's class distribution ``q`` over the groups ``by``."""
    K = ann.n_classes
    s = skill[ann.worker]
    off = (1.0 - s) / (K - 1)
    base = np.bincount(by, weights=off, minlength=n)
    extra = np.bincount(by.astype(np.int64) * K + ann.label, weights=s - off, minlength=n * K)
    return base[:, None] + extra.reshape(n, K)


def _one_coin_posterior(ann: Annotations, skill: np.ndarray) -> np.ndarray:
    """``[T, K]``: ``prod q / sum prod q`` per task, in log space; rows where every class has
    probability 0 are all zeros (crowd-kit's rule)."""
    K, T = ann.n_classes, ann.n_tasks
    s = skill[ann.worker]
    off = (1.0 - s) / (K - 1)
    flat = ann.task.astype(np.int64) * K + ann.label
    log_off, log_s = _safe_log(off), _safe_log(s)
    zero_off, zero_s = (off <= 0).astype(float), (s <= 0).astype(float)
    log_base = np.bincount(ann.task, weights=log_off, minlength=T)
    zero_base = np.bincount(ann.task, weights=zero_off, minlength=T)
    log_extra = np.bincount(flat, weights=log_s - log_off, minlength=T * K).reshape(T, K)
    zero_extra = np.bincount(flat, weights=zero_s - zero_off, minlength=T * K).reshape(T, K)
    logp = log_base[:, None] + log_extra
    possible = (zero_base[:, None] + zero_extra) < 0.5
    logp = np.where(possible, logp, -np.inf)
    top = np.max(np.where(possible, logp, np.finfo(float).min), axis=1, keepdims=True)
    unnorm = np.where(possible, np.exp(np.where(possible, logp - top, 0.0)), 0.0)
    total = unnorm.sum(axis=1, keepdims=True)
    return unnorm / np.where(total > 0, total, 1.0)


def crowd_posterior(model: Aggregator) -> pd.DataFrame:
    """A fitted model's posterior with gold tasks scored from their labels alone.

    Ordinary tasks keep ``predict_proba()``; gold tasks get the probabilities the fitted
    annotator model gives their labels with the gold label left out (models that cannot
    score tasks keep their fitted, clamped posterior).
    """
    check_is_fitted(model)
    ann = model.annotations_
    proba = np.array(model.proba_, dtype=float, copy=True)
    known = ann.gold >= 0
    if known.any():
        try:
            crowd = model._predict_proba_new(replace(ann, gold=np.full_like(ann.gold, -1)))
        except NotImplementedError:
            crowd = None
        if crowd is not None:
            proba[known] = np.asarray(crowd, dtype=float)[known]
    return pd.DataFrame(proba, index=ann.task_ids, columns=ann.classes)


# ---------------------------------------------------------- task metrics
def uncertainty(
    data: AnswersLike,
    skills: pd.Series | None = None,
    *,
    by: str = "task",
    aggregate: bool = False,
) -> pd.Series | float:
    """Uncertainty per task (or per annotator with ``by="worker"``), or its mean.

    With a fitted model and no ``skills``: entropy (nats) of the model's posterior (the
    crowd posterior on gold tasks, see :func:`crowd_posterior`). With labels (a long
    DataFrame or :class:`~crowdbayes.data.Annotations`), or a model and ``skills``:
    crowd-kit's definition (entropy of the skill-weighted label distribution; all skills
    1 when ``skills`` is None).
    """
    if by not in ("task", "worker"):
        raise ValueError(f"by must be 'task' or 'worker', got {by!r}")
    ann = _annotations(data)
    if isinstance(data, Aggregator) and skills is None and by == "task":
        values = entropy(crowd_posterior(data).to_numpy())
    else:
        if isinstance(data, Aggregator) and skills is None:
            skills = model_skills(data)
        skill = np.ones(ann.n_workers) if skills is None else _skill_array(ann, skills)
        if by == "task":
            sums = _soft_label_sums(ann, skill, ann.task, ann.n_tasks)
        else:
            sums = _soft_label_sums(ann, skill, ann.worker, ann.n_workers)
        values = entropy(sums / sums.sum(axis=1, keepdims=True))
    index = ann.task_ids if by == "task" else ann.worker_ids
    out = pd.Series(np.abs(values), index=index, name="uncertainty")
    return float(out.mean()) if aggregate else out


def consistency(
    data: AnswersLike,
    skills: pd.Series | None = None,
    *,
    aggregate: bool = False,
) -> pd.Series | float:
    """Consistency per task (probability of the chosen label), or its mean.

    With a fitted model and no ``skills``: the posterior probability of the model's label
    (on gold tasks, the crowd posterior's probability of the gold label). With labels, or
    a model and ``skills``: crowd-kit's definition (one-coin posterior of the majority-vote
    label, ties to the first class; ``skills`` default to each annotator's agreement with
    majority vote, as crowd-kit's ``MajorityVote().skills_``).
    """
    ann = _annotations(data)
    rows = np.arange(ann.n_tasks)
    if isinstance(data, Aggregator) and skills is None:
        values = crowd_posterior(data).to_numpy()[rows, data.label_codes_]
    else:
        codes = _mv_codes(ann)
        if isinstance(data, Aggregator):
            skill = _skill_array(ann, skills)
        elif skills is None:
            skill = _agreement_skills(ann, codes)
        else:
            skill = _skill_array(ann, skills)
        values = _one_coin_posterior(ann, skill)[rows, codes]
    out = pd.Series(values, index=ann.task_ids, name="consistency")
    return float(out.mean()) if aggregate else out


def task_metrics(model: Aggregator) -> pd.DataFrame:
    """Per task: the model's label, ``uncertainty`` and ``consistency`` (see the module
    notes), the crowd's own label (``crowd_label``, differs from ``label`` on a gold task
    the crowd gets wrong), the number of labels, and the gold label where known.

    >>> import crowdbayes as cb
    >>> from crowdbayes.models.gold_majority_vote import GoldMajorityVote
    >>> labels, truth = cb.datasets.load("wsd")
    >>> gmv = GoldMajorityVote().fit(labels, gold=truth.iloc[:20])
    >>> tm = task_metrics(gmv)
    >>> list(tm.columns)
    ['label', 'crowd_label', 'uncertainty', 'consistency', 'n_labels', 'gold', 'gold_label']
    >>> int(tm["gold"].sum()), len(tm)
    (20, 177)
    """
    check_is_fitted(model)
    ann = model.annotations_
    crowd = crowd_posterior(model).to_numpy()
    rows = np.arange(ann.n_tasks)
    known = ann.gold >= 0
    gold_label = pd.Series(ann.decode_labels(np.maximum(ann.gold, 0)), index=ann.task_ids)
    return pd.DataFrame(
        {
            "label": ann.decode_labels(model.label_codes_),
            "crowd_label": ann.decode_labels(np.argmax(crowd, axis=1)),
            "uncertainty": np.abs(entropy(crowd)),
            "consistency": crowd[rows, model.label_codes_],
            "n_labels": ann.labels_per_task(),
            "gold": known,
            "gold_label": gold_label.astype(object).where(known, None),
        },
        index=ann.task_ids,
    )


def quality_summary(model: Aggregator, *, confidence: float = 0.95) -> pd.DataFrame:
    """Mean uncertainty and consistency for gold and ordinary tasks, with the crowd's accuracy
    on gold (the crowd label against the gold label, Wilson interval).

    >>> import crowdbayes as cb
    >>> from crowdbayes.models.gold_majority_vote import GoldMajorityVote
    >>> labels, truth = cb.datasets.load("wsd")
    >>> gmv = GoldMajorityVote().fit(labels, gold=truth.iloc[:20])
    >>> print(quality_summary(gmv).round(3).to_string())
              n_tasks  uncertainty  consistency  accuracy  accuracy_lower  accuracy_upper
    gold           20        0.044        0.987       1.0         0.839            1.0
    ordinary      157        0.037        0.988       NaN           NaN            NaN
    """
    tm = task_metrics(model)
    acc = gold_accuracy(model, confidence=confidence) if tm["gold"].any() else None
    rows = {}
    for name, mask in (("gold", tm["gold"].to_numpy()), ("ordinary", ~tm["gold"].to_numpy())):
        part = tm[mask]
        has = len(part) > 0
        rows[name] = {
            "n_tasks": float(len(part)),
            "uncertainty": float(part["uncertainty"].mean()) if has else np.nan,
            "consistency": float(part["consistency"].mean()) if has else np.nan,
            "accuracy": acc["accuracy"] if (acc is not None and name == "gold") else np.nan,
            "accuracy_lower": acc["lower"] if (acc is not None and name == "gold") else np.nan,
            "accuracy_upper": acc["upper"] if (acc is not None and name == "gold") else np.nan,
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out["n_tasks"] = out["n_tasks"].astype(int)
    return out


# -------------------------------------------------------------- agreement
def _multi_label_votes(data: AnswersLike, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Vote counts ``[n, K]`` and label counts ``[n]`` of the tasks with two labels or more
    (an error naming ``what`` where there is none)."""
    votes = _annotations(data).vote_counts().astype(float)
    m = votes.sum(axis=1)
    keep = m >= 2
    if not keep.any():
        raise AnnotationsError(f"{what} needs at least one task with two labels")
    return votes[keep], m[keep]


def krippendorff_alpha(data: AnswersLike) -> float:
    """Krippendorff's alpha for nominal labels (tasks with one label are left out).

    Matches ``crowdkit.metrics.data.alpha_krippendorff`` (NLTK's ``AnnotationTask``).

    >>> import pandas as pd
    >>> df = pd.DataFrame({"task": list("XXYYZZ"), "worker": list("ABABAB"),
    ...                    "label": ["Yes", "Yes", "No", "No", "Yes", "No"]})
    >>> round(krippendorff_alpha(df), 6)
    0.444444
    """
    v, m = _multi_label_votes(data, "Krippendorff's alpha")
    n = m.sum()
    n_c = v.sum(axis=0)
    observed = ((m**2 - (v**2).sum(axis=1)) / (m - 1)).sum()
    expected = n**2 - (n_c**2).sum()
    if expected <= 0:  # a single value everywhere: perfect agreement by convention
        return 1.0
    return float(1.0 - (n - 1) * observed / expected)


def fleiss_kappa(data: AnswersLike) -> float:
    """Fleiss' kappa, with tasks of unequal label counts allowed (tasks with one label left
    out): per-task agreement :math:`P_i = (\\sum_k n_{ik}^2 - n_i) / (n_i (n_i - 1))`.

    The example of Fleiss (1971) as given on Wikipedia (10 tasks, 14 raters, 5 classes):

    >>> import numpy as np, pandas as pd
    >>> counts = np.array([[0,0,0,0,14],[0,2,6,4,2],[0,0,3,5,6],[0,3,9,2,0],[2,2,8,1,1],
    ...                    [7,7,0,0,0],[3,2,6,3,0],[2,5,3,2,2],[6,5,2,1,0],[0,2,2,3,7]])
    >>> task, label = np.nonzero(counts)
    >>> reps = counts[task, label]
    >>> df = pd.DataFrame({"task": np.repeat(task, reps), "label": np.repeat(label, reps)})
    >>> df["worker"] = df.groupby("task").cumcount()
    >>> round(fleiss_kappa(df), 3)
    0.21
    """
    v, m = _multi_label_votes(data, "Fleiss' kappa")
    p_i = ((v**2).sum(axis=1) - m) / (m * (m - 1))
    p_bar = p_i.mean()
    p_j = v.sum(axis=0) / m.sum()
    p_e = float((p_j**2).sum())
    if p_e >= 1.0:
        return 1.0
    return float((p_bar - p_e) / (1.0 - p_e))


# --------------------------------------------------------------- accuracy
def gold_accuracy(
    model_or_labels: Aggregator | pd.Series,
    gold: GoldLike = None,
    *,
    confidence: float = 0.95,
) -> pd.Series:
    """Accuracy against gold, with a Wilson interval: ``accuracy, low, high, n_correct, n``.

    With a fitted model and no ``gold``, the crowd labels (gold left out, see
    :func:`crowd_posterior`) are compared with the gold the model was fitted with; with
    ``gold`` (say, held out from the fit), the model's labels are. ``model_or_labels`` may
    also be a Series task -> label. A gold task missing from the labels is an error.

    >>> import pandas as pd
    >>> gold_accuracy(pd.Series({"a": 1, "b": 0, "c": 1}), {"a": 1, "b": 1}).round(3).tolist()
    [0.5, 0.095, 0.905, 1.0, 2.0]
    """
    if isinstance(model_or_labels, Aggregator):
        check_is_fitted(model_or_labels)
        if gold is None:
            ann = model_or_labels.annotations_
            known = ann.gold >= 0
            if not known.any():
                raise AnnotationsError("the model was fitted without gold: pass gold=")
            crowd = np.argmax(crowd_posterior(model_or_labels).to_numpy(), axis=1)
            correct = crowd[known] == ann.gold[known]
            return _accuracy_row(int(correct.sum()), int(known.sum()), confidence)
        labels = model_or_labels.predict()
    else:
        labels = pd.Series(model_or_labels)
        if gold is None:
            raise AnnotationsError("pass gold= (task id -> label) to compare labels with")
    g = gold if isinstance(gold, pd.Series) else pd.Series(gold)
    g = g[g.notna()]
    if len(g) == 0:
        raise AnnotationsError("gold is empty: no task to measure accuracy on")
    pos = labels.index.get_indexer(g.index)
    if (pos < 0).any():
        missing = g.index[pos < 0]
        raise AnnotationsError(
            f"gold task {missing[0]!r} (and {len(missing) - 1} more) has no aggregated label"
        )
    given = labels.to_numpy()[pos]
    correct = np.asarray(
        pd.Series(given).astype(str).to_numpy() == g.astype(str).to_numpy(), dtype=bool
    )
    return _accuracy_row(int(correct.sum()), len(g), confidence)


def _accuracy_row(k: int, n: int, confidence: float) -> pd.Series:
    low, high = wilson_interval(k, n, confidence)
    return pd.Series(
        {"accuracy": k / n, "lower": float(low), "upper": float(high), "n_correct": k, "n": n},
        name="gold_accuracy",
    )


def annotator_accuracy(
    data: AnswersLike, gold: GoldLike = None, *, confidence: float = 0.95
) -> pd.DataFrame:
    """Per annotator: accuracy on gold tasks with a Wilson interval (``accuracy``, ``lower``,
    ``upper``), ``n_gold`` (distinct gold labels given) and ``n_labels``. Annotators with no
    gold task have NaN accuracy and interval (kept, never dropped).

    >>> import pandas as pd
    >>> df = pd.DataFrame({"task": [1, 1, 2, 2], "worker": ["a", "b", "a", "b"],
    ...                    "label": ["x", "y", "y", "y"]})
    >>> annotator_accuracy(df, {1: "x", 2: "y"})[["accuracy", "n_gold"]]
            accuracy  n_gold
    worker
    a            1.0       2
    b            0.5       2
    """
    from .models.gold_majority_vote import gold_skills

    ann = _annotations(data)
    if gold is not None:
        ann = ann.with_gold(gold)
    if not ann.has_gold:
        raise AnnotationsError("annotator accuracy needs gold labels: pass gold=")
    skill, n_gold = gold_skills(ann)
    hits = np.where(n_gold > 0, skill, 0.0) * n_gold
    low, high = wilson_interval(hits, n_gold, confidence)
    return pd.DataFrame(
        {
            "accuracy": skill,
            "lower": low,
            "upper": high,
            "n_gold": n_gold,
            "n_labels": ann.labels_per_worker(),
        },
        index=ann.worker_ids,
    )


# ------------------------------------------------------- probabilities against gold
#: The smallest probability :func:`log_loss` takes the log of: a gold label given
#: probability 0 costs ``-log(1e-15)`` = 34.54 nats, not infinity, so one task cannot
#: outweigh all the others. scikit-learn's ``log_loss`` clipped at this ``eps`` until 1.5;
#: every figure of ``benchmarks/`` uses it.
PROB_CLIP = 1e-15

ProbaLike: TypeAlias = Aggregator | pd.DataFrame | np.ndarray


def _proba_and_gold(proba: ProbaLike, gold: Any) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``[n, K]`` of probabilities, normalised (a row of zeros stays zeros), one per
    gold task, and each gold label's column (-1 where the label is none of the columns).

    ``proba`` is a fitted model (its ``predict_proba()``), a DataFrame (tasks x classes,
    columns the class labels; gold matched by task id and label, or by the label's text)
    or an array (rows in ``gold``'s order; ``gold`` the column of each row's label, -1
    where it has none)."""
    if isinstance(proba, Aggregator):
        proba = proba.predict_proba()
    if isinstance(proba, pd.DataFrame):
        g = gold if isinstance(gold, pd.Series) else pd.Series(gold, dtype=object)
        g = g[g.notna()]
        pos = proba.index.get_indexer(g.index)
        if (pos < 0).any():
            missing = g.index[pos < 0]
            raise AnnotationsError(
                f"gold task {missing[0]!r} (and {len(missing) - 1} more) has no probabilities"
            )
        values = proba.to_numpy(dtype=np.float64)[pos]
        cols = proba.columns.get_indexer(pd.Index(g.to_numpy(dtype=object)))
        if (cols < 0).any():  # labels as text on one side (a file) and numbers on the other
            text = pd.Index([str(c) for c in proba.columns])
            if not text.has_duplicates:
                by_text = text.get_indexer(pd.Index([str(v) for v in g.to_numpy()]))
                cols = np.where(cols < 0, by_text, cols)
    else:
        values = np.asarray(proba, dtype=np.float64)
        cols = np.asarray(gold, dtype=np.int64).reshape(-1)
        if values.ndim != 2 or values.shape[0] != cols.size:
            raise AnnotationsError(
                f"proba must be [n, K] with one gold column per row, got shape "
                f"{values.shape} and {cols.size} gold labels"
            )
        if (cols >= values.shape[1]).any():
            raise AnnotationsError(f"a gold column is >= the {values.shape[1]} columns of proba")
    if values.shape[0] == 0:
        raise AnnotationsError("gold is empty: no task to score")
    if not np.isfinite(values).all() or (values < 0).any():
        raise AnnotationsError("proba has a negative, NaN or infinite probability")
    total = values.sum(axis=1, keepdims=True)
    return values / np.where(total > 0, total, 1.0), np.where(cols >= 0, cols, -1)


def log_loss(proba: ProbaLike, gold: Any) -> float:
    """Mean negative log probability (nats) of the gold label over the gold tasks; each
    probability clipped at :data:`PROB_CLIP` first (a label none of the columns counts
    as probability 0). Rows are normalised to sum to 1.

    ``proba``: a fitted model, a DataFrame (tasks x classes) with ``gold`` a Series or
    dict task -> label (a gold task without a row is an error), or an array ``[n, K]``
    with ``gold`` the column of each row's label.

    >>> import numpy as np
    >>> p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [1.0, 0.0]])
    >>> round(log_loss(p, [0, 1, 1, 0]), 4)  # (-log .9 - log .8 - log .4 - log 1) / 4
    0.3112
    >>> round(log_loss(p, [0, 1, 1, 1]), 4)  # the last gold label had probability 0
    8.9459
    """
    values, cols = _proba_and_gold(proba, gold)
    rows = np.arange(values.shape[0])
    p_gold = np.where(cols >= 0, values[rows, np.maximum(cols, 0)], 0.0)
    return float(-np.log(np.clip(p_gold, PROB_CLIP, 1.0)).mean())


def expected_calibration_error(proba: ProbaLike, gold: Any, n_bins: int = 10) -> float:
    """Top-class expected calibration error over the gold tasks: the tasks binned by the
    probability of their most probable class (``n_bins`` equal bins of ``[0, 1]``, a 1
    in the last), the gap between each bin's accuracy and its mean probability, weighted
    by the bin's share of the tasks. Inputs as :func:`log_loss`; ties go to the first
    column.

    >>> import numpy as np
    >>> p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.65, 0.35]])
    >>> # bins 0.9: right (gap 0.1), 0.8: right (0.2), 0.6: one of two right (|0.5 - 0.625|)
    >>> round(expected_calibration_error(p, [0, 1, 1, 0]), 4)
    0.1375
    """
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    n_bins = int(n_bins)
    values, cols = _proba_and_gold(proba, gold)
    conf = values.max(axis=1)
    right = (values.argmax(axis=1) == cols).astype(np.float64)
    bins = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    gap = np.bincount(bins, right, n_bins) - np.bincount(bins, conf, n_bins)
    return float(np.abs(gap).sum() / conf.size)
