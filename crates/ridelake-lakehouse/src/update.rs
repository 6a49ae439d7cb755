//! An incremental run in slices, for increments larger than the memory budget.
//!
//! An incremental run whose increment fits the budget decides all its ride changes at once
//! (`silver::update_rides`). A larger one (a long-paused pipeline catching up, a backfill) cuts
//! the ride ids into the same key ranges a rebuild uses ([`crate::slices`]) and decides them one
//! slice after another. Each slice holds only its own rides:
//! - its changes (every file of the increment is read in turn, and its epochs counted from where
//!   the files before it left the count, as in a rebuild);
//! - the published rows of its changed rides (read from the files that hold them, not whole
//!   partitions), its part of `rides_pending` and `rides_deleted`, and the published rides of
//!   retyped users in its range;
//! - its decision (the same pure [`decide_rides`] as an unsliced run), whose rows it stages at
//!   once: the new and changed rides as new files of `rides`, its part of pending, tombstones
//!   and quarantine.
//!
//! What a slice keeps for later is small: the ids of the published rides that leave (deleted,
//! withdrawn or replaced) and the day partitions they leave from (the whole table, when rides are
//! not partitioned). After the last slice, those partitions are rewritten without the leaving
//! rides, a few files at a time (a file's kept rows stay in its partition). The tables
//! are then committed as an unsliced run commits them: quarantine (appended), users, pending
//! and tombstones (replaced), and rides last, the commit point, replacing the rewritten
//! partitions with the slices' new files and the partitions' kept rows in one transaction.
//! Nothing is committed before the last slice, so a crash leaves unreferenced files only.
//!
//! A touched partition therefore gets a file per slice that published into it, besides its kept
//! rows; maintenance's compaction merges them. The content is the unsliced run's (invariant 6 of
//! docs/silver-core.md, tested by `tests/silver_slices.rs`).
//!
//! The slices may run anywhere, as a rebuild's do ([`crate::rebuild`]): the driver stages the
//! users partitions the run rewrites before the slices (committing them after, where an unsliced
//! run writes them), and hands each slice to a worker as a [`SliceTask`] whose [`UpdateTask`]
//! names where the increment starts and the version of every silver table as the driver found
//! it. A worker ([`run_update_slice`]) opens each at that version, reads the increment as of the
//! pinned bronze version, and checks its rides against the users the driver's run decides: the
//! users as the driver found them, except the rewritten partitions, which it reads from the
//! staged files. Its [`UpdateOutput`] carries what the driver keeps of a slice (the leaving ids
//! and the touched partitions); the partition rewrite and every commit stay on the driver
//! (tested by `tests/silver_engines.rs` and, on Ray, `tests/e2e/test_ray.py`).

use std::collections::{BTreeSet, HashMap};

use deltalake::DeltaTable;
use polars::prelude::*;

use ridelake_core::bronze::RAW_ID;

use crate::cdc;
use crate::rules;
use crate::error::{LakehouseError, PolarsContext, Result};
use crate::increment::{self, BronzeIncrement, BronzeUsers};
use crate::io::{self, DataFile, StagedFiles};
use crate::layout::LakeLayout;
use crate::order::EpochState;
use crate::rebuild::{self, SliceCounts, SliceOutput, SliceRunner, SliceTask};
use crate::silver::{
    Clock, DELETED_TABLE, EXPIRED, PENDING_TABLE, QUARANTINE_TABLE, RIDES_MARKER, RIDES_TABLE, RideState, Roles, RunContext, Tables,
    USERS_TABLE, UsersDecided, as_of_marker, commit_quarantine, count, expired_rows, decide_rides, files_holding, files_in,
    users_markers, other_ride_fields, parts_of, not_quarantined, quarantine_rows, ride_output_columns, ride_rules, rides_to_check_again,
    users_to_write, users_written, with_bronze_ids, with_fields,
};
use crate::keys::Keys;
use crate::model::StreamMap;
use crate::slices::Slice;

/// Files read at once when a slice reads published rows or its part of a companion table.
const FILES_AT_ONCE: usize = 8;

/// What a worker needs, besides its slice, to decide a slice of an incremental run: where the
/// increment starts and silver as the driver found it (each table's version; `None`: no table).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct UpdateTask {
    /// Silver rides' marker: the increment is what bronze added after this version.
    pub after: i64,
    /// The rides' epoch state at the marker.
    pub epochs: EpochState,
    /// Version of silver `users` the driver read.
    pub users: Option<i64>,
    /// Version of silver `rides` the driver read.
    pub rides: Option<i64>,
    /// Version of `rides_pending` at the marker.
    pub pending: Option<i64>,
    /// Version of `rides_deleted` at the marker.
    pub deleted: Option<i64>,
    /// Version of `quarantine` the driver read.
    pub quarantine: Option<i64>,
    /// The users partitions the run rewrites; their new files are the task's `users_files`.
    pub users_touched: Vec<(i32, i32, i32)>,
    /// The slice's published rides to check again (their user changed type, or arrived for an
    /// unlinked ride).
    pub recheck: Keys,
}

/// What a worker returns of a slice of an incremental run, besides its staged files.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct UpdateOutput {
    /// Rides that left pending for `rides`.
    pub released: u64,
    /// Published rides sent back to pending.
    pub withdrawn: u64,
    /// Ids of published rides that leave their partition.
    pub leaving: Keys,
    /// Partitions that gain or lose rides.
    pub touched: Vec<(i32, i32, i32)>,
}

/// What one slice of an incremental run staged and found.
#[derive(Default)]
struct UpdateSlice {
    rides: StagedFiles,
    pending: StagedFiles,
    tombstones: StagedFiles,
    quarantine: Option<StagedFiles>,
    counts: SliceCounts,
    /// The slice's rides that waited too long (quarantine rows), when a link waits for a while.
    expired: Option<DataFrame>,
    released: u64,
    withdrawn: u64,
    /// Ids of published rides that leave their partition.
    leaving: Keys,
    /// Partitions that gain or lose rides.
    touched: BTreeSet<(i32, i32, i32)>,
    epochs: EpochState,
    seconds: f64,
    /// Per model rule whose action is warn, the slice's changes that broke it.
    warned: Vec<(String, u64)>,
}

/// What every slice reads the same: silver as the run found it.
struct Before<'a> {
    rides: Option<&'a DeltaTable>,
    ride_files: Vec<DataFile>,
    pending: Option<DeltaTable>,
    deleted: Option<DeltaTable>,
    /// Ids of published rides to check again: those of users who changed type, and the unlinked
    /// rides of the users the run changed.
    retyped_rides: DataFrame,
    /// `_airbyte_raw_id`s already in quarantine.
    quarantined: Option<DataFrame>,
}

/// The silver tables as an incremental run's driver found them, which its slices start from.
pub(crate) struct Found {
    /// Silver rides (`None`: not there yet).
    pub(crate) rides: Option<DeltaTable>,
    /// Silver users' version.
    pub(crate) users_version: Option<i64>,
    /// The rides marker: the increment starts after it.
    pub(crate) marker: Option<i64>,
    /// The rides' epoch state at the marker.
    pub(crate) epochs: EpochState,
}

/// An incremental run's rides, decided in the slices of `plan`, here one after another or by
/// `engine`'s workers (module documentation).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn update_rides_in_slices(
    cx: &mut RunContext<'_, '_>,
    layout: &LakeLayout,
    users: &UsersDecided,
    roles: &Roles,
    retyped: &DataFrame,
    bronze_users: &BronzeUsers,
    bronze_rides: &BronzeIncrement,
    found: Found,
    plan: &[Slice],
    engine: Option<&dyn SliceRunner>,
) -> Result<()> {
    let (tables, options) = (cx.tables, cx.options);
    let Found { rides: silver_rides, users_version: users_before, marker, epochs: rides_epochs } = found;
    let ride_files = match &silver_rides {
        Some(t) => io::files(t)?,
        None => Vec::new(),
    };
    let retyped_rides = rides_to_check_again(silver_rides.as_ref(), &ride_files, users, retyped, &bronze_rides.map.links).await?;
    let quarantine = io::open(&tables.quarantine, options).await?;
    let quarantined = match &quarantine {
        Some(q) => Some(io::read_columns(q, &io::files(q)?, Some(&[RAW_ID])).await?),
        None => None,
    };
    let before = Before {
        rides: silver_rides.as_ref(),
        ride_files,
        pending: as_of_marker(&tables.pending, options, RIDES_MARKER, marker).await?,
        deleted: as_of_marker(&tables.deleted, options, RIDES_MARKER, marker).await?,
        retyped_rides,
        quarantined,
    };
    cx.report.slices = plan.len() as u64;
    cx.lap("rides: read silver's state");
    // The users partitions the run rewrites: staged now (a worker elsewhere checks its rides
    // against them), committed after the slices.
    let users_files = rebuild::stage(tables, options, &USERS_TABLE, &users_to_write(users)?, false).await?;
    cx.lap("users: stage");

    // ---- the slices ----------------------------------------------------------------------------
    let outputs: Vec<UpdateSlice> = match engine {
        None => {
            let work = async {
                let mut outputs = Vec::with_capacity(plan.len());
                for slice in plan {
                    outputs.push(decide_update_slice(tables, options, &before, roles, cx.clock, bronze_rides, rides_epochs, slice).await?);
                }
                Ok(outputs)
            };
            rebuild::while_renewing(cx.guard.lease, work).await?
        }
        Some(engine) => {
            let after = marker.ok_or_else(|| LakehouseError::Task("an incremental run without a rides marker cannot be handed to workers".into()))?;
            let version = |table: &Option<DeltaTable>| table.as_ref().and_then(|t| t.version()).map(|v| v as i64);
            let update = UpdateTask {
                after,
                epochs: rides_epochs,
                users: users_before,
                rides: version(&silver_rides),
                pending: version(&before.pending),
                deleted: version(&before.deleted),
                quarantine: version(&quarantine),
                users_touched: users.touched.iter().copied().collect(),
                recheck: Keys::default(),
            };
            let mut tasks = rebuild::slice_tasks(cx, plan, bronze_rides, &users_files, None);
            for task in &mut tasks {
                let recheck = if before.retyped_rides.height() > 0 {
                    let rides = before.retyped_rides.clone().lazy().filter(task.slice.holds("id")).collect().step("slicing rides to check")?;
                    Keys::of(rides.column("id").step("listing ride ids")?)?
                } else {
                    Keys::default()
                };
                task.update = Some(UpdateTask { recheck, ..update.clone() });
            }
            let outputs = rebuild::while_renewing(cx.guard.lease, engine.run(layout, tasks.clone())).await?;
            let mut slices = Vec::with_capacity(tasks.len());
            for output in rebuild::in_task_order(&tasks, outputs)? {
                let expired = if bronze_rides.map.links.waits_for_any() { Some(expired_of(tables, options, &output.pending, &bronze_rides.map).await?) } else { None };
                slices.push(UpdateSlice::of_output(output, expired)?);
            }
            slices
        }
    };
    let epochs = outputs.first().map(|o| o.epochs).unwrap_or(rides_epochs);
    if outputs.iter().any(|o| o.epochs != epochs) {
        return Err(LakehouseError::Task("the slices of one run ended bronze in different epoch states (bronze changed during the run)".into()));
    }
    let (mut rides, mut pending, mut tombstones, mut quarantine) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut leaving: Vec<Keys> = Vec::new();
    let mut touched = BTreeSet::new();
    let mut expired: Vec<LazyFrame> = Vec::new();
    for output in outputs {
        expired.extend(output.expired.map(DataFrame::lazy));
        output.counts.add_to(cx.report);
        cx.report.count_rules(0, &output.warned);
        cx.report.slice_seconds.push(output.seconds);
        cx.report.released += output.released;
        cx.report.rides_withdrawn += output.withdrawn;
        leaving.push(output.leaving);
        touched.extend(output.touched);
        rides.push(output.rides);
        pending.push(output.pending);
        tombstones.push(output.tombstones);
        quarantine.extend(output.quarantine);
    }
    cx.lap(&format!("rides: {} slices", plan.len()));

    // ---- the touched partitions' kept rows, a few files at a time -------------------------------
    if let Some(table) = before.rides {
        let leaving = Keys::concat(leaving);
        let leaving = DataFrame::new(leaving.len(), vec![leaving.column("id", &bronze_rides.map.key_type("id"))]).step("collecting changed rides")?;
        let target = tables.target(&RIDES_TABLE, options);
        let keep = async {
            let mut kept: Option<io::Staged> = None;
            // (a file belongs to one partition: its kept rows stay in it)
            for files in files_in(&before.ride_files, &touched).chunks(FILES_AT_ONCE) {
                let rows = io::read_files(table, files).await?.lazy();
                let rows = cdc::with_keys(rows, leaving.clone().lazy(), "id", false).select(ride_output_columns(&bronze_rides.map)).collect().step("keeping a partition's rides")?;
                let staged = match &mut kept {
                    Some(staged) => staged,
                    None => kept.insert(io::Staged::open(&target, &rows, false).await?),
                };
                staged.stage(&rows).await?;
            }
            Ok(kept.map(io::Staged::into_files))
        };
        rides.extend(rebuild::while_renewing(cx.guard.lease, keep).await?);
    }
    cx.lap("rides: keep the touched partitions' rows");

    // ---- commit, the commit point last ---------------------------------------------------------
    // 1. quarantine: the users' new breakers with the slices'.
    let users_bad = if users.bad.height() > 0 { not_quarantined(quarantine_rows(&users.bad, "users", &bronze_rides.map)?, before.quarantined.as_ref())? } else { DataFrame::empty() };
    cx.report.users_quarantined = count(&users_bad);
    cx.report.quarantined = cx.report.users_quarantined + cx.report.rides_quarantined;
    if users_bad.height() > 0 {
        quarantine.insert(0, rebuild::stage(tables, options, &QUARANTINE_TABLE, &users_bad, false).await?);
    }
    let expired = if expired.is_empty() { None } else { Some(concat(expired, UnionArgs::default()).step("listing expired rides")?.collect().step("listing expired rides")?) };
    commit_quarantine(cx, quarantine, expired.as_ref()).await?;
    cx.lap("write quarantine");
    // 2. users: the partitions staged before the slices.
    cx.guard.next().await?;
    let markers = users_markers(bronze_users, &users.epochs, cx.model_hash);
    let mode = crate::silver::replace_mode(&users.touched);
    let written = io::commit_staged(&cx.target(&USERS_TABLE), vec![users_files], &mode, &markers).await?;
    let users_version = users_written(cx, written, &users.touched);
    // 3. pending and tombstones, then rides: the run's commit point.
    let partitions = touched.len() as u64;
    let staged = rebuild::StagedRides { pending, tombstones, rides };
    rebuild::commit_rides(cx, bronze_rides, &epochs, users_version, staged, &crate::silver::replace_mode(&touched), partitions).await
}

/// One slice of an incremental run: its changes decided against its part of silver at bronze's
/// `clock`, its rows staged (none committed).
#[allow(clippy::too_many_arguments)]
async fn decide_update_slice(
    tables: &Tables,
    options: &HashMap<String, String>,
    before: &Before<'_>,
    roles: &Roles,
    clock: Clock,
    bronze: &BronzeIncrement,
    mut epochs: EpochState,
    slice: &Slice,
) -> Result<UpdateSlice> {
    let started = std::time::Instant::now();
    let (changes, _) = rebuild::slice_changes(bronze, slice, &mut epochs, None).await?;
    let changes_read = count(&changes);
    let (rules, delete_rules) = ride_rules(&bronze.map);
    let chosen = rules::choose(&changes, "id", &rules, &delete_rules, &bronze.map)?;
    let (latest, bad, dropped, warned) = (chosen.latest, chosen.quarantined, chosen.dropped, chosen.warned);
    drop(changes);
    let bad = if bad.height() > 0 { not_quarantined(quarantine_rows(&with_bronze_ids(bad, bronze).await?, "rides", &bronze.map)?, before.quarantined.as_ref())? } else { DataFrame::empty() };
    let latest = with_fields(latest, bronze, &other_ride_fields(&bronze.map)).await?;

    // Silver's part of the slice: the published rows of its changed rides and of its retyped
    // users' rides, its pending rides and its tombstones.
    let retyped_rides = if before.retyped_rides.height() > 0 {
        before.retyped_rides.clone().lazy().filter(slice.holds("id")).collect().step("slicing retyped rides")?
    } else {
        DataFrame::empty()
    };
    let looked_at = if retyped_rides.height() > 0 {
        concat([latest.clone().lazy().select([col("id")]), retyped_rides.clone().lazy()], UnionArgs::default())
            .step("collecting changed rides")?
            .collect()
            .step("collecting changed rides")?
    } else {
        latest.select(["id"]).step("reading changed keys")?
    };
    let published = match before.rides {
        Some(t) => {
            let holding = files_holding(t, &before.ride_files, &looked_at).await?;
            let keys = lit(looked_at.column("id").step("reading changed keys")?.as_materialized_series().clone()).implode(false);
            rows_where(t, &holding, col("id").is_in(keys, false)).await?
        }
        None => DataFrame::empty(),
    };
    let part_of = |table: &Option<DeltaTable>| {
        let table = table.clone();
        async move {
            match table {
                Some(t) => {
                    let files: Vec<DataFile> = io::files(&t)?.into_iter().filter(|f| slice.may_hold(f.id_range.as_ref())).collect();
                    rows_where(&t, &files, slice.holds("id")).await
                }
                None => Ok(DataFrame::empty()),
            }
        }
    };
    let (pending_before, deleted_before) = (part_of(&before.pending).await?, part_of(&before.deleted).await?);
    let state = RideState::new(published, pending_before, deleted_before, retyped_rides);
    let decided = decide_rides(latest, &state, roles, &bronze.map, clock)?;
    let expired = if bronze.map.links.waits_for_any() { Some(expired_rows(&decided.waiting, &bronze.map)?) } else { None };

    let partitioned = bronze.map.partition.is_some();
    let mut touched = parts_of(&decided.ready, partitioned)?;
    let published = state.published();
    if published.height() > 0 {
        let leaving_rows = cdc::with_keys(published.clone().lazy(), decided.leaving.clone().lazy(), "id", true).collect().step("finding partitions")?;
        touched.extend(parts_of(&leaving_rows, partitioned)?);
    }
    let leaving = Keys::of(decided.leaving.column("id").step("collecting changed rides")?)?;
    let quarantine = if bad.height() > 0 { Some(rebuild::stage(tables, options, &QUARANTINE_TABLE, &bad, false).await?) } else { None };
    Ok(UpdateSlice {
        rides: rebuild::stage(tables, options, &RIDES_TABLE, &decided.ready, false).await?,
        pending: rebuild::stage(tables, options, &PENDING_TABLE, &decided.waiting, true).await?,
        tombstones: rebuild::stage(tables, options, &DELETED_TABLE, &decided.tombstones, true).await?,
        quarantine,
        counts: SliceCounts { changes: changes_read, quarantined: count(&bad), dropped, ..SliceCounts::of(&decided) },
        expired,
        warned,
        released: decided.released,
        withdrawn: decided.withdrawn,
        leaving,
        touched,
        epochs,
        seconds: started.elapsed().as_secs_f64(),
    })
}

impl UpdateSlice {
    /// A worker's output of a slice of an incremental run, with the slice's `expired` rides.
    fn of_output(output: SliceOutput, expired: Option<DataFrame>) -> Result<UpdateSlice> {
        let index = output.task.index;
        let update = output.update.ok_or_else(|| LakehouseError::Task(format!("the engine returned the output of a rebuild for slice {index} of an incremental run")))?;
        Ok(UpdateSlice {
            rides: output.rides,
            pending: output.pending,
            tombstones: output.tombstones,
            quarantine: output.quarantine,
            counts: output.counts,
            expired,
            released: update.released,
            withdrawn: update.withdrawn,
            leaving: update.leaving,
            touched: update.touched.into_iter().collect(),
            epochs: output.epochs,
            seconds: output.seconds,
            warned: output.warned,
        })
    }
}

/// The expired rides among the pending rows a worker staged (quarantine rows).
async fn expired_of(tables: &Tables, options: &HashMap<String, String>, pending: &StagedFiles, rides: &StreamMap) -> Result<DataFrame> {
    let table = io::open(&tables.pending, options).await?.ok_or_else(|| LakehouseError::MissingTable(tables.pending.to_string()))?;
    let files: Vec<DataFile> = pending.adds.iter().map(|add| DataFile::staged(&add.path)).collect();
    let mut columns = vec!["id", "reason", EXPIRED];
    columns.extend(crate::order::ORDER);
    expired_rows(&io::read_columns(&table, &files, Some(&columns)).await?, rides)
}

/// The worker half of a slice of an incremental run (module documentation): opens silver as the
/// driver found it and the increment as of the pinned bronze version, decides the slice with the
/// same [`decide_update_slice`] as a local run, and returns its staged files and what the driver
/// keeps.
pub(crate) async fn run_update_slice(layout: &LakeLayout, task: &SliceTask) -> Result<SliceOutput> {
    let started = std::time::Instant::now();
    let update = task.update.as_ref().ok_or_else(|| LakehouseError::Task("not a slice of an incremental run".into()))?;
    rebuild::same_model(layout, task)?;
    let options = layout.storage_options();
    let tables = Tables::of(layout)?;
    let map = &layout.model.rides;
    let bronze = increment::pinned_increment(&layout.bronze(&map.stream)?, &options, update.after, task.bronze_version, task.bronze_table, map).await?;
    let rides = open_at(&tables.rides, &options, update.rides).await?;
    let quarantined = match open_at(&tables.quarantine, &options, update.quarantine).await? {
        Some(q) => Some(io::read_columns(&q, &io::files(&q)?, Some(&[RAW_ID])).await?),
        None => None,
    };
    let recheck = if update.recheck.is_empty() {
        DataFrame::empty()
    } else {
        DataFrame::new(update.recheck.len(), vec![update.recheck.column("id", &bronze.map.key_type("id"))]).step("listing rides to check")?
    };
    let before = Before {
        rides: rides.as_ref(),
        ride_files: match &rides {
            Some(t) => io::files(t)?,
            None => Vec::new(),
        },
        pending: open_at(&tables.pending, &options, update.pending).await?,
        deleted: open_at(&tables.deleted, &options, update.deleted).await?,
        retyped_rides: recheck,
        quarantined,
    };
    let roles = users_after(&tables, &options, update, &task.users_files).await?;
    let slice = decide_update_slice(&tables, &options, &before, &roles, task.clock, &bronze, update.epochs, &task.slice).await?;
    Ok(SliceOutput {
        task: task.clone(),
        rides: slice.rides,
        pending: slice.pending,
        tombstones: slice.tombstones,
        quarantine: slice.quarantine,
        counts: slice.counts,
        days: Vec::new(),
        epochs: slice.epochs,
        warned: slice.warned,
        seconds: started.elapsed().as_secs_f64(),
        update: Some(UpdateOutput { released: slice.released, withdrawn: slice.withdrawn, leaving: slice.leaving, touched: slice.touched.into_iter().collect() }),
    })
}

/// The table at `url` as of `version` (`None`: there was none).
async fn open_at(url: &url::Url, options: &HashMap<String, String>, version: Option<i64>) -> Result<Option<DeltaTable>> {
    match version {
        Some(v) => {
            let at = u64::try_from(v).map_err(|_| LakehouseError::Task(format!("{v} is not a version of {url}")))?;
            Ok(Some(io::open_version(url, options, at).await?))
        }
        None => Ok(None),
    }
}

/// The roles of the users the driver's run decides: silver users as the driver found them, but
/// the partitions the run rewrites read from the files it staged (`staged`).
async fn users_after(tables: &Tables, options: &HashMap<String, String>, update: &UpdateTask, staged: &[String]) -> Result<Roles> {
    let columns = ["id", "type"];
    let mut parts: Vec<LazyFrame> = Vec::new();
    if let Some(found) = open_at(&tables.users, options, update.users).await? {
        let touched: BTreeSet<(i32, i32, i32)> = update.users_touched.iter().copied().collect();
        // (an unpartitioned table is rewritten whole: none of its files stays)
        let whole = touched.contains(&crate::silver::WHOLE_TABLE);
        let kept: Vec<DataFile> = io::files(&found)?.into_iter().filter(|f| !whole && f.day().is_none_or(|day| !touched.contains(&day))).collect();
        parts.push(io::read_columns(&found, &kept, Some(&columns)).await?.lazy());
    }
    if !staged.is_empty() {
        let table = io::open(&tables.users, options).await?.ok_or_else(|| LakehouseError::MissingTable(tables.users.to_string()))?;
        let files: Vec<DataFile> = staged.iter().map(|path| DataFile::staged(path)).collect();
        parts.push(io::read_columns(&table, &files, Some(&columns)).await?.lazy());
    }
    if parts.is_empty() {
        return Roles::of(&DataFrame::empty());
    }
    Roles::of(&concat(parts, UnionArgs::default()).step("reading the users' roles")?.collect().step("reading the users' roles")?)
}

/// The rows of `files` that `keep` holds, read a few files at a time (a file's rows are
/// filtered before the next files are read).
async fn rows_where(table: &DeltaTable, files: &[DataFile], keep: Expr) -> Result<DataFrame> {
    let mut parts: Vec<LazyFrame> = Vec::new();
    for chunk in files.chunks(FILES_AT_ONCE) {
        for frame in io::read_each(table, chunk, None).await? {
            let kept = frame.lazy().filter(keep.clone()).collect().step("reading silver's state")?;
            if kept.height() > 0 {
                parts.push(kept.lazy());
            }
        }
    }
    if parts.is_empty() {
        return Ok(DataFrame::empty());
    }
    concat(parts, UnionArgs::default()).step("reading silver's state")?.collect().step("reading silver's state")
}
