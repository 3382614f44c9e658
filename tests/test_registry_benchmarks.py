"""What reads the registry instead of a per-model table (issue 18: a model is three files,
its family with its estimator, its card and its registry entry): the own-prior coverage
benchmark, the model cards' results, the reference site's estimators page and the
package's public names all pick up every registered model by themselves."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache, partial
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import crowdbayes as cb
from crowdbayes.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]


@cache
def bench(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (loaded by path: ``coverage`` is also the name
    of a package that may be installed)."""
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", ROOT / "benchmarks" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def bayesian_cards() -> list[str]:
    """The card keys of the registered Bayesian models fitted from the labels alone."""
    return [s.card_key for s in MODELS.values() if s.nuts and not s.needs_pred_probs]


def test_the_coverage_benchmark_runs_every_registered_model() -> None:
    cov = bench("coverage")
    keys = list(cov.MODELS)
    assert sorted(keys) == sorted(bayesian_cards())
    # the hand-written simulators first, in their order: each model's data seed is its place
    assert keys[: len(cov.OWN_PRIOR)] == list(cov.OWN_PRIOR)
    estimators = {s.card_key: s.estimator for s in MODELS.values()}
    assert all(cov.MODELS[k].title == estimators[k] for k in keys)


def test_the_prior_predictive_draws_from_the_models_own_prior() -> None:
    """One-coin simulated from its NumPyro priors (as a model without a hand-written
    simulator is) with the benchmark's Beta(7.5, 2.5) on the accuracy: mean 0.75, sd 0.13,
    so 240 annotators' mean is 0.75 within 0.03; errors spread evenly over the other
    classes."""
    cov = bench("coverage")
    build = partial(MODELS["one-coin"].build, **cov.COMMON_PRIOR)
    sim = cov.prior_predictive(build)(np.random.default_rng(0), 240, 1500, 5)
    assert len(sim.labels) == 1500 * 5 and sim.accuracy.shape == (240,)
    assert abs(sim.accuracy.mean() - 0.75) < 0.03 and 0.05 < sim.accuracy.std() < 0.25
    conf = cov.prior_confusions(build(), 240, np.random.default_rng(1))
    off = conf[:, ~np.eye(3, dtype=bool)].reshape(240, 3, 2)
    np.testing.assert_allclose(off[..., 0], off[..., 1], rtol=1e-5)
    np.testing.assert_allclose(conf.sum(-1), 1.0, rtol=1e-6)


def test_the_prior_predictive_refuses_a_likelihood_beyond_the_confusions() -> None:
    cov = bench("coverage")
    with pytest.raises(ValueError, match="not that of its confusion matrices"):
        cov.prior_confusions(MODELS["item-difficulty"].build(), 40, np.random.default_rng(0))


def test_the_model_cards_script_writes_every_registered_card() -> None:
    cards = bench("model_cards").CARDS
    label_only = [
        s.card_key
        for k, s in MODELS.items()
        if k != "recommended" and s.iterative and not (s.needs_gold or s.needs_pred_probs)
    ]
    assert list(cards) == label_only and set(bayesian_cards()) <= set(cards)
    assert "ebcc" in cards  # EM only: no NUTS, still a card with results
    for key, cls in cards.items():
        assert (ROOT / "models" / f"{key}.md").is_file() and issubclass(cls, cb.Aggregator)


def test_replace_results_keeps_the_hand_written_card() -> None:
    replace = bench("model_cards").replace_results
    card = "# T\n\n## Generative story\nstory\n\n## Results (old)\nold\n\n## Interval coverage\nc\n"
    new = replace(card, "## Results (EM)\nnew\n")
    assert (
        new
        == "# T\n\n## Generative story\nstory\n\n## Results (EM)\nnew\n\n## Interval coverage\nc\n"
    )
    assert replace("# T\n\nstory\n", "## Results\nnew\n") == "# T\n\nstory\n\n## Results\nnew\n"


def test_the_estimators_page_gets_every_registered_estimator() -> None:
    pytest.importorskip("mkdocs")  # the hook's module imports it (the docs extra)
    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    try:
        import pages
    finally:
        sys.path.pop(0)
    page = (ROOT / "docs" / "api" / "estimators.md").read_text(encoding="utf-8")
    full = pages.registered_estimators(page)
    for spec in MODELS.values():
        assert full.count(f"::: crowdbayes.{spec.module}.{spec.estimator}\n") == 1, spec
    less = page.replace("::: crowdbayes.models.mace.MACE\n\n", "")
    back = pages.registered_estimators(less)
    head = back[: back.index("## Inference engines")]
    assert head.rstrip().endswith("::: crowdbayes.models.mace.MACE")
    assert pages.registered_estimators(full) == full


def test_every_registered_estimator_is_a_public_name() -> None:
    for spec in MODELS.values():
        assert spec.estimator in cb.__all__ and cb._LAZY[spec.estimator] == f".{spec.module}"


def test_the_accuracy_benchmark_fits_every_registered_label_only_model() -> None:
    """``benchmarks/accuracy.py`` fits ``recommended()`` and every registered model that
    needs neither gold nor ``pred_probs``, and nothing else (it once walked
    ``crowdbayes.models`` and tried the base class ``BayesianAggregator`` as a model);
    ``--nuts all`` adds the NUTS fit of each model that takes it."""
    acc = bench("accuracy")
    label_only = [
        s
        for k, s in MODELS.items()
        if k != "recommended" and not (s.needs_gold or s.needs_pred_probs)
    ]
    assert sorted(acc.crowdbayes_methods("none")) == sorted(
        ["recommended()"] + [s.estimator for s in label_only]
    )
    with_nuts = acc.crowdbayes_methods("all")
    assert sorted(n for n in with_nuts if n.endswith(" (NUTS)")) == sorted(
        f"{s.estimator} (NUTS)" for s in label_only if s.nuts
    )
    assert all(with_nuts[n][1] == n.endswith(" (NUTS)") for n in with_nuts)
