"""The Parquet data path of the multi-process fit (:mod:`crowdbayes.distributed`).

Labels come from a Parquet dataset: a directory (hive partitions allowed), one file or
a list of files, read by :mod:`pyarrow.dataset` batch by batch. Tasks belong to
processes by a *stable* hash of the task id (:func:`stable_hash`: FNV-1a over the
UTF-8 bytes of a string id, a SplitMix64 mix of an integer id; never Python's salted
``hash``), so every process, every run and every machine agrees on where a task lives.

:func:`read_share` streams every batch and keeps only the rows of the tasks this
process owns (``stable_hash(task) % num_processes == process_id``): each process holds
its own labels and one batch at a time, never the whole dataset, but every process
reads every file (I/O is ``num_processes`` times the dataset's; an all-to-all shuffle
over the collectives would read each file once). Hashing runs on each batch's
dictionary of distinct task ids in NumPy over Arrow's buffers: no Python object per
label or per task.

>>> import pyarrow as pa
>>> ids = pa.array(["t1", "t2", "t1", None])
>>> h = stable_hash(ids.fill_null("t3"))
>>> bool(h[0] == h[2]), bool(h[0] == h[1]), h.dtype.name
(True, False, 'uint64')
>>> stable_hash(pa.array(["t1"]))[0] == stable_hash(pa.array(["t1"], pa.large_string()))[0]
np.True_
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data import AnnotationsError

__all__ = [
    "can_split",
    "check_columns",
    "owner",
    "read_row_groups",
    "read_share",
    "row_groups",
    "stable_hash",
    "write_part",
]

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)

Source = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def _fnv1a(offsets: np.ndarray, data: np.ndarray) -> np.ndarray:
    """FNV-1a (64 bit) of the byte strings ``data[offsets[i]:offsets[i + 1]]``, one
    vectorised pass per byte position (ids are short)."""
    starts = offsets[:-1].astype(np.int64)
    lengths = np.diff(offsets).astype(np.int64)
    h = np.full(starts.shape[0], _FNV_OFFSET, np.uint64)
    live = np.arange(starts.shape[0])
    j = 0
    while live.size:
        live = live[lengths[live] > j]
        if not live.size:
            break
        byte = data[starts[live] + j].astype(np.uint64)
        h[live] = (h[live] ^ byte) * _FNV_PRIME
        j += 1
    return h


def _splitmix(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def stable_hash(values: Any) -> np.ndarray:
    """``uint64`` hash of each value of a pyarrow array (string, binary, integer or
    dictionary of those; no nulls), the same in every process and run."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    t = values.type
    if pa.types.is_dictionary(t):
        return stable_hash(values.dictionary)[np.asarray(values.indices, dtype=np.int64)]
    if pa.types.is_integer(t):
        return _splitmix(np.asarray(values.cast(pa.int64()), dtype=np.int64))
    if pa.types.is_string(t) or pa.types.is_binary(t):
        values = values.cast(pa.large_binary())
    elif pa.types.is_large_string(t):
        values = values.cast(pa.large_binary())
    elif not pa.types.is_large_binary(t):
        values = pc.cast(values, pa.large_string()).cast(pa.large_binary())
    _, off_buf, data_buf = values.buffers()
    n = len(values)
    offsets = np.frombuffer(off_buf, np.int64)[values.offset : values.offset + n + 1]
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return _fnv1a(offsets, data)


#: :func:`owner` hashes this many ids at a time (its uint64 temporaries are of one slice).
_HASH_SLICE = 1 << 16


def owner(values: Any, num_processes: int) -> np.ndarray:
    """The process (``0 .. num_processes - 1``) that owns each task id of ``values`` (a
    pyarrow array or chunked array), as int32: hashed a slice of :data:`_HASH_SLICE`
    ids at a time, a dictionary array's values once each."""
    import pyarrow as pa

    P = np.uint64(num_processes)
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    out = np.empty(len(values), np.int32)
    at = 0
    for chunk in chunks:
        if pa.types.is_dictionary(chunk.type):
            of_value = (stable_hash(chunk.dictionary) % P).astype(np.int32)
            out[at : at + len(chunk)] = of_value[np.asarray(chunk.indices)]
            at += len(chunk)
            continue
        for start in range(0, len(chunk), _HASH_SLICE):
            part = chunk.slice(start, _HASH_SLICE)
            out[at : at + len(part)] = (stable_hash(part) % P).astype(np.int32)
            at += len(part)
    return out


def _dataset(source: Any) -> Any:
    import pyarrow.dataset as pds

    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise AnnotationsError(f"no Parquet dataset at {str(path)!r}")
        return pds.dataset(str(path), format="parquet", partitioning="hive")
    files = [str(p) for p in source]
    for p in files:
        if not Path(p).exists():
            raise AnnotationsError(f"no Parquet file at {p!r}")
    return pds.dataset(files, format="parquet")


def read_share(
    source: Any,
    process_id: int = 0,
    num_processes: int = 1,
    columns: Sequence[str] = ("task", "worker", "label"),
    batch_size: int = 1 << 20,
) -> Any:
    """The rows of ``columns`` whose task (the first column) this process owns, as one
    pyarrow Table (columns renamed ``task``, ``worker``, ``label``). ``source``: a
    Parquet directory, a file, a list of files, or a pyarrow Table (filtered the same
    way). A null id or label is an :class:`~crowdbayes.data.AnnotationsError` naming
    the column."""
    import pyarrow as pa

    cols = list(columns)
    check_columns(source, cols)
    if isinstance(source, pa.Table):
        batches = source.select(cols).to_batches(batch_size)
    else:
        # one batch at a time, decoded in this thread, and the pool's freed memory handed
        # back after each: with pyarrow's defaults (16 batches and 4 files read ahead,
        # decoded by its thread pool) the batches read and dropped here stayed resident,
        # 100-200 MB beside 114 MB of kept labels (10,000,000 of 20,000,000 labels)
        batches = _dataset(source).to_batches(
            columns=cols,
            batch_size=batch_size,
            batch_readahead=1,
            fragment_readahead=1,
            use_threads=False,
        )
    pool = pa.default_memory_pool()
    kept = []
    for batch in batches:
        _no_missing(batch, cols)
        if num_processes > 1:
            mine = owner(batch.column(0), num_processes) == process_id
            batch = batch.filter(pa.array(mine))
        if batch.num_rows:
            kept.append(batch)
        del batch
        pool.release_unused()
    return _labels_table(pa.Table.from_batches(kept) if kept else None, source, cols)


def _no_missing(part: Any, cols: Sequence[str]) -> None:
    """An :class:`~crowdbayes.data.AnnotationsError` naming the first of ``cols`` with a
    missing value in ``part`` (a record batch or table)."""
    for name in cols:
        n_null = part.column(name).null_count
        if n_null:
            raise AnnotationsError(f"column {name!r} has {n_null} missing value(s)")


def _labels_table(table: Any, source: Any, cols: list[str]) -> Any:
    """``table`` (None: no rows) with its columns named ``task``, ``worker``, ``label``
    and cast to ``source``'s types of ``cols``."""
    import pyarrow as pa

    names = ["task", "worker", "label"]
    schema = pa.schema([(n, f.type) for n, f in zip(names, _schema(source, cols), strict=True)])
    if table is None:
        return schema.empty_table()
    return table.rename_columns(names).cast(schema)


def row_groups(source: Any) -> list[Any]:
    """Every row group of a Parquet ``source`` as a fragment, in a fixed order (by file
    path, then row group), the same in every process."""
    frags = []
    for frag in _dataset(source).get_fragments():
        for group in frag.split_by_row_group():
            frags.append((frag.path, group.row_groups[0].id, group))
    frags.sort(key=lambda x: (x[0], x[1]))
    return [g for _, _, g in frags]


def can_split(source: Any, columns: Sequence[str]) -> bool:
    """Whether :func:`read_row_groups` can read ``source``: Parquet files (not a pyarrow
    Table) whose files hold ``columns`` themselves (not as hive partition keys)."""
    import pyarrow as pa

    if isinstance(source, pa.Table):
        return False
    groups = row_groups(source)
    if not groups:
        return False
    physical = groups[0].physical_schema.names
    return all(c in physical for c in columns)


def read_row_groups(
    source: Any,
    process_id: int = 0,
    num_processes: int = 1,
    columns: Sequence[str] = ("task", "worker", "label"),
) -> Any:
    """This process's share of the row groups of ``source`` (row group ``j`` of
    :func:`row_groups` goes to process ``j % num_processes``): every label of them,
    whichever process owns its task, as one Table (``task``, ``worker``, ``label``)."""
    import pyarrow as pa

    cols = list(columns)
    check_columns(source, cols)
    mine = row_groups(source)[process_id::num_processes]
    tables = []
    for group in mine:
        part = group.to_table(columns=cols)
        _no_missing(part, cols)
        tables.append(part)
    return _labels_table(pa.concat_tables(tables) if tables else None, source, cols)


def check_columns(source: Any, columns: Sequence[str]) -> None:
    """An :class:`~crowdbayes.data.AnnotationsError` unless ``source`` (a Parquet
    dataset, file, list of files or pyarrow Table) exists and has ``columns``."""
    names = _names(source).split(", ")
    missing = [c for c in columns if c not in names]
    if missing:
        raise AnnotationsError(
            f"the Parquet data has no column {missing[0]!r} (columns: {', '.join(names)})"
        )


def _schema(source: Any, cols: list[str]) -> list[Any]:
    import pyarrow as pa

    schema = source.schema if isinstance(source, pa.Table) else _dataset(source).schema
    return [schema.field(c) for c in cols]


def _names(source: Any) -> str:
    import pyarrow as pa

    schema = source.schema if isinstance(source, pa.Table) else _dataset(source).schema
    return ", ".join(schema.names)


def write_part(table: Any, out_dir: str | os.PathLike[str], process_id: int) -> Path:
    """Write ``table`` as ``out_dir/part-{process_id:05d}.parquet`` (the folder is made)."""
    import pyarrow.parquet as pq

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"part-{process_id:05d}.parquet"
    pq.write_table(table, path)
    return path
