"""Quality control after a batch: list the tasks a person should look at.

:func:`suspicious_tasks` flags tasks whose posterior is uncertain, whose chosen label
is improbable, or (gold tasks) where the crowd does not back the gold label, and
returns them with their inputs, the labels given and the reason, most suspicious
first. Uncertainty and consistency are those of :func:`crowdbayes.metrics.task_metrics`.

>>> import crowdbayes as cb
>>> from crowdbayes.models.gold_majority_vote import GoldMajorityVote
>>> labels, truth = cb.datasets.load("bluebirds")
>>> gmv = GoldMajorityVote().fit(labels, gold=truth.iloc[::4])   # every 4th task is gold
>>> flagged = suspicious_tasks(gmv, tasks="gold")
>>> len(flagged)
18
>>> print(flagged[["gold_label", "crowd_label", "labels_given"]].head(3).to_string())
       gold_label crowd_label labels_given
task
11673          1            0   0 24, 1 15
11637          1            0   0 23, 1 16
36657          0            1   0 16, 1 23
>>> flagged["reason"].iloc[0]
'uncertainty 0.678 > 0.5; consistency 0.413 < 0.5; crowd says 0, gold is 1'
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import Aggregator, check_is_fitted
from .metrics import task_metrics

__all__ = ["labels_given", "suspicious_tasks"]


def labels_given(model: Aggregator) -> pd.Series:
    """Per task, the labels given as text (``"cat 2, dog 1"``: each class with its count)."""
    check_is_fitted(model)
    ann = model.annotations_
    votes = ann.vote_counts()
    t, k = np.nonzero(votes)
    parts = pd.Series(
        [f"{c} {n}" for c, n in zip(ann.decode_labels(k), votes[t, k], strict=True)],
        index=t,
    )
    text = parts.groupby(level=0, sort=True).agg(", ".join)
    return pd.Series(text.to_numpy(), index=ann.task_ids[text.index], name="labels_given")


def suspicious_tasks(
    model: Aggregator,
    uncertainty_above: float | None = 0.5,
    consistency_below: float | None = 0.5,
    *,
    gold_disagreement: bool = True,
    tasks: str = "all",
) -> pd.DataFrame:
    """Flagged tasks, most suspicious first, with their inputs and why they were flagged.

    Parameters
    ----------
    model : a fitted aggregator.
    uncertainty_above : flag tasks whose uncertainty (posterior entropy, nats) exceeds this
        (``None`` turns the rule off). For ``K`` classes the largest possible is ``log K``.
    consistency_below : flag tasks whose consistency (probability of the chosen label; for
        gold tasks, the crowd's probability of the gold label) is below this.
    gold_disagreement : flag gold tasks where the crowd's own label differs from gold.
    tasks : ``"all"``, ``"gold"`` or ``"ordinary"``: which tasks to consider.

    Returns
    -------
    DataFrame indexed by task: ``label`` (aggregated), ``crowd_label``, ``gold``,
    ``gold_label``, ``consistency``, ``uncertainty``, ``n_labels``, ``labels_given``,
    ``reason``, then the task inputs (platform ``INPUT:`` columns) where known. Sorted by
    consistency (lowest first), then uncertainty (highest first).
    """
    if tasks not in ("all", "gold", "ordinary"):
        raise ValueError(f"tasks must be 'all', 'gold' or 'ordinary', got {tasks!r}")
    tm = task_metrics(model)
    reasons = pd.DataFrame(index=tm.index)
    if uncertainty_above is not None:
        hit = tm["uncertainty"].to_numpy() > uncertainty_above
        text = "uncertainty " + tm["uncertainty"].map("{:.3f}".format) + f" > {uncertainty_above}"
        reasons["u"] = text.where(hit, "")
    if consistency_below is not None:
        hit = tm["consistency"].to_numpy() < consistency_below
        text = "consistency " + tm["consistency"].map("{:.3f}".format) + f" < {consistency_below}"
        reasons["c"] = text.where(hit, "")
    if gold_disagreement:
        hit = tm["gold"].to_numpy() & (tm["crowd_label"] != tm["gold_label"]).to_numpy()
        text = (
            "crowd says "
            + tm["crowd_label"].astype(str)
            + ", gold is "
            + tm["gold_label"].astype(str)
        )
        reasons["g"] = text.where(hit, "")
    reason = pd.Series("", index=tm.index)
    for col in reasons.columns:  # at most three rules
        part = reasons[col]
        both = (reason != "") & (part != "")
        reason = reason + np.where(both, "; ", "") + part
    keep = reason.to_numpy() != ""
    if tasks == "gold":
        keep &= tm["gold"].to_numpy()
    elif tasks == "ordinary":
        keep &= ~tm["gold"].to_numpy()
    out = tm.loc[
        keep,
        ["label", "crowd_label", "gold", "gold_label", "consistency", "uncertainty", "n_labels"],
    ].copy()
    out["labels_given"] = labels_given(model).loc[out.index]
    out["reason"] = reason[keep]
    inputs = model.annotations_.task_inputs
    if inputs is not None:
        extra = inputs.reindex(out.index)
        extra = extra[[c for c in extra.columns if c not in out.columns]]
        out = out.join(extra)
    order = np.lexsort((-out["uncertainty"].to_numpy(), out["consistency"].to_numpy()))
    out = out.iloc[order]
    out.index.name = "task"
    return out
