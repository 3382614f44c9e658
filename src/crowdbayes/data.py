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
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

__all__ = ["Annotations", "AnnotationsError", "as_annotations", "read_table"]


class AnnotationsError(ValueError):
    """Raised when input annotations cannot be used; the message names the culprit."""


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
    """

    task: np.ndarray
    worker: np.ndarray
    label: np.ndarray
    task_ids: pd.Index
    worker_ids: pd.Index
    classes: pd.Index
    gold: np.ndarray
    task_inputs: pd.DataFrame | None = field(default=None, repr=False)

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
        return (
            f"Annotations(n_labels={self.n_labels}, n_tasks={self.n_tasks}, "
            f"n_workers={self.n_workers}, classes={list(self.classes)}, "
            f"n_gold={int((self.gold >= 0).sum())})"
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
                f"annotations have no column {missing[0]!r} (columns: {list(df.columns)}); "
                "name the columns with task=, worker=, label="
            )
        if len(df) == 0:
            raise AnnotationsError("annotations table is empty: there is nothing to aggregate")
        for col in (task, worker, label):
            bad = df[col].isna().to_numpy()
            if bad.any():
                row = df.index[int(np.argmax(bad))]
                raise AnnotationsError(
                    f"column {col!r} has {int(bad.sum())} missing value(s), first at row {row!r}; "
                    "drop those rows or fill them in"
                )
        task_codes, task_ids = pd.factorize(df[task], sort=False)
        worker_codes, worker_ids = pd.factorize(df[worker], sort=False)
        gold_values = _gold_values(gold)
        class_index = _class_index(df[label], gold_values, classes, label)
        label_codes = class_index.get_indexer(_normalise(df[label]))
        if (label_codes < 0).any():
            i = int(np.argmax(label_codes < 0))
            raise AnnotationsError(
                f"column {label!r} has value {df[label].iloc[i]!r} (row {df.index[i]!r}) "
                f"that is not among the given classes {list(class_index)}"
            )
        task_ids = pd.Index(task_ids, name=task)
        gold_codes = _encode_gold(gold_values, task_ids, class_index)
        if class_index.size < 2:
            raise AnnotationsError(
                f"column {label!r} has only one class ({list(class_index)}); aggregation needs "
                "at least two. Pass classes=[...] to name the others"
            )
        return cls(
            task=task_codes.astype(np.int32),
            worker=worker_codes.astype(np.int32),
            label=label_codes.astype(np.int32),
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
        if df.index.has_duplicates:
            dup = df.index[df.index.duplicated()][0]
            raise AnnotationsError(f"wide annotations have task {dup!r} on more than one row")
        present = df.notna().to_numpy()
        empty_rows = ~present.any(axis=1)
        if empty_rows.any():
            row = df.index[int(np.argmax(empty_rows))]
            raise AnnotationsError(
                f"wide annotations: task {row!r} (and {int(empty_rows.sum()) - 1} more) has no "
                "label from any annotator; drop such rows or add labels"
            )
        rows, cols = np.nonzero(present)
        values = pd.Series(
            np.asarray(df.to_numpy(dtype=object)[rows, cols]),
            dtype=_wide_dtype(df),
        )
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
        )

    # ---------------------------------------------------------- derived data
    def with_gold(self, gold: GoldLike) -> Annotations:
        """Return a copy with gold labels replaced by ``gold`` (task id -> label)."""
        values = _gold_values(gold)
        return replace(self, gold=_encode_gold(values, self.task_ids, self.classes))

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
                f"new annotations have label(s) {extra} not among the fitted classes "
                f"{list(self.classes)}"
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
        return np.bincount(self.task, minlength=self.n_tasks)

    def labels_per_worker(self) -> np.ndarray:
        """Number of labels each worker gave, shape (n_workers,)."""
        return np.bincount(self.worker, minlength=self.n_workers)

    def vote_counts(self) -> np.ndarray:
        """Votes per task and class, shape (n_tasks, n_classes) (dense over classes only)."""
        flat = self.task.astype(np.int64) * self.n_classes + self.label
        return np.bincount(flat, minlength=self.n_tasks * self.n_classes).reshape(
            self.n_tasks, self.n_classes
        )

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


def _wide_dtype(df: pd.DataFrame) -> Any:
    dtypes = set(df.dtypes)
    if all(pd.api.types.is_numeric_dtype(d) for d in dtypes):
        return float
    return object


def _gold_values(gold: GoldLike) -> pd.Series | None:
    if gold is None:
        return None
    if isinstance(gold, pd.DataFrame):
        if gold.shape[1] == 1:
            gold = gold.iloc[:, 0]
        elif {"task", "label"} <= set(gold.columns):
            gold = gold.set_index("task")["label"]
        else:
            raise AnnotationsError(
                "gold as a DataFrame needs columns 'task' and 'label' (or a single column "
                f"indexed by task); got columns {list(gold.columns)}"
            )
    series = pd.Series(gold) if not isinstance(gold, pd.Series) else gold
    series = series[series.notna()]
    if series.index.has_duplicates:
        dup = series.index[series.index.duplicated()][0]
        conflict = series.loc[[dup]].nunique() > 1
        if conflict:
            raise AnnotationsError(f"gold has conflicting labels for task {dup!r}")
        series = series[~series.index.duplicated()]
    return _normalise(series)


def _sort_classes(values: np.ndarray) -> list[Any]:
    uniq = list(pd.unique(values))
    try:
        return sorted(uniq)
    except TypeError:  # mixed types: sort by their text
        return sorted(uniq, key=str)


def _class_index(
    labels: pd.Series, gold: pd.Series | None, classes: Sequence[Any] | None, column: str
) -> pd.Index:
    if classes is not None:
        class_list = list(classes)
        if len(set(class_list)) != len(class_list):
            raise AnnotationsError(f"classes has duplicates: {class_list}")
        return pd.Index(class_list, name="class")
    if isinstance(labels.dtype, pd.CategoricalDtype):
        return pd.Index(list(labels.cat.categories), name="class")
    seen = _normalise(labels).to_numpy()
    class_list = _sort_classes(seen)
    if gold is not None and len(gold):
        known = set(class_list)
        unseen = [g for g in pd.unique(gold.to_numpy()) if g not in known]
        if unseen:
            raise AnnotationsError(
                f"gold label {unseen[0]!r} is not among the labels annotators gave in column "
                f"{column!r} ({class_list}); pass classes=[...] if it is a real class"
            )
    return pd.Index(class_list, name="class")


def _encode_gold(gold: pd.Series | None, task_ids: pd.Index, classes: pd.Index) -> np.ndarray:
    codes = np.full(len(task_ids), -1, dtype=np.int32)
    if gold is None or len(gold) == 0:
        return codes
    pos = task_ids.get_indexer(gold.index)
    if (pos < 0).any():
        missing = gold.index[pos < 0]
        raise AnnotationsError(
            f"gold has task {missing[0]!r} (and {len(missing) - 1} more) with no annotations; "
            "gold tasks must also appear in the annotations"
        )
    cls_codes = classes.get_indexer(gold.to_numpy())
    if (cls_codes < 0).any():
        i = int(np.argmax(cls_codes < 0))
        raise AnnotationsError(
            f"gold label {gold.iloc[i]!r} for task {gold.index[i]!r} is not among the classes "
            f"{list(classes)}"
        )
    codes[pos] = cls_codes
    return codes


def read_table(path: str | os.PathLike[str], **read_kwargs: Any) -> pd.DataFrame:
    """Read a CSV, TSV or Parquet file into a DataFrame, ids and labels as text.

    The format follows the file name (``.csv``, ``.tsv``/``.tab``/``.txt``,
    ``.parquet``/``.pq``, each optionally ``.gz``). A missing file or an
    unknown extension raises an error that names the file.
    """
    p = Path(path)
    if not p.exists():
        raise AnnotationsError(f"file {str(p)!r} does not exist")
    name = p.name.lower().removesuffix(".gz")
    if name.endswith((".parquet", ".pq")):
        return pd.read_parquet(p, **read_kwargs)
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
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise AnnotationsError(f"file {str(p)!r} could not be parsed: {err}") from err


def as_annotations(
    data: Annotations | pd.DataFrame | str | os.PathLike[str],
    *,
    gold: GoldLike = None,
    classes: Sequence[Any] | None = None,
    task: str = "task",
    worker: str = "worker",
    label: str = "label",
) -> Annotations:
    """Turn what a user passes to ``fit`` into :class:`Annotations`.

    A DataFrame with the ``task``/``worker``/``label`` columns is read as long;
    any other DataFrame as wide (rows are tasks, columns annotators). A path is
    read with :func:`read_table`, then as long. An :class:`Annotations` object
    passes through (with ``gold`` added when given).
    """
    if isinstance(data, Annotations):
        return data if gold is None else data.with_gold(gold)
    if isinstance(data, str | os.PathLike):
        data = read_table(data)
    if isinstance(data, pd.DataFrame):
        if {task, worker, label} <= set(data.columns):
            return Annotations.from_long(
                data, task=task, worker=worker, label=label, gold=gold, classes=classes
            )
        if any(c in data.columns for c in (task, worker, label)):
            Annotations.from_long(data, task=task, worker=worker, label=label)  # raises, names it
        return Annotations.from_wide(data, gold=gold, classes=classes)
    raise AnnotationsError(
        "annotations must be a DataFrame (long task/worker/label or wide tasks x annotators), "
        f"a file path, or crowdbayes.Annotations; got {type(data).__name__}"
    )
