//! The crate's one error type. Every variant says what the user can do about it.

/// Errors raised by ridelake-core.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A namespace or stream name cannot be turned into a safe table folder.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// "namespace" or "stream".
        kind: &'static str,
        /// The name as received.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The storage configuration is incomplete or contradictory.
    #[error("invalid storage configuration: {0}")]
    InvalidStorage(String),
    /// An existing table has a column whose Delta type bronze cannot write.
    #[error(
        "column {column:?} of the existing table has type {found}, which bronze cannot write; \
         rename the column in the source or move the table away"
    )]
    UnsupportedColumnType {
        /// Column name.
        column: String,
        /// The Delta type found.
        found: String,
    },
    /// A table property ridelake writes holds a value it cannot read.
    #[error("table property {property} is not readable ({reason}); restore it, or remove it if the table's history it records does not matter")]
    InvalidTableProperty {
        /// The property.
        property: &'static str,
        /// Why it cannot be read (the parser's message, with no table data).
        reason: String,
    },
    /// Metrics could not be recorded or shipped (Pushgateway, metrics file).
    #[error("metrics: {0}")]
    Metrics(String),
    /// An OpenLineage event could not be sent or written.
    #[error("lineage: {0}")]
    Lineage(String),
    /// An I/O error (generator output, files).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A JSON (de)serialisation error.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Result alias with [`CoreError`] as the default error.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
