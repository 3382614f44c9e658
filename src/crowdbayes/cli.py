"""The ``crowdbayes`` command line.

``crowdbayes aggregate INPUT [--model NAME ...] [--gold FILE] [--out FILE]`` fits one or
more models (``crowdbayes models`` lists them; ``recommended`` by default) and writes one
row per task (its label and the probability of that label): to ``--out`` (``.csv``,
``.tsv`` or ``.parquet``) or, without it, to stdout as CSV, so that it pipes. Messages
(the data's summary, each model's accuracy against gold) go to stderr; ``--quiet`` keeps
only the accuracy table there. ``--dataset NAME`` uses a bundled dataset instead of a file.
Bad input gives one line on stderr naming the file, column or value, and exit code 2;
never a traceback.

INPUT is a platform export (``OUTPUT:``/``ASSIGNMENT:`` columns), a long table (one row
per label: ``task``, ``worker``, ``label`` columns, other names via ``--task-col``,
``--worker-col``, ``--label-col``) or a wide table (one row per item, one column per
annotator, blank cells where an annotator gave no label; the item ids in the first column,
or none, and then items are numbered from 0). Labels in a text file that are all integers
are read as integers.

The arguments and the input files are checked before anything heavy is imported (pandas,
jax): a missing file or optional package is reported at once, not after seconds of imports.
The list of models is :data:`crowdbayes.registry.MODELS` (here as :data:`MODELS`), one
place for the parser, ``crowdbayes models`` and the README's table (:func:`models_markdown`).

>>> main(["models"])  # doctest: +ELLIPSIS
recommended        CalibratedDawidSkene        Dawid-Skene EM with calibrated ...
...
bayesian-crowdlab  BayesianCrowdLab            ... (needs --pred-probs)
0
>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "bluebirds.csv"
>>> main(["aggregate", "--dataset", "bluebirds", "--model", "mv", "--out", str(out), "--quiet"])
0
>>> out.read_text().splitlines()[0]
'task,label,probability'
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _report_parser  # standard library only
from .engines import NUTS  # standard library only
from .registry import MODELS, ModelSpec

if TYPE_CHECKING:  # imported where used: the error paths never load pandas or jax
    import pandas as pd

    from .base import Aggregator
    from .data import Annotations

__all__ = [
    "MODELS",
    "ModelSpec",
    "add_report_parser",
    "build_model",
    "check_args",
    "main",
    "models_markdown",
]

EXIT_BAD_INPUT = 2
#: The models ``--processes`` fits (``crowdbayes.distributed.MODELS``; here so that the
#: CLI imports only the standard library)
DISTRIBUTED_MODELS = ("ds", "one-coin", "class-conditional", "mace", "recommended")


def build_model(spec: ModelSpec, args: argparse.Namespace) -> Aggregator:
    """The estimator of ``spec`` with the command line's options that it takes."""
    kwargs: dict[str, Any] = {}
    if spec.tie_break:
        kwargs.update(tie_break=args.tie_break, seed=args.seed)
    if spec.iterative:
        kwargs["progress"] = not args.quiet and sys.stderr.isatty()
        if args.max_iter is not None:
            kwargs["max_iter"] = args.max_iter
    if "seed" in spec.estimator_class()._get_param_names():  # draws, restarts, ties, splits
        kwargs["seed"] = args.seed
    if spec.nuts:
        if args.method == "nuts":  # --method nuts: the NUTS engine, its bar as EM's would be
            kwargs["inference"] = NUTS(
                num_warmup=args.num_warmup,
                num_samples=args.num_samples,
                num_chains=args.num_chains,
                seed=args.seed,
                progress=bool(kwargs.get("progress", False)),
            )
    if spec.estimator == "GoldMajorityVote":
        kwargs["clamp_gold"] = args.clamp_gold
    return spec.build(**kwargs)


def models_text() -> str:
    """What ``crowdbayes models`` prints: one line per model (name, estimator, description)."""
    width = max(map(len, MODELS)) + 2
    est = max(len(s.estimator) for s in MODELS.values()) + 2
    return "\n".join(
        f"{name:<{width}}{spec.estimator:<{est}}{spec.line()}" for name, spec in MODELS.items()
    )


def models_markdown() -> str:
    """The README's table of the command line's models (a test checks that it is there)."""
    rows = ["| `--model` | estimator | |", "|---|---|---|"]
    rows += [f"| `{n}` | `{s.estimator}` | {s.line()} |" for n, s in MODELS.items()]
    return "\n".join(rows)


#: Optional packages and the extra that installs each.
EXTRAS = {"plotly": "plot", "matplotlib": "plot", "pyarrow": "parquet"}
OUT_FORMATS = (".csv", ".tsv", ".tab", ".parquet", ".pq")


def _missing_package(name: str, why: str) -> str:
    extra = EXTRAS.get(name)
    how = f"pip install 'crowdbayes[{extra}]'" if extra else f"pip install {name}"
    return f"{why} needs the optional package {name}, which is not installed: {how}"


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _dataset_names() -> list[str]:
    return _report_parser.dataset_names()


def _stderr(*lines: str) -> None:
    for line in lines:
        print(line, file=sys.stderr)


# ---------------------------------------------------------------------------- reading
# (the files are read by crowdbayes.io._read_file and _read_pred_probs, as the report's)
def _load_input(args: argparse.Namespace) -> tuple[Annotations, pd.Series | None, str]:
    """Annotations (without gold clamped), gold for evaluation, and a name for messages."""
    from . import datasets
    from .data import as_annotations, merge_gold
    from .io import _read_file, read_gold_file

    if args.dataset is not None:
        labels, bundled_gold = datasets.load(args.dataset)
        bundled = bundled_gold if len(bundled_gold) else None
        return as_annotations(labels), bundled, f"dataset {args.dataset}"
    ann = _read_file(args)
    gold: pd.Series | None = None
    if ann.has_gold:  # an export's GOLDEN: column: evaluated, clamped only with --clamp-gold
        gold = ann.gold_series()
        ann = ann.with_gold(None)
    if args.gold is not None:  # added to the export's, a task both give: one label
        names = ("the export's GOLDEN: column", str(args.gold))
        gold = merge_gold(gold, read_gold_file(args.gold, ann), names)
    return ann, gold, str(args.input)


def _accuracy(pred: pd.Series, gold: pd.Series) -> float:
    return float((pred.loc[gold.index].to_numpy() == gold.to_numpy()).mean())


# ---------------------------------------------------------------------------- aggregate
def _cmd_aggregate(args: argparse.Namespace) -> int:
    if getattr(args, "processes", None) is not None:
        return _cmd_distributed(args)
    import pandas as pd

    from .data import AnnotationsError
    from .io import _read_pred_probs

    ann, gold, name = _load_input(args)
    n_gold = 0 if gold is None else len(gold)
    if not args.quiet:
        _stderr(
            f"{name}: {ann.n_labels} labels, {ann.n_tasks} tasks, {ann.n_workers} annotators, "
            f"{ann.n_classes} classes, {n_gold} gold tasks"
            + "".join(f", {n} {status} left out" for status, n in ann.dropped.items())
        )
    specs = {key: MODELS[key] for key in dict.fromkeys(args.model)}
    if gold is None:
        for key, spec in specs.items():
            if spec.needs_gold:
                raise AnnotationsError(
                    f"--model {key} ({spec.estimator}) needs gold labels: give --gold FILE "
                    "(task, label), a platform export with GOLDEN: columns, or a --dataset "
                    "with gold"
                )
    pred_probs = None
    if any(spec.needs_pred_probs for spec in specs.values()):
        pred_probs = _read_pred_probs(args.pred_probs, ann, args.task_col)
    rows, outputs = [], {}
    for key, spec in specs.items():
        model = build_model(spec, args)
        clamp = gold is not None and (args.clamp_gold or spec.needs_gold)
        fit_ann = ann.with_gold(gold) if clamp else ann
        start = time.perf_counter()
        if spec.needs_pred_probs:
            model.fit(fit_ann, pred_probs=pred_probs)
        else:
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
    table = _result_table(outputs)
    if args.out is None:
        table.to_csv(sys.stdout)
        sys.stdout.flush()
    else:
        out = Path(args.out)
        suffix = out.suffix.lower()
        if suffix in (".parquet", ".pq"):
            table.to_parquet(out)
        else:
            table.to_csv(out, sep="\t" if suffix in (".tsv", ".tab") else ",")
        if not args.quiet:
            _stderr(f"wrote {len(table)} tasks to {out}")
    if rows:  # last, so that it is what a terminal shows after the CSV
        _stderr(pd.DataFrame(rows).to_string(index=False))
        if any(MODELS[r["model"]].needs_gold for r in rows) and not args.quiet:
            _stderr("(gmv learns its weights from the gold it is scored on: in-sample)")
    return 0


def _cmd_distributed(args: argparse.Namespace) -> int:
    """``aggregate --processes N``: :mod:`crowdbayes.distributed` (in this process for
    N = 1, else N local processes with a coordinator on 127.0.0.1)."""
    from . import distributed

    (model,) = args.model
    params = {} if args.max_iter is None else {"max_iter": args.max_iter}
    columns = {"task": args.task_col, "worker": args.worker_col, "label": args.label_col}
    start = time.perf_counter()
    try:
        if args.processes == 1:
            distributed.clear_out(args.out)
            res = distributed.fit(args.input, model, out=args.out, **columns, **params)
            n_labels = res.n_labels_total
        else:
            distributed.launch(
                args.processes, args.input, args.out, model, params=params, **columns
            )
            n_labels = None
    except distributed.DistributedError as err:
        _stderr(f"crowdbayes: error: {err}")
        return 1
    if not args.quiet:
        what = "" if n_labels is None else f" ({n_labels} labels)"
        _stderr(
            f"{model}: {args.processes} process(es){what} in "
            f"{time.perf_counter() - start:.1f} s; wrote one part per process to {args.out}"
        )
    return 0


def _check_distributed(args: argparse.Namespace) -> str | None:
    """``--processes``: its own inputs (a Parquet dataset, an output folder, one model)."""
    n = args.processes
    if n < 1:
        return f"--processes must be at least 1, got {n}"
    given = getattr(args, "input", None)
    if given is None:
        return "--processes needs INPUT: a Parquet dataset (a folder or a file)"
    if not os.path.exists(given):
        return f"file {given!r} does not exist"
    if os.path.isfile(given) and not given.lower().endswith((".parquet", ".pq")):
        return f"--processes reads Parquet: {given!r} is not a .parquet file or a folder"
    for flag in ("dataset", "gold", "pred_probs", "label_field"):
        if getattr(args, flag, None) is not None:
            return f"--processes does not take --{flag.replace('_', '-')}"
    if getattr(args, "method", "em") != "em":
        return "--processes fits by EM only (no --method nuts)"
    models = list(dict.fromkeys(args.model or ["recommended"]))
    if len(models) != 1 or models[0] not in DISTRIBUTED_MODELS:
        return (
            f"--processes fits one model, one of {', '.join(DISTRIBUTED_MODELS)}; "
            f"got {', '.join(models)}"
        )
    out = getattr(args, "out", None)
    if out is None:
        return "--processes needs --out FOLDER (one Parquet part per process)"
    if os.path.exists(out) and not os.path.isdir(out):
        return f"--out {out!r} is a file; --processes writes a folder"
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        return f"--out {out!r}: folder {parent!r} does not exist"
    if not _installed("pyarrow"):
        return _missing_package("pyarrow", "--processes (Parquet)")
    max_iter = getattr(args, "max_iter", None)
    if max_iter is not None and max_iter < 1:
        return f"--max-iter must be at least 1, got {args.max_iter}"
    return None


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


def _cmd_models(args: argparse.Namespace) -> int:
    print(models_text())
    return 0


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="crowdbayes", description="Aggregate labels from several annotators."
    )
    parser.add_argument("--version", action="version", version=f"crowdbayes {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    agg = sub.add_parser(
        "aggregate",
        help="aggregate labels: one row per task",
        description="Fit models and write one row per task (to --out, else stdout as CSV).",
    )
    agg.add_argument(
        "input",
        nargs="?",
        help="CSV/TSV/Parquet: a long table (task, worker, label), a wide one (items x "
        "annotators, blank cells) or a platform export",
    )
    agg.add_argument("--dataset", choices=_dataset_names(), help="use a bundled dataset")
    agg.add_argument(
        "--model",
        action="append",
        choices=list(MODELS),
        metavar="NAME",
        help="model(s) to fit, repeatable; default recommended. 'crowdbayes models' lists "
        f"them: {', '.join(MODELS)}",
    )
    agg.add_argument(
        "--method",
        choices=["em", "nuts"],
        default="em",
        help="how the Bayesian models are fitted (default em)",
    )
    agg.add_argument("--num-warmup", type=int, default=1000, help="NUTS warmup steps per chain")
    agg.add_argument("--num-samples", type=int, default=1000, help="NUTS draws per chain")
    agg.add_argument("--num-chains", type=int, default=4, help="NUTS chains")
    agg.add_argument("--gold", help="gold labels file (task, label) to evaluate against")
    agg.add_argument(
        "--clamp-gold",
        action="store_true",
        help="also clamp the gold labels while fitting (default: gold is only used to "
        "evaluate, and by gmv to weigh the annotators)",
    )
    agg.add_argument(
        "--pred-probs",
        help="crowdlab, bayesian-crowdlab: a classifier's out-of-sample probabilities "
        "(CSV/Parquet, one row per task: a task column, one column per class)",
    )
    agg.add_argument(
        "--out", help="write the per-task result here (.csv, .tsv or .parquet); default stdout"
    )
    agg.add_argument("--task-col", default="task", help="long table: the task id column")
    agg.add_argument("--worker-col", default="worker", help="long table: the annotator column")
    agg.add_argument("--label-col", default="label", help="long table: the label column")
    agg.add_argument("--tie-break", default="random", choices=["random", "prior", "smallest"])
    agg.add_argument("--seed", type=int, default=0)
    agg.add_argument("--max-iter", type=int, default=None, help="EM iterations (model default)")
    agg.add_argument(
        "--quiet", action="store_true", help="no progress bars, no summary line on stderr"
    )
    agg.add_argument("--label-field", help="platform export: the OUTPUT:<field> with the label")
    agg.add_argument(
        "--processes",
        type=int,
        default=None,
        metavar="N",
        help="fit in N local processes on JAX's distributed runtime: INPUT is a Parquet "
        "dataset (a folder or a file), --out a folder that gets one part per process "
        f"(models: {', '.join(DISTRIBUTED_MODELS)}; see docs/distributed.md)",
    )
    agg.set_defaults(handler=_cmd_aggregate)
    models = sub.add_parser("models", help="list the models, one line each")
    models.set_defaults(handler=_cmd_models)
    add_report_parser(sub)
    return parser


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``crowdbayes report`` (handler :func:`crowdbayes.report.run_report`, imported
    when it runs) on an argparse subparsers object; its arguments are defined in
    ``crowdbayes._report_parser``, which :func:`crowdbayes.report.add_report_command` uses too."""
    return _report_parser.add_report_parser(subparsers, _cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import run_report

    return run_report(args)


# ---------------------------------------------------------------------------- checks
def _check_file(path: str, what: str) -> str | None:
    if not os.path.exists(path):
        return f"file {path!r} does not exist"  # the words of data.read_table
    if os.path.isdir(path):
        hint = " (a Parquet dataset? fit it with --processes N)" if what == "input" else ""
        return f"{what} {path!r} is a directory, not a file{hint}"
    if not os.access(path, os.R_OK):
        return f"{what} {path!r} cannot be read (permission denied)"
    if path.lower().removesuffix(".gz").endswith((".parquet", ".pq")) and not _installed("pyarrow"):
        return _missing_package("pyarrow", f"reading the Parquet file {path!r}")
    return None


def _check_models(args: argparse.Namespace) -> str | None:
    specs = {key: MODELS[key] for key in getattr(args, "model", None) or ["recommended"]}
    for key, spec in specs.items():
        if spec.needs_pred_probs and getattr(args, "pred_probs", None) is None:
            return (
                f"--model {key} ({spec.estimator}) needs --pred-probs FILE: a classifier's "
                "out-of-sample probabilities, one row per task (a task column), one column "
                "per class"
            )
    if getattr(args, "pred_probs", None) is not None and not any(
        spec.needs_pred_probs for spec in specs.values()
    ):
        users = ", ".join(k for k, s in MODELS.items() if s.needs_pred_probs)
        return f"--pred-probs is used only by --model {users}; none of them was chosen"
    if getattr(args, "method", "em") == "nuts":
        without = [key for key, spec in specs.items() if not spec.nuts]
        if without:
            with_nuts = ", ".join(k for k, s in MODELS.items() if s.nuts)
            return f"--method nuts: {', '.join(without)} has no NUTS fit (models with one: {with_nuts})"
    for flag in ("num_warmup", "num_samples", "num_chains"):
        least = 0 if flag == "num_warmup" else 1
        if getattr(args, flag, least) < least:
            return f"--{flag.replace('_', '-')} must be at least {least}, got {getattr(args, flag)}"
    return None


def check_args(args: argparse.Namespace) -> str | None:
    """The first problem with the arguments that can be seen without reading the data (a
    missing input, gold or pred-probs file, a missing output folder or optional package, an
    unknown output format, a number out of range), or None. Uses only the standard library,
    so that ``main`` answers at once."""
    command = getattr(args, "command", "aggregate")
    if command == "models":
        return None
    if command == "aggregate" and getattr(args, "processes", None) is not None:
        return _check_distributed(args)
    dataset, given = getattr(args, "dataset", None), getattr(args, "input", None)
    if dataset is not None and given is not None:
        return "give either INPUT or --dataset, not both"
    if dataset is None and given is None:
        return "no input: give a file (CSV/TSV/Parquet) or --dataset NAME"
    for what, path in (
        ("input", given),
        ("gold file", getattr(args, "gold", None)),
        ("--pred-probs", getattr(args, "pred_probs", None)),
    ):
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
        if command == "aggregate":
            suffix = Path(out).suffix.lower()
            if suffix not in OUT_FORMATS:
                return (
                    f"--out {out!r}: unknown format {suffix or '(no extension)'!r}; "
                    "use .csv, .tsv or .parquet (or leave --out out for CSV on stdout)"
                )
            if suffix in (".parquet", ".pq") and not _installed("pyarrow"):
                return _missing_package("pyarrow", "writing Parquet")
    if command == "report":
        for package in ("plotly",):
            if not _installed(package):
                return _missing_package(package, "crowdbayes report")
    max_iter = getattr(args, "max_iter", None)
    if max_iter is not None and max_iter < 1:
        return f"--max-iter must be at least 1, got {args.max_iter}"
    share = getattr(args, "share", None)
    if share is not None and not 0.0 <= share <= 1.0:
        return f"--share must be in [0, 1], got {share}"
    if dataset is not None and not 0.0 < getattr(args, "gold_fraction", 0.5) <= 1.0:
        return f"--gold-fraction must be in (0, 1], got {args.gold_fraction}"
    if command == "aggregate":
        return _check_models(args)
    if command == "report":
        model = getattr(args, "model", None)
        return _check_models(
            argparse.Namespace(**{**vars(args), "model": [model or "recommended"]})
        )
    return None


def _message(err: BaseException) -> str:
    if isinstance(err, ModuleNotFoundError) and err.name:
        return _missing_package(err.name.split(".")[0], "this command")
    if isinstance(err, OSError):
        where = f": {err.filename!r}" if err.filename else ""
        return f"{err.strerror or err}{where}"
    if isinstance(err, KeyError | ValueError) and err.args:
        return str(err.args[0])
    return str(err)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    print(f"crowdbayes: warning: {category.__name__}: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, a usage error (argparse printed it)
        return exit_.code if isinstance(exit_.code, int) else EXIT_BAD_INPUT
    if getattr(args, "model", None) is None and args.command == "aggregate":
        args.model = ["recommended"]
    problem = check_args(args)
    if problem is not None:
        print(f"crowdbayes: error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # one line each; restored on exit
            return int(args.handler(args))
    except BrokenPipeError:  # `crowdbayes aggregate ... | head`: the reader left
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 0
    # AnnotationsError is a ValueError (caught without importing crowdbayes.data here)
    except (ImportError, OSError, KeyError, ValueError) as err:
        print(f"crowdbayes: error: {_message(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
