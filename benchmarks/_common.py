"""Shared helpers of the benchmark scripts: a synthetic crowd, timing, peak memory.

The generator draws ``n_labels`` labels on ``n_labels // labels_per_task`` tasks from
``n_workers`` annotators in ``n_classes`` classes. Annotator ``j`` is right with
probability ``a_j`` (drawn from a Beta distribution with mean ``accuracy`` whose spread
grows with ``quality_spread``), else gives a uniformly chosen wrong class. True classes
are drawn from a mildly unbalanced class prior.
"""

from __future__ import annotations

import gc
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from crowdbayes import metrics  # noqa: E402
from crowdbayes.data import Annotations  # noqa: E402


class Synthetic(NamedTuple):
    ann: Annotations  # encoded, ready for crowdbayes
    truth: np.ndarray  # [n_tasks] true class codes
    accuracy: np.ndarray  # [n_workers] each annotator's probability of being right

    def frame(self) -> pd.DataFrame:
        """The long table (``task``, ``worker``, ``label`` as int columns), as peers want it."""
        return pd.DataFrame(
            {"task": self.ann.task, "worker": self.ann.worker, "label": self.ann.label}
        )


def synthetic(
    n_labels: int = 500_000,
    n_workers: int = 1_000,
    n_classes: int = 4,
    labels_per_task: int = 10,
    accuracy: float = 0.7,
    quality_spread: float = 0.15,
    seed: int = 0,
) -> Synthetic:
    """A synthetic crowd (see the module docstring); vectorised, ~1 s per 10M labels."""
    rng = np.random.default_rng(seed)
    n_tasks = max(n_labels // labels_per_task, 1)
    n = n_tasks * labels_per_task
    # Beta(mean * c, (1 - mean) * c) with variance ~ quality_spread ** 2
    var = max(quality_spread, 1e-3) ** 2
    c = max(accuracy * (1 - accuracy) / var - 1.0, 0.5)
    acc = rng.beta(accuracy * c, (1 - accuracy) * c, size=n_workers)
    prior = rng.dirichlet(np.full(n_classes, 5.0))
    truth = rng.choice(n_classes, size=n_tasks, p=prior).astype(np.int32)
    task = np.repeat(np.arange(n_tasks, dtype=np.int32), labels_per_task)
    worker = rng.integers(0, n_workers, size=n, dtype=np.int32)
    right = rng.random(n) < acc[worker]
    wrong = (truth[task] + rng.integers(1, n_classes, size=n)) % n_classes
    label = np.where(right, truth[task], wrong).astype(np.int32)
    ann = Annotations(
        task=task,
        worker=worker,
        label=label,
        task_ids=pd.RangeIndex(n_tasks, name="task"),
        worker_ids=pd.RangeIndex(n_workers, name="worker"),
        classes=pd.Index(np.arange(n_classes), name="label"),
        gold=np.full(n_tasks, -1, dtype=np.int32),
    )
    return Synthetic(ann, truth, acc)


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Median wall time of ``repeat`` calls (seconds) and the last result."""
    times, out = [], None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20


def current_rss_mb() -> float:
    """Resident memory now, in MiB (Linux; 0 elsewhere)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def proba_scores(proba: pd.DataFrame, gold: pd.Series) -> dict[str, float]:
    """``log_loss`` and ``ece`` of a model's (or a peer's) probabilities on the gold tasks,
    by :func:`crowdbayes.metrics.log_loss` (clipped at ``metrics.PROB_CLIP``) and
    :func:`crowdbayes.metrics.expected_calibration_error` (10 bins). A gold task the
    probabilities lack (a peer may drop tasks) counts as probability 0 on every class."""
    proba = proba.reindex(index=gold.index).fillna(0.0)
    return {
        "log_loss": metrics.log_loss(proba, gold),
        "ece": metrics.expected_calibration_error(proba, gold),
    }
