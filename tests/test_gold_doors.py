"""One gold normaliser: every door that takes gold gives the same gold for the same input.

The doors: a DataFrame with ``gold=`` (``as_annotations``, what ``fit(gold=...)`` calls),
a platform export's ``GOLDEN:`` column (a DataFrame or a file), and a gold file (the CLI's
and the report's ``--gold``, :func:`crowdbayes.io.read_gold_file`). Files hold text, so
gold is compared by text across doors; within a door it keeps the annotations' types.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crowdbayes.data import AnnotationsError, as_annotations

LONG = pd.DataFrame(
    {
        "task": ["t1", "t1", "t2", "t2", "t3", "t3", "t4"],
        "worker": ["a", "b", "a", "b", "a", "b", "a"],
        "label": [0, 1, 1, 1, 0, 0, 2],
    }
)


def _by_text(gold: pd.Series) -> dict[str, str]:
    return {str(t): str(v) for t, v in gold.items()}


def _export(gold: dict) -> pd.DataFrame:
    """LONG as a platform export, ``gold`` in its GOLDEN column (on every row of a task)."""
    return pd.DataFrame(
        {
            "ASSIGNMENT:task_id": LONG["task"],
            "ASSIGNMENT:worker_id": LONG["worker"],
            "OUTPUT:label": LONG["label"],
            "GOLDEN:label": pd.Series([gold.get(t) for t in LONG["task"]], dtype=object),
        }
    )


def door_frame(gold: dict) -> pd.Series:
    return as_annotations(LONG, gold=pd.Series(gold, dtype=object)).gold_series()


def door_export_frame(gold: dict) -> pd.Series:
    return as_annotations(_export(gold)).gold_series()


def door_export_file(gold: dict, tmp_path) -> pd.Series:
    path = tmp_path / "export.tsv"
    _export(gold).to_csv(path, sep="\t", index=False)
    return as_annotations(path).gold_series()


def door_gold_file(gold: dict, tmp_path) -> pd.Series:
    """The CLI's door: annotations from a file, gold from a gold file."""
    from crowdbayes import cli

    data, gold_path = tmp_path / "labels.csv", tmp_path / "gold.csv"
    LONG.to_csv(data, index=False)
    rows = ["task,label", *(f"{t},{'' if pd.isna(v) else v}" for t, v in gold.items())]
    gold_path.write_text("\n".join(rows) + "\n")
    args = cli.build_parser().parse_args(["aggregate", str(data), "--gold", str(gold_path)])
    ann, evaluated, _ = cli._load_input(args)
    assert evaluated is not None
    return ann.with_gold(evaluated).gold_series()


DOORS = ("frame", "export_frame", "export_file", "gold_file")


def through(door: str, gold: dict, tmp_path) -> pd.Series:
    if door == "frame":
        return door_frame(gold)
    if door == "export_frame":
        return door_export_frame(gold)
    if door == "export_file":
        return door_export_file(gold, tmp_path)
    return door_gold_file(gold, tmp_path)


@pytest.mark.parametrize("door", DOORS)
def test_every_door_gives_the_same_gold(door, tmp_path):
    got = through(door, {"t1": 1, "t3": 0}, tmp_path)
    assert _by_text(got) == {"t1": "1", "t3": "0"}


@pytest.mark.parametrize("door", DOORS)
def test_missing_gold_values_are_no_gold(door, tmp_path):
    got = through(door, {"t1": 1, "t2": None, "t3": np.nan}, tmp_path)
    assert _by_text(got) == {"t1": "1"}


@pytest.mark.parametrize("door", DOORS)
def test_gold_for_an_unknown_task_names_the_task(door, tmp_path):
    if door.startswith("export"):  # an export's gold sits on its tasks' rows
        pytest.skip("an export has no row for a task without labels")
    with pytest.raises(AnnotationsError, match="'t9'"):
        through(door, {"t1": 1, "t9": 0}, tmp_path)


@pytest.mark.parametrize("door", DOORS)
def test_a_gold_label_no_annotator_gave_names_the_label(door, tmp_path):
    with pytest.raises(AnnotationsError, match=r"gold label '?7'? .*not among"):
        through(door, {"t1": 7}, tmp_path)


@pytest.mark.parametrize("door", DOORS)
def test_conflicting_gold_for_a_task_names_the_task(door, tmp_path):
    gold = pd.DataFrame({"task": ["t1", "t1"], "label": [0, 1]})
    if door == "frame":
        with pytest.raises(AnnotationsError, match=r"task 't1' different"):
            as_annotations(LONG, gold=gold)
    elif door == "gold_file":
        from crowdbayes import cli

        data, path = tmp_path / "labels.csv", tmp_path / "gold.csv"
        LONG.to_csv(data, index=False)
        path.write_text("task,label\nt1,0\nt1,1\n")
        args = cli.build_parser().parse_args(["aggregate", str(data), "--gold", str(path)])
        with pytest.raises(AnnotationsError, match=r"gold\.csv.*'t1'"):
            cli._load_input(args)
    else:
        export = _export({"t1": 0})
        export.loc[1, "GOLDEN:label"] = 1
        if door == "export_file":
            export.to_csv(tmp_path / "e.tsv", sep="\t", index=False)
            export = tmp_path / "e.tsv"
        with pytest.raises(AnnotationsError, match=r"GOLDEN:label.*'t1'"):
            as_annotations(export)


def test_numeric_labels_take_gold_written_as_text_and_keep_their_type():
    """Gold ``"1"`` (text, as a file gives it) for numeric labels is class 1, as the gold
    file's door always matched it; ``1.0`` is 1 too (a float column with gaps)."""
    ann = as_annotations(LONG, gold={"t1": "1", "t2": 1.0, "t3": 0})
    assert ann.gold_series().to_dict() == {"t1": 1, "t2": 1, "t3": 0}
    assert all(type(v) is int for v in ann.gold_series().to_list())


def test_text_labels_take_numeric_gold_by_its_text():
    ann = as_annotations(LONG.assign(label=LONG["label"].map({0: "no", 1: "yes", 2: "maybe"})))
    numbered = as_annotations(LONG.assign(label=LONG["label"].astype(str)), gold={"t1": 1})
    assert numbered.gold_series().to_dict() == {"t1": "1"}
    with pytest.raises(AnnotationsError, match=r"gold label 1 .*not among"):
        ann.with_gold({"t1": 1})


def test_gold_file_and_export_gold_merge_by_one_rule(tmp_path):
    """A gold file adds to an export's GOLDEN gold; a task both give different labels is
    an error naming the task, the column and the file."""
    from crowdbayes import cli

    export = tmp_path / "export.tsv"
    _export({"t1": 1}).to_csv(export, sep="\t", index=False)
    gold = tmp_path / "gold.csv"
    gold.write_text("task,label\nt3,0\n")
    args = cli.build_parser().parse_args(["aggregate", str(export), "--gold", str(gold)])
    _, evaluated, _ = cli._load_input(args)
    assert _by_text(evaluated) == {"t1": "1", "t3": "0"}
    gold.write_text("task,label\nt1,0\n")
    with pytest.raises(AnnotationsError, match=r"'t1'.*GOLDEN.*gold\.csv"):
        cli._load_input(args)
