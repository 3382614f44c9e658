"""Majority vote, Dawid–Skene EM, the estimator conventions and the command line."""

import pickle

import numpy as np
import pandas as pd
import pytest

import crowdbayes as cb
from crowdbayes.cli import main
from crowdbayes.simulate import simulate_dawid_skene


def accuracy(pred: pd.Series, gold: pd.Series) -> float:
    return float((pred.loc[gold.index].to_numpy() == gold.to_numpy()).mean())


@pytest.fixture(scope="module")
def rte():
    return cb.datasets.load("rte")


@pytest.fixture(scope="module")
def sim():
    return simulate_dawid_skene(
        n_tasks=2000, n_workers=50, n_classes=4, labels_per_task=5, accuracy_range=(0.35, 0.9)
    )


# ------------------------------------------------------------------ majority vote
def test_majority_vote_on_rte_with_documented_tie_policy(rte):
    labels, gold = rte
    assert accuracy(cb.MajorityVote(tie_break="smallest").fit_predict(labels), gold) == 0.91875
    mv = cb.MajorityVote().fit(labels)  # seeded random ties: repeatable
    assert mv.predict().equals(cb.MajorityVote().fit(labels).predict())
    assert len(mv.tied_tasks_) == 65  # 5-5 splits, counted independently
    proba = mv.predict_proba()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert proba.loc[mv.tied_tasks_].max(axis=1).eq(0.5).all()


def test_majority_vote_tie_policies():
    df = pd.DataFrame(
        {"task": [1, 1, 2, 2, 2], "worker": ["a", "b", "a", "b", "c"], "label": [1, 0, 1, 1, 0]}
    )
    assert cb.MajorityVote(tie_break="smallest").fit_predict(df).tolist() == [0, 1]
    assert cb.MajorityVote(tie_break="prior").fit_predict(df).tolist() == [1, 1]
    picks = {cb.MajorityVote(seed=s).fit_predict(df).iloc[0] for s in range(20)}
    assert picks == {0, 1}
    with pytest.raises(ValueError, match="tie_break must be one of"):
        cb.MajorityVote(tie_break="coin").fit(df)


# ------------------------------------------------------------------- dawid-skene
def test_dawid_skene_real_data_accuracy(rte):
    labels, gold = rte
    ds = cb.DawidSkene().fit(labels)
    assert accuracy(ds.predict(), gold) >= 0.925
    blue, blue_gold = cb.datasets.load("bluebirds")
    assert accuracy(cb.DawidSkene().fit_predict(blue), blue_gold) >= 0.88


def test_dawid_skene_em_is_monotone_and_converges(rte):
    ds = cb.DawidSkene(tol=1e-7).fit(rte[0])
    assert ds.converged_ and ds.n_iter_ == len(ds.history_) > 1
    assert np.all(np.diff(ds.history_) >= -1e-4 * abs(ds.history_[-1]))
    full = cb.DawidSkene(max_iter=7, tol=0).fit(rte[0])
    assert full.n_iter_ == 7 and not full.converged_


def test_dawid_skene_recovers_simulated_annotators(sim):
    ds = cb.DawidSkene().fit(sim.annotations)
    quality = ds.annotator_quality()
    est = quality["accuracy"].reindex(range(50)).to_numpy()
    assert np.mean(np.abs(est - sim.accuracy)) < 0.05
    ds_acc = accuracy(ds.predict(), sim.truth)
    mv_acc = accuracy(cb.MajorityVote().fit_predict(sim.annotations), sim.truth)
    assert ds_acc > mv_acc + 0.02
    # confusion matrices are proper distributions
    np.testing.assert_allclose(ds.confusion_.sum(axis=2), 1.0, rtol=1e-5)
    assert ds.confusion_matrix(0).shape == (4, 4)


def test_every_task_comes_out_once_in_the_users_ids(sim):
    df = sim.annotations.assign(task=lambda d: "task-" + d["task"].astype(str))
    df = df.assign(label=df["label"].map({0: "a", 1: "b", 2: "c", 3: "d"}))
    for model in (cb.MajorityVote(), cb.DawidSkene()):
        model.fit(df)
        pred, proba = model.predict(), model.predict_proba()
        assert pred.index.is_unique and set(pred.index) == set(df["task"])
        assert list(proba.columns) == ["a", "b", "c", "d"]
        assert proba.index.equals(pred.index)
        assert set(pred.unique()) <= {"a", "b", "c", "d"}
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_gold_is_clamped_and_helps(sim):
    gold = sim.truth.iloc[:500]
    ds = cb.DawidSkene().fit(sim.annotations, gold=gold)
    assert (ds.predict().loc[gold.index] == gold).all()
    assert np.all(ds.predict_proba().loc[gold.index].max(axis=1) == 1.0)
    rest = sim.truth.iloc[500:]
    plain = cb.DawidSkene().fit(sim.annotations)
    assert accuracy(ds.predict(), rest) >= accuracy(plain.predict(), rest) - 0.005


def test_predict_new_tasks_with_fitted_annotators(sim):
    df = sim.annotations
    train = df[df["task"] < 1500]
    test = df[df["task"] >= 1500]
    ds = cb.DawidSkene().fit(train)
    new = ds.predict(test)
    assert len(new) == 500 and accuracy(new, sim.truth.loc[new.index]) > 0.85
    # an annotator never seen in training is scored with the average confusion
    unseen = test.assign(worker=test["worker"] + 1000)
    assert len(ds.predict_proba(unseen)) == 500


def test_estimator_conventions_clone_params_pickle(rte):
    sklearn_base = pytest.importorskip("sklearn.base")
    ds = cb.DawidSkene(prior_strength=3.0, max_iter=50)
    assert ds.get_params()["prior_strength"] == 3.0
    assert repr(ds) == "DawidSkene(prior_strength=3.0, max_iter=50)"
    with pytest.raises(cb.NotFittedError, match="not fitted yet"):
        ds.predict()
    clone = sklearn_base.clone(ds)
    assert clone.get_params() == ds.get_params() and clone is not ds
    ds.set_params(max_iter=30)
    assert ds.max_iter == 30
    with pytest.raises(ValueError, match="no parameter 'bogus'"):
        ds.set_params(bogus=1)
    assert ds.fit(rte[0]) is ds
    restored = pickle.loads(pickle.dumps(ds))
    pd.testing.assert_series_equal(restored.predict(), ds.predict())
    pd.testing.assert_frame_equal(
        restored.predict_proba(rte[0].head(30)), ds.predict_proba(rte[0].head(30))
    )


def test_task_uncertainty_table(rte):
    unc = cb.DawidSkene().fit(rte[0]).task_uncertainty()
    assert list(unc.columns) == ["label", "probability", "entropy", "n_labels", "gold"]
    assert len(unc) == 800 and unc["n_labels"].eq(10).all()
    assert unc["entropy"].between(0, np.log(2) + 1e-6).all()
    assert unc["probability"].between(0.5, 1.0).all()


def test_bad_parameters_are_reported(rte):
    with pytest.raises(ValueError, match="prior_accuracy must be in"):
        cb.DawidSkene(prior_accuracy=1.5).fit(rte[0])
    with pytest.raises(ValueError, match="max_iter must be"):
        cb.DawidSkene(max_iter=0).fit(rte[0])


# --------------------------------------------------------------------- command line
def test_cli_dataset_prints_accuracy(capsys):
    assert main(["aggregate", "--dataset", "rte", "--model", "mv", "--model", "ds", "--quiet"]) == 0
    err = capsys.readouterr().err  # the accuracy table goes to stderr (stdout: the CSV)
    rows = {line.split()[0]: float(line.split()[1]) for line in err.splitlines()[1:3]}
    assert rows["ds"] >= 0.925 and 0.89 <= rows["mv"] <= 0.92


def test_cli_file_in_file_out(tmp_path, rte):
    labels, gold = rte
    src, gold_file, out = tmp_path / "in.csv", tmp_path / "gold.csv", tmp_path / "out.csv"
    labels.rename(columns={"worker": "annotator"}).to_csv(src, index=False)
    gold.rename("label").reset_index().to_csv(gold_file, index=False)
    code = main(
        [
            "aggregate",
            str(src),
            "--worker-col",
            "annotator",
            "--gold",
            str(gold_file),
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    result = pd.read_csv(out, dtype={"task": str})
    assert list(result.columns) == ["task", "label", "probability"] and len(result) == 800
    assert set(result["task"]) == set(labels["task"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("task,worker\n1,a\n", "no column 'label'"),
        ("task,worker,label\n", "empty"),
        ("task,worker,label\n1,a,x\n2,a,\n", "'label' has 1 missing value"),
        ("task,worker,label\n1,a,x\n2,b,x\n", "only one class"),
    ],
)
def test_cli_bad_input_one_line_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert main(["aggregate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("crowdbayes: error: ") and message in err and "\n" not in err


def test_cli_gold_with_unseen_label(tmp_path, capsys):
    path, gold = tmp_path / "in.csv", tmp_path / "gold.csv"
    path.write_text("task,worker,label\n1,a,x\n1,b,y\n")
    gold.write_text("task,label\n1,z\n")
    assert main(["aggregate", str(path), "--gold", str(gold)]) == 2
    assert "gold label 'z'" in capsys.readouterr().err
