//! Maintenance is invisible: for random histories cut into many small syncs, a lake maintained
//! at random points (bronze, silver and gold compacted, logs cleaned and vacuumed with no
//! retention at all, and sometimes right after a silver run that died midway) gives the same
//! silver and gold as a lake never maintained. (Every column but the bronze version of a change:
//! maintenance's own bronze commits shift the versions of later syncs, in order.) Silver's runs
//! after maintenance stay incremental, and a rebuild of the maintained lake, which must read the
//! compacted bronze files and a cleaned log, gives its tables again, every column included (the
//! change order's bronze version and row too). Bronze is written by the real connector pipeline.
//! With users from a table per role (`[[users.streams]]`), maintenance compacts each table within
//! what silver processed of it (its own marker), and the runs after it stay incremental.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Rng, SILVER, assert_same, generate, layout, read_table, sync};
use polars::prelude::{DataFrame, PlSmallStr};
use ridelake_core::generator::{GeneratorConfig, configured_catalog};
use ridelake_lakehouse::LakehouseError;
use ridelake_lakehouse::gold::{GOLD_MARKER, GOLD_TABLES, build_gold};
use ridelake_lakehouse::io;
use ridelake_lakehouse::maintain::{LOG_CLEANUP_PROPERTY, MaintainOptions, MaintenanceReport, maintain};
use ridelake_lakehouse::model::Model;
use ridelake_lakehouse::silver::{SilverOptions, build_silver, build_silver_with};

/// Maintenance with no retention at all: everything that may go, goes.
fn eager() -> MaintainOptions {
    MaintainOptions { retention: Duration::ZERO, log_retention: Duration::ZERO, checkpoint_every: 2, ..Default::default() }
}

async fn tables(lake: &Path) -> Vec<(String, DataFrame)> {
    let mut out = Vec::new();
    for table in SILVER.iter().map(|t| format!("silver/{t}")).chain(GOLD_TABLES.iter().map(|t| format!("gold/{t}"))) {
        let frame = read_table(lake, &table).await;
        out.push((table, frame));
    }
    out
}

/// The tables without the bronze versions of changes, which differ between two lakes whose
/// bronze tables had different commits (in the same order).
fn without_versions(tables: &[(String, DataFrame)]) -> Vec<(String, DataFrame)> {
    tables
        .iter()
        .map(|(name, frame)| {
            let keep: Vec<PlSmallStr> = frame.get_column_names().into_iter().filter(|c| !matches!(c.as_str(), "_cdc_bronze_version" | "bronze_version")).cloned().collect();
            (name.clone(), frame.select(keep).expect("select"))
        })
        .collect()
}

async fn bronze_files(lake: &Path) -> usize {
    let layout = layout(lake, None);
    let mut n = 0;
    for stream in ["users", "rides"] {
        let table = io::open(&layout.bronze(stream).expect("url"), &layout.storage_options()).await.expect("open").expect("bronze");
        n += io::files(&table).expect("files").len();
    }
    n
}

fn log_entries(lake: &Path, table: &str) -> usize {
    std::fs::read_dir(lake.join(table).join("_delta_log")).map(|d| d.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().ends_with(".json")).count()).unwrap_or(0)
}

async fn check(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let context = format!("seed {seed}");
    let lines = generate(GeneratorConfig {
        seed,
        users: 40,
        rides: 200,
        changes: 1200,
        // A STATE every 60 records: each sync commits several small files.
        state_every: 60,
        late_user_rate: 0.3,
        bad_null_rate: 0.02,
        delete_rate: 0.05,
        reinsert_rate: 0.02,
        type_change_rate: 0.02,
        user_delete_rate: 0.01,
        ..Default::default()
    });
    let catalog = configured_catalog(common::NS, "append", 1, 0, 1);
    let (plain, kept) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let syncs = 6;
    let mut maintained = MaintenanceReport::default();
    for i in 0..syncs {
        let part = &lines[lines.len() * i / syncs..lines.len() * (i + 1) / syncs];
        sync(plain.path(), &catalog, part).await;
        sync(kept.path(), &catalog, part).await;
        build_silver(&layout(plain.path(), None)).await.expect("silver");
        build_gold(&layout(plain.path(), None)).await.expect("gold");
        // The maintained lake: sometimes a silver run dies midway first (its leftovers are what
        // vacuum must not take from the next run).
        let crash = rng.below(3) == 0 && i > 0;
        if crash {
            let limit = 1 + rng.below(4);
            match build_silver_with(&layout(kept.path(), None), &SilverOptions { fail_after_writes: Some(limit), ..Default::default() }).await {
                Ok(_) | Err(LakehouseError::Interrupted(_)) => {}
                Err(e) => panic!("interrupted run: {e} ({context})"),
            }
            maintained = maintain(&layout(kept.path(), None), &eager()).await.unwrap_or_else(|e| panic!("maintenance after a crash: {e} ({context})"));
        }
        let report = build_silver(&layout(kept.path(), None)).await.expect("silver");
        assert!(crash || i == 0 || report.rebuild.is_none(), "maintenance must not cost an increment: {report:?} ({context})");
        // Gold sometimes lags behind silver when maintenance runs (its version must stay readable).
        if i == 0 || i == syncs - 1 || rng.below(3) > 0 {
            build_gold(&layout(kept.path(), None)).await.expect("gold");
        }
        if rng.below(2) == 0 || i == syncs - 2 {
            maintained = maintain(&layout(kept.path(), None), &eager()).await.unwrap_or_else(|e| panic!("maintenance: {e} ({context})"));
            // The version of silver rides gold reflects is still readable: gold's next run
            // compares files with it instead of recomputing every day.
            let lake = layout(kept.path(), None);
            let options = lake.storage_options();
            let (_, marker) = io::open_with_marker(&lake.gold("driver_stats").expect("url"), &options, GOLD_MARKER).await.expect("gold");
            let marker = marker.expect("gold marker");
            io::open_version(&lake.silver("rides").expect("url"), &options, marker as u64).await.unwrap_or_else(|e| panic!("silver rides at gold's version {marker}: {e} ({context})"));
        }
    }
    let (expected, got) = (tables(plain.path()).await, tables(kept.path()).await);
    for ((table, a), (_, b)) in without_versions(&expected).iter().zip(&without_versions(&got)) {
        assert_same(table, a, b, &format!("{context}, incremental"));
    }
    assert!(maintained.tables.iter().any(|t| t.files_compacted > 0), "{maintained:#?}");
    assert!(bronze_files(kept.path()).await < bronze_files(plain.path()).await, "bronze was compacted ({context})");
    let bronze_log = "bronze/ridehail/rides";
    assert!(log_entries(kept.path(), bronze_log) < log_entries(plain.path(), bronze_log), "bronze's log was cleaned ({context})");

    // A rebuild reads compacted files and a cleaned log: the same tables, change order included.
    let rebuilt = build_silver_with(&layout(kept.path(), None), &SilverOptions { rebuild: true, ..Default::default() }).await.expect("rebuild");
    assert!(rebuilt.rebuild.is_some());
    build_gold(&layout(kept.path(), None)).await.expect("gold");
    for ((table, a), (_, b)) in got.iter().zip(&tables(kept.path()).await) {
        assert_same(table, a, b, &format!("{context}, rebuilt after maintenance"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_never_changes_silver_or_gold() {
    let extra: u64 = std::env::var("RIDELAKE_MAINTENANCE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    for seed in (1..=3).chain(100..100 + extra) {
        check(seed).await;
    }
}

/// A second run finds nothing to compact, and removed files stay while the retention says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_is_idempotent_and_keeps_what_the_retention_keeps() {
    let lines = generate(GeneratorConfig { seed: 9, users: 20, rides: 80, changes: 300, state_every: 40, ..Default::default() });
    let catalog = configured_catalog(common::NS, "append", 1, 0, 1);
    let lake = tempfile::tempdir().expect("tempdir");
    // Five syncs: five small files per stream.
    for part in lines.chunks(lines.len().div_ceil(5)) {
        sync(lake.path(), &catalog, part).await;
    }
    build_silver(&layout(lake.path(), None)).await.expect("silver");
    build_gold(&layout(lake.path(), None)).await.expect("gold");
    let before = tables(lake.path()).await;
    // Default retention (7 days): compaction happens, nothing is deleted yet.
    let first = maintain(&layout(lake.path(), None), &MaintainOptions::default()).await.expect("maintain");
    let bronze = first.tables.iter().find(|t| t.table == "bronze/ridehail/rides").expect("bronze rides");
    assert!(bronze.files_compacted > 1 && bronze.files_written == 1 && bronze.files_after == 1, "{bronze:?}");
    assert_eq!(first.bytes_reclaimed(), 0, "{first:#?}");
    assert_eq!(first.tables.iter().map(|t| t.logs_removed).sum::<u64>(), 0, "{first:#?}");
    let parquet_files = |dir: &Path| walk(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet") && !p.to_string_lossy().contains("_delta_log")).count();
    let on_disk = parquet_files(lake.path());
    // Every table now leaves log cleanup to maintenance (delta-rs's own would ignore the floors).
    let options = layout(lake.path(), None).storage_options();
    for done in &first.tables {
        let url = url::Url::from_directory_path(lake.path().join(&done.table)).expect("url");
        let table = io::open(&url, &options).await.expect("open").expect("table");
        let config = table.snapshot().expect("snapshot").metadata().configuration().clone();
        assert_eq!(config.get(LOG_CLEANUP_PROPERTY).map(String::as_str), Some("false"), "{}", done.table);
    }
    // Again: nothing left to compact, and no commit at all (vacuum writes none).
    let second = maintain(&layout(lake.path(), None), &MaintainOptions::default()).await.expect("maintain");
    assert!(second.tables.iter().all(|t| t.files_compacted == 0), "{second:#?}");
    for (a, b) in first.tables.iter().zip(&second.tables) {
        assert!(a.version == b.version || a.table.ends_with("_lease"), "{a:?} then {b:?}");
    }
    assert_eq!(parquet_files(lake.path()), on_disk);
    // No retention: the replaced files go.
    let third = maintain(&layout(lake.path(), None), &eager()).await.expect("maintain");
    assert!(third.bytes_reclaimed() > 0 && parquet_files(lake.path()) < on_disk, "{third:#?}");
    for ((table, a), (_, b)) in before.iter().zip(&tables(lake.path()).await) {
        assert_same(table, a, b, "after three maintenance runs");
    }
    assert!(build_silver(&layout(lake.path(), None)).await.expect("silver").rebuild.is_none());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A model whose users come from a table per role.
const TWO_TABLES: &str = "version = 1\n[[users.streams]]\nstream = \"passengers\"\ntype = \"customer\"\n[[users.streams]]\nstream = \"drivers\"\ntype = \"driver\"\n";

/// `lines` (a history without type changes) with each users change in the table of its user's
/// role, and the catalog of those tables (the users stream's, twice).
fn split_by_role(lines: &[String]) -> (Vec<String>, String) {
    let parse = |line: &String| serde_json::from_str::<serde_json::Value>(line).expect("json");
    let mut drivers = std::collections::BTreeSet::new();
    for message in lines.iter().map(parse) {
        if message["record"]["stream"] == "users" && message["record"]["data"]["type"] == "driver" {
            drivers.insert(message["record"]["data"]["id"].as_i64());
        }
    }
    let split = lines
        .iter()
        .map(|line| {
            let mut message = parse(line);
            if message["type"] != "RECORD" || message["record"]["stream"] != "users" {
                return line.clone();
            }
            let driver = drivers.contains(&message["record"]["data"]["id"].as_i64());
            message["record"]["stream"] = serde_json::json!(if driver { "drivers" } else { "passengers" });
            message.to_string()
        })
        .collect();
    let mut catalog: serde_json::Value = serde_json::from_str(&configured_catalog(common::NS, "append", 1, 0, 1)).expect("catalog");
    let streams = catalog["streams"].as_array_mut().expect("streams");
    let users = streams.iter().position(|s| s["stream"]["name"] == "users").expect("users");
    let users = streams.remove(users);
    for name in ["passengers", "drivers"] {
        let mut stream = users.clone();
        stream["stream"]["name"] = serde_json::json!(name);
        streams.insert(0, stream);
    }
    (split, catalog.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_compacts_each_users_table_within_its_marker() {
    let lines = generate(GeneratorConfig { seed: 11, users: 40, rides: 200, changes: 1200, state_every: 60, late_user_rate: 0.3, type_change_rate: 0.0, ..Default::default() });
    let (lines, catalog) = split_by_role(&lines);
    let model = Model::parse(TWO_TABLES, "two-tables.toml").expect("model");
    let (plain, kept) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let syncs = 6;
    for i in 0..syncs {
        let part = &lines[lines.len() * i / syncs..lines.len() * (i + 1) / syncs];
        sync(plain.path(), &catalog, part).await;
        sync(kept.path(), &catalog, part).await;
        build_silver(&layout(plain.path(), Some(&model))).await.expect("silver");
        let report = build_silver(&layout(kept.path(), Some(&model))).await.expect("silver");
        assert!(i == 0 || report.rebuild.is_none(), "maintenance must not cost an increment: {report:?}");
        if i % 2 == 1 {
            maintain(&layout(kept.path(), Some(&model)), &eager()).await.expect("maintenance");
        }
    }
    let (expected, got) = (tables(plain.path()).await, tables(kept.path()).await);
    for ((table, a), (_, b)) in without_versions(&expected).iter().zip(&without_versions(&got)) {
        assert_same(table, a, b, "two users tables, incremental");
    }
    let files = |lake: &Path, stream: &'static str| {
        let layout = layout(lake, None);
        async move { io::files(&io::open(&layout.bronze(stream).expect("url"), &layout.storage_options()).await.expect("open").expect("bronze")).expect("files").len() }
    };
    for stream in ["passengers", "drivers"] {
        assert!(files(kept.path(), stream).await < files(plain.path(), stream).await, "bronze {stream} was compacted");
    }
    let rebuilt = build_silver_with(&layout(kept.path(), Some(&model)), &SilverOptions { rebuild: true, ..Default::default() }).await.expect("rebuild");
    assert!(rebuilt.rebuild.is_some());
    for ((table, a), (_, b)) in got.iter().zip(&tables(kept.path()).await) {
        assert_same(table, a, b, "two users tables, rebuilt after maintenance");
    }
}
