//! Shared ridelake code, used by the `destination-delta-lake` connector and by the `ridelake`
//! Python library, so that both sides agree on the lakehouse layout in code rather than by copy.
//!
//! - [`bronze`]: the bronze table contract: where a stream's table lives, its Airbyte meta
//!   columns, and how Airbyte's JSON-schema types map to Delta types.
//! - [`storage`]: one storage configuration (local folder or S3/MinIO) turned into a table URI and
//!   delta-rs storage options.
//! - [`cities`]: the app's cities and which one a point belongs to.
//! - [`generator`]: a seeded generator of ride-hailing CDC in the shape Airbyte's MySQL source emits.
//! - [`metrics`]: a run's Prometheus metrics, pushed to a Pushgateway or written to a file.
//! - [`lineage`]: OpenLineage run events (inputs, outputs, row counts), sent over HTTP or to a file.
//! - [`observability`]: where a job sends both, from its settings and the environment.
//!
//! Nothing here writes to stdout: the connector's stdout belongs to the Airbyte protocol.
#![warn(missing_docs)]

pub mod bronze;
pub mod cities;
pub mod error;
pub mod generator;
mod http;
pub mod lineage;
pub mod metrics;
pub mod observability;
pub mod storage;

pub use error::{CoreError, Result};
