"""The ride-hailing application's tables and a seeded, realistic stream of transactions on them.

Independent of `ridelake-gen`: this is what the application itself does to a MariaDB database, so
the binlog holds whatever a real server writes for it (multi-row statements, several statements
per transaction, deletes with before-images, the same key deleted and inserted again, transactions
committed in the same second).

Time is simulated: a clock (naive UTC) advances by a random step before every transaction, and each
transaction runs under `SET timestamp = <clock>`, so that the binlog events carry the simulated
commit time (second resolution) and the rows' `created_at`/`updated_at` agree with it. Phases start
days apart, so a history spans several months. Everything depends only on the seed (choices read the
database with `ORDER BY id`).

The transactions are written once, in logical terms (ridelake's names and values), and stored through
a `schema.Schema`: by default today's `users` and `rides` tables (the SQL sent is exactly the
logical one); `schema.RENAMED` stores the same history in `accounts` and `trips`, with their own
column names, status and role values, cents, metres and Europe/Paris wall-clock DATETIMEs.
`Workload.alter` changes the tables mid-history (`ALTER TABLE`, as `Schema.modify`/`Schema.drop`
describe it): later transactions write through the new schema (e.g. fractional metres into a
column made DECIMAL; nothing into a dropped column).
"""
from __future__ import annotations

import hashlib
import random
import uuid
from collections import Counter
from contextlib import closing, contextmanager
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

from .mariadb import MariaDB
from .schema import DEFAULT, Column, Schema, from_zone, to_zone, wall_clock_kind

# Today's tables (schema.DEFAULT), kept under their old names.
SCHEMA = list(DEFAULT.ddl)

# City centers (same list as crates/ridelake-core/src/cities.rs: gold assigns a ride to the
# nearest one within 60 km of its pickup).
CITIES = [
    ("Paris", 48.8566, 2.3522, "EUR"), ("Lyon", 45.7640, 4.8357, "EUR"), ("Berlin", 52.5200, 13.4050, "EUR"),
    ("Madrid", 40.4168, -3.7038, "EUR"), ("Lisbon", 38.7223, -9.1393, "EUR"), ("London", 51.5074, -0.1278, "GBP"),
    ("New York", 40.7128, -74.0060, "USD"), ("Chicago", 41.8781, -87.6298, "USD"), ("Austin", 30.2672, -97.7431, "USD"),
    ("Toronto", 43.6532, -79.3832, "CAD"), ("Casablanca", 33.5731, -7.5898, "MAD"), ("Nairobi", -1.2921, 36.8219, "KES"),
]
# Pickups far from every city (open sea, desert): gold puts them in "other".
REMOTE_POINTS = [(0.5, -30.0), (-40.0, 10.0), (23.0, 12.0)]
FIRST_NAMES = ["Ana", "Bruno", "Chloé", "Dmitri", "Élodie", "Fatima", "Gustavo", "Hannah", "Ibrahim", "Jürgen",
               "Kaito", "Léa", "Mohammed", "Nadia", "Oğuz", "Priya", "Quentin", "Rosa", "Søren", "Tomás", "Zoë"]
LAST_NAMES = ["Martin", "Müller", "García", "Silva", "Smith", "Nguyen", "Kowalski", "Dubois", "O'Brien", "Okafor"]
PAYMENT_METHODS = ["card", "card", "card", "cash", "wallet"]  # (+ "app_wallet" after a migration)
MICRO = Decimal("0.000001")


def epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=timezone.utc).timestamp()


class Table:
    """One logical table as the application stores it, through the workload's schema: `{t}` in SQL is
    the source table and `t.<logical column>` the source column; `enc`/`dec` turn a logical value into
    the stored one and back; `lit`, `eq` and `in_` write a logical value (or values) as SQL."""

    def __init__(self, workload: "Workload", logical: str):
        self._workload = workload
        self._table = workload.schema.table(logical)
        self._columns = workload.schema.columns[logical]

    def __str__(self) -> str:
        return self._table

    def __format__(self, spec: str) -> str:
        return format(self._table, spec)

    def __getattr__(self, logical: str) -> str:
        if logical.startswith("_"):
            raise AttributeError(logical)
        try:
            return self._columns[logical].name
        except KeyError:
            raise AttributeError(f"{self._table} has no column for {logical}") from None

    def column(self, logical: str) -> Column:
        return self._columns[logical]

    def has(self, logical: str) -> bool:
        """Whether the table has a column for `logical` (not when the application dropped it)."""
        return logical in self._columns

    def options(self, logical: str, value: str) -> tuple[str, ...]:
        """The source values the application may write for a logical value."""
        return self._columns[logical].values.get(value, (value,))

    def choose(self, logical: str, value: str) -> int:
        """Which of the source values for `value` this write uses (a draw only when there are several)."""
        n = len(self.options(logical, value))
        return self._workload.rng.randrange(n) if n > 1 else 0

    def enc(self, logical: str, value, variant: int = 0):
        """A logical value as the application stores it."""
        column = self._columns[logical]
        if value is None:
            return None
        if column.values:
            value = self.options(logical, value)[variant]
        if column.zone:
            wall = to_zone(value, column.zone)
            kind = wall_clock_kind(wall, column.zone)
            assert kind != "missing", f"{wall} does not exist in {column.zone}"
            if kind == "ambiguous":
                self._workload.wall_clock["repeated hour, " + ("later" if wall.fold else "earlier")] += 1
            value = wall.replace(fold=0)
        if column.factor != 1:
            scaled = Decimal(value) * column.factor
            # The source's resolution: 1 (an integer column, e.g. cents), or finer (a DECIMAL column).
            step = column.quantum * column.factor if column.quantum is not None else Decimal(1)
            assert scaled % step == 0, f"{logical} {value} is not a whole number of {step}/{column.factor}"
            value = int(scaled) if step == step.to_integral_value() else scaled
        return value

    def dec(self, logical: str, value):
        """A stored value as the application reads it (an ambiguous wall-clock time as the earlier instant)."""
        column = self._columns[logical]
        if value is None:
            return None
        if column.values:
            value = next((k for k, options in column.values.items() if value in options), value)
        if column.zone:
            value = from_zone(value, column.zone)
        if column.factor != 1:
            value = Decimal(value) / column.factor
        return value

    def lit(self, logical: str, value: str, variant: int = 0) -> str:
        return f"'{self.enc(logical, value, variant)}'"

    def eq(self, logical: str, value: str) -> str:
        """SQL: the column holds (any source value for) the logical value."""
        options = self.options(logical, value)
        name = self._columns[logical].name
        return f"{name} = '{options[0]}'" if len(options) == 1 else f"{name} IN ({','.join(repr(o) for o in options)})"

    def in_(self, logical: str, *values: str) -> str:
        return f"{self._columns[logical].name} IN ({','.join(repr(o) for v in values for o in self.options(logical, v))})"

    def row(self, row: dict) -> dict:
        """A logical row as the source columns and values to insert (a logical column the table no
        longer has, dropped by the application, must be null and is left out)."""
        dropped = [c for c in row if c not in self._columns]
        assert all(row[c] is None for c in dropped), f"{self._table}: values for dropped columns {dropped}"
        return {self._columns[c].name: self.enc(c, v) for c, v in row.items() if c in self._columns}


class Workload:
    """Transactions of the application on `database` of `db`, driven by `random.Random(seed)`, stored
    through `schema` (today's tables by default)."""

    def __init__(self, db: MariaDB, database: str, seed: int, start: datetime | None = None, schema: Schema = DEFAULT):
        self.db = db
        self.database = database
        self.seed = seed
        self.schema = schema
        self.rng = random.Random(seed)
        self.now = start or datetime(2024, 1, 1) + timedelta(days=self.rng.randrange(0, 700),
                                                              seconds=self.rng.randrange(0, 86400))
        self.now = self.now.replace(microsecond=0)
        self.next_user = 1000 + self.rng.randrange(0, 9000)
        self.next_ride = 500_000 + self.rng.randrange(0, 100_000)
        self.deleted_rides: list = []  # keys: ints, or UUID text (Schema.key_value)
        self.deleted_users: list = []
        self.counts: Counter = Counter()
        # Wall-clock values sent in a zone's repeated hour (the earlier or the later instant).
        self.wall_clock: Counter = Counter()
        self.u = Table(self, "users")
        self.r = Table(self, "rides")
        self.conn = db.connect(autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def table(self, logical: str) -> Table:
        return {"users": self.u, "rides": self.r}[logical]

    def alter(self, schema: Schema) -> list[str]:
        """The application changes its tables to `schema` (`schema.modify`/`schema.drop` of the
        current one): runs the statements `schema.ddl` adds to the current schema's (ALTER TABLE),
        then writes through it. Returns the statements run."""
        assert schema.ddl[:len(self.schema.ddl)] == self.schema.ddl, "not a change of the current schema"
        statements = list(schema.ddl[len(self.schema.ddl):])
        with self.conn.cursor() as cur:
            cur.execute(f"USE `{self.database}`")
            for ddl in statements:
                cur.execute(ddl)
        self.schema = schema
        self.u = Table(self, "users")
        self.r = Table(self, "rides")
        self.counts["alter"] += len(statements)
        return statements

    # -- plumbing -------------------------------------------------------------------------------
    def create_schema(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4")
            cur.execute(f"USE `{self.database}`")
            for ddl in self.schema.ddl:
                cur.execute(ddl)

    def tick(self) -> None:
        """The clock before a transaction: often minutes, sometimes hours, sometimes the same second."""
        roll = self.rng.random()
        if roll < 0.12:
            step = 0
        elif roll < 0.85:
            step = self.rng.randrange(1, 900)
        else:
            step = self.rng.randrange(900, 6 * 3600)
        self.now += timedelta(seconds=step)

    def stamp(self) -> datetime:
        """A row timestamp in the transaction's second (microseconds, as NOW(6) would give)."""
        return self.now + timedelta(microseconds=self.rng.randrange(0, 1_000_000))

    @contextmanager
    def transaction(self):
        self.tick()
        with self.conn.cursor() as cur:
            cur.execute(f"USE `{self.database}`")
            cur.execute("SET timestamp = %s", (epoch(self.now),))
            cur.execute("BEGIN")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
            cur.execute("SET timestamp = DEFAULT")

    def ids(self, sql: str, args=None, *, table: str) -> list:
        """The keys (of logical `table`) the query's first column returns."""
        with self.conn.cursor() as cur:
            cur.execute(f"USE `{self.database}`")
            cur.execute(sql, args)
            return [self.schema.key_value(table, r[0]) for r in cur.fetchall()]

    def new_key(self, table: str, number: int):
        """The key of the `number`-th row the application makes in logical `table`: the number, or a
        UUID the application draws when the table is keyed by UUIDs (the same for the same seed)."""
        if not self.schema.text_keys(table):
            return number
        return str(uuid.UUID(bytes=hashlib.sha256(f"{self.seed}:{table}:{number}".encode()).digest()[:16], version=4))

    def customers(self) -> list:
        u = self.u
        return self.ids(f"SELECT {u.id} FROM {u} WHERE {u.eq('type', 'customer')} ORDER BY {u.id}", table="users")

    def all_ids(self, table: Table) -> list:
        return self.ids(f"SELECT {table.id} FROM {table} ORDER BY {table.id}", table=self.schema.logical_table(str(table)))

    def open_rides(self) -> list:
        r = self.r
        return self.ids(f"SELECT {r.id} FROM {r} WHERE {r.in_('status', 'requested', 'accepted', 'in_progress')} ORDER BY {r.id}", table="rides")

    # -- values ---------------------------------------------------------------------------------
    def person(self, uid) -> tuple[str, str | None, str | None]:
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        email = f"{first.lower()}.{uid}@example.com" if self.rng.random() < 0.85 else None
        phone = f"+{self.rng.randrange(1, 99)} {self.rng.randrange(100_000_000, 999_999_999)}" if self.rng.random() < 0.7 else None
        return f"{first} {last}", email, phone

    def place(self) -> tuple[str, float, float, str]:
        return self.rng.choice(CITIES)

    def point_near(self, lat: float, lon: float, km: float = 12.0) -> tuple[Decimal, Decimal]:
        dlat = self.rng.uniform(-km, km) / 111.0
        dlon = self.rng.uniform(-km, km) / 111.0 / 1.5
        return (Decimal(lat + dlat).quantize(MICRO, ROUND_HALF_UP), Decimal(lon + dlon).quantize(MICRO, ROUND_HALF_UP))

    def ride_values(self, rid, customer, requested_at: datetime) -> dict:
        city, lat, lon, currency = self.place()
        roll = self.rng.random()
        if roll < 0.12:  # pickup unknown (the app had no GPS fix)
            pickup = (None, None)
        elif roll < 0.18:
            pickup = tuple(Decimal(v).quantize(MICRO) for v in self.rng.choice(REMOTE_POINTS))
        else:
            pickup = self.point_near(lat, lon)
        dropoff = self.point_near(lat, lon, 25.0) if self.rng.random() < 0.9 else (None, None)
        estimate = Decimal(self.rng.uniform(0.8, 35.0)).quantize(self.r.column("distance_km").quantum, ROUND_HALF_UP)
        created = self.stamp()
        return {
            "id": rid, "customer_id": customer, "driver_id": None, "status": "requested",
            "requested_at": requested_at, "accepted_at": None, "started_at": None, "completed_at": None,
            "cancelled_at": None, "pickup_lat": pickup[0], "pickup_lon": pickup[1], "dropoff_lat": dropoff[0],
            "dropoff_lon": dropoff[1], "distance_km": estimate, "duration_s": None, "fare_amount": None,
            "currency": currency, "payment_method": self.rng.choice(PAYMENT_METHODS), "customer_rating": None,
            "driver_rating": None, "created_at": created, "updated_at": created,
        }

    def insert(self, cur, table: str, row: dict) -> None:
        """Inserts a logical row into the logical table `table` ("users" or "rides")."""
        view = self.table(table)
        stored = view.row(row)
        columns = list(stored)
        cur.execute(f"INSERT INTO {view} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
                    [stored[c] for c in columns])

    def new_user(self, cur, kind: str):
        uid = self.new_key("users", self.next_user)
        self.next_user += self.rng.choice([1, 1, 1, 2, 7])
        name, email, phone = self.person(uid)
        created = self.stamp()
        self.insert(cur, "users", {"id": uid, "type": kind, "name": name, "email": email, "phone": phone,
                                   "city": self.place()[0] if self.rng.random() < 0.9 else None,
                                   "created_at": created, "updated_at": created})
        return uid

    def new_ride_id(self):
        rid = self.new_key("rides", self.next_ride)
        self.next_ride += self.rng.choice([1, 1, 2, 3])
        return rid

    # -- operations: each is one transaction, or None when it does not apply now ----------------
    def op_new_customer_with_ride(self):
        with self.transaction() as cur:
            uid = self.new_user(cur, "customer")
            self.insert(cur, "rides", self.ride_values(self.new_ride_id(), uid, self.stamp()))
        return True

    def op_new_driver(self):
        with self.transaction() as cur:
            self.new_user(cur, "driver")
        return True

    def op_new_rides(self):
        customers = self.customers()
        if not customers:
            return None
        with self.transaction() as cur:
            for _ in range(self.rng.choice([1, 1, 1, 2, 3])):
                self.insert(cur, "rides", self.ride_values(self.new_ride_id(), self.rng.choice(customers), self.stamp()))
        return True

    def advance_ride(self, cur, rid, steps: int) -> None:
        """Up to `steps` status changes of one ride, one UPDATE statement each."""
        r, u = self.r, self.u
        read = ("status", "requested_at", "accepted_at", "started_at", "distance_km")
        for _ in range(steps):
            cur.execute(f"SELECT {', '.join(getattr(r, c) for c in read)} FROM {r} WHERE {r.id} = %s", (rid,))
            status, requested, accepted, started, estimate = (r.dec(c, v) for c, v in zip(read, cur.fetchone()))
            updated = self.stamp()
            if status == "requested":
                if self.rng.random() < 0.15:  # the customer cancels
                    cur.execute(f"UPDATE {r} SET {r.status} = {r.lit('status', 'cancelled')}, {r.cancelled_at} = %s, "
                                f"{r.updated_at} = %s WHERE {r.id} = %s",
                                (r.enc("cancelled_at", requested + timedelta(seconds=self.rng.randrange(30, 900))),
                                 r.enc("updated_at", updated), rid))
                    return
                drivers = self.ids(f"SELECT {u.id} FROM {u} WHERE {u.eq('type', 'driver')} ORDER BY {u.id}", table="users")
                if not drivers:
                    return
                cur.execute(f"UPDATE {r} SET {r.status} = {r.lit('status', 'accepted')}, {r.driver_id} = %s, "
                            f"{r.accepted_at} = %s, {r.updated_at} = %s WHERE {r.id} = %s",
                            (self.rng.choice(drivers), r.enc("accepted_at", requested + timedelta(
                                seconds=self.rng.randrange(5, 600), microseconds=self.rng.randrange(0, 10**6))),
                             r.enc("updated_at", updated), rid))
            elif status == "accepted":
                if self.rng.random() < 0.1:  # the customer or the driver cancels
                    cancelled = r.lit("status", "cancelled", r.choose("status", "cancelled"))
                    cur.execute(f"UPDATE {r} SET {r.status} = {cancelled}, {r.cancelled_at} = %s, "
                                f"{r.updated_at} = %s WHERE {r.id} = %s",
                                (r.enc("cancelled_at", accepted + timedelta(seconds=self.rng.randrange(30, 600))),
                                 r.enc("updated_at", updated), rid))
                    return
                cur.execute(f"UPDATE {r} SET {r.status} = {r.lit('status', 'in_progress')}, {r.started_at} = %s, "
                            f"{r.updated_at} = %s WHERE {r.id} = %s",
                            (r.enc("started_at", accepted + timedelta(seconds=self.rng.randrange(60, 900))),
                             r.enc("updated_at", updated), rid))
            elif status == "in_progress":
                duration = self.rng.randrange(240, 5400)
                distance = (Decimal(estimate or 5) * Decimal(self.rng.uniform(0.85, 1.25))).quantize(
                    r.column("distance_km").quantum, ROUND_HALF_UP)
                fare = (Decimal("2.50") + distance * Decimal("1.35") + Decimal(duration) / 60 * Decimal("0.30")).quantize(
                    r.column("fare_amount").quantum, ROUND_HALF_UP)
                # (drawn whether or not the application still has the columns: same history)
                ratings = {"customer_rating": self.rng.choice([None, 3, 4, 5, 5]),
                           "driver_rating": self.rng.choice([None, None, 1, 4, 5, 5])}
                ratings = {c: v for c, v in ratings.items() if r.has(c)}
                cur.execute(
                    f"UPDATE {r} SET {r.status} = {r.lit('status', 'completed')}, {r.completed_at} = %s, {r.duration_s} = %s, "
                    f"{r.distance_km} = %s, {r.fare_amount} = %s, "
                    f"{''.join(f'{getattr(r, c)} = %s, ' for c in ratings)}{r.updated_at} = %s WHERE {r.id} = %s",
                    (r.enc("completed_at", started + timedelta(seconds=duration)), duration, r.enc("distance_km", distance),
                     r.enc("fare_amount", fare), *ratings.values(), r.enc("updated_at", updated), rid))
            else:
                return

    def op_ride_lifecycle(self):
        """Several changes of one ride in one transaction (accept -> start -> complete)."""
        open_rides = self.open_rides()
        if not open_rides:
            return None
        with self.transaction() as cur:
            for rid in self.rng.sample(open_rides, min(len(open_rides), self.rng.choice([1, 1, 2]))):
                self.advance_ride(cur, rid, self.rng.choice([1, 2, 3, 3]))
        return True

    def op_ride_step(self):
        open_rides = self.open_rides()
        if not open_rides:
            return None
        with self.transaction() as cur:
            self.advance_ride(cur, self.rng.choice(open_rides), 1)
        return True

    def op_cancel_stale_requests(self):
        """One multi-row UPDATE: every request older than an hour is cancelled."""
        r = self.r
        with self.transaction() as cur:
            cur.execute(f"UPDATE {r} SET {r.status} = {r.lit('status', 'cancelled')}, {r.cancelled_at} = %s, {r.updated_at} = %s "
                        f"WHERE {r.eq('status', 'requested')} AND {r.requested_at} < %s",
                        (r.enc("cancelled_at", self.now), r.enc("updated_at", self.stamp()),
                         r.enc("requested_at", self.now - timedelta(hours=1))))
            return cur.rowcount > 0 or None

    def op_fare_correction(self):
        """Multi-row UPDATE of completed rides (a pricing fix)."""
        r = self.r
        done = self.ids(f"SELECT {r.id} FROM {r} WHERE {r.eq('status', 'completed')} ORDER BY {r.id}", table="rides")
        if len(done) < 2:
            return None
        chosen = self.rng.sample(done, min(len(done), self.rng.randrange(2, 6)))
        digits = r.column("fare_amount").source_digits
        with self.transaction() as cur:
            cur.execute(f"UPDATE {r} SET {r.fare_amount} = ROUND({r.fare_amount} * %s, {digits}), {r.updated_at} = %s "
                        f"WHERE {r.id} IN ({', '.join(['%s'] * len(chosen))})",
                        [self.rng.choice([Decimal("0.9"), Decimal("1.05"), Decimal("1.1")]), r.enc("updated_at", self.stamp()), *chosen])
        return True

    def op_rate_rides(self):
        r = self.r
        if not r.has("customer_rating"):
            return None
        done = self.ids(f"SELECT {r.id} FROM {r} WHERE {r.eq('status', 'completed')} AND {r.customer_rating} IS NULL ORDER BY {r.id}", table="rides")
        if not done:
            return None
        chosen = self.rng.sample(done, min(len(done), self.rng.randrange(1, 4)))
        with self.transaction() as cur:
            cur.execute(f"UPDATE {r} SET {r.customer_rating} = %s, {r.updated_at} = %s WHERE {r.id} IN ({', '.join(['%s'] * len(chosen))})",
                        [self.rng.randrange(1, 6), r.enc("updated_at", self.stamp()), *chosen])
        return True

    def op_reschedule_ride(self):
        """A data fix that moves a ride to another day (and maybe month)."""
        r = self.r
        rides = self.all_ids(r)
        if not rides:
            return None
        with self.transaction() as cur:
            days, updated, rid = self.rng.choice([1, 2, 31]), self.stamp(), self.rng.choice(rides)
            if r.column("requested_at").zone is None:
                cur.execute(f"UPDATE {r} SET {r.requested_at} = {r.requested_at} - INTERVAL %s DAY, {r.updated_at} = %s WHERE {r.id} = %s",
                            (days, r.enc("updated_at", updated), rid))
            else:
                # Wall-clock arithmetic in SQL could land in the hour skipped when clocks go forward:
                # the application moves the instant and writes it back in its zone.
                cur.execute(f"SELECT {r.requested_at} FROM {r} WHERE {r.id} = %s", (rid,))
                requested = r.dec("requested_at", cur.fetchone()[0])
                cur.execute(f"UPDATE {r} SET {r.requested_at} = %s, {r.updated_at} = %s WHERE {r.id} = %s",
                            (r.enc("requested_at", requested - timedelta(days=days)), r.enc("updated_at", updated), rid))
        return True

    def op_delete_rides(self):
        r = self.r
        rides = self.all_ids(r)
        if not rides:
            return None
        chosen = self.rng.sample(rides, min(len(rides), self.rng.choice([1, 1, 2, 3])))
        with self.transaction() as cur:
            cur.execute(f"DELETE FROM {r} WHERE {r.id} IN ({', '.join(['%s'] * len(chosen))})", chosen)
        self.deleted_rides.extend(chosen)
        return True

    def op_purge_cancelled(self):
        """One multi-row DELETE."""
        r = self.r
        with self.transaction() as cur:
            before = r.enc("cancelled_at", self.now - timedelta(days=3))
            cur.execute(f"SELECT {r.id} FROM {r} WHERE {r.eq('status', 'cancelled')} AND {r.cancelled_at} < %s ORDER BY {r.id}", (before,))
            gone = [self.schema.key_value("rides", row[0]) for row in cur.fetchall()]
            if not gone:
                return None
            cur.execute(f"DELETE FROM {r} WHERE {r.eq('status', 'cancelled')} AND {r.cancelled_at} < %s", (before,))
        self.deleted_rides.extend(gone)
        return True

    def op_reinsert_deleted_ride(self):
        """The same ride id again after its delete, with other values (another day, maybe another customer)."""
        existing = set(self.all_ids(self.r))
        candidates = sorted(set(self.deleted_rides) - existing)
        customers = self.customers()
        if not candidates or not customers:
            return None
        rid = self.rng.choice(candidates)
        with self.transaction() as cur:
            self.insert(cur, "rides", self.ride_values(rid, self.rng.choice(customers), self.stamp()))
            if self.rng.random() < 0.5:
                self.advance_ride(cur, rid, self.rng.choice([1, 3]))
        return True

    def op_replace_ride(self):
        """DELETE then INSERT of the same ride id in one transaction (same commit second)."""
        r = self.r
        rides = self.all_ids(r)
        customers = self.customers()
        if not rides or not customers:
            return None
        rid = self.rng.choice(rides)
        with self.transaction() as cur:
            cur.execute(f"DELETE FROM {r} WHERE {r.id} = %s", (rid,))
            self.insert(cur, "rides", self.ride_values(rid, self.rng.choice(customers), self.stamp() - timedelta(days=self.rng.randrange(0, 3))))
        return True

    def op_user_moves(self):
        u = self.u
        users = self.all_ids(u)
        if not users:
            return None
        with self.transaction() as cur:
            cur.execute(f"UPDATE {u} SET {u.city} = %s, {u.updated_at} = %s WHERE {u.id} = %s",
                        (self.place()[0], u.enc("updated_at", self.stamp()), self.rng.choice(users)))
        return True

    def op_city_rename(self):
        """Multi-row UPDATE of users (a city renamed in the app)."""
        u = self.u
        old = self.place()[0]
        new = self.rng.choice([c[0] for c in CITIES if c[0] != old])
        with self.transaction() as cur:
            cur.execute(f"UPDATE {u} SET {u.city} = %s, {u.updated_at} = %s WHERE {u.city} = %s", (new, u.enc("updated_at", self.stamp()), old))
            return cur.rowcount > 0 or None

    def op_user_contact_change(self):
        u = self.u
        users = self.all_ids(u)
        if not users:
            return None
        uid = self.rng.choice(users)
        name, email, phone = self.person(uid)
        with self.transaction() as cur:
            cur.execute(f"UPDATE {u} SET {u.email} = %s, {u.phone} = %s, {u.updated_at} = %s WHERE {u.id} = %s",
                        (email, phone, u.enc("updated_at", self.stamp()), uid))
        return True

    def op_flip_user_type(self):
        """A customer becomes a driver or the reverse (the FKs do not check the type): their rides stop
        (or start) qualifying for silver `rides`."""
        u = self.u
        users = self.all_ids(u)
        if not users:
            return None
        with self.transaction() as cur:
            cur.execute(f"UPDATE {u} SET {u.type} = IF({u.eq('type', 'customer')}, {u.lit('type', 'driver')}, {u.lit('type', 'customer')}), "
                        f"{u.updated_at} = %s WHERE {u.id} = %s",
                        (u.enc("updated_at", self.stamp()), self.rng.choice(users)))
        return True

    def op_delete_user(self):
        """A user without rides is deleted, or a user's rides and then the user in one transaction."""
        u, r = self.u, self.r
        users = self.all_ids(u)
        if not users:
            return None
        uid = self.rng.choice(users)
        with self.transaction() as cur:
            cur.execute(f"SELECT {r.id} FROM {r} WHERE {r.customer_id} = %s OR {r.driver_id} = %s ORDER BY {r.id}", (uid, uid))
            rides = [self.schema.key_value("rides", row[0]) for row in cur.fetchall()]
            if rides:
                cur.execute(f"DELETE FROM {r} WHERE {r.customer_id} = %s OR {r.driver_id} = %s", (uid, uid))
            cur.execute(f"DELETE FROM {u} WHERE {u.id} = %s", (uid,))
        self.deleted_rides.extend(rides)
        self.deleted_users.append(uid)
        return True

    def op_user_comes_back(self):
        """A deleted user id is inserted again (an account restored), maybe with the other type."""
        existing = set(self.all_ids(self.u))
        candidates = sorted(set(self.deleted_users) - existing)
        if not candidates:
            return None
        uid = self.rng.choice(candidates)
        name, email, phone = self.person(uid)
        created = self.stamp()
        with self.transaction() as cur:
            self.insert(cur, "users", {"id": uid, "type": self.rng.choice(["customer", "driver"]), "name": name, "email": email,
                                       "phone": phone, "city": self.place()[0], "created_at": created, "updated_at": created})
        return True

    def op_renumber_rides(self):
        """A primary-key change: a run of consecutive ride ids shifted by one in one UPDATE (highest
        first). Its binlog event holds, for a key k of the run, the delete of k and the insert of k
        (from k-1): same event, same position, same time. With UUID keys, one ride is given a new
        UUID (the delete of the old key and the insert of the new one, in one event)."""
        r = self.r
        rides = self.all_ids(r)
        if not rides:
            return None
        if self.schema.text_keys("rides"):
            # UUID keys: the application gives a ride a new key (one UPDATE of the key).
            old, new = self.rng.choice(rides), self.new_ride_id()
            with self.transaction() as cur:
                cur.execute(f"UPDATE {r} SET {r.id} = %s, {r.updated_at} = %s WHERE {r.id} = %s", (new, r.enc("updated_at", self.stamp()), old))
            self.deleted_rides.append(old)
            return True
        present = set(rides)
        first = self.rng.choice(rides)
        gap = first
        while gap in present:
            gap += 1
        if gap - first > 6:
            return None
        self.next_ride = max(self.next_ride, gap + 1)
        with self.transaction() as cur:
            cur.execute(f"UPDATE {r} SET {r.id} = {r.id} + 1, {r.updated_at} = %s WHERE {r.id} BETWEEN %s AND %s ORDER BY {r.id} DESC",
                        (r.enc("updated_at", self.stamp()), first, gap - 1))
        self.deleted_rides.append(first)
        return True

    def op_bulk_touch(self):
        """A migration touching every ride: one statement whose rows span several binlog events."""
        r = self.r
        wallet, app_wallet = r.lit("payment_method", "wallet"), r.lit("payment_method", "app_wallet")
        with self.transaction() as cur:
            cur.execute(f"UPDATE {r} SET {r.payment_method} = CASE {r.payment_method} WHEN {wallet} THEN {app_wallet} "
                        f"WHEN {app_wallet} THEN {wallet} ELSE {r.payment_method} END, {r.updated_at} = %s",
                        (r.enc("updated_at", self.stamp()),))
            return cur.rowcount > 0 or None

    def op_promote_to_driver(self):
        """A customer becomes a driver and takes a ride in the same transaction, the ride's UPDATE
        before or after the user's."""
        u, r = self.u, self.r
        customers = self.customers()
        waiting = self.ids(f"SELECT {r.id} FROM {r} WHERE {r.eq('status', 'requested')} ORDER BY {r.id}", table="rides")
        if not customers or not waiting:
            return None
        uid, rid = self.rng.choice(customers), self.rng.choice(waiting)
        statements = [
            (f"UPDATE {u} SET {u.type} = {u.lit('type', 'driver')}, {u.updated_at} = %s WHERE {u.id} = %s",
             (u.enc("updated_at", self.stamp()), uid)),
            (f"UPDATE {r} SET {r.status} = {r.lit('status', 'accepted')}, {r.driver_id} = %s, {r.accepted_at} = %s, "
             f"{r.updated_at} = %s WHERE {r.id} = %s",
             (uid, r.enc("accepted_at", self.stamp()), r.enc("updated_at", self.stamp()), rid)),
        ]
        self.rng.shuffle(statements)
        with self.transaction() as cur:
            for sql, args in statements:
                cur.execute(sql, args)
        return True

    def op_fix_pickup(self):
        """The pickup point arrives late (GPS fix): the ride moves from city 'unknown' to a real one."""
        r = self.r
        blind = self.ids(f"SELECT {r.id} FROM {r} WHERE {r.pickup_lat} IS NULL ORDER BY {r.id}", table="rides")
        if not blind:
            return None
        _, lat, lon, _ = self.place()
        point = self.point_near(lat, lon)
        with self.transaction() as cur:
            cur.execute(f"UPDATE {r} SET {r.pickup_lat} = %s, {r.pickup_lon} = %s, {r.updated_at} = %s WHERE {r.id} = %s",
                        (point[0], point[1], r.enc("updated_at", self.stamp()), self.rng.choice(blind)))
        return True

    OPERATIONS = [
        ("new_customer_with_ride", 10), ("new_driver", 3), ("new_rides", 14), ("ride_lifecycle", 14), ("ride_step", 8),
        ("cancel_stale_requests", 2), ("fare_correction", 2), ("rate_rides", 2), ("reschedule_ride", 2),
        ("delete_rides", 4), ("purge_cancelled", 1), ("reinsert_deleted_ride", 3), ("replace_ride", 2),
        ("user_moves", 3), ("city_rename", 1), ("user_contact_change", 2), ("flip_user_type", 3), ("delete_user", 2),
        ("user_comes_back", 1), ("renumber_rides", 2), ("bulk_touch", 1), ("promote_to_driver", 2), ("fix_pickup", 2),
    ]

    # -- phases ---------------------------------------------------------------------------------
    def seed_data(self, drivers: int = 6, customers: int = 10) -> None:
        """The application's first users and rides (before the first sync)."""
        for _ in range(drivers):
            self.op_new_driver()
        for _ in range(customers):
            self.op_new_customer_with_ride()
        for _ in range(customers):
            self.op_ride_lifecycle()
        self.counts["seed"] += 1

    def phase(self, transactions: int, gap_days: tuple[int, int] | None = (1, 20)) -> Counter:
        """`transactions` random transactions, the first one `gap_days` after the previous phase."""
        if gap_days:
            self.now += timedelta(days=self.rng.randrange(*gap_days), seconds=self.rng.randrange(0, 86400))
        names, weights = zip(*self.OPERATIONS)
        done: Counter = Counter()
        attempts = 0
        while sum(done.values()) < transactions and attempts < transactions * 10:
            attempts += 1
            name = self.rng.choices(names, weights)[0]
            if getattr(self, f"op_{name}")():
                done[name] += 1
        self.counts.update(done)
        return done

    # -- the truth ------------------------------------------------------------------------------
    def rows(self, table: str) -> dict:
        """The source table's rows now (`table`: its source or logical name), by key, as stored and
        as the server returns them (datetime naive as stored, Decimal, int, str), under the source
        column names."""
        columns = self.schema.source_columns(table)
        source = self.schema.table(self.schema.logical_table(table))
        with closing(self.db.connect(self.database)) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT {', '.join(columns)} FROM {source} ORDER BY {self.schema.key(table)}")
            return {self.schema.key_value(table, r[0]): dict(zip(columns, r)) for r in cur.fetchall()}
