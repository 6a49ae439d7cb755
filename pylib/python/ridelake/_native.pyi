from typing import TypedDict

import polars as pl

class SilverReport(TypedDict):
    users_versions: tuple[int | None, int]
    rides_versions: tuple[int | None, int]
    rows_read: int
    users_upserted: int
    users_deleted: int
    rides_upserted: int
    rides_deleted: int
    quarantined: int
    pending: int
    released: int
    oldest_pending_us: int | None
    partitions_rewritten: int
    noop: bool

class GoldReport(TypedDict):
    silver_versions: tuple[int | None, int]
    days_recomputed: int
    rows_read: int
    noop: bool

class RidelakeError(Exception): ...
class MissingTableError(RidelakeError): ...
class StorageError(RidelakeError): ...
class ConfigError(RidelakeError): ...
class DataError(RidelakeError): ...

def build_silver(lake: str, namespace: str = "ridehail", storage_options: dict[str, str] | None = None) -> SilverReport: ...
def build_gold(lake: str, namespace: str = "ridehail", storage_options: dict[str, str] | None = None) -> GoldReport: ...
def read_table(
    lake: str, layer: str, table: str, namespace: str = "ridehail", storage_options: dict[str, str] | None = None
) -> pl.DataFrame: ...
