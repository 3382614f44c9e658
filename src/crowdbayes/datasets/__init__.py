"""Small real crowdsourcing datasets bundled with crowdbayes (offline).

>>> import crowdbayes as cb
>>> cb.datasets.available()
['anesthesia', 'bluebirds', 'dog', 'rte', 'temp', 'wsd']
>>> annotations, gold = cb.datasets.load("rte")
>>> annotations.shape, len(gold)
((8000, 3), 800)
>>> list(annotations.columns)
['task', 'worker', 'label']

Sources, sizes and the papers to cite are in ``ATTRIBUTION.md`` beside the data
(:func:`attribution` returns it).
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported on first load: listing names stays instant (the CLI)
    import pandas as pd

__all__ = ["attribution", "available", "load", "load_folder"]

_DATA = resources.files(__name__) / "data"


def available() -> list[str]:
    """Names of the bundled datasets."""
    return sorted(p.name for p in _DATA.iterdir() if p.is_dir())


def attribution() -> str:
    """Sources, licenses and papers of the bundled datasets (markdown)."""
    return (_DATA / "ATTRIBUTION.md").read_text(encoding="utf-8")


def _as_int_if_integral(values: pd.Series) -> pd.Series:
    import pandas as pd

    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and (numeric == numeric.round()).all():
        return numeric.astype("int64")
    return values


def _read_pair(labels: pd.DataFrame, truth: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.Series]:
    import pandas as pd

    labels = labels.copy()
    labels["label"] = _as_int_if_integral(labels["label"])
    if truth is None:
        gold = pd.Series([], dtype=labels["label"].dtype, name="label")
        gold.index = pd.Index([], dtype=object, name="task")
        return labels, gold
    gold = truth.set_index("task")["label"]
    gold = _as_int_if_integral(gold) if labels["label"].dtype.kind == "i" else gold
    return labels, gold


def load(name: str) -> tuple[pd.DataFrame, pd.Series]:
    """Load a bundled dataset: (annotations, gold).

    ``annotations`` is a long DataFrame ``task, worker, label`` (ids as text,
    labels as integers where they are numbers); ``gold`` a Series task -> true
    label (empty for ``anesthesia``, which has none).
    """
    import pandas as pd

    names = available()
    if name not in names:
        raise ValueError(f"unknown dataset {name!r}; bundled: {names}")
    folder = _DATA / name
    read = {"dtype": str, "keep_default_na": False}
    with resources.as_file(folder / "labels.csv.gz") as path:
        labels = pd.read_csv(path, **read)
    truth = None
    if (folder / "truth.csv.gz").is_file():
        with resources.as_file(folder / "truth.csv.gz") as path:
            truth = pd.read_csv(path, **read)
    return _read_pair(labels, truth)


def load_folder(path: str) -> tuple[pd.DataFrame, pd.Series]:
    """Load a dataset folder in the shared format (``labels.csv``, optional ``truth.csv``)."""
    from pathlib import Path

    import pandas as pd

    folder = Path(path)
    labels_file = folder / "labels.csv"
    if not labels_file.is_file():
        raise FileNotFoundError(f"{str(labels_file)!r} does not exist")
    read = {"dtype": str, "keep_default_na": False}
    labels = pd.read_csv(labels_file, **read)
    truth_file = folder / "truth.csv"
    truth = pd.read_csv(truth_file, **read) if truth_file.is_file() else None
    return _read_pair(labels, truth)
