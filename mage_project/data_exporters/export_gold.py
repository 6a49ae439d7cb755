"""Publishes gold: every gold table as one Parquet file, stamped with its gold Delta version."""
if 'data_exporter' not in globals():
    from mage_ai.data_preparation.decorators import data_exporter
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test

import ridelake
from mage_project.utils.ridelake_settings import settings


@data_exporter
def export_gold(gold: dict, *args, **kwargs) -> dict:
    lake = settings(kwargs)
    # A dict, not a list: Mage would split a list into several outputs.
    return {"tables": ridelake.export_gold_parquet(lake.lake, lake.export_dir, **lake.ridelake_args())}


@test
def test_every_gold_table_exported(output, *args) -> None:
    tables = {e["table"] for e in output["tables"]}
    assert {"driver_stats", "monthly_distance", "daily_city_kpis"} <= tables, tables
    assert all(e["rows"] > 0 for e in output["tables"]), output
