"""DuckDB peer for the bronze benchmark: the same job as destination-delta-lake done by a strong
Python contestant (DuckDB's parallel NDJSON reader + deltalake.write_deltalake).

One parallel pass of `read_json(format='newline_delimited')` parses the Airbyte messages file into
a DuckDB table, the record's `data` typed as one STRUCT of every stream's fields (from the
catalog's JSON schema, with baseline_destination.py's mapping; a field two streams type
differently is text). Each stream's rows then go to its Delta table as Arrow batches streamed to
deltalake, with _airbyte_raw_id/_airbyte_extracted_at added. Reading the file once per stream
instead (projection pushed into the reader) was measured slower: 6.3-6.5 s against 5.1-5.4 s for
1M records on 2 cores; so was materializing each stream's Arrow table before writing it (5.6 s).

The file is read whole before the first commit, so the STATE messages are all echoed at the end,
after every table is committed: no STATE is echoed before the rows before it are in the lake.
Nothing is fsynced (destination-delta-lake fsyncs before each echo).

usage: peer_duckdb.py CATALOG LAKE_DIR MESSAGES_FILE
"""
import json
import os
import sys

import duckdb
from deltalake import WriterProperties, write_deltalake

# Arrow batches handed from DuckDB to deltalake, and Parquet row groups of destination-delta-lake's
# size (256K rows).
BATCH_ROWS = 65_536
ROW_GROUP_ROWS = 256 * 1024


def duck_type(schema: dict) -> str:
    """The baseline's mapping (baseline_destination.py polars_type), as DuckDB types, and an
    `airbyte_type: integer` number as an integer, as destination-delta-lake types it."""
    if schema.get("airbyte_type") == "integer":
        return "BIGINT"
    types = [t for t in (schema.get("type") if isinstance(schema.get("type"), list) else [schema.get("type")]) if t != "null"]
    t = types[0] if len(types) == 1 else "json"
    if t == "integer":
        return "BIGINT"
    if t == "number":
        return "DOUBLE"
    if t == "boolean":
        return "BOOLEAN"
    if t == "string" and schema.get("format") == "date-time":
        return "TIMESTAMPTZ"  # microseconds; zone-less text is read as UTC (TimeZone below)
    return "VARCHAR"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def main() -> None:
    catalog = json.load(open(sys.argv[1]))
    lake, messages = sys.argv[2], sys.argv[3]
    con = duckdb.connect(config={"threads": os.cpu_count() or 1})
    con.execute("SET TimeZone = 'UTC'")
    # One STRUCT type for every stream's `data`: the union of their fields.
    fields = {}
    for s in catalog["streams"]:
        for k, v in s["stream"]["json_schema"]["properties"].items():
            t = duck_type(v)
            fields[k] = t if fields.get(k, t) == t else "VARCHAR"
    data = ", ".join(f"{quote(k)} {t}" for k, t in fields.items())
    columns = {"type": "VARCHAR", "record": f"STRUCT(stream VARCHAR, emitted_at BIGINT, data STRUCT({data}))", "state": "JSON"}
    # One parallel parse of the whole file; DuckDB keeps the file's order (preserve_insertion_order).
    con.execute("CREATE TEMP TABLE m AS SELECT type, record.stream AS stream, record.emitted_at AS emitted_at, record.data AS data, state"
                " FROM read_json($file, format='newline_delimited', columns=$columns)", {"file": messages, "columns": columns})
    for s in catalog["streams"]:
        stream = s["stream"]
        props = stream["json_schema"]["properties"]
        query = (f"SELECT {', '.join(f'data.{quote(k)}::{duck_type(v)} AS {quote(k)}' for k, v in props.items())},"
                 " epoch_ms(emitted_at)::TIMESTAMPTZ AS _airbyte_extracted_at, uuid()::VARCHAR AS _airbyte_raw_id"
                 " FROM m WHERE type = 'RECORD' AND stream = $stream")
        reader = con.execute(query, {"stream": stream["name"]}).fetch_record_batch(BATCH_ROWS)
        write_deltalake(f"{lake}/{stream.get('namespace') or 'default'}/{stream['name']}", reader, mode="append",
                        writer_properties=WriterProperties(max_row_group_size=ROW_GROUP_ROWS))
    # Every table is committed: echo the states, in input order.
    out = sys.stdout
    for (state,) in con.execute("SELECT state FROM m WHERE type = 'STATE'").fetchall():
        out.write('{"type":"STATE","state":' + state + "}\n")
    out.flush()


if __name__ == "__main__":
    main()
