r"""MACE (Hovy et al. 2013): each annotator spams with some probability.

Annotator ``j`` answers truthfully with probability ``t_j`` (competence); otherwise it
"spams", choosing a label from its own distribution ``xi_j``:

.. math::

    \pi \sim \mathrm{Dirichlet}(c), \qquad
    t_j \sim \mathrm{Beta}(s\,q,\; s\,(1 - q)), \qquad
    \xi_j \sim \mathrm{Dirichlet}(g), \qquad z_i \sim \mathrm{Categorical}(\pi), \\
    p(y_{ij} = l \mid z_i = k) = t_j [l = k] + (1 - t_j)\, \xi_{jl}.

The spam indicator is marginalised too. EM's M-step is itself a short inner EM over
the spam indicators given the expected counts (25 fixed-point steps, jitted).
``annotator_quality`` reports accuracy ``t_j + (1 - t_j) sum_k pi_k xi_jk``; the
competence ``t_j`` is in ``competence_``.

>>> import crowdbayes as cb
>>> df, gold = cb.datasets.load("rte")
>>> m = MACE().fit(df)
>>> round(float((m.predict().loc[gold.index] == gold).mean()), 2)
0.93
>>> m.competence_.shape
(164,)
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..data import Annotations
from ..inference.em import EMData
from .bayesian import (
    BayesianAggregator,
    BetaPrior,
    ClassPrior,
    categorical_draws,
    pseudo_counts,
    sample_priors,
)
from .confusion import _expected_counts_jit
from .dawid_skene import DawidSkeneModel, DSParams

__all__ = ["MACE", "MACEHyper", "MACEModel", "MACEParams"]

_INNER_STEPS = 25
#: cells of the grid on which EM's intervals draw each competence
COMPETENCE_GRID = 256


class MACEParams(NamedTuple):
    logit_competence: jnp.ndarray  # [W]
    log_xi: jnp.ndarray  # [W, L] spamming distribution
    log_pi: jnp.ndarray  # [K]


class MACEHyper(NamedTuple):
    a: jnp.ndarray  # Beta(a, b) prior on competence: pseudo-labels truthful, spam
    b: jnp.ndarray
    spam_counts: jnp.ndarray  # [L] Dirichlet(spam_counts) prior of xi
    class_counts: jnp.ndarray  # [K]


def mace_confusion(competence: jnp.ndarray, xi: jnp.ndarray) -> jnp.ndarray:
    """``[..., K, K]``: ``t [l = k] + (1 - t) xi_l``."""
    K = xi.shape[-1]
    return (
        competence[..., None, None] * jnp.eye(K)
        + (1 - competence)[..., None, None] * xi[..., None, :]
    )


def _inner(E: jnp.ndarray, hyper: MACEHyper) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Maximise the expected complete log-posterior given expected counts ``E [W, K, L]``
    by EM over the spam indicators; returns competence ``[W]``, xi ``[W, L]`` and the
    expected truthful labels ``[W]``."""
    W, K, _ = E.shape
    diag = jnp.diagonal(E, axis1=1, axis2=2)  # [W, K]
    given = E.sum(1)  # [W, L] labels given, by value
    n = given.sum(-1)

    def truthful(t: jnp.ndarray, xi: jnp.ndarray) -> jnp.ndarray:
        r = t[:, None] / (t[:, None] + (1 - t[:, None]) * xi)
        return diag * r  # [W, K] expected truthful labels per class

    def step(_: int, carry: tuple[jnp.ndarray, jnp.ndarray]) -> tuple[jnp.ndarray, jnp.ndarray]:
        t, xi = carry
        good = truthful(t, xi)
        spam = given - good
        t = (good.sum(-1) + hyper.a) / (n + hyper.a + hyper.b)
        xi = (spam + hyper.spam_counts) / (spam + hyper.spam_counts).sum(-1, keepdims=True)
        return jnp.clip(t, 1e-6, 1 - 1e-6), xi

    t0 = jnp.full((W,), 0.7, E.dtype)
    xi0 = jnp.full((W, K), 1.0 / K, E.dtype)
    t, xi = jax.lax.fori_loop(0, _INNER_STEPS, step, (t0, xi0))
    return t, xi, truthful(t, xi).sum(-1)


def _expected(post: jnp.ndarray, data: EMData) -> jnp.ndarray:
    return DawidSkeneModel.expected_counts(post, data, data.n_labels_per_worker.shape[0])


class MACEModel(ClassPrior):
    """Static likelihood, EM updates and NumPyro sites of MACE."""

    __name__ = "MACE"

    @staticmethod
    def log_lik(params: MACEParams, data: EMData) -> jnp.ndarray:
        return DawidSkeneModel.log_lik(
            DSParams(jnp.log(MACEModel.confusion(params)), params.log_pi), data
        )

    @staticmethod
    def m_step(post: jnp.ndarray, data: EMData, hyper: MACEHyper) -> MACEParams:
        t, xi, _ = _inner(_expected(post, data), hyper)
        log_pi = ClassPrior.log_shares(post, hyper.class_counts)
        return MACEParams(BetaPrior.logit(t), jnp.log(jnp.maximum(xi, 1e-30)), log_pi)

    @staticmethod
    def log_prior(params: MACEParams, hyper: MACEHyper) -> jnp.ndarray:
        return (
            BetaPrior.log_prior(params.logit_competence, hyper.a, hyper.b).sum()
            + (hyper.spam_counts * params.log_xi).sum()
            + (hyper.class_counts * params.log_pi).sum()
        )

    @staticmethod
    def sample_sites(data: EMData, hyper: MACEHyper) -> dict[str, jnp.ndarray]:
        import numpyro.distributions as dist

        W = data.n_labels_per_worker.shape[0]
        L = hyper.spam_counts.shape[0]
        return sample_priors(
            hyper,
            competence=dist.Beta(hyper.a, hyper.b).expand([W]).to_event(1),
            xi=dist.Dirichlet(jnp.broadcast_to(hyper.spam_counts, (W, L))).to_event(1),
        )

    @staticmethod
    def params_from_sites(sites: dict[str, jnp.ndarray], hyper: MACEHyper) -> MACEParams:
        log_xi = jnp.log(jnp.maximum(sites["xi"], 1e-30))
        return MACEParams(BetaPrior.from_site(sites["competence"]), log_xi, jnp.log(sites["pi"]))

    @staticmethod
    def sites_from_params(params: MACEParams, hyper: MACEHyper) -> dict[str, jnp.ndarray]:
        return {
            "competence": jax.nn.sigmoid(params.logit_competence),
            "xi": jnp.exp(params.log_xi),
            "pi": jnp.exp(params.log_pi),
        }

    @staticmethod
    def confusion(params: MACEParams) -> jnp.ndarray:
        return mace_confusion(jax.nn.sigmoid(params.logit_competence), jnp.exp(params.log_xi))

    @staticmethod
    def em_draws(
        params: MACEParams,
        post: jnp.ndarray,
        data: EMData,
        hyper: MACEHyper,
        rng: np.random.Generator,
        n: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draws given the labels and the tasks' classes ``post`` (imputed, one-hot):
        each competence from its exact conditional posterior given the spam
        distribution at the EM estimate (the Beta prior times the likelihood, on a grid
        of :data:`COMPETENCE_GRID` cells), then each annotator's split of its right
        labels into truthful and spam given that competence (binomial), then the spam
        distribution's Dirichlet given the spam labels.

        The exact conditional matters at the boundary: a spammer's likelihood is flat
        near competence 0, where a Beta approximation around the EM estimate puts no
        mass (its intervals never reached accuracy 1/K)."""
        W = data.n_labels_per_worker.shape[0]
        E = np.asarray(_expected_counts_jit(post, data, W), np.float64)  # [W, K, L]
        K = E.shape[1]
        xi = np.exp(np.asarray(params.log_xi, np.float64))  # [W, L]
        a, b = float(hyper.a), float(hyper.b)
        grid = (np.arange(COMPETENCE_GRID) + 0.5) / COMPETENCE_GRID  # cell midpoints
        right = np.rint(np.diagonal(E, axis1=1, axis2=2))  # [W, K] label = class k
        wrong = np.rint(E.sum(1)) - right  # [W, L] other labels, by value
        log_p = (a - 1.0) * np.log(grid) + (b - 1.0) * np.log1p(-grid)  # [G]
        log_p = log_p + np.log1p(-grid) * wrong.sum(-1, keepdims=True)  # [W, G]
        log_p = log_p + (wrong * np.log(np.maximum(xi, 1e-300))).sum(-1, keepdims=True)
        for k in range(K):  # right labels: t + (1 - t) xi_k
            log_p = log_p + right[:, k : k + 1] * np.log(grid + (1.0 - grid) * xi[:, k : k + 1])
        cell = categorical_draws(np.exp(log_p - log_p.max(1, keepdims=True)), rng, n)
        t = (cell + rng.random((n, W))) / COMPETENCE_GRID  # uniform within the cell
        r = t[..., None] / (t[..., None] + (1.0 - t[..., None]) * xi[None, :, :K])  # [n, W, K]
        good = rng.binomial(np.broadcast_to(right.astype(np.int64), r.shape), r)
        spam = E.sum(1)[None] - good + np.asarray(hyper.spam_counts, np.float64)  # [n, W, L]
        tiny = np.finfo(np.float32).tiny
        g_xi = np.maximum(rng.standard_gamma(np.maximum(spam, tiny)).astype(np.float32), tiny)
        xi_d = g_xi / g_xi.sum(-1, keepdims=True)
        conf = np.asarray(mace_confusion(jnp.asarray(t, jnp.float32), jnp.asarray(xi_d)))
        return conf, ClassPrior.draws(post, hyper.class_counts, rng, n)


class MACE(BayesianAggregator):
    """MACE: competence (probability of answering truthfully) and a spamming distribution
    per annotator; by EM (MAP) or NUTS.

    Parameters
    ----------
    prior_strength, prior_competence : float, default 2.0, 0.5
        Competence prior Beta(strength * competence, strength * (1 - competence)):
        ``strength`` pseudo-labels, a share ``competence`` of them truthful. The default
        Beta(1, 1) is flat in competence, so flat in accuracy over [1/K, 1] with equally
        likely classes: it does not pull a spammer (competence 0) off the boundary,
        where Beta(2.8, 1.2) (the default until 2026-12-02) held spammers' intervals
        above accuracy 1/K (coverage 0.72 on the spammer crowds, 0.87-0.89 now).
    spam_prior_strength : float, default 1.0
        Dirichlet pseudo-count per label of each spamming distribution (``Dirichlet(g)``).
    class_prior_strength : float, default 1.0
    inference, method, num_warmup, num_samples, num_chains, seed, max_iter, tol, progress, devices :
        as in :class:`~crowdbayes.models.dawid_skene.DawidSkene` (``devices`` shards
        the EM fit's labels across JAX devices).
    """

    _family = MACEModel
    _site_dims: ClassVar[dict[str, list[str]]] = {
        "competence": ["worker"],
        "xi": ["worker", "given"],
        "pi": ["class"],
    }

    # parameters (the constructor takes these, then the engine parameters)
    prior_strength: float = 2.0
    prior_competence: float = 0.5
    spam_prior_strength: float = 1.0
    class_prior_strength: float = 1.0

    def _hyper(self, ann: Annotations) -> Any:
        s, q = float(self.prior_strength), float(self.prior_competence)
        if s < 0 or not 0.0 <= q <= 1.0 or self.spam_prior_strength < 0:
            raise ValueError("need prior_strength >= 0, 0 <= prior_competence <= 1")
        K = ann.n_classes
        return MACEHyper(
            *BetaPrior.hyper(s, q),
            pseudo_counts(K, self.spam_prior_strength),
            ClassPrior.counts(K, self.class_prior_strength),
        )

    def _competence_draws(self, conf_draws: np.ndarray) -> np.ndarray | None:
        """Competence draws ``[S, W]`` from confusion draws: with ``C = t I + (1 - t) xi``,
        ``t = C[1, 1] - C[0, 1]``. The accuracy bounds sit at the levels of competence's
        shortest interval, so a spammer's (competence 0, accuracy 1/K) can reach it."""
        W = self.annotations_.n_workers
        return np.asarray(conf_draws[:, :W, 1, 1] - conf_draws[:, :W, 0, 1], np.float64)

    @property
    def competence_(self) -> np.ndarray:
        """Probability that each annotator answers truthfully (EM: MAP; NUTS: mean)."""
        return self.posterior_.mean("competence", lambda p: jax.nn.sigmoid(p.logit_competence))
