//! The configured catalog (`--catalog`): which streams to expect, their fields and types, their
//! sync mode and generation. [`Catalog::load`] turns it into one [`StreamPlan`] per stream and
//! refuses catalogs whose streams would land in the same table folder.

use std::collections::HashMap;
use std::fmt;

use ridelake_core::bronze::{ColumnType, safe_segment};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::error::{ConnectorError, Result};

/// How a stream's existing data is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Add rows; keep what is there.
    Append,
    /// Replace the table's content atomically at the end of a successful sync.
    Overwrite,
    /// Like append in bronze (dedup happens in silver); kept to accept the catalog as is.
    AppendDedup,
}

/// Everything the writer needs to know about one stream.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    /// Namespace as sent by the source.
    pub namespace: Option<String>,
    /// Stream name as sent by the source.
    pub name: String,
    /// Safe folder segments `(namespace, stream)`.
    pub folder: (String, String),
    /// Declared fields, in catalog order, with their logical types.
    pub fields: Vec<(String, ColumnType)>,
    /// Sync mode.
    pub sync_mode: SyncMode,
    /// Catalog generation (null on old platforms).
    pub generation_id: Option<i64>,
    /// Generations below this are deleted at the end of a successful sync (0/None: nothing).
    pub minimum_generation_id: Option<i64>,
    /// Sync id, stored in `_airbyte_meta.sync_id`.
    pub sync_id: Option<i64>,
}

impl StreamPlan {
    /// `namespace.name` for messages.
    pub fn label(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A JSON object's entries in document order.
struct Ordered(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
struct JsonSchema {
    #[serde(default)]
    properties: Option<Ordered>,
}

#[derive(Deserialize)]
struct Stream {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    json_schema: JsonSchema,
}

#[derive(Deserialize)]
struct ConfiguredStream {
    stream: Stream,
    destination_sync_mode: String,
    #[serde(default)]
    generation_id: Option<i64>,
    #[serde(default)]
    minimum_generation_id: Option<i64>,
    #[serde(default)]
    sync_id: Option<i64>,
}

#[derive(Deserialize)]
struct ConfiguredCatalog {
    streams: Vec<ConfiguredStream>,
}

/// The streams of a sync, with fast lookup by `(namespace, name)`.
#[derive(Debug)]
pub struct Catalog {
    /// One plan per configured stream.
    pub streams: Vec<StreamPlan>,
    by_key: HashMap<(Option<String>, String), usize>,
    by_name: HashMap<String, Vec<usize>>,
}

impl Catalog {
    /// Reads the catalog file.
    pub fn load(path: &std::path::Path, default_namespace: &str) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConnectorError::Catalog(format!("cannot read {}: {e}", path.display())))?;
        Self::from_json(&text, default_namespace)
    }

    /// Parses catalog JSON.
    pub fn from_json(text: &str, default_namespace: &str) -> Result<Self> {
        let catalog: ConfiguredCatalog =
            serde_json::from_str(text).map_err(|e| ConnectorError::Catalog(e.to_string()))?;
        let mut streams = Vec::new();
        let mut folders: HashMap<(String, String), String> = HashMap::new();
        for configured in catalog.streams {
            let s = configured.stream;
            let sync_mode = match configured.destination_sync_mode.as_str() {
                "append" => SyncMode::Append,
                "overwrite" => SyncMode::Overwrite,
                "append_dedup" => SyncMode::AppendDedup,
                other => {
                    return Err(ConnectorError::Catalog(format!(
                        "stream {}: destination_sync_mode {other:?} is not supported (use append, append_dedup or overwrite)",
                        s.name
                    )));
                }
            };
            let namespace = s.namespace.filter(|ns| !ns.is_empty());
            let ns_segment = safe_segment("namespace", namespace.as_deref().unwrap_or(default_namespace))?;
            let folder = (ns_segment, safe_segment("stream", &s.name)?);
            let label = format!("{}.{}", namespace.as_deref().unwrap_or(""), s.name);
            let folder_key = (folder.0.to_ascii_lowercase(), folder.1.to_ascii_lowercase());
            if let Some(other) = folders.insert(folder_key, label.clone()) {
                return Err(ConnectorError::Catalog(format!(
                    "streams {other} and {label} would be written to the same table {}/{}; rename one in the connection",
                    folder.0, folder.1
                )));
            }
            let fields = s
                .json_schema
                .properties
                .map(|p| p.0)
                .unwrap_or_default()
                .into_iter()
                .map(|(name, schema)| {
                    let t = ColumnType::from_json_schema(&schema);
                    (name, t)
                })
                .collect();
            streams.push(StreamPlan {
                namespace,
                name: s.name,
                folder,
                fields,
                sync_mode,
                generation_id: configured.generation_id,
                minimum_generation_id: configured.minimum_generation_id,
                sync_id: configured.sync_id,
            });
        }
        let mut by_key = HashMap::new();
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, s) in streams.iter().enumerate() {
            by_key.insert((s.namespace.clone(), s.name.clone()), i);
            by_name.entry(s.name.clone()).or_default().push(i);
        }
        Ok(Catalog { streams, by_key, by_name })
    }

    /// The stream a record belongs to. A record without namespace matches a stream of that name
    /// when exactly one exists.
    pub fn find(&self, namespace: Option<&str>, name: &str) -> Option<usize> {
        let namespace = namespace.filter(|ns| !ns.is_empty());
        if let Some(i) = self.by_key.get(&(namespace.map(str::to_owned), name.to_owned())) {
            return Some(*i);
        }
        match self.by_name.get(name) {
            Some(candidates) if namespace.is_none() && candidates.len() == 1 => Some(candidates[0]),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_field_order_and_types() {
        let text = ridelake_core::generator::configured_catalog("ridehail", "append", 1, 0, 7);
        let c = Catalog::from_json(&text, "default").unwrap();
        let rides = &c.streams[c.find(Some("ridehail"), "rides").unwrap()];
        assert_eq!(rides.fields[0].0, "id");
        assert_eq!(rides.fields[1].0, "customer_id");
        // source-mysql's real types: DATETIME is a timestamp without zone, the CDC times are text.
        assert_eq!(rides.fields[4], ("requested_at".into(), ColumnType::TimestampNtz));
        assert!(rides.fields.iter().any(|f| *f == ("_ab_cdc_updated_at".into(), ColumnType::String)));
        assert_eq!(rides.sync_id, Some(7));
        assert_eq!(rides.folder, ("ridehail".into(), "rides".into()));
        assert!(c.find(Some("other"), "rides").is_none());
        assert_eq!(c.find(None, "rides"), c.find(Some("ridehail"), "rides"));
    }

    #[test]
    fn refuses_colliding_and_unknown_modes() {
        let s = |name: &str, mode: &str| {
            serde_json::json!({"stream": {"name": name, "json_schema": {"properties": {}}}, "destination_sync_mode": mode})
        };
        let text = serde_json::json!({"streams": [s("a b", "append"), s("a_b", "append")]}).to_string();
        assert!(Catalog::from_json(&text, "default").unwrap_err().to_string().contains("same table"));
        let text = serde_json::json!({"streams": [s("a", "update")]}).to_string();
        assert!(Catalog::from_json(&text, "default").unwrap_err().to_string().contains("not supported"));
    }
}
