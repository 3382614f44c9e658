r"""Class-conditional Dawid–Skene: one accuracy per annotator and true class (as in rater).

.. math::

    \pi \sim \mathrm{Dirichlet}(c), \qquad
    a_{jk} \sim \mathrm{Beta}(s\,q,\; s\,(1 - q)), \qquad
    z_i \sim \mathrm{Categorical}(\pi), \\
    p(y_{ij} = l \mid z_i = k) = a_{jk} \text{ if } l = k, \text{ else } (1 - a_{jk}) / (K - 1).

Between one-coin (one number per annotator) and full Dawid–Skene (``K (K - 1)``):
an annotator may be better on some classes than on others (per-class sensitivity),
but its errors are spread evenly. Pullin et al. (2020), the R package rater.

>>> import crowdbayes as cb
>>> df, gold = cb.datasets.load("rte")
>>> cc = ClassConditionalDawidSkene().fit(df)
>>> round(float((cc.predict().loc[gold.index] == gold).mean()), 2)
0.93
>>> sorted(c for c in cc.annotator_quality().columns if c.startswith("sensitivity[0]"))
['sensitivity[0]', 'sensitivity[0]_lower', 'sensitivity[0]_upper']
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from ..data import Annotations
from ..inference.em import EMData
from .bayesian import (
    BetaPrior,
    ClassPrior,
    sample_priors,
)
from .dawid_skene import DawidSkeneModel, DSParams, row_strength
from .one_coin import OCHyper, OneCoinDawidSkene, OneCoinModel

__all__ = ["CCParams", "ClassConditionalDawidSkene", "ClassConditionalModel"]


class CCParams(NamedTuple):
    logit_accuracy: jnp.ndarray  # [W, K]
    log_pi: jnp.ndarray  # [K]


def class_conditional_log_confusion(logit_acc: jnp.ndarray) -> jnp.ndarray:
    """``[W, K, K]`` log confusion from per-class accuracy logits ``[W, K]``."""
    K = logit_acc.shape[-1]
    right = jax.nn.log_sigmoid(logit_acc)[..., None]
    wrong = jax.nn.log_sigmoid(-logit_acc)[..., None] - jnp.log(K - 1.0)
    return jnp.where(jnp.eye(K, dtype=bool), right, wrong)


def _expected(post: jnp.ndarray, data: EMData) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Expected right labels ``[W, K]`` and labels ``[W, K]`` per annotator and true class."""
    W = data.n_labels_per_worker.shape[0]
    E = DawidSkeneModel.expected_counts(post, data, W)
    return jnp.diagonal(E, axis1=1, axis2=2), E.sum(-1)


_expected_jit = jax.jit(_expected)


class ClassConditionalModel(OneCoinModel):
    """Static likelihood, EM updates and NumPyro sites of the class-conditional model."""

    __name__ = "ClassConditionalDawidSkene"

    @staticmethod
    def log_lik(params: CCParams, data: EMData) -> jnp.ndarray:  # type: ignore[override]
        log_conf = class_conditional_log_confusion(params.logit_accuracy)
        return DawidSkeneModel.log_lik(DSParams(log_conf, params.log_pi), data)

    @staticmethod
    def m_step(post: jnp.ndarray, data: EMData, hyper: OCHyper) -> CCParams:  # type: ignore[override]
        right, total = _expected(post, data)
        acc = jnp.clip((right + hyper.a) / (total + hyper.a + hyper.b), 1e-6, 1 - 1e-6)
        return CCParams(BetaPrior.logit(acc), ClassPrior.log_shares(post, hyper.class_counts))

    @staticmethod
    def sample_sites(data: EMData, hyper: OCHyper) -> dict[str, jnp.ndarray]:
        import numpyro.distributions as dist

        W = data.n_labels_per_worker.shape[0]
        K = hyper.class_counts.shape[0]
        accuracy = dist.Beta(hyper.a, hyper.b).expand([W, K]).to_event(2)
        return sample_priors(hyper, p_correct=accuracy)

    @staticmethod
    def params_from_sites(sites: dict[str, jnp.ndarray], hyper: OCHyper) -> CCParams:  # type: ignore[override]
        return CCParams(BetaPrior.from_site(sites["p_correct"]), jnp.log(sites["pi"]))

    @staticmethod
    def confusion(params: CCParams) -> jnp.ndarray:  # type: ignore[override]
        return jnp.exp(class_conditional_log_confusion(params.logit_accuracy))

    @staticmethod
    def expected_right(post: jnp.ndarray, data: EMData) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Expected right labels and labels of each accuracy (``[W, K]``: per annotator
        and true class); ``em_draws`` (one-coin's) draws each from its Beta posterior."""
        return _expected_jit(post, data)


class ClassConditionalDawidSkene(OneCoinDawidSkene):
    """One accuracy per annotator and true class, errors spread evenly; EM or NUTS.

    Parameters are those of :class:`~crowdbayes.models.one_coin.OneCoinDawidSkene`
    (the Beta prior applies to every per-class accuracy; ``prior_strength=None`` puts
    ``4 / K`` pseudo-labels on each, 4 per annotator).
    """

    _family = ClassConditionalModel
    _site_dims: ClassVar[dict[str, list[str]]] = {"p_correct": ["worker", "class"], "pi": ["class"]}

    def _strength(self, n_classes: int) -> float:
        return row_strength(self.prior_strength, n_classes)

    def _hyper(self, ann: Annotations) -> Any:
        return super()._hyper(ann)
