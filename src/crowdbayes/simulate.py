"""Simulated annotations with known truth, for tests, recovery checks and benchmarks.

>>> from crowdbayes.simulate import simulate_dawid_skene
>>> sim = simulate_dawid_skene(n_tasks=100, n_workers=10, n_classes=3, labels_per_task=5, seed=0)
>>> sim.annotations.shape, sim.truth.shape, sim.confusion.shape
((500, 3), (100,), (10, 3, 3))
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

__all__ = ["Simulated", "simulate_dawid_skene"]


class Simulated(NamedTuple):
    annotations: pd.DataFrame  # long: task, worker, label
    truth: pd.Series  # task -> true class
    confusion: np.ndarray  # [n_workers, K, K] true confusion matrices
    class_prior: np.ndarray  # [K]

    @property
    def accuracy(self) -> np.ndarray:
        """Each annotator's true accuracy under the class prior, shape (n_workers,)."""
        return np.diagonal(self.confusion, axis1=1, axis2=2) @ self.class_prior


def simulate_dawid_skene(
    n_tasks: int = 1000,
    n_workers: int = 50,
    n_classes: int = 4,
    labels_per_task: int = 5,
    accuracy_range: tuple[float, float] = (0.5, 0.9),
    concentration: float = 50.0,
    class_prior: np.ndarray | None = None,
    seed: int = 0,
) -> Simulated:
    """Draw data from the Dawid–Skene model.

    Each annotator's accuracy is uniform in ``accuracy_range``; the rows of its
    confusion matrix are Dirichlet draws around "correct with that accuracy, errors
    spread evenly" (``concentration`` controls how far from even the errors are).
    Each task gets ``labels_per_task`` labels from distinct annotators chosen at random.
    """
    if labels_per_task > n_workers:
        raise ValueError("labels_per_task cannot exceed n_workers")
    rng = np.random.default_rng(seed)
    K = n_classes
    pi = np.full(K, 1.0 / K) if class_prior is None else np.asarray(class_prior, float)
    acc = rng.uniform(*accuracy_range, size=n_workers)
    mean = (1.0 - acc)[:, None, None] / (K - 1) * np.ones((n_workers, K, K))
    idx = np.arange(K)
    mean[:, idx, idx] = acc[:, None]
    gammas = rng.gamma(concentration * mean + 1e-3)  # Dirichlet rows, all at once
    confusion = gammas / gammas.sum(axis=2, keepdims=True)
    truth = rng.choice(K, size=n_tasks, p=pi)
    # distinct annotators per task: the first labels_per_task of a random permutation
    keys = rng.random((n_tasks, n_workers))
    workers = np.argsort(keys, axis=1)[:, :labels_per_task].ravel()
    tasks = np.repeat(np.arange(n_tasks), labels_per_task)
    cum = confusion[workers, truth[tasks]].cumsum(axis=1)
    labels = (rng.random(len(tasks))[:, None] > cum).sum(axis=1).clip(max=K - 1)
    df = pd.DataFrame({"task": tasks, "worker": workers, "label": labels})
    return Simulated(df, pd.Series(truth, name="truth"), confusion, pi)
