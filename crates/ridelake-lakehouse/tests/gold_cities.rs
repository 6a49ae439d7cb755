//! Gold's cities from the model (`[gold]`, `[[gold.cities]]`): a ride's city is the nearest of
//! the model's cities within its radius, checked against silver rides with this test's own
//! great-circle distance; gold computed with other cities recomputes every day and says why;
//! incremental gold with the model's cities equals gold built at once; going back to the default
//! cities gives the default gold again.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{NS, assert_same, generate, layout, read_table, requests, sync};
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
    let mut text = format!("version = 1\n\n[gold]\nradius_km = {RADIUS_KM}\n");
    for (name, lat, lon) in CITIES {
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
