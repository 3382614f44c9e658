r"""Dawid–Skene: a full confusion matrix per annotator.

Generative story (``K`` classes, annotator ``j``, task ``i``):

.. math::

    \pi \sim \mathrm{Dirichlet}(1 + c), \qquad
    \theta_{jk} \sim \mathrm{Dirichlet}(1 + P_k), \qquad
    z_i \sim \mathrm{Categorical}(\pi), \qquad
    y_{ij} \mid z_i = k \sim \mathrm{Categorical}(\theta_{jk}),

where the pseudo-counts ``P`` put ``prior_strength * prior_accuracy`` on the
diagonal and spread ``prior_strength * (1 - prior_accuracy)`` evenly off it. EM
finds the MAP estimate with ``z`` marginalised; the prior keeps every annotator
defined (few labels give the prior mean) and better than chance a priori.

>>> import crowdbayes as cb
>>> annotations, gold = cb.datasets.load("rte")
>>> ds = cb.DawidSkene().fit(annotations)
>>> round(float((ds.predict().loc[gold.index] == gold).mean()), 3)
0.929
>>> ds.converged_
True
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..base import Aggregator, check_is_fitted
from ..data import Annotations
from ..inference.em import EMData, em_data, posterior, run_em

__all__ = ["DSHyper", "DSParams", "DawidSkene", "DawidSkeneModel", "confusion_pseudo_counts"]


class DSParams(NamedTuple):
    log_confusion: jnp.ndarray  # [W, K, L]: log p(label l | true class k) for annotator w
    log_pi: jnp.ndarray  # [K]


class DSHyper(NamedTuple):
    confusion_counts: jnp.ndarray  # [K, L] Dirichlet pseudo-counts (alpha - 1)
    class_counts: jnp.ndarray  # [K]


def confusion_pseudo_counts(n_classes: int, strength: float, accuracy: float) -> np.ndarray:
    """Pseudo-counts ``[K, K]``: ``strength * accuracy`` on the diagonal, the rest spread evenly.

    >>> confusion_pseudo_counts(3, 2.0, 0.7).round(2).tolist()
    [[1.4, 0.3, 0.3], [0.3, 1.4, 0.3], [0.3, 0.3, 1.4]]
    """
    off = strength * (1.0 - accuracy) / (n_classes - 1)
    counts = np.full((n_classes, n_classes), off)
    np.fill_diagonal(counts, strength * accuracy)
    return counts


def _safe_log(x: jnp.ndarray) -> jnp.ndarray:
    return jnp.log(jnp.maximum(x, jnp.finfo(x.dtype).tiny))


class DawidSkeneModel:
    """Static likelihood and EM updates of the Dawid–Skene model (class-major arrays)."""

    __name__ = "DawidSkene"

    @staticmethod
    def log_lik(params: DSParams, data: EMData) -> jnp.ndarray:
        W, K, L = params.log_confusion.shape
        table = jnp.transpose(params.log_confusion, (1, 0, 2)).reshape(K, W * L)
        return data.by_task.sum(table)

    @staticmethod
    def log_class_prior(params: DSParams, data: EMData) -> jnp.ndarray:
        return params.log_pi[:, None]

    @staticmethod
    def expected_counts(post: jnp.ndarray, data: EMData, n_workers: int) -> jnp.ndarray:
        """``[W, K, L]``: expected number of labels ``l`` from annotator ``w`` on class-``k`` tasks."""
        K = post.shape[0]
        counts = data.by_worker_label.sum(post)  # [K, W * L]
        return jnp.transpose(counts.reshape(K, n_workers, -1), (1, 0, 2))

    @staticmethod
    def m_step(post: jnp.ndarray, data: EMData, hyper: DSHyper) -> DSParams:
        L = hyper.confusion_counts.shape[1]
        W = data.by_worker_label.inverse.shape[0] // L
        counts = DawidSkeneModel.expected_counts(post, data, W) + hyper.confusion_counts
        conf = counts / counts.sum(-1, keepdims=True)
        class_counts = post.sum(1) + hyper.class_counts
        return DSParams(_safe_log(conf), _safe_log(class_counts / class_counts.sum()))

    @staticmethod
    def log_prior(params: DSParams, hyper: DSHyper) -> jnp.ndarray:
        return (hyper.confusion_counts * params.log_confusion).sum() + (
            hyper.class_counts * params.log_pi
        ).sum()


def vote_shares(ann: Annotations) -> np.ndarray:
    """Majority-vote shares ``[n_tasks, K]`` with gold tasks clamped (EM's starting point)."""
    votes = ann.vote_counts().astype(np.float64)
    shares = votes / votes.sum(axis=1, keepdims=True)
    known = ann.gold >= 0
    shares[known] = np.eye(ann.n_classes)[ann.gold[known]]
    return shares


class DawidSkene(Aggregator):
    """Dawid–Skene aggregation (full confusion matrix per annotator), MAP by EM.

    Parameters
    ----------
    prior_strength : float, default 2.0
        Dirichlet pseudo-labels per row of each confusion matrix (0 gives maximum likelihood).
    prior_accuracy : float, default 0.7
        Share of those pseudo-labels on the diagonal: the prior's accuracy.
    class_prior_strength : float, default 1.0
        Pseudo-count per class for the class prior.
    max_iter : int, default 100
    tol : float, default 1e-6
        Stop when the log-posterior gains less than ``tol`` per label in one iteration
        (``tol=0`` runs all ``max_iter`` iterations).
    progress : bool, default False
        Show a progress bar.

    Attributes
    ----------
    confusion_ : ndarray ``[n_workers, K, K]``, rows true class, columns label given.
    class_prior_ : ndarray ``[K]``.
    history_ : ndarray, log-posterior after each iteration (non-decreasing).
    n_iter_, converged_ : iterations run and whether ``tol`` was met.
    """

    def __init__(
        self,
        prior_strength: float = 2.0,
        prior_accuracy: float = 0.7,
        class_prior_strength: float = 1.0,
        max_iter: int = 100,
        tol: float = 1e-6,
        progress: bool = False,
    ) -> None:
        self.prior_strength = prior_strength
        self.prior_accuracy = prior_accuracy
        self.class_prior_strength = class_prior_strength
        self.max_iter = max_iter
        self.tol = tol
        self.progress = progress

    def _hyper(self, n_classes: int) -> DSHyper:
        if self.prior_strength < 0 or self.class_prior_strength < 0:
            raise ValueError("prior_strength and class_prior_strength must be >= 0")
        if not 0.0 <= self.prior_accuracy <= 1.0:
            raise ValueError(f"prior_accuracy must be in [0, 1], got {self.prior_accuracy}")
        counts = confusion_pseudo_counts(n_classes, self.prior_strength, self.prior_accuracy)
        return DSHyper(
            jnp.asarray(counts, jnp.float32),
            jnp.full((n_classes,), self.class_prior_strength, jnp.float32),
        )

    def _fit(self, ann: Annotations) -> None:
        if int(self.max_iter) < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")
        self.data_ = em_data(ann)
        res = run_em(
            DawidSkeneModel,
            self.data_,
            vote_shares(ann),
            self._hyper(ann.n_classes),
            max_iter=int(self.max_iter),
            tol=float(self.tol),
            progress=bool(self.progress),
        )
        self.params_ = res.params
        self.confusion_ = np.exp(np.asarray(res.params.log_confusion, dtype=np.float64))
        self.class_prior_ = np.exp(np.asarray(res.params.log_pi, dtype=np.float64))
        self.history_ = res.history
        self.n_iter_ = res.n_iter
        self.converged_ = res.converged
        self.proba_ = res.post
        self.label_codes_ = np.argmax(res.post, axis=1)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("data_", None)  # layouts are rebuilt on demand; keep pickles small
        return state

    def _predict_proba_new(self, ann: Annotations) -> np.ndarray:
        W = ann.n_workers  # known workers first, then new ones
        log_conf = np.asarray(self.params_.log_confusion)
        n_new = W - log_conf.shape[0]
        if n_new > 0:
            mean = np.log(np.exp(log_conf).mean(axis=0, keepdims=True))
            log_conf = np.concatenate([log_conf, np.repeat(mean, n_new, axis=0)])
        params = DSParams(jnp.asarray(log_conf), self.params_.log_pi)
        return posterior(DawidSkeneModel, params, em_data(ann, n_workers=W))

    def confusion_matrix(self, worker: Any) -> pd.DataFrame:
        """The fitted confusion matrix of one annotator: rows true class, columns label given."""
        check_is_fitted(self)
        ann = self.annotations_
        pos = ann.worker_ids.get_indexer([worker])[0]
        if pos < 0:
            raise KeyError(f"annotator {worker!r} is not in the fitted data")
        return pd.DataFrame(
            self.confusion_[pos],
            index=pd.Index(ann.classes, name="true"),
            columns=pd.Index(ann.classes, name="given"),
        )

    def annotator_quality(self) -> pd.DataFrame:
        """Per annotator: accuracy (probability a label is right, under the class prior),
        number of labels, and agreement with the consensus labels."""
        check_is_fitted(self)
        ann = self.annotations_
        diag = np.diagonal(self.confusion_, axis1=1, axis2=2)  # [W, K]
        return pd.DataFrame(
            {
                "accuracy": diag @ self.class_prior_,
                "n_labels": ann.labels_per_worker(),
                "agreement": self._agreement_with_consensus(),
            },
            index=ann.worker_ids,
        )
