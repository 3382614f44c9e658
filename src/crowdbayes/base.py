"""Base class for aggregators: sklearn-like parameters, fitted state and outputs.

An aggregator's constructor only stores its parameters; ``fit`` encodes the
data once (:class:`~crowdbayes.data.Annotations`) and sets attributes ending in
``_``; results come back as pandas objects in the user's own ids and labels.
An aggregator declares its parameters as annotated class attributes with their
defaults, as a dataclass declares its fields, and ``Aggregator`` writes the
``__init__`` that takes and stores them (see :meth:`Aggregator.__init_subclass__`);
the Bayesian models add the engine parameters they share (``method``, ``max_iter``,
...) by name. Aggregators speak scikit-learn's estimator protocol without depending on it:
``get_params``/``set_params`` (so ``sklearn.base.clone`` works), ``__sklearn_tags__``
(scikit-learn's tags, built only when scikit-learn asks) and ``__sklearn_is_fitted__``
(so ``sklearn.utils.validation.check_is_fitted`` works).

Every public method of an aggregator that takes an ``interval`` checks it before
anything else: a credible level strictly between 0 and 1 (or ``None`` where the method
allows it), so that, say, new annotations passed by mistake are an error, not ignored.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Hashable
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from .data import Annotations, GoldLike, as_annotations, pred_probs_needed

__all__ = [
    "AdversarialWarning",
    "Aggregator",
    "NotFittedError",
    "check_interval",
    "check_is_fitted",
    "wilson_interval",
]

_COLUMN_KEYWORDS = ("task", "worker", "label")


class NotFittedError(ValueError, AttributeError):
    """Raised when a result is asked of an aggregator before ``fit``."""


class AdversarialWarning(UserWarning):
    """The fit says a source is worse than chance: the annotators, or the classifier whose
    ``pred_probs`` were given. Most often the classifier's columns are not in the order of
    the classes; give ``pred_probs`` as a DataFrame whose columns are the class labels."""


def wilson_interval(
    successes: np.ndarray | float, trials: np.ndarray | float, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a proportion (elementwise; NaN where ``trials`` is 0).

    >>> low, high = wilson_interval(8, 10)
    >>> round(float(low), 3), round(float(high), 3)
    (0.49, 0.943)
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    safe_n = np.where(n > 0, n, 1.0)
    p = k / safe_n
    denom = 1.0 + z**2 / safe_n
    centre = (p + z**2 / (2 * safe_n)) / denom
    half = z * np.sqrt(p * (1 - p) / safe_n + z**2 / (4 * safe_n**2)) / denom
    low = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
    high = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    return low, high


def check_interval(interval: Any, where: str = "interval") -> None:
    """Raise unless ``interval`` is ``None`` or a number strictly between 0 and 1.

    >>> check_interval(0.9)
    >>> check_interval(90)
    Traceback (most recent call last):
    ...
    ValueError: interval must be between 0 and 1 (a credible level such as 0.9), got 90
    """
    if interval is None:
        return
    if isinstance(interval, bool) or not isinstance(interval, numbers.Real):
        hint = ""
        if isinstance(interval, pd.DataFrame | pd.Series | Annotations | str | np.ndarray):
            hint = (
                "; it describes the fitted tasks only: score new annotations with "
                "predict_proba(new_annotations) or predict(new_annotations)"
            )
        raise TypeError(
            f"{where}: interval must be a number between 0 and 1 (a credible level such as "
            f"0.9), got {type(interval).__name__}{hint}"
        )
    if not 0.0 < float(interval) < 1.0:
        raise ValueError(
            f"interval must be between 0 and 1 (a credible level such as 0.9), got {interval}"
        )


def check_is_fitted(estimator: Any) -> None:
    """Raise :class:`NotFittedError` unless ``estimator`` has been fitted."""
    if getattr(estimator, "proba_", None) is None:
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet: call "
            "'fit(annotations)' before asking for results."
        )


def check_column_keywords(owner: str, columns: dict[str, Any]) -> None:
    """``fit``'s extra keywords may only name the long table's columns."""
    unknown = [k for k in columns if k not in _COLUMN_KEYWORDS]
    if unknown:
        raise TypeError(
            f"{owner}.fit() got an unexpected keyword argument {unknown[0]!r}; besides gold "
            "it takes task=, worker=, label= (the long table's column names)"
        )
    bad = [k for k, v in columns.items() if not isinstance(v, Hashable)]
    if bad:
        raise TypeError(f"{owner}.fit(): {bad[0]}= must be a column name, got {columns[bad[0]]!r}")


def entropy(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of ``proba``; 0 log 0 counts as 0."""
    p = np.asarray(proba, dtype=float)
    logp = np.log(np.where(p > 0, p, 1.0))
    return -(p * logp).sum(axis=1)


def declared_parameters(cls: type) -> dict[str, tuple[Any, Any]]:
    """The parameters the body of ``cls`` itself declares, in order: its annotated class
    attributes with a value, but for ``ClassVar`` ones and names that start or end with
    ``_`` (private and fitted attributes); name -> (annotation, default).

    >>> class Model(Aggregator):
    ...     prior: float = 1.0
    ...     n_draws_: int  # fitted: no value, no parameter
    ...     _rate: ClassVar[float] = 0.5
    >>> declared_parameters(Model)
    {'prior': ('float', 1.0)}
    """
    notes = inspect.get_annotations(cls)
    return {
        name: (note, cls.__dict__[name])
        for name, note in notes.items()
        if name in cls.__dict__
        and not name.startswith("_")
        and not name.endswith("_")
        and not str(note).startswith(("ClassVar", "typing.ClassVar"))
    }


def parameter_init(cls: type) -> Any:
    """The ``__init__`` of ``cls`` that takes its parameters (those its own body declares,
    then its ``_engine_parameters``, each with the annotation and default of its nearest
    declaration in the MRO) and only stores them, written out as dataclasses write theirs.

    >>> class Model(Aggregator):
    ...     prior: float = 1.0
    ...     seed: int = 0
    >>> import inspect
    >>> inspect.signature(Model)
    <Signature (prior: 'float' = 1.0, seed: 'int' = 0) -> 'None'>
    >>> vars(Model(prior=2.0))
    {'prior': 2.0, 'seed': 0}

    A subclass that declares parameters declares all its own, the base's included (in
    the order it wants them), so that none is dropped unseen:

    >>> class Tempered(Model):
    ...     temperature: float = 1.0
    Traceback (most recent call last):
    ...
    TypeError: Tempered declares parameters, so it declares all of its own: ['prior', 'seed'] of its base are missing
    """
    engine = tuple(getattr(cls, "_engine_parameters", ()))
    own = [n for n in declared_parameters(cls) if n not in engine]
    names = own + list(engine)
    inherited = cls.__init__  # type: ignore[misc]  # the base's (cls writes none)
    dropped = [n for n in getattr(inherited, "own_parameters", ()) if n not in names]
    if dropped:
        raise TypeError(
            f"{cls.__name__} declares parameters, so it declares all of its own: {dropped} "
            "of its base are missing"
        )
    declared: dict[str, tuple[Any, Any]] = {}
    for klass in reversed(cls.__mro__):
        declared.update(declared_parameters(klass))
    missing = [n for n in names if n not in declared]
    if missing:
        raise TypeError(f"{cls.__name__}: parameters {missing} are declared nowhere")
    body = [f"    self.{n} = {n}" for n in names] or ["    pass"]
    namespace: dict[str, Any] = {}
    exec("\n".join([f"def __init__(self, {', '.join(names)}):", *body]), {}, namespace)
    init = namespace["__init__"]
    init.__defaults__ = tuple(declared[n][1] for n in names)
    init.__annotations__ = {n: declared[n][0] for n in names} | {"return": "None"}
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = f"Store the parameters of {cls.__name__} (documented on the class)."
    init.own_parameters = tuple(own)  # what a subclass that declares parameters must keep
    return init


class Aggregator:
    """Common machinery of crowdbayes aggregators (not used directly).

    Subclasses declare their parameters as annotated class attributes with defaults
    (the constructor is written from them: :meth:`__init_subclass__`), implement
    ``_fit(annotations)`` (setting ``proba_`` and ``label_codes_``) and may override
    ``_predict_proba_new`` and ``annotator_quality``.
    """

    # fitted state shared by all aggregators
    annotations_: Annotations
    proba_: np.ndarray
    label_codes_: np.ndarray

    #: Whether the model fits with a classifier's ``pred_probs`` (the CROWDLAB models:
    #: they read ``annotations.pred_probs`` in ``_fit``); ``fit(pred_probs=...)`` to any
    #: other is an error.
    _uses_pred_probs: ClassVar[bool] = False

    #: Parameters shared by a family of aggregators, taken after a class's own, by name
    #: (declared, with their defaults, in a base class or the class itself).
    _engine_parameters: ClassVar[tuple[str, ...]] = ()

    if TYPE_CHECKING:  # the written constructor's signature is its class's declarations

        def __init__(self, **params: Any) -> None: ...

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give a subclass that declares parameters (or ``_engine_parameters``) and writes
        no ``__init__`` the constructor scikit-learn wants: explicit keyword parameters,
        in order, that it only stores (:func:`parameter_init`). A subclass that declares
        none inherits its base's constructor."""
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__ and (
            declared_parameters(cls) or "_engine_parameters" in cls.__dict__
        ):
            setattr(cls, "__init__", parameter_init(cls))  # noqa: B010 (mypy: method-assign)

    # ------------------------------------------------------------ parameters
    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters, as ``sklearn`` expects; with ``deep``, also those
        of a parameter that has parameters itself (``inference__max_iter`` for
        ``inference=EM(...)``)."""
        out = {name: getattr(self, name) for name in self._get_param_names()}
        if deep:
            for name, value in list(out.items()):
                if hasattr(value, "get_params") and not isinstance(value, type):
                    out.update({f"{name}__{k}": v for k, v in value.get_params().items()})
        return out

    def set_params(self, **params: Any) -> Aggregator:
        """Set constructor parameters (``inference__max_iter=5``: a setting of the
        ``inference`` engine); unknown names raise ``ValueError``."""
        valid = set(self._get_param_names())
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {name!r}; valid: {sorted(valid)}"
                )
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, key, value)
        for name, sub_params in nested.items():
            value = getattr(self, name)
            if not hasattr(value, "set_params"):
                raise ValueError(
                    f"{type(self).__name__}.{name} is {value!r}, which has no parameters "
                    f"to set ({', '.join(sorted(sub_params))})"
                )
            value.set_params(**sub_params)
        return self

    # ------------------------------------------------- scikit-learn protocol
    def __sklearn_is_fitted__(self) -> bool:
        """Whether ``fit`` has run (what :func:`check_is_fitted` checks)."""
        return getattr(self, "proba_", None) is not None

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags (scikit-learn >= 1.6 asks for them; imported only then):
        an estimator of no scikit-learn type that needs fitting, takes a table (long or
        wide, labels of any type, missing labels as NaN in a wide one) and no target
        (gold, where a model takes it, is a keyword of ``fit``); seeded, so
        deterministic."""
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=False),
            input_tags=InputTags(two_d_array=True, categorical=True, string=True, allow_nan=True),
            requires_fit=True,
            non_deterministic=False,
        )

    def __repr__(self) -> str:
        defaults = {
            p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()
        }
        changed = []
        for k, v in self.get_params(deep=False).items():
            default = defaults.get(k, inspect.Parameter.empty)
            try:
                same = bool(default == v)
            except (TypeError, ValueError):
                same = False
            if not same:
                changed.append(f"{k}={v!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        annotations: Annotations | pd.DataFrame | str,
        gold: GoldLike = None,
        *,
        pred_probs: Any = None,
        **columns: str,
    ) -> Aggregator:
        """Fit to annotations (long or wide DataFrame, file path or :class:`Annotations`).

        ``gold`` (task id -> true label) is clamped where the model supports it.
        ``pred_probs``, a classifier's out-of-sample probabilities per task (a DataFrame
        by task id with the classes as columns, in any order; an array only with wide
        input or :class:`Annotations`), are for the models that fit with them (CrowdLab,
        BayesianCrowdLab), aligned once by :func:`~crowdbayes.as_annotations`; any other
        model refuses them (a ``TypeError``), and ignores those an :class:`Annotations`
        carries. ``columns`` may rename the long table's columns: ``task=``, ``worker=``,
        ``label=``.
        """
        owner = type(self).__name__
        check_column_keywords(owner, columns)
        if pred_probs is not None and not self._uses_pred_probs:
            raise TypeError(
                f"{owner} does not use pred_probs (a classifier's probabilities); "
                "CrowdLab and BayesianCrowdLab fit with them"
            )
        if (
            self._uses_pred_probs
            and pred_probs is None
            and not isinstance(annotations, Annotations)
        ):
            raise TypeError(pred_probs_needed(owner))  # before the annotations are read
        ann = as_annotations(annotations, gold=gold, pred_probs=pred_probs, **columns)
        self.annotations_ = ann
        self._fit(ann)
        return self

    def _fit(self, ann: Annotations) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit_predict(
        self,
        annotations: Annotations | pd.DataFrame | str,
        gold: GoldLike = None,
        *,
        pred_probs: Any = None,
        **columns: str,
    ) -> pd.Series:
        """``fit`` then ``predict``, with ``fit``'s arguments (``gold``, a CROWDLAB
        model's ``pred_probs``, the column names)."""
        return self.fit(annotations, gold, pred_probs=pred_probs, **columns).predict()

    # --------------------------------------------------------------- outputs
    @property
    def classes_(self) -> np.ndarray:
        check_is_fitted(self)
        return self.annotations_.classes.to_numpy()

    def predict_proba(self, annotations: Annotations | pd.DataFrame | None = None) -> pd.DataFrame:
        """Probability of each class per task (rows sum to 1), task ids as the index.

        With ``annotations``, scores those (new) tasks with the fitted annotator model.
        """
        check_is_fitted(self)
        if annotations is None:
            ann, proba = self.annotations_, self.proba_
        else:
            ann = self.annotations_.encode_new(annotations)
            proba = self._predict_proba_new(ann)
        return pd.DataFrame(proba, index=ann.task_ids, columns=ann.classes)

    def predict(self, annotations: Annotations | pd.DataFrame | None = None) -> pd.Series:
        """The aggregated label of each task, in the user's label values."""
        check_is_fitted(self)
        if annotations is None:
            ann, codes = self.annotations_, self.label_codes_
        else:
            ann = self.annotations_.encode_new(annotations)
            codes = np.argmax(self._predict_proba_new(ann), axis=1)
        return pd.Series(ann.decode_labels(codes), index=ann.task_ids, name="label")

    def _predict_proba_new(self, ann: Annotations) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} cannot score new tasks")

    def task_uncertainty(self) -> pd.DataFrame:
        """Per task: the chosen label, its probability, the posterior entropy (nats),
        the number of labels, and whether the task has gold."""
        check_is_fitted(self)
        ann = self.annotations_
        p = self.proba_
        chosen = self.label_codes_
        return pd.DataFrame(
            {
                "label": ann.decode_labels(chosen),
                "probability": p[np.arange(len(chosen)), chosen],
                "entropy": entropy(p),
                "n_labels": ann.labels_per_task(),
                "gold": ann.gold >= 0,
            },
            index=ann.task_ids,
        )

    def annotator_quality(self, interval: float | None = 0.9) -> pd.DataFrame:
        """Per annotator (indexed by the user's ids), the one schema of every model: what
        the model estimates of each annotator, then ``n_labels`` (labels given) and
        ``agreement`` (share of them equal to the consensus label), always the last two
        columns. A model that estimates an accuracy (the probability that a label is
        right) gives ``accuracy``; one with intervals gives every estimate ``x`` its
        ``interval`` bounds as ``x_lower`` and ``x_upper`` (per-class ``sensitivity[c]``
        of the confusion models too); CROWDLAB gives its ``quality`` score and
        ``worst_class``. This base gives the last two alone (majority vote), ignoring
        ``interval`` (None or a level between 0 and 1)."""
        check_interval(interval, "annotator_quality")
        check_is_fitted(self)
        ann = self.annotations_
        return pd.DataFrame(
            {"n_labels": ann.labels_per_worker(), "agreement": self._agreement_with_consensus()},
            index=ann.worker_ids,
        )

    def _agreement_with_consensus(self) -> np.ndarray:
        ann = self.annotations_
        agree = (ann.label == self.label_codes_[ann.task]).astype(float)
        n = ann.labels_per_worker()
        s = np.bincount(ann.worker, weights=agree, minlength=ann.n_workers)
        return s / np.maximum(n, 1)
