"""Probe: bagged posteriors (BayesBag) for recommended()'s Dawid–Skene EM.

recommended() tempers EM's posterior because Dawid–Skene is misspecified (annotators'
errors on a task are correlated). Bagging the posterior is the textbook answer to a
misspecified model (Bühlmann, 2014; Huggins & Miller, 2019, "Robust inference and model
criticism using bagged posteriors"): refit under Bayesian-bootstrap weights (Exp(1) per
annotator, per task, or both) and average the posteriors. This script fits
recommended()'s tempered EM (``em_temperature * sqrt(n)`` for a task with ``n`` labels,
prior 3 / 0.8 / 10) once unweighted and ``--bags`` times weighted, reports the average
of the posteriors at ``c * sqrt(n)``, picks ``c`` by mean expected calibration error on
all datasets and on all but one (held out), and prints, per setting: mean accuracy,
the datasets where it is at least as accurate as the best peer (``--peers``, the JSON
that ``accuracy.py --json`` writes), mean ECE and mean log-loss of the gold label.

The weighted EM here is a short NumPy copy of recommended()'s (the library's EM takes
no label weights); unweighted, its labels agree with recommended()'s on the gold tasks
(printed per dataset).

    python benchmarks/accuracy.py --nuts none --json results.json
    python benchmarks/bagging.py --peers results.json          # ../shared/datasets
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from accuracy import default_root, load, to_markdown  # noqa: E402
from calibration_loo import ece, log_loss, softmax_rows  # noqa: E402

import crowdbayes as cb  # noqa: E402
from crowdbayes.models.bayesian import vote_shares  # noqa: E402
from crowdbayes.models.dawid_skene import confusion_pseudo_counts  # noqa: E402
from crowdbayes.recommend import CalibratedDawidSkene  # noqa: E402

DEFAULT = CalibratedDawidSkene()
C = np.round(np.arange(0.6, 2.51, 0.05), 2)


def weighted_em(
    ann: cb.Annotations,
    task_weight: np.ndarray,
    worker_weight: np.ndarray,
    tau: np.ndarray,
    n_iter: int = 100,
) -> np.ndarray:
    """``[n_tasks, K]`` log joint at temperature 1 after tempered, weighted EM.

    A label weighs ``task_weight[task] * worker_weight[worker]`` in the M-step's
    counts; an annotator's log-likelihood terms are scaled by its weight in the E-step.
    """
    K, W, T = ann.n_classes, ann.n_workers, ann.n_tasks
    t, w, lab = ann.task, ann.worker, ann.label
    prior = confusion_pseudo_counts(K, DEFAULT.prior_strength, DEFAULT.prior_accuracy)
    label_weight = task_weight[t] * worker_weight[w]
    cell = w * K + lab
    q = vote_shares(ann)
    log_joint = np.zeros((T, K))
    for _ in range(n_iter):
        counts = np.stack(
            [np.bincount(cell, label_weight * q[t, k], W * K).reshape(W, K) for k in range(K)],
            axis=1,
        )
        counts += prior
        log_conf = np.log(counts / counts.sum(-1, keepdims=True))
        class_counts = (task_weight[:, None] * q).sum(0) + DEFAULT.class_prior_strength
        log_joint = np.tile(np.log(class_counts / class_counts.sum()), (T, 1))
        for k in range(K):
            log_joint[:, k] += np.bincount(t, log_conf[w, k, lab] * worker_weight[w], T)
        q = softmax_rows(log_joint / tau[:, None])
    return log_joint


def fit_dataset(
    df: pd.DataFrame, gold: pd.Series, modes: list[str], temps: list[float], n_bags: int, seed: int
) -> dict:
    ann = cb.as_annotations(df)
    model = CalibratedDawidSkene().fit(ann)
    tasks = model.predict().index
    gold = gold[gold.index.isin(tasks)]
    rows = tasks.get_indexer(gold.index)
    classes = [str(c) for c in model.predict_proba().columns]
    gold_code = np.array([classes.index(g) if g in classes else -1 for g in gold.astype(str)])
    n = np.maximum(ann.labels_per_task(), 1).astype(np.float64)
    out: dict = {"gold_code": gold_code, "n": n[rows], "log_joints": {}}
    rng = np.random.default_rng(seed)
    ones_t, ones_w = np.ones(ann.n_tasks), np.ones(ann.n_workers)
    for e in temps:
        tau = e * np.sqrt(n)
        single = weighted_em(ann, ones_t, ones_w, tau)[rows]
        out["log_joints"][("single", e)] = single[None]
        if e == DEFAULT.em_temperature:
            same = (single.argmax(1) == model.proba_[rows].argmax(1)).mean()
            print(f"  labels as recommended()'s on {same:.1%} of gold tasks", flush=True)
        for mode in modes:
            draws = []
            for _ in range(n_bags):
                tw = rng.exponential(size=ann.n_tasks) if mode != "annotators" else ones_t
                ww = rng.exponential(size=ann.n_workers) if mode != "tasks" else ones_w
                draws.append(weighted_em(ann, tw, ww, tau)[rows])
            out["log_joints"][(mode, e)] = np.stack(draws)
    return out


def reported(log_joints: np.ndarray, n: np.ndarray, c: float) -> np.ndarray:
    """The average over bags of the posterior at temperature ``c * sqrt(n)``."""
    return softmax_rows(log_joints / (c * np.sqrt(n))[None, :, None]).mean(axis=0)


def best_peer(path: Path | None) -> dict[str, float]:
    if path is None:
        return {}
    res = pd.DataFrame(json.loads(path.read_text()))
    res = res[res["peer"] & (res["status"] == "ok")]
    return res.groupby("dataset")["accuracy"].max().to_dict()


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("root", nargs="?", type=Path, default=default_root())
    p.add_argument("--peers", type=Path, help="accuracy.py --json output, for the wins column")
    p.add_argument("--bags", type=int, default=30)
    p.add_argument("--modes", nargs="*", default=["annotators", "tasks", "both"])
    p.add_argument("--em-temperatures", nargs="*", type=float, default=[0.3, 0.4, 0.5])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    peers = best_peer(args.peers)
    fits = {}
    for folder in sorted(f for f in args.root.iterdir() if f.is_dir()):
        loaded = load(folder)
        if loaded is not None:
            print(folder.name, flush=True)
            fits[folder.name] = fit_dataset(
                *loaded, args.modes, args.em_temperatures, args.bags, args.seed
            )
    names = list(fits)
    rows = []
    for key in fits[names[0]]["log_joints"]:
        probas = [[reported(f["log_joints"][key], f["n"], c) for f in fits.values()] for c in C]
        golds = [f["gold_code"] for f in fits.values()]
        table = np.array([[ece(pr, g) for pr, g in zip(row, golds, strict=True)] for row in probas])
        best = int(table.mean(axis=1).argmin())
        held = [table[np.delete(table, j, 1).mean(1).argmin(), j] for j in range(len(names))]
        acc = [float((pr.argmax(1) == g).mean()) for pr, g in zip(probas[best], golds, strict=True)]
        wins = sum(a >= peers[nm] - 5e-5 for nm, a in zip(names, acc, strict=True) if nm in peers)
        rows.append(
            {
                "posterior": key[0] if key[0] == "single" else f"bagged over {key[0]}",
                "EM temperature / sqrt(n)": key[1],
                "c (on all)": C[best],
                "mean accuracy": np.mean(acc),
                "datasets >= best peer": wins if peers else np.nan,
                "mean ECE (all)": table[best].mean(),
                "held-out mean ECE": float(np.mean(held)),
                "mean log-loss": np.mean(
                    [log_loss(pr, g) for pr, g in zip(probas[best], golds, strict=True)]
                ),
            }
        )
    out = pd.DataFrame(rows).set_index("posterior")
    print(to_markdown(out.round(4)))
    return out


if __name__ == "__main__":
    main()
