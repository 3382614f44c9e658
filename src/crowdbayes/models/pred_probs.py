"""Input alignment of the CROWDLAB models: annotations (long or wide) encoded once and
the classifier's ``pred_probs`` matched to their tasks and classes
(:func:`align_pred_probs`, what ``as_annotations(..., pred_probs=...)`` and
``Annotations.with_pred_probs`` run), with a fast path for wide tables of integer
labels."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from ..base import AdversarialWarning
from ..data import (
    Annotations,
    AnnotationsError,
    GoldLike,
    _normalise,
    _plain,
    _show,
    _show_list,
    _sort_classes,
    as_annotations,
    read_as_wide,
)

__all__ = ["PredProbsLike", "align_pred_probs"]

PredProbsLike: TypeAlias = pd.DataFrame | np.ndarray


def _is_wide(data: Any, task: str = "task", worker: str = "worker", label: str = "label") -> bool:
    """Whether ``data`` is read as a wide table (an error when that is ambiguous; a
    platform export is not one, as :func:`~crowdbayes.data.as_annotations` reads it)."""
    from ..io import is_platform_export  # io imports the data module

    return (
        isinstance(data, pd.DataFrame)
        and not is_platform_export(data)
        and read_as_wide(data, task=task, worker=worker, label=label)
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
    pred_probs: PredProbsLike,
    *,
    gold: GoldLike = None,
    classes: Sequence[Any] | None = None,
    **columns: str,
) -> tuple[Annotations, np.ndarray]:
    """Encode ``data`` (with ``gold`` and ``classes`` as :func:`as_annotations` takes them)
    and align ``pred_probs`` to its tasks and classes: the annotations, carrying the
    aligned probabilities (``pred_probs``), and those probabilities ``[n_tasks, K]``.

    A DataFrame of probabilities is matched by task id (index) and class (columns, by
    label, or by the label's text when the columns are text, as read from a file; classes
    nobody chose may be among them), whatever the order of its columns. A NumPy array is
    taken row by row only when the order is unambiguous: a wide table (rows are tasks) or
    an :class:`Annotations` (rows follow ``task_ids``); its columns are the sorted classes,
    or the codes ``0..K-1`` when the labels are those integers.
    """
    wide = _is_wide(data, **columns)
    fast = _numeric_wide(data) if wide and classes is None else None
    if fast is not None:  # a wide table of numbers has no gold of its own
        ann = fast if gold is None else fast.with_gold(gold)
    else:
        ann = as_annotations(data, gold=gold, classes=classes, **columns)
    if ann.pred_probs is not None:  # aligned afresh
        ann = replace(ann, pred_probs=None)
    if isinstance(pred_probs, pd.DataFrame):
        if pred_probs.index.has_duplicates:
            dup = pred_probs.index[pred_probs.index.duplicated()][0]
            raise AnnotationsError(f"pred_probs has task {_show(dup)} on more than one row")
        names, order = _class_columns(ann, pred_probs.columns)
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
        return _carrying(_with_classes(ann, names), pp)
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
        return _carrying(ann, pp)
    ints = pd.api.types.is_integer_dtype(ann.classes.dtype)
    if ints and K > ann.n_classes and ann.classes.min() >= 0 and ann.classes.max() < K:
        return _carrying(_with_classes(ann, list(range(K))), pp)
    raise AnnotationsError(
        f"pred_probs has {K} columns but the labels have {ann.n_classes} classes "
        f"{list(ann.classes)}; pass a DataFrame with one column per class"
    )


def _carrying(ann: Annotations, pp: np.ndarray) -> tuple[Annotations, np.ndarray]:
    ann = replace(ann, pred_probs=pp)
    return ann, ann.pred_probs  # type: ignore[return-value]  # set just above


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
        wide_columns=df.columns,
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
            stacklevel=4,  # the user's fit: its _fit, Aggregator.fit
        )
