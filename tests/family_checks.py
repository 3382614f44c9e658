"""Checks shared by the tests of the model families: EM's objective against NumPyro's
density (the log-Jacobian of EM's log-ratio coordinates), estimates against their own
intervals."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import pandas as pd

BETA_SITES = ("p_correct", "competence")


def log_ratio_jacobian(sites: dict, supports: dict[str, Any] | None = None) -> float:
    """``sum(log p)`` over every simplex and ``log p + log(1 - p)`` over every Beta site:
    EM's objective is the density in log-ratio (logit) coordinates, where a Dirichlet or
    Beta's mode is its mean given the counts.

    Without ``supports`` every site is a simplex but ``BETA_SITES`` (the Dirichlet/Beta
    families); with ``supports`` (site -> numpyro constraint) a site counts by its
    support: simplex, unit interval, or neither (real, positive: no term)."""
    from numpyro.distributions import constraints

    total = 0.0
    for k, v in sites.items():
        if supports is None:
            simplex, beta = k not in BETA_SITES, k in BETA_SITES
        else:
            support = supports[k]
            while isinstance(support, constraints.independent):  # .to_event(n)
                support = support.base_constraint
            simplex = support is constraints.simplex
            beta = support is constraints.unit_interval
        if simplex or beta:
            total += float(jnp.log(v).sum())
        if beta:
            total += float(jnp.log1p(-v).sum())
    return total


def outside_own_interval(q: pd.DataFrame) -> list[str]:
    """Columns of ``q`` whose point estimate falls outside its own ``_lower``/``_upper``
    (to 1e-9), with how many rows."""
    bad = []
    for col in q.columns:
        if f"{col}_lower" in q.columns:
            lo, hi, x = q[f"{col}_lower"], q[f"{col}_upper"], q[col]
            if not ((lo <= x + 1e-9) & (x <= hi + 1e-9)).all():
                bad.append(f"{col}: {int(((x < lo) | (x > hi)).sum())} of {len(x)}")
    return bad
