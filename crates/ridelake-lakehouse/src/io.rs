//! Delta I/O for the silver and gold builders.
//!
//! - Reads are by file: the caller says which files (new bronze files, touched partitions), and
//!   each file's rows come back in the table's current schema (columns added later are null,
//!   partition values restored), as one Polars frame. Our tables have no deletion vectors and no
//!   column mapping, so reading their Parquet files is exact.
//! - Files are read concurrently (one task per file, as many at once as there are cores) and
//!   come back in the order asked.
//! - Every write carries `txn` markers (`app_id`, `version`) naming the input versions it
//!   reflects, in the same commit as the data: a builder that reads its markers back knows
//!   exactly what it already did.
//! - A write to an existing table is one commit of its new files and the removal of the files it
//!   replaces (every file, or those of the replaced partitions, known from the log): nothing is
//!   scanned to find or check them. Partitioned writes encode their partitions on all cores.
//! - A write has two halves ([`Staged`]): encoding rows into files, as many times as there are
//!   slices of work, and one commit of all of them. [`write`] does both for one frame.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, RecordBatch, StringArray, new_null_array};
use deltalake::arrow::compute::{CastOptions, cast, cast_with_options};
use deltalake::arrow::datatypes::{DataType, Schema, SchemaRef};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};
use deltalake::kernel::{Action, Add, MetadataExt, StructType, Transaction};
use deltalake::logstore::ObjectStoreRef;
use deltalake::logstore::object_store::path::Path;
// ParquetObjectReader is deprecated in parquet 59 in favour of a hand-written AsyncFileReader; it
// still works and is what delta-rs 1.1 itself uses.
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use deltalake::parquet::basic::Compression as ParquetCompression;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::schema::types::ColumnPath;
#[allow(deprecated)]
use deltalake::parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::{StreamExt, TryStreamExt};
use polars::prelude::{DataFrame, IntoLazy, col, cols, lit};
use url::Url;

use crate::arrow_bridge::{df_to_record_batches, record_batches_to_df};
use crate::error::{LakehouseError, PolarsContext, Result};
use crate::keys::{KeyRange, Keys};

/// A data file of a table and its partition values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataFile {
    /// Path relative to the table root.
    pub path: String,
    /// Partition column → value (as Delta stores it, a string or null).
    pub partition: Vec<(String, Option<String>)>,
    /// The least and greatest `id` of the file from its Delta statistics, when recorded: a key
    /// outside this range is not in the file.
    pub id_range: Option<KeyRange>,
    /// Rows in the file, from its Delta statistics, when recorded.
    pub rows: Option<u64>,
    /// Rows whose `unlinked` column (silver rides, when the model accepts a link) is set, from
    /// the file's Delta statistics, when recorded.
    pub unlinked: Option<u64>,
}

impl DataFile {
    /// A file a write staged, by its add action's path (percent-encoded, relative to the table
    /// root), before any commit lists it: no partition values or statistics are known.
    pub fn staged(add_path: &str) -> DataFile {
        let path = percent_encoding::percent_decode_str(add_path).decode_utf8().map_or_else(|_| add_path.to_owned(), |p| p.into_owned());
        DataFile { path, partition: Vec::new(), id_range: None, rows: None, unlinked: None }
    }

    /// The `(year, month, day)` partition the file belongs to, when the table is partitioned so.
    pub fn day(&self) -> Option<(i32, i32, i32)> {
        day_of(&self.partition)
    }

    /// Whether the file may hold one of `keys`: false only when its statistics prove that it
    /// does not.
    pub fn may_hold_any(&self, keys: &Keys) -> bool {
        match &self.id_range {
            None => !keys.is_empty(),
            Some(range) => keys.any_within(range),
        }
    }
}

/// The `(year, month, day)` of a file's partition values, when it has them.
fn day_of(partition: &[(String, Option<String>)]) -> Option<(i32, i32, i32)> {
    let value = |k: &str| partition.iter().find(|(name, _)| name == k).and_then(|(_, v)| v.as_deref()?.parse::<i32>().ok());
    Some((value("year")?, value("month")?, value("day")?))
}

/// The range of `id` in a file's Delta statistics JSON.
fn id_range(stats: Option<String>) -> Option<KeyRange> {
    let stats: serde_json::Value = serde_json::from_str(&stats?).ok()?;
    KeyRange::from_stats(&stats, "id")
}

/// Rows whose `column` is not null, from a file's statistics JSON (`numRecords` less the column's
/// `nullCount`), when both are recorded.
fn set_rows(stats: Option<String>, column: &str) -> Option<u64> {
    let stats: serde_json::Value = serde_json::from_str(&stats?).ok()?;
    let rows = stats.get("numRecords")?.as_u64()?;
    let nulls = stats.get("nullCount")?.get(column)?.as_u64()?;
    Some(rows.saturating_sub(nulls))
}

/// What one write committed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Written {
    /// The table's name (`silver_rides`, `gold_driver_stats`, …).
    pub table: String,
    /// Table location (no credentials in it).
    pub url: String,
    /// The table's description.
    pub description: String,
    /// Rows written by this commit.
    pub rows: u64,
    /// Delta version of the commit.
    pub version: i64,
}

/// Opens a table; `None` when there is no table there yet.
pub async fn open(url: &Url, options: &HashMap<String, String>) -> Result<Option<DeltaTable>> {
    if url.to_file_path().is_ok_and(|path| !path.join("_delta_log").exists()) {
        return Ok(None);
    }
    let builder = DeltaTableBuilder::from_url(url.clone()).map_err(|e| LakehouseError::delta(url, e))?;
    match builder.with_storage_options(options.clone()).load().await {
        Ok(table) => Ok(Some(table)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(e) => Err(LakehouseError::delta(url, e)),
    }
}

/// Opens a table as of `version`.
pub async fn open_version(url: &Url, options: &HashMap<String, String>, version: u64) -> Result<DeltaTable> {
    let mut table = DeltaTableBuilder::from_url(url.clone())
        .map_err(|e| LakehouseError::delta(url, e))?
        .with_storage_options(options.clone())
        .build()
        .map_err(|e| LakehouseError::delta(url, e))?;
    table.load_version(version).await.map_err(|e| LakehouseError::delta(url, e))?;
    Ok(table)
}

/// The table's current data files.
pub fn files(table: &DeltaTable) -> Result<Vec<DataFile>> {
    let snapshot = table.snapshot().map_err(|e| LakehouseError::delta(table.table_url(), e))?;
    let mut out: Vec<DataFile> = snapshot
        .log_data()
        .iter()
        .map(|f| {
            let mut partition: Vec<(String, Option<String>)> = f.partition_values_map().into_iter().collect();
            partition.sort();
            let stats = f.stats();
            DataFile { path: f.path().to_string(), partition, id_range: id_range(stats.clone()), rows: f.num_records().map(|n| n as u64), unlinked: set_rows(stats, "unlinked") }
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Per file of `table` (by path), the range of its integer `key` column when its Delta
/// statistics prove that every row's key lies in it ([`proven_key_range`]). A file missing here
/// may hold any key.
pub fn integer_key_ranges(table: &DeltaTable, key: &str) -> Result<HashMap<String, (i64, i64)>> {
    let snapshot = table.snapshot().map_err(|e| LakehouseError::delta(table.table_url(), e))?;
    let mut out = HashMap::new();
    for f in snapshot.log_data().iter() {
        let Some(stats) = f.stats().and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok()) else { continue };
        if let Some(range) = proven_key_range(&stats, key) {
            out.insert(f.path().to_string(), range);
        }
    }
    Ok(out)
}

/// The range of integer column `key` in a file's statistics JSON, when they prove every row's
/// key lies in it: the range is recorded and the key is never null. (A key bronze could not
/// store, and rescued, is null in the column: a file with one is read. Text ranges are left
/// out: a writer may truncate text statistics.)
fn proven_key_range(stats: &serde_json::Value, key: &str) -> Option<(i64, i64)> {
    if stats.get("nullCount")?.get(key)?.as_u64()? != 0 {
        return None;
    }
    match KeyRange::from_stats(stats, key)? {
        KeyRange::Int(min, max) => Some((min, max)),
        KeyRange::Text(..) => None,
    }
}

/// The newest value of the timestamp `column` among `table`'s active files, from their Delta
/// statistics (`maxValues`, kept to the millisecond), in microseconds since the epoch; and the
/// files whose statistics do not say (their rows must be read to know).
pub fn newest_by_statistics(table: &DeltaTable, column: &str) -> Result<(Option<i64>, Vec<DataFile>)> {
    let snapshot = table.snapshot().map_err(|e| LakehouseError::delta(table.table_url(), e))?;
    let (mut newest, mut unknown) = (None::<i64>, Vec::new());
    for f in snapshot.log_data().iter() {
        if f.num_records() == Some(0) {
            continue;
        }
        match max_timestamp(f.stats(), column) {
            Some(micros) => newest = Some(newest.map_or(micros, |n| n.max(micros))),
            None => {
                let mut partition: Vec<(String, Option<String>)> = f.partition_values_map().into_iter().collect();
                partition.sort();
                unknown.push(DataFile { path: f.path().to_string(), partition, id_range: None, rows: f.num_records().map(|n| n as u64), unlinked: None });
            }
        }
    }
    Ok((newest, unknown))
}

/// Per file of `table` (by path), the least and greatest value of its timestamp `column` (µs,
/// kept to the millisecond, which never moves a value to another day) when its Delta statistics
/// record them. A file missing here may hold any value.
pub fn timestamp_ranges(table: &DeltaTable, column: &str) -> Result<HashMap<String, (i64, i64)>> {
    let snapshot = table.snapshot().map_err(|e| LakehouseError::delta(table.table_url(), e))?;
    let mut out = HashMap::new();
    for f in snapshot.log_data().iter() {
        let Some(stats) = f.stats().and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok()) else { continue };
        if let (Some(min), Some(max)) = (timestamp_stat(&stats, "minValues", column), timestamp_stat(&stats, "maxValues", column)) {
            out.insert(f.path().to_string(), (min, max));
        }
    }
    Ok(out)
}

/// `maxValues` of a timestamp `column` in a file's statistics JSON (µs), when recorded.
fn max_timestamp(stats: Option<String>, column: &str) -> Option<i64> {
    timestamp_stat(&serde_json::from_str(&stats?).ok()?, "maxValues", column)
}

/// A timestamp `column`'s value under `which` (`minValues`, `maxValues`) of a file's statistics
/// JSON (µs), when recorded: Delta writes `2026-11-30T10:00:00.123Z` (UTC) or, for a timestamp
/// without zone, `2026-11-30 10:00:00.123`.
fn timestamp_stat(stats: &serde_json::Value, which: &str, column: &str) -> Option<i64> {
    let text = stats.get(which)?.get(column)?.as_str()?;
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(at.timestamp_micros());
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok().map(|at| at.and_utc().timestamp_micros())
}

/// The active files of `table` that may hold a null in `column`: those whose statistics count
/// one, or do not say.
pub fn files_with_nulls(table: &DeltaTable, column: &str) -> Result<Vec<DataFile>> {
    let snapshot = table.snapshot().map_err(|e| LakehouseError::delta(table.table_url(), e))?;
    let paths: BTreeSet<String> =
        snapshot.log_data().iter().filter(|f| null_count(f.stats(), column) != Some(0)).map(|f| f.path().to_string()).collect();
    Ok(files(table)?.into_iter().filter(|f| paths.contains(&f.path)).collect())
}

/// The files of `table` that may hold a value in `column`: those whose statistics do not count
/// every row of theirs null in it (or count nothing).
pub fn files_with_values(table: &DeltaTable, column: &str) -> Result<Vec<DataFile>> {
    let snapshot = table.snapshot().map_err(|e| LakehouseError::delta(table.table_url(), e))?;
    let paths: BTreeSet<String> = snapshot
        .log_data()
        .iter()
        .filter(|f| match (null_count(f.stats(), column), f.num_records()) {
            (Some(nulls), Some(rows)) => nulls < rows as u64,
            _ => true,
        })
        .map(|f| f.path().to_string())
        .collect();
    Ok(files(table)?.into_iter().filter(|f| paths.contains(&f.path)).collect())
}

/// `nullCount` of `column` in a file's statistics JSON, when recorded.
fn null_count(stats: Option<String>, column: &str) -> Option<u64> {
    let stats: serde_json::Value = serde_json::from_str(&stats?).ok()?;
    stats.get("nullCount")?.get(column)?.as_u64()
}

/// The last `version` recorded by `app_id` in a `txn` action, if any.
pub async fn marker(table: &DeltaTable, app_id: &str) -> Result<Option<i64>> {
    let snapshot = table.snapshot().map_err(|e| LakehouseError::delta(table.table_url(), e))?;
    snapshot
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| LakehouseError::delta(table.table_url(), e))
}

/// Whether every commit of `table` after version `from`, up to its current version, changed no
/// data (compaction, a table property: only `dataChange = false` files, commit infos, metadata
/// and protocol), read from the log. Our data writes always carry `txn` markers.
pub async fn data_unchanged_since(table: &DeltaTable, from: i64) -> Result<bool> {
    let store = table.log_store();
    let url = table.table_url();
    let upto = table.version().unwrap_or_default() as i64;
    for version in from + 1..=upto {
        let Some(bytes) = store.read_commit_entry(version as u64).await.map_err(|e| LakehouseError::delta(url, e))? else { return Ok(false) };
        let actions = deltalake::logstore::get_actions(version as u64, &bytes).map_err(|e| LakehouseError::delta(url, e))?;
        let quiet = actions.iter().all(|action| match action {
            Action::CommitInfo(_) | Action::Metadata(_) | Action::Protocol(_) => true,
            Action::Add(add) => !add.data_change,
            Action::Remove(remove) => !remove.data_change,
            _ => false,
        });
        if !quiet {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Opens a table and reads its marker `app_id` (both `None` when there is no table yet).
pub async fn open_with_marker(url: &Url, options: &HashMap<String, String>, app_id: &str) -> Result<(Option<DeltaTable>, Option<i64>)> {
    match open(url, options).await? {
        Some(table) => {
            let version = marker(&table, app_id).await?;
            Ok((Some(table), version))
        }
        None => Ok((None, None)),
    }
}

/// The table's Arrow schema.
pub fn arrow_schema(table: &DeltaTable) -> Result<SchemaRef> {
    Ok(table.snapshot().map_err(|e| LakehouseError::delta(table.table_url(), e))?.snapshot().arrow_schema())
}

/// Reads `files` of `table` into one frame in the table's schema.
pub async fn read_files(table: &DeltaTable, files: &[DataFile]) -> Result<DataFrame> {
    read_columns(table, files, None).await
}

/// Reads `files` of `table`, only `columns` when given (partition columns may be among them).
pub async fn read_columns(table: &DeltaTable, files: &[DataFile], columns: Option<&[&str]>) -> Result<DataFrame> {
    let schema = projected_schema(table, columns)?;
    let mut batches = Vec::new();
    for file_batches in read_batches(table, files, &schema).await? {
        batches.extend(file_batches);
    }
    if batches.is_empty() {
        batches.push(RecordBatch::new_empty(schema));
    }
    record_batches_to_df(&batches).step("reading files")
}

/// Reads `files` of `table` into one frame per file (same order), only `columns` when given.
pub async fn read_each(table: &DeltaTable, files: &[DataFile], columns: Option<&[&str]>) -> Result<Vec<DataFrame>> {
    let schema = projected_schema(table, columns)?;
    frames_of(read_batches(table, files, &schema).await?, &schema)
}

/// Starts reading `file` of `table` (only `columns`) in a task of its own, so that the caller
/// can work on the previous file meanwhile; the handle gives the file's frame.
pub fn start_read(table: &DeltaTable, file: &DataFile, columns: &[&str]) -> Result<tokio::task::JoinHandle<Result<DataFrame>>> {
    let schema = projected_schema(table, Some(columns))?;
    let (store, url, file) = (table.object_store(), table.table_url().clone(), file.clone());
    Ok(tokio::spawn(async move {
        let batches = read_file(store, &url, &file, &schema, None).await?;
        let mut frames = frames_of(vec![batches], &schema)?;
        frames.pop().ok_or_else(|| LakehouseError::Task("a file read gave no frame".into()))
    }))
}

/// One frame per file's batches (an empty frame in `schema` for a file without rows).
fn frames_of(per_file: Vec<Vec<RecordBatch>>, schema: &SchemaRef) -> Result<Vec<DataFrame>> {
    let mut frames = Vec::with_capacity(per_file.len());
    for mut file_batches in per_file {
        if file_batches.is_empty() {
            file_batches.push(RecordBatch::new_empty(schema.clone()));
        }
        frames.push(record_batches_to_df(&file_batches).step("reading files")?);
    }
    Ok(frames)
}

/// Reads `files` of `table` as Arrow batches in the table's schema (file order kept).
pub async fn read_arrow(table: &DeltaTable, files: &[DataFile]) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let schema = projected_schema(table, None)?;
    let batches = read_batches(table, files, &schema).await?.into_iter().flatten().collect();
    Ok((nullable(&schema), batches))
}

/// The names among `wanted` that `table` has, in `wanted`'s order.
pub fn present_columns<'a>(table: &DeltaTable, wanted: &[&'a str]) -> Result<Vec<&'a str>> {
    let schema = arrow_schema(table)?;
    Ok(wanted.iter().copied().filter(|name| schema.field_with_name(name).is_ok()).collect())
}

fn projected_schema(table: &DeltaTable, columns: Option<&[&str]>) -> Result<SchemaRef> {
    let full = arrow_schema(table)?;
    let Some(names) = columns else { return Ok(full) };
    let mut fields = Vec::new();
    for name in names {
        let field = full.field_with_name(name).map_err(|_| LakehouseError::Schema {
            table: table.table_url().to_string(),
            message: format!("has no column {name}"),
        })?;
        fields.push(field.clone());
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Reads `rows` (positions, ascending and distinct) of each of `files` of `table`, only
/// `columns`: one frame per file, its rows in the order given. The Parquet reader skips the other
/// rows instead of materializing them.
pub async fn read_rows_each(table: &DeltaTable, files: &[(DataFile, Vec<usize>)], columns: &[&str]) -> Result<Vec<DataFrame>> {
    let schema = projected_schema(table, Some(columns))?;
    let only: Vec<DataFile> = files.iter().map(|(f, _)| f.clone()).collect();
    let rows: Vec<Option<Vec<usize>>> = files.iter().map(|(_, r)| Some(r.clone())).collect();
    frames_of(read_batches_of_rows(table, &only, &schema, rows).await?, &schema)
}

/// Every file's batches in `schema`, read concurrently (at most one file per core at a time), in
/// the order of `files`.
async fn read_batches(table: &DeltaTable, files: &[DataFile], schema: &SchemaRef) -> Result<Vec<Vec<RecordBatch>>> {
    read_batches_of_rows(table, files, schema, vec![None; files.len()]).await
}

/// [`read_batches`], each file limited to its `rows` where given.
async fn read_batches_of_rows(table: &DeltaTable, files: &[DataFile], schema: &SchemaRef, rows: Vec<Option<Vec<usize>>>) -> Result<Vec<Vec<RecordBatch>>> {
    let parallelism = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let permits = Arc::new(tokio::sync::Semaphore::new(parallelism));
    let store = table.object_store();
    let url = table.table_url().clone();
    let mut handles = Vec::with_capacity(files.len());
    for (file, rows) in files.iter().zip(rows) {
        let (store, schema, file, url, permits) = (store.clone(), schema.clone(), file.clone(), url.clone(), permits.clone());
        handles.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.map_err(|e| LakehouseError::Task(e.to_string()))?;
            read_file(store, &url, &file, &schema, rows.as_deref()).await
        }));
    }
    let mut out = Vec::with_capacity(handles.len());
    let mut pending = handles.into_iter();
    while let Some(handle) = pending.next() {
        let read = handle.await.map_err(|e| LakehouseError::Task(e.to_string())).and_then(|r| r);
        match read {
            Ok(batches) => out.push(batches),
            Err(e) => {
                pending.for_each(|rest| rest.abort());
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// The selection of `rows` (ascending, distinct) among a file's rows.
fn selection_of(rows: &[usize]) -> RowSelection {
    let mut selectors = Vec::new();
    let mut at = 0;
    for &row in rows {
        if row > at {
            selectors.push(RowSelector::skip(row - at));
        }
        match selectors.last_mut() {
            Some(last) if !last.skip && row == at => last.row_count += 1,
            _ => selectors.push(RowSelector::select(1)),
        }
        at = row + 1;
    }
    RowSelection::from(selectors)
}

async fn read_file(store: ObjectStoreRef, url: &Url, file: &DataFile, schema: &SchemaRef, rows: Option<&[usize]>) -> Result<Vec<RecordBatch>> {
    let path = Path::parse(&file.path).map_err(|e| LakehouseError::delta(url, e.into()))?;
    #[allow(deprecated)]
    let reader = ParquetObjectReader::new(store, path);
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await.map_err(|e| LakehouseError::delta(url, e.into()))?.with_batch_size(64 * 1024);
    let in_file: Vec<&str> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|name| builder.schema().field_with_name(name).is_ok())
        .collect();
    let mask = ProjectionMask::columns(builder.parquet_schema(), in_file);
    let mut builder = builder.with_projection(mask);
    if let Some(rows) = rows {
        builder = builder.with_row_selection(selection_of(rows));
    }
    let stream = builder.build().map_err(|e| LakehouseError::delta(url, e.into()))?;
    let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(|e| LakehouseError::delta(url, e.into()))?;
    batches.iter().map(|batch| conform(batch, schema, &file.partition)).collect()
}

/// The value of key-value metadata `key` in the Parquet footer of each of `files` (same order):
/// reads the footers only, concurrently.
pub async fn footer_values(table: &DeltaTable, files: &[DataFile], key: &str) -> Result<Vec<Option<String>>> {
    let store = table.object_store();
    let url = table.table_url().clone();
    let reads = futures::stream::iter(files.iter().cloned()).map(|file| {
        let (store, url, key) = (store.clone(), url.clone(), key.to_owned());
        async move {
            let path = Path::parse(&file.path).map_err(|e| LakehouseError::delta(&url, e.into()))?;
            #[allow(deprecated)]
            let reader = ParquetObjectReader::new(store, path);
            let builder = ParquetRecordBatchStreamBuilder::new(reader).await.map_err(|e| LakehouseError::delta(&url, e.into()))?;
            let value = builder
                .metadata()
                .file_metadata()
                .key_value_metadata()
                .and_then(|pairs| pairs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.clone()));
            Ok::<_, LakehouseError>(value)
        }
    });
    reads.buffered(8).try_collect().await
}

/// Rows in the table: from the files' statistics, or by reading one column where they are missing.
pub async fn row_count(table: &DeltaTable) -> Result<u64> {
    let all = files(table)?;
    let mut total: u64 = all.iter().filter_map(|f| f.rows).sum();
    let unknown: Vec<DataFile> = all.into_iter().filter(|f| f.rows.is_none()).collect();
    if !unknown.is_empty() {
        let schema = arrow_schema(table)?;
        if let Some(first) = schema.fields().first() {
            total += read_columns(table, &unknown, Some(&[first.name().as_str()])).await?.height() as u64;
        }
    }
    Ok(total)
}

/// Reads the whole table (empty frame with its schema when it has no files).
pub async fn read_all(table: &DeltaTable) -> Result<DataFrame> {
    let all = files(table)?;
    read_files(table, &all).await
}

/// Puts a file's batch in the table's schema: missing columns null, partition values restored,
/// types cast to the table's.
fn conform(batch: &RecordBatch, schema: &SchemaRef, partition: &[(String, Option<String>)]) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = if let Some(array) = batch.column_by_name(field.name()) {
            array.clone()
        } else if let Some((_, value)) = partition.iter().find(|(k, _)| k == field.name()) {
            let strings: ArrayRef = Arc::new(StringArray::from(vec![value.as_deref(); rows]));
            strings
        } else {
            new_null_array(field.data_type(), rows)
        };
        let column = if column.data_type() == field.data_type() { column } else { cast(&column, field.data_type())? };
        columns.push(column);
    }
    Ok(RecordBatch::try_new(nullable(schema), columns)?)
}

/// `schema` with every field nullable (what reads return: a column added later is null in older files).
fn nullable(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect::<Vec<_>>()))
}

/// Properties of our commits: `markers` as `txn` actions, `metadata` in the commit info. Log
/// cleanup is left to [`crate::maintain`], which knows which versions markers still need.
pub(crate) fn commit_properties(markers: &[(String, i64)], metadata: serde_json::Map<String, serde_json::Value>) -> CommitProperties {
    let mut properties = CommitProperties::default().with_metadata(metadata).with_cleanup_expired_logs(Some(false));
    for (app_id, version) in markers {
        properties = properties.with_application_transaction(Transaction::new(app_id, *version));
    }
    properties
}

/// How a write replaces existing data.
#[derive(Debug, Clone)]
pub enum WriteMode {
    /// Add the rows.
    Append,
    /// Replace the whole table's content.
    Overwrite,
    /// Replace exactly these partitions (`year`, `month`, `day` values).
    ReplacePartitions(BTreeSet<(i32, i32, i32)>),
    /// Replace exactly these files.
    ReplaceFiles {
        /// Paths relative to the table root, as [`DataFile::path`].
        paths: BTreeSet<String>,
        /// The rows replaced, as SQL (for the commit's description).
        predicate: String,
    },
}

/// Writes `df` to the table at `url` in one commit with `markers`; creates the table (with its
/// name, description and partitioning) on first write. Returns what was committed. (The two
/// halves, [`Staged::stage`] and [`Staged::commit`], in one call.)
#[allow(clippy::too_many_arguments)]
pub async fn write(
    url: &Url,
    options: &HashMap<String, String>,
    df: &DataFrame,
    mode: WriteMode,
    partition_by: &[&str],
    markers: &[(String, i64)],
    name: &str,
    description: &str,
) -> Result<Written> {
    let target = Target { url, options, partition_by, name, description };
    let mut staged = Staged::open(&target, df, matches!(mode, WriteMode::Overwrite)).await?;
    staged.stage(df).await?;
    staged.commit(&mode, markers).await
}

/// Where a write goes: the table's location and what it is created with.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Table location.
    pub url: &'a Url,
    /// Storage options (credentials, endpoint).
    pub options: &'a HashMap<String, String>,
    /// Partition columns of a new table.
    pub partition_by: &'a [&'a str],
    /// The table's name (`silver_rides`, …).
    pub name: &'a str,
    /// The table's description.
    pub description: &'a str,
}

/// A write split in its two halves: rows are encoded as new Parquet files of the table as they
/// come ([`Staged::stage`], any number of times, each call its own files, nothing committed),
/// then all of them are committed in one transaction with the removals and markers of the write
/// ([`Staged::commit`]). Files staged by a run that dies before its commit are never referenced
/// (vacuum deletes them), so a slice of work can be staged, and retried, anywhere.
pub struct Staged {
    url: Url,
    options: HashMap<String, String>,
    name: String,
    description: String,
    table: DeltaTable,
    /// The schema files are written in: the table's, or the rows' own when an overwrite changes
    /// the table's columns.
    schema: SchemaRef,
    /// The table's new schema, when an overwrite changes its columns: the commit carries it.
    new_schema: Option<StructType>,
    adds: Vec<Add>,
    rows: u64,
}

impl Staged {
    /// Opens the table at `target` for a write of rows shaped like `like` (its columns; no rows
    /// are needed). A missing table is created first, empty, with its name, description,
    /// partitioning and the comments of the columns we know (a crash after that leaves an empty
    /// table without markers: a rerun redoes it). When the write `overwrites` the table, the rows
    /// may bring other columns than the table has (a rebuild by a newer ridelake): the files are
    /// then written in the rows' schema and the commit replaces the table's.
    pub async fn open(target: &Target<'_>, like: &DataFrame, overwrites: bool) -> Result<Staged> {
        let url = target.url;
        if let Ok(path) = url.to_file_path() {
            std::fs::create_dir_all(&path).map_err(|e| LakehouseError::delta(url, e.into()))?;
        }
        let table = match open(url, target.options).await? {
            Some(t) => t,
            None => DeltaTableBuilder::from_url(url.clone())
                .map_err(|e| LakehouseError::delta(url, e))?
                .with_storage_options(target.options.clone())
                .build()
                .map_err(|e| LakehouseError::delta(url, e))?,
        };
        let table = if table.version().is_some() {
            table
        } else {
            let empty = df_to_record_batches(&like.clear()).step("preparing the write")?;
            let mut builder = table
                .write(with_comments(empty, |column| crate::layout::column_comment(target.name, column))?)
                .with_table_name(target.name)
                .with_description(target.description)
                .with_save_mode(SaveMode::Append)
                .with_configuration([(crate::maintain::LOG_CLEANUP_PROPERTY, Some("false"))]);
            if !target.partition_by.is_empty() {
                builder = builder.with_partition_columns(target.partition_by.iter().map(|s| s.to_string()));
            }
            match builder.await {
                Ok(created) => created,
                // Another writer created it first (workers of one run stage at once): use theirs.
                Err(e) => open(url, target.options).await?.filter(|t| t.version().is_some()).ok_or_else(|| LakehouseError::delta(url, e))?,
            }
        };
        let (schema, new_schema) = if overwrites && !same_columns(&arrow_schema(&table)?, like) {
            // The rows' schema as Delta types, and back: the files get Delta's Arrow types. The
            // columns keep their comments (a model change can add or remove columns).
            let batches = with_comments(df_to_record_batches(&like.clear()).step("preparing the write")?, |column| crate::layout::column_comment(target.name, column))?;
            let rows_schema = batches.first().map(|b| b.schema()).ok_or_else(|| LakehouseError::Schema { table: url.to_string(), message: "rows without a schema".into() })?;
            let delta: StructType = rows_schema.as_ref().try_into_kernel().map_err(|e| LakehouseError::delta(url, e.into()))?;
            let arrow: Schema = (&delta).try_into_arrow().map_err(|e| LakehouseError::delta(url, e.into()))?;
            (Arc::new(arrow), Some(delta))
        } else {
            (arrow_schema(&table)?, None)
        };
        Ok(Staged {
            url: url.clone(),
            options: target.options.clone(),
            name: target.name.to_owned(),
            description: target.description.to_owned(),
            table,
            schema,
            new_schema,
            adds: Vec::new(),
            rows: 0,
        })
    }

    /// The worker half: writes `df` as new files of the table (not committed) and keeps their
    /// add actions for [`Staged::commit`]. Partitioned rows are encoded on all cores.
    pub async fn stage(&mut self, df: &DataFrame) -> Result<()> {
        if df.height() == 0 {
            return Ok(());
        }
        let adds = encode(&self.table, &self.url, &self.options, &self.schema, self.new_schema.is_some(), df).await?;
        self.adds.extend(adds);
        self.rows += df.height() as u64;
        Ok(())
    }

    /// Rows staged so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The driver half: commits every staged file, the removal of the files `mode` replaces
    /// (known from the log: every file, or those of the replaced partitions, so no data is
    /// scanned), the new schema if any and the `markers`, in one transaction.
    pub async fn commit(self, mode: &WriteMode, markers: &[(String, i64)]) -> Result<Written> {
        let mut metadata = serde_json::Map::new();
        metadata.insert("ridelake.rows".into(), serde_json::json!(self.rows));
        let version = commit_actions(&self.table, &self.url, self.adds, self.new_schema, mode, markers, metadata).await?;
        Ok(Written { table: self.name, url: self.url.to_string(), description: self.description, rows: self.rows, version })
    }

    /// What was staged, to hand to the process that commits ([`commit_staged`]).
    pub fn into_files(self) -> StagedFiles {
        StagedFiles { adds: self.adds, rows: self.rows, schema: self.new_schema }
    }
}

/// Files staged for one table by a worker ([`Staged::into_files`]), not committed: their add
/// actions, their rows, and the table's new schema when the write changes its columns. Plain
/// data (JSON through serde), so that it can come back from another process or machine.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct StagedFiles {
    /// The files' add actions (path, size, partition values, statistics).
    pub adds: Vec<Add>,
    /// Rows in the files.
    pub rows: u64,
    /// The table's schema after the write, when it changes the columns.
    pub schema: Option<StructType>,
}

/// The driver half of a write whose files several workers staged: commits every part's files,
/// the removal of the files `mode` replaces (as of the table's latest version), the new schema
/// if any and the `markers`, in one transaction. The table must exist (a worker's
/// [`Staged::open`] created it).
pub async fn commit_staged(target: &Target<'_>, parts: Vec<StagedFiles>, mode: &WriteMode, markers: &[(String, i64)]) -> Result<Written> {
    let url = target.url;
    let table = open(url, target.options).await?.filter(|t| t.version().is_some()).ok_or_else(|| LakehouseError::MissingTable(url.to_string()))?;
    // A local folder is only shared with workers on this machine: a file another machine wrote
    // into its own folder of that name must not be committed here.
    if let Ok(root) = url.to_file_path() {
        if let Some(missing) = parts.iter().flat_map(|p| &p.adds).find(|add| !root.join(DataFile::staged(&add.path).path).exists()) {
            return Err(LakehouseError::Task(format!(
                "a worker staged {} for {}, which is not there: workers must write to the same lake (a local folder is only shared on this machine)",
                missing.path, target.name
            )));
        }
    }
    let mut schema: Option<StructType> = None;
    let (mut adds, mut rows) = (Vec::new(), 0u64);
    for (k, part) in parts.into_iter().enumerate() {
        if k > 0 && part.schema != schema {
            return Err(LakehouseError::Schema { table: url.to_string(), message: "the workers of one write staged files in different schemas (the table changed during the run)".into() });
        }
        schema = part.schema;
        adds.extend(part.adds);
        rows += part.rows;
    }
    let mut metadata = serde_json::Map::new();
    metadata.insert("ridelake.rows".into(), serde_json::json!(rows));
    let version = commit_actions(&table, url, adds, schema, mode, markers, metadata).await?;
    Ok(Written { table: target.name.to_owned(), url: url.to_string(), description: target.description.to_owned(), rows, version })
}

/// Whether the table's columns are `df`'s (by name, in any order, each of the same kind of type:
/// a kept source column whose type the source widened is not).
fn same_columns(schema: &SchemaRef, df: &DataFrame) -> bool {
    use crate::model::TypeFamily;
    let mut table: Vec<(&str, TypeFamily)> = schema.fields().iter().map(|f| (f.name().as_str(), TypeFamily::of(f.data_type()))).collect();
    let mut frame: Vec<(&str, TypeFamily)> = df.columns().iter().map(|c| (c.name().as_str(), TypeFamily::of_polars(c.dtype()))).collect();
    table.sort_unstable_by_key(|(name, _)| *name);
    frame.sort_unstable_by_key(|(name, _)| *name);
    // (a column of nulls, or of a type without a family, fits any)
    table.len() == frame.len() && table.iter().zip(&frame).all(|((a, x), (b, y))| a == b && (x == y || *x == TypeFamily::Other || *y == TypeFamily::Other))
}

/// The column a partitioned write tags its rows with to split them across the cores (dropped
/// before writing; a source column kept in silver may not take the name).
pub(crate) const WRITER_COLUMN: &str = "_ridelake_writer";

/// Rows from which a partitioned write is split across the cores.
const PARALLEL_WRITE_ROWS: usize = 100_000;

/// Parquet settings of silver and gold files: dictionary encoding only for text columns, where
/// values repeat (status, city, currency, …); ids, timestamps and amounts are nearly unique, and
/// trying a dictionary on them costs CPU before the writer falls back to plain encoding.
pub(crate) fn writer_properties(schema: &SchemaRef) -> WriterProperties {
    let mut builder = WriterProperties::builder().set_compression(ParquetCompression::SNAPPY).set_dictionary_enabled(false);
    for field in schema.fields() {
        if matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
            builder = builder.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), true);
        }
    }
    builder.build()
}

/// `df` split into up to one frame per core, each holding whole day partitions (a partition's
/// rows must reach one writer, or it would get one file per writer).
fn split_by_partition(df: &DataFrame, partitioned: bool) -> Result<Vec<DataFrame>> {
    let groups = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(8) as i32;
    if !partitioned || df.height() < PARALLEL_WRITE_ROWS || groups < 2 {
        return Ok(vec![df.clone()]);
    }
    let group = (col("year") * lit(372) + col("month") * lit(31) + col("day")) % lit(groups);
    let tagged = df.clone().lazy().with_column(group.cast(polars::prelude::DataType::Int32).alias(WRITER_COLUMN)).collect().step("splitting the write")?;
    (0..groups)
        .map(|g| tagged.clone().lazy().filter(col(WRITER_COLUMN).eq(lit(g))).drop(cols([WRITER_COLUMN])).collect().step("splitting the write"))
        .collect()
}

/// Writes `df` as new files of `table` in `schema` (the table's, or `own_schema` when the rows
/// bring a new schema), none committed: their add actions. Partitioned writes encode their
/// partitions on all cores.
async fn encode(table: &DeltaTable, url: &Url, options: &HashMap<String, String>, schema: &SchemaRef, own_schema: bool, df: &DataFrame) -> Result<Vec<Add>> {
    let err = |e: DeltaTableError| LakehouseError::delta(url, e);
    let snapshot = table.snapshot().map_err(err)?;
    let partition_columns = snapshot.metadata().partition_columns().to_vec();
    let partitioned = !partition_columns.is_empty();
    let mut tasks = Vec::new();
    for part in split_by_partition(df, partitioned)? {
        let writer = if own_schema {
            RecordBatchWriter::try_new(url.as_str(), schema.clone(), Some(partition_columns.clone()), Some(options.clone())).map_err(err)?
        } else {
            RecordBatchWriter::for_table(table).map_err(err)?
        };
        let schema = writer.arrow_schema();
        let mut writer = writer.with_writer_properties(writer_properties(&schema));
        let batches = df_to_record_batches(&part).step("preparing the write")?;
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            for batch in &batches {
                writer.write(cast_to(batch, &schema, &url)?).await.map_err(|e| LakehouseError::delta(&url, e))?;
            }
            writer.flush().await.map_err(|e| LakehouseError::delta(&url, e))
        }));
    }
    let mut adds = Vec::new();
    for task in tasks {
        adds.extend(task.await.map_err(|e| LakehouseError::Task(e.to_string()))??);
    }
    Ok(adds)
}

/// Commits `adds` to `table` with the removal of the files `mode` replaces, the table's new
/// schema if any, and the `markers`, in one commit. The files to replace are known from the log
/// (whole partitions, or every file), so no data is scanned to find or check them.
async fn commit_actions(
    table: &DeltaTable,
    url: &Url,
    adds: Vec<Add>,
    new_schema: Option<StructType>,
    mode: &WriteMode,
    markers: &[(String, i64)],
    metadata: serde_json::Map<String, serde_json::Value>,
) -> Result<i64> {
    let err = |e: DeltaTableError| LakehouseError::delta(url, e);
    let snapshot = table.snapshot().map_err(err)?;
    let mut actions: Vec<Action> = Vec::with_capacity(adds.len() + 1);
    if let Some(schema) = &new_schema {
        actions.push(Action::Metadata(snapshot.metadata().clone().with_schema(schema).map_err(|e| err(e.into()))?));
    }
    actions.extend(adds.into_iter().map(Action::Add));
    for file in snapshot.log_data().iter() {
        let replaced = match mode {
            WriteMode::Append => false,
            WriteMode::Overwrite => true,
            WriteMode::ReplacePartitions(parts) => {
                let partition: Vec<(String, Option<String>)> = file.partition_values_map().into_iter().collect();
                day_of(&partition).is_some_and(|day| parts.contains(&day))
            }
            WriteMode::ReplaceFiles { paths, .. } => paths.contains(file.path().as_ref()),
        };
        if replaced {
            actions.push(Action::Remove(file.remove_action(true)));
        }
    }
    let (save_mode, predicate) = match mode {
        WriteMode::Append => (SaveMode::Append, None),
        WriteMode::ReplacePartitions(parts) if parts.is_empty() => (SaveMode::Append, None),
        WriteMode::Overwrite => (SaveMode::Overwrite, None),
        WriteMode::ReplacePartitions(parts) => (SaveMode::Overwrite, Some(partitions_predicate(parts))),
        WriteMode::ReplaceFiles { paths, .. } if paths.is_empty() => (SaveMode::Append, None),
        WriteMode::ReplaceFiles { predicate, .. } => (SaveMode::Overwrite, Some(predicate.clone())),
    };
    let partition_by = snapshot.metadata().partition_columns().to_vec();
    let operation =
        DeltaOperation::Write { mode: save_mode, partition_by: (!partition_by.is_empty()).then_some(partition_by), predicate };
    let finalized = CommitBuilder::from(commit_properties(markers, metadata))
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await
        .map_err(err)?;
    Ok(finalized.version() as i64)
}

/// The SQL predicate naming day partitions, grouped by month (for the commit's description).
fn partitions_predicate(parts: &BTreeSet<(i32, i32, i32)>) -> String {
    let mut months: std::collections::BTreeMap<(i32, i32), Vec<String>> = std::collections::BTreeMap::new();
    for (y, m, d) in parts {
        months.entry((*y, *m)).or_default().push(d.to_string());
    }
    months.iter().map(|((y, m), days)| format!("(year = {y} AND month = {m} AND day IN ({}))", days.join(", "))).collect::<Vec<_>>().join(" OR ")
}

/// `batches` with a `comment` in the metadata of each field `doc` knows (Delta keeps Arrow field
/// metadata as column metadata, where Spark and catalogs read `comment`).
fn with_comments(batches: Vec<RecordBatch>, doc: impl Fn(&str) -> Option<&'static str>) -> Result<Vec<RecordBatch>> {
    batches
        .into_iter()
        .map(|batch| {
            let fields: Vec<deltalake::arrow::datatypes::Field> = batch
                .schema()
                .fields()
                .iter()
                .map(|f| match doc(f.name()) {
                    Some(comment) => f.as_ref().clone().with_metadata(HashMap::from([("comment".to_owned(), comment.to_owned())])),
                    None => f.as_ref().clone(),
                })
                .collect();
            Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), batch.columns().to_vec())?)
        })
        .collect()
}

/// `batch` with the columns and types of `schema` (of the table at `table`), by name (Polars'
/// string and timestamp encodings become the table's). A value the table's type cannot hold
/// (text in a number column of a table written with another type) is an error naming the
/// column, never null.
pub(crate) fn cast_to(batch: &RecordBatch, schema: &SchemaRef, table: &Url) -> Result<RecordBatch> {
    let strict = CastOptions { safe: false, ..Default::default() };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = match batch.column_by_name(field.name()) {
            Some(array) => array.clone(),
            None => new_null_array(field.data_type(), batch.num_rows()),
        };
        if column.data_type() == field.data_type() {
            columns.push(column);
            continue;
        }
        // (the cast's own message would quote the value)
        let cast = cast_with_options(&column, field.data_type(), &strict).map_err(|_| LakehouseError::Schema {
            table: table.to_string(),
            message: format!(
                "column `{}` is {} in the table, and this run's {} values do not all convert to it; the table was written with another type for it: rebuild the layer",
                field.name(),
                field.data_type(),
                column.data_type()
            ),
        })?;
        columns.push(cast);
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_range_is_proven_only_for_integer_keys_never_null() {
        let stats = |key_nulls: u64, min: serde_json::Value| {
            serde_json::json!({"numRecords": 10, "nullCount": {"id": key_nulls, "_airbyte_rescued_data": 9}, "minValues": {"id": min}, "maxValues": {"id": 90}})
        };
        assert_eq!(proven_key_range(&stats(0, 7.into()), "id"), Some((7, 90)), "rescued values elsewhere do not matter: a rescued key is a null one");
        assert_eq!(proven_key_range(&stats(1, 7.into()), "id"), None, "a null key (or a rescued one) may be in any slice's rows");
        assert_eq!(proven_key_range(&stats(0, "a".into()), "id"), None, "text statistics may be truncated");
        assert_eq!(proven_key_range(&serde_json::json!({"numRecords": 10}), "id"), None, "no statistics");
        assert_eq!(proven_key_range(&serde_json::json!({"numRecords": 10, "minValues": {"id": 1}, "maxValues": {"id": 2}}), "id"), None, "nulls not counted");
    }

    #[test]
    fn writes_never_turn_a_value_into_null() {
        use deltalake::arrow::array::Int64Array;
        use deltalake::arrow::datatypes::Field;
        let table = Url::parse("file:///lake/silver/users").expect("url");
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("phone", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]));
        let batch = |phones: Vec<Option<&str>>| {
            let fields = vec![Field::new("phone", DataType::Utf8, true)];
            RecordBatch::try_new(Arc::new(Schema::new(fields)), vec![Arc::new(StringArray::from(phones)) as ArrayRef]).expect("batch")
        };
        // Convertible values convert; a column the rows lack is null.
        let cast = cast_to(&batch(vec![Some("33612"), None]), &schema, &table).expect("casts");
        let phones = cast.column(0).as_any().downcast_ref::<Int64Array>().expect("int64");
        assert_eq!(phones.iter().collect::<Vec<_>>(), [Some(33612), None]);
        assert_eq!(cast.column(1).null_count(), 2);
        match cast_to(&batch(vec![Some("33612"), Some("+33 6 12 secret")]), &schema, &table) {
            Err(LakehouseError::Schema { table: t, message }) => {
                assert!(t.contains("silver/users") && message.contains("`phone` is Int64") && !message.contains("secret"), "{message}");
            }
            other => panic!("expected a schema error, got {other:?}"),
        }
    }

    #[test]
    fn row_selections_skip_between_the_wanted_rows() {
        let selected = |rows: &[usize]| -> Vec<(bool, usize)> { Vec::from(selection_of(rows)).into_iter().map(|s| (s.skip, s.row_count)).collect() };
        assert_eq!(selected(&[0, 1, 2, 7, 9, 10]), [(false, 3), (true, 4), (false, 1), (true, 1), (false, 2)]);
        assert_eq!(selected(&[5]), [(true, 5), (false, 1)]);
        assert_eq!(selected(&[]), []);
    }

    fn file(range: Option<(i64, i64)>) -> DataFile {
        DataFile { path: "f.parquet".into(), partition: vec![], id_range: range.map(|(a, b)| KeyRange::Int(a, b)), rows: None, unlinked: None }
    }

    #[test]
    fn statistics_rule_out_only_files_that_cannot_hold_a_key() {
        let keys = Keys::Int(vec![3, 10, 42]);
        assert!(file(Some((1, 3))).may_hold_any(&keys));
        assert!(file(Some((40, 50))).may_hold_any(&keys));
        assert!(!file(Some((4, 9))).may_hold_any(&keys), "between two keys");
        assert!(!file(Some((43, 99))).may_hold_any(&keys), "above every key");
        assert!(file(None).may_hold_any(&keys), "no statistics: must be read");
        assert!(!file(Some((1, 9))).may_hold_any(&Keys::Int(vec![])));
        let text = DataFile { id_range: Some(KeyRange::Text("a".into(), "c".into())), ..file(None) };
        assert!(text.may_hold_any(&Keys::Text(vec!["b".into()])) && !text.may_hold_any(&Keys::Text(vec!["d".into()])));
    }

    #[test]
    fn replaced_partitions_are_described_by_month() {
        let parts: BTreeSet<(i32, i32, i32)> = [(2024, 1, 31), (2024, 1, 2), (2024, 2, 1)].into_iter().collect();
        assert_eq!(
            partitions_predicate(&parts),
            "(year = 2024 AND month = 1 AND day IN (2, 31)) OR (year = 2024 AND month = 2 AND day IN (1))"
        );
    }

    #[test]
    fn id_range_comes_from_the_statistics_json() {
        let stats = r#"{"numRecords":3,"minValues":{"id":7,"status":"a"},"maxValues":{"id":70},"nullCount":{"id":0}}"#;
        assert_eq!(id_range(Some(stats.into())), Some(KeyRange::Int(7, 70)));
        assert_eq!(id_range(Some(r#"{"minValues":{"id":"7a"},"maxValues":{"id":"f0"}}"#.into())), Some(KeyRange::Text("7a".into(), "f0".into())));
        assert_eq!(id_range(Some(r#"{"numRecords":3}"#.into())), None);
        assert_eq!(id_range(None), None);
        assert_eq!(set_rows(Some(r#"{"numRecords":5,"nullCount":{"id":0,"unlinked":3}}"#.into()), "unlinked"), Some(2));
        assert_eq!(set_rows(Some(stats.into()), "unlinked"), None, "not recorded: unknown");
        let times = r#"{"numRecords":2,"maxValues":{"t":"2026-11-30T10:00:00.123Z","n":"2026-11-30 10:00:01","z":"2026-11-30T11:00:00+01:00"}}"#;
        assert_eq!(max_timestamp(Some(times.into()), "t"), Some(1_796_032_800_123_000));
        assert_eq!(max_timestamp(Some(times.into()), "n"), Some(1_796_032_801_000_000), "no zone: UTC");
        assert_eq!(max_timestamp(Some(times.into()), "z"), Some(1_796_032_800_000_000));
        assert_eq!(max_timestamp(Some(times.into()), "missing"), None);
        assert_eq!(max_timestamp(None, "t"), None);
    }
}
