"""A fresh process: what ``import crowdbayes`` loads, the CLI's early errors, the
persistent compilation cache. Each check runs in a subprocess (a fresh interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("jax", "numpyro", "arviz", "plotly", "scipy", "matplotlib", "sklearn")


def run_python(
    code: str, env: dict[str, str | None] | None = None, **kw
) -> subprocess.CompletedProcess:
    """``python -c code`` in a fresh interpreter; ``env`` adds variables (None removes)."""
    full = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in full.items() if v is not None},
        timeout=300,
        **kw,
    )


def loaded_after(code: str, env: dict[str, str | None] | None = None) -> list[str]:
    """The heavy modules in sys.modules after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = run_python(probe, env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_crowdbayes_loads_no_heavy_dependency():
    assert loaded_after("import crowdbayes") == []


def test_names_load_on_first_use():
    assert loaded_after("import crowdbayes as cb; cb.MajorityVote; cb.datasets.load('rte')") == []
    assert "jax" in loaded_after("import crowdbayes as cb; cb.DawidSkene")
    assert "scipy" in loaded_after("from crowdbayes import recommended")
    code = "import crowdbayes as cb; print(sorted(set(cb.__all__) - set(dir(cb))))"
    assert run_python(code).stdout.strip() == "[]"
    out = run_python("import crowdbayes as cb; cb.no_such_name")
    assert "has no attribute 'no_such_name'" in out.stderr


# ------------------------------------------------------------------- command line
def test_cli_reports_a_missing_file_without_loading_pandas_or_jax(tmp_path):
    code = (
        "import sys\nfrom crowdbayes.cli import main\n"
        'sys.stdout.write(f\'exit {main(["aggregate", "missing.csv"])}\\n\')'
    )
    loaded = loaded_after(code)
    assert loaded == []
    out = run_python(code, cwd=tmp_path)
    assert "exit 2" in out.stdout
    assert out.stderr.strip() == "crowdbayes: error: file 'missing.csv' does not exist"
    report = (
        "import sys\nfrom crowdbayes.cli import main\nmain(['report', 'x.csv', '--out', 'r.html'])"
    )
    assert loaded_after(report) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["aggregate"], "no input: give a file"),
        (["aggregate", "{csv}", "--dataset", "rte"], "either INPUT or --dataset"),
        (["aggregate", "{csv}", "--gold", "{tmp}/nogold.csv"], "nogold.csv' does not exist"),
        (["aggregate", "{tmp}"], "is a directory, not a file"),
        (["aggregate", "{csv}", "--out", "{tmp}/no/such/out.csv"], "/no/such' does not exist"),
        (["aggregate", "{csv}", "--max-iter", "0"], "--max-iter must be at least 1, got 0"),
        (["report", "{tmp}/none.csv", "--out", "{tmp}/r.html"], "none.csv' does not exist"),
        (["report", "--dataset", "rte", "--gold-fraction", "0", "--out", "{tmp}/r.html"], "(0, 1]"),
    ],
)
def test_cli_checks_arguments_before_reading(tmp_path, capsys, argv, message):
    from crowdbayes.cli import main

    csv = tmp_path / "in.csv"
    csv.write_text("task,worker,label\n1,a,x\n1,b,y\n")
    argv = [a.format(csv=csv, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("crowdbayes: error: ") and message in err and "\n" not in err


# ------------------------------------------------------------ persistent compilation cache
FIT = """
import json, jax
events = []
jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
import crowdbayes as cb
labels, _ = cb.datasets.load("bluebirds")
cb.DawidSkene(max_iter=5).fit(labels)
count = lambda what: sum(e == f"/jax/compilation_cache/{what}" for e in events)
ours = lambda what: sum(e == f"/crowdbayes/program_cache/{what}" for e in events)
# the EM loop is kept whole by crowdbayes (its programs: no tracing on a hit), the other
# programs by JAX's cache; a program crowdbayes compiles is a miss of JAX's cache too
print(json.dumps({"dir": jax.config.jax_compilation_cache_dir,
                  "misses": count("cache_misses"), "hits": count("cache_hits") + ours("hits"),
                  "program_hits": ours("hits"), "program_misses": ours("misses")}))
"""


def fit_in_fresh_process(env: dict[str, str | None], code: str = FIT) -> dict:
    out = run_python(code, {"CROWDBAYES_NO_CACHE": None, **env})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["dir"] and result["dir"].startswith(env.get("CROWDBAYES_CACHE_DIR") or "\0"):
        assert "cpu_aot_loader" not in out.stderr  # XLA's loader complaint is silenced
    return result


def cached_programs(path: Path) -> list[Path]:
    return sorted(path.rglob("*-cache"))


def test_cache_in_crowdbayes_cache_dir_second_process_compiles_nothing(tmp_path):
    env = {"CROWDBAYES_CACHE_DIR": str(tmp_path)}
    first = fit_in_fresh_process(env)
    assert Path(first["dir"]).parent == tmp_path  # <dir>/<host CPU tag>
    assert first["misses"] > 0 and cached_programs(tmp_path)
    second = fit_in_fresh_process(env)
    assert second["misses"] == 0 and second["hits"] == first["misses"]
    # the EM loop compiled by the first process is read back whole by the second
    assert first["program_misses"] == 1 and first["program_hits"] == 0
    assert second["program_hits"] == 1 and second["program_misses"] == 0


def test_second_process_with_another_dataset_of_the_bucket_compiles_nothing(tmp_path):
    # shape buckets: 4,112 of bluebirds' 4,212 labels pad to the same sizes (8,192 labels
    # and tasks, 64 annotators), so the first process's programs serve the second
    env = {"CROWDBAYES_CACHE_DIR": str(tmp_path)}
    first = fit_in_fresh_process(env)
    fewer = FIT.replace("fit(labels)", "fit(labels.iloc[:-100])")
    assert fewer != FIT
    second = fit_in_fresh_process(env, fewer)
    assert first["misses"] > 0 and second["misses"] == 0 and second["program_hits"] == 1


def test_a_broken_program_entry_is_dropped_and_compiled_again(tmp_path):
    env = {"CROWDBAYES_CACHE_DIR": str(tmp_path)}
    fit_in_fresh_process(env)
    (saved,) = tmp_path.rglob("crowdbayes-programs/*.pkl")
    saved.write_bytes(b"half an entry")
    second = fit_in_fresh_process(env)
    assert second["program_misses"] == 1 and second["misses"] == 0
    # an EM loop JAX read from its own cache serialises without its code: not saved (it
    # would fail when run by a later process), so later processes read it from JAX's
    assert not saved.exists()
    third = fit_in_fresh_process(env)
    assert third["program_misses"] == 1 and third["misses"] == 0 and not saved.exists()


def test_a_program_jax_kept_in_memory_is_not_saved(tmp_path):
    # the same program under a second key (crowdbayes' source edited while a process
    # runs): JAX hands back the executable it holds in memory, which was read from its
    # cache and serialises without its code, so it is not saved
    env = {"CROWDBAYES_CACHE_DIR": str(tmp_path)}
    fit_in_fresh_process(env)  # fills JAX's cache
    for entry in tmp_path.rglob("crowdbayes-programs/*.pkl"):
        entry.unlink()
    twice = FIT.replace(
        "cb.DawidSkene(max_iter=5).fit(labels)",
        "cb.DawidSkene(max_iter=5).fit(labels)\n"
        "from crowdbayes import _compile_cache\n"
        "from crowdbayes.inference import em\n"
        "_compile_cache.code_tag = lambda module: 'edited'\n"
        "em._programs.clear()\n"
        "cb.DawidSkene(max_iter=5).fit(labels)",
    )
    assert twice != FIT
    result = fit_in_fresh_process(env, twice)
    assert result["program_misses"] == 2 and not list(tmp_path.rglob("crowdbayes-programs/*.pkl"))


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="XDG_CACHE_HOME is Linux's")
def test_cache_defaults_to_xdg_cache_home_and_turns_off(tmp_path):
    home = fit_in_fresh_process({"XDG_CACHE_HOME": str(tmp_path), "CROWDBAYES_CACHE_DIR": None})
    assert Path(home["dir"]).parent == tmp_path / "crowdbayes" / "jax"
    off = tmp_path / "off"
    result = fit_in_fresh_process({"CROWDBAYES_CACHE_DIR": str(off), "CROWDBAYES_NO_CACHE": "1"})
    assert result["dir"] is None and result["hits"] == 0 and not off.exists()


def test_cache_the_user_configured_is_left_alone(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    env = {"CROWDBAYES_CACHE_DIR": str(ours), "JAX_COMPILATION_CACHE_DIR": str(theirs)}
    assert fit_in_fresh_process(env)["dir"] == str(theirs)
    by_config = FIT.replace(
        "import crowdbayes",
        f"jax.config.update('jax_compilation_cache_dir', {str(theirs)!r})\nimport crowdbayes",
    )
    env = {"CROWDBAYES_CACHE_DIR": str(ours), "JAX_COMPILATION_CACHE_DIR": None}
    assert fit_in_fresh_process(env, by_config)["dir"] == str(theirs)
    assert not ours.exists()
