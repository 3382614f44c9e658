"""Input alignment of the CROWDLAB models: the classifier's ``pred_probs`` matched to the
tasks and classes of the annotations (:func:`align_pred_probs`, what
``as_annotations(..., pred_probs=...)`` and ``Annotations.with_pred_probs`` run, defined in
:mod:`crowdbayes.data` with them and re-exported here), and the warning when the
classifier's columns look out of order."""

from __future__ import annotations

import warnings

import numpy as np

from ..base import AdversarialWarning
from ..data import Annotations, PredProbsLike, _show_list, align_pred_probs

__all__ = ["PredProbsLike", "align_pred_probs"]


def _warn_if_classifier_adversarial(
    ann: Annotations, pred_probs: np.ndarray, majority_vote: np.ndarray
) -> None:
    """Warn when the classifier's top class agrees with the annotators' majority vote
    clearly less often than chance (its agreement if the two were independent, less three
    standard errors): most often its columns are not in the order of the classes."""
    top = np.argmax(pred_probs, axis=1)
    K, T = pred_probs.shape[1], len(top)
    agree = float(np.mean(top == majority_vote))
    chance = float(
        np.dot(np.bincount(top, minlength=K) / T, np.bincount(majority_vote, minlength=K) / T)
    )
    if agree < chance - 3.0 * np.sqrt(chance * (1.0 - chance) / T):
        warnings.warn(
            f"CrowdLab: the classifier's top class agrees with the annotators' majority vote "
            f"on {agree:.1%} of tasks, worse than chance ({chance:.1%}): its pred_probs "
            f"columns are likely not in the class order {_show_list(ann.classes)}; give "
            "pred_probs as a DataFrame whose columns are the class labels",
            AdversarialWarning,
            stacklevel=4,  # the user's fit: its _fit, Aggregator.fit
        )
