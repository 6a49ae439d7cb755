"""Writes the per-driver and per-customer ML features to <lake>/ml/ as Parquet."""
if 'data_exporter' not in globals():
    from mage_ai.data_preparation.decorators import data_exporter
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test

import ridelake
from mage_project.utils.ridelake_settings import settings


@data_exporter
def export_ml_features(gold: dict, *args, **kwargs) -> dict:
    lake = settings(kwargs)
    # A dict, not a list: Mage would split a list into several outputs.
    return {"files": ridelake.export_features(lake.lake, **lake.ridelake_args())}


@test
def test_features_written(output, *args) -> None:
    files = output["files"]
    assert [f["name"] for f in files] == ["driver_features", "customer_features"], output
    assert all(f["rows"] > 0 for f in files), output
