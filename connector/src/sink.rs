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
use std::time::Instant;

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
use ridelake_core::storage::{RetryBound, StorageConfig};
use serde_json::{Value, json};
use url::Url;

use crate::catalog::{StreamPlan, SyncMode};
use deltalake::logstore::object_store::ObjectStoreExt;
use crate::config::{Compression, DestinationOptions};
use crate::encoder::{ColumnSpec, StreamEncoder};
use crate::error::{ConnectorError, FailureType, Result, classify_storage_message, storage_text};
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
    /// How a failed commit is retried (the S3 settings; their defaults on a local folder).
    retry: RetryBound,
    /// The last version known to be on disk (local folder): the one found (and flushed) at open,
    /// then the last commit flushed by [`BronzeTable::flush_log`].
    durable_version: Option<u64>,
    /// Warnings about fields whose declared type differs from the table's, and about columns the
    /// catalog no longer declares, for the sync's log.
    pub type_drift: Vec<String>,
    /// (state hash, records digest) of the recent commits of earlier attempts of this sync (same
    /// `sync_id`).
    earlier_attempt_commits: HashSet<(String, String)>,
    /// Digest of the records written since the last commit.
    rows_digest: u128,
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
/// `fsync` of `files`, then of `folders` (each once), off the async threads; errors name `table`.
async fn sync_all(table: &Url, files: Vec<std::path::PathBuf>, mut folders: Vec<std::path::PathBuf>) -> Result<()> {
    folders.sort();
    folders.dedup();
    let synced = tokio::task::spawn_blocking(move || -> std::result::Result<(), String> {
        for path in files.iter().chain(&folders) {
            std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| format!("flushing {} to disk: {e}", path.display()))?;
        }
        Ok(())
    })
    .await
    .map_err(|e| ConnectorError::Internal(format!("flushing to disk: {e}")))?;
    synced.map_err(|e| ConnectorError::delta(table.to_string(), DeltaTableError::Generic(e)))
}

/// On a local folder, flushes to disk a table as this process finds it: its whole log (an
/// earlier process may have stopped between a commit and its flush) and the folders down to it
/// from above the lake's base (which this process may have just created).
async fn flush_found_table(url: &Url, base: &std::path::Path) -> Result<()> {
    let Ok(root) = url.to_file_path() else { return Ok(()) };
    let log = root.join("_delta_log");
    let entries: Vec<std::path::PathBuf> = match std::fs::read_dir(&log) {
        Ok(found) => found.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    let mut folders = vec![log];
    let mut folder = Some(root.as_path());
    while let Some(f) = folder {
        folders.push(f.to_path_buf());
        if f == base {
            folders.extend(f.parent().map(std::path::Path::to_path_buf));
            break;
        }
        folder = f.parent();
    }
    sync_all(url, entries, folders).await
}

/// How many recent commits of a table are searched for an earlier attempt's states.
const EARLIER_ATTEMPT_COMMITS: usize = 200;

/// Commit info key: the digest of the records the commit holds (the sum of the xxh3-128 of each
/// record's `data`; see [`crate::encoder::StreamEncoder::take_digest`]).
const ROWS_DIGEST: &str = "ridelake.records_xxh3";
/// Removal commits after an overwrite or a generation cleanup, for files a concurrent rewrite
/// brought back, before the sync gives up.
const LEFTOVER_ROUNDS: usize = 5;

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
        // A transient failure (a reset connection, a lost answer to the creating PUT) is retried
        // under the S3 retry bound: the table is then found, or created.
        let retry = match &options.storage {
            StorageConfig::S3(s3) => s3.retry,
            StorageConfig::Local { .. } => RetryBound::default(),
        };
        let started = Instant::now();
        let mut attempt = 0;
        let (mut table, existing_version) = loop {
            attempt += 1;
            let outcome = match Self::load(&url, &storage_options).await {
                Ok(t) => {
                    let version = t.version();
                    Ok((t, version))
                }
                Err(DeltaTableError::NotATable(_)) => Self::create(&url, &storage_options, &plan, &desired).await.map(|t| (t, None)),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(opened) => break opened,
                Err(e) => {
                    let transient = classify_storage_message(&storage_text(&e)) == FailureType::Transient;
                    match retry.pause_before(attempt, started.elapsed()).filter(|_| transient) {
                        Some(pause) => tokio::time::sleep(pause).await,
                        None => return Err(err(e)),
                    }
                }
            }
        };
        let newly_absent = Self::evolve_schema(&mut table, &desired).await.map_err(err)?;
        let earlier_attempt_commits = match (plan.sync_id, plan.sync_mode, existing_version) {
            (Some(sync_id), SyncMode::Append | SyncMode::AppendDedup, Some(_)) => Self::earlier_attempt_commits(&table, sync_id).await.map_err(err)?,
            _ => HashSet::new(),
        };
        // Flush what this process found (and its schema changes) to disk: later, only its own
        // commits need flushing.
        if let StorageConfig::Local { path } = &options.storage {
            flush_found_table(&url, path).await?;
        }
        let found_version = table.version();
        let columns = Self::column_specs(&table, &desired)?;
        // A field the catalog now types differently keeps the table's type (a Delta column's type
        // cannot change in place); its values are coerced to it, so say so once per sync.
        let type_drift = desired
            .iter()
            .filter_map(|(name, _, declared)| {
                let stored = columns.iter().find(|c| c.name.eq_ignore_ascii_case(name))?.storage;
                (stored != *declared).then(|| format!(
                    "destination-delta-lake: {}: the catalog declares field {name} as {declared:?}, the table keeps {stored:?}; values are converted where that loses nothing (booleans and 0/1, integral numbers), otherwise nulled and kept in _airbyte_rescued_data",
                    plan.label()
                ))
            })
            .chain(newly_absent.into_iter().map(|column| format!(
                "destination-delta-lake: {}: the catalog no longer declares column {column}; the table keeps it (null from now on) and lists it in its property {}",
                plan.label(),
                bronze::PROP_ABSENT_COLUMNS
            )))
            .collect();
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
            retry,
            durable_version: found_version,
            type_drift,
            earlier_attempt_commits,
            rows_digest: 0,
        })
    }

    /// The (state hash, records digest) of the recent commits of attempts of the sync
    /// `sync_id`: a retried sync (Airbyte keeps the job's sync id across attempts) resends the
    /// records after the last state it saw echoed, and some tables may have committed further
    /// before the attempt failed.
    async fn earlier_attempt_commits(table: &DeltaTable, sync_id: i64) -> Result<HashSet<(String, String)>, DeltaTableError> {
        use futures::TryStreamExt;
        let commits: Vec<_> = table.history(Some(EARLIER_ATTEMPT_COMMITS)).try_collect().await?;
        let text = |c: &deltalake::kernel::CommitInfo, key: &str| c.info.get(key).and_then(Value::as_str).map(str::to_owned);
        Ok(commits
            .iter()
            .filter(|c| c.info.get("airbyte.sync_id").and_then(Value::as_i64) == Some(sync_id))
            .filter_map(|c| Some((text(c, "airbyte.state_sha256")?, text(c, ROWS_DIGEST)?)))
            .collect())
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
            // Log cleanup is ridelake's maintenance's: it keeps the commits silver still needs.
            ("delta.enableExpiredLogCleanup".to_owned(), Some("false".to_owned())),
            (bronze::PROP_STATS_COLUMNS.to_owned(), Some(bronze::STATS_EVERY_COLUMN.to_owned())),
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

    /// Adds the catalog's new fields (and any missing meta column) as nullable columns, and
    /// records the table's columns the catalog no longer declares
    /// ([`bronze::PROP_ABSENT_COLUMNS`]): the source dropped them, and the rows from this sync on
    /// lack them (null), which silver must not take for values. A table an older release created
    /// without [`bronze::PROP_STATS_COLUMNS`] gets it, so its new files have statistics for
    /// every column. Returns the columns that went missing with this sync.
    async fn evolve_schema(table: &mut DeltaTable, desired: &[(String, String, ColumnType)]) -> Result<Vec<String>, DeltaTableError> {
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
        let declared: Vec<&str> = desired.iter().map(|(name, _, _)| name.as_str()).collect();
        let before = bronze::absent_columns(snapshot.metadata().configuration()).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
        let next_version = snapshot.version() as i64 + 1;
        let absent = bronze::next_absent_columns(schema.fields().map(|f| f.name().as_str()), &declared, &before, next_version);
        let stats_unset = !snapshot.metadata().configuration().contains_key(bronze::PROP_STATS_COLUMNS);
        if added.is_empty() && absent.is_none() && !stats_unset {
            return Ok(Vec::new());
        }
        let open = |windows: Option<&Vec<(i64, Option<i64>)>>| windows.and_then(|w| w.last()).is_some_and(|(_, to)| to.is_none());
        let newly_absent: Vec<String> = absent.iter().flat_map(|a| a.iter()).filter(|(c, w)| open(Some(*w)) && !open(before.get(*c))).map(|(c, _)| c.clone()).collect();
        let mut metadata = snapshot.metadata().clone();
        let mut properties = HashMap::new();
        if let Some(absent) = absent {
            properties.insert(bronze::PROP_ABSENT_COLUMNS.to_owned(), serde_json::to_string(&absent).map_err(|e| DeltaTableError::Generic(e.to_string()))?);
        }
        if stats_unset {
            properties.insert(bronze::PROP_STATS_COLUMNS.to_owned(), bronze::STATS_EVERY_COLUMN.to_owned());
        }
        for (key, value) in &properties {
            metadata = metadata.add_config_key(key.clone(), value.clone())?;
        }
        let operation = if added.is_empty() {
            DeltaOperation::SetTableProperties { properties }
        } else {
            let mut all: Vec<StructField> = schema.fields().cloned().collect();
            all.extend(added.iter().cloned());
            metadata = metadata.with_schema(&StructType::try_new(all)?)?;
            DeltaOperation::AddColumn { fields: added }
        };
        let finalized = CommitBuilder::from(CommitProperties::default().with_cleanup_expired_logs(Some(false)))
            .with_actions(vec![Action::Metadata(metadata)])
            .build(Some(snapshot), table.log_store(), operation)
            .await?;
        table.state = Some(finalized.snapshot());
        Ok(newly_absent)
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

    /// Streams a batch into the table's open file (invisible until committed); `digest` is its
    /// records' (see [`crate::encoder::StreamEncoder::take_digest`]).
    pub async fn write(&mut self, batch: RecordBatch, digest: u128) -> Result<()> {
        let rows = batch.num_rows() as u64;
        self.rows_digest = self.rows_digest.wrapping_add(digest);
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

    /// On a local folder, flushes to disk the data files about to be committed and the folders
    /// that name them, so that no durable log entry can point at a file a crash lost. (On S3 a
    /// successful PUT is durable.)
    async fn flush_data_files(&self) -> Result<()> {
        let Some(root) = self.url.to_file_path().ok().and_then(|p| Url::from_directory_path(p).ok()) else { return Ok(()) };
        // Add paths are relative to the table and percent-encoded.
        let files: Vec<std::path::PathBuf> = self.pending_adds.iter().filter_map(|add| root.join(&add.path).ok().and_then(|u| u.to_file_path().ok())).collect();
        let folders = files.iter().filter_map(|f| f.parent().map(std::path::Path::to_path_buf)).collect();
        sync_all(&self.url, files, folders).await
    }

    /// On a local folder, flushes to disk the log entries up to `version` (those of this
    /// process's schema changes too) and the log folder. A STATE is echoed only after this: an
    /// OS crash or a power cut then cannot lose what the source was told is stored.
    async fn flush_log(&mut self, version: u64) -> Result<()> {
        let Ok(root) = self.url.to_file_path() else { return Ok(()) };
        let log = root.join("_delta_log");
        let first = self.durable_version.map_or(0, |v| v + 1);
        let mut entries: Vec<std::path::PathBuf> = (first..=version).map(|v| log.join(format!("{v:020}.json"))).collect();
        // Checkpoints delta-rs wrote after these commits.
        entries.extend((first..=version).map(|v| log.join(format!("{v:020}.checkpoint.parquet"))).filter(|p| p.exists()));
        entries.extend(Some(log.join("_last_checkpoint")).filter(|p| p.exists()));
        sync_all(&self.url, entries, vec![log, root]).await?;
        self.durable_version = Some(version);
        Ok(())
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
        self.flush_data_files().await?;
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
        metadata.push((ROWS_DIGEST.to_owned(), Value::String(format!("{:032x}", self.rows_digest))));
        // Log cleanup is left to ridelake's maintenance, which keeps the commits silver still
        // needs (delta-rs would otherwise remove every entry older than the log retention).
        let properties = CommitProperties::default()
            .with_application_transaction(Transaction::new(&self.app_id, seq))
            .with_metadata(metadata)
            .with_cleanup_expired_logs(Some(false));
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
                    let Some(pause) = self.retry.pause_before(attempt, started.elapsed()).filter(|_| retryable) else {
                        self.commit_seq -= 1;
                        return Err(ConnectorError::delta(location, e));
                    };
                    tokio::time::sleep(pause).await;
                }
            }
        };
        self.flush_log(version).await?;
        self.commit_seconds.push(started.elapsed().as_secs_f64());
        self.pending_adds.clear();
        self.rows_committed += self.rows_since_commit;
        self.rows_since_commit = 0;
        self.rows_digest = 0;
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
            let ours: HashSet<String> = self.pending_adds.iter().map(|add| add.path.clone()).collect();
            let op = DeltaOperation::Write { mode: SaveMode::Overwrite, partition_by: None, predicate: None };
            self.commit(removes, op.clone(), context).await?;
            let leftovers = self.remove_leftovers(context, op, &Removal::NotOurs(&ours)).await?;
            return Ok(removed + leftovers);
        }
        self.commit_append(context).await?;
        let min_generation = self.plan.minimum_generation_id.unwrap_or(0);
        if min_generation <= 0 {
            return Ok(0);
        }
        let removal = Removal::BelowGeneration(min_generation);
        let removes = self.removes(&removal).await?;
        if removes.is_empty() {
            return Ok(0);
        }
        let removed = removes.len() as u64;
        let op = DeltaOperation::Delete { predicate: Some(format!("{} < {min_generation}", bronze::GENERATION_ID)) };
        self.commit(removes, op.clone(), context).await?;
        let leftovers = self.remove_leftovers(context, op, &removal).await?;
        Ok(removed + leftovers)
    }

    /// The remove actions of the files of the table's current snapshot that `removal` takes.
    async fn removes(&self, removal: &Removal<'_>) -> Result<Vec<Action>> {
        let err = |e: DeltaTableError| ConnectorError::delta(self.url.to_string(), e);
        let snapshot = self.table.snapshot().map_err(err)?;
        let store = self.table.object_store();
        let mut removes = Vec::new();
        for file in snapshot.log_data().iter() {
            let taken = match removal {
                Removal::NotOurs(ours) => !ours.contains(file.path().as_ref()),
                Removal::BelowGeneration(min_generation) => {
                    // A file of an older release (or another writer) may lack the column's
                    // statistics: its Parquet footer has them.
                    let generations = match Generations::from_stats(file.stats().as_deref()) {
                        Some(known) => Some(known),
                        None => Generations::from_footer(store.clone(), file.object_store_path(), file.size()).await.map_err(|e| err(DeltaTableError::Generic(e.to_string())))?,
                    };
                    generations.is_some_and(|g| g.all_below(*min_generation))
                }
            };
            if taken {
                removes.push(Action::Remove(file.remove_action(true)));
            }
        }
        Ok(removes)
    }

    /// After a commit that removed every file `removal` takes: removes those that a concurrent
    /// rewrite brought in meanwhile. ridelake's bronze compaction replaces files with a commit
    /// that changes no data, which Delta's conflict check lets through on both sides; without
    /// this, a compacted file would keep rows the removal meant to drop. Returns the files
    /// removed.
    async fn remove_leftovers(&mut self, context: &CommitContext, op: DeltaOperation, removal: &Removal<'_>) -> Result<u64> {
        let location = self.url.to_string();
        let mut removed = 0;
        for _ in 0..LEFTOVER_ROUNDS {
            self.table.update_state().await.map_err(|e| ConnectorError::delta(location.clone(), e))?;
            let removes = self.removes(removal).await?;
            if removes.is_empty() {
                return Ok(removed);
            }
            removed += removes.len() as u64;
            self.commit(removes, op.clone(), context).await?;
        }
        Err(ConnectorError::delta(location, DeltaTableError::Generic("files to remove kept reappearing: another writer rewrites this table; retry the sync".into())))
    }

    /// Whether the records written since the last commit were already committed by an earlier
    /// attempt of this sync, at this state: a commit of that attempt names the same state and
    /// the same records (their digest; [`BronzeTable::open`] read them from the log). A retry
    /// resent them. The digest makes a state that repeats (an unchanged cursor, an empty state)
    /// harmless: only the very records committed before are recognised.
    pub fn committed_by_earlier_attempt(&self, state_sha256: &str) -> bool {
        self.is_dirty() && self.earlier_attempt_commits.contains(&(state_sha256.to_owned(), format!("{:032x}", self.rows_digest)))
    }

    /// Drops what was written since the last commit, and deletes its files (they were never
    /// committed; a failed delete leaves an unreferenced file, which vacuum removes). Returns the
    /// number of rows dropped.
    pub async fn discard_uncommitted(&mut self) -> Result<u64> {
        self.seal().await?;
        let store = self.table.object_store();
        for add in self.pending_adds.drain(..) {
            if let Ok(path) = deltalake::Path::parse(&add.path) {
                let _ = store.delete(&path).await;
            }
        }
        self.rows_digest = 0;
        Ok(std::mem::take(&mut self.rows_since_commit))
    }

    /// Drops what was written but not committed (failed sync of an overwrite stream).
    pub fn abandon(&mut self) {
        self.writer.reset();
        self.pending_adds.clear();
        self.has_open_file = false;
    }
}

/// Which files of a bronze table a commit at the end of a sync removes.
enum Removal<'a> {
    /// Those this sync did not write (an overwrite; the paths of its files).
    NotOurs(&'a HashSet<String>),
    /// Those whose rows all belong to a generation below this one (a refresh).
    BelowGeneration(i64),
}

/// What a file's rows hold in `_airbyte_generation_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generations {
    /// Rows in the file.
    pub rows: i64,
    /// Rows without a generation (written before Airbyte had them).
    pub nulls: i64,
    /// The largest generation, if any row has one.
    pub max: Option<i64>,
}

impl Generations {
    /// From a file's Delta statistics, when they cover the column.
    pub fn from_stats(stats: Option<&str>) -> Option<Self> {
        let stats: Value = serde_json::from_str(stats?).ok()?;
        let rows = stats["numRecords"].as_i64()?;
        let nulls = stats["nullCount"][bronze::GENERATION_ID].as_i64()?;
        Some(Generations { rows, nulls, max: stats["maxValues"][bronze::GENERATION_ID].as_i64() })
    }

    /// From the statistics of the file's row groups in its Parquet footer (one small read);
    /// `None` when the file has no such column or its writer kept no statistics for it.
    pub async fn from_footer(
        store: deltalake::logstore::ObjectStoreRef,
        path: deltalake::Path,
        size: i64,
    ) -> std::result::Result<Option<Self>, deltalake::parquet::errors::ParquetError> {
        #[allow(deprecated)]
        use deltalake::parquet::arrow::async_reader::{AsyncFileReader, ParquetObjectReader};
        use deltalake::parquet::file::statistics::Statistics;
        #[allow(deprecated)]
        let mut reader = ParquetObjectReader::new(store, path).with_file_size(size.max(0) as u64);
        let footer = reader.get_metadata(None).await?;
        let Some(column) = footer.file_metadata().schema_descr().columns().iter().position(|c| c.path().string() == bronze::GENERATION_ID) else {
            return Ok(None);
        };
        let mut found = Generations { rows: 0, nulls: 0, max: None };
        for group in footer.row_groups() {
            found.rows += group.num_rows();
            if group.num_rows() == 0 {
                continue;
            }
            let Some(stats) = group.column(column).statistics() else { return Ok(None) };
            let Some(nulls) = stats.null_count_opt() else { return Ok(None) };
            found.nulls += nulls as i64;
            if nulls as i64 == group.num_rows() {
                continue;
            }
            let Statistics::Int64(values) = stats else { return Ok(None) };
            let Some(max) = values.max_opt() else { return Ok(None) };
            found.max = found.max.max(Some(*max));
        }
        Ok(Some(found))
    }

    /// Whether every row is of a generation below `min_generation` (null counts as below: such
    /// rows predate generations).
    pub fn all_below(self, min_generation: i64) -> bool {
        self.rows == self.nulls || self.max.is_some_and(|max| max < min_generation)
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
        let below = |stats: Option<&str>, min: i64| Generations::from_stats(stats).is_some_and(|g| g.all_below(min));
        assert!(below(Some(&s(1, 0)), 2));
        assert!(!below(Some(&s(2, 0)), 2));
        assert!(below(Some(r#"{"numRecords":3,"nullCount":{"_airbyte_generation_id":3}}"#), 1));
        assert!(!below(None, 5), "no statistics: the footer decides");
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
