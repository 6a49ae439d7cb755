//! Read: which bronze rows a silver run must process, and in which order bronze received them.
//!
//! Bronze is append-only: a sync adds files, and only a refresh, an overwrite sync or a
//! generation cleanup removes any. A run remembers the bronze version it reflects (its marker)
//! and the bronze table's identity; the commits after the marker say what was added since, each
//! file with its commit version and its place among that commit's `add` actions (the ingest order
//! of [`crate::order`]).
//!
//! A run must instead rebuild from all of bronze (never a silent no-op, never a partial table)
//! when the commits since the marker cannot tell the increment: bronze rows were removed, the
//! table was recreated (other identity, or a version below the marker), or the commit files after
//! the marker were cleaned up by log retention (a job that fell far behind).
//!
//! Compacted files ([`crate::maintain`]) keep the ingest order: a compacted file holds the rows
//! of files that silver had already processed, in ingest order, and its Parquet footer lists
//! them as parts (the commit version, the place among that commit's adds and the rows of each,
//! [`INGEST_PARTS_KEY`]). Its commit changes no data (`dataChange = false`), so an increment
//! skips it, and a rebuild reads each part's rows with the place the original file had: the
//! change order, and so silver, does not depend on maintenance.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::kernel::Action;
use deltalake::logstore::get_actions;
use futures::StreamExt;
use polars::prelude::*;
use url::Url;

use ridelake_core::bronze::{EXTRACTED_AT, RESCUED_DATA};

use crate::error::{LakehouseError, PolarsContext, Result};
use crate::io::{self, DataFile};
use crate::model::StreamMap;
use crate::order::{INGEST_ROW, INGEST_VERSION};

/// Why a run reads all of bronze instead of what was added since its marker.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Rebuild {
    /// Silver has no marker for this stream yet.
    FirstBuild,
    /// Bronze rows were removed since the marker (a refresh, an overwrite sync, a generation cleanup).
    RowsRemoved {
        /// The bronze commit that removed them.
        version: i64,
    },
    /// The bronze table was recreated since the marker.
    Recreated,
    /// Bronze commits after the marker are no longer in its log (log retention).
    LogCleaned {
        /// The first missing commit.
        version: i64,
    },
    /// The other stream is rebuilt, so this one is too (integrity is decided over both).
    WithOtherStream,
    /// A run stopped between the users and rides commits (or silver predates the markers that
    /// tell): rides were not checked against the current users.
    Interrupted,
    /// Silver's change-order state (kept with its markers) is incomplete: it was written by an
    /// older ridelake.
    OrderStateMissing,
    /// Silver was built with another model, and the run was asked to rebuild with this one.
    ModelChanged,
    /// The run was asked to rebuild.
    Requested,
    /// A silver column has another type than silver gives it (a text or number column written
    /// with its source's type by an older ridelake).
    ColumnTypes {
        /// The column.
        column: String,
    },
    /// The model keeps the source's other columns, and silver lacks one the source added, or
    /// holds one in a narrower type than the source now sends.
    KeptColumns {
        /// What differs.
        difference: String,
    },
    /// A key column of silver holds integers and its source now holds text, or the other way
    /// (bronze recreated with the source's new key type).
    KeyKind {
        /// What differs.
        difference: String,
    },
}

impl Rebuild {
    /// What happened, for logs and reports.
    pub fn describe(&self) -> String {
        match self {
            Rebuild::FirstBuild => "first build".to_owned(),
            Rebuild::RowsRemoved { version } => format!("bronze rows were removed at version {version} (refresh, overwrite or generation cleanup)"),
            Rebuild::Recreated => "the bronze table was recreated".to_owned(),
            Rebuild::LogCleaned { version } => format!("bronze commit {version} is no longer in the log (silver fell behind the log retention)"),
            Rebuild::WithOtherStream => "the other stream is rebuilt".to_owned(),
            Rebuild::Interrupted => "silver rides were not checked against the current silver users (a run stopped between the two commits, or silver was built by an older ridelake)".to_owned(),
            Rebuild::OrderStateMissing => "silver's change-order state is incomplete (built by an older ridelake)".to_owned(),
            Rebuild::ModelChanged => "the model changed (rebuild asked for)".to_owned(),
            Rebuild::Requested => "a rebuild was asked for".to_owned(),
            Rebuild::ColumnTypes { column } => format!("silver column {column} has another type than silver gives it now (written by an older ridelake)"),
            Rebuild::KeptColumns { difference } => format!("{difference} (the model keeps the source's other columns)"),
            Rebuild::KeyKind { difference } => difference.clone(),
        }
    }
}

/// Footer key (Parquet key-value metadata) of a compacted bronze file: its parts, in ingest order.
pub const INGEST_PARTS_KEY: &str = "ridelake.ingest.parts";
/// Tag of a compacted bronze file's `add` action: the first and last bronze versions of its
/// parts (`first-last`), so that an increment can tell, from the log alone, that it holds only
/// rows silver already processed.
pub const INGEST_TAG: &str = "ridelake.ingest.versions";

/// Rows of a bronze file as a sync added them: where they stand in ingest order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestPart {
    /// The commit that added them (-1 when that commit is no longer in the log).
    pub version: i64,
    /// Their file's place among the commit's `add` actions.
    pub index: i64,
    /// How many rows (`None`: the rest of the file).
    pub rows: Option<u64>,
}

/// `parts` as a compacted file's footer keeps them: `version:index:rows`, comma-separated.
pub fn format_parts(parts: &[IngestPart]) -> String {
    parts.iter().map(|p| format!("{}:{}:{}", p.version, p.index, p.rows.unwrap_or_default())).collect::<Vec<_>>().join(",")
}

/// The parts of a compacted file's footer value; `None` when it is not one.
pub fn parse_parts(text: &str) -> Option<Vec<IngestPart>> {
    text.split(',')
        .map(|part| {
            let mut fields = part.split(':').map(str::parse::<i64>);
            let (version, index, rows) = (fields.next()?.ok()?, fields.next()?.ok()?, fields.next()?.ok()?);
            (fields.next().is_none() && version >= 0 && (0..=u32::MAX as i64).contains(&index) && rows >= 0)
                .then_some(IngestPart { version, index, rows: Some(rows as u64) })
        })
        .collect()
}

/// The `(first, last)` bronze versions of a compacted file's `add` tag, if it has one.
pub fn compacted_versions(add: &deltalake::kernel::Add) -> Option<(i64, i64)> {
    let value = add.tags.as_ref()?.get(INGEST_TAG)?.as_deref()?;
    let (first, last) = value.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

/// A bronze data file and where its rows stand in ingest order.
#[derive(Debug, Clone)]
pub struct IngestFile {
    /// The file.
    pub file: DataFile,
    /// Its rows, in order: one part for a file a sync added, the files it replaced for a
    /// compacted one.
    pub parts: Vec<IngestPart>,
}

impl IngestFile {
    /// A file as a sync added it: the commit `version`, its place `index` among the adds.
    pub fn added(file: DataFile, version: i64, index: i64) -> Self {
        IngestFile { file, parts: vec![IngestPart { version, index, rows: None }] }
    }

    /// Where the file's first rows stand in ingest order.
    pub fn first(&self) -> (i64, i64) {
        self.parts.first().map_or((-1, 0), |p| (p.version, p.index))
    }

    /// Whether the file was compacted from others.
    pub fn is_compacted(&self) -> bool {
        self.parts.len() > 1 || self.parts.iter().any(|p| p.rows.is_some())
    }
}

/// The bronze rows a run must process.
pub struct BronzeIncrement {
    /// The bronze table as of `upto`.
    pub table: DeltaTable,
    /// The silver marker the run starts from.
    pub after: Option<i64>,
    /// The bronze version the run brings silver to.
    pub upto: i64,
    /// Identity of the bronze table (kept as a marker next to the version).
    pub table_id: i64,
    /// Files to read, in ingest order.
    pub files: Vec<IngestFile>,
    /// Set when the files are all of bronze and silver must be rebuilt from them.
    pub rebuild: Option<Rebuild>,
    /// How the stream's columns map onto silver's: [`read`] and [`read_rows`] take and give
    /// silver's column names.
    pub map: StreamMap,
}

impl BronzeIncrement {
    /// Whether bronze has nothing new since the marker (and no rebuild reads it all).
    pub fn up_to_date(&self) -> bool {
        self.files.is_empty() && self.after == Some(self.upto)
    }
}

/// Silver users' bronze input: an increment of each of the users' source tables (one, unless the
/// model lists `[[users.streams]]`: their keys never meet, each stream's role being part of its
/// keys), and the map of the silver table they fill together ([`StreamMap::joined`]).
pub struct BronzeUsers {
    /// The streams' increments, in the model's order ([`crate::model::Model::user_maps`]).
    pub streams: Vec<BronzeIncrement>,
    /// Silver users' map: the first stream's, with the columns any stream keeps.
    pub map: StreamMap,
}

impl BronzeUsers {
    /// The users input of the increments `streams`.
    pub fn new(streams: Vec<BronzeIncrement>) -> BronzeUsers {
        let map = StreamMap::joined(&streams.iter().map(|s| &s.map).collect::<Vec<_>>());
        BronzeUsers { streams, map }
    }

    /// Why a stream must be rebuilt, the first that must.
    pub fn rebuild(&self) -> Option<&Rebuild> {
        self.streams.iter().find_map(|s| s.rebuild.as_ref())
    }

    /// Sets every stream's reason to rebuild to `reason`.
    pub fn set_rebuild(&mut self, reason: Rebuild) {
        for stream in &mut self.streams {
            stream.rebuild = Some(reason.clone());
        }
    }

    /// Whether no stream has anything new.
    pub fn up_to_date(&self) -> bool {
        self.streams.iter().all(BronzeIncrement::up_to_date)
    }
}

/// The bronze table's identity as a number (the first 64 bits of its Delta table id).
fn table_id(table: &DeltaTable) -> Result<i64> {
    let snapshot = table.snapshot().map_err(|e| LakehouseError::delta(table.table_url(), e))?;
    let metadata = serde_json::to_value(snapshot.metadata()).map_err(|e| LakehouseError::Schema {
        table: table.table_url().to_string(),
        message: format!("unreadable table metadata: {e}"),
    })?;
    let hex: String = metadata.get("id").and_then(|v| v.as_str()).unwrap_or_default().chars().filter(char::is_ascii_hexdigit).take(16).collect();
    Ok(u64::from_str_radix(&hex, 16).unwrap_or(0) as i64)
}

/// The actions of commits `from..=to` (`None` for a commit no longer in the log), read
/// concurrently.
async fn commits(table: &DeltaTable, from: i64, to: i64) -> Result<Vec<(i64, Option<Vec<Action>>)>> {
    let store = table.log_store();
    let url = table.table_url().clone();
    let reads = futures::stream::iter(from..=to)
        .map(|version| {
            let store = Arc::clone(&store);
            let url = url.clone();
            async move {
                let bytes = store.read_commit_entry(version as u64).await.map_err(|e| LakehouseError::delta(&url, e))?;
                let actions = match bytes {
                    Some(bytes) => Some(get_actions(version as u64, &bytes).map_err(|e| LakehouseError::delta(&url, e))?),
                    None => None,
                };
                Ok::<_, LakehouseError>((version, actions))
            }
        })
        .buffered(16);
    reads.collect::<Vec<_>>().await.into_iter().collect()
}

/// Every current file of bronze, in ingest order. Files added by commits that log retention
/// removed come first, ordered by their `add` time, then path; a compacted file comes where its
/// first part was.
pub async fn all_files(table: &DeltaTable, upto: i64) -> Result<Vec<IngestFile>> {
    let current = io::files(table)?;
    let mut place: HashMap<String, (i64, i64)> = HashMap::new();
    let mut compacted: Vec<String> = Vec::new();
    for (version, actions) in commits(table, 0, upto).await? {
        let adds = actions.unwrap_or_default().into_iter().filter_map(|a| if let Action::Add(add) = a { Some(add) } else { None });
        let (ours, added): (Vec<_>, Vec<_>) = adds.partition(|add| compacted_versions(add).is_some());
        compacted.extend(ours.iter().map(|add| add_path(&add.path)));
        for (index, add) in added.into_iter().enumerate() {
            place.insert(add_path(&add.path), (version, index as i64));
        }
    }
    let snapshot = table.snapshot().map_err(|e| LakehouseError::delta(table.table_url(), e))?;
    let added_at: HashMap<String, i64> = snapshot.log_data().iter().map(|f| (f.path().to_string(), f.modification_time())).collect();
    // A file without a place is compacted (its footer lists its parts) or was added by a commit
    // that log retention removed.
    let unplaced: Vec<DataFile> = current.iter().filter(|f| !place.contains_key(&f.path)).cloned().collect();
    let footers = io::footer_values(table, &unplaced, INGEST_PARTS_KEY).await?;
    let mut parts_of: HashMap<String, Vec<IngestPart>> = HashMap::new();
    for (file, value) in unplaced.iter().zip(footers) {
        match value.as_deref().and_then(parse_parts) {
            Some(parts) => {
                parts_of.insert(file.path.clone(), parts);
            }
            // A compacted file that does not say where its rows stand: guessing would reorder
            // changes, so the run stops.
            None if compacted.contains(&file.path) => {
                return Err(LakehouseError::Schema {
                    table: table.table_url().to_string(),
                    message: format!("compacted file {} has no readable {INGEST_PARTS_KEY} in its footer", file.path),
                });
            }
            None => {}
        }
    }
    let mut files: Vec<(IngestFile, i64)> = current
        .into_iter()
        .map(|file| {
            let time = added_at.get(&file.path).copied().unwrap_or(0);
            let ingest = match (place.get(&file.path), parts_of.remove(&file.path)) {
                (Some((version, index)), _) => IngestFile::added(file, *version, *index),
                (None, Some(parts)) => IngestFile { file, parts },
                (None, None) => IngestFile::added(file, -1, 0),
            };
            (ingest, time)
        })
        .collect();
    files.sort_by(|(a, ta), (b, tb)| (a.first(), *ta, &a.file.path).cmp(&(b.first(), *tb, &b.file.path)));
    let mut out: Vec<IngestFile> = files.into_iter().map(|(f, _)| f).collect();
    // Files of cleaned commits: number them in their order so that their rows stay distinct.
    for (i, file) in out.iter_mut().filter(|f| f.first().0 < 0).enumerate() {
        file.parts = vec![IngestPart { version: -1, index: i as i64, rows: None }];
    }
    Ok(out)
}

/// Whether a commit after silver's marker only compacted rows silver had already processed
/// (bronze versions up to `marker`): every removal and every addition changes no data, and every
/// added file is a compacted one whose parts all predate the marker.
fn only_compacts(actions: &[Action], marker: i64) -> bool {
    let mut touched = false;
    for action in actions {
        match action {
            Action::Remove(remove) if !remove.data_change => touched = true,
            Action::Remove(_) => return false,
            Action::Add(add) if !add.data_change && compacted_versions(add).is_some_and(|(_, last)| last <= marker) => touched = true,
            Action::Add(_) => return false,
            _ => {}
        }
    }
    touched
}

/// `add.path` as the snapshot names it (percent-decoded; kept as written when the decoded bytes
/// are not UTF-8).
fn add_path(path: &str) -> String {
    percent_encoding::percent_decode_str(path).decode_utf8().map_or_else(|_| path.to_owned(), |p| p.into_owned())
}

/// What bronze holds beyond `marker` (a bronze version) for a table whose identity was `known_id`,
/// to be read through `map`.
pub async fn increment(url: &Url, options: &HashMap<String, String>, marker: Option<i64>, known_id: Option<i64>, map: &StreamMap) -> Result<BronzeIncrement> {
    let table = io::open(url, options).await?.ok_or_else(|| LakehouseError::MissingBronze(url.to_string()))?;
    increment_of(table, marker, known_id, map).await
}

/// What bronze added after `marker` up to `version` (pinned by a run's driver), for a worker
/// deciding a slice of an incremental run: the same files, in the same order, as the driver's
/// [`increment`] listed. Fails when the table is no longer the one the driver read
/// (`table_id`), or when the increment can no longer be read as one (the driver would have
/// rebuilt).
pub async fn pinned_increment(url: &Url, options: &HashMap<String, String>, marker: i64, version: i64, table_id: i64, map: &StreamMap) -> Result<BronzeIncrement> {
    let at = u64::try_from(version).map_err(|_| LakehouseError::Task(format!("bronze version {version} is not a version")))?;
    let table = io::open_version(url, options, at).await?;
    let increment = increment_of(table, Some(marker), Some(table_id), map).await?;
    match &increment.rebuild {
        None => Ok(increment),
        Some(why) => Err(LakehouseError::Task(format!("bronze at {url} changed under the run ({}); run it again", why.describe()))),
    }
}

/// [`increment`] of `table` as opened (its latest version, or one a driver pinned).
async fn increment_of(table: DeltaTable, marker: Option<i64>, known_id: Option<i64>, map: &StreamMap) -> Result<BronzeIncrement> {
    let upto = table.version().unwrap_or_default() as i64;
    let id = table_id(&table)?;
    let rebuild = match marker {
        None => Some(Rebuild::FirstBuild),
        Some(m) if m > upto || known_id.is_some_and(|k| k != id) => Some(Rebuild::Recreated),
        Some(_) => None,
    };
    let mut increment = BronzeIncrement { table, after: marker, upto, table_id: id, files: Vec::new(), rebuild, map: map.clone() };
    let Some(m) = marker.filter(|_| increment.rebuild.is_none()) else {
        increment.files = all_files(&increment.table, upto).await?;
        return keep_columns(increment).await;
    };
    let current: HashMap<String, DataFile> = io::files(&increment.table)?.into_iter().map(|f| (f.path.clone(), f)).collect();
    let mut files = Vec::new();
    for (version, actions) in commits(&increment.table, m + 1, upto).await? {
        let Some(actions) = actions else {
            increment.rebuild = Some(Rebuild::LogCleaned { version });
            break;
        };
        if only_compacts(&actions, m) {
            continue;
        }
        if actions.iter().any(|a| matches!(a, Action::Remove(_))) {
            increment.rebuild = Some(Rebuild::RowsRemoved { version });
            break;
        }
        let adds = actions.into_iter().filter_map(|a| if let Action::Add(add) = a { Some(add) } else { None });
        for (index, add) in adds.enumerate() {
            if let Some(file) = current.get(&add_path(&add.path)) {
                files.push(IngestFile::added(file.clone(), version, index as i64));
            }
        }
    }
    if increment.rebuild.is_some() {
        increment.files = all_files(&increment.table, upto).await?;
    } else {
        increment.files = files;
    }
    keep_columns(increment).await
}

/// `increment` with the kinds of its keys ([`StreamMap::read_key_kinds`]) and the source columns
/// its map keeps ([`StreamMap::keep`]), from its table's schema and the values bronze rescued
/// from them in any row of the table: a function of the bronze version alone, so that a
/// rebuild, an incremental run and every worker of a run give silver the same columns and types.
async fn keep_columns(mut increment: BronzeIncrement) -> Result<BronzeIncrement> {
    let schema = io::arrow_schema(&increment.table)?;
    increment.map.read_key_kinds(&schema);
    let names = increment.map.kept_sources(&schema);
    if names.is_empty() && increment.map.extra.is_empty() {
        increment.map.kept.clear();
        return Ok(increment);
    }
    let rescued = rescued_kinds(&increment.table, &names).await?;
    increment.map.keep(&schema, &rescued, &crate::silver::OWN_COLUMNS)?;
    Ok(increment)
}

/// The widest kind of value bronze rescued in each of the `columns` (bronze's names) in any
/// active file of `table`, with how many rows hold one: bronze keeps a column's first type, and
/// stores a value that does not fit it (its type widened at the source) in
/// `_airbyte_rescued_data`. Reads that column of the files whose statistics say it holds values.
pub async fn rescued_kinds(table: &DeltaTable, columns: &[String]) -> Result<crate::model::RescuedKinds> {
    let step = "reading the values bronze rescued";
    let mut kinds = crate::model::RescuedKinds::new();
    if columns.is_empty() || io::present_columns(table, &[RESCUED_DATA])?.is_empty() {
        return Ok(kinds);
    }
    let files = io::files_with_values(table, RESCUED_DATA)?;
    if files.is_empty() {
        return Ok(kinds);
    }
    let read = io::read_columns(table, &files, Some(&[RESCUED_DATA])).await?;
    let texts = read.column(RESCUED_DATA).step(step)?.as_materialized_series().cast(&DataType::String).step(step)?;
    type Object = HashMap<String, Box<serde_json::value::RawValue>>;
    for text in texts.str().step(step)?.iter().flatten() {
        let Ok(object) = serde_json::from_str::<Object>(text) else { continue };
        for (key, value) in object {
            let name = ridelake_core::bronze::safe_column_name(&key);
            if value.get() == "null" || !columns.contains(&name) {
                continue;
            }
            let kind = crate::model::RescuedKind::of(value.get());
            let entry = kinds.entry(name).or_insert((kind, 0));
            entry.0 = entry.0.max(kind);
            entry.1 += 1;
        }
    }
    Ok(kinds)
}

/// All of bronze as of `version` (pinned by a run's driver), for a worker deciding a slice of a
/// rebuild: the same files, in the same ingest order, as the driver's [`increment`] listed.
/// Fails when the table at `url` is no longer the one the driver read (`table_id`).
pub async fn pinned(url: &Url, options: &HashMap<String, String>, version: i64, table_id: i64, map: &StreamMap) -> Result<BronzeIncrement> {
    let at = u64::try_from(version).map_err(|_| LakehouseError::Task(format!("bronze version {version} is not a version")))?;
    let table = io::open_version(url, options, at).await?;
    let id = self::table_id(&table)?;
    if id != table_id {
        return Err(LakehouseError::Task(format!("the bronze table at {url} was recreated during the run; run it again")));
    }
    let files = all_files(&table, version).await?;
    keep_columns(BronzeIncrement { table, after: None, upto: version, table_id: id, files, rebuild: Some(Rebuild::Requested), map: map.clone() }).await
}

/// Every row of the bronze `table` as of its version: `columns` (those it has, as bronze names
/// them: no model maps a stream silver does not build, such as gold's cities table) and the CDC
/// columns, with the ingest order columns, in ingest order.
pub async fn read_whole(table: DeltaTable, columns: &[&str]) -> Result<DataFrame> {
    let upto = table.version().unwrap_or_default() as i64;
    let table_id = table_id(&table)?;
    let files = all_files(&table, upto).await?;
    // (the default model's rides map is the identity: what it reads is bronze's own columns)
    let increment = BronzeIncrement { table, after: None, upto, table_id, files, rebuild: Some(Rebuild::Requested), map: crate::model::Model::default().rides };
    let mut wanted = columns.to_vec();
    wanted.extend(crate::cdc::BRONZE_CDC_COLUMNS);
    read_sources(&increment, &wanted).await
}

/// The newest `_airbyte_extracted_at` (µs) among the rows of `increment`'s bronze table as of
/// the version it reads up to (all its active files, not only the increment's): from the files'
/// statistics, reading the column of the files whose statistics do not say. `None`: no rows.
pub async fn newest_extracted(increment: &BronzeIncrement) -> Result<Option<i64>> {
    let (newest, unknown) = io::newest_by_statistics(&increment.table, EXTRACTED_AT)?;
    if unknown.is_empty() {
        return Ok(newest);
    }
    let step = "reading bronze's extraction times";
    let read = io::read_columns(&increment.table, &unknown, Some(&[EXTRACTED_AT])).await?;
    let micros = read.column(EXTRACTED_AT).step(step)?.as_materialized_series().cast(&DataType::Int64).step(step)?;
    Ok([newest, micros.i64().step(step)?.max()].into_iter().flatten().max())
}

/// The bronze table's columns some syncs' sources did not send, each with the windows of bronze
/// versions whose rows lack it ([`ridelake_core::bronze::PROP_ABSENT_COLUMNS`], as of the table's
/// version).
pub fn absent_columns(table: &DeltaTable) -> Result<ridelake_core::bronze::AbsentColumns> {
    let snapshot = table.snapshot().map_err(|e| LakehouseError::delta(table.table_url(), e))?;
    Ok(ridelake_core::bronze::absent_columns(snapshot.metadata().configuration())?)
}

const ROW_IN_FILE: &str = "_ridelake_row_in_file";

/// The source columns that fill silver's `columns` (through the increment's map), those the
/// table has, and, when some are data columns, bronze's rescued values (the map reads back those
/// that did not fit their column, [`StreamMap::apply`]).
fn sources<'a>(increment: &'a BronzeIncrement, columns: &[&'a str]) -> Result<Vec<&'a str>> {
    let mut wanted: Vec<&str> = Vec::with_capacity(columns.len() + 1);
    for source in columns.iter().flat_map(|c| increment.map.sources_of(c)) {
        if !wanted.contains(&source) {
            wanted.push(source);
        }
    }
    if columns.iter().any(|c| increment.map.data_columns().contains(c)) {
        wanted.push(RESCUED_DATA);
    }
    io::present_columns(&increment.table, &wanted)
}

/// Reads silver's `columns` (those whose source the table has, mapped by the increment's
/// [`StreamMap`]) of the increment's files, in ingest order, with the ingest order columns
/// [`INGEST_VERSION`] and [`INGEST_ROW`] (`index << 32 | row in file`).
pub async fn read(increment: &BronzeIncrement, columns: &[&str]) -> Result<DataFrame> {
    let frame = read_sources(increment, columns).await?;
    let wanted = with_ingest_columns(columns);
    increment.map.apply(frame, &wanted)
}

/// [`read`], one file at a time: calls `each` with every file's rows (mapped and tagged as
/// [`read`] maps and tags them), in ingest order. At most two files' rows are held at once (the
/// next one is read while `each` works on the current one), so memory does not grow with bronze.
pub async fn read_by_file(increment: &BronzeIncrement, columns: &[&str], mut each: impl FnMut(DataFrame) -> Result<()>) -> Result<()> {
    read_files_where(increment, columns, |_| true, |_, rows| each(rows)).await
}

/// [`read_by_file`] of the files `wanted` picks (the others are not read): `each` gets a file's
/// place among the increment's files, and its rows.
pub async fn read_files_where(
    increment: &BronzeIncrement,
    columns: &[&str],
    wanted: impl Fn(&IngestFile) -> bool,
    mut each: impl FnMut(usize, DataFrame) -> Result<()>,
) -> Result<()> {
    let present = sources(increment, columns)?;
    let names = with_ingest_columns(columns);
    let picked: Vec<(usize, &IngestFile)> = increment.files.iter().enumerate().filter(|(_, f)| wanted(f)).collect();
    let start = |k: usize| picked.get(k).map(|(_, f)| io::start_read(&increment.table, &f.file, &present).map(AbortOnDrop)).transpose();
    let mut next = start(0)?;
    for (k, &(i, file)) in picked.iter().enumerate() {
        let Some(mut current) = next.take() else { break };
        next = start(k + 1)?;
        let frame = (&mut current.0).await.map_err(|e| LakehouseError::Task(e.to_string()))??;
        let tagged = with_ingest_order(frame, file, increment)?.collect().step("reading bronze")?;
        each(i, increment.map.apply(tagged, &names)?)?;
    }
    Ok(())
}

/// A read started ahead, stopped when it is no longer wanted (an error, a cancelled run).
struct AbortOnDrop(tokio::task::JoinHandle<Result<DataFrame>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `columns` and the ingest order columns that [`read`] and [`read_by_file`] add.
fn with_ingest_columns<'a>(columns: &[&'a str]) -> Vec<&'a str> {
    let mut wanted = columns.to_vec();
    wanted.extend([INGEST_VERSION, INGEST_ROW].into_iter().filter(|c| !columns.contains(c)));
    wanted
}

async fn read_sources(increment: &BronzeIncrement, columns: &[&str]) -> Result<DataFrame> {
    let present = sources(increment, columns)?;
    let files: Vec<DataFile> = increment.files.iter().map(|f| f.file.clone()).collect();
    let frames = without_empty_rescued(io::read_each(&increment.table, &files, Some(&present)).await?)?;
    let mut tagged = Vec::with_capacity(frames.len());
    for (frame, file) in frames.into_iter().zip(&increment.files) {
        tagged.push(with_ingest_order(frame, file, increment)?);
    }
    if tagged.is_empty() {
        let empty = io::read_columns(&increment.table, &[], Some(&present)).await?;
        return empty
            .lazy()
            .with_columns([lit(NULL).cast(DataType::Int64).alias(INGEST_VERSION), lit(NULL).cast(DataType::Int64).alias(INGEST_ROW)])
            .collect()
            .step("reading bronze");
    }
    concat(tagged, UnionArgs::default()).step("reading bronze")?.collect().step("reading bronze")
}

/// `frames` (one per bronze file) without bronze's rescued column when none of them holds a
/// rescued value (the usual case): stacked, an all-null text column still costs 16 bytes a row.
/// (All or none: the frames are stacked, which needs the same columns in each.)
fn without_empty_rescued(frames: Vec<DataFrame>) -> Result<Vec<DataFrame>> {
    let empty = |f: &DataFrame| f.column(RESCUED_DATA).is_ok_and(|c| c.null_count() == c.len());
    if frames.is_empty() || !frames.iter().all(empty) {
        return Ok(frames);
    }
    frames.into_iter().map(|f| f.drop(RESCUED_DATA).step("reading bronze")).collect()
}

/// A file's rows with their ingest order columns: [`INGEST_VERSION`] and [`INGEST_ROW`]
/// (`index << 32 | row in the file as the sync added it`), part by part.
fn with_ingest_order(frame: DataFrame, file: &IngestFile, increment: &BronzeIncrement) -> Result<LazyFrame> {
    if let [IngestPart { version, index, rows: None }] = file.parts[..] {
        return Ok(frame.lazy().with_row_index(ROW_IN_FILE, None).with_columns([
            lit(version).cast(DataType::Int64).alias(INGEST_VERSION),
            (col(ROW_IN_FILE).cast(DataType::Int64) + lit(index << 32).cast(DataType::Int64)).alias(INGEST_ROW),
        ]).drop(cols([ROW_IN_FILE])));
    }
    let height = frame.height() as u64;
    let (mut versions, mut rows) = (Vec::with_capacity(height as usize), Vec::with_capacity(height as usize));
    let mut at = 0u64;
    for part in &file.parts {
        let count = part.rows.unwrap_or(height.saturating_sub(at));
        versions.extend(std::iter::repeat_n(part.version, count as usize));
        rows.extend((0..count as i64).map(|row| (part.index << 32) + row));
        at += count;
    }
    if at != height {
        return Err(LakehouseError::Schema {
            table: increment.table.table_url().to_string(),
            message: format!("compacted file {} holds {height} rows, its footer lists {at}", file.file.path),
        });
    }
    let mut frame = frame;
    frame.with_column(Column::new(INGEST_VERSION.into(), versions)).step("reading bronze")?;
    frame.with_column(Column::new(INGEST_ROW.into(), rows)).step("reading bronze")?;
    Ok(frame.lazy())
}

/// Silver's `columns` (mapped as [`read`] maps them) of the bronze rows `at` (each an
/// [`INGEST_VERSION`] and an [`INGEST_ROW`], as [`read`] tags them), one row per entry of `at`,
/// in its order; only the files holding them are
/// read, and in those only these rows. (Silver reads the key, rule and order columns of every
/// change, then the other fields for the latest changes only.)
pub async fn read_rows(increment: &BronzeIncrement, columns: &[&str], at: &[(i64, i64)]) -> Result<DataFrame> {
    let frame = read_source_rows(increment, columns, at).await?;
    increment.map.apply(frame, columns)
}

async fn read_source_rows(increment: &BronzeIncrement, columns: &[&str], at: &[(i64, i64)]) -> Result<DataFrame> {
    let step = "reading bronze rows";
    let present = sources(increment, columns)?;
    // Where each part (commit version, place among its adds) is: its file, its first row there.
    let mut part_at: HashMap<(i64, i64), (usize, u64)> = HashMap::new();
    for (i, file) in increment.files.iter().enumerate() {
        let mut start = 0;
        for part in &file.parts {
            part_at.insert((part.version, part.index), (i, start));
            start += part.rows.unwrap_or_default();
        }
    }
    // Per file: its wanted rows, ascending and distinct.
    let mut located = Vec::with_capacity(at.len());
    let mut wanted: HashMap<usize, Vec<usize>> = HashMap::new();
    for (version, row) in at {
        let Some((file, start)) = part_at.get(&(*version, row >> 32)) else {
            return Err(LakehouseError::Schema { table: increment.table.table_url().to_string(), message: "a change's bronze file is no longer in the table".into() });
        };
        let in_file = (start + (row & 0xFFFF_FFFF) as u64) as usize;
        wanted.entry(*file).or_default().push(in_file);
        located.push((*file, in_file));
    }
    let mut order: Vec<usize> = wanted.keys().copied().collect();
    order.sort_unstable();
    for rows in wanted.values_mut() {
        rows.sort_unstable();
        rows.dedup();
    }
    let to_read: Vec<(DataFile, Vec<usize>)> = order.iter().map(|i| (increment.files[*i].file.clone(), wanted[i].clone())).collect();
    let frames = without_empty_rescued(io::read_rows_each(&increment.table, &to_read, &present).await?)?;
    // Where each file's rows landed in the frames stacked in file order.
    let mut first_of: HashMap<usize, IdxSize> = HashMap::new();
    let mut offset: IdxSize = 0;
    for ((i, (file, rows)), frame) in order.iter().zip(&to_read).zip(&frames) {
        if frame.height() != rows.len() {
            return Err(LakehouseError::Schema { table: increment.table.table_url().to_string(), message: format!("file {} gave {} of {} selected rows", file.path, frame.height(), rows.len()) });
        }
        first_of.insert(*i, offset);
        offset += rows.len() as IdxSize;
    }
    let positions: Vec<IdxSize> = located
        .iter()
        .map(|(file, in_file)| first_of[file] + wanted[file].binary_search(in_file).unwrap_or_default() as IdxSize)
        .collect();
    let stacked = if frames.is_empty() {
        io::read_columns(&increment.table, &[], Some(&present)).await?
    } else {
        concat(frames.into_iter().map(IntoLazy::lazy).collect::<Vec<_>>(), UnionArgs::default()).step(step)?.collect().step(step)?
    };
    stacked.take(&IdxCa::from_vec("rows".into(), positions)).step(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_paths_are_percent_decoded() {
        assert_eq!(add_path("part-1%3Dx.parquet"), "part-1=x.parquet");
        assert_eq!(add_path("plain.parquet"), "plain.parquet");
        assert_eq!(add_path("bad%zz"), "bad%zz");
        assert_eq!(add_path("end%4"), "end%4");
        assert_eq!(add_path("not-utf8%FF.parquet"), "not-utf8%FF.parquet");
    }
}
