"""Shape buckets: a bucketed EM fit gives the exact fit's results (every EM family), one
compiled EM program serves every dataset of a bucket, and a long process keeps a bounded
number of them."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest

import crowdbayes as cb
from crowdbayes.inference import em
from crowdbayes.inference.em import BUCKETS, bucket_sizes, em_data, is_bucketed, run_em
from crowdbayes.models.bayesian import vote_shares
from crowdbayes.models.class_conditional import ClassConditionalDawidSkene
from crowdbayes.models.dawid_skene import DawidSkene, DawidSkeneModel
from crowdbayes.models.ebcc import EBCC
from crowdbayes.models.hierarchical import HierarchicalDawidSkene
from crowdbayes.models.item_difficulty import ItemDifficulty
from crowdbayes.models.mace import MACE
from crowdbayes.models.one_coin import OneCoinDawidSkene
from crowdbayes.recommend import recommended
from crowdbayes.simulate import simulate_dawid_skene

ESTIMATORS = {
    "DawidSkene": DawidSkene,
    "OneCoin": OneCoinDawidSkene,
    "ClassConditional": ClassConditionalDawidSkene,
    "MACE": MACE,
    "ItemDifficulty": ItemDifficulty,
    # fixed scales (the empirical-Bayes ones: test_hierarchical_empirical_bayes_...)
    "Hierarchical": lambda: HierarchicalDawidSkene(population_scale=1.0, ability_scale=0.5),
    "recommended": recommended,
}


def crowd(n_tasks: int, n_workers: int, seed: int, n_classes: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    task = np.repeat(np.arange(n_tasks), 5)
    worker = rng.integers(0, n_workers, task.size)
    truth = rng.integers(0, n_classes, n_tasks)
    right = rng.random(task.size) < 0.7
    label = np.where(right, truth[task], rng.integers(0, n_classes, task.size))
    return pd.DataFrame({"task": task, "worker": worker, "label": label})


@pytest.fixture(scope="module")
def data():
    sim = simulate_dawid_skene(n_tasks=150, n_workers=13, n_classes=4, seed=3)
    gold = sim.truth.iloc[:20]  # some gold tasks: clamped, the padding ones are not
    return cb.as_annotations(sim.annotations, gold=gold)


def n_programs() -> int:
    """Compiled EM loops held in this process: by the jitted loop (no persistent cache) or
    by crowdbayes' program cache (a persistent cache on: keyed without tracing)."""
    return em._em_chunk_jit._cache_size() + len(em._programs)


def exact(est):
    est._buckets = False
    return est


def test_a_fit_padded_to_a_fixed_shape_is_the_exact_fit(data):
    """EBCC fits exact shapes; the folds of cb.compare pad to the whole data's shape
    (``_pad_to``) and are the exact fit to float rounding (sub-type rows: K * M = 40)."""
    shape = (data.n_labels + 100, data.n_tasks + 30, data.n_workers + 3)
    padded = EBCC(n_restarts=1, max_iter=30, tol=0)
    padded._pad_to = shape
    padded.fit(data)
    plain = EBCC(n_restarts=1, max_iter=30, tol=0).fit(data)
    np.testing.assert_allclose(padded.proba_, plain.proba_, atol=2e-5)
    np.testing.assert_allclose(padded.confusion_, plain.confusion_, atol=2e-5)
    np.testing.assert_allclose(padded.params_.log_tau, plain.params_.log_tau, atol=1e-4)
    # the objective less the padding rows' log prior, in float32: EBCC's is K * M rows
    # an annotator, so the padding share is large; 1e-5 a label
    n = data.n_labels
    np.testing.assert_allclose(padded.history_ / n, plain.history_ / n, atol=1e-5)
    with pytest.raises(ValueError, match="smaller than the data"):
        em_data(data, devices=em.pad_to(10, 10, 10))


def test_ebcc_fits_exact_shapes_where_a_sub_type_axis_meets_a_padded_one(data, monkeypatch):
    """EBCC's params have ``K * M`` and ``M`` axes; where a padded count is one of them
    (64 annotators = 4 classes x 16 sub-types here), the fit runs on exact shapes and is
    the exact fit; with 15 sub-types it runs padded."""
    layouts: list[bool] = []
    built = EBCC._em_data

    def spy(self, ann, devices=None):
        out = built(self, ann, devices)
        layouts.append(is_bucketed(out))
        return out

    monkeypatch.setattr(EBCC, "_em_data", spy)
    met = EBCC(n_subtypes=16, n_restarts=1, max_iter=20, tol=0)
    met._pad_to = (data.n_labels, data.n_tasks, 64)
    met.fit(data)
    assert layouts == [True, False]  # built padded, refused, rebuilt exact
    plain = EBCC(n_subtypes=16, n_restarts=1, max_iter=20, tol=0).fit(data)
    np.testing.assert_array_equal(met.proba_, plain.proba_)
    layouts.clear()
    apart = EBCC(n_subtypes=15, n_restarts=1, max_iter=20, tol=0)
    apart._pad_to = (data.n_labels, data.n_tasks, 64)
    apart.fit(data)
    assert layouts == [True]


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_bucketed_fit_matches_exact_fit(data, name):
    make = ESTIMATORS[name]
    # tol=0: a fixed number of iterations (with a tolerance, a gain within float32
    # rounding of it may stop one fit an iteration before the other, padded or not)
    padded = make().set_params(max_iter=30, tol=0).fit(data)
    plain = exact(make().set_params(max_iter=30, tol=0)).fit(data)
    assert padded.n_iter_ == plain.n_iter_ == 30
    np.testing.assert_allclose(padded.proba_, plain.proba_, atol=2e-5)
    np.testing.assert_allclose(padded.confusion_, plain.confusion_, atol=2e-5)
    np.testing.assert_allclose(padded.class_prior_, plain.class_prior_, atol=2e-5)
    n = data.n_labels
    np.testing.assert_allclose(padded.history_ / n, plain.history_ / n, atol=2e-6)
    assert (padded.predict() == plain.predict()).all()
    shapes = [np.shape(x) for x in jax.tree_util.tree_leaves(padded.params_)]
    assert shapes == [np.shape(x) for x in jax.tree_util.tree_leaves(plain.params_)]
    if name == "ItemDifficulty":  # per-task params, cut back to the tasks
        np.testing.assert_allclose(padded.difficulty_, plain.difficulty_, atol=2e-5)
    # later uses (intervals, log-likelihood) rebuild the exact layout
    q_pad, q_plain = padded.annotator_quality(n_draws=50), plain.annotator_quality(n_draws=50)
    np.testing.assert_allclose(q_pad["accuracy"], q_plain["accuracy"], atol=2e-5)
    np.testing.assert_allclose(padded.log_likelihood(), plain.log_likelihood(), atol=1e-3)


@pytest.mark.slow
def test_hierarchical_empirical_bayes_is_padding_invariant(data):
    # the importance draws of the empirical-Bayes scales come from one key per annotator,
    # so the padding annotators leave the real ones' draws alone (they were one array of
    # [draws, W, K, K-1]: 1.7e-3 apart on rte, padded or not)
    padded = HierarchicalDawidSkene(max_iter=30).fit(data)
    plain = exact(HierarchicalDawidSkene(max_iter=30)).fit(data)
    np.testing.assert_allclose(padded.population_scale_, plain.population_scale_, rtol=1e-3)
    np.testing.assert_allclose(padded.proba_, plain.proba_, atol=1e-4)


def test_bucketed_fit_converges_like_exact_fit(data):
    padded, plain = DawidSkene().fit(data), exact(DawidSkene()).fit(data)
    # the stopping gain (1e-6 per label) is a few float32 roundings of the objective, whose
    # sums run over differently padded arrays: the fits stop at most two iterations apart
    assert padded.converged_ and plain.converged_ and abs(padded.n_iter_ - plain.n_iter_) <= 2
    # an EM step this late moves a posterior by < 0.02
    np.testing.assert_allclose(padded.proba_, plain.proba_, atol=0.02)


def test_engine_pads_and_cuts_back(data):
    N, T, W, _ = bucket_sizes(data.n_labels, data.n_tasks, data.n_workers, data.n_classes)
    assert N >= data.n_labels and T > data.n_tasks and W > data.n_workers and T != W
    padded = em_data(data, devices=BUCKETS)
    assert is_bucketed(padded) and not is_bucketed(em_data(data))
    assert padded.task.shape == (N,) and padded.gold.shape == (T,)
    assert (np.asarray(padded.gold)[data.n_tasks :] == -1).all()
    assert np.asarray(padded.n_labels_per_worker)[data.n_workers :].sum() == 0
    hyper = DawidSkene()._hyper(data)
    init = vote_shares(data)
    a = run_em(DawidSkeneModel, padded, init, hyper, max_iter=30, tol=0)
    b = run_em(DawidSkeneModel, em_data(data), init, hyper, max_iter=30, tol=0)
    assert a.params.log_confusion.shape == b.params.log_confusion.shape == (13, 4, 4)
    np.testing.assert_allclose(a.history, b.history, rtol=1e-6)
    np.testing.assert_allclose(a.post, b.post, atol=2e-5)
    # a posterior under fixed params is cut back too
    assert em.posterior(DawidSkeneModel, a.padded_params, padded).shape == (data.n_tasks, 4)


def test_one_program_per_bucket():
    first, second = crowd(180, 36, 0), crowd(170, 34, 1)  # 900 and 850 labels
    sizes = [
        bucket_sizes(len(df), df.task.nunique(), df.worker.nunique(), 3) for df in (first, second)
    ]
    assert sizes[0] == sizes[1]
    compiles: list[str] = []

    def listen(name: str, secs: float, **kw) -> None:
        if name == "/jax/core/compile/backend_compile_duration":
            compiles.append(name)

    for make in (DawidSkene, MACE, ItemDifficulty, recommended):
        make().fit(first)
        before_programs = n_programs()
        jax.monitoring.register_event_duration_secs_listener(listen)
        try:
            n_before = len(compiles)
            fit = make().fit(second)
            assert len(compiles) == n_before, make  # nothing compiles for the second size
        finally:
            jax.monitoring.unregister_event_duration_listener(listen)
        assert n_programs() == before_programs
        assert fit.proba_.shape == (170, 3)


def test_programs_stay_bounded_over_many_shapes(monkeypatch):
    em._em_chunk_jit.clear_cache()
    em._programs.clear()
    # 50 datasets of different sizes in a few buckets: one program per bucket
    buckets = set()
    for i in range(50):
        df = crowd(100 + 2 * i, 20 + i % 4, i)
        buckets.add(bucket_sizes(len(df), df.task.nunique(), df.worker.nunique(), 3))
        OneCoinDawidSkene(max_iter=5).fit(df)
    assert n_programs() == len(buckets) <= 5
    # beyond MAX_PROGRAMS programs a cache is cleared: never more than that many, for the
    # EM loop and for every other jitted function (here confusion_ and the intervals')
    from crowdbayes.inference import posterior
    from crowdbayes.models import one_coin

    monkeypatch.setattr(em, "MAX_PROGRAMS", 3)
    for n_tasks in (20, 40, 80, 160, 320, 640):
        fit = OneCoinDawidSkene(max_iter=5).fit(crowd(n_tasks, 10, n_tasks))
        fit.annotator_quality(n_draws=10)  # exact shapes: one program per dataset
        assert n_programs() <= 3
        assert posterior._confusion_jit._cache_size() <= 3
        assert one_coin._expected_jit._cache_size() <= 3


def test_many_classes_e_step_matches_the_row_by_row_one():
    # above ROW_CLASSES the E-step is vectorised over classes (compile time flat in K)
    rng = np.random.default_rng(0)
    joint = jax.numpy.asarray(rng.normal(size=(12, 40)) * 5, jax.numpy.float32)
    gold = jax.numpy.asarray(np.where(rng.random(40) < 0.3, rng.integers(0, 12, 40), -1))
    post, lp = em._normalise(joint, gold)
    post_rows, lp_rows = em._normalise_rows(joint, gold)
    np.testing.assert_allclose(post, post_rows, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(lp, lp_rows, rtol=1e-5)
    df = crowd(60, 8, 0, n_classes=12)
    padded, plain = DawidSkene(max_iter=20, tol=0).fit(df), exact(DawidSkene(max_iter=20, tol=0))
    np.testing.assert_allclose(padded.proba_, plain.fit(df).proba_, atol=2e-5)


def test_compare_compiles_one_ebcc_program_for_its_folds():
    """EBCC fits exact shapes, but cb.compare pads its folds to the whole data's shape:
    the five folds run one EM program (each fold's own shape compiled five)."""
    df = crowd(150, 20, 4)
    compiles: list[str] = []

    def listen(name: str, secs: float, **kw) -> None:
        if name == "/jax/core/compile/backend_compile_duration":
            compiles.append(name)

    before = n_programs()
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        table = cb.compare(df, [EBCC(n_restarts=1, max_iter=20)], folds=5)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert n_programs() - before <= 1 and len(compiles) <= 1
    assert np.isfinite(table.loc["EBCC", "elpd"])
