"""Analyst-style baseline for the silver benchmark: Python polars + deltalake MERGE.

Reads the bronze rides files added after a bronze version (the files of the current version that
the older one did not have: what an analyst does without change data feed; `_airbyte_extracted_at`
cannot tell syncs apart, since source-mysql stamps a whole sync with one `emitted_at`), keeps the
last change per ride (MERGE refuses several source rows per target row), and MERGEs into the whole
silver table on `id` (no partition pruning): deletes, updates, inserts.

usage: baseline_silver.py BRONZE_RIDES SILVER_RIDES SINCE_VERSION
"""
import sys

import polars as pl
from deltalake import DeltaTable


def main() -> None:
    bronze, silver, since = sys.argv[1], sys.argv[2], int(sys.argv[3])
    current = DeltaTable(bronze)
    new_files = sorted(set(current.file_uris()) - set(DeltaTable(bronze, version=since).file_uris()))
    changes = (
        pl.scan_parquet(new_files)
        .sort("_ab_cdc_cursor")
        .unique(subset="id", keep="last", maintain_order=True)
        .with_columns(
            pl.col("requested_at").dt.year().cast(pl.Int32).alias("year"),
            pl.col("requested_at").dt.month().cast(pl.Int32).alias("month"),
            pl.col("requested_at").dt.day().cast(pl.Int32).alias("day"),
        )
        .collect()
    )
    target = DeltaTable(silver)
    columns = [f.name for f in target.schema().fields]
    keep = [c for c in columns if c in changes.columns]
    source = changes.select(keep + ([] if "_ab_cdc_deleted_at" in keep else ["_ab_cdc_deleted_at"]))
    updates = {c: f"s.{c}" for c in columns if c in changes.columns}
    (
        target.merge(source.to_arrow(), predicate="t.id = s.id", source_alias="s", target_alias="t")
        .when_matched_delete(predicate="s._ab_cdc_deleted_at IS NOT NULL")
        .when_matched_update(updates=updates)
        .when_not_matched_insert(updates=updates, predicate="s._ab_cdc_deleted_at IS NULL")
        .execute()
    )


if __name__ == "__main__":
    main()
