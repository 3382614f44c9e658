"""Inference engines as objects: ``EM(...)`` and ``NUTS(...)``, an estimator's ``inference=``.

Every Bayesian estimator takes ``inference=EM(max_iter=200, devices=4)`` or
``inference=NUTS(num_chains=4, seed=0)``; given, it replaces the estimator's
``method`` and engine parameters (``max_iter``, ``tol``, ``progress``, ``devices``;
``num_warmup``, ``num_samples``, ``num_chains``, ``seed``). NUTS starts from the EM
estimate, found with the estimator's own ``max_iter`` and ``tol``. Each engine's
``run(family, data, hyper, init)`` fits a model family and returns its
:class:`~crowdbayes.inference.posterior.Posterior` (EM's estimate, or NUTS's draws),
which every Bayesian estimator keeps as ``posterior_`` and reads its outputs from; an
estimator's empirical-Bayes rounds (``HierarchicalDawidSkene``'s scales) are EM's
``refit``. Building an engine imports no JAX (``run`` does), so estimators stay cheap
to build, and engines follow scikit-learn's nested-parameter convention:
``get_params()`` lists ``inference__max_iter``, ``set_params(inference__max_iter=5)``
sets it, so ``clone`` and grid searches work. Importing this module imports neither JAX nor NumPy.

The flat NUTS parameters, ``method="nuts"`` and ``num_warmup``, ``num_samples``,
``num_chains`` (:data:`DEPRECATED_PARAMS`), still fit as before but are deprecated: a fit
that uses them gives a ``FutureWarning`` that says what to write instead
(:func:`warn_deprecated`), ``inference=NUTS(...)`` with the same settings and seed, which
fits the same. The flat EM settings (``max_iter``, ``tol``, ``progress``, ``devices``) and
``seed`` are not deprecated.

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

import os
import sys
import warnings
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .inference.posterior import Posterior

__all__ = [
    "DEPRECATED_PARAMS",
    "EM",
    "ENGINE_PARAMS",
    "NUTS",
    "deprecation_message",
    "engine_settings",
    "warn_deprecated",
]

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

    def placement(self, n_labels: int, buckets: bool = True) -> Any:
        """Where :meth:`run`'s data go (``em_data(..., devices=)``): ``devices`` when set
        (the labels sharded by task across them), else one device, padded to a shape
        bucket (``inference.em.BUCKETS``) for up to ``BUCKET_MAX_LABELS`` labels when
        ``buckets`` (one compiled program per bucket), exact shapes (None) above."""
        if self.devices is not None:
            return self.devices
        if not buckets:
            return None
        from .inference.em import BUCKET_MAX_LABELS, BUCKETS

        return BUCKETS if n_labels <= BUCKET_MAX_LABELS else None

    def run(self, family: Any, data: Any, hyper: Any, init: Any, *, refit: Any = None) -> Posterior:
        """EM on ``family`` from the class posterior ``init`` (``[n_tasks, K]``) on the
        kernel arrays ``data`` (laid out where :meth:`placement` says) at ``hyper``;
        with ``refit``, empirical-Bayes rounds of the hyperparameters first
        (:func:`~crowdbayes.inference.posterior.em_posterior`). Returns the
        :class:`~crowdbayes.inference.posterior.Posterior` at EM's estimate."""
        from .inference.posterior import em_posterior

        return em_posterior(
            family,
            data,
            hyper,
            init,
            max_iter=int(self.max_iter),
            tol=float(self.tol),
            progress=bool(self.progress),
            refit=refit,
        )


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

    def placement(self, n_labels: int, buckets: bool = True) -> Any:
        """Where :meth:`run`'s data go: one device, exact shapes (None), whatever the size."""
        return None

    def run(
        self,
        family: Any,
        data: Any,
        hyper: Any,
        init: Any,
        *,
        em: EM | None = None,
        refit: Any = None,
    ) -> Posterior:
        """NUTS on ``family``'s posterior, every chain started at the estimate that
        ``em`` (default ``EM()``; with ``refit``, after its empirical-Bayes rounds) finds
        from ``init``, on exact-shaped ``data``. Returns the
        :class:`~crowdbayes.inference.posterior.Posterior` of the draws."""
        from .inference.posterior import nuts_posterior

        start = (EM() if em is None else em).run(family, data, hyper, init, refit=refit)
        settings = {k: bool(v) if k == "progress" else int(v) for k, v in self.get_params().items()}
        return nuts_posterior(family, data, start, **settings)


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
            f"give inference= or method=, not both (method={out['method']!r}, inference={engine!r}); "
            "method= is deprecated: give inference= alone"
        )
    out["method"] = engine.method
    out.update(engine.get_params())
    return out


#: The estimator parameters deprecated for ``inference=NUTS(...)``: ``method`` (its value
#: ``"nuts"``) and the settings that only NUTS reads.
DEPRECATED_PARAMS = ("method", "num_warmup", "num_samples", "num_chains")

_NUTS_DEFAULTS = {f.name: f.default for f in fields(NUTS)}


def _call(args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def deprecation_message(estimator: Any) -> str | None:
    """What the fit of ``estimator`` warns about its deprecated flat NUTS parameters
    (:data:`DEPRECATED_PARAMS`; at their defaults they do not count), None where it uses
    none. ``method="nuts"``: write ``inference=cb.NUTS(...)`` with the flat NUTS settings
    that differ from ``NUTS``'s defaults (``num_warmup``, ``num_samples``, ``num_chains``,
    ``seed``, ``progress``), which fits the same. ``num_warmup``, ``num_samples`` or
    ``num_chains`` alone are ignored (by EM, or for the engine's), so they are named too.

    >>> import crowdbayes as cb
    >>> print(deprecation_message(cb.DawidSkene(method="nuts", num_chains=2, seed=3)))
    DawidSkene(method='nuts', num_chains=2, seed=3) is deprecated and will stop working in a future release of crowdbayes: write DawidSkene(inference=cb.NUTS(num_chains=2, seed=3)) instead, which fits the same
    >>> print(deprecation_message(cb.DawidSkene(num_samples=500)))
    DawidSkene(num_samples=500): NUTS's settings have no effect with EM and are deprecated as parameters of the estimator: to sample with NUTS, write DawidSkene(inference=cb.NUTS(num_samples=500))
    >>> deprecation_message(cb.DawidSkene(inference=cb.NUTS(num_chains=2), seed=3)) is None
    True
    """
    name = type(estimator).__name__
    method = getattr(estimator, "method", "em")
    flat = {
        k: getattr(estimator, k, _NUTS_DEFAULTS[k])
        for k in DEPRECATED_PARAMS[1:]
        if getattr(estimator, k, _NUTS_DEFAULTS[k]) != _NUTS_DEFAULTS[k]
    }
    engine = getattr(estimator, "inference", None)
    if method == "nuts" and engine is None:
        settings = {
            k: getattr(estimator, k, _NUTS_DEFAULTS[k])
            for k in ("num_warmup", "num_samples", "num_chains", "seed", "progress")
        }
        carried = {k: v for k, v in settings.items() if v != _NUTS_DEFAULTS[k]}
        return (
            f"{name}({_call({'method': 'nuts', **carried})}) is deprecated and will stop working "
            f"in a future release of crowdbayes: write {name}(inference=cb.NUTS({_call(carried)})) "
            "instead, which fits the same"
        )
    if not flat or method not in (None, "em"):  # another method: the fit's error says
        return None
    if engine is None:
        return (
            f"{name}({_call(flat)}): NUTS's settings have no effect with EM and are deprecated "
            f"as parameters of the estimator: to sample with NUTS, write "
            f"{name}(inference=cb.NUTS({_call(flat)}))"
        )
    return (
        f"{name}({_call(flat)}, inference={engine!r}): the flat NUTS settings are ignored "
        "(the engine's are used) and deprecated: drop them, or give them to cb.NUTS(...)"
    )


def warn_deprecated(estimator: Any) -> None:
    """Give a ``FutureWarning`` (shown to users by default, unlike ``DeprecationWarning``)
    where ``estimator`` uses deprecated flat NUTS parameters (:func:`deprecation_message`),
    attributed to the first caller outside crowdbayes (the user's ``fit``, ``compare``,
    ...). A Bayesian estimator's fit calls it once; building, ``get_params``,
    ``set_params`` and ``clone`` do not."""
    message = deprecation_message(estimator)
    if message is None:
        return
    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(0), 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(here):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, FutureWarning, stacklevel=level)
