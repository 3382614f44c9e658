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
    "POPULATIONS",
    "Simulated",
    "assign_annotators",
    "dirichlet_confusion",
    "labels_from_confusion",
    "sample_labels",
    "simulate_dawid_skene",
    "simulate_population",
    "skewed_class_prior",
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
    """``[W, K, K]`` confusion rows drawn from DawidSkene's prior ``Dirichlet(P)``
    (``P``: ``strength * accuracy`` on the diagonal, the rest evenly)."""
    from .models.dawid_skene import confusion_pseudo_counts

    P = np.maximum(confusion_pseudo_counts(n_classes, strength, accuracy), 1e-2)
    g = rng.gamma(np.broadcast_to(P, (n_workers, n_classes, n_classes)))
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


#: Crowds not drawn from any model's prior (see :func:`simulate_population`).
POPULATIONS = ("one_coin", "class_conditional", "spammers", "skewed_activity")


def skewed_class_prior(n_classes: int) -> np.ndarray:
    """A skewed class prior: ``0.6, 0.3, 0.1`` at ``K = 3``; halving shares otherwise
    (``K = 2``: ``0.67, 0.33``), normalised.

    >>> skewed_class_prior(3).round(2).tolist()
    [0.6, 0.3, 0.1]
    """
    if n_classes == 3:
        return np.array([0.6, 0.3, 0.1])
    w = 0.5 ** np.arange(n_classes)
    return w / w.sum()


def simulate_population(
    population: str,
    n_classes: int = 3,
    n_tasks: int = 3000,
    n_workers: int = 300,
    labels_per_task: int = 5,
    seed: int = 0,
) -> Simulated:
    """Labels from a crowd that is not any model's prior (for interval coverage checks).

    - ``"one_coin"``: each annotator's accuracy ``a ~ U[0.55, 0.95]``: right with
      probability ``a``, otherwise a uniformly random class (so ``p(right) = a + (1 - a) / K``);
      classes equally likely; annotators picked uniformly.
    - ``"class_conditional"``: ``a_jk ~ U[0.55, 0.95]`` per annotator and true class, the
      errors spread evenly; a skewed class prior (:func:`skewed_class_prior`).
    - ``"spammers"``: 20% of annotators label uniformly at random, the rest as
      ``"one_coin"`` with ``a ~ U[0.8, 0.98]``.
    - ``"skewed_activity"``: ``"one_coin"`` accuracies; labels per annotator log-normal
      (median about 20 labels at the default sizes, the quietest a handful).

    >>> sim = simulate_population("spammers", n_classes=2, n_tasks=200, n_workers=20, seed=1)
    >>> sim.annotations.shape, sim.confusion.shape
    ((1000, 3), (20, 2, 2))
    """
    if population not in POPULATIONS:
        raise ValueError(f"population must be one of {POPULATIONS}, got {population!r}")
    rng = np.random.default_rng(seed)
    K, W = int(n_classes), int(n_workers)
    eye = np.eye(K)
    pi = np.full(K, 1.0 / K)
    log_activity = None
    if population == "class_conditional":
        pi = skewed_class_prior(K)
        acc = rng.uniform(0.55, 0.95, size=(W, K))
        confusion = acc[:, :, None] * eye + ((1.0 - acc) / (K - 1))[:, :, None] * (1.0 - eye)
    else:
        lo, hi = (0.8, 0.98) if population == "spammers" else (0.55, 0.95)
        a = rng.uniform(lo, hi, size=W)
        if population == "spammers":
            a[rng.permutation(W)[: round(0.2 * W)]] = 0.0
        confusion = a[:, None, None] * eye + ((1.0 - a) / K)[:, None, None]
        if population == "skewed_activity":
            log_activity = 1.2 * rng.standard_normal(W)
    truth = rng.choice(K, size=int(n_tasks), p=pi)
    tasks, workers = assign_annotators(W, int(n_tasks), labels_per_task, rng, log_activity)
    labels = labels_from_confusion(confusion, truth, tasks, workers, rng)
    df = pd.DataFrame({"task": tasks, "worker": workers, "label": labels})
    return Simulated(df, pd.Series(truth, name="truth"), confusion, pi)
