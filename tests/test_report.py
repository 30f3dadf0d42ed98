"""credsim report: a self-contained HTML page whose plots draw in headless Chromium, offline."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import credsim
from credsim.cli import main
from credsim.errors import CredsimError
from credsim.report import write_report
from credsim.sweep import sweep

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("report")
    return {
        "suzhou": credsim.run("suzhou", 5000, 120, 1, base / "s").path,
        "nanjing": credsim.run("nanjing", 5000, 120, 1, base / "n").path,
    }


def _markup(page: str) -> str:
    """The page without the bodies of its inline scripts (Plotly's code names URLs it never
    loads for the chart types used here, e.g. map tiles)."""
    return re.sub(r"(<script[^>]*>).*?(</script>)", r"\1\2", page, flags=re.S)


def _plot_ids(page: str) -> list[str]:
    return re.findall(r'<div id="(plot-\d+)" class="plotly-graph-div"', page)


def test_report_is_self_contained(runs: dict[str, Path]) -> None:
    for name, run in runs.items():
        out = write_report(run)
        assert out == run / "report.html"
        page = out.read_text(encoding="utf-8")
        assert page.count("<script") >= 2
        # no remote script, stylesheet, image or frame: only text references to sources
        markup = _markup(page)
        assert not re.search(r"<script[^>]*\bsrc\s*=", markup)
        remote = re.findall(r'\b(?:src|href)\s*=\s*["\']?\s*(?:https?:)?//', markup)
        assert remote == [], remote
        assert "cdn.plot.ly" not in page.split("</head>")[1]
        assert "sweeps" in page
        assert "Assumptions" in page and "Sources" in page
        assert len(_plot_ids(page)) >= 2, name
        assert not list(run.glob(".report.html.tmp-*"))
    suzhou = (runs["suzhou"] / "report.html").read_text(encoding="utf-8")
    assert "Nobody was put on a list in this run." in suzhou
    assert "This scheme gives no grades" in suzhou
    nanjing = (runs["nanjing"] / "report.html").read_text(encoding="utf-8")
    assert "This scheme keeps no score" in nanjing
    assert "roadside-screen" in nanjing


def test_cli_report(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(runs["nanjing"])]) == 0
    assert capsys.readouterr().out.strip().endswith("report.html")


def _dom(page: Path, profile: Path) -> str:
    """The page's DOM after headless Chromium ran its scripts, offline."""
    assert CHROMIUM is not None
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=10000",
            "--window-size=1400,4000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0 and "</html>" in proc.stdout, proc.stderr[-2000:]
    return proc.stdout


def _assert_drawn(name: str, page: str, dom: str) -> None:
    ids = _plot_ids(page)
    for pid in ids:
        start = dom.index(f'id="{pid}"')
        nxt = dom.find('class="plot"', start)
        chunk = dom[start : nxt if nxt > 0 else len(dom)]
        assert "main-svg" in chunk, f"{name}: {pid} did not draw"
    # the rendered page must not have pulled anything from outside the file
    assert not re.search(
        r'<(?:script|link|img|iframe)[^>]+(?:src|href)="(?:https?:)?//', _markup(dom)
    )


def _assert_self_contained(page: str) -> None:
    markup = _markup(page)
    assert not re.search(r"<script[^>]*\bsrc\s*=", markup)
    remote = re.findall(r'\b(?:src|href)\s*=\s*["\']?\s*(?:https?:)?//', markup)
    assert remote == [], remote
    assert page.count("<script") >= 2
    assert "cdn.plot.ly" not in page.split("</head>")[1]


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="needs headless Chromium (/usr/bin/chromium; apt-get install chromium): "
    ".ci/run installs it when apt-get is available",
)


@needs_chromium
def test_plots_draw_in_headless_chromium(runs: dict[str, Path], tmp_path: Path) -> None:
    for name, run in runs.items():
        page = write_report(run).read_text(encoding="utf-8")
        _assert_drawn(name, page, _dom(run / "report.html", tmp_path / ("profile-" + name)))


# --------------------------------------------------------------------------------------------
# sweep and comparison folders


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("report-kinds")
    sw = sweep(
        "suzhou", ["review=none,required"], 2, base / "sw", population=2000, days=60, workers=1
    )
    assert main(["compare", "--out", str(base / "cmp")]) == 0
    return {"sweep": sw, "compare": base / "cmp"}


def test_sweep_report(folders: dict[str, Path]) -> None:
    out = write_report(folders["sweep"])
    assert out == folders["sweep"] / "report.html"
    page = out.read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert "Sweep: suzhou" in page and "review=none" in page and "review=required" in page
    assert "95% confidence interval" in page
    assert "rates.recorded.all" in page and "stratification.gini" in page
    assert "Who is affected: groups and sex" in page and "local-hukou" in page
    assert "Every row of summary.parquet" in page
    assert len(_plot_ids(page)) >= 3
    # every plotted bar carries asymmetric error bars (the 95% interval)
    assert page.count('"arrayminus"') >= len(_plot_ids(page))
    assert not list(folders["sweep"].glob(".report.html.tmp-*"))


def test_compare_report(folders: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["report", str(folders["compare"])]) == 0
    assert capsys.readouterr().out.strip().endswith("report.html")
    page = (folders["compare"] / "report.html").read_text(encoding="utf-8")
    _assert_self_contained(page)
    for text in (
        "From maximum privacy to maximum control",
        "AI governance principles (2019)",
        "Art. 5(1)(c)",
        "What goes in: inputs and channels",
        "Rewards and penalties",
        "citizen-score",
        "rongcheng",
    ):
        assert text in page, text
    assert len(_plot_ids(page)) == 3  # index, components, ethics heat map
    assert '"type":"heatmap"' in page


def test_report_refuses_other_folders(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(CredsimError, match="not a run folder.*sweep.*comparison"):
        write_report(tmp_path)


@needs_chromium
def test_sweep_and_compare_draw_in_headless_chromium(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    for name, folder in folders.items():
        page = write_report(folder).read_text(encoding="utf-8")
        assert _plot_ids(page), name
        _assert_drawn(name, page, _dom(folder / "report.html", tmp_path / ("profile-" + name)))
