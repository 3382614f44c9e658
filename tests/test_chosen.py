"""ChosenModel (crowdbayes/chosen.py): recommended() or EBCC, chosen from the labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
from test_ebcc import accuracy, correlated_crowd

import crowdbayes as cb


def test_without_correlated_errors_it_is_recommended() -> None:
    df, _ = cb.datasets.load("wsd")  # EBCC 20 standard errors behind
    model = cb.ChosenModel().fit(df)
    assert model.chosen_ == "recommended"
    np.testing.assert_allclose(model.proba_, cb.recommended().fit(df).proba_)
    sel = model.selection_
    assert set(sel.index) == {"DawidSkene", "EBCC"} and sel["chosen"].sum() == 1
    assert bool(sel.loc["DawidSkene", "chosen"]) and sel.loc["EBCC", "z"] <= 2.0


def test_a_correlated_minority_makes_it_ebcc() -> None:
    df, truth = correlated_crowd(3)
    model = cb.ChosenModel().fit(df)
    assert model.chosen_ == "EBCC" and model.selection_.loc["EBCC", "z"] > 2.0
    ebcc = cb.EBCC().fit(df)
    np.testing.assert_array_equal(model.label_codes_, ebcc.label_codes_)
    # the same labels, probabilities tempered toward 1/2 (never away from it)
    assert (np.abs(model.proba_ - 0.5) <= np.abs(ebcc.proba_ - 0.5) + 1e-12).all()
    assert accuracy(model, truth) > accuracy(cb.DawidSkene().fit(df), truth) + 0.03
    q = model.annotator_quality()
    pd.testing.assert_frame_equal(q, ebcc.annotator_quality())


def test_an_unreachable_threshold_never_chooses_ebcc() -> None:
    df, _ = correlated_crowd(3)
    assert cb.ChosenModel(threshold=np.inf).fit(df).chosen_ == "recommended"
