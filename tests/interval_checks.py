"""Checks shared by the NUTS tests: posterior means against equal-tailed intervals."""

from __future__ import annotations

import pandas as pd


def assert_mean_in_interval(
    mean: pd.Series, lower: pd.Series, upper: pd.Series, share: float = 0.95, gap: float = 1e-3
) -> None:
    """Most posterior means lie inside their equal-tailed intervals, and none far outside.

    A posterior mean may fall just outside an equal-tailed interval when the draws are
    skewed (a task probability at 0.999996 against a lower bound of 0.999997), so this
    asks for ``share`` of them inside (to 1e-6), none more than ``gap`` outside, and
    ``lower <= upper`` everywhere.
    """
    inside = (lower <= mean + 1e-6) & (mean <= upper + 1e-6)
    assert inside.mean() >= share, f"only {inside.mean():.1%} inside their intervals"
    assert (lower - mean).max() < gap and (mean - upper).max() < gap
    assert (lower <= upper).all()
