//! Silver and gold layers of the ridelake lakehouse, in pure Rust on Polars and delta-rs.
//!
//! The data's way through silver: [`increment`] reads what bronze added since silver's markers
//! (or all of it, when a rebuild is needed), in the order bronze received it, and [`model`] maps
//! the source's streams and columns onto silver's; [`cdc`] prepares
//! the changes, checks the rules and picks the latest per key by [`order`], the one total order
//! of changes (keys, integers or text, as [`keys`] holds them); [`silver`] folds them into the published state, checks integrity between rides
//! and users, and writes; a rebuild cuts its rides into [`slices`] that [`rebuild`] hands to
//! workers (this process, or Ray through the Python package) and commits as one, and an
//! increment larger than the memory budget is decided in the same slices by [`update`]; [`io`] reads and commits Delta tables; [`lease`] keeps two runs of a
//! layer from interleaving; [`maintain`] compacts, checkpoints, cleans the logs of and vacuums
//! every table without changing what it returns. [`gold`] aggregates silver for reports and ML, in batches of days within the budget; [`report`] summarizes
//! the lake and renders it as an HTML page; [`publish`] copies gold to PostgreSQL (for Power BI,
//! over TLS as [`postgres_tls`] sets up)
//! and [`features`] writes per-driver and per-customer ML features as Parquet. [`layout`] names
//! the tables, [`arrow_bridge`] moves data between delta-rs and Polars. The Python package
//! `ridelake` (pylib) is a thin wrapper over this crate. [`observe`] runs the builders as observed
//! jobs: Prometheus metrics (named in [`metrics`]) and OpenLineage events.
#![warn(missing_docs)]

pub mod arrow_bridge;
pub mod cdc;
pub mod error;
pub mod features;
pub mod gold;
pub mod increment;
pub mod io;
pub mod keys;
pub mod lease;
pub mod layout;
pub mod maintain;
pub mod metrics;
pub mod model;
pub mod observe;
pub mod order;
pub mod postgres_tls;
pub mod publish;
pub mod rebuild;
pub mod report;
pub mod rules;
pub mod silver;
pub mod slices;
pub mod update;

pub use error::{LakehouseError, Result};
