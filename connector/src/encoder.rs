//! Records of one stream → Arrow record batches in the bronze table's schema.
//!
//! [`StreamEncoder::push`] walks a record's `data` once, without building a JSON tree: each field's
//! raw text goes straight into its column's builder through [`crate::coerce`].
//! [`StreamEncoder::push_members`] takes the members [`crate::scan`] already found. Guarantees, per row:
//! - every declared field lands in its typed column, or, when it does not fit, the column is null,
//!   a `NULLED` change is added to `_airbyte_meta.changes` and the verbatim JSON is kept in
//!   `_airbyte_rescued_data`; a number with more digits than a double holds is stored rounded, with a
//!   `TRUNCATED` change and its exact text rescued the same way (bronze stays lossless);
//! - fields the catalog does not declare (and repeated keys) are kept in `_airbyte_rescued_data`;
//! - `data` that is not an object is kept whole in `_airbyte_rescued_data` under `_airbyte_data`;
//! - `_airbyte_raw_id` is a fresh UUID, `_airbyte_extracted_at` the record's `emitted_at`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Array, Int64Builder, ListArray, RecordBatch,
    StringBuilder, StructArray, TimestampMicrosecondBuilder,
};
use deltalake::arrow::buffer::{OffsetBuffer, ScalarBuffer};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Fields, SchemaRef};
use deltalake::arrow::error::ArrowError;
use ridelake_core::bronze::{self, ColumnType};
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::coerce::{self, Altered, Coerced, Rejection};
use crate::protocol::Change;
use crate::scan::Member;

/// One data column of the table.
#[derive(Debug, Clone)]
pub struct ColumnSpec {
    /// Delta column name.
    pub name: String,
    /// The record field it is filled from.
    pub source_field: String,
    /// The table's type for it (which values are coerced to).
    pub storage: ColumnType,
}

enum Builder {
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Str(StringBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
}

impl Builder {
    fn new(storage: ColumnType, tz: Option<Arc<str>>) -> Self {
        match storage {
            ColumnType::Boolean => Builder::Bool(BooleanBuilder::new()),
            ColumnType::Integer => Builder::Int(Int64Builder::new()),
            ColumnType::Number => Builder::Float(Float64Builder::new()),
            ColumnType::String | ColumnType::Json => Builder::Str(StringBuilder::new()),
            ColumnType::Date => Builder::Date(Date32Builder::new()),
            ColumnType::TimestampTz | ColumnType::TimestampNtz => {
                Builder::Ts(TimestampMicrosecondBuilder::new().with_timezone_opt(tz))
            }
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Bool(b) => b.append_null(),
            Builder::Int(b) => b.append_null(),
            Builder::Float(b) => b.append_null(),
            Builder::Str(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Ts(b) => b.append_null(),
        }
    }

    /// Appends the coerced value (or null) and reports what changed.
    fn append(&mut self, storage: ColumnType, raw: &str) -> Option<Altered> {
        match self {
            Builder::Bool(b) => push(coerce::boolean(raw), |v| b.append_option(v)),
            Builder::Int(b) => push(coerce::integer(raw), |v| b.append_option(v)),
            Builder::Float(b) => push(coerce::number(raw), |v| b.append_option(v)),
            Builder::Date(b) => push(coerce::date(raw), |v| b.append_option(v)),
            Builder::Ts(b) => push(coerce::timestamp(raw), |v| b.append_option(v)),
            // A JSON column keeps the value's text; a string column never rejects (non-strings
            // are kept as their JSON text).
            Builder::Str(b) if storage == ColumnType::Json => {
                b.append_option((raw != "null").then_some(raw));
                None
            }
            Builder::Str(b) => push(coerce::string(raw), |v| b.append_option(v)),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Ts(b) => Arc::new(b.finish()),
        }
    }
}

/// Applies a coercion result to a builder: the value, or null, and what changed (when the value
/// was rounded or rejected).
fn push<T>(coerced: Coerced<T>, append: impl FnOnce(Option<T>)) -> Option<Altered> {
    match coerced {
        Coerced::Value(v) => {
            append(Some(v));
            None
        }
        Coerced::Null => {
            append(None);
            None
        }
        Coerced::Rounded(v) => {
            append(Some(v));
            Some(Altered::Rounded)
        }
        Coerced::Rejected(r) => {
            append(None);
            Some(Altered::Nulled(r))
        }
    }
}

/// Builds the batches of one stream.
pub struct StreamEncoder {
    stream: String,
    schema: SchemaRef,
    columns: Vec<ColumnSpec>,
    builders: Vec<Builder>,
    by_field: HashMap<String, usize>,
    filled: Vec<bool>,
    /// Per position of a member in `data`: the column the member at that position filled in an
    /// earlier record. A source sends its fields in one order, whatever the catalog's order (the
    /// platform may hand the catalog over with its keys re-sorted), so after the first record a
    /// field's column is found with one comparison instead of a hash lookup.
    order: Vec<usize>,
    /// The position of the next member of the record in hand.
    position: usize,
    raw_ids: StringBuilder,
    extracted_at: Vec<i64>,
    generation_id: Option<i64>,
    sync_id: Option<i64>,
    change_offsets: Vec<i32>,
    change_count: usize,
    change_field: StringBuilder,
    change_kind: StringBuilder,
    change_reason: StringBuilder,
    rescued: StringBuilder,
    rescued_row: String,
    rows: usize,
    bytes: usize,
    digest: u128,
}

impl fmt::Debug for StreamEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamEncoder").field("stream", &self.stream).field("rows", &self.rows).finish()
    }
}

fn timestamp_tz(schema: &SchemaRef, column: &str) -> Option<Arc<str>> {
    match schema.field_with_name(column).map(|f| f.data_type().clone()) {
        Ok(DataType::Timestamp(_, tz)) => tz,
        _ => None,
    }
}

impl StreamEncoder {
    /// An encoder for a table with these data columns and this (writer) Arrow schema.
    pub fn new(
        stream: impl Into<String>,
        columns: Vec<ColumnSpec>,
        schema: SchemaRef,
        generation_id: Option<i64>,
        sync_id: Option<i64>,
    ) -> Self {
        let builders = columns.iter().map(|c| Builder::new(c.storage, timestamp_tz(&schema, &c.name))).collect();
        let by_field = columns.iter().enumerate().map(|(i, c)| (c.source_field.clone(), i)).collect();
        let filled = vec![false; columns.len()];
        StreamEncoder {
            stream: stream.into(),
            schema,
            columns,
            builders,
            by_field,
            filled,
            order: Vec::new(),
            position: 0,
            raw_ids: StringBuilder::new(),
            extracted_at: Vec::new(),
            generation_id,
            sync_id,
            change_offsets: vec![0],
            change_count: 0,
            change_field: StringBuilder::new(),
            change_kind: StringBuilder::new(),
            change_reason: StringBuilder::new(),
            rescued: StringBuilder::new(),
            rescued_row: String::new(),
            rows: 0,
            bytes: 0,
            digest: 0,
        }
    }

    /// The table column a record field fills, and the column's type, if the table has one.
    pub fn column_of(&self, field: &str) -> Option<(&str, ColumnType)> {
        self.by_field.get(field).and_then(|&i| self.columns.get(i)).map(|c| (c.name.as_str(), c.storage))
    }

    /// Rows buffered since the last [`finish`](Self::finish).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input bytes buffered since the last [`finish`](Self::finish).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds one record.
    pub fn push(&mut self, data: &RawValue, emitted_at_ms: f64, source_changes: &[Change]) {
        let text = data.get();
        self.account(text);
        let is_object = text.trim_start().starts_with('{');
        if is_object {
            let mut de = serde_json::Deserializer::from_str(text);
            if FieldsSeed(self).deserialize(&mut de).is_err() {
                // Unreachable for valid JSON objects; keep the record whole rather than lose it.
                self.reset_row_into_rescue(text);
            }
        } else {
            self.rescue("_airbyte_data", text);
            self.add_change("_airbyte_data", Altered::Nulled(Rejection::Serialization));
        }
        for change in source_changes {
            self.change_field.append_value(&change.field);
            self.change_kind.append_value(&change.change);
            self.change_reason.append_value(&change.reason);
            self.change_count += 1;
        }
        self.end_row(emitted_at_ms);
    }

    /// Adds one record whose `data` (`text`, a JSON object) was read by [`crate::scan`] into
    /// `members`; the same row as [`push`](Self::push) makes of it.
    pub fn push_members(&mut self, text: &str, members: &[Member<'_>], emitted_at_ms: f64) {
        self.account(text);
        for &(key, raw) in members {
            self.set_field(key, raw);
        }
        self.end_row(emitted_at_ms);
    }

    /// Counts a record's `data` into the batch's size and the digest.
    fn account(&mut self, text: &str) {
        self.bytes += text.len();
        self.digest = self.digest.wrapping_add(xxhash_rust::xxh3::xxh3_128(text.as_bytes()));
    }

    fn reset_row_into_rescue(&mut self, text: &str) {
        // Fill every column of this row with null and keep the whole data verbatim.
        for (i, filled) in self.filled.iter_mut().enumerate() {
            if !*filled {
                self.builders[i].append_null();
                *filled = true;
            }
        }
        self.rescued_row.clear();
        self.rescue("_airbyte_data", text);
        self.add_change("_airbyte_data", Altered::Nulled(Rejection::Serialization));
    }

    fn set_field(&mut self, key: &str, raw: &str) {
        let slot = self.position;
        self.position += 1;
        let index = match self.order.get(slot) {
            Some(&i) if self.columns.get(i).is_some_and(|c| c.source_field == key) => Some(i),
            _ => {
                let found = self.by_field.get(key).copied();
                // Learn the position (a bounded number of them: a hostile record may have many
                // members).
                if let Some(i) = found.filter(|_| slot < 2 * self.columns.len() + 16) {
                    if self.order.len() <= slot {
                        self.order.resize(slot + 1, usize::MAX);
                    }
                    self.order[slot] = i;
                }
                found
            }
        };
        let Some(i) = index else {
            self.rescue(key, raw);
            return;
        };
        if self.filled[i] {
            // The same key twice in one object: keep the second value too.
            self.rescue(key, raw);
            return;
        }
        self.filled[i] = true;
        if let Some(change) = self.builders[i].append(self.columns[i].storage, raw) {
            self.add_change(key, change);
            self.rescue(key, raw);
        }
    }

    fn add_change(&mut self, field: &str, change: Altered) {
        self.change_field.append_value(field);
        self.change_kind.append_value(change.kind());
        self.change_reason.append_value(change.reason());
        self.change_count += 1;
    }

    fn rescue(&mut self, key: &str, raw: &str) {
        self.rescued_row.push(if self.rescued_row.is_empty() { '{' } else { ',' });
        match serde_json::to_string(key) {
            Ok(quoted) => self.rescued_row.push_str(&quoted),
            Err(_) => self.rescued_row.push_str("\"?\""),
        }
        self.rescued_row.push(':');
        self.rescued_row.push_str(raw);
    }

    fn end_row(&mut self, emitted_at_ms: f64) {
        for (i, filled) in self.filled.iter_mut().enumerate() {
            if !*filled {
                self.builders[i].append_null();
            }
            *filled = false;
        }
        self.position = 0;
        let mut uuid = uuid::Uuid::encode_buffer();
        self.raw_ids.append_value(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut uuid));
        self.extracted_at.push((emitted_at_ms * 1000.0) as i64);
        self.change_offsets.push(self.change_count as i32);
        if self.rescued_row.is_empty() {
            self.rescued.append_null();
        } else {
            self.rescued_row.push('}');
            self.rescued.append_value(&self.rescued_row);
            self.rescued_row.clear();
        }
        self.rows += 1;
    }

    /// A digest of the `data` of the records pushed since the last call, for recognising records
    /// a retry resends: the sum of each record's xxh3-128, so that it does not depend on how the
    /// records were cut into batches (nor on `emitted_at`, which a resend changes).
    pub fn take_digest(&mut self) -> u128 {
        std::mem::take(&mut self.digest)
    }

    /// Builds the batch of everything pushed so far and resets the buffers.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let rows = self.rows;
        let meta = self.finish_meta(rows)?;
        let mut data: HashMap<&str, ArrayRef> =
            self.columns.iter().zip(self.builders.iter_mut()).map(|(c, b)| (c.name.as_str(), b.finish())).collect();
        let raw_ids: ArrayRef = Arc::new(self.raw_ids.finish());
        let extracted: ArrayRef = Arc::new(
            deltalake::arrow::array::TimestampMicrosecondArray::from(std::mem::take(&mut self.extracted_at))
                .with_timezone("UTC"),
        );
        let generation: ArrayRef = Arc::new(Int64Array::from(vec![self.generation_id; rows]));
        let rescued: ArrayRef = Arc::new(self.rescued.finish());
        self.rows = 0;
        self.bytes = 0;
        let mut arrays = Vec::with_capacity(self.schema.fields().len());
        for field in self.schema.fields() {
            let name = field.name().as_str();
            let array = match name {
                bronze::RAW_ID => raw_ids.clone(),
                bronze::EXTRACTED_AT => extracted.clone(),
                bronze::GENERATION_ID => generation.clone(),
                bronze::META => meta.clone(),
                bronze::RESCUED_DATA => rescued.clone(),
                _ => match data.remove(name) {
                    Some(a) => a,
                    None => deltalake::arrow::array::new_null_array(field.data_type(), rows),
                },
            };
            let array = if array.data_type() == field.data_type() { array } else { cast(&array, field.data_type())? };
            arrays.push(array);
        }
        RecordBatch::try_new(self.schema.clone(), arrays)
    }

    fn finish_meta(&mut self, rows: usize) -> Result<ArrayRef, ArrowError> {
        let change_fields = Fields::from(vec![
            Field::new("field", DataType::Utf8, true),
            Field::new("change", DataType::Utf8, true),
            Field::new("reason", DataType::Utf8, true),
        ]);
        let changes = StructArray::try_new(
            change_fields.clone(),
            vec![
                Arc::new(self.change_field.finish()),
                Arc::new(self.change_kind.finish()),
                Arc::new(self.change_reason.finish()),
            ],
            None,
        )?;
        let offsets = std::mem::replace(&mut self.change_offsets, vec![0]);
        self.change_count = 0;
        let item = Arc::new(Field::new("element", DataType::Struct(change_fields), true));
        let list = ListArray::try_new(item, OffsetBuffer::new(ScalarBuffer::from(offsets)), Arc::new(changes), None)?;
        let sync_ids: ArrayRef = Arc::new(Int64Array::from(vec![self.sync_id; rows]));
        let meta_fields = Fields::from(vec![
            Field::new("sync_id", DataType::Int64, true),
            Field::new("changes", deltalake::arrow::array::Array::data_type(&list).clone(), true),
        ]);
        Ok(Arc::new(StructArray::try_new(meta_fields, vec![sync_ids, Arc::new(list)], None)?))
    }
}

/// Deserialises a record's `data` object straight into the encoder.
struct FieldsSeed<'e>(&'e mut StreamEncoder);

/// A map key, borrowed when it has no escapes.
#[derive(Deserialize)]
struct Key<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let raw: &'de RawValue = map.next_value()?;
            self.0.set_field(&key.0, raw.get());
        }
        Ok(())
    }
}
