//! Silver against an oracle: the generator's messages replayed into plain maps by the documented
//! rules, independently of the Polars implementation. Bronze is written by the real connector
//! pipeline. Also: incremental runs equal one full run, and a rerun is a no-op.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::sync::Arc;

use destination_delta_lake::catalog::Catalog;
use destination_delta_lake::config::DestinationOptions;
use destination_delta_lake::protocol::Emitter;
use destination_delta_lake::write::run_write;
use polars::prelude::*;
use ridelake_core::generator::{Generator, GeneratorConfig, configured_catalog};
use ridelake_core::storage::StorageConfig;
use ridelake_lakehouse::io;
use ridelake_lakehouse::layout::LakeLayout;
use ridelake_lakehouse::silver::build_silver;
use serde_json::Value;

fn generate(cfg: GeneratorConfig) -> Vec<String> {
    let mut out = Vec::new();
    Generator::new(cfg, &mut out).run().expect("generate");
    String::from_utf8(out).expect("utf8").lines().map(str::to_owned).collect()
}

async fn sync(lake: &std::path::Path, lines: &[String]) {
    let options = DestinationOptions::from_json(
        &serde_json::json!({"storage": {"storage_type": "Local", "local_path": lake.join("bronze")}}).to_string(),
    )
    .expect("config");
    let catalog = Catalog::from_json(&configured_catalog("ridehail", "append", 1, 0, 1), "default").expect("catalog");
    let input = lines.join("\n").into_bytes();
    let emitter = Arc::new(Emitter::to_writer(Box::new(std::io::sink())));
    run_write(options, catalog, Box::new(Cursor::new(input)), emitter).await.expect("bronze sync");
}

fn layout(lake: &std::path::Path) -> LakeLayout {
    LakeLayout::new(StorageConfig::Local { path: lake.to_path_buf() }, "ridehail").expect("layout")
}

/// Epochs of the change order, per the documented rule (`order.rs`), re-implemented here: a new
/// epoch where the position scale changes (counter cursors at or above 10^16 versus binlog
/// positions) or a binlog file number goes below the largest seen in the epoch.
#[derive(Default)]
struct Epochs {
    epoch: i64,
    counter: Option<bool>,
    max_file: i64,
}

impl Epochs {
    fn next(&mut self, position: Option<i64>) -> i64 {
        let Some(p) = position else { return self.epoch };
        let counter = p >= 10_000_000_000_000_000;
        let file = if counter { 0 } else { p >> 32 };
        if self.counter != Some(counter) || (!counter && file < self.max_file) {
            self.epoch += 1;
            self.max_file = 0;
        }
        self.counter = Some(counter);
        self.max_file = self.max_file.max(file);
        self.epoch
    }
}

/// Change order of a record, per the documented rule, but for the ingest order (the caller adds
/// the record's line number, which is the order bronze received it).
fn order(data: &Value, generation: i64, epochs: &mut Epochs) -> (i64, i64, i64, i64) {
    let position = match data["_ab_cdc_cursor"].as_i64() {
        Some(c) => Some(c),
        None => data["_ab_cdc_log_file"]
            .as_str()
            .and_then(|f| f.rsplit('.').next()?.parse::<i64>().ok())
            .and_then(|suffix| Some((suffix << 32) | (data["_ab_cdc_log_pos"].as_f64()? as i64 & 0xFFFF_FFFF))),
    };
    let epoch = epochs.next(position);
    let updated = data["_ab_cdc_updated_at"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map_or(i64::MIN, |t| t.timestamp_micros());
    // (the change time is never zone-less: source-mysql sends it with `Z`)
    (generation, epoch, position.unwrap_or(i64::MIN), updated)
}

/// Every record's order key `(generation, epoch, position, updated, line)`, by stream.
fn order_keys(lines: &[String]) -> Vec<Option<(i64, i64, i64, i64, usize)>> {
    let mut epochs: HashMap<String, Epochs> = HashMap::new();
    lines
        .iter()
        .enumerate()
        .map(|(n, line)| {
            let msg: Value = serde_json::from_str(line).expect("json");
            if msg["type"] != "RECORD" {
                return None;
            }
            let stream = msg["record"]["stream"].as_str().expect("stream").to_owned();
            let generation = msg["record"]["data"]["_airbyte_generation_id"].as_i64().unwrap_or(0);
            let (g, e, p, u) = order(&msg["record"]["data"], generation, epochs.entry(stream).or_default());
            Some((g, e, p, u, n))
        })
        .collect()
}

#[derive(Debug, Default, PartialEq)]
struct Expected {
    users: BTreeMap<i64, (Option<String>, bool)>,
    rides: BTreeMap<i64, String>,
    pending: BTreeMap<i64, String>,
    deleted: Vec<i64>,
}

fn oracle(lines: &[String]) -> Expected {
    type Latest = HashMap<i64, ((i64, i64, i64, i64, usize), Value)>;
    let keys = order_keys(lines);
    let mut users: Latest = HashMap::new();
    let mut rides: Latest = HashMap::new();
    for (line, key) in lines.iter().zip(keys) {
        let Some(key) = key else { continue };
        let msg: Value = serde_json::from_str(line).expect("json");
        let rec = &msg["record"];
        let data = rec["data"].clone();
        let deleted = !data["_ab_cdc_deleted_at"].is_null();
        let Some(id) = data["id"].as_i64() else { continue };
        let (valid, target) = match rec["stream"].as_str().expect("stream") {
            "users" => {
                let t = data["type"].as_str();
                let ok = !data["created_at"].is_null() && (deleted || matches!(t, Some("customer") | Some("driver")));
                (ok, &mut users)
            }
            _ => {
                let ok = deleted || (!data["customer_id"].is_null() && !data["requested_at"].is_null());
                (ok, &mut rides)
            }
        };
        if !valid {
            continue;
        }
        if target.get(&id).is_none_or(|(k, _)| key > *k) {
            target.insert(id, (key, data));
        }
    }
    let mut out = Expected::default();
    for (id, (_, data)) in &users {
        let deleted = !data["_ab_cdc_deleted_at"].is_null();
        out.users.insert(*id, (data["type"].as_str().map(str::to_owned), deleted));
    }
    let is = |id: &Value, kind: &str| id.as_i64().and_then(|i| out.users.get(&i)).is_some_and(|(t, _)| t.as_deref() == Some(kind));
    for (id, (_, data)) in &rides {
        if !data["_ab_cdc_deleted_at"].is_null() {
            out.deleted.push(*id);
            continue;
        }
        let status = data["status"].as_str().expect("status").to_owned();
        let ok = is(&data["customer_id"], "customer") && (data["driver_id"].is_null() || is(&data["driver_id"], "driver"));
        if ok {
            out.rides.insert(*id, status);
        } else {
            out.pending.insert(*id, status);
        }
    }
    out.deleted.sort();
    out
}

async fn observed(lake: &std::path::Path) -> Expected {
    let layout = layout(lake);
    let options = layout.storage_options();
    let read = |name: &'static str| {
        let url = layout.silver(name).expect("url");
        let options = options.clone();
        async move {
            match io::open(&url, &options).await.expect("open") {
                Some(t) => io::read_all(&t).await.expect("read"),
                None => DataFrame::empty(),
            }
        }
    };
    let mut out = Expected::default();
    let users = read("users").await;
    for row in 0..users.height() {
        let id = users.column("id").expect("id").get(row).expect("row").try_extract::<i64>().expect("i64");
        let kind = users.column("type").expect("type").str().expect("str").get(row).map(str::to_owned);
        let deleted = users.column("is_deleted").expect("col").bool().expect("bool").get(row).expect("flag");
        assert!(out.users.insert(id, (kind, deleted)).is_none(), "user {id} twice in silver");
    }
    for (name, target) in [("rides", &mut out.rides), ("rides_pending", &mut out.pending)] {
        let frame = read(name).await;
        for row in 0..frame.height() {
            let id = frame.column("id").expect("id").get(row).expect("row").try_extract::<i64>().expect("i64");
            let status = frame.column("status").expect("status").str().expect("str").get(row).expect("status").to_owned();
            assert!(target.insert(id, status).is_none(), "ride {id} twice in {name}");
        }
    }
    let deleted = read("rides_deleted").await;
    out.deleted = (0..deleted.height())
        .map(|row| deleted.column("id").expect("id").get(row).expect("row").try_extract::<i64>().expect("i64"))
        .collect();
    out.deleted.sort();
    out
}

fn small() -> GeneratorConfig {
    GeneratorConfig { users: 60, rides: 300, changes: 4000, state_every: 700, late_user_rate: 0.3, bad_null_rate: 0.02, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_full_run_matches_the_oracle_and_a_rerun_is_a_noop() {
    let lake = tempfile::tempdir().expect("tempdir");
    let lines = generate(small());
    sync(lake.path(), &lines).await;
    let report = build_silver(&layout(lake.path())).await.expect("silver");
    assert!(report.quarantined > 0 && report.pending > 0 && report.rides_deleted > 0, "{report:?}");
    let expected = oracle(&lines);
    assert_eq!(observed(lake.path()).await, expected);
    let again = build_silver(&layout(lake.path())).await.expect("rerun");
    assert!(again.noop, "{again:?}");
    assert_eq!(observed(lake.path()).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_runs_equal_one_full_run() {
    let lines = generate(GeneratorConfig { seed: 9, ..small() });
    let incremental = tempfile::tempdir().expect("tempdir");
    // Cut right after the first ride that arrives before its customer, so that it must wait.
    let mut seen_users = std::collections::HashSet::new();
    let late_ride = lines
        .iter()
        .position(|line| {
            let msg: Value = serde_json::from_str(line).expect("json");
            let rec = &msg["record"];
            match rec["stream"].as_str() {
                Some("users") => {
                    seen_users.insert(rec["data"]["id"].as_i64());
                    false
                }
                Some("rides") => rec["data"]["customer_id"].as_i64().is_some_and(|c| !seen_users.contains(&Some(c))),
                _ => false,
            }
        })
        .expect("the generator sends some rides before their users");
    let mut cuts = vec![lines.len() / 5, late_ride + 1, lines.len() / 2, lines.len() * 4 / 5, lines.len()];
    cuts.sort_unstable();
    cuts.dedup();
    let mut start = 0;
    let mut released = 0;
    for cut in cuts {
        sync(incremental.path(), &lines[start..cut]).await;
        released += build_silver(&layout(incremental.path())).await.expect("silver").released;
        start = cut;
    }
    assert!(released > 0, "late users should release waiting rides");
    assert_eq!(observed(incremental.path()).await, oracle(&lines));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_at_any_write_then_rerun_gives_the_same_tables() {
    use ridelake_lakehouse::silver::{SilverOptions, build_silver_with};
    let lines = generate(GeneratorConfig { seed: 4, ..small() });
    let half = lines.len() / 2;
    let expected = oracle(&lines);
    // Five writes per run: quarantine, users, rides_pending, rides_deleted, rides.
    for stop_after in 0..5 {
        let lake = tempfile::tempdir().expect("tempdir");
        sync(lake.path(), &lines[..half]).await;
        build_silver(&layout(lake.path())).await.expect("first run");
        sync(lake.path(), &lines[half..]).await;
        let killed = build_silver_with(&layout(lake.path()), &SilverOptions { fail_after_writes: Some(stop_after), ..Default::default() }).await;
        assert!(killed.is_err(), "run should stop after {stop_after} writes");
        build_silver(&layout(lake.path())).await.expect("rerun");
        assert_eq!(observed(lake.path()).await, expected, "killed after {stop_after} writes");
    }
}

/// Driver totals and monthly figures recomputed from the oracle's published rides.
fn gold_oracle(lines: &[String]) -> (BTreeMap<i64, (i64, i64, i64)>, BTreeMap<(i32, u32), (i64, i64)>) {
    let expected = oracle(lines);
    let keys = order_keys(lines);
    let mut latest: HashMap<i64, ((i64, i64, i64, i64, usize), Value)> = HashMap::new();
    for (line, key) in lines.iter().zip(keys) {
        let Some(key) = key else { continue };
        let msg: Value = serde_json::from_str(line).expect("json");
        if msg["record"]["stream"] != "rides" {
            continue;
        }
        let data = msg["record"]["data"].clone();
        let Some(id) = data["id"].as_i64() else { continue };
        if !expected.rides.contains_key(&id) {
            continue;
        }
        let deleted = !data["_ab_cdc_deleted_at"].is_null();
        let valid = !deleted && !data["customer_id"].is_null() && !data["requested_at"].is_null();
        if valid && latest.get(&id).is_none_or(|(k, _)| key > *k) {
            latest.insert(id, (key, data));
        }
    }
    let mut drivers: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
    let mut months: BTreeMap<(i32, u32), (i64, i64)> = BTreeMap::new();
    for (_, ride) in latest.values() {
        let completed = ride["status"] == "completed";
        let requested = utc(ride["requested_at"].as_str().expect("ts"));
        let month = (chrono::Datelike::year(&requested), chrono::Datelike::month(&requested));
        let distance_m = (ride["distance_km"].as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
        let m = months.entry(month).or_default();
        m.0 += 1;
        if completed {
            m.1 += distance_m;
        }
        if let Some(driver) = ride["driver_id"].as_i64() {
            let d = drivers.entry(driver).or_default();
            d.0 += 1;
            d.1 += i64::from(completed);
            if completed {
                d.2 += distance_m;
            }
        }
    }
    (drivers, months)
}

/// A date-time as source-mysql sends it: RFC 3339, or without a zone (a DATETIME, read as UTC).
fn utc(text: &str) -> chrono::NaiveDateTime {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.naive_utc())
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f"))
        .expect("a date-time")
}

async fn read_gold(lake: &std::path::Path, table: &str) -> DataFrame {
    let layout = layout(lake);
    let t = io::open(&layout.gold(table).expect("url"), &layout.storage_options()).await.expect("open").expect("gold table");
    io::read_all(&t).await.expect("read")
}

fn int(frame: &DataFrame, column: &str, row: usize) -> i64 {
    frame.column(column).expect(column).get(row).expect("row").try_extract::<i64>().expect("int")
}

fn float(frame: &DataFrame, column: &str, row: usize) -> f64 {
    frame.column(column).expect(column).get(row).expect("row").try_extract::<f64>().expect("float")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_matches_the_oracle_and_incremental_gold_equals_full() {
    use ridelake_lakehouse::gold::build_gold;
    let lines = generate(GeneratorConfig { seed: 21, ..small() });
    let (drivers, months) = gold_oracle(&lines);

    let incremental = tempfile::tempdir().expect("tempdir");
    let mut start = 0;
    for cut in [lines.len() / 3, lines.len() * 2 / 3, lines.len()] {
        sync(incremental.path(), &lines[start..cut]).await;
        build_silver(&layout(incremental.path())).await.expect("silver");
        let report = build_gold(&layout(incremental.path())).await.expect("gold");
        assert!(!report.noop);
        start = cut;
    }
    assert!(build_gold(&layout(incremental.path())).await.expect("gold rerun").noop);

    let stats = read_gold(incremental.path(), "driver_stats").await;
    let mut got = BTreeMap::new();
    for row in 0..stats.height() {
        let distance_m = (float(&stats, "distance_km", row) * 1000.0).round() as i64;
        got.insert(int(&stats, "driver_id", row), (int(&stats, "rides", row), int(&stats, "completed", row), distance_m));
    }
    assert_eq!(got, drivers);
    let monthly = read_gold(incremental.path(), "monthly_distance").await;
    let mut got = BTreeMap::new();
    for row in 0..monthly.height() {
        let key = (int(&monthly, "year", row) as i32, int(&monthly, "month", row) as u32);
        got.insert(key, (int(&monthly, "rides", row), (float(&monthly, "distance_km", row) * 1000.0).round() as i64));
    }
    assert_eq!(got, months);

    let full = tempfile::tempdir().expect("tempdir");
    sync(full.path(), &lines).await;
    build_silver(&layout(full.path())).await.expect("silver");
    build_gold(&layout(full.path())).await.expect("gold");
    for table in ["daily_city_kpis", "driver_stats", "customer_totals", "monthly_distance"] {
        let keys: Vec<&str> = match table {
            "daily_city_kpis" => vec!["year", "month", "day", "city"],
            "driver_stats" => vec!["driver_id"],
            "customer_totals" => vec!["customer_id"],
            _ => vec!["year", "month"],
        };
        let a = read_gold(incremental.path(), table).await.sort(keys.clone(), Default::default()).expect("sort");
        let b = read_gold(full.path(), table).await.sort(keys, Default::default()).expect("sort");
        assert_eq!(a.shape(), b.shape(), "{table}");
        for name in a.get_column_names() {
            let (x, y) = (a.column(name).expect("col"), b.column(name).expect("col"));
            let same = match x.dtype() {
                DataType::Float64 => x.f64().expect("f64").iter().zip(y.f64().expect("f64").iter())
                    .all(|(p, q)| match (p, q) { (Some(p), Some(q)) => (p - q).abs() < 1e-6 * p.abs().max(1.0), (None, None) => true, _ => false }),
                _ => x.as_materialized_series().equals_missing(y.as_materialized_series()),
            };
            assert!(same, "{table}.{name} differs between incremental and full");
        }
    }
}
