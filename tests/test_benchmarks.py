"""The benchmark harness: a fit past its time limit is reported as a timeout."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

from crowdbayes import MajorityVote

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import accuracy


class SwallowsFirstAlarm:
    """A peer whose fit drops the first Timeout, as Python does for an exception raised
    in a garbage-collection callback, then runs on for up to 20 s."""

    def fit_predict_proba(self, df: pd.DataFrame) -> pd.DataFrame:
        try:
            while True:
                time.sleep(0.01)
        except accuracy.Timeout:
            pass
        end = time.monotonic() + 20.0
        while time.monotonic() < end:
            time.sleep(0.01)
        return pd.DataFrame({"a": [1.0]}, index=["t1"])


def test_timeout_is_reported_when_the_first_alarm_is_swallowed() -> None:
    df = pd.DataFrame({"task": ["t1"], "worker": ["w1"], "label": ["a"]})
    out = accuracy.run_one(SwallowsFirstAlarm, df, timeout=1.0, peer=True)
    assert out == {"status": "timeout (>1 s)"}


def test_fit_within_the_limit_is_scored() -> None:
    df = pd.DataFrame(
        {
            "task": ["t1", "t1", "t1", "t2"],
            "worker": ["w1", "w2", "w3", "w1"],
            "label": list("aaba"),
        }
    )
    out = accuracy.run_one(MajorityVote, df, timeout=30.0, peer=False)
    assert out["status"] == "ok"
    assert out["labels"].tolist() == ["a", "a"]


def test_card_results_replace_only_the_marked_block(tmp_path: Path) -> None:
    res = pd.DataFrame(
        [
            # dataset, method, peer, status, accuracy, log_loss, ece, time, label_correlation
            ("d1", "recommended()", False, "ok", 0.90, 0.30, 0.04, 0.01, 0.0123),
            ("d1", "crowd-kit DawidSkene", True, "ok", 0.85, 1.20, 0.10, 0.5, None),
            ("d1", "crowd-kit MajorityVote", True, "ok", 0.88, 1.10, 0.09, 0.1, None),
            ("d2", "recommended()", False, "ok", 0.70, 0.60, 0.08, 0.02, None),
            ("d2", "crowd-kit DawidSkene", True, "ok", 0.75, 1.50, 0.20, 0.4, None),
            ("d2", "crowd-kit MajorityVote", True, "timeout (>1 s)", None, None, None, None, None),
        ],
        columns=[
            "dataset",
            "method",
            "peer",
            "status",
            "accuracy",
            "log_loss",
            "ece",
            "time",
            "label_correlation",
        ],
    )
    card = tmp_path / "card.md"
    card.write_text(f"# Card\n\n## Results\n{accuracy.START}\nold\n{accuracy.END}\n\n## After\n")
    accuracy.write_card(res, card)
    text = card.read_text()
    assert text.startswith("# Card\n\n## Results\n") and text.endswith("\n\n## After\n")
    assert "old" not in text and text.count(accuracy.START) == 1
    assert "mean accuracy 0.8000, mean log-loss 0.4500, mean ECE 0.0600" in text
    assert "best crowd-kit method on 1 of them" in text
    assert (
        "| d1 | 0.012 | 0.9000 | 0.8800 (crowd-kit MajorityVote) | 0.300 | 0.040 | 0.01 |" in text
    )
    assert "| d2 | n/a | 0.7000 | 0.7500 (crowd-kit DawidSkene) |" in text
