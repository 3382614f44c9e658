#!/usr/bin/env bash
# Set up a fresh machine and run every check CI runs: install, lint, format, types, tests + doctests.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test,bench]"

# The HTML report test drives a real headless browser; install Debian's chromium where missing.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the browser test will be skipped"
fi

.venv/bin/ruff check src tests benchmarks docs
.venv/bin/ruff format --check src tests benchmarks docs
.venv/bin/mypy
# tests in parallel, one worker per core (most of the time is single-threaded XLA compiles)
.venv/bin/python -m pytest -q -n auto
.venv/bin/python -m pip install -q -e ".[docs]" && NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict -q --site-dir "$(mktemp -d)"  # the reference site (mkdocs.yml, docs extra), warnings as errors
