//! `destination-delta-lake spec | check --config FILE | write --config FILE --catalog FILE`
//!
//! Stdout carries Airbyte protocol messages only; diagnostics go to stderr. Exit 0 on success;
//! on failure one TRACE ERROR (with `failure_type`) and exit 1.

use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use destination_delta_lake::catalog::Catalog;
use destination_delta_lake::config::{DestinationOptions, SPEC_JSON};
use destination_delta_lake::error::{ConnectorError, Result};
use destination_delta_lake::protocol::{self, Emitter};
use destination_delta_lake::write::SyncReport;
use destination_delta_lake::{check, metrics, write};

const USAGE: &str = "usage: destination-delta-lake spec | check --config CONFIG.json | write --config CONFIG.json --catalog CATALOG.json";

/// glibc's malloc raises its mmap threshold each time a large block is freed (up to 32 MiB) and
/// from then on keeps freed batch buffers in its heaps: a 5 M-record sync peaked at 305 MiB instead
/// of 246 (bench/bench.py, 2026-11-30). A fixed threshold of 4 MiB (a batch's columns are larger)
/// hands such buffers back to the system when they are freed; it cost no time in that run.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only sets one of glibc's allocator tunables; it is called first thing in
    // main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    tune_allocator();
    let emitter = Arc::new(Emitter::stdout());
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&emitter, &ConnectorError::Io(e)),
    };
    match runtime.block_on(run(&args, emitter.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&emitter, &e),
    }
}

fn fail(emitter: &Emitter, error: &ConnectorError) -> ExitCode {
    let internal = format!("{error:?}");
    eprintln!("destination-delta-lake: {error}");
    let trace = protocol::trace_error(&error.user_message(), &internal, error.failure_type().as_str());
    if let Err(e) = emitter.emit(&trace) {
        eprintln!("destination-delta-lake: cannot write to stdout: {e}");
    }
    ExitCode::FAILURE
}

fn flag(args: &[String], name: &str) -> Result<PathBuf> {
    args.windows(2)
        .find(|w| w[0] == name)
        .map(|w| PathBuf::from(&w[1]))
        .ok_or_else(|| ConnectorError::Usage(format!("missing {name} FILE. {USAGE}")))
}

async fn run(args: &[String], emitter: Arc<Emitter>) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("spec") => {
            let spec: serde_json::Value = serde_json::from_str(SPEC_JSON)
                .map_err(|e| ConnectorError::Internal(format!("embedded spec: {e}")))?;
            emitter.emit(&serde_json::json!({"type": "SPEC", "spec": spec}))?;
            Ok(())
        }
        Some("check") => {
            // A config the user must fix is a FAILED status, not a crash (as the Python CDK does).
            let status = match DestinationOptions::from_file(&flag(args, "--config")?) {
                Err(e) => protocol::connection_status(false, &e.to_string()),
                Ok(options) => match check::check(&options).await {
                    Ok(message) => protocol::connection_status(true, &message),
                    Err(message) => protocol::connection_status(false, &message),
                },
            };
            emitter.emit(&status)?;
            Ok(())
        }
        Some("write") => {
            let options = DestinationOptions::from_file(&flag(args, "--config")?)?;
            let catalog = Catalog::load(&flag(args, "--catalog")?, &options.default_namespace)?;
            let input = Box::new(BufReader::with_capacity(1 << 20, std::io::stdin()));
            let started = std::time::Instant::now();
            let lineage = metrics::start_lineage(&options, &emitter).await;
            let mut report = SyncReport::default();
            let result = write::run_write_reporting(options.clone(), catalog, input, emitter.clone(), &mut report).await;
            metrics::finish(&options, &report, started.elapsed(), result.as_ref().err(), &lineage, &emitter).await;
            result.map(|_| ())
        }
        Some(other) => Err(ConnectorError::Usage(format!("unknown command {other:?}. {USAGE}"))),
        None => Err(ConnectorError::Usage(USAGE.into())),
    }
}
