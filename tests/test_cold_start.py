"""A fresh process: what ``import crowdbayes`` loads, the CLI's early errors, the
persistent compilation cache. Each check runs in a subprocess (a fresh interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("jax", "numpyro", "arviz", "plotly", "scipy", "matplotlib", "sklearn")


def run_python(code: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=300,
        **kw,
    )


def loaded_after(code: str, env: dict[str, str] | None = None) -> list[str]:
    """The heavy modules in sys.modules after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = run_python(probe, env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_crowdbayes_loads_no_heavy_dependency():
    assert loaded_after("import crowdbayes") == []


def test_names_load_on_first_use():
    assert loaded_after("import crowdbayes as cb; cb.MajorityVote; cb.datasets.load('rte')") == []
    assert "jax" in loaded_after("import crowdbayes as cb; cb.DawidSkene")
    assert "scipy" in loaded_after("from crowdbayes import recommended")
    code = "import crowdbayes as cb; print(sorted(set(cb.__all__) - set(dir(cb))))"
    assert run_python(code).stdout.strip() == "[]"
    out = run_python("import crowdbayes as cb; cb.no_such_name")
    assert "has no attribute 'no_such_name'" in out.stderr
