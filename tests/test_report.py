"""`relaysim report` and `replay --report`: one self-contained HTML file that loads in
headless Chromium offline, with every plot rendered and no console error."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.cli import main
from tests.conftest import CONFIGS

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def relaysim(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by its ChromeDriver (the Makefile installs
    both; the flags keep it off this machine's closed network)."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("Debian's chromium and chromium-driver are not installed (make test does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",  # a laptop's screen: the report's page is 1,100 px
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def open_report(driver: Any, page: Path) -> dict[str, Any]:
    """Load `page` and read what a reader would see: images, tables, console."""
    driver.get(page.as_uri())
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])"
    )
    return {
        "state": driver.execute_script("return document.readyState"),
        "images": images,
        "tables": driver.execute_script("return document.querySelectorAll('table').length"),
        "text": driver.execute_script("return document.body.innerText"),
        # The widest table's right edge against the page's (the body's): none wider.
        "overflow": driver.execute_script(
            "const w = Math.max(0, ...Array.from(document.querySelectorAll('table'))"
            ".map(t => t.getBoundingClientRect().right));"
            "return w - document.body.getBoundingClientRect().right"
        ),
        "errors": [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")],
    }


def test_a_replay_report_loads_with_every_plot(tmp_path: Path, browser: Any) -> None:
    """`replay --report` writes a page whose four plots (traffic, latency, per-node
    load, outages) all render, with the summary table and no console error."""
    page = tmp_path / "replay.html"
    scenario = str(CONFIGS / "smoke.yaml")
    # Legacy with a crash in the day, so the outage timeline has something to draw.
    crash = 'faults=[{kind: crash, node: 1, at: "12:00"}]'
    args = ["replay", scenario, "--design", "legacy", "--set", crash, "--quiet"]
    assert relaysim(*args, "--report", str(page)) == 0
    seen = open_report(browser, page)
    assert seen["state"] == "complete"
    assert seen["errors"] == []
    assert len(seen["images"]) == 5
    assert all(complete and width > 0 for _, complete, width in seen["images"])
    alts = [alt for alt, _, _ in seen["images"]]
    assert "outage timeline: crashes and hangs" in alts
    assert "where it overflows: by size class and by pool" in alts
    assert "relay overflows" in seen["text"]  # the size-class table beside the plot
    assert "requests" in seen["text"]
    assert "checks" in seen["text"]
    text = page.read_text()
    assert "http://" not in text  # self-contained: nothing fetched from anywhere
    assert "https://" not in text


def test_a_sweep_report_has_the_heat_map_and_the_point_table(tmp_path: Path, browser: Any) -> None:
    """A report of a two-axis sweep shows the overflow-rate heat map and one table
    row per point; several results go into one page."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"base: {(CONFIGS / 'smoke.yaml').as_posix()}\n"
        "grid: {relays.count: [2, 3], load.cs_connections.per_100k: [0.0, 5.0]}\n",
        encoding="utf-8",
    )
    rows, summary = tmp_path / "sweep.json", tmp_path / "replay.json"
    assert relaysim("sweep", str(sweep), "--workers", "2", "--quiet", "--json", str(rows)) == 0
    assert relaysim("replay", str(CONFIGS / "smoke.yaml"), "--quiet", "--json", str(summary)) == 0
    page = tmp_path / "both.html"
    assert relaysim("report", str(rows), str(summary), "--html", str(page)) == 0
    seen = open_report(browser, page)
    assert seen["errors"] == []
    alts = [alt for alt, _, _ in seen["images"]]
    assert "overflow rate over the two swept axes" in alts
    assert all(complete and width > 0 for _, complete, width in seen["images"])
    doc = json.loads(rows.read_text())
    # One row per point, its axes in columns of their own; the table fits the page.
    assert "relays.count" in seen["text"]
    assert "load.cs_connections.per_100k" in seen["text"].replace("\n", "")
    assert page.read_text().count("<tr>") >= len(doc["rows"]) + 2  # and the replay's
    assert seen["overflow"] <= 0


def test_a_file_that_is_not_a_result_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A JSON file that is not a relaysim result is named in one line, exit 2."""
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}', encoding="utf-8")
    assert relaysim("report", str(other), "--html", str(tmp_path / "r.html")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "other.json: not a relaysim result" in err


def test_plots_are_legible() -> None:
    """The plots a reader meets first: the heat map's cells are labelled at 10 pt or
    more, in a colour that stands out from the cell, and the goal is outlined; the
    traffic plot's legend sits inside its axes (not over the right axis), its time
    axis is labelled and the operators' actions are marked."""
    import matplotlib.colors as mcolors

    from relay.plan import report

    rows = [
        {"values": {"a": a, "b": b}, "overflow_rate": rate, "label": f"a={a}, b={b}"}
        for (a, b), rate in {(1, 1): 0.4, (1, 2): 0.3, (2, 1): 0.01, (2, 2): 0.0005}.items()
    ]
    fig = report._heatmap(
        {"rows": rows, "goal": {"overflow_rate_below": 0.001}}, ["a", "b"], "overflow_rate"
    )
    ax = fig.axes[0]
    image = ax.get_images()[0]
    shown = image.get_array()
    assert shown is not None
    for text in ax.texts:
        assert float(text.get_fontsize()) >= 10
        x, y = text.get_position()
        cell = image.cmap(image.norm(shown[int(y), int(x)]))
        ink = mcolors.to_rgb(text.get_color())
        luminance = [0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] for c in (cell, ink)]
        assert abs(luminance[0] - luminance[1]) > 0.35  # readable on its cell
    assert len(ax.patches) == 1  # one cell under the goal, outlined
    timeline = [{"t": 36000.0 + 300 * k, "requests": 10, "overflows": k % 2} for k in range(12)]
    actions = [{"t": 37800.0, "action": "detach", "node": 2}]
    fig = report._traffic(timeline, dt.date(2016, 3, 29), actions)
    ax = fig.axes[0]
    assert ax.get_legend() is not None
    assert fig.legends == []
    assert ax.get_xlabel().startswith("time of day, 29 Mar 2016")
    assert [t.get_text() for t in ax.texts] == ["detach relay2"]


def test_a_hunt_report_pictures_the_race_on_both_designs(tmp_path: Path, browser: Any) -> None:
    """`hunt --report` on legacy draws the shrunk world's timeline, the race at the
    OS tick's resolution and the same world on fixed; `report` on the hunt's JSON
    draws it again; the page loads in Chromium with every picture."""
    page, result = tmp_path / "hunt.html", tmp_path / "hunt.json"
    smoke = str(CONFIGS / "smoke.yaml")
    args = ["hunt", smoke, "--design", "legacy", "--examples", "100"]
    assert relaysim(*args, "--report", str(page), "--json", str(result)) == 1  # a crash
    seen = open_report(browser, page)
    assert seen["errors"] == []
    alts = [alt for alt, _, _ in seen["images"]]
    assert alts == [
        "timeline on legacy",
        "the race at the OS tick's resolution on legacy",
        "timeline on fixed",
        "the race at the OS tick's resolution on fixed",
    ]
    assert all(complete and width > 0 for _, complete, width in seen["images"])
    assert "met a pending timeout notification" in seen["text"]
    again = tmp_path / "again.html"
    assert relaysim("report", str(result), "--html", str(again)) == 0
    assert again.read_text().count("<img") == 4
