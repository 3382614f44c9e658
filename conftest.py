"""Test-session settings shared by tests/ and the doctests under src/ (pytest loads this
file for any path below the repository root)."""

import os

# No persistent compilation cache in test runs: nothing written to the user's home, no
# programs shared between concurrent xdist workers, every run compiles as a fresh user's
# would. tests/test_cold_start.py checks the cache itself in subprocesses.
os.environ.setdefault("CROWDBAYES_NO_CACHE", "1")
