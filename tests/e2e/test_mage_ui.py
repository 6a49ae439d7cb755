"""Mage in a real browser: `mage start` serves the project, headless Chromium (Debian's, driven by
Playwright) signs in, opens the pipeline `ride_lakehouse`, runs it from its triggers page
(Run@once, then Run now in the confirmation dialog), watches the run reach `completed` in the UI
and opens the run's page, where every block shows `completed`. Then gold, stale before the run,
equals the main job's gold, with new Delta versions, and the exports and PostgreSQL follow, as in
test_pipeline.py.

The server gets a copy of mage_project (`mage start` rewrites the triggers.yaml it syncs) with
its 15-minute trigger inactive, so the only run is the one started in the browser; its own
MAGE_DATA_DIR (Mage's SQLite database, logs and block outputs), a free loopback port, and
the project's environment variables as test_pipeline.py passes them to `mage run`.

The screenshot of the completed run is saved under tmp_path and copied to $RIDELAKE_ARTIFACTS
when set.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from deltalake import DeltaTable

from conftest import REPO, VENVS, free_port
from test_pipeline import GOLD, PG_DSN, assert_same_gold, check_exports, check_postgres, drop_schema, gold_table, run_job

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium's own connections are refused in CI sandboxes.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PIPELINE = "ride_lakehouse"
SCHEDULED_TRIGGER = "ride_lakehouse_every_15_minutes"
# Mage 0.9.80 requires a sign-in; a fresh database gets this owner (DEFAULT_OWNER_* are read at start).
OWNER = ("ridelake@example.com", "ridelake-ui-test")
SERVER_START_TIMEOUT = 180
RUN_TIMEOUT = 480


def project_copy(tmp_path: Path) -> Path:
    """mage_project under tmp_path (still named mage_project: the blocks import mage_project.utils),
    its scheduled trigger inactive."""
    project = tmp_path / "mage_project"
    shutil.copytree(REPO / "mage_project", project, ignore=shutil.ignore_patterns("__pycache__", "exports", ".ssh_tunnel"))
    triggers_file = project / "pipelines" / PIPELINE / "triggers.yaml"
    triggers = yaml.safe_load(triggers_file.read_text())
    assert [t["name"] for t in triggers["triggers"]] == [SCHEDULED_TRIGGER], triggers
    for trigger in triggers["triggers"]:
        trigger["status"] = "inactive"
    triggers_file.write_text(yaml.safe_dump(triggers, sort_keys=False))
    return project


def block_names(project: Path) -> list[str]:
    return [b["uuid"] for b in yaml.safe_load((project / "pipelines" / PIPELINE / "metadata.yaml").read_text())["blocks"]]


def start_mage(project: Path, data_dir: Path, port: int, project_env: dict, log: Path) -> subprocess.Popen:
    mage = VENVS / "mage/bin/mage"
    if not mage.exists():
        pytest.fail("mage-ai is not installed: run scripts/setup-test-env.sh")
    env = {**os.environ, "MAGE_DATA_DIR": str(data_dir), "DEFAULT_OWNER_EMAIL": OWNER[0],
           "DEFAULT_OWNER_PASSWORD": OWNER[1], **project_env}
    env.pop("VIRTUAL_ENV", None)
    with open(log, "wb") as out:
        return subprocess.Popen([str(mage), "start", str(project), "--host", "127.0.0.1", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=project.parent, start_new_session=True)


def stop_mage(proc: subprocess.Popen) -> None:
    """The server, its scheduler and the block processes share the server's process group."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever ignored SIGTERM or outlived the leader
    except ProcessLookupError:
        pass
    proc.wait(30)


def wait_until_serving(proc: subprocess.Popen, base: str, project: Path, log: Path) -> None:
    """/api/status answers without a sign-in once the web server is up; it also names the project
    and tells whether the scheduler (which executes UI-triggered runs) is running."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mage start exited with {proc.returncode}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(f"{base}/api/status", timeout=5) as response:
                status = json.load(response)["statuses"][0]
            last = status
            if status["repo_path"] == str(project) and status["scheduler_status"] == "running":
                return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"mage did not serve {project} with a running scheduler in {SERVER_START_TIMEOUT} s "
                f"(last status {last}):\n{tail(log)}")


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} missing)"


def run_logs(data_dir: Path) -> str:
    """Mage's per-run logs (<data dir>/<project>/pipelines/<pipeline>/.logs/<trigger>/<run>/<block>.log)."""
    files = sorted(data_dir.glob(f"**/pipelines/{PIPELINE}/.logs/**/*.log"))
    return "\n".join(f"== {f.relative_to(data_dir)}\n{tail(f, 3000)}" for f in files) or "(no run logs)"


def keep(path: Path) -> Path:
    print(f"screenshot: {path}")
    if os.environ.get("RIDELAKE_ARTIFACTS"):
        artefacts = Path(os.environ["RIDELAKE_ARTIFACTS"])
        artefacts.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, artefacts / path.name)
        print(f"screenshot copied to {artefacts / path.name}")
    return path


def column(table, header: str) -> int:
    """Index of a column by its header text, so the checks survive reordered columns."""
    headers = [h.strip() for h in table.locator("th").all_inner_texts()]
    assert header in headers, headers
    return headers.index(header)


def run_from_ui(page, base: str, blocks: list[str]) -> None:
    from playwright.sync_api import expect

    # Sign in as the owner the fresh database was given.
    page.goto(f"{base}/sign-in")
    page.get_by_placeholder("Email").fill(OWNER[0])
    page.get_by_placeholder("Password").fill(OWNER[1])
    page.get_by_role("button", name="Sign into Mage").click()
    page.wait_for_url("**/overview**")

    # The pipelines list → ride_lakehouse opens on its triggers, the project's schedule among them.
    page.goto(f"{base}/pipelines")
    page.get_by_role("link", name=PIPELINE, exact=True).click()
    page.wait_for_url(f"**/pipelines/{PIPELINE}/triggers")
    triggers = page.locator("table").filter(has=page.locator("th", has_text="Latest status"))
    expect(triggers.locator("tr").filter(has_text=SCHEDULED_TRIGGER)).to_have_count(1)
    once = triggers.locator("tr").filter(has_text="@once")
    expect(once).to_have_count(0)

    # Run@once opens "Run pipeline now"; Run now creates an @once trigger and runs the pipeline.
    page.get_by_role("button", name="Run@once").click()
    expect(page.get_by_text("Run pipeline now")).to_be_visible()
    page.get_by_role("button", name="Run now").click()
    expect(once).to_have_count(1, timeout=60_000)

    # The triggers page refreshes itself; watch the @once trigger's latest status.
    status_column = column(triggers, "Latest status")
    deadline = time.monotonic() + RUN_TIMEOUT
    seen, changed = [], time.monotonic()
    while True:
        status = once.locator("td").nth(status_column).inner_text().strip()
        if not seen or seen[-1] != status:
            seen.append(status)
            changed = time.monotonic()
        if status == "completed":
            break
        if status in ("failed", "cancelled"):
            raise AssertionError(f"the run ended {status} in the UI (statuses seen: {seen})")
        if time.monotonic() > deadline:
            raise AssertionError(f"the run did not complete in {RUN_TIMEOUT} s (statuses seen: {seen})")
        if time.monotonic() - changed > 60:  # the page polls every few seconds; reload if it seems stuck
            page.reload()
            changed = time.monotonic()
        time.sleep(1)

    # The trigger's page lists its run: Done, every block run completed; its link opens the run.
    once.get_by_role("link").first.click()
    page.wait_for_url(f"**/pipelines/{PIPELINE}/triggers/*")
    runs = page.locator("table").filter(has=page.locator("th", has_text="Block runs"))
    expect(runs.locator("tr").filter(has_text="Done")).to_have_count(1)
    runs.get_by_role("link", name=f"{len(blocks)} / {len(blocks)}", exact=True).click()
    page.wait_for_url(f"**/pipelines/{PIPELINE}/runs/*")
    block_runs = page.locator("table").filter(has=page.locator("th", has_text="Block"))
    expect(block_runs.locator("tr").filter(has=page.locator("td"))).to_have_count(len(blocks))
    status_column = column(block_runs, "Status")
    for block in blocks:
        row = block_runs.locator("tr").filter(has=page.get_by_text(block, exact=True))
        expect(row).to_have_count(1)
        expect(row.locator("td").nth(status_column)).to_have_text("completed")


def test_run_the_pipeline_from_the_mage_ui(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup-test-env.sh (Debian's chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Python playwright is not installed in the test venv: run scripts/setup-test-env.sh")

    # Both lakes hold the same first sync with silver and gold built; then the next sync reaches
    # both, and only the main job builds on it: the Mage lake's gold is stale until the UI run.
    main_lake, lake = str(tmp_path / "main"), str(tmp_path / "mage")
    run_job(main_lake, "--records", "15000", "--seed", "9")
    run_job(lake, "--records", "15000", "--seed", "9")
    run_job(main_lake, "--records", "6000")
    run_job(lake, "--records", "6000", "--only-bronze")
    before = {t: DeltaTable(f"{lake}/gold/{t}").version() for t in GOLD}
    assert not gold_table(lake, "driver_stats").equals(gold_table(main_lake, "driver_stats")), "gold is stale before the run"

    project = project_copy(tmp_path)
    blocks = block_names(project)
    data_dir, log = tmp_path / "mage_data", tmp_path / "mage-server.log"
    exports = tmp_path / "exports"
    schema = f"mageui_{tmp_path.name[-12:].replace('-', '_')}".lower()
    env = {"RIDELAKE_LAKE": lake, "RIDELAKE_EXPORT_DIR": str(exports),
           "RIDELAKE_POSTGRES_DSN": PG_DSN, "RIDELAKE_POSTGRES_SCHEMA": schema}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_mage(project, data_dir, port, env, log)
    try:
        wait_until_serving(server, base, project, log)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                viewport={"width": 1600, "height": 1000})
            page = browser.new_page()
            page.set_default_timeout(30_000)
            try:
                run_from_ui(page, base, blocks)
            except Exception as error:
                shot = tmp_path / "mage-ui-failure.png"
                page.screenshot(path=shot, full_page=True)
                keep(shot)
                pytest.fail(f"{error}\nscreenshot: {shot}\n{run_logs(data_dir)}\n== server\n{tail(log)}")
            shot = tmp_path / "mage-ui-run.png"
            page.screenshot(path=shot, full_page=True)
            keep(shot)
            browser.close()

        # Gold moved on (new versions) to exactly the main job's gold; exports and PostgreSQL follow.
        after = {t: DeltaTable(f"{lake}/gold/{t}").version() for t in GOLD}
        assert all(after[t] >= before[t] for t in GOLD), (before, after)
        assert after["driver_stats"] > before["driver_stats"] and after["daily_city_kpis"] > before["daily_city_kpis"], (before, after)
        assert_same_gold(main_lake, lake)
        check_exports(lake, exports)
        check_postgres(lake, schema)
    finally:
        stop_mage(server)
        drop_schema(schema)
