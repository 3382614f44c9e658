"""suspicious_tasks: flags, reasons, inputs and order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import crowdbayes as cb
from crowdbayes import metrics
from crowdbayes.io import read_platform_export
from crowdbayes.models.gold_majority_vote import GoldMajorityVote
from crowdbayes.qc import labels_given, suspicious_tasks

EXPORT = Path(__file__).parent / "data" / "platform_export.tsv"


def test_flags_follow_thresholds_and_are_ordered() -> None:
    labels, truth = cb.datasets.load("bluebirds")
    gmv = GoldMajorityVote().fit(labels, gold=truth.iloc[::4])
    tm = metrics.task_metrics(gmv)
    flagged = suspicious_tasks(gmv, uncertainty_above=0.6, consistency_below=0.7)
    gold_wrong = tm["gold"] & (tm["crowd_label"] != tm["gold_label"])
    expected = (tm["uncertainty"] > 0.6) | (tm["consistency"] < 0.7) | gold_wrong
    assert set(flagged.index) == set(tm.index[expected])
    assert flagged["consistency"].is_monotonic_increasing
    row = flagged.iloc[0]
    assert "consistency" in row["reason"]
    # each reason text matches its rule
    has_u = flagged["reason"].str.contains("uncertainty")
    assert (has_u == (flagged["uncertainty"] > 0.6)).all()
    has_g = flagged["reason"].str.contains("gold is")
    assert has_g.sum() == gold_wrong.sum() > 0
    only_gold = suspicious_tasks(gmv, uncertainty_above=0.6, consistency_below=0.7, tasks="gold")
    assert only_gold["gold"].all() and set(only_gold.index) <= set(flagged.index)
    none = suspicious_tasks(gmv, None, None, share=0, gold_disagreement=False)
    assert len(none) == 0 and "reason" in none.columns
    with pytest.raises(ValueError, match="tasks must be"):
        suspicious_tasks(gmv, tasks="some")


def test_inputs_and_labels_given_from_platform_export() -> None:
    ann = read_platform_export(EXPORT)
    ds = cb.DawidSkene().fit(ann)
    flagged = suspicious_tasks(ds, uncertainty_above=0.3, consistency_below=0.9)
    assert len(flagged) > 0
    assert {"image", "note", "labels_given", "reason"} <= set(flagged.columns)
    t = flagged.index[0]
    assert flagged.loc[t, "image"] == f"https://example.org/pets/{t[-4:]}.jpg"
    counts = ann.to_long().query("task == @t")["label"].value_counts().sort_index()
    assert flagged.loc[t, "labels_given"] == ", ".join(f"{c} {n}" for c, n in counts.items())
    given = labels_given(ds)
    assert len(given) == ann.n_tasks and given.index.equals(ann.task_ids)
    assert np.all(pd.notna(given.to_numpy()))


def test_quality_control_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import runpy

    example = Path(__file__).parents[1] / "docs" / "examples" / "quality_control.py"
    monkeypatch.setattr("sys.argv", [str(example), str(tmp_path)])
    runpy.run_path(str(example), run_name="__main__")
    out = capsys.readouterr().out
    for text in ("gold", "ordinary", "uncertainty", "consistency", "crowd says", "labels_given"):
        assert text in out
    assert (tmp_path / "report.html").stat().st_size > 1_000_000
    assert (tmp_path / "histograms.html").exists()


# ------------------------------------------------------------ default rule and single score
def _dog_gmv() -> GoldMajorityVote:
    """dog as `crowdbayes report --dataset dog` fits it: GoldMajorityVote, 10% of gold."""
    labels, truth = cb.datasets.load("dog")
    return GoldMajorityVote().fit(labels, gold=truth.sample(frac=0.1, random_state=0))


def test_default_flags_a_small_share_ranked_by_one_score() -> None:
    gmv = _dog_gmv()
    n = gmv.annotations_.n_tasks
    flagged = suspicious_tasks(gmv)
    # dog: 807 tasks; the old default (uncertainty > 0.5 or consistency < 0.5) flagged 439
    assert 0.05 * n <= len(flagged) <= 0.11 * n
    assert np.allclose(flagged["score"], 1 - flagged["consistency"])
    assert flagged["score"].is_monotonic_decreasing
    tm = metrics.task_metrics(gmv)
    cut = np.quantile(1 - tm["consistency"], 0.9)
    ordinary = flagged[~flagged["reason"].str.contains("gold is")]
    assert (ordinary["score"] >= cut - 1e-12).all()  # the least consistent tenth
    assert ordinary["reason"].str.contains("the 10% least consistent").all()
    ds = suspicious_tasks(cb.DawidSkene().fit(gmv.annotations_.with_gold(None)))
    assert len(ds) <= 0.11 * n  # a share, whatever the model's scale of probabilities


def test_each_threshold_works_on_its_own() -> None:
    gmv = _dog_gmv()
    tm = metrics.task_metrics(gmv)
    gold_wrong = tm["gold"] & (tm["crowd_label"] != tm["gold_label"])
    alone = suspicious_tasks(gmv, consistency_below=0.5)
    assert set(alone.index) == set(tm.index[(tm["consistency"] < 0.5) | gold_wrong])
    alone = suspicious_tasks(gmv, uncertainty_above=0.8, gold_disagreement=False)
    assert set(alone.index) == set(tm.index[tm["uncertainty"] > 0.8])
    assert not alone["reason"].str.contains("consistency").any()
    share = suspicious_tasks(gmv, share=0.05, gold_disagreement=False)
    assert len(share) == int(np.ceil(0.05 * len(tm)))
    assert len(suspicious_tasks(gmv, share=0, gold_disagreement=False)) == 0
    with pytest.raises(ValueError, match="share must be in"):
        suspicious_tasks(gmv, share=1.5)
