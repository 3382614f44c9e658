"""Write ``models/<model>.md``: each Bayesian model's card with results (EM) on every
dataset in ``../shared/datasets``: accuracy on the gold tasks and mean log-loss of the
gold label (probabilities clipped at 1e-6). An existing card keeps everything but its
"Results" section (the story, priors and notes are edited by hand there); a new card is
written whole from ``TEXTS``.

    .venv/bin/python benchmarks/model_cards.py [--datasets DIR] [--out models]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import crowdbayes as cb  # noqa: E402
from crowdbayes.registry import MODELS  # noqa: E402

#: Per card (its file name in ``models/``): title, generative story, when to use, references.
TEXTS = {
    "dawid_skene": (
        "Dawid–Skene",
        r"""$\theta_{jk} \sim \mathrm{Dir}(P_k)$,
$y_{ij} \mid z_i = k \sim \mathrm{Cat}(\theta_{jk})$.
$P$ puts `prior_strength * prior_accuracy` (default `4 / K` x 0.7) on the diagonal, the rest evenly.""",
        "Plenty of labels per annotator; annotators with label-specific biases.",
        "Dawid & Skene (1979), Applied Statistics 28(1); Paun et al. (2018), TACL.",
    ),
    "one_coin": (
        "One-coin Dawid–Skene",
        r"""$a_j \sim \mathrm{Beta}(sq, s(1-q))$ (default $s=4, q=0.7$);
$p(y_{ij}=l \mid z_i=k) = a_j$ if $l=k$, else $(1-a_j)/(K-1)$.""",
        "Few labels per annotator; no label-specific biases expected.",
        "Paun et al. (2018), TACL; Pullin et al. (2020), rater.",
    ),
    "class_conditional": (
        "Class-conditional Dawid–Skene",
        r"""$a_{jk} \sim \mathrm{Beta}(sq, s(1-q))$ (default $s = 4/K$, $q = 0.7$);
$p(y_{ij}=l \mid z_i=k) = a_{jk}$ if $l=k$, else $(1-a_{jk})/(K-1)$.""",
        "Annotators better on some classes than others (per-class sensitivity).",
        "Pullin et al. (2020), the R package rater.",
    ),
    "mace": (
        "MACE",
        r"""$t_j \sim \mathrm{Beta}(sq, s(1-q))$ (default $s=4, q=0.7$), $\xi_j \sim \mathrm{Dir}(g)$;
$p(y_{ij}=l \mid z_i=k) = t_j [l=k] + (1-t_j)\,\xi_{jl}$ (spamming marginalised).""",
        "Crowds with spammers: annotators who sometimes answer at random.",
        "Hovy et al. (2013), NAACL (MACE); Paun et al. (2018), TACL.",
    ),
    "hierarchical_dawid_skene": (
        "Hierarchical Dawid–Skene",
        r"""$\mu_{kl} \sim \mathcal{N}(m, 1)$, $\sigma \sim \mathrm{HalfNormal}(1)$,
$z_{jkl} \sim \mathcal{N}(0, 1)$, $\theta_{jk} = \mathrm{softmax}(\beta_{jk})$ with
$\beta_{jkl} = \mu_{kl} + \sigma z_{jkl}$ for $l \ne k$ and $\beta_{jkk} = 0$;
$m = \log\frac{1-q}{(K-1)q}$ puts the typical annotator's accuracy at `prior_accuracy`
$q = 0.7$. EM holds $\sigma$ fixed and estimates it by empirical Bayes between EM runs
(marginal likelihood at the most probable classes, annotator logits integrated out by
importance sampling); EM intervals are Laplace; NUTS samples $\sigma$ (non-centred).""",
        (
            "Many annotators with few labels each (partial pooling), label-specific biases. "
            "On the bundled datasets with gold it averages 0.9203 accuracy against plain "
            "Dawid–Skene's 0.9190 (a test holds it there); over all 16 shared datasets "
            "0.8525 against 0.8556."
        ),
        "Paun et al. (2018), TACL (the hierarchical Dawid–Skene model).",
    ),
    "item_difficulty": (
        "Item difficulty (logistic random effects)",
        r"""$a_j \sim \mathcal{N}(\mathrm{logit}\,q, 1)$, $d_i \sim \mathcal{N}(0, 1)$;
$p(y_{ij}=l \mid z_i=k) = \sigma(a_j - d_i)$ if $l=k$, else
$(1-\sigma(a_j - d_i))/(K-1)$ ($q = 0.7$). Annotator accuracy is reported on an item of
typical difficulty ($d=0$); EM intervals are Laplace (difficulties integrated out).""",
        "Items that differ in difficulty; no label-specific biases expected (like one-coin).",
        "Whitehill et al. (2009), NeurIPS (GLAD); Paun et al. (2018), TACL.",
    ),
}


def load(folder: Path) -> tuple[pd.DataFrame, pd.Series | None]:
    df = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False)
    truth = folder / "truth.csv"
    if not truth.exists():
        return df, None
    gold = pd.read_csv(truth, dtype=str, keep_default_na=False).set_index("task")["label"]
    return df, gold


def score(model: cb.Aggregator, gold: pd.Series) -> tuple[float, float]:
    proba = model.predict_proba().loc[gold.index]
    acc = float((model.predict().loc[gold.index] == gold).mean())
    cols = proba.columns.get_indexer(gold.to_numpy())
    p = proba.to_numpy()[np.arange(len(gold)), cols]
    return acc, float(-np.log(np.clip(p, 1e-6, 1)).mean())


EM_INTERVALS = {
    "dawid_skene": "intervals from the Dirichlet posterior of each confusion row given imputed classes",
    "one_coin": "intervals from the Beta posterior of each accuracy given imputed classes",
    "class_conditional": "intervals from the Beta posterior of each per-class accuracy given imputed classes",
    "mace": "intervals from draws given imputed classes: competence from its exact conditional posterior (a grid), the truthful/spam split redrawn; accuracy bounds at the levels of competence's shortest interval",
    "hierarchical_dawid_skene": "Laplace intervals on the confusion logits",
    "item_difficulty": "Laplace intervals with the observed information (Louis' formula)",
}


def registered_cards() -> dict[str, tuple[Any, ...]]:
    """The cards this script writes: every registered Bayesian model fitted from the labels
    alone (``crowdbayes.registry``: a NUTS fit, no ``pred_probs``), by card, as (estimator
    class, title, story, when, references); one without its texts here is an error."""
    specs = [s for s in MODELS.values() if s.nuts and not s.needs_pred_probs]
    missing = [s.card for s in specs if s.card_key not in TEXTS or s.card_key not in EM_INTERVALS]
    if missing:
        raise KeyError(f"registered models without card texts in model_cards.py: {missing}")
    return {s.card_key: (s.estimator_class(), *TEXTS[s.card_key]) for s in specs}


CARDS = registered_cards()


OWN_SECTIONS = ("Generative story", "When to use", "References", "Results")


def kept_sections(path: Path) -> str:
    """Sections of an existing card that this script does not write (for example the
    interval coverage that ``benchmarks/coverage.py`` adds), to append unchanged."""
    if not path.exists():
        return ""
    parts = path.read_text(encoding="utf-8").split("\n## ")[1:]
    kept = [p for p in parts if not p.startswith(OWN_SECTIONS)]
    return "".join("\n## " + p.rstrip("\n") + "\n" for p in kept)


def replace_results(card: str, results: str) -> str:
    """``card`` with its ``## Results ...`` section (up to the next ``## ``) set to
    ``results``; appended at the end when it has none."""
    start = card.find("\n## Results")
    if start < 0:
        return card.rstrip("\n") + "\n\n" + results.rstrip("\n") + "\n"
    end = card.find("\n## ", start + 1)
    rest = "" if end < 0 else card[end:]
    return card[: start + 1] + results.rstrip("\n") + "\n" + rest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--out", default=str(ROOT / "models"))
    ap.add_argument("--only", nargs="*", help="card keys to (re)write; others keep their rows")
    args = ap.parse_args()
    cards = {k: v for k, v in CARDS.items() if not args.only or k in args.only}
    folders = sorted(p for p in Path(args.datasets).iterdir() if (p / "labels.csv").exists())
    rows = []
    for folder in folders:
        df, gold = load(folder)
        for key, (cls, *_rest) in cards.items():
            t0 = time.perf_counter()
            model = cls().fit(df)
            secs = time.perf_counter() - t0
            acc, ll = score(model, gold) if gold is not None and len(gold) else (np.nan, np.nan)
            rows.append((key, folder.name, acc, ll, secs))
            print(f"{key:18s} {folder.name:24s} acc={acc:.4f} logloss={ll:.3f} {secs:.1f}s")
    res = pd.DataFrame(rows, columns=["model", "dataset", "accuracy", "log_loss", "seconds"])
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    for key, (cls, title, story, when, refs) in cards.items():
        r = res[res.model == key]
        table = ["| dataset | accuracy | mean gold log-loss | EM seconds |", "|---|---:|---:|---:|"]
        for _, row in r.iterrows():
            acc = "n/a" if np.isnan(row.accuracy) else f"{row.accuracy:.4f}"
            ll = "n/a" if np.isnan(row.log_loss) else f"{row.log_loss:.3f}"
            table.append(f"| {row.dataset} | {acc} | {ll} | {row.seconds:.1f} |")
        mean_acc = r.accuracy.mean()
        text = f"""# {title} (`{cls.__module__}.{cls.__name__}`)

## Generative story
$\\pi \\sim \\mathrm{{Dir}}(c)$, $z_i \\sim \\mathrm{{Cat}}(\\pi)$, and
{story}

The true class $z_i$ is marginalised by log-sum-exp (EM and NumPyro share one likelihood).
Fit with `method="em"` (posterior mode in log-ratio coordinates; {EM_INTERVALS[key]}) or
`method="nuts"` (posterior draws, ArviZ `idata_`).

## When to use
{when}

## References
{refs}

## Results (EM, default priors; generated by `benchmarks/model_cards.py`)
Accuracy and mean log-loss of the gold label on the gold tasks of every dataset in
`shared/datasets` (mean accuracy over datasets with gold: {mean_acc:.4f}).

{chr(10).join(table)}
"""
        path = out / f"{key}.md"
        if path.exists():  # the hand-kept parts stay; only the results are rewritten
            results = text[text.index("## Results") :]
            path.write_text(replace_results(path.read_text(encoding="utf-8"), results), "utf-8")
        else:
            path.write_text(text + kept_sections(path), encoding="utf-8")
    old = out / "bayes_results.csv"
    if args.only and old.exists():
        kept = pd.read_csv(old)
        res = pd.concat([kept[~kept.model.isin(list(cards))], res], ignore_index=True)
    res.to_csv(old, index=False)


if __name__ == "__main__":
    main()
