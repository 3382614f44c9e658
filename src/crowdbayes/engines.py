"""Inference engines as objects: ``EM(...)`` and ``NUTS(...)``, an estimator's ``inference=``.

Every Bayesian estimator takes ``inference=EM(max_iter=200, devices=4)`` or
``inference=NUTS(num_chains=4, seed=0)``; given, it replaces the estimator's
``method`` and engine parameters (``max_iter``, ``tol``, ``progress``, ``devices``;
``num_warmup``, ``num_samples``, ``num_chains``, ``seed``), which keep working as
before. NUTS starts from the EM estimate, found with the estimator's own ``max_iter``
and ``tol``. Engines are plain parameter holders (no JAX import), so estimators stay
cheap to build, and they follow scikit-learn's nested-parameter convention:
``get_params()`` lists ``inference__max_iter``, ``set_params(inference__max_iter=5)``
sets it, so ``clone`` and grid searches work. This module imports neither JAX nor NumPy.

>>> import crowdbayes as cb
>>> model = cb.DawidSkene(inference=cb.EM(max_iter=5))
>>> model.get_params()["inference__max_iter"]
5
>>> model.set_params(inference__max_iter=7).inference
EM(max_iter=7, tol=1e-06, progress=False, devices=None)
>>> df, gold = cb.datasets.load("wsd")
>>> model.fit(df).n_iter_ <= 7
True
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

__all__ = ["EM", "ENGINE_PARAMS", "NUTS", "engine_settings"]

#: The estimator parameters an engine object stands for.
ENGINE_PARAMS = (
    "method",
    "max_iter",
    "tol",
    "progress",
    "devices",
    "num_warmup",
    "num_samples",
    "num_chains",
    "seed",
)


class _Engine:
    method: ClassVar[str]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The engine's settings, by name (scikit-learn's convention)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    def set_params(self, **params: Any) -> _Engine:
        """Set settings by name; an unknown name raises ``ValueError``."""
        names = {f.name for f in fields(self)}  # type: ignore[arg-type]
        for key, value in params.items():
            if key not in names:
                raise ValueError(
                    f"{type(self).__name__} has no setting {key!r}; valid: {sorted(names)}"
                )
            setattr(self, key, value)
        return self


@dataclass
class EM(_Engine):
    """EM to the MAP estimate: at most ``max_iter`` iterations, stopping when the
    log-posterior gains less than ``tol`` per label; ``progress`` shows a bar;
    ``devices`` (a count or a list of JAX devices) shards the labels across them."""

    method: ClassVar[str] = "em"
    max_iter: int = 100
    tol: float = 1e-6
    progress: bool = False
    devices: Any = None


@dataclass
class NUTS(_Engine):
    """NumPyro's NUTS from the EM estimate: ``num_chains`` chains of ``num_warmup``
    warm-up steps and ``num_samples`` draws, seeded by ``seed``; ``progress`` shows a
    bar per chain."""

    method: ClassVar[str] = "nuts"
    num_warmup: int = 1000
    num_samples: int = 1000
    num_chains: int = 4
    seed: int = 0
    progress: bool = False


def engine_settings(estimator: Any) -> dict[str, Any]:
    """The engine parameters an estimator fits with: its own (``method``, ``max_iter``,
    ...), replaced by those of its ``inference`` engine when it has one."""
    out = {name: getattr(estimator, name, None) for name in ENGINE_PARAMS}
    engine = getattr(estimator, "inference", None)
    if engine is None:
        return out
    if not isinstance(engine, (EM, NUTS)):
        raise ValueError(
            f"inference must be crowdbayes.EM(...) or crowdbayes.NUTS(...), got {engine!r}"
        )
    if out["method"] not in (None, "em"):
        raise ValueError(
            f"give inference= or method=, not both (method={out['method']!r}, inference={engine!r})"
        )
    out["method"] = engine.method
    out.update(engine.get_params())
    return out
