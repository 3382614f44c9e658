r"""Shared-errors Dawid–Skene: one accuracy per annotator and true class (as class-conditional),
and wrong labels that follow one pattern of confusions shared by the whole crowd.

Generative story (``K`` classes, annotator ``j``, task ``i``):

.. math::

    \pi \sim \mathrm{Dirichlet}(c), \qquad
    a_{jk} \sim \mathrm{Beta}(s\,q,\; s\,(1 - q)), \qquad
    e_k \sim \mathrm{Dirichlet}(g \mathbf{1}_{K-1}), \qquad
    z_i \sim \mathrm{Categorical}(\pi), \\
    p(y_{ij} = l \mid z_i = k) = a_{jk} \text{ if } l = k, \text{ else } (1 - a_{jk})\, e_{kl},

where ``e_k`` is a distribution over the ``K - 1`` labels other than ``k``: when an
annotator is wrong about a class-``k`` task, the label it gives is drawn from the same
``e_k`` whoever it is (the crowd's systematic confusions: look-alike breeds, neighbouring
points of a rating scale), while how often it is wrong is its own, per class. The
accuracy prior is class-conditional's (``s = prior_strength``, ``4 / K`` pseudo-labels
per class by default, 4 per annotator; ``q = prior_accuracy``); ``g`` spreads
``error_prior_strength`` (4 pseudo-labels of wrong labels per true class, for the whole
crowd) evenly over the ``K - 1`` wrong labels, so that with no errors seen the pattern is
class-conditional's even spread. It has ``K`` parameters per annotator and
``K (K - 2)`` shared ones (Dawid–Skene: ``K (K - 1)`` per annotator): it nests the
class-conditional model (``e_k`` uniform) and, with two classes (where ``e_k`` has one
entry), is the class-conditional (two-coin) model.

EM's M-step is exact: each accuracy is its Beta posterior's mean given the expected right
and wrong labels, each row ``e_k`` its Dirichlet's mean given the wrong labels pooled
over the crowd (both modes in log-ratio coordinates); EM's intervals draw both from
those posteriors given imputed classes. NUTS samples the same posterior.

>>> import crowdbayes as cb
>>> df, gold = cb.datasets.load("dog")  # 4 breeds of dogs, 109 annotators
>>> se = SharedErrorsDawidSkene().fit(df)
>>> round(float((se.predict().loc[gold.index] == gold).mean()), 3)  # class-conditional 0.834
0.835
>>> pattern = se.error_pattern()  # rows: true breed; columns: the label given when wrong
>>> pattern.idxmax(axis=1).tolist(), bool((pattern.max(axis=1) > 0.8).all())  # pairs
([1, 0, 3, 2], True)
>>> bool(np.allclose(pattern.sum(axis=1), 1.0) and (np.diagonal(pattern) == 0).all())
True
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..base import check_is_fitted
from ..data import Annotations
from ..inference.em import EMData
from .bayesian import (
    MIN_PSEUDO,
    PRIOR_LABELS,
    BayesianAggregator,
    BetaPrior,
    ClassPrior,
    beta_draws,
    dirichlet_draws,
    sample_priors,
)
from .confusion import confusion_log_lik, expected_counts
from .dawid_skene import row_strength

__all__ = ["SEHyper", "SEParams", "SharedErrorsDawidSkene", "SharedErrorsModel"]


class SEParams(NamedTuple):
    logit_accuracy: jnp.ndarray  # [W, K]: per annotator and true class
    log_errors: jnp.ndarray  # [K, K - 1]: log p(the j-th other label | class k, wrong)
    log_pi: jnp.ndarray  # [K]


class SEHyper(NamedTuple):
    a: jnp.ndarray  # Beta(a, b) prior on each accuracy (scalars): a right, b wrong labels
    b: jnp.ndarray
    g: jnp.ndarray  # Dirichlet(g, ..., g) prior on each error row (a scalar)
    class_counts: jnp.ndarray  # [K] Dirichlet(class_counts) prior on the class shares


def _others(n_classes: int) -> np.ndarray:
    """``[K, K - 1]``: the labels other than ``k``, in order, row ``k``."""
    j = np.arange(n_classes - 1)
    return j[None, :] + (j[None, :] >= np.arange(n_classes)[:, None])


def _slots(n_classes: int) -> np.ndarray:
    """``[K, K]``: where label ``l`` sits among the labels other than ``k`` (0 on the
    diagonal, which the confusion takes from the accuracy instead)."""
    k, label = np.arange(n_classes)[:, None], np.arange(n_classes)[None, :]
    return np.clip(label - (label > k), 0, max(n_classes - 2, 0))


def full_errors(log_errors: Any) -> Any:
    """``[..., K, K]`` from ``[..., K, K - 1]`` (JAX or NumPy): row ``k``'s entries at their
    labels (the diagonal holds row ``k``'s first entry; callers mask it)."""
    K = log_errors.shape[-2]
    return log_errors[..., np.arange(K)[:, None], _slots(K)]


def shared_errors_log_confusion(logit_acc: jnp.ndarray, log_errors: jnp.ndarray) -> jnp.ndarray:
    """``[..., W, K, K]`` log confusion from accuracy logits ``[..., W, K]`` and the shared
    log error pattern ``[..., K, K - 1]`` (the same leading axes)."""
    K = log_errors.shape[-2]
    right = jax.nn.log_sigmoid(logit_acc)[..., None]
    wrong = jax.nn.log_sigmoid(-logit_acc)[..., None] + full_errors(log_errors)[..., None, :, :]
    return jnp.where(jnp.eye(K, dtype=bool), right, wrong)


def _expected(post: jnp.ndarray, data: EMData) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Expected right labels ``[W, K]`` and labels ``[W, K]`` per annotator and true
    class, and wrong labels ``[K, K - 1]`` per true class and other label, pooled over
    the annotators."""
    W = data.n_labels_per_worker.shape[0]
    E = expected_counts(post, data, W)
    K = E.shape[1]
    wrong = jnp.take_along_axis(E.sum(0), jnp.asarray(_others(K)), axis=1)
    return jnp.diagonal(E, axis1=1, axis2=2), E.sum(-1), wrong


_expected_jit = jax.jit(_expected)


class SharedErrorsModel(ClassPrior):
    """Static likelihood, EM updates and NumPyro sites of the shared-errors model."""

    __name__ = "SharedErrorsDawidSkene"

    @staticmethod
    def log_lik(params: SEParams, data: EMData) -> jnp.ndarray:
        log_conf = shared_errors_log_confusion(params.logit_accuracy, params.log_errors)
        return confusion_log_lik(log_conf, data)

    @staticmethod
    def m_step(post: jnp.ndarray, data: EMData, hyper: SEHyper) -> SEParams:
        right, total, wrong = _expected(post, data)
        acc = jnp.clip((right + hyper.a) / (total + hyper.a + hyper.b), 1e-6, 1 - 1e-6)
        errors = wrong + hyper.g
        errors = jnp.maximum(errors / errors.sum(-1, keepdims=True), jnp.finfo(jnp.float32).tiny)
        return SEParams(
            BetaPrior.logit(acc), jnp.log(errors), ClassPrior.log_shares(post, hyper.class_counts)
        )

    @staticmethod
    def log_prior(params: SEParams, hyper: SEHyper) -> jnp.ndarray:
        """In log-ratio coordinates (logit, softmax): ``a log p + b log(1 - p)`` per
        accuracy, ``g log e`` per error cell, ``c log pi`` per class."""
        accuracy = BetaPrior.log_prior(params.logit_accuracy, hyper.a, hyper.b)
        return (
            accuracy.sum()
            + (hyper.g * params.log_errors).sum()
            + (hyper.class_counts * params.log_pi).sum()
        )

    # ---- NUTS and intervals (see models/bayesian.py)
    @staticmethod
    def sample_sites(data: EMData, hyper: SEHyper) -> dict[str, jnp.ndarray]:
        """Priors: ``p_correct[w, k] ~ Beta(a, b)``, ``errors[k] ~ Dirichlet(g)`` over the
        ``K - 1`` other labels, ``pi ~ Dirichlet(c)``."""
        import numpyro.distributions as dist

        W = data.n_labels_per_worker.shape[0]
        K = hyper.class_counts.shape[0]
        return sample_priors(
            hyper,
            p_correct=dist.Beta(hyper.a, hyper.b).expand([W, K]).to_event(2),
            errors=dist.Dirichlet(jnp.broadcast_to(hyper.g, (K, K - 1))).to_event(1),
        )

    @staticmethod
    def params_from_sites(sites: dict[str, jnp.ndarray], hyper: SEHyper) -> SEParams:
        log_errors = jnp.log(jnp.maximum(sites["errors"], jnp.finfo(jnp.float32).tiny))
        return SEParams(BetaPrior.from_site(sites["p_correct"]), log_errors, jnp.log(sites["pi"]))

    @staticmethod
    def sites_from_params(params: SEParams, hyper: SEHyper) -> dict[str, jnp.ndarray]:
        return {
            "p_correct": jax.nn.sigmoid(params.logit_accuracy),
            "errors": jnp.exp(params.log_errors),
            "pi": jnp.exp(params.log_pi),
        }

    @staticmethod
    def confusion(params: SEParams) -> jnp.ndarray:
        return jnp.exp(shared_errors_log_confusion(params.logit_accuracy, params.log_errors))

    @classmethod
    def em_draws(
        cls,
        params: SEParams,
        post: jnp.ndarray,
        data: EMData,
        hyper: SEHyper,
        rng: np.random.Generator,
        n: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each accuracy from its Beta posterior given the expected right and wrong
        labels, each error row from its Dirichlet posterior given the pooled wrong
        labels, the class prior from its Dirichlet: the confusions ``[n, W, K, K]`` and
        class priors ``[n, K]`` of those draws."""
        right, total, wrong = (np.asarray(x, np.float64) for x in _expected_jit(post, data))
        a, b, g = float(hyper.a), float(hyper.b), float(hyper.g)
        acc = beta_draws(right + a, total - right + b, rng, n)  # [n, W, K]
        errors = dirichlet_draws(wrong + g, rng, n)  # [n, K, K - 1]
        K = errors.shape[-2]
        wrong_label = full_errors(errors)[:, None]  # [n, 1, K, K]: no logs, no 0 to take
        conf = np.where(np.eye(K, dtype=bool), acc[..., None], (1 - acc)[..., None] * wrong_label)
        return conf, ClassPrior.draws(post, hyper.class_counts, rng, n)


class SharedErrorsDawidSkene(BayesianAggregator):
    """One accuracy per annotator and true class; a wrong label follows one confusion
    pattern per true class shared by the crowd. By EM (MAP) or NUTS.

    Parameters
    ----------
    prior_strength, prior_accuracy : float or None, default None, 0.7
        The prior Beta(strength * accuracy, strength * (1 - accuracy)) of every per-class
        accuracy, as in
        :class:`~crowdbayes.models.class_conditional.ClassConditionalDawidSkene`:
        ``prior_strength=None`` puts ``4 / K`` pseudo-labels on each, 4 per annotator,
        70% of them right.
    error_prior_strength : float or None, default None
        Pseudo-labels of wrong labels per true class in the error pattern's Dirichlet
        prior (one pattern for the whole crowd), spread evenly over the ``K - 1`` wrong
        labels; None gives 4.
    class_prior_strength : float, default 1.0
    inference, method, num_warmup, num_samples, num_chains, seed, max_iter, tol, progress, devices :
        as in :class:`~crowdbayes.models.dawid_skene.DawidSkene`.

    Attributes
    ----------
    error_pattern_ : ndarray ``[K, K]``: row ``k``, the distribution of a wrong label on a
        class-``k`` task (0 on the diagonal; EM: MAP, NUTS: posterior mean).
    confusion_, class_prior_, ... : as in :class:`~crowdbayes.models.bayesian.BayesianAggregator`.
    """

    _family = SharedErrorsModel
    _site_dims: ClassVar[dict[str, list[str]]] = {
        "p_correct": ["worker", "class"],
        "errors": ["true", "other"],
        "pi": ["class"],
    }

    # parameters (the constructor takes these, then the engine parameters)
    prior_strength: float | None = None
    prior_accuracy: float = 0.7
    error_prior_strength: float | None = None
    class_prior_strength: float = 1.0

    def _hyper(self, ann: Annotations) -> Any:
        K = ann.n_classes
        s = row_strength(self.prior_strength, K)
        e = PRIOR_LABELS if self.error_prior_strength is None else float(self.error_prior_strength)
        q = float(self.prior_accuracy)
        if min(s, e, self.class_prior_strength) < 0 or not 0.0 <= q <= 1.0:
            raise ValueError(
                "need prior_strength, error_prior_strength, class_prior_strength >= 0 "
                "and 0 <= prior_accuracy <= 1"
            )
        return SEHyper(
            *BetaPrior.hyper(s, q),
            jax.device_put(np.float32(max(e / max(K - 1, 1), MIN_PSEUDO))),
            ClassPrior.counts(K, self.class_prior_strength),
        )

    def _fit(self, ann: Annotations) -> None:
        super()._fit(ann)
        K = ann.n_classes
        errors = self.posterior_.mean(
            "errors", lambda p: np.exp(np.asarray(p.log_errors, np.float64))
        )
        self.error_pattern_ = np.zeros((K, K))
        self.error_pattern_[np.arange(K)[:, None], _others(K)] = errors

    def error_pattern(self) -> pd.DataFrame:
        """:attr:`error_pattern_` as a table: rows the true class, columns the label given
        when wrong."""
        check_is_fitted(self)
        ann = self.annotations_
        return pd.DataFrame(
            self.error_pattern_,
            index=pd.Index(ann.classes, name="true"),
            columns=pd.Index(ann.classes, name="given"),
        )
