"""Plots for quality control: uncertainty and consistency, annotator quality, confusion.

Each function takes a fitted model and returns a plotly figure, or a matplotlib figure
with ``backend="matplotlib"`` (for a static image). Both libraries are optional (the
``plot`` extra); a clear ``ImportError`` says so when one is missing.

>>> import crowdbayes as cb
>>> from crowdbayes.models.gold_majority_vote import GoldMajorityVote
>>> labels, truth = cb.datasets.load("wsd")
>>> gmv = GoldMajorityVote().fit(labels, gold=truth.iloc[:30])
>>> fig = quality_histograms(gmv)
>>> [trace.name for trace in fig.data]
['gold (30 tasks)', 'ordinary (147 tasks)', 'gold (30 tasks)', 'ordinary (147 tasks)']
>>> [trace.name for trace in annotator_quality_plot(gmv, n=5).data]
['worst', 'best']
>>> fig = confusion_matrix_plot(gmv, labels["worker"].iloc[0], backend="matplotlib")
>>> type(fig).__name__
'Figure'
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .base import Aggregator, check_is_fitted
from .metrics import annotator_accuracy, task_metrics

__all__ = [
    "annotator_confusions",
    "annotator_quality_plot",
    "annotator_quality_table",
    "confusion_matrix_plot",
    "quality_histograms",
]

_COLOURS = {"gold": "#d62728", "ordinary": "#1f77b4"}


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "crowdbayes plots need plotly: pip install 'crowdbayes[plot]' (or plotly)"
        ) from err
    return go


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "static plots need matplotlib: pip install 'crowdbayes[plot]' (or matplotlib)"
        ) from err
    return plt


def _check_backend(backend: str) -> None:
    if backend not in ("plotly", "matplotlib"):
        raise ValueError(f"backend must be 'plotly' or 'matplotlib', got {backend!r}")


def quality_histograms(model: Aggregator, *, bins: int = 20, backend: str = "plotly") -> Any:
    """Histograms of task uncertainty and consistency, gold and ordinary tasks apart, each
    as shares of its own tasks (so that a few gold tasks compare with many ordinary ones)."""
    _check_backend(backend)
    tm = task_metrics(model)
    parts = {"gold": tm[tm["gold"]], "ordinary": tm[~tm["gold"]]}
    metrics = ("uncertainty", "consistency")
    if backend == "matplotlib":
        plt = _pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        for ax, metric in zip(axes, metrics, strict=True):
            for name, part in parts.items():
                if len(part):
                    weights = np.full(len(part), 1.0 / len(part))
                    ax.hist(
                        part[metric],
                        bins=bins,
                        weights=weights,
                        alpha=0.6,
                        label=f"{name} ({len(part)})",
                        color=_COLOURS[name],
                    )
            ax.set_xlabel(metric)
            ax.set_ylabel("share of tasks")
            ax.legend()
        fig.tight_layout()
        return fig
    go = _plotly()
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Task uncertainty (nats)", "Consistency"))
    for col, metric in enumerate(metrics, start=1):
        for name, part in parts.items():
            fig.add_trace(
                go.Histogram(
                    x=part[metric].to_numpy(),
                    name=f"{name} ({len(part)} tasks)",
                    histnorm="probability",
                    nbinsx=bins,
                    opacity=0.65,
                    marker_color=_COLOURS[name],
                    legendgroup=name,
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text=metric, row=1, col=col)
        fig.update_yaxes(title_text="share of tasks", row=1, col=col)
    fig.update_layout(barmode="overlay", height=360, margin={"t": 40, "b": 40})
    return fig


def _quality_columns(q: pd.DataFrame) -> tuple[str, str | None, str | None] | None:
    """The point estimate's column in an ``annotator_quality()`` frame and its bounds."""
    for base in ("accuracy", "quality", "agreement"):
        if base in q.columns:
            lows = [c for c in (f"{base}_lower",) if c in q.columns]
            highs = [c for c in (f"{base}_upper",) if c in q.columns]
            return base, lows[0] if lows else None, highs[0] if highs else None
    return None


def annotator_quality_table(model: Aggregator, *, confidence: float = 0.9) -> pd.DataFrame:
    """Per annotator, worst first: ``quality`` with ``lower``/``upper`` bounds, ``n_labels``,
    and with gold ``n_gold`` (gold tasks labelled) and ``gold_accuracy``.

    The quality is the model's own estimate with its ``confidence`` interval where
    ``annotator_quality(interval=...)`` gives one (the Bayesian models; 0.9 as their
    API), else the accuracy on gold tasks with a Wilson interval (GoldMajorityVote),
    else the model's point estimate (accuracy, CrowdLab's quality score or agreement
    with the consensus) without bounds. ``attrs["quality"]`` says which, in words.
    The order is the table's own, whatever the estimator's: the lowest quality first
    (ties: more labels first), annotators without an estimate last; for accuracy on gold
    (no model interval), the lowest upper bound first, so that an annotator with one
    gold label wrong does not head the table above one wrong on 40 of 100.

    >>> import crowdbayes as cb
    >>> labels, truth = cb.datasets.load("wsd")
    >>> t = annotator_quality_table(cb.DawidSkene().fit(labels))
    >>> list(t.columns), bool(t["quality"].is_monotonic_increasing)
    (['quality', 'lower', 'upper', 'n_labels'], True)
    """
    check_is_fitted(model)
    ann = model.annotations_
    level = f"{round(confidence * 100)}%"
    q = model.annotator_quality(interval=confidence)  # every model's one schema
    cols = _quality_columns(q)
    acc = annotator_accuracy(model, confidence=confidence) if ann.has_gold else None
    # accuracy on gold (GoldMajorityVote: its n_gold beside Wilson bounds): the lowest
    # upper bound first, as for any model's gold accuracy below
    wilson = "n_gold" in q.columns
    if cols is not None and cols[1] is not None and cols[2] is not None:
        base, low, high = cols
        table = pd.DataFrame({"quality": q[base], "lower": q[low], "upper": q[high]}, index=q.index)
        what = f"the model's {base.replace('_', ' ')} with its {level} interval"
    elif acc is not None:
        table = acc[["accuracy", "lower", "upper"]].rename(columns={"accuracy": "quality"})
        wilson = True
    else:
        if cols is not None:
            point = q[cols[0]]
            what = f"the model's {cols[0].replace('_', ' ')} (no interval)"
        else:
            point = pd.Series(np.nan, index=ann.worker_ids)
            what = "not estimated by this model"
        table = pd.DataFrame({"quality": point, "lower": np.nan, "upper": np.nan})
    if wilson:
        what = f"accuracy on the gold tasks with its {level} Wilson interval"
    table = table.reindex(ann.worker_ids).astype(float)
    table["n_labels"] = ann.labels_per_worker()
    if acc is not None:
        table["n_gold"] = acc["n_gold"].to_numpy()
        table["gold_accuracy"] = acc["accuracy"].to_numpy(dtype=float)
    table.index.name = "annotator"
    quality = table["quality"].to_numpy(dtype=float)
    keys = [-table["n_labels"].to_numpy(), np.where(np.isnan(quality), np.inf, quality)]
    if wilson:  # raw gold accuracy: one wrong gold label is not the worst annotator
        upper = table["upper"].to_numpy(dtype=float)
        keys.append(np.where(np.isnan(upper), np.inf, upper))
    order = np.lexsort(keys)
    out = table.iloc[order]
    out.attrs["quality"] = what
    out.attrs["order"] = (
        "by the interval's upper bound, lowest first (one wrong gold label does not make"
        " an annotator the worst)"
        if wilson
        else "by it, lowest first (ties: more labels first)"
    )
    out.attrs["confidence"] = confidence
    return out


def annotator_quality_plot(
    model: Aggregator,
    *,
    confidence: float = 0.9,
    n: int = 20,
    backend: str = "plotly",
    table: pd.DataFrame | None = None,
) -> Any:
    """Annotator quality with its interval (see :func:`annotator_quality_table`): the ``n``
    worst (first, at the top) and the ``n`` best annotators, or all of them when there
    are at most ``2 n``, so that the plot stays readable at any crowd size.

    ``table`` is :func:`annotator_quality_table`'s result when already computed.
    """
    _check_backend(backend)
    t = annotator_quality_table(model, confidence=confidence) if table is None else table
    t = t[t["quality"].notna()]
    total = len(t)
    if total > 2 * n:
        parts = [("worst", t.iloc[:n]), ("best", t.iloc[-n:])]
        title = (
            f"The {n} worst and {n} best of {total:,} annotators "
            f"({round(confidence * 100)}% interval)"
        )
    else:
        parts = [("all", t)]
        title = f"Annotator quality, worst first ({round(confidence * 100)}% interval)"
    if backend == "matplotlib":
        plt = _pyplot()
        fig, axes = plt.subplots(
            len(parts),
            1,
            figsize=(8, max(2.5, 0.18 * sum(len(p) for _, p in parts) + 1)),
            squeeze=False,
        )
        for ax, (name, part) in zip(axes[:, 0], parts, strict=True):
            q = part["quality"].to_numpy(dtype=float)
            lo = np.nan_to_num(q - part["lower"].to_numpy(dtype=float), nan=0.0)
            hi = np.nan_to_num(part["upper"].to_numpy(dtype=float) - q, nan=0.0)
            y = np.arange(len(part))
            ax.errorbar(q, y, xerr=[lo, hi], fmt="o", ms=3, capsize=2)
            ax.set_yticks(y, [str(i) for i in part.index], fontsize=6)
            ax.invert_yaxis()
            ax.set_xlabel("quality")
            ax.set_title(name if len(parts) > 1 else title, fontsize=9)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        return fig
    go = _plotly()
    from plotly.subplots import make_subplots

    sizes = [max(len(p), 1) for _, p in parts]
    fig = make_subplots(
        rows=len(parts),
        cols=1,
        shared_xaxes=True,
        row_heights=sizes,
        vertical_spacing=0.06 if len(parts) > 1 else 0.02,
        subplot_titles=[f"{len(p)} {name}" for name, p in parts] if len(parts) > 1 else None,
    )
    colours = {"worst": "#d62728", "best": "#2ca02c", "all": "#1f77b4"}
    for row, (name, part) in enumerate(parts, start=1):
        q = part["quality"].to_numpy(dtype=float)
        lo = np.nan_to_num(q - part["lower"].to_numpy(dtype=float), nan=0.0)
        hi = np.nan_to_num(part["upper"].to_numpy(dtype=float) - q, nan=0.0)
        gold = (
            part["gold_accuracy"].to_numpy(dtype=float)
            if "gold_accuracy" in part
            else np.full(len(part), np.nan)
        )
        fig.add_trace(
            go.Scatter(
                x=q,
                y=[str(i) for i in part.index],
                mode="markers",
                name=name,
                showlegend=False,
                marker={"color": colours[name], "size": 7},
                error_x={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
                customdata=np.stack([part["n_labels"].to_numpy(dtype=float), gold], axis=1),
                hovertemplate="%{y}: %{x:.3f} (%{customdata[0]} labels, "
                "gold accuracy %{customdata[1]:.3f})<extra></extra>",
            ),
            row=row,
            col=1,
        )
        fig.update_yaxes(autorange="reversed", type="category", automargin=True, row=row, col=1)
    fig.update_xaxes(title_text="quality", row=len(parts), col=1)
    fig.update_layout(
        title={"text": title, "font": {"size": 14}},
        height=max(300, 16 * sum(sizes) + 140),
        margin={"t": 60, "b": 40, "l": 10, "r": 10},
    )
    return fig


def annotator_confusions(model: Aggregator) -> tuple[np.ndarray, str]:
    """Every annotator's confusion matrix ``[W, K, K]`` (annotators in the fitted data's
    order; rows the true class, columns the label given) and what it is, in words.

    Models with fitted confusion matrices (the Dawid–Skene family) give theirs; others
    the share of each annotator's labels against gold where known, else against the
    aggregated label (rows without labels are zeros)."""
    check_is_fitted(model)
    ann = model.annotations_
    K, W = ann.n_classes, ann.n_workers
    fitted = getattr(model, "confusion_", None)
    if isinstance(fitted, np.ndarray) and fitted.shape == (W, K, K):
        return np.asarray(fitted, dtype=float), "fitted confusion matrix"
    ref = np.where(ann.gold >= 0, ann.gold, np.asarray(model.label_codes_))[ann.task]
    flat = (ann.worker.astype(np.int64) * K + ref) * K + ann.label
    counts = np.bincount(flat, minlength=W * K * K).reshape(W, K, K).astype(float)
    rows = counts.sum(axis=2, keepdims=True)
    return counts / np.where(rows > 0, rows, 1.0), "label shares (true: gold or aggregated)"


def _confusion(model: Aggregator, worker: Any) -> tuple[pd.DataFrame, str]:
    check_is_fitted(model)
    ann = model.annotations_
    fitted = getattr(model, "confusion_matrix", None)
    if fitted is not None:
        return fitted(worker), "fitted confusion matrix"
    pos = ann.worker_ids.get_indexer([worker])[0]
    if pos < 0:
        raise KeyError(f"annotator {worker!r} is not in the fitted data")
    mine = ann.worker == pos
    ref = np.where(ann.gold >= 0, ann.gold, model.label_codes_)[ann.task[mine]]
    K = ann.n_classes
    counts = np.bincount(ref * K + ann.label[mine], minlength=K * K).reshape(K, K)
    rows = counts.sum(axis=1, keepdims=True)
    share = counts / np.where(rows > 0, rows, 1)
    frame = pd.DataFrame(
        share,
        index=pd.Index(ann.classes, name="true"),
        columns=pd.Index(ann.classes, name="given"),
    )
    return frame, "label shares (true: gold or aggregated)"


def confusion_matrix_plot(model: Aggregator, worker: Any, *, backend: str = "plotly") -> Any:
    """Confusion matrix of one annotator: rows the true class, columns the label given.

    Models with a fitted confusion matrix (Dawid–Skene) show it; others show the share
    of the annotator's labels against gold where known, else against the aggregated label.
    """
    _check_backend(backend)
    frame, what = _confusion(model, worker)
    labels = [str(c) for c in frame.columns]
    z = frame.to_numpy(dtype=float)
    title = f"Annotator {worker}: {what}"
    if backend == "matplotlib":
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(4.5, 4))
        im = ax.imshow(z, vmin=0, vmax=1, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("given")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=8)
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        return fig
    go = _plotly()
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=labels,
            y=labels,
            zmin=0,
            zmax=1,
            colorscale="Blues",
            text=np.round(z, 2),
            texttemplate="%{text}",
        )
    )
    fig.update_layout(
        title=title,
        xaxis={"title": "given", "type": "category"},
        yaxis={"title": "true", "type": "category", "autorange": "reversed"},
        height=400,
        width=560,
        title_font_size=13,
    )
    return fig
