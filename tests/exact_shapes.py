"""A helper for tests that fit a model by NUTS and by EM on the same data."""


def exact_shapes(est):
    """``est`` fitting EM on the exact shapes (no shape buckets), as a NUTS fit's own EM
    start does: the EM programs one compiles serve the other (a bucketed fit compiles its
    own; it is the exact fit to float rounding, tests/test_buckets.py)."""
    est._buckets = False
    return est
