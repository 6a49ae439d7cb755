//! The connector's one error type. Each variant knows its Airbyte `failure_type`, so `main`
//! can turn any failure into one TRACE ERROR with a message the user can act on.

use deltalake::DeltaTableError;

/// Airbyte's `failure_type` of a TRACE ERROR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureType {
    /// The user must change the configuration; Airbyte does not retry.
    Config,
    /// A retry is likely to help (network blip, server 5xx).
    Transient,
    /// A bug or an unexpected state.
    System,
}

impl FailureType {
    /// The protocol's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureType::Config => "config_error",
            FailureType::Transient => "transient_error",
            FailureType::System => "system_error",
        }
    }
}

/// Errors of the destination.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// Bad command line.
    #[error("{0}")]
    Usage(String),
    /// The config file is missing, unreadable or invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The catalog file is missing, unreadable or invalid.
    #[error("invalid catalog: {0}")]
    Catalog(String),
    /// A line on stdin is not an Airbyte message. The error names the line, never its content (a
    /// record's values are customer data).
    #[error("input line {line} is not a valid Airbyte message: {reason}")]
    MalformedInput {
        /// 1-based line number.
        line: u64,
        /// What is wrong, without any value of the line.
        reason: String,
    },
    /// The source mixed GLOBAL and STREAM states, which the protocol forbids.
    #[error("input line {line}: {what}")]
    ProtocolViolation {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        what: String,
    },
    /// Shared-crate error (names, storage settings).
    #[error(transparent)]
    Core(#[from] ridelake_core::CoreError),
    /// A Delta operation failed on a table.
    #[error("Delta table {table}: {source}")]
    Delta {
        /// Table URL, without credentials.
        table: String,
        /// The delta-rs error.
        #[source]
        source: DeltaTableError,
    },
    /// Building an Arrow batch failed.
    #[error("encoding stream {stream}: {source}")]
    Arrow {
        /// Stream name.
        stream: String,
        /// The arrow error.
        #[source]
        source: deltalake::arrow::error::ArrowError,
    },
    /// Reading stdin or writing stdout failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// An internal task died.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ConnectorError {
    /// Wraps a delta-rs error with the table it happened on.
    pub fn delta(table: impl Into<String>, source: DeltaTableError) -> Self {
        ConnectorError::Delta { table: table.into(), source }
    }

    /// Every value of [`ConnectorError::kind`], so that metrics can report 0 for the others.
    pub const KINDS: [&'static str; 9] =
        ["usage", "config", "catalog", "malformed_input", "protocol_violation", "storage", "encoding", "io", "internal"];

    /// A short, bounded name of the error's kind (the `error_type` label of metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectorError::Usage(_) => "usage",
            ConnectorError::Config(_) | ConnectorError::Core(_) => "config",
            ConnectorError::Catalog(_) => "catalog",
            ConnectorError::MalformedInput { .. } => "malformed_input",
            ConnectorError::ProtocolViolation { .. } => "protocol_violation",
            ConnectorError::Delta { .. } => "storage",
            ConnectorError::Arrow { .. } => "encoding",
            ConnectorError::Io(_) => "io",
            ConnectorError::Internal(_) => "internal",
        }
    }

    /// How Airbyte should treat this failure.
    pub fn failure_type(&self) -> FailureType {
        match self {
            ConnectorError::Usage(_) | ConnectorError::Config(_) | ConnectorError::Core(_) => FailureType::Config,
            ConnectorError::Delta { source, .. } => classify_storage_message(&storage_text(source)),
            ConnectorError::Io(_) => FailureType::Transient,
            ConnectorError::Catalog(_)
            | ConnectorError::MalformedInput { .. }
            | ConnectorError::ProtocolViolation { .. }
            | ConnectorError::Arrow { .. }
            | ConnectorError::Internal(_) => FailureType::System,
        }
    }

    /// The user-facing sentence for the TRACE message.
    pub fn user_message(&self) -> String {
        match self {
            ConnectorError::Delta { table, source } => match storage_hint(&storage_text(source)) {
                Some(hint) => format!("{hint} (table {table})"),
                None => format!("Delta table {table}: {}", error_chain(source)),
            },
            other => other.to_string(),
        }
    }
}

/// An error's message followed by the messages of all its sources (delta-rs and object_store
/// keep the useful part, such as "Connection refused", in the sources).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

/// All a storage failure says about its cause: the messages of its chain, and its debug form
/// (object_store's retry error shows only "error sending request" in its message; the cause, such
/// as "Connection refused", is in the debug form).
pub fn storage_text(error: &DeltaTableError) -> String {
    format!("{}\n{error:?}", error_chain(error))
}

/// What we recognise in a storage failure's text (object_store does not expose S3 codes): the
/// needles, how Airbyte should treat it, and what the user should check. The first row whose
/// needle occurs wins, so the more specific rows come first. The text holds request URLs, so a
/// needle must not be a word a bucket, prefix or stream name could contain.
const STORAGE_FAILURES: [(&[&str], FailureType, &str); 9] = [
    (
        &["InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "AccessDenied", "403 Forbidden"],
        FailureType::Config,
        "S3 refused the credentials: check access_key_id and secret_access_key, and that this key may read, write and delete under the bucket path",
    ),
    (&["NoSuchBucket", "bucket does not exist"], FailureType::Config, "the S3 bucket does not exist: check s3_bucket_name, or create the bucket first"),
    (
        &["AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraint", "incorrectly configured region", "the region '"],
        FailureType::Config,
        "the bucket lives in another region: check s3_bucket_region",
    ),
    (&["Permission denied"], FailureType::Config, "the local path is not writable by the connector's user: check local_path and its permissions"),
    (&["Read-only file system"], FailureType::Config, "the local path is on a read-only file system: choose another local_path"),
    (&["No space left on device", "Disk quota exceeded"], FailureType::Config, "the disk holding local_path is full: free space or choose another local_path"),
    (
        &["dns error", "failed to lookup address", "Name or service not known"],
        FailureType::Transient,
        "the S3 endpoint's host name did not resolve (retried until s3_retry_timeout_seconds): check s3_endpoint's host, and the DNS of the network the connector runs in",
    ),
    (
        &["Connection refused", "tcp connect error", "error trying to connect", "connection reset", "Connection reset", "broken pipe", "connection closed"],
        FailureType::Transient,
        "could not reach the S3 endpoint (retried until s3_max_retries or s3_retry_timeout_seconds): check s3_endpoint (scheme, host and port) and that the server is running",
    ),
    (
        &["SlowDown", "status code: 50", "503 Service Unavailable", "500 Internal Server Error", "timed out", "operation timed out", "error sending request"],
        FailureType::Transient,
        "the S3 server kept failing or throttling requests (retried until s3_max_retries or s3_retry_timeout_seconds): check the server's health and load, or raise the retry settings",
    ),
];

/// Classifies a storage failure from its text: a failure we do not recognise is a system error.
pub fn classify_storage_message(text: &str) -> FailureType {
    recognised(text).map_or(FailureType::System, |(failure, _)| failure)
}

/// A precise, actionable explanation of a storage failure, when we recognise it.
pub fn storage_hint(text: &str) -> Option<&'static str> {
    recognised(text).map(|(_, hint)| hint)
}

fn recognised(text: &str) -> Option<(FailureType, &'static str)> {
    STORAGE_FAILURES.iter().find(|(needles, _, _)| needles.iter().any(|n| text.contains(n))).map(|(_, failure, hint)| (*failure, *hint))
}

/// Result alias with [`ConnectorError`].
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_failures_are_classified_as_airbyte_should_act() {
        // (text as object_store and delta-rs report it, failure type, a word the hint must hold)
        let cases: [(&str, FailureType, &str); 16] = [
            ("Client error with status 403 Forbidden: <Code>InvalidAccessKeyId</Code>", FailureType::Config, "access_key_id"),
            ("<Code>SignatureDoesNotMatch</Code>", FailureType::Config, "secret_access_key"),
            ("<Code>NoSuchBucket</Code>", FailureType::Config, "s3_bucket_name"),
            ("<Code>PermanentRedirect</Code>", FailureType::Config, "s3_bucket_region"),
            ("Error performing PUT http://s3:9000/lake/regions/rides/_delta_log/1.json: 503 SlowDown", FailureType::Transient, "throttling"),
            ("Forbidden/rides: connection reset by peer", FailureType::Transient, "s3_endpoint"),
            ("Generic LocalFileSystem error: Permission denied (os error 13)", FailureType::Config, "local_path"),
            ("No space left on device (os error 28)", FailureType::Config, "full"),
            ("error sending request: client error (Connect): dns error: failed to lookup address information", FailureType::Transient, "resolve"),
            ("error sending request: tcp connect error: Connection refused (os error 111)", FailureType::Transient, "s3_endpoint"),
            ("error sending request: connection reset by peer", FailureType::Transient, "s3_endpoint"),
            ("error sending request: connection closed before message completed", FailureType::Transient, "s3_endpoint"),
            ("Server returned non-2xx status code: 503 Service Unavailable: <Code>SlowDown</Code>", FailureType::Transient, "throttling"),
            ("Server returned non-2xx status code: 500 Internal Server Error", FailureType::Transient, "retry settings"),
            ("Generic S3 error: request or response body error: operation timed out", FailureType::Transient, "retry settings"),
            ("something odd", FailureType::System, ""),
        ];
        for (text, failure, word) in cases {
            assert_eq!(classify_storage_message(text), failure, "{text}");
            assert!(storage_hint(text).unwrap_or_default().contains(word), "{text}: {:?}", storage_hint(text));
        }
    }

    #[test]
    fn every_kind_is_listed() {
        let errors = [
            ConnectorError::Usage("u".into()),
            ConnectorError::Config("c".into()),
            ConnectorError::Catalog("c".into()),
            ConnectorError::MalformedInput { line: 1, reason: "r".into() },
            ConnectorError::ProtocolViolation { line: 1, what: "w".into() },
            ConnectorError::delta("t", DeltaTableError::Generic("g".into())),
            ConnectorError::Io(std::io::Error::other("io")),
            ConnectorError::Internal("i".into()),
        ];
        for error in &errors {
            assert!(ConnectorError::KINDS.contains(&error.kind()), "{}", error.kind());
        }
    }

    #[test]
    fn config_errors_are_config() {
        assert_eq!(ConnectorError::Config("x".into()).failure_type().as_str(), "config_error");
        let e = ConnectorError::MalformedInput { line: 3, reason: "eof".into() };
        assert_eq!(e.failure_type(), FailureType::System);
    }
}
