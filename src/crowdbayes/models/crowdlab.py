r"""CROWDLAB: consensus labels from several annotators plus a classifier, as cleanlab
2.9's ``cleanlab.multiannotator.get_label_quality_multiannotator`` computes them (to 1e-6,
with the same consensus labels): the estimator :class:`CrowdLab`. The algorithm is in
:mod:`~crowdbayes.models.crowdlab_algorithm`, the temperature scaling in
:mod:`~crowdbayes.models.temperature`, ActiveLab in
:mod:`~crowdbayes.models.active_learning`, the alignment of ``pred_probs`` in
:mod:`~crowdbayes.models.pred_probs`; their public names are importable from here too.

>>> import numpy as np, pandas as pd
>>> from crowdbayes.models.crowdlab import CrowdLab
>>> wide = pd.DataFrame({"A": [0, 1, 2, 0, 1], "B": [0, 1, 1, None, 1],
...                      "C": [1, 1, 2, 0, None]})
>>> probs = np.array([[.7, .2, .1], [.1, .8, .1], [.2, .3, .5], [.6, .3, .1], [.3, .4, .3]])
>>> cl = CrowdLab().fit(wide, pred_probs=probs)
>>> cl.predict().tolist()
[0, 1, 2, 0, 1]
>>> cl.label_quality()["consensus_quality_score"].round(3).tolist()
[0.687, 0.828, 0.57, 0.693, 0.563]
>>> print(cl.annotator_stats().round(3).to_string())   # cleanlab's, worst first
        annotator_quality  agreement_with_consensus  worst_class  num_examples_labeled
worker
C                   0.645                      0.75            1                     4
B                   0.652                      0.75            1                     4
A                   0.795                      1.00            1                     5
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..base import Aggregator, check_interval, check_is_fitted
from ..data import Annotations, AnnotationsError, _check_probs, _show
from .active_learning import active_learning_scores
from .crowdlab_algorithm import (
    CLIPPING_LOWER_BOUND,
    CrowdLabResult,
    crowdlab,
    labels_of,
    majority_vote_label,
)
from .pred_probs import PredProbsLike, _warn_if_classifier_adversarial, align_pred_probs
from .temperature import cleanlab_vote_shares, find_best_temperature, temperature_scale

__all__ = [
    "CLIPPING_LOWER_BOUND",
    "CrowdLab",
    "CrowdLabResult",
    "PredProbsLike",
    "active_learning_scores",
    "align_pred_probs",
    "cleanlab_vote_shares",
    "crowdlab",
    "find_best_temperature",
    "majority_vote_label",
    "temperature_scale",
]


# ------------------------------------------------------------------ estimator
class CrowdLab(Aggregator):
    """CROWDLAB consensus (cleanlab's ``get_label_quality_multiannotator``), vectorised.

    Parameters
    ----------
    consensus_method : {"best_quality", "majority_vote"}, default "best_quality"
    calibrate_probs : bool, default False
        Temperature-scale ``pred_probs`` to the annotators' vote shares first.
    calibration : {"cleanlab", "votes"}, default "cleanlab"
        The vote shares the temperature is fitted to (also in ``active_learning_scores``):
        cleanlab 2.9's (see :func:`cleanlab_vote_shares`, which packs the counts of a task
        lacking some class into the first classes), or the true shares.
    seed : int or None, default 0
        Seeds the last-resort random tie-break of the majority vote.

    Attributes
    ----------
    proba_ : ndarray ``[T, K]``, the weighted posterior.
    model_weight_ : float; ``annotator_weight_`` : Series by annotator.
    temperature_ : float (1.0 unless ``calibrate_probs``).
    majority_vote_ : Series, the initial majority vote.
    random_tied_tasks_ : Index of tasks whose majority vote was decided at random.

    ``fit(annotations, pred_probs=...)``: annotations long (``task``/``worker``/``label``)
    or wide (tasks x annotators, as cleanlab); ``pred_probs`` a DataFrame indexed by task
    with one column per class (a NumPy array only with wide input), or carried by the
    annotations (``as_annotations(..., pred_probs=...)``).
    """

    # parameters (the constructor takes these)
    consensus_method: str = "best_quality"
    calibrate_probs: bool = False
    calibration: str = "cleanlab"
    seed: int | None = 0

    _uses_pred_probs = True

    def _fit(self, ann: Annotations) -> None:
        """CROWDLAB on the annotations and the ``pred_probs`` they carry (aligned by
        ``fit(annotations, pred_probs=...)``: a DataFrame by task with the classes as
        columns, in any order; an array only with wide input). CROWDLAB has no use for
        gold: giving it is an error that points to
        :class:`~crowdbayes.models.bayesian_crowdlab.BayesianCrowdLab`, which clamps it."""
        pp = ann.require_pred_probs(type(self).__name__)
        if ann.has_gold:
            raise AnnotationsError(
                "CrowdLab does not use gold labels (CROWDLAB has no place for them); "
                "BayesianCrowdLab clamps them: BayesianCrowdLab().fit(annotations, "
                "pred_probs=..., gold=...)"
            )
        # annotators in the wide table's column order (as cleanlab lists them), else as seen
        order = np.arange(ann.n_workers)
        if ann.wide_columns is not None:
            pos = ann.worker_ids.get_indexer(ann.wide_columns)
            order = pos[pos >= 0]
        self.annotator_order_ = order
        lab = labels_of(ann)
        self.raw_pred_probs_ = pp
        self.temperature_ = 1.0
        if self.calibrate_probs:
            self.temperature_ = find_best_temperature(lab.votes, pp, self.calibration)
            pp = temperature_scale(pp, self.temperature_)
        res = crowdlab(lab, pp, consensus_method=self.consensus_method, seed=self.seed)
        self.pred_probs_ = pp
        self.result_ = res
        self.proba_ = res.post
        self.label_codes_ = res.consensus
        self.model_weight_ = res.model_weight
        self.annotator_weight_ = pd.Series(
            res.annotator_weight, index=ann.worker_ids, name="annotator_weight"
        )
        self.majority_vote_ = pd.Series(
            ann.decode_labels(res.majority_vote), index=ann.task_ids, name="label"
        )
        self.random_tied_tasks_ = ann.task_ids[res.random_ties]
        _warn_if_classifier_adversarial(ann, self.raw_pred_probs_, res.majority_vote)

    # ------------------------------------------------------------- outputs
    def label_quality(self) -> pd.DataFrame:
        """Per task (cleanlab's ``label_quality``): ``consensus_label``,
        ``consensus_quality_score``, ``annotator_agreement``, ``num_annotations``."""
        check_is_fitted(self)
        ann, res = self.annotations_, self.result_
        return pd.DataFrame(
            {
                "consensus_label": ann.decode_labels(res.consensus),
                "consensus_quality_score": res.consensus_quality,
                "annotator_agreement": res.annotator_agreement,
                "num_annotations": ann.labels_per_task(),
            },
            index=ann.task_ids,
        )

    def detailed_label_quality(self, format: str = "wide") -> pd.DataFrame:
        """Quality of each label given: the posterior probability of that label.

        ``format="wide"``: cleanlab's ``detailed_label_quality`` (tasks x
        ``quality_annotator_<id>``, NaN where no label; repeated labels of one annotator
        on one task keep the last). ``format="long"``: one row per label given
        (``task``, ``worker``, ``label``, ``quality``), better for large data.
        """
        check_is_fitted(self)
        ann, res = self.annotations_, self.result_
        if format == "long":
            long = ann.to_long()
            long["quality"] = res.label_quality
            return long
        if format != "wide":
            raise ValueError(f"format must be 'wide' or 'long', got {format!r}")
        out = np.full((ann.n_tasks, ann.n_workers), np.nan)
        out[ann.task, ann.worker] = res.label_quality
        order = self.annotator_order_
        if not np.array_equal(order, np.arange(ann.n_workers)):
            out = out[:, order]
        cols = [f"quality_annotator_{w}" for w in ann.worker_ids[order]]
        return pd.DataFrame(out, index=ann.task_ids, columns=cols, copy=False)

    def annotator_stats(self) -> pd.DataFrame:
        """Per annotator, worst first, as cleanlab's ``annotator_stats``:
        ``annotator_quality``, ``agreement_with_consensus``, ``worst_class``,
        ``num_examples_labeled``. Quality is NaN for an annotator none of whose tasks
        has another label."""
        check_is_fitted(self)
        ann, res = self.annotations_, self.result_
        stats = pd.DataFrame(
            {
                "annotator_quality": res.annotator_quality,
                "agreement_with_consensus": res.agreement_with_consensus,
                "worst_class": ann.decode_labels(res.worst_class),
                "num_examples_labeled": res.n_labels_per_worker,
            },
            index=ann.worker_ids,
        ).iloc[self.annotator_order_]
        return stats.sort_values(by=["annotator_quality", "agreement_with_consensus"])

    def annotator_quality(self, interval: float | None = 0.9) -> pd.DataFrame:
        """Per annotator, in the schema of every model
        (:meth:`~crowdbayes.base.Aggregator.annotator_quality`): CROWDLAB's ``quality``
        score (a weighted agreement, not an accuracy; no interval, so ``interval`` is
        only checked), its ``worst_class``, ``n_labels`` and ``agreement`` with the
        consensus. :meth:`annotator_stats` is the same in cleanlab's names and order."""
        check_interval(interval, "annotator_quality")
        check_is_fitted(self)
        ann, res = self.annotations_, self.result_
        return pd.DataFrame(
            {
                "quality": res.annotator_quality,
                "worst_class": ann.decode_labels(res.worst_class),
                "n_labels": res.n_labels_per_worker,
                "agreement": res.agreement_with_consensus,
            },
            index=ann.worker_ids,
        )

    def to_cleanlab(self) -> dict[str, Any]:
        """The results as cleanlab's ``get_label_quality_multiannotator`` returns them."""
        return {
            "label_quality": self.label_quality(),
            "detailed_label_quality": self.detailed_label_quality(),
            "annotator_stats": self.annotator_stats(),
            "model_weight": self.model_weight_,
            "annotator_weight": self.annotator_weight_.to_numpy(),
        }

    def active_learning_scores(
        self, pred_probs_unlabeled: PredProbsLike | None = None
    ) -> tuple[pd.Series, pd.Series | np.ndarray]:
        """ActiveLab scores (cleanlab's ``get_active_learning_scores``) for the fitted
        tasks and, optionally, unlabelled tasks; the lowest are worth labelling next.

        Uses the fitted annotations and the ``pred_probs`` given to ``fit`` (before any
        calibration: ActiveLab calibrates them itself). Unlabelled probabilities in a
        DataFrame (columns = classes) give a Series by its index, an array an array.
        """
        check_is_fitted(self)
        ann = self.annotations_
        pp = self.raw_pred_probs_
        ppu: np.ndarray | None = None
        if isinstance(pred_probs_unlabeled, pd.DataFrame):
            missing = [c for c in ann.classes if c not in set(pred_probs_unlabeled.columns)]
            if missing:
                raise AnnotationsError(
                    f"pred_probs_unlabeled has no column for {_show(missing[0])}"
                )
            ppu = _check_probs(
                pred_probs_unlabeled[list(ann.classes)].to_numpy(np.float64), "pred_probs_unlabeled"
            )
        elif pred_probs_unlabeled is not None:
            ppu = _check_probs(np.asarray(pred_probs_unlabeled), "pred_probs_unlabeled")
        scores, unl = active_learning_scores(
            labels_of(ann), pp, ppu, seed=self.seed, calibration=self.calibration
        )
        labelled = pd.Series(scores, index=ann.task_ids, name="active_learning_score")
        if isinstance(pred_probs_unlabeled, pd.DataFrame):
            return labelled, pd.Series(
                unl, index=pred_probs_unlabeled.index, name="active_learning_score"
            )
        return labelled, unl
