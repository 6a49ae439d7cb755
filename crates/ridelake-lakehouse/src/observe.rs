//! Silver and gold builds as observed batch jobs: each run sends an OpenLineage `START`, then
//! its metrics (Pushgateway and/or file) and a `COMPLETE` or `FAIL` event with the tables it read
//! and wrote, their Delta versions and row counts.
//!
//! Guarantees: the build's own result is returned unchanged; metrics and lineage are sent after
//! the build, whatever its outcome, and a failure to send them is reported on stderr, never as
//! the run's error. With nothing configured (no target, no environment variable) a run costs
//! nothing extra.

use std::time::{Duration, Instant};

use ridelake_core::lineage::{Dataset, LineageRun};
use ridelake_core::metrics::{MetricSet, newest_in_table};
pub use ridelake_core::observability::Observability;
use url::Url;

use crate::order::UPDATED;
use crate::error::Result;
use crate::gold::{self, GoldReport};
use crate::io::{self, Written};
use crate::layout::LakeLayout;
use crate::maintain::{self, MaintainOptions, MaintenanceReport};
use crate::metrics::{self, Freshness};
use crate::silver::{self, SilverOptions, SilverReport};

/// OpenLineage job name of silver builds.
pub const SILVER_LINEAGE_JOB: &str = "silver.build";
/// OpenLineage job name of gold builds.
pub const GOLD_LINEAGE_JOB: &str = "gold.build";

fn warn(message: impl std::fmt::Display) {
    eprintln!("ridelake: {message}");
}

fn lineage_run(observe: &Observability, job: &str, description: &str) -> LineageRun {
    LineageRun::new(&observe.lineage.namespace, job, description, "ridelake", env!("CARGO_PKG_VERSION"))
}

async fn emit(observe: &Observability, event: serde_json::Value) {
    if observe.lineage.is_enabled()
        && let Err(e) = observe.lineage.emit(&event).await
    {
        warn(e);
    }
}

async fn ship(observe: &Observability, job: &str, metrics: ridelake_core::Result<MetricSet>) {
    let shipped = match metrics {
        Ok(set) => observe.metrics.ship(job, &set).await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = shipped {
        warn(e);
    }
}

fn dataset(url: &Url, version: Option<i64>, rows: Option<u64>) -> Dataset {
    Dataset { version, rows, ..Dataset::at(url) }
}

fn outputs(written: &[Written]) -> Vec<Dataset> {
    written
        .iter()
        .filter_map(|w| {
            let url = Url::parse(&w.url).ok()?;
            Some(Dataset { description: Some(w.description.clone()), ..dataset(&url, Some(w.version), Some(w.rows)) })
        })
        .collect()
}

/// Newest change of each named silver table, from its Delta statistics (tables that do not
/// exist yet are left out).
async fn freshness(layout: &LakeLayout, tables: &[&str]) -> Freshness {
    let options = layout.storage_options();
    let mut out = Vec::new();
    for table in tables {
        let Ok(url) = layout.silver(table) else { continue };
        if let Ok(Some(t)) = io::open(&url, &options).await
            && let Some(newest) = newest_in_table(&t, UPDATED)
        {
            out.push(((*table).to_owned(), newest));
        }
    }
    out
}

/// [`silver::build_silver_with`], observed.
pub async fn run_silver(layout: &LakeLayout, run: &SilverOptions, observe: &Observability) -> Result<SilverReport> {
    let started = Instant::now();
    let lineage = lineage_run(observe, SILVER_LINEAGE_JOB, "Silver: bronze CDC applied to users and rides (ridelake)");
    let users = layout.model.user_maps().into_iter().map(|m| layout.bronze(&m.stream)).collect::<Result<Vec<_>>>()?;
    let rides = layout.bronze(&layout.model.rides.stream)?;
    let inputs: Vec<Dataset> = users.iter().chain([&rides]).map(Dataset::at).collect();
    emit(observe, lineage.start(&inputs)).await;
    let result = silver::build_silver_with(layout, run).await;
    let duration = started.elapsed();
    if observe.metrics.is_enabled() {
        let fresh = freshness(layout, &["users", "rides"]).await;
        ship(observe, metrics::SILVER_JOB, metrics::silver_metrics(result.as_ref().ok(), &fresh, duration, result.as_ref().err())).await;
    }
    let event = match &result {
        Ok(r) => {
            // (each users stream at its version; the report counts the streams' changes together)
            let one = users.len() == 1;
            let mut read: Vec<Dataset> = users
                .iter()
                .zip(layout.model.user_maps())
                .map(|(url, map)| dataset(url, r.users_streams.get(&map.stream).map(|v| v.1), one.then_some(r.users_read)))
                .collect();
            read.push(dataset(&rides, Some(r.rides_versions.1), Some(r.rides_read)));
            lineage.complete(&read, &outputs(&r.written))
        }
        Err(e) => lineage.fail(&inputs, &e.to_string()),
    };
    emit(observe, event).await;
    result
}

/// [`gold::build_gold`], observed.
pub async fn run_gold(layout: &LakeLayout, run: &gold::GoldOptions, observe: &Observability) -> Result<GoldReport> {
    let started = Instant::now();
    let lineage = lineage_run(observe, GOLD_LINEAGE_JOB, "Gold: aggregates of silver rides for reports and ML (ridelake)");
    let rides = layout.silver("rides")?;
    emit(observe, lineage.start(&[Dataset::at(&rides)])).await;
    let result = gold::build_gold_with(layout, run).await;
    let duration: Duration = started.elapsed();
    if observe.metrics.is_enabled() {
        // Gold is as fresh as the silver rides version it reflects (silver may have moved on since).
        let newest = match &result {
            Ok(r) => io::open_version(&rides, &layout.storage_options(), r.silver_versions.1 as u64)
                .await
                .ok()
                .and_then(|t| newest_in_table(&t, UPDATED)),
            Err(_) => None,
        };
        let fresh: Freshness = newest.map(|n| gold::GOLD_TABLES.iter().map(|t| ((*t).to_owned(), n)).collect()).unwrap_or_default();
        ship(observe, metrics::GOLD_JOB, metrics::gold_metrics(result.as_ref().ok(), &fresh, duration, result.as_ref().err())).await;
    }
    let event = match &result {
        Ok(r) => lineage.complete(&[dataset(&rides, Some(r.silver_versions.1), Some(r.rows_read))], &outputs(&r.written)),
        Err(e) => lineage.fail(&[Dataset::at(&rides)], &e.to_string()),
    };
    emit(observe, event).await;
    result
}

/// [`maintain::maintain`], with its metrics (files per table, files compacted, bytes reclaimed).
/// No lineage events: maintenance changes no data.
pub async fn run_maintenance(layout: &LakeLayout, run: &MaintainOptions, observe: &Observability) -> Result<MaintenanceReport> {
    let started = Instant::now();
    let result = maintain::maintain(layout, run).await;
    if observe.metrics.is_enabled() {
        ship(observe, metrics::MAINTENANCE_JOB, metrics::maintenance_metrics(result.as_ref().ok(), started.elapsed(), result.as_ref().err())).await;
    }
    result
}
