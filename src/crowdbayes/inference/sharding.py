"""Multi-device EM: the label arrays sharded across JAX devices.

Tasks are split into ``D`` contiguous ranges of equal size (the last padded with
empty tasks, masked out of every sum), and each label goes to the device that
holds its task. Each device lays out its own labels with :class:`Segments`
(every device with the same block structure, so that the layouts stack into
arrays with a leading device axis). Inside the jitted EM loop a segment sum is a
``jax.shard_map``: per-task sums (E-step) stay on the device of their tasks;
per-annotator sums (M-step sufficient statistics) are summed on each device over
its labels and combined by ``psum``. Everything else (log-sum-exp over classes,
class counts, the objective) is ordinary ``jax.numpy`` on arrays sharded along
tasks, which XLA partitions by itself.

The same code runs on one CPU, on several GPUs, and across hosts started with
``jax.distributed.initialize()`` (every process encodes the same annotations;
each places only the shards of its own devices). On a CPU, several host devices
come from ``XLA_FLAGS=--xla_force_host_platform_device_count=N``, set before JAX
starts.

>>> import jax, crowdbayes as cb
>>> annotations, gold = cb.datasets.load("rte")
>>> one = cb.DawidSkene().fit(annotations)
>>> many = cb.DawidSkene(devices=jax.devices()).fit(annotations)
>>> bool((one.predict() == many.predict()).all())
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..data import Annotations
from .segments import MAX_WIDTH, Segments, ShapeOfSegments, _chunks, choose_widths, stable_order

__all__ = [
    "AXIS",
    "ShardedSegments",
    "label_segments",
    "place_tasks",
    "resolve_devices",
    "sharded_em_fields",
]

AXIS = "shards"


def resolve_devices(devices: int | Sequence[Any]) -> list[Any]:
    """A device list from ``devices``: a count (the first ``n`` of ``jax.devices()``)
    or a list of JAX devices."""
    if isinstance(devices, int | np.integer):
        available = jax.devices()
        if not 1 <= int(devices) <= len(available):
            raise ValueError(
                f"devices={int(devices)} but JAX sees {len(available)} device(s); on a CPU set "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N before importing jax"
            )
        return list(available[: int(devices)])
    out = list(devices)
    if not out:
        raise ValueError("devices is an empty list")
    return out


@jax.tree_util.register_pytree_node_class
class ShardedSegments(ShapeOfSegments):
    """Per-device :class:`Segments` stacked along a leading device axis.

    ``sum`` takes a global source and returns the global segment sums: sharded
    along segments (tasks) for per-task layouts, replicated (``psum``) for the
    per-annotator scatter layouts.
    """

    def __init__(
        self,
        local: Segments,
        mesh: Mesh,
        n_segments: int,
        source_sharded: bool,
        out_sharded: bool,
    ) -> None:
        self.local = local
        self.mesh = mesh
        self.n_segments = n_segments
        self.source_sharded = source_sharded
        self.out_sharded = out_sharded

    def tree_flatten(self) -> tuple[tuple[Segments], tuple[Any, ...]]:
        return (self.local,), (self.mesh, self.n_segments, self.source_sharded, self.out_sharded)

    @classmethod
    def tree_unflatten(cls, aux: tuple[Any, ...], children: tuple[Segments]) -> ShardedSegments:
        return cls(children[0], *aux)

    def sum(self, source: jnp.ndarray) -> jnp.ndarray:
        """Per-segment sums of ``source[..., index]`` over all devices' items."""
        lead = (None,) * (source.ndim - 1)
        src_spec = PartitionSpec(*lead, AXIS) if self.source_sharded else PartitionSpec()
        out_spec = PartitionSpec(*lead, AXIS) if self.out_sharded else PartitionSpec()
        out_sharded = self.out_sharded

        def local_sum(src: jnp.ndarray, layout: Segments) -> jnp.ndarray:
            mine = jax.tree_util.tree_map(lambda a: a[0], layout)
            out = mine.sum(src)
            return out if out_sharded else jax.lax.psum(out, AXIS)

        fn = jax.shard_map(
            local_sum,
            mesh=self.mesh,
            in_specs=(src_spec, PartitionSpec(AXIS)),
            out_specs=out_spec,
        )
        return fn(source, self.local)


def _place(mesh: Mesh, array: np.ndarray, sharded: bool) -> jax.Array:
    """Put ``array`` on the mesh, split along its first axis (or replicated); each
    process fills only its own devices' shards (multi-host safe)."""
    spec = PartitionSpec(AXIS) if sharded else PartitionSpec()
    return jax.make_array_from_callback(
        array.shape, NamedSharding(mesh, spec), lambda index: array[index]
    )


def _stack(
    mesh: Mesh,
    per_device: list[tuple[np.ndarray, np.ndarray, int, int]],
    max_width: int,
    scatter: bool,
) -> Segments:
    """One layout per device (``(seg_ids, keys, n_segments, n_keys)``), all with the same
    widths and rows per block, stacked and placed on the mesh."""
    # in the scatter layout items are grouped by key: swap the roles
    groups = [(k if scatter else s, n_k if scatter else n_s) for s, k, n_s, n_k in per_device]
    counts = [np.bincount(g, minlength=n) for g, n in groups]
    sizes = [_chunks(c, max_width)[2] for c in counts]
    widths = choose_widths(np.concatenate(sizes))
    rows = np.max(
        [np.bincount(np.searchsorted(widths, z), minlength=widths.size) for z in sizes], 0
    )
    layouts = []
    for s, k, n_s, n_k in per_device:
        if scatter:
            lay = Segments._layout(k, n_k, s, n_s, max_width, widths, rows)
            lay = Segments(lay.blocks, np.zeros(n_s, np.int32), None, lay.row_keys)
        else:
            lay = Segments._layout(s, n_s, k, n_k, max_width, widths, rows)
            lay = lay._replace(row_keys=None)
        assert lay.inner is None
        layouts.append(lay)
    return jax.tree_util.tree_map(lambda *parts: _place(mesh, np.stack(parts), True), *layouts)


def _split_labels(ann: Annotations, D: int) -> tuple[int, list[np.ndarray], int]:
    """Tasks per device, the labels (indices into ``ann``, in order) each device holds,
    and the labels per device after padding."""
    T_local = -(-ann.n_tasks // D)
    shard = ann.task.astype(np.int64) // T_local
    order = stable_order(shard, D)
    n_per = np.bincount(shard, minlength=D)
    starts = np.cumsum(n_per) - n_per
    idx = [order[starts[d] : starts[d] + n_per[d]] for d in range(D)]
    return T_local, idx, max(int(n_per.max()), 1)


def label_segments(data: Any, ann: Annotations, seg_ids: np.ndarray, n_segments: int) -> Segments:
    """Per-segment sums of per-label values laid out like ``data``'s labels (``data``
    from :func:`sharded_em_fields` for ``ann``), replicated on every device (``psum``):
    the sharded ``Segments.build(seg_ids, n_segments)``, ``seg_ids`` one per label of
    ``ann`` in its order. Padding labels are summed nowhere.

    For shape-bucketed ``data`` (:data:`~crowdbayes.inference.em.BUCKETS`) the layout
    is bucketed too (:class:`~crowdbayes.inference.segments.FlatSegments` over its
    padded labels), and per-annotator or per-task sums (``seg_ids`` being ``ann.worker``
    or ``ann.task``, or ``n_segments`` the number of annotators or tasks) have the padded
    number of segments."""
    if data.pad_rows is not None:
        from .segments import FlatSegments

        W_pad, T_pad = int(data.n_labels_per_worker.shape[0]), int(data.gold.shape[0])
        if seg_ids is ann.worker or (seg_ids is not ann.task and n_segments == ann.n_workers):
            n_segments = W_pad
        elif seg_ids is ann.task or n_segments == ann.n_tasks:
            n_segments = T_pad
        flat = FlatSegments.build(seg_ids, n_segments, n_items=int(data.task.shape[0]))
        return cast(Segments, flat)
    seg: ShardedSegments = data.by_task
    mesh = seg.mesh
    _, idx, N_local = _split_labels(ann, mesh.size)
    seg_ids = np.asarray(seg_ids, dtype=np.int64)
    stacked = _stack(
        mesh,
        [(seg_ids[i], np.arange(i.size), n_segments, N_local) for i in idx],
        MAX_WIDTH,
        True,
    )
    return cast(Segments, ShardedSegments(stacked, mesh, n_segments, True, False))


def sharded_em_fields(
    ann: Annotations,
    devices: int | Sequence[Any],
    n_workers: int | None = None,
    per_label: bool = False,
    task_temperature: np.ndarray | None = None,
) -> dict[str, Any]:
    """The fields of :class:`~crowdbayes.inference.em.EMData` with the labels split
    across ``devices`` (``em_data(..., devices=...)`` builds it from them; this module
    does not import ``em``, so the two import no cycle).

    Task-level arrays (``gold``, ``task_mask``, ``task_temperature``, the posterior)
    have ``D * ceil(T / D)`` entries, sharded along tasks; per-label arrays have ``D * max_labels_per_device``
    entries (padding labels are never summed); ``task`` keeps global task codes."""
    devs = resolve_devices(devices)
    D = len(devs)
    mesh = Mesh(np.asarray(devs, dtype=object), (AXIS,))
    W = ann.n_workers if n_workers is None else n_workers
    L, T = ann.n_classes, ann.n_tasks
    task = ann.task.astype(np.int64)
    wl = (ann.worker.astype(np.int64) * L + ann.label).astype(np.int32)
    T_local, idx, N_local = _split_labels(ann, D)
    local_task = [(task[i] - d * T_local).astype(np.int32) for d, i in enumerate(idx)]
    # per-task layouts are never chunked, so every device has the same (flat) structure
    top = max(int(np.bincount(ann.task).max()), 2)
    by_task = _stack(
        mesh,
        [(lt, wl[i], T_local, W * L) for lt, i in zip(local_task, idx, strict=True)],
        top,
        False,
    )
    by_wl = _stack(
        mesh,
        [(wl[i], lt, W * L, T_local) for lt, i in zip(local_task, idx, strict=True)],
        MAX_WIDTH,
        True,
    )
    by_label = None
    if per_label:
        stacked = _stack(
            mesh,
            [(lt, np.arange(lt.size), T_local, N_local) for lt in local_task],
            top,
            False,
        )
        by_label = cast(Segments, ShardedSegments(stacked, mesh, D * T_local, True, True))

    def per_label_array(values: np.ndarray, fill: np.ndarray) -> jax.Array:
        out = np.repeat(fill[:, None], N_local, axis=1).astype(np.int32)
        for d, i in enumerate(idx):
            out[d, : i.size] = values[i]
        return _place(mesh, out.reshape(-1), True)

    gold = np.full(D * T_local, -1, dtype=np.int32)
    gold[:T] = ann.gold
    mask = np.zeros(D * T_local, dtype=np.float32)
    mask[:T] = 1.0
    temperature = None
    if task_temperature is not None:
        padded = np.ones(D * T_local, dtype=np.float32)
        padded[:T] = task_temperature
        temperature = _place(mesh, padded, True)
    return dict(
        task=per_label_array(ann.task, np.arange(D) * T_local),
        worker=per_label_array(ann.worker, np.zeros(D, np.int64)),
        label=per_label_array(ann.label, np.zeros(D, np.int64)),
        gold=_place(mesh, gold, True),
        by_task=cast(Segments, ShardedSegments(by_task, mesh, D * T_local, False, True)),
        by_worker_label=cast(Segments, ShardedSegments(by_wl, mesh, W * L, True, False)),
        by_task_label=by_label,
        n_labels_per_worker=_place(mesh, np.bincount(ann.worker, minlength=W), False),
        task_mask=_place(mesh, mask, True),
        task_temperature=temperature,
    )


def place_tasks(data: Any, post: np.ndarray) -> jax.Array:
    """The class-major ``[K, n_tasks]`` array ``post`` padded and sharded like ``data``'s tasks
    (only padded, with zeros, for shape-bucketed one-device ``data``)."""
    T_pad = int(data.gold.shape[0])
    out = np.zeros((post.shape[0], T_pad), dtype=np.float32)
    out[:, : post.shape[1]] = post
    seg = data.by_task
    if not isinstance(seg, ShardedSegments):  # shape buckets: one device
        return jax.device_put(out)
    return jax.make_array_from_callback(
        out.shape,
        NamedSharding(seg.mesh, PartitionSpec(None, AXIS)),
        lambda index: out[index],
    )
