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

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple, TypeVar

import pandas as pd

from .data import (
    Annotations,
    AnnotationsError,
    GoldLike,
    merge_gold,
    normalise_gold,
    read_table,
)

_T = TypeVar("_T")

__all__ = [
    "DROPPED_STATUSES",
    "PlatformExport",
    "is_platform_export",
    "load_platform_export",
    "read_annotations",
    "read_platform_export",
]

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
