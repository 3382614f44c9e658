"""NUTS for any crowdbayes model family, with convergence checks and ArviZ output.

A family's NumPyro model (its ``log_lik`` inside a ``numpyro.factor``, the true
class marginalised by log-sum-exp) is sampled by :func:`run_nuts`: several
chains, vectorised by default (one batched program, which on one device beats
running them one after another), from an explicit ``seed``. :func:`check_convergence`
warns with a :class:`ConvergenceWarning` that names every parameter whose split
R-hat exceeds 1.01 or whose effective sample size is below 100 per chain.
:func:`to_inference_data` builds ArviZ ``InferenceData`` (ArviZ is imported only
there) with a per-task ``log_likelihood`` group, so ``az.loo`` and ``az.waic`` work.

>>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
>>> def model(y):
...     mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
>>> draws = run_nuts(model, jnp.array([0.9, 1.1, 1.0]), num_warmup=200, num_samples=200,
...                  num_chains=2, seed=0)
>>> draws["mu"].shape
(2, 200)
>>> bool(abs(draws["mu"].mean() - 1.0) < 0.3)
True
>>> convergence_table(draws).loc["mu", "r_hat"] < 1.05
np.True_
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

__all__ = [
    "ConvergenceWarning",
    "check_convergence",
    "convergence_table",
    "run_nuts",
    "run_nuts_potential",
    "to_inference_data",
]

RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100


class ConvergenceWarning(UserWarning):
    """NUTS draws that should not be trusted yet (high R-hat, low ESS, label switching)."""


def run_nuts(
    model: Callable[..., Any],
    *args: Any,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    seed: int = 0,
    chain_method: str = "vectorized",
    progress: bool = False,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    init_values: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, np.ndarray]:
    """Sample ``model(*args, **kwargs)`` with NUTS; return draws ``{site: [chains, draws, ...]}``.

    ``chain_method`` is ``"vectorized"`` (default: all chains in one batched
    program) or ``"sequential"``; ``"parallel"`` needs one device per chain.
    ``init_values`` (constrained site values) starts every chain there (for example at
    the EM estimate); by default chains start at random points near the prior's centre.
    """
    from numpyro.infer import MCMC, NUTS, init_to_uniform, init_to_value

    if num_chains < 1 or num_samples < 1 or num_warmup < 0:
        raise ValueError("num_chains and num_samples must be >= 1 and num_warmup >= 0")
    if chain_method not in ("vectorized", "sequential", "parallel"):
        raise ValueError(
            f"chain_method must be 'vectorized', 'sequential' or 'parallel', got {chain_method!r}"
        )
    if chain_method == "parallel" and jax.local_device_count() < num_chains:
        chain_method = "vectorized"  # numpyro would fall back to sequential with a warning
    init = init_to_uniform if init_values is None else init_to_value(values=dict(init_values))
    kernel = NUTS(
        model,
        target_accept_prob=target_accept_prob,
        max_tree_depth=max_tree_depth,
        init_strategy=init,
    )
    mcmc = MCMC(
        kernel,
        num_warmup=int(num_warmup),
        num_samples=int(num_samples),
        num_chains=int(num_chains),
        chain_method=chain_method,
        progress_bar=bool(progress),
    )
    key = jax.random.PRNGKey(int(seed))
    mcmc.run(key, *args, **kwargs)
    samples = mcmc.get_samples(group_by_chain=True)
    return {k: np.asarray(v) for k, v in samples.items()}


def _sample_chains(
    potential: Callable[..., jnp.ndarray],
    keys: jnp.ndarray,
    init_params: Any,
    args: tuple[Any, ...],
    num_warmup: int,
    num_samples: int,
    target_accept_prob: float,
    max_tree_depth: int,
    chain_method: str,
    progress: bool = False,
) -> tuple[Any, jnp.ndarray]:
    """All chains (one per key; vmapped, or one after another by ``lax.map``) from
    ``init_params``: warm-up, then draws of the unconstrained parameters and the number
    of leapfrog steps of each draw. ``progress`` ticks :data:`_PROGRESS`'s bar once per
    step of the loop (a host callback; the draws are the same)."""
    from numpyro.infer.hmc import hmc

    def chain(key: jnp.ndarray) -> tuple[Any, jnp.ndarray]:
        init_kernel, sample_kernel = hmc(potential_fn=lambda z: potential(z, *args), algo="NUTS")
        state = init_kernel(
            init_params,
            num_warmup,
            target_accept_prob=target_accept_prob,
            max_tree_depth=max_tree_depth,
            rng_key=key,
        )

        def draw(s: Any, i: Any) -> tuple[Any, tuple[Any, jnp.ndarray]]:
            s = sample_kernel(s)
            if progress:
                jax.debug.callback(_tick, i)
            return s, (s.z, s.num_steps)

        # one loop over warm-up and draws: the kernel is traced and compiled once
        n = num_warmup + num_samples
        steps = jnp.arange(n) if progress else None
        out = jax.lax.scan(draw, state, steps, length=n)[1]
        return jax.tree_util.tree_map(lambda x: x[num_warmup:], out)

    if chain_method == "vectorized":
        return jax.vmap(chain)(keys)
    return jax.lax.map(chain, keys)


_sample_chains_jit = jax.jit(
    _sample_chains,
    static_argnames=(
        "potential",
        "num_warmup",
        "num_samples",
        "target_accept_prob",
        "max_tree_depth",
        "chain_method",
        "progress",
    ),
)

#: The progress bars of the NUTS runs under way (innermost last), ticked by :func:`_tick`.
_PROGRESS: list[Any] = []


def _tick(step: Any) -> None:
    if _PROGRESS:
        _PROGRESS[-1].update(1)


def run_nuts_potential(
    potential: Callable[..., jnp.ndarray],
    init_params: Any,
    *args: Any,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    seed: int = 0,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    chain_method: str = "sequential",
    progress: bool = False,
) -> tuple[Any, np.ndarray]:
    """NUTS on ``potential(z, *args)`` (minus the log density of unconstrained ``z``, a
    pytree), every chain started at ``init_params``: numpyro's NUTS kernel with its
    step-size and diagonal mass adaptation, all chains in one jitted program (compiled
    once per ``potential``, shapes and settings; ``potential`` must be a module-level
    function). ``chain_method="sequential"`` (default) runs the chains one after another
    inside that program (``lax.map``): on the CPU it traces and compiles faster than
    ``"vectorized"`` (``vmap``), whose tree building runs every chain as long as the
    longest one. Returns draws of ``z`` (leaves ``[chains, draws, ...]``) and the leapfrog
    steps of each draw ``[chains, draws]``. ``progress`` shows a progress bar (tqdm, as
    numpyro's ``progress_bar``) of the warm-up and draws of every chain; the draws do not
    depend on it (the program with the bar is compiled on its own).

    >>> def potential(z, y):
    ...     return 0.5 * ((z - y) ** 2).sum() + 0.005 * (z**2).sum()
    >>> z, steps = run_nuts_potential(potential, jnp.zeros(2), jnp.array([1.0, -1.0]),
    ...                               num_warmup=200, num_samples=300, num_chains=2)
    >>> z.shape, np.round(z.mean(axis=(0, 1)), 0).tolist()
    ((2, 300, 2), [1.0, -1.0])
    """
    if num_chains < 1 or num_samples < 1 or num_warmup < 0:
        raise ValueError("num_chains and num_samples must be >= 1 and num_warmup >= 0")
    if chain_method not in ("vectorized", "sequential"):
        raise ValueError(f"chain_method must be 'vectorized' or 'sequential', got {chain_method!r}")
    keys = jax.random.split(jax.random.PRNGKey(int(seed)), int(num_chains))
    kwargs: dict[str, Any] = {}
    if progress:
        from tqdm.auto import tqdm

        kwargs["progress"] = True
        per_chain = int(num_warmup) + int(num_samples)
        chains = int(num_chains) if chain_method == "sequential" else 1
        desc = f"NUTS {int(num_chains)} chain(s) x ({int(num_warmup)} warm-up + {int(num_samples)})"
        _PROGRESS.append(tqdm(total=per_chain * chains, desc=desc, unit="step"))
    try:
        z, steps = _sample_chains_jit(
            potential,
            keys,
            init_params,
            tuple(args),
            num_warmup=int(num_warmup),
            num_samples=int(num_samples),
            target_accept_prob=float(target_accept_prob),
            max_tree_depth=int(max_tree_depth),
            chain_method=chain_method,
            **kwargs,
        )
        out = jax.tree_util.tree_map(np.asarray, z), np.asarray(steps)
    finally:
        if progress:
            jax.effects_barrier()  # every tick has landed
            _PROGRESS.pop().close()
    return out


def convergence_table(draws: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Per site: the largest split R-hat and the smallest effective sample size over its
    elements (numpyro's estimators; draws are ``[chains, draws, ...]``)."""
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    rows = {}
    for name, x in draws.items():
        x = np.asarray(x, dtype=np.float64)
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        varying = flat.std(axis=(0, 1)) > 0
        if not varying.any():
            rows[name] = (1.0, float(x.shape[0] * x.shape[1]), int(flat.shape[-1]))
            continue
        flat = flat[..., varying]
        with np.errstate(divide="ignore", invalid="ignore"):
            rhat = np.asarray(split_gelman_rubin(flat)) if x.shape[1] >= 4 else np.full(1, np.inf)
            ess = np.asarray(effective_sample_size(flat))
        rows[name] = (float(np.nanmax(rhat)), float(np.nanmin(ess)), int(flat.shape[-1]))
    return pd.DataFrame.from_dict(
        rows, orient="index", columns=["r_hat", "ess", "size"]
    ).rename_axis("parameter")


def check_convergence(
    draws: Mapping[str, np.ndarray],
    *,
    rhat_max: float = RHAT_MAX,
    ess_per_chain_min: float = ESS_PER_CHAIN_MIN,
    warn: bool = True,
) -> pd.DataFrame:
    """Warn (:class:`ConvergenceWarning`) naming the sites with R-hat above ``rhat_max``
    or ESS below ``ess_per_chain_min`` per chain; return :func:`convergence_table`."""
    table = convergence_table(draws)
    n_chains = next(iter(draws.values())).shape[0]
    bad_rhat = table.index[table["r_hat"] > rhat_max].tolist() if n_chains > 1 else []
    bad_ess = table.index[table["ess"] < ess_per_chain_min * n_chains].tolist()
    if warn and (bad_rhat or bad_ess):
        parts = []
        if bad_rhat:
            worst = ", ".join(f"{n} ({table.loc[n, 'r_hat']:.3f})" for n in bad_rhat)
            parts.append(f"R-hat above {rhat_max}: {worst}")
        if bad_ess:
            worst = ", ".join(f"{n} ({table.loc[n, 'ess']:.0f})" for n in bad_ess)
            parts.append(f"effective sample size below {ess_per_chain_min:g} per chain: {worst}")
        warnings.warn(
            "NUTS has not converged well: "
            + "; ".join(parts)
            + ". Run more warm-up/draws (num_warmup, num_samples) or check the model.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return table


def to_inference_data(
    draws: Mapping[str, np.ndarray],
    log_likelihood: np.ndarray | None = None,
    *,
    coords: Mapping[str, Any] | None = None,
    dims: Mapping[str, list[str]] | None = None,
    observed_name: str = "labels",
) -> Any:
    """ArviZ ``InferenceData`` from draws ``[chains, draws, ...]`` and, optionally, the
    per-task log-likelihood ``[chains, draws, n_tasks]`` (dimension ``task``)."""
    import arviz as az

    dims = dict(dims or {})
    ll = None
    if log_likelihood is not None:
        ll = {observed_name: np.asarray(log_likelihood)}
        dims[observed_name] = ["task"]
    return az.from_dict(
        posterior={k: np.asarray(v) for k, v in draws.items()},
        log_likelihood=ll,
        coords=dict(coords or {}),
        dims=dims,
    )
