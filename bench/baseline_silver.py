"""Analyst-style baseline for the silver benchmark: Python polars + deltalake MERGE.

Reads the bronze rides changed since a timestamp (polars scan_delta with a filter), keeps the last
change per ride (MERGE refuses several source rows per target row), and MERGEs into the whole
silver table on `id` (no partition pruning): deletes, updates, inserts.

usage: baseline_silver.py BRONZE_RIDES SILVER_RIDES SINCE_EPOCH_US
"""
import sys

import polars as pl
from deltalake import DeltaTable


def main() -> None:
    bronze, silver, since = sys.argv[1], sys.argv[2], int(sys.argv[3])
    changes = (
        pl.scan_delta(bronze)
        .filter(pl.col("_airbyte_extracted_at").dt.epoch("us") > since)
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
