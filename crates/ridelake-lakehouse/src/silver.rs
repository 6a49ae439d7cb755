//! Silver: bronze CDC applied to `users` and `rides`, exactly once per bronze version.
//!
//! Tables (under `<root>/silver/`):
//! - `users`: one row per user; a deleted user stays with `is_deleted = true`, so that no ride
//!   loses its user. Partitioned by `created_at` (year/month/day).
//! - `rides`: one row per ride whose latest valid change is not a delete and whose customer is a
//!   registered `customer` and whose driver (once set) is a registered `driver`. Partitioned by
//!   `requested_at` (year/month/day).
//! - `rides_pending`: rides whose latest change waits for its users, with the reason; re-checked
//!   at every run and released into `rides` when the users arrive.
//! - `rides_deleted`: tombstones, so that a late duplicate can never bring a deleted ride back.
//! - `quarantine`: every change that broke a rule, with the rule and its bronze `_airbyte_raw_id`.
//!
//! Incremental: a run reads only the needed columns of the bronze files added since its marker,
//! finds the published rides of the changed keys through the files' `id` statistics and `id`
//! column (never the whole table), and rewrites only the partitions whose rows changed.
//!
//! Exactly once: each silver table's commit carries a `txn` marker with the bronze version it
//! reflects; a run reads only the bronze files added since. The `rides` commit is the run's
//! commit point: `rides_pending` and `rides_deleted` are written before it and, when a run died
//! between the two, read back as of the version whose marker matches `rides`'s. Running twice is a
//! no-op; a run killed midway and rerun gives the same tables.

use std::collections::{BTreeSet, HashMap, HashSet};

use deltalake::DeltaTable;
use polars::prelude::*;
use url::Url;

use crate::cdc::{self, DELETED, EXTRACTED, ORDER, POSITION, RULE, UPDATED};
use crate::error::{LakehouseError, PolarsContext, Result};
use crate::io::{self, DataFile, WriteMode};
use crate::layout::LakeLayout;

const USER_COLUMNS: [&str; 8] = ["id", "type", "name", "email", "phone", "city", "created_at", "updated_at"];
const RIDE_COLUMNS: [&str; 22] = [
    "id", "customer_id", "driver_id", "status", "requested_at", "accepted_at", "started_at", "completed_at",
    "cancelled_at", "pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon", "distance_km", "duration_s",
    "fare_amount", "currency", "payment_method", "customer_rating", "driver_rating", "created_at", "updated_at",
];
const RIDE_STATUSES: [&str; 5] = ["requested", "accepted", "in_progress", "completed", "cancelled"];
const PARTITIONS: [&str; 3] = ["year", "month", "day"];

/// What a silver column means, for the column comments of table `table` (`silver_rides`, …).
pub fn column_doc(table: &str, column: &str) -> Option<&'static str> {
    Some(match (table, column) {
        ("silver_users", "year" | "month" | "day") => "calendar part of created_at (UTC); partitions the table",
        (_, "year" | "month" | "day") => "calendar part of requested_at (UTC); partitions the table",
        ("silver_users", "id") => "user id (source users.id)",
        ("silver_users", "type") => "customer or driver",
        ("silver_users", "created_at") => "when the user registered (UTC)",
        (_, "is_deleted") => "the user was deleted in the source; kept so that no ride loses its user",
        (_, "deleted_at") => "when the row was deleted in the source",
        ("silver_quarantine", "id") => "key of the change (users.id or rides.id)",
        (_, "id") => "ride id (source rides.id)",
        (_, "customer_id") => "the customer's user id (a registered customer in silver_users)",
        (_, "driver_id") => "the driver's user id (a registered driver in silver_users); null until a driver accepts",
        (_, "status") => "requested, accepted, in_progress, completed or cancelled",
        (_, "requested_at") => "when the ride was requested (UTC)",
        (_, "distance_km") => "trip distance, km",
        (_, "duration_s") => "trip duration, seconds",
        (_, "fare_amount") => "fare, in currency",
        (_, "updated_at") => "last update of the row in the source",
        (_, "reason") => "why the ride waits: customer not registered, or driver not registered",
        (_, "rule") => "the rule the change broke",
        (_, "table") => "users or rides",
        (_, "_airbyte_raw_id") => "the bronze row of the change (_airbyte_raw_id)",
        (_, "bronze_version") => "bronze version the change was read from",
        (_, "_cdc_deleted") => "the change is a delete",
        (_, "_cdc_position") => "source change position of the row's latest change (binlog file number << 32 | offset)",
        (_, "_cdc_updated_at") => "time of the row's latest change in the source (microseconds since the epoch)",
        (_, "_cdc_extracted_at") => "when Airbyte extracted the row's latest change (microseconds since the epoch)",
        _ => return None,
    })
}

/// `txn` app id of silver users (version = bronze users version).
pub const USERS_MARKER: &str = "ridelake.silver.users/bronze.users";
/// `txn` app id of silver rides and its companions (version = bronze rides version).
pub const RIDES_MARKER: &str = "ridelake.silver.rides/bronze.rides";

/// What a silver run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SilverReport {
    /// Bronze users versions processed: (after, up to); equal when there was nothing new.
    pub users_versions: (Option<i64>, i64),
    /// Bronze rides versions processed.
    pub rides_versions: (Option<i64>, i64),
    /// Bronze rows read (users + rides).
    pub rows_read: u64,
    /// Bronze users rows read.
    pub users_read: u64,
    /// Bronze rides rows read.
    pub rides_read: u64,
    /// Users inserted or updated (deletes included, as marked rows).
    pub users_upserted: u64,
    /// Users marked deleted by this run.
    pub users_deleted: u64,
    /// Rides inserted or updated in `rides`.
    pub rides_upserted: u64,
    /// Rides deleted by this run.
    pub rides_deleted: u64,
    /// Changes quarantined by this run.
    pub quarantined: u64,
    /// Users changes quarantined by this run.
    pub users_quarantined: u64,
    /// Rides changes quarantined by this run.
    pub rides_quarantined: u64,
    /// Rides waiting for their users after this run.
    pub pending: u64,
    /// Rides released from pending by this run.
    pub released: u64,
    /// `_cdc_updated_at` (µs) of the oldest waiting ride, if any.
    pub oldest_pending_us: Option<i64>,
    /// Silver partitions rewritten.
    pub partitions_rewritten: u64,
    /// Whether the run found nothing to do.
    pub noop: bool,
    /// The commits of this run, in order (the last one, `silver_rides`, is the commit point).
    pub written: Vec<io::Written>,
    /// Wall time of the run's steps, in seconds, in order.
    pub step_seconds: Vec<(String, f64)>,
}

/// Records the wall time of a run's steps into its report.
struct Steps(std::time::Instant);

impl Steps {
    fn lap(&mut self, report: &mut SilverReport, step: &str) {
        let now = std::time::Instant::now();
        report.step_seconds.push((step.to_owned(), (now - self.0).as_secs_f64()));
        self.0 = now;
    }
}

/// Knobs of a silver run.
#[derive(Debug, Clone, Default)]
pub struct SilverOptions {
    /// For failure tests: stop with [`LakehouseError::Interrupted`] before the table write number
    /// `n + 1`, exactly as a crash at that point would.
    pub fail_after_writes: Option<usize>,
}

/// Counts table writes and stops the run where a failure test asks.
struct WriteGuard {
    done: usize,
    limit: Option<usize>,
}

impl WriteGuard {
    fn next(&mut self) -> Result<()> {
        if self.limit.is_some_and(|limit| self.done >= limit) {
            return Err(LakehouseError::Interrupted(self.done));
        }
        self.done += 1;
        Ok(())
    }
}

/// Which bronze rows a run must process.
struct BronzeIncrement {
    table: DeltaTable,
    after: Option<i64>,
    upto: i64,
    files: Vec<DataFile>,
    /// Files were removed since the marker (bronze was overwritten): rebuild from scratch.
    rebuild: bool,
}

async fn increment(url: &Url, options: &HashMap<String, String>, marker: Option<i64>) -> Result<BronzeIncrement> {
    let table = io::open(url, options).await?.ok_or_else(|| LakehouseError::MissingBronze(url.to_string()))?;
    let upto = table.version().unwrap_or_default() as i64;
    let now = io::files(&table)?;
    let (files, rebuild) = match marker {
        Some(m) if m >= upto => (Vec::new(), false),
        Some(m) => {
            let before: HashSet<String> = io::files(&io::open_version(url, options, m as u64).await?)?.into_iter().map(|f| f.path).collect();
            let current: HashSet<&str> = now.iter().map(|f| f.path.as_str()).collect();
            if before.iter().all(|p| current.contains(p.as_str())) {
                (now.into_iter().filter(|f| !before.contains(&f.path)).collect(), false)
            } else {
                (now, true)
            }
        }
        None => (now, false),
    };
    Ok(BronzeIncrement { table, after: marker, upto, files, rebuild })
}

/// The new bronze rows of an increment, with only the columns silver uses.
async fn read_changes(increment: &BronzeIncrement, fields: &[&str]) -> Result<DataFrame> {
    let wanted: Vec<&str> = fields.iter().chain(cdc::BRONZE_CDC_COLUMNS.iter()).copied().collect();
    let present = io::present_columns(&increment.table, &wanted)?;
    io::read_columns(&increment.table, &increment.files, Some(&present)).await
}

/// The files among `files` that hold one of the keys in `keys` (column `id`): the files' `id`
/// statistics rule most out, the `id` column of the others is read and joined with the keys.
async fn files_holding(table: &DeltaTable, files: &[DataFile], keys: &DataFrame) -> Result<Vec<DataFile>> {
    if keys.height() == 0 || files.is_empty() {
        return Ok(Vec::new());
    }
    let mut sorted: Vec<i64> = keys.column("id").step("reading changed keys")?.i64().step("reading changed keys")?.iter().flatten().collect();
    sorted.sort_unstable();
    let candidates: Vec<DataFile> = files.iter().filter(|f| f.may_hold_any(&sorted)).cloned().collect();
    let ids = io::read_each(table, &candidates, Some(&["id"])).await?;
    let tagged: Vec<LazyFrame> = ids.into_iter().enumerate().map(|(i, frame)| frame.lazy().select([col("id"), lit(i as i64).cast(DataType::Int64).alias("_file")])).collect();
    if tagged.is_empty() {
        return Ok(Vec::new());
    }
    let hits = cdc::with_keys(concat(tagged, UnionArgs::default()).step("finding changed rides")?, keys.clone().lazy(), "id", true)
        .select([col("_file")])
        .unique(None, UniqueKeepStrategy::Any)
        .collect()
        .step("finding changed rides")?;
    let mut indexes: Vec<i64> = hits.column("_file").step("finding changed rides")?.i64().step("finding changed rides")?.iter().flatten().collect();
    indexes.sort_unstable();
    Ok(indexes.into_iter().filter_map(|i| candidates.get(i as usize).cloned()).collect())
}

/// The latest version of the table at `url` whose marker `app_id` is at most `max` (time travel),
/// or `None` when there is no such version.
async fn as_of_marker(url: &Url, options: &HashMap<String, String>, app_id: &str, max: Option<i64>) -> Result<Option<DeltaTable>> {
    let Some(max) = max else { return Ok(None) };
    let Some(latest) = io::open(url, options).await? else { return Ok(None) };
    let mut version = latest.version().unwrap_or_default();
    let mut table = latest;
    loop {
        if io::marker(&table, app_id).await?.is_some_and(|m| m <= max) {
            return Ok(Some(table));
        }
        if version == 0 {
            return Ok(None);
        }
        version -= 1;
        table = io::open_version(url, options, version).await?;
    }
}

fn partition_exprs(date_column: &str) -> [Expr; 3] {
    [
        col(date_column).dt().year().cast(DataType::Int32).alias("year"),
        col(date_column).dt().month().cast(DataType::Int32).alias("month"),
        col(date_column).dt().day().cast(DataType::Int32).alias("day"),
    ]
}

fn partitions_of(frame: &DataFrame) -> Result<BTreeSet<(i32, i32, i32)>> {
    let mut out = BTreeSet::new();
    if frame.height() == 0 {
        return Ok(out);
    }
    let get = |name: &str| -> Result<Int32Chunked> {
        Ok(frame.column(name).step("reading partitions")?.as_materialized_series().cast(&DataType::Int32).step("reading partitions")?.i32().step("reading partitions")?.clone())
    };
    let (y, m, d) = (get("year")?, get("month")?, get("day")?);
    // Iterators, not `get(i)`: indexing a chunked column searches its chunks for every row.
    for ((y, m), d) in y.iter().zip(m.iter()).zip(d.iter()) {
        if let (Some(y), Some(m), Some(d)) = (y, m, d) {
            out.insert((y, m, d));
        }
    }
    Ok(out)
}

fn files_in(files: &[DataFile], partitions: &BTreeSet<(i32, i32, i32)>) -> Vec<DataFile> {
    files
        .iter()
        .filter(|f| f.day().is_some_and(|day| partitions.contains(&day)))
        .cloned()
        .collect()
}

fn count(frame: &DataFrame) -> u64 {
    frame.height() as u64
}

fn quarantine_rows(bad: &DataFrame, table: &str, bronze_version: i64) -> Result<DataFrame> {
    bad.clone()
        .lazy()
        .select([
            lit(table).alias("table"),
            col("id"),
            col(RULE),
            col("_airbyte_raw_id"),
            col(POSITION),
            col(UPDATED),
            col(DELETED),
            lit(bronze_version).alias("bronze_version"),
        ])
        .collect()
        .step("building quarantine rows")
}

/// How far silver is behind one bronze stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct StreamProgress {
    /// Latest bronze version (`None`: no bronze table yet).
    pub bronze_version: Option<i64>,
    /// Bronze version the silver table reflects (`None`: not built yet).
    pub silver_marker: Option<i64>,
    /// Whether bronze holds versions silver has not processed.
    pub behind: bool,
}

impl StreamProgress {
    fn new(bronze_version: Option<i64>, silver_marker: Option<i64>) -> Self {
        let behind = match (bronze_version, silver_marker) {
            (Some(bronze), Some(silver)) => bronze > silver,
            (Some(_), None) => true,
            (None, _) => false,
        };
        StreamProgress { bronze_version, silver_marker, behind }
    }
}

/// How far silver is behind bronze.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Progress {
    /// The users stream.
    pub users: StreamProgress,
    /// The rides stream.
    pub rides: StreamProgress,
    /// Whether either stream is behind.
    pub behind: bool,
}

/// How far silver is behind bronze, read from the tables' versions and markers (no data read).
pub async fn progress(layout: &LakeLayout) -> Result<Progress> {
    let options = layout.storage_options();
    let mut out = [StreamProgress::default(); 2];
    for (slot, (stream, marker)) in out.iter_mut().zip([("users", USERS_MARKER), ("rides", RIDES_MARKER)]) {
        let bronze = io::open(&layout.bronze(stream)?, &options).await?;
        let bronze_version = bronze.and_then(|t| t.version()).map(|v| v as i64);
        *slot = StreamProgress::new(bronze_version, io::open_with_marker(&layout.silver(stream)?, &options, marker).await?.1);
    }
    let [users, rides] = out;
    Ok(Progress { users, rides, behind: users.behind || rides.behind })
}

/// Builds (or brings up to date) the silver tables from bronze.
pub async fn build_silver(layout: &LakeLayout) -> Result<SilverReport> {
    build_silver_with(layout, &SilverOptions::default()).await
}

/// [`build_silver`] with options.
pub async fn build_silver_with(layout: &LakeLayout, run: &SilverOptions) -> Result<SilverReport> {
    let mut guard = WriteGuard { done: 0, limit: run.fail_after_writes };
    let options = layout.storage_options();
    let mut report = SilverReport::default();
    let mut steps = Steps(std::time::Instant::now());

    // ---- users -------------------------------------------------------------------------------
    let users_url = layout.silver("users")?;
    let (silver_users, users_marker) = io::open_with_marker(&users_url, &options, USERS_MARKER).await?;
    let bronze_users = increment(&layout.bronze("users")?, &options, users_marker).await?;
    report.users_versions = (bronze_users.after, bronze_users.upto);

    // ---- rides inputs (read before any write, so that a rerun sees the same) -----------------
    let rides_url = layout.silver("rides")?;
    let (silver_rides, rides_marker) = io::open_with_marker(&rides_url, &options, RIDES_MARKER).await?;
    let bronze_rides = increment(&layout.bronze("rides")?, &options, rides_marker).await?;
    report.rides_versions = (bronze_rides.after, bronze_rides.upto);

    let nothing_new = bronze_users.files.is_empty() && bronze_rides.files.is_empty();
    let pending_url = layout.silver("rides_pending")?;
    let deleted_url = layout.silver("rides_deleted")?;
    let quarantine_url = layout.silver("quarantine")?;

    steps.lap(&mut report, "open tables");
    // ---- users: apply --------------------------------------------------------------------------
    let user_changes = cdc::prepare(&read_changes(&bronze_users, &USER_COLUMNS).await?, &USER_COLUMNS)?;
    report.users_read = count(&user_changes);
    report.rows_read += report.users_read;
    let user_rules = [
        ("id is null", col("id").is_null()),
        ("type is not customer or driver", col("type").is_in(lit(Series::new("t".into(), ["customer", "driver"])).implode(false), false).not().or(col("type").is_null())),
        ("created_at is null", col("created_at").is_null()),
    ];
    let user_delete_rules = [("id is null", col("id").is_null()), ("created_at is null", col("created_at").is_null())];
    let (latest_users, bad_users) = cdc::latest_valid(&user_changes, "id", &user_rules, &user_delete_rules)?;
    drop(user_changes);
    steps.lap(&mut report, "users: read and choose changes");
    let existing_users = match (&silver_users, bronze_users.rebuild) {
        (Some(t), false) => io::read_all(t).await?,
        _ => DataFrame::empty(),
    };
    let users_state = if existing_users.height() > 0 { existing_users.clone().lazy() } else { empty_state() };
    let newer_users = cdc::newer_than(latest_users.lazy(), users_state.clone().select(state_columns()), "id")
        .with_columns([col(DELETED).alias("is_deleted")])
        .with_columns(partition_exprs("created_at"))
        .select(user_output_columns())
        .collect()
        .step("applying user changes")?;
    report.users_upserted = count(&newer_users);
    report.users_deleted = count(&newer_users.clone().lazy().filter(col("is_deleted")).collect().step("counting deletes")?);
    let all_users = if existing_users.height() > 0 {
        concat(
            [cdc::with_keys(existing_users.clone().lazy(), newer_users.clone().lazy(), "id", false).select(user_output_columns()), newer_users.clone().lazy()],
            UnionArgs::default(),
        )
        .step("merging users")?
        .collect()
        .step("merging users")?
    } else {
        newer_users.clone()
    };
    let mut touched_users = partitions_of(&newer_users)?;
    if existing_users.height() > 0 {
        touched_users.extend(partitions_of(&cdc::with_keys(existing_users.lazy(), newer_users.clone().lazy(), "id", true).collect().step("finding partitions")?)?);
    }

    steps.lap(&mut report, "users: apply");
    // ---- rides: apply --------------------------------------------------------------------------
    let ride_changes = cdc::prepare(&read_changes(&bronze_rides, &RIDE_COLUMNS).await?, &RIDE_COLUMNS)?;
    report.rides_read = count(&ride_changes);
    report.rows_read += report.rides_read;
    let statuses = lit(Series::new("s".into(), RIDE_STATUSES)).implode(false);
    let ride_rules = [
        ("id is null", col("id").is_null()),
        ("customer_id is null", col("customer_id").is_null()),
        ("requested_at is null", col("requested_at").is_null()),
        ("status is not a ride status", col("status").is_null().or(col("status").is_in(statuses, false).not())),
    ];
    steps.lap(&mut report, "rides: read changes");
    let (latest_rides, bad_rides) = cdc::latest_valid(&ride_changes, "id", &ride_rules, &[("id is null", col("id").is_null())])?;
    drop(ride_changes);

    steps.lap(&mut report, "rides: choose changes");
    let rebuild_rides = bronze_rides.rebuild || bronze_users.rebuild;
    let companions_marker = if rebuild_rides { None } else { rides_marker };
    let pending_before = match as_of_marker(&pending_url, &options, RIDES_MARKER, companions_marker).await? {
        Some(t) => io::read_all(&t).await?,
        None => DataFrame::empty(),
    };
    let deleted_before = match as_of_marker(&deleted_url, &options, RIDES_MARKER, companions_marker).await? {
        Some(t) => io::read_all(&t).await?,
        None => DataFrame::empty(),
    };
    let ride_files = match (&silver_rides, rebuild_rides) {
        (Some(t), false) => io::files(t)?,
        _ => Vec::new(),
    };
    // Every row of the partitions holding a published version of a changed key: their state
    // decides which changes are newer, and they are what a rewrite of those partitions keeps.
    let (published, published_days) = match (&silver_rides, rebuild_rides) {
        (Some(t), false) => {
            let holding = files_holding(t, &ride_files, &latest_rides.select(["id"]).step("reading changed keys")?).await?;
            let days: BTreeSet<(i32, i32, i32)> = holding.iter().filter_map(DataFile::day).collect();
            (io::read_files(t, &files_in(&ride_files, &days)).await?, days)
        }
        _ => (DataFrame::empty(), BTreeSet::new()),
    };
    steps.lap(&mut report, "rides: read published state");
    let mut known: Vec<LazyFrame> = Vec::new();
    for frame in [&published, &pending_before, &deleted_before] {
        if frame.height() > 0 {
            known.push(frame.clone().lazy().select(state_columns()));
        }
    }
    let known = if known.is_empty() { empty_state() } else { concat(known, UnionArgs::default()).step("collecting ride state")? };
    let newer_rides = cdc::newer_than(latest_rides.lazy(), known, "id").collect().step("applying ride changes")?;
    let ride_deletes = newer_rides.clone().lazy().filter(col(DELETED)).collect().step("applying ride deletes")?;
    let ride_candidates = newer_rides.clone().lazy().filter(col(DELETED).not()).collect().step("applying ride changes")?;
    report.rides_deleted = count(&ride_deletes);

    // Pending rides not superseded by a newer change are checked again with the new candidates.
    let still_pending = if pending_before.height() > 0 {
        cdc::with_keys(pending_before.clone().lazy(), newer_rides.clone().lazy(), "id", false).select(ride_change_columns())
    } else {
        ride_candidates.clone().lazy().select(ride_change_columns()).slice(0, 0)
    };
    let to_check = concat([still_pending, ride_candidates.clone().lazy().select(ride_change_columns())], UnionArgs::default())
        .step("collecting rides to check")?;
    // The checks are membership tests on the key columns: no join copies the wide rows, and the
    // rows keep their order.
    let ids_of = |kind: &str| -> Result<Expr> {
        let ids = all_users.clone().lazy().filter(col("type").eq(lit(kind))).select([col("id")]).collect().step("checking ride integrity")?;
        Ok(lit(ids.column("id").step("checking ride integrity")?.as_materialized_series().clone()).implode(false))
    };
    let (customers, drivers) = (ids_of("customer")?, ids_of("driver")?);
    let checked = to_check
        .with_column(
            when(col("customer_id").is_null().or(col("customer_id").is_in(customers, false).not()))
                .then(lit("customer not registered"))
                .when(col("driver_id").is_not_null().and(col("driver_id").is_in(drivers, false).not()))
                .then(lit("driver not registered"))
                .otherwise(lit(NULL).cast(DataType::String))
                .alias("reason"),
        )
        .collect()
        .step("checking ride integrity")?;
    let ready = checked.clone().lazy().filter(col("reason").is_null()).with_columns(partition_exprs("requested_at")).select(ride_output_columns()).collect().step("checking ride integrity")?;
    let waiting = checked.lazy().filter(col("reason").is_not_null()).select(pending_columns()).collect().step("checking ride integrity")?;
    report.rides_upserted = count(&ready);
    report.pending = count(&waiting);
    report.released = if pending_before.height() > 0 {
        count(&cdc::with_keys(ready.clone().lazy(), pending_before.clone().lazy(), "id", true).collect().step("counting releases")?)
    } else {
        0
    };
    report.oldest_pending_us = waiting.column(UPDATED).ok().and_then(|c| c.as_materialized_series().i64().ok().and_then(|s| s.min()));

    // Published rides to remove or replace: deleted, now waiting, or replaced by a ready version.
    let leaving = concat(
        [ride_deletes.clone().lazy().select([col("id")]), waiting.clone().lazy().select([col("id")]), ready.clone().lazy().select([col("id")])],
        UnionArgs::default(),
    )
    .step("collecting changed rides")?
    .collect()
    .step("collecting changed rides")?;
    let mut touched_rides = partitions_of(&ready)?;
    if published.height() > 0 {
        touched_rides.extend(partitions_of(&cdc::with_keys(published.clone().lazy(), leaving.clone().lazy(), "id", true).collect().step("finding partitions")?)?);
    }
    let deleted_after = {
        let new_tombstones = ride_deletes.clone().lazy().select(tombstone_columns());
        let frames = if deleted_before.height() > 0 {
            vec![deleted_before.clone().lazy().select(tombstone_columns()), new_tombstones]
        } else {
            vec![new_tombstones]
        };
        cdc::latest(concat(frames, UnionArgs::default()).step("collecting tombstones")?, "id").collect().step("collecting tombstones")?
    };

    steps.lap(&mut report, "rides: apply and check integrity");
    if nothing_new && !rebuild_rides && report.released == 0 {
        report.noop = true;
        return Ok(report);
    }

    // ---- writes, commit point last ---------------------------------------------------------------
    // 1. quarantine: append what is not there yet (keyed by bronze row).
    let mut bad = Vec::new();
    if bad_users.height() > 0 {
        bad.push(quarantine_rows(&bad_users, "users", bronze_users.upto)?.lazy());
    }
    if bad_rides.height() > 0 {
        bad.push(quarantine_rows(&bad_rides, "rides", bronze_rides.upto)?.lazy());
    }
    if !bad.is_empty() {
        let mut fresh = concat(bad, UnionArgs::default()).step("collecting quarantine")?;
        if let Some(existing) = io::open(&quarantine_url, &options).await? {
            let seen = io::read_columns(&existing, &io::files(&existing)?, Some(&["_airbyte_raw_id"])).await?;
            fresh = cdc::with_keys(fresh, seen.lazy(), "_airbyte_raw_id", false);
        }
        let fresh = fresh.collect().step("collecting quarantine")?;
        report.quarantined = count(&fresh);
        let of_table = |table: &str| fresh.clone().lazy().filter(col("table").eq(lit(table))).collect().step("counting quarantine");
        report.users_quarantined = count(&of_table("users")?);
        report.rides_quarantined = count(&of_table("rides")?);
        if fresh.height() > 0 {
            guard.next()?;
            report.written.push(io::write(&quarantine_url, &options, &fresh, WriteMode::Append, &[], &[], "silver_quarantine",
                "Silver: CDC changes that broke a rule (rule, key, bronze _airbyte_raw_id); they did not modify silver").await?);
        }
    }
    steps.lap(&mut report, "write quarantine");
    // 2. users (their own commit point).
    // Written whenever bronze advanced, even with no row to change, so that the marker advances.
    if newer_users.height() > 0 || bronze_users.rebuild || silver_users.is_none() || bronze_users.after != Some(bronze_users.upto) {
        let rows = all_users.clone().lazy().filter(in_partitions(&touched_users)).collect().step("selecting user partitions")?;
        let mode = if bronze_users.rebuild { WriteMode::Overwrite } else { WriteMode::ReplacePartitions(touched_users.clone()) };
        guard.next()?;
        report.written.push(io::write(&users_url, &options, &rows, mode, &PARTITIONS, &[(USERS_MARKER.to_owned(), bronze_users.upto)], "silver_users",
            "Silver: one row per user (customers and drivers), CDC applied; deleted users kept with is_deleted").await?);
        report.partitions_rewritten += touched_users.len() as u64;
    }
    steps.lap(&mut report, "write users");
    // 3. companions of rides, marked with the bronze rides version they reflect.
    let rides_markers = [(RIDES_MARKER.to_owned(), bronze_rides.upto)];
    guard.next()?;
    report.written.push(io::write(&pending_url, &options, &waiting, WriteMode::Overwrite, &[], &rides_markers, "silver_rides_pending",
        "Silver: rides whose latest change waits for its customer or driver to be registered (reason, change time)").await?);
    guard.next()?;
    report.written.push(io::write(&deleted_url, &options, &deleted_after, WriteMode::Overwrite, &[], &rides_markers, "silver_rides_deleted",
        "Silver: tombstones of deleted rides (id, delete time, change position)").await?);
    steps.lap(&mut report, "write pending and tombstones");
    // 4. rides: the run's commit point.
    // Rewritten partitions keep their rows that did not change; partitions that only gain rides
    // were not read yet.
    let mut current = Vec::new();
    if published.height() > 0 {
        current.push(published.lazy().filter(in_partitions(&touched_rides)).select(ride_output_columns()));
    }
    let unread: BTreeSet<(i32, i32, i32)> = touched_rides.difference(&published_days).copied().collect();
    if let (Some(table), false) = (&silver_rides, unread.is_empty() || rebuild_rides) {
        current.push(io::read_files(table, &files_in(&ride_files, &unread)).await?.lazy().select(ride_output_columns()));
    }
    let kept = if current.is_empty() {
        ready.clone().lazy().slice(0, 0)
    } else {
        cdc::with_keys(concat(current, UnionArgs::default()).step("assembling ride partitions")?, leaving.lazy(), "id", false)
    };
    let rows = concat([kept, ready.clone().lazy()], UnionArgs::default()).step("assembling ride partitions")?.collect().step("assembling ride partitions")?;
    let mode = if rebuild_rides { WriteMode::Overwrite } else { WriteMode::ReplacePartitions(touched_rides.clone()) };
    guard.next()?;
    report.written.push(io::write(&rides_url, &options, &rows, mode, &PARTITIONS, &rides_markers, "silver_rides",
        "Silver: one row per ride with its registered customer and driver, CDC applied, partitioned by requested_at").await?);
    report.partitions_rewritten += touched_rides.len() as u64;
    steps.lap(&mut report, "write rides");
    Ok(report)
}

fn in_partitions(partitions: &BTreeSet<(i32, i32, i32)>) -> Expr {
    let mut expr = lit(false);
    for (y, m, d) in partitions {
        expr = expr.or(col("year").eq(lit(*y)).and(col("month").eq(lit(*m))).and(col("day").eq(lit(*d))));
    }
    expr
}

fn state_columns() -> Vec<Expr> {
    vec![col("id"), col(POSITION), col(UPDATED), col(EXTRACTED)]
}

fn empty_state() -> LazyFrame {
    DataFrame::new(0, vec![
        Column::new_empty("id".into(), &DataType::Int64),
        Column::new_empty(POSITION.into(), &DataType::Int64),
        Column::new_empty(UPDATED.into(), &DataType::Int64),
        Column::new_empty(EXTRACTED.into(), &DataType::Int64),
    ])
    .unwrap_or_default()
    .lazy()
}

fn user_output_columns() -> Vec<Expr> {
    let mut exprs: Vec<Expr> = USER_COLUMNS.iter().map(|c| col(*c)).collect();
    exprs.extend([col("is_deleted"), col("deleted_at"), col(POSITION), col(UPDATED), col(EXTRACTED), col("year"), col("month"), col("day")]);
    exprs
}

fn ride_change_columns() -> Vec<Expr> {
    let mut exprs: Vec<Expr> = RIDE_COLUMNS.iter().map(|c| col(*c)).collect();
    exprs.extend(ORDER.iter().map(|c| col(*c)));
    exprs
}

fn ride_output_columns() -> Vec<Expr> {
    let mut exprs = ride_change_columns();
    exprs.extend(PARTITIONS.iter().map(|c| col(*c)));
    exprs
}

fn pending_columns() -> Vec<Expr> {
    let mut exprs = ride_change_columns();
    exprs.push(col("reason"));
    exprs
}

fn tombstone_columns() -> Vec<Expr> {
    vec![col("id"), col("deleted_at"), col(POSITION), col(UPDATED), col(EXTRACTED)]
}
