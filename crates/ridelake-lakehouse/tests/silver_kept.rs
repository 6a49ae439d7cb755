//! A model that keeps the source's other columns (`other_columns = "keep"`), through the real
//! connector pipeline, on the generator's rough histories.
//!
//! - Property: a source with columns silver does not map (text, an integer it later widens to
//!   decimals, and one it adds mid-history), synced four times and built incrementally (in slices
//!   every other run), has the silver of a lake that received the same records with the final
//!   columns and types from the start, built at once; and without its kept columns, the silver
//!   of the default model. Each kept value comes from the same change as the row's other columns.
//!   The run after the source's change rebuilds once, naming the column; the runs after it do not.
//! - Gold counts rides by a kept column the model names as the city (`[gold] city_column`).
//! - `skip_columns` leaves a column out; a kept column that changes in a way silver cannot widen
//!   (text in a time) stops the run, naming it and the model line, and commits nothing; a source
//!   column named as one of silver's own is named in a model error before anything is written.

mod common;

use std::path::Path;

use std::collections::BTreeMap;

use common::{SILVER, assert_same, catalog, edited, generate, layout, read_table, requests, rough_history, silver_versions, sync};
use polars::prelude::*;
use ridelake_lakehouse::LakehouseError;
use ridelake_lakehouse::gold::build_gold;
use ridelake_lakehouse::model::{self, Model};
use ridelake_lakehouse::silver::{SilverOptions, SilverReport, build_silver_with};
use serde_json::{Map, Value, json};

const KEEP: &str = "version = 1\n[users]\nother_columns = \"keep\"\nskip_columns = [\"password_hash\"]\n[rides]\nother_columns = \"keep\"\n";

fn keep_model() -> Model {
    Model::parse(KEEP, "keep.toml").expect("model")
}

fn of_type(kind: &str) -> Value {
    json!({ "type": kind })
}

/// The generator's catalog with the source's own columns: rides with `promo_code` and `market`
/// (text) and `surge`, an integer until the source `widened` it to a number and added
/// `tip_cents`; users with `referral` and `password_hash`.
fn extras_catalog(widened: bool) -> String {
    let mut types = vec![
        ("rides", "promo_code", of_type("string")),
        ("rides", "market", of_type("string")),
        ("rides", "surge", of_type(if widened { "number" } else { "integer" })),
        ("users", "referral", of_type("string")),
        ("users", "password_hash", of_type("string")),
    ];
    if widened {
        types.push(("rides", "tip_cents", of_type("integer")));
    }
    catalog(&types, &[])
}

/// The source's columns beyond the generator's, from the record itself: a ride's `promo_code` is
/// its status and id (so a silver row tells which change its kept values came from), its `surge`
/// a whole number until the source `widened` it, then one with a fraction, and `tip_cents` only
/// from then; its `market`, the city it belongs to (padded, empty or null for some); a user's
/// `referral` (null for every third) and `password_hash`.
fn with_extras(widened: bool) -> impl Fn(&str, &mut Map<String, Value>) {
    move |stream, data| {
        // (the rough histories send some ids as text)
        let Some(id) = data.get("id").and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))) else { return };
        match stream {
            "rides" => {
                let status = data.get("status").and_then(Value::as_str).unwrap_or("none").to_owned();
                data.insert("promo_code".into(), json!(format!("{status}-{id}")));
                data.insert("market".into(), match id % 4 {
                    0 => json!("Lisbon"),
                    1 => json!(" Porto "),
                    2 => json!(""),
                    _ => Value::Null,
                });
                if widened {
                    data.insert("surge".into(), json!(1.0 + (id % 4) as f64 * 0.25 + 0.125));
                    data.insert("tip_cents".into(), if id % 5 == 0 { Value::Null } else { json!(id * 10 % 500) });
                } else {
                    data.insert("surge".into(), json!(1 + id % 3));
                }
            }
            _ => {
                data.insert("referral".into(), if id % 3 == 0 { Value::Null } else { json!(format!("R{id}")) });
                data.insert("password_hash".into(), json!(format!("secret-{id}")));
            }
        }
    }
}

async fn run(lake: &Path, model: Option<&Model>, slices: Option<usize>) -> SilverReport {
    build_silver_with(&layout(lake, model), &SilverOptions { slices, ..Default::default() }).await.unwrap_or_else(|e| panic!("silver: {e}"))
}

/// `frame` without `columns`.
fn without(frame: DataFrame, columns: &[&str]) -> DataFrame {
    frame.drop_many(columns.iter().copied())
}

/// `frame` without the bronze versions silver records (`_cdc_bronze_version`, the quarantine's
/// `bronze_version`).
fn without_versions(frame: DataFrame) -> DataFrame {
    without(frame, &["_cdc_bronze_version", "bronze_version"])
}

/// `links`: a `[rides.links]` table given to both the keeping model and the plain one it is
/// compared with (empty: every link waits).
async fn check_kept(seed: u64, links: &str) {
    let context = format!("seed {seed}{links}");
    let keep_text = format!("{KEEP}{links}");
    let model = Model::parse(&keep_text, "keep.toml").expect("model");
    let plain_model = if links.is_empty() { Model::default() } else { Model::parse(&format!("version = 1\n{links}"), "plain.toml").expect("model") };
    let lines = generate(rough_history(seed));
    let (evolving, wide, plain) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let n = lines.len();
    let cuts = [0, n / 4, n / 2, 3 * n / 4, n];
    for (i, pair) in cuts.windows(2).enumerate() {
        // Two syncs before the source widens `surge` and adds `tip_cents`, two after.
        let widened = i >= 2;
        let part: Vec<String> = lines[pair[0]..pair[1]].iter().map(|l| edited(l, with_extras(widened))).collect();
        sync(evolving.path(), &extras_catalog(widened), &part).await;
        sync(wide.path(), &extras_catalog(true), &part).await;
        sync(plain.path(), &extras_catalog(true), &part).await;
        let report = run(evolving.path(), Some(&model), if i % 2 == 1 { Some(3) } else { None }).await;
        let rebuild = report.rebuild.clone().unwrap_or_default();
        match i {
            0 => assert!(rebuild.contains("first build"), "run {i}: {rebuild} ({context})"),
            2 => assert!(rebuild.contains("source column `surge` of `rides` now holds number values") && rebuild.contains("keeps the source's other columns"), "run {i}: {rebuild:?} ({context})"),
            _ => assert_eq!(report.rebuild, None, "run {i} is incremental ({context})"),
        }
    }
    assert!(run(evolving.path(), Some(&model), None).await.noop, "nothing new: a no-op ({context})");
    run(wide.path(), Some(&model), None).await;
    run(plain.path(), Some(&plain_model), None).await;

    // Incremental through the source's changes = at once with the final columns. (The evolving
    // lake's bronze has one more commit, the one that added `tip_cents` to its rides table: the
    // bronze versions silver records differ by it, and only they.)
    for table in SILVER {
        assert_same(table, &without_versions(read_table(wide.path(), table).await), &without_versions(read_table(evolving.path(), table).await), &context);
    }
    let rides = read_table(evolving.path(), "rides").await;
    let users = read_table(evolving.path(), "users").await;
    let pending = read_table(evolving.path(), "rides_pending").await;
    for (name, dtype) in [("promo_code", DataType::String), ("surge", DataType::Float64), ("tip_cents", DataType::Int64)] {
        assert_eq!(rides.column(name).map(|c| c.dtype().clone()).ok(), Some(dtype.clone()), "rides.{name} ({context})");
        assert_eq!(pending.column(name).map(|c| c.dtype().clone()).ok(), Some(dtype), "rides_pending.{name} ({context})");
    }
    assert!(users.column("referral").is_ok() && users.column("password_hash").is_err(), "users keep referral, skip password_hash ({context})");
    // Keeping changes nothing else: the default model's silver of the same bronze.
    let kept = ["promo_code", "market", "surge", "tip_cents", "referral"];
    // ... after every column of silver's own.
    let names = |frame: &DataFrame| frame.get_column_names().iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let (plain_rides, plain_users) = (read_table(plain.path(), "rides").await, read_table(plain.path(), "users").await);
    assert_eq!(names(&rides)[..plain_rides.width()], names(&plain_rides)[..], "rides: silver's columns first ({context})");
    assert_eq!(names(&users)[..plain_users.width()], names(&plain_users)[..], "users: silver's columns first ({context})");
    for table in SILVER {
        let got = read_table(evolving.path(), table).await;
        let present: Vec<&str> = kept.iter().copied().filter(|c| got.column(c).is_ok()).collect();
        assert_same(table, &without_versions(read_table(plain.path(), table).await), &without_versions(without(got, &present)), &format!("{context}, without the kept columns"));
    }
    // Every row's kept values come from the change its other columns come from.
    for (table, frame) in [("rides", &rides), ("rides_pending", &pending)] {
        let expected: Vec<Option<String>> = frame
            .column("status")
            .expect("status")
            .str()
            .expect("text")
            .iter()
            .zip(frame.column("id").expect("id").i64().expect("ids").iter())
            .map(|(status, id)| Some(format!("{}-{}", status.unwrap_or("none"), id.expect("id"))))
            .collect();
        let got: Vec<Option<String>> = frame.column("promo_code").expect("promo").str().expect("text").iter().map(|v| v.map(str::to_owned)).collect();
        assert_eq!(got, expected, "{table}.promo_code names each row's own change ({context})");
    }
    let surge = rides.column("surge").expect("surge").f64().expect("f64");
    assert!(surge.iter().flatten().any(|x| x.fract() == 0.125) && surge.iter().flatten().any(|x| x.fract() == 0.0), "rides with changes from before and after the widening ({context})");
    let tips = rides.column("tip_cents").expect("tips");
    assert!(tips.null_count() > 0 && tips.null_count() < tips.len(), "tip_cents: values after the source added it, nulls before ({context})");

    // Gold counts rides by their kept `market` column when the model names it as the city.
    let with_city = Model::parse(&format!("{keep_text}[gold]\ncity_column = \"market\"\n"), "keep.toml").expect("model");
    assert_eq!(with_city.hash(), model.hash(), "gold's city column is not silver's business");
    build_gold(&layout(evolving.path(), Some(&with_city))).await.expect("gold");
    let mut expected: BTreeMap<(i64, i64, i64, String), i64> = BTreeMap::new();
    let part = |name: &str| -> Vec<i64> { rides.column(name).expect(name).as_materialized_series().cast(&DataType::Int64).expect("i64").i64().expect("i64").iter().map(|v| v.expect("part")).collect() };
    let (year, month, day) = (part("year"), part("month"), part("day"));
    for (k, market) in rides.column("market").expect("market").str().expect("text").iter().enumerate() {
        let city = market.map(str::trim).filter(|m| !m.is_empty()).unwrap_or("unknown");
        *expected.entry((year[k], month[k], day[k], city.to_owned())).or_default() += 1;
    }
    assert_eq!(requests(evolving.path()).await, expected, "rides per day and market ({context})");
    assert!(expected.keys().any(|k| k.3 == "Porto") && expected.keys().any(|k| k.3 == "unknown"), "{context}");

    // ... or by the cities a names file next to the model gives the column's values (a value it
    // does not list: `other`); other names recompute every day.
    let folder = tempfile::tempdir().expect("folder");
    std::fs::write(folder.path().join("markets.csv"), "key,city\nLisbon,Lisboa\nFaro,Faro\n").expect("names");
    std::fs::write(folder.path().join("model.toml"), format!("{keep_text}[gold]\ncity_column = \"market\"\ncity_names = \"markets.csv\"\n")).expect("model");
    let named = Model::load(&folder.path().join("model.toml")).expect("model");
    let report = build_gold(&layout(evolving.path(), Some(&named))).await.expect("gold");
    assert!(report.recomputed_all.is_some(), "gold with city names it was not computed with: every day again ({context})");
    let named_by = |names: &[(&str, &str)]| {
        let mut out: BTreeMap<(i64, i64, i64, String), i64> = BTreeMap::new();
        for ((year, month, day, market), count) in &expected {
            let city = match names.iter().find(|(key, _)| key == market) {
                Some((_, city)) => city,
                None if market == "unknown" => "unknown",
                None => "other",
            };
            *out.entry((*year, *month, *day, city.to_owned())).or_default() += count;
        }
        out
    };
    assert_eq!(requests(evolving.path()).await, named_by(&[("Lisbon", "Lisboa"), ("Faro", "Faro")]), "rides per day and named market ({context})");

    // ... or by the names of a cities table synced to bronze like users and rides: its latest
    // change per key, deletes applied, read at every gold run; a change of the table recomputes
    // every day, no change is no work.
    let streamed_text = format!("{keep_text}[gold]\ncity_column = \"market\"\ncity_names = {{ stream = \"markets\", key = \"code\", city = \"city_name\" }}\n");
    let names_line = format!("line {}:", streamed_text.lines().position(|l| l.starts_with("city_names")).expect("line") + 1);
    let streamed = Model::parse(&streamed_text, "keep.toml").expect("model");
    match build_gold(&layout(evolving.path(), Some(&streamed))).await {
        Err(LakehouseError::Model { problems, .. }) => assert!(problems.len() == 1 && problems[0].starts_with(&format!("{names_line} gold city_names")) && problems[0].contains("`markets`"), "{problems:?}"),
        other => panic!("gold before the cities table is synced: expected a model error, got {other:?}"),
    }
    let changes = [
        market_change("Lisbon", "Lisboa", 10, false),
        market_change(" Porto ", "Oporto", 11, false),
        market_change("Faro", "Faro", 12, false),
        market_change("Braga", "Braga", 13, false),
        market_change("Faro", "Algarve", 14, false),
        // (an at-least-once copy of an older change, re-sent after a newer one: it loses)
        market_change("Lisbon", "Lisbon old", 9, false),
        market_change("Braga", "Braga", 15, true),
    ];
    sync(evolving.path(), &markets_catalog(), &changes).await;
    assert!(model::validate(&layout(evolving.path(), Some(&streamed))).await.expect("validate").is_empty());
    let report = build_gold(&layout(evolving.path(), Some(&streamed))).await.expect("gold");
    assert!(report.recomputed_all.is_some(), "names from the table: every day again ({context})");
    let first_names = [("Lisbon", "Lisboa"), ("Porto", "Oporto"), ("Faro", "Algarve")];
    assert_eq!(requests(evolving.path()).await, named_by(&first_names), "rides per day and market named by the table ({context})");
    assert!(build_gold(&layout(evolving.path(), Some(&streamed))).await.expect("gold").noop, "the same names: nothing to do ({context})");
    // The table changes: Lisbon leaves, Porto is renamed.
    sync(evolving.path(), &markets_catalog(), &[market_change("Lisbon", "Lisboa", 16, true), market_change("Porto", "Porto", 17, false)]).await;
    let report = build_gold(&layout(evolving.path(), Some(&streamed))).await.expect("gold");
    assert!(report.recomputed_all.is_some(), "other names: every day again ({context})");
    assert_eq!(requests(evolving.path()).await, named_by(&[("Porto", "Porto"), ("Faro", "Algarve")]), "rides per day and market named by the changed table ({context})");
    // A column the table does not have: an error naming the model line, before anything is read.
    let wrong = Model::parse(&format!("{keep_text}[gold]\ncity_column = \"market\"\ncity_names = {{ stream = \"markets\", key = \"code\", city = \"label\" }}\n"), "keep.toml").expect("model");
    let problems = model::validate(&layout(evolving.path(), Some(&wrong))).await.expect("validate");
    assert!(problems.len() == 1 && problems[0].contains(&names_line) && problems[0].contains("`label`"), "{problems:?}");
    match build_gold(&layout(evolving.path(), Some(&wrong))).await {
        Err(LakehouseError::Model { problems, .. }) => assert!(problems[0].contains("`label`") && problems[0].contains("city_name"), "{problems:?}"),
        other => panic!("expected a model error, got {other:?}"),
    }
}

/// The catalog of a source table `markets` (`code` -> `city_name`) synced in CDC mode.
fn markets_catalog() -> String {
    let text = json!({"type": "string"});
    json!({"streams": [{
        "stream": {
            "name": "markets", "namespace": common::NS,
            "json_schema": {"type": "object", "properties": {
                "code": text, "city_name": text, "_ab_cdc_cursor": {"type": "number", "airbyte_type": "integer"},
                "_ab_cdc_updated_at": text, "_ab_cdc_deleted_at": text, "_ab_cdc_log_file": text, "_ab_cdc_log_pos": {"type": "number"},
            }},
            "supported_sync_modes": ["full_refresh", "incremental"], "source_defined_cursor": true, "default_cursor_field": ["_ab_cdc_cursor"],
            "source_defined_primary_key": [["code"]], "is_resumable": true,
        },
        "sync_mode": "incremental", "cursor_field": ["_ab_cdc_cursor"], "destination_sync_mode": "append", "primary_key": [["code"]],
        "generation_id": 1, "minimum_generation_id": 0, "sync_id": 1,
    }]})
    .to_string()
}

/// A change of the `markets` table at binlog position `position` (a delete carries the row's
/// last values, as source-mysql's before-image does).
fn market_change(code: &str, name: &str, position: i64, delete: bool) -> String {
    let at = "2026-01-05T10:00:00.000000Z";
    json!({"type": "RECORD", "record": {"namespace": common::NS, "stream": "markets", "emitted_at": 1_767_607_200_000i64, "data": {
        "code": code, "city_name": name, "_ab_cdc_cursor": (1i64 << 32) | position, "_ab_cdc_updated_at": at,
        "_ab_cdc_deleted_at": if delete { json!(at) } else { Value::Null }, "_ab_cdc_log_file": "mysql-bin.000001", "_ab_cdc_log_pos": position,
    }}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_columns_follow_added_and_widened_source_columns() {
    let extra: u64 = std::env::var("RIDELAKE_KEPT_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    // Kept columns ride along with accepted links (`unlinked`) and limited waits (`expired`).
    let links = "[rides.links]\ndriver_id = \"accept\"\ncustomer_id = { wait_for = \"1h\" }\n";
    for seed in (3..=4).chain(200..200 + extra) {
        check_kept(seed, if seed % 2 == 0 { links } else { "" }).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_column_silver_cannot_widen_or_name_stops_the_run() {
    let lines = generate(rough_history(6));
    let half = lines.len() / 2;
    let datetime = json!({"type": "string", "format": "date-time", "airbyte_type": "timestamp_with_timezone"});
    let seen = |text: bool| {
        move |stream: &str, data: &mut Map<String, Value>| {
            if stream == "users" {
                data.insert("last_seen_at".into(), if text { json!("never") } else { json!("2026-11-01T10:00:00Z") });
            }
        }
    };
    let lake = tempfile::tempdir().expect("tempdir");
    let times = catalog(&[("users", "last_seen_at", datetime)], &[]);
    let first: Vec<String> = lines[..half].iter().map(|l| edited(l, seen(false))).collect();
    sync(lake.path(), &times, &first).await;
    let model = keep_model();
    run(lake.path(), Some(&model), None).await;
    let before = silver_versions(lake.path()).await;
    // The source made it text: bronze rescues the values, and silver cannot widen a time.
    let second: Vec<String> = lines[half..].iter().map(|l| edited(l, seen(true))).collect();
    sync(lake.path(), &catalog(&[("users", "last_seen_at", of_type("string"))], &[]), &second).await;
    match build_silver_with(&layout(lake.path(), Some(&model)), &SilverOptions::default()).await {
        Err(e @ LakehouseError::KeptColumnChanged { .. }) => {
            let message = e.to_string();
            for part in ["silver users keeps `last_seen_at` of bronze `users`", "keep.toml, line 3", "times", "skip_columns"] {
                assert!(message.contains(part), "{part} missing from: {message}");
            }
        }
        other => panic!("expected KeptColumnChanged, got {other:?}"),
    }
    assert_eq!(silver_versions(lake.path()).await, before, "nothing committed");
    // Skipping it is another model: an explicit rebuild, then silver has no such column.
    let skipping = Model::parse(&KEEP.replace("[\"password_hash\"]", "[\"password_hash\", \"last_seen_at\"]"), "keep.toml").expect("model");
    match build_silver_with(&layout(lake.path(), Some(&skipping)), &SilverOptions::default()).await {
        Err(LakehouseError::ModelChanged { .. }) => {}
        other => panic!("expected ModelChanged, got {other:?}"),
    }
    run_rebuild(lake.path(), &skipping).await;
    assert!(read_table(lake.path(), "users").await.column("last_seen_at").is_err());

    // A source column named as one of silver's own: a model error naming the line, before
    // anything is written.
    let lake = tempfile::tempdir().expect("tempdir");
    let reasons: Vec<String> = lines.iter().map(|l| edited(l, |stream, data| {
        if stream == "rides" {
            data.insert("reason".into(), json!("late"));
        }
    })).collect();
    sync(lake.path(), &catalog(&[("rides", "reason", of_type("string"))], &[]), &reasons).await;
    match build_silver_with(&layout(lake.path(), Some(&model)), &SilverOptions::default()).await {
        Err(LakehouseError::Model { origin, problems }) => {
            assert_eq!(origin, "keep.toml");
            assert!(problems.len() == 1 && problems[0].starts_with("line 6:") && problems[0].contains("`reason`") && problems[0].contains("skip_columns"), "{problems:?}");
        }
        other => panic!("expected a model error, got {other:?}"),
    }
    assert!(silver_versions(lake.path()).await.iter().all(Option::is_none), "nothing written");
}

async fn run_rebuild(lake: &Path, model: &Model) -> SilverReport {
    build_silver_with(&layout(lake, Some(model)), &SilverOptions { rebuild: true, ..Default::default() }).await.unwrap_or_else(|e| panic!("rebuild: {e}"))
}
