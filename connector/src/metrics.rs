//! The connector's Prometheus metrics (job `ridelake_bronze`) and OpenLineage datasets: every
//! name is declared here, once.
//!
//! A sync is a batch run, so its counts are gauges of that run (no `_total`): records received,
//! written and rejected, bytes, files, commits, STATE messages echoed, per stream; commit
//! durations as a histogram; each table's Delta version and newest change
//! (`_ab_cdc_updated_at`, from the Delta statistics); and the shared run metrics of
//! [`ridelake_core::metrics`] (duration, last success, errors by type). They are sent at the end
//! of every sync, failed ones included, to the configured Pushgateway and/or file.

use std::time::Duration;

use ridelake_core::lineage::{Dataset, LineageRun};
use ridelake_core::metrics::{self, DURATION_BUCKETS, MetricDef, MetricKind, MetricSet};

use crate::config::DestinationOptions;
use crate::error::ConnectorError;
use crate::protocol::Emitter;
use crate::write::SyncReport;

/// The OpenLineage job name of bronze syncs.
pub const LINEAGE_JOB: &str = "bronze.sync";

/// The Pushgateway job (grouping key) of bronze syncs.
pub const JOB: &str = "ridelake_bronze";
/// The `layer` label of bronze tables.
pub const LAYER: &str = "bronze";

/// RECORD messages of a stream read in the last sync.
pub const RECORDS_RECEIVED: MetricDef = MetricDef {
    name: "ridelake_bronze_records_received",
    help: "RECORD messages of the stream read by the last sync.",
    kind: MetricKind::Gauge,
    labels: &["stream"],
};
/// Rows committed to a stream's table in the last sync.
pub const RECORDS_WRITTEN: MetricDef = MetricDef {
    name: "ridelake_bronze_records_written",
    help: "Rows the last sync committed to the stream's bronze table.",
    kind: MetricKind::Gauge,
    labels: &["stream"],
};
/// Records refused in the last sync, by reason.
pub const RECORDS_REJECTED: MetricDef = MetricDef {
    name: "ridelake_bronze_records_rejected",
    help: "RECORD messages the last sync did not write, by reason.",
    kind: MetricKind::Gauge,
    labels: &["reason"],
};
/// Input bytes read in the last sync.
pub const RECEIVED_BYTES: MetricDef = MetricDef {
    name: "ridelake_bronze_received_bytes",
    help: "Bytes of Airbyte messages read by the last sync.",
    kind: MetricKind::Gauge,
    labels: &[],
};
/// Parquet bytes committed per stream in the last sync.
pub const WRITTEN_BYTES: MetricDef = MetricDef {
    name: "ridelake_bronze_written_bytes",
    help: "Parquet bytes the last sync committed to the stream's table.",
    kind: MetricKind::Gauge,
    labels: &["stream"],
};
/// Parquet files committed per stream in the last sync.
pub const FILES_WRITTEN: MetricDef = MetricDef {
    name: "ridelake_bronze_files_written",
    help: "Parquet files the last sync committed to the stream's table.",
    kind: MetricKind::Gauge,
    labels: &["stream"],
};
/// Delta commits per stream in the last sync.
pub const COMMITS: MetricDef = MetricDef {
    name: "ridelake_bronze_commits",
    help: "Delta commits the last sync made to the stream's table.",
    kind: MetricKind::Gauge,
    labels: &["stream"],
};
/// How long each commit took.
pub const COMMIT_DURATION: MetricDef = MetricDef {
    name: "ridelake_bronze_commit_duration_seconds",
    help: "Wall time of the last sync's Delta commits (retries included).",
    kind: MetricKind::Histogram,
    labels: &["stream"],
};
/// STATE messages echoed in the last sync.
pub const STATES_ECHOED: MetricDef = MetricDef {
    name: "ridelake_bronze_states_echoed",
    help: "STATE messages the last sync echoed after committing the records before them.",
    kind: MetricKind::Gauge,
    labels: &[],
};

/// Every metric of the connector (shared ones aside).
pub const ALL: [MetricDef; 9] =
    [RECORDS_RECEIVED, RECORDS_WRITTEN, RECORDS_REJECTED, RECEIVED_BYTES, WRITTEN_BYTES, FILES_WRITTEN, COMMITS, COMMIT_DURATION, STATES_ECHOED];

/// The metrics of one sync, whatever its outcome.
pub fn sync_metrics(report: &SyncReport, duration: Duration, error: Option<&ConnectorError>) -> ridelake_core::Result<MetricSet> {
    let mut set = MetricSet::new();
    for stream in &report.streams {
        let label = [stream.stream.as_str()];
        set.set(&RECORDS_RECEIVED, &label, stream.records_received as f64)?;
        set.set(&RECORDS_WRITTEN, &label, stream.records_written as f64)?;
        set.set(&WRITTEN_BYTES, &label, stream.bytes_written as f64)?;
        set.set(&FILES_WRITTEN, &label, stream.files_written as f64)?;
        set.set(&COMMITS, &label, stream.commits as f64)?;
        for seconds in &stream.commit_seconds {
            set.observe(&COMMIT_DURATION, &label, &DURATION_BUCKETS, *seconds)?;
        }
        if let Some(version) = stream.version {
            set.set(&metrics::TABLE_VERSION, &[LAYER, &stream.stream], version as f64)?;
        }
        if let Some(newest) = stream.newest_change {
            set.set(&metrics::NEWEST_CHANGE, &[LAYER, &stream.stream], newest)?;
        }
    }
    set.set(&RECORDS_REJECTED, &["stream_not_in_catalog"], report.records_rejected as f64)?;
    set.set(&RECEIVED_BYTES, &[], report.bytes_received as f64)?;
    set.set(&STATES_ECHOED, &[], report.states_echoed as f64)?;
    metrics::record_run(&mut set, duration, error.map(ConnectorError::kind), &ConnectorError::KINDS)?;
    Ok(set)
}

/// The bronze tables of a sync as OpenLineage outputs (version, rows, bytes and files written).
pub fn lineage_outputs(report: &SyncReport) -> Vec<Dataset> {
    report
        .streams
        .iter()
        .filter_map(|stream| {
            let url = url::Url::parse(&stream.url).ok()?;
            Some(Dataset {
                description: Some(stream.description.clone()),
                version: stream.version.map(|v| v as i64),
                rows: Some(stream.records_written),
                bytes: Some(stream.bytes_written),
                files: Some(stream.files_written),
                ..Dataset::at(&url)
            })
        })
        .collect()
}

/// The lineage run of a sync; its START event is sent now (failures become a WARN log).
pub async fn start_lineage(options: &DestinationOptions, emitter: &Emitter) -> LineageRun {
    let run = LineageRun::new(
        &options.observability.lineage.namespace,
        LINEAGE_JOB,
        "Airbyte sync into bronze Delta tables (destination-delta-lake)",
        "destination-delta-lake",
        env!("CARGO_PKG_VERSION"),
    );
    if options.observability.lineage.is_enabled()
        && let Err(e) = options.observability.lineage.emit(&run.start(&[])).await
    {
        emitter.log("WARN", format!("destination-delta-lake: {e}"));
    }
    run
}

/// Sends the sync's metrics and its COMPLETE or FAIL lineage event. Failing to send them never
/// fails the sync: it becomes a WARN log.
pub async fn finish(
    options: &DestinationOptions,
    report: &SyncReport,
    duration: Duration,
    error: Option<&ConnectorError>,
    run: &LineageRun,
    emitter: &Emitter,
) {
    if options.observability.metrics.is_enabled() {
        let shipped = match sync_metrics(report, duration, error) {
            Ok(set) => options.observability.metrics.ship(JOB, &set).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = shipped {
            emitter.log("WARN", format!("destination-delta-lake: {e}"));
        }
    }
    if options.observability.lineage.is_enabled() {
        let event = match error {
            None => run.complete(&[], &lineage_outputs(report)),
            Some(e) => run.fail(&[], &e.user_message()),
        };
        if let Err(e) = options.observability.lineage.emit(&event).await {
            emitter.log("WARN", format!("destination-delta-lake: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::StreamReport;

    #[test]
    fn names_follow_the_conventions() {
        let problems = metrics::naming_problems(&ALL);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn a_sync_report_becomes_metrics() -> ridelake_core::Result<()> {
        let report = SyncReport {
            streams: vec![StreamReport {
                stream: "app.rides".into(),
                url: "file:///lake/bronze/app/rides".into(),
                records_received: 10,
                records_written: 10,
                commit_seconds: vec![0.2, 3.0],
                version: Some(4),
                newest_change: Some(1.7e9),
                ..StreamReport::default()
            }],
            records_rejected: 2,
            ..SyncReport::default()
        };
        let set = sync_metrics(&report, Duration::from_secs(5), None)?;
        assert_eq!(set.gauge(RECORDS_WRITTEN.name, &["app.rides"]), Some(10.0));
        assert_eq!(set.gauge(metrics::TABLE_VERSION.name, &["bronze", "app.rides"]), Some(4.0));
        assert_eq!(set.gauge(RECORDS_REJECTED.name, &["stream_not_in_catalog"]), Some(2.0));
        let text = set.render()?;
        assert!(text.contains("ridelake_bronze_commit_duration_seconds_count{stream=\"app.rides\"} 2"), "{text}");
        assert!(text.contains("ridelake_run_errors{error_type=\"storage\"} 0"), "{text}");
        let outputs = lineage_outputs(&report);
        assert_eq!((outputs[0].namespace.as_str(), outputs[0].name.as_str()), ("file", "/lake/bronze/app/rides"));
        Ok(())
    }
}
