//! The Airbyte protocol as this destination speaks it.
//!
//! - [`Emitter`] is the only writer of stdout: one JSON `AirbyteMessage` per line, flushed after
//!   each message, from any thread. Nothing else in the connector prints to stdout.
//! - [`Incoming`] parses one stdin line without copying record data: the record's `data` stays a
//!   borrowed [`RawValue`] that the encoder walks once. Unknown fields are ignored, as the
//!   protocol's `additionalProperties: true` requires. The common RECORD line does not get here:
//!   [`crate::scan`] reads it in one pass; `Incoming` reads every line the scanner leaves.

use std::borrow::Cow;
use std::io::Write;
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// Writes protocol messages to stdout, one per line.
pub struct Emitter {
    out: Mutex<Box<dyn Write + Send>>,
}

impl Emitter {
    /// An emitter on the process's stdout.
    pub fn stdout() -> Self {
        Emitter { out: Mutex::new(Box::new(std::io::stdout())) }
    }

    /// An emitter into any writer (tests).
    pub fn to_writer(out: Box<dyn Write + Send>) -> Self {
        Emitter { out: Mutex::new(out) }
    }

    /// Writes one message (already serialised, without newline) and flushes.
    pub fn emit_raw(&self, message: &str) -> std::io::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        out.write_all(message.as_bytes())?;
        out.write_all(b"\n")?;
        out.flush()
    }

    /// Writes one message.
    pub fn emit(&self, message: &Value) -> std::io::Result<()> {
        self.emit_raw(&message.to_string())
    }

    /// A LOG message; errors writing it are reported on stderr only.
    pub fn log(&self, level: &str, message: impl Into<String>) {
        let message = json!({"type": "LOG", "log": {"level": level, "message": message.into()}});
        if let Err(e) = self.emit(&message) {
            eprintln!("destination-delta-lake: cannot write to stdout: {e}");
        }
    }
}

/// Milliseconds since the epoch, as the protocol's `emitted_at` wants.
pub fn now_ms() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64
}

/// A TRACE ERROR message.
pub fn trace_error(message: &str, internal: &str, failure_type: &str) -> Value {
    json!({"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": now_ms(), "error": {
        "message": message, "internal_message": internal, "failure_type": failure_type}}})
}

/// A CONNECTION_STATUS message.
pub fn connection_status(succeeded: bool, message: &str) -> Value {
    let status = if succeeded { "SUCCEEDED" } else { "FAILED" };
    json!({"type": "CONNECTION_STATUS", "connectionStatus": {"status": status, "message": message}})
}

/// One stdin line, as much of it as the destination needs.
#[derive(Deserialize)]
pub struct Incoming<'a> {
    /// Message type (`RECORD`, `STATE`, `LOG`, `TRACE`, …).
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// The record, for `RECORD`.
    #[serde(borrow, default)]
    pub record: Option<IncomingRecord<'a>>,
    /// The state, for `STATE`; kept verbatim so that it can be echoed unchanged.
    #[serde(borrow, default)]
    pub state: Option<&'a RawValue>,
}

/// A RECORD's envelope; `data` stays raw.
#[derive(Deserialize)]
pub struct IncomingRecord<'a> {
    /// Stream namespace.
    #[serde(borrow, default)]
    pub namespace: Option<Cow<'a, str>>,
    /// Stream name.
    #[serde(borrow)]
    pub stream: Cow<'a, str>,
    /// Extraction time, epoch milliseconds.
    pub emitted_at: f64,
    /// The record's fields, as JSON text.
    #[serde(borrow)]
    pub data: &'a RawValue,
    /// Source-side changes (`meta.changes`).
    #[serde(default)]
    pub meta: Option<IncomingMeta>,
}

/// `record.meta`.
#[derive(Deserialize, Default)]
pub struct IncomingMeta {
    /// Changes the source already made to this record.
    #[serde(default)]
    pub changes: Vec<Change>,
}

/// One `_airbyte_meta.changes` entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Change {
    /// Field path.
    pub field: String,
    /// `NULLED` or `TRUNCATED`.
    pub change: String,
    /// Why.
    pub reason: String,
}

/// The fields of a STATE the destination reads (the rest is echoed untouched).
#[derive(Deserialize)]
pub struct StateHeader {
    /// `GLOBAL`, `STREAM` or `LEGACY` (absent means LEGACY).
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// For STREAM states.
    #[serde(default)]
    pub stream: Option<StreamStateHeader>,
}

/// `state.stream` of a STREAM state.
#[derive(Deserialize)]
pub struct StreamStateHeader {
    /// Which stream the state belongs to.
    pub stream_descriptor: StreamDescriptor,
}

/// `{name, namespace}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
pub struct StreamDescriptor {
    /// Stream name.
    pub name: String,
    /// Stream namespace.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// Returns the STATE message to echo: the received state unchanged, plus
/// `destinationStats: {recordCount, rejectedRecordCount}` (counts as doubles, as the protocol asks).
pub fn state_echo(raw_state: &RawValue, record_count: u64, rejected: u64) -> serde_json::Result<String> {
    let mut state: serde_json::Map<String, Value> = serde_json::from_str(raw_state.get())?;
    let mut stats = serde_json::Map::new();
    stats.insert("recordCount".into(), json!(record_count as f64));
    if rejected > 0 {
        stats.insert("rejectedRecordCount".into(), json!(rejected as f64));
    }
    state.insert("destinationStats".into(), Value::Object(stats));
    serde_json::to_string(&json!({"type": "STATE", "state": state}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records_without_copying_data() {
        let line = r#"{"type":"RECORD","record":{"stream":"rides","namespace":"ns","emitted_at":1700000000000,"data":{"id":1},"extra":true},"other":1}"#;
        let msg: Incoming = serde_json::from_str(line).unwrap();
        assert_eq!(msg.kind, "RECORD");
        let rec = msg.record.unwrap();
        assert_eq!(rec.stream, "rides");
        assert_eq!(rec.namespace.as_deref(), Some("ns"));
        assert_eq!(rec.data.get(), r#"{"id":1}"#);
    }

    #[test]
    fn echoes_state_unchanged_with_stats() {
        let raw = r#"{"type":"GLOBAL","global":{"shared_state":{"x":"y"},"stream_states":[]},"sourceStats":{"recordCount":2.0}}"#;
        let line = format!(r#"{{"type":"STATE","state":{raw}}}"#);
        let msg: Incoming = serde_json::from_str(&line).unwrap();
        let echo: Value = serde_json::from_str(&state_echo(msg.state.unwrap(), 2, 0).unwrap()).unwrap();
        assert_eq!(echo["state"]["global"]["shared_state"]["x"], "y");
        assert_eq!(echo["state"]["sourceStats"]["recordCount"], 2.0);
        assert_eq!(echo["state"]["destinationStats"]["recordCount"], 2.0);
    }
}
