//! What the fuzz targets in `fuzz/` check, and the test that replays their committed corpus: the
//! stdin reader and the value coercions, each against an independent model of what bronze
//! promises. A broken promise panics, which is what a fuzzer reports.
//!
//! - [`Reader::check`]: any bytes as a sync's stdin. Never a panic or a hang; a refused input
//!   names a line within the input; an accepted input counts every RECORD of a catalog stream once,
//!   keeps every STATE, and loses no value of a record (each non-null field is in its column or in
//!   `_airbyte_rescued_data`, which is valid JSON).
//! - [`check_value`]: any text as a JSON value of every column type, compared with `chrono` for
//!   dates and timestamps and with an exact decimal comparison for numbers.

use std::collections::{HashMap, HashSet};
use std::path::Path;


use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::compute::concat_batches;
use ridelake_core::bronze::{self, ColumnType};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::catalog::Catalog;
use crate::coerce::{self, Coerced, Rejection};
use crate::config::DestinationOptions;
use crate::error::{ConnectorError, Result};
use crate::sink::BronzeTable;
use crate::write::{Parsed, parse_without_storage};

/// The reader of a sync with its catalog's tables open in a local folder (opened once: a fuzzer
/// calls [`Reader::check`] many thousand times per second).
pub struct Reader {
    catalog: Catalog,
    tables: Vec<BronzeTable>,
}

impl Reader {
    /// Creates the tables of `catalog_json` (a configured catalog) under `folder`.
    pub fn open(folder: &Path, catalog_json: &str) -> Result<Reader> {
        let config = serde_json::json!({"storage": {"storage_type": "Local", "local_path": folder}});
        let options = DestinationOptions::from_json(&config.to_string())?;
        let catalog = Catalog::from_json(catalog_json, "default")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ConnectorError::Config(format!("cannot start a runtime: {e}")))?;
        let tables = runtime.block_on(async {
            let mut tables = Vec::new();
            for plan in &catalog.streams {
                tables.push(BronzeTable::open(&options, plan.clone(), "fuzz").await?);
            }
            Ok::<_, ConnectorError>(tables)
        })?;
        Ok(Reader { catalog, tables })
    }

    /// Reads `input` (its first byte sets the read size, so that lines and states straddle reads
    /// the way a pipe cuts them) with a 4 KiB line limit, and checks every promise. Returns
    /// whether the input was accepted.
    pub fn check(&self, input: &[u8]) -> bool {
        let Some((&first, input)) = input.split_first() else { return true };
        let read_size = usize::from(first % 64) + 1;
        let max_line = 4096;
        let encoders = self.tables.iter().map(BronzeTable::encoder).collect();
        let parsed = parse_without_storage(input, read_size, &self.catalog, encoders, max_line);
        let lines = input.split_inclusive(|&b| b == b'\n').count() as u64;
        match &parsed.failure {
            Some(ConnectorError::MalformedInput { line, .. } | ConnectorError::ProtocolViolation { line, .. }) => {
                assert!((1..=lines).contains(line), "refused at line {line} of an input of {lines} lines");
            }
            Some(other) => panic!("the reader failed with an error that names no line: {other}"),
            None => {
                assert_eq!(parsed.lines, lines, "lines read");
                self.check_accepted(input, &parsed);
            }
        }
        parsed.failure.is_none()
    }

    /// An accepted input against an independent reading of it: each line's envelope read as a map
    /// of raw JSON values (a number out of a double's range or a lone surrogate is valid raw
    /// text, and the reader accepts it too), every record's fields as raw (key, value) pairs.
    fn check_accepted(&self, input: &[u8], parsed: &Parsed) {
        let mut data: Vec<Vec<&RawValue>> = vec![Vec::new(); self.catalog.streams.len()];
        let (mut unknown, mut states) = (0u64, Vec::new());
        for line in input.split(|&b| b == b'\n') {
            let Ok(text) = std::str::from_utf8(line) else { panic!("a line that is not UTF-8 was accepted") };
            if text.trim().is_empty() {
                continue;
            }
            assert!(text.trim_start().starts_with('{'), "accepted a line that is not a JSON object");
            let message: HashMap<String, &RawValue> =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("accepted a line that is not a JSON object: {e}"));
            let kind: Option<String> = message.get("type").and_then(|raw| serde_json::from_str(raw.get()).ok());
            match kind.as_deref() {
                Some("RECORD") => {
                    let record: HashMap<String, &RawValue> = message
                        .get("record")
                        .and_then(|raw| serde_json::from_str(raw.get()).ok())
                        .unwrap_or_else(|| panic!("accepted a RECORD without a record object"));
                    let text_of = |key: &str| record.get(key).and_then(|raw| serde_json::from_str::<Option<String>>(raw.get()).ok()).flatten();
                    let stream = text_of("stream").unwrap_or_else(|| panic!("accepted a RECORD without a stream name"));
                    assert!(record.get("emitted_at").is_some_and(|raw| raw.get().parse::<f64>().is_ok()), "accepted a RECORD without emitted_at");
                    let raw_data = record.get("data").copied().unwrap_or_else(|| panic!("accepted a RECORD without data"));
                    match self.catalog.find(text_of("namespace").as_deref(), &stream) {
                        Some(index) => data[index].push(raw_data),
                        None => unknown += 1,
                    }
                }
                Some("STATE") => states.push(message.get("state").map(|raw| raw.get().to_owned())),
                Some(_) => {}
                None => panic!("accepted a message without a type"),
            }
        }
        assert_eq!(parsed.unknown, unknown, "records of unknown streams");
        let kept: Vec<Option<String>> = parsed.states.iter().map(|s| Some(s.clone())).collect();
        assert_eq!(kept, states, "states kept verbatim");
        for (index, records) in data.iter().enumerate() {
            assert_eq!(parsed.records[index], records.len() as u64, "records counted in stream {index}");
            let batches = &parsed.batches[index];
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            assert_eq!(rows, records.len(), "rows written for stream {index}");
            if let Some(first) = batches.first() {
                let batch = concat_batches(&first.schema(), batches).unwrap_or_else(|e| panic!("batches of one stream differ in schema: {e}"));
                let encoder = self.tables[index].encoder();
                check_lossless(&batch, records, |field| encoder.column_of(field).map(|(name, kind)| (name.to_owned(), kind)));
            }
        }
    }
}

/// A JSON object's members in order, repeated keys included (serde_json's reading, the
/// reference the fuzz model and the scanner's tests compare with).
pub(crate) struct Members<'a>(pub(crate) Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Members<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Members<'a>, A::Error> {
                let mut members = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// Every record's every field: a value that fits its column is in it, exactly as its coercion
/// makes it; one that does not (or has no column) is rescued verbatim under its key, which a
/// repeated key shares with its first value (in the column); rescued data is a JSON object;
/// data that is not an object (or has keys that are not valid strings) is rescued whole; every
/// row has its own raw id.
fn check_lossless(batch: &RecordBatch, records: &[&RawValue], column_of: impl Fn(&str) -> Option<(String, ColumnType)>) {
    let rescued = batch.column_by_name(bronze::RESCUED_DATA).unwrap_or_else(|| panic!("no rescue column"));
    let rescued = rescued.as_string_opt::<i32>().unwrap_or_else(|| panic!("the rescue column is not text"));
    let ids = batch.column_by_name(bronze::RAW_ID).unwrap_or_else(|| panic!("no raw id column"));
    let ids = ids.as_string_opt::<i32>().unwrap_or_else(|| panic!("the raw id column is not text"));
    let mut seen = HashSet::new();
    for (row, data) in records.iter().enumerate() {
        assert!(ids.is_valid(row) && seen.insert(ids.value(row)), "row {row} has no raw id of its own");
        let kept: Vec<(String, &RawValue)> = if rescued.is_valid(row) {
            let Members(kept) = serde_json::from_str(rescued.value(row)).unwrap_or_else(|e| panic!("rescued data of row {row} is not a JSON object: {e}"));
            kept
        } else {
            Vec::new()
        };
        let rescued_as = |field: &str| kept.iter().filter(|(k, _)| k == field).map(|(_, v)| v.get()).collect::<Vec<_>>();
        let Ok(Members(fields)) = serde_json::from_str::<Members>(data.get()) else {
            assert_eq!(rescued_as("_airbyte_data"), [data.get()], "row {row}: data that is not an object was not rescued whole");
            continue;
        };
        for (at, (field, raw)) in fields.iter().enumerate() {
            let first = fields.iter().position(|(k, _)| k == field) == Some(at);
            let column = column_of(field).and_then(|(name, kind)| batch.column_by_name(&name).map(|c| (c.clone(), kind)));
            let stored = column.as_ref().and_then(|(c, kind)| if c.is_valid(row) { Some(cell(c, row, *kind)) } else { None });
            let text = raw.get();
            match (column, first) {
                (Some((_, kind)), true) => {
                    let (expected, altered) = expected_cell(text, kind);
                    assert_eq!(stored, expected, "row {row}: field {field:?} = {text} stored wrongly");
                    if altered {
                        assert!(rescued_as(field).contains(&text), "row {row}: field {field:?} = {text} altered but not rescued");
                    }
                }
                // A later repeat of a key, or a field without a column: rescued verbatim.
                _ => assert!(rescued_as(field).contains(&text), "row {row}: field {field:?} is neither in its column nor rescued"),
            }
        }
    }
}

/// A stored cell, as text that compares exactly (floats by their bits).
fn cell(column: &deltalake::arrow::array::ArrayRef, row: usize, kind: ColumnType) -> String {
    use deltalake::arrow::datatypes::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
    match kind {
        ColumnType::Boolean => column.as_boolean_opt().map(|a| a.value(row).to_string()),
        ColumnType::Integer => column.as_primitive_opt::<Int64Type>().map(|a| a.value(row).to_string()),
        ColumnType::Number => column.as_primitive_opt::<Float64Type>().map(|a| format!("{:x}", a.value(row).to_bits())),
        ColumnType::String | ColumnType::Json => column.as_string_opt::<i32>().map(|a| a.value(row).to_owned()),
        ColumnType::Date => column.as_primitive_opt::<Date32Type>().map(|a| a.value(row).to_string()),
        ColumnType::TimestampTz | ColumnType::TimestampNtz => column.as_primitive_opt::<TimestampMicrosecondType>().map(|a| a.value(row).to_string()),
    }
    .unwrap_or_else(|| panic!("a {kind:?} column has another Arrow type"))
}

/// What a column of `kind` holds for the raw value `text` (None: null), and whether the value was
/// altered on the way (then it must be rescued).
fn expected_cell(text: &str, kind: ColumnType) -> (Option<String>, bool) {
    fn of<T>(coerced: Coerced<T>, show: impl Fn(T) -> String) -> (Option<String>, bool) {
        match coerced {
            Coerced::Value(v) => (Some(show(v)), false),
            Coerced::Null => (None, false),
            Coerced::Rounded(v) => (Some(show(v)), true),
            Coerced::Rejected(_) => (None, true),
        }
    }
    match kind {
        ColumnType::Boolean => of(coerce::boolean(text), |v| v.to_string()),
        ColumnType::Integer => of(coerce::integer(text), |v| v.to_string()),
        ColumnType::Number => of(coerce::number(text), |v| format!("{:x}", v.to_bits())),
        ColumnType::String => of(coerce::string(text), |v| v.into_owned()),
        ColumnType::Json => ((text != "null").then(|| text.to_owned()), false),
        ColumnType::Date => of(coerce::date(text), |v| v.to_string()),
        ColumnType::TimestampTz | ColumnType::TimestampNtz => of(coerce::timestamp(text), |v| v.to_string()),
    }
}

/// Checks every coercion on `text`: as a JSON value when it is one, and as a JSON string.
pub fn check_value(text: &str) {
    if serde_json::from_str::<&serde_json::value::RawValue>(text).is_ok() {
        check_raw(text.trim());
    }
    if let Ok(quoted) = serde_json::to_string(text) {
        check_raw(&quoted);
    }
}

/// The coercions of one JSON value's text.
fn check_raw(raw: &str) {
    let text: String = match serde_json::from_str::<Value>(raw) {
        Ok(Value::String(s)) => s,
        _ => raw.to_owned(),
    };
    let trimmed = text.trim();
    let null = raw == "null";

    let quoted = raw.starts_with('"');
    match coerce::integer(raw) {
        Coerced::Null => assert!(null),
        Coerced::Value(v) => match raw {
            "true" => assert_eq!(v, 1),
            "false" => assert_eq!(v, 0),
            // Any decimal form (`42`, `42.000`, `1e3`) must be that integer exactly; a string
            // only in the integer's own text.
            _ => {
                assert_eq!(decimal_integer(trimmed), Some(i128::from(v)), "integer {trimmed:?} stored as {v}");
                assert!(!quoted || text == v.to_string(), "the string {text:?} stored as {v} without its text rescued");
            }
        },
        // A string in another form of the integer: stored as it, its text rescued.
        Coerced::Rounded(v) => {
            assert!(quoted && text != v.to_string(), "an integer column rounded {trimmed:?}");
            assert_eq!(decimal_integer(trimmed), Some(i128::from(v)), "integer {trimmed:?} stored as {v}");
        }
        Coerced::Rejected(Rejection::FieldSize) => {
            let exact = decimal_integer(trimmed).unwrap_or_else(|| panic!("integer {trimmed:?} refused as too large but it is no integer"));
            assert!(i64::try_from(exact).is_err(), "integer {trimmed:?} fits but was refused");
        }
        Coerced::Rejected(Rejection::Serialization) => {
            assert!(decimal_integer(trimmed).is_none() && !null, "integer {trimmed:?} refused as malformed");
        }
    }

    match coerce::number(raw) {
        Coerced::Null => assert!(null),
        Coerced::Value(f) => {
            assert!(f.is_finite());
            assert_eq!(trimmed.parse::<f64>().ok(), Some(f), "number {trimmed:?}");
            if let Some(exact) = decimal(trimmed) {
                assert_eq!(decimal(&format!("{f:e}")), Some(exact), "number {trimmed:?} stored as {f:e} is not exact");
            }
        }
        Coerced::Rounded(f) => {
            assert!(f.is_finite());
            let exact = decimal(trimmed).unwrap_or_else(|| panic!("number {trimmed:?} rounded but not a decimal"));
            assert_ne!(decimal(&format!("{f:e}")), Some(exact), "number {trimmed:?} held exactly but marked rounded");
        }
        Coerced::Rejected(_) => {
            assert!(!null && trimmed.parse::<f64>().map_or(true, |f| !f.is_finite()), "number {trimmed:?} refused")
        }
    }

    let as_string = serde_json::from_str::<String>(raw).ok();
    match coerce::string(raw) {
        Coerced::Null => assert!(null),
        Coerced::Value(s) => assert_eq!(s.as_ref(), as_string.as_deref().unwrap_or(raw), "string {raw:?}"),
        other => panic!("a string column did not keep {raw:?}: {other:?}"),
    }

    match coerce::boolean(raw) {
        Coerced::Value(b) => assert!(matches!((raw, b), ("true" | "\"true\"" | "1" | "\"1\"", true) | ("false" | "\"false\"" | "0" | "\"0\"", false))),
        Coerced::Null => assert!(null),
        Coerced::Rounded(_) => panic!("a boolean column rounded {raw:?}"),
        Coerced::Rejected(_) => {}
    }

    let date = chrono_date(as_string.as_deref());
    match coerce::date(raw) {
        Coerced::Value(days) => assert_eq!(Some(i64::from(days)), date, "date {raw:?}"),
        Coerced::Null => assert!(null),
        _ => assert_eq!(date, None, "date {raw:?} refused"),
    }

    // chrono reads RFC 3339 and, with a `T` or a space and no offset, MySQL's wall-clock shape
    // (taken as UTC); ours reads both. (chrono also takes a U+2212 minus in offsets: ASCII only.)
    let by_chrono = as_string.as_deref().map(str::trim).filter(|s| s.is_ascii()).and_then(|s| {
        chrono::DateTime::parse_from_rfc3339(s).map(|moment| moment.timestamp_micros()).ok().or_else(|| {
            wall_clock_shape(s).then(|| chrono::NaiveDateTime::parse_from_str(&s.replacen(' ', "T", 1), "%Y-%m-%dT%H:%M:%S%.f").ok()).flatten().map(|m| m.and_utc().timestamp_micros())
        })
    });
    let dropped_digits = as_string.as_deref().is_some_and(|s| s.split_once('.').is_some_and(|(_, f)| {
        f.bytes().take_while(u8::is_ascii_digit).skip(6).any(|d| d != b'0')
    }));
    match (coerce::timestamp(raw), by_chrono) {
        (Coerced::Value(micros), Some(theirs)) => {
            assert!(!dropped_digits, "timestamp {raw:?} lost digits but is not marked rounded");
            assert_eq!(micros, theirs, "timestamp {raw:?}");
        }
        (Coerced::Rounded(micros), Some(theirs)) => {
            assert!(dropped_digits, "timestamp {raw:?} marked rounded without losing a digit");
            assert_eq!(micros, theirs, "timestamp {raw:?}");
        }
        (Coerced::Null, _) => assert!(null),
        (Coerced::Rejected(_), Some(_)) => panic!("timestamp {raw:?} refused although chrono reads it"),
        _ => {}
    }
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.digits]`, digit for digit (chrono's own parser is laxer on widths).
fn wall_clock_shape(s: &str) -> bool {
    let b = s.as_bytes();
    let fixed = b"0000-00-00T00:00:00";
    b.len() >= fixed.len()
        && fixed.iter().zip(b).enumerate().all(|(i, (&f, &c))| match f {
            b'0' => c.is_ascii_digit(),
            b'T' => i == 10 && (c == b'T' || c == b' '),
            _ => c == f,
        })
        && match &b[fixed.len()..] {
            [] => true,
            [b'.', fraction @ ..] => !fraction.is_empty() && fraction.iter().all(u8::is_ascii_digit),
            _ => false,
        }
}

/// The integer a plain decimal is, exactly (`±i128::MAX` beyond i128); `None` when it is not a
/// decimal or has a fraction.
fn decimal_integer(text: &str) -> Option<i128> {
    let (negative, digits, power) = decimal(text)?;
    if digits.is_empty() {
        return Some(0);
    }
    if power < 0 {
        return None;
    }
    let sign = if negative { -1 } else { 1 };
    if (digits.len() as i64).saturating_add(power) > 38 {
        return Some(sign * i128::MAX);
    }
    format!("{digits}{}", "0".repeat(power as usize)).parse::<i128>().ok().map(|v| sign * v)
}

/// A plain decimal (`[+-]digits[.digits][e[+-]digits]`) as (negative, significant digits, power of
/// ten of the last digit); zero is `(false, "", 0)`.
fn decimal(text: &str) -> Option<(bool, String, i64)> {
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => {
            let digits = e.strip_prefix(['-', '+']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // An exponent beyond i64 saturates: such a decimal is zero or far outside a double.
            (m, e.parse::<i64>().unwrap_or(if e.starts_with('-') { i64::MIN } else { i64::MAX }))
        }
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = format!("{whole}{fraction}");
    if all.is_empty() || !all.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = all.trim_start_matches('0');
    let kept = significant.trim_end_matches('0');
    if kept.is_empty() {
        return Some((false, String::new(), 0));
    }
    let power = exponent.saturating_sub(fraction.len() as i64).saturating_add((significant.len() - kept.len()) as i64);
    Some((negative, kept.to_owned(), power))
}

/// Days since 1970-01-01 of an exact `YYYY-MM-DD` text, by chrono.
fn chrono_date(text: Option<&str>) -> Option<i64> {
    let text = text?;
    let b = text.as_bytes();
    let shape = b.len() == 10 && b[4] == b'-' && b[7] == b'-' && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(text[..4].parse().ok()?, text[5..7].parse().ok()?, text[8..].parse().ok()?)?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    Some((date - epoch).num_days())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decimal_model_compares_digits_and_scale() {
        assert_eq!(decimal("12.50"), decimal("1.25e1"));
        assert_eq!(decimal("-0.00"), Some((false, String::new(), 0)));
        assert_ne!(decimal("0.1"), decimal("0.10000000000000001"));
        assert_eq!(decimal("1e"), None);
        assert_eq!(decimal_integer("42.000"), Some(42));
        assert_eq!(decimal_integer("-4.2e1"), Some(-42));
        assert_eq!(decimal_integer("4.25e1"), None);
        assert_eq!(decimal_integer("99999999999999999999999999999999999999999"), Some(i128::MAX));
    }

    #[test]
    #[should_panic(expected = "stored wrongly")]
    fn a_value_missing_from_its_column_is_caught() {
        use std::sync::Arc;

        use deltalake::arrow::array::{Int64Array, StringArray};
        use deltalake::arrow::datatypes::{DataType, Field, Schema};
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new(bronze::RAW_ID, DataType::Utf8, false),
            Field::new(bronze::RESCUED_DATA, DataType::Utf8, true),
        ]);
        let columns: Vec<Arc<dyn Array>> =
            vec![Arc::new(Int64Array::from(vec![None])), Arc::new(StringArray::from(vec!["a"])), Arc::new(StringArray::from(vec![None::<&str>]))];
        let batch = RecordBatch::try_new(Arc::new(schema), columns).expect("a batch");
        let data = serde_json::value::to_raw_value(&serde_json::json!({"id": 5})).expect("raw");
        check_lossless(&batch, &[data.as_ref()], |field| Some((field.to_owned(), ColumnType::Integer)));
    }

    #[test]
    #[should_panic(expected = "neither in its column nor rescued")]
    fn a_field_without_a_column_must_be_rescued() {
        use std::sync::Arc;

        use deltalake::arrow::array::StringArray;
        use deltalake::arrow::datatypes::{DataType, Field, Schema};
        let schema = Schema::new(vec![Field::new(bronze::RAW_ID, DataType::Utf8, false), Field::new(bronze::RESCUED_DATA, DataType::Utf8, true)]);
        let columns: Vec<Arc<dyn Array>> = vec![Arc::new(StringArray::from(vec!["a"])), Arc::new(StringArray::from(vec![Some(r#"{"other":1}"#)]))];
        let batch = RecordBatch::try_new(Arc::new(schema), columns).expect("a batch");
        let data = serde_json::value::to_raw_value(&serde_json::json!({"extra": [1]})).expect("raw");
        check_lossless(&batch, &[data.as_ref()], |_| None);
    }

    #[test]
    #[should_panic(expected = "is not exact")]
    fn a_rounded_number_passed_off_as_exact_is_caught() {
        // What the number check compares: 0.1 + 2^-60 is no double, so "exact" would be a lie.
        let text = "0.10000000000000000086736173798840354720596224069595336914062";
        let f: f64 = text.parse().expect("a double");
        assert_eq!(decimal(&format!("{f:e}")), decimal(text), "number {text:?} stored as {f:e} is not exact");
    }

    #[test]
    fn values_of_every_kind_pass_their_checks() {
        for text in ["42", "-7.000", "1e3", "12.50", "0.1", "123456789012345678901234567890", "\"2025-01-01T10:00:00.123456Z\"",
            "\"2024-02-29\"", "\"2023-02-29\"", "true", "0", "null", "{\"a\":1}", "9223372036854775808", "1e400", " 5 "]
        {
            check_value(text);
        }
    }
}
