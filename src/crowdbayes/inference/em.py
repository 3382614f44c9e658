"""EM (MAP) for any model that gives per-task log-likelihoods and closed-form M-steps.

A model is a class of static functions (see :class:`EMModel`); arrays are
class-major (``[n_classes, n_tasks]``). The E-step adds the model's log class
prior to the per-task log-likelihood, clamps gold tasks to their class, and
normalises by log-sum-exp; the objective is the log joint of the labels with
the true classes marginalised, plus the model's log prior (MAP). The loop is
one jitted ``lax.while_loop``, compiled once per model and array shapes; it
runs in chunks only so that a progress bar can move between them.

*Shape buckets* (``em_data(..., devices=BUCKETS)``, what the estimators use for EM fits
of up to :data:`BUCKET_MAX_LABELS` labels): the labels are padded up the ladder 128,
512, 2048, ..., 2**17 (powers of four) and :data:`BUCKET_MAX_LABELS` (2**18, the top
rung), the tasks to the same size and the annotators up the ladder 8, 64, 512, ..., to
at least a 64th of the padded labels (:func:`bucket_sizes`), and laid out by
:class:`~crowdbayes.inference.segments.FlatSegments`, whose shapes depend only on the
padded sizes, so one compiled program per model and bucket serves every dataset in
it. Padding labels are summed nowhere; padding tasks have no labels, ``gold = -1`` and
``task_mask = 0`` (no posterior mass, no term in the objective or the class counts);
padding annotators have no labels. The objective leaves out the padding rows' prior
terms (:func:`padding_log_prior`) and :func:`run_em` cuts them off its results, so a
bucketed fit gives the exact fit's params, posterior and history to float rounding.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, cast, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from ..data import Annotations, bincount
from .segments import MAX_WIDTH, Segments

__all__ = [
    "BUCKETS",
    "BUCKET_MAX_LABELS",
    "MAX_PROGRAMS",
    "EMData",
    "EMModel",
    "EMResult",
    "bound_programs",
    "bucket_sizes",
    "e_step",
    "em_data",
    "is_bucketed",
    "pad_to",
    "padding_log_prior",
    "posterior",
    "run_em",
]

#: EM fits of up to this many labels run on shape-bucketed data (see the module doc):
#: their compilation dominates, and one program per bucket serves many datasets. Larger
#: fits keep the exact, blocked layouts (faster per label; compilation is a small share).
#: Between 2**17 and 2**18 labels a bucketed fit runs 2-3x slower per label than an exact
#: one (fact_eval's 216,725 labels, ``recommended()``: 0.14 s against 0.05-0.08 s for its
#: 13 iterations) but compiles in half the time or less (0.7-1.0 s against 1.2-2.6 s of
#: XLA, load ~2), so a first fit in a process is faster bucketed.
BUCKET_MAX_LABELS = 1 << 18
#: Compiled programs kept in memory per jitted function of crowdbayes: once one holds
#: this many (models x buckets x exact shapes), its cache is cleared before the next
#: EM fit, so a long process stays bounded (a cleared program compiles again, or comes
#: back from the persistent cache).
MAX_PROGRAMS = 32


def bound_programs() -> int:
    """Clear the cache of every jitted function of crowdbayes' modules that holds
    :data:`MAX_PROGRAMS` compiled programs or more (keyed on static arguments such as
    model families, and on shapes); returns how many were cleared. :func:`run_em` calls
    it before every fit. JAX's own caches behind them are LRU-bounded."""
    cleared = 0
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "crowdbayes" or name.startswith("crowdbayes.")):
            continue
        for value in list(vars(module).values()):
            if type(value).__name__ == "PjitFunction" and value._cache_size() >= MAX_PROGRAMS:
                value.clear_cache()
                cleared += 1
    if len(_programs) >= MAX_PROGRAMS:
        _programs.clear()
        cleared += 1
    return cleared


class _Buckets:
    """``devices=BUCKETS``: one device, labels, tasks and annotators padded to buckets;
    ``devices=pad_to(n_labels, n_tasks, n_workers)``: padded to those sizes instead."""

    def __init__(self, sizes: tuple[int, int, int] | None = None) -> None:
        self.sizes = sizes

    def __repr__(self) -> str:
        return "BUCKETS" if self.sizes is None else f"pad_to{self.sizes}"


BUCKETS: Any = _Buckets()


def pad_to(n_labels: int, n_tasks: int, n_workers: int) -> Any:
    """``devices=`` for :func:`em_data`: one device, padded to ``n_labels`` labels,
    ``n_tasks`` tasks and ``n_workers`` annotators (moved up by one where the task and
    annotator counts would meet each other or the class count, as in
    :func:`bucket_sizes`), so that fits of subsets of one dataset (the folds of
    :func:`~crowdbayes.compare`) share one compiled program where they would otherwise
    fit exact shapes."""
    return _Buckets((int(n_labels), int(n_tasks), int(n_workers)))


def _rung(n: int, minimum: int, step: int = 1) -> int:
    """The smallest power of ``2**step`` times ``minimum`` that is at least ``n``
    (``minimum`` a power of two)."""
    r = max(int(minimum), 1)
    while r < n:
        r <<= step
    return r


#: A padded annotator axis moves up by 8x (so most crowds share a rung) while the
#: annotators' ``[W, K, K]`` arrays stay under this many entries, by 2x above.
_COARSE_WORKER_ENTRIES = 1 << 20


def bucket_sizes(n_labels: int, n_tasks: int, n_workers: int, n_classes: int) -> tuple[int, ...]:
    """Padded ``(n_labels, n_tasks, n_workers, n_classes)`` of a bucket (classes are not
    padded). Labels go up by powers of four from 128 (128, 512, 2048, ..., 2**17; then
    :data:`BUCKET_MAX_LABELS`, 2**18, the top rung), so that datasets within 4x of each
    other in size mostly share a program; tasks are padded to the labels' size (a crowd has at most one
    task per label, so the task axis adds no rung of its own, and arrays over tasks cost
    no more than those over labels); annotators go up by 8x from 8 (by 2x where
    ``[W, K, K]`` arrays would grow large), to at least a 64th of the padded labels, so
    that the number of annotators rarely splits a label rung. The padded task and annotator counts differ from each other and from
    ``n_classes`` and ``n_classes - 1`` (the tasks, or the annotators for the classes, a
    rung up where they would meet), so that an axis of a params array is known by its
    length alone (:func:`run_em` cuts the padding off by it).

    >>> bucket_sizes(1000, 100, 20, 3), bucket_sizes(1900, 190, 60, 3)
    ((2048, 2048, 64, 3), (2048, 2048, 64, 3))
    >>> bucket_sizes(4212, 108, 39, 2), bucket_sizes(8000, 800, 164, 2)  # one program
    ((8192, 8192, 512, 2), (8192, 8192, 512, 2))
    >>> bucket_sizes(50, 10, 10, 2)   # tasks and annotators apart, 128 and 64
    (128, 128, 64, 2)
    >>> bucket_sizes(216725, 42624, 57, 3)[0]  # fact_eval: the top rung, 2**18
    262144
    """
    taken = {n_classes, n_classes - 1}
    N = _rung(n_labels, 128, 2)
    if n_labels <= BUCKET_MAX_LABELS < N:  # 2**18, the top rung (2**17 * 2)
        N = BUCKET_MAX_LABELS
    floor = max(int(n_workers), N >> 6)
    step = 3 if _rung(floor, 8, 3) * n_classes**2 <= _COARSE_WORKER_ENTRIES else 1
    W = _rung(floor, 8, step)
    while W in taken:
        W = _rung(W + 1, 8, step)
    T = _rung(max(n_tasks, N), 64)
    while T in taken or T == W:
        T = _rung(T + 1, 64)
    return N, T, W, int(n_classes)


class EMData(NamedTuple):
    """Kernel-side view of :class:`~crowdbayes.data.Annotations`.

    ``by_task`` sums a ``[K, n_workers * n_classes]`` table over each task's
    labels (key: ``worker * n_classes + label``); ``by_worker_label`` sums a
    ``[K, n_tasks]`` table over the labels of each (worker, label) pair (key:
    the task); ``by_task_label`` sums per-label values ``[K, n_labels]`` per task.
    """

    task: jnp.ndarray
    worker: jnp.ndarray
    label: jnp.ndarray
    gold: jnp.ndarray
    by_task: Segments
    by_worker_label: Segments
    by_task_label: Segments | None
    n_labels_per_worker: jnp.ndarray
    task_mask: jnp.ndarray | None = None  # [n_tasks]: 1 for real tasks, 0 for padding (sharded)
    task_temperature: jnp.ndarray | None = None  # [n_tasks]: tempered E-step (see e_step)
    pad_rows: jnp.ndarray | None = None  # [2]: padding annotators and tasks (shape buckets)


def is_bucketed(data: EMData) -> bool:
    """Whether ``data`` is padded to a shape bucket (``em_data(..., devices=BUCKETS)``)."""
    return data.pad_rows is not None


def em_data(
    ann: Annotations,
    n_workers: int | None = None,
    per_label: bool = False,
    devices: int | Sequence[Any] | None = None,
    task_temperature: np.ndarray | None = None,
) -> EMData:
    """Build the kernel arrays and segment layouts for ``ann`` (numpy, once per fit).

    ``n_workers`` may exceed ``ann.n_workers`` (for scoring with known workers);
    ``per_label`` adds ``by_task_label`` for models whose terms vary per label;
    ``devices`` (a list of JAX devices, or a count) shards the labels across devices;
    ``task_temperature`` (``[n_tasks]``, positive) tempers each task's E-step.
    ``devices=BUCKETS`` pads everything to a shape bucket (see the module doc)."""
    if task_temperature is not None:
        task_temperature = np.asarray(task_temperature, dtype=np.float32).reshape(-1)
        if task_temperature.shape != (ann.n_tasks,) or not (task_temperature > 0).all():
            raise ValueError(f"task_temperature must be {ann.n_tasks} positive numbers")
    if isinstance(devices, _Buckets):
        return _bucketed_em_data(ann, n_workers, per_label, task_temperature, devices.sizes)
    if devices is not None:
        from .sharding import sharded_em_fields

        fields = sharded_em_fields(
            ann,
            devices,
            n_workers=n_workers,
            per_label=per_label,
            task_temperature=task_temperature,
        )
        return EMData(**fields)
    W = ann.n_workers if n_workers is None else n_workers
    L = ann.n_classes
    wl = _worker_label(ann, W)
    # jax.device_put, not jnp.asarray: a plain transfer compiles nothing (jnp.asarray of a
    # numpy array compiles a small program per shape, which a fresh process pays for).
    # On the CPU it aliases Annotations' (aligned) arrays rather than copying them.
    put = jax.device_put
    by_task, by_worker_label = _label_layouts(ann.task, ann.n_tasks, wl, W * L)
    del wl
    return EMData(
        task=put(ann.task),
        worker=put(ann.worker),
        label=put(ann.label),
        gold=put(ann.gold),
        by_task=by_task,
        by_worker_label=by_worker_label,
        by_task_label=Segments.build(ann.task, ann.n_tasks) if per_label else None,
        n_labels_per_worker=put(bincount(ann.worker, minlength=W)),
        task_temperature=None if task_temperature is None else put(task_temperature),
    )


def _worker_label(ann: Annotations, n_workers: int) -> np.ndarray:
    """Each label's (annotator, label) key ``worker * n_classes + label``: int32 where
    the keys fit (half the memory of int64), built in place."""
    L = ann.n_classes
    dtype = np.int32 if n_workers * L < 2**31 else np.int64
    wl: np.ndarray[Any, np.dtype[np.signedinteger[Any]]] = ann.worker.astype(dtype)  # a copy
    wl *= L
    wl += ann.label
    return wl


def _label_layouts(
    task: np.ndarray, n_tasks: int, wl: np.ndarray, n_keys: int
) -> tuple[Segments, Segments]:
    """``by_task`` and ``by_worker_label`` of :class:`EMData`: ``Segments.build(task,
    n_tasks, keys=wl, n_keys=n_keys)`` and ``Segments.build(wl, n_keys, keys=task,
    n_keys=n_tasks)``. Where the first is a gather layout and the second a scatter one
    (the usual case: many tasks, a few thousand keys) both lay the labels out by task
    with the same blocks, so they are built once and share their device arrays."""
    gather = not (n_tasks <= 1 << 16 and n_keys > n_tasks)  # as Segments.build chooses
    scatter = n_keys <= 1 << 16 and n_tasks > n_keys
    if not (gather and scatter):
        return (
            Segments.build(task, n_tasks, keys=wl, n_keys=n_keys),
            Segments.build(wl, n_keys, keys=task, n_keys=n_tasks),
        )
    lay = Segments._layout(task, n_tasks, wl, n_keys, MAX_WIDTH)
    lay = jax.tree_util.tree_map(jax.device_put, lay)  # compiles nothing
    assert lay.row_keys is not None
    by_task = lay._replace(row_keys=None)
    by_key = Segments(lay.blocks, jax.device_put(np.zeros(n_keys, np.int32)), None, lay.row_keys)
    return by_task, by_key


def _bucketed_em_data(
    ann: Annotations,
    n_workers: int | None,
    per_label: bool,
    task_temperature: np.ndarray | None,
    sizes: tuple[int, int, int] | None = None,
) -> EMData:
    """:func:`em_data` padded to the bucket of :func:`bucket_sizes`, or to ``sizes``
    (:func:`pad_to`; numpy, then one transfer per array: nothing compiles)."""
    from .segments import FlatSegments

    W = ann.n_workers if n_workers is None else n_workers
    N, T, L = ann.n_labels, ann.n_tasks, ann.n_classes
    if sizes is None:
        N_pad, T_pad, W_pad, _ = bucket_sizes(N, T, W, L)
    else:
        N_pad, T_pad, W_pad = sizes
        if N_pad < N or T_pad < T or W_pad < W:
            raise ValueError(
                f"pad_to{sizes} is smaller than the data ({N} labels, {T} tasks, {W} annotators)"
            )
        taken = {L, L - 1}
        while W_pad in taken:
            W_pad += 1
        while T_pad in taken or T_pad == W_pad:
            T_pad += 1
    put = jax.device_put
    wl = ann.worker.astype(np.int64) * L + ann.label

    def labels(values: np.ndarray) -> jax.Array:  # padding labels: task, worker, label 0
        out = np.zeros(N_pad, np.int32)
        out[:N] = values
        return put(out)

    def tasks(values: np.ndarray, fill: float, dtype: Any) -> jax.Array:
        out = np.full(T_pad, fill, dtype)
        out[:T] = values
        return put(out)

    by_label = FlatSegments.build(ann.task, T_pad, n_items=N_pad) if per_label else None
    return EMData(
        task=labels(ann.task),
        worker=labels(ann.worker),
        label=labels(ann.label),
        gold=tasks(ann.gold, -1, np.int32),
        by_task=cast(
            Segments,
            FlatSegments.build(ann.task, T_pad, keys=wl, n_keys=W_pad * L, n_items=N_pad),
        ),
        by_worker_label=cast(
            Segments,
            FlatSegments.build(wl, W_pad * L, keys=ann.task, n_keys=T_pad, n_items=N_pad),
        ),
        by_task_label=cast(Segments | None, by_label),
        n_labels_per_worker=put(np.bincount(ann.worker, minlength=W_pad).astype(np.int32)),
        task_mask=tasks(np.ones(T, np.float32), 0.0, np.float32),
        task_temperature=None
        if task_temperature is None
        else tasks(task_temperature, 1.0, np.float32),
        pad_rows=put(np.asarray([W_pad - W, T_pad - T], np.float32)),
    )


class EMModel(Protocol):
    """What a model family provides to EM (static functions; params are pytrees)."""

    @staticmethod
    def log_lik(params: Any, data: EMData) -> jnp.ndarray:
        """``[K, n_tasks]``: sum over each task's labels of log p(label | class k)."""
        ...

    @staticmethod
    def log_class_prior(params: Any, data: EMData) -> jnp.ndarray:
        """``[K, 1]`` or ``[K, n_tasks]``: log p(class k) for each task."""
        ...

    @staticmethod
    def m_step(post: jnp.ndarray, data: EMData, hyper: Any) -> Any:
        """New params from the posterior ``[K, n_tasks]`` (MAP under the prior)."""
        ...

    @staticmethod
    def log_prior(params: Any, hyper: Any) -> jnp.ndarray:
        """Log prior density of params (up to a constant)."""
        ...


def e_step(model: Any, params: Any, data: EMData) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Posterior over classes ``[K, n_tasks]`` (gold clamped) and per-task log joint.

    With ``data.task_temperature`` (``tau``, one per task) the posterior is the
    tempered one, ``q(k) ∝ p(labels, k) ** (1 / tau)``, and the task's term is
    ``tau * log sum_k p(labels, k) ** (1 / tau)``: the free energy that deterministic
    annealing EM (Ueda & Nakano, 1998) maximises, so EM's objective still never falls.
    """
    joint = model.log_lik(params, data) + model.log_class_prior(params, data)
    tau = data.task_temperature
    if tau is not None:
        joint = joint / tau[None, :]
    if joint.shape[0] > ROW_CLASSES or data.pad_rows is not None:
        post, task_lp = _normalise(joint, data.gold)
    else:
        post, task_lp = _normalise_rows(joint, data.gold)
    if tau is not None:
        task_lp = task_lp * tau
    if data.task_mask is not None:  # padding tasks (sharded, bucketed) count for nothing
        post = post * data.task_mask[None, :]
        task_lp = task_lp * data.task_mask
    return post, task_lp


#: Up to this many classes the E-step of an exact-shape fit runs class by class
#: (unrolled: faster per label); above, and on shape-bucketed data (small fits, where
#: the compile dominates and the unrolled rows compile slower), on the whole
#: ``[K, n_tasks]`` array, so that compile time does not grow with ``K``.
ROW_CLASSES = 8


def _normalise(joint: jnp.ndarray, gold: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Posterior (gold clamped) and per-task log-sum-exp of ``joint`` ``[K, n_tasks]``."""
    top = jax.lax.stop_gradient(joint.max(axis=0))
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    shifted = jnp.exp(joint - top[None, :])
    total = shifted.sum(axis=0)
    lse = jnp.log(total) + top
    known = gold >= 0
    is_gold = gold[None, :] == jnp.arange(joint.shape[0], dtype=gold.dtype)[:, None]
    gold_lp = jnp.where(is_gold, joint, 0.0).sum(axis=0)
    task_lp = jnp.where(known, gold_lp, lse)
    post = jnp.where(known[None, :], is_gold.astype(joint.dtype), shifted / total[None, :])
    return post, task_lp


def _normalise_rows(joint: jnp.ndarray, gold: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """:func:`_normalise` class by class (K is small): XLA's CPU reductions over the class
    axis, its gathers and one_hot cost several times more than these elementwise ops on
    ``[n_tasks]`` rows."""
    rows = [joint[k] for k in range(joint.shape[0])]
    top = jax.lax.stop_gradient(functools.reduce(jnp.maximum, rows))
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    shifted = [jnp.exp(r - top) for r in rows]
    total = functools.reduce(jnp.add, shifted)
    lse = jnp.log(total) + top
    known = gold >= 0
    is_gold = [gold == k for k in range(len(rows))]
    gold_lp = functools.reduce(
        jnp.add, [jnp.where(g, r, 0.0) for g, r in zip(is_gold, rows, strict=True)]
    )
    task_lp = jnp.where(known, gold_lp, lse)
    post = jnp.stack(
        [
            jnp.where(known, g.astype(joint.dtype), e / total)
            for g, e in zip(is_gold, shifted, strict=True)
        ]
    )
    return post, task_lp


class _State(NamedTuple):
    params: Any
    post: jnp.ndarray
    objective: jnp.ndarray
    gain: jnp.ndarray
    n_iter: jnp.ndarray
    history: jnp.ndarray
    #: the family's ``confusion(params)`` at the end of a chunk (None inside the loop and
    #: in a chunk's input): computed by the EM program itself, so that a fit compiles
    #: one program, not a second one for its confusion matrices
    confusion: Any = None


def initial_state(
    shapes: Any, post0: jax.Array, history0: jax.Array, put: Callable[[Any], jax.Array]
) -> _State:
    """The EM loop's first state: params of ``shapes`` (zeros; the loop starts with an
    M-step), the initial posterior, no objective or gain yet, iteration 0, ``history0``;
    ``put`` places each host array (one device, or replicated over a mesh)."""
    params0 = jax.tree_util.tree_map(lambda s: put(np.zeros(s.shape, s.dtype)), shapes)
    return _State(
        params0,
        post0,
        put(np.float32(-np.inf)),
        put(np.float32(np.inf)),
        put(np.int32(0)),
        history0,
    )


def _rows(params: Any, sizes: dict[int, slice]) -> Any:
    """``params`` with every axis whose length is a key of ``sizes`` sliced by its value."""

    def cut(x: jnp.ndarray) -> jnp.ndarray:
        return x[tuple(sizes.get(int(n), slice(None)) for n in x.shape)]

    return jax.tree_util.tree_map(cut, params)


def padding_log_prior(model: Any, params: Any, data: EMData, hyper: Any) -> jnp.ndarray:
    """The padding annotators' and tasks' share of ``model.log_prior(params, hyper)`` on
    bucketed ``data`` (0 otherwise), which the objective leaves out.

    A family's log prior is a sum of terms per annotator and per task plus shared ones,
    and the padding rows (no labels) all hold the same params; so their share is the
    count of padding rows times the term of one row: the log prior of the params cut to
    the last row minus that cut to no row (the other rows cut to none in both: small
    numbers, no cancellation)."""
    if data.pad_rows is None:
        return jnp.zeros((), jnp.float32)
    W, T = data.n_labels_per_worker.shape[0], data.gold.shape[0]
    none, last = slice(0, 0), slice(-1, None)
    base = model.log_prior(_rows(params, {W: none, T: none}), hyper)
    worker = model.log_prior(_rows(params, {W: last, T: none}), hyper) - base
    task = model.log_prior(_rows(params, {W: none, T: last}), hyper) - base
    return data.pad_rows[0] * worker + data.pad_rows[1] * task


@runtime_checkable
class WarmStarted(Protocol):
    """A family whose M-step is iterative and continues from the last params (declared by
    providing ``m_step_from``): EM calls it instead of ``m_step``, with ``first`` true on
    its first step (when the params are the loop's zeros, not a fit)."""

    @staticmethod
    def m_step_from(
        post: jnp.ndarray, data: EMData, hyper: Any, params: Any, first: jnp.ndarray
    ) -> Any:
        """New params from the posterior, the M-step's iterations started from ``params``."""
        ...


def _em_step(model: Any, state: _State, data: EMData, hyper: Any) -> _State:
    if isinstance(model, WarmStarted):
        params = model.m_step_from(state.post, data, hyper, state.params, state.n_iter == 0)
    else:
        params = model.m_step(state.post, data, hyper)
    post, task_lp = e_step(model, params, data)
    objective = task_lp.sum() + model.log_prior(params, hyper)
    if data.pad_rows is not None:
        objective = objective - padding_log_prior(model, params, data, hyper)
    history = state.history.at[state.n_iter].set(objective)
    return _State(params, post, objective, objective - state.objective, state.n_iter + 1, history)


def em_running(n_iter: Any, gain: Any, n_labels: Any, tol: Any) -> Any:
    """Whether EM goes on after ``n_iter`` iterations whose last changed the objective by
    ``gain`` (traced in the loop, or host numbers after it: ``converged`` is its negation).
    ``|gain|``: an objective that falls is no convergence (an inexact M-step, e.g.
    HierarchicalDawidSkene's Newton steps, ran off; EM goes on from there)."""
    return (n_iter < 2) | (abs(gain) / n_labels >= tol) | (tol <= 0)


def _em_chunk(
    model: Any, state: _State, data: EMData, hyper: Any, stop_at: jnp.ndarray, tol: jnp.ndarray
) -> _State:
    n_labels = data.n_labels_per_worker.sum()

    def cond(s: _State) -> jnp.ndarray:
        return (s.n_iter < stop_at) & em_running(s.n_iter, s.gain, n_labels, tol)

    out = jax.lax.while_loop(
        cond, lambda s: _em_step(model, s, data, hyper), state._replace(confusion=None)
    )
    confusion = getattr(model, "confusion", None)
    return out if confusion is None else out._replace(confusion=confusion(out.params))


_em_chunk_jit: Callable[..., _State] = jax.jit(_em_chunk, static_argnums=0)
_e_step_jit = jax.jit(e_step, static_argnums=0)

#: Compiled EM loops by :func:`_program_key` (with crowdbayes' persistent cache on):
#: a process that saw a bucket before, or read its program from the cache, neither
#: traces nor lowers it again. Cleared by :func:`bound_programs` at MAX_PROGRAMS.
_programs: dict[str, Any] = {}


def _program_key(model: Any, args: Any) -> str | None:
    """A key naming the EM loop compiled for ``model`` and ``args`` (everything but the
    params, which follow from them): the family, the arguments' structure, shapes and
    dtypes and :func:`~crowdbayes._compile_cache.code_tag`; None where the program
    cannot be saved (no crowdbayes cache, a family defined inside a function, arrays on
    several devices)."""
    from .. import _compile_cache

    if _compile_cache.program_dir() is None or "<locals>" in model.__qualname__:
        return None
    leaves, tree = jax.tree_util.tree_flatten(args)
    parts = [model.__module__, model.__qualname__, str(tree)]
    parts.append(_compile_cache.code_tag(model.__module__))
    for x in leaves:
        if isinstance(x, jax.Array) and len(x.sharding.device_set) != 1:
            return None
        parts.append(str(jax.typeof(x)))
    import hashlib

    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _saved_em_chunk(key: str) -> Any | None:
    """The EM loop compiled for ``key``, held in this process or read from crowdbayes'
    cache (a jax.monitoring event either way, for tests), or None."""
    from .. import _compile_cache

    compiled = _programs.get(key)
    if compiled is None:
        compiled = _compile_cache.load_program(key)
        if compiled is None:
            jax.monitoring.record_event(_compile_cache.PROGRAM_MISS)
            return None
        jax.monitoring.record_event(_compile_cache.PROGRAM_HIT)
        _programs[key] = compiled
    return compiled


def _drop_em_chunk(key: str) -> None:
    """Forget the EM loop saved under ``key``, in this process and in crowdbayes' cache."""
    from .. import _compile_cache

    _programs.pop(key, None)
    _compile_cache.drop_program(key)
    jax.monitoring.record_event(_compile_cache.PROGRAM_DROPPED)


def _compile_em_chunk(model: Any, key: str, state: _State, data: EMData, hyper: Any) -> Any:
    """Compile the EM loop for ``key`` (``state`` only needs the right shapes), keep it
    in this process and save it in crowdbayes' cache."""
    from .. import _compile_cache

    stop, tol = jax.ShapeDtypeStruct((), jnp.int32), jax.ShapeDtypeStruct((), jnp.float32)
    lowered = cast(Any, _em_chunk_jit).lower(model, state, data, hyper, stop, tol)
    compiled, fresh = _compile_cache.compile_fresh(lowered)
    if fresh:  # one JAX read back from its own cache stays in JAX's (see compile_fresh)
        _compile_cache.save_program(key, compiled)
    _programs[key] = compiled
    return compiled


class EMResult(NamedTuple):
    params: Any
    post: np.ndarray  # [n_tasks, K], task-major for the user side
    history: np.ndarray
    n_iter: int
    converged: bool
    padded_params: Any = None  # bucketed fits: params before the padding is cut off
    confusion: np.ndarray | None = None  # the family's confusion(params), padded rows kept


def run_em(
    model: Any,
    data: EMData,
    init_post: np.ndarray,
    hyper: Any,
    *,
    max_iter: int = 100,
    tol: float = 1e-6,
    progress: bool = False,
    chunk: int = 5,
) -> EMResult:
    """Iterate M- and E-steps from ``init_post`` (``[n_tasks, K]``) until the gain of
    the log-posterior per label is below ``tol`` or ``max_iter`` steps (``tol <= 0``
    runs exactly ``max_iter`` steps, as benchmarks want).

    Returns the final params, the posterior, the objective history, the number of
    iterations and whether the tolerance was met.
    """
    n_tasks = init_post.shape[0]
    # the initial state is built in numpy and transferred: eager jnp calls here would each
    # compile a small program in a fresh process
    put = jax.device_put
    post0 = place_posterior(data, init_post)
    history0 = put(np.full((max(max_iter, 1),), np.nan, np.float32))
    bound_programs()
    # with crowdbayes' cache, the compiled loop is looked up by a key of its arguments
    # (no tracing or lowering where it was compiled before, in this process or another)
    key = _program_key(model, (post0, data, hyper, history0))
    compiled = _saved_em_chunk(key) if key is not None else None
    if compiled is not None:  # the params' shapes are the program's
        shapes = compiled.args_info[0][0].params
    else:  # the loop starts with an M-step, so params only need the right structure here
        shapes = jax.eval_shape(model.m_step, post0, data, hyper)
    state = initial_state(shapes, post0, history0, put)
    tol_arr = put(np.float32(tol))
    if key is not None:
        read_back = compiled is not None
        program: Any = (
            compiled if compiled is not None else _compile_em_chunk(model, key, state, data, hyper)
        )

        def advance(state: _State, stop_at: jax.Array) -> _State:
            nonlocal program, read_back
            try:
                out: _State = program(state, data, hyper, stop_at, tol_arr)
            except jax.errors.JaxRuntimeError:
                if not read_back:
                    raise
                # a program read back from the cache that does not run (seen once under
                # load: "NOT_FOUND: Function broadcast_compare_fusion not found"): dropped,
                # compiled here and run again (no state is donated, so state is intact)
                _drop_em_chunk(cast(str, key))
                program = _compile_em_chunk(model, cast(str, key), state, data, hyper)
                read_back = False
                out = program(state, data, hyper, stop_at, tol_arr)
            return out
    else:

        def advance(state: _State, stop_at: jax.Array) -> _State:
            return _em_chunk_jit(model, state, data, hyper, stop_at, tol_arr)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_iter, desc=f"EM {getattr(model, '__name__', 'model')}", unit="it")
    step = chunk if progress else max_iter
    done = 0
    while True:
        stop_at = put(np.int32(min(done + step, max_iter)))
        state = advance(state._replace(confusion=None), stop_at)  # a chunk's input has none
        n_iter = int(state.n_iter)
        if bar is not None:
            bar.update(n_iter - done)
        finished = n_iter < int(stop_at) or n_iter >= max_iter
        done = n_iter
        if finished:
            break
    if bar is not None:
        bar.close()
    n_labels = int(np.asarray(data.n_labels_per_worker).sum())
    gain = float(state.gain)
    converged = not em_running(n_iter, gain, n_labels, tol)
    params = padded = state.params
    if data.pad_rows is not None:  # cut the padding annotators and tasks off
        W_pad, T_pad = data.n_labels_per_worker.shape[0], data.gold.shape[0]
        W = W_pad - int(np.asarray(data.pad_rows)[0])
        sizes = {W_pad: slice(0, W), T_pad: slice(0, n_tasks)}
        params = jax.tree_util.tree_map(
            lambda x: put(np.asarray(x)[tuple(sizes.get(n, slice(None)) for n in x.shape)]),
            params,
        )
    return EMResult(
        params=params,
        post=np.asarray(state.post, dtype=np.float64)[:, :n_tasks].T,
        history=np.asarray(state.history, dtype=np.float64)[:n_iter],  # numpy: no slice program
        n_iter=n_iter,
        converged=bool(converged),
        padded_params=padded if data.pad_rows is not None else None,
        confusion=None if state.confusion is None else np.asarray(state.confusion, np.float64),
    )


def posterior(model: Any, params: Any, data: EMData) -> np.ndarray:
    """E-step only: the class posterior ``[n_tasks, K]`` under fixed params."""
    post, _ = _e_step_jit(model, params, data)
    out = np.asarray(post, dtype=np.float64)
    if data.task_mask is not None:
        out = out[:, : int(np.asarray(data.task_mask).sum())]
    return out.T


def place_posterior(data: EMData, post: np.ndarray) -> jax.Array:
    """A class posterior ``[n_tasks, K]`` as EM holds it: class-major ``[K, tasks]``
    float32, padded and sharded like ``data``'s tasks where they are (sharded or
    shape-bucketed ``data``: :func:`~crowdbayes.inference.sharding.place_tasks`)."""
    post_km = np.asarray(post.T, dtype=np.float32)
    if data.task_mask is None:
        return jax.device_put(post_km)
    from .sharding import place_tasks

    return place_tasks(data, post_km)


def layout_segments(
    data: EMData, ann: Annotations, seg_ids: np.ndarray, n_segments: int
) -> Segments:
    """Per-segment sums of per-label values (``seg_ids``: one per label of ``ann``, in
    its order) laid out like ``data``'s labels: ``Segments.build(seg_ids, n_segments)``
    for exact one-device ``data``, sharded or shape-bucketed like its labels otherwise
    (:func:`~crowdbayes.inference.sharding.label_segments`)."""
    if data.task_mask is None:
        return Segments.build(seg_ids, n_segments)
    from .sharding import label_segments

    return label_segments(data, ann, seg_ids, n_segments)
