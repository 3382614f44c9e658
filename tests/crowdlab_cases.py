"""Cases for the CROWDLAB tests: the curation lab's data and small simulated sets with
lonely annotators, single-label tasks and ties; and the builder of the stored reference.

Run ``python tests/crowdlab_cases.py`` (needs cleanlab and scikit-learn) to rebuild
``tests/data/crowdlab_reference.npz``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REFERENCE = Path(__file__).parent / "data" / "crowdlab_reference.npz"

# name: (seed, n_tasks, n_annotators, n_classes, share labelled, pred_probs kind)
SIM_CASES = {
    "uniform_ties": (1, 60, 5, 3, 0.5, "uniform"),
    "coarse_ties": (2, 200, 20, 5, 0.2, "coarse"),
    "wide_sparse": (3, 1000, 40, 3, 0.08, "dirichlet"),
    "two_class": (4, 40, 4, 2, 0.5, "coarse"),
}


def sim_case(name: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Wide labels (annotator ``w0`` labels only tasks nobody else labels), pred_probs,
    truth. Every task has a label; many have one only."""
    seed, T, M, K, share, kind = SIM_CASES[name]
    rng = np.random.default_rng(seed)
    truth = rng.integers(K, size=T)
    acc = rng.uniform(0.3, 0.9, M)
    L = np.where(rng.random((T, M)) < acc, truth[:, None], rng.integers(K, size=(T, M)))
    L = L.astype(float)
    mask = rng.random((T, M)) < share
    mask[np.arange(T), rng.integers(1, M, size=T)] = True
    mask[:, 0] = False
    lonely = rng.choice(T, size=3, replace=False)
    mask[lonely] = False
    mask[lonely, 0] = True
    L[~mask] = np.nan
    if kind == "uniform":
        pp = np.full((T, K), 1.0 / K)
    else:
        pp = rng.dirichlet(np.ones(K), size=T)
        if kind == "coarse":
            pp = np.round(pp * 4)
            pp[pp.sum(axis=1) == 0] = 1.0
            pp /= pp.sum(axis=1, keepdims=True)
    wide = pd.DataFrame(L, columns=[f"w{j}" for j in range(M)]).astype("Int64")
    return wide, pp, truth


def handmade_case() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Balanced classes and a flat classifier, so two ties fall to the third tie-break
    (the annotators' agreement on untied tasks); ``D`` labels alone."""
    nan = np.nan
    L = [
        [0, 0, 1, nan],
        [1, 1, 0, nan],
        [0, nan, 1, nan],  # tie: A (agrees always) beats C (never) -> 0
        [nan, 1, 0, nan],  # tie: B beats C -> 1
        [nan, nan, nan, 0],
        [nan, nan, nan, 1],
    ]
    wide = pd.DataFrame(L, columns=list("ABCD"), index=[f"t{i}" for i in range(6)])
    return wide.astype("Int64"), np.full((6, 2), 0.5), np.array([0, 1, 0, 1, 0, 1])


def case(name: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    if name == "handmade":
        return handmade_case()
    if name == "seed":
        return seed_case()
    return sim_case(name)


def seed_case() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The lab's labels, truth, and its KNN pred_probs (stored; rebuilt with sklearn)."""
    from crowdbayes.datasets.curation_lab import make_data

    d = make_data()
    pp = np.load(REFERENCE)["seed/pred_probs"]
    return d.labels, pp, d.truth


def _cleanlab_reference(wide: pd.DataFrame, pp: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    from cleanlab.multiannotator import (
        get_active_learning_scores,
        get_label_quality_multiannotator,
    )

    out: dict[str, np.ndarray] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a random tie-break would make the reference arbitrary
        for cal in (False, True):
            r = get_label_quality_multiannotator(
                wide, pp, calibrate_probs=cal, verbose=False, return_weights=True
            )
            p = f"{prefix}/cal{int(cal)}/"
            lq, st = r["label_quality"], r["annotator_stats"]
            out[p + "consensus_label"] = lq["consensus_label"].to_numpy()
            out[p + "consensus_quality_score"] = lq["consensus_quality_score"].to_numpy()
            out[p + "annotator_agreement"] = lq["annotator_agreement"].to_numpy()
            detailed = r["detailed_label_quality"].to_numpy()
            out[p + "detailed"] = detailed[~np.isnan(detailed)]  # row by row
            out[p + "annotators"] = np.asarray([str(a) for a in st.index])
            out[p + "annotator_quality"] = st["annotator_quality"].to_numpy()
            out[p + "agreement_with_consensus"] = st["agreement_with_consensus"].to_numpy()
            out[p + "worst_class"] = st["worst_class"].to_numpy()
            out[p + "model_weight"] = np.asarray(r["model_weight"])
        al, al_u = get_active_learning_scores(wide, pp, pp[:25])
        out[f"{prefix}/al"] = al
        out[f"{prefix}/al_unlabeled"] = al_u
    return out


def build_reference() -> None:
    from crowdbayes.datasets.curation_lab import knn_pred_probs, lab_majority_vote, make_data

    d = make_data()
    pp = knn_pred_probs(d.X, lab_majority_vote(d.labels))
    ref = {"seed/pred_probs": pp}
    ref.update(_cleanlab_reference(d.labels, pp, "seed"))
    for name in [*SIM_CASES, "handmade"]:
        wide, sim_pp, _ = case(name)
        ref.update(_cleanlab_reference(wide, sim_pp, name))
    REFERENCE.parent.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCE, **ref)  # type: ignore[arg-type]


if __name__ == "__main__":
    build_reference()
    print(f"wrote {REFERENCE}")
