//! The bronze table contract shared by the writer (connector) and the readers (silver builder).
//!
//! Guarantees:
//! - One Delta table per `(namespace, stream)` at `<base>/<namespace>/<stream>`; both segments
//!   pass [`safe_segment`], so a name from the source can never escape the base location.
//! - Every bronze table carries the Destinations V2 meta columns ([`RAW_ID`], [`EXTRACTED_AT`],
//!   [`GENERATION_ID`], [`META`]) plus [`RESCUED_DATA`], the verbatim JSON of every value that
//!   did not fit its column and of every field the catalog did not declare. Bronze is lossless.
//! - Airbyte's type system maps to Delta types by [`ColumnType::from_json_schema`] and
//!   [`ColumnType::delta_type`]; objects, arrays and unions are kept as JSON text.

use deltalake::kernel::{ArrayType, DataType, PrimitiveType, StructField, StructType};
use serde_json::Value;

use crate::error::{CoreError, Result};

/// Random UUID per received record.
pub const RAW_ID: &str = "_airbyte_raw_id";
/// The record's `emitted_at`, as a UTC timestamp.
pub const EXTRACTED_AT: &str = "_airbyte_extracted_at";
/// The catalog's `generation_id` for the stream (null when the platform sent none).
pub const GENERATION_ID: &str = "_airbyte_generation_id";
/// `{sync_id, changes: [{field, change, reason}]}`.
pub const META: &str = "_airbyte_meta";
/// JSON object `{field: verbatim value}` of values not stored in a typed column; null when empty.
pub const RESCUED_DATA: &str = "_airbyte_rescued_data";

/// CDC column: change position, `(binlog file suffix << 32) | position` (binlog events only).
pub const CDC_CURSOR: &str = "_ab_cdc_cursor";
/// CDC column: event time (snapshot read time for snapshot rows).
pub const CDC_UPDATED_AT: &str = "_ab_cdc_updated_at";
/// CDC column: event time of a delete, null otherwise.
pub const CDC_DELETED_AT: &str = "_ab_cdc_deleted_at";
/// CDC column: binlog file name.
pub const CDC_LOG_FILE: &str = "_ab_cdc_log_file";
/// CDC column: binlog position.
pub const CDC_LOG_POS: &str = "_ab_cdc_log_pos";

/// Names of the meta columns, in the order they follow the data columns.
pub const META_COLUMNS: [&str; 5] = [RAW_ID, EXTRACTED_AT, GENERATION_ID, META, RESCUED_DATA];

/// Delta table property naming the Airbyte stream a bronze table holds.
pub const PROP_STREAM: &str = "ridelake.bronze.stream";
/// Delta table property naming the Airbyte namespace a bronze table holds.
pub const PROP_NAMESPACE: &str = "ridelake.bronze.namespace";
/// Delta table property: the table's columns some syncs' catalogs did not declare, each with the
/// windows of table versions whose rows lack it, as a JSON object `{"column": [[from, to], [from,
/// null]]}`: `from` is the first version written from a catalog without the column, `to` the
/// first written from one declaring it again (null: still missing). The destination keeps a
/// dropped column (bronze never loses what it received), so without this a reader would take the
/// source dropping a column for nulls. See [`absent_columns`].
pub const PROP_ABSENT_COLUMNS: &str = "ridelake.bronze.absent_columns";

/// Delta table property: how many leading columns get statistics in each file's `add` action.
pub const PROP_STATS_COLUMNS: &str = "delta.dataSkippingNumIndexedCols";
/// Bronze's value of [`PROP_STATS_COLUMNS`]: every column (MySQL's limit per table). Delta's
/// default, 32, would leave a wide source's meta columns, which come last, without statistics:
/// the refresh's generation cleanup, silver's clock and its rescued-values scan read them. (`-1`,
/// Delta's "all", is not read by delta-rs's `RecordBatchWriter`.)
pub const STATS_EVERY_COLUMN: &str = "4096";

/// Per column, the windows of bronze versions `[from, to)` whose rows lack it (`to` `None`: up to
/// now), as [`PROP_ABSENT_COLUMNS`] records them.
pub type AbsentColumns = std::collections::BTreeMap<String, Vec<(i64, Option<i64>)>>;

/// The windows a bronze table's [`PROP_ABSENT_COLUMNS`] lists (empty when the property is
/// missing; an unreadable value is an error naming the property).
pub fn absent_columns(configuration: &std::collections::HashMap<String, String>) -> Result<AbsentColumns> {
    match configuration.get(PROP_ABSENT_COLUMNS) {
        None => Ok(AbsentColumns::new()),
        Some(text) => serde_json::from_str(text).map_err(|e| CoreError::InvalidTableProperty { property: PROP_ABSENT_COLUMNS, reason: e.to_string() }),
    }
}

/// The new value of [`PROP_ABSENT_COLUMNS`] for a sync whose catalog declares `declared`
/// (case-insensitive, as Delta compares names) into a table with columns `columns`, whose
/// property says `before`; the sync's first commit is `version`. A column the catalog lacks opens
/// a window (or keeps its open one); a column it declares again closes its open window. Meta
/// columns are never absent. `None`: no change.
pub fn next_absent_columns<'a>(columns: impl IntoIterator<Item = &'a str>, declared: &[&str], before: &AbsentColumns, version: i64) -> Option<AbsentColumns> {
    let declared: std::collections::HashSet<String> = declared.iter().map(|d| d.to_ascii_lowercase()).collect();
    let mut after = before.clone();
    for column in columns.into_iter().filter(|c| !META_COLUMNS.contains(c)) {
        let missing = !declared.contains(&column.to_ascii_lowercase());
        let windows = after.entry(column.to_owned()).or_default();
        match (missing, windows.last_mut()) {
            (true, Some((_, None))) | (false, None) | (false, Some((_, Some(_)))) => {}
            (true, _) => windows.push((version, None)),
            (false, Some(open)) => open.1 = Some(version),
        }
    }
    after.retain(|_, windows| !windows.is_empty());
    (after != *before).then_some(after)
}

/// The logical type of a bronze data column, from Airbyte's type system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// `boolean`.
    Boolean,
    /// `integer`, or `number` with `airbyte_type: integer`; Delta `long`.
    Integer,
    /// `number`; Delta `double`.
    Number,
    /// `string` (also `time` formats and big integers, kept as text); Delta `string`.
    String,
    /// `string` + `format: date`; Delta `date`.
    Date,
    /// `string` + `format: date-time` (default, or `timestamp_with_timezone`); Delta `timestamp` (UTC).
    TimestampTz,
    /// `string` + `format: date-time` + `airbyte_type: timestamp_without_timezone`; Delta `timestamp_ntz`.
    TimestampNtz,
    /// Objects, arrays, unions and untyped fields: the value's JSON text; Delta `string`.
    Json,
}

impl ColumnType {
    /// Reads a property's JSON schema the way Airbyte's type system defines it.
    pub fn from_json_schema(schema: &Value) -> ColumnType {
        let Some(obj) = schema.as_object() else {
            return ColumnType::Json;
        };
        if let Some(Value::String(reference)) = obj.get("$ref") {
            return Self::from_well_known_ref(reference);
        }
        if obj.contains_key("oneOf") || obj.contains_key("anyOf") {
            return ColumnType::Json;
        }
        let types: Vec<&str> = match obj.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect(),
            _ => return ColumnType::Json,
        };
        let types: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
        let [single] = types.as_slice() else {
            return ColumnType::Json;
        };
        let airbyte_type = obj.get("airbyte_type").and_then(Value::as_str);
        let format = obj.get("format").and_then(Value::as_str);
        match *single {
            "boolean" => ColumnType::Boolean,
            "integer" => ColumnType::Integer,
            "number" if airbyte_type == Some("integer") => ColumnType::Integer,
            "number" if airbyte_type == Some("big_integer") => ColumnType::String,
            "number" => ColumnType::Number,
            "string" => match (format, airbyte_type) {
                (_, Some("big_integer")) => ColumnType::String,
                (Some("date"), _) => ColumnType::Date,
                (Some("date-time"), Some("timestamp_without_timezone")) => ColumnType::TimestampNtz,
                (Some("date-time"), _) => ColumnType::TimestampTz,
                _ => ColumnType::String,
            },
            _ => ColumnType::Json,
        }
    }

    fn from_well_known_ref(reference: &str) -> ColumnType {
        match reference.rsplit('/').next().unwrap_or_default() {
            "Boolean" => ColumnType::Boolean,
            "Integer" => ColumnType::Integer,
            "Number" => ColumnType::Number,
            "Date" => ColumnType::Date,
            "TimestampWithTimezone" => ColumnType::TimestampTz,
            "TimestampWithoutTimezone" => ColumnType::TimestampNtz,
            "String" | "BinaryData" | "TimeWithTimezone" | "TimeWithoutTimezone" => ColumnType::String,
            _ => ColumnType::Json,
        }
    }

    /// The Delta type a new column of this logical type gets.
    pub fn delta_type(self) -> DataType {
        match self {
            ColumnType::Boolean => DataType::BOOLEAN,
            ColumnType::Integer => DataType::LONG,
            ColumnType::Number => DataType::DOUBLE,
            ColumnType::String | ColumnType::Json => DataType::STRING,
            ColumnType::Date => DataType::DATE,
            ColumnType::TimestampTz => DataType::TIMESTAMP,
            ColumnType::TimestampNtz => DataType::TIMESTAMP_NTZ,
        }
    }

    /// The storage type of an existing column, or an error naming the column when bronze cannot
    /// write that Delta type. A `string` column comes back as [`ColumnType::String`].
    pub fn from_delta_type(column: &str, data_type: &DataType) -> Result<ColumnType> {
        let found = match data_type {
            DataType::Primitive(p) => match p {
                PrimitiveType::Boolean => return Ok(ColumnType::Boolean),
                PrimitiveType::Long => return Ok(ColumnType::Integer),
                PrimitiveType::Double => return Ok(ColumnType::Number),
                PrimitiveType::String => return Ok(ColumnType::String),
                PrimitiveType::Date => return Ok(ColumnType::Date),
                PrimitiveType::Timestamp => return Ok(ColumnType::TimestampTz),
                PrimitiveType::TimestampNtz => return Ok(ColumnType::TimestampNtz),
                other => format!("{other:?}"),
            },
            other => format!("{other:?}"),
        };
        Err(CoreError::UnsupportedColumnType { column: column.to_owned(), found })
    }
}

/// The `_airbyte_meta` struct type: `{sync_id: long, changes: array<{field, change, reason}>}`.
pub fn meta_delta_type() -> DataType {
    let change = StructType::try_new([
        StructField::new("field", DataType::STRING, true),
        StructField::new("change", DataType::STRING, true),
        StructField::new("reason", DataType::STRING, true),
    ])
    .map(DataType::from)
    .unwrap_or(DataType::STRING);
    let meta = StructType::try_new([
        StructField::new("sync_id", DataType::LONG, true),
        StructField::new("changes", DataType::Array(Box::new(ArrayType::new(change, true))), true),
    ]);
    meta.map(DataType::from).unwrap_or(DataType::STRING)
}

/// The meta columns every bronze table ends with.
pub fn meta_fields() -> Vec<StructField> {
    vec![
        StructField::new(RAW_ID, DataType::STRING, false),
        StructField::new(EXTRACTED_AT, DataType::TIMESTAMP, false),
        StructField::new(GENERATION_ID, DataType::LONG, true),
        StructField::new(META, meta_delta_type(), false),
        StructField::new(RESCUED_DATA, DataType::STRING, true),
    ]
}

/// Turns a namespace or stream name into one safe path segment.
///
/// Characters outside `[A-Za-z0-9_.-]` become `_`, and a leading `.` becomes `_`, so the result
/// can contain no separator and can be neither `.` nor `..` nor a hidden folder.
pub fn safe_segment(kind: &'static str, name: &str) -> Result<String> {
    if name.is_empty() {
        return Err(CoreError::InvalidName { kind, name: name.to_owned(), reason: "it is empty" });
    }
    if name.len() > 255 {
        return Err(CoreError::InvalidName {
            kind,
            name: name.chars().take(40).collect::<String>() + "…",
            reason: "it is longer than 255 bytes",
        });
    }
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' })
        .collect();
    if out.starts_with('.') {
        out.replace_range(0..1, "_");
    }
    Ok(out)
}

/// Turns a source field name into a Delta column name: characters Delta forbids without column
/// mapping (` ,;{}()\n\t=`) become `_`.
pub fn safe_column_name(name: &str) -> String {
    let out: String = name
        .chars()
        .map(|c| if matches!(c, ' ' | ',' | ';' | '{' | '}' | '(' | ')' | '\n' | '\t' | '=') { '_' } else { c })
        .collect();
    if out.is_empty() { "_".to_owned() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn absent_columns_are_windows_opened_and_closed_by_the_catalog() {
        use std::collections::HashMap;
        let columns = ["id", "fare", "Rating", RAW_ID, RESCUED_DATA];
        // Every column declared (meta columns never are): nothing to record.
        assert_eq!(next_absent_columns(columns, &["id", "fare", "rating"], &AbsentColumns::new(), 3), None);
        let first = next_absent_columns(columns, &["ID"], &AbsentColumns::new(), 3).expect("changed");
        assert_eq!(first, AbsentColumns::from([("Rating".to_owned(), vec![(3, None)]), ("fare".to_owned(), vec![(3, None)])]));
        // Still missing at a later sync: the window stays open from the first version.
        assert_eq!(next_absent_columns(columns, &["id"], &first, 9), None);
        let back = next_absent_columns(columns, &["id", "fare"], &first, 9).expect("changed");
        assert_eq!(back, AbsentColumns::from([("Rating".to_owned(), vec![(3, None)]), ("fare".to_owned(), vec![(3, Some(9))])]));
        // Declared again: a closed window stays (its rows lack the column); missing again: a new one.
        assert_eq!(next_absent_columns(columns, &["id", "fare"], &back, 12), None);
        let again = next_absent_columns(columns, &["id", "rating"], &back, 15).expect("changed");
        assert_eq!(again, AbsentColumns::from([("Rating".to_owned(), vec![(3, Some(15))]), ("fare".to_owned(), vec![(3, Some(9)), (15, None)])]));
        let text = serde_json::to_string(&again).expect("json");
        assert_eq!(text, r#"{"Rating":[[3,15]],"fare":[[3,9],[15,null]]}"#);
        assert_eq!(absent_columns(&HashMap::from([(PROP_ABSENT_COLUMNS.to_owned(), text)])).expect("reads"), again);
        assert!(absent_columns(&HashMap::from([(PROP_ABSENT_COLUMNS.to_owned(), "not json".to_owned())])).is_err());
        assert!(absent_columns(&HashMap::new()).expect("reads").is_empty());
    }

    #[test]
    fn maps_airbyte_types() {
        let cases = [
            (json!({"type": "integer"}), ColumnType::Integer),
            (json!({"type": ["null", "integer"]}), ColumnType::Integer),
            (json!({"type": "number", "airbyte_type": "integer"}), ColumnType::Integer),
            (json!({"type": "number"}), ColumnType::Number),
            (json!({"type": "boolean"}), ColumnType::Boolean),
            (json!({"type": "string"}), ColumnType::String),
            (json!({"type": "string", "format": "date"}), ColumnType::Date),
            (json!({"type": "string", "format": "date-time"}), ColumnType::TimestampTz),
            (
                json!({"type": "string", "format": "date-time", "airbyte_type": "timestamp_with_timezone"}),
                ColumnType::TimestampTz,
            ),
            (
                json!({"type": "string", "format": "date-time", "airbyte_type": "timestamp_without_timezone"}),
                ColumnType::TimestampNtz,
            ),
            (json!({"type": "string", "format": "time"}), ColumnType::String),
            (json!({"type": "object", "properties": {}}), ColumnType::Json),
            (json!({"type": "array"}), ColumnType::Json),
            (json!({"type": ["string", "integer"]}), ColumnType::Json),
            (json!({"oneOf": [{"type": "string"}, {"type": "integer"}]}), ColumnType::Json),
            (json!({}), ColumnType::Json),
            (json!({"$ref": "WellKnownTypes.json#/definitions/Integer"}), ColumnType::Integer),
            (json!({"$ref": "WellKnownTypes.json#/definitions/TimestampWithoutTimezone"}), ColumnType::TimestampNtz),
        ];
        for (schema, expected) in cases {
            assert_eq!(ColumnType::from_json_schema(&schema), expected, "{schema}");
        }
    }

    #[test]
    fn segments_cannot_escape() {
        assert_eq!(safe_segment("stream", "../../etc").unwrap(), "_._.._etc");
        assert_eq!(safe_segment("stream", "..").unwrap(), "_.");
        assert_eq!(safe_segment("stream", "a/b\\c").unwrap(), "a_b_c");
        assert_eq!(safe_segment("stream", "rides").unwrap(), "rides");
        assert_eq!(safe_segment("stream", "Ünïcode name").unwrap(), "_n_code_name");
        assert!(safe_segment("stream", "").is_err());
        assert!(safe_segment("stream", &"x".repeat(300)).is_err());
    }

    #[test]
    fn column_names_are_delta_safe() {
        assert_eq!(safe_column_name("pickup lat (deg)"), "pickup_lat__deg_");
        assert_eq!(safe_column_name("id"), "id");
    }

    #[test]
    fn meta_schema_is_struct() {
        assert!(matches!(meta_delta_type(), DataType::Struct(_)));
        assert_eq!(meta_fields().len(), META_COLUMNS.len());
    }
}
