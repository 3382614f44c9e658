"""crowdbayes Dawid–Skene EM against crowd-kit's DawidSkene on one synthetic table.

Both fit the same 500,000-label long DataFrame (``task``, ``worker``, ``label``) for
the same number of iterations (no early stop on either side); each fit is timed
end to end (encoding included), repeated, and the median is reported with the ratio.
crowdbayes' one-off JIT compile is done in a warm-up fit and reported apart.

    python benchmarks/em_speed.py                 # 500k labels, 50 iterations, 5 repeats
    python benchmarks/em_speed.py --host-devices 2  # EM sharded over 2 CPU host devices

crowd-kit comes from the optional ``bench`` extra (``pip install crowdbayes[bench]``).
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--labels", type=int, default=500_000)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--workers", type=int, default=1000)
    p.add_argument("--labels-per-task", type=int, default=10)
    p.add_argument("--host-devices", type=int, default=0, help="shard EM over N CPU devices")
    p.add_argument("--no-peer", action="store_true", help="skip crowd-kit")
    args = p.parse_args(argv)
    if args.host_devices > 1:  # must be set before JAX starts
        flag = f"--xla_force_host_platform_device_count={args.host_devices}"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()

    import numpy as np
    from _common import synthetic, timed

    import crowdbayes as cb

    data = synthetic(args.labels, args.workers, args.classes, args.labels_per_task, seed=0)
    df = data.frame()
    devices = args.host_devices if args.host_devices > 1 else None
    ours = cb.DawidSkene(max_iter=args.iters, tol=0.0, devices=devices)
    compile_s, _ = timed(lambda: ours.fit(df))
    ours_s, _ = timed(lambda: ours.fit(df), args.repeat)
    assert ours.n_iter_ == args.iters
    acc = float((ours.label_codes_ == data.truth).mean())
    print(
        f"{args.labels:,} labels, {args.classes} classes, {args.workers} annotators, "
        f"{args.iters} iterations, median of {args.repeat}"
    )
    print(
        f"crowdbayes DawidSkene: {ours_s:8.3f} s  ({1e3 * ours_s / args.iters:.2f} ms/iteration "
        f"incl. encoding; first fit with compile {compile_s:.2f} s; accuracy {acc:.4f})"
    )
    out = {"crowdbayes_s": ours_s, "compile_s": compile_s}
    if args.no_peer:
        return out
    try:
        from crowdkit.aggregation import DawidSkene as CKDawidSkene
    except ImportError:
        print("crowd-kit is not installed (pip install crowdbayes[bench]); no ratio")
        return out
    peer = CKDawidSkene(n_iter=args.iters, tol=-np.inf)
    peer_s, _ = timed(lambda: peer.fit(df), args.repeat)
    assert len(peer.loss_history_) == args.iters
    peer_acc = float((peer.labels_.sort_index().to_numpy() == data.truth).mean())
    print(
        f"crowd-kit  DawidSkene: {peer_s:8.3f} s  ({1e3 * peer_s / args.iters:.2f} ms/iteration; "
        f"accuracy {peer_acc:.4f})"
    )
    print(f"crowdbayes is {peer_s / ours_s:.1f}x faster")
    out.update(crowdkit_s=peer_s, ratio=peer_s / ours_s)
    return out


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
