r"""EBCC-style correlated sub-types (Li, Rubinstein & Cohn 2019): annotators' errors
correlated through sub-types of each true class.

Dawid–Skene assumes the labels of a task are independent given its class. When several
annotators err together (the same hard or ambiguous tasks mislead them), that assumption
lets the correlated group define the latent class. EBCC splits each true class ``k``
into ``M`` sub-types ``(k, m)``; every annotator has a confusion row per sub-type, so
tasks of one class that mislead the same annotators fall in one sub-type, and the class
is the sum over its sub-types:

.. math::

    \pi \sim \mathrm{Dirichlet}(c), \qquad
    \tau_k \sim \mathrm{Dirichlet}(a / M), \qquad
    v_{j,(k,m)} \sim \mathrm{Dirichlet}(\beta_k), \\
    z_i \sim \mathrm{Categorical}(\pi), \qquad
    s_i \mid z_i = k \sim \mathrm{Categorical}(\tau_k), \qquad
    p(y_{ij} = l \mid z_i = k, s_i = m) = v_{j,(k,m),l},

with ``beta_k`` ``diagonal_prior`` on label ``k`` and ``off_diagonal_prior`` on the
others (the paper's 4 and 1), ``a = subtype_strength`` (0.1: a sparse prior, so that a
class uses few sub-types unless the labels need more) and ``M = n_subtypes`` (10). With
``M = 1`` it is Dawid–Skene with that prior. The sub-type and the class are
marginalised; EM finds the MAP in log-ratio coordinates (every Dirichlet's mode there is
its mean given the counts; the paper fits the same model by mean-field variational
Bayes), from ``n_restarts`` random splits of the majority-vote shares over the sub-types,
keeping the fit of the highest log posterior.

The sub-type rows' prior is strong (an annotator has ``K M`` rows, each worth ``K + 3``
labels), which keeps sub-types from forming where the labels do not need them but would
pull a good annotator toward accuracy ``4 / (K + 3)``; so ``confusion_`` and
``annotator_quality`` read each annotator's labels against EBCC's class posterior under
:class:`~crowdbayes.models.dawid_skene.DawidSkene`'s default prior (``4 / K``
pseudo-labels per row, 70% on the diagonal), and the model's own rows stay in
``params_`` (what new tasks are scored with).

The defaults are the paper's, not chosen on crowdbayes' benchmark datasets; the number
of restarts was, and the reading of the quality on simulated crowds (see the model card,
``models/ebcc.md``). EBCC is fitted by EM only:
sub-types of one class are exchangeable, so NUTS chains would switch between them.

>>> import crowdbayes as cb
>>> df, gold = cb.datasets.load("rte")
>>> m = EBCC().fit(df)
>>> round(float((m.predict().loc[gold.index] == gold).mean()), 2)
0.93
>>> m.subtype_shares_.shape
(2, 10)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..data import Annotations
from ..engines import NUTS
from ..inference.em import EMData, _e_step_jit, em_data
from .bayesian import (
    EM_PARAMETERS,
    MIN_PSEUDO,
    RUN_PARAMETERS,
    BayesianAggregator,
    ClassPrior,
    dirichlet_draws,
    safe_log,
    sample_priors,
    vote_shares,
)
from .confusion import ConfusionModel, expected_counts
from .dawid_skene import confusion_pseudo_counts, row_strength

__all__ = ["EBCC", "EBCCHyper", "EBCCModel", "EBCCParams"]

#: The prior of each annotator's reported confusion rows (``annotator_quality``,
#: ``confusion_``): DawidSkene's default, ``4 / K`` pseudo-labels per row (4 per
#: annotator), this share of them on the diagonal.
QUALITY_PRIOR_ACCURACY = 0.7


class EBCCParams(NamedTuple):
    log_confusion: jnp.ndarray  # [W, K * M, L]: log p(label l | sub-type (k, m)) for annotator w
    log_tau: jnp.ndarray  # [K, M]: log share of each sub-type within its class
    log_pi: jnp.ndarray  # [K]


class EBCCHyper(NamedTuple):
    confusion_counts: jnp.ndarray  # [K, L]: Dirichlet prior of every sub-type row of class k
    subtype_counts: jnp.ndarray  # [K, M]: Dirichlet prior of each class's sub-type shares
    class_counts: jnp.ndarray  # [K]
    quality_counts: jnp.ndarray  # [K, L]: the prior of each annotator's reported confusion


def _sub_counts(hyper: EBCCHyper) -> jnp.ndarray:
    """``[K * M, L]``: the confusion prior of every sub-type row (its class's row)."""
    M = hyper.subtype_counts.shape[1]
    return jnp.repeat(hyper.confusion_counts, M, axis=0)


def _mix(log_confusion: jnp.ndarray, log_tau: jnp.ndarray) -> jnp.ndarray:
    """``[..., W, K, L]``: sub-type rows ``[..., W, K * M, L]`` weighted by their shares
    ``[..., K, M]``."""
    K, M = log_tau.shape[-2:]
    v = jnp.exp(log_confusion)
    v = v.reshape(*v.shape[:-2], K, M, v.shape[-1])
    return jnp.einsum("...km,...wkml->...wkl", jnp.exp(log_tau), v)


class EBCCModel(ConfusionModel):
    """Static likelihood, EM updates and NumPyro sites of EBCC (the rows of EM's posterior
    are the ``K * M`` sub-types, class-major; the likelihood is
    :class:`~crowdbayes.models.confusion.ConfusionModel`'s over those rows)."""

    __name__ = "EBCC"

    @staticmethod
    def log_class_prior(params: EBCCParams, data: EMData) -> jnp.ndarray:  # type: ignore[override]
        return (params.log_pi[:, None] + params.log_tau).reshape(-1)[:, None]

    @staticmethod
    def m_step(post: jnp.ndarray, data: EMData, hyper: EBCCHyper) -> EBCCParams:
        K, L = hyper.confusion_counts.shape
        M = hyper.subtype_counts.shape[1]
        W = data.by_worker_label.inverse.shape[0] // L
        counts = expected_counts(post, data, W) + _sub_counts(hyper)[None]
        n_sub = post.sum(1).reshape(K, M)
        tau = n_sub + hyper.subtype_counts
        cls = n_sub.sum(1) + hyper.class_counts
        return EBCCParams(
            safe_log(counts / counts.sum(-1, keepdims=True)),
            safe_log(tau / tau.sum(-1, keepdims=True)),
            safe_log(cls / cls.sum()),
        )

    @staticmethod
    def log_prior(params: EBCCParams, hyper: EBCCHyper) -> jnp.ndarray:
        # a contraction, not an elementwise sum: XLA's CPU sum of the W * K * M * L terms
        # accumulates float32 error (7 nats of 20,000 at 64 x 40 x 4), the dot does not
        return (
            jnp.einsum("wrl,rl->w", params.log_confusion, _sub_counts(hyper)).sum()
            + (hyper.subtype_counts * params.log_tau).sum()
            + (hyper.class_counts * params.log_pi).sum()
        )

    @staticmethod
    def confusion(params: EBCCParams) -> jnp.ndarray:  # type: ignore[override]
        """``[W, K, L]``: each annotator's confusion per class (sub-types weighted by tau)."""
        return _mix(params.log_confusion, params.log_tau)

    # ---- NumPyro sites (the density test; EBCC is fitted by EM only)
    @staticmethod
    def sample_sites(data: EMData, hyper: EBCCHyper) -> dict[str, jnp.ndarray]:
        """Priors: ``confusion[w, (k, m)] ~ Dirichlet(beta_k)``, ``tau[k] ~
        Dirichlet(a / M)``, ``pi ~ Dirichlet(c)``."""
        import numpyro.distributions as dist

        W = data.n_labels_per_worker.shape[0]
        rows = _sub_counts(hyper)
        return sample_priors(
            hyper,
            confusion=dist.Dirichlet(jnp.broadcast_to(rows, (W, *rows.shape))).to_event(2),
            tau=dist.Dirichlet(hyper.subtype_counts).to_event(1),
        )

    @staticmethod
    def params_from_sites(sites: dict[str, jnp.ndarray], hyper: EBCCHyper) -> EBCCParams:
        return EBCCParams(
            safe_log(sites["confusion"]), safe_log(sites["tau"]), safe_log(sites["pi"])
        )

    @staticmethod
    def sites_from_params(params: EBCCParams, hyper: EBCCHyper) -> dict[str, jnp.ndarray]:
        return {
            "confusion": jnp.exp(params.log_confusion),
            "tau": jnp.exp(params.log_tau),
            "pi": jnp.exp(params.log_pi),
        }

    @staticmethod
    def em_draws(
        params: EBCCParams,
        post: jnp.ndarray,
        data: EMData,
        hyper: EBCCHyper,
        rng: np.random.Generator,
        n: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draws of each annotator's confusion per class given the labels and the tasks'
        classes ``post`` (``[K, T]``, imputed from EBCC's posterior): the Dirichlet
        posterior of every row under ``hyper.quality_counts`` (the library's default
        prior, worth 4 labels per annotator), as :meth:`EBCC.annotator_quality` reports
        them (see the estimator)."""
        W = data.n_labels_per_worker.shape[0]
        L = hyper.quality_counts.shape[1]
        counts = _label_counts(data, np.asarray(post, np.float64).T, W, L)
        conf = dirichlet_draws(counts + np.asarray(hyper.quality_counts, np.float64), rng, n)
        return conf, ClassPrior.draws(post, hyper.class_counts, rng, n)


def _label_counts(ann: Annotations | EMData, proba: np.ndarray, W: int, L: int) -> np.ndarray:
    """``[W, K, L]``: expected number of labels ``l`` from annotator ``w`` on class-``k``
    tasks given the class posterior ``proba`` ``[T, K]``, over the labels of ``ann``
    (exact shapes; numpy, so no program is compiled per shape)."""
    K = proba.shape[1]
    task, worker, label = (np.asarray(x) for x in (ann.task, ann.worker, ann.label))
    key = worker.astype(np.int64) * L + label
    weights = proba[task]  # [N, K]
    counts = np.stack([np.bincount(key, weights[:, k], W * L) for k in range(K)])
    return counts.reshape(K, W, L).transpose(1, 0, 2)


def _collapse(proba: np.ndarray, n_classes: int) -> np.ndarray:
    """``[T, K]``: sub-type probabilities ``[T, K * M]`` summed within each class."""
    return proba.reshape(proba.shape[0], n_classes, -1).sum(-1)


class EBCC(BayesianAggregator):
    """EBCC: a confusion matrix per annotator and sub-type of each true class, so that
    annotators whose errors are correlated do not define the class; by EM (MAP).

    Parameters
    ----------
    n_subtypes : int, default 10
        Sub-types ``M`` per class (1 gives Dawid–Skene).
    subtype_strength : float, default 0.1
        Total Dirichlet pseudo-count of a class's sub-type shares (``a / M`` each): small,
        so a class keeps few sub-types unless the labels ask for more.
    diagonal_prior, off_diagonal_prior : float, default 4.0, 1.0
        Dirichlet pseudo-counts of every sub-type's confusion row on the label equal to
        its class and on each other label (the paper's).
    class_prior_strength : float, default 1.0
    n_restarts : int, default 5
        EM runs from random splits of the vote shares over the sub-types (seeded by
        ``seed``); the fit of the highest log posterior is kept.
    seed, max_iter, tol, progress, devices, inference :
        as in :class:`~crowdbayes.models.dawid_skene.DawidSkene` (``inference`` takes
        ``EM(...)`` only).

    Attributes
    ----------
    confusion_ : ndarray ``[n_workers, K, K]``: each annotator's confusion per class, read
        from its labels against the class posterior (see the module doc).
    subtype_shares_ : ndarray ``[K, M]``: each class's share of its sub-types.
    restart_objectives_ : ndarray ``[n_restarts]``: the log posterior each EM run reached.
    """

    _family = EBCCModel
    #: the class posterior given mixed confusions is not EBCC's: no Gibbs sweeps
    _gibbs_sweeps: ClassVar[int] = 0
    _site_dims: ClassVar[dict[str, list[str]]] = {
        "confusion": ["worker", "subtype", "given"],
        "tau": ["class", "sub"],
        "pi": ["class"],
    }
    #: no NUTS settings: EM only (the seed splits the restarts and seeds the draws)
    _engine_parameters: ClassVar[tuple[str, ...]] = ("seed", *EM_PARAMETERS, *RUN_PARAMETERS)

    # parameters (the constructor takes these, then the engine parameters)
    n_subtypes: int = 10
    subtype_strength: float = 0.1
    diagonal_prior: float = 4.0
    off_diagonal_prior: float = 1.0
    class_prior_strength: float = 1.0
    n_restarts: int = 5

    _restart: int = 0

    def _hyper(self, ann: Annotations) -> EBCCHyper:
        K, M = ann.n_classes, int(self.n_subtypes)
        if M < 1 or int(self.n_restarts) < 1:
            raise ValueError(
                f"n_subtypes and n_restarts must be >= 1, got {self.n_subtypes} "
                f"and {self.n_restarts}"
            )
        counts = (
            self.diagonal_prior,
            self.off_diagonal_prior,
            self.subtype_strength,
            self.class_prior_strength,
        )
        if min(counts) < 0:
            raise ValueError(
                "diagonal_prior, off_diagonal_prior, subtype_strength and "
                "class_prior_strength must be >= 0"
            )
        rows = np.full((K, K), float(self.off_diagonal_prior))
        np.fill_diagonal(rows, float(self.diagonal_prior))
        floor = MIN_PSEUDO  # every prior proper
        quality = confusion_pseudo_counts(K, row_strength(None, K), QUALITY_PRIOR_ACCURACY)
        return EBCCHyper(
            jax.device_put(np.maximum(rows, floor).astype(np.float32)),
            jax.device_put(
                np.full((K, M), max(float(self.subtype_strength) / M, floor), np.float32)
            ),
            ClassPrior.counts(K, self.class_prior_strength),
            jax.device_put(np.maximum(quality, floor).astype(np.float32)),
        )

    def _engine(self) -> Any:
        engine = super()._engine()
        if isinstance(engine, NUTS):
            raise ValueError(
                "EBCC is fitted by EM only (its sub-types are exchangeable within a class, "
                "so NUTS chains would switch between them); leave out inference=NUTS(...)"
            )
        return engine

    #: exact shapes: EBCC's arrays over tasks are ``K * M`` rows (10x Dawid–Skene's), so
    #: the buckets' padding (tasks up to the labels' rung) cost 2-7x a warm fit on the 16
    #: shared datasets; only :func:`~crowdbayes.compare`'s folds pad (``_pad_to``), to
    #: the whole data's shape, and share one program
    _buckets: ClassVar[bool] = False

    def _bucket_axes(self, ann: Annotations) -> set[int]:
        """The classes, the sub-types and the sub-type rows (``K``, ``M``, ``K * M``): a
        padded fit whose padded task or annotator count is one of them fits exact shapes
        instead (padding is cut off by the axes' lengths)."""
        K, M = ann.n_classes, int(self.n_subtypes)
        return {K, M, K * M}

    def _subtype_gold(self, ann: Annotations) -> Annotations:
        """``ann`` with each gold class ``k`` as the row of its first sub-type, ``k * M``
        (EM clamps a gold task to one row)."""
        M = int(self.n_subtypes)
        gold = np.where(ann.gold >= 0, ann.gold * M, -1).astype(ann.gold.dtype)
        return replace(ann, gold=gold)

    def _em_data(self, ann: Annotations, devices: Any = None) -> EMData:
        return super()._em_data(self._subtype_gold(ann), devices)

    def _init_post(self, ann: Annotations) -> np.ndarray:
        """The vote shares, each class's split over its sub-types at random (Dirichlet(1),
        seeded by ``seed`` and the restart)."""
        M = int(self.n_subtypes)
        rng = np.random.default_rng([int(self.seed), int(self._restart)])
        shares = vote_shares(ann)
        split = rng.dirichlet(np.ones(M), size=shares.shape) * shares[:, :, None]
        return split.reshape(shares.shape[0], -1)

    def _fold_estimator(self, ann: Annotations) -> EBCC:
        """The estimator :func:`crowdbayes.compare` refits on each fold: one EM run (the
        first of this model's ``n_restarts`` splits), not ``n_restarts``. On the 16 shared
        datasets this moved EBCC's lead over Dawid–Skene by 0.03-1.2 standard errors and
        left every choice of :class:`~crowdbayes.ChosenModel` as it was, in a fifth of the
        time (``models/chosen.md``). A fold's EM is not started from the fit on all the
        labels: it runs further than the full fit's (EBCC often stops at ``max_iter``), so
        the folds would score a better-converged model than the one reported (fact_eval:
        EBCC's lead 1.1 -> 13.5 standard errors, against 0.86 accuracy for EBCC, 0.88 for
        ``recommended()``)."""
        self._hyper(ann)  # the settings' checks (n_restarts=0 fails here as in a fit)
        return type(self)(**{**self.get_params(deep=False), "n_restarts": 1})

    def _fit(self, ann: Annotations) -> None:
        self._hyper(ann)  # the settings' checks, before any run
        best: dict[str, Any] = {}
        objectives = []
        try:
            for restart in range(int(self.n_restarts)):
                self._restart = restart
                super()._fit(ann)
                objectives.append(float(self.history_[-1]))
                if not best or objectives[-1] > best["history_"][-1]:
                    best = {k: v for k, v in vars(self).items() if k.endswith("_")}
        finally:
            vars(self).pop("_restart", None)
        vars(self).update(best)
        K = ann.n_classes
        self._subtype_proba = np.asarray(self.posterior_.proba, np.float64)  # [T, K * M]
        proba = _collapse(self._subtype_proba, K)
        # each annotator's confusion per class as annotator_quality reports it: the mean
        # of its rows' Dirichlet given the classes' posterior under the quality prior
        hyper = self._fitted_hyper()
        counts = _label_counts(ann, proba, ann.n_workers, K)
        counts = counts + np.asarray(hyper.quality_counts, np.float64)
        conf = counts / counts.sum(-1, keepdims=True)
        self.posterior_ = replace(self.posterior_, proba=proba, confusion=conf)
        self.confusion_ = conf
        self.proba_ = proba
        self.label_codes_ = np.argmax(proba, axis=1)
        self.restart_objectives_ = np.asarray(objectives)

    @property
    def subtype_shares_(self) -> np.ndarray:
        """``[K, M]``: each class's share of its sub-types."""
        return np.exp(np.asarray(self.params_.log_tau, np.float64))

    def _predict_proba_new(self, ann: Annotations) -> np.ndarray:
        """Score new tasks with each annotator's sub-type rows; a new annotator gets the
        average of the known annotators' rows."""
        params: EBCCParams = self.params_
        log_conf = np.asarray(params.log_confusion)
        n_new = ann.n_workers - log_conf.shape[0]
        if n_new > 0:
            mean = np.log(np.exp(log_conf).mean(axis=0, keepdims=True))
            log_conf = np.concatenate([log_conf, np.repeat(mean, n_new, 0)])
        full = params._replace(log_confusion=jax.device_put(log_conf.astype(np.float32)))
        data = em_data(self._subtype_gold(ann), n_workers=ann.n_workers)
        post, _ = _e_step_jit(self._family, full, data)
        return _collapse(np.asarray(post, np.float64).T, ann.n_classes)

    def _held_out_proba(
        self, task: np.ndarray, worker: np.ndarray, label: np.ndarray, seen: np.ndarray | None
    ) -> np.ndarray:
        """``p(label | the task's other labels)`` of held-out labels under EBCC's own
        model (:func:`crowdbayes.model_choice.held_out_log_lik`): the task's sub-type
        posterior times the annotator's sub-type row; ``task`` is -1 for a task with no
        fitted labels (then ``pi_k tau_km``); ``seen`` (fitted annotators), where given,
        scores the others with the average of the seen annotators' rows."""
        params: EBCCParams = self.params_
        rows = np.exp(np.asarray(params.log_confusion, np.float64))  # [W, K * M, L]
        if seen is not None:
            rows = rows.copy()
            rows[~seen] = rows[seen].mean(axis=0)
        log_pi = np.asarray(params.log_pi, np.float64)[:, None]
        prior = np.exp(log_pi + np.asarray(params.log_tau, np.float64)).reshape(-1, 1)
        sub = self._subtype_proba  # [T, K * M]: the fit's posterior (nothing compiles)
        post = np.where((task >= 0)[:, None], sub[np.maximum(task, 0)], prior[:, 0][None, :])
        return (post * rows[worker, :, label]).sum(axis=1)
