//! OpenLineage run events for every ridelake job (bronze sync, silver build, gold build), so
//! that a lineage server (Marquez, OpenMetadata's OpenLineage endpoint) links each table to the
//! tables it was built from.
//!
//! A run sends a `START` event, then one `COMPLETE` (with its inputs and outputs, their Delta
//! versions and row counts) or `FAIL` (with the error). Datasets are named as the OpenLineage
//! naming spec says for object stores and files: namespace `s3://<bucket>` and name `<key path>`,
//! or namespace `file` and name the absolute path.
//!
//! Events go to an HTTP endpoint (the standard `OPENLINEAGE_URL`, `OPENLINEAGE_ENDPOINT`,
//! `OPENLINEAGE_API_KEY` variables) and/or are appended, one JSON document per line, to a file
//! (`RIDELAKE_OPENLINEAGE_FILE`). Sending lineage never fails the run: errors are returned for
//! the caller to log. Facets carry the `_producer` and `_schemaURL` of the spec versions that
//! openlineage-python 1.54 produces, so the official client reads them back unchanged.

use std::io::Write as _;
use std::path::PathBuf;

use serde_json::{Map, Value, json};
use url::Url;

use crate::error::{CoreError, Result};

/// Standard OpenLineage client variable: base URL of the lineage HTTP API.
pub const ENV_URL: &str = "OPENLINEAGE_URL";
/// Standard OpenLineage client variable: path of the endpoint under the URL.
pub const ENV_ENDPOINT: &str = "OPENLINEAGE_ENDPOINT";
/// Standard OpenLineage client variable: bearer token.
pub const ENV_API_KEY: &str = "OPENLINEAGE_API_KEY";
/// Standard OpenLineage client variable: namespace of the jobs.
pub const ENV_NAMESPACE: &str = "OPENLINEAGE_NAMESPACE";
/// ridelake: file to append events to (one JSON document per line).
pub const ENV_FILE: &str = "RIDELAKE_OPENLINEAGE_FILE";
/// Environment variable that allows sending the API key over plain `http://` to another host.
pub const ENV_ALLOW_PLAIN_HTTP: &str = "OPENLINEAGE_ALLOW_PLAIN_HTTP";
/// The endpoint of the OpenLineage HTTP API when `OPENLINEAGE_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "api/v1/lineage";
/// The job namespace when `OPENLINEAGE_NAMESPACE` is not set.
pub const DEFAULT_NAMESPACE: &str = "ridelake";

const SPEC: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const FACETS: &str = "https://openlineage.io/spec/facets";

/// Where events go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineageTarget {
    /// Base URL of an OpenLineage HTTP API (e.g. `http://marquez:5000`).
    pub url: Option<String>,
    /// Endpoint path under `url`.
    pub endpoint: String,
    /// Bearer token for the HTTP API.
    pub api_key: Option<String>,
    /// File to append events to.
    pub file: Option<PathBuf>,
    /// Namespace of our jobs.
    pub namespace: String,
    /// The API key may go over plain `http://` to another host than this one (it always may over
    /// https and to loopback).
    pub allow_plain_http: bool,
}

impl LineageTarget {
    /// The target the environment names (unset or empty variables are not used).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        LineageTarget {
            url: var(ENV_URL),
            endpoint: var(ENV_ENDPOINT).unwrap_or_else(|| DEFAULT_ENDPOINT.into()),
            api_key: var(ENV_API_KEY),
            file: var(ENV_FILE).map(PathBuf::from),
            namespace: var(ENV_NAMESPACE).unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
            allow_plain_http: var(ENV_ALLOW_PLAIN_HTTP).is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes")),
        }
    }

    /// This target, with each unset part taken from `fallback`.
    pub fn or(self, fallback: LineageTarget) -> Self {
        LineageTarget {
            url: self.url.or(fallback.url),
            endpoint: if self.endpoint.is_empty() { fallback.endpoint } else { self.endpoint },
            api_key: self.api_key.or(fallback.api_key),
            file: self.file.or(fallback.file),
            namespace: if self.namespace.is_empty() { fallback.namespace } else { self.namespace },
            allow_plain_http: self.allow_plain_http || fallback.allow_plain_http,
        }
    }

    /// Whether events go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.url.is_some() || self.file.is_some()
    }

    /// Sends one event to every configured destination; the error lists those that failed.
    pub async fn emit(&self, event: &Value) -> Result<()> {
        let mut failures = Vec::new();
        if let Some(base) = &self.url
            && let Err(e) = post(base, &self.endpoint, self.api_key.as_deref(), self.allow_plain_http, event).await
        {
            failures.push(e);
        }
        if let Some(path) = &self.file
            && let Err(e) = append_line(path, event)
        {
            failures.push(format!("cannot append to {}: {e}", path.display()));
        }
        if failures.is_empty() { Ok(()) } else { Err(CoreError::Lineage(failures.join("; "))) }
    }
}

async fn post(base: &str, endpoint: &str, api_key: Option<&str>, plain_http_allowed: bool, event: &Value) -> std::result::Result<(), String> {
    let segments: Vec<&str> = endpoint.split('/').collect();
    let url = crate::http::endpoint(base, &segments, ENV_URL)?;
    let body = serde_json::to_vec(event).map_err(|e| format!("cannot encode the event: {e}"))?;
    let bearer = api_key.map(|token| crate::http::Bearer { token, plain_http_allowed, setting: "observability.openlineage_allow_plain_http (or OPENLINEAGE_ALLOW_PLAIN_HTTP=true)" });
    crate::http::post(url, "the lineage endpoint", "application/json", body, bearer).await
}

fn append_line(path: &std::path::Path, event: &Value) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut line = serde_json::to_vec(event)?;
    line.push(b'\n');
    // One write of a whole line in append mode: concurrent writers do not interleave lines.
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(&line)
}

/// A table as an OpenLineage dataset, with what is known of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    /// `s3://bucket` or `file`.
    pub namespace: String,
    /// Key path in the bucket, or absolute path.
    pub name: String,
    /// The table's description.
    pub description: Option<String>,
    /// Delta version read or written.
    pub version: Option<i64>,
    /// Rows read or written by this run.
    pub rows: Option<u64>,
    /// Bytes read or written by this run.
    pub bytes: Option<u64>,
    /// Files read or written by this run.
    pub files: Option<u64>,
    /// Columns: name, type, description.
    pub fields: Vec<(String, String, Option<String>)>,
}

impl Dataset {
    /// The dataset of the table at `url` (credentials never appear in a table URL).
    pub fn at(url: &Url) -> Self {
        let (namespace, name) = match url.scheme() {
            "file" => ("file".to_owned(), url.to_file_path().map(|p| p.display().to_string()).unwrap_or_else(|_| url.path().to_owned())),
            scheme => (
                format!("{}://{}", if scheme == "s3a" { "s3" } else { scheme }, url.host_str().unwrap_or_default()),
                url.path().trim_matches('/').to_owned(),
            ),
        };
        Dataset { namespace, name, ..Dataset::default() }
    }

    fn to_json(&self, producer: &str, statistics_facet: Option<&str>) -> Value {
        let mut facets = Map::new();
        if let Some(description) = &self.description {
            facets.insert("documentation".into(), facet(producer, "1-1-0/DocumentationDatasetFacet", json!({"description": description})));
        }
        if let Some(version) = self.version {
            facets.insert("version".into(), facet(producer, "1-0-1/DatasetVersionDatasetFacet", json!({"datasetVersion": version.to_string()})));
        }
        if !self.fields.is_empty() {
            let fields: Vec<Value> = self
                .fields
                .iter()
                .map(|(name, ty, doc)| {
                    let mut field = json!({"name": name, "type": ty});
                    if let Some(doc) = doc {
                        field["description"] = json!(doc);
                    }
                    field
                })
                .collect();
            facets.insert("schema".into(), facet(producer, "1-2-0/SchemaDatasetFacet", json!({"fields": fields})));
        }
        let mut dataset = json!({"namespace": self.namespace, "name": self.name, "facets": facets});
        let mut statistics = Map::new();
        for (key, value) in [("rowCount", self.rows), ("size", self.bytes), ("fileCount", self.files)] {
            if let Some(v) = value {
                statistics.insert(key.into(), json!(v));
            }
        }
        if let (Some(kind), false) = (statistics_facet, statistics.is_empty()) {
            let (key, schema) = match kind {
                "input" => ("inputStatistics", "1-0-0/InputStatisticsInputDatasetFacet"),
                _ => ("outputStatistics", "1-0-2/OutputStatisticsOutputDatasetFacet"),
            };
            let facets_key = if kind == "input" { "inputFacets" } else { "outputFacets" };
            dataset[facets_key] = json!({key: facet(producer, schema, Value::Object(statistics))});
        }
        dataset
    }
}

fn facet(producer: &str, schema: &str, body: Value) -> Value {
    let name = schema.rsplit('/').next().unwrap_or(schema);
    let mut object = match body {
        Value::Object(map) => map,
        other => Map::from_iter([("value".to_owned(), other)]),
    };
    object.insert("_producer".into(), json!(producer));
    object.insert("_schemaURL".into(), json!(format!("{FACETS}/{schema}.json#/$defs/{name}")));
    Value::Object(object)
}

/// One run of a job, from START to COMPLETE or FAIL.
#[derive(Debug, Clone)]
pub struct LineageRun {
    /// The run's id (a UUID, shared by its events).
    pub run_id: String,
    /// Job name, e.g. `ridelake.silver`.
    pub job: String,
    job_description: String,
    producer: String,
    version: String,
    namespace: String,
}

impl LineageRun {
    /// A new run of `job` in `namespace`, produced by `component` (`destination-delta-lake`,
    /// `ridelake`) at `version`.
    pub fn new(namespace: &str, job: &str, job_description: &str, component: &str, version: &str) -> Self {
        LineageRun {
            run_id: uuid::Uuid::new_v4().to_string(),
            job: job.to_owned(),
            job_description: job_description.to_owned(),
            producer: format!("https://github.com/ridelake/ridelake/tree/v{version}/{component}"),
            version: version.to_owned(),
            namespace: namespace.to_owned(),
        }
    }

    /// The `START` event.
    pub fn start(&self, inputs: &[Dataset]) -> Value {
        self.event("START", inputs, &[], None)
    }

    /// The `COMPLETE` event with what the run read and wrote.
    pub fn complete(&self, inputs: &[Dataset], outputs: &[Dataset]) -> Value {
        self.event("COMPLETE", inputs, outputs, None)
    }

    /// The `FAIL` event with the error a user would read.
    pub fn fail(&self, inputs: &[Dataset], message: &str) -> Value {
        self.event("FAIL", inputs, &[], Some(message))
    }

    fn event(&self, kind: &str, inputs: &[Dataset], outputs: &[Dataset], error: Option<&str>) -> Value {
        let producer = self.producer.as_str();
        let mut run_facets = Map::new();
        run_facets.insert(
            "processing_engine".into(),
            facet(producer, "1-1-1/ProcessingEngineRunFacet", json!({"name": "ridelake", "version": self.version})),
        );
        if let Some(message) = error {
            run_facets.insert(
                "errorMessage".into(),
                facet(producer, "1-0-1/ErrorMessageRunFacet", json!({"message": message, "programmingLanguage": "Rust"})),
            );
        }
        let job_facets = json!({
            "jobType": facet(producer, "2-0-4/JobTypeJobFacet", json!({"processingType": "BATCH", "integration": "RIDELAKE", "jobType": "JOB"})),
            "documentation": facet(producer, "1-1-0/DocumentationJobFacet", json!({"description": self.job_description})),
        });
        json!({
            "eventType": kind,
            "eventTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "producer": producer,
            "schemaURL": SPEC,
            "run": {"runId": self.run_id, "facets": run_facets},
            "job": {"namespace": self.namespace, "name": self.job, "facets": job_facets},
            "inputs": inputs.iter().map(|d| d.to_json(producer, Some("input"))).collect::<Vec<_>>(),
            "outputs": outputs.iter().map(|d| d.to_json(producer, Some("output"))).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_follow_the_naming_spec() -> Result<()> {
        let s3 = Dataset::at(&Url::parse("s3://lake/prod/silver/rides").map_err(|e| CoreError::Lineage(e.to_string()))?);
        assert_eq!((s3.namespace.as_str(), s3.name.as_str()), ("s3://lake", "prod/silver/rides"));
        let local = Dataset::at(&Url::parse("file:///data/lake/gold/kpis").map_err(|e| CoreError::Lineage(e.to_string()))?);
        assert_eq!((local.namespace.as_str(), local.name.as_str()), ("file", "/data/lake/gold/kpis"));
        Ok(())
    }

    #[test]
    fn a_complete_event_carries_versions_and_counts() {
        let run = LineageRun::new("ridelake", "ridelake.silver", "silver build", "ridelake", "0.1.0");
        let input = Dataset { namespace: "file".into(), name: "/l/bronze/rides".into(), version: Some(3), rows: Some(10), ..Dataset::default() };
        let output = Dataset {
            namespace: "file".into(),
            name: "/l/silver/rides".into(),
            description: Some("rides".into()),
            version: Some(7),
            rows: Some(9),
            fields: vec![("id".into(), "long".into(), Some("ride id".into()))],
            ..Dataset::default()
        };
        let event = run.complete(&[input], &[output]);
        assert_eq!(event["eventType"], "COMPLETE");
        assert_eq!(event["inputs"][0]["inputFacets"]["inputStatistics"]["rowCount"], 10);
        assert_eq!(event["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"], 9);
        assert_eq!(event["outputs"][0]["facets"]["version"]["datasetVersion"], "7");
        assert_eq!(
            event["outputs"][0]["facets"]["schema"]["_schemaURL"],
            "https://openlineage.io/spec/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet"
        );
        assert_eq!(event["run"]["facets"]["processing_engine"]["version"], "0.1.0");
        assert!(uuid::Uuid::parse_str(event["run"]["runId"].as_str().unwrap_or_default()).is_ok());
        let fail = run.fail(&[], "boom");
        assert_eq!(fail["run"]["runId"], event["run"]["runId"], "one run id for all events of a run");
        assert_eq!(fail["run"]["facets"]["errorMessage"]["message"], "boom");
    }

    #[tokio::test]
    async fn file_target_appends_one_line_per_event() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let target = LineageTarget { file: Some(dir.path().join("ol/events.jsonl")), ..LineageTarget::default() };
        let run = LineageRun::new("ns", "job", "d", "c", "1");
        target.emit(&run.start(&[])).await?;
        target.emit(&run.complete(&[], &[])).await?;
        let text = std::fs::read_to_string(dir.path().join("ol/events.jsonl"))?;
        let kinds: Vec<String> =
            text.lines().map(|l| serde_json::from_str::<Value>(l).map(|v| v["eventType"].to_string())).collect::<std::result::Result<_, _>>()?;
        assert_eq!(kinds, ["\"START\"", "\"COMPLETE\""]);
        Ok(())
    }
}
