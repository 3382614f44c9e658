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
from ._bayes import MIN_PSEUDO, BayesianAggregator, dirichlet_draws
from .dawid_skene import DawidSkeneModel, DSParams

__all__ = ["MACE", "MACEHyper", "MACEModel", "MACEParams"]

_INNER_STEPS = 25


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


def _em_stats(
    post: jnp.ndarray, data: EMData, hyper: MACEHyper
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """At the EM estimate: expected right labels ``[W, K]`` (label = true class ``k``),
    the probability ``[W, K]`` that such a label was given truthfully, and the labels
    given ``[W, L]``."""
    E = _expected(post, data)
    t, xi, _ = _inner(E, hyper)
    r = t[:, None] / (t[:, None] + (1 - t[:, None]) * xi)
    return jnp.diagonal(E, axis1=1, axis2=2), r, E.sum(1)


_em_stats_jit = jax.jit(_em_stats)


class MACEModel:
    """Static likelihood, EM updates and NumPyro sites of MACE."""

    __name__ = "MACE"

    @staticmethod
    def log_lik(params: MACEParams, data: EMData) -> jnp.ndarray:
        return DawidSkeneModel.log_lik(
            DSParams(jnp.log(MACEModel.confusion(params)), params.log_pi), data
        )

    @staticmethod
    def log_class_prior(params: MACEParams, data: EMData) -> jnp.ndarray:
        return params.log_pi[:, None]

    @staticmethod
    def m_step(post: jnp.ndarray, data: EMData, hyper: MACEHyper) -> MACEParams:
        t, xi, _ = _inner(_expected(post, data), hyper)
        class_counts = post.sum(1) + hyper.class_counts
        return MACEParams(
            jnp.log(t) - jnp.log1p(-t),
            jnp.log(jnp.maximum(xi, 1e-30)),
            jnp.log(class_counts / class_counts.sum()),
        )

    @staticmethod
    def log_prior(params: MACEParams, hyper: MACEHyper) -> jnp.ndarray:
        x = params.logit_competence
        return (
            (hyper.a * jax.nn.log_sigmoid(x) + hyper.b * jax.nn.log_sigmoid(-x)).sum()
            + (hyper.spam_counts * params.log_xi).sum()
            + (hyper.class_counts * params.log_pi).sum()
        )

    @staticmethod
    def sample_sites(data: EMData, hyper: MACEHyper) -> dict[str, jnp.ndarray]:
        import numpyro
        import numpyro.distributions as dist

        W = data.n_labels_per_worker.shape[0]
        L = hyper.spam_counts.shape[0]
        return {
            "competence": numpyro.sample(
                "competence", dist.Beta(hyper.a, hyper.b).expand([W]).to_event(1)
            ),
            "xi": numpyro.sample(
                "xi", dist.Dirichlet(jnp.broadcast_to(hyper.spam_counts, (W, L))).to_event(1)
            ),
            "pi": numpyro.sample("pi", dist.Dirichlet(hyper.class_counts)),
        }

    @staticmethod
    def params_from_sites(sites: dict[str, jnp.ndarray], hyper: MACEHyper) -> MACEParams:
        t = jnp.clip(sites["competence"], 1e-7, 1 - 1e-7)
        return MACEParams(
            jnp.log(t) - jnp.log1p(-t),
            jnp.log(jnp.maximum(sites["xi"], 1e-30)),
            jnp.log(sites["pi"]),
        )

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
        """Beta posterior of competence and Dirichlet posterior of the spam distribution
        given the expected truthful and spam counts at the EM estimate, with the split of
        each annotator's right labels into truthful and spam imputed afresh for every draw
        (binomial, normal approximation; one data-augmentation step). Taking the expected
        split as known made the intervals too narrow: which right labels were spam is
        never observed."""
        right, r, given = (np.asarray(x, np.float64) for x in _em_stats_jit(post, data, hyper))
        sd = np.sqrt(right * r * (1.0 - r))
        eps = rng.standard_normal((n, *right.shape))
        good = np.clip(right * r + sd * eps, 0.0, right)  # [n, W, K] truthful labels
        n_good = good.sum(-1)
        tiny = np.finfo(np.float32).tiny
        g_t = np.maximum(rng.standard_gamma(n_good + float(hyper.a), dtype=np.float32), tiny)
        g_f = rng.standard_gamma(given.sum(-1) - n_good + float(hyper.b), dtype=np.float32)
        t = g_t / (g_t + np.maximum(g_f, tiny))  # [n, W]
        spam = np.maximum(given - good, 0.0) + np.asarray(hyper.spam_counts, np.float64)
        g_xi = np.maximum(rng.standard_gamma(spam, dtype=np.float32), tiny)
        xi = g_xi / g_xi.sum(-1, keepdims=True)  # [n, W, L]
        conf = np.asarray(mace_confusion(jnp.asarray(t), jnp.asarray(xi)))
        pi = dirichlet_draws(np.asarray(post.sum(1) + hyper.class_counts, np.float64), rng, n)
        return conf, pi


class MACE(BayesianAggregator):
    """MACE: competence (probability of answering truthfully) and a spamming distribution
    per annotator; by EM (MAP) or NUTS.

    Parameters
    ----------
    prior_strength, prior_competence : float, default 4.0, 0.7
        Competence prior Beta(strength * competence, strength * (1 - competence)):
        ``strength`` pseudo-labels, a share ``competence`` of them truthful.
    spam_prior_strength : float, default 1.0
        Dirichlet pseudo-count per label of each spamming distribution (``Dirichlet(g)``).
    class_prior_strength : float, default 1.0
    method, num_warmup, num_samples, num_chains, seed, max_iter, tol, progress, devices :
        as in :class:`~crowdbayes.models.dawid_skene.DawidSkene` (``devices`` shards
        the EM fit's labels across JAX devices).
    """

    _family = MACEModel
    _site_dims: ClassVar[dict[str, list[str]]] = {
        "competence": ["worker"],
        "xi": ["worker", "given"],
        "pi": ["class"],
    }

    def __init__(
        self,
        prior_strength: float = 4.0,
        prior_competence: float = 0.7,
        spam_prior_strength: float = 1.0,
        class_prior_strength: float = 1.0,
        method: str = "em",
        num_warmup: int = 1000,
        num_samples: int = 1000,
        num_chains: int = 4,
        seed: int = 0,
        max_iter: int = 100,
        tol: float = 1e-6,
        progress: bool = False,
        devices: Any = None,
        inference: Any = None,
    ) -> None:
        self.prior_strength = prior_strength
        self.prior_competence = prior_competence
        self.spam_prior_strength = spam_prior_strength
        self.class_prior_strength = class_prior_strength
        self.method = method
        self.num_warmup = num_warmup
        self.num_samples = num_samples
        self.num_chains = num_chains
        self.seed = seed
        self.max_iter = max_iter
        self.tol = tol
        self.progress = progress
        self.devices = devices
        self.inference = inference

    def _hyper(self, ann: Annotations) -> Any:
        s, q = float(self.prior_strength), float(self.prior_competence)
        if s < 0 or not 0.0 <= q <= 1.0 or self.spam_prior_strength < 0:
            raise ValueError("need prior_strength >= 0, 0 <= prior_competence <= 1")
        K = ann.n_classes
        # numpy, then one transfer each: eager jnp calls would compile a small program
        # per class count in a fresh process
        f32, put = np.float32, jax.device_put
        return MACEHyper(
            put(f32(max(s * q, MIN_PSEUDO))),
            put(f32(max(s * (1.0 - q), MIN_PSEUDO))),
            put(np.full((K,), max(self.spam_prior_strength, MIN_PSEUDO), f32)),
            put(np.full((K,), max(self.class_prior_strength, MIN_PSEUDO), f32)),
        )

    @property
    def competence_(self) -> np.ndarray:
        """Probability that each annotator answers truthfully (EM: MAP; NUTS: mean)."""
        if self.draws_ is not None:
            return np.asarray(self.draws_["competence"], np.float64).mean(axis=(0, 1))
        return np.asarray(jax.nn.sigmoid(self.params_.logit_competence), np.float64)
