//! Prometheus metrics of one batch run: gauges and histograms of the `prometheus` crate, rendered
//! by its text encoder (exposition format 0.0.4), then pushed to a Pushgateway and/or written to a
//! file (for node_exporter's textfile collector, or to read by hand).
//!
//! Each crate declares its metric names once, as [`MetricDef`] constants in its own `metrics`
//! module; this module checks them (names, label sets, one definition per name) and ships them.
//!
//! Guarantees:
//! - A sample whose labels differ from its definition's label names is refused, so a typo cannot
//!   create a new series.
//! - Output is deterministic: families sorted by name, samples by labels (the crate's registry).
//! - Pushing uses `POST /metrics/job/<job>`: it replaces only the families this run sends, so a
//!   failed run that does not send `..._last_success_timestamp_seconds` keeps the previous
//!   success visible (the Prometheus docs' pattern for batch jobs).
//! - The file is replaced atomically (written beside it, then renamed); readers never see half.
//! - Shipping metrics never fails the run that produced them: [`MetricsTarget::ship`] returns
//!   what went wrong so the caller can log it.

use std::path::PathBuf;
use std::time::Duration;

use prometheus::{GaugeVec, HistogramOpts, HistogramVec, Opts, Registry, TextEncoder};

use crate::error::{CoreError, Result};

/// Environment variable naming the Pushgateway base URL (e.g. `http://pushgateway:9091`).
pub const ENV_PUSHGATEWAY_URL: &str = "RIDELAKE_PUSHGATEWAY_URL";
/// Environment variable naming the metrics file (text format) to write after each run.
pub const ENV_METRICS_FILE: &str = "RIDELAKE_METRICS_FILE";

/// Default buckets of duration histograms, in seconds.
pub const DURATION_BUCKETS: [f64; 12] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// Wall time of the job's last run (every job).
pub const RUN_DURATION: MetricDef = MetricDef {
    name: "ridelake_run_duration_seconds",
    help: "Wall time of the job's last run.",
    kind: MetricKind::Gauge,
    labels: &[],
};
/// When the last run ended (every job).
pub const RUN_LAST_COMPLETION: MetricDef = MetricDef {
    name: "ridelake_run_last_completion_timestamp_seconds",
    help: "When the job's last run ended, successfully or not (Unix time).",
    kind: MetricKind::Gauge,
    labels: &[],
};
/// When the job last succeeded; only successful runs send it.
pub const RUN_LAST_SUCCESS: MetricDef = MetricDef {
    name: "ridelake_run_last_success_timestamp_seconds",
    help: "When the job last succeeded (Unix time); only successful runs push it.",
    kind: MetricKind::Gauge,
    labels: &[],
};
/// 1 if the last run succeeded, 0 if it failed.
pub const RUN_SUCCESS: MetricDef = MetricDef {
    name: "ridelake_run_success",
    help: "1 if the job's last run succeeded, 0 if it failed.",
    kind: MetricKind::Gauge,
    labels: &[],
};
/// The error that ended the last run, by type (every known type is sent, 0 or 1).
pub const RUN_ERRORS: MetricDef = MetricDef {
    name: "ridelake_run_errors",
    help: "Errors that ended the job's last run, by type (1 for the type that failed it, 0 for the others).",
    kind: MetricKind::Gauge,
    labels: &["error_type"],
};
/// Freshness: the newest source change a table holds.
pub const NEWEST_CHANGE: MetricDef = MetricDef {
    name: "ridelake_newest_change_timestamp_seconds",
    help: "Newest source change time (_ab_cdc_updated_at) the table holds (Unix time): the layer's freshness.",
    kind: MetricKind::Gauge,
    labels: &["layer", "table"],
};
/// The Delta version of each table a job wrote.
pub const TABLE_VERSION: MetricDef = MetricDef {
    name: "ridelake_table_version",
    help: "Delta version of the table after the job's last run.",
    kind: MetricKind::Gauge,
    labels: &["layer", "table"],
};
/// The metrics every job sends.
pub const SHARED: [MetricDef; 7] = [RUN_DURATION, RUN_LAST_COMPLETION, RUN_LAST_SUCCESS, RUN_SUCCESS, RUN_ERRORS, NEWEST_CHANGE, TABLE_VERSION];

/// Records how a run ended: duration, completion time, success (and its time) or the error
/// type; every type in `error_types` is sent (0 unless it failed the run).
pub fn record_run(set: &mut MetricSet, duration: Duration, failed_with: Option<&str>, error_types: &[&str]) -> Result<()> {
    let now = unix_now();
    set.set(&RUN_DURATION, &[], duration.as_secs_f64())?;
    set.set(&RUN_LAST_COMPLETION, &[], now)?;
    set.set(&RUN_SUCCESS, &[], if failed_with.is_none() { 1.0 } else { 0.0 })?;
    if failed_with.is_none() {
        set.set(&RUN_LAST_SUCCESS, &[], now)?;
    }
    for kind in error_types.iter().copied().chain(failed_with) {
        set.set(&RUN_ERRORS, &[kind], if failed_with == Some(kind) { 1.0 } else { 0.0 })?;
    }
    Ok(())
}

/// What kind of Prometheus metric a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A value that can go up and down (per-run counts, timestamps, sizes).
    Gauge,
    /// Observations counted into cumulative buckets, with their sum and count.
    Histogram,
}

/// A metric's name, help text, kind and label names: declared once per crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    /// Full name, `ridelake_` prefixed, base unit suffixed (`_seconds`, `_bytes`).
    pub name: &'static str,
    /// One sentence for `# HELP`.
    pub help: &'static str,
    /// Gauge or histogram.
    pub kind: MetricKind,
    /// Label names, in order; each has a bounded set of values.
    pub labels: &'static [&'static str],
}

impl MetricDef {
    /// Problems with the name against Prometheus naming rules, if any (used by each crate's
    /// tests over all its definitions).
    pub fn naming_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let valid = |s: &str| {
            s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if !self.name.starts_with("ridelake_") {
            problems.push(format!("{}: not in the ridelake_ namespace", self.name));
        }
        if !valid(self.name) {
            problems.push(format!("{}: not snake_case ASCII", self.name));
        }
        // Gauges and histograms are not counters: `_total` is for counters only.
        if self.name.ends_with("_total") {
            problems.push(format!("{}: `_total` is for counters only", self.name));
        }
        for unit in ["_milliseconds", "_ms", "_kb", "_mb", "_minutes", "_hours", "_days", "_percent"] {
            if self.name.ends_with(unit) || self.name.contains(&format!("{unit}_")) {
                problems.push(format!("{}: use base units (seconds, bytes, ratio)", self.name));
            }
        }
        if self.kind == MetricKind::Histogram && !(self.name.ends_with("_seconds") || self.name.ends_with("_bytes")) {
            problems.push(format!("{}: a histogram needs a unit suffix", self.name));
        }
        for label in self.labels {
            if !valid(label) || label.starts_with("__") || *label == "job" || *label == "instance" {
                problems.push(format!("{}: label {label:?} is reserved or invalid", self.name));
            }
        }
        if self.help.trim().is_empty() {
            problems.push(format!("{}: empty help", self.name));
        }
        problems
    }
}

/// Every naming problem of `defs` (each crate's tests run this over all its definitions).
pub fn naming_problems(defs: &[MetricDef]) -> Vec<String> {
    defs.iter().flat_map(MetricDef::naming_problems).collect()
}

/// One family's collector from the `prometheus` crate.
#[derive(Clone)]
enum Collector {
    Gauge(GaugeVec),
    Histogram(HistogramVec),
}

impl Collector {
    fn boxed(&self) -> Box<dyn prometheus::core::Collector> {
        match self {
            Collector::Gauge(vec) => Box::new(vec.clone()),
            Collector::Histogram(vec) => Box::new(vec.clone()),
        }
    }
}

struct Family {
    def: MetricDef,
    collector: Collector,
}

fn crate_error(name: &str, e: prometheus::Error) -> CoreError {
    CoreError::Metrics(format!("{name}: {e}"))
}

/// The metrics of one run, by family: `prometheus` crate collectors, each checked against its
/// [`MetricDef`] and gathered into a registry of their own when rendered.
#[derive(Default)]
pub struct MetricSet {
    families: Vec<Family>,
}

impl std::fmt::Debug for MetricSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricSet").field("families", &self.names()).finish()
    }
}

impl MetricSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The family of `def`, made on first use (a histogram's with `bounds`).
    fn family(&mut self, def: &MetricDef, labels: &[&str], bounds: &[f64]) -> Result<&Collector> {
        if labels.len() != def.labels.len() {
            return Err(CoreError::Metrics(format!(
                "{} takes labels {:?}, got {} value(s)",
                def.name,
                def.labels,
                labels.len()
            )));
        }
        let index = match self.families.iter().position(|f| f.def.name == def.name) {
            Some(i) if self.families[i].def != *def => {
                return Err(CoreError::Metrics(format!("{} is defined twice, differently", def.name)));
            }
            Some(i) => i,
            None => {
                let collector = match def.kind {
                    MetricKind::Gauge => {
                        Collector::Gauge(GaugeVec::new(Opts::new(def.name, def.help), def.labels).map_err(|e| crate_error(def.name, e))?)
                    }
                    MetricKind::Histogram => Collector::Histogram(
                        HistogramVec::new(HistogramOpts::new(def.name, def.help).buckets(bounds.to_vec()), def.labels)
                            .map_err(|e| crate_error(def.name, e))?,
                    ),
                };
                self.families.push(Family { def: *def, collector });
                self.families.len() - 1
            }
        };
        Ok(&self.families[index].collector)
    }

    fn gauge_sample(&mut self, def: &MetricDef, labels: &[&str]) -> Result<prometheus::Gauge> {
        if def.kind != MetricKind::Gauge {
            return Err(CoreError::Metrics(format!("{} is not a gauge", def.name)));
        }
        match self.family(def, labels, &[])? {
            Collector::Gauge(vec) => vec.get_metric_with_label_values(labels).map_err(|e| crate_error(def.name, e)),
            Collector::Histogram(_) => Err(CoreError::Metrics(format!("{} is not a gauge", def.name))),
        }
    }

    /// Sets a gauge sample (`labels` are values, in the definition's label order).
    pub fn set(&mut self, def: &MetricDef, labels: &[&str], value: f64) -> Result<()> {
        self.gauge_sample(def, labels)?.set(value);
        Ok(())
    }

    /// Adds to a gauge sample (starting from 0).
    pub fn add(&mut self, def: &MetricDef, labels: &[&str], value: f64) -> Result<()> {
        self.gauge_sample(def, labels)?.add(value);
        Ok(())
    }

    /// Records one observation into a histogram sample with `bounds` (ascending, seconds or
    /// bytes); the first observation of a family fixes its bounds.
    pub fn observe(&mut self, def: &MetricDef, labels: &[&str], bounds: &[f64], value: f64) -> Result<()> {
        if def.kind != MetricKind::Histogram {
            return Err(CoreError::Metrics(format!("{} is not a histogram", def.name)));
        }
        match self.family(def, labels, bounds)? {
            Collector::Histogram(vec) => vec.get_metric_with_label_values(labels).map_err(|e| crate_error(def.name, e))?.observe(value),
            Collector::Gauge(_) => return Err(CoreError::Metrics(format!("{} is not a histogram", def.name))),
        }
        Ok(())
    }

    /// The value of a gauge sample, if set.
    pub fn gauge(&self, name: &str, labels: &[&str]) -> Option<f64> {
        let family = self.families.iter().find(|f| f.def.name == name)?;
        let Collector::Gauge(vec) = &family.collector else { return None };
        let gathered = prometheus::core::Collector::collect(vec);
        gathered.iter().flat_map(|mf| mf.get_metric()).find_map(|metric| {
            let values: Vec<&str> = family
                .def
                .labels
                .iter()
                .map(|name| metric.get_label().iter().find(|pair| pair.name() == *name).map_or("", |pair| pair.value()))
                .collect();
            (values == labels).then(|| metric.get_gauge().get_value())
        })
    }

    /// Names of the families recorded, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.families.iter().map(|f| f.def.name).collect()
    }

    /// Moves every family of `other` into this set (replacing same-named families).
    pub fn extend(&mut self, other: MetricSet) {
        for family in other.families {
            match self.families.iter_mut().find(|f| f.def.name == family.def.name) {
                Some(existing) => *existing = family,
                None => self.families.push(family),
            }
        }
    }

    /// The families gathered by a registry of their own (sorted by name, samples by labels).
    fn gather(&self) -> Result<Vec<prometheus::proto::MetricFamily>> {
        let registry = Registry::new();
        for family in &self.families {
            registry.register(family.collector.boxed()).map_err(|e| crate_error(family.def.name, e))?;
        }
        Ok(registry.gather())
    }

    /// The text exposition format (0.0.4), by the crate's encoder.
    pub fn render(&self) -> Result<String> {
        TextEncoder::new().encode_to_string(&self.gather()?).map_err(|e| CoreError::Metrics(format!("cannot encode metrics: {e}")))
    }
}

/// Where a run's metrics go: a Pushgateway, a file, both or neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsTarget {
    /// Pushgateway base URL (`http://host:9091`); metrics go to `<url>/metrics/job/<job>`.
    pub pushgateway_url: Option<String>,
    /// File to replace with the text format after each run; `{job}` in it is replaced by the
    /// job's name, so that jobs sharing one setting (e.g. `/var/lib/node_exporter/{job}.prom`)
    /// do not overwrite each other.
    pub file: Option<PathBuf>,
}

/// What shipping did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shipped {
    /// The Pushgateway accepted the metrics.
    pub pushed: bool,
    /// The file was written.
    pub written: bool,
}

impl MetricsTarget {
    /// The target named by `RIDELAKE_PUSHGATEWAY_URL` and `RIDELAKE_METRICS_FILE` (unset or empty:
    /// not used).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        MetricsTarget { pushgateway_url: var(ENV_PUSHGATEWAY_URL), file: var(ENV_METRICS_FILE).map(PathBuf::from) }
    }

    /// This target, with each unset part taken from `fallback`.
    pub fn or(self, fallback: MetricsTarget) -> Self {
        MetricsTarget { pushgateway_url: self.pushgateway_url.or(fallback.pushgateway_url), file: self.file.or(fallback.file) }
    }

    /// Whether metrics go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.pushgateway_url.is_some() || self.file.is_some()
    }

    /// Pushes `metrics` as job `job` and/or writes them to the file. Every configured
    /// destination is attempted; the error lists those that failed.
    pub async fn ship(&self, job: &str, metrics: &MetricSet) -> Result<Shipped> {
        let body = metrics.render()?;
        let mut shipped = Shipped::default();
        let mut failures = Vec::new();
        if let Some(url) = &self.pushgateway_url {
            match push(url, job, body.clone()).await {
                Ok(()) => shipped.pushed = true,
                Err(e) => failures.push(e),
            }
        }
        if let Some(path) = &self.file {
            let path = PathBuf::from(path.to_string_lossy().replace("{job}", job));
            match write_atomically(&path, body.as_bytes()) {
                Ok(()) => shipped.written = true,
                Err(e) => failures.push(format!("cannot write metrics file {}: {e}", path.display())),
            }
        }
        if failures.is_empty() { Ok(shipped) } else { Err(CoreError::Metrics(failures.join("; "))) }
    }
}

/// The grouping-key URL of `job` under a Pushgateway base URL.
pub fn push_url(base: &str, job: &str) -> Result<url::Url> {
    crate::http::endpoint(base, &["metrics", "job", job], "Pushgateway URL").map_err(CoreError::Metrics)
}

async fn push(base: &str, job: &str, body: String) -> std::result::Result<(), String> {
    let url = push_url(base, job).map_err(|e| e.to_string())?;
    crate::http::post(url, "the Pushgateway", "text/plain; version=0.0.4; charset=utf-8", body.into_bytes(), None).await
}

/// Replaces `path` with `bytes` through a temporary file in the same folder and a rename.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "metrics".into());
    let temporary = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The newest value of a timestamp column in a Delta table, in seconds since the epoch, from the
/// statistics of its files (no data is read); `None` when no file has statistics for it.
pub fn newest_in_table(table: &deltalake::DeltaTable, column: &str) -> Option<f64> {
    let snapshot = table.snapshot().ok()?;
    snapshot.log_data().iter().filter_map(|file| newest_in_stats(&file.stats()?, column)).reduce(f64::max)
}

/// The newest value of a timestamp column recorded in a Delta `add` action's statistics JSON,
/// in seconds since the epoch. Handles both encodings: RFC 3339 text (timestamp columns) and
/// integer microseconds (our silver `_cdc_*` columns).
pub fn newest_in_stats(stats: &str, column: &str) -> Option<f64> {
    let stats: serde_json::Value = serde_json::from_str(stats).ok()?;
    match stats.get("maxValues")?.get(column)? {
        serde_json::Value::String(text) => {
            chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_micros() as f64 / 1e6)
        }
        serde_json::Value::Number(n) => n.as_i64().map(|us| us as f64 / 1e6),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORDS: MetricDef = MetricDef {
        name: "ridelake_test_records",
        help: "Records \"seen\" in the last run.",
        kind: MetricKind::Gauge,
        labels: &["stream"],
    };
    const LATENCY: MetricDef =
        MetricDef { name: "ridelake_test_commit_duration_seconds", help: "Commit time.", kind: MetricKind::Histogram, labels: &[] };

    #[test]
    fn renders_the_text_format() -> Result<()> {
        let mut set = MetricSet::new();
        set.set(&RECORDS, &["rides"], 3.0)?;
        set.add(&RECORDS, &["users \"x\""], 2.0)?;
        set.add(&RECORDS, &["users \"x\""], 2.0)?;
        set.observe(&LATENCY, &[], &[0.1, 1.0], 0.5)?;
        set.observe(&LATENCY, &[], &[0.1, 1.0], 2.0)?;
        // The crate's registry sorts families by name and samples by label values.
        let expected = "# HELP ridelake_test_commit_duration_seconds Commit time.\n\
            # TYPE ridelake_test_commit_duration_seconds histogram\n\
            ridelake_test_commit_duration_seconds_bucket{le=\"0.1\"} 0\n\
            ridelake_test_commit_duration_seconds_bucket{le=\"1\"} 1\n\
            ridelake_test_commit_duration_seconds_bucket{le=\"+Inf\"} 2\n\
            ridelake_test_commit_duration_seconds_sum 2.5\n\
            ridelake_test_commit_duration_seconds_count 2\n\
            # HELP ridelake_test_records Records \"seen\" in the last run.\n\
            # TYPE ridelake_test_records gauge\n\
            ridelake_test_records{stream=\"rides\"} 3\n\
            ridelake_test_records{stream=\"users \\\"x\\\"\"} 4\n";
        assert_eq!(set.render()?, expected);
        assert_eq!(set.gauge(RECORDS.name, &["users \"x\""]), Some(4.0));
        assert_eq!(set.gauge(RECORDS.name, &["trips"]), None, "a sample never set has no value");
        Ok(())
    }

    #[test]
    fn refuses_wrong_labels_and_kinds() {
        let mut set = MetricSet::new();
        assert!(set.set(&RECORDS, &[], 1.0).is_err());
        assert!(set.set(&LATENCY, &[], 1.0).is_err());
        assert!(set.observe(&RECORDS, &["x"], &[1.0], 1.0).is_err());
        let clash = MetricDef { help: "other", ..RECORDS };
        assert!(set.set(&RECORDS, &["a"], 1.0).is_ok());
        assert!(set.set(&clash, &["a"], 1.0).is_err());
    }

    #[test]
    fn naming_rules_catch_common_mistakes() {
        assert!(RECORDS.naming_problems().is_empty());
        assert!(LATENCY.naming_problems().is_empty());
        let bad = MetricDef { name: "ridelake_rows_total", help: "x", kind: MetricKind::Gauge, labels: &["instance"] };
        assert_eq!(bad.naming_problems().len(), 2);
        let unit = MetricDef { name: "ridelake_commit_ms", help: "x", kind: MetricKind::Gauge, labels: &[] };
        assert_eq!(unit.naming_problems().len(), 1);
        let days = MetricDef { name: "ridelake_gold_days_recomputed", help: "x", kind: MetricKind::Gauge, labels: &[] };
        assert_eq!(days.naming_problems().len(), 1, "promtool wants base units: seconds, not days");
    }

    #[test]
    fn shared_names_follow_the_conventions() {
        let problems = naming_problems(&SHARED);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn a_failed_run_keeps_the_last_success_out() -> Result<()> {
        let mut set = MetricSet::new();
        record_run(&mut set, Duration::from_secs(2), Some("storage"), &["config", "storage"])?;
        assert!(!set.names().contains(&RUN_LAST_SUCCESS.name), "a failed run must not overwrite the last success");
        assert_eq!(set.gauge(RUN_ERRORS.name, &["storage"]), Some(1.0));
        assert_eq!(set.gauge(RUN_ERRORS.name, &["config"]), Some(0.0));
        assert_eq!(set.gauge(RUN_SUCCESS.name, &[]), Some(0.0));
        let mut ok = MetricSet::new();
        record_run(&mut ok, Duration::from_secs(2), None, &["config"])?;
        assert!(ok.gauge(RUN_LAST_SUCCESS.name, &[]).is_some());
        Ok(())
    }

    #[test]
    fn push_url_appends_the_grouping_key() -> Result<()> {
        assert_eq!(push_url("http://pg:9091", "ridelake_silver")?.as_str(), "http://pg:9091/metrics/job/ridelake_silver");
        assert_eq!(push_url("http://pg:9091/base/", "j")?.as_str(), "http://pg:9091/base/metrics/job/j");
        assert!(push_url("pg:9091", "j").is_err());
        Ok(())
    }

    #[tokio::test]
    async fn a_file_target_is_replaced_whole() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("sub/ridelake.prom");
        let mut set = MetricSet::new();
        set.set(&RECORDS, &["rides"], 1.0)?;
        let target = MetricsTarget { pushgateway_url: None, file: Some(path.clone()) };
        assert_eq!(target.ship("j", &set).await?, Shipped { pushed: false, written: true });
        assert_eq!(std::fs::read_to_string(&path)?, set.render()?);
        assert_eq!(std::fs::read_dir(path.parent().unwrap_or(dir.path()))?.count(), 1, "no temporary file left");
        Ok(())
    }

    #[tokio::test]
    async fn the_file_name_may_name_the_job() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let target = MetricsTarget { pushgateway_url: None, file: Some(dir.path().join("{job}.prom")) };
        target.ship("ridelake_silver", &MetricSet::new()).await?;
        target.ship("ridelake_gold", &MetricSet::new()).await?;
        assert!(dir.path().join("ridelake_silver.prom").exists() && dir.path().join("ridelake_gold.prom").exists());
        Ok(())
    }

    #[tokio::test]
    async fn an_unreachable_pushgateway_is_reported_not_fatal_to_the_file() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("m.prom");
        let target = MetricsTarget { pushgateway_url: Some("http://127.0.0.1:9".into()), file: Some(path.clone()) };
        let error = target.ship("j", &MetricSet::new()).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("cannot reach the Pushgateway at http://127.0.0.1:9/metrics/job/j"), "{error}");
        assert!(path.exists(), "the file is still written");
        Ok(())
    }

    #[test]
    fn newest_change_from_statistics() {
        let text = r#"{"maxValues":{"_ab_cdc_updated_at":"2024-05-01T10:00:00.500Z","_cdc_updated_at":1714557600000000}}"#;
        assert_eq!(newest_in_stats(text, "_ab_cdc_updated_at"), Some(1_714_557_600.5));
        assert_eq!(newest_in_stats(text, "_cdc_updated_at"), Some(1_714_557_600.0));
        assert_eq!(newest_in_stats(text, "missing"), None);
        assert_eq!(newest_in_stats("not json", "x"), None);
    }
}
