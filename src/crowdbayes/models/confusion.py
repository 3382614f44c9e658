"""The confusion-matrix likelihood the annotator families share: the log-likelihood of
every task's labels given each true class (``[K, T]``, from each annotator's log
confusion matrix) and the expected label counts per annotator, true class and label
(``[W, K, L]``, the sufficient statistics of the confusion rows), over the label layouts
of :class:`~crowdbayes.inference.em.EMData` (one device, sharded or shape-bucketed).

:class:`ConfusionModel` is the smallest family on them (a confusion matrix per annotator
and one class prior), what a fitted model scores new tasks with and what a family whose
params hold ``log_confusion`` (and ``log_pi``) inherits its likelihood from. It imports no
model family, so every family (and :mod:`crowdbayes.models.bayesian`) can import it.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp

from ..inference.em import EMData
from ..inference.segments import Segments, transposed_sum

__all__ = [
    "ConfusionLike",
    "ConfusionModel",
    "ConfusionParams",
    "confusion_log_lik",
    "expected_counts",
]


class ConfusionParams(NamedTuple):
    log_confusion: jnp.ndarray  # [W, K, L]
    log_pi: jnp.ndarray  # [K]


class ConfusionLike(Protocol):
    """Params with each annotator's log confusion matrix and a log class prior."""

    @property
    def log_confusion(self) -> jnp.ndarray: ...  # [W, K, L]

    @property
    def log_pi(self) -> jnp.ndarray: ...  # [K]


def confusion_log_lik(log_confusion: jnp.ndarray, data: EMData) -> jnp.ndarray:
    """``[K, T]``: each task's log-likelihood of its labels given each true class, from
    the annotators' log confusion matrices ``[W, K, L]``."""
    W, K, L = log_confusion.shape
    table = jnp.transpose(log_confusion, (1, 0, 2)).reshape(K, W * L)
    if isinstance(data.by_task, Segments):  # gradients (NUTS) by the per-annotator layout
        return transposed_sum(data.by_task, data.by_worker_label, table)
    return data.by_task.sum(table)


def expected_counts(post: jnp.ndarray, data: EMData, n_workers: int) -> jnp.ndarray:
    """``[W, K, L]``: expected number of labels ``l`` from annotator ``w`` on class-``k``
    tasks, given the class posterior ``post`` ``[K, T]``."""
    K = post.shape[0]
    counts = data.by_worker_label.sum(post)  # [K, W * L]
    return jnp.transpose(counts.reshape(K, n_workers, -1), (1, 0, 2))


_expected_counts_jit = jax.jit(expected_counts, static_argnums=2)


class ConfusionModel:
    """A confusion matrix per annotator and one class prior (the Dawid–Skene likelihood),
    for scoring tasks with fitted confusions (class-major arrays)."""

    __name__ = "ConfusionModel"

    @staticmethod
    def log_lik(params: ConfusionLike, data: EMData) -> jnp.ndarray:
        return confusion_log_lik(params.log_confusion, data)

    @staticmethod
    def log_class_prior(params: ConfusionLike, data: EMData) -> jnp.ndarray:
        return params.log_pi[:, None]

    @staticmethod
    def confusion(params: ConfusionLike) -> jnp.ndarray:
        """``[W, K, L]``: each annotator's confusion matrix."""
        return jnp.exp(params.log_confusion)
