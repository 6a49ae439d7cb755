"""Real CDC from an application whose tables have composite primary keys, mapped by
models/example-composite.toml.

The application numbers members and journeys per region: `members PRIMARY KEY (region, member_no)`,
`journeys PRIMARY KEY (region, journey_no)`, with foreign keys `(rider_region, rider_no)` and
`(driver_region, driver_no)` to members. Every region counts from 1, so the same number names a
member (or a journey) in several regions: a single-column key would merge them. Two region codes
hold `|` and `\\`, the characters silver's composite key escapes. A rider may ride in another
region than their own.

The application's transactions (this file's own, written in SQL against the server): members join
(several in one INSERT), riders request journeys, drivers are assigned, journeys start, finish (with
distance and fare) or are cancelled; a journey is renumbered or moved to another region (an UPDATE
of its key: source-mysql emits a delete of the old key and an insert of the new one), deleted, and
its key inserted again later; members are renamed, some riders become drivers (their journeys then
wait for a registered customer), members without journeys leave; a multi-row UPDATE adds a fee to
one region's finished journeys. The binlog of a private MariaDB server becomes source-mysql's
messages in its Java (3.x) or Kotlin (3.9+) shape, the real destination lands them in bronze, and
ridelake builds silver and gold with the model after every sync. The first sync is a snapshot during
which the application keeps writing, so that journeys can arrive before their members.

After every sync: `validate_model` is [] and, when the records bring the database's current state:
silver and gold == SQL on the database (realcdc.compare.compare): silver users (not deleted) and
rides keyed by the SQL translation of the key (`CONCAT` of the `REPLACE`-escaped values), rides
whose rider is a registered rider and whose driver is null or a registered driver published, the
others pending; no key twice, deleted and renumbered keys in neither; gold's monthly distance,
driver and customer totals and daily KPIs by SQL `GROUP BY` on the same keys. Silver also holds the
key's own columns (`region`, `member_no`, `journey_no`, `rider_region`, ...) as the database does.
At the end, a rebuild from all of bronze gives the same silver tables (incremental = rebuild).
The harness checks itself: the declared catalog (composite primary keys) is what source-mysql's
`discover` gives, the records replayed in emission order equal the database when they should, and
the history did exercise what it is for (numbers shared by regions, escaped regions, key changes,
re-inserts, rides waiting for members).

Seeds: SEEDS is the regression list; RIDELAKE_REALCDC_SEEDS=N adds N more.
"""
from __future__ import annotations

import os
import random
from collections import Counter
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import pytest

from conftest import DEST, REPO, local_config, run_dest, write_json
from test_pipeline import GOLD_KEYS
from test_real_cdc_kept import SILVER_TABLES, frame_differences, silver_frames
from realcdc.compare import DEFAULT_GOLD_CITIES, check_bronze, compare, keyed, read, show, sql
from realcdc.fixtures import mariadb, mariadb_template  # noqa: F401 (fixtures)
from realcdc.schema import DATETIME, INTEGER, RIDE_COLUMNS, STRING, USER_COLUMNS, Column, Schema
from realcdc.source_mysql import FLAVORS, JAVA, SourceMySql, check_catalog, check_meta, check_positions, configured_catalog, replay

try:
    import ridelake
except ImportError as error:  # reported by the test that needs it, after the bronze checks
    ridelake = None
    RIDELAKE_IMPORT_ERROR = error

pytestmark = pytest.mark.filterwarnings("ignore:'db' is deprecated:DeprecationWarning")

MODEL = REPO / "models" / "example-composite.toml"
NAMESPACE = "regional_app"
SEEDS = [5]  # regression seeds: keep a seed that once failed here
SEEDS += list(range(5000, 5000 + int(os.environ.get("RIDELAKE_REALCDC_SEEDS", "0") or 0)))
# Two region codes hold the characters a composite key escapes.
REGIONS = ["lis", "opo", "n|rt", "s\\th"]
STATES = {"requested": "REQUESTED", "accepted": "ASSIGNED", "in_progress": "ON_BOARD", "completed": "DONE", "cancelled": "CANCELLED"}

DDL = (
    """CREATE TABLE members (
        region VARCHAR(8) NOT NULL,
        member_no BIGINT NOT NULL,
        role VARCHAR(8) NOT NULL,
        full_name VARCHAR(64) NULL,
        joined_at DATETIME(6) NOT NULL,
        changed_at DATETIME(6) NOT NULL,
        PRIMARY KEY (region, member_no)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE journeys (
        region VARCHAR(8) NOT NULL,
        journey_no BIGINT NOT NULL,
        rider_region VARCHAR(8) NOT NULL,
        rider_no BIGINT NOT NULL,
        driver_region VARCHAR(8) NULL,
        driver_no BIGINT NULL,
        state VARCHAR(12) NOT NULL,
        requested_at DATETIME(6) NOT NULL,
        assigned_at DATETIME(6) NULL,
        done_at DATETIME(6) NULL,
        distance_m INT NULL,
        fare_cents INT NULL,
        created_at DATETIME(6) NOT NULL,
        changed_at DATETIME(6) NOT NULL,
        PRIMARY KEY (region, journey_no),
        CONSTRAINT journeys_rider FOREIGN KEY (rider_region, rider_no) REFERENCES members (region, member_no),
        CONSTRAINT journeys_driver FOREIGN KEY (driver_region, driver_no) REFERENCES members (region, member_no)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
)

SCHEMA = Schema(
    name="composite",
    tables={"users": "members", "rides": "journeys"},
    columns={
        "users": {name: Column(name, kind) for name, kind in (
            ("region", STRING), ("member_no", INTEGER), ("role", STRING), ("full_name", STRING), ("joined_at", DATETIME), ("changed_at", DATETIME))},
        "rides": {name: Column(name, kind) for name, kind in (
            ("region", STRING), ("journey_no", INTEGER), ("rider_region", STRING), ("rider_no", INTEGER), ("driver_region", STRING),
            ("driver_no", INTEGER), ("state", STRING), ("requested_at", DATETIME), ("assigned_at", DATETIME), ("done_at", DATETIME),
            ("distance_m", INTEGER), ("fare_cents", INTEGER), ("created_at", DATETIME), ("changed_at", DATETIME))},
    },
    ddl=DDL,
    composite_keys={"users": ("region", "member_no"), "rides": ("region", "journey_no")},
)
# The key parts silver keeps, per silver table.
PARTS = {"users": ("region", "member_no"), "rides": ("region", "journey_no", "rider_region", "rider_no", "driver_region", "driver_no")}


# -- the application ------------------------------------------------------------------------------
class App:
    """The application: its transactions on the server, at a simulated clock."""

    namespace = NAMESPACE  # its database
    ddl = DDL  # the statements that make its tables

    def __init__(self, db, seed: int):
        self.db = db
        self.rng = random.Random(seed)
        self.now = datetime(2025, 1, 1) + timedelta(days=self.rng.randrange(0, 300), seconds=self.rng.randrange(0, 86400))
        self.counts: Counter = Counter()
        self.deleted_members: list[tuple] = []
        self.deleted_journeys: list[tuple] = []  # deleted keys, and renumbered ones' old keys
        self.conn = db.connect(autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def create_schema(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{self.namespace}` CHARACTER SET utf8mb4")
            cur.execute(f"USE `{self.namespace}`")
            for ddl in self.ddl:
                cur.execute(ddl)

    @contextmanager
    def transaction(self):
        roll = self.rng.random()
        self.now += timedelta(seconds=0 if roll < 0.15 else self.rng.randrange(1, 900) if roll < 0.9 else self.rng.randrange(900, 8 * 3600))
        with self.conn.cursor() as cur:
            cur.execute(f"USE `{self.namespace}`")
            cur.execute("SET timestamp = %s", (self.now.replace(tzinfo=timezone.utc).timestamp(),))
            cur.execute("BEGIN")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
            cur.execute("SET timestamp = DEFAULT")

    def stamp(self) -> datetime:
        return self.now + timedelta(microseconds=self.rng.randrange(0, 1_000_000))

    def query(self, statement: str, args=None) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(f"USE `{self.namespace}`")
            cur.execute(statement, args)
            return list(cur.fetchall())

    def next_no(self, table: str, column: str, region: str) -> int:
        """The region's next number (each region counts from 1)."""
        return (self.query(f"SELECT COALESCE(MAX({column}), 0) FROM {table} WHERE region = %s", (region,))[0][0] or 0) + 1

    def members(self, role: str) -> list[tuple]:
        return self.query("SELECT region, member_no FROM members WHERE role = %s ORDER BY region, member_no", (role,))

    def journeys(self, *states: str) -> list[tuple]:
        marks = ", ".join(["%s"] * len(states))
        return self.query(f"SELECT region, journey_no FROM journeys WHERE state IN ({marks}) ORDER BY region, journey_no", states)

    # -- operations: each returns whether it did something --------------------------------------
    def op_join(self) -> bool:
        rows = []
        taken: Counter = Counter()
        for _ in range(self.rng.choice([1, 1, 2, 3])):
            region = self.rng.choice(REGIONS)
            number = self.next_no("members", "member_no", region) + taken[region]
            taken[region] += 1
            role = "driver" if self.rng.random() < 0.3 else "rider"
            rows.append((region, number, role, f"{role} {region} {number}", self.stamp(), self.stamp()))
        with self.transaction() as cur:
            cur.executemany("INSERT INTO members VALUES (%s, %s, %s, %s, %s, %s)", rows)
        return True

    def request(self, cur, rider: tuple) -> None:
        region = self.rng.choice(REGIONS)
        number = self.next_no("journeys", "journey_no", region)
        at = self.stamp()
        cur.execute("INSERT INTO journeys (region, journey_no, rider_region, rider_no, state, requested_at, created_at, changed_at) "
                    "VALUES (%s, %s, %s, %s, 'REQUESTED', %s, %s, %s)", (region, number, *rider, at, at, at))

    def op_request(self) -> bool:
        riders = self.members("rider")
        if not riders:
            return False
        with self.transaction() as cur:
            for _ in range(self.rng.choice([1, 1, 2])):
                self.request(cur, self.rng.choice(riders))
        return True

    def op_join_and_request(self) -> bool:
        """A new rider requests a journey in the same transaction."""
        region = self.rng.choice(REGIONS)
        number = self.next_no("members", "member_no", region)
        with self.transaction() as cur:
            cur.execute("INSERT INTO members VALUES (%s, %s, 'rider', %s, %s, %s)", (region, number, f"new {number}", self.stamp(), self.stamp()))
            self.request(cur, (region, number))
        return True

    def op_assign(self) -> bool:
        waiting, drivers = self.journeys("REQUESTED"), self.members("driver")
        if not waiting or not drivers:
            return False
        journey, driver = self.rng.choice(waiting), self.rng.choice(drivers)
        with self.transaction() as cur:
            cur.execute("UPDATE journeys SET driver_region = %s, driver_no = %s, state = 'ASSIGNED', assigned_at = %s, changed_at = %s "
                        "WHERE region = %s AND journey_no = %s", (*driver, self.stamp(), self.stamp(), *journey))
        return True

    def op_board(self) -> bool:
        assigned = self.journeys("ASSIGNED")
        if not assigned:
            return False
        with self.transaction() as cur:
            cur.execute("UPDATE journeys SET state = 'ON_BOARD', changed_at = %s WHERE region = %s AND journey_no = %s", (self.stamp(), *self.rng.choice(assigned)))
        return True

    def op_finish(self) -> bool:
        riding = self.journeys("ON_BOARD")
        if not riding:
            return False
        with self.transaction() as cur:
            cur.execute("UPDATE journeys SET state = 'DONE', done_at = %s, distance_m = %s, fare_cents = %s, changed_at = %s "
                        "WHERE region = %s AND journey_no = %s",
                        (self.stamp(), self.rng.randrange(300, 40_000), self.rng.randrange(250, 9_000), self.stamp(), *self.rng.choice(riding)))
        return True

    def op_cancel(self) -> bool:
        open_ = self.journeys("REQUESTED", "ASSIGNED")
        if not open_:
            return False
        with self.transaction() as cur:
            cur.execute("UPDATE journeys SET state = 'CANCELLED', changed_at = %s WHERE region = %s AND journey_no = %s", (self.stamp(), *self.rng.choice(open_)))
        return True

    def op_renumber(self) -> bool:
        """A journey gets another key: a new number, sometimes in another region."""
        every = self.journeys(*STATES.values())
        if not every:
            return False
        old = self.rng.choice(every)
        region = self.rng.choice(REGIONS) if self.rng.random() < 0.5 else old[0]
        number = self.next_no("journeys", "journey_no", region)
        with self.transaction() as cur:
            cur.execute("UPDATE journeys SET region = %s, journey_no = %s, changed_at = %s WHERE region = %s AND journey_no = %s",
                        (region, number, self.stamp(), *old))
        self.deleted_journeys.append(old)
        self.counts["moved" if region != old[0] else "renumbered"] += 1
        return True

    def op_delete(self) -> bool:
        every = self.journeys(*STATES.values())
        if not every:
            return False
        key = self.rng.choice(every)
        with self.transaction() as cur:
            cur.execute("DELETE FROM journeys WHERE region = %s AND journey_no = %s", key)
        self.deleted_journeys.append(key)
        return True

    def op_reinsert(self) -> bool:
        """A deleted journey's key is used again (a new journey under it)."""
        free = [k for k in self.deleted_journeys if not self.query("SELECT 1 FROM journeys WHERE region = %s AND journey_no = %s", k)]
        riders = self.members("rider")
        if not free or not riders:
            return False
        key, rider = self.rng.choice(free), self.rng.choice(riders)
        at = self.stamp()
        with self.transaction() as cur:
            cur.execute("INSERT INTO journeys (region, journey_no, rider_region, rider_no, state, requested_at, created_at, changed_at) "
                        "VALUES (%s, %s, %s, %s, 'REQUESTED', %s, %s, %s)", (*key, *rider, at, at, at))
        self.deleted_journeys.remove(key)
        self.counts["reinserted"] += 1
        return True

    def op_rename(self) -> bool:
        every = self.members("rider") + self.members("driver")
        if not every:
            return False
        with self.transaction() as cur:
            cur.execute("UPDATE members SET full_name = %s, changed_at = %s WHERE region = %s AND member_no = %s",
                        (f"renamed {self.rng.randrange(1000)}", self.stamp(), *self.rng.choice(every)))
        return True

    def op_become_driver(self) -> bool:
        riders = self.members("rider")
        if not riders:
            return False
        with self.transaction() as cur:
            cur.execute("UPDATE members SET role = 'driver', changed_at = %s WHERE region = %s AND member_no = %s", (self.stamp(), *self.rng.choice(riders)))
        self.counts["retyped"] += 1
        return True

    def op_leave(self) -> bool:
        idle = self.query("SELECT region, member_no FROM members m WHERE NOT EXISTS (SELECT 1 FROM journeys j WHERE "
                          "(j.rider_region = m.region AND j.rider_no = m.member_no) OR (j.driver_region = m.region AND j.driver_no = m.member_no))")
        if not idle:
            return False
        key = self.rng.choice(idle)
        with self.transaction() as cur:
            cur.execute("DELETE FROM members WHERE region = %s AND member_no = %s", key)
        self.deleted_members.append(key)
        return True

    def op_fee(self) -> bool:
        """One region's finished journeys get a fee: a multi-row UPDATE."""
        region = self.rng.choice(REGIONS)
        with self.transaction() as cur:
            changed = cur.execute("UPDATE journeys SET fare_cents = fare_cents + 50, changed_at = %s WHERE region = %s AND state = 'DONE'", (self.stamp(), region))
        return changed > 0

    WEIGHTS = {"join": 6, "request": 10, "join_and_request": 2, "assign": 8, "board": 6, "finish": 6, "cancel": 2, "renumber": 2,
               "delete": 1, "reinsert": 1, "rename": 2, "become_driver": 2, "leave": 1, "fee": 1}

    def phase(self, transactions: int) -> int:
        names, weights = list(self.WEIGHTS), list(self.WEIGHTS.values())
        done = attempts = 0
        while done < transactions and attempts < transactions * 20:
            attempts += 1
            name = self.rng.choices(names, weights)[0]
            if getattr(self, f"op_{name}")():
                done += 1
                self.counts[name] += 1
        return done

    def rows(self, table: str) -> dict:
        """The source table's rows now, by key, as the server returns them."""
        columns = SCHEMA.source_columns(table)
        found = self.query(f"SELECT {', '.join(columns)} FROM {table}")
        return {SCHEMA.key_of(table, dict(zip(columns, r))): dict(zip(columns, r)) for r in found}


# -- the database in silver's terms, by SQL ---------------------------------------------------------
def key_sql(*columns: str) -> str:
    """SQL: silver's key of a composite key's columns (each as text, `\\` and `|` escaped, joined by
    `|`): this test's own reading of the model's rule."""
    parts = [f"REPLACE(REPLACE(CAST({c} AS CHAR), '\\\\', '\\\\\\\\'), '|', '\\\\|')" for c in columns]
    return "CONCAT(" + ", '|', ".join(parts) + ")"


def status_sql(column: str) -> str:
    return "(CASE " + column + " " + " ".join(f"WHEN '{source}' THEN '{silver}'" for silver, source in STATES.items()) + " END)"


USERS_SQL = f"""SELECT {key_sql('region', 'member_no')} AS id, IF(role = 'rider', 'customer', role) AS type, full_name AS name,
    NULL AS email, NULL AS phone, NULL AS city, joined_at AS created_at, changed_at AS updated_at, region, member_no
    FROM members"""
RIDE_SELECT = f"""{key_sql('r.region', 'r.journey_no')} AS id, {key_sql('r.rider_region', 'r.rider_no')} AS customer_id,
    IF(r.driver_no IS NULL, NULL, {key_sql('r.driver_region', 'r.driver_no')}) AS driver_id, {status_sql('r.state')} AS status,
    r.requested_at, r.assigned_at AS accepted_at, NULL AS started_at, r.done_at AS completed_at, NULL AS cancelled_at,
    NULL AS pickup_lat, NULL AS pickup_lon, NULL AS dropoff_lat, NULL AS dropoff_lon, r.distance_m / 1000 AS distance_km,
    NULL AS duration_s, r.fare_cents / 100 AS fare_amount, NULL AS currency, NULL AS payment_method, NULL AS customer_rating,
    NULL AS driver_rating, r.created_at, r.changed_at AS updated_at"""
RIDES_SQL = f"SELECT {RIDE_SELECT}, r.region, r.journey_no, r.rider_region, r.rider_no, r.driver_region, r.driver_no FROM journeys r"
# The published journeys in silver's columns (what compare.expected_gold aggregates).
PUBLISHED = f"""WITH pub AS (
    SELECT {RIDE_SELECT} FROM journeys r
    JOIN members c ON c.region = r.rider_region AND c.member_no = r.rider_no
    LEFT JOIN members d ON d.region = r.driver_region AND d.member_no = r.driver_no
    WHERE c.role = 'rider' AND (r.driver_no IS NULL OR d.role = 'driver'))"""


def database_rows(db, namespace: str = NAMESPACE, queries=None) -> dict[str, dict]:
    """The database now in silver's terms: logical table -> silver key -> row (silver's columns and
    the source columns silver keeps), by `queries` ((logical table, SQL), ...)."""
    out = {}
    for table, query in queries or (("users", USERS_SQL), ("rides", RIDES_SQL)):
        with closing(db.connect(namespace)) as conn, conn.cursor() as cur:
            cur.execute(query)
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
        out[table] = {r["id"]: r for r in rows}
        assert len(out[table]) == len(rows), f"HARNESS: two {table} rows with one silver key"
    return out


def check_parts(lake: Path, current: dict[str, dict], parts: dict = PARTS, what: str = "the composite key's columns",
                model: Path | None = None) -> list[str]:
    """Silver's copies of source columns (`parts`: by logical table; by default the key's columns)
    == the database's, for every user and ride silver has (in the tables `model` names)."""
    problems = []
    for table, logical in (("users", "users"), ("rides", "rides"), ("rides_pending", "rides")):
        frame = read(lake, "silver", table, model)
        if frame is None:
            continue
        missing = [c for c in parts[logical] if c not in frame.columns]
        if missing:
            problems.append(f"silver {table}: no column {missing} ({what} are kept)")
            continue
        rows, _ = keyed(frame, ["id"])
        for key, row in rows.items():
            want = current[logical].get(key)
            if want is None:
                continue
            wrong = [f"{c} {show(row[c])} != {show(want[c])}" for c in parts[logical] if row[c] != want[c]]
            if wrong:
                problems.append(f"silver {table} {key!r}: {', '.join(wrong)}")
    return problems[:10]


@dataclass
class History:
    """What one real-CDC test runs: its application (an `App`), the schema and model, and how it
    reads the database in silver's terms."""
    app: App
    schema: Schema
    model: Path
    current: Callable[[], dict[str, dict]]  # the database now, as `database_rows` gives it
    deleted: Callable[[], tuple[list, list]]  # the silver keys of the users and rides deleted so far
    published: str  # the SQL of the published rides (realcdc.compare.expected_gold)
    kept: Callable[[Path, dict], list[str]]  # the source columns silver keeps == the database's
    check_report: Callable[[dict], None] = lambda report: None
    # gold's cities and radius now (realcdc.compare's `cities`), when the model does not use the default ones
    cities: Callable[[], tuple] | None = None


def run_history(history: History, flavor: str, seed: int, mariadb, tmp_path: Path) -> tuple[Path, int, str]:
    """The application's history in four syncs (the first a snapshot during which it writes): after
    each, the harness checks itself, the destination writes bronze, ridelake builds silver and gold
    with the model, and both equal the database when the records bring its state. Returns the lake,
    the rides seen pending and the log."""
    app, schema, namespace = history.app, history.schema, history.app.namespace
    source = SourceMySql(mariadb, namespace, state_every=25, schema=schema)
    lake = tmp_path / "lake"
    config = local_config(tmp_path, lake / "bronze")
    log: list[str] = []
    pending_seen = 0

    def during(stage: str) -> int:
        """The application writes while the snapshot reads: a new rider's ride can be read before
        the rider."""
        return sum(1 for _ in range(app.rng.randrange(1, 4)) if app.op_join_and_request())

    for number, transactions in enumerate([0, 100, 100, 60]):
        app.phase(transactions)
        started = max(app.now, source.syncs[-1].started_at if source.syncs else app.now) + timedelta(seconds=app.rng.randrange(60, 3600))
        app.now = started
        sync = source.read(flavor, started, during if number == 0 else None)
        log.append(sync.summary())
        context = f"{flavor}, seed {seed}\n  " + "\n  ".join(log)
        # The harness against the server itself.
        problems = check_meta(source.syncs) + check_positions(mariadb, sync, schema)
        stored = {t: app.rows(t) for t in schema.streams}
        complete = replay(source.syncs, schema) == stored
        if not complete and (flavor == JAVA or sync.during_writes == 0):
            problems.append("the records replayed in emission order differ from the database")
        assert not problems, f"HARNESS: {problems}\n  {context}"
        catalog = write_json(tmp_path / f"catalog-{sync.number}.json", configured_catalog(namespace, sync_id=sync.number, schema=schema))
        run = run_dest("write", "--config", str(config), "--catalog", str(catalog), stdin=sync.jsonl())
        assert run.returncode == 0, f"destination failed at sync {sync.number}: {run.stderr[-3000:]}\n  {context}"
        problems = check_bronze(lake, source.syncs, namespace, streams=tuple(schema.streams))
        assert not problems, f"bronze: {problems}\n  {context}"
        if ridelake is None:
            pytest.fail(f"ridelake is not importable ({RIDELAKE_IMPORT_ERROR}); bronze checks passed\n  {context}")

        found = ridelake.validate_model(str(history.model), str(lake), namespace)
        assert found == [], f"validate_model: {found}\n  {context}"
        try:
            report = ridelake.build_silver(str(lake), namespace, model=str(history.model))
            ridelake.build_gold(str(lake), namespace, model=str(history.model))
        except ridelake.RidelakeError as error:
            pytest.fail(f"silver/gold build failed: {type(error).__name__}: {error}\n  {context}")
        history.check_report(report)
        pending_seen += report["pending"]
        log[-1] += f" [silver: {report['users_upserted']} users and {report['rides_upserted']} rides upserted, {report['pending']} pending, {report['released']} released]"
        if not complete:
            log[-1] += " [not compared: the application wrote while the snapshot read]"
            continue
        current = history.current()
        deleted_users, deleted_rides = history.deleted()
        problems = compare(lake, mariadb, namespace, current, deleted_users=deleted_users, deleted_rides=deleted_rides,
                           gold_keys=GOLD_KEYS, published=history.published, model=history.model,
                           cities=history.cities() if history.cities else DEFAULT_GOLD_CITIES)
        problems += history.kept(lake, current)
        assert not problems, "silver/gold differ from the database:\n    " + "\n    ".join(problems) + f"\n  {context}"
    return lake, pending_seen, "\n  ".join(log)


def check_incremental_is_rebuild(lake: Path, namespace: str, model: Path, context: str) -> None:
    """A rebuild from all of bronze gives the silver tables the incremental runs left."""
    incremental = silver_frames(lake, model)
    report = ridelake.build_silver(str(lake), namespace, model=str(model), rebuild=True)
    assert report["rebuild"], f"rebuild=True did not rebuild: {report}\n  {context}"
    problems = [p for t in SILVER_TABLES for p in frame_differences(f"silver {t} (incremental vs rebuild)", incremental[t], read(lake, "silver", t, model))]
    assert not problems, "a rebuild differs from the incremental runs:\n    " + "\n    ".join(problems) + f"\n  {context}"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("flavor", FLAVORS)
def test_real_cdc_with_composite_keys(flavor, seed, mariadb, tmp_path):
    if not DEST.exists():
        pytest.fail(f"{DEST} is not built")
    app = App(mariadb, seed)
    try:
        app.create_schema()
        assert not check_catalog(mariadb, NAMESPACE, SCHEMA), "HARNESS: the declared catalog is not what source-mysql discovers"
        for _ in range(3):
            app.op_join()
        app.phase(40)
        history = History(
            app, SCHEMA, MODEL, current=lambda: database_rows(mariadb),
            deleted=lambda: ([silver_key(k) for k in app.deleted_members], [silver_key(k) for k in app.deleted_journeys]),
            published=PUBLISHED, kept=check_parts)
        lake, pending_seen, log = run_history(history, flavor, seed, mariadb, tmp_path)
        context = f"{flavor}, seed {seed}\n  {log}"

        # What the history was for.
        shared = sql(mariadb, NAMESPACE, "SELECT COUNT(*) FROM (SELECT member_no FROM members GROUP BY member_no HAVING COUNT(*) > 1) s")[0][0]
        escaped = sql(mariadb, NAMESPACE, "SELECT COUNT(*) FROM journeys WHERE region LIKE '%|%' OR region LIKE '%\\\\\\\\%'")[0][0]
        assert shared, f"HARNESS: no member number is used by two regions\n  {context}"
        assert escaped, f"HARNESS: no journey in a region whose code silver escapes\n  {context}"
        assert app.counts["renumbered"] + app.counts["moved"], f"HARNESS: no key changed\n  {context}"
        assert pending_seen, f"HARNESS: no journey waited for its members\n  {context}"

        check_incremental_is_rebuild(lake, NAMESPACE, MODEL, context)
        print(f"{flavor}, seed {seed}: {dict(app.counts)}, {shared} numbers shared by regions, {escaped} journeys in escaped regions\n  {log}")
    finally:
        app.close()


def silver_key(key: tuple) -> str:
    """Silver's key of a composite key's values (the rule key_sql writes in SQL)."""
    return "|".join(str(v).replace("\\", "\\\\").replace("|", "\\|") for v in key)
