r"""Hierarchical Dawid–Skene: annotators' confusion logits drawn from a population.

Generative story (``K`` classes, annotator ``j``, task ``i``; logits relative to the
correct label, whose logit is 0):

.. math::

    \mu_{kl} \sim \mathcal{N}(m, s_0^2)\ (l \ne k), \qquad
    \sigma, \tau \sim \mathrm{HalfNormal}(s_\sigma), \qquad
    z_{jkl}, u_j \sim \mathcal{N}(0, 1), \\
    \beta_{jkl} = \mu_{kl} + \sigma z_{jkl} - \tau u_j, \qquad \beta_{jkk} = 0, \qquad
    \theta_{jk} = \mathrm{softmax}(\beta_{jk}), \\
    \pi \sim \mathrm{Dirichlet}(c), \qquad z_i \sim \mathrm{Categorical}(\pi), \qquad
    y_{ij} \mid z_i = k \sim \mathrm{Categorical}(\theta_{jk}).

The prior mean ``m = log((1 - q) / ((K - 1) q))`` makes the typical annotator's
accuracy ``q = prior_accuracy`` (better than chance). ``u_j`` is annotator ``j``'s
ability: it lowers all their error logits together, so annotators who differ in overall
accuracy (one-coin-like crowds, spammers next to experts) are not a ``K (K-1)``-fold
coincidence that the per-logit offsets ``z`` would shrink away. Given ``mu`` an
annotator's logits are ``N(mu, sigma^2 I + tau^2 1 1^T)``. Annotators with few labels
borrow strength from the population (partial pooling); the non-centred offsets keep
NUTS efficient when the scales are small (Paun et al. 2018 found the hierarchical model
the most robust).

EM finds the MAP of ``(mu, z, u, pi)`` at fixed scales ``(sigma, tau)`` (joint MAP of a
hierarchical scale collapses to zero): the M-step maximises the expected complete-data
log posterior by a few Newton steps over all annotators and ``mu`` at once (the Hessian
is block-arrow shaped: one block per annotator, a diagonal-minus-rank-one matrix per
class plus the ability's rank one, coupled only through ``mu``, solved by a Schur
complement: densely up to 8 classes, by conjugate gradients above). By default the
scales are estimated by empirical Bayes between EM runs: they maximise the marginal
likelihood of the labels given the most probable classes (annotator logits integrated
out by importance sampling from their Laplace approximation) over a log grid; NUTS
samples them. EM intervals: per imputation of the tasks' classes, each annotator's
logits drawn from their posterior given ``mu`` and the scales (Laplace draws moved by
preconditioned Langevin steps).

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
from jax.scipy.sparse.linalg import cg

from ..data import Annotations
from ..engines import engine_settings
from ..inference.em import EMData, place_posterior
from .bayesian import (
    BayesianAggregator,
    ClassPrior,
    safe_log,
    sample_priors,
)
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
#: Up to this many classes the Newton steps of the M-step solve ``mu``'s system densely
#: (``K (K - 1)`` square); above, by conjugate gradients.
_JOINT_MAX_CLASSES = 8
_CG_STEPS = 32  # at most this many conjugate-gradient iterations per Newton step above
_MIN_SCALE = 0.05
_MIN_ABILITY = 0.02
_GRID = 11  # points per scale of the empirical-Bayes grid (0.05 or 0.02 to 5, log spaced)
_IS_DRAWS = 32  # importance draws per annotator for the empirical-Bayes scales
_MALA_STEPS = 30  # Langevin steps from the Laplace draws behind EM's intervals
_MALA_STEP = 1.2  # their step, over D^(1/6) (D logits per annotator)


class HDSParams(NamedTuple):
    mu: jnp.ndarray  # [K, K-1] population mean logits of the wrong labels (right label: 0)
    sigma: jnp.ndarray  # [] population scale of each logit
    z: jnp.ndarray  # [W, K, K-1] standardised annotator offsets per logit
    log_pi: jnp.ndarray  # [K]
    tau: jnp.ndarray  # [] population scale of the annotators' abilities
    u: jnp.ndarray  # [W] standardised abilities (all wrong-label logits lowered by tau u)


class HDSHyper(NamedTuple):
    mean_logit: jnp.ndarray  # [] prior mean m of mu
    mean_scale: jnp.ndarray  # [] prior sd s_0 of mu
    scale_prior: jnp.ndarray  # [] HalfNormal scale of sigma and of tau
    sigma: jnp.ndarray  # [] the per-logit scale EM holds fixed
    class_counts: jnp.ndarray  # [K] Dirichlet(class_counts) prior on the class shares
    tau: jnp.ndarray  # [] the ability scale EM holds fixed


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


def _softmax_np(off: np.ndarray) -> np.ndarray:
    """NumPy float64 ``softmax(full_logits(off))`` over the labels, ``[..., K, K]``."""
    K = off.shape[-2]
    logits = np.zeros((*off.shape[:-1], K), np.float64)
    rows, cols = np.arange(K)[:, None], _off_index(K)
    logits[..., rows, cols] = off
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def _logits(params: HDSParams) -> jnp.ndarray:
    """``[W, K, K-1]``: every annotator's wrong-label logits."""
    return params.mu + params.sigma * params.z - params.tau * params.u[:, None, None]


def _log_confusion(params: HDSParams) -> jnp.ndarray:
    return jax.nn.log_softmax(full_logits(_logits(params)), axis=-1)


class _Prior(NamedTuple):
    """The prior of one annotator's ``D = K (K-1)`` logits given ``mu``:
    ``N(mu, sigma^2 I + tau^2 1 1^T)``, whose precision is ``c (I - rho 1 1^T)``."""

    c: jnp.ndarray  # 1 / sigma^2
    rho: jnp.ndarray  # tau^2 / (sigma^2 + D tau^2)
    base: jnp.ndarray  # 1 - rho D = sigma^2 / (sigma^2 + D tau^2)
    log_det: jnp.ndarray  # log det of the covariance


def _prior(sigma: jnp.ndarray, tau: jnp.ndarray, D: int) -> _Prior:
    s2, t2 = sigma**2, tau**2
    tot = s2 + D * t2
    return _Prior(1.0 / s2, t2 / tot, s2 / tot, (D - 1) * jnp.log(s2) + jnp.log(tot))


def _prec_times(prior: _Prior, r: jnp.ndarray) -> jnp.ndarray:
    """The prior precision times per-annotator vectors ``r [W, K, K-1]``."""
    return prior.c * (r - prior.rho * r.sum((-2, -1), keepdims=True))


def _curvature_parts(E: jnp.ndarray, b: jnp.ndarray, sigma: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
    """At logits ``b [W, K, K-1]`` with expected counts ``E [W, K, K]``: the gradient of the
    expected log-likelihood ``[W, K, K-1]``, and minus the Hessian of each row's log
    likelihood plus ``I / sigma^2`` as a diagonal minus a rank-one matrix,
    ``A = diag(d) - u u^T`` with ``d = n p + 1 / sigma^2``, ``u = sqrt(n) p`` (``p`` the
    wrong labels' probabilities, ``n`` the row's count), ``den = 1 - sum(u^2 / d) > 0``
    (written as a sum of positive terms), and ``(A - I / sigma^2) 1 = n p p_right``."""
    K = E.shape[-1]
    off = _off_index(K)
    rows = np.arange(K)[:, None]
    n = E.sum(-1)[..., None]  # [W, K, 1]
    probs = jax.nn.softmax(full_logits(b), axis=-1)  # [W, K, K]
    p = probs[..., rows, off]  # [W, K, K-1]
    right = jnp.diagonal(probs, axis1=-2, axis2=-1)[..., None]  # [W, K, 1]
    grad = E[..., rows, off] - n * p
    prec = 1.0 / sigma**2
    d = n * p + prec
    den = right[..., 0] + (p * prec / d).sum(-1)
    return grad, d, jnp.sqrt(n) * p, den, n * p * right


class _Solver(NamedTuple):
    """Minus the Hessian of each annotator's log posterior given ``mu``,
    ``H = blockdiag_k(A_k) - c rho 1 1^T`` (``A_k`` of :func:`_curvature_parts`), applied
    inverted by Sherman–Morrison twice (rows, then the annotator's rank one), never formed."""

    d: jnp.ndarray  # [W, K, K-1]
    v: jnp.ndarray  # [W, K, K-1]: u / d
    den: jnp.ndarray  # [W, K]
    w: jnp.ndarray  # [W, K, K-1]: blockdiag(A)^-1 1
    gamma: jnp.ndarray  # [W]: H^-1 = blockdiag(A)^-1 + gamma w w^T
    den2: jnp.ndarray  # [W]: 1 - c rho 1^T w > 0 (= det blockdiag(A) / det H)

    def rows(self, x: jnp.ndarray) -> jnp.ndarray:  # blockdiag(A)^-1 x
        return x / self.d + self.v * ((self.v * x).sum(-1) / self.den)[..., None]

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:  # H^-1 x
        return self.rows(x) + self.w * (self.gamma * (self.w * x).sum((-2, -1)))[..., None, None]

    def quad(self, x: jnp.ndarray, prior: _Prior) -> jnp.ndarray:  # x^T H x per annotator
        u = self.v * self.d
        rows = (self.d * x**2).sum((-2, -1)) - ((u * x).sum(-1) ** 2).sum(-1)
        return rows - prior.c * prior.rho * x.sum((-2, -1)) ** 2


def _solver(E: jnp.ndarray, b: jnp.ndarray, prior: _Prior, sigma: jnp.ndarray) -> tuple:
    grad, d, u, den, npr = _curvature_parts(E, b, sigma)
    s = _Solver(d, u / d, den, d, d[:, 0, 0], d[:, 0, 0])
    w = s.rows(jnp.ones_like(d))
    # 1 - c rho 1^T w = base + rho 1^T blockdiag(A)^-1 (A - c) 1: positive terms only
    den2 = prior.base + prior.rho * s.rows(npr).sum((-2, -1))
    return grad, s._replace(w=w, gamma=prior.c * prior.rho / den2, den2=den2)


def _block_diag(blocks: jnp.ndarray) -> jnp.ndarray:
    """``[K, m, m]`` blocks -> ``[K m, K m]``."""
    K, m, _ = blocks.shape
    eye = jnp.eye(K, dtype=blocks.dtype)
    return (eye[:, None, :, None] * blocks[:, :, None, :]).reshape(K * m, K * m)


def _newton(
    E: jnp.ndarray, hyper: HDSHyper, start: tuple[jnp.ndarray, jnp.ndarray] | None = None
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Maximise the expected complete-data log posterior over annotator logits ``b`` and
    the population mean ``mu`` (``sigma``, ``tau`` fixed) by :data:`_NEWTON_STEPS` Newton
    steps from ``start`` (``(b, mu)``; None: the prior mean). The Hessian is block-arrow shaped (one block per annotator, coupled through
    ``mu``): each annotator's block is inverted by Sherman–Morrison (:class:`_Solver`),
    ``mu``'s step solves the ``D x D`` Schur complement ``(S0 - P M P) d = r`` with
    ``M = sum_w H_w^-1``: formed and factorised up to :data:`_JOINT_MAX_CLASSES`
    classes; above (``D = K (K - 1)`` over 56, where that dense solve, ``O(K^6)``, took
    minutes at K = 20) by conjugate gradients, ``M v`` applied through the annotators'
    solvers (``O(W K^2)`` a product), never formed: the same steps."""
    W, K, _ = E.shape
    D = K * (K - 1)
    sigma = hyper.sigma
    prior = _prior(sigma, hyper.tau, D)
    mu0 = jnp.full((K, K - 1), hyper.mean_logit, E.dtype)
    dense = K <= _JOINT_MAX_CLASSES
    if dense:
        eye = jnp.eye(D, dtype=E.dtype)
        P = prior.c * (eye - prior.rho)  # the prior precision of one annotator's logits
        S0 = W * P + eye / hyper.mean_scale**2

    def prec(x: jnp.ndarray) -> jnp.ndarray:  # one annotator's prior precision times x
        return _prec_times(prior, x[None])[0]

    def mu_step(solve: _Solver, g_mu: jnp.ndarray, g_b: jnp.ndarray) -> jnp.ndarray:
        if dense:  # sum over annotators of H^-1, dense D x D
            row_inv = (1.0 / solve.d).sum(0)[..., None] * jnp.eye(
                K - 1, dtype=E.dtype
            ) + jnp.einsum("wka,wkb->kab", solve.v / solve.den[..., None], solve.v)
            wf = solve.w.reshape(W, D)
            M = _block_diag(row_inv) + jnp.einsum("w,wa,wb->ab", solve.gamma, wf, wf)
            S = S0 - P @ M @ P
            rhs = g_mu.reshape(D) + P @ solve(g_b).sum(0).reshape(D)
            return jnp.linalg.solve(S, rhs[:, None])[:, 0].reshape(K, K - 1)

        def schur(v: jnp.ndarray) -> jnp.ndarray:
            pv = prec(v)
            return (
                W * pv
                + v / hyper.mean_scale**2
                - prec(solve(jnp.broadcast_to(pv, E.shape[:1] + pv.shape)).sum(0))
            )

        return cg(schur, g_mu + prec(solve(g_b).sum(0)), maxiter=_CG_STEPS)[0]

    def step(_: int, carry: tuple[jnp.ndarray, jnp.ndarray]) -> tuple[jnp.ndarray, jnp.ndarray]:
        b, mu = carry
        grad, solve = _solver(E, b, prior, sigma)
        pr = _prec_times(prior, b - mu)
        g_b = grad - pr
        g_mu = pr.sum(0) - (mu - hyper.mean_logit) / hyper.mean_scale**2
        d_mu = mu_step(solve, g_mu, g_b)
        d_b = solve(g_b + _prec_times(prior, jnp.broadcast_to(d_mu, b.shape)))
        return (
            b + jnp.clip(d_b, -_MAX_STEP, _MAX_STEP),
            mu + jnp.clip(d_mu, -_MAX_STEP, _MAX_STEP),
        )

    if start is None:
        start = (jnp.broadcast_to(mu0, (W, K, K - 1)), mu0)
    return jax.lax.fori_loop(0, _NEWTON_STEPS, step, start)


def _expected(post: jnp.ndarray, data: EMData) -> jnp.ndarray:
    return DawidSkeneModel.expected_counts(post, data, data.n_labels_per_worker.shape[0])


def _split(r: jnp.ndarray, sigma: jnp.ndarray, tau: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The most probable standardised ``(z, u)`` with ``sigma z - tau u = r [W, K, K-1]``
    (the prior of ``b = mu + r`` is their profile, up to a constant)."""
    D = r.shape[-1] * r.shape[-2]
    u = -tau * r.sum((-2, -1)) / (sigma**2 + D * tau**2)
    return (r + tau * u[:, None, None]) / sigma, u


def _newton_given_mu(
    E: jnp.ndarray, b: jnp.ndarray, mu: jnp.ndarray, hyper: HDSHyper
) -> tuple[jnp.ndarray, _Solver]:
    """Each annotator's most probable logits given ``mu`` (Newton from ``b``), and the
    solver of minus the Hessian there."""
    D = mu.size
    prior = _prior(hyper.sigma, hyper.tau, D)

    def step(_: int, b: jnp.ndarray) -> jnp.ndarray:
        grad, solve = _solver(E, b, prior, hyper.sigma)
        return b + jnp.clip(solve(grad - _prec_times(prior, b - mu)), -_MAX_STEP, _MAX_STEP)

    b = jax.lax.fori_loop(0, _NEWTON_STEPS, step, b)
    return b, _solver(E, b, prior, hyper.sigma)[1]


def _row_log_det(solve: _Solver) -> jnp.ndarray:
    """``[W]``: log det of ``blockdiag(A)^-1`` (``det A = prod(d) * den`` per row)."""
    return -(jnp.log(solve.d).sum(-1) + jnp.log(solve.den)).sum(-1)


def _laplace_draws(b: jnp.ndarray, solve: _Solver, e: jnp.ndarray, e_a: jnp.ndarray) -> jnp.ndarray:
    """Draws ``b + N(0, H^-1)`` from standard normals ``e [..., W, K, K]``, ``e_a [..., W]``:
    ``H^-1 = blockdiag(A)^-1 + gamma w w^T`` and each row's ``A^-1 = diag(1 / d) + v v^T /
    den``, so a draw is a sum of independent parts, ``e_d / sqrt(d) + v e_r / sqrt(den) +
    sqrt(gamma) w e_a`` (``e_d = e[..., :-1]``, ``e_r = e[..., -1]``; ``O(K^2)`` per
    annotator, where a Cholesky factor per row was ``O(K^4)``: 2 s at K = 100)."""
    return (
        b
        + e[..., :-1] / jnp.sqrt(solve.d)
        + solve.v * (e[..., -1] / jnp.sqrt(solve.den))[..., None]
        + jnp.sqrt(solve.gamma)[:, None, None] * solve.w * e_a[..., None, None]
    )


def _log_marginal(
    scales: jnp.ndarray,
    E: jnp.ndarray,
    hyper: HDSHyper,
    eps: jnp.ndarray,
    eps_a: jnp.ndarray,
) -> jnp.ndarray:
    """Log marginal likelihood of the expected counts ``E`` at the scales
    ``(sigma, tau)`` (each annotator's logits integrated out by importance sampling from
    their Laplace approximation with the standard-normal draws ``eps [S, W, K, K]``,
    ``eps_a [S, W]`` (see :func:`_laplace_draws`); ``mu`` at its optimum), plus the log priors of
    ``mu`` and the scales."""
    sigma, tau = scales[0], scales[1]
    h = hyper._replace(sigma=sigma, tau=tau)
    D = E.shape[-1] * (E.shape[-1] - 1)
    prior = _prior(sigma, tau, D)
    b, mu = _newton(E, h)
    _, solve = _solver(E, b, prior, sigma)
    # log det of the proposal's covariance H^-1 = det blockdiag(A)^-1 / den2
    log_det = _row_log_det(solve) - jnp.log(solve.den2)

    def one_draw(e: tuple[jnp.ndarray, ...]) -> jnp.ndarray:  # [W]: log weights
        x = _laplace_draws(b, solve, *e)
        quad = solve.quad(x - b, prior)
        log_lik = (E * jax.nn.log_softmax(full_logits(x), axis=-1)).sum((-2, -1))
        r = x - mu
        log_p = -0.5 * (r * _prec_times(prior, r)).sum((-2, -1)) - 0.5 * prior.log_det
        return log_lik + log_p + 0.5 * quad + 0.5 * log_det

    # one draw at a time: vectorised over the draws as well, XLA's CPU fusion of these
    # broadcasts and reductions gave wrong values beyond ~65,000 logits (jax 0.10.2)
    log_w = jax.lax.map(one_draw, (eps, eps_a))  # [S, W]
    rows = jax.nn.logsumexp(log_w, axis=0) - jnp.log(eps.shape[0])
    prior_mu = -0.5 * (((mu - hyper.mean_logit) / hyper.mean_scale) ** 2).sum()
    return rows.sum() + prior_mu - 0.5 * ((scales / hyper.scale_prior) ** 2).sum()


def _eb_scales(
    post: jnp.ndarray,
    data: EMData,
    hyper: HDSHyper,
    key: jnp.ndarray,
    sigma_grid: jnp.ndarray,
    tau_grid: jnp.ndarray,
) -> jnp.ndarray:
    """Empirical-Bayes scales ``(sigma, tau)`` given the class posterior: the maximiser of
    :func:`_log_marginal` (at the most probable classes) over the log grid
    ``sigma_grid x tau_grid``, refined twice around the best point (a grid of one value
    holds that scale fixed)."""
    # hard classes: the marginal is not linear in the counts, and soft counts pull the
    # annotators together (on simulated data they halve the scale; hard ones recover it)
    hard = jax.nn.one_hot(jnp.argmax(post, axis=0), post.shape[0], axis=0, dtype=post.dtype)
    if data.task_mask is not None:  # padding tasks (sharded) have no class
        hard = hard * data.task_mask[None, :]
    E = _expected(hard, data)
    W, K, _ = E.shape

    # each annotator's draws from a key of its own (folded in by its row), so that the
    # padding rows of a shape bucket leave the real annotators' draws as they are
    def row_draws(w: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        k1, k2 = jax.random.split(jax.random.fold_in(key, w))
        e = jax.random.normal(k1, (_IS_DRAWS, K, K), E.dtype)
        return e, jax.random.normal(k2, (_IS_DRAWS,), E.dtype)

    eps, eps_a = jax.vmap(row_draws, out_axes=1)(jnp.arange(W))  # [S, W, K, K], [S, W]

    def best(s_grid: jnp.ndarray, t_grid: jnp.ndarray) -> jnp.ndarray:
        pairs = jnp.stack(jnp.broadcast_arrays(s_grid[:, None], t_grid[None, :]), -1)
        pairs = pairs.reshape(-1, 2)
        values = jax.lax.map(lambda s: _log_marginal(s, E, hyper, eps, eps_a), pairs)
        values = jnp.where(jnp.isfinite(values), values, -jnp.inf)
        return pairs[jnp.argmax(values)]

    s, t = best(sigma_grid, tau_grid)
    for width in (1.0, 0.5):  # grid spacing halved, then quartered
        grids = []
        for grid, x in ((sigma_grid, s), (tau_grid, t)):
            if grid.shape[0] > 1:
                step = width * jnp.log(grid[1] / grid[0])
                fine = jnp.exp(jnp.log(x) + step * jnp.linspace(-1.0, 1.0, 5))
                # within the grid's range: below its lowest scale the M-step's Newton steps
                # from the prior mean stop far from the optimum and EM ran off (a skewed
                # K = 5 crowd went to sigma 0.032 < 0.05 and to 0.41 task accuracy)
                grid = jnp.clip(fine, grid[0], grid[-1]).astype(E.dtype)
            grids.append(grid)
        s, t = best(*grids)
    return jnp.stack([s, t])


def _interval_draws(
    params: HDSParams, post: jnp.ndarray, data: EMData, hyper: HDSHyper, key: jnp.ndarray, n: int
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``n`` draws ``[n, W, K, K-1]`` of every annotator's logits from their posterior given
    ``mu``, the scales and the classes ``post`` (one imputation), and the share of MALA
    moves accepted: ``n`` chains per annotator start at draws of the Laplace approximation
    around the most probable logits and take :data:`_MALA_STEPS` Metropolis-adjusted
    Langevin steps preconditioned by its covariance (the Laplace approximation is
    symmetric in the logits; the posterior of a good annotator's error logits is not)."""
    E = _expected(post, data)
    W, K, _ = E.shape
    D = K * (K - 1)
    h = hyper._replace(sigma=params.sigma, tau=params.tau)
    prior = _prior(params.sigma, params.tau, D)
    b, solve = _newton_given_mu(E, _logits(params), params.mu, h)
    step = _MALA_STEP / D ** (1 / 6)
    rows, off = np.arange(K)[:, None], _off_index(K)
    E_off, n_row = E[..., rows, off], E.sum(-1)  # [W, K, K-1], [W, K]

    def log_target(x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:  # value [n, W], grad
        # each row's log normaliser over the right label (logit 0) and the wrong ones x
        top = jnp.maximum(x.max(-1), 0.0)
        lse = top + jnp.log(jnp.exp(-top) + jnp.exp(x - top[..., None]).sum(-1))  # [n, W, K]
        r = _prec_times(prior, x - params.mu)
        value = (E_off * x).sum((-2, -1)) - (n_row * lse).sum(-1)
        value = value - 0.5 * ((x - params.mu) * r).sum((-2, -1))
        return value, E_off - n_row[..., None] * jnp.exp(x - lse[..., None]) - r

    def noise(key: jnp.ndarray) -> jnp.ndarray:  # N(0, H^-1) draws [n, W, K, K-1]
        k1, k2 = jax.random.split(key)
        e = jax.random.normal(k1, (n, W, K, K), E.dtype)
        e_a = jax.random.normal(k2, (n, W), E.dtype)
        return _laplace_draws(jnp.zeros_like(b), solve, e, e_a)

    def mala(
        i: int, carry: tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray]
    ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray]:
        x, value, grad, accepted = carry
        k1, k2 = jax.random.split(jax.random.fold_in(key, i))
        mean = x + 0.5 * step**2 * solve(grad)
        new = mean + step * noise(k1)
        new_value, new_grad = log_target(new)
        back = new + 0.5 * step**2 * solve(new_grad)
        log_ratio = (
            new_value
            - value
            - (solve.quad(x - back, prior) - solve.quad(new - mean, prior)) / (2 * step**2)
        )
        ok = jnp.log(jax.random.uniform(k2, log_ratio.shape)) < log_ratio
        pick = ok[..., None, None]
        return (
            jnp.where(pick, new, x),
            jnp.where(ok, new_value, value),
            jnp.where(pick, new_grad, grad),
            accepted + ok.mean(),
        )

    x = b + noise(jax.random.fold_in(key, _MALA_STEPS))
    carry = (x, *log_target(x), jnp.zeros((), E.dtype))
    x, _, _, accepted = jax.lax.fori_loop(0, _MALA_STEPS, mala, carry)
    return x, accepted / _MALA_STEPS


_eb_scales_jit = jax.jit(_eb_scales)
_interval_draws_jit = jax.jit(_interval_draws, static_argnums=5)


class HierarchicalDawidSkeneModel(ClassPrior):
    """Static likelihood, EM updates and NumPyro sites of hierarchical Dawid–Skene."""

    __name__ = "HierarchicalDawidSkene"

    @staticmethod
    def log_lik(params: HDSParams, data: EMData) -> jnp.ndarray:
        return DawidSkeneModel.log_lik(DSParams(_log_confusion(params), params.log_pi), data)

    @staticmethod
    def m_step(post: jnp.ndarray, data: EMData, hyper: HDSHyper) -> HDSParams:
        return HierarchicalDawidSkeneModel._params(
            post, hyper, *_newton(_expected(post, data), hyper)
        )

    @staticmethod
    def m_step_from(
        post: jnp.ndarray, data: EMData, hyper: HDSHyper, params: HDSParams, first: jnp.ndarray
    ) -> HDSParams:
        """EM's M-step continued from the last params (:class:`~crowdbayes.inference.em.
        WarmStarted`): the Newton steps start where the previous M-step stopped, from the
        prior mean on EM's first step (``first``), so over EM's iterations the M-step
        converges instead of restarting 12 steps from the prior mean each time (which left
        it far from converged where the scales are extreme, and EM stopped there)."""
        E = _expected(post, data)
        W, K, _ = E.shape
        mu0 = jnp.full((K, K - 1), hyper.mean_logit, E.dtype)
        b0 = jnp.where(first, jnp.broadcast_to(mu0, (W, K, K - 1)), _logits(params))
        mu_start = jnp.where(first, mu0, params.mu)
        b, mu = _newton(E, hyper, (b0.astype(E.dtype), mu_start.astype(E.dtype)))
        return HierarchicalDawidSkeneModel._params(post, hyper, b, mu)

    @staticmethod
    def _params(post: jnp.ndarray, hyper: HDSHyper, b: jnp.ndarray, mu: jnp.ndarray) -> HDSParams:
        z, u = _split(b - mu, hyper.sigma, hyper.tau)
        return HDSParams(
            mu, hyper.sigma, z, ClassPrior.log_shares(post, hyper.class_counts), hyper.tau, u
        )

    @staticmethod
    def log_prior(params: HDSParams, hyper: HDSHyper) -> jnp.ndarray:
        return (
            -0.5 * (((params.mu - hyper.mean_logit) / hyper.mean_scale) ** 2).sum()
            - 0.5 * (params.sigma / hyper.scale_prior) ** 2
            - 0.5 * (params.tau / hyper.scale_prior) ** 2
            - 0.5 * (params.z**2).sum()
            - 0.5 * (params.u**2).sum()
            + (hyper.class_counts * params.log_pi).sum()
        )

    # ---- NUTS and intervals (see models/bayesian.py)
    @staticmethod
    def sample_sites(data: EMData, hyper: HDSHyper) -> dict[str, jnp.ndarray]:
        import numpyro.distributions as dist

        W = data.n_labels_per_worker.shape[0]
        K = hyper.class_counts.shape[0]
        return sample_priors(
            hyper,
            mu=dist.Normal(hyper.mean_logit, hyper.mean_scale).expand([K, K - 1]).to_event(2),
            sigma=dist.HalfNormal(hyper.scale_prior),
            tau=dist.HalfNormal(hyper.scale_prior),
            z=dist.Normal(0.0, 1.0).expand([W, K, K - 1]).to_event(3),
            u=dist.Normal(0.0, 1.0).expand([W]).to_event(1),
        )

    @staticmethod
    def params_from_sites(sites: dict[str, jnp.ndarray], hyper: HDSHyper) -> HDSParams:
        return HDSParams(
            sites["mu"], sites["sigma"], sites["z"], safe_log(sites["pi"]), sites["tau"], sites["u"]
        )

    @staticmethod
    def sites_from_params(params: HDSParams, hyper: HDSHyper) -> dict[str, jnp.ndarray]:
        # NUTS starts off tau = 0 (where its unconstrained coordinate is -inf)
        tau = jnp.maximum(params.tau, 1e-2)
        return {
            "mu": params.mu,
            "sigma": params.sigma,
            "tau": tau,
            "z": params.z,
            "u": params.u * params.tau / tau,
            "pi": jnp.exp(params.log_pi),
        }

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
        """Each annotator's logits given ``mu`` and the scales at the EM estimate and the
        classes ``post`` (one imputation); Dirichlet posterior of the class prior."""
        key = jax.random.PRNGKey(int(rng.integers(2**31)))
        draws, _ = _interval_draws_jit(params, post, data, hyper, key, int(n))
        conf = _softmax_np(np.asarray(draws)).astype(np.float32)  # numpy: no eager programs
        return conf, ClassPrior.draws(post, hyper.class_counts, rng, n)


class HierarchicalDawidSkene(BayesianAggregator):
    """Dawid–Skene with partial pooling: each annotator's confusion logits are the
    population's plus a scaled offset per logit and minus a scaled ability; by EM (MAP,
    empirical-Bayes scales) or NUTS.

    Parameters
    ----------
    prior_accuracy : float, default 0.7
        Accuracy of the typical annotator a priori (sets the prior mean of the population
        logits so that the prior is better than chance; must exceed ``1 / K``).
    prior_logit_scale : float, default 1.0
        Prior standard deviation of the population mean logits ``mu``.
    population_scale : float or None, default None
        Spread ``sigma`` of each annotator logit around the population (logit scale).
        ``None`` estimates it by empirical Bayes in EM (NUTS samples it, starting there); a
        number (at least 0.05, the grid's floor) fixes it for EM.
    ability_scale : float or None, default None
        Spread ``tau`` of the annotators' abilities (a shift of all their error logits).
        ``None``: empirical Bayes, as ``population_scale``; a number (0 allowed: no
        ability offsets) fixes it for EM.
    scale_prior : float, default 1.0
        ``sigma, tau ~ HalfNormal(scale_prior)`` (NUTS, and the EM objective's prior term).
    class_prior_strength : float, default 1.0
        Pseudo-count per class for the class prior.
    inference, method, num_warmup, num_samples, num_chains, seed, max_iter, tol, progress, devices :
        as in :class:`~crowdbayes.models.dawid_skene.DawidSkene` (``devices`` shards
        the labels of the EM fit, and of the empirical-Bayes EM runs before it, across
        JAX devices).

    Attributes
    ----------
    population_scale_ : float, the ``sigma`` EM used (NUTS: posterior mean).
    ability_scale_ : float, the ``tau`` EM used (NUTS: posterior mean).
    population_confusion_ : ndarray ``[K, K]``, the typical annotator's confusion matrix
        (``softmax(mu)``; NUTS: posterior mean).
    confusion_, class_prior_, history_, n_iter_, converged_, draws_, idata_ :
        as in :class:`~crowdbayes.models.bayesian.BayesianAggregator`.
    """

    _family = HierarchicalDawidSkeneModel
    _gibbs_sweeps = 0  # Laplace draws: sweeps changed no interval and took 2.5x the time
    _site_dims: ClassVar[dict[str, list[str]]] = {
        "mu": ["true", "wrong"],
        "z": ["worker", "true", "wrong"],
        "pi": ["class"],
    }

    # parameters (the constructor takes these, then the engine parameters)
    prior_accuracy: float = 0.7
    prior_logit_scale: float = 1.0
    population_scale: float | None = None
    ability_scale: float | None = None
    scale_prior: float = 1.0
    class_prior_strength: float = 1.0

    def _hyper(self, ann: Annotations, scales: tuple[float, float] | None = None) -> HDSHyper:
        K = ann.n_classes
        q = float(self.prior_accuracy)
        if not 1.0 / K < q < 1.0:
            raise ValueError(f"prior_accuracy must be in (1/K, 1) = ({1 / K:.3g}, 1), got {q}")
        if self.prior_logit_scale <= 0 or self.scale_prior <= 0 or self.class_prior_strength < 0:
            raise ValueError(
                "need prior_logit_scale > 0, scale_prior > 0, class_prior_strength >= 0"
            )
        if self.population_scale is not None and not self.population_scale >= _MIN_SCALE * (
            1 - 1e-6
        ):
            # below, the dense Schur complement of mu's Newton step cancels to noise in
            # float32 (c = 1 / sigma^2 > 400): at 0.03 the objective fell from -8e3 to -9e6
            # in one EM iteration (the empirical-Bayes grid starts at this floor too)
            raise ValueError(
                f"population_scale must be >= {_MIN_SCALE} (or None, estimated), got "
                f"{self.population_scale}: below it the M-step's float32 solve is unstable; "
                "for annotators who differ by one accuracy only, use OneCoinDawidSkene"
            )
        if self.ability_scale is not None and not self.ability_scale >= 0:
            raise ValueError(f"ability_scale must be >= 0, got {self.ability_scale}")
        if scales is None:
            scales = getattr(self, "_eb_scales", None)
        if scales is None:
            scales = (
                1.0 if self.population_scale is None else float(self.population_scale),
                1.0 if self.ability_scale is None else float(self.ability_scale),
            )
        # numpy, then one transfer each: eager jnp calls would compile a small program
        # per class count in a fresh process
        f32, put = np.float32, jax.device_put
        return HDSHyper(
            put(f32(np.log((1.0 - q) / ((K - 1) * q)))),
            put(f32(self.prior_logit_scale)),
            put(f32(self.scale_prior)),
            put(f32(scales[0])),
            ClassPrior.counts(K, self.class_prior_strength),
            put(f32(scales[1])),
        )

    def _fit(self, ann: Annotations) -> None:
        self._eb_scales: tuple[float, float] | None = None
        self._hyper(ann)  # bad priors fail before any fit
        super()._fit(ann)  # the engine runs the empirical-Bayes rounds (_refit)
        # numpy: eager jnp calls here compiled eight small programs in a fresh process
        post = self.posterior_
        self.population_scale_ = float(post.mean("sigma", lambda p: p.sigma))
        self.ability_scale_ = float(post.mean("tau", lambda p: p.tau))
        self.population_confusion_ = post.mean(
            "mu", lambda p: _softmax_np(np.asarray(p.mu)), of=_softmax_np
        )

    def _fold_estimator(self, ann: Annotations) -> HierarchicalDawidSkene:
        """The estimator :func:`crowdbayes.compare` refits on each fold: the scales this
        model would estimate by empirical Bayes are estimated once, on all of ``ann``, and
        held fixed (an EM fit at fixed scales takes a tenth of a second where the
        empirical-Bayes rounds take seconds)."""
        params = self.get_params(deep=False)
        em = engine_settings(self)["method"] == "em"
        if em and (self.population_scale is None or self.ability_scale is None):
            full = type(self)(**params)
            full.fit(ann)
            params["population_scale"] = full.population_scale_
            params["ability_scale"] = full.ability_scale_
        return type(self)(**params)

    def _grid(self, fixed: float | None, low: float) -> jnp.ndarray:
        if fixed is not None:
            return jnp.asarray([fixed], jnp.float32)
        return jnp.geomspace(low, 5.0, _GRID).astype(jnp.float32)

    def _refit(self, ann: Annotations, data: EMData, rtol: float = 0.05) -> Any:
        """The empirical-Bayes update of the scales the estimator leaves free (None where
        it fixes both): the engine alternates EM at fixed scales with it
        (:func:`~crowdbayes.inference.posterior.em_posterior`) until both move by less
        than ``rtol``; the last scales stay in ``_eb_scales`` (``_hyper`` rebuilds the
        fit's hyperparameters from them)."""
        if self.population_scale is not None and self.ability_scale is not None:
            return None
        scales = (
            1.0 if self.population_scale is None else float(self.population_scale),
            1.0 if self.ability_scale is None else float(self.ability_scale),
        )
        grids = (
            self._grid(self.population_scale, _MIN_SCALE),
            self._grid(self.ability_scale, _MIN_ABILITY),
        )
        seed = int(engine_settings(self)["seed"])

        def refit(post: np.ndarray, hyper: HDSHyper) -> tuple[HDSHyper, bool]:
            nonlocal scales
            key = jax.random.PRNGKey(seed)
            post_km = place_posterior(data, post)  # padded and sharded like the tasks
            new = np.asarray(_eb_scales_jit(post_km, data, hyper, key, *grids), np.float64)
            old = np.asarray(scales)
            done = bool(np.all(np.abs(new - old) <= rtol * np.maximum(old, _MIN_ABILITY)))
            scales = self._eb_scales = (float(new[0]), float(new[1]))
            return self._hyper(ann, scales), done

        return refit
