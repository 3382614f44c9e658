"""How long ``cb.compare`` takes per model, each in a fresh process (what a user waits for).

For each bundled dataset and each model of ``cb.compare``'s default list (and
ItemDifficulty), a new Python process imports crowdbayes, loads the dataset and runs
``cb.compare(df, {name: model})`` (5 folds over labels); the time printed is
``compare`` alone (the import and the loading are not counted), once with no
persistent compilation cache (``CROWDBAYES_NO_CACHE=1``: a first run on a new machine)
and once with the cache warm (a run after any earlier one).

    python benchmarks/compare_speed.py [--datasets rte bluebirds] [--write]

``--write`` puts the table into ``docs/benchmarks.md`` ("## cb.compare time").
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from coverage import replace_section  # noqa: E402

MODELS = [
    "recommended",
    "DawidSkene",
    "OneCoinDawidSkene",
    "ClassConditionalDawidSkene",
    "MACE",
    "HierarchicalDawidSkene",
    "ItemDifficulty",
]

CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
import crowdbayes as cb
name, model = sys.argv[1], sys.argv[2]
df, _ = cb.datasets.load(name)
est = cb.recommended() if model == "recommended" else getattr(cb, model)()
start = time.perf_counter()
table = cb.compare(df, {model: est})
print(json.dumps({"seconds": time.perf_counter() - start,
                  "elpd": float(table["elpd"].iloc[0]), "se": float(table["se"].iloc[0])}))
"""


def one(dataset: str, model: str, cache: bool) -> dict:
    env = dict(os.environ)
    env.pop("CROWDBAYES_NO_CACHE", None)
    if not cache:
        env["CROWDBAYES_NO_CACHE"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", CHILD, dataset, model],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["rte", "bluebirds"])
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    lines = [
        "| dataset | model | no cache (s) | cache warm (s) | elpd | se |",
        "|---|---|---:|---:|---:|---:|",
    ]
    worst = {True: 0.0, False: 0.0}
    for dataset in args.datasets:
        for model in MODELS:
            cold = one(dataset, model, cache=False)
            one(dataset, model, cache=True)  # fills the cache
            warm = one(dataset, model, cache=True)
            worst[False] = max(worst[False], cold["seconds"])
            worst[True] = max(worst[True], warm["seconds"])
            row = (
                f"| {dataset} | {model} | {cold['seconds']:.1f} | {warm['seconds']:.1f} | "
                f"{cold['elpd']:.1f} | {cold['se']:.1f} |"
            )
            lines.append(row)
            print(row, flush=True)
    body = "\n".join(
        [
            f"`python benchmarks/compare_speed.py --write`, {datetime.date.today().isoformat()}, "
            f"load average {load:.1f} on the 2-core machine: `cb.compare(df, {{model: ...}})` "
            "(5 folds over labels) per model, each in a fresh process, the import and loading "
            "not counted. Slowest: "
            f"{worst[False]:.1f} s without a persistent compilation cache (a first run), "
            f"{worst[True]:.1f} s with it warm (the default after any earlier run). "
            "HierarchicalDawidSkene's empirical-Bayes scales are estimated once on all the "
            "labels and held fixed in the folds.",
            "",
            *lines,
        ]
    )
    print(body)
    if args.write:
        path = ROOT / "docs" / "benchmarks.md"
        text = path.read_text(encoding="utf-8")
        path.write_text(replace_section(text, "cb.compare time", body), encoding="utf-8")


if __name__ == "__main__":
    main()
