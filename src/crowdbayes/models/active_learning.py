"""ActiveLab (cleanlab's ``get_active_learning_scores``): which tasks to label next,
from CROWDLAB's consensus quality and weights and the classifier's probabilities."""

from __future__ import annotations

import numpy as np

from .crowdlab_algorithm import Labels, _majority_vote, crowdlab
from .temperature import find_best_temperature, temperature_scale

__all__ = ["active_learning_scores"]


def active_learning_scores(
    lab: Labels | None,
    pred_probs: np.ndarray | None,
    pred_probs_unlabeled: np.ndarray | None = None,
    seed: int | None = 0,
    calibration: str = "cleanlab",
) -> tuple[np.ndarray, np.ndarray]:
    """ActiveLab scores (cleanlab's ``get_active_learning_scores``): low = label next.

    Labelled tasks mix their consensus quality (classifier temperature-scaled to the
    annotators) with ``1/K`` by the weight of their labels and the classifier against
    the mean annotator weight; unlabelled tasks mix the classifier's top probability
    with ``1/K`` by the classifier's and the mean annotator's weights.
    """
    K = None
    temperature, model_weight, mean_aw = 1.0, 1.0, 1.0
    scores = np.array([])
    if pred_probs is not None:
        if lab is None:
            raise ValueError("labelled pred_probs need the annotations")
        pp = np.asarray(pred_probs, dtype=np.float64)
        K = pp.shape[1]
        if (lab.n_per_task == 1).all():
            consensus, _ = _majority_vote(lab, pp, seed)
            quality = pp[np.arange(lab.n_tasks), consensus]
            aw = np.ones(lab.n_workers)
        else:
            temperature = find_best_temperature(lab.votes, pp, calibration)
            res = crowdlab(lab, temperature_scale(pp, temperature), seed=seed)
            quality, model_weight, aw = (
                res.consensus_quality,
                res.model_weight,
                res.annotator_weight,
            )
        mean_aw = float(np.mean(aw))
        label_w = np.bincount(lab.task, weights=aw[lab.worker], minlength=lab.n_tasks)
        w1 = label_w + model_weight
        scores = (quality * w1 + mean_aw / K) / (w1 + mean_aw)
    unlabeled = np.array([])
    if pred_probs_unlabeled is not None:
        ppu = temperature_scale(np.asarray(pred_probs_unlabeled, np.float64), temperature)
        K = ppu.shape[1] if K is None else K
        if ppu.shape[1] != K:
            raise ValueError("pred_probs and pred_probs_unlabeled must have the same classes")
        top = ppu.max(axis=1)
        unlabeled = (top * model_weight + mean_aw / K) / (model_weight + mean_aw)
    elif pred_probs is None:
        raise ValueError("give pred_probs (with annotations), pred_probs_unlabeled, or both")
    return scores, unlabeled
