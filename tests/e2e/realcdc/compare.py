"""What the lake must hold, from the database, and compact differences: the comparisons of the
real-CDC tests (tests/e2e/test_real_cdc.py, tests/e2e/test_real_cdc_model.py).

Silver and gold are read with the `deltalake` package (a reader independent of ridelake's) and
compared, in logical terms (ridelake's column names and values), with the database's rows and with
SQL aggregates on the database. `published` is the SQL that gives the published rides in logical
terms (`WITH pub AS (...)`): for today's tables, `PUBLISHED`; for another application schema, a
translation of its tables into the same columns (tests/e2e/test_real_cdc_model.py).
"""
from __future__ import annotations

import math
from collections import defaultdict
from contextlib import closing
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from .mariadb import MariaDB
from .schema import RIDE_COLUMNS, USER_COLUMNS
from .source_mysql import JAVA, check_meta, check_positions, replay
from .workload import CITIES

NO_PICKUP_CITY = "unknown"
MAX_CITY_RADIUS_KM = 60.0


# -- value comparison -----------------------------------------------------------------------------
def norm(value):
    """Python value for comparisons: datetimes naive UTC, decimals as floats."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    if isinstance(value, Decimal):
        return float(value)
    return value


def same(a, b) -> bool:
    a, b = norm(a), norm(b)
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    return a == b


def show(value) -> str:
    value = norm(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value)


def diff(name: str, expected: dict, actual: dict, columns: list[str], limit: int = 10) -> list[str]:
    """Compact differences of two keyed row sets: keys only (first `limit`), plus up to three
    differing columns of the first differing rows."""
    lines = []
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    if missing:
        lines.append(f"{name}: {len(missing)} missing: {missing[:limit]}")
    if extra:
        lines.append(f"{name}: {len(extra)} unexpected: {extra[:limit]}")
    differing = []
    for key in sorted(set(expected) & set(actual)):
        bad = [c for c in columns if not same(expected[key].get(c), actual[key].get(c))]
        if bad:
            differing.append((key, bad))
    if differing:
        lines.append(f"{name}: {len(differing)} differ: {[k for k, _ in differing[:limit]]}")
        for key, bad in differing[:3]:
            shown = ", ".join(f"{c}: db {show(expected[key].get(c))} / lake {show(actual[key].get(c))}" for c in bad[:3])
            lines.append(f"    {key}: {shown}{' ...' if len(bad) > 3 else ''}")
    return lines


# -- the lake ---------------------------------------------------------------------------------------
def silver_folders(model: Path | None) -> dict[str, str]:
    """The folders of silver's tables under `<lake>/silver/` as the model file names them (this
    harness's own reading of `[users] table` and `[rides] table`, whose pending and deleted rides
    are `<rides>_pending` and `<rides>_deleted`): logical table -> folder."""
    import tomllib
    names = {"users": "users", "rides": "rides"}
    if model is not None:
        text = tomllib.loads(Path(model).read_text())
        for table in names:
            names[table] = text.get(table, {}).get("table", table)
    return {"users": names["users"], "rides": names["rides"], "rides_pending": names["rides"] + "_pending",
            "rides_deleted": names["rides"] + "_deleted", "quarantine": "quarantine"}


def read(lake: Path, layer: str, table: str, model: Path | None = None):
    """A silver or gold table as a polars frame (None when absent), read with the `deltalake`
    package: a reader independent of ridelake's. A silver table is named as the code knows it
    (`users`, `rides`, ...) and found where `model` puts it."""
    import polars as pl
    from deltalake import DeltaTable
    folder = silver_folders(model).get(table, table) if layer == "silver" else table
    path = str(lake / layer / folder)
    if not DeltaTable.is_deltatable(path):
        return None
    return pl.from_arrow(DeltaTable(path).to_pyarrow_dataset().to_table())


def keyed(frame, keys: list[str]) -> tuple[dict, list]:
    """Rows by key, and the keys seen more than once."""
    rows, twice = {}, []
    if frame is None:
        return rows, twice
    for row in frame.iter_rows(named=True):
        key = row[keys[0]] if len(keys) == 1 else tuple(row[k] for k in keys)
        if key in rows:
            twice.append(key)
        rows[key] = row
    return rows, twice


def check_bronze(lake: Path, syncs: list, namespace: str, streams=("users", "rides")) -> list[str]:
    """Bronze holds every record emitted so far, with no value rescued or nulled (harness + destination)."""
    from deltalake import DeltaTable
    problems = []
    for stream in streams:
        emitted = sum(1 for s in syncs for r in s.records if r["stream"] == stream)
        table = DeltaTable(str(lake / "bronze" / namespace / stream)).to_pyarrow_dataset().to_table(
            columns=["_airbyte_rescued_data", "_airbyte_meta"])
        if table.num_rows != emitted:
            problems.append(f"bronze {stream}: {table.num_rows} rows, {emitted} records emitted")
        rescued = [v for v in table.column("_airbyte_rescued_data").to_pylist() if v]
        if rescued:
            problems.append(f"bronze {stream}: {len(rescued)} rows with rescued values, e.g. {rescued[0][:300]}")
        changes = [m["changes"] for m in table.column("_airbyte_meta").to_pylist() if m and m.get("changes")]
        if changes:
            problems.append(f"bronze {stream}: {len(changes)} rows with _airbyte_meta changes, e.g. {str(changes[0])[:300]}")
    return problems


# -- what the lake must hold, from the database ------------------------------------------------------
# Gold's cities by default: (name, lat, lon) and the radius (a model's [gold] replaces them).
DEFAULT_GOLD_CITIES = ([(name, lat, lon) for name, lat, lon, _ in CITIES], MAX_CITY_RADIUS_KM)


def city_of(lat, lon, cities=DEFAULT_GOLD_CITIES) -> str:
    if lat is None or lon is None:
        return NO_PICKUP_CITY
    lat, lon = float(lat), float(lon)
    centers, radius = cities
    best = None
    for name, clat, clon in centers:
        p1, p2 = math.radians(lat), math.radians(clat)
        a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(clon - lon) / 2) ** 2
        km = 6371.0 * 2.0 * math.asin(math.sqrt(a))
        if km <= radius and (best is None or km < best[0]):
            best = (km, name)
    return best[1] if best else "other"


PUBLISHED = """WITH pub AS (
    SELECT r.* FROM rides r JOIN users c ON c.id = r.customer_id LEFT JOIN users d ON d.id = r.driver_id
    WHERE c.type = 'customer' AND (r.driver_id IS NULL OR d.type = 'driver'))"""


def sql(db: MariaDB, database: str, query: str) -> list[tuple]:
    with closing(db.connect(database)) as conn, conn.cursor() as cur:
        cur.execute(query)
        return list(cur.fetchall())


def expected_gold(db: MariaDB, database: str, published: str = PUBLISHED) -> dict[str, dict]:
    """Gold's aggregates by SQL over `published` (a `WITH pub AS (...)` of the published rides in
    logical columns, `requested_at` in UTC)."""
    done = "status = 'completed'"
    out = {}
    out["monthly_distance"] = {
        (y, m): {"rides": n, "completed": c, "distance_km": dist, "gross_fare": fare}
        for y, m, n, c, dist, fare in sql(db, database, f"""{published}
            SELECT YEAR(requested_at), MONTH(requested_at), COUNT(*), SUM({done}),
                   COALESCE(SUM(IF({done}, distance_km, NULL)), 0), COALESCE(SUM(IF({done}, fare_amount, NULL)), 0)
            FROM pub GROUP BY 1, 2""")}
    out["daily_totals"] = {
        (y, m, d): {"requested": n, "completed": c, "cancelled": x, "distance_km": dist, "gross_fare": fare}
        for y, m, d, n, c, x, dist, fare in sql(db, database, f"""{published}
            SELECT YEAR(requested_at), MONTH(requested_at), DAY(requested_at), COUNT(*), SUM({done}),
                   SUM(status = 'cancelled'), COALESCE(SUM(IF({done}, distance_km, NULL)), 0),
                   COALESCE(SUM(IF({done}, fare_amount, NULL)), 0)
            FROM pub GROUP BY 1, 2, 3""")}
    for table, party, rating in (("driver_stats", "driver_id", "driver_rating"), ("customer_totals", "customer_id", "customer_rating")):
        rows = {}
        for key, n, c, x, dist, fare, rsum, rcount, first, last in sql(db, database, f"""{published}
                SELECT {party}, COUNT(*), SUM({done}), SUM(status = 'cancelled'),
                       COALESCE(SUM(IF({done}, distance_km, NULL)), 0), COALESCE(SUM(IF({done}, fare_amount, NULL)), 0),
                       SUM(IF({done}, {rating}, NULL)), SUM({done} AND {rating} IS NOT NULL), MIN(requested_at), MAX(requested_at)
                FROM pub WHERE {party} IS NOT NULL GROUP BY 1"""):
            rows[key] = {"rides": n, "completed": c, "cancelled": x, "distance_km": dist, "fare": fare,
                         "rating_count": rcount, "mean_rating": float(rsum) / int(rcount) if rcount else None,
                         "first_ride_at": first, "last_ride_at": last, "cancellation_rate": int(x) / int(n)}
        out[table] = rows
    return out


def expected_city_kpis(published: list[dict], cities=DEFAULT_GOLD_CITIES) -> dict:
    groups = defaultdict(list)
    for r in published:
        t = r["requested_at"]
        groups[(t.year, t.month, t.day, city_of(r["pickup_lat"], r["pickup_lon"], cities))].append(r)
    out = {}
    for key, rides in groups.items():
        done = [r for r in rides if r["status"] == "completed"]
        waits = [(r["accepted_at"] - r["requested_at"]).total_seconds() for r in rides if r["accepted_at"] is not None]
        durations = [r["duration_s"] for r in done if r["duration_s"] is not None]
        cancelled = sum(r["status"] == "cancelled" for r in rides)
        out[key] = {
            "requested": len(rides), "completed": len(done), "cancelled": cancelled,
            "gross_fare": sum(float(r["fare_amount"]) for r in done if r["fare_amount"] is not None),
            "distance_km": sum(float(r["distance_km"]) for r in done if r["distance_km"] is not None),
            "active_drivers": len({r["driver_id"] for r in done if r["driver_id"] is not None}),
            "active_customers": len({r["customer_id"] for r in rides}),
            "mean_wait_s": sum(waits) / len(waits) if waits else None,
            "mean_duration_s": sum(durations) / len(durations) if durations else None,
            "cancellation_rate": cancelled / len(rides),
        }
    return out


def compare(lake: Path, db: MariaDB, database: str, current: dict[str, dict], *, deleted_users, deleted_rides,
            gold_keys: dict[str, list[str]], published: str = PUBLISHED, cities=DEFAULT_GOLD_CITIES,
            model: Path | None = None) -> list[str]:
    """Silver and gold against the database now (`current`: its rows by logical table and id, in
    logical columns and values; `cities`: gold's centers and radius; `model`: the model file, which
    names silver's tables); a list of compact differences."""
    problems = []
    users = current["users"]
    rides = current["rides"]

    # silver users
    silver_users, twice = keyed(read(lake, "silver", "users", model), ["id"])
    if twice:
        problems.append(f"silver users: ids twice: {sorted(set(twice))[:10]}")
    alive = {k: v for k, v in silver_users.items() if not v.get("is_deleted")}
    problems += diff("silver users (not deleted) vs db users", users, alive, USER_COLUMNS)
    resurrected = sorted(k for k in set(deleted_users) - set(users) if k in alive)
    if resurrected:
        problems.append(f"silver users: deleted in the db but not is_deleted: {resurrected[:10]}")

    # silver rides / pending
    def is_published(r):
        return users[r["customer_id"]]["type"] == "customer" and (r["driver_id"] is None or users[r["driver_id"]]["type"] == "driver")

    want_rides = {k: v for k, v in rides.items() if is_published(v)}
    want_pending = {k: v for k, v in rides.items() if not is_published(v)}
    silver_rides, twice = keyed(read(lake, "silver", "rides", model), ["id"])
    if twice:
        problems.append(f"silver rides: ids twice: {sorted(set(twice))[:10]}")
    pending, twice = keyed(read(lake, "silver", "rides_pending", model), ["id"])
    if twice:
        problems.append(f"silver rides_pending: ids twice: {sorted(set(twice))[:10]}")
    both = sorted(set(silver_rides) & set(pending))
    if both:
        problems.append(f"silver: rides both published and pending: {both[:10]}")
    gone = set(deleted_rides) - set(rides)
    for name, table in (("rides", silver_rides), ("rides_pending", pending)):
        back = sorted(gone & set(table))
        if back:
            problems.append(f"silver {name}: rides deleted in the db: {back[:10]}")
    problems += diff("silver rides vs db published rides", want_rides, silver_rides, RIDE_COLUMNS)
    problems += diff("silver rides_pending vs db other rides", want_pending, pending, RIDE_COLUMNS)

    # gold
    gold = {t: read(lake, "gold", t) for t in gold_keys}
    for table, keys in gold_keys.items():
        frame = gold[table]
        if frame is None:
            if want_rides:
                problems.append(f"gold {table}: missing table")
            continue
        for k in keys:
            if k not in frame.columns:
                problems.append(f"gold {table}: no column {k}")
            elif frame[k].null_count():
                problems.append(f"gold {table}: {frame[k].null_count()} null {k}")
    expected = expected_gold(db, database, published)
    for table, keys in (("monthly_distance", ["year", "month"]), ("driver_stats", ["driver_id"]), ("customer_totals", ["customer_id"])):
        if gold[table] is not None:
            actual, twice = keyed(gold[table], keys)
            columns = list(next(iter(expected[table].values()), {}).keys())
            problems += diff(f"gold {table}", expected[table], actual, columns)
            if twice:
                problems.append(f"gold {table}: keys twice: {twice[:10]}")
    kpis = gold["daily_city_kpis"]
    if kpis is not None:
        totals = defaultdict(lambda: defaultdict(float))
        for row in kpis.iter_rows(named=True):
            for c in ("requested", "completed", "cancelled", "distance_km", "gross_fare"):
                totals[(row["year"], row["month"], row["day"])][c] += row[c] or 0
        problems += diff("gold daily_city_kpis per-day totals", expected["daily_totals"], totals,
                         ["requested", "completed", "cancelled", "distance_km", "gross_fare"])
        by_city, twice = keyed(kpis, gold_keys["daily_city_kpis"])
        want = expected_city_kpis(list(want_rides.values()), cities)
        problems += diff("gold daily_city_kpis per (day, city)", want, by_city, list(next(iter(want.values()), {}).keys()))
    return problems


def during_writes(workload):
    """The application keeps writing while a snapshot reads (0 to 3 transactions per stage)."""
    def run(stage: str) -> int:
        return sum(1 for _ in range(workload.rng.randrange(0, 4)) if workload.phase(1, gap_days=None))
    return run


def check_sync(db: MariaDB, workload, source, sync) -> tuple[list[str], bool, dict]:
    """The harness against the database itself after `sync` (the last of `source`'s): its meta
    fields are consistent, its binlog rows point at the server's own row events, and the records
    replayed in emission order equal the database (they may not only when a Kotlin snapshot read
    while the application wrote: the next sync brings those writes). Returns (problems, whether
    the records bring the database's state, the database's rows by source table)."""
    schema = source.schema
    problems = check_meta(source.syncs) + check_positions(db, sync, schema)
    replayed = replay(source.syncs, schema)
    stored = {t: workload.rows(t) for t in schema.streams}
    complete = replayed == stored
    if not complete and (sync.flavor == JAVA or sync.during_writes == 0):
        problems.append("the records replayed in emission order differ from the database: " + "; ".join(
            d for t in stored for d in diff(t, stored[t], replayed[t], schema.source_columns(t))))
    return problems, complete, stored


def next_sync(step, workload, source, db: MariaDB):
    """One step of a scenario: the application's transactions, RESET MASTER when asked, then a sync
    that starts 1 to 60 minutes later (a snapshot with the application writing while it reads)."""
    if step.transactions:
        workload.phase(step.transactions)
    if step.reset_master:
        db.reset_master()
    previous = source.syncs[-1].started_at if source.syncs else workload.now
    started = max(workload.now, previous) + timedelta(seconds=workload.rng.randrange(60, 3600))
    workload.now = started
    snapshot_next = source.offset is None or step.reset_master
    return source.read(step.flavor, started, during_writes(workload) if snapshot_next else None)
