"""Every model of the library, in one place: :data:`MODELS`, one :class:`ModelSpec` each.

A model is registered here by its command-line name (``crowdbayes aggregate --model
NAME``) with where its estimator lives, one line about it, what its fit needs (gold,
a classifier's ``pred_probs``), whether it takes ``inference=NUTS(...)``, and its model card
(a file in ``models/``). The command line, ``crowdbayes models``, the README's tables
(a test checks them), the model cards' and coverage benchmarks and the contract test
(``tests/test_contract.py``, every check for every registered estimator) read it.

This module uses only the standard library: the command line imports it before it
knows whether a model will be needed, and estimators are imported when asked for.

>>> MODELS["ds"].estimator, MODELS["ds"].card, MODELS["ds"].nuts
('DawidSkene', 'dawid_skene.md', True)
>>> [name for name, spec in MODELS.items() if spec.needs_pred_probs]
['crowdlab', 'bayesian-crowdlab']
>>> MODELS["gmv"].line()
"vote weighted by each annotator's accuracy on the gold tasks (needs --gold)"
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a model is built: this module stays standard-library only
    from .base import Aggregator

__all__ = ["MODELS", "ModelSpec", "by_estimator"]


@dataclass(frozen=True)
class ModelSpec:
    """One registered model: where its estimator lives, one line about it, its card, and
    what it needs (gold, ``pred_probs``) or allows (``inference=NUTS(...)``)."""

    module: str  # below crowdbayes, imported when the estimator is asked for
    estimator: str  # the class's name in that module
    description: str  # one line (``crowdbayes models``, the README's command-line table)
    card: str  # its model card, a file in the repository's ``models/`` folder
    iterative: bool = True  # takes max_iter= and progress=
    nuts: bool = False  # takes inference=NUTS(...) (and --method nuts from the shell)
    tie_break: bool = False  # takes tie_break= and seed=
    needs_gold: bool = False  # fit(annotations, gold=...) needs gold tasks
    needs_pred_probs: bool = False  # fit(annotations, pred_probs=...): a classifier's

    @property
    def card_key(self) -> str:
        """The card's file name without ``.md`` (the benchmarks' key for the model)."""
        return self.card.removesuffix(".md")

    def estimator_class(self) -> type[Aggregator]:
        """The estimator's class (its module imported now)."""
        cls: type[Aggregator] = getattr(
            importlib.import_module(f".{self.module}", __package__), self.estimator
        )
        return cls

    def build(self, **params: Any) -> Aggregator:
        """An unfitted estimator with ``params`` (the others at their defaults)."""
        return self.estimator_class()(**params)

    def line(self) -> str:
        """The one-line description, with what the model needs (as command-line flags)."""
        needs = [
            n
            for n, w in (("--gold", self.needs_gold), ("--pred-probs", self.needs_pred_probs))
            if w
        ]
        tail = f" (needs {', '.join(needs)})" if needs else ""
        fit = "; EM or --method nuts" if self.nuts else ""
        return f"{self.description}{fit}{tail}"


#: Every model of the library, by its command-line name (``--model NAME``), in the order
#: ``crowdbayes models`` lists them.
MODELS: dict[str, ModelSpec] = {
    "recommended": ModelSpec(
        "recommend",
        "CalibratedDawidSkene",
        "Dawid-Skene EM with calibrated probabilities: the benchmarked default, cb.recommended()",
        "calibrated_dawid_skene.md",
    ),
    "mv": ModelSpec(
        "models.majority_vote",
        "MajorityVote",
        "majority vote; ties by --tie-break",
        "majority_vote.md",
        iterative=False,
        tie_break=True,
    ),
    "gmv": ModelSpec(
        "models.gold_majority_vote",
        "GoldMajorityVote",
        "vote weighted by each annotator's accuracy on the gold tasks",
        "gold_majority_vote.md",
        iterative=False,
        tie_break=True,
        needs_gold=True,
    ),
    "ds": ModelSpec(
        "models.dawid_skene",
        "DawidSkene",
        "Dawid-Skene: a full confusion matrix per annotator",
        "dawid_skene.md",
        nuts=True,
    ),
    "one-coin": ModelSpec(
        "models.one_coin",
        "OneCoinDawidSkene",
        "one accuracy per annotator, errors spread evenly",
        "one_coin.md",
        nuts=True,
    ),
    "class-conditional": ModelSpec(
        "models.class_conditional",
        "ClassConditionalDawidSkene",
        "one accuracy per annotator and true class",
        "class_conditional.md",
        nuts=True,
    ),
    "shared-errors": ModelSpec(
        "models.shared_errors",
        "SharedErrorsDawidSkene",
        "one accuracy per annotator and true class; errors follow a pattern shared by the crowd",
        "shared_errors.md",
        nuts=True,
    ),
    "hierarchical": ModelSpec(
        "models.hierarchical",
        "HierarchicalDawidSkene",
        "confusion matrices partially pooled across annotators",
        "hierarchical_dawid_skene.md",
        nuts=True,
    ),
    "mace": ModelSpec(
        "models.mace",
        "MACE",
        "each annotator spams with some probability (MACE)",
        "mace.md",
        nuts=True,
    ),
    "item-difficulty": ModelSpec(
        "models.item_difficulty",
        "ItemDifficulty",
        "annotator ability minus item difficulty (GLAD-like)",
        "item_difficulty.md",
        nuts=True,
    ),
    "ebcc": ModelSpec(
        "models.ebcc",
        "EBCC",
        "a confusion matrix per sub-type of each class: annotators' correlated errors (EBCC)",
        "ebcc.md",
    ),
    "chosen": ModelSpec(
        "chosen",
        "ChosenModel",
        "recommended() or EBCC, whichever predicts held-out labels better (cb.compare)",
        "chosen.md",
        iterative=False,
    ),
    "crowdlab": ModelSpec(
        "models.crowdlab",
        "CrowdLab",
        "CROWDLAB: annotators plus a classifier's probabilities (as cleanlab)",
        "crowdlab.md",
        iterative=False,
        needs_pred_probs=True,
    ),
    "bayesian-crowdlab": ModelSpec(
        "models.bayesian_crowdlab",
        "BayesianCrowdLab",
        "the classifier as a learned source beside the annotators",
        "bayesian_crowdlab.md",
        nuts=True,
        needs_pred_probs=True,
    ),
}


def by_estimator(name: str) -> tuple[str, ModelSpec]:
    """The registered model whose estimator class is called ``name``: (key, spec).

    >>> by_estimator("MACE")[0]
    'mace'
    """
    for key, spec in MODELS.items():
        if spec.estimator == name:
            return key, spec
    raise KeyError(f"no registered model has the estimator {name!r}")
