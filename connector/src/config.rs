//! The destination's configuration: parsed from the `--config` file (shape: `airbyte-spec.json`)
//! and validated once into [`DestinationOptions`]. Every refusal is a config error naming the
//! field to fix.

use std::path::PathBuf;

use ridelake_core::lineage::LineageTarget;
use ridelake_core::metrics::MetricsTarget;
use ridelake_core::observability::Observability;
use ridelake_core::storage::{RetryBound, S3Location, StorageConfig};
use serde::Deserialize;

use crate::error::{ConnectorError, Result};

/// The SPEC, embedded from the repository's `airbyte-spec.json` (its one source).
pub const SPEC_JSON: &str = include_str!("../../airbyte-spec.json");

#[derive(Deserialize)]
#[serde(tag = "storage_type")]
enum StorageSection {
    S3 {
        s3_bucket_name: String,
        #[serde(default)]
        s3_bucket_path: String,
        #[serde(default)]
        s3_bucket_region: String,
        #[serde(default)]
        s3_endpoint: Option<String>,
        #[serde(default)]
        access_key_id: Option<String>,
        #[serde(default)]
        secret_access_key: Option<String>,
        #[serde(default)]
        s3_max_retries: Option<u32>,
        #[serde(default)]
        s3_retry_timeout_seconds: Option<u64>,
    },
    Local {
        local_path: String,
    },
}

#[derive(Deserialize)]
struct ConfigFile {
    storage: StorageSection,
    #[serde(default)]
    target_file_size_mb: Option<u64>,
    #[serde(default)]
    flush_interval_seconds: Option<u64>,
    #[serde(default)]
    commit_max_mb: Option<u64>,
    #[serde(default)]
    memory_budget_mb: Option<u64>,
    #[serde(default)]
    compression: Option<String>,
    #[serde(default)]
    default_namespace: Option<String>,
    #[serde(default)]
    max_line_mb: Option<u64>,
    #[serde(default)]
    observability: ObservabilitySection,
}

#[derive(Deserialize, Default)]
struct ObservabilitySection {
    #[serde(default)]
    pushgateway_url: Option<String>,
    #[serde(default)]
    metrics_file: Option<String>,
    #[serde(default)]
    openlineage_url: Option<String>,
    #[serde(default)]
    openlineage_api_key: Option<String>,
    #[serde(default)]
    openlineage_file: Option<String>,
    #[serde(default)]
    openlineage_allow_plain_http: bool,
}

/// Parquet compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Fast, the Delta default.
    Snappy,
    /// Smaller files.
    Zstd,
    /// None.
    Uncompressed,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct DestinationOptions {
    /// Where tables go.
    pub storage: StorageConfig,
    /// Roll Parquet files at this size.
    pub target_file_size_bytes: u64,
    /// Max delay between a state's arrival and its commit.
    pub flush_interval: std::time::Duration,
    /// Commit once this many Parquet bytes were written since the last commit.
    pub commit_max_bytes: u64,
    /// Budget for open file buffers.
    pub memory_budget_bytes: u64,
    /// Parquet codec.
    pub compression: Compression,
    /// Folder for streams without namespace.
    pub default_namespace: String,
    /// Longest input line accepted.
    pub max_line_bytes: usize,
    /// Where the sync's metrics and OpenLineage events go (config first, then the environment).
    pub observability: Observability,
}

const MIB: u64 = 1024 * 1024;

fn empty_to_none(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// The S3 retry settings, defaults filled in and ranges checked.
fn retry_bound(max_retries: Option<u32>, timeout_seconds: Option<u64>) -> Result<RetryBound> {
    let default = RetryBound::default();
    let bound = RetryBound {
        max_retries: max_retries.unwrap_or(default.max_retries),
        timeout_seconds: timeout_seconds.unwrap_or(default.timeout_seconds),
    };
    if bound.max_retries > 100 {
        return Err(ConnectorError::Config(format!("s3_max_retries must be 0..100, got {}", bound.max_retries)));
    }
    if !(1..=3600).contains(&bound.timeout_seconds) {
        return Err(ConnectorError::Config(format!("s3_retry_timeout_seconds must be 1..3600, got {}", bound.timeout_seconds)));
    }
    Ok(bound)
}

impl DestinationOptions {
    /// Reads and validates the config file at `path`.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConnectorError::Config(format!("cannot read config file {}: {e}", path.display())))?;
        Self::from_json(&text)
    }

    /// Parses and validates config JSON.
    pub fn from_json(text: &str) -> Result<Self> {
        let file: ConfigFile = serde_json::from_str(text).map_err(|e| {
            ConnectorError::Config(format!(
                "{e}. Expected {{\"storage\": {{\"storage_type\": \"S3\", \"s3_bucket_name\": …}}}} or \
                 {{\"storage\": {{\"storage_type\": \"Local\", \"local_path\": …}}}}"
            ))
        })?;
        let storage = match file.storage {
            StorageSection::Local { local_path } => StorageConfig::Local { path: PathBuf::from(local_path) },
            StorageSection::S3 {
                s3_bucket_name,
                s3_bucket_path,
                s3_bucket_region,
                s3_endpoint,
                access_key_id,
                secret_access_key,
                s3_max_retries,
                s3_retry_timeout_seconds,
            } => StorageConfig::S3(S3Location {
                bucket: s3_bucket_name,
                prefix: s3_bucket_path,
                region: s3_bucket_region,
                endpoint: empty_to_none(s3_endpoint),
                access_key_id: empty_to_none(access_key_id),
                secret_access_key: empty_to_none(secret_access_key),
                retry: retry_bound(s3_max_retries, s3_retry_timeout_seconds)?,
            }),
        }
        .validated()?;
        let target_mb = file.target_file_size_mb.unwrap_or(128);
        if !(1..=4096).contains(&target_mb) {
            return Err(ConnectorError::Config(format!("target_file_size_mb must be 1..4096, got {target_mb}")));
        }
        let memory_mb = file.memory_budget_mb.unwrap_or(256);
        if memory_mb < 32 {
            return Err(ConnectorError::Config(format!("memory_budget_mb must be at least 32, got {memory_mb}")));
        }
        let compression = match file.compression.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("snappy") => Compression::Snappy,
            Some("zstd") => Compression::Zstd,
            Some("uncompressed") | Some("none") => Compression::Uncompressed,
            Some(other) => {
                return Err(ConnectorError::Config(format!(
                    "compression must be snappy, zstd or uncompressed, got {other:?}"
                )));
            }
        };
        let max_line_mb = file.max_line_mb.unwrap_or(100);
        if !(1..=2048).contains(&max_line_mb) {
            return Err(ConnectorError::Config(format!("max_line_mb must be 1..2048, got {max_line_mb}")));
        }
        let default_namespace = file.default_namespace.unwrap_or_else(|| "default".into());
        ridelake_core::bronze::safe_segment("namespace", &default_namespace)?;
        let section = file.observability;
        let pushgateway_url = empty_to_none(section.pushgateway_url);
        if let Some(url) = &pushgateway_url {
            ridelake_core::metrics::push_url(url, "check")
                .map_err(|e| ConnectorError::Config(format!("observability.pushgateway_url: {e}")))?;
        }
        let observability = Observability {
            metrics: MetricsTarget { pushgateway_url, file: empty_to_none(section.metrics_file).map(PathBuf::from) },
            lineage: LineageTarget {
                url: empty_to_none(section.openlineage_url),
                api_key: empty_to_none(section.openlineage_api_key),
                file: empty_to_none(section.openlineage_file).map(PathBuf::from),
                allow_plain_http: section.openlineage_allow_plain_http,
                ..LineageTarget::default()
            },
        }
        .or_env();
        Ok(DestinationOptions {
            storage,
            target_file_size_bytes: target_mb * MIB,
            flush_interval: std::time::Duration::from_secs(file.flush_interval_seconds.unwrap_or(60)),
            commit_max_bytes: file.commit_max_mb.unwrap_or(1024).max(1) * MIB,
            memory_budget_bytes: memory_mb * MIB,
            compression,
            default_namespace,
            max_line_bytes: (max_line_mb * MIB) as usize,
            observability,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_is_valid_json_with_secrets_marked() {
        let spec: serde_json::Value = serde_json::from_str(SPEC_JSON).unwrap();
        let s3 = &spec["connectionSpecification"]["properties"]["storage"]["oneOf"][0]["properties"];
        assert_eq!(s3["secret_access_key"]["airbyte_secret"], true);
        assert_eq!(s3["access_key_id"]["airbyte_secret"], true);
    }

    #[test]
    fn parses_minio_config() {
        let o = DestinationOptions::from_json(
            r#"{"storage":{"storage_type":"S3","s3_bucket_name":"lake","s3_bucket_path":"bronze",
                "s3_endpoint":"http://minio:9000","access_key_id":"k","secret_access_key":"s"},"compression":"zstd"}"#,
        )
        .unwrap();
        assert_eq!(o.compression, Compression::Zstd);
        assert_eq!(o.target_file_size_bytes, 128 * MIB);
        let StorageConfig::S3(s3) = &o.storage else { panic!("not S3") };
        assert_eq!(s3.retry, RetryBound::default());
        assert_eq!(o.storage.storage_options()["max_retries"], "10");
    }

    #[test]
    fn retries_are_bounded_by_the_config() {
        let o = DestinationOptions::from_json(
            r#"{"storage":{"storage_type":"S3","s3_bucket_name":"lake","s3_endpoint":"http://minio:9000",
                "access_key_id":"k","secret_access_key":"s","s3_max_retries":2,"s3_retry_timeout_seconds":5}}"#,
        )
        .unwrap();
        let options = o.storage.storage_options();
        assert_eq!((options["max_retries"].as_str(), options["retry_timeout"].as_str()), ("2", "5s"));
        let too_long = r#"{"storage":{"storage_type":"S3","s3_bucket_name":"lake","s3_retry_timeout_seconds":0}}"#;
        assert!(DestinationOptions::from_json(too_long).unwrap_err().to_string().contains("s3_retry_timeout_seconds"));
    }

    #[test]
    fn observability_settings_come_from_the_config() {
        let o = DestinationOptions::from_json(
            r#"{"storage":{"storage_type":"Local","local_path":"/x"},"observability":{"pushgateway_url":"http://pg:9091",
                "metrics_file":"/m/bronze.prom","openlineage_url":"http://ol:5000","openlineage_file":""}}"#,
        )
        .unwrap();
        let targets = &o.observability;
        assert_eq!(targets.metrics.pushgateway_url.as_deref(), Some("http://pg:9091"));
        assert_eq!(targets.metrics.file, Some(PathBuf::from("/m/bronze.prom")));
        assert_eq!(targets.lineage.url.as_deref(), Some("http://ol:5000"));
        assert_eq!(targets.lineage.endpoint, "api/v1/lineage", "the OpenLineage default endpoint");
    }

    #[test]
    fn refuses_bad_configs_with_field_names() {
        for (text, needle) in [
            (r#"{}"#, "storage"),
            (r#"{"storage":{"storage_type":"FTP"}}"#, "storage_type"),
            (r#"{"storage":{"storage_type":"Local","local_path":"/x"},"compression":"lz9"}"#, "compression"),
            (r#"{"storage":{"storage_type":"Local","local_path":"/x"},"target_file_size_mb":0}"#, "target_file_size_mb"),
            (r#"{"storage":{"storage_type":"S3","s3_bucket_name":"b","s3_endpoint":"http://h:1"}}"#, "access_key_id"),
            (r#"{"storage":{"storage_type":"Local","local_path":"/x"},"observability":{"pushgateway_url":"pg:9091"}}"#, "pushgateway_url"),
        ] {
            let err = DestinationOptions::from_json(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
