"""The recommended default: one estimator with fixed settings, chosen from the benchmarks.

``recommended()`` returns an unfitted :class:`CalibratedDawidSkene`: Dawid–Skene EM
whose confusion prior is worth 6 labels per annotator (``prior_labels=6``: ``6 / K``
pseudo-labels per row, 80% of them on the diagonal; class prior ``Dir(1)``), whose
E-step tempers each task's posterior, ``q ∝ p(labels, class) ** (1 / tau)`` with
``tau = 0.4 * sqrt(n)`` for a task with ``n`` labels, and which reports the posterior
at ``T = 1.5 * sqrt(n * (1 + (n - 1) * rho))``. EM's posterior treats a
task's labels as independent given its class, so its log-odds grow like ``n``;
annotators' errors on one task are correlated (hard tasks mislead several of them), and
log-odds that grow like ``sqrt(n)`` match the gold answers better, both in the confusion
matrices EM estimates from the posteriors and in the probabilities reported. How
correlated the labels are differs from one dataset to the next, so the reported
temperature also counts each task's labels by Kish's design effect
``1 + (n - 1) * rho``, with ``rho`` (``label_correlation_``) estimated from the vote
counts given EM's posterior (at temperature 1) by a Dirichlet-multinomial
(:mod:`crowdbayes.models.vote_correlation`; no gold used). The E-step's temperature
makes EM maximise the free energy of deterministic annealing EM (Ueda & Nakano, 1998)
held at one temperature per task, so EM still climbs one objective.

The constants are the same for every dataset, and were chosen in two steps. The
prior's worth: only priors whose 90% annotator intervals cover at least 0.82 of the
annotators on every simulated crowd of :func:`crowdbayes.simulate.simulate_population`
(seeds K, not those ``benchmarks/coverage_crowds.py`` reports) are candidates; a fixed 3
pseudo-labels per row (the previous default, 15 per annotator at K = 5) covered 0.66 of
the annotators on spammers at K = 5. The rest (the prior's worth and accuracy, the class
prior, the EM and output temperatures) by leave-one-dataset-out over the 16 real
datasets with gold (``benchmarks/default_loo.py``): chosen on 15 and scored on the 16th,
the recipe has mean accuracy 0.8600 and mean ECE 0.050, at least as accurate as the
best crowd-kit method on 8 of the 16 (``docs/benchmarks.md``, "recommended() left
out"). The output temperature never changes the labels.

>>> import crowdbayes as cb
>>> from crowdbayes.recommend import recommended
>>> annotations, gold = cb.datasets.load("rte")
>>> model = recommended().fit(annotations)
>>> round(float((model.predict().loc[gold.index] == gold).mean()), 3)
0.929
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .data import Annotations
from .inference.em import EMData, em_data
from .models.bayesian import EM_PARAMETERS, RUN_PARAMETERS
from .models.dawid_skene import DawidSkene, row_strength
from .models.temperature import temper  # one definition, NumPy only (CROWDLAB's too)
from .models.vote_correlation import vote_correlation

__all__ = ["CalibratedDawidSkene", "recommended"]


def task_temperatures(
    ann: Annotations, temperature: float, label_power: float, correlation: float = 0.0
) -> np.ndarray:
    """``[n_tasks, 1]``: ``temperature * (n * (1 + (n - 1) * correlation)) ** label_power``
    for a task with ``n`` labels (``n`` times the design effect of labels correlated by
    ``correlation``).

    >>> import pandas as pd
    >>> ann = Annotations.from_long(pd.DataFrame(
    ...     {"task": [1, 1, 1, 1, 2], "worker": [1, 2, 3, 4, 1], "label": [0, 1, 0, 0, 1]}))
    >>> task_temperatures(ann, 1.5, 0.5).ravel().tolist()
    [3.0, 1.5]
    >>> task_temperatures(ann, 1.5, 0.5, correlation=1 / 3).ravel().round(3).tolist()
    [4.243, 1.5]
    """
    n = np.maximum(ann.labels_per_task(), 1).astype(np.float64)
    design = 1.0 + (n - 1.0) * float(correlation)
    return (float(temperature) * (n * design) ** float(label_power))[:, None]


class CalibratedDawidSkene(DawidSkene):
    """Dawid–Skene EM on tempered task posteriors, tempered more on tasks with more labels.

    A task with ``n`` labels is fitted at temperature ``em_temperature * n ** label_power``:
    EM's E-step uses ``q(k) ∝ p(labels, k) ** (1 / tau)`` (deterministic annealing EM
    held at a fixed temperature per task, so EM still climbs one objective; see
    :func:`crowdbayes.inference.em.e_step`), and the M-step estimates the confusion
    matrices from those posteriors. The reported probabilities are the posterior at
    ``temperature * (n * (1 + (n - 1) * rho)) ** label_power``, where ``rho`` is how
    correlated two labels on one task are given its class: ``label_correlation``, or when
    that is None, estimated from the vote counts given the fitted classes by a
    Dirichlet-multinomial (:func:`crowdbayes.models.vote_correlation.vote_correlation`;
    fitted value in ``label_correlation_``). Labels are the argmax of either posterior.
    ``em_temperature=1``, ``temperature=1``, ``label_power=0`` is plain
    :class:`~crowdbayes.DawidSkene` (with its prior: ``prior_labels`` is what the
    confusion prior is worth per annotator, ``prior_labels / K`` pseudo-labels per row;
    ``prior_strength``, when given, sets each row's worth instead, as in
    :class:`~crowdbayes.DawidSkene`). Confusion matrices, annotator quality and its
    intervals come from the tempered fit: from EM's posterior (``em_proba_``), not the
    reported one, so each estimate lies inside its interval.

    >>> import crowdbayes as cb
    >>> annotations, gold = cb.datasets.load("bluebirds")
    >>> model = CalibratedDawidSkene().fit(annotations)
    >>> round(float((model.predict().loc[gold.index] == gold).mean()), 3)
    0.898
    >>> round(model.label_correlation_, 3)
    0.018
    """

    # parameters (the constructor takes these, then EM's engine parameters: no NUTS)
    prior_strength: float | None = None
    prior_labels: float = 6.0
    prior_accuracy: float = 0.8
    class_prior_strength: float = 1.0
    em_temperature: float = 0.4
    temperature: float = 1.5
    label_power: float = 0.5
    label_correlation: float | None = None
    _engine_parameters: ClassVar[tuple[str, ...]] = EM_PARAMETERS + RUN_PARAMETERS

    def _row_strength(self, n_classes: int) -> float:
        # per-annotator worth: prior_labels over the K rows (prior_strength: per row)
        return row_strength(self.prior_strength, n_classes, float(self.prior_labels))

    def _em_data(self, ann: Annotations, devices: Any = None) -> EMData:
        tau = task_temperatures(ann, self.em_temperature, self.label_power).ravel()
        return em_data(ann, devices=devices, task_temperature=tau)

    def _fit(self, ann: Annotations) -> None:
        for name in ("em_temperature", "temperature"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not np.isfinite(float(self.label_power)):
            raise ValueError(f"label_power must be finite, got {self.label_power}")
        rho = self.label_correlation
        if rho is not None and not 0.0 <= float(rho) < 1.0:
            raise ValueError(f"label_correlation must be None or in [0, 1), got {rho}")
        super()._fit(ann)
        em_tau = task_temperatures(ann, self.em_temperature, self.label_power)
        if rho is None:  # from the votes, given the posterior at temperature 1
            rho = vote_correlation(ann.vote_counts(), temper(self.proba_, 1.0 / em_tau))
        self.label_correlation_ = float(rho)
        self.em_proba_ = self.proba_  # what the confusions and their intervals come from
        # the posterior at temperature T from the one at T_em: a power T_em / T per task
        out_tau = task_temperatures(ann, self.temperature, self.label_power, float(rho))
        self.proba_ = temper(self.proba_, out_tau / em_tau)

    def _predict_proba_new(self, ann: Annotations) -> np.ndarray:
        tau = task_temperatures(ann, self.temperature, self.label_power, self.label_correlation_)
        return temper(super()._predict_proba_new(ann), tau)


def recommended() -> CalibratedDawidSkene:
    """The estimator to start with: an unfitted :class:`CalibratedDawidSkene` with the
    settings chosen by ``benchmarks/default_loo.py`` (see the module's docstring and
    ``docs/benchmarks.md``)."""
    return CalibratedDawidSkene()
