//! Gold's cities from the model (`[gold]`, `[[gold.cities]]`): a ride's city is the nearest of
//! the model's cities within its radius, checked against silver rides with this test's own
//! great-circle distance; gold computed with other cities recomputes every day and says why;
//! incremental gold with the model's cities equals gold built at once; going back to the default
//! cities gives the default gold again. Cities taken from a source table synced to bronze (its
//! latest change per city, deletes applied) give the gold of the same cities listed in the model,
//! and a change of the table recomputes every day.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{NS, assert_same, generate, layout, read_table, requests, sync};
use ridelake_lakehouse::LakehouseError;
use serde_json::{Value, json};
use polars::prelude::*;
use ridelake_core::generator::{GeneratorConfig, configured_catalog};
use ridelake_lakehouse::gold::{GOLD_TABLES, GoldReport, build_gold};
use ridelake_lakehouse::model::Model;
use ridelake_lakehouse::silver::build_silver;

/// Three centers and a radius that splits the generator's cities: Lyon and Brussels take their
/// neighbours within 400 km, the rest is `other`.
const CITIES: [(&str, f64, f64); 3] = [("Lyon", 45.764, 4.8357), ("Brussels", 50.8503, 4.3517), ("Toronto", 43.6532, -79.3832)];
const RADIUS_KM: f64 = 400.0;

fn cities_model() -> Model {
    listed_model(&CITIES)
}

/// A model listing `cities` within [`RADIUS_KM`].
fn listed_model(cities: &[(&str, f64, f64)]) -> Model {
    let mut text = format!("version = 1\n\n[gold]\nradius_km = {RADIUS_KM}\n");
    for (name, lat, lon) in cities {
        text.push_str(&format!("\n[[gold.cities]]\nname = \"{name}\"\nlat = {lat}\nlon = {lon}\n"));
    }
    Model::parse(&text, "cities.toml").expect("the cities model")
}

async fn gold(lake: &Path, model: &Model) -> GoldReport {
    build_gold(&layout(lake, Some(model))).await.expect("gold")
}

async fn gold_tables(lake: &Path) -> Vec<(String, DataFrame)> {
    let mut out = Vec::new();
    for table in GOLD_TABLES {
        out.push((table.to_owned(), read_table(lake, &format!("gold/{table}")).await));
    }
    out
}

fn assert_same_gold(expected: &[(String, DataFrame)], got: &[(String, DataFrame)], context: &str) {
    for ((table, a), (_, b)) in expected.iter().zip(got) {
        assert_same(table, a, b, context);
    }
}

/// Great-circle distance in km (this test's own, on a sphere of radius 6371 km).
fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (p1, p2) = (a.0.to_radians(), b.0.to_radians());
    let h = ((p2 - p1) / 2.0).sin().powi(2) + p1.cos() * p2.cos() * ((b.1 - a.1).to_radians() / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

/// Rides per (year, month, day, city) of silver, the city told by [`CITIES`] and [`RADIUS_KM`].
async fn expected_requests(lake: &Path) -> BTreeMap<(i64, i64, i64, String), i64> {
    let rides = read_table(lake, "rides").await;
    let num = |name: &str| -> Vec<Option<f64>> { rides.column(name).expect(name).as_materialized_series().cast(&DataType::Float64).expect("f64").f64().expect("f64").iter().collect() };
    let (lat, lon, year, month, day) = (num("pickup_lat"), num("pickup_lon"), num("year"), num("month"), num("day"));
    let mut out = BTreeMap::new();
    for k in 0..rides.height() {
        let city = match (lat[k], lon[k]) {
            (Some(a), Some(b)) => CITIES
                .iter()
                .map(|(name, clat, clon)| (*name, distance_km((a, b), (*clat, *clon))))
                .filter(|(_, d)| *d <= RADIUS_KM)
                .min_by(|x, y| x.1.total_cmp(&y.1))
                .map_or("other", |(name, _)| name),
            _ => "unknown",
        };
        let key = (year[k].expect("year") as i64, month[k].expect("month") as i64, day[k].expect("day") as i64, city.to_owned());
        *out.entry(key).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_counts_rides_in_the_model_s_cities_incrementally_and_recomputes_when_they_change() {
    let lines = generate(GeneratorConfig { seed: 21, users: 60, rides: 600, changes: 900, state_every: 100, ..Default::default() });
    let catalog = configured_catalog(NS, "append", 1, 0, 1);
    let (stepwise, once) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let (default, cities) = (Model::default(), cities_model());

    // At once: gold with the default cities, then with the model's (every day again).
    sync(once.path(), &catalog, &lines).await;
    build_silver(&layout(once.path(), None)).await.expect("silver");
    let first = gold(once.path(), &default).await;
    assert!(first.recomputed_all.is_none() && first.days_recomputed > 5, "{first:?}");
    let default_gold = gold_tables(once.path()).await;
    let recomputed = gold(once.path(), &cities).await;
    assert_eq!(recomputed.days_recomputed, first.days_recomputed, "other cities recompute every day");
    assert!(recomputed.recomputed_all.as_deref().is_some_and(|why| why.contains("other cities") && why.contains("cities.toml")), "{recomputed:?}");
    assert!(gold(once.path(), &cities).await.noop, "the same cities again: nothing to do");
    let expected = expected_requests(once.path()).await;
    assert_eq!(requests(once.path()).await, expected, "rides per day and city");
    let named: BTreeMap<&str, i64> = expected.iter().fold(BTreeMap::new(), |mut m, ((_, _, _, c), n)| {
        *m.entry(c.as_str()).or_default() += n;
        m
    });
    assert!(CITIES.iter().all(|(c, _, _)| named.get(c).is_some_and(|n| *n > 0)) && named.get("other").is_some_and(|n| *n > 0), "every city and `other` have rides: {named:?}");
    let cities_gold = gold_tables(once.path()).await;

    // Stepwise: silver and gold after each of three syncs, with the model's cities.
    let cut = |i: usize| lines.len() * i / 3;
    for i in 0..3 {
        sync(stepwise.path(), &catalog, &lines[cut(i)..cut(i + 1)]).await;
        build_silver(&layout(stepwise.path(), None)).await.expect("silver");
        let report = gold(stepwise.path(), &cities).await;
        assert!(report.recomputed_all.is_none(), "run {i}: {report:?}");
    }
    assert_same_gold(&cities_gold, &gold_tables(stepwise.path()).await, "incremental gold with the model's cities vs at once");
    // Back to the default cities: the default gold.
    assert!(gold(stepwise.path(), &default).await.recomputed_all.is_some());
    assert_same_gold(&default_gold, &gold_tables(stepwise.path()).await, "back to the default cities");
}

/// The catalog of a source table `cities` (`city_id` -> `name`, `lat`, `lon`) synced in CDC mode.
fn cities_catalog() -> String {
    let (text, number) = (json!({"type": "string"}), json!({"type": "number"}));
    json!({"streams": [{
        "stream": {
            "name": "cities", "namespace": NS,
            "json_schema": {"type": "object", "properties": {
                "city_id": {"type": "number", "airbyte_type": "integer"}, "name": text, "lat": number, "lon": number,
                "_ab_cdc_cursor": {"type": "number", "airbyte_type": "integer"},
                "_ab_cdc_updated_at": text, "_ab_cdc_deleted_at": text, "_ab_cdc_log_file": text, "_ab_cdc_log_pos": {"type": "number"},
            }},
            "supported_sync_modes": ["full_refresh", "incremental"], "source_defined_cursor": true, "default_cursor_field": ["_ab_cdc_cursor"],
            "source_defined_primary_key": [["city_id"]], "is_resumable": true,
        },
        "sync_mode": "incremental", "cursor_field": ["_ab_cdc_cursor"], "destination_sync_mode": "append", "primary_key": [["city_id"]],
        "generation_id": 1, "minimum_generation_id": 0, "sync_id": 1,
    }]})
    .to_string()
}

/// A change of the `cities` table at binlog position `position` (a delete carries the row's last
/// values, as source-mysql's before-image does).
fn city_change(id: i64, (name, lat, lon): (&str, f64, f64), position: i64, delete: bool) -> String {
    let at = "2026-01-05T10:00:00.000000Z";
    json!({"type": "RECORD", "record": {"namespace": NS, "stream": "cities", "emitted_at": 1_767_607_200_000i64, "data": {
        "city_id": id, "name": name, "lat": lat, "lon": lon, "_ab_cdc_cursor": (1i64 << 32) | position, "_ab_cdc_updated_at": at,
        "_ab_cdc_deleted_at": if delete { json!(at) } else { Value::Null }, "_ab_cdc_log_file": "mysql-bin.000001", "_ab_cdc_log_pos": position,
    }}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gold_takes_its_cities_from_a_synced_table() {
    let lines = generate(GeneratorConfig { seed: 22, users: 60, rides: 600, changes: 900, state_every: 100, ..Default::default() });
    let catalog = configured_catalog(NS, "append", 1, 0, 1);
    let (synced, listed) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    for lake in [synced.path(), listed.path()] {
        sync(lake, &catalog, &lines).await;
        build_silver(&layout(lake, None)).await.expect("silver");
    }
    let text = format!("version = 1\n[gold]\nradius_km = {RADIUS_KM}\ncities = {{ stream = \"cities\", key = \"city_id\", name = \"name\", lat = \"lat\", lon = \"lon\" }}\n");
    let model = Model::parse(&text, "synced.toml").expect("model");
    // Before the table is synced: an error naming the model line, nothing written.
    match build_gold(&layout(synced.path(), Some(&model))).await {
        Err(LakehouseError::Model { problems, .. }) => assert!(problems.len() == 1 && problems[0].starts_with("line 4: gold cities") && problems[0].contains("`cities`"), "{problems:?}"),
        other => panic!("gold before the cities table is synced: expected a model error, got {other:?}"),
    }
    assert!(!synced.path().join("gold").exists() || std::fs::read_dir(synced.path().join("gold")).expect("gold").all(|e| e.expect("entry").file_name().to_string_lossy().starts_with('_')));
    let [lyon, brussels, toronto] = CITIES;
    let changes = [
        city_change(1, lyon, 10, false),
        city_change(2, ("Brussels", 0.0, 0.0), 11, false),
        city_change(3, toronto, 12, false),
        city_change(4, ("Paris", 48.8566, 2.3522), 13, false),
        // Brussels' center is corrected, Paris closes; an older change re-sent after them loses.
        city_change(2, brussels, 14, false),
        city_change(4, ("Paris", 48.8566, 2.3522), 15, true),
        city_change(2, ("Brussels", 0.0, 0.0), 9, false),
    ];
    sync(synced.path(), &cities_catalog(), &changes).await;
    assert!(ridelake_lakehouse::model::validate(&layout(synced.path(), Some(&model))).await.expect("validate").is_empty());
    let report = build_gold(&layout(synced.path(), Some(&model))).await.expect("gold");
    assert!(report.days_recomputed > 5, "{report:?}");
    build_gold(&layout(listed.path(), Some(&cities_model()))).await.expect("gold with the listed cities");
    assert_same_gold(&gold_tables(listed.path()).await, &gold_tables(synced.path()).await, "cities from the synced table vs the same cities listed");
    assert_eq!(requests(synced.path()).await, expected_requests(synced.path()).await, "rides per day and city");
    assert!(build_gold(&layout(synced.path(), Some(&model))).await.expect("gold").noop, "the same cities: nothing to do");
    // The table changes: Brussels closes. Every day again, as with Lyon and Toronto listed.
    sync(synced.path(), &cities_catalog(), &[city_change(2, brussels, 16, true)]).await;
    let report = build_gold(&layout(synced.path(), Some(&model))).await.expect("gold");
    assert!(report.recomputed_all.as_deref().is_some_and(|why| why.contains("other cities")), "{report:?}");
    build_gold(&layout(listed.path(), Some(&listed_model(&[lyon, toronto])))).await.expect("gold with two listed cities");
    assert_same_gold(&gold_tables(listed.path()).await, &gold_tables(synced.path()).await, "after Brussels closed");
    // A column the table does not have: named with the model line, by validate and by gold.
    let wrong = Model::parse(&text.replace("lon = \"lon\"", "lon = \"longitude\""), "synced.toml").expect("model");
    let problems = ridelake_lakehouse::model::validate(&layout(synced.path(), Some(&wrong))).await.expect("validate");
    assert!(problems.len() == 1 && problems[0].contains("line 4:") && problems[0].contains("`longitude`"), "{problems:?}");
    match build_gold(&layout(synced.path(), Some(&wrong))).await {
        Err(LakehouseError::Model { problems, .. }) => assert!(problems[0].contains("`longitude`") && problems[0].contains("city_id"), "{problems:?}"),
        other => panic!("expected a model error, got {other:?}"),
    }
}
