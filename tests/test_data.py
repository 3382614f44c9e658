"""The data layer: encoding, vocabularies, validation messages."""

import numpy as np
import pandas as pd
import pytest

import crowdbayes as cb
from crowdbayes.data import Annotations, AnnotationsError, as_annotations, read_table


def long_df():
    return pd.DataFrame(
        {
            "task": ["t1", "t1", "t2", "t2", "t3"],
            "worker": ["a", "b", "a", "c", "b"],
            "label": ["cat", "dog", "dog", "dog", "cat"],
        }
    )


def test_long_roundtrip_keeps_ids_and_labels():
    ann = Annotations.from_long(long_df())
    assert list(ann.task_ids) == ["t1", "t2", "t3"]
    assert list(ann.worker_ids) == ["a", "b", "c"]
    assert list(ann.classes) == ["cat", "dog"]
    assert ann.task.dtype == np.int32 and ann.label.dtype == np.int32
    pd.testing.assert_frame_equal(ann.to_long(), long_df())


def test_repeated_labels_are_separate_votes():
    df = pd.DataFrame({"task": [1, 1, 1], "worker": ["a", "a", "b"], "label": [0, 0, 1]})
    ann = Annotations.from_long(df)
    assert ann.n_labels == 3
    assert ann.vote_counts().tolist() == [[2, 1]]


def test_integer_labels_sorted_numerically_and_nullable_ints():
    df = pd.DataFrame(
        {"task": [1, 1, 2], "worker": [1, 2, 1], "label": pd.array([10, 9, 2], dtype="Int64")}
    )
    ann = Annotations.from_long(df)
    assert list(ann.classes) == [2, 9, 10]
    assert ann.decode_labels(ann.label).tolist() == [10, 9, 2]


def test_categorical_labels_keep_all_categories():
    labels = pd.Categorical(["lo", "hi", "lo"], categories=["lo", "mid", "hi"])
    df = pd.DataFrame({"task": [1, 2, 3], "worker": [1, 1, 1], "label": labels})
    ann = Annotations.from_long(df)
    assert list(ann.classes) == ["lo", "mid", "hi"]


def test_custom_column_names():
    df = long_df().rename(columns={"task": "item", "worker": "rater", "label": "y"})
    ann = as_annotations(df, task="item", worker="rater", label="y")
    assert ann.n_labels == 5 and ann.task_ids.name == "item"


def test_wide_table_keeps_row_order_and_every_row():
    wide = pd.DataFrame(
        {"A1": [0, 1, np.nan, 2], "A2": [0, np.nan, 2, np.nan]}, index=["r4", "r1", "r3", "r2"]
    )
    ann = Annotations.from_wide(wide)
    assert list(ann.task_ids) == ["r4", "r1", "r3", "r2"]
    assert ann.n_labels == 5
    assert list(ann.classes) == [0, 1, 2]
    counts = ann.vote_counts()
    assert counts[0].tolist() == [2, 0, 0] and counts[3].tolist() == [0, 0, 1]


def test_gold_encoding_and_unknown_tasks():
    ann = Annotations.from_long(long_df(), gold={"t2": "dog"})
    assert ann.gold.tolist() == [-1, 1, -1]
    assert ann.gold_series().to_dict() == {"t2": "dog"}


@pytest.mark.parametrize(
    ("df", "kwargs", "match"),
    [
        (long_df().drop(columns="worker"), {}, "no column 'worker'"),
        (long_df().iloc[:0], {}, "empty"),
        (long_df().assign(label=["cat", None, "dog", "dog", "cat"]), {}, "'label' has 1 missing"),
        (long_df().assign(label="cat"), {}, "only one class"),
        (long_df(), {"gold": {"t1": "bird"}}, "gold label 'bird' is not among"),
        (long_df(), {"gold": {"t9": "cat"}}, "gold has task 't9'"),
        (long_df(), {"classes": ["cat"]}, "value 'dog'"),
    ],
)
def test_bad_input_is_named(df, kwargs, match):
    with pytest.raises(AnnotationsError, match=match):
        Annotations.from_long(df, **kwargs)


def test_nan_label_in_numeric_column_is_named():
    df = pd.DataFrame({"task": [1, 2], "worker": [1, 1], "label": [0.0, np.nan]})
    with pytest.raises(AnnotationsError, match="row 1"):
        Annotations.from_long(df)


def test_wide_row_without_labels_is_named():
    wide = pd.DataFrame({"A1": [0, np.nan], "A2": [1, np.nan]}, index=["x", "y"])
    with pytest.raises(AnnotationsError, match="task 'y'"):
        Annotations.from_wide(wide)


def test_read_table_formats(tmp_path):
    df = long_df()
    df.to_csv(tmp_path / "a.csv", index=False)
    df.to_csv(tmp_path / "a.tsv", sep="\t", index=False)
    df.to_parquet(tmp_path / "a.parquet")
    for name in ["a.csv", "a.tsv", "a.parquet"]:
        assert as_annotations(read_table(tmp_path / name)).n_labels == 5
    with pytest.raises(AnnotationsError, match="does not exist"):
        read_table(tmp_path / "missing.csv")
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(AnnotationsError, match="unknown format"):
        read_table(tmp_path / "a.json")


def test_encode_new_maps_known_workers_and_appends_new_ones():
    ann = Annotations.from_long(long_df())
    new = pd.DataFrame({"task": ["n1", "n1"], "worker": ["c", "zz"], "label": ["dog", "cat"]})
    enc = ann.encode_new(new)
    assert enc.worker.tolist() == [2, 3]
    assert list(enc.worker_ids) == ["a", "b", "c", "zz"]
    with pytest.raises(AnnotationsError, match="not among the given classes"):
        ann.encode_new(new.assign(label=["dog", "bird"]))


def test_bundled_datasets_match_their_documented_sizes():
    sizes = {"anesthesia": (315, 45, 0), "bluebirds": (4212, 108, 108), "rte": (8000, 800, 800)}
    for name, (n_labels, n_tasks, n_gold) in sizes.items():
        labels, gold = cb.datasets.load(name)
        ann = as_annotations(labels, gold=gold if len(gold) else None)
        assert (ann.n_labels, ann.n_tasks, int((ann.gold >= 0).sum())) == (
            n_labels,
            n_tasks,
            n_gold,
        )
    assert "Dawid & Skene" in cb.datasets.attribution()
    with pytest.raises(ValueError, match="unknown dataset"):
        cb.datasets.load("nope")
