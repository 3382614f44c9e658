"""recommended(): an unfitted estimator with fixed settings that does well on bundled data."""

import numpy as np
import pytest

import crowdbayes as cb
from crowdbayes.recommend import CalibratedDawidSkene, recommended, task_temperatures, temper


def accuracy(model, gold):
    return float((model.predict().loc[gold.index] == gold).mean())


def test_recommended_is_unfitted_and_fixed():
    model = recommended()
    assert isinstance(model, CalibratedDawidSkene)
    assert not hasattr(model, "proba_")
    assert recommended().get_params() == model.get_params()
    assert model.get_params()["temperature"] == 1.5
    assert model.get_params()["label_power"] == 0.5


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


def test_temperature_grows_with_labels_per_task():
    df, _ = cb.datasets.load("rte")  # 10 labels on every task
    ann = cb.as_annotations(df)
    np.testing.assert_allclose(task_temperatures(ann, 1.5, 0.5), 1.5 * np.sqrt(10))
    model = recommended().fit(df)
    plain = cb.DawidSkene(prior_strength=10, prior_accuracy=0.8, class_prior_strength=10).fit(df)
    np.testing.assert_allclose(
        model.predict_proba().to_numpy(),
        temper(plain.predict_proba().to_numpy(), 1.5 * np.sqrt(10)),
        atol=1e-6,
    )
    # label_power=0: one temperature for every task
    const = CalibratedDawidSkene(temperature=4.0, label_power=0.0).fit(df)
    np.testing.assert_allclose(
        const.predict_proba().to_numpy(), temper(plain.predict_proba().to_numpy(), 4.0), atol=1e-6
    )
    # new tasks are tempered by their own label counts: one label -> temperature 1.5
    first = df.groupby("task", sort=False).head(1)
    new = model.predict_proba(first).to_numpy()
    raw = plain.predict_proba(first).to_numpy()
    np.testing.assert_allclose(new, temper(raw, 1.5), atol=1e-6)
