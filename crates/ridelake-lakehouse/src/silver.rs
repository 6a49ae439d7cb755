//! Silver: bronze CDC applied to `users` and `rides`, exactly once per bronze version.
//!
//! Tables (under `<root>/silver/`):
//! - `users`: one row per user; a deleted user stays with `is_deleted = true`, so that no ride
//!   loses its user (the rides of a deleted user stay published). Partitioned by `created_at`
//!   (year/month/day).
//! - `rides`: one row per ride whose latest valid change is not a delete and whose customer is a
//!   registered `customer` and whose driver (once set) is a registered `driver`, or whose link
//!   that does not hold the model accepts ([`crate::model::LinkPolicy`]: the ride's `unlinked`
//!   then names it, and a run that changes the user clears or sets it). Partitioned by
//!   `requested_at` (year/month/day), or as the model says (`created_at`, `updated_at`, none).
//! - `rides_pending`: rides whose latest change waits for its users, with the reason; re-checked
//!   at every run and released into `rides` when the users arrive. A user whose type changes
//!   re-checks that user's published rides in the same run: they move to pending when they no
//!   longer qualify.
//! - `rides_deleted`: tombstones (a ride whose latest change is a delete), so that a late older
//!   change can never bring a deleted ride back; a ride inserted again leaves it.
//! - `quarantine`: every change that broke a rule, with the rule and its bronze `_airbyte_raw_id`.
//!
//! Every ride key is in exactly one of `rides`, `rides_pending`, `rides_deleted`, or only in
//! `quarantine`; and silver is a function of bronze: whatever the cut points between runs (and
//! crashes), it equals one rebuild from all of bronze. Which change of a key is the latest is
//! decided by [`crate::order`] alone.
//!
//! The data's way: [`crate::increment`] reads what bronze added since the markers (or all of
//! it, when a rebuild is needed); [`crate::cdc`] prepares, checks and orders the changes; this
//! module folds them into the published state, checks integrity and writes; [`crate::io`] writes
//! and commits.
//!
//! Exactly once: each silver table's commit carries `txn` markers with the bronze version it
//! reflects, the bronze table's identity and the epoch state of the order. The `rides` commit is
//! the run's commit point, and records the `users` version its integrity was checked against:
//! `rides_pending` and `rides_deleted` are written before it and, when a run died between the
//! two, read back as of the version whose marker matches `rides`'s; a run that died between the
//! `users` and `rides` commits is followed by a rebuild. Running twice is a no-op; a run killed
//! midway and rerun gives the same tables. A lease ([`crate::lease`]) keeps two runs from
//! interleaving.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use deltalake::DeltaTable;
use polars::prelude::*;
use url::Url;

use ridelake_core::bronze::RAW_ID;

use crate::cdc::{self, DELETED, EXTRACTED, RULE};
use crate::error::{LakehouseError, PolarsContext, Result};
use crate::increment::{self, BronzeIncrement, BronzeUsers, Rebuild};
use crate::io::{self, DataFile, Target, WriteMode};
use crate::keys::Keys;
use crate::layout::LakeLayout;
use crate::lease::{self, Lease};
use crate::model::{DEFAULT_MODEL_HASH, LinkPolicy, Links, MODEL_MARKER, RIDE_COLUMNS, RIDE_STATUSES, StreamMap, USER_COLUMNS, USER_TYPES};
use crate::order::{self, EpochState, INGEST_ROW, INGEST_VERSION, ORDER};
use crate::rebuild::{self, SliceRunner};
use crate::rules;
use crate::update;

const PARTITIONS: [&str; 3] = ["year", "month", "day"];

/// The names silver's tables and their decisions use besides the data columns (the change order
/// is under `_cdc_`): a source column kept under its name may not take one
/// ([`StreamMap::keep`]).
pub(crate) const OWN_COLUMNS: [&str; 14] =
    ["is_deleted", "deleted_at", "year", "month", "day", UNLINKED, "reason", EXPIRED, RULE, "table", "type_before", "bronze_version", "_file", io::WRITER_COLUMN];

/// What a silver column means, for the column comments of table `table` (`silver_rides`, …).
pub fn column_doc(table: &str, column: &str) -> Option<&'static str> {
    Some(match (table, column) {
        ("silver_users", "year" | "month" | "day") => "calendar part of created_at, or of updated_at when the model files users by it (UTC); partitions the table",
        (_, "year" | "month" | "day") => "calendar part of requested_at, or of created_at or updated_at when the model files rides by it (UTC); partitions the table",
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
        ("silver_rides_pending", "expired") => "the ride waited longer than the model's wait_for allows: it is also in silver_quarantine, with the reason; released when its user arrives",
        (_, "unlinked") => "the links the model accepts that do not hold (customer not registered; driver not registered); null when all hold",
        (_, "rule") => "the rule the change broke",
        (_, "table") => "users or rides",
        (_, "_airbyte_raw_id") => "the bronze row of the change (_airbyte_raw_id)",
        (_, "bronze_version") => "bronze version that added the change",
        (_, "_cdc_deleted") => "the change is a delete",
        (_, "_cdc_generation") => "change order 1: bronze generation (_airbyte_generation_id) of the row's latest change",
        (_, "_cdc_epoch") => "change order 2: epoch of the source position (a source-mysql upgrade or a binlog restart starts a new one)",
        (_, "_cdc_position") => "change order 3: source position within the epoch (_ab_cdc_cursor, or binlog file number << 32 | offset)",
        (_, "_cdc_updated_at") => "change order 4: time of the row's latest change in the source (microseconds since the epoch)",
        (_, "_cdc_bronze_version") => "change order 5: bronze version that added the row's latest change",
        (_, "_cdc_bronze_row") => "change order 6: place of the change among the rows of that bronze version",
        (_, "_cdc_extracted_at") => "when Airbyte extracted the row's latest change (microseconds since the epoch)",
        _ => return None,
    })
}

/// `txn` app id of silver users (version = bronze users version).
pub const USERS_MARKER: &str = "ridelake.silver.users/bronze.users";
/// `txn` app id of silver rides and its companions (version = bronze rides version).
pub const RIDES_MARKER: &str = "ridelake.silver.rides/bronze.rides";
/// `txn` app id on silver rides: the silver users version its integrity was checked against.
pub const RIDES_USERS_MARKER: &str = "ridelake.silver.rides/silver.users";

/// The `txn` app id, on silver users, of the bronze version of the users stream `map` reads:
/// [`USERS_MARKER`], or with users from several source tables, one per stream (by its name).
pub(crate) fn users_marker(map: &StreamMap) -> String {
    match map.role() {
        None => USERS_MARKER.to_owned(),
        Some(_) => format!("ridelake.silver.users/bronze.{}", map.stream),
    }
}

/// The markers a silver users commit carries for its bronze input (every users stream's, each
/// at its epoch state `epochs`, in the streams' order), and the model hash.
pub(crate) fn users_markers(users: &BronzeUsers, epochs: &[EpochState], model_hash: i64) -> Vec<(String, i64)> {
    let mut markers = vec![(MODEL_MARKER.to_owned(), model_hash)];
    for (stream, epochs) in users.streams.iter().zip(epochs) {
        markers.extend(stream_markers(&users_marker(&stream.map), stream, epochs));
    }
    markers
}

/// The `txn` app id that keeps the identity of the bronze table next to its marker `app_id`.
fn table_marker(app_id: &str) -> String {
    format!("{app_id}#table")
}

/// What a silver run did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SilverReport {
    /// Bronze users versions processed: (after, up to); equal when there was nothing new. (With
    /// users from several source tables: the first's; `users_streams` has each.)
    pub users_versions: (Option<i64>, i64),
    /// Each users stream's bronze versions processed (after, up to), by stream name.
    pub users_streams: BTreeMap<String, (Option<i64>, i64)>,
    /// Bronze rides versions processed.
    pub rides_versions: (Option<i64>, i64),
    /// Why this run rebuilt silver from all of bronze, if it did.
    pub rebuild: Option<String>,
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
    /// Users whose type changed (their published rides were checked again).
    pub users_retyped: u64,
    /// Rides inserted or updated in `rides`.
    pub rides_upserted: u64,
    /// Rides deleted by this run.
    pub rides_deleted: u64,
    /// Published rides that moved back to pending (their user's type changed).
    pub rides_withdrawn: u64,
    /// Changes quarantined by this run.
    pub quarantined: u64,
    /// Users changes quarantined by this run.
    pub users_quarantined: u64,
    /// Rides changes quarantined by this run.
    pub rides_quarantined: u64,
    /// Changes set aside by a model rule whose action is drop (no quarantine row).
    pub dropped: u64,
    /// Per model rule whose action is warn (`<table>: <rule>`), the changes that broke it and
    /// were applied.
    pub warnings: std::collections::BTreeMap<String, u64>,
    /// Rides waiting for their users after this run.
    pub pending: u64,
    /// Rides released from pending by this run.
    pub released: u64,
    /// Rides this run published with a link the model accepts that does not hold (`unlinked`
    /// set).
    pub rides_unlinked: u64,
    /// Pending rides that waited longer than a `wait_for` link allows after the run (in
    /// `rides_pending` with `expired` set, and in the quarantine with the reason).
    pub rides_expired: u64,
    /// Bronze's clock the limited waits were counted from (µs; the newest
    /// `_airbyte_extracted_at` bronze holds), when a link waits for a while.
    pub clock_us: Option<i64>,
    /// `_cdc_updated_at` (µs) of the oldest waiting ride, if any.
    pub oldest_pending_us: Option<i64>,
    /// Silver partitions rewritten.
    pub partitions_rewritten: u64,
    /// Slices (ranges of the ride id) a rebuild, or an increment larger than the memory budget,
    /// decided its rides in; 0 for an increment decided at once.
    pub slices: u64,
    /// Wall time of each slice's worker, in seconds, in slice order (a rebuild's per-slice cost).
    pub slice_seconds: Vec<f64>,
    /// Slices (ranges of the user id) a rebuild decided its users in; 0 for an increment, which
    /// decides its users at once.
    pub user_slices: u64,
    /// Bronze files a rebuild's slices (of rides and of users) did not read, summed over the
    /// slices: their key statistics lie outside the slice (a measure of how well bronze's files
    /// follow the key; auto-increment ids keep most files out of most slices).
    pub bronze_files_skipped: u64,
    /// Whether the run found nothing to do.
    pub noop: bool,
    /// The commits of this run, in order (the last one, `silver_rides`, is the commit point).
    pub written: Vec<io::Written>,
    /// Wall time of the run's steps, in seconds, in order.
    pub step_seconds: Vec<(String, f64)>,
}

/// Records the wall time of a run's steps into its report.
struct Steps(std::time::Instant);

impl SilverReport {
    /// Counts what the model's drop and warn rules did to a batch of changes.
    pub(crate) fn count_rules(&mut self, dropped: u64, warned: &[(String, u64)]) {
        self.dropped += dropped;
        for (rule, changes) in warned {
            *self.warnings.entry(rule.clone()).or_default() += changes;
        }
    }
}

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
    /// How long the run's lease lasts between renewals (default [`lease::ttl_from_env`]).
    pub lease_ttl: Option<std::time::Duration>,
    /// Rebuild silver from all of bronze, even when the markers allow an increment (needed once
    /// after changing the model).
    pub rebuild: bool,
    /// Memory a run may use, in bytes: a rebuild, or an increment larger than this, decides its
    /// rides in as many slices (ranges of the ride id) as this needs ([`crate::update`]). `None`: `RIDELAKE_MEMORY_BUDGET`, else half the machine's memory.
    pub memory_budget: Option<u64>,
    /// Decide the rides in this many slices whatever the budget (a rebuild's and an increment's) (at most
    /// [`crate::slices::MAX_SLICES`]; fewer when the rides' ids are too few to tell them apart).
    pub slices: Option<usize>,
    /// Who runs a rebuild's slices ([`crate::rebuild`]); `None`: this process, one after another.
    /// (An increment's slices always run in this process.)
    pub engine: Option<std::sync::Arc<dyn SliceRunner>>,
}

/// Before each table write: renews the lease and stops the run where a failure test asks.
pub(crate) struct WriteGuard<'a> {
    done: usize,
    limit: Option<usize>,
    pub(crate) lease: &'a mut Lease,
}

impl WriteGuard<'_> {
    pub(crate) async fn next(&mut self) -> Result<()> {
        if self.limit.is_some_and(|limit| self.done >= limit) {
            return Err(LakehouseError::Interrupted(self.done));
        }
        self.lease.renew().await?;
        self.done += 1;
        Ok(())
    }
}

/// What a silver table remembers of its input: its bronze marker, the bronze table's identity
/// and the epoch state of the change order at the marker.
struct Remembered {
    table: Option<DeltaTable>,
    marker: Option<i64>,
    bronze_id: Option<i64>,
    /// The change-order state kept with the marker; `None` when a marker is missing (rebuild).
    epochs: Option<EpochState>,
}

async fn remembered(url: &Url, options: &HashMap<String, String>, app_id: &str) -> Result<Remembered> {
    let (table, marker) = io::open_with_marker(url, options, app_id).await?;
    let (mut bronze_id, mut epochs) = (None, Some(EpochState::default()));
    if let Some(t) = &table {
        // Each marker is a lookup in the log (round trips on S3): all at once.
        let identity = table_marker(app_id);
        let ids: Vec<String> = EpochState::default().markers(app_id).into_iter().map(|(id, _)| id).collect();
        let (id, values) = futures::try_join!(io::marker(t, &identity), futures::future::try_join_all(ids.iter().map(|id| io::marker(t, id))))?;
        bronze_id = id;
        let mut epoch_values = [None; 4];
        for (slot, value) in epoch_values.iter_mut().zip(values) {
            *slot = value;
        }
        epochs = EpochState::from_markers(epoch_values);
    }
    Ok(Remembered { table, marker, bronze_id, epochs })
}

/// The markers a silver table's commit carries for its bronze input, and the hash of the model
/// it was mapped with.
pub(crate) fn input_markers(app_id: &str, increment: &BronzeIncrement, epochs: &EpochState, model_hash: i64) -> Vec<(String, i64)> {
    let mut markers = stream_markers(app_id, increment, epochs);
    markers.push((MODEL_MARKER.to_owned(), model_hash));
    markers
}

/// The markers of one bronze input, `app_id`: its version, its table's identity and the epoch
/// state there.
fn stream_markers(app_id: &str, increment: &BronzeIncrement, epochs: &EpochState) -> Vec<(String, i64)> {
    let mut markers = vec![(app_id.to_owned(), increment.upto), (table_marker(app_id), increment.table_id)];
    markers.extend(epochs.markers(app_id));
    markers
}

/// The files among `files` that hold one of the keys in `keys` (column `id`): the files' `id`
/// statistics rule most out, the `id` column of the others is read and joined with the keys.
pub(crate) async fn files_holding(table: &DeltaTable, files: &[DataFile], keys: &DataFrame) -> Result<Vec<DataFile>> {
    if keys.height() == 0 || files.is_empty() {
        return Ok(Vec::new());
    }
    let sorted = Keys::of(keys.column("id").step("reading changed keys")?)?;
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

/// The ids of published rides whose customer or driver is one of `users` (column `id`): reads
/// only the three id columns of the published files, a few files at a time.
pub(crate) async fn rides_of_users(table: &DeltaTable, files: &[DataFile], users: &DataFrame) -> Result<DataFrame> {
    let step = "finding the rides of retyped users";
    let users = lit(users.column("id").step(step)?.as_materialized_series().clone()).implode(false);
    let mut found: Vec<LazyFrame> = Vec::new();
    for chunk in files.chunks(16) {
        let links = io::read_columns(table, chunk, Some(&["id", "customer_id", "driver_id"])).await?;
        let rides = links.lazy().filter(col("customer_id").is_in(users.clone(), false).or(col("driver_id").is_in(users.clone(), false))).select([col("id")]);
        found.push(rides.collect().step(step)?.lazy());
    }
    if found.is_empty() {
        return Ok(DataFrame::empty());
    }
    concat(found, UnionArgs::default()).step(step)?.collect().step(step)
}

/// The ids of published rides that were published with a link that does not hold (their
/// `unlinked` is set) whose user on that link is one of `users` (column `id`): reads only the
/// files whose statistics say they hold such a ride, and of those the id and link columns. (A
/// change of the user on a link that holds cannot change `unlinked`: only a retype can, which
/// [`rides_of_users`] covers.)
pub(crate) async fn unlinked_rides_of(table: &DeltaTable, files: &[DataFile], users: &DataFrame) -> Result<DataFrame> {
    let step = "finding the unlinked rides of arriving users";
    let users = lit(users.column("id").step(step)?.as_materialized_series().clone()).implode(false);
    let holding: Vec<DataFile> = files.iter().filter(|f| f.unlinked != Some(0)).cloned().collect();
    let mut found: Vec<LazyFrame> = Vec::new();
    for chunk in holding.chunks(16) {
        let links = io::read_columns(table, chunk, Some(&["id", "customer_id", "driver_id", UNLINKED])).await?;
        let rides = links
            .lazy()
            .filter(
                (col(UNLINKED).str().contains_literal(lit(CUSTOMER_MISSING)).and(col("customer_id").is_in(users.clone(), false)))
                    .or(col(UNLINKED).str().contains_literal(lit(DRIVER_MISSING)).and(col("driver_id").is_in(users.clone(), false))),
            )
            .select([col("id")]);
        found.push(rides.collect().step(step)?.lazy());
    }
    if found.is_empty() {
        return Ok(DataFrame::empty());
    }
    concat(found, UnionArgs::default()).step(step)?.collect().step(step)
}

/// The ids of published rides an incremental run checks again although no change of theirs
/// arrived: the rides of users whose type changed (`retyped`), and, when the model accepts a link
/// (`links`), the unlinked rides of the users the run changed (`users.changed`): a user who
/// arrives clears the `unlinked` of the rides that wait for nobody.
pub(crate) async fn rides_to_check_again(table: Option<&DeltaTable>, files: &[DataFile], users: &UsersDecided, retyped: &DataFrame, links: &Links) -> Result<DataFrame> {
    let Some(table) = table else { return Ok(DataFrame::empty()) };
    let mut found = Vec::new();
    if retyped.height() > 0 {
        found.push(rides_of_users(table, files, retyped).await?);
    }
    if links.accepts_any() && users.changed.height() > 0 {
        found.push(unlinked_rides_of(table, files, &users.changed).await?);
    }
    let found: Vec<LazyFrame> = found.into_iter().filter(|f| f.height() > 0).map(DataFrame::lazy).collect();
    if found.is_empty() {
        return Ok(DataFrame::empty());
    }
    let step = "collecting rides to check";
    concat(found, UnionArgs::default()).step(step)?.unique_stable(None, UniqueKeepStrategy::First).collect().step(step)
}

/// The quarantine rows of `bad` not in quarantine yet (`quarantined`: its `_airbyte_raw_id`s).
pub(crate) fn not_quarantined(bad: DataFrame, quarantined: Option<&DataFrame>) -> Result<DataFrame> {
    match quarantined {
        Some(seen) if bad.height() > 0 && seen.height() > 0 => {
            cdc::with_keys(bad.lazy(), seen.clone().lazy(), RAW_ID, false).collect().step("collecting quarantine")
        }
        _ => Ok(bad),
    }
}

/// The latest version of the table at `url` whose marker `app_id` is at most `max` (time travel),
/// or `None` when there is no such version.
pub(crate) async fn as_of_marker(url: &Url, options: &HashMap<String, String>, app_id: &str, max: Option<i64>) -> Result<Option<DeltaTable>> {
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

/// The UTC day of timestamp `date_column` as the year, month and day columns that partition
/// silver and gold tables.
pub(crate) fn partition_exprs(date_column: &str) -> [Expr; 3] {
    [
        col(date_column).dt().year().cast(DataType::Int32).alias("year"),
        col(date_column).dt().month().cast(DataType::Int32).alias("month"),
        col(date_column).dt().day().cast(DataType::Int32).alias("day"),
    ]
}

/// `rows` with the day columns (year, month, day) of `partition`, the column the model files
/// their table by; as they are when it files it by none.
pub(crate) fn with_partitions(rows: LazyFrame, partition: Option<&str>) -> LazyFrame {
    match partition {
        Some(column) => rows.with_columns(partition_exprs(column)),
        None => rows,
    }
}

/// The parts of a table that `frame`'s rows fall in: their day partitions (from their year,
/// month and day columns) when the table is `partitioned`; otherwise the whole table
/// ([`WHOLE_TABLE`]), when there are rows.
pub(crate) fn parts_of(frame: &DataFrame, partitioned: bool) -> Result<BTreeSet<(i32, i32, i32)>> {
    match partitioned {
        true => partitions_of(frame),
        false if frame.height() > 0 => Ok(BTreeSet::from([WHOLE_TABLE])),
        false => Ok(BTreeSet::new()),
    }
}

/// The parts of a table that `files` (of it) are in: their day partitions, or the whole table
/// for a file of a table that is not partitioned.
pub(crate) fn parts_of_files(files: &[DataFile]) -> BTreeSet<(i32, i32, i32)> {
    files.iter().map(|f| f.day().unwrap_or(WHOLE_TABLE)).collect()
}

/// The day partitions of `frame`'s rows, from their year, month and day columns.
pub(crate) fn partitions_of(frame: &DataFrame) -> Result<BTreeSet<(i32, i32, i32)>> {
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

/// The files of the parts `partitions` ([`WHOLE_TABLE`]: every file).
pub(crate) fn files_in(files: &[DataFile], partitions: &BTreeSet<(i32, i32, i32)>) -> Vec<DataFile> {
    let whole = partitions.contains(&WHOLE_TABLE);
    files
        .iter()
        .filter(|f| whole || f.day().is_some_and(|day| partitions.contains(&day)))
        .cloned()
        .collect()
}

pub(crate) fn count(frame: &DataFrame) -> u64 {
    frame.height() as u64
}

/// The ride fields the rules read, read for every change with the key and the order columns.
pub(crate) const RIDE_RULE_FIELDS: [&str; 4] = ["id", "customer_id", "requested_at", "status"];

/// `changes` (tagged with their bronze rows) with their `fields` read from bronze, for these rows
/// only.
pub(crate) async fn with_fields(changes: DataFrame, increment: &BronzeIncrement, fields: &[&str]) -> Result<DataFrame> {
    let step = "reading the fields of the latest changes";
    let at = bronze_rows(&changes)?;
    let read = increment::read_rows(increment, fields, &at).await?;
    let mut changes = changes;
    for column in cdc::normalize(read, fields)?.into_columns() {
        changes.with_column(column).step(step)?;
    }
    Ok(changes)
}

/// The bronze rows (version, ingest row) of `changes`.
fn bronze_rows(changes: &DataFrame) -> Result<Vec<(i64, i64)>> {
    let step = "finding the bronze rows of changes";
    let versions = changes.column(INGEST_VERSION).step(step)?.i64().step(step)?;
    let rows = changes.column(INGEST_ROW).step(step)?.i64().step(step)?;
    Ok(versions.iter().zip(rows.iter()).map(|(v, r)| (v.unwrap_or(-1), r.unwrap_or(-1))).collect())
}

/// `bad` changes with the `_airbyte_raw_id` of their bronze rows (read for these rows only).
pub(crate) async fn with_bronze_ids(mut bad: DataFrame, increment: &BronzeIncrement) -> Result<DataFrame> {
    let step = "finding the bronze rows of quarantined changes";
    let at = bronze_rows(&bad)?;
    let ids = if at.is_empty() {
        Column::new_empty(RAW_ID.into(), &DataType::String)
    } else {
        increment::read_rows(increment, &[RAW_ID], &at).await?.column(RAW_ID).step(step)?.cast(&DataType::String).step(step)?
    };
    bad.with_column(ids).step(step)?;
    Ok(bad)
}

/// The quarantine rows of `bad` changes of silver `table`; `rides` is the rides' map, which
/// gives the quarantine's key type ([`StreamMap::quarantine_key_type`]).
pub(crate) fn quarantine_rows(bad: &DataFrame, table: &str, rides: &StreamMap) -> Result<DataFrame> {
    // (strict: a key that does not fit the quarantine's type is an error, never a null)
    let mut columns = vec![lit(table).alias("table"), col("id").strict_cast(rides.quarantine_key_type()), col(RULE), col("_airbyte_raw_id")];
    columns.extend(ORDER.iter().map(|c| col(*c)));
    columns.extend([col(DELETED), col(INGEST_VERSION).alias("bronze_version")]);
    bad.clone().lazy().select(columns).collect().step("building quarantine rows")
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
/// (With users from several source tables, `users` is the first stream's, and `behind` counts
/// them all.)
pub async fn progress(layout: &LakeLayout) -> Result<Progress> {
    let options = layout.storage_options();
    let mut streams = Vec::new();
    let user_markers: Vec<(&StreamMap, String)> = layout.model.user_maps().into_iter().map(|m| (m, users_marker(m))).collect();
    for (map, marker) in user_markers.iter().map(|(m, id)| (*m, id.as_str())).chain([(&layout.model.rides, RIDES_MARKER)]) {
        let bronze = io::open(&layout.bronze(&map.stream)?, &options).await?;
        let bronze_version = bronze.and_then(|t| t.version()).map(|v| v as i64);
        streams.push(StreamProgress::new(bronze_version, io::open_with_marker(&layout.silver(map.table)?, &options, marker).await?.1));
    }
    let behind = streams.iter().any(|s| s.behind);
    let (users, rides) = (streams[0], streams[streams.len() - 1]);
    Ok(Progress { users, rides, behind })
}

/// Builds (or brings up to date) the silver tables from bronze.
pub async fn build_silver(layout: &LakeLayout) -> Result<SilverReport> {
    build_silver_with(layout, &SilverOptions::default()).await
}

/// [`build_silver`] with options. Holds the silver lease for the whole run.
pub async fn build_silver_with(layout: &LakeLayout, run: &SilverOptions) -> Result<SilverReport> {
    let options = layout.storage_options();
    let ttl = run.lease_ttl.unwrap_or_else(lease::ttl_from_env);
    let mut lease = Lease::acquire(&layout.silver("_lease")?, &options, &lease::holder("silver"), ttl).await?;
    let result = silver_run(layout, run, &mut lease).await;
    lease.release().await;
    result
}

async fn silver_run(layout: &LakeLayout, run: &SilverOptions, lease: &mut Lease) -> Result<SilverReport> {
    let mut guard = WriteGuard { done: 0, limit: run.fail_after_writes, lease };
    let options = layout.storage_options();
    let mut report = SilverReport::default();
    let mut steps = Steps(std::time::Instant::now());
    let tables = Tables::of(layout)?;
    let (users_url, rides_url) = (tables.users.clone(), tables.rides.clone());

    // ---- read: what bronze added since the markers, or all of it ---------------------------------
    // (everything is read before any write, so that a rerun sees the same)
    let model = &layout.model;
    // (one marker per source table of users, all on silver users)
    let mut users_known = Vec::new();
    for map in model.user_maps() {
        users_known.push(remembered(&users_url, &options, &users_marker(map)).await?);
    }
    let users_table = users_known.first().and_then(|k| k.table.clone());
    // A table keeps the partitioning it was created with: one the model no longer asks for is
    // named before anything is written.
    if let Some(t) = &users_table {
        same_partitioning(t, &users_url, "users", model.users.partition, model)?;
    }
    let rides_known = remembered(&rides_url, &options, RIDES_MARKER).await?;
    if let Some(t) = &rides_known.table {
        same_partitioning(t, &rides_url, "rides", model.rides.partition, model)?;
    }
    let model_hash = model.hash();
    // The model silver was built with (rides is the commit point; silver from before models
    // existed was built with the default model): another model would mix two mappings.
    // (both of rides' own markers are read at once: each is a lookup in the log)
    // (A rides table without its bronze marker holds no run's data: a first build that died
    // after creating its tables. It was built with nothing.)
    let (built_with, rides_checked_against) = match (&rides_known.table, rides_known.marker) {
        (Some(t), Some(_)) => {
            let (model_marker, checked_against) = futures::try_join!(io::marker(t, MODEL_MARKER), io::marker(t, RIDES_USERS_MARKER))?;
            (Some(model_marker.unwrap_or(DEFAULT_MODEL_HASH)), checked_against)
        }
        _ => (None, None),
    };
    let forced = match built_with {
        Some(built) if built != model_hash && !run.rebuild => {
            return Err(LakehouseError::ModelChanged { origin: model.origin.clone(), built, now: model_hash });
        }
        Some(built) if built != model_hash => Some(Rebuild::ModelChanged),
        _ if run.rebuild => Some(Rebuild::Requested),
        _ => None,
    };
    // Silver's text and number columns have fixed types; a table written by a release that took
    // the source's type (a model mapping text from an integer column) is rebuilt once.
    let forced = match forced {
        Some(f) => Some(f),
        None => {
            let mut stale = None;
            for (known, table) in [(&users_table, USER_COLUMNS.as_slice()), (&rides_known.table, RIDE_COLUMNS.as_slice())] {
                if let (None, Some(t)) = (&stale, known) {
                    stale = crate::model::stale_column(io::arrow_schema(t)?.as_ref(), table);
                }
            }
            stale.map(|column| Rebuild::ColumnTypes { column })
        }
    };
    let bronze_rides_url = layout.bronze(&model.rides.stream)?;
    let mut user_streams = Vec::new();
    for (map, known) in model.user_maps().into_iter().zip(&users_known) {
        user_streams.push(increment::increment(&layout.bronze(&map.stream)?, &options, known.marker, known.bronze_id, map).await?);
    }
    let mut bronze_users = BronzeUsers::new(user_streams);
    let mut bronze_rides = increment::increment(&bronze_rides_url, &options, rides_known.marker, rides_known.bronze_id, &model.rides).await?;
    // The model must fit bronze's schemas (from the log): a missing or mistyped column stops the
    // run here, naming the model line, before any data is read.
    let users_schemas = bronze_users.streams.iter().map(|s| io::arrow_schema(&s.table)).collect::<Result<Vec<_>>>()?;
    let rides_schema = io::arrow_schema(&bronze_rides.table)?;
    let problems = model.check_bronze(&users_schemas.iter().map(|s| Some(s.as_ref())).collect::<Vec<_>>(), Some(rides_schema.as_ref()));
    if !problems.is_empty() {
        return Err(LakehouseError::Model { origin: model.origin.clone(), problems });
    }
    // A model that keeps the source's other columns: silver's tables hold each kept column in its
    // type, so a column the source added, or widened, reaches silver through a rebuild (which
    // writes the tables with the new columns). A key whose source column changed kind (integers
    // to text) needs every table rewritten too. (Each silver table's schema is read once; a kept
    // column's difference is named before a key's.)
    let forced = match forced {
        Some(f) => Some(f),
        None => {
            let (mut kept, mut key) = (None, None);
            for (known, map) in [(&users_table, &bronze_users.map), (&rides_known.table, &bronze_rides.map)] {
                if let Some(t) = known {
                    let schema = io::arrow_schema(t)?;
                    kept = kept.or_else(|| map.kept_difference(schema.as_ref()));
                    key = key.or_else(|| map.key_difference(schema.as_ref()));
                }
            }
            kept.map(|difference| Rebuild::KeptColumns { difference }).or(key.map(|difference| Rebuild::KeyKind { difference }))
        }
    };
    // Rides record the users version their integrity was checked against; any other means a run
    // stopped between the two commits (or silver predates these markers): rebuild.
    // (commits since then that changed no data, such as maintenance's, do not count)
    let users_version = users_table.as_ref().and_then(|t| t.version()).map(|v| v as i64);
    let interrupted = match (&rides_known.table, &users_table, rides_checked_against, users_version) {
        (None, ..) => false,
        (Some(_), Some(users), Some(checked), Some(now)) if checked < now => !io::data_unchanged_since(users, checked).await?,
        _ => rides_checked_against != users_version,
    };
    let state_missing = users_known.iter().any(|k| k.epochs.is_none()) || rides_known.epochs.is_none();
    if forced.is_some() || interrupted || state_missing || bronze_users.rebuild().is_some() || bronze_rides.rebuild.is_some() {
        let reason = |own: &Option<Rebuild>| match (&forced, interrupted, own) {
            (Some(forced), _, _) => forced.clone(),
            (None, true, _) => Rebuild::Interrupted,
            (None, false, Some(own)) => own.clone(),
            (None, false, None) if state_missing => Rebuild::OrderStateMissing,
            (None, false, None) => Rebuild::WithOtherStream,
        };
        let (users_reason, rides_reason) = (reason(&bronze_users.rebuild().cloned()), reason(&bronze_rides.rebuild));
        // (a stream whose increment is not all of bronze is read again whole)
        let mut streams = Vec::new();
        for (stream, map) in std::mem::take(&mut bronze_users.streams).into_iter().zip(model.user_maps()) {
            streams.push(match stream.rebuild {
                Some(_) => stream,
                None => increment::increment(&layout.bronze(&map.stream)?, &options, None, None, map).await?,
            });
        }
        bronze_users = BronzeUsers::new(streams);
        if bronze_rides.rebuild.is_none() {
            bronze_rides = increment::increment(&bronze_rides_url, &options, None, None, &model.rides).await?;
        }
        bronze_users.set_rebuild(users_reason);
        bronze_rides.rebuild = Some(rides_reason);
    }
    let rebuild = bronze_rides.rebuild.is_some();
    report.rebuild = bronze_rides.rebuild.as_ref().or(bronze_users.rebuild()).map(|r| match (bronze_users.rebuild(), &bronze_rides.rebuild) {
        (Some(u), Some(r)) if u != r => format!("users: {}; rides: {}", u.describe(), r.describe()),
        _ => r.describe(),
    });
    if let Some(first) = bronze_users.streams.first() {
        report.users_versions = (first.after, first.upto);
    }
    report.users_streams = bronze_users.streams.iter().map(|s| (s.map.stream.clone(), (s.after, s.upto))).collect();
    report.rides_versions = (bronze_rides.after, bronze_rides.upto);
    if !rebuild && bronze_users.up_to_date() && bronze_rides.up_to_date() {
        report.noop = true;
        held(&mut report, &tables, &options, &model.rides.links).await?;
        return Ok(report);
    }
    // A source column the model reads that the source dropped would turn null silently: the run
    // stops before reading, unless the model says the column may go.
    let mut problems = Vec::new();
    for (bronze, map) in bronze_users.streams.iter().zip(model.user_maps()).chain([(&bronze_rides, &model.rides)]) {
        if rebuild || !bronze.up_to_date() {
            let reads = if rebuild { None } else { bronze.after };
            problems.extend(map.absent_problems(&increment::absent_columns(&bronze.table)?, reads));
        }
    }
    if !problems.is_empty() {
        return Err(LakehouseError::Model { origin: model.origin.clone(), problems });
    }
    let (mut users_epochs, rides_epochs): (Vec<EpochState>, EpochState) = if rebuild {
        (vec![EpochState::default(); bronze_users.streams.len()], EpochState::default())
    } else {
        (users_known.into_iter().map(|k| k.epochs.unwrap_or_default()).collect(), rides_known.epochs.unwrap_or_default())
    };
    let silver_users = users_table.filter(|_| !rebuild);
    let users_before = silver_users.as_ref().and_then(|t| t.version()).map(|v| v as i64);
    let silver_rides = rides_known.table.filter(|_| !rebuild);
    steps.lap(&mut report, "open tables");

    let clock = Clock::of(&bronze_users, &bronze_rides, &model.rides.links).await?;
    report.clock_us = clock.micros;

    // ---- a rebuild: users, then rides, each in slices within the memory budget ------------------
    if rebuild {
        let mut cx = RunContext { tables: &tables, options: &options, guard: &mut guard, report: &mut report, steps: &mut steps, model_hash, clock };
        let users = rebuild::rebuild_users(&mut cx, run, &bronze_users).await?;
        let plan = rebuild::plan_slices(&bronze_rides, run, users.roles.estimated_size() as u64, false).await?;
        rebuild::rebuild_rides(&mut cx, layout, users, &bronze_users, &bronze_rides, &plan, run.engine.as_deref()).await?;
        return Ok(report);
    }

    // ---- an increment's users: decided at once ---------------------------------------------------
    let mut chosen = Vec::new();
    for (stream, epochs) in bronze_users.streams.iter().zip(&mut users_epochs) {
        let fields = stream.map.data_columns();
        let changes = cdc::prepare(&increment::read(stream, &change_sources(&fields)).await?, &fields, epochs)?;
        chosen.push(choose_users(&mut report, changes, stream).await?);
    }
    let chosen = joined_users(chosen, &bronze_users.map)?;
    steps.lap(&mut report, "users: read and choose changes");
    let existing_users = match &silver_users {
        Some(t) => io::read_all(t).await?,
        None => DataFrame::empty(),
    };
    let applied = apply_users(&mut report, chosen, existing_users, &bronze_users.map)?;
    steps.lap(&mut report, "users: apply");

    // ---- an increment's rides ------------------------------------------------------------------
    let changed = applied.newer.select(["id"]).step("collecting changed users")?;
    let users = UsersDecided { all: applied.all, changed, bad: applied.bad, touched: applied.touched, epochs: users_epochs };
    let retyped = applied.retyped;
    let mut cx = RunContext { tables: &tables, options: &options, guard: &mut guard, report: &mut report, steps: &mut steps, model_hash, clock };
    // An increment larger than the budget is decided in slices too (`crate::update`).
    let (plan, _) = rebuild::plan_slices(&bronze_rides, run, users.all.estimated_size() as u64, true).await?;
    let roles = Roles::of(&users.all)?;
    if plan.len() > 1 {
        let found = update::Found { rides: silver_rides, users_version: users_before, marker: rides_known.marker, epochs: rides_epochs };
        update::update_rides_in_slices(&mut cx, layout, &users, &roles, &retyped, &bronze_users, &bronze_rides, found, &plan, run.engine.as_deref()).await?;
    } else {
        update_rides(&mut cx, &users, &roles, &retyped, &bronze_users, &bronze_rides, rides_known.marker, silver_rides, rides_epochs).await?;
    }
    Ok(report)
}

/// Of `changes`, prepared changes that hold every change of their users (all of an increment's,
/// or a rebuild slice's): each user's latest valid change, and the quarantined changes (with their
/// bronze ids). Adds its counts to `report`.
pub(crate) async fn choose_users(report: &mut SilverReport, changes: DataFrame, bronze_users: &BronzeIncrement) -> Result<(DataFrame, DataFrame)> {
    report.users_read += count(&changes);
    report.rows_read += count(&changes);
    let user_rules = [
        ("id is null", col("id").is_null()),
        ("type is not customer or driver", col("type").is_in(lit(Series::new("t".into(), USER_TYPES)).implode(false), false).not().or(col("type").is_null())),
        ("created_at is null", col("created_at").is_null()),
    ];
    let mut user_rules = user_rules.to_vec();
    let mut user_delete_rules = vec![("id is null", col("id").is_null()), ("created_at is null", col("created_at").is_null())];
    // (a user filed by the day of updated_at needs one; created_at is checked above)
    if bronze_users.map.partition == Some("updated_at") {
        user_rules.push((crate::model::UPDATED_AT_RULE, col("updated_at").is_null()));
        user_delete_rules.push((crate::model::UPDATED_AT_RULE, col("updated_at").is_null()));
    }
    let chosen = rules::choose(&changes, "id", &user_rules, &user_delete_rules, &bronze_users.map)?;
    drop(changes);
    report.count_rules(chosen.dropped, &chosen.warned);
    Ok((chosen.latest, with_bronze_ids(chosen.quarantined, bronze_users).await?))
}

/// The chosen changes of several users streams ([`choose_users`] of each: latest and
/// quarantined) as one: each with every column silver users (`map`, [`StreamMap::joined`])
/// keeps. Pure.
pub(crate) fn joined_users(mut chosen: Vec<(DataFrame, DataFrame)>, map: &StreamMap) -> Result<(DataFrame, DataFrame)> {
    if chosen.len() == 1
        && let Some(one) = chosen.pop()
    {
        return Ok(one);
    }
    let step = "joining the users streams";
    let stack = |frames: Vec<DataFrame>| -> Result<DataFrame> {
        let frames = frames.into_iter().map(|f| map.aligned(f).map(DataFrame::lazy)).collect::<Result<Vec<_>>>()?;
        concat(frames, UnionArgs { diagonal: true, ..Default::default() }).step(step)?.collect().step(step)
    };
    let (latest, bad): (Vec<DataFrame>, Vec<DataFrame>) = chosen.into_iter().unzip();
    Ok((stack(latest)?, stack(bad)?))
}

/// What a run decides for users: the latest changes [`choose_users`] chose, applied over
/// `existing` (silver's users; empty in a rebuild). Adds its counts to `report`.
pub(crate) struct UsersApplied {
    /// The users the changes insert, change or delete (rows of silver users).
    pub(crate) newer: DataFrame,
    /// Every user after the changes: `existing` with `newer` applied.
    pub(crate) all: DataFrame,
    /// The ids of the users whose type changed.
    pub(crate) retyped: DataFrame,
    /// The quarantined changes, with their bronze ids.
    pub(crate) bad: DataFrame,
    /// The day partitions of silver users the changes touch ([`WHOLE_TABLE`] when users are not
    /// partitioned).
    pub(crate) touched: BTreeSet<(i32, i32, i32)>,
}

/// Fails, naming what to do, unless silver `table` (at `url`; `users` or `rides`) is partitioned
/// as the model asks (by the day of `partition`, or not at all): a table keeps the partitioning
/// it was created with.
fn same_partitioning(table: &DeltaTable, url: &Url, name: &str, partition: Option<&str>, model: &crate::model::Model) -> Result<()> {
    let found = table.snapshot().map_err(|e| LakehouseError::delta(url, e))?.metadata().partition_columns().to_vec();
    let wanted: &[&str] = if partition.is_some() { &PARTITIONS } else { &[] };
    if found.iter().map(String::as_str).eq(wanted.iter().copied()) {
        return Ok(());
    }
    let asks = partition.map_or("no partitioning".to_owned(), |c| format!("the day of {c}"));
    Err(LakehouseError::Schema {
        table: url.to_string(),
        message: format!(
            "silver {name} is partitioned by {}, and {} asks for {asks}: a table keeps its partitioning. Give silver {name} a new name (table = \"...\" under [{name}]) or remove this table, then rebuild silver (build_silver(..., rebuild=True))",
            if found.is_empty() { "nothing".to_owned() } else { found.join(", ") },
            model.origin
        ),
    })
}

/// The one "partition" of a table that is not partitioned, among the day partitions a run
/// touches: the whole table is rewritten (no day has month 0).
pub(crate) const WHOLE_TABLE: (i32, i32, i32) = (0, 0, 0);

/// How the parts of silver users or rides a run rewrites (`touched`) replace the table's files:
/// those partitions, or the whole table when it is not partitioned.
pub(crate) fn replace_mode(touched: &BTreeSet<(i32, i32, i32)>) -> WriteMode {
    if touched.contains(&WHOLE_TABLE) { WriteMode::Overwrite } else { WriteMode::ReplacePartitions(touched.clone()) }
}

/// See [`UsersApplied`].
pub(crate) fn apply_users(report: &mut SilverReport, (latest, bad): (DataFrame, DataFrame), existing: DataFrame, map: &StreamMap) -> Result<UsersApplied> {
    let state = if existing.height() > 0 { existing.clone().lazy() } else { empty_state(latest.column("id").step("reading users")?.dtype()) };
    let newer = cdc::newer_than(latest.lazy(), state.select(state_columns()), "id").with_columns([col(DELETED).alias("is_deleted")]);
    let newer = with_partitions(newer, map.partition)
        .select(user_output_columns(map))
        .collect()
        .step("applying user changes")?;
    report.users_upserted += count(&newer);
    report.users_deleted += count(&newer.clone().lazy().filter(col("is_deleted")).collect().step("counting deletes")?);
    let (all, retyped) = if existing.height() > 0 {
        let all = concat(
            [cdc::with_keys(existing.clone().lazy(), newer.clone().lazy(), "id", false).select(user_output_columns(map)), newer.clone().lazy()],
            UnionArgs::default(),
        )
        .step("merging users")?
        .collect()
        .step("merging users")?;
        // Users whose type changed: their published rides are checked again.
        let retyped = newer
            .clone()
            .lazy()
            .select([col("id"), col("type")])
            .join(existing.clone().lazy().select([col("id"), col("type").alias("type_before")]), [col("id")], [col("id")], JoinArgs::new(JoinType::Inner))
            .filter(col("type").neq_missing(col("type_before")))
            .select([col("id")])
            .collect()
            .step("finding retyped users")?;
        (all, retyped)
    } else {
        (newer.clone(), DataFrame::empty())
    };
    report.users_retyped += count(&retyped);
    let partitioned = map.partition.is_some();
    let mut touched = parts_of(&newer, partitioned)?;
    if partitioned && existing.height() > 0 {
        touched.extend(parts_of(&cdc::with_keys(existing.lazy(), newer.clone().lazy(), "id", true).collect().step("finding partitions")?, true)?);
    }
    Ok(UsersApplied { newer, all, retyped, bad, touched })
}

/// What silver holds back as the last run left it, for a run with nothing new (its report, and
/// the gauges and alerts fed from it, would otherwise fall to zero between syncs): the rides
/// pending, the change time of the oldest, and those expired (listed in the quarantine).
async fn held(report: &mut SilverReport, tables: &Tables, options: &HashMap<String, String>, links: &Links) -> Result<()> {
    let step = "counting the rides held back";
    if let Some(pending) = io::open(&tables.pending, options).await? {
        let rows = io::read_columns(&pending, &io::files(&pending)?, Some(&["id", order::UPDATED])).await?;
        report.pending = count(&rows);
        if rows.height() > 0 {
            report.oldest_pending_us = rows.column(order::UPDATED).step(step)?.as_materialized_series().cast(&DataType::Int64).step(step)?.i64().step(step)?.min();
        }
    }
    if links.waits_for_any() {
        if let Some(quarantine) = io::open(&tables.quarantine, options).await? {
            let holding = io::files_with_nulls(&quarantine, RAW_ID)?;
            if !holding.is_empty() {
                let ids = io::read_columns(&quarantine, &holding, Some(&[RAW_ID])).await?;
                report.rides_expired = ids.column(RAW_ID).step(step)?.null_count() as u64;
            }
        }
    }
    Ok(())
}

/// The silver tables' locations.
pub(crate) struct Tables {
    pub(crate) users: Url,
    /// Whether silver users are partitioned (by the day of the model's users `partition`).
    pub(crate) users_partitioned: bool,
    /// Whether silver rides are partitioned (by the day of the model's rides `partition`).
    pub(crate) rides_partitioned: bool,
    /// The names the model gives them (what the locations end with).
    pub(crate) names: crate::model::SilverNames,
    pub(crate) rides: Url,
    pub(crate) pending: Url,
    pub(crate) deleted: Url,
    pub(crate) quarantine: Url,
}

impl Tables {
    /// The folder of silver users under `<lake>/silver/`.
    pub(crate) const USERS: &'static str = "users";

    pub(crate) fn of(layout: &LakeLayout) -> Result<Tables> {
        Ok(Tables {
            users: layout.silver(Self::USERS)?,
            users_partitioned: layout.model.users.partition.is_some(),
            rides_partitioned: layout.model.rides.partition.is_some(),
            names: layout.model.names.clone(),
            rides: layout.silver("rides")?,
            pending: layout.silver("rides_pending")?,
            deleted: layout.silver("rides_deleted")?,
            quarantine: layout.silver("quarantine")?,
        })
    }

    /// Where a write of `table` goes.
    pub(crate) fn target<'a>(&'a self, table: &'static SilverTable, options: &'a HashMap<String, String>) -> Target<'a> {
        let url = match table.name {
            "silver_users" => &self.users,
            "silver_rides" => &self.rides,
            "silver_rides_pending" => &self.pending,
            "silver_rides_deleted" => &self.deleted,
            _ => &self.quarantine,
        };
        let unpartitioned = (table.name == USERS_TABLE.name && !self.users_partitioned) || (table.name == RIDES_TABLE.name && !self.rides_partitioned);
        let partition_by = if unpartitioned { &[] } else { table.partition_by };
        Target { url, options, partition_by, name: table.name, description: table.description }
    }
}

/// What every step of a run's writes needs.
pub(crate) struct RunContext<'a, 'l> {
    pub(crate) tables: &'a Tables,
    pub(crate) options: &'a HashMap<String, String>,
    pub(crate) guard: &'a mut WriteGuard<'l>,
    pub(crate) report: &'a mut SilverReport,
    steps: &'a mut Steps,
    pub(crate) model_hash: i64,
    /// Bronze's clock, when a link waits for a while.
    pub(crate) clock: Clock,
}

impl<'a> RunContext<'a, '_> {
    pub(crate) fn target(&self, table: &'static SilverTable) -> Target<'a> {
        self.tables.target(table, self.options)
    }

    pub(crate) fn lap(&mut self, step: &str) {
        self.steps.lap(self.report, step);
    }
}

/// A silver table's name, description and partitioning.
pub(crate) struct SilverTable {
    name: &'static str,
    description: &'static str,
    partition_by: &'static [&'static str],
}

pub(crate) const USERS_TABLE: SilverTable = SilverTable {
    name: "silver_users",
    description: "Silver: one row per user (customers and drivers), CDC applied; deleted users kept with is_deleted",
    partition_by: &PARTITIONS,
};
pub(crate) const RIDES_TABLE: SilverTable = SilverTable {
    name: "silver_rides",
    description: "Silver: one row per ride with its registered customer and driver, CDC applied, partitioned by the day of requested_at (or of the column the model files rides by)",
    partition_by: &PARTITIONS,
};
pub(crate) const PENDING_TABLE: SilverTable = SilverTable {
    name: "silver_rides_pending",
    description: "Silver: rides whose latest change waits for its customer or driver to be registered (reason, change time)",
    partition_by: &[],
};
pub(crate) const DELETED_TABLE: SilverTable =
    SilverTable { name: "silver_rides_deleted", description: "Silver: tombstones of deleted rides (id, delete time, change order)", partition_by: &[] };
pub(crate) const QUARANTINE_TABLE: SilverTable = SilverTable {
    name: "silver_quarantine",
    description: "Silver: CDC changes that broke a rule (rule, key, bronze _airbyte_raw_id); they did not modify silver",
    partition_by: &[],
};

/// The users a run decided: all of them after the run, the changes that broke a rule, the
/// partitions to rewrite and the epoch state at the bronze version reached.
pub(crate) struct UsersDecided {
    pub(crate) all: DataFrame,
    /// The ids of the users this run inserted, changed or deleted.
    pub(crate) changed: DataFrame,
    pub(crate) bad: DataFrame,
    pub(crate) touched: BTreeSet<(i32, i32, i32)>,
    /// Per users stream, in the streams' order.
    pub(crate) epochs: Vec<EpochState>,
}

/// Commits an incremental run's users: the partitions they touch (their own commit point,
/// written whenever the run writes, so that the markers advance and rides can name the users
/// version they were checked against); returns the version.
pub(crate) async fn write_users(cx: &mut RunContext<'_, '_>, users: &UsersDecided, bronze_users: &BronzeUsers) -> Result<i64> {
    let rows = users_to_write(users)?;
    cx.guard.next().await?;
    let target = cx.target(&USERS_TABLE);
    let markers = users_markers(bronze_users, &users.epochs, cx.model_hash);
    let mode = replace_mode(&users.touched);
    let written = io::write(target.url, target.options, &rows, mode, target.partition_by, &markers, target.name, target.description).await?;
    Ok(users_written(cx, written, &users.touched))
}

/// The rows of the users partitions an incremental run rewrites.
pub(crate) fn users_to_write(users: &UsersDecided) -> Result<DataFrame> {
    if users.touched.contains(&WHOLE_TABLE) {
        return Ok(users.all.clone());
    }
    users.all.clone().lazy().filter(in_partitions(&users.touched)).collect().step("selecting user partitions")
}

/// Records a users commit in the run's report; returns its version.
pub(crate) fn users_written(cx: &mut RunContext<'_, '_>, written: io::Written, touched: &BTreeSet<(i32, i32, i32)>) -> i64 {
    let version = written.version;
    cx.report.written.push(written);
    cx.report.partitions_rewritten += touched.len() as u64;
    cx.lap("write users");
    version
}

/// The roles of users a ride's customer and driver are checked against: the ids of the
/// registered customers and drivers (deleted users included: their rides stay). `None` when
/// there are no users (their ids' type is then unknown: no ride's link holds).
pub(crate) struct Roles {
    customers: Option<Series>,
    drivers: Option<Series>,
}

impl Roles {
    pub(crate) fn of(users: &DataFrame) -> Result<Roles> {
        let ids_of = |kind: &str| -> Result<Option<Series>> {
            if users.height() == 0 {
                return Ok(None);
            }
            let ids = users.clone().lazy().filter(col("type").eq(lit(kind))).select([col("id")]).collect().step("checking ride integrity")?;
            Ok(ids.column("id").ok().map(|c| c.as_materialized_series().clone()))
        };
        Ok(Roles { customers: ids_of("customer")?, drivers: ids_of("driver")? })
    }
}

/// Whether `column` is one of `ids` (false for all when there are none).
fn one_of(column: &str, ids: &Option<Series>) -> Expr {
    match ids {
        Some(ids) => col(column).is_in(lit(ids.clone()).implode(false), false),
        None => lit(false),
    }
}

/// What silver knows of the rides a run looks at: their published rows (with every other row of
/// their partitions), the rides waiting and the tombstones before the run, and the published
/// rides of users whose type changed. Empty in a rebuild.
#[derive(Default)]
pub(crate) struct RideState {
    published: DataFrame,
    pending_before: DataFrame,
    deleted_before: DataFrame,
    retyped_rides: DataFrame,
}

impl RideState {
    /// The state of rides `published` (every column), rides pending and tombstones before the
    /// run, and the ids of the published rides of retyped users.
    pub(crate) fn new(published: DataFrame, pending_before: DataFrame, deleted_before: DataFrame, retyped_rides: DataFrame) -> RideState {
        RideState { published, pending_before, deleted_before, retyped_rides }
    }

    /// The published rows.
    pub(crate) fn published(&self) -> &DataFrame {
        &self.published
    }
}

/// Where a run's ride changes land.
pub(crate) struct RidesDecided {
    /// Rides to publish (with their partition columns).
    pub(crate) ready: DataFrame,
    /// Rides waiting for their users after the run (pending rows).
    pub(crate) waiting: DataFrame,
    /// The changes that delete a ride.
    pub(crate) deletes: DataFrame,
    /// The tombstones after the run.
    pub(crate) tombstones: DataFrame,
    /// Ids of published rides removed or replaced.
    pub(crate) leaving: DataFrame,
    /// Rides that left pending for `rides`.
    pub(crate) released: u64,
    /// Published rides sent back to pending (their user's type changed).
    pub(crate) withdrawn: u64,
}

/// The rules a ride change of `map` must keep, and those of a delete: a ride filed by the day
/// of `created_at` or `updated_at` needs it (a delete files nothing: it leaves rides).
pub(crate) fn ride_rules(map: &StreamMap) -> (Vec<(&'static str, Expr)>, Vec<(&'static str, Expr)>) {
    let statuses = lit(Series::new("s".into(), RIDE_STATUSES)).implode(false);
    let mut rules = vec![
        ("id is null", col("id").is_null()),
        ("customer_id is null", col("customer_id").is_null()),
        ("requested_at is null", col("requested_at").is_null()),
        ("status is not a ride status", col("status").is_null().or(col("status").is_in(statuses, false).not())),
    ];
    match map.partition {
        Some("created_at") => rules.push((crate::model::RIDE_CREATED_AT_RULE, col("created_at").is_null())),
        Some("updated_at") => rules.push((crate::model::UPDATED_AT_RULE, col("updated_at").is_null())),
        _ => {}
    }
    (rules, vec![("id is null", col("id").is_null())])
}

/// The ride's links checked against the users' `roles` at bronze's `clock` (µs; see
/// [`Clock`]): `reason`, why the ride waits (the first link that does not hold and whose policy
/// is to wait, or to wait for a while; null: it is ready); when some link waits for a while,
/// `expired`, whether the ride has waited longer than such a link allows (its latest change
/// extracted more than the limit before the clock; `reason` then names that link and its limit,
/// which comes before every other reason); and when some link is accepted, `unlinked`, the
/// accepted links that do not hold (null: all hold). The checks are membership tests on the key
/// columns: no join copies the wide rows, and the rows keep their order.
fn link_checks(roles: &Roles, links: &Links, clock: Clock) -> Vec<Expr> {
    let broken = [
        (col("customer_id").is_null().or(one_of("customer_id", &roles.customers).not()), links.customer_id, CUSTOMER_MISSING),
        (col("driver_id").is_not_null().and(one_of("driver_id", &roles.drivers).not()), links.driver_id, DRIVER_MISSING),
    ];
    let none = || lit(NULL).cast(DataType::String);
    let waits = |policy: &LinkPolicy| matches!(policy, LinkPolicy::Wait | LinkPolicy::WaitFor(_));
    let mut reason = none();
    for (missing, _, why) in broken.iter().rev().filter(|(_, policy, _)| waits(policy)) {
        reason = when(missing.clone()).then(lit(*why)).otherwise(reason);
    }
    let mut checks = Vec::new();
    if links.waits_for_any() {
        // Expired on a link: it does not hold and the latest change was extracted more than the
        // limit before the clock (no clock: bronze holds nothing, nothing expires).
        let mut expired = Vec::new();
        for (missing, policy, why) in &broken {
            if let (LinkPolicy::WaitFor(limit), Some(now)) = (policy, clock.micros) {
                let late = col(EXTRACTED).cast(DataType::Int64).lt(lit(now - limit.micros()));
                expired.push((missing.clone().and(late).fill_null(lit(false)), format!("{why} within {limit}")));
            }
        }
        let mut any = lit(false);
        for (expired, why) in expired.iter().rev() {
            reason = when(expired.clone()).then(lit(why.clone())).otherwise(reason);
            any = any.or(expired.clone());
        }
        checks.push(any.alias(EXPIRED));
    }
    checks.insert(0, reason.alias("reason"));
    if links.accepts_any() {
        // "customer not registered; driver not registered": the accepted links that fail, in order.
        let parts: Vec<Expr> = broken
            .iter()
            .filter(|(_, policy, _)| *policy == LinkPolicy::Accept)
            .map(|(missing, _, why)| when(missing.clone()).then(lit(*why)).otherwise(none()))
            .collect();
        let joined = concat_str(parts, "; ", true);
        // (skipping nulls, every part null may give "")
        checks.push(when(joined.clone().eq(lit(""))).then(none()).otherwise(joined).alias(UNLINKED));
    }
    checks
}

/// Bronze's clock: the newest `_airbyte_extracted_at` (µs, to the millisecond) among the rows of
/// the users and rides bronze tables a run reads (their active files as of the pinned
/// versions), from the files' statistics. Links that wait for a while count from it, so a run
/// decides what a rebuild of the same bronze decides, whenever it runs. `None`: bronze holds no
/// row, or the model waits for no limited time (the clock is not read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Clock {
    /// Microseconds since the epoch, UTC.
    pub micros: Option<i64>,
}

impl Clock {
    /// The clock of a run reading `users` and `rides` (read only when `links` wait for a while).
    pub(crate) async fn of(users: &BronzeUsers, rides: &BronzeIncrement, links: &Links) -> Result<Clock> {
        if !links.waits_for_any() {
            return Ok(Clock::default());
        }
        let mut newest = increment::newest_extracted(rides).await?;
        for stream in &users.streams {
            newest = newest.max(increment::newest_extracted(stream).await?);
        }
        Ok(Clock { micros: newest })
    }
}

/// Why a ride waits, or is unlinked: its customer is not a registered customer.
pub(crate) const CUSTOMER_MISSING: &str = "customer not registered";
/// Why a ride waits, or is unlinked: its driver is set and not a registered driver.
pub(crate) const DRIVER_MISSING: &str = "driver not registered";
/// The column of published rides, when some link is accepted, naming the accepted links that do
/// not hold (null when all hold).
pub const UNLINKED: &str = "unlinked";
/// The column of pending rides, when some link waits for a while, saying whether the ride has
/// waited longer than it allows (it is then also in the quarantine, with the reason).
pub const EXPIRED: &str = "expired";
/// The quarantine's rule of a ride that waited longer than its link allows is the pending
/// ride's reason (`customer not registered within 2h`); its `_airbyte_raw_id` is null (the
/// ride's `bronze_version` and `_cdc_bronze_row` name its latest change), which is how its rows
/// are told from the changes that broke a rule.
pub(crate) fn expired_rows(waiting: &DataFrame, rides: &StreamMap) -> Result<DataFrame> {
    let step = "listing expired rides";
    if waiting.height() == 0 || waiting.column(EXPIRED).is_err() {
        return quarantine_rows(&DataFrame::empty_with_schema(&expired_schema(&rides.key_type("id"))), "rides", rides);
    }
    let rows = waiting
        .clone()
        .lazy()
        .filter(col(EXPIRED))
        .with_columns([col("reason").alias(RULE), lit(NULL).cast(DataType::String).alias(RAW_ID), lit(false).alias(DELETED)])
        .collect()
        .step(step)?;
    quarantine_rows(&rows, "rides", rides)
}

/// Commits an incremental run's quarantine: the `fresh` files appended and, when the model
/// waits for a while, the rides listed as expired replaced by `expired` (those expired after
/// this run), in one commit; none when neither changes anything. The rows of expired rides are
/// found by their null `_airbyte_raw_id` in the files whose statistics count such nulls (after
/// a compaction, such a file's other rows are kept).
pub(crate) async fn commit_quarantine(cx: &mut RunContext<'_, '_>, mut parts: Vec<io::StagedFiles>, expired: Option<&DataFrame>) -> Result<()> {
    let step = "replacing expired rides in the quarantine";
    let mut mode = WriteMode::Append;
    if let Some(expired) = expired {
        let (holding, rows) = match io::open(&cx.tables.quarantine, cx.options).await? {
            Some(table) => {
                let holding = io::files_with_nulls(&table, RAW_ID)?;
                let rows = if holding.is_empty() { DataFrame::empty() } else { io::read_files(&table, &holding).await? };
                (holding, rows)
            }
            None => (Vec::new(), DataFrame::empty()),
        };
        let listed = if rows.height() > 0 { rows.clone().lazy().filter(col(RAW_ID).is_null()).collect().step(step)? } else { DataFrame::empty() };
        if !same_expired(&listed, expired)? {
            // The other rows of those files (a compaction mixed them) and the expired rides, in
            // files of their own: the next replacement reads only these.
            let kept = if rows.height() > 0 {
                let columns: Vec<Expr> = expired.get_column_names().into_iter().map(|c| col(c.clone())).collect();
                rows.lazy().filter(col(RAW_ID).is_not_null()).select(columns).collect().step(step)?
            } else {
                DataFrame::empty()
            };
            if kept.height() + expired.height() > 0 {
                parts.push(rebuild::stage_apart(cx.tables, cx.options, &QUARANTINE_TABLE, &[&kept, expired], false).await?);
            }
            let paths = holding.into_iter().map(|f| f.path).collect();
            mode = WriteMode::ReplaceFiles { paths, predicate: format!("{RAW_ID} IS NULL") };
        }
    }
    let replaces = matches!(&mode, WriteMode::ReplaceFiles { paths, .. } if !paths.is_empty());
    if parts.iter().any(|part| part.rows > 0) || replaces {
        cx.guard.next().await?;
        let written = io::commit_staged(&cx.target(&QUARANTINE_TABLE), parts, &mode, &[]).await?;
        cx.report.written.push(written);
    }
    Ok(())
}

/// Whether two lists of expired rides hold the same rides, reasons and changes.
fn same_expired(a: &DataFrame, b: &DataFrame) -> Result<bool> {
    if a.height() != b.height() {
        return Ok(false);
    }
    if a.height() == 0 {
        return Ok(true);
    }
    let step = "comparing expired rides";
    let key = |frame: &DataFrame| -> Result<DataFrame> {
        let mut columns = vec![col("id").cast(DataType::String), col(RULE).cast(DataType::String)];
        columns.extend(ORDER.iter().map(|c| col(*c).cast(DataType::Int64)));
        frame.clone().lazy().select(columns).sort(["id"], Default::default()).collect().step(step)
    };
    Ok(key(a)?.equals_missing(&key(b)?))
}

/// The columns [`quarantine_rows`] takes, for an empty list of expired rides.
fn expired_schema(key: &DataType) -> Schema {
    let mut schema = Schema::default();
    schema.insert("id".into(), key.clone());
    schema.insert(RULE.into(), DataType::String);
    schema.insert(RAW_ID.into(), DataType::String);
    for c in ORDER {
        schema.insert(c.into(), DataType::Int64);
    }
    schema.insert(DELETED.into(), DataType::Boolean);
    schema
}

/// Decides the latest valid changes of rides (`latest`, one per ride, every field) against
/// what silver knows of them (`state`), the users' `roles` and how the model (`map`: its links,
/// and the columns a ride has) enforces the links at bronze's `clock`: which are newer, which delete, which are ready and which wait
/// (and which of those waited too long), and which published rides leave. Pure.
pub(crate) fn decide_rides(latest: DataFrame, state: &RideState, roles: &Roles, map: &StreamMap, clock: Clock) -> Result<RidesDecided> {
    let links = &map.links;
    let RideState { published, pending_before, deleted_before, retyped_rides } = state;
    let mut known: Vec<LazyFrame> = Vec::new();
    for frame in [published, pending_before, deleted_before] {
        if frame.height() > 0 {
            known.push(frame.clone().lazy().select(state_columns()));
        }
    }
    let known = if known.is_empty() { empty_state(latest.column("id").step("collecting ride state")?.dtype()) } else { concat(known, UnionArgs::default()).step("collecting ride state")? };
    let newer_rides = cdc::newer_than(latest.lazy(), known, "id").collect().step("applying ride changes")?;
    let deletes = newer_rides.clone().lazy().filter(col(DELETED)).collect().step("applying ride deletes")?;
    let candidates = newer_rides.clone().lazy().filter(col(DELETED).not()).collect().step("applying ride changes")?;

    // Checked again with the new candidates: pending rides without a newer change, and the
    // published rides of retyped users without one.
    let mut to_check = vec![candidates.clone().lazy().select(ride_change_columns(map))];
    if pending_before.height() > 0 {
        to_check.push(cdc::with_keys(pending_before.clone().lazy(), newer_rides.clone().lazy(), "id", false).select(ride_change_columns(map)));
    }
    let rechecked = if retyped_rides.height() > 0 && published.height() > 0 {
        cdc::with_keys(cdc::with_keys(published.clone().lazy(), retyped_rides.clone().lazy(), "id", true), newer_rides.clone().lazy(), "id", false)
            .select(ride_change_columns(map))
            .collect()
            .step("collecting rides to check")?
    } else {
        DataFrame::empty()
    };
    if rechecked.height() > 0 {
        to_check.push(rechecked.clone().lazy());
    }
    let to_check = concat(to_check, UnionArgs::default()).step("collecting rides to check")?;
    let checked = to_check.with_columns(link_checks(roles, links, clock)).collect().step("checking ride integrity")?;
    let ready = with_partitions(checked.clone().lazy().filter(col("reason").is_null()), map.partition).select(ride_output_columns(map)).collect().step("checking ride integrity")?;
    let waiting = checked.lazy().filter(col("reason").is_not_null()).select(pending_columns(map)).collect().step("checking ride integrity")?;
    let released = if pending_before.height() > 0 {
        count(&cdc::with_keys(ready.clone().lazy(), pending_before.clone().lazy(), "id", true).collect().step("counting releases")?)
    } else {
        0
    };
    let withdrawn = if rechecked.height() > 0 {
        count(&cdc::with_keys(waiting.clone().lazy(), rechecked.clone().lazy(), "id", true).collect().step("counting withdrawn rides")?)
    } else {
        0
    };
    // Published rides to remove or replace: deleted, now waiting, or replaced by a ready version.
    let leaving = concat(
        [deletes.clone().lazy().select([col("id")]), waiting.clone().lazy().select([col("id")]), ready.clone().lazy().select([col("id")])],
        UnionArgs::default(),
    )
    .step("collecting changed rides")?
    .collect()
    .step("collecting changed rides")?;
    // Tombstones: the rides whose latest change is a delete (a ride inserted again leaves).
    let tombstones = {
        let mut frames = vec![deletes.clone().lazy().select(tombstone_columns())];
        if deleted_before.height() > 0 {
            frames.push(deleted_before.clone().lazy().select(tombstone_columns()));
        }
        let all = order::latest(concat(frames, UnionArgs::default()).step("collecting tombstones")?, "id");
        cdc::with_keys(all, candidates.lazy(), "id", false).sort(["id"], Default::default()).collect().step("collecting tombstones")?
    };
    Ok(RidesDecided { ready, waiting, deletes, tombstones, leaving, released, withdrawn })
}

/// Adds a decision's counts to the report.
fn count_decided(report: &mut SilverReport, decided: &RidesDecided) {
    rebuild::SliceCounts::of(decided).add_to(report);
    report.released += decided.released;
    report.rides_withdrawn += decided.withdrawn;
}

/// The bronze columns silver reads for every change: `fields`, the CDC columns and the ingest
/// order.
pub(crate) fn change_sources<'a>(fields: &[&'a str]) -> Vec<&'a str> {
    fields.iter().copied().chain(cdc::BRONZE_CDC_COLUMNS.iter().copied()).chain([INGEST_VERSION, INGEST_ROW]).collect()
}

/// The ride fields every change is read with: the key, the fields silver's rules and the
/// model's (`map`) read.
pub(crate) fn ride_rule_fields(map: &StreamMap) -> Vec<&str> {
    let mut fields = map.with_rule_columns(&RIDE_RULE_FIELDS);
    // (the column rides are filed by, when another: [`ride_rules`] needs it)
    if let Some(column) = map.partition.filter(|c| !fields.contains(c)) {
        fields.push(column);
    }
    fields
}

/// The bronze columns silver reads for every ride change: [`ride_rule_fields`] and the CDC and
/// order columns (the other fields are read for the latest changes only).
pub(crate) fn ride_change_sources(map: &StreamMap) -> Vec<&str> {
    let fields = ride_rule_fields(map);
    fields.iter().chain(cdc::BRONZE_CDC_COLUMNS.iter()).copied().chain([INGEST_VERSION, INGEST_ROW]).collect()
}

/// The ride fields not read with every change (kept source columns included).
pub(crate) fn other_ride_fields(map: &StreamMap) -> Vec<&str> {
    let read = ride_rule_fields(map);
    map.data_columns().into_iter().filter(|c| !read.contains(c)).collect()
}

/// An incremental run's rides: the changes since the markers, decided against the published
/// state of the rides they touch, written into the partitions they touch.
#[allow(clippy::too_many_arguments)]
async fn update_rides(
    cx: &mut RunContext<'_, '_>,
    users: &UsersDecided,
    roles: &Roles,
    retyped: &DataFrame,
    bronze_users: &BronzeUsers,
    bronze_rides: &BronzeIncrement,
    marker: Option<i64>,
    silver_rides: Option<DeltaTable>,
    mut rides_epochs: EpochState,
) -> Result<()> {
    let options = cx.options;
    // Every change's key, rule and order columns; the other fields only for the latest changes.
    let ride_rows = increment::read(bronze_rides, &ride_change_sources(&bronze_rides.map)).await?;
    cx.lap("rides: read bronze");
    let ride_changes = cdc::prepare(&ride_rows, &ride_rule_fields(&bronze_rides.map), &mut rides_epochs)?;
    drop(ride_rows);
    cx.report.rides_read = count(&ride_changes);
    cx.report.rows_read += cx.report.rides_read;
    cx.lap("rides: prepare changes");
    let (rules, delete_rules) = ride_rules(&bronze_rides.map);
    let chosen = rules::choose(&ride_changes, "id", &rules, &delete_rules, &bronze_rides.map)?;
    cx.report.count_rules(chosen.dropped, &chosen.warned);
    let (latest_rides, bad_rides) = (chosen.latest, chosen.quarantined);
    drop(ride_changes);
    let bad_rides = with_bronze_ids(bad_rides, bronze_rides).await?;
    cx.lap("rides: choose changes");
    let latest_rides = with_fields(latest_rides, bronze_rides, &other_ride_fields(&bronze_rides.map)).await?;
    cx.lap("rides: read the latest changes' fields");
    let pending_before = match as_of_marker(&cx.tables.pending, options, RIDES_MARKER, marker).await? {
        Some(t) => io::read_all(&t).await?,
        None => DataFrame::empty(),
    };
    let deleted_before = match as_of_marker(&cx.tables.deleted, options, RIDES_MARKER, marker).await? {
        Some(t) => io::read_all(&t).await?,
        None => DataFrame::empty(),
    };
    let ride_files = match &silver_rides {
        Some(t) => io::files(t)?,
        None => Vec::new(),
    };
    // Published rides to look at: those with a new change, those of retyped users and the
    // unlinked ones of arriving users.
    let retyped_rides = rides_to_check_again(silver_rides.as_ref(), &ride_files, users, retyped, &bronze_rides.map.links).await?;
    let looked_at = if retyped_rides.height() > 0 {
        concat([latest_rides.clone().lazy().select([col("id")]), retyped_rides.clone().lazy()], UnionArgs::default())
            .step("collecting changed rides")?
            .collect()
            .step("collecting changed rides")?
    } else {
        latest_rides.select(["id"]).step("reading changed keys")?
    };
    // Every row of the partitions holding a published version of a looked-at key: their state
    // decides which changes are newer, and they are what a rewrite of those partitions keeps.
    let (published, published_days) = match &silver_rides {
        Some(t) => {
            let holding = files_holding(t, &ride_files, &looked_at).await?;
            let days = parts_of_files(&holding);
            (io::read_files(t, &files_in(&ride_files, &days)).await?, days)
        }
        None => (DataFrame::empty(), BTreeSet::new()),
    };
    cx.lap("rides: read published state");
    let state = RideState { published, pending_before, deleted_before, retyped_rides };
    let decided = decide_rides(latest_rides, &state, roles, &bronze_rides.map, cx.clock)?;
    count_decided(cx.report, &decided);
    let RideState { published, .. } = state;
    let partitioned = bronze_rides.map.partition.is_some();
    let mut touched_rides = parts_of(&decided.ready, partitioned)?;
    if published.height() > 0 {
        touched_rides.extend(parts_of(&cdc::with_keys(published.clone().lazy(), decided.leaving.clone().lazy(), "id", true).collect().step("finding partitions")?, partitioned)?);
    }
    cx.lap("rides: apply and check integrity");

    // ---- write, commit point last ------------------------------------------------------------------
    // 1. quarantine: what is not there yet (keyed by bronze row), and the rides that waited too
    // long.
    let mut bad = Vec::new();
    if users.bad.height() > 0 {
        bad.push(quarantine_rows(&users.bad, "users", &bronze_rides.map)?.lazy());
    }
    if bad_rides.height() > 0 {
        bad.push(quarantine_rows(&bad_rides, "rides", &bronze_rides.map)?.lazy());
    }
    let mut fresh_files = Vec::new();
    if !bad.is_empty() {
        let fresh = concat(bad, UnionArgs::default()).step("collecting quarantine")?.collect().step("collecting quarantine")?;
        let seen = match io::open(&cx.tables.quarantine, options).await? {
            Some(existing) => Some(io::read_columns(&existing, &io::files(&existing)?, Some(&[RAW_ID])).await?),
            None => None,
        };
        let fresh = not_quarantined(fresh, seen.as_ref())?;
        cx.report.quarantined = count(&fresh);
        let of_table = |table: &str| fresh.clone().lazy().filter(col("table").eq(lit(table))).collect().step("counting quarantine");
        cx.report.users_quarantined = count(&of_table("users")?);
        cx.report.rides_quarantined = count(&of_table("rides")?);
        if fresh.height() > 0 {
            fresh_files.push(rebuild::stage(cx.tables, options, &QUARANTINE_TABLE, &fresh, false).await?);
        }
    }
    let expired = if bronze_rides.map.links.waits_for_any() { Some(expired_rows(&decided.waiting, &bronze_rides.map)?) } else { None };
    commit_quarantine(cx, fresh_files, expired.as_ref()).await?;
    cx.lap("write quarantine");
    // 2. users.
    let users_version = write_users(cx, users, bronze_users).await?;
    // 3. companions of rides, marked with the bronze rides version they reflect.
    let rides_markers = [(RIDES_MARKER.to_owned(), bronze_rides.upto)];
    for (rows, table) in [(&decided.waiting, &PENDING_TABLE), (&decided.tombstones, &DELETED_TABLE)] {
        cx.guard.next().await?;
        let target = cx.target(table);
        cx.report.written.push(io::write(target.url, options, rows, WriteMode::Overwrite, &[], &rides_markers, target.name, target.description).await?);
    }
    cx.lap("write pending and tombstones");
    // 4. rides: the run's commit point.
    // Rewritten partitions keep their rows that did not change; partitions that only gain rides
    // were not read yet.
    let mut current = Vec::new();
    if published.height() > 0 {
        current.push(published.lazy().filter(in_partitions(&touched_rides)).select(ride_output_columns(&bronze_rides.map)));
    }
    let unread: BTreeSet<(i32, i32, i32)> = touched_rides.difference(&published_days).copied().collect();
    if let (Some(table), false) = (&silver_rides, unread.is_empty()) {
        current.push(io::read_files(table, &files_in(&ride_files, &unread)).await?.lazy().select(ride_output_columns(&bronze_rides.map)));
    }
    let kept = if current.is_empty() {
        decided.ready.clone().lazy().slice(0, 0)
    } else {
        cdc::with_keys(concat(current, UnionArgs::default()).step("assembling ride partitions")?, decided.leaving.lazy(), "id", false)
    };
    let rows = concat([kept, decided.ready.lazy()], UnionArgs::default()).step("assembling ride partitions")?.collect().step("assembling ride partitions")?;
    let mut markers = input_markers(RIDES_MARKER, bronze_rides, &rides_epochs, cx.model_hash);
    markers.push((RIDES_USERS_MARKER.to_owned(), users_version));
    cx.guard.next().await?;
    let target = cx.target(&RIDES_TABLE);
    cx.report.written.push(io::write(target.url, options, &rows, replace_mode(&touched_rides), target.partition_by, &markers, target.name, target.description).await?);
    cx.report.partitions_rewritten += touched_rides.len() as u64;
    cx.lap("write rides");
    Ok(())
}

/// Whether a row is in one of the parts `partitions` ([`WHOLE_TABLE`]: every row is).
fn in_partitions(partitions: &BTreeSet<(i32, i32, i32)>) -> Expr {
    if partitions.contains(&WHOLE_TABLE) {
        return lit(true);
    }
    let mut expr = lit(false);
    for (y, m, d) in partitions {
        expr = expr.or(col("year").eq(lit(*y)).and(col("month").eq(lit(*m))).and(col("day").eq(lit(*d))));
    }
    expr
}

fn state_columns() -> Vec<Expr> {
    let mut exprs = vec![col("id")];
    exprs.extend(ORDER.iter().map(|c| col(*c)));
    exprs
}

/// A state that knows no key (of type `key`).
fn empty_state(key: &DataType) -> LazyFrame {
    let mut columns = vec![Column::new_empty("id".into(), key)];
    columns.extend(ORDER.iter().map(|c| Column::new_empty((*c).into(), &DataType::Int64)));
    DataFrame::new(0, columns).unwrap_or_default().lazy()
}

/// The columns of silver users: silver's own user columns, the delete flag and time, the order
/// and partition columns, then the source columns kept (last, so that a column the source adds
/// moves none of silver's).
fn user_output_columns(map: &StreamMap) -> Vec<Expr> {
    let mut exprs: Vec<Expr> = USER_COLUMNS.iter().map(|c| col(*c)).collect();
    exprs.extend([col("is_deleted"), col("deleted_at")]);
    exprs.extend(ORDER.iter().map(|c| col(*c)));
    exprs.push(col(EXTRACTED));
    if map.partition.is_some() {
        exprs.extend(PARTITIONS.iter().map(|c| col(*c)));
    }
    exprs.extend(kept_columns(map));
    exprs
}

/// The source columns `map` keeps, as silver's last columns.
fn kept_columns(map: &StreamMap) -> impl Iterator<Item = Expr> + '_ {
    map.kept.iter().map(|k| col(k.name.as_str()))
}

/// The columns of a ride's change: silver's own ride columns, the order columns, the source
/// columns kept.
fn ride_change_columns(map: &StreamMap) -> Vec<Expr> {
    let mut exprs: Vec<Expr> = RIDE_COLUMNS.iter().map(|c| col(*c)).collect();
    exprs.extend(ORDER.iter().map(|c| col(*c)));
    exprs.push(col(EXTRACTED));
    exprs.extend(kept_columns(map));
    exprs
}

/// The columns of published rides: silver's own ride columns, `unlinked` when some link of
/// `map` is `accept`ed (within the first 32 columns, whose statistics Delta keeps: a run finds
/// the unlinked rides by them), the order and partition columns, then the source columns kept.
pub(crate) fn ride_output_columns(map: &StreamMap) -> Vec<Expr> {
    let mut exprs: Vec<Expr> = RIDE_COLUMNS.iter().map(|c| col(*c)).collect();
    if map.links.accepts_any() {
        exprs.push(col(UNLINKED));
    }
    exprs.extend(ORDER.iter().map(|c| col(*c)));
    exprs.push(col(EXTRACTED));
    if map.partition.is_some() {
        exprs.extend(PARTITIONS.iter().map(|c| col(*c)));
    }
    exprs.extend(kept_columns(map));
    exprs
}

/// The columns of pending rides: the ride's, the order columns, `reason`, and `expired` when
/// some link waits for a while.
fn pending_columns(map: &StreamMap) -> Vec<Expr> {
    let mut exprs: Vec<Expr> = RIDE_COLUMNS.iter().map(|c| col(*c)).collect();
    exprs.extend(ORDER.iter().map(|c| col(*c)));
    exprs.push(col(EXTRACTED));
    exprs.push(col("reason"));
    if map.links.waits_for_any() {
        exprs.push(col(EXPIRED));
    }
    exprs.extend(kept_columns(map));
    exprs
}

fn tombstone_columns() -> Vec<Expr> {
    let mut exprs = vec![col("id"), col("deleted_at")];
    exprs.extend(ORDER.iter().map(|c| col(*c)));
    exprs
}

#[cfg(test)]
mod tests {
    /// A model rule may not take the name of one of silver's rules; the list must follow them.
    #[test]
    fn silver_rule_names_are_reserved_for_models() {
        let (rules, delete_rules) = super::ride_rules(&crate::model::Model::default().rides);
        for (name, _) in rules.iter().chain(delete_rules.iter()) {
            assert!(crate::model::SILVER_RULE_NAMES.contains(name), "{name}");
        }
    }

    /// Each link policy pair: a waiting link that does not hold makes the ride wait (the
    /// customer's first); accepted links that do not hold are named in `unlinked`, in order.
    #[test]
    fn links_wait_or_are_named_as_their_policy_says() {
        use super::*;
        let users = df!("id" => [1i64, 2, 3], "type" => ["customer", "driver", "driver"]).expect("users");
        let roles = Roles::of(&users).expect("roles");
        // (customer, driver): both hold; no customer; an unknown driver; neither; no driver yet;
        // a driver as customer.
        let rides = df!("customer_id" => [Some(1i64), Some(9), Some(1), Some(9), Some(1), Some(2)], "driver_id" => [Some(2i64), Some(2), Some(7), Some(7), None, Some(3)]).expect("rides");
        let check = |customer_id: LinkPolicy, driver_id: LinkPolicy| -> (Vec<Option<String>>, Option<Vec<Option<String>>>) {
            let links = Links { customer_id, driver_id };
            let out = rides.clone().lazy().with_columns(link_checks(&roles, &links, Clock::default())).collect().expect("checks");
            let texts = |name: &str| out.column(name).ok().map(|c| c.str().expect("text").iter().map(|v| v.map(str::to_owned)).collect::<Vec<_>>());
            (texts("reason").expect("reason"), texts(UNLINKED))
        };
        let s = |v: &str| Some(v.to_owned());
        let (c, d, both) = (s(CUSTOMER_MISSING), s(DRIVER_MISSING), s("customer not registered; driver not registered"));
        use LinkPolicy::{Accept, Wait};
        assert_eq!(check(Wait, Wait), (vec![None, c.clone(), d.clone(), c.clone(), None, c.clone()], None));
        assert_eq!(check(Wait, Accept), (vec![None, c.clone(), None, c.clone(), None, c.clone()], Some(vec![None, None, d.clone(), d.clone(), None, None])));
        assert_eq!(check(Accept, Wait), (vec![None, None, d.clone(), d.clone(), None, None], Some(vec![None, c.clone(), None, c.clone(), None, c.clone()])));
        assert_eq!(check(Accept, Accept), (vec![None; 6], Some(vec![None, c.clone(), d.clone(), both, None, c])));
    }

    /// A link that waits for a while waits as `wait` does until the ride's latest change was
    /// extracted more than the limit before bronze's clock (strictly), then it expires with a
    /// reason naming the limit, which comes before a link that waits without limit; without a
    /// clock nothing expires.
    #[test]
    fn a_limited_wait_expires_on_bronzes_clock() {
        use super::*;
        use crate::model::WaitLimit;
        let users = df!("id" => [1i64, 2], "type" => ["customer", "driver"]).expect("users");
        let roles = Roles::of(&users).expect("roles");
        // (customer, driver, extracted µs): linked and old; no customer, old; no customer, at
        // the limit; no driver, old; neither, old; neither, recent.
        let rides = df!(
            "customer_id" => [Some(1i64), Some(9), Some(9), Some(1), Some(9), Some(9)],
            "driver_id" => [Some(2i64), Some(2), Some(2), Some(7), Some(7), Some(7)],
            EXTRACTED => [0i64, 0, 4_000_000, 0, 0, 9_000_000]
        )
        .expect("rides");
        let limit = WaitLimit::from_seconds(6).expect("6 s");
        let now = Clock { micros: Some(10_000_000) };
        let check = |customer_id: LinkPolicy, driver_id: LinkPolicy, clock: Clock| -> (Vec<Option<String>>, Vec<Option<bool>>) {
            let out = rides.clone().lazy().with_columns(link_checks(&roles, &Links { customer_id, driver_id }, clock)).collect().expect("checks");
            let reasons = out.column("reason").expect("reason").str().expect("text").iter().map(|v| v.map(str::to_owned)).collect();
            (reasons, out.column(EXPIRED).expect("expired").bool().expect("bool").iter().collect())
        };
        let s = |v: &str| Some(v.to_owned());
        let (c, d, c6, d6) = (s(CUSTOMER_MISSING), s(DRIVER_MISSING), s("customer not registered within 6s"), s("driver not registered within 6s"));
        let (yes, no) = (Some(true), Some(false));
        use LinkPolicy::{Accept, Wait, WaitFor};
        assert_eq!(check(WaitFor(limit), Wait, now), (vec![None, c6.clone(), c.clone(), d.clone(), c6.clone(), c.clone()], vec![no, yes, no, no, yes, no]));
        // An expired driver link comes before a customer that waits without limit.
        assert_eq!(check(Wait, WaitFor(limit), now), (vec![None, c.clone(), c.clone(), d6.clone(), d6.clone(), c.clone()], vec![no, no, no, yes, yes, no]));
        assert_eq!(check(Accept, WaitFor(limit), now).0, vec![None, None, None, d6.clone(), d6, d.clone()]);
        assert_eq!(check(WaitFor(limit), WaitFor(limit), Clock::default()), (vec![None, c.clone(), c.clone(), d, c.clone(), c], vec![no; 6]));
    }

    /// The Python package runs a build as a future on its runtime, which needs it `Send`: a build
    /// that holds a non-`Send` value across an await would compile here and fail only there.
    #[allow(dead_code)]
    fn builds_are_send(layout: crate::layout::LakeLayout, run: super::SilverOptions) {
        fn send<T: Send>(_: T) {}
        send(async move { super::build_silver_with(&layout, &run).await });
    }
}
