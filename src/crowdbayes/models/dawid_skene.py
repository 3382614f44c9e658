r"""Dawid–Skene: a full confusion matrix per annotator.

Generative story (``K`` classes, annotator ``j``, task ``i``):

.. math::

    \pi \sim \mathrm{Dirichlet}(c), \qquad
    \theta_{jk} \sim \mathrm{Dirichlet}(P_k), \qquad
    z_i \sim \mathrm{Categorical}(\pi), \qquad
    y_{ij} \mid z_i = k \sim \mathrm{Categorical}(\theta_{jk}),

where the pseudo-counts ``P`` put ``prior_strength * prior_accuracy`` on the
diagonal and spread ``prior_strength * (1 - prior_accuracy)`` evenly off it: by
default ``4 / K`` pseudo-labels per row, 4 per annotator, 70% of them right. EM finds
the posterior mode with ``z`` marginalised in log-ratio coordinates (softmax logits),
where the mode of a Dirichlet given counts is its mean, ``(counts + P) / (n + sum P)``;
NUTS samples the same posterior, and EM's intervals come from the Dirichlet
``counts + P`` (so the estimate is the mean of its own interval's distribution). The
prior keeps every annotator defined (few labels give the prior mean) and better than
chance a priori, without phantom errors in every cell.

>>> import crowdbayes as cb
>>> annotations, gold = cb.datasets.load("rte")
>>> ds = cb.DawidSkene().fit(annotations)
>>> round(float((ds.predict().loc[gold.index] == gold).mean()), 3)
0.929
>>> ds.converged_
True
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..data import Annotations
from ..inference.em import EMData, e_step
from .bayesian import (
    EM_PARAMETERS,
    MIN_PSEUDO,
    NUTS_PARAMETERS,
    PRIOR_LABELS,
    RUN_PARAMETERS,
    BayesianAggregator,
    dirichlet_draws,
    marginal_model,
    sample_priors,
    vote_shares,
)
from .confusion import ConfusionModel, _expected_counts_jit, expected_counts

__all__ = [
    "DSHyper",
    "DSParams",
    "DawidSkene",
    "DawidSkeneModel",
    "confusion_pseudo_counts",
    "numpyro_model",
    "vote_shares",
]


class DSParams(NamedTuple):
    log_confusion: jnp.ndarray  # [W, K, L]: log p(label l | true class k) for annotator w
    log_pi: jnp.ndarray  # [K]


class DSHyper(NamedTuple):
    confusion_counts: jnp.ndarray  # [K, L] Dirichlet(confusion_counts) prior of each row
    class_counts: jnp.ndarray  # [K] Dirichlet(class_counts) prior of the class shares


def confusion_pseudo_counts(n_classes: int, strength: float, accuracy: float) -> np.ndarray:
    """Pseudo-counts ``[K, K]``: ``strength * accuracy`` on the diagonal, the rest spread evenly.

    >>> confusion_pseudo_counts(3, 2.0, 0.7).round(2).tolist()
    [[1.4, 0.3, 0.3], [0.3, 1.4, 0.3], [0.3, 0.3, 1.4]]
    """
    off = strength * (1.0 - accuracy) / (n_classes - 1)
    counts = np.full((n_classes, n_classes), off)
    np.fill_diagonal(counts, strength * accuracy)
    return counts


def row_strength(
    prior_strength: float | None, n_classes: int, labels: float = PRIOR_LABELS
) -> float:
    """Pseudo-labels per confusion row: ``prior_strength``, or ``labels / K`` when it is
    None (the default priors are worth ``PRIOR_LABELS`` labels per annotator).

    >>> row_strength(None, 4), row_strength(3.0, 4), row_strength(None, 3, labels=6.0)
    (1.0, 3.0, 2.0)
    """
    return labels / n_classes if prior_strength is None else float(prior_strength)


def _log_softmax_pinned(logits: jnp.ndarray) -> jnp.ndarray:
    """``log_softmax`` over the last axis of ``logits`` with a 0 appended."""
    zero = jnp.zeros((*logits.shape[:-1], 1), logits.dtype)
    return jax.nn.log_softmax(jnp.concatenate([logits, zero], axis=-1), axis=-1)


def _safe_log(x: jnp.ndarray) -> jnp.ndarray:
    return jnp.log(jnp.maximum(x, jnp.finfo(x.dtype).tiny))


class DawidSkeneModel(ConfusionModel):
    """Static likelihood and EM updates of the Dawid–Skene model (class-major arrays; the
    likelihood, class prior and ``confusion`` are :class:`ConfusionModel`'s)."""

    __name__ = "DawidSkene"

    #: ``[W, K, L]``: expected labels ``l`` from annotator ``w`` on class-``k`` tasks
    expected_counts = staticmethod(expected_counts)

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

    # ---- NUTS and intervals (see models/bayesian.py)
    @staticmethod
    def sample_sites(data: EMData, hyper: DSHyper) -> dict[str, jnp.ndarray]:
        """Priors: ``confusion[w, k] ~ Dirichlet(P_k)``, ``pi ~ Dirichlet(c)``."""
        import numpyro.distributions as dist

        W = data.n_labels_per_worker.shape[0]
        K, L = hyper.confusion_counts.shape
        alpha = jnp.broadcast_to(hyper.confusion_counts, (W, K, L))
        return sample_priors(hyper, confusion=dist.Dirichlet(alpha).to_event(2))

    @staticmethod
    def params_from_sites(sites: dict[str, jnp.ndarray], hyper: DSHyper) -> DSParams:
        return DSParams(_safe_log(sites["confusion"]), _safe_log(sites["pi"]))

    @staticmethod
    def sites_from_params(params: DSParams, hyper: DSHyper) -> dict[str, jnp.ndarray]:
        return {"confusion": jnp.exp(params.log_confusion), "pi": jnp.exp(params.log_pi)}

    # ---- NUTS on log-ratio coordinates (see inference/posterior.py: nuts_draws)
    @staticmethod
    def params_from_unconstrained(z: dict[str, jnp.ndarray]) -> DSParams:
        """Softmax of logits whose last entry is pinned to 0 (additive log-ratios):
        ``z["confusion"]`` ``[W, K, L - 1]``, ``z["pi"]`` ``[K - 1]``."""
        return DSParams(_log_softmax_pinned(z["confusion"]), _log_softmax_pinned(z["pi"]))

    @staticmethod
    def unconstrained_potential(
        z: dict[str, jnp.ndarray], data: EMData, hyper: DSHyper
    ) -> jnp.ndarray:
        """Minus the log posterior density of the log-ratios (up to a constant): EM's
        objective, which is already the density in these coordinates (a Dirichlet(alpha)
        has density ``prod p**alpha`` here: smooth and log-concave)."""
        params = DawidSkeneModel.params_from_unconstrained(z)
        _, task_lp = e_step(DawidSkeneModel, params, data)
        return -(task_lp.sum() + DawidSkeneModel.log_prior(params, hyper))

    @staticmethod
    def unconstrained_from_params(params: DSParams, hyper: DSHyper) -> dict[str, jnp.ndarray]:
        lc, lp = params.log_confusion, params.log_pi
        return {"confusion": lc[..., :-1] - lc[..., -1:], "pi": lp[:-1] - lp[-1:]}

    @staticmethod
    def sites_from_unconstrained(
        z: dict[str, jnp.ndarray], hyper: DSHyper
    ) -> dict[str, jnp.ndarray]:
        params = DawidSkeneModel.params_from_unconstrained(z)
        return {"confusion": jnp.exp(params.log_confusion), "pi": jnp.exp(params.log_pi)}

    @staticmethod
    def em_draws(
        params: DSParams,
        post: jnp.ndarray,
        data: EMData,
        hyper: DSHyper,
        rng: np.random.Generator,
        n: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Dirichlet posterior of each confusion row and of the class prior given the
        expected counts at the EM estimate (a variational approximation)."""
        W = data.n_labels_per_worker.shape[0]
        counts = _expected_counts_jit(post, data, W) + hyper.confusion_counts
        class_counts = post.sum(1) + hyper.class_counts
        conf = dirichlet_draws(np.asarray(counts, np.float64), rng, n)
        pi = dirichlet_draws(np.asarray(class_counts, np.float64), rng, n)
        return conf, pi


def numpyro_model(data: EMData, hyper: DSHyper) -> None:
    """The Dawid–Skene NumPyro model: Dirichlet priors, then one ``factor`` with
    :meth:`DawidSkeneModel.log_lik` marginalised over the true class (gold clamped).

    >>> import numpyro
    >>> import crowdbayes as cb
    >>> from crowdbayes.inference.em import em_data
    >>> ann = cb.as_annotations(cb.datasets.load("wsd")[0])
    >>> hyper = DawidSkene()._hyper(ann)
    >>> tr = numpyro.handlers.trace(numpyro.handlers.seed(numpyro_model, 0)).get_trace(
    ...     em_data(ann), hyper)
    >>> tr["confusion"]["value"].shape, tr["labels"]["type"]
    ((34, 3, 3), 'sample')
    """
    marginal_model(DawidSkeneModel, data, hyper)


class DawidSkene(BayesianAggregator):
    """Dawid–Skene aggregation (full confusion matrix per annotator), by EM (MAP) or NUTS.

    Parameters
    ----------
    prior_strength : float or None, default None
        Dirichlet pseudo-labels per row of each confusion matrix (near 0: nearly maximum
        likelihood); None gives ``4 / K``, 4 pseudo-labels per annotator.
    prior_accuracy : float, default 0.7
        Share of those pseudo-labels on the diagonal: the prior's accuracy.
    class_prior_strength : float, default 1.0
        Pseudo-count per class for the class prior.
    inference : ``crowdbayes.EM(...)`` or ``crowdbayes.NUTS(...)``, optional
        The engine and its settings (:mod:`crowdbayes.engines`). EM (the default) gives
        the MAP estimate (intervals from the Dirichlet posterior given the expected
        counts); ``NUTS(num_warmup, num_samples, num_chains, seed)`` samples the
        posterior (started at the EM estimate; the chains one after another, in one
        compiled program). Given, it replaces the flat settings below.
    method : {"em", "nuts"}, default "em"
        Deprecated: ``method="nuts"`` is ``inference=NUTS(...)`` (a ``FutureWarning`` at
        fit says what to write).
    num_warmup, num_samples, num_chains : int, default 1000, 1000, 4
        Deprecated, with ``method="nuts"``: ``NUTS``'s settings.
    seed : int, default 0
        Seeds the draws behind EM's intervals (and NUTS with ``method="nuts"``).
    max_iter : int, default 100
    tol : float, default 1e-6
        Stop when the log-posterior gains less than ``tol`` per label in one iteration
        (``tol=0`` runs all ``max_iter`` iterations).
    progress : bool, default False
        Show a progress bar for EM.
    devices : int or list of JAX devices, optional
        Shard the EM fit's labels across these devices (a count takes the first ``n``
        of ``jax.devices()``); see :mod:`crowdbayes.inference.sharding`. NUTS ignores it.

    Attributes
    ----------
    confusion_ : ndarray ``[n_workers, K, K]``, rows true class, columns label given.
    class_prior_ : ndarray ``[K]``.
    history_ : ndarray, log-posterior after each EM iteration (non-decreasing).
    n_iter_, converged_ : iterations run and whether ``tol`` was met.
    draws_, convergence_, idata_ : with ``inference=NUTS(...)`` (see ``BayesianAggregator``).
    """

    _family = DawidSkeneModel
    _site_dims: ClassVar[dict[str, list[str]]] = {
        "confusion": ["worker", "true", "given"],
        "pi": ["class"],
    }

    # parameters (the constructor takes these, then the engine parameters)
    prior_strength: float | None = None
    prior_accuracy: float = 0.7
    class_prior_strength: float = 1.0
    _engine_parameters: ClassVar[tuple[str, ...]] = EM_PARAMETERS + NUTS_PARAMETERS + RUN_PARAMETERS

    def _row_strength(self, n_classes: int) -> float:
        """Pseudo-labels in each row of the confusion prior."""
        return row_strength(self.prior_strength, n_classes)

    def _hyper(self, ann: Annotations | int) -> DSHyper:
        n_classes = ann if isinstance(ann, int) else ann.n_classes
        strength = self._row_strength(n_classes)
        if strength < 0 or self.class_prior_strength < 0:
            raise ValueError("prior_strength and class_prior_strength must be >= 0")
        if not 0.0 <= self.prior_accuracy <= 1.0:
            raise ValueError(f"prior_accuracy must be in [0, 1], got {self.prior_accuracy}")
        counts = confusion_pseudo_counts(n_classes, strength, self.prior_accuracy)
        # numpy, then one transfer each: jnp.asarray / jnp.full would each compile a
        # small program per class count in a fresh process
        return DSHyper(
            jax.device_put(np.maximum(counts, MIN_PSEUDO).astype(np.float32)),
            jax.device_put(
                np.full((n_classes,), max(self.class_prior_strength, MIN_PSEUDO), np.float32)
            ),
        )
