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
"""
from __future__ import annotations

import random
from collections import Counter
from contextlib import closing, contextmanager
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

from .mariadb import MariaDB

USER_COLUMNS = ["id", "type", "name", "email", "phone", "city", "created_at", "updated_at"]
RIDE_COLUMNS = [
    "id", "customer_id", "driver_id", "status", "requested_at", "accepted_at", "started_at", "completed_at",
    "cancelled_at", "pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon", "distance_km", "duration_s",
    "fare_amount", "currency", "payment_method", "customer_rating", "driver_rating", "created_at", "updated_at",
]

SCHEMA = [
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
]

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
CENT = Decimal("0.01")
MICRO = Decimal("0.000001")


def epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=timezone.utc).timestamp()


class Workload:
    """Transactions of the application on `database` of `db`, driven by `random.Random(seed)`."""

    def __init__(self, db: MariaDB, database: str, seed: int, start: datetime | None = None):
        self.db = db
        self.database = database
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = start or datetime(2024, 1, 1) + timedelta(days=self.rng.randrange(0, 700),
                                                              seconds=self.rng.randrange(0, 86400))
        self.now = self.now.replace(microsecond=0)
        self.next_user = 1000 + self.rng.randrange(0, 9000)
        self.next_ride = 500_000 + self.rng.randrange(0, 100_000)
        self.deleted_rides: list[int] = []
        self.deleted_users: list[int] = []
        self.counts: Counter = Counter()
        self.conn = db.connect(autocommit=True)

    def close(self) -> None:
        self.conn.close()

    # -- plumbing -------------------------------------------------------------------------------
    def create_schema(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4")
            cur.execute(f"USE `{self.database}`")
            for ddl in SCHEMA:
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

    def ids(self, sql: str, args=None) -> list[int]:
        with self.conn.cursor() as cur:
            cur.execute(f"USE `{self.database}`")
            cur.execute(sql, args)
            return [int(r[0]) for r in cur.fetchall()]

    # -- values ---------------------------------------------------------------------------------
    def person(self, uid: int) -> tuple[str, str | None, str | None]:
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

    def ride_values(self, rid: int, customer: int, requested_at: datetime) -> dict:
        city, lat, lon, currency = self.place()
        roll = self.rng.random()
        if roll < 0.12:  # pickup unknown (the app had no GPS fix)
            pickup = (None, None)
        elif roll < 0.18:
            pickup = tuple(Decimal(v).quantize(MICRO) for v in self.rng.choice(REMOTE_POINTS))
        else:
            pickup = self.point_near(lat, lon)
        dropoff = self.point_near(lat, lon, 25.0) if self.rng.random() < 0.9 else (None, None)
        estimate = Decimal(self.rng.uniform(0.8, 35.0)).quantize(CENT, ROUND_HALF_UP)
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
        columns = list(row)
        cur.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
                    [row[c] for c in columns])

    def new_user(self, cur, kind: str) -> int:
        uid = self.next_user
        self.next_user += self.rng.choice([1, 1, 1, 2, 7])
        name, email, phone = self.person(uid)
        created = self.stamp()
        self.insert(cur, "users", {"id": uid, "type": kind, "name": name, "email": email, "phone": phone,
                                   "city": self.place()[0] if self.rng.random() < 0.9 else None,
                                   "created_at": created, "updated_at": created})
        return uid

    def new_ride_id(self) -> int:
        rid = self.next_ride
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
        customers = self.ids("SELECT id FROM users WHERE type = 'customer' ORDER BY id")
        if not customers:
            return None
        with self.transaction() as cur:
            for _ in range(self.rng.choice([1, 1, 1, 2, 3])):
                self.insert(cur, "rides", self.ride_values(self.new_ride_id(), self.rng.choice(customers), self.stamp()))
        return True

    def advance_ride(self, cur, rid: int, steps: int) -> None:
        """Up to `steps` status changes of one ride, one UPDATE statement each."""
        for _ in range(steps):
            cur.execute("SELECT status, requested_at, accepted_at, started_at, distance_km FROM rides WHERE id = %s", (rid,))
            status, requested, accepted, started, estimate = cur.fetchone()
            updated = self.stamp()
            if status == "requested":
                if self.rng.random() < 0.15:
                    cur.execute("UPDATE rides SET status = 'cancelled', cancelled_at = %s, updated_at = %s WHERE id = %s",
                                (requested + timedelta(seconds=self.rng.randrange(30, 900)), updated, rid))
                    return
                drivers = self.ids("SELECT id FROM users WHERE type = 'driver' ORDER BY id")
                if not drivers:
                    return
                cur.execute("UPDATE rides SET status = 'accepted', driver_id = %s, accepted_at = %s, updated_at = %s WHERE id = %s",
                            (self.rng.choice(drivers), requested + timedelta(seconds=self.rng.randrange(5, 600),
                                                                             microseconds=self.rng.randrange(0, 10**6)), updated, rid))
            elif status == "accepted":
                if self.rng.random() < 0.1:
                    cur.execute("UPDATE rides SET status = 'cancelled', cancelled_at = %s, updated_at = %s WHERE id = %s",
                                (accepted + timedelta(seconds=self.rng.randrange(30, 600)), updated, rid))
                    return
                cur.execute("UPDATE rides SET status = 'in_progress', started_at = %s, updated_at = %s WHERE id = %s",
                            (accepted + timedelta(seconds=self.rng.randrange(60, 900)), updated, rid))
            elif status == "in_progress":
                duration = self.rng.randrange(240, 5400)
                distance = (Decimal(estimate or 5) * Decimal(self.rng.uniform(0.85, 1.25))).quantize(CENT, ROUND_HALF_UP)
                fare = (Decimal("2.50") + distance * Decimal("1.35") + Decimal(duration) / 60 * Decimal("0.30")).quantize(CENT, ROUND_HALF_UP)
                cur.execute(
                    "UPDATE rides SET status = 'completed', completed_at = %s, duration_s = %s, distance_km = %s, fare_amount = %s, "
                    "customer_rating = %s, driver_rating = %s, updated_at = %s WHERE id = %s",
                    (started + timedelta(seconds=duration), duration, distance, fare,
                     self.rng.choice([None, 3, 4, 5, 5]), self.rng.choice([None, None, 1, 4, 5, 5]), updated, rid))
            else:
                return

    def op_ride_lifecycle(self):
        """Several changes of one ride in one transaction (accept -> start -> complete)."""
        open_rides = self.ids("SELECT id FROM rides WHERE status IN ('requested','accepted','in_progress') ORDER BY id")
        if not open_rides:
            return None
        with self.transaction() as cur:
            for rid in self.rng.sample(open_rides, min(len(open_rides), self.rng.choice([1, 1, 2]))):
                self.advance_ride(cur, rid, self.rng.choice([1, 2, 3, 3]))
        return True

    def op_ride_step(self):
        open_rides = self.ids("SELECT id FROM rides WHERE status IN ('requested','accepted','in_progress') ORDER BY id")
        if not open_rides:
            return None
        with self.transaction() as cur:
            self.advance_ride(cur, self.rng.choice(open_rides), 1)
        return True

    def op_cancel_stale_requests(self):
        """One multi-row UPDATE: every request older than an hour is cancelled."""
        with self.transaction() as cur:
            cur.execute("UPDATE rides SET status = 'cancelled', cancelled_at = %s, updated_at = %s "
                        "WHERE status = 'requested' AND requested_at < %s", (self.now, self.stamp(), self.now - timedelta(hours=1)))
            return cur.rowcount > 0 or None

    def op_fare_correction(self):
        """Multi-row UPDATE of completed rides (a pricing fix)."""
        done = self.ids("SELECT id FROM rides WHERE status = 'completed' ORDER BY id")
        if len(done) < 2:
            return None
        chosen = self.rng.sample(done, min(len(done), self.rng.randrange(2, 6)))
        with self.transaction() as cur:
            cur.execute(f"UPDATE rides SET fare_amount = ROUND(fare_amount * %s, 2), updated_at = %s WHERE id IN ({', '.join(['%s'] * len(chosen))})",
                        [self.rng.choice([Decimal("0.9"), Decimal("1.05"), Decimal("1.1")]), self.stamp(), *chosen])
        return True

    def op_rate_rides(self):
        done = self.ids("SELECT id FROM rides WHERE status = 'completed' AND customer_rating IS NULL ORDER BY id")
        if not done:
            return None
        chosen = self.rng.sample(done, min(len(done), self.rng.randrange(1, 4)))
        with self.transaction() as cur:
            cur.execute(f"UPDATE rides SET customer_rating = %s, updated_at = %s WHERE id IN ({', '.join(['%s'] * len(chosen))})",
                        [self.rng.randrange(1, 6), self.stamp(), *chosen])
        return True

    def op_reschedule_ride(self):
        """A data fix that moves a ride to another day (and maybe month)."""
        rides = self.ids("SELECT id FROM rides ORDER BY id")
        if not rides:
            return None
        with self.transaction() as cur:
            cur.execute("UPDATE rides SET requested_at = requested_at - INTERVAL %s DAY, updated_at = %s WHERE id = %s",
                        (self.rng.choice([1, 2, 31]), self.stamp(), self.rng.choice(rides)))
        return True

    def op_delete_rides(self):
        rides = self.ids("SELECT id FROM rides ORDER BY id")
        if not rides:
            return None
        chosen = self.rng.sample(rides, min(len(rides), self.rng.choice([1, 1, 2, 3])))
        with self.transaction() as cur:
            cur.execute(f"DELETE FROM rides WHERE id IN ({', '.join(['%s'] * len(chosen))})", chosen)
        self.deleted_rides.extend(chosen)
        return True

    def op_purge_cancelled(self):
        """One multi-row DELETE."""
        with self.transaction() as cur:
            cur.execute("SELECT id FROM rides WHERE status = 'cancelled' AND cancelled_at < %s ORDER BY id", (self.now - timedelta(days=3),))
            gone = [int(r[0]) for r in cur.fetchall()]
            if not gone:
                return None
            cur.execute("DELETE FROM rides WHERE status = 'cancelled' AND cancelled_at < %s", (self.now - timedelta(days=3),))
        self.deleted_rides.extend(gone)
        return True

    def op_reinsert_deleted_ride(self):
        """The same ride id again after its delete, with other values (another day, maybe another customer)."""
        existing = set(self.ids("SELECT id FROM rides ORDER BY id"))
        candidates = sorted(set(self.deleted_rides) - existing)
        customers = self.ids("SELECT id FROM users WHERE type = 'customer' ORDER BY id")
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
        rides = self.ids("SELECT id FROM rides ORDER BY id")
        customers = self.ids("SELECT id FROM users WHERE type = 'customer' ORDER BY id")
        if not rides or not customers:
            return None
        rid = self.rng.choice(rides)
        with self.transaction() as cur:
            cur.execute("DELETE FROM rides WHERE id = %s", (rid,))
            self.insert(cur, "rides", self.ride_values(rid, self.rng.choice(customers), self.stamp() - timedelta(days=self.rng.randrange(0, 3))))
        return True

    def op_user_moves(self):
        users = self.ids("SELECT id FROM users ORDER BY id")
        if not users:
            return None
        with self.transaction() as cur:
            cur.execute("UPDATE users SET city = %s, updated_at = %s WHERE id = %s", (self.place()[0], self.stamp(), self.rng.choice(users)))
        return True

    def op_city_rename(self):
        """Multi-row UPDATE of users (a city renamed in the app)."""
        old = self.place()[0]
        new = self.rng.choice([c[0] for c in CITIES if c[0] != old])
        with self.transaction() as cur:
            cur.execute("UPDATE users SET city = %s, updated_at = %s WHERE city = %s", (new, self.stamp(), old))
            return cur.rowcount > 0 or None

    def op_user_contact_change(self):
        users = self.ids("SELECT id FROM users ORDER BY id")
        if not users:
            return None
        uid = self.rng.choice(users)
        name, email, phone = self.person(uid)
        with self.transaction() as cur:
            cur.execute("UPDATE users SET email = %s, phone = %s, updated_at = %s WHERE id = %s", (email, phone, self.stamp(), uid))
        return True

    def op_flip_user_type(self):
        """A customer becomes a driver or the reverse (the FKs do not check the type): their rides stop
        (or start) qualifying for silver `rides`."""
        users = self.ids("SELECT id FROM users ORDER BY id")
        if not users:
            return None
        with self.transaction() as cur:
            cur.execute("UPDATE users SET type = IF(type = 'customer', 'driver', 'customer'), updated_at = %s WHERE id = %s",
                        (self.stamp(), self.rng.choice(users)))
        return True

    def op_delete_user(self):
        """A user without rides is deleted, or a user's rides and then the user in one transaction."""
        users = self.ids("SELECT id FROM users ORDER BY id")
        if not users:
            return None
        uid = self.rng.choice(users)
        with self.transaction() as cur:
            cur.execute("SELECT id FROM rides WHERE customer_id = %s OR driver_id = %s ORDER BY id", (uid, uid))
            rides = [int(r[0]) for r in cur.fetchall()]
            if rides:
                cur.execute("DELETE FROM rides WHERE customer_id = %s OR driver_id = %s", (uid, uid))
            cur.execute("DELETE FROM users WHERE id = %s", (uid,))
        self.deleted_rides.extend(rides)
        self.deleted_users.append(uid)
        return True

    def op_user_comes_back(self):
        """A deleted user id is inserted again (an account restored), maybe with the other type."""
        existing = set(self.ids("SELECT id FROM users ORDER BY id"))
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
        (from k-1): same event, same position, same time."""
        rides = self.ids("SELECT id FROM rides ORDER BY id")
        if not rides:
            return None
        present = set(rides)
        first = self.rng.choice(rides)
        gap = first
        while gap in present:
            gap += 1
        if gap - first > 6:
            return None
        self.next_ride = max(self.next_ride, gap + 1)
        with self.transaction() as cur:
            cur.execute("UPDATE rides SET id = id + 1, updated_at = %s WHERE id BETWEEN %s AND %s ORDER BY id DESC",
                        (self.stamp(), first, gap - 1))
        self.deleted_rides.append(first)
        return True

    def op_bulk_touch(self):
        """A migration touching every ride: one statement whose rows span several binlog events."""
        with self.transaction() as cur:
            cur.execute("UPDATE rides SET payment_method = CASE payment_method WHEN 'wallet' THEN 'app_wallet' "
                        "WHEN 'app_wallet' THEN 'wallet' ELSE payment_method END, updated_at = %s", (self.stamp(),))
            return cur.rowcount > 0 or None

    def op_promote_to_driver(self):
        """A customer becomes a driver and takes a ride in the same transaction, the ride's UPDATE
        before or after the user's."""
        customers = self.ids("SELECT id FROM users WHERE type = 'customer' ORDER BY id")
        waiting = self.ids("SELECT id FROM rides WHERE status = 'requested' ORDER BY id")
        if not customers or not waiting:
            return None
        uid, rid = self.rng.choice(customers), self.rng.choice(waiting)
        statements = [
            ("UPDATE users SET type = 'driver', updated_at = %s WHERE id = %s", (self.stamp(), uid)),
            ("UPDATE rides SET status = 'accepted', driver_id = %s, accepted_at = %s, updated_at = %s WHERE id = %s",
             (uid, self.stamp(), self.stamp(), rid)),
        ]
        self.rng.shuffle(statements)
        with self.transaction() as cur:
            for sql, args in statements:
                cur.execute(sql, args)
        return True

    def op_fix_pickup(self):
        """The pickup point arrives late (GPS fix): the ride moves from city 'unknown' to a real one."""
        blind = self.ids("SELECT id FROM rides WHERE pickup_lat IS NULL ORDER BY id")
        if not blind:
            return None
        _, lat, lon, _ = self.place()
        point = self.point_near(lat, lon)
        with self.transaction() as cur:
            cur.execute("UPDATE rides SET pickup_lat = %s, pickup_lon = %s, updated_at = %s WHERE id = %s",
                        (point[0], point[1], self.stamp(), self.rng.choice(blind)))
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
    def rows(self, table: str) -> dict[int, dict]:
        """The table's rows now, by id, as Python values (datetime naive UTC, Decimal, int, str)."""
        columns = USER_COLUMNS if table == "users" else RIDE_COLUMNS
        with closing(self.db.connect(self.database)) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY id")
            return {int(r[0]): dict(zip(columns, r)) for r in cur.fetchall()}
