"""CrowdLab against cleanlab's get_label_quality_multiannotator, same data, one run.

100,000 items x 50 annotators, 3 labels per item, 5 classes, a noisy classifier;
prints both times, the ratio, and whether the results agree.

    .venv/bin/python benchmarks/crowdlab_speed.py [--tasks 100000]
"""

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from crowdbayes.models.crowdlab import CrowdLab


def make(n_tasks: int, n_workers: int, per_task: int, K: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth = rng.integers(K, size=n_tasks)
    acc = rng.uniform(0.4, 0.9, n_workers)
    workers = np.argsort(rng.random((n_tasks, n_workers)), axis=1)[:, :per_task]
    right = rng.random(workers.shape) < acc[workers]
    labels = np.where(right, truth[:, None], rng.integers(K, size=workers.shape))
    wide = np.full((n_tasks, n_workers), np.nan)
    np.put_along_axis(wide, workers, labels.astype(float), axis=1)
    logits = rng.normal(size=(n_tasks, K)) + 2.0 * np.eye(K)[truth]
    pp = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return pd.DataFrame(wide, columns=[f"w{j}" for j in range(n_workers)]), pp


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=50)
    ap.add_argument("--per-task", type=int, default=3)
    ap.add_argument("--classes", type=int, default=5)
    args = ap.parse_args()
    wide, pp = make(args.tasks, args.workers, args.per_task, args.classes)
    print(
        f"{args.tasks} items x {args.workers} annotators, {args.per_task} labels/item, "
        f"{args.classes} classes"
    )
    CrowdLab().fit(wide.iloc[:1000], pred_probs=pp[:1000])  # warm caches (numpy/pandas)
    t0 = time.perf_counter()
    cl = CrowdLab().fit(wide, pred_probs=pp)
    lq, stats = cl.label_quality(), cl.annotator_quality()
    detailed = cl.detailed_label_quality()
    t_ours = time.perf_counter() - t0
    print(f"crowdbayes CrowdLab (fit + label_quality + detailed + annotator_stats): {t_ours:.2f} s")
    try:
        from cleanlab.multiannotator import get_label_quality_multiannotator
    except ImportError:
        print("cleanlab not installed: no comparison")
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        ref = get_label_quality_multiannotator(wide, pp, verbose=False)
        t_cl = time.perf_counter() - t0
    print(f"cleanlab get_label_quality_multiannotator: {t_cl:.2f} s")
    print(f"speed-up: {t_cl / t_ours:.1f}x")
    same = (ref["label_quality"]["consensus_label"].to_numpy() == lq["consensus_label"]).mean()
    err = np.abs(
        ref["label_quality"]["consensus_quality_score"].to_numpy()
        - lq["consensus_quality_score"].to_numpy()
    ).max()
    st = ref["annotator_stats"]
    aq = np.nanmax(np.abs(st["annotator_quality"] - stats.loc[st.index, "annotator_quality"]))
    dq = np.nanmax(np.abs(ref["detailed_label_quality"].to_numpy() - detailed.to_numpy()))
    print(
        f"same consensus labels: {same:.6f}; max |quality diff| {err:.1e}, "
        f"annotator quality {aq:.1e}, detailed {dq:.1e}"
    )


if __name__ == "__main__":
    main()
