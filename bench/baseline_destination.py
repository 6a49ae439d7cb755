"""Python baseline for the bronze benchmark: the same job as destination-delta-lake done the way a
Python developer would (orjson + polars + deltalake.write_deltalake). Reads Airbyte messages on
stdin, types columns from the catalog's JSON schema, adds _airbyte_raw_id/_airbyte_extracted_at,
appends to one Delta table per stream, and echoes each STATE after the rows before it were written.

usage: baseline_destination.py CATALOG LAKE_DIR < messages.jsonl
"""
import sys
import uuid

import orjson
import polars as pl
from deltalake import write_deltalake

FLUSH_ROWS = 250_000


def polars_type(schema: dict):
    types = [t for t in (schema.get("type") if isinstance(schema.get("type"), list) else [schema.get("type")]) if t != "null"]
    t = types[0] if len(types) == 1 else "json"
    if t == "integer":
        return pl.Int64
    if t == "number":
        return pl.Float64
    if t == "boolean":
        return pl.Boolean
    if t == "string" and schema.get("format") == "date-time":
        return pl.Datetime("us", "UTC")
    return pl.String


def main() -> None:
    catalog = orjson.loads(open(sys.argv[1], "rb").read())
    lake = sys.argv[2]
    streams = {}
    for s in catalog["streams"]:
        props = s["stream"]["json_schema"]["properties"]
        streams[s["stream"]["name"]] = {"types": {k: polars_type(v) for k, v in props.items()},
                                        "uri": f"{lake}/{s['stream'].get('namespace') or 'default'}/{s['stream']['name']}"}
    buffers = {name: [] for name in streams}
    pending_states = []
    out = sys.stdout.buffer

    def flush():
        for name, rows in buffers.items():
            if not rows:
                continue
            types = streams[name]["types"]
            frame = pl.DataFrame(rows, schema={k: (pl.String if t == pl.Datetime("us", "UTC") else t) for k, t in types.items()}
                                 | {"_airbyte_extracted_at": pl.Int64}, strict=False)
            frame = frame.with_columns(
                [pl.col(k).str.to_datetime(time_zone="UTC", time_unit="us") for k, t in types.items() if t == pl.Datetime("us", "UTC")]
                + [pl.Series("_airbyte_raw_id", [str(uuid.uuid4()) for _ in range(frame.height)]),
                   pl.from_epoch(pl.col("_airbyte_extracted_at"), time_unit="ms").dt.replace_time_zone("UTC")])
            write_deltalake(streams[name]["uri"], frame.to_arrow(), mode="append")
            rows.clear()
        for state in pending_states:
            out.write(state)
        pending_states.clear()
        out.flush()

    buffered = 0
    for line in sys.stdin.buffer:
        msg = orjson.loads(line)
        kind = msg.get("type")
        if kind == "RECORD":
            rec = msg["record"]
            if rec["stream"] in buffers:
                row = rec["data"]
                row["_airbyte_extracted_at"] = rec["emitted_at"]
                buffers[rec["stream"]].append(row)
                buffered += 1
        elif kind == "STATE":
            pending_states.append(orjson.dumps(msg) + b"\n")
            if buffered >= FLUSH_ROWS:
                flush()
                buffered = 0
    flush()


if __name__ == "__main__":
    main()
