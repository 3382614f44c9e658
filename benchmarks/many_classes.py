"""Many classes: every EM model on 100 classes, 300 tasks, 600 labels, compilation included.

Each model is fitted once in a fresh subprocess (``CROWDBAYES_NO_CACHE=1``: nothing read
from the persistent compilation cache, so the time includes every compile) and the
time of ``fit`` is reported (the import and the data are not timed), with the number of
XLA programs compiled; crowd-kit's DawidSkene and MACE fit the same table side by side.

    python benchmarks/many_classes.py                  # K = 100, 600 labels
    python benchmarks/many_classes.py --classes 20 50 100 --models DawidSkene

crowd-kit comes from the optional ``bench`` extra (``pip install crowdbayes[bench]``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = (
    "DawidSkene",
    "OneCoinDawidSkene",
    "ClassConditionalDawidSkene",
    "MACE",
    "ItemDifficulty",
    "HierarchicalDawidSkene",
    "recommended",
)
PEERS = ("crowd-kit DawidSkene", "crowd-kit MACE")

CHILD = """
import json, sys, time
sys.path.insert(0, {here!r})
from _common import synthetic
import jax
data = synthetic({labels}, {workers}, {classes}, 2, seed=0)
df = data.frame()
name = {name!r}
n_compiled = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, secs, **kw: n_compiled.append(secs)
    if event == "/jax/core/compile/backend_compile_duration" else None
)
if name.startswith("crowd-kit"):
    from crowdkit.aggregation import MACE, DawidSkene
    model = DawidSkene(n_iter=50) if name.endswith("DawidSkene") else MACE(n_iter=50)
else:
    import crowdbayes as cb
    model = getattr(cb, name)()
t = time.perf_counter()
model.fit(df)
fit_s = time.perf_counter() - t
print(json.dumps({{"fit_s": fit_s, "compiled": len(n_compiled), "compile_s": sum(n_compiled)}}))
"""


def run(name: str, classes: int, labels: int, workers: int) -> dict[str, float]:
    code = CHILD.format(here=str(HERE), labels=labels, workers=workers, classes=classes, name=name)
    env = {**os.environ, "CROWDBAYES_NO_CACHE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"{name}: {out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--classes", type=int, nargs="+", default=[100])
    p.add_argument("--labels", type=int, default=600)
    p.add_argument("--workers", type=int, default=50)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--no-peer", action="store_true", help="skip crowd-kit")
    args = p.parse_args(argv)
    names = list(args.models) + ([] if args.no_peer else list(PEERS))
    rows: list[dict[str, object]] = []
    print(f"{args.labels} labels on {args.labels // 2} tasks, {args.workers} annotators")
    print("| classes | model | fit (s), compilation included | programs | compile (s) |")
    print("|---:|---|---:|---:|---:|")
    for K in args.classes:
        for name in names:
            try:
                r = run(name, K, args.labels, args.workers)
            except RuntimeError as err:
                if name.startswith("crowd-kit") and "No module named" in str(err):
                    continue
                raise
            rows.append({"classes": K, "model": name, **r})
            print(
                f"| {K} | {name} | {r['fit_s']:.2f} | {r['compiled']:.0f} | {r['compile_s']:.2f} |",
                flush=True,
            )
    return rows


if __name__ == "__main__":
    main()
