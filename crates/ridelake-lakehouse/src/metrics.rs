//! The silver and gold jobs' Prometheus metrics (jobs `ridelake_silver`, `ridelake_gold`): every
//! name is declared here, once, and turned into a [`MetricSet`] from a run's report.
//!
//! A build is a batch run, so its counts are gauges of that run (no `_total`). Silver: rows read,
//! upserted, deleted, quarantined and released per table; rides waiting and the change time of
//! the oldest; partitions rewritten. Gold: rows written per table, days recomputed, silver rows
//! read. Both: each written table's Delta version, each layer's newest change (freshness, from
//! Delta statistics), and the shared run metrics of [`ridelake_core::metrics`]. Maintenance:
//! files per table after the run, files compacted, bytes reclaimed and log files removed.

use std::time::Duration;

use ridelake_core::metrics::{self, MetricDef, MetricKind, MetricSet};

use crate::error::LakehouseError;
use crate::gold::GoldReport;
use crate::maintain::MaintenanceReport;
use crate::silver::SilverReport;

/// The Pushgateway job (grouping key) of silver builds.
pub const SILVER_JOB: &str = "ridelake_silver";
/// The Pushgateway job (grouping key) of gold builds.
pub const GOLD_JOB: &str = "ridelake_gold";

/// Rows a silver run handled, by table and outcome.
pub const SILVER_ROWS: MetricDef = MetricDef {
    name: "ridelake_silver_rows",
    help: "Rows the last silver run handled, by table and outcome (read, upserted, deleted, quarantined, released; rides published with an accepted link that does not hold: unlinked; pending rides that waited longer than a wait_for link allows, listed in the quarantine: expired).",
    kind: MetricKind::Gauge,
    labels: &["table", "outcome"],
};
/// Rides waiting for their users after the last run.
pub const SILVER_PENDING_RIDES: MetricDef = MetricDef {
    name: "ridelake_silver_pending_rides",
    help: "Rides waiting for their customer or driver to be registered, after the last silver run.",
    kind: MetricKind::Gauge,
    labels: &[],
};
/// Change time of the oldest waiting ride.
pub const SILVER_PENDING_OLDEST: MetricDef = MetricDef {
    name: "ridelake_silver_pending_oldest_change_timestamp_seconds",
    help: "Change time of the oldest waiting ride (Unix time); the run's time when no ride waits.",
    kind: MetricKind::Gauge,
    labels: &[],
};
/// Partitions a silver run rewrote.
pub const SILVER_PARTITIONS_REWRITTEN: MetricDef = MetricDef {
    name: "ridelake_silver_partitions_rewritten",
    help: "Day partitions of silver users and rides the last run rewrote.",
    kind: MetricKind::Gauge,
    labels: &[],
};
/// Changes the model's drop and warn rules counted.
pub const SILVER_RULE_CHANGES: MetricDef = MetricDef {
    name: "ridelake_silver_rule_changes",
    help: "Changes the last silver run set aside without a trace (action drop, all rules together) or applied with a warning (action warn, per rule) under the model's rules.",
    kind: MetricKind::Gauge,
    labels: &["rule", "action"],
};
/// Rows a gold run wrote, per table.
pub const GOLD_ROWS_WRITTEN: MetricDef = MetricDef {
    name: "ridelake_gold_rows_written",
    help: "Rows the last gold run wrote to the table.",
    kind: MetricKind::Gauge,
    labels: &["table"],
};
/// Day partitions a gold run recomputed.
pub const GOLD_PARTITIONS_RECOMPUTED: MetricDef = MetricDef {
    name: "ridelake_gold_partitions_recomputed",
    help: "Day partitions of silver rides the last gold run recomputed.",
    kind: MetricKind::Gauge,
    labels: &[],
};
/// Silver rows a gold run read.
pub const GOLD_ROWS_READ: MetricDef = MetricDef {
    name: "ridelake_gold_silver_rows_read",
    help: "Silver ride rows the last gold run read.",
    kind: MetricKind::Gauge,
    labels: &[],
};

/// The Pushgateway job (grouping key) of maintenance runs.
pub const MAINTENANCE_JOB: &str = "ridelake_maintenance";
/// Data files per table after the last maintenance run.
pub const TABLE_FILES: MetricDef = MetricDef {
    name: "ridelake_table_files",
    help: "Data files in the table after the last maintenance run (layer/table, e.g. bronze/ridehail/rides).",
    kind: MetricKind::Gauge,
    labels: &["table"],
};
/// Files a maintenance run compacted, per table.
pub const MAINTENANCE_FILES_COMPACTED: MetricDef = MetricDef {
    name: "ridelake_maintenance_files_compacted",
    help: "Small files the last maintenance run merged into larger ones, per table.",
    kind: MetricKind::Gauge,
    labels: &["table"],
};
/// Bytes a maintenance run's vacuum deleted, per table.
pub const MAINTENANCE_BYTES_RECLAIMED: MetricDef = MetricDef {
    name: "ridelake_maintenance_reclaimed_bytes",
    help: "Bytes of files no longer in the table that the last maintenance run deleted, per table.",
    kind: MetricKind::Gauge,
    labels: &["table"],
};
/// Log entries a maintenance run removed, per table.
pub const MAINTENANCE_LOGS_REMOVED: MetricDef = MetricDef {
    name: "ridelake_maintenance_log_files_removed",
    help: "Delta log files (commits, checkpoints) the last maintenance run removed, per table.",
    kind: MetricKind::Gauge,
    labels: &["table"],
};

/// Every metric of this crate (shared ones aside).
pub const ALL: [MetricDef; 12] = [
    SILVER_ROWS,
    SILVER_PENDING_RIDES,
    SILVER_PENDING_OLDEST,
    SILVER_PARTITIONS_REWRITTEN,
    SILVER_RULE_CHANGES,
    GOLD_ROWS_WRITTEN,
    GOLD_PARTITIONS_RECOMPUTED,
    GOLD_ROWS_READ,
    TABLE_FILES,
    MAINTENANCE_FILES_COMPACTED,
    MAINTENANCE_BYTES_RECLAIMED,
    MAINTENANCE_LOGS_REMOVED,
];

/// The `table` label of a written table (`silver_rides` → `rides`).
fn short_name(table: &str) -> &str {
    table.split_once('_').map_or(table, |(_, rest)| rest)
}

/// Freshness of the tables of one layer: (table, newest change in seconds since the epoch).
pub type Freshness = Vec<(String, f64)>;

/// The metrics of a silver run. `report` is `None` when the run failed before reporting.
pub fn silver_metrics(
    report: Option<&SilverReport>,
    freshness: &Freshness,
    duration: Duration,
    error: Option<&LakehouseError>,
) -> ridelake_core::Result<MetricSet> {
    let mut set = MetricSet::new();
    if let Some(r) = report {
        for (table, outcome, rows) in [
            ("users", "read", r.users_read),
            ("users", "upserted", r.users_upserted),
            ("users", "deleted", r.users_deleted),
            ("users", "quarantined", r.users_quarantined),
            ("rides", "read", r.rides_read),
            ("rides", "upserted", r.rides_upserted),
            ("rides", "deleted", r.rides_deleted),
            ("rides", "quarantined", r.rides_quarantined),
            ("rides", "released", r.released),
            ("rides", "unlinked", r.rides_unlinked),
            ("rides", "expired", r.rides_expired),
        ] {
            set.set(&SILVER_ROWS, &[table, outcome], rows as f64)?;
        }
        set.set(&SILVER_PENDING_RIDES, &[], r.pending as f64)?;
        let oldest = r.oldest_pending_us.map_or_else(metrics::unix_now, |us| us as f64 / 1e6);
        set.set(&SILVER_PENDING_OLDEST, &[], oldest)?;
        set.set(&SILVER_PARTITIONS_REWRITTEN, &[], r.partitions_rewritten as f64)?;
        set.set(&SILVER_RULE_CHANGES, &["all", "drop"], r.dropped as f64)?;
        for (rule, changes) in &r.warnings {
            set.set(&SILVER_RULE_CHANGES, &[rule, "warn"], *changes as f64)?;
        }
        for written in &r.written {
            set.set(&metrics::TABLE_VERSION, &["silver", short_name(&written.table)], written.version as f64)?;
        }
    }
    with_run(set, "silver", freshness, duration, error)
}

/// Adds a layer's freshness and how the run ended.
fn with_run(
    mut set: MetricSet,
    layer: &str,
    freshness: &Freshness,
    duration: Duration,
    error: Option<&LakehouseError>,
) -> ridelake_core::Result<MetricSet> {
    for (table, newest) in freshness {
        set.set(&metrics::NEWEST_CHANGE, &[layer, table], *newest)?;
    }
    metrics::record_run(&mut set, duration, error.map(LakehouseError::kind), &LakehouseError::KINDS)?;
    Ok(set)
}

/// The metrics of a gold run. `report` is `None` when the run failed before reporting.
pub fn gold_metrics(
    report: Option<&GoldReport>,
    freshness: &Freshness,
    duration: Duration,
    error: Option<&LakehouseError>,
) -> ridelake_core::Result<MetricSet> {
    let mut set = MetricSet::new();
    if let Some(r) = report {
        set.set(&GOLD_PARTITIONS_RECOMPUTED, &[], r.days_recomputed as f64)?;
        set.set(&GOLD_ROWS_READ, &[], r.rows_read as f64)?;
        for written in &r.written {
            set.set(&GOLD_ROWS_WRITTEN, &[short_name(&written.table)], written.rows as f64)?;
            set.set(&metrics::TABLE_VERSION, &["gold", short_name(&written.table)], written.version as f64)?;
        }
    }
    with_run(set, "gold", freshness, duration, error)
}

/// The metrics of a maintenance run. `report` is `None` when the run failed before reporting.
pub fn maintenance_metrics(report: Option<&MaintenanceReport>, duration: Duration, error: Option<&LakehouseError>) -> ridelake_core::Result<MetricSet> {
    let mut set = MetricSet::new();
    for table in report.map(|r| r.tables.as_slice()).unwrap_or_default() {
        set.set(&TABLE_FILES, &[&table.table], table.files_after as f64)?;
        set.set(&MAINTENANCE_FILES_COMPACTED, &[&table.table], table.files_compacted as f64)?;
        set.set(&MAINTENANCE_BYTES_RECLAIMED, &[&table.table], table.bytes_reclaimed as f64)?;
        set.set(&MAINTENANCE_LOGS_REMOVED, &[&table.table], table.logs_removed as f64)?;
    }
    with_run(set, "maintenance", &Vec::new(), duration, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Written;
    use crate::maintain::TableMaintenance;

    #[test]
    fn a_maintenance_report_becomes_metrics() -> ridelake_core::Result<()> {
        let table = TableMaintenance { table: "bronze/ridehail/rides".into(), files_after: 3, files_compacted: 40, bytes_reclaimed: 1024, ..Default::default() };
        let report = MaintenanceReport { tables: vec![table], seconds: 1.0 };
        let set = maintenance_metrics(Some(&report), Duration::from_secs(1), None)?;
        assert_eq!(set.gauge(TABLE_FILES.name, &["bronze/ridehail/rides"]), Some(3.0));
        assert_eq!(set.gauge(MAINTENANCE_FILES_COMPACTED.name, &["bronze/ridehail/rides"]), Some(40.0));
        assert_eq!(set.gauge(MAINTENANCE_BYTES_RECLAIMED.name, &["bronze/ridehail/rides"]), Some(1024.0));
        Ok(())
    }

    #[test]
    fn names_follow_the_conventions() {
        let problems = metrics::naming_problems(&ALL);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn every_error_kind_is_listed() {
        let errors = [
            LakehouseError::MissingBronze("b".into()),
            LakehouseError::Schema { table: "t".into(), message: "m".into() },
            LakehouseError::Interrupted(1),
            LakehouseError::Postgres("p".into()),
            LakehouseError::Output("o".into()),
            LakehouseError::Task("t".into()),
        ];
        for error in &errors {
            assert!(LakehouseError::KINDS.contains(&error.kind()), "{}", error.kind());
        }
    }

    #[test]
    fn a_silver_report_becomes_metrics() -> ridelake_core::Result<()> {
        let report = SilverReport {
            rides_read: 10,
            rides_quarantined: 2,
            pending: 3,
            oldest_pending_us: Some(1_700_000_000_000_000),
            written: vec![Written { table: "silver_rides".into(), version: 5, ..Written::default() }],
            dropped: 4,
            warnings: [("rides: short".to_owned(), 6)].into_iter().collect(),
            ..SilverReport::default()
        };
        let freshness = vec![("rides".to_owned(), 1.7e9)];
        let set = silver_metrics(Some(&report), &freshness, Duration::from_secs(1), None)?;
        assert_eq!(set.gauge(SILVER_ROWS.name, &["rides", "quarantined"]), Some(2.0));
        assert_eq!(set.gauge(SILVER_PENDING_OLDEST.name, &[]), Some(1.7e9));
        assert_eq!(set.gauge(SILVER_RULE_CHANGES.name, &["all", "drop"]), Some(4.0));
        assert_eq!(set.gauge(SILVER_RULE_CHANGES.name, &["rides: short", "warn"]), Some(6.0));
        assert_eq!(set.gauge(metrics::TABLE_VERSION.name, &["silver", "rides"]), Some(5.0));
        assert_eq!(set.gauge(metrics::NEWEST_CHANGE.name, &["silver", "rides"]), Some(1.7e9));
        let failed = silver_metrics(None, &freshness, Duration::from_secs(1), Some(&LakehouseError::Interrupted(1)))?;
        assert_eq!(failed.gauge(metrics::RUN_ERRORS.name, &["interrupted"]), Some(1.0));
        assert_eq!(failed.gauge(SILVER_ROWS.name, &["rides", "read"]), None);
        Ok(())
    }
}
