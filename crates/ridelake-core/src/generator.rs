//! A seeded generator of ride-hailing CDC, in the exact message shape Airbyte's MySQL source
//! emits in CDC mode (one JSON `AirbyteMessage` per line).
//!
//! What it produces, in order:
//! 1. an initial snapshot: every `users` row, then every `rides` row, with
//!    `_ab_cdc_updated_at` = snapshot time, `_ab_cdc_log_file`/`_ab_cdc_log_pos` = the binlog
//!    offset captured before the snapshot, and no `_ab_cdc_cursor` (source-mysql sets none);
//! 2. binlog changes: rides requested, accepted, started, completed or cancelled (full
//!    after-images, `driver_id` null until accepted), user inserts and updates, deletes of rides
//!    and users (`_ab_cdc_deleted_at` set, before-image columns), each with an increasing
//!    `_ab_cdc_log_pos` and `_ab_cdc_cursor = (file suffix << 32) | pos`;
//! 3. what real syncs contain too: at-least-once duplicates (a recent line replayed verbatim),
//!    rides that arrive before the user they reference, and rows missing a required value;
//! 4. a `GLOBAL` STATE (opaque `mysql_cdc_offset`, `sourceStats.recordCount`) every
//!    `state_every` records and at the end.
//!
//! The same [`GeneratorConfig`] always yields the same bytes.

use std::collections::VecDeque;
use std::io::Write;

use serde_json::json;

use crate::error::Result;

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
    /// Binlog change events after the snapshot.
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
    /// Share of change events that delete a ride (users are deleted ten times less often).
    pub delete_rate: f64,
    /// Snapshot time, epoch seconds (default 2025-01-01T00:00:00Z).
    pub start_epoch_s: i64,
    /// Simulate the snapshot but write only the binlog changes (continues a lake that already
    /// holds this seed's snapshot).
    pub skip_snapshot_output: bool,
    /// Simulate but do not write the first N records (duplicates included) of this sequence: a
    /// run with the same seed, sizes and `skip_records` = the records an earlier run wrote
    /// continues exactly where that run stopped. Counts towards `max_records`.
    pub skip_records: u64,
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
            start_epoch_s: 1_735_689_600,
            skip_snapshot_output: false,
            skip_records: 0,
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
const LOG_FILE_SUFFIX: u64 = 3;
const LOG_FILE: &str = "mysql-bin.000003";

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

#[derive(Clone)]
struct User {
    id: u64,
    driver: bool,
    city: usize,
    created_us: i64,
    updated_us: i64,
    version: u32,
    type_missing: bool,
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

#[derive(Clone)]
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

/// CDC position and time of the record being written.
#[derive(Clone, Copy)]
struct Cdc {
    updated_us: i64,
    deleted_us: Option<i64>,
    log_pos: u64,
    cursor: Option<u64>,
    emitted_ms: i64,
}

/// Streams generated messages into a writer.
pub struct Generator<W: Write> {
    cfg: GeneratorConfig,
    out: W,
    rng: Rng,
    line: Vec<u8>,
    recent: VecDeque<Vec<u8>>,
    users: Vec<User>,
    drivers: Vec<u64>,
    active: VecDeque<Ride>,
    finished: VecDeque<Ride>,
    delayed_users: Vec<(u64, u32)>,
    next_ride_id: u64,
    clock_us: i64,
    log_pos: u64,
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
        Generator {
            cfg,
            out,
            rng,
            line: Vec::with_capacity(1024),
            recent: VecDeque::with_capacity(64),
            users: Vec::new(),
            drivers: Vec::new(),
            active: VecDeque::new(),
            finished: VecDeque::new(),
            delayed_users: Vec::new(),
            next_ride_id: 1,
            clock_us,
            log_pos: 4,
            since_state: 0,
            summary: GeneratorSummary::default(),
            muted: false,
            skipped: 0,
        }
    }

    fn done(&self) -> bool {
        self.cfg.max_records.is_some_and(|max| self.summary.records + self.skipped >= max)
    }

    /// Writes the whole sequence and returns what was written.
    pub fn run(mut self) -> Result<GeneratorSummary> {
        let snapshot_us = self.clock_us;
        let snapshot = Cdc {
            updated_us: snapshot_us,
            deleted_us: None,
            log_pos: self.log_pos,
            cursor: None,
            emitted_ms: snapshot_us / 1000,
        };
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
        let span_us: i64 = 90 * 86_400 * 1_000_000;
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
        // Binlog changes.
        for _ in 0..self.cfg.changes {
            if self.done() {
                break;
            }
            self.change()?;
        }
        // Users whose insert was still delayed arrive now.
        while let Some((id, _)) = self.delayed_users.pop() {
            if self.done() {
                break;
            }
            let cdc = self.tick();
            let idx = (id - 1) as usize;
            self.emit_user(idx, cdc)?;
        }
        self.emit_state()?;
        self.out.flush()?;
        Ok(self.summary)
    }

    fn tick(&mut self) -> Cdc {
        self.clock_us += 1_000 + self.rng.below(400_000) as i64;
        self.log_pos += 200 + self.rng.below(800);
        Cdc {
            updated_us: self.clock_us,
            deleted_us: None,
            log_pos: self.log_pos,
            cursor: Some((LOG_FILE_SUFFIX << 32) | self.log_pos),
            emitted_ms: self.clock_us / 1000 + 500,
        }
    }

    fn change(&mut self) -> Result<()> {
        // Users whose ride went first arrive a few events later.
        if let Some(pos) = self.delayed_users.iter().position(|(_, wait)| *wait == 0) {
            let (id, _) = self.delayed_users.swap_remove(pos);
            let cdc = self.tick();
            return self.emit_user((id - 1) as usize, cdc);
        }
        for (_, wait) in self.delayed_users.iter_mut() {
            *wait = wait.saturating_sub(1);
        }
        let cdc = self.tick();
        let roll = self.rng.unit();
        let delete = self.cfg.delete_rate;
        if roll < delete && !self.finished.is_empty() {
            let idx = self.rng.below(self.finished.len() as u64) as usize;
            if let Some(ride) = self.finished.remove(idx) {
                return self.emit_ride(&ride, Cdc { deleted_us: Some(cdc.updated_us), ..cdc });
            }
        }
        if roll < delete * 1.1 && self.users.len() > 10 {
            let idx = self.rng.below(self.users.len() as u64) as usize;
            return self.emit_user(idx, Cdc { deleted_us: Some(cdc.updated_us), ..cdc });
        }
        if roll < 0.04 {
            return self.new_user_event(cdc);
        }
        if roll < 0.10 && !self.users.is_empty() {
            let idx = self.rng.below(self.users.len() as u64) as usize;
            let user = &mut self.users[idx];
            user.version += 1;
            user.updated_us = cdc.updated_us;
            if self.rng.chance(0.3) {
                user.city = self.rng.below(CITIES.len() as u64) as usize;
            }
            return self.emit_user(idx, cdc);
        }
        if roll < 0.40 || self.active.is_empty() {
            let ride = self.new_ride(cdc.updated_us, None);
            self.emit_ride(&ride, cdc)?;
            self.active.push_back(ride);
            return Ok(());
        }
        // The longest-waiting rides move on first, as dispatch does.
        let idx = self.rng.below(self.active.len().min(16) as u64) as usize;
        let Some(mut ride) = self.active.remove(idx) else { return Ok(()) };
        self.advance(&mut ride, cdc.updated_us, false);
        self.emit_ride(&ride, cdc)?;
        self.retire_or_keep(ride);
        Ok(())
    }

    fn new_user_event(&mut self, cdc: Cdc) -> Result<()> {
        let id = self.users.len() as u64 + 1;
        let driver = self.rng.chance(0.2);
        self.users.push(User {
            id,
            driver,
            city: self.rng.below(CITIES.len() as u64) as usize,
            created_us: cdc.updated_us,
            updated_us: cdc.updated_us,
            version: 0,
            type_missing: self.rng.chance(self.cfg.bad_null_rate),
        });
        if driver {
            self.drivers.push(id);
        }
        if !driver && self.rng.chance(self.cfg.late_user_rate) {
            // The app wrote the user first, but the ride reaches us first.
            let ride = self.new_ride(cdc.updated_us, Some(id));
            self.emit_ride(&ride, cdc)?;
            self.active.push_back(ride);
            let wait = 1 + self.rng.below(20) as u32;
            self.delayed_users.push((id, wait));
            return Ok(());
        }
        self.emit_user((id - 1) as usize, cdc)
    }

    fn retire_or_keep(&mut self, ride: Ride) {
        if matches!(ride.status, Status::Completed | Status::Cancelled) {
            if self.finished.len() >= 4096 {
                self.finished.pop_front();
            }
            self.finished.push_back(ride);
        } else {
            self.active.push_back(ride);
        }
    }

    fn new_ride(&mut self, requested_us: i64, customer: Option<u64>) -> Ride {
        let customer_id = customer.unwrap_or_else(|| loop {
            let idx = self.rng.below(self.users.len() as u64) as usize;
            if !self.users[idx].driver || self.drivers.len() == self.users.len() {
                break self.users[idx].id;
            }
        });
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

    fn begin_record(&mut self, stream: &str, emitted_ms: i64) {
        self.line.clear();
        self.line.extend_from_slice(b"{\"type\":\"RECORD\",\"record\":{\"namespace\":");
        push_json_str(&mut self.line, &self.cfg.namespace);
        self.line.extend_from_slice(b",\"stream\":\"");
        self.line.extend_from_slice(stream.as_bytes());
        self.line.extend_from_slice(b"\",\"emitted_at\":");
        push_int(&mut self.line, emitted_ms);
        self.line.extend_from_slice(b",\"data\":{");
    }

    fn end_record(&mut self, cdc: Cdc) -> Result<()> {
        let l = &mut self.line;
        l.extend_from_slice(b",\"_ab_cdc_updated_at\":");
        push_ts(l, Some(cdc.updated_us));
        l.extend_from_slice(b",\"_ab_cdc_deleted_at\":");
        push_ts(l, cdc.deleted_us);
        l.extend_from_slice(b",\"_ab_cdc_log_file\":\"");
        l.extend_from_slice(LOG_FILE.as_bytes());
        l.extend_from_slice(b"\",\"_ab_cdc_log_pos\":");
        push_int(l, cdc.log_pos as i64);
        if let Some(cursor) = cdc.cursor {
            l.extend_from_slice(b",\"_ab_cdc_cursor\":");
            push_int(l, cursor as i64);
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
        if self.recent.len() == 64 {
            self.recent.pop_front();
        }
        self.recent.push_back(self.line.clone());
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
        let Some(user) = self.users.get(idx).cloned() else { return Ok(()) };
        self.begin_record("users", cdc.emitted_ms);
        let l = &mut self.line;
        let first = FIRST[(user.id as usize * 7 + user.version as usize) % FIRST.len()];
        let last = LAST[(user.id as usize * 13) % LAST.len()];
        l.extend_from_slice(b"\"id\":");
        push_int(l, user.id as i64);
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
        push_ts(l, Some(user.created_us));
        l.extend_from_slice(b",\"updated_at\":");
        push_ts(l, Some(user.updated_us));
        self.end_record(cdc)
    }

    fn emit_ride(&mut self, ride: &Ride, cdc: Cdc) -> Result<()> {
        self.begin_record("rides", cdc.emitted_ms);
        let l = &mut self.line;
        l.extend_from_slice(b"\"id\":");
        push_int(l, ride.id as i64);
        l.extend_from_slice(b",\"customer_id\":");
        push_opt_int(l, ride.customer_id.map(|v| v as i64));
        l.extend_from_slice(b",\"driver_id\":");
        push_opt_int(l, ride.driver_id.map(|v| v as i64));
        l.extend_from_slice(b",\"status\":\"");
        l.extend_from_slice(ride.status.as_str().as_bytes());
        l.extend_from_slice(b"\",\"requested_at\":");
        push_ts(l, ride.requested_us);
        l.extend_from_slice(b",\"accepted_at\":");
        push_ts(l, ride.accepted_us);
        l.extend_from_slice(b",\"started_at\":");
        push_ts(l, ride.started_us);
        l.extend_from_slice(b",\"completed_at\":");
        push_ts(l, ride.completed_us);
        l.extend_from_slice(b",\"cancelled_at\":");
        push_ts(l, ride.cancelled_us);
        l.extend_from_slice(b",\"pickup_lat\":");
        push_fixed(l, ride.pickup.0, 6);
        l.extend_from_slice(b",\"pickup_lon\":");
        push_fixed(l, ride.pickup.1, 6);
        l.extend_from_slice(b",\"dropoff_lat\":");
        push_fixed(l, ride.dropoff.0, 6);
        l.extend_from_slice(b",\"dropoff_lon\":");
        push_fixed(l, ride.dropoff.1, 6);
        l.extend_from_slice(b",\"distance_km\":");
        push_fixed(l, ride.distance_km, 3);
        l.extend_from_slice(b",\"duration_s\":");
        push_opt_int(l, ride.duration_s);
        l.extend_from_slice(b",\"fare_amount\":");
        match ride.fare {
            Some(f) => push_fixed(l, f, 2),
            None => l.extend_from_slice(b"null"),
        }
        l.extend_from_slice(b",\"currency\":\"");
        l.extend_from_slice(CITIES[ride.city].3.as_bytes());
        l.extend_from_slice(b"\",\"payment_method\":\"");
        l.extend_from_slice(PAYMENT[ride.payment].as_bytes());
        l.extend_from_slice(b"\",\"customer_rating\":");
        push_opt_int(l, ride.customer_rating);
        l.extend_from_slice(b",\"driver_rating\":");
        push_opt_int(l, ride.driver_rating);
        l.extend_from_slice(b",\"created_at\":");
        push_ts(l, Some(ride.created_us));
        l.extend_from_slice(b",\"updated_at\":");
        push_ts(l, Some(ride.updated_us));
        self.end_record(cdc)
    }

    fn emit_state(&mut self) -> Result<()> {
        if self.muted {
            return Ok(());
        }
        let offset = format!(
            "{{\"ts_sec\":{},\"file\":\"{LOG_FILE}\",\"pos\":{},\"row\":1,\"server_id\":1,\"event\":2}}",
            self.clock_us / 1_000_000,
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

fn push_int(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn push_opt_int(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => push_int(out, v),
        None => out.extend_from_slice(b"null"),
    }
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
    let frac = itoa::Buffer::new().format(abs % scale as u64).as_bytes().to_vec();
    out.extend(std::iter::repeat_n(b'0', decimals as usize - frac.len()));
    out.extend_from_slice(&frac);
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

/// Writes a UTC timestamp the way source-mysql formats TIMESTAMP columns:
/// `"2025-01-01T00:00:00.000000Z"`, or `null`.
fn push_ts(out: &mut Vec<u8>, micros: Option<i64>) {
    let Some(micros) = micros else {
        out.extend_from_slice(b"null");
        return;
    };
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut buf = [0u8; 29];
    let put = |buf: &mut [u8], at: usize, v: i64, width: usize| {
        let mut v = v;
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    buf[0] = b'"';
    put(&mut buf, 1, y, 4);
    buf[5] = b'-';
    put(&mut buf, 6, m, 2);
    buf[8] = b'-';
    put(&mut buf, 9, d, 2);
    buf[11] = b'T';
    put(&mut buf, 12, sod / 3600, 2);
    buf[14] = b':';
    put(&mut buf, 15, sod / 60 % 60, 2);
    buf[17] = b':';
    put(&mut buf, 18, sod % 60, 2);
    buf[20] = b'.';
    put(&mut buf, 21, frac, 6);
    buf[27] = b'Z';
    buf[28] = b'"';
    out.extend_from_slice(&buf);
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
/// JSON schemas source-mysql discovers in CDC mode, as JSON text (properties in table order).
pub fn configured_catalog(
    namespace: &str,
    destination_sync_mode: &str,
    generation_id: i64,
    minimum_generation_id: i64,
    sync_id: i64,
) -> String {
    const TS: &str = r#"{"type":["null","string"],"format":"date-time","airbyte_type":"timestamp_with_timezone"}"#;
    const INT: &str = r#"{"type":["null","integer"]}"#;
    const NUM: &str = r#"{"type":["null","number"]}"#;
    const STR: &str = r#"{"type":["null","string"]}"#;
    const CDC: [(&str, &str); 5] = [
        ("_ab_cdc_cursor", INT),
        ("_ab_cdc_updated_at", TS),
        ("_ab_cdc_deleted_at", TS),
        ("_ab_cdc_log_file", STR),
        ("_ab_cdc_log_pos", INT),
    ];
    let users: [(&str, &str); 8] = [
        ("id", INT), ("type", STR), ("name", STR), ("email", STR), ("phone", STR), ("city", STR),
        ("created_at", TS), ("updated_at", TS),
    ];
    let rides: [(&str, &str); 22] = [
        ("id", INT), ("customer_id", INT), ("driver_id", INT), ("status", STR), ("requested_at", TS),
        ("accepted_at", TS), ("started_at", TS), ("completed_at", TS), ("cancelled_at", TS),
        ("pickup_lat", NUM), ("pickup_lon", NUM), ("dropoff_lat", NUM), ("dropoff_lon", NUM),
        ("distance_km", NUM), ("duration_s", INT), ("fare_amount", NUM), ("currency", STR),
        ("payment_method", STR), ("customer_rating", INT), ("driver_rating", INT), ("created_at", TS),
        ("updated_at", TS),
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
    use super::*;

    fn generate(cfg: GeneratorConfig) -> (Vec<u8>, GeneratorSummary) {
        let mut out = Vec::new();
        let summary = Generator::new(cfg, &mut out).run().unwrap();
        (out, summary)
    }

    #[test]
    fn is_deterministic_and_valid_json() {
        let cfg = GeneratorConfig { users: 50, rides: 200, changes: 2000, state_every: 100, ..Default::default() };
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

    #[test]
    fn catalog_is_valid_json_in_table_order() {
        let text = configured_catalog("ridehail", "append", 1, 0, 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["streams"][1]["stream"]["name"], "rides");
        assert!(text.find("\"customer_id\"").unwrap() < text.find("\"status\"").unwrap());
    }

    #[test]
    fn skip_snapshot_continues_with_the_same_changes() {
        let cfg = GeneratorConfig { users: 40, rides: 200, changes: 1500, state_every: 100_000, ..Default::default() };
        let (full, _) = generate(cfg.clone());
        let (changes, summary) = generate(GeneratorConfig { skip_snapshot_output: true, ..cfg });
        let full = String::from_utf8(full).unwrap();
        let changes = String::from_utf8(changes).unwrap();
        let first_change = full.lines().position(|l| l.contains("_ab_cdc_cursor")).unwrap();
        let expected: Vec<&str> = full.lines().skip(first_change).filter(|l| l.contains("RECORD")).collect();
        let got: Vec<&str> = changes.lines().filter(|l| l.contains("RECORD")).collect();
        assert_eq!(got, expected);
        assert_eq!(summary.records as usize, got.len());
    }

    #[test]
    fn skip_records_continues_where_an_earlier_run_stopped() {
        let sizes = GeneratorConfig { users: 40, rides: 200, changes: u64::MAX, state_every: 100_000, ..Default::default() };
        let records = |out: &[u8]| -> Vec<String> {
            String::from_utf8(out.to_vec()).unwrap().lines().filter(|l| l.contains("RECORD")).map(str::to_owned).collect()
        };
        let (all, _) = generate(GeneratorConfig { max_records: Some(3000), ..sizes.clone() });
        let (first, _) = generate(GeneratorConfig { max_records: Some(1200), ..sizes.clone() });
        let (rest, summary) = generate(GeneratorConfig { max_records: Some(3000), skip_records: 1200, ..sizes });
        let (all, first, rest) = (records(&all), records(&first), records(&rest));
        assert_eq!(summary.records, 1800);
        assert_eq!([first, rest].concat(), all);
    }

    #[test]
    fn stops_at_max_records() {
        let cfg = GeneratorConfig { max_records: Some(777), ..Default::default() };
        let (_, summary) = generate(cfg);
        assert_eq!(summary.records, 777);
    }

    #[test]
    fn formats_timestamps_like_source_mysql() {
        let mut out = Vec::new();
        push_ts(&mut out, Some(1_735_689_600_000_000 + 1_500_000));
        assert_eq!(String::from_utf8(out).unwrap(), "\"2025-01-01T00:00:01.500000Z\"");
        let mut out = Vec::new();
        push_fixed(&mut out, -3.05, 2);
        assert_eq!(String::from_utf8(out).unwrap(), "-3.05");
    }

    #[test]
    fn contains_deletes_late_rides_and_bad_nulls() {
        let cfg = GeneratorConfig { users: 200, rides: 1000, changes: 20_000, bad_null_rate: 0.01, ..Default::default() };
        let (out, _) = generate(cfg);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"_ab_cdc_deleted_at\":\"20"));
        assert!(text.contains("\"requested_at\":null") || text.contains("\"customer_id\":null"));
        assert!(text.contains("\"type\":null"));
        // A ride whose customer's insert comes later.
        let mut seen_users = std::collections::HashSet::new();
        let mut late = 0;
        for line in text.lines() {
            let msg: serde_json::Value = serde_json::from_str(line).unwrap();
            let Some(rec) = msg.get("record") else { continue };
            match rec["stream"].as_str().unwrap() {
                "users" => {
                    seen_users.insert(rec["data"]["id"].as_i64().unwrap());
                }
                _ => {
                    if let Some(c) = rec["data"]["customer_id"].as_i64() {
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
