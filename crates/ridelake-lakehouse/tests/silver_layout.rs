//! Where silver is and how it is filed, as the model says (`table`, `partition`): a lake whose
//! model names its silver tables and files users by another day (or by none) holds, in those
//! tables, what the default lake holds, sync after sync, through maintenance and a rebuild; gold
//! computed from a renamed rides table is the default's, and gold follows a rename; a change of
//! partitioning is refused before anything is written, with what to do, and done once the
//! table is renamed; a user change without the day it is filed by is quarantined. Bronze is
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

const NAMED: &str = "version = 1\n[users]\ntable = \"members\"\npartition = \"{partition}\"\n[rides]\ntable = \"journeys\"\n";

fn named(partition: &str) -> Model {
    Model::parse(&NAMED.replace("{partition}", partition), "named.toml").expect("model")
}

/// `frame` without silver users' partition columns, sorted as tables are read.
fn unfiled(frame: DataFrame) -> DataFrame {
    sorted_by_key(frame.drop_many(["year", "month", "day"]))
}

/// Every silver table of `lake` (through `model`) equals the default lake's at `plain`, users
/// compared without their partition columns.
async fn same_silver(plain: &Path, lake: &Path, model: &Model, context: &str) {
    for table in SILVER {
        let (expected, got) = (read_table(plain, table).await, read_modeled_table(lake, Some(model), table).await);
        let (expected, got) = if table == "users" { (unfiled(expected), unfiled(got)) } else { (expected, got) };
        assert_same(table, &expected, &got, context);
    }
}

/// The partition columns of the silver table folder `folder` of `lake`, from its Delta log.
async fn partition_columns(lake: &Path, folder: &str) -> Vec<String> {
    let url = url::Url::from_directory_path(lake.join("silver").join(folder)).expect("url");
    let table = ridelake_lakehouse::io::open(&url, &Default::default()).await.expect("open").expect("a table");
    table.snapshot().expect("snapshot").metadata().partition_columns().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_and_refiled_tables_hold_the_default_silver() {
    for (seed, partition) in [(31, "none"), (32, "updated_at")] {
        let context = format!("seed {seed}, users partition {partition}");
        let model = named(partition);
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
            if k == 1 {
                // Maintenance compacts the named tables (and bronze, in both lakes alike, so that
                // the changes' bronze versions stay comparable); the runs after stay incremental.
                let options = MaintainOptions { retention: Duration::ZERO, ..Default::default() };
                maintain(&layout(lake.path(), Some(&model)), &options).await.unwrap_or_else(|e| panic!("maintenance: {e} ({context})"));
                maintain(&layout(plain.path(), None), &options).await.expect("maintenance of the default lake");
            }
        }
        // Only the named folders exist; users are filed as asked.
        let mut folders: Vec<String> =
            std::fs::read_dir(lake.path().join("silver")).expect("silver").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).filter(|n| !n.starts_with('_')).collect();
        folders.sort();
        assert_eq!(folders, ["journeys", "journeys_deleted", "journeys_pending", "members", "quarantine"], "{context}");
        let expected: &[&str] = if partition == "none" { &[] } else { &["year", "month", "day"] };
        assert_eq!(partition_columns(lake.path(), "members").await, expected, "{context}");
        let members = read_modeled_table(lake.path(), Some(&model), "users").await;
        if partition == "updated_at" {
            let day = |e: Expr| e.cast(DataType::Int32);
            let wrong = members
                .clone()
                .lazy()
                .filter(day(col("updated_at").dt().day()).neq(col("day")).or(day(col("updated_at").dt().month()).neq(col("month"))).or(day(col("updated_at").dt().year()).neq(col("year"))))
                .collect()
                .expect("filter");
            assert_eq!(wrong.height(), 0, "users filed by another day than updated_at's ({context})");
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
        // Gold from the renamed rides is the default's.
        build_gold(&layout(plain.path(), None)).await.expect("gold");
        build_gold(&layout(lake.path(), Some(&model))).await.expect("gold of named silver");
        for table in GOLD_TABLES {
            let table = format!("gold/{table}");
            assert_same(&table, &read_table(plain.path(), &table).await, &read_table(lake.path(), &table).await, &context);
        }
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
async fn a_user_change_without_the_day_it_is_filed_by_is_quarantined() {
    let lines = generate(rough_history(34));
    // One user change of every 25 loses its updated_at.
    let mut blanked = 0;
    let lines: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(k, line)| {
            if k % 25 != 0 {
                return line.clone();
            }
            edited(line, |stream, data| {
                if stream == "users" && data.get("updated_at").is_some_and(|v| !v.is_null()) {
                    data.insert("updated_at".into(), Value::Null);
                }
            })
        })
        .collect();
    for (old, new) in generate(rough_history(34)).iter().zip(&lines) {
        blanked += usize::from(old != new);
    }
    assert!(blanked > 5, "the history must hold such changes");
    let lake = tempfile::tempdir().expect("tempdir");
    sync(lake.path(), &configured_catalog(common::NS, "append", 1, 0, 1), &lines).await;
    let model = named("updated_at");
    let report = build_silver(&layout(lake.path(), Some(&model))).await.expect("silver");
    let quarantine = read_modeled_table(lake.path(), Some(&model), "quarantine").await;
    let held = quarantine.clone().lazy().filter(col("rule").eq(lit("updated_at is null"))).collect().expect("filter");
    assert!(held.height() > 0 && held.height() <= blanked, "{held:?}");
    assert!(report.users_quarantined >= held.height() as u64, "{report:?}");
    // Filed by created_at (the default), the same history quarantines none for it.
    let other = tempfile::tempdir().expect("tempdir");
    sync(other.path(), &configured_catalog(common::NS, "append", 1, 0, 1), &lines).await;
    build_silver(&layout(other.path(), None)).await.expect("silver");
    let quarantine = read_table(other.path(), "quarantine").await;
    assert_eq!(quarantine.clone().lazy().filter(col("rule").eq(lit("updated_at is null"))).collect().expect("filter").height(), 0);
    // Every silver user has the day it is filed by.
    let users = read_modeled_table(lake.path(), Some(&model), "users").await;
    assert_eq!(users.column("updated_at").expect("updated_at").null_count(), 0);
}
