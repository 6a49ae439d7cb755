//! The model file, as a property: for random models (renamed streams and columns, swapped column
//! names, value maps for statuses and roles, fares in cents and distances in metres, local time
//! zones, extra source columns, text keys for users, rides or both: UUID-like codes whose byte
//! order is not their numbers', composite keys of two source columns, text with `|` and `\` in
//! it or integers; or users from two source tables, one per role, each numbering its own users),
//! a history translated into the model's source schema and built
//! through the model gives the same silver as the original history built with the default model.
//! The translated lake is built incrementally (a run after every sync) and the original once, so
//! the property also says incremental = rebuild (and sliced = whole: the translated lake's runs
//! are cut into key ranges) under a model; with text or composite keys, both lakes' silver
//! and gold agree once the original's keys are written as the variant's codes (and a composite
//! key's columns, which silver keeps, added). Bronze is written
//! by the real
//! connector pipeline. Also: `validate` on a lake, and a changed model stopping a run until a
//! rebuild is asked for.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{NaiveDateTime, TimeZone as _};
use common::{NS, Rng, assert_same, generate, layout, sync, text_key};
use polars::prelude::*;
use ridelake_core::generator::{GeneratorConfig, configured_catalog};
use ridelake_lakehouse::LakehouseError;
use ridelake_lakehouse::gold::{GOLD_TABLES, build_gold};
use ridelake_lakehouse::model::{self, Model};
use ridelake_lakehouse::silver::{SilverOptions, build_silver, build_silver_with};
use serde_json::{Value, json};

const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6f";
const STATUSES: [&str; 5] = ["requested", "accepted", "in_progress", "completed", "cancelled"];
const USER_TEXT: [&str; 4] = ["name", "email", "phone", "city"];
/// The extra columns a variant's model may keep (silver table, silver name, source column): the
/// translated history's columns silver otherwise leaves out ([`Variant::translate`]).
const EXTRA: [(&str, &str, &str); 2] = [("users", "score", "internal_score"), ("rides", "note", "legacy_note")];


/// A random source schema and the model that maps it back.
struct Variant {
    streams: BTreeMap<&'static str, String>,
    /// (silver table, silver column) -> source column.
    columns: BTreeMap<(&'static str, String), String>,
    statuses: BTreeMap<String, String>,
    types: BTreeMap<String, String>,
    zone: chrono_tz::Tz,
    cents: bool,
    metres: bool,
    toml: String,
    /// Wall-clock times only a zone with clock changes has (see [`Variant::odd_times`]).
    odd: Option<OddTimes>,
    /// The users' keys (and so the rides' links): integers, text codes ([`text_key`]) or
    /// composite.
    users_key: KeyKind,
    /// The rides' keys.
    rides_key: KeyKind,
    /// With [`KeyKind::Roles`]: each user's role in the whole history ([`Variant::learn_roles`]).
    roles: BTreeMap<i64, &'static str>,
    /// The silver tables' names the model gives (users, rides), when it names them.
    names: Option<(&'static str, &'static str)>,
    /// What partitions silver users: `created_at` (the default), `updated_at` or `none`.
    users_partition: &'static str,
    /// What partitions silver rides: `requested_at` (the default), `created_at`, `updated_at` or
    /// `none`.
    rides_partition: &'static str,
    /// Whether the model keeps two of the source's other columns under names of its own
    /// (`extra_columns`: [`EXTRA`]).
    extra: bool,
}

/// How a variant's source holds a table's keys (the original history's are integers).
#[derive(Debug, Clone, Copy, PartialEq)]
enum KeyKind {
    Int,
    /// Text codes ([`text_key`]).
    Text,
    /// Two source columns ([`KeyKind::parts`]).
    Composite,
    /// Users only: two source tables, one per role (`[[users.streams]]`), each numbering its
    /// users with the original ids: silver's key is `role|id`.
    Roles,
}

impl KeyKind {
    fn random(rng: &mut Rng) -> KeyKind {
        [KeyKind::Int, KeyKind::Text, KeyKind::Composite][rng.below(3)]
    }

    /// A users key kind, two tables included.
    fn random_for_users(rng: &mut Rng) -> KeyKind {
        [KeyKind::Int, KeyKind::Text, KeyKind::Composite, KeyKind::Roles][rng.below(4)]
    }

    /// A composite key's two source values for the original's integer `id` (a one-to-one
    /// mapping): the users' a region holding `|` or `\` (escaped in silver's key) and an
    /// integer, the rides' an integer zone and a zero-padded text number.
    fn parts(whose: &str, id: i64) -> (Value, Value) {
        if whose == "users" {
            (json!(["n|", "s\\x", "east"][id.rem_euclid(3) as usize]), json!(id.div_euclid(3)))
        } else {
            (json!(id.rem_euclid(5)), json!(format!("{:05}", id.div_euclid(5))))
        }
    }

    /// Silver's key for the original's `id` in this kind (`whose` keys: users or rides; `role`:
    /// the user's, which [`KeyKind::Roles`] keys with).
    fn code(self, whose: &str, id: i64, role: &str) -> String {
        match self {
            KeyKind::Int => id.to_string(),
            KeyKind::Roles => format!("{role}|{id}"),
            KeyKind::Text => text_key(whose, id),
            KeyKind::Composite => {
                let text = |v: Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                let (a, b) = Self::parts(whose, id);
                let escape = |s: String| s.replace('\\', "\\\\").replace('|', "\\|");
                format!("{}|{}", escape(text(a)), escape(text(b)))
            }
        }
    }
}

/// A wall-clock time of the zone's repeated hour (its earlier instant, as silver reads it back)
/// and one of its skipped hour (read back as null).
struct OddTimes {
    repeated: String,
    repeated_earlier_utc: String,
    skipped: String,
}

impl Variant {
    fn random(seed: u64) -> Variant {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let streams = BTreeMap::from([
            ("users", ["accounts", "people", "users"][rng.below(3)].to_owned()),
            ("rides", ["trips", "journeys", "rides"][rng.below(3)].to_owned()),
        ]);
        let mut columns = BTreeMap::new();
        for (table, names) in [("users", &model::USER_COLUMNS[..]), ("rides", &model::RIDE_COLUMNS[..])] {
            for name in names {
                let source = if rng.chance(0.6) { format!("src{}_{name}", rng.below(100)) } else { (*name).to_owned() };
                columns.insert((table, (*name).to_owned()), source);
            }
        }
        // Sometimes two text columns trade names: the source's `email` holds the name, …
        if rng.chance(0.5) {
            let (a, b) = (USER_TEXT[rng.below(4)], USER_TEXT[rng.below(4)]);
            if a != b {
                columns.insert(("users", a.to_owned()), b.to_owned());
                columns.insert(("users", b.to_owned()), a.to_owned());
            }
        }
        let mut statuses = BTreeMap::new();
        if rng.chance(0.7) {
            for (i, s) in STATUSES.iter().enumerate() {
                statuses.insert((*s).to_owned(), if rng.chance(0.5) { format!("{}_{i}", s.to_uppercase()) } else { format!("{}", 10 + i) });
            }
        }
        let mut types = BTreeMap::new();
        if rng.chance(0.7) {
            types.insert("customer".to_owned(), ["rider", "passenger", "C"][rng.below(3)].to_owned());
            types.insert("driver".to_owned(), ["driver_partner", "chauffeur", "D"][rng.below(3)].to_owned());
        }
        let zone = [chrono_tz::UTC, chrono_tz::Europe::Paris, chrono_tz::America::Sao_Paulo, chrono_tz::Asia::Kolkata, chrono_tz::America::New_York][rng.below(5)];
        let (cents, metres) = (rng.chance(0.6), rng.chance(0.6));
        let (users_key, rides_key) = match seed {
            1 => (KeyKind::Text, KeyKind::Text),
            2 => (KeyKind::Text, KeyKind::Int),
            3 => (if rng.chance(0.5) { KeyKind::Text } else { KeyKind::Int }, KeyKind::Text),
            4 => (KeyKind::Int, KeyKind::Int),
            5 => (KeyKind::Composite, KeyKind::Composite),
            6 => (KeyKind::Composite, KeyKind::Int),
            8 => (KeyKind::Roles, KeyKind::Int),
            9 => (KeyKind::Roles, KeyKind::Composite),
            _ => (KeyKind::random_for_users(&mut rng), KeyKind::random(&mut rng)),
        };
        // (drawn last: the earlier draws of a seed stay what they were)
        let names = rng.chance(0.5).then(|| [("members", "journeys"), ("riders", "trips_v2"), ("users_silver", "rides")][rng.below(3)]);
        let users_partition = match seed {
            8 => "none",
            5 => "updated_at",
            _ => ["created_at", "updated_at", "none"][rng.below(3)],
        };
        // (by seed: every draw of a seed stays what it was)
        let extra = matches!(seed, 2 | 6 | 9) || (seed >= 100 && seed % 2 == 0);
        let rides_partition = match seed {
            3 => "updated_at",
            6 => "none",
            9 => "created_at",
            _ => ["requested_at", "requested_at", "created_at", "updated_at", "none"][rng.below(5)],
        };
        let mut variant = Variant {
            streams, columns, statuses, types, zone, cents, metres, toml: String::new(), odd: None, users_key, rides_key, roles: BTreeMap::new(), names, users_partition, rides_partition, extra,
        };
        variant.odd = variant.odd_times();
        variant.toml = variant.model_toml();
        variant
    }

    fn source(&self, table: &'static str, column: &str) -> String {
        self.columns.get(&(table, column.to_owned())).cloned().unwrap_or_else(|| column.to_owned())
    }

    fn is_time(column: &str) -> bool {
        column.ends_with("_at")
    }

    fn model_toml(&self) -> String {
        let mut out = String::from("# generated by tests/silver_model.rs\nversion = 1\n");
        // Silver users' own settings, under [users] (also when users come from two tables).
        let mut own = Vec::new();
        if let Some((users, _)) = self.names {
            own.push(format!("table = \"{users}\""));
        }
        if self.users_partition != "created_at" {
            own.push(format!("partition = \"{}\"", self.users_partition));
        }
        if self.users_key == KeyKind::Roles && !own.is_empty() {
            out += &format!("\n[users]\n{}\n", own.join("\n"));
        }
        let tables: Vec<(&str, Option<&str>)> = if self.users_key == KeyKind::Roles {
            vec![("users", Some("customer")), ("users", Some("driver")), ("rides", None)]
        } else {
            vec![("users", None), ("rides", None)]
        };
        for (table, role) in tables {
            match role {
                Some(role) => out += &format!("\n[[users.streams]]\nstream = \"{}\"\ntype = \"{role}\"\n\n[users.streams.columns]\nid = \"{}\"\n", Self::role_stream(role), Self::role_key(role)),
                None => {
                    out += &format!("\n[{table}]\nstream = \"{}\"\n", self.streams[table]);
                    match (table, self.names) {
                        ("users", _) => own.iter().for_each(|line| out += &format!("{line}\n")),
                        (_, Some((_, rides))) => out += &format!("table = \"{rides}\"\n"),
                        _ => {}
                    }
                    if table == "rides" && self.rides_partition != "requested_at" {
                        out += &format!("partition = \"{}\"\n", self.rides_partition);
                    }
                    out += &format!("\n[{table}.columns]\n");
                }
            }
            let names: &[&str] = if table == "users" { &model::USER_COLUMNS } else { &model::RIDE_COLUMNS };
            for name in names {
                if role.is_some() && ["id", "type"].contains(name) {
                    continue;
                }
                if let Some((a, b)) = self.composite_columns(table, name) {
                    out += &format!("{name} = [\"{a}\", \"{b}\"]\n");
                    continue;
                }
                let source = self.source(table, name);
                let mut parts = vec![format!("column = \"{source}\"")];
                let values = match (table, *name) {
                    ("users", "type") => &self.types,
                    ("rides", "status") => &self.statuses,
                    _ => &BTreeMap::new(),
                };
                if !values.is_empty() {
                    let pairs: Vec<String> = values.iter().map(|(silver, src)| format!("\"{src}\" = \"{silver}\"")).collect();
                    parts.push(format!("values = {{ {} }}", pairs.join(", ")));
                }
                if Self::is_time(name) && self.zone != chrono_tz::UTC {
                    parts.push(format!("time_zone = \"{}\"", self.zone.name()));
                }
                if (*name == "fare_amount" && self.cents) || (*name == "distance_km" && self.metres) {
                    parts.push(format!("scale = {}", if *name == "fare_amount" { "0.01" } else { "0.001" }));
                }
                out += &format!("{name} = {{ {} }}\n", parts.join(", "));
            }
            if self.extra {
                let (_, silver, source) = EXTRA.iter().find(|(t, _, _)| *t == table).expect("an extra column per table");
                let section = if role.is_some() { "users.streams" } else { table };
                out += &format!("\n[{section}.extra_columns]\n{silver} = \"{source}\"\n");
            }
        }
        out
    }

    /// The silver value a zoned wall-clock time will be read back as (the earlier instant when
    /// the local time is ambiguous), as naive UTC text.
    fn round_trip_time(&self, utc_text: &str) -> (String, String) {
        let utc = NaiveDateTime::parse_from_str(utc_text, TIME_FORMAT).expect("generator time");
        let local = self.zone.from_utc_datetime(&utc).naive_local();
        let back = self.zone.from_local_datetime(&local).earliest().expect("a local time read from UTC exists").naive_utc();
        (local.format(TIME_FORMAT).to_string(), back.format(TIME_FORMAT).to_string())
    }

    /// The first repeated and skipped wall-clock times of the variant's zone from 2024 on (every
    /// 15 minutes is tried), when it changes its clocks.
    fn odd_times(&self) -> Option<OddTimes> {
        let start = NaiveDateTime::parse_from_str("2024-01-01T00:00:00.000000", TIME_FORMAT).ok()?;
        let steps = (0..4 * 24 * 366).map(|i| start + chrono::Duration::minutes(15 * i));
        let (mut repeated, mut skipped) = (None, None);
        for local in steps {
            match self.zone.from_local_datetime(&local) {
                chrono::LocalResult::Ambiguous(earlier, _) if repeated.is_none() => repeated = Some((local, earlier.naive_utc())),
                chrono::LocalResult::None if skipped.is_none() => skipped = Some(local),
                _ => {}
            }
        }
        let ((local, earlier), gap) = (repeated?, skipped?);
        Some(OddTimes {
            repeated: local.format(TIME_FORMAT).to_string(),
            repeated_earlier_utc: earlier.format(TIME_FORMAT).to_string(),
            skipped: gap.format(TIME_FORMAT).to_string(),
        })
    }

    /// One generator line as the variant's source emits it, and the original line adjusted to
    /// what the variant can express (times and rounded units), so that both give the same silver.
    fn translate(&self, line: &str) -> (String, String) {
        let mut original: Value = serde_json::from_str(line).expect("json");
        if original["type"] != "RECORD" {
            return (line.to_owned(), line.to_owned());
        }
        let table: &'static str = if original["record"]["stream"] == "users" { "users" } else { "rides" };
        let mut translated = original.clone();
        translated["record"]["stream"] = json!(self.streams[table]);
        // Two users tables: each change goes to its user's role's table, which holds no type (the
        // original's type is set to that role, so that neither side sets a change aside for it).
        let role = (table == "users" && self.users_key == KeyKind::Roles).then(|| {
            let id = as_id(&original["record"]["data"]["id"]);
            let role = id.and_then(|id| self.roles.get(&id).copied()).unwrap_or("customer");
            translated["record"]["stream"] = json!(Self::role_stream(role));
            original["record"]["data"]["type"] = json!(role);
            role
        });
        let data = original["record"]["data"].as_object_mut().expect("data");
        let mut out = serde_json::Map::new();
        for (key, value) in data.iter_mut() {
            let mut source_value = value.clone();
            if Self::is_time(key) && !key.starts_with("_ab_") {
                if let Some(text) = value.as_str() {
                    let (local, back) = self.round_trip_time(text);
                    source_value = json!(local);
                    *value = json!(back);
                }
            }
            // Some requests fall in the hour clocks repeat (the earlier instant is meant) or skip
            // (no such time: null, so the change breaks a rule on both sides).
            if let (Some(odd), "requested_at", true) = (&self.odd, key.as_str(), value.is_string()) {
                match line.len() % 23 {
                    0 => {
                        source_value = json!(odd.repeated);
                        *value = json!(odd.repeated_earlier_utc);
                    }
                    11 => {
                        source_value = json!(odd.skipped);
                        *value = Value::Null;
                    }
                    _ => {}
                }
            }
            if key == "fare_amount" && self.cents {
                if let Some(x) = value.as_f64().or_else(|| value.as_str().and_then(|s| s.parse().ok())) {
                    let cents = (x * 100.0).round() as i64;
                    source_value = json!(cents);
                    *value = json!(cents as f64 / 100.0);
                }
            }
            if key == "distance_km" && self.metres {
                if let Some(x) = value.as_f64().or_else(|| value.as_str().and_then(|s| s.parse().ok())) {
                    let metres = (x * 1000.0).round() as i64;
                    source_value = json!(metres);
                    *value = json!(metres as f64 / 1000.0);
                }
            }
            let id = value.as_i64().or_else(|| value.as_str().and_then(|s| s.parse().ok()));
            if let Some(role) = role {
                match key.as_str() {
                    "type" => continue,
                    "id" => {
                        out.insert(Self::role_key(role).to_owned(), value.clone());
                        continue;
                    }
                    _ => {}
                }
            }
            match self.key_of(table, key) {
                Some((KeyKind::Text, whose)) => {
                    if let Some(id) = id {
                        source_value = json!(text_key(whose, id));
                    }
                }
                Some((KeyKind::Composite, whose)) => {
                    let (a, b) = self.composite_columns(table, key).expect("composite");
                    let (x, y) = id.map_or((Value::Null, Value::Null), |id| KeyKind::parts(whose, id));
                    out.insert(a, x);
                    out.insert(b, y);
                    continue;
                }
                _ => {}
            }
            let values = match (table, key.as_str()) {
                ("users", "type") => &self.types,
                ("rides", "status") => &self.statuses,
                _ => &BTreeMap::new(),
            };
            if let Some(mapped) = value.as_str().and_then(|v| values.get(v)) {
                source_value = json!(mapped);
            }
            let source = if key.starts_with("_ab_") { key.clone() } else { self.source(table, key) };
            out.insert(source, source_value);
        }
        out.insert("legacy_note".to_owned(), json!("kept in bronze, not in silver"));
        out.insert("internal_score".to_owned(), json!(3));
        translated["record"]["data"] = Value::Object(out);
        (original.to_string(), translated.to_string())
    }

    /// The source table of the users of `role` ([`KeyKind::Roles`]).
    fn role_stream(role: &str) -> &'static str {
        if role == "customer" { "passengers" } else { "chauffeurs" }
    }

    /// The key column of that table.
    fn role_key(role: &str) -> &'static str {
        if role == "customer" { "passenger_no" } else { "chauffeur_no" }
    }

    /// Learns each user's role from `lines` (the original history), for [`KeyKind::Roles`]: the
    /// type of its changes (the history changes no user's type then).
    fn learn_roles(&mut self, lines: &[String]) {
        for line in lines {
            let message: Value = serde_json::from_str(line).expect("json");
            let data = &message["record"]["data"];
            if message["type"] == "RECORD" && message["record"]["stream"] == "users" {
                if let (Some(id), Some(role @ ("customer" | "driver"))) = (as_id(&data["id"]), data["type"].as_str()) {
                    let role = if role == "driver" { "driver" } else { "customer" };
                    assert!(*self.roles.entry(id).or_insert(role) == role, "user {id} changes its type");
                }
            }
        }
    }

    /// The columns of the original's silver [`Variant::with_keys`] adds: a composite key's
    /// columns and, with two users tables, their key columns and the rides' renamed links.
    fn is_key_column(&self, column: &str) -> bool {
        column.contains("_part_")
            || (self.users_key == KeyKind::Roles && ([Self::role_key("customer"), Self::role_key("driver")].contains(&column) || ["customer_id", "driver_id"].iter().any(|c| self.source("rides", c) == column)))
    }

    /// The kind of key column `column` of `table` holds and whose keys they are (users or
    /// rides), when it is a key column.
    fn key_of(&self, table: &str, column: &str) -> Option<(KeyKind, &'static str)> {
        match (table, column) {
            ("users", "id") | ("rides", "customer_id" | "driver_id") => Some((self.users_key, "users")),
            ("rides", "id") => Some((self.rides_key, "rides")),
            _ => None,
        }
    }

    /// The two source columns of key column `column` of `table`, when its key is composite.
    fn composite_columns(&self, table: &str, column: &str) -> Option<(String, String)> {
        let (kind, _) = self.key_of(table, column)?;
        (kind == KeyKind::Composite).then(|| {
            let prefix = match (table, column) {
                ("users", _) => "acct",
                (_, "customer_id") => "rider",
                (_, "driver_id") => "chauffeur",
                _ => "trip",
            };
            (format!("{prefix}_part_a"), format!("{prefix}_part_b"))
        })
    }

    /// Whether a silver key of `table` holds text (codes or composite keys).
    fn text_keys(&self, table: &str, column: &str) -> bool {
        self.key_of(table, column).is_some_and(|(kind, _)| kind != KeyKind::Int)
    }

    /// `frame` (silver or gold table `table` of the original lake) with its keys written as this
    /// variant's codes, and the columns of its composite keys (silver keeps them) added from the
    /// original keys, sorted again as [`common::read_table`] sorts.
    fn with_keys(&self, table: &str, frame: DataFrame) -> DataFrame {
        if self.users_key == KeyKind::Int && self.rides_key == KeyKind::Int {
            return frame;
        }
        let ids = |column: &Column| -> Vec<Option<i64>> { column.cast(&DataType::Int64).expect("integer keys").i64().expect("i64").iter().collect() };
        let mut frame = frame;
        let logical = if table == "users" { "users" } else { "rides" };
        for name in ["id", "customer_id", "driver_id"] {
            let Ok(column) = frame.column(name) else { continue };
            let of: Vec<&'static str> = if table == "quarantine" {
                // Both tables' keys in one column: text when either table's is.
                let tables = frame.column("table").expect("table").str().expect("text");
                tables.iter().map(|t| if t == Some("users") { "users" } else { "rides" }).collect()
            } else if self.text_keys(logical, name) {
                vec![logical; frame.height()]
            } else {
                continue;
            };
            let ids = ids(column);
            // The role each key is of (two users tables key users by it): a user's type, the
            // role a ride's link points to.
            let types: Vec<Option<String>> = match frame.column("type") {
                Ok(t) if table == "users" => t.str().expect("text").iter().map(|v| v.map(str::to_owned)).collect(),
                _ => vec![None; frame.height()],
            };
            let role_of = |row: usize, id: i64| -> String {
                match name {
                    "customer_id" => "customer".to_owned(),
                    "driver_id" => "driver".to_owned(),
                    _ => types[row].clone().or_else(|| self.roles.get(&id).map(|r| (*r).to_owned())).unwrap_or_else(|| "customer".to_owned()),
                }
            };
            let codes: Vec<Option<String>> = ids.iter().zip(&of).enumerate().map(|(row, (id, table))| {
                let (kind, whose) = self.key_of(table, name).expect("key");
                id.map(|id| kind.code(whose, id, &role_of(row, id)))
            }).collect();
            // Silver keeps the key column of each users table, and a ride's renamed link columns.
            if self.users_key == KeyKind::Roles && table != "quarantine" && !table.starts_with("gold/") {
                let mut added: Vec<(String, Vec<Option<i64>>)> = Vec::new();
                if logical == "users" && name == "id" {
                    for role in ["customer", "driver"] {
                        let values = ids.iter().enumerate().map(|(row, id)| id.filter(|id| role_of(row, *id) == role)).collect();
                        added.push((Self::role_key(role).to_owned(), values));
                    }
                } else if logical == "rides" && name != "id" && self.source("rides", name) != name {
                    added.push((self.source("rides", name), ids.clone()));
                }
                for (column, values) in added {
                    frame.with_column(Column::new(column.into(), values)).expect("key column");
                }
            }
            if table != "quarantine" && !table.starts_with("gold/") {
                if let Some((a, b)) = self.composite_columns(logical, name) {
                    let (_, whose) = self.key_of(logical, name).expect("key");
                    let parts: Vec<(Value, Value)> = ids.iter().map(|id| id.map_or((Value::Null, Value::Null), |id| KeyKind::parts(whose, id))).collect();
                    // (each column's type from a key's values: a column may hold only nulls)
                    let (x, y) = KeyKind::parts(whose, 7);
                    for (part, sample, values) in [(a, x, parts.iter().map(|p| p.0.clone()).collect::<Vec<_>>()), (b, y, parts.iter().map(|p| p.1.clone()).collect())] {
                        let column = if sample.is_string() {
                            Column::new(part.into(), values.iter().map(|v| v.as_str().map(str::to_owned)).collect::<Vec<_>>())
                        } else {
                            Column::new(part.into(), values.iter().map(Value::as_i64).collect::<Vec<_>>())
                        };
                        frame.with_column(column).expect("part");
                    }
                }
            }
            frame.with_column(Column::new(name.into(), codes)).expect("codes");
        }
        common::sorted_by_key(frame)
    }

    /// The generator's catalog in the variant's source schema.
    fn catalog(&self) -> String {
        let mut catalog: Value = serde_json::from_str(&configured_catalog(NS, "append", 1, 0, 1)).expect("catalog");
        for stream in catalog["streams"].as_array_mut().expect("streams") {
            let table: &'static str = if stream["stream"]["name"] == "users" { "users" } else { "rides" };
            stream["stream"]["name"] = json!(self.streams[table]);
            let properties = stream["stream"]["json_schema"]["properties"].as_object().expect("properties").clone();
            let mut renamed = serde_json::Map::new();
            for (key, mut schema) in properties {
                if (key == "fare_amount" && self.cents) || (key == "distance_km" && self.metres) {
                    schema = json!({"type": "number", "airbyte_type": "integer"});
                }
                if let Some((a, b)) = self.composite_columns(table, &key) {
                    let (x, y) = KeyKind::parts(self.key_of(table, &key).expect("key").1, 7);
                    let type_of = |v: &Value| if v.is_string() { json!({"type": "string"}) } else { json!({"type": "number", "airbyte_type": "integer"}) };
                    renamed.insert(a, type_of(&x));
                    renamed.insert(b, type_of(&y));
                    continue;
                }
                // (text codes; two users tables number their users as integers)
                if self.key_of(table, &key).is_some_and(|(kind, _)| kind == KeyKind::Text) {
                    schema = json!({"type": "string"});
                }
                let source = if key.starts_with("_ab_") { key } else { self.source(table, &key) };
                renamed.insert(source, schema);
            }
            renamed.insert("legacy_note".to_owned(), json!({"type": "string"}));
            renamed.insert("internal_score".to_owned(), json!({"type": "number", "airbyte_type": "integer"}));
            stream["stream"]["json_schema"]["properties"] = Value::Object(renamed);
            let key = match self.composite_columns(table, "id") {
                Some((a, b)) => json!([[a], [b]]),
                None => json!([[self.source(table, "id")]]),
            };
            stream["primary_key"] = key.clone();
            stream["stream"]["source_defined_primary_key"] = key;
        }
        if self.users_key == KeyKind::Roles {
            // One users table per role: no type, keyed by its own column.
            let streams = catalog["streams"].as_array_mut().expect("streams");
            let users = streams.iter().position(|s| s["stream"]["name"] == json!(self.streams["users"])).expect("users stream");
            let users = streams.remove(users);
            for role in ["customer", "driver"] {
                let mut stream = users.clone();
                stream["stream"]["name"] = json!(Self::role_stream(role));
                let properties = stream["stream"]["json_schema"]["properties"].as_object_mut().expect("properties");
                properties.remove(&self.source("users", "type"));
                properties.remove(&self.source("users", "id"));
                properties.insert(Self::role_key(role).to_owned(), json!({"type": "number", "airbyte_type": "integer"}));
                stream["primary_key"] = json!([[Self::role_key(role)]]);
                stream["stream"]["source_defined_primary_key"] = json!([[Self::role_key(role)]]);
                streams.push(stream);
            }
        }
        catalog.to_string()
    }
}

const TABLES: [&str; 5] = common::SILVER;

/// A key as the generator sends it (an integer, at times as text).
fn as_id(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

async fn read(lake: &Path, table: &str) -> DataFrame {
    common::read_table(lake, table).await
}

async fn check_variant(seed: u64) {
    let mut variant = Variant::random(seed);
    let context = format!("seed {seed}, model:\n{}", variant.toml);
    let model = Model::parse(&variant.toml, "generated").unwrap_or_else(|e| panic!("{e}\n{context}"));
    // (with a users table per role, a user keeps its role: the type changes of the history
    // would be a move from one table to the other, which the original's silver does not do)
    let roles = variant.users_key == KeyKind::Roles;
    let lines = generate(GeneratorConfig {
        type_change_rate: if roles { 0.0 } else { GeneratorConfig::default().type_change_rate },
        seed,
        users: 40,
        rides: 200,
        changes: 1500,
        state_every: 400,
        late_user_rate: 0.3,
        bad_null_rate: 0.02,
        // Starts a day before clocks change in Europe (spring or autumn, with its repeated hour).
        start_epoch_s: if seed % 2 == 0 { 1_711_800_000 } else { 1_729_900_000 },
        ..Default::default()
    });
    if roles {
        variant.learn_roles(&lines);
    }
    let (original, translated): (Vec<String>, Vec<String>) = lines.iter().map(|l| variant.translate(l)).unzip();
    let (plain, mapped) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let source_catalog = variant.catalog();
    let default_catalog = configured_catalog(NS, "append", 1, 0, 1);
    let mut cuts = vec![0, original.len() / 3, original.len() * 2 / 3, original.len()];
    if roles {
        // Without type changes, a ride waits for its user only when a sync brings the ride
        // before the user: syncs also end right after the first rides whose customer comes later.
        cuts.extend(rides_before_their_customer(&original).into_iter().take(3).map(|at| at + 1));
        cuts.sort_unstable();
        cuts.dedup();
    }
    let mut waited = 0;
    for (k, pair) in cuts.windows(2).enumerate() {
        sync(plain.path(), &default_catalog, &original[pair[0]..pair[1]]).await;
        sync(mapped.path(), &source_catalog, &translated[pair[0]..pair[1]]).await;
        // The first build and the increments in slices (key ranges: text ranges for text keys).
        let options = SilverOptions { slices: Some([3, 2, 4][k % 3]), ..Default::default() };
        let report = build_silver_with(&layout(mapped.path(), Some(&model)), &options).await.unwrap_or_else(|e| panic!("silver through the model: {e}\n{context}"));
        // (a sync of a few lines, which ends just after a ride, is too small to cut)
        assert!(report.slices > 1 || report.noop || pair[1] - pair[0] < 100, "run {k} was not sliced: {report:?}\n{context}");
        waited += report.pending + report.released;
    }
    let report = build_silver(&layout(plain.path(), None)).await.expect("silver");
    // Rides waited for their users: in the built history (whose retyped users leave rides
    // waiting), or, without type changes, while the mapped lake was built sync by sync.
    assert!(report.rides_upserted > 0 && report.pending + report.released + if roles { waited } else { 0 } > 0, "{report:?}");
    let context = format!("{context}\nkeys: users {:?}, rides {:?}", variant.users_key, variant.rides_key);
    for table in TABLES {
        let mapped_table = common::read_modeled_table(mapped.path(), Some(&model), table).await;
        assert!(mapped_table.height() > 0 || table != "users", "silver users is not where the model names it ({context})");
        for (name, column) in [("id", "users"), ("customer_id", "rides"), ("id", "rides")] {
            if let (true, Ok(c)) = (column == table && variant.text_keys(column, name), mapped_table.column(name)) {
                assert_eq!(c.dtype(), &DataType::String, "{table}.{name} holds text keys ({context})");
            }
        }
        let mut expected = variant.with_keys(table, read(plain.path(), table).await);
        // Silver users and rides keep a composite key's columns; the other tables need not.
        for column in expected.get_column_names().iter().map(|c| c.to_string()).collect::<Vec<_>>() {
            if variant.is_key_column(&column) && mapped_table.column(&column).is_err() {
                assert!(!["users", "rides"].contains(&table), "silver {table} lacks composite key column {column} ({context})");
                expected = expected.drop(&column).expect("drop");
            }
        }
        // The extra columns: in silver users, rides and rides_pending, the source's values (in
        // every row); the original has none. (Tombstones and the quarantine need not have them.)
        let mut mapped_table = mapped_table;
        if variant.extra {
            for (of, silver, _) in EXTRA {
                let holds = table == of || (of == "rides" && table == "rides_pending");
                let column = match mapped_table.column(silver) {
                    Ok(c) => c.clone(),
                    Err(_) => {
                        assert!(!holds, "silver {table} lacks extra column {silver} ({context})");
                        continue;
                    }
                };
                // (every row of a table that holds it; another table, such as the quarantine
                // with rows of both, may hold null)
                let want = if of == "users" { "3" } else { "kept in bronze, not in silver" };
                let text = column.cast(&DataType::String).expect("as text");
                let values: Vec<Option<&str>> = text.str().expect("text").iter().collect();
                assert!(values.iter().all(|v| *v == Some(want) || (v.is_none() && !holds)), "silver {table}.{silver} holds the source's values: {column:?} ({context})");
                mapped_table = mapped_table.drop(silver).expect("drop");
            }
        }
        // With a users table per role, a user change's place in bronze (its table's version and
        // row) is another than in the original's one users table.
        let (expected, mapped_table) = match table {
            "users" | "quarantine" if roles => (without_bronze_places(expected), without_bronze_places(mapped_table)),
            _ => (expected, mapped_table),
        };
        // Users filed by another day than created_at's (or by none): the same rows, each in
        // the partition of its day of updated_at (UTC), or without partition columns.
        let (expected, mapped_table) = match (table, variant.users_partition) {
            ("users", "none") => {
                assert!(mapped_table.column("year").is_err(), "silver users is not partitioned ({context})");
                (common::sorted_by_key(expected.drop_many(["year", "month", "day"])), common::sorted_by_key(mapped_table))
            }
            ("users", "updated_at") => {
                let parts = |year: Expr, month: Expr, day: Expr| {
                    mapped_table.clone().lazy().select([year.cast(DataType::Int32).alias("y"), month.cast(DataType::Int32).alias("m"), day.cast(DataType::Int32).alias("d")]).collect().expect("days")
                };
                let filed = parts(col("year"), col("month"), col("day"));
                let of_updated_at = parts(col("updated_at").dt().year(), col("updated_at").dt().month(), col("updated_at").dt().day());
                assert!(filed.equals_missing(&of_updated_at), "users are filed by the day of updated_at ({context})");
                let strip = |frame: DataFrame| common::sorted_by_key(frame.drop_many(["year", "month", "day"]));
                (strip(expected), strip(mapped_table))
            }
            _ => (expected, mapped_table),
        };
        // Rides filed by another day than requested_at's (or by none): the same rows, each in
        // the partition of its day of that column, or without partition columns.
        let (expected, mapped_table) = match (table, variant.rides_partition) {
            ("rides", "none") => {
                assert!(mapped_table.column("year").is_err(), "silver rides is not partitioned ({context})");
                (common::sorted_by_key(expected.drop_many(["year", "month", "day"])), common::sorted_by_key(mapped_table))
            }
            ("rides", column) if column != "requested_at" => {
                let parts = |year: Expr, month: Expr, day: Expr| {
                    mapped_table.clone().lazy().select([year.cast(DataType::Int32).alias("y"), month.cast(DataType::Int32).alias("m"), day.cast(DataType::Int32).alias("d")]).collect().expect("days")
                };
                let filed = parts(col("year"), col("month"), col("day"));
                let of_column = parts(col(column).dt().year(), col(column).dt().month(), col(column).dt().day());
                assert!(filed.equals_missing(&of_column), "rides are filed by the day of {column} ({context})");
                let strip = |frame: DataFrame| common::sorted_by_key(frame.drop_many(["year", "month", "day"]));
                (strip(expected), strip(mapped_table))
            }
            _ => (expected, mapped_table),
        };
        assert_same(table, &expected, &mapped_table, &context);
    }
    // Gold on the model's logical names: the same figures, per the same (coded) users.
    build_gold(&layout(plain.path(), None)).await.expect("gold");
    build_gold(&layout(mapped.path(), Some(&model))).await.unwrap_or_else(|e| panic!("gold through the model: {e}\n{context}"));
    for table in GOLD_TABLES {
        let table = format!("gold/{table}");
        assert_same(&table, &variant.with_keys(&table, read(plain.path(), &table).await), &common::read_modeled_table(mapped.path(), Some(&model), &table).await, &context);
    }
    let problems = model::validate(&layout(mapped.path(), Some(&model))).await.expect("validate");
    assert!(problems.is_empty(), "{problems:?}\n{context}");
}

/// The places in `lines` (a generator history) of the rides whose customer has no change yet.
fn rides_before_their_customer(lines: &[String]) -> Vec<usize> {
    let mut seen = std::collections::BTreeSet::new();
    let mut found = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let message: Value = serde_json::from_str(line).expect("json");
        let (stream, data) = (&message["record"]["stream"], &message["record"]["data"]);
        match (stream.as_str(), as_id(&data["id"]), as_id(&data["customer_id"])) {
            (Some("users"), Some(id), _) => {
                seen.insert(id);
            }
            (Some("rides"), _, Some(customer)) if !seen.contains(&customer) => found.push(at),
            _ => {}
        }
    }
    found
}

/// `frame` without the columns that say where in bronze a change is, sorted by all the others.
fn without_bronze_places(frame: DataFrame) -> DataFrame {
    let places = ["_cdc_bronze_version", "_cdc_bronze_row", "bronze_version"];
    let kept: Vec<PlSmallStr> = frame.get_column_names().into_iter().filter(|c| !places.contains(&c.as_str())).cloned().collect();
    let frame = frame.select(kept.clone()).expect("select");
    frame.sort(kept, SortMultipleOptions::default().with_nulls_last(true)).expect("sort")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_models_give_the_silver_of_the_original_history() {
    let extra: u64 = std::env::var("RIDELAKE_MODEL_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    for seed in (1..=6).chain(8..=9).chain(100..100 + extra) {
        check_variant(seed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_model_stops_the_run_until_a_rebuild_is_asked_for() {
    let variant = Variant::random(7);
    let model = Model::parse(&variant.toml, "generated").expect("model");
    let lines = generate(GeneratorConfig { seed: 7, users: 20, rides: 60, changes: 200, ..Default::default() });
    let translated: Vec<String> = lines.iter().map(|l| variant.translate(l).1).collect();
    let lake = tempfile::tempdir().expect("tempdir");
    sync(lake.path(), &variant.catalog(), &translated).await;
    build_silver(&layout(lake.path(), Some(&model))).await.expect("first build");
    assert!(build_silver(&layout(lake.path(), Some(&model))).await.expect("rerun").noop);

    // Another mapping of the same source: refused before anything is written.
    let changed_text = variant.toml.replacen("version = 1\n", "version = 1\n# a comment changes nothing\n", 1);
    let same = Model::parse(&changed_text, "commented").expect("model");
    assert!(build_silver(&layout(lake.path(), Some(&same))).await.expect("a comment is not a change").noop);
    let source_name = variant.source("users", "name");
    let source_email = variant.source("users", "email");
    let swapped = variant.toml.replacen(&format!("name = {{ column = \"{source_name}\""), &format!("name = {{ column = \"{source_email}\""), 1);
    let changed = Model::parse(&swapped, "changed.toml").expect("model");
    assert_ne!(changed.hash(), model.hash());
    let users_before = read(lake.path(), "users").await;
    match build_silver(&layout(lake.path(), Some(&changed))).await {
        Err(LakehouseError::ModelChanged { origin, .. }) => assert_eq!(origin, "changed.toml"),
        other => panic!("expected ModelChanged, got {other:?}"),
    }
    assert!(users_before.equals_missing(&read(lake.path(), "users").await), "nothing may be written");
    let message = build_silver(&layout(lake.path(), Some(&changed))).await.expect_err("still refused").to_string();
    assert!(message.contains("rebuild=True"), "{message}");

    // Asked for, the rebuild applies the new mapping to every row.
    let rebuilt = build_silver_with(&layout(lake.path(), Some(&changed)), &SilverOptions { rebuild: true, ..Default::default() }).await.expect("rebuild");
    assert!(rebuilt.rebuild.as_deref().is_some_and(|r| r.contains("model")), "{rebuilt:?}");
    let users = read(lake.path(), "users").await;
    assert!(users.column("name").expect("name").as_materialized_series().equals_missing(users_before.column("email").expect("email").as_materialized_series()));
    assert!(build_silver(&layout(lake.path(), Some(&changed))).await.expect("then incremental").noop);

    // validate names a missing source column and its line.
    let broken_text = variant.toml.replacen(&format!("column = \"{}\"", variant.source("rides", "status")), "column = \"no_such_column\"", 1);
    let broken = Model::parse(&broken_text, "broken.toml").expect("model");
    let problems = model::validate(&layout(lake.path(), Some(&broken))).await.expect("validate");
    let line = broken_text.lines().position(|l| l.contains("no_such_column")).expect("line") + 1;
    assert!(problems.len() == 1 && problems[0].contains(&format!("line {line}:")) && problems[0].contains("no_such_column"), "{problems:?}");
}
