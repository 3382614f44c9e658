"""From a fresh process to an answer: imports, CLI errors, first fits, cold and warm cache.

Every figure is taken in a fresh interpreter (``python benchmarks/cold_start.py --child``),
crowdbayes and crowd-kit side by side in the same run, median of ``--repeat`` processes:

- **import**: ``import crowdbayes`` against ``import jax`` (and crowd-kit's
  ``crowdkit.aggregation``), timed inside the process.
- **CLI error**: wall time of ``crowdbayes aggregate missing.csv`` (the whole process),
  beside ``python -c pass``.
- **first fit**: a fresh process reads a 500,000-label CSV (``_common.synthetic``, as
  ``em_speed.py``) with ``pandas.read_csv`` and fits Dawid-Skene for 50 iterations (no
  early stop on either side); timed from reading the file to the fitted model (the
  imports before it are not timed). crowdbayes with the persistent compilation cache
  **cold** (a fresh empty ``CROWDBAYES_CACHE_DIR``), **warm** (a second process on the
  same directory) and **off** (``CROWDBAYES_NO_CACHE=1``); "programs compiled" counts
  the XLA compiles in the process (with the cache on, its misses: every compile goes
  through it).
- **5,000 first**: the same, with a fit on the file's first 5,000 labels before the
  500,000-label fit in the same process (another shape bucket, and above
  ``BUCKET_MAX_LABELS`` the exact shapes: it compiles again unless the cache holds it).
- **main job**: wall time of the README's ``crowdbayes aggregate --dataset rte --model mv
  --model ds``, cold and warm.

    python benchmarks/cold_start.py                  # 500k labels, 50 iterations, 3 repeats
    python benchmarks/cold_start.py --repeat 1 --no-peer

crowd-kit comes from the optional ``bench`` extra (``pip install crowdbayes[bench]``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------ child processes
def child_import(module: str) -> dict[str, float]:
    t0 = time.perf_counter()
    __import__(module)
    return {"s": time.perf_counter() - t0}


def child_fit(lib: str, path: str, iters: int, small: int) -> dict[str, float]:
    """Import (not timed), then read ``path`` and fit (timed); a ``small``-label fit first."""
    import pandas as pd

    events: list[str] = []
    if lib == "crowdbayes":
        import jax

        jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
        jax.monitoring.register_event_duration_secs_listener(
            lambda name, secs, **kw: events.append(name)
        )
        from crowdbayes.models.dawid_skene import DawidSkene

        # every compile goes through the cache when it is on (a miss); without it, count
        # XLA compiles
        cached = bool(getattr(jax.config, "jax_compilation_cache_dir", None))
        event = (
            "/jax/compilation_cache/cache_misses"
            if cached
            else "/jax/core/compile/backend_compile_duration"
        )

        def fit(df: pd.DataFrame) -> int:
            model = DawidSkene(max_iter=iters, tol=0.0).fit(df)
            return int(model.n_iter_)
    else:
        import numpy as np
        from crowdkit.aggregation import DawidSkene as CKDawidSkene

        event = ""

        def fit(df: pd.DataFrame) -> int:
            model = CKDawidSkene(n_iter=iters, tol=-np.inf).fit(df)
            return len(model.loss_history_)

    def compiled() -> int:
        return sum(e == event for e in events)

    out: dict[str, float] = {}
    t0 = time.perf_counter()
    df = pd.read_csv(path)
    if small:
        assert fit(df.iloc[:small]) == iters
        out["small_s"] = time.perf_counter() - t0
        out["small_compiled"] = compiled()
    t1 = time.perf_counter()
    if small:
        df = pd.read_csv(path)  # the big fit reads its file too
    assert fit(df) == iters
    out["fit_s"] = time.perf_counter() - t1
    out["compiled"] = compiled() - out.get("small_compiled", 0)
    return out


def child(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["import", "fit"])
    p.add_argument("--module", default="crowdbayes")
    p.add_argument("--lib", default="crowdbayes")
    p.add_argument("--path", default="")
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--small", type=int, default=0)
    a = p.parse_args(argv)
    sys.path.insert(0, str(HERE.parent / "src"))
    if a.what == "import":
        result = child_import(a.module)
    else:
        result = child_fit(a.lib, a.path, a.iters, a.small)
    print("RESULT " + json.dumps(result))


# ------------------------------------------------------------------ the parent
def _env(cache: str | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CROWDBAYES_NO_CACHE", "CROWDBAYES_CACHE_DIR")
    }
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent / "src"), env.get("PYTHONPATH", "")])
    if cache is None:
        env["CROWDBAYES_NO_CACHE"] = "1"
    else:
        env["CROWDBAYES_CACHE_DIR"] = cache
    return env


def run_child(args: list[str], cache: str | None) -> dict[str, float]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    proc = subprocess.run(cmd, env=_env(cache), capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def wall(cmd: list[str], cache: str | None, cwd: str | None = None) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(cache), capture_output=True, text=True, cwd=cwd)
    return time.perf_counter() - t0, proc.returncode


def median(values: list[float]) -> float:
    return statistics.median(values)


def cli_command() -> list[str]:
    script = Path(sys.executable).with_name("crowdbayes")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from crowdbayes.cli import main; sys.exit(main())"]


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--labels", type=int, default=500_000)
    p.add_argument("--small", type=int, default=5_000)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-peer", action="store_true", help="skip crowd-kit")
    args = p.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from _common import synthetic

    peer = not args.no_peer
    if peer:
        try:
            import crowdkit  # noqa: F401
        except ImportError:
            print("crowd-kit is not installed (pip install crowdbayes[bench]); no peer figures")
            peer = False
    load0 = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="cb-cold-"))
    results: dict[str, object] = {}
    try:
        csv = work / "labels.csv"
        synthetic(args.labels, seed=0).frame().to_csv(csv, index=False)
        r = args.repeat

        # (a) imports
        modules = ["jax", "crowdbayes", "crowdbayes.models.dawid_skene"]
        modules += ["crowdkit.aggregation"] if peer else []
        imports = {
            m: median([run_child(["import", "--module", m], None)["s"] for _ in range(r)])
            for m in modules
        }
        results["import_s"] = imports
        # (b) CLI on a missing file, beside an empty interpreter
        cli = cli_command()
        results["python_pass_s"] = median(
            [wall([sys.executable, "-c", "pass"], None)[0] for _ in range(r)]
        )
        errs = [wall([*cli, "aggregate", "missing.csv"], None, cwd=str(work)) for _ in range(r)]
        assert all(code == 2 for _, code in errs), errs
        results["cli_missing_s"] = median([t for t, _ in errs])

        # (c), (d) first fits
        def fits(small: int) -> dict[str, dict[str, float]]:
            rows: dict[str, list[dict[str, float]]] = {
                "cold": [],
                "warm": [],
                "off": [],
                "crowd-kit": [],
            }
            base = ["fit", "--path", str(csv), "--iters", str(args.iters), "--small", str(small)]
            for i in range(r):
                cache = str(work / f"cache-{small}-{i}")
                rows["cold"].append(run_child(base, cache))
                rows["warm"].append(run_child(base, cache))
                rows["off"].append(run_child(base, None))
                if peer:
                    rows["crowd-kit"].append(run_child([*base, "--lib", "crowdkit"], None))
            return {
                k: {f: median([row[f] for row in v]) for f in v[0]} for k, v in rows.items() if v
            }

        results["first_fit"] = fits(0)
        results["small_first"] = fits(args.small)

        # (e) the README's main job, cold then warm
        job = [*cli, "aggregate", "--dataset", "rte", "--model", "mv", "--model", "ds"]
        cold, warm = [], []
        for i in range(r):
            cache = str(work / f"cache-job-{i}")
            cold.append(wall(job, cache)[0])
            warm.append(wall(job, cache)[0])
        results["main_job_s"] = {"cold": median(cold), "warm": median(warm)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load1 = os.getloadavg()
    results["load"] = [round(load0[0], 2), round(load1[0], 2)]
    results["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report(results, args, peer)
    return results


def report(res: dict, args: argparse.Namespace, peer: bool) -> None:
    imp = res["import_s"]
    print(
        f"{res['date']}; load average {res['load'][0]} at the start, {res['load'][1]} at the end; "
        f"{args.labels:,} labels, {args.iters} iterations, median of {args.repeat} fresh processes\n"
    )
    print("| import | s (in process) |\n|---|---:|")
    for m, s in imp.items():
        print(f"| `import {m}` | {s:.2f} |")
    print(
        f"\n`import crowdbayes` / `import jax`: {imp['crowdbayes'] / imp['jax']:.2f}x; "
        "`crowdbayes.models.dawid_skene` (the first model, which loads jax) / `import jax`: "
        f"{imp['crowdbayes.models.dawid_skene'] / imp['jax']:.2f}x"
    )
    print(
        f"`crowdbayes aggregate missing.csv`: {res['cli_missing_s']:.2f} s wall "
        f"(`python -c pass`: {res['python_pass_s']:.2f} s)\n"
    )
    for key, title in (("first_fit", "first fit"), ("small_first", f"{args.small:,} labels first")):
        rows = res[key]
        ck = rows.get("crowd-kit", {}).get("fit_s")
        print(f"{title}: read {args.labels:,} labels + fit, in a fresh process\n")
        print("| run | fit (s) | programs compiled | crowd-kit (s) | ratio |")
        print("|---|---:|---:|---:|---:|")
        for run in ("cold", "warm", "off"):
            row = rows[run]
            ratio = f"{ck / row['fit_s']:.1f}x" if ck else "n/a"
            small = f" (after {row['small_s']:.2f} s on {args.small:,})" if "small_s" in row else ""
            cache = {"cold": "cache cold", "warm": "cache warm", "off": "no cache"}[run]
            print(
                f"| crowdbayes, {cache}{small} | {row['fit_s']:.2f} | {row['compiled']:.0f} | "
                f"{ck if ck else float('nan'):.2f} | {ratio} |"
            )
        print()
    job = res["main_job_s"]
    print(
        f"README main job (`crowdbayes aggregate --dataset rte --model mv --model ds`): "
        f"{job['cold']:.2f} s wall cold, {job['warm']:.2f} s warm"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        main()
