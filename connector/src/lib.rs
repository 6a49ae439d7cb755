//! `destination-delta-lake`: an Airbyte destination that lands each stream as a bronze Delta
//! Lake table on S3-compatible storage (MinIO, Ceph, AWS) or a local folder.
//!
//! Module map, in the order data flows:
//! [`config`] (validated settings) → [`catalog`] (streams and their types) → [`write`] (the
//! reader/committer pipeline; [`scan`] reads the common RECORD line in one pass, [`protocol`]'s
//! serde_json types every other line) → [`encoder`] (records → Arrow, via [`coerce`]) → [`sink`] (Parquet
//! files and Delta commits) → [`state`] (which STATE may be echoed) → [`protocol`] (the only
//! writer of stdout). [`check`] probes the storage; [`error`] classifies every failure;
//! [`metrics`] names the sync's Prometheus metrics and sends them, with its OpenLineage events.
#![warn(missing_docs)]

pub mod catalog;
pub mod check;
pub mod coerce;
pub mod config;
pub mod encoder;
pub mod error;
pub mod fault;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod protocol;
pub mod scan;
pub mod sink;
pub mod state;
pub mod write;
