//! Maintenance: fewer files and a shorter log for every table of the lake, without changing what
//! any table returns or costing silver and gold their next increment.
//!
//! For each table (bronze streams, silver, gold, and the lease tables' logs), in this order:
//! 1. **Compaction** of small files, as commits that change no data (`dataChange = false`).
//!    - Bronze keeps its ingest order, which is the last tie-breaker of the change order
//!      ([`crate::order`]): only files that silver already processed (added at versions up to
//!      silver's marker of the stream) are merged, only runs of files that follow each other in
//!      ingest order and share one Airbyte generation (so that a generation cleanup can still
//!      remove whole files), and each compacted file lists its parts in its Parquet footer
//!      ([`increment::INGEST_PARTS_KEY`]) and tags its `add` with the versions it holds
//!      ([`increment::INGEST_TAG`]). An increment skips such a commit; a rebuild reads every part
//!      with the place its original file had.
//!    - Silver and gold are bin-packed within a day partition by delta-rs's optimize.
//! 2. **Vacuum**: files out of the table for longer than the retention are deleted, except those
//!    of the versions named in step 3 for `rides_pending` and `rides_deleted`. With a retention of
//!    7 days or more ([`MIN_ORPHAN_AGE`]), files no commit ever added (a writer killed before its
//!    commit) go too. delta-rs plans it; the files are deleted here, without VACUUM commits.
//!    (Before log cleanup: vacuum finds the removed files in the log.)
//! 3. **Log cleanup**: log entries older than the log retention go, but never one a reader of
//!    ours still needs (the *log floor*): for bronze, the first commit after silver's marker (the
//!    next increment starts there) and every commit that added a current file not compacted (a
//!    rebuild learns that file's place from it); for silver users, the commits after the version
//!    silver rides were checked against (a run reads them to tell maintenance from a run that
//!    stopped between the two commits); for silver rides, the version gold last reflected (gold
//!    compares files with it); for `rides_pending` and `rides_deleted`, the version whose marker
//!    matches silver rides (what silver reads them as; after a run that died between their
//!    commits and the rides commit it is an older one, though such a run is followed by a
//!    rebuild today, since it wrote silver users too).
//!    Our own commits no longer clean the log on their own (see [`crate::io`]): this is the only
//!    place that does.
//! 4. **Checkpoint** when `checkpoint_every` commits followed the newest one.
//!
//! The run holds the silver and the gold leases, so no build interleaves with it; syncs may run
//! meanwhile (bronze compaction only touches files silver already processed, and Delta's conflict
//! check orders the commits).
//!
//! The decisions ([`plan_bronze_compaction`], [`bronze_log_floor`]) are pure functions of the
//! files' places; the rest reads and commits.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::Action;
use deltalake::logstore::object_store::ObjectStoreExt;
use deltalake::logstore::object_store::path::Path;
use deltalake::operations::vacuum::VacuumMode;
use deltalake::parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use deltalake::parquet::file::metadata::KeyValue;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError};
use futures::{StreamExt, TryStreamExt};
use url::Url;

use crate::error::{LakehouseError, Result};
use crate::gold::{GOLD_MARKER, GOLD_TABLES};
use crate::increment::{self, INGEST_PARTS_KEY, INGEST_TAG, IngestFile, IngestPart};
use crate::io;
use crate::layout::LakeLayout;
use crate::lease::{self, Lease};
use crate::silver::{RIDES_MARKER, RIDES_USERS_MARKER, users_marker};

/// Silver tables, as maintenance visits them.
pub const SILVER_TABLES: [&str; 5] = ["users", "rides", "rides_pending", "rides_deleted", "quarantine"];

/// Below this retention, vacuum deletes only files that commits removed: a file no commit added
/// yet may belong to a write in progress (an overwrite sync commits its files only at its end).
pub const MIN_ORPHAN_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// The table property that lets delta-rs clean a table's log after its commits, markers or not:
/// maintenance turns it off and cleans the log itself.
pub const LOG_CLEANUP_PROPERTY: &str = "delta.enableExpiredLogCleanup";

/// Knobs of a maintenance run.
#[derive(Debug, Clone)]
pub struct MaintainOptions {
    /// Files out of a table for longer than this are deleted (default 7 days, Delta's default).
    /// Readers that time-travel further back, or run longer, than this may fail.
    pub retention: Duration,
    /// Log entries older than this are removed, within the log floor (default 30 days).
    pub log_retention: Duration,
    /// Compaction writes files of about this size, and merges files below half of it (default
    /// 128 MiB).
    pub target_file_bytes: u64,
    /// A checkpoint is written when this many commits followed the newest one (default 10).
    pub checkpoint_every: i64,
    /// Whether to compact (default true).
    pub compact: bool,
    /// Whether to vacuum (default true).
    pub vacuum: bool,
    /// How long the run's leases last between renewals (default [`lease::ttl_from_env`]).
    pub lease_ttl: Option<Duration>,
}

impl Default for MaintainOptions {
    fn default() -> Self {
        MaintainOptions {
            retention: Duration::from_secs(7 * 24 * 3600),
            log_retention: Duration::from_secs(30 * 24 * 3600),
            target_file_bytes: 128 * 1024 * 1024,
            checkpoint_every: 10,
            compact: true,
            vacuum: true,
            lease_ttl: None,
        }
    }
}

/// What maintenance did to one table.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TableMaintenance {
    /// `bronze/<namespace>/<stream>`, `silver/<table>` or `gold/<table>`.
    pub table: String,
    /// Data files before and after the run.
    pub files_before: u64,
    /// Data files after the run.
    pub files_after: u64,
    /// Files compaction replaced.
    pub files_compacted: u64,
    /// Files compaction wrote.
    pub files_written: u64,
    /// The oldest version log cleanup had to keep (`None`: no limit but the retention).
    pub log_floor: Option<i64>,
    /// Log files (commits and checkpoints) removed.
    pub logs_removed: u64,
    /// Version of the checkpoint this run wrote, if any.
    pub checkpoint: Option<i64>,
    /// Files vacuum deleted.
    pub files_vacuumed: u64,
    /// Bytes vacuum deleted.
    pub bytes_reclaimed: u64,
    /// The table's version after the run.
    pub version: i64,
}

/// What a maintenance run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct MaintenanceReport {
    /// Per table, in the order visited (missing tables are left out).
    pub tables: Vec<TableMaintenance>,
    /// Wall time of the run, in seconds.
    pub seconds: f64,
}

impl MaintenanceReport {
    /// Data files in the lake before the run.
    pub fn files_before(&self) -> u64 {
        self.tables.iter().map(|t| t.files_before).sum()
    }
    /// Data files in the lake after the run.
    pub fn files_after(&self) -> u64 {
        self.tables.iter().map(|t| t.files_after).sum()
    }
    /// Bytes vacuum deleted.
    pub fn bytes_reclaimed(&self) -> u64 {
        self.tables.iter().map(|t| t.bytes_reclaimed).sum()
    }
}

// ---- decisions ------------------------------------------------------------------------------------

/// A bronze file as compaction sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Its rows' places in ingest order (one part unless already compacted).
    pub parts: Vec<IngestPart>,
    /// Bytes.
    pub size: u64,
    /// Rows, from its statistics.
    pub rows: Option<u64>,
    /// The Airbyte generation of all its rows, when its statistics tell one.
    pub generation: Option<i64>,
}

/// The bins of bronze files to merge, each a run of indices into `files` (which are in ingest
/// order) to become one file. A file is merged when it is small (below half of `target`), its
/// rows count is known, and every part was added at a version from 0 to `marker` (silver has
/// processed it); a bin holds files that follow each other in ingest order and share one
/// generation, of at most `target` bytes in all (unless one file is), and at least two files.
pub fn plan_bronze_compaction(files: &[Candidate], marker: i64, target: u64) -> Vec<Vec<usize>> {
    let eligible = |f: &Candidate| {
        f.size < target / 2 && f.rows.is_some() && f.generation.is_some() && !f.parts.is_empty() && f.parts.iter().all(|p| (0..=marker).contains(&p.version))
    };
    let mut bins: Vec<Vec<usize>> = Vec::new();
    let mut bin: Vec<usize> = Vec::new();
    let mut bytes = 0u64;
    let mut close = |bin: &mut Vec<usize>, bytes: &mut u64| {
        if bin.len() > 1 {
            bins.push(std::mem::take(bin));
        }
        bin.clear();
        *bytes = 0;
    };
    for (i, file) in files.iter().enumerate() {
        if !eligible(file) {
            close(&mut bin, &mut bytes);
            continue;
        }
        let same_generation = bin.last().is_none_or(|&last| files[last].generation == file.generation);
        if !same_generation || (!bin.is_empty() && bytes + file.size > target) {
            close(&mut bin, &mut bytes);
        }
        bin.push(i);
        bytes += file.size;
    }
    close(&mut bin, &mut bytes);
    bins
}

/// The parts of the file merged from `files` (in order): each input's parts, a whole file's
/// rows counted from its statistics.
pub fn merged_parts(files: &[&Candidate]) -> Vec<IngestPart> {
    let mut out = Vec::new();
    for file in files {
        match file.parts.as_slice() {
            [only] if only.rows.is_none() => out.push(IngestPart { rows: file.rows, ..*only }),
            parts => out.extend_from_slice(parts),
        }
    }
    out
}

/// The oldest bronze commit log cleanup must keep: the first after silver's `marker` (the next
/// increment reads from there) and every commit that added a current file that is not compacted
/// (a rebuild learns its place in ingest order there). `0` (keep all) before silver's first run.
pub fn bronze_log_floor(files: &[IngestFile], marker: Option<i64>) -> i64 {
    let Some(marker) = marker else { return 0 };
    files.iter().filter(|f| !f.is_compacted()).map(|f| f.first().0).filter(|v| *v >= 0).fold(marker + 1, i64::min)
}

// ---- reading and committing -----------------------------------------------------------------------

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn err(url: &Url) -> impl Fn(DeltaTableError) -> LakehouseError + '_ {
    move |e| LakehouseError::delta(url, e)
}

/// Properties of maintenance commits: they never clean the log on their own.
fn quiet_commit() -> CommitProperties {
    CommitProperties::default().with_cleanup_expired_logs(Some(false)).with_create_checkpoint(false)
}

/// The generation of all of a file's rows, from its statistics (`_airbyte_generation_id`).
fn generation_of(stats: Option<&str>) -> Option<i64> {
    let stats: serde_json::Value = serde_json::from_str(stats?).ok()?;
    let column = ridelake_core::bronze::GENERATION_ID;
    let (min, max) = (stats.get("minValues")?.get(column)?.as_i64()?, stats.get("maxValues")?.get(column)?.as_i64()?);
    (min == max).then_some(min)
}

/// Merges small bronze files that silver already processed (up to `marker`), keeping their
/// ingest order: one commit, no data change. Returns (files replaced, files written).
async fn compact_bronze(table: &DeltaTable, url: &Url, marker: i64, target: u64) -> Result<(u64, u64)> {
    let upto = table.version().unwrap_or_default() as i64;
    let files = increment::all_files(table, upto).await?;
    let snapshot = table.snapshot().map_err(err(url))?;
    let facts: HashMap<String, (u64, Option<String>)> =
        snapshot.log_data().iter().map(|f| (f.path().to_string(), (f.size().max(0) as u64, f.stats()))).collect();
    let candidates: Vec<Candidate> = files
        .iter()
        .map(|f| {
            let (size, stats) = facts.get(&f.file.path).cloned().unwrap_or((u64::MAX, None));
            Candidate { parts: f.parts.clone(), size, rows: f.file.rows, generation: generation_of(stats.as_deref()) }
        })
        .collect();
    let bins = plan_bronze_compaction(&candidates, marker, target);
    if bins.is_empty() {
        return Ok((0, 0));
    }
    let removes: HashMap<String, Action> = snapshot.log_data().iter().map(|f| (f.path().to_string(), Action::Remove(f.remove_action(false)))).collect();
    let mut actions = Vec::new();
    let (mut replaced, mut written) = (0u64, 0u64);
    for bin in &bins {
        let inputs: Vec<&Candidate> = bin.iter().map(|i| &candidates[*i]).collect();
        let parts = merged_parts(&inputs);
        let (first, last) = (parts.iter().map(|p| p.version).min().unwrap_or_default(), parts.iter().map(|p| p.version).max().unwrap_or_default());
        let properties = WriterProperties::builder()
            .set_compression(ParquetCompression::ZSTD(ZstdLevel::try_new(3).map_err(|e| LakehouseError::delta(url, e.into()))?))
            .set_key_value_metadata(Some(vec![KeyValue::new(INGEST_PARTS_KEY.to_owned(), increment::format_parts(&parts))]))
            .build();
        let writer = RecordBatchWriter::for_table(table).map_err(err(url))?;
        let schema = writer.arrow_schema();
        let mut writer = writer.with_writer_properties(properties);
        let mut rows = 0u64;
        // One input file in memory at a time.
        for i in bin {
            let (_, batches) = io::read_arrow(table, std::slice::from_ref(&files[*i].file)).await?;
            for batch in &batches {
                rows += batch.num_rows() as u64;
                writer.write(io::cast_to(batch, &schema, url)?).await.map_err(err(url))?;
            }
        }
        let expected: u64 = parts.iter().filter_map(|p| p.rows).sum();
        if rows != expected {
            return Err(LakehouseError::Schema { table: url.to_string(), message: format!("compaction read {rows} rows where the files' statistics count {expected}") });
        }
        let adds = writer.flush().await.map_err(err(url))?;
        if adds.len() != 1 {
            return Err(LakehouseError::Schema { table: url.to_string(), message: format!("compaction wrote {} files for one bin", adds.len()) });
        }
        for mut add in adds {
            add.data_change = false;
            add.tags = Some(HashMap::from([(INGEST_TAG.to_owned(), Some(format!("{first}-{last}")))]));
            actions.push(Action::Add(add));
        }
        for i in bin {
            if let Some(remove) = removes.get(&files[*i].file.path) {
                actions.push(remove.clone());
            }
        }
        replaced += bin.len() as u64;
        written += 1;
    }
    let operation = DeltaOperation::Optimize { predicate: None, target_size: target as i64 };
    CommitBuilder::from(quiet_commit()).with_actions(actions).build(Some(snapshot), table.log_store(), operation).await.map_err(err(url))?;
    Ok((replaced, written))
}

/// Bin-packs a silver or gold table's small files within their partitions (delta-rs optimize).
/// Returns (files replaced, files written).
async fn compact_table(table: &DeltaTable, url: &Url, target: u64) -> Result<(u64, u64)> {
    let target = NonZeroU64::new(target.max(1)).unwrap_or(NonZeroU64::MIN);
    let schema = io::arrow_schema(table)?;
    let (_, metrics) = table
        .clone()
        .optimize()
        .with_target_size(target)
        .with_writer_properties(io::writer_properties(&schema))
        .with_commit_properties(quiet_commit())
        .await
        .map_err(err(url))?;
    Ok((metrics.num_files_removed, metrics.num_files_added))
}

/// A log entry: its version, whether it is a checkpoint, when it was written (ms).
struct LogEntry {
    version: i64,
    checkpoint: bool,
    modified_ms: i64,
}

async fn log_entries(table: &DeltaTable, url: &Url) -> Result<Vec<LogEntry>> {
    let store = table.log_store().object_store(None);
    let log = Path::from("_delta_log");
    let listed: Vec<_> = store.list(Some(&log)).try_collect().await.map_err(|e| LakehouseError::delta(url, e.into()))?;
    Ok(listed
        .into_iter()
        .filter_map(|meta| {
            let name = meta.location.filename()?.to_owned();
            let (stem, rest) = name.split_once('.')?;
            let version = (stem.len() == 20).then(|| stem.parse::<i64>().ok()).flatten()?;
            let checkpoint = rest.starts_with("checkpoint");
            (checkpoint || rest == "json").then_some(LogEntry { version, checkpoint, modified_ms: meta.last_modified.timestamp_millis() })
        })
        .collect())
}

/// Removes log entries older than `retention`, keeping every version from `floor` on (delta-rs
/// removes only entries below a checkpoint: one is written right above the newest expired entry
/// first, when there is none between it and the floor). Returns the entries removed.
async fn clean_log(table: &DeltaTable, url: &Url, options: &HashMap<String, String>, floor: i64, retention: Duration) -> Result<u64> {
    let current = table.version().unwrap_or_default() as i64;
    let keep = floor.min(current);
    let cutoff = now_ms() - retention.as_millis() as i64;
    let entries = log_entries(table, url).await?;
    let Some(newest_expired) = entries.iter().filter(|e| !e.checkpoint && e.version < keep && e.modified_ms <= cutoff).map(|e| e.version).max() else {
        return Ok(0);
    };
    if !entries.iter().any(|e| e.checkpoint && e.version > newest_expired && e.version <= keep) {
        let above = io::open_version(url, options, (newest_expired + 1) as u64).await?;
        deltalake::checkpoints::create_checkpoint(&above, None).await.map_err(err(url))?;
    }
    let removed = deltalake::checkpoints::cleanup_expired_logs_for(keep as u64, table.log_store().as_ref(), cutoff, None).await.map_err(err(url))?;
    Ok(removed as u64)
}

/// Writes a checkpoint at the table's version when `every` commits followed the newest one.
/// Returns its version.
async fn checkpoint(table: &DeltaTable, url: &Url, every: i64) -> Result<Option<i64>> {
    let current = table.version().unwrap_or_default() as i64;
    let newest = log_entries(table, url).await?.into_iter().filter(|e| e.checkpoint).map(|e| e.version).max().unwrap_or(0);
    if current == 0 || current - newest < every.max(1) {
        return Ok(None);
    }
    deltalake::checkpoints::create_checkpoint(table, None).await.map_err(err(url))?;
    Ok(Some(current))
}

/// Deletes files out of the table for longer than `retention`, keeping those of `keep_versions`.
/// delta-rs plans it (a dry run: which files, by the log and the listing); the files are deleted
/// here, without delta-rs's VACUUM commits, which would run its own log cleanup and, on bronze,
/// give silver a commit to read. Returns (files, bytes) deleted.
async fn vacuum(table: &DeltaTable, url: &Url, retention: Duration, keep_versions: &[i64]) -> Result<(u64, u64)> {
    let mode = if retention >= MIN_ORPHAN_AGE { VacuumMode::Full } else { VacuumMode::Lite };
    let period = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let keep: Vec<u64> = keep_versions.iter().filter(|v| **v >= 0).map(|v| *v as u64).collect();
    let mut plan = table.clone().vacuum().with_retention_period(period).with_enforce_retention_duration(false).with_mode(mode).with_dry_run(true);
    if !keep.is_empty() {
        plan = plan.with_keep_versions(&keep);
    }
    let (_, planned) = plan.await.map_err(err(url))?;
    let store = table.object_store();
    let deleted = futures::stream::iter(planned.files_deleted)
        .map(|file| {
            let store = store.clone();
            async move {
                let path = Path::from(file);
                let size = store.head(&path).await.map(|m| m.size).ok();
                match store.delete(&path).await {
                    Ok(()) => Ok(size),
                    // Gone already (another vacuum): nothing reclaimed here.
                    Err(deltalake::logstore::object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        })
        .buffered(16)
        .try_collect::<Vec<Option<u64>>>()
        .await
        .map_err(|e| LakehouseError::delta(url, e.into()))?;
    let files = deleted.iter().filter(|d| d.is_some()).count() as u64;
    Ok((files, deleted.into_iter().flatten().sum()))
}

/// Turns off delta-rs's own log cleanup on the table (a property commit, once per table): its
/// commits would otherwise clean the log after every checkpoint, below any floor.
async fn quiet_log(table: &DeltaTable, url: &Url) -> Result<bool> {
    let snapshot = table.snapshot().map_err(err(url))?;
    if snapshot.metadata().configuration().get(LOG_CLEANUP_PROPERTY).is_some_and(|v| v == "false") {
        return Ok(false);
    }
    table
        .clone()
        .set_tbl_properties()
        .with_properties(HashMap::from([(LOG_CLEANUP_PROPERTY.to_owned(), "false".to_owned())]))
        .with_commit_properties(quiet_commit())
        .await
        .map_err(err(url))?;
    Ok(true)
}

/// One table's maintenance: compaction (`compact` says how), log cleanup within the `floor`,
/// checkpoint, vacuum keeping the files of `keep_versions`.
async fn maintain_table(
    name: String,
    url: &Url,
    options: &HashMap<String, String>,
    run: &MaintainOptions,
    compact: Compaction,
    floor: Floor,
    keep_versions: &[i64],
) -> Result<Option<TableMaintenance>> {
    let Some(mut table) = io::open(url, options).await? else { return Ok(None) };
    if quiet_log(&table, url).await? {
        table = io::open(url, options).await?.ok_or_else(|| LakehouseError::MissingTable(url.to_string()))?;
    }
    let mut done = TableMaintenance { table: name, files_before: io::files(&table)?.len() as u64, ..Default::default() };
    if run.compact {
        let (replaced, written) = match compact {
            Compaction::Bronze { marker: Some(marker) } => compact_bronze(&table, url, marker, run.target_file_bytes).await?,
            Compaction::Bronze { marker: None } | Compaction::None => (0, 0),
            Compaction::Optimize => compact_table(&table, url, run.target_file_bytes).await?,
        };
        (done.files_compacted, done.files_written) = (replaced, written);
        if replaced > 0 {
            table = io::open(url, options).await?.ok_or_else(|| LakehouseError::MissingTable(url.to_string()))?;
        }
    }
    // Decided after compaction: compacted bronze files no longer hold the floor back.
    done.log_floor = match floor {
        Floor::None => None,
        Floor::At(version) => Some(version),
        Floor::Bronze { marker } => Some(bronze_log_floor(&increment::all_files(&table, table.version().unwrap_or_default() as i64).await?, marker)),
    };
    // Vacuum before log cleanup: it finds the removed files in the log.
    if run.vacuum && !matches!(compact, Compaction::None) {
        (done.files_vacuumed, done.bytes_reclaimed) = vacuum(&table, url, run.retention, keep_versions).await?;
        if done.files_vacuumed > 0 {
            table = io::open(url, options).await?.ok_or_else(|| LakehouseError::MissingTable(url.to_string()))?;
        }
    }
    done.logs_removed = clean_log(&table, url, options, done.log_floor.unwrap_or(i64::MAX), run.log_retention).await?;
    done.checkpoint = checkpoint(&table, url, run.checkpoint_every).await?;
    let table = io::open(url, options).await?.ok_or_else(|| LakehouseError::MissingTable(url.to_string()))?;
    done.files_after = io::files(&table)?.len() as u64;
    done.version = table.version().unwrap_or_default() as i64;
    Ok(Some(done))
}

/// How a table is compacted.
#[derive(Debug, Clone, Copy)]
enum Compaction {
    /// Bronze, up to silver's marker of the stream (`None`: silver has not read it yet).
    Bronze { marker: Option<i64> },
    /// delta-rs optimize, within partitions.
    Optimize,
    /// Not at all, nor vacuumed (a lease table holds no data).
    None,
}

/// The oldest version log cleanup must keep.
#[derive(Debug, Clone, Copy)]
enum Floor {
    /// None but the retention.
    None,
    /// This version.
    At(i64),
    /// Bronze's ([`bronze_log_floor`]), for silver's marker of the stream.
    Bronze { marker: Option<i64> },
}

/// Maintains every table of the lake. Holds the silver and gold leases for the whole run,
/// renewed every third of their time to live while it works (a renewal that fails stops the run:
/// another run took a lease).
pub async fn maintain(layout: &LakeLayout, run: &MaintainOptions) -> Result<MaintenanceReport> {
    let options = layout.storage_options();
    let ttl = run.lease_ttl.unwrap_or_else(lease::ttl_from_env);
    let mut silver_lease = Lease::acquire(&layout.silver("_lease")?, &options, &lease::holder("maintenance"), ttl).await?;
    let mut gold_lease = match Lease::acquire(&layout.gold("_lease")?, &options, &lease::holder("maintenance"), ttl).await {
        Ok(lease) => lease,
        Err(e) => {
            silver_lease.release().await;
            return Err(e);
        }
    };
    let result = tokio::select! {
        done = maintain_all(layout, run) => done,
        lost = keep_leases(&mut silver_lease, &mut gold_lease, ttl / 3) => Err(lost),
    };
    gold_lease.release().await;
    silver_lease.release().await;
    result
}

/// Renews both leases every `every`, until a renewal fails; returns why.
async fn keep_leases(silver: &mut Lease, gold: &mut Lease, every: Duration) -> LakehouseError {
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = silver.renew().await {
            return e;
        }
        if let Err(e) = gold.renew().await {
            return e;
        }
    }
}

async fn maintain_all(layout: &LakeLayout, run: &MaintainOptions) -> Result<MaintenanceReport> {
    let started = Instant::now();
    let options = layout.storage_options();
    let mut report = MaintenanceReport::default();

    // Bronze, within what silver has processed.
    let (rides, rides_marker) = io::open_with_marker(&layout.silver("rides")?, &options, RIDES_MARKER).await?;
    let rides_checked_against = match &rides {
        Some(t) => io::marker(t, RIDES_USERS_MARKER).await?,
        None => None,
    };
    let mut streams = Vec::new();
    for map in layout.model.user_maps() {
        streams.push((map, io::open_with_marker(&layout.silver("users")?, &options, &users_marker(map)).await?.1));
    }
    streams.push((&layout.model.rides, rides_marker));
    for (map, marker) in streams {
        let name = format!("bronze/{}/{}", layout.namespace, map.stream);
        report.tables.extend(maintain_table(name, &layout.bronze(&map.stream)?, &options, run, Compaction::Bronze { marker }, Floor::Bronze { marker }, &[]).await?);
    }

    // Silver: rides's companions keep the version its marker points at; silver rides keeps the
    // version gold last reflected.
    // (the oldest marker among the gold tables; none when a table has none: gold then
    // recomputes every day anyway)
    let mut gold_marker: Option<i64> = Some(i64::MAX);
    let mut any_gold = false;
    for table in GOLD_TABLES {
        let (found, m) = io::open_with_marker(&layout.gold(table)?, &options, GOLD_MARKER).await?;
        if found.is_some() {
            any_gold = true;
            gold_marker = gold_marker.zip(m).map(|(a, b)| a.min(b));
        }
    }
    let gold_marker = gold_marker.filter(|_| any_gold);
    for table in SILVER_TABLES {
        let url = layout.silver(table)?;
        let (floor, keep) = match table {
            // A gold table without a marker rebuilds whole anyway.
            // Silver's next run reads the users commits after the version rides were checked
            // against, to tell maintenance from a run that stopped between the two commits.
            "users" => (rides_checked_against.map_or(Floor::None, |v| Floor::At(v + 1)), Vec::new()),
            "rides" => (gold_marker.map_or(Floor::None, Floor::At), Vec::new()),
            "rides_pending" | "rides_deleted" => {
                let version = crate::silver::as_of_marker(&url, &options, RIDES_MARKER, rides_marker).await?.and_then(|t| t.version()).map(|v| v as i64);
                (Floor::At(version.unwrap_or(0)), version.into_iter().collect())
            }
            _ => (Floor::None, Vec::new()),
        };
        report.tables.extend(maintain_table(format!("silver/{}", layout.model.silver_table(table)), &url, &options, run, Compaction::Optimize, floor, &keep).await?);
    }
    for table in GOLD_TABLES {
        report.tables.extend(maintain_table(format!("gold/{table}"), &layout.gold(table)?, &options, run, Compaction::Optimize, Floor::None, &[]).await?);
    }
    // The lease tables hold no data, but each run commits twice to them.
    for (layer, url) in [("silver", layout.silver("_lease")?), ("gold", layout.gold("_lease")?)] {
        report.tables.extend(maintain_table(format!("{layer}/_lease"), &url, &options, run, Compaction::None, Floor::None, &[]).await?);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::DataFile;

    fn part(version: i64, index: i64) -> Vec<IngestPart> {
        vec![IngestPart { version, index, rows: None }]
    }

    fn small(version: i64, generation: i64) -> Candidate {
        Candidate { parts: part(version, 0), size: 10, rows: Some(5), generation: Some(generation) }
    }

    #[test]
    fn only_processed_small_files_of_one_generation_in_a_row_are_merged() {
        let files = vec![small(1, 0), small(2, 0), small(3, 1), small(4, 1), small(5, 1), small(6, 1)];
        // Silver processed up to version 5: file 6 waits.
        assert_eq!(plan_bronze_compaction(&files, 5, 1000), vec![vec![0, 1], vec![2, 3, 4]]);
        // A large file breaks the run: bins never skip a file in ingest order.
        let mut with_large = files.clone();
        with_large[1].size = 600;
        assert_eq!(plan_bronze_compaction(&with_large, 6, 1000), vec![vec![2, 3, 4, 5]]);
        // Bins stop at the target size.
        assert_eq!(plan_bronze_compaction(&files[2..], 6, 25), vec![vec![0, 1], vec![2, 3]]);
        // Unknown rows, unknown or mixed generation, a cleaned commit: left alone.
        let mut unknown = files.clone();
        unknown[0].rows = None;
        unknown[1].generation = None;
        unknown[2].parts = part(-1, 0);
        assert_eq!(plan_bronze_compaction(&unknown, 6, 1000), vec![vec![3, 4, 5]]);
        // Nothing processed yet, or a lone file: nothing to do.
        assert!(plan_bronze_compaction(&files, 0, 1000).is_empty());
        assert!(plan_bronze_compaction(&files[..1], 6, 1000).is_empty());
    }

    #[test]
    fn merged_parts_keep_each_file_and_row_count_in_order() {
        let compacted = Candidate {
            parts: vec![IngestPart { version: 1, index: 0, rows: Some(3) }, IngestPart { version: 1, index: 1, rows: Some(2) }],
            size: 10,
            rows: Some(5),
            generation: Some(0),
        };
        let fresh = Candidate { parts: part(4, 2), size: 10, rows: Some(7), generation: Some(0) };
        let parts = merged_parts(&[&compacted, &fresh]);
        assert_eq!(
            parts,
            vec![
                IngestPart { version: 1, index: 0, rows: Some(3) },
                IngestPart { version: 1, index: 1, rows: Some(2) },
                IngestPart { version: 4, index: 2, rows: Some(7) }
            ]
        );
        assert_eq!(increment::parse_parts(&increment::format_parts(&parts)), Some(parts));
        assert_eq!(increment::parse_parts("1:0:3,x"), None);
        assert_eq!(increment::parse_parts("1:0"), None);
        assert_eq!(increment::parse_parts("-1:0:3"), None);
    }

    fn file(parts: Vec<IngestPart>) -> IngestFile {
        IngestFile { file: DataFile { path: "f".into(), partition: vec![], id_range: None, rows: None, unlinked: None }, parts }
    }

    #[test]
    fn the_bronze_log_floor_keeps_the_next_increment_and_every_uncompacted_file() {
        let compacted = file(vec![IngestPart { version: 1, index: 0, rows: Some(3) }, IngestPart { version: 2, index: 0, rows: Some(3) }]);
        assert_eq!(bronze_log_floor(&[compacted.clone(), file(part(5, 0)), file(part(9, 0))], Some(8)), 5);
        assert_eq!(bronze_log_floor(&[compacted.clone(), file(part(9, 0))], Some(8)), 9);
        assert_eq!(bronze_log_floor(&[compacted], Some(8)), 9);
        assert_eq!(bronze_log_floor(&[file(part(-1, 0)), file(part(9, 0))], Some(12)), 9, "a cleaned commit cannot be kept");
        assert_eq!(bronze_log_floor(&[file(part(3, 0))], None), 0, "silver has not read bronze yet");
    }

    #[test]
    fn a_generation_is_known_only_when_every_row_has_it() {
        let stats = |min: i64, max: i64| format!(r#"{{"numRecords":2,"minValues":{{"_airbyte_generation_id":{min}}},"maxValues":{{"_airbyte_generation_id":{max}}}}}"#);
        assert_eq!(generation_of(Some(&stats(3, 3))), Some(3));
        assert_eq!(generation_of(Some(&stats(2, 3))), None);
        assert_eq!(generation_of(Some(r#"{"numRecords":2}"#)), None);
        assert_eq!(generation_of(None), None);
    }
}
