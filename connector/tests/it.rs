//! Integration tests of the write pipeline, in process, against a local folder.

use std::io::{Cursor, Write};
use std::sync::{Arc, Mutex};

use destination_delta_lake::catalog::Catalog;
use destination_delta_lake::config::DestinationOptions;
use destination_delta_lake::protocol::Emitter;
use destination_delta_lake::write::run_write;
use ridelake_core::generator::{Generator, GeneratorConfig, configured_catalog};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().expect("lock").clone();
        String::from_utf8(bytes)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
            .collect()
    }
}

fn options(lake: &std::path::Path, flush_interval_seconds: u64) -> DestinationOptions {
    DestinationOptions::from_json(
        &serde_json::json!({"storage": {"storage_type": "Local", "local_path": lake},
                            "flush_interval_seconds": flush_interval_seconds})
        .to_string(),
    )
    .expect("config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_generated_cdc_and_echoes_every_state_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut input = Vec::new();
    let cfg = GeneratorConfig { users: 100, rides: 400, changes: 3000, state_every: 500, ..Default::default() };
    let generated = Generator::new(cfg, &mut input).run().expect("generate");
    let catalog = Catalog::from_json(&configured_catalog("ridehail", "append", 1, 0, 1), "default").expect("catalog");
    let out = Captured::default();
    let emitter = Arc::new(Emitter::to_writer(Box::new(out.clone())));
    let summary = run_write(options(dir.path(), 0), catalog, Box::new(Cursor::new(input)), emitter).await.expect("write");

    assert_eq!(summary.read.records, generated.records);
    assert_eq!(summary.states_echoed, generated.states);
    let states: Vec<_> = out.lines().into_iter().filter(|m| m["type"] == "STATE").collect();
    assert_eq!(states.len() as u64, generated.states);
    let counted: f64 = states.iter().map(|s| s["state"]["destinationStats"]["recordCount"].as_f64().expect("count")).sum();
    assert_eq!(counted as u64, generated.records);
    for s in &states {
        assert_eq!(s["state"]["destinationStats"]["recordCount"], s["state"]["sourceStats"]["recordCount"]);
    }
    let table = deltalake::open_table(url::Url::from_directory_path(dir.path().join("ridehail/rides")).expect("url"))
        .await
        .expect("rides table");
    assert!(table.version().expect("version") >= 1);
    let txn = table
        .snapshot()
        .expect("snapshot")
        .transaction_version(table.log_store().as_ref(), "unknown-app")
        .await
        .expect("txn");
    assert_eq!(txn, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_covers_states_only_after_it_lands() {
    // With a long interval, nothing is echoed before the end of input; then everything is.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut input = Vec::new();
    let cfg = GeneratorConfig { users: 20, rides: 50, changes: 300, state_every: 40, ..Default::default() };
    let generated = Generator::new(cfg, &mut input).run().expect("generate");
    let catalog = Catalog::from_json(&configured_catalog("ridehail", "append", 1, 0, 1), "default").expect("catalog");
    let out = Captured::default();
    let emitter = Arc::new(Emitter::to_writer(Box::new(out.clone())));
    let summary = run_write(options(dir.path(), 3600), catalog, Box::new(Cursor::new(input)), emitter).await.expect("write");
    assert_eq!(summary.states_echoed, generated.states);
    // One data commit per table for the whole sync.
    assert_eq!(summary.commits, 2);
}
