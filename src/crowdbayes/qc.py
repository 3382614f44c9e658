"""Quality control after a batch: list the tasks a person should look at.

:func:`suspicious_tasks` flags tasks whose posterior is uncertain, whose chosen label
is improbable, or (gold tasks) where the crowd does not back the gold label, and
returns them with their inputs, the labels given and the reason, ranked by one score (the
model's probability that the label is wrong), most suspicious first; by default the tenth
of the tasks with the highest score, and gold tasks the crowd gets wrong. Uncertainty and consistency are those of :func:`crowdbayes.metrics.task_metrics`.

>>> import crowdbayes as cb
>>> from crowdbayes.models.gold_majority_vote import GoldMajorityVote
>>> labels, truth = cb.datasets.load("bluebirds")
>>> gmv = GoldMajorityVote().fit(labels, gold=truth.iloc[::4])   # every 4th task is gold
>>> len(suspicious_tasks(gmv))  # by default: the tenth of the tasks with the highest score
11
>>> flagged = suspicious_tasks(gmv, uncertainty_above=0.5, consistency_below=0.5, tasks="gold")
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

__all__ = ["DEFAULT_SHARE", "describe_rule", "labels_given", "suspicious_tasks"]


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


#: The share of tasks flagged when no rule is given: about what a person reviews of a batch.
DEFAULT_SHARE = 0.1


def suspicious_tasks(
    model: Aggregator,
    uncertainty_above: float | None = None,
    consistency_below: float | None = None,
    *,
    share: float | None = None,
    gold_disagreement: bool = True,
    tasks: str = "all",
) -> pd.DataFrame:
    """Flagged tasks, most suspicious first, with their inputs and why they were flagged.

    Every task has one score, ``1 - consistency``: the model's probability that the task's
    label is wrong (for a gold task, that the crowd does not back the gold label); the
    flagged tasks are ranked by it. Each rule below flags tasks on its own, and a task is
    flagged when any rule given flags it. With none of ``uncertainty_above``,
    ``consistency_below`` and ``share`` given, ``share=0.1`` applies: the tenth of the tasks
    with the highest score, about what a person can review of a batch, whatever the scale
    of the model's probabilities.

    Parameters
    ----------
    model : a fitted aggregator.
    uncertainty_above : flag tasks whose uncertainty (posterior entropy, nats) exceeds this.
        For ``K`` classes the largest possible is ``log K``.
    consistency_below : flag tasks whose consistency (probability of the chosen label; for
        gold tasks, the crowd's probability of the gold label) is below this.
    share : flag this share of the tasks considered (rounded up), those with the highest
        score (ties: the higher uncertainty, then the task order); tasks whose label has
        probability 1 are never flagged by it. ``0`` turns it off.
    gold_disagreement : flag gold tasks where the crowd's own label differs from gold.
    tasks : ``"all"``, ``"gold"`` or ``"ordinary"``: which tasks to consider.

    Returns
    -------
    DataFrame indexed by task: ``label`` (aggregated), ``crowd_label``, ``gold``,
    ``gold_label``, ``consistency``, ``uncertainty``, ``score``, ``n_labels``,
    ``labels_given``, ``reason``, then the task inputs (platform ``INPUT:`` columns) where
    known. Sorted by score (highest first), then uncertainty (highest first).
    """
    if tasks not in ("all", "gold", "ordinary"):
        raise ValueError(f"tasks must be 'all', 'gold' or 'ordinary', got {tasks!r}")
    if uncertainty_above is None and consistency_below is None and share is None:
        share = DEFAULT_SHARE
    if share is not None and not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share!r}")
    tm = task_metrics(model)
    considered = np.ones(len(tm), dtype=bool)
    if tasks == "gold":
        considered = tm["gold"].to_numpy()
    elif tasks == "ordinary":
        considered = ~tm["gold"].to_numpy()
    score = 1.0 - tm["consistency"].to_numpy(dtype=np.float64)
    uncertainty = tm["uncertainty"].to_numpy(dtype=np.float64)
    # rank: highest score first, then highest uncertainty, then task order (stable)
    order = np.lexsort((-uncertainty, -score))
    reasons = pd.DataFrame(index=tm.index)
    if share:
        pool = order[considered[order] & (score[order] > 0)]
        n_pick = min(int(np.ceil(share * considered.sum() - 1e-9)), len(pool))
        hit = np.zeros(len(tm), dtype=bool)
        hit[pool[:n_pick]] = True
        text = (
            f"in the {share:.0%} least consistent (consistency "
            + tm["consistency"].map("{:.3f}".format)
            + ")"
        )
        reasons["s"] = text.where(hit, "")
    if uncertainty_above is not None:
        hit = uncertainty > uncertainty_above
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
    for col in reasons.columns:  # at most four rules
        part = reasons[col]
        both = (reason != "") & (part != "")
        reason = reason + np.where(both, "; ", "") + part
    keep = (reason.to_numpy() != "") & considered
    ranked = order[keep[order]]
    out = tm.iloc[ranked][
        ["label", "crowd_label", "gold", "gold_label", "consistency", "uncertainty"]
    ].copy()
    out["score"] = score[ranked]
    out["n_labels"] = tm["n_labels"].to_numpy()[ranked]
    out["labels_given"] = labels_given(model).loc[out.index]
    out["reason"] = reason.to_numpy()[ranked]
    inputs = model.annotations_.task_inputs
    if inputs is not None:
        extra = inputs.reindex(out.index)
        extra = extra[[c for c in extra.columns if c not in out.columns]]
        out = out.join(extra)
    out.index.name = "task"
    return out


def describe_rule(
    uncertainty_above: float | None = None,
    consistency_below: float | None = None,
    share: float | None = None,
    gold_disagreement: bool = True,
) -> str:
    """The rule :func:`suspicious_tasks` applies with these arguments, in words.

    >>> print(describe_rule())
    the 10% of tasks with the highest score (1 - consistency); gold tasks where the crowd's label differs from gold
    >>> print(describe_rule(consistency_below=0.5, gold_disagreement=False))
    consistency < 0.5
    """
    if uncertainty_above is None and consistency_below is None and share is None:
        share = DEFAULT_SHARE
    parts = []
    if share:
        parts.append(f"the {share:.0%} of tasks with the highest score (1 - consistency)")
    if uncertainty_above is not None:
        parts.append(f"uncertainty > {uncertainty_above}")
    if consistency_below is not None:
        parts.append(f"consistency < {consistency_below}")
    if gold_disagreement:
        parts.append("gold tasks where the crowd's label differs from gold")
    return "; ".join(parts) if parts else "no rule (nothing is flagged)"
