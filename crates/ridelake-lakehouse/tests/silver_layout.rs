//! Where silver is and how it is filed, as the model says (`table`, `partition`): a lake whose
//! model names its silver tables and files users and rides by another day (or by none) holds, in
//! those tables, what the default lake holds, sync after sync, through maintenance and a rebuild;
//! gold computed from such rides, incrementally, is the default's, and gold follows a rename; a
//! change of partitioning is refused before anything is written, with what to do, and done once
//! the table is renamed; a change without the day it is filed by is quarantined. Bronze is
//! written by the real connector pipeline from a rough generator history (duplicates, late users,
//! bad nulls, deletes, re-inserts, retyped and deleted users).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{SILVER, assert_same, edited, generate, layout, read_modeled_table, read_table, rough_history, sorted_by_key, sync};
use polars::prelude::*;
use ridelake_core::generator::configured_catalog;
use ridelake_lakehouse::LakehouseError;
use ridelake_lakehouse::gold::{GOLD_TABLES, build_gold};
use ridelake_lakehouse::maintain::{MaintainOptions, maintain};
use ridelake_lakehouse::model::Model;
use ridelake_lakehouse::silver::{SilverOptions, build_silver, build_silver_with};
use serde_json::Value;

const NAMED: &str = "version = 1\n[users]\ntable = \"members\"\npartition = \"{users}\"\n[rides]\ntable = \"journeys\"\npartition = \"{rides}\"\n";

/// Silver users in `members`, filed by the day of `users` (or by none), and silver rides in
/// `journeys`, filed by the day of `rides`.
fn named(users: &str, rides: &str) -> Model {
    Model::parse(&NAMED.replace("{users}", users).replace("{rides}", rides), "named.toml").expect("model")
}

/// `frame` without its partition columns (when it has them), sorted as tables are read.
fn unfiled(frame: DataFrame) -> DataFrame {
    sorted_by_key(frame.drop_many(["year", "month", "day"]))
}

/// Every silver table of `lake` (through `model`) equals the default lake's at `plain`, users
/// and rides compared without their partition columns.
async fn same_silver(plain: &Path, lake: &Path, model: &Model, context: &str) {
    for table in SILVER {
        let (expected, got) = (read_table(plain, table).await, read_modeled_table(lake, Some(model), table).await);
        let (expected, got) = if table == "users" || table == "rides" { (unfiled(expected), unfiled(got)) } else { (expected, got) };
        assert_same(table, &expected, &got, context);
    }
}

/// Every gold table of `lake` equals the default lake's at `plain`.
async fn same_gold(plain: &Path, lake: &Path, context: &str) {
    for table in GOLD_TABLES {
        let table = format!("gold/{table}");
        assert_same(&table, &read_table(plain, &table).await, &read_table(lake, &table).await, context);
    }
}

/// Fails unless every row of `frame` is filed by the UTC day of its `column` (its year, month
/// and day columns), or, with no `column`, has no such columns.
fn filed_by(frame: &DataFrame, column: Option<&str>, context: &str) {
    let Some(column) = column else {
        assert!(frame.column("year").is_err() && frame.column("day").is_err(), "an unpartitioned table has no day columns ({context})");
        return;
    };
    let day = |e: Expr| e.cast(DataType::Int32);
    let wrong = frame
        .clone()
        .lazy()
        .filter(day(col(column).dt().day()).neq(col("day")).or(day(col(column).dt().month()).neq(col("month"))).or(day(col(column).dt().year()).neq(col("year"))))
        .collect()
        .expect("filter");
    assert_eq!(wrong.height(), 0, "rows filed by another day than {column}'s ({context})");
}

/// The partition columns of the silver table folder `folder` of `lake`, from its Delta log.
async fn partition_columns(lake: &Path, folder: &str) -> Vec<String> {
    let url = url::Url::from_directory_path(lake.join("silver").join(folder)).expect("url");
    let table = ridelake_lakehouse::io::open(&url, &Default::default()).await.expect("open").expect("a table");
    table.snapshot().expect("snapshot").metadata().partition_columns().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_and_refiled_tables_hold_the_default_silver_and_gold() {
    for (seed, users, rides) in [(31, "none", "updated_at"), (32, "updated_at", "none"), (35, "created_at", "created_at")] {
        let context = format!("seed {seed}, users partition {users}, rides partition {rides}");
        let model = named(users, rides);
        let lines = generate(rough_history(seed));
        let (plain, lake) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
        let catalog = configured_catalog(common::NS, "append", 1, 0, 1);
        let parts = common::cut(&lines, 4);
        for (k, part) in parts.iter().enumerate() {
            sync(plain.path(), &catalog, part).await;
            sync(lake.path(), &catalog, part).await;
            // Increments, some in slices (each slice reads users as the run staged them).
            let options = SilverOptions { slices: (k % 2 == 1).then_some(3), ..Default::default() };
            build_silver_with(&layout(lake.path(), Some(&model)), &options).await.unwrap_or_else(|e| panic!("{e} ({context})"));
            build_silver(&layout(plain.path(), None)).await.expect("default silver");
            same_silver(plain.path(), lake.path(), &model, &format!("{context}, after sync {k}")).await;
            // Gold, incrementally: the days whose rides changed are found in rides filed by
            // another day too.
            build_gold(&layout(plain.path(), None)).await.expect("gold");
            let gold = build_gold(&layout(lake.path(), Some(&model))).await.unwrap_or_else(|e| panic!("gold: {e} ({context})"));
            assert!(k == 0 || gold.recomputed_all.is_none(), "{gold:?} ({context})");
            same_gold(plain.path(), lake.path(), &format!("{context}, gold after sync {k}")).await;
            if k == 1 {
                // Maintenance compacts the named tables (and bronze, in both lakes alike, so that
                // the changes' bronze versions stay comparable); the runs after stay incremental.
                let options = MaintainOptions { retention: Duration::ZERO, ..Default::default() };
                maintain(&layout(lake.path(), Some(&model)), &options).await.unwrap_or_else(|e| panic!("maintenance: {e} ({context})"));
                maintain(&layout(plain.path(), None), &options).await.expect("maintenance of the default lake");
            }
        }
        // Only the named folders exist; users and rides are filed as asked.
        let mut folders: Vec<String> =
            std::fs::read_dir(lake.path().join("silver")).expect("silver").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).filter(|n| !n.starts_with('_')).collect();
        folders.sort();
        assert_eq!(folders, ["journeys", "journeys_deleted", "journeys_pending", "members", "quarantine"], "{context}");
        for (folder, table, partition) in [("members", "users", users), ("journeys", "rides", rides)] {
            let expected: &[&str] = if partition == "none" { &[] } else { &["year", "month", "day"] };
            assert_eq!(partition_columns(lake.path(), folder).await, expected, "{context}");
            let rows = read_modeled_table(lake.path(), Some(&model), table).await;
            filed_by(&rows, (partition != "none").then_some(partition), &format!("{table}, {context}"));
        }
        // A rebuild from all of bronze gives what the increments gave.
        let mut incremental = Vec::new();
        for table in SILVER {
            incremental.push(read_modeled_table(lake.path(), Some(&model), table).await);
        }
        let report = build_silver_with(&layout(lake.path(), Some(&model)), &SilverOptions { rebuild: true, ..Default::default() }).await.expect("rebuild");
        assert!(report.rebuild.is_some(), "{report:?}");
        for (table, many) in SILVER.iter().zip(incremental) {
            assert_same(table, &many, &read_modeled_table(lake.path(), Some(&model), table).await, &format!("{context}: incremental = rebuild"));
        }
        // Gold after the rebuild (every file of rides rewritten) is still the default's.
        build_gold(&layout(lake.path(), Some(&model))).await.expect("gold after the rebuild");
        same_gold(plain.path(), lake.path(), &format!("{context}, gold after the rebuild")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_partitioning_is_refused_until_the_table_is_renamed_and_gold_follows_a_rename() {
    let lines = generate(rough_history(33));
    let (plain, lake) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let catalog = configured_catalog(common::NS, "append", 1, 0, 1);
    let (first, rest) = lines.split_at(lines.len() / 2);
    for dir in [plain.path(), lake.path()] {
        sync(dir, &catalog, first).await;
    }
    build_silver(&layout(lake.path(), None)).await.expect("default silver");
    build_gold(&layout(lake.path(), None)).await.expect("gold");
    sync(lake.path(), &catalog, rest).await;

    // Unpartitioned users asked of a lake whose users are filed by day: refused, nothing written.
    let unfiled_model = Model::parse("version = 1\n[users]\npartition = \"none\"\n", "unfiled.toml").expect("model");
    let versions = common::silver_versions(lake.path()).await;
    for rebuild in [false, true] {
        let error = build_silver_with(&layout(lake.path(), Some(&unfiled_model)), &SilverOptions { rebuild, ..Default::default() }).await.expect_err("refused");
        let message = error.to_string();
        assert!(matches!(error, LakehouseError::Schema { .. }) && message.contains("partitioned by year, month, day") && message.contains("no partitioning") && message.contains("table = "), "{message}");
        assert_eq!(common::silver_versions(lake.path()).await, versions, "nothing may be written");
    }
    // So are unpartitioned rides.
    let unfiled_rides = Model::parse("version = 1\n[rides]\npartition = \"none\"\n", "unfiled.toml").expect("model");
    let error = build_silver(&layout(lake.path(), Some(&unfiled_rides))).await.expect_err("refused");
    let message = error.to_string();
    assert!(message.contains("silver rides is partitioned by year, month, day") && message.contains("under [rides]"), "{message}");
    assert_eq!(common::silver_versions(lake.path()).await, versions, "nothing may be written");
    // Renamed, it is a new table; the model changed what silver's rows are, so rides ask for a rebuild.
    let renamed = Model::parse("version = 1\n[users]\ntable = \"users_flat\"\npartition = \"none\"\n", "renamed.toml").expect("model");
    match build_silver(&layout(lake.path(), Some(&renamed))).await {
        Err(LakehouseError::ModelChanged { .. }) => {}
        other => panic!("expected a rebuild to be asked for, got {other:?}"),
    }
    let report = build_silver_with(&layout(lake.path(), Some(&renamed)), &SilverOptions { rebuild: true, ..Default::default() }).await.expect("rebuild into the new table");
    assert!(report.rebuild.is_some(), "{report:?}");
    assert_eq!(partition_columns(lake.path(), "users_flat").await, Vec::<String>::new());
    assert_eq!(partition_columns(lake.path(), "users").await, ["year", "month", "day"], "the old table is left as it was");

    // A rides table of another name: gold, computed from `rides`, is computed again whole.
    let journeys = Model::parse("version = 1\n[users]\ntable = \"users_flat\"\npartition = \"none\"\n[rides]\ntable = \"journeys\"\n", "journeys.toml").expect("model");
    assert_eq!(journeys.hash(), renamed.hash(), "a name is not a mapping");
    let report = build_silver(&layout(lake.path(), Some(&journeys))).await.expect("first build of journeys");
    assert!(report.rides_upserted > 0, "{report:?}");
    let gold = build_gold(&layout(lake.path(), Some(&journeys))).await.expect("gold from journeys");
    assert!(gold.recomputed_all.as_deref().is_some_and(|r| r.contains("another silver rides table")), "{gold:?}");
    assert!(build_gold(&layout(lake.path(), Some(&journeys))).await.expect("again").noop);
    sync(plain.path(), &catalog, rest).await;
    build_silver(&layout(plain.path(), None)).await.expect("default silver");
    build_gold(&layout(plain.path(), None)).await.expect("gold");
    same_silver(plain.path(), lake.path(), &journeys, "journeys").await;
    for table in GOLD_TABLES {
        let table = format!("gold/{table}");
        assert_same(&table, &read_table(plain.path(), &table).await, &read_table(lake.path(), &table).await, "gold after the rename");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_without_the_day_it_is_filed_by_is_quarantined() {
    let lines = generate(rough_history(34));
    // One user or ride change of every 25 loses its updated_at.
    let lines: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(k, line)| {
            if k % 25 != 0 {
                return line.clone();
            }
            edited(line, |_, data| {
                if data.get("updated_at").is_some_and(|v| !v.is_null()) {
                    data.insert("updated_at".into(), Value::Null);
                }
            })
        })
        .collect();
    let blanked = |stream: &str| generate(rough_history(34)).iter().zip(&lines).filter(|(old, new)| old != new && old.contains(&format!("\"stream\":\"{stream}\""))).count();
    let (users_blanked, rides_blanked) = (blanked("users"), blanked("rides"));
    assert!(users_blanked > 5 && rides_blanked > 5, "the history must hold such changes ({users_blanked} users, {rides_blanked} rides)");
    let lake = tempfile::tempdir().expect("tempdir");
    sync(lake.path(), &configured_catalog(common::NS, "append", 1, 0, 1), &lines).await;
    let model = named("updated_at", "updated_at");
    let report = build_silver(&layout(lake.path(), Some(&model))).await.expect("silver");
    let quarantine = read_modeled_table(lake.path(), Some(&model), "quarantine").await;
    let held = |table: &str| quarantine.clone().lazy().filter(col("rule").eq(lit("updated_at is null")).and(col("table").eq(lit(table)))).collect().expect("filter").height();
    let (users_held, rides_held) = (held("users"), held("rides"));
    assert!(users_held > 0 && users_held <= users_blanked, "{quarantine:?}");
    // (a ride's delete files nothing: it is not held for it)
    assert!(rides_held > 0 && rides_held <= rides_blanked, "{quarantine:?}");
    assert!(report.users_quarantined >= users_held as u64 && report.rides_quarantined >= rides_held as u64, "{report:?}");
    // Filed by created_at and requested_at (the defaults), the same history quarantines none for it.
    let other = tempfile::tempdir().expect("tempdir");
    sync(other.path(), &configured_catalog(common::NS, "append", 1, 0, 1), &lines).await;
    build_silver(&layout(other.path(), None)).await.expect("silver");
    let quarantine = read_table(other.path(), "quarantine").await;
    assert_eq!(quarantine.clone().lazy().filter(col("rule").eq(lit("updated_at is null"))).collect().expect("filter").height(), 0);
    // Every silver user and ride has the day it is filed by.
    for table in ["users", "rides"] {
        let rows = read_modeled_table(lake.path(), Some(&model), table).await;
        assert_eq!(rows.column("updated_at").expect("updated_at").null_count(), 0, "{table}");
        filed_by(&rows, Some("updated_at"), table);
    }
}
