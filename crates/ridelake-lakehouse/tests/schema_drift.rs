//! A source whose columns change under a running pipeline, through the real connector pipeline.
//!
//! - Widened types (an integer column made `DECIMAL`, an integer column made text): bronze keeps
//!   its column's first type and rescues the values that no longer fit it; silver reads them back.
//!   Property: the lake whose source widened two columns mid-history, built incrementally, has the
//!   silver of a lake that received the same records with the wide types from the start, built at
//!   once.
//! - A change silver cannot follow (fractions in an integer column, text in a key) stops the run
//!   with an error naming the column, its source and the model, and commits nothing.
//! - A dropped column (left out of the catalog): bronze records it, and the run stops naming the
//!   column and the model line, until the model marks the column `optional`; the silver then
//!   equals that of a lake whose source sent the same records under the full catalog.

mod common;

use std::path::Path;

use common::{SILVER, assert_same, catalog, edited, generate, layout, read_table, rough_history, silver_versions, sync};
use ridelake_core::bronze::{self, RESCUED_DATA};
use ridelake_lakehouse::LakehouseError;
use ridelake_lakehouse::io;
use ridelake_lakehouse::model::{self, Model};
use ridelake_lakehouse::silver::build_silver;
use serde_json::{Map, Value, json};

/// A value as a number (the generator sends some as text).
fn as_number(value: &Value) -> Option<f64> {
    value.as_f64().or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

/// What the source sent before its columns were widened: whole distances, and phone numbers as
/// integers (their digits).
fn narrow(stream: &str, data: &mut Map<String, Value>) {
    match stream {
        "rides" => {
            if let Some(x) = data.get("distance_km").and_then(as_number) {
                data.insert("distance_km".into(), json!(x.round() as i64));
            }
        }
        _ => {
            if let Some(phone) = data.get("phone").and_then(Value::as_str) {
                let digits: String = phone.chars().filter(char::is_ascii_digit).take(15).collect();
                data.insert("phone".into(), digits.parse::<i64>().map_or(Value::Null, |n| json!(n)));
            }
        }
    }
}

async fn read(lake: &Path, table: &str) -> polars::prelude::DataFrame {
    read_table(lake, table).await
}

/// The bronze table of `stream`.
async fn bronze_table(lake: &Path, stream: &str) -> deltalake::DeltaTable {
    let layout = layout(lake, None);
    io::open(&layout.bronze(stream).expect("url"), &layout.storage_options()).await.expect("open").expect("bronze table")
}

fn integer() -> Value {
    json!({"type": "integer"})
}

async fn check_widening(seed: u64) {
    let context = format!("seed {seed}");
    let lines = generate(rough_history(seed));
    let (narrowed, wide) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let narrow_catalog = catalog(&[("rides", "distance_km", integer()), ("users", "phone", integer())], &[]);
    let wide_catalog = catalog(&[], &[]);
    let n = lines.len();
    let cuts = [0, n / 4, n / 2, 3 * n / 4, n];
    for (i, pair) in cuts.windows(2).enumerate() {
        // The first two syncs come from the narrow columns; then the source widens them (its
        // catalog says so), while the narrow lake's bronze keeps its first column types.
        let before_widening = i < 2;
        let part: Vec<String> = lines[pair[0]..pair[1]].iter().map(|l| if before_widening { edited(l, narrow) } else { l.clone() }).collect();
        sync(narrowed.path(), if before_widening { &narrow_catalog } else { &wide_catalog }, &part).await;
        sync(wide.path(), &wide_catalog, &part).await;
        build_silver(&layout(narrowed.path(), None)).await.unwrap_or_else(|e| panic!("silver after sync {i}: {e} ({context})"));
    }
    build_silver(&layout(wide.path(), None)).await.expect("silver of the wide lake");
    // The narrow lake's bronze kept integer columns and rescued what no longer fit.
    for (stream, column) in [("rides", "distance_km"), ("users", "phone")] {
        let table = bronze_table(narrowed.path(), stream).await;
        let frame = io::read_columns(&table, &io::files(&table).expect("files"), Some(&[column, RESCUED_DATA])).await.expect("bronze");
        assert_eq!(frame.column(column).expect("column").dtype(), &polars::prelude::DataType::Int64, "{stream}.{column} ({context})");
        let rescued = frame.column(RESCUED_DATA).expect("rescued").str().expect("text").iter().flatten().filter(|t| t.contains(&format!("\"{column}\""))).count();
        assert!(rescued > 10, "{stream}.{column}: only {rescued} rescued values ({context})");
    }
    for table in SILVER {
        assert_same(table, &read(wide.path(), table).await, &read(narrowed.path(), table).await, &context);
    }
    // Rebuilt in slices (each picks its rows by key, then reads only those, rescued values
    // included), the narrow lake still has the wide lake's silver.
    let sliced = ridelake_lakehouse::silver::SilverOptions { rebuild: true, slices: Some(3), ..Default::default() };
    let report = ridelake_lakehouse::silver::build_silver_with(&layout(narrowed.path(), None), &sliced).await.unwrap_or_else(|e| panic!("sliced rebuild: {e} ({context})"));
    assert!(report.slices > 1, "the rebuild was not sliced ({context})");
    for table in SILVER {
        assert_same(table, &read(wide.path(), table).await, &read(narrowed.path(), table).await, &format!("{context}, rebuilt in slices"));
    }
    let rides = read(narrowed.path(), "rides").await;
    let fractional = rides.column("distance_km").expect("km").f64().expect("f64").iter().flatten().filter(|x| x.fract() != 0.0).count();
    assert!(fractional > 0, "no ride kept a fractional distance ({context})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widened_source_columns_give_the_silver_of_columns_wide_from_the_start() {
    let extra: u64 = std::env::var("RIDELAKE_DRIFT_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    for seed in (1..=2).chain(100..100 + extra) {
        check_widening(seed).await;
    }
}

/// Expects a [`LakehouseError::ColumnChanged`] whose message holds every one of `parts`.
fn expect_column_changed(outcome: ridelake_lakehouse::Result<ridelake_lakehouse::silver::SilverReport>, parts: &[&str]) {
    match outcome {
        Err(e @ LakehouseError::ColumnChanged { .. }) => {
            let message = e.to_string();
            for part in parts {
                assert!(message.contains(part), "{part} missing from: {message}");
            }
        }
        other => panic!("expected ColumnChanged, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_silver_cannot_follow_stops_the_run_and_commits_nothing() {
    let lines = generate(rough_history(5));
    let half = lines.len() / 2;
    let lake = tempfile::tempdir().expect("tempdir");
    sync(lake.path(), &catalog(&[], &[]), &lines[..half]).await;
    build_silver(&layout(lake.path(), None)).await.expect("first run");
    let before = silver_versions(lake.path()).await;
    // The source made duration_s a DECIMAL: fractions, which silver's integer column cannot hold.
    let fractional: Vec<String> = lines[half..]
        .iter()
        .map(|l| edited(l, |stream, data| {
            if stream == "rides" {
                if let Some(d) = data.get("duration_s").and_then(as_number) {
                    data.insert("duration_s".into(), json!(d + 0.5));
                }
            }
        }))
        .collect();
    sync(lake.path(), &catalog(&[("rides", "duration_s", json!({"type": "number"}))], &[]), &fractional).await;
    expect_column_changed(build_silver(&layout(lake.path(), None)).await, &["silver rides.duration_s (the default model)", "`duration_s` of bronze `rides`", "integers"]);
    assert_eq!(silver_versions(lake.path()).await, before, "nothing committed");
    // The same through a model that maps the column: its line is named.
    let text = "version = 1\n[rides.columns]\nduration_s = \"duration_s\"\nfare_amount = { column = \"fare_amount\", scale = 1.0 }\n";
    let mapped = Model::parse(text, "drift.toml").expect("model");
    let rebuilt = build_silver_with_rebuild(lake.path(), &mapped).await;
    expect_column_changed(rebuilt, &["silver rides.duration_s (drift.toml, line 3)"]);
    assert_eq!(silver_versions(lake.path()).await, before, "nothing committed");

    // A key the source made text.
    let lake = tempfile::tempdir().expect("tempdir");
    sync(lake.path(), &catalog(&[], &[]), &lines[..half]).await;
    let texts: Vec<String> = lines[half..]
        .iter()
        .map(|l| edited(l, |stream, data| {
            if stream == "rides" {
                if let Some(id) = data.get("customer_id").and_then(Value::as_i64) {
                    data.insert("customer_id".into(), json!(format!("C-{id}")));
                }
            }
        }))
        .collect();
    sync(lake.path(), &catalog(&[("rides", "customer_id", json!({"type": "string"}))], &[]), &texts).await;
    expect_column_changed(build_silver(&layout(lake.path(), None)).await, &["silver rides.customer_id", "integer keys"]);
    // (a first build creates its tables before deciding; they stay empty, without markers)
    for table in SILVER {
        assert_eq!(read(lake.path(), table).await.height(), 0, "{table}: nothing committed");
    }
}

async fn build_silver_with_rebuild(lake: &Path, model: &Model) -> ridelake_lakehouse::Result<ridelake_lakehouse::silver::SilverReport> {
    let options = ridelake_lakehouse::silver::SilverOptions { rebuild: true, ..Default::default() };
    ridelake_lakehouse::silver::build_silver_with(&layout(lake, Some(model)), &options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_column_stops_the_run_until_the_model_says_it_may_go() {
    let lines = generate(rough_history(9));
    let n = lines.len();
    let cuts = [0, n / 3, 2 * n / 3, n];
    let (lake, oracle) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let full = catalog(&[], &[]);
    let without = catalog(&[], &[("rides", "customer_rating")]);
    // The source drops customer_rating during the second sync's span, and it comes back in the
    // third: its records lack the field meanwhile.
    let parts: Vec<Vec<String>> = cuts
        .windows(2)
        .enumerate()
        .map(|(i, pair)| {
            lines[pair[0]..pair[1]]
                .iter()
                .map(|l| if i == 1 { edited(l, |stream, data| if stream == "rides" { data.remove("customer_rating"); }) } else { l.clone() })
                .collect()
        })
        .collect();
    sync(lake.path(), &full, &parts[0]).await;
    build_silver(&layout(lake.path(), None)).await.expect("first run");
    let before = silver_versions(lake.path()).await;
    sync(lake.path(), &without, &parts[1]).await;
    let absent = bronze::absent_columns(bronze_table(lake.path(), "rides").await.snapshot().expect("snapshot").metadata().configuration()).expect("property");
    assert!(absent.len() == 1 && matches!(absent["customer_rating"][..], [(_, None)]), "bronze records the dropped column: {absent:?}");
    let expected = ["rides.customer_rating comes from `customer_rating` of bronze `rides`, which the source no longer sends", "optional = true"];
    match build_silver(&layout(lake.path(), None)).await {
        Err(LakehouseError::Model { problems, .. }) => {
            assert!(problems.len() == 1 && expected.iter().all(|p| problems[0].contains(p)), "{problems:?}");
        }
        other => panic!("expected the dropped column to stop the run, got {other:?}"),
    }
    assert_eq!(silver_versions(lake.path()).await, before, "nothing committed");
    let problems = model::validate(&layout(lake.path(), None)).await.expect("validate");
    assert!(problems.len() == 1 && problems[0].contains(expected[0]), "{problems:?}");
    // The model says the column may go: no rebuild needed (the hash is the default's), and the
    // changes without it hold null.
    let text = "version = 1\n[rides.columns]\ncustomer_rating = { column = \"customer_rating\", optional = true }\n";
    let optional = Model::parse(text, "optional.toml").expect("model");
    assert!(model::validate(&layout(lake.path(), Some(&optional))).await.expect("validate").is_empty());
    build_silver(&layout(lake.path(), Some(&optional))).await.expect("run with the column optional");
    // The source declares it again: bronze clears it, and the default model runs again.
    sync(lake.path(), &full, &parts[2]).await;
    let absent = bronze::absent_columns(bronze_table(lake.path(), "rides").await.snapshot().expect("snapshot").metadata().configuration()).expect("property");
    assert!(absent.len() == 1 && matches!(absent["customer_rating"][..], [(_, Some(_))]), "the window is closed: {absent:?}");
    // The versions the second sync wrote lack the column: an increment past them runs with the
    // default model, a rebuild (which reads them again) still needs the column optional.
    build_silver(&layout(lake.path(), None)).await.expect("run after the column came back");
    let rebuild = ridelake_lakehouse::silver::SilverOptions { rebuild: true, ..Default::default() };
    assert!(matches!(ridelake_lakehouse::silver::build_silver_with(&layout(lake.path(), None), &rebuild).await, Err(LakehouseError::Model { .. })));
    ridelake_lakehouse::silver::build_silver_with(&layout(lake.path(), Some(&optional)), &rebuild).await.expect("rebuild with the column optional");
    // The oracle received the same records under the full catalog all along.
    for part in &parts {
        sync(oracle.path(), &full, part).await;
    }
    build_silver(&layout(oracle.path(), None)).await.expect("oracle");
    // (the lake's bronze has two more commits, the destination's records of the dropped column,
    // so the bronze versions silver rows point to differ)
    let without_version = |mut frame: polars::prelude::DataFrame| {
        for column in ["_cdc_bronze_version", "bronze_version"] {
            if frame.column(column).is_ok() {
                frame = frame.drop(column).expect("drop");
            }
        }
        frame
    };
    for table in SILVER {
        assert_same(table, &without_version(read(oracle.path(), table).await), &without_version(read(lake.path(), table).await), "dropped column");
    }
    let rides = read(lake.path(), "rides").await;
    assert!(rides.column("customer_rating").expect("rating").null_count() > 0);
}
