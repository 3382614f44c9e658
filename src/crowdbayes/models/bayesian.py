"""The public base of every Bayesian annotator model: one estimator base, EM or NUTS.

A model family is a class of static functions. For EM it follows
:class:`~crowdbayes.inference.em.EMModel` (``log_lik``, ``log_class_prior``,
``m_step``, ``log_prior``); for NUTS and for intervals it adds

- ``sample_sites(data, hyper) -> dict``: the ``numpyro.sample`` statements (priors;
  :func:`sample_priors` samples independent ones and the class prior);
- ``params_from_sites(sites, hyper) -> params``: the same params pytree EM uses
  (with a ``log_pi`` field), so NUTS goes through the very same ``log_lik``;
- ``sites_from_params(params, hyper) -> dict``: constrained site values (NUTS starts
  its chains at the EM estimate, which also keeps them off label-switched modes);
- ``confusion(params) -> [W, K, L]``: each annotator's (typical) confusion matrix;
- ``em_draws(params, post, data, hyper, rng, n) -> (confusion [n, W, K, L], pi [n, K])``:
  draws from the approximate posterior around the EM estimate, for intervals.

:class:`BayesianAggregator` fits a family through its engine (``EM(...).run`` or
``NUTS(...).run``, :mod:`crowdbayes.engines`) and keeps the
:class:`~crowdbayes.inference.posterior.Posterior` it returns as ``posterior_``, which
its outputs read. The NumPyro model of any family (``marginal_model``: the true class
marginalised inside the same ``e_step`` EM uses, so the two engines share one
likelihood), ``nuts_draws`` and the ``Reparametrised`` Protocol (a family's own NUTS
coordinates) live in :mod:`crowdbayes.inference.posterior` and are re-exported here.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any, ClassVar, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..base import Aggregator, check_interval, check_is_fitted
from ..data import Annotations
from ..engines import EM, NUTS, engine_settings, warn_deprecated
from ..inference.em import (
    EMData,
    EMModel,
    _e_step_jit,
    em_data,
    is_bucketed,
    pad_to,
    posterior,
)
from ..inference.nuts import ConvergenceWarning, to_inference_data
from ..inference.posterior import (
    Posterior,
    Refit,
    Reparametrised,
    em_objective,
    interval_bounds,
    marginal_model,
    nuts_draws,
)
from .confusion import ConfusionModel, ConfusionParams

__all__ = [
    "MIN_PSEUDO",
    "BayesianAggregator",
    "BayesianFamily",
    "BetaPrior",
    "ClassPrior",
    "Reparametrised",
    "beta_draws",
    "categorical_draws",
    "confusion_posterior",
    "dirichlet_draws",
    "em_objective",
    "interval_bounds",
    "marginal_model",
    "nuts_draws",
    "pseudo_counts",
    "quality_frame",
    "safe_log",
    "shortest_levels",
    "vote_shares",
]


@runtime_checkable
class BayesianFamily(EMModel, Protocol):
    """What a family of a :class:`BayesianAggregator` provides (static functions; params
    are pytrees): EM's part (:class:`~crowdbayes.inference.em.EMModel`: ``log_lik``,
    ``log_class_prior``, ``m_step``, ``log_prior``) and the Bayesian part below. NumPyro's
    density of ``sample_sites`` (classes marginalised, :func:`marginal_model`) is EM's
    objective up to a constant, in the same params (``tests/test_contract.py`` holds every
    registered family to both). A family with cheaper coordinates of its own for NUTS also
    implements :class:`Reparametrised`. Optional declarations (class attributes):
    ``per_label = True`` for terms per label (the data carry ``by_task_label``) and
    ``task_params``, the params fields with a row per task (cut back to the real tasks
    after a sharded fit)."""

    @staticmethod
    def sample_sites(data: EMData, hyper: Any) -> dict[str, jnp.ndarray]:
        """The model's parameters as NumPyro sample sites (inside :func:`marginal_model`)."""
        ...

    @staticmethod
    def params_from_sites(sites: dict[str, jnp.ndarray], hyper: Any) -> Any:
        """EM's params from one draw of the sites."""
        ...

    @staticmethod
    def sites_from_params(params: Any, hyper: Any) -> dict[str, jnp.ndarray]:
        """The sites of EM's params (NUTS starts there); inverts ``params_from_sites``."""
        ...

    @staticmethod
    def confusion(params: Any) -> jnp.ndarray:
        """``[W, K, L]``: each annotator's probability of each label given each class."""
        ...

    @staticmethod
    def em_draws(
        params: Any, post: jnp.ndarray, data: EMData, hyper: Any, rng: np.random.Generator, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` draws of the confusions ``[n, W, K, L]`` and class prior ``[n, K]`` given
        the classes ``post`` (one imputation): EM's intervals."""
        ...


METHODS = ("em", "nuts")
#: Imputations of the tasks' classes behind EM's annotator intervals.
IMPUTATIONS = 50
#: The smallest Dirichlet/Beta pseudo-count: keeps every prior proper (a strength of 0
#: is then nearly maximum likelihood).
MIN_PSEUDO = 1e-2
#: Pseudo-labels per annotator in the default priors of the annotator models (spread
#: over the ``K`` rows of a confusion matrix where there is one per true class): weak
#: enough that a good annotator with 20 labels is not pulled far toward the prior mean.
#: Chosen on simulated crowds (``benchmarks/coverage_crowds.py``; 2 and 3 to 6 per row
#: were tried), not on the real datasets, where it changes accuracy by at most 0.3 points.
PRIOR_LABELS = 4.0


# ----------------------------------------------------------------- the model
def sample_priors(hyper: Any, **priors: Any) -> dict[str, jnp.ndarray]:
    """``sample_sites`` of a family whose priors are independent: each of ``priors``
    (site name -> NumPyro distribution) sampled under its name, in order, then the
    class prior ``pi ~ Dirichlet(hyper.class_counts)``."""
    import numpyro
    import numpyro.distributions as dist

    priors["pi"] = dist.Dirichlet(hyper.class_counts)
    return {name: numpyro.sample(name, prior) for name, prior in priors.items()}


# ------------------------------------------ the pieces families are written from
def safe_log(x: jnp.ndarray) -> jnp.ndarray:
    """``log x`` with ``x`` floored at its dtype's smallest normal number (a probability
    site's value can underflow to 0)."""
    return jnp.log(jnp.maximum(x, jnp.finfo(x.dtype).tiny))


def pseudo_counts(n: int, strength: float) -> jax.Array:
    """``[n]`` float32 Dirichlet pseudo-counts, each ``strength`` floored at
    :data:`MIN_PSEUDO` (``np.full`` then one transfer: ``jnp.full`` would compile a
    program per ``n`` in a fresh process)."""
    return jax.device_put(np.full((n,), max(strength, MIN_PSEUDO), np.float32))


class BetaPrior:
    """A probability with a ``Beta(a, b)`` prior, as the families write it: EM holds its
    log-odds, NUTS samples the probability (a Beta site), EM's intervals draw it from
    the Beta given the counts (:func:`beta_draws`)."""

    @staticmethod
    def hyper(strength: float, mean: float) -> tuple[jax.Array, jax.Array]:
        """``(a, b) = (strength * mean, strength * (1 - mean))``, each at least
        :data:`MIN_PSEUDO`, float32 scalars (numpy, then one transfer each: eager jnp
        calls would compile a small program per value in a fresh process)."""
        put = jax.device_put
        return (
            put(np.float32(max(strength * mean, MIN_PSEUDO))),
            put(np.float32(max(strength * (1.0 - mean), MIN_PSEUDO))),
        )

    @staticmethod
    def logit(p: Any) -> jnp.ndarray:
        """``log p - log(1 - p)``: the probability's EM coordinate."""
        return jnp.log(p) - jnp.log1p(-p)

    @staticmethod
    def from_site(p: jnp.ndarray) -> jnp.ndarray:
        """The log-odds of a Beta site's value, clipped to ``[1e-7, 1 - 1e-7]`` first (a
        draw can round to 0 or 1 in float32)."""
        return BetaPrior.logit(jnp.clip(p, 1e-7, 1 - 1e-7))

    @staticmethod
    def log_prior(x: jnp.ndarray, a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
        """``Beta(a, b)``'s log density in log-odds coordinates ``x``, elementwise (up to
        a constant): ``a log p + b log(1 - p)``, ``p = sigmoid(x)``; its mode is the
        Beta's mean given the counts, EM's M-step."""
        return a * jax.nn.log_sigmoid(x) + b * jax.nn.log_sigmoid(-x)


class ClassPrior:
    """The class prior the annotator families compose: ``pi ~ Dirichlet(c)`` (``c``,
    ``hyper.class_counts``, from :meth:`counts`), held as ``params.log_pi`` ``[K]``, one
    for every task. A family inherits its ``log_class_prior`` from here."""

    counts = staticmethod(pseudo_counts)

    @staticmethod
    def log_class_prior(params: Any, data: EMData) -> jnp.ndarray:
        return params.log_pi[:, None]

    @staticmethod
    def log_shares(post: jnp.ndarray, class_counts: jnp.ndarray) -> jnp.ndarray:
        """The M-step of ``log pi``: the log of the Dirichlet posterior's mean given the tasks'
        posterior ``post [K, T]`` (the mode in softmax coordinates)."""
        counts = post.sum(1) + class_counts
        return jnp.log(counts / counts.sum())

    @staticmethod
    def draws(
        post: jnp.ndarray, class_counts: jnp.ndarray, rng: np.random.Generator, n: int
    ) -> np.ndarray:
        """``[n, K]`` draws from the Dirichlet posterior given ``post`` (EM's intervals)."""
        return dirichlet_draws(np.asarray(post.sum(1) + class_counts, np.float64), rng, n)


def vote_shares(ann: Annotations) -> np.ndarray:
    """Majority-vote shares ``[n_tasks, K]`` with gold tasks clamped (EM's starting point)."""
    votes = ann.vote_counts().astype(np.float64)
    shares = votes / votes.sum(axis=1, keepdims=True)
    known = ann.gold >= 0
    shares[known] = np.eye(ann.n_classes)[ann.gold[known]]
    return shares


# ------------------------------------------------------- draws of the posterior
def dirichlet_draws(alpha: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` Dirichlet draws (last axis is the simplex), vectorised, float32.

    >>> rng = np.random.default_rng(0)
    >>> d = dirichlet_draws(np.array([[30.0, 10.0]]), rng, 4000)
    >>> d.shape, round(float(d[:, 0, 0].mean()), 2)
    ((4000, 1, 2), 0.75)
    """
    g = rng.standard_gamma(np.broadcast_to(alpha, (n, *np.shape(alpha))), dtype=np.float32)
    g = np.maximum(g, np.finfo(np.float32).tiny)
    return g / g.sum(axis=-1, keepdims=True)


def beta_draws(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` Beta(a, b) draws, shape ``[n, *a.shape]`` (via gamma draws, float32)."""
    ab = np.stack(np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float)), axis=-1)
    return dirichlet_draws(ab, rng, n)[..., 0]


def shortest_levels(draws: np.ndarray, interval: float) -> np.ndarray:
    """Per column of ``draws [S, W]``: the quantile levels ``[2, W]`` (lower, upper) of
    its shortest interval holding ``interval`` of the draws (highest posterior density
    for a unimodal posterior). At a boundary where the posterior piles up, the shortest
    interval starts at the boundary (level 0), where an equal-tailed one never reaches.

    >>> x = np.linspace(0, 1, 101) ** 3  # piled up at 0; 1 - x piles up at 1
    >>> shortest_levels(np.c_[x, 1 - x], 0.9)
    array([[0. , 0.1],
           [0.9, 1. ]])
    """
    x = np.sort(np.asarray(draws, np.float64), axis=0)
    S = x.shape[0]
    m = min(max(int(np.ceil(interval * S)), 1), S)
    start = (x[m - 1 :] - x[: S - m + 1]).argmin(axis=0)
    return np.stack([start, start + m - 1]) / max(S - 1, 1)


def quality_frame(
    conf_draws: np.ndarray,
    pi_draws: np.ndarray,
    point_conf: np.ndarray,
    point_pi: np.ndarray,
    interval: float | None,
    ann: Annotations,
    levels: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per annotator: accuracy (probability a label is right under the class prior) and
    per-class sensitivity (``p(label k | class k)``), with ``interval`` bounds from draws
    ``[S, W, K, L]`` / ``[S, K]``; columns ``accuracy``, ``accuracy_lower``,
    ``accuracy_upper``, ``sensitivity[c]`` (+ ``_lower``/``_upper``), ``n_labels``.
    ``levels [2, W]``: each annotator's quantile levels for the accuracy bounds
    (equal-tailed without)."""
    W = ann.n_workers
    sens = np.diagonal(point_conf, axis1=-2, axis2=-1)[:W]  # [W, K]
    cols: dict[str, np.ndarray] = {"accuracy": sens @ point_pi}
    sens_d = acc_d = None
    if interval is not None:
        sens_d = np.diagonal(conf_draws, axis1=-2, axis2=-1)[:, :W]  # [S, W, K]
        acc_d = np.einsum("swk,sk->sw", sens_d, pi_draws)
        if levels is None:
            lo, hi = interval_bounds(acc_d, interval)
        else:
            srt = np.sort(acc_d.astype(np.float64), axis=0)
            at = np.rint(np.asarray(levels) * (srt.shape[0] - 1)).astype(np.int64)
            lo, hi = srt[at[0], np.arange(W)], srt[at[1], np.arange(W)]
        cols["accuracy_lower"], cols["accuracy_upper"] = lo, hi
    for k, c in enumerate(ann.classes):
        cols[f"sensitivity[{c}]"] = sens[:, k]
        if sens_d is not None and interval is not None:
            lo, hi = interval_bounds(sens_d[..., k], interval)
            cols[f"sensitivity[{c}]_lower"], cols[f"sensitivity[{c}]_upper"] = lo, hi
    cols["n_labels"] = ann.labels_per_worker()
    return pd.DataFrame(cols, index=ann.worker_ids)


def categorical_draws(weights: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """``[n, R]``: ``n`` draws of a column index from each row of nonnegative ``weights
    [R, C]`` (inverse CDF, every row in one ``searchsorted``: row ``r``'s CDF shifted by
    ``r`` is increasing)."""
    R, C = weights.shape
    cdf = np.cumsum(weights, axis=1, dtype=np.float64)
    cdf /= cdf[:, -1:]
    shift = np.arange(R, dtype=np.float64)
    flat = (np.minimum(cdf, 1.0) + shift[:, None]).ravel()
    cell = np.searchsorted(flat, rng.random((n, R)) + shift) - np.arange(R) * C
    return np.clip(cell, 0, C - 1)


def _impute(proba: np.ndarray, rng: np.random.Generator) -> jax.Array:
    """One class per task drawn from ``proba [T, K]``, one-hot class-major ``[K, T]``."""
    T, K = proba.shape
    hard = np.zeros((K, T), np.float32)
    hard[categorical_draws(proba, rng, 1)[0], np.arange(T)] = 1.0
    return jnp.asarray(hard)


def confusion_posterior(conf: np.ndarray, pi: np.ndarray, data: EMData) -> np.ndarray:
    """The class posterior ``[n_tasks, K]`` of ``data`` given confusions ``conf [W, K, L]``
    and a class prior ``pi [K]`` (zeros floored at float32's tiny)."""
    tiny = np.finfo(np.float32).tiny
    params = ConfusionParams(
        jnp.asarray(np.log(np.maximum(conf, tiny)), jnp.float32),
        jnp.asarray(np.log(np.maximum(pi, tiny)), jnp.float32),
    )
    return posterior(ConfusionModel, params, data)


def _bucket_free(hyper: Any, ann: Annotations, data: EMData, axes: set[int]) -> bool:
    """Whether hyperparameters fit every dataset of a shape bucket: each array is a
    scalar or has only axes of the lengths ``axes`` (the family's own, not padded: the
    classes, or EBCC's sub-types), or is a bucketed layout; and no such length is the
    task or annotator count, padded or not (an axis is known by its length alone when
    the padding is cut off, :func:`~crowdbayes.inference.em.padding_log_prior`)."""
    from ..inference.segments import FlatSegments

    counts = (ann.n_tasks, ann.n_workers, data.gold.shape[0], data.n_labels_per_worker.shape[0])
    if set(axes) & set(counts):
        return False
    leaves = jax.tree_util.tree_leaves(hyper, is_leaf=lambda x: isinstance(x, FlatSegments))
    return all(isinstance(x, FlatSegments) or all(n in axes for n in np.shape(x)) for x in leaves)


# ----------------------------------------------------------------- estimator
#: The engine parameters of the Bayesian estimators (declared on
#: :class:`BayesianAggregator`), in three groups: the method and NUTS's settings, EM's,
#: and where and by what the fit runs.
NUTS_PARAMETERS = ("method", "num_warmup", "num_samples", "num_chains", "seed")
EM_PARAMETERS = ("max_iter", "tol", "progress")
RUN_PARAMETERS = ("devices", "inference")


class BayesianAggregator(Aggregator):
    """Base of the Bayesian annotator models: fit by EM (MAP) or NUTS (not used directly).

    Subclasses set ``_family``, implement ``_hyper(ann)`` and declare their own
    parameters (annotated class attributes with defaults, see
    :class:`~crowdbayes.base.Aggregator`); their constructors then take the engine
    parameters declared here, those named in ``_engine_parameters`` (all of them, in
    this order, unless a subclass names others): ``method``, ``num_warmup``,
    ``num_samples``, ``num_chains`` (deprecated for ``inference=NUTS(...)``: the fit
    warns, :func:`~crowdbayes.engines.warn_deprecated`), ``seed``, ``max_iter``, ``tol``,
    ``progress`` (a progress bar of EM's iterations), ``devices`` (a count or a list of
    JAX devices to shard the EM fit's labels across, :mod:`crowdbayes.inference.sharding`;
    NUTS ignores it) and ``inference`` (an engine object, ``EM(...)`` or ``NUTS(...)``,
    that stands for the others, :mod:`crowdbayes.engines`).

    Fitted attributes: ``proba_``; ``params_`` (EM estimate; NUTS starts from it);
    ``confusion_`` ``[W, K, K]`` and ``class_prior_`` (EM: MAP; NUTS: posterior mean);
    ``history_``, ``n_iter_``, ``converged_`` (EM); with NUTS ``draws_`` (site ->
    ``[chains, draws, ...]``), ``convergence_`` (R-hat, ESS per site) and ``idata_``;
    ``posterior_``, the :class:`~crowdbayes.inference.posterior.Posterior` the engine
    returned (``hyper`` None after a sharded or bucketed fit), which these are read from
    (an estimator may report more: ``recommended()``'s ``proba_`` is its re-tempered
    posterior, EM's in ``em_proba_``).
    """

    #: Gibbs sweeps per imputation behind EM's intervals (:meth:`_em_interval_draws`);
    #: 0 where the confusions are not the whole likelihood (item-level parameters, a
    #: classifier's term) or the family's draws ignore the classes (Laplace).
    _gibbs_sweeps: ClassVar[int] = 2

    _family: ClassVar[Any]
    _site_dims: ClassVar[dict[str, list[str]]] = {}

    posterior_: Posterior

    # the engine parameters: declarations and defaults
    method: str = "em"
    num_warmup: int = 1000
    num_samples: int = 1000
    num_chains: int = 4
    seed: int = 0
    max_iter: int = 100
    tol: float = 1e-6
    progress: bool = False
    devices: Any = None
    inference: Any = None
    _engine_parameters: ClassVar[tuple[str, ...]] = NUTS_PARAMETERS + EM_PARAMETERS + RUN_PARAMETERS

    # -------------------------------------------------------------- hooks
    def _hyper(self, ann: Annotations) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _em_data(self, ann: Annotations, devices: Any = None) -> EMData:
        # a family with terms per label declares it (``per_label``, as ItemDifficulty)
        return em_data(
            ann, per_label=bool(getattr(self._family, "per_label", False)), devices=devices
        )

    #: EM fits of up to ``BUCKET_MAX_LABELS`` labels run on shape-bucketed data (see
    #: :mod:`crowdbayes.inference.em`); False fits every shape exactly.
    _buckets: ClassVar[bool] = True

    def _bucket_axes(self, ann: Annotations) -> set[int]:
        """The lengths of the axes of this family's hyperparameters and params that
        padding leaves alone (the classes; a family with other axes names them): a
        bucketed fit needs them apart from the padded task and annotator counts."""
        return {ann.n_classes}

    def _fit_devices(self) -> Any:
        """Where this fit's data go, as its engine places them
        (:meth:`~crowdbayes.engines.EM.placement`): EM's ``devices`` (sharded), else one
        device, padded to a shape bucket (``BUCKETS``) up to ``BUCKET_MAX_LABELS`` labels
        unless ``_buckets`` is False; NUTS on one device, exact shapes (None)."""
        ann = getattr(self, "annotations_", None)  # fit() sets it before _fit
        return self._placement(self._engine(), 0 if ann is None else ann.n_labels)

    #: ``(n_labels, n_tasks, n_workers)`` set on the folds' clones by
    #: :func:`~crowdbayes.compare`: an EM fit that would run on exact shapes (a family
    #: without shape buckets, or above ``BUCKET_MAX_LABELS``) pads to these instead, so
    #: that every fold of a dataset runs one compiled program
    _pad_to: tuple[int, int, int] | None = None

    def _placement(self, engine: EM | NUTS, n_labels: int) -> Any:
        """Where this fit's data go: the engine's placement (:meth:`EM.placement`), or
        :func:`~crowdbayes.inference.em.pad_to` ``_pad_to`` for a one-device EM fit
        of exact shapes."""
        devices = engine.placement(n_labels, self._buckets)
        if devices is None and self._pad_to is not None and isinstance(engine, EM):
            return pad_to(*self._pad_to)
        return devices

    def _init_post(self, ann: Annotations) -> np.ndarray:
        return vote_shares(ann)

    def _sharded_hyper(self, ann: Annotations, data: EMData) -> Any:
        """The hyperparameters for an EM fit on sharded or shape-bucketed ``data``:
        ``_hyper(ann)`` unless they hold per-label layouts, which must follow ``data``'s
        label layout (and are then built for that layout only, e.g. by
        :func:`~crowdbayes.inference.em.layout_segments`)."""
        return self._hyper(ann)

    def _engine(self) -> EM | NUTS:
        """The engine this fit runs: the estimator's ``inference`` or one built from its
        own parameters (:func:`~crowdbayes.engines.engine_settings`)."""
        settings = engine_settings(self)
        if settings["method"] == "em":
            return EM(
                max_iter=int(settings["max_iter"]),
                tol=float(settings["tol"]),
                progress=bool(settings["progress"]),
                devices=settings["devices"],
            )
        return NUTS(
            num_warmup=int(settings["num_warmup"]),
            num_samples=int(settings["num_samples"]),
            num_chains=int(settings["num_chains"]),
            seed=int(settings["seed"]),
            progress=bool(settings["progress"]),
        )

    def _start(self) -> EM:
        """The EM that finds the estimate NUTS starts from (the estimator's own
        ``max_iter`` and ``tol``; no progress bar)."""
        settings = engine_settings(self)
        return EM(max_iter=int(settings["max_iter"]), tol=float(settings["tol"]))

    def _refit(self, ann: Annotations, data: EMData) -> Refit | None:
        """An empirical-Bayes update of the hyperparameters between EM runs on ``data``
        (see :func:`~crowdbayes.inference.posterior.em_posterior`), or None (the
        default: the hyperparameters are the estimator's)."""
        return None

    # ---------------------------------------------------------------- fit
    def _fit(self, ann: Annotations) -> None:
        settings = engine_settings(self)  # inference=EM(...)/NUTS(...) or the parameters
        method = settings["method"]
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        warn_deprecated(self)  # method="nuts", num_chains=...: write inference=NUTS(...)
        family = self._family
        engine = self._engine()  # its run checks max_iter
        devices = self._placement(engine, ann.n_labels)
        data = self._em_data(ann, devices)
        laid_out = devices is not None or is_bucketed(data)  # sharded or bucketed
        hyper = self._sharded_hyper(ann, data) if laid_out else self._hyper(ann)
        if is_bucketed(data) and not _bucket_free(hyper, ann, data, self._bucket_axes(ann)):
            # hyperparameters per task or label (no padding for them): exact shapes
            data = self._em_data(ann, None)
            laid_out = is_bucketed(data)
            hyper = self._sharded_hyper(ann, data) if laid_out else self._hyper(ann)
        refit = self._refit(ann, data)
        if isinstance(engine, NUTS):
            post = engine.run(
                family, data, hyper, self._init_post(ann), em=self._start(), refit=refit
            )
        else:
            post = engine.run(family, data, hyper, self._init_post(ann), refit=refit)
        # sharded and bucketed layouts serve this fit only: later uses rebuild exact
        # one-device ones (_data, _fitted_hyper), so a fit never holds both at once (nor
        # pickles a sharded layout's devices)
        if laid_out:
            post = replace(post, hyper=None)
        self.data_: EMData | None = None if laid_out else data
        self.hyper_: Any = post.hyper
        self.posterior_ = post
        self.params_ = post.params
        self.history_ = post.history
        self.n_iter_ = post.n_iter
        self.converged_ = post.converged
        self.draws_: dict[str, np.ndarray] | None = post.draws
        self.proba_ = post.proba
        self.confusion_ = post.confusion
        self.class_prior_ = post.class_prior
        if post.samples is not None:
            self.convergence_ = post.samples.convergence
            self._idata = None
            self._check_label_switching(ann.n_classes)
        self.label_codes_ = np.argmax(self.proba_, axis=1)

    def _check_label_switching(self, n_classes: int) -> None:
        samples = self.posterior_.require_samples()
        n_chains = next(iter(samples.draws.values())).shape[0]
        sens = np.diagonal(samples.confusion, axis1=-2, axis2=-1)  # [S, W, K]
        acc = np.einsum("swk,sk->sw", sens, samples.class_prior).mean(axis=1)  # [S]
        per_chain = acc.reshape(n_chains, -1).mean(axis=1)
        switched = np.flatnonzero(per_chain < 1.0 / n_classes)
        if switched.size:
            warnings.warn(
                f"NUTS chain(s) {switched.tolist()} have mean annotator accuracy below chance "
                f"({np.round(per_chain[switched], 3).tolist()} < 1/{n_classes}): their class "
                "labels have likely switched. Use a stronger prior_accuracy or more data.",
                ConvergenceWarning,
                stacklevel=3,
            )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("data_", None)  # layouts are rebuilt on demand; keep pickles small
        state.pop("_idata", None)
        return state

    def _data(self) -> EMData:
        data = getattr(self, "data_", None)
        if data is None:
            data = self._em_data(self.annotations_)
            self.data_ = data
        return data

    def _fitted_hyper(self) -> Any:
        """The fit's hyperparameters for the one-device layout of :meth:`_data` (built on
        first use after a sharded fit)."""
        hyper = getattr(self, "hyper_", None)
        if hyper is None:
            hyper = self._hyper(self.annotations_)
            self.hyper_ = hyper
        return hyper

    # ------------------------------------------------------------ outputs
    @property
    def idata_(self) -> Any:
        """The NUTS posterior as ArviZ ``InferenceData`` (with per-task ``log_likelihood``
        and the derived annotator ``accuracy``); only after a fit by NUTS
        (``inference=NUTS(...)``)."""
        check_is_fitted(self)
        samples = self.posterior_.samples
        if samples is None:
            raise AttributeError("idata_ exists only after fitting with inference=NUTS(...)")
        if getattr(self, "_idata", None) is None:
            ann = self.annotations_
            C, D = samples.task_log_lik.shape[:2]
            sens = np.diagonal(samples.confusion, axis1=-2, axis2=-1)
            acc = np.einsum("swk,sk->sw", sens, samples.class_prior).reshape(C, D, -1)
            posterior = dict(samples.draws)
            posterior["accuracy"] = acc
            dims = {k: v for k, v in self._site_dims.items() if k in posterior}
            dims["accuracy"] = ["worker"]
            coords = {
                "task": np.asarray(ann.task_ids.astype(str)),
                "worker": np.asarray(ann.worker_ids.astype(str)),
                "class": np.asarray(ann.classes.astype(str)),
                "true": np.asarray(ann.classes.astype(str)),
                "given": np.asarray(ann.classes.astype(str)),
            }
            self._idata = to_inference_data(
                posterior, samples.task_log_lik, coords=coords, dims=dims
            )
        return self._idata

    def log_likelihood(self) -> pd.Series:
        """Per task: log p(labels of the task | params) with the class marginalised
        (EM: at the MAP; NUTS: the log of the posterior-mean likelihood)."""
        check_is_fitted(self)
        if (samples := self.posterior_.samples) is not None:
            task_ll = samples.task_log_lik
            ll = task_ll.reshape(-1, task_ll.shape[-1]).astype(np.float64)
            m = ll.max(axis=0)
            values = m + np.log(np.exp(ll - m).mean(axis=0))
        else:
            data = self._data()._replace(task_temperature=None)  # the likelihood, untempered
            _, task_lp = _e_step_jit(self._family, self.params_, data)
            values = np.asarray(task_lp, dtype=np.float64)
        return pd.Series(values, index=self.annotations_.task_ids, name="log_likelihood")

    def task_uncertainty(self, interval: float = 0.9) -> pd.DataFrame:
        """Per task: chosen label, its probability, entropy (nats), number of labels, gold
        flag; with NUTS also ``probability_lower``/``probability_upper``, the ``interval``
        credible bounds of the chosen label's probability."""
        check_interval(interval, "task_uncertainty")
        out = super().task_uncertainty()
        if (samples := self.posterior_.samples) is not None:
            lo, hi = interval_bounds(samples.chosen_prob, interval)
            out["probability_lower"], out["probability_upper"] = lo, hi
        return out

    def annotator_quality(self, interval: float | None = 0.9, n_draws: int = 1000) -> pd.DataFrame:
        """Per annotator: ``accuracy`` (EM: at its estimate; NUTS: posterior mean) with
        ``interval`` bounds, per-class ``sensitivity[c]`` with bounds, ``n_labels`` and
        ``agreement`` with the consensus. NUTS bounds come from the draws; EM bounds from
        ``n_draws`` draws (seeded by ``seed``) of the model's approximate posterior around
        the EM estimate (for Dirichlet/Beta families: given the labels and the tasks'
        classes imputed from their posterior, see :meth:`_em_interval_draws`).
        ``interval=None`` skips the bounds."""
        check_interval(interval, "annotator_quality")
        check_is_fitted(self)
        ann = self.annotations_
        if (samples := self.posterior_.samples) is not None:
            conf_d, pi_d = samples.confusion, samples.class_prior
        elif interval is not None:
            conf_d, pi_d = self._em_interval_draws(int(n_draws))
        else:
            conf_d = pi_d = np.zeros(0)
        comp = None if interval is None else self._competence_draws(conf_d)
        levels = None if comp is None or interval is None else shortest_levels(comp, interval)
        out = quality_frame(
            conf_d, pi_d, self.confusion_, self.class_prior_, interval, ann, levels=levels
        )
        out["agreement"] = self._agreement_with_consensus()
        return out

    def _competence_draws(self, conf_draws: np.ndarray) -> np.ndarray | None:
        """Draws ``[S, W]`` of a quality with a boundary that the model's accuracy is
        monotone in (MACE's competence: 0 is a spammer), or None. Where given,
        ``annotator_quality``'s accuracy bounds sit at the quantile levels of this
        quantity's shortest interval instead of equal tails, so that an interval can
        reach the boundary (see :func:`shortest_levels`)."""
        return None

    def _em_interval_draws(self, n_draws: int) -> tuple[np.ndarray, np.ndarray]:
        """Draws of the confusions ``[n, W, K, L]`` and class prior ``[n, K]`` behind EM's
        intervals: the family's posterior given the labels and the tasks' classes
        (``em_draws``), averaged over classes imputed from the task posterior.

        Given expected counts alone, the intervals would treat every task's class as
        known up to its posterior weights and come out too narrow where tasks are
        uncertain (the missing information); drawing each imputation's classes from
        ``proba_`` and the parameters given them (data augmentation from the EM
        estimate) adds that share of the variance. Where the confusions and class prior
        are the whole likelihood (``_gibbs_sweeps`` > 0), each imputation then runs that
        many more Gibbs sweeps (parameters given the classes, classes given the drawn
        parameters), so the other annotators' uncertainty reaches the classes too.
        Seeded by ``seed``."""
        rng = np.random.default_rng(self.seed)
        data, hyper = self._data(), self._fitted_hyper()
        # the posterior EM's estimate came from (a tempered fit reports another one)
        proba = np.asarray(getattr(self, "em_proba_", self.proba_), np.float64)
        n_imp = int(min(n_draws, IMPUTATIONS))
        sizes = np.full(n_imp, n_draws // n_imp)
        sizes[: n_draws % n_imp] += 1
        conf_parts, pi_parts = [], []
        for size in sizes:
            hard = _impute(proba, rng)
            for _ in range(int(self._gibbs_sweeps)):
                conf, pi = self._family.em_draws(self.params_, hard, data, hyper, rng, 1)
                hard = _impute(
                    confusion_posterior(np.asarray(conf)[0], np.asarray(pi)[0], data), rng
                )
            conf, pi = self._family.em_draws(self.params_, hard, data, hyper, rng, int(size))
            conf_parts.append(np.asarray(conf))
            pi_parts.append(np.asarray(pi))
        return np.concatenate(conf_parts), np.concatenate(pi_parts)

    def confusion_matrix(self, worker: Any) -> pd.DataFrame:
        """The fitted confusion matrix of one annotator: rows true class, columns label given."""
        check_is_fitted(self)
        ann = self.annotations_
        pos = ann.worker_ids.get_indexer([worker])[0]
        if pos < 0:
            raise KeyError(f"annotator {worker!r} is not in the fitted data")
        return pd.DataFrame(
            self.confusion_[pos],
            index=pd.Index(ann.classes, name="true"),
            columns=pd.Index(ann.classes, name="given"),
        )

    def _predict_proba_new(self, ann: Annotations) -> np.ndarray:
        """Score new tasks with each annotator's fitted (typical) confusion matrix; new
        annotators get the average confusion matrix."""
        W = ann.n_workers  # known workers first, then new ones
        conf = self.confusion_
        n_new = W - conf.shape[0]
        if n_new > 0:
            conf = np.concatenate([conf, np.repeat(conf.mean(axis=0, keepdims=True), n_new, 0)])
        return confusion_posterior(conf, self.class_prior_, em_data(ann, n_workers=W))
