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
//! withdrawn or replaced) and the day partitions they leave from. After the last slice, each of
//! those partitions is rewritten without the leaving rides, one partition at a time. The tables
//! are then committed as an unsliced run commits them: quarantine (appended), users, pending
//! and tombstones (replaced), and rides last, the commit point, replacing the rewritten
//! partitions with the slices' new files and the partitions' kept rows in one transaction.
//! Nothing is committed before the last slice, so a crash leaves unreferenced files only.
//!
//! A touched partition therefore gets a file per slice that published into it, besides its kept
//! rows; maintenance's compaction merges them. The content is the unsliced run's (invariant 6 of
//! docs/silver-core.md, tested by `tests/silver_slices.rs`).

use std::collections::{BTreeSet, HashMap};

use deltalake::DeltaTable;
use polars::prelude::*;

use ridelake_core::bronze::RAW_ID;

use crate::cdc;
use crate::rules;
use crate::error::{LakehouseError, PolarsContext, Result};
use crate::increment::BronzeIncrement;
use crate::io::{self, DataFile, StagedFiles, WriteMode};
use crate::order::EpochState;
use crate::rebuild::{self, SliceCounts};
use crate::silver::{
    Clock, DELETED_TABLE, PENDING_TABLE, QUARANTINE_TABLE, RIDES_MARKER, RIDES_TABLE, RideState, Roles, RunContext, Tables,
    UsersDecided, as_of_marker, commit_quarantine, count, expired_rows, decide_rides, files_holding, files_in, other_ride_fields, partitions_of,
    not_quarantined, quarantine_rows, ride_output_columns, ride_rules, rides_to_check_again, with_bronze_ids, with_fields, write_users,
};
use crate::slices::Slice;

/// Files read at once when a slice reads published rows or its part of a companion table.
const FILES_AT_ONCE: usize = 8;

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
    leaving: Vec<i64>,
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

/// An incremental run's rides, decided in the slices of `plan` (module documentation).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn update_rides_in_slices(
    cx: &mut RunContext<'_, '_>,
    users: &UsersDecided,
    roles: &Roles,
    retyped: &DataFrame,
    bronze_users: &BronzeIncrement,
    bronze_rides: &BronzeIncrement,
    marker: Option<i64>,
    silver_rides: Option<DeltaTable>,
    rides_epochs: EpochState,
    plan: &[Slice],
) -> Result<()> {
    let (tables, options) = (cx.tables, cx.options);
    let ride_files = match &silver_rides {
        Some(t) => io::files(t)?,
        None => Vec::new(),
    };
    let retyped_rides = rides_to_check_again(silver_rides.as_ref(), &ride_files, users, retyped, &bronze_rides.map.links).await?;
    let quarantined = match io::open(&tables.quarantine, options).await? {
        Some(q) => Some(io::read_columns(&q, &io::files(&q)?, Some(&[RAW_ID])).await?),
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

    // ---- the slices, one after another --------------------------------------------------------
    let work = async {
        let mut outputs = Vec::with_capacity(plan.len());
        for slice in plan {
            outputs.push(decide_update_slice(tables, options, &before, roles, cx.clock, bronze_rides, rides_epochs, slice).await?);
        }
        Ok(outputs)
    };
    let outputs: Vec<UpdateSlice> = rebuild::while_renewing(cx.guard.lease, work).await?;
    let epochs = outputs.first().map(|o| o.epochs).unwrap_or(rides_epochs);
    if outputs.iter().any(|o| o.epochs != epochs) {
        return Err(LakehouseError::Task("the slices of one run ended bronze in different epoch states (bronze changed during the run)".into()));
    }
    let (mut rides, mut pending, mut tombstones, mut quarantine) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut leaving: Vec<i64> = Vec::new();
    let mut touched = BTreeSet::new();
    let mut expired: Vec<LazyFrame> = Vec::new();
    for output in outputs {
        expired.extend(output.expired.map(DataFrame::lazy));
        output.counts.add_to(cx.report);
        cx.report.count_rules(0, &output.warned);
        cx.report.slice_seconds.push(output.seconds);
        cx.report.released += output.released;
        cx.report.rides_withdrawn += output.withdrawn;
        leaving.extend(output.leaving);
        touched.extend(output.touched);
        rides.push(output.rides);
        pending.push(output.pending);
        tombstones.push(output.tombstones);
        quarantine.extend(output.quarantine);
    }
    cx.lap(&format!("rides: {} slices", plan.len()));

    // ---- the touched partitions' kept rows, one partition at a time ----------------------------
    if let Some(table) = before.rides {
        leaving.sort_unstable();
        leaving.dedup();
        let leaving = DataFrame::new(leaving.len(), vec![Column::new("id".into(), leaving)]).step("collecting changed rides")?;
        let target = tables.target(&RIDES_TABLE, options);
        let keep = async {
            let mut kept: Option<io::Staged> = None;
            for day in &touched {
                let files = files_in(&before.ride_files, &BTreeSet::from([*day]));
                if files.is_empty() {
                    continue;
                }
                let rows = io::read_files(table, &files).await?.lazy();
                let rows = cdc::with_keys(rows, leaving.clone().lazy(), "id", false).select(ride_output_columns(&bronze_rides.map.links)).collect().step("keeping a partition's rides")?;
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
    let users_bad = if users.bad.height() > 0 { not_quarantined(quarantine_rows(&users.bad, "users")?, before.quarantined.as_ref())? } else { DataFrame::empty() };
    cx.report.users_quarantined = count(&users_bad);
    cx.report.quarantined = cx.report.users_quarantined + cx.report.rides_quarantined;
    if users_bad.height() > 0 {
        quarantine.insert(0, rebuild::stage(tables, options, &QUARANTINE_TABLE, &users_bad, false).await?);
    }
    let expired = if expired.is_empty() { None } else { Some(concat(expired, UnionArgs::default()).step("listing expired rides")?.collect().step("listing expired rides")?) };
    commit_quarantine(cx, quarantine, expired.as_ref()).await?;
    cx.lap("write quarantine");
    // 2. users.
    let users_version = write_users(cx, users, bronze_users).await?;
    // 3. pending and tombstones, then rides: the run's commit point.
    let partitions = touched.len() as u64;
    let staged = rebuild::StagedRides { pending, tombstones, rides };
    rebuild::commit_rides(cx, bronze_rides, &epochs, users_version, staged, &WriteMode::ReplacePartitions(touched), partitions).await
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
    let changes = rebuild::slice_changes(bronze, slice, &mut epochs).await?;
    let changes_read = count(&changes);
    let (rules, delete_rules) = ride_rules();
    let chosen = rules::choose(&changes, "id", &rules, &delete_rules, &bronze.map)?;
    let (latest, bad, dropped, warned) = (chosen.latest, chosen.quarantined, chosen.dropped, chosen.warned);
    drop(changes);
    let bad = if bad.height() > 0 { not_quarantined(quarantine_rows(&with_bronze_ids(bad, bronze).await?, "rides")?, before.quarantined.as_ref())? } else { DataFrame::empty() };
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
                    let files: Vec<DataFile> = io::files(&t)?.into_iter().filter(|f| slice.may_hold(f.id_range)).collect();
                    rows_where(&t, &files, slice.holds("id")).await
                }
                None => Ok(DataFrame::empty()),
            }
        }
    };
    let (pending_before, deleted_before) = (part_of(&before.pending).await?, part_of(&before.deleted).await?);
    let state = RideState::new(published, pending_before, deleted_before, retyped_rides);
    let decided = decide_rides(latest, &state, roles, &bronze.map.links, clock)?;
    let expired = if bronze.map.links.waits_for_any() { Some(expired_rows(&decided.waiting)?) } else { None };

    let mut touched = partitions_of(&decided.ready)?;
    let published = state.published();
    if published.height() > 0 {
        let leaving_rows = cdc::with_keys(published.clone().lazy(), decided.leaving.clone().lazy(), "id", true).collect().step("finding partitions")?;
        touched.extend(partitions_of(&leaving_rows)?);
    }
    let leaving = decided.leaving.column("id").step("collecting changed rides")?.as_materialized_series().cast(&DataType::Int64).step("collecting changed rides")?;
    let leaving: Vec<i64> = leaving.i64().step("collecting changed rides")?.iter().flatten().collect();
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
