//! Map: the user's source schema onto silver's columns, as a model file declares it.
//!
//! Silver's tables have fixed, logical columns (`users`: id, type, …; `rides`: id, customer_id,
//! status, requested_at, …). A source database names things its own way: `accounts` with a `role`
//! of `rider`/`driver`, `trips` with `rider_id`, `fare_cents`, statuses such as `DONE`, `DATETIME`s
//! in local wall-clock time. A model file (TOML) says, for each of silver's two inputs, which
//! bronze stream holds it and where each silver column comes from:
//!
//! ```toml
//! version = 1
//! [rides]
//! stream = "trips"
//! [rides.columns]
//! id = "trip_id"
//! status = { column = "state", values = { DONE = "completed", CANCELED_BY_RIDER = "cancelled" } }
//! requested_at = { column = "pickup_ts", time_zone = "Europe/Paris" }
//! fare_amount = { column = "fare_cents", scale = 0.01 }
//! ```
//!
//! A silver column that is not listed comes from the source column of the same name, so the
//! default model (no file) is today's schema unchanged. A table may also list rules its changes
//! must keep, each a SQL condition on silver's columns with an action ([`crate::rules`]):
//!
//! ```toml
//! [[rides.rules]]
//! name = "distance is not negative"
//! check = "distance_km >= 0"
//! action = "quarantine"   # or drop, warn, fail
//! ```
//!
//! and how each link from a ride to its users is enforced (`wait`, the default, `accept` or
//! `{ wait_for = "2h" }`, see [`LinkPolicy`]):
//!
//! ```toml
//! [rides.links]
//! driver_id = "accept"
//! ```
//!
//! Users may come from several source tables, one per role, each with its own map
//! (`[[users.streams]]`, `type = "driver"`): silver's user key is then the role and the table's key
//! as one text (`driver|17`, composed as a composite key is, the role being a column of one value,
//! [`StreamMap::literals`]), and a ride's links compose the role they point to the same way.
//!
//! Source columns silver has no column for stay in bronze, unless the model keeps them: all of
//! them under their names (`other_columns = "keep"`), or chosen ones under names of its own
//! (`[rides.extra_columns] surge = "surge_multiplier"`); both are [`Kept`] columns
//! ([`StreamMap::keep`]).
//!
//! Mapping is the first step after reading bronze ([`crate::increment::read`] applies it): everything after it works on silver's columns.
//!
//! - [`Model::parse`] reads and checks a model file; every problem names its line.
//! - [`StreamMap::apply`] is the pure mapping of a bronze frame. It first reads back the values
//!   bronze could not store in their column (a source column whose type changed: bronze keeps
//!   the column's first type and rescues what no longer fits) in silver's type, or stops with
//!   [`LakehouseError::ColumnChanged`] when silver's column cannot take them.
//! - [`Model::check_bronze`] checks a model against bronze schemas, and
//!   [`StreamMap::absent_problems`] against the columns the source dropped (both pure);
//!   [`validate`] reads them (the log only; with kept columns, also the values bronze rescued)
//!   and calls them.
//! - [`Model::hash`] identifies what the model does to rows: silver commits record it
//!   ([`MODEL_MARKER`]), and a run with a different model stops until silver is rebuilt.
//! - [`json_schema`] is the model file's JSON Schema (published as `models/model.schema.json`),
//!   generated from the same types that read the file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use deltalake::arrow::datatypes::{DataType as ArrowType, Field as ArrowField, Schema as ArrowSchema};
use polars::prelude::*;
use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use toml::Spanned;

use ridelake_core::bronze::{AbsentColumns, RESCUED_DATA, safe_column_name};

use crate::error::{LakehouseError, PolarsContext, Result};
use crate::layout::LakeLayout;

/// Silver `users` columns (besides the CDC and partition columns).
pub const USER_COLUMNS: [&str; 8] = ["id", "type", "name", "email", "phone", "city", "created_at", "updated_at"];
/// Silver `rides` columns (besides the CDC and partition columns).
pub const RIDE_COLUMNS: [&str; 22] = [
    "id", "customer_id", "driver_id", "status", "requested_at", "accepted_at", "started_at", "completed_at",
    "cancelled_at", "pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon", "distance_km", "duration_s",
    "fare_amount", "currency", "payment_method", "customer_rating", "driver_rating", "created_at", "updated_at",
];
/// The values of silver `users.type`.
pub const USER_TYPES: [&str; 2] = ["customer", "driver"];
/// The values of silver `rides.status`.
pub const RIDE_STATUSES: [&str; 5] = ["requested", "accepted", "in_progress", "completed", "cancelled"];

/// Columns a model must be able to fill (from a mapping or a same-named source column).
const REQUIRED_USER_COLUMNS: [&str; 3] = ["id", "type", "created_at"];
const REQUIRED_RIDE_COLUMNS: [&str; 5] = ["id", "customer_id", "driver_id", "status", "requested_at"];
/// Key columns: integers or text ([`crate::keys`]), mapped by name only.
const KEY_COLUMNS: [&str; 3] = ["id", "customer_id", "driver_id"];
/// Numeric silver columns (the ones `scale` may apply to).
const NUMERIC_COLUMNS: [&str; 9] = ["pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon", "distance_km", "duration_s", "fare_amount", "customer_rating", "driver_rating"];

/// The names of silver's own rules: a model rule may not take one (the quarantine tells rules
/// apart by name).
pub const SILVER_RULE_NAMES: [&str; 7] = [
    "id is null",
    "customer_id is null",
    "requested_at is null",
    "status is not a ride status",
    "type is not customer or driver",
    "created_at is null",
    crate::cdc::UNREADABLE_TIME,
];

/// The column of one value ([`StreamMap::literals`]) holding the role of a users stream among
/// several: its rows' `type`, and the first part of their key.
pub const ROLE_COLUMN: &str = "_ridelake_role";
/// The columns of one value a ride's links compose their keys with, when users come from
/// several streams: `customer_id`'s role, `driver_id`'s (column, value).
pub const LINK_ROLE_COLUMNS: [(&str, &str); 2] = [("_ridelake_customer_role", "customer"), ("_ridelake_driver_role", "driver")];

/// The model file format this ridelake reads.
pub const VERSION: u32 = 1;
/// `txn` app id, on silver commits, of the hash of the model the tables were built with.
pub const MODEL_MARKER: &str = "ridelake.model";
/// The hash of the default model; also what a silver table without a model marker was built
/// with.
pub const DEFAULT_MODEL_HASH: i64 = 0;
/// Environment variable naming the model file when a call gives none.
pub const MODEL_ENV: &str = "RIDELAKE_MODEL";

// ---- the file, as written ------------------------------------------------------------------------

/// A ridelake model: which source tables and columns fill silver's `users` and `rides`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "ridelake model")]
struct ModelFile {
    /// Version of the model format: 1.
    #[schemars(with = "u32")]
    version: Spanned<u32>,
    /// Where silver `users` (customers and drivers) comes from.
    #[serde(default)]
    users: Option<TableFile>,
    /// Where silver `rides` comes from.
    #[serde(default)]
    rides: Option<TableFile>,
    /// How gold tells a ride's city.
    #[serde(default)]
    gold: Option<GoldFile>,
}

/// How gold tells a ride's city: the nearest of `cities` to its pickup point, within
/// `radius_km` (`other` beyond, `unknown` without a pickup point).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct GoldFile {
    /// The cities rides are counted in: a list (`[[gold.cities]]` entries), or a source table
    /// synced to bronze, `{ stream = "cities", key = "city_id", name = "name", lat = "lat", lon =
    /// "lon" }`, read as its changes leave it (its latest change per key, deletes applied; a row
    /// without a name or with a center off the globe is left out); gold is recomputed when the
    /// cities change. Default: the twelve cities of ridelake's example app.
    #[serde(default)]
    #[schemars(with = "Option<CitiesFile>")]
    cities: Option<Spanned<CitiesFile>>,
    /// A pickup point farther than this from every city's center belongs to city `other`;
    /// default 60.
    #[serde(default)]
    #[schemars(with = "Option<f64>")]
    radius_km: Option<Spanned<f64>>,
    /// A column of silver rides that names each ride's city (a source column kept with
    /// `other_columns = "keep"` under `[rides]`, such as a `city` or `market` column of the
    /// trips table): gold counts rides by it instead of by pickup point (null or empty:
    /// `unknown`). Not with `cities` or `radius_km`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    city_column: Option<Spanned<String>>,
    /// The cities that `city_column`'s values stand for, such as a `city_id`'s: a CSV file (a
    /// path relative to the model file) with a header naming columns `key` and `city`, then one
    /// row per value; or a source table synced to bronze, `{ stream = "cities", key = "city_id",
    /// city = "name" }`, read as its changes leave it (its latest change per key, deletes
    /// applied). Values are compared as text, trimmed; a ride whose value is not listed is in
    /// city `other`. Needs `city_column`; gold is recomputed when the names change.
    #[serde(default)]
    #[schemars(with = "Option<CityNamesFile>")]
    city_names: Option<Spanned<CityNamesFile>>,
}

/// Where gold's city names come from: a CSV file next to the model, or a synced source table.
#[derive(JsonSchema)]
#[schemars(untagged)]
enum CityNamesFile {
    /// A CSV file (a path relative to the model file) with columns `key` and `city`.
    File(String),
    /// A source table synced to bronze.
    Stream(CityNamesStreamFile),
}

/// A source table naming cities, synced to bronze like users and rides.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CityNamesStreamFile {
    /// The bronze stream (source table).
    stream: String,
    /// Its column holding the values of the rides' `city_column`.
    key: String,
    /// Its column holding the city's name in gold.
    city: String,
}

impl<'de> Deserialize<'de> for CityNamesFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct NamesVisitor;
        impl<'de> Visitor<'de> for NamesVisitor {
            type Value = CityNamesFile;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a CSV file's path, or a table such as { stream = \"cities\", key = \"city_id\", city = \"name\" }")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> std::result::Result<CityNamesFile, E> {
                Ok(CityNamesFile::File(value.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<CityNamesFile, A::Error> {
                CityNamesStreamFile::deserialize(de::value::MapAccessDeserializer::new(map)).map(CityNamesFile::Stream)
            }
        }
        deserializer.deserialize_any(NamesVisitor)
    }
}

/// Where gold's cities come from: the model's list, or a synced source table.
#[derive(JsonSchema)]
#[schemars(untagged)]
enum CitiesFile {
    /// The cities, each with its name and center.
    List(#[schemars(with = "Vec<CityFile>")] Vec<Spanned<CityFile>>),
    /// A source table synced to bronze.
    Stream(CitiesStreamFile),
}

/// A source table of cities and their centers, synced to bronze like users and rides.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CitiesStreamFile {
    /// The bronze stream (source table).
    stream: String,
    /// Its key column (a city's changes are told apart by it).
    key: String,
    /// Its column holding the city's name in gold.
    name: String,
    /// Its column holding the latitude of the city's center, degrees.
    lat: String,
    /// Its column holding the longitude of the city's center, degrees.
    lon: String,
}

impl<'de> Deserialize<'de> for CitiesFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct CitiesVisitor;
        impl<'de> Visitor<'de> for CitiesVisitor {
            type Value = CitiesFile;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of cities ([[gold.cities]] with name, lat and lon), or a table such as { stream = \"cities\", key = \"city_id\", name = \"name\", lat = \"lat\", lon = \"lon\" }")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<CitiesFile, A::Error> {
                let mut cities = Vec::new();
                while let Some(city) = seq.next_element::<Spanned<CityFile>>()? {
                    cities.push(city);
                }
                Ok(CitiesFile::List(cities))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<CitiesFile, A::Error> {
                CitiesStreamFile::deserialize(de::value::MapAccessDeserializer::new(map)).map(CitiesFile::Stream)
            }
        }
        deserializer.deserialize_any(CitiesVisitor)
    }
}

/// A city: its name in gold and its center.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CityFile {
    /// The city's name in gold (`daily_city_kpis.city`).
    name: String,
    /// Latitude of its center, degrees.
    lat: f64,
    /// Longitude of its center, degrees.
    lon: f64,
}

/// One silver table's source.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TableFile {
    /// The bronze stream (source table) that holds it; default: the silver table's name.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    stream: Option<Spanned<String>>,
    /// Silver column = the source column that fills it, or a table saying how. A silver column
    /// not listed is filled from the source column of the same name.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ColumnFile>")]
    columns: BTreeMap<String, Spanned<ColumnFile>>,
    /// Rules every change of the table must keep (besides silver's own: a key, the columns it
    /// cannot do without, known statuses and roles), each with what happens to a change that
    /// breaks it.
    #[serde(default)]
    #[schemars(with = "Vec<RuleFile>")]
    rules: Vec<Spanned<RuleFile>>,
    /// Rides only: how each link from a ride to its users is enforced, by the ride's column
    /// (`customer_id`: a registered customer; `driver_id`, once set: a registered driver).
    /// `wait` (the default) keeps the ride in `rides_pending` until the user is registered;
    /// `accept` publishes it at once and names the link that does not hold in its `unlinked`
    /// column, cleared when the user arrives; `{ wait_for = "2h" }` waits, and quarantines the
    /// ride with the reason once it has waited that long on bronze's clock.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, LinkPolicy>")]
    links: BTreeMap<String, Spanned<LinkPolicy>>,
    /// What silver does with the source columns no entry of `columns` reads: `drop` them (the
    /// default) or `keep` them, under their source names and types. With `keep`, a column the
    /// source adds later reaches silver (silver is rebuilt once to take it), and one whose type
    /// the source widens (an integer made a decimal, a number made text) widens silver's.
    #[serde(default)]
    #[schemars(with = "Option<OtherColumns>")]
    other_columns: Option<Spanned<OtherColumns>>,
    /// With `other_columns = "keep"`: source columns not to keep all the same (a password hash,
    /// free text you do not want in the lake).
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    skip_columns: Option<Spanned<Vec<String>>>,
    /// Source columns silver keeps besides its own, each under the name given here: silver
    /// column = source column (`surge = "surge_multiplier"`), or a table
    /// (`{ column = "tip_cents", scale = 0.01, optional = true }`). They are kept whatever
    /// `other_columns` says (with `keep`, a source column named here is kept under its new name
    /// only), in their source's type, widened as `other_columns = "keep"` widens a column the
    /// source widens, or converted by one of `scale`, `time_zone` or `values`; rules may read
    /// them. A name is lowercase letters, digits and `_`, starting
    /// with a letter, and none of silver's own columns. Adding, renaming or removing one asks
    /// for a rebuild.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ColumnFile>")]
    extra_columns: BTreeMap<String, Spanned<ColumnFile>>,
    /// Users only, when they come from several source tables (`passengers` and `drivers`): one
    /// entry per table, each with its `stream`, its `type` and its own `columns`, `rules`,
    /// `other_columns` and `skip_columns` (which `[users]` itself then leaves out). The tables
    /// usually number their rows apart (two auto-increment counters), so silver's user key is
    /// the role and the table's key as one text (`driver|17`, as a composite key), and a ride's
    /// `customer_id` and `driver_id` point to `customer|<its column>` and `driver|<its column>`.
    #[serde(default)]
    #[schemars(with = "Vec<TableFile>")]
    streams: Vec<Spanned<TableFile>>,
    /// In an entry of `[[users.streams]]`: the role of every user of that table, `customer` or
    /// `driver` (silver's `type`).
    #[serde(default, rename = "type")]
    #[schemars(with = "Option<String>")]
    role: Option<Spanned<String>>,
    /// The silver table's name, its folder under `<lake>/silver/` (default `users`, `rides`):
    /// lowercase letters, digits and `_`, starting with a letter. Rides name the tables that go
    /// with them too: `<table>_pending` and `<table>_deleted`. A new name is a new table, built
    /// from bronze at the next run (the old one is left as it is). Under `[users]`, not in its
    /// `[[users.streams]]` entries.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    table: Option<Spanned<String>>,
    /// What partitions the silver table: the UTC day (year/month/day columns) of one of its
    /// timestamp columns, or `none`. Users: `created_at` (the default), `updated_at` (a change
    /// without it is then quarantined) or `none` (one table, rewritten whole when users change:
    /// for up to a few million users). Rides: `requested_at` (the default), `created_at` or
    /// `updated_at` (a change without it is then quarantined; a ride moves to the day of its last
    /// change), or `none` (rewritten whole when rides change: for up to a few million rides);
    /// gold counts a ride in the day of its `requested_at` however rides are filed. Changing it
    /// asks for a rebuild; between `none` and a day, into a new table (a new `table` name, or the
    /// old folder removed), since a table keeps its partition columns.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    partition: Option<Spanned<String>>,
}

/// What silver does with the source columns the model does not map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OtherColumns {
    /// Leave them out of silver.
    #[default]
    Drop,
    /// Keep them in silver under their source names.
    Keep,
}

impl OtherColumns {
    /// Whether the source's other columns are left out of silver.
    pub fn drops(&self) -> bool {
        *self == OtherColumns::Drop
    }
}

/// How a link from a ride to one of its users is enforced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkPolicy {
    /// The ride waits in `rides_pending` until the user is registered, and is released then.
    #[default]
    Wait,
    /// The ride is published at once; its `unlinked` column names the link that does not hold,
    /// until the user is registered.
    Accept,
    /// `{ wait_for = "2h" }`: the ride waits as with `wait`, for at most this long after its
    /// latest change was extracted, on bronze's clock (the newest `_airbyte_extracted_at` of the
    /// users and rides bronze holds, never the run's wall clock); then it is quarantined with the
    /// reason. It stays in `rides_pending` (marked `expired`) and is still released when the user
    /// arrives.
    WaitFor(WaitLimit),
}

/// How long a ride may wait for a user (`wait_for`): a duration such as `"90s"`, `"30min"`,
/// `"2h"`, `"1day 12h"`, kept to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WaitLimit {
    seconds: u64,
}

impl WaitLimit {
    /// A limit of `seconds` (at least one).
    pub fn from_seconds(seconds: u64) -> Option<WaitLimit> {
        (seconds > 0 && seconds <= MAX_WAIT_SECONDS).then_some(WaitLimit { seconds })
    }

    /// The limit in microseconds (bronze's clock unit).
    pub fn micros(&self) -> i64 {
        self.seconds as i64 * 1_000_000
    }
}

/// The longest wait a model may give (100 of humantime's years, 365.25 days): anything longer
/// is `wait`.
const MAX_WAIT_SECONDS: u64 = 100 * 31_557_600;

impl fmt::Display for WaitLimit {
    /// As written in reasons, in days, hours, minutes and seconds: `2h`, `1d 12h`, `31d`, `90s`
    /// → `1m 30s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut left = self.seconds;
        let mut parts = Vec::new();
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if left >= size {
                parts.push(format!("{}{unit}", left / size));
                left %= size;
            }
        }
        write!(f, "{}", parts.join(" "))
    }
}

impl Serialize for WaitLimit {
    /// As seconds, so that `"120min"` and `"2h"` hash alike.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.seconds)
    }
}

impl<'de> Deserialize<'de> for WaitLimit {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let parsed = humantime::parse_duration(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!("`{text}` is not a duration ({e}); write it as \"90s\", \"30min\", \"2h\" or \"1day 12h\""))
        })?;
        if parsed.subsec_nanos() != 0 {
            return Err(serde::de::Error::custom(format!("`{text}`: a wait is kept to the second; drop the fraction")));
        }
        WaitLimit::from_seconds(parsed.as_secs()).ok_or_else(|| {
            serde::de::Error::custom(format!("`{text}`: a wait lasts from one second to 100 years (no wait at all is `accept`, no limit is `wait`)"))
        })
    }
}

impl JsonSchema for WaitLimit {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "WaitLimit".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "How long a ride may wait for the user: a duration such as \"90s\", \"30min\", \"2h\" or \"1day 12h\" (one second to 100 years).",
            "examples": ["2h", "30min", "1day 12h"]
        })
    }
}

/// The links of a ride to its users, and how each is enforced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Links {
    /// The ride's customer (`customer_id`) must be a registered customer.
    pub customer_id: LinkPolicy,
    /// The ride's driver (`driver_id`), once set, must be a registered driver.
    pub driver_id: LinkPolicy,
}

impl Links {
    /// Whether every link waits (what silver did before links could be declared).
    pub fn is_default(&self) -> bool {
        *self == Links::default()
    }

    /// Whether some link is accepted when it does not hold: published rides then carry an
    /// `unlinked` column.
    pub fn accepts_any(&self) -> bool {
        self.customer_id == LinkPolicy::Accept || self.driver_id == LinkPolicy::Accept
    }

    /// Whether some link waits for a limited time (`wait_for`): rides then need bronze's clock,
    /// and pending rides carry an `expired` column.
    pub fn waits_for_any(&self) -> bool {
        [self.customer_id, self.driver_id].iter().any(|p| matches!(p, LinkPolicy::WaitFor(_)))
    }
}

/// A rule: a condition every change must meet, and what happens to one that does not.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    /// A SQL condition on silver's columns (their silver names, after the mapping), such as
    /// `distance_km >= 0`, `fare_amount BETWEEN 0 AND 1000` or `completed_at >= requested_at`. A
    /// change breaks the rule when the condition is false; null (unknown) passes, as in a SQL
    /// CHECK constraint. Deletes are not checked.
    check: String,
    /// The rule's name, in the quarantine, the report and errors; default: the condition.
    #[serde(default)]
    name: Option<String>,
    /// What happens to a change that breaks the rule: `quarantine` (the default) sets it aside in
    /// silver's quarantine and silver keeps the key's latest change that breaks no rule; `drop`
    /// does the same without a quarantine row (the report counts them); `warn` sets nothing
    /// aside and counts it in the report; `fail` stops the run before anything is committed.
    #[serde(default)]
    action: RuleAction,
}

/// What happens to a change that breaks a model rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Set it aside in silver's quarantine (silver keeps the key's latest valid change).
    #[default]
    Quarantine,
    /// Set it aside without a quarantine row; the report counts it.
    Drop,
    /// Set nothing aside; the report counts it.
    Warn,
    /// Stop the run before anything is committed.
    Fail,
}

impl RuleAction {
    /// Whether the action changes silver's rows (a model whose row-changing rules change needs
    /// a rebuild; warn and fail rules do not).
    pub fn changes_rows(self) -> bool {
        matches!(self, RuleAction::Quarantine | RuleAction::Drop)
    }
}

/// A source column's name, a table with its name and conversions, or (keys only) the source
/// columns of a composite key.
#[derive(JsonSchema)]
#[schemars(untagged)]
enum ColumnFile {
    /// The source column, taken as it is.
    Name(String),
    /// The source column with conversions.
    Table(ColumnTable),
    /// Keys only (`id`, `customer_id`, `driver_id`): the source columns of a composite key, in
    /// order, such as `["region_id", "trip_id"]`. Silver's key holds them as one text, each
    /// value as text joined by `|` (a `|` or `\` in a value written `\|` or `\\`); the columns
    /// themselves are kept in silver under their names too.
    Names(Vec<String>),
}

/// A source column and how its values become silver's.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ColumnTable {
    /// The source column.
    column: String,
    /// Source value (as text) -> silver value; values not listed are kept as they are.
    #[serde(default)]
    values: BTreeMap<String, String>,
    /// The IANA time zone (`Europe/Paris`) whose wall-clock time a DATETIME column holds; silver
    /// holds the UTC instant. In the hour repeated when clocks go back, the earlier instant is
    /// taken; a time that does not exist in the zone (clocks going forward) becomes null.
    #[serde(default)]
    time_zone: Option<String>,
    /// A factor the value is multiplied by (cents -> currency units: 0.01).
    #[serde(default)]
    scale: Option<f64>,
    /// Whether the source may stop sending the column (drop it, or leave it out of the
    /// connection's fields): silver then takes null for it in the changes that lack it. Without
    /// it, a source column that disappears stops the run with an error naming it. Not for the
    /// columns silver cannot do without.
    #[serde(default)]
    optional: bool,
}

impl<'de> Deserialize<'de> for ColumnFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct ColumnVisitor;
        impl<'de> Visitor<'de> for ColumnVisitor {
            type Value = ColumnFile;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a source column name, a table such as { column = \"state\", values = { DONE = \"completed\" } }, or (keys only) a list of source columns such as [\"region_id\", \"trip_id\"]")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> std::result::Result<ColumnFile, E> {
                Ok(ColumnFile::Name(value.to_owned()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> std::result::Result<ColumnFile, A::Error> {
                Vec::<String>::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(ColumnFile::Names)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<ColumnFile, A::Error> {
                ColumnTable::deserialize(de::value::MapAccessDeserializer::new(map)).map(ColumnFile::Table)
            }
        }
        deserializer.deserialize_any(ColumnVisitor)
    }
}

/// The JSON Schema of model files (`models/model.schema.json`; editors such as taplo use it).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(ModelFile)).unwrap_or_default()
}

// ---- the model, checked --------------------------------------------------------------------------

/// Where one silver column comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnMap {
    /// The silver column.
    pub silver: String,
    /// The source (bronze) column.
    pub source: String,
    /// Source value (as text) -> silver value.
    pub values: Vec<(String, String)>,
    /// The zone of a wall-clock DATETIME.
    pub time_zone: Option<String>,
    /// A factor.
    pub scale: Option<f64>,
    /// A composite key's source columns, in order (bronze's names, or the name of one of the
    /// stream's [`StreamMap::literals`]); `source` is then the name of the column
    /// [`StreamMap::apply`] composes of them ([`composite_name`]). Empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    /// Line in the model file (0: the default model).
    #[serde(skip)]
    pub line: usize,
}

impl ColumnMap {
    /// Whether the source's values change on their way to silver (values, time_zone, scale).
    fn converts(&self) -> bool {
        !self.values.is_empty() || self.time_zone.is_some() || self.scale.is_some()
    }
}

/// A model rule, checked: its condition parses, and reads only the table's silver columns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// The rule's name (its condition when the file gives none).
    pub name: String,
    /// The SQL condition a change must meet.
    pub check: String,
    /// What happens to a change that breaks it.
    pub action: RuleAction,
    /// Line in the model file.
    #[serde(skip)]
    pub line: usize,
    /// The model file.
    #[serde(skip)]
    pub origin: String,
    /// The silver columns the condition reads.
    #[serde(skip)]
    pub columns: Vec<String>,
}

/// The rules of a table that change rows, as the model's hash counts them.
fn rows_changing_rules<S: serde::Serializer>(rules: &[Rule], serializer: S) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_seq(rules.iter().filter(|r| r.action.changes_rows()))
}

fn no_rows_changing_rules(rules: &[Rule]) -> bool {
    !rules.iter().any(|r| r.action.changes_rows())
}

/// One silver table's source stream and column mapping.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamMap {
    /// The silver table (`users` or `rides`).
    pub table: &'static str,
    /// The bronze stream that holds it.
    pub stream: String,
    /// Line of `stream` in the model file (0: not given).
    #[serde(skip)]
    pub stream_line: usize,
    /// The mapped columns, by silver name; a column not here comes from its namesake.
    pub columns: Vec<ColumnMap>,
    /// The model's rules for the table's changes, in file order ([`crate::rules`]). (The hash
    /// counts those that change rows; a model without them hashes as before rules existed.)
    #[serde(serialize_with = "rows_changing_rules", skip_serializing_if = "no_rows_changing_rules")]
    pub rules: Vec<Rule>,
    /// Rides: how the links to the ride's users are enforced (users: always the default). (The
    /// hash counts them when one is not `wait`.)
    #[serde(skip_serializing_if = "Links::is_default")]
    pub links: Links,
    /// Silver columns whose source column may disappear (`optional = true`). (Not in the hash: a
    /// run they let through writes what a rebuild would.)
    #[serde(skip)]
    pub optional: Vec<String>,
    /// The model line of every silver column the file lists (also those it maps to their
    /// namesake, which `columns` leaves out).
    #[serde(skip)]
    pub lines: BTreeMap<String, usize>,
    /// What silver does with the source columns no mapping reads. (The hash counts it, with
    /// `skip_columns`, when it keeps them.)
    #[serde(skip_serializing_if = "OtherColumns::drops")]
    pub other_columns: OtherColumns,
    /// Source columns `keep` leaves out all the same (bronze's names).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skip_columns: Vec<String>,
    /// Line of `other_columns` in the model file (0: not given).
    #[serde(skip)]
    pub other_columns_line: usize,
    /// Source columns kept under the model's names (`extra_columns`), by silver name, each
    /// with its conversion if any (never a composite). (In the hash when there are some.)
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<ColumnMap>,
    /// The source columns kept, as [`StreamMap::keep`] found them in bronze's schema (empty
    /// until then, and with `drop`).
    #[serde(skip)]
    pub kept: Vec<Kept>,
    /// The table's key columns (silver names) whose source column holds text, as
    /// [`StreamMap::read_key_kinds`] found bronze's schema (the others hold integers; empty
    /// until then).
    /// (Not in the hash: a key that changes kind comes with a rebuild, [`StreamMap::key_difference`].)
    #[serde(skip)]
    pub text_keys: Vec<&'static str>,
    /// Columns of one value that [`StreamMap::apply`] adds to every row before mapping (name,
    /// value): the role of a users stream among several ([`ROLE_COLUMN`]), and the roles a ride's
    /// links then compose their keys with ([`LINK_ROLE_COLUMNS`]). Empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub literals: Vec<(String, String)>,
    /// The timestamp column whose UTC day (year/month/day) partitions the silver table, `None`
    /// when it is not partitioned. (In the hash when it is not the table's default,
    /// [`Model::hash`].)
    #[serde(skip)]
    pub partition: Option<&'static str>,
    /// The model file (for errors).
    #[serde(skip)]
    pub origin: String,
}

/// The silver tables' names, their folders under `<lake>/silver/` ([`Model::silver_table`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilverNames {
    /// Silver users' (`users` by default).
    pub users: String,
    /// Silver rides' (`rides` by default); also the first part of `<rides>_pending` and
    /// `<rides>_deleted`.
    pub rides: String,
}

impl Default for SilverNames {
    fn default() -> Self {
        SilverNames { users: "users".to_owned(), rides: "rides".to_owned() }
    }
}

/// A city gold counts rides in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct City {
    /// Its name in gold.
    pub name: String,
    /// Latitude of its center, degrees.
    pub lat: f64,
    /// Longitude of its center, degrees.
    pub lon: f64,
}

/// How gold tells a ride's city: the nearest of `cities` whose center is within `radius_km` of
/// the pickup point, or the ride's `city_column`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GoldMap {
    /// The cities.
    pub cities: Vec<City>,
    /// The farthest a pickup point may be from a city's center to belong to it.
    pub radius_km: f64,
    /// The column of silver rides holding the ride's city, when the model names one (then
    /// `cities` and `radius_km` are not used). (The hash counts it when set.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city_column: Option<String>,
    /// Line of `city_column` in the model file (0: not given).
    #[serde(skip)]
    pub city_column_line: usize,
    /// `city_column`'s values and the cities they stand for, from the model's `city_names` file,
    /// or from its stream once [`crate::gold`] has read it (empty: the column holds the city
    /// itself). (The hash counts them when set.)
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub city_names: BTreeMap<String, String>,
    /// The synced source table the city names come from, when the model names one: gold reads
    /// it into `city_names` at the start of each run. (The hash counts it when set.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city_names_stream: Option<CityNamesStream>,
    /// The synced source table the cities come from, when the model names one: gold reads it
    /// into `cities` at the start of each run. (The hash counts it when set.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cities_stream: Option<CitiesStream>,
}

/// A synced source table of cities (`[gold] cities = { stream, key, name, lat, lon }`); its
/// columns as bronze names them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CitiesStream {
    /// The bronze stream.
    pub stream: String,
    /// Its key column.
    pub key: String,
    /// Its column of city names.
    pub name: String,
    /// Its column of the centers' latitudes.
    pub lat: String,
    /// Its column of the centers' longitudes.
    pub lon: String,
    /// Line of `cities` in the model file.
    #[serde(skip)]
    pub line: usize,
}

/// A synced source table that names cities (`[gold] city_names = { stream, key, city }`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CityNamesStream {
    /// The bronze stream.
    pub stream: String,
    /// Its column of `city_column` values (bronze's name).
    pub key: String,
    /// Its column of city names (bronze's name).
    pub city: String,
    /// Line of `city_names` in the model file.
    #[serde(skip)]
    pub line: usize,
}

impl Default for GoldMap {
    /// The example app's cities ([`ridelake_core::cities::CITIES`]) within 60 km.
    fn default() -> Self {
        GoldMap {
            cities: ridelake_core::cities::CITIES.iter().map(|(name, lat, lon, _)| City { name: (*name).to_owned(), lat: *lat, lon: *lon }).collect(),
            radius_km: ridelake_core::cities::MAX_CITY_RADIUS_KM,
            city_column: None,
            city_column_line: 0,
            city_names: BTreeMap::new(),
            city_names_stream: None,
            cities_stream: None,
        }
    }
}

impl GoldMap {
    /// The city of a pickup point: the nearest center within the radius, if any.
    pub fn city_of(&self, lat: f64, lon: f64) -> Option<&str> {
        self.cities
            .iter()
            .map(|c| (c, ridelake_core::cities::haversine_km(lat, lon, c.lat, c.lon)))
            .filter(|(_, d)| *d <= self.radius_km)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(c, _)| c.name.as_str())
    }

    /// A number that changes when gold's cities change ([`DEFAULT_MODEL_HASH`] for the default
    /// ones): gold records it, and recomputes every day when it differs.
    pub fn hash(&self) -> i64 {
        if *self == GoldMap::default() {
            return DEFAULT_MODEL_HASH;
        }
        hash_of(self)
    }
}

/// What gold records of its inputs ([`crate::gold`]'s model marker): the hash of its cities
/// (`gold_hash`, [`GoldMap::hash`]) and, when the model names silver rides otherwise than
/// `rides`, that name, and when it files them by another day than `requested_at`'s, how
/// (`rides_partition`, [`StreamMap::partition`]): gold computed from another table, or from a
/// table whose files changed meaning, is computed again whole.
pub fn gold_inputs_hash(gold_hash: i64, rides_table: &str, rides_partition: Option<&str>) -> i64 {
    let named = if rides_table == "rides" { gold_hash } else { hash_of(&(gold_hash, rides_table)) };
    match rides_partition {
        Some(DEFAULT_RIDES_PARTITION) => named,
        other => hash_of(&(named, "rides filed by", other.unwrap_or("none"))),
    }
}

/// 63 bits of a SHA-256 of `value`'s JSON.
fn hash_of(value: &impl Serialize) -> i64 {
    let canonical = serde_json::to_vec(value).unwrap_or_default();
    let digest = Sha256::digest(&canonical);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) >> 1) as i64
}

/// A checked model: silver's two inputs, and how gold tells cities.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Where it was read from (a path, or "the default model").
    pub origin: String,
    /// Silver `users`' source (with users from several source tables, the first of them:
    /// [`Model::user_maps`] lists them all).
    pub users: StreamMap,
    /// Silver `users`' other source tables, after `users` (`[[users.streams]]`); empty when users
    /// come from one table.
    pub more_users: Vec<StreamMap>,
    /// Silver `rides`' source.
    pub rides: StreamMap,
    /// Gold's cities (not part of [`Model::hash`]: they change no silver row).
    pub gold: GoldMap,
    /// The silver tables' names (not part of [`Model::hash`]: another name is another table).
    pub names: SilverNames,
}

impl Default for Model {
    /// Today's schema: streams `users` and `rides`, every column from its namesake.
    fn default() -> Self {
        Model {
            origin: "the default model".to_owned(),
            users: StreamMap::identity("users", "the default model"),
            more_users: Vec::new(),
            rides: StreamMap::identity("rides", "the default model"),
            gold: GoldMap::default(),
            names: SilverNames::default(),
        }
    }
}

/// Line (from 1) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// A problem at a line of the model file.
fn at(line: usize, message: impl fmt::Display) -> String {
    if line == 0 { message.to_string() } else { format!("line {line}: {message}") }
}

fn list(names: &[&str]) -> String {
    names.join(", ")
}

impl Model {
    /// Reads the model file at `path`.
    pub fn load(path: &Path) -> Result<Model> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| LakehouseError::Model { origin: origin.clone(), problems: vec![format!("cannot read it: {e}")] })?;
        Model::parse(&text, &origin)
    }

    /// The model file at `path`, or else the one `RIDELAKE_MODEL` names, or else the default model.
    pub fn resolve(path: Option<&Path>) -> Result<Model> {
        match path {
            Some(p) => Model::load(p),
            None => match std::env::var_os(MODEL_ENV).filter(|v| !v.is_empty()) {
                Some(p) => Model::load(Path::new(&p)),
                None => Ok(Model::default()),
            },
        }
    }

    /// Reads and checks a model file's text; `origin` names it in errors. Every problem is
    /// reported, each with its line.
    pub fn parse(text: &str, origin: &str) -> Result<Model> {
        let fail = |problems: Vec<String>| LakehouseError::Model { origin: origin.to_owned(), problems };
        let file: ModelFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |span| line_of(text, span.start));
            fail(vec![at(line, e.message().trim_end())])
        })?;
        let mut problems = Vec::new();
        if *file.version.get_ref() != VERSION {
            problems.push(at(line_of(text, file.version.span().start), format!("version {} is not a model version this ridelake reads; write version = {VERSION}", file.version.get_ref())));
        }
        let mut file = file;
        let (users_table, users_partition) = file.users.as_mut().map(|u| (u.table.take(), u.partition.take())).unwrap_or_default();
        let (rides_table, rides_partition) = file.rides.as_mut().map(|r| (r.table.take(), r.partition.take())).unwrap_or_default();
        let names = compile_names(users_table, rides_table, text, &mut problems);
        let users_partition = compile_partition("users", users_partition, text, &mut problems);
        let rides_partition = compile_partition("rides", rides_partition, text, &mut problems);
        let mut users = compile_users(file.users, text, origin, &mut problems);
        for map in &mut users {
            map.partition = users_partition;
            if users_partition == Some("updated_at")
                && let Some(rule) = map.rules.iter().find(|r| r.name == UPDATED_AT_RULE)
            {
                problems.push(at(rule.line, format!("users rule `{UPDATED_AT_RULE}` is the name of silver's own rule when users are filed by updated_at; give the rule another name")));
            }
        }
        let mut rides = compile_table("rides", &RIDE_COLUMNS, &REQUIRED_RIDE_COLUMNS, file.rides, text, origin, &mut problems);
        rides.partition = rides_partition;
        if rides_partition == Some("updated_at")
            && let Some(rule) = rides.rules.iter().find(|r| r.name == UPDATED_AT_RULE)
        {
            problems.push(at(rule.line, format!("rides rule `{UPDATED_AT_RULE}` is the name of silver's own rule when rides are filed by updated_at; give the rule another name")));
        }
        if users.len() > 1 {
            link_to_roles(&mut rides);
        }
        let more_users = users.split_off(1.min(users.len()));
        let users = users.pop().unwrap_or_else(|| StreamMap::identity("users", origin));
        // (files the model names are next to it)
        let folder = Path::new(origin).parent().unwrap_or(Path::new(""));
        let gold = compile_gold(file.gold, text, folder, &mut problems);
        if let Some(column) = &gold.city_column {
            if rides.skip_columns.iter().any(|c| c.eq_ignore_ascii_case(column)) {
                problems.push(at(gold.city_column_line, format!("gold city_column `{column}` is in skip_columns under [rides]: silver rides will not have it")));
            } else if let Some(e) = rides.extra.iter().find(|e| e.source.eq_ignore_ascii_case(column) && e.silver != *column) {
                problems.push(at(gold.city_column_line, format!("gold city_column `{column}` is kept in silver rides as `{}` (extra_columns, line {}): name `{}`", e.silver, e.line, e.silver)));
            } else if rides.other_columns.drops() && !RIDE_COLUMNS.contains(&column.as_str()) && !rides.key_parts().iter().any(|p| p.eq_ignore_ascii_case(column)) && !rides.extra.iter().any(|e| e.silver == *column) {
                problems.push(at(gold.city_column_line, format!(
                    "gold city_column `{column}` is not a column of silver rides: keep its source column (under [rides.extra_columns], or with other_columns = \"keep\" under [rides]) to have it there, or name one of silver's ride columns"
                )));
            }
        }
        if !problems.is_empty() {
            return Err(fail(problems));
        }
        Ok(Model { origin: origin.to_owned(), users, more_users, rides, gold, names })
    }

    /// The folder under `<lake>/silver/` of the silver table the code calls `table` (one of
    /// [`crate::maintain::SILVER_TABLES`]: `users`, `rides`, `rides_pending`, `rides_deleted`,
    /// `quarantine`), as the model names it; any other name is taken as it is.
    pub fn silver_table(&self, table: &str) -> String {
        let rides = &self.names.rides;
        match table {
            "users" => self.names.users.clone(),
            "rides" => rides.clone(),
            "rides_pending" => format!("{rides}_pending"),
            "rides_deleted" => format!("{rides}_deleted"),
            other => other.to_owned(),
        }
    }

    /// The maps of silver users' source tables: [`Model::users`], then [`Model::more_users`].
    pub fn user_maps(&self) -> Vec<&StreamMap> {
        std::iter::once(&self.users).chain(&self.more_users).collect()
    }

    /// A number that changes when the model changes what silver's rows are (not with comments,
    /// layout or the order of entries): 63 bits of a SHA-256 of the checked mappings, and
    /// [`DEFAULT_MODEL_HASH`] for the default model whatever this crate's types look like (so
    /// that silver built before models existed, or by another release, never needs a rebuild
    /// for it).
    pub fn hash(&self) -> i64 {
        if self.is_default() {
            return DEFAULT_MODEL_HASH;
        }
        let maps = if self.more_users.is_empty() { hash_of(&(&self.users, &self.rides)) } else { hash_of(&(&self.users, &self.rides, &self.more_users)) };
        // (silver's partitioning shapes its rows: counted when it is not the default)
        let maps = match self.users.partition {
            Some(DEFAULT_USERS_PARTITION) => maps,
            other => hash_of(&(maps, other.unwrap_or("none"))),
        };
        match self.rides.partition {
            Some(DEFAULT_RIDES_PARTITION) => maps,
            other => hash_of(&(maps, "rides", other.unwrap_or("none"))),
        }
    }

    /// Whether this is the default model's mapping (what silver built before models existed was).
    pub fn is_default(&self) -> bool {
        self.more_users.is_empty() && self.users.partition == Some(DEFAULT_USERS_PARTITION) && self.rides.partition == Some(DEFAULT_RIDES_PARTITION) && [&self.users, &self.rides].iter().all(|m| m.stream == m.table && m.columns.is_empty() && no_rows_changing_rules(&m.rules) && m.links.is_default() && m.other_columns.drops() && m.extra.is_empty())
    }

    /// Checks the model against the bronze tables' schemas (`None`: the stream has no bronze
    /// table yet): every column it names exists, with a type its conversion can take, keys are
    /// integers or text, a ride's links are of the kind of the users' key, and every column
    /// silver needs can be filled. Each problem names the model line.
    /// `users` holds the schemas of [`Model::user_maps`]' streams, in their order.
    pub fn check_bronze(&self, users: &[Option<&ArrowSchema>], rides: Option<&ArrowSchema>) -> Vec<String> {
        debug_assert_eq!(users.len(), 1 + self.more_users.len(), "one schema per users stream");
        let mut problems = Vec::new();
        // (the column a table is filed by is needed too: without it, every change would be
        // quarantined)
        let needed = |required: &[&'static str], map: &StreamMap| -> Vec<&'static str> { required.iter().copied().chain(map.partition).collect() };
        for (map, schema) in self.user_maps().into_iter().zip(users) {
            map.check(&USER_COLUMNS, &needed(&REQUIRED_USER_COLUMNS, map), *schema, &mut problems);
        }
        self.rides.check(&RIDE_COLUMNS, &needed(&REQUIRED_RIDE_COLUMNS, &self.rides), rides, &mut problems);
        for (map, users) in self.user_maps().into_iter().zip(users) {
            if let (Some(users), Some(rides)) = (users, rides) {
                self.check_links(map, users, rides, &mut problems);
            }
        }
        problems
    }

    /// Checks that the ride's links to the users of `users_map` (a users stream of schema
    /// `users`; of its role only, when it has one) hold the kind of key those users have.
    fn check_links(&self, users_map: &StreamMap, users: &ArrowSchema, rides: &ArrowSchema, problems: &mut Vec<String>) {
        // (a key column that is missing, or of neither kind, is reported above) Each source
        // column of a key: whether it holds text, and its type.
        let kinds = |map: &StreamMap, schema: &ArrowSchema, silver: &str| -> Option<Vec<(bool, ArrowType)>> {
            map.sources_of(silver)
                .into_iter()
                .map(|source| {
                    let dtype = schema.field_with_name(source).ok()?.data_type();
                    (is_text(dtype) || is_integer(dtype)).then(|| (is_text(dtype), dtype.clone()))
                })
                .collect()
        };
        let name = |text: bool| if text { "text" } else { "integers" };
        let shown = |kinds: &[(bool, ArrowType)]| kinds.iter().map(|(text, dtype)| format!("{dtype} ({})", name(*text))).collect::<Vec<_>>().join(", ");
        if let Some(user_kinds) = kinds(users_map, users, "id") {
            let links = match users_map.role() {
                Some("driver") => &["driver_id"][..],
                Some(_) => &["customer_id"][..],
                None => &["customer_id", "driver_id"][..],
            };
            for &link in links {
                let Some(link_kinds) = kinds(&self.rides, rides, link) else { continue };
                let (user_source, link_source) = (users_map.source_label("id"), self.rides.source_label(link));
                let users_key = match users_map.role() {
                    Some(_) => format!("the key of users stream `{}`", users_map.stream),
                    None => "the users' key users.id".to_owned(),
                };
                if link_kinds.len() != user_kinds.len() {
                    problems.push(at(self.rides.line_of(link), format!(
                        "rides.{link} comes from {} column(s) ({link_source}), and {users_key} from {} ({user_source}): a link holds the key it points to, column for column; map {link} to the ride's columns holding the user's {user_source}, in that order",
                        link_kinds.len(),
                        user_kinds.len(),
                    )));
                } else if link_kinds.iter().zip(&user_kinds).any(|(a, b)| a.0 != b.0) {
                    problems.push(at(self.rides.line_of(link), format!(
                        "rides.{link} comes from {link_source} of type {}, and {users_key} from {user_source} of type {}: a link must hold the kind of key it points to; map {link} to the column(s) holding the user's {user_source}",
                        shown(&link_kinds),
                        shown(&user_kinds),
                    )));
                }
            }
        }
    }
}

/// The silver tables' names the model gives (`[users] table`, `[rides] table`), checked: each
/// a plain identifier, and no two of silver's tables in one folder.
fn compile_names(users: Option<Spanned<String>>, rides: Option<Spanned<String>>, text: &str, problems: &mut Vec<String>) -> SilverNames {
    let mut names = SilverNames::default();
    let mut lines = [0usize; 2];
    for (k, given) in [users, rides].into_iter().enumerate() {
        let Some(given) = given else { continue };
        let line = line_of(text, given.span().start);
        let name = given.into_inner();
        let plain = name.len() <= 48 && name.starts_with(|c: char| c.is_ascii_lowercase()) && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            problems.push(at(line, format!("table = \"{name}\" is not a silver table name ridelake writes: use lowercase letters, digits and `_`, starting with a letter (up to 48 characters)")));
            continue;
        }
        lines[k] = line;
        if k == 0 { names.users = name } else { names.rides = name }
    }
    let model = Model { names: names.clone(), ..Model::default() };
    let folders: Vec<(&str, String)> = crate::maintain::SILVER_TABLES.iter().map(|t| (*t, model.silver_table(t))).collect();
    let line_of_table = |table: &str| if table == "users" { lines[0] } else { lines[1] };
    for (i, (table, folder)) in folders.iter().enumerate() {
        if let Some((other, _)) = folders[..i].iter().find(|(_, f)| f == folder) {
            let line = if lines[0] > 0 && [*table, *other].contains(&"users") { lines[0] } else { lines[1] };
            problems.push(at(line, format!("silver {other} and silver {table} would both be the table `{folder}`: give the users or the rides table another name")));
        } else if let Some(other) = crate::maintain::SILVER_TABLES.iter().find(|other| *other != table && *other == folder) {
            // (a lake built before may hold that table there: a rebuild would overwrite it)
            problems.push(at(line_of_table(table), format!("`{folder}` is where silver {other} is by default, and a lake may hold it there: give silver {table} a name of its own")));
        }
    }
    names
}

/// Silver users' default partitioning: the day of `created_at`.
pub const DEFAULT_USERS_PARTITION: &str = "created_at";

/// The rule that quarantines a user change without the `updated_at` silver users are filed by
/// (`partition = "updated_at"`); reserved for models then.
pub const UPDATED_AT_RULE: &str = "updated_at is null";

/// Silver rides' default partitioning: the day of `requested_at`, the day gold counts a ride in.
pub const DEFAULT_RIDES_PARTITION: &str = "requested_at";

/// The rule that quarantines a ride change without the `created_at` silver rides are filed by
/// (`partition = "created_at"` under `[rides]`); a name silver's users rules already reserve.
pub const RIDE_CREATED_AT_RULE: &str = "created_at is null";

/// The partitioning a table's `partition` asks for: the timestamp column whose day files its
/// rows, or `None` (`partition = "none"`). Users: `created_at`, `updated_at`; rides:
/// `requested_at`, `created_at`, `updated_at` (a ride's lifecycle times are empty until it gets
/// there: they cannot file every ride).
fn compile_partition(table: &str, given: Option<Spanned<String>>, text: &str, problems: &mut Vec<String>) -> Option<&'static str> {
    let default = if table == "users" { DEFAULT_USERS_PARTITION } else { DEFAULT_RIDES_PARTITION };
    let Some(given) = given else { return Some(default) };
    let line = line_of(text, given.span().start);
    match (table, given.get_ref().as_str()) {
        (_, "none") => None,
        (_, "created_at") => Some("created_at"),
        (_, "updated_at") => Some("updated_at"),
        ("rides", "requested_at") => Some("requested_at"),
        ("users", other) => {
            problems.push(at(line, format!("partition = \"{other}\": silver users are partitioned by the day of created_at or updated_at, or not at all: write \"created_at\", \"updated_at\" or \"none\"")));
            Some(default)
        }
        (_, other @ ("accepted_at" | "started_at" | "completed_at" | "cancelled_at")) => {
            problems.push(at(line, format!(
                "partition = \"{other}\": a ride has no {other} until it gets there, so it cannot file every ride: write \"requested_at\" (the default, the day gold counts a ride in), \"created_at\", \"updated_at\" or \"none\""
            )));
            Some(default)
        }
        (_, other) => {
            problems.push(at(line, format!(
                "partition = \"{other}\": silver rides are partitioned by the day of requested_at (the default), created_at or updated_at, or not at all: write one of \"requested_at\", \"created_at\", \"updated_at\", \"none\"; to file rides by another source timestamp, map one of these to it under [rides.columns] (e.g. updated_at = \"{other}\")"
            )));
            Some(default)
        }
    }
}

fn compile_gold(file: Option<GoldFile>, text: &str, folder: &Path, problems: &mut Vec<String>) -> GoldMap {
    let mut gold = GoldMap::default();
    let Some(file) = file else { return gold };
    if let Some(column) = file.city_column {
        gold.city_column_line = line_of(text, column.span().start);
        let name = ridelake_core::bronze::safe_column_name(column.get_ref().trim());
        if name.is_empty() {
            problems.push(at(gold.city_column_line, "gold city_column is empty: name the rides column that holds the city"));
        } else if file.cities.is_some() || file.radius_km.is_some() {
            problems.push(at(gold.city_column_line, "gold city_column names the rides' city column, and cities and radius_km tell cities by pickup point: give one of the two"));
        }
        gold.city_column = Some(name);
    }
    if let Some(names) = file.city_names {
        let line = line_of(text, names.span().start);
        if gold.city_column.is_none() {
            problems.push(at(line, "gold city_names tells the cities of city_column's values: name the rides column that holds them (city_column = \"city_id\")"));
        } else {
            match names.into_inner() {
                CityNamesFile::File(path) => gold.city_names = read_city_names(&folder.join(path.trim()), line, problems),
                CityNamesFile::Stream(s) => {
                    let (stream, key, city) = (s.stream.trim().to_owned(), ridelake_core::bronze::safe_column_name(s.key.trim()), ridelake_core::bronze::safe_column_name(s.city.trim()));
                    if let Err(e) = ridelake_core::bronze::safe_segment("stream", &stream) {
                        problems.push(at(line, format!("gold city_names: {e}")));
                    }
                    if key.is_empty() || city.is_empty() {
                        problems.push(at(line, "gold city_names: name the stream's key column and its city column (key = \"city_id\", city = \"name\")"));
                    } else if key.eq_ignore_ascii_case(&city) {
                        problems.push(at(line, format!("gold city_names: the key and the city are one column (`{key}`); the city is the column holding the names")));
                    }
                    gold.city_names_stream = Some(CityNamesStream { stream, key, city, line });
                }
            }
        }
    }
    if let Some(radius) = file.radius_km {
        let line = line_of(text, radius.span().start);
        let radius = radius.into_inner();
        if radius.is_finite() && radius > 0.0 {
            gold.radius_km = radius;
        } else {
            problems.push(at(line, format!("gold radius_km must be a number of kilometres above 0, not {radius}")));
        }
    }
    let Some(cities) = file.cities else { return gold };
    let list_line = line_of(text, cities.span().start);
    gold.cities.clear();
    let cities = match cities.into_inner() {
        CitiesFile::List(cities) => cities,
        CitiesFile::Stream(s) => {
            let stream = s.stream.trim().to_owned();
            if let Err(e) = ridelake_core::bronze::safe_segment("stream", &stream) {
                problems.push(at(list_line, format!("gold cities: {e}")));
            }
            let columns = [&s.key, &s.name, &s.lat, &s.lon].map(|c| ridelake_core::bronze::safe_column_name(c.trim()));
            if columns.iter().any(String::is_empty) {
                problems.push(at(list_line, "gold cities: name the stream's key, name, lat and lon columns (key = \"city_id\", name = \"name\", lat = \"lat\", lon = \"lon\")"));
            } else if columns.iter().enumerate().any(|(i, c)| columns[..i].iter().any(|d| d.eq_ignore_ascii_case(c))) {
                problems.push(at(list_line, format!("gold cities: key, name, lat and lon are four columns of the stream, not {}", columns.join(", "))));
            }
            let [key, name, lat, lon] = columns;
            gold.cities_stream = Some(CitiesStream { stream, key, name, lat, lon, line: list_line });
            return gold;
        }
    };
    if cities.is_empty() {
        problems.push(at(list_line, "gold cities is empty: list at least one city, or leave it out for the default cities"));
    }
    for spanned in cities {
        let line = line_of(text, spanned.span().start);
        let city = spanned.into_inner();
        let name = city.name.trim().to_owned();
        if name.is_empty() || name == crate::gold::OTHER_CITY || name == crate::gold::UNKNOWN_CITY {
            problems.push(at(line, format!("gold city `{name}`: give each city a name other than `{}` and `{}` (gold's own)", crate::gold::OTHER_CITY, crate::gold::UNKNOWN_CITY)));
        } else if gold.cities.iter().any(|c| c.name == name) {
            problems.push(at(line, format!("gold city `{name}` is listed twice")));
        }
        if !(-90.0..=90.0).contains(&city.lat) || !(-180.0..=180.0).contains(&city.lon) {
            problems.push(at(line, format!("gold city `{name}`: lat must be within -90..90 and lon within -180..180 (degrees)")));
        }
        gold.cities.push(City { name, lat: city.lat, lon: city.lon });
    }
    gold
}

/// The `key` → `city` rows of the model's `city_names` CSV at `path` (`line`: where the model
/// names it); each mistake is a problem naming the model line and the file's.
fn read_city_names(path: &Path, line: usize, problems: &mut Vec<String>) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let shown = path.display();
    let found = problems.len();
    let mut reader = match csv::ReaderBuilder::new().trim(csv::Trim::All).from_path(path) {
        Ok(reader) => reader,
        Err(e) => {
            problems.push(at(line, format!("gold city_names: cannot read {shown}: {e}")));
            return names;
        }
    };
    let headers = match reader.headers() {
        Ok(headers) => headers.clone(),
        Err(e) => {
            problems.push(at(line, format!("gold city_names: {shown}: {e}")));
            return names;
        }
    };
    let position = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(key), Some(city)) = (position("key"), position("city")) else {
        problems.push(at(line, format!("gold city_names: {shown} must start with a header naming its columns key and city (it has {})", headers.iter().collect::<Vec<_>>().join(","))));
        return names;
    };
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                problems.push(at(line, format!("gold city_names: {shown}: {e}")));
                break;
            }
        };
        let row = record.position().map_or(0, |p| p.line());
        let (value, name) = (record.get(key).unwrap_or(""), record.get(city).unwrap_or(""));
        if value.is_empty() {
            problems.push(at(line, format!("gold city_names: {shown} line {row}: the key is empty")));
        } else if name.is_empty() || name == crate::gold::OTHER_CITY || name == crate::gold::UNKNOWN_CITY {
            problems.push(at(line, format!("gold city_names: {shown} line {row}: give key `{value}` a city name other than `{}` and `{}` (gold's own)", crate::gold::OTHER_CITY, crate::gold::UNKNOWN_CITY)));
        } else if names.insert(value.to_owned(), name.to_owned()).is_some() {
            problems.push(at(line, format!("gold city_names: {shown} line {row}: key `{value}` is listed twice")));
        }
    }
    if names.is_empty() && problems.len() == found {
        problems.push(at(line, format!("gold city_names: {shown} lists no city")));
    }
    names
}

/// Silver users' maps: one, or one per entry of `[[users.streams]]` (each stream's rows of its
/// role, keyed by role and the stream's key: [`with_role`]).
fn compile_users(file: Option<TableFile>, text: &str, origin: &str, problems: &mut Vec<String>) -> Vec<StreamMap> {
    let mut file = match file {
        Some(f) if !f.streams.is_empty() => f,
        other => return vec![compile_table("users", &USER_COLUMNS, &REQUIRED_USER_COLUMNS, other, text, origin, problems)],
    };
    let entries = std::mem::take(&mut file.streams);
    let first_line = entries.first().map_or(0, |e| line_of(text, e.span().start));
    let stray = [
        file.stream.as_ref().map(|s| ("stream", line_of(text, s.span().start))),
        file.columns.values().next().map(|c| ("columns", line_of(text, c.span().start))),
        file.rules.first().map(|r| ("rules", line_of(text, r.span().start))),
        file.other_columns.as_ref().map(|o| ("other_columns", line_of(text, o.span().start))),
        file.skip_columns.as_ref().map(|o| ("skip_columns", line_of(text, o.span().start))),
        file.extra_columns.values().next().map(|c| ("extra_columns", line_of(text, c.span().start))),
        file.role.as_ref().map(|o| ("type", line_of(text, o.span().start))),
    ];
    for (what, line) in stray.into_iter().flatten() {
        problems.push(at(line, format!("[users] lists its source tables under [[users.streams]] (line {first_line}): give `{what}` in each stream's entry instead")));
    }
    if !file.links.is_empty() {
        problems.push(at(first_line, "silver users has no links: links are declared under [rides.links] (customer_id, driver_id)"));
    }
    let (mut maps, listed): (Vec<StreamMap>, usize) = (Vec::new(), entries.len());
    for entry in entries {
        let line = line_of(text, entry.span().start);
        let mut entry = entry.into_inner();
        let role = entry.role.take();
        for (what, given) in [("table", entry.table.take()), ("partition", entry.partition.take())] {
            if let Some(given) = given {
                problems.push(at(line_of(text, given.span().start), format!("`{what}` is silver users' own, whatever tables they come from: write it under [users], not in a [[users.streams]] entry")));
            }
        }
        if !entry.streams.is_empty() {
            problems.push(at(line, "a users stream cannot list streams of its own"));
        }
        if entry.stream.is_none() {
            problems.push(at(line, "each [[users.streams]] entry names its source table: stream = \"<table>\""));
        }
        if let Some(spanned) = entry.columns.get("type") {
            problems.push(at(line_of(text, spanned.span().start), "users.type of a users stream is the entry's `type` (customer or driver), the role of all its rows: remove this mapping"));
        }
        entry.columns.remove("type");
        let mut map = compile_table("users", &USER_COLUMNS, &REQUIRED_USER_COLUMNS, Some(entry), text, origin, problems);
        let role = match role {
            None => {
                problems.push(at(line, format!("the users stream `{}` has no `type`: write type = \"customer\" or type = \"driver\" (the role of all its rows)", map.stream)));
                continue;
            }
            Some(role) => role,
        };
        let role_line = line_of(text, role.span().start);
        let role = role.into_inner();
        if !USER_TYPES.contains(&role.as_str()) {
            problems.push(at(role_line, format!("type = \"{role}\" is not a user type: write customer or driver")));
            continue;
        }
        if let Some(twice) = maps.iter().find(|m| m.role() == Some(role.as_str())) {
            problems.push(at(role_line, format!(
                "two users streams are of type {role} (`{}` and `{}`): their keys would collide in silver, where a user's key is its type and its stream's key. List one stream per type",
                twice.stream, map.stream
            )));
            continue;
        }
        if let Some(twice) = maps.iter().find(|m| m.stream.eq_ignore_ascii_case(&map.stream)) {
            problems.push(at(role_line, format!("the stream `{}` is listed twice under [[users.streams]]", twice.stream)));
            continue;
        }
        with_role(&mut map, &role, line);
        maps.push(map);
    }
    let missing: Vec<&str> = USER_TYPES.iter().copied().filter(|t| !maps.iter().any(|m| m.role() == Some(*t))).collect();
    // (an entry left out above is reported already)
    if !missing.is_empty() && maps.len() == listed {
        problems.push(at(first_line, format!("rides link a customer and a driver: [[users.streams]] needs a stream of type {} too", list(&missing))));
    }
    maps
}

/// Makes `map` (a users stream's) give its rows the role `role`: its `type` is `role`, and its
/// key is the role and the stream's key as one text, composed as a composite key is (the role
/// first), so that user 17 of `drivers` and user 17 of `passengers` are two users.
fn with_role(map: &mut StreamMap, role: &str, line: usize) {
    map.literals.push((ROLE_COLUMN.to_owned(), role.to_owned()));
    map.columns.retain(|c| c.silver != "type");
    map.columns.push(ColumnMap { silver: "type".to_owned(), source: ROLE_COLUMN.to_owned(), values: Vec::new(), time_zone: None, scale: None, parts: Vec::new(), line });
    map.lines.insert("type".to_owned(), line);
    prefix_key(map, "id", ROLE_COLUMN);
}

/// Makes rides' links point to users keyed by role ([`with_role`]): `customer_id` composes
/// `customer` with the ride's column(s), `driver_id` `driver`.
fn link_to_roles(rides: &mut StreamMap) {
    for (link, (column, role)) in ["customer_id", "driver_id"].into_iter().zip(LINK_ROLE_COLUMNS) {
        rides.literals.push((column.to_owned(), role.to_owned()));
        prefix_key(rides, link, column);
    }
}

/// Makes key `silver` of `map` a composite key whose first part is the literal column `literal`.
fn prefix_key(map: &mut StreamMap, silver: &str, literal: &str) {
    let line = map.lines.get(silver).copied().unwrap_or(map.stream_line);
    let index = map.columns.iter().position(|c| c.silver == silver);
    let mut column = match index {
        Some(i) => map.columns.remove(i),
        None => ColumnMap { silver: silver.to_owned(), source: silver.to_owned(), values: Vec::new(), time_zone: None, scale: None, parts: Vec::new(), line },
    };
    if column.parts.is_empty() {
        column.parts = vec![std::mem::replace(&mut column.source, composite_name(silver))];
    }
    column.parts.insert(0, literal.to_owned());
    map.columns.push(column);
}

fn compile_table(table: &'static str, columns: &[&str], required: &[&str], file: Option<TableFile>, text: &str, origin: &str, problems: &mut Vec<String>) -> StreamMap {
    let mut map = StreamMap::identity(table, origin);
    let Some(file) = file else { return map };
    // (users' streams are compiled by compile_users, which reports an entry's own)
    if let Some(first) = file.streams.first().filter(|_| table != "users") {
        problems.push(at(line_of(text, first.span().start), format!("silver {table} comes from one stream: `streams` is for users from several source tables")));
    }
    if let Some(role) = &file.role {
        problems.push(at(line_of(text, role.span().start), format!("`type` names the role of a users stream, in an entry of [[users.streams]]; silver {table} takes it from its columns")));
    }
    if let Some(stream) = file.stream {
        map.stream_line = line_of(text, stream.span().start);
        map.stream = stream.into_inner();
        // (the stream's folder is named as the destination names it, see LakeLayout::bronze)
        if let Err(e) = ridelake_core::bronze::safe_segment("stream", &map.stream) {
            problems.push(at(map.stream_line, e));
        }
    }
    for (silver, spanned) in file.columns {
        let line = line_of(text, spanned.span().start);
        if !columns.contains(&silver.as_str()) {
            problems.push(at(line, format!("`{silver}` is not a column of silver {table}; its columns are {}", list(columns))));
            continue;
        }
        let mut column = match spanned.into_inner() {
            ColumnFile::Name(source) => ColumnMap { silver, source, values: Vec::new(), time_zone: None, scale: None, parts: Vec::new(), line },
            ColumnFile::Names(parts) => {
                let parts: Vec<String> = parts.iter().map(|p| ridelake_core::bronze::safe_column_name(p.trim())).collect();
                if !KEY_COLUMNS.contains(&silver.as_str()) {
                    problems.push(at(line, format!("{table}.{silver} lists several source columns, and only keys (id, customer_id, driver_id) can be composite: name one source column")));
                } else if parts.len() < 2 {
                    problems.push(at(line, format!("{table}.{silver}: a composite key lists two source columns or more; for one, write {silver} = \"{}\"", parts.first().map_or("<source column>", String::as_str))));
                } else if parts.iter().any(String::is_empty) {
                    problems.push(at(line, format!("{table}.{silver}: a source column name in the list is empty")));
                } else if let Some(twice) = parts.iter().enumerate().find_map(|(i, p)| parts[..i].iter().any(|q| q.eq_ignore_ascii_case(p)).then_some(p)) {
                    problems.push(at(line, format!("{table}.{silver}: `{twice}` is listed twice in the composite key")));
                }
                map.lines.insert(silver.clone(), line);
                map.columns.push(ColumnMap { source: composite_name(&silver), silver, values: Vec::new(), time_zone: None, scale: None, parts, line });
                continue;
            }
            ColumnFile::Table(t) => {
                if t.optional {
                    if required.contains(&silver.as_str()) {
                        problems.push(at(line, format!("{table}.{silver} cannot be optional: silver {table} needs it ({})", list(required))));
                    }
                    map.optional.push(silver.clone());
                }
                ColumnMap { silver, source: t.column, values: t.values.into_iter().collect(), time_zone: t.time_zone, scale: t.scale, parts: Vec::new(), line }
            }
        };
        map.lines.insert(column.silver.clone(), line);
        check_column(table, &column, problems);
        // The source column as bronze names it (the destination replaces the characters Delta
        // forbids in column names, such as spaces).
        if !column.source.is_empty() {
            column.source = ridelake_core::bronze::safe_column_name(&column.source);
        }
        // A column mapped to its own name with no conversion is the default: leave it out, so
        // that writing it down does not change the model's hash.
        if column.source != column.silver || column.converts() {
            map.columns.push(column);
        }
    }
    for (silver, spanned) in file.extra_columns {
        let line = line_of(text, spanned.span().start);
        if let Some(extra) = compile_extra(table, columns, silver, spanned.into_inner(), line, &mut map, problems) {
            map.extra.push(extra);
        }
    }
    // (rules read silver's own columns and the extra ones)
    let extra_names: Vec<String> = map.extra.iter().map(|e| e.silver.clone()).collect();
    let rule_columns: Vec<&str> = columns.iter().copied().chain(extra_names.iter().map(String::as_str)).collect();
    for spanned in file.rules {
        let line = line_of(text, spanned.span().start);
        let rule = spanned.into_inner();
        let name = rule.name.unwrap_or_else(|| rule.check.trim().to_owned());
        if let Some(rule) = compile_rule(table, &rule_columns, name, rule.check, rule.action, line, origin, problems) {
            if map.rules.iter().any(|r| r.name == rule.name) {
                problems.push(at(line, format!("{table} has two rules named `{}`: give each its own name", rule.name)));
            }
            map.rules.push(rule);
        }
    }
    if let Some(other) = file.other_columns {
        map.other_columns_line = line_of(text, other.span().start);
        map.other_columns = other.into_inner();
    }
    let (skip_line, skip) = match file.skip_columns {
        Some(skip) => (line_of(text, skip.span().start), skip.into_inner()),
        None => (0, Vec::new()),
    };
    if !skip.is_empty() && map.other_columns.drops() {
        problems.push(at(skip_line, format!("skip_columns leaves columns out of those other_columns = \"keep\" keeps, and silver {table} keeps none: remove it, or write other_columns = \"keep\" under [{table}]")));
    }
    // (bronze's names, in lower case: columns are told apart regardless of case)
    map.skip_columns = skip.iter().map(|c| ridelake_core::bronze::safe_column_name(c).to_ascii_lowercase()).collect();
    map.skip_columns.sort();
    map.skip_columns.dedup();
    for (column, spanned) in file.links {
        let line = line_of(text, spanned.span().start);
        let policy = spanned.into_inner();
        match (table, column.as_str()) {
            ("rides", "customer_id") => map.links.customer_id = policy,
            ("rides", "driver_id") => map.links.driver_id = policy,
            ("rides", _) => problems.push(at(line, format!("`{column}` is not a link of silver rides; its links are customer_id and driver_id"))),
            _ => problems.push(at(line, format!("silver {table} has no links: links are declared under [rides.links] (customer_id, driver_id)"))),
        }
    }
    map
}

/// Extra column `silver` of `table` (whose own columns are `columns`), kept from the source
/// column `file` names, when the entry is right (an optional one is listed in `map`'s optional
/// columns).
fn compile_extra(table: &str, columns: &[&str], silver: String, file: ColumnFile, line: usize, map: &mut StreamMap, problems: &mut Vec<String>) -> Option<ColumnMap> {
    let (source, optional, values, time_zone, scale) = match file {
        ColumnFile::Name(source) => (source, false, BTreeMap::new(), None, None),
        ColumnFile::Table(t) => (t.column, t.optional, t.values, t.time_zone, t.scale),
        ColumnFile::Names(_) => {
            problems.push(at(line, format!("extra column {table}.{silver} comes from one source column: only keys (id, customer_id, driver_id) can be composite")));
            return None;
        }
    };
    let source = source.trim();
    let name = format!("{table}.{silver}");
    let plain = silver.len() <= 64 && silver.starts_with(|c: char| c.is_ascii_lowercase()) && silver.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let problem = if !plain {
        Some(format!("extra column `{silver}` of silver {table}: name it with lowercase letters, digits and `_`, starting with a letter (up to 64 characters)"))
    } else if columns.contains(&silver.as_str()) {
        Some(format!("`{silver}` is one of silver {table}'s own columns: map it under [{table}.columns] ({silver} = \"{source}\"), and give the extra column another name"))
    } else if crate::silver::OWN_COLUMNS.contains(&silver.as_str()) {
        Some(format!("`{silver}` is a column silver adds to its tables itself ({}): give the extra column another name", list(&crate::silver::OWN_COLUMNS)))
    } else if source.is_empty() {
        Some(format!("{table}.{silver}: the source column name is empty"))
    } else if [!values.is_empty(), time_zone.is_some(), scale.is_some()].iter().filter(|c| **c).count() > 1 {
        Some(format!("{name}: give one of values (text), time_zone (a time) and scale (a number), which make the column of different types"))
    } else {
        time_zone.as_deref().and_then(|zone| zone_problem(&name, zone)).or_else(|| scale.and_then(|x| scale_problem(&name, x)))
    };
    if let Some(problem) = problem {
        problems.push(at(line, problem));
        return None;
    }
    if optional {
        map.optional.push(silver.clone());
    }
    // (the source column as bronze names it, as for silver's own columns)
    Some(ColumnMap { silver, source: safe_column_name(source), values: values.into_iter().collect(), time_zone, scale, parts: Vec::new(), line })
}

/// A rule of `table`, when its condition parses and reads only the table's silver `columns`.
#[allow(clippy::too_many_arguments)]
fn compile_rule(table: &str, columns: &[&str], name: String, check: String, action: RuleAction, line: usize, origin: &str, problems: &mut Vec<String>) -> Option<Rule> {
    let label = format!("{table} rule `{name}`");
    if name.is_empty() || check.trim().is_empty() {
        problems.push(at(line, format!("{label}: the rule needs a condition (check = \"distance_km >= 0\") and a name that is not empty")));
        return None;
    }
    let expr = match polars::sql::sql_expr(&check) {
        Ok(expr) => expr,
        Err(e) => {
            problems.push(at(line, format!("{label}: `{check}` is not a SQL condition ridelake reads ({e})")));
            return None;
        }
    };
    // A rule is checked row by row: an aggregate or a window would depend on which changes a
    // run reads together (an increment, a slice, a rebuild), and incremental = rebuild with it.
    if (&expr).into_iter().any(|node| matches!(node, Expr::Agg(_) | Expr::Over { .. } | Expr::Len)) {
        problems.push(at(line, format!("{label}: `{check}` aggregates over rows (COUNT, SUM, AVG, MIN, MAX, OVER, …); a rule looks at one change at a time")));
        return None;
    }
    if SILVER_RULE_NAMES.contains(&name.as_str()) {
        problems.push(at(line, format!("{label}: `{name}` is the name of one of silver's own rules; give the rule another name")));
        return None;
    }
    let read: Vec<String> = expr.meta().root_names().into_iter().map(|n| n.to_string()).collect();
    if read.is_empty() {
        problems.push(at(line, format!("{label}: `{check}` reads no column; write a condition on silver {table}'s columns ({})", list(columns))));
        return None;
    }
    let unknown: Vec<&str> = read.iter().map(String::as_str).filter(|c| !columns.contains(c)).collect();
    if !unknown.is_empty() {
        problems.push(at(line, format!("{label} reads {}, not a column of silver {table}; rules use silver's names ({})", unknown.join(", "), list(columns))));
        return None;
    }
    let mut read = read;
    read.sort();
    read.dedup();
    Some(Rule { name, check, action, line, origin: origin.to_owned(), columns: read })
}

fn check_column(table: &str, c: &ColumnMap, problems: &mut Vec<String>) {
    let name = format!("{table}.{}", c.silver);
    if c.source.is_empty() {
        problems.push(at(c.line, format!("{name}: the source column name is empty")));
    }
    if KEY_COLUMNS.contains(&c.silver.as_str()) && c.converts() {
        problems.push(at(c.line, format!("{name} is a key: map it by name only (no values, time_zone or scale)")));
        return;
    }
    let allowed: Option<&[&str]> = match (table, c.silver.as_str()) {
        ("users", "type") => Some(&USER_TYPES),
        ("rides", "status") => Some(&RIDE_STATUSES),
        _ => None,
    };
    if let Some(allowed) = allowed {
        for (from, to) in &c.values {
            if !allowed.contains(&to.as_str()) {
                problems.push(at(c.line, format!("{name}: `{from}` maps to `{to}`, which is not one of {}", list(allowed))));
            }
        }
    }
    if !c.values.is_empty() && (NUMERIC_COLUMNS.contains(&c.silver.as_str()) || c.silver.ends_with("_at")) {
        problems.push(at(c.line, format!("{name} is not text: values applies to text columns (type, status, currency, …)")));
    }
    if let Some(zone) = &c.time_zone {
        if !c.silver.ends_with("_at") {
            problems.push(at(c.line, format!("{name} is not a time: time_zone applies to the *_at columns")));
        } else if let Some(problem) = zone_problem(&name, zone) {
            problems.push(at(c.line, problem));
        }
    }
    if let Some(scale) = c.scale {
        if !NUMERIC_COLUMNS.contains(&c.silver.as_str()) {
            problems.push(at(c.line, format!("{name} is not a number: scale applies to {}", list(&NUMERIC_COLUMNS))));
        } else if let Some(problem) = scale_problem(&name, scale) {
            problems.push(at(c.line, problem));
        }
    }
}

/// What is wrong with `zone` as the time zone of silver column `name`, if anything.
fn zone_problem(name: &str, zone: &str) -> Option<String> {
    let known = matches!(TimeZone::opt_try_new(Some(zone)), Ok(Some(_)));
    (!known).then(|| format!("{name}: `{zone}` is not an IANA time zone name (such as Europe/Paris or America/Sao_Paulo)"))
}

/// What is wrong with `scale` as the factor of silver column `name`, if anything.
fn scale_problem(name: &str, scale: f64) -> Option<String> {
    (!scale.is_finite() || scale == 0.0).then(|| format!("{name}: scale must be a finite number other than 0"))
}

/// Problems with `c`'s conversion of its source column, of bronze type `dtype`, into silver
/// `table`: a time zone for what is not a DATETIME, a scale for what is not a number.
fn conversion_problems(table: &str, c: &ColumnMap, dtype: &ArrowType, problems: &mut Vec<String>) {
    let (silver, source) = (&c.silver, &c.source);
    if c.time_zone.is_some() && !matches!(dtype, ArrowType::Timestamp(_, None)) {
        problems.push(at(c.line, format!("{table}.{silver}: time_zone applies to a DATETIME (a timestamp without time zone), and `{source}` is {dtype}; remove time_zone if it already holds an instant")));
    }
    if c.scale.is_some() && !is_numeric(dtype) {
        problems.push(at(c.line, format!("{table}.{silver}: scale applies to numbers, and `{source}` is {dtype}")));
    }
}

/// The source columns of bronze's `schema` (not Airbyte's), as errors list them.
fn bronze_columns(schema: &ArrowSchema) -> String {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).filter(|n| !n.starts_with("_a")).collect();
    list(&names)
}

/// Whether an Arrow type is text (a text key's, or any text column's).
pub(crate) fn is_text(t: &ArrowType) -> bool {
    matches!(t, ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View)
}

fn is_integer(t: &ArrowType) -> bool {
    matches!(t, ArrowType::Int8 | ArrowType::Int16 | ArrowType::Int32 | ArrowType::Int64 | ArrowType::UInt8 | ArrowType::UInt16 | ArrowType::UInt32 | ArrowType::UInt64)
}

fn is_numeric(t: &ArrowType) -> bool {
    is_integer(t) || matches!(t, ArrowType::Float16 | ArrowType::Float32 | ArrowType::Float64 | ArrowType::Decimal128(_, _) | ArrowType::Decimal256(_, _))
}

impl StreamMap {
    /// Silver `table` from the stream of its name, every column from its namesake.
    fn identity(table: &'static str, origin: &str) -> StreamMap {
        StreamMap {
            table,
            stream: table.to_owned(),
            stream_line: 0,
            columns: Vec::new(),
            rules: Vec::new(),
            links: Links::default(),
            optional: Vec::new(),
            lines: BTreeMap::new(),
            other_columns: OtherColumns::Drop,
            skip_columns: Vec::new(),
            other_columns_line: 0,
            extra: Vec::new(),
            kept: Vec::new(),
            text_keys: Vec::new(),
            literals: Vec::new(),
            partition: Some(if table == "users" { "created_at" } else { "requested_at" }),
            origin: origin.to_owned(),
        }
    }

    /// Silver's own data columns of the table (the model maps them).
    pub(crate) fn fixed_columns(&self) -> &'static [&'static str] {
        if self.table == "users" { &USER_COLUMNS } else { &RIDE_COLUMNS }
    }

    /// The silver data columns of the table: its own, then the source columns kept.
    pub fn data_columns(&self) -> Vec<&str> {
        self.fixed_columns().iter().copied().chain(self.kept.iter().map(|k| k.name.as_str())).collect()
    }

    /// Sets which of the table's key columns hold text ([`StreamMap::text_keys`]) from bronze's
    /// `schema`. Pure.
    pub fn read_key_kinds(&mut self, schema: &ArrowSchema) {
        // (a composite key is text, whatever its source columns hold)
        let text = |c: &str| self.column(c).is_some_and(|m| !m.parts.is_empty()) || schema.field_with_name(self.source_of(c)).is_ok_and(|f| is_text(f.data_type()));
        self.text_keys = self.key_columns().iter().copied().filter(|c| text(c)).collect();
    }

    /// The table's key columns: its `id`, and a ride's links.
    pub fn key_columns(&self) -> &'static [&'static str] {
        if self.table == "users" { &KEY_COLUMNS[..1] } else { &KEY_COLUMNS }
    }

    /// Silver's type of key column `silver`: text (`String`) when its source column holds text,
    /// else `Int64` ([`StreamMap::text_keys`]).
    pub fn key_type(&self, silver: &str) -> DataType {
        if self.text_keys.contains(&silver) { DataType::String } else { DataType::Int64 }
    }

    /// The type of the quarantine's `id`, which holds both tables' keys: text when either
    /// table's key is text. Of the rides' map, which knows the users' key by the rides' links
    /// (a link holds the kind of key it points to, [`Model::check_bronze`]).
    pub fn quarantine_key_type(&self) -> DataType {
        if self.text_keys.is_empty() { DataType::Int64 } else { DataType::String }
    }

    /// How bronze's key columns (`schema`) differ in kind from a silver table's (`silver`), if
    /// they do (a source key made text): silver is rebuilt then. Pure.
    pub fn key_difference(&self, silver: &ArrowSchema) -> Option<String> {
        self.key_columns().iter().find_map(|&column| {
            let field = silver.field_with_name(column).ok()?;
            let (was, is) = (is_text(field.data_type()), self.key_type(column) == DataType::String);
            let name = |text: bool| if text { "text" } else { "integers" };
            (was != is).then(|| format!("key `{column}` of silver {} holds {} and its source {} now holds {}", self.table, name(was), self.source_label(column), name(is)))
        })
    }

    /// The kept source column `name`, if it is one.
    fn kept(&self, name: &str) -> Option<&Kept> {
        self.kept.iter().find(|k| k.name == name)
    }

    /// The type a data column takes in silver whatever its source's, if any: a widened kept
    /// column's, silver's text and number columns'.
    fn cast_to(&self, name: &str) -> Option<DataType> {
        match self.kept(name) {
            Some(k) => k.widened.clone(),
            None if self.key_columns().contains(&name) && !self.text_keys.is_empty() => Some(self.key_type(name)),
            None if self.fixed_columns().contains(&name) => fixed_type(name),
            None => None,
        }
    }

    /// The model line that says where silver column `silver` comes from (the stream's line, or 0,
    /// when the file does not list it).
    fn line_of(&self, silver: &str) -> usize {
        if let Some(extra) = self.extra(silver) {
            return extra.line;
        }
        match self.kept(silver) {
            Some(_) => self.other_columns_line,
            None => self.lines.get(silver).copied().unwrap_or(self.stream_line),
        }
    }

    /// `line N` of the model file, or the default model, for errors about silver column `silver`.
    fn place_of(&self, silver: &str) -> String {
        match self.line_of(silver) {
            0 => self.origin.clone(),
            line => format!("{}, line {line}", self.origin),
        }
    }

    /// Problems with bronze columns the source did not send (`absent`: per column, the windows of
    /// bronze versions whose rows lack it, [`ridelake_core::bronze::PROP_ABSENT_COLUMNS`]) in the
    /// versions a run reads (`reads`: after which version, `None` for all of bronze): a silver
    /// column filled from one of them would turn null without anyone saying so, unless the model
    /// marks it `optional`. Each problem names the model line and what to change.
    pub fn absent_problems(&self, absent: &AbsentColumns, reads: Option<i64>) -> Vec<String> {
        let table = self.table;
        let mut problems = Vec::new();
        // (a kept column the source drops stays in silver, null in later changes: keeping
        // whatever the source has includes that)
        let own = self.fixed_columns().iter().flat_map(|&silver| self.sources_of(silver).into_iter().map(move |source| (silver, source)));
        for (silver, source) in own.chain(self.extra.iter().map(|e| (e.silver.as_str(), e.source.as_str()))) {
            let Some((name, windows)) = absent.iter().find(|(name, _)| name.eq_ignore_ascii_case(source)) else { continue };
            // A window [from, to) overlaps the versions after `reads` when it ends after them.
            let Some((from, to)) = windows.iter().find(|(_, to)| reads.is_none_or(|after| to.is_none_or(|to| to > after + 1))) else { continue };
            if self.optional.iter().any(|c| c == silver) {
                continue;
            }
            let when = match to {
                None => format!("which the source no longer sends (not in its catalog since bronze version {from})"),
                Some(to) => format!("which the source did not send in bronze versions {from} to {} (not in its catalog then)", to - 1),
            };
            let how = match self.lines.get(silver) {
                None if self.extra(silver).is_some() => format!("write it as {silver} = {{ column = \"{name}\", optional = true }} at line {}", self.line_of(silver)),
                Some(line) => format!("add `optional = true` to its entry at line {line} (written as a table: {{ column = \"{name}\", …, optional = true }})"),
                None => format!("write {silver} = {{ column = \"{name}\", optional = true }} under [{table}.columns]"),
            };
            problems.push(at(self.line_of(silver), format!(
                "{table}.{silver} comes from `{name}` of bronze `{}`, {when}: silver would read null for it. Map {table}.{silver} to the column that replaced it, or, if null is right for those changes, {how}",
                self.stream
            )));
        }
        problems
    }

    /// The mapping of silver column `silver`, when the model maps it.
    pub fn column(&self, silver: &str) -> Option<&ColumnMap> {
        self.columns.iter().find(|c| c.silver == silver)
    }

    /// The source column that fills silver column (or CDC column) `silver`. (For a composite
    /// key: the column [`StreamMap::apply`] composes of its source columns, [`composite_name`].)
    pub fn source_of<'a>(&'a self, silver: &'a str) -> &'a str {
        match self.column(silver) {
            Some(c) => c.source.as_str(),
            None => self.extra(silver).map_or(silver, |e| e.source.as_str()),
        }
    }

    /// The extra column `silver` (`extra_columns`), if it is one.
    fn extra(&self, silver: &str) -> Option<&ColumnMap> {
        self.extra.iter().find(|e| e.silver == silver)
    }

    /// The bronze column silver's integer key `id` is read from as it is (no composition, value
    /// map, scale or zone), when it is: then a bronze file's statistics of that column tell which
    /// ids the file may hold.
    pub fn plain_integer_key(&self) -> Option<&str> {
        let plain = self.column("id").is_none_or(|c| c.parts.is_empty() && c.values.is_empty() && c.scale.is_none() && c.time_zone.is_none());
        (plain && !self.text_keys.contains(&"id")).then(|| self.source_of("id"))
    }

    /// The bronze columns read to fill `silver`: a composite key's source columns, else
    /// [`StreamMap::source_of`].
    pub fn sources_of<'a>(&'a self, silver: &'a str) -> Vec<&'a str> {
        match self.column(silver) {
            Some(c) if !c.parts.is_empty() => c.parts.iter().map(String::as_str).filter(|p| self.literal(p).is_none()).collect(),
            _ => vec![self.source_of(silver)],
        }
    }

    /// The source of `silver` as errors name it: `` `trip_id` ``, or `` `region_id`, `trip_id` ``
    /// for a composite key.
    fn source_label(&self, silver: &str) -> String {
        self.sources_of(silver).iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
    }

    /// The source columns of the table's composite keys (bronze's names, no repeats).
    pub fn key_parts(&self) -> Vec<&str> {
        let mut parts: Vec<&str> = Vec::new();
        for part in self.columns.iter().flat_map(|c| &c.parts).filter(|p| self.literal(p).is_none()) {
            if !parts.iter().any(|p| p.eq_ignore_ascii_case(part)) {
                parts.push(part);
            }
        }
        parts
    }

    /// `frame` with, for each composite key whose source columns it has, the composed key in
    /// column [`composite_name`]: each source value as text (a value bronze rescued, because it did
    /// not fit its column's first type, as sent), `|` and `\` escaped as `\|` and `\\`, joined
    /// by `|`; null when one of them is. Pure.
    fn compose(&self, mut frame: DataFrame) -> Result<DataFrame> {
        let step = "composing composite keys (model)";
        // (the literal columns are of one value: held once, whatever the frame's height)
        for (name, value) in &self.literals {
            let scalar = Scalar::new(DataType::String, AnyValue::StringOwned(value.as_str().into()));
            frame.with_column(Column::new_scalar(name.as_str().into(), scalar, frame.height())).step(step)?;
        }
        let composites: Vec<&ColumnMap> = self.columns.iter().filter(|c| !c.parts.is_empty() && c.parts.iter().all(|p| frame.column(p).is_ok())).collect();
        if composites.is_empty() {
            return Ok(frame);
        }
        let mut texts: BTreeMap<&str, Column> = BTreeMap::new();
        for part in composites.iter().flat_map(|c| &c.parts) {
            if !texts.contains_key(part.as_str()) && self.literal(part).is_none() {
                texts.insert(part, part_as_text(&frame, part)?);
            }
        }
        for c in composites {
            // Each part: a literal's value, or a column's values.
            let parts = c.parts.iter().map(|p| match self.literal(p) {
                Some(value) => Ok(Err(value)),
                None => texts[p.as_str()].str().step(step).map(Ok),
            }).collect::<Result<Vec<_>>>()?;
            let keys: StringChunked = (0..frame.height())
                .map(|row| {
                    let mut key = String::new();
                    for (i, part) in parts.iter().enumerate() {
                        if i > 0 {
                            key.push('|');
                        }
                        let value = match part {
                            Ok(column) => column.get(row)?,
                            Err(literal) => *literal,
                        };
                        for ch in value.chars() {
                            if ch == '|' || ch == '\\' {
                                key.push('\\');
                            }
                            key.push(ch);
                        }
                    }
                    Some(key)
                })
                .collect();
            frame.with_column(keys.with_name(c.source.as_str().into()).into_series().into_column()).step(step)?;
        }
        Ok(frame)
    }

    /// The value of the stream's literal column `column` ([`StreamMap::literals`]), if it is one.
    fn literal(&self, column: &str) -> Option<&str> {
        self.literals.iter().find(|(c, _)| c == column).map(|(_, v)| v.as_str())
    }

    /// The role of a users stream among several (its rows' `type`), if it is one.
    pub fn role(&self) -> Option<&str> {
        self.literal(ROLE_COLUMN)
    }

    /// Whether the mapping changes nothing (every column from its namesake).
    pub fn is_identity(&self) -> bool {
        self.columns.is_empty() && self.extra.iter().all(|e| e.source == e.silver && !e.converts())
    }

    /// The silver columns the model's rules read, besides `fields` (in that order, no repeats).
    pub fn with_rule_columns<'a>(&'a self, fields: &[&'a str]) -> Vec<&'a str> {
        let mut all = fields.to_vec();
        for column in self.rules.iter().flat_map(|r| &r.columns) {
            if !all.contains(&column.as_str()) {
                all.push(column.as_str());
            }
        }
        all
    }

    fn check(&self, columns: &[&str], required: &[&str], schema: Option<&ArrowSchema>, problems: &mut Vec<String>) {
        let table = self.table;
        let Some(schema) = schema else {
            problems.push(at(self.stream_line, format!("silver {table} reads bronze stream `{}`, which has no bronze table yet: sync it first, or set `stream` under [{table}]", self.stream)));
            return;
        };
        let available = || bronze_columns(schema);
        for &silver in columns {
            let mapped = self.column(silver);
            if let Some(c) = mapped.filter(|c| !c.parts.is_empty()) {
                for part in c.parts.iter().filter(|p| self.literal(p).is_none()) {
                    match schema.field_with_name(part) {
                        Err(_) => problems.push(at(c.line, format!("{table}.{silver} is composed of `{part}`, which bronze `{}` does not have; its columns are {}", self.stream, available()))),
                        Ok(field) if !is_integer(field.data_type()) && !is_text(field.data_type()) => problems.push(at(c.line, format!(
                            "{table}.{silver} is composed of `{part}` of type {}; a composite key's columns must be integers or text",
                            field.data_type()
                        ))),
                        Ok(_) => {}
                    }
                }
                continue;
            }
            let source = self.source_of(silver);
            if self.literal(source).is_some() {
                continue;
            }
            let Ok(field) = schema.field_with_name(source) else {
                match mapped {
                    Some(c) => problems.push(at(c.line, format!("{table}.{silver} comes from `{source}`, which bronze `{}` does not have; its columns are {}", self.stream, available()))),
                    None if required.contains(&silver) => problems.push(at(self.stream_line, format!("silver {table} needs `{silver}`, and bronze `{}` has no column of that name: add `{silver} = \"<source column>\"` under [{table}.columns] (bronze columns: {})", self.stream, available()))),
                    None => {}
                }
                continue;
            };
            let line = mapped.map_or(self.stream_line, |c| c.line);
            let dtype = field.data_type();
            if KEY_COLUMNS.contains(&silver) && !is_integer(dtype) && !is_text(dtype) {
                problems.push(at(line, format!("{table}.{silver} is a key and comes from `{source}` of type {dtype}; keys must be integers or text (a key of several columns is written as their list: {silver} = [\"a\", \"b\"])")));
            }
            // (a scale on a text column is reported above, at the same line)
            if fixed_type(silver) == Some(DataType::Float64) && !is_numeric(dtype) && mapped.is_none_or(|c| c.scale.is_none()) {
                problems.push(at(line, format!("{table}.{silver} holds numbers and comes from `{source}` of type {dtype}; map it to a numeric source column")));
            }
            if let Some(c) = mapped {
                conversion_problems(table, c, dtype, problems);
            }
        }
        problems.extend(self.missing_extras(schema));
        for e in &self.extra {
            if let Ok(field) = schema.field_with_name(&e.source) {
                conversion_problems(table, e, field.data_type(), problems);
            }
        }
    }

    /// The extra columns whose source column bronze's `schema` lacks, each as a problem naming
    /// its line.
    fn missing_extras(&self, schema: &ArrowSchema) -> Vec<String> {
        let missing = self.extra.iter().filter(|e| schema.field_with_name(&e.source).is_err());
        missing
            .map(|e| at(e.line, format!("extra column {}.{} comes from `{}`, which bronze `{}` does not have; its columns are {}", self.table, e.silver, e.source, self.stream, bronze_columns(schema))))
            .collect()
    }

    /// `frame` (read from bronze with the source columns of `wanted`) with the columns `wanted`
    /// in their place: silver columns renamed, values mapped, wall-clock times made UTC instants,
    /// scaled; other columns (CDC, ingest order) as they are. A silver data column whose source
    /// bronze lacks is null (of its silver type); other wanted columns the frame lacks are left
    /// out. Frame columns not wanted are dropped.
    pub fn apply(&self, frame: DataFrame, wanted: &[&str]) -> Result<DataFrame> {
        let step = "mapping source columns (model)";
        let frame = self.compose(frame)?;
        let (frame, recovered) = self.recover(frame, wanted)?;
        let data_columns = self.data_columns();
        let missing = |c: &&str| data_columns.contains(c) && frame.column(self.source_of(c)).is_err();
        // Text and number columns take silver's type whatever the source's (an integer code
        // column as text, an integer distance as a float), so that silver's schema does not
        // depend on the source's; so do kept columns whose source type widened.
        let retyped = |c: &&str| data_columns.contains(c) && frame.column(self.source_of(c)).is_ok_and(|s| self.cast_to(c).is_some_and(|t| *s.dtype() != t));
        if recovered.is_empty() && self.is_identity() && !wanted.iter().any(missing) && !wanted.iter().any(retyped) {
            return Ok(frame);
        }
        let height = frame.height();
        let mut exprs = Vec::with_capacity(wanted.len());
        let mut order = Vec::with_capacity(wanted.len());
        for &name in wanted {
            if order.contains(&name) {
                continue;
            }
            // (a column with recovered values is read from its recovered copy)
            let input = if recovered.iter().any(|r| *r == name) { recovered_name(name) } else { self.source_of(name).to_owned() };
            // (an extra column without conversion is its source column as it is)
            let expr = match (frame.column(&input), self.column(name).or(self.extra(name))) {
                (Ok(_), None) => Some(col(input.as_str())),
                (Ok(column), Some(c)) => Some(c.expr(&input, column.dtype(), self.table)?),
                (Err(_), _) if !data_columns.contains(&name) => continue,
                (Err(_), _) => None,
            };
            if let Some(expr) = expr {
                let typed = match self.cast_to(name) {
                    Some(t) => expr.cast(t),
                    None => expr,
                };
                exprs.push(typed.alias(name));
            }
            order.push(name);
        }
        let mapped = frame.lazy().select(exprs).collect().step(step)?;
        // Nulls as whole columns of the frame's height (a literal alone would give one row).
        let columns = order
            .into_iter()
            .map(|name| match mapped.column(name) {
                Ok(c) => c.clone(),
                Err(_) if self.key_columns().contains(&name) => Column::full_null(name.into(), height, &self.key_type(name)),
                Err(_) => Column::full_null(name.into(), height, &self.cast_to(name).unwrap_or_else(|| silver_type(name))),
            })
            .collect::<Vec<_>>();
        DataFrame::new(height, columns).step(step)
    }
}

/// The column [`StreamMap::compose`] puts composite key `silver` in (its [`ColumnMap::source`]).
fn composite_name(silver: &str) -> String {
    format!("_ridelake_key_{silver}")
}

/// Column `part` of `frame` as text: its values as text, and where bronze rescued a value of it
/// (`_airbyte_rescued_data`: the source sent a value its column's first type could not hold, or
/// text such as "007" bronze stored as a number), that value as sent: a string's content, else
/// its JSON. Pure.
fn part_as_text(frame: &DataFrame, part: &str) -> Result<Column> {
    let step = "composing composite keys (model)";
    let base = frame.column(part).step(step)?.cast(&DataType::String).step(step)?;
    let Some(rescued) = frame.column(RESCUED_DATA).ok().filter(|r| r.null_count() < r.len()) else { return Ok(base) };
    let rescued = rescued.as_materialized_series().cast(&DataType::String).step(step)?;
    type Object = std::collections::HashMap<String, Box<serde_json::value::RawValue>>;
    let mut values: Option<Vec<Option<String>>> = None;
    for (row, text) in rescued.str().step(step)?.iter().enumerate() {
        let Some(text) = text else { continue };
        let Ok(object) = serde_json::from_str::<Object>(text) else { continue };
        let Some(value) = object.iter().find(|(key, _)| safe_column_name(key) == part).map(|(_, v)| v.get()).filter(|v| *v != "null") else { continue };
        let values = match &mut values {
            Some(values) => values,
            None => values.insert(base.str().step(step)?.iter().map(|v| v.map(str::to_owned)).collect()),
        };
        values[row] = Some(text_of(value).unwrap_or_else(|| value.to_owned()));
    }
    Ok(match values {
        Some(values) => Column::new(part.into(), values),
        None => base,
    })
}

/// The column [`StreamMap::recover`] puts a silver column's source values in, rescued ones
/// included.
fn recovered_name(silver: &str) -> String {
    format!("_ridelake_recovered_{silver}")
}

impl StreamMap {
    /// `frame` without bronze's [`RESCUED_DATA`] column, and the silver columns of `wanted` some
    /// of whose values bronze could not store: for each, a column ([`recovered_name`]) holding its
    /// source's values in silver's type, rescued ones included.
    ///
    /// When the source changes a column's type (an `INT` made `DECIMAL`, a code made text), bronze
    /// keeps its column's first type: a value that does not fit is stored as null, with its JSON
    /// in `_airbyte_rescued_data`. Such a value is read back in silver's type when it is one: a
    /// number for silver's number columns (a widened integer column), any value as text for its
    /// text columns, a whole number for its integer columns. A value that is not (text in a number
    /// column, a fraction in an integer one, anything in a time) means the source changed the
    /// column in a way silver cannot follow: an error names the silver column, its source, the
    /// model line and how many changes, never the values. Only rows whose wanted column is null
    /// and that have rescued values are parsed.
    fn recover<'a>(&'a self, mut frame: DataFrame, wanted: &[&str]) -> Result<(DataFrame, Vec<&'a str>)> {
        let step = "reading values bronze rescued (model)";
        let Ok(rescued) = frame.column(RESCUED_DATA) else { return Ok((frame, Vec::new())) };
        if rescued.null_count() == rescued.len() {
            return Ok((frame.drop(RESCUED_DATA).step(step)?, Vec::new()));
        }
        let rescued = rescued.as_materialized_series().cast(&DataType::String).step(step)?;
        let rescued = rescued.str().step(step)?;
        // Silver's type of a column (a kept column: its widened type, else bronze's).
        let target_of = |silver: &str, bronze: &DataType| match self.kept(silver) {
            Some(k) => k.widened.clone().unwrap_or_else(|| bronze.clone()),
            None if KEY_COLUMNS.contains(&silver) => self.key_type(silver),
            None => silver_type(silver),
        };
        // The wanted silver columns whose source the frame has, with the rows whose value bronze
        // may have rescued: where it is null (the value did not fit), and every row when silver
        // wants text from a column bronze keeps in another type (bronze stores the string
        // "007" in an integer column as 7, and rescues the text: silver's text is the one sent).
        let data_columns = self.data_columns();
        let targets: Vec<(&str, &str, BooleanChunked)> = data_columns
            .iter()
            .filter(|c| wanted.contains(c))
            .filter_map(|&silver| {
                let source = self.source_of(silver);
                let column = frame.column(source).ok()?;
                let as_sent = target_of(silver, column.dtype()) == DataType::String && column.dtype() != &DataType::String;
                Some((silver, source, if as_sent { BooleanChunked::full(source.into(), true, column.len()) } else { column.is_null() }))
            })
            .collect();
        // Rows with rescued values among the targets' rows above, their keys named as bronze names
        // columns; each value as its JSON text (a number is then read by the parser bronze uses).
        type Object = std::collections::HashMap<String, Box<serde_json::value::RawValue>>;
        let mut objects: Vec<(usize, Object)> = Vec::new();
        for (row, text) in rescued.iter().enumerate() {
            let Some(text) = text else { continue };
            if !targets.iter().any(|(_, _, nulls)| nulls.get(row).unwrap_or(false)) {
                continue;
            }
            if let Ok(object) = serde_json::from_str::<Object>(text) {
                objects.push((row, object.into_iter().map(|(key, value)| (safe_column_name(&key), value)).collect()));
            }
        }
        frame = frame.drop(RESCUED_DATA).step(step)?;
        let mut recovered = Vec::new();
        for (silver, source, nulls) in &targets {
            let lost: Vec<(usize, &str)> = objects
                .iter()
                .filter(|(row, _)| nulls.get(*row).unwrap_or(false))
                .filter_map(|(row, object)| Some((*row, object.get(*source).map(|v| v.get()).filter(|v| *v != "null")?)))
                .collect();
            if lost.is_empty() {
                continue;
            }
            let target = target_of(silver, &frame.column(source).map(|c| c.dtype().clone()).unwrap_or(DataType::Null));
            let base = || frame.column(source).map(|c| c.as_materialized_series().clone()).step(step);
            let (values, unreadable) = match target {
                DataType::Float64 => {
                    let mut values: Vec<Option<f64>> = base()?.cast(&target).step(step)?.f64().step(step)?.iter().collect();
                    let unreadable = lost.iter().filter(|(row, v)| number(v).map(|x| values[*row] = Some(x)).is_none()).count();
                    (Series::new(recovered_name(silver).into(), values), unreadable)
                }
                DataType::Int64 => {
                    let mut values: Vec<Option<i64>> = base()?.cast(&target).step(step)?.i64().step(step)?.iter().collect();
                    let unreadable = lost.iter().filter(|(row, v)| integer(v).map(|x| values[*row] = Some(x)).is_none()).count();
                    (Series::new(recovered_name(silver).into(), values), unreadable)
                }
                DataType::String => {
                    let mut values: Vec<Option<String>> = base()?.cast(&target).step(step)?.str().step(step)?.iter().map(|v| v.map(str::to_owned)).collect();
                    // (as bronze stores any value in a text column: a string's content, else its JSON)
                    for (row, v) in &lost {
                        values[*row] = Some(text_of(v).unwrap_or_else(|| (*v).to_owned()));
                    }
                    (Series::new(recovered_name(silver).into(), values), 0)
                }
                // A time bronze could not read as one (its own parser refused the text).
                _ => (Series::new_empty(recovered_name(silver).into(), &target), lost.len()),
            };
            if unreadable > 0 && self.kept(silver).is_some() {
                return Err(self.kept_changed(silver, source, unreadable as u64, "values of its first type"));
            }
            if unreadable > 0 {
                return Err(LakehouseError::ColumnChanged {
                    place: self.place_of(silver),
                    table: self.table.to_owned(),
                    column: (*silver).to_owned(),
                    source_column: (*source).to_owned(),
                    stream: self.stream.clone(),
                    changes: unreadable as u64,
                    expected: match target {
                        DataType::Float64 => "numbers",
                        DataType::Int64 if KEY_COLUMNS.contains(silver) => "integer keys",
                        DataType::String if KEY_COLUMNS.contains(silver) => "text keys",
                        DataType::Int64 => "integers",
                        DataType::Datetime(..) | DataType::Date | DataType::Time => "times",
                        _ => "values of its first type",
                    },
                });
            }
            frame.with_column(values.into_column()).step(step)?;
            recovered.push(*silver);
        }
        Ok((frame, recovered))
    }
}

/// A source column silver keeps: under its bronze name (`other_columns = "keep"`, a composite
/// key's columns), or under the model's (`extra_columns`).
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    /// Its name in silver.
    pub name: String,
    /// Its name in bronze.
    pub source: String,
    /// The bronze stream it comes from (for messages).
    pub stream: String,
    /// Silver's type for it when the source widened bronze's (whose column keeps its first
    /// type): `Float64` for an integer column that now holds fractions, `String` for one that
    /// now holds text. `None`: bronze's type.
    pub widened: Option<DataType>,
    /// What silver holds in it ([`TypeFamily`]): what silver's table must have.
    pub family: TypeFamily,
    /// Silver's type for it: `widened`, else bronze's as Polars reads it (date-times in UTC
    /// microseconds, as [`crate::cdc::normalize`] makes them).
    pub dtype: DataType,
}

/// A column type, as far as telling whether silver's column still fits a kept source column
/// goes (Arrow's encodings of one type, such as `Utf8` and `Utf8View`, are one family).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeFamily {
    /// Integers of any width.
    Integer,
    /// Floating-point numbers.
    Float,
    /// Decimals.
    Decimal,
    /// Text.
    Text,
    /// True or false.
    Boolean,
    /// Instants and wall-clock times, and times of day.
    Time,
    /// Calendar dates.
    Date,
    /// Anything else (lists, binary, structs).
    Other,
}

impl TypeFamily {
    /// The family of an Arrow type.
    pub fn of(t: &ArrowType) -> TypeFamily {
        match t {
            t if is_integer(t) => TypeFamily::Integer,
            ArrowType::Float16 | ArrowType::Float32 | ArrowType::Float64 => TypeFamily::Float,
            ArrowType::Decimal128(..) | ArrowType::Decimal256(..) => TypeFamily::Decimal,
            ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => TypeFamily::Text,
            ArrowType::Boolean => TypeFamily::Boolean,
            ArrowType::Timestamp(..) | ArrowType::Time32(_) | ArrowType::Time64(_) => TypeFamily::Time,
            ArrowType::Date32 | ArrowType::Date64 => TypeFamily::Date,
            _ => TypeFamily::Other,
        }
    }

    /// The family of a Polars type.
    pub fn of_polars(t: &DataType) -> TypeFamily {
        match t {
            t if t.is_integer() => TypeFamily::Integer,
            DataType::Float32 | DataType::Float64 => TypeFamily::Float,
            DataType::Decimal(..) => TypeFamily::Decimal,
            DataType::String => TypeFamily::Text,
            DataType::Boolean => TypeFamily::Boolean,
            DataType::Datetime(..) | DataType::Time => TypeFamily::Time,
            DataType::Date => TypeFamily::Date,
            _ => TypeFamily::Other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            TypeFamily::Integer => "integer",
            TypeFamily::Float => "number",
            TypeFamily::Decimal => "decimal",
            TypeFamily::Text => "text",
            TypeFamily::Boolean => "boolean",
            TypeFamily::Time => "time",
            TypeFamily::Date => "date",
            TypeFamily::Other => "other",
        }
    }
}

/// What a value bronze rescued from a column (it did not fit the column's type) holds, as far as
/// widening the column goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RescuedKind {
    /// A whole number (too large for bronze's integer column).
    Integer,
    /// A number with a fraction, or one written as text (`"12.50"`).
    Number,
    /// Anything else: text, true/false, a list, an object (kept as its JSON text).
    Text,
}

impl RescuedKind {
    /// The kind of a rescued JSON value. A string holding an integer in another form than its
    /// own text (`"007"`, `"+7"`) is text: bronze stored the integer and rescued the string, so
    /// the column holds text now.
    pub fn of(json: &str) -> RescuedKind {
        if text_of(json).is_some_and(|t| t.trim().parse::<i64>().is_ok_and(|v| v.to_string() != t)) {
            RescuedKind::Text
        } else if integer(json).is_some() {
            RescuedKind::Integer
        } else if number(json).is_some() {
            RescuedKind::Number
        } else {
            RescuedKind::Text
        }
    }
}

/// The widest kind of value bronze rescued from each column (bronze's names) and in how many
/// rows, over the files a run reads ([`crate::increment::rescued_kinds`]).
pub type RescuedKinds = BTreeMap<String, (RescuedKind, u64)>;

impl StreamMap {
    /// The source columns no mapping reads and bronze (`schema`) has: the columns a model that
    /// keeps other columns keeps, besides Airbyte's and the CDC columns and `skip_columns`.
    pub fn unmapped_columns<'s>(&self, schema: &'s ArrowSchema) -> Vec<&'s ArrowField> {
        // (a composite key's source columns are kept under their names, but for one named as
        // one of silver's own columns)
        let mut read: Vec<&str> = self.fixed_columns().iter().map(|c| self.source_of(c)).collect();
        read.extend(self.key_parts().into_iter().filter(|p| self.fixed_columns().iter().any(|c| c.eq_ignore_ascii_case(p))));
        // (a source column kept under another name is not kept under its own too, but for a
        // composite key's column, which is)
        let parts = self.key_parts();
        read.extend(self.extra.iter().map(|e| e.source.as_str()).filter(|s| !parts.iter().any(|p| p.eq_ignore_ascii_case(s))));
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref())
            .filter(|f| !f.name().starts_with("_airbyte_") && !f.name().starts_with("_ab_") && !f.name().starts_with("_ridelake"))
            .filter(|f| !read.iter().any(|r| r.eq_ignore_ascii_case(f.name())))
            .filter(|f| !self.skip_columns.iter().any(|c| c.eq_ignore_ascii_case(f.name())))
            .collect()
    }

    /// The source columns silver keeps under their names, of bronze's `schema`: with
    /// `other_columns = "keep"`, those no mapping reads ([`StreamMap::unmapped_columns`]); with
    /// `drop`, the source columns of the composite keys only.
    pub fn columns_to_keep<'s>(&self, schema: &'s ArrowSchema) -> Vec<&'s ArrowField> {
        let columns = self.unmapped_columns(schema);
        if !self.other_columns.drops() {
            return columns;
        }
        let parts = self.key_parts();
        columns.into_iter().filter(|f| parts.iter().any(|p| p.eq_ignore_ascii_case(f.name()))).collect()
    }

    /// The bronze columns of `schema` silver keeps: the sources of the extra columns, then
    /// [`StreamMap::columns_to_keep`] (bronze's names, no repeats). What [`StreamMap::keep`]
    /// wants to know the rescued values of.
    pub fn kept_sources(&self, schema: &ArrowSchema) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        let extras = self.extra.iter().filter_map(|e| schema.field_with_name(&e.source).ok());
        for field in extras.chain(self.columns_to_keep(schema)) {
            if !names.contains(field.name()) {
                names.push(field.name().clone());
            }
        }
        names
    }

    /// Sets the columns silver keeps (the extra columns under their names; with
    /// `other_columns = "keep"`, the others under theirs; with `drop`, a composite key's columns) from bronze's
    /// `schema` and the values bronze `rescued` from them (their type widened at the source): a
    /// kept column takes bronze's type, widened to a number (an integer column holding
    /// fractions) or to text (a number column holding text). Silver's own column names
    /// (`reserved`, besides the table's data columns) cannot be kept. Errors name the column and
    /// the model line; nothing is set then. Pure.
    pub fn keep(&mut self, schema: &ArrowSchema, rescued: &RescuedKinds, reserved: &[&str]) -> Result<()> {
        self.kept.clear();
        let (table, line) = (self.table, self.other_columns_line);
        let mut kept = Vec::new();
        let mut problems = self.missing_extras(schema);
        for e in &self.extra {
            if let Ok(field) = schema.field_with_name(&e.source) {
                kept.push(self.kept_column(field, &e.silver, rescued)?);
            }
        }
        for field in self.columns_to_keep(schema) {
            let name = field.name();
            if let Some(e) = self.extra.iter().find(|e| e.silver.eq_ignore_ascii_case(name)) {
                let how = if self.other_columns.drops() { "give the extra column another name" } else { "give the extra column another name, or list it in skip_columns" };
                problems.push(at(e.line, format!(
                    "extra column {table}.{} takes the name of bronze `{}`'s column `{name}`, which silver keeps under its name too: {how} under [{table}]",
                    e.silver, self.stream
                )));
                continue;
            }
            let data_column = self.fixed_columns().iter().any(|c| c.eq_ignore_ascii_case(name));
            if data_column || name.to_ascii_lowercase().starts_with("_cdc_") || reserved.iter().any(|c| c.eq_ignore_ascii_case(name)) {
                // (a composite key's column named as one of silver's own is in the key only)
                if self.other_columns.drops() {
                    continue;
                }
                let how = if data_column {
                    format!("Map silver's `{name}` to it under [{table}.columns] if it is that column, or list it in skip_columns under [{table}]")
                } else {
                    format!("List it in skip_columns under [{table}]")
                };
                problems.push(at(line, format!(
                    "bronze `{}` has a column `{name}` no mapping reads, and silver {table} has a column of that name of its own: other_columns = \"keep\" cannot keep it under its name. {how}",
                    self.stream
                )));
                continue;
            }
            kept.push(self.kept_column(field, name, rescued)?);
        }
        if !problems.is_empty() {
            return Err(LakehouseError::Model { origin: self.origin.clone(), problems });
        }
        self.kept = kept;
        Ok(())
    }

    /// Silver's column `name` keeping bronze column `field`, in bronze's type widened by the
    /// values bronze `rescued` from it. Pure.
    fn kept_column(&self, field: &ArrowField, name: &str, rescued: &RescuedKinds) -> Result<Kept> {
        let bronze = TypeFamily::of(field.data_type());
        let (widened, family) = match (bronze, rescued.get(field.name().as_str())) {
            (_, None) | (TypeFamily::Text, _) => (None, bronze),
            (TypeFamily::Integer, Some((RescuedKind::Integer | RescuedKind::Number, _))) => (Some(DataType::Float64), TypeFamily::Float),
            (TypeFamily::Integer | TypeFamily::Float | TypeFamily::Decimal, Some((RescuedKind::Text, _))) => (Some(DataType::String), TypeFamily::Text),
            (TypeFamily::Float | TypeFamily::Decimal, Some((_, _))) => (None, bronze),
            (_, Some((_, changes))) => {
                let expected = match bronze {
                    TypeFamily::Time | TypeFamily::Date => "times",
                    TypeFamily::Boolean => "true or false",
                    _ => "values of its first type",
                };
                return Err(self.kept_changed(name, field.name(), *changes, expected));
            }
        };
        // (silver holds date-times as UTC microseconds, whatever bronze's unit and zone)
        let dtype = match &widened {
            Some(t) => t.clone(),
            None => match crate::arrow_bridge::polars_type(field).step("reading a kept column's type")? {
                DataType::Datetime(..) => DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
                other => other,
            },
        };
        // An extra column's conversion decides its type: mapped values are text, scaled ones
        // numbers (a source that widened a scaled column to text cannot be followed).
        let (widened, family, dtype) = match self.extra(name) {
            Some(e) if !e.values.is_empty() => (Some(DataType::String), TypeFamily::Text, DataType::String),
            Some(e) if e.scale.is_some() && family == TypeFamily::Text => {
                let changes = rescued.get(field.name().as_str()).map_or(0, |(_, n)| *n);
                return Err(self.kept_changed(name, field.name(), changes, "numbers (it is scaled)"));
            }
            Some(e) if e.scale.is_some() => (Some(DataType::Float64), TypeFamily::Float, DataType::Float64),
            _ => (widened, family, dtype),
        };
        Ok(Kept { name: name.to_owned(), source: field.name().clone(), stream: self.stream.clone(), widened, family, dtype })
    }

    /// The error for kept column `silver` (from bronze column `source`), `changes` of whose
    /// values silver's column of `expected` cannot take: it names the model line that keeps it
    /// and how to leave it out.
    fn kept_changed(&self, silver: &str, source: &str, changes: u64, expected: &'static str) -> LakehouseError {
        let table = self.table;
        let (line, what, remedy) = match self.extra(silver) {
            Some(e) => (e.line, format!("extra column `{silver}`"), format!("Remove `{silver}` from [{table}.extra_columns] of the model")),
            None => (self.other_columns_line, "other_columns = \"keep\"".to_owned(), format!("List `{source}` in skip_columns under [{table}] of the model")),
        };
        let place = if line == 0 { self.origin.clone() } else { format!("{}, line {line}", self.origin) };
        LakehouseError::KeptColumnChanged {
            place: format!("{place}: {what}"),
            table: table.to_owned(),
            column: source.to_owned(),
            remedy,
            stream: self.stream.clone(),
            changes,
            expected,
        }
    }

    /// The map of one silver table filled from several streams (`maps`, each with the columns it
    /// keeps, [`StreamMap::keep`]): the first's, keeping every column any of them keeps, in the
    /// order they first appear; a column two streams keep in types of different families is
    /// kept as a number when both are numbers, else as text. Pure.
    pub fn joined(maps: &[&StreamMap]) -> StreamMap {
        let Some((first, others)) = maps.split_first() else { return StreamMap::identity("users", "") };
        let mut joined = (*first).clone();
        joined.literals.clear();
        for map in others {
            for k in &map.kept {
                match joined.kept.iter_mut().find(|j| j.name == k.name) {
                    None => joined.kept.push(k.clone()),
                    Some(j) if j.dtype == k.dtype => {}
                    Some(j) => {
                        let numbers = |f: TypeFamily| matches!(f, TypeFamily::Integer | TypeFamily::Float | TypeFamily::Decimal);
                        let (dtype, family) = match (j.family, k.family) {
                            (TypeFamily::Integer, TypeFamily::Integer) => (DataType::Int64, TypeFamily::Integer),
                            (a, b) if numbers(a) && numbers(b) => (DataType::Float64, TypeFamily::Float),
                            _ => (DataType::String, TypeFamily::Text),
                        };
                        (j.widened, j.dtype, j.family) = (Some(dtype.clone()), dtype, family);
                    }
                }
            }
            for key in &map.text_keys {
                if !joined.text_keys.contains(key) {
                    joined.text_keys.push(key);
                }
            }
        }
        joined
    }

    /// `frame` (silver columns of one of the streams `self` joins, [`StreamMap::joined`]) with
    /// every column `self` keeps, in `self`'s type: null where the stream does not keep it; and
    /// silver's own times as UTC instants, whatever each stream's source holds (a `DATETIME`, read
    /// as UTC as silver reads one, a `TIMESTAMP`, or nothing), so that the streams' rows stack.
    /// Pure.
    pub fn aligned(&self, mut frame: DataFrame) -> Result<DataFrame> {
        let step = "joining the users streams (model)";
        let height = frame.height();
        let utc = DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC));
        for name in self.fixed_columns().iter().filter(|c| c.ends_with("_at")) {
            let column = match frame.column(name) {
                Ok(c) if *c.dtype() == utc || !matches!(c.dtype(), DataType::Datetime(..) | DataType::Null) => continue,
                Ok(c) => c.cast(&utc).step(step)?,
                Err(_) => continue,
            };
            frame.with_column(column).step(step)?;
        }
        for k in &self.kept {
            let column = match frame.column(&k.name) {
                Ok(c) if *c.dtype() == k.dtype => continue,
                Ok(c) => c.cast(&k.dtype).step(step)?,
                Err(_) => Column::full_null(k.name.as_str().into(), height, &k.dtype),
            };
            frame.with_column(column).step(step)?;
        }
        Ok(frame)
    }

    /// How a silver table's `schema` falls short of the kept columns (a column kept now that it
    /// lacks, one whose type widened), if it does: silver is rebuilt then. Pure.
    pub fn kept_difference(&self, schema: &ArrowSchema) -> Option<String> {
        let table = self.table;
        for k in &self.kept {
            // (of the stream that keeps it: users from several streams keep the columns of each)
            let source = if k.source == k.name { format!("source column `{}` of `{}`", k.name, k.stream) } else { format!("source column `{}` of `{}` (kept as `{}`)", k.source, k.stream, k.name) };
            match schema.field_with_name(&k.name) {
                Err(_) => return Some(format!("{source} is new to silver {table}")),
                Ok(f) if TypeFamily::of(f.data_type()) != k.family => {
                    return Some(format!(
                        "{source} now holds {} values (silver {table} holds it as {})",
                        k.family.name(),
                        TypeFamily::of(f.data_type()).name()
                    ));
                }
                Ok(_) => {}
            }
        }
        // (a column silver keeps that is kept no longer needs another model, or another
        // skip_columns: the model's hash tells that)
        None
    }
}

/// The content of a JSON string (`None` for any other JSON value).
fn text_of(json: &str) -> Option<String> {
    if json.starts_with('"') { serde_json::from_str(json).ok() } else { None }
}

/// A rescued JSON value as a number: a JSON number, or a string holding one (source-mysql sends
/// some `DECIMAL`s as `"12.50"`).
fn number(json: &str) -> Option<f64> {
    let x = match text_of(json) {
        Some(text) => text.trim().parse::<f64>().ok(),
        None => json.parse::<f64>().ok(),
    }?;
    x.is_finite().then_some(x)
}

/// A rescued JSON value as a 64-bit integer (a JSON integer, or a string holding one).
fn integer(json: &str) -> Option<i64> {
    match text_of(json) {
        Some(text) => text.trim().parse::<i64>().ok(),
        None => json.parse::<i64>().ok(),
    }
}

/// The first of silver's text and number columns (among `columns`) that `schema` (a silver
/// table's) holds with another type, if any.
pub fn stale_column(schema: &ArrowSchema, columns: &[&str]) -> Option<String> {
    columns.iter().find_map(|&column| {
        let field = schema.field_with_name(column).ok()?;
        let fits = match fixed_type(column)? {
            DataType::String => matches!(field.data_type(), ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View),
            _ => matches!(field.data_type(), ArrowType::Float64),
        };
        (!fits).then(|| column.to_owned())
    })
}

/// Silver's type for a text or float column (whatever the source column's type), `None` for keys,
/// integers and times (keys take their kind from bronze, [`StreamMap::key_type`]; times are
/// normalized after mapping).
fn fixed_type(column: &str) -> Option<DataType> {
    match silver_type(column) {
        t @ (DataType::String | DataType::Float64) => Some(t),
        _ => None,
    }
}

/// The type of silver data column `column` (of either table), for a column bronze lacks.
fn silver_type(column: &str) -> DataType {
    match column {
        "id" | "customer_id" | "driver_id" | "duration_s" | "customer_rating" | "driver_rating" => DataType::Int64,
        c if c.ends_with("_at") => DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
        c if NUMERIC_COLUMNS.contains(&c) => DataType::Float64,
        _ => DataType::String,
    }
}

impl ColumnMap {
    /// The expression that turns column `input` (the source column `self.source`, or its
    /// recovered copy; of type `dtype`) into the silver column.
    fn expr(&self, input: &str, dtype: &DataType, table: &str) -> Result<Expr> {
        let mut expr = col(input);
        if !self.values.is_empty() {
            let from = Series::new("from".into(), self.values.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>());
            let to = Series::new("to".into(), self.values.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>());
            // (`replace` takes the old and new values as one list each)
            expr = expr.cast(DataType::String).replace(lit(from).implode(false), lit(to).implode(false));
        }
        if let Some(zone) = &self.time_zone {
            let problem = |what: String| LakehouseError::Schema { table: format!("bronze {table}"), message: format!("model line {}: {what}", self.line) };
            if !matches!(dtype, DataType::Datetime(_, None)) {
                return Err(problem(format!("time_zone applies to a DATETIME (timestamp without time zone); `{}` is {dtype}", self.source)));
            }
            let zone = TimeZone::opt_try_new(Some(zone.as_str())).ok().flatten().ok_or_else(|| problem(format!("`{zone}` is not a time zone")))?;
            expr = expr
                .dt()
                .replace_time_zone(Some(zone), lit("earliest"), NonExistent::Null)
                .dt()
                .convert_time_zone(TimeZone::UTC);
        }
        if let Some(scale) = self.scale {
            expr = expr.cast(DataType::Float64) * lit(scale);
        }
        Ok(expr)
    }
}

/// Checks the layout's model against its bronze tables (their logs and schemas; no data is
/// read, but for `_airbyte_rescued_data` of the files holding rescued values when the model
/// keeps the source's other columns): the problems found, each naming the model line, or none.
pub async fn validate(layout: &LakeLayout) -> Result<Vec<String>> {
    let options = layout.storage_options();
    let model = &layout.model;
    let mut schemas = Vec::new();
    let mut absent = Vec::new();
    let mut maps = model.user_maps();
    maps.push(&model.rides);
    for map in maps {
        let schema = match crate::io::open(&layout.bronze(&map.stream)?, &options).await? {
            Some(table) => {
                // (what a rebuild would read: all of bronze)
                absent.extend(map.absent_problems(&crate::increment::absent_columns(&table)?, None));
                let schema = crate::io::arrow_schema(&table)?;
                // The columns other_columns = "keep" would keep, as a run finds them.
                let names = map.kept_sources(&schema);
                if !names.is_empty() || !map.extra.is_empty() {
                    let rescued = crate::increment::rescued_kinds(&table, &names).await?;
                    match map.clone().keep(&schema, &rescued, &crate::silver::OWN_COLUMNS) {
                        Ok(()) => {}
                        // (an extra column bronze lacks is also among check_bronze's problems)
                        Err(LakehouseError::Model { problems, .. }) => absent.extend(problems.into_iter().filter(|p| !map.missing_extras(&schema).contains(p))),
                        Err(changed @ LakehouseError::KeptColumnChanged { .. }) => absent.push(changed.to_string()),
                        Err(other) => return Err(other),
                    }
                }
                Some(schema)
            }
            None => None,
        };
        schemas.push(schema);
    }
    let rides = schemas.pop().flatten();
    let users: Vec<Option<&ArrowSchema>> = schemas.iter().map(|s| s.as_deref()).collect();
    let mut problems = model.check_bronze(&users, rides.as_deref());
    problems.extend(absent);
    // Gold's synced cities tables: each exists, with the columns named.
    if let Some(source) = &model.gold.cities_stream {
        match crate::io::open(&layout.bronze(&source.stream)?, &options).await? {
            None => problems.push(at(source.line, format!("gold cities reads bronze stream `{}`, which has no bronze table yet: add the source table to the connection and sync it", source.stream))),
            Some(table) => {
                let schema = crate::io::arrow_schema(&table)?;
                for column in [&source.key, &source.name, &source.lat, &source.lon] {
                    if schema.field_with_name(column).is_err() {
                        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).filter(|n| !n.starts_with("_a")).collect();
                        problems.push(at(source.line, format!("gold cities reads `{column}` of bronze `{}`, which has no such column; its columns are {}", source.stream, list(&names))));
                    }
                }
            }
        }
    }
    if let Some(source) = &model.gold.city_names_stream {
        match crate::io::open(&layout.bronze(&source.stream)?, &options).await? {
            None => problems.push(at(source.line, format!("gold city_names reads bronze stream `{}`, which has no bronze table yet: add the source table to the connection and sync it", source.stream))),
            Some(table) => {
                let schema = crate::io::arrow_schema(&table)?;
                for column in [&source.key, &source.city] {
                    if schema.field_with_name(column).is_err() {
                        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).filter(|n| !n.starts_with("_a")).collect();
                        problems.push(at(source.line, format!("gold city_names reads `{column}` of bronze `{}`, which has no such column; its columns are {}", source.stream, list(&names))));
                    }
                }
            }
        }
    }
    Ok(problems.into_iter().map(|p| format!("{}: {p}", model.origin)).collect())
}

/// Checks the model file at `path`, and when `lake` is given, against that lake's bronze tables
/// ([`validate`]): every problem found, each starting with the file's name and naming its line;
/// empty when the model fits. Errors only when the lake cannot be read.
pub async fn validate_file(path: &std::path::Path, lake: Option<&LakeLayout>) -> Result<Vec<String>> {
    let model = match Model::load(path) {
        Ok(model) => model,
        Err(LakehouseError::Model { origin, problems }) => return Ok(problems.into_iter().map(|p| format!("{origin}: {p}")).collect()),
        Err(other) => return Err(other),
    };
    match lake {
        Some(layout) => validate(&layout.clone().with_model(model)).await,
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::datatypes::{Field, TimeUnit as ArrowUnit};

    const RENAMED: &str = include_str!("../../../models/example-renamed.toml");

    #[test]
    fn a_model_file_s_problems_start_with_its_name_and_line() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| LakehouseError::Output(e.to_string()))?;
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "version = 1\n\n[rides]\nstream = 3\n").map_err(|e| LakehouseError::Output(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread().build().map_err(|e| LakehouseError::Output(e.to_string()))?;
        let problems = runtime.block_on(validate_file(&path, None))?;
        assert!(!problems.is_empty() && problems.iter().all(|p| p.starts_with(&format!("{}: line 4:", path.display()))), "{problems:?}");
        let missing = runtime.block_on(validate_file(&dir.path().join("none.toml"), None))?;
        assert!(missing.len() == 1 && missing[0].contains("none.toml: cannot read it"), "{missing:?}");
        std::fs::write(&path, RENAMED).map_err(|e| LakehouseError::Output(e.to_string()))?;
        assert!(runtime.block_on(validate_file(&path, None))?.is_empty());
        Ok(())
    }

    fn problems(text: &str) -> Vec<String> {
        match Model::parse(text, "m.toml") {
            Err(LakehouseError::Model { problems, .. }) => problems,
            other => panic!("expected model problems, got {other:?}"),
        }
    }

    #[test]
    fn default_model_maps_nothing() {
        let model = Model::parse("version = 1\n", "m.toml").expect("parses");
        assert!(model.is_default());
        assert_eq!(model.hash(), DEFAULT_MODEL_HASH);
        assert_eq!(model.rides.source_of("status"), "status");
        // Writing a column down under its own name is still the default.
        let explicit = Model::parse("version = 1\n[rides]\nstream = \"rides\"\n[rides.columns]\nstatus = \"status\"\n", "m.toml").expect("parses");
        assert!(explicit.is_default());
    }

    #[test]
    fn example_model_parses_and_hash_ignores_layout() {
        let model = Model::parse(RENAMED, "example").expect("the shipped example parses");
        assert_eq!(model.rides.stream, "trips");
        assert_eq!(model.rides.source_of("customer_id"), "rider_id");
        assert_eq!(model.rides.source_of("duration_s"), "duration_s");
        assert!(!model.is_default());
        let reordered: String = RENAMED.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n\n");
        assert_eq!(Model::parse(&reordered, "x").expect("parses").hash(), model.hash());
        let changed = RENAMED.replace("DONE = \"completed\"", "DONE = \"cancelled\"");
        assert_ne!(Model::parse(&changed, "x").expect("parses").hash(), model.hash());
    }

    #[test]
    fn every_mistake_is_reported_with_its_line() {
        let text = "version = 2\n[rides]\nstream = \"trips\"\n[rides.columns]\nstatuz = \"state\"\nstatus = { column = \"state\", values = { DONE = \"finished\" } }\nrequested_at = { column = \"t\", time_zone = \"Mars/Olympus\" }\nid = { column = \"trip_id\", scale = 2.0 }\nname = \"x\"\ncurrency = { column = \"c\", scale = 0.5 }\n";
        let found = problems(text);
        let expect = [
            ("line 1:", "version 2"),
            ("line 5:", "`statuz` is not a column of silver rides"),
            ("line 6:", "`DONE` maps to `finished`"),
            ("line 7:", "`Mars/Olympus` is not an IANA time zone"),
            ("line 8:", "rides.id is a key"),
            ("line 9:", "`name` is not a column of silver rides"),
            ("line 10:", "rides.currency is not a number"),
        ];
        for (line, what) in expect {
            assert!(found.iter().any(|p| p.starts_with(line) && p.contains(what)), "{line} {what} not in {found:?}");
        }
        assert_eq!(found.len(), expect.len(), "{found:?}");
    }

    #[test]
    fn rule_mistakes_are_reported_with_their_lines() {
        let text = "version = 1\n[[rides.rules]]\ncheck = \"distance_km >\"\n[[rides.rules]]\ncheck = \"distnace_km >= 0\"\n[[rides.rules]]\nname = \"twice\"\ncheck = \"fare_amount >= 0\"\n[[rides.rules]]\nname = \"twice\"\ncheck = \"duration_s >= 0\"\n[[users.rules]]\ncheck = \"1 = 1\"\n[[users.rules]]\ncheck = \"email IS NOT NULL\"\naction = \"shout\"\n";
        let found = problems(text);
        assert!(found.iter().any(|p| p.starts_with("line 16:") && p.contains("shout")), "an unknown action is a TOML error at its line: {found:?}");
        let text = text.replace("action = \"shout\"\n", "")
            + "[[rides.rules]]\ncheck = \"fare_amount < 3 * AVG(fare_amount)\"\n[[rides.rules]]\nname = \"customer_id is null\"\ncheck = \"customer_id > 0\"\n";
        let found = problems(&text);
        let expect = [
            ("line 2:", "is not a SQL condition"),
            ("line 4:", "reads distnace_km, not a column of silver rides"),
            ("line 9:", "two rules named `twice`"),
            ("line 12:", "reads no column"),
            ("line 16:", "aggregates over rows"),
            ("line 18:", "one of silver's own rules"),
        ];
        for (line, what) in expect {
            assert!(found.iter().any(|p| p.starts_with(line) && p.contains(what)), "{line} {what} not in {found:?}");
        }
        assert_eq!(found.len(), expect.len(), "{found:?}");
    }

    #[test]
    fn only_rules_that_change_rows_change_the_hash() {
        let with = |action: &str| Model::parse(&format!("version = 1\n[[rides.rules]]\ncheck = \"distance_km >= 0\"\naction = \"{action}\"\n"), "m.toml").expect("model");
        assert_eq!(with("warn").hash(), DEFAULT_MODEL_HASH);
        assert_eq!(with("fail").hash(), DEFAULT_MODEL_HASH);
        assert!(with("warn").is_default() && !with("drop").is_default());
        let (quarantine, drop) = (with("quarantine").hash(), with("drop").hash());
        assert!(quarantine != DEFAULT_MODEL_HASH && drop != DEFAULT_MODEL_HASH && quarantine != drop);
        // A renamed model with a warn rule hashes as the same model without it.
        let renamed = Model::parse(RENAMED, "renamed.toml").expect("renamed");
        let warned = Model::parse(&format!("{RENAMED}\n[[rides.rules]]\ncheck = \"distance_km >= 0\"\naction = \"warn\"\n"), "renamed.toml").expect("renamed");
        assert_eq!(renamed.hash(), warned.hash());
        assert_eq!(renamed.rides.rules.len(), 1, "the example has a warn rule");
        assert_eq!(warned.rides.rules.last().map(|r| r.columns.clone()), Some(vec!["distance_km".to_owned()]));
        assert_eq!(warned.rides.with_rule_columns(&["id", "fare_amount"]), ["id", "fare_amount", "distance_km"]);
    }

    #[test]
    fn links_are_declared_on_rides_and_change_the_hash_unless_they_wait() {
        let model = Model::parse("version = 1\n[rides.links]\ncustomer_id = \"wait\"\ndriver_id = \"accept\"\n", "m.toml").expect("links");
        assert_eq!(model.rides.links, Links { customer_id: LinkPolicy::Wait, driver_id: LinkPolicy::Accept });
        assert!(model.rides.links.accepts_any() && !model.is_default());
        assert_ne!(model.hash(), DEFAULT_MODEL_HASH);
        let both = Model::parse("version = 1\n[rides.links]\ncustomer_id = \"accept\"\ndriver_id = \"accept\"\n", "m.toml").expect("links");
        assert_ne!(both.hash(), model.hash());
        // Writing down the default policy is the default model.
        let waiting = Model::parse("version = 1\n[rides.links]\ncustomer_id = \"wait\"\ndriver_id = \"wait\"\n", "m.toml").expect("links");
        assert!(waiting.is_default() && !waiting.rides.links.accepts_any());
        assert_eq!(waiting.hash(), DEFAULT_MODEL_HASH);
        // A renamed model keeps its hash with waiting links written down.
        let renamed = Model::parse(RENAMED, "renamed.toml").expect("renamed");
        let written = Model::parse(&format!("{RENAMED}\n[rides.links]\ndriver_id = \"wait\"\n"), "renamed.toml").expect("renamed");
        assert_eq!(renamed.hash(), written.hash());

        let found = problems("version = 1\n[users.links]\nid = \"accept\"\n[rides.links]\ncity = \"accept\"\n");
        assert!(found.iter().any(|p| p.starts_with("line 3:") && p.contains("silver users has no links")), "{found:?}");
        assert!(found.iter().any(|p| p.starts_with("line 5:") && p.contains("`city` is not a link of silver rides")), "{found:?}");
        assert_eq!(found.len(), 2, "{found:?}");
        let found = problems("version = 1\n[rides.links]\ndriver_id = \"ignore\"\n");
        assert!(found.len() == 1 && found[0].starts_with("line 3:") && found[0].contains("ignore"), "an unknown policy is an error at its line: {found:?}");
    }

    #[test]
    fn a_limited_wait_is_a_duration_to_the_second_and_part_of_the_hash() {
        let parse = |limit: &str| Model::parse(&format!("version = 1\n[rides.links]\ndriver_id = {{ wait_for = \"{limit}\" }}\n"), "m.toml");
        let two_hours = parse("2h").expect("2h");
        let limit = WaitLimit::from_seconds(7200).expect("a limit");
        assert_eq!(two_hours.rides.links, Links { customer_id: LinkPolicy::Wait, driver_id: LinkPolicy::WaitFor(limit) });
        assert!(two_hours.rides.links.waits_for_any() && !two_hours.rides.links.accepts_any() && !two_hours.is_default());
        assert_eq!(limit.micros(), 7_200_000_000);
        assert_eq!(limit.to_string(), "2h");
        let shown = |seconds: u64| WaitLimit::from_seconds(seconds).expect("a limit").to_string();
        assert_eq!((shown(90), shown(5_400), shown(129_600), shown(31 * 86_400), shown(86_461)), ("1m 30s".into(), "1h 30m".into(), "1d 12h".into(), "31d".into(), "1d 1m 1s".into()));
        assert!(parse("100y").is_ok(), "100 years is the longest wait");
        // The same wait written otherwise is the same model; another wait is another.
        assert_eq!(parse("120min").expect("120min").hash(), two_hours.hash());
        assert_eq!(parse(" 1h 60m ").expect("1h 60m").hash(), two_hours.hash());
        assert_ne!(parse("3h").expect("3h").hash(), two_hours.hash());
        assert_ne!(two_hours.hash(), DEFAULT_MODEL_HASH);
        assert_eq!(parse("1day 12h").expect("a day and a half").rides.links.driver_id, LinkPolicy::WaitFor(WaitLimit::from_seconds(129_600).expect("limit")));

        for (bad, says) in [("two hours", "not a duration"), ("0s", "from one second"), ("1500ms", "to the second"), ("200years", "100 years")] {
            let found = problems(&format!("version = 1\n[rides.links]\ncustomer_id = {{ wait_for = \"{bad}\" }}\n"));
            assert!(found.len() == 1 && found[0].starts_with("line 3:") && found[0].contains(says), "{bad}: {found:?}");
        }
        let found = problems("version = 1\n[rides.links]\ncustomer_id = { wait_for = 3600 }\n");
        assert!(found.len() == 1 && found[0].starts_with("line 3:"), "a number is not a duration: {found:?}");
    }

    #[test]
    fn gold_cities_are_checked_and_hashed_apart_from_silver() {
        let text = "version = 1\n[gold]\nradius_km = 25\n[[gold.cities]]\nname = \"Porto\"\nlat = 41.15\nlon = -8.61\n[[gold.cities]]\nname = \"Braga\"\nlat = 41.55\nlon = -8.42\n";
        let model = Model::parse(text, "m.toml").expect("cities");
        assert_eq!(model.gold.cities.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["Porto", "Braga"]);
        assert_eq!(model.gold.city_of(41.16, -8.62), Some("Porto"));
        assert_eq!(model.gold.city_of(41.5, -8.45), Some("Braga"));
        assert_eq!(model.gold.city_of(38.72, -9.14), None, "Lisbon is beyond 25 km of both");
        // Gold's cities change no silver row: silver's hash stays; gold's changes.
        assert_eq!(model.hash(), DEFAULT_MODEL_HASH);
        assert_ne!(model.gold.hash(), DEFAULT_MODEL_HASH);
        assert_ne!(Model::parse(&text.replace("radius_km = 25", "radius_km = 30"), "m.toml").expect("cities").gold.hash(), model.gold.hash());
        let default = Model::default();
        assert_eq!(default.gold.hash(), DEFAULT_MODEL_HASH);
        assert_eq!(default.gold.city_of(48.86, 2.35), Some("Paris"));
        assert_eq!(default.gold.city_of(48.9, 2.4), Some("Paris"));
        assert_eq!(default.gold.city_of(0.0, -30.0), None, "the sea is in no city");
        assert_eq!(Model::parse("version = 1\n[gold]\nradius_km = 60\n", "m.toml").expect("default radius").gold.hash(), DEFAULT_MODEL_HASH);

        let found = problems("version = 1\n[gold]\nradius_km = 0\n[[gold.cities]]\nname = \"other\"\nlat = 1\nlon = 2\n[[gold.cities]]\nname = \"X\"\nlat = 91\nlon = 2\n[[gold.cities]]\nname = \"X\"\nlat = 1\nlon = 2\n");
        let expect = [("line 3:", "radius_km must be"), ("line 4:", "`other`"), ("line 8:", "lat must be within"), ("line 12:", "listed twice")];
        for (line, what) in expect {
            assert!(found.iter().any(|p| p.starts_with(line) && p.contains(what)), "{line} {what} not in {found:?}");
        }
        assert_eq!(found.len(), expect.len(), "{found:?}");
    }

    #[test]
    fn toml_and_shape_errors_name_the_line() {
        let found = problems("version = 1\n[rides]\nstream = \"trips\"\nunknown = 1\n");
        assert!(found[0].starts_with("line 4:") && found[0].contains("unknown"), "{found:?}");
        let found = problems("version = 1\n[rides.columns]\nstatus = { column = \"s\", value = {} }\n");
        assert!(found[0].starts_with("line 3:") && found[0].contains("value"), "{found:?}");
        let found = problems("version = 1\n[rides.columns]\nstatus = 3\n");
        assert!(found[0].starts_with("line 3:") && found[0].contains("source column name"), "{found:?}");
        let found = problems("version = 1\n[rides]\nstream = \"\"\n");
        assert!(found[0].starts_with("line 3:"), "{found:?}");
        assert!(!problems("[rides]\n").is_empty());
    }

    fn schema(fields: &[(&str, ArrowType)]) -> ArrowSchema {
        ArrowSchema::new(fields.iter().map(|(n, t)| Field::new(*n, t.clone(), true)).collect::<Vec<_>>())
    }

    #[test]
    fn bronze_check_names_missing_and_mistyped_columns() {
        let model = Model::parse(RENAMED, "example").expect("parses");
        let users = schema(&[
            ("account_id", ArrowType::Int64), ("role", ArrowType::Utf8), ("full_name", ArrowType::Utf8),
            ("signup_ts", ArrowType::Timestamp(ArrowUnit::Microsecond, None)), ("modified_ts", ArrowType::Timestamp(ArrowUnit::Microsecond, Some("UTC".into()))),
        ]);
        let rides = schema(&[
            ("trip_id", ArrowType::Float64), ("rider_id", ArrowType::Utf8), ("state", ArrowType::Utf8),
            ("pickup_ts", ArrowType::Timestamp(ArrowUnit::Microsecond, None)), ("fare_cents", ArrowType::Utf8),
            ("pickup_latitude", ArrowType::Utf8),
        ]);
        let found = model.check_bronze(&[Some(&users)], Some(&rides));
        let line = |needle: &str| RENAMED.lines().position(|l| l.starts_with(needle)).map(|i| format!("line {}:", i + 1)).expect("line");
        let expect = [
            (line("updated_at"), "time_zone applies to a DATETIME"),
            (line("id = \"trip_id\""), "keys must be integers or text"),
            (line("customer_id"), "rides.customer_id comes from `rider_id` of type Utf8 (text), and the users' key users.id from `account_id` of type Int64 (integers)"),
            (line("driver_id"), "`driver_account_id`, which bronze `trips` does not have"),
            (line("fare_amount"), "scale applies to numbers"),
            (line("pickup_lat"), "rides.pickup_lat holds numbers and comes from `pickup_latitude` of type Utf8"),
        ];
        for (line, what) in &expect {
            assert!(found.iter().any(|p| p.starts_with(line.as_str()) && p.contains(what)), "{line} {what} not in {found:?}");
        }
        // Text keys are keys: UUID accounts and trips, the trips' links UUIDs too.
        let text = |names: &[&'static str]| schema(&names.iter().map(|n| (*n, ArrowType::Utf8)).collect::<Vec<_>>());
        let uuids = Model::default().check_bronze(&[Some(&text(&["id", "type", "created_at"]))], Some(&text(&["id", "customer_id", "driver_id", "status", "requested_at"])));
        assert!(uuids.iter().all(|p| !p.contains("key")), "{uuids:?}");
        // Columns silver needs, with no mapping and no namesake: named, with the fix.
        let bare = Model::default().check_bronze(&[Some(&schema(&[("id", ArrowType::Int64)]))], None);
        assert!(bare.iter().any(|p| p.contains("needs `type`") && p.contains("add `type = ")), "{bare:?}");
        assert!(bare.iter().any(|p| p.contains("bronze stream `rides`, which has no bronze table yet")), "{bare:?}");
        // The column a table is filed by is needed: without it every change would be quarantined.
        let filed = Model::parse("version = 1\n[rides]\npartition = \"updated_at\"\n", "m.toml").expect("parses");
        let rides = text(&["id", "customer_id", "driver_id", "status", "requested_at"]);
        let users = text(&["id", "type", "created_at"]);
        let found = filed.check_bronze(&[Some(&users)], Some(&rides));
        assert!(found.iter().any(|p| p.contains("silver rides needs `updated_at`") && p.contains("add `updated_at = ")), "{found:?}");
        let default = Model::default().check_bronze(&[Some(&users)], Some(&rides));
        assert!(default.iter().all(|p| !p.contains("needs `updated_at`")), "filed by requested_at, rides need no updated_at: {default:?}");
    }

    #[test]
    fn keys_take_their_kind_from_bronze() {
        let mut model = Model::default();
        let rides = schema(&[("id", ArrowType::Int64), ("customer_id", ArrowType::Utf8), ("driver_id", ArrowType::LargeUtf8), ("status", ArrowType::Utf8)]);
        model.rides.read_key_kinds(&rides);
        assert_eq!(model.rides.text_keys, ["customer_id", "driver_id"]);
        assert_eq!((model.rides.key_type("id"), model.rides.key_type("customer_id")), (DataType::Int64, DataType::String));
        assert_eq!(model.rides.quarantine_key_type(), DataType::String, "the users' key is text: the quarantine's id is");
        // Mapped, a text key stays text; an integer key of another width becomes Int64.
        let frame = df!("id" => [7i32], "customer_id" => ["Acc_1"], "driver_id" => [None::<&str>], "status" => ["requested"]).expect("frame");
        let mapped = model.rides.apply(frame, &["id", "customer_id", "driver_id", "status"]).expect("applies");
        assert_eq!(mapped.column("id").expect("id").dtype(), &DataType::Int64);
        assert_eq!(mapped.column("customer_id").expect("customer_id").str().expect("text").get(0), Some("Acc_1"));
        assert_eq!(mapped.column("driver_id").expect("driver_id").dtype(), &DataType::String);
        // A silver table built with integer links, read against text ones: rebuilt, and said why.
        let silver = schema(&[("id", ArrowType::Int64), ("customer_id", ArrowType::Int64)]);
        let why = model.rides.key_difference(&silver).expect("differs");
        assert!(why.contains("`customer_id`") && why.contains("holds integers") && why.contains("now holds text"), "{why}");
        assert_eq!(model.rides.key_difference(&schema(&[("id", ArrowType::Int64), ("customer_id", ArrowType::Utf8)])), None);
        assert_eq!(Model::default().rides.quarantine_key_type(), DataType::Int64);
    }

    const COMPOSITE: &str = "version = 1\n[users]\nstream = \"accounts\"\n[users.columns]\nid = [\"region\", \"account_no\"]\n[rides]\nstream = \"trips\"\n[rides.columns]\nid = [\"region\", \"trip_no\"]\ncustomer_id = [\"rider_region\", \"rider_no\"]\ndriver_id = [\"region\", \"driver_id\"]\n";

    #[test]
    fn a_composite_key_is_its_columns_as_one_text_and_keeps_them() {
        let mut model = Model::parse(COMPOSITE, "composite.toml").expect("parses");
        assert_ne!(model.hash(), Model::parse(&COMPOSITE.replace("[\"region\", \"trip_no\"]", "\"trip_no\""), "m").expect("parses").hash());
        assert_eq!(model.rides.sources_of("id"), ["region", "trip_no"]);
        assert_eq!(model.rides.key_parts(), ["rider_region", "rider_no", "region", "driver_id", "trip_no"], "by silver column, no repeats");
        let rides = schema(&[
            ("region", ArrowType::Utf8), ("trip_no", ArrowType::Int64), ("rider_region", ArrowType::Utf8), ("rider_no", ArrowType::Int32),
            ("driver_id", ArrowType::Int64), ("status", ArrowType::Utf8), ("requested_at", ArrowType::Timestamp(ArrowUnit::Microsecond, Some("UTC".into()))),
            ("tip", ArrowType::Float64),
        ]);
        model.rides.read_key_kinds(&rides);
        assert_eq!(model.rides.text_keys, ["id", "customer_id", "driver_id"], "composite keys are text, whatever their columns hold");
        // Its columns are kept under their names (with other_columns = "drop" too), but for one
        // named as silver's own column; other source columns are not.
        model.rides.keep(&rides, &RescuedKinds::new(), &crate::silver::OWN_COLUMNS).expect("keeps");
        assert_eq!(model.rides.kept.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), ["region", "trip_no", "rider_region", "rider_no"]);
        // Each value as text, `|` and `\` escaped, joined by `|`; null when one is null. A value
        // bronze rescued (text the source sent for an integer column) is taken as sent.
        let frame = df!(
            "region" => [Some("eu"), Some("a|b"), Some("c\\"), Some("eu"), Some("eu")],
            "trip_no" => [Some(7i64), Some(8), Some(9), None, Some(7)],
            "rider_region" => ["eu", "eu", "eu", "eu", "eu"],
            "rider_no" => [Some(1i32), Some(2), None, Some(4), Some(5)],
            "driver_id" => [Some(3i64), None, Some(3), Some(3), Some(3)],
            "status" => ["requested"; 5],
            RESCUED_DATA => [None, None, Some(r#"{"rider_no":"007"}"#), None, Some(r#"{"trip_no":null}"#)],
        )
        .expect("frame");
        let out = model.rides.apply(frame, &["id", "customer_id", "driver_id", "status", "region", "trip_no"]).expect("applies");
        let text = |name: &str| out.column(name).expect(name).str().expect("text").iter().map(|v| v.map(str::to_owned)).collect::<Vec<_>>();
        let some = |v: &str| Some(v.to_owned());
        assert_eq!(text("id"), [some("eu|7"), some("a\\|b|8"), some("c\\\\|9"), None, some("eu|7")]);
        assert_eq!(text("customer_id"), [some("eu|1"), some("eu|2"), some("eu|007"), some("eu|4"), some("eu|5")]);
        assert_eq!(text("driver_id"), [some("eu|3"), None, some("c\\\\|3"), some("eu|3"), some("eu|3")]);
        assert_eq!(out.column("trip_no").expect("trip_no").dtype(), &DataType::Int64, "a kept key column keeps its type");
        // Gold can count rides by a key column silver keeps; a key column named as one of
        // silver's own (a `year`) is in the key only.
        assert!(Model::parse(&format!("{COMPOSITE}[gold]\ncity_column = \"region\"\n"), "m").is_ok(), "a kept key column is a rides column");
        let mut yearly = Model::parse("version = 1\n[rides.columns]\nid = [\"year\", \"seq\"]\n", "m").expect("parses");
        let by_year = schema(&[("year", ArrowType::Int64), ("seq", ArrowType::Int64), ("status", ArrowType::Utf8)]);
        yearly.rides.keep(&by_year, &RescuedKinds::new(), &crate::silver::OWN_COLUMNS).expect("keeps");
        assert_eq!(yearly.rides.kept.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), ["seq"]);
        // Escaping keeps keys apart that a plain join would make one.
        let frame = df!("region" => ["a|", "a"], "trip_no" => ["b", "|b"], "status" => ["requested"; 2]).expect("frame");
        let out = model.rides.apply(frame, &["id"]).expect("applies");
        let ids: Vec<Option<&str>> = out.column("id").expect("id").str().expect("text").iter().collect();
        assert_ne!(ids[0], ids[1], "{ids:?}");
    }

    const TWO_TABLES: &str = r#"version = 1
[[users.streams]]
stream = "passengers"
type = "customer"
[users.streams.columns]
id = "passenger_id"
name = "full_name"
created_at = "signed_up"

[[users.streams]]
stream = "drivers"
type = "driver"
other_columns = "keep"
[users.streams.columns]
id = "driver_no"
created_at = "hired_at"

[rides]
stream = "trips"
[rides.columns]
customer_id = "passenger_id"
"#;

    #[test]
    fn users_from_two_tables_are_keyed_by_role() {
        let mut model = Model::parse(TWO_TABLES, "two.toml").expect("parses");
        assert_eq!(model.user_maps().iter().map(|m| (m.stream.as_str(), m.role())).collect::<Vec<_>>(), [("passengers", Some("customer")), ("drivers", Some("driver"))]);
        assert_ne!(model.hash(), DEFAULT_MODEL_HASH);
        assert!(!model.is_default());
        // The bronze columns read: each stream's own, never the role (a literal).
        assert_eq!(model.users.sources_of("id"), ["passenger_id"]);
        assert_eq!(model.more_users[0].sources_of("id"), ["driver_no"]);
        assert_eq!(model.rides.sources_of("customer_id"), ["passenger_id"]);
        assert_eq!(model.rides.sources_of("driver_id"), ["driver_id"]);
        let passengers = schema(&[("passenger_id", ArrowType::Int64), ("full_name", ArrowType::Utf8), ("signed_up", ArrowType::Timestamp(ArrowUnit::Microsecond, Some("UTC".into())))]);
        let drivers = schema(&[("driver_no", ArrowType::Int32), ("name", ArrowType::Utf8), ("hired_at", ArrowType::Timestamp(ArrowUnit::Microsecond, Some("UTC".into()))), ("plate", ArrowType::Utf8), ("rating", ArrowType::Int64)]);
        let trips = schema(&[
            ("id", ArrowType::Int64), ("passenger_id", ArrowType::Int64), ("driver_id", ArrowType::Int64), ("status", ArrowType::Utf8),
            ("requested_at", ArrowType::Timestamp(ArrowUnit::Microsecond, Some("UTC".into()))),
        ]);
        assert_eq!(model.check_bronze(&[Some(&passengers), Some(&drivers)], Some(&trips)), Vec::<String>::new());
        // A link of another kind than the key of its role's stream is named with the stream.
        let text_drivers = schema(&[("driver_no", ArrowType::Utf8), ("hired_at", ArrowType::Timestamp(ArrowUnit::Microsecond, None))]);
        let found = model.check_bronze(&[Some(&passengers), Some(&text_drivers)], Some(&trips));
        assert!(found.len() == 1 && found[0].contains("rides.driver_id") && found[0].contains("users stream `drivers`"), "{found:?}");
        // Keys are role|key (text, as composite keys are); a ride's links point to the roles.
        for (map, bronze) in [(&mut model.users, &passengers), (&mut model.more_users[0], &drivers)] {
            map.read_key_kinds(bronze);
            map.keep(bronze, &RescuedKinds::new(), &crate::silver::OWN_COLUMNS).expect("keeps");
        }
        model.rides.read_key_kinds(&trips);
        assert_eq!(model.rides.text_keys, ["customer_id", "driver_id"]);
        let passenger_rows = df!("passenger_id" => [Some(17i64), None], "full_name" => ["Ana", "Bo"]).expect("frame");
        let out = model.users.apply(passenger_rows, &["id", "type", "name"]).expect("applies");
        let text = |out: &DataFrame, name: &str| out.column(name).expect(name).str().expect("text").iter().map(|v| v.map(str::to_owned)).collect::<Vec<_>>();
        let some = |v: &str| Some(v.to_owned());
        assert_eq!(text(&out, "id"), [some("customer|17"), None]);
        assert_eq!(text(&out, "type"), [some("customer"), some("customer")]);
        let driver_rows = df!("driver_no" => [17i32], "name" => ["Cy"], "plate" => ["AB-12"], "rating" => [5i64]).expect("frame");
        let out = model.more_users[0].apply(driver_rows, &["id", "type", "name", "driver_no", "plate"]).expect("applies");
        assert_eq!((text(&out, "id"), text(&out, "type"), text(&out, "name")), (vec![some("driver|17")], vec![some("driver")], vec![some("Cy")]));
        let trip_rows = df!("passenger_id" => [17i64], "driver_id" => [Some(17i64)], "status" => ["requested"]).expect("frame");
        let out = model.rides.apply(trip_rows, &["customer_id", "driver_id"]).expect("applies");
        assert_eq!((text(&out, "customer_id"), text(&out, "driver_id")), (vec![some("customer|17")], vec![some("driver|17")]));
        // Silver users keeps what either stream keeps: the passengers' key column, and the
        // drivers' key and other columns (`name` maps to silver's own), each stream's rows with
        // nulls in the other's.
        let joined = StreamMap::joined(&model.user_maps());
        assert_eq!(joined.kept.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), ["passenger_id", "driver_no", "plate", "rating"]);
        assert_eq!(joined.key_type("id"), DataType::String);
        let passenger = joined.aligned(df!("id" => ["customer|1"], "passenger_id" => [1i64]).expect("frame")).expect("aligns");
        assert_eq!(passenger.column("driver_no").expect("driver_no").dtype(), &DataType::Int32);
        assert_eq!(passenger.column("plate").expect("plate").null_count(), 1);
    }

    #[test]
    fn users_streams_mistakes_name_their_line() {
        let two = |extra_first: &str, extra_second: &str| {
            format!("version = 1\n[[users.streams]]\nstream = \"a\"\n{extra_first}\n[[users.streams]]\nstream = \"b\"\n{extra_second}\n")
        };
        let cases: Vec<(String, &str)> = vec![
            (two("", "type = \"driver\""), "has no `type`"),
            (two("type = \"rider\"", "type = \"driver\""), "is not a user type"),
            (two("type = \"driver\"", "type = \"driver\""), "two users streams are of type driver"),
            ("version = 1\n[[users.streams]]\nstream = \"a\"\ntype = \"customer\"\n".to_owned(), "needs a stream of type driver too"),
            ("version = 1\n[users]\nstream = \"x\"\n[[users.streams]]\nstream = \"a\"\ntype = \"customer\"\n[[users.streams]]\nstream = \"b\"\ntype = \"driver\"\n".to_owned(), "give `stream` in each stream's entry"),
            (two("type = \"customer\"\n[users.streams.columns]\ntype = \"role\"", "type = \"driver\""), "remove this mapping"),
            ("version = 1\n[[users.streams]]\ntype = \"customer\"\n[[users.streams]]\nstream = \"b\"\ntype = \"driver\"\n".to_owned(), "names its source table"),
            ("version = 1\n[users]\ntype = \"driver\"\n".to_owned(), "in an entry of [[users.streams]]"),
            ("version = 1\n[[rides.streams]]\nstream = \"t\"\n".to_owned(), "`streams` is for users"),
        ];
        for (text, expected) in cases {
            let found = problems(&text);
            assert!(found.iter().any(|p| p.contains(expected) && p.starts_with("line ")), "{text}\n{found:?}");
        }
    }

    #[test]
    fn silver_tables_take_the_names_the_model_gives() {
        let default = Model::default();
        assert_eq!(crate::maintain::SILVER_TABLES.map(|t| default.silver_table(t)), ["users", "rides", "rides_pending", "rides_deleted", "quarantine"]);
        let text = "version = 1\n[users]\ntable = \"members\"\n[rides]\ntable = \"journeys\"\n";
        let model = Model::parse(text, "m.toml").expect("parses");
        assert_eq!(crate::maintain::SILVER_TABLES.map(|t| model.silver_table(t)), ["members", "journeys", "journeys_pending", "journeys_deleted", "quarantine"]);
        // Names say where silver is, not what its rows are: the hash (and a default mapping) stay.
        assert!(model.is_default() && model.hash() == DEFAULT_MODEL_HASH);
        // Gold records the rides table it was computed from, when it is not `rides`.
        assert_eq!(gold_inputs_hash(7, "rides", Some("requested_at")), 7);
        assert_ne!(gold_inputs_hash(7, "journeys", Some("requested_at")), 7);
        assert_ne!(gold_inputs_hash(7, "journeys", Some("requested_at")), gold_inputs_hash(7, "trips", Some("requested_at")));
        // With users from two tables, the name is silver users' own, under [users].
        let two = "version = 1\n[users]\ntable = \"people\"\npartition = \"none\"\n[[users.streams]]\nstream = \"a\"\ntype = \"customer\"\n[[users.streams]]\nstream = \"b\"\ntype = \"driver\"\n";
        let model = Model::parse(two, "m.toml").expect("parses");
        assert_eq!((model.silver_table("users").as_str(), model.user_maps().iter().map(|m| m.partition).collect::<Vec<_>>()), ("people", vec![None, None]));
    }

    #[test]
    fn partitioning_is_in_the_hash() {
        let with = |partition: &str| Model::parse(&format!("version = 1\n[users]\npartition = \"{partition}\"\n"), "m.toml").expect("parses");
        assert!(with("created_at").is_default() && with("created_at").hash() == DEFAULT_MODEL_HASH);
        let (updated, none) = (with("updated_at"), with("none"));
        assert_eq!((updated.users.partition, none.users.partition), (Some("updated_at"), None));
        assert!(!updated.is_default() && !none.is_default());
        let hashes = [DEFAULT_MODEL_HASH, updated.hash(), none.hash()];
        assert!(hashes[0] != hashes[1] && hashes[1] != hashes[2] && hashes[0] != hashes[2], "{hashes:?}");
        assert_eq!(Model::parse("version = 1\n[rides]\npartition = \"requested_at\"\n", "m.toml").expect("parses").hash(), DEFAULT_MODEL_HASH);
        // Rides filed by another day, or by none: each its own mapping (and another gold input),
        // never the users' choice of the same name.
        let rides = |partition: &str| Model::parse(&format!("version = 1\n[rides]\npartition = \"{partition}\"\n"), "m.toml").expect("parses");
        let filed: Vec<Model> = ["created_at", "updated_at", "none"].map(rides).into();
        assert_eq!(filed.iter().map(|m| m.rides.partition).collect::<Vec<_>>(), [Some("created_at"), Some("updated_at"), None]);
        let mut hashes: Vec<i64> = filed.iter().chain([&updated, &none]).map(Model::hash).collect();
        hashes.push(DEFAULT_MODEL_HASH);
        let distinct: std::collections::BTreeSet<i64> = hashes.iter().copied().collect();
        assert_eq!(distinct.len(), hashes.len(), "{hashes:?}");
        let gold: std::collections::BTreeSet<i64> = filed.iter().map(|m| gold_inputs_hash(0, "rides", m.rides.partition)).chain([gold_inputs_hash(0, "rides", Some("requested_at"))]).collect();
        assert_eq!(gold.len(), 4, "gold follows how rides are filed");
        assert_eq!(gold_inputs_hash(0, "rides", Some("requested_at")), 0, "gold of the default filing keeps its marker");
    }

    #[test]
    fn table_name_and_partition_mistakes_name_their_line() {
        let cases: Vec<(&str, &str, usize)> = vec![
            ("version = 1\n[users]\ntable = \"Users\"\n", "lowercase letters", 3),
            ("version = 1\n[rides]\ntable = \"../x\"\n", "lowercase letters", 3),
            ("version = 1\n[users]\ntable = \"_lease\"\n", "starting with a letter", 3),
            ("version = 1\n[users]\ntable = \"quarantine\"\n", "silver users and silver quarantine would both be the table `quarantine`", 3),
            ("version = 1\n[rides]\ntable = \"users\"\n", "silver users and silver rides would both be the table `users`", 3),
            ("version = 1\n[users]\ntable = \"rides\"\n[rides]\ntable = \"journeys\"\n", "`rides` is where silver rides is by default", 3),
            ("version = 1\n[users]\ntable = \"people\"\n[rides]\ntable = \"users\"\n", "`users` is where silver users is by default", 5),
            ("version = 1\n[users]\npartition = \"updated_at\"\n[[users.rules]]\nname = \"updated_at is null\"\ncheck = \"updated_at IS NOT NULL\"\n", "silver's own rule when users are filed by updated_at", 4),
            ("version = 1\n[users]\ntable = \"trips_pending\"\n[rides]\ntable = \"trips\"\n", "would both be the table `trips_pending`", 3),
            ("version = 1\n[users]\npartition = \"signup_day\"\n", "write \"created_at\", \"updated_at\" or \"none\"", 3),
            ("version = 1\n[rides]\n\npartition = \"pickup_ts\"\n", "map one of these to it under [rides.columns] (e.g. updated_at = \"pickup_ts\")", 4),
            ("version = 1\n[rides]\npartition = \"completed_at\"\n", "a ride has no completed_at until it gets there", 3),
            ("version = 1\n[rides]\npartition = \"updated_at\"\n[[rides.rules]]\nname = \"updated_at is null\"\ncheck = \"updated_at IS NOT NULL\"\n", "silver's own rule when rides are filed by updated_at", 4),
            (
                "version = 1\n[[users.streams]]\nstream = \"a\"\ntype = \"customer\"\ntable = \"x\"\n[[users.streams]]\nstream = \"b\"\ntype = \"driver\"\npartition = \"none\"\n",
                "write it under [users], not in a [[users.streams]] entry",
                5,
            ),
        ];
        for (text, expected, line) in &cases {
            let found = problems(text);
            assert!(found.iter().any(|p| p.contains(expected) && p.starts_with(&format!("line {line}:"))), "{text}\n{found:?}");
        }
        // (both entries of the two-stream case are named)
        let found = problems(cases[cases.len() - 1].0);
        assert_eq!(found.iter().filter(|p| p.contains("not in a [[users.streams]] entry")).count(), 2, "{found:?}");
    }

    #[test]
    fn composite_key_mistakes_name_their_line() {
        let problems = |text: &str| match Model::parse(text, "m.toml") {
            Err(LakehouseError::Model { problems, .. }) => problems,
            other => panic!("expected a model error, got {other:?}"),
        };
        let found = problems("version = 1\n[rides.columns]\nstatus = [\"a\", \"b\"]\nid = [\"trip_no\"]\ncustomer_id = [\"r\", \"R\"]\n");
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found.iter().any(|p| p.starts_with("line 3:") && p.contains("only keys")), "{found:?}");
        assert!(found.iter().any(|p| p.starts_with("line 4:") && p.contains("id = \"trip_no\"")), "{found:?}");
        assert!(found.iter().any(|p| p.starts_with("line 5:") && p.contains("listed twice")), "{found:?}");
        // Against bronze: a missing or mistyped column of a key, and links that do not hold the
        // users' key column for column.
        let model = Model::parse(COMPOSITE, "composite.toml").expect("parses");
        let users = schema(&[("region", ArrowType::Utf8), ("account_no", ArrowType::Int64), ("type", ArrowType::Utf8), ("created_at", ArrowType::Timestamp(ArrowUnit::Microsecond, None))]);
        let rides = schema(&[
            ("region", ArrowType::Utf8), ("trip_no", ArrowType::Float64), ("rider_region", ArrowType::Int64), ("rider_no", ArrowType::Int64),
            ("status", ArrowType::Utf8), ("requested_at", ArrowType::Timestamp(ArrowUnit::Microsecond, None)),
        ]);
        let found = model.check_bronze(&[Some(&users)], Some(&rides));
        let line = |needle: &str| COMPOSITE.lines().position(|l| l.starts_with(needle)).map(|i| format!("line {}:", i + 1)).expect("line");
        for (at, what) in [
            (line("id = [\"region\", \"trip_no"), "composed of `trip_no` of type Float64"),
            (line("driver_id"), "composed of `driver_id`, which bronze `trips` does not have"),
            (line("customer_id"), "rides.customer_id comes from `rider_region`, `rider_no` of type Int64 (integers), Int64 (integers), and the users' key users.id from `region`, `account_no` of type Utf8 (text), Int64 (integers)"),
        ] {
            assert!(found.iter().any(|p| p.starts_with(&at) && p.contains(what)), "{at} {what}: {found:?}");
        }
        assert_eq!(found.len(), 3, "{found:?}");
        let single = Model::parse(&COMPOSITE.replace("customer_id = [\"rider_region\", \"rider_no\"]", "customer_id = \"rider_no\""), "m").expect("parses");
        let found = single.check_bronze(&[Some(&users)], Some(&schema(&[("region", ArrowType::Utf8), ("trip_no", ArrowType::Int64), ("rider_no", ArrowType::Int64), ("driver_id", ArrowType::Int64), ("status", ArrowType::Utf8), ("requested_at", ArrowType::Timestamp(ArrowUnit::Microsecond, None))])));
        assert!(found.len() == 1 && found[0].contains("comes from 1 column(s) (`rider_no`), and the users' key users.id from 2"), "{found:?}");
    }

    #[test]
    fn kept_columns_are_the_unmapped_ones_in_their_widened_types() {
        let text = "version = 1\n[users]\nother_columns = \"keep\"\nskip_columns = [\"password hash\"]\n[rides]\nother_columns = \"keep\"\n[rides.columns]\nstatus = \"state\"\n";
        let mut model = Model::parse(text, "keep.toml").expect("parses");
        assert!(!model.is_default());
        assert_ne!(model.hash(), DEFAULT_MODEL_HASH);
        // skip_columns is part of what the model does to rows (by bronze's names).
        let other = Model::parse(&text.replace("password hash", "password_hash"), "keep.toml").expect("parses");
        assert_eq!(other.hash(), model.hash(), "skip_columns are bronze's names");
        let fewer = Model::parse(&text.replace("skip_columns = [\"password hash\"]", "skip_columns = []"), "keep.toml").expect("parses");
        assert_ne!(fewer.hash(), model.hash());
        let users = schema(&[
            ("id", ArrowType::Int64), ("type", ArrowType::Utf8), ("created_at", ArrowType::Timestamp(ArrowUnit::Microsecond, Some("UTC".into()))),
            ("referral", ArrowType::Utf8), ("password_hash", ArrowType::Utf8), ("_airbyte_raw_id", ArrowType::Utf8), ("_ab_cdc_cursor", ArrowType::Int64),
        ]);
        model.users.keep(&users, &RescuedKinds::new(), &crate::silver::OWN_COLUMNS).expect("keeps");
        assert_eq!(model.users.kept.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), ["referral"]);
        assert_eq!(model.users.data_columns().last(), Some(&"referral"));
        // The source column a mapping reads is not kept again; bronze's rescued values widen.
        let rides = schema(&[
            ("id", ArrowType::Int64), ("state", ArrowType::Utf8), ("surge", ArrowType::Int64), ("tip", ArrowType::Int64),
            ("note", ArrowType::Float64), ("seen_at", ArrowType::Timestamp(ArrowUnit::Microsecond, None)), ("vip", ArrowType::Boolean),
        ]);
        // (a string holding an integer in another form than its own is text: bronze stored "0050"
        // of an integer column as 50 and rescued the text)
        let kinds = ["\"0050\"", "\"+7\"", "\" 7\"", "\"12\"", "12", "\"12.50\"", "1.5", "\"n/a\"", "true"].map(RescuedKind::of);
        use RescuedKind::{Integer, Number, Text};
        assert_eq!(kinds, [Text, Text, Text, Integer, Integer, Number, Number, Text, Text]);
        let rescued: RescuedKinds = [("surge".to_owned(), (RescuedKind::of("1.5"), 3)), ("tip".to_owned(), (RescuedKind::of("\"0050\""), 1)), ("note".to_owned(), (RescuedKind::of("2"), 1))].into();
        model.rides.keep(&rides, &rescued, &crate::silver::OWN_COLUMNS).expect("keeps");
        let kept: Vec<(&str, Option<DataType>, TypeFamily)> = model.rides.kept.iter().map(|k| (k.name.as_str(), k.widened.clone(), k.family)).collect();
        assert_eq!(kept, [
            ("surge", Some(DataType::Float64), TypeFamily::Float),
            ("tip", Some(DataType::String), TypeFamily::Text),
            ("note", None, TypeFamily::Float),
            ("seen_at", None, TypeFamily::Time),
            ("vip", None, TypeFamily::Boolean),
        ]);
        assert!(!model.rides.data_columns().contains(&"state"));
        // A silver table without a kept column, or with it narrower, differs; one with them all
        // does not.
        let silver = schema(&[("id", ArrowType::Int64), ("surge", ArrowType::Int64), ("tip", ArrowType::Utf8), ("note", ArrowType::Float64), ("seen_at", ArrowType::Timestamp(ArrowUnit::Microsecond, None)), ("vip", ArrowType::Boolean)]);
        assert!(model.rides.kept_difference(&silver).is_some_and(|d| d.contains("`surge`") && d.contains("number")), "{:?}", model.rides.kept_difference(&silver));
        let silver = schema(&[("id", ArrowType::Int64), ("surge", ArrowType::Float64), ("tip", ArrowType::LargeUtf8), ("note", ArrowType::Float64), ("seen_at", ArrowType::Timestamp(ArrowUnit::Microsecond, None)), ("vip", ArrowType::Boolean)]);
        assert_eq!(model.rides.kept_difference(&silver), None);
        let without = schema(&[("id", ArrowType::Int64), ("surge", ArrowType::Float64)]);
        assert!(model.rides.kept_difference(&without).is_some_and(|d| d.contains("`tip` of `rides` is new")));
        // Text in a time or true/false column cannot widen it: an error naming the column and line.
        for (column, expected) in [("seen_at", "times"), ("vip", "true or false")] {
            let rescued: RescuedKinds = [(column.to_owned(), (RescuedKind::Text, 2))].into();
            match model.rides.clone().keep(&rides, &rescued, &crate::silver::OWN_COLUMNS) {
                Err(e @ LakehouseError::KeptColumnChanged { .. }) => {
                    let message = e.to_string();
                    assert!(message.contains(&format!("keeps `{column}`")) && message.contains("keep.toml, line 6") && message.contains(expected) && message.contains("skip_columns"), "{message}");
                }
                other => panic!("expected KeptColumnChanged, got {other:?}"),
            }
        }
        // A source column named as one of silver's own cannot be kept under its name.
        let clash = schema(&[("id", ArrowType::Int64), ("state", ArrowType::Utf8), ("status", ArrowType::Utf8), ("reason", ArrowType::Utf8), ("_cdc_epoch", ArrowType::Int64)]);
        match model.rides.clone().keep(&clash, &RescuedKinds::new(), &crate::silver::OWN_COLUMNS) {
            Err(LakehouseError::Model { problems, .. }) => {
                assert_eq!(problems.len(), 3, "{problems:?}");
                assert!(problems.iter().all(|p| p.starts_with("line 6:") && p.contains("skip_columns")), "{problems:?}");
            }
            other => panic!("expected a model error, got {other:?}"),
        }
        // A model that drops other columns keeps none, and skip_columns needs keep.
        let mut dropping = Model::default();
        dropping.rides.keep(&rides, &rescued, &crate::silver::OWN_COLUMNS).expect("keeps none");
        assert!(dropping.rides.kept.is_empty());
        let found = match Model::parse("version = 1\n[rides]\nskip_columns = [\"x\"]\n", "m") {
            Err(LakehouseError::Model { problems, .. }) => problems,
            other => panic!("expected a model error, got {other:?}"),
        };
        assert!(found[0].starts_with("line 3:") && found[0].contains("other_columns = \"keep\""), "{found:?}");
    }

    #[test]
    fn gold_s_city_column_is_a_rides_column_and_excludes_cities() {
        let problems = |text: &str| match Model::parse(text, "m") {
            Err(LakehouseError::Model { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        };
        let keep = "version = 1\n[rides]\nother_columns = \"keep\"\n[gold]\ncity_column = \"market\"\n";
        let model = Model::parse(keep, "m").expect("parses");
        assert_eq!(model.gold.city_column.as_deref(), Some("market"));
        assert_ne!(model.gold.hash(), DEFAULT_MODEL_HASH);
        assert_eq!(model.hash(), Model::parse(&keep.replace("[gold]\ncity_column = \"market\"\n", ""), "m").expect("parses").hash(), "not silver's hash");
        let found = problems("version = 1\n[gold]\ncity_column = \"market\"\n");
        assert!(found[0].starts_with("line 3:") && found[0].contains("other_columns = \"keep\""), "{found:?}");
        assert!(Model::parse("version = 1\n[gold]\ncity_column = \"currency\"\n", "m").is_ok(), "one of silver's ride columns");
        let found = problems(&format!("{keep}radius_km = 10\n"));
        assert!(found[0].starts_with("line 5:") && found[0].contains("give one of the two"), "{found:?}");
    }

    #[test]
    fn gold_s_city_names_come_from_a_csv_next_to_the_model() {
        let folder = tempfile::tempdir().expect("folder");
        let model_path = folder.path().join("model.toml");
        let text = "version = 1\n[rides]\nother_columns = \"keep\"\n[gold]\ncity_column = \"city_id\"\ncity_names = \"cities.csv\"\n";
        std::fs::write(&model_path, text).expect("model");
        let parse = |csv: &str| {
            std::fs::write(folder.path().join("cities.csv"), csv).expect("csv");
            Model::load(&model_path)
        };
        let model = parse("key,city\n1, Lisboa\n 2 ,Porto\n").expect("parses");
        assert_eq!(model.gold.city_names, BTreeMap::from([("1".to_owned(), "Lisboa".to_owned()), ("2".to_owned(), "Porto".to_owned())]));
        let renamed = parse("City,Key\nLisbon,1\nPorto,2\n").expect("columns by name, in any order");
        assert_eq!(renamed.gold.city_names["1"], "Lisbon");
        assert_ne!(renamed.gold.hash(), model.gold.hash(), "another name changes gold's hash");
        assert_eq!(renamed.hash(), model.hash(), "not silver's");
        let mistakes = |csv: &str| match parse(csv) {
            Err(LakehouseError::Model { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        };
        let found = mistakes("id,name\n1,Lisboa\n");
        assert!(found[0].starts_with("line 6:") && found[0].contains("key and city"), "{found:?}");
        let found = mistakes("key,city\n1,Lisboa\n2,other\n1,Porto\n,Faro\n");
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("line 3") && found[0].contains("other"), "{found:?}");
        assert!(found[1].contains("line 4") && found[1].contains("listed twice"), "{found:?}");
        assert!(found[2].contains("line 5") && found[2].contains("key is empty"), "{found:?}");
        assert!(mistakes("key,city\n")[0].contains("lists no city"));
        std::fs::remove_file(folder.path().join("cities.csv")).expect("rm");
        assert!(matches!(Model::load(&model_path), Err(LakehouseError::Model { problems, .. }) if problems[0].contains("cannot read")));
        let found = problems("version = 1\n[gold]\ncity_names = \"cities.csv\"\n");
        assert!(found[0].starts_with("line 3:") && found[0].contains("city_column"), "{found:?}");
    }

    #[test]
    fn gold_s_city_names_can_come_from_a_synced_table() {
        let text = "version = 1\n[rides]\nother_columns = \"keep\"\n[gold]\ncity_column = \"city_id\"\ncity_names = { stream = \"cities\", key = \"city id\", city = \"name\" }\n";
        let model = Model::parse(text, "m.toml").expect("parses");
        let source = model.gold.city_names_stream.as_ref().expect("stream");
        assert_eq!((source.stream.as_str(), source.key.as_str(), source.city.as_str(), source.line), ("cities", "city_id", "name", 6), "bronze's column names");
        assert!(model.gold.city_names.is_empty(), "read by gold at each run");
        assert_ne!(model.gold.hash(), Model::parse(&text.replace("\"name\"", "\"label\""), "m.toml").expect("parses").gold.hash());
        assert_eq!(model.hash(), Model::parse("version = 1\n[rides]\nother_columns = \"keep\"\n", "m.toml").expect("parses").hash(), "gold's names are not silver's business");
        let problems = |text: &str| match Model::parse(text, "m.toml") {
            Err(LakehouseError::Model { problems, .. }) => problems,
            other => panic!("expected a model error, got {other:?}"),
        };
        let found = problems(&text.replace("city = \"name\"", "city = \"city id\""));
        assert!(found.len() == 1 && found[0].starts_with("line 6:") && found[0].contains("one column"), "{found:?}");
        let found = problems(&text.replace("key = \"city id\", ", ""));
        assert!(found[0].starts_with("line 6:") && found[0].contains("key"), "{found:?}");
        let found = problems(&text.replace("\"cities\"", "\" \""));
        assert!(found[0].starts_with("line 6:") && found[0].contains("stream"), "{found:?}");
    }

    #[test]
    fn gold_s_cities_can_come_from_a_synced_table() {
        let text = "version = 1\n[gold]\nradius_km = 30\ncities = { stream = \"cities\", key = \"city id\", name = \"name\", lat = \"lat\", lon = \"lon\" }\n";
        let model = Model::parse(text, "m.toml").expect("parses");
        let source = model.gold.cities_stream.as_ref().expect("stream");
        assert_eq!((source.stream.as_str(), source.key.as_str(), source.name.as_str(), source.line), ("cities", "city_id", "name", 4), "bronze's column names");
        assert!(model.gold.cities.is_empty(), "read by gold at each run, not the default cities");
        assert_eq!(model.gold.radius_km, 30.0);
        assert_ne!(model.gold.hash(), Model::parse(&text.replace("\"lon\" }", "\"longitude\" }"), "m.toml").expect("parses").gold.hash());
        assert_eq!(model.hash(), DEFAULT_MODEL_HASH, "gold's cities are not silver's business");
        // The list form still reads as it did.
        let listed = Model::parse("version = 1\n[[gold.cities]]\nname = \"Lyon\"\nlat = 45.7\nlon = 4.8\n", "m.toml").expect("parses");
        assert_eq!((listed.gold.cities.len(), listed.gold.cities_stream.is_none()), (1, true));
        let problems = |text: &str| match Model::parse(text, "m.toml") {
            Err(LakehouseError::Model { problems, .. }) => problems,
            other => panic!("expected a model error, got {other:?}"),
        };
        let found = problems(&text.replace("lat = \"lat\"", "lat = \"name\""));
        assert!(found.len() == 1 && found[0].starts_with("line 4:") && found[0].contains("four columns"), "{found:?}");
        let found = problems(&text.replace("key = \"city id\", ", ""));
        assert!(found[0].starts_with("line 4:") && found[0].contains("key"), "{found:?}");
        let found = problems(&text.replace("\"cities\"", "\" \""));
        assert!(found[0].starts_with("line 4:") && found[0].contains("stream"), "{found:?}");
        let found = problems(&text.replace("[gold]\n", "[rides]\nother_columns = \"keep\"\n[gold]\ncity_column = \"city\"\n"));
        assert!(found.iter().any(|p| p.contains("give one of the two")), "{found:?}");
    }

    #[test]
    fn extra_columns_keep_source_columns_under_the_model_s_names() {
        let text = "version = 1\n[rides]\nstream = \"trips\"\n[rides.extra_columns]\nsurge = \"surge multiplier\"\nzone = { column = \"pickup_zone\", optional = true }\n[[rides.rules]]\ncheck = \"surge >= 1\"\naction = \"quarantine\"\n";
        let mut model = Model::parse(text, "m.toml").expect("parses");
        assert!(!model.is_default());
        let plain = Model::parse("version = 1\n[rides]\nstream = \"trips\"\n[[rides.rules]]\ncheck = \"distance_km >= 0\"\naction = \"quarantine\"\n", "m.toml").expect("parses");
        assert_ne!(model.hash(), plain.hash(), "extra columns change silver's rows");
        let renamed = Model::parse(&text.replace("surge = ", "surcharge = ").replace("surge >=", "surcharge >="), "m.toml").expect("parses");
        assert_ne!(model.hash(), renamed.hash(), "so does their name");
        assert_eq!(model.rides.rules[0].columns, ["surge"], "rules read extra columns by silver's name");
        // Bronze's names (a space becomes `_`); with drop, only the extra columns are kept.
        let trips = schema(&[("id", ArrowType::Int64), ("surge_multiplier", ArrowType::Int64), ("pickup_zone", ArrowType::Utf8), ("note", ArrowType::Utf8)]);
        let rescued: RescuedKinds = [("surge_multiplier".to_owned(), (RescuedKind::Number, 1))].into();
        assert_eq!(model.rides.kept_sources(&trips), ["surge_multiplier", "pickup_zone"]);
        model.rides.keep(&trips, &rescued, &crate::silver::OWN_COLUMNS).expect("keeps");
        let kept: Vec<(&str, &str, Option<DataType>)> = model.rides.kept.iter().map(|k| (k.name.as_str(), k.source.as_str(), k.widened.clone())).collect();
        assert_eq!(kept, [("surge", "surge_multiplier", Some(DataType::Float64)), ("zone", "pickup_zone", None)]);
        assert_eq!(model.rides.sources_of("surge"), ["surge_multiplier"], "read from bronze under the source's name");
        let frame = df!(
            "id" => [1i64, 2],
            "surge_multiplier" => [Some(2i64), None],
            "pickup_zone" => ["north", "south"],
            "note" => ["a", "b"],
            RESCUED_DATA => [None, Some(r#"{"surge_multiplier": 1.5}"#)],
        )
        .expect("frame");
        let out = model.rides.apply(frame, &["id", "surge", "zone"]).expect("applies");
        assert_eq!(out.get_column_names().iter().map(|c| c.as_str()).collect::<Vec<_>>(), ["id", "surge", "zone"]);
        let surge: Vec<Option<f64>> = out.column("surge").expect("surge").f64().expect("f64").iter().collect();
        assert_eq!(surge, [Some(2.0), Some(1.5)], "widened, rescued values read back");
        // The silver table is checked by silver's names: a table without `zone` is rebuilt.
        let silver = schema(&[("id", ArrowType::Int64), ("surge", ArrowType::Float64)]);
        assert!(model.rides.kept_difference(&silver).is_some_and(|d| d.contains("`pickup_zone` of `trips` (kept as `zone`) is new")), "{:?}", model.rides.kept_difference(&silver));
        // A source column that disappears: an error naming the extra column's line, unless optional.
        let absent = AbsentColumns::from([("surge_multiplier".to_owned(), vec![(3, None)]), ("pickup_zone".to_owned(), vec![(3, None)])]);
        let found = model.rides.absent_problems(&absent, None);
        assert!(found.len() == 1 && found[0].starts_with("line 5: rides.surge comes from `surge_multiplier`") && found[0].contains("surge = { column = \"surge_multiplier\", optional = true } at line 5"), "{found:?}");
        // A source type silver cannot widen: the remedy is the extra column's.
        match model.rides.clone().keep(&schema(&[("surge_multiplier", ArrowType::Boolean), ("pickup_zone", ArrowType::Utf8)]), &[("surge_multiplier".to_owned(), (RescuedKind::Text, 2))].into(), &crate::silver::OWN_COLUMNS) {
            Err(e @ LakehouseError::KeptColumnChanged { .. }) => {
                let message = e.to_string();
                assert!(message.contains("keeps `surge_multiplier` of bronze `trips` (m.toml, line 5: extra column `surge`)") && message.contains("Remove `surge` from [rides.extra_columns]"), "{message}");
            }
            other => panic!("expected KeptColumnChanged, got {other:?}"),
        }
        // With other_columns = "keep", the others are kept under their names, the extra ones
        // only under theirs; a kept column may not take an extra column's name.
        let mut keeping = Model::parse(&text.replace("stream = \"trips\"\n", "stream = \"trips\"\nother_columns = \"keep\"\n"), "m.toml").expect("parses");
        keeping.rides.keep(&trips, &RescuedKinds::new(), &crate::silver::OWN_COLUMNS).expect("keeps");
        assert_eq!(keeping.rides.kept.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), ["surge", "zone", "note"]);
        let clash = schema(&[("id", ArrowType::Int64), ("surge_multiplier", ArrowType::Int64), ("pickup_zone", ArrowType::Utf8), ("zone", ArrowType::Utf8)]);
        match keeping.rides.clone().keep(&clash, &RescuedKinds::new(), &crate::silver::OWN_COLUMNS) {
            Err(LakehouseError::Model { problems, .. }) => assert!(problems.len() == 1 && problems[0].starts_with("line 7: extra column rides.zone takes the name of bronze `trips`'s column `zone`") && problems[0].contains("skip_columns"), "{problems:?}"),
            other => panic!("expected a model error, got {other:?}"),
        }
        // A source column bronze lacks: check_bronze and keep name the line.
        let lacking = schema(&[("id", ArrowType::Int64), ("pickup_zone", ArrowType::Utf8)]);
        let found = model.rides.missing_extras(&lacking);
        assert!(found.len() == 1 && found[0].starts_with("line 5: extra column rides.surge comes from `surge_multiplier`, which bronze `trips` does not have"), "{found:?}");
        assert!(matches!(model.rides.clone().keep(&lacking, &RescuedKinds::new(), &crate::silver::OWN_COLUMNS), Err(LakehouseError::Model { problems, .. }) if problems == found));
        // Mistakes in the file: each names its line.
        let problems = |text: &str| match Model::parse(text, "m") {
            Err(LakehouseError::Model { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        };
        let found = problems("version = 1\n[rides.extra_columns]\nstatus = \"state\"\nyear = \"y\"\nSurge = \"s\"\nempty = \" \"\n");
        assert_eq!(found.len(), 4, "{found:?}");
        let at_line = |n: usize| found.iter().find(|p| p.starts_with(&format!("line {n}:"))).unwrap_or_else(|| panic!("nothing at line {n}: {found:?}"));
        assert!(at_line(3).contains("is one of silver rides's own columns: map it under [rides.columns]"), "{found:?}");
        assert!(at_line(4).contains("adds to its tables itself"), "{found:?}");
        assert!(at_line(5).contains("lowercase letters"), "{found:?}");
        assert!(at_line(6).contains("source column name is empty"), "{found:?}");
        let found = problems("version = 1\n[rides.extra_columns]\nx = { column = \"x\", optinal = true }\n");
        assert!(found[0].starts_with("line 3:") && found[0].contains("optinal"), "{found:?}");
        let found = problems("version = 1\n[rides.extra_columns]\nx = [\"a\", \"b\"]\n");
        assert!(found[0].starts_with("line 3:") && found[0].contains("comes from one source column"), "{found:?}");
        let found = problems("version = 1\n[[rides.rules]]\ncheck = \"surge >= 1\"\n");
        assert!(found[0].starts_with("line 2:") && found[0].contains("not a column of silver rides"), "{found:?}");
        let found = problems("version = 1\n[users.extra_columns]\nx = \"y\"\n[[users.streams]]\nstream = \"p\"\ntype = \"customer\"\n");
        assert!(found[0].starts_with("line 3:") && found[0].contains("give `extra_columns` in each stream's entry"), "{found:?}");
        assert!(Model::parse("version = 1\n[rides.extra_columns]\nmarket = \"market_code\"\n[gold]\ncity_column = \"market\"\n", "m").is_ok(), "gold's city column may be an extra column");
        let found = problems("version = 1\n[rides]\nother_columns = \"keep\"\n[rides.extra_columns]\nmarket = \"market_code\"\n[gold]\ncity_column = \"market_code\"\n");
        assert!(found[0].starts_with("line 7:") && found[0].contains("kept in silver rides as `market` (extra_columns, line 5)"), "{found:?}");
    }

    #[test]
    fn extra_columns_convert_as_silver_s_own_do() {
        let text = "version = 1\n[rides]\nstream = \"trips\"\n[rides.extra_columns]\ntip = { column = \"tip_cents\", scale = 0.01 }\nparked_at = { column = \"parked\", time_zone = \"Europe/Lisbon\" }\nvehicle = { column = \"vehicle_class\", values = { X = \"comfort\", \"1\" = \"eco\" } }\n";
        let mut model = Model::parse(text, "m.toml").expect("parses");
        let plain = Model::parse(&text.replace(", scale = 0.01", ""), "m.toml").expect("parses");
        assert_ne!(model.hash(), plain.hash(), "a conversion changes silver's rows");
        let trips = schema(&[
            ("id", ArrowType::Int64), ("tip_cents", ArrowType::Int64), ("parked", ArrowType::Timestamp(ArrowUnit::Microsecond, None)), ("vehicle_class", ArrowType::Int64),
        ]);
        assert!(model.check_bronze(&[Some(&schema(&[("id", ArrowType::Int64), ("type", ArrowType::Utf8), ("created_at", ArrowType::Timestamp(ArrowUnit::Microsecond, None))]))], Some(&trips)).iter().all(|p| !p.contains("extra") && !p.starts_with("line 5") && !p.starts_with("line 6") && !p.starts_with("line 7")));
        model.rides.keep(&trips, &RescuedKinds::new(), &crate::silver::OWN_COLUMNS).expect("keeps");
        let kept: Vec<(&str, DataType)> = model.rides.kept.iter().map(|k| (k.name.as_str(), k.dtype.clone())).collect();
        assert_eq!(kept, [
            ("parked_at", DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))),
            ("tip", DataType::Float64),
            ("vehicle", DataType::String),
        ]);
        // 14:30 in Lisbon in July is 13:30 UTC (summer time), in January 14:30.
        let parked = Series::new("parked".into(), [Some(1_782_916_200_000_000i64), Some(1_767_277_800_000_000), None])
            .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
            .expect("times");
        let frame = df!(
            "id" => [1i64, 2, 3],
            "tip_cents" => [Some(250i64), None, Some(5)],
            "vehicle_class" => [Some(1i64), Some(2), None],
        )
        .expect("frame")
        .hstack(&[parked.into_column()])
        .expect("frame");
        let out = model.rides.apply(frame, &["id", "tip", "parked_at", "vehicle"]).expect("applies");
        let tip: Vec<Option<f64>> = out.column("tip").expect("tip").f64().expect("f64").iter().collect();
        assert_eq!(tip, [Some(2.5), None, Some(0.05)]);
        let utc = out.column("parked_at").expect("parked_at").cast(&DataType::Int64).expect("micros");
        assert_eq!(utc.i64().expect("i64").iter().collect::<Vec<_>>(), [Some(1_782_912_600_000_000), Some(1_767_277_800_000_000), None]);
        let vehicle: Vec<Option<&str>> = out.column("vehicle").expect("vehicle").str().expect("text").iter().collect();
        assert_eq!(vehicle, [Some("eco"), Some("2"), None], "values not listed are kept as they are");
        // A conversion the source's type does not allow: check_bronze names the line.
        let wrong = schema(&[("id", ArrowType::Int64), ("tip_cents", ArrowType::Utf8), ("parked", ArrowType::Timestamp(ArrowUnit::Microsecond, Some("UTC".into()))), ("vehicle_class", ArrowType::Utf8)]);
        let mut found = Vec::new();
        model.rides.check(&RIDE_COLUMNS, &[], Some(&wrong), &mut found);
        assert!(found.iter().any(|p| p.starts_with("line 5: rides.tip: scale applies to numbers")), "{found:?}");
        assert!(found.iter().any(|p| p.starts_with("line 6: rides.parked_at: time_zone applies to a DATETIME")), "{found:?}");
        // A scaled column the source made text: stopped, naming the line.
        let rescued: RescuedKinds = [("tip_cents".to_owned(), (RescuedKind::Text, 4))].into();
        match model.rides.clone().keep(&trips, &rescued, &crate::silver::OWN_COLUMNS) {
            Err(e @ LakehouseError::KeptColumnChanged { .. }) => {
                let message = e.to_string();
                assert!(message.contains("m.toml, line 5: extra column `tip`") && message.contains("4 change(s)") && message.contains("numbers (it is scaled)"), "{message}");
            }
            other => panic!("expected KeptColumnChanged, got {other:?}"),
        }
        // Mistakes in the file name their line.
        let problems = |text: &str| match Model::parse(text, "m") {
            Err(LakehouseError::Model { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        };
        let found = problems("version = 1\n[rides.extra_columns]\na = { column = \"a\", scale = 0.01, time_zone = \"UTC\" }\nb = { column = \"b\", time_zone = \"Mars/Olympus\" }\nc = { column = \"c\", scale = 0 }\n");
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].starts_with("line 3:") && found[0].contains("give one of values"), "{found:?}");
        assert!(found[1].starts_with("line 4:") && found[1].contains("not an IANA time zone"), "{found:?}");
        assert!(found[2].starts_with("line 5:") && found[2].contains("finite number other than 0"), "{found:?}");
    }

    #[test]
    fn apply_casts_kept_columns_to_their_widened_type_and_reads_rescued_values() {
        let mut map = Model::parse("version = 1\n[rides]\nother_columns = \"keep\"\n", "m").expect("parses").rides;
        let rides = schema(&[("id", ArrowType::Int64), ("surge", ArrowType::Int64), ("code", ArrowType::Int64)]);
        let rescued: RescuedKinds = [("surge".to_owned(), (RescuedKind::Number, 1)), ("code".to_owned(), (RescuedKind::Text, 1))].into();
        map.keep(&rides, &rescued, &crate::silver::OWN_COLUMNS).expect("keeps");
        let frame = df!(
            "id" => [1i64, 2, 3],
            "surge" => [Some(2i64), None, None],
            "code" => [Some(7i64), None, Some(8)],
            // (bronze stored the string "008" as 8 and rescued its text)
            RESCUED_DATA => [None, Some(r#"{"surge": 1.5, "code": "A-1"}"#), Some(r#"{"code": "008"}"#)],
        )
        .expect("frame");
        let out = map.apply(frame, &["id", "surge", "code"]).expect("applies");
        let surge: Vec<Option<f64>> = out.column("surge").expect("surge").f64().expect("f64").iter().collect();
        assert_eq!(surge, [Some(2.0), Some(1.5), None]);
        let code: Vec<Option<&str>> = out.column("code").expect("code").str().expect("text").iter().collect();
        assert_eq!(code, [Some("7"), Some("A-1"), Some("008")], "text as sent");
    }

    #[test]
    fn apply_renames_maps_values_zones_and_scales() {
        let model = Model::parse(RENAMED, "example").expect("parses");
        let naive = |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("time").and_utc().timestamp_micros();
        // 2024-10-27 02:30 happens twice in Paris (02:30 CEST = 00:30 UTC, then 02:30 CET = 01:30
        // UTC): the earlier is taken. 2024-03-31 02:30 does not exist there: null.
        let times = [naive("2024-07-01 12:00:00"), naive("2024-10-27 02:30:00"), naive("2024-03-31 02:30:00")];
        let frame = df!(
            "trip_id" => [1i64, 2, 3],
            "state" => ["DONE", "CANCELED_BY_DRIVER", "NEW_STATE"],
            "fare_cents" => [1250i64, 0, 99],
            "pickup_ts" => times,
            "_ab_cdc_lsn" => [7i64, 8, 9],
        )
        .expect("frame");
        let frame = frame.lazy().with_column(col("pickup_ts").cast(DataType::Datetime(TimeUnit::Microseconds, None))).collect().expect("cast");
        let out = model.rides.apply(frame, &["id", "status", "fare_amount", "requested_at", "currency", "_ab_cdc_lsn", "_ab_cdc_cursor"]).expect("applies");
        // `currency` comes from `currency_code`, which this bronze lacks: null; a missing CDC
        // column is left out.
        assert_eq!(out.get_column_names(), ["id", "status", "fare_amount", "requested_at", "currency", "_ab_cdc_lsn"]);
        assert_eq!(out.column("currency").expect("currency").null_count(), 3);
        let status: Vec<Option<&str>> = out.column("status").expect("status").str().expect("str").iter().collect();
        assert_eq!(status, [Some("completed"), Some("cancelled"), Some("NEW_STATE")]);
        let fare: Vec<Option<f64>> = out.column("fare_amount").expect("fare").f64().expect("f64").iter().collect();
        assert_eq!(fare, [Some(12.5), Some(0.0), Some(0.99)]);
        let requested = out.column("requested_at").expect("requested");
        assert_eq!(requested.dtype(), &DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)));
        let micros: Vec<Option<i64>> = requested.cast(&DataType::Int64).expect("cast").i64().expect("i64").iter().collect();
        assert_eq!(micros, [Some(naive("2024-07-01 10:00:00")), Some(naive("2024-10-27 00:30:00")), None]);
    }

    #[test]
    fn a_silver_column_bronze_lacks_is_null() {
        let frame = df!("id" => [1i64, 2], "status" => ["completed", "requested"]).expect("frame");
        for model in [Model::default(), Model::parse(RENAMED, "example").expect("parses")] {
            let frame = if model.is_default() { frame.clone() } else { frame.clone().lazy().rename(["id", "status"], ["trip_id", "state"], true).collect().expect("rename") };
            let out = model.rides.apply(frame, &["id", "status", "currency", "requested_at", "_ab_cdc_lsn"]).expect("applies");
            assert_eq!(out.get_column_names(), ["id", "status", "currency", "requested_at"]);
            assert_eq!(out.column("currency").expect("currency").null_count(), 2);
            assert_eq!(out.column("requested_at").expect("t").dtype(), &DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)));
        }
    }

    /// A bronze frame of `trips` in the example model's source names, whose `distance_m` and
    /// `state` columns kept their first types (integers) while the source sent other values,
    /// rescued as bronze rescues them.
    fn drifted(rescued: [Option<&str>; 4]) -> DataFrame {
        df!(
            "trip_id" => [1i64, 2, 3, 4],
            "distance_m" => [Some(1200i64), None, None, None],
            "state" => [Some(4i64), None, Some(1), None],
            RESCUED_DATA => rescued,
        )
        .expect("frame")
    }

    #[test]
    fn values_bronze_rescued_are_read_back_in_silver_s_type() {
        let model = Model::parse("version = 1\n[rides]\nstream = \"trips\"\n[rides.columns]\nid = \"trip_id\"\ndistance_km = { column = \"distance_m\", scale = 0.001 }\nstatus = { column = \"state\", values = { 4 = \"completed\", DONE = \"completed\", 1 = \"requested\" } }\n", "m.toml").expect("parses");
        // Row 2: the source made distance a DECIMAL (a number that is not an integer) and the
        // state a text code; row 3: a DECIMAL sent as text (source-mysql's Java binlog rows), an
        // undeclared field; row 4: a null value, which is no value to recover.
        let frame = drifted([None, Some(r#"{"distance_m":1234.5,"state":"DONE"}"#), Some(r#"{"distance_m":"50.25","other":1}"#), Some(r#"{"distance_m":null}"#)]);
        let out = model.rides.apply(frame, &["id", "distance_km", "status"]).expect("applies");
        assert_eq!(out.get_column_names(), ["id", "distance_km", "status"], "the rescued column is not passed on");
        let km: Vec<Option<f64>> = out.column("distance_km").expect("km").f64().expect("f64").iter().collect();
        assert_eq!(km, [Some(1.2), Some(1.2345), Some(0.05025), None]);
        let status: Vec<Option<&str>> = out.column("status").expect("status").str().expect("str").iter().collect();
        assert_eq!(status, [Some("completed"), Some("completed"), Some("requested"), None]);
        // The default model reads rescued values too (a column from its namesake).
        let frame = df!("id" => [1i64, 2], "fare_amount" => [None, Some(3i64)], RESCUED_DATA => [Some(r#"{"fare_amount":"7.5"}"#), None]).expect("frame");
        let out = Model::default().rides.apply(frame, &["id", "fare_amount"]).expect("applies");
        let fare: Vec<Option<f64>> = out.column("fare_amount").expect("fare").f64().expect("f64").iter().collect();
        assert_eq!(fare, [Some(7.5), Some(3.0)]);
        // Nothing rescued: the frame passes as it is, without the rescued column.
        let frame = drifted([None; 4]);
        let out = model.rides.apply(frame, &["id", "distance_km"]).expect("applies");
        assert_eq!(out.column("distance_km").expect("km").null_count(), 3);
    }

    #[test]
    fn a_value_silver_cannot_take_stops_with_the_column_and_its_line() {
        let text = "version = 1\n[rides]\nstream = \"trips\"\n[rides.columns]\nid = \"trip_id\"\ndistance_km = { column = \"distance_m\", scale = 0.001 }\n";
        let model = Model::parse(text, "m.toml").expect("parses");
        let frame = drifted([None, Some(r#"{"distance_m":"about 3 km"}"#), Some(r#"{"distance_m":"secret-value-7"}"#), None]);
        match model.rides.apply(frame, &["id", "distance_km"]) {
            Err(e @ LakehouseError::ColumnChanged { .. }) => {
                let message = e.to_string();
                for part in ["rides.distance_km", "m.toml, line 6", "`distance_m`", "`trips`", "2 change(s)", "numbers", "rebuild"] {
                    assert!(message.contains(part), "{part} missing from: {message}");
                }
                assert!(!message.contains("secret-value-7") && !message.contains("about 3"), "values never appear: {message}");
                assert_eq!(e.kind(), "schema");
            }
            other => panic!("expected ColumnChanged, got {other:?}"),
        }
        // A key that is no longer an integer, from its namesake in the default model: no line.
        let frame = df!("id" => [None::<i64>], RESCUED_DATA => [Some(r#"{"id":"A-17"}"#)]).expect("frame");
        match Model::default().rides.apply(frame, &["id"]) {
            Err(e @ LakehouseError::ColumnChanged { .. }) => {
                let message = e.to_string();
                assert!(message.contains("(the default model)") && message.contains("integer keys"), "{message}");
            }
            other => panic!("expected ColumnChanged, got {other:?}"),
        }
        // A whole number does fit an integer column (the destination stores numeric text itself;
        // a rescued one is read the same way).
        let frame = df!("id" => [1i64], "duration_s" => [None::<i64>], RESCUED_DATA => [Some(r#"{"duration_s":"600"}"#)]).expect("frame");
        let out = Model::default().rides.apply(frame, &["id", "duration_s"]).expect("applies");
        assert_eq!(out.column("duration_s").expect("d").i64().expect("i64").get(0), Some(600));
    }

    #[test]
    fn a_column_the_source_dropped_is_a_problem_unless_optional() {
        let text = "version = 1\n[rides]\nstream = \"trips\"\n[rides.columns]\ndistance_km = \"distance_m\"\ncustomer_rating = { column = \"rider_stars\", optional = true }\nduration_s = \"duration_s\"\n";
        let model = Model::parse(text, "m.toml").expect("parses");
        let absent = AbsentColumns::from([
            ("distance_m".to_owned(), vec![(7, None)]),
            ("rider_stars".to_owned(), vec![(9, None)]),
            ("not_read".to_owned(), vec![(3, None)]),
            ("duration_s".to_owned(), vec![(4, Some(6))]),
        ]);
        // A rebuild reads every window.
        let found = model.rides.absent_problems(&absent, None);
        assert_eq!(found.len(), 2, "{found:?}");
        for part in ["line 5: rides.distance_km", "`distance_m`", "`trips`", "no longer sends (not in its catalog since bronze version 7)", "add `optional = true` to its entry at line 5"] {
            assert!(found[0].contains(part), "{part} missing from {found:?}");
        }
        // Listed under its own name: still its own line; the window is closed.
        assert!(found[1].starts_with("line 7: rides.duration_s comes from `duration_s`") && found[1].contains("did not send in bronze versions 4 to 5"), "{found:?}");
        // An increment after version 4 reads version 5, in the window; after 5, it does not.
        assert_eq!(model.rides.absent_problems(&absent, Some(4)).len(), 2);
        assert_eq!(model.rides.absent_problems(&absent, Some(5)).len(), 1);
        // From its namesake, not listed: the stream's line, and how to list it.
        let found = model.rides.absent_problems(&AbsentColumns::from([("Pickup_Lat".to_owned(), vec![(2, None)])]), None);
        assert!(found.len() == 1 && found[0].starts_with("line 3: rides.pickup_lat comes from `Pickup_Lat`") && found[0].contains("write pickup_lat = { column = \"Pickup_Lat\", optional = true }"), "{found:?}");
        assert!(model.users.absent_problems(&absent, None).is_empty());
        // Optional does not change what silver's rows are: the hash stays.
        let without = Model::parse(&text.replace(", optional = true", ""), "m.toml").expect("parses");
        assert_eq!(model.hash(), without.hash());
        let identity = Model::parse("version = 1\n[rides.columns]\ndriver_rating = { column = \"driver_rating\", optional = true }\n", "m.toml").expect("parses");
        assert!(identity.is_default() && identity.hash() == DEFAULT_MODEL_HASH);
        assert!(identity.rides.absent_problems(&AbsentColumns::from([("driver_rating".to_owned(), vec![(1, None)])]), None).is_empty());
        // Not for the columns silver needs.
        let found = problems("version = 1\n[rides.columns]\ncustomer_id = { column = \"rider\", optional = true }\n");
        assert!(found.len() == 1 && found[0].starts_with("line 3: rides.customer_id cannot be optional"), "{found:?}");
    }

    #[test]
    fn silver_tables_with_other_column_types_are_found() {
        let fine = schema(&[("id", ArrowType::Int64), ("phone", ArrowType::Utf8), ("created_at", ArrowType::Timestamp(ArrowUnit::Microsecond, Some("UTC".into())))]);
        assert_eq!(stale_column(&fine, &USER_COLUMNS), None);
        let old = schema(&[("id", ArrowType::Int64), ("phone", ArrowType::Int64)]);
        assert_eq!(stale_column(&old, &USER_COLUMNS).as_deref(), Some("phone"));
        let rides = schema(&[("id", ArrowType::Int64), ("duration_s", ArrowType::Float64), ("distance_km", ArrowType::Int64)]);
        assert_eq!(stale_column(&rides, &RIDE_COLUMNS).as_deref(), Some("distance_km"), "integer columns keep whatever type they have");
    }

    #[test]
    fn two_silver_columns_from_one_source_recover_each_in_its_own_type() {
        // `code` fills both a text column and a number column.
        let model = Model::parse("version = 1\n[rides.columns]\ncurrency = \"code\"\nfare_amount = \"code\"\n", "m.toml").expect("parses");
        let frame = df!("id" => [1i64, 2], "code" => [Some(5i64), None], RESCUED_DATA => [None, Some(r#"{"code":"7.25"}"#)]).expect("frame");
        let out = model.rides.apply(frame, &["id", "currency", "fare_amount"]).expect("applies");
        let currency: Vec<Option<&str>> = out.column("currency").expect("c").str().expect("str").iter().collect();
        assert_eq!(currency, [Some("5"), Some("7.25")]);
        let fare: Vec<Option<f64>> = out.column("fare_amount").expect("f").f64().expect("f64").iter().collect();
        assert_eq!(fare, [Some(5.0), Some(7.25)]);
        // A rescued field named as the source sent it (`fare amount`), read for the column bronze
        // named `fare_amount`.
        let frame = df!("id" => [1i64], "fare_amount" => [None::<i64>], RESCUED_DATA => [Some(r#"{"fare amount":12.5}"#)]).expect("frame");
        let out = Model::default().rides.apply(frame, &["id", "fare_amount"]).expect("applies");
        assert_eq!(out.column("fare_amount").expect("f").f64().expect("f64").get(0), Some(12.5));
    }

    #[test]
    fn apply_can_swap_names() {
        let model = Model::parse("version = 1\n[users.columns]\nname = \"email\"\nemail = \"name\"\n", "m").expect("parses");
        let frame = df!("name" => ["Ana"], "email" => ["ana@x"]).expect("frame");
        let out = model.users.apply(frame, &["name", "email"]).expect("applies");
        assert_eq!(out.column("name").expect("name").str().expect("str").get(0), Some("ana@x"));
        assert_eq!(out.column("email").expect("email").str().expect("str").get(0), Some("Ana"));
    }

    #[test]
    fn published_schema_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/model.schema.json");
        let current = json_schema();
        if std::env::var_os("RIDELAKE_WRITE_MODEL_SCHEMA").is_some() {
            let text = serde_json::to_string_pretty(&current).expect("schema") + "\n";
            std::fs::write(&path, text).expect("writes models/model.schema.json");
        }
        let published: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("models/model.schema.json")).expect("JSON");
        assert_eq!(published, current, "models/model.schema.json is stale: rerun this test with RIDELAKE_WRITE_MODEL_SCHEMA=1");
    }
}
