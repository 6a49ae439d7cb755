"""The main job's HTML report as a browser draws it: Debian's Chromium, headless, through Playwright.

- The page loads with no console error, no page error and no request beyond the file itself.
- Every chart is drawn: each <svg> has a non-zero box and plotted marks of non-zero size (the bars
  of each month and driver, one line per daily series) for the figures embedded in the page.
- No text of a chart leaves its svg's box (the svg clips it: a label cut at the right edge) and no
  two texts of a chart overlap (axis labels of many days or months drawn over each other).
- A full-page screenshot is kept under the test's tmp_path and, when RIDELAKE_ARTIFACTS is set,
  copied there with the page; its path is printed.

Chromium and Playwright are required: without them the test fails, it does not skip.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from test_pipeline import report_data, run_job

CHROMIUM = Path(os.environ.get("RIDELAKE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Text boxes are measured in CSS pixels; a box may touch its neighbour or the edge within this.
TOLERANCE_PX = 0.5

# Every chart of the page with its plotted marks and its texts' boxes, in CSS pixels of the page.
MEASURE_CHARTS = """() => Array.from(document.querySelectorAll('svg')).map(svg => {
    const box = r => ({left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width, height: r.height});
    return {
        label: svg.getAttribute('aria-label') || '(svg without label)',
        box: box(svg.getBoundingClientRect()),
        bars: Array.from(svg.querySelectorAll('rect')).filter(r => r.querySelector('title'))
            .map(r => ({title: r.querySelector('title').textContent, width: r.getBBox().width, height: r.getBBox().height})),
        lines: Array.from(svg.querySelectorAll('polyline'))
            .map(p => ({points: p.points.numberOfItems, width: p.getBBox().width, height: p.getBBox().height})),
        texts: Array.from(svg.querySelectorAll('text')).map(t => ({text: t.textContent, box: box(t.getBoundingClientRect())})),
    };
})"""


def browse(report: Path, out_dir: Path) -> dict:
    """Opens the report in Chromium; returns its charts, errors and requests, and saves a screenshot."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/setup-test-env.sh)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed in the test venv (scripts/setup-test-env.sh)")
    errors: list[str] = []
    requests: list[str] = []
    screenshot = out_dir / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(out_dir / "chromium-profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1280, "height": 900})
        try:
            page = browser.new_page()

            def on_console(message) -> None:
                if message.type == "error":
                    errors.append(f"console error: {message.text}")

            page.on("console", on_console)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri(), wait_until="load")
            page.evaluate("document.fonts.ready.then(() => true)")
            page.screenshot(path=str(screenshot), full_page=True)
            charts = page.evaluate(MEASURE_CHARTS)
            scroll_width, view_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        finally:
            browser.close()
    artifacts = os.environ.get("RIDELAKE_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(report, Path(artifacts) / "report-browser.html")
        screenshot = Path(shutil.copy(screenshot, Path(artifacts) / "report-browser.png"))
    print(f"report screenshot: {screenshot}")
    return {"charts": charts, "errors": errors, "requests": requests, "scroll_width": scroll_width,
            "view_width": view_width, "screenshot": screenshot}


def where(box: dict) -> str:
    return f"x {box['left']:.1f}..{box['right']:.1f}, y {box['top']:.1f}..{box['bottom']:.1f}"


def overflows(text: dict, svg: dict) -> bool:
    t, s = text["box"], svg["box"]
    return (t["left"] < s["left"] - TOLERANCE_PX or t["right"] > s["right"] + TOLERANCE_PX
            or t["top"] < s["top"] - TOLERANCE_PX or t["bottom"] > s["bottom"] + TOLERANCE_PX)


def overlap(a: dict, b: dict) -> bool:
    a, b = a["box"], b["box"]
    return (min(a["right"], b["right"]) - max(a["left"], b["left"]) > TOLERANCE_PX
            and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > TOLERANCE_PX)


def check_page(page: dict, data: dict) -> list[str]:
    """What is wrong with the rendered page, one line per defect (empty: nothing)."""
    problems = list(page["errors"])
    problems += [f"request beyond the page: {url}" for url in page["requests"] if not url.startswith("file://")]
    if page["scroll_width"] > page["view_width"]:
        problems.append(f"the page scrolls sideways: {page['scroll_width']} px wide in a {page['view_width']} px window")
    charts = {c["label"]: c for c in page["charts"]}
    months, days, drivers = data["months"], data["days"], data["top_drivers"]
    expected = {  # label: (bars, lines with one point per day)
        "Rides requested per month": (len(months), 0),
        "Distance of completed rides per month (km)": (len(months), 0),
        "Rides per day": (0, 3),
        "Cancellation rate per day (%)": (0, 1),
        "Completed rides of the top drivers": (len(drivers), 0),
    }
    if sorted(charts) != sorted(expected) or len(charts) != len(page["charts"]):
        problems.append(f"charts drawn: {[c['label'] for c in page['charts']]}, expected {sorted(expected)}")
    for label, (bars, lines) in expected.items():
        chart = charts.get(label)
        if chart is None:
            continue
        if not (chart["box"]["width"] > 0 and chart["box"]["height"] > 0):
            problems.append(f"{label}: the svg has no size ({chart['box']})")
        if len(chart["bars"]) != bars or not all(b["width"] > 0 for b in chart["bars"]):
            problems.append(f"{label}: {len(chart['bars'])} bars drawn, expected {bars} of non-zero width")
        if bars and not any(b["height"] > 0 for b in chart["bars"]):
            problems.append(f"{label}: every bar is flat")
        drawn = [ln for ln in chart["lines"] if ln["points"] == len(days) and ln["width"] > 0]
        if len(drawn) != lines or len(chart["lines"]) != lines:
            problems.append(f"{label}: {len(drawn)} lines of {len(days)} points drawn, expected {lines}: {chart['lines']}")
        for text in chart["texts"]:
            if not text["box"]["width"] > 0:
                problems.append(f"{label}: text {text['text']!r} is not drawn")
            if overflows(text, chart):
                problems.append(f"{label}: text {text['text']!r} at {where(text['box'])} is cut by the chart's edge "
                                f"({where(chart['box'])})")
        texts = chart["texts"]
        for i, a in enumerate(texts):
            for b in texts[i + 1:]:
                if overlap(a, b):
                    problems.append(f"{label}: texts {a['text']!r} and {b['text']!r} overlap")
    return problems


def test_report_renders_in_chromium(tmp_path):
    lake = tmp_path / "lake"
    run_job(str(lake), "--records", "30000", "--seed", "5")
    report = lake / "report.html"
    data = report_data(report)
    assert data["months"] and data["days"] and data["top_drivers"], "a lake with figures to draw"
    page = browse(report, tmp_path)
    problems = check_page(page, data)
    assert not problems, f"the report as Chromium draws it (screenshot {page['screenshot']}):\n" + "\n".join(problems)
