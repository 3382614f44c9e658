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
['gold', 'ordinary', 'gold', 'ordinary']
>>> annotator_quality_plot(gmv).data[0].error_x.type
'data'
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
    """Histograms of task uncertainty and consistency, gold and ordinary tasks apart."""
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
                    ax.hist(part[metric], bins=bins, alpha=0.6, label=name, color=_COLOURS[name])
            ax.set_xlabel(metric)
            ax.set_ylabel("tasks")
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
                    name=name,
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
        fig.update_yaxes(title_text="tasks", row=1, col=col)
    fig.update_layout(barmode="overlay", height=360, margin={"t": 40, "b": 40})
    return fig


def annotator_quality_table(model: Aggregator, *, confidence: float = 0.95) -> pd.DataFrame:
    """Per annotator: ``quality`` with ``low``/``high`` bounds, ``n_labels`` and ``n_gold``,
    best first.

    The quality is the model's own interval where ``annotator_quality(interval=...)``
    gives one (the Bayesian models), else the accuracy on gold tasks with a Wilson
    interval, else the model's point accuracy (or agreement) without bounds.
    """
    check_is_fitted(model)
    ann = model.annotations_
    quality_fn = getattr(model, "annotator_quality", None)
    table: pd.DataFrame | None = None
    if quality_fn is not None:
        try:
            q = quality_fn(interval=confidence)
        except TypeError:
            q = quality_fn()
        base = "accuracy" if "accuracy" in q.columns else "agreement"
        lows = [c for c in (f"{base}_low", "low", f"{base}_lower") if c in q.columns]
        highs = [c for c in (f"{base}_high", "high", f"{base}_upper") if c in q.columns]
        if lows and highs and base in q.columns:
            table = pd.DataFrame(
                {"quality": q[base], "low": q[lows[0]], "high": q[highs[0]]}, index=q.index
            )
    if table is None and ann.has_gold:
        acc = annotator_accuracy(model, confidence=confidence)
        skills = getattr(model, "skills_", None)
        quality = skills if isinstance(skills, pd.Series) else acc["accuracy"]
        table = pd.DataFrame(
            {"quality": quality.to_numpy(), "low": acc["low"], "high": acc["high"]},
            index=acc.index,
        )
    if table is None:
        q = quality_fn() if quality_fn is not None else None
        col = "accuracy" if q is not None and "accuracy" in q.columns else "agreement"
        point = q[col] if q is not None and col in q.columns else pd.Series(np.nan, ann.worker_ids)
        table = pd.DataFrame({"quality": point, "low": np.nan, "high": np.nan})
    table = table.reindex(ann.worker_ids)
    table["n_labels"] = ann.labels_per_worker()
    if ann.has_gold:
        table["n_gold"] = annotator_accuracy(model)["n_gold"].to_numpy()
    table.index.name = "annotator"
    return table.sort_values("quality", ascending=False, kind="stable")


def annotator_quality_plot(
    model: Aggregator, *, confidence: float = 0.95, backend: str = "plotly"
) -> Any:
    """Annotator quality (best first) with its interval (see :func:`annotator_quality_table`)."""
    _check_backend(backend)
    t = annotator_quality_table(model, confidence=confidence)
    names = [str(i) for i in t.index]
    q = t["quality"].to_numpy(dtype=float)
    lo = np.nan_to_num(q - t["low"].to_numpy(dtype=float), nan=0.0)
    hi = np.nan_to_num(t["high"].to_numpy(dtype=float) - q, nan=0.0)
    title = f"Annotator quality ({round(confidence * 100)}% interval)"
    if backend == "matplotlib":
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(8, max(2.5, 0.18 * len(names))))
        y = np.arange(len(names))
        ax.errorbar(q, y, xerr=[lo, hi], fmt="o", ms=3, capsize=2)
        ax.set_yticks(y, names, fontsize=6)
        ax.invert_yaxis()
        ax.set_xlabel("quality")
        ax.set_title(title)
        fig.tight_layout()
        return fig
    go = _plotly()
    fig = go.Figure(
        go.Scatter(
            x=q,
            y=names,
            mode="markers",
            error_x={"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
            customdata=np.stack([t["n_labels"].to_numpy()], axis=1),
            hovertemplate="%{y}: %{x:.3f} (%{customdata[0]} labels)<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        xaxis_title="quality",
        yaxis={"autorange": "reversed", "type": "category"},
        height=max(300, 16 * len(names) + 120),
        margin={"t": 50, "b": 40},
    )
    return fig


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
