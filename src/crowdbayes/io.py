"""Reading annotations from files: crowdsourcing platform exports and generic tables.

A platform export (Toloka's TSV and look-alikes) has one row per task in an
assignment, with columns

* ``INPUT:<name>``: the task's inputs (kept, one row per task, in
  :attr:`Annotations.task_inputs <crowdbayes.data.Annotations.task_inputs>`
  with the ``INPUT:`` prefix removed),
* ``OUTPUT:<field>``: the label given (which field is a parameter),
* ``GOLDEN:<field>``: the gold (control) label, on rows of gold tasks,
* ``ASSIGNMENT:task_id``, ``ASSIGNMENT:worker_id`` and other ``ASSIGNMENT:*``
  columns (kept, one row per label given, by :func:`load_platform_export`).
* ``ASSIGNMENT:status``: assignments REJECTED, SKIPPED or EXPIRED are not votes and are
  left out by default (``drop_statuses``), counted in
  :attr:`Annotations.dropped <crowdbayes.data.Annotations.dropped>`.

:func:`read_annotations` is the one door the command line uses: it recognises a
platform export by its columns, and reads anything else as a long table with
named columns.

>>> import pandas as pd
>>> from crowdbayes.io import read_platform_export
>>> export = pd.DataFrame({
...     "INPUT:image": ["http://x/1.jpg", "http://x/1.jpg", "http://x/2.jpg"],
...     "OUTPUT:result": ["cat", "dog", "dog"],
...     "GOLDEN:result": ["cat", "cat", None],
...     "ASSIGNMENT:task_id": ["t1", "t1", "t2"],
...     "ASSIGNMENT:worker_id": ["w1", "w2", "w1"],
... })
>>> ann = read_platform_export(export)
>>> ann
Annotations(n_labels=3, n_tasks=2, n_workers=2, classes=['cat', 'dog'], n_gold=1)
>>> ann.task_inputs
             image
task
t1  http://x/1.jpg
t2  http://x/2.jpg
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from .data import (
    DROPPED_STATUSES,
    Annotations,
    AnnotationsError,
    GoldLike,
    PlatformExport,
    _not_wide_because,
    _numbered,
    _read_frame,
    is_platform_export,
    load_platform_export,
    merge_gold,
    normalise_gold,
    read_platform_export,
    read_table,
)

__all__ = [
    "DROPPED_STATUSES",
    "PlatformExport",
    "is_platform_export",
    "load_platform_export",
    "read_annotations",
    "read_platform_export",
]


def read_annotations(
    data: pd.DataFrame | str | os.PathLike[str],
    *,
    task: str = "task",
    worker: str = "worker",
    label: str = "label",
    gold: GoldLike = None,
    gold_column: str | None = None,
    input_columns: Sequence[str] | None = None,
    label_field: str | None = None,
    classes: Sequence[Any] | None = None,
    drop_statuses: Sequence[str] = DROPPED_STATUSES,
) -> Annotations:
    """Read annotations from a DataFrame or a CSV/TSV/Parquet file, recognising the format.

    A platform export (``OUTPUT:*``/``ASSIGNMENT:*`` columns) is read by
    :func:`read_platform_export` (``label_field`` picks the ``OUTPUT:`` field;
    ``drop_statuses`` the assignment statuses left out, counted in ``.dropped``). Any other
    table is long, one row per label, with columns named by ``task``, ``worker``,
    ``label``; ``gold_column`` names a column holding gold labels on gold tasks' rows, and
    ``input_columns`` names per-task columns to keep as task inputs (for reports).

    >>> import pandas as pd
    >>> df = pd.DataFrame({"item": [1, 1, 2], "rater": ["a", "b", "a"],
    ...                    "answer": ["y", "n", "y"], "url": ["u1", "u1", "u2"]})
    >>> ann = read_annotations(df, task="item", worker="rater", label="answer",
    ...                        input_columns=["url"])
    >>> ann.task_inputs["url"].tolist()
    ['u1', 'u2']
    """

    def read(df: pd.DataFrame) -> Annotations:
        if is_platform_export(df):
            return read_platform_export(
                df, label_field, gold=gold, classes=classes, drop_statuses=drop_statuses
            )
        return _read_long(df, task, worker, label, gold, gold_column, input_columns, classes)

    return _read_frame(data, "annotations", read)


def _read_long(
    df: pd.DataFrame,
    task: str,
    worker: str,
    label: str,
    gold: GoldLike,
    gold_column: str | None,
    input_columns: Sequence[str] | None,
    classes: Sequence[Any] | None,
) -> Annotations:
    for col in [gold_column, *(input_columns or [])]:
        if col is not None and col not in df.columns:
            raise AnnotationsError(
                f"annotations have no column {col!r} (columns: {list(df.columns)})"
            )
    if task not in df.columns:
        raise AnnotationsError(
            f"annotations have no column {task!r} (columns: {list(df.columns)}); "
            "name the columns with task=, worker=, label="
        )
    gold_values: GoldLike = gold
    if gold_column is not None:
        gold_values = merge_gold(
            normalise_gold(df[[task, gold_column]], source=f"column {gold_column!r}"),
            normalise_gold(gold),
            (f"column {gold_column!r}", "the gold given"),
        )
    inputs = None
    if input_columns:
        inputs = df.groupby(task, sort=False)[list(input_columns)].first()
    ann = Annotations.from_long(
        df, task=task, worker=worker, label=label, gold=gold_values, classes=classes
    )
    if inputs is not None:
        inputs = inputs.reindex(ann.task_ids)
    return replace(ann, task_inputs=inputs)


def read_gold_file(path: str | os.PathLike[str], ann: Annotations) -> pd.Series:
    """Gold labels from a file (columns ``task, label``, else its first two), through
    :func:`~crowdbayes.data.normalise_gold` as every door's gold: matched to ``ann``'s
    task ids and label values by their text (a CSV gives text; the annotations may hold
    numbers), an empty label is no gold, and a task without annotations or a label that
    is not a class is an error naming the file and the value.

    >>> import tempfile, pathlib
    >>> ann = read_annotations(pd.DataFrame({"task": [1, 1, 2], "worker": ["a", "b", "a"],
    ...                                      "label": [0, 1, 1]}))
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "gold.csv"
    >>> _ = f.write_text("task,label\\n2,1\\n")
    >>> read_gold_file(f, ann).to_dict()
    {2: 1}
    """
    table = read_table(path)
    if table.shape[1] < 2:
        raise AnnotationsError(
            f"{path}: gold file needs two columns (task, label); got {list(table.columns)}"
        )
    gold = normalise_gold(table, ann.task_ids, ann.classes, source=str(path))
    assert gold is not None
    return gold


# -------------------------------------------- the command line's input files
_INTEGER = re.compile(r"^(0|-?[1-9][0-9]*)$")  # as int() prints it: "01", "+1" stay text


def _integers_if_all(values: pd.Series) -> pd.Series:
    """Text labels that are all integers written as Python writes them (as a CSV gives them)
    as int64; others unchanged, so that no two labels merge ("01" and "1" stay two)."""
    present = values.dropna()
    if len(present) == 0 or values.dtype.kind in "iub" or values.dtype.kind == "f":
        return values
    text = present.astype(str)
    if not text.map(lambda s: bool(_INTEGER.match(s))).all():
        return values
    numbers = [int(s) for s in text]
    if not all(-(2**63) <= n < 2**63 for n in numbers):
        return values  # past int64: kept as text, exactly
    if len(present) == len(values):
        return pd.Series(numbers, index=values.index, name=values.name, dtype="int64")
    out = pd.Series(pd.NA, index=values.index, name=values.name, dtype="Int64")
    out.loc[present.index] = numbers
    return out


def _flags(task: str, worker: str, label: str) -> str:
    return (
        "name the columns with --task-col, --worker-col and --label-col "
        f"(now {task!r}, {worker!r}, {label!r})"
    )


def _wide_table(table: pd.DataFrame, task: str) -> pd.DataFrame | None:
    """The table as wide annotations (indexed by item), or None when it is not plainly wide.
    The first column holds the item ids when it is named ``task`` (or has no name), or when
    its values are unique and the other columns are plainly wide; otherwise a table of labels
    only is wide with its items numbered from 0. A Parquet file's own index holds them."""
    if not isinstance(table.index, pd.RangeIndex):  # a Parquet file's own index: the items
        return table if _not_wide_because(table) is None else None
    first = table.columns[0]
    rest = table.drop(columns=[first]) if table.shape[1] > 1 else None
    named = str(first) == task or str(first) == "" or str(first).startswith("Unnamed: ")
    ids = table[first]
    unique_ids = bool(ids.notna().all() and ids.is_unique)
    if rest is not None and (named or unique_ids) and _not_wide_because(rest) is None:
        index = pd.Index(ids.to_numpy(), name=task if named else first)
        return rest.set_axis(index, axis=0)
    if named:
        return None
    if _not_wide_because(table) is None:
        return table.reset_index(drop=True).rename_axis("task")
    return None


def _read_file(args: argparse.Namespace) -> Annotations:
    """Annotations from the command line's INPUT (``crowdbayes aggregate`` and ``crowdbayes
    report`` read it here, one loader): a platform export, a long table (columns named by
    ``--task-col``/``--worker-col``/``--label-col``) or a wide table."""
    path = args.input
    table = read_table(path)
    task, worker, label = args.task_col, args.worker_col, args.label_col
    named = (task, worker, label) != ("task", "worker", "label")
    try:
        if is_platform_export(table):
            return read_annotations(_numbered(table), label_field=args.label_field)
        cols = {str(c) for c in table.columns}
        long = named or worker in cols or label in cols
        if not long:
            wide = _wide_table(table, task)
            if wide is not None:
                numbers = wide.apply(_integers_if_all)
                if all(d.kind in "iu" or str(d) == "Int64" for d in numbers.dtypes):
                    wide = numbers  # every cell an integer: integer labels
                return Annotations.from_wide(wide)
            problem = _not_wide_because(table)
            raise AnnotationsError(
                f"columns {list(map(str, table.columns))} are neither a long table (no "
                f"columns {task!r}, {worker!r}, {label!r}) nor plainly a wide one (rows items, "
                f"columns annotators, cells labels: they {problem}); for a long table, "
                f"{_flags(task, worker, label)}"
            )
        for col in (task, worker, label):
            if col not in cols:
                raise AnnotationsError(
                    f"no column {col!r} (columns: {list(map(str, table.columns))}); "
                    f"{_flags(task, worker, label)}"
                )
        table = _numbered(table)
        table[label] = _integers_if_all(table[label])
        return read_annotations(table, task=task, worker=worker, label=label)
    except AnnotationsError as err:
        raise AnnotationsError(f"{path}: {err}") from err


def _read_pred_probs(path: str, ann: Annotations, task: str) -> pd.DataFrame:
    """A classifier's probabilities from ``--pred-probs`` (both commands read them here): one row per task (a ``task`` column, or the first
    column, or a Parquet file's own index), one numeric column per class. Task ids are
    matched to the annotations' by their text."""
    table = read_table(path)
    try:
        if task in table.columns:
            table = table.set_index(task)
        elif "task" in table.columns:
            table = table.set_index("task")
        elif isinstance(table.index, pd.RangeIndex):
            table = table.set_index(table.columns[0])
        if table.shape[1] == 0:
            raise AnnotationsError("no class columns")
        for col in table.columns:
            numbers = pd.to_numeric(table[col], errors="coerce")
            bad = numbers.isna() & table[col].notna()
            if bad.any() or numbers.isna().any():
                row = table.index[int((bad | numbers.isna()).to_numpy().argmax())]
                raise AnnotationsError(
                    f"column {str(col)!r} has a missing or non-numeric probability "
                    f"{table.loc[row, col]!r} for task {row!r}"
                )
            table[col] = numbers.astype("float64")
        by_text = {str(t): t for t in ann.task_ids}
        table.index = pd.Index([by_text.get(str(t), t) for t in table.index], name="task")
        return table
    except AnnotationsError as err:
        raise AnnotationsError(f"--pred-probs {path}: {err}") from err
