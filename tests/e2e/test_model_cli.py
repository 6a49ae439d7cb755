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

from conftest import REPO, generate, local_config, read_delta, run_dest

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


def test_limited_waits_from_the_installed_package(tmp_path: Path):
    """A customer link that waits at most 30 minutes, through the Python API and the real
    destination, on bronze's clock: three syncs an hour apart (every record's `emitted_at` is its
    sync's time), the records of one user in five held back until the third (ids 1, 6, 11…: the
    generator's drivers are the multiples of 5, so these are customers). A ride still
    missing its customer a sync after its latest change is expired: it stays pending with
    `expired` and the reason naming the limit, and is listed in silver's quarantine (null
    `_airbyte_raw_id`); when its customer arrives it is published and leaves the quarantine.
    Each run is checked against an oracle built from silver's users and the clock; a rebuild of
    the same bronze gives the same tables."""
    t0_ms, hour_ms, limit_us = 1_764_000_000_000, 3_600_000, 30 * 60 * 1_000_000
    expired_reason = "customer not registered within 30m"
    messages, catalog = generate(tmp_path, "--users", "30", "--rides", "300", "--changes", "300", "--seed", "11")
    lines = messages.read_text().splitlines()

    def lags(message: dict) -> bool:
        record = message.get("record") or {}
        return message["type"] == "RECORD" and record.get("stream") == "users" and record["data"]["id"] % 5 == 1

    parsed = [json.loads(line) for line in lines]
    late = [m for m in parsed if lags(m)]
    others = [m for m in parsed if not lags(m)]
    half = len(others) // 2
    syncs = [others[:half], others[half:], late]
    assert late and all(any(m["type"] == "RECORD" for m in part) for part in syncs)

    def stamped(part: list[dict], at_ms: int) -> bytes:
        out = []
        for message in part:
            if message["type"] == "RECORD":
                message = {**message, "record": {**message["record"], "emitted_at": at_ms}}
            out.append(json.dumps(message, separators=(",", ":")))
        return "\n".join(out).encode()

    lake = tmp_path / "lake"
    config = local_config(tmp_path, lake / "bronze")

    def sync(i: int) -> None:
        run = run_dest("write", "--config", str(config), "--catalog", str(catalog), stdin=stamped(syncs[i], t0_ms + i * hour_ms))
        assert run.returncode == 0, run.stderr

    # The model: validate accepts it, and a wait that is no duration is named at its line.
    model = tmp_path / "wait.toml"
    model.write_text('version = 1\n[rides.links]\ncustomer_id = { wait_for = "30min" }\n')
    out = cli("validate", str(model))
    assert out.returncode == 0, out.stderr
    soon = tmp_path / "soon.toml"
    soon.write_text('version = 1\n[rides.links]\ncustomer_id = { wait_for = "soon" }\n')
    out = cli("validate", str(soon))
    assert out.returncode == 1 and "soon.toml: line 3:" in out.stderr and "soon" in out.stderr.split("line 3:", 1)[1], out.stderr

    def micros(frame: pl.DataFrame, column: str) -> list[int]:
        series = frame[column]
        return (series.dt.epoch("us") if series.dtype == pl.Datetime else series.cast(pl.Int64)).to_list()

    def tables() -> dict[str, pl.DataFrame]:
        return {t: ridelake.read_table(str(lake), "silver", t) for t in ("users", "rides", "rides_pending")}

    def expected_pending(silver: dict[str, pl.DataFrame], clock_us: int) -> dict[int, tuple[str, bool]]:
        """The oracle: each pending ride's (reason, expired) from silver's users and the clock."""
        users = silver["users"]
        customers = set(users.filter(pl.col("type") == "customer")["id"].to_list())
        drivers = set(users.filter(pl.col("type") == "driver")["id"].to_list())
        pending = silver["rides_pending"]
        wanted = {}
        for ride, customer, driver, extracted in zip(pending["id"].to_list(), pending["customer_id"].to_list(),
                                                     pending["driver_id"].to_list(), micros(pending, "_cdc_extracted_at")):
            no_customer = customer is None or customer not in customers
            no_driver = driver is not None and driver not in drivers
            assert no_customer or no_driver, f"ride {ride} waits though both its links hold"
            expired = no_customer and clock_us - extracted > limit_us
            reason = expired_reason if expired else "customer not registered" if no_customer else "driver not registered"
            wanted[ride] = (reason, expired)
        return wanted

    def states(pending: pl.DataFrame) -> dict[int, tuple[str, bool]]:
        return {r: (why, e) for r, why, e in zip(pending["id"].to_list(), pending["reason"].to_list(), pending["expired"].to_list())}

    def listed_expired(pending: pl.DataFrame) -> dict[int, str]:
        """The quarantine's expired rides, read with deltalake (not ridelake): id -> rule; checks
        one row per ride, naming the pending ride's latest change."""
        if not (lake / "silver" / "quarantine" / "_delta_log").exists():
            return {}
        quarantine = read_delta(str(lake / "silver" / "quarantine"))
        rows = quarantine.filter(pl.col("_airbyte_raw_id").is_null())
        assert rows["table"].to_list() == ["rides"] * rows.height, rows
        assert rows["id"].n_unique() == rows.height, f"one quarantine row per expired ride: {rows}"
        change = {r: (v, n) for r, v, n in zip(pending["id"].to_list(), pending["_cdc_bronze_version"].to_list(), pending["_cdc_bronze_row"].to_list())}
        for r, v, n, b in zip(rows["id"].to_list(), rows["_cdc_bronze_version"].to_list(), rows["_cdc_bronze_row"].to_list(), rows["bronze_version"].to_list()):
            assert change.get(r) == (v, n) and b == v, f"quarantined expired ride {r} names change {(v, n, b)}, pending holds {change.get(r)}"
        return dict(zip(rows["id"].to_list(), rows["rule"].to_list()))

    # Sync 1, built with the default model first: switching to the limited wait needs a rebuild.
    sync(0)
    plain = ridelake.build_silver(str(lake))
    assert plain["clock_us"] is None and plain["rides_expired"] == 0, plain
    assert "expired" not in ridelake.read_table(str(lake), "silver", "rides_pending").columns
    with pytest.raises(ridelake.ConfigError, match="rebuild"):
        ridelake.build_silver(str(lake), model=model)
    first = ridelake.build_silver(str(lake), model=model, rebuild=True)
    assert first["clock_us"] == t0_ms * 1000 and first["rides_expired"] == 0, first
    silver = tables()
    pending = silver["rides_pending"]
    assert pending.schema["expired"] == pl.Boolean, pending.schema
    assert set(micros(pending, "_cdc_extracted_at")) == {t0_ms * 1000}, "sync 1's rides were extracted at T0"
    assert states(pending) == expected_pending(silver, t0_ms * 1000)
    lagging = pending.filter((pl.col("customer_id") % 5 == 1) & (pl.col("reason") == "customer not registered"))
    assert lagging.height > 0, f"rides wait for the lagging customers: {pending}"
    assert listed_expired(pending) == {}

    # Sync 2, an hour later: sync 1's rides still missing their customer expire; sync 2's wait.
    sync(1)
    second = ridelake.build_silver(str(lake), model=model)
    clock_us = (t0_ms + hour_ms) * 1000
    assert second["rebuild"] is None and second["clock_us"] == clock_us, second
    silver = tables()
    pending = silver["rides_pending"]
    extracted = dict(zip(pending["id"].to_list(), micros(pending, "_cdc_extracted_at")))
    assert set(extracted.values()) <= {t0_ms * 1000, clock_us}, set(extracted.values())
    got, wanted = states(pending), expected_pending(silver, clock_us)
    assert got == wanted, {r: (got.get(r), wanted.get(r)) for r in got.keys() | wanted.keys() if got.get(r) != wanted.get(r)}
    expired = {r for r, (_, e) in got.items() if e}
    assert expired and all(extracted[r] == t0_ms * 1000 for r in expired)
    assert not any(e for r, (_, e) in got.items() if extracted[r] == clock_us), "rides of sync 2 do not expire yet"
    assert any(c % 5 == 1 for c in pending.filter(pl.col("expired"))["customer_id"].to_list()), "lagging customers' rides expire"
    assert listed_expired(pending) == {r: expired_reason for r in expired}
    assert second["rides_expired"] == len(expired), (second["rides_expired"], len(expired))

    # Sync 3: the lagging users arrive; the rides they expire for are published, and leave the
    # quarantine.
    sync(2)
    third = ridelake.build_silver(str(lake), model=model)
    clock_us = (t0_ms + 2 * hour_ms) * 1000
    assert third["rebuild"] is None and third["clock_us"] == clock_us, third
    silver = tables()
    pending, rides = silver["rides_pending"], silver["rides"]
    got, wanted = states(pending), expected_pending(silver, clock_us)
    assert got == wanted, {r: (got.get(r), wanted.get(r)) for r in got.keys() | wanted.keys() if got.get(r) != wanted.get(r)}
    published = set(rides["id"].to_list())
    assert not published & set(got), "a ride is both published and pending"
    released = rides.filter(pl.col("id").is_in(sorted(expired)))
    assert released.height > 0, f"no expired ride was released by its late customer: {sorted(expired)}"
    assert all(c % 5 == 1 for c in released["customer_id"].to_list()), "a lagging customer released them"
    assert expired <= published | set(got), "the rides sync 3 does not change are published or still pending"
    still = {r for r, (_, e) in got.items() if e}
    listed = listed_expired(pending)
    assert listed == {r: expired_reason for r in still}
    assert not set(listed) & published, "a published ride is still quarantined as expired"
    assert third["rides_expired"] == len(still), (third["rides_expired"], len(still))

    # A rebuild of the same bronze gives the same silver: the clock does not depend on when it runs.
    def snapshot() -> dict[str, pl.DataFrame]:
        frames = {t: ridelake.read_table(str(lake), "silver", t) for t in ("rides", "rides_pending")}
        frames["quarantine"] = read_delta(str(lake / "silver" / "quarantine"))
        return {t: f.select(sorted(f.columns)).sort(sorted(f.columns), nulls_last=True) for t, f in frames.items()}

    incremental = snapshot()
    rebuilt = ridelake.build_silver(str(lake), model=model, rebuild=True)
    assert rebuilt["rebuild"] is not None and rebuilt["clock_us"] == clock_us and rebuilt["rides_expired"] == len(still), rebuilt
    again = snapshot()
    for table, frame in incremental.items():
        assert frame.equals(again[table]), f"silver/{table}: incremental\n{frame}\nrebuilt\n{again[table]}"

    # The pending table documents its new column.
    from deltalake import DeltaTable
    comments = {f.name: (f.metadata or {}).get("comment") for f in DeltaTable(str(lake / "silver" / "rides_pending")).schema().fields}
    assert comments.get("expired") and "wait_for" in comments["expired"], comments
