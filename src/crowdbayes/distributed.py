"""EM over several processes on JAX's distributed runtime, from a Parquet dataset.

Every process (one per host, or several on one machine) calls :func:`fit` with the same
arguments. Each one reads the rows of the tasks it owns (a stable hash of the task id,
:mod:`crowdbayes.parquet`), so a task's labels meet in one process and no process holds
another's labels. The annotator and class vocabularies are agreed by an all-gather of
each process's distinct values, sorted, so codes mean the same everywhere. The EM loop
is the library's own (:mod:`crowdbayes.inference.em`, the families' static functions),
run as one SPMD program over a global mesh with one device per process: the E-step is
local to each process's tasks, and the M-step's sufficient statistics (expected
confusion counts per annotator, class counts) and the objective are summed across
processes by ``psum`` (the :class:`~crowdbayes.inference.sharding.ShardedSegments`
that ``devices=`` uses), so every process takes the same M-step and the fit equals the
one-process ``DawidSkene().fit(...)`` to float rounding. Each process writes its own
tasks' labels as one Parquet part (``part-00000.parquet``, ...: task id, label,
probability); process 0 also writes the annotators' parameters.

Processes find each other through :func:`jax.distributed.initialize`: arguments of
:func:`fit` (``coordinator_address``, ``num_processes``, ``process_id``), the
``CROWDBAYES_COORDINATOR``/``CROWDBAYES_NUM_PROCESSES``/``CROWDBAYES_PROCESS_ID``
variables that :func:`launch` sets, or (under SLURM, or when JAX was initialised
already) JAX's own cluster detection. On CPUs the collectives are JAX's CPU
collectives (gloo); on GPUs, NCCL.

Models: ``ds`` (:class:`~crowdbayes.DawidSkene`), ``one-coin``, ``class-conditional``,
``mace`` and ``recommended`` (with its label correlation given, or estimated by a
distributed search). See ``docs/distributed.md``.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np

from .data import AnnotationsError, bincount, release_memory
from .engines import engine_settings, warn_deprecated

__all__ = [
    "MODELS",
    "DistributedError",
    "DistributedFit",
    "clear_out",
    "fit",
    "free_port",
    "launch",
]

#: Registry names of the models that run multi-process.
MODELS = ("ds", "one-coin", "class-conditional", "mace", "recommended")

_ENV_COORD = "CROWDBAYES_COORDINATOR"
_ENV_N = "CROWDBAYES_NUM_PROCESSES"
_ENV_ID = "CROWDBAYES_PROCESS_ID"


class DistributedError(RuntimeError):
    """A process of a multi-process fit failed (or the fit timed out); the message
    names the process and shows the end of its error output."""


@dataclass
class DistributedFit:
    """One process's share of a multi-process fit.

    ``tasks`` (pyarrow array: this process's task ids), ``proba`` ``[n_tasks, K]`` and
    ``label_codes`` for them; ``classes`` and ``workers`` (pyarrow arrays, the global
    sorted vocabularies), ``params`` (the family's params, numpy, the same in every
    process), ``confusion`` ``[W, K, K]`` and ``class_prior`` ``[K]``; ``history``,
    ``n_iter``, ``converged``; ``process_id``, ``num_processes``; ``n_labels`` (this
    process's) and ``n_labels_total``; ``timings`` (seconds: ``read_s`` Parquet to this
    process's rows, ``encode_s`` vocabularies and codes, ``layout_s`` segment layouts
    on the devices, ``em_s`` the EM loop); ``shuffled`` (whether the labels came by the
    all-to-all shuffle or by every process reading every row group)."""

    tasks: Any
    proba: np.ndarray
    label_codes: np.ndarray
    classes: Any
    workers: Any
    params: Any
    confusion: np.ndarray
    class_prior: np.ndarray
    history: np.ndarray
    n_iter: int
    converged: bool
    process_id: int
    num_processes: int
    n_labels: int
    n_labels_total: int
    timings: dict[str, float] = field(default_factory=dict)
    shuffled: bool = False

    def table(self) -> Any:
        """This process's tasks as a pyarrow Table: ``task``, ``label`` (the user's
        class values) and ``probability`` (of that label)."""
        import pyarrow as pa

        rows = np.arange(self.label_codes.shape[0])
        return pa.table(
            {
                "task": self.tasks,
                "label": self.classes.take(pa.array(self.label_codes)),
                "probability": pa.array(self.proba[rows, self.label_codes]),
            }
        )


# ------------------------------------------------------------------ runtime
def _initialize(
    coordinator_address: str | None,
    num_processes: int | None,
    process_id: int | None,
    initialization_timeout: int,
    heartbeat_timeout_seconds: int,
) -> None:
    """``jax.distributed.initialize`` from the arguments, the launcher's variables or
    SLURM, unless JAX is initialised already or this is a single process."""
    import jax

    if jax.distributed.is_initialized():
        return
    env = os.environ
    coordinator_address = coordinator_address or env.get(_ENV_COORD)
    if num_processes is None and _ENV_N in env:
        num_processes = int(env[_ENV_N])
    if process_id is None and _ENV_ID in env:
        process_id = int(env[_ENV_ID])
    kwargs: dict[str, Any] = {
        "initialization_timeout": int(initialization_timeout),
        "heartbeat_timeout_seconds": int(heartbeat_timeout_seconds),
    }
    if num_processes is None and coordinator_address is None:
        if int(env.get("SLURM_NTASKS", "1")) > 1:  # JAX finds its peers itself
            jax.distributed.initialize(**kwargs)
        return
    if num_processes is not None and int(num_processes) == 1:
        return
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        **kwargs,
    )


def _mesh() -> tuple[Any, Any]:
    """A mesh with one device per process (axis ``AXIS``) and this process's device."""
    import jax
    from jax.sharding import Mesh

    from .inference.sharding import AXIS

    first: dict[int, Any] = {}
    for d in jax.devices():
        first.setdefault(d.process_index, d)
    devs = [first[p] for p in sorted(first)]
    return Mesh(np.asarray(devs, dtype=object), (AXIS,)), first[jax.process_index()]


def _allgather(x: np.ndarray) -> np.ndarray:
    """``[P, *x.shape]``: every process's ``x`` (same shape and dtype everywhere)."""
    import jax

    if jax.process_count() == 1:
        return x[None]
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x))


def _allgather_arrow(values: Any) -> list[Any]:
    """Every process's pyarrow array ``values`` (any length), through Arrow IPC bytes."""
    import jax

    if jax.process_count() == 1:
        return [values]
    raw = _ipc_bytes(values)
    sizes = _allgather(np.asarray([raw.size], np.int64))[:, 0]
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: raw.size] = raw
    everyone = _allgather(padded)
    return [_from_ipc(row[: int(n)]) for row, n in zip(everyone, sizes, strict=True)]


def _codes(column: Any, value_set: Any) -> np.ndarray:
    """Each value's index in ``value_set`` (which holds every value of ``column``), as
    int32, encoded a chunk at a time into one array (no combined copy of the column,
    no whole-column Arrow result beside it)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out = np.empty(len(column), np.int32)
    at = 0
    for chunk in chunks:
        out[at : at + len(chunk)] = np.asarray(pc.index_in(chunk, value_set=value_set))
        at += len(chunk)
    return out


def _dictionary_codes(held: list[Any]) -> tuple[Any, np.ndarray]:
    """The distinct values of the column in ``held`` (emptied), in order of first
    appearance, and each value's index among them (int32): Arrow's dictionary encoding
    of the chunked column (one dictionary for every chunk), copied into one array a
    chunk at a time, each chunk's Arrow indices dropped once copied."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = held.pop()
    if not isinstance(column, pa.ChunkedArray):
        column = pa.chunked_array([column])
    n, dtype = len(column), column.type
    encoded = pc.dictionary_encode(column)
    del column
    chunks = list(encoded.chunks)
    del encoded
    values = chunks[-1].dictionary if chunks else pa.array([], dtype)
    codes = np.empty(n, np.int32)
    at = 0
    for i, chunk in enumerate(chunks):
        chunks[i] = None
        codes[at : at + len(chunk)] = np.asarray(chunk.indices)
        at += len(chunk)
        del chunk
    return values, codes


def _vocabulary(column: Any) -> Any:
    """The sorted union of every process's distinct values of ``column``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    mine = pc.unique(column)  # chunk by chunk: no combined copy of the column
    parts = _allgather_arrow(mine)
    union = pc.unique(pa.concat_arrays([p.cast(mine.type) for p in parts]))
    return union.take(pc.sort_indices(union))


# ------------------------------------------------------------------ model
def _estimator(model: Any, params: dict[str, Any]) -> Any:
    if not isinstance(model, str):
        return model
    from .registry import MODELS as REGISTRY

    if model not in MODELS:
        raise ValueError(f"model {model!r} does not run multi-process; one of {', '.join(MODELS)}")
    return REGISTRY[model].build(**params)


def _check_estimator(est: Any) -> None:
    from .models.class_conditional import ClassConditionalDawidSkene
    from .models.dawid_skene import DawidSkene
    from .models.mace import MACE
    from .models.one_coin import OneCoinDawidSkene

    if not isinstance(est, (DawidSkene, OneCoinDawidSkene, ClassConditionalDawidSkene, MACE)):
        raise ValueError(
            f"{type(est).__name__} does not run multi-process; use one of {', '.join(MODELS)}"
        )
    if engine_settings(est)["method"] != "em":
        raise ValueError("a multi-process fit runs EM only (inference=EM(...))")
    warn_deprecated(est)  # flat NUTS settings, ignored by EM: as a one-process fit warns


# ------------------------------------------------------------------ fit
def fit(
    source: Any,
    model: Any = "ds",
    *,
    out: str | os.PathLike[str] | None = None,
    task: str = "task",
    worker: str = "worker",
    label: str = "label",
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    initialization_timeout: int = 120,
    heartbeat_timeout_seconds: int = 30,
    shuffle: bool | None = None,
    **params: Any,
) -> DistributedFit:
    """Fit ``model`` (a name of :data:`MODELS` with its ``params``, or an unfitted
    estimator of those) on the Parquet ``source`` (a directory, a file or a list of
    files; or a pyarrow Table), in every process that calls it with the same
    arguments; returns this process's share (:class:`DistributedFit`) and, with
    ``out``, writes it as ``out/part-{process_id:05d}.parquet`` (process 0 also writes
    ``out/annotators.parquet``: the annotators with their confusion matrices, and
    ``out/params.npz``). ``task``, ``worker``, ``label`` name the columns.

    ``shuffle`` (default: when there are several processes and the files hold the three
    columns): each process reads its share of the row groups and sends every label to
    its task's owner by an all-to-all over the collectives; ``shuffle=False``: each
    process reads every row group and keeps the rows of its own tasks.

    >>> import crowdbayes as cb, pyarrow as pa
    >>> df = cb.datasets.load("rte")[0]
    >>> res = cb.distributed.fit(pa.Table.from_pandas(df, preserve_index=False))
    >>> one = cb.DawidSkene().fit(df)
    >>> bool((res.table().to_pandas().set_index("task")["label"]
    ...       == one.predict().loc[res.tasks.to_pylist()]).all())
    True
    """
    from .parquet import can_split, check_columns, read_row_groups, read_share, write_part

    # what every process can see alone is checked before it waits for the others
    check_columns(source, (task, worker, label))
    est = _estimator(model, params)
    _check_estimator(est)
    _initialize(
        coordinator_address,
        num_processes,
        process_id,
        initialization_timeout,
        heartbeat_timeout_seconds,
    )
    import jax

    P, pid = jax.process_count(), jax.process_index()
    start = time.perf_counter()
    cols = (task, worker, label)
    if shuffle is None:
        shuffle = P > 1 and can_split(source, cols)
    # the table goes in a list that _fit_table empties, so that it alone holds the table
    # and drops it once encoded (an argument is held by the caller until the call returns)
    try:
        if shuffle:  # its own row groups, then each label to its task's owner
            held = [read_row_groups(source, pid, P, cols)]
        else:  # every row group, keeping the rows of its own tasks
            held = [read_share(source, pid, P, cols)]
        result = _fit_table(est, held, P, pid, start, shuffle)
    except jax.errors.JaxRuntimeError as err:
        if P == 1:
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DistributedError(
            f"process {pid} of {P}: a collective failed ({first}); another process has "
            "most likely died or was stopped: see its log"
        ) from err
    if out is not None:
        write_part(result.table(), out, pid)
        if pid == 0:
            _write_params(result, Path(out))
    return result


def _write_params(result: DistributedFit, out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, K, L = result.confusion.shape
    cols: dict[str, Any] = {"worker": result.workers}
    for k in range(K):
        for j in range(L):
            cols[f"confusion_{k}_{j}"] = pa.array(result.confusion[:, k, j])
    pq.write_table(pa.table(cols), out / "annotators.parquet")
    np.savez(
        out / "params.npz",
        confusion=result.confusion,
        class_prior=result.class_prior,
        history=result.history,
        n_iter=result.n_iter,
        converged=result.converged,
        shuffled=result.shuffled,
    )


def _fit_table(
    est: Any, held: list[Any], P: int, pid: int, start: float, shuffle: bool = False
) -> DistributedFit:
    import jax
    import pyarrow as pa
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as Spec

    from .inference.em import (
        EMData,
        _drop_em_chunk,
        _em_chunk_jit,
        bound_programs,
        em_running,
        initial_state,
    )
    from .inference.segments import MAX_WIDTH, Segments, _is_sorted, stable_order
    from .inference.sharding import AXIS, ShardedSegments

    table = held.pop()  # the only reference to the labels' table from here
    timings = {"read_s": time.perf_counter() - start}
    mesh, device = _mesh()
    workers = _vocabulary(table.column("worker"))
    classes = _vocabulary(table.column("label"))
    W, K = len(workers), len(classes)
    if K < 2:
        raise AnnotationsError(f"the labels hold {K} class(es); EM needs at least 2")
    # column by column, each dropped once encoded: the codes are all that is kept of
    # the labels (and the tasks' distinct ids)
    # each label's annotator-class key, worker * K + label (int32: W * K < 2**31), built
    # in the annotator codes' array: what the layouts sum by, and all that is kept of
    # the two columns (the annotator and the class are wl // K and wl % K)
    wl = _codes(table.column("worker"), workers)
    table = table.drop_columns(["worker"])
    wl *= np.int32(K)
    wl += _codes(table.column("label"), classes)
    table = table.drop_columns(["label"])
    if shuffle:  # the arrays go in a list that _shuffle empties, so that it frees them
        held = [table.column("task"), wl]
        del table, wl
        pa.default_memory_pool().release_unused()  # the dropped columns, before numpy's
        task_ids, task, wl = _shuffle(held, mesh, device)
    else:
        held = [table.column("task")]
        del table
        task_ids, task = _dictionary_codes(held)
    T, N = len(task_ids), int(task.shape[0])
    pa.default_memory_pool().release_unused()  # the pool keeps the freed table otherwise
    release_memory()  # and the C heap the encoding's freed slices
    sizes = _allgather(np.asarray([T, N], np.int64))
    T_local = max(int(sizes[:, 0].max()), 1)
    n_total = int(sizes[:, 1].sum())
    if n_total == 0:
        raise AnnotationsError("the Parquet data holds no labels")
    counts = _allgather(bincount(wl // np.int32(K), minlength=W).astype(np.int64)).sum(0)
    # EM starts from the vote shares, as the estimators do
    label = wl % np.int32(K)
    votes = np.zeros((T_local, K), np.float64)
    for k in range(K):  # [N] bool per class, not an [N] int64 key
        votes[:, k] = bincount(task[label == k], minlength=T_local)
    del label
    timings["encode_s"] = time.perf_counter() - start - timings["read_s"]

    def sharded(local: np.ndarray, axis: int = 0) -> jax.Array:
        shape = list(local.shape)
        shape[axis] *= P
        spec: list[str | None] = [None] * local.ndim
        spec[axis] = AXIS
        return jax.make_array_from_single_device_arrays(
            tuple(shape),
            NamedSharding(mesh, Spec(*spec)),
            [jax.device_put(local, device)],
        )

    def replicated(x: Any) -> jax.Array:
        x = np.asarray(x)
        return jax.make_array_from_single_device_arrays(
            x.shape, NamedSharding(mesh, Spec()), [jax.device_put(x, device)]
        )

    # the blocked layouts of the one-device fit, one per process with the same widths
    # and rows per block everywhere (agreed by two small all-gathers), as the sharded
    # layouts of devices= stack one per device
    n_per_task = bincount(task, minlength=T_local)
    top = max(int(_allgather(np.asarray([n_per_task.max(initial=0)], np.int64)).max()), 2)
    if N and not _is_sorted(task):  # the layouts group labels by task
        order = stable_order(task, T_local, dtype=np.int32)
        task, wl = task[order], wl[order]
        del order
    if top <= MAX_WIDTH:  # no task is cut into chunks: one set of blocks serves both
        by_task, by_wl = _blocked(task, wl, T_local, W * K, MAX_WIDTH, sharded)
    else:
        by_task = _blocked(task, wl, T_local, W * K, top, sharded)[0]
        by_wl = _blocked(task, wl, T_local, W * K, MAX_WIDTH, sharded)[1]
    del task  # the layouts hold what EM reads of the labels
    gold = np.full(T_local, -1, np.int32)
    mask = np.zeros(T_local, np.float32)
    mask[:T] = 1.0
    temperature = None
    tau_em = None
    from .recommend import CalibratedDawidSkene

    calibrated = isinstance(est, CalibratedDawidSkene)
    if calibrated:
        n = np.maximum(n_per_task, 1).astype(np.float64)
        tau_em = float(est.em_temperature) * n ** float(est.label_power)
        temperature = sharded(np.where(mask > 0, tau_em, 1.0).astype(np.float32))
    del wl
    # the families run here read the labels through the layouts alone: the per-label
    # arrays are one-entry stand-ins (ItemDifficulty, which reads them, does not run here)
    stand_in = sharded(np.zeros(1, np.int32))
    data = EMData(
        task=stand_in,
        worker=stand_in,
        label=stand_in,
        gold=sharded(gold),
        by_task=cast(Segments, ShardedSegments(by_task, mesh, P * T_local, False, True)),
        by_worker_label=cast(Segments, ShardedSegments(by_wl, mesh, W * K, True, False)),
        by_task_label=None,
        n_labels_per_worker=replicated(counts.astype(np.int32)),
        task_mask=sharded(mask),
        task_temperature=temperature,
    )
    del by_task, by_wl
    shape = SimpleNamespace(
        n_classes=K, n_workers=W, n_tasks=int(sizes[:, 0].sum()), n_labels=n_total
    )
    hyper = jax.tree_util.tree_map(lambda x: replicated(np.asarray(x)), est._hyper(shape))
    init = votes / np.maximum(votes.sum(1, keepdims=True), 1.0)
    post0 = sharded(np.ascontiguousarray(init.T, dtype=np.float32), axis=1)
    del init
    if tau_em is None:  # only the calibration reads the votes again
        del votes
    family = est._family
    settings = engine_settings(est)  # inference=EM(...) or the estimator's own
    max_iter, tol = int(settings["max_iter"]), float(settings["tol"])
    history0 = replicated(np.full((max(max_iter, 1),), np.nan, np.float32))
    stop_at, tol_arr = replicated(np.int32(max_iter)), replicated(np.float32(tol))
    bound_programs()
    timings["layout_s"] = time.perf_counter() - start - timings["read_s"] - timings["encode_s"]
    em_start = time.perf_counter()  # the EM loop's time includes finding or compiling it
    # the EM loop from crowdbayes' program cache where a fit of these shapes compiled it
    # before, in this process or an earlier one (no tracing, lowering or compiling)
    key = _program_key(family, (post0, data, hyper, history0), mesh)
    program = _saved_program(key, mesh) if key is not None else None
    read_back = program is not None
    if program is not None:  # the params' shapes are the program's
        shapes = program.args_info[0][0].params
    else:  # the loop starts with an M-step, so params only need the right structure here
        shapes = jax.eval_shape(family.m_step, post0, data, hyper)
    state = initial_state(shapes, post0, history0, replicated)
    if key is None:  # no crowdbayes cache: JAX's jit (and JAX's own cache, if any)
        state = _em_chunk_jit(family, state, data, hyper, stop_at, tol_arr)
    else:
        if program is None:
            program = _compile_em_chunk(family, key, state, data, hyper, stop_at, tol_arr)
        try:
            state = program(state, data, hyper, stop_at, tol_arr)
        except jax.errors.JaxRuntimeError as err:
            if not read_back:
                raise
            # a program read back that does not run (as run_em handles): dropped; one
            # process compiles it and runs again, several do not (a peer may have
            # started the loop: the error ends the fit, the next run compiles it)
            _drop_em_chunk(key)
            if P > 1:
                raise DistributedError(
                    f"process {pid} of {P}: the EM loop read back from crowdbayes' program "
                    f"cache did not run ({str(err).strip()[:200]}); it was dropped from the "
                    "cache: run the fit again"
                ) from err
            program = _compile_em_chunk(family, key, state, data, hyper, stop_at, tol_arr)
            state = program(state, data, hyper, stop_at, tol_arr)

    def local(x: jax.Array) -> np.ndarray:
        return np.asarray(x.addressable_data(0))

    n_iter = int(local(state.n_iter))  # waits for the loop
    timings["em_s"] = time.perf_counter() - em_start
    gain = float(local(state.gain))
    converged = not em_running(n_iter, gain, n_total, tol)
    params = jax.tree_util.tree_map(local, state.params)
    post = local(state.post).astype(np.float64)[:, :T].T
    confusion = np.asarray(
        family.confusion(jax.tree_util.tree_map(lambda x: jax.device_put(x, device), params)),
        np.float64,
    )
    class_prior = np.exp(np.asarray(params.log_pi, np.float64))
    if tau_em is not None:
        post = _calibrate(est, post, votes[:T], n_per_task[:T], tau_em[:T])
    return DistributedFit(
        tasks=task_ids,
        proba=post,
        label_codes=np.argmax(post, axis=1),
        classes=classes,
        workers=workers,
        params=params,
        confusion=confusion,
        class_prior=class_prior,
        history=local(state.history).astype(np.float64)[:n_iter],
        n_iter=n_iter,
        converged=bool(converged),
        process_id=pid,
        num_processes=P,
        n_labels=N,
        n_labels_total=n_total,
        timings=timings,
        shuffled=shuffle,
    )


def _program_key(family: Any, args: Any, mesh: Any) -> str | None:
    """The key under which crowdbayes' program cache keeps this process's EM loop for
    ``family`` and ``args`` (the initial posterior, data, hyperparameters and history:
    everything but the params, which follow from them), or None where that cache is off
    or the family is defined inside a function. As ``em._program_key``, with what a
    program over several processes depends on besides: each argument's sharding, the
    mesh's devices, this process's index and the number of processes (each process
    keeps its own program: its executable runs its own device's share), and the source
    of ``inference/sharding.py`` (the sharded segment sums)."""
    import hashlib

    import jax

    from . import _compile_cache

    if _compile_cache.program_dir() is None or "<locals>" in family.__qualname__:
        return None
    leaves, tree = jax.tree_util.tree_flatten(args)
    parts = [
        "distributed",
        family.__module__,
        family.__qualname__,
        str(tree),
        _compile_cache.code_tag(family.__module__),
        _compile_cache.code_tag("crowdbayes.inference.sharding"),
        f"process {jax.process_index()} of {jax.process_count()}",
        f"mesh {dict(mesh.shape)} {[d.id for d in mesh.devices.flat]}",
    ]
    for x in leaves:
        parts.append(f"{jax.typeof(x)} {getattr(x.sharding, 'spec', x.sharding)}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _saved_program(key: str, mesh: Any) -> Any | None:
    """The EM loop saved under ``key``, held in this process or read from crowdbayes'
    cache onto the mesh's devices (``em._saved_em_chunk`` loads onto all devices, which
    are more than the mesh's where a process has several), or None; with the same
    jax.monitoring events."""
    import jax

    from . import _compile_cache
    from .inference import em

    compiled = em._programs.get(key)
    if compiled is None:
        compiled = _compile_cache.load_program(key, list(mesh.devices.flat))
        if compiled is None:
            jax.monitoring.record_event(_compile_cache.PROGRAM_MISS)
            return None
        jax.monitoring.record_event(_compile_cache.PROGRAM_HIT)
        em._programs[key] = compiled
    return compiled


def _compile_em_chunk(
    family: Any, key: str, state: Any, data: Any, hyper: Any, stop_at: Any, tol: Any
) -> Any:
    """Compile this process's EM loop (the global arrays of the call give the shardings)
    and save it under ``key`` in crowdbayes' program cache, as ``em._compile_em_chunk``
    does for one process: only where XLA compiled it just now (JAX's own cache, written
    by process 0 alone, hands back executables that serialise without their code)."""
    from . import _compile_cache
    from .inference import em

    lowered = cast(Any, em._em_chunk_jit).lower(family, state, data, hyper, stop_at, tol)
    compiled, fresh = _compile_cache.compile_fresh(lowered)
    if fresh:
        _compile_cache.save_program(key, compiled)
    em._programs[key] = compiled
    return compiled


def _outbox(lengths: np.ndarray, dtype: Any) -> np.ndarray:
    """This process's all-to-all message buffer, ``[1, P, M]`` zeros: row ``d`` for
    process ``d``, every message padded to the longest, ``M = lengths.max()``
    (``lengths[s, d]``: how many values process ``s`` sends to process ``d``). The
    padding is never written, so its pages are never touched (``np.zeros``)."""
    P = lengths.shape[0]
    return np.zeros((1, P, max(int(lengths.max()), 1)), dtype)


def _swap(held: list[np.ndarray], lengths: np.ndarray, mesh: Any, device: Any) -> np.ndarray:
    """Send row ``d`` of the outbox in ``held`` (emptied, so that the buffer is freed
    once sent) to process ``d`` by ``jax.lax.all_to_all`` over the mesh; returns what
    every process sent here, one compact array in the order of the senders
    (``lengths[:, this process]`` values from each)."""
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as Spec

    from .inference.sharding import AXIS

    box = held.pop()
    P, pid = box.shape[1], jax.process_index()
    glob = jax.make_array_from_single_device_arrays(
        (P, P, box.shape[2]), NamedSharding(mesh, Spec(AXIS)), [jax.device_put(box, device)]
    )
    del box
    out = _exchange(mesh)(glob)
    del glob
    got = np.asarray(out.addressable_data(0))[0]
    sizes = lengths[:, pid]
    result = np.empty(int(sizes.sum()), got.dtype)
    at = 0
    for s in range(P):
        result[at : at + int(sizes[s])] = got[s, : int(sizes[s])]
        at += int(sizes[s])
    return result


def _all_to_all(values: np.ndarray, bounds: np.ndarray, mesh: Any, device: Any) -> list[np.ndarray]:
    """``values[bounds[d]:bounds[d + 1]]`` goes to process ``d``; returns what each
    process sent here (compact copies), by ``jax.lax.all_to_all`` over the mesh (every
    message padded to the longest)."""
    import jax

    P, pid = bounds.size - 1, jax.process_index()
    lengths = _allgather(np.diff(bounds).astype(np.int64))  # [from, to]
    box = _outbox(lengths, values.dtype)
    for d in range(P):
        box[0, d, : bounds[d + 1] - bounds[d]] = values[bounds[d] : bounds[d + 1]]
    got = _swap([box], lengths, mesh, device)
    return np.split(got, np.cumsum(lengths[:, pid])[:-1])


@functools.lru_cache(maxsize=8)
def _exchange(mesh: Any) -> Any:
    import jax
    from jax.sharding import PartitionSpec as Spec

    from .inference.sharding import AXIS

    def swap(x: Any) -> Any:
        return jax.lax.all_to_all(x, AXIS, 1, 1, tiled=True)

    return jax.jit(jax.shard_map(swap, mesh=mesh, in_specs=Spec(AXIS), out_specs=Spec(AXIS)))


def _shuffle(held: list[Any], mesh: Any, device: Any) -> tuple[Any, np.ndarray, np.ndarray]:
    """Send each label read here to its task's owner (all-to-all): per owner, the
    distinct task ids of its labels (Arrow IPC bytes) and, per label, the index of its
    task among them and its annotator-class key (two exchanges of one int32 per label,
    written straight into their outboxes, the inputs freed before either is sent).
    Returns this process's task ids and its labels' task codes and keys. ``held``: the
    task ids (pyarrow) and the keys of the labels read here, emptied."""
    import jax
    import pyarrow as pa
    import pyarrow.compute as pc

    from .inference.segments import stable_order
    from .parquet import owner

    P, pid = jax.process_count(), jax.process_index()
    task_col, wl = held
    held.clear()
    dest = owner(task_col, P)  # int32, hashed a slice at a time
    counts = np.bincount(dest, minlength=P).astype(np.int64)
    order = stable_order(dest, P, dtype=np.int32)  # the labels by owner, stably
    del dest
    bounds = np.concatenate([[0], np.cumsum(counts)])
    lengths = _allgather(counts)  # [from, to]: the same for both per-label exchanges
    # both outboxes are written before either is sent, so that the inputs and the order
    # are freed first: per label, its task's index among its owner's ids, and its key
    index_box = _outbox(lengths, np.int32)
    wl_box = _outbox(lengths, np.int32)
    dicts, dict_bounds = [], [0]
    for d in range(P):
        rows = order[bounds[d] : bounds[d + 1]]
        wl_box[0, d, : counts[d]] = wl[rows]
        taken = task_col.take(pa.array(rows))
        if isinstance(taken, pa.ChunkedArray):
            taken = taken.combine_chunks()
        enc = pc.dictionary_encode(taken)
        del taken
        index_box[0, d, : counts[d]] = np.asarray(enc.indices)
        dicts.append(_ipc_bytes(enc.dictionary))
        dict_bounds.append(dict_bounds[-1] + dicts[-1].size)
        del enc, rows
    del task_col, wl, order
    pa.default_memory_pool().release_unused()  # the task ids, the encodings' buffers
    parts = [
        _from_ipc(b)
        for b in _all_to_all(np.concatenate(dicts), np.asarray(dict_bounds), mesh, device)
    ]
    del dicts
    boxes = [wl_box, index_box]  # popped from the end: the index first
    del wl_box, index_box
    index = _swap(boxes, lengths, mesh, device)
    got_wl = _swap(boxes, lengths, mesh, device)
    union = pc.dictionary_encode(pa.concat_arrays([p.cast(parts[0].type) for p in parts]))
    where = np.asarray(union.indices, np.int32)
    offsets = np.cumsum([0] + [len(p) for p in parts])
    at = 0
    for s, n in enumerate(lengths[:, pid]):  # the sender's task index -> this process's
        index[at : at + int(n)] += np.int32(offsets[s])
        at += int(n)
    task = where[index]
    del index
    return union.dictionary, task, got_wl


def _ipc_bytes(values: Any) -> np.ndarray:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    table = pa.table({"v": values})
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return np.frombuffer(sink.getvalue(), np.uint8)


def _from_ipc(raw: np.ndarray) -> Any:
    import pyarrow as pa

    with pa.ipc.open_stream(pa.py_buffer(raw.tobytes())) as reader:
        return reader.read_all().column("v").combine_chunks()


def _blocked(
    task: np.ndarray,
    wl: np.ndarray,
    n_tasks: int,
    n_keys: int,
    max_width: int,
    place: Callable[[np.ndarray], Any],
) -> tuple[Any, Any]:
    """This process's :class:`~crowdbayes.inference.segments.Segments` layouts of its
    labels grouped by task (``task`` sorted; ``wl`` each label's annotator-label key):
    the gather layout (per-task sums of a ``[.., n_keys]`` table; None where a task was
    cut into chunks of ``max_width``) and the scatter one (per-key sums of a
    ``[.., n_tasks]`` source), as ``Segments.build`` lays them out, sharing one set of
    blocks. The block widths are chosen from every process's chunk sizes and each block
    is padded to the most rows any process has, so that the layouts of all processes
    share one structure; every array gets a leading process axis and is placed by
    ``place``."""
    import jax

    from .inference.segments import Segments, _chunks, choose_widths

    sizes = _chunks(bincount(task, minlength=n_tasks), max_width)[2]
    hist = _allgather(np.bincount(sizes, minlength=max_width + 1).astype(np.int64)).sum(0)
    widths = choose_widths(np.repeat(np.arange(hist.size), hist))  # a multiset function
    mine = np.bincount(np.searchsorted(widths, sizes), minlength=widths.size)
    rows = _allgather(mine.astype(np.int64)).max(0)
    blocks, row_keys, inverse = lean_layout(task, wl, n_tasks, n_keys, max_width, widths, rows)
    on = jax.tree_util.tree_map(lambda a: place(np.asarray(a)[None]), (blocks, row_keys, inverse))
    blocks, row_keys, inverse = on
    scatter = Segments(blocks, place(np.zeros((1, n_keys), np.int32)), None, row_keys)
    gather = None if inverse is None else Segments(blocks, inverse, None, None)
    return gather, scatter


def lean_layout(
    group: np.ndarray,
    values: np.ndarray,
    n_groups: int,
    pad: int,
    max_width: int,
    widths: np.ndarray,
    rows: np.ndarray,
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], np.ndarray | None]:
    """The blocks, row groups and inverse of ``Segments._layout(group, n_groups, values,
    pad, max_width, widths, rows)`` (which lays the items out a slice at a time, with
    int32 item arrays and the blocks ALIGN-aligned, so that placing them on a CPU
    device aliases them). ``inverse`` is None when some group was cut into chunks of
    ``max_width``."""
    from .inference.segments import Segments

    lay = Segments._layout(group, n_groups, values, pad, max_width, widths, rows)
    assert lay.row_keys is not None
    blocks = cast(tuple[np.ndarray, ...], lay.blocks)  # numpy: nothing is placed yet
    keys = cast(tuple[np.ndarray, ...], lay.row_keys)
    return blocks, keys, cast(np.ndarray, lay.inverse) if lay.inner is None else None


def _calibrate(
    est: Any, post: np.ndarray, votes: np.ndarray, n: np.ndarray, tau_em: np.ndarray
) -> np.ndarray:
    """``recommended()``'s reported posterior: EM's at temperature ``tau_em`` re-tempered
    to ``temperature * (n * (1 + (n - 1) * rho)) ** label_power``."""
    from .recommend import temper

    rho = est.label_correlation
    if rho is None:
        rho = _vote_correlation(votes, temper(post, 1.0 / tau_em[:, None]))
    n = np.maximum(n, 1).astype(np.float64)
    out_tau = float(est.temperature) * (n * (1.0 + (n - 1.0) * float(rho))) ** float(
        est.label_power
    )
    return temper(post, (out_tau / tau_em)[:, None])


def _vote_correlation(votes: np.ndarray, post: np.ndarray) -> float:
    """:func:`~crowdbayes.models.vote_correlation.vote_correlation` over every
    process's tasks. Its likelihood depends on the tasks only through each distinct vote
    row's summed posterior (and the class-by-label sums, linear in those), so each
    process sends its distinct rows with their summed posteriors (few: vote counts of
    small totals), and the merged rows, as pseudo-tasks whose posterior is that sum,
    give every process the one-process estimate."""
    from .models.vote_correlation import vote_correlation

    K = votes.shape[1]
    keep = votes.sum(axis=1) >= 2
    rows, inverse = np.unique(votes[keep], axis=0, return_inverse=True)
    resp = np.stack(
        [np.bincount(inverse.ravel(), post[keep, k], rows.shape[0]) for k in range(K)], 1
    ).reshape(rows.shape[0], K)
    n_rows = _allgather(np.asarray([rows.shape[0]], np.int64))[:, 0]
    width = max(int(n_rows.max()), 1)
    mine = np.zeros((width, 2 * K), np.float64)
    mine[: rows.shape[0], :K] = rows
    mine[: rows.shape[0], K:] = resp
    everyone = _allgather(mine)
    merged = np.concatenate([e[: int(n)] for e, n in zip(everyone, n_rows, strict=True)])
    if not merged.shape[0]:
        return 0.0
    all_rows, inv = np.unique(merged[:, :K], axis=0, return_inverse=True)
    all_resp = np.stack(
        [np.bincount(inv.ravel(), merged[:, K + k], all_rows.shape[0]) for k in range(K)], 1
    )
    return vote_correlation(all_rows, all_resp)


# ------------------------------------------------------------------ launcher
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clear_out(out: str | os.PathLike[str]) -> None:
    """Remove the parts and parameters of an earlier fit from the folder ``out`` (so that
    its parts are this fit's alone); other files are left."""
    folder = Path(out)
    if not folder.is_dir():
        return
    for path in [
        *folder.glob("part-*.parquet"),
        folder / "annotators.parquet",
        folder / "params.npz",
    ]:
        path.unlink(missing_ok=True)


def _describe(rc: int) -> str:
    if rc < 0:
        try:
            return f"was killed by signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    return f"exited with code {rc}"


def launch(
    num_processes: int,
    source: Any,
    out: str | os.PathLike[str],
    model: str = "ds",
    *,
    params: dict[str, Any] | None = None,
    task: str = "task",
    worker: str = "worker",
    label: str = "label",
    timeout: float = 3600.0,
    shuffle: bool | None = None,
    on_start: Callable[[list[int], int], None] | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run :func:`fit` in ``num_processes`` local processes (coordinator on 127.0.0.1,
    a free port) and wait for them; the parts land in ``out``. If one process fails
    (or ``timeout`` seconds pass) the others are stopped and a
    :class:`DistributedError` names it, with the end of its error output.
    ``shuffle`` is :func:`fit`'s. ``on_start`` is called with the processes' ids and the coordinator's port once
    they are started. Parts of an earlier fit in ``out`` are removed first."""
    num_processes = int(num_processes)
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    spec = {
        "source": [str(s) for s in source] if isinstance(source, (list, tuple)) else str(source),
        "out": str(out),
        "model": model,
        "params": params or {},
        "task": task,
        "worker": worker,
        "label": label,
        "shuffle": shuffle,
    }
    clear_out(out)
    port = free_port()
    base = dict(os.environ if env is None else env)
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    with tempfile.TemporaryDirectory(prefix="crowdbayes-dist-") as tmp:
        try:
            for i in range(num_processes):
                child_env = dict(base)
                child_env.update(
                    {
                        _ENV_COORD: f"127.0.0.1:{port}",
                        _ENV_N: str(num_processes),
                        _ENV_ID: str(i),
                    }
                )
                log = open(Path(tmp) / f"stderr-{i}.txt", "wb")
                logs.append(log)
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "crowdbayes.distributed", json.dumps(spec)],
                        env=child_env,
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                    )
                )
            if on_start is not None:
                on_start([p.pid for p in procs], port)
            failed = _wait(procs, timeout)
        finally:
            _stop(procs)
            for log in logs:
                log.close()
        if failed is not None:
            i, why = failed
            tail = (Path(tmp) / f"stderr-{i}.txt").read_text(errors="replace")
            lines = [ln for ln in tail.splitlines() if ln.strip()][-15:]
            raise DistributedError(
                f"process {i} of {num_processes} {why}; the other processes were stopped."
                + ("\nits last error output:\n" + "\n".join(lines) if lines else "")
            )


def _wait(procs: list[subprocess.Popen[bytes]], timeout: float) -> tuple[int, str] | None:
    """Wait until every process exits 0 (None) or the first fails or time runs out
    (its index and why)."""
    deadline = time.monotonic() + timeout
    while True:
        running = False
        for i, p in enumerate(procs):
            rc = p.poll()
            if rc is None:
                running = True
            elif rc != 0:
                return i, _describe(rc)
        if not running:
            return None
        if time.monotonic() > deadline:
            late = next(i for i, p in enumerate(procs) if p.poll() is None)
            return late, f"did not finish within {timeout:g} s"
        time.sleep(0.05)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Terminate the processes still running, kill those that ignore it, reap all."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + 5.0
    for p in procs:
        try:
            p.wait(max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _main(argv: Sequence[str]) -> int:
    spec = json.loads(argv[0])
    try:
        _fit_spec(spec)
    except (ValueError, OSError) as err:  # AnnotationsError is a ValueError
        print(f"crowdbayes: error: {err}", file=sys.stderr)
        return 2
    import jax

    if jax.distributed.is_initialized():
        jax.distributed.shutdown()
    return 0


def _fit_spec(spec: dict[str, Any]) -> None:
    fit(
        spec["source"],
        spec["model"],
        out=spec["out"],
        task=spec["task"],
        worker=spec["worker"],
        label=spec["label"],
        shuffle=spec.get("shuffle"),
        **spec["params"],
    )


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
