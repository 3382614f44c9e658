"""The HTML report: content, self-containment, the command, and rendering in headless Chromium."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import crowdbayes as cb
from crowdbayes.report import add_report_command, build_report, run_report

EXPORT = Path(__file__).parent / "data" / "platform_export.tsv"


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
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: any fetch would fail
            "--virtual-time-budget=10000",
            *args,
            page.resolve().as_uri(),
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _report(tmp_path: Path) -> Path:
    out = tmp_path / "report.html"
    labels, truth = cb.datasets.load("bluebirds")
    gold = truth.iloc[::10]
    build_report(labels, out, gold=gold, held_out=truth.drop(gold.index), title="bluebirds")
    return out


def test_report_content_is_self_contained(tmp_path: Path) -> None:
    page = _report(tmp_path).read_text(encoding="utf-8")
    assert "<script src=" not in page and "<link " not in page  # no CDN, nothing fetched
    assert page.count("Plotly.newPlot(") == 3
    assert page.count("/**\n* plotly.js v") == 1  # plotly.js inlined exactly once
    assert 'data-plots="3"' in page
    for text in ("Summary", "Krippendorff", "Fleiss", "Annotators", "Suspicious tasks", "held-out"):
        assert text in page
    n_flagged = int(re.search(r"Suspicious tasks \((\d+)\)", page).group(1))  # type: ignore[union-attr]
    assert n_flagged > 0
    assert page.count("<tr><td>") >= 39 + min(n_flagged, 500)  # annotators + flagged tasks


def test_report_command_on_platform_export_links_inputs(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="crowdbayes")
    add_report_command(parser.add_subparsers(dest="command"))
    out = tmp_path / "export.html"
    args = parser.parse_args(
        ["report", str(EXPORT), "--out", str(out), "--uncertainty-above", "0.3"]
    )
    assert run_report(args) == 0
    page = out.read_text(encoding="utf-8")
    assert "GoldMajorityVote" in page
    assert '<a href="https://example.org/pets/' in page  # URL inputs become links
    assert "1 annotator(s) labelled no gold task" in page  # worker w5, the documented rule
    bad = parser.parse_args(["report", str(EXPORT), "--out", str(out), "--label-field", "x"])
    with pytest.raises(cb.AnnotationsError, match="no column 'OUTPUT:x'"):
        run_report(bad)


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    page = _report(tmp_path)
    dom = _browser(["--dump-dom"], page)
    status = re.search(r'<span id="cb-status"([^>]*)>', dom.stdout)
    assert status is not None, dom.stderr[-2000:]
    attrs = dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', status.group(1)))
    assert attrs["data-errors"] == "0", attrs.get("data-error-text")
    assert attrs["data-drawn"] == attrs["data-plots"] == "3"
    shot = tmp_path / "report.png"
    _browser(["--hide-scrollbars", "--window-size=1280,2400", f"--screenshot={shot}"], page)
    assert shot.exists() and shot.stat().st_size > 50_000  # a real page, not a blank one
    keep = os.environ.get("CROWDBAYES_REPORT_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


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
    n_flagged = int(re.search(r"Suspicious tasks \((\d+)\)", page).group(1))  # type: ignore[union-attr]
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
