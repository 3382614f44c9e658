"""CrowdLab against cleanlab 2.9: stored reference numbers (always) and live (when installed)."""

import warnings

import numpy as np
import pandas as pd
import pytest
from crowdlab_cases import REFERENCE, SIM_CASES, case

from crowdbayes.data import AnnotationsError
from crowdbayes.datasets.curation_lab import BAD_ANNOTATORS, lab_majority_vote, make_data
from crowdbayes.models.crowdlab import CrowdLab

CASES = ["seed", *SIM_CASES, "handmade"]


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(REFERENCE))


def check_against(cl: CrowdLab, ref: dict, prefix: str, wide: pd.DataFrame) -> None:
    lq = cl.label_quality()
    np.testing.assert_array_equal(lq["consensus_label"].to_numpy(), ref[prefix + "consensus_label"])
    np.testing.assert_allclose(
        lq["consensus_quality_score"], ref[prefix + "consensus_quality_score"], rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(
        lq["annotator_agreement"], ref[prefix + "annotator_agreement"], rtol=0, atol=1e-12
    )
    np.testing.assert_array_equal(lq["num_annotations"], wide.notna().sum(axis=1))
    detailed = cl.detailed_label_quality().to_numpy()
    np.testing.assert_allclose(detailed[~np.isnan(detailed)], ref[prefix + "detailed"], atol=1e-6)
    stats = cl.annotator_stats()
    assert [str(a) for a in stats.index] == list(ref[prefix + "annotators"])  # worst first
    np.testing.assert_allclose(
        stats["annotator_quality"], ref[prefix + "annotator_quality"], rtol=0, atol=1e-6
    )  # NaN where cleanlab has NaN (annotators sharing no task)
    np.testing.assert_allclose(
        stats["agreement_with_consensus"], ref[prefix + "agreement_with_consensus"], atol=1e-12
    )
    np.testing.assert_array_equal(stats["worst_class"], ref[prefix + "worst_class"])
    np.testing.assert_array_equal(
        stats["num_examples_labeled"], wide[stats.index].notna().sum().to_numpy()
    )
    assert cl.model_weight_ == pytest.approx(float(ref[prefix + "model_weight"]), abs=1e-9)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("cal", [False, True])
def test_matches_stored_cleanlab(name, cal, ref):
    wide, pp, _ = case(name)
    cl = CrowdLab(calibrate_probs=cal).fit(wide, pred_probs=pp)
    check_against(cl, ref, f"{name}/cal{int(cal)}/", wide)
    al, al_unlabeled = cl.active_learning_scores(pp[:25])
    np.testing.assert_allclose(al.to_numpy(), ref[f"{name}/al"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(al_unlabeled, ref[f"{name}/al_unlabeled"], rtol=0, atol=1e-9)


def test_edge_cases_are_present():
    """The simulated cases hold what the faithfulness claim is about."""
    wide, pp, _ = case("wide_sparse")
    cl = CrowdLab().fit(wide, pred_probs=pp)
    stats = cl.annotator_stats()
    assert np.isnan(stats.loc["w0", "annotator_quality"])  # shares no task: NaN, as cleanlab
    assert stats.index[-1] == "w0"
    assert (cl.label_quality()["num_annotations"] == 1).sum() > 40
    hand, hpp, _ = case("handmade")
    mv = CrowdLab(consensus_method="majority_vote").fit(hand, pred_probs=hpp)
    assert mv.predict().tolist() == [0, 1, 0, 1, 0, 1]  # third tie-break decides t2, t3
    assert len(mv.random_tied_tasks_) == 0


def test_live_cleanlab_long_input_and_labels():
    """Long input with string labels and shuffled pred_probs rows gives cleanlab's answers."""
    multiannotator = pytest.importorskip("cleanlab.multiannotator")
    wide, pp, _ = case("coarse_ties")
    r = multiannotator.get_label_quality_multiannotator(wide, pp, verbose=False)
    names = np.array(["ant", "bee", "cat", "dog", "eel"])
    long = wide.stack().dropna().rename("label").reset_index()
    long.columns = ["item", "annotator", "label"]
    long["label"] = names[long["label"].to_numpy(dtype=int)]
    long["item"] = "item" + long["item"].astype(str)
    long = long.sample(frac=1.0, random_state=0)  # row order must not matter
    probs = pd.DataFrame(pp, index="item" + pd.Index(range(len(pp))).astype(str), columns=names)
    probs = probs.iloc[::-1]
    cl = CrowdLab().fit(long, pred_probs=probs, task="item", worker="annotator")
    got = cl.label_quality().loc[probs.index[::-1]]
    np.testing.assert_array_equal(
        got["consensus_label"].to_numpy(), names[r["label_quality"]["consensus_label"]]
    )
    np.testing.assert_allclose(
        got["consensus_quality_score"], r["label_quality"]["consensus_quality_score"], atol=1e-6
    )
    st = r["annotator_stats"]
    mine = cl.annotator_stats().loc[st.index]
    np.testing.assert_allclose(mine["annotator_quality"], st["annotator_quality"], atol=1e-6)
    np.testing.assert_array_equal(mine["worst_class"], names[st["worst_class"]])


def test_seed_pred_probs_reproduce_the_lab(ref):
    """The lab's generator and its KNN chain, draw for draw."""
    pytest.importorskip("sklearn")
    from crowdbayes.datasets.curation_lab import knn_pred_probs

    d = make_data()
    mv = lab_majority_vote(d.labels)
    assert np.mean(mv == d.truth) == pytest.approx(0.8762541806020067, abs=1e-12)
    pp = knn_pred_probs(d.X, mv)
    np.testing.assert_allclose(pp, ref["seed/pred_probs"], atol=1e-12)
    assert np.mean(pp.argmax(axis=1) == d.truth) == pytest.approx(0.9498327759197325)


def test_seed_accuracy_and_worst_annotators():
    wide, pp, truth = case("seed")
    cl = CrowdLab().fit(wide, pred_probs=pp)
    assert np.mean(cl.predict().to_numpy() == truth) == pytest.approx(0.9765886287625418)
    worst = cl.annotator_stats().index[:10]
    assert len(set(worst) & set(BAD_ANNOTATORS)) == 9
    assert cl.annotator_stats().iloc[0]["annotator_quality"] == pytest.approx(0.358109, abs=1e-6)


def test_inputs_and_errors():
    wide, pp, _ = case("two_class")
    long = wide.stack().dropna().rename("label").rename_axis(["task", "worker"]).reset_index()
    with pytest.raises(AnnotationsError, match="DataFrame indexed by task"):
        CrowdLab().fit(long, pred_probs=pp)
    probs = pd.DataFrame(pp, columns=[0, 1])
    with pytest.raises(AnnotationsError, match="no row for task 3"):
        CrowdLab().fit(long, pred_probs=probs.drop(index=3))
    with pytest.raises(AnnotationsError, match="no annotations"):
        CrowdLab().fit(long, pred_probs=pd.concat([probs, probs.iloc[:1].set_axis([99])]))
    with pytest.raises(AnnotationsError, match="no column for label 1"):
        CrowdLab().fit(long, pred_probs=probs[[0]])
    with pytest.raises(AnnotationsError, match="row 2 has a negative"):
        CrowdLab().fit(wide, pred_probs=np.where(np.arange(len(pp))[:, None] == 2, -1.0, pp))
    with pytest.raises(AnnotationsError, match="single label"):
        CrowdLab().fit(wide.iloc[:, :1].dropna(), pred_probs=pp[wide.iloc[:, 0].notna()])
    with pytest.raises(TypeError, match="pred_probs"):
        CrowdLab().fit(wide)
    # a class nobody chose, present in pred_probs: kept as a class
    three = np.hstack([pp * 0.9, np.full((len(pp), 1), 0.1)])
    cl = CrowdLab().fit(wide, pred_probs=three)
    assert list(cl.classes_) == [0, 1, 2] and cl.proba_.shape == (len(pp), 3)
    same = CrowdLab().fit(long, pred_probs=pd.DataFrame(three, columns=[0, 1, 2]))
    np.testing.assert_allclose(same.proba_, cl.proba_)


def test_long_detailed_quality_and_cleanlab_dict():
    wide, pp, _ = case("handmade")
    cl = CrowdLab().fit(wide, pred_probs=pp)
    long = cl.detailed_label_quality(format="long")
    assert len(long) == int(wide.notna().sum().sum())
    wide_q = cl.detailed_label_quality()
    assert list(wide_q.columns) == [f"quality_annotator_{a}" for a in "ABCD"]
    row = long.iloc[0]
    assert wide_q.loc[row["task"], f"quality_annotator_{row['worker']}"] == row["quality"]
    out = cl.to_cleanlab()
    assert set(out) >= {"label_quality", "detailed_label_quality", "annotator_stats"}
    assert cl.task_uncertainty()["probability"].between(0, 1).all()


@pytest.mark.parametrize("name", ["seed", "wide_sparse", "handmade"])
def test_fast_wide_encoding_equals_from_wide(name):
    from crowdbayes.data import Annotations, _numeric_wide

    wide, _, _ = case(name)
    fast, slow = _numeric_wide(wide), Annotations.from_wide(wide)
    assert fast is not None
    for field in ("task", "worker", "label", "gold"):
        np.testing.assert_array_equal(getattr(fast, field), getattr(slow, field))
    for field in ("task_ids", "worker_ids", "classes"):
        assert list(getattr(fast, field)) == list(getattr(slow, field))


def test_gold_is_refused_clearly():
    wide, pp, truth = case("two_class")
    with pytest.raises(AnnotationsError, match=r"CrowdLab does not use gold.*BayesianCrowdLab"):
        CrowdLab().fit(wide, pred_probs=pp, gold={0: int(truth[0])})
    with pytest.raises(TypeError, match="unexpected keyword argument 'tasks'"):
        CrowdLab().fit(wide, pred_probs=pp, tasks="item")


def test_labelled_pred_probs_are_aligned_to_the_classes_by_name():
    wide, pp, _ = case("seed")
    ref = CrowdLab().fit(wide, pred_probs=pp)
    reordered = pd.DataFrame(pp, index=wide.index, columns=[0, 1, 2])[[2, 0, 1]]
    cl = CrowdLab().fit(wide, pred_probs=reordered)
    assert list(cl.classes_) == [0, 1, 2]
    np.testing.assert_allclose(cl.proba_, ref.proba_)
    # columns named by the labels' text (as read from a CSV) match integer labels
    as_text = reordered.rename(columns=str)
    np.testing.assert_allclose(CrowdLab().fit(wide, pred_probs=as_text).proba_, ref.proba_)
    four = np.hstack([pp * 0.9, np.full((len(pp), 1), 0.1)])
    text4 = pd.DataFrame(four, index=wide.index, columns=["0", "1", "2", "3"])[["3", "1", "0", "2"]]
    cl4 = CrowdLab().fit(wide, pred_probs=text4)
    assert list(cl4.classes_) == [0, 1, 2, 3] and cl4.classes_.dtype.kind == "i"
    np.testing.assert_allclose(cl4.raw_pred_probs_, four)
    # wide table with bool labels: the fast path keeps them bool
    flags = (wide == 1).astype("boolean").mask(wide.isna())
    two = np.stack([pp[:, [0, 2]].sum(axis=1), pp[:, 1]], axis=1)
    fb = CrowdLab().fit(flags, pred_probs=two)
    assert list(fb.classes_) == [False, True]
    assert fb.predict().isin([True, False]).all()


def test_adversarial_classifier_is_warned_about():
    from crowdbayes.base import AdversarialWarning

    wide, pp, _ = case("seed")
    with pytest.warns(AdversarialWarning, match="worse than chance.*class order"):
        CrowdLab().fit(wide, pred_probs=pp[:, [1, 2, 0]])
    # a classifier that knows nothing is no reason to warn (nor is a good one, elsewhere)
    noise = np.random.default_rng(0).dirichlet(np.ones(3), size=len(pp))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CrowdLab().fit(wide, pred_probs=noise)


def test_wide_tables_the_fast_path_must_not_misread():
    wide, pp, _ = case("two_class")
    no_id = wide.set_axis([np.nan, *wide.index[1:]], axis=0)
    with pytest.raises(AnnotationsError, match=r"wide annotations: row 1 .*no task id"):
        CrowdLab().fit(no_id, pred_probs=pp)
    no_name = wide.set_axis([np.nan, *wide.columns[1:]], axis=1)
    with pytest.raises(AnnotationsError, match=r"wide annotations: column 1 .*no annotator name"):
        CrowdLab().fit(no_name, pred_probs=pp)
    big = wide.astype("Int64") + 2**53
    cl = CrowdLab().fit(big, pred_probs=pp)
    assert list(cl.classes_) == [2**53, 2**53 + 1]
    renamed = wide.stack().dropna().rename("y").rename_axis(["item", "rater"]).reset_index()
    probs = pd.DataFrame(pp, columns=[0, 1])
    with pytest.raises(AnnotationsError, match=r"\['item', 'rater', 'y'\].*task="):
        CrowdLab().fit(renamed.astype(str), pred_probs=probs)
    same = CrowdLab().fit(renamed, pred_probs=probs, task="item", worker="rater", label="y")
    np.testing.assert_allclose(same.proba_, CrowdLab().fit(wide, pred_probs=pp).proba_)
