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

use std::collections::HashSet;
use std::path::Path;


use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::compute::concat_batches;
use ridelake_core::bronze;
use serde_json::Value;

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
    /// the way a pipe cuts them) with a 4 KiB line limit, and checks every promise.
    pub fn check(&self, input: &[u8]) {
        let Some((&first, input)) = input.split_first() else { return };
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
    }

    /// An accepted input against a plain `serde_json::Value` reading of it.
    fn check_accepted(&self, input: &[u8], parsed: &Parsed) {
        let mut data: Vec<Vec<Value>> = vec![Vec::new(); self.catalog.streams.len()];
        let (mut unknown, mut states) = (0u64, Vec::new());
        for line in input.split(|&b| b == b'\n') {
            let Ok(text) = std::str::from_utf8(line) else { panic!("a line that is not UTF-8 was accepted") };
            if text.trim().is_empty() {
                continue;
            }
            let message: Value = match serde_json::from_str(text) {
                Ok(message) => message,
                // The model's own limit (the reader keeps `data` as raw text, which nests deeper).
                Err(e) if e.to_string().contains("recursion limit") => return,
                Err(e) => panic!("accepted a line that is not JSON: {e}"),
            };
            assert!(message.is_object(), "accepted a line that is not a JSON object");
            match message["type"].as_str() {
                Some("RECORD") => {
                    let record = &message["record"];
                    let stream = record["stream"].as_str().unwrap_or_else(|| panic!("accepted a RECORD without a stream name"));
                    assert!(record["emitted_at"].is_number(), "accepted a RECORD without emitted_at");
                    match self.catalog.find(record["namespace"].as_str(), stream) {
                        Some(index) => data[index].push(record["data"].clone()),
                        None => unknown += 1,
                    }
                }
                Some("STATE") => states.push(message["state"].clone()),
                Some(_) => {}
                None => panic!("accepted a message without a type"),
            }
        }
        assert_eq!(parsed.unknown, unknown, "records of unknown streams");
        let kept: Vec<Value> = parsed.states.iter().map(|s| serde_json::from_str(s).unwrap_or(Value::Null)).collect();
        assert_eq!(kept, states, "states kept");
        for (index, records) in data.iter().enumerate() {
            assert_eq!(parsed.records[index], records.len() as u64, "records counted in stream {index}");
            let batches = &parsed.batches[index];
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            assert_eq!(rows, records.len(), "rows written for stream {index}");
            if let Some(first) = batches.first() {
                let batch = concat_batches(&first.schema(), batches).unwrap_or_else(|e| panic!("batches of one stream differ in schema: {e}"));
                let encoder = self.tables[index].encoder();
                check_lossless(&batch, records, |field| encoder.column_of(field).map(str::to_owned));
            }
        }
    }
}

/// Every non-null value of every record is in its column or rescued, rescued data is a JSON
/// object, and every row has its own raw id.
fn check_lossless(batch: &RecordBatch, records: &[Value], column_of: impl Fn(&str) -> Option<String>) {
    let rescued = batch.column_by_name(bronze::RESCUED_DATA).unwrap_or_else(|| panic!("no rescue column"));
    let rescued = rescued.as_string_opt::<i32>().unwrap_or_else(|| panic!("the rescue column is not text"));
    let ids = batch.column_by_name(bronze::RAW_ID).unwrap_or_else(|| panic!("no raw id column"));
    let ids = ids.as_string_opt::<i32>().unwrap_or_else(|| panic!("the raw id column is not text"));
    let mut seen = HashSet::new();
    for (row, data) in records.iter().enumerate() {
        assert!(ids.is_valid(row) && seen.insert(ids.value(row)), "row {row} has no raw id of its own");
        let kept: Value = if rescued.is_valid(row) {
            serde_json::from_str(rescued.value(row)).unwrap_or_else(|e| panic!("rescued data of row {row} is not JSON: {e}"))
        } else {
            Value::Object(serde_json::Map::new())
        };
        let Some(kept) = kept.as_object() else { panic!("rescued data of row {row} is not an object") };
        let Some(fields) = data.as_object() else {
            assert!(kept.contains_key("_airbyte_data"), "row {row}: data that is not an object was not rescued whole");
            continue;
        };
        for field in fields.iter().filter(|(_, v)| !v.is_null()).map(|(field, _)| field) {
            let in_column = column_of(field)
                .and_then(|name| batch.column_by_name(&name).map(|c| c.is_valid(row)))
                .unwrap_or(false);
            assert!(in_column || kept.contains_key(field), "row {row}: field {field:?} is neither in its column nor rescued");
        }
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

    match coerce::integer(raw) {
        Coerced::Null => assert!(null),
        Coerced::Value(v) => match raw {
            "true" => assert_eq!(v, 1),
            "false" => assert_eq!(v, 0),
            _ => match plain_integer(trimmed) {
                Some(exact) => assert_eq!(i128::from(v), exact, "integer {trimmed:?}"),
                None => assert_eq!(trimmed.parse::<f64>().ok(), Some(v as f64), "integer {trimmed:?} through a double"),
            },
        },
        Coerced::Rounded(_) => panic!("an integer column rounded {trimmed:?}"),
        Coerced::Rejected(Rejection::FieldSize) => {
            if let Some(exact) = plain_integer(trimmed) {
                assert!(i64::try_from(exact).is_err(), "integer {trimmed:?} fits but was refused");
            }
        }
        Coerced::Rejected(Rejection::Serialization) => {
            assert!(plain_integer(trimmed).is_none() && !null, "integer {trimmed:?} refused as malformed");
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

    // Ours also reads forms RFC 3339 does not (no offset, no seconds): only RFC 3339 is compared.
    let rfc3339 = as_string.as_deref().and_then(|s| chrono::DateTime::parse_from_rfc3339(s.trim()).ok());
    match (coerce::timestamp(raw), rfc3339) {
        (Coerced::Value(micros), Some(moment)) => assert_eq!(micros, moment.timestamp_micros(), "timestamp {raw:?}"),
        (Coerced::Null, _) => assert!(null),
        (Coerced::Rounded(_), _) => panic!("a timestamp column rounded {raw:?}"),
        (Coerced::Rejected(_), Some(_)) => panic!("timestamp {raw:?} refused although it is RFC 3339"),
        _ => {}
    }
}

/// `[+-]digits` or `[+-]digits.000…`, as an exact integer (`i128::MAX` beyond i128).
fn plain_integer(text: &str) -> Option<i128> {
    let whole = match text.split_once('.') {
        Some((whole, zeros)) if !zeros.is_empty() && zeros.bytes().all(|b| b == b'0') => whole,
        Some(_) => return None,
        None => text,
    };
    let digits = whole.strip_prefix(['-', '+']).unwrap_or(whole);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(whole.parse::<i128>().unwrap_or(if whole.starts_with('-') { i128::MIN } else { i128::MAX }))
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
        assert_eq!(plain_integer("42.000"), Some(42));
        assert_eq!(plain_integer("99999999999999999999999999999999999999999"), Some(i128::MAX));
    }

    #[test]
    #[should_panic(expected = "neither in its column nor rescued")]
    fn a_value_in_no_column_and_not_rescued_is_caught() {
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
        check_lossless(&batch, &[serde_json::json!({"id": 5})], |field| Some(field.to_owned()));
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
