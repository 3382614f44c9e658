"""EM time and memory from 50,000 to 10,000,000 labels, beside crowd-kit's DawidSkene.

For each size a synthetic crowd (see ``_common.synthetic``: tasks, annotators,
classes, labels per task, annotator quality spread) is fitted by crowdbayes'
Dawid–Skene EM for a fixed number of iterations, in a fresh subprocess so that its
peak memory is its own. crowd-kit fits the same long DataFrame for the same number
of iterations wherever the previous size predicts that it finishes within ``--cap``
seconds. Printed per size: crowdbayes fit time (layout build + EM, from encoded
labels), time per iteration, encoding time from the DataFrame, crowd-kit's time per
iteration and the ratio, and crowdbayes' peak memory above the label arrays': the growth
of the process's peak resident size during the fit over its resident size before it, in
MB and as a multiple of the three int32 label arrays. The fit measured is the second of
its process (a first compiles); ``--once`` measures the first instead (a fresh process:
JAX's start, imports and the compile included).

    python benchmarks/scale.py                       # 50k .. 10M labels, 50 iterations
    python benchmarks/scale.py --sizes 500000 --iters 50
    python benchmarks/scale.py --host-devices 2      # EM sharded over 2 CPU devices
    python benchmarks/scale.py --devices 1           # on a GPU machine: its first device
    python benchmarks/scale.py --sizes 10000000 --parquet 1 2   # from Parquet: 1, 2 processes
    python benchmarks/scale.py --sizes 10000000 --no-peer --once  # a fresh process's fit

``--parquet N ...`` writes each size's crowd to a Parquet dataset (4 files, row groups of
2**20 rows; integer ids) in a temporary folder, then fits it with
``crowdbayes.distributed.fit`` in ``N`` local processes on JAX's distributed runtime
(one row per ``N``): each process reads its hashed share of the rows, encodes it with
pyarrow and fits; a first fit compiles, the second is timed. Printed per row: the
slowest process's whole fit (read + encode + layouts + EM), its phases, and the
largest peak resident memory of a process above its own resident size before the
fit, also as a multiple of that process's three int32 label arrays (with several
processes, a line below the row gives every process's).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _peak_reset() -> None:
    try:  # Linux: writing 5 resets the peak resident size (VmHWM)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _vm(field: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    from _common import peak_rss_mb

    return peak_rss_mb()


def child(args: argparse.Namespace) -> dict[str, float]:
    """One size, one library, in this (fresh) process."""
    import gc
    import time

    import numpy as np
    from _common import synthetic

    data = synthetic(
        args.size,
        args.workers,
        args.classes,
        args.labels_per_task,
        quality_spread=args.spread,
        seed=0,
    )
    label_mb = 3 * 4 * data.ann.n_labels / 2**20
    out: dict[str, float] = {"size": args.size, "label_mb": label_mb}
    if args.lib == "crowdkit":
        from crowdkit.aggregation import DawidSkene as CK

        df = data.frame()
        t0 = time.perf_counter()
        CK(n_iter=args.iters, tol=-np.inf).fit(df)
        out["crowdkit_s"] = time.perf_counter() - t0
        return out
    import jax

    import crowdbayes as cb
    from crowdbayes.inference.em import em_data, is_bucketed, run_em
    from crowdbayes.models.dawid_skene import DawidSkeneModel, vote_shares

    devices = args.devices or None
    df = data.frame()
    t0 = time.perf_counter()
    cb.as_annotations(df)
    out["encode_s"] = time.perf_counter() - t0
    del df
    model = cb.DawidSkene(max_iter=args.iters, tol=0.0, devices=devices)
    if not args.once:
        model.fit(data.ann)  # compile
    gc.collect()
    base = _vm("VmRSS")
    _peak_reset()
    t0 = time.perf_counter()
    model.fit(data.ann)
    out["fit_s"] = time.perf_counter() - t0
    out["peak_extra_mb"] = _vm("VmHWM") - base
    out["accuracy"] = float((model.label_codes_ == data.truth).mean())
    # split the fit: layout build, then the EM loop alone (already compiled), on the
    # layout the fit used (shape-bucketed for small fits, exact for large ones)
    fit_devices = model._fit_devices()
    t0 = time.perf_counter()
    emd = em_data(data.ann, devices=fit_devices)
    jax.block_until_ready(emd)
    laid_out = fit_devices is not None or is_bucketed(emd)
    hyper = model._sharded_hyper(data.ann, emd) if laid_out else model._hyper(data.ann)
    out["layout_s"] = time.perf_counter() - t0
    init = vote_shares(data.ann)
    t0 = time.perf_counter()
    run_em(DawidSkeneModel, emd, init, hyper, max_iter=args.iters, tol=0.0)
    out["em_s"] = time.perf_counter() - t0
    out["n_devices"] = len(jax.devices()) if devices is None else float(len(emd.gold.devices()))
    return out


def write_parquet(args: argparse.Namespace, size: int, folder: Path) -> Path:
    """The crowd of ``size`` labels as a Parquet dataset of 4 files (integer ids)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from _common import synthetic

    data = synthetic(
        size, args.workers, args.classes, args.labels_per_task, quality_spread=args.spread, seed=0
    )
    ann = data.ann
    out = folder / f"labels-{size}"
    out.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, ann.n_labels, 5).astype(np.int64)
    for i in range(4):
        part = slice(int(bounds[i]), int(bounds[i + 1]))
        table = pa.table(
            {"task": ann.task[part], "worker": ann.worker[part], "label": ann.label[part]}
        )
        pq.write_table(table, out / f"part-{i}.parquet", row_group_size=1 << 20)
    return out


def dist_child(args: argparse.Namespace) -> dict[str, float]:
    """One process of a ``--parquet`` row: two fits (the first compiles), the second timed
    (``--once``: one fit, timed with its compile and the runtime start)."""
    import gc
    import time

    import crowdbayes as cb

    kw: dict[str, object] = {}
    if args.num_processes > 1:
        kw = dict(
            coordinator_address=f"127.0.0.1:{args.port}",
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    if args.no_shuffle:
        kw["shuffle"] = False
    if not args.once:  # a first fit compiles (and starts the distributed runtime)
        cb.distributed.fit(args.data, "ds", max_iter=args.iters, tol=0.0, **kw)
        kw = {"shuffle": kw["shuffle"]} if "shuffle" in kw else {}
    gc.collect()
    base = _vm("VmRSS")
    _peak_reset()
    t0 = time.perf_counter()
    res = cb.distributed.fit(args.data, "ds", max_iter=args.iters, tol=0.0, **kw)
    out: dict[str, float] = {"fit_s": time.perf_counter() - t0, **res.timings}
    out["peak_extra_mb"] = _vm("VmHWM") - base
    out["label_mb"] = 3 * 4 * res.n_labels / 2**20
    out["n_labels"] = res.n_labels
    out["n_iter"] = res.n_iter
    return out


def parquet_rows(args: argparse.Namespace, env: dict[str, str]) -> list[dict[str, float]]:
    """``--parquet``: each size from Parquet in each number of local processes."""
    import socket
    import tempfile

    print(
        f"\nFrom Parquet (crowdbayes.distributed.fit, ds, "
        f"{'every process reads everything' if args.no_shuffle else 'all-to-all shuffle'}), "
        f"{args.iters} iterations; the "
        "slowest process's times, the largest peak memory of a process"
    )
    print(
        "| labels | processes | fit (s) | read (s) | encode (s) | layout (s) | EM (s) "
        "| ms/iteration | peak memory above start, per process (MB) |"
    )
    print("|---:" * 9 + "|")
    rows = []
    with tempfile.TemporaryDirectory(prefix="crowdbayes-scale-") as tmp:
        for size in args.sizes:
            data = write_parquet(args, size, Path(tmp))
            for n in args.parquet:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", 0))
                    port = sock.getsockname()[1]
                cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "dist",
                       "--data", str(data), "--iters", str(args.iters),
                       "--num-processes", str(n), "--port", str(port),
                       *(["--no-shuffle"] if args.no_shuffle else []),
                       *(["--once"] if args.once else [])]  # fmt: skip
                procs = [
                    subprocess.Popen(
                        [*cmd, "--process-id", str(i)],
                        env=env,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                    for i in range(n)
                ]
                results, failed = [], False
                for proc in procs:
                    try:
                        stdout, stderr = proc.communicate(timeout=1800)
                    except subprocess.TimeoutExpired:
                        for q in procs:
                            q.kill()
                        stdout, stderr = proc.communicate()
                    if proc.returncode != 0:
                        failed = True
                        print(stderr[-2000:], file=sys.stderr)
                        continue
                    results.append(json.loads(stdout.strip().splitlines()[-1]))
                if failed:
                    print(f"| {size:,} | {n} | failed |")
                    continue
                slow = max(results, key=lambda r: r["fit_s"])
                mem = max(results, key=lambda r: r["peak_extra_mb"])
                row = {"size": size, "processes": n, **slow, "peak_extra_mb": mem["peak_extra_mb"]}
                # each process's peak above its start and its own label arrays
                row["per_process"] = [[r["peak_extra_mb"], r["label_mb"]] for r in results]
                rows.append(row)
                print(
                    f"| {size:,} | {n} | {slow['fit_s']:.2f} | {slow['read_s']:.2f} "
                    f"| {slow['encode_s']:.2f} | {slow['layout_s']:.2f} | {slow['em_s']:.2f} "
                    f"| {1e3 * slow['em_s'] / args.iters:.1f} | {mem['peak_extra_mb']:.0f} "
                    f"({mem['peak_extra_mb'] / mem['label_mb']:.1f}x {mem['label_mb']:.0f}) |",
                    flush=True,
                )
                if n > 1:
                    each = ", ".join(
                        f"{r['peak_extra_mb']:.0f} MB ({r['peak_extra_mb'] / r['label_mb']:.1f}x "
                        f"{r['label_mb']:.0f})"
                        for r in results
                    )
                    print(f"  per process: {each}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[50_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000],
    )
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--workers", type=int, default=1000)
    p.add_argument("--labels-per-task", type=int, default=10)
    p.add_argument("--spread", type=float, default=0.15, help="annotator accuracy spread (sd)")
    p.add_argument("--cap", type=float, default=30.0, help="crowd-kit time cap per size, s")
    p.add_argument("--host-devices", type=int, default=0, help="CPU host devices for sharding")
    p.add_argument("--devices", type=int, default=0, help="shard EM over this many devices")
    p.add_argument("--no-peer", action="store_true")
    p.add_argument(
        "--parquet",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="only rows from Parquet, fitted in N local processes (crowdbayes.distributed)",
    )
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument(
        "--no-shuffle",
        action="store_true",
        help="--parquet: every process reads every row group, keeping its tasks' rows "
        "(default: each reads its share of the row groups, then an all-to-all)",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="time the first fit of a fresh process (JAX's start and the compile included) "
        "and skip the warm-up fit (for the largest sizes, and for the memory of a fresh "
        "process)",
    )
    p.add_argument("--child", choices=["crowdbayes", "crowdkit", "dist"], help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--num-processes", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child == "dist":
        print(json.dumps(dist_child(args)))
        return []
    if args.child:
        args.lib = args.child
        print(json.dumps(child(args)))
        return []

    env = dict(os.environ)
    if args.host_devices > 1:
        flag = f"--xla_force_host_platform_device_count={args.host_devices}"
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flag).strip()
        if not args.devices:
            args.devices = args.host_devices
    if args.parquet:
        rows = parquet_rows(args, env)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        return rows
    common = [
        "--iters",
        str(args.iters),
        "--classes",
        str(args.classes),
        "--workers",
        str(args.workers),
        "--labels-per-task",
        str(args.labels_per_task),
        "--spread",
        str(args.spread),
        "--devices",
        str(args.devices),
        *(["--once"] if args.once else []),
    ]

    def run(lib: str, size: int, timeout: float | None = None) -> dict[str, float] | None:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            lib,
            "--size",
            str(size),
            *common,
        ]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return None
        return json.loads(proc.stdout.strip().splitlines()[-1])

    have_peer = False
    if not args.no_peer:
        try:
            import crowdkit  # noqa: F401

            have_peer = True
        except ImportError:
            print("crowd-kit is not installed (pip install crowdbayes[bench]): crowdbayes only")
    print(
        f"Dawid–Skene EM, {args.iters} iterations, {args.classes} classes, {args.workers} "
        f"annotators, {args.labels_per_task} labels/task"
        + (f", sharded over {args.devices} devices" if args.devices else "")
    )
    header = (
        "| labels | crowdbayes fit (s) | layout (s) | EM (s) | ms/iteration | encode (s) "
        "| crowd-kit ms/iteration | ratio (fit) | peak memory above labels (MB) | accuracy |"
    )
    print(header)
    print("|---:" * 10 + "|")
    rows, per_label = [], None
    for size in args.sizes:
        r = run("crowdbayes", size)
        if r is None:
            print(f"| {size:,} | failed |")
            continue
        peer = "n/a"
        ratio = "n/a"
        if have_peer:
            predicted = per_label * size if per_label is not None else 0.0
            if predicted <= args.cap:
                ck = run("crowdkit", size, timeout=max(3 * args.cap, 60))
                if ck is not None:
                    r["crowdkit_s"] = ck["crowdkit_s"]
                    per_label = ck["crowdkit_s"] / size
                    peer = f"{1e3 * ck['crowdkit_s'] / args.iters:.1f}"
                    ratio = f"{ck['crowdkit_s'] / r['fit_s']:.1f}x"
                else:
                    peer = "over cap"
            else:
                peer = f"skipped (~{predicted:.0f} s > cap)"
        rows.append(r)
        print(
            f"| {size:,} | {r['fit_s']:.3f} | {r['layout_s']:.3f} | {r['em_s']:.3f} "
            f"| {1e3 * r['em_s'] / args.iters:.2f} | {r['encode_s']:.3f} | {peer} | {ratio} "
            f"| {r['peak_extra_mb']:.0f} ({r['peak_extra_mb'] / r['label_mb']:.1f}x "
            f"{r['label_mb']:.0f}) | {r['accuracy']:.4f} |",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
