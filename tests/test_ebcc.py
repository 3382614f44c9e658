"""EBCC (models/ebcc.py): correlated errors on simulated crowds, Dawid–Skene at one
sub-type, gold clamped, new tasks scored, the best restart kept, NUTS refused."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest

import crowdbayes as cb
from crowdbayes.models.ebcc import EBCC


def correlated_crowd(seed: int, T: int = 1500, W: int = 5, group: int = 2) -> tuple:
    """A fixed panel of ``W`` annotators labels every task (accuracy U[0.75, 0.9], two
    classes, 30% positive); on a third of the negative tasks the first ``group``
    annotators say positive with probability 0.85 together (correlated errors)."""
    rng = np.random.default_rng(seed)
    truth = (rng.random(T) < 0.3).astype(int)
    tricky = (truth == 0) & (rng.random(T) < 0.3)
    acc = rng.uniform(0.75, 0.9, size=W)
    lab = np.where(rng.random((T, W)) < acc, truth[:, None], 1 - truth[:, None])
    lab[tricky, :group] = rng.random((int(tricky.sum()), group)) < 0.85
    t, w = np.meshgrid(np.arange(T), np.arange(W), indexing="ij")
    df = pd.DataFrame({"task": t.ravel(), "worker": w.ravel(), "label": lab.ravel()})
    return df, pd.Series(truth)


def accuracy(model: cb.Aggregator, gold: pd.Series) -> float:
    return float((model.predict().reindex(gold.index) == gold).mean())


@cache
def wsd() -> tuple[pd.DataFrame, pd.Series]:
    return cb.datasets.load("wsd")


def test_a_correlated_minority_does_not_define_the_class() -> None:
    # Dawid-Skene's class follows the two annotators who err together; EBCC's sub-types
    # absorb them (2 of 5 correlated; with half the panel correlated EBCC is the worse,
    # see models/ebcc.md)
    ds, eb = [], []
    for seed in range(4):
        df, truth = correlated_crowd(seed)
        ds.append(accuracy(cb.DawidSkene().fit(df), truth))
        eb.append(accuracy(EBCC().fit(df), truth))
    assert np.mean(eb) > np.mean(ds) + 0.02, (ds, eb)
    assert min(np.subtract(eb, ds)) > -0.005, (ds, eb)


def test_one_subtype_is_dawid_skene_with_the_same_prior() -> None:
    df, _ = wsd()  # 3 classes: rows worth 4 + 2 labels, 4 of them on the diagonal
    eb = EBCC(n_subtypes=1, n_restarts=1, tol=0.0, max_iter=60).fit(df)
    ds = cb.DawidSkene(prior_strength=6.0, prior_accuracy=4 / 6, tol=0.0, max_iter=60).fit(df)
    np.testing.assert_allclose(eb.proba_, ds.proba_, atol=2e-4)
    np.testing.assert_allclose(np.exp(eb.params_.log_confusion), ds.confusion_, atol=2e-4)
    np.testing.assert_allclose(eb.history_, ds.history_, rtol=1e-5)


def test_reported_quality_reads_the_labels_against_the_classes() -> None:
    # confusion_ and annotator_quality: each annotator's labels against EBCC's classes
    # under DawidSkene's default prior (4 / K pseudo-labels per row, 70% diagonal), not
    # the sub-types' strong prior (which at K = 5 pulled good annotators to 0.5)
    df, _ = wsd()
    eb = EBCC(n_restarts=2).fit(df)
    ds = cb.DawidSkene(max_iter=1, tol=0.0)
    ds._init_post = lambda ann: eb.proba_  # one M-step from EBCC's posterior
    ds.fit(df)
    np.testing.assert_allclose(
        eb.confusion_, np.exp(np.asarray(ds.params_.log_confusion)), atol=2e-5
    )
    q = eb.annotator_quality()
    assert ((q["accuracy_lower"] <= q["accuracy"]) & (q["accuracy"] <= q["accuracy_upper"])).all()


def test_the_best_restart_is_kept_and_a_seed_fixes_it() -> None:
    df, _ = cb.datasets.load("bluebirds")
    a, b = EBCC(seed=3).fit(df), EBCC(seed=3).fit(df)
    assert a.restart_objectives_.shape == (5,)
    assert a.history_[-1] == pytest.approx(a.restart_objectives_.max())
    np.testing.assert_array_equal(a.proba_, b.proba_)
    shares = a.subtype_shares_
    assert shares.shape == (2, 10)
    np.testing.assert_allclose(shares.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(a.proba_.sum(1), 1.0, rtol=1e-5)


def test_gold_tasks_are_clamped_to_their_class() -> None:
    df, gold = wsd()
    some = gold.iloc[::3]
    model = EBCC(n_restarts=2).fit(df, gold=some)
    proba = model.predict_proba().loc[some.index]
    np.testing.assert_allclose(proba.max(axis=1), 1.0, atol=1e-6)
    assert (model.predict().loc[some.index] == some).all()


def test_new_tasks_are_scored_like_the_fitted_ones() -> None:
    df, _ = wsd()
    model = EBCC(n_restarts=2).fit(df)
    again = model.predict_proba(df)
    np.testing.assert_allclose(
        again.loc[model.annotations_.task_ids].to_numpy(), model.proba_, atol=1e-4
    )


def test_nuts_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="EM only"):
        EBCC(inference=cb.NUTS(num_warmup=5, num_samples=5, num_chains=1)).fit(wsd()[0])


@pytest.mark.parametrize("bad", [{"n_subtypes": 0}, {"n_restarts": 0}, {"diagonal_prior": -1}])
def test_bad_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        EBCC(**bad).fit(wsd()[0])
    with pytest.raises(ValueError):  # and by cb.compare, whose folds run one EM run each
        cb.compare(wsd()[0], {"EBCC": EBCC(**bad)}, folds=2)


def test_new_annotations_with_gold_keep_their_gold_class() -> None:
    # scoring an Annotations that carries gold maps it to the sub-types as the fit does
    df, gold = wsd()
    some = gold.iloc[::3]
    model = EBCC(n_restarts=1).fit(df, gold=some)
    proba = model.predict_proba(model.annotations_).loc[some.index]
    assert (proba.idxmax(axis=1) == some).all()
    np.testing.assert_allclose(proba.max(axis=1), 1.0, atol=1e-6)


def test_a_subtype_axis_the_size_of_the_padded_annotators_fits() -> None:
    # 8 classes x 8 sub-types = 64 rows, the padded annotator count of a shape bucket:
    # EBCC fits exact shapes (bucketing finds padding axes by their length)
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 8, 200)
    rows = [
        (t, w, truth[t] if rng.random() < 0.8 else rng.integers(0, 8))
        for t in range(200)
        for w in rng.choice(10, 10, replace=False)
    ]
    df = pd.DataFrame(rows, columns=["task", "worker", "label"])
    model = EBCC(n_subtypes=8, n_restarts=1).fit(df)
    assert np.asarray(model.params_.log_confusion).shape == (10, 64, 8)
    assert accuracy(model, pd.Series(truth)) > 0.95


def test_compare_scores_ebccs_own_predictive() -> None:
    # held-out labels are predicted from EBCC's sub-type rows, not from confusion_ (the
    # annotator reading under another prior): at one sub-type that is Dawid-Skene with
    # EBCC's prior, label for label
    from crowdbayes.model_choice import held_out_log_lik

    df, _ = wsd()
    ann = cb.as_annotations(df)
    held = np.random.default_rng(0).random(ann.n_labels) < 0.2
    eb = held_out_log_lik(EBCC(n_subtypes=1, n_restarts=1, tol=0.0, max_iter=60), ann, held)
    ds = cb.DawidSkene(prior_strength=6.0, prior_accuracy=4 / 6, tol=0.0, max_iter=60)
    np.testing.assert_allclose(eb, held_out_log_lik(ds, ann, held), atol=1e-3)


def test_compare_refits_each_fold_once_from_the_first_split(monkeypatch) -> None:
    # one EM run per fold (the first restart's split), not n_restarts: the held-out labels
    # are scored as the fold's one-run fit predicts them, label for label
    from crowdbayes.model_choice import held_out_log_lik
    from crowdbayes.models.bayesian import BayesianAggregator

    df, _ = wsd()
    ann = cb.as_annotations(df)
    runs = []
    fit = BayesianAggregator._fit
    monkeypatch.setattr(BayesianAggregator, "_fit", lambda self, a: runs.append(1) or fit(self, a))
    table = cb.compare(ann, {"EBCC": EBCC(n_restarts=4)}, folds=3)
    assert len(runs) == 3
    fold_of = np.random.default_rng(0).permutation(np.arange(ann.n_labels) % 3)
    held = fold_of == 0
    one = held_out_log_lik(EBCC(n_restarts=1), ann, held)
    assert len(runs) == 4
    rest = sum(held_out_log_lik(EBCC(n_restarts=1), ann, fold_of == f).sum() for f in (1, 2))
    np.testing.assert_allclose(table.loc["EBCC", "elpd"], one.sum() + rest, rtol=1e-6)


def test_the_command_line_seed_reaches_the_restarts() -> None:
    from crowdbayes.cli import build_model, build_parser
    from crowdbayes.registry import MODELS

    args = build_parser().parse_args(["aggregate", "--dataset", "wsd", "--seed", "3"])
    assert build_model(MODELS["ebcc"], args).get_params()["seed"] == 3
