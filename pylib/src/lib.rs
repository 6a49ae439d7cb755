//! The `ridelake._native` Python module: thin glue over `ridelake-lakehouse`.
//!
//! Every function converts its arguments, releases the GIL while the pure-Rust work runs on one
//! shared tokio runtime, and maps errors to the `ridelake` exception types. No logic lives here.

use std::collections::HashMap;
use std::sync::OnceLock;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3_polars::PyDataFrame;
use ridelake_core::lineage::LineageTarget;
use ridelake_core::metrics::MetricsTarget;
use ridelake_core::storage::StorageConfig;
use ridelake_lakehouse::LakehouseError;
use ridelake_lakehouse::gold::GoldOptions;
use ridelake_lakehouse::layout::LakeLayout;
use ridelake_lakehouse::maintain::MaintainOptions;
use ridelake_lakehouse::model::{self, Model};
use ridelake_lakehouse::observe::{self, Observability};
use ridelake_lakehouse::rebuild::{self, SliceOutput, SliceRunner, SliceTask};
use ridelake_lakehouse::silver::SilverOptions;

create_exception!(_native, RidelakeError, PyException, "Base class of ridelake errors.");
create_exception!(_native, MissingTableError, RidelakeError, "A table the call needs does not exist (yet).");
create_exception!(_native, StorageError, RidelakeError, "The lake's storage refused or failed an operation.");
create_exception!(_native, ConfigError, RidelakeError, "The lake location or options are invalid.");
create_exception!(_native, DataError, RidelakeError, "A table's data or schema is not what ridelake expects.");
create_exception!(_native, BusyError, RidelakeError, "Another run holds the layer's lease (one writer at a time); retry when it is done.");

fn to_py(error: LakehouseError) -> PyErr {
    let message = error.to_string();
    match error {
        LakehouseError::MissingBronze(_) | LakehouseError::MissingTable(_) => MissingTableError::new_err(message),
        LakehouseError::Core(_) | LakehouseError::Setting { .. } => ConfigError::new_err(message),
        LakehouseError::Delta { .. } | LakehouseError::Postgres(_) => StorageError::new_err(message),
        LakehouseError::Schema { .. } | LakehouseError::Polars { .. } | LakehouseError::Arrow(_) | LakehouseError::RuleBroken { .. } | LakehouseError::ColumnChanged { .. } | LakehouseError::KeptColumnChanged { .. } => DataError::new_err(message),
        LakehouseError::Interrupted(_) | LakehouseError::Task(_) | LakehouseError::Output(_) => RidelakeError::new_err(message),
        LakehouseError::Busy { .. } | LakehouseError::LeaseLost { .. } => BusyError::new_err(message),
        LakehouseError::Model { .. } | LakehouseError::ModelChanged { .. } => ConfigError::new_err(message),
    }
}

struct Runtime {
    runtime: tokio::runtime::Runtime,
    pid: u32,
}

/// One tokio runtime per process; using it after `fork` is refused (tokio is not fork-safe).
fn run<T>(py: Python<'_>, work: impl std::future::Future<Output = Result<T, LakehouseError>> + Send) -> PyResult<T>
where
    T: Send,
{
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map(|runtime| Runtime { runtime, pid: std::process::id() })
            .map_err(|e| e.to_string())
    });
    let runtime = runtime.as_ref().map_err(|e| RidelakeError::new_err(format!("cannot start the async runtime: {e}")))?;
    if runtime.pid != std::process::id() {
        return Err(RidelakeError::new_err(
            "ridelake was used before this process forked; use the 'spawn' or 'forkserver' multiprocessing start method",
        ));
    }
    py.detach(|| runtime.runtime.block_on(work)).map_err(to_py)
}

fn layout(lake: &str, namespace: &str, storage_options: Option<HashMap<String, String>>) -> PyResult<LakeLayout> {
    let storage = StorageConfig::from_uri(lake, &storage_options.unwrap_or_default()).map_err(|e| ConfigError::new_err(e.to_string()))?;
    LakeLayout::new(storage, namespace).map_err(to_py)
}

/// Metrics and lineage targets: the arguments given, then the environment.
fn observability(
    pushgateway_url: Option<String>,
    metrics_file: Option<std::path::PathBuf>,
    lineage_url: Option<String>,
    lineage_file: Option<std::path::PathBuf>,
) -> Observability {
    Observability {
        metrics: MetricsTarget { pushgateway_url, file: metrics_file },
        lineage: LineageTarget { url: lineage_url, file: lineage_file, ..LineageTarget::default() },
    }
    .or_env()
}

/// The layout read through the model file `model` (else `RIDELAKE_MODEL`, else the default model).
fn modeled_layout(lake: &str, namespace: &str, storage_options: Option<HashMap<String, String>>, model: Option<&std::path::Path>) -> PyResult<LakeLayout> {
    let model = Model::resolve(model).map_err(to_py)?;
    Ok(layout(lake, namespace, storage_options)?.with_model(model))
}

/// Runs a run's slices (a rebuild's, or a large increment's) through a Python callable, `runner(tasks: list[str]) -> list[str]`
/// (each task and each output one JSON text), called on a thread of its own while the run waits.
/// `ridelake.engines` builds it from `engine=` (Ray, or any map).
#[derive(Debug)]
struct PyRunner(Py<PyAny>);

impl SliceRunner for PyRunner {
    fn run<'a>(&'a self, _layout: &'a LakeLayout, tasks: Vec<SliceTask>) -> futures::future::BoxFuture<'a, Result<Vec<SliceOutput>, LakehouseError>> {
        Box::pin(async move {
            let texts = tasks.iter().map(serde_json::to_string).collect::<Result<Vec<_>, _>>().map_err(|e| LakehouseError::Task(e.to_string()))?;
            let runner = Python::attach(|py| self.0.clone_ref(py));
            let outputs = tokio::task::spawn_blocking(move || Python::attach(|py| runner.call1(py, (texts,))?.extract::<Vec<String>>(py)))
                .await
                .map_err(|e| LakehouseError::Task(format!("the engine's thread failed: {e}")))?
                .map_err(|e| LakehouseError::Task(format!("the engine failed to run the slices: {e}")))?;
            outputs
                .iter()
                .map(|text| serde_json::from_str::<SliceOutput>(text))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| LakehouseError::Task(format!("the engine returned something that is not a slice's output: {e}")))
        })
    }
}

/// A memory size: bytes, or text such as `"2GiB"`.
#[derive(FromPyObject)]
enum Size {
    Bytes(u64),
    Text(String),
}

/// A `memory_budget` argument in bytes.
fn budget(size: Option<Size>) -> PyResult<Option<u64>> {
    Ok(match size {
        None => None,
        // (bytes go through the same check as text: 0 is refused alike)
        Some(Size::Bytes(bytes)) => Some(ridelake_lakehouse::slices::budget("memory_budget", &bytes.to_string()).map_err(to_py)?),
        Some(Size::Text(text)) => Some(ridelake_lakehouse::slices::budget("memory_budget", &text).map_err(to_py)?),
    })
}

/// Applies new bronze changes to the silver tables; returns the run report. A rebuild, and an
/// increment larger than the budget, decide their rides in slices (ranges of the ride id) so as
/// to stay within `memory_budget` (bytes or `"2GiB"`; default `RIDELAKE_MEMORY_BUDGET`, else half
/// the machine's memory), or in exactly `slices` slices. `runner` runs the slices elsewhere (see `PyRunner`; `ridelake.build_silver`
/// makes it from `engine=`).
#[pyfunction]
#[pyo3(signature = (lake, namespace = "ridehail", storage_options = None, *, model = None, rebuild = false, memory_budget = None, slices = None, runner = None, pushgateway_url = None, metrics_file = None, lineage_url = None, lineage_file = None))]
#[allow(clippy::too_many_arguments)]
fn build_silver<'py>(
    py: Python<'py>,
    lake: &str,
    namespace: &str,
    storage_options: Option<HashMap<String, String>>,
    model: Option<std::path::PathBuf>,
    rebuild: bool,
    memory_budget: Option<Size>,
    slices: Option<usize>,
    runner: Option<Py<PyAny>>,
    pushgateway_url: Option<String>,
    metrics_file: Option<std::path::PathBuf>,
    lineage_url: Option<String>,
    lineage_file: Option<std::path::PathBuf>,
) -> PyResult<Bound<'py, PyAny>> {
    let layout = modeled_layout(lake, namespace, storage_options, model.as_deref())?;
    let observe = observability(pushgateway_url, metrics_file, lineage_url, lineage_file);
    let memory_budget = budget(memory_budget)?;
    let engine = runner.map(|r| std::sync::Arc::new(PyRunner(r)) as std::sync::Arc<dyn SliceRunner>);
    let options = SilverOptions { rebuild, memory_budget, slices, engine, ..SilverOptions::default() };
    let report = run(py, async move { observe::run_silver(&layout, &options, &observe).await })?;
    to_python(py, &report)
}

/// The worker half of a sliced run (a rebuild, or an increment): decides the rides of one slice (`task`, a JSON text the run's
/// driver made) and writes their Parquet files, none committed; returns the files' Delta add
/// actions and the slice's counts as a JSON text, for the driver to commit.
#[pyfunction]
#[pyo3(signature = (lake, task, namespace = "ridehail", storage_options = None, *, model = None))]
fn run_slice(py: Python<'_>, lake: &str, task: &str, namespace: &str, storage_options: Option<HashMap<String, String>>, model: Option<std::path::PathBuf>) -> PyResult<String> {
    let layout = modeled_layout(lake, namespace, storage_options, model.as_deref())?;
    let task: SliceTask = serde_json::from_str(task).map_err(|e| ConfigError::new_err(format!("task is not a slice task of this ridelake: {e}")))?;
    let output = run(py, async move { rebuild::run_slice(&layout, &task).await })?;
    serde_json::to_string(&output).map_err(|e| RidelakeError::new_err(e.to_string()))
}

/// Checks a model file, and when `lake` is given, against the lake's bronze tables (their logs
/// and schemas only); returns the problems found (each with its file and line), empty when none.
#[pyfunction]
#[pyo3(signature = (model, lake = None, namespace = "ridehail", storage_options = None))]
fn validate_model(py: Python<'_>, model: std::path::PathBuf, lake: Option<&str>, namespace: &str, storage_options: Option<HashMap<String, String>>) -> PyResult<Vec<String>> {
    let lake = lake.map(|lake| layout(lake, namespace, storage_options)).transpose()?;
    run(py, async move { model::validate_file(&model, lake.as_ref()).await })
}

/// The JSON Schema of model files, as a dict.
#[pyfunction]
fn model_schema<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
    to_python(py, &model::json_schema())
}

/// Updates the gold tables for the silver days that changed, reading them in batches of days
/// that fit `memory_budget` (as `build_silver`'s), with the cities of the model file `model`
/// (else `RIDELAKE_MODEL`, else the default cities); returns the run report.
#[pyfunction]
#[pyo3(signature = (lake, namespace = "ridehail", storage_options = None, *, model = None, memory_budget = None, pushgateway_url = None, metrics_file = None, lineage_url = None, lineage_file = None))]
#[allow(clippy::too_many_arguments)]
fn build_gold<'py>(
    py: Python<'py>,
    lake: &str,
    namespace: &str,
    storage_options: Option<HashMap<String, String>>,
    model: Option<std::path::PathBuf>,
    memory_budget: Option<Size>,
    pushgateway_url: Option<String>,
    metrics_file: Option<std::path::PathBuf>,
    lineage_url: Option<String>,
    lineage_file: Option<std::path::PathBuf>,
) -> PyResult<Bound<'py, PyAny>> {
    let layout = modeled_layout(lake, namespace, storage_options, model.as_deref())?;
    let observe = observability(pushgateway_url, metrics_file, lineage_url, lineage_file);
    let options = GoldOptions { memory_budget: budget(memory_budget)? };
    let report = run(py, async move { observe::run_gold(&layout, &options, &observe).await })?;
    to_python(py, &report)
}

/// Compacts, checkpoints, cleans the logs of and vacuums every table of the lake without
/// changing what any returns; returns the run report.
#[pyfunction]
#[pyo3(signature = (lake, namespace = "ridehail", storage_options = None, *, model = None, retention_hours = 168.0, log_retention_hours = 720.0, target_file_mb = 128, compact = true, vacuum = true, pushgateway_url = None, metrics_file = None))]
#[allow(clippy::too_many_arguments)]
fn maintain<'py>(
    py: Python<'py>,
    lake: &str,
    namespace: &str,
    storage_options: Option<HashMap<String, String>>,
    model: Option<std::path::PathBuf>,
    retention_hours: f64,
    log_retention_hours: f64,
    target_file_mb: u64,
    compact: bool,
    vacuum: bool,
    pushgateway_url: Option<String>,
    metrics_file: Option<std::path::PathBuf>,
) -> PyResult<Bound<'py, PyAny>> {
    let hours = |h: f64, name: &str| {
        std::time::Duration::try_from_secs_f64(h * 3600.0).map_err(|_| ConfigError::new_err(format!("{name} must be a number of hours, 0 or more")))
    };
    let options = MaintainOptions {
        retention: hours(retention_hours, "retention_hours")?,
        log_retention: hours(log_retention_hours, "log_retention_hours")?,
        target_file_bytes: target_file_mb.max(1) * 1024 * 1024,
        compact,
        vacuum,
        ..MaintainOptions::default()
    };
    let layout = modeled_layout(lake, namespace, storage_options, model.as_deref())?;
    let observe = observability(pushgateway_url, metrics_file, None, None);
    let report = run(py, async move { observe::run_maintenance(&layout, &options, &observe).await })?;
    to_python(py, &report)
}

/// Reads a table of a layer (`bronze`, `silver`, `gold`) as a Polars DataFrame. A silver table
/// is named as the code knows it (`users`, `rides`, `rides_pending`, …) or as the model (`model`,
/// else `RIDELAKE_MODEL`) names it.
#[pyfunction]
#[pyo3(signature = (lake, layer, table, namespace = "ridehail", storage_options = None, *, model = None))]
fn read_table(
    py: Python<'_>,
    lake: &str,
    layer: &str,
    table: &str,
    namespace: &str,
    storage_options: Option<HashMap<String, String>>,
    model: Option<std::path::PathBuf>,
) -> PyResult<PyDataFrame> {
    // (only silver's locations depend on the model)
    let layout = if layer == "silver" { modeled_layout(lake, namespace, storage_options, model.as_deref())? } else { layout(lake, namespace, storage_options)? };
    let url = match layer {
        "bronze" => layout.bronze(table),
        "silver" => layout.silver(table),
        "gold" => layout.gold(table),
        other => return Err(ConfigError::new_err(format!("layer must be bronze, silver or gold, not {other:?}"))),
    }
    .map_err(to_py)?;
    let options = layout.storage_options();
    let frame = run(py, async move {
        match ridelake_lakehouse::io::open(&url, &options).await? {
            Some(t) => ridelake_lakehouse::io::read_all(&t).await,
            None => Err(LakehouseError::MissingTable(url.to_string())),
        }
    })?;
    Ok(PyDataFrame(frame))
}

/// How far silver is behind bronze: per stream, the latest bronze version and the one silver reflects.
#[pyfunction]
#[pyo3(signature = (lake, namespace = "ridehail", storage_options = None, *, model = None))]
fn bronze_progress<'py>(py: Python<'py>, lake: &str, namespace: &str, storage_options: Option<HashMap<String, String>>, model: Option<std::path::PathBuf>) -> PyResult<Bound<'py, PyAny>> {
    let layout = modeled_layout(lake, namespace, storage_options, model.as_deref())?;
    let progress = run(py, async move { ridelake_lakehouse::silver::progress(&layout).await })?;
    to_python(py, &progress)
}

/// Exports every gold table as `<dir>/<table>.parquet` (local folder); returns what was written.
#[pyfunction]
#[pyo3(signature = (lake, dir, namespace = "ridehail", storage_options = None))]
fn export_gold_parquet<'py>(
    py: Python<'py>,
    lake: &str,
    dir: std::path::PathBuf,
    namespace: &str,
    storage_options: Option<HashMap<String, String>>,
) -> PyResult<Bound<'py, PyAny>> {
    let layout = layout(lake, namespace, storage_options)?;
    let exported = run(py, async move { ridelake_lakehouse::gold::export_parquet(&layout, &dir).await })?;
    to_python(py, &exported)
}

/// Publishes every gold table to PostgreSQL in one transaction (incremental, idempotent).
#[pyfunction]
#[pyo3(signature = (lake, dsn = None, schema = "gold", namespace = "ridehail", storage_options = None))]
fn publish_postgres<'py>(
    py: Python<'py>,
    lake: &str,
    dsn: Option<String>,
    schema: &str,
    namespace: &str,
    storage_options: Option<HashMap<String, String>>,
) -> PyResult<Bound<'py, PyAny>> {
    let layout = layout(lake, namespace, storage_options)?;
    let schema = schema.to_owned();
    let published = run(py, async move { ridelake_lakehouse::publish::publish_postgres(&layout, dsn.as_deref(), &schema).await })?;
    to_python(py, &published)
}

/// Writes the per-driver and per-customer ML feature files under `<lake>/ml/`.
#[pyfunction]
#[pyo3(signature = (lake, namespace = "ridehail", storage_options = None))]
fn export_features<'py>(py: Python<'py>, lake: &str, namespace: &str, storage_options: Option<HashMap<String, String>>) -> PyResult<Bound<'py, PyAny>> {
    let layout = layout(lake, namespace, storage_options)?;
    let files = run(py, async move { ridelake_lakehouse::features::export_features(&layout).await })?;
    to_python(py, &files)
}

/// A serializable Rust value as Python objects (through JSON: one schema, the Rust one).
fn to_python<'py>(py: Python<'py>, value: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(|e| RidelakeError::new_err(e.to_string()))?;
    py.import("json")?.call_method1("loads", (text,))
}

/// Reads the lake's summary: rows per table, pending and quarantined rides, top drivers, months, days.
#[pyfunction]
#[pyo3(signature = (lake, namespace = "ridehail", storage_options = None, top = 10))]
fn lake_summary<'py>(py: Python<'py>, lake: &str, namespace: &str, storage_options: Option<HashMap<String, String>>, top: usize) -> PyResult<Bound<'py, PyAny>> {
    let layout = modeled_layout(lake, namespace, storage_options, None)?; // bronze streams as RIDELAKE_MODEL names them
    let summary = run(py, async move { ridelake_lakehouse::report::summarize(&layout, top).await })?;
    to_python(py, &summary)
}

/// Writes the lake's report as one self-contained HTML page to the local file `path`; returns the summary.
#[pyfunction]
#[pyo3(signature = (lake, path, namespace = "ridehail", storage_options = None, top = 10, title = None))]
fn write_report<'py>(
    py: Python<'py>,
    lake: &str,
    path: std::path::PathBuf,
    namespace: &str,
    storage_options: Option<HashMap<String, String>>,
    top: usize,
    title: Option<String>,
) -> PyResult<Bound<'py, PyAny>> {
    let title = title.unwrap_or_else(|| format!("ridelake report: {lake}"));
    let layout = modeled_layout(lake, namespace, storage_options, None)?;
    let summary = run(py, async move { ridelake_lakehouse::report::write_report(&layout, &path, &title, top).await })?;
    to_python(py, &summary)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(build_silver, m)?)?;
    m.add_function(wrap_pyfunction!(run_slice, m)?)?;
    m.add_function(wrap_pyfunction!(build_gold, m)?)?;
    m.add_function(wrap_pyfunction!(read_table, m)?)?;
    m.add_function(wrap_pyfunction!(lake_summary, m)?)?;
    m.add_function(wrap_pyfunction!(write_report, m)?)?;
    m.add_function(wrap_pyfunction!(bronze_progress, m)?)?;
    m.add_function(wrap_pyfunction!(export_gold_parquet, m)?)?;
    m.add_function(wrap_pyfunction!(publish_postgres, m)?)?;
    m.add_function(wrap_pyfunction!(export_features, m)?)?;
    m.add_function(wrap_pyfunction!(validate_model, m)?)?;
    m.add_function(wrap_pyfunction!(model_schema, m)?)?;
    m.add_function(wrap_pyfunction!(maintain, m)?)?;
    m.add("RidelakeError", m.py().get_type::<RidelakeError>())?;
    m.add("MissingTableError", m.py().get_type::<MissingTableError>())?;
    m.add("StorageError", m.py().get_type::<StorageError>())?;
    m.add("ConfigError", m.py().get_type::<ConfigError>())?;
    m.add("DataError", m.py().get_type::<DataError>())?;
    m.add("BusyError", m.py().get_type::<BusyError>())?;
    Ok(())
}
