"""Silver's invariants as a property test: stated, not replayed against an oracle.

A simulated Airbyte source-mysql (CDC mode, as its code behaves) emits random CDC histories of
`users` and `rides`: 2.x rows without a cursor, Java 3.0-3.7 counter cursors, Kotlin 3.9+ binlog
positions (double `_ab_cdc_log_pos`, null cursor on snapshot rows, snapshot after the binlog phase),
one `emitted_at` per sync, one `_ab_cdc_updated_at` per transaction, several changes of one key in
one transaction (same or increasing position: full ties that only arrival order separates), re-sent
records, re-snapshots, binlog rotations and restarts, connector upgrades, overwrite syncs and
refreshes (new generation, with or without `minimum_generation_id`), deletes and re-inserts,
retyped users, rides before their users, rule breakers and unreadable change times. The catalog is
the real source-mysql one (plain-string CDC times, DATETIME as timestamp_without_timezone) or the
generator's. Each sync lands in bronze through the real destination binary; silver and gold are
built after some syncs, some runs SIGKILLed at a random moment and run again.

After every completed run:
1. incremental = rebuild: silver and gold equal one build from a copy of bronze alone (decided in
   1 to 4 slices: ranges of the ride id); the incremental runs decide their changes in 1 to 3
   slices and build gold a day at a time (a 1-byte memory budget) when sliced;
2. one row per key in users, rides, rides_pending, rides_deleted; a ride in at most one of them;
3. every change accounted for: the quarantine is exactly the bronze rows that broke a rule, every
   bronze key with a valid change is in silver (a ride in exactly one table), the others only in
   the quarantine;
4. integrity: published rides link a silver customer and (null or) a silver driver (deleted users
   count); pending rides do not;
5. running again with nothing new is a no-op.

Sizes: RIDELAKE_PROPERTY_EXAMPLES=N (default 100, about 2 minutes on the release wheel) sets the
number of random histories (two explicit ones always run). Failing histories are kept in
tests/e2e/hypothesis-db and replayed first."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import ridelake
from deltalake import DeltaTable
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from conftest import REPO, generate, local_config, run_dest, write_json

NS = "ridehail_prod"
BASE = datetime(2025, 3, 1, tzinfo=timezone.utc)
BASE_S = int(BASE.timestamp())
STATUSES = ["requested", "accepted", "in_progress", "completed", "cancelled"]
ERAS = ["v2", "java", "kotlin"]  # source-mysql 2.x, 3.0-3.7, 3.9+
EXAMPLES = int(os.environ.get("RIDELAKE_PROPERTY_EXAMPLES", "100"))
SILVER = ["users", "rides", "rides_pending", "rides_deleted"]
GOLD = {"daily_city_kpis": ["year", "month", "day", "city"], "driver_daily": ["year", "month", "day", "driver_id"],
        "customer_daily": ["year", "month", "day", "customer_id"], "driver_stats": ["driver_id"],
        "customer_totals": ["customer_id"], "monthly_distance": ["year", "month"]}
PICKUPS = [(48.8566, 2.3522), (51.5072, -0.1276), (None, None)]
BAD_TIME = "0000-00-00T00:00:00Z"  # a MySQL zero date, as text

# ---- catalogs -----------------------------------------------------------------------------------

INT = {"type": "number", "airbyte_type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}
DATETIME = {"type": "string", "format": "date-time", "airbyte_type": "timestamp_without_timezone"}
REAL_USERS = {"id": INT, "type": STR, "name": STR, "email": STR, "phone": STR, "city": STR, "created_at": DATETIME,
              "updated_at": DATETIME}
REAL_RIDES = {"id": INT, "customer_id": INT, "driver_id": INT, "status": STR, "requested_at": DATETIME,
              "accepted_at": DATETIME, "started_at": DATETIME, "completed_at": DATETIME, "cancelled_at": DATETIME,
              "pickup_lat": NUM, "pickup_lon": NUM, "dropoff_lat": NUM, "dropoff_lon": NUM, "distance_km": NUM,
              "duration_s": INT, "fare_amount": NUM, "currency": STR, "payment_method": STR, "customer_rating": INT,
              "driver_rating": INT, "created_at": DATETIME, "updated_at": DATETIME}


def real_stream(name: str, fields: dict, era: str) -> dict:
    """A configured stream as source-mysql declares it (2.x has no `_ab_cdc_cursor`)."""
    cdc = {"_ab_cdc_updated_at": STR, "_ab_cdc_deleted_at": STR, "_ab_cdc_log_file": STR, "_ab_cdc_log_pos": NUM}
    if era != "v2":
        cdc["_ab_cdc_cursor"] = INT
    return {"stream": {"name": name, "namespace": NS, "json_schema": {"type": "object", "properties": {**fields, **cdc}},
                       "supported_sync_modes": ["full_refresh", "incremental"], "source_defined_cursor": True,
                       "default_cursor_field": ["_ab_cdc_cursor"], "source_defined_primary_key": [["id"]]},
            "sync_mode": "incremental", "cursor_field": ["_ab_cdc_cursor"], "primary_key": [["id"]]}


_GENERATOR_CATALOG: dict | None = None


def generator_catalog(tmp: Path) -> dict:
    global _GENERATOR_CATALOG
    if _GENERATOR_CATALOG is None:
        _, path = generate(tmp, "--records", "1", name="generator")
        _GENERATOR_CATALOG = json.loads(path.read_text())
    return json.loads(json.dumps(_GENERATOR_CATALOG))


def catalog(tmp: Path, shape: str, era: str, modes: dict) -> Path:
    if shape == "real":
        streams = [real_stream("users", REAL_USERS, era), real_stream("rides", REAL_RIDES, era)]
    else:
        streams = generator_catalog(tmp)["streams"]
        for s in streams:
            s["stream"]["namespace"] = NS
    for s in streams:
        mode, generation, minimum = modes[s["stream"]["name"]]
        s.update(destination_sync_mode=mode, generation_id=generation, minimum_generation_id=minimum, sync_id=1)
    return write_json(tmp / "catalog.json", {"streams": streams})


# ---- the simulated source -----------------------------------------------------------------------

@dataclass
class Sync:
    era: str
    start: int  # seconds after BASE
    modes: dict  # stream -> (destination_sync_mode, generation_id, minimum_generation_id)
    records: list = field(default_factory=list)
    snapshot_at_end: set = field(default_factory=set)  # Kotlin: snapshots come after the binlog phase
    counter: int = 0  # Java's per-sync record counter
    why: str = "start"

    def describe(self) -> str:
        counts = {s: sum(1 for r in self.records if r["record"]["stream"] == s) for s in ("users", "rides")}
        modes = {s: m for s, m in self.modes.items() if m != ("append_dedup", 1, 0)}
        return f"{self.why}: {self.era}, users {counts['users']}, rides {counts['rides']}" + (f", {modes}" if modes else "")


class Source:
    """Turns abstract events into what source-mysql would emit, sync by sync."""

    def __init__(self, era: str, shape: str, form: int, gaps: list[int], cuts: set[int]):
        self.era, self.shape, self.form = era, shape, form
        self.gaps, self.cuts = gaps or [1], cuts
        self.clock, self.transactions, self.binlog_records = 0, 0, 0
        self.file, self.pos = 3, 4
        self.generation = {"users": 1, "rides": 1}
        self.users: dict[int, dict] = {}
        self.rides: dict[int, dict] = {}
        self.segment: list[dict] = []  # binlog records since the last rotation, snapshot or upgrade
        self.syncs: list[Sync] = []
        self.sync = self._open("start")
        self.when = self.clock

    # -- syncs
    def _open(self, why: str) -> Sync:
        self.clock += 1
        sync = Sync(self.era, self.clock, {s: ("append_dedup", g, 0) for s, g in self.generation.items()}, why=why)
        self.syncs.append(sync)
        return sync

    def _close(self) -> None:
        if self.sync.snapshot_at_end:
            self.pos += 1  # the offset the binlog phase reached
            for stream in sorted(self.sync.snapshot_at_end):
                self._snapshot_rows(stream)
            self.sync.snapshot_at_end.clear()

    def new_sync(self, why: str) -> None:
        s = self.sync
        if not s.records and not s.snapshot_at_end and all(m[0] == "append_dedup" and m[2] == 0 for m in s.modes.values()):
            s.era, s.why = self.era, why  # nothing in it yet: reuse
            s.modes = {st_: ("append_dedup", g, 0) for st_, g in self.generation.items()}
            return
        self._close()
        self.sync = self._open(why)

    def finish(self) -> list[Sync]:
        self._close()
        return self.syncs

    # -- meta columns
    def cdc_time(self, seconds: int) -> str:
        return (BASE + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S") + ["Z", ".000Z", ".000000Z"][self.form]

    def data_time(self, seconds: int | None) -> str | None:
        if seconds is None:
            return None
        text = (BASE + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%f")
        return text if self.shape == "real" else text + "Z"  # DATETIME: no zone, the server's wall clock

    def meta(self, deleted: bool, snapshot: bool, when: int | None = None, bad_time: bool = False) -> dict:
        text = BAD_TIME if bad_time else self.cdc_time(self.when if when is None else when)
        m = {"_ab_cdc_updated_at": text, "_ab_cdc_deleted_at": text if deleted else None,
             "_ab_cdc_log_file": f"mysql-bin.{self.file:06d}"}
        if self.era == "kotlin":
            m["_ab_cdc_log_pos"] = float(self.pos)  # a double, as the bulk CDK sends it
            m["_ab_cdc_cursor"] = None if snapshot else (self.file << 32) | self.pos
        else:
            m["_ab_cdc_log_pos"] = self.pos
            if self.era == "java":
                self.sync.counter += 1
                m["_ab_cdc_cursor"] = (BASE_S + self.sync.start) * 10**8 + self.sync.counter
        return m

    # -- emitting
    def transaction(self) -> None:
        """A new transaction: its commit time and the position of its first event."""
        self.clock += self.gaps[self.transactions % len(self.gaps)]
        self.transactions += 1
        self.when = self.clock
        self.pos += 10

    def _record(self, stream: str, data: dict) -> dict:
        return {"type": "RECORD", "record": {"namespace": NS, "stream": stream,
                                             "emitted_at": (BASE_S + self.sync.start) * 1000, "data": data}}

    def change(self, stream: str, row: dict, deleted: bool = False, bad_time: bool = False) -> None:
        """One binlog row event at the current position."""
        if self.binlog_records in self.cuts and self.sync.records:
            self.new_sync("cut")
        self.binlog_records += 1
        data = dict(row)
        if stream == "rides" and self.era == "java" and self.shape == "real":
            for c in ("distance_km", "fare_amount"):  # Java binlog rows send DECIMAL as a JSON string
                if isinstance(data.get(c), float):
                    data[c] = f"{data[c]:.2f}"
        data.update(self.meta(deleted, snapshot=False, bad_time=bad_time))
        record = self._record(stream, data)
        self.sync.records.append(record)
        self.segment.append(record)

    def _snapshot_rows(self, stream: str) -> None:
        rows = self.users if stream == "users" else self.rides
        for key in sorted(rows):
            data = dict(rows[key])
            data.update(self.meta(False, snapshot=True, when=self.sync.start))
            self.sync.records.append(self._record(stream, data))

    def snapshot(self, *streams: str) -> None:
        self.segment = []
        if self.era == "kotlin":
            self.sync.snapshot_at_end.update(streams)
        else:
            for stream in streams:
                self._snapshot_rows(stream)

    # -- rows
    def user_row(self, uid: int, utype: str | None, day: int, name: str | None = None) -> dict:
        created = self.users.get(uid, {}).get("created_at") or self.data_time(day * 86400 + uid)
        return {"id": uid, "type": utype, "name": name or f"user {uid}", "email": f"u{uid}@example.com", "phone": None,
                "city": "Paris", "created_at": created, "updated_at": self.data_time(self.when)}

    def ride_row(self, rid: int, customer: int | None, driver: int | None, status: str, requested: int | None,
                 meters: int) -> dict:
        done = status == "completed"
        accepted = requested is not None and driver is not None and status in ("accepted", "in_progress", "completed")
        lat, lon = PICKUPS[rid % len(PICKUPS)]
        return {"id": rid, "customer_id": customer, "driver_id": driver, "status": status,
                "requested_at": self.data_time(requested),
                "accepted_at": self.data_time(requested + 60) if accepted else None,
                "started_at": self.data_time(requested + 300) if accepted and status != "accepted" else None,
                "completed_at": self.data_time(requested + 900) if done and requested is not None else None,
                "cancelled_at": self.data_time(requested + 30) if status == "cancelled" and requested is not None else None,
                "pickup_lat": lat, "pickup_lon": lon, "dropoff_lat": 48.87, "dropoff_lon": 2.36,
                "distance_km": meters / 100, "duration_s": 600 if done else None,
                "fare_amount": round(3 + meters / 40, 2) if done else None, "currency": "EUR", "payment_method": "card",
                "customer_rating": 4 if done else None, "driver_rating": 5 if done else None,
                "created_at": self.data_time(requested), "updated_at": self.data_time(self.when)}

    def put_user(self, row: dict, **kw) -> None:
        self.users[row["id"]] = row
        self.change("users", row, **kw)

    def put_ride(self, row: dict, **kw) -> None:
        self.rides[row["id"]] = row
        self.change("rides", row, **kw)

    def delete(self, stream: str, key: int) -> None:
        rows = self.users if stream == "users" else self.rides
        self.change(stream, rows.pop(key, {"id": key}), deleted=True)  # the full before-image

    # -- events
    def apply(self, event: tuple) -> None:
        kind = event[0]
        if kind in ("rotate", "upgrade", "restart", "resnapshot", "overwrite", "refresh"):
            self.boundary(event)
            return
        self.transaction()
        if kind == "user":
            _, uid, utype, day = event
            self.put_user(self.user_row(uid, utype, day))
        elif kind == "user_delete":
            self.delete("users", event[1])
        elif kind == "retype":  # customer <-> driver
            uid = event[1]
            current = self.users.get(uid, {}).get("type")
            self.put_user(self.user_row(uid, "customer" if current == "driver" else "driver", 1))
        elif kind == "ride":
            _, rid, customer, driver, status, requested, meters = event
            self.put_ride(self.ride_row(rid, customer, driver, status, requested, meters))
        elif kind == "ride_delete":
            self.delete("rides", event[1])
        elif kind == "ride_reinsert":  # delete, then the same id inserted again
            _, rid, customer, requested = event
            if rid not in self.rides:
                self.put_ride(self.ride_row(rid, customer, None, "requested", requested, 150))
                self.transaction()
            self.delete("rides", rid)
            self.transaction()
            self.put_ride(self.ride_row(rid, customer, None, "requested", requested + 3600, 250))
        elif kind == "txn":  # several changes of one key in one transaction
            _, stream, key, n, same_position = event
            for i in range(n):
                if i and not same_position:
                    self.pos += 5
                if stream == "users":
                    current = self.users.get(key, {}).get("type") or "customer"
                    utype = current if i < n - 1 else ("driver" if current == "customer" else "customer")
                    self.put_user(self.user_row(key, utype, 2, name=f"user {key} v{self.transactions}.{i}"))
                else:
                    old = self.rides.get(key)
                    step = STATUSES.index(old["status"]) + 1 if old and old["status"] in STATUSES[:4] else 0
                    status = STATUSES[min(step, 3)]  # requested -> accepted -> in_progress -> completed
                    customer = old["customer_id"] if old and old["customer_id"] is not None else key % 5 + 1
                    driver = (old or {}).get("driver_id") or (key + 2) % 5 + 1
                    requested = 86400 * (key % 3) + 7200 + key
                    self.put_ride(self.ride_row(key, customer, None if status == "requested" else driver, status,
                                                requested, 100 + 10 * i))
        elif kind == "null_id":
            if event[1] == "users":
                self.change("users", self.user_row(0, "customer", 0) | {"id": None})
            else:
                self.change("rides", self.ride_row(0, 1, None, "requested", 3600, 100) | {"id": None})
        elif kind == "bad_time":  # `_ab_cdc_updated_at` that is not a time
            _, stream, key = event
            if stream == "users":
                old = self.users.get(key)
                self.put_user(self.user_row(key, old["type"] if old else "customer", 1), bad_time=True)
            else:
                old = self.rides.get(key)
                row = dict(old) if old else self.ride_row(key, key % 5 + 1, None, "requested", 5000 + key, 120)
                row["updated_at"] = self.data_time(self.when)
                self.put_ride(row, bad_time=True)
        elif kind == "resend":  # the last records sent again (a retried sync)
            for record in [json.loads(json.dumps(r)) for r in self.segment[-event[1]:]]:
                data = record["record"]["data"]
                if self.era == "java":  # the counter is assigned at emission
                    self.sync.counter += 1
                    data["_ab_cdc_cursor"] = (BASE_S + self.sync.start) * 10**8 + self.sync.counter
                record["record"]["emitted_at"] = (BASE_S + self.sync.start) * 1000
                self.binlog_records += 1
                self.sync.records.append(record)
        else:
            raise AssertionError(f"unknown event {event}")

    def boundary(self, event: tuple) -> None:
        kind = event[0]
        if kind == "upgrade" and self.era != "kotlin":
            self.era = ERAS[ERAS.index(self.era) + 1]
            self.form = (self.form + 1) % 3
            self.new_sync(f"upgrade to {self.era}")
            self.segment = []
        elif kind == "restart" and self.file > 1:  # binlog numbering restarts; Airbyte re-snapshots
            self.new_sync("binlog restart")
            self.file, self.pos = 1, 4
            self.snapshot("users", "rides")
        elif kind == "resnapshot":
            self.new_sync("re-snapshot")
            self.snapshot("users", "rides")
        elif kind == "overwrite":  # an overwrite sync of one stream: its table holds only this sync after it
            stream = event[1]
            self.new_sync(f"overwrite {stream}")
            self.sync.modes[stream] = ("overwrite", self.generation[stream], 0)
            self.snapshot(stream)
        elif kind == "refresh":  # a new generation; with minimum_generation_id the old rows are removed
            _, stream, truncate = event
            self.new_sync(f"refresh {stream}" + (" (truncate)" if truncate else " (retain)"))
            self.generation[stream] += 1
            g = self.generation[stream]
            self.sync.modes[stream] = ("append_dedup", g, g if truncate else 0)
            self.snapshot(stream)
        else:  # rotate (and upgrade/restart where they cannot apply)
            self.file += 1
            self.pos = 4
            self.segment = []


def history_to_syncs(history, era, shape, form, gaps, cuts, swaps=()) -> list[Sync]:
    source = Source(era, shape, form, gaps, set(cuts))
    for event in history:
        source.apply(event)
    syncs = source.finish()
    # Late arrivals: neighbours swapped, within a sync or across two syncs of one era (an older
    # change then lands after a newer one, maybe in a later bronze commit).
    slots = [(i, j) for i, sync in enumerate(syncs) for j in range(len(sync.records))]
    for k in swaps:
        if len(slots) < 2:
            break
        (si, ri), (sj, rj) = slots[k % (len(slots) - 1)], slots[k % (len(slots) - 1) + 1]
        if syncs[si].era != syncs[sj].era:
            continue
        a, b = syncs[si].records[ri], syncs[sj].records[rj]
        syncs[si].records[ri], syncs[sj].records[rj] = b, a
        b["record"]["emitted_at"], a["record"]["emitted_at"] = a["record"]["emitted_at"], b["record"]["emitted_at"]
    return syncs


# ---- strategies -----------------------------------------------------------------------------------

uid = st.integers(1, 5)
rid = st.integers(1, 8)
day_s = st.integers(0, 3 * 86400)
user_event = st.tuples(st.just("user"), uid, st.sampled_from(["customer", "customer", "driver", None]), st.integers(0, 3))
ride_event = st.tuples(st.just("ride"), rid, st.one_of(uid, uid, uid, st.none()), st.one_of(st.none(), uid),
                       st.sampled_from(STATUSES + ["completed", "teleported"]), st.one_of(day_s, day_s, day_s, st.none()),
                       st.integers(1, 4000))
event = st.one_of(
    user_event, user_event, user_event, ride_event, ride_event, ride_event, ride_event,
    st.tuples(st.just("user_delete"), uid),
    st.tuples(st.just("ride_delete"), rid),
    st.tuples(st.just("ride_reinsert"), rid, uid, day_s),
    st.tuples(st.just("retype"), uid),
    st.tuples(st.just("txn"), st.sampled_from(["users", "rides"]), rid, st.integers(2, 3), st.booleans()),
    st.tuples(st.just("txn"), st.just("rides"), rid, st.integers(2, 3), st.just(True)),
    st.tuples(st.just("null_id"), st.sampled_from(["users", "rides"])),
    st.tuples(st.just("bad_time"), st.sampled_from(["users", "rides"]), rid),
    st.tuples(st.just("resend"), st.integers(1, 3)),
    st.one_of(st.tuples(st.just("resnapshot")), st.tuples(st.just("rotate")), st.tuples(st.just("upgrade")),
              st.tuples(st.just("restart")), st.tuples(st.just("overwrite"), st.sampled_from(["users", "rides"])),
              st.tuples(st.just("refresh"), st.sampled_from(["users", "rides"]), st.booleans())),
)
events = st.lists(event, min_size=6, max_size=24)
runs = st.lists(st.sampled_from(["skip", "skip", "build", "kill", "silver"]), min_size=1, max_size=6)

# ---- landing and building ------------------------------------------------------------------------


def land(tmp: Path, lake: Path, shape: str, sync: Sync, number: int) -> None:
    state = {"type": "STATE", "state": {"type": "GLOBAL", "global": {
        "shared_state": {"state": {"mysql_cdc_offset": {f'["{NS}",{{"server":"{NS}"}}]': json.dumps(
            {"file": "mysql-bin.000001", "pos": number, "ts_sec": BASE_S + sync.start})}}},
        "stream_states": [{"stream_descriptor": {"name": s, "namespace": NS}, "stream_state": {}} for s in ("users", "rides")]},
        "sourceStats": {"recordCount": float(len(sync.records))}}}
    stdin = "\n".join(json.dumps(m) for m in [*sync.records, state]).encode()
    cat = catalog(tmp, shape, sync.era, sync.modes)
    run = run_dest("write", "--config", str(local_config(tmp, lake / "bronze")), "--catalog", str(cat), stdin=stdin)
    assert run.returncode == 0, f"sync {number} ({sync.describe()}) failed to land: {run.stderr[-2000:]}"
    assert len(run.states) == 1, f"sync {number}: the state was not echoed"


def bronze(lake: Path, stream: str) -> pl.DataFrame:
    return pl.from_arrow(DeltaTable(str(lake / "bronze" / NS / stream)).to_pyarrow_table())


class Timing:
    import_s: float | None = None
    build_s: float = 0.5


def import_cost() -> float:
    if Timing.import_s is None:
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "import ridelake"], check=True)
        Timing.import_s = time.monotonic() - started
    return Timing.import_s


def build(lake: Path, gold: bool = True, slices: int | None = None) -> dict:
    """Silver (its rides decided in `slices` id ranges when given, a rebuild's or an increment's),
    then gold (a day at a time when in several slices); returns silver's report."""
    started = time.monotonic()
    silver = ridelake.build_silver(str(lake), NS, slices=slices)
    if gold:
        ridelake.build_gold(str(lake), NS, memory_budget=1 if slices and slices > 1 else None)
        Timing.build_s = 0.5 * Timing.build_s + 0.5 * (time.monotonic() - started)
    return silver


def killed_build(lake: Path, fraction: float) -> str:
    """A silver + gold run in another process, SIGKILLed after a random delay."""
    job = f"import ridelake; ridelake.build_silver({str(lake)!r}, {NS!r}); ridelake.build_gold({str(lake)!r}, {NS!r})"
    proc = subprocess.Popen([sys.executable, "-c", job], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    delay = import_cost() * 0.8 + fraction * Timing.build_s
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return f"killed after {delay:.2f}s"
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.returncode == 0, f"the run to be killed failed on its own: {stderr[-2000:]}"
    return f"finished before the kill at {delay:.2f}s"


# ---- reading and comparing -------------------------------------------------------------------------


def table(lake: Path, layer: str, name: str) -> pl.DataFrame | None:
    try:
        return ridelake.read_table(str(lake), layer, name, namespace=NS)
    except ridelake.MissingTableError:
        return None


def frame_diff(name: str, a: pl.DataFrame | None, b: pl.DataFrame | None, keys: list[str]) -> list[str]:
    """What differs between the incremental table `a` and the rebuilt `b`, compactly."""
    if a is None or b is None:
        if (a is None) != (b is None):
            present = a if a is not None else b
            return [f"{name}: only the {'incremental' if a is not None else 'rebuilt'} lake has it ({present.height} rows)"]
        return []
    if set(a.columns) != set(b.columns):
        return [f"{name}: columns differ: incremental only {sorted(set(a.columns) - set(b.columns))}, "
                f"rebuild only {sorted(set(b.columns) - set(a.columns))}"]
    b = b.select(a.columns)
    out = []
    for label, f in (("incremental", a), ("rebuild", b)):
        dupes = f.group_by(keys).len().filter(pl.col("len") > 1)
        if dupes.height:
            out.append(f"{name}: {label} has duplicate keys {dupes.select(keys).rows()[:10]}")
    ka, kb = set(a.select(keys).rows()), set(b.select(keys).rows())
    if ka - kb:
        out.append(f"{name}: keys only in incremental: {sorted(ka - kb, key=repr)[:10]}")
    if kb - ka:
        out.append(f"{name}: keys only in rebuild: {sorted(kb - ka, key=repr)[:10]}")
    joined = a.join(b, on=keys, how="inner", suffix="__rebuild", nulls_equal=True)
    bad_columns, bad_keys = [], set()
    for c in a.columns:
        if c in keys:
            continue
        x, y = pl.col(c), pl.col(f"{c}__rebuild")
        same = (x.is_null() & y.is_null()) | (x == y).fill_null(False)
        if a.schema[c].is_float():
            same = same | ((x - y).abs() <= 1e-9 * pl.max_horizontal(x.abs(), y.abs(), pl.lit(1.0))).fill_null(False)
        rows = joined.filter(~same)
        if rows.height:
            bad_columns.append(c)
            sample = rows.select([*keys, c, f"{c}__rebuild"]).head(3).rows()
            out.append(f"{name}.{c}: {rows.height} rows differ (key..., incremental, rebuild): {sample}")
            bad_keys.update(rows.select(keys).rows())
    if bad_keys:
        out.append(f"{name}: keys with differing values: {sorted(bad_keys, key=repr)[:10]}")
    return out


def is_time(text: str) -> bool:
    try:
        datetime.fromisoformat(text.strip())
        return True
    except ValueError:
        return False


def rule_broken(stream: str, row: dict, time_is_text: bool) -> bool:
    """Whether a bronze change breaks one of silver's documented rules (silver.rs, cdc.rs)."""
    if row.get("id") is None:
        return True
    updated = row.get("_ab_cdc_updated_at")
    if time_is_text and updated is not None and not is_time(updated):
        return True
    deleted = row.get("_ab_cdc_deleted_at") is not None
    if stream == "users":
        return row.get("created_at") is None or (not deleted and row.get("type") not in ("customer", "driver"))
    return not deleted and (row.get("customer_id") is None or row.get("requested_at") is None
                            or row.get("status") not in STATUSES)


def ids(frame: pl.DataFrame | None, column: str = "id") -> list:
    return [] if frame is None else frame[column].to_list()


def check(tmp: Path, lake: Path, number: int, gold: bool = True) -> None:
    """Invariants 1-4 on the incremental lake after a completed run (gold too when it was built)."""
    fresh = tmp / f"rebuild-{number}"
    shutil.rmtree(fresh, ignore_errors=True)
    shutil.copytree(lake / "bronze", fresh / "bronze")
    # The rebuild decides its rides in 1 to 4 slices (ranges of the ride id): slicing must not show.
    build(fresh, gold, slices=1 + number % 4)
    problems = []
    # 1. incremental = rebuild
    for name in SILVER:
        problems += frame_diff(f"silver.{name}", table(lake, "silver", name), table(fresh, "silver", name), ["id"])
    qa, qb = table(lake, "silver", "quarantine"), table(fresh, "silver", "quarantine")
    raw_a, raw_b = set(ids(qa, "_airbyte_raw_id")), set(ids(qb, "_airbyte_raw_id"))
    if raw_a != raw_b:
        problems.append(f"silver.quarantine: raw ids only in incremental {sorted(raw_a - raw_b)[:10]}, "
                        f"only in rebuild {sorted(raw_b - raw_a)[:10]}")
    for name, keys in GOLD.items() if gold else ():
        problems += frame_diff(f"gold.{name}", table(lake, "gold", name), table(fresh, "gold", name), keys)
    assert not problems, "incremental != rebuild:\n" + "\n".join(problems)

    silver = {name: table(lake, "silver", name) for name in SILVER}
    # 2. one row per key; a ride in at most one table
    for name, frame in silver.items():
        keys = ids(frame)
        assert len(keys) == len(set(keys)), f"silver.{name}: duplicate ids {sorted({k for k in keys if keys.count(k) > 1})[:10]}"
    rides, pending, deleted = (set(ids(silver[n])) for n in ("rides", "rides_pending", "rides_deleted"))
    for (n1, s1), (n2, s2) in [(("rides", rides), ("rides_pending", pending)), (("rides", rides), ("rides_deleted", deleted)),
                               (("rides_pending", pending), ("rides_deleted", deleted))]:
        assert not s1 & s2, f"ride ids in both {n1} and {n2}: {sorted(s1 & s2)[:10]}"
    assert len(ids(qa, "_airbyte_raw_id")) == len(raw_a), "a bronze row is quarantined twice"

    # 3. every change accounted for
    quarantined = {(t, r) for t, r in zip(ids(qa, "table"), ids(qa, "_airbyte_raw_id"))}
    in_silver = {"users": set(ids(silver["users"])), "rides": rides | pending | deleted}
    for stream in ("users", "rides"):
        rows = bronze(lake, stream)
        text = rows.schema.get("_ab_cdc_updated_at") == pl.String
        broken, valid_keys, all_keys = set(), set(), set()
        for row in rows.iter_rows(named=True):
            if row["id"] is not None:
                all_keys.add(row["id"])
            if rule_broken(stream, row, text):
                broken.add(row["_airbyte_raw_id"])
            else:
                valid_keys.add(row["id"])
        q = {r for t, r in quarantined if t == stream}
        assert q == broken, (f"{stream}: quarantine != the bronze rows that broke a rule: quarantined but valid "
                             f"{sorted(q - broken)[:10]}, broke a rule but not quarantined {sorted(broken - q)[:10]}")
        assert in_silver[stream] == valid_keys, (
            f"{stream}: keys with a valid change not in silver {sorted(valid_keys - in_silver[stream])[:10]}; "
            f"in silver without a valid change in bronze {sorted(in_silver[stream] - valid_keys)[:10]}")
        only_quarantined = all_keys - valid_keys
        assert only_quarantined <= set(ids(qa)), f"{stream}: keys in neither silver nor the quarantine {sorted(only_quarantined - set(ids(qa)))[:10]}"

    # 4. integrity (deleted users count)
    users = silver["users"] if silver["users"] is not None else pl.DataFrame({"id": [], "type": []})
    customers = set(users.filter(pl.col("type") == "customer")["id"].to_list())
    drivers = set(users.filter(pl.col("type") == "driver")["id"].to_list())

    def resolves(row: dict) -> bool:
        return row["customer_id"] in customers and (row["driver_id"] is None or row["driver_id"] in drivers)

    if silver["rides"] is not None:
        broken_links = [r["id"] for r in silver["rides"].iter_rows(named=True) if not resolves(r)]
        assert not broken_links, f"published rides whose customer or driver does not resolve: {broken_links[:10]}"
    if silver["rides_pending"] is not None:
        stuck = [r["id"] for r in silver["rides_pending"].iter_rows(named=True) if resolves(r)]
        assert not stuck, f"pending rides whose users resolve: {stuck[:10]}"

    shutil.rmtree(fresh)


# ---- the property --------------------------------------------------------------------------------

EVERYTHING = [
    ("user", 1, "customer", 0), ("user", 2, "driver", 1),
    ("ride", 1, 1, 2, "accepted", 3600, 800),
    ("ride", 2, 3, None, "requested", 90000, 1200),          # before its customer
    ("txn", "rides", 1, 3, False),                            # one transaction, increasing positions
    ("user", 3, "customer", 2),
    ("resend", 2),
    ("ride", 3, None, 2, "requested", 7200, 300),             # null customer: quarantined
    ("ride", 4, 1, None, "requested", None, 300),             # null requested_at: quarantined
    ("user", 4, None, 1),                                     # null type: quarantined
    ("null_id", "users"), ("null_id", "rides"),
    ("bad_time", "rides", 2),
    ("ride_reinsert", 1, 1, 4000),
    ("retype", 2),                                            # driver -> customer
    ("ride", 5, 2, None, "requested", 170000, 700),
    ("upgrade",),                                             # Java -> Kotlin
    ("txn", "rides", 5, 3, True),                             # ties on every source column
    ("txn", "users", 1, 2, True),
    ("resend", 1),
    ("user_delete", 3), ("ride_delete", 2), ("user_delete", 9),
    ("rotate",),
    ("ride", 6, 1, 2, "completed", 100000, 2500),
    ("restart",),                                             # binlog numbering restarts, re-snapshot
    ("ride", 7, 4, None, "requested", 200000, 900),
    ("overwrite", "users"),
    ("user", 4, "customer", 1),
    ("refresh", "rides", True),                               # new generation, old rows removed
    ("ride", 8, 1, 2, "cancelled", 180000, 100),
    ("refresh", "users", False),                              # new generation, old rows kept
    ("retype", 1),
]


@settings(max_examples=EXAMPLES, deadline=None, database=DirectoryBasedExampleDatabase(str(REPO / "tests/e2e/hypothesis-db")),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(history=events, era=st.sampled_from(["java", "java", "kotlin", "v2"]), shape=st.sampled_from(["real", "real", "generator"]),
       form=st.integers(0, 2), gaps=st.lists(st.integers(0, 2), max_size=4), cuts=st.lists(st.integers(0, 60), max_size=3),
       swaps=st.lists(st.integers(0, 200), max_size=4), runs=runs, kill_at=st.lists(st.floats(0.0, 1.5), min_size=1, max_size=3))
@example(history=EVERYTHING, era="java", shape="real", form=0, gaps=[1, 0, 1], cuts=[5, 12], swaps=[],
         runs=["skip", "kill", "silver", "build"], kill_at=[0.3, 0.9])
@example(history=EVERYTHING, era="v2", shape="generator", form=2, gaps=[0, 1], cuts=[3, 20], swaps=[9, 21, 40],
         runs=["skip"], kill_at=[0.6])
def test_silver_invariants_hold_for_any_history_and_runs(tmp_path_factory, history, era, shape, form, gaps, cuts, swaps, runs,
                                                        kill_at):
    tmp = tmp_path_factory.mktemp("invariants")
    lake = tmp / "lake"
    syncs = history_to_syncs(history, era, shape, form, gaps, cuts, swaps)
    kills = 0
    landed: dict[str, list[tuple[int, int]]] = {"users": [], "rides": []}  # (generation, rows) per sync
    for number, sync in enumerate(syncs):
        note(f"sync {number}: {sync.describe()}")
        land(tmp, lake, shape, sync, number)
        for stream, kept in landed.items():
            mode, generation, minimum = sync.modes[stream]
            if mode == "overwrite":
                kept.clear()
            kept[:] = [(g, n) for g, n in kept if g >= minimum]
            kept.append((generation, sum(1 for r in sync.records if r["record"]["stream"] == stream)))
            rows = bronze(lake, stream).height
            assert rows == sum(n for _, n in kept), f"sync {number}: bronze {stream} has {rows} rows, expected {kept}"
        action = runs[number % len(runs)]
        if number == len(syncs) - 1 and action in ("skip", "silver"):
            action = "build"
        if action == "kill":
            note(f"sync {number}: a run " + killed_build(lake, kill_at[kills % len(kill_at)]))
            kills += 1
        if action in ("build", "kill", "silver"):  # "silver": gold catches up later, over several silver versions
            silver = build(lake, gold=action != "silver", slices=(None, 3, 2)[number % 3])
            note(f"sync {number}: {action}" + (f" (rebuild: {silver['rebuild']})" if silver["rebuild"] else "")
                 + f", {silver['quarantined']} quarantined, {silver['pending']} pending")
            check(tmp, lake, number, gold=action != "silver")
    # 5. nothing new: a no-op
    assert ridelake.build_silver(str(lake), NS)["noop"], "a second silver run with nothing new was not a no-op"
    assert ridelake.build_gold(str(lake), NS)["noop"], "a second gold run with nothing new was not a no-op"
    shutil.rmtree(tmp)
