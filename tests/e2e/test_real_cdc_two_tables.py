"""Real CDC from an application that keeps its riders and its drivers in two tables, mapped by
models/example-two-tables.toml (`[[users.streams]]`).

The application has `passengers` and `drivers`, each numbered by its own AUTO_INCREMENT (so
passenger 5 and driver 5 are two people, and most numbers name one of each), and `trips` whose
`passenger_id` and `driver_id` are foreign keys into them. Its transactions (this file's own, in SQL
against the server): passengers and drivers sign up (several in one INSERT), passengers request trips
(a new passenger and their first trip in one transaction), drivers take trips, trips start, end (with
distance and fare) or are dropped, a trip is deleted and its number used again later, passengers and
drivers are renamed or move, passengers and drivers without trips leave (their numbers are not used
again: AUTO_INCREMENT), a multi-row UPDATE adds a fee to the ended trips of one driver. Its
`cities` table is gold's cities (the model's `[gold] cities`): cities open (some without a center
yet, a town twice), move, close and are renamed (stray spaces, no name), and trips have pickup
points near a city, near none or none at all. The binlog of a private MariaDB server becomes
source-mysql's messages in its Java (3.x) or Kotlin (3.9+) shape for four streams, the real
destination lands them in bronze, and ridelake builds silver and gold with the model after every
sync. The first sync is a snapshot during which the application keeps writing
(passengers, drivers and trips are read one table after the other), so that trips can arrive before
their passengers.

After every sync: `validate_model` is [] and, when the records bring the database's current state:
silver and gold == SQL on the database (realcdc.compare.compare), the SQL being a UNION of the two
users tables keyed `customer|<passenger_id>` and `driver|<driver_id>`: silver users (not deleted)
and rides, every trip published (its passenger and driver exist: foreign keys), no key twice,
deleted users and trips in neither, gold's monthly distance, driver and customer totals and daily
KPIs by SQL `GROUP BY` on the same keys, each trip in the city the `cities` table gives its pickup
point now (`gold_cities`). Silver also holds each users table's key column
(`passenger_id`, `driver_id`), the trip's `passenger_id` and the model's extra columns (a driver's
`base_city` as `home_city` and as the airport code `home_code`, a trip's `fare_cents` as
`fare_in_cents`) as the database does. At the end, a rebuild from all of bronze gives the same
silver tables (incremental = rebuild). The harness checks itself: the declared catalog is what
source-mysql's `discover` gives, the records replayed in emission order equal the database when
they should, and the history did exercise what it is for (numbers used by a passenger and a driver
both, trips waiting for their passenger in the Kotlin shape, a re-inserted trip number, users who
left, cities moved, closed and renamed, and gold with trips in a city, in `other` and in `unknown`).
At the end, a model naming a column the cities table lacks gets a `validate_model` problem naming
its line.

Seeds: SEEDS is the regression list; RIDELAKE_REALCDC_SEEDS=N adds N more.
"""
from __future__ import annotations

import os

import pytest
from deltalake import DeltaTable

from conftest import DEST, REPO
from test_real_cdc_composite import App as CompositeApp, History, check_incremental_is_rebuild, check_parts, database_rows, ridelake, run_history
from realcdc.compare import read, sql
from realcdc.fixtures import mariadb, mariadb_template  # noqa: F401 (fixtures)
from realcdc.schema import DATETIME, INTEGER, NUMBER, STRING, Column, Schema
from realcdc.source_mysql import FLAVORS, JAVA, check_catalog

pytestmark = pytest.mark.filterwarnings("ignore:'db' is deprecated:DeprecationWarning")

MODEL = REPO / "models" / "example-two-tables.toml"
NAMESPACE = "two_table_app"
SEEDS = [7]  # regression seeds: keep a seed that once failed here
SEEDS += list(range(6000, 6000 + int(os.environ.get("RIDELAKE_REALCDC_SEEDS", "0") or 0)))
STATES = {"requested": "OPEN", "accepted": "TAKEN", "in_progress": "RIDING", "completed": "ENDED", "cancelled": "DROPPED"}
CITIES = ["Lisboa", "Porto", "Faro"]
# The towns the application opens as cities (name, center): Porto and Braga 50 km apart, so that
# a pickup between them is nearer one of two cities, or of none.
TOWNS = [("Lisboa", 38.72225, -9.13934), ("Porto", 41.14961, -8.61099), ("Braga", 41.54545, -8.42651),
         ("Coimbra", 40.20564, -8.41955), ("Faro", 37.01937, -7.93044), ("Evora", 38.57104, -7.90931)]
FAR_AWAY = (39.5, -31.1)  # a pickup on the Azores: near none of the towns
RADIUS_KM = 25.0  # the model's [gold] radius_km

DDL = (
    """CREATE TABLE passengers (
        passenger_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        full_name VARCHAR(64) NULL,
        phone_number VARCHAR(20) NULL,
        signed_up_at DATETIME(6) NOT NULL,
        modified_at DATETIME(6) NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE drivers (
        driver_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        display_name VARCHAR(64) NULL,
        base_city VARCHAR(32) NULL,
        hired_at DATETIME(6) NOT NULL,
        modified_at DATETIME(6) NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE trips (
        trip_id BIGINT NOT NULL PRIMARY KEY,
        passenger_id BIGINT NOT NULL,
        driver_id BIGINT NULL,
        trip_status VARCHAR(8) NOT NULL,
        opened_at DATETIME(6) NOT NULL,
        taken_at DATETIME(6) NULL,
        ended_at DATETIME(6) NULL,
        pickup_lat DECIMAL(9,6) NULL,
        pickup_lon DECIMAL(9,6) NULL,
        distance_m INT NULL,
        fare_cents INT NULL,
        created_at DATETIME(6) NOT NULL,
        modified_at DATETIME(6) NOT NULL,
        CONSTRAINT trips_passenger FOREIGN KEY (passenger_id) REFERENCES passengers (passenger_id),
        CONSTRAINT trips_driver FOREIGN KEY (driver_id) REFERENCES drivers (driver_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    # The cities the application serves (gold's cities: the model's `[gold] cities`): a name and a
    # center, either of which an operator may leave empty while setting a city up.
    """CREATE TABLE cities (
        city_id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        city_name VARCHAR(32) NULL,
        center_lat DECIMAL(8,5) NULL,
        center_lon DECIMAL(8,5) NULL,
        modified_at DATETIME(6) NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
)


def columns(*pairs) -> dict[str, Column]:
    return {logical: Column(name, kind) for logical, name, kind in pairs}


SCHEMA = Schema(
    name="two-tables",
    tables={"passengers": "passengers", "drivers": "drivers", "rides": "trips", "cities": "cities"},
    columns={
        "passengers": columns(("id", "passenger_id", INTEGER), ("name", "full_name", STRING), ("phone", "phone_number", STRING),
                              ("created_at", "signed_up_at", DATETIME), ("updated_at", "modified_at", DATETIME)),
        "drivers": columns(("id", "driver_id", INTEGER), ("name", "display_name", STRING), ("city", "base_city", STRING),
                           ("created_at", "hired_at", DATETIME), ("updated_at", "modified_at", DATETIME)),
        "rides": columns(("id", "trip_id", INTEGER), ("customer_id", "passenger_id", INTEGER), ("driver_id", "driver_id", INTEGER),
                         ("status", "trip_status", STRING), ("requested_at", "opened_at", DATETIME), ("accepted_at", "taken_at", DATETIME),
                         ("completed_at", "ended_at", DATETIME), ("pickup_lat", "pickup_lat", NUMBER), ("pickup_lon", "pickup_lon", NUMBER),
                         ("distance_m", "distance_m", INTEGER), ("fare_cents", "fare_cents", INTEGER),
                         ("created_at", "created_at", DATETIME), ("updated_at", "modified_at", DATETIME)),
        "cities": columns(("id", "city_id", INTEGER), ("name", "city_name", STRING), ("lat", "center_lat", NUMBER),
                          ("lon", "center_lon", NUMBER), ("updated_at", "modified_at", DATETIME)),
    },
    ddl=DDL,
)
# The source columns silver keeps, per silver table (null in the other users table's rows): the key
# columns under their names, and the model's extra columns (`home_city`, `home_code`: the city's
# airport code where the model maps one, `fare_in_cents`).
KEPT = {"users": ("passenger_id", "driver_id", "home_city", "home_code"), "rides": ("passenger_id", "fare_in_cents")}


# -- the application ------------------------------------------------------------------------------
class App(CompositeApp):
    """The application: its transactions on the server, at a simulated clock (the clock, the
    transactions and `phase` are the composite application's)."""

    namespace = NAMESPACE
    ddl = DDL

    def __init__(self, db, seed: int):
        super().__init__(db, seed)
        self.deleted_users: list[str] = []  # silver keys of passengers and drivers who left
        self.deleted_trips: list[int] = []

    def ids(self, table: str, column: str, where: str = "TRUE") -> list[int]:
        return [r[0] for r in self.query(f"SELECT {column} FROM {table} WHERE {where} ORDER BY {column}")]

    def trips(self, *states: str) -> list[int]:
        return self.ids("trips", "trip_id", "trip_status IN (" + ", ".join(f"'{s}'" for s in states) + ")")

    def sign_up(self, cur, table: str) -> int:
        if table == "passengers":
            cur.execute("INSERT INTO passengers (full_name, phone_number, signed_up_at, modified_at) VALUES (%s, %s, %s, %s)",
                        (f"passenger {self.rng.randrange(10_000)}", f"+351 9{self.rng.randrange(10**7):07d}", self.stamp(), self.stamp()))
        else:
            cur.execute("INSERT INTO drivers (display_name, base_city, hired_at, modified_at) VALUES (%s, %s, %s, %s)",
                        (f"driver {self.rng.randrange(10_000)}", self.rng.choice(CITIES), self.stamp(), self.stamp()))
        return cur.lastrowid

    def request(self, cur, passenger: int) -> None:
        number = (self.query("SELECT COALESCE(MAX(trip_id), 0) FROM trips")[0][0] or 0) + 1
        while number in self.deleted_trips:  # (a deleted number comes back only by op_reinsert)
            number += 1
        at = self.stamp()
        cur.execute("INSERT INTO trips (trip_id, passenger_id, trip_status, opened_at, pickup_lat, pickup_lon, created_at, modified_at) "
                    "VALUES (%s, %s, 'OPEN', %s, %s, %s, %s, %s)", (number, passenger, at, *self.pickup(), at, at))

    def pickup(self) -> tuple:
        """A pickup point: none (10%), far from every town (10%), else within 0.3 degrees (about
        33 km, beyond the model's radius at times) of a town's center, whether it is a city now
        or not."""
        draw = self.rng.random()
        if draw < 0.1:
            return (None, None)
        if draw < 0.2:
            return FAR_AWAY
        _, lat, lon = self.rng.choice(TOWNS)
        return (round(lat + self.rng.uniform(-0.3, 0.3), 6), round(lon + self.rng.uniform(-0.3, 0.3), 6))

    # -- operations: each returns whether it did something --------------------------------------
    def op_join(self) -> bool:
        with self.transaction() as cur:
            for _ in range(self.rng.choice([1, 1, 2, 3])):
                self.sign_up(cur, "drivers" if self.rng.random() < 0.35 else "passengers")
        return True

    def op_request(self) -> bool:
        passengers = self.ids("passengers", "passenger_id")
        if not passengers:
            return False
        with self.transaction() as cur:
            for _ in range(self.rng.choice([1, 1, 2])):
                self.request(cur, self.rng.choice(passengers))
        return True

    def op_join_and_request(self) -> bool:
        """A new passenger requests a trip in the same transaction."""
        with self.transaction() as cur:
            self.request(cur, self.sign_up(cur, "passengers"))
        return True

    def op_assign(self) -> bool:
        waiting, drivers = self.trips("OPEN"), self.ids("drivers", "driver_id")
        if not waiting or not drivers:
            return False
        with self.transaction() as cur:
            cur.execute("UPDATE trips SET driver_id = %s, trip_status = 'TAKEN', taken_at = %s, modified_at = %s WHERE trip_id = %s",
                        (self.rng.choice(drivers), self.stamp(), self.stamp(), self.rng.choice(waiting)))
        return True

    def op_board(self) -> bool:
        taken = self.trips("TAKEN")
        if not taken:
            return False
        with self.transaction() as cur:
            cur.execute("UPDATE trips SET trip_status = 'RIDING', modified_at = %s WHERE trip_id = %s", (self.stamp(), self.rng.choice(taken)))
        return True

    def op_finish(self) -> bool:
        riding = self.trips("RIDING")
        if not riding:
            return False
        with self.transaction() as cur:
            cur.execute("UPDATE trips SET trip_status = 'ENDED', ended_at = %s, distance_m = %s, fare_cents = %s, modified_at = %s WHERE trip_id = %s",
                        (self.stamp(), self.rng.randrange(300, 40_000), self.rng.randrange(250, 9_000), self.stamp(), self.rng.choice(riding)))
        return True

    def op_cancel(self) -> bool:
        open_ = self.trips("OPEN", "TAKEN")
        if not open_:
            return False
        with self.transaction() as cur:
            cur.execute("UPDATE trips SET trip_status = 'DROPPED', modified_at = %s WHERE trip_id = %s", (self.stamp(), self.rng.choice(open_)))
        return True

    def op_delete(self) -> bool:
        every = self.trips(*STATES.values())
        if not every:
            return False
        trip = self.rng.choice(every)
        with self.transaction() as cur:
            cur.execute("DELETE FROM trips WHERE trip_id = %s", (trip,))
        self.deleted_trips.append(trip)
        return True

    def op_reinsert(self) -> bool:
        """A deleted trip's number is used again (a new trip under it)."""
        passengers = self.ids("passengers", "passenger_id")
        if not self.deleted_trips or not passengers:
            return False
        trip, passenger = self.rng.choice(self.deleted_trips), self.rng.choice(passengers)
        at = self.stamp()
        with self.transaction() as cur:
            cur.execute("INSERT INTO trips (trip_id, passenger_id, trip_status, opened_at, pickup_lat, pickup_lon, created_at, modified_at) "
                        "VALUES (%s, %s, 'OPEN', %s, %s, %s, %s, %s)", (trip, passenger, at, *self.pickup(), at, at))
        self.deleted_trips.remove(trip)
        self.counts["reinserted"] += 1
        return True

    def op_rename(self) -> bool:
        table, column, name = self.rng.choice([("passengers", "passenger_id", "full_name"), ("drivers", "driver_id", "display_name")])
        every = self.ids(table, column)
        if not every:
            return False
        with self.transaction() as cur:
            cur.execute(f"UPDATE {table} SET {name} = %s, modified_at = %s WHERE {column} = %s", (f"renamed {self.rng.randrange(1000)}", self.stamp(), self.rng.choice(every)))
        return True

    def op_move(self) -> bool:
        drivers = self.ids("drivers", "driver_id")
        if not drivers:
            return False
        with self.transaction() as cur:
            cur.execute("UPDATE drivers SET base_city = %s, modified_at = %s WHERE driver_id = %s", (self.rng.choice(CITIES), self.stamp(), self.rng.choice(drivers)))
        return True

    def op_leave(self) -> bool:
        table, column, role = self.rng.choice([("passengers", "passenger_id", "customer"), ("drivers", "driver_id", "driver")])
        idle = self.ids(table, column, f"NOT EXISTS (SELECT 1 FROM trips t WHERE t.{column} = {table}.{column})")
        if not idle:
            return False
        user = self.rng.choice(idle)
        with self.transaction() as cur:
            cur.execute(f"DELETE FROM {table} WHERE {column} = %s", (user,))
        self.deleted_users.append(f"{role}|{user}")
        self.counts["left"] += 1
        return True

    def op_fee(self) -> bool:
        """One driver's ended trips get a fee: a multi-row UPDATE."""
        drivers = self.ids("drivers", "driver_id")
        if not drivers:
            return False
        with self.transaction() as cur:
            changed = cur.execute("UPDATE trips SET fare_cents = fare_cents + 50, modified_at = %s WHERE driver_id = %s AND trip_status = 'ENDED'",
                                  (self.stamp(), self.rng.choice(drivers)))
        return changed > 0

    # -- the cities: gold reads them from their synced table ------------------------------------
    def op_open_city(self) -> bool:
        """A town becomes a city (20% of the time without its center yet); a town may be a city
        twice (two rows of one name: one city with two centers)."""
        name, lat, lon = self.rng.choice(TOWNS)
        center = (None, None) if self.rng.random() < 0.2 else (lat, lon)
        with self.transaction() as cur:
            cur.execute("INSERT INTO cities (city_name, center_lat, center_lon, modified_at) VALUES (%s, %s, %s, %s)", (name, *center, self.stamp()))
        return True

    def op_move_city(self) -> bool:
        """A city's center is set, or moves (up to 0.2 degrees, or to another town's)."""
        every = self.ids("cities", "city_id")
        if not every:
            return False
        _, lat, lon = self.rng.choice(TOWNS)
        if self.rng.random() < 0.5:
            lat, lon = round(lat + self.rng.uniform(-0.2, 0.2), 5), round(lon + self.rng.uniform(-0.2, 0.2), 5)
        with self.transaction() as cur:
            cur.execute("UPDATE cities SET center_lat = %s, center_lon = %s, modified_at = %s WHERE city_id = %s", (lat, lon, self.stamp(), self.rng.choice(every)))
        return True

    def op_rename_city(self) -> bool:
        """A city is renamed: another town's name, with stray spaces, a new name, or none yet."""
        every = self.ids("cities", "city_id")
        if not every:
            return False
        town = self.rng.choice(TOWNS)[0]
        name = self.rng.choice([town, f"  {town} ", f"X {self.rng.randrange(100)}", None, ""])
        with self.transaction() as cur:
            cur.execute("UPDATE cities SET city_name = %s, modified_at = %s WHERE city_id = %s", (name, self.stamp(), self.rng.choice(every)))
        return True

    def op_close_city(self) -> bool:
        """A city closes (its row is deleted); the application keeps at least one."""
        every = self.ids("cities", "city_id")
        if len(every) < 2:
            return False
        with self.transaction() as cur:
            cur.execute("DELETE FROM cities WHERE city_id = %s", (self.rng.choice(every),))
        return True

    WEIGHTS = {"join": 6, "request": 10, "join_and_request": 2, "assign": 8, "board": 6, "finish": 6, "cancel": 2, "delete": 1,
               "reinsert": 1, "rename": 2, "move": 1, "leave": 1, "fee": 1, "open_city": 1, "move_city": 1, "rename_city": 1, "close_city": 1}

    def rows(self, table: str) -> dict:
        """The source table's rows now, by key, as the server returns them."""
        names = SCHEMA.source_columns(table)
        found = self.query(f"SELECT {', '.join(names)} FROM {table}")
        return {SCHEMA.key_of(table, dict(zip(names, r))): dict(zip(names, r)) for r in found}


# -- the database in silver's terms, by SQL ---------------------------------------------------------
def status_sql(column: str) -> str:
    return "(CASE " + column + " " + " ".join(f"WHEN '{source}' THEN '{silver}'" for silver, source in STATES.items()) + " END)"


# Silver's user key: the role and the table's key (this test's own reading of the model's rule).
USERS_SQL = """SELECT CONCAT('customer|', passenger_id) AS id, 'customer' AS type, full_name AS name, NULL AS email,
        phone_number AS phone, NULL AS city, signed_up_at AS created_at, modified_at AS updated_at, passenger_id, NULL AS driver_id,
        NULL AS home_city, NULL AS home_code
    FROM passengers
    UNION ALL
    SELECT CONCAT('driver|', driver_id), 'driver', display_name, NULL, NULL, base_city, hired_at, modified_at, NULL, driver_id, base_city,
        CASE base_city WHEN 'Lisboa' THEN 'LIS' WHEN 'Porto' THEN 'OPO' ELSE base_city END
    FROM drivers"""
RIDE_SELECT = f"""r.trip_id AS id, CONCAT('customer|', r.passenger_id) AS customer_id,
    IF(r.driver_id IS NULL, NULL, CONCAT('driver|', r.driver_id)) AS driver_id, {status_sql('r.trip_status')} AS status,
    r.opened_at AS requested_at, r.taken_at AS accepted_at, NULL AS started_at, r.ended_at AS completed_at, NULL AS cancelled_at,
    r.pickup_lat, r.pickup_lon, NULL AS dropoff_lat, NULL AS dropoff_lon, r.distance_m / 1000 AS distance_km,
    NULL AS duration_s, r.fare_cents / 100 AS fare_amount, NULL AS currency, NULL AS payment_method, NULL AS customer_rating,
    NULL AS driver_rating, r.created_at, r.modified_at AS updated_at"""
RIDES_SQL = f"SELECT {RIDE_SELECT}, r.passenger_id, r.fare_cents AS fare_in_cents FROM trips r"
# The published trips in silver's columns (what compare.expected_gold aggregates): every trip, its
# passenger and driver being rows of their tables (foreign keys).
PUBLISHED = f"""WITH pub AS (
    SELECT {RIDE_SELECT} FROM trips r
    JOIN passengers c ON c.passenger_id = r.passenger_id
    LEFT JOIN drivers d ON d.driver_id = r.driver_id
    WHERE r.driver_id IS NULL OR d.driver_id IS NOT NULL)"""


def gold_cities(db) -> tuple[list[tuple], float]:
    """Gold's cities by SQL on the database (realcdc.compare's `cities`): the rows of `cities` with
    a name (trimmed) and a center, in the order of their keys as text, and the model's radius."""
    rows = sql(db, NAMESPACE, """SELECT TRIM(city_name), center_lat, center_lon FROM cities
        WHERE TRIM(city_name) <> '' AND center_lat IS NOT NULL AND center_lon IS NOT NULL ORDER BY CAST(city_id AS CHAR)""")
    return [(name, float(lat), float(lon)) for name, lat, lon in rows], RADIUS_KM


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("flavor", FLAVORS)
def test_real_cdc_with_users_in_two_tables(flavor, seed, mariadb, tmp_path):
    if not DEST.exists():
        pytest.fail(f"{DEST} is not built")
    app = App(mariadb, seed)
    try:
        app.create_schema()
        assert not check_catalog(mariadb, NAMESPACE, SCHEMA), "HARNESS: the declared catalog is not what source-mysql discovers"
        for _ in range(4):
            app.op_join()
        for _ in range(3):
            app.op_open_city()
        app.phase(40)

        def check_report(report: dict) -> None:
            assert sorted(report["users_streams"]) == ["drivers", "passengers"], report["users_streams"]

        history = History(
            app, SCHEMA, MODEL, current=lambda: database_rows(mariadb, NAMESPACE, (("users", USERS_SQL), ("rides", RIDES_SQL))),
            deleted=lambda: (app.deleted_users, app.deleted_trips), published=PUBLISHED, cities=lambda: gold_cities(mariadb),
            kept=lambda lake, current: check_parts(lake, current, KEPT, "the source key columns and extra columns", MODEL), check_report=check_report)
        lake, pending_seen, log = run_history(history, flavor, seed, mariadb, tmp_path)
        context = f"{flavor}, seed {seed}\n  {log}"

        # What the history was for.
        shared = sql(mariadb, NAMESPACE, "SELECT COUNT(*) FROM passengers p JOIN drivers d ON d.driver_id = p.passenger_id")[0][0]
        assert shared, f"HARNESS: no number names a passenger and a driver\n  {context}"
        assert app.counts["reinserted"], f"HARNESS: no trip number was used again\n  {context}"
        assert app.counts["left"], f"HARNESS: no passenger or driver left\n  {context}"
        # (Java reads the binlog after the tables, in the same sync: a trip read before its
        # passenger meets them there; Kotlin leaves the passenger to the next sync)
        assert pending_seen or flavor == JAVA, f"HARNESS: no trip waited for its passenger\n  {context}"
        assert app.counts["move_city"] and app.counts["close_city"] and app.counts["rename_city"], \
            f"HARNESS: no city moved, closed or was renamed: {dict(app.counts)}\n  {context}"
        # Gold's cities came from the table (compared with SQL above): rides in one of its cities,
        # near none ('other') and without a pickup point ('unknown').
        named = set(read(lake, "gold", "daily_city_kpis")["city"].to_list())
        towns = {name for name, _, _ in gold_cities(mariadb)[0]}
        assert named & towns and {"other", "unknown"} <= named, f"HARNESS: gold's cities {sorted(named)} (the table's: {sorted(towns)})\n  {context}"

        # Silver's tables are where the model names them (people, trips, ...), and people are
        # not partitioned (partition = "none"): the harness compared those folders above.
        folders = sorted(p.name for p in (lake / "silver").iterdir() if not p.name.startswith("_"))
        assert [f for f in folders if f != "quarantine"] == ["people", "trips", "trips_deleted", "trips_pending"], folders
        assert DeltaTable(str(lake / "silver" / "people")).metadata().partition_columns == [], "silver people is not partitioned"
        # Trips are filed by the UTC day of their last change (partition = "updated_at"), and
        # gold, compared with SQL above, counted each in the day it was opened.
        trips = DeltaTable(str(lake / "silver" / "trips"))
        assert trips.metadata().partition_columns == ["year", "month", "day"]
        filed = trips.to_pyarrow_table(columns=["updated_at", "year", "month", "day"]).to_pylist()
        misfiled = [r for r in filed if (r["updated_at"].year, r["updated_at"].month, r["updated_at"].day) != (r["year"], r["month"], r["day"])]
        assert filed and not misfiled, f"trips filed by another day than updated_at's: {misfiled[:3]}\n  {context}"
        change_days = {r["updated_at"].date() for r in filed}
        assert len(change_days) > 1, f"HARNESS: every trip changed on one day, filing proves nothing\n  {context}"
        check_incremental_is_rebuild(lake, NAMESPACE, MODEL, context)

        # A model naming a column the cities table does not have: validate_model names its line.
        text = MODEL.read_text()
        wrong = tmp_path / MODEL.name
        wrong.write_text(text.replace('lon = "center_lon"', 'lon = "centre_lon"'))
        line = next(n for n, row in enumerate(text.splitlines(), 1) if row.startswith("cities = {"))
        found = ridelake.validate_model(str(wrong), str(lake), NAMESPACE)
        assert len(found) == 1 and f"line {line}:" in found[0] and "centre_lon" in found[0], f"validate_model of {wrong}: {found}\n  {context}"
        print(f"{flavor}, seed {seed}: {dict(app.counts)}, {shared} numbers name a passenger and a driver\n  {log}")
    finally:
        app.close()
