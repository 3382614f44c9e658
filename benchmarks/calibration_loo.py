"""Leave-one-dataset-out check of how recommended() reports its probabilities.

recommended() runs Dawid–Skene EM at temperature ``0.4 * sqrt(n)`` for a task with ``n``
labels and reports the posterior at ``T = c * sqrt(n * design)`` (``c = 1.5``), where
``design = 1 + (n - 1) * rho`` and ``rho`` is the correlation of labels within a task
estimated from the vote counts (``label_correlation_``). This script fits
that EM once per dataset folder (``labels.csv``, ``truth.csv``) and scores other ways of
reporting it: other forms of ``T`` (in ``n``, the number of classes ``K``, a task's
vote entropy), and two posteriors that take the confusion matrices' uncertainty into
account (each task scored with confusion matrices that leave out its own labels; the
average over draws from the confusion matrices' Dirichlet posterior). For each, the
constants are picked on all datasets but one (lowest mean expected calibration error of
the top class, 10 bins, as in ``accuracy.py``) and the one left out is scored, so the
held-out ECE is what constants chosen without a dataset give on it.

    python benchmarks/calibration_loo.py                # ../shared/datasets
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from accuracy import default_root, load, scores, to_markdown  # noqa: E402

import crowdbayes as cb  # noqa: E402
from crowdbayes.models.dawid_skene import DawidSkeneModel  # noqa: E402
from crowdbayes.recommend import (  # noqa: E402
    CalibratedDawidSkene,
    recommended,
    task_temperatures,
)

DEFAULT = CalibratedDawidSkene()  # recommended()'s settings
LAST_DEFAULT = 1.7  # the last default reported the posterior at 1.7 * sqrt(n)
N_DRAWS = 64


def _grid(lo: float, hi: float, step: float) -> np.ndarray:
    return np.round(np.arange(lo, hi + step / 2, step), 2)


C = _grid(0.5, 3.0, 0.05)
# name -> (posterior, T(task features, *constants), grid of constants)
FORMS: dict[str, tuple[str, Callable[..., np.ndarray], list[tuple[float, ...]]]] = {
    "one temperature: c": (
        "map",
        lambda f, c: np.full_like(f["n"], c),
        [(c,) for c in _grid(1, 10, 0.1)],
    ),
    "c * sqrt(n * design) (recommended)": (
        "map",
        lambda f, c: c * np.sqrt(f["n"] * f["design"]),
        [(c,) for c in C],
    ),
    "c * sqrt(n) * design ** p": (
        "map",
        lambda f, c, p: c * np.sqrt(f["n"]) * f["design"] ** p,
        list(itertools.product(C, _grid(0, 1.5, 0.1))),
    ),
    "c * sqrt(n) (the last default)": ("map", lambda f, c: c * np.sqrt(f["n"]), [(c,) for c in C]),
    "c * n ** p": (
        "map",
        lambda f, c, p: c * f["n"] ** p,
        list(itertools.product(C, _grid(0, 1, 0.05))),
    ),
    "a * (1 + r * (n - 1))": (
        "map",
        lambda f, a, r: a * (1 + r * (f["n"] - 1)),
        list(itertools.product(_grid(0.5, 3, 0.05), _grid(0, 1, 0.02))),
    ),
    "a + c * sqrt(n)": (
        "map",
        lambda f, a, c: np.maximum(a + c * np.sqrt(f["n"]), 0.05),
        list(itertools.product(_grid(-1, 2, 0.05), _grid(0.5, 2.5, 0.05))),
    ),
    "c * sqrt(n) * (1 + b * vote entropy)": (
        "map",
        lambda f, c, b: c * np.sqrt(f["n"]) * (1 + b * f["entropy"]),
        list(itertools.product(C, _grid(0, 3, 0.1))),
    ),
    "c * sqrt(n) * (K - 1) ** q": (
        "map",
        lambda f, c, q: c * np.sqrt(f["n"]) * (f["K"] - 1) ** q,
        list(itertools.product(C, _grid(0, 1, 0.05))),
    ),
    "c * sqrt(n) * log2(K) ** q": (
        "map",
        lambda f, c, q: c * np.sqrt(f["n"]) * np.log2(f["K"]) ** q,
        list(itertools.product(C, _grid(0, 2, 0.1))),
    ),
    "c * sqrt(n) * (K / 2) ** q": (
        "map",
        lambda f, c, q: c * np.sqrt(f["n"]) * (f["K"] / 2) ** q,
        list(itertools.product(C, _grid(0, 1, 0.05))),
    ),
    "cross-fitted, c * sqrt(n)": (
        "cross-fitted",
        lambda f, c: c * np.sqrt(f["n"]),
        [(c,) for c in C],
    ),
    f"predictive ({N_DRAWS} draws), c * sqrt(n)": (
        "predictive",
        lambda f, c: c * np.sqrt(f["n"]),
        [(c,) for c in C],
    ),
}


def ece(proba: np.ndarray, gold_code: np.ndarray) -> float:
    """Top-class expected calibration error, 10 bins (as ``accuracy.scores``)."""
    conf = proba.max(axis=1)
    right = (proba.argmax(axis=1) == gold_code).astype(float)
    bins = np.minimum((conf * 10).astype(int), 9)
    gap = np.bincount(bins, right, 10) - np.bincount(bins, conf, 10)
    return float(np.abs(gap).sum() / conf.size)


def softmax_rows(logp: np.ndarray) -> np.ndarray:
    out = np.exp(logp - logp.max(axis=-1, keepdims=True))
    return out / out.sum(axis=-1, keepdims=True)


def task_log_joint(ann: cb.Annotations, log_conf: np.ndarray, log_pi: np.ndarray) -> np.ndarray:
    """``[n_tasks, K]``: log p(class) + the sum of log p(label | class) over a task's labels."""
    out = np.tile(log_pi, (ann.n_tasks, 1))
    for k in range(ann.n_classes):
        out[:, k] += np.bincount(ann.task, log_conf[ann.worker, k, ann.label], ann.n_tasks)
    return out


def fit_dataset(df: pd.DataFrame, gold: pd.Series, rng: np.random.Generator) -> dict:
    """recommended()'s EM fit of one dataset, and what each form needs on its gold tasks."""
    ann = cb.as_annotations(df)
    # temperature = em_temperature and no correlation: proba_ is EM's own posterior, the
    # one its counts use; rho is recommended()'s estimate
    model = CalibratedDawidSkene(temperature=DEFAULT.em_temperature, label_correlation=0.0)
    model.fit(ann)
    q, W, K = model.proba_, ann.n_workers, ann.n_classes
    tasks = model.predict().index
    gold = gold[gold.index.isin(tasks)]
    rows = tasks.get_indexer(gold.index)
    classes = [str(c) for c in model.predict_proba().columns]
    gold_code = np.array([classes.index(g) if g in classes else -1 for g in gold.astype(str)])
    em_tau = task_temperatures(ann, DEFAULT.em_temperature, DEFAULT.label_power)
    # recommended()'s own fit: its rho, and its output scored by accuracy.py, to check
    # this script's ECE against
    rec = recommended().fit(ann)
    rho = rec.label_correlation_
    reference = scores(rec.predict_proba(), rec.predict(), gold)["ece"]
    out_tau = task_temperatures(ann, DEFAULT.temperature, DEFAULT.label_power, rho)
    # EM's posterior at temperature 1: log q * tau is the log joint up to a per-task constant
    sources = {"map": (np.log(np.clip(q, 1e-300, 1.0)) * em_tau)[rows]}
    # the counts behind the confusion matrices: expected labels plus the prior's pseudo-counts
    post = jnp.asarray(q.T, jnp.float32)
    hyper = model._fitted_hyper()
    counts = np.asarray(DawidSkeneModel.expected_counts(post, model._data(), W), np.float64)
    counts += np.asarray(hyper.confusion_counts, np.float64)
    class_counts = q.sum(axis=0) + np.asarray(hyper.class_counts, np.float64)
    row_total = counts.sum(axis=-1)
    # cross-fitted: each task's own expected counts taken out of the confusions it meets
    crossed = np.log((class_counts - q) / (class_counts.sum() - 1.0))
    for k in range(K):
        own = q[ann.task, k]
        kept = np.maximum(counts[ann.worker, k, ann.label] - own, 1e-12)
        crossed[:, k] += np.bincount(
            ann.task, np.log(kept / (row_total[ann.worker, k] - own)), ann.n_tasks
        )
    sources["cross-fitted"] = crossed[rows]
    # predictive: draws from the confusions' Dirichlet posterior given those counts
    confs, pis = DawidSkeneModel.em_draws(model.params_, post, model._data(), hyper, rng, N_DRAWS)
    sources["predictive"] = np.stack(
        [
            task_log_joint(ann, np.log(c.astype(np.float64)), np.log(p.astype(np.float64)))[rows]
            for c, p in zip(confs, pis, strict=True)
        ]
    )
    share = ann.vote_counts() / np.maximum(ann.labels_per_task(), 1)[:, None]
    entropy = -(share * np.log(np.where(share > 0, share, 1.0))).sum(axis=1)
    n = np.maximum(ann.labels_per_task(), 1).astype(np.float64)
    design = 1.0 + (n - 1.0) * rho
    features = {
        "n": n[rows],
        "K": float(K),
        "entropy": entropy[rows],
        "design": design[rows],
        "recommended T": out_tau.ravel()[rows],
    }
    return {
        "sources": sources,
        "features": features,
        "gold_code": gold_code,
        "reference": reference,
    }


def reported(fit: dict, source: str, temperature: np.ndarray) -> np.ndarray:
    logp = fit["sources"][source]
    if source == "predictive":
        return softmax_rows(logp / temperature[None, :, None]).mean(axis=0)
    return softmax_rows(logp / temperature[:, None])


def recommended_temperature(features: dict) -> np.ndarray:
    """recommended()'s output temperature per gold task."""
    return features["recommended T"]


def log_loss(proba: np.ndarray, gold_code: np.ndarray) -> float:
    """Mean ``-log p(gold label)`` (as ``accuracy.scores``)."""
    p_gold = np.where(gold_code >= 0, proba[np.arange(gold_code.size), gold_code], 0.0)
    return float(-np.log(np.clip(p_gold, 1e-15, 1.0)).mean())


def resampled_sd(fits: dict, rng: np.random.Generator, n_rounds: int = 300) -> dict[str, float]:
    """Standard deviation of recommended()'s mean ECE when each dataset's gold tasks are
    resampled, and when the datasets are; and how often, in the same resamples, it is
    below the mean ECE of the last default (``1.7 * sqrt(n)``, no label correlation)."""
    per, within, last_per, last_within = [], [], [], []
    for fit in fits.values():
        proba = reported(fit, "map", recommended_temperature(fit["features"]))
        last = reported(fit, "map", LAST_DEFAULT * np.sqrt(fit["features"]["n"]))
        gold = fit["gold_code"]
        per.append(ece(proba, gold))
        last_per.append(ece(last, gold))
        draws = rng.integers(0, gold.size, (n_rounds, gold.size))
        within.append([ece(proba[d], gold[d]) for d in draws])
        last_within.append([ece(last[d], gold[d]) for d in draws])
    tasks, last_tasks = np.mean(within, axis=0), np.mean(last_within, axis=0)
    per_arr, last_arr = np.asarray(per), np.asarray(last_per)
    picks = rng.integers(0, per_arr.size, (2000, per_arr.size))
    across, last_across = per_arr[picks].mean(axis=1), last_arr[picks].mean(axis=1)
    return {
        "sd_tasks": float(tasks.std()),
        "sd_datasets": float(across.std()),
        "below_last_tasks": float((tasks < last_tasks).mean()),
        "below_last_datasets": float((across < last_across).mean()),
    }


def score(fit: dict, source: str, temperature: Callable[..., np.ndarray], consts: tuple) -> float:
    return ece(reported(fit, source, temperature(fit["features"], *consts)), fit["gold_code"])


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("root", nargs="?", type=Path, default=default_root())
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    fits = {}
    for folder in sorted(f for f in args.root.iterdir() if f.is_dir()):
        loaded = load(folder)
        if loaded is not None:
            fits[folder.name] = fit_dataset(*loaded, rng)
    names = list(fits)
    for name, fit in fits.items():  # the ECE here is accuracy.py's, on recommended()'s output
        mine = ece(reported(fit, "map", recommended_temperature(fit["features"])), fit["gold_code"])
        assert abs(mine - fit["reference"]) < 1e-6, (name, mine, fit["reference"])
    rows = []
    for form, (source, temperature, grid) in FORMS.items():
        table = np.array([[score(fits[n], source, temperature, g) for n in names] for g in grid])
        best = int(table.mean(axis=1).argmin())
        held, picks = [], set()
        for j in range(len(names)):
            i = int(np.delete(table, j, axis=1).mean(axis=1).argmin())
            held.append(table[i, j])
            picks.add(grid[i])
        rows.append(
            {
                "form": form,
                "constants on all datasets": ", ".join(f"{x:g}" for x in grid[best]),
                "mean ECE (all)": table[best].mean(),
                "held-out mean ECE": float(np.mean(held)),
                "mean log-loss (all)": float(
                    np.mean(
                        [
                            log_loss(
                                reported(
                                    fits[n], source, temperature(fits[n]["features"], *grid[best])
                                ),
                                fits[n]["gold_code"],
                            )
                            for n in names
                        ]
                    )
                ),
                "constants chosen on 15": "; ".join(
                    ", ".join(f"{x:g}" for x in g) for g in sorted(picks)
                ),
            }
        )
        print(
            form,
            "held out:",
            {n: round(float(e), 3) for n, e in zip(names, held, strict=True)},
            flush=True,
        )
    out = pd.DataFrame(rows).set_index("form")
    print(to_markdown(out.round(4)))
    spread = resampled_sd(fits, rng)
    print(
        f"recommended()'s mean ECE, standard deviation when resampling each dataset's gold "
        f"tasks: {spread['sd_tasks']:.4f}; when resampling the datasets: "
        f"{spread['sd_datasets']:.4f}. Below the last default's ({LAST_DEFAULT} * sqrt(n)) "
        f"in {spread['below_last_tasks']:.1%} of the task resamples and "
        f"{spread['below_last_datasets']:.1%} of the dataset resamples."
    )
    return out


if __name__ == "__main__":
    main()
