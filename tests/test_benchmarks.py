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
