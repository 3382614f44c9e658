r"""One-coin Dawid–Skene: one accuracy per annotator, errors spread evenly.

Generative story (``K`` classes, annotator ``j``, task ``i``):

.. math::

    \pi \sim \mathrm{Dirichlet}(c), \qquad
    a_j \sim \mathrm{Beta}(s\,q,\; s\,(1 - q)), \qquad
    z_i \sim \mathrm{Categorical}(\pi), \\
    p(y_{ij} = l \mid z_i = k) = a_j \text{ if } l = k, \text{ else } (1 - a_j) / (K - 1),

with ``s = prior_strength`` and ``q = prior_accuracy`` (annotators better than
chance a priori). It has one parameter per annotator, so it suits annotators with
few labels; it cannot express biases towards particular labels.

>>> import crowdbayes as cb
>>> df, gold = cb.datasets.load("rte")
>>> oc = OneCoinDawidSkene().fit(df)
>>> round(float((oc.predict().loc[gold.index] == gold).mean()), 3)
0.92...
>>> q = oc.annotator_quality(interval=0.9)
>>> bool((q["accuracy_lower"] < q["accuracy"]).all() and (q["accuracy"] < q["accuracy_upper"]).all())
True
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..data import Annotations
from ..inference.em import EMData
from .bayesian import (
    PRIOR_LABELS,
    BayesianAggregator,
    BetaPrior,
    ClassPrior,
    beta_draws,
    sample_priors,
)
from .dawid_skene import DawidSkeneModel, DSParams

__all__ = ["OCHyper", "OCParams", "OneCoinDawidSkene", "OneCoinModel", "one_coin_log_confusion"]


class OCParams(NamedTuple):
    logit_accuracy: jnp.ndarray  # [W]
    log_pi: jnp.ndarray  # [K]


class OCHyper(NamedTuple):
    a: jnp.ndarray  # Beta(a, b) prior on accuracy (scalar): a right, b wrong pseudo-labels
    b: jnp.ndarray
    class_counts: jnp.ndarray  # [K] Dirichlet(class_counts) prior on the class shares


def one_coin_log_confusion(logit_acc: jnp.ndarray, n_classes: int) -> jnp.ndarray:
    """``[..., K, K]`` log confusion from accuracy logits ``[...]`` (errors spread evenly)."""
    right = jax.nn.log_sigmoid(logit_acc)[..., None, None]
    wrong = jax.nn.log_sigmoid(-logit_acc)[..., None, None] - jnp.log(n_classes - 1.0)
    return jnp.where(jnp.eye(n_classes, dtype=bool), right, wrong)


def _expected(post: jnp.ndarray, data: EMData) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Expected right labels ``[W]`` and labels ``[W]`` per annotator."""
    W = data.n_labels_per_worker.shape[0]
    E = DawidSkeneModel.expected_counts(post, data, W)
    return jnp.trace(E, axis1=1, axis2=2), E.sum((1, 2))


_expected_jit = jax.jit(_expected)


class OneCoinModel(ClassPrior):
    """Static likelihood, EM updates and NumPyro sites of the one-coin model."""

    __name__ = "OneCoinDawidSkene"

    @staticmethod
    def log_lik(params: OCParams, data: EMData) -> jnp.ndarray:
        K = params.log_pi.shape[0]
        log_conf = one_coin_log_confusion(params.logit_accuracy, K)
        return DawidSkeneModel.log_lik(DSParams(log_conf, params.log_pi), data)

    @staticmethod
    def m_step(post: jnp.ndarray, data: EMData, hyper: OCHyper) -> OCParams:
        right, total = _expected(post, data)
        acc = (right + hyper.a) / (total + hyper.a + hyper.b)
        acc = jnp.clip(acc, 1e-6, 1 - 1e-6)
        return OCParams(BetaPrior.logit(acc), ClassPrior.log_shares(post, hyper.class_counts))

    @staticmethod
    def log_prior(params: OCParams, hyper: OCHyper) -> jnp.ndarray:
        accuracy = BetaPrior.log_prior(params.logit_accuracy, hyper.a, hyper.b)
        return accuracy.sum() + (hyper.class_counts * params.log_pi).sum()

    @staticmethod
    def sample_sites(data: EMData, hyper: OCHyper) -> dict[str, jnp.ndarray]:
        import numpyro.distributions as dist

        W = data.n_labels_per_worker.shape[0]
        return sample_priors(hyper, p_correct=dist.Beta(hyper.a, hyper.b).expand([W]).to_event(1))

    @staticmethod
    def params_from_sites(sites: dict[str, jnp.ndarray], hyper: OCHyper) -> OCParams:
        return OCParams(BetaPrior.from_site(sites["p_correct"]), jnp.log(sites["pi"]))

    @staticmethod
    def sites_from_params(params: OCParams, hyper: OCHyper) -> dict[str, jnp.ndarray]:
        return {"p_correct": jax.nn.sigmoid(params.logit_accuracy), "pi": jnp.exp(params.log_pi)}

    @staticmethod
    def confusion(params: OCParams) -> jnp.ndarray:
        return jnp.exp(one_coin_log_confusion(params.logit_accuracy, params.log_pi.shape[0]))

    @staticmethod
    def expected_right(post: jnp.ndarray, data: EMData) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Expected right labels and labels of each accuracy (``[W]``: per annotator)."""
        return _expected_jit(post, data)

    @classmethod
    def em_draws(
        cls,
        params: OCParams,
        post: jnp.ndarray,
        data: EMData,
        hyper: OCHyper,
        rng: np.random.Generator,
        n: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Beta posterior of each accuracy given the expected right/wrong counts (of
        the family's ``expected_right``; its ``confusion`` of the drawn accuracies)."""
        right, total = (np.asarray(x, np.float64) for x in cls.expected_right(post, data))
        a, b = float(hyper.a), float(hyper.b)
        acc = beta_draws(right + a, total - right + b, rng, n)  # [n, *accuracies]
        conf = np.asarray(cls.confusion(params._replace(logit_accuracy=BetaPrior.logit(acc))))
        return conf, ClassPrior.draws(post, hyper.class_counts, rng, n)


class OneCoinDawidSkene(BayesianAggregator):
    """One accuracy per annotator, errors spread evenly; by EM (MAP) or NUTS.

    Parameters
    ----------
    prior_strength, prior_accuracy : float or None, default None, 0.7
        ``prior_strength=None`` is 4 pseudo-labels per annotator. The accuracy prior is Beta(strength * accuracy, strength * (1 - accuracy)):
        ``strength`` pseudo-labels, a share ``accuracy`` of them right. EM's estimate
        is that Beta's posterior mean given the expected right and wrong labels (the
        posterior mode in the log-odds), and its intervals come from the same Beta.
    class_prior_strength : float, default 1.0
    inference, method, num_warmup, num_samples, num_chains, seed, max_iter, tol, progress, devices :
        as in :class:`~crowdbayes.models.dawid_skene.DawidSkene` (``devices`` shards
        the EM fit's labels across JAX devices).
    """

    _family = OneCoinModel
    _site_dims: ClassVar[dict[str, list[str]]] = {"p_correct": ["worker"], "pi": ["class"]}

    # parameters (the constructor takes these, then the engine parameters)
    prior_strength: float | None = None
    prior_accuracy: float = 0.7
    class_prior_strength: float = 1.0

    def _strength(self, n_classes: int) -> float:
        """Pseudo-labels on each accuracy: ``prior_strength``, or 4 when None."""
        return PRIOR_LABELS if self.prior_strength is None else float(self.prior_strength)

    def _hyper(self, ann: Annotations) -> Any:
        s, q = self._strength(ann.n_classes), float(self.prior_accuracy)
        if s < 0 or not 0.0 <= q <= 1.0 or self.class_prior_strength < 0:
            raise ValueError("need prior_strength >= 0, 0 <= prior_accuracy <= 1")
        return OCHyper(
            *BetaPrior.hyper(s, q), ClassPrior.counts(ann.n_classes, self.class_prior_strength)
        )
