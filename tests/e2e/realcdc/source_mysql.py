"""A stand-in for Airbyte's source-mysql in CDC mode, reading a real MariaDB server.

It emits exactly the Airbyte messages source-mysql emits (see /work/shared/reference/source-mysql.md),
in two shapes:

- `java` (source-mysql 3.0–3.7): an initial sync reads the tables (`SELECT ... ORDER BY id`, the
  "initial load") after noting the binlog offset, then the binlog from that offset; `_ab_cdc_cursor`
  is `sync start epoch seconds * 10**8 + n` for the n-th record of the sync (snapshot rows too);
  DECIMAL values of binlog rows are JSON strings (`"12.50"`); `_ab_cdc_log_pos` is an integer.
- `kotlin` (3.9+, bulk CDK): the binlog is read first, then the tables; snapshot rows carry the offset
  the binlog phase reached, a null `_ab_cdc_cursor` and an integer `_ab_cdc_log_pos`; binlog rows
  carry `_ab_cdc_cursor = (binlog file number << 32) | event position` and `_ab_cdc_log_pos` as a
  double (`4920.0`).

Both: one `emitted_at` (ms) for every record of a sync (the sync start); `_ab_cdc_updated_at` = the
binlog event's timestamp (the transaction's time, one-second resolution) on binlog rows and the sync
start on snapshot rows; `_ab_cdc_deleted_at` = `_ab_cdc_updated_at` on deletes, whose data is the
before-image; an UPDATE emits its after-image, and an UPDATE of the primary key a delete of the old
key followed by an insert of the new one (as Debezium does), both from the same event; `_ab_cdc_log_file`/`_ab_cdc_log_pos` = the row
event's file and start position (the rows of one multi-row statement share it); DATETIME values as
`2025-01-01T10:00:00.000000`. GLOBAL STATE messages (`mysql_cdc_offset`, `mysql_db_history`, every
stream in `stream_states`, `sourceStats.recordCount`) after about every `state_every` records, at a
transaction boundary, and one at the end of the sync.

The binlog is read with pymysqlreplication from the saved offset to the server's position at the
start of the read (`SHOW MASTER STATUS`), so the binlog's own files, positions and timestamps are the
truth. A saved offset whose file the server no longer has (after `RESET MASTER`) makes the next sync a
re-snapshot, as source-mysql's "Re-sync data" (`invalid_cdc_cursor_position_behavior`) does.

The tables, their columns, keys and catalog types come from a `schema.Schema` (today's `users` and
`rides` by default); `check_catalog` compares its catalog types with what source-mysql's `discover`
declares for the server's columns.
"""
from __future__ import annotations

import json
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Callable

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import RotateEvent, XidEvent
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from .mariadb import MariaDB
from .schema import DATETIME, DEFAULT, INTEGER, NUMBER, STRING, Schema

JAVA = "java"
KOTLIN = "kotlin"
FLAVORS = (JAVA, KOTLIN)
# Today's tables (schema.DEFAULT), kept under their old names.
STREAMS = DEFAULT.streams
ONE_HUNDRED_MILLION = 100_000_000

# source-mysql's catalog types (what its `discover` declares for these MySQL column types): see schema.py.
COLUMN_TYPES = {table: DEFAULT.types(table) for table in DEFAULT.streams}
BOOLEAN = {"type": "boolean"}
TIMESTAMP = {"type": "string", "format": "date-time", "airbyte_type": "timestamp_with_timezone"}
CDC_TYPES = {"_ab_cdc_cursor": INTEGER, "_ab_cdc_log_file": STRING, "_ab_cdc_log_pos": NUMBER,
             "_ab_cdc_updated_at": STRING, "_ab_cdc_deleted_at": STRING}
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def configured_catalog(namespace: str, *, sync_id: int, generation_id: int = 1, minimum_generation_id: int = 0,
                       destination_sync_mode: str = "append_dedup", schema: Schema = DEFAULT) -> dict:
    """The configured catalog of a CDC connection on `namespace` (the database)."""
    streams = []
    for name in schema.streams:
        types, key = schema.types(name), [[c] for c in schema.key_columns(name)]
        streams.append({
            "stream": {
                "name": name, "namespace": namespace,
                "json_schema": {"type": "object", "properties": {**types, **CDC_TYPES}},
                "supported_sync_modes": ["full_refresh", "incremental"], "source_defined_cursor": True,
                "default_cursor_field": ["_ab_cdc_cursor"], "source_defined_primary_key": key, "is_resumable": True,
            },
            "sync_mode": "incremental", "cursor_field": ["_ab_cdc_cursor"], "destination_sync_mode": destination_sync_mode,
            "primary_key": key, "generation_id": generation_id, "minimum_generation_id": minimum_generation_id,
            "sync_id": sync_id,
        })
    return {"streams": streams}


def discovered_type(data_type: str, column_type: str, numeric_scale: int | None) -> dict:
    """The catalog type source-mysql's `discover` declares for a column of information_schema.COLUMNS
    (/work/shared/reference/source-mysql.md; source-mysql 3.x: TINYINT(1) is a boolean). Common types
    only: any other raises."""
    kind = data_type.lower()
    if kind == "tinyint" and column_type.lower().startswith("tinyint(1)"):
        return BOOLEAN
    if kind in ("tinyint", "smallint", "mediumint", "int", "bigint"):
        return INTEGER
    if kind == "decimal":
        return INTEGER if not numeric_scale else NUMBER
    if kind in ("float", "double"):
        return NUMBER
    if kind == "datetime":
        return DATETIME
    if kind == "timestamp":
        return TIMESTAMP
    if kind in ("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json"):
        return STRING
    raise ValueError(f"no source-mysql type known here for {column_type}")


def discover(db: MariaDB, database: str, table: str) -> tuple[dict[str, dict], list[str]]:
    """What source-mysql's `discover` (or a schema refresh) declares for a table of the server now:
    its columns' catalog types in the table's order (from information_schema.COLUMNS), and its
    primary key."""
    rows = db.execute("SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, NUMERIC_SCALE, COLUMN_KEY FROM information_schema.COLUMNS "
                      "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (database, table))
    return ({name: discovered_type(kind, full, scale) for name, kind, full, scale, _ in rows},
            [name for name, *_, key in rows if key == "PRI"])


def check_catalog(db: MariaDB, database: str, schema: Schema = DEFAULT) -> list[str]:
    """The schema's catalog (names, order, types, primary keys) against the server's tables as
    source-mysql's `discover` would declare them (a harness self-check)."""
    problems = []
    for table in schema.streams:
        discovered, keys = discover(db, database, table)
        declared = schema.types(table)
        if list(discovered) != list(declared):
            problems.append(f"{table}: columns {list(discovered)} on the server, {list(declared)} declared")
        for name, kind in declared.items():
            if name in discovered and discovered[name] != kind:
                problems.append(f"{table}.{name}: discovered as {discovered[name]}, declared {kind}")
        if keys != list(schema.key_columns(table)):
            problems.append(f"{table}: primary key {keys} on the server, {list(schema.key_columns(table))} declared")
    return problems


def binlog_number(file: str) -> int:
    return int(file.rsplit(".", 1)[1])


def utc_text(moment: datetime, micros: bool) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micros else "%Y-%m-%dT%H:%M:%SZ")


def encode(value, *, decimal_as_text: bool):
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.strftime(DATETIME_FORMAT)
    if isinstance(value, Decimal):
        return str(value) if decimal_as_text else float(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def decode(stream: str, data: dict, schema: Schema = DEFAULT) -> dict:
    """A record's data back to Python values (datetime, Decimal, int, str), for comparisons."""
    out = {}
    for column, kind in schema.types(stream).items():
        value = data.get(column)
        if value is None:
            out[column] = None
        elif kind is DATETIME:
            out[column] = datetime.strptime(value, DATETIME_FORMAT)
        elif kind is NUMBER:
            out[column] = Decimal(str(value))
        elif kind is INTEGER:
            out[column] = int(value)
        elif kind is STRING and isinstance(value, int) and not isinstance(value, bool):
            # (an integer sent before the column became text: the database converted it to its text)
            out[column] = str(value)
        else:
            out[column] = value
    return out


@dataclass(frozen=True)
class Offset:
    file: str
    pos: int

    @property
    def cursor(self) -> int:
        return (binlog_number(self.file) << 32) | self.pos


@dataclass
class Sync:
    number: int
    flavor: str
    started_at: datetime
    snapshot: bool
    resnapshot_reason: str | None
    start: Offset | None
    end: Offset | None = None
    messages: list[dict] = field(default_factory=list)
    during_writes: int = 0
    kinds: Counter = field(default_factory=Counter)
    # "snapshot" or "binlog", one per record, in order.
    origins: list[str] = field(default_factory=list)

    @property
    def records(self) -> list[dict]:
        return [m["record"] for m in self.messages if m["type"] == "RECORD"]

    @property
    def states(self) -> list[dict]:
        return [m["state"] for m in self.messages if m["type"] == "STATE"]

    def jsonl(self) -> bytes:
        return "".join(json.dumps(m, separators=(",", ":"), ensure_ascii=False) + "\n" for m in self.messages).encode()

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.kinds.items()))
        return (f"sync {self.number} ({self.flavor}{', snapshot' if self.snapshot else ''}"
                f"{', re-snapshot: ' + self.resnapshot_reason if self.resnapshot_reason else ''}): "
                f"{len(self.records)} records ({kinds}), {len(self.states)} states, "
                f"{self.during_writes} writes during the read, binlog {self.start} -> {self.end}")


class SourceMySql:
    """The CDC source of one connection: keeps the saved offset between syncs."""

    def __init__(self, db: MariaDB, database: str, *, state_every: int = 40, server_id: int = 5401,
                 schema: Schema = DEFAULT):
        self.db = db
        self.database = database
        self.schema = schema
        self.streams = schema.streams
        self.state_every = state_every
        self.server_id = server_id
        self.offset: Offset | None = None
        self.syncs: list[Sync] = []

    def use_schema(self, schema: Schema) -> None:
        """The tables after a change at the source (`ALTER TABLE`) and Airbyte's schema refresh:
        the following syncs emit `schema`'s columns, with its catalog types (same streams)."""
        assert list(schema.streams) == list(self.streams), "the streams stay the same"
        self.schema = schema
        self.streams = schema.streams

    # -- what a sync emits ----------------------------------------------------------------------
    def read(self, flavor: str, started_at: datetime, during: Callable[[str], int] | None = None) -> Sync:
        """One sync. `during(stage)` runs the application's writes while the sync reads (returns how
        many transactions it ran); stages: `java` "after-offset" and "between-tables" of an initial
        load, `kotlin` "after-binlog" and "between-tables" of a snapshot."""
        assert flavor in FLAVORS, flavor
        if self.syncs:
            assert started_at > self.syncs[-1].started_at, "syncs must start later than the previous one"
        reason = None
        if self.offset is not None:
            files = dict(self.db.binlog_files())
            if self.offset.file not in files or self.offset.pos > files[self.offset.file]:
                reason = f"saved offset {self.offset.file}:{self.offset.pos} is not on the server (it has {sorted(files)})"
        emitter = _Emitter(self, flavor, started_at)
        sync = Sync(len(self.syncs) + 1, flavor, started_at, snapshot=self.offset is None or reason is not None,
                    resnapshot_reason=reason, start=self.offset)
        run = during or (lambda stage: 0)
        if not sync.snapshot:
            sync.end = self._binlog(emitter, self.offset)
        elif flavor == JAVA:
            start = Offset(*self.db.binlog_position())
            sync.start = start
            sync.during_writes += run("after-offset")
            sync.during_writes += self._snapshots(emitter, start, run)
            sync.end = self._binlog(emitter, start)
        else:
            start = Offset(*self.db.binlog_position())
            sync.start = start
            reached = self._binlog(emitter, start)
            sync.during_writes += run("after-binlog")
            sync.during_writes += self._snapshots(emitter, reached, run)
            sync.end = reached
        emitter.state(sync.end, final=True)
        self.offset = sync.end
        sync.messages = emitter.messages
        sync.kinds = emitter.kinds
        sync.origins = emitter.origins
        self.syncs.append(sync)
        return sync

    def _snapshots(self, emitter: "_Emitter", offset: Offset, run) -> int:
        """Snapshots every stream, parents first, the application writing between two tables (`run`);
        returns how many transactions it wrote."""
        written = 0
        for i, stream in enumerate(self.streams):
            if i:
                written += run("between-tables")
            self._snapshot(emitter, stream, offset)
        return written

    def _snapshot(self, emitter: "_Emitter", stream: str, offset: Offset) -> None:
        columns = self.streams[stream]
        with closing(self.db.source_connection(self.database)) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT {', '.join(columns)} FROM {stream} ORDER BY {', '.join(self.schema.key_columns(stream))}")
            rows = cur.fetchall()
        for row in rows:
            emitter.snapshot_row(stream, dict(zip(columns, row)), offset)
            emitter.maybe_state(offset)

    def _binlog(self, emitter: "_Emitter", start: Offset) -> Offset:
        """Emits the binlog's row changes of our tables from `start` to the server's current position;
        returns that position."""
        target = Offset(*self.db.binlog_position())
        reader = BinLogStreamReader(
            connection_settings=self.db.replication_settings(), server_id=self.server_id, resume_stream=True,
            log_file=start.file, log_pos=start.pos, blocking=False,
            only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent, RotateEvent],
            enable_logging=False,
        )
        committed = start
        try:
            for event in reader:
                if isinstance(event, RotateEvent):
                    continue
                if isinstance(event, XidEvent):
                    committed = Offset(reader.log_file, event.packet.log_pos)
                    emitter.maybe_state(committed)
                    continue
                if event.schema != self.database or event.table not in self.streams:
                    continue
                position = Offset(reader.log_file, event.packet.log_pos - event.packet.event_size)
                moment = datetime.fromtimestamp(event.timestamp, timezone.utc).replace(tzinfo=None)
                for row in event.rows:
                    if isinstance(event, WriteRowsEvent):
                        emitter.binlog_row(event.table, row["values"], position, moment, "insert")
                    elif isinstance(event, UpdateRowsEvent):
                        before, after = row["before_values"], row["after_values"]
                        if any(before[k] != after[k] for k in self.schema.key_columns(event.table)):
                            # A key change: Debezium emits a delete of the old key, then a create
                            # of the new one, both from this event.
                            emitter.binlog_row(event.table, before, position, moment, "delete")
                            emitter.binlog_row(event.table, after, position, moment, "insert")
                        else:
                            emitter.binlog_row(event.table, after, position, moment, "update")
                    else:
                        emitter.binlog_row(event.table, row["values"], position, moment, "delete")
            end = Offset(reader.log_file, reader.log_pos)
        finally:
            reader.close()
        # The read goes to the end of the binlog. It may end past `target` (MariaDB writes a
        # Binlog_checkpoint event after a rotation in the background), never before it, and no row
        # event of ours may lie past it (nothing writes while the binlog is read).
        if (binlog_number(end.file), end.pos) < (binlog_number(target.file), target.pos):
            raise AssertionError(f"binlog read ended at {end}, before {target} where the server was when it began")
        if emitter.last_position is not None and \
                (binlog_number(emitter.last_position.file), emitter.last_position.pos) >= (binlog_number(target.file), target.pos):
            raise AssertionError(f"a row event at {emitter.last_position} lies past {target}: something wrote during the read")
        return end


class _Emitter:
    """Builds the messages of one sync."""

    def __init__(self, source: SourceMySql, flavor: str, started_at: datetime):
        self.source = source
        self.flavor = flavor
        self.started_at = started_at
        self.emitted_at = int(round(started_at.replace(tzinfo=timezone.utc).timestamp() * 1000))
        self.counter = 0
        self.since_state = 0
        self.messages: list[dict] = []
        self.kinds: Counter = Counter()
        self.origins: list[str] = []
        self.last_position: Offset | None = None

    def _record(self, stream: str, data: dict) -> None:
        self.counter += 1
        self.since_state += 1
        if self.flavor == JAVA:
            epoch_seconds = int(self.started_at.replace(tzinfo=timezone.utc).timestamp())
            data["_ab_cdc_cursor"] = epoch_seconds * ONE_HUNDRED_MILLION + self.counter
        self.messages.append({"type": "RECORD", "record": {"namespace": self.source.database, "stream": stream,
                                                           "emitted_at": self.emitted_at, "data": data}})

    def snapshot_row(self, stream: str, row: dict, offset: Offset) -> None:
        data = {c: encode(row[c], decimal_as_text=False) for c in self.source.streams[stream]}
        data["_ab_cdc_updated_at"] = utc_text(self.started_at, micros=True)
        data["_ab_cdc_deleted_at"] = None
        data["_ab_cdc_log_file"] = offset.file
        data["_ab_cdc_log_pos"] = offset.pos
        if self.flavor == KOTLIN:
            data["_ab_cdc_cursor"] = None
        self.kinds["snapshot"] += 1
        self.origins.append("snapshot")
        self._record(stream, data)

    def binlog_row(self, stream: str, row: dict, position: Offset, moment: datetime, kind: str) -> None:
        java = self.flavor == JAVA
        # (a row the binlog holds from before an ALTER TABLE that added a column has no value for
        # it: the source sends the row as the table was then)
        data = {c: encode(row[c], decimal_as_text=java) for c in self.source.streams[stream] if c in row}
        when = utc_text(moment, micros=not java)
        data["_ab_cdc_updated_at"] = when
        data["_ab_cdc_deleted_at"] = when if kind == "delete" else None
        data["_ab_cdc_log_file"] = position.file
        self.last_position = position
        if java:
            data["_ab_cdc_log_pos"] = position.pos
        else:
            data["_ab_cdc_log_pos"] = float(position.pos)
            data["_ab_cdc_cursor"] = position.cursor
        self.kinds[kind] += 1
        self.origins.append("binlog")
        self._record(stream, data)

    def maybe_state(self, offset: Offset) -> None:
        if self.since_state >= self.source.state_every:
            self.state(offset)

    def state(self, offset: Offset, final: bool = False) -> None:
        database = self.source.database
        key = json.dumps([database, {"server": database}], separators=(",", ":"))
        value = json.dumps({"ts_sec": int(self.started_at.replace(tzinfo=timezone.utc).timestamp()),
                            "file": offset.file, "pos": offset.pos}, separators=(",", ":"))
        history = json.dumps({"source": {"server": database}, "position": {"file": offset.file, "pos": offset.pos},
                              "databaseName": database, "ddl": "CREATE TABLE ...", "tableChanges": []})
        shared = {"state": {"mysql_cdc_offset": {key: value}, "mysql_db_history": history, "is_compressed": False}}
        if self.flavor == JAVA:
            stream_state = lambda name: {"stream_name": name, "stream_namespace": database, "cursor_field": []}
        else:
            stream_state = lambda name: {"state_type": "cdc", "version": 3}
        self.messages.append({"type": "STATE", "state": {
            "type": "GLOBAL",
            "global": {"shared_state": shared, "stream_states": [
                {"stream_descriptor": {"name": name, "namespace": database}, "stream_state": stream_state(name)}
                for name in self.source.streams]},
            "sourceStats": {"recordCount": float(self.since_state)},
        }})
        self.since_state = 0


def replay(syncs: list[Sync], schema: Schema = DEFAULT) -> dict[str, dict[int, dict]]:
    """The tables a consumer gets by applying every record in the order the source emitted them
    (latest wins, a delete removes the row): equal to the database when the history is right."""
    tables: dict[str, dict[int, dict]] = {name: {} for name in schema.streams}
    for sync in syncs:
        for record in sync.records:
            data = record["data"]
            stream = record["stream"]
            rows = tables[stream]
            key = schema.key_of(stream, data)
            if data["_ab_cdc_deleted_at"] is not None:
                rows.pop(key, None)
            else:
                rows[key] = decode(stream, data, schema)
    return tables


def check_meta(syncs: list[Sync]) -> list[str]:
    """Internal consistency of the emitted meta fields (a harness self-check)."""
    problems = []
    last_java_cursor = None
    for sync in syncs:
        emitted = {r["emitted_at"] for r in sync.records}
        if len(emitted) > 1:
            problems.append(f"sync {sync.number}: several emitted_at values")
        last_kotlin = None
        for r in sync.records:
            d = r["data"]
            cursor = d.get("_ab_cdc_cursor")
            if sync.flavor == JAVA:
                if cursor is None or (last_java_cursor is not None and cursor <= last_java_cursor):
                    problems.append(f"sync {sync.number}: java cursor {cursor} not increasing")
                last_java_cursor = cursor
            elif cursor is not None:
                if last_kotlin is not None and cursor < last_kotlin:
                    problems.append(f"sync {sync.number}: kotlin cursor {cursor} goes back")
                last_kotlin = cursor
                if cursor != (binlog_number(d["_ab_cdc_log_file"]) << 32 | int(d["_ab_cdc_log_pos"])):
                    problems.append(f"sync {sync.number}: kotlin cursor {cursor} does not match its file/pos")
            if d["_ab_cdc_deleted_at"] not in (None, d["_ab_cdc_updated_at"]):
                problems.append(f"sync {sync.number}: deleted_at differs from updated_at")
    return problems[:10]



def check_positions(db: MariaDB, sync: Sync, schema: Schema = DEFAULT) -> list[str]:
    """Every binlog row of `sync` points at a row event of its own table in the server's
    `SHOW BINLOG EVENTS` listing (a harness self-check against the server itself)."""
    listings: dict[str, dict[int, tuple[str, str]]] = {}
    tables: dict[tuple[str, str], str] = {}
    problems = []
    for record, origin in zip(sync.records, sync.origins):
        if origin != "binlog":
            continue
        d = record["data"]
        key = schema.key_of(record["stream"], d)
        file, pos = d["_ab_cdc_log_file"], int(d["_ab_cdc_log_pos"])
        if file not in listings:
            listings[file] = {int(r[1]): (r[2], r[5]) for r in db.execute(f"SHOW BINLOG EVENTS IN '{file}'")}
            for kind, info in listings[file].values():
                if kind == "Table_map":
                    tables[(file, info.split()[1])] = info.split("(")[-1].rstrip(")")
        kind, info = listings[file].get(pos, ("nothing", ""))
        if kind not in ("Write_rows_v1", "Update_rows_v1", "Delete_rows_v1"):
            problems.append(f"{record['stream']} id {key}: {kind} at {file}:{pos}, not a row event")
        elif tables.get((file, info.split()[1])) != f"{record['namespace']}.{record['stream']}":
            problems.append(f"{record['stream']} id {key}: the row event at {file}:{pos} is for another table")
    return problems[:10]
