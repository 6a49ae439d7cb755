//! One bronze Delta table: open or create it, evolve its schema, stream batches into Parquet
//! files, and commit them.
//!
//! Guarantees:
//! - Files stream to storage while they are written (multipart uploads), so memory does not grow
//!   with the file size; they stay invisible until a commit adds them.
//! - Each commit carries a `txn` action `(app_id = this run, version = commit sequence)` and the
//!   SHA-256 of the last state it covers in its commit info. A commit whose outcome is unknown
//!   (the request failed after the server may have stored it) is looked up by its `txn` before
//!   being retried, so it never lands twice.
//! - Schema evolution never fails a sync: new fields become new nullable columns; a field whose
//!   type changed keeps the table's type, and values that no longer fit are nulled and rescued.
//! - `overwrite` replaces the table's content in one commit at the end of a successful sync;
//!   `minimum_generation_id` removes only files whose rows all belong to lower generations.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, MetadataExt, StructField, StructType, Transaction};
use deltalake::operations::create::CreateBuilder;
use deltalake::parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use ridelake_core::bronze::{self, ColumnType, safe_column_name};
use serde_json::{Value, json};
use url::Url;

use crate::catalog::{StreamPlan, SyncMode};
use crate::config::{Compression, DestinationOptions};
use crate::encoder::{ColumnSpec, StreamEncoder};
use crate::error::{ConnectorError, Result};
use crate::fault;

/// What a commit covered, recorded in its commit info.
#[derive(Debug, Clone, Default)]
pub struct CommitContext {
    /// SHA-256 of the last STATE message the commit covers, if any.
    pub state_sha256: Option<String>,
}

/// One bronze table and its open writer.
pub struct BronzeTable {
    /// The stream this table holds.
    pub plan: StreamPlan,
    /// Table location (no credentials in it).
    pub url: Url,
    table: DeltaTable,
    writer: RecordBatchWriter,
    columns: Vec<ColumnSpec>,
    arrow_schema: SchemaRef,
    pending_adds: Vec<Add>,
    /// Whether a Parquet file is open (written to since the last seal).
    pub has_open_file: bool,
    /// When the table was last written to.
    pub last_write: Instant,
    /// Rows written since the last commit.
    pub rows_since_commit: u64,
    /// Rows committed by this run.
    pub rows_committed: u64,
    /// Files committed by this run.
    pub files_committed: u64,
    /// Commits made by this run.
    pub commits: u64,
    /// Parquet bytes committed by this run.
    pub bytes_committed: u64,
    /// Wall time of each commit of this run, in seconds (retries included).
    pub commit_seconds: Vec<f64>,
    app_id: String,
    commit_seq: i64,
}

/// Parquet settings: dictionary encoding only for text columns, where values repeat (status,
/// currency, …); timestamps, numbers and UUIDs are nearly unique, and trying a dictionary on them
/// costs CPU before parquet falls back to plain encoding anyway.
fn writer_properties(options: &DestinationOptions, columns: &[ColumnSpec]) -> WriterProperties {
    let compression = match options.compression {
        Compression::Snappy => ParquetCompression::SNAPPY,
        Compression::Zstd => ParquetCompression::ZSTD(ZstdLevel::default()),
        Compression::Uncompressed => ParquetCompression::UNCOMPRESSED,
    };
    let mut builder = WriterProperties::builder()
        .set_compression(compression)
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(256 * 1024))
        .set_created_by(format!("destination-delta-lake {}", env!("CARGO_PKG_VERSION")));
    for column in columns.iter().filter(|c| c.storage == ColumnType::String) {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(column.name.as_str()), true);
    }
    builder.build()
}

/// The columns a catalog asks for: safe, case-insensitively unique names.
fn desired_columns(plan: &StreamPlan) -> Vec<(String, String, ColumnType)> {
    let mut taken: HashSet<String> = bronze::META_COLUMNS.iter().map(|c| c.to_ascii_lowercase()).collect();
    let mut out = Vec::new();
    for (field, ty) in &plan.fields {
        let base = safe_column_name(field);
        let mut name = base.clone();
        let mut n = 2;
        while !taken.insert(name.to_ascii_lowercase()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        out.push((name, field.clone(), *ty));
    }
    out
}

fn column_comment(field: &str) -> Option<&'static str> {
    Some(match field {
        bronze::RAW_ID => "Airbyte: random UUID given to the record by the destination",
        bronze::EXTRACTED_AT => "Airbyte: when the source extracted the record (emitted_at), UTC",
        bronze::GENERATION_ID => "Airbyte: generation of the stream the record belongs to",
        bronze::META => "Airbyte: sync id and the changes made to the record (nulled values and why)",
        bronze::RESCUED_DATA => "Verbatim JSON of values that did not fit their column and of undeclared fields",
        bronze::CDC_CURSOR => "CDC: change position (binlog file suffix << 32 | position); null for snapshot rows",
        bronze::CDC_UPDATED_AT => "CDC: time of the change (snapshot read time for snapshot rows)",
        bronze::CDC_DELETED_AT => "CDC: time of the delete; null unless the row was deleted",
        bronze::CDC_LOG_FILE => "CDC: binlog file of the change",
        bronze::CDC_LOG_POS => "CDC: binlog position of the change",
        _ => return None,
    })
}

fn with_comment(field: StructField) -> StructField {
    match column_comment(field.name()) {
        Some(comment) => field.with_metadata([("comment".to_owned(), comment.to_owned())]),
        None => field,
    }
}

impl BronzeTable {
    /// Opens the stream's table, creating it or adding new columns as needed.
    pub async fn open(options: &DestinationOptions, plan: StreamPlan, run_id: &str) -> Result<Self> {
        let url = options.storage.table_url(&[&plan.folder.0, &plan.folder.1])?;
        let location = url.to_string();
        let err = |e: DeltaTableError| ConnectorError::delta(location.clone(), e);
        if let Ok(path) = url.to_file_path() {
            std::fs::create_dir_all(&path).map_err(|e| {
                ConnectorError::Config(format!("cannot create local table folder {}: {e}", path.display()))
            })?;
        }
        let storage_options = options.storage.storage_options();
        let desired = desired_columns(&plan);
        let mut table = match Self::load(&url, &storage_options).await {
            Ok(t) => t,
            Err(DeltaTableError::NotATable(_)) => Self::create(&url, &storage_options, &plan, &desired).await.map_err(err)?,
            Err(e) => return Err(err(e)),
        };
        Self::evolve_schema(&mut table, &desired).await.map_err(err)?;
        let columns = Self::column_specs(&table, &desired)?;
        let writer = RecordBatchWriter::for_table(&table)
            .map_err(err)?
            .with_writer_properties(writer_properties(options, &columns))
            .with_target_file_size(options.target_file_size_bytes);
        let arrow_schema = writer.arrow_schema();
        Ok(BronzeTable {
            plan,
            url,
            table,
            writer,
            columns,
            arrow_schema,
            pending_adds: Vec::new(),
            has_open_file: false,
            last_write: Instant::now(),
            rows_since_commit: 0,
            rows_committed: 0,
            files_committed: 0,
            commits: 0,
            bytes_committed: 0,
            commit_seconds: Vec::new(),
            app_id: format!("destination-delta-lake-{run_id}"),
            commit_seq: 0,
        })
    }

    async fn load(url: &Url, storage_options: &HashMap<String, String>) -> Result<DeltaTable, DeltaTableError> {
        DeltaTableBuilder::from_url(url.clone())?.with_storage_options(storage_options.clone()).load().await
    }

    async fn create(
        url: &Url,
        storage_options: &HashMap<String, String>,
        plan: &StreamPlan,
        desired: &[(String, String, ColumnType)],
    ) -> Result<DeltaTable, DeltaTableError> {
        let mut fields: Vec<StructField> = desired
            .iter()
            .map(|(name, _, ty)| with_comment(StructField::new(name.clone(), ty.delta_type(), true)))
            .collect();
        fields.extend(bronze::meta_fields().into_iter().map(with_comment));
        let mut configuration = vec![
            (bronze::PROP_STREAM.to_owned(), Some(plan.name.clone())),
            ("delta.setTransactionRetentionDuration".to_owned(), Some("interval 30 days".to_owned())),
        ];
        if let Some(ns) = &plan.namespace {
            configuration.push((bronze::PROP_NAMESPACE.to_owned(), Some(ns.clone())));
        }
        let created = CreateBuilder::new()
            .with_location(url.to_string())
            .with_storage_options(storage_options.clone())
            .with_table_name(format!("bronze_{}", plan.folder.1))
            .with_comment(Self::description(plan))
            .with_columns(fields)
            .with_configuration(configuration)
            .with_raise_if_key_not_exists(false)
            .with_save_mode(SaveMode::Ignore)
            .await;
        match created {
            Ok(t) => Ok(t),
            // Another writer created it between our load and our create: use theirs.
            Err(e) => match Self::load(url, storage_options).await {
                Ok(t) => Ok(t),
                Err(_) => Err(e),
            },
        }
    }

    /// Adds the catalog's new fields (and any missing meta column) as nullable columns.
    async fn evolve_schema(table: &mut DeltaTable, desired: &[(String, String, ColumnType)]) -> Result<(), DeltaTableError> {
        let snapshot = table.snapshot()?;
        let schema = snapshot.schema();
        let existing: HashSet<String> = schema.fields().map(|f| f.name().to_ascii_lowercase()).collect();
        let mut added = Vec::new();
        for (name, _, ty) in desired {
            if !existing.contains(&name.to_ascii_lowercase()) {
                // timestamp_ntz needs a protocol upgrade on existing tables: keep such new columns as text.
                let ty = if *ty == ColumnType::TimestampNtz { ColumnType::String } else { *ty };
                added.push(StructField::new(name.clone(), ty.delta_type(), true));
            }
        }
        for meta in bronze::meta_fields() {
            if !existing.contains(&meta.name().to_ascii_lowercase()) {
                added.push(StructField::new(meta.name().clone(), meta.data_type().clone(), true));
            }
        }
        if added.is_empty() {
            return Ok(());
        }
        let mut all: Vec<StructField> = schema.fields().cloned().collect();
        all.extend(added.iter().cloned());
        let new_schema = StructType::try_new(all)?;
        let metadata = snapshot.metadata().clone().with_schema(&new_schema)?;
        let finalized = CommitBuilder::default()
            .with_actions(vec![Action::Metadata(metadata)])
            .build(Some(snapshot), table.log_store(), DeltaOperation::AddColumn { fields: added })
            .await?;
        table.state = Some(finalized.snapshot());
        Ok(())
    }

    fn column_specs(table: &DeltaTable, desired: &[(String, String, ColumnType)]) -> Result<Vec<ColumnSpec>> {
        let source_of: HashMap<String, &str> =
            desired.iter().map(|(name, field, _)| (name.to_ascii_lowercase(), field.as_str())).collect();
        let schema = table.snapshot().map_err(|e| ConnectorError::delta(table.table_url().to_string(), e))?.schema();
        let mut columns = Vec::new();
        for field in schema.fields() {
            if bronze::META_COLUMNS.contains(&field.name().as_str()) {
                continue;
            }
            let storage = ColumnType::from_delta_type(field.name(), field.data_type())?;
            let source_field = source_of.get(&field.name().to_ascii_lowercase()).map_or(field.name().as_str(), |s| *s);
            columns.push(ColumnSpec { name: field.name().clone(), source_field: source_field.to_owned(), storage });
        }
        Ok(columns)
    }

    /// A fresh encoder producing batches in this table's schema.
    pub fn encoder(&self) -> StreamEncoder {
        StreamEncoder::new(
            self.plan.label(),
            self.columns.clone(),
            self.arrow_schema.clone(),
            self.plan.generation_id,
            self.plan.sync_id,
        )
    }

    /// Streams a batch into the table's open file (invisible until committed).
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let rows = batch.num_rows() as u64;
        self.writer.write(batch).await.map_err(|e| ConnectorError::delta(self.url.to_string(), e))?;
        self.rows_since_commit += rows;
        self.has_open_file = true;
        self.last_write = Instant::now();
        Ok(())
    }

    /// Parquet bytes written since the last commit (open files included).
    pub fn bytes_since_commit(&self) -> u64 {
        self.writer.buffer_len() as u64 + self.pending_adds.iter().map(|a| a.size as u64).sum::<u64>()
    }

    /// The table's current Delta version.
    pub fn version(&self) -> Option<u64> {
        self.table.version()
    }

    /// The newest `_ab_cdc_updated_at` in the table (seconds since the epoch), from the Delta
    /// statistics of its files: no data is read.
    pub fn newest_change(&self) -> Option<f64> {
        ridelake_core::metrics::newest_in_table(&self.table, bronze::CDC_UPDATED_AT)
    }

    /// The description bronze tables are created with.
    pub fn description(plan: &StreamPlan) -> String {
        format!("Bronze: raw Airbyte stream {} as received, append-only and lossless (destination-delta-lake)", plan.label())
    }

    /// Whether there is anything to commit.
    pub fn is_dirty(&self) -> bool {
        self.has_open_file || !self.pending_adds.is_empty()
    }

    /// Finishes the open files (frees their buffers); they are committed later.
    pub async fn seal(&mut self) -> Result<()> {
        if self.has_open_file {
            let adds = self.writer.flush().await.map_err(|e| ConnectorError::delta(self.url.to_string(), e))?;
            self.pending_adds.extend(adds);
            self.has_open_file = false;
        }
        Ok(())
    }

    /// Commits everything written so far (plus `extra` actions) in one Delta commit.
    /// Returns the new version, or `None` when there was nothing to commit.
    pub async fn commit(&mut self, extra: Vec<Action>, operation: DeltaOperation, context: &CommitContext) -> Result<Option<u64>> {
        self.seal().await?;
        if self.pending_adds.is_empty() && extra.is_empty() {
            return Ok(None);
        }
        let location = self.url.to_string();
        let files = self.pending_adds.len() as u64;
        let bytes: u64 = self.pending_adds.iter().map(|a| a.size as u64).sum();
        let mut actions: Vec<Action> = self.pending_adds.iter().cloned().map(Action::Add).collect();
        actions.extend(extra);
        self.commit_seq += 1;
        let seq = self.commit_seq;
        let mut metadata = vec![
            ("airbyte.stream".to_owned(), json!(self.plan.label())),
            ("airbyte.records".to_owned(), json!(self.rows_since_commit)),
            ("ridelake.writer".to_owned(), json!(self.app_id)),
        ];
        if let Some(sync_id) = self.plan.sync_id {
            metadata.push(("airbyte.sync_id".to_owned(), json!(sync_id)));
        }
        if let Some(hash) = &context.state_sha256 {
            metadata.push(("airbyte.state_sha256".to_owned(), Value::String(hash.clone())));
        }
        let properties = CommitProperties::default()
            .with_application_transaction(Transaction::new(&self.app_id, seq))
            .with_metadata(metadata);
        let started = Instant::now();
        let mut attempt = 0u32;
        let version = loop {
            attempt += 1;
            let outcome = if fault::fail_this_commit() {
                Err(DeltaTableError::Generic("injected commit failure (DESTINATION_DELTA_LAKE_FAIL_COMMIT)".into()))
            } else {
                let snapshot = self.table.snapshot().map_err(|e| ConnectorError::delta(location.clone(), e))?;
                CommitBuilder::from(properties.clone())
                    .with_actions(actions.clone())
                    .build(Some(snapshot), self.table.log_store(), operation.clone())
                    .await
            };
            match outcome {
                Ok(finalized) => {
                    let v = finalized.version();
                    self.table.state = Some(finalized.snapshot());
                    break v;
                }
                Err(e) => {
                    // The request may have reached the server before failing: look for our txn.
                    if self.table.update_state().await.is_ok() {
                        let landed = match self.table.snapshot() {
                            Ok(s) => s.transaction_version(self.table.log_store().as_ref(), &self.app_id).await.ok().flatten(),
                            Err(_) => None,
                        };
                        if landed == Some(seq) {
                            break self.table.version().unwrap_or_default();
                        }
                    }
                    let retryable = matches!(e, DeltaTableError::ObjectStore { .. } | DeltaTableError::Io { .. });
                    if !retryable || attempt >= 4 {
                        self.commit_seq -= 1;
                        return Err(ConnectorError::delta(location, e));
                    }
                    tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt))).await;
                }
            }
        };
        self.commit_seconds.push(started.elapsed().as_secs_f64());
        self.pending_adds.clear();
        self.rows_committed += self.rows_since_commit;
        self.rows_since_commit = 0;
        self.files_committed += files;
        self.bytes_committed += bytes;
        self.commits += 1;
        Ok(Some(version))
    }

    /// Commits pending data as an append.
    pub async fn commit_append(&mut self, context: &CommitContext) -> Result<Option<u64>> {
        let op = DeltaOperation::Write { mode: SaveMode::Append, partition_by: None, predicate: None };
        self.commit(Vec::new(), op, context).await
    }

    /// End of a successful sync: commits what is left and applies `overwrite` or
    /// `minimum_generation_id`. Returns the number of files removed.
    pub async fn finalize(&mut self, context: &CommitContext) -> Result<u64> {
        let location = self.url.to_string();
        let err = |e: DeltaTableError| ConnectorError::delta(location.clone(), e);
        if self.plan.sync_mode == SyncMode::Overwrite {
            // Everything in the table now predates this sync (overwrite streams commit only here).
            self.seal().await?;
            self.table.update_state().await.map_err(err)?;
            let removes: Vec<Action> = self
                .table
                .snapshot()
                .map_err(err)?
                .log_data()
                .iter()
                .map(|f| Action::Remove(f.remove_action(true)))
                .collect();
            let removed = removes.len() as u64;
            let op = DeltaOperation::Write { mode: SaveMode::Overwrite, partition_by: None, predicate: None };
            self.commit(removes, op, context).await?;
            return Ok(removed);
        }
        self.commit_append(context).await?;
        let min_generation = self.plan.minimum_generation_id.unwrap_or(0);
        if min_generation <= 0 {
            return Ok(0);
        }
        let snapshot = self.table.snapshot().map_err(err)?;
        let mut removes = Vec::new();
        for file in snapshot.log_data().iter() {
            if file_below_generation(file.stats().as_deref(), min_generation) {
                removes.push(Action::Remove(file.remove_action(true)));
            }
        }
        if removes.is_empty() {
            return Ok(0);
        }
        let removed = removes.len() as u64;
        let op = DeltaOperation::Delete { predicate: Some(format!("{} < {min_generation}", bronze::GENERATION_ID)) };
        self.commit(removes, op, context).await?;
        Ok(removed)
    }

    /// Drops what was written but not committed (failed sync of an overwrite stream).
    pub fn abandon(&mut self) {
        self.writer.reset();
        self.pending_adds.clear();
        self.has_open_file = false;
    }
}

/// Whether every row of a file is of a generation below `min_generation` (null counts as
/// below: such rows predate generations). Files without statistics are kept.
pub fn file_below_generation(stats: Option<&str>, min_generation: i64) -> bool {
    let Some(stats) = stats.and_then(|s| serde_json::from_str::<Value>(s).ok()) else { return false };
    let records = stats["numRecords"].as_i64();
    let nulls = stats["nullCount"][bronze::GENERATION_ID].as_i64();
    if records.is_some() && records == nulls {
        return true;
    }
    match stats["maxValues"][bronze::GENERATION_ID].as_i64() {
        Some(max) => max < min_generation,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_cleanup_reads_stats() {
        let s = |max: i64, nulls: i64| {
            format!(r#"{{"numRecords":10,"minValues":{{"_airbyte_generation_id":1}},"maxValues":{{"_airbyte_generation_id":{max}}},"nullCount":{{"_airbyte_generation_id":{nulls}}}}}"#)
        };
        assert!(file_below_generation(Some(&s(1, 0)), 2));
        assert!(!file_below_generation(Some(&s(2, 0)), 2));
        assert!(file_below_generation(Some(r#"{"numRecords":3,"nullCount":{"_airbyte_generation_id":3}}"#), 1));
        assert!(!file_below_generation(None, 5));
    }

    #[test]
    fn desired_columns_are_unique_and_safe() {
        let plan = StreamPlan {
            namespace: None,
            name: "s".into(),
            folder: ("default".into(), "s".into()),
            fields: vec![
                ("id".into(), ColumnType::Integer),
                ("ID".into(), ColumnType::String),
                ("a b".into(), ColumnType::String),
                ("_airbyte_raw_id".into(), ColumnType::String),
            ],
            sync_mode: SyncMode::Append,
            generation_id: None,
            minimum_generation_id: None,
            sync_id: None,
        };
        let names: Vec<String> = desired_columns(&plan).into_iter().map(|c| c.0).collect();
        assert_eq!(names, ["id", "ID_2", "a_b", "_airbyte_raw_id_2"]);
    }
}
