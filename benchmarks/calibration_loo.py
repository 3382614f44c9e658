"""Leave-one-dataset-out check of recommended()'s output temperature.

recommended() runs Dawid–Skene EM at temperature ``0.4 * sqrt(n)`` for a task with ``n``
labels and reports the posterior at ``T = c * n ** p`` (``p = 0.5``, ``c = 1.7``). This
script fits that EM once per dataset folder (``labels.csv``, ``truth.csv``), then for
each form of ``T`` picks ``c`` on all datasets but one (lowest mean expected calibration
error, 10 bins) and scores the one left out, so the printed held-out ECE is what a
constant chosen without the dataset gives on it. Labels do not depend on ``T``.

    python benchmarks/calibration_loo.py                # ../shared/datasets
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from accuracy import default_root, load, scores  # noqa: E402

import crowdbayes as cb  # noqa: E402
from crowdbayes.recommend import CalibratedDawidSkene, task_temperatures, temper  # noqa: E402

FORMS = {  # name -> (label_power, grid of c)
    "one temperature (p = 0)": (0.0, np.round(np.arange(1.0, 10.01, 0.1), 2)),
    "c * sqrt(n) (p = 0.5)": (0.5, np.round(np.arange(0.3, 4.01, 0.05), 2)),
}
DEFAULT = CalibratedDawidSkene()  # recommended()'s EM temperature and label power


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("root", nargs="?", type=Path, default=default_root())
    args = p.parse_args(argv)
    fits = {}
    for folder in sorted(f for f in args.root.iterdir() if f.is_dir()):
        loaded = load(folder)
        if loaded is None:
            continue
        df, gold = loaded
        ann = cb.as_annotations(df)
        # temperature = em_temperature: the reported posterior is EM's own
        ds = CalibratedDawidSkene(temperature=DEFAULT.em_temperature).fit(ann)
        em_tau = task_temperatures(ann, DEFAULT.em_temperature, DEFAULT.label_power)
        fits[folder.name] = (ann, em_tau, ds.predict_proba(), ds.predict(), gold)
    names = list(fits)
    rows = []
    for form, (power, grid) in FORMS.items():
        ece = np.empty((len(grid), len(names)))
        for j, name in enumerate(names):
            ann, em_tau, proba, labels, gold = fits[name]
            for i, c in enumerate(grid):
                tempered = temper(proba.to_numpy(), task_temperatures(ann, c, power) / em_tau)
                frame = pd.DataFrame(tempered, index=proba.index, columns=proba.columns)
                ece[i, j] = scores(frame, labels, gold)["ece"]
        best = int(ece.mean(axis=1).argmin())
        held, picks = [], []
        for j in range(len(names)):
            i = int(np.delete(ece, j, axis=1).mean(axis=1).argmin())
            held.append(ece[i, j])
            picks.append(grid[i])
        rows.append(
            {
                "form": form,
                "c on all datasets": grid[best],
                "mean ECE (all)": ece[best].mean(),
                "held-out mean ECE": float(np.mean(held)),
                "c chosen on 15": f"{min(picks)}..{max(picks)}",
            }
        )
        print(form, dict(zip(names, np.round(held, 3), strict=True)))
    out = pd.DataFrame(rows).set_index("form")
    print(out.round(4).to_string())
    return out


if __name__ == "__main__":
    main()
