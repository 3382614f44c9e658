"""Multi-process EM (crowdbayes.distributed) against the one-process fit, on a Parquet
dataset split into hive partitions that do not follow the tasks: the same labels, the
same confusion matrices (1e-5), every task exactly once across the parts; a killed
process gives a clear error, no hang, no process left behind and the port free."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import crowdbayes as cb
from crowdbayes import cli, distributed
from crowdbayes.cli import main
from crowdbayes.parquet import owner, read_share, stable_hash


@pytest.fixture(scope="module")
def crowd() -> pd.DataFrame:
    """wsd (3 classes, 34 annotators) with string task ids, shuffled."""
    df = cb.datasets.load("wsd")[0].copy()
    df["task"] = "item-" + df["task"].astype(str)
    return df.sample(frac=1.0, random_state=1).reset_index(drop=True)


@pytest.fixture(scope="module")
def dataset(crowd: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three hive partitions (``shard=0..2``, by row, not by task), two files each."""
    root = tmp_path_factory.mktemp("labels")
    for shard, rows in enumerate(np.array_split(np.arange(len(crowd)), 3)):
        folder = root / f"shard={shard}"
        folder.mkdir()
        for j, half in enumerate(np.array_split(rows, 2)):
            part = crowd.iloc[half]
            pq.write_table(
                pa.Table.from_pandas(part, preserve_index=False), folder / f"{j}.parquet"
            )
    return root


@pytest.fixture(scope="module")
def one(crowd: pd.DataFrame) -> cb.DawidSkene:
    return cb.DawidSkene().fit(crowd)


def _parts(out: Path) -> pd.DataFrame:
    return pd.concat(
        [pd.read_parquet(p) for p in sorted(out.glob("part-*.parquet"))], ignore_index=True
    )


@pytest.fixture(scope="module")
def two(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``crowdbayes aggregate DIR --model ds --processes 2 --out OUT``."""
    out = tmp_path_factory.mktemp("two") / "out"
    assert main(["aggregate", str(dataset), "--model", "ds", "--processes", "2",
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    return out


def test_two_processes_equal_one(two: Path, one: cb.DawidSkene, crowd: pd.DataFrame) -> None:
    parts = _parts(two)
    assert len(list(two.glob("part-*.parquet"))) == 2
    # every input task exactly once across the parts, in the user's ids
    assert parts["task"].is_unique
    assert set(parts["task"]) == set(crowd["task"])
    # each part holds the tasks its process owns by the stable hash
    for pid in range(2):
        mine = pd.read_parquet(two / f"part-{pid:05d}.parquet")["task"]
        assert (owner(pa.array(mine), 2) == pid).all()
        assert 0 < len(mine) < len(parts)
    pred = one.predict().loc[parts["task"]]
    assert (parts["label"].to_numpy() == pred.to_numpy()).all()
    proba = one.predict_proba().loc[parts["task"]].to_numpy()
    chosen = proba[np.arange(len(parts)), [list(one.annotations_.classes).index(v)
                                           for v in parts["label"]]]  # fmt: skip
    np.testing.assert_allclose(parts["probability"].to_numpy(), chosen, atol=1e-5)
    # the confusion matrices, by annotator id
    ann = pd.read_parquet(two / "annotators.parquet")
    K = one.confusion_.shape[1]
    conf = ann[[f"confusion_{k}_{j}" for k in range(K) for j in range(K)]].to_numpy()
    ids = list(one.annotations_.worker_ids)
    order = [ids.index(w) for w in ann["worker"]]
    assert sorted(order) == list(range(len(ids)))
    np.testing.assert_allclose(conf.reshape(-1, K, K), one.confusion_[order], atol=1e-5)
    saved = np.load(two / "params.npz")
    np.testing.assert_allclose(saved["class_prior"], one.class_prior_, atol=1e-5)
    assert int(saved["n_iter"]) == one.n_iter_ and bool(saved["converged"])
    assert bool(saved["shuffled"])  # each process read its row groups, then all-to-all


def test_one_and_two_processes_write_the_same_mapping(two: Path, dataset: Path) -> None:
    out = two.parent / "one"
    code = main(["aggregate", str(dataset), "--model", "ds", "--processes", "1",
                 "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    a = _parts(two).set_index("task")["label"].sort_index()
    b = _parts(out).set_index("task")["label"].sort_index()
    assert len(list(out.glob("part-*.parquet"))) == 1
    pd.testing.assert_series_equal(a, b)


def test_two_processes_reading_everything(two: Path, dataset: Path) -> None:
    """shuffle=False (every process reads every row group, keeps its tasks' rows) writes
    the shuffle's parts: the same tasks in each part, the same labels."""
    out = two.parent / "everything"
    distributed.launch(2, dataset, out, "ds", shuffle=False, timeout=120)
    assert not bool(np.load(out / "params.npz")["shuffled"])
    for pid in range(2):
        a = pd.read_parquet(two / f"part-{pid:05d}.parquet").set_index("task").sort_index()
        b = pd.read_parquet(out / f"part-{pid:05d}.parquet").set_index("task").sort_index()
        pd.testing.assert_series_equal(a["label"], b["label"])
        np.testing.assert_allclose(a["probability"], b["probability"], atol=1e-5)


def test_in_process_models_equal_their_estimators(crowd: pd.DataFrame) -> None:
    """One process through the same code: recommended() (tempered EM, its vote
    correlation from the merged distinct vote rows) equals its estimator."""
    from crowdbayes.registry import MODELS

    table = pa.Table.from_pandas(crowd, preserve_index=False)
    for name in ("recommended",):
        res = distributed.fit(table, name)
        est = MODELS[name].build().fit(crowd)
        ids = res.tasks.to_pylist()
        np.testing.assert_allclose(res.proba, est.predict_proba().loc[ids].to_numpy(), atol=1e-5)
        workers = list(est.annotations_.worker_ids)
        order = [workers.index(w) for w in res.workers.to_pylist()]
        np.testing.assert_allclose(res.confusion, est.confusion_[order], atol=1e-5)
        assert res.n_iter == est.n_iter_


def test_an_engine_object_sets_the_multi_process_fit(crowd: pd.DataFrame) -> None:
    """``inference=EM(max_iter=3)`` is the iteration limit here too, as in the estimator;
    a NUTS engine is refused as ``method="nuts"`` is."""
    table = pa.Table.from_pandas(crowd, preserve_index=False)
    res = distributed.fit(table, cb.DawidSkene(inference=cb.EM(max_iter=3, tol=0.0)))
    est = cb.DawidSkene(max_iter=3, tol=0.0).fit(crowd)
    assert res.n_iter == est.n_iter_ == 3
    np.testing.assert_allclose(
        res.proba, est.predict_proba().loc[res.tasks.to_pylist()].to_numpy(), atol=1e-5
    )
    with pytest.raises(ValueError, match="runs EM only"):
        distributed.fit(table, cb.DawidSkene(inference=cb.NUTS()))
    # flat NUTS settings, which EM ignores, are deprecated here as in a one-process fit
    with pytest.warns(FutureWarning, match="deprecated"):
        distributed.fit(table, cb.DawidSkene(max_iter=3, num_chains=2))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_killed_process_is_a_clear_error(dataset: Path, tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    def kill_second(pids: list[int], port: int) -> None:
        seen.update(pids=pids, port=port)
        threading.Timer(1.0, os.kill, (pids[1], signal.SIGKILL)).start()

    start = time.monotonic()
    with pytest.raises(
        distributed.DistributedError, match=r"process 1 of 2 was killed by signal SIGKILL"
    ):
        distributed.launch(2, dataset, tmp_path / "out", "ds", on_start=kill_second, timeout=120)
    assert time.monotonic() - start < 60  # the survivor was stopped, not waited for
    pids = seen["pids"]
    assert isinstance(pids, list) and not any(_alive(p) for p in pids)
    with socket.socket() as s:  # the coordinator's port is free again
        s.bind(("127.0.0.1", int(seen["port"])))  # type: ignore[call-overload]
    assert not list((tmp_path / "out").glob("part-*.parquet"))


_PEER = """
import sys
import crowdbayes as cb
from crowdbayes import distributed
pid, port, data = int(sys.argv[1]), sys.argv[2], sys.argv[3]
distributed._initialize(f"127.0.0.1:{port}", 2, pid, 60, 4)
print("ready", flush=True)
try:
    cb.distributed.fit(data, "ds", max_iter=10**6, tol=0.0)
except distributed.DistributedError as err:
    print("DistributedError:", err, flush=True)
"""


def _two_peers(code: str, dataset: Path, **popen: Any) -> list[Any]:
    """Processes 0 and 1 running ``code`` (argv: process id, coordinator port, dataset)."""
    import subprocess
    import sys

    port = distributed.free_port()
    return [
        subprocess.Popen(
            [sys.executable, "-c", code, str(i), str(port), str(dataset)],
            stdout=subprocess.PIPE,
            text=True,
            **popen,
        )
        for i in range(2)
    ]


def test_a_peer_killed_during_em_is_an_error_in_the_survivor(dataset: Path) -> None:
    """Without the launcher (as under SLURM): a peer SIGKILLed inside the EM loop makes
    the survivor's collective fail at once; fit raises DistributedError, and the process
    ends (JAX's coordination service aborts it at exit) instead of hanging."""
    import subprocess

    procs = _two_peers(_PEER, dataset, stderr=subprocess.STDOUT)
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        time.sleep(2.0)  # compiled and inside the 10**6 iterations
        procs[1].kill()
        start = time.monotonic()
        out, _ = procs[0].communicate(timeout=90)
        assert time.monotonic() - start < 60
        assert "DistributedError: process 0 of 2: a collective failed" in out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()


_CACHED = """
import json, sys
import jax
events = []
jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
import crowdbayes as cb
pid, port, data = int(sys.argv[1]), sys.argv[2], sys.argv[3]
res = cb.distributed.fit(
    data, "ds", coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid
)
ours = lambda what: sum(e == f"/crowdbayes/program_cache/{what}" for e in events)
print(json.dumps({"hits": ours("hits"), "misses": ours("misses"),
                  "tasks": res.tasks.to_pylist(), "proba": res.proba.tolist()}))
"""


def _fit_in_two_fresh_processes(dataset: Path, cache: Path) -> list[dict]:
    import json
    import subprocess

    env = {**os.environ, "CROWDBAYES_CACHE_DIR": str(cache)}
    for name in ("CROWDBAYES_NO_CACHE", "JAX_COMPILATION_CACHE_DIR"):
        env.pop(name, None)
    procs = _two_peers(_CACHED, dataset, stderr=subprocess.PIPE, env=env)
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    return results


def test_a_second_fresh_multi_process_fit_compiles_no_em_loop(
    dataset: Path, one: cb.DawidSkene, tmp_path: Path
) -> None:
    """With crowdbayes' cache, each process saves its own EM loop (JAX's cache serves
    only process 0: it writes from process 0 alone, and on CPUs its keys differ by
    process), and a second run's processes read theirs back and trace nothing."""
    first = _fit_in_two_fresh_processes(dataset, tmp_path)
    assert [(r["hits"], r["misses"]) for r in first] == [(0, 1), (0, 1)]
    assert len(list(tmp_path.rglob("crowdbayes-programs/*.pkl"))) == 2  # one per process
    second = _fit_in_two_fresh_processes(dataset, tmp_path)
    assert [(r["hits"], r["misses"]) for r in second] == [(1, 0), (1, 0)]
    for a, b in zip(first, second, strict=True):
        assert a["tasks"] == b["tasks"]
        np.testing.assert_allclose(b["proba"], a["proba"], atol=1e-6)
        ref = one.predict_proba().loc[b["tasks"]].to_numpy()
        np.testing.assert_allclose(b["proba"], ref, atol=1e-5)


def test_a_missing_column_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checked before a process waits for its peers (no launch needed to see it)."""
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"task": ["a", "b"], "worker": ["x", "y"], "lab": [0, 1]}), bad)
    with pytest.raises(
        cb.AnnotationsError, match=r"no column 'label' \(columns: task, worker, lab\)"
    ):
        distributed.fit(bad, num_processes=2, coordinator_address="127.0.0.1:1", process_id=0)
    argv = [
        "aggregate",
        str(bad),
        "--model",
        "ds",
        "--processes",
        "1",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == cli.EXIT_BAD_INPUT
    assert "error: the Parquet data has no column 'label'" in capsys.readouterr().err


def test_stable_hash_is_fixed() -> None:
    """The task -> process assignment never changes between runs, processes or versions:
    FNV-1a 64 of the UTF-8 bytes, SplitMix64 of integers."""
    h = stable_hash(pa.array(["", "a", "item-1"]))
    assert h[0] == 0xCBF29CE484222325 and h[1] == 0xAF63DC4C8601EC8C
    assert h[2] == stable_hash(pa.array(["item-1"], pa.large_string()))[0]
    assert h[2] == stable_hash(pa.array(["item-1"]).dictionary_encode())[0]
    ints = stable_hash(pa.array([1, 2, 1], pa.int32()))
    assert ints[0] == ints[2] == stable_hash(pa.array([1], pa.int64()))[0] != ints[1]
    assert np.bincount(owner(pa.array([f"t{i}" for i in range(4000)]), 4)).min() > 900


@pytest.mark.parametrize("max_width", [3, 40])
def test_lean_layout_is_segments_layout(max_width: int) -> None:
    """distributed.lean_layout builds the arrays of Segments._layout (chunked or not)."""
    from crowdbayes.inference.segments import Segments, _chunks, choose_widths

    rng = np.random.default_rng(0)
    group = np.sort(rng.integers(0, 50, 400)).astype(np.int32)
    group[group == 7] = 8  # an empty group
    values = rng.integers(0, 30, 400).astype(np.int32)
    widths = choose_widths(_chunks(np.bincount(group, minlength=60), max_width)[2])
    sizes = _chunks(np.bincount(group, minlength=60), max_width)[2]
    rows = np.bincount(np.searchsorted(widths, sizes), minlength=widths.size) + 2  # padded
    ref = Segments._layout(group, 60, values, 30, max_width, widths, rows)
    blocks, keys, inverse = distributed.lean_layout(group, values, 60, 30, max_width, widths, rows)
    assert len(blocks) == len(ref.blocks)
    for a, b, ka, kb in zip(blocks, ref.blocks, keys, ref.row_keys, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ka, kb)
    if ref.inner is None:
        assert inverse is not None
        np.testing.assert_array_equal(inverse, ref.inverse)
    else:
        assert inverse is None and max_width == 3


def test_read_share_partitions_the_rows(dataset: Path, crowd: pd.DataFrame) -> None:
    shares = [read_share(dataset, i, 3) for i in range(3)]
    assert sum(t.num_rows for t in shares) == len(crowd)
    tasks = [set(t.column("task").to_pylist()) for t in shares]
    assert not (tasks[0] & tasks[1]) and not (tasks[1] & tasks[2])
    with pytest.raises(cb.AnnotationsError, match="column 'worker' has 1 missing"):
        read_share(pa.table({"task": ["a"], "worker": pa.array([None], pa.string()), "label": [1]}))


def test_cli_checks_for_processes(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.DISTRIBUTED_MODELS == distributed.MODELS
    cases = [
        (["--model", "hierarchical"], "--processes fits one model"),
        (["--model", "ds", "--processes", "0"], "--processes must be at least 1"),
        (["--model", "ds"], "needs --out FOLDER"),
    ]
    for extra, message in cases:
        argv = ["aggregate", str(dataset), *extra]
        if "--processes" not in extra:
            argv += ["--processes", "2"]
        assert main(argv) == cli.EXIT_BAD_INPUT
        assert message in capsys.readouterr().err
