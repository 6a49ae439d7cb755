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

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::kernel::Action;
use deltalake::logstore::get_actions;
use futures::StreamExt;
use polars::prelude::*;
use url::Url;

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
        }
    }
}

/// A bronze data file and where it stands in ingest order.
#[derive(Debug, Clone)]
pub struct IngestFile {
    /// The file.
    pub file: DataFile,
    /// The commit that added it (-1 when that commit is no longer in the log).
    pub version: i64,
    /// Its place among the commit's `add` actions.
    pub index: i64,
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
/// removed come first, ordered by their `add` time, then path.
async fn all_files(table: &DeltaTable, upto: i64) -> Result<Vec<IngestFile>> {
    let current = io::files(table)?;
    let mut place: HashMap<String, (i64, i64)> = HashMap::new();
    for (version, actions) in commits(table, 0, upto).await? {
        for (index, add) in actions.unwrap_or_default().into_iter().filter_map(|a| if let Action::Add(add) = a { Some(add) } else { None }).enumerate() {
            place.insert(add_path(&add.path), (version, index as i64));
        }
    }
    let snapshot = table.snapshot().map_err(|e| LakehouseError::delta(table.table_url(), e))?;
    let added_at: HashMap<String, i64> = snapshot.log_data().iter().map(|f| (f.path().to_string(), f.modification_time())).collect();
    let mut files: Vec<(IngestFile, i64)> = current
        .into_iter()
        .map(|file| {
            let (version, index) = place.get(&file.path).copied().unwrap_or((-1, 0));
            let time = added_at.get(&file.path).copied().unwrap_or(0);
            (IngestFile { file, version, index }, time)
        })
        .collect();
    files.sort_by(|(a, ta), (b, tb)| (a.version, a.index, *ta, &a.file.path).cmp(&(b.version, b.index, *tb, &b.file.path)));
    let mut out: Vec<IngestFile> = files.into_iter().map(|(f, _)| f).collect();
    // Files of cleaned commits: number them in their order so that their rows stay distinct.
    for (i, file) in out.iter_mut().filter(|f| f.version < 0).enumerate() {
        file.index = i as i64;
    }
    Ok(out)
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
        return Ok(increment);
    };
    let current: HashMap<String, DataFile> = io::files(&increment.table)?.into_iter().map(|f| (f.path.clone(), f)).collect();
    let mut files = Vec::new();
    for (version, actions) in commits(&increment.table, m + 1, upto).await? {
        let Some(actions) = actions else {
            increment.rebuild = Some(Rebuild::LogCleaned { version });
            break;
        };
        if actions.iter().any(|a| matches!(a, Action::Remove(_))) {
            increment.rebuild = Some(Rebuild::RowsRemoved { version });
            break;
        }
        let adds = actions.into_iter().filter_map(|a| if let Action::Add(add) = a { Some(add) } else { None });
        for (index, add) in adds.enumerate() {
            if let Some(file) = current.get(&add_path(&add.path)) {
                files.push(IngestFile { file: file.clone(), version, index: index as i64 });
            }
        }
    }
    if increment.rebuild.is_some() {
        increment.files = all_files(&increment.table, upto).await?;
    } else {
        increment.files = files;
    }
    Ok(increment)
}

const ROW_IN_FILE: &str = "_ridelake_row_in_file";

/// The source columns that fill silver's `columns` (through the increment's map), those the
/// table has.
fn sources<'a>(increment: &'a BronzeIncrement, columns: &[&'a str]) -> Result<Vec<&'a str>> {
    let mut wanted: Vec<&str> = Vec::with_capacity(columns.len());
    for c in columns {
        let source = increment.map.source_of(c);
        if !wanted.contains(&source) {
            wanted.push(source);
        }
    }
    io::present_columns(&increment.table, &wanted)
}

/// Reads silver's `columns` (those whose source the table has, mapped by the increment's
/// [`StreamMap`]) of the increment's files, in ingest order, with the ingest order columns
/// [`INGEST_VERSION`] and [`INGEST_ROW`] (`index << 32 | row in file`).
pub async fn read(increment: &BronzeIncrement, columns: &[&str]) -> Result<DataFrame> {
    let frame = read_sources(increment, columns).await?;
    let mut wanted = columns.to_vec();
    wanted.extend([INGEST_VERSION, INGEST_ROW].into_iter().filter(|c| !columns.contains(c)));
    increment.map.apply(frame, &wanted)
}

async fn read_sources(increment: &BronzeIncrement, columns: &[&str]) -> Result<DataFrame> {
    let present = sources(increment, columns)?;
    let files: Vec<DataFile> = increment.files.iter().map(|f| f.file.clone()).collect();
    let frames = io::read_each(&increment.table, &files, Some(&present)).await?;
    let mut tagged = Vec::with_capacity(frames.len());
    for (frame, file) in frames.into_iter().zip(&increment.files) {
        tagged.push(frame.lazy().with_row_index(ROW_IN_FILE, None).with_columns([
            lit(file.version).cast(DataType::Int64).alias(INGEST_VERSION),
            (col(ROW_IN_FILE).cast(DataType::Int64) + lit(file.index << 32).cast(DataType::Int64)).alias(INGEST_ROW),
        ]).drop(cols([ROW_IN_FILE])));
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
    // Per file (commit version, place among its adds): its wanted rows, ascending and distinct.
    let mut wanted: HashMap<(i64, i64), Vec<usize>> = HashMap::new();
    for (version, row) in at {
        wanted.entry((*version, row >> 32)).or_default().push((row & 0xFFFF_FFFF) as usize);
    }
    for rows in wanted.values_mut() {
        rows.sort_unstable();
        rows.dedup();
    }
    let files: Vec<(&IngestFile, Vec<usize>)> =
        increment.files.iter().filter_map(|f| wanted.remove(&(f.version, f.index)).map(|rows| (f, rows))).collect();
    if !wanted.is_empty() {
        return Err(LakehouseError::Schema { table: increment.table.table_url().to_string(), message: "a change's bronze file is no longer in the table".into() });
    }
    let to_read: Vec<(DataFile, Vec<usize>)> = files.iter().map(|(f, rows)| (f.file.clone(), rows.clone())).collect();
    let frames = io::read_rows_each(&increment.table, &to_read, &present).await?;
    // Where each (file, row) landed in the frames stacked in file order.
    let mut start = HashMap::new();
    let mut offset: IdxSize = 0;
    for ((file, rows), frame) in files.iter().zip(&frames) {
        if frame.height() != rows.len() {
            return Err(LakehouseError::Schema { table: increment.table.table_url().to_string(), message: format!("file {} gave {} of {} selected rows", file.file.path, frame.height(), rows.len()) });
        }
        start.insert((file.version, file.index), (offset, rows));
        offset += rows.len() as IdxSize;
    }
    let mut positions = Vec::with_capacity(at.len());
    for (version, row) in at {
        let (first, rows) = start[&(*version, row >> 32)];
        let within = rows.binary_search(&((row & 0xFFFF_FFFF) as usize)).unwrap_or_default();
        positions.push(first + within as IdxSize);
    }
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
