"""ridelake: build the silver and gold layers of the ride-hailing lakehouse from bronze.

    import ridelake
    ridelake.build_silver("lake")            # bronze CDC -> silver users, rides, pending, quarantine
    ridelake.build_gold("lake")              # silver -> gold aggregates, for the days that changed
    ridelake.read_table("lake", "gold", "driver_stats")   # -> polars.DataFrame

`lake` is a folder or an ``s3://bucket/prefix`` URI; ``storage_options`` takes the same keys as
the ``deltalake`` package (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...). Layout:
``<lake>/bronze/<namespace>/<stream>`` (written by destination-delta-lake), ``<lake>/silver/*``,
``<lake>/gold/*``. Every call releases the GIL while it runs.
"""
from ridelake._native import (
    ConfigError,
    DataError,
    MissingTableError,
    RidelakeError,
    StorageError,
    build_gold,
    build_silver,
    read_table,
)

__all__ = [
    "ConfigError",
    "DataError",
    "MissingTableError",
    "RidelakeError",
    "StorageError",
    "build_gold",
    "build_silver",
    "read_table",
]
