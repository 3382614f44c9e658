"""Simulation from the Bayesian annotator models (test helper)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def sample_labels(
    confusion: np.ndarray,
    class_prior: np.ndarray,
    n_tasks: int,
    labels_per_task: int,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Labels from per-annotator confusion matrices ``[W, K, K]``; each task gets
    ``labels_per_task`` distinct annotators chosen at random. Returns (labels, truth)."""
    W, K, _ = confusion.shape
    truth = rng.choice(K, size=n_tasks, p=class_prior)
    workers = np.argsort(rng.random((n_tasks, W)), axis=1)[:, :labels_per_task].ravel()
    tasks = np.repeat(np.arange(n_tasks), labels_per_task)
    cum = confusion[workers, truth[tasks]].cumsum(axis=1)
    labels = (rng.random(len(tasks))[:, None] > cum).sum(axis=1).clip(max=K - 1)
    return pd.DataFrame({"task": tasks, "worker": workers, "label": labels}), truth


def dirichlet_confusion(
    n_workers: int, n_classes: int, strength: float, accuracy: float, rng: np.random.Generator
) -> np.ndarray:
    """Confusion rows drawn from the DawidSkene prior Dirichlet(1 + P)."""
    K = n_classes
    P = np.full((K, K), strength * (1 - accuracy) / (K - 1))
    np.fill_diagonal(P, strength * accuracy)
    g = rng.gamma(np.broadcast_to(1.0 + P, (n_workers, K, K)))
    return g / g.sum(axis=-1, keepdims=True)


def accuracy(confusion: np.ndarray, class_prior: np.ndarray) -> np.ndarray:
    return np.diagonal(confusion, axis1=1, axis2=2) @ class_prior
