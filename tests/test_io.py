"""Reading platform exports and generic tables (crowdbayes.io)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crowdbayes.data import AnnotationsError
from crowdbayes.io import (
    is_platform_export,
    load_platform_export,
    read_annotations,
    read_platform_export,
)
from crowdbayes.models.gold_majority_vote import GoldMajorityVote

EXPORT = Path(__file__).parent / "data" / "platform_export.tsv"


def _export() -> pd.DataFrame:
    return pd.read_csv(EXPORT, sep="\t", dtype=str, keep_default_na=False, na_values=[""])


def test_reads_the_platform_export_file() -> None:
    exp = load_platform_export(EXPORT)
    ann = exp.annotations
    assert (ann.n_labels, ann.n_tasks, ann.n_workers) == (39, 12, 5)
    assert list(ann.classes) == ["cat", "dog"]
    assert ann.gold_series().to_dict() == {
        "00019b3966--0001": "dog",
        "00019b3966--0002": "cat",
        "00019b3966--0003": "cat",
    }
    assert ann.task_ids.name == "task" and ann.worker_ids.name == "worker"
    inputs = ann.task_inputs
    assert inputs is not None
    assert list(inputs.columns) == ["image", "note"]
    assert list(inputs.index) == list(ann.task_ids)
    assert inputs.loc["00019b3966--0007", "image"] == "https://example.org/pets/0007.jpg"
    # the other ASSIGNMENT:* columns are kept, one row per label, in label order
    a = exp.assignments
    assert len(a) == 39
    assert {"ASSIGNMENT:assignment_id", "ASSIGNMENT:status", "ASSIGNMENT:link"} <= set(a.columns)
    assert (a["ASSIGNMENT:worker_id"].to_numpy() == ann.worker_ids[ann.worker].to_numpy()).all()
    assert a["ASSIGNMENT:assignment_id"].iloc[4] == "a005"


def test_detection_and_read_annotations_dispatch(tmp_path: Path) -> None:
    df = _export()
    assert is_platform_export(df)
    ann = read_annotations(EXPORT)
    assert ann.n_labels == 39 and ann.has_gold
    # generic long file with a column mapping, gold from a column, inputs kept
    long = pd.DataFrame(
        {
            "item": df["ASSIGNMENT:task_id"],
            "rater": df["ASSIGNMENT:worker_id"],
            "answer": df["OUTPUT:result"],
            "truth": df["GOLDEN:result"],
            "url": df["INPUT:image"],
        }
    )
    assert not is_platform_export(long)
    path = tmp_path / "long.csv"
    long.to_csv(path, index=False)
    ann2 = read_annotations(
        path,
        task="item",
        worker="rater",
        label="answer",
        gold_column="truth",
        input_columns=["url"],
    )
    assert ann2.gold_series().to_dict() == ann.gold_series().to_dict()
    assert ann2.task_inputs is not None
    assert ann2.task_inputs["url"].tolist() == ann.task_inputs["image"].tolist()  # type: ignore[index]
    pq = tmp_path / "export.parquet"
    df.to_parquet(pq)
    assert read_annotations(pq).n_labels == 39


def test_label_field_choice_and_missing_output_field() -> None:
    df = _export()
    with pytest.raises(AnnotationsError, match=r"no column 'OUTPUT:label'.*\['result'\]"):
        read_platform_export(df, label_field="label")
    two = df.assign(**{"OUTPUT:comment": "ok"})
    with pytest.raises(AnnotationsError, match=r"several OUTPUT fields.*label_field"):
        read_platform_export(two)
    assert read_platform_export(two, label_field="result").n_labels == 39
    no_output = df.drop(columns=["OUTPUT:result"])
    with pytest.raises(AnnotationsError, match="no OUTPUT:<field> column"):
        read_annotations(no_output)
    no_worker = df.drop(columns=["ASSIGNMENT:worker_id"])
    with pytest.raises(AnnotationsError, match="ASSIGNMENT:worker_id"):
        read_platform_export(no_worker)


def test_bad_values_are_named(tmp_path: Path) -> None:
    df = _export()
    unseen = df.copy()
    unseen.loc[unseen["ASSIGNMENT:task_id"] == "00019b3966--0001", "GOLDEN:result"] = "hamster"
    with pytest.raises(AnnotationsError, match=r"gold label 'hamster'.*OUTPUT:result"):
        read_platform_export(unseen)
    clash = df.copy()
    clash.loc[1, "GOLDEN:result"] = "cat"
    with pytest.raises(AnnotationsError, match=r"GOLDEN:result.*00019b3966--0001.*different"):
        read_platform_export(clash)
    empty = df.copy()
    empty.loc[6, "OUTPUT:result"] = np.nan
    path = tmp_path / "bad.tsv"
    empty.to_csv(path, sep="\t", index=False)
    with pytest.raises(AnnotationsError, match=r"bad.tsv: column 'OUTPUT:result'.*row 8"):
        read_annotations(path)  # row 8 = line 8 of the file (header is line 1)
    with pytest.raises(AnnotationsError, match=r"but 'dog' in the gold given"):
        read_platform_export(df, gold={"00019b3966--0002": "dog"})


def test_worker_with_no_gold_keeps_every_task() -> None:
    ann = read_platform_export(EXPORT)
    gmv = GoldMajorityVote().fit(ann)
    assert list(gmv.workers_without_gold_) == ["w5"]
    assert gmv.skills_.loc["w5"] == pytest.approx(gmv.default_skill_)
    assert list(gmv.predict().index) == list(ann.task_ids)  # no task disappears
    with pytest.raises(AnnotationsError, match=r"\['w5'\].*no gold task"):
        GoldMajorityVote(missing_skill="error").fit(ann)


def _with_statuses() -> pd.DataFrame:
    """The export with two REJECTED assignments, a SKIPPED one with no OUTPUT and an
    EXPIRED one: four rows that are not votes."""
    df = _export()
    df.loc[[0, 5], "ASSIGNMENT:status"] = "REJECTED"
    df.loc[5, "OUTPUT:result"] = "cat" if df.loc[5, "OUTPUT:result"] == "dog" else "dog"
    df.loc[9, "ASSIGNMENT:status"] = "SKIPPED"
    df.loc[9, "OUTPUT:result"] = np.nan
    df.loc[12, "ASSIGNMENT:status"] = "expired"
    return df


def test_rejected_skipped_and_expired_assignments_are_not_votes(tmp_path: Path) -> None:
    df = _with_statuses()
    ann = read_platform_export(df)
    assert ann.n_labels == 35
    assert ann.dropped == {"REJECTED": 2, "SKIPPED": 1, "EXPIRED": 1}
    assert "dropped" in repr(ann) and "REJECTED" in repr(ann)
    kept_rows = df.drop(index=[0, 5, 9, 12])
    assert ann.vote_counts().sum() == len(kept_rows)
    exp = load_platform_export(df)
    assert len(exp.assignments) == 35
    assert not exp.assignments["ASSIGNMENT:status"].isin(["REJECTED", "SKIPPED"]).any()
    path = tmp_path / "statuses.tsv"
    df.to_csv(path, sep="\t", index=False)
    from_file = read_annotations(path)
    assert from_file.n_labels == 35 and from_file.dropped == ann.dropped
    # kept on request (the SKIPPED row has no label, so it is still no vote)
    kept = read_platform_export(df, drop_statuses=())
    assert kept.n_labels == 38 and kept.dropped == {"SKIPPED": 1}
    only_rejected = read_annotations(df, drop_statuses=["rejected"])
    assert only_rejected.n_labels == 36 and only_rejected.dropped == {"REJECTED": 2, "SKIPPED": 1}
    assert read_platform_export(_export()).dropped == {}


def test_empty_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "export.tsv"
    path.write_bytes(b"")
    with pytest.raises(AnnotationsError, match=r"export.tsv.*empty"):
        read_annotations(path)
    with pytest.raises(AnnotationsError, match=r"export.tsv.*empty"):
        read_platform_export(path)


def test_fit_takes_a_platform_export_through_the_one_door() -> None:
    """``as_annotations`` (what every ``fit`` calls) reads a platform export, as a file or a
    DataFrame, exactly as ``read_annotations`` does: same labels, same gold, same dropped
    assignments; a model fits it directly."""
    import crowdbayes as cb

    ref = read_annotations(EXPORT)
    for given in (EXPORT, str(EXPORT), _export()):
        ann = cb.as_annotations(given)
        assert (ann.n_labels, ann.n_tasks, ann.n_workers) == (ref.n_labels, 12, 5)
        assert list(ann.classes) == list(ref.classes)
        assert ann.gold_series().to_dict() == ref.gold_series().to_dict()
        assert (np.asarray(ann.label) == np.asarray(ref.label)).all()
    fit = cb.MajorityVote().fit(_export())
    assert list(fit.predict().index) == list(ref.task_ids)
    # a gold argument adds to the export's GOLDEN column, as for read_annotations
    extra = pd.Series({"00019b3966--0005": "cat"})
    both = cb.as_annotations(_export(), gold=extra).gold_series().to_dict()
    assert both == {**ref.gold_series().to_dict(), **extra.to_dict()}
    with pytest.raises(AnnotationsError, match="00019b3966--0001"):
        cb.as_annotations(_export(), gold=pd.Series({"00019b3966--0001": "cat"}))
