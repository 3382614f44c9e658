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


# ------------------------------------------------- input that is never misread
def test_long_table_with_other_names_is_not_read_as_wide():
    df = pd.DataFrame({"item": [1, 1, 2], "rater": ["a", "b", "a"], "y": ["pos", "neg", "neg"]})
    with pytest.raises(AnnotationsError, match=r"\['item', 'rater', 'y'\].*task=.*worker=.*label="):
        as_annotations(df)
    with pytest.raises(AnnotationsError, match="task="):
        cb.MajorityVote().fit(df)
    ann = as_annotations(df, task="item", worker="rater", label="y")
    assert (ann.n_tasks, ann.n_workers, list(ann.classes)) == (2, 2, ["neg", "pos"])
    # all text, as read from a CSV: the columns share no values, so not annotators
    text = df.astype(str)
    with pytest.raises(AnnotationsError, match="task="):
        as_annotations(text)


def test_tables_that_are_plainly_wide_still_read_as_wide():
    sparse = pd.DataFrame({"A": ["cat", None, "dog"], "B": ["cat", "dog", None]})
    assert as_annotations(sparse).n_labels == 4
    dense = pd.DataFrame({"A": [0, 1, 1, 0], "B": [0, 1, 0, 0], "C": [1, 1, 1, 0]})
    assert as_annotations(dense).n_tasks == 4
    # an annotator whose only label is a class nobody else gave: blank cells say it is wide
    rare = pd.DataFrame({"A": [0, 1, None], "B": [0, 1, 1], "C": [None, None, 2]})
    assert list(as_annotations(rare).classes) == [0, 1, 2]


def test_wide_labels_come_back_exactly_as_given():
    flags = pd.DataFrame({"A": [True, False, True], "B": [True, None, False]})
    ann = as_annotations(flags)
    assert list(ann.classes) == [False, True]
    assert ann.decode_labels(ann.label).tolist() == [True, True, False, True, False]
    assert isinstance(cb.MajorityVote().fit(flags).predict().iloc[0], bool | np.bool_)
    big = 2**53
    ints = pd.DataFrame({"A": [big, big + 1, big], "B": [big, big + 1, big + 1]})
    ann = as_annotations(ints)
    assert list(ann.classes) == [big, big + 1]
    assert ann.decode_labels(ann.label).tolist() == [big, big, big + 1, big + 1, big, big + 1]
    nullable = pd.DataFrame(
        {"A": pd.array([big, None, big + 1], "Int64"), "B": pd.array([big + 1, big + 1, big])}
    )
    assert list(as_annotations(nullable).classes) == [big, big + 1]


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinite_labels_are_rejected_with_the_row(value):
    df = pd.DataFrame({"task": [1, 1, 2], "worker": [1, 2, 1], "label": [0.0, value, 1.0]})
    with pytest.raises(AnnotationsError, match=r"column 'label'.*infinite.*row 1"):
        Annotations.from_long(df)
    wide = pd.DataFrame({"A": [0.0, 1.0], "B": [value, 1.0]}, index=["x", "y"])
    with pytest.raises(AnnotationsError, match=r"infinite.*task 'x'.*annotator 'B'"):
        as_annotations(wide)


def test_missing_ids_in_a_wide_table_are_named():
    no_task = pd.DataFrame({"A": [0, 1, 1], "B": [0, 1, 0]}, index=["x", np.nan, "z"])
    with pytest.raises(AnnotationsError, match=r"wide annotations.*row 2.*no task id"):
        as_annotations(no_task)
    no_name = pd.DataFrame([[0, 1, 1], [0, 1, 0]], columns=["A", np.nan, "C"])
    with pytest.raises(AnnotationsError, match=r"wide annotations.*column 2.*no annotator name"):
        as_annotations(no_name)
    for df in (no_task, no_name):
        with pytest.raises(AnnotationsError, match="wide annotations") as err:
            cb.DawidSkene().fit(df)
        assert "'task'" not in str(err.value)


def test_duplicate_columns_and_unhashable_ids_are_named():
    dup = pd.concat([long_df(), long_df()[["label"]]], axis=1)
    with pytest.raises(AnnotationsError, match="column 'label' appears 2 times"):
        as_annotations(dup)
    wide_dup = pd.DataFrame([[0, 1, 1], [0, 1, 0]], columns=["A", "B", "A"])
    with pytest.raises(AnnotationsError, match="annotator 'A' has 2 columns"):
        as_annotations(wide_dup)
    lists = long_df().assign(task=[["t1"], ["t1"], ["t2"], ["t2"], ["t3"]])
    with pytest.raises(AnnotationsError, match=r"column 'task'.*unhashable.*list.*row 0"):
        as_annotations(lists)
    cells = pd.DataFrame({"A": [[0], [1]], "B": [0, 1]}, index=["x", "y"])
    with pytest.raises(AnnotationsError, match=r"unhashable.*task 'x'.*annotator 'A'"):
        as_annotations(cells)


def test_empty_and_unreadable_files_are_named(tmp_path):
    for name in ("empty.csv", "empty.tsv", "empty.parquet"):
        path = tmp_path / name
        path.write_bytes(b"")
        with pytest.raises(AnnotationsError, match=rf"{name}.*empty"):
            read_table(path)
        with pytest.raises(AnnotationsError, match=name):
            cb.MajorityVote().fit(str(path))
    with pytest.raises(AnnotationsError, match="is a directory"):
        read_table(tmp_path)


def test_messages_show_plain_values():
    df = pd.DataFrame({"task": [1, 1, 2], "worker": [1, 2, 1], "label": [0, 7, 1]})
    with pytest.raises(AnnotationsError, match=r"value 7 \(row 1\)") as err:
        Annotations.from_long(df, classes=[0, 1])
    assert "np." not in str(err.value)
    with pytest.raises(AnnotationsError) as err:
        Annotations.from_long(df, gold={np.int64(9): np.int64(1)})
    assert "task 9" in str(err.value) and "np." not in str(err.value)
    wide = pd.DataFrame({"A": [0, 1], "B": [0, 1]}, index=pd.Index([5, 5]))
    with pytest.raises(AnnotationsError, match="task 5 on more than one row") as err:
        as_annotations(wide)


def test_a_wide_table_with_its_task_ids_in_a_column_is_not_misread():
    wide = pd.DataFrame(
        {"item": ["i1", "i2", "i3", "i4"], "A": ["cat", "dog", "dog", None]}
        | {w: ["cat", "dog", None, "cat"] for w in ("B", "C", "D")}
    )
    with pytest.raises(AnnotationsError, match=r"'item'.*set_index\('item'\)"):
        as_annotations(wide)
    assert as_annotations(wide.set_index("item")).n_tasks == 4
    multi = wide.set_index(pd.MultiIndex.from_arrays([list("aabb"), wide["item"]])).drop(
        columns="item"
    )
    assert as_annotations(multi).n_tasks == 4
