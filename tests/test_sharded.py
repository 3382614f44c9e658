"""Sharded EM on 4 host devices gives the one-device results (labels; confusions to 1e-5),
for Dawid-Skene and the other EM families that take ``devices=`` (ItemDifficulty's
difficulties too, by task).

JAX fixes its device count at start-up, so the comparison runs in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import crowdbayes as cb
from crowdbayes.inference.segments import Segments
from crowdbayes.inference.sharding import resolve_devices

SCRIPT = textwrap.dedent(
    """
    import json, pickle, sys
    import jax, jax.numpy as jnp, numpy as np
    import crowdbayes as cb
    from crowdbayes.inference.em import em_data

    assert len(jax.devices()) == 4, jax.devices()
    parts = sys.argv[1].split(",")
    out = {}
    if "dawid_skene" in parts:
        for name in ("rte", "dog", "wsd"):
            ann, gold = cb.datasets.load(name)
            one = cb.DawidSkene(max_iter=40, tol=0).fit(ann)
            four = cb.DawidSkene(max_iter=40, tol=0, devices=4).fit(ann)
            conv = cb.DawidSkene(devices=jax.devices()[:3]).fit(ann)
            ref = cb.DawidSkene().fit(ann)
            out[name] = {
                "same_labels": bool((one.predict() == four.predict()).all()),
                "conf": float(np.abs(one.confusion_ - four.confusion_).max()),
                "proba": float(np.abs(one.proba_ - four.proba_).max()),
                "prior": float(np.abs(one.class_prior_ - four.class_prior_).max()),
                "n_iter": [conv.n_iter_, ref.n_iter_],
                "conv_labels": bool((conv.predict() == ref.predict()).all()),
                "loglik_len": int(conv.log_likelihood().shape[0]),
                "n_tasks": one.annotations_.n_tasks,
            }
        # half of bluebirds: a scatter layout whose blocks are too wide to unroll (its
        # loop's accumulator failed to trace inside shard_map, a TypeError, before 2026-12-03)
        half = cb.datasets.load("bluebirds")[0].sample(frac=0.5, random_state=0)
        one = cb.DawidSkene(max_iter=40, tol=0).fit(half)
        four = cb.DawidSkene(max_iter=40, tol=0, devices=4).fit(half)
        out["bluebirds_half"] = {
            "same_labels": bool((one.predict() == four.predict()).all()),
            "conf": float(np.abs(one.confusion_ - four.confusion_).max()),
        }
        # the per-label layout sums like the one-device one
        ann = cb.as_annotations(cb.datasets.load("wsd")[0])
        src = np.random.default_rng(0).random((3, ann.n_labels)).astype(np.float32)
        plain = em_data(ann, per_label=True)
        shard = em_data(ann, per_label=True, devices=4)
        N = shard.task.shape[0] // 4
        placed = np.zeros((3, 4 * N), np.float32)
        task_np = np.asarray(shard.task).reshape(4, N)
        # put each label's value where the sharded layout keeps that label
        order = np.argsort(ann.task // (-(-ann.n_tasks // 4)), kind="stable")
        counts = np.bincount(ann.task // (-(-ann.n_tasks // 4)), minlength=4)
        pos = np.concatenate([d * N + np.arange(c) for d, c in enumerate(counts)])
        placed[:, pos] = src[:, order]
        a = np.asarray(plain.by_task_label.sum(jnp.asarray(src)))
        b = np.asarray(jax.jit(lambda s, d: d.by_task_label.sum(s))(jnp.asarray(placed), shard))
        out["per_label"] = float(np.abs(a - b[:, : ann.n_tasks]).max())
    if "families" in parts:
        # the other EM families shard the same way (every registered one: sys.argv[3])
        # (and recommended(): its per-task EM temperatures are sharded with the tasks)
        for cls in [getattr(cb, name) for name in json.loads(sys.argv[3])]:
            ann, _ = cb.datasets.load("rte")
            one = cls(max_iter=30, tol=0).fit(ann)
            four = cls(max_iter=30, tol=0, devices=4).fit(ann)
            out[cls.__name__] = {
                "same_labels": bool((one.predict() == four.predict()).all()),
                "conf": float(np.abs(one.confusion_ - four.confusion_).max()),
                "accuracy": float(
                    np.abs(one.annotator_quality()["accuracy"] - four.annotator_quality()["accuracy"]).max()
                ),
            }
    if "newton" in parts:
        # the models with per-item Newton steps (ItemDifficulty: per-task difficulties, sharded
        # with the tasks) and an empirical-Bayes loop (HierarchicalDawidSkene); "dog" has 807
        # tasks, so the fourth device holds a padding task; which datasets: sys.argv[2]
        for cls_name, names in json.loads(sys.argv[2]).items():
            cls = getattr(cb, cls_name)
            iters = 30 if cls is cb.ItemDifficulty else 10
            for name in names:
                ann, _ = cb.datasets.load(name)
                one = cls(max_iter=iters, tol=0).fit(ann)
                four = cls(max_iter=iters, tol=0, devices=4).fit(ann)
                q1, q4 = one.annotator_quality(), four.annotator_quality()
                cols = ["accuracy", "accuracy_lower", "accuracy_upper"]
                r = {
                    "same_labels": bool((one.predict() == four.predict()).all()),
                    "conf": float(np.abs(one.confusion_ - four.confusion_).max()),
                    "prior": float(np.abs(one.class_prior_ - four.class_prior_).max()),
                    "proba": float(np.abs(one.proba_ - four.proba_).max()),
                    "accuracy": float(np.abs(q1[cols].to_numpy() - q4[cols].to_numpy()).max()),
                    "loglik": float(np.abs(one.log_likelihood() - four.log_likelihood()).max()),
                    "loglik_len": int(four.log_likelihood().shape[0]),
                    "n_tasks": one.annotations_.n_tasks,
                    # a sharded fit pickles: it keeps no layout over the devices (one did)
                    "pickles": bool(pickle.loads(pickle.dumps(four)).predict().equals(four.predict())),
                }
                if cls is cb.ItemDifficulty:
                    d1, d4 = one.difficulty_, four.difficulty_
                    r["difficulty"] = float(np.abs(d1.to_numpy() - d4.to_numpy()).max())
                    r["same_tasks"] = bool(d1.index.equals(d4.index))
                else:
                    r["scale"] = abs(one.population_scale_ - four.population_scale_)
                out[f"{cls.__name__}/{name}"] = r
    print(json.dumps(out))
    """
)

# dog: 807 tasks (a padding task on the fourth device), 4 classes; one dataset keeps it quick.
# (wsd, a fifth of the labels, was tried to cut the time, 2026-12-02: HierarchicalDawidSkene's
# confusions came 0.08 apart on one and four devices, the class prior 3e-5, the tasks'
# log-likelihood 0.22, at max_iter=10, the scale the same to 1.5e-8; twice, so not noise:
# three padding tasks on the fourth device against dog's one? reported, not yet explained;
# ItemDifficulty agreed to 1e-7 there. The Newton part took 49 s on wsd, 3-5x less than dog)
NEWTON_DATASETS = {"ItemDifficulty": ["dog"], "HierarchicalDawidSkene": ["dog"]}


def other_families() -> list[str]:
    """The "families" part: every registered estimator that takes ``devices=`` and fits
    labels alone, but Dawid-Skene and the Newton-step models (their own parts), so that a
    new model is compared by being registered (OneCoinDawidSkene,
    ClassConditionalDawidSkene, MACE and CalibratedDawidSkene when this was written)."""
    from crowdbayes.registry import MODELS

    own = {"DawidSkene", *NEWTON_DATASETS}
    return [
        spec.estimator
        for spec in MODELS.values()
        if "devices" in spec.estimator_class()._get_param_names()
        and not (spec.needs_gold or spec.needs_pred_probs or spec.estimator in own)
    ]


def run_on_four_devices(*parts: str) -> dict:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            ",".join(parts),
            json.dumps(NEWTON_DATASETS),
            json.dumps(other_families()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_four_host_devices_match_one_device():
    """One subprocess for the three comparisons: Dawid-Skene, the other EM families, the
    Newton-step models (they were three tests, each starting an interpreter that imported
    jax, numpyro and crowdbayes and loaded the datasets again)."""
    out = run_on_four_devices("dawid_skene", "families", "newton")
    check_dawid_skene(out)
    check_other_families(out)
    check_newton_steps({k: v for k, v in out.items() if "/" in k})


def check_dawid_skene(out: dict) -> None:
    for name in ("rte", "dog", "wsd"):
        r = out[name]
        assert r["same_labels"] and r["conv_labels"], (name, r)
        assert r["conf"] < 1e-5 and r["prior"] < 1e-5 and r["proba"] < 1e-4, (name, r)
        assert r["n_iter"][0] == r["n_iter"][1], (name, r)
        assert r["loglik_len"] == r["n_tasks"]
    assert out["per_label"] < 1e-4
    r = out["bluebirds_half"]
    assert r["same_labels"] and r["conf"] < 1e-5, r


def check_other_families(out: dict) -> None:
    names = other_families()
    assert {
        "OneCoinDawidSkene",
        "ClassConditionalDawidSkene",
        "MACE",
        "CalibratedDawidSkene",
    } <= set(names)
    for name in names:
        r = out[name]
        assert r["same_labels"] and r["conf"] < 1e-5 and r["accuracy"] < 1e-5, (name, r)


def check_newton_steps(out: dict) -> None:
    for key, r in out.items():
        assert r["same_labels"] and r["loglik_len"] == r["n_tasks"], (key, r)
        assert r["conf"] < 1e-5 and r["prior"] < 1e-5 and r["accuracy"] < 1e-5, (key, r)
        assert r["proba"] < 1e-4 and r["loglik"] < 1e-4, (key, r)
        assert r["pickles"], key
    for name in NEWTON_DATASETS["ItemDifficulty"]:
        r = out[f"ItemDifficulty/{name}"]
        assert r["same_tasks"] and r["difficulty"] < 1e-5, (name, r)
    for name in NEWTON_DATASETS["HierarchicalDawidSkene"]:
        r = out[f"HierarchicalDawidSkene/{name}"]
        assert r["scale"] < 1e-6, (name, r)  # the same empirical-Bayes sigma
    assert len(out) == sum(map(len, NEWTON_DATASETS.values()))


def test_one_device_in_process_and_bad_counts():
    ann, _gold = cb.datasets.load("bluebirds")
    one = cb.DawidSkene().fit(ann)
    sharded = cb.DawidSkene(devices=1).fit(ann)
    np.testing.assert_allclose(sharded.confusion_, one.confusion_, atol=1e-5)
    assert (sharded.predict() == one.predict()).all()
    one = cb.ItemDifficulty(max_iter=20).fit(ann)
    sharded = cb.ItemDifficulty(max_iter=20, devices=1).fit(ann)
    # a sharded fit keeps no one-device label layouts (per-annotator Segments included);
    # the intervals rebuild them on first use and agree with the one-device fit's
    assert sharded.data_ is None and sharded.hyper_ is None
    cols = ["accuracy", "accuracy_lower", "accuracy_upper"]
    np.testing.assert_allclose(
        sharded.annotator_quality()[cols], one.annotator_quality()[cols], atol=1e-5
    )
    assert isinstance(sharded.hyper_.by_worker, Segments)
    np.testing.assert_allclose(sharded.confusion_, one.confusion_, atol=1e-5)
    np.testing.assert_allclose(sharded.difficulty_, one.difficulty_, atol=1e-5)
    assert sharded.difficulty_.index.equals(one.difficulty_.index)
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count"):
        resolve_devices(10_000)
    with pytest.raises(ValueError, match="empty"):
        resolve_devices([])
