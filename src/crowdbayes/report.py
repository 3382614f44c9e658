"""One self-contained HTML page for a labelling batch: whom to look at, which tasks to relabel.

:func:`build_report` takes a fitted model, or annotations (a platform export, a long
table, a file) that it fits first (``recommended`` by default, any model of
:data:`crowdbayes.registry.MODELS` by name), and writes one page that works offline:
plotly's JavaScript and every number are inlined, nothing is fetched from a server or a
CDN. The page holds, in the order a batch owner acts on them:

- a summary (labels, tasks, agreement, accuracy on gold and held-out gold);
- the annotators, worst first, with their quality's 90% interval (the API's level),
  label count and gold accuracy: a plot of the worst and best ``n`` (readable at any
  crowd size), a sortable, searchable table of all of them, and a picker (a select
  element) for any annotator's confusion matrix;
- the suspicious tasks, ranked by one score with the rule stated on the page, their
  ``INPUT:*`` image URLs as lazy thumbnails (the link alone when an image cannot load);
- histograms of uncertainty and consistency as shares, gold and ordinary tasks apart.

Tables fit the page's width and wrap. ``crowdbayes report INPUT --out report.html`` is
the command-line door (:func:`add_report_command`).

The page records its own health for automated checks: the element ``#cb-status`` gets
``data-plots`` (plots on the page), ``data-drawn`` (plots drawn, set after load),
``data-errors`` (script errors and ``console.error`` calls seen), ``data-wide`` (tables or
boxes wider than the window), ``data-first-annotator`` (the first row of the annotator
table) and ``data-images``/``data-images-failed``.

>>> import crowdbayes as cb
>>> labels, truth = cb.datasets.load("wsd")
>>> page = build_report(labels, gold=truth.iloc[:20], held_out=truth.iloc[20:])
>>> page.count("<script src="), page.count('class="cb-plot"')
(0, 3)
>>> "Suspicious tasks" in page and "CalibratedDawidSkene" in page
True
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._report_parser import add_report_parser
from .base import Aggregator, check_is_fitted
from .data import Annotations, AnnotationsError, GoldLike, merge_gold
from .io import _read_file, _read_pred_probs, read_annotations, read_gold_file
from .metrics import (
    fleiss_kappa,
    gold_accuracy,
    krippendorff_alpha,
    quality_summary,
)
from .plots import (
    annotator_confusions,
    annotator_quality_plot,
    annotator_quality_table,
    confusion_matrix_plot,
    quality_histograms,
)
from .qc import describe_rule, suspicious_tasks
from .registry import MODELS as REGISTRY

__all__ = ["DEFAULT_MODEL", "add_report_command", "build_report", "default_model"]

#: The model a report fits when none is named: the registry's benchmarked default.
DEFAULT_MODEL = next(iter(REGISTRY))
MODELS = tuple(REGISTRY)  # every registered model, by its command-line name

#: The interval level of the annotator table and plot: the API's (``annotator_quality``).
CONFIDENCE = 0.9


def default_model(ann: Annotations, name: str | None = None) -> Aggregator:
    """The model a report fits: ``name`` from :data:`crowdbayes.registry.MODELS`
    (``recommended`` by default: Dawid–Skene with calibrated probabilities, gold clamped
    where given), unfitted, with its default parameters.

    >>> import crowdbayes as cb
    >>> ann = cb.Annotations.from_long(cb.datasets.load("wsd")[0])
    >>> type(default_model(ann)).__name__, type(default_model(ann, "mace")).__name__
    ('CalibratedDawidSkene', 'MACE')
    """
    key = name or DEFAULT_MODEL
    if key not in REGISTRY:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {key!r}")
    spec = REGISTRY[key]
    if spec.needs_gold and not ann.has_gold:
        raise AnnotationsError(f"model {key} ({spec.estimator}) needs gold labels: pass --gold")
    return spec.build()


# ------------------------------------------------------------------ html
_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
background:#fafafa}
main{max-width:1200px;margin:0 auto;padding:16px 24px}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.25em;margin:28px 0 8px;
border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#666;font-size:.9em}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:10px 14px;min-width:120px}
.card b{display:block;font-size:1.3em}.card span{color:#666;font-size:.85em}
table{border-collapse:collapse;background:#fff;font-size:.85em;margin:6px 0;max-width:100%}
table.full{width:100%}
th,td{border:1px solid #e3e3e3;padding:4px 8px;text-align:left;vertical-align:top;
overflow-wrap:break-word}
td.text{overflow-wrap:anywhere}
th{background:#f0f0f0;position:sticky;top:0;z-index:1}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th.sortable{cursor:pointer;user-select:none}
th.sortable::after{content:" \\2195";color:#999}
th[data-sort=asc]::after{content:" \\2191";color:#222}
th[data-sort=desc]::after{content:" \\2193";color:#222}
.box{max-height:560px;overflow-y:auto;overflow-x:hidden;border:1px solid #e3e3e3;max-width:100%}
.box table{margin:0;width:100%}
tr.pick{cursor:pointer}tr.pick:hover td{background:#eef4ff}
tr.chosen td{background:#dde8ff}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;margin:8px 0}
.cb-plot{background:#fff;border:1px solid #e3e3e3;margin:8px 0;max-width:100%;overflow:hidden}
.tools{display:flex;flex-wrap:wrap;gap:12px;align-items:center;margin:8px 0}
.tools input,.tools select{font:inherit;padding:3px 6px;max-width:100%}
.thumb img{display:block;max-width:120px;max-height:90px;height:auto;margin-bottom:2px}
.rule{background:#fff;border:1px solid #e3e3e3;padding:6px 10px}
"""

_HEAD_JS = """
window.__cbErrors = [];
window.__cbImages = {failed: 0};
window.addEventListener('error', function (e) {
  window.__cbErrors.push(String(e.message || e.type));
});
(function () {
  var original = console.error;
  console.error = function () {
    window.__cbErrors.push(Array.prototype.join.call(arguments, ' '));
    return original.apply(console, arguments);
  };
})();
function cbImageFailed(img) {  // offline or not an image: the link alone stays
  window.__cbImages.failed += 1;
  img.remove();
}
"""

_TAIL_JS = """
function cbKey(cell) {
  if (cell.hasAttribute('data-v')) {
    var v = parseFloat(cell.getAttribute('data-v'));
    return isNaN(v) ? null : v;
  }
  var t = cell.textContent.trim();
  return t === '' ? null : t.toLowerCase();
}
function cbSort(th) {
  var table = th.closest('table');
  var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var asc = th.getAttribute('data-sort') !== 'asc';
  table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-sort'); });
  th.setAttribute('data-sort', asc ? 'asc' : 'desc');
  var keyed = rows.map(function (r, i) { return [cbKey(r.cells[idx]), i, r]; });
  keyed.sort(function (a, b) {
    if (a[0] === null || b[0] === null) {
      return (a[0] === null) - (b[0] === null) || a[1] - b[1];  // blanks last
    }
    var c = a[0] < b[0] ? -1 : (a[0] > b[0] ? 1 : 0);
    return (asc ? c : -c) || a[1] - b[1];
  });
  keyed.forEach(function (k) { body.appendChild(k[2]); });
}
function cbFilter(input) {
  var table = document.getElementById(input.getAttribute('data-table'));
  var q = input.value.trim().toLowerCase();
  var shown = 0;
  Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
    var hit = q === '' || r.cells[0].textContent.toLowerCase().indexOf(q) >= 0;
    r.style.display = hit ? '' : 'none';
    shown += hit ? 1 : 0;
  });
  var count = document.getElementById(input.getAttribute('data-count'));
  var n = table.tBodies[0].rows.length;
  if (count) {
    count.textContent = shown.toLocaleString('en-US') + ' of ' + n.toLocaleString('en-US') + ' shown';
  }
}
var cbConfusion = null;
function cbShowConfusion(i) {
  if (cbConfusion === null) {
    cbConfusion = JSON.parse(document.getElementById('cb-confusion-data').textContent);
  }
  var d = cbConfusion, z = d.z[i];
  var text = z.map(function (row) { return row.map(function (v) { return v.toFixed(2); }); });
  var div = document.getElementById('cb-confusion');
  if (window.Plotly && div && div._fullLayout) {
    Plotly.restyle(div, {z: [z], text: [text]});
    Plotly.relayout(div, {'title.text': 'Annotator ' + d.ids[i] + ': ' + d.what});
  }
  var pick = document.getElementById('cb-pick');
  if (pick && pick.value !== String(i)) { pick.value = String(i); }
  document.querySelectorAll('#cb-annotators tr.chosen').forEach(function (r) {
    r.classList.remove('chosen');
  });
  var row = document.querySelector('#cb-annotators tr[data-i="' + i + '"]');
  if (row) { row.classList.add('chosen'); }
}
document.querySelectorAll('th.sortable').forEach(function (th) {
  th.addEventListener('click', function () { cbSort(th); });
});
document.querySelectorAll('input.cb-filter').forEach(function (input) {
  input.addEventListener('input', function () { cbFilter(input); });
});
var cbPick = document.getElementById('cb-pick');
if (cbPick) {
  cbPick.addEventListener('change', function () { cbShowConfusion(parseInt(cbPick.value, 10)); });
}
document.querySelectorAll('#cb-annotators tr.pick').forEach(function (r) {
  r.addEventListener('click', function () {
    cbShowConfusion(parseInt(r.getAttribute('data-i'), 10));
  });
});
function cbCheck() {
  var s = document.getElementById('cb-status');
  var drawn = 0;
  document.querySelectorAll('.cb-plot').forEach(function (d) {
    var p = d.querySelector('.js-plotly-plot');
    if (p && p.querySelector('svg.main-svg') && p._fullLayout) { drawn += 1; }
  });
  var view = document.documentElement.clientWidth, wide = [];
  document.querySelectorAll('table, .box, .cb-plot').forEach(function (t) {
    var r = t.getBoundingClientRect();
    if (r.right > view + 1 || r.left < -1 || t.scrollWidth > t.clientWidth + 1) {
      wide.push((t.id || t.className || t.tagName) + ':' + Math.round(r.width));
    }
  });
  var first = document.querySelector('#cb-annotators tbody tr');
  s.setAttribute('data-drawn', String(drawn));
  s.setAttribute('data-errors', String(window.__cbErrors.length));
  s.setAttribute('data-error-text', window.__cbErrors.join(' | '));
  s.setAttribute('data-viewport', String(view));
  s.setAttribute('data-page-width', String(document.documentElement.scrollWidth));
  s.setAttribute('data-wide', String(wide.length));
  s.setAttribute('data-wide-text', wide.join(' '));
  s.setAttribute('data-first-annotator', first ? first.getAttribute('data-id') : '');
  s.setAttribute('data-images', String(document.querySelectorAll('td img').length));
  s.setAttribute('data-images-failed', String(window.__cbImages.failed));
  s.textContent = drawn + ' of ' + s.getAttribute('data-plots') + ' plots drawn';
}
window.addEventListener('load', function () { setTimeout(cbCheck, 0); });
"""

_IMAGE_EXT = re.compile(r"\.(?:png|jpe?g|gif|webp|svg|bmp|avif)(?:\?.*)?$", re.IGNORECASE)
_IMAGE_COLUMN = re.compile(r"ima?ge?|photo|picture|thumb|pic", re.IGNORECASE)


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def _cell(value: Any, image: bool = False) -> str:
    """A cell's HTML: numbers to 3 decimals, URLs as links, image URLs as thumbnails
    (lazy; removed when they cannot load, so the link alone stays offline)."""
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return ""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else ""
    if isinstance(value, float | np.floating):
        return f"{value:.3f}"
    if isinstance(value, np.integer):
        return str(int(value))
    text = str(value)
    if _is_url(text):
        e = html.escape(text, quote=True)
        if image:
            return (
                f'<a class="thumb" href="{e}" target="_blank" rel="noopener">'
                f'<img loading="lazy" src="{e}" alt="" onerror="cbImageFailed(this)">{e}</a>'
            )
        return f'<a href="{e}" target="_blank" rel="noopener">{e}</a>'
    return html.escape(text)


def _sort_value(value: Any) -> str | None:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        return None
    return "" if not np.isfinite(value) else repr(float(value))


def _table(
    df: pd.DataFrame,
    index_name: str | None = None,
    *,
    table_id: str | None = None,
    sortable: bool = False,
    images: tuple[str, ...] = (),
    row_attrs: list[str] | None = None,
    full: bool = False,
) -> str:
    """An HTML table: escaped cells, numbers right-aligned (with a ``data-v`` to sort by),
    URL cells as links and, in the ``images`` columns, thumbnails; long text wraps."""
    cols = list(df.columns)
    th_class = ' class="sortable"' if sortable else ""
    head = "".join(
        f"<th{th_class}>{html.escape(str(c))}</th>" for c in [index_name or df.index.name, *cols]
    )
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and df[c].dtype != bool for c in cols]
    is_image = [c in images for c in cols]
    cells = df.astype(object).to_numpy()
    idx = df.index.to_numpy()
    rows = []
    for r, (i, row) in enumerate(zip(idx, cells, strict=True)):
        parts = []
        for v, num, img in zip(row, numeric, is_image, strict=True):
            if num:
                key = _sort_value(v)
                data = f' data-v="{key}"' if key is not None else ""
                parts.append(f'<td class="num"{data}>{_cell(v)}</td>')
            else:
                parts.append(f'<td class="text">{_cell(v, img)}</td>')
        attrs = row_attrs[r] if row_attrs is not None else ""
        rows.append(f"<tr{attrs}><td>{_cell(i)}</td>{''.join(parts)}</tr>")
    body = "\n".join(rows)
    tid = f' id="{table_id}"' if table_id else ""
    cls = ' class="full"' if full else ""
    return f"<table{tid}{cls}><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _card(value: str, label: str) -> str:
    return f'<div class="card"><b>{html.escape(value)}</b><span>{html.escape(label)}</span></div>'


def _figure_html(fig: Any, first: bool, div_id: str | None = None) -> str:
    div = fig.to_html(
        full_html=False,
        include_plotlyjs=bool(first),
        config={"responsive": True, "displaylogo": False},
        div_id=div_id,
    )
    return f'<div class="cb-plot">{div}</div>'


def _fmt(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _json_script(element_id: str, data: Any) -> str:
    text = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _annotator_section(
    fitted: Aggregator, quality: pd.DataFrame, n_plot: int
) -> tuple[str, Any, Any]:
    """The annotator table's HTML, the worst/best plot and the confusion heatmap."""
    ann = fitted.annotations_
    level = f"{round(CONFIDENCE * 100)}%"
    shown = pd.DataFrame(index=quality.index)
    shown["quality"] = quality["quality"]
    shown[f"{level} low"] = quality["lower"]
    shown[f"{level} high"] = quality["upper"]
    shown["labels"] = quality["n_labels"].astype(int)
    if "n_gold" in quality:
        shown["gold tasks"] = quality["n_gold"].astype(int)
        shown["gold accuracy"] = quality["gold_accuracy"]
    positions = ann.worker_ids.get_indexer(quality.index)
    attrs = [
        f' class="pick" data-i="{p}" data-id="{html.escape(str(w), quote=True)}"'
        for p, w in zip(positions, quality.index, strict=True)
    ]
    table = _table(
        shown, "annotator", table_id="cb-annotators", sortable=True, row_attrs=attrs, full=True
    )
    plot = annotator_quality_plot(fitted, confidence=CONFIDENCE, n=n_plot, table=quality)
    worst = int(positions[0])
    heat = confusion_matrix_plot(fitted, ann.worker_ids[worst])
    heat.update_layout(width=None, autosize=True, height=min(640, 260 + 40 * ann.n_classes))
    return table, plot, heat


def build_report(
    data: Aggregator | Annotations | pd.DataFrame | str | os.PathLike[str],
    path: str | os.PathLike[str] | None = None,
    *,
    gold: GoldLike = None,
    held_out: GoldLike = None,
    model: str | None = None,
    pred_probs: Any = None,
    title: str | None = None,
    uncertainty_above: float | None = None,
    consistency_below: float | None = None,
    share: float | None = None,
    max_tasks: int = 500,
    n_plot: int = 20,
    label_field: str | None = None,
) -> str:
    """Build the HTML report; write it to ``path`` when given; return the HTML.

    Parameters
    ----------
    data : a fitted model, or annotations (Annotations, DataFrame, file; platform exports
        are recognised) to fit ``model`` to.
    gold : gold (control) labels to fit with, task id -> label (added to an export's own).
    held_out : gold labels *not* used in the fit, to report the model's accuracy on.
    model : a model's name in :data:`crowdbayes.registry.MODELS` (``crowdbayes models``
        lists them) when ``data`` is not a fitted model; default ``recommended``.
    pred_probs : the classifier's probabilities, for the models that need them
        (``crowdlab``, ``bayesian-crowdlab``).
    uncertainty_above, consistency_below, share : the rules of
        :func:`~crowdbayes.qc.suspicious_tasks` (each on its own; with none given, the tenth
        of the tasks with the highest score); the page states the rule applied.
    max_tasks : at most this many suspicious tasks are listed (the most suspicious).
    n_plot : the annotator plot shows the ``n_plot`` worst and best annotators (all of
        them up to ``2 n_plot``); the table below it lists every annotator.
    """
    if isinstance(data, Aggregator):
        check_is_fitted(data)
        fitted = data
        if gold is not None or pred_probs is not None:
            raise ValueError("gold= and pred_probs= are for fitting: pass them to the model's fit")
        chosen = "fitted by the caller"
    else:
        if isinstance(data, Annotations):
            ann = data if gold is None else data.with_gold(gold)
        else:
            ann = read_annotations(data, gold=gold, label_field=label_field)
        fitted = default_model(ann, model)
        key = model or DEFAULT_MODEL
        if REGISTRY[key].needs_pred_probs:
            if pred_probs is None:
                raise ValueError(f"model {key} needs the classifier's pred_probs=")
            if key == "crowdlab" and ann.has_gold:
                # CROWDLAB has no place for gold: fitted without it, scored against it
                fitted.fit(replace(ann, gold=np.full_like(ann.gold, -1)), pred_probs=pred_probs)
                known = ann.gold >= 0
                gold_labels = pd.Series(
                    np.asarray(ann.classes)[ann.gold[known]], index=ann.task_ids[known]
                )
                fitted.annotations_ = fitted.annotations_.with_gold(gold_labels)
            else:
                fitted.fit(ann, pred_probs=pred_probs)
        else:
            if pred_probs is not None:
                raise ValueError(f"model {key} does not use pred_probs=")
            fitted.fit(ann)
        chosen = f"--model {key}" + (" (the default)" if model is None else "")
    ann = fitted.annotations_
    name = type(fitted).__name__
    title = title or "Labelling quality report"

    summary = quality_summary(fitted)
    summary = summary[summary["n_tasks"] > 0].dropna(axis=1, how="all")
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
                f"{acc['accuracy']:.3f} [{acc['lower']:.3f}, {acc['upper']:.3f}]",
                f"crowd accuracy on {int(acc['n'])} gold tasks (95% Wilson)",
            )
        )
    if held_out is not None:
        acc = gold_accuracy(fitted, held_out)
        cards.append(
            _card(
                f"{acc['accuracy']:.3f} [{acc['lower']:.3f}, {acc['upper']:.3f}]",
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
    if ann.dropped:
        left_out = ", ".join(f"{n:,} {status}" for status, n in ann.dropped.items())
        cards.append(_card(f"{sum(ann.dropped.values()):,}", "assignments left out"))
        notes.append(
            f"Left out as not votes: {left_out} assignment(s) (by their ASSIGNMENT:status); "
            "read the export with drop_statuses=() to count them."
        )

    # ---- annotators: worst first, plot of the worst and best, table, confusion picker
    quality = annotator_quality_table(fitted, confidence=CONFIDENCE)
    ann_table, quality_fig, heat_fig = _annotator_section(fitted, quality, n_plot)
    confusions, what = annotator_confusions(fitted)
    positions = ann.worker_ids.get_indexer(quality.index)
    options = "".join(
        f'<option value="{p}">{html.escape(str(w))}</option>'
        for p, w in zip(positions, quality.index, strict=True)
    )
    confusion_data = {
        "ids": [str(w) for w in ann.worker_ids],
        "what": what,
        "z": np.round(np.nan_to_num(confusions), 3).tolist(),
    }
    figures = [(quality_fig, None), (heat_fig, "cb-confusion"), (quality_histograms(fitted), None)]
    plots = [_figure_html(fig, i == 0, div_id) for i, (fig, div_id) in enumerate(figures)]
    level = f"{round(CONFIDENCE * 100)}%"

    # ---- suspicious tasks, ranked by one score
    rules: dict[str, Any] = {
        "uncertainty_above": uncertainty_above,
        "consistency_below": consistency_below,
        "share": share,
    }
    flagged = suspicious_tasks(fitted, **rules)
    n_flagged = len(flagged)
    inputs = ann.task_inputs
    input_cols = [c for c in (inputs.columns if inputs is not None else []) if c in flagged]
    columns = ["score", "label", "crowd_label"]
    if ann.has_gold:
        columns.append("gold_label")
    columns += ["uncertainty", "n_labels", "labels_given", "reason", *input_cols]
    shown = flagged.head(max_tasks)[columns].rename(
        columns={
            "crowd_label": "crowd label",
            "gold_label": "gold label",
            "n_labels": "labels",
            "labels_given": "labels given",
        }
    )
    images = tuple(
        c
        for c in input_cols
        if _IMAGE_COLUMN.search(str(c))
        or shown[c].astype(str).str.contains(_IMAGE_EXT, regex=True).any()
    )
    rule = html.escape(describe_rule(**rules, gold_disagreement=ann.has_gold))

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    note_html = "".join(f'<div class="note">{html.escape(n)}</div>' for n in notes)
    n_more = f"; the first {max_tasks} shown" if n_flagged > max_tasks else ""
    image_note = (
        " Image inputs show as thumbnails when their URLs can be reached; offline, the link alone."
        if images
        else ""
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
<script>{_HEAD_JS}</script>
</head><body><main>
<h1>{html.escape(title)}</h1>
<div class="meta">Model: {html.escape(name)} ({html.escape(chosen)}) &middot; classes: {
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
<h2>Annotators, worst first ({ann.n_workers:,})</h2>
<p>Quality: {html.escape(quality.attrs["quality"])}. Sorted {
        html.escape(quality.attrs.get("order", "lowest first"))
    };
intervals at {level} (the level of <code>annotator_quality()</code>), labels
the annotator's label count{
        ", gold accuracy the share of its labels on gold tasks that match gold"
        if ann.has_gold
        else ""
    }. Click a column to sort, type to search, click a row for its confusion matrix.</p>
{plots[0]}
<div class="tools"><label>Confusion matrix of <select id="cb-pick">{options}</select></label>
<span class="meta">({html.escape(what)}; rows the true class, columns the label given)</span></div>
{plots[1]}
{_json_script("cb-confusion-data", confusion_data)}
<div class="tools"><input class="cb-filter" type="search" data-table="cb-annotators"
 data-count="cb-annotators-count" placeholder="search annotators" aria-label="search annotators">
<span id="cb-annotators-count" class="meta">{ann.n_workers:,} of {
        ann.n_workers:,} shown</span></div>
<div class="box">{ann_table}</div>
<h2>Suspicious tasks ({n_flagged:,} of {ann.n_tasks:,})</h2>
<p class="rule">Flagged: {rule}. Ranked by one score, 1 &minus; consistency (the model's
probability that the task's label is wrong), most suspicious first{n_more}.{image_note}</p>
<div class="box">{
        _table(shown, "task", table_id="cb-tasks", sortable=True, images=images, full=True)
    }</div>
<h2>Uncertainty and consistency</h2>
<p>Shares of each group's tasks, so that the gold tasks compare with the ordinary ones.</p>
{plots[2]}
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
    :func:`run_report`; the arguments are those of the command line's
    :func:`crowdbayes.cli.add_report_parser`, both defined in ``crowdbayes._report_parser``)."""
    return add_report_parser(subparsers, run_report)


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
        ann = _read_file(args)  # platform exports, long (renamed) and wide tables, as the CLI
        if args.gold is not None:  # added to the export's, a task both give: one label
            names = ("the export's GOLDEN: column", str(args.gold))
            existing = ann.gold_series() if ann.has_gold else None
            ann = ann.with_gold(merge_gold(existing, read_gold_file(args.gold, ann), names))
        source = str(args.input)
    title = args.title or f"Labelling quality report: {source}"
    pred_probs = None
    if getattr(args, "pred_probs", None) is not None:
        pred_probs = _read_pred_probs(args.pred_probs, ann, getattr(args, "task_col", "task"))
    build_report(
        ann,
        args.out,
        held_out=held_out,
        model=getattr(args, "model", None),
        pred_probs=pred_probs,
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
