"""crowdbayes: Bayesian models of annotation, fast and with honest uncertainty.

>>> import crowdbayes as cb
>>> annotations, gold = cb.datasets.load("bluebirds")
>>> mv = cb.MajorityVote(tie_break="smallest").fit(annotations)
>>> ds = cb.DawidSkene().fit(annotations)
>>> acc = lambda model: float((model.predict().loc[gold.index] == gold).mean())
>>> round(acc(mv), 3), acc(ds) > 0.88
(0.759, True)
"""

from . import datasets, io, metrics, plots, qc, report
from .base import Aggregator, NotFittedError, check_is_fitted
from .data import Annotations, AnnotationsError, as_annotations, read_table
from .inference.nuts import ConvergenceWarning
from .io import read_platform_export
from .models.bayesian_crowdlab import BayesianCrowdLab
from .models.class_conditional import ClassConditionalDawidSkene
from .models.crowdlab import CrowdLab
from .models.dawid_skene import DawidSkene
from .models.gold_majority_vote import GoldMajorityVote
from .models.hierarchical import HierarchicalDawidSkene
from .models.item_difficulty import ItemDifficulty
from .models.mace import MACE
from .models.majority_vote import MajorityVote
from .models.one_coin import OneCoinDawidSkene
from .qc import suspicious_tasks
from .recommend import CalibratedDawidSkene, recommended

__version__ = "0.1.0"

__all__ = [
    "MACE",
    "Aggregator",
    "Annotations",
    "AnnotationsError",
    "BayesianCrowdLab",
    "CalibratedDawidSkene",
    "ClassConditionalDawidSkene",
    "ConvergenceWarning",
    "CrowdLab",
    "DawidSkene",
    "GoldMajorityVote",
    "HierarchicalDawidSkene",
    "ItemDifficulty",
    "MajorityVote",
    "NotFittedError",
    "OneCoinDawidSkene",
    "__version__",
    "as_annotations",
    "check_is_fitted",
    "datasets",
    "io",
    "metrics",
    "plots",
    "qc",
    "read_platform_export",
    "read_table",
    "recommended",
    "report",
    "suspicious_tasks",
]
