"""Many datasets, one process: ``recommended()`` on every real dataset one after another.

A research script or a benchmark fits many datasets of different sizes once each, in one
fresh process; compilation is what it waits for. This script fits ``recommended()``
(and, with ``--models``, other EM models) on each of ``benchmarks/accuracy.py``'s
datasets in turn, in a fresh subprocess, and reports the total wall time (reading the
files not timed, compilation included) and the XLA programs compiled:

- **buckets**: as shipped (EM fits of up to ``BUCKET_MAX_LABELS`` labels padded to
  shape buckets: one program per model and bucket);
- **exact**: every fit on its exact shapes (``BayesianAggregator._buckets = False``),
  what crowdbayes did before shape buckets;

``--compare`` times ``cb.compare`` instead (DawidSkene, OneCoinDawidSkene, MACE and
``recommended()``, 5-fold over rte's labels: 20 refits of near-equal sizes);
each with the persistent compilation cache off (``CROWDBAYES_NO_CACHE=1``: every compile
paid), **cold** (a fresh empty cache directory) and **warm** (a second process on that
directory); crowd-kit's DawidSkene on the same datasets in its own fresh process.

    python benchmarks/many_datasets.py
    python benchmarks/many_datasets.py --models recommended DawidSkene MACE --no-peer
    python benchmarks/many_datasets.py --compare --no-peer

crowd-kit comes from the optional ``bench`` extra (``pip install crowdbayes[bench]``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import json, sys, time
sys.path.insert(0, {here!r})
from pathlib import Path
from accuracy import default_root, load
root = default_root()
frames = [d for d in (load(f) for f in sorted(root.iterdir()) if f.is_dir()) if d is not None]
frames = [df for df, _ in frames]
models, exact = {models!r}, {exact!r}
n_compiled = []
if models == ["crowd-kit"]:
    from crowdkit.aggregation import DawidSkene
    make = [lambda: DawidSkene(n_iter=100)]
else:
    import jax
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, secs, **kw: n_compiled.append(secs)
        if event == "/jax/core/compile/backend_compile_duration" else None
    )
    import crowdbayes as cb
    from crowdbayes.models.bayesian import BayesianAggregator
    BayesianAggregator._buckets = not exact
    make = [getattr(cb, m) for m in models]
t = time.perf_counter()
if {compare!r}:
    df, _ = cb.datasets.load("rte")
    frames = [df]
    names = ["DawidSkene", "OneCoinDawidSkene", "MACE", "recommended"]
    cb.compare(df, {{m: getattr(cb, m)() for m in names}}, folds=5)
else:
    for df in frames:
        for m in make:
            m().fit(df)
total = time.perf_counter() - t
print(json.dumps({{"total_s": total, "datasets": len(frames), "compiled": len(n_compiled)}}))
"""


def run(
    models: list[str], exact: bool, cache: str | None, compare: bool = False
) -> dict[str, float]:
    code = CHILD.format(here=str(HERE), models=models, exact=exact, compare=compare)
    env = {**os.environ}
    if cache is None:
        env["CROWDBAYES_NO_CACHE"] = "1"
    else:
        env.pop("CROWDBAYES_NO_CACHE", None)
        env["CROWDBAYES_CACHE_DIR"] = cache
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=["recommended"])
    p.add_argument("--no-peer", action="store_true", help="skip crowd-kit")
    p.add_argument("--no-exact", action="store_true", help="skip the exact-shape runs")
    p.add_argument("--compare", action="store_true", help="time cb.compare on rte instead")
    args = p.parse_args(argv)
    print("cb.compare, 4 models x 5 folds on rte" if args.compare else f"models: {args.models}")
    print("| run | cache | total fit time (s), compilation included | programs compiled |")
    print("|---|---|---:|---:|")
    for exact in (False, True):
        if exact and args.no_exact:
            continue
        label = "exact shapes" if exact else "shape buckets"
        with tempfile.TemporaryDirectory() as tmp:
            for cache, where in (("off", None), ("cold", tmp), ("warm", tmp)):
                r = run(args.models, exact, where, args.compare)
                print(
                    f"| crowdbayes, {label} | {cache} | {r['total_s']:.2f} | {r['compiled']:.0f} |",
                    flush=True,
                )
    if not args.no_peer and not args.compare:
        r = run(["crowd-kit"], False, None)
        print(
            f"| crowd-kit DawidSkene ({r['datasets']:.0f} datasets) | - | {r['total_s']:.2f} | - |"
        )


if __name__ == "__main__":
    main()
