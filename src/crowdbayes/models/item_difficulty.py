r"""Item difficulty: logistic random effects for annotators' ability and items' difficulty.

Generative story (``K`` classes, annotator ``j``, task ``i``):

.. math::

    a_j \sim \mathcal{N}(\mathrm{logit}\, \kappa,\; s_a^2), \qquad
    d_i \sim \mathcal{N}(0, s_d^2), \qquad
    \pi \sim \mathrm{Dirichlet}(c), \qquad z_i \sim \mathrm{Categorical}(\pi), \\
    p(y_{ij} = l \mid z_i = k) = \frac{1 + (K - 1)\, \sigma(a_j - d_i)}{K}
    \text{ if } l = k, \text{ else } \frac{1 - \sigma(a_j - d_i)}{K}.

Annotator ``j`` knows the answer to item ``i`` with probability ``sigma(a_j - d_i)``
and otherwise guesses uniformly among the ``K`` classes (the GLAD idea of Whitehill et
al. 2009 of abilities and difficulties, in the additive logistic form of the
item-difficulty models Paun et al. 2018 compare, with MACE's guessing). A hard item
brings its labels down to chance, never below it: with ``p(right) = sigma(a_j - d_i)``
itself, as this model had before, a large difficulty made every label of an item
probably wrong, a second explanation of each item with its class flipped (a
per-item label switch) that NUTS visited (posterior-mean labels 0.84 on ``rte``
against EM's 0.91, difficulties' R-hat 1.9). ``kappa`` makes the typical annotator
right with probability ``q = prior_accuracy = (1 + (K - 1) kappa) / K`` on the typical
item; ``s_a = ability_scale`` (default ``pi / sqrt(3)``: near-flat on that accuracy),
``s_d = difficulty_scale`` (default 1). ``annotator_quality`` reports each annotator's accuracy on an item of typical
difficulty (``d = 0``), ``(1 + (K - 1) sigma(a_j)) / K``; ``difficulty_`` holds the
items' difficulties.

EM's M-step is a logistic regression of knowing the answer with soft targets (the
posterior probability that a label is right times that of knowing given right),
solved by alternating Newton steps on abilities and difficulties; EM intervals come
from the Laplace approximation of each ability (observed information: the uncertainty
about which labels are right included).

>>> import crowdbayes as cb
>>> df, gold = cb.datasets.load("rte")
>>> m = ItemDifficulty().fit(df)
>>> round(float((m.predict().loc[gold.index] == gold).mean()), 2)
0.93
>>> m.difficulty_.shape
(800,)
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..base import check_is_fitted
from ..data import Annotations
from ..inference.em import EMData, layout_segments
from ..inference.segments import Segments
from .bayesian import (
    BayesianAggregator,
    ClassPrior,
    safe_log,
    sample_priors,
)

__all__ = ["ABILITY_SCALE", "IDHyper", "IDParams", "ItemDifficulty", "ItemDifficultyModel"]

_NEWTON_STEPS = 15
_MAX_STEP = 3.0
#: Default prior standard deviation of the abilities: ``pi / sqrt(3)``, that of the logit of
#: a probability of knowing drawn uniformly (a standard logistic), so the prior is close to
#: flat on a typical item's accuracy over ``[1/K, 1]``. With 1.0 (the old default) the
#: prior pulled good annotators down and spammers up: on ``simulate_population`` crowds
#: (seed 100, K = 2/3/5) EM's 90% intervals covered 0.80/0.88/0.91 (one-coin), 0.53/0.70/0.80
#: (spammers' good annotators) and 0.73/0.89/0.91 (skewed activity); with this width
#: 0.94/0.92/0.94, 0.91/0.93/0.93 and 0.95/0.95/0.94, mean accuracy on the 16 shared
#: datasets with gold unchanged (0.8303, 0.8304 with 1.0).
ABILITY_SCALE = float(np.pi / np.sqrt(3.0))


class IDParams(NamedTuple):
    ability: jnp.ndarray  # [W] logit of knowing the answer to a typical item
    difficulty: jnp.ndarray  # [T]
    log_pi: jnp.ndarray  # [K]


class IDHyper(NamedTuple):
    ability_mean: jnp.ndarray  # [] logit of knowing the answer at prior_accuracy
    ability_scale: jnp.ndarray  # []
    difficulty_scale: jnp.ndarray  # []
    class_counts: jnp.ndarray  # [K] Dirichlet(class_counts) prior on the class shares
    by_worker: Segments  # sums per-label values per annotator


def _logit(params: IDParams, data: EMData) -> jnp.ndarray:
    """``[n_labels]``: logit of each annotator knowing the answer to the labelled item."""
    return params.ability[data.worker] - params.difficulty[data.task]


def _log_right_wrong(x: jnp.ndarray, n_classes: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Log-probability of a label being right and of each one wrong label, given the logit
    ``x`` of knowing the answer (``s = sigmoid(x)``): ``(1 + (K - 1) s) / K`` and
    ``(1 - s) / K`` (who does not know guesses uniformly): never below chance."""
    log_k = jnp.log(float(n_classes))
    right = jnp.logaddexp(0.0, jnp.log(n_classes - 1.0) + jax.nn.log_sigmoid(x)) - log_k
    return right, jax.nn.log_sigmoid(-x) - log_k


def _knows_if_right(s: jnp.ndarray, n_classes: int) -> jnp.ndarray:
    """``p(knows | label right) = K s / (1 + (K - 1) s)``; also the derivative of the
    log-odds of right against wrong in the logit of knowing."""
    return n_classes * s / (1.0 + (n_classes - 1.0) * s)


def _per_task(data: EMData, values: jnp.ndarray) -> jnp.ndarray:
    assert data.by_task_label is not None
    return data.by_task_label.sum(values[None, :])[0]


def _newton(right: jnp.ndarray, data: EMData, hyper: IDHyper) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Abilities and difficulties maximising the expected complete-data log posterior given
    each label's probability of being right ``right [n_labels]``.

    Each step is a Newton step of a logistic regression whose soft targets are the
    probability that the annotator knew the answer (``right * p(knows | right)`` at the
    current abilities and difficulties: the EM minoriser of the guessing likelihood, whose
    gradient equals the likelihood's), so its fixed point is a stationary point of the
    expected log posterior itself."""
    W = data.n_labels_per_worker.shape[0]
    K = hyper.class_counts.shape[0]
    T = data.gold.shape[0]
    dtype = right.dtype
    prec_a = 1.0 / hyper.ability_scale**2
    prec_d = 1.0 / hyper.difficulty_scale**2

    def curvature(a: jnp.ndarray, d: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        s = jax.nn.sigmoid(a[data.worker] - d[data.task])
        return right * _knows_if_right(s, K) - s, s * (1.0 - s)

    def step(_: int, carry: tuple[jnp.ndarray, jnp.ndarray]) -> tuple[jnp.ndarray, jnp.ndarray]:
        a, d = carry
        g, h = curvature(a, d)
        g_a = hyper.by_worker.sum(g[None, :])[0] - (a - hyper.ability_mean) * prec_a
        h_a = hyper.by_worker.sum(h[None, :])[0] + prec_a
        a = a + jnp.clip(g_a / h_a, -_MAX_STEP, _MAX_STEP)
        g, h = curvature(a, d)
        g_d = -_per_task(data, g) - d * prec_d
        h_d = _per_task(data, h) + prec_d
        d = d + jnp.clip(g_d / h_d, -_MAX_STEP, _MAX_STEP)
        if data.task_mask is not None:  # padding tasks (sharded) stay at 0: no prior term
            d = d * data.task_mask
        return a, d

    a0 = jnp.full((W,), hyper.ability_mean, dtype)
    return jax.lax.fori_loop(0, _NEWTON_STEPS, step, (a0, jnp.zeros((T,), dtype)))


def _right(post: jnp.ndarray, data: EMData) -> jnp.ndarray:
    return post[data.label, data.task]


def _laplace(post: jnp.ndarray, data: EMData, hyper: IDHyper) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Each ability at the EM estimate and its Laplace variance: the inverse of the
    observed information (its own items' difficulties integrated out by block
    elimination). The observed information is the expected complete-data information
    minus the missing information about which labels are right (Louis 1982). A label's
    log-likelihood in the logit ``x`` of knowing is ``l_w(x) + R delta_w(x)`` with ``R``
    whether it is right (probability ``r``), so its score is ``l_w' + R delta'`` with
    ``delta' = p(knows | right)``; with ``M_i = sum delta'`` over task ``i``'s labels
    equal to its (unknown) class, the missing information is ``r (1 - r) delta'^2`` for
    an ability, ``Var(M_i)`` for a difficulty and ``delta' r (M_{i,y} - E M_i)`` between
    the two. Without it the intervals were too narrow (the classes treated as known)."""
    right = _right(post, data)
    a, d = _newton(right, data, hyper)
    K = post.shape[0]
    s = jax.nn.sigmoid(a[data.worker] - d[data.task])
    ds = s * (1.0 - s)
    delta = _knows_if_right(s, K)  # d/dx of log p(right) - log p(wrong)
    # complete-data information per label: -(r l_r'' + (1 - r) l_w''), l_w'' = -s (1 - s),
    # l_r'' = (K - 1) s (1 - s) (1 - 2 s) / (1 + (K - 1) s) - (K - 1)^2 (s (1 - s))^2 / (.)^2
    c = K - 1.0
    g = 1.0 + c * s
    l_rr = c * ds * (1.0 - 2.0 * s) / g - (c * ds / g) ** 2
    h = -right * l_rr + (1.0 - right) * ds
    assert data.by_task_label is not None
    classes = jnp.arange(K, dtype=data.label.dtype)[:, None]
    is_class = (data.label[None, :] == classes).astype(post.dtype)
    m_tk = data.by_task_label.sum(is_class * delta[None, :])  # [K, T]
    mean_m = (post * m_tk).sum(0)  # [T]: E M_i
    var_m = (post * m_tk**2).sum(0) - mean_m**2
    prec_a = 1.0 / hyper.ability_scale**2
    prec_d = 1.0 / hyper.difficulty_scale**2
    # floors: no posterior wider than its prior (guards points that are not a maximum)
    info_d = jnp.maximum(_per_task(data, h) - var_m, 0.0) + prec_d
    info_a = hyper.by_worker.sum((h - right * (1.0 - right) * delta**2)[None, :])[0] + prec_a
    cross = delta * right * (m_tk[data.label, data.task] - mean_m[data.task]) - h
    schur = info_a - hyper.by_worker.sum((cross**2 / info_d[data.task])[None, :])[0]
    return a, 1.0 / jnp.maximum(schur, prec_a)


_laplace_jit = jax.jit(_laplace)


def _log_confusion(ability: jnp.ndarray, n_classes: int) -> jnp.ndarray:
    """``[..., K, K]`` log confusion on a typical item (``d = 0``) from abilities ``[...]``."""
    right, wrong = _log_right_wrong(ability, n_classes)
    return jnp.where(jnp.eye(n_classes, dtype=bool), right[..., None, None], wrong[..., None, None])


class ItemDifficultyModel(ClassPrior):
    """Static likelihood, EM updates and NumPyro sites of the item-difficulty model."""

    __name__ = "ItemDifficulty"
    #: Declared capabilities (read by the estimator's layout and the EM engine): terms per
    #: label (``EMData.by_task_label``), and params with one row per task, cut back to the
    #: real tasks after a sharded fit (padding tasks at the end).
    per_label: ClassVar[bool] = True
    task_params: ClassVar[tuple[str, ...]] = ("difficulty",)

    @staticmethod
    def log_lik(params: IDParams, data: EMData) -> jnp.ndarray:
        assert data.by_task_label is not None
        K = params.log_pi.shape[0]
        right, wrong = _log_right_wrong(_logit(params, data), K)
        classes = jnp.arange(K, dtype=data.label.dtype)[:, None]
        return data.by_task_label.sum(jnp.where(data.label[None, :] == classes, right, wrong))

    @staticmethod
    def m_step(post: jnp.ndarray, data: EMData, hyper: IDHyper) -> IDParams:
        a, d = _newton(_right(post, data), data, hyper)
        return IDParams(a, d, ClassPrior.log_shares(post, hyper.class_counts))

    @staticmethod
    def log_prior(params: IDParams, hyper: IDHyper) -> jnp.ndarray:
        return (
            -0.5 * (((params.ability - hyper.ability_mean) / hyper.ability_scale) ** 2).sum()
            - 0.5 * ((params.difficulty / hyper.difficulty_scale) ** 2).sum()
            + (hyper.class_counts * params.log_pi).sum()
        )

    # ---- NUTS and intervals (see models/bayesian.py)
    @staticmethod
    def sample_sites(data: EMData, hyper: IDHyper) -> dict[str, jnp.ndarray]:
        import numpyro.distributions as dist

        W = data.n_labels_per_worker.shape[0]
        T = data.gold.shape[0]
        return sample_priors(
            hyper,
            ability=dist.Normal(hyper.ability_mean, hyper.ability_scale).expand([W]).to_event(1),
            difficulty=dist.Normal(0.0, hyper.difficulty_scale).expand([T]).to_event(1),
        )

    @staticmethod
    def params_from_sites(sites: dict[str, jnp.ndarray], hyper: IDHyper) -> IDParams:
        return IDParams(sites["ability"], sites["difficulty"], safe_log(sites["pi"]))

    @staticmethod
    def sites_from_params(params: IDParams, hyper: IDHyper) -> dict[str, jnp.ndarray]:
        return {
            "ability": params.ability,
            "difficulty": params.difficulty,
            "pi": jnp.exp(params.log_pi),
        }

    @staticmethod
    def confusion(params: IDParams) -> jnp.ndarray:
        """``[W, K, K]``: each annotator's confusion matrix on a typical item (``d = 0``)."""
        return jnp.exp(_log_confusion(params.ability, params.log_pi.shape[0]))

    @staticmethod
    def em_draws(
        params: IDParams,
        post: jnp.ndarray,
        data: EMData,
        hyper: IDHyper,
        rng: np.random.Generator,
        n: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Laplace (Gaussian) posterior of each ability (observed information, its items'
        difficulties integrated out; see :func:`_laplace`); Dirichlet posterior of the
        class prior."""
        a, var = (np.asarray(x, np.float64) for x in _laplace_jit(post, data, hyper))
        draws = a + np.sqrt(var) * rng.standard_normal((n, a.shape[0]))
        K = int(params.log_pi.shape[0])
        conf = np.asarray(jnp.exp(_log_confusion(jnp.asarray(draws, jnp.float32), K)))
        return conf, ClassPrior.draws(post, hyper.class_counts, rng, n)


class ItemDifficulty(BayesianAggregator):
    """Annotator ability and item difficulty (logistic random effects); EM (MAP) or NUTS.

    Parameters
    ----------
    prior_accuracy : float, default 0.7
        Accuracy of the typical annotator on a typical item a priori (the prior mean of
        the abilities is the logit of knowing the answer,
        ``(prior_accuracy - 1 / K) / (1 - 1 / K)``; must exceed ``1 / K``).
    ability_scale : float, default pi / sqrt(3) (1.81)
        Prior standard deviation of the abilities (logit scale of knowing the answer):
        the default is that of the logit of a uniform probability of knowing, a prior
        close to flat on accuracy (:data:`ABILITY_SCALE`).
    difficulty_scale : float, default 1.0
        Prior standard deviation of the items' difficulties (logit scale).
    class_prior_strength : float, default 1.0
        Pseudo-count per class for the class prior.
    inference, method, num_warmup, num_samples, num_chains, seed, max_iter, tol, progress, devices :
        as in :class:`~crowdbayes.models.dawid_skene.DawidSkene` (``devices`` shards
        the EM fit's labels across JAX devices, each device's tasks' difficulties with
        them).

    Attributes
    ----------
    difficulty_ : pandas Series, each task's difficulty (EM: MAP; NUTS: posterior mean).
    confusion_ : ndarray ``[n_workers, K, K]``, on an item of typical difficulty.
    class_prior_, history_, n_iter_, converged_, draws_, idata_ :
        as in :class:`~crowdbayes.models.bayesian.BayesianAggregator`.
    """

    _family = ItemDifficultyModel
    _gibbs_sweeps = 0  # item difficulties are part of the likelihood
    _site_dims: ClassVar[dict[str, list[str]]] = {
        "ability": ["worker"],
        "difficulty": ["task"],
        "pi": ["class"],
    }

    # parameters (the constructor takes these, then the engine parameters)
    prior_accuracy: float = 0.7
    ability_scale: float = ABILITY_SCALE
    difficulty_scale: float = 1.0
    class_prior_strength: float = 1.0

    def _sharded_hyper(self, ann: Annotations, data: EMData) -> IDHyper:
        # the per-annotator sums over labels in the sharded label layout only
        return self._hyper(ann, layout_segments(data, ann, ann.worker, ann.n_workers))

    def _hyper(self, ann: Annotations, by_worker: Segments | None = None) -> IDHyper:
        K = ann.n_classes
        q = float(self.prior_accuracy)
        if not 1.0 / K < q < 1.0:
            raise ValueError(f"prior_accuracy must be in (1/K, 1) = ({1 / K:.3g}, 1), got {q}")
        if self.ability_scale <= 0 or self.difficulty_scale <= 0 or self.class_prior_strength < 0:
            raise ValueError(
                "need ability_scale > 0, difficulty_scale > 0, class_prior_strength >= 0"
            )
        # numpy, then one transfer each: eager jnp calls would compile a small program
        # per class count in a fresh process
        f32, put = np.float32, jax.device_put
        knows = (q - 1.0 / K) / (1.0 - 1.0 / K)  # accuracy q: knows with this probability
        return IDHyper(
            put(f32(np.log(knows / (1.0 - knows)))),
            put(f32(self.ability_scale)),
            put(f32(self.difficulty_scale)),
            ClassPrior.counts(K, self.class_prior_strength),
            Segments.build(ann.worker, ann.n_workers) if by_worker is None else by_worker,
        )

    @property
    def difficulty_(self) -> pd.Series:
        """Each task's difficulty (logit scale; EM: MAP, NUTS: posterior mean)."""
        check_is_fitted(self)
        d = self.posterior_.mean("difficulty", lambda p: p.difficulty)
        return pd.Series(d, index=self.annotations_.task_ids, name="difficulty")
