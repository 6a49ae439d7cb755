"""Real CDC through changes of the source's columns: a type widened, then a column dropped.

The application of tests/e2e/test_real_cdc_model.py (`accounts` and `trips`, realcdc.schema.RENAMED,
mapped by models/example-renamed.toml) runs on a private MariaDB; its binlog becomes source-mysql's
messages, the real destination lands them in bronze and ridelake builds silver and gold. Then the
application changes its tables, as applications do, and each following sync declares the columns as
source-mysql's `discover` does after Airbyte's schema refresh (checked against information_schema):

1. Two syncs with the first schema (`trips.distance_m` an INT of metres, silver `distance_km` =
   metres * 0.001): silver and gold == SQL on the database (as in test_real_cdc_model.py).
2. `ALTER TABLE trips MODIFY distance_m DECIMAL(10,1)`: the application adds half a metre to some
   trips and writes fractional metres from then on; the next sync declares `distance_m` a number
   (Kotlin sends JSON numbers, Java binlog rows strings such as "12345.5"). Bronze's `distance_m`
   stays an integer column, the values that do not fit are null there with their JSON in
   `_airbyte_rescued_data`, and no value is lost (bronze's value or the rescued one == the value
   sent, for every record); silver reads them back: silver and gold == SQL again, fractional
   distances included.
3. `ALTER TABLE trips DROP COLUMN driver_stars` (silver `driver_rating`, which silver can do
   without): the next sync's catalog lacks it, bronze keeps the column and records it in the table
   property `ridelake.bronze.absent_columns` (`{"driver_stars": [[from, null]]}`: an open window of
   bronze versions, from that sync's first commit); a silver run with the model stops with `ConfigError`
   (naming `driver_rating` and "no longer sends") and commits nothing, `validate_model` reports it
   at the model's line; with a copy of the model saying `driver_rating = { column = "driver_stars",
   optional = true }` the run goes on: silver == SQL on every other column, and `driver_rating` is
   null for the rides changed since the drop and the value they had before for the others (the SQL
   of gold's comparison takes these values for the dropped column). One more sync, and a rebuild of
   silver from all of bronze, give the same.

Parametrized over the two shapes of source-mysql (`java` 3.x, `kotlin` 3.9+), one seed (SEED).
"""
from __future__ import annotations

import json
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import DEST, local_config, run_dest, write_json
from test_pipeline import GOLD_KEYS
from test_real_cdc import Step
from test_real_cdc_model import MODEL, NAMESPACE, gold_cities, load_model, logical_sql, source_of, translate
from realcdc.compare import check_bronze, check_sync, compare, next_sync, read, sql
from realcdc.fixtures import mariadb, mariadb_template  # noqa: F401 (fixtures)
from realcdc.schema import INTEGER, NUMBER, RENAMED, RIDE_COLUMNS, USER_COLUMNS, Schema
from realcdc.source_mysql import FLAVORS, SourceMySql, check_catalog, configured_catalog, discover
from realcdc.workload import Workload

try:
    import ridelake
except ImportError as error:  # reported by the test that needs it, after the bronze checks
    ridelake = None
    RIDELAKE_IMPORT_ERROR = error

pytestmark = pytest.mark.filterwarnings("ignore:'db' is deprecated:DeprecationWarning")

SEED = 5
ABSENT = "ridelake.bronze.absent_columns"  # the bronze table property (crates/ridelake-core/src/bronze.rs)

ACCOUNTS, TRIPS = RENAMED.users, RENAMED.rides
TRIP_ID = RENAMED.key(TRIPS)
# The widened column: silver rides.distance_km, an INT of metres at the source.
DISTANCE = RENAMED.columns["rides"]["distance_km"].name
WIDEN = f"ALTER TABLE {TRIPS} MODIFY {DISTANCE} DECIMAL(10,1) NULL"
# The dropped column: silver rides.driver_rating (not one silver needs).
DROPPED = "driver_rating"
RATING = RENAMED.columns["rides"][DROPPED].name
DROP = f"ALTER TABLE {TRIPS} DROP COLUMN {RATING}"


def widened(schema: Schema) -> Schema:
    """After WIDEN: `distance_m` a DECIMAL(10,1) (a number in the catalog), the application writing
    tenths of metres (0.0001 km)."""
    return schema.modify("rides", "distance_km", WIDEN, type=NUMBER, quantum=Decimal("0.0001"))


def dropped(schema: Schema) -> Schema:
    return schema.drop("rides", DROPPED, DROP)


# -- the model -----------------------------------------------------------------------------------------
def mapping_line(lines: list[str], table: str, silver: str) -> int | None:
    """The index of the line mapping `silver` under `[<table>.columns]` (None when not mapped)."""
    section = None
    for index, line in enumerate(lines):
        header = re.match(r"\s*\[([^\]]+)\]", line)
        if header:
            section = header.group(1).strip()
        elif section == f"{table}.columns" and re.match(rf"\s*{silver}\s*=", line):
            return index
    return None


def optional_model(tmp: Path) -> Path:
    """The model with `driver_rating = { column = "driver_stars", optional = true }` under
    [rides.columns], replacing the model's own mapping of it (a TOML key once)."""
    lines = MODEL.read_text().splitlines(keepends=True)
    entry = f'{DROPPED} = {{ column = "{RATING}", optional = true }}\n'
    index = mapping_line(lines, "rides", DROPPED)
    if index is None:
        header = next(i for i, line in enumerate(lines) if line.strip() == "[rides.columns]")
        lines.insert(header + 1, entry)
    else:
        lines[index] = entry
    path = tmp / f"optional-{MODEL.name}"
    path.write_text("".join(lines))
    model = load_model(path)
    assert source_of(model["rides"]["columns"][DROPPED]) == {"column": RATING, "optional": True}
    assert {k: v for k, v in model["rides"]["columns"].items() if k != DROPPED} == \
        {k: v for k, v in load_model()["rides"]["columns"].items() if k != DROPPED}
    return path


# -- what the lake must hold, from the database ------------------------------------------------------------
def expected_rows(model: dict, workload: Workload, rating=None) -> dict[str, dict]:
    """The database now in silver's terms (logical table -> id -> row, by the model's rules);
    `rating(ride id)`: the value silver must hold for the dropped column (the database has none)."""
    out = {}
    for table, columns in (("users", USER_COLUMNS), ("rides", RIDE_COLUMNS)):
        out[table] = {}
        for key, row in workload.rows(model[table]["stream"]).items():
            if table == "rides" and rating is not None:
                row = {**row, RATING: rating(key)}
            logical = translate(model, table, row, columns)
            out[table][logical["id"]] = logical
    return out


def published_sql(schema: Schema, rating: dict[int, int | None] | None = None) -> str:
    """`WITH pub AS (...)`: the published rides in logical columns, translated in SQL from the
    application's description (as test_real_cdc_model.published_sql); after the drop, the column's
    values silver must hold (`rating`: ride id -> value) as a CASE."""
    rides, users = schema.columns["rides"], schema.columns["users"]
    select = [f"{logical_sql(column, 'r')} AS {name}" for name, column in rides.items()]
    if rating is not None:
        assert DROPPED not in rides
        cases = " ".join(f"WHEN {k} THEN {v}" for k, v in sorted(rating.items()) if v is not None)
        select.append(f"(CASE r.{rides['id'].name} {cases} ELSE NULL END) AS {DROPPED}" if cases
                      else f"CAST(NULL AS SIGNED) AS {DROPPED}")
    uid, kind = users["id"].name, users["type"]
    return f"""WITH pub AS (
    SELECT {', '.join(select)}
    FROM {schema.rides} r JOIN {schema.users} c ON c.{uid} = r.{rides['customer_id'].name}
    LEFT JOIN {schema.users} d ON d.{uid} = r.{rides['driver_id'].name}
    WHERE {logical_sql(kind, 'c')} = 'customer' AND (r.{rides['driver_id'].name} IS NULL OR {logical_sql(kind, 'd')} = 'driver'))"""


# -- bronze --------------------------------------------------------------------------------------------
def bronze_table(lake: Path, stream: str):
    from deltalake import DeltaTable
    return DeltaTable(str(lake / "bronze" / NAMESPACE / stream))


def absent_columns(lake: Path, stream: str) -> dict:
    text = bronze_table(lake, stream).metadata().configuration.get(ABSENT)
    return json.loads(text) if text else {}


def as_decimal(value) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def check_lossless_bronze(lake: Path, syncs: list) -> tuple[list[str], int]:
    """Bronze after the widening: `accounts` with nothing rescued; `trips` with `distance_m` still an
    integer column, nothing but `distance_m` rescued or changed, and for every record emitted so far
    the value sent, as bronze's column or, when it did not fit, as the rescued JSON (a multiset of
    (trip, value)). Returns (problems, how many rows hold a rescued distance_m)."""
    import pyarrow as pa
    problems = []
    accounts = check_bronze(lake, syncs, NAMESPACE, streams=[ACCOUNTS])
    problems += accounts
    trips = bronze_table(lake, TRIPS).to_pyarrow_dataset()
    kind = trips.schema.field(DISTANCE).type
    if not pa.types.is_integer(kind):
        problems.append(f"bronze {TRIPS}.{DISTANCE} is {kind}, not its first type (an integer)")
    rows = trips.to_table(columns=[TRIP_ID, DISTANCE, "_airbyte_rescued_data", "_airbyte_meta"]).to_pylist()
    records = [r["data"] for s in syncs for r in s.records if r["stream"] == TRIPS]
    if len(rows) != len(records):
        problems.append(f"bronze {TRIPS}: {len(rows)} rows, {len(records)} records emitted")
    stored, rescued_rows, others = Counter(), 0, []
    for row in rows:
        rescued = json.loads(row["_airbyte_rescued_data"]) if row["_airbyte_rescued_data"] else {}
        if set(rescued) - {DISTANCE}:
            others.append(f"rescued {sorted(rescued)}")
        changes = (row["_airbyte_meta"] or {}).get("changes") or []
        if {c["field"] for c in changes} - {DISTANCE}:
            others.append(f"changes {changes}")
        if DISTANCE in rescued:
            rescued_rows += 1
            value = as_decimal(rescued[DISTANCE])
        else:
            value = as_decimal(row[DISTANCE])
        stored[(row[TRIP_ID], value)] += 1
    if others:
        problems.append(f"bronze {TRIPS}: {len(others)} rows with other columns rescued or changed, e.g. {others[:3]}")
    sent = Counter((int(d[TRIP_ID]), as_decimal(d[DISTANCE])) for d in records)
    if sent != stored:
        problems.append(f"bronze {TRIPS}: (trip, {DISTANCE}) sent but not in bronze: {sorted((sent - stored).elements(), key=str)[:5]}, "
                        f"in bronze but not sent: {sorted((stored - sent).elements(), key=str)[:5]}")
    return problems, rescued_rows


# -- the application's changes ---------------------------------------------------------------------------
def add_half_metre(workload: Workload) -> list[int]:
    """One transaction adding 0.5 m to some completed trips (gold counts their distance) and some
    others; returns their ids."""
    r = workload.r
    done = workload.ids(f"SELECT {r.id} FROM {r} WHERE {r.distance_km} IS NOT NULL AND {r.eq('status', 'completed')} ORDER BY {r.id}", table="rides")
    rest = workload.ids(f"SELECT {r.id} FROM {r} WHERE {r.distance_km} IS NOT NULL AND NOT {r.eq('status', 'completed')} ORDER BY {r.id}", table="rides")
    chosen = workload.rng.sample(done, min(len(done), 6)) + workload.rng.sample(rest, min(len(rest), 3))
    assert chosen, "HARNESS: no trip with a distance"
    with workload.transaction() as cur:
        cur.execute(f"UPDATE {r} SET {r.distance_km} = {r.distance_km} + 0.5, {r.updated_at} = %s "
                    f"WHERE {r.id} IN ({', '.join(['%s'] * len(chosen))})", [r.enc("updated_at", workload.stamp()), *chosen])
    return chosen


def touch(workload: Workload, ids: list[int]) -> None:
    """One transaction changing the payment method of `ids` (changes without the dropped column)."""
    r = workload.r
    with workload.transaction() as cur:
        cur.execute(f"UPDATE {r} SET {r.payment_method} = %s, {r.updated_at} = %s WHERE {r.id} IN ({', '.join(['%s'] * len(ids))})",
                    ["cash", r.enc("updated_at", workload.stamp()), *ids])


def fractional_distances(rows) -> int:
    """How many rows hold a distance (km) that is not a whole number of metres."""
    return sum(1 for r in rows if r["distance_km"] is not None and abs(r["distance_km"] * 1000 - round(r["distance_km"] * 1000)) > 1e-6)


# -- the test ---------------------------------------------------------------------------------------
def land_checked(step: Step, workload: Workload, source: SourceMySql, mariadb, config: Path, tmp_path: Path, log: list[str],
                 label: str) -> tuple[bool, str]:
    """A sync (the application's transactions first), checked against the database, landed in bronze
    by the destination (its summary appended to `log`); returns (whether the records bring the
    database's state, the context for messages, starting with `label`)."""
    sync = next_sync(step, workload, source, mariadb)
    log.append(sync.summary())
    context = f"{label}, schema {source.schema.name}\n  " + "\n  ".join(log)
    schema = source.schema
    harness, complete, _ = check_sync(mariadb, workload, source, sync)
    assert not harness, f"HARNESS: {harness}\n  {context}"
    catalog = write_json(tmp_path / f"catalog-{sync.number}.json", configured_catalog(NAMESPACE, sync_id=sync.number, schema=schema))
    run = run_dest("write", "--config", str(config), "--catalog", str(catalog), stdin=sync.jsonl())
    assert run.returncode == 0, f"destination failed at sync {sync.number}: {run.stderr[-3000:]}\n  {context}"
    echoed = run.states
    assert echoed and echoed[-1]["global"] == sync.states[-1]["global"], f"the last state was not echoed\n  {context}"
    assert sum(s["destinationStats"]["recordCount"] for s in echoed) == len(sync.records), context
    return complete, context


@pytest.mark.parametrize("flavor", FLAVORS)
def test_real_cdc_through_a_widened_and_a_dropped_column(flavor, mariadb, tmp_path):
    if not DEST.exists():
        pytest.fail(f"{DEST} is not built")
    model = load_model()
    # The premises: the model reads distance_km from an integer column of metres, driver_rating
    # from driver_stars.
    assert source_of(model["rides"]["columns"]["distance_km"]) == {"column": DISTANCE, "scale": 0.001}
    assert RENAMED.columns["rides"]["distance_km"].type == INTEGER
    assert source_of(model["rides"]["columns"][DROPPED])["column"] == RATING
    cities = gold_cities(model)

    workload = Workload(mariadb, NAMESPACE, SEED, schema=RENAMED)
    workload.create_schema()
    assert not check_catalog(mariadb, NAMESPACE, RENAMED), "HARNESS: the declared catalog is not what source-mysql discovers"
    workload.seed_data()
    source = SourceMySql(mariadb, NAMESPACE, state_every=25, schema=RENAMED)
    lake = tmp_path / "lake"
    config = local_config(tmp_path, lake / "bronze")
    log: list[str] = []

    def land(step: Step) -> tuple[bool, str]:
        complete, context = land_checked(step, workload, source, mariadb, config, tmp_path, log, f"{flavor}, seed {SEED}")
        if ridelake is None:
            pytest.fail(f"ridelake is not importable ({RIDELAKE_IMPORT_ERROR}); bronze checks passed\n  {context}")
        return complete, context

    def build(model_path: Path, context: str, **options) -> None:
        try:
            ridelake.build_silver(str(lake), NAMESPACE, model=str(model_path), **options)
            ridelake.build_gold(str(lake), NAMESPACE, model=str(model_path))
        except ridelake.RidelakeError as error:
            pytest.fail(f"silver/gold build with {model_path.name} failed: {type(error).__name__}: {error}\n  {context}")

    def check(current: dict, published: str, context: str, when: str) -> None:
        problems = compare(lake, mariadb, NAMESPACE, current, deleted_users=workload.deleted_users,
                           deleted_rides=workload.deleted_rides, gold_keys=GOLD_KEYS, published=published, cities=cities)
        assert not problems, f"silver/gold differ from the database {when}:\n    " + "\n    ".join(problems) + f"\n  {context}"

    def validate(model_path: Path) -> list[str]:
        return ridelake.validate_model(str(model_path), str(lake), NAMESPACE)

    try:
        # 1. the first schema
        for step in (Step(0, flavor), Step(30, flavor)):
            complete, context = land(step)
            bronze = check_bronze(lake, source.syncs, NAMESPACE, streams=list(RENAMED.streams))
            assert not bronze, f"bronze: {bronze}\n  {context}"
            assert validate(MODEL) == [], context
            build(MODEL, context)
            if complete:
                check(expected_rows(model, workload), published_sql(workload.schema), context, f"after sync {len(source.syncs)}")
        assert complete, f"HARNESS: the second sync must bring the database's state\n  {context}"

        # 2. distance_m made DECIMAL(10,1): fractional metres
        workload.alter(widened(workload.schema))
        source.use_schema(workload.schema)  # Airbyte's schema refresh
        discovered, _ = discover(mariadb, NAMESPACE, TRIPS)
        assert discovered[DISTANCE] == NUMBER, f"HARNESS: {DISTANCE} discovered as {discovered[DISTANCE]}"
        assert not check_catalog(mariadb, NAMESPACE, workload.schema), "HARNESS: the declared catalog is not what source-mysql discovers"
        halves = add_half_metre(workload)
        complete, context = land(Step(30, flavor))
        assert complete, f"HARNESS: a binlog sync must bring the database's state\n  {context}"
        problems, rescued = check_lossless_bronze(lake, source.syncs)
        assert not problems, f"bronze after {WIDEN}: {problems}\n  {context}"
        assert rescued, f"no bronze row holds {DISTANCE} in _airbyte_rescued_data after {WIDEN}\n  {context}"
        assert absent_columns(lake, TRIPS) == {} and absent_columns(lake, ACCOUNTS) == {}, context
        assert validate(MODEL) == [], context
        build(MODEL, context)
        check(expected_rows(model, workload), published_sql(workload.schema), context, f"after {WIDEN}")
        fractional = sql(mariadb, NAMESPACE, f"SELECT COUNT(*) FROM {TRIPS} WHERE {DISTANCE} <> ROUND({DISTANCE})")[0][0]
        assert fractional >= 1, f"HARNESS: no fractional distance in the database (+0.5 m on {halves})\n  {context}"
        in_silver = sum(fractional_distances(frame.iter_rows(named=True))
                        for frame in (read(lake, "silver", "rides"), read(lake, "silver", "rides_pending")) if frame is not None)
        assert in_silver == fractional, f"{fractional} trips with fractional metres in the database, {in_silver} in silver\n  {context}"
        log[-1] += f" [{rescued} bronze rows with {DISTANCE} rescued, {fractional} fractional distances]"

        # 3. driver_stars dropped
        before = workload.rows(TRIPS)  # as silver has them: every change has landed
        bronze_version = bronze_table(lake, TRIPS).version()
        workload.alter(dropped(workload.schema))
        source.use_schema(workload.schema)
        discovered, _ = discover(mariadb, NAMESPACE, TRIPS)
        assert RATING not in discovered, f"HARNESS: {RATING} still discovered"
        assert not check_catalog(mariadb, NAMESPACE, workload.schema), "HARNESS: the declared catalog is not what source-mysql discovers"
        rated = sorted(k for k, row in before.items() if row[RATING] is not None)
        assert rated, "HARNESS: no trip has a driver rating before the drop"
        touch(workload, workload.rng.sample(rated, min(len(rated), 4)))
        first_after = len(source.syncs)
        complete, context = land(Step(30, flavor))
        assert complete, f"HARNESS: a binlog sync must bring the database's state\n  {context}"
        absent = absent_columns(lake, TRIPS)
        windows = absent.get(RATING)
        assert list(absent) == [RATING] and len(windows) == 1 and windows[0][1] is None \
            and bronze_version < windows[0][0] <= bronze_table(lake, TRIPS).version(), \
            f"bronze {TRIPS} {ABSENT} = {absent} (version {bronze_version} before the sync)\n  {context}"
        assert absent_columns(lake, ACCOUNTS) == {}, context
        assert RATING in bronze_table(lake, TRIPS).to_pyarrow_dataset().schema.names, f"bronze lost {RATING}\n  {context}"
        problems, _ = check_lossless_bronze(lake, source.syncs)
        assert not problems, f"bronze after {DROP}: {problems}\n  {context}"

        # the model reads the dropped column: the run stops, nothing is committed
        from deltalake import DeltaTable
        silver_versions = {t: DeltaTable(str(lake / "silver" / t)).version() for t in ("users", "rides")}
        with pytest.raises(ridelake.ConfigError) as caught:
            ridelake.build_silver(str(lake), NAMESPACE, model=str(MODEL))
        message = str(caught.value)
        assert f"rides.{DROPPED}" in message and RATING in message and "no longer sends" in message, message
        assert {t: DeltaTable(str(lake / "silver" / t)).version() for t in ("users", "rides")} == silver_versions, \
            f"the stopped run committed to silver\n  {context}"
        found = validate(MODEL)
        line = mapping_line(MODEL.read_text().splitlines(), "rides", DROPPED) + 1
        named = [p for p in found if f"rides.{DROPPED}" in p and "no longer sends" in p
                 and re.search(rf"{re.escape(MODEL.name)}(?::|: line ){line}(?!\d)", p)]
        assert named and len(found) == 1, f"validate_model after {DROP}: {found} (expected one problem at line {line})\n  {context}"

        # the model says the column may go
        optional = optional_model(tmp_path)
        assert validate(optional) == [], context

        def check_after_drop(context: str, when: str) -> str:
            touched = {int(r["data"][TRIP_ID]) for s in source.syncs[first_after:] for r in s.records if r["stream"] == TRIPS}

            def rating(key: int):
                """What silver's driver_rating must be: null for a ride changed since the drop, else
                the value it had."""
                if key in touched:
                    return None
                assert key in before, f"HARNESS: trip {key} unchanged since the drop but not there before it"
                return before[key][RATING]

            current = expected_rows(model, workload, rating)
            ratings = {k: row[DROPPED] for k, row in current["rides"].items()}
            nulled = [k for k, v in ratings.items() if v is None and before.get(k, {}).get(RATING) is not None]
            kept = [k for k, v in ratings.items() if v is not None]
            assert nulled and kept, f"HARNESS: no rated trip changed since the drop ({nulled}) or none unchanged ({kept})\n  {context}"
            check(current, published_sql(workload.schema, ratings), context, when)
            return f"{len(nulled)} ratings nulled, {len(kept)} kept"

        build(optional, context)
        log[-1] += f" [{check_after_drop(context, f'after {DROP}, with {optional.name}')}]"
        complete, context = land(Step(20, flavor))
        assert complete, f"HARNESS: a binlog sync must bring the database's state\n  {context}"
        problems, _ = check_lossless_bronze(lake, source.syncs)
        assert not problems, f"bronze: {problems}\n  {context}"
        assert absent_columns(lake, TRIPS) == absent, context
        build(optional, context)
        log[-1] += f" [{check_after_drop(context, f'after one more sync, with {optional.name}')}]"
        # The same from all of bronze at once.
        build(optional, context, rebuild=True)
        check_after_drop(context, f"after a rebuild with {optional.name}")
        print(f"{flavor}, seed {SEED}: {dict(workload.counts)}\n  " + "\n  ".join(log))
    finally:
        workload.close()
