"""One input door for ``pred_probs`` (issue 18): a classifier's probabilities are aligned
once, by ``as_annotations``/``Annotations.with_pred_probs``, and carried by the
``Annotations``; the CROWDLAB models implement ``_fit`` only and read them there."""

import numpy as np
import pandas as pd
import pytest
from crowdlab_cases import case

import crowdbayes as cb
from crowdbayes.data import Annotations, AnnotationsError
from crowdbayes.model_choice import _subset
from crowdbayes.models.bayesian_crowdlab import BayesianCrowdLab
from crowdbayes.models.crowdlab import CrowdLab


def labelled(wide: pd.DataFrame, pp: np.ndarray) -> pd.DataFrame:
    """``pp`` as a DataFrame by task id and class, rows and columns shuffled."""
    df = pd.DataFrame(pp, index=wide.index, columns=list(range(pp.shape[1])))
    return df.iloc[::-1, ::-1]


def test_annotations_carry_the_aligned_pred_probs():
    wide, pp, _ = case("handmade")
    assert cb.as_annotations(wide).pred_probs is None
    pp = np.arange(12.0).reshape(6, 2) + 1.0
    long = cb.as_annotations(wide).to_long().iloc[::-1]
    ann = cb.as_annotations(long, pred_probs=labelled(wide, pp))
    assert ann.pred_probs is not None and ann.pred_probs.dtype == np.float64
    rows = wide.index.get_indexer(ann.task_ids)
    np.testing.assert_array_equal(ann.pred_probs, pp[rows])
    again = cb.as_annotations(long).with_pred_probs(labelled(wide, pp))
    np.testing.assert_array_equal(again.pred_probs, ann.pred_probs)
    # an array follows the rows of a wide table, the task_ids of an Annotations
    np.testing.assert_array_equal(cb.as_annotations(wide, pred_probs=pp).pred_probs, pp)
    # a class only the classifier has is a class of the annotations
    three = cb.as_annotations(wide, pred_probs=np.hstack([pp, pp[:, :1]]))
    assert list(three.classes) == [0, 1, 2] and three.pred_probs.shape == (6, 3)
    # errors name the task or the column, as the models' did
    with pytest.raises(AnnotationsError, match="no row for task 't2'"):
        cb.as_annotations(long, pred_probs=labelled(wide, pp).drop(index="t2"))
    with pytest.raises(AnnotationsError, match="no column for label 1"):
        cb.as_annotations(long, pred_probs=labelled(wide, pp)[[0]])
    with pytest.raises(AnnotationsError, match="pred_probs"):
        Annotations(**{**vars(ann), "pred_probs": ann.pred_probs[1:]})


def test_the_crowdlab_models_implement_fit_only():
    for model in (CrowdLab, BayesianCrowdLab):
        assert "fit" not in vars(model) and "fit_predict" not in vars(model), model
        assert "_fit" in vars(model)


def test_pred_probs_through_the_annotations_or_fit_give_the_same_fit():
    wide, pp, _ = case("two_class")
    ann = cb.as_annotations(wide, pred_probs=pp)
    for model in (CrowdLab, BayesianCrowdLab):
        by_fit = model().fit(wide, pred_probs=pp)
        carried = model().fit(ann)
        np.testing.assert_array_equal(carried.proba_, by_fit.proba_)
        np.testing.assert_array_equal(carried.annotations_.pred_probs, pp)
    with pytest.raises(TypeError, match="needs pred_probs"):
        CrowdLab().fit(wide)
    with pytest.raises(TypeError, match="needs pred_probs"):
        BayesianCrowdLab().fit(cb.as_annotations(wide))


def test_fit_predict_keeps_gold_and_pred_probs():
    wide, pp, truth = case("two_class")
    flipped = {wide.index[0]: 1 - int(truth[0])}
    fitted = BayesianCrowdLab().fit(wide, pred_probs=pp, gold=flipped)
    labels = BayesianCrowdLab().fit_predict(wide, pred_probs=pp, gold=flipped)
    assert labels.iloc[0] == 1 - int(truth[0])
    pd.testing.assert_series_equal(labels, fitted.predict())
    with pytest.raises(TypeError, match=r"pred_probs.*keyword"):
        BayesianCrowdLab().fit(wide, pp)


def test_models_without_a_classifier_refuse_pred_probs():
    wide, pp, _ = case("two_class")
    with pytest.raises(TypeError, match=r"DawidSkene does not use pred_probs.*CrowdLab"):
        cb.DawidSkene().fit(wide, pred_probs=pp)
    with pytest.raises(TypeError, match="MajorityVote does not use pred_probs"):
        cb.MajorityVote().fit_predict(wide, pred_probs=pp)
    # carried by the annotations, they are there for the models that use them
    ann = cb.as_annotations(wide, pred_probs=pp)
    np.testing.assert_array_equal(cb.DawidSkene().fit(ann).proba_, cb.DawidSkene().fit(wide).proba_)


def test_a_subset_of_the_annotations_keeps_its_tasks_pred_probs():
    wide, pp, _ = case("two_class")
    ann = cb.as_annotations(wide, pred_probs=pp)
    keep = ann.task % 3 != 0
    sub, new_code = _subset(ann, keep)
    kept = np.flatnonzero(new_code >= 0)
    assert sub.pred_probs.shape == (sub.n_tasks, 2)
    np.testing.assert_array_equal(sub.pred_probs, pp[kept])


def test_a_platform_export_goes_through_the_same_door():
    """``as_annotations`` reads an export before asking whether a table is wide; with
    ``pred_probs`` it did not (the export was refused as an ambiguous wide table)."""
    from pathlib import Path

    export = pd.read_csv(Path(__file__).parent / "data" / "platform_export.tsv", sep="\t")
    ann = cb.as_annotations(export)
    pp = pd.DataFrame(
        np.full((ann.n_tasks, ann.n_classes), 1.0 / ann.n_classes),
        index=ann.task_ids,
        columns=ann.classes,
    )
    carried = cb.as_annotations(export, pred_probs=pp)
    assert list(carried.task_ids) == list(ann.task_ids)
    np.testing.assert_array_equal(carried.gold, ann.gold)
    no_gold = export.drop(columns=[c for c in export.columns if c.startswith("GOLDEN:")])
    cl = CrowdLab().fit(no_gold, pred_probs=pp)
    assert sorted(cl.annotator_quality().index) == sorted(ann.worker_ids)
