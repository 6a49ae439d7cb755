//! Where the lake lives: a local folder or an S3-compatible bucket (MinIO, Ceph RGW, AWS).
//!
//! [`StorageConfig`] is the one description both the connector and the Python library accept.
//! It yields table URLs ([`StorageConfig::table_url`]) that always stay below the configured
//! base, and the delta-rs storage options ([`StorageConfig::storage_options`]) that make MinIO
//! work: custom endpoint, path-style requests, plain http when the endpoint says `http://`.

use std::collections::HashMap;
use std::path::PathBuf;

use url::Url;

use crate::error::{CoreError, Result};

/// An S3-compatible location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// Bucket name.
    pub bucket: String,
    /// Prefix inside the bucket (no leading or trailing `/` needed).
    pub prefix: String,
    /// Region; MinIO accepts any, `us-east-1` when empty.
    pub region: String,
    /// Endpoint URL for MinIO and other S3-compatible servers; `None` for AWS.
    pub endpoint: Option<String>,
    /// Access key id; `None` uses the AWS credential chain (AWS only).
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// How failed requests are retried.
    pub retry: RetryBound,
}

/// How object_store retries a failed request (5xx, `SlowDown`, a reset or refused connection, a
/// timeout): exponential backoff with random jitter, until either bound is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBound {
    /// Retries of one request at most.
    pub max_retries: u32,
    /// Seconds after the first attempt of a request after which it is not retried again.
    pub timeout_seconds: u64,
}

impl Default for RetryBound {
    fn default() -> Self {
        RetryBound { max_retries: 10, timeout_seconds: 180 }
    }
}

impl RetryBound {
    /// First pause of [`RetryBound::pause_before`]; each later one doubles, up to the maximum.
    const FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);
    const MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(15);

    /// How long to wait before retrying an operation whose `failed`-th attempt (1-based) just
    /// failed, `elapsed` after the first attempt started: exponential backoff with full jitter
    /// (uniform between half and all of the step, so that writers that failed together do not
    /// retry together); `None` once either bound is reached.
    pub fn pause_before(&self, failed: u32, elapsed: std::time::Duration) -> Option<std::time::Duration> {
        if failed > self.max_retries || elapsed >= std::time::Duration::from_secs(self.timeout_seconds) {
            return None;
        }
        let step = Self::FIRST_PAUSE.saturating_mul(2u32.saturating_pow(failed.saturating_sub(1))).min(Self::MAX_PAUSE);
        Some(step.mul_f64(0.5 + fastrand::f64() / 2.0))
    }
}

/// Where the lake's tables are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// A folder on the local file system (created when missing).
    Local {
        /// Absolute or relative path of the base folder.
        path: PathBuf,
    },
    /// An S3-compatible bucket and prefix.
    S3(S3Location),
}

impl StorageConfig {
    /// Checks the configuration and normalises it (absolute local path, trimmed prefix).
    pub fn validated(self) -> Result<Self> {
        match self {
            StorageConfig::Local { path } => {
                if path.as_os_str().is_empty() {
                    return Err(CoreError::InvalidStorage("local_path is empty".into()));
                }
                let path = if path.is_absolute() { path } else { std::env::current_dir()?.join(path) };
                Ok(StorageConfig::Local { path })
            }
            StorageConfig::S3(mut s3) => {
                s3.bucket = s3.bucket.trim().to_owned();
                if s3.bucket.is_empty() || s3.bucket.contains('/') {
                    return Err(CoreError::InvalidStorage(format!(
                        "s3_bucket_name {:?} must be a bare bucket name such as \"lake\"",
                        s3.bucket
                    )));
                }
                s3.prefix = s3.prefix.trim_matches('/').to_owned();
                if s3.prefix.split('/').any(|seg| seg == ".." || seg == ".") {
                    return Err(CoreError::InvalidStorage(format!(
                        "s3_bucket_path {:?} may not contain '.' or '..' segments",
                        s3.prefix
                    )));
                }
                if let Some(endpoint) = &s3.endpoint {
                    let parsed = Url::parse(endpoint).map_err(|e| {
                        CoreError::InvalidStorage(format!(
                            "s3_endpoint {endpoint:?} is not a URL ({e}); write it like http://minio:9000"
                        ))
                    })?;
                    if !matches!(parsed.scheme(), "http" | "https") {
                        return Err(CoreError::InvalidStorage(format!(
                            "s3_endpoint {endpoint:?} must start with http:// or https://"
                        )));
                    }
                    if s3.access_key_id.is_none() || s3.secret_access_key.is_none() {
                        return Err(CoreError::InvalidStorage(
                            "access_key_id and secret_access_key are required with a custom s3_endpoint".into(),
                        ));
                    }
                }
                if s3.region.trim().is_empty() {
                    s3.region = "us-east-1".into();
                }
                Ok(StorageConfig::S3(s3))
            }
        }
    }

    /// A location given as a path or `s3://bucket/prefix` URI with delta-rs style options
    /// (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`; keys
    /// case-insensitive), as Python users of `deltalake` and Polars write them.
    pub fn from_uri(uri: &str, options: &HashMap<String, String>) -> Result<Self> {
        let option = |names: &[&str]| {
            options.iter().find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n))).map(|(_, v)| v.clone())
        };
        let config = match uri.strip_prefix("s3://").or_else(|| uri.strip_prefix("s3a://")) {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                StorageConfig::S3(S3Location {
                    bucket: bucket.to_owned(),
                    prefix: prefix.to_owned(),
                    region: option(&["AWS_REGION", "region"]).unwrap_or_default(),
                    endpoint: option(&["AWS_ENDPOINT_URL", "AWS_ENDPOINT", "endpoint"]),
                    access_key_id: option(&["AWS_ACCESS_KEY_ID", "access_key_id"]),
                    secret_access_key: option(&["AWS_SECRET_ACCESS_KEY", "secret_access_key"]),
                    retry: RetryBound::default(),
                })
            }
            None if uri.contains("://") && !uri.starts_with("file://") => {
                return Err(CoreError::InvalidStorage(format!("{uri}: only local paths, file:// and s3:// are supported")));
            }
            None => StorageConfig::Local { path: PathBuf::from(uri.strip_prefix("file://").unwrap_or(uri)) },
        };
        config.validated()
    }

    /// The URL of the base location (a folder URL ending in `/`).
    pub fn base_url(&self) -> Result<Url> {
        match self {
            StorageConfig::Local { path } => Url::from_directory_path(path).map_err(|()| {
                CoreError::InvalidStorage(format!("local_path {} is not an absolute path", path.display()))
            }),
            StorageConfig::S3(s3) => {
                let mut text = format!("s3://{}/", s3.bucket);
                if !s3.prefix.is_empty() {
                    text.push_str(&s3.prefix);
                    text.push('/');
                }
                Url::parse(&text).map_err(|e| CoreError::InvalidStorage(format!("{text}: {e}")))
            }
        }
    }

    /// The URL of the table at `segments` below the base. Each segment must already be safe
    /// (see [`crate::bronze::safe_segment`]); this function refuses any that is not.
    pub fn table_url(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.base_url()?;
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| CoreError::InvalidStorage("base location cannot hold tables".into()))?;
            path.pop_if_empty();
            for segment in segments {
                if segment.is_empty() || *segment == "." || *segment == ".." || segment.contains(['/', '\\']) {
                    return Err(CoreError::InvalidName {
                        kind: "table path segment",
                        name: (*segment).to_owned(),
                        reason: "it is not a plain folder name",
                    });
                }
                path.push(segment);
            }
        }
        Ok(url)
    }

    /// delta-rs / object_store options for this location.
    pub fn storage_options(&self) -> HashMap<String, String> {
        let mut options = HashMap::new();
        if let StorageConfig::S3(s3) = self {
            options.insert("AWS_REGION".into(), s3.region.clone());
            if let Some(endpoint) = &s3.endpoint {
                options.insert("AWS_ENDPOINT_URL".into(), endpoint.clone());
                if endpoint.starts_with("http://") {
                    options.insert("AWS_ALLOW_HTTP".into(), "true".into());
                }
                // MinIO and most S3-compatible servers want path-style requests.
                options.insert("AWS_VIRTUAL_HOSTED_STYLE_REQUEST".into(), "false".into());
            }
            if let Some(key) = &s3.access_key_id {
                options.insert("AWS_ACCESS_KEY_ID".into(), key.clone());
            }
            if let Some(secret) = &s3.secret_access_key {
                options.insert("AWS_SECRET_ACCESS_KEY".into(), secret.clone());
            }
            // Fail fast on an unreachable endpoint instead of hanging for minutes.
            options.insert("connect_timeout".into(), "10s".into());
            // One attempt of a request (a multipart part included) may take this long, and never
            // longer than the whole retry time limit: a server that accepts connections but
            // never answers fails the sync within the limit.
            options.insert("timeout".into(), format!("{}s", s3.retry.timeout_seconds.min(300)));
            options.insert("max_retries".into(), s3.retry.max_retries.to_string());
            options.insert("retry_timeout".into(), format!("{}s", s3.retry.timeout_seconds));
        }
        options
    }

    /// A human-readable description without secrets, for logs and errors.
    pub fn describe(&self) -> String {
        match self {
            StorageConfig::Local { path } => format!("local folder {}", path.display()),
            StorageConfig::S3(s3) => format!(
                "s3://{}/{} (endpoint {}, region {})",
                s3.bucket,
                s3.prefix,
                s3.endpoint.as_deref().unwrap_or("AWS"),
                s3.region
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minio() -> StorageConfig {
        StorageConfig::S3(S3Location {
            bucket: "lake".into(),
            prefix: "/bronze/".into(),
            region: String::new(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
            retry: RetryBound::default(),
        })
        .validated()
        .unwrap()
    }

    #[test]
    fn retry_pauses_grow_with_jitter_and_stop_at_the_bounds() {
        let bound = RetryBound { max_retries: 3, timeout_seconds: 60 };
        let zero = std::time::Duration::ZERO;
        let pauses: Vec<_> = (1..=3).map(|n| bound.pause_before(n, zero).unwrap()).collect();
        for (n, pause) in pauses.iter().enumerate() {
            let step = 250u128 << n;
            assert!((step / 2..=step).contains(&pause.as_millis()), "pause {n}: {pause:?}");
        }
        assert_eq!(bound.pause_before(4, zero), None, "no retry after max_retries");
        assert_eq!(bound.pause_before(1, std::time::Duration::from_secs(60)), None, "no retry after the time limit");
        let long = RetryBound { max_retries: 100, timeout_seconds: 3600 };
        assert!(long.pause_before(40, zero).unwrap() <= RetryBound::MAX_PAUSE);
        let mut seen: Vec<_> = (0..20).map(|_| bound.pause_before(3, zero).unwrap()).collect();
        seen.dedup();
        assert!(seen.len() > 1, "pauses are jittered");
    }

    #[test]
    fn s3_table_urls_stay_below_the_prefix() {
        let cfg = minio();
        assert_eq!(cfg.table_url(&["ridehail", "rides"]).unwrap().as_str(), "s3://lake/bronze/ridehail/rides");
        assert!(cfg.table_url(&["..", "x"]).is_err());
        assert!(cfg.table_url(&["a/b"]).is_err());
        let opts = cfg.storage_options();
        assert_eq!(opts["AWS_ALLOW_HTTP"], "true");
        assert_eq!(opts["AWS_REGION"], "us-east-1");
    }

    #[test]
    fn local_urls_are_absolute_file_urls() {
        let cfg = StorageConfig::Local { path: "/tmp/lake".into() }.validated().unwrap();
        assert_eq!(cfg.table_url(&["ns", "users"]).unwrap().as_str(), "file:///tmp/lake/ns/users");
        assert!(cfg.storage_options().is_empty());
    }

    #[test]
    fn parses_uris_with_deltalake_options() {
        let options = HashMap::from([
            ("aws_endpoint_url".to_owned(), "http://127.0.0.1:9000".to_owned()),
            ("AWS_ACCESS_KEY_ID".to_owned(), "k".to_owned()),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), "s".to_owned()),
        ]);
        let cfg = StorageConfig::from_uri("s3://lake/prod", &options).unwrap();
        assert_eq!(cfg.table_url(&["silver", "rides"]).unwrap().as_str(), "s3://lake/prod/silver/rides");
        let local = StorageConfig::from_uri("/tmp/lake", &HashMap::new()).unwrap();
        assert_eq!(local.table_url(&["gold", "x"]).unwrap().as_str(), "file:///tmp/lake/gold/x");
        assert!(StorageConfig::from_uri("gs://bucket", &HashMap::new()).is_err());
    }

    #[test]
    fn rejects_bad_s3_settings() {
        let mut s3 = match minio() {
            StorageConfig::S3(s3) => s3,
            StorageConfig::Local { .. } => unreachable!(),
        };
        s3.endpoint = Some("minio:9000".into());
        assert!(StorageConfig::S3(s3.clone()).validated().is_err());
        s3.endpoint = Some("http://minio:9000".into());
        s3.access_key_id = None;
        assert!(StorageConfig::S3(s3.clone()).validated().is_err());
        s3.access_key_id = Some("k".into());
        s3.bucket = "lake/x".into();
        assert!(StorageConfig::S3(s3).validated().is_err());
    }
}
