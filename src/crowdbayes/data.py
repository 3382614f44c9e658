"""The encoded annotation data that every model and engine takes.

User data (a long table, a wide items x annotators table, or a file) is
validated and encoded once into :class:`Annotations`: integer ``task``,
``worker`` and ``label`` arrays, one entry per label given, plus the
vocabularies that map the integers back to the user's own ids and label
values, and gold labels where known. Nothing downstream touches pandas.

Example
-------
>>> import pandas as pd
>>> from crowdbayes.data import Annotations
>>> df = pd.DataFrame({"task": ["a", "a", "b", "b", "b"],
...                    "worker": ["w1", "w2", "w1", "w2", "w3"],
...                    "label": ["cat", "dog", "dog", "dog", "cat"]})
>>> ann = Annotations.from_long(df, gold={"a": "cat"})
>>> ann.n_tasks, ann.n_workers, ann.n_classes, ann.n_labels
(2, 3, 2, 5)
>>> list(ann.classes)
['cat', 'dog']
>>> ann.label.tolist()
[0, 1, 1, 1, 0]
>>> ann.gold.tolist()   # -1 where no gold label is known
[0, -1]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias, TypeVar

import numpy as np
import pandas as pd

__all__ = ["Annotations", "AnnotationsError", "as_annotations", "read_as_wide", "read_table"]

#: Arrays that models hand to JAX start on this many bytes: ``jax.device_put`` on the
#: CPU then aliases a numpy array instead of copying it (XLA's CPU buffers need 64).
ALIGN = 64
#: Long arrays are counted (``np.bincount``) this many items at a time at least: it
#: converts its input to int64 first, a copy twice the size of int32 codes.
_COUNT_CHUNK = 1 << 20


def aligned_empty(shape: int | tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised C-ordered array whose data starts on an :data:`ALIGN`-byte
    boundary, so that ``jax.device_put`` on the CPU aliases it (no copy).

    >>> a = aligned_empty(5, np.int32)
    >>> a.shape, a.dtype, a.ctypes.data % ALIGN
    ((5,), dtype('int32'), 0)
    """
    dt = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
    n_bytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    raw = np.empty(n_bytes + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start : start + n_bytes].view(dt).reshape(shape)


def is_aligned(a: np.ndarray) -> bool:
    """Whether ``a`` is C-contiguous and starts on an :data:`ALIGN`-byte boundary."""
    return bool(a.flags.c_contiguous) and a.ctypes.data % ALIGN == 0


def aligned(a: Any, dtype: Any = None) -> np.ndarray:
    """``a`` as a C-contiguous, :data:`ALIGN`-aligned array of ``dtype`` (default its
    own): ``a`` itself where it is one already, else one copy.

    >>> x = aligned(np.arange(3, dtype=np.int64), np.int32)
    >>> x.tolist(), x.dtype, aligned(x) is x
    ([0, 1, 2], dtype('int32'), True)
    """
    a = np.asarray(a)
    dt = a.dtype if dtype is None else np.dtype(dtype)
    if a.dtype == dt and is_aligned(a):
        return a
    out = aligned_empty(a.shape, dt)
    out[...] = a
    return out


def release_memory() -> None:
    """Hand the C heap's free memory back to the system (glibc's ``malloc_trim``; a no-op
    elsewhere). Slices of a few MB that NumPy frees stay in the heap, resident, so a
    layout built a slice at a time would leave its temporaries counted in the process's
    resident size for the rest of the fit; the layout builders call this once done."""
    global _malloc_trim
    if _malloc_trim is None:
        _malloc_trim = _find_malloc_trim()
    if _malloc_trim is not False:
        _malloc_trim(0)


def _find_malloc_trim() -> Any:
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return False


_malloc_trim: Any = None


def bincount(x: np.ndarray, minlength: int = 0) -> np.ndarray:
    """``np.bincount(x, minlength=minlength)`` for non-negative integers, counted in
    slices so that its int64 copy of the input is of one slice, not of all of ``x``.

    >>> bincount(np.array([0, 2, 2], np.int32), minlength=4).tolist()
    [1, 0, 2, 0]
    """
    x = np.asarray(x)
    n = x.shape[0]
    step = max(_COUNT_CHUNK, int(minlength))  # each slice's counts cost minlength anyway
    if n <= step or x.dtype == np.intp:
        return np.bincount(x, minlength=minlength)
    out = np.bincount(x[:step], minlength=minlength)
    for start in range(step, n, step):
        part = np.bincount(x[start : start + step], minlength=out.size)
        if part.size > out.size:
            part[: out.size] += out
            out = part
        else:
            out += part
    return out


class AnnotationsError(ValueError):
    """Raised when input annotations cannot be used; the message names the culprit."""


def pred_probs_needed(owner: str) -> str:
    """What a CROWDLAB model ``owner`` says when it is given no ``pred_probs``."""
    return (
        f"{owner}.fit needs pred_probs: the classifier's out-of-sample probabilities, as a "
        "keyword argument (fit(annotations, pred_probs=...)) or carried by the annotations "
        "(as_annotations(..., pred_probs=...))"
    )


GoldLike: TypeAlias = "pd.Series | Mapping[Hashable, Any] | None"


@dataclass(frozen=True, eq=False)
class Annotations:
    """Encoded annotations: long integer arrays plus vocabularies.

    Attributes
    ----------
    task, worker, label : np.ndarray of int32, shape (n_labels,)
        Codes into ``task_ids``, ``worker_ids`` and ``classes``. Repeated labels by
        one worker on one task are kept as separate entries (separate votes).
    task_ids, worker_ids : pd.Index
        The user's task and worker ids, in order of first appearance.
    classes : pd.Index
        The label values, sorted (numerically when all are numbers).
    gold : np.ndarray of int32, shape (n_tasks,)
        Gold class code per task, ``-1`` where unknown.
    task_inputs : pd.DataFrame or None
        Extra per-task columns (for example a platform export's ``INPUT:*``), indexed by task id.
    dropped : Mapping[str, int]
        Input rows left out on purpose, counted by reason (a platform export's REJECTED,
        SKIPPED and EXPIRED assignments, see :func:`crowdbayes.io.read_platform_export`);
        empty when every row is a label.
    pred_probs : np.ndarray of float64, shape (n_tasks, n_classes), or None
        A classifier's out-of-sample probabilities of each class per task (what the
        CROWDLAB models fit with), aligned to ``task_ids`` and ``classes`` once by
        :func:`as_annotations` (``pred_probs=``) or :meth:`with_pred_probs`; ``None``
        when none was given. Models that do not use them ignore them.
    wide_columns : pd.Index or None
        A wide table's annotator columns in the table's order (CROWDLAB lists annotators
        so, as cleanlab does); ``None`` for other input.
    """

    task: np.ndarray
    worker: np.ndarray
    label: np.ndarray
    task_ids: pd.Index
    worker_ids: pd.Index
    classes: pd.Index
    gold: np.ndarray
    task_inputs: pd.DataFrame | None = field(default=None, repr=False)
    dropped: Mapping[str, int] = field(default_factory=dict)
    pred_probs: np.ndarray | None = field(default=None, repr=False)
    wide_columns: pd.Index | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # The code arrays are kept ALIGN-aligned (one copy here where they are not):
        # the kernels' device copies of them (em_data) then alias them on the CPU.
        for name in ("task", "worker", "label", "gold"):
            value = getattr(self, name)
            if isinstance(value, np.ndarray) and value.ndim == 1 and not is_aligned(value):
                object.__setattr__(self, name, aligned(value))
        pp = self.pred_probs
        if pp is not None:  # a copy that cut the tasks or classes must cut these too
            pp = np.asarray(pp, dtype=np.float64)
            if pp.shape != (self.n_tasks, self.n_classes):
                raise AnnotationsError(
                    f"pred_probs has shape {pp.shape} but the annotations have "
                    f"{self.n_tasks} tasks and {self.n_classes} classes"
                )
            object.__setattr__(self, "pred_probs", pp)

    # ------------------------------------------------------------------ sizes
    @property
    def n_tasks(self) -> int:
        return len(self.task_ids)

    @property
    def n_workers(self) -> int:
        return len(self.worker_ids)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_labels(self) -> int:
        return int(self.task.shape[0])

    @property
    def has_gold(self) -> bool:
        return bool((self.gold >= 0).any())

    def __repr__(self) -> str:
        dropped = f", dropped={dict(self.dropped)}" if self.dropped else ""
        return (
            f"Annotations(n_labels={self.n_labels}, n_tasks={self.n_tasks}, "
            f"n_workers={self.n_workers}, classes={[_plain(c) for c in self.classes]}, "
            f"n_gold={int((self.gold >= 0).sum())}{dropped})"
        )

    # ----------------------------------------------------------- constructors
    @classmethod
    def from_long(
        cls,
        df: pd.DataFrame,
        *,
        task: str = "task",
        worker: str = "worker",
        label: str = "label",
        gold: GoldLike = None,
        classes: Sequence[Any] | None = None,
        task_inputs: pd.DataFrame | None = None,
    ) -> Annotations:
        """Encode a long table with one row per label given.

        Parameters
        ----------
        df : DataFrame with columns ``task``, ``worker``, ``label`` (names configurable).
        gold : Series or mapping task id -> true label, optional.
        classes : the full list of classes, optional. By default the labels seen
            (plus gold labels). Give it when a class may have no label at all.
        task_inputs : DataFrame indexed by task id, optional, kept for reports.
        """
        if not isinstance(df, pd.DataFrame):
            raise AnnotationsError(
                f"annotations must be a pandas DataFrame, got {type(df).__name__}"
            )
        missing = [c for c in (task, worker, label) if c not in df.columns]
        if missing:
            raise AnnotationsError(
                f"annotations have no column {_show(missing[0])} (columns: "
                f"{_show_list(df.columns)}); name the columns with task=, worker=, label="
            )
        for col in dict.fromkeys((task, worker, label)):
            n = int((df.columns == col).sum())
            if n > 1:
                raise AnnotationsError(
                    f"column {_show(col)} appears {n} times in the annotations; rename or drop "
                    "the extra copies"
                )
        if len(df) == 0:
            raise AnnotationsError("annotations table is empty: there is nothing to aggregate")
        for col in (task, worker, label):
            bad = df[col].isna().to_numpy()
            if bad.any():
                row = df.index[int(np.argmax(bad))]
                raise AnnotationsError(
                    f"column {_show(col)} has {int(bad.sum())} missing value(s), first at row "
                    f"{_show(row)}; drop those rows or fill them in"
                )
        # each column's int64 codes are cast straight into an aligned int32 array and
        # dropped, so that at most one int64 [n] array is alive at a time
        task_codes, task_ids = _factorize(df[task], task, df.index)
        task_codes = aligned(task_codes, np.int32)
        worker_codes, worker_ids = _factorize(df[worker], worker, df.index)
        worker_codes = aligned(worker_codes, np.int32)
        try:
            class_index = _class_index(df[label], classes)
            label_codes = aligned(class_index.get_indexer(_normalise(df[label])), np.int32)
        except TypeError:
            _factorize(df[label], label, df.index)  # names an unhashable label
            raise
        infinite = np.flatnonzero([_is_inf(c) for c in class_index])  # one check per class
        if infinite.size:
            at = np.isin(label_codes, infinite)
            if not at.any():
                raise AnnotationsError(f"classes has an infinite value: {_show_list(class_index)}")
            i = int(np.argmax(at))
            raise AnnotationsError(
                f"column {_show(label)} has an infinite value ({_show(df[label].iloc[i])}) at row "
                f"{_show(df.index[i])}; labels must be classes, drop or fix that row"
            )
        if (label_codes < 0).any():
            i = int(np.argmax(label_codes < 0))
            raise AnnotationsError(
                f"column {_show(label)} has value {_show(df[label].iloc[i])} (row "
                f"{_show(df.index[i])}) that is not among the given classes "
                f"{_show_list(class_index)}"
            )
        task_ids = pd.Index(task_ids, name=task)
        inferred = classes is None and not isinstance(df[label].dtype, pd.CategoricalDtype)
        gold_values = normalise_gold(
            gold, task_ids, class_index, column=label if inferred else None
        )
        gold_codes = _gold_codes(gold_values, task_ids, class_index)
        if class_index.size < 2:
            raise AnnotationsError(
                f"column {_show(label)} has only one class ({_show_list(class_index)}); "
                "aggregation needs at least two. Pass classes=[...] to name the others"
            )
        return cls(
            task=task_codes,
            worker=worker_codes,
            label=label_codes,
            task_ids=task_ids,
            worker_ids=pd.Index(worker_ids, name=worker),
            classes=class_index,
            gold=gold_codes,
            task_inputs=task_inputs,
        )

    @classmethod
    def from_wide(
        cls,
        df: pd.DataFrame,
        *,
        gold: GoldLike = None,
        classes: Sequence[Any] | None = None,
    ) -> Annotations:
        """Encode a wide table: one row per task (the index), one column per annotator,
        missing cells where an annotator gave no label (as cleanlab uses).

        Every row is kept; a row with no label at all is an error that names it.
        Task codes follow the row order, so row ``i`` of the table is task ``i``.

        >>> import pandas as pd
        >>> wide = pd.DataFrame({"A1": [0, 1, None], "A2": [0, None, 2]})
        >>> Annotations.from_wide(wide).n_labels
        4
        """
        if not isinstance(df, pd.DataFrame):
            raise AnnotationsError(f"wide annotations must be a DataFrame, got {type(df).__name__}")
        if df.shape[0] == 0 or df.shape[1] == 0:
            raise AnnotationsError("wide annotations table is empty: there is nothing to aggregate")
        _check_wide_axis(df.index, "row", "task id", "task", "on more than one row")
        _check_wide_axis(df.columns, "column", "annotator name", "annotator", "columns")
        present = df.notna().to_numpy()
        empty_rows = ~present.any(axis=1)
        if empty_rows.any():
            row = df.index[int(np.argmax(empty_rows))]
            raise AnnotationsError(
                f"wide annotations: task {_show(row)} (and {int(empty_rows.sum()) - 1} more) has "
                "no label from any annotator; drop such rows or add labels"
            )
        rows, cols = np.nonzero(present)
        values = _wide_values(df, rows, cols)
        long = pd.DataFrame(
            {
                "task": df.index.to_numpy()[rows],
                "worker": df.columns.to_numpy()[cols],
                "label": values.to_numpy(),
            }
        )
        ann = cls.from_long(long, gold=gold, classes=classes)
        # keep the row order of the wide table for the task vocabulary
        order = pd.Index(ann.task_ids).get_indexer(df.index)
        remap = np.empty(ann.n_tasks, dtype=np.int32)
        remap[order] = np.arange(ann.n_tasks, dtype=np.int32)
        return replace(
            ann,
            task=remap[ann.task],
            task_ids=pd.Index(df.index, name=df.index.name or "task"),
            gold=ann.gold[order],
            wide_columns=df.columns,
        )

    # ---------------------------------------------------------- derived data
    def with_gold(self, gold: GoldLike) -> Annotations:
        """Return a copy with gold labels replaced by ``gold`` (task id -> label)."""
        values = normalise_gold(gold, self.task_ids, self.classes)
        return replace(self, gold=_gold_codes(values, self.task_ids, self.classes))

    def with_pred_probs(self, pred_probs: Any) -> Annotations:
        """Return a copy carrying a classifier's ``pred_probs`` aligned to these tasks and
        classes (``None``: without any), as :func:`as_annotations` aligns them: a DataFrame
        by task id (index) and class (columns, in any order; a class only the classifier
        has becomes a class), an array row by row in the order of ``task_ids``.

        >>> import numpy as np, pandas as pd
        >>> ann = Annotations.from_wide(pd.DataFrame({"A": [0, 1], "B": [0, 0]}))
        >>> probs = pd.DataFrame({1: [0.2, 0.9], 0: [0.8, 0.1]})  # columns by class
        >>> ann.with_pred_probs(probs).pred_probs.tolist()
        [[0.8, 0.2], [0.1, 0.9]]
        """
        if pred_probs is None:
            return replace(self, pred_probs=None)
        return align_pred_probs(self, pred_probs)[0]

    def require_pred_probs(self, owner: str) -> np.ndarray:
        """The ``pred_probs`` these annotations carry; a ``TypeError`` that says how to
        give them, for the model ``owner``, when they carry none."""
        if self.pred_probs is None:
            raise TypeError(pred_probs_needed(owner))
        return self.pred_probs

    def encode_new(
        self,
        df: pd.DataFrame | Annotations,
        *,
        task: str = "task",
        worker: str = "worker",
        label: str = "label",
    ) -> Annotations:
        """Encode new annotations with this object's class vocabulary.

        Workers keep their codes where known; workers not seen here get codes
        ``n_workers, n_workers + 1, ...`` in order of appearance (models treat them
        as new annotators). Used by ``predict(new_annotations)``.
        """
        new = as_annotations(df, classes=list(self.classes), task=task, worker=worker, label=label)
        if list(new.classes) != list(self.classes):
            extra = [c for c in new.classes if c not in set(self.classes)]
            raise AnnotationsError(
                f"new annotations have label(s) {_show_list(extra)} not among the fitted classes "
                f"{_show_list(self.classes)}"
            )
        codes = self.worker_ids.get_indexer(new.worker_ids)
        unseen = codes < 0
        codes[unseen] = self.n_workers + np.arange(int(unseen.sum()))
        worker_ids = pd.Index(
            list(self.worker_ids) + list(new.worker_ids[unseen]), name=self.worker_ids.name
        )
        return replace(new, worker=codes[new.worker].astype(np.int32), worker_ids=worker_ids)

    def decode_labels(self, codes: np.ndarray) -> np.ndarray:
        """Map class codes back to the user's label values."""
        return self.classes.to_numpy()[np.asarray(codes)]

    def labels_per_task(self) -> np.ndarray:
        """Number of labels each task received, shape (n_tasks,)."""
        return bincount(self.task, minlength=self.n_tasks)

    def labels_per_worker(self) -> np.ndarray:
        """Number of labels each worker gave, shape (n_workers,)."""
        return bincount(self.worker, minlength=self.n_workers)

    def vote_counts(self) -> np.ndarray:
        """Votes per task and class, shape (n_tasks, n_classes) (dense over classes only)."""
        T, K = self.n_tasks, self.n_classes
        out = np.zeros(T * K, np.int64)
        step = max(_COUNT_CHUNK, T * K)  # a slice's int64 keys, not all labels' at once
        for start in range(0, self.n_labels, step):
            flat = self.task[start : start + step].astype(np.int64)
            flat *= K
            flat += self.label[start : start + step]
            out += np.bincount(flat, minlength=T * K)
        return out.reshape(T, K)

    def to_long(self) -> pd.DataFrame:
        """The annotations as a long DataFrame in the user's ids and values."""
        return pd.DataFrame(
            {
                "task": self.task_ids.to_numpy()[self.task],
                "worker": self.worker_ids.to_numpy()[self.worker],
                "label": self.decode_labels(self.label),
            }
        )

    def gold_series(self) -> pd.Series:
        """Gold labels as a Series indexed by task id (only tasks with gold)."""
        known = self.gold >= 0
        return pd.Series(
            self.decode_labels(self.gold[known]), index=self.task_ids[known], name="gold"
        )


# ---------------------------------------------------------------- helpers
def _normalise(values: pd.Series) -> pd.Series:
    """Make label values comparable: categoricals to their values, floats that are
    integers (as pandas makes of integer columns with NaN) to ints."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(values.cat.categories.dtype)
    if pd.api.types.is_float_dtype(values.dtype):
        arr = values.to_numpy(dtype=float)
        finite = np.isfinite(arr)
        if finite.all() and np.all(arr == np.round(arr)):
            return pd.Series(arr.astype(np.int64), index=values.index)
    if pd.api.types.is_extension_array_dtype(values.dtype) and pd.api.types.is_integer_dtype(
        values.dtype
    ):
        return values.astype(np.int64)
    return values


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (``7``, not ``np.int64(7)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _show(value: Any) -> str:
    """A value as messages show it: the repr of the plain Python value."""
    return repr(_plain(value))


def _show_list(values: Any) -> str:
    return repr([_plain(v) for v in values])


def _is_inf(value: Any) -> bool:
    return isinstance(value, float | np.floating) and bool(np.isinf(value))


def _unhashable_at(values: np.ndarray) -> int:
    """Position of the first value that cannot be hashed (only called once one failed)."""
    for i, v in enumerate(values):  # an error path: runs only when factorizing failed
        try:
            hash(v)
        except TypeError:
            return i
    return 0


def _factorize(values: pd.Series, column: Any, index: pd.Index) -> tuple[np.ndarray, pd.Index]:
    try:
        codes, uniques = pd.factorize(values, sort=False)
    except TypeError:
        arr = values.to_numpy(dtype=object)
        i = _unhashable_at(arr)
        raise AnnotationsError(
            f"column {_show(column)} has an unhashable value of type {type(arr[i]).__name__} "
            f"({_show(arr[i])}) at row {_show(index[i])}; ids and labels must be numbers or text"
        ) from None
    return codes, pd.Index(uniques)


def _check_wide_axis(axis: pd.Index, where: str, what: str, single: str, dup: str) -> None:
    """A wide table's index (task ids) or columns (annotators): none missing, unhashable
    or repeated."""
    missing = np.asarray(pd.isna(axis.to_numpy(dtype=object)), dtype=bool)
    if missing.any():
        i = int(np.argmax(missing))
        raise AnnotationsError(
            f"wide annotations: {where} {i + 1} (of {len(axis)}) has no {what} "
            f"({_show(axis[i])}); rows are tasks and columns annotators, each needs an id"
        )
    try:
        duplicated = axis.duplicated()
    except TypeError:
        i = _unhashable_at(axis.to_numpy(dtype=object))
        raise AnnotationsError(
            f"wide annotations: {where} {i + 1} has an unhashable {what} of type "
            f"{type(axis[i]).__name__}; ids must be numbers or text"
        ) from None
    if duplicated.any():
        value = axis[int(np.argmax(duplicated))]
        if where == "row":
            raise AnnotationsError(f"wide annotations have task {_show(value)} {dup}")
        n = int((axis == value).sum())
        raise AnnotationsError(
            f"wide annotations: {single} {_show(value)} has {n} {dup}; give each annotator "
            "one column"
        )


def _wide_values(df: pd.DataFrame, rows: np.ndarray, cols: np.ndarray) -> pd.Series:
    """The labels of a wide table's filled cells, as given: bools stay bools and integers
    stay exact (no detour through float64); inf and unhashable cells are named."""
    cells = np.asarray(df.to_numpy(dtype=object)[rows, cols])
    bad = np.zeros(len(cells), dtype=bool)
    try:
        infinite = [u for u in pd.unique(cells) if _is_inf(u)]  # one check per distinct label
    except TypeError:
        bad[_unhashable_at(cells)] = True
        what = "an unhashable label"
    else:
        bad = np.isin(cells, infinite) if infinite else bad
        what = "an infinite label"
    if bad.any():
        i = int(np.argmax(bad))
        raise AnnotationsError(
            f"wide annotations: {what} ({_show(cells[i])}) for task {_show(df.index[rows[i]])}, "
            f"annotator {_show(df.columns[cols[i]])}; labels must be classes (numbers or text)"
        )
    return pd.Series(cells, dtype=object).infer_objects()


def normalise_gold(
    gold: Any,
    task_ids: pd.Index | None = None,
    classes: pd.Index | None = None,
    *,
    source: str = "gold",
    column: str | None = None,
) -> pd.Series | None:
    """The one gold normaliser, every door's (``fit(gold=...)`` and :func:`as_annotations`,
    a platform export's ``GOLDEN:`` column, a long table's gold column, a gold file).

    ``gold``: a Series or mapping task id -> label, or a table with columns ``task`` and
    ``label`` (else its first two, task then label; or one column indexed by task). A
    missing label (NaN, None, empty text) is no gold; a task given twice with one label
    is one, with two labels an error naming it; floats that are integers are ints. With
    the annotations' ``task_ids`` and ``classes``, each task and label is matched to the
    annotations' own value, else to the one with the same text (a file holds text; the
    annotations may hold numbers), and the result holds those values; a task without
    annotations or a label that is not a class is an error naming it (and, where the
    classes were inferred from ``column``, saying how to add one). Errors name
    ``source`` (a column or file) unless it is ``"gold"``.

    >>> normalise_gold({"t1": "1", "t2": None, "t3": 0.0}, pd.Index(["t1", "t2", "t3"]),
    ...                pd.Index([0, 1])).to_dict()
    {'t1': 1, 't3': 0}
    """
    if gold is None:
        return None
    at = "" if source == "gold" else f"{source}: "
    if isinstance(gold, pd.DataFrame):
        if {"task", "label"} <= set(gold.columns):
            gold = gold.set_index("task")["label"]
        elif gold.shape[1] == 1:
            gold = gold.iloc[:, 0]
        elif gold.shape[1] >= 2:
            gold = gold.set_index(gold.columns[0])[gold.columns[1]]
        else:
            raise AnnotationsError(f"{at}gold as a table needs columns 'task' and 'label'")
    series = pd.Series(gold) if not isinstance(gold, pd.Series) else gold
    series = series[series.notna().to_numpy() & (series.astype(str) != "").to_numpy()]
    if series.index.has_duplicates:
        firsts = ~series.index.duplicated()
        text = series.astype(str)
        clash = text.groupby(level=0, sort=False).nunique() > 1
        if clash.any():
            task = clash.index[np.argmax(clash.to_numpy())]
            values = sorted(set(text.loc[[task]]))
            raise AnnotationsError(
                f"{at}gold gives task {_show(task)} different labels {values}"
                if source == "gold"
                else f"{source} gives task {_show(task)} different gold labels {values}"
            )
        series = series[firsts]
    series = _normalise(series)
    if task_ids is None or classes is None:
        return series
    pos = _by_value_or_text(series.index, task_ids)
    if (pos < 0).any():
        missing = series.index[pos < 0]
        raise AnnotationsError(
            f"{at}gold has task {_show(missing[0])} (and {len(missing) - 1} more) with no "
            "annotations; gold tasks must also appear in the annotations"
        )
    cls = _by_value_or_text(pd.Index(series.to_numpy(), dtype=object), classes)
    if (cls < 0).any():
        i = int(np.argmax(cls < 0))
        value, task = _show(series.iloc[i]), _show(series.index[i])
        if column is not None:
            raise AnnotationsError(
                f"{at}gold label {value} is not among the labels annotators gave in column "
                f"{_show(column)} ({_show_list(classes)}); pass classes=[...] if it is a real "
                "class"
            )
        raise AnnotationsError(
            f"{at}gold label {value} for task {task} is not among the classes {_show_list(classes)}"
        )
    return pd.Series(classes[cls].to_numpy(), index=task_ids[pos], dtype=classes.dtype)


def merge_gold(
    first: pd.Series | None, second: pd.Series | None, names: tuple[str, str]
) -> pd.Series | None:
    """Gold from two sources (each from :func:`normalise_gold`) together: every task of
    either; a task both give must have the same label (by text), else an error names the
    task and both sources."""
    if first is None or second is None:
        return second if first is None else first
    common = first.index.intersection(second.index)
    differ = first.loc[common].astype(str).to_numpy() != second.loc[common].astype(str).to_numpy()
    if differ.any():
        t = common[differ][0]
        raise AnnotationsError(
            f"task {_show(t)} has gold {_show(first.loc[t])} in {names[0]} but "
            f"{_show(second.loc[t])} in {names[1]}"
        )
    return pd.concat([first, second[~second.index.isin(common)]])


def _by_value_or_text(values: pd.Index, index: pd.Index) -> np.ndarray:
    """Positions in ``index`` (unique) of ``values``: by value, else by text where the
    text of one entry of ``index`` is the value's text; -1 where neither."""
    pos = np.asarray(index.get_indexer(values))
    if (pos < 0).any():
        by_text: dict[str, int] = {}
        for i, v in enumerate(index):
            by_text[str(v)] = -1 if str(v) in by_text else i  # ambiguous text: no match
        miss = np.flatnonzero(pos < 0)
        pos[miss] = [by_text.get(str(v), -1) for v in values[miss]]
    return pos


def _gold_codes(gold: pd.Series | None, task_ids: pd.Index, classes: pd.Index) -> np.ndarray:
    """``[T]`` class codes of gold from :func:`normalise_gold` (matched), -1 for none."""
    codes = np.full(len(task_ids), -1, dtype=np.int32)
    if gold is not None and len(gold):
        codes[task_ids.get_indexer(gold.index)] = classes.get_indexer(gold.to_numpy())
    return codes


def _sort_classes(values: np.ndarray) -> list[Any]:
    uniq = list(pd.unique(values))
    try:
        return sorted(uniq)
    except TypeError:  # mixed types: sort by their text
        return sorted(uniq, key=str)


def _class_index(labels: pd.Series, classes: Sequence[Any] | None) -> pd.Index:
    if classes is not None:
        class_list = list(classes)
        if len(set(class_list)) != len(class_list):
            raise AnnotationsError(f"classes has duplicates: {_show_list(class_list)}")
        return pd.Index(class_list, name="class")
    if isinstance(labels.dtype, pd.CategoricalDtype):
        return pd.Index(list(labels.cat.categories), name="class")
    return pd.Index(_sort_classes(_normalise(labels).to_numpy()), name="class")


def read_table(path: str | os.PathLike[str], **read_kwargs: Any) -> pd.DataFrame:
    """Read a CSV, TSV or Parquet file into a DataFrame, ids and labels as text.

    The format follows the file name (``.csv``, ``.tsv``/``.tab``/``.txt``,
    ``.parquet``/``.pq``, each optionally ``.gz``). A missing file or an
    unknown extension raises an error that names the file.
    """
    p = Path(path)
    if not p.exists():
        raise AnnotationsError(f"file {str(p)!r} does not exist")
    if p.is_dir():
        raise AnnotationsError(f"{str(p)!r} is a directory; give the annotations file")
    if p.stat().st_size == 0:
        raise AnnotationsError(f"file {str(p)!r} is empty (0 bytes): there is nothing to read")
    name = p.name.lower().removesuffix(".gz")
    if name.endswith((".parquet", ".pq")):
        try:
            return pd.read_parquet(p, **read_kwargs)
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise AnnotationsError(f"file {str(p)!r} could not be read as Parquet: {err}") from err
    if name.endswith((".tsv", ".tab", ".txt")):
        sep = "\t"
    elif name.endswith(".csv"):
        sep = ","
    else:
        raise AnnotationsError(
            f"file {str(p)!r}: unknown format (use .csv, .tsv or .parquet, optionally .gz)"
        )
    kwargs: dict[str, Any] = {"sep": sep, "dtype": str, "keep_default_na": False, "na_values": [""]}
    kwargs.update(read_kwargs)
    try:
        return pd.read_csv(p, **kwargs)
    except pd.errors.EmptyDataError as err:
        raise AnnotationsError(f"file {str(p)!r} is empty: it has no header row") from err
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError) as err:
        raise AnnotationsError(f"file {str(p)!r} could not be parsed: {err}") from err


_PURE_KINDS = {"string", "integer", "floating", "mixed-integer-float", "decimal", "boolean"}


def read_as_wide(
    df: pd.DataFrame, *, task: str = "task", worker: str = "worker", label: str = "label"
) -> bool:
    """Whether ``fit(df)`` reads the DataFrame as wide (rows tasks, columns annotators).

    A table with the ``task``, ``worker`` and ``label`` columns is long (``False``). One with
    some of them is a long table missing a column (an error naming it). One with none is
    read as wide only when it looks like one: its cells hold one kind of value (all numbers,
    all text or all bools) and at least half of them hold a value that some other column
    holds too (annotators give labels from one set of classes; a long table's task ids,
    annotator ids and labels differ from column to column). Otherwise it is ambiguous, and
    an error names the columns and says how to map them.

    >>> import pandas as pd
    >>> read_as_wide(pd.DataFrame({"A1": ["cat", "dog", None], "A2": ["cat", None, "dog"]}))
    True
    >>> read_as_wide(pd.DataFrame({"item": [1, 1, 2], "rater": ["a", "b", "a"],
    ...                            "y": ["pos", "neg", "neg"]}))
    Traceback (most recent call last):
    ...
    crowdbayes.data.AnnotationsError: annotations have no columns 'task', 'worker', 'label' ...
    """
    cols = set(df.columns)
    if {task, worker, label} <= cols:
        return False
    if any(c in cols for c in (task, worker, label)):
        Annotations.from_long(df, task=task, worker=worker, label=label)  # raises, names it
    problem = _not_wide_because(df)
    if problem is None:
        return True
    raise AnnotationsError(
        f"annotations have no columns {task!r}, {worker!r}, {label!r} and do not look like a "
        f"wide table (rows tasks, columns annotators, cells labels): columns "
        f"{_show_list(df.columns)} {problem}. For a long table, say which column is which: "
        f"fit(df, task=..., worker=..., label=...) (for example task={_show(df.columns[0])}); "
        "for a wide table, pass crowdbayes.Annotations.from_wide(df)"
    )


def _not_wide_because(df: pd.DataFrame) -> str | None:
    """Why a table without the long columns is not plainly wide, or ``None`` if it is."""
    if df.shape[0] == 0 or df.shape[1] == 0 or df.columns.has_duplicates:
        return None  # from_wide names the problem
    dtypes = set(df.dtypes)
    is_bool = pd.api.types.is_bool_dtype
    if all(pd.api.types.is_numeric_dtype(d) and not is_bool(d) for d in dtypes):
        # numbers only (the common wide table): the same test on float64, much faster
        values = df.to_numpy(dtype=np.float64, na_value=np.nan)
        rows, cols = np.nonzero(~np.isnan(values))
        cells: np.ndarray = values[rows, cols]
        kind = "floating"
    else:
        rows, cols = np.nonzero(df.notna().to_numpy())
        cells = np.asarray(df.to_numpy(dtype=object)[rows, cols])
        kind = pd.api.types.infer_dtype(cells, skipna=True)
    if rows.size == 0:
        return None
    try:
        codes, uniques = pd.factorize(cells, sort=False)
    except TypeError:
        return None  # from_wide names the unhashable cell
    if kind not in _PURE_KINDS:
        return f"hold values of different kinds ({kind})"
    if df.shape[1] == 1:
        return None
    pairs = np.unique(codes.astype(np.int64) * df.shape[1] + cols)
    n_columns_per_value = np.bincount(pairs // df.shape[1], minlength=len(uniques))
    shared = n_columns_per_value[codes] >= 2
    n_cells = np.bincount(cols, minlength=df.shape[1])
    share = np.bincount(cols, weights=shared, minlength=df.shape[1]) / np.maximum(n_cells, 1)
    judged = n_cells >= 3  # an annotator with one or two labels may give a rare class alone
    if judged.any() and (share[judged] >= 0.5).all():
        return None
    if not judged.any() and shared.mean() >= 0.5:
        return None
    alone = df.columns[(share < 0.5) & (judged | ~judged.any())]
    why = (
        f"share few values (most values of {_show_list(alone[:5])} appear in no other column, "
        "as task ids, annotator ids and labels would)"
    )
    if len(alone) == 1 and df.shape[1] > 2:
        why += (
            f"; if {_show(alone[0])} holds the task ids, make it the index: "
            f"Annotations.from_wide(df.set_index({_show(alone[0])}))"
        )
    return why


# ------------------------------------------------------- platform exports
# (crowdbayes.io re-exports these: as_annotations reads an export as io.read_annotations does)
_T = TypeVar("_T")

TASK_COL = "ASSIGNMENT:task_id"
WORKER_COL = "ASSIGNMENT:worker_id"
STATUS_COL = "ASSIGNMENT:status"
#: Assignment statuses whose rows are not votes: left out unless ``drop_statuses`` says otherwise.
DROPPED_STATUSES: tuple[str, ...] = ("REJECTED", "SKIPPED", "EXPIRED")
_NO_ANSWER = ("SKIPPED", "EXPIRED")  # rows that may have no OUTPUT at all
_PREFIXES = ("INPUT:", "OUTPUT:", "GOLDEN:", "ASSIGNMENT:", "HINT:", "ACCEPT:")


class PlatformExport(NamedTuple):
    """A platform export read in full: the encoded annotations, and the per-label
    ``ASSIGNMENT:*`` (and ``HINT:``/``ACCEPT:``) columns, one row per label given, in the
    order of ``annotations.task``/``worker``/``label``."""

    annotations: Annotations
    assignments: pd.DataFrame


def _numbered(df: pd.DataFrame) -> pd.DataFrame:
    """Index rows by their line in the file (the header is line 1), for error messages."""
    df.index = pd.RangeIndex(2, len(df) + 2, name="line")
    return df


def is_platform_export(df: pd.DataFrame) -> bool:
    """Whether a table looks like a platform export (``OUTPUT:*`` or ``ASSIGNMENT:*`` columns).

    >>> import pandas as pd
    >>> is_platform_export(pd.DataFrame(columns=["ASSIGNMENT:task_id", "OUTPUT:label"]))
    True
    >>> is_platform_export(pd.DataFrame(columns=["task", "worker", "label"]))
    False
    """
    cols = [str(c) for c in df.columns]
    return any(c.startswith(("OUTPUT:", "ASSIGNMENT:")) for c in cols)


def _output_fields(df: pd.DataFrame) -> list[str]:
    return [str(c)[len("OUTPUT:") :] for c in df.columns if str(c).startswith("OUTPUT:")]


def load_platform_export(
    data: pd.DataFrame | str | os.PathLike[str],
    label_field: str | None = None,
    *,
    gold: GoldLike = None,
    classes: Sequence[Any] | None = None,
    drop_statuses: Sequence[str] = DROPPED_STATUSES,
) -> PlatformExport:
    """Read a platform export (a DataFrame or a CSV/TSV/Parquet file) in full.

    Parameters
    ----------
    data : DataFrame or path.
    label_field : the ``OUTPUT:<field>`` that holds the label. Optional when the export
        has exactly one ``OUTPUT:`` column.
    gold : extra gold labels (task id -> label), added to the export's ``GOLDEN:<field>``;
        a task whose two gold labels differ is an error.
    classes : the full list of classes, when some class may have no label.
    drop_statuses : the ``ASSIGNMENT:status`` values (any case) whose rows are left out,
        by default REJECTED, SKIPPED and EXPIRED; ``()`` keeps every row. A SKIPPED or
        EXPIRED row with no label is left out in any case (it holds no vote). The rows
        left out are counted by status in ``annotations.dropped``.

    Every other row is a label; a row with no task id, worker id or label is an error that
    names the column and row (no task is dropped). Gold labels must be among the labels
    given (or in ``classes``).
    """
    return _read_frame(
        data,
        "a platform export",
        lambda df: _load_export(df, label_field, gold, classes, drop_statuses),
    )


def _read_frame(data: Any, what: str, read: Callable[[pd.DataFrame], _T]) -> _T:
    """``read(df)`` of ``data``: a DataFrame, or a table file (read here, rows numbered
    as in the file); an error while reading a file names the file."""
    source = ""
    if isinstance(data, str | os.PathLike):
        source = f"{os.fspath(data)}: "
        data = _numbered(read_table(data))
    if not isinstance(data, pd.DataFrame):
        raise AnnotationsError(
            f"{what} must be a DataFrame or a file path, got {type(data).__name__}"
        )
    try:
        return read(data)
    except AnnotationsError as err:
        if source:
            raise AnnotationsError(f"{source}{err}") from err
        raise


def _load_export(
    df: pd.DataFrame,
    label_field: str | None,
    gold: GoldLike,
    classes: Sequence[Any] | None,
    drop_statuses: Sequence[str],
) -> PlatformExport:
    fields = _output_fields(df)
    if label_field is None:
        if len(fields) != 1:
            if not fields:
                raise AnnotationsError(
                    "platform export has no OUTPUT:<field> column with the labels "
                    f"(columns: {list(df.columns)})"
                )
            raise AnnotationsError(
                f"platform export has several OUTPUT fields {fields}; choose the label with "
                "label_field= (--label-field on the command line)"
            )
        label_field = fields[0]
    label_col = f"OUTPUT:{label_field}"
    if label_col not in df.columns:
        raise AnnotationsError(
            f"platform export has no column {label_col!r}; OUTPUT fields present: {fields}"
        )
    for col in (TASK_COL, WORKER_COL):
        if col not in df.columns:
            raise AnnotationsError(
                f"platform export has no column {col!r} (columns: {list(df.columns)})"
            )
    df, dropped = _drop_non_votes(df, label_col, drop_statuses)
    gold_values = _export_gold(df, label_field, gold)
    input_cols = [c for c in df.columns if str(c).startswith("INPUT:")]
    inputs = None
    if input_cols:
        inputs = df.groupby(TASK_COL, sort=False)[input_cols].first()
        inputs.columns = [str(c)[len("INPUT:") :] for c in input_cols]
        inputs.index.name = "task"
    ann = Annotations.from_long(
        df,
        task=TASK_COL,
        worker=WORKER_COL,
        label=label_col,
        gold=gold_values,
        classes=classes,
    )
    if inputs is not None:
        inputs = inputs.reindex(ann.task_ids)
        inputs.index.name = "task"
    ann = replace(
        ann,
        task_ids=ann.task_ids.rename("task"),
        worker_ids=ann.worker_ids.rename("worker"),
        task_inputs=inputs,
        dropped=dropped,
    )
    kept = [
        c
        for c in df.columns
        if str(c).startswith(("ASSIGNMENT:", "HINT:", "ACCEPT:")) and c not in (TASK_COL,)
    ]
    assignments = df[[TASK_COL, *[c for c in kept if c != TASK_COL]]].reset_index(drop=True)
    return PlatformExport(ann, assignments)


def _drop_non_votes(
    df: pd.DataFrame, label_col: str, drop_statuses: Sequence[str]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Leave out the rows whose ``ASSIGNMENT:status`` is in ``drop_statuses``, and SKIPPED
    or EXPIRED rows with no label; count them by status."""
    if isinstance(drop_statuses, str):
        raise TypeError(
            f"drop_statuses must be a list of statuses, got the string {drop_statuses!r}; "
            f"write [{drop_statuses!r}]"
        )
    if STATUS_COL not in df.columns:
        return df, {}
    status = df[STATUS_COL].astype(object).where(df[STATUS_COL].notna(), "")
    status = status.astype(str).str.strip().str.upper()
    wanted = {str(s).strip().upper() for s in drop_statuses}
    out = status.isin(wanted) | (status.isin(_NO_ANSWER) & df[label_col].isna())
    if not out.any():
        return df, {}
    counts = status[out].value_counts()
    order = [s for s in DROPPED_STATUSES if s in counts.index]
    order += sorted(s for s in counts.index if s not in DROPPED_STATUSES)
    dropped = {s: int(counts[s]) for s in order}
    if out.all():
        raise AnnotationsError(
            f"platform export: every row was left out by its {STATUS_COL} ({dropped}); "
            "pass drop_statuses=() to keep them"
        )
    return df[~out.to_numpy()], dropped


def _export_gold(df: pd.DataFrame, label_field: str, extra: GoldLike) -> pd.Series | None:
    gold_col = f"GOLDEN:{label_field}"
    column = None
    if gold_col in df.columns:
        column = normalise_gold(df[[TASK_COL, gold_col]], source=f"column {gold_col!r}")
    return merge_gold(column, normalise_gold(extra), (f"column {gold_col!r}", "the gold given"))


def read_platform_export(
    data: pd.DataFrame | str | os.PathLike[str],
    label_field: str | None = None,
    *,
    gold: GoldLike = None,
    classes: Sequence[Any] | None = None,
    drop_statuses: Sequence[str] = DROPPED_STATUSES,
) -> Annotations:
    """Read a platform export into :class:`~crowdbayes.data.Annotations` (see
    :func:`load_platform_export` for the parameters; this drops the assignment columns).
    REJECTED, SKIPPED and EXPIRED assignments are left out unless ``drop_statuses`` says
    otherwise; ``.dropped`` on the result counts them by status."""
    return load_platform_export(
        data, label_field, gold=gold, classes=classes, drop_statuses=drop_statuses
    ).annotations


# ------------------------------------------------- a classifier's pred_probs
PredProbsLike: TypeAlias = pd.DataFrame | np.ndarray


def _is_wide(data: Any, task: str = "task", worker: str = "worker", label: str = "label") -> bool:
    """Whether ``data`` is read as a wide table (an error when that is ambiguous; a
    platform export is not one, as :func:`~crowdbayes.data.as_annotations` reads it)."""
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


def as_annotations(
    data: Annotations | pd.DataFrame | str | os.PathLike[str],
    *,
    gold: GoldLike = None,
    classes: Sequence[Any] | None = None,
    task: str = "task",
    worker: str = "worker",
    label: str = "label",
    pred_probs: Any = None,
) -> Annotations:
    """Turn what a user passes to ``fit`` into :class:`Annotations`.

    A platform export (``OUTPUT:*``/``ASSIGNMENT:*`` columns) is read as
    :func:`crowdbayes.io.read_annotations` reads it (its one ``OUTPUT:`` field, gold from
    ``GOLDEN:``, with ``gold`` added; REJECTED, SKIPPED and EXPIRED assignments left out),
    so ``fit`` takes one as it is. A DataFrame with the ``task``/``worker``/``label``
    columns is read as long; a DataFrame with none of them as wide (rows are tasks,
    columns annotators) when that is unambiguous (see :func:`read_as_wide`), else an error
    says how to name the columns. A path is read with :func:`read_table`, then the same way
    (errors name the file). An :class:`Annotations` object passes through (with ``gold``
    added when given).

    ``pred_probs``, a classifier's out-of-sample probabilities (what the CROWDLAB models
    fit with), are aligned here once and carried by the result (its ``pred_probs``): a
    DataFrame is matched by task id (index) and class (columns, by label or by the label's
    text; a class only the classifier has becomes a class); a NumPy array only where the
    row order is unambiguous, a wide table (rows are tasks) or an :class:`Annotations`
    (rows follow ``task_ids``). Errors name the task or the column.
    """
    if pred_probs is not None:
        return align_pred_probs(
            data, pred_probs, gold=gold, classes=classes, task=task, worker=worker, label=label
        )[0]
    if isinstance(data, Annotations):
        return data if gold is None else data.with_gold(gold)
    if isinstance(data, str | os.PathLike):
        source = os.fspath(data)
        table = read_table(data)
        if is_platform_export(table):  # its errors name rows by line, as read_annotations'
            table = _numbered(table)
        try:
            return as_annotations(
                table, gold=gold, classes=classes, task=task, worker=worker, label=label
            )
        except AnnotationsError as err:
            raise AnnotationsError(f"{source}: {err}") from err
    if isinstance(data, pd.DataFrame):
        if is_platform_export(data):
            return read_platform_export(data, gold=gold, classes=classes)
        if not read_as_wide(data, task=task, worker=worker, label=label):
            return Annotations.from_long(
                data, task=task, worker=worker, label=label, gold=gold, classes=classes
            )
        return Annotations.from_wide(data, gold=gold, classes=classes)
    raise AnnotationsError(
        "annotations must be a DataFrame (long task/worker/label or wide tasks x annotators), "
        f"a file path, or crowdbayes.Annotations; got {type(data).__name__}"
    )
