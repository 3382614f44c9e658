"""Accuracy and calibration of every crowdbayes model and the installed peers on real data.

For each dataset folder (``labels.csv``: task, worker, label; ``truth.csv``: task,
label) every method fits all the labels without gold and is scored on the gold tasks:
accuracy, mean log-loss of the gold label, expected calibration error (10 equal-width
bins of the top-class probability) and fit time. crowdbayes models are found
dynamically (every aggregator in ``crowdbayes.models`` that fits labels alone); the
Bayesian ones also run NUTS on small datasets. Peers: crowd-kit's MajorityVote, Wawa,
DawidSkene, OneCoinDawidSkene, GLAD, MACE, MMSR when installed (``bench`` extra); a
peer that fails or runs past ``--timeout`` is reported as such, not hidden.

Writes tables and a plot into ``docs/benchmarks.md`` (between its accuracy markers)
and ``docs/benchmarks_accuracy.png``, and prints the mean rank of each method.

    python benchmarks/accuracy.py                      # ../shared/datasets, else the bundled
    python benchmarks/accuracy.py path/to/datasets --nuts none
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import signal
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from crowdbayes.base import Aggregator  # noqa: E402

START, END = "<!-- accuracy:start -->", "<!-- accuracy:end -->"
SKIP = {"GoldMajorityVote", "CrowdLab", "BayesianCrowdLab"}  # need gold or classifier inputs
PEERS = ["MajorityVote", "Wawa", "DawidSkene", "OneCoinDawidSkene", "GLAD", "MACE", "MMSR"]


class Timeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise Timeout


def default_root() -> Path:
    shared = ROOT.parent / "shared" / "datasets"
    return shared if shared.is_dir() else ROOT / "src" / "crowdbayes" / "datasets" / "data"


def load(folder: Path) -> tuple[pd.DataFrame, pd.Series] | None:
    def find(stem: str) -> Path | None:
        for ext in (".csv", ".csv.gz"):
            if (folder / f"{stem}{ext}").exists():
                return folder / f"{stem}{ext}"
        return None

    labels, truth = find("labels"), find("truth")
    if labels is None or truth is None:
        return None
    df = pd.read_csv(labels, dtype=str, keep_default_na=False)
    gold = pd.read_csv(truth, dtype=str, keep_default_na=False).set_index("task")["label"]
    return df[["task", "worker", "label"]], gold


def crowdbayes_methods(nuts: str) -> dict[str, tuple[Callable[[], Any], bool]]:
    """name -> (factory, is_nuts)."""
    import crowdbayes.models as models

    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(models.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"crowdbayes.models.{info.name}")
        for name, obj in vars(mod).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, Aggregator)
                and obj.__module__ == mod.__name__
                and not name.startswith("_")
                and name not in SKIP
            ):
                found[name] = obj
    out: dict[str, tuple[Callable[[], Any], bool]] = {}
    try:
        from crowdbayes.recommend import recommended

        out["recommended()"] = (recommended, False)
    except ImportError:
        pass
    for name, cls in sorted(found.items()):
        if name == "MajorityVote":
            out[name] = (lambda cls=cls: cls(tie_break="smallest"), False)
            continue
        out[name] = (cls, False)
        params = inspect.signature(cls.__init__).parameters
        if "method" in params and (nuts == "all" or (nuts == "ds" and name == "DawidSkene")):
            out[f"{name} (NUTS)"] = (
                lambda cls=cls: cls(method="nuts", num_warmup=300, num_samples=300, num_chains=2),
                True,
            )
    return out


def peer_methods() -> dict[str, Callable[[], Any]]:
    try:
        import crowdkit.aggregation as ck
    except ImportError:
        return {}
    return {f"crowd-kit {n}": getattr(ck, n) for n in PEERS if hasattr(ck, n)}


def scores(proba: pd.DataFrame | None, labels: pd.Series, gold: pd.Series) -> dict[str, float]:
    gold = gold[gold.index.isin(labels.index)]
    pred = labels.reindex(gold.index).astype(str)
    out = {"accuracy": float((pred.to_numpy() == gold.to_numpy()).mean())}
    if proba is None:
        out["log_loss"] = out["ece"] = float("nan")
        return out
    proba = proba.copy()
    proba.columns = proba.columns.astype(str)
    proba = proba.reindex(index=gold.index).fillna(0.0)
    proba = proba.div(proba.sum(axis=1).replace(0, 1), axis=0)
    cols = proba.columns.get_indexer(gold.to_numpy())
    p_gold = np.where(cols >= 0, proba.to_numpy()[np.arange(len(gold)), np.maximum(cols, 0)], 0.0)
    out["log_loss"] = float(-np.log(np.clip(p_gold, 1e-15, 1.0)).mean())
    conf = proba.to_numpy().max(axis=1)
    top = proba.columns.to_numpy()[proba.to_numpy().argmax(axis=1)]
    right = (top == gold.to_numpy()).astype(float)
    bins = np.minimum((conf * 10).astype(int), 9)
    ece = 0.0
    for b in range(10):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(right[m].mean() - conf[m].mean())
    out["ece"] = float(ece)
    return out


def run_one(factory: Callable[[], Any], df: pd.DataFrame, timeout: float, peer: bool) -> dict:
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(timeout))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = factory()
            t0 = time.perf_counter()
            if peer:
                if hasattr(model, "fit_predict_proba"):
                    proba = model.fit_predict_proba(df)
                    labels = getattr(model, "labels_", None)
                    labels = proba.idxmax(axis=1) if labels is None else labels
                else:
                    proba, labels = None, model.fit_predict(df)
            else:
                model.fit(df)
                proba, labels = model.predict_proba(), model.predict()
            seconds = time.perf_counter() - t0
        return {"status": "ok", "proba": proba, "labels": labels, "time": seconds}
    except Timeout:
        return {"status": f"timeout (>{timeout:.0f} s)"}
    except Exception as err:  # a failing method is reported, not hidden
        return {"status": f"failed: {type(err).__name__}: {str(err)[:80]}"}
    finally:
        signal.alarm(0)


def rank_table(table: pd.DataFrame, higher_better: bool) -> pd.Series:
    ranks = table.rank(axis=1, ascending=not higher_better, method="average")
    return ranks.mean(axis=0)


def fmt(table: pd.DataFrame, digits: int, status: pd.DataFrame) -> pd.DataFrame:
    out = table.map(lambda v: "" if pd.isna(v) else f"{v:.{digits}f}")
    return out.where(
        status == "ok", status.map(lambda s: "failed" if s.startswith("failed") else s)
    )


def to_markdown(df: pd.DataFrame) -> str:
    cols = [df.index.name or ""] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|---" + "|---:" * len(df.columns) + "|"]
    for idx, row in df.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [str(v) for v in row]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("root", nargs="?", type=Path, default=default_root())
    p.add_argument("--nuts", choices=["none", "ds", "all"], default="ds")
    p.add_argument("--nuts-max-labels", type=int, default=5000)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per fit")
    p.add_argument("--only", nargs="*", help="only these datasets")
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--json", type=Path, help="also write raw results here")
    args = p.parse_args(argv)

    ours = crowdbayes_methods(args.nuts)
    peers = {} if args.no_peers else peer_methods()
    if not args.no_peers and not peers:
        print("crowd-kit is not installed (pip install crowdbayes[bench]): no peers")
    rows = []
    folders = sorted(f for f in args.root.iterdir() if f.is_dir())
    for folder in folders:
        if args.only and folder.name not in args.only:
            continue
        loaded = load(folder)
        if loaded is None:
            continue
        df, gold = loaded
        print(f"{folder.name}: {len(df):,} labels, {gold.size} gold", flush=True)
        methods = [(n, f, False, nuts) for n, (f, nuts) in ours.items()]
        methods += [(n, f, True, False) for n, f in peers.items()]
        for name, factory, peer, nuts in methods:
            if nuts and len(df) > args.nuts_max_labels:
                continue
            r = run_one(factory, df, args.timeout, peer)
            row = {"dataset": folder.name, "method": name, "status": r["status"]}
            if r["status"] == "ok":
                row.update(scores(r["proba"], r["labels"], gold), time=r["time"])
            rows.append(row)
            shown = {k: round(v, 4) for k, v in row.items() if isinstance(v, float)}
            print(f"  {name:32s} {row['status'] if row['status'] != 'ok' else shown}", flush=True)
    res = pd.DataFrame(rows)
    if args.json:
        args.json.write_text(res.to_json(orient="records", indent=1))
    write_report(res, args.out)
    return res


def write_report(res: pd.DataFrame, out: Path) -> None:
    order = list(dict.fromkeys(res["method"]))
    piv = {
        m: res.pivot(index="dataset", columns="method", values=m).reindex(columns=order)
        for m in ("accuracy", "log_loss", "ece", "time")
    }
    status = res.pivot(index="dataset", columns="method", values="status").reindex(columns=order)
    status = status.fillna("not run")
    ranks = rank_table(piv["accuracy"], higher_better=True)
    summary = pd.DataFrame(
        {
            "mean accuracy": piv["accuracy"].mean(),
            "mean rank (accuracy)": ranks,
            "mean log-loss": piv["log_loss"].mean(),
            "mean ECE": piv["ece"].mean(),
            "total fit time (s)": piv["time"].sum(min_count=1),
            "datasets run": piv["accuracy"].notna().sum(),
        }
    ).sort_values("mean rank (accuracy)")
    summary.index.name = "method"
    print("\nMean rank of each method (accuracy, 1 = best; ties averaged):")
    for name, r in summary["mean rank (accuracy)"].items():
        print(f"  {r:5.2f}  {name}  (mean accuracy {summary.loc[name, 'mean accuracy']:.4f})")
    png = out.with_name("benchmarks_accuracy.png")
    plot(piv["accuracy"], summary, png)
    note = (
        "Mean rank and means are over the datasets each method ran on (NUTS only runs on "
        "small datasets). ECE: expected calibration error of the top-class probability, 10 "
        "bins. Log-loss: mean -log p(gold label). MMSR gives no probabilities. Times are "
        "single fits on a shared 2-core machine, crowdbayes including its JIT compile."
    )
    parts = [
        START,
        f"_Generated by `python benchmarks/accuracy.py` on {time.strftime('%Y-%m-%d')}._",
        "",
        "### Summary",
        "",
        to_markdown(summary.round(4)),
        "",
        note,
        "",
        f"![accuracy per dataset]({png.name})",
    ]
    for metric, digits, title in (
        ("accuracy", 4, "Accuracy on gold"),
        ("log_loss", 3, "Mean log-loss of the gold label"),
        ("ece", 3, "Expected calibration error"),
        ("time", 2, "Fit time (s)"),
    ):
        table = fmt(piv[metric], digits, status)
        table.index.name = "dataset"
        parts += ["", f"### {title}", "", to_markdown(table.T.rename_axis("method"))]
    parts.append(END)
    block = "\n".join(parts)
    text = out.read_text() if out.exists() else "# Benchmarks\n\n" + START + "\n" + END + "\n"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n## Accuracy on real data\n\n" + block + "\n"
    out.write_text(text)
    print(f"wrote {out} and {png}")


def plot(acc: pd.DataFrame, summary: pd.DataFrame, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    methods = [m for m in summary.index if acc[m].notna().sum() == acc.shape[0]]
    fig, ax = plt.subplots(figsize=(12, 5))
    width = 0.8 / max(len(methods), 1)
    x = np.arange(acc.shape[0])
    for i, m in enumerate(methods):
        ax.bar(x + i * width, acc[m].to_numpy(), width, label=m)
    ax.set_xticks(x + 0.4 - width / 2)
    ax.set_xticklabels(acc.index, rotation=45, ha="right")
    lo = np.nanmin(acc[methods].to_numpy()) if methods else 0.0
    ax.set_ylim(max(0.0, lo - 0.05), 1.0)
    ax.set_ylabel("accuracy on gold")
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
