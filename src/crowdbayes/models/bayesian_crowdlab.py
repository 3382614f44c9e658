r"""A Bayesian CROWDLAB: the classifier is one more source, weighed by a learned temperature.

Generative story (task ``i``, annotator ``j``, ``K`` classes; ``p_i`` the classifier's
out-of-sample probabilities, floored at ``prob_floor``):

.. math::

    z_i &\sim \mathrm{Categorical}\bigl(\mathrm{softmax}_k(\beta \log p_{ik} + b_k)\bigr),
    \qquad \beta \sim \mathcal N(1, \sigma_\beta^2),\ b_k \sim \mathcal N(0, \sigma_b^2),\\
    \mu_k &\sim \mathrm{Dirichlet}(P_k), \qquad
    \theta_{jk} \sim \mathrm{Dirichlet}(s\,\mu_k), \qquad
    y_{ij} \mid z_i = k \sim \mathrm{Categorical}(\theta_{jk}).

``beta`` is the classifier's learned weight (an inverse temperature: 0 ignores it, 1 takes
its probabilities as they are, above 1 sharpens them) and ``b`` a class bias. Each
annotator's confusion matrix ``theta_j`` is shrunk towards the population's ``mu`` with
strength ``s`` (``pooling``), so annotators with few labels borrow from the others;
``P`` (``prior_strength``, ``prior_accuracy``) keeps the population better than chance.

EM (``inference=EM(...)``, the default) finds the MAP of this posterior in the log-ratio coordinates of the
simplexes (its objective is NumPyro's log density plus their log-Jacobian, up to a
constant): in each M-step ``mu`` by Newton steps with every annotator's rows profiled
out, ``beta, b`` by Newton steps on the class-prior regression (the per-task class prior
``[K, n_tasks]`` going through the generic EM engine).
Annotator accuracy intervals come from the Dirichlet posterior of each confusion row given
the expected counts; task uncertainty from the class posterior; the weight's interval from
a Laplace approximation (:meth:`BayesianCrowdLab.classifier_weight`).

``inference=NUTS(...)`` samples the whole posterior (``beta``, ``b``, ``mu``, every ``theta_j``)
with NumPyro's NUTS from the EM estimate. Its model (:func:`numpyro_model`) puts the priors
above in ``numpyro.sample`` statements and the EM engine's own per-task log-likelihood (the
true class marginalised by log-sum-exp, gold clamped) in one ``numpyro.factor``; credible
intervals for tasks, annotators and ``beta`` come from the draws, ``idata_`` is ArviZ's.

>>> import numpy as np, pandas as pd
>>> from crowdbayes.models.bayesian_crowdlab import BayesianCrowdLab
>>> wide = pd.DataFrame({"A": [0, 1, 2, 0, 1, 2], "B": [0, 1, 1, None, 1, 2],
...                      "C": [1, 1, 2, 0, None, 0]})
>>> probs = np.array([[.7, .2, .1], [.1, .8, .1], [.2, .3, .5], [.6, .3, .1],
...                   [.3, .4, .3], [.1, .1, .8]])
>>> bcl = BayesianCrowdLab().fit(wide, pred_probs=probs)
>>> bcl.predict().tolist()
[0, 1, 2, 0, 1, 2]
>>> round(bcl.classifier_weight_, 2) > 0
True
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from statistics import NormalDist
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.scipy.special import digamma, gammaln, logsumexp, polygamma

from ..base import AdversarialWarning, check_interval, check_is_fitted
from ..data import Annotations, _show_list
from ..inference.em import EMData
from .bayesian import (
    MIN_PSEUDO,
    BayesianAggregator,
    dirichlet_draws,
    marginal_model,
    vote_shares,
)
from .confusion import ConfusionModel, _expected_counts_jit, expected_counts
from .dawid_skene import confusion_pseudo_counts

__all__ = [
    "BCLHyper",
    "BCLParams",
    "BayesianCrowdLab",
    "BayesianCrowdLabModel",
    "numpyro_model",
]


class BCLParams(NamedTuple):
    log_confusion: jnp.ndarray  # [W, K, L]
    log_pi: jnp.ndarray  # [K]: class bias b (log-softmax normalised)
    beta: jnp.ndarray  # []: the classifier's weight (inverse temperature)
    log_mu: jnp.ndarray  # [K, L]: population confusion
    log_clf: jnp.ndarray  # [K, T]: floored log classifier probabilities (data, carried along)
    bias: jnp.ndarray  # [K]: the class bias b as its prior sees it (log_pi is it normalised)


class BCLHyper(NamedTuple):
    log_clf: jnp.ndarray  # [K, T]
    base_counts: jnp.ndarray  # [K, L] pseudo-counts on the population confusion
    pooling: jnp.ndarray  # []: s, pseudo-labels per confusion row drawn from mu
    beta_mean: jnp.ndarray
    beta_sd: jnp.ndarray
    bias_sd: jnp.ndarray


def _safe_log(x: jnp.ndarray) -> jnp.ndarray:
    return jnp.log(jnp.maximum(x, jnp.finfo(x.dtype).tiny))


def _prior_logits(beta: jnp.ndarray, bias: jnp.ndarray, log_clf: jnp.ndarray) -> jnp.ndarray:
    z = beta * log_clf + bias[:, None]
    return z - logsumexp(z, axis=0, keepdims=True)


def _fit_prior(post: jnp.ndarray, hyper: BCLHyper, n_newton: int = 16) -> tuple[Any, Any]:
    """MAP of (beta, b) given the class posterior: a concave multinomial logistic
    regression on the classifier's log-probabilities (features ``[l_ik, e_k]``), by
    Newton steps with the gradient and Hessian written out."""
    K = post.shape[0]
    lc = hyper.log_clf  # [K, T]
    eye = jnp.eye(K, dtype=post.dtype)

    def step(theta: jnp.ndarray, _: None) -> tuple[jnp.ndarray, None]:
        beta, bias = theta[0], theta[1:]
        p = jnp.exp(_prior_logits(beta, bias, lc))  # [K, T]
        r = post - p
        mean_l = (p * lc).sum(0)  # [T]
        g_beta = (r * lc).sum() - (beta - hyper.beta_mean) / hyper.beta_sd**2
        g_bias = r.sum(1) - bias / hyper.bias_sd**2
        dev = lc - mean_l[None, :]  # centred (stable in float32)
        h_bb = -(p * dev**2).sum() - 1.0 / hyper.beta_sd**2
        h_bk = -(p * dev).sum(1)  # [K]
        h_kk = -(jnp.diag(p.sum(1)) - p @ p.T) - eye / hyper.bias_sd**2
        h = jnp.block([[h_bb[None, None], h_bk[None, :]], [h_bk[:, None], h_kk]])
        g = jnp.concatenate([g_beta[None], g_bias])
        delta = jnp.linalg.solve(h, g)
        scale = jnp.minimum(1.0, 1.0 / jnp.maximum(jnp.abs(delta).max(), 1e-12))
        return theta - scale * delta, None  # steps of at most 1 (a trust region)

    theta0 = jnp.concatenate([jnp.ones((1,), post.dtype), jnp.zeros((K,), post.dtype)])
    theta, _ = jax.lax.scan(step, theta0, None, length=n_newton)
    return theta[0], theta[1:]


def _log_beta(alpha: jnp.ndarray) -> jnp.ndarray:
    """``log B(alpha)`` of each Dirichlet (last axis)."""
    return gammaln(alpha).sum(-1) - gammaln(alpha.sum(-1))


def _fit_mu(counts: jnp.ndarray, hyper: BCLHyper, n_newton: int = 24) -> jnp.ndarray:
    """``[K, L]``: the population confusion ``mu`` of the M-step, with each annotator's
    rows profiled out (their mode ``(counts + s mu) / (n + s)`` given ``mu``).

    Per true class the objective in ``mu`` is separable over the labels and concave
    (``sum_w (c_wl + s mu_l) log(c_wl + s mu_l) - W lgamma(s mu_l) + P_l log mu_l``, the
    second derivative ``s^2 sum_w 1 / (c_wl + s mu_l) - W s^2 psi'(s mu_l) - P_l / mu_l^2``
    is negative as ``psi'(x) > 1 / x``), so Newton steps on the simplex (the Lagrange
    multiplier in closed form for the diagonal Hessian) find its maximum; steps stop at
    nine tenths of the way to the simplex's boundary. Starts from the pooled counts."""
    s, P = hyper.pooling, hyper.base_counts
    W = counts.shape[0]
    n = counts.sum(-1, keepdims=True)  # [W, K, 1]
    pooled = counts.sum(0) + P
    mu0 = pooled / pooled.sum(-1, keepdims=True)

    def step(mu: jnp.ndarray, _: None) -> tuple[jnp.ndarray, None]:
        a = counts + s * mu[None]  # [W, K, L]
        g = s * jnp.log(a / (n + s)).sum(0) - W * s * digamma(s * mu) + P / mu
        h = s**2 * (1.0 / a).sum(0) - W * s**2 * polygamma(1, s * mu) - P / mu**2
        lam = (g / h).sum(-1, keepdims=True) / (1.0 / h).sum(-1, keepdims=True)
        delta = (lam - g) / h
        room = jnp.where(delta < 0, mu / jnp.maximum(-delta, 1e-30), jnp.inf).min(-1, keepdims=True)
        mu = mu + jnp.minimum(1.0, 0.9 * room) * delta
        return mu / mu.sum(-1, keepdims=True), None

    mu, _ = jax.lax.scan(step, mu0, None, length=n_newton)
    return mu


class BayesianCrowdLabModel:
    """Static EM functions of the Bayesian CROWDLAB (class-major arrays; the labels'
    likelihood and ``confusion`` are the confusion family's)."""

    __name__ = "BayesianCrowdLab"

    log_lik = staticmethod(ConfusionModel.log_lik)
    confusion = staticmethod(ConfusionModel.confusion)

    @staticmethod
    def log_class_prior(params: BCLParams, data: EMData) -> jnp.ndarray:
        return _prior_logits(params.beta, params.log_pi, params.log_clf)

    @staticmethod
    def m_step(post: jnp.ndarray, data: EMData, hyper: BCLHyper) -> BCLParams:
        L = hyper.base_counts.shape[1]
        W = data.by_worker_label.inverse.shape[0] // L
        counts = expected_counts(post, data, W)  # [W, K, L]
        mu = _fit_mu(counts, hyper)
        rows = counts + hyper.pooling * mu[None]
        conf = rows / rows.sum(-1, keepdims=True)
        beta, bias = _fit_prior(post, hyper)
        log_pi = bias - logsumexp(bias)
        return BCLParams(_safe_log(conf), log_pi, beta, _safe_log(mu), hyper.log_clf, bias)

    @staticmethod
    def log_prior(params: BCLParams, hyper: BCLHyper) -> jnp.ndarray:
        """The log prior density in log-ratio coordinates of the simplexes (up to a
        constant): the rows' ``Dirichlet(pooling * mu)`` with their ``mu``-dependent
        normaliser ``log B(pooling * mu)``, ``mu``'s ``Dirichlet(P)``, the weight's and
        the bias's normals; the M-step maximises it with the likelihood."""
        mu = jnp.exp(params.log_mu)
        alpha = hyper.pooling * mu  # [K, L]
        W = params.log_confusion.shape[0]
        conf_lp = (alpha[None] * params.log_confusion).sum() - W * _log_beta(alpha).sum()
        mu_lp = (hyper.base_counts * params.log_mu).sum()
        beta_lp = -0.5 * ((params.beta - hyper.beta_mean) / hyper.beta_sd) ** 2
        bias_lp = -0.5 * (params.bias**2).sum() / hyper.bias_sd**2
        return conf_lp + mu_lp + beta_lp + bias_lp

    # ---- NUTS and intervals (see models/bayesian.py)
    @staticmethod
    def sample_sites(data: EMData, hyper: BCLHyper) -> dict[str, jnp.ndarray]:
        """Priors: ``beta ~ N(beta_mean, beta_sd^2)``, ``bias[k] ~ N(0, bias_sd^2)``,
        ``mu[k] ~ Dirichlet(P_k)``, ``confusion[w, k] ~ Dirichlet(pooling * mu[k])`` (EM's
        estimate is the mode in log-ratio coordinates: the mean given the expected counts)."""
        import numpyro
        import numpyro.distributions as dist

        W = data.n_labels_per_worker.shape[0]
        K, L = hyper.base_counts.shape
        beta = numpyro.sample("beta", dist.Normal(hyper.beta_mean, hyper.beta_sd))
        bias = numpyro.sample("bias", dist.Normal(jnp.zeros(K), hyper.bias_sd).to_event(1))
        mu = numpyro.sample("mu", dist.Dirichlet(hyper.base_counts).to_event(1))
        # pooling is floored at MIN_PSEUDO, so every pseudo-count is > 0 (a proper prior)
        alpha = jnp.broadcast_to(hyper.pooling * mu, (W, K, L))
        conf = numpyro.sample("confusion", dist.Dirichlet(alpha).to_event(2))
        return {"beta": beta, "bias": bias, "mu": mu, "confusion": conf}

    @staticmethod
    def params_from_sites(sites: dict[str, jnp.ndarray], hyper: BCLHyper) -> BCLParams:
        bias = sites["bias"]
        return BCLParams(
            _safe_log(sites["confusion"]),
            bias - logsumexp(bias),
            sites["beta"],
            _safe_log(sites["mu"]),
            hyper.log_clf,
            bias,
        )

    @staticmethod
    def sites_from_params(params: BCLParams, hyper: BCLHyper) -> dict[str, jnp.ndarray]:
        return {
            "beta": params.beta,
            "bias": params.bias,
            "mu": jnp.exp(params.log_mu),
            "confusion": jnp.exp(params.log_confusion),
        }

    @staticmethod
    def mean_class_prior(params: BCLParams) -> jnp.ndarray:
        """``[K]``: the class prior averaged over tasks (the weights of annotator accuracy)."""
        return jnp.exp(_prior_logits(params.beta, params.log_pi, params.log_clf)).mean(axis=1)

    @staticmethod
    def em_draws(
        params: BCLParams,
        post: jnp.ndarray,
        data: EMData,
        hyper: BCLHyper,
        rng: np.random.Generator,
        n: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each confusion row from ``Dirichlet(counts + pooling * mu)`` (the expected counts
        at the EM estimate; centred on the fit); the mean class prior held at the estimate."""
        W = data.n_labels_per_worker.shape[0]
        counts = np.asarray(_expected_counts_jit(post, data, W), dtype=np.float64)
        alpha = counts + float(hyper.pooling) * np.exp(np.asarray(params.log_mu, np.float64))[None]
        conf = dirichlet_draws(alpha, rng, n)
        pi = np.asarray(_mean_class_prior_jit(params), dtype=np.float64)
        return conf, np.broadcast_to(pi, (n, pi.shape[0]))


_mean_class_prior_jit = jax.jit(BayesianCrowdLabModel.mean_class_prior)


def _draws_class_prior(sites: dict[str, jnp.ndarray], hyper: BCLHyper) -> jnp.ndarray:
    """``[S, K]``: the mean class prior of each draw (one draw at a time: no ``[S, K, T]``)."""

    def one(site: dict[str, jnp.ndarray]) -> jnp.ndarray:
        params = BayesianCrowdLabModel.params_from_sites(site, hyper)
        return BayesianCrowdLabModel.mean_class_prior(params)

    return jax.lax.map(one, sites)


def _weight_laplace(params: BCLParams, post: jnp.ndarray, hyper: BCLHyper) -> jnp.ndarray:
    """Laplace variance of ``beta`` in the class-prior regression given the class posterior
    (the M-step's concave objective, its Hessian in ``(beta, b)`` at the estimate)."""

    def objective(theta: jnp.ndarray) -> jnp.ndarray:
        beta, bias = theta[0], theta[1:]
        fit = (post * _prior_logits(beta, bias, hyper.log_clf)).sum()
        penalty = ((beta - hyper.beta_mean) / hyper.beta_sd) ** 2 + (
            bias**2
        ).sum() / hyper.bias_sd**2
        return fit - 0.5 * penalty

    theta = jnp.concatenate([params.beta[None], params.bias])
    cov = jnp.linalg.inv(-jax.hessian(objective)(theta))
    return cov[0, 0]


_draws_class_prior_jit = jax.jit(_draws_class_prior)
_weight_laplace_jit = jax.jit(_weight_laplace)


def numpyro_model(data: EMData, hyper: BCLHyper) -> None:
    """The Bayesian CROWDLAB as a NumPyro model: the priors of
    :meth:`BayesianCrowdLabModel.sample_sites`, then one ``factor`` with the EM engine's own
    per-task log-likelihood (true class marginalised by log-sum-exp, gold clamped).

    >>> import numpy as np, numpyro
    >>> import crowdbayes as cb
    >>> from crowdbayes.inference.em import em_data
    >>> ann = cb.as_annotations(cb.datasets.load("wsd")[0])
    >>> pp = np.full((ann.n_tasks, ann.n_classes), 1.0 / ann.n_classes)
    >>> hyper = BayesianCrowdLab()._hyper(ann.with_pred_probs(pp))
    >>> tr = numpyro.handlers.trace(numpyro.handlers.seed(numpyro_model, 0)).get_trace(
    ...     em_data(ann), hyper)
    >>> tr["confusion"]["value"].shape, tr["beta"]["value"].shape, tr["labels"]["type"]
    ((34, 3, 3), (), 'sample')
    """
    marginal_model(BayesianCrowdLabModel, data, hyper)


class BayesianCrowdLab(BayesianAggregator):
    """Consensus from annotators and a classifier, the classifier a learned source; by EM
    (MAP) or NUTS.

    Parameters
    ----------
    pooling : float, default 4.0
        Pseudo-labels per confusion row drawn from the population confusion ``mu``
        (larger: annotators look more alike).
    prior_strength, prior_accuracy : float, default 2.0, 0.7
        Pseudo-counts on the population confusion (``prior_accuracy`` on the diagonal).
    prob_floor : float, default 1e-3
        The classifier's probabilities are floored here (a 0 must not veto a class).
    beta_mean, beta_sd, bias_sd : float, default 1.0, 2.0, 2.0
        Normal priors on the classifier's weight (``beta ~ N(beta_mean, beta_sd^2)``) and
        the class bias (``b_k ~ N(0, bias_sd^2)``).
    max_iter, tol : EM iterations and tolerance (gain of the log-posterior per label).
    seed : int, default 0
        Seeds the draws behind EM's intervals (and NUTS with ``method="nuts"``).
    inference : ``crowdbayes.EM(...)`` or ``crowdbayes.NUTS(...)``, optional
        The engine and its settings (:mod:`crowdbayes.engines`). EM (the default) gives
        the MAP estimate (``mu`` included); ``NUTS(num_warmup, num_samples, num_chains,
        seed, progress)`` samples the full hierarchical posterior (``beta``, ``b``,
        ``mu``, every confusion matrix), its chains started at the EM estimate.
    method : {"em", "nuts"}, default "em"
        Deprecated: ``method="nuts"`` is ``inference=NUTS(...)`` (a ``FutureWarning`` at
        fit says what to write).
    num_warmup, num_samples, num_chains : int, default 1000, 1000, 4
        Deprecated, with ``method="nuts"``: ``NUTS``'s settings.
    progress : bool, default False
        Show a progress bar for EM (``NUTS(progress=True)``: for its chains).

    Attributes
    ----------
    proba_ : ndarray ``[T, K]`` class posterior (NUTS: averaged over draws).
    ``confusion_`` ``[W, K, K]``, ``population_confusion_`` ``[K, K]``, ``class_prior_`` ``[K]``
    (the class prior averaged over tasks), ``classifier_weight_`` (beta), ``class_bias_``
    ``[K]`` (EM: at the MAP; NUTS: posterior means), ``pred_probs_`` ``[T, K]`` (the aligned
    classifier probabilities), ``history_``, ``n_iter_``, ``converged_`` (EM; NUTS starts
    from it); with NUTS ``draws_`` (sites ``beta``, ``bias``, ``mu``, ``confusion``),
    ``convergence_`` and ``idata_``.
    """

    _family = BayesianCrowdLabModel
    _gibbs_sweeps = 0  # the classifier's term is part of the likelihood
    _site_dims: ClassVar[dict[str, list[str]]] = {
        "bias": ["class"],
        "mu": ["true", "given"],
        "confusion": ["worker", "true", "given"],
    }

    # parameters (the constructor takes these, then the engine parameters)
    pooling: float = 4.0
    prior_strength: float = 2.0
    prior_accuracy: float = 0.7
    prob_floor: float = 1e-3
    beta_mean: float = 1.0
    beta_sd: float = 2.0
    bias_sd: float = 2.0
    max_iter: int = 200
    tol: float = 1e-7
    _engine_parameters: ClassVar[tuple[str, ...]] = (
        "max_iter",
        "tol",
        "seed",
        "method",
        "num_warmup",
        "num_samples",
        "num_chains",
        "progress",
        "inference",
    )

    def _hyper(self, ann: Annotations) -> BCLHyper:
        pp = ann.require_pred_probs(type(self).__name__)
        if not 0.0 < self.prob_floor < 1.0:
            raise ValueError(f"prob_floor must be in (0, 1), got {self.prob_floor}")
        if self.pooling < 0 or self.prior_strength < 0:
            raise ValueError("pooling and prior_strength must be >= 0")
        if self.beta_sd <= 0 or self.bias_sd <= 0:
            raise ValueError("beta_sd and bias_sd must be > 0")
        K = ann.n_classes
        log_clf = np.log(np.maximum(pp / pp.sum(axis=1, keepdims=True), self.prob_floor))
        f32 = jnp.float32
        return BCLHyper(
            jnp.asarray(log_clf.T, f32),
            jnp.asarray(
                np.maximum(
                    confusion_pseudo_counts(K, self.prior_strength, self.prior_accuracy),
                    MIN_PSEUDO,
                ),
                f32,
            ),
            jnp.asarray(max(self.pooling, MIN_PSEUDO), f32),
            jnp.asarray(self.beta_mean, f32),
            jnp.asarray(self.beta_sd, f32),
            jnp.asarray(self.bias_sd, f32),
        )

    def _init_post(self, ann: Annotations) -> np.ndarray:
        """EM starts from the classifier and the votes together (gold clamped)."""
        pp = ann.require_pred_probs(type(self).__name__)
        init = vote_shares(ann) + pp / pp.sum(axis=1, keepdims=True)
        init /= init.sum(axis=1, keepdims=True)
        known = ann.gold >= 0
        init[known] = np.eye(ann.n_classes)[ann.gold[known]]
        return init

    _uses_pred_probs = True

    def _fit(self, ann: Annotations) -> None:
        """Fit to the annotations and the classifier's out-of-sample ``pred_probs`` they
        carry (aligned by ``fit(annotations, pred_probs=...)``: a DataFrame by task with the
        classes as columns, in any order; an array only with wide input); gold labels are
        clamped. An :class:`AdversarialWarning` says when the fit finds the annotators or
        the classifier worse than chance."""
        self.pred_probs_ = ann.require_pred_probs(type(self).__name__)
        super()._fit(ann)
        post = self.posterior_
        # accuracy weighs classes by the class prior averaged over tasks (EM and NUTS)
        if (samples := post.samples) is not None:
            pi = np.asarray(
                _draws_class_prior_jit(samples.flat_sites(), self._fitted_hyper()), np.float64
            )
            samples = replace(samples, class_prior=pi)
            post = replace(post, samples=samples, class_prior=pi.mean(axis=0))
        else:
            post = replace(
                post, class_prior=np.asarray(_mean_class_prior_jit(post.params), np.float64)
            )
        self.posterior_ = post
        self.class_prior_ = post.class_prior
        self.population_confusion_ = post.mean(
            "mu", lambda p: np.exp(np.asarray(p.log_mu, dtype=np.float64))
        )
        self.classifier_weight_ = float(post.mean("beta", lambda p: p.beta))
        self.class_bias_ = post.mean(
            "bias",
            lambda p: p.log_pi,
            of=lambda b: b - np.log(np.exp(b).sum(axis=-1, keepdims=True)),
        )
        _warn_if_adversarial(self)

    def classifier_weight(self, interval: float = 0.9) -> pd.Series:
        """The classifier's weight ``beta``: ``estimate`` (EM: MAP; NUTS: posterior mean),
        ``lower``/``upper`` (the ``interval`` bounds: NUTS from the draws; EM from the
        Laplace approximation of the class-prior regression given the class posterior,
        which leaves out the uncertainty of the posterior itself) and ``sd``."""
        check_interval(interval, "classifier_weight")
        check_is_fitted(self)
        if (samples := self.posterior_.samples) is not None:
            lo, hi = samples.interval("beta", interval)
            sd = float(samples.site("beta").std())
        else:
            if not 0.0 < interval < 1.0:
                raise ValueError(f"interval must be between 0 and 1, got {interval}")
            post = jnp.asarray(self.proba_.T, jnp.float32)
            sd = float(np.sqrt(_weight_laplace_jit(self.params_, post, self._fitted_hyper())))
            z = NormalDist().inv_cdf((1.0 + interval) / 2.0)
            lo, hi = self.classifier_weight_ - z * sd, self.classifier_weight_ + z * sd
        return pd.Series(
            {"estimate": self.classifier_weight_, "lower": lo, "upper": hi, "sd": sd},
            name="classifier_weight",
        )

    def label_quality(self) -> pd.DataFrame:
        """Per task, in CROWDLAB's terms: ``consensus_label``, ``consensus_quality_score``
        (the posterior probability of the consensus), ``annotator_agreement``,
        ``num_annotations``."""
        check_is_fitted(self)
        ann = self.annotations_
        c = self.label_codes_
        agree = (ann.label == c[ann.task]).astype(np.float64)
        n = ann.labels_per_task()
        return pd.DataFrame(
            {
                "consensus_label": ann.decode_labels(c),
                "consensus_quality_score": self.proba_[np.arange(len(c)), c],
                "annotator_agreement": np.bincount(ann.task, agree, ann.n_tasks) / n,
                "num_annotations": n,
            },
            index=ann.task_ids,
        )

    def annotator_quality(self, interval: float | None = 0.9, n_draws: int = 2000) -> pd.DataFrame:
        """Per annotator: ``accuracy`` (probability a label is right, under the class prior
        averaged over tasks) with ``interval`` bounds (``accuracy_lower``/``accuracy_upper``),
        per-class ``sensitivity[c]`` with bounds, ``n_labels`` and ``agreement`` with the
        consensus. NUTS: posterior means and bounds from the draws. EM: the MAP, bounds from
        ``n_draws`` draws (seeded by ``seed``) of each confusion row from
        ``Dirichlet(counts + pooling * mu)`` given the expected counts (centred on the fit)."""
        check_interval(interval, "annotator_quality")
        return super().annotator_quality(interval=interval, n_draws=n_draws)


def _warn_if_adversarial(bcl: BayesianCrowdLab) -> None:
    """Warn when the fit finds the annotators worse than chance (their accuracy under the
    population confusion more than 0.05 below ``1/K``: the classes have likely been turned
    around to follow a classifier whose columns are in the wrong order) or the classifier
    worse than chance (its weight below -0.5, its probabilities counted against the classes
    they favour, and the 99% upper bound below 0; a classifier that knows nothing has a
    weight near 0)."""
    K = bcl.annotations_.n_classes
    classes = _show_list(bcl.annotations_.classes)
    crowd = float(bcl.class_prior_ @ np.diag(bcl.population_confusion_))
    hint = (
        f"its pred_probs columns are likely not in the order of the classes {classes}; give "
        "pred_probs as a DataFrame whose columns are the class labels"
    )
    if crowd < 1.0 / K - 0.05:
        warnings.warn(
            f"BayesianCrowdLab: the fitted annotators are worse than chance (accuracy "
            f"{crowd:.2f} < 1/{K}) while the classifier's weight is "
            f"{bcl.classifier_weight_:.2f}: the classifier has likely turned the classes "
            f"around; {hint}",
            AdversarialWarning,
            stacklevel=4,  # the user's fit: _fit, Aggregator.fit
        )
    elif bcl.classifier_weight_ < -0.5 and bcl.classifier_weight(0.99)["upper"] < 0:
        warnings.warn(
            f"BayesianCrowdLab: the classifier is worse than chance (weight "
            f"{bcl.classifier_weight_:.2f}, 99% upper bound below 0): {hint}",
            AdversarialWarning,
            stacklevel=4,  # the user's fit: _fit, Aggregator.fit
        )
