"""A compiled EM program read back from crowdbayes' cache that does not run is dropped,
compiled afresh and run again: the fit is the one a fresh compile gives."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import crowdbayes as cb
from crowdbayes import _compile_cache
from crowdbayes.inference import em
from crowdbayes.simulate import simulate_dawid_skene


class _BrokenProgram:
    """Stands for an executable read back whole whose code is missing a function (seen
    once under load: ``NOT_FOUND: Function broadcast_compare_fusion not found``)."""

    def __init__(self, real: object) -> None:
        self.args_info = real.args_info  # type: ignore[attr-defined]
        self.calls = 0

    def __call__(self, *args: object) -> object:
        self.calls += 1
        raise jax.errors.JaxRuntimeError("NOT_FOUND: Function broadcast_compare_fusion not found")


def test_a_program_read_back_that_does_not_run_is_dropped_and_compiled_again(monkeypatch, tmp_path):
    monkeypatch.setattr(_compile_cache, "program_dir", lambda: tmp_path)  # the cache on
    sim = simulate_dawid_skene(n_tasks=150, n_workers=12, n_classes=3, labels_per_task=4, seed=3)
    expected = cb.DawidSkene().fit(sim.annotations)  # compiles and saves the program
    saved = dict(em._programs)
    assert saved, "the fit kept its program"
    broken = {key: _BrokenProgram(prog) for key, prog in saved.items()}
    dropped: list[str] = []
    monkeypatch.setattr(em, "_saved_em_chunk", lambda key: broken.get(key))
    monkeypatch.setattr(_compile_cache, "drop_program", dropped.append)
    got = cb.DawidSkene().fit(sim.annotations)
    assert sum(b.calls for b in broken.values()) == 1
    assert dropped and set(dropped) <= set(broken)
    np.testing.assert_allclose(got.proba_, expected.proba_, atol=1e-6)
    np.testing.assert_allclose(got.confusion_, expected.confusion_, atol=1e-6)
    assert got.n_iter_ == expected.n_iter_


def test_an_error_of_a_program_compiled_here_is_not_swallowed(monkeypatch, tmp_path):
    monkeypatch.setattr(_compile_cache, "program_dir", lambda: tmp_path)
    sim = simulate_dawid_skene(n_tasks=60, n_workers=7, n_classes=2, labels_per_task=3, seed=4)

    def broken_compile(model, key, state, data, hyper):
        return _BrokenProgram(jax.jit(lambda: 0).lower().compile())

    monkeypatch.setattr(em, "_saved_em_chunk", lambda key: None)
    monkeypatch.setattr(em, "_compile_em_chunk", broken_compile)
    with pytest.raises(jax.errors.JaxRuntimeError, match="NOT_FOUND"):
        cb.DawidSkene().fit(sim.annotations)


_HDS_TWICE = """
import crowdbayes as cb
from crowdbayes.simulate import simulate_dawid_skene
sim = simulate_dawid_skene(n_tasks=120, n_workers=10, n_classes=2, labels_per_task=3, seed=5)
fit = cb.HierarchicalDawidSkene(population_scale=1.0, ability_scale=0.5, max_iter=20)
print(fit.fit(sim.annotations).proba_.sum())
"""


def test_a_program_with_lapack_calls_is_not_saved_so_a_second_process_runs(tmp_path):
    """HierarchicalDawidSkene's EM loop calls LAPACK (``jnp.linalg.solve``): its compiled
    code holds the addresses of those kernels in the process that compiled it, so read back
    whole in another process it crashed that process (a segmentation fault in the second
    fresh run of any HDS fit). Such a program is left to JAX's own cache."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "CROWDBAYES_CACHE_DIR": str(tmp_path)}
    env.pop("CROWDBAYES_NO_CACHE", None)
    runs = [
        subprocess.run(
            [sys.executable, "-c", _HDS_TWICE], env=env, capture_output=True, text=True, timeout=300
        )
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr[-2000:]
    assert runs[0].stdout == runs[1].stdout
    saved = list((tmp_path).rglob("crowdbayes-programs/*.pkl"))
    assert saved == [], saved  # nothing of HDS's EM loop in crowdbayes' own cache
