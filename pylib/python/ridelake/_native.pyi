import os
from collections.abc import Callable
from typing import TypedDict

import polars as pl

class Written(TypedDict):
    table: str
    url: str
    description: str
    rows: int
    version: int

class SilverReport(TypedDict):
    users_versions: list[int | None]  # [processed after, up to] (of the first users stream)
    users_streams: dict[str, list[int | None]]  # each users stream's [processed after, up to]
    rides_versions: list[int | None]
    rebuild: str | None  # why this run rebuilt silver from all of bronze, if it did
    rows_read: int
    users_read: int
    rides_read: int
    users_upserted: int
    users_deleted: int
    users_retyped: int
    rides_upserted: int
    rides_deleted: int
    rides_withdrawn: int
    quarantined: int
    users_quarantined: int
    rides_quarantined: int
    dropped: int  # changes set aside by a model rule whose action is drop (no quarantine row)
    warnings: dict[str, int]  # "<table>: <rule>" -> changes that broke a warn rule (applied)
    pending: int
    released: int
    rides_unlinked: int  # rides this run published with a link the model accepts that does not hold
    rides_expired: int  # pending rides past a wait_for link's limit after the run (also listed in the quarantine)
    clock_us: int | None  # bronze's clock the wait_for limits count from (newest _airbyte_extracted_at, µs); None without wait_for
    oldest_pending_us: int | None
    partitions_rewritten: int
    slices: int  # id ranges a rebuild (or an increment over the budget) decided its rides in; 0 for an unsliced increment
    slice_seconds: list[float]  # wall time of each slice's worker (local or on Ray), in slice order
    user_slices: int  # id ranges a rebuild decided its users in; 0 for an increment (users decided at once)
    bronze_files_skipped: int  # bronze files a rebuild's slices did not read (their key statistics outside the slice), summed over slices
    noop: bool
    written: list[Written]
    step_seconds: list[tuple[str, float]]  # wall time of each step, in order

class GoldReport(TypedDict):
    silver_versions: list[int | None]  # [reflected before, now]
    days_recomputed: int
    rows_read: int
    batches: int  # batches of days silver was read in (the memory budget's)
    recomputed_all: str | None  # why every day was recomputed (other cities, silver's log cleaned), if so
    noop: bool
    written: list[Written]

class TableRows(TypedDict):
    layer: str
    table: str
    rows: int | None

class TopDriver(TypedDict):
    driver_id: int | str
    completed: int
    rides: int
    distance_km: float
    fare: float
    mean_rating: float | None

class Month(TypedDict):
    month: str
    rides: int
    completed: int
    distance_km: float
    gross_fare: float

class Day(TypedDict):
    date: str
    requested: int
    completed: int
    cancelled: int
    cancellation_rate: float
    gross_fare: float

class LakeSummary(TypedDict):
    tables: list[TableRows]
    pending_rides: int
    quarantined: int
    top_drivers: list[TopDriver]
    months: list[Month]
    days: list[Day]

class StreamProgress(TypedDict):
    bronze_version: int | None
    silver_marker: int | None
    behind: bool

class BronzeProgress(TypedDict):
    users: StreamProgress
    rides: StreamProgress
    behind: bool

class ExportedTable(TypedDict):
    table: str
    version: int
    rows: int
    path: str

class PublishedTable(TypedDict):
    table: str
    gold_version: int
    mode: str  # "unchanged", "days" or "full"
    days: int
    rows_written: int

class FeatureFile(TypedDict):
    name: str
    url: str
    rows: int
    gold_versions: list[tuple[str, int]]
    as_of_us: int | None

class TableMaintenance(TypedDict):
    table: str  # bronze/<namespace>/<stream>, silver/<table>, gold/<table>
    files_before: int
    files_after: int
    files_compacted: int
    files_written: int
    log_floor: int | None  # the oldest version log cleanup had to keep
    logs_removed: int
    checkpoint: int | None
    files_vacuumed: int
    bytes_reclaimed: int
    version: int

class MaintenanceReport(TypedDict):
    tables: list[TableMaintenance]
    seconds: float

class RidelakeError(Exception): ...
class MissingTableError(RidelakeError): ...
class StorageError(RidelakeError): ...
class ConfigError(RidelakeError): ...
class DataError(RidelakeError): ...
class BusyError(RidelakeError): ...

def build_silver(
    lake: str,
    namespace: str = "ridehail",
    storage_options: dict[str, str] | None = None,
    *,
    model: str | os.PathLike[str] | None = None,  # model file; default: RIDELAKE_MODEL, else the default model
    rebuild: bool = False,  # rebuild from all of bronze (once, after changing the model)
    memory_budget: int | str | None = None,  # bytes or "2GiB" a rebuild may use; default: RIDELAKE_MEMORY_BUDGET, else half the RAM
    slices: int | None = None,  # decide a rebuild's rides in this many id ranges (at most 256; fewer if the ids are too few)
    runner: Callable[[list[str]], list[str]] | None = None,  # runs a rebuild's slice tasks elsewhere (ridelake.engines makes it)
    pushgateway_url: str | None = None,
    metrics_file: str | os.PathLike[str] | None = None,
    lineage_url: str | None = None,
    lineage_file: str | os.PathLike[str] | None = None,
) -> SilverReport: ...
def run_slice(
    lake: str,
    task: str,  # a slice task (JSON) a rebuild's driver made
    namespace: str = "ridehail",
    storage_options: dict[str, str] | None = None,
    *,
    model: str | os.PathLike[str] | None = None,
) -> str: ...  # the slice's output (JSON): staged files' add actions and counts
def build_gold(
    lake: str,
    namespace: str = "ridehail",
    storage_options: dict[str, str] | None = None,
    *,
    model: str | os.PathLike[str] | None = None,
    memory_budget: int | str | None = None,
    pushgateway_url: str | None = None,
    metrics_file: str | os.PathLike[str] | None = None,
    lineage_url: str | None = None,
    lineage_file: str | os.PathLike[str] | None = None,
) -> GoldReport: ...
def read_table(
    lake: str,
    layer: str,
    table: str,
    namespace: str = "ridehail",
    storage_options: dict[str, str] | None = None,
    *,
    model: str | os.PathLike[str] | None = None,
) -> pl.DataFrame: ...
def lake_summary(
    lake: str, namespace: str = "ridehail", storage_options: dict[str, str] | None = None, top: int = 10
) -> LakeSummary: ...
def write_report(
    lake: str,
    path: str | os.PathLike[str],
    namespace: str = "ridehail",
    storage_options: dict[str, str] | None = None,
    top: int = 10,
    title: str | None = None,
) -> LakeSummary: ...
def bronze_progress(
    lake: str,
    namespace: str = "ridehail",
    storage_options: dict[str, str] | None = None,
    *,
    model: str | os.PathLike[str] | None = None,
) -> BronzeProgress: ...
def validate_model(
    model: str | os.PathLike[str],
    lake: str | None = None,
    namespace: str = "ridehail",
    storage_options: dict[str, str] | None = None,
) -> list[str]: ...  # problems, each "file: line N: what to change"; [] when the model fits
def model_schema() -> dict[str, object]: ...  # the JSON Schema of model files
def maintain(
    lake: str,
    namespace: str = "ridehail",
    storage_options: dict[str, str] | None = None,
    *,
    model: str | os.PathLike[str] | None = None,
    retention_hours: float = 168.0,  # delete files out of a table for longer than this
    log_retention_hours: float = 720.0,  # remove older log entries, within what markers need
    target_file_mb: int = 128,
    compact: bool = True,
    vacuum: bool = True,
    pushgateway_url: str | None = None,
    metrics_file: str | os.PathLike[str] | None = None,
) -> MaintenanceReport: ...
def export_gold_parquet(
    lake: str, dir: str | os.PathLike[str], namespace: str = "ridehail", storage_options: dict[str, str] | None = None
) -> list[ExportedTable]: ...
def publish_postgres(
    lake: str,
    dsn: str | None = None,
    schema: str = "gold",
    namespace: str = "ridehail",
    storage_options: dict[str, str] | None = None,
) -> list[PublishedTable]: ...
def export_features(
    lake: str, namespace: str = "ridehail", storage_options: dict[str, str] | None = None
) -> list[FeatureFile]: ...
