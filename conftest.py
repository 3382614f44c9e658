"""Test-session settings shared by tests/ and the doctests under src/ (pytest loads this
file for any path below the repository root)."""

import os
import shutil
import tempfile
from pathlib import Path

# No persistent compilation cache by default: nothing written to the user's home, every
# run compiles as a fresh user's would, and no process runs a program another one
# compiled (a run with the shared cache below crashed once in an HDS EM program, cause
# not found). tests/test_cold_start.py checks the cache itself in subprocesses.
# CROWDBAYES_TEST_CACHE=1 gives the run a cache of its own: a fresh directory under the
# system's temporary directory, made by the process pytest starts and inherited by its
# pytest-xdist workers (through the environment), so that a program one worker compiled
# is read back by the others; removed when the run ends. CROWDBAYES_TEST_CACHE_DIR=DIR
# keeps one across runs (never removed).
_OWNED = False
if os.environ.get("CROWDBAYES_TEST_CACHE_DIR"):  # ours (inherited) or the caller's
    _CACHE: Path | None = Path(os.environ["CROWDBAYES_TEST_CACHE_DIR"])
elif os.environ.get("CROWDBAYES_TEST_CACHE", "").strip().lower() in ("1", "true", "yes"):
    _CACHE = Path(tempfile.mkdtemp(prefix="crowdbayes-test-cache-"))
    os.environ["CROWDBAYES_TEST_CACHE_DIR"] = str(_CACHE)
    _OWNED = True
else:
    _CACHE = None
    os.environ.setdefault("CROWDBAYES_NO_CACHE", "1")
if _CACHE is not None:
    os.environ["CROWDBAYES_CACHE_DIR"] = str(_CACHE)
    os.environ.pop("CROWDBAYES_NO_CACHE", None)
    # nothing from the user's shell reaches JAX's own cache settings
    os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)


def pytest_configure(config):
    # JAX writes its entries without a lock: two workers compiling one program at once may
    # read half an entry; JAX warns and compiles it again (no wrong result)
    for what in ("reading", "writing"):
        config.addinivalue_line(
            "filterwarnings",
            f"ignore:Error {what} persistent compilation cache entry:UserWarning",
        )


def pytest_unconfigure(config):
    if _OWNED and _CACHE is not None:  # the process that made the directory removes it
        shutil.rmtree(_CACHE, ignore_errors=True)
