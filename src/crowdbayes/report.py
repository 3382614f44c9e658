"""One self-contained HTML page for a labelling batch: summary, plots, annotators, suspicious tasks.

:func:`build_report` takes a fitted model, or annotations (a platform export, a long
table, a file) that it fits first, and writes a page that works offline: plotly's
JavaScript is inlined once, nothing is fetched from a CDN. Task inputs that are URLs
become links. ``crowdbayes report INPUT --out report.html`` is the command-line door
(:func:`add_report_command`).

The page records its own health for automated checks: the element ``#cb-status`` gets
``data-plots`` (plots on the page), ``data-drawn`` (plots drawn, set after load) and
``data-errors`` (script errors seen).

>>> import crowdbayes as cb
>>> labels, truth = cb.datasets.load("wsd")
>>> page = build_report(labels, gold=truth.iloc[:20], held_out=truth.iloc[20:])
>>> page.count("<script src="), page.count('class="cb-plot"')
(0, 3)
>>> "Suspicious tasks" in page and "GoldMajorityVote" in page
True
"""

from __future__ import annotations

import argparse
import html
import os
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .base import Aggregator, check_is_fitted
from .cli import REPORT_MODELS
from .data import Annotations, AnnotationsError, GoldLike
from .io import read_annotations, read_gold_file
from .metrics import (
    fleiss_kappa,
    gold_accuracy,
    krippendorff_alpha,
    quality_summary,
)
from .plots import (
    annotator_quality_plot,
    annotator_quality_table,
    confusion_matrix_plot,
    quality_histograms,
)
from .qc import describe_rule, suspicious_tasks

__all__ = ["add_report_command", "build_report", "default_model"]

MODELS = REPORT_MODELS  # defined with the command line, which parses without this module


def default_model(ann: Annotations, name: str | None = None) -> Aggregator:
    """The model a report fits: ``gmv`` (GoldMajorityVote) when there is gold, else ``ds``
    (Dawid–Skene); ``name`` (``gmv``, ``ds``, ``mv``) overrides."""
    from .models.dawid_skene import DawidSkene
    from .models.gold_majority_vote import GoldMajorityVote
    from .models.majority_vote import MajorityVote

    key = name or ("gmv" if ann.has_gold else "ds")
    factories: dict[str, Callable[[], Aggregator]] = {
        "gmv": GoldMajorityVote,
        "ds": DawidSkene,
        "mv": lambda: MajorityVote(tie_break="smallest"),
    }
    if key not in factories:
        raise ValueError(f"model must be one of {MODELS}, got {key!r}")
    if key == "gmv" and not ann.has_gold:
        raise AnnotationsError("model gmv (GoldMajorityVote) needs gold labels: pass --gold")
    return factories[key]()


# ------------------------------------------------------------------ html
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.25em;margin:28px 0 8px;
border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#666;font-size:.9em}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:10px 14px;min-width:120px}
.card b{display:block;font-size:1.3em}.card span{color:#666;font-size:.85em}
table{border-collapse:collapse;background:#fff;font-size:.85em;margin:6px 0}
th,td{border:1px solid #e3e3e3;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
.scroll{max-height:520px;overflow:auto;border:1px solid #e3e3e3}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;margin:8px 0}
.cb-plot{background:#fff;border:1px solid #e3e3e3;margin:8px 0}
"""

_HEAD_JS = """
window.__cbErrors = [];
window.addEventListener('error', function (e) {
  window.__cbErrors.push(String(e.message || e.type));
});
"""

_TAIL_JS = """
function cbCheck() {
  var s = document.getElementById('cb-status');
  var drawn = 0;
  document.querySelectorAll('.cb-plot').forEach(function (d) {
    var p = d.querySelector('.js-plotly-plot');
    if (p && p.querySelector('svg.main-svg') && p._fullLayout) { drawn += 1; }
  });
  s.setAttribute('data-drawn', String(drawn));
  s.setAttribute('data-errors', String(window.__cbErrors.length));
  s.setAttribute('data-error-text', window.__cbErrors.join(' | '));
  s.textContent = drawn + ' of ' + s.getAttribute('data-plots') + ' plots drawn';
}
window.addEventListener('load', function () { setTimeout(cbCheck, 0); });
"""


def _esc(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float | np.floating):
        return f"{value:.3f}"
    text = str(value)
    if text.startswith(("http://", "https://")):
        e = html.escape(text, quote=True)
        return f'<a href="{e}" target="_blank" rel="noopener">{e}</a>'
    return html.escape(text)


def _table(df: pd.DataFrame, index_name: str | None = None) -> str:
    """An HTML table with escaped cells and URL cells as links (the frames here are small:
    the annotator table and the flagged tasks)."""
    cols = list(df.columns)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [index_name or df.index.name, *cols])
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in cols]
    cells = df.astype(object).to_numpy()
    idx = df.index.to_numpy()
    body = "\n".join(
        "<tr><td>"
        + _esc(i)
        + "</td>"
        + "".join(
            f'<td class="num">{_esc(v)}</td>' if num else f"<td>{_esc(v)}</td>"
            for v, num in zip(row, numeric, strict=True)
        )
        + "</tr>"
        for i, row in zip(idx, cells, strict=True)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _card(value: str, label: str) -> str:
    return f'<div class="card"><b>{html.escape(value)}</b><span>{html.escape(label)}</span></div>'


def _figure_html(fig: Any, first: bool) -> str:
    div = fig.to_html(full_html=False, include_plotlyjs=bool(first), config={"responsive": True})
    return f'<div class="cb-plot">{div}</div>'


def _fmt(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def build_report(
    data: Aggregator | Annotations | pd.DataFrame | str | os.PathLike[str],
    path: str | os.PathLike[str] | None = None,
    *,
    gold: GoldLike = None,
    held_out: GoldLike = None,
    model: str | None = None,
    title: str | None = None,
    uncertainty_above: float | None = None,
    consistency_below: float | None = None,
    share: float | None = None,
    max_tasks: int = 500,
    label_field: str | None = None,
) -> str:
    """Build the HTML report; write it to ``path`` when given; return the HTML.

    Parameters
    ----------
    data : a fitted model, or annotations (Annotations, DataFrame, file; platform exports
        are recognised) to fit ``model`` to.
    gold : gold (control) labels to fit with, task id -> label (added to an export's own).
    held_out : gold labels *not* used in the fit, to report the model's accuracy on.
    model : ``"gmv"``, ``"ds"`` or ``"mv"`` when ``data`` is not a fitted model; default
        GoldMajorityVote with gold, Dawid–Skene without.
    uncertainty_above, consistency_below, share : the rules of
        :func:`~crowdbayes.qc.suspicious_tasks` (each on its own; with none given, the tenth
        of the tasks with the highest score); the page states the rule applied.
    max_tasks : at most this many suspicious tasks are listed (the most suspicious).
    """
    if isinstance(data, Aggregator):
        check_is_fitted(data)
        fitted = data
        if gold is not None:
            raise ValueError("gold= is for fitting: pass it to the model's fit instead")
    else:
        if isinstance(data, Annotations):
            ann = data if gold is None else data.with_gold(gold)
        else:
            ann = read_annotations(data, gold=gold, label_field=label_field)
        fitted = default_model(ann, model)
        fitted.fit(ann)
    ann = fitted.annotations_
    name = type(fitted).__name__
    title = title or "Labelling quality report"

    summary = quality_summary(fitted)
    cards = [
        _card(f"{ann.n_labels:,}", "labels"),
        _card(f"{ann.n_tasks:,}", "tasks"),
        _card(f"{ann.n_workers:,}", "annotators"),
        _card(f"{ann.n_classes}", "classes"),
        _card(f"{int((ann.gold >= 0).sum()):,}", "gold tasks"),
    ]
    notes: list[str] = []
    try:
        cards.append(_card(_fmt(krippendorff_alpha(ann)), "Krippendorff's alpha"))
        cards.append(_card(_fmt(fleiss_kappa(ann)), "Fleiss' kappa"))
    except AnnotationsError as err:
        notes.append(f"Agreement not computed: {err}")
    if ann.has_gold:
        acc = gold_accuracy(fitted)
        cards.append(
            _card(
                f"{acc['accuracy']:.3f} [{acc['low']:.3f}, {acc['high']:.3f}]",
                f"crowd accuracy on {int(acc['n'])} gold tasks (95% Wilson)",
            )
        )
    if held_out is not None:
        acc = gold_accuracy(fitted, held_out)
        cards.append(
            _card(
                f"{acc['accuracy']:.3f} [{acc['low']:.3f}, {acc['high']:.3f}]",
                f"model accuracy on {int(acc['n'])} held-out gold tasks (95% Wilson)",
            )
        )
    missing = getattr(fitted, "workers_without_gold_", None)
    if missing is not None and len(missing):
        notes.append(
            f"{len(missing)} annotator(s) labelled no gold task; they were given skill "
            f"{fitted.default_skill_:.3f} (rule: {fitted.missing_skill!r}, the pooled accuracy "  # type: ignore[attr-defined]
            "of all labels on gold tasks by default)."
        )

    figures = [quality_histograms(fitted), annotator_quality_plot(fitted)]
    quality = annotator_quality_table(fitted)
    busy = quality[quality["n_labels"] >= min(5, int(quality["n_labels"].max()))]
    worst = busy["quality"].astype(float).idxmin() if busy["quality"].notna().any() else None
    if worst is None:
        worst = quality.index[-1]
    figures.append(confusion_matrix_plot(fitted, worst))
    plots = [_figure_html(fig, first=i == 0) for i, fig in enumerate(figures)]

    rules: dict[str, Any] = {
        "uncertainty_above": uncertainty_above,
        "consistency_below": consistency_below,
        "share": share,
    }
    flagged = suspicious_tasks(fitted, **rules)
    n_flagged = len(flagged)
    shown = flagged.head(max_tasks)
    rule = html.escape(describe_rule(**rules))
    if ann.dropped:
        left_out = ", ".join(f"{n:,} {status}" for status, n in ann.dropped.items())
        cards.append(_card(f"{sum(ann.dropped.values()):,}", "assignments left out"))
        notes.append(
            f"Left out as not votes: {left_out} assignment(s) (by their ASSIGNMENT:status); "
            "read the export with drop_statuses=() to count them."
        )

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    note_html = "".join(f'<div class="note">{html.escape(n)}</div>' for n in notes)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
<script>{_HEAD_JS}</script>
</head><body><main>
<h1>{html.escape(title)}</h1>
<div class="meta">Model: {html.escape(name)} &middot; classes: {
        html.escape(", ".join(map(str, ann.classes)))
    }
 &middot; generated {stamp} by crowdbayes &middot;
 <span id="cb-status" data-plots="{len(plots)}" data-drawn="-1" data-errors="-1"></span></div>
<h2>Summary</h2>
<div class="cards">{"".join(cards)}</div>
{note_html}
<p>Uncertainty is the entropy (nats) of a task's posterior; consistency the posterior
probability of the chosen label. For gold tasks both come from the annotators' labels alone
(the gold label left out), so they show whether the crowd backs the gold label.</p>
{_table(summary.round(3), "tasks")}
<h2>Uncertainty and consistency</h2>
{plots[0]}
<h2>Annotators</h2>
{plots[1]}
{plots[2]}
<div class="scroll">{_table(quality, "annotator")}</div>
<h2>Suspicious tasks ({n_flagged})</h2>
<p>Flagged: {rule}. Ranked by one score, 1 &minus; consistency (the model's probability
that the task's label is wrong), most suspicious first{
        f"; the first {max_tasks} shown" if n_flagged > max_tasks else ""
    }.</p>
<div class="scroll">{_table(shown, "task")}</div>
</main>
<script>{_TAIL_JS}</script>
</body></html>
"""
    if path is not None:
        Path(path).write_text(page, encoding="utf-8")
    return page


# ----------------------------------------------------------- command line
def add_report_command(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``crowdbayes report`` on an argparse subparsers object (its handler runs
    :func:`run_report`; the arguments are defined in :func:`crowdbayes.cli.add_report_parser`,
    which the command line builds without importing this module)."""
    from .cli import add_report_parser

    return add_report_parser(subparsers)


def run_report(args: argparse.Namespace) -> int:
    """Handler of ``crowdbayes report`` (errors propagate as AnnotationsError/ValueError)."""
    from . import datasets

    held_out = None
    if args.dataset is not None:
        if args.input is not None:
            raise AnnotationsError("give either INPUT or --dataset, not both")
        labels, truth = datasets.load(args.dataset)
        ann = read_annotations(labels)
        if len(truth):
            if not 0.0 < args.gold_fraction <= 1.0:
                raise ValueError(f"--gold-fraction must be in (0, 1], got {args.gold_fraction}")
            rng = np.random.default_rng(args.seed)
            n = max(1, round(args.gold_fraction * len(truth)))
            pick = np.zeros(len(truth), dtype=bool)
            pick[rng.choice(len(truth), n, replace=False)] = True
            ann = ann.with_gold(truth[pick])
            held_out = truth[~pick] if (~pick).any() else None
        source = f"dataset {args.dataset}"
    else:
        if args.input is None:
            raise AnnotationsError("no input: give a file (CSV/TSV/Parquet) or --dataset NAME")
        from .cli import _read_file  # platform exports, long (renamed) and wide tables

        ann = _read_file(args)
        if args.gold is not None:
            extra = read_gold_file(args.gold, ann)
            merged = pd.concat(
                [ann.gold_series(), extra[~extra.index.isin(ann.task_ids[ann.gold >= 0])]]
            )
            try:
                ann = ann.with_gold(merged)
            except AnnotationsError as err:
                raise AnnotationsError(f"{args.gold}: {err}") from err
        source = str(args.input)
    title = args.title or f"Labelling quality report: {source}"
    build_report(
        ann,
        args.out,
        held_out=held_out,
        model=args.model,
        title=title,
        uncertainty_above=args.uncertainty_above,
        consistency_below=args.consistency_below,
        share=args.share,
    )
    print(
        f"wrote {args.out} ({source}: {ann.n_labels} labels, {ann.n_tasks} tasks)",
        file=sys.stderr,
    )
    return 0
