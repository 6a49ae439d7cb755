"""The model file from the user's side: `python -m ridelake validate` and `schema`, the published
JSON Schema, and the errors a mistaken model gets from the installed package (file, line, what to
change; nothing written). The real-MariaDB test of a renamed schema is test_real_cdc_model.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from conftest import REPO, generate, local_config, run_dest

ridelake = pytest.importorskip("ridelake")

EXAMPLE = REPO / "models" / "example-renamed.toml"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ridelake", *args], capture_output=True, text=True, timeout=120)


def test_schema_command_prints_the_published_schema():
    out = cli("schema")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == json.loads((REPO / "models" / "model.schema.json").read_text())
    assert ridelake.model_schema() == json.loads(out.stdout)


def test_the_shipped_example_parses_and_mistakes_name_their_lines(tmp_path: Path):
    assert cli("validate", str(EXAMPLE)).returncode == 0
    bad = tmp_path / "bad.toml"
    text = EXAMPLE.read_text().replace('DONE = "completed"', 'DONE = "finished"').replace('scale = 0.01', 'scale = 0')
    bad.write_text(text)
    out = cli("validate", str(bad))
    assert out.returncode == 1
    lines = {i + 1 for i, line in enumerate(text.splitlines()) if "finished" in line or "scale = 0 " in line or "scale = 0}" in line}
    for line in lines:
        assert f"bad.toml: line {line}:" in out.stderr, out.stderr
    assert "`DONE` maps to `finished`" in out.stderr and "scale must be" in out.stderr


def test_a_model_that_does_not_fit_the_lake_stops_before_writing(tmp_path: Path):
    """The generator's bronze (streams users and rides) read through the renamed example: every
    mapped column is missing, and the run says where, before any silver table exists."""
    messages, catalog = generate(tmp_path, "--users", "20", "--rides", "50", "--changes", "50")
    lake = tmp_path / "lake"
    config = local_config(tmp_path, lake / "bronze")
    assert run_dest("write", "--config", str(config), "--catalog", str(catalog), stdin=messages.read_bytes()).returncode == 0
    problems = ridelake.validate_model(EXAMPLE, str(lake))
    assert any("`accounts`, which has no bronze table yet" in p for p in problems), problems
    out = cli("validate", str(EXAMPLE), "--lake", str(lake))
    assert out.returncode == 1 and "example-renamed.toml: line" in out.stderr
    with pytest.raises(ridelake.MissingTableError, match="accounts"):
        ridelake.build_silver(str(lake), model=EXAMPLE)
    # Renamed in the model, missing in bronze: named with the model line and bronze's columns.
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('version = 1\n[rides.columns]\ncustomer_id = "rider_id"\n')
    problems = ridelake.validate_model(wrong, str(lake))
    assert len(problems) == 1 and "wrong.toml: line 3:" in problems[0] and "rider_id" in problems[0], problems
    with pytest.raises(ridelake.ConfigError, match="wrong.toml: line 3:"):
        ridelake.build_silver(str(lake), model=wrong)
    assert not (lake / "silver" / "rides").exists()
    # The default model fits, and builds.
    assert ridelake.validate_model(tmp_path / "none.toml") != []  # a missing file is a problem, not a crash
    ok = tmp_path / "default.toml"
    ok.write_text("version = 1\n")
    assert ridelake.validate_model(ok, str(lake)) == []
    assert ridelake.build_silver(str(lake), model=ok)["rides_upserted"] > 0


def test_rules_from_the_installed_package(tmp_path: Path):
    """The model's rules through the Python API and the real destination: a rule mistake is a
    ConfigError at its line; a warn rule's count is in the report; a fail rule is a DataError
    naming the rule and its line, never a value, and nothing is committed; a quarantine rule's
    breakers are in silver's quarantine under its name."""
    messages, catalog = generate(tmp_path, "--users", "30", "--rides", "200", "--changes", "300")
    lake = tmp_path / "lake"
    config = local_config(tmp_path, lake / "bronze")
    assert run_dest("write", "--config", str(config), "--catalog", str(catalog), stdin=messages.read_bytes()).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('version = 1\n[[rides.rules]]\ncheck = "distnace_km >= 0"\n')
    with pytest.raises(ridelake.ConfigError, match="bad.toml: line 2: rides rule"):
        ridelake.build_silver(str(lake), model=bad)
    assert not (lake / "silver").exists() or not any((lake / "silver").iterdir())

    failing = tmp_path / "fail.toml"
    failing.write_text('version = 1\n[[rides.rules]]\nname = "short rides only"\ncheck = "distance_km < 5"\naction = "fail"\n')
    with pytest.raises(ridelake.DataError, match=r"short rides only.*line 2") as raised:
        ridelake.build_silver(str(lake), model=failing)
    assert "nothing was committed" in str(raised.value)
    assert not (lake / "silver" / "rides" / "_delta_log").exists(), "a failed run committed rides"

    warning = tmp_path / "warn.toml"
    warning.write_text('version = 1\n[[rides.rules]]\nname = "short rides"\ncheck = "distance_km < 5"\naction = "warn"\n')
    report = ridelake.build_silver(str(lake), model=warning)
    assert report["warnings"].get("rides: short rides", 0) > 0 and report["dropped"] == 0, report

    strict = tmp_path / "strict.toml"
    strict.write_text('version = 1\n[[rides.rules]]\nname = "short rides"\ncheck = "distance_km < 5"\n')
    with pytest.raises(ridelake.ConfigError, match="rebuild"):
        ridelake.build_silver(str(lake), model=strict)
    report = ridelake.build_silver(str(lake), model=strict, rebuild=True)
    quarantine = ridelake.read_table(str(lake), "silver", "quarantine")
    by_rule = quarantine.filter(pl.col("rule") == "short rides")
    others = quarantine.filter((pl.col("rule") != "short rides") & (pl.col("table") == "rides"))
    assert by_rule.height == report["rides_quarantined"] - others.height
    assert by_rule.height > 0
    rides = ridelake.read_table(str(lake), "silver", "rides")
    assert rides.height > 0 and (rides["distance_km"] >= 5).sum() == 0


def test_accepted_links_from_the_installed_package(tmp_path: Path):
    """Link policies through the Python API and the real destination, with a users stream that
    lags (one user in five reaches bronze a sync later): the default model leaves their rides
    waiting; a model that accepts both links needs a rebuild (which the error says), then
    publishes every one of them with `unlinked` naming what does not hold and leaves nothing
    pending; when the late users arrive, the next run clears `unlinked`; gold counts them all."""
    messages, catalog = generate(tmp_path, "--users", "30", "--rides", "300", "--changes", "300", "--seed", "4")
    lines = messages.read_text().splitlines()

    def lags(line: str) -> bool:
        message = json.loads(line)
        record = message.get("record") or {}
        return message["type"] == "RECORD" and record.get("stream") == "users" and record["data"]["id"] % 5 == 0

    late = [line for line in lines if lags(line)]
    assert late
    lake = tmp_path / "lake"
    config = local_config(tmp_path, lake / "bronze")

    def sync(part: list[str]) -> None:
        assert run_dest("write", "--config", str(config), "--catalog", str(catalog), stdin="\n".join(part).encode()).returncode == 0

    sync([line for line in lines if not lags(line)])
    waiting = ridelake.build_silver(str(lake))
    assert waiting["pending"] > 0, "the lagging users leave rides waiting"
    pending = ridelake.read_table(str(lake), "silver", "rides_pending")
    published = ridelake.read_table(str(lake), "silver", "rides")
    assert "unlinked" not in published.columns

    accepting = tmp_path / "accept.toml"
    accepting.write_text('version = 1\n[rides.links]\ncustomer_id = "accept"\ndriver_id = "accept"\n')
    assert cli("validate", str(accepting)).returncode == 0
    with pytest.raises(ridelake.ConfigError, match="rebuild"):
        ridelake.build_silver(str(lake), model=accepting)
    report = ridelake.build_silver(str(lake), model=accepting, rebuild=True)
    rides = ridelake.read_table(str(lake), "silver", "rides")
    assert ridelake.read_table(str(lake), "silver", "rides_pending").height == 0
    assert sorted(rides["id"].to_list()) == sorted(published["id"].to_list() + pending["id"].to_list())
    unlinked = rides.filter(pl.col("unlinked").is_not_null())
    assert sorted(unlinked["id"].to_list()) == sorted(pending["id"].to_list())
    assert report["rides_unlinked"] == unlinked.height
    # The rebuild changed the table's columns: every column keeps (or gets) its comment.
    from deltalake import DeltaTable
    comments = {f.name: (f.metadata or {}).get("comment") for f in DeltaTable(str(lake / "silver" / "rides")).schema().fields}
    assert comments["unlinked"] and "links the model accepts" in comments["unlinked"], comments
    assert comments["customer_id"] and comments["id"], comments
    reasons = dict(zip(pending["id"].to_list(), pending["reason"].to_list()))
    for ride, why in zip(unlinked["id"].to_list(), unlinked["unlinked"].to_list()):
        assert reasons[ride] in why.split("; "), (ride, why, reasons[ride])

    # The lagging users arrive: their rides are linked, with no change of their own.
    sync(late)
    assert ridelake.build_silver(str(lake), model=accepting)["rebuild"] is None
    after = ridelake.read_table(str(lake), "silver", "rides")
    assert after.height == rides.height and after.filter(pl.col("unlinked").is_not_null()).height == 0
    ridelake.build_gold(str(lake))
    kpis = ridelake.read_table(str(lake), "gold", "daily_city_kpis")
    assert kpis["requested"].sum() == after.height
