r"""Hierarchical Dawid–Skene: annotators' confusion logits drawn from a population.

Generative story (``K`` classes, annotator ``j``, task ``i``; logits relative to the
correct label, whose logit is 0):

.. math::

    \mu_{kl} \sim \mathcal{N}(m, s_0^2)\ (l \ne k), \qquad
    \sigma \sim \mathrm{HalfNormal}(s_\sigma), \qquad
    z_{jkl} \sim \mathcal{N}(0, 1), \\
    \beta_{jkl} = \mu_{kl} + \sigma z_{jkl}, \qquad \beta_{jkk} = 0, \qquad
    \theta_{jk} = \mathrm{softmax}(\beta_{jk}), \\
    \pi \sim \mathrm{Dirichlet}(1 + c), \qquad z_i \sim \mathrm{Categorical}(\pi), \qquad
    y_{ij} \mid z_i = k \sim \mathrm{Categorical}(\theta_{jk}).

The prior mean ``m = log((1 - q) / ((K - 1) q))`` makes the typical annotator's
accuracy ``q = prior_accuracy`` (better than chance). Annotators with few labels
borrow strength from the population mean ``mu`` (partial pooling); the
non-centred offsets ``z`` keep NUTS efficient when ``sigma`` is small (Paun et
al. 2018 found this model the most robust).

EM finds the MAP of ``(mu, z, pi)`` at a fixed population scale ``sigma`` (joint MAP
of a hierarchical scale collapses to zero): the M-step maximises the expected
complete-data log posterior by a few Newton steps over all annotators and ``mu`` at
once (the Hessian is block-arrow shaped: a small block per annotator and class,
coupled only through ``mu``, solved by a Schur complement). By default ``sigma`` is
estimated by empirical Bayes between EM runs: it maximises the marginal likelihood of
the labels given the most probable classes (annotator logits integrated out by
importance sampling from their Laplace approximation) over a grid; NUTS samples it. EM intervals come from the Laplace approximation
of each annotator's logits.

>>> import crowdbayes as cb
>>> df, gold = cb.datasets.load("rte")
>>> h = HierarchicalDawidSkene().fit(df)
>>> round(float((h.predict().loc[gold.index] == gold).mean()), 2)
0.93
>>> q = h.annotator_quality(interval=0.9)
>>> bool(((q["accuracy_lower"] <= q["accuracy"]) & (q["accuracy"] <= q["accuracy_upper"])).all())
True
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..data import Annotations
from ..inference.em import EMData, run_em
from ..inference.sharding import place_tasks
from ._bayes import MIN_PSEUDO, BayesianAggregator, dirichlet_draws, vote_shares
from .dawid_skene import DawidSkeneModel, DSParams

__all__ = [
    "HDSHyper",
    "HDSParams",
    "HierarchicalDawidSkene",
    "HierarchicalDawidSkeneModel",
    "full_logits",
]

_NEWTON_STEPS = 12
_MAX_STEP = 3.0  # largest Newton move of one logit
_MIN_SCALE = 0.05
_IS_DRAWS = 32  # importance draws per annotator row for the empirical-Bayes scale


class HDSParams(NamedTuple):
    mu: jnp.ndarray  # [K, K-1] population mean logits of the wrong labels (right label: 0)
    sigma: jnp.ndarray  # [] population scale
    z: jnp.ndarray  # [W, K, K-1] standardised annotator offsets
    log_pi: jnp.ndarray  # [K]


class HDSHyper(NamedTuple):
    mean_logit: jnp.ndarray  # [] prior mean m of mu
    mean_scale: jnp.ndarray  # [] prior sd s_0 of mu
    scale_prior: jnp.ndarray  # [] HalfNormal scale of sigma
    sigma: jnp.ndarray  # [] the population scale EM holds fixed
    class_counts: jnp.ndarray  # [K] Dirichlet(class_counts) prior on the class shares


def _off_index(K: int) -> np.ndarray:
    """``[K, K-1]``: the wrong labels of each true class, in order."""
    return np.array([[col for col in range(K) if col != k] for k in range(K)], dtype=np.int32)


def full_logits(off: jnp.ndarray) -> jnp.ndarray:
    """``[..., K, K]`` logits from the wrong labels' logits ``[..., K, K-1]`` (right: 0).

    >>> full_logits(jnp.array([[-1.0, -2.0], [-3.0, -4.0], [-5.0, -6.0]])).tolist()
    [[0.0, -1.0, -2.0], [-3.0, 0.0, -4.0], [-5.0, -6.0, 0.0]]
    """
    K = off.shape[-2]
    padded = jnp.concatenate([off, jnp.zeros((*off.shape[:-1], 1), off.dtype)], axis=-1)
    col = np.arange(K)
    pos = np.where(
        col[None, :] == col[:, None], K - 1, col[None, :] - (col[None, :] > col[:, None])
    )
    return padded[..., np.arange(K)[:, None], pos]


def _log_confusion(params: HDSParams) -> jnp.ndarray:
    return jax.nn.log_softmax(full_logits(params.mu + params.sigma * params.z), axis=-1)


def _curvature_parts(E: jnp.ndarray, b: jnp.ndarray, sigma: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
    """At logits ``b [W, K, K-1]`` with expected counts ``E [W, K, K]``: the gradient of the
    expected log-likelihood ``[W, K, K-1]``, and minus the Hessian of the per-annotator log
    posterior given ``mu`` as a diagonal minus a rank-one matrix, ``A = diag(d) - u u^T``
    with ``d = n p + 1 / sigma^2``, ``u = sqrt(n) p`` (``p`` the wrong labels'
    probabilities, ``n`` the row's count), and ``den = 1 - sum(u^2 / d) > 0`` (written as
    a sum of positive terms)."""
    K = E.shape[-1]
    off = _off_index(K)
    rows = np.arange(K)[:, None]
    n = E.sum(-1)[..., None]  # [W, K, 1]
    probs = jax.nn.softmax(full_logits(b), axis=-1)  # [W, K, K]
    p = probs[..., rows, off]  # [W, K, K-1]
    grad = E[..., rows, off] - n * p
    prec = 1.0 / sigma**2
    d = n * p + prec
    den = jnp.diagonal(probs, axis1=-2, axis2=-1) + (p * prec / d).sum(-1)
    return grad, d, jnp.sqrt(n) * p, den


def _curvature(E: jnp.ndarray, b: jnp.ndarray, sigma: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
    """The gradient ``[W, K, K-1]`` and ``A [W, K, K-1, K-1]`` of :func:`_curvature_parts`
    as a dense matrix."""
    grad, d, u, _ = _curvature_parts(E, b, sigma)
    eye = jnp.eye(E.shape[-1] - 1, dtype=E.dtype)
    return grad, d[..., None] * eye - u[..., :, None] * u[..., None, :]


def _newton(E: jnp.ndarray, hyper: HDSHyper) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Maximise the expected complete-data log posterior over annotator logits ``b`` and
    the population mean ``mu`` (``sigma`` fixed) by Newton steps from the prior mean.
    Each row's ``A^-1`` is applied by Sherman–Morrison (``A`` is diagonal minus rank one),
    never formed: batched small-matrix inverses were most of the time on the CPU."""
    W, K, _ = E.shape
    sigma = hyper.sigma
    c = 1.0 / sigma**2
    C = W * c + 1.0 / hyper.mean_scale**2
    eye = jnp.eye(K - 1, dtype=E.dtype)
    mu0 = jnp.full((K, K - 1), hyper.mean_logit, E.dtype)

    def step(_: int, carry: tuple[jnp.ndarray, jnp.ndarray]) -> tuple[jnp.ndarray, jnp.ndarray]:
        b, mu = carry
        grad, d, u, den = _curvature_parts(E, b, sigma)
        v = u / d  # A^-1 = diag(1 / d) + v v^T / den

        def solve_rows(x: jnp.ndarray) -> jnp.ndarray:  # A^-1 x, row by row
            return x / d + v * ((v * x).sum(-1) / den)[..., None]

        g_b = grad - (b - mu) * c
        g_mu = ((b - mu) * c).sum(0) - (mu - hyper.mean_logit) / hyper.mean_scale**2
        inv_sum = (1.0 / d).sum(0)[..., None] * eye + jnp.einsum(
            "wka,wkb->kab", v / den[..., None], v
        )
        S = C * eye - c**2 * inv_sum
        rhs = g_mu + c * solve_rows(g_b).sum(0)
        d_mu = jnp.linalg.solve(S, rhs[..., None])[..., 0]
        d_b = solve_rows(g_b + c * d_mu)
        return (
            b + jnp.clip(d_b, -_MAX_STEP, _MAX_STEP),
            mu + jnp.clip(d_mu, -_MAX_STEP, _MAX_STEP),
        )

    return jax.lax.fori_loop(0, _NEWTON_STEPS, step, (jnp.broadcast_to(mu0, (W, K, K - 1)), mu0))


def _expected(post: jnp.ndarray, data: EMData) -> jnp.ndarray:
    return DawidSkeneModel.expected_counts(post, data, data.n_labels_per_worker.shape[0])


def _log_marginal(
    sigma: jnp.ndarray, E: jnp.ndarray, hyper: HDSHyper, eps: jnp.ndarray
) -> jnp.ndarray:
    """Log marginal likelihood of the expected counts ``E`` at population scale ``sigma``
    (annotator logits integrated out by importance sampling from their Laplace
    approximation with the standard-normal draws ``eps [S, W, K, K-1]``; ``mu`` at its
    optimum), plus the log priors of ``mu`` and ``sigma``."""
    h = hyper._replace(sigma=sigma)
    b, mu = _newton(E, h)
    _, A = _curvature(E, b, sigma)
    chol = jnp.linalg.cholesky(jnp.linalg.inv(A))
    log_det = jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)

    def one_draw(e: jnp.ndarray) -> jnp.ndarray:  # [W, K]: log weights of one draw per row
        draws = b + jnp.einsum("wkab,wkb->wka", chol, e)
        log_lik = (E * jax.nn.log_softmax(full_logits(draws), axis=-1)).sum(-1)
        log_p = (-0.5 * ((draws - mu) / sigma) ** 2).sum(-1) - (E.shape[-1] - 1) * jnp.log(sigma)
        return log_lik + log_p + 0.5 * (e**2).sum(-1) + log_det

    # one draw at a time: vectorised over the draws as well, XLA's CPU fusion of these
    # broadcasts and reductions gave wrong values beyond ~65,000 logits (jax 0.10.2)
    log_w = jax.lax.map(one_draw, eps)  # [S, W, K]
    rows = jax.nn.logsumexp(log_w, axis=0) - jnp.log(eps.shape[0])
    prior = -0.5 * (((mu - hyper.mean_logit) / hyper.mean_scale) ** 2).sum()
    return rows.sum() + prior - 0.5 * (sigma / hyper.scale_prior) ** 2


def _eb_scale(post: jnp.ndarray, data: EMData, hyper: HDSHyper, key: jnp.ndarray) -> jnp.ndarray:
    """Empirical-Bayes population scale given the class posterior: the maximiser of
    :func:`_log_marginal` (at the most probable classes) over a log grid, refined once
    around the best point."""
    # hard classes: the marginal is not linear in the counts, and soft counts pull the
    # annotators together (on simulated data they halve the scale; hard ones recover it)
    hard = jax.nn.one_hot(jnp.argmax(post, axis=0), post.shape[0], axis=0, dtype=post.dtype)
    if data.task_mask is not None:  # padding tasks (sharded) have no class
        hard = hard * data.task_mask[None, :]
    E = _expected(hard, data)
    W, K, _ = E.shape
    eps = jax.random.normal(key, (_IS_DRAWS, W, K, K - 1), E.dtype)

    def best(grid: jnp.ndarray) -> jnp.ndarray:
        values = jax.lax.map(lambda s: _log_marginal(s, E, hyper, eps), grid)
        values = jnp.where(jnp.isfinite(values), values, -jnp.inf)
        return jnp.argmax(values)

    coarse = jnp.geomspace(_MIN_SCALE, 5.0, 25).astype(E.dtype)
    i = best(coarse)
    lo, hi = coarse[jnp.maximum(i - 1, 0)], coarse[jnp.minimum(i + 1, 24)]
    fine = jnp.exp(jnp.linspace(jnp.log(lo), jnp.log(hi), 13)).astype(E.dtype)
    return fine[best(fine)]


def _laplace(params: HDSParams, post: jnp.ndarray, data: EMData) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Each annotator's logits ``b [W, K, K-1]`` and the Cholesky factor of their Laplace
    covariance ``[W, K, K-1, K-1]`` given ``mu``."""
    b = params.mu + params.sigma * params.z
    _, A = _curvature(_expected(post, data), b, params.sigma)
    return b, jnp.linalg.cholesky(jnp.linalg.inv(A))


_eb_scale_jit = jax.jit(_eb_scale)
_laplace_jit = jax.jit(_laplace)


class HierarchicalDawidSkeneModel:
    """Static likelihood, EM updates and NumPyro sites of hierarchical Dawid–Skene."""

    __name__ = "HierarchicalDawidSkene"

    @staticmethod
    def log_lik(params: HDSParams, data: EMData) -> jnp.ndarray:
        return DawidSkeneModel.log_lik(DSParams(_log_confusion(params), params.log_pi), data)

    @staticmethod
    def log_class_prior(params: HDSParams, data: EMData) -> jnp.ndarray:
        return params.log_pi[:, None]

    @staticmethod
    def m_step(post: jnp.ndarray, data: EMData, hyper: HDSHyper) -> HDSParams:
        b, mu = _newton(_expected(post, data), hyper)
        class_counts = post.sum(1) + hyper.class_counts
        return HDSParams(
            mu,
            hyper.sigma,
            (b - mu) / hyper.sigma,
            jnp.log(class_counts / class_counts.sum()),
        )

    @staticmethod
    def log_prior(params: HDSParams, hyper: HDSHyper) -> jnp.ndarray:
        return (
            -0.5 * (((params.mu - hyper.mean_logit) / hyper.mean_scale) ** 2).sum()
            - 0.5 * (params.sigma / hyper.scale_prior) ** 2
            - 0.5 * (params.z**2).sum()
            + (hyper.class_counts * params.log_pi).sum()
        )

    # ---- NUTS and intervals (see models/_bayes.py)
    @staticmethod
    def sample_sites(data: EMData, hyper: HDSHyper) -> dict[str, jnp.ndarray]:
        import numpyro
        import numpyro.distributions as dist

        W = data.n_labels_per_worker.shape[0]
        K = hyper.class_counts.shape[0]
        return {
            "mu": numpyro.sample(
                "mu",
                dist.Normal(hyper.mean_logit, hyper.mean_scale).expand([K, K - 1]).to_event(2),
            ),
            "sigma": numpyro.sample("sigma", dist.HalfNormal(hyper.scale_prior)),
            "z": numpyro.sample("z", dist.Normal(0.0, 1.0).expand([W, K, K - 1]).to_event(3)),
            "pi": numpyro.sample("pi", dist.Dirichlet(hyper.class_counts)),
        }

    @staticmethod
    def params_from_sites(sites: dict[str, jnp.ndarray], hyper: HDSHyper) -> HDSParams:
        pi = jnp.maximum(sites["pi"], jnp.finfo(sites["pi"].dtype).tiny)
        return HDSParams(sites["mu"], sites["sigma"], sites["z"], jnp.log(pi))

    @staticmethod
    def sites_from_params(params: HDSParams, hyper: HDSHyper) -> dict[str, jnp.ndarray]:
        return {"mu": params.mu, "sigma": params.sigma, "z": params.z, "pi": jnp.exp(params.log_pi)}

    @staticmethod
    def confusion(params: HDSParams) -> jnp.ndarray:
        return jnp.exp(_log_confusion(params))

    @staticmethod
    def em_draws(
        params: HDSParams,
        post: jnp.ndarray,
        data: EMData,
        hyper: HDSHyper,
        rng: np.random.Generator,
        n: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Laplace (Gaussian) posterior of each annotator's logits given ``mu`` and
        ``sigma`` at the EM estimate; Dirichlet posterior of the class prior."""
        b, chol = (np.asarray(x, np.float64) for x in _laplace_jit(params, post, data))
        eps = rng.standard_normal((n, *b.shape)).astype(np.float32)
        draws = b + np.einsum("wkab,nwkb->nwka", chol, eps)
        conf = np.asarray(jax.nn.softmax(full_logits(jnp.asarray(draws, jnp.float32)), axis=-1))
        pi = dirichlet_draws(np.asarray(post.sum(1) + hyper.class_counts, np.float64), rng, n)
        return conf, pi


class HierarchicalDawidSkene(BayesianAggregator):
    """Dawid–Skene with partial pooling: each annotator's confusion logits are the
    population's plus a scaled offset; by EM (MAP, empirical-Bayes scale) or NUTS.

    Parameters
    ----------
    prior_accuracy : float, default 0.7
        Accuracy of the typical annotator a priori (sets the prior mean of the population
        logits so that the prior is better than chance; must exceed ``1 / K``).
    prior_logit_scale : float, default 1.0
        Prior standard deviation of the population mean logits ``mu``.
    population_scale : float or None, default None
        Spread ``sigma`` of annotators around the population (logit scale). ``None``
        estimates it by empirical Bayes in EM (NUTS samples it, starting there); a number
        fixes it for EM.
    scale_prior : float, default 1.0
        ``sigma ~ HalfNormal(scale_prior)`` (NUTS, and the EM objective's prior term).
    class_prior_strength : float, default 1.0
        Pseudo-count per class for the class prior.
    method, num_warmup, num_samples, num_chains, seed, max_iter, tol, progress, devices :
        as in :class:`~crowdbayes.models.dawid_skene.DawidSkene` (``devices`` shards
        the labels of the EM fit, and of the empirical-Bayes EM runs before it, across
        JAX devices).

    Attributes
    ----------
    population_scale_ : float, the ``sigma`` EM used (NUTS: posterior mean).
    population_confusion_ : ndarray ``[K, K]``, the typical annotator's confusion matrix
        (``softmax(mu)``; NUTS: posterior mean).
    confusion_, class_prior_, history_, n_iter_, converged_, draws_, idata_ :
        as in :class:`~crowdbayes.models._bayes.BayesianAggregator`.
    """

    _family = HierarchicalDawidSkeneModel
    _site_dims: ClassVar[dict[str, list[str]]] = {
        "mu": ["true", "wrong"],
        "z": ["worker", "true", "wrong"],
        "pi": ["class"],
    }

    def __init__(
        self,
        prior_accuracy: float = 0.7,
        prior_logit_scale: float = 1.0,
        population_scale: float | None = None,
        scale_prior: float = 1.0,
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
    ) -> None:
        self.prior_accuracy = prior_accuracy
        self.prior_logit_scale = prior_logit_scale
        self.population_scale = population_scale
        self.scale_prior = scale_prior
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

    def _hyper(self, ann: Annotations, sigma: float | None = None) -> HDSHyper:
        K = ann.n_classes
        q = float(self.prior_accuracy)
        if not 1.0 / K < q < 1.0:
            raise ValueError(f"prior_accuracy must be in (1/K, 1) = ({1 / K:.3g}, 1), got {q}")
        if self.prior_logit_scale <= 0 or self.scale_prior <= 0 or self.class_prior_strength < 0:
            raise ValueError(
                "need prior_logit_scale > 0, scale_prior > 0, class_prior_strength >= 0"
            )
        if sigma is None:
            sigma = getattr(self, "_eb_sigma", None)
        if sigma is None:
            sigma = self.population_scale if self.population_scale is not None else 1.0
        if not sigma > 0:
            raise ValueError(f"population_scale must be > 0, got {sigma}")
        f32 = jnp.float32
        return HDSHyper(
            jnp.asarray(np.log((1.0 - q) / ((K - 1) * q)), f32),
            jnp.asarray(self.prior_logit_scale, f32),
            jnp.asarray(self.scale_prior, f32),
            jnp.asarray(sigma, f32),
            jnp.full((K,), max(self.class_prior_strength, MIN_PSEUDO), f32),
        )

    def _init_post(self, ann: Annotations) -> np.ndarray:
        post = getattr(self, "_eb_post", None)
        return vote_shares(ann) if post is None else post

    def _em_data(self, ann: Annotations, devices: Any = None) -> EMData:
        # the final fit reuses the layout the empirical-Bayes rounds built
        data = getattr(self, "_eb_data", None)
        return super()._em_data(ann, devices) if data is None else data

    def _fit(self, ann: Annotations) -> None:
        self._eb_sigma: float | None = None
        self._eb_post: np.ndarray | None = None
        self._eb_data: EMData | None = None
        try:
            if self.population_scale is None:
                self._empirical_bayes(ann)
            super()._fit(ann)
        finally:
            self._eb_post = self._eb_data = None
        if self.draws_ is None:
            self.population_scale_ = float(self.params_.sigma)
            mu = jnp.asarray(self.params_.mu)
            self.population_confusion_ = np.asarray(
                jax.nn.softmax(full_logits(mu), axis=-1), np.float64
            )
        else:
            self.population_scale_ = float(np.mean(self.draws_["sigma"]))
            mu = jnp.asarray(self.draws_["mu"].reshape(-1, *self.draws_["mu"].shape[2:]))
            conf = jax.nn.softmax(full_logits(mu), axis=-1)
            self.population_confusion_ = np.asarray(conf, np.float64).mean(axis=0)

    def _empirical_bayes(self, ann: Annotations, rounds: int = 5, rtol: float = 0.05) -> None:
        """Alternate EM at a fixed ``sigma`` with the empirical-Bayes update of ``sigma``."""
        data = self._em_data(ann, self._fit_devices())
        sigma = 1.0
        post = vote_shares(ann)
        for _ in range(rounds):
            hyper = self._hyper(ann, sigma)
            res = run_em(self._family, data, post, hyper, max_iter=int(self.max_iter), tol=1e-5)
            post = res.post
            key = jax.random.PRNGKey(int(self.seed))
            if data.task_mask is None:
                post_km = jnp.asarray(post.T, jnp.float32)
            else:  # padded and sharded like the tasks
                post_km = place_tasks(data, np.asarray(post.T, np.float32))
            new = float(_eb_scale_jit(post_km, data, hyper, key))
            done = abs(new - sigma) <= rtol * sigma
            sigma = new
            if done:
                break
        self._eb_sigma, self._eb_post, self._eb_data = sigma, post, data
