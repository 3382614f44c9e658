"""Accuracy and calibration of every crowdbayes model and the installed peers on real data.

For each dataset folder (``labels.csv``: task, worker, label; ``truth.csv``: task,
label) every method fits all the labels without gold and is scored on the gold tasks:
accuracy, mean log-loss of the gold label, expected calibration error (10 equal-width
bins of the top-class probability) and fit time. crowdbayes models come
from the registry (``crowdbayes.registry.MODELS``: every model that fits labels alone,
with neither gold nor a classifier's probabilities); those that take NUTS also run it on
small datasets (``--nuts``). Peers: crowd-kit's MajorityVote, Wawa,
DawidSkene, OneCoinDawidSkene, GLAD, MACE, MMSR when installed (``bench`` extra); a
peer that fails or runs past ``--timeout`` is reported as such, not hidden.

Writes tables and a plot into ``docs/benchmarks.md`` (between its accuracy markers)
and ``docs/benchmarks_accuracy.png``, recommended()'s results per dataset into its model
card ``models/calibrated_dawid_skene.md``, and prints the mean rank of each method.
``--report-only results.json`` rewrites both from an earlier ``--json`` without fitting.

    python benchmarks/accuracy.py                      # ../shared/datasets, else the bundled
    python benchmarks/accuracy.py path/to/datasets --nuts none
"""

from __future__ import annotations

import argparse
import json
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

from crowdbayes.engines import NUTS  # noqa: E402

START, END = "<!-- accuracy:start -->", "<!-- accuracy:end -->"
CARD = ROOT / "models" / "calibrated_dawid_skene.md"  # recommended()'s model card
PEERS = ["MajorityVote", "Wawa", "DawidSkene", "OneCoinDawidSkene", "GLAD", "MACE", "MMSR"]


class Timeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise Timeout


def _arm(seconds: float) -> None:
    """Raise :class:`Timeout` after ``seconds``, then again every second until disarmed:
    Python drops an exception raised where it ignores them (a garbage-collection
    callback such as jax's), so one alarm alone can be lost and the fit run on."""
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)


def _disarm() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)


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
    """name -> (factory, is_nuts): every registered model that needs neither gold nor a
    classifier's ``pred_probs`` (``crowdbayes.registry.MODELS``), ``recommended()`` first."""
    from crowdbayes.registry import MODELS

    specs = {
        spec.estimator: spec
        for key, spec in MODELS.items()
        if key != "recommended" and not spec.needs_gold and not spec.needs_pred_probs
    }
    out: dict[str, tuple[Callable[[], Any], bool]] = {}
    from crowdbayes.recommend import recommended

    out["recommended()"] = (recommended, False)
    for name, spec in sorted(specs.items()):
        cls = spec.estimator_class()
        if spec.tie_break:
            out[name] = (lambda cls=cls: cls(tie_break="smallest"), False)
            continue
        out[name] = (cls, False)
        if spec.nuts and (nuts == "all" or (nuts == "ds" and name == "DawidSkene")):
            out[f"{name} (NUTS)"] = (
                lambda cls=cls: cls(inference=NUTS(num_warmup=300, num_samples=300, num_chains=2)),
                True,
            )
    return out


class WawaAdapter:
    """crowd-kit's Wawa run as its own code does, minus one broken call.

    crowd-kit 1.4.2's ``Wawa.predict``/``predict_proba`` start with scikit-learn's
    ``check_is_fitted``, which raises ``AttributeError`` (no ``__sklearn_tags__``) on
    scikit-learn >= 1.6 because crowd-kit's aggregators are not sklearn estimators.
    This adapter runs ``Wawa.fit`` (majority vote, then each worker's agreement with
    it) and the weighted majority vote that ``Wawa._apply`` runs
    (``MajorityVote().fit(data, skills=wawa.skills_)``): the same algorithm and code.
    """

    def __init__(self) -> None:
        import crowdkit.aggregation as ck

        self._ck = ck
        self.labels_: pd.Series | None = None

    def fit_predict_proba(self, data: pd.DataFrame) -> pd.DataFrame:
        wawa = self._ck.Wawa().fit(data)
        mv = self._ck.MajorityVote().fit(data[["task", "worker", "label"]], skills=wawa.skills_)
        self.labels_ = mv.labels_
        return mv.probas_


def wawa_needs_adapter() -> str | None:
    """The error crowd-kit's own Wawa raises here, or None when it works as documented."""
    import crowdkit.aggregation as ck

    tiny = pd.DataFrame(
        {"task": ["a", "a", "b", "b"], "worker": ["x", "y", "x", "y"], "label": [0, 0, 1, 0]}
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ck.Wawa().fit_predict_proba(tiny)
    except Exception as err:  # the incompatibility is reported in the docs
        msg = str(err).split("raised: ")[-1].split(". ")[0]
        return f"{type(err).__name__}: {msg}"
    return None


def peer_methods() -> tuple[dict[str, Callable[[], Any]], str | None]:
    """crowd-kit peers, and the error that made the Wawa adapter necessary (if any)."""
    try:
        import crowdkit.aggregation as ck
    except ImportError:
        return {}, None
    peers: dict[str, Callable[[], Any]] = {
        f"crowd-kit {n}": getattr(ck, n) for n in PEERS if hasattr(ck, n)
    }
    wawa_error = wawa_needs_adapter() if "crowd-kit Wawa" in peers else None
    if wawa_error is not None:
        peers["crowd-kit Wawa"] = WawaAdapter
    return peers, wawa_error


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


def _fit_once(factory: Callable[[], Any], df: pd.DataFrame, peer: bool) -> dict:
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
    out = {"status": "ok", "proba": proba, "labels": labels, "time": seconds}
    if hasattr(model, "label_correlation_"):  # recommended()'s estimate, for its card
        out["label_correlation"] = float(model.label_correlation_)
    return out


def run_one(factory: Callable[[], Any], df: pd.DataFrame, timeout: float, peer: bool) -> dict:
    """Fit once (peers) or twice (crowdbayes: the first fit compiles the jitted EM or
    NUTS program for this dataset's array shapes, the second is timed warm); each fit
    has ``timeout`` seconds. ``first_time`` is the first fit, compile included."""
    signal.signal(signal.SIGALRM, _alarm)
    try:
        _arm(timeout)
        out = _fit_once(factory, df, peer)
        out["first_time"] = out["time"]
        if not peer:
            _arm(timeout)  # restarts the timer for the warm fit
            out = {**_fit_once(factory, df, peer), "first_time": out["time"]}
        return out
    except Timeout:  # the next alarm is a second away: finally disarms it first
        return {"status": f"timeout (>{timeout:.0f} s)"}
    except Exception as err:  # a failing method is reported, not hidden
        return {"status": f"failed: {type(err).__name__}: {str(err)[:80]}"}
    finally:
        _disarm()


def rank_table(table: pd.DataFrame, higher_better: bool) -> pd.Series:
    # ties are ties to 9 digits: a row read back from --json (10 digits) and one fitted
    # again must rank alike (equal accuracies of gold counts differ only in rounding)
    ranks = table.round(9).rank(axis=1, ascending=not higher_better, method="average")
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
    p.add_argument("--card", type=Path, default=CARD, help="recommended()'s model card")
    p.add_argument(
        "--report-only",
        type=Path,
        metavar="JSON",
        help="write the report and the card from an earlier --json, fitting nothing",
    )
    args = p.parse_args(argv)
    if args.report_only is not None:
        res = pd.DataFrame(json.loads(args.report_only.read_text()))
        write_report(res, args.out, None)
        write_card(res, args.card)
        return res

    ours = crowdbayes_methods(args.nuts)
    peers, wawa_error = ({}, None) if args.no_peers else peer_methods()
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
            row = {"dataset": folder.name, "method": name, "peer": peer, "status": r["status"]}
            if r["status"] == "ok":
                row.update(
                    scores(r["proba"], r["labels"], gold),
                    time=r["time"],
                    first_time=r["first_time"],
                )
                if "label_correlation" in r:
                    row["label_correlation"] = r["label_correlation"]
            rows.append(row)
            shown = {k: round(v, 4) for k, v in row.items() if isinstance(v, float)}
            print(f"  {name:32s} {row['status'] if row['status'] != 'ok' else shown}", flush=True)
    res = pd.DataFrame(rows)
    if args.json:
        args.json.write_text(res.to_json(orient="records", indent=1))
    write_report(res, args.out, wawa_error)
    write_card(res, args.card)
    return res


def replace_block(path: Path, block: str, heading: str) -> None:
    """Put ``block`` (which starts with START and ends with END) between ``path``'s
    markers, or append it under ``heading`` when the file has none."""
    text = path.read_text() if path.exists() else ""
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + f"\n\n{heading}\n\n" + block + "\n"
    path.write_text(text)


def write_card(res: pd.DataFrame, path: Path) -> None:
    """The results section of recommended()'s model card: per dataset, its accuracy
    against the best peer's, log-loss and ECE of the gold label, and the estimated
    correlation of labels within a task."""
    ok = res[res["status"] == "ok"]
    mine = ok[ok["method"] == "recommended()"].set_index("dataset")
    if mine.empty:
        return
    peers = ok[ok["peer"].astype(bool)]
    best = peers.loc[peers.groupby("dataset")["accuracy"].idxmax()].set_index("dataset")
    rows, wins = [], 0
    for name, r in mine.iterrows():
        has_peer = name in best.index
        wins += bool(has_peer and r["accuracy"] >= best.loc[name, "accuracy"] - 1e-12)
        rows.append(
            {
                "dataset": name,
                "label correlation": (
                    f"{r['label_correlation']:.3f}"
                    if pd.notna(r.get("label_correlation", np.nan))
                    else "n/a"
                ),
                "accuracy": f"{r['accuracy']:.4f}",
                "best peer": (
                    f"{best.loc[name, 'accuracy']:.4f} ({best.loc[name, 'method']})"
                    if has_peer
                    else "n/a"
                ),
                "log-loss": f"{r['log_loss']:.3f}",
                "ECE": f"{r['ece']:.3f}",
                "fit (s, warm)": f"{r['time']:.2f}",
            }
        )
    table = pd.DataFrame(rows).set_index("dataset")
    block = "\n".join(
        [
            START,
            f"_Generated by `python benchmarks/accuracy.py` on {time.strftime('%Y-%m-%d')}._",
            "",
            f"Over {len(mine)} datasets: mean accuracy {mine['accuracy'].mean():.4f}, "
            f"mean log-loss {mine['log_loss'].mean():.4f}, mean ECE {mine['ece'].mean():.4f}; "
            f"at least as accurate as the best crowd-kit method on {wins} of them.",
            "",
            to_markdown(table),
            END,
        ]
    )
    replace_block(path, block, "## Results")


def head_to_head(
    acc: pd.DataFrame, ece: pd.DataFrame, peers: list[str], ref: str
) -> tuple[pd.DataFrame, str]:
    """``ref`` against each peer on the datasets both ran, and against the best peer
    of each dataset (the best of the peers that ran there)."""
    rows = {}
    for peer in peers:
        both = acc[ref].notna() & acc[peer].notna()
        n = int(both.sum())
        wins = int((acc.loc[both, ref] >= acc.loc[both, peer] - 1e-12).sum())
        rows[peer] = {
            "datasets both ran": n,
            f"{ref} mean accuracy": acc.loc[both, ref].mean(),
            "peer mean accuracy": acc.loc[both, peer].mean(),
            f"datasets {ref} ≥ peer": f"{wins} of {n}",
            f"{ref} mean ECE": ece.loc[both, ref].mean(),
            "peer mean ECE": ece.loc[both, peer].mean(),
        }
    table = pd.DataFrame(rows).T
    table.index.name = "peer"
    ran = acc[ref].notna()
    best = acc.loc[ran, peers].max(axis=1)
    ge = acc.loc[ran, ref] >= best - 1e-12
    full = acc.loc[ran, peers].notna().all(axis=1)
    line = (
        f"{ref} is at least as accurate as the best peer on {int(ge.sum())} of "
        f"{int(ran.sum())} datasets (the best of the peers that finished on each dataset; "
        f"on the {int(full.sum())} datasets where every peer finished: "
        f"{int(ge[full].sum())} of {int(full.sum())})."
    )
    return table, line


def write_report(res: pd.DataFrame, out: Path, wawa_error: str | None = None) -> None:
    order = list(dict.fromkeys(res["method"]))
    piv = {
        m: res.pivot(index="dataset", columns="method", values=m).reindex(columns=order)
        for m in ("accuracy", "log_loss", "ece", "time", "first_time")
    }
    status = res.pivot(index="dataset", columns="method", values="status").reindex(columns=order)
    status = status.fillna("not run")
    peers = [m for m in order if bool(res.loc[res["method"] == m, "peer"].iloc[0])]
    ranks = rank_table(piv["accuracy"], higher_better=True)
    compile_s = (piv["first_time"] - piv["time"]).clip(lower=0).sum(min_count=1)
    compile_s[peers] = np.nan
    summary = pd.DataFrame(
        {
            "mean accuracy": piv["accuracy"].mean(),
            "mean rank (accuracy)": ranks,
            "mean log-loss": piv["log_loss"].mean(),
            "mean ECE": piv["ece"].mean(),
            "total fit time (s)": piv["time"].sum(min_count=1),
            "total compile (s)": compile_s,
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
        "small datasets; a peer past the time limit has no entry), so compare methods that "
        "ran on different datasets in the head-to-head table below. ECE: expected "
        "calibration error of the top-class probability, 10 bins. Log-loss: mean -log "
        "p(gold label). MMSR gives no probabilities. Fit times are on a shared 2-core "
        "machine. Every crowdbayes method is fitted twice per dataset and the second, warm "
        "fit is timed: the first fit compiles the jitted EM (or NUTS) program for that "
        "dataset's array shapes (compile depends on the shapes, not on prior settings or "
        "subclass, so a later fit of same-shaped data reuses it); 'total compile' is the "
        "first fits' extra time. Peers have no compile step and are timed on one fit."
    )
    if wawa_error is not None:
        note += (
            " crowd-kit Wawa as its docs call it (`Wawa().fit_predict_proba(df)`) fails "
            f"here with `{wawa_error}` (crowd-kit 1.4.2's `check_is_fitted` on scikit-learn "
            ">= 1.6); it is run through a small adapter that calls Wawa's own `fit` and the "
            "weighted majority vote its `predict_proba` would run (same algorithm, same code)."
        )
    h2h_parts: list[str] = []
    if "recommended()" in piv["accuracy"].columns and peers:
        h2h, line = head_to_head(piv["accuracy"], piv["ece"], peers, "recommended()")
        h2h_parts = [
            "",
            "### recommended() against each peer",
            "",
            "On the datasets both finished (accuracy on gold; ECE where the peer gives "
            "probabilities).",
            "",
            to_markdown(
                h2h.map(
                    lambda v: ("n/a" if np.isnan(v) else f"{v:.4f}") if isinstance(v, float) else v
                )
            ),
            "",
            line,
        ]
        print(line)
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
        *h2h_parts,
    ]
    for metric, digits, title in (
        ("accuracy", 4, "Accuracy on gold"),
        ("log_loss", 3, "Mean log-loss of the gold label"),
        ("ece", 3, "Expected calibration error"),
        ("time", 2, "Fit time (s; crowdbayes warm, compile excluded)"),
    ):
        table = fmt(piv[metric], digits, status)
        table.index.name = "dataset"
        parts += ["", f"### {title}", "", to_markdown(table.T.rename_axis("method"))]
    parts.append(END)
    block = "\n".join(parts)
    if not out.exists():
        out.write_text("# Benchmarks\n")
    replace_block(out, block, "## Accuracy on real data")
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
