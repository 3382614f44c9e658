"""Interval coverage on crowds not drawn from any model's prior.

``benchmarks/coverage.py`` simulates each model from its own prior; real crowds are
mostly good annotators with a few spammers and very uneven activity. Here the labels
come from :func:`crowdbayes.simulate.simulate_population`:

- ``one_coin``: accuracy ``a ~ U[0.55, 0.95]``, right with probability ``a``, otherwise
  a uniformly random class;
- ``class_conditional``: ``a_jk ~ U[0.55, 0.95]`` per annotator and true class, errors
  spread evenly, skewed class prior (0.6/0.3/0.1 at K = 3);
- ``spammers``: 20% uniform random labels, the rest one-coin with ``a ~ U[0.8, 0.98]``;
- ``skewed_activity``: one-coin accuracies, labels per annotator log-normal (median
  about 20, the quietest a handful);

each with K = 2, 3 and 5 (3,000 tasks x 5 labels, 300 annotators). Every model is fitted
by EM (default settings) on every population it nests, and the 90% interval of
``annotator_quality`` is compared with the generating accuracy
``sum_k pi_k confusion[j, k, k]`` (ItemDifficulty: at a typical item). The seeds
(``--seeds``, default 100; a crowd's seed is ``seed + K``) are not those the default
priors' strength was chosen on (``seed = K``) nor the tests' (23). With several seeds each
cell is the coverage pooled over their crowds (300 annotators each: one crowd's coverage
moves by about 0.02 from seed to seed at 0.87), and the lowest seed's is reported too. With
``--nuts``, NUTS fits at K = 3 on a smaller crowd (1,500 tasks, 150 annotators; 2 chains x
300 + 300) for every model, on the first seed.

    .venv/bin/python benchmarks/coverage_crowds.py [--seeds 100 200 300] [--nuts] [--write]
    .venv/bin/python benchmarks/coverage_crowds.py --models recommended \
        --merge benchmarks/coverage_crowds_rows.csv --out benchmarks/coverage_crowds_rows.csv --write

``--write`` puts the table into ``docs/benchmarks.md`` ("## Interval coverage off the
prior").
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from coverage import replace_section  # noqa: E402

import crowdbayes as cb  # noqa: E402
from crowdbayes.simulate import POPULATIONS, simulate_population  # noqa: E402

ALL = set(POPULATIONS)
ONE_COIN_LIKE = {"one_coin", "spammers", "skewed_activity"}
#: model -> the populations it nests
NESTS: dict[str, set[str]] = {
    "DawidSkene": ALL,
    "recommended": ALL,
    "HierarchicalDawidSkene": ALL,
    "ClassConditionalDawidSkene": ALL,
    "OneCoinDawidSkene": ONE_COIN_LIKE,
    "MACE": ONE_COIN_LIKE,
    "ItemDifficulty": ONE_COIN_LIKE,
    "EBCC": ALL,
}


def make(name: str, **kw):
    return cb.recommended() if name == "recommended" else getattr(cb, name)(**kw)


def one(name: str, population: str, K: int, seed: int, **fit) -> dict:
    size = fit.pop("size", {})
    sim = simulate_population(population, n_classes=K, seed=seed + K, **size)
    model = make(name, **fit)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence notes of short NUTS runs
        model.fit(sim.annotations)
    q = model.annotator_quality(interval=0.9)
    secs = time.perf_counter() - start
    truth = sim.accuracy[q.index.to_numpy().astype(int)]
    lo, hi, est = q["accuracy_lower"], q["accuracy_upper"], q["accuracy"]
    inside = (lo <= truth) & (truth <= hi)
    good = truth > 0.9
    return {
        "model": name,
        "method": getattr(fit.get("inference"), "method", "em"),  # NUTS(...): "nuts"
        "population": population,
        "K": K,
        "coverage": float(inside.mean()),
        "coverage_above_0.9": float(inside[good].mean()) if good.any() else np.nan,
        "below": float((truth < lo).mean()),
        "above": float((truth > hi).mean()),
        "width": float((hi - lo).mean()),
        "mae": float(np.abs(est - truth).mean()),
        "estimate_outside": int(((est < lo) | (est > hi)).sum()),
        "seconds": round(secs, 1),
    }


def run(seeds: list[int], nuts: bool, models: list[str] | None = None) -> pd.DataFrame:
    rows = []
    for name, pops in NESTS.items():
        if models is not None and name not in models:
            continue
        for population in POPULATIONS:
            if population not in pops:
                continue
            for K in (2, 3, 5):
                for seed in seeds:
                    rows.append({**one(name, population, K, seed), "seed": seed})
                    print(_fmt(rows[-1]), flush=True)
            if nuts and name != "recommended":
                seed = seeds[0]
                small = {"n_tasks": 1500, "n_workers": 150}
                kw = {"inference": cb.NUTS(num_warmup=300, num_samples=300, num_chains=2)}
                rows.append({**one(name, population, 3, seed, size=small, **kw), "seed": seed})
                print(_fmt(rows[-1]), flush=True)
    return pd.DataFrame(rows)


def _fmt(r: dict) -> str:
    return (
        f"{r['model']:27s} {r['method']:4s} {r['population']:18s} K={r['K']} "
        f"cover {r['coverage']:.3f} (>0.9: {r['coverage_above_0.9']:.2f}) "
        f"width {r['width']:.3f} mae {r['mae']:.3f} outside {r['estimate_outside']} "
        f"{r['seconds']}s"
    )


def pooled(res: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, method, population, K): the coverage pooled over the seeds
    (equal crowds: the mean) and the lowest seed's."""
    keys = ["model", "method", "population", "K"]
    g = res.groupby(keys)["coverage"]
    return pd.DataFrame({"coverage": g.mean(), "lowest": g.min(), "seeds": g.size()}).reset_index()


def table(res: pd.DataFrame) -> str:
    wide = (
        pooled(res)
        .pivot_table(index=["model", "method"], columns=["population", "K"], values="coverage")
        .round(2)
    )
    wide.columns = [f"{p} K={k}" for p, k in wide.columns]
    lines = ["| model | method | " + " | ".join(wide.columns) + " | min |"]
    lines.append("|---" * (len(wide.columns) + 3) + "|")
    for (model, method), row in wide.iterrows():
        cells = ["" if np.isnan(v) else f"{v:.2f}" for v in row]
        lines.append(f"| {model} | {method} | " + " | ".join(cells) + f" | {row.min():.2f} |")
    return "\n".join(lines)


# What the numbers say (written from the 2026-12-01 run, seed 100, and the 2026-12-03 run
# pooled over seeds 100, 200 and 300; kept with the table)
FINDINGS = """
Pooled over three seeds (2026-12-03; the EM cells of the table), every model but
ItemDifficulty on spammers covers 0.847-0.95 on every population it nests (below 0.85:
HierarchicalDawidSkene one_coin K=2 0.847 and recommended() spammers K=5 0.848, shown
rounded as 0.85; DawidSkene class_conditional K=5 0.850); seed by seed 73 of the 87 EM cells are at 0.85 or
more and the lowest single seed outside ItemDifficulty is 0.82 (DawidSkene class_conditional
K=5, HierarchicalDawidSkene skewed_activity K=2): with 300 annotators one crowd's coverage
moves by about 0.02, so the seed-100 figures below read a little low. The third seed also
found a failure: HierarchicalDawidSkene at skewed_activity K=5, seed 305, covered 0.00 (MAE
0.44, task accuracy 0.41): its empirical-Bayes scale went below the grid, where the M-step's
Newton steps run off, and EM took the falling objective for convergence; both fixed (its
card), 0.87 pooled now. The paragraphs below are the seed-100 run's.

Dawid–Skene, class-conditional and one-coin cover 0.82-0.95 with EM (0.82-0.93,
0.86-0.93, 0.88-0.95) and 0.87-0.92 with NUTS on every population they nest. EBCC
(added 2026-12-02; EM only) covers 0.88-0.93 on every population: its intervals read each
annotator's labels against EBCC's classes under Dawid–Skene's default prior (its card
says why: read from its sub-type rows, they covered 0.15-0.72 at K = 3 and 5 on the
seed-K crowds). Since
2026-12-02 each of EM's 50 imputations of the classes is followed by two Gibbs sweeps
(classes given drawn confusions, then confusions given them): class-conditional K=2
0.85 -> 0.89 and K=5 0.84 -> 0.86, Dawid–Skene class_conditional K=2 0.85 -> 0.90, its
K=5 cell unchanged at 0.82 (on other seeds, 200 + K, 0.84 -> 0.87); before this round's prior change (a phantom
pseudo-count in every cell of the Dirichlets behind NUTS and EM's intervals) Dawid–Skene
EM covered 0.40 on one_coin K=3 and 0.27 on spammers K=3 (seed K; 5-6% of the annotators
above 0.9). EM's intervals are averaged over 50 imputations of the tasks' classes;
taking the classes at their posterior weights (the old way) gave 0.81 on
class_conditional K=2, where tasks are uncertain, against 0.88. HierarchicalDawidSkene,
with a shared per-annotator ability on its logits (it had independent noise on each
off-diagonal logit, which shrank annotators better or worse overall hard toward the
population), covers 0.82-0.93 with EM and 0.85-0.91 with NUTS (0.00-0.89 and 0.35-0.78
before, with 120 estimates outside their own interval at spammers K=5, none now).
ItemDifficulty (now: knows the answer or guesses) covers 0.92-0.95 where there are no
spammers. MACE (2026-12-02) covers 0.88-0.91 with EM and 0.84-0.90 with NUTS on every
population it nests, spammers included (0.69-0.70 before): a pure spammer sits on the
boundary (competence 0, accuracy exactly 1/K with equally likely classes), which an
equal-tailed interval of a posterior pushed off the boundary cannot reach. Three changes:
a flat competence prior Beta(1, 1) (was Beta(2.8, 1.2), density 0 at the boundary); EM
draws each competence from its exact conditional posterior on a grid (a Beta around the
estimate put no mass near 0, where a spammer's likelihood is flat); and the accuracy
bounds sit at the quantile levels of competence's shortest interval, which starts at 0
where the posterior piles up there. The prior was chosen on the seed-K crowds (EM
0.87-0.94 there); flatter priors alone, with equal tails (Beta(0.1, 0.1) to Beta(0.5,
0.5)), had left MACE at 0.59-0.79 on spammers. Not yet in range: ItemDifficulty on
spammers (0.72-0.73, EM and NUTS alike). Tried (seed-K crowds): the same shortest-interval
levels with its Laplace draws (0.74-0.75), a Gaussian in the probability of knowing
truncated to [0, 1] (0.76-0.79), and draws of each ability from its exact conditional
given the items' difficulties on a grid, with a normal or a logistic ability prior
(0.73-0.84, none of the K = 3 and 5 spammers covered). Two causes: the normal prior on the
ability's logit has density 0 at "never knows"; and with a difficulty per item fitted
jointly, a spammer's wrong labels make their items look hard, so given the difficulties
the spammer looks able (its conditional posterior sits away from 0 even under a flat
prior); NUTS covers them no better (0.73). Also below 0.85 with EM: DawidSkene at
class_conditional K=5 (0.82; 0.86-0.87 on seeds 200 + K and 300 + K; six Gibbs sweeps instead
of two: 0.84, 0.88, 0.86 on the three seeds, not adopted; 24 sweeps, 2026-12-02, for the five
models that take sweeps: on the seed-K crowds, the ones to choose on, the 54 cells move by
+0.003 on average, the class-conditional ones up 0.003-0.023, the lowest cell
(recommended(), spammers K=5) 0.843 either way; on these seed-100 crowds DawidSkene's
class_conditional K=5 0.82 -> 0.85, recommended()'s 0.83 -> 0.85 and its spammers K=5 0.83 ->
0.84; annotator_quality 1.4-2.5x slower (fact_eval 2.2 -> 5.5 s under load), so 50 x 24
E-steps at 10,000,000 labels: not adopted on that evidence) and HierarchicalDawidSkene at K=2
and skewed activity K=5 (0.82-0.84). HierarchicalDawidSkene's K=2 misses are its good
annotators (0.58-0.69 of those above 0.9 covered): on one_coin K=2 (seed 102) the
empirical-Bayes scales are 0.20 and 0.48, and the same fit at twice the ability scale covers
0.907 (0.911 above 0.9) at the same MAE (0.033): a normal population on the logits is
narrower than this crowd's, whose accuracies are uniform, so its error logits are skewed
with a long tail of good annotators, which the normal shrinks toward the rest
(HierarchicalDawidSkene's warm-started M-step, 2026-12-02, left these cells within 0.01);
a heavier-tailed (Student-t) ability, tried in NUTS alone, moved these cells within the noise (0.84 -> 0.86, 0.90 -> 0.88, 0.90 -> 0.90 at K = 2 on 150 annotators; its card);
recommended() covers 0.83-0.93 (was 0.68 on spammers at K=5 with
its previous prior, 3 pseudo-labels per row at 0.8: 15 per annotator at K = 5); its
prior is now worth 6 labels per annotator, chosen among the priors that covered 0.82 or
more on the seed-K crowds (benchmarks/default_loo.py), and its lowest cells here are
class_conditional K=5 and spammers K=5 (0.83).
"""


def write(res: pd.DataFrame, seeds: list[int]) -> None:
    cells = pooled(res)
    em = cells[cells["method"] == "em"]
    several = int(em["seeds"].max()) > 1
    lowest = em.loc[em["coverage"].idxmin()]
    body = "\n".join(
        [
            f"`python benchmarks/coverage_crowds.py --seeds {' '.join(map(str, seeds))}"
            f"{' --nuts' if (res['method'] == 'nuts').any() else ''} --write`, "
            f"{datetime.date.today().isoformat()}. Share of annotators whose 90% interval "
            "for accuracy covers the generating value, on crowds drawn from no model's "
            "prior (see the script's docstring; 3,000 tasks x 5 labels, 300 annotators; "
            "NUTS rows at K = 3 on 1,500 tasks and 150 annotators). Every model on the "
            "populations it nests; target 0.85-0.95. The seeds are not those the default "
            "priors were chosen on."
            + (
                " EM cells: the coverage pooled over the seeds' crowds (900 annotators); "
                "NUTS cells: the first seed's crowd."
                if several
                else ""
            ),
            "",
            table(res),
            "",
            f"EM: {int((em['coverage'] >= 0.85).sum())} of {len(em)} cells at 0.85 or more"
            + (" pooled" if several else "")
            + f", lowest {lowest['coverage']:.2f} ({lowest['model']}, "
            f"{lowest['population']} K={lowest['K']})"
            + (
                f"; on the lowest seed of each cell {int((em['lowest'] >= 0.85).sum())} of "
                f"{len(em)}, lowest {em['lowest'].min():.2f}"
                if several
                else ""
            )
            + f". Estimates outside their own interval: {int(res['estimate_outside'].sum())} "
            "over all cells and seeds.",
            "",
            FINDINGS.strip(),
        ]
    )
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text(encoding="utf-8")
    path.write_text(replace_section(text, "Interval coverage off the prior", body), "utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", "--seed", type=int, nargs="+", default=[100])
    ap.add_argument("--nuts", action="store_true")
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--out", help="also save the rows as CSV")
    ap.add_argument("--from-csv", help="write the table from rows saved by --out, no fits")
    ap.add_argument("--models", nargs="+", choices=list(NESTS), help="fit only these")
    ap.add_argument(
        "--merge",
        help="rows saved by --out: the rows of the (model, engine) pairs run now replace "
        "theirs, the rest stay",
    )
    args = ap.parse_args()
    if args.from_csv:
        res = pd.read_csv(args.from_csv)
    else:
        res = run(args.seeds, args.nuts, args.models)
        if args.merge:
            old = pd.read_csv(args.merge)
            ran = set(zip(res["model"], res["method"], strict=True))
            keep = [(m, e) not in ran for m, e in zip(old["model"], old["method"], strict=True)]
            res = pd.concat([old[keep], res])
    print(table(res))
    if args.out:
        res.to_csv(args.out, index=False)
    if args.write:  # the seeds the rows hold (--from-csv and --merge keep earlier runs')
        seeds = sorted({int(x) for x in res["seed"].dropna()}) if "seed" in res else args.seeds
        write(res, seeds or args.seeds)


if __name__ == "__main__":
    main()
