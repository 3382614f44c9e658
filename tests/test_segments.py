"""Segments: every layout (gather, chunked, scatter) sums like ``np.add.at``."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from crowdbayes.inference.segments import Segments, choose_widths, stable_order


def reference(seg, keys, n_segments, source):
    out = np.zeros((*source.shape[:-1], n_segments))
    for s, k in zip(seg, keys, strict=True):
        out[..., s] += source[..., k]
    return out


@pytest.mark.parametrize("scatter", [None, True, False])
@pytest.mark.parametrize("max_width", [3, 32])
def test_sums_match_reference(scatter, max_width):
    rng = np.random.default_rng(max_width)
    for trial in range(2):
        n = int(rng.integers(1, 400))
        n_seg = int(rng.integers(1, 60))
        n_keys = int(rng.integers(1, 90))
        seg = rng.integers(0, n_seg, n) if trial % 2 else np.sort(rng.zipf(1.6, n) % n_seg)
        keys = rng.integers(0, n_keys, n)
        source = rng.random((3, n_keys))
        layout = Segments.build(
            seg, n_seg, keys=keys, n_keys=n_keys, max_width=max_width, scatter=scatter
        )
        got = np.asarray(layout.sum(jnp.asarray(source, jnp.float32)))
        np.testing.assert_allclose(got, reference(seg, keys, n_seg, source), rtol=1e-5, atol=1e-5)
        assert layout.n_segments == n_seg


def test_long_segments_recurse_and_differentiate():
    seg = np.repeat([0, 2], [1000, 7])
    layout = Segments.build(seg, 3, max_width=4, scatter=False)
    assert layout.inner is not None and layout.inner.inner is not None  # 1000 -> 250 -> 63 -> 16
    x = jnp.arange(1007.0)
    np.testing.assert_allclose(layout.sum(x), [np.arange(1000.0).sum(), 0.0, x[1000:].sum()])
    for scatter in (True, False):
        lay = Segments.build(seg, 3, scatter=scatter)
        grad = jax.grad(lambda s, lay=lay: (lay.sum(s) * jnp.array([1.0, 0.0, 2.0])).sum())(x)
        np.testing.assert_allclose(grad, np.repeat([1.0, 2.0], [1000, 7]))


def test_stable_order_matches_argsort():
    rng = np.random.default_rng(0)
    for n_ids in (3, 70_000):
        ids = rng.integers(0, n_ids, 5000)
        np.testing.assert_array_equal(stable_order(ids, n_ids), np.argsort(ids, kind="stable"))
    assert stable_order(np.arange(5), 5).tolist() == [0, 1, 2, 3, 4]


def test_choose_widths_covers_counts():
    counts = np.array([1, 3, 3, 3, 7, 30, 31])
    widths = choose_widths(counts, max_blocks=2)
    assert widths.size <= 2 and widths.max() >= 31


def _old_layout(seg_ids, n_segments, keys, pad, max_width, widths=None, rows=None):
    """Segments._layout as it was before its items were laid out a slice at a time
    (whole-array int64 temporaries, blocks packed end to end): the arrays to match."""
    from crowdbayes.inference.segments import _chunks

    n_items = seg_ids.shape[0]
    in_order = n_items == 0 or bool(np.all(seg_ids[1:] >= seg_ids[:-1]))
    order = np.arange(n_items) if in_order else np.argsort(seg_ids, kind="stable")
    if keys is None:
        sorted_keys = order.astype(np.int32)
    else:
        sorted_keys = (keys if in_order else keys[order]).astype(np.int32, copy=False)
    counts = np.bincount(seg_ids, minlength=n_segments)
    chunk_seg, first_chunk, chunk_size = _chunks(counts, max_width)
    if widths is None:
        widths = choose_widths(chunk_size)
    bucket = np.searchsorted(widths, chunk_size)
    seg_start = (np.cumsum(counts) - counts).astype(np.int32)
    item_seg = seg_ids if in_order else seg_ids[order]
    pos = np.arange(n_items, dtype=np.int32) - seg_start[item_seg]
    chunked = chunk_seg.size != np.count_nonzero(counts)
    if chunked:
        item_chunk = first_chunk[item_seg] + pos // max_width
        slot = pos % max_width
    else:
        item_chunk, slot = first_chunk[item_seg], pos
    row_order = np.argsort(bucket, kind="stable")
    n_real = np.bincount(bucket, minlength=widths.size)
    n_rows = n_real if rows is None else np.asarray(rows)
    real_start, row_start = np.cumsum(n_real) - n_real, np.cumsum(n_rows) - n_rows
    b_of = bucket[row_order]
    row_of_chunk = np.empty(chunk_seg.size, dtype=np.int64)
    row_of_chunk[row_order] = np.arange(chunk_seg.size) - real_start[b_of] + row_start[b_of]
    total_rows = int(n_rows.sum())
    row_seg = np.zeros(total_rows, dtype=np.int32)
    row_seg[row_of_chunk] = chunk_seg
    sizes = widths * n_rows
    block_start = np.cumsum(sizes) - sizes
    chunk_base = (block_start - row_start)[bucket] + row_of_chunk
    chunk_stride = n_rows[bucket]
    flat = np.full(int(sizes.sum()), pad, dtype=np.int32)
    flat[chunk_base[item_chunk] + slot * chunk_stride[item_chunk]] = sorted_keys
    blocks, row_keys = [], []
    for b in range(widths.size):
        if n_rows[b] == 0:
            continue
        blocks.append(
            flat[block_start[b] : block_start[b] + sizes[b]].reshape(widths[b], n_rows[b])
        )
        row_keys.append(row_seg[row_start[b] : row_start[b] + n_rows[b]])
    if not chunked:
        inverse = np.full(n_segments, total_rows, dtype=np.int32)
        inverse[chunk_seg] = row_of_chunk
        return Segments(tuple(blocks), inverse, None, tuple(row_keys))
    inner = _old_layout(row_seg, n_segments, None, total_rows, max_width)
    return Segments(
        tuple(blocks),
        np.zeros(n_segments, np.int32),
        inner._replace(row_keys=None),
        tuple(row_keys),
    )


def _assert_same_layout(got, want):
    assert len(got.blocks) == len(want.blocks)
    for a, b in zip(got.blocks, want.blocks, strict=True):
        assert a.dtype == np.int32 and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got.inverse, want.inverse)
    assert (got.row_keys is None) == (want.row_keys is None)
    for a, b in zip(got.row_keys or (), want.row_keys or (), strict=True):
        np.testing.assert_array_equal(a, b)
    assert (got.inner is None) == (want.inner is None)
    if got.inner is not None:
        _assert_same_layout(got.inner, want.inner)


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_layout_matches_whole_array_build(monkeypatch, chunk):
    """Laid out a slice of items at a time (and sorted by slices), the layout holds the
    arrays of the whole-array build, sorted or not, chunked or not, with forced widths
    and rows; every block starts on ALIGN bytes (a CPU transfer aliases it)."""
    from crowdbayes.data import ALIGN
    from crowdbayes.inference import segments

    monkeypatch.setattr(segments, "_ITEM_CHUNK", chunk)
    rng = np.random.default_rng(5)
    for trial in range(8):
        n = int(rng.integers(1, 300))
        n_seg = int(rng.integers(1, 50))
        seg = rng.integers(0, n_seg, n)
        if trial % 2:
            seg = np.sort(seg)
        seg = seg.astype(np.int32 if trial % 3 else np.int64)
        keys = None if trial % 4 == 3 else rng.integers(0, 40, n)
        max_width = int(rng.choice([2, 3, 32]))
        kw = {}
        if trial >= 6:  # forced widths, padded rows (as the sharded layouts ask)
            sizes = segments._chunks(np.bincount(seg, minlength=n_seg), max_width)[2]
            widths = choose_widths(sizes)
            rows = np.bincount(np.searchsorted(widths, sizes), minlength=widths.size) + 3
            kw = dict(widths=widths, rows=rows)
        got = Segments._layout(seg, n_seg, keys, 40, max_width, **kw)
        _assert_same_layout(got, _old_layout(seg, n_seg, keys, 40, max_width, **kw))
        assert all(b.ctypes.data % ALIGN == 0 for b in got.blocks)


def test_stable_order_by_slices(monkeypatch):
    from crowdbayes.inference import segments

    monkeypatch.setattr(segments, "_ITEM_CHUNK", 100)
    rng = np.random.default_rng(1)
    for n_ids in (3, 70_000, 5_000_000):
        ids = rng.integers(0, n_ids, 1234).astype(np.int32)
        want = np.argsort(ids, kind="stable")
        got = stable_order(ids, n_ids, dtype=np.int32)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, want)


def test_transfer_aliases_aligned_blocks():
    """On the CPU a built layout's blocks are the numpy buffers themselves (no copy)."""
    if jax.default_backend() != "cpu":
        pytest.skip("aliasing is a CPU transfer's")
    seg = np.repeat(np.arange(5000, dtype=np.int32), 7)
    lay = Segments._layout(seg, 5000, np.arange(seg.size) % 97, 97, 32)
    block = lay.blocks[0]
    on_device = jax.device_put(block)
    assert on_device.unsafe_buffer_pointer() == block.ctypes.data


@pytest.mark.parametrize("labels_per_task", [3, 40])  # 40: tasks cut into chunks
def test_em_data_layouts_share_blocks(labels_per_task):
    """em_data builds by_task (gather) and by_worker_label (scatter) from one set of
    blocks, and they sum as the layouts Segments.build makes on its own."""
    from crowdbayes.data import Annotations
    from crowdbayes.inference.em import em_data

    rng = np.random.default_rng(labels_per_task)
    T, W, K = 300, 7, 3
    task = np.repeat(np.arange(T, dtype=np.int32), labels_per_task)
    rng.shuffle(task)  # labels not grouped by task
    n = task.size
    ann = Annotations(
        task=task,
        worker=rng.integers(0, W, n).astype(np.int32),
        label=rng.integers(0, K, n).astype(np.int32),
        task_ids=pd.RangeIndex(T),
        worker_ids=pd.RangeIndex(W),
        classes=pd.Index(range(K)),
        gold=np.full(T, -1, np.int32),
    )
    data = em_data(ann)
    wl = ann.worker.astype(np.int64) * K + ann.label
    assert data.by_task.row_keys is None and data.by_worker_label.row_keys is not None
    assert all(
        a is b for a, b in zip(data.by_task.blocks, data.by_worker_label.blocks, strict=True)
    )
    table = jnp.asarray(rng.random((2, W * K)), jnp.float32)
    np.testing.assert_allclose(
        data.by_task.sum(table), reference(ann.task, wl, T, np.asarray(table)), rtol=1e-5
    )
    per_task = jnp.asarray(rng.random((2, T)), jnp.float32)
    np.testing.assert_allclose(
        data.by_worker_label.sum(per_task),
        reference(wl, ann.task, W * K, np.asarray(per_task)),
        rtol=1e-5,
    )
