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
    /// A line on stdin is not an Airbyte message.
    #[error("input line {line} is not a valid Airbyte message ({reason}); it starts with: {preview}")]
    MalformedInput {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
        /// The first characters of the line.
        preview: String,
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
            ConnectorError::Delta { source, .. } => classify_storage_message(&error_chain(source)),
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
            ConnectorError::Delta { table, source } => {
                let text = error_chain(source);
                match storage_hint(&text) {
                    Some(hint) => format!("{hint} (table {table})"),
                    None => format!("Delta table {table}: {text}"),
                }
            }
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

/// Classifies an object-store failure from its text (object_store does not expose S3 codes).
pub fn classify_storage_message(text: &str) -> FailureType {
    if storage_hint(text).is_some() {
        FailureType::Config
    } else if text.contains("error sending request")
        || text.contains("timed out")
        || text.contains("Server returned non-2xx status code: 50")
        || text.contains("connection")
    {
        FailureType::Transient
    } else {
        FailureType::System
    }
}

/// A precise, actionable explanation of a storage failure, when we recognise it.
pub fn storage_hint(text: &str) -> Option<&'static str> {
    let hints: [(&[&str], &str); 6] = [
        (
            &["InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "AccessDenied", "403 Forbidden", "Forbidden"],
            "S3 refused the credentials: check access_key_id and secret_access_key, and that this key may read, write and delete under the bucket path",
        ),
        (&["NoSuchBucket", "bucket does not exist"], "the S3 bucket does not exist: check s3_bucket_name, or create the bucket first"),
        (
            &["AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraint", "region"],
            "the bucket lives in another region: check s3_bucket_region",
        ),
        (
            &["dns error", "failed to lookup address", "Connection refused", "tcp connect error", "error trying to connect"],
            "could not reach the S3 endpoint: check s3_endpoint (scheme, host and port) and that the server is running",
        ),
        (&["Permission denied"], "the local path is not writable by the connector's user: check local_path and its permissions"),
        (&["Read-only file system"], "the local path is on a read-only file system: choose another local_path"),
    ];
    hints.iter().find(|(needles, _)| needles.iter().any(|n| text.contains(n))).map(|(_, hint)| *hint)
}

/// Result alias with [`ConnectorError`].
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_storage_failures() {
        assert_eq!(classify_storage_message("... <Code>InvalidAccessKeyId</Code> ..."), FailureType::Config);
        assert_eq!(classify_storage_message("<Code>NoSuchBucket</Code>"), FailureType::Config);
        assert_eq!(classify_storage_message("tcp connect error: Connection refused"), FailureType::Config);
        assert_eq!(classify_storage_message("Server returned non-2xx status code: 503"), FailureType::Transient);
        assert_eq!(classify_storage_message("something odd"), FailureType::System);
    }

    #[test]
    fn every_kind_is_listed() {
        let errors = [
            ConnectorError::Usage("u".into()),
            ConnectorError::Config("c".into()),
            ConnectorError::Catalog("c".into()),
            ConnectorError::MalformedInput { line: 1, reason: "r".into(), preview: "p".into() },
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
        let e = ConnectorError::MalformedInput { line: 3, reason: "eof".into(), preview: "{".into() };
        assert_eq!(e.failure_type(), FailureType::System);
    }
}
