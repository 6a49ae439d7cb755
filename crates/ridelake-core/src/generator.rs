//! A seeded generator of ride-hailing CDC in the message shape Airbyte's MySQL source
//! (source-mysql) emits in CDC mode: one JSON `AirbyteMessage` per line.
//!
//! What it produces, in order:
//! 1. an initial snapshot: every `users` row, then every `rides` row (primary-key order), with
//!    `_ab_cdc_updated_at` = the sync start and `_ab_cdc_log_file`/`_ab_cdc_log_pos` = the binlog
//!    offset captured when the load began;
//! 2. binlog changes, grouped in transactions: rides requested, accepted, started, completed or
//!    cancelled (full after-images, `driver_id` null until accepted), user inserts, updates and
//!    type changes (customer <-> driver), deletes of rides and users (`_ab_cdc_deleted_at` set,
//!    full before-images), and deleted rides inserted again later under the same id with new
//!    values (a restore or manual fix; half of them moved one to three days earlier);
//! 3. what real syncs contain too: at-least-once duplicates (a recent line of the same sync
//!    replayed verbatim), rides that arrive before the user they reference, and rows missing a
//!    required value;
//! 4. a `GLOBAL` STATE (opaque `mysql_cdc_offset`, `sourceStats.recordCount`) every
//!    `state_every` records, at the end of each sync and at the end.
//!
//! Time and position, as source-mysql sends them:
//! - `emitted_at` is one value per sync, the sync start: it never orders records of one sync.
//! - `_ab_cdc_updated_at` is the commit time of the transaction, at second resolution, as text
//!   (`2025-01-01T10:00:00Z`); every row of a transaction has it, and `_ab_cdc_deleted_at` equals
//!   it on deletes. Transactions of several rows: a ride accepted and started at once, a ride
//!   completed in two statements (status and duration, then fare and ratings), a new user with
//!   their first ride.
//! - `_ab_cdc_log_pos` is the binlog event's position: the rows of one multi-row statement (a
//!   sweep cancelling stale requests, a purge deleting several rides; always different keys) share
//!   it, later statements get larger positions. Files rotate at 1 GiB like `max_binlog_size`
//!   (`mysql-bin.000003`, then `…000004` with positions starting again).
//! - DATETIME data columns (`requested_at` … `updated_at`) carry no zone
//!   (`2025-01-01T10:00:00.000000`, the server's wall clock, here UTC); DECIMAL columns are numbers.
//! - [`configured_catalog`] declares the meta fields as source-mysql does: change times as plain
//!   strings, `_ab_cdc_cursor` as an integer number, `_ab_cdc_log_pos` as a number.
//!
//! Cursor eras ([`CursorEra`], one connector generation's meta fields each):
//! - `Kotlin` (3.9+, bulk CDK; the default): binlog rows have
//!   `_ab_cdc_cursor = (binlog file number << 32) | pos` and `_ab_cdc_log_pos` as a double
//!   (`4920.0`); snapshot rows have no cursor and an integer position.
//! - `Java` (3.0–3.7): every row, snapshot rows included, has `_ab_cdc_cursor` = sync-start epoch
//!   seconds × 10^8 + a per-sync counter starting at 1; `_ab_cdc_log_pos` is an integer, and
//!   binlog rows send DECIMAL values as JSON strings (`"12.50"`).
//! - `Upgrade`: Java for the first half of the binlog changes, then Kotlin, as an in-place
//!   connector upgrade between two syncs gives. The output is then the records of two syncs
//!   concatenated: the second one's `emitted_at` is later, its cursors are smaller.
//!
//! With [`GeneratorConfig::binlog_restart_at`], the binlog numbering restarts after that many
//! changes (`RESET MASTER`, a restore, a failover): a new sync re-snapshots every current row
//! (snapshot rows of the era in effect, offset `mysql-bin.000001` at a small position), then the
//! changes go on in `mysql-bin.000001`, as Airbyte does with "re-sync data".
//!
//! The same [`GeneratorConfig`] always yields the same bytes.

use std::collections::VecDeque;
use std::io::Write;

use serde_json::json;

use crate::error::Result;

/// Which generation of source-mysql writes the `_ab_cdc_*` meta fields (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CursorEra {
    /// 3.9+ (Kotlin bulk CDK): `(file << 32) | pos` cursors on binlog rows, none on snapshot rows.
    #[default]
    Kotlin,
    /// 3.0–3.7 (Java): sync-start seconds × 10^8 + a per-sync counter on every row.
    Java,
    /// Java for the first half of the binlog changes, Kotlin after (two syncs concatenated).
    Upgrade,
}

impl std::str::FromStr for CursorEra {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "kotlin" => Ok(CursorEra::Kotlin),
            "java" => Ok(CursorEra::Java),
            "upgrade" => Ok(CursorEra::Upgrade),
            other => Err(format!("unknown cursor era {other:?} (kotlin, java or upgrade)")),
        }
    }
}

/// Knobs of the generator. [`GeneratorConfig::default`] is a small, realistic mix.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Seed of the pseudo-random sequence.
    pub seed: u64,
    /// Airbyte namespace (the MySQL database name).
    pub namespace: String,
    /// Users in the initial snapshot (a fifth of them drivers).
    pub users: u64,
    /// Rides in the initial snapshot.
    pub rides: u64,
    /// Binlog change events (transactions) after the snapshot.
    pub changes: u64,
    /// Stop after this many RECORD lines in total (duplicates included); `None` = no limit.
    pub max_records: Option<u64>,
    /// Records between two GLOBAL STATE messages.
    pub state_every: u64,
    /// Share of records replayed verbatim a second time (at-least-once delivery).
    pub duplicate_rate: f64,
    /// Share of new users whose first ride is emitted before the user's own insert.
    pub late_user_rate: f64,
    /// Share of inserts missing a value silver needs (`requested_at`, `customer_id`, `type`).
    pub bad_null_rate: f64,
    /// Share of change events that delete finished rides (a third of them several in one statement).
    pub delete_rate: f64,
    /// Share of change events that delete a user.
    pub user_delete_rate: f64,
    /// Share of change events that insert a deleted ride again under the same id, with new values.
    pub reinsert_rate: f64,
    /// Share of change events that turn a customer into a driver or a driver into a customer.
    pub type_change_rate: f64,
    /// Which connector generation's meta fields to write.
    pub cursor_era: CursorEra,
    /// With [`CursorEra::Upgrade`]: binlog changes written by the Java connector before the
    /// upgrade; `None` = half of `changes`.
    pub upgrade_at: Option<u64>,
    /// Restart the binlog numbering (with a re-snapshot) after this many binlog changes;
    /// `None` = never. Until then every ride is kept in memory for the re-snapshot.
    pub binlog_restart_at: Option<u64>,
    /// Snapshot time = start of the (first) sync, epoch seconds (default 2025-01-01T00:00:00Z).
    pub start_epoch_s: i64,
    /// Simulate the snapshot but write only the binlog changes (continues a lake that already
    /// holds this seed's snapshot).
    pub skip_snapshot_output: bool,
    /// Simulate but do not write the first N records (duplicates included) of this sequence: a
    /// run with the same seed, sizes and `skip_records` = the records an earlier run wrote
    /// continues exactly where that run stopped. Counts towards `max_records`.
    pub skip_records: u64,
    /// Keys (users' and rides' ids, a ride's customer and driver) as UUID text, as an application
    /// that draws `CHAR(36)` UUIDs writes them ([`uuid_key`]), instead of integers.
    pub uuid_keys: bool,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 42,
            namespace: "ridehail".into(),
            users: 1_000,
            rides: 5_000,
            changes: 10_000,
            max_records: None,
            state_every: 10_000,
            duplicate_rate: 0.02,
            late_user_rate: 0.05,
            bad_null_rate: 0.002,
            delete_rate: 0.005,
            user_delete_rate: 0.0005,
            reinsert_rate: 0.001,
            type_change_rate: 0.002,
            cursor_era: CursorEra::Kotlin,
            upgrade_at: None,
            binlog_restart_at: None,
            start_epoch_s: 1_735_689_600,
            skip_snapshot_output: false,
            skip_records: 0,
            uuid_keys: false,
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeneratorSummary {
    /// RECORD lines written (duplicates included).
    pub records: u64,
    /// Of which verbatim duplicates.
    pub duplicates: u64,
    /// STATE lines written.
    pub states: u64,
    /// Bytes written.
    pub bytes: u64,
}

use crate::cities::CITIES;
const FIRST: [&str; 16] = [
    "Amina", "Bruno", "Chen", "Dana", "Emeka", "Fatima", "Gustav", "Hana", "Ivan", "Jade", "Karim",
    "Lea", "Mateo", "Nora", "Omar", "Priya",
];
const LAST: [&str; 16] = [
    "Martin", "Okafor", "Silva", "Kowalski", "Nguyen", "Haddad", "Schmidt", "Rossi", "Dubois",
    "Tanaka", "Costa", "Moreau", "Khan", "Jensen", "Garcia", "Ali",
];
const PAYMENT: [&str; 3] = ["card", "cash", "wallet"];
/// Binlog file number of the initial snapshot (`mysql-bin.000003`).
const FIRST_LOG_FILE: u64 = 3;
/// Position of the first event after a binlog file's header (MySQL 8: format description and
/// previous-GTIDs events).
const FIRST_EVENT_POS: u64 = 157;
/// `max_binlog_size` (1 GiB): a transaction starting past it opens the next file.
const MAX_BINLOG_SIZE: u64 = 1 << 30;
/// Recent lines of the sync a duplicate is drawn from.
const RECENT: usize = 64;
/// Deleted or finished rides kept for later picks.
const KEEP_RIDES: usize = 4096;
/// Share of change events that run the sweep cancelling stale requests (one multi-row UPDATE).
const SWEEP_RATE: f64 = 0.01;
/// Share of new users inserted together with their first ride (one transaction).
const USER_WITH_RIDE_RATE: f64 = 0.5;
/// Share of acceptances where the ride also starts in the same transaction.
const ACCEPT_AND_START_RATE: f64 = 0.25;
/// Share of completions written as two statements (status, then fare) of one transaction.
const TWO_STEP_COMPLETION_RATE: f64 = 0.5;
/// Share of ride deletes that delete several rides in one statement.
const MULTI_DELETE_RATE: f64 = 0.3;
/// The snapshot's rides were requested over this many days before it.
const SNAPSHOT_DAYS: i64 = 90;
/// Share of change events that request a new ride: low enough that the other events (about 2.4
/// steps per ride) keep up, so that rides in progress do not pile up over the days.
const NEW_RIDE_RATE: f64 = 0.22;
/// Mean gap between two transactions of a burst of activity (several per second).
const BURST_GAP_US: i64 = 200_500;
/// Transactions per burst, on average: one in this many is followed by an idle pause.
const BURST_TXNS: u64 = 8;

/// SplitMix64: tiny, fast, and stable across platforms and versions.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

#[derive(Clone, Copy)]
struct User {
    id: u64,
    driver: bool,
    city: usize,
    created_us: i64,
    updated_us: i64,
    version: u32,
    type_missing: bool,
    /// Deleted: never changed nor referenced again.
    deleted: bool,
    /// Inserted in the database, but its binlog row is still to come (late user).
    pending: bool,
}

impl User {
    fn live(&self) -> bool {
        !self.deleted && !self.pending
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Requested,
    Accepted,
    InProgress,
    Completed,
    Cancelled,
}
impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Accepted => "accepted",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Copy)]
struct Ride {
    id: u64,
    customer_id: Option<u64>,
    driver_id: Option<u64>,
    status: Status,
    city: usize,
    requested_us: Option<i64>,
    accepted_us: Option<i64>,
    started_us: Option<i64>,
    completed_us: Option<i64>,
    cancelled_us: Option<i64>,
    pickup: (f64, f64),
    dropoff: (f64, f64),
    distance_km: f64,
    duration_s: Option<i64>,
    fare: Option<f64>,
    payment: usize,
    customer_rating: Option<i64>,
    driver_rating: Option<i64>,
    created_us: i64,
    updated_us: i64,
}

/// CDC meta data of the row being written (the era adds the cursor when writing).
#[derive(Clone, Copy)]
struct Cdc {
    /// `_ab_cdc_updated_at`, epoch seconds: the transaction's commit time or the sync start.
    updated_s: i64,
    deleted: bool,
    log_file: u64,
    log_pos: u64,
    snapshot: bool,
}

/// Streams generated messages into a writer.
pub struct Generator<W: Write> {
    cfg: GeneratorConfig,
    out: W,
    rng: Rng,
    line: Vec<u8>,
    /// Recent lines of the current sync (buffers are reused).
    recent: VecDeque<Vec<u8>>,
    users: Vec<User>,
    drivers: Vec<u64>,
    active: VecDeque<Ride>,
    finished: VecDeque<Ride>,
    /// Deleted rides that may be inserted again.
    deleted_rides: VecDeque<Ride>,
    /// Finished rides pushed out of `finished` while a re-snapshot is still to come.
    archive: Vec<Ride>,
    /// A re-snapshot is still to come: keep every ride.
    keep_all: bool,
    delayed_users: Vec<(u64, u32)>,
    next_ride_id: u64,
    clock_us: i64,
    /// Mean idle time added per transaction, so that the binlog requests as many rides a day as
    /// the snapshot held (else a whole run of changes lands on the snapshot's next day).
    idle_us: i64,
    log_file: u64,
    log_pos: u64,
    /// Commit time of the current transaction, epoch seconds.
    txn_s: i64,
    /// Start of the current sync, epoch seconds (`emitted_at`, Java cursors).
    sync_start_s: i64,
    /// The Java connector writes the meta fields (else Kotlin).
    java: bool,
    /// Java's per-sync record counter.
    java_counter: u64,
    /// `_ab_cdc_updated_at` text of the last second formatted, with its quotes.
    change_time: (i64, [u8; 22]),
    since_state: u64,
    summary: GeneratorSummary,
    muted: bool,
    /// Records not written because of `skip_records`.
    skipped: u64,
}

impl<W: Write> Generator<W> {
    /// A generator writing to `out`.
    pub fn new(cfg: GeneratorConfig, out: W) -> Self {
        let rng = Rng(cfg.seed ^ 0x5EED_0F_41DE);
        let clock_us = cfg.start_epoch_s * 1_000_000;
        let sync_start_s = cfg.start_epoch_s;
        let java = cfg.cursor_era != CursorEra::Kotlin;
        let keep_all = cfg.binlog_restart_at.is_some();
        // Snapshot rides per day / new rides per change = the mean time between changes.
        let mean_gap_us = match cfg.rides {
            0 => BURST_GAP_US,
            rides => ((SNAPSHOT_DAYS * 86_400_000_000) as f64 * NEW_RIDE_RATE / rides as f64) as i64,
        };
        let idle_us = (mean_gap_us - BURST_GAP_US).max(0);
        Generator {
            cfg,
            out,
            rng,
            line: Vec::with_capacity(1024),
            recent: VecDeque::with_capacity(RECENT),
            users: Vec::new(),
            drivers: Vec::new(),
            active: VecDeque::new(),
            finished: VecDeque::new(),
            deleted_rides: VecDeque::new(),
            archive: Vec::new(),
            keep_all,
            delayed_users: Vec::new(),
            next_ride_id: 1,
            clock_us,
            idle_us,
            log_file: FIRST_LOG_FILE,
            log_pos: FIRST_EVENT_POS,
            txn_s: sync_start_s,
            sync_start_s,
            java,
            java_counter: 0,
            change_time: (i64::MIN, [0; 22]),
            since_state: 0,
            summary: GeneratorSummary::default(),
            muted: false,
            skipped: 0,
        }
    }

    fn done(&self) -> bool {
        self.cfg.max_records.is_some_and(|max| self.summary.records + self.skipped >= max)
    }

    /// Meta data of snapshot rows: the sync start and the current binlog offset.
    fn snapshot_cdc(&self) -> Cdc {
        Cdc { updated_s: self.sync_start_s, deleted: false, log_file: self.log_file, log_pos: self.log_pos, snapshot: true }
    }

    /// Writes the whole sequence and returns what was written.
    pub fn run(mut self) -> Result<GeneratorSummary> {
        let snapshot_us = self.clock_us;
        let snapshot = self.snapshot_cdc();
        // Users: a fifth drivers, created over the year before the snapshot.
        for id in 1..=self.cfg.users {
            let driver = id % 5 == 0;
            let created_us = snapshot_us - 1 - (self.rng.below(365 * 86_400) as i64) * 1_000_000;
            let user = User {
                id,
                driver,
                city: self.rng.below(CITIES.len() as u64) as usize,
                created_us,
                updated_us: created_us,
                version: 0,
                type_missing: self.rng.chance(self.cfg.bad_null_rate),
                deleted: false,
                pending: false,
            };
            if driver {
                self.drivers.push(id);
            }
            self.users.push(user);
        }
        self.muted = self.cfg.skip_snapshot_output;
        for i in 0..self.users.len() {
            if self.done() {
                break;
            }
            self.emit_user(i, snapshot)?;
        }
        // Rides: requested over the 90 days before the snapshot, mostly finished. The snapshot
        // reads the table in primary-key order and auto-increment ids grow with time, so request
        // times grow with the id (jittered within each ride's slot).
        let span_us: i64 = SNAPSHOT_DAYS * 86_400 * 1_000_000;
        let slot_us = (span_us / self.cfg.rides.max(1) as i64).max(1);
        for i in 0..self.cfg.rides {
            if self.done() || self.users.is_empty() {
                break;
            }
            let slot_start = snapshot_us - span_us + ((span_us as i128 * i as i128) / self.cfg.rides.max(1) as i128) as i64;
            let requested = (slot_start + self.rng.below(slot_us as u64) as i64).min(snapshot_us - 1);
            let mut ride = self.new_ride(requested, None);
            // Rides of the last two hours may still be under way; older ones are finished.
            let recent = snapshot_us - requested < 2 * 3_600_000_000;
            let fate = self.rng.below(100);
            let steps = if !recent || fate < 80 { if fate < 90 { 3 } else { 4 } } else { self.rng.below(3) };
            for _ in 0..steps {
                let t = ride.updated_us + (60 + self.rng.below(900) as i64) * 1_000_000;
                self.advance(&mut ride, t.min(snapshot_us - 1), steps == 4);
            }
            self.emit_ride(&ride, snapshot)?;
            self.retire_or_keep(ride);
        }
        self.muted = false;
        // Binlog changes, with the connector upgrade and the binlog restart where configured.
        let upgrade_at = (self.cfg.cursor_era == CursorEra::Upgrade)
            .then(|| self.cfg.upgrade_at.unwrap_or(self.cfg.changes / 2));
        for n in 0..self.cfg.changes {
            if self.done() {
                break;
            }
            if upgrade_at == Some(n) {
                self.start_sync()?;
                self.java = false;
            }
            if self.cfg.binlog_restart_at == Some(n) {
                self.restart_binlog()?;
            }
            self.change()?;
        }
        // Users whose insert was still delayed arrive now.
        while let Some((id, _)) = self.delayed_users.pop() {
            if self.done() {
                break;
            }
            self.insert_delayed_user(id)?;
        }
        self.emit_state()?;
        self.out.flush()?;
        Ok(self.summary)
    }

    /// Ends the current sync (its STATE) and starts the next one a second later.
    fn start_sync(&mut self) -> Result<()> {
        if !self.muted && self.skipped >= self.cfg.skip_records && self.since_state > 0 {
            self.emit_state()?;
        }
        self.sync_start_s = self.clock_us.div_euclid(1_000_000) + 1;
        self.clock_us = self.sync_start_s * 1_000_000;
        self.java_counter = 0;
        // Duplicates replay records of the same sync only.
        self.recent.clear();
        Ok(())
    }

    /// `RESET MASTER` (or a restore, a failover) then a sync that re-snapshots every current row
    /// and continues with the new binlog numbering.
    fn restart_binlog(&mut self) -> Result<()> {
        self.start_sync()?;
        self.log_file = 1;
        self.log_pos = FIRST_EVENT_POS;
        // Late users are in the database: the snapshot has them.
        for (id, _) in std::mem::take(&mut self.delayed_users) {
            self.users[(id - 1) as usize].pending = false;
        }
        let cdc = self.snapshot_cdc();
        for i in 0..self.users.len() {
            if self.done() {
                return Ok(());
            }
            if !self.users[i].deleted {
                self.emit_user(i, cdc)?;
            }
        }
        self.keep_all = false;
        let mut rides: Vec<Ride> = std::mem::take(&mut self.archive);
        rides.extend(self.finished.iter().copied());
        rides.extend(self.active.iter().copied());
        rides.sort_unstable_by_key(|r| r.id);
        for ride in &rides {
            if self.done() {
                break;
            }
            self.emit_ride(ride, cdc)?;
        }
        Ok(())
    }

    /// Starts a transaction: moves the clock and the binlog position (GTID and BEGIN events),
    /// rotating to the next binlog file past `max_binlog_size`. Returns the clock.
    ///
    /// Transactions come in bursts (several a second, so that change times tie across
    /// transactions as on a busy server) separated by idle pauses that spread the changes over
    /// days at the snapshot's daily ride volume.
    fn begin_txn(&mut self) -> i64 {
        self.clock_us += 1_000 + self.rng.below(2 * BURST_GAP_US as u64 - 2_000) as i64;
        if self.idle_us > 0 && self.rng.below(BURST_TXNS) == 0 {
            self.clock_us += self.rng.below(2 * BURST_TXNS * self.idle_us as u64) as i64;
        }
        if self.log_pos >= MAX_BINLOG_SIZE {
            self.log_file += 1;
            self.log_pos = FIRST_EVENT_POS;
        }
        self.log_pos += 60 + self.rng.below(40);
        self.txn_s = self.clock_us.div_euclid(1_000_000);
        self.clock_us
    }

    /// The next statement (rows event) of the current transaction.
    fn statement(&mut self) -> Cdc {
        self.log_pos += 150 + self.rng.below(700);
        Cdc { updated_s: self.txn_s, deleted: false, log_file: self.log_file, log_pos: self.log_pos, snapshot: false }
    }

    /// A moment a little later in the same transaction.
    fn later_in_txn(&mut self) -> i64 {
        self.clock_us += 1 + self.rng.below(3_000) as i64;
        self.clock_us
    }

    fn change(&mut self) -> Result<()> {
        // Users whose ride went first arrive a few events later.
        if let Some(pos) = self.delayed_users.iter().position(|(_, wait)| *wait == 0) {
            let (id, _) = self.delayed_users.swap_remove(pos);
            return self.insert_delayed_user(id);
        }
        for (_, wait) in self.delayed_users.iter_mut() {
            *wait = wait.saturating_sub(1);
        }
        let now = self.begin_txn();
        if self.users.is_empty() {
            return self.new_user_event(now);
        }
        let roll = self.rng.unit();
        let mut edge = 0.0;
        let mut bucket = |rate: f64| {
            let hit = roll >= edge && roll < edge + rate;
            edge += rate;
            hit
        };
        let (delete, user_delete, reinsert, type_change, sweep) = (
            bucket(self.cfg.delete_rate),
            bucket(self.cfg.user_delete_rate),
            bucket(self.cfg.reinsert_rate),
            bucket(self.cfg.type_change_rate),
            bucket(SWEEP_RATE),
        );
        let (new_user, user_update, new_ride) = (bucket(0.03), bucket(0.06), bucket(NEW_RIDE_RATE));
        if delete && !self.finished.is_empty() {
            return self.delete_rides();
        }
        if user_delete && self.users.len() > 10 {
            if let Some(idx) = self.pick_user(User::live) {
                return self.delete_user(idx);
            }
        }
        if reinsert && !self.deleted_rides.is_empty() {
            return self.reinsert_ride(now);
        }
        if type_change {
            if let Some(idx) = self.pick_user(User::live) {
                return self.change_type(idx, now);
            }
        }
        if sweep && self.sweep_stale_requests(now)? {
            return Ok(());
        }
        if new_user {
            return self.new_user_event(now);
        }
        if user_update {
            if let Some(idx) = self.pick_user(User::live) {
                let cdc = self.statement();
                let city_moves = self.rng.chance(0.3);
                let city = self.rng.below(CITIES.len() as u64) as usize;
                let user = &mut self.users[idx];
                user.version += 1;
                user.updated_us = now;
                if city_moves {
                    user.city = city;
                }
                return self.emit_user(idx, cdc);
            }
        }
        if new_ride || self.active.is_empty() {
            let cdc = self.statement();
            let ride = self.new_ride(now, None);
            self.emit_ride(&ride, cdc)?;
            self.active.push_back(ride);
            return Ok(());
        }
        // The longest-waiting rides move on first, as dispatch does.
        let idx = self.rng.below(self.active.len().min(16) as u64) as usize;
        let Some(mut ride) = self.active.remove(idx) else { return Ok(()) };
        let mut cdc = self.statement();
        self.advance(&mut ride, now, false);
        if ride.status == Status::Accepted && self.rng.chance(ACCEPT_AND_START_RATE) {
            // Accepted and started in one transaction: two rows of the ride, one commit time.
            self.emit_ride(&ride, cdc)?;
            cdc = self.statement();
            let t = self.later_in_txn();
            self.advance(&mut ride, t, true);
        } else if ride.status == Status::Completed && self.rng.chance(TWO_STEP_COMPLETION_RATE) {
            // Completed in two statements: status and duration, then fare and ratings.
            let first = Ride { fare: None, customer_rating: None, driver_rating: None, ..ride };
            self.emit_ride(&first, cdc)?;
            cdc = self.statement();
            ride.updated_us = self.later_in_txn();
        }
        self.emit_ride(&ride, cdc)?;
        self.retire_or_keep(ride);
        Ok(())
    }

    /// A late user's own insert, in its own transaction.
    fn insert_delayed_user(&mut self, id: u64) -> Result<()> {
        self.begin_txn();
        let cdc = self.statement();
        let idx = (id - 1) as usize;
        self.users[idx].pending = false;
        self.emit_user(idx, cdc)
    }

    /// A user matching `want`, drawn at random (a few tries), if any.
    fn pick_user(&mut self, want: fn(&User) -> bool) -> Option<usize> {
        for _ in 0..32 {
            let idx = self.rng.below(self.users.len() as u64) as usize;
            if self.users.get(idx).is_some_and(want) {
                return Some(idx);
            }
        }
        None
    }

    fn remove_driver(&mut self, id: u64) {
        if let Some(pos) = self.drivers.iter().position(|d| *d == id) {
            self.drivers.swap_remove(pos);
        }
    }

    /// Deletes finished rides: one, or several in one multi-row statement (one position).
    fn delete_rides(&mut self) -> Result<()> {
        let rows = if self.rng.chance(MULTI_DELETE_RATE) { 2 + self.rng.below(3) } else { 1 };
        let cdc = Cdc { deleted: true, ..self.statement() };
        for _ in 0..rows {
            let idx = self.rng.below(self.finished.len() as u64) as usize;
            let Some(ride) = self.finished.remove(idx) else { break };
            self.emit_ride(&ride, cdc)?;
            if self.deleted_rides.len() >= KEEP_RIDES {
                self.deleted_rides.pop_front();
            }
            self.deleted_rides.push_back(ride);
        }
        Ok(())
    }

    fn delete_user(&mut self, idx: usize) -> Result<()> {
        let cdc = Cdc { deleted: true, ..self.statement() };
        let user = &mut self.users[idx];
        user.deleted = true;
        let (id, driver) = (user.id, user.driver);
        if driver {
            self.remove_driver(id);
        }
        self.emit_user(idx, cdc)
    }

    /// A deleted ride inserted again under its id (a restore or a manual fix), with a corrected
    /// fare and payment method, and half of the time moved one to three days earlier.
    fn reinsert_ride(&mut self, now: i64) -> Result<()> {
        let idx = self.rng.below(self.deleted_rides.len() as u64) as usize;
        let Some(mut ride) = self.deleted_rides.remove(idx) else { return Ok(()) };
        let cdc = self.statement();
        if self.rng.chance(0.5) {
            let shift = (1 + self.rng.below(3) as i64) * 86_400_000_000;
            for t in [
                &mut ride.requested_us,
                &mut ride.accepted_us,
                &mut ride.started_us,
                &mut ride.completed_us,
                &mut ride.cancelled_us,
            ] {
                *t = t.map(|v| v - shift);
            }
            ride.created_us -= shift;
        }
        if let Some(fare) = ride.fare {
            ride.fare = Some((fare * (0.8 + 0.4 * self.rng.unit()) * 100.0).round() / 100.0);
        }
        ride.payment = self.rng.below(PAYMENT.len() as u64) as usize;
        ride.updated_us = now;
        self.emit_ride(&ride, cdc)?;
        self.retire_or_keep(ride);
        Ok(())
    }

    /// `UPDATE users SET type = …`: a customer becomes a driver or a driver a customer.
    fn change_type(&mut self, idx: usize, now: i64) -> Result<()> {
        let cdc = self.statement();
        let user = &mut self.users[idx];
        user.driver = !user.driver;
        user.type_missing = false;
        user.updated_us = now;
        let (id, driver) = (user.id, user.driver);
        if driver {
            self.drivers.push(id);
        } else {
            self.remove_driver(id);
        }
        self.emit_user(idx, cdc)
    }

    /// One multi-row UPDATE cancelling the oldest unanswered requests (rows share the position).
    /// `false` when fewer than two requests wait.
    fn sweep_stale_requests(&mut self, now: i64) -> Result<bool> {
        let want = 2 + self.rng.below(4) as usize;
        let stale: Vec<usize> = (0..self.active.len().min(64))
            .filter(|i| self.active[*i].status == Status::Requested)
            .take(want)
            .collect();
        if stale.len() < 2 {
            return Ok(false);
        }
        let cdc = self.statement();
        let mut rides: Vec<Ride> = stale.iter().rev().filter_map(|i| self.active.remove(*i)).collect();
        rides.sort_unstable_by_key(|r| r.id);
        for mut ride in rides {
            ride.status = Status::Cancelled;
            ride.cancelled_us = Some(now);
            ride.updated_us = now;
            self.emit_ride(&ride, cdc)?;
            self.retire_or_keep(ride);
        }
        Ok(true)
    }

    fn new_user_event(&mut self, now: i64) -> Result<()> {
        let id = self.users.len() as u64 + 1;
        let idx = (id - 1) as usize;
        let driver = self.rng.chance(0.2);
        self.users.push(User {
            id,
            driver,
            city: self.rng.below(CITIES.len() as u64) as usize,
            created_us: now,
            updated_us: now,
            version: 0,
            type_missing: self.rng.chance(self.cfg.bad_null_rate),
            deleted: false,
            pending: false,
        });
        if driver {
            self.drivers.push(id);
        }
        if !driver && self.rng.chance(self.cfg.late_user_rate) {
            // The app wrote the user first, but the ride reaches us first.
            self.users[idx].pending = true;
            let cdc = self.statement();
            let ride = self.new_ride(now, Some(id));
            self.emit_ride(&ride, cdc)?;
            self.active.push_back(ride);
            let wait = 1 + self.rng.below(20) as u32;
            self.delayed_users.push((id, wait));
            return Ok(());
        }
        let cdc = self.statement();
        self.emit_user(idx, cdc)?;
        if !driver && self.rng.chance(USER_WITH_RIDE_RATE) {
            // Sign-up and first request in one transaction.
            let cdc = self.statement();
            let t = self.later_in_txn();
            let ride = self.new_ride(t, Some(id));
            self.emit_ride(&ride, cdc)?;
            self.active.push_back(ride);
        }
        Ok(())
    }

    fn retire_or_keep(&mut self, ride: Ride) {
        if matches!(ride.status, Status::Completed | Status::Cancelled) {
            if self.finished.len() >= KEEP_RIDES {
                if let Some(old) = self.finished.pop_front() {
                    if self.keep_all {
                        self.archive.push(old);
                    }
                }
            }
            self.finished.push_back(ride);
        } else {
            self.active.push_back(ride);
        }
    }

    fn new_ride(&mut self, requested_us: i64, customer: Option<u64>) -> Ride {
        let customer_id = match customer {
            Some(id) => id,
            None => {
                // A customer who still exists (any user if a few draws find none).
                let mut id = 1;
                for _ in 0..64 {
                    let user = &self.users[self.rng.below(self.users.len() as u64) as usize];
                    id = user.id;
                    if !user.driver && !user.deleted {
                        break;
                    }
                }
                id
            }
        };
        let city = self.users[(customer_id - 1) as usize].city;
        let (_, lat, lon, _) = CITIES[city];
        let jitter = |rng: &mut Rng| (rng.unit() - 0.5) * 0.2;
        let pickup = (lat + jitter(&mut self.rng), lon + jitter(&mut self.rng));
        let dropoff = (lat + jitter(&mut self.rng), lon + jitter(&mut self.rng));
        let distance_km = (((pickup.0 - dropoff.0) * 111.0).powi(2) + ((pickup.1 - dropoff.1) * 78.0).powi(2)).sqrt() * 1.3 + 0.5;
        let bad = self.rng.chance(self.cfg.bad_null_rate);
        let id = self.next_ride_id;
        self.next_ride_id += 1;
        Ride {
            id,
            customer_id: if bad && id % 2 == 0 { None } else { Some(customer_id) },
            driver_id: None,
            status: Status::Requested,
            city,
            requested_us: if bad && id % 2 == 1 { None } else { Some(requested_us) },
            accepted_us: None,
            started_us: None,
            completed_us: None,
            cancelled_us: None,
            pickup,
            dropoff,
            distance_km: (distance_km * 1000.0).round() / 1000.0,
            duration_s: None,
            fare: None,
            payment: self.rng.below(PAYMENT.len() as u64) as usize,
            customer_rating: None,
            driver_rating: None,
            created_us: requested_us,
            updated_us: requested_us,
        }
    }

    /// Moves a ride one step along requested → accepted → in_progress → completed, with
    /// cancellations on the way (never when `no_cancel`).
    fn advance(&mut self, ride: &mut Ride, at_us: i64, no_cancel: bool) {
        let at_us = at_us.max(ride.updated_us + 1);
        let cancel = !no_cancel && self.rng.chance(0.08);
        ride.updated_us = at_us;
        match ride.status {
            Status::Requested | Status::Accepted if cancel => {
                ride.status = Status::Cancelled;
                ride.cancelled_us = Some(at_us);
            }
            Status::Requested => {
                ride.status = Status::Accepted;
                ride.accepted_us = Some(at_us);
                if !self.drivers.is_empty() {
                    let idx = self.rng.below(self.drivers.len() as u64) as usize;
                    ride.driver_id = Some(self.drivers[idx]);
                }
            }
            Status::Accepted => {
                ride.status = Status::InProgress;
                ride.started_us = Some(at_us);
            }
            Status::InProgress => {
                ride.status = Status::Completed;
                ride.completed_us = Some(at_us);
                let duration = (ride.distance_km * 150.0) as i64 + self.rng.below(600) as i64;
                ride.duration_s = Some(duration);
                let fare = 2.5 + ride.distance_km * 1.2 + duration as f64 / 60.0 * 0.3;
                ride.fare = Some((fare * 100.0).round() / 100.0);
                ride.customer_rating = (!self.rng.chance(0.3)).then(|| 3 + self.rng.below(3) as i64);
                ride.driver_rating = (!self.rng.chance(0.2)).then(|| 3 + self.rng.below(3) as i64);
            }
            Status::Completed | Status::Cancelled => {}
        }
    }

    fn begin_record(&mut self, stream: &str) {
        self.line.clear();
        self.line.extend_from_slice(b"{\"type\":\"RECORD\",\"record\":{\"namespace\":");
        push_json_str(&mut self.line, &self.cfg.namespace);
        self.line.extend_from_slice(b",\"stream\":\"");
        self.line.extend_from_slice(stream.as_bytes());
        self.line.extend_from_slice(b"\",\"emitted_at\":");
        push_int(&mut self.line, self.sync_start_s * 1000);
        self.line.extend_from_slice(b",\"data\":{");
    }

    fn end_record(&mut self, cdc: Cdc) -> Result<()> {
        // Past `max_records` (the rest of a transaction), nothing more is written.
        if self.done() {
            return Ok(());
        }
        if self.change_time.0 != cdc.updated_s {
            self.change_time = (cdc.updated_s, format_change_time(cdc.updated_s));
        }
        let l = &mut self.line;
        l.extend_from_slice(b",\"_ab_cdc_updated_at\":");
        l.extend_from_slice(&self.change_time.1);
        l.extend_from_slice(b",\"_ab_cdc_deleted_at\":");
        if cdc.deleted {
            l.extend_from_slice(&self.change_time.1);
        } else {
            l.extend_from_slice(b"null");
        }
        l.extend_from_slice(b",\"_ab_cdc_log_file\":\"mysql-bin.");
        push_padded(l, cdc.log_file, 6);
        l.extend_from_slice(b"\",\"_ab_cdc_log_pos\":");
        push_int(l, cdc.log_pos as i64);
        if self.java {
            // Java 3.x: sync start × 10^8 + a per-sync counter, on snapshot rows too.
            self.java_counter += 1;
            l.extend_from_slice(b",\"_ab_cdc_cursor\":");
            push_int(l, self.sync_start_s * 100_000_000 + self.java_counter as i64);
        } else if !cdc.snapshot {
            // Kotlin: the position as a double, the cursor from file and position.
            l.extend_from_slice(b".0,\"_ab_cdc_cursor\":");
            push_int(l, ((cdc.log_file << 32) | cdc.log_pos) as i64);
        }
        l.extend_from_slice(b"}}}\n");
        // While muted (snapshot of --skip-snapshot) nothing is written, but the random sequence is
        // consumed exactly as when writing, so that the changes that follow are the same.
        let skipping = self.skipped < self.cfg.skip_records;
        if skipping && !self.muted {
            self.skipped += 1;
        } else if !self.muted {
            self.out.write_all(&self.line)?;
            self.summary.records += 1;
            self.summary.bytes += self.line.len() as u64;
            self.since_state += 1;
        }
        let mut kept = if self.recent.len() == RECENT { self.recent.pop_front().unwrap_or_default() } else { Vec::new() };
        kept.clear();
        kept.extend_from_slice(&self.line);
        self.recent.push_back(kept);
        if !self.muted && self.since_state >= self.cfg.state_every {
            self.emit_state()?;
        }
        if !self.done() && self.rng.chance(self.cfg.duplicate_rate) {
            let idx = self.rng.below(self.recent.len() as u64) as usize;
            if let (false, true, Some(_)) = (self.muted, self.skipped < self.cfg.skip_records, self.recent.get(idx)) {
                self.skipped += 1;
            } else if let (false, Some(dup)) = (self.muted, self.recent.get(idx)) {
                self.out.write_all(dup)?;
                self.summary.bytes += dup.len() as u64;
                self.summary.records += 1;
                self.summary.duplicates += 1;
                self.since_state += 1;
            }
        }
        Ok(())
    }

    fn emit_user(&mut self, idx: usize, cdc: Cdc) -> Result<()> {
        let Some(user) = self.users.get(idx).copied() else { return Ok(()) };
        self.begin_record("users");
        let uuid = self.cfg.uuid_keys;
        let l = &mut self.line;
        let first = FIRST[(user.id as usize * 7 + user.version as usize) % FIRST.len()];
        let last = LAST[(user.id as usize * 13) % LAST.len()];
        l.extend_from_slice(b"\"id\":");
        push_key(l, Some(user.id), USER_KEYS, uuid);
        l.extend_from_slice(b",\"type\":");
        match (user.type_missing, user.driver) {
            (true, _) => l.extend_from_slice(b"null"),
            (false, true) => l.extend_from_slice(b"\"driver\""),
            (false, false) => l.extend_from_slice(b"\"customer\""),
        }
        l.extend_from_slice(b",\"name\":\"");
        l.extend_from_slice(first.as_bytes());
        l.push(b' ');
        l.extend_from_slice(last.as_bytes());
        l.extend_from_slice(b"\",\"email\":\"");
        l.extend_from_slice(first.to_ascii_lowercase().as_bytes());
        l.push(b'.');
        push_int(l, user.id as i64);
        l.extend_from_slice(b"@example.com\",\"phone\":");
        if user.id % 17 == 0 {
            l.extend_from_slice(b"null");
        } else {
            l.extend_from_slice(b"\"+1-555-");
            push_int(l, 1_000_000 + ((user.id * 7919 + user.version as u64) % 9_000_000) as i64);
            l.push(b'"');
        }
        l.extend_from_slice(b",\"city\":");
        push_json_str(l, CITIES[user.city].0);
        l.extend_from_slice(b",\"created_at\":");
        push_datetime(l, Some(user.created_us));
        l.extend_from_slice(b",\"updated_at\":");
        push_datetime(l, Some(user.updated_us));
        self.end_record(cdc)
    }

    fn emit_ride(&mut self, ride: &Ride, cdc: Cdc) -> Result<()> {
        // Java binlog rows send DECIMAL values as JSON strings.
        let quoted = self.java && !cdc.snapshot;
        self.begin_record("rides");
        let uuid = self.cfg.uuid_keys;
        let l = &mut self.line;
        l.extend_from_slice(b"\"id\":");
        push_key(l, Some(ride.id), RIDE_KEYS, uuid);
        l.extend_from_slice(b",\"customer_id\":");
        push_key(l, ride.customer_id, USER_KEYS, uuid);
        l.extend_from_slice(b",\"driver_id\":");
        push_key(l, ride.driver_id, USER_KEYS, uuid);
        l.extend_from_slice(b",\"status\":\"");
        l.extend_from_slice(ride.status.as_str().as_bytes());
        l.extend_from_slice(b"\",\"requested_at\":");
        push_datetime(l, ride.requested_us);
        l.extend_from_slice(b",\"accepted_at\":");
        push_datetime(l, ride.accepted_us);
        l.extend_from_slice(b",\"started_at\":");
        push_datetime(l, ride.started_us);
        l.extend_from_slice(b",\"completed_at\":");
        push_datetime(l, ride.completed_us);
        l.extend_from_slice(b",\"cancelled_at\":");
        push_datetime(l, ride.cancelled_us);
        l.extend_from_slice(b",\"pickup_lat\":");
        push_decimal(l, Some(ride.pickup.0), 6, quoted);
        l.extend_from_slice(b",\"pickup_lon\":");
        push_decimal(l, Some(ride.pickup.1), 6, quoted);
        l.extend_from_slice(b",\"dropoff_lat\":");
        push_decimal(l, Some(ride.dropoff.0), 6, quoted);
        l.extend_from_slice(b",\"dropoff_lon\":");
        push_decimal(l, Some(ride.dropoff.1), 6, quoted);
        l.extend_from_slice(b",\"distance_km\":");
        push_decimal(l, Some(ride.distance_km), 3, quoted);
        l.extend_from_slice(b",\"duration_s\":");
        push_opt_int(l, ride.duration_s);
        l.extend_from_slice(b",\"fare_amount\":");
        push_decimal(l, ride.fare, 2, quoted);
        l.extend_from_slice(b",\"currency\":\"");
        l.extend_from_slice(CITIES[ride.city].3.as_bytes());
        l.extend_from_slice(b"\",\"payment_method\":\"");
        l.extend_from_slice(PAYMENT[ride.payment].as_bytes());
        l.extend_from_slice(b"\",\"customer_rating\":");
        push_opt_int(l, ride.customer_rating);
        l.extend_from_slice(b",\"driver_rating\":");
        push_opt_int(l, ride.driver_rating);
        l.extend_from_slice(b",\"created_at\":");
        push_datetime(l, Some(ride.created_us));
        l.extend_from_slice(b",\"updated_at\":");
        push_datetime(l, Some(ride.updated_us));
        self.end_record(cdc)
    }

    fn emit_state(&mut self) -> Result<()> {
        if self.muted {
            return Ok(());
        }
        let offset = format!(
            "{{\"ts_sec\":{},\"file\":\"mysql-bin.{:06}\",\"pos\":{},\"row\":1,\"server_id\":1,\"event\":2}}",
            self.clock_us / 1_000_000,
            self.log_file,
            self.log_pos
        );
        let key = format!("[\"{ns}\",{{\"server\":\"{ns}\"}}]", ns = self.cfg.namespace);
        let stream_state = |name: &str| {
            json!({"stream_descriptor": {"name": name, "namespace": self.cfg.namespace},
                   "stream_state": {"stream_name": name, "stream_namespace": self.cfg.namespace, "cursor_field": []}})
        };
        let state = json!({
            "type": "STATE",
            "state": {
                "type": "GLOBAL",
                "global": {
                    "shared_state": {"state": {"mysql_cdc_offset": {key: offset}, "mysql_db_history": "", "is_compressed": false}},
                    "stream_states": [stream_state("users"), stream_state("rides")],
                },
                "sourceStats": {"recordCount": self.since_state as f64},
            }
        });
        let mut text = serde_json::to_vec(&state)?;
        text.push(b'\n');
        self.out.write_all(&text)?;
        self.summary.bytes += text.len() as u64;
        self.summary.states += 1;
        self.since_state = 0;
        Ok(())
    }
}

/// Salt of the users' UUIDs ([`uuid_key`]).
const USER_KEYS: u64 = 0x7573_6572;
/// Salt of the rides' UUIDs.
const RIDE_KEYS: u64 = 0x7269_6465;

/// The UUID (version 4 form, lower-case text) that stands for key `id` of the table salted
/// `salt` with `uuid_keys`: random-looking hex from a mix of the id (so that keys spread over
/// their byte order as drawn UUIDs do), and the id itself in the last group (so that two ids
/// never share a UUID, below 2^48).
pub fn uuid_key(id: u64, salt: u64) -> String {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let (a, b) = (mix(id ^ salt.rotate_left(48)), mix(id.wrapping_add(salt)));
    format!("{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}", a >> 32, (a >> 16) & 0xffff, a & 0xfff, 8 | (b & 3), (b >> 2) & 0xfff, id & 0xffff_ffff_ffff)
}

/// Writes key `id` (null when `None`): an integer, or with `uuid` its [`uuid_key`] as a JSON string.
fn push_key(out: &mut Vec<u8>, id: Option<u64>, salt: u64, uuid: bool) {
    match id {
        None => out.extend_from_slice(b"null"),
        Some(id) if uuid => {
            out.push(b'"');
            out.extend_from_slice(uuid_key(id, salt).as_bytes());
            out.push(b'"');
        }
        Some(id) => push_int(out, id as i64),
    }
}

fn push_int(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn push_opt_int(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => push_int(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// Writes `v` zero-padded to `width` digits (binlog file suffixes).
fn push_padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(v).as_bytes();
    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(digits.len())));
    out.extend_from_slice(digits);
}

/// Writes `v` with exactly `decimals` fractional digits (like MySQL DECIMAL), without float formatting.
fn push_fixed(out: &mut Vec<u8>, v: f64, decimals: u32) {
    let scale = 10i64.pow(decimals);
    let scaled = (v * scale as f64).round() as i64;
    if scaled < 0 {
        out.push(b'-');
    }
    let abs = scaled.unsigned_abs();
    out.extend_from_slice(itoa::Buffer::new().format(abs / scale as u64).as_bytes());
    out.push(b'.');
    push_padded(out, abs % scale as u64, decimals as usize);
}

/// A DECIMAL value: a JSON number, or a JSON string when `quoted` (Java binlog rows); `null`.
fn push_decimal(out: &mut Vec<u8>, v: Option<f64>, decimals: u32, quoted: bool) {
    match v {
        None => out.extend_from_slice(b"null"),
        Some(v) if quoted => {
            out.push(b'"');
            push_fixed(out, v, decimals);
            out.push(b'"');
        }
        Some(v) => push_fixed(out, v, decimals),
    }
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Generated strings hold no characters that need escaping; serde keeps this honest.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if let Ok(text) = serde_json::to_string(s) {
        out.extend_from_slice(text.as_bytes());
    }
}

/// Writes `YYYY-MM-DDTHH:MM:SS` (19 bytes) for `secs` since the epoch into `buf`.
fn put_date_time(buf: &mut [u8], secs: i64) {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    put_digits(buf, 0, y, 4);
    buf[4] = b'-';
    put_digits(buf, 5, m, 2);
    buf[7] = b'-';
    put_digits(buf, 8, d, 2);
    buf[10] = b'T';
    put_digits(buf, 11, sod / 3600, 2);
    buf[13] = b':';
    put_digits(buf, 14, sod / 60 % 60, 2);
    buf[16] = b':';
    put_digits(buf, 17, sod % 60, 2);
}

fn put_digits(buf: &mut [u8], at: usize, v: i64, width: usize) {
    let mut v = v;
    for i in (0..width).rev() {
        buf[at + i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Writes a DATETIME(6) value the way source-mysql sends it, without a zone:
/// `"2025-01-01T00:00:00.000000"`, or `null`.
fn push_datetime(out: &mut Vec<u8>, micros: Option<i64>) {
    let Some(micros) = micros else {
        out.extend_from_slice(b"null");
        return;
    };
    let mut buf = [0u8; 28];
    buf[0] = b'"';
    put_date_time(&mut buf[1..20], micros.div_euclid(1_000_000));
    buf[20] = b'.';
    put_digits(&mut buf, 21, micros.rem_euclid(1_000_000), 6);
    buf[27] = b'"';
    out.extend_from_slice(&buf);
}

/// `_ab_cdc_updated_at` text of a commit time (second resolution): `"2025-01-01T00:00:00Z"`.
fn format_change_time(secs: i64) -> [u8; 22] {
    let mut buf = [0u8; 22];
    buf[0] = b'"';
    put_date_time(&mut buf[1..20], secs);
    buf[20] = b'Z';
    buf[21] = b'"';
    buf
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The configured catalog Airbyte would hand the destination for these two streams, with the
/// JSON schemas source-mysql discovers in CDC mode, as JSON text (properties in table order):
/// INT columns as integer numbers, DECIMAL as numbers, DATETIME as `timestamp_without_timezone`;
/// `_ab_cdc_updated_at`/`_ab_cdc_deleted_at` as plain strings, `_ab_cdc_cursor` as an integer
/// number and `_ab_cdc_log_pos` as a number.
pub fn configured_catalog(
    namespace: &str,
    destination_sync_mode: &str,
    generation_id: i64,
    minimum_generation_id: i64,
    sync_id: i64,
) -> String {
    configured_catalog_keyed(namespace, destination_sync_mode, generation_id, minimum_generation_id, sync_id, false)
}

/// [`configured_catalog`] whose keys (`id`, `customer_id`, `driver_id`) are declared as text with
/// `uuid_keys` (`CHAR(36)` columns: source-mysql declares them strings).
pub fn configured_catalog_keyed(
    namespace: &str,
    destination_sync_mode: &str,
    generation_id: i64,
    minimum_generation_id: i64,
    sync_id: i64,
    uuid_keys: bool,
) -> String {
    const DT: &str = r#"{"type":"string","format":"date-time","airbyte_type":"timestamp_without_timezone"}"#;
    const INT: &str = r#"{"type":"number","airbyte_type":"integer"}"#;
    const NUM: &str = r#"{"type":"number"}"#;
    const STR: &str = r#"{"type":"string"}"#;
    const CDC: [(&str, &str); 5] = [
        ("_ab_cdc_cursor", INT),
        ("_ab_cdc_updated_at", STR),
        ("_ab_cdc_deleted_at", STR),
        ("_ab_cdc_log_file", STR),
        ("_ab_cdc_log_pos", NUM),
    ];
    let key = if uuid_keys { STR } else { INT };
    let users: [(&str, &str); 8] = [
        ("id", key), ("type", STR), ("name", STR), ("email", STR), ("phone", STR), ("city", STR),
        ("created_at", DT), ("updated_at", DT),
    ];
    let rides: [(&str, &str); 22] = [
        ("id", key), ("customer_id", key), ("driver_id", key), ("status", STR), ("requested_at", DT),
        ("accepted_at", DT), ("started_at", DT), ("completed_at", DT), ("cancelled_at", DT),
        ("pickup_lat", NUM), ("pickup_lon", NUM), ("dropoff_lat", NUM), ("dropoff_lon", NUM),
        ("distance_km", NUM), ("duration_s", INT), ("fare_amount", NUM), ("currency", STR),
        ("payment_method", STR), ("customer_rating", INT), ("driver_rating", INT), ("created_at", DT),
        ("updated_at", DT),
    ];
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let stream = |name: &str, fields: &[(&str, &str)]| {
        let props: Vec<String> =
            fields.iter().chain(CDC.iter()).map(|(field, schema)| format!("{}:{schema}", quote(field))).collect();
        format!(
            r#"{{"stream":{{"name":{name},"namespace":{ns},"json_schema":{{"type":"object","properties":{{{props}}}}},"supported_sync_modes":["full_refresh","incremental"],"source_defined_cursor":true,"default_cursor_field":["_ab_cdc_cursor"],"source_defined_primary_key":[["id"]],"is_resumable":true}},"sync_mode":"incremental","cursor_field":["_ab_cdc_cursor"],"destination_sync_mode":{mode},"primary_key":[["id"]],"generation_id":{generation_id},"minimum_generation_id":{minimum_generation_id},"sync_id":{sync_id}}}"#,
            name = quote(name),
            ns = quote(namespace),
            props = props.join(","),
            mode = quote(destination_sync_mode),
        )
    };
    format!(r#"{{"streams":[{},{}]}}"#, stream("users", &users), stream("rides", &rides))
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use serde_json::Value;

    use super::*;

    fn generate(cfg: GeneratorConfig) -> (Vec<u8>, GeneratorSummary) {
        let mut out = Vec::new();
        let summary = Generator::new(cfg, &mut out).run().unwrap();
        (out, summary)
    }

    /// One RECORD line, parsed.
    struct Rec {
        stream: String,
        emitted_at: i64,
        data: Value,
        /// A verbatim replay of an earlier line.
        dup: bool,
    }

    impl Rec {
        fn id(&self) -> i64 {
            self.data["id"].as_i64().unwrap()
        }
        fn key(&self) -> (String, i64) {
            (self.stream.clone(), self.id())
        }
        fn deleted(&self) -> bool {
            !self.data["_ab_cdc_deleted_at"].is_null()
        }
        fn updated_at(&self) -> &str {
            self.data["_ab_cdc_updated_at"].as_str().unwrap()
        }
        fn file(&self) -> u64 {
            self.data["_ab_cdc_log_file"].as_str().unwrap().strip_prefix("mysql-bin.").unwrap().parse().unwrap()
        }
        fn pos(&self) -> u64 {
            self.data["_ab_cdc_log_pos"].as_f64().unwrap() as u64
        }
        fn cursor(&self) -> Option<i64> {
            self.data.get("_ab_cdc_cursor").and_then(Value::as_i64)
        }
        /// The row's columns without the meta fields.
        fn row(&self) -> Vec<(String, Value)> {
            let obj = self.data.as_object().unwrap();
            obj.iter().filter(|(k, _)| !k.starts_with("_ab_cdc")).map(|(k, v)| (k.clone(), v.clone())).collect()
        }
    }

    fn records(out: &[u8]) -> Vec<Rec> {
        let mut seen = HashSet::new();
        let mut recs = Vec::new();
        for line in std::str::from_utf8(out).unwrap().lines() {
            let msg: Value = serde_json::from_str(line).unwrap();
            if msg["type"] != "RECORD" {
                continue;
            }
            let rec = &msg["record"];
            recs.push(Rec {
                stream: rec["stream"].as_str().unwrap().to_owned(),
                emitted_at: rec["emitted_at"].as_i64().unwrap(),
                data: rec["data"].clone(),
                dup: !seen.insert(line.to_owned()),
            });
        }
        recs
    }

    fn record_lines(out: &[u8]) -> Vec<String> {
        String::from_utf8(out.to_vec()).unwrap().lines().filter(|l| l.contains("RECORD")).map(str::to_owned).collect()
    }

    fn medium() -> GeneratorConfig {
        GeneratorConfig { users: 200, rides: 1000, changes: 20_000, state_every: 5_000, ..Default::default() }
    }

    const START_S: i64 = 1_735_689_600;

    #[test]
    fn is_deterministic_and_valid_json() {
        for era in [CursorEra::Kotlin, CursorEra::Java, CursorEra::Upgrade] {
            let cfg = GeneratorConfig {
                users: 50,
                rides: 200,
                changes: 2000,
                state_every: 100,
                cursor_era: era,
                binlog_restart_at: Some(1500),
                ..Default::default()
            };
            let (a, summary) = generate(cfg.clone());
            let (b, _) = generate(cfg);
            assert_eq!(a, b);
            let mut records = 0;
            let mut states = 0;
            for line in a.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let msg: serde_json::Value = serde_json::from_slice(line).unwrap();
                match msg["type"].as_str().unwrap() {
                    "RECORD" => records += 1,
                    "STATE" => states += 1,
                    other => panic!("unexpected {other}"),
                }
            }
            assert_eq!(records, summary.records);
            assert_eq!(states, summary.states);
            assert!(summary.duplicates > 0);
        }
    }

    #[test]
    fn one_emitted_at_per_sync() {
        let recs = records(&generate(medium()).0);
        assert!(recs.iter().all(|r| r.emitted_at == START_S * 1000), "one sync, one emitted_at");
        // An upgrade or a binlog restart starts a later sync; emitted_at changes only there.
        for cfg in [
            GeneratorConfig { cursor_era: CursorEra::Upgrade, ..medium() },
            GeneratorConfig { binlog_restart_at: Some(5_000), ..medium() },
        ] {
            let recs = records(&generate(cfg).0);
            let mut values: Vec<i64> = recs.iter().map(|r| r.emitted_at).collect();
            values.dedup();
            assert_eq!(values.len(), 2, "two syncs");
            assert_eq!(values[0], START_S * 1000);
            assert!(values[1] > values[0] && values[1] % 1000 == 0);
        }
    }

    #[test]
    fn change_times_are_seconds_shared_by_a_transaction() {
        let recs = records(&generate(medium()).0);
        for r in &recs {
            let t = r.updated_at();
            assert_eq!(t.len(), 20, "{t}");
            assert!(t.ends_with('Z') && !t.contains('.'), "{t}");
            assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
            if r.deleted() {
                assert_eq!(r.data["_ab_cdc_deleted_at"], r.data["_ab_cdc_updated_at"]);
            }
        }
        let binlog: Vec<&Rec> = recs.iter().filter(|r| !r.dup && r.cursor().is_some()).collect();
        let (mut accept_start, mut completion, mut user_and_ride) = (0, 0, 0);
        for pair in binlog.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.updated_at() != b.updated_at() || b.pos() <= a.pos() {
                continue;
            }
            let status = |r: &Rec| r.data["status"].as_str().unwrap_or_default().to_owned();
            if a.key() == b.key() && a.stream == "rides" {
                if status(a) == "accepted" && status(b) == "in_progress" {
                    accept_start += 1;
                    assert_eq!(a.data["accepted_at"], b.data["accepted_at"]);
                }
                if status(a) == "completed" && a.data["fare_amount"].is_null() && status(b) == "completed" {
                    completion += 1;
                    assert!(b.data["fare_amount"].is_number());
                }
            }
            if a.stream == "users" && b.stream == "rides" && b.data["customer_id"] == a.data["id"] {
                user_and_ride += 1;
            }
        }
        assert!(accept_start > 10 && completion > 10 && user_and_ride > 10, "{accept_start} {completion} {user_and_ride}");
        // Transactions are many: several per second, and a second holds several transactions.
        let seconds: HashSet<&str> = binlog.iter().map(|r| r.updated_at()).collect();
        assert!(seconds.len() < binlog.len() / 2);
    }

    #[test]
    fn changes_keep_the_snapshots_daily_ride_volume() {
        // Rides per day of request: the snapshot's 90 days, then the days the binlog spans.
        let cfg = GeneratorConfig { users: 500, rides: 9_000, changes: 30_000, state_every: 5_000, ..Default::default() };
        let snapshot_day = chrono::DateTime::from_timestamp(START_S, 0).unwrap().format("%Y-%m-%d").to_string();
        let mut days: HashMap<String, HashSet<i64>> = HashMap::new();
        for r in records(&generate(cfg).0).iter().filter(|r| r.stream == "rides" && !r.deleted()) {
            // (A few rides miss their request time on purpose: the bad-null rate.)
            if let Some(requested) = r.data["requested_at"].as_str() {
                days.entry(requested[..10].to_owned()).or_default().insert(r.id());
            }
        }
        let per_day = |after: bool| -> Vec<usize> {
            let mut v: Vec<(&String, usize)> =
                days.iter().filter(|(d, _)| (d.as_str() >= snapshot_day.as_str()) == after).map(|(d, ids)| (d, ids.len())).collect();
            v.sort();
            v.into_iter().map(|(_, n)| n).collect()
        };
        let before = per_day(false);
        let after = per_day(true);
        // Whole days only: the first binlog day starts at midnight, the last is cut by the end.
        let full = &after[..after.len() - 1];
        assert!(full.len() >= 5, "the changes span days: {after:?}");
        let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
        let (snapshot_mean, binlog_mean) = (mean(&before[1..]), mean(full));
        assert!((0.5..2.0).contains(&(binlog_mean / snapshot_mean)), "{snapshot_mean} vs {binlog_mean}: {after:?}");
        let peak = *full.iter().max().unwrap() as f64;
        assert!(peak < 2.0 * snapshot_mean, "no one-day spike: {peak} vs {snapshot_mean} a day: {after:?}");
    }

    #[test]
    fn uuid_keys_are_the_integer_history_with_every_key_as_its_uuid() {
        let cfg = GeneratorConfig { users: 60, rides: 300, changes: 2_000, state_every: 500, ..Default::default() };
        let plain = records(&generate(cfg.clone()).0);
        let keyed = records(&generate(GeneratorConfig { uuid_keys: true, ..cfg }).0);
        assert_eq!(plain.len(), keyed.len());
        let uuid = regex_like_uuid;
        let mut seen: HashMap<String, (u64, u64)> = HashMap::new();
        for (a, b) in plain.iter().zip(&keyed) {
            assert_eq!(a.stream, b.stream);
            let columns: &[(&str, u64)] = if a.stream == "users" { &[("id", USER_KEYS)] } else { &[("id", RIDE_KEYS), ("customer_id", USER_KEYS), ("driver_id", USER_KEYS)] };
            for (column, salt) in columns {
                match (a.data[*column].as_u64(), b.data[*column].as_str()) {
                    (None, None) => assert!(a.data[*column].is_null() && b.data[*column].is_null()),
                    (Some(id), Some(text)) => {
                        assert!(uuid(text), "{text}");
                        assert_eq!(text, uuid_key(id, *salt));
                        assert_eq!(*seen.entry(text.to_owned()).or_insert((id, *salt)), (id, *salt), "one UUID, one key");
                    }
                    other => panic!("{column}: {other:?}"),
                }
            }
            for (name, value) in a.data.as_object().unwrap() {
                if !["id", "customer_id", "driver_id"].contains(&name.as_str()) {
                    assert_eq!(Some(value), b.data.get(name), "{name}");
                }
            }
        }
        assert_ne!(uuid_key(1, USER_KEYS), uuid_key(1, RIDE_KEYS));
        let catalog: Value = serde_json::from_str(&configured_catalog_keyed("ns", "append", 1, 0, 1, true)).unwrap();
        for stream in catalog["streams"].as_array().unwrap() {
            assert_eq!(stream["stream"]["json_schema"]["properties"]["id"], serde_json::json!({"type": "string"}));
        }
    }

    fn regex_like_uuid(text: &str) -> bool {
        let groups: Vec<&str> = text.split('-').collect();
        groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
            && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            && groups[2].starts_with('4')
            && groups[3].starts_with(['8', '9', 'a', 'b'])
    }

    #[test]
    fn rides_finish_within_hours_whatever_the_length_of_the_run() {
        // A ride's latest row: rides requested a day before the last change have finished.
        let cfg = GeneratorConfig { users: 500, rides: 3_000, changes: 40_000, state_every: 5_000, ..Default::default() };
        let recs = records(&generate(cfg).0);
        let end = recs.iter().map(|r| r.updated_at().to_owned()).max().unwrap();
        let end = chrono::DateTime::parse_from_rfc3339(&end).unwrap().naive_utc();
        let mut latest: HashMap<i64, &Rec> = HashMap::new();
        for r in recs.iter().filter(|r| r.stream == "rides" && r.cursor().is_some() && !r.dup) {
            latest.insert(r.id(), r);
        }
        let old = |r: &&&Rec| {
            r.data["requested_at"].as_str().and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f").ok())
                .is_some_and(|t| end - t > chrono::TimeDelta::days(1))
        };
        let settled: Vec<&Rec> = latest.values().filter(old).copied().filter(|r| !r.deleted()).collect();
        let open = settled.iter().filter(|r| matches!(r.data["status"].as_str(), Some("requested" | "accepted" | "in_progress"))).count();
        assert!(settled.len() > 1000, "{}", settled.len());
        assert!(open * 100 < settled.len(), "{open} of {} rides older than a day are still open", settled.len());
    }

    #[test]
    fn multi_row_statements_share_a_position_and_positions_grow() {
        let recs = records(&generate(medium()).0);
        let binlog: Vec<&Rec> = recs.iter().filter(|r| !r.dup && r.cursor().is_some()).collect();
        let mut by_statement: HashMap<(u64, u64), Vec<&Rec>> = HashMap::new();
        for pair in binlog.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert!((b.file(), b.pos()) >= (a.file(), a.pos()), "positions never go back");
            if (b.file(), b.pos()) == (a.file(), a.pos()) {
                assert_ne!(a.key(), b.key(), "rows of one statement have different keys");
                assert_eq!(a.updated_at(), b.updated_at());
                assert_eq!(a.cursor(), b.cursor());
            }
        }
        for r in &binlog {
            by_statement.entry((r.file(), r.pos())).or_default().push(r);
        }
        let multi: Vec<&Vec<&Rec>> = by_statement.values().filter(|rows| rows.len() > 1).collect();
        let sweeps = multi.iter().filter(|rows| rows.iter().all(|r| r.data["status"] == "cancelled" && !r.deleted())).count();
        let purges = multi.iter().filter(|rows| rows.iter().all(|r| r.deleted())).count();
        assert!(sweeps > 5 && purges > 5, "{sweeps} {purges}");
    }

    #[test]
    fn catalog_declares_source_mysql_types() {
        let text = configured_catalog("ridehail", "append", 1, 0, 1);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["streams"][1]["stream"]["name"], "rides");
        assert!(text.find("\"customer_id\"").unwrap() < text.find("\"status\"").unwrap());
        for stream in [&v["streams"][0], &v["streams"][1]] {
            let props = &stream["stream"]["json_schema"]["properties"];
            assert_eq!(props["_ab_cdc_updated_at"], json!({"type": "string"}));
            assert_eq!(props["_ab_cdc_deleted_at"], json!({"type": "string"}));
            assert_eq!(props["_ab_cdc_cursor"], json!({"type": "number", "airbyte_type": "integer"}));
            assert_eq!(props["_ab_cdc_log_pos"], json!({"type": "number"}));
            assert_eq!(props["id"], json!({"type": "number", "airbyte_type": "integer"}));
            let datetime = json!({"type": "string", "format": "date-time", "airbyte_type": "timestamp_without_timezone"});
            assert_eq!(props["created_at"], datetime);
            assert_eq!(props["updated_at"], datetime);
        }
        let rides = &v["streams"][1]["stream"]["json_schema"]["properties"];
        assert_eq!(rides["requested_at"]["airbyte_type"], "timestamp_without_timezone");
        assert_eq!(rides["fare_amount"], json!({"type": "number"}));
        // Values: DATETIME without a zone.
        let recs = records(&generate(GeneratorConfig { users: 20, rides: 50, changes: 300, ..Default::default() }).0);
        for r in &recs {
            for column in ["requested_at", "accepted_at", "completed_at", "created_at", "updated_at"] {
                if let Some(t) = r.data.get(column).and_then(Value::as_str) {
                    assert_eq!(t.len(), 26, "{t}");
                    assert!(chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.6f").is_ok(), "{t}");
                }
            }
        }
    }

    #[test]
    fn deleted_rides_come_back_under_the_same_id_with_new_values() {
        let recs = records(&generate(medium()).0);
        let mut deleted: HashMap<i64, &Rec> = HashMap::new();
        let (mut back, mut changed, mut other_day) = (0, 0, 0);
        for r in recs.iter().filter(|r| !r.dup && r.stream == "rides") {
            if r.deleted() {
                deleted.insert(r.id(), r);
            } else if let Some(before) = deleted.remove(&r.id()) {
                back += 1;
                assert_ne!(before.updated_at(), r.updated_at());
                if before.data["fare_amount"] != r.data["fare_amount"] || before.data["payment_method"] != r.data["payment_method"] {
                    changed += 1;
                }
                let day = |rec: &Rec| rec.data["created_at"].as_str().unwrap()[..10].to_owned();
                if day(before) != day(r) {
                    other_day += 1;
                }
            }
        }
        assert!(back >= 5 && changed >= 3 && other_day >= 2, "{back} {changed} {other_day}");
        // The rate is a knob.
        let recs = records(&generate(GeneratorConfig { reinsert_rate: 0.0, ..medium() }).0);
        let mut deleted = HashSet::new();
        for r in recs.iter().filter(|r| !r.dup && r.stream == "rides") {
            if r.deleted() {
                deleted.insert(r.id());
            } else {
                assert!(!deleted.contains(&r.id()));
            }
        }
    }

    #[test]
    fn users_change_type_and_deleted_users_stay_deleted() {
        let recs = records(&generate(medium()).0);
        let mut types: HashMap<i64, String> = HashMap::new();
        let mut deleted = HashSet::new();
        let (mut to_driver, mut to_customer, mut deletes) = (0, 0, 0);
        for r in recs.iter().filter(|r| !r.dup && r.stream == "users") {
            assert!(!deleted.contains(&r.id()), "a deleted user never changes again");
            if r.deleted() {
                deletes += 1;
                deleted.insert(r.id());
                continue;
            }
            let Some(ty) = r.data["type"].as_str() else { continue };
            match types.insert(r.id(), ty.to_owned()).as_deref() {
                Some("customer") if ty == "driver" => to_driver += 1,
                Some("driver") if ty == "customer" => to_customer += 1,
                _ => {}
            }
        }
        assert!(to_driver > 3 && to_customer > 0 && deletes > 3, "{to_driver} {to_customer} {deletes}");
        // No new ride names a deleted user as customer.
        let mut deleted = HashSet::new();
        let mut seen_rides = HashSet::new();
        for r in recs.iter().filter(|r| !r.dup) {
            if r.stream == "users" && r.deleted() {
                deleted.insert(r.id());
            } else if r.stream == "rides" && seen_rides.insert(r.id()) {
                assert!(!r.data["customer_id"].as_i64().is_some_and(|c| deleted.contains(&c)));
            }
        }
        let recs = records(&generate(GeneratorConfig { type_change_rate: 0.0, user_delete_rate: 0.0, ..medium() }).0);
        assert!(!recs.iter().any(|r| r.stream == "users" && r.deleted()));
    }

    #[test]
    fn kotlin_era_cursors_and_positions() {
        let recs = records(&generate(medium()).0);
        let mut snapshot = 0;
        for r in recs.iter().filter(|r| !r.dup) {
            match r.cursor() {
                None => {
                    snapshot += 1;
                    assert!(r.data["_ab_cdc_log_pos"].is_u64(), "snapshot: integer position");
                    assert_eq!(r.updated_at(), "2025-01-01T00:00:00Z");
                }
                Some(cursor) => {
                    assert!(r.data["_ab_cdc_log_pos"].is_f64(), "binlog: position as a double");
                    assert_eq!(cursor, ((r.file() << 32) | r.pos()) as i64);
                }
            }
        }
        assert_eq!(snapshot, 1200);
        let text = String::from_utf8(generate(medium()).0).unwrap();
        assert!(text.contains("\"_ab_cdc_log_pos\":") && text.contains(".0,\"_ab_cdc_cursor\":"));
    }

    #[test]
    fn java_era_counts_records_of_the_sync() {
        let (out, _) = generate(GeneratorConfig { cursor_era: CursorEra::Java, ..medium() });
        let recs = records(&out);
        let fresh: Vec<&Rec> = recs.iter().filter(|r| !r.dup).collect();
        for (i, r) in fresh.iter().enumerate() {
            assert_eq!(r.cursor(), Some(START_S * 100_000_000 + i as i64 + 1), "snapshot rows first, counter from 1");
            assert!(r.data["_ab_cdc_log_pos"].is_u64());
        }
        // Snapshot rows carry the offset of the load's start; binlog rows send DECIMAL as text.
        assert!(fresh[..1200].iter().all(|r| r.pos() == FIRST_EVENT_POS && !r.data["pickup_lat"].is_string()));
        assert!(fresh[1200..].iter().filter(|r| r.stream == "rides").all(|r| r.data["pickup_lat"].is_string()));
        assert!(fresh[1200..].iter().all(|r| r.pos() > FIRST_EVENT_POS));
    }

    #[test]
    fn upgrade_era_switches_from_java_to_kotlin_once() {
        let cfg = GeneratorConfig { cursor_era: CursorEra::Upgrade, ..medium() };
        let recs = records(&generate(cfg).0);
        let fresh: Vec<&Rec> = recs.iter().filter(|r| !r.dup).collect();
        let is_java = |r: &&Rec| r.cursor().is_some_and(|c| c >= 10_000_000_000_000_000);
        let switch = fresh.iter().position(|r| !is_java(r)).unwrap();
        assert!(fresh[..switch].iter().all(is_java));
        assert!(fresh[switch..].iter().all(|r| r.cursor() == Some(((r.file() << 32) | r.pos()) as i64)));
        assert!(fresh[switch].emitted_at > fresh[0].emitted_at);
        assert!(fresh[switch..].iter().all(|r| r.emitted_at == fresh[switch].emitted_at));
        // About half of the binlog changes on each side.
        let (java_binlog, kotlin) = (switch - 1200, fresh.len() - switch);
        assert!(java_binlog * 10 > kotlin * 8 && kotlin * 10 > java_binlog * 8, "{java_binlog} {kotlin}");
        // The switch point is a knob.
        let recs = records(&generate(GeneratorConfig { cursor_era: CursorEra::Upgrade, upgrade_at: Some(100), ..medium() }).0);
        let switch = recs.iter().filter(|r| !r.dup).position(|r| !is_java(&r)).unwrap();
        assert!(switch < 1200 + 200);
        assert_eq!("upgrade".parse::<CursorEra>(), Ok(CursorEra::Upgrade));
        assert!("rust".parse::<CursorEra>().is_err());
    }

    #[test]
    fn binlog_restart_resnapshots_every_current_row() {
        let cfg = GeneratorConfig { binlog_restart_at: Some(8_000), ..medium() };
        let recs = records(&generate(cfg).0);
        let fresh: Vec<&Rec> = recs.iter().filter(|r| !r.dup).collect();
        let restart = fresh.iter().position(|r| r.file() == 1).unwrap();
        assert!(fresh[restart..].iter().all(|r| r.file() == 1), "numbering restarts once");
        // What the lake holds before the restart: last image per key, deletes removed.
        let mut current: HashMap<(String, i64), Vec<(String, Value)>> = HashMap::new();
        for r in &fresh[..restart] {
            if r.deleted() {
                current.remove(&r.key());
            } else {
                current.insert(r.key(), r.row());
            }
        }
        let snapshot: Vec<&&Rec> = fresh[restart..].iter().take_while(|r| r.cursor().is_none()).collect();
        assert!(snapshot.iter().all(|r| r.pos() == FIRST_EVENT_POS && !r.deleted()));
        assert!(snapshot.iter().all(|r| r.emitted_at > START_S * 1000 && r.updated_at() > "2025-01-01T00:00:00Z"));
        let ids: Vec<(String, i64)> = snapshot.iter().map(|r| r.key()).collect();
        let mut sorted = ids.clone();
        sorted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        assert_eq!(ids, sorted, "users then rides, in key order");
        let mut extra = 0;
        for r in &snapshot {
            match current.remove(&r.key()) {
                Some(row) => assert_eq!(row, r.row(), "{:?}", r.key()),
                None => {
                    // Only a late user whose own insert had not arrived yet.
                    assert_eq!(r.stream, "users");
                    extra += 1;
                }
            }
        }
        assert!(current.is_empty(), "every current row is in the re-snapshot: {} missing", current.len());
        assert!(extra < 20);
        // Then binlog changes in the new file, with smaller cursors than before the restart.
        let after = &fresh[restart + snapshot.len()..];
        assert!(after.len() > 1000);
        let before_max = fresh[..restart].iter().filter_map(|r| r.cursor()).max().unwrap();
        assert!(after.iter().all(|r| r.cursor().is_some_and(|c| c < before_max)));
    }

    #[test]
    fn binlog_files_rotate_at_max_binlog_size() {
        let mut generator = Generator::new(medium(), Vec::new());
        generator.log_pos = MAX_BINLOG_SIZE - 10;
        generator.begin_txn();
        assert_eq!(generator.statement().log_file, FIRST_LOG_FILE, "a transaction never spans two files");
        generator.log_pos = MAX_BINLOG_SIZE + 10;
        generator.begin_txn();
        let cdc = generator.statement();
        assert_eq!(cdc.log_file, FIRST_LOG_FILE + 1);
        assert!(cdc.log_pos < 2_000);
    }

    #[test]
    fn skip_snapshot_continues_with_the_same_changes() {
        for era in [CursorEra::Kotlin, CursorEra::Java] {
            let cfg = GeneratorConfig { users: 40, rides: 200, changes: 1500, state_every: 100_000, cursor_era: era, ..Default::default() };
            let (full, _) = generate(cfg.clone());
            let (changes, summary) = generate(GeneratorConfig { skip_snapshot_output: true, ..cfg });
            let (full, got) = (record_lines(&full), record_lines(&changes));
            assert!(full.ends_with(&got));
            assert_eq!(summary.records as usize, got.len());
            // The line before is the snapshot's (at the snapshot offset), the first written is not.
            let pos = |line: &str| records(line.as_bytes())[0].pos();
            assert_eq!(pos(&full[full.len() - got.len() - 1]), FIRST_EVENT_POS);
            assert!(pos(&got[0]) > FIRST_EVENT_POS);
        }
    }

    #[test]
    fn skip_records_continues_where_an_earlier_run_stopped() {
        for (era, restart) in [(CursorEra::Kotlin, None), (CursorEra::Java, Some(1000)), (CursorEra::Upgrade, Some(1500))] {
            let sizes = GeneratorConfig {
                users: 40,
                rides: 200,
                changes: 5000,
                state_every: 100_000,
                cursor_era: era,
                binlog_restart_at: restart,
                ..Default::default()
            };
            let (all, _) = generate(GeneratorConfig { max_records: Some(4000), ..sizes.clone() });
            for cut in [1200, 1801, 2500, 3333] {
                let (first, _) = generate(GeneratorConfig { max_records: Some(cut), ..sizes.clone() });
                let (rest, summary) = generate(GeneratorConfig { max_records: Some(4000), skip_records: cut, ..sizes.clone() });
                let (all, first, rest) = (record_lines(&all), record_lines(&first), record_lines(&rest));
                assert_eq!(summary.records, 4000 - cut);
                assert_eq!([first, rest].concat(), all, "{era:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn stops_at_max_records() {
        for max in [777, 1201, 5003, 9999] {
            for era in [CursorEra::Kotlin, CursorEra::Upgrade] {
                let cfg = GeneratorConfig { max_records: Some(max), cursor_era: era, binlog_restart_at: Some(2000), ..Default::default() };
                let (_, summary) = generate(cfg);
                assert_eq!(summary.records, max);
            }
        }
    }

    #[test]
    fn formats_values_like_source_mysql() {
        let mut out = Vec::new();
        push_datetime(&mut out, Some(1_735_689_600_000_000 + 1_500_000));
        assert_eq!(String::from_utf8(out).unwrap(), "\"2025-01-01T00:00:01.500000\"");
        assert_eq!(&format_change_time(1_735_732_800 + 59), b"\"2025-01-01T12:00:59Z\"");
        let mut out = Vec::new();
        push_fixed(&mut out, -3.05, 2);
        push_decimal(&mut out, Some(12.5), 2, true);
        push_padded(&mut out, 3, 6);
        assert_eq!(String::from_utf8(out).unwrap(), "-3.05\"12.50\"000003");
    }

    #[test]
    fn contains_deletes_late_rides_and_bad_nulls() {
        let cfg = GeneratorConfig { bad_null_rate: 0.01, ..medium() };
        let (out, _) = generate(cfg);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"_ab_cdc_deleted_at\":\"20"));
        assert!(text.contains("\"requested_at\":null") || text.contains("\"customer_id\":null"));
        assert!(text.contains("\"type\":null"));
        // A ride whose customer's insert comes later.
        let mut seen_users = HashSet::new();
        let mut late = 0;
        for rec in records(text.as_bytes()) {
            match rec.stream.as_str() {
                "users" => {
                    seen_users.insert(rec.id());
                }
                _ => {
                    if let Some(c) = rec.data["customer_id"].as_i64() {
                        if !seen_users.contains(&c) {
                            late += 1;
                        }
                    }
                }
            }
        }
        assert!(late > 0);
    }
}
