//! A rebuild split into its work and its commit, so that the work can run anywhere.
//!
//! The driver (the silver run, holding the lease) decides the users and stages their files (not
//! committed; in slices of the user id, [`rebuild_users`]), cuts the rides into slices
//! ([`crate::slices`]) and hands each slice to a worker as a [`SliceTask`]: plain data naming the
//! bronze version the driver pinned, the staged users files, and where bronze's epochs start
//! ([`EpochMarks`], from the driver's one walk over the order columns). A worker ([`run_slice`])
//! reads all of bronze as of that version, keeps its slice's changes, decides them against the
//! users' roles in those files and stages its own files, none committed; it returns a
//! [`SliceOutput`]: the files' add actions and its counts. The driver then commits every table in
//! one transaction each, in the order that makes a crash harmless
//! (quarantine, users, pending, tombstones, rides: the commit point last).
//!
//! Who runs the workers: by default this process, one slice after another, with bronze's file
//! list and the users' roles already at hand; otherwise a [`SliceRunner`] (the Python package
//! hands the tasks, as JSON, to Ray or to any engine with a map). Every worker checks its rides
//! against the same users, so integrity holds wherever each runs. Nothing is committed before
//! every slice is back: a worker that dies leaves files no commit references (vacuum removes
//! them), and the engine runs its slice again or the run fails with silver's data as it was (a
//! first build leaves its tables created empty, without markers). When the run fails while an
//! engine still runs tasks (a lost lease), those tasks only leave such files.
//!
//! An incremental run's slices travel the same way: their tasks carry an
//! [`UpdateTask`](crate::update::UpdateTask) and [`run_slice`] hands them to
//! [`crate::update`].

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;
use polars::prelude::*;
use ridelake_core::bronze::{CDC_CURSOR, CDC_LOG_FILE, CDC_LOG_POS, CDC_UPDATED_AT};

use crate::cdc;
use crate::rules;
use crate::error::{LakehouseError, PolarsContext, Result};
use crate::increment::{self, BronzeIncrement, BronzeUsers};
use crate::io::{self, Staged, StagedFiles, WriteMode};
use crate::layout::LakeLayout;
use crate::lease::Lease;
use crate::order::{EpochMarks, EpochState, INGEST_ROW, INGEST_VERSION};
use crate::silver::{
    Clock, DELETED_TABLE, EXPIRED, PENDING_TABLE, QUARANTINE_TABLE, RIDES_MARKER, RIDES_TABLE, RIDES_USERS_MARKER, RideState, Roles, RunContext,
    RidesDecided, SilverOptions, SilverReport, SilverTable, Tables, USERS_TABLE, apply_users, change_sources, choose_users, count, decide_rides, input_markers, users_markers,
    expired_rows, other_ride_fields, parts_of, quarantine_rows, ride_change_sources, ride_rule_fields, ride_rules, users_written, with_bronze_ids, with_fields,
};
use crate::keys::KeyRange;
use crate::slices::{self, IdSample, Slice};
use crate::update::{self, UpdateOutput, UpdateTask};

/// A row's place in its bronze file, while a slice picks its rows.
const ROW_IN_FILE: &str = "_ridelake_row_in_file";

/// One slice of a rebuild, as the driver hands it to a worker.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SliceTask {
    /// The slice's place among the run's slices (from 0).
    pub index: usize,
    /// The ride ids the slice decides.
    pub slice: Slice,
    /// The run this task belongs to (a word the driver picks): an output is only taken from a
    /// task of this run.
    pub run: String,
    /// The bronze rides version the driver pinned: the worker reads all of bronze as of it.
    pub bronze_version: i64,
    /// The identity of that bronze table (a worker fails when the table was recreated since).
    pub bronze_table: i64,
    /// The users files the driver staged (paths relative to the silver users table, as in their
    /// add actions): the worker checks its rides against the roles they hold.
    pub users_files: Vec<String>,
    /// The hash of the model the driver maps bronze with; the worker must read the same model.
    pub model_hash: i64,
    /// The silver tables' names in the driver's model: the worker stages files into the same.
    #[serde(default)]
    pub silver_names: crate::model::SilverNames,
    /// Bronze's clock, which the driver read (when a link waits for a while): every worker
    /// counts waits from the same time.
    #[serde(default)]
    pub clock: Clock,
    /// Set for a slice of an incremental run: where the increment starts and the silver tables
    /// as the driver found them ([`crate::update`]). `users_files` then holds the users
    /// partitions the run rewrites.
    #[serde(default)]
    pub update: Option<UpdateTask>,
    /// Of a rebuild's slice: where bronze's epochs start, from the driver's walk over all of
    /// bronze, so that the worker prepares only its own changes. Without them, the worker walks
    /// every change itself.
    #[serde(default)]
    pub epochs: Option<EpochMarks>,
}

/// What one slice's decision counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SliceCounts {
    /// Ride changes of the slice read from bronze.
    pub changes: u64,
    /// Rides published.
    pub published: u64,
    /// Rides waiting for their users.
    pub pending: u64,
    /// Rides whose latest change is a delete.
    pub deleted: u64,
    /// Ride changes quarantined.
    pub quarantined: u64,
    /// Ride changes set aside by a model rule whose action is drop.
    #[serde(default)]
    pub dropped: u64,
    /// `_cdc_updated_at` (µs) of the oldest waiting ride, if any.
    pub oldest_pending_us: Option<i64>,
    /// Rides published with an accepted link that does not hold.
    #[serde(default)]
    pub unlinked: u64,
    /// Pending rides that waited longer than a `wait_for` link allows.
    #[serde(default)]
    pub expired: u64,
    /// Bronze files the slice did not read: their key statistics lie outside its range.
    #[serde(default)]
    pub files_skipped: u64,
}

impl SliceCounts {
    /// The counts of a decision (the changes read and quarantined are the caller's).
    pub(crate) fn of(decided: &RidesDecided) -> SliceCounts {
        SliceCounts {
            published: count(&decided.ready),
            pending: count(&decided.waiting),
            deleted: count(&decided.deletes),
            oldest_pending_us: decided.waiting.column(crate::order::UPDATED).ok().and_then(|c| c.as_materialized_series().i64().ok().and_then(|s| s.min())),
            unlinked: decided.ready.column(crate::silver::UNLINKED).map_or(0, |c| (c.len() - c.null_count()) as u64),
            expired: decided.waiting.column(EXPIRED).ok().and_then(|c| c.bool().ok().map(|b| b.sum().unwrap_or(0) as u64)).unwrap_or(0),
            ..SliceCounts::default()
        }
    }

    /// Adds these counts to a run's report.
    pub(crate) fn add_to(&self, report: &mut SilverReport) {
        report.rides_read += self.changes;
        report.rows_read += self.changes;
        report.rides_upserted += self.published;
        report.pending += self.pending;
        report.rides_deleted += self.deleted;
        report.rides_quarantined += self.quarantined;
        report.dropped += self.dropped;
        report.rides_unlinked += self.unlinked;
        report.rides_expired += self.expired;
        report.bronze_files_skipped += self.files_skipped;
        report.oldest_pending_us = match (report.oldest_pending_us, self.oldest_pending_us) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// What a worker returns for its slice: the files it staged per table (none committed), its
/// counts, the day partitions its published rides fall in and where the epoch count ends (all
/// of bronze: the same for every slice).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SliceOutput {
    /// The task this is the output of.
    pub task: SliceTask,
    /// Files of `silver/rides`.
    pub rides: StagedFiles,
    /// Files of `silver/rides_pending`.
    pub pending: StagedFiles,
    /// Files of `silver/rides_deleted`.
    pub tombstones: StagedFiles,
    /// Files of `silver/quarantine`, when the slice quarantined a change.
    pub quarantine: Option<StagedFiles>,
    /// What the decision counted.
    pub counts: SliceCounts,
    /// The day partitions of the published rides ([`crate::silver::WHOLE_TABLE`] when rides are
    /// not partitioned).
    pub days: Vec<(i32, i32, i32)>,
    /// The epoch state at the end of bronze (the rides' order markers).
    pub epochs: EpochState,
    /// Per model rule whose action is warn, the slice's changes that broke it.
    #[serde(default)]
    pub warned: Vec<(String, u64)>,
    /// The worker's wall time, in seconds.
    pub seconds: f64,
    /// Of a slice of an incremental run: the published rides that leave and what moved.
    #[serde(default)]
    pub update: Option<UpdateOutput>,
}

/// Runs the slices of a rebuild: each task through [`run_slice`] (or its equivalent in another
/// process), returning one output per task, in any order. An engine may run a task more than
/// once (a retried worker); any of its outputs will do.
pub trait SliceRunner: Send + Sync + std::fmt::Debug {
    /// Runs `tasks` of the lake `layout`.
    fn run<'a>(&'a self, layout: &'a LakeLayout, tasks: Vec<SliceTask>) -> BoxFuture<'a, Result<Vec<SliceOutput>>>;
}

/// The worker half: decides the rides of `task`'s slice and stages their files (see the module
/// documentation). Reads the users' roles from the users files the task names.
pub async fn run_slice(layout: &LakeLayout, task: &SliceTask) -> Result<SliceOutput> {
    if task.update.is_some() {
        return update::run_update_slice(layout, task).await;
    }
    let started = std::time::Instant::now();
    let bronze = pinned_bronze(layout, task).await?;
    let roles = staged_roles(layout, &task.users_files).await?;
    let mut output = decide_slice(layout, task, &roles, &bronze).await?;
    output.seconds = started.elapsed().as_secs_f64();
    Ok(output)
}

/// All of bronze rides as the task's driver pinned it, read through this worker's model (which
/// must be the driver's).
async fn pinned_bronze(layout: &LakeLayout, task: &SliceTask) -> Result<BronzeIncrement> {
    same_model(layout, task)?;
    let map = &layout.model.rides;
    increment::pinned(&layout.bronze(&map.stream)?, &layout.storage_options(), task.bronze_version, task.bronze_table, map).await
}

/// Fails unless this worker reads the model the task's driver maps bronze with.
pub(crate) fn same_model(layout: &LakeLayout, task: &SliceTask) -> Result<()> {
    if layout.model.hash() != task.model_hash || layout.model.names != task.silver_names {
        return Err(LakehouseError::Setting {
            name: "model".into(),
            message: format!("this worker reads {}, not the model the run's driver maps bronze with; give every worker the same model file", layout.model.origin),
        });
    }
    Ok(())
}

/// The roles of the users in `files`, files of the silver users table the driver staged (their
/// `id` and `type` columns only).
async fn staged_roles(layout: &LakeLayout, files: &[String]) -> Result<Roles> {
    let url = layout.silver(Tables::USERS)?;
    let users = io::open(&url, &layout.storage_options()).await?.ok_or_else(|| LakehouseError::MissingTable(url.to_string()))?;
    let files: Vec<io::DataFile> = files.iter().map(|path| io::DataFile::staged(path)).collect();
    let roles = io::read_columns(&users, &files, Some(&["id", "type"])).await?;
    Roles::of(&roles)
}

/// [`run_slice`] with the users' roles and pinned bronze at hand.
async fn decide_slice(layout: &LakeLayout, task: &SliceTask, roles: &Roles, bronze: &BronzeIncrement) -> Result<SliceOutput> {
    let started = std::time::Instant::now();
    let options = layout.storage_options();
    let mut epochs = EpochState::default();
    let (changes, files_skipped) = slice_changes(bronze, &task.slice, &mut epochs, task.epochs.as_ref()).await?;
    let (rules, delete_rules) = ride_rules(&bronze.map);
    let chosen = rules::choose(&changes, "id", &rules, &delete_rules, &bronze.map)?;
    let (latest, bad, dropped, warned) = (chosen.latest, chosen.quarantined, chosen.dropped, chosen.warned);
    let changes_read = count(&changes);
    drop(changes);
    let bad = quarantine_rows(&with_bronze_ids(bad, bronze).await?, "rides", &bronze.map)?;
    let latest = with_fields(latest, bronze, &other_ride_fields(&bronze.map)).await?;
    let decided = decide_rides(latest, &RideState::default(), roles, &bronze.map, task.clock)?;
    let counts = SliceCounts { changes: changes_read, quarantined: count(&bad), dropped, files_skipped, ..SliceCounts::of(&decided) };
    // The rides that waited too long are listed in the quarantine too, in files of their own (an
    // incremental run replaces the files holding them).
    let expired = if bronze.map.links.waits_for_any() { expired_rows(&decided.waiting, &bronze.map)? } else { DataFrame::empty() };
    let tables = Tables::of(layout)?;
    let days = parts_of(&decided.ready, bronze.map.partition.is_some())?.into_iter().collect();
    let quarantine = if bad.height() + expired.height() > 0 { Some(stage_apart(&tables, &options, &QUARANTINE_TABLE, &[&bad, &expired], true).await?) } else { None };
    Ok(SliceOutput {
        task: task.clone(),
        rides: stage(&tables, &options, &RIDES_TABLE, &decided.ready, true).await?,
        pending: stage(&tables, &options, &PENDING_TABLE, &decided.waiting, true).await?,
        tombstones: stage(&tables, &options, &DELETED_TABLE, &decided.tombstones, true).await?,
        quarantine,
        counts,
        days,
        epochs,
        warned,
        seconds: started.elapsed().as_secs_f64(),
        update: None,
    })
}

/// Stages `rows` as new files of `table` (created when missing), for a commit that `overwrites`
/// it (the rows may then bring new columns) or not.
pub(crate) async fn stage(tables: &Tables, options: &std::collections::HashMap<String, String>, table: &'static SilverTable, rows: &DataFrame, overwrites: bool) -> Result<StagedFiles> {
    let mut staged = Staged::open(&tables.target(table, options), rows, overwrites).await?;
    staged.stage(rows).await?;
    Ok(staged.into_files())
}

/// Stages the non-empty `frames` (of one schema) as new files of `table`, each in files of its own.
pub(crate) async fn stage_apart(tables: &Tables, options: &std::collections::HashMap<String, String>, table: &'static SilverTable, frames: &[&DataFrame], overwrites: bool) -> Result<StagedFiles> {
    let first = frames.iter().find(|f| f.height() > 0).or(frames.first()).copied().cloned().unwrap_or_default();
    let mut staged = Staged::open(&tables.target(table, options), &first, overwrites).await?;
    for frame in frames {
        staged.stage(frame).await?;
    }
    Ok(staged.into_files())
}

/// The slices of a rebuild (or of an `increment`) of `bronze` (rides, or users): as many as the
/// memory budget needs for its changes (their count from the files' statistics; an increment's
/// slices hold at least [`slices::MIN_INCREMENT_SLICE_CHANGES`]) beside `held_bytes` the run holds
/// throughout, or as the run asks; their boundaries from a sample of the changes' ids (a first
/// pass over the id column only). A rebuild's pass also walks the order columns and returns
/// where the epochs start, so that each slice prepares its own changes only.
pub(crate) async fn plan_slices(bronze: &BronzeIncrement, run: &SilverOptions, held_bytes: u64, increment: bool) -> Result<(Vec<Slice>, Option<EpochMarks>)> {
    let count_for = if increment { slices::count_for_increment } else { slices::count_for };
    let known: Option<u64> = bronze.files.iter().map(|f| f.file.rows).sum();
    let budget = if run.slices.is_some() { None } else { slices::resolve_budget(run.memory_budget)? };
    let asked = run.slices.map(|n| n.clamp(1, slices::MAX_SLICES as usize));
    let wanted = match (asked, known, budget) {
        (Some(n), _, _) => n,
        (None, Some(changes), _) => count_for(budget, changes, held_bytes),
        // Files without statistics: the sampling pass counts them.
        (None, None, Some(_)) => 2,
        (None, None, None) => 1,
    };
    if wanted <= 1 {
        return Ok((vec![Slice::default()], None));
    }
    let mut sample = IdSample::default();
    // (an increment's epochs go on from its markers' state: its slices walk them themselves)
    let mut marks = (!increment).then(EpochMarks::default);
    let columns: &[&str] = if marks.is_some() { &["id", CDC_CURSOR, CDC_LOG_FILE, CDC_LOG_POS, CDC_UPDATED_AT] } else { &["id"] };
    increment::read_by_file(bronze, columns, |rows| {
        if let Some(marks) = &mut marks {
            cdc::mark_epochs(&rows, marks)?;
        }
        let step = "sampling ids";
        let ids = rows.column("id").step(step)?.as_materialized_series();
        if crate::keys::is_text(ids.dtype()) {
            sample.extend_text(ids.str().step(step)?.iter());
        } else {
            sample.extend(ids.cast(&DataType::Int64).step(step)?.i64().step(step)?.iter());
        }
        Ok(())
    })
    .await?;
    let count = match (asked, known) {
        (Some(n), _) => n,
        (None, Some(_)) => wanted,
        (None, None) => count_for(budget, sample.changes(), held_bytes),
    };
    Ok((Slice::between(&sample.boundaries(count)), marks))
}

/// The prepared changes of the rides in `slice`: every bronze file is read (the key, rule and
/// order columns), one at a time; its rows get their epochs from where the rows before them left
/// the count (`epochs`, left where all of bronze leaves it), then only the slice's are kept.
/// With the epoch `marks` of a walk over all of bronze from the start, only the slice's rows are
/// read and prepared, their epochs looked up ([`marked_changes_in`]). Also gives the bronze files
/// not read (their keys all outside the slice).
pub(crate) async fn slice_changes(bronze: &BronzeIncrement, slice: &Slice, epochs: &mut EpochState, marks: Option<&EpochMarks>) -> Result<(DataFrame, u64)> {
    changes_in(bronze, slice, &ride_change_sources(&bronze.map), &ride_rule_fields(&bronze.map), epochs, marks).await
}

/// The prepared changes of `bronze` (rides or users) whose key is in `slice`, read from `columns`
/// and keeping `fields` (see [`slice_changes`]), with the files not read.
async fn changes_in(bronze: &BronzeIncrement, slice: &Slice, columns: &[&str], fields: &[&str], epochs: &mut EpochState, marks: Option<&EpochMarks>) -> Result<(DataFrame, u64)> {
    if bronze.files.is_empty() {
        let prepared = cdc::prepare(&increment::read(bronze, columns).await?, fields, epochs)?;
        return Ok((prepared.lazy().filter(slice.holds("id")).collect().step("slicing ride changes")?, 0));
    }
    if let Some(marks) = marks.filter(|_| !slice.is_all()) {
        return marked_changes_in(bronze, slice, columns, fields, epochs, marks).await;
    }
    let mut parts: Vec<LazyFrame> = Vec::new();
    increment::read_by_file(bronze, columns, |rows| {
        let prepared = cdc::prepare(&rows, fields, epochs)?;
        parts.push(if slice.is_all() { prepared.lazy() } else { prepared.lazy().filter(slice.holds("id")).collect().step("slicing ride changes")?.lazy() });
        Ok(())
    })
    .await?;
    Ok((concat(parts, UnionArgs::default()).step("slicing ride changes")?.collect().step("slicing ride changes")?, 0))
}

/// [`changes_in`] with the epochs known, in two passes so that a slice holds its own changes
/// only: each file's key column is read to pick the slice's rows (their place in the file gives
/// their epoch, looked up in `marks`), then only those rows are read in `columns` (the Parquet
/// reader skips the others) and prepared. A slice thus never holds a whole file's key, rule and
/// order columns, whose size depends on bronze's files, not on the slice. A file whose key
/// statistics lie outside the slice is not read at all: with auto-increment ids, a snapshot's
/// files hold consecutive ids, and a binlog's mostly the recent ones, so a slice reads few files.
/// `epochs` is left where `marks` end. Also gives the files not read.
async fn marked_changes_in(bronze: &BronzeIncrement, slice: &Slice, columns: &[&str], fields: &[&str], epochs: &mut EpochState, marks: &EpochMarks) -> Result<(DataFrame, u64)> {
    let step = "slicing changes";
    if marks.files() != bronze.files.len() as u64 {
        return Err(LakehouseError::Task(format!("the driver walked {} bronze files for the epochs, this worker reads {}", marks.files(), bronze.files.len())));
    }
    let ranges = match bronze.map.plain_integer_key() {
        Some(key) if !slice.is_all() => io::integer_key_ranges(&bronze.table, key)?,
        _ => Default::default(),
    };
    let range_of = |file: &increment::IngestFile| ranges.get(&file.file.path).map(|&(min, max)| KeyRange::Int(min, max));
    for (i, file) in bronze.files.iter().enumerate() {
        // (a file skipped must be the one the driver walked: its row count, when recorded)
        if let (Some(rows), Some(walked)) = (file.file.rows, marks.rows_of(i as u64))
            && rows != walked
        {
            return Err(LakehouseError::Task(format!("the driver walked {walked} rows of bronze file {i} for the epochs, its statistics count {rows}")));
        }
    }
    // 1. The slice's rows: where each is in bronze (its ingest version and row) and its epoch.
    let (mut at, mut given): (Vec<(i64, i64)>, Vec<i64>) = (Vec::new(), Vec::new());
    let mut files_read = 0u64;
    increment::read_files_where(bronze, &["id"], |file| slice.may_hold(range_of(file).as_ref()), |i, rows| {
        files_read += 1;
        let file = i as u64;
        if marks.rows_of(file) != Some(rows.height() as u64) {
            return Err(LakehouseError::Task(format!("the driver walked {:?} rows of bronze file {file} for the epochs, this worker reads {}", marks.rows_of(file), rows.height())));
        }
        let ours = rows.lazy().with_row_index(ROW_IN_FILE, None).filter(slice.holds("id")).select([col(ROW_IN_FILE), col(INGEST_VERSION), col(INGEST_ROW)]).collect().step(step)?;
        let in_file = ours.column(ROW_IN_FILE).step(step)?.as_materialized_series().cast(&DataType::UInt64).step(step)?;
        given.extend(in_file.u64().step(step)?.into_no_null_iter().map(|row| marks.epoch_at(file, row)));
        let (versions, ingest_rows) = (ours.column(INGEST_VERSION).step(step)?.i64().step(step)?, ours.column(INGEST_ROW).step(step)?.i64().step(step)?);
        at.extend(versions.into_no_null_iter().zip(ingest_rows.into_no_null_iter()));
        Ok(())
    })
    .await?;
    *epochs = marks.end();
    // 2. Those rows, in `columns`, in ingest order (as picked), tagged again with their place.
    let sources: Vec<&str> = columns.iter().copied().filter(|c| ![INGEST_VERSION, INGEST_ROW].contains(c)).collect();
    let mut ours = increment::read_rows(bronze, &sources, &at).await?;
    let (versions, ingest_rows): (Vec<i64>, Vec<i64>) = at.into_iter().unzip();
    ours.with_column(Column::new(INGEST_VERSION.into(), versions)).step(step)?;
    ours.with_column(Column::new(INGEST_ROW.into(), ingest_rows)).step(step)?;
    Ok((cdc::prepare_with(&ours, fields, cdc::Epochs::Given(given))?, (bronze.files.len() as u64).saturating_sub(files_read)))
}

/// Runs `work` while renewing `lease` every third of its time to live, so that a long fan-out
/// keeps the lease; fails as soon as a renewal does (another run took the lease).
pub(crate) async fn while_renewing<T>(lease: &mut Lease, work: impl Future<Output = Result<T>>) -> Result<T> {
    let every = (lease.ttl() / 3).max(Duration::from_millis(100));
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return done,
            () = tokio::time::sleep(every) => lease.renew().await?,
        }
    }
}

/// The slices' outputs, one per task in task order (the first of a task's outputs, when an
/// engine returns more); fails when an output is not of one of these tasks, or a task has none.
pub(crate) fn in_task_order(tasks: &[SliceTask], outputs: Vec<SliceOutput>) -> Result<Vec<SliceOutput>> {
    let mut slots: Vec<Option<SliceOutput>> = tasks.iter().map(|_| None).collect();
    for output in outputs {
        let index = output.task.index;
        match (slots.get_mut(index), tasks.get(index)) {
            (Some(slot), Some(task)) if *task == output.task => {
                slot.get_or_insert(output);
            }
            _ => return Err(LakehouseError::Task(format!("the engine returned an output of slice {index} that is not a task of this run"))),
        }
    }
    slots.into_iter().enumerate().map(|(k, slot)| slot.ok_or_else(|| LakehouseError::Task(format!("the engine returned no output for slice {k} of {}", tasks.len())))).collect()
}

/// A run's tasks, one per slice of `plan`, for a new run word: bronze rides as pinned, the users
/// files staged, the model's hash and the clock (a rebuild's; an increment adds its part).
pub(crate) fn slice_tasks(cx: &RunContext<'_, '_>, plan: &[Slice], bronze_rides: &BronzeIncrement, users_files: &StagedFiles, epochs: Option<&EpochMarks>) -> Vec<SliceTask> {
    let run = run_word();
    plan.iter()
        .enumerate()
        .map(|(index, slice)| SliceTask {
            index,
            slice: slice.clone(),
            run: run.clone(),
            bronze_version: bronze_rides.upto,
            bronze_table: bronze_rides.table_id,
            users_files: users_files.adds.iter().map(|add| add.path.clone()).collect(),
            model_hash: cx.model_hash,
            silver_names: cx.tables.names.clone(),
            clock: cx.clock,
            update: None,
            epochs: epochs.cloned(),
        })
        .collect()
}

/// A word that names one run among others (process, time): tasks carry it.
fn run_word() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    format!("{}-{nanos:x}", std::process::id())
}

/// Who decides a rebuild's slices: this process (with the users' roles at hand), or an engine.
enum Workers<'a> {
    Here(Roles),
    Engine(&'a dyn SliceRunner),
}

/// A rebuild's users, decided and staged (not committed) by [`rebuild_users`].
pub(crate) struct UsersRebuilt {
    /// The staged files of silver users.
    pub(crate) files: StagedFiles,
    /// Every user's `id` and `type`: what the rides' links are checked against.
    pub(crate) roles: DataFrame,
    /// The quarantined user changes, with their bronze ids.
    pub(crate) bad: DataFrame,
    /// The day partitions of silver users written.
    pub(crate) touched: BTreeSet<(i32, i32, i32)>,
    /// The epoch state at the end of each users stream.
    pub(crate) epochs: Vec<EpochState>,
}

/// A rebuild's users: decided in slices of the user id, as many as the memory budget needs for
/// bronze's user changes beside nothing else (or as many as the run asks), each slice staged as
/// soon as it is decided; only the users' roles are kept. Users are the small table, but a large
/// city has millions of accounts, each with its history of changes: decided whole, they would
/// cost what a slice of rides costs, many times over. With users from several source tables,
/// each is sliced on its own (their keys never meet), and every slice is staged in silver users'
/// columns ([`StreamMap::joined`]).
pub(crate) async fn rebuild_users(cx: &mut RunContext<'_, '_>, run: &SilverOptions, users: &BronzeUsers) -> Result<UsersRebuilt> {
    let mut staged: Option<Staged> = None;
    let (mut roles, mut bad, mut touched, mut all_epochs) = (Vec::new(), Vec::new(), BTreeSet::new(), Vec::new());
    let mut slices = 0;
    for bronze in &users.streams {
        let (plan, marks) = plan_slices(bronze, run, 0, false).await?;
        let fields = bronze.map.data_columns();
        let columns = change_sources(&fields);
        let mut epochs = EpochState::default();
        for slice in &plan {
            // (every slice ends where the stream ends: it starts from the start)
            epochs = EpochState::default();
            let (changes, files_skipped) = changes_in(bronze, slice, &columns, &fields, &mut epochs, marks.as_ref()).await?;
            cx.report.bronze_files_skipped += files_skipped;
            let (mut latest, mut quarantined) = choose_users(cx.report, changes, bronze).await?;
            if users.streams.len() > 1 {
                (latest, quarantined) = (users.map.aligned(latest)?, users.map.aligned(quarantined)?);
            }
            let applied = apply_users(cx.report, (latest, quarantined), DataFrame::empty(), &users.map)?;
            if staged.is_none() {
                staged = Some(Staged::open(&cx.target(&USERS_TABLE), &applied.all, true).await?);
            }
            if let Some(files) = &mut staged {
                files.stage(&applied.all).await?;
            }
            roles.push(applied.all.select(["id", "type"]).step("collecting user roles")?.lazy());
            bad.push(applied.bad.lazy());
            touched.extend(applied.touched);
        }
        slices += plan.len();
        all_epochs.push(epochs);
    }
    let step = "collecting decided users";
    let stack = |frames: Vec<LazyFrame>| -> Result<DataFrame> { concat(frames, UnionArgs { diagonal: true, ..Default::default() }).step(step)?.collect().step(step) };
    let files = staged.map(Staged::into_files).unwrap_or_default();
    cx.report.user_slices = slices as u64;
    cx.lap(&format!("users: {slices} slices"));
    Ok(UsersRebuilt { files, roles: stack(roles)?, bad: stack(bad)?, touched, epochs: all_epochs })
}

/// A rebuild's rides (module documentation): users staged first, the slices run here or by
/// `engine`, then every table committed, rides (the commit point) last.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn rebuild_rides(
    cx: &mut RunContext<'_, '_>,
    layout: &LakeLayout,
    users: UsersRebuilt,
    bronze_users: &BronzeUsers,
    bronze_rides: &BronzeIncrement,
    (plan, marks): &(Vec<Slice>, Option<EpochMarks>),
    engine: Option<&dyn SliceRunner>,
) -> Result<()> {
    // 1. users: staged, not committed ([`rebuild_users`]); every slice checks its rides against
    // these files. Here, the roles come from the decided users at hand; an engine's workers read
    // the files.
    let UsersRebuilt { files: users_files, roles, bad, touched, epochs: users_epochs } = users;
    let workers = match engine {
        Some(engine) => Workers::Engine(engine),
        None => Workers::Here(Roles::of(&roles)?),
    };
    drop(roles);
    let users_bad = quarantine_rows(&bad, "users", &bronze_rides.map)?;
    drop(bad);

    // 2. the slices.
    let tasks = slice_tasks(cx, plan, bronze_rides, &users_files, marks.as_ref());
    cx.report.slices = plan.len() as u64;
    let outputs = match workers {
        Workers::Engine(engine) => while_renewing(cx.guard.lease, engine.run(layout, tasks.clone())).await?,
        Workers::Here(roles) => {
            let here = async {
                let mut outputs = Vec::with_capacity(tasks.len());
                for task in &tasks {
                    outputs.push(decide_slice(layout, task, &roles, bronze_rides).await?);
                }
                Ok(outputs)
            };
            while_renewing(cx.guard.lease, here).await?
        }
    };
    let outputs = in_task_order(&tasks, outputs)?;
    let epochs = outputs.first().map(|o| o.epochs).unwrap_or_default();
    if outputs.iter().any(|o| o.epochs != epochs) {
        return Err(LakehouseError::Task("the slices of one run ended bronze in different epoch states (bronze changed under a worker)".into()));
    }
    let mut days: BTreeSet<(i32, i32, i32)> = BTreeSet::new();
    let (mut rides, mut pending, mut tombstones, mut quarantine) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for output in outputs {
        output.counts.add_to(cx.report);
        cx.report.count_rules(0, &output.warned);
        days.extend(output.days);
        cx.report.slice_seconds.push(output.seconds);
        rides.push(output.rides);
        pending.push(output.pending);
        tombstones.push(output.tombstones);
        quarantine.extend(output.quarantine);
    }
    cx.report.users_quarantined = count(&users_bad);
    cx.report.quarantined = cx.report.users_quarantined + cx.report.rides_quarantined;
    cx.lap(&format!("rides: {} slices", plan.len()));

    // 3. commit, the commit point last.
    // quarantine: replaced whole (emptied when the rebuild found nothing wrong; the users' part,
    // even empty, carries the columns when they changed).
    if !quarantine.is_empty() || users_bad.height() > 0 || io::open(&cx.tables.quarantine, cx.options).await?.is_some() {
        quarantine.insert(0, stage(cx.tables, cx.options, &QUARANTINE_TABLE, &users_bad, true).await?);
        cx.guard.next().await?;
        let written = io::commit_staged(&cx.target(&QUARANTINE_TABLE), quarantine, &WriteMode::Overwrite, &[]).await?;
        cx.report.written.push(written);
    }
    cx.lap("write quarantine");
    // users: their own commit point; rides name the version.
    cx.guard.next().await?;
    let markers = users_markers(bronze_users, &users_epochs, cx.model_hash);
    let written = io::commit_staged(&cx.target(&USERS_TABLE), vec![users_files], &WriteMode::Overwrite, &markers).await?;
    let users_version = users_written(cx, written, &touched);
    let staged = StagedRides { pending, tombstones, rides };
    commit_rides(cx, bronze_rides, &epochs, users_version, staged, &WriteMode::Overwrite, days.len() as u64).await
}

/// The files of a run's ride tables, staged by its slices.
pub(crate) struct StagedRides {
    pub(crate) pending: Vec<StagedFiles>,
    pub(crate) tombstones: Vec<StagedFiles>,
    pub(crate) rides: Vec<StagedFiles>,
}

/// Commits a run's staged ride tables after its users (version `users_version`): pending and
/// tombstones (replaced whole, marked with the bronze rides version they reflect), then rides,
/// the run's commit point, replacing what `rides_mode` says (`partitions` rewritten) with the
/// markers of bronze rides and `epochs`.
pub(crate) async fn commit_rides(
    cx: &mut RunContext<'_, '_>,
    bronze_rides: &BronzeIncrement,
    epochs: &EpochState,
    users_version: i64,
    staged: StagedRides,
    rides_mode: &WriteMode,
    partitions: u64,
) -> Result<()> {
    let rides_markers = [(RIDES_MARKER.to_owned(), bronze_rides.upto)];
    for (parts, table) in [(staged.pending, &PENDING_TABLE), (staged.tombstones, &DELETED_TABLE)] {
        cx.guard.next().await?;
        let written = io::commit_staged(&cx.target(table), parts, &WriteMode::Overwrite, &rides_markers).await?;
        cx.report.written.push(written);
    }
    cx.lap("write pending and tombstones");
    let mut markers = input_markers(RIDES_MARKER, bronze_rides, epochs, cx.model_hash);
    markers.push((RIDES_USERS_MARKER.to_owned(), users_version));
    cx.guard.next().await?;
    let written = io::commit_staged(&cx.target(&RIDES_TABLE), staged.rides, rides_mode, &markers).await?;
    cx.report.written.push(written);
    cx.report.partitions_rewritten += partitions;
    cx.lap("write rides");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_and_outputs_cross_processes_as_json() {
        let task = task(2, "run-1");
        let text = serde_json::to_string(&task).expect("task to JSON");
        assert_eq!(serde_json::from_str::<SliceTask>(&text).expect("task from JSON"), task);
        let output = SliceOutput { task: task.clone(), days: vec![(2026, 11, 30)], counts: SliceCounts { changes: 3, oldest_pending_us: Some(-1), ..Default::default() }, ..Default::default() };
        let back: SliceOutput = serde_json::from_str(&serde_json::to_string(&output).expect("output to JSON")).expect("output from JSON");
        assert_eq!((back.task, back.days, back.counts, back.epochs), (task, vec![(2026, 11, 30)], output.counts, output.epochs));
    }

    fn task(index: usize, run: &str) -> SliceTask {
        SliceTask {
            index,
            // (task 2's keys are text, which looks like numbers in its recheck list)
            slice: Slice { from: Some(if index == 2 { crate::keys::Key::Text("Acc_7f-2".into()) } else { crate::keys::Key::Int(10 * index as i64) }), to: None },
            run: run.to_owned(),
            bronze_version: 7,
            bronze_table: -3,
            users_files: vec!["year=2026/month=11/day=30/part-0.parquet".into()],
            model_hash: 99,
            silver_names: crate::model::SilverNames { users: "members".into(), rides: "journeys".into() },
            clock: Clock { micros: Some(1_764_496_800_123_000) },
            update: (index == 2).then(|| UpdateTask { after: 4, users: Some(3), users_touched: vec![(2026, 11, 30)], recheck: crate::keys::Keys::Text(vec!["5".into(), "Acc_8".into()]), ..Default::default() }),
            epochs: (index == 1).then(|| {
                let mut marks = EpochMarks::default();
                marks.walk_file([(Some((crate::order::Scale::Binlog, 5 << 32)), Some(10)), (Some((crate::order::Scale::Binlog, 2 << 32)), Some(11))]);
                marks
            }),
        }
    }

    #[test]
    fn outputs_are_put_back_in_task_order_and_must_be_of_the_run() {
        let tasks: Vec<SliceTask> = (0..3).map(|k| task(k, "run-1")).collect();
        let out = |index: usize, seconds: f64| SliceOutput { task: task(index, "run-1"), seconds, ..Default::default() };
        let ordered = in_task_order(&tasks, vec![out(2, 0.0), out(0, 0.0), out(1, 0.0)]).expect("all there");
        assert_eq!(ordered.iter().map(|o| o.task.index).collect::<Vec<_>>(), [0, 1, 2]);
        // A retried task may come back twice: the first output is kept.
        let retried = in_task_order(&tasks, vec![out(1, 1.0), out(0, 0.0), out(2, 0.0), out(1, 2.0)]).expect("a retry");
        assert_eq!(retried[1].seconds, 1.0);
        assert!(in_task_order(&tasks, vec![out(0, 0.0), out(2, 0.0)]).is_err(), "a lost slice");
        assert!(in_task_order(&tasks[..2], vec![out(0, 0.0), out(1, 0.0), out(2, 0.0)]).is_err(), "a slice the run does not have");
        let stale = SliceOutput { task: task(1, "run-0"), ..Default::default() };
        assert!(in_task_order(&tasks, vec![out(0, 0.0), stale, out(2, 0.0)]).is_err(), "an output of another run");
    }
}
