//! Slices: a run's rides cut into ranges of the ride id, so that its memory stays within a budget
//! whatever the table's size. Pure: the plan is computed from counts and a sample of ids.
//!
//! Slices are key ranges, not day partitions: a ride's `requested_at` can change between its
//! changes, so one ride's changes could fall into two partitions, while every change of a ride
//! has its id. A slice therefore sees every change of its rides and decides them alone. A
//! rebuild's users are decided before, in slices of the user id of their own (a user's changes
//! all carry its id too); every slice of rides shares their roles.
//!
//! The budget gives the number of slices: the changes a run holds at once cost about
//! [`BYTES_PER_CHANGE`] each (measured by `scripts/bench.sh scale`), on top of what the run holds
//! whatever its slices (the users' roles, [`FIXED_BYTES`]). The boundaries are quantiles of a sample of
//! the changes' ids ([`IdSample`]), so that slices hold about as many changes each, however the
//! ids are spread.

use polars::prelude::*;

use crate::error::{LakehouseError, Result};
use crate::keys::{Key, KeyRange};

/// The runtime variable that sets the memory budget of a run that is not given one
/// (`2GiB`, `512MiB`, bytes).
pub const BUDGET_VARIABLE: &str = "RIDELAKE_MEMORY_BUDGET";

/// Memory a ride change costs a rebuild while it is decided and written (its key, rule and order
/// columns, its chosen row's fields, the Parquet encoding). `scripts/bench.sh scale`, one slice,
/// 1 M and 10 M rides (1.6 M and 15.8 M changes): peak RSS 1,456 and 11,592 MiB, a slope of
/// 706 bytes per change; rounded up.
pub const BYTES_PER_CHANGE: u64 = 800;

/// Memory a run holds whatever its slices, besides the users' roles (counted apart): the runtime, the
/// allocator's spare, the Delta logs (and, before slices read their own rows only, two bronze
/// files read whole). The same
/// benchmark in 11 slices of 1.44 M changes peaked at 2,141 MiB: about 1.1 GiB beyond the
/// slices' changes at 10 M rides, users (500 K) included. Since a slice reads only its own rows
/// (`rebuild::marked_changes_in`), about 0.5 GiB is held so (10 M rides in 49 slices under
/// 1.25 GiB peaked at 748 MiB); the constant is kept, as part of the margin the allocator's
/// spare needs (see [`PLANNED_PERCENT`]).
pub const FIXED_BYTES: u64 = 1 << 30;

/// The share of the budget a plan fills, in percent: the rest is the margin for what the
/// allocator keeps between slices, which varies from run to run. 50 M rides under 2 GiB, planned
/// on all of it (62 slices), peaked at 1,878, 2,043 and 1,962 MiB; planned on 90 % (79 slices),
/// at 1,701, 1,756 and 1,655 MiB, in no more time (a slice costs little beyond its rows).
pub const PLANNED_PERCENT: u64 = 90;

/// The most integer ids a sample keeps (8 MiB).
const SAMPLE_CAP: usize = 1 << 20;
/// The most text ids a sample keeps (some 16 MiB of UUIDs).
const TEXT_SAMPLE_CAP: usize = 1 << 18;

/// Every `stride`-th id of the changes, in ingest order: a deterministic sample whose stride
/// doubles whenever it would exceed [`SAMPLE_CAP`] ids ([`TEXT_SAMPLE_CAP`] text ones). A
/// table's ids are integers or text ([`crate::keys`]): a sample takes either.
#[derive(Debug, Clone)]
pub struct IdSample {
    ids: Vec<i64>,
    texts: Vec<String>,
    stride: u64,
    seen: u64,
}

impl Default for IdSample {
    fn default() -> Self {
        IdSample { ids: Vec::new(), texts: Vec::new(), stride: 1, seen: 0 }
    }
}

impl IdSample {
    /// Adds the next changes' integer ids (nulls count as changes but are not sampled).
    pub fn extend(&mut self, ids: impl IntoIterator<Item = Option<i64>>) {
        for id in ids {
            if self.seen % self.stride == 0
                && let Some(id) = id
            {
                self.ids.push(id);
            }
            self.seen += 1;
            if self.ids.len() > SAMPLE_CAP {
                self.thin();
            }
        }
    }

    /// Adds the next changes' text ids (nulls count as changes but are not sampled).
    pub fn extend_text<'a>(&mut self, ids: impl IntoIterator<Item = Option<&'a str>>) {
        for id in ids {
            if self.seen % self.stride == 0
                && let Some(id) = id
            {
                self.texts.push(id.to_owned());
            }
            self.seen += 1;
            if self.texts.len() > TEXT_SAMPLE_CAP {
                self.thin();
            }
        }
    }

    /// Thins out to every other id taken, and takes half as often from here on.
    fn thin(&mut self) {
        let mut keep = false;
        self.ids.retain(|_| {
            keep = !keep;
            keep
        });
        let mut keep = false;
        self.texts.retain(|_| {
            keep = !keep;
            keep
        });
        self.stride *= 2;
    }

    /// The changes seen.
    pub fn changes(&self) -> u64 {
        self.seen
    }

    /// `count` slices as `count - 1` ascending, distinct boundaries: the sample's quantiles.
    /// Fewer when the ids are too few to tell more ranges apart.
    pub fn boundaries(&self, count: usize) -> Vec<Key> {
        if self.texts.is_empty() {
            quantiles(self.ids.clone(), count).into_iter().map(Key::Int).collect()
        } else {
            quantiles(self.texts.clone(), count).into_iter().map(Key::Text).collect()
        }
    }
}

/// `count - 1` ascending, distinct quantiles of `sample`, each above its least value.
fn quantiles<T: Ord + Clone>(mut sorted: Vec<T>, count: usize) -> Vec<T> {
    let count = count.min(sorted.len().max(1));
    sorted.sort_unstable();
    let mut out: Vec<T> = Vec::with_capacity(count.saturating_sub(1));
    for k in 1..count {
        let Some(at) = sorted.get(k * sorted.len() / count) else { break };
        if out.last().is_none_or(|last| last < at) && sorted.first().is_some_and(|first| first < at) {
            out.push(at.clone());
        }
    }
    out
}

/// How many slices a rebuild of `changes` ride changes needs to stay within `budget` bytes (of which
/// it plans [`PLANNED_PERCENT`]) when `users_bytes` are held throughout; at least one, at most one
/// per 100 changes and at most
/// [`MAX_SLICES`] (a budget below what a run holds whatever its slices gets that many: the least
/// memory slicing can give).
pub fn count_for(budget: Option<u64>, changes: u64, users_bytes: u64) -> usize {
    let Some(budget) = budget else { return 1 };
    let room = (budget / 100 * PLANNED_PERCENT).saturating_sub(FIXED_BYTES + users_bytes).max(1);
    let need = changes.saturating_mul(BYTES_PER_CHANGE);
    let count = need.div_ceil(room).max(1);
    count.min((changes / 100).max(1)).min(MAX_SLICES) as usize
}

/// The most slices a budget gives (each slice reads the key column of the bronze files that may
/// hold its ids).
pub const MAX_SLICES: u64 = 256;

/// The fewest changes a slice of an increment holds when the budget picks the count: an
/// increment of fewer is decided at once. (Each slice reads the whole increment again, and
/// 100,000 changes take some 80 MB: a small budget must not cut a routine sync into hundreds of
/// slices.)
pub const MIN_INCREMENT_SLICE_CHANGES: u64 = 100_000;

/// [`count_for`] for an increment of `changes`: at most one slice per
/// [`MIN_INCREMENT_SLICE_CHANGES`].
pub fn count_for_increment(budget: Option<u64>, changes: u64, users_bytes: u64) -> usize {
    count_for(budget, changes, users_bytes).min((changes / MIN_INCREMENT_SLICE_CHANGES).max(1) as usize)
}

/// A slice: the rides whose id is in `[from, to)` (open where `None`); the first slice also
/// holds the changes without an id (they are quarantined, whatever the slice).
/// (The default slice holds every ride.)
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Slice {
    /// Lowest id, included (`None`: no lower bound).
    pub from: Option<Key>,
    /// Highest id, excluded (`None`: no upper bound).
    pub to: Option<Key>,
}

impl Slice {
    /// The slices between `boundaries` (ascending): one more than there are boundaries.
    pub fn between(boundaries: &[Key]) -> Vec<Slice> {
        let mut out = Vec::with_capacity(boundaries.len() + 1);
        let mut from = None;
        for b in boundaries {
            out.push(Slice { from, to: Some(b.clone()) });
            from = Some(b.clone());
        }
        out.push(Slice { from, to: None });
        out
    }

    /// Whether this slice is all rides.
    pub fn is_all(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }

    /// Whether a file whose keys lie in `range` (from its statistics; `None`: unknown) may hold
    /// keys of this slice.
    pub fn may_hold(&self, range: Option<&KeyRange>) -> bool {
        range.is_none_or(|range| range.meets(self.from.as_ref(), self.to.as_ref()))
    }

    /// The rows of this slice, by their `key` column.
    pub fn holds(&self, key: &str) -> Expr {
        let Some(dtype) = self.from.as_ref().or(self.to.as_ref()).map(Key::dtype) else { return lit(true) };
        let id = col(key).cast(dtype);
        let mut expr = match &self.from {
            None => lit(true),
            Some(from) => id.clone().gt_eq(from.lit()),
        };
        if let Some(to) = &self.to {
            expr = expr.and(id.clone().lt(to.lit()));
        }
        let expr = expr.fill_null(lit(false));
        if self.from.is_none() { expr.or(id.is_null()) } else { expr }
    }
}

/// Bytes from a size in the form `2GiB`, `512 MiB`, `1.5 GB` or a plain number of bytes.
pub fn parse_bytes(text: &str) -> Option<u64> {
    parse_size::parse_size(text.trim()).ok()
}

/// A budget written as a size; the error says what is expected.
pub fn budget(name: &'static str, text: &str) -> Result<u64> {
    match parse_bytes(text) {
        Some(bytes) if bytes > 0 => Ok(bytes),
        _ => Err(LakehouseError::Setting { name, message: format!("{text:?} is not a memory size; write it as 2GiB, 512MiB or a number of bytes") }),
    }
}

/// The budget of a run: `given`, else [`BUDGET_VARIABLE`], else [`default_budget`].
pub fn resolve_budget(given: Option<u64>) -> Result<Option<u64>> {
    if given.is_some() {
        return Ok(given);
    }
    match std::env::var(BUDGET_VARIABLE) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(budget(BUDGET_VARIABLE, &text)?)),
        _ => Ok(default_budget()),
    }
}

/// Half the machine's memory (`MemTotal` of `/proc/meminfo`, or the cgroup's limit when lower),
/// the budget of a run that sets none; `None` where neither can be read.
pub fn default_budget() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total_kib: u64 = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    let mut total = total_kib * 1024;
    if let Some(limit) = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|t| t.trim().parse::<u64>().ok()) {
        total = total.min(limit);
    }
    Some(total / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_every_id_once_and_nulls_in_the_first() {
        let slices = Slice::between(&[Key::Int(10), Key::Int(20)]);
        assert_eq!(slices.len(), 3);
        let ids = Series::new("id".into(), [Some(-5i64), Some(9), Some(10), Some(19), Some(20), Some(i64::MAX), None]);
        let frame = DataFrame::new(ids.len(), vec![ids.into()]).expect("frame");
        let mut seen = Vec::new();
        for slice in &slices {
            let rows = frame.clone().lazy().filter(slice.holds("id")).collect().expect("filter");
            seen.push(rows.column("id").expect("id").i64().expect("i64").iter().collect::<Vec<_>>());
        }
        assert_eq!(seen, vec![vec![Some(-5), Some(9), None], vec![Some(10), Some(19)], vec![Some(20), Some(i64::MAX)]]);
        assert!(Slice::between(&[])[0].is_all());
    }

    #[test]
    fn text_ids_are_sliced_by_their_bytes() {
        let ids: Vec<String> = (0..5_000u64).map(|i| format!("{:08x}-{i}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32)).collect();
        let mut sample = IdSample::default();
        sample.extend_text(ids.iter().map(|s| Some(s.as_str())).chain([None]));
        let bounds = sample.boundaries(4);
        assert_eq!(bounds.len(), 3, "{bounds:?}");
        assert!(bounds.iter().all(|b| matches!(b, Key::Text(_))) && bounds.windows(2).all(|w| w[0] < w[1]));
        let mut column: Vec<Option<&str>> = ids.iter().map(|s| Some(s.as_str())).collect();
        column.push(None);
        let frame = DataFrame::new(column.len(), vec![Column::new("id".into(), column)]).expect("frame");
        let mut counts = Vec::new();
        for slice in Slice::between(&bounds) {
            let rows = frame.clone().lazy().filter(slice.holds("id")).collect().expect("filter");
            let texts: Vec<Option<&str>> = rows.column("id").expect("id").str().expect("text").iter().collect();
            assert!(texts.iter().flatten().all(|t| slice.from.as_ref().is_none_or(|f| Key::Text((*t).into()) >= *f)));
            counts.push(rows.height());
        }
        assert_eq!(counts.iter().sum::<usize>(), 5_001, "every id in one slice, the null in the first: {counts:?}");
        assert!(counts.iter().all(|&n| n > 1_000), "about as many ids each: {counts:?}");
    }

    #[test]
    fn a_file_may_hold_a_slice_when_their_ranges_meet() {
        let [first, middle, last] = <[Slice; 3]>::try_from(Slice::between(&[Key::Int(10), Key::Int(20)])).expect("three slices");
        let range = |a: i64, b: i64| KeyRange::Int(a, b);
        // The file holds ids 10..=19: only the middle slice's.
        assert!(!first.may_hold(Some(&range(10, 19))) && middle.may_hold(Some(&range(10, 19))) && !last.may_hold(Some(&range(10, 19))));
        // Ranges that touch a boundary: `to` is excluded, `from` included.
        assert!(first.may_hold(Some(&range(9, 9))) && !middle.may_hold(Some(&range(9, 9))));
        assert!(middle.may_hold(Some(&range(19, 25))) && last.may_hold(Some(&range(19, 25))));
        assert!(first.may_hold(None) && last.may_hold(None), "without statistics, any file may");
        assert!(Slice::default().may_hold(Some(&range(i64::MIN, i64::MIN))));
    }

    #[test]
    fn boundaries_are_quantiles_of_skewed_ids() {
        let mut sample = IdSample::default();
        // Half the changes on ten hot ids, half spread: the slices split by changes, not ids.
        sample.extend((0..50_000).map(|i| Some(i % 10)));
        sample.extend((0..50_000).map(|i| Some(1_000 + i * 7)));
        let b = sample.boundaries(4);
        assert_eq!(b.len(), 3);
        assert!(b[0] <= Key::Int(10), "the first quarter is the hot ids: {b:?}");
        assert!(b.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sample.changes(), 100_000);
    }

    #[test]
    fn too_few_distinct_ids_give_fewer_slices() {
        let mut sample = IdSample::default();
        sample.extend((0..1000).map(|_| Some(7)));
        assert_eq!(sample.boundaries(8), Vec::<Key>::new());
        assert_eq!(sample.boundaries(usize::MAX), Vec::<Key>::new(), "a huge count asks for no more than the ids");
        sample.extend([Some(8)]);
        assert!(sample.boundaries(8).len() <= 1);
    }

    #[test]
    fn the_sample_stays_bounded_and_deterministic() {
        let mut a = IdSample::default();
        a.extend((0..3_000_000i64).map(Some));
        assert!(a.ids.len() <= SAMPLE_CAP);
        let mut b = IdSample::default();
        b.extend((0..3_000_000i64).map(Some));
        assert_eq!(a.boundaries(5), b.boundaries(5));
        let q = a.boundaries(4);
        for (k, at) in q.iter().enumerate() {
            let Key::Int(at) = at else { panic!("integer ids give integer bounds") };
            let expected = (k as i64 + 1) * 750_000;
            assert!((at - expected).abs() < 10_000, "quantile {k}: {at}");
        }
    }

    #[test]
    fn the_budget_gives_the_slice_count() {
        assert_eq!(count_for(None, 10_000_000, 0), 1);
        let gib = 1u64 << 30;
        let n = count_for(Some(2 * gib), 10_000_000, 50 << 20);
        let per = (2 * gib / 100 * PLANNED_PERCENT - FIXED_BYTES - (50 << 20)) / BYTES_PER_CHANGE;
        assert_eq!(n as u64, 10_000_000u64.div_ceil(per));
        assert_eq!(count_for(Some(64 * gib), 10_000_000, 0), 1);
        assert_eq!(count_for(Some(1), 5_000, 0), 50, "at most one slice per 100 changes");
        assert_eq!(count_for(Some(1), 100_000_000, 0), MAX_SLICES as usize);
        assert_eq!(count_for_increment(Some(1), 150_000, 0), 1, "a small increment is decided at once");
        assert_eq!(count_for_increment(Some(1), 5_000_000, 0), 50);
        assert_eq!(count_for_increment(Some(64 * gib), 5_000_000, 0), 1);
    }

    #[test]
    fn sizes_parse_in_the_usual_units() {
        assert_eq!(parse_bytes("2GiB"), Some(2 << 30));
        assert_eq!(parse_bytes("512 MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("1000"), Some(1000));
        assert_eq!(parse_bytes("lots"), None);
        assert!(budget("memory_budget", "0").is_err());
        let message = budget("memory_budget", "2 gigs").expect_err("not a size").to_string();
        assert!(message.contains("memory_budget") && message.contains("2GiB"), "{message}");
    }
}
