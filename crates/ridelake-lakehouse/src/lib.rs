//! Silver and gold layers of the ridelake lakehouse, in pure Rust on Polars and delta-rs.
//!
//! [`silver`] applies bronze CDC to `users` and `rides` exactly once per bronze version;
//! [`gold`] aggregates silver for reports and ML; [`report`] summarizes the lake and renders it as
//! an HTML page; [`publish`] copies gold to PostgreSQL (for Power BI) and [`features`] writes
//! per-driver and per-customer ML features as Parquet. [`layout`] names the tables, [`io`] reads and
//! writes them, [`arrow_bridge`] moves data between delta-rs and Polars. The Python package
//! `ridelake` (pylib) is a thin wrapper over this crate. [`observe`] runs the builders as observed
//! jobs: Prometheus metrics (named in [`metrics`]) and OpenLineage events.
#![warn(missing_docs)]

pub mod arrow_bridge;
pub mod cdc;
pub mod error;
pub mod features;
pub mod gold;
pub mod io;
pub mod layout;
pub mod metrics;
pub mod observe;
pub mod publish;
pub mod report;
pub mod silver;

pub use error::{LakehouseError, Result};
