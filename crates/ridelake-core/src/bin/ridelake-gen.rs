//! `ridelake-gen`: writes seeded ride-hailing CDC (Airbyte source-mysql shape) as JSON lines.
//!
//! ```text
//! ridelake-gen [--records N] [--users N] [--rides N] [--changes N] [--seed S]
//!              [--namespace NS] [--state-every N] [--duplicate-rate F] [--late-user-rate F]
//!              [--bad-null-rate F] [--delete-rate F] [--user-delete-rate F] [--reinsert-rate F]
//!              [--type-change-rate F] [--cursor-era kotlin|java|upgrade] [--upgrade-at N]
//!              [--binlog-restart-at N] [--catalog FILE] [--sync-mode append|overwrite]
//!              [--generation-id N] [--minimum-generation-id N] [--sync-id N] [--skip-snapshot true]
//!              [--skip-records N] [--uuid-keys true] [--out FILE]
//! ```
//! `--uuid-keys true` writes every key (ids, a ride's customer and driver) as a UUID text, as an
//! application keyed by `CHAR(36)` UUIDs does, and declares them strings in the catalog.
//! `--cursor-era` picks the source-mysql generation whose `_ab_cdc_*` fields are written: `kotlin`
//! (3.9+, the default), `java` (3.0–3.7: counter cursors on every row) or `upgrade` (java for the
//! first half of the binlog changes, then kotlin: two syncs concatenated; `--upgrade-at N` moves
//! the switch to the N-th change). `--binlog-restart-at N` restarts the binlog numbering after N
//! binlog changes, with a re-snapshot of every current row (keeps every ride in memory until then).
//! `--skip-snapshot true` simulates the snapshot but writes only the binlog changes, to continue a
//! lake that already holds the same seed's snapshot. `--skip-records N` simulates but does not
//! write the first N records: with the same seed and sizes (`--users`, `--rides`, `--changes`) as
//! an earlier run that wrote N records, it continues exactly where that run stopped
//! (`--records` then counts the skipped records too).
//! `--records N` sizes users/rides/changes for N records in total (5% users, 45% snapshot rides,
//! the rest binlog changes) and stops at exactly N; with `--cursor-era upgrade` the switch is
//! then placed near the middle of the binlog records written. Messages go to stdout unless `--out` is given;
//! the summary goes to stderr.
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use ridelake_core::generator::{Generator, GeneratorConfig, configured_catalog_keyed};

/// Records per binlog change (transactions of several rows, duplicates), measured on the default
/// mix: places the upgrade of `--records N --cursor-era upgrade` near the middle of the changes.
const RECORDS_PER_CHANGE: f64 = 1.23;

const USAGE: &str = "usage: ridelake-gen [--records N] [--users N] [--rides N] [--changes N] [--seed S] \
[--namespace NS] [--state-every N] [--duplicate-rate F] [--late-user-rate F] [--bad-null-rate F] \
[--delete-rate F] [--user-delete-rate F] [--reinsert-rate F] [--type-change-rate F] \
[--cursor-era kotlin|java|upgrade] [--upgrade-at N] [--binlog-restart-at N] [--catalog FILE] [--sync-mode append|overwrite] [--generation-id N] \
[--minimum-generation-id N] [--sync-id N] [--skip-snapshot true] [--skip-records N] [--uuid-keys true] [--out FILE]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ridelake-gen: {message}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut cfg = GeneratorConfig::default();
    let (mut catalog, mut out_path, mut sync_mode) = (None, None, "append".to_owned());
    let (mut generation_id, mut min_generation_id, mut sync_id) = (1i64, 0i64, 1i64);
    let args: Vec<String> = std::env::args().skip(1).collect();
    // With explicit sizes, --records only bounds the output.
    let sized = args.iter().any(|a| matches!(a.as_str(), "--users" | "--rides" | "--changes"));
    let mut records_only = None;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            eprintln!("{USAGE}");
            return Ok(());
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let int = || value.replace('_', "").parse::<u64>().map_err(|e| format!("{flag} {value}: {e}"));
        let float = || value.parse::<f64>().map_err(|e| format!("{flag} {value}: {e}"));
        match flag.as_str() {
            "--records" if sized => cfg.max_records = Some(int()?),
            "--records" => {
                let n = int()?;
                cfg.users = (n / 20).max(10);
                cfg.rides = n * 9 / 20;
                cfg.changes = n;
                cfg.max_records = Some(n);
                records_only = Some(n);
            }
            "--users" => cfg.users = int()?,
            "--rides" => cfg.rides = int()?,
            "--changes" => cfg.changes = int()?,
            "--seed" => cfg.seed = int()?,
            "--state-every" => cfg.state_every = int()?.max(1),
            "--namespace" => cfg.namespace = value,
            "--duplicate-rate" => cfg.duplicate_rate = float()?,
            "--late-user-rate" => cfg.late_user_rate = float()?,
            "--bad-null-rate" => cfg.bad_null_rate = float()?,
            "--delete-rate" => cfg.delete_rate = float()?,
            "--user-delete-rate" => cfg.user_delete_rate = float()?,
            "--reinsert-rate" => cfg.reinsert_rate = float()?,
            "--type-change-rate" => cfg.type_change_rate = float()?,
            "--cursor-era" => cfg.cursor_era = value.parse()?,
            "--upgrade-at" => cfg.upgrade_at = Some(int()?),
            "--binlog-restart-at" => cfg.binlog_restart_at = Some(int()?),
            "--catalog" => catalog = Some(value),
            "--sync-mode" => sync_mode = value,
            "--generation-id" => generation_id = int()? as i64,
            "--minimum-generation-id" => min_generation_id = int()? as i64,
            "--sync-id" => sync_id = int()? as i64,
            "--out" => out_path = Some(value),
            "--skip-records" => cfg.skip_records = int()?,
            "--skip-snapshot" => cfg.skip_snapshot_output = matches!(value.as_str(), "true" | "1" | "yes"),
            "--uuid-keys" => cfg.uuid_keys = matches!(value.as_str(), "true" | "1" | "yes"),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if let (Some(n), None) = (records_only, cfg.upgrade_at) {
        // `changes` only bounds the run here: switch in the middle of the binlog records written.
        let binlog_records = n.saturating_sub(cfg.users + cfg.rides);
        cfg.upgrade_at = Some((binlog_records as f64 / 2.0 / RECORDS_PER_CHANGE) as u64);
    }
    if let Some(path) = catalog {
        let text = configured_catalog_keyed(&cfg.namespace, &sync_mode, generation_id, min_generation_id, sync_id, cfg.uuid_keys);
        std::fs::write(&path, text).map_err(|e| format!("writing {path}: {e}"))?;
    }
    let sink: Box<dyn Write> = match &out_path {
        Some(path) => Box::new(std::fs::File::create(path).map_err(|e| format!("creating {path}: {e}"))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let summary = Generator::new(cfg, BufWriter::with_capacity(1 << 20, sink)).run().map_err(|e| e.to_string())?;
    eprintln!(
        "ridelake-gen: {} records ({} duplicates), {} states, {} bytes",
        summary.records, summary.duplicates, summary.states, summary.bytes
    );
    Ok(())
}
