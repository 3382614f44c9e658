"""Choosing a model from the labels alone: held-out label log-likelihood by K-fold.

:func:`compare` refits each model with a share of the labels held out and scores every
held-out label by its predictive probability: the task's posterior given its other
labels (the model's reported ``predict_proba``) times the annotator's fitted confusion
row, ``p(y) = sum_k p(k | other labels) * confusion[w, k, y]``. Tasks whose labels are all
held out are predicted from the class prior; with ``by="annotators"`` whole annotators
are held out and scored with the average confusion matrix, as new annotators are. No
gold is used (Paun et al. 2018, "Comparing Bayesian Models of Annotation", compare models
this way). The table is shaped like ``arviz.compare``: ``elpd`` (sum over held-out labels
of the log predictive probability), its standard error, the difference from the best
model with the standard error of that difference (paired over labels), and stacking
weights (Yao, Vehtari, Simpson & Gelman 2018), the mixture of the models' predictive
distributions that scores the held-out labels best. Models fitted by NUTS
(``inference=NUTS(...)``) also get PSIS-LOO over tasks from their draws (``elpd_loo``,
``loo_se``, and ``pareto_k_bad``, the tasks with Pareto k above 0.7), computed by ArviZ
on the full data.

>>> import crowdbayes as cb
>>> df, _ = cb.datasets.load("bluebirds")
>>> table = cb.compare(df, {"mv_like": cb.OneCoinDawidSkene(), "ds": cb.DawidSkene()}, folds=3)
>>> table.index[0], list(table.columns[:4])
('ds', ['rank', 'elpd', 'se', 'elpd_per_label'])
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from .base import Aggregator
from .data import Annotations, AnnotationsError, as_annotations
from .engines import engine_settings

__all__ = ["compare", "held_out_log_lik", "stacking_weights"]

BY = ("labels", "annotators")


def _subset(ann: Annotations, keep: np.ndarray) -> tuple[Annotations, np.ndarray]:
    """The annotations of the labels ``keep`` (bool ``[n_labels]``), with only the tasks
    that keep a label (returned: old task code -> new code, -1 where dropped; a
    classifier's ``pred_probs`` cut to them too); annotators and classes keep their codes."""
    tasks = np.unique(ann.task[keep])
    new_code = np.full(ann.n_tasks, -1, np.int64)
    new_code[tasks] = np.arange(tasks.size)
    sub = replace(
        ann,
        task=new_code[ann.task[keep]].astype(np.int32),
        worker=ann.worker[keep],
        label=ann.label[keep],
        task_ids=ann.task_ids[tasks],
        gold=ann.gold[tasks],
        task_inputs=None,
        pred_probs=None if ann.pred_probs is None else ann.pred_probs[tasks],
    )
    return sub, new_code


def held_out_log_lik(
    model: Aggregator, ann: Annotations, held: np.ndarray, *, new_annotators: bool = False
) -> np.ndarray:
    """Log predictive probability of each held-out label (bool mask ``held``) after
    fitting a clone of ``model`` on the others; ``new_annotators`` scores held-out
    annotators with the average confusion matrix of the fitted ones."""
    sub, new_code = _subset(ann, ~held)
    fit = _clone(model)
    if hasattr(fit, "_pad_to"):  # every fold padded to the whole data's shape: one
        fit._pad_to = (ann.n_labels, ann.n_tasks, ann.n_workers)  # program for all folds
    fit = fit.fit(sub)
    t = new_code[ann.task[held]]
    own = getattr(fit, "_held_out_proba", None)  # a model whose predictive is not the
    if own is not None:  # confusions given the class (EBCC: its sub-types)
        seen = np.bincount(sub.worker, minlength=ann.n_workers) > 0 if new_annotators else None
        p = np.asarray(own(t, ann.worker[held], ann.label[held], seen), np.float64)
        return np.log(np.maximum(p, np.finfo(np.float64).tiny))
    conf = getattr(fit, "confusion_", None)
    if conf is None:
        raise AnnotationsError(
            f"{type(model).__name__} has no confusion matrices to predict labels with"
        )
    conf = np.asarray(conf, np.float64)
    if new_annotators:
        seen = np.bincount(sub.worker, minlength=ann.n_workers) > 0
        conf = conf.copy()
        conf[~seen] = conf[seen].mean(axis=0)
    prior = np.asarray(getattr(fit, "class_prior_", np.full(ann.n_classes, 1 / ann.n_classes)))
    proba = np.asarray(fit.proba_, np.float64)
    post = np.where((t >= 0)[:, None], proba[np.maximum(t, 0)], prior[None, :])
    rows = conf[ann.worker[held], :, ann.label[held]]  # [n_held, K]: p(y | k)
    p = (post * rows).sum(axis=1)
    return np.log(np.maximum(p, np.finfo(np.float64).tiny))


def _clone(model: Aggregator) -> Aggregator:
    params = model.get_params(deep=False)
    # an engine object (inference=EM(...)) is copied, not shared with the caller's model
    return type(model)(
        **{k: copy.deepcopy(v) if hasattr(v, "get_params") else v for k, v in params.items()}
    )


def stacking_weights(log_lik: np.ndarray, n_iter: int = 500) -> np.ndarray:
    """Weights ``[M]`` on the simplex maximising ``sum_i log sum_m w_m p_im`` for
    pointwise log predictive densities ``[M, n]`` (EM over the mixture weights).

    >>> lp = np.log(np.array([[0.9, 0.9, 0.1], [0.5, 0.5, 0.5]]))
    >>> stacking_weights(lp).round(2).tolist()
    [0.42, 0.58]
    """
    lp = np.asarray(log_lik, np.float64)
    p = np.exp(lp - lp.max(axis=0, keepdims=True))  # same per-point scale for every m
    w = np.full(lp.shape[0], 1.0 / lp.shape[0])
    for _ in range(n_iter):
        mix = w @ p
        w_new = w * (p / mix).mean(axis=1)
        w_new /= w_new.sum()
        if np.abs(w_new - w).max() < 1e-10:
            return w_new
        w = w_new
    return w


def compare(
    annotations: Any,
    models: Mapping[str, Aggregator] | Sequence[Aggregator] | None = None,
    *,
    folds: int = 5,
    by: str = "labels",
    seed: int = 0,
) -> pd.DataFrame:
    """Compare models by held-out label log-likelihood (``folds``-fold over the labels,
    or over the annotators with ``by="annotators"``), from the annotations alone.

    ``models``: estimators (unfitted; each fold fits a clone), as a mapping name ->
    estimator or a list (named by class); default the Dawid–Skene family and
    ``recommended()``. Returns one row per model, best first: ``rank``, ``elpd`` (sum of
    the held-out labels' log predictive probabilities), ``se``, ``elpd_per_label``,
    ``d_elpd`` and ``dse`` (difference from the best and its standard error, paired over
    labels), ``weight`` (stacking) and ``n_labels``; for NUTS models also ``elpd_loo``,
    ``loo_se`` and ``pareto_k_bad`` (PSIS-LOO over tasks; NaN for EM models). Every label is
    held out once. Hyperparameters a model estimates by empirical Bayes
    (:class:`~crowdbayes.HierarchicalDawidSkene`'s two scales) are estimated once on all
    the labels and held fixed in the folds (a model's ``_fold_estimator``): two numbers
    seen by every fold, for a fifth of the time; :class:`~crowdbayes.EBCC` refits each
    fold by one EM run, not its ``n_restarts``.
    """
    from .models.class_conditional import ClassConditionalDawidSkene
    from .models.dawid_skene import DawidSkene
    from .models.hierarchical import HierarchicalDawidSkene
    from .models.mace import MACE
    from .models.one_coin import OneCoinDawidSkene
    from .recommend import recommended

    if by not in BY:
        raise ValueError(f"by must be one of {BY}, got {by!r}")
    if int(folds) < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    ann = as_annotations(annotations)
    if models is None:
        models = {
            "recommended": recommended(),
            "DawidSkene": DawidSkene(),
            "OneCoinDawidSkene": OneCoinDawidSkene(),
            "ClassConditionalDawidSkene": ClassConditionalDawidSkene(),
            "MACE": MACE(),
            "HierarchicalDawidSkene": HierarchicalDawidSkene(),
        }
    named = dict(models) if isinstance(models, Mapping) else _names(models)
    if not named:
        raise ValueError("give at least one model")
    rng = np.random.default_rng(seed)
    if by == "labels":
        fold_of = rng.permutation(np.arange(ann.n_labels) % int(folds))
    else:
        if ann.n_workers < int(folds):
            raise ValueError(f"by='annotators' needs at least {folds} annotators")
        fold_of = rng.permutation(np.arange(ann.n_workers) % int(folds))[ann.worker]
    pointwise = np.zeros((len(named), ann.n_labels))
    for m, model in enumerate(named.values()):
        # hyperparameters a model estimates by empirical Bayes: once, on all the labels
        fold_estimator = getattr(model, "_fold_estimator", None)
        if fold_estimator is not None:
            model = fold_estimator(ann)
        for f in range(int(folds)):
            held = fold_of == f
            pointwise[m, held] = held_out_log_lik(
                model, ann, held, new_annotators=(by == "annotators")
            )
    n = ann.n_labels
    elpd = pointwise.sum(axis=1)
    se = np.sqrt(n * pointwise.var(axis=1))
    best = int(np.argmax(elpd))
    diff = pointwise[best][None, :] - pointwise
    out = pd.DataFrame(
        {
            "elpd": elpd,
            "se": se,
            "elpd_per_label": elpd / n,
            "d_elpd": elpd[best] - elpd,
            "dse": np.sqrt(n * diff.var(axis=1)),
            "weight": stacking_weights(pointwise),
            "n_labels": n,
        },
        index=pd.Index(list(named), name="model"),
    )
    loo = [_psis_loo(model, ann) for model in named.values()]
    if any(row is not None for row in loo):
        nan = {"elpd_loo": np.nan, "loo_se": np.nan, "pareto_k_bad": np.nan}
        extra = pd.DataFrame([row or nan for row in loo], index=out.index)
        out = pd.concat([out, extra], axis=1)
    out = out.sort_values("elpd", ascending=False)
    out.insert(0, "rank", np.arange(len(out)))
    return out


def _psis_loo(model: Aggregator, ann: Annotations) -> dict[str, float] | None:
    """PSIS-LOO over tasks of a NUTS model fitted on all of ``ann`` (None for others)."""
    if engine_settings(model)["method"] != "nuts":
        return None
    import arviz as az

    from .models.bayesian import BayesianAggregator

    fit = _clone(model).fit(ann)
    assert isinstance(fit, BayesianAggregator)  # only those take inference=NUTS(...)
    with warnings.catch_warnings():  # ArviZ warns of high Pareto k: counted in pareto_k_bad
        warnings.filterwarnings("ignore", message=".*[Pp]areto", category=UserWarning)
        res = az.loo(fit.idata_, pointwise=True)
    k = np.asarray(res.pareto_k)
    return {
        "elpd_loo": float(res.elpd_loo),
        "loo_se": float(res.se),
        "pareto_k_bad": float((k > 0.7).sum()),
    }


def _names(models: Sequence[Aggregator]) -> dict[str, Aggregator]:
    named: dict[str, Aggregator] = {}
    for model in models:
        name, i = type(model).__name__, 2
        while name in named:
            name, i = f"{type(model).__name__}_{i}", i + 1
        named[name] = model
    return named
