"""Scatter-free segment sums over the long label arrays.

XLA's scatter-add (what ``jax.ops.segment_sum`` lowers to) is slow on the CPU.
:class:`Segments` lays the items of each segment out once, in numpy, as dense
``[n_rows, width]`` blocks of source indices, one block per width. At most
``MAX_BLOCKS`` widths are used (each block costs compile time), chosen from the
ladder 1, 2, 3, 4, 6, 8, 12, ... by a small dynamic programme that minimises
the padding. Inside a jitted kernel a segment sum is then a gather and a dense
reduction, several times faster, and it differentiates as well as any gather.

Sources are class-major, ``[..., n_source]``; index ``n_source`` is a padding
slot that reads as zero.

>>> import numpy as np, jax.numpy as jnp
>>> seg = Segments.build(np.array([0, 2, 0, 0]), n_segments=3)
>>> seg.sum(jnp.array([[1.0, 2.0, 3.0, 4.0]])).tolist()
[[8.0, 0.0, 2.0]]
>>> keyed = Segments.build(np.array([0, 2, 0]), n_segments=3, keys=np.array([1, 0, 1]), n_keys=2)
>>> keyed.sum(jnp.array([[10.0, 20.0]])).tolist()   # sums table[keys] per segment
[[40.0, 0.0, 10.0]]
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

__all__ = ["MAX_BLOCKS", "Segments", "bucket_widths", "choose_widths"]

MAX_BLOCKS = 4


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
    hist = np.bincount(np.searchsorted(ladder, counts), minlength=ladder.size)
    n_at = np.cumsum(hist)  # segments with count <= ladder[i]
    items_at = np.cumsum(
        np.bincount(np.searchsorted(ladder, counts), weights=counts, minlength=ladder.size)
    )
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


class Segments(NamedTuple):
    """A segment layout: dense index blocks and the map back to segment order.

    ``blocks[b]`` is ``[rows_b, width_b]`` indices into the source (padding =
    ``n_source``). ``inverse[s]`` is the position of segment ``s`` among the
    concatenated block rows (``total_rows`` for an empty segment, which reads 0).
    """

    blocks: tuple[jnp.ndarray, ...]
    inverse: jnp.ndarray

    @classmethod
    def build(
        cls,
        seg_ids: np.ndarray,
        n_segments: int,
        keys: np.ndarray | None = None,
        n_keys: int | None = None,
    ) -> Segments:
        """Lay out items by segment. Item ``i`` belongs to ``seg_ids[i]`` and reads
        source index ``keys[i]`` (default ``i``; then the source has ``len(seg_ids)``
        entries, else ``n_keys``)."""
        seg_ids = np.asarray(seg_ids, dtype=np.int64)
        n_items = seg_ids.shape[0]
        if keys is None:
            keys, pad = np.arange(n_items, dtype=np.int64), n_items
        else:
            keys = np.asarray(keys, dtype=np.int64)
            pad = int(n_keys if n_keys is not None else keys.max() + 1)
        counts = np.bincount(seg_ids, minlength=n_segments)
        order = np.argsort(seg_ids, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        widths = choose_widths(counts)
        bucket = np.searchsorted(widths, counts)  # smallest width >= count
        blocks, rows = [], []
        for b in np.unique(bucket[counts > 0]):
            members = np.flatnonzero((bucket == b) & (counts > 0))
            width = int(widths[b])
            c = counts[members]
            block = np.full((members.size, width), pad, dtype=np.int32)
            row = np.repeat(np.arange(members.size), c)
            offsets = np.repeat(np.cumsum(c) - c, c)
            within = np.arange(row.size) - offsets
            block[row, within] = keys[order[np.repeat(starts[members], c) + within]]
            blocks.append(jnp.asarray(block))
            rows.append(members)
        perm = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        inverse = np.full(n_segments, perm.size, dtype=np.int32)
        inverse[perm] = np.arange(perm.size, dtype=np.int32)
        return cls(tuple(blocks), jnp.asarray(inverse))

    def sum(self, source: jnp.ndarray) -> jnp.ndarray:
        """Per-segment sums of ``source[..., index]``: ``[..., n_source] -> [..., n_segments]``."""
        zero = jnp.zeros((*source.shape[:-1], 1), source.dtype)
        padded = jnp.concatenate([source, zero], axis=-1)
        parts = [
            padded.at[..., block].get(mode="promise_in_bounds").sum(-1) for block in self.blocks
        ]
        parts.append(zero)
        return jnp.concatenate(parts, axis=-1)[..., self.inverse]
