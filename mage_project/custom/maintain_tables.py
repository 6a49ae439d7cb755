"""Compacts, checkpoints, cleans the logs of and vacuums every table of the lake.

Changes no data: silver and gold return the same before and after, and their next runs stay
incremental. Runtime variables: `retention_hours` (files out of a table longer than this are
deleted, default 168), `log_retention_hours` (default 720), `target_file_mb` (default 128).
"""
if 'custom' not in globals():
    from mage_ai.data_preparation.decorators import custom
if 'test' not in globals():
    from mage_ai.data_preparation.decorators import test

import ridelake
from mage_project.utils.ridelake_settings import settings


@custom
def maintain_tables(*args, **kwargs) -> dict:
    lake = settings(kwargs)
    return ridelake.maintain(lake.lake, **lake.maintenance_args(kwargs))


@test
def test_every_table_was_visited(output, *args) -> None:
    assert output["tables"], output
    # (a sync may add bronze files meanwhile: only compaction's own counts are checked)
    assert all(t["files_written"] <= t["files_compacted"] for t in output["tables"]), output
