"""Scatter-free segment sums over the long label arrays.

XLA's scatter-add (what ``jax.ops.segment_sum`` lowers to) and its gathers with
multi-dimensional index arrays are slow on the CPU; a gather with a flat index
vector fused into an elementwise sum is fast. :class:`Segments` therefore lays
the items of each segment out once, in numpy, as dense *width-major* blocks
``[width, n_rows]`` of source indices, one block per width: row ``r`` of a block
holds the items of one segment (or of one chunk of a long segment) in its
column. At most ``MAX_BLOCKS`` widths are used (each block costs compile time),
chosen from the ladder 1, 2, 3, 4, 6, 8, 12, ... by a small dynamic programme
that minimises the padding. A segment with more than ``max_width`` items is cut
into chunks of ``max_width``; the chunk sums are then summed per segment by an
``inner`` layout of the same kind (a short recursion: each level divides the
number of items by ``max_width``). Inside a jitted kernel a segment sum is a
short loop over the block width of ``source[..., index_row]`` gathers, each
fused with the running sum, and it differentiates as well as any gather.

Sources are class-major, ``[..., n_source]``; index ``n_source`` is a padding
slot that reads as zero.

>>> import numpy as np, jax.numpy as jnp
>>> seg = Segments.build(np.array([0, 2, 0, 0]), n_segments=3)
>>> seg.sum(jnp.array([[1.0, 2.0, 3.0, 4.0]])).tolist()
[[8.0, 0.0, 2.0]]
>>> keyed = Segments.build(np.array([0, 2, 0]), n_segments=3, keys=np.array([1, 0, 1]), n_keys=2)
>>> keyed.sum(jnp.array([[10.0, 20.0]])).tolist()   # sums table[keys] per segment
[[40.0, 0.0, 10.0]]
>>> long = Segments.build(np.zeros(100, dtype=int), n_segments=1, max_width=8, scatter=False)
>>> long.inner is not None, long.sum(jnp.arange(100.0)).tolist()
(True, [4950.0])
>>> few = Segments.build(np.array([1, 0, 1]), n_segments=2, keys=np.array([0, 1, 2]), n_keys=3)
>>> few.row_keys is not None, few.sum(jnp.array([1.0, 2.0, 4.0])).tolist()  # scatter layout
(True, [2.0, 5.0])
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..data import ALIGN, aligned_empty, bincount, release_memory

__all__ = [
    "MAX_BLOCKS",
    "MAX_WIDTH",
    "FlatSegments",
    "Segments",
    "ShapeOfSegments",
    "bucket_widths",
    "choose_widths",
    "stable_order",
    "transposed_sum",
]

MAX_BLOCKS = 4
Array = jnp.ndarray | np.ndarray  # jax arrays once built; numpy while being laid out
MAX_WIDTH = 32  # longer segments are cut into chunks of this many items
_SPLIT_ROWS = 8  # sources with up to this many leading rows are gathered row by row
_UNROLL = 16  # blocks up to this width sum by an unrolled loop, wider ones by fori_loop
_ITEM_CHUNK = 1 << 20  # layouts are built this many items at a time (bounded temporaries)
_BLOCK_ALIGN = ALIGN // 4  # blocks start on ALIGN bytes of int32: a CPU transfer aliases them


def bucket_widths(max_width: int) -> np.ndarray:
    """Widths 1, 2, 3, 4, 6, 8, 12, 16, ... up to at least ``max_width``."""
    widths = [1, 2]
    while widths[-1] < max_width:
        w = widths[-1]
        widths.append(w + w // 2 if (w & (w - 1)) == 0 else (w // 3) * 4)
    return np.asarray(widths, dtype=np.int64)


def choose_widths(counts: np.ndarray, max_blocks: int = MAX_BLOCKS) -> np.ndarray:
    """At most ``max_blocks`` widths from the ladder that cover every count with the
    least total padding (segments of zero items are left out).

    >>> choose_widths(np.array([1, 1, 2, 9, 10, 10, 300]), max_blocks=3).tolist()
    [2, 10, 300]
    """
    counts = counts[counts > 0]
    if counts.size == 0:
        return np.ones(1, dtype=np.int64)
    top = int(counts.max())
    common = np.argsort(np.bincount(counts))[-8:]  # the most frequent counts fit exactly
    ladder = bucket_widths(top)
    ladder = np.unique(np.concatenate([ladder[ladder < top], [top], common[common > 0]]))
    slot = np.searchsorted(ladder, counts)
    n_at = np.cumsum(np.bincount(slot, minlength=ladder.size))  # segments with count <= ladder[i]
    items_at = np.cumsum(np.bincount(slot, weights=counts, minlength=ladder.size))
    C = ladder.size

    def cost(lo: int, hi: int) -> float:  # segments in ladder slots lo+1..hi padded to ladder[hi]
        n = n_at[hi] - (n_at[lo] if lo >= 0 else 0)
        items = items_at[hi] - (items_at[lo] if lo >= 0 else 0)
        return float(n * ladder[hi] - items)

    inf = float("inf")
    best = np.full((max_blocks + 1, C), inf)
    back = np.full((max_blocks + 1, C), -1, dtype=np.int64)
    for hi in range(C):
        best[1, hi] = cost(-1, hi)
    for b in range(2, max_blocks + 1):
        for hi in range(C):
            best[b, hi], back[b, hi] = best[b - 1, hi], -2  # fewer blocks is allowed
            for lo in range(hi):
                c = best[b - 1, lo] + cost(lo, hi)
                if c < best[b, hi]:
                    best[b, hi], back[b, hi] = c, lo
    chosen, b, hi = [], max_blocks, C - 1
    while hi >= 0 and b >= 1:
        if b >= 2 and back[b, hi] == -2:
            b -= 1
            continue
        chosen.append(int(ladder[hi]))
        hi, b = (int(back[b, hi]) if b >= 2 else -1), b - 1
    return np.asarray(sorted(chosen), dtype=np.int64)


def _is_sorted(ids: np.ndarray) -> bool:
    """Whether ``ids`` never decreases (compared a slice at a time: no ``[n]`` temporary)."""
    n = ids.shape[0]
    for start in range(0, n - 1, _ITEM_CHUNK):
        stop = min(start + _ITEM_CHUNK, n - 1)
        if not bool(np.all(ids[start + 1 : stop + 1] >= ids[start:stop])):
            return False
    return True


def stable_order(ids: np.ndarray, n_ids: int, dtype: Any = np.int64) -> np.ndarray:
    """``np.argsort(ids, kind="stable")`` for ids in ``[0, n_ids)``, by radix passes,
    as ``dtype`` (int32 halves the result where the items fit).

    Sorted input costs one comparison pass; otherwise one (``n_ids <= 2**16``) or
    two 16-bit radix passes, several times faster than a comparison sort. Long inputs
    are sorted a slice at a time into the result (a stable counting sort per digit),
    so that besides the result the temporaries are of one slice.

    >>> stable_order(np.array([2, 0, 2, 1]), 3).tolist()
    [1, 3, 0, 2]
    """
    ids = np.asarray(ids)
    n = ids.shape[0]
    if n == 0 or _is_sorted(ids):
        return np.arange(n, dtype=dtype)
    if n_ids > 1 << 32:  # pragma: no cover - beyond int32 codes
        return np.argsort(ids, kind="stable").astype(dtype, copy=False)
    if n <= _ITEM_CHUNK:
        if n_ids <= 1 << 16:
            return np.argsort(ids.astype(np.uint16), kind="stable").astype(dtype, copy=False)
        ids = ids.astype(np.uint32)
        low = np.argsort((ids & 0xFFFF).astype(np.uint16), kind="stable")
        high = np.argsort((ids[low] >> 16).astype(np.uint16), kind="stable")
        return low[high].astype(dtype, copy=False)
    order = _digit_order(ids, None, 0, dtype)
    if n_ids > 1 << 16:
        order = _digit_order(ids, order, 16, dtype)
    return order


def _digit_order(ids: np.ndarray, prev: np.ndarray | None, shift: int, dtype: Any) -> np.ndarray:
    """``prev`` (default ``arange(n)``) stably reordered by the 16-bit digit
    ``ids[prev] >> shift``: a counting sort, a slice of ``_ITEM_CHUNK`` items at a time."""
    n = ids.shape[0]
    n_digits = 1 << 16

    def digits(start: int) -> np.ndarray:
        part = (
            ids[start : start + _ITEM_CHUNK]
            if prev is None
            else ids[prev[start : start + _ITEM_CHUNK]]
        )
        return ((part >> shift) & 0xFFFF).astype(np.uint16)

    counts = np.zeros(n_digits, np.int64)
    for start in range(0, n, _ITEM_CHUNK):
        counts += np.bincount(digits(start), minlength=n_digits)
    free = np.cumsum(counts) - counts  # the next place of each digit in the result
    out = np.empty(n, dtype)
    for start in range(0, n, _ITEM_CHUNK):
        d = digits(start)
        local = np.argsort(d, kind="stable")
        d = d[local]
        c = np.bincount(d, minlength=n_digits)
        first = np.cumsum(c) - c  # where each digit starts within the slice
        place = free[d] + (np.arange(d.size) - first[d])
        out[place] = local + start if prev is None else prev[local + start]
        free += c
    return out


def _block_sum(padded: jnp.ndarray, block: Array) -> jnp.ndarray:
    """``sum_j padded[..., block[j]]`` over the width of a width-major block.

    With a few leading rows (classes) each row is gathered on its own: flat gathers
    from a vector fuse into one loop, gathers of strided columns do not."""

    def take(src: jnp.ndarray, j: jnp.ndarray | int) -> jnp.ndarray:
        row = block[j] if isinstance(j, int) else jax.lax.dynamic_index_in_dim(block, j, 0, False)
        return src.at[..., row].get(mode="promise_in_bounds")

    def total(src: jnp.ndarray) -> jnp.ndarray:
        width = block.shape[0]
        if width <= _UNROLL:
            acc = take(src, 0)
            for j in range(1, width):
                acc = acc + take(src, j)
            return acc
        return jax.lax.fori_loop(1, width, lambda j, acc: acc + take(src, j), take(src, 0))

    lead = padded.shape[:-1]
    n_rows = int(np.prod(lead)) if lead else 1
    if 1 < n_rows <= _SPLIT_ROWS:
        flat = padded.reshape(n_rows, padded.shape[-1])
        return jnp.stack([total(flat[m]) for m in range(n_rows)]).reshape(*lead, -1)
    return total(padded)


def _chunks(counts: np.ndarray, max_width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut segments of ``counts`` items into chunks of at most ``max_width``: each chunk's
    segment, each segment's first chunk, each chunk's size."""
    n_chunks = -(-counts // max_width)
    chunk_seg = np.repeat(np.arange(counts.size), n_chunks)
    first_chunk = np.cumsum(n_chunks) - n_chunks
    within_seg = np.arange(chunk_seg.size) - first_chunk[chunk_seg]
    chunk_size = np.minimum(max_width, counts[chunk_seg] - within_seg * max_width)
    return chunk_seg, first_chunk, chunk_size


class Segments(NamedTuple):
    """A segment layout: dense index blocks and the map back to segment order.

    ``blocks[b]`` is ``[width_b, rows_b]`` indices into the source (padding =
    ``n_source``); each row (column of the block) is one segment, or one chunk
    of a long segment. Without ``inner``, ``inverse[s]`` is the position of
    segment ``s`` among the concatenated block rows (``total_rows`` for an empty
    segment, which reads 0). With ``inner`` (some segment was cut into chunks),
    the row sums are summed per segment by ``inner`` and ``inverse`` is unused
    (it keeps the shape ``[n_segments]``).

    *Scatter layout* (``row_keys`` set; chosen by :meth:`build` when there are
    few segments and many more source entries, as for the per-annotator counts
    of an M-step): items are grouped by source index instead; ``row_keys[b]``
    ``[rows_b]`` is the source index of each row and ``blocks[b]`` holds the
    segment of each item (padding = ``n_segments``). The sum reads each source
    entry once, in order, and adds it into the small output table.
    """

    blocks: tuple[Array, ...]
    inverse: Array
    inner: Segments | None = None
    row_keys: tuple[Array, ...] | None = None

    @property
    def n_segments(self) -> int:
        return int(self.inverse.shape[0])

    @classmethod
    def build(
        cls,
        seg_ids: np.ndarray,
        n_segments: int,
        keys: np.ndarray | None = None,
        n_keys: int | None = None,
        max_width: int = MAX_WIDTH,
        scatter: bool | None = None,
    ) -> Segments:
        """Lay out items by segment. Item ``i`` belongs to ``seg_ids[i]`` and reads
        source index ``keys[i]`` (default ``i``; then the source has ``len(seg_ids)``
        entries, else ``n_keys``). Segments longer than ``max_width`` are cut into chunks.
        ``scatter`` forces (or forbids) the scatter layout; by default it is used when
        there are at most ``2**16`` segments and more source entries than segments."""
        seg_ids = np.asarray(seg_ids)
        n_items = seg_ids.shape[0]
        max_width = max(int(max_width), 2)
        if keys is None:
            n_source = n_items
        else:
            keys = np.asarray(keys)
            n_source = int(n_keys if n_keys is not None else keys.max() + 1)
        if scatter is None:
            scatter = n_segments <= 1 << 16 and n_source > n_segments
        if scatter:
            key_ids = np.arange(n_items) if keys is None else keys
            by_key = cls._layout(key_ids, n_source, seg_ids, n_segments, max_width)
            layout = cls(by_key.blocks, np.zeros(n_segments, np.int32), None, by_key.row_keys)
        else:
            layout = cls._layout(seg_ids, n_segments, keys, n_source, max_width)
            layout = layout._replace(row_keys=None)
        return jax.tree_util.tree_map(jax.device_put, layout)  # compiles nothing

    @classmethod
    def _layout(
        cls,
        seg_ids: np.ndarray,
        n_segments: int,
        keys: np.ndarray | None,
        pad: int,
        max_width: int,
        widths: np.ndarray | None = None,
        rows: np.ndarray | None = None,
    ) -> Segments:
        """The gather layout, as numpy arrays (``row_keys`` is set to each row's segment,
        for the scatter layout that swaps the roles of segments and keys).

        ``widths`` forces the block widths and ``rows`` pads block ``b`` to ``rows[b]``
        rows (blocks with no rows are left out), so that several layouts share one
        structure (the sharded layouts stack one per device)."""
        n_items = seg_ids.shape[0]
        # the items in segment order: each one's segment and the source index it reads
        # (None: item i reads i); int32 where they fit, built without [n] int64 arrays
        sorted_keys: np.ndarray | None
        if n_items == 0 or _is_sorted(seg_ids):
            item_seg, sorted_keys = seg_ids, keys
        else:
            idx = np.int32 if n_items < 2**31 else np.int64
            order = stable_order(seg_ids, n_segments, dtype=idx)
            item_seg = seg_ids[order]
            sorted_keys = order if keys is None else keys[order]
            del order
        counts = bincount(item_seg, minlength=n_segments)
        chunk_seg, first_chunk, chunk_size = _chunks(counts, max_width)
        C = chunk_seg.size
        chunked = C != np.count_nonzero(counts)
        if widths is None:
            widths = choose_widths(chunk_size)
        bucket = np.searchsorted(widths, chunk_size)  # smallest width >= chunk size
        del chunk_size
        # rows: chunks grouped by bucket, chunk order kept within a bucket
        row_order = stable_order(bucket, widths.size)
        n_real = np.bincount(bucket, minlength=widths.size)
        n_rows = n_real if rows is None else np.asarray(rows)
        real_start, row_start = np.cumsum(n_real) - n_real, np.cumsum(n_rows) - n_rows
        b_of = bucket[row_order]
        row_of_chunk = np.empty(C, dtype=np.int64)
        row_of_chunk[row_order] = np.arange(C) - real_start[b_of] + row_start[b_of]
        del row_order, b_of
        total_rows = int(n_rows.sum())
        row_seg = np.zeros(total_rows, dtype=np.int32)
        row_seg[row_of_chunk] = chunk_seg
        # all blocks live in one flat buffer, each starting on ALIGN bytes; an item's
        # place is (start of its block) + slot * (rows of the block) + (its row in the block)
        sizes = widths * n_rows
        spans = -(-sizes // _BLOCK_ALIGN) * _BLOCK_ALIGN
        block_start = np.cumsum(spans) - spans
        chunk_base = (block_start - row_start)[bucket] + row_of_chunk  # per chunk
        chunk_stride = n_rows[bucket]
        del bucket
        inverse = None
        if not chunked:
            inverse = np.full(n_segments, total_rows, dtype=np.int32)
            inverse[chunk_seg] = row_of_chunk
        del row_of_chunk, chunk_seg
        seg_start = np.cumsum(counts) - counts
        del counts
        flat = aligned_empty(int(spans.sum()), np.int32)
        flat.fill(pad)
        if n_items and not chunked:
            # one chunk per non-empty segment: item i goes to base[seg] + i * stride[seg]
            # (per-segment arrays only; empty segments, which no item reads, clipped)
            first = np.minimum(first_chunk, C - 1)
            stride = chunk_stride[first]
            base = chunk_base[first] - seg_start * stride
            del first, first_chunk, chunk_base, chunk_stride, seg_start
            for start in range(0, n_items, _ITEM_CHUNK):  # a slice of the items at a time
                stop = min(start + _ITEM_CHUNK, n_items)
                seg = item_seg[start:stop]
                place = np.arange(start, stop, dtype=np.int64)
                place *= stride[seg]
                place += base[seg]
                flat[place] = (
                    np.arange(start, stop) if sorted_keys is None else sorted_keys[start:stop]
                )
            del stride, base
        else:
            for start in range(0, n_items, _ITEM_CHUNK):
                stop = min(start + _ITEM_CHUNK, n_items)
                seg = item_seg[start:stop]
                slot = np.arange(start, stop, dtype=np.int64) - seg_start[seg]  # in segment
                item_chunk = first_chunk[seg] + slot // max_width
                slot %= max_width
                slot *= chunk_stride[item_chunk]
                slot += chunk_base[item_chunk]
                flat[slot] = (
                    np.arange(start, stop) if sorted_keys is None else sorted_keys[start:stop]
                )
        del item_seg, sorted_keys
        if n_items >= _ITEM_CHUNK:
            release_memory()  # the slices' temporaries, freed into the C heap
        blocks, row_keys = [], []
        for b in range(widths.size):
            if n_rows[b] == 0:
                continue
            blocks.append(
                flat[block_start[b] : block_start[b] + sizes[b]].reshape(widths[b], n_rows[b])
            )
            row_keys.append(row_seg[row_start[b] : row_start[b] + n_rows[b]])
        if inverse is not None:
            return cls(tuple(blocks), inverse, None, tuple(row_keys))
        inner = cls._layout(row_seg, n_segments, None, total_rows, max_width)
        return cls(
            tuple(blocks),
            np.zeros(n_segments, np.int32),
            inner._replace(row_keys=None),
            tuple(row_keys),
        )

    def sum(self, source: jnp.ndarray) -> jnp.ndarray:
        """Per-segment sums of ``source[..., index]``: ``[..., n_source] -> [..., n_segments]``."""
        zero = jnp.zeros((*source.shape[:-1], 1), source.dtype)
        if self.row_keys is not None:
            return self._scatter_sum(source)
        padded = jnp.concatenate([source, zero], axis=-1)
        rows = jnp.concatenate([_block_sum(padded, block) for block in self.blocks], axis=-1)
        if self.inner is not None:
            return self.inner.sum(rows)
        rows = jnp.concatenate([rows, zero], axis=-1)
        return _block_sum(rows, self.inverse[None, :])

    def _scatter_sum(self, source: jnp.ndarray) -> jnp.ndarray:
        # Item-major: each scattered item adds one contiguous row of the leading dims
        # (a class-major accumulator makes XLA's CPU scatter 2-3x slower).
        assert self.row_keys is not None
        n_segments = self.inverse.shape[0]
        lead = source.shape[:-1]
        flat = source.reshape(-1, source.shape[-1]).T  # [n_source, M]
        out = jnp.zeros((n_segments + 1, flat.shape[1]), source.dtype)
        for block, row_key in zip(self.blocks, self.row_keys, strict=True):
            values = flat.at[row_key].get(mode="promise_in_bounds")

            def add(j: jnp.ndarray | int, acc: jnp.ndarray, block=block, values=values):
                row = (
                    block[j]
                    if isinstance(j, int)
                    else jax.lax.dynamic_index_in_dim(block, j, 0, False)
                )
                return acc.at[row].add(values, mode="promise_in_bounds")

            width = block.shape[0]
            if width <= _UNROLL:
                for j in range(width):
                    out = add(j, out)
            else:
                # the first slot outside the loop: inside shard_map the scattered values
                # vary over the devices and a zero accumulator does not, and a loop's carry
                # must keep its type
                out = jax.lax.fori_loop(1, width, add, add(0, out))
        return out[:n_segments].T.reshape(*lead, n_segments)


class ShapeOfSegments:
    """What a layout without :class:`Segments`' ``inverse`` array gives in its place
    (:class:`FlatSegments`, :class:`~crowdbayes.inference.sharding.ShardedSegments`):
    ``inverse``, a shape stand-in ``[n_segments]``, which is what callers read of it."""

    n_segments: int

    @property
    def inverse(self) -> jax.ShapeDtypeStruct:
        """Shape stand-in (``[n_segments]``), as :class:`Segments` has."""
        return jax.ShapeDtypeStruct((self.n_segments,), jnp.int32)


@jax.tree_util.register_pytree_node_class
class FlatSegments(ShapeOfSegments):
    """A segment layout whose shapes depend only on padded sizes (shape buckets).

    ``index [n_items]`` is each item's source index (``n_source`` for a padding item:
    it reads zero) and ``seg [n_items]`` its segment, sorted (``n_segments`` for a
    padding item: it is summed into a slot that is cut off). The sum is one gather and
    one sorted scatter-add (``jax.ops.segment_sum``), item-major as the scatter layout
    of :class:`Segments`: slower per label than the blocked layouts, but every dataset
    whose padded sizes agree has the same arrays, so one compiled program serves them
    all (see :func:`~crowdbayes.inference.em.em_data` with ``devices=BUCKETS``).

    >>> import jax.numpy as jnp
    >>> lay = FlatSegments.build(np.array([0, 2, 0]), 4, keys=np.array([1, 0, 1]),
    ...                          n_keys=3, n_items=5)
    >>> lay.sum(jnp.array([[10.0, 20.0, 30.0]])).tolist()   # segment 3 and key 2: padding
    [[40.0, 0.0, 10.0, 0.0]]
    """

    def __init__(self, index: Array, seg: Array, n_segments: int) -> None:
        self.index = index
        self.seg = seg
        self.n_segments = n_segments

    def tree_flatten(self) -> tuple[tuple[Array, Array], int]:
        return (self.index, self.seg), self.n_segments

    @classmethod
    def tree_unflatten(cls, aux: int, children: tuple[Array, Array]) -> FlatSegments:
        return cls(children[0], children[1], aux)

    @classmethod
    def build(
        cls,
        seg_ids: np.ndarray,
        n_segments: int,
        keys: np.ndarray | None = None,
        n_keys: int | None = None,
        n_items: int | None = None,
    ) -> FlatSegments:
        """Item ``i`` belongs to ``seg_ids[i]`` and reads source index ``keys[i]`` (default
        ``i``) of a source with ``n_keys`` entries (default ``n_items``); ``n_items``
        (default ``len(seg_ids)``) pads the item arrays."""
        seg_ids = np.asarray(seg_ids)
        n = seg_ids.shape[0]
        n_items = n if n_items is None else int(n_items)
        keys = np.arange(n) if keys is None else np.asarray(keys)
        n_source = n_items if n_keys is None else int(n_keys)
        order = stable_order(seg_ids, n_segments)
        index = np.full(n_items, n_source, np.int32)
        seg = np.full(n_items, n_segments, np.int32)
        index[:n] = keys[order]
        seg[:n] = seg_ids[order]
        return cls(jax.device_put(index), jax.device_put(seg), int(n_segments))

    def sum(self, source: jnp.ndarray) -> jnp.ndarray:
        """Per-segment sums of ``source[..., index]``: ``[..., n_source] -> [..., n_segments]``."""
        lead = source.shape[:-1]
        zero = jnp.zeros((*lead, 1), source.dtype)
        padded = jnp.concatenate([source, zero], axis=-1)
        values = padded.at[..., self.index].get(mode="promise_in_bounds")
        flat = values.reshape(-1, values.shape[-1]).T  # [n_items, M]
        out = jax.ops.segment_sum(
            flat, self.seg, num_segments=self.n_segments + 1, indices_are_sorted=True
        )
        return out[: self.n_segments].T.reshape(*lead, self.n_segments)


@jax.custom_vjp
def transposed_sum(layout: Segments, transpose: Segments, table: jnp.ndarray) -> jnp.ndarray:
    """``layout.sum(table)``, differentiated by ``transpose.sum``.

    ``transpose`` must be ``layout`` with the roles of segments and keys swapped (built
    from the same items): the gradient of a keyed segment sum with respect to its
    table sums the output cotangent over the items of each key, which ``transpose``
    does with its own layout, where autodiff of the gathers would scatter-add every
    item into the class-major table (several times slower on the CPU).

    >>> items, keys = np.array([0, 2, 0]), np.array([1, 0, 1])
    >>> fwd = Segments.build(items, n_segments=3, keys=keys, n_keys=2)
    >>> back = Segments.build(keys, n_segments=2, keys=items, n_keys=3)
    >>> g = jax.grad(lambda t: (transposed_sum(fwd, back, t) * jnp.arange(3.0)).sum())
    >>> g(jnp.array([[10.0, 20.0]])).tolist()   # key 0 feeds segment 2, key 1 segment 0 twice
    [[2.0, 0.0]]
    """
    return layout.sum(table)


def _transposed_sum_fwd(
    layout: Segments, transpose: Segments, table: jnp.ndarray
) -> tuple[jnp.ndarray, Segments]:
    return layout.sum(table), transpose


def _transposed_sum_bwd(transpose: Segments, cotangent: jnp.ndarray) -> tuple[None, None, Array]:
    return None, None, transpose.sum(cotangent)


transposed_sum.defvjp(_transposed_sum_fwd, _transposed_sum_bwd)
