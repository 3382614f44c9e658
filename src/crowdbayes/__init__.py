"""crowdbayes: Bayesian models of annotation, fast and with honest uncertainty.

>>> import crowdbayes as cb
>>> annotations, gold = cb.datasets.load("bluebirds")
>>> mv = cb.MajorityVote(tie_break="smallest").fit(annotations)
>>> ds = cb.DawidSkene().fit(annotations)
>>> acc = lambda model: float((model.predict().loc[gold.index] == gold).mean())
>>> round(acc(mv), 3), acc(ds) > 0.88
(0.759, True)
"""

from . import datasets
from .base import Aggregator, NotFittedError, check_is_fitted
from .data import Annotations, AnnotationsError, as_annotations, read_table
from .models.dawid_skene import DawidSkene
from .models.majority_vote import MajorityVote

__version__ = "0.1.0"

__all__ = [
    "Aggregator",
    "Annotations",
    "AnnotationsError",
    "DawidSkene",
    "MajorityVote",
    "NotFittedError",
    "__version__",
    "as_annotations",
    "check_is_fitted",
    "datasets",
    "read_table",
]
