"""The application's schema as the harness sees it: which tables and columns hold ridelake's logical
users and rides, and how the application encodes their values.

The workload thinks in logical terms (ridelake's silver names and values: `users.type` is
`customer`/`driver`, `rides.status` is `requested` ... `cancelled`, times are naive UTC instants of the
simulated clock, `distance_km` in kilometres, `fare_amount` in currency units) and a `Schema` says how
one application stores them:

- `DEFAULT`: today's tables `users` and `rides`, stored as they are named (nothing translated);
- `RENAMED`: tables `accounts` and `trips` with their own column names, their own status and role
  values, fares in cents, distances in metres and DATETIMEs holding Europe/Paris wall-clock time (the
  schema of models/example-renamed.toml).

Every `Column` gives the source column and, when the application encodes the value, how:
`values` (logical value -> the source values the application writes for it; several when the source
tells apart what ridelake does not, the first being the usual one), `zone` (a DATETIME holding
wall-clock time in that IANA zone: the application converts its UTC clock when it writes, and reads a
stored time back as the earlier instant when it is ambiguous) and `factor`/`quantum` (an integer
column holding `logical * factor`, e.g. cents; `quantum` is the logical resolution the application
rounds to).

`types` are the catalog types source-mysql's `discover` declares for the source columns
(/work/shared/reference/source-mysql.md), checked against the server by `source_mysql.check_catalog`.

A schema can change as the application's does (`Schema.modify`, `Schema.drop`: an `ALTER TABLE` at
the source); the new `Schema` ends its `ddl` with the statement, which `Workload.alter` runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

# source-mysql's catalog types (what its `discover` declares for these MySQL column types).
INTEGER = {"type": "number", "airbyte_type": "integer"}
NUMBER = {"type": "number"}
STRING = {"type": "string"}
DATETIME = {"type": "string", "format": "date-time", "airbyte_type": "timestamp_without_timezone"}

CENT = Decimal("0.01")

USER_COLUMNS = ["id", "type", "name", "email", "phone", "city", "created_at", "updated_at"]
RIDE_COLUMNS = [
    "id", "customer_id", "driver_id", "status", "requested_at", "accepted_at", "started_at", "completed_at",
    "cancelled_at", "pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon", "distance_km", "duration_s",
    "fare_amount", "currency", "payment_method", "customer_rating", "driver_rating", "created_at", "updated_at",
]


@dataclass(frozen=True)
class Column:
    name: str  # the source column
    type: dict  # its source-mysql catalog type
    values: dict[str, tuple[str, ...]] = field(default_factory=dict)  # logical -> source values (first: usual)
    zone: str | None = None  # DATETIME holding wall-clock time in this zone (logical: naive UTC)
    factor: int = 1  # source = logical * factor
    quantum: Decimal | None = None  # the logical resolution the application rounds to (DECIMAL/scaled columns)

    @property
    def source_digits(self) -> int:
        """Decimal digits the source column keeps (for SQL `ROUND`)."""
        return max(0, -(self.quantum * self.factor).normalize().as_tuple().exponent)


@dataclass(frozen=True)
class Schema:
    name: str
    tables: dict[str, str]  # logical table -> source table
    columns: dict[str, dict[str, Column]]  # logical table -> logical column -> Column, in the table's order
    ddl: tuple[str, ...]  # the statements that make the tables (CREATE TABLE, then any ALTER TABLE)
    # logical table -> the source columns of its primary key, when the key is composite (the table's
    # columns then hold no logical `id`)
    composite_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def table(self, logical: str) -> str:
        return self.tables[logical]

    def logical_table(self, table: str) -> str:
        """The logical name of a source table (a logical name is returned as is)."""
        if table in self.tables:
            return table
        return next(t for t, source in self.tables.items() if source == table)

    @property
    def users(self) -> str:
        return self.tables["users"]

    @property
    def rides(self) -> str:
        return self.tables["rides"]

    def source_columns(self, table: str) -> list[str]:
        """The source columns of a table (source or logical name), in the table's order."""
        return [c.name for c in self.columns[self.logical_table(table)].values()]

    def key(self, table: str) -> str:
        return self.columns[self.logical_table(table)]["id"].name

    def key_columns(self, table: str) -> tuple[str, ...]:
        """The source columns of the table's primary key, in order (one, unless it is composite)."""
        return self.composite_keys.get(self.logical_table(table)) or (self.key(table),)

    def key_of(self, table: str, row: dict):
        """The key of a row (source columns -> values) as the harness holds keys: `key_value` of its
        key column, or the tuple of a composite key's values."""
        columns = self.key_columns(table)
        if len(columns) == 1:
            return self.key_value(table, row[columns[0]])
        return tuple(row[c] for c in columns)

    def text_keys(self, table: str) -> bool:
        """Whether the table's key holds text (`CHAR(36)` UUIDs) rather than integers."""
        return self.columns[self.logical_table(table)]["id"].type is STRING

    def key_value(self, table: str, value):
        """A key as the server (or a record) gives it, as the harness holds keys: text for a text
        key, else an int."""
        return str(value) if self.text_keys(table) else int(value)

    def types(self, table: str) -> dict[str, dict]:
        return {c.name: c.type for c in self.columns[self.logical_table(table)].values()}

    @property
    def streams(self) -> dict[str, list[str]]:
        """Source table -> source columns, parents first (the streams of the connection): in the
        order of `tables` (users before rides; a schema may hold its users in several tables)."""
        return {source: self.source_columns(t) for t, source in self.tables.items()}

    # -- the application changes its tables -----------------------------------------------------
    def modify(self, table: str, column: str, ddl: str, **changes) -> "Schema":
        """This schema after `ddl` (an `ALTER TABLE ... MODIFY` at the source) changed the source
        column of the logical `table`.`column`; `changes` are the `Column` fields that change (its
        catalog `type`, `quantum`, ...)."""
        columns = {t: dict(cs) for t, cs in self.columns.items()}
        columns[table][column] = replace(columns[table][column], **changes)
        return replace(self, name=f"{self.name}+{columns[table][column].name}", columns=columns, ddl=(*self.ddl, ddl))

    def drop(self, table: str, column: str, ddl: str) -> "Schema":
        """This schema after `ddl` (an `ALTER TABLE ... DROP COLUMN` at the source) removed the source
        column of the logical `table`.`column` (the application writes no value for it any more)."""
        assert column != "id", "the key cannot be dropped"
        columns = {t: dict(cs) for t, cs in self.columns.items()}
        gone = columns[table].pop(column)
        return replace(self, name=f"{self.name}-{gone.name}", columns=columns, ddl=(*self.ddl, ddl))


def to_zone(moment: datetime, zone: str) -> datetime:
    """A naive UTC instant as naive wall-clock time in `zone` (`fold` set on the repeated hour's
    second occurrence)."""
    return moment.replace(tzinfo=timezone.utc).astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def from_zone(wall: datetime, zone: str) -> datetime:
    """Naive wall-clock time in `zone` as a naive UTC instant; an ambiguous time is the earlier
    instant (fold=0)."""
    return wall.replace(tzinfo=ZoneInfo(zone), fold=0).astimezone(timezone.utc).replace(tzinfo=None)


def wall_clock_kind(wall: datetime, zone: str) -> str:
    """`ambiguous` (the repeated hour), `missing` (skipped when clocks go forward) or `plain`."""
    tz = ZoneInfo(zone)
    first, second = wall.replace(tzinfo=tz, fold=0), wall.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return "plain"
    # In a gap, fold=0 takes the offset before the transition (the larger one when clocks go forward).
    return "ambiguous" if first.utcoffset() > second.utcoffset() else "missing"


# -- today's schema -------------------------------------------------------------------------------
DEFAULT_DDL = (
    """CREATE TABLE users (
        id BIGINT NOT NULL PRIMARY KEY,
        type ENUM('customer','driver') NOT NULL,
        name VARCHAR(100) NOT NULL,
        email VARCHAR(255) NULL,
        phone VARCHAR(32) NULL,
        city VARCHAR(64) NULL,
        created_at DATETIME(6) NOT NULL,
        updated_at DATETIME(6) NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE rides (
        id BIGINT NOT NULL PRIMARY KEY,
        customer_id BIGINT NOT NULL,
        driver_id BIGINT NULL,
        status VARCHAR(16) NOT NULL,
        requested_at DATETIME(6) NOT NULL,
        accepted_at DATETIME(6) NULL,
        started_at DATETIME(6) NULL,
        completed_at DATETIME(6) NULL,
        cancelled_at DATETIME(6) NULL,
        pickup_lat DECIMAL(9,6) NULL,
        pickup_lon DECIMAL(9,6) NULL,
        dropoff_lat DECIMAL(9,6) NULL,
        dropoff_lon DECIMAL(9,6) NULL,
        distance_km DECIMAL(8,2) NULL,
        duration_s INT NULL,
        fare_amount DECIMAL(10,2) NULL,
        currency CHAR(3) NULL,
        payment_method VARCHAR(16) NULL,
        customer_rating TINYINT NULL,
        driver_rating TINYINT NULL,
        created_at DATETIME(6) NOT NULL,
        updated_at DATETIME(6) NOT NULL,
        KEY rides_customer (customer_id),
        KEY rides_driver (driver_id),
        CONSTRAINT rides_customer_fk FOREIGN KEY (customer_id) REFERENCES users (id) ON DELETE RESTRICT,
        CONSTRAINT rides_driver_fk FOREIGN KEY (driver_id) REFERENCES users (id) ON DELETE RESTRICT
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
)
_DEFAULT_TYPES = {
    "users": {"id": INTEGER, "type": STRING, "name": STRING, "email": STRING, "phone": STRING, "city": STRING,
              "created_at": DATETIME, "updated_at": DATETIME},
    "rides": {"id": INTEGER, "customer_id": INTEGER, "driver_id": INTEGER, "status": STRING, "requested_at": DATETIME,
              "accepted_at": DATETIME, "started_at": DATETIME, "completed_at": DATETIME, "cancelled_at": DATETIME,
              "pickup_lat": NUMBER, "pickup_lon": NUMBER, "dropoff_lat": NUMBER, "dropoff_lon": NUMBER,
              "distance_km": NUMBER, "duration_s": INTEGER, "fare_amount": NUMBER, "currency": STRING,
              "payment_method": STRING, "customer_rating": INTEGER, "driver_rating": INTEGER,
              "created_at": DATETIME, "updated_at": DATETIME},
}
_DEFAULT_QUANTA = {"distance_km": CENT, "fare_amount": CENT}

DEFAULT = Schema(
    name="default",
    tables={"users": "users", "rides": "rides"},
    columns={table: {c: Column(c, kind, quantum=_DEFAULT_QUANTA.get(c) if table == "rides" else None)
                     for c, kind in types.items()}
             for table, types in _DEFAULT_TYPES.items()},
    ddl=DEFAULT_DDL,
)


# -- the renamed schema (models/example-renamed.toml) ---------------------------------------------
PARIS = "Europe/Paris"

RENAMED_DDL = (
    """CREATE TABLE accounts (
        account_id BIGINT NOT NULL PRIMARY KEY,
        role ENUM('rider','driver') NOT NULL,
        full_name VARCHAR(100) NOT NULL,
        email VARCHAR(255) NULL,
        phone VARCHAR(32) NULL,
        home_city VARCHAR(64) NULL,
        signup_ts DATETIME(6) NOT NULL,
        modified_ts DATETIME(6) NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    """CREATE TABLE trips (
        trip_id BIGINT NOT NULL PRIMARY KEY,
        rider_id BIGINT NOT NULL,
        driver_account_id BIGINT NULL,
        state VARCHAR(24) NOT NULL,
        pickup_ts DATETIME(6) NOT NULL,
        assigned_ts DATETIME(6) NULL,
        begin_ts DATETIME(6) NULL,
        end_ts DATETIME(6) NULL,
        cancel_ts DATETIME(6) NULL,
        pickup_latitude DECIMAL(9,6) NULL,
        pickup_longitude DECIMAL(9,6) NULL,
        dropoff_latitude DECIMAL(9,6) NULL,
        dropoff_longitude DECIMAL(9,6) NULL,
        distance_m INT NULL,
        duration_s INT NULL,
        fare_cents INT NULL,
        currency_code CHAR(3) NULL,
        payment VARCHAR(16) NULL,
        rider_stars TINYINT NULL,
        driver_stars TINYINT NULL,
        created_ts DATETIME(6) NOT NULL,
        modified_ts DATETIME(6) NOT NULL,
        KEY trips_rider (rider_id),
        KEY trips_driver (driver_account_id),
        CONSTRAINT trips_rider_fk FOREIGN KEY (rider_id) REFERENCES accounts (account_id) ON DELETE RESTRICT,
        CONSTRAINT trips_driver_fk FOREIGN KEY (driver_account_id) REFERENCES accounts (account_id) ON DELETE RESTRICT
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
)


def _paris(name: str) -> Column:
    return Column(name, DATETIME, zone=PARIS)


RENAMED = Schema(
    name="renamed",
    tables={"users": "accounts", "rides": "trips"},
    columns={
        "users": {
            "id": Column("account_id", INTEGER),
            "type": Column("role", STRING, values={"customer": ("rider",), "driver": ("driver",)}),
            "name": Column("full_name", STRING),
            "email": Column("email", STRING),
            "phone": Column("phone", STRING),
            "city": Column("home_city", STRING),
            "created_at": _paris("signup_ts"),
            "updated_at": _paris("modified_ts"),
        },
        "rides": {
            "id": Column("trip_id", INTEGER),
            "customer_id": Column("rider_id", INTEGER),
            "driver_id": Column("driver_account_id", INTEGER),
            "status": Column("state", STRING, values={
                "requested": ("REQUESTED",), "accepted": ("DRIVER_ASSIGNED",), "in_progress": ("ON_TRIP",),
                "completed": ("DONE",), "cancelled": ("CANCELED_BY_RIDER", "CANCELED_BY_DRIVER")}),
            "requested_at": _paris("pickup_ts"),
            "accepted_at": _paris("assigned_ts"),
            "started_at": _paris("begin_ts"),
            "completed_at": _paris("end_ts"),
            "cancelled_at": _paris("cancel_ts"),
            "pickup_lat": Column("pickup_latitude", NUMBER),
            "pickup_lon": Column("pickup_longitude", NUMBER),
            "dropoff_lat": Column("dropoff_latitude", NUMBER),
            "dropoff_lon": Column("dropoff_longitude", NUMBER),
            "distance_km": Column("distance_m", INTEGER, factor=1000, quantum=Decimal("0.001")),
            "duration_s": Column("duration_s", INTEGER),
            "fare_amount": Column("fare_cents", INTEGER, factor=100, quantum=CENT),
            "currency": Column("currency_code", STRING),
            "payment_method": Column("payment", STRING),
            "customer_rating": Column("rider_stars", INTEGER),
            "driver_rating": Column("driver_stars", INTEGER),
            "created_at": _paris("created_ts"),
            "updated_at": _paris("modified_ts"),
        },
    },
    ddl=RENAMED_DDL,
)


# -- the renamed schema with UUID keys (the same model file) --------------------------------------
def _uuid_keys(ddl: str) -> str:
    for column in ("account_id", "trip_id", "rider_id", "driver_account_id"):
        ddl = ddl.replace(f"{column} BIGINT", f"{column} CHAR(36)")
    return ddl


# The application of RENAMED keying its accounts and trips by UUIDs (`CHAR(36)`, written by the
# application, random-looking: their text order is not the order they were made in); the trips'
# links hold the accounts' UUIDs. models/example-renamed.toml maps it unchanged: silver's keys are
# then text.
RENAMED_UUID = Schema(
    name="renamed-uuid",
    tables=RENAMED.tables,
    columns={
        table: {name: replace(c, type=STRING) if name in ("id", "customer_id", "driver_id") else c for name, c in columns.items()}
        for table, columns in RENAMED.columns.items()
    },
    ddl=tuple(_uuid_keys(d) for d in RENAMED_DDL),
)

SCHEMAS = {s.name: s for s in (DEFAULT, RENAMED, RENAMED_UUID)}
