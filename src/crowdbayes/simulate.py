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

__all__ = [
    "Simulated",
    "assign_annotators",
    "dirichlet_confusion",
    "labels_from_confusion",
    "sample_labels",
    "simulate_dawid_skene",
    "true_accuracy",
]


class Simulated(NamedTuple):
    annotations: pd.DataFrame  # long: task, worker, label
    truth: pd.Series  # task -> true class
    confusion: np.ndarray  # [n_workers, K, K] true confusion matrices
    class_prior: np.ndarray  # [K]

    @property
    def accuracy(self) -> np.ndarray:
        """Each annotator's true accuracy under the class prior, shape (n_workers,)."""
        return true_accuracy(self.confusion, self.class_prior)


def true_accuracy(confusion: np.ndarray, class_prior: np.ndarray) -> np.ndarray:
    """``[W]``: each annotator's chance of a right label, ``sum_k pi_k confusion[w, k, k]``."""
    return np.diagonal(confusion, axis1=1, axis2=2) @ class_prior


def dirichlet_confusion(
    n_workers: int, n_classes: int, strength: float, accuracy: float, rng: np.random.Generator
) -> np.ndarray:
    """``[W, K, K]`` confusion rows drawn from DawidSkene's prior ``Dirichlet(1 + P)``
    (``P``: ``strength * accuracy`` on the diagonal, the rest evenly)."""
    from .models.dawid_skene import confusion_pseudo_counts

    P = confusion_pseudo_counts(n_classes, strength, accuracy)
    g = rng.gamma(np.broadcast_to(1.0 + P, (n_workers, n_classes, n_classes)))
    return g / g.sum(axis=-1, keepdims=True)


def assign_annotators(
    n_workers: int,
    n_tasks: int,
    labels_per_task: int,
    rng: np.random.Generator,
    log_activity: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per label, its task and annotator: each task gets ``labels_per_task`` distinct
    annotators, uniformly at random, or with weights ``exp(log_activity)`` (weighted
    sampling without replacement by the Gumbel top-k trick)."""
    if labels_per_task > n_workers:
        raise ValueError("labels_per_task cannot exceed n_workers")
    if log_activity is None:
        order = np.argsort(rng.random((n_tasks, n_workers)), axis=1)
    else:
        order = np.argsort(-(log_activity[None, :] + rng.gumbel(size=(n_tasks, n_workers))), axis=1)
    return np.repeat(np.arange(n_tasks), labels_per_task), order[:, :labels_per_task].ravel()


def labels_from_confusion(
    confusion: np.ndarray,
    truth: np.ndarray,
    tasks: np.ndarray,
    workers: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """One label per (task, annotator) pair, drawn from the annotator's confusion row of
    the task's true class."""
    cum = confusion[workers, truth[tasks]].cumsum(axis=1)
    return (rng.random(len(tasks))[:, None] > cum).sum(axis=1).clip(max=confusion.shape[-1] - 1)


def sample_labels(
    confusion: np.ndarray,
    class_prior: np.ndarray,
    n_tasks: int,
    labels_per_task: int,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Labels from per-annotator confusion matrices ``[W, K, K]``: true classes from
    ``class_prior``, ``labels_per_task`` distinct annotators per task chosen at random.
    Returns the long table (task, worker, label) and the true classes.

    >>> rng = np.random.default_rng(0)
    >>> df, truth = sample_labels(np.tile(np.eye(2), (3, 1, 1)), np.array([0.5, 0.5]), 4, 2, rng)
    >>> bool((df["label"].to_numpy() == truth[df["task"]]).all())   # perfect annotators
    True
    """
    W, K, _ = confusion.shape
    truth = rng.choice(K, size=n_tasks, p=class_prior)
    tasks, workers = assign_annotators(W, n_tasks, labels_per_task, rng)
    labels = labels_from_confusion(confusion, truth, tasks, workers, rng)
    return pd.DataFrame({"task": tasks, "worker": workers, "label": labels}), truth


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
    df, truth = sample_labels(confusion, pi, n_tasks, labels_per_task, rng)
    return Simulated(df, pd.Series(truth, name="truth"), confusion, pi)
