"""ChosenModel (``crowdbayes.chosen``) scored on data it was not tuned on.

For every dataset folder with gold: ``cb.compare`` (5 folds over the labels) of
Dawid–Skene and EBCC, EBCC's lead in standard errors (``z``), and the accuracy and ECE
of ``recommended()`` and of EBCC with its reported posterior tempered at
``c * sqrt(n * (1 + (n - 1) * rho))`` for a grid of ``c``. The threshold on ``z`` (2) was
fixed before looking; the script prints the range of thresholds that make the same
choices. ``c`` is chosen leave-one-dataset-out (the lowest mean ECE of EBCC on the other
datasets, whichever model they chose), and the held-out figures are ChosenModel's on
each dataset left out: EBCC at the held-out ``c`` where ``z > 2``, ``recommended()``
otherwise. The per-dataset best crowd-kit method is read from ``docs/benchmarks.md``.

    python benchmarks/chosen_loo.py [--root ../shared/datasets] [--write]

``--write`` puts the table into ``docs/benchmarks.md`` ("## ChosenModel left out").
"""

from __future__ import annotations

import argparse
import datetime
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from accuracy import default_root, load, scores, to_markdown  # noqa: E402
from coverage import replace_section  # noqa: E402
from default_loo import best_peers  # noqa: E402

import crowdbayes as cb  # noqa: E402
from crowdbayes.chosen import EBCC_OUTPUT_TEMPERATURE  # noqa: E402
from crowdbayes.models.vote_correlation import vote_correlation  # noqa: E402
from crowdbayes.recommend import task_temperatures, temper  # noqa: E402

GRID = np.round(np.arange(0.5, 2.01, 0.1), 2)
THRESHOLD = 2.0


def evaluate(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per dataset: z, recommended()'s and EBCC's accuracy and ECE; per dataset and c:
    EBCC's tempered ECE."""
    rows, grid = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        loaded = load(folder)
        if loaded is None or len(loaded[1]) == 0:
            continue
        df, gold = loaded
        ann = cb.as_annotations(df)
        table = cb.compare(ann, {"DawidSkene": cb.DawidSkene(), "EBCC": cb.EBCC()})
        lead = table.loc["EBCC", "elpd"] - table.loc["DawidSkene", "elpd"]
        z = float(lead / table["dse"].max())
        rec = cb.recommended().fit(ann)
        sc_rec = scores(rec.predict_proba(), rec.predict(), gold)
        eb = cb.EBCC().fit(ann)
        labels = eb.predict()
        rho = vote_correlation(ann.vote_counts(), eb.proba_)
        for c in GRID:
            proba = temper(eb.proba_, task_temperatures(ann, float(c), 0.5, rho))
            frame = pd.DataFrame(proba, index=ann.task_ids, columns=ann.classes)
            grid.append({"dataset": folder.name, "c": c, **scores(frame, labels, gold)})
        rows.append(
            {
                "dataset": folder.name,
                "z": z,
                "recommended() accuracy (in-sample)": sc_rec["accuracy"],
                "EBCC accuracy": grid[-1]["accuracy"],
            }
        )
        print(folder.name, round(z, 2), flush=True)
    return pd.DataFrame(rows).set_index("dataset"), pd.DataFrame(grid)


def recommended_held_out() -> pd.DataFrame:
    """recommended()'s own leave-one-dataset-out accuracy and ECE per dataset, from the
    table ``benchmarks/default_loo.py`` wrote into docs/benchmarks.md."""
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    start = text.index("## recommended() left out")
    lines = [ln for ln in text[start:].split("\n\n| dataset")[1].splitlines() if ln.strip()]
    rows = {}
    for ln in lines[2:]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows[cells[0]] = {"accuracy": float(cells[3]), "ece": float(cells[4])}
    return pd.DataFrame(rows).T


def held_out(res: pd.DataFrame, grid: pd.DataFrame) -> pd.DataFrame:
    """Per dataset left out: the choice, EBCC's output constant chosen on the others, and
    the chosen model's accuracy and ECE (recommended()'s as scored left out by
    ``default_loo.py``)."""
    ece = grid.pivot(index="dataset", columns="c", values="ece")
    rec = recommended_held_out()
    res = res.assign(
        **{
            "recommended() accuracy": rec["accuracy"].reindex(res.index),
            "recommended() ece": rec["ece"].reindex(res.index),
        }
    )
    out = res.copy()
    for d in res.index:
        c = float(ece.drop(index=d).mean().idxmin())
        ebcc = bool(res.loc[d, "z"] > THRESHOLD)
        out.loc[d, "chosen"] = "EBCC" if ebcc else "recommended"
        out.loc[d, "c (others)"] = c
        out.loc[d, "EBCC ece at c"] = float(ece.loc[d, c])
        out.loc[d, "accuracy"] = res.loc[d, "EBCC accuracy" if ebcc else "recommended() accuracy"]
        out.loc[d, "ece"] = out.loc[d, "EBCC ece at c"] if ebcc else res.loc[d, "recommended() ece"]
    return out


def report(out: pd.DataFrame, grid: pd.DataFrame, peers: pd.Series) -> str:
    out = out.assign(**{"best crowd-kit": peers.reindex(out.index)})
    below = out.index[out["accuracy"] < out["best crowd-kit"] - 0.015].tolist()
    z = out["z"].sort_values()
    ebcc = z[z > THRESHOLD]
    rest = z[z <= THRESHOLD]
    lo, hi = float(rest.max()), float(ebcc.min())
    in_sample_c = float(grid.pivot(index="dataset", columns="c", values="ece").mean().idxmin())
    date = datetime.date.today().isoformat()
    return "\n".join(
        [
            f"`python benchmarks/chosen_loo.py --write`, {date}: `cb.ChosenModel` fits EBCC where "
            f"its 5-fold held-out label log-likelihood leads Dawid–Skene's by more than "
            f"{THRESHOLD:g} standard errors (fixed before looking; thresholds from {lo:.2f} to "
            f"{hi:.2f} make the same choices here), `recommended()` otherwise; EBCC's output "
            "temperature constant is chosen on the other datasets (lowest mean ECE). No gold "
            "is used to choose.",
            "",
            f"- Held out: mean accuracy **{out['accuracy'].mean():.4f}**, mean ECE "
            f"**{out['ece'].mean():.4f}**; more than 1.5 points below the best crowd-kit "
            f"method on {len(below)} ({', '.join(below) or 'none'}).",
            f"- Mean of the per-dataset best crowd-kit method: {out['best crowd-kit'].mean():.4f}; "
            f"recommended() alone, left out (`default_loo.py`): "
            f"{out['recommended() accuracy'].mean():.4f} and {out['recommended() ece'].mean():.4f}.",
            f"- EBCC chosen on {len(ebcc)} of {len(out)}; its output constant "
            f"{EBCC_OUTPUT_TEMPERATURE:g} as shipped, {in_sample_c:g} chosen on all 16.",
            "",
            to_markdown(out.round(4)),
            "",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=default_root())
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res, grid = evaluate(args.root)
    text = report(held_out(res, grid), grid, best_peers())
    print("## ChosenModel left out\n" + text)
    if args.write:
        path = ROOT / "docs" / "benchmarks.md"
        body = replace_section(path.read_text(encoding="utf-8"), "ChosenModel left out", text)
        path.write_text(body, encoding="utf-8")


if __name__ == "__main__":
    main()
