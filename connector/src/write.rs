//! The `write` command: stdin messages → bronze Delta tables, with STATE echoes.
//!
//! Two stages run in parallel on the two halves of the work:
//! - the *reader* (a blocking thread) parses lines, encodes records into per-stream Arrow
//!   batches and counts records per state scope;
//! - the *committer* (async) streams batches into Parquet files, commits, and echoes states.
//!
//! They talk through a bounded channel carrying batches and states in input order, so memory is
//! bounded and a state always follows every batch of the records received before it.
//!
//! Guarantees: a STATE is echoed only after the commits covering all records before it
//! succeeded, in the order received, with `destinationStats.recordCount` (and
//! `rejectedRecordCount` for records of streams the catalog does not have). At end of input
//! everything is committed, `overwrite` and `minimum_generation_id` are applied, the remaining
//! states are echoed and the process exits 0. On any failure no further state is echoed.

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::Arc;
use std::time::Instant;

use deltalake::arrow::array::RecordBatch;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::catalog::{Catalog, SyncMode};
use crate::config::DestinationOptions;
use crate::encoder::StreamEncoder;
use crate::error::{ConnectorError, Result};
use crate::protocol::{Emitter, Incoming, StateHeader, StreamDescriptor, state_echo};
use crate::sink::{BronzeTable, CommitContext};
use crate::state::{Covers, PendingState, StateTracker};

/// Batches are cut at this many rows…
const BATCH_ROWS: usize = 64 * 1024;
/// …or this many input bytes.
const BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Batches and states in flight between reader and committer.
const CHANNEL_DEPTH: usize = 4;
/// Rough memory of one open Parquet file (row group in progress + upload buffer).
const OPEN_FILE_COST: u64 = 48 * 1024 * 1024;

enum Work {
    Batch { stream: usize, batch: RecordBatch },
    State(PendingState),
}

/// What the reader saw.
#[derive(Debug, Default, Clone)]
pub struct ReadSummary {
    /// Lines read.
    pub lines: u64,
    /// RECORD messages written to a table.
    pub records: u64,
    /// RECORD messages of streams not in the catalog.
    pub rejected: u64,
    /// STATE messages received.
    pub states: u64,
    /// Input bytes.
    pub bytes: u64,
}

/// What the sync did, for the final log line and tests.
#[derive(Debug, Default, Clone)]
pub struct WriteSummary {
    /// Reader counts.
    pub read: ReadSummary,
    /// States echoed.
    pub states_echoed: u64,
    /// Commits made.
    pub commits: u64,
    /// Files committed.
    pub files: u64,
    /// Parquet bytes committed.
    pub bytes: u64,
    /// Files removed by overwrite or generation cleanup.
    pub files_removed: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StateKind {
    Global,
    Stream,
}

/// Runs a whole `write`: opens the tables, reads `input`, commits, echoes states.
pub async fn run_write(
    options: DestinationOptions,
    catalog: Catalog,
    input: Box<dyn BufRead + Send>,
    emitter: Arc<Emitter>,
) -> Result<WriteSummary> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut tables = Vec::with_capacity(catalog.streams.len());
    for plan in &catalog.streams {
        tables.push(BronzeTable::open(&options, plan.clone(), &run_id).await?);
    }
    emitter.log(
        "INFO",
        format!("destination-delta-lake: writing {} stream(s) to {}", tables.len(), options.storage.describe()),
    );
    let encoders: Vec<StreamEncoder> = tables.iter().map(BronzeTable::encoder).collect();
    let overwrite: Vec<bool> = catalog.streams.iter().map(|s| s.sync_mode == SyncMode::Overwrite).collect();

    let (tx, rx) = mpsc::channel::<Work>(CHANNEL_DEPTH);
    let reader_emitter = emitter.clone();
    let reader = tokio::task::spawn_blocking(move || read_input(input, &catalog, encoders, &tx, &reader_emitter));
    let committer =
        Committer { options: &options, tables, tracker: StateTracker::default(), overwrite, emitter: &emitter, removed: 0 };
    let committed = committer.run(rx).await;
    let read = reader.await.map_err(|e| ConnectorError::Internal(format!("reader thread: {e}")))?;
    let (mut summary, committer_error, mut committer) = committed;
    // A committer failure is the root cause (the reader then fails to send); report it first.
    if let Some(e) = committer_error {
        return Err(e);
    }
    let read = match read {
        Ok(read) => read,
        Err(read_error) => {
            // Keep the progress that states before the bad input already cover.
            committer.commit_and_release().await?;
            committer.abandon_overwrites();
            return Err(read_error);
        }
    };
    committer.finish().await?;
    summary.read = read;
    committer.fill(&mut summary);
    emitter.log(
        "INFO",
        format!(
            "destination-delta-lake: {} records ({} rejected), {} states echoed, {} commits, {} files, {} bytes, {} files removed",
            summary.read.records,
            summary.read.rejected,
            summary.states_echoed,
            summary.commits,
            summary.files,
            summary.bytes,
            summary.files_removed
        ),
    );
    Ok(summary)
}

struct Committer<'a> {
    options: &'a DestinationOptions,
    tables: Vec<BronzeTable>,
    tracker: StateTracker,
    overwrite: Vec<bool>,
    emitter: &'a Emitter,
    removed: u64,
}

impl Committer<'_> {
    /// Consumes the channel until the reader is done or a commit fails.
    async fn run(mut self, mut rx: mpsc::Receiver<Work>) -> (WriteSummary, Option<ConnectorError>, Self) {
        let error = loop {
            let deadline = self.tracker.oldest_age().map(|age| {
                tokio::time::Instant::now() + self.options.flush_interval.saturating_sub(age)
            });
            let work = tokio::select! {
                work = rx.recv() => work,
                () = sleep_until(deadline) => {
                    if let Err(e) = self.commit_and_release().await { break Some(e); }
                    continue;
                }
            };
            let Some(work) = work else { break None };
            let step = match work {
                Work::Batch { stream, batch } => self.write(stream, batch).await,
                Work::State(state) => {
                    self.tracker.push(state);
                    if self.options.flush_interval.is_zero() || self.bytes_since_commit() >= self.options.commit_max_bytes {
                        self.commit_and_release().await
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(e) = step {
                break Some(e);
            }
        };
        // Dropping the receiver makes a still-running reader stop at its next send.
        drop(rx);
        (WriteSummary::default(), error, self)
    }

    fn bytes_since_commit(&self) -> u64 {
        self.tables.iter().map(BronzeTable::bytes_since_commit).sum()
    }

    async fn write(&mut self, stream: usize, batch: RecordBatch) -> Result<()> {
        let max_open = (self.options.memory_budget_bytes / OPEN_FILE_COST).max(1) as usize;
        if !self.tables[stream].has_open_file {
            let open: Vec<usize> = (0..self.tables.len()).filter(|&i| self.tables[i].has_open_file).collect();
            if open.len() >= max_open {
                // Close the least recently written file to stay within the memory budget.
                if let Some(&lru) = open.iter().min_by_key(|&&i| self.tables[i].last_write) {
                    self.tables[lru].seal().await?;
                }
            }
        }
        self.tables[stream].write(batch).await
    }

    /// Commits every table with new data (overwrite tables wait for the end), then echoes the
    /// states that are now covered.
    async fn commit_and_release(&mut self) -> Result<()> {
        let context = CommitContext { state_sha256: self.tracker.newest_sha256() };
        for (i, table) in self.tables.iter_mut().enumerate() {
            if !self.overwrite[i] && table.is_dirty() {
                table.commit_append(&context).await?;
            }
        }
        let released = {
            let overwrite = &self.overwrite;
            self.tracker.release(|covers| match covers {
                Covers::All => overwrite.iter().any(|o| *o),
                Covers::Stream(i) => overwrite.get(i).copied().unwrap_or(false),
                Covers::UnknownStream => false,
            })
        };
        for state in released {
            self.emitter.emit_raw(&state.echo)?;
        }
        Ok(())
    }

    /// End of a successful input: final commits, overwrite/generation cleanup, last echoes.
    async fn finish(&mut self) -> Result<()> {
        let context = CommitContext { state_sha256: self.tracker.newest_sha256() };
        for table in &mut self.tables {
            let removed = table.finalize(&context).await?;
            if removed > 0 {
                self.emitter.log(
                    "INFO",
                    format!("destination-delta-lake: {}: removed {removed} file(s) of earlier data", table.plan.label()),
                );
            }
            self.removed += removed;
        }
        for state in self.tracker.release(|_| false) {
            self.emitter.emit_raw(&state.echo)?;
        }
        Ok(())
    }

    fn abandon_overwrites(&mut self) {
        for (i, table) in self.tables.iter_mut().enumerate() {
            if self.overwrite[i] {
                table.abandon();
            }
        }
    }

    fn fill(&self, summary: &mut WriteSummary) {
        summary.states_echoed = self.tracker.echoed;
        for t in &self.tables {
            summary.commits += t.commits;
            summary.files += t.files_committed;
            summary.bytes += t.bytes_committed;
        }
        summary.files_removed = self.removed;
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Per-scope record counts since the last state of that scope.
#[derive(Default)]
struct Counts {
    global: u64,
    global_rejected: u64,
    per_stream: Vec<u64>,
    unknown_streams: HashMap<StreamDescriptor, u64>,
}

fn preview(line: &str) -> String {
    line.chars().take(120).collect()
}

/// The reader stage. Returns its counts, or the first bad-input error.
fn read_input(
    mut input: Box<dyn BufRead + Send>,
    catalog: &Catalog,
    mut encoders: Vec<StreamEncoder>,
    tx: &mpsc::Sender<Work>,
    emitter: &Emitter,
) -> Result<ReadSummary> {
    let mut summary = ReadSummary::default();
    let mut counts = Counts { per_stream: vec![0; encoders.len()], ..Counts::default() };
    let mut state_kind: Option<StateKind> = None;
    let mut warned_unknown: HashMap<String, u64> = HashMap::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut last: Option<(Option<String>, String, Option<usize>)> = None;
    let send = |work: Work| {
        tx.blocking_send(work).map_err(|_| ConnectorError::Internal("the committer stopped".into()))
    };
    loop {
        buf.clear();
        let n = input.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        summary.lines += 1;
        summary.bytes += n as u64;
        let line_no = summary.lines;
        let line = std::str::from_utf8(&buf).map_err(|e| ConnectorError::MalformedInput {
            line: line_no,
            reason: format!("not UTF-8: {e}"),
            preview: preview(&String::from_utf8_lossy(&buf)),
        })?;
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        let message: Incoming = serde_json::from_str(line).map_err(|e| ConnectorError::MalformedInput {
            line: line_no,
            reason: e.to_string(),
            preview: preview(line),
        })?;
        match message.kind.as_ref() {
            "RECORD" => {
                let record = message.record.ok_or_else(|| ConnectorError::MalformedInput {
                    line: line_no,
                    reason: "a RECORD message without a record".into(),
                    preview: preview(line),
                })?;
                let namespace = record.namespace.as_deref();
                let stream_name = record.stream.as_ref();
                let index = match &last {
                    Some((ns, name, idx)) if ns.as_deref() == namespace && name == stream_name => *idx,
                    _ => {
                        let idx = catalog.find(namespace, stream_name);
                        last = Some((namespace.map(str::to_owned), stream_name.to_owned(), idx));
                        idx
                    }
                };
                let Some(index) = index else {
                    summary.rejected += 1;
                    counts.global_rejected += 1;
                    let descriptor = StreamDescriptor { name: stream_name.to_owned(), namespace: namespace.map(str::to_owned) };
                    *counts.unknown_streams.entry(descriptor).or_default() += 1;
                    let seen = warned_unknown.entry(format!("{}.{stream_name}", namespace.unwrap_or(""))).or_default();
                    if *seen == 0 {
                        emitter.log(
                            "WARN",
                            format!(
                                "destination-delta-lake: stream {}.{stream_name} is not in the configured catalog; its records are counted as rejected and not written",
                                namespace.unwrap_or("")
                            ),
                        );
                    }
                    *seen += 1;
                    continue;
                };
                let changes = record.meta.as_ref().map(|m| m.changes.as_slice()).unwrap_or(&[]);
                let encoder = &mut encoders[index];
                encoder.push(record.data, record.emitted_at, changes);
                summary.records += 1;
                counts.global += 1;
                counts.per_stream[index] += 1;
                if encoder.rows() >= BATCH_ROWS || encoder.bytes() >= BATCH_BYTES {
                    let batch = finish(encoder)?;
                    send(Work::Batch { stream: index, batch })?;
                }
            }
            "STATE" => {
                let raw_state = message.state.ok_or_else(|| ConnectorError::MalformedInput {
                    line: line_no,
                    reason: "a STATE message without a state".into(),
                    preview: preview(line),
                })?;
                summary.states += 1;
                let pending = account_state(raw_state, catalog, &mut counts, &mut state_kind, line_no, line)?;
                // Every record received before this state must reach the committer first.
                for (index, encoder) in encoders.iter_mut().enumerate() {
                    if encoder.rows() > 0 {
                        let batch = finish(encoder)?;
                        send(Work::Batch { stream: index, batch })?;
                    }
                }
                send(Work::State(pending))?;
            }
            // LOG, TRACE, CONTROL and future types are not for the destination to store.
            _ => {}
        }
    }
    for (index, encoder) in encoders.iter_mut().enumerate() {
        if encoder.rows() > 0 {
            let batch = finish(encoder)?;
            send(Work::Batch { stream: index, batch })?;
        }
    }
    for (stream, n) in &warned_unknown {
        emitter.log("WARN", format!("destination-delta-lake: {n} record(s) of unknown stream {stream} rejected"));
    }
    Ok(summary)
}

fn finish(encoder: &mut StreamEncoder) -> Result<RecordBatch> {
    let stream = format!("{encoder:?}");
    encoder.finish().map_err(|source| ConnectorError::Arrow { stream, source })
}

/// Works out what a state covers and its `destinationStats`, and resets the counts of its scope.
fn account_state(
    raw_state: &RawValue,
    catalog: &Catalog,
    counts: &mut Counts,
    state_kind: &mut Option<StateKind>,
    line_no: u64,
    line: &str,
) -> Result<PendingState> {
    let header: StateHeader = serde_json::from_str(raw_state.get()).map_err(|e| ConnectorError::MalformedInput {
        line: line_no,
        reason: format!("invalid STATE: {e}"),
        preview: preview(line),
    })?;
    let kind = match header.kind.as_deref() {
        Some("STREAM") => StateKind::Stream,
        Some("GLOBAL") | Some("LEGACY") | None => StateKind::Global,
        Some(other) => {
            return Err(ConnectorError::MalformedInput {
                line: line_no,
                reason: format!("unknown state type {other:?}"),
                preview: preview(line),
            });
        }
    };
    if let Some(previous) = *state_kind {
        if previous != kind {
            return Err(ConnectorError::ProtocolViolation {
                line: line_no,
                what: "the source mixed GLOBAL and STREAM states in one sync, which the Airbyte protocol forbids".into(),
            });
        }
    }
    *state_kind = Some(kind);
    let (covers, record_count, rejected) = match kind {
        StateKind::Global => {
            let out = (Covers::All, counts.global, counts.global_rejected);
            counts.global = 0;
            counts.global_rejected = 0;
            counts.per_stream.iter_mut().for_each(|c| *c = 0);
            counts.unknown_streams.clear();
            out
        }
        StateKind::Stream => {
            let descriptor = header
                .stream
                .ok_or_else(|| ConnectorError::MalformedInput {
                    line: line_no,
                    reason: "a STREAM state without stream.stream_descriptor".into(),
                    preview: preview(line),
                })?
                .stream_descriptor;
            match catalog.find(descriptor.namespace.as_deref(), &descriptor.name) {
                Some(i) => {
                    let n = std::mem::take(&mut counts.per_stream[i]);
                    (Covers::Stream(i), n, 0)
                }
                None => {
                    let n = counts.unknown_streams.remove(&descriptor).unwrap_or(0);
                    (Covers::UnknownStream, 0, n)
                }
            }
        }
    };
    let echo = state_echo(raw_state, record_count, rejected).map_err(|e| ConnectorError::MalformedInput {
        line: line_no,
        reason: format!("invalid STATE: {e}"),
        preview: preview(line),
    })?;
    let sha256 = hex::encode(Sha256::digest(raw_state.get().as_bytes()));
    Ok(PendingState { echo, covers, sha256, record_count, arrived: Instant::now() })
}
