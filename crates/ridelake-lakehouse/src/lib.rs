//! Silver and gold layers of the ridelake lakehouse, in pure Rust on Polars and delta-rs.
//!
//! [`silver`] applies bronze CDC to `users` and `rides` exactly once per bronze version;
//! [`gold`] aggregates silver for reports and ML. [`layout`] names the tables, [`io`] reads and
//! writes them, [`arrow_bridge`] moves data between delta-rs and Polars. The Python package
//! `ridelake` (pylib) is a thin wrapper over this crate.
#![warn(missing_docs)]

pub mod arrow_bridge;
pub mod cdc;
pub mod error;
pub mod gold;
pub mod io;
pub mod layout;
pub mod silver;

pub use error::{LakehouseError, Result};
