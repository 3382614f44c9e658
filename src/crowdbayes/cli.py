"""The ``crowdbayes`` command line.

``crowdbayes aggregate INPUT --model mv|ds [--gold FILE] [--out FILE]`` writes one row
per task (its label and the probability of that label); ``--dataset NAME`` uses a
bundled dataset instead of a file and, where gold exists, prints each model's accuracy
against it. Bad input gives one line on stderr naming the file, column or value, and
exit code 2.

The arguments and the input files are checked before anything heavy is imported (pandas,
jax): a missing file is reported at once, not after seconds of imports.

>>> main(["aggregate", "--dataset", "bluebirds", "--model", "mv", "--model", "ds",
...       "--tie-break", "smallest", "--quiet"])
dataset bluebirds: 4212 labels, 108 tasks, 39 annotators, 2 classes, 108 gold tasks
model  accuracy  n_gold  fit_s
   mv    0.7593     108    ...
   ds    0.8889     108    ...
0
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the error paths never load pandas or jax
    import pandas as pd

    from .base import Aggregator
    from .data import Annotations

__all__ = ["add_report_parser", "check_args", "main"]

EXIT_BAD_INPUT = 2
REPORT_MODELS = ("gmv", "ds", "mv")  # report.MODELS, kept here so that parsing stays light


def _dataset_names() -> list[str]:
    from .datasets import available

    return available()


def _model_factories(args: argparse.Namespace) -> dict[str, Callable[[], Aggregator]]:
    from .models.dawid_skene import DawidSkene
    from .models.majority_vote import MajorityVote

    progress = not args.quiet and sys.stderr.isatty()
    return {
        "mv": lambda: MajorityVote(tie_break=args.tie_break, seed=args.seed),
        "ds": lambda: DawidSkene(max_iter=args.max_iter, progress=progress),
    }


def _load_input(args: argparse.Namespace) -> tuple[Annotations, pd.Series | None, str]:
    """Annotations (without gold clamped), gold for evaluation, and a name for messages."""
    from . import datasets
    from .data import AnnotationsError, as_annotations
    from .io import read_annotations, read_gold_file

    if args.dataset is not None:
        if args.input is not None:
            raise AnnotationsError("give either INPUT or --dataset, not both")
        labels, bundled_gold = datasets.load(args.dataset)
        return as_annotations(labels), (bundled_gold if len(bundled_gold) else None), args.dataset
    if args.input is None:
        raise AnnotationsError("no input: give a file (CSV/TSV/Parquet) or --dataset NAME")
    # recognises platform exports (OUTPUT:/ASSIGNMENT: columns); errors name the file
    ann = read_annotations(
        args.input,
        task=args.task_col,
        worker=args.worker_col,
        label=args.label_col,
        label_field=args.label_field,
    )
    gold: pd.Series | None = None
    if ann.has_gold:  # an export's GOLDEN: column: evaluated, clamped only with --clamp-gold
        gold = ann.gold_series()
        ann = ann.with_gold(None)
    if args.gold is not None:
        gold = read_gold_file(args.gold, ann)
        try:
            ann.with_gold(gold)  # validates task ids
        except AnnotationsError as err:
            raise AnnotationsError(f"{args.gold}: {err}") from err
    return ann, gold, str(args.input)


def _accuracy(pred: pd.Series, gold: pd.Series) -> float:
    return float((pred.loc[gold.index].to_numpy() == gold.to_numpy()).mean())


def _cmd_aggregate(args: argparse.Namespace) -> int:
    import pandas as pd

    ann, gold, name = _load_input(args)
    if not args.quiet or args.dataset is not None:
        n_gold = 0 if gold is None else len(gold)
        print(
            f"{'dataset ' if args.dataset else ''}{name}: {ann.n_labels} labels, {ann.n_tasks} tasks, {ann.n_workers} annotators, "
            f"{ann.n_classes} classes, {n_gold} gold tasks"
        )
    factories = _model_factories(args)
    rows, outputs = [], {}
    for key in args.model:
        model = factories[key]()
        start = time.perf_counter()
        fit_ann = ann.with_gold(gold) if (gold is not None and args.clamp_gold) else ann
        model.fit(fit_ann)
        elapsed = time.perf_counter() - start
        outputs[key] = model
        if gold is not None:
            rows.append(
                {
                    "model": key,
                    "accuracy": round(_accuracy(model.predict(), gold), 4),
                    "n_gold": len(gold),
                    "fit_s": round(elapsed, 3),
                }
            )
    if rows:
        print(pd.DataFrame(rows).to_string(index=False))
    if args.out is not None:
        table = _result_table(outputs)
        out = Path(args.out)
        if out.suffix.lower() in (".parquet", ".pq"):
            table.to_parquet(out)
        else:
            table.to_csv(out, sep="\t" if out.suffix.lower() in (".tsv", ".tab") else ",")
        print(f"wrote {len(table)} tasks to {out}")
    return 0


def _result_table(models: dict[str, Aggregator]) -> pd.DataFrame:
    """One row per task: ``label`` and ``probability`` (per model, suffixed when several)."""
    import pandas as pd

    parts = []
    for key, model in models.items():
        unc = model.task_uncertainty()[["label", "probability"]]
        if len(models) > 1:
            unc = unc.add_suffix(f"_{key}")
        parts.append(unc)
    table = pd.concat(parts, axis=1)
    table.index.name = "task"
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crowdbayes", description="Aggregate labels from several annotators."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    agg = sub.add_parser("aggregate", help="aggregate labels: one row per task")
    agg.add_argument("input", nargs="?", help="long table (CSV/TSV/Parquet): task, worker, label")
    agg.add_argument("--dataset", choices=_dataset_names(), help="use a bundled dataset")
    agg.add_argument(
        "--model",
        action="append",
        choices=["mv", "ds"],
        help="model(s) to fit: mv (majority vote), ds (Dawid-Skene); repeatable; default ds",
    )
    agg.add_argument("--gold", help="gold labels file (task, label) to evaluate against")
    agg.add_argument(
        "--clamp-gold",
        action="store_true",
        help="also clamp the gold labels while fitting (default: gold is only used to evaluate)",
    )
    agg.add_argument("--out", help="write the per-task result here (.csv, .tsv or .parquet)")
    agg.add_argument("--task-col", default="task")
    agg.add_argument("--worker-col", default="worker")
    agg.add_argument("--label-col", default="label")
    agg.add_argument("--tie-break", default="random", choices=["random", "prior", "smallest"])
    agg.add_argument("--seed", type=int, default=0)
    agg.add_argument("--max-iter", type=int, default=100)
    agg.add_argument("--quiet", action="store_true", help="no progress bars")
    agg.add_argument("--label-field", help="platform export: the OUTPUT:<field> with the label")
    agg.set_defaults(handler=_cmd_aggregate)
    add_report_parser(sub)
    return parser


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``crowdbayes report`` (handler :func:`crowdbayes.report.run_report`, imported
    when it runs) on an argparse subparsers object."""
    rep = subparsers.add_parser(
        "report", help="write a self-contained HTML quality report (plots, annotators, tasks)"
    )
    rep.add_argument("input", nargs="?", help="platform export or long table (CSV/TSV/Parquet)")
    rep.add_argument("--dataset", choices=_dataset_names(), help="use a bundled dataset")
    rep.add_argument("--gold", help="gold (control) labels file (task, label), used in the fit")
    rep.add_argument(
        "--gold-fraction",
        type=float,
        default=0.1,
        help="with --dataset: share of the dataset's gold used as control tasks; the rest is "
        "held out to measure accuracy (default 0.1)",
    )
    rep.add_argument("--out", required=True, help="the HTML file to write")
    rep.add_argument("--model", choices=REPORT_MODELS, help="default: gmv with gold, else ds")
    rep.add_argument("--label-field", help="platform export: the OUTPUT:<field> with the label")
    rep.add_argument("--task-col", default="task")
    rep.add_argument("--worker-col", default="worker")
    rep.add_argument("--label-col", default="label")
    rep.add_argument("--uncertainty-above", type=float, default=0.5)
    rep.add_argument("--consistency-below", type=float, default=0.5)
    rep.add_argument("--title")
    rep.add_argument("--seed", type=int, default=0)
    rep.set_defaults(handler=_cmd_report)
    return rep


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import run_report

    return run_report(args)


def _check_file(path: str, what: str) -> str | None:
    if not os.path.exists(path):
        return f"file {path!r} does not exist"  # the words of data.read_table
    if os.path.isdir(path):
        return f"{what} {path!r} is a directory, not a file"
    if not os.access(path, os.R_OK):
        return f"{what} {path!r} cannot be read (permission denied)"
    return None


def check_args(args: argparse.Namespace) -> str | None:
    """The first problem with the arguments that can be seen without reading the data (a
    missing input or gold file, a missing output folder, a number out of range), or None.
    Uses only the standard library, so that ``main`` answers at once."""
    dataset, given = getattr(args, "dataset", None), getattr(args, "input", None)
    if dataset is not None and given is not None:
        return "give either INPUT or --dataset, not both"
    if dataset is None and given is None:
        return "no input: give a file (CSV/TSV/Parquet) or --dataset NAME"
    for what, path in (("input", given), ("gold file", getattr(args, "gold", None))):
        problem = None if path is None else _check_file(path, what)
        if problem:
            return problem
    out = getattr(args, "out", None)
    if out is not None:
        folder = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(folder):
            return f"--out {out!r}: folder {folder!r} does not exist"
        if os.path.isdir(out):
            return f"--out {out!r} is a directory, not a file"
    if getattr(args, "max_iter", 1) < 1:
        return f"--max-iter must be at least 1, got {args.max_iter}"
    if dataset is not None and not 0.0 < getattr(args, "gold_fraction", 0.5) <= 1.0:
        return f"--gold-fraction must be in (0, 1], got {args.gold_fraction}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "model", None) is None and args.command == "aggregate":
        args.model = ["ds"]
    problem = check_args(args)
    if problem is not None:
        print(f"crowdbayes: error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return int(args.handler(args))
    # AnnotationsError is a ValueError (caught without importing crowdbayes.data here)
    except (FileNotFoundError, KeyError, ValueError) as err:
        message = err.args[0] if err.args else str(err)
        print(f"crowdbayes: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
