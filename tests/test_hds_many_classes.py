"""HierarchicalDawidSkene's M-step above 8 classes solves ``mu``'s Schur-complement
system by conjugate gradients (products through each annotator's Sherman–Morrison
solver) instead of forming and factorising it densely (``O(K^6)``: minutes at K = 20);
the Newton steps are the same, so the two paths agree where both run."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import crowdbayes as cb
from crowdbayes.models import hierarchical as H


@pytest.mark.parametrize("name", ["wsd", "bluebirds"])
def test_conjugate_gradient_newton_matches_the_dense_one(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    df, _ = cb.datasets.load(name)
    model = cb.HierarchicalDawidSkene(population_scale=0.8, ability_scale=0.3).fit(df)
    data, hyper = model._data(), model._fitted_hyper()
    E = H._expected(jnp.asarray(np.asarray(model.proba_).T, jnp.float32), data)
    assert E.shape[-1] <= H._JOINT_MAX_CLASSES  # _newton takes the dense path here
    b_dense, mu_dense = H._newton(E, hyper)
    monkeypatch.setattr(H, "_JOINT_MAX_CLASSES", 1)  # the conjugate-gradient path
    b_cg, mu_cg = H._newton(E, hyper)
    np.testing.assert_allclose(np.asarray(mu_cg), np.asarray(mu_dense), atol=1e-4)
    np.testing.assert_allclose(np.asarray(b_cg), np.asarray(b_dense), atol=1e-4)
