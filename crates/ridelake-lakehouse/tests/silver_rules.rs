//! The model's rules and their actions, on rough histories written to bronze by the real
//! connector pipeline. A model with a quarantine, a drop and a warn rule on rides (and a warn rule
//! on users) is checked against bronze itself and against the default model's silver of the same
//! bronze:
//! - the quarantine holds the default model's breakers plus exactly the bronze changes that break
//!   the quarantine rule (and no silver rule), under that rule's name;
//! - the report's `dropped` counts exactly the changes that break the drop rule and no rule
//!   before it, and `warnings` every change that breaks the warn rule; none of the dropped changes
//!   is in the quarantine;
//! - no published or pending ride breaks a quarantine or drop rule;
//! - incremental = rebuild under the rules, sliced or not;
//! - a fail rule stops a run before it writes anything, naming its line and the count only; and
//!   warn and fail rules can be changed without a rebuild, while a new quarantine rule cannot.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{NS, SILVER, assert_same, generate, layout, read_table, rough_history, sync};
use polars::prelude::*;
use ridelake_core::generator::{GeneratorConfig, configured_catalog};
use ridelake_lakehouse::LakehouseError;
use ridelake_lakehouse::io;
use ridelake_lakehouse::model::Model;
use ridelake_lakehouse::silver::{SilverOptions, SilverReport, build_silver_with};

const DISTANCE: f64 = 20.0;
const FARE: f64 = 40.0;
const DURATION: i64 = 3300;

fn rules_model() -> Model {
    let text = format!(
        r#"version = 1
[[rides.rules]]
name = "distance under {DISTANCE} km"
check = "distance_km < {DISTANCE}"

[[rides.rules]]
name = "fare under {FARE}"
check = "fare_amount < {FARE}"
action = "drop"

[[rides.rules]]
check = "duration_s < {DURATION}"
action = "warn"

[[users.rules]]
name = "has a phone"
check = "phone IS NOT NULL"
action = "warn"
"#
    );
    Model::parse(&text, "rules.toml").expect("the rules model")
}

async fn run(lake: &Path, model: &Model, options: SilverOptions) -> Result<SilverReport, LakehouseError> {
    build_silver_with(&layout(lake, Some(model)), &options).await
}

async fn tables(lake: &Path) -> Vec<(String, DataFrame)> {
    let mut out = Vec::new();
    for table in SILVER {
        out.push((table.to_owned(), read_table(lake, table).await));
    }
    out
}

/// Bronze `stream`'s changes that are not deletes: raw id and the rule columns (as numbers).
async fn bronze_changes(lake: &Path, stream: &str) -> DataFrame {
    let l = layout(lake, None);
    let table = io::open(&l.bronze(stream).expect("url"), &l.storage_options()).await.expect("open").expect("bronze");
    let all = io::read_all(&table).await.expect("read bronze");
    let columns: Vec<Expr> = match stream {
        "rides" => vec![
            col("_airbyte_raw_id"),
            col("distance_km").cast(DataType::Float64),
            col("fare_amount").cast(DataType::Float64),
            col("duration_s").cast(DataType::Int64),
        ],
        _ => vec![col("_airbyte_raw_id"), col("phone")],
    };
    all.lazy().filter(col("_ab_cdc_deleted_at").is_null()).select(columns).collect().expect("bronze changes")
}

/// The quarantine rows of table `of` whose rule is `rule` (any rule when `None`), but none of
/// `except`.
async fn quarantine_rows(lake: &Path, of: &str, rule: Option<&str>, except: &[&str]) -> DataFrame {
    let l = layout(lake, None);
    let Some(table) = io::open(&l.silver("quarantine").expect("url"), &l.storage_options()).await.expect("open") else { return DataFrame::empty() };
    let mut rows = io::read_all(&table).await.expect("read").lazy().filter(col("table").eq(lit(of)));
    if let Some(rule) = rule {
        rows = rows.filter(col("rule").eq(lit(rule)));
    }
    for rule in except {
        rows = rows.filter(col("rule").neq(lit(*rule)));
    }
    rows.collect().expect("quarantine")
}

/// The raw ids of [`quarantine_rows`] (raw ids differ between two lakes of one history).
async fn quarantined(lake: &Path, of: &str, rule: Option<&str>) -> BTreeSet<String> {
    let rows = quarantine_rows(lake, of, rule, &[]).await;
    if rows.height() == 0 {
        return BTreeSet::new();
    }
    raw_ids(&rows)
}

/// The (rule, bronze version, bronze row) of [`quarantine_rows`]: the same in two lakes synced
/// alike.
async fn positions(lake: &Path, of: &str, except: &[&str]) -> BTreeSet<(String, i64, i64)> {
    let rows = quarantine_rows(lake, of, None, except).await;
    if rows.height() == 0 {
        return BTreeSet::new();
    }
    let rule = rows.column("rule").expect("rule").str().expect("text").clone();
    let version = rows.column("_cdc_bronze_version").expect("version").i64().expect("i64").clone();
    let row = rows.column("_cdc_bronze_row").expect("row").i64().expect("i64").clone();
    rule.iter().zip(version.iter()).zip(row.iter()).map(|((r, v), w)| (r.unwrap_or_default().to_owned(), v.unwrap_or(-1), w.unwrap_or(-1))).collect()
}

/// Asserts two sets of raw ids are equal, printing their sizes and a few differences only.
fn assert_same_ids(got: &BTreeSet<String>, expected: &BTreeSet<String>, what: &str) {
    let (extra, missing): (Vec<_>, Vec<_>) = (got.difference(expected).take(3).collect(), expected.difference(got).take(3).collect());
    assert!(extra.is_empty() && missing.is_empty(), "{what}: {} ids, {} expected; unexpected {extra:?}, missing {missing:?}", got.len(), expected.len());
}

fn raw_ids(frame: &DataFrame) -> BTreeSet<String> {
    frame.column("_airbyte_raw_id").expect("raw id").str().expect("text").iter().flatten().map(str::to_owned).collect()
}

async fn check(seed: u64) {
    let context = format!("seed {seed}");
    let lines = generate(GeneratorConfig { ..rough_history(seed) });
    let catalog = configured_catalog(NS, "append", 1, 0, 1);
    let model = rules_model();
    let (plain, ruled, rebuilt) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    // The ruled lake is built after each of four syncs (the last two increments in 3 slices); the
    // others once at the end.
    let cut = |i: usize| lines.len() * i / 4;
    let (mut dropped, mut warnings) = (0u64, std::collections::BTreeMap::<String, u64>::new());
    for i in 0..4 {
        for lake in [&plain, &ruled, &rebuilt] {
            sync(lake.path(), &catalog, &lines[cut(i)..cut(i + 1)]).await;
        }
        let slices = (i >= 2).then_some(3);
        let report = run(ruled.path(), &model, SilverOptions { slices, ..Default::default() }).await.expect("ruled run");
        dropped += report.dropped;
        for (rule, n) in report.warnings {
            *warnings.entry(rule).or_default() += n;
        }
    }
    run(plain.path(), &Model::default(), SilverOptions::default()).await.expect("plain run");
    let once = run(rebuilt.path(), &model, SilverOptions { slices: Some(2), ..Default::default() }).await.expect("rebuild");
    assert!(once.rebuild.is_some(), "{context}");
    assert_eq!((once.dropped, once.warnings.clone()), (dropped, warnings.clone()), "a rebuild counts what the increments counted ({context})");

    // Incremental = rebuild under the rules.
    for ((table, a), (_, b)) in tables(rebuilt.path()).await.iter().zip(&tables(ruled.path()).await) {
        assert_same(table, a, b, &format!("{context}: incremental vs rebuild under rules"));
    }

    // The quarantine: silver's own breakers (those of the default model's silver, by bronze
    // place), plus exactly the quarantine rule's.
    let rule_name = format!("distance under {DISTANCE} km");
    assert_eq!(positions(ruled.path(), "rides", &[&rule_name]).await, positions(plain.path(), "rides", &[]).await, "silver's own rules quarantine alike ({context})");
    let rides = bronze_changes(ruled.path(), "rides").await;
    let own_rules = quarantine_rows(ruled.path(), "rides", None, &[&rule_name]).await;
    let silver_breakers = if own_rules.height() > 0 { raw_ids(&own_rules) } else { BTreeSet::new() };
    let far = raw_ids(&rides.clone().lazy().filter(col("distance_km").gt_eq(lit(DISTANCE))).collect().expect("far"));
    let expected_far: BTreeSet<String> = far.difference(&silver_breakers).cloned().collect();
    assert!(expected_far.len() >= 5, "the history breaks the quarantine rule ({} changes, {context})", expected_far.len());
    assert_same_ids(&quarantined(ruled.path(), "rides", Some(&rule_name)).await, &expected_far, &format!("quarantined by the rule, {context}"));
    let everything: BTreeSet<String> = silver_breakers.union(&expected_far).cloned().collect();
    assert_same_ids(&quarantined(ruled.path(), "rides", None).await, &everything, &format!("the rides quarantine, {context}"));
    assert_eq!(positions(ruled.path(), "users", &[]).await, positions(plain.path(), "users", &[]).await, "warn rules on users set nothing aside ({context})");

    // Dropped: the drop rule's breakers that broke no rule before it; in no quarantine.
    let costly = raw_ids(&rides.clone().lazy().filter(col("fare_amount").gt_eq(lit(FARE))).collect().expect("costly"));
    let expected_dropped: BTreeSet<String> = costly.difference(&everything).cloned().collect();
    assert!(expected_dropped.len() >= 5, "the history breaks the drop rule ({context})");
    assert_eq!(dropped, expected_dropped.len() as u64, "{context}");
    assert!(expected_dropped.is_disjoint(&quarantined(ruled.path(), "rides", None).await));

    // Warnings: every change breaking the warn rule (applied).
    let long = rides.clone().lazy().filter(col("duration_s").gt_eq(lit(DURATION))).collect().expect("long").height() as u64;
    let no_phone = bronze_changes(ruled.path(), "users").await.lazy().filter(col("phone").is_null()).collect().expect("phones").height() as u64;
    assert!(long > 0, "{context}");
    assert_eq!(warnings.get(&format!("rides: duration_s < {DURATION}")).copied().unwrap_or(0), long, "{context}");
    assert_eq!(warnings.get("users: has a phone").copied().unwrap_or(0), no_phone, "{context}");

    // Nothing published or waiting breaks a rule that sets changes aside.
    for table in ["rides", "rides_pending"] {
        let frame = read_table(ruled.path(), table).await;
        let breaking = frame.lazy().filter(col("distance_km").gt_eq(lit(DISTANCE)).or(col("fare_amount").gt_eq(lit(FARE)))).collect().expect("breaking");
        assert_eq!(breaking.height(), 0, "{table} holds rule breakers ({context})");
    }
    let published = read_table(ruled.path(), "rides").await;
    assert!(published.height() > 50, "the rules leave rides published ({context})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rule_action_does_what_it_says_and_incremental_equals_rebuild() {
    let extra: u64 = std::env::var("RIDELAKE_RULE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    for seed in [5, 6].into_iter().chain(300..300 + extra) {
        check(seed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_rule_stops_the_run_and_warn_or_fail_rules_change_without_a_rebuild() {
    let lines = generate(GeneratorConfig { seed: 12, users: 30, rides: 200, changes: 600, ..Default::default() });
    let catalog = configured_catalog(NS, "append", 1, 0, 1);
    let lake = tempfile::tempdir().expect("tempdir");
    let half = lines.len() / 2;
    sync(lake.path(), &catalog, &lines[..half]).await;
    let first = run(lake.path(), &Model::default(), SilverOptions::default()).await.expect("first run");
    let highest = read_table(lake.path(), "rides").await.column("id").expect("id").i64().expect("i64").max().expect("rides");
    let before = tables(lake.path()).await;
    assert!(first.rebuild.is_some());

    // Rides above the highest id so far break the fail rule: the next sync has some.
    sync(lake.path(), &catalog, &lines[half..]).await;
    let failing = Model::parse(&format!("version = 1\n\n[[rides.rules]]\nname = \"known rides only\"\ncheck = \"id <= {highest}\"\naction = \"fail\"\n"), "fail.toml").expect("model");
    match run(lake.path(), &failing, SilverOptions::default()).await {
        Err(LakehouseError::RuleBroken { origin, line, table, rule, changes }) => {
            assert_eq!((origin.as_str(), line, table.as_str(), rule.as_str()), ("fail.toml", 3, "rides", "known rides only"));
            assert!(changes > 0);
        }
        other => panic!("expected RuleBroken, got {other:?}"),
    }
    for ((table, a), (_, b)) in before.iter().zip(&tables(lake.path()).await) {
        assert_same(table, a, b, "a failed run writes nothing");
    }
    // Warn and fail rules change no rows: the run goes on incrementally without them.
    let warning = Model::parse(&format!("version = 1\n[[rides.rules]]\ncheck = \"id <= {highest}\"\naction = \"warn\"\n"), "warn.toml").expect("model");
    assert_eq!(warning.hash(), Model::default().hash(), "warn rules do not change the hash");
    let report = run(lake.path(), &warning, SilverOptions::default()).await.expect("a warning run");
    assert!(report.rebuild.is_none() && report.warnings.values().sum::<u64>() > 0, "{report:?}");
    // A quarantine rule changes past rows: it needs a rebuild, which the error says how to ask for.
    let quarantining = Model::parse("version = 1\n[[rides.rules]]\ncheck = \"distance_km < 12\"\n", "strict.toml").expect("model");
    assert!(matches!(run(lake.path(), &quarantining, SilverOptions::default()).await, Err(LakehouseError::ModelChanged { .. })));
    let rebuilt = run(lake.path(), &quarantining, SilverOptions { rebuild: true, ..Default::default() }).await.expect("rebuild");
    assert!(rebuilt.rebuild.is_some() && rebuilt.rides_quarantined > 0, "{rebuilt:?}");
}
