//! One writer at a time: a lease kept in a Delta table's own log, so it works wherever Delta does
//! (a folder, S3 with conditional PUT) without another service.
//!
//! The lease table (`<layer>/_lease`) holds no data. Each commit carries one `txn` action,
//! `(app_id = "ridelake.lease", version = expiry in ms since the epoch, 0 = free)`, and the
//! holder's name in its commit info. Acquiring reads the latest expiry; a lease that has not
//! expired is held by another run, and the run stops with [`LakehouseError::Busy`]. Otherwise the
//! run commits its own expiry on top of the version it read. Two runs that read the same version
//! both try to commit a `txn` of the same app id: Delta's conflict check lets exactly one win
//! (`ConcurrentTransaction`), and the other stops.
//!
//! The holder renews before each of its writes ([`Lease::renew`]), on top of the version of its
//! previous lease commit: when someone else committed in between (the lease had expired and was
//! taken), renewal fails and the run stops before it writes anything more (fencing). A crashed
//! run's lease expires after its time to live (`RIDELAKE_LEASE_TTL_S`, default 15 minutes), or
//! at once when its holder ran on this host and that process is gone; a finished run frees it.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deltalake::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake::kernel::{Action, DataType as DeltaType, PrimitiveType, StructField, Transaction};
use deltalake::logstore::get_actions;
use deltalake::protocol::DeltaOperation;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use url::Url;

use crate::error::{LakehouseError, Result};
use crate::io;

/// The `txn` app id of lease commits.
pub const LEASE_APP_ID: &str = "ridelake.lease";
/// How long a lease lasts without renewal, unless set otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A lease held by this run.
pub struct Lease {
    url: Url,
    options: HashMap<String, String>,
    table: DeltaTable,
    holder: String,
    ttl: Duration,
}

/// The layer a lease table belongs to: the folder that holds it (`<lake>/silver/_lease` → `silver`).
fn layer_of(url: &Url) -> String {
    url.path_segments()
        .map(|segments| segments.filter(|s| !s.is_empty()).collect::<Vec<_>>())
        .and_then(|segments| segments.len().checked_sub(2).and_then(|i| segments.get(i).map(|s| s.to_string())))
        .unwrap_or_else(|| "layer".to_owned())
}

async fn open_or_create(url: &Url, options: &HashMap<String, String>) -> Result<DeltaTable> {
    if let Some(table) = io::open(url, options).await? {
        return Ok(table);
    }
    if let Ok(path) = url.to_file_path() {
        std::fs::create_dir_all(&path).map_err(|e| LakehouseError::delta(url, e.into()))?;
    }
    let created = DeltaTableBuilder::from_url(url.clone())
        .map_err(|e| LakehouseError::delta(url, e))?
        .with_storage_options(options.clone())
        .build()
        .map_err(|e| LakehouseError::delta(url, e))?
        .create()
        .with_columns([StructField::new("unused", DeltaType::Primitive(PrimitiveType::Long), true)])
        .with_table_name(format!("{}_lease", layer_of(url)))
        .with_configuration([(crate::maintain::LOG_CLEANUP_PROPERTY, Some("false"))])
        .with_comment("ridelake: the lease of the layer's writer, one run at a time (no data: each commit's txn version is the expiry, its commit info the holder)")
        .await;
    match created {
        Ok(table) => Ok(table),
        // Another run created it at the same moment: use theirs.
        Err(_) => io::open(url, options).await?.ok_or_else(|| LakehouseError::MissingTable(url.to_string())),
    }
}

async fn expiry(table: &DeltaTable) -> Result<i64> {
    Ok(io::marker(table, LEASE_APP_ID).await?.unwrap_or(0))
}

/// The holder named by the table's latest commit, if it is a lease commit.
async fn latest_holder(table: &DeltaTable) -> Option<String> {
    let version = table.version()?;
    let bytes = table.log_store().read_commit_entry(version).await.ok()??;
    get_actions(version, &bytes).ok()?.into_iter().find_map(|action| match action {
        Action::CommitInfo(info) => info.info.get("ridelake.lease.holder").and_then(|v| v.as_str()).map(str::to_owned),
        _ => None,
    })
}

/// This host's name, as holders record it.
fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A name for a run of `job` in the lease's commit info: job, host and process.
pub fn holder(job: &str) -> String {
    format!("{job}@{}:{}", host(), std::process::id())
}

/// Whether `holder` ([`holder`]'s form) names a process of this host that no longer runs.
fn holder_is_gone(holder: &str) -> bool {
    let Some((_, place)) = holder.rsplit_once('@') else { return false };
    let Some((holder_host, pid)) = place.rsplit_once(':') else { return false };
    let Ok(pid) = pid.parse::<u32>() else { return false };
    holder_host == host() && pid != std::process::id() && cfg!(target_os = "linux") && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The lease time to live: `RIDELAKE_LEASE_TTL_S` (seconds) when set, else [`DEFAULT_TTL`].
pub fn ttl_from_env() -> Duration {
    std::env::var("RIDELAKE_LEASE_TTL_S").ok().and_then(|s| s.trim().parse::<u64>().ok()).map_or(DEFAULT_TTL, Duration::from_secs)
}

/// Commits `expiry` on top of `table`'s version; `Ok(None)` when another commit came first.
async fn commit_expiry(table: &DeltaTable, url: &Url, holder: &str, expiry: i64) -> Result<Option<u64>> {
    let snapshot = table.snapshot().map_err(|e| LakehouseError::delta(url, e))?;
    let mut metadata = serde_json::Map::new();
    metadata.insert("ridelake.lease.holder".into(), serde_json::json!(holder));
    metadata.insert("ridelake.lease.expires_ms".into(), serde_json::json!(expiry));
    let properties =
        CommitProperties::default().with_metadata(metadata).with_application_transaction(Transaction::new(LEASE_APP_ID, expiry)).with_max_retries(0);
    let committed = CommitBuilder::from(properties)
        .with_actions(Vec::<Action>::new())
        .build(Some(snapshot), table.log_store(), DeltaOperation::Update { predicate: None })
        .await;
    match committed {
        Ok(done) => Ok(Some(done.version())),
        Err(DeltaTableError::VersionAlreadyExists(_))
        | Err(DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(_) | TransactionError::VersionAlreadyExists(_) | TransactionError::MaxCommitAttempts(_),
        }) => Ok(None),
        Err(e) => Err(LakehouseError::delta(url, e)),
    }
}

impl Lease {
    /// Takes the lease at `url` for `holder` (a description of the run: job, host, process).
    pub async fn acquire(url: &Url, options: &HashMap<String, String>, holder: &str, ttl: Duration) -> Result<Lease> {
        let table = open_or_create(url, options).await?;
        let held_until = expiry(&table).await?;
        let busy = || LakehouseError::Busy { lease: url.to_string(), until_ms: held_until };
        if held_until > now_ms() && !latest_holder(&table).await.is_some_and(|h| holder_is_gone(&h)) {
            return Err(busy());
        }
        let expires = now_ms() + ttl.as_millis() as i64;
        let Some(version) = commit_expiry(&table, url, holder, expires).await? else {
            return Err(LakehouseError::Busy { lease: url.to_string(), until_ms: expires });
        };
        let table = io::open_version(url, options, version).await?;
        Ok(Lease { url: url.clone(), options: options.clone(), table, holder: holder.to_owned(), ttl })
    }

    /// Extends the lease; fails when another run took it since this run's last lease commit.
    pub async fn renew(&mut self) -> Result<()> {
        let expires = now_ms() + self.ttl.as_millis() as i64;
        match commit_expiry(&self.table, &self.url, &self.holder, expires).await? {
            Some(version) => {
                self.table = io::open_version(&self.url, &self.options, version).await?;
                Ok(())
            }
            None => Err(LakehouseError::LeaseLost { lease: self.url.to_string() }),
        }
    }

    /// How long the lease lasts after each renewal.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Frees the lease (best effort: an unreleased lease expires on its own).
    pub async fn release(self) {
        match commit_expiry(&self.table, &self.url, &self.holder, 0).await {
            Ok(Some(_)) => {}
            Ok(None) => eprintln!("WARN the lease {} was taken by another run before this one freed it", self.url),
            Err(e) => eprintln!("WARN could not free the lease {}: {e}", self.url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_named_after_its_layer() {
        for (url, layer) in [("file:///lake/silver/_lease/", "silver"), ("s3://bucket/prefix/gold/_lease", "gold")] {
            assert_eq!(layer_of(&Url::parse(url).expect("url")), layer);
        }
    }

    #[test]
    fn only_a_gone_process_of_this_host_frees_a_lease_early() {
        assert!(!holder_is_gone(&holder("silver")), "this process runs");
        assert!(!holder_is_gone("silver@another-host:1"), "another host: wait for the expiry");
        assert!(!holder_is_gone("garbage"));
        if cfg!(target_os = "linux") {
            assert!(holder_is_gone(&format!("silver@{}:{}", host(), u32::MAX - 7)), "no such process here");
        }
    }
}
