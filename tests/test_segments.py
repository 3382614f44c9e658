"""Segments: every layout (gather, chunked, scatter) sums like ``np.add.at``."""

import jax
import jax.numpy as jnp
import numpy as np
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
