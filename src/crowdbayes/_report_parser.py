"""The arguments of ``crowdbayes report``, on their own (standard library only): the
command line (:func:`crowdbayes.cli.add_report_parser`) builds them without importing
:mod:`crowdbayes.report` (pandas, plots), and :func:`crowdbayes.report.add_report_command`
without importing :mod:`crowdbayes.cli`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .registry import MODELS

__all__ = ["add_report_parser", "dataset_names"]


def dataset_names() -> list[str]:
    """The bundled datasets' names (``--dataset``'s choices)."""
    from .datasets import available

    return available()


def add_report_parser(
    subparsers: Any, handler: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    """Register ``crowdbayes report``, run by ``handler``, on an argparse subparsers object."""
    rep = subparsers.add_parser(
        "report", help="write a self-contained HTML quality report (plots, annotators, tasks)"
    )
    rep.add_argument("input", nargs="?", help="platform export or long table (CSV/TSV/Parquet)")
    rep.add_argument("--dataset", choices=dataset_names(), help="use a bundled dataset")
    rep.add_argument("--gold", help="gold (control) labels file (task, label), used in the fit")
    rep.add_argument(
        "--gold-fraction",
        type=float,
        default=0.1,
        help="with --dataset: share of the dataset's gold used as control tasks; the rest is "
        "held out to measure accuracy (default 0.1)",
    )
    rep.add_argument("--out", required=True, help="the HTML file to write")
    rep.add_argument(
        "--model",
        choices=list(MODELS),
        help="the model behind the report (default: recommended; `crowdbayes models` lists them)",
    )
    rep.add_argument(
        "--pred-probs",
        help="crowdlab, bayesian-crowdlab: a classifier's out-of-sample probabilities "
        "(CSV/Parquet, one row per task: a task column, one column per class)",
    )
    rep.add_argument("--label-field", help="platform export: the OUTPUT:<field> with the label")
    rep.add_argument("--task-col", default="task")
    rep.add_argument("--worker-col", default="worker")
    rep.add_argument("--label-col", default="label")
    rep.add_argument(
        "--uncertainty-above", type=float, help="flag tasks whose entropy (nats) is above this"
    )
    rep.add_argument(
        "--consistency-below",
        type=float,
        help="flag tasks whose label's probability is below this",
    )
    rep.add_argument(
        "--share",
        type=float,
        help="flag this share of the tasks, the least consistent (default 0.1 when no rule "
        "is given; each rule works on its own)",
    )
    rep.add_argument("--title")
    rep.add_argument("--seed", type=int, default=0)
    rep.set_defaults(handler=handler)
    return rep
