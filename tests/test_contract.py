"""The contract every registered model keeps (scikit-learn's ``parametrize_with_checks``
is the model): parameters round-trip, a fitted model pickles, a seed fixes the fit, every
task comes back once in the user's ids, bad input is an ``AnnotationsError``, estimates
lie inside their own intervals, and for the families with a NumPyro model EM's objective
is NumPyro's log density up to a constant (and the log-Jacobian of EM's log-ratio
coordinates). Parametrized over :data:`crowdbayes.registry.MODELS`: a new model gets every
check by being registered. EM fits only, on the bundled ``wsd`` data (177 tasks)."""

from __future__ import annotations

import inspect
import pickle
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from family_checks import log_ratio_jacobian, outside_own_interval

import crowdbayes as cb
from crowdbayes.registry import MODELS, ModelSpec

README = Path(__file__).parents[1] / "README.md"
CARDS = README.parent / "models"
KEYS = list(MODELS)

#: Checks that a registered model fails because of a defect of the model (not of the check),
#: by check and model: each is an xfail(strict=True) until the model is fixed.
DEFECTS: dict[str, dict[str, str]] = {}


def _keys(check: str, keys: list[str] | None = None) -> list[Any]:
    """The registered models for ``check``, each known defect marked xfail(strict=True)."""
    out = []
    for key in KEYS if keys is None else keys:
        reason = DEFECTS.get(check, {}).get(key)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(key, marks=marks))
    return out


@cache
def data() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """wsd with the tasks renamed (ids unlike the bundled ones, not in sorted order) and the
    rows shuffled; its gold; a simulated classifier's probabilities (right 80% of the
    time), one row per task, columns the classes."""
    df, gold = cb.datasets.load("wsd")
    rng = np.random.default_rng(0)
    tasks = df["task"].unique()
    names = dict(zip(tasks, [f"item {n}" for n in rng.permutation(len(tasks)) * 7], strict=True))
    df = df.assign(task=df["task"].map(names)).sample(frac=1.0, random_state=1)
    df = df.reset_index(drop=True)
    gold = gold.rename(index=names)
    classes = np.sort(df["label"].unique())
    truth = gold.reindex(df["task"].unique()).to_numpy()
    guess = np.where(rng.random(len(truth)) < 0.8, truth, rng.choice(classes, len(truth)))
    pp = pd.DataFrame(
        np.where(guess[:, None] == classes[None, :], 0.8, 0.1),
        index=df["task"].unique(),
        columns=classes,
    )
    return df, gold, pp


def fit(spec: ModelSpec, labels: pd.DataFrame, model: cb.Aggregator | None = None) -> Any:
    """``model`` (default: the spec's estimator at its defaults) fitted by EM to
    ``labels``, given gold and ``pred_probs`` where the model needs them."""
    _, gold, pp = data()
    model = spec.build() if model is None else model
    kwargs: dict[str, Any] = {}
    if spec.needs_gold:
        kwargs["gold"] = gold
    if spec.needs_pred_probs:
        kwargs["pred_probs"] = pp
    return model.fit(labels, **kwargs)


@cache
def fitted(key: str) -> Any:
    return fit(MODELS[key], data()[0])


# ---------------------------------------------------------------------- the registry
def test_every_registered_model_has_a_card_and_the_readme_names_only_registered_ones() -> None:
    """Every registered model has its card and is a public name of the package; the
    README's model table (the models when it was written: a model registered later is
    listed by ``crowdbayes models``, so registering one takes no README edit) names only
    registered estimators, each once."""
    for key, spec in MODELS.items():
        assert (CARDS / spec.card).is_file(), (key, spec.card)
        assert cb.registry.by_estimator(spec.estimator) == (key, spec)
        assert spec.estimator in cb.__all__ and getattr(cb, spec.estimator) is (
            spec.estimator_class()
        )
    text = README.read_text(encoding="utf-8")
    head = text.index("| estimator | model | fitted by | intervals |")
    rows = text[head : text.index("\n\n", head)].splitlines()[2:]
    named = [n for row in rows for n in row.split("|")[1].split("`")[1::2] if "(" not in n]
    assert len(named) == len(set(named)) >= 11, named
    for name in named:  # a stale row (a name no longer registered) fails here
        cb.registry.by_estimator(name)


@pytest.mark.parametrize("key", KEYS)
def test_the_registry_describes_the_estimator(key: str) -> None:
    spec = MODELS[key]
    params = set(spec.estimator_class()._get_param_names())
    assert not spec.nuts or {"method", "num_warmup", "num_samples", "num_chains"} <= params
    assert spec.iterative == ({"max_iter", "progress"} <= params)
    assert not spec.tie_break or {"tie_break", "seed"} <= params
    fit_params = inspect.signature(spec.estimator_class().fit).parameters
    assert "pred_probs" in fit_params  # every fit takes it: the one door (base.Aggregator.fit)
    assert spec.needs_pred_probs == spec.estimator_class()._uses_pred_probs


# ---------------------------------------------------------------------- parameters
@pytest.mark.parametrize("key", KEYS)
def test_get_params_round_trips(key: str) -> None:
    model = MODELS[key].build()
    params = model.get_params()
    again = type(model)(**params)
    assert again.get_params() == params and repr(again) == repr(model)
    changed = {"seed": 3} if "seed" in params else {}
    assert again.set_params(**changed).get_params() == {**params, **changed}


@pytest.mark.parametrize("key", KEYS)
def test_the_constructor_takes_explicit_parameters_and_only_stores_them(key: str) -> None:
    """What scikit-learn asks of ``__init__`` (written from the class's declarations, see
    ``crowdbayes.base``): named parameters with defaults, no ``*args``/``**kwargs``, each
    stored as it was given under its own name and nothing else set."""
    cls = MODELS[key].estimator_class()
    params = list(inspect.signature(cls).parameters.values())
    assert params and all(
        p.kind is p.POSITIONAL_OR_KEYWORD and p.default is not p.empty for p in params
    )
    assert vars(cls()) == {p.name: p.default for p in params}
    given = {p.name: object() for p in params}
    assert all(v is given[k] for k, v in vars(cls(**given)).items())
    with pytest.raises(TypeError):
        cls(no_such_parameter=1)


@pytest.mark.parametrize("key", KEYS)
def test_scikit_learn_clones_and_checks_fitted(key: str) -> None:
    """scikit-learn's protocol, without depending on it: ``clone`` (parameters),
    ``get_tags`` (``__sklearn_tags__``) and ``check_is_fitted`` (``__sklearn_is_fitted__``)."""
    pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError
    from sklearn.utils import get_tags
    from sklearn.utils.validation import check_is_fitted

    model = fitted(key)
    check_is_fitted(model)
    copy = clone(model)
    assert type(copy) is type(model) and copy.get_params() == model.get_params()
    assert get_tags(copy).requires_fit and not get_tags(copy).target_tags.required
    with pytest.raises(NotFittedError):
        check_is_fitted(copy)
    with pytest.raises(NotFittedError):
        check_is_fitted(MODELS[key].build())


# ---------------------------------------------------------------------- fitted state
@pytest.mark.parametrize("key", KEYS)
def test_pickle_round_trips_a_fitted_model(key: str) -> None:
    model = fitted(key)
    back = pickle.loads(pickle.dumps(model))
    pd.testing.assert_frame_equal(back.predict_proba(), model.predict_proba())
    pd.testing.assert_series_equal(back.predict(), model.predict())


@pytest.mark.parametrize("key", KEYS)
def test_a_seed_fixes_the_fit(key: str) -> None:
    spec, model = MODELS[key], fitted(key)
    again = fit(spec, data()[0])
    pd.testing.assert_frame_equal(again.predict_proba(), model.predict_proba())
    pd.testing.assert_frame_equal(again.annotator_quality(), model.annotator_quality())


@pytest.mark.parametrize("key", KEYS)
def test_every_task_comes_back_once_in_the_users_ids(key: str) -> None:
    labels = data()[0]
    model = fitted(key)
    tasks = set(labels["task"])
    for out in (model.predict(), model.predict_proba(), model.task_uncertainty()):
        assert out.index.is_unique and len(out) == len(tasks) and set(out.index) == tasks
    assert set(model.predict()) <= set(labels["label"])


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize(
    ("problem", "spoil"),
    [
        ("no label column", lambda df: df.drop(columns="label")),
        ("NaN label", lambda df: df.astype({"label": float}).assign(label=np.nan)),
        ("one NaN label", lambda df: df.assign(label=df["label"].where(df.index != 5))),
        ("NaN task", lambda df: df.assign(task=df["task"].where(df.index != 3))),
    ],
)
def test_bad_input_is_an_annotations_error(key: str, problem: str, spoil: Any) -> None:
    with pytest.raises(cb.AnnotationsError):
        fit(MODELS[key], spoil(data()[0]))


# ---------------------------------------------------------------------- intervals
@pytest.mark.parametrize("key", _keys("schema"))
def test_annotator_quality_has_one_schema(key: str) -> None:
    """Every model's ``annotator_quality(interval=...)``: one row per annotator in the
    user's ids, ``n_labels`` and ``agreement`` the last two columns (the same numbers for
    every model that agrees with its consensus the same way), every ``x_lower`` with its
    ``x`` and ``x_upper``, no bounds with ``interval=None``."""
    model = fitted(key)
    q = model.annotator_quality(interval=0.9)
    assert list(q.columns[-2:]) == ["n_labels", "agreement"]
    assert sorted(q.index) == sorted(data()[0]["worker"].unique())
    ann = model.annotations_
    np.testing.assert_array_equal(q["n_labels"].loc[ann.worker_ids], ann.labels_per_worker())
    assert q["agreement"].between(0, 1).all()
    for col in q.columns:
        if col.endswith("_lower"):
            base = col.removesuffix("_lower")
            assert base in q.columns and f"{base}_upper" in q.columns, col
    bare = model.annotator_quality(interval=None)
    assert not [c for c in bare.columns if c.endswith(("_lower", "_upper"))]
    with pytest.raises(ValueError, match="between 0 and 1"):
        model.annotator_quality(interval=90)


def _bounded(q: pd.DataFrame) -> list[str]:
    return [c for c in q.columns if f"{c}_lower" in q.columns]


@pytest.mark.parametrize("key", _keys("intervals"))
def test_estimates_are_inside_their_own_intervals(key: str) -> None:
    model = fitted(key)
    q = model.annotator_quality(interval=0.9)
    if not _bounded(q):
        pytest.skip(f"{MODELS[key].estimator}.annotator_quality has no intervals")
    bounded = _bounded(q)
    assert "accuracy" in bounded and all(f"{c}_upper" in q.columns for c in bounded)
    # an annotator without gold has no GoldMajorityVote interval (NaN), only its default skill
    q = q[q["accuracy_lower"].notna()]
    assert len(q) > 0
    assert not outside_own_interval(q), outside_own_interval(q)
    assert (q["accuracy_upper"] >= q["accuracy_lower"]).all()
    assert len(model.annotator_quality(interval=0.9)) == data()[0]["worker"].nunique()


# ---------------------------------------------------------------------- EM and NumPyro
def _has_numpyro_model(key: str) -> bool:
    return hasattr(getattr(MODELS[key].estimator_class(), "_family", None), "sample_sites")


@cache
def _density_setup(key: str) -> tuple[Any, ...]:
    """The fitted model's family, data, hyperparameters, jitted EM objective and NumPyro
    log density, the sites' supports and EM's estimate in numpyro's unconstrained
    coordinates."""
    import jax
    import jax.numpy as jnp
    import numpyro
    from numpyro.infer.util import log_density, unconstrain_fn

    from crowdbayes.inference.posterior import em_objective, marginal_model

    model = fitted(key)
    family, data_, hyper = model._family, model._data(), model._fitted_hyper()
    numpyro_model = partial(marginal_model, family)
    sites = {k: jnp.asarray(v) for k, v in family.sites_from_params(model.params_, hyper).items()}
    trace = numpyro.handlers.trace(numpyro.handlers.substitute(numpyro_model, data=sites))
    supports = {
        name: site["fn"].support
        for name, site in trace.get_trace(data_, hyper).items()
        if site["type"] == "sample" and not site["is_observed"]
    }
    em_fn = jax.jit(lambda p: em_objective(family, p, data_, hyper))
    lp_fn = jax.jit(lambda s: log_density(numpyro_model, (data_, hyper), {}, s)[0])
    z0 = unconstrain_fn(numpyro_model, (data_, hyper), {}, sites)
    return family, data_, hyper, em_fn, lp_fn, supports, z0, numpyro_model


def _perturbed_sites(key: str, scale: float, seed: int) -> dict[str, Any]:
    """EM's estimate moved by ``scale`` standard normals in numpyro's unconstrained
    coordinates, as sites."""
    import jax
    from numpyro.infer.util import constrain_fn

    _, data_, hyper, *_, z0, numpyro_model = _density_setup(key)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(z0))
    z = {
        k: v + scale * jax.random.normal(r, v.shape)
        for (k, v), r in zip(z0.items(), keys, strict=True)
    }
    return dict(constrain_fn(numpyro_model, (data_, hyper), {}, z))


@pytest.mark.parametrize("key", _keys("density"))
def test_em_objective_and_numpyro_density_differ_by_a_constant(key: str) -> None:
    if not _has_numpyro_model(key):
        pytest.skip(f"{MODELS[key].estimator} has no NumPyro model")
    family, _, hyper, em_fn, lp_fn, supports, *_ = _density_setup(key)
    gaps, scale_of = [], []
    for scale, seed in ((0.0, 0), (0.3, 1), (0.3, 2)):
        sites = _perturbed_sites(key, scale, seed)
        em = float(em_fn(family.params_from_sites(sites, hyper)))
        lp = float(lp_fn(sites)) + log_ratio_jacobian(sites, supports)
        gaps.append(lp - em)
        scale_of.append(abs(em))
    # float32 sums over the labels: about 1e-6 of the objective; a missing prior term
    # moves the gap by far more between these points
    assert max(gaps) - min(gaps) == pytest.approx(0.0, abs=2e-5 * max(scale_of) + 1e-2), gaps


@pytest.mark.parametrize("key", _keys("round_trip", [k for k in KEYS if _has_numpyro_model(k)]))
def test_params_and_sites_round_trip(key: str) -> None:
    family, _, hyper, *_ = _density_setup(key)
    sites = _perturbed_sites(key, 0.3, 1)
    back = family.sites_from_params(family.params_from_sites(sites, hyper), hyper)
    assert set(back) == set(sites)
    for name, value in sites.items():
        np.testing.assert_allclose(np.asarray(back[name]), np.asarray(value), rtol=1e-4, atol=1e-5)


def _functions(protocol: type) -> list[str]:
    """The functions a Protocol asks for, its bases' included (BayesianFamily: EMModel's)."""
    return sorted({n for k in protocol.__mro__[:-1] for n in vars(k) if not n.startswith("_")})


@pytest.mark.parametrize("key", KEYS)
def test_a_bayesian_family_declares_the_whole_contract(key: str) -> None:
    """Every family behind a Bayesian estimator is a ``BayesianFamily`` (EM's part, NumPyro
    sites, confusion, EM's interval draws); one with coordinates of its own for NUTS has all
    three of ``Reparametrised``'s functions, not some (NUTS would mix coordinates)."""
    from crowdbayes.models.bayesian import BayesianAggregator, BayesianFamily, Reparametrised

    cls = MODELS[key].estimator_class()
    if not issubclass(cls, BayesianAggregator):
        pytest.skip("not a Bayesian estimator")
    family = cls._family
    needed = _functions(BayesianFamily)
    assert len(needed) == 9 and isinstance(family, BayesianFamily)
    assert [n for n in needed if not callable(getattr(family, n, None))] == []
    own = [n for n in _functions(Reparametrised) if hasattr(family, n)]
    assert own in ([], _functions(Reparametrised)), own
    assert isinstance(family, Reparametrised) == bool(own)
