"""recommended(): an unfitted estimator with fixed settings that does well on bundled data."""

import numpy as np
import pytest

import crowdbayes as cb
from crowdbayes.recommend import CalibratedDawidSkene, recommended, temper


def accuracy(model, gold):
    return float((model.predict().loc[gold.index] == gold).mean())


def test_recommended_is_unfitted_and_fixed():
    model = recommended()
    assert isinstance(model, CalibratedDawidSkene)
    assert not hasattr(model, "proba_")
    assert recommended().get_params() == model.get_params()
    assert model.get_params()["temperature"] == 4.0


@pytest.mark.parametrize(("name", "floor"), [("rte", 0.925), ("bluebirds", 0.86)])
def test_recommended_on_bundled_data(name, floor):
    df, gold = cb.datasets.load(name)
    model = recommended().fit(df)
    assert accuracy(model, gold) >= floor
    plain = cb.DawidSkene(prior_strength=10, prior_accuracy=0.8, class_prior_strength=10).fit(df)
    assert (model.predict() == plain.predict()).all()  # tempering keeps the labels
    proba = model.predict_proba().to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-9)
    assert proba.max(axis=1).mean() < plain.predict_proba().to_numpy().max(axis=1).mean()


def test_temperature_checks():
    np.testing.assert_allclose(temper(np.array([[0.5, 0.5]]), 3.0), [[0.5, 0.5]])
    df, _ = cb.datasets.load("wsd")
    with pytest.raises(ValueError, match="temperature"):
        CalibratedDawidSkene(temperature=0).fit(df)
