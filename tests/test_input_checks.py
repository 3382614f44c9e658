"""Input the estimators must never misread: classifier columns against the classes, and
interval arguments that are not numbers."""

import warnings

import numpy as np
import pandas as pd
import pytest

import crowdbayes as cb
from crowdbayes.base import AdversarialWarning
from crowdbayes.models.bayesian_crowdlab import BayesianCrowdLab
from crowdbayes.models.crowdlab import CrowdLab


@pytest.fixture(scope="module")
def rte_with_classifier():
    labels, gold = cb.datasets.load("rte")
    tasks = pd.unique(labels["task"])
    truth = gold.loc[tasks].to_numpy()
    rng = np.random.default_rng(0)
    p1 = np.clip(np.where(truth == 1, 0.8, 0.2) + rng.normal(0, 0.1, len(tasks)), 0.01, 0.99)
    probs = pd.DataFrame({0: 1 - p1, 1: p1}, index=tasks)
    return labels, probs, truth


def _accuracy(model, truth, tasks):
    return float(np.mean(model.predict().loc[tasks].to_numpy() == truth))


def test_bayesian_crowdlab_aligns_labelled_columns_and_warns_on_swapped_ones(
    rte_with_classifier,
):
    labels, probs, truth = rte_with_classifier
    tasks = probs.index
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        good = BayesianCrowdLab().fit(labels, pred_probs=probs[[1, 0]])
    assert list(good.classes_) == [0, 1]
    assert _accuracy(good, truth, tasks) > 0.95
    text = BayesianCrowdLab().fit(labels, pred_probs=probs.rename(columns=str))
    np.testing.assert_allclose(text.proba_, good.proba_)
    # the same numbers under the wrong labels: the fit turns the crowd adversarial
    swapped = probs.set_axis([1, 0], axis=1)
    with pytest.warns(AdversarialWarning, match="worse than chance"):
        BayesianCrowdLab().fit(labels, pred_probs=swapped)
    with pytest.warns(AdversarialWarning, match="worse than chance"):
        CrowdLab().fit(labels, pred_probs=swapped)
    # a classifier that is wrong more often than not, against a good crowd
    anti = pd.DataFrame(np.where(truth[:, None] == [0, 1], 0.4, 0.6), index=tasks, columns=[0, 1])
    with pytest.warns(AdversarialWarning, match="classifier is worse than chance"):
        BayesianCrowdLab().fit(labels, pred_probs=anti)


def test_interval_must_be_a_number():
    labels, _ = cb.datasets.load("rte")
    ds = cb.DawidSkene().fit(labels)
    with pytest.raises(TypeError, match=r"interval must be a number.*DataFrame.*predict_proba"):
        ds.task_uncertainty(labels)
    with pytest.raises(ValueError, match="interval must be between 0 and 1"):
        ds.task_uncertainty(interval=1.5)
    with pytest.raises(TypeError, match="interval must be a number"):
        ds.annotator_quality(interval="0.9")
    assert len(ds.task_uncertainty(0.8)) == 800
    assert ds.annotator_quality(interval=None).shape[0] == 164
