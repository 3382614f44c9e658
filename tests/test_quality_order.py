"""The annotator table (report, plots) puts the worst annotators first: for accuracy on
gold without a model interval (GoldMajorityVote), by the Wilson interval's upper bound,
so one wrong gold label does not outrank 40 wrong of 100."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crowdbayes.models.gold_majority_vote import GoldMajorityVote
from crowdbayes.plots import annotator_quality_table


def test_gold_accuracy_order_weighs_the_evidence() -> None:
    rng = np.random.default_rng(0)
    tasks = [f"t{i}" for i in range(120)]
    truth = {t: int(rng.integers(0, 2)) for t in tasks}
    rows = []
    for t in tasks:  # three good annotators on every task
        for w in ("a", "b", "c"):
            rows.append((t, w, truth[t] if rng.random() < 0.95 else 1 - truth[t]))
    for i, t in enumerate(tasks[:100]):  # "many": 40 of 100 wrong
        rows.append((t, "many", 1 - truth[t] if i < 40 else truth[t]))
    rows.append((tasks[100], "one", 1 - truth[tasks[100]]))  # "one": 1 of 1 wrong
    df = pd.DataFrame(rows, columns=["task", "worker", "label"])
    gold = {t: truth[t] for t in tasks}
    table = annotator_quality_table(GoldMajorityVote().fit(df, gold=gold))
    assert "Wilson" in table.attrs["quality"]
    assert list(table.index[:2]) == ["many", "one"]  # was ["one", "many"]: quality 0.0 first
    assert table.loc["one", "quality"] == 0.0
    assert table.loc["many", "upper"] < table.loc["one", "upper"]


def test_the_report_says_the_order() -> None:
    import crowdbayes as cb

    df, gold = cb.datasets.load("bluebirds")
    gmv = annotator_quality_table(GoldMajorityVote().fit(df, gold=gold))
    ds = annotator_quality_table(cb.DawidSkene().fit(df))
    assert gmv.attrs["order"].startswith("by the interval's upper bound")
    assert ds.attrs["order"].startswith("by it, lowest first")
    page = cb.report.build_report(df, gold=gold, model="gmv")
    assert "Sorted by the interval&#x27;s upper bound, lowest first" in page
