//! The total order of changes: which of two changes of one key is the later one.
//!
//! Everything else asks this module; nothing else compares change columns. Two changes of one key
//! compare lexicographically by these columns (each an `Int64`, null sorting first):
//!
//! 1. [`GENERATION`]: the bronze row's `_airbyte_generation_id` (null counts as 0). A refresh starts
//!    a new generation, whose rows supersede everything of the older ones.
//! 2. [`EPOCH`]: the source position's era, counted along bronze in ingest order ([`EpochState`]).
//!    source-mysql 3.0–3.7 (Java) gives every row a counter cursor (sync-start seconds × 10^8 + a
//!    counter, ~1.7×10^17); 2.x and 3.9+ (Kotlin) give binlog positions (`(file << 32) | pos`,
//!    below 10^16). The raw numbers of two eras do not compare, and a binlog numbering restart
//!    (restore, failover, `RESET MASTER`) makes positions go backwards. So a new epoch starts
//!    where the scale of the positions changes (an upgrade), or where a binlog file number goes
//!    below the largest one seen in the epoch *with a change time later than any seen before*
//!    (a restart or a failover: its re-snapshot, or its first new change, opens the new epoch).
//!    A re-sent older change (an at-least-once duplicate, a retried sync replaying from its last
//!    state, both of which can reach back across a binlog rotation) carries its old change time:
//!    it stays in the epoch and loses by position, as it must.
//! 3. [`POSITION`]: the position within the epoch: `_ab_cdc_cursor`, or `(binlog file number <<
//!    32) | _ab_cdc_log_pos` where the cursor is null (Kotlin snapshot rows carry the offset their
//!    sync's binlog phase reached; 2.x rows have no cursor at all).
//! 4. [`UPDATED`]: `_ab_cdc_updated_at` (the transaction's commit time) as microseconds since the
//!    epoch, parsed whether bronze stored it as a timestamp or as text (source-mysql declares it a
//!    plain string).
//! 5. [`INGEST_VERSION`], [`INGEST_ROW`]: the order in which bronze received the row: its commit
//!    version, then its place among the rows that commit added (files in the order of their `add`
//!    actions, rows in file order). Bronze is append-only and the destination writes records in
//!    the order the source emitted them, so this is the source's emission order: the last
//!    tie-breaker, total, and never dependent on file names. (`emitted_at` is one value for a
//!    whole sync and orders nothing.)
//!
//! The epoch of a row depends on the rows ingested before it, so the builder keeps the
//! [`EpochState`] reached at its bronze marker with the marker (in the same commit) and goes on
//! from there: an incremental run assigns exactly the epochs a rebuild would.
//!
//! Known limit: after a failover to a server whose clock is behind, its first changes (those not
//! later than the newest change time seen) stay in the old epoch, where their lower positions lose
//! to older changes of the same keys until a later change arrives. The result is still a function
//! of bronze (incremental = rebuild).

use chrono::{DateTime, NaiveDateTime};
use polars::prelude::*;

/// Bronze generation of the change.
pub const GENERATION: &str = "_cdc_generation";
/// Epoch of the change's source position (see [`EpochState`]).
pub const EPOCH: &str = "_cdc_epoch";
/// Source position within the epoch.
pub const POSITION: &str = "_cdc_position";
/// Change time (microseconds since the epoch, UTC).
pub const UPDATED: &str = "_cdc_updated_at";
/// Bronze commit version that added the change.
pub const INGEST_VERSION: &str = "_cdc_bronze_version";
/// Place of the change among the rows of its bronze commit.
pub const INGEST_ROW: &str = "_cdc_bronze_row";

/// The order columns, most significant first.
pub const ORDER: [&str; 6] = [GENERATION, EPOCH, POSITION, UPDATED, INGEST_VERSION, INGEST_ROW];

/// Cursors at or above this are source-mysql 3.0–3.7 counters; binlog positions stay far below
/// (`file << 32` reaches it only past binlog file number 2,328,306).
pub const COUNTER_CURSOR_MIN: i64 = 10_000_000_000_000_000;

/// The scale of a source position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Scale {
    /// source-mysql 3.0–3.7: sync-start seconds × 10^8 + counter.
    Counter,
    /// source-mysql 2.x and 3.9+: `(binlog file number << 32) | position`.
    Binlog,
}

impl Scale {
    fn code(self) -> i64 {
        match self {
            Scale::Counter => 1,
            Scale::Binlog => 2,
        }
    }

    fn from_code(code: i64) -> Option<Scale> {
        match code {
            1 => Some(Scale::Counter),
            2 => Some(Scale::Binlog),
            _ => None,
        }
    }
}

/// The number of a binlog file name (`mysql-bin.000042` → 42).
pub fn binlog_file_number(file: &str) -> Option<i64> {
    file.rsplit('.').next().filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).and_then(|s| s.parse::<i64>().ok())
}

/// A change's source position and its scale, from the CDC meta columns; `None` when the row has
/// neither a cursor nor a readable binlog file and position.
pub fn source_position(cursor: Option<i64>, log_file: Option<&str>, log_pos: Option<i64>) -> Option<(Scale, i64)> {
    match cursor {
        Some(c) if c >= COUNTER_CURSOR_MIN => Some((Scale::Counter, c)),
        Some(c) => Some((Scale::Binlog, c)),
        None => {
            let file = binlog_file_number(log_file?)?;
            Some((Scale::Binlog, (file << 32) | (log_pos? & 0xFFFF_FFFF)))
        }
    }
}

/// Where the epoch count stands after some prefix of bronze (in ingest order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EpochState {
    /// The current epoch (0 until a row with a position is seen).
    pub epoch: i64,
    /// The scale of the current epoch's positions.
    pub scale: Option<Scale>,
    /// The largest binlog file number seen in the current epoch.
    pub max_file: i64,
    /// The latest change time seen in any epoch (microseconds; 0 before the first).
    pub max_updated: i64,
}

impl EpochState {
    /// The epoch of the next row (in ingest order) with this position and change time (`updated`,
    /// microseconds; `None` when unreadable), updating the state.
    pub fn assign(&mut self, position: Option<(Scale, i64)>, updated: Option<i64>) -> i64 {
        let newer = updated.is_some_and(|t| t > self.max_updated);
        if let Some(t) = updated {
            self.max_updated = self.max_updated.max(t);
        }
        let Some((scale, value)) = position else { return self.epoch };
        let file = if scale == Scale::Binlog { value >> 32 } else { 0 };
        match self.scale {
            None => self.epoch += 1,
            Some(current) if current != scale => {
                self.epoch += 1;
                self.max_file = 0;
            }
            Some(_) if scale == Scale::Binlog && file < self.max_file && newer => {
                self.epoch += 1;
                self.max_file = 0;
            }
            Some(_) => {}
        }
        self.scale = Some(scale);
        self.max_file = self.max_file.max(file);
        self.epoch
    }

    /// The `txn` markers that keep this state next to the bronze marker `app_id`.
    pub fn markers(&self, app_id: &str) -> [(String, i64); 4] {
        [
            (format!("{app_id}#epoch"), self.epoch),
            (format!("{app_id}#scale"), self.scale.map_or(0, Scale::code)),
            (format!("{app_id}#max_file"), self.max_file),
            (format!("{app_id}#max_updated"), self.max_updated),
        ]
    }

    /// The state from the values of [`EpochState::markers`], in their order; `None` when one is
    /// missing (a table written before it existed: its state cannot be trusted, rebuild).
    pub fn from_markers(values: [Option<i64>; 4]) -> Option<EpochState> {
        let [epoch, scale, max_file, max_updated] = values;
        Some(EpochState { epoch: epoch?, scale: Scale::from_code(scale?), max_file: max_file?, max_updated: max_updated? })
    }
}

/// Where new epochs start in a stream walked in ingest order from the start (a rebuild's walk),
/// file by file: what a slice, which keeps only some keys' changes, needs to give them the epochs
/// a walk over every change gives them ([`EpochState`] counts across all keys). One entry per
/// epoch: a handful per history, however long.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EpochMarks {
    /// `(file, row in the file, epoch from that row on)`, in ingest order; files are counted in
    /// the order they are read.
    starts: Vec<(u64, u64, i64)>,
    /// The rows of each file walked, in order: a reader of the same files checks it reads them
    /// alike.
    rows: Vec<u64>,
    /// Where the count stands after the rows walked.
    end: EpochState,
}

impl EpochMarks {
    /// Walks the next file's rows (their source positions and change times, in order).
    pub fn walk_file(&mut self, rows: impl IntoIterator<Item = (Option<(Scale, i64)>, Option<i64>)>) {
        let file = self.rows.len() as u64;
        let mut count = 0u64;
        for (row, (position, updated)) in rows.into_iter().enumerate() {
            let before = self.end.epoch;
            let epoch = self.end.assign(position, updated);
            if epoch != before {
                self.starts.push((file, row as u64, epoch));
            }
            count += 1;
        }
        self.rows.push(count);
    }

    /// The epoch of the row `row` of file `file` (as numbered by [`EpochMarks::walk_file`]).
    pub fn epoch_at(&self, file: u64, row: u64) -> i64 {
        let after = self.starts.partition_point(|&(f, r, _)| (f, r) <= (file, row));
        after.checked_sub(1).and_then(|k| self.starts.get(k)).map_or(EpochState::default().epoch, |&(_, _, epoch)| epoch)
    }

    /// The files walked.
    pub fn files(&self) -> u64 {
        self.rows.len() as u64
    }

    /// The rows of file `file` walked (`None` past the last file).
    pub fn rows_of(&self, file: u64) -> Option<u64> {
        self.rows.get(file as usize).copied()
    }

    /// Where the count stands after every row walked.
    pub fn end(&self) -> EpochState {
        self.end
    }
}

/// A change time as microseconds since the epoch: RFC 3339 text (`…Z`, `…+02:00`, any fraction),
/// or a date-time without a zone (read as UTC). `None` when it is not a time.
pub fn parse_change_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Some(t) = utc_seconds(text) {
        return Some(t);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    None
}

/// The form source-mysql sends most, `2024-08-03T05:53:50Z`, read without a general parser (a
/// sync holds millions of them); `None` for any other form.
fn utc_seconds(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let shape_ok = b.len() == 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':' && b[19] == b'Z';
    if !shape_ok {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
    };
    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(number(0..4)?).ok()?, number(5..7)?, number(8..10)?)?;
    let time = date.and_hms_opt(number(11..13)?, number(14..16)?, number(17..19)?)?;
    Some(time.and_utc().timestamp_micros())
}

/// The latest row per `key` by change order (one row per key; rows with a null key are dropped).
pub fn latest(frame: LazyFrame, key: &str) -> LazyFrame {
    let mut by = vec![col(key)];
    by.extend(ORDER.iter().map(|c| col(*c)));
    frame
        .filter(col(key).is_not_null())
        // (The order columns end with the bronze version and row: no two changes tie, so the sort
        // need not be stable.)
        .sort_by_exprs(by, SortMultipleOptions::default().with_nulls_last(false).with_maintain_order(false))
        .filter(col(key).neq_missing(col(key).shift(lit(-1))))
}

/// The rows of the latest change per key, sorted by key: of the rows where `candidate` is true
/// and the key is not null, per key the one whose [`ORDER`] values (`order`, in that order; null
/// counts as the least) are largest. One pass keeping each key's best row so far in a hash map
/// (linear, where a sort of the key and six order columns was the costliest step of a silver
/// run); the map holds row numbers only, and a challenger is compared with the held row on
/// contiguous columns.
///
/// The keys are integers or text ([`crate::keys`]): any type the map can hash and the winners
/// sort by, such as `i64` or `&str`.
pub fn latest_rows<K: std::hash::Hash + Eq + Ord + Copy>(keys: impl Iterator<Item = Option<K>>, order: &[&Int64Chunked; ORDER.len()], candidate: &BooleanChunked) -> Vec<IdxSize> {
    let order: [std::borrow::Cow<'_, [i64]>; ORDER.len()] = order.map(|c| least_for_null(c));
    let order = order.each_ref().map(|c| &**c);
    let later = |a: usize, b: usize| -> bool {
        for column in order {
            match column[a].cmp(&column[b]) {
                std::cmp::Ordering::Greater => return true,
                std::cmp::Ordering::Less => return false,
                std::cmp::Ordering::Equal => {}
            }
        }
        false
    };
    let mut best: PlHashMap<K, IdxSize> = PlHashMap::with_capacity(candidate.len() / 2);
    for (row, (key, wanted)) in keys.zip(candidate.iter()).enumerate() {
        let (Some(key), Some(true)) = (key, wanted) else { continue };
        best.entry(key)
            .and_modify(|held| {
                if later(row, *held as usize) {
                    *held = row as IdxSize;
                }
            })
            .or_insert(row as IdxSize);
    }
    let mut winners: Vec<(K, IdxSize)> = best.into_iter().collect();
    winners.sort_unstable();
    winners.into_iter().map(|(_, row)| row).collect()
}

/// The values of `column` as one slice, with null as `i64::MIN` (borrowed when it is one chunk
/// without nulls, the usual case).
fn least_for_null(column: &Int64Chunked) -> std::borrow::Cow<'_, [i64]> {
    if column.null_count() > 0 {
        return std::borrow::Cow::Owned(column.iter().map(|v| v.unwrap_or(i64::MIN)).collect());
    }
    if let Ok(values) = column.cont_slice() {
        return std::borrow::Cow::Borrowed(values);
    }
    let mut values = Vec::with_capacity(column.len());
    for chunk in column.downcast_iter() {
        values.extend_from_slice(chunk.values());
    }
    std::borrow::Cow::Owned(values)
}

/// `a` comes strictly after `b` in change order; the columns are named `<order column><suffix>`.
pub fn after(a_suffix: &str, b_suffix: &str) -> Expr {
    let c = |suffix: &str, name: &str| col(format!("{name}{suffix}")).fill_null(lit(i64::MIN));
    // From the least significant column up: after = a > b, or a == b and after(rest).
    let mut later = lit(false);
    for name in ORDER.iter().rev() {
        let (a, b) = (c(a_suffix, name), c(b_suffix, name));
        later = a.clone().gt(b.clone()).or(a.eq(b).and(later));
    }
    later
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_by_era() {
        let java = 1_722_664_430i64 * 100_000_000 + 7;
        assert_eq!(source_position(Some(java), Some("mysql-bin.000003"), Some(4)), Some((Scale::Counter, java)));
        assert_eq!(source_position(Some((3 << 32) | 900), None, None), Some((Scale::Binlog, (3 << 32) | 900)));
        assert_eq!(source_position(None, Some("mysql-bin.000003"), Some(4)), Some((Scale::Binlog, (3 << 32) | 4)));
        assert_eq!(source_position(None, Some("binlog"), Some(4)), None, "no file number");
        assert_eq!(source_position(None, None, None), None);
    }

    #[test]
    fn an_upgrade_and_a_binlog_restart_start_new_epochs() {
        let mut state = EpochState::default();
        let java = |n: i64| Some((Scale::Counter, 1_700_000_000 * 100_000_000 + n));
        let binlog = |file: i64, pos: i64| Some((Scale::Binlog, (file << 32) | pos));
        let at = |second: i64| Some(second * 1_000_000);
        assert_eq!(state.assign(java(2), at(10)), 1);
        assert_eq!(state.assign(java(1), at(9)), 1, "a smaller counter is an older change of the same epoch");
        assert_eq!(state.assign(None, at(11)), 1, "no position: current epoch");
        assert_eq!(state.assign(binlog(7, 100), at(12)), 2, "Java 3.x -> Kotlin 3.9+ upgrade");
        assert_eq!(state.assign(binlog(8, 4), at(13)), 2);
        assert_eq!(state.assign(binlog(8, 2), at(13)), 2, "going back within a file is a re-sent record, not a restart");
        assert_eq!(state.assign(binlog(7, 900), at(12)), 2, "a re-sent record of the previous file keeps its old change time");
        assert_eq!(state.assign(binlog(7, 950), None), 2, "so does an unreadable change time");
        assert_eq!(state.assign(binlog(1, 4), at(20)), 3, "binlog numbering restarted: a new change at a lower file");
        assert_eq!(state.assign(binlog(2, 4), at(21)), 3);
        assert_eq!(state.assign(binlog(8, 4), at(13)), 3, "an old record re-sent after the restart is older, not a new epoch");
        let kept = EpochState::from_markers(state.markers("app").map(|(_, v)| Some(v)));
        assert_eq!(kept, Some(state), "the state survives its markers");
        assert_eq!(EpochState::from_markers([Some(3), Some(2), Some(8), None]), None, "a marker missing: no state");
        let markers = state.markers("app");
        assert_eq!(markers[0], ("app#epoch".to_owned(), 3));
    }

    #[test]
    fn epoch_marks_give_any_row_the_epoch_a_walk_over_every_row_gives_it() {
        // Files of rows with upgrades, binlog restarts, rows without a position or a time, in a
        // deterministic pseudo-random mix; the marks must answer every row as the walk did.
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let (mut walk, mut marks, mut expected) = (EpochState::default(), EpochMarks::default(), Vec::new());
        let (mut file_number, mut second) = (3i64, 100i64);
        for file in 0..12u64 {
            let mut rows = Vec::new();
            for _ in 0..next(40) {
                match next(30) {
                    0 => file_number = 1 + next(3) as i64,   // a restart (or an old record re-sent)
                    1 => file_number += 1,
                    _ => {}
                }
                second += next(3) as i64;
                let position = match next(10) {
                    0 => None,
                    1 => Some((Scale::Counter, 1_700_000_000 * 100_000_000 + second)),
                    _ => Some((Scale::Binlog, (file_number << 32) | next(1000) as i64)),
                };
                let updated = (next(12) != 0).then_some(second * 1_000_000);
                rows.push((position, updated));
            }
            for (row, &(position, updated)) in rows.iter().enumerate() {
                expected.push((file, row as u64, walk.assign(position, updated)));
            }
            marks.walk_file(rows);
        }
        assert!(expected.last().is_some_and(|&(_, _, epoch)| epoch > 3), "the history has several epochs: {:?}", expected.last());
        let expected_rows = expected.len() as u64;
        for (file, row, epoch) in expected {
            assert_eq!(marks.epoch_at(file, row), epoch, "file {file}, row {row}");
        }
        assert_eq!((marks.end(), marks.files()), (walk, 12));
        assert_eq!((0..12).map(|f| marks.rows_of(f).unwrap_or_default()).sum::<u64>(), expected_rows, "every row counted");
        assert_eq!(marks.rows_of(12), None);
        let back: EpochMarks = serde_json::from_str(&serde_json::to_string(&marks).expect("to JSON")).expect("from JSON");
        assert_eq!(back, marks, "the marks travel to a worker as JSON");
        assert_eq!(EpochMarks::default().epoch_at(0, 0), 0, "no row walked: the first epoch");
    }

    #[test]
    fn change_times_parse_in_every_form_source_mysql_sends() {
        let second = parse_change_time("2024-08-03T05:53:50Z").unwrap();
        assert_eq!(parse_change_time("2024-08-03T05:53:50.123Z"), Some(second + 123_000));
        assert_eq!(parse_change_time("2024-08-03T05:53:50.123000Z"), Some(second + 123_000));
        assert_eq!(parse_change_time("2024-08-03T07:53:50+02:00"), Some(second));
        assert_eq!(parse_change_time("2024-08-03T05:53:50.000000"), Some(second), "no zone: UTC");
        assert_eq!(parse_change_time("yesterday"), None);
        // The fast path agrees with the general parser, and leaves what it does not read to it.
        for text in ["1999-12-31T23:59:59Z", "2024-02-29T00:00:00Z", "2025-01-12T04:41:15Z"] {
            assert_eq!(utc_seconds(text), DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_micros()), "{text}");
        }
        for text in ["2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-08-03T25:00:00Z", "2024-08-03 05:53:50Z", "2024-08-03T05:53:5xZ"] {
            assert_eq!(utc_seconds(text), None, "{text}");
        }
        assert_eq!(parse_change_time("2023-02-29T00:00:00Z"), None, "no such day");
    }

    fn frame(rows: &[[i64; 7]]) -> DataFrame {
        let column = |i: usize| rows.iter().map(|r| r[i]).collect::<Vec<i64>>();
        let mut columns = vec![Column::new("id".into(), column(0))];
        for (i, name) in ORDER.iter().enumerate() {
            columns.push(Column::new((*name).into(), column(i + 1)));
        }
        DataFrame::new(rows.len(), columns).unwrap()
    }

    #[test]
    fn the_latest_change_wins_column_by_column() {
        // id, generation, epoch, position, updated, version, row
        let rows = [
            [1, 0, 1, 50, 9, 1, 0],
            [1, 0, 2, 10, 1, 2, 0], // a later epoch beats a larger position
            [2, 0, 1, 10, 5, 1, 1],
            [2, 0, 1, 10, 5, 1, 2], // full tie but for the ingest row
            [3, 1, 0, 0, 0, 0, 0],  // a later generation beats everything
            [3, 0, 9, 99, 99, 9, 9],
        ];
        let out = latest(frame(&rows).lazy(), "id").collect().unwrap();
        let picked: Vec<(i64, i64)> = out.column("id").unwrap().i64().unwrap().iter().zip(out.column(INGEST_ROW).unwrap().i64().unwrap().iter()).map(|(a, b)| (a.unwrap(), b.unwrap())).collect();
        assert_eq!(picked, [(1, 0), (2, 2), (3, 0)]);
        let epochs: Vec<i64> = out.column(EPOCH).unwrap().i64().unwrap().iter().flatten().collect();
        assert_eq!(epochs, [2, 1, 0]);
    }

    #[test]
    fn latest_rows_agrees_with_latest() {
        // Keys with several changes, ties on the leading columns, nulls (least), a null key.
        let mut state = 7u64;
        let mut next = |n: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) % n) as i64
        };
        let rows: Vec<[i64; 7]> = (0..400).map(|i| [next(40), next(2), next(3), next(5), next(4), next(3), i]).collect();
        let mut frame = frame(&rows);
        let nulls: Vec<Option<i64>> = rows.iter().map(|r| (r[3] != 0).then_some(r[3])).collect();
        frame.with_column(Column::new(POSITION.into(), nulls)).unwrap();
        let ids: Vec<Option<i64>> = rows.iter().map(|r| (r[0] != 39).then_some(r[0])).collect();
        frame.with_column(Column::new("id".into(), ids)).unwrap();
        let wanted = BooleanChunked::from_iter_values("w".into(), rows.iter().map(|r| r[1] != 1 || r[2] != 2));
        frame.with_column(Column::new("w".into(), wanted.clone().into_series())).unwrap();
        let order: [&Int64Chunked; ORDER.len()] = ORDER.map(|c| frame.column(c).unwrap().i64().unwrap());
        let rows_found = latest_rows(frame.column("id").unwrap().i64().unwrap().iter(), &order, &wanted);
        let mine = frame.take(&IdxCa::from_vec("i".into(), rows_found)).unwrap();
        let expected = latest(frame.clone().lazy().filter(col("w")), "id").collect().unwrap();
        assert_eq!(mine.height(), expected.height());
        assert!(mine.equals_missing(&expected), "{mine}\n{expected}");

        // The same with text keys whose byte order is not their numbers' ("10" < "9"), one of
        // them empty: the same rows win, sorted by the text.
        let texts: Vec<Option<String>> = rows.iter().map(|r| (r[0] != 39).then(|| if r[0] == 0 { String::new() } else { format!("{}", r[0] * 3) })).collect();
        frame.with_column(Column::new("id".into(), texts)).unwrap();
        let order: [&Int64Chunked; ORDER.len()] = ORDER.map(|c| frame.column(c).unwrap().i64().unwrap());
        let rows_found = latest_rows(frame.column("id").unwrap().str().unwrap().iter(), &order, &wanted);
        let mine = frame.take(&IdxCa::from_vec("i".into(), rows_found)).unwrap();
        let expected = latest(frame.clone().lazy().filter(col("w")), "id").collect().unwrap();
        assert_eq!(mine.height(), expected.height());
        assert!(mine.equals_missing(&expected), "{mine}\n{expected}");
    }

    #[test]
    fn after_agrees_with_latest() {
        let a = frame(&[[1, 0, 2, 10, 1, 2, 0]]);
        let b = frame(&[[1, 0, 1, 50, 9, 1, 0]]);
        let joined = a.lazy().join(b.lazy(), [col("id")], [col("id")], JoinArgs::new(JoinType::Inner).with_suffix(Some("_b".into())));
        let out = joined.select([after("", "_b").alias("later"), after("_b", "").alias("earlier")]).collect().unwrap();
        assert_eq!(out.column("later").unwrap().bool().unwrap().get(0), Some(true));
        assert_eq!(out.column("earlier").unwrap().bool().unwrap().get(0), Some(false));
    }
}
