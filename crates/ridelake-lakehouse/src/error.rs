//! The crate's one error type.

use deltalake::DeltaTableError;
use polars::prelude::PolarsError;

/// Errors of the silver and gold builders.
#[derive(Debug, thiserror::Error)]
pub enum LakehouseError {
    /// A bronze table the run needs does not exist yet.
    #[error("bronze table {0} does not exist: run a sync into bronze first")]
    MissingBronze(String),
    /// A table that was asked for does not exist.
    #[error("table {0} does not exist (build its layer first, or check the lake location)")]
    MissingTable(String),
    /// A table has a column the builder needs with another type, or lacks it.
    #[error("table {table}: {message}")]
    Schema {
        /// Table location.
        table: String,
        /// What is wrong.
        message: String,
    },
    /// A Delta operation failed.
    #[error("Delta table {table}: {source}")]
    Delta {
        /// Table location.
        table: String,
        /// The delta-rs error.
        #[source]
        source: DeltaTableError,
    },
    /// A Polars computation failed.
    #[error("computing {step}: {source}")]
    Polars {
        /// Which step.
        step: &'static str,
        /// The Polars error.
        #[source]
        source: PolarsError,
    },
    /// Shared-crate error (storage settings, names).
    #[error(transparent)]
    Core(#[from] ridelake_core::CoreError),
    /// A setting of a run (an argument or a runtime variable) has a value it cannot use.
    #[error("setting {name}: {message}")]
    Setting {
        /// The setting (an argument or a runtime variable).
        name: &'static str,
        /// What is wrong with it and what is expected.
        message: String,
    },
    /// The run was stopped on purpose after some writes ([`crate::silver::SilverOptions`]), as a
    /// crash would stop it.
    #[error("run interrupted after {0} table write(s) (failure test)")]
    Interrupted(usize),
    /// PostgreSQL refused or failed a publish (the message never contains the connection string).
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    /// A local output (the HTML report, a Parquet export) could not be rendered or written.
    #[error("{0}")]
    Output(String),
    /// A read task panicked or was cancelled (a bug, or the runtime shutting down).
    #[error("a read task failed: {0}")]
    Task(String),
    /// Another run holds the layer's lease (two runs must never interleave their commits).
    #[error("another run is writing this layer (lease {lease}, held until {until_ms} ms since the epoch); wait for it to finish, or for its lease to expire if it crashed")]
    Busy {
        /// The lease table.
        lease: String,
        /// When the other run's lease expires.
        until_ms: i64,
    },
    /// This run's lease expired and another run took it: this run stopped before writing more.
    #[error("the lease {lease} was taken by another run after this one's expired; nothing more was written, rerun when the other run is done")]
    LeaseLost {
        /// The lease table.
        lease: String,
    },
    /// Arrow conversion failed.
    #[error("arrow conversion: {0}")]
    Arrow(#[from] deltalake::arrow::error::ArrowError),
    /// The model file cannot be read, or does not fit the lake; nothing was written.
    #[error("model {origin}: {}", problems.join("; "))]
    Model {
        /// The model file (or "the default model").
        origin: String,
        /// Each problem, with its line in the file.
        problems: Vec<String>,
    },
    /// Changes broke a model rule whose action is fail; nothing was committed.
    #[error("{changes} {table} change(s) break the rule `{rule}` of {origin} (line {line}), whose action is fail: the run stopped and nothing was committed. Correct those rows at the source, or give the rule another action (quarantine sets such changes aside)")]
    RuleBroken {
        /// The model file.
        origin: String,
        /// The rule's line in it.
        line: usize,
        /// The silver table (`users` or `rides`).
        table: String,
        /// The rule's name.
        rule: String,
        /// How many changes of the batch that found them (the run's, or one slice's) break it.
        changes: u64,
    },
    /// The source changed a column's type in a way silver cannot follow: bronze holds values of
    /// it (rescued, since they did not fit the column) that the silver column cannot take.
    #[error("silver {table}.{column} ({place}) comes from `{source_column}` of bronze `{stream}`, and {changes} change(s) (of the batch that found them) hold a value there that bronze could not store in the column's type (kept in _airbyte_rescued_data) and that is not one of the {expected} silver {table}.{column} holds: the source changed the column's type. The run stopped; no data was committed. Map {table}.{column} to another source column in the model (then rebuild silver), or correct those rows at the source (a later change of the same row replaces them)")]
    ColumnChanged {
        /// Where the model says where the column comes from: the file and its line, or "the
        /// default model".
        place: String,
        /// The silver table.
        table: String,
        /// The silver column.
        column: String,
        /// The source (bronze) column.
        source_column: String,
        /// The bronze stream.
        stream: String,
        /// How many changes of the batch hold such a value.
        changes: u64,
        /// What the silver column holds ("numbers", "integers", "integer keys", "text keys", "times").
        expected: &'static str,
    },
    /// The source changed the type of a column silver keeps (`other_columns = "keep"`) in a way
    /// silver cannot widen its column to follow.
    #[error("silver {table} keeps `{column}` of bronze `{stream}` ({place}), and {changes} change(s) hold a value there that bronze could not store in the column's type (kept in _airbyte_rescued_data) and that silver's column of {expected} cannot be widened to take (integers widen to numbers, numbers to text; times and true/false do not): the source changed the column's type. The run stopped; no data was committed. {remedy} (then rebuild silver); correcting the rows at the source does not help, since bronze keeps the values it rescued (a refresh of the stream that replaces bronze's rows does)")]
    KeptColumnChanged {
        /// The model file and the line that keeps the column (its `other_columns`, or the
        /// extra column's entry).
        place: String,
        /// The silver table.
        table: String,
        /// The kept column (bronze's name).
        column: String,
        /// What to change in the model: leave the column out.
        remedy: String,
        /// The bronze stream.
        stream: String,
        /// How many rows of bronze hold such a value.
        changes: u64,
        /// What the column holds ("times", "true or false", …).
        expected: &'static str,
    },
    /// Silver was built with another model; a run with this one would mix two mappings.
    #[error("silver was built with another model than {origin} (model hash {built} in silver, {now} now); nothing was written. If the new model is meant, rebuild silver from all of bronze with it, once: build_silver(..., rebuild=True) in Python, or the runtime variable rebuild=true of the Mage pipeline")]
    ModelChanged {
        /// The model file of this run.
        origin: String,
        /// The hash silver records ([`crate::model::MODEL_MARKER`]).
        built: i64,
        /// This model's hash.
        now: i64,
    },
}

impl LakehouseError {
    /// Every value of [`LakehouseError::kind`], so that metrics can report 0 for the others.
    pub const KINDS: [&'static str; 12] =
        ["missing_input", "schema", "storage", "compute", "config", "interrupted", "postgres", "output", "internal", "busy", "model", "rule"];

    /// A short, bounded name of the error's kind (the `error_type` label of metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            LakehouseError::MissingBronze(_) | LakehouseError::MissingTable(_) => "missing_input",
            LakehouseError::Schema { .. } | LakehouseError::ColumnChanged { .. } | LakehouseError::KeptColumnChanged { .. } => "schema",
            LakehouseError::Delta { .. } => "storage",
            LakehouseError::Polars { .. } | LakehouseError::Arrow(_) => "compute",
            LakehouseError::Core(_) | LakehouseError::Setting { .. } => "config",
            LakehouseError::Interrupted(_) => "interrupted",
            LakehouseError::Postgres(_) => "postgres",
            LakehouseError::Output(_) => "output",
            LakehouseError::Task(_) => "internal",
            LakehouseError::Busy { .. } | LakehouseError::LeaseLost { .. } => "busy",
            LakehouseError::Model { .. } | LakehouseError::ModelChanged { .. } => "model",
            LakehouseError::RuleBroken { .. } => "rule",
        }
    }

    /// Wraps a delta-rs error with its table.
    pub fn delta(table: impl ToString, source: DeltaTableError) -> Self {
        LakehouseError::Delta { table: table.to_string(), source }
    }
}

/// Adds the step name to a Polars error.
pub trait PolarsContext<T> {
    /// Names the step that failed.
    fn step(self, step: &'static str) -> Result<T>;
}

impl<T> PolarsContext<T> for std::result::Result<T, PolarsError> {
    fn step(self, step: &'static str) -> Result<T> {
        self.map_err(|source| LakehouseError::Polars { step, source })
    }
}

/// Result alias.
pub type Result<T, E = LakehouseError> = std::result::Result<T, E>;
