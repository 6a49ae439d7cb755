"""ridelake: build the silver and gold layers of the ride-hailing lakehouse from bronze.

    import ridelake
    ridelake.build_silver("lake")            # bronze CDC -> silver users, rides, pending, quarantine
    ridelake.build_gold("lake")              # silver -> gold aggregates, for the days that changed
    ridelake.read_table("lake", "gold", "driver_stats")   # -> polars.DataFrame
    ridelake.write_report("lake", "report.html")          # charts of gold; returns lake_summary()
    ridelake.bronze_progress("lake")["behind"]           # does bronze hold versions silver lacks?
    ridelake.export_gold_parquet("lake", "export/")      # every gold table as one Parquet file
    ridelake.publish_postgres("lake", "host=db user=bi dbname=bi")   # gold -> PostgreSQL, one transaction
    ridelake.export_features("lake")                     # <lake>/ml/{driver,customer}_features.parquet
    ridelake.validate_model("model.toml", "lake")        # [] or the problems, each with its line

A model file maps a source database's own tables and columns onto silver's (``model=`` of
``build_silver``, or ``RIDELAKE_MODEL``; see ``models/example-renamed.toml``). Silver records the
model it was built with; a run with another model raises ``ConfigError`` until
``build_silver(..., rebuild=True)`` rebuilds silver with it.

`lake` is a folder or an ``s3://bucket/prefix`` URI; ``storage_options`` takes the same keys as
the ``deltalake`` package (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...). Layout:
``<lake>/bronze/<namespace>/<stream>`` (written by destination-delta-lake), ``<lake>/silver/*``,
``<lake>/gold/*``. Every call releases the GIL while it runs.

``build_silver(..., engine="ray")`` (or ``"spark"``) runs the slices of a rebuild, or of an
increment larger than the memory budget, as Ray (or Spark) tasks (``ridelake.engines``): the
calling process plans and commits, the workers decide and write.

``build_silver`` and ``build_gold`` send Prometheus metrics and OpenLineage events when a target
is given (``pushgateway_url=``, ``metrics_file=``, ``lineage_url=``, ``lineage_file=``) or set in
the environment (``RIDELAKE_PUSHGATEWAY_URL``, ``RIDELAKE_METRICS_FILE``, ``OPENLINEAGE_URL``,
``RIDELAKE_OPENLINEAGE_FILE``); failing to send them never fails the build (a line on stderr).
One silver and one gold run at a time per lake: a second one raises ``BusyError``.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ridelake import _native
from ridelake._native import (
    BusyError,
    ConfigError,
    DataError,
    MissingTableError,
    RidelakeError,
    StorageError,
    bronze_progress,
    build_gold,
    export_features,
    export_gold_parquet,
    lake_summary,
    maintain,
    model_schema,
    publish_postgres,
    read_table,
    run_slice,
    validate_model,
    write_report,
)
from ridelake.engines import Engine, RayEngine, SparkEngine

if TYPE_CHECKING:
    from ridelake._native import SilverReport


def build_silver(
    lake: str,
    namespace: str = "ridehail",
    storage_options: dict[str, str] | None = None,
    *,
    model: str | os.PathLike[str] | None = None,
    rebuild: bool = False,
    memory_budget: int | str | None = None,
    slices: int | None = None,
    engine: Engine = "local",
    pushgateway_url: str | None = None,
    metrics_file: str | os.PathLike[str] | None = None,
    lineage_url: str | None = None,
    lineage_file: str | os.PathLike[str] | None = None,
) -> SilverReport:
    """Applies new bronze changes to the silver tables; returns the run report.

    A rebuild (the first build, ``rebuild=True``, or one the markers call for) decides its rides in
    slices (ranges of the ride id) so as to stay within ``memory_budget`` (bytes or ``"2GiB"``;
    default ``RIDELAKE_MEMORY_BUDGET``, else half the machine's memory), or in exactly ``slices``
    slices; ``engine`` runs them: ``"local"`` (this process), ``"ray"``, a ``RayEngine(...)``,
    ``"spark"``, a ``SparkEngine(spark)`` or any map (see ``ridelake.engines``). An incremental
    run whose changes exceed the budget (or given ``slices``) is decided in slices too, by the
    same engine; a smaller one is decided at once, in this process.
    """
    from ridelake import engines

    runner = engines.runner(engine, lake=lake, namespace=namespace, storage_options=storage_options, model=model)
    return _native.build_silver(
        lake,
        namespace,
        storage_options,
        model=model,
        rebuild=rebuild,
        memory_budget=memory_budget,
        slices=slices,
        runner=runner,
        pushgateway_url=pushgateway_url,
        metrics_file=metrics_file,
        lineage_url=lineage_url,
        lineage_file=lineage_file,
    )


__all__ = [
    "BusyError",
    "ConfigError",
    "DataError",
    "MissingTableError",
    "RayEngine",
    "RidelakeError",
    "SparkEngine",
    "StorageError",
    "bronze_progress",
    "build_gold",
    "build_silver",
    "export_features",
    "export_gold_parquet",
    "lake_summary",
    "maintain",
    "model_schema",
    "publish_postgres",
    "read_table",
    "run_slice",
    "validate_model",
    "write_report",
]
