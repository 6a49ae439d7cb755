//! Helpers shared by the integration tests: the generator's history, bronze written by the real
//! connector pipeline, and silver and gold tables read back in a comparable order.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use destination_delta_lake::catalog::Catalog;
use destination_delta_lake::config::DestinationOptions;
use destination_delta_lake::protocol::Emitter;
use destination_delta_lake::write::run_write;
use polars::prelude::*;
use ridelake_core::generator::{Generator, GeneratorConfig};
use ridelake_core::storage::StorageConfig;
use ridelake_lakehouse::io;
use ridelake_lakehouse::layout::LakeLayout;
use ridelake_lakehouse::model::Model;
use ridelake_core::generator::configured_catalog;
use serde_json::{Map, Value, json};

/// xorshift64*: a small, seeded, dependency-free generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// The namespace of the generator's streams.
pub const NS: &str = "ridehail";

/// Every silver table.
pub const SILVER: [&str; 5] = ["users", "rides", "rides_pending", "rides_deleted", "quarantine"];

/// The generator's messages, one per line.
pub fn generate(cfg: GeneratorConfig) -> Vec<String> {
    let mut out = Vec::new();
    Generator::new(cfg, &mut out).run().expect("generate");
    String::from_utf8(out).expect("utf8").lines().map(str::to_owned).collect()
}

/// One sync of `lines` into the lake's bronze, by the connector's pipeline.
pub async fn sync(lake: &Path, catalog: &str, lines: &[String]) {
    let options = DestinationOptions::from_json(&json!({"storage": {"storage_type": "Local", "local_path": lake.join("bronze")}}).to_string()).expect("config");
    let catalog = Catalog::from_json(catalog, "default").expect("catalog");
    let emitter = Arc::new(Emitter::to_writer(Box::new(std::io::sink())));
    run_write(options, catalog, Box::new(Cursor::new(lines.join("\n").into_bytes())), emitter).await.expect("bronze sync");
}

/// The lake at `lake`, read through `model` (the default one when `None`).
pub fn layout(lake: &Path, model: Option<&Model>) -> LakeLayout {
    let layout = LakeLayout::new(StorageConfig::Local { path: lake.to_path_buf() }, NS).expect("layout");
    match model {
        Some(m) => layout.with_model(m.clone()),
        None => layout,
    }
}

/// A silver table (`silver/<table>`) or gold table (`gold/<table>`), sorted by its key (empty
/// when missing). `_airbyte_raw_id` is dropped: it differs between two lakes of one history.
pub async fn read_table(lake: &Path, table: &str) -> DataFrame {
    read_modeled_table(lake, None, table).await
}

/// [`read_table`] of a lake whose silver tables `model` names (`users`, `rides`, … are the
/// names the code knows them by).
pub async fn read_modeled_table(lake: &Path, model: Option<&Model>, table: &str) -> DataFrame {
    let layout = layout(lake, model);
    let url = match table.split_once('/') {
        Some(("gold", name)) => layout.gold(name),
        Some((_, name)) => layout.silver(name),
        None => layout.silver(table),
    }
    .expect("url");
    let Some(t) = io::open(&url, &layout.storage_options()).await.expect("open") else { return DataFrame::empty() };
    let frame = io::read_all(&t).await.expect("read");
    let frame = if frame.column("_airbyte_raw_id").is_ok() { frame.drop("_airbyte_raw_id").expect("drop") } else { frame };
    sorted_by_key(frame)
}

/// `frame` sorted as [`read_table`] returns tables: by the key columns it has, nulls last.
pub fn sorted_by_key(frame: DataFrame) -> DataFrame {
    let mut by: Vec<PlSmallStr> = Vec::new();
    for key in ["year", "month", "day", "city", "driver_id", "customer_id", "id", "table", "rule", "_cdc_bronze_version", "_cdc_bronze_row"] {
        if frame.column(key).is_ok() {
            by.push(key.into());
        }
    }
    if by.is_empty() {
        return frame;
    }
    frame.sort(by, SortMultipleOptions::default().with_nulls_last(true)).expect("sort")
}

/// Equal tables: same columns and rows; floats equal to 1e-9 relative (a scaled value may differ
/// from the decimal text in the last bit).
pub fn assert_same(table: &str, expected: &DataFrame, got: &DataFrame, context: &str) {
    assert_eq!(expected.height(), got.height(), "{table}: row count ({context})");
    let mut names: Vec<String> = expected.get_column_names().iter().map(|n| n.to_string()).collect();
    names.sort();
    let mut got_names: Vec<String> = got.get_column_names().iter().map(|n| n.to_string()).collect();
    got_names.sort();
    assert_eq!(names, got_names, "{table}: columns ({context})");
    for name in &names {
        let (a, b) = (expected.column(name).expect("column"), got.column(name).expect("column"));
        if a.dtype() == &DataType::Float64 || b.dtype() == &DataType::Float64 {
            let (a, b) = (a.cast(&DataType::Float64).expect("f64"), b.cast(&DataType::Float64).expect("f64"));
            for (row, (x, y)) in a.f64().expect("f64").iter().zip(b.f64().expect("f64").iter()).enumerate() {
                let same = match (x, y) {
                    (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
                    (None, None) => true,
                    _ => false,
                };
                assert!(same, "{table}.{name} row {row}: {x:?} != {y:?} ({context})");
            }
        } else {
            assert!(a.as_materialized_series().equals_missing(b.as_materialized_series()), "{table}.{name} differs ({context})\n{a:?}\n{b:?}");
        }
    }
}

/// The generator's settings of a rough history for `seed`: 300 rides and 40 users over 1,500
/// changes, with duplicates, late users, bad nulls, deletes, re-inserts, retyped and deleted
/// users. Callers add an upgrade or a binlog restart.
pub fn rough_history(seed: u64) -> GeneratorConfig {
    GeneratorConfig {
        seed,
        users: 40,
        rides: 300,
        changes: 1500,
        state_every: 100,
        duplicate_rate: 0.03,
        late_user_rate: 0.3,
        bad_null_rate: 0.02,
        delete_rate: 0.05,
        reinsert_rate: 0.03,
        type_change_rate: 0.02,
        user_delete_rate: 0.01,
        ..Default::default()
    }
}

/// The counts of two runs' reports that must agree when the runs decided the same changes
/// (however they were sliced or wherever the slices ran).
pub fn assert_same_counts(one: &ridelake_lakehouse::silver::SilverReport, other: &ridelake_lakehouse::silver::SilverReport, context: &str) {
    for (field, a, b) in [
        ("rides_read", one.rides_read, other.rides_read),
        ("rides_upserted", one.rides_upserted, other.rides_upserted),
        ("pending", one.pending, other.pending),
        ("rides_deleted", one.rides_deleted, other.rides_deleted),
        ("quarantined", one.quarantined, other.quarantined),
        ("partitions_rewritten", one.partitions_rewritten, other.partitions_rewritten),
        ("rides_expired", one.rides_expired, other.rides_expired),
        ("users_read", one.users_read, other.users_read),
        ("users_upserted", one.users_upserted, other.users_upserted),
        ("users_deleted", one.users_deleted, other.users_deleted),
        ("users_quarantined", one.users_quarantined, other.users_quarantined),
        ("dropped", one.dropped, other.dropped),
    ] {
        assert_eq!(a, b, "report {field} ({context})");
    }
    assert_eq!(one.oldest_pending_us, other.oldest_pending_us, "report oldest_pending_us ({context})");
}

/// `syncs` with every record stamped with its sync's extraction time (`emitted_at`): sync `i`
/// runs at `start_ms + i * every_ms`, as when a scheduler syncs every `every_ms`. A record that
/// comes in a later sync (a lagging user) is extracted then.
pub fn stamped(syncs: Vec<Vec<String>>, start_ms: i64, every_ms: i64) -> Vec<Vec<String>> {
    syncs
        .into_iter()
        .enumerate()
        .map(|(i, lines)| {
            lines
                .into_iter()
                .map(|line| {
                    let mut message: serde_json::Value = serde_json::from_str(&line).expect("a message");
                    if message["type"] == "RECORD" {
                        message["record"]["emitted_at"] = serde_json::json!(start_ms + i as i64 * every_ms);
                    }
                    message.to_string()
                })
                .collect()
        })
        .collect()
}

/// `lines` cut into `count` consecutive syncs of about as many lines.
pub fn cut(lines: &[String], count: usize) -> Vec<Vec<String>> {
    (0..count).map(|i| lines[lines.len() * i / count..lines.len() * (i + 1) / count].to_vec()).collect()
}

/// The generator's catalog with some fields' types replaced (stream, field, JSON schema) and some
/// fields left out (stream, field).
pub fn catalog(types: &[(&str, &str, Value)], left_out: &[(&str, &str)]) -> String {
    let mut catalog: Value = serde_json::from_str(&configured_catalog(NS, "append", 1, 0, 1)).expect("catalog");
    for stream in catalog["streams"].as_array_mut().expect("streams") {
        let name = stream["stream"]["name"].as_str().expect("name").to_owned();
        let properties = stream["stream"]["json_schema"]["properties"].as_object_mut().expect("properties");
        for (s, field, schema) in types {
            if *s == name {
                properties.insert((*field).to_owned(), schema.clone());
            }
        }
        for (s, field) in left_out {
            if *s == name {
                properties.remove(*field);
            }
        }
    }
    catalog.to_string()
}

/// `line` with `edit` applied to a record's stream and data (other messages as they are).
pub fn edited(line: &str, edit: impl Fn(&str, &mut Map<String, Value>)) -> String {
    let mut message: Value = serde_json::from_str(line).expect("json");
    if message["type"] != "RECORD" {
        return line.to_owned();
    }
    let stream = message["record"]["stream"].as_str().expect("stream").to_owned();
    edit(&stream, message["record"]["data"].as_object_mut().expect("data"));
    message.to_string()
}

/// The text code of key `id` of `table` (`users` or `rides`) in a history with text keys: a hex hash (so that the
/// codes' byte order is not the numbers'), a prefix of mixed case or non-ASCII, and the number
/// (so that codes are unique).
pub fn text_key(table: &str, id: i64) -> String {
    let hash = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    let prefix = match (table, id.rem_euclid(3)) {
        ("users", 0) => "acc-",
        ("users", 1) => "Acc_",
        ("users", _) => "ü",
        (_, 0) => "trip-",
        (_, 1) => "T",
        _ => "",
    };
    format!("{prefix}{hash:06x}-{id}")
}

/// A generator line with text keys ([`text_key`]): the users' ids and the rides' links as the
/// users' codes, the rides' ids as the rides' (other messages as they are).
pub fn text_keyed(line: &str) -> String {
    edited(line, |stream, data| {
        let table = if stream == "users" { "users" } else { "rides" };
        for (column, kind) in [("id", table), ("customer_id", "users"), ("driver_id", "users")] {
            let Some(value) = data.get_mut(column) else { continue };
            if let Some(id) = value.as_i64().or_else(|| value.as_str().and_then(|s| s.parse().ok())) {
                *value = json!(text_key(kind, id));
            }
        }
    })
}

/// The generator's catalog with the keys and links declared as text ([`text_keyed`]).
pub fn text_key_catalog() -> String {
    let text = json!({"type": "string"});
    catalog(&[("users", "id", text.clone()), ("rides", "id", text.clone()), ("rides", "customer_id", text.clone()), ("rides", "driver_id", text)], &[])
}

/// The version of every silver table (None: not created).
pub async fn silver_versions(lake: &Path) -> Vec<Option<u64>> {
    let layout = layout(lake, None);
    let mut versions = Vec::new();
    for table in SILVER {
        let t = io::open(&layout.silver(table).expect("url"), &layout.storage_options()).await.expect("open");
        versions.push(t.and_then(|t| t.version()));
    }
    versions
}

/// Gold's rides requested per (year, month, day, city), from `daily_city_kpis`.
pub async fn requests(lake: &Path) -> BTreeMap<(i64, i64, i64, String), i64> {
    let kpis = read_table(lake, "gold/daily_city_kpis").await;
    let num = |name: &str| -> Vec<i64> { kpis.column(name).expect(name).as_materialized_series().cast(&DataType::Int64).expect("i64").i64().expect("i64").iter().map(|v| v.expect("value")).collect() };
    let (year, month, day, requested) = (num("year"), num("month"), num("day"), num("requested"));
    let city: Vec<String> = kpis.column("city").expect("city").str().expect("text").iter().map(|c| c.expect("city").to_owned()).collect();
    (0..kpis.height()).map(|k| ((year[k], month[k], day[k], city[k].clone()), requested[k])).collect()
}
