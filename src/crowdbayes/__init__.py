"""crowdbayes: Bayesian models of annotation, fast and with honest uncertainty.

>>> import crowdbayes as cb
>>> annotations, gold = cb.datasets.load("bluebirds")
>>> mv = cb.MajorityVote(tie_break="smallest").fit(annotations)
>>> ds = cb.DawidSkene().fit(annotations)
>>> acc = lambda model: float((model.predict().loc[gold.index] == gold).mean())
>>> round(acc(mv), 3), acc(ds) > 0.88
(0.759, True)

Names are imported on first use (PEP 562): ``import crowdbayes`` loads none of jax,
numpyro, arviz, scipy or plotly; ``cb.DawidSkene`` loads jax, the first NUTS fit numpyro.
Every estimator of :data:`crowdbayes.registry.MODELS` is a public name here, found in
the registry (standard library only), so a new model needs no line in this file.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import registry as _registry  # standard library only: every model, by name

if TYPE_CHECKING:
    from . import datasets, io, metrics, plots, qc, report
    from .base import Aggregator, NotFittedError, check_is_fitted
    from .data import Annotations, AnnotationsError, as_annotations, read_table
    from .engines import EM, NUTS
    from .inference.nuts import ConvergenceWarning
    from .io import read_platform_export
    from .model_choice import compare
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

# public name -> the module that defines it (imported on first access); the estimators
# are added from the registry below
_LAZY = {
    "Aggregator": ".base",
    "NotFittedError": ".base",
    "check_is_fitted": ".base",
    "Annotations": ".data",
    "AnnotationsError": ".data",
    "as_annotations": ".data",
    "read_table": ".data",
    "EM": ".engines",
    "NUTS": ".engines",
    "ConvergenceWarning": ".inference.nuts",
    "read_platform_export": ".io",
    "compare": ".model_choice",
    "suspicious_tasks": ".qc",
    "recommended": ".recommend",
}
_LAZY.update({spec.estimator: f".{spec.module}" for spec in _registry.MODELS.values()})
# subpackages and modules reachable as attributes (``cb.datasets``, ``cb.models.mace``)
_SUBMODULES = frozenset(
    {
        "base",
        "chosen",
        "cli",
        "data",
        "datasets",
        "distributed",
        "engines",
        "inference",
        "io",
        "metrics",
        "model_choice",
        "models",
        "parquet",
        "plots",
        "qc",
        "recommend",
        "registry",
        "report",
        "simulate",
    }
)

__all__ = [
    "EM",
    "MACE",
    "NUTS",
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
    "compare",
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
# every registered estimator (those above are named for readers; a new one is added here)
__all__ += [spec.estimator for spec in _registry.MODELS.values() if spec.estimator not in __all__]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)
