"""What an inference engine returns, and the engines' runs over any model family.

:class:`Posterior` is a fitted family's posterior, whichever engine found it: EM's
estimate (MAP) or NUTS's draws, with the quantities every estimator reports (the class
posterior of the tasks, each annotator's confusion matrix, the class prior) and, for NUTS,
the draws of every site and of the derived quantities (:class:`Samples`).
:meth:`Posterior.mean` gives a quantity either way: a site's posterior mean over NUTS's
draws, or its value at EM's estimate (the MAP); outputs with intervals read
:attr:`Posterior.samples` where there are draws.

:func:`em_posterior` is :meth:`crowdbayes.EM.run`: EM to the MAP, after empirical-Bayes
rounds where the family's estimator gives a ``refit`` of its hyperparameters (EM at the
current hyperparameters, then ``refit(post, hyper)``, until it says they moved less than
its tolerance). :func:`nuts_posterior` is the NUTS half of :meth:`crowdbayes.NUTS.run`,
started at an EM posterior.

:func:`marginal_model` is the NumPyro model of any family: the true class is
marginalised by log-sum-exp inside :func:`~crowdbayes.inference.em.e_step`, the one
function EM also uses, so the two engines share one likelihood. :func:`nuts_draws`
samples it, all chains in one jitted program compiled once per family and data shapes,
in numpyro's unconstrained coordinates or, where a family is :class:`Reparametrised`, in
its own. This module imports no model family and nothing of ``crowdbayes.models``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache, partial
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from .em import EMData, e_step, run_em
from .nuts import check_convergence, run_nuts_potential

__all__ = [
    "Posterior",
    "Reparametrised",
    "Samples",
    "em_objective",
    "em_posterior",
    "interval_bounds",
    "marginal_model",
    "nuts_draws",
    "nuts_posterior",
]


@runtime_checkable
class Reparametrised(Protocol):
    """A family's own unconstrained coordinates ``z`` for NUTS (see :func:`nuts_draws`)."""

    @staticmethod
    def unconstrained_potential(z: Any, data: EMData, hyper: Any) -> jnp.ndarray: ...

    @staticmethod
    def unconstrained_from_params(params: Any, hyper: Any) -> Any: ...

    @staticmethod
    def sites_from_unconstrained(z: Any, hyper: Any) -> dict[str, jnp.ndarray]: ...


def marginal_model(family: Any, data: EMData, hyper: Any) -> None:
    """NumPyro model of ``family``: priors from ``sample_sites``, then one factor with the
    per-task log-likelihood (true class marginalised, gold tasks clamped)."""
    import numpyro

    sites = family.sample_sites(data, hyper)
    params = family.params_from_sites(sites, hyper)
    _, task_lp = e_step(family, params, data)
    numpyro.factor("labels", task_lp.sum())


def nuts_draws(
    family: Any,
    data: EMData,
    hyper: Any,
    em_params: Any,
    *,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """NUTS on the posterior of :func:`marginal_model`, every chain started at the EM
    estimate ``em_params``; the chains run one after another in one jitted program
    (:func:`~crowdbayes.inference.nuts.run_nuts_potential`), compiled once per family and
    shapes. Returns draws of the sites, ``[chains, draws, ...]``. ``progress`` shows a
    progress bar of the chains (the draws do not depend on it).

    The coordinates are numpyro's unconstrained ones (its transforms and their Jacobians),
    unless the family has its own, cheaper ones:

    - ``unconstrained_potential(z, data, hyper)``: minus the log posterior density of
      ``z`` (EM's objective at ``params_from_unconstrained(z)`` plus the log-Jacobian),
      the same distribution as :func:`marginal_model`;
    - ``unconstrained_from_params(params, hyper) -> z``;
    - ``sites_from_unconstrained(z, hyper) -> dict``: the sites of ``sample_sites``.
    """
    if isinstance(family, Reparametrised):
        potential = family.unconstrained_potential
        z0 = family.unconstrained_from_params(em_params, hyper)
    else:
        from numpyro.infer.util import unconstrain_fn

        potential = _marginal_potential(family)
        init = {k: jnp.asarray(v) for k, v in family.sites_from_params(em_params, hyper).items()}
        z0 = unconstrain_fn(partial(marginal_model, family), (data, hyper), {}, init)
    z, _ = run_nuts_potential(
        potential,
        z0,
        data,
        hyper,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        seed=seed,
        progress=progress,
    )
    return {k: np.asarray(v) for k, v in _sites_jit(family, z, data, hyper).items()}


@cache
def _marginal_potential(family: Any) -> Any:
    """Minus the log density of :func:`marginal_model` of ``family`` at numpyro's
    unconstrained sites ``z``: one function object per family, so its compiled NUTS
    program is reused by later fits of the same shapes."""
    from numpyro.infer.util import potential_energy

    def potential(z: dict[str, jnp.ndarray], data: EMData, hyper: Any) -> jnp.ndarray:
        return potential_energy(partial(marginal_model, family), (data, hyper), {}, z)

    return potential


def _sites(family: Any, z: Any, data: EMData, hyper: Any) -> dict[str, jnp.ndarray]:
    """The sites of draws ``z`` (leaves ``[chains, draws, ...]``) in either coordinates."""
    if isinstance(family, Reparametrised):
        one = partial(family.sites_from_unconstrained, hyper=hyper)
    else:
        from numpyro.infer.util import constrain_fn

        one = partial(constrain_fn, partial(marginal_model, family), (data, hyper), {})
    return dict(jax.vmap(jax.vmap(one))(z))


_sites_jit = jax.jit(_sites, static_argnums=0)


_confusion_jit = jax.jit(lambda family, params: family.confusion(params), static_argnums=0)


def em_objective(family: Any, params: Any, data: EMData, hyper: Any) -> jnp.ndarray:
    """EM's objective at ``params``: log-likelihood (class marginalised) + log prior."""
    _, task_lp = e_step(family, params, data)
    return task_lp.sum() + family.log_prior(params, hyper)


def _summarise(family: Any, sites: Any, data: EMData, hyper: Any) -> tuple[jnp.ndarray, ...]:
    """Over draws (leading axis of ``sites``): mean class posterior ``[K, T]``, per-task
    log-likelihood ``[S, T]``, confusion ``[S, W, K, L]`` and log class prior ``[S, K]``."""
    K = hyper_n_classes(family, sites, hyper)
    T = data.gold.shape[0]

    def step(total: jnp.ndarray, site: Any) -> tuple[jnp.ndarray, tuple[jnp.ndarray, ...]]:
        params = family.params_from_sites(site, hyper)
        post, task_lp = e_step(family, params, data)
        return total + post, (task_lp, family.confusion(params), params.log_pi)

    total, (task_lp, conf, log_pi) = jax.lax.scan(step, jnp.zeros((K, T), jnp.float32), sites)
    n = jax.tree_util.tree_leaves(sites)[0].shape[0]
    return total / n, task_lp, conf, log_pi


def hyper_n_classes(family: Any, sites: Any, hyper: Any) -> int:
    one = jax.tree_util.tree_map(lambda x: x[0], sites)
    params = jax.eval_shape(lambda s: family.params_from_sites(s, hyper), one)
    return int(params.log_pi.shape[0])


def _chosen_draws(
    family: Any, sites: Any, data: EMData, hyper: Any, chosen: jnp.ndarray
) -> jnp.ndarray:
    """``[S, T]``: per draw, the posterior probability of each task's chosen class."""

    def step(carry: None, site: Any) -> tuple[None, jnp.ndarray]:
        post, _ = e_step(family, family.params_from_sites(site, hyper), data)
        return None, jnp.take_along_axis(post, chosen[None, :], axis=0)[0]

    return jax.lax.scan(step, None, sites)[1]


_summarise_jit = jax.jit(_summarise, static_argnums=0)
_chosen_draws_jit = jax.jit(_chosen_draws, static_argnums=0)
_em_objective_jit = jax.jit(em_objective, static_argnums=0)


#: A family's empirical-Bayes update of its hyperparameters, given EM's class posterior
#: ``[n_tasks, K]`` at the current ones: the new hyperparameters and whether they moved
#: less than its tolerance (the rounds stop there).
Refit = Callable[[np.ndarray, Any], tuple[Any, bool]]


def interval_bounds(draws: np.ndarray, interval: float, axis: int = 0) -> np.ndarray:
    """Equal-tailed ``interval`` bounds over ``axis``: array ``[2, ...]`` (lower, upper).

    >>> interval_bounds(np.arange(101.0), 0.9).tolist()
    [5.0, 95.0]
    """
    if not 0.0 < interval < 1.0:
        raise ValueError(f"interval must be between 0 and 1, got {interval}")
    q = [(1.0 - interval) / 2.0, (1.0 + interval) / 2.0]
    return np.quantile(np.asarray(draws, dtype=np.float64), q, axis=axis)


@dataclass(eq=False)
class Samples:
    """NUTS's draws and what they give: ``draws`` (site -> ``[chains, draws, ...]``),
    ``confusion`` ``[S, W, K, L]`` and ``class_prior`` ``[S, K]`` per draw (``S`` =
    chains x draws), ``task_log_lik`` ``[chains, draws, n_tasks]``, ``chosen_prob``
    ``[S, n_tasks]`` (each draw's probability of the task's most probable class) and
    ``convergence`` (R-hat and ESS per site)."""

    draws: dict[str, np.ndarray]
    confusion: np.ndarray
    class_prior: np.ndarray
    task_log_lik: np.ndarray
    chosen_prob: np.ndarray
    convergence: dict[str, Any]

    def site(self, name: str) -> np.ndarray:
        """The draws of site ``name``, chains and draws in one axis, ``[S, ...]``, float64."""
        d = self.draws[name]
        return np.asarray(d, np.float64).reshape(-1, *d.shape[2:])

    def interval(
        self, site: str, interval: float, of: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> np.ndarray:
        """Equal-tailed ``interval`` bounds ``[2, ...]`` (lower, upper) of site ``site`` or
        of a quantity derived from it, ``of(draws)`` (vectorised over the leading axis)."""
        values = self.site(site)
        return interval_bounds(values if of is None else of(values), interval)

    def flat_sites(self) -> dict[str, jnp.ndarray]:
        """Every site's draws, chains and draws in one leading axis, float32 on the device
        (what the jitted summaries scan over)."""
        return _flat_sites(self.draws)


def _flat_sites(draws: dict[str, np.ndarray]) -> dict[str, jnp.ndarray]:
    return {k: jnp.asarray(v.reshape(-1, *v.shape[2:]), jnp.float32) for k, v in draws.items()}


@dataclass(eq=False)  # arrays: no elementwise __eq__
class Posterior:
    """A fitted family's posterior: EM's estimate, or NUTS's draws started there.

    ``params`` is EM's estimate (padding cut off: a shape bucket's, and after a sharded fit
    the padding tasks of the family's declared ``task_params``; NUTS starts its chains
    there) and
    ``hyper`` the hyperparameters it was found at (after any empirical-Bayes rounds; an
    estimator keeps None there after a sharded or bucketed fit, as ``hyper_``: those
    layouts serve the fit only).
    ``proba`` ``[n_tasks, K]``, ``confusion`` ``[W, K, L]`` and ``class_prior`` ``[K]``
    are at EM's estimate, or NUTS's posterior means. ``history``, ``n_iter`` and
    ``converged`` describe EM's run. ``samples`` holds NUTS's draws (:class:`Samples`),
    None for EM."""

    params: Any
    hyper: Any
    proba: np.ndarray
    confusion: np.ndarray
    class_prior: np.ndarray
    history: np.ndarray
    n_iter: int
    converged: bool
    samples: Samples | None = None

    @property
    def method(self) -> str:
        """``"nuts"`` for a posterior of draws, ``"em"`` for an estimate."""
        return "em" if self.samples is None else "nuts"

    @property
    def sampled(self) -> bool:
        """Whether this is a posterior of draws (NUTS) rather than an estimate (EM)."""
        return self.samples is not None

    @property
    def draws(self) -> dict[str, np.ndarray] | None:
        """NUTS's draws by site (``[chains, draws, ...]``), None for EM."""
        return None if self.samples is None else self.samples.draws

    def mean(
        self,
        site: str,
        estimate: Callable[[Any], Any],
        of: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> np.ndarray:
        """A quantity's posterior mean over NUTS's draws of ``site`` (``of`` applied to
        each draw's value first, vectorised over the leading axis, where the quantity
        is not the site itself), or its value at EM's estimate, ``estimate(params)``;
        float64 either way."""
        if self.samples is None:
            return np.asarray(estimate(self.params), np.float64)
        values = self.samples.site(site)
        return np.asarray(values if of is None else of(values), np.float64).mean(axis=0)

    def require_samples(self) -> Samples:
        """:attr:`samples`, or a ``ValueError`` for an EM posterior."""
        if self.samples is None:
            raise ValueError("an EM posterior has no draws: fit with inference=NUTS(...)")
        return self.samples


def _unpad_tasks(family: Any, params: Any, data: EMData, n_tasks: int) -> Any:
    """A sharded fit's params with the family's per-task fields (its declared
    ``task_params``) cut back to the ``n_tasks`` real tasks (the padding tasks are last)
    and every field on one device; unchanged for a family without per-task params or data
    that is not sharded (a shape bucket's padding :func:`~crowdbayes.inference.em.run_em`
    cuts itself)."""
    fields = tuple(getattr(family, "task_params", ()))
    if not fields or data.task_mask is None or data.pad_rows is not None:
        return params
    put = jax.device_put
    return params._replace(
        **{
            name: put(np.asarray(x)[:n_tasks] if name in fields else np.asarray(x))
            for name, x in zip(params._fields, params, strict=True)
        }
    )


def _real_workers(data: EMData) -> int:
    """The number of annotators of ``data`` without a shape bucket's padding rows."""
    W = int(data.n_labels_per_worker.shape[0])
    return W - int(np.asarray(data.pad_rows)[0]) if data.pad_rows is not None else W


def em_posterior(
    family: Any,
    data: EMData,
    hyper: Any,
    init_post: np.ndarray,
    *,
    max_iter: int = 100,
    tol: float = 1e-6,
    progress: bool = False,
    refit: Refit | None = None,
    rounds: int = 5,
    refit_tol: float = 1e-5,
) -> Posterior:
    """EM from ``init_post`` (``[n_tasks, K]``) to the MAP of ``family`` at ``hyper``
    (:func:`~crowdbayes.inference.em.run_em`), the confusion matrices and class prior at
    it. With ``refit``, first at most ``rounds`` empirical-Bayes rounds: EM (to
    ``refit_tol``) at the current hyperparameters, then ``refit(post, hyper)``, each
    round starting from the last one's posterior, until ``refit`` says the
    hyperparameters settled; the final EM starts from the last round's posterior at the
    last hyperparameters."""
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if refit is not None:
        post = init_post
        for _ in range(rounds):
            res = run_em(family, data, post, hyper, max_iter=max_iter, tol=refit_tol)
            post = res.post
            hyper, done = refit(post, hyper)
            if done:
                break
        init_post = post
    res = run_em(family, data, init_post, hyper, max_iter=max_iter, tol=tol, progress=progress)
    params = _unpad_tasks(family, res.params, data, init_post.shape[0])
    if res.confusion is not None:  # computed by the EM program (padded rows last)
        conf = res.confusion[: _real_workers(data)]
    else:  # jitted on the bucket's params (one program per bucket, not eager ops per shape)
        padded = res.padded_params if res.padded_params is not None else res.params
        conf = np.asarray(_confusion_jit(family, padded), np.float64)[: _real_workers(data)]
    return Posterior(
        params=params,
        hyper=hyper,
        proba=res.post,
        confusion=conf,
        class_prior=np.exp(np.asarray(params.log_pi, dtype=np.float64)),
        history=res.history,
        n_iter=res.n_iter,
        converged=res.converged,
    )


def nuts_posterior(family: Any, data: EMData, start: Posterior, **settings: Any) -> Posterior:
    """NUTS (:func:`nuts_draws`, with its ``settings``: ``num_warmup``, ``num_samples``,
    ``num_chains``, ``seed``, ``progress``) on ``family``'s posterior at ``start.hyper``,
    every chain started at the EM estimate ``start.params``; ``data`` on exact shapes.
    The posterior means, draws and summaries of the draws replace ``start``'s estimates
    (its ``params``, ``history``, ``n_iter``, ``converged`` stay EM's)."""
    hyper = start.hyper
    draws = nuts_draws(family, data, hyper, start.params, **settings)
    flat = _flat_sites(draws)
    C, D = next(iter(draws.values())).shape[:2]
    mean_post, task_lp, conf, log_pi = _summarise_jit(family, flat, data, hyper)
    proba = np.asarray(mean_post, dtype=np.float64).T
    proba = proba / proba.sum(axis=1, keepdims=True)
    conf_draws = np.asarray(conf)
    pi_draws = np.exp(np.asarray(log_pi, dtype=np.float64))
    chosen = jnp.asarray(np.argmax(proba, axis=1), jnp.int32)
    samples = Samples(
        draws=draws,
        confusion=conf_draws,
        class_prior=pi_draws,
        task_log_lik=np.asarray(task_lp).reshape(C, D, -1),
        chosen_prob=np.asarray(_chosen_draws_jit(family, flat, data, hyper, chosen)),
        convergence=check_convergence(draws),
    )
    return replace(
        start,
        proba=proba,
        confusion=conf_draws.mean(axis=0, dtype=np.float64),
        class_prior=pi_draws.mean(axis=0),
        samples=samples,
    )
