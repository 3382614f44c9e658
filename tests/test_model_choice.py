"""cb.compare: held-out label log-likelihood from the annotations alone."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from exact_shapes import exact_shapes

import crowdbayes as cb
from crowdbayes.model_choice import held_out_log_lik, stacking_weights
from crowdbayes.simulate import simulate_dawid_skene, simulate_population


def test_compare_prefers_the_model_that_generated_labels_with_biases():
    # full confusion matrices far from one-coin: Dawid-Skene must predict held-out labels
    # better than one-coin, by more than the paired standard error
    sim = simulate_dawid_skene(
        n_tasks=600, n_workers=30, n_classes=3, labels_per_task=5, concentration=3.0, seed=1
    )
    table = cb.compare(
        sim.annotations, {"one_coin": cb.OneCoinDawidSkene(), "ds": cb.DawidSkene()}, folds=4
    )
    assert table.index[0] == "ds"
    assert table.loc["one_coin", "d_elpd"] > 2 * table.loc["one_coin", "dse"] > 0
    assert table.loc["ds", "weight"] > 0.5
    assert np.isclose(table["weight"].sum(), 1.0)
    assert (table["n_labels"] == len(sim.annotations)).all()
    assert (table["se"] > 0).all() and (table["elpd"] < 0).all()


def test_compare_one_coin_crowd_does_not_need_full_confusions():
    # labels from a one-coin crowd: the one-coin model is at least as good held out
    sim = simulate_population("one_coin", n_classes=4, n_tasks=600, n_workers=60, seed=3)
    table = cb.compare(
        sim.annotations, [cb.OneCoinDawidSkene(), cb.DawidSkene()], folds=4, by="annotators"
    )
    assert table.index[0] == "OneCoinDawidSkene"


def test_held_out_log_lik_is_the_predictive_probability():
    df = pd.DataFrame(
        {
            "task": [1, 1, 1, 2, 2, 2],
            "worker": ["a", "b", "c", "a", "b", "c"],
            "label": [0, 0, 1, 1, 1, 1],
        }
    )
    ann = cb.as_annotations(df)
    held = np.array([False, False, True, False, False, False])
    lp = held_out_log_lik(cb.DawidSkene(), ann, held)
    fit = cb.DawidSkene().fit(df.drop(index=2))
    c = fit.annotations_.worker_ids.get_loc("c")
    expect = fit.predict_proba().loc[1].to_numpy() @ fit.confusion_[c][:, 1]
    assert lp.shape == (1,) and lp[0] == pytest.approx(np.log(expect), rel=1e-5)


def test_stacking_weights_put_weight_where_it_helps():
    a = np.log(np.r_[np.full(50, 0.9), np.full(50, 0.1)])
    b = np.log(np.r_[np.full(50, 0.1), np.full(50, 0.9)])
    w = stacking_weights(np.stack([a, b]))
    assert w == pytest.approx([0.5, 0.5], abs=1e-3)
    assert stacking_weights(np.stack([a, a - 1.0]))[0] > 0.99


def test_compare_checks_its_arguments():
    df, _ = cb.datasets.load("wsd")
    with pytest.raises(ValueError, match="by must be"):
        cb.compare(df, [cb.DawidSkene()], by="tasks")
    with pytest.raises(ValueError, match="folds"):
        cb.compare(df, [cb.DawidSkene()], folds=1)
    with pytest.raises(cb.AnnotationsError, match="confusion"):
        cb.compare(df, [cb.MajorityVote()], folds=2)


@pytest.mark.slow
def test_compare_adds_psis_loo_for_nuts_models():
    df, _ = cb.datasets.load("wsd")
    # 100 + 100 draws (was 200 + 200; compare fits NUTS on both folds and on all labels):
    # elpd_loo -222.3 against -225.8 with 200, ll -204.6 (2026-12-02): both bounds clear by
    # 18 and more
    nuts = cb.DawidSkene(inference=cb.NUTS(num_warmup=100, num_samples=100, num_chains=2, seed=3))
    with warnings.catch_warnings():  # few draws: a low-ESS warning may come
        warnings.simplefilter("ignore", cb.ConvergenceWarning)
        table = cb.compare(df, {"em": cb.DawidSkene(), "nuts": nuts}, folds=2)
    assert np.isnan(table.loc["em", "elpd_loo"])
    # PSIS-LOO over tasks: below the tasks' log-likelihood at the EM estimate (which fits
    # every task with its own labels), but not far below on data this easy
    # exact shapes, as the NUTS fit's EM start: its programs serve this fit
    ll = exact_shapes(cb.DawidSkene()).fit(df).log_likelihood().sum()
    assert ll - 60 < table.loc["nuts", "elpd_loo"] < ll
    assert table.loc["nuts", "loo_se"] > 0


def test_compare_fixes_empirical_bayes_scales_at_the_full_data_fit():
    sim = simulate_population("spammers", n_classes=2, n_tasks=300, n_workers=30, seed=5)
    model = cb.HierarchicalDawidSkene()
    fold = model._fold_estimator(sim.annotations)
    full = cb.HierarchicalDawidSkene().fit(sim.annotations)
    assert fold.population_scale == pytest.approx(full.population_scale_)
    assert fold.ability_scale == pytest.approx(full.ability_scale_)
    assert model.population_scale is None  # the caller's estimator is left as it was
    # fixed scales give the same fit as the empirical-Bayes one they came from
    again = fold.fit(sim.annotations)
    assert (again.predict() == full.predict()).all()
    np.testing.assert_allclose(again.confusion_, full.confusion_, atol=1e-3)
