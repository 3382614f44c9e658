"""NUTS for Dawid–Skene on ``rte``: crowdbayes against the same model written plainly.

The plain version is what one would write by hand in NumPyro: a Dirichlet confusion
matrix per annotator, one ``factor`` with log-sum-exp over classes (per-label log
probabilities gathered and summed per task with ``jax.ops.segment_sum``), chains run one
after another. crowdbayes samples the same posterior (same priors, same data) through its
segment-sum likelihood (its gradient summed by the per-annotator layout of the M-step
rather than by autodiff's scatter): on log-ratio coordinates of each simplex (softmax with one
logit pinned; a Dirichlet there is ``prod p**alpha``, smooth and log-concave) instead of
numpyro's stick-breaking, all chains one after another inside one jitted program
(numpyro's NUTS kernel and adaptation), started at the EM estimate. Both wall times
include compilation.

Prints wall time, minimum bulk ESS and maximum R-hat (ArviZ, over every parameter) for
both, and the ratio of ESS per second.

    .venv/bin/python benchmarks/nuts_speed.py [--warmup 1000] [--samples 1000] [--chains 4]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import arviz as az  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from jax.scipy.special import logsumexp  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402

import crowdbayes as cb  # noqa: E402
from crowdbayes.inference.nuts import ConvergenceWarning  # noqa: E402
from crowdbayes.models.dawid_skene import DawidSkene, confusion_pseudo_counts  # noqa: E402


def plain_model(task, worker, label, n_tasks, n_workers, alpha, class_alpha):
    K = alpha.shape[0]
    conf = numpyro.sample(
        "confusion", dist.Dirichlet(jnp.broadcast_to(alpha, (n_workers, K, K))).to_event(2)
    )
    pi = numpyro.sample("pi", dist.Dirichlet(class_alpha))
    log_p = jnp.log(conf[worker, :, label])  # [n_labels, K]
    per_task = jax.ops.segment_sum(log_p, task, num_segments=n_tasks)  # [T, K]
    numpyro.factor("labels", logsumexp(per_task + jnp.log(pi), axis=1).sum())


def diagnostics(posterior: dict[str, np.ndarray]) -> tuple[float, float]:
    idata = az.from_dict(posterior={k: v for k, v in posterior.items() if k in ("confusion", "pi")})
    ess = az.ess(idata, method="bulk")
    rhat = az.rhat(idata)
    min_ess = min(float(np.nanmin(ess[v].values)) for v in ess.data_vars)
    max_rhat = max(float(np.nanmax(rhat[v].values)) for v in rhat.data_vars)
    return min_ess, max_rhat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    df, _ = cb.datasets.load("rte")
    ann = cb.as_annotations(df)
    K = ann.n_classes
    alpha = jnp.asarray(confusion_pseudo_counts(K, 2.0, 0.7) + 1.0, jnp.float32)
    class_alpha = jnp.full((K,), 2.0, jnp.float32)

    t0 = time.perf_counter()
    mcmc = MCMC(
        NUTS(plain_model),
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(
        jax.random.PRNGKey(args.seed),
        jnp.asarray(ann.task),
        jnp.asarray(ann.worker),
        jnp.asarray(ann.label),
        ann.n_tasks,
        ann.n_workers,
        alpha,
        class_alpha,
    )
    plain = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    t_plain = time.perf_counter() - t0
    ess_plain, rhat_plain = diagnostics(plain)

    t0 = time.perf_counter()
    model = DawidSkene(
        inference=cb.NUTS(
            num_warmup=args.warmup,
            num_samples=args.samples,
            num_chains=args.chains,
            seed=args.seed,
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(ann)
    t_ours = time.perf_counter() - t0
    assert model.draws_ is not None
    ess_ours, rhat_ours = diagnostics(model.draws_)

    print(
        f"rte: {ann.n_tasks} tasks, {ann.n_workers} annotators, {ann.n_labels} labels; "
        f"{args.chains} chains x ({args.warmup} warm-up + {args.samples} draws)"
    )
    print(f"{'':28s}{'wall s':>9s}{'min bulk ESS':>14s}{'max R-hat':>11s}{'ESS/s':>9s}")
    for name, t, e, r in (
        ("plain NumPyro (sequential)", t_plain, ess_plain, rhat_plain),
        ("crowdbayes DawidSkene", t_ours, ess_ours, rhat_ours),
    ):
        print(f"{name:28s}{t:9.1f}{e:14.0f}{r:11.4f}{e / t:9.1f}")
    print(f"ESS/s ratio (crowdbayes / plain): {(ess_ours / t_ours) / (ess_plain / t_plain):.2f}x")


if __name__ == "__main__":
    main()
