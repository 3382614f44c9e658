"""The HTML report: content, self-containment, the command, and rendering in headless Chromium."""

from __future__ import annotations

import argparse
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import crowdbayes as cb
from crowdbayes import plots, simulate
from crowdbayes.registry import MODELS
from crowdbayes.report import (
    DEFAULT_MODEL,
    add_report_command,
    build_report,
    default_model,
    run_report,
)

EXPORT = Path(__file__).parent / "data" / "platform_export.tsv"
#: a 1x1 PNG, for the thumbnail check
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8ff1f0000050001ff5d3f9b0a0000000049454e44ae426082"
)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _browser(args: list[str], page: Path) -> subprocess.CompletedProcess[str]:
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",  # console messages, as CONSOLE lines
            "--v=0",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline but localhost
            "--virtual-time-budget=10000",
            *args,
            page.resolve().as_uri(),
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _status(
    page: Path, shot: Path | None = None, size: tuple[int, int] = (1280, 3000)
) -> tuple[dict[str, str], str]:
    """The page's own record of its health (``#cb-status``) after load, and the DOM; with
    ``shot``, a screenshot of the same run (kept in ``$CROWDBAYES_REPORT_SCREENSHOTS``, a
    folder, when set)."""
    args = ["--dump-dom", "--hide-scrollbars", f"--window-size={size[0]},{size[1]}"]
    if shot is not None:
        args.append(f"--screenshot={shot}")
    dom = _browser(args, page)
    status = re.search(r'<span id="cb-status"([^>]*)>', dom.stdout)
    assert status is not None, dom.stderr[-2000:]
    attrs = dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', status.group(1)))
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console  # nothing logged to the console
    assert attrs["data-errors"] == "0", attrs.get("data-error-text")
    if shot is not None:
        assert shot.exists() and shot.stat().st_size > 50_000  # a real page, not a blank one
        keep = os.environ.get("CROWDBAYES_REPORT_SCREENSHOTS")
        if keep:
            shutil.copy(shot, Path(keep) / shot.name)
    return attrs, dom.stdout


def _report(tmp_path: Path) -> Path:
    out = tmp_path / "report.html"
    labels, truth = cb.datasets.load("bluebirds")
    gold = truth.iloc[::10]
    build_report(labels, out, gold=gold, held_out=truth.drop(gold.index), title="bluebirds")
    return out


def _rows(page: str, table_id: str) -> list[str]:
    """The first cell's text of every body row of the table ``table_id``."""
    table = page[page.index(f'<table id="{table_id}"') :]
    body = table[table.index("<tbody>") : table.index("</tbody>")]
    return [html.unescape(c) for c in re.findall(r"<tr[^>]*><td>(.*?)</td>", body)]


def test_report_content_is_self_contained(tmp_path: Path) -> None:
    page = _report(tmp_path).read_text(encoding="utf-8")
    assert "<script src=" not in page and "<link " not in page  # no CDN, nothing fetched
    assert page.count("Plotly.newPlot(") == 3
    assert page.count("/**\n* plotly.js v") == 1  # plotly.js inlined exactly once
    assert 'data-plots="3"' in page
    for text in ("Summary", "Krippendorff", "Fleiss", "Annotators", "Suspicious tasks", "held-out"):
        assert text in page
    n_flagged = int(re.search(r"Suspicious tasks \((\d+) of", page).group(1))  # type: ignore[union-attr]
    assert 0 < n_flagged <= 0.11 * 108
    assert len(_rows(page, "cb-annotators")) == 39 and len(_rows(page, "cb-tasks")) == n_flagged
    assert "CalibratedDawidSkene (--model recommended (the default))" in page  # the registry's
    attrs, _ = _status(tmp_path / "report.html", tmp_path / "report_bluebirds.png")
    assert attrs["data-drawn"] == attrs["data-plots"] == "3"
    assert attrs["data-wide"] == "0", attrs["data-wide-text"]


def test_annotators_worst_first_with_interval_labels_and_gold_accuracy(tmp_path: Path) -> None:
    labels, truth = cb.datasets.load("bluebirds")
    gold = truth.iloc[::10]
    model = MODELS[DEFAULT_MODEL].build().fit(labels, gold=gold)
    page = build_report(model)
    q = model.annotator_quality()  # 90%, the API's level
    expected = q["accuracy"].sort_values(kind="stable").index
    assert _rows(page, "cb-annotators")[:5] == [str(w) for w in expected[:5]]
    head = page[page.index('<table id="cb-annotators"') :]
    head = head[: head.index("</thead>")]
    for col in ("quality", "90% low", "90% high", "labels", "gold tasks", "gold accuracy"):
        assert f">{col}</th>" in head
    worst = expected[0]
    row = re.search(rf'<tr class="pick" data-i="\d+" data-id="{worst}">(.*?)</tr>', page)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))  # type: ignore[union-attr]
    assert float(cells[2]) == pytest.approx(q.loc[worst, "accuracy_lower"], abs=1e-3)
    assert float(cells[3]) == pytest.approx(q.loc[worst, "accuracy_upper"], abs=1e-3)
    assert int(cells[4]) == int(q.loc[worst, "n_labels"])
    acc = cb.metrics.annotator_accuracy(model)
    if np.isfinite(acc.loc[worst, "accuracy"]):
        assert float(cells[6]) == pytest.approx(acc.loc[worst, "accuracy"], abs=1e-3)


@cache
def _crowdlab_data() -> tuple[pd.DataFrame, pd.DataFrame]:
    labels, truth = cb.datasets.load("wsd")
    rng = np.random.default_rng(0)
    classes = np.sort(labels["label"].unique())
    tasks = labels["task"].unique()
    t = truth.reindex(tasks).to_numpy()
    guess = np.where(rng.random(len(t)) < 0.8, t, rng.choice(classes, len(t)))
    pp = pd.DataFrame(np.where(guess[:, None] == classes, 0.8, 0.1), index=tasks, columns=classes)
    return labels, pp.div(pp.sum(axis=1), axis=0)


@pytest.mark.parametrize("key", ["crowdlab", "bayesian-crowdlab", "mv", "gmv"])
def test_annotator_table_is_worst_first_whatever_the_estimators_order(key: str) -> None:
    labels, pp = _crowdlab_data()
    spec = MODELS[key]
    kwargs: dict[str, object] = {}
    if spec.needs_pred_probs:
        kwargs["pred_probs"] = pp
    if spec.needs_gold:
        kwargs["gold"] = cb.datasets.load("wsd")[1].iloc[::5]
    model = spec.build().fit(labels, **kwargs)
    table = plots.annotator_quality_table(model)
    q = table["quality"].to_numpy()
    known = q[~np.isnan(q)]
    assert len(known) > 0 and np.all(np.diff(known) >= 0)  # lowest first
    assert not np.isnan(q[: len(known)]).any()  # no estimate: last
    assert table.attrs["quality"]
    page = build_report(model)
    assert _rows(page, "cb-annotators")[0] == str(table.index[0])


def test_default_model_comes_from_the_registry() -> None:
    ann = cb.Annotations.from_long(cb.datasets.load("wsd")[0])
    assert DEFAULT_MODEL == next(iter(MODELS)) == "recommended"
    for key, spec in MODELS.items():
        if not spec.needs_gold:
            assert type(default_model(ann, key)).__name__ == spec.estimator
    with pytest.raises(cb.AnnotationsError, match="needs gold"):
        default_model(ann, "gmv")
    with pytest.raises(ValueError, match="model must be one of recommended, mv"):
        default_model(ann, "glad")
    labels, pp = _crowdlab_data()
    page = build_report(labels, model="crowdlab", pred_probs=pp)
    assert "CrowdLab (--model crowdlab)" in page
    with pytest.raises(ValueError, match="needs the classifier's pred_probs"):
        build_report(labels, model="bayesian-crowdlab")


def test_histograms_are_shares_and_the_plot_shows_worst_and_best() -> None:
    labels, truth = cb.datasets.load("bluebirds")
    model = cb.DawidSkene().fit(labels, gold=truth.iloc[::4])
    fig = plots.quality_histograms(model)
    assert {t.histnorm for t in fig.data} == {"probability"}
    assert fig.layout.yaxis.title.text == "share of tasks"
    quality = plots.annotator_quality_table(model)
    fig = plots.annotator_quality_plot(model, n=5, table=quality)
    assert [t.name for t in fig.data] == ["worst", "best"]
    assert list(fig.data[0].y) == [str(w) for w in quality.index[:5]]
    assert list(fig.data[1].y) == [str(w) for w in quality.index[-5:]]
    assert len(plots.annotator_quality_plot(model, n=50).data[0].y) == len(quality)
    conf, what = plots.annotator_confusions(model)
    assert conf.shape == (39, 2, 2) and what == "fitted confusion matrix"
    gmv_conf, what = plots.annotator_confusions(cb.MajorityVote().fit(labels))
    assert np.allclose(gmv_conf.sum(axis=2)[gmv_conf.sum(axis=2) > 0], 1.0)


def test_report_command_on_platform_export_links_inputs(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="crowdbayes")
    add_report_command(parser.add_subparsers(dest="command"))
    out = tmp_path / "export.html"
    args = parser.parse_args(
        ["report", str(EXPORT), "--out", str(out), "--uncertainty-above", "0.3", "--model", "gmv"]
    )
    assert run_report(args) == 0
    page = out.read_text(encoding="utf-8")
    assert "GoldMajorityVote" in page
    # image URL inputs become lazy thumbnails inside their links
    assert '<a class="thumb" href="https://example.org/pets/' in page
    assert '<img loading="lazy" src="https://example.org/pets/' in page
    assert "1 annotator(s) labelled no gold task" in page  # worker w5, the documented rule
    bad = parser.parse_args(["report", str(EXPORT), "--out", str(out), "--label-field", "x"])
    with pytest.raises(cb.AnnotationsError, match="no column 'OUTPUT:x'"):
        run_report(bad)


@cache
def _crowd(n_workers: int) -> tuple[cb.Aggregator, np.ndarray, str]:
    """A simulated batch (20% of the annotators answer at random; three labels per task)
    fitted by the report's default model, the annotators' true accuracy, and the report."""
    sim = simulate.simulate_population(
        "spammers", n_tasks=max(600, 3 * n_workers), n_workers=n_workers, labels_per_task=3
    )
    model = MODELS[DEFAULT_MODEL].build().fit(sim.annotations)
    return model, sim.accuracy, build_report(model, title=f"{n_workers} annotators")


def _crowd_report(tmp_path: Path, n_workers: int) -> tuple[Path, cb.Aggregator, np.ndarray]:
    model, accuracy, page = _crowd(n_workers)
    out = tmp_path / f"report_{n_workers}.html"
    out.write_text(page, encoding="utf-8")
    return out, model, accuracy


#: Drives the page as a user would, after its own check ran: picks an annotator's
#: confusion matrix, sorts the annotator table best first, searches it, records what it
#: showed in ``#cb-test``, then sorts it back (worst first) and clears the search, so
#: that the screenshot of the same run shows the page as it opens.
DRIVER = """<script>
window.addEventListener('load', function () { setTimeout(function () {
  var pick = document.getElementById('cb-pick');
  pick.value = 'PICK'; pick.dispatchEvent(new Event('change'));
  var head = document.querySelectorAll('#cb-annotators th')[1];
  head.click(); head.click();  // quality, then highest first
  var best = document.querySelector('#cb-annotators tbody tr').getAttribute('data-id');
  var search = document.querySelector('input.cb-filter');
  search.value = '4'; search.dispatchEvent(new Event('input'));
  var shown = document.getElementById('cb-annotators-count').textContent;
  head.click();  // lowest first again
  search.value = ''; search.dispatchEvent(new Event('input'));
  var out = document.createElement('div');
  out.id = 'cb-test';
  out.setAttribute('data-title', document.querySelector('#cb-confusion .gtitle').textContent);
  out.setAttribute('data-best', best);
  out.setAttribute('data-shown', shown);
  out.setAttribute('data-first', document.querySelector('#cb-annotators tbody tr').getAttribute('data-id'));
  document.body.appendChild(out);
}, 50); });
</script></body>"""


@pytest.mark.parametrize("n_workers", [50, 2000])
def test_report_at_50_and_2000_annotators_in_headless_chromium(
    tmp_path: Path, n_workers: int
) -> None:
    page, model, true_accuracy = _crowd_report(tmp_path, n_workers)
    text = page.read_text(encoding="utf-8")
    ids = [str(w) for w in model.annotations_.worker_ids]
    driven = text.replace("</body>", DRIVER.replace("PICK", str(ids.index("7"))))
    page.write_text(driven, encoding="utf-8")
    attrs, dom = _status(page, tmp_path / f"report_{n_workers}.png")
    assert attrs["data-drawn"] == attrs["data-plots"] == "3"
    assert attrs["data-wide"] == "0", attrs["data-wide-text"]  # no table wider than the page
    assert int(attrs["data-page-width"]) <= int(attrs["data-viewport"])
    quality = model.annotator_quality()["accuracy"]  # type: ignore[attr-defined]
    worst = str(quality.idxmin())
    assert attrs["data-first-annotator"] == worst == _rows(text, "cb-annotators")[0]
    assert len(_rows(text, "cb-annotators")) == n_workers  # every annotator, in one table
    assert true_accuracy[int(worst)] < 0.5  # the worst shown is one of the random answerers
    # the plot stays readable: the 20 worst and the 20 best, the worst at the top
    assert f"The 20 worst and 20 best of {n_workers:,} annotators" in text
    # no gold here: the rule stated is the one applied, the share alone
    assert "Flagged: the 10% of tasks with the highest score (1 - consistency). Ranked" in text
    # the picker has every annotator, with every confusion matrix inlined (offline)
    assert text.count('<option value="') == n_workers
    data = re.search(r'<script type="application/json" id="cb-confusion-data">(.*?)</script>', text)
    confusion = json.loads(data.group(1))  # type: ignore[union-attr]
    assert confusion["ids"] == ids and np.asarray(confusion["z"]).shape == (n_workers, 3, 3)
    # what the page showed when driven: the picked matrix, sorting, search
    found = re.search(r'<div id="cb-test"([^>]*)>', dom)
    assert found is not None
    shown = dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', found.group(1)))
    assert shown["data-title"].startswith("Annotator 7: fitted confusion matrix")
    assert shown["data-best"] == str(quality.idxmax())  # sorted best first on demand
    assert shown["data-shown"] == f"{sum('4' in w for w in ids):,} of {n_workers:,} shown"
    assert shown["data-first"] == worst  # and back


@pytest.fixture
def image_server(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server with one image, as an annotation platform's would be."""
    (tmp_path / "cat.png").write_bytes(PNG)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_image_inputs_are_thumbnails_online_and_links_offline(
    tmp_path: Path, image_server: str
) -> None:
    export = pd.read_csv(EXPORT, sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    online = export["INPUT:image"].str.endswith("0010.jpg")
    export.loc[online, "INPUT:image"] = f"{image_server}/cat.png"
    path = tmp_path / "export.tsv"
    export.to_csv(path, sep="\t", index=False)
    page = tmp_path / "images.html"
    build_report(path, page, uncertainty_above=0.0)  # every task listed
    text = page.read_text(encoding="utf-8")
    assert text.count('<img loading="lazy"') == 12  # one per task
    attrs, dom = _status(page)
    assert attrs["data-images"] == "1"  # the reachable one is shown
    assert attrs["data-images-failed"] == "11"  # the others (example.org, offline): links
    assert dom.count('href="https://example.org/pets/') == 11


def test_cli_recognises_platform_exports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from crowdbayes.cli import main

    out = tmp_path / "r.html"
    assert main(["report", str(EXPORT), "--out", str(out)]) == 0
    assert out.stat().st_size > 1_000_000  # plotly.js inlined
    assert main(["aggregate", str(EXPORT), "--model", "mv", "--quiet"]) == 0
    assert "mv       1.0       3" in capsys.readouterr().err  # the export's gold, evaluated
    assert main(["aggregate", str(EXPORT), "--label-field", "colour"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no column 'OUTPUT:colour'" in err[0]


def test_report_on_dog_flags_about_a_tenth_and_states_the_rule(tmp_path: Path) -> None:
    from crowdbayes.cli import main

    out = tmp_path / "dog.html"
    assert main(["report", "--dataset", "dog", "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    n_flagged = int(re.search(r"Suspicious tasks \((\d+) of", page).group(1))  # type: ignore[union-attr]
    assert 0 < n_flagged <= 0.11 * 807  # was 439 (entropy > 0.5 or consistency < 0.5)
    assert "the 10% of tasks with the highest score (1 - consistency)" in page
    assert "Ranked by one score" in page
    assert (
        main(["report", "--dataset", "dog", "--out", str(out), "--consistency-below", "0.3"]) == 0
    )
    page = out.read_text(encoding="utf-8")
    assert "Flagged: consistency &lt; 0.3; gold tasks" in page and "uncertainty &gt;" not in page


def test_report_says_how_many_assignments_were_left_out(tmp_path: Path) -> None:
    import pandas as pd

    export = pd.read_csv(EXPORT, sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    export.loc[[0, 5], "ASSIGNMENT:status"] = "REJECTED"
    export.loc[7, "ASSIGNMENT:status"] = "SKIPPED"
    export.loc[7, "OUTPUT:result"] = None
    path = tmp_path / "export.tsv"
    export.to_csv(path, sep="\t", index=False)
    page = build_report(path)
    assert "Left out as not votes: 2 REJECTED, 1 SKIPPED assignment(s)" in page
    assert "assignments left out" in page
    assert "assignments left out" not in build_report(EXPORT)
