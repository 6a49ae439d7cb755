//! Gold: aggregates of silver rides for reports and ML, updated for the days that changed.
//!
//! A ride belongs to the day of its `requested_at` (UTC) and to the city nearest its pickup
//! point, among the model's cities ([`GoldMap`]; by default the example app's twelve, within
//! 60 km). Only rides in silver count (not pending, not
//! deleted). Tables (under `<root>/gold/`):
//! - `daily_city_kpis` (partitioned by day): requested, completed, cancelled rides, cancellation
//!   rate, gross fare and distance of completed rides, active drivers (with a completed ride) and
//!   customers (with a request), mean wait (requested → accepted) and mean duration (completed);
//! - `driver_daily`, `customer_daily` (partitioned by day): per-day partial sums;
//! - `driver_stats`, `customer_totals`: totals per driver / customer from the partials;
//! - `monthly_distance`: rides, completed rides, distance and gross fare per month.
//!
//! Incremental: the day tables are recomputed only for the days of the silver rides whose files
//! changed since the silver version gold last reflected (a `txn` marker on every gold table): the
//! partitions of those files when rides are filed by the day of `requested_at`, else the days of
//! the `requested_at` values in them ([`Filing`]); the small totals are re-aggregated from the day
//! tables. Recomputing a day is idempotent, so a run killed midway and rerun gives the same
//! tables.
//!
//! Memory: a run reads the days to recompute in batches of whole days that fit the memory budget
//! (as silver's, [`crate::slices::resolve_budget`]), from the rows the silver files' statistics
//! count; each batch's aggregates are staged as files of the day tables, and each day table is
//! committed once, after the last batch. The totals fold the day tables a few files at a time
//! (partial sums per driver or customer), so they hold one row per party, not per party and day.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use deltalake::parquet::arrow::ArrowWriter;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::metadata::KeyValue;
use deltalake::parquet::file::properties::WriterProperties;
use polars::prelude::*;
use serde::Serialize;

use crate::error::{LakehouseError, PolarsContext, Result};
use crate::io::{self, DataFile, Staged, Target, WriteMode};
use crate::layout::LakeLayout;
use crate::lease::Lease;
use crate::model::GoldMap;
use crate::slices;

/// `txn` app id of gold tables (version = silver rides version).
pub const GOLD_MARKER: &str = "ridelake.gold/silver.rides";
/// `txn` app id of gold tables: the hash of the cities they were computed with
/// ([`GoldMap::hash`]; none: the default cities).
pub const GOLD_MODEL_MARKER: &str = "ridelake.gold.model";
const PARTITIONS: [&str; 3] = ["year", "month", "day"];
const DAY_TABLES: [&str; 3] = ["daily_city_kpis", "driver_daily", "customer_daily"];
/// The day tables' descriptions (same order).
const DAY_TABLE_DESCRIPTIONS: [&str; 3] = [
    "Gold: per day (requested_at, UTC) and city (nearest to pickup): requests, completions, cancellations, fares, distance, active drivers and customers, mean wait and duration",
    "Gold: per day and driver: rides, completions, cancellations, distance, fare, rating sums (partials of the totals)",
    "Gold: per day and customer: rides, completions, cancellations, distance, fare, rating sums (partials of the totals)",
];
/// Memory a silver ride takes while its day is aggregated: the row read, its city, and the
/// aggregations' working copies (three tables). Set from `scripts/bench.sh scale`'s gold runs.
pub const BYTES_PER_RIDE: u64 = 1_000;
/// Day-table files read at once when the totals are folded.
const FILES_AT_ONCE: usize = 8;
/// Every gold table.
pub const GOLD_TABLES: [&str; 6] = ["daily_city_kpis", "driver_daily", "customer_daily", "driver_stats", "customer_totals", "monthly_distance"];
/// The primary key of each gold table.
pub const GOLD_KEYS: [(&str, &[&str]); 6] = [
    ("daily_city_kpis", &["year", "month", "day", "city"]),
    ("driver_daily", &["year", "month", "day", "driver_id"]),
    ("customer_daily", &["year", "month", "day", "customer_id"]),
    ("driver_stats", &["driver_id"]),
    ("customer_totals", &["customer_id"]),
    ("monthly_distance", &["year", "month"]),
];

/// What a gold column means (a column has the same meaning in every gold table).
pub fn column_doc(column: &str) -> Option<&'static str> {
    Some(match column {
        "year" | "month" | "day" => "calendar part of the ride's requested_at (UTC)",
        "city" => "city nearest to the pickup point among the model's cities (by default within 60 km), 'other' when none is, 'unknown' without a pickup point; or the ride's own city column when the model names one (through its city_names file)",
        "driver_id" => "the driver's user id",
        "customer_id" => "the customer's user id",
        "requested" => "rides requested",
        "rides" => "rides requested (for a driver: rides assigned to them)",
        "completed" => "rides completed",
        "cancelled" => "rides cancelled",
        "cancellation_rate" => "cancelled / requested",
        "gross_fare" | "fare" => "sum of fare_amount of completed rides",
        "distance_km" => "sum of distance_km of completed rides",
        "active_drivers" => "distinct drivers with a completed ride",
        "active_customers" => "distinct customers with a ride request",
        "mean_wait_s" => "mean seconds from request to acceptance",
        "mean_duration_s" => "mean duration of completed rides, seconds",
        "rating_sum" => "sum of the ratings of completed rides",
        "rating_count" => "completed rides that were rated",
        "mean_rating" => "rating_sum / rating_count",
        "first_ride_at" => "earliest requested_at",
        "last_ride_at" => "latest requested_at",
        _ => return None,
    })
}

/// Parquet key-value metadata of an export: the Delta version of the gold table it reflects.
pub const EXPORT_VERSION_KEY: &str = "ridelake.delta_version";

/// What a gold run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GoldReport {
    /// Silver rides versions reflected: (before, now).
    pub silver_versions: (Option<i64>, i64),
    /// Days recomputed.
    pub days_recomputed: u64,
    /// Silver rows read.
    pub rows_read: u64,
    /// Batches of days the run read silver in (the memory budget's).
    pub batches: u64,
    /// Why this run recomputed every day, when it did for a reason other than a first build
    /// (the model's cities changed, silver's log no longer holds gold's version).
    pub recomputed_all: Option<String>,
    /// Whether there was nothing to do.
    pub noop: bool,
    /// The commits of this run, in order.
    pub written: Vec<io::Written>,
}

/// The city of a ride whose pickup point is farther than 60 km from every known city.
pub const OTHER_CITY: &str = "other";
/// The city of a ride without a pickup point (a key column is never null: PostgreSQL and
/// Power BI need it).
pub const UNKNOWN_CITY: &str = "unknown";

/// How silver rides are filed, which says where gold finds a day's rides.
enum Filing {
    /// By the day of `requested_at` (the default): a file's partition is its rides' day.
    ByRequestDay,
    /// By another day, or by none: a file holds rides of any days, those of its `requested_at`
    /// values; its statistics' least and greatest `requested_at` (per path, when recorded) say
    /// which days it may hold.
    Otherwise(std::collections::HashMap<String, (i64, i64)>),
}

/// A day, as the day tables' partitions name it.
type Day = (i32, i32, i32);

/// The UTC day of `micros` (µs since the epoch).
fn day_of_micros(micros: i64) -> Option<chrono::NaiveDate> {
    chrono::DateTime::from_timestamp_micros(micros).map(|at| at.date_naive())
}

fn as_day(date: chrono::NaiveDate) -> Day {
    use chrono::Datelike;
    (date.year(), date.month() as i32, date.day() as i32)
}

impl Filing {
    /// The days of `days` that `file` may hold rides of.
    fn days_in<'d>(&self, file: &DataFile, days: &'d BTreeSet<Day>) -> Vec<&'d Day> {
        match self {
            Filing::ByRequestDay => file.day().and_then(|d| days.get(&d)).into_iter().collect(),
            Filing::Otherwise(ranges) => match ranges.get(&file.path).and_then(|(a, b)| Some((day_of_micros(*a)?, day_of_micros(*b)?))) {
                Some((first, last)) => days.range(as_day(first)..=as_day(last)).collect(),
                None => days.iter().collect(),
            },
        }
    }

    /// The rides of `file` estimated to be of each of `days` (`None`: the file does not count
    /// its rows): all of them in its day when rides are filed by it, else its rows spread
    /// evenly over the days its `requested_at` range spans.
    fn rides_per_day(&self, file: &DataFile, days: &BTreeSet<Day>) -> Vec<(Day, Option<u64>)> {
        let spanned = match self {
            Filing::ByRequestDay => 1,
            Filing::Otherwise(ranges) => ranges
                .get(&file.path)
                .and_then(|(a, b)| Some((day_of_micros(*b)? - day_of_micros(*a)?).num_days() as u64 + 1))
                .unwrap_or(1),
        };
        let share = file.rows.map(|rows| rows.div_ceil(spanned));
        self.days_in(file, days).into_iter().map(|d| (*d, share)).collect()
    }

    /// The days of the rides in `files` of `table`: their partitions, or their `requested_at`
    /// values' days (read from the files).
    async fn days_of(&self, table: &deltalake::DeltaTable, files: &[DataFile]) -> Result<BTreeSet<Day>> {
        match self {
            Filing::ByRequestDay => Ok(files.iter().filter_map(DataFile::day).collect()),
            Filing::Otherwise(_) => {
                let requested = io::read_columns(table, files, Some(&["requested_at"])).await?;
                let days = requested.lazy().select(crate::silver::partition_exprs("requested_at")).unique(None, UniqueKeepStrategy::Any).collect().step("finding the rides' days")?;
                crate::silver::partitions_of(&days)
            }
        }
    }

    /// The days the `requested_at` statistics of `files` (of `table`) span, every day from the
    /// least to the greatest: where the rides of files that are gone were (a vacuum deleted
    /// them); `None` when a file's statistics do not say.
    fn days_spanned(table: &deltalake::DeltaTable, files: &[DataFile]) -> Result<Option<BTreeSet<Day>>> {
        let ranges = io::timestamp_ranges(table, "requested_at")?;
        let mut days = BTreeSet::new();
        for file in files {
            let Some((first, last)) = ranges.get(&file.path).and_then(|(a, b)| Some((day_of_micros(*a)?, day_of_micros(*b)?))) else { return Ok(None) };
            days.extend(first.iter_days().take_while(|d| *d <= last).map(as_day));
        }
        Ok(Some(days))
    }

    /// The rows of `files` of `table` whose ride is of one of `days`, with that day (year,
    /// month, day), read a few files at a time (a file's rows are filtered before the next
    /// files are read).
    async fn rides_of(&self, table: &deltalake::DeltaTable, files: &[DataFile], days: &BTreeSet<Day>) -> Result<DataFrame> {
        if let Filing::ByRequestDay = self {
            return io::read_files(table, files).await;
        }
        let step = "reading the rides of the days";
        let mut of_days = lit(false);
        for (y, m, d) in days {
            of_days = of_days.or(col("year").eq(lit(*y)).and(col("month").eq(lit(*m))).and(col("day").eq(lit(*d))));
        }
        let mut parts: Vec<LazyFrame> = Vec::new();
        for chunk in files.chunks(FILES_AT_ONCE) {
            for frame in io::read_each(table, chunk, None).await? {
                parts.push(frame.lazy().with_columns(crate::silver::partition_exprs("requested_at")).filter(of_days.clone()).collect().step(step)?.lazy());
            }
        }
        if parts.is_empty() {
            return Ok(io::read_files(table, &[]).await?.lazy().with_columns(crate::silver::partition_exprs("requested_at")).collect().step(step)?);
        }
        concat(parts, UnionArgs { diagonal: true, ..Default::default() }).step(step)?.collect().step(step)
    }
}

/// `rides` with their `city`: the nearest of `gold`'s cities to the pickup point.
fn with_city(rides: DataFrame, gold: &GoldMap) -> Result<DataFrame> {
    if let Some(column) = &gold.city_column {
        // (names from a synced table name the cities even when it lists none yet: every ride is in `other` then)
        let named = gold.city_names_stream.is_some() || !gold.city_names.is_empty();
        return with_city_of_column(rides, column, gold.city_column_line, named.then_some(&gold.city_names));
    }
    let lat = rides.column("pickup_lat").step("reading pickup")?.as_materialized_series().cast(&DataType::Float64).step("reading pickup")?;
    let lon = rides.column("pickup_lon").step("reading pickup")?.as_materialized_series().cast(&DataType::Float64).step("reading pickup")?;
    let (lat, lon) = (lat.f64().step("reading pickup")?, lon.f64().step("reading pickup")?);
    let cities: Vec<&str> = lat
        .iter()
        .zip(lon.iter())
        .map(|(a, b)| match (a, b) {
            (Some(a), Some(b)) => gold.city_of(a, b).unwrap_or(OTHER_CITY),
            _ => UNKNOWN_CITY,
        })
        .collect();
    let mut rides = rides;
    rides.with_column(Column::new("city".into(), cities)).step("adding city")?;
    Ok(rides)
}

/// `rides` with `city` from their own `column` (the model's `city_column`, at model line
/// `line`): its text, trimmed, or, when the model names the cities of its values, the city
/// `names` gives for it (`other` when it gives none); null or empty is `unknown`.
fn with_city_of_column(rides: DataFrame, column: &str, line: usize, names: Option<&BTreeMap<String, String>>) -> Result<DataFrame> {
    if rides.column(column).is_err() {
        return Err(LakehouseError::Schema {
            table: "silver rides".into(),
            message: format!(
                "the model's gold city_column (line {line}) names `{column}`, which silver rides does not have: keep its source column (under [rides.extra_columns], or with other_columns = \"keep\" under [rides]) and rebuild silver, or name a column silver rides has"
            ),
        });
    }
    if let Some(names) = names {
        let step = "reading the rides' city column";
        let values = rides.column(column).step(step)?.as_materialized_series().cast(&DataType::String).step(step)?;
        let cities: Vec<&str> = values
            .str()
            .step(step)?
            .iter()
            .map(|value| match value.map(str::trim) {
                None | Some("") => UNKNOWN_CITY,
                Some(key) => names.get(key).map_or(OTHER_CITY, String::as_str),
            })
            .collect();
        let mut rides = rides;
        rides.with_column(Column::new("city".into(), cities)).step("adding city")?;
        return Ok(rides);
    }
    let city = col(column).cast(DataType::String).str().strip_chars(lit(NULL));
    rides
        .lazy()
        .with_columns([when(city.clone().is_null().or(city.clone().eq(lit("")))).then(lit(UNKNOWN_CITY)).otherwise(city).alias("city")])
        .collect()
        .step("reading the rides' city column")
}

/// The model's gold settings, with what its synced source tables say read from bronze: the
/// cities ([`crate::model::CitiesStream`]) and the city names ([`crate::model::CityNamesStream`])
/// when it names such tables (the settings as they are otherwise). Errors name the model line:
/// no bronze table, or no such column.
async fn with_synced_tables(layout: &LakeLayout) -> Result<GoldMap> {
    let mut gold = layout.model.gold.clone();
    if let Some(source) = gold.cities_stream.clone() {
        let changes = read_synced(layout, "cities", &source.stream, &[&source.key, &source.name, &source.lat, &source.lon], source.line).await?;
        gold.cities = latest_cities(&changes, &source)?;
    }
    if let Some(source) = gold.city_names_stream.clone() {
        let changes = read_synced(layout, "city_names", &source.stream, &[&source.key, &source.city], source.line).await?;
        gold.city_names = latest_names(&changes, &source.key, &source.city)?;
    }
    Ok(gold)
}

/// Every change of bronze `stream` (the model's gold `setting`, at model `line`): its `columns`
/// with the CDC and ingest order columns, in ingest order.
async fn read_synced(layout: &LakeLayout, setting: &str, stream: &str, columns: &[&str], line: usize) -> Result<DataFrame> {
    let problem = |message: String| LakehouseError::Model { origin: layout.model.origin.clone(), problems: vec![format!("line {line}: gold {setting}: {message}")] };
    let Some(table) = io::open(&layout.bronze(stream)?, &layout.storage_options()).await? else {
        return Err(problem(format!("bronze has no table `{stream}` (in namespace {}) yet: add the source table to the connection and sync it", layout.namespace)));
    };
    let present = io::present_columns(&table, columns)?;
    if let Some(missing) = columns.iter().find(|c| !present.contains(c)) {
        let found = io::arrow_schema(&table)?.fields().iter().map(|f| f.name().clone()).filter(|n| !n.starts_with("_a")).collect::<Vec<_>>().join(", ");
        return Err(problem(format!("bronze `{stream}` has no column `{missing}`; its columns are {found}")));
    }
    crate::increment::read_whole(table, columns).await
}

/// The rows a synced table's `changes` (bronze rows in ingest order, with the CDC and ingest
/// order columns) leave: per `key`, its latest change ([`crate::order`]), deletes applied, with
/// the key as text, trimmed (a row without one is left out), and `columns`. Pure.
fn latest_rows(changes: &DataFrame, key: &str, columns: &[&str]) -> Result<DataFrame> {
    let mut epochs = crate::order::EpochState::default();
    let mut fields = vec![key];
    fields.extend(columns);
    let prepared = crate::cdc::prepare(changes, &fields, &mut epochs)?;
    let text = col(key).cast(DataType::String).str().strip_chars(lit(NULL)).alias(key);
    crate::order::latest(prepared.lazy().with_column(text).filter(col(key).neq(lit(""))), key)
        .filter(col(crate::cdc::DELETED).not())
        .select(fields.iter().map(|c| col(*c)).collect::<Vec<_>>())
        .sort([key], Default::default())
        .collect()
        .step("reading a synced table")
}

/// The city names a cities table's `changes` leave ([`latest_rows`]): key and name as text,
/// trimmed; a key whose name is null or empty is left out (its rides are in `other`). Pure.
fn latest_names(changes: &DataFrame, key: &str, city: &str) -> Result<BTreeMap<String, String>> {
    let step = "reading the cities table";
    let latest = latest_rows(changes, key, &[city])?.lazy().with_column(col(city).cast(DataType::String).str().strip_chars(lit(NULL))).collect().step(step)?;
    let (keys, names) = (latest.column(key).step(step)?.str().step(step)?, latest.column(city).step(step)?.str().step(step)?);
    Ok(keys
        .iter()
        .zip(names.iter())
        .filter_map(|(k, name)| Some((k?.to_owned(), name.filter(|n| !n.is_empty())?.to_owned())))
        .collect())
}

/// The cities a synced table's `changes` leave ([`latest_rows`]), in key order: each row with a
/// name (trimmed, not gold's own `other` or `unknown`) and a center on the globe (numbers, or
/// text holding numbers); the others are left out. Pure.
fn latest_cities(changes: &DataFrame, source: &crate::model::CitiesStream) -> Result<Vec<crate::model::City>> {
    let step = "reading the cities table";
    let latest = latest_rows(changes, &source.key, &[&source.name, &source.lat, &source.lon])?;
    let degrees = |c: &str| -> Result<Vec<Option<f64>>> {
        let values = latest.column(c).step(step)?.as_materialized_series().cast(&DataType::String).step(step)?;
        Ok(values.str().step(step)?.iter().map(|v| v.and_then(|v| v.trim().parse::<f64>().ok()).filter(|d| d.is_finite())).collect())
    };
    let names = latest.column(&source.name).step(step)?.as_materialized_series().cast(&DataType::String).step(step)?;
    let (lat, lon) = (degrees(&source.lat)?, degrees(&source.lon)?);
    let cities = names
        .str()
        .step(step)?
        .iter()
        .zip(lat.into_iter().zip(lon))
        .filter_map(|(name, center)| {
            let name = name.map(str::trim).filter(|n| !n.is_empty() && *n != OTHER_CITY && *n != UNKNOWN_CITY)?;
            match center {
                (Some(lat), Some(lon)) if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) => Some(crate::model::City { name: name.to_owned(), lat, lon }),
                _ => None,
            }
        })
        .collect();
    Ok(cities)
}

fn completed() -> Expr {
    col("status").eq(lit("completed"))
}

fn micros(name: &str) -> Expr {
    col(name).cast(DataType::Int64)
}

fn daily_city_kpis(rides: LazyFrame) -> LazyFrame {
    rides
        .group_by([col("year"), col("month"), col("day"), col("city")])
        .agg([
            len().cast(DataType::Int64).alias("requested"),
            completed().cast(DataType::Int64).sum().alias("completed"),
            col("status").eq(lit("cancelled")).cast(DataType::Int64).sum().alias("cancelled"),
            col("fare_amount").filter(completed()).sum().alias("gross_fare"),
            col("distance_km").filter(completed()).sum().alias("distance_km"),
            col("driver_id").filter(completed()).drop_nulls().n_unique().cast(DataType::Int64).alias("active_drivers"),
            col("customer_id").n_unique().cast(DataType::Int64).alias("active_customers"),
            ((micros("accepted_at") - micros("requested_at")).cast(DataType::Float64) / lit(1e6)).mean().alias("mean_wait_s"),
            col("duration_s").filter(completed()).cast(DataType::Float64).mean().alias("mean_duration_s"),
        ])
        .with_column((col("cancelled").cast(DataType::Float64) / col("requested").cast(DataType::Float64)).alias("cancellation_rate"))
        .sort(["year", "month", "day", "city"], Default::default())
}

fn per_party_daily(rides: LazyFrame, party: &str) -> LazyFrame {
    let rating = if party == "driver_id" { "driver_rating" } else { "customer_rating" };
    rides
        .filter(col(party).is_not_null())
        .group_by([col("year"), col("month"), col("day"), col(party)])
        .agg([
            len().cast(DataType::Int64).alias("rides"),
            completed().cast(DataType::Int64).sum().alias("completed"),
            col("status").eq(lit("cancelled")).cast(DataType::Int64).sum().alias("cancelled"),
            col("distance_km").filter(completed()).sum().alias("distance_km"),
            col("fare_amount").filter(completed()).sum().alias("fare"),
            col(rating).filter(completed()).cast(DataType::Float64).sum().alias("rating_sum"),
            col(rating).filter(completed()).count().cast(DataType::Int64).alias("rating_count"),
            col("requested_at").min().alias("first_ride_at"),
            col("requested_at").max().alias("last_ride_at"),
        ])
        .sort(["year", "month", "day", party], Default::default())
}

fn totals(daily: LazyFrame, party: &str) -> LazyFrame {
    daily
        .group_by([col(party)])
        .agg([
            col("rides").sum(),
            col("completed").sum(),
            col("cancelled").sum(),
            col("distance_km").sum(),
            col("fare").sum(),
            col("rating_sum").sum(),
            col("rating_count").sum(),
            col("first_ride_at").min(),
            col("last_ride_at").max(),
        ])
        .with_columns([
            when(col("rating_count").gt(lit(0)))
                .then(col("rating_sum") / col("rating_count").cast(DataType::Float64))
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("mean_rating"),
            (col("cancelled").cast(DataType::Float64) / col("rides").cast(DataType::Float64)).alias("cancellation_rate"),
        ])
        .drop(cols(["rating_sum"]))
        .sort([party], Default::default())
}

/// The columns of a day table the totals sum (or take the first and last of).
const PARTIAL_COLUMNS: [&str; 9] = ["rides", "completed", "cancelled", "distance_km", "fare", "rating_sum", "rating_count", "first_ride_at", "last_ride_at"];

/// `daily` (rows of a day table, or earlier partial totals) summed per `party`: the same
/// columns, one row per party.
fn partial_totals(daily: LazyFrame, party: &str) -> LazyFrame {
    let mut aggregates: Vec<Expr> = PARTIAL_COLUMNS[..7].iter().map(|c| col(*c).sum()).collect();
    aggregates.extend([col("first_ride_at").min(), col("last_ride_at").max()]);
    daily.group_by([col(party)]).agg(aggregates)
}

/// The totals per `party` of the day table `table`, folded a few files at a time: memory holds
/// one row per party, whatever the number of days.
async fn totals_of(table: &deltalake::DeltaTable, party: &str) -> Result<DataFrame> {
    let mut columns = vec![party];
    columns.extend(PARTIAL_COLUMNS);
    let mut folded = io::read_columns(table, &[], Some(&columns[..])).await?;
    for chunk in io::files(table)?.chunks(FILES_AT_ONCE) {
        let mut parts: Vec<LazyFrame> = io::read_each(table, chunk, Some(&columns[..])).await?.into_iter().map(|f| f.lazy().select(columns.iter().map(|c| col(*c)).collect::<Vec<_>>())).collect();
        parts.push(folded.lazy());
        folded = partial_totals(concat(parts, UnionArgs::default()).step("totals")?, party).collect().step("totals")?;
    }
    totals(folded.lazy(), party).collect().step("totals")
}

/// The days to recompute in batches whose rides (from the files' statistics, as `filing` files
/// them) fit `budget`, in day order: every day in one batch without a budget; a day is never
/// split, a day whose files do not count their rows is a batch of its own, and a day without
/// rides (all deleted) counts as one (so that a budget below one ride reads each day alone).
fn day_batches(files: &[DataFile], filing: &Filing, days: &BTreeSet<(i32, i32, i32)>, budget: Option<u64>) -> Vec<BTreeSet<(i32, i32, i32)>> {
    let Some(budget) = budget else { return vec![days.clone()] };
    let room = budget.saturating_sub(slices::FIXED_BYTES).max(1);
    let mut rides: std::collections::BTreeMap<(i32, i32, i32), Option<u64>> = days.iter().map(|d| (*d, Some(0))).collect();
    for file in files {
        for (day, share) in filing.rides_per_day(file, days) {
            if let Some(count) = rides.get_mut(&day) {
                *count = count.zip(share).map(|(a, b)| a + b);
            }
        }
    }
    let mut batches: Vec<BTreeSet<(i32, i32, i32)>> = Vec::new();
    let mut held = 0u64;
    for (day, count) in rides {
        let bytes = count.map_or(u64::MAX, |c| c.max(1).saturating_mul(BYTES_PER_RIDE));
        match batches.last_mut() {
            Some(batch) if held.saturating_add(bytes) <= room => {
                batch.insert(day);
                held += bytes;
            }
            _ => {
                batches.push(BTreeSet::from([day]));
                held = bytes;
            }
        }
    }
    if batches.is_empty() {
        batches.push(BTreeSet::new());
    }
    batches
}

fn monthly(kpis: LazyFrame) -> LazyFrame {
    kpis.group_by([col("year"), col("month")])
        .agg([
            col("requested").sum().alias("rides"),
            col("completed").sum(),
            col("distance_km").sum(),
            col("gross_fare").sum(),
        ])
        .sort(["year", "month"], Default::default())
}

/// How a gold run goes.
#[derive(Debug, Clone, Default)]
pub struct GoldOptions {
    /// Memory the run may use, in bytes: it reads the days to recompute in batches that fit.
    /// `None`: `RIDELAKE_MEMORY_BUDGET`, else half the machine's memory.
    pub memory_budget: Option<u64>,
}

/// Builds (or brings up to date) the gold tables from silver rides. Holds the gold lease for the
/// whole run (two gold runs never interleave).
pub async fn build_gold(layout: &LakeLayout) -> Result<GoldReport> {
    build_gold_with(layout, &GoldOptions::default()).await
}

/// [`build_gold`] with options.
pub async fn build_gold_with(layout: &LakeLayout, run: &GoldOptions) -> Result<GoldReport> {
    let budget = slices::resolve_budget(run.memory_budget)?;
    let options = layout.storage_options();
    let lease = Lease::acquire(&layout.gold("_lease")?, &options, &crate::lease::holder("gold"), crate::lease::ttl_from_env()).await?;
    let result = gold_run(layout, budget).await;
    lease.release().await;
    result
}

async fn gold_run(layout: &LakeLayout, budget: Option<u64>) -> Result<GoldReport> {
    let options = layout.storage_options();
    let mut report = GoldReport::default();
    let rides_url = layout.silver("rides")?;
    let Some(rides) = io::open(&rides_url, &options).await? else {
        report.noop = true;
        return Ok(report);
    };
    let now = rides.version().unwrap_or_default() as i64;
    let gold_map = with_synced_tables(layout).await?;
    // The oldest marker among gold tables: recomputing more days than needed is harmless. A
    // table computed with other cities than the model's (or other names from its cities table):
    // every day again.
    let cities = crate::model::gold_inputs_hash(gold_map.hash(), &layout.model.names.rides, layout.model.rides.partition);
    let filing = match layout.model.rides.partition {
        Some(crate::model::DEFAULT_RIDES_PARTITION) => Filing::ByRequestDay,
        _ => Filing::Otherwise(io::timestamp_ranges(&rides, "requested_at")?),
    };
    let mut marker: Option<i64> = Some(now);
    let mut other_cities = false;
    // A key of silver that changed kind (integers to text, after a source migration): gold's
    // tables hold the old kind, and are computed again whole.
    let silver_schema = io::arrow_schema(&rides)?;
    let text_key = |schema: &deltalake::arrow::datatypes::Schema, column: &str| schema.field_with_name(column).ok().map(|f| crate::model::is_text(f.data_type()));
    let mut other_keys = false;
    for table in GOLD_TABLES {
        let (t, m) = io::open_with_marker(&layout.gold(table)?, &options, GOLD_MARKER).await?;
        marker = match (marker, m) {
            (Some(a), Some(b)) => Some(a.min(b)),
            _ => None,
        };
        if let Some(t) = t {
            other_cities |= io::marker(&t, GOLD_MODEL_MARKER).await?.unwrap_or(crate::model::DEFAULT_MODEL_HASH) != cities;
            let schema = io::arrow_schema(&t)?;
            other_keys |= ["driver_id", "customer_id"].iter().any(|c| text_key(&schema, c).is_some_and(|text| Some(text) != text_key(&silver_schema, c)));
        }
    }
    if other_cities && marker.is_some() {
        marker = None;
        report.recomputed_all = Some(format!("gold was computed with other cities, or from another silver rides table or filing, than {}'s", layout.model.origin));
    }
    if other_keys && marker.is_some() {
        marker = None;
        report.recomputed_all = Some("silver's user keys changed kind (integers and text) since gold was computed".into());
    }
    report.silver_versions = (marker, now);
    if marker == Some(now) {
        report.noop = true;
        return Ok(report);
    }
    let current = io::files(&rides)?;
    let days: BTreeSet<(i32, i32, i32)> = match marker {
        None => filing.days_of(&rides, &current).await?,
        Some(m) => match io::open_version(&rides_url, &options, m as u64).await {
            Ok(before) => {
                let (a, b): (BTreeSet<_>, BTreeSet<_>) = (io::files(&before)?.into_iter().collect(), current.iter().cloned().collect());
                let (removed, added): (Vec<DataFile>, Vec<DataFile>) = (a.difference(&b).cloned().collect(), b.difference(&a).cloned().collect());
                // (the files a rewrite removed are read as gold's version left them; gone, after
                // a vacuum, the days their statistics span are recomputed, and without
                // statistics every day)
                let gone = match filing.days_of(&before, &removed).await {
                    Ok(days) => Some(days),
                    Err(_) => Filing::days_spanned(&before, &removed)?,
                };
                match gone {
                    Some(mut days) => {
                        days.extend(filing.days_of(&rides, &added).await?);
                        days
                    }
                    None => {
                        marker = None;
                        report.recomputed_all = Some("the silver rides files gold last read are gone (vacuumed), and their statistics do not say which days they held".into());
                        filing.days_of(&rides, &current).await?
                    }
                }
            }
            // Silver's log no longer has that version (gold fell behind its log retention):
            // recompute every day.
            Err(_) => {
                marker = None;
                report.recomputed_all = Some("silver's log no longer holds the version gold reflects".into());
                filing.days_of(&rides, &current).await?
            }
        },
    };
    report.days_recomputed = days.len() as u64;
    let markers = [(GOLD_MARKER.to_owned(), now), (GOLD_MODEL_MARKER.to_owned(), cities)];
    let full = marker.is_none();
    let mode = if full { WriteMode::Overwrite } else { WriteMode::ReplacePartitions(days.clone()) };

    // The day tables: the days in batches, each batch's aggregates staged; one commit per table.
    let batches = day_batches(&current, &filing, &days, budget);
    report.batches = batches.len() as u64;
    let urls = DAY_TABLES.iter().map(|table| layout.gold(table)).collect::<Result<Vec<_>>>()?;
    let mut staged: [Option<Staged>; 3] = [None, None, None];
    for batch in &batches {
        let files: Vec<DataFile> = current.iter().filter(|f| !filing.days_in(f, batch).is_empty()).cloned().collect();
        let silver = with_city(filing.rides_of(&rides, &files, batch).await?, &gold_map)?;
        report.rows_read += silver.height() as u64;
        let aggregates = [
            daily_city_kpis(silver.clone().lazy()).collect().step("daily city KPIs")?,
            per_party_daily(silver.clone().lazy(), "driver_id").collect().step("per-day partials")?,
            per_party_daily(silver.lazy(), "customer_id").collect().step("per-day partials")?,
        ];
        for (k, rows) in aggregates.iter().enumerate() {
            let slot = &mut staged[k];
            let files = match slot {
                Some(files) => files,
                None => {
                    let url = &urls[k];
                    let name = format!("gold_{}", DAY_TABLES[k]);
                    let target = Target { url, options: &options, partition_by: &PARTITIONS, name: &name, description: DAY_TABLE_DESCRIPTIONS[k] };
                    slot.insert(Staged::open(&target, rows, full).await?)
                }
            };
            files.stage(rows).await?;
        }
    }
    for files in staged.into_iter().flatten() {
        report.written.push(files.commit(&mode, &markers).await?);
    }
    // Totals from the (now up to date) day tables.
    for (daily, table, party, what) in [("driver_daily", "driver_stats", "driver_id", "driver"), ("customer_daily", "customer_totals", "customer_id", "customer")] {
        let Some(partials) = io::open(&layout.gold(daily)?, &options).await? else { continue };
        let out = totals_of(&partials, party).await?;
        report.written.push(io::write(&layout.gold(table)?, &options, &out, WriteMode::Overwrite, &[], &markers, &format!("gold_{table}"),
            &format!("Gold: one row per {what}: rides, completed and cancelled rides, distance, fare, mean rating, first and last ride")).await?);
    }
    if let Some(t) = io::open(&layout.gold("daily_city_kpis")?, &options).await? {
        let all = io::read_all(&t).await?;
        let out = monthly(all.lazy()).collect().step("monthly distance")?;
        report.written.push(io::write(&layout.gold("monthly_distance")?, &options, &out, WriteMode::Overwrite, &[], &markers, "gold_monthly_distance",
            "Gold: per month: rides requested, rides completed, distance and gross fare of completed rides").await?);
    }
    Ok(report)
}

/// A gold table exported as one Parquet file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportedTable {
    /// Gold table name.
    pub table: String,
    /// Delta version of the gold table the file reflects.
    pub version: i64,
    /// Rows written.
    pub rows: u64,
    /// The file.
    pub path: String,
}

/// Exports every existing gold table to `<dir>/<table>.parquet` in the local folder `dir` (zstd).
/// Each file is written under a temporary name and renamed, so that a reader sees the previous
/// export or the new one, never a partial file; its key-value metadata
/// ([`EXPORT_VERSION_KEY`]) names the gold version it reflects.
pub async fn export_parquet(layout: &LakeLayout, dir: &Path) -> Result<Vec<ExportedTable>> {
    let failed = |what: String| move |e: std::io::Error| LakehouseError::Output(format!("{what}: {e}"));
    std::fs::create_dir_all(dir).map_err(failed(format!("cannot create {}", dir.display())))?;
    let options = layout.storage_options();
    let mut exported = Vec::new();
    for table in GOLD_TABLES {
        let Some(delta) = io::open(&layout.gold(table)?, &options).await? else { continue };
        let version = delta.version().unwrap_or_default() as i64;
        let (schema, batches) = io::read_arrow(&delta, &io::files(&delta)?).await?;
        let path = dir.join(format!("{table}.parquet"));
        let partial = dir.join(format!(".{table}.parquet.partial"));
        let file = std::fs::File::create(&partial).map_err(failed(format!("cannot create {}", partial.display())))?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_key_value_metadata(Some(vec![KeyValue::new(EXPORT_VERSION_KEY.to_owned(), version.to_string())]))
            .build();
        let mut writer = ArrowWriter::try_new(file, schema, Some(properties)).map_err(|e| LakehouseError::Output(format!("writing {}: {e}", partial.display())))?;
        let mut rows = 0u64;
        for batch in &batches {
            rows += batch.num_rows() as u64;
            writer.write(batch).map_err(|e| LakehouseError::Output(format!("writing {}: {e}", partial.display())))?;
        }
        writer.close().map_err(|e| LakehouseError::Output(format!("writing {}: {e}", partial.display())))?;
        std::fs::rename(&partial, &path).map_err(failed(format!("cannot rename {} to {}", partial.display(), path.display())))?;
        exported.push(ExportedTable { table: table.to_owned(), version, rows, path: path.display().to_string() });
    }
    Ok(exported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cities_table_s_names_are_its_latest_changes_deletes_applied() {
        use crate::order::{INGEST_ROW, INGEST_VERSION};
        // (key, name, binlog position, deleted), in ingest order
        let rows: [(Option<&str>, Option<&str>, i64, bool); 9] = [
            (Some("1"), Some("Lisbon"), 10, false),
            (Some("2"), Some(" Porto "), 11, false),
            (Some(" 1"), Some("Lisboa"), 12, false),
            (Some("3"), Some("Faro"), 13, false),
            (Some("3"), Some("Faro"), 14, true),
            // (re-sent after newer changes: loses by position)
            (Some("2"), Some("Oporto"), 9, false),
            (Some("4"), Some("  "), 15, false),
            (None, Some("Nowhere"), 16, false),
            (Some("5"), Some("Braga"), 17, false),
        ];
        let at = "2026-01-05T10:00:00.000000Z";
        let frame = df!(
            "code" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            "name" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            "_ab_cdc_cursor" => rows.iter().map(|r| (1i64 << 32) | r.2).collect::<Vec<_>>(),
            "_ab_cdc_updated_at" => rows.iter().map(|_| at).collect::<Vec<_>>(),
            "_ab_cdc_deleted_at" => rows.iter().map(|r| r.3.then_some(at)).collect::<Vec<_>>(),
            INGEST_VERSION => rows.iter().map(|_| 1i64).collect::<Vec<_>>(),
            INGEST_ROW => (0..rows.len() as i64).collect::<Vec<_>>(),
        )
        .expect("frame");
        let names = latest_names(&frame, "code", "name").expect("names");
        let expected: BTreeMap<String, String> = [("1", "Lisboa"), ("2", "Porto"), ("5", "Braga")].into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn a_cities_table_s_centers_are_its_latest_changes_deletes_applied() {
        use crate::order::{INGEST_ROW, INGEST_VERSION};
        // (key, name, lat, lon, binlog position, deleted), in ingest order; lat and lon as the
        // source sent them: text of a DECIMAL column (Java binlog rows).
        type Row = (&'static str, Option<&'static str>, Option<&'static str>, Option<&'static str>, i64, bool);
        let rows: [Row; 8] = [
            ("1", Some("Lisboa"), Some("38.7223"), Some("-9.1393"), 10, false),
            ("2", Some("Porto"), Some("41.1579"), Some("-8.6291"), 11, false),
            // Lisboa's center moves; Porto is deleted; Faro has no longitude, Mars is off the globe.
            ("1", Some(" Lisboa "), Some("38.7"), Some("-9.14"), 12, false),
            ("2", Some("Porto"), Some("41.1579"), Some("-8.6291"), 13, true),
            ("3", Some("Faro"), Some("37.0194"), None, 14, false),
            ("4", Some("Mars"), Some("95.0"), Some("0"), 15, false),
            ("5", Some("other"), Some("1"), Some("1"), 16, false),
            ("6", Some("Braga"), Some("41.5454"), Some(" -8.4265"), 17, false),
        ];
        let at = "2026-01-05T10:00:00.000000Z";
        let frame = df!(
            "city_id" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            "name" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            "lat" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            "lon" => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
            "_ab_cdc_cursor" => rows.iter().map(|r| (1i64 << 32) | r.4).collect::<Vec<_>>(),
            "_ab_cdc_updated_at" => rows.iter().map(|_| at).collect::<Vec<_>>(),
            "_ab_cdc_deleted_at" => rows.iter().map(|r| r.5.then_some(at)).collect::<Vec<_>>(),
            INGEST_VERSION => rows.iter().map(|_| 1i64).collect::<Vec<_>>(),
            INGEST_ROW => (0..rows.len() as i64).collect::<Vec<_>>(),
        )
        .expect("frame");
        let source = crate::model::CitiesStream { stream: "cities".into(), key: "city_id".into(), name: "name".into(), lat: "lat".into(), lon: "lon".into(), line: 4 };
        let cities = latest_cities(&frame, &source).expect("cities");
        let found: Vec<(&str, f64, f64)> = cities.iter().map(|c| (c.name.as_str(), c.lat, c.lon)).collect();
        assert_eq!(found, [("Lisboa", 38.7, -9.14), ("Braga", 41.5454, -8.4265)]);
        // Gold tells rides' cities by them.
        let gold = GoldMap { cities, cities_stream: Some(source), ..GoldMap::default() };
        assert_eq!((gold.city_of(38.72, -9.14), gold.city_of(41.1579, -8.6291)), (Some("Lisboa"), Some("Braga")), "Porto is gone: its rides are Braga's (within 60 km)");
    }

    #[test]
    fn a_synced_cities_table_that_names_none_yet_puts_every_ride_in_other() {
        let rides = df!("code" => [Some("1"), Some(" 2 "), None]).expect("rides");
        let city = |gold: &GoldMap| -> Vec<String> {
            let out = with_city(rides.clone(), gold).expect("city");
            out.column("city").expect("city").str().expect("text").iter().map(|c| c.unwrap_or_default().to_owned()).collect()
        };
        let mut gold = GoldMap { city_column: Some("code".into()), ..GoldMap::default() };
        assert_eq!(city(&gold), ["1", "2", UNKNOWN_CITY], "without names the column holds the city");
        gold.city_names_stream = Some(crate::model::CityNamesStream { stream: "cities".into(), key: "code".into(), city: "name".into(), line: 3 });
        assert_eq!(city(&gold), [OTHER_CITY, OTHER_CITY, UNKNOWN_CITY], "a names table without names: no ride is named");
        gold.city_names = [("2".to_owned(), "Porto".to_owned())].into();
        assert_eq!(city(&gold), [OTHER_CITY, "Porto", UNKNOWN_CITY]);
    }

    fn file(day: (i32, i32, i32), rows: Option<u64>) -> DataFile {
        let partition = [("year", day.0), ("month", day.1), ("day", day.2)].map(|(k, v)| (k.to_owned(), Some(v.to_string()))).to_vec();
        DataFile { path: format!("{day:?}-{rows:?}"), partition, id_range: None, rows, unlinked: None }
    }

    #[test]
    fn days_are_batched_whole_within_the_budget() {
        let (d1, d2, d3, d4) = ((2026, 1, 1), (2026, 1, 2), (2026, 1, 3), (2026, 1, 4));
        let ride_bytes = |rides: u64| rides * BYTES_PER_RIDE;
        // d1 holds 600 rides in two files, d2 and d3 300 each, d4 a file without a count.
        let files = [file(d1, Some(400)), file(d1, Some(200)), file(d2, Some(300)), file(d3, Some(300)), file(d4, None), file((2025, 1, 1), Some(9))];
        let days = BTreeSet::from([d1, d2, d3, d4]);
        let budget = slices::FIXED_BYTES + ride_bytes(900);
        let filing = Filing::ByRequestDay;
        let batches = day_batches(&files, &filing, &days, Some(budget));
        assert_eq!(batches, vec![BTreeSet::from([d1, d2]), BTreeSet::from([d3]), BTreeSet::from([d4])]);
        // A day larger than the budget is a batch of its own, never split.
        assert_eq!(day_batches(&files, &filing, &days, Some(1)).len(), 4);
        assert_eq!(day_batches(&files, &filing, &days, None), vec![days.clone()]);
        assert_eq!(day_batches(&files, &filing, &BTreeSet::new(), Some(budget)), vec![BTreeSet::new()], "no day to recompute: one empty batch");
    }

    #[test]
    fn rides_filed_otherwise_count_in_the_days_their_requests_span() {
        let micros = |y: i32, m: u32, d: u32, h: u32| chrono::NaiveDate::from_ymd_opt(y, m, d).and_then(|day| day.and_hms_opt(h, 0, 0)).expect("a time").and_utc().timestamp_micros();
        let unfiled = |path: &str, rows: Option<u64>| DataFile { path: path.into(), partition: vec![], id_range: None, rows, unlinked: None };
        // "a": 600 rides requested from Jan 1 to Jan 3 (200 a day); "b": 100 on Jan 3, late in
        // the day; "c": no statistics (any day); "d": 50 on Jan 9, a day not recomputed.
        let ranges = [("a", micros(2026, 1, 1, 5), micros(2026, 1, 3, 23)), ("b", micros(2026, 1, 3, 22), micros(2026, 1, 3, 23)), ("d", micros(2026, 1, 9, 1), micros(2026, 1, 9, 2))];
        let filing = Filing::Otherwise(ranges.iter().map(|(p, a, b)| ((*p).to_owned(), (*a, *b))).collect());
        let files = [unfiled("a", Some(600)), unfiled("b", Some(100)), unfiled("c", Some(7)), unfiled("d", Some(50))];
        let (d1, d2, d3, d4) = ((2026, 1, 1), (2026, 1, 2), (2026, 1, 3), (2026, 1, 4));
        let days = BTreeSet::from([d1, d2, d3, d4]);
        let held = |file: &DataFile| filing.days_in(file, &days).into_iter().copied().collect::<Vec<_>>();
        assert_eq!(held(&files[0]), [d1, d2, d3]);
        assert_eq!(held(&files[1]), [d3]);
        assert_eq!(held(&files[2]), [d1, d2, d3, d4], "a file without statistics may hold any day");
        assert!(held(&files[3]).is_empty());
        assert_eq!(filing.rides_per_day(&files[0], &days), [(d1, Some(200)), (d2, Some(200)), (d3, Some(200))]);
        // d1 and d2: 200 + 7 each; d3: 200 + 100 + 7; d4: 7.
        let budget = slices::FIXED_BYTES + 420 * BYTES_PER_RIDE;
        assert_eq!(day_batches(&files, &filing, &days, Some(budget)), vec![BTreeSet::from([d1, d2]), BTreeSet::from([d3, d4])]);
    }
}
