"""Publishes gold to PostgreSQL (for Power BI) in one transaction, when a connection is configured."""
if 'data_exporter' not in globals():
    from mage_ai.data_preparation.decorators import data_exporter
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test

import ridelake
from mage_project.utils.ridelake_settings import settings


@data_exporter
def publish_gold_postgres(gold: dict, *args, **kwargs) -> dict:
    lake = settings(kwargs)
    if not lake.postgres_dsn:
        return {"skipped": "RIDELAKE_POSTGRES_DSN is not set", "tables": []}
    tables = ridelake.publish_postgres(lake.lake, lake.postgres_dsn, lake.postgres_schema, **lake.ridelake_args())
    return {"schema": lake.postgres_schema, "tables": tables}


@test
def test_published_or_not_configured(output, *args) -> None:
    if "skipped" in output:
        return
    assert {t["table"] for t in output["tables"]} >= {"driver_stats", "monthly_distance"}, output
    assert all(t["mode"] in ("unchanged", "days", "full") for t in output["tables"]), output
