r"""A Bayesian CROWDLAB: the classifier is one more source, weighed by a learned temperature.

Generative story (task ``i``, annotator ``j``, ``K`` classes; ``p_i`` the classifier's
out-of-sample probabilities, floored at ``prob_floor``):

.. math::

    z_i &\sim \mathrm{Categorical}\bigl(\mathrm{softmax}_k(\beta \log p_{ik} + b_k)\bigr),
    \qquad \beta \sim \mathcal N(1, \sigma_\beta^2),\ b_k \sim \mathcal N(0, \sigma_b^2),\\
    \mu_k &\sim \mathrm{Dirichlet}(1 + P_k), \qquad
    \theta_{jk} \sim \mathrm{Dirichlet}(1 + s\,\mu_k), \qquad
    y_{ij} \mid z_i = k \sim \mathrm{Categorical}(\theta_{jk}).

``beta`` is the classifier's learned weight (an inverse temperature: 0 ignores it, 1 takes
its probabilities as they are, above 1 sharpens them) and ``b`` a class bias. Each
annotator's confusion matrix ``theta_j`` is shrunk towards the population's ``mu`` with
strength ``s`` (``pooling``), so annotators with few labels borrow from the others;
``P`` (``prior_strength``, ``prior_accuracy``) keeps the population better than chance.

EM finds the MAP (``mu`` by empirical Bayes; ``beta, b`` by Newton steps in each M-step,
the per-task class prior ``[K, n_tasks]`` going through the generic EM engine). Annotator
accuracy intervals come from the Dirichlet posterior of each confusion row given the
expected counts; task uncertainty from the class posterior.

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

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.scipy.special import logsumexp

from ..base import Aggregator, check_is_fitted
from ..data import Annotations
from ..inference.em import EMData, em_data, run_em
from .crowdlab import PredProbsLike, align_pred_probs
from .dawid_skene import DawidSkeneModel, DSParams, confusion_pseudo_counts, vote_shares

__all__ = ["BCLHyper", "BCLParams", "BayesianCrowdLab", "BayesianCrowdLabModel"]


class BCLParams(NamedTuple):
    log_confusion: jnp.ndarray  # [W, K, L]
    log_pi: jnp.ndarray  # [K]: class bias b (log-softmax normalised)
    beta: jnp.ndarray  # []: the classifier's weight (inverse temperature)
    log_mu: jnp.ndarray  # [K, L]: population confusion
    log_clf: jnp.ndarray  # [K, T]: floored log classifier probabilities (data, carried along)


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


class BayesianCrowdLabModel:
    """Static EM functions of the Bayesian CROWDLAB (class-major arrays)."""

    __name__ = "BayesianCrowdLab"

    @staticmethod
    def log_lik(params: BCLParams, data: EMData) -> jnp.ndarray:
        return DawidSkeneModel.log_lik(DSParams(params.log_confusion, params.log_pi), data)

    @staticmethod
    def log_class_prior(params: BCLParams, data: EMData) -> jnp.ndarray:
        return _prior_logits(params.beta, params.log_pi, params.log_clf)

    @staticmethod
    def m_step(post: jnp.ndarray, data: EMData, hyper: BCLHyper) -> BCLParams:
        L = hyper.base_counts.shape[1]
        W = data.by_worker_label.inverse.shape[0] // L
        counts = DawidSkeneModel.expected_counts(post, data, W)  # [W, K, L]
        pooled = counts.sum(0) + hyper.base_counts
        mu = pooled / pooled.sum(-1, keepdims=True)
        rows = counts + hyper.pooling * mu[None]
        conf = rows / rows.sum(-1, keepdims=True)
        beta, bias = _fit_prior(post, hyper)
        bias = bias - logsumexp(bias)
        return BCLParams(_safe_log(conf), bias, beta, _safe_log(mu), hyper.log_clf)

    @staticmethod
    def log_prior(params: BCLParams, hyper: BCLHyper) -> jnp.ndarray:
        mu = jnp.exp(params.log_mu)
        conf_lp = (hyper.pooling * mu[None] * params.log_confusion).sum()
        mu_lp = (hyper.base_counts * params.log_mu).sum()
        beta_lp = -0.5 * ((params.beta - hyper.beta_mean) / hyper.beta_sd) ** 2
        return conf_lp + mu_lp + beta_lp


class BayesianCrowdLab(Aggregator):
    """Consensus from annotators and a classifier, the classifier a learned source.

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
        Normal priors on the classifier's weight and the class bias.
    max_iter, tol : EM iterations and tolerance (gain of the log-posterior per label).
    seed : int, default 0 (draws for intervals).

    Attributes
    ----------
    proba_ : ndarray ``[T, K]`` class posterior. ``confusion_`` ``[W, K, K]``,
    ``population_confusion_`` ``[K, K]``, ``class_prior_`` ``[K]`` (mean prior over tasks),
    ``classifier_weight_`` (beta), ``class_bias_`` ``[K]``, ``history_``, ``n_iter_``,
    ``converged_``.
    """

    def __init__(
        self,
        pooling: float = 4.0,
        prior_strength: float = 2.0,
        prior_accuracy: float = 0.7,
        prob_floor: float = 1e-3,
        beta_mean: float = 1.0,
        beta_sd: float = 2.0,
        bias_sd: float = 2.0,
        max_iter: int = 200,
        tol: float = 1e-7,
        seed: int = 0,
    ) -> None:
        self.pooling = pooling
        self.prior_strength = prior_strength
        self.prior_accuracy = prior_accuracy
        self.prob_floor = prob_floor
        self.beta_mean = beta_mean
        self.beta_sd = beta_sd
        self.bias_sd = bias_sd
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed

    def _hyper(self, ann: Annotations, pp: np.ndarray) -> BCLHyper:
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
            jnp.asarray(confusion_pseudo_counts(K, self.prior_strength, self.prior_accuracy), f32),
            jnp.asarray(self.pooling, f32),
            jnp.asarray(self.beta_mean, f32),
            jnp.asarray(self.beta_sd, f32),
            jnp.asarray(self.bias_sd, f32),
        )

    def fit(  # type: ignore[override]
        self,
        annotations: Annotations | pd.DataFrame | str,
        pred_probs: PredProbsLike | None = None,
        gold: Any = None,
        **columns: str,
    ) -> BayesianCrowdLab:
        """Fit to annotations (long or wide) and the classifier's out-of-sample
        ``pred_probs`` (DataFrame by task; an array only with wide input). ``gold``
        labels (task id -> label) are clamped."""
        ann, pp = align_pred_probs(annotations, pred_probs, **columns)
        if gold is not None:
            ann = ann.with_gold(gold)
        if int(self.max_iter) < 1:
            raise ValueError(f"max_iter must be >= 1, got {self.max_iter}")
        self.annotations_ = ann
        hyper = self._hyper(ann, pp)
        data = em_data(ann)
        # start from the classifier and the votes together
        init = vote_shares(ann) + pp / pp.sum(axis=1, keepdims=True)
        init /= init.sum(axis=1, keepdims=True)
        known = ann.gold >= 0
        init[known] = np.eye(ann.n_classes)[ann.gold[known]]
        res = run_em(
            BayesianCrowdLabModel,
            data,
            init,
            hyper,
            max_iter=int(self.max_iter),
            tol=float(self.tol),
        )
        p = res.params
        self.params_, self.hyper_ = p, hyper
        self.proba_ = res.post
        self.label_codes_ = np.argmax(res.post, axis=1)
        self.confusion_ = np.exp(np.asarray(p.log_confusion, dtype=np.float64))
        self.population_confusion_ = np.exp(np.asarray(p.log_mu, dtype=np.float64))
        prior = np.exp(np.asarray(BayesianCrowdLabModel.log_class_prior(p, data), np.float64))
        self.class_prior_ = prior.mean(axis=1)
        self.classifier_weight_ = float(p.beta)
        self.class_bias_ = np.asarray(p.log_pi, dtype=np.float64)
        self.history_, self.n_iter_, self.converged_ = res.history, res.n_iter, res.converged
        # expected counts for the intervals
        post = jnp.asarray(res.post.T, jnp.float32)
        self._counts = np.asarray(
            DawidSkeneModel.expected_counts(post, data, ann.n_workers), dtype=np.float64
        )
        return self

    def _fit(self, ann: Annotations) -> None:  # pragma: no cover - fit is overridden
        raise TypeError("BayesianCrowdLab.fit needs pred_probs")

    def fit_predict(  # type: ignore[override]
        self,
        annotations: Annotations | pd.DataFrame | str,
        pred_probs: PredProbsLike | None = None,
        **columns: str,
    ) -> pd.Series:
        """``fit`` then ``predict``."""
        return self.fit(annotations, pred_probs, **columns).predict()

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
        """Per annotator: ``accuracy`` (probability a label is right, under the mean class
        prior) with ``interval`` bounds (``accuracy_lower``/``accuracy_upper``, from the
        Dirichlet posterior of each confusion row given the expected counts, centred on
        the fit), ``n_labels``
        and ``agreement`` with the consensus."""
        check_is_fitted(self)
        ann = self.annotations_
        diag = np.diagonal(self.confusion_, axis1=1, axis2=2)
        out: dict[str, np.ndarray] = {"accuracy": diag @ self.class_prior_}
        if interval is not None:
            if not 0.0 < interval < 1.0:
                raise ValueError(f"interval must be between 0 and 1, got {interval}")
            # rows Dirichlet(counts + s mu): their mean is the fitted confusion matrix
            alpha = self._counts + float(self.pooling) * self.population_confusion_[None]
            a = np.diagonal(alpha, axis1=1, axis2=2)  # [W, K]
            b = alpha.sum(axis=2) - a
            rng = np.random.default_rng(self.seed)
            draws = rng.beta(a, b, size=(int(n_draws), *a.shape)) @ self.class_prior_  # [S, W]
            q = [(1.0 - interval) / 2.0, (1.0 + interval) / 2.0]
            out["accuracy_lower"], out["accuracy_upper"] = np.quantile(draws, q, axis=0)
        out["n_labels"] = ann.labels_per_worker()
        out["agreement"] = self._agreement_with_consensus()
        return pd.DataFrame(out, index=ann.worker_ids)
