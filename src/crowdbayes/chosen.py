"""``ChosenModel``: ``recommended()`` or EBCC, chosen per dataset from the labels alone.

Dawid–Skene-type models (``recommended()`` among them) let annotators who err together
define the latent class; EBCC (:class:`~crowdbayes.models.ebcc.EBCC`) gives their
correlated errors sub-types of each class and is then far more accurate (the two
ZenCrowd sets: 0.879 and 0.915 against 0.795 and 0.824), but it is less accurate where
there is no such correlation (2-5 points on four of the 16 shared datasets). Which one
a dataset needs shows in how well each predicts held-out labels: ``ChosenModel`` runs
:func:`~crowdbayes.compare` (``folds``-fold over the labels) on Dawid–Skene (the model
``recommended()`` tempers) and EBCC, and fits EBCC where its held-out label
log-likelihood is ahead by more than ``threshold`` standard errors of the difference,
``recommended()`` otherwise. ``selection_`` is the comparison with the choice.

The threshold, 2 standard errors, was fixed before looking (on the 16 shared datasets
every threshold from 1.4 to 4.6 makes the same choices); EBCC's reported probabilities
are tempered like ``recommended()``'s, at ``0.9 * sqrt(n * (1 + (n - 1) * rho))`` for a
task with ``n`` labels (``rho`` from EBCC's own posterior), 0.9 chosen leave-one-dataset-out
(15 of 16 folds chose it; ``docs/benchmarks.md``). It costs ``2 * folds`` fits more than
``recommended()`` (EBCC's folds one EM run each, not its five restarts) and EBCC's five
runs where it is chosen.

>>> import crowdbayes as cb
>>> df, gold = cb.datasets.load("rte")
>>> m = ChosenModel().fit(df)
>>> m.chosen_, round(float((m.predict().loc[gold.index] == gold).mean()), 3)
('recommended', 0.929)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .base import Aggregator, check_is_fitted
from .data import Annotations

__all__ = ["EBCC_OUTPUT_TEMPERATURE", "ChosenModel"]

#: EBCC's reported posterior is tempered at this times ``sqrt(n * design effect)``
#: (chosen leave-one-dataset-out over the 16 shared datasets: 0.9 in 15 of 16 folds)
EBCC_OUTPUT_TEMPERATURE = 0.9


class ChosenModel(Aggregator):
    """``recommended()`` or EBCC, whichever the labels favour (see the module doc).

    Parameters
    ----------
    folds : int, default 5
        Folds over the labels of the comparison (:func:`~crowdbayes.compare`).
    threshold : float, default 2.0
        EBCC is chosen when its held-out label log-likelihood exceeds Dawid–Skene's by
        more than this many standard errors of the difference.
    seed : int, default 0
        Seeds the folds and EBCC's restarts and draws (``recommended()`` keeps its own).

    Attributes
    ----------
    chosen_ : str, ``"recommended"`` or ``"EBCC"``.
    model_ : the fitted estimator chosen.
    selection_ : DataFrame, :func:`~crowdbayes.compare`'s table with ``z`` (EBCC's lead
        in standard errors) and ``chosen``.
    """

    folds: int = 5
    threshold: float = 2.0
    seed: int = 0

    def _fit(self, ann: Annotations) -> None:
        from .model_choice import compare
        from .models.dawid_skene import DawidSkene
        from .models.ebcc import EBCC
        from .recommend import CalibratedDawidSkene

        table = compare(
            ann,
            {"DawidSkene": DawidSkene(seed=self.seed), "EBCC": EBCC(seed=self.seed)},
            folds=int(self.folds),
            seed=int(self.seed),
        )
        lead = float(table.loc["EBCC", "elpd"] - table.loc["DawidSkene", "elpd"])
        dse = float(table["dse"].max())  # the second row's: the paired difference's
        z = lead / dse if dse > 0 else (np.inf if lead > 0 else -np.inf)
        use_ebcc = bool(z > float(self.threshold))
        if use_ebcc:
            from .models.vote_correlation import vote_correlation

            model: Any = EBCC(seed=self.seed).fit(ann)
            self.label_correlation_ = vote_correlation(ann.vote_counts(), model.proba_)
            self.proba_ = self._tempered(ann, model.proba_)
        else:
            model = CalibratedDawidSkene().fit(ann)
            self.proba_ = model.proba_
            self.label_correlation_ = float(model.label_correlation_)
        self.label_codes_ = np.asarray(model.label_codes_)
        self.model_ = model
        self.chosen_ = "EBCC" if use_ebcc else "recommended"
        self.selection_ = table.assign(
            z=[z if name == "EBCC" else 0.0 for name in table.index],
            chosen=[(name == "EBCC") == use_ebcc for name in table.index],
        )

    def annotator_quality(self, interval: float | None = 0.9) -> pd.DataFrame:
        """The chosen model's :meth:`annotator_quality` (one schema for every model)."""
        check_is_fitted(self)
        out: pd.DataFrame = self.model_.annotator_quality(interval=interval)
        return out

    @property
    def confusion_(self) -> np.ndarray:
        """The chosen model's ``confusion_`` ``[W, K, K]``."""
        return np.asarray(self.model_.confusion_)

    @property
    def class_prior_(self) -> np.ndarray:
        """The chosen model's ``class_prior_`` ``[K]``."""
        return np.asarray(self.model_.class_prior_)

    def _predict_proba_new(self, ann: Annotations) -> np.ndarray:
        """The chosen model's scores of new tasks (EBCC's tempered as in the fit)."""
        out: np.ndarray = self.model_._predict_proba_new(ann)
        return self._tempered(ann, out) if self.chosen_ == "EBCC" else out

    def _tempered(self, ann: Annotations, proba: np.ndarray) -> np.ndarray:
        """EBCC's posterior ``proba`` of ``ann``'s tasks as reported: tempered at
        ``EBCC_OUTPUT_TEMPERATURE * sqrt(n * design effect)``."""
        from .recommend import task_temperatures, temper

        tau = task_temperatures(ann, EBCC_OUTPUT_TEMPERATURE, 0.5, self.label_correlation_)
        return temper(proba, tau)
