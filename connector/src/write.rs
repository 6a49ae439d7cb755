//! The `write` command: stdin messages → bronze Delta tables, with STATE echoes.
//!
//! Three stages run in parallel:
//! - the *splitter* (a thread) cuts stdin into chunks of whole lines, numbered in input order;
//! - *parsers* (one thread per core) take the next chunk from one shared queue (a parser that
//!   finished early does not wait for another's turn), parse and encode it into per-stream Arrow
//!   batches, and cut its output at its STATE messages;
//! - the *committer* (async) puts chunk outputs back in input order, accounts each state's
//!   records, streams batches into Parquet files, commits, and echoes states.
//!
//! Channels are bounded, so memory is bounded; and because the committer consumes chunk outputs
//! strictly in sequence, a state is always handled after every batch of the records before it.
//!
//! Guarantees: a STATE is echoed only after the commits covering all records before it
//! succeeded, in the order received, with `destinationStats.recordCount` (and
//! `rejectedRecordCount` for records of streams the catalog does not have). At end of input
//! everything is committed, `overwrite` and `minimum_generation_id` are applied, the remaining
//! states are echoed and the process exits 0. On any failure no further state is echoed.

use std::collections::{BTreeMap, HashMap, HashSet};
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
use crate::protocol::{Change, Emitter, Incoming, StateHeader, StreamDescriptor, state_echo};
use crate::scan;
use crate::sink::{BronzeTable, CommitContext};
use crate::state::{Covers, PendingState, StateTracker};

/// Batches are cut at this many rows…
const BATCH_ROWS: usize = 64 * 1024;
/// …or this many input bytes.
const BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Chunk outputs in flight towards the committer.
const CHANNEL_DEPTH: usize = 4;
/// Input is handed to parsers in chunks of about this size (whole lines).
const CHUNK_BYTES: usize = 8 * 1024 * 1024;
/// Chunks dealt but not yet consumed by the committer, per parser: bounds the memory of input
/// waiting to be parsed and of outputs waiting for an earlier chunk.
const CHUNKS_IN_FLIGHT_PER_PARSER: usize = 2;
/// Rough memory of one open Parquet file (row group in progress + upload buffer).
const OPEN_FILE_COST: u64 = 48 * 1024 * 1024;

/// The parsers' shared queue of numbered chunks.
type ChunkQueue = Arc<std::sync::Mutex<std::sync::mpsc::Receiver<Chunk>>>;

/// What a parser made of one chunk, in input order.
struct ChunkOutput {
    seq: u64,
    lines: u64,
    bytes: u64,
    items: Vec<Item>,
}

enum Item {
    /// Records of one stream, and the digest of their `data`.
    Batch { stream: usize, batch: RecordBatch, digest: u128 },
    /// Records counted since the previous item of this kind (or the chunk start).
    Counts(SegmentCounts),
    /// A STATE message (owned JSON text) at a chunk-relative line.
    State { raw: String, line: u64 },
    /// Bad input at a chunk-relative line; nothing after it in the chunk was parsed.
    Fail(ConnectorError),
}

/// Records seen in a stretch of input between two states.
#[derive(Default)]
struct SegmentCounts {
    per_stream: Vec<u64>,
    unknown: HashMap<StreamDescriptor, u64>,
}

/// What the input held.
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
    /// RECORD messages per catalog stream, in catalog order.
    pub per_stream: Vec<u64>,
}

/// What the sync did, for the final log line and tests.
#[derive(Debug, Default, Clone)]
pub struct WriteSummary {
    /// Input counts.
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

/// Number of parser threads: one per core, at most 4.
fn parser_count() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4)
}

/// What one stream's table got in this sync, for metrics and lineage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamReport {
    /// `namespace.stream`.
    pub stream: String,
    /// Table location (no credentials in it).
    pub url: String,
    /// The table's description.
    pub description: String,
    /// RECORD messages of this stream read.
    pub records_received: u64,
    /// Rows committed.
    pub records_written: u64,
    /// Parquet bytes committed.
    pub bytes_written: u64,
    /// Files committed.
    pub files_written: u64,
    /// Commits made.
    pub commits: u64,
    /// Wall time of each commit, in seconds.
    pub commit_seconds: Vec<f64>,
    /// Delta version after the sync.
    pub version: Option<u64>,
    /// Newest `_ab_cdc_updated_at` in the table, seconds since the epoch.
    pub newest_change: Option<f64>,
}

/// What a sync did, filled whether it succeeded or not (what was committed before a failure
/// stays committed, and is reported).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncReport {
    /// One entry per catalog stream, in catalog order.
    pub streams: Vec<StreamReport>,
    /// RECORD messages of streams the catalog does not have.
    pub records_rejected: u64,
    /// Input bytes read.
    pub bytes_received: u64,
    /// STATE messages echoed.
    pub states_echoed: u64,
}

/// Runs a whole `write`: opens the tables, reads `input`, commits, echoes states.
pub async fn run_write(
    options: DestinationOptions,
    catalog: Catalog,
    input: Box<dyn BufRead + Send>,
    emitter: Arc<Emitter>,
) -> Result<WriteSummary> {
    run_write_reporting(options, catalog, input, emitter, &mut SyncReport::default()).await
}

/// [`run_write`], also filling `report` with what the sync did, whatever its outcome.
pub async fn run_write_reporting(
    options: DestinationOptions,
    catalog: Catalog,
    input: Box<dyn BufRead + Send>,
    emitter: Arc<Emitter>,
    report: &mut SyncReport,
) -> Result<WriteSummary> {
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut tables = Vec::with_capacity(catalog.streams.len());
    for plan in &catalog.streams {
        let table = BronzeTable::open(&options, plan.clone(), &run_id).await?;
        for warning in &table.type_drift {
            emitter.log("WARN", warning.clone());
        }
        tables.push(table);
    }
    emitter.log(
        "INFO",
        format!("destination-delta-lake: writing {} stream(s) to {}", tables.len(), options.storage.describe()),
    );
    let catalog = Arc::new(catalog);
    let overwrite: Vec<bool> = catalog.streams.iter().map(|s| s.sync_mode == SyncMode::Overwrite).collect();

    // splitter → parsers (one shared queue) → committer (re-sequenced); at most
    // CHUNKS_IN_FLIGHT_PER_PARSER chunks per parser between the splitter and the committer.
    let (out_tx, out_rx) = mpsc::channel::<ChunkOutput>(CHANNEL_DEPTH);
    let (in_flight_tx, in_flight_rx) = std::sync::mpsc::sync_channel::<()>(CHUNKS_IN_FLIGHT_PER_PARSER * parser_count());
    let (recycle_tx, recycle_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut parsers = Vec::new();
    let (chunk_tx, chunk_rx) = std::sync::mpsc::sync_channel::<Chunk>(parser_count());
    let chunk_rx: ChunkQueue = Arc::new(std::sync::Mutex::new(chunk_rx));
    for _ in 0..parser_count() {
        let chunk_rx = chunk_rx.clone();
        let encoders: Vec<StreamEncoder> = tables.iter().map(BronzeTable::encoder).collect();
        let (catalog, out_tx, recycle_tx) = (catalog.clone(), out_tx.clone(), recycle_tx.clone());
        let max_line = options.max_line_bytes;
        parsers.push(std::thread::spawn(move || parse_chunks(chunk_rx, &catalog, encoders, &out_tx, recycle_tx, max_line)));
    }
    drop((out_tx, recycle_tx));
    let max_line = options.max_line_bytes;
    let splitter = std::thread::spawn(move || split_input(input, chunk_tx, recycle_rx, in_flight_tx, max_line));

    let mut committer = Committer {
        options: &options,
        tables,
        tracker: StateTracker::default(),
        overwrite,
        emitter: &emitter,
        removed: 0,
        sequence: Sequencer::new(catalog.clone(), in_flight_rx),
    };
    let outcome = committer.run(out_rx).await;
    let result = finish_write(&mut committer, outcome, splitter, parsers).await;
    *report = committer.report();
    let summary = result?;
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

/// After the committer stopped: keeps what bad input did not spoil, or finishes the sync.
async fn finish_write(
    committer: &mut Committer<'_>,
    outcome: Outcome,
    splitter: std::thread::JoinHandle<Result<()>>,
    parsers: Vec<std::thread::JoinHandle<()>>,
) -> Result<WriteSummary> {
    // On failure the threads are left behind, not joined: the splitter may be blocked reading a
    // stdin the platform keeps open, and the error must be reported now. The process exits next.
    match outcome {
        Outcome::CommitFailed(e) => return Err(e),
        Outcome::BadInput(e) => {
            // Keep the progress that states before the bad input already cover.
            committer.commit_and_release().await?;
            committer.abandon_overwrites();
            return Err(e);
        }
        Outcome::EndOfInput => {}
    }
    // End of input: every stage has finished. A read error surfaces here, after everything
    // before it was handled.
    let split = splitter.join().map_err(|_| ConnectorError::Internal("the input splitter panicked".into()))?;
    for parser in parsers {
        parser.join().map_err(|_| ConnectorError::Internal("a parser thread panicked".into()))?;
    }
    split?;
    if committer.sequence.missing_chunks() {
        return Err(ConnectorError::Internal("a parser stopped before the end of input".into()));
    }
    committer.finish().await?;
    let mut summary = WriteSummary { read: committer.sequence.summary.clone(), ..WriteSummary::default() };
    committer.fill(&mut summary);
    Ok(summary)
}

/// Cuts the input into chunks of whole lines and puts them on the parsers' queue. A line is never
/// buffered past `max_line` bytes: its first `max_line + 1` bytes go to a parser as the last
/// chunk, which refuses the line with its number. Each chunk takes a place in `in_flight` first,
/// which the committer frees when it has consumed the chunk's output: the splitter never runs
/// more than its capacity ahead of the committer.
fn split_input(
    mut input: Box<dyn BufRead + Send>,
    parsers: std::sync::mpsc::SyncSender<Chunk>,
    recycled: std::sync::mpsc::Receiver<Vec<u8>>,
    in_flight: std::sync::mpsc::SyncSender<()>,
    max_line: usize,
) -> Result<()> {
    let mut seq = 0u64;
    let mut carry: Vec<u8> = Vec::new();
    loop {
        // Reuse a parsed chunk's buffer: fresh multi-megabyte allocations cost page faults. Its
        // bytes stay initialized, so input is read straight into it (no copy through a buffer).
        let mut buf = recycled.try_recv().unwrap_or_else(|_| vec![0; CHUNK_BYTES + (1 << 20)]);
        if buf.len() < carry.len() + (1 << 20) {
            buf.resize(carry.len() + (1 << 20), 0);
        }
        buf[..carry.len()].copy_from_slice(&carry);
        let mut len = carry.len();
        carry.clear();
        let mut has_newline = memchr::memchr(b'\n', &buf[..len]).is_some();
        let mut eof = false;
        // Where a STATE was seen in this chunk: a state must reach the committer promptly (its
        // echo waits for it), so the chunk is cut as soon as the state's line is complete.
        let mut state_at = memchr::memmem::find(&buf[..len], b"\"STATE\"");
        // Fill to CHUNK_BYTES, and past it until the chunk holds at least one whole line.
        let mut too_long = false;
        while len < CHUNK_BYTES || !has_newline {
            if state_at.is_some_and(|at| memchr::memchr(b'\n', &buf[at..len]).is_some()) {
                break;
            }
            if !has_newline && len > max_line {
                len = max_line + 1;
                too_long = true;
                break;
            }
            // Up to CHUNK_BYTES, then in small steps to the end of the line in hand.
            let want = CHUNK_BYTES.saturating_sub(len).max(64 * 1024);
            if buf.len() < len + want {
                // A line longer than the buffer (up to max_line): grow it.
                buf.resize((len + want).max(buf.len() * 2), 0);
            }
            let read = match input.read(&mut buf[len..len + want]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(read) => read,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            has_newline |= memchr::memchr(b'\n', &buf[len..len + read]).is_some();
            let scan_from = len.saturating_sub(6);
            len += read;
            if state_at.is_none() {
                state_at = memchr::memmem::find(&buf[scan_from..len], b"\"STATE\"").map(|i| i + scan_from);
            }
        }
        if !eof && !too_long {
            // The partial last line goes to the next chunk.
            if let Some(end) = memchr::memrchr(b'\n', &buf[..len]) {
                carry.extend_from_slice(&buf[end + 1..len]);
                len = end + 1;
            }
        }
        if len > 0 {
            if in_flight.send(()).is_err() || parsers.send(Chunk { seq, buf, len }).is_err() {
                return Ok(()); // the committer stopped; it reports why
            }
            seq += 1;
        }
        if eof || too_long {
            return Ok(());
        }
    }
}

/// A numbered piece of input, whole lines only: the first `len` bytes of `buf`.
struct Chunk {
    seq: u64,
    buf: Vec<u8>,
    len: usize,
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Parses the chunks one parser is dealt.
fn parse_chunks(
    chunks: ChunkQueue,
    catalog: &Catalog,
    mut encoders: Vec<StreamEncoder>,
    out: &mpsc::Sender<ChunkOutput>,
    recycle: std::sync::mpsc::Sender<Vec<u8>>,
    max_line: usize,
) {
    let mut route = Router::default();
    loop {
        let next = chunks.lock().map_err(|_| ()).and_then(|rx| rx.recv().map_err(|_| ()));
        let Ok(chunk) = next else { return };
        let output = parse_chunk(chunk.seq, chunk.bytes(), catalog, &mut encoders, &mut route, max_line);
        let _ = recycle.send(chunk.buf);
        let failed = output.items.iter().any(|i| matches!(i, Item::Fail(_)));
        if out.blocking_send(output).is_err() || failed {
            return;
        }
    }
}

/// Remembers the last record's stream, which is nearly always the next one's.
#[derive(Default)]
struct Router {
    last: Option<(Option<String>, String, Option<usize>)>,
}

impl Router {
    fn find(&mut self, catalog: &Catalog, namespace: Option<&str>, name: &str) -> Option<usize> {
        match &self.last {
            Some((ns, n, idx)) if ns.as_deref() == namespace && n == name => *idx,
            _ => {
                let idx = catalog.find(namespace, name);
                self.last = Some((namespace.map(str::to_owned), name.to_owned(), idx));
                idx
            }
        }
    }
}

/// Why a line is not an Airbyte message, without any of its content (a record's values are
/// customer data): serde_json's messages quote the values they stumble on, so only the kind of
/// error and the column are kept, and the name of a missing protocol field.
fn json_problem(error: &serde_json::Error) -> String {
    let at = error.column();
    match error.classify() {
        serde_json::error::Category::Eof => format!("the JSON ends early (column {at})"),
        serde_json::error::Category::Syntax => format!("invalid JSON at column {at}"),
        serde_json::error::Category::Io => format!("unreadable at column {at}"),
        serde_json::error::Category::Data => {
            let text = error.to_string();
            match text.strip_prefix("missing field `").and_then(|rest| rest.split_once('`')) {
                Some((field, _)) if field.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => format!("the protocol field {field:?} is missing"),
                _ => format!("a protocol field has the wrong type (column {at})"),
            }
        }
    }
}

/// A RECORD's `data`, as the reader of its line left it.
enum RecordData<'a> {
    /// Read by [`scan`]: its members are found already.
    Scanned { text: &'a str, members: &'a [scan::Member<'a>] },
    /// Read by serde_json: walked by the encoder; with the source's changes.
    Raw { data: &'a RawValue, changes: &'a [Change] },
}

fn parse_chunk(seq: u64, chunk: &[u8], catalog: &Catalog, encoders: &mut [StreamEncoder], route: &mut Router, max_line: usize) -> ChunkOutput {
    let mut items = Vec::new();
    let mut counts = SegmentCounts { per_stream: vec![0; encoders.len()], ..SegmentCounts::default() };
    let mut lines = 0u64;
    let flush = |encoders: &mut [StreamEncoder], items: &mut Vec<Item>| -> Result<()> {
        for (stream, encoder) in encoders.iter_mut().enumerate() {
            if encoder.rows() > 0 {
                items.push(Item::Batch { stream, digest: encoder.take_digest(), batch: finish(encoder)? });
            }
        }
        Ok(())
    };
    // data's members of the line in hand (reused: one allocation per chunk, not per record)
    let mut members = Vec::new();
    let result = (|| -> Result<()> {
        for raw_line in lines_of(chunk) {
            lines += 1;
            let content = raw_line.strip_suffix(b"\n").map_or(raw_line, |l| l.strip_suffix(b"\r").unwrap_or(l));
            if content.len() > max_line {
                return Err(ConnectorError::MalformedInput {
                    line: lines,
                    reason: format!("the line is longer than max_line_mb ({} MiB); raise the setting if such records are expected", max_line >> 20),
                });
            }
            let line = std::str::from_utf8(raw_line).map_err(|e| ConnectorError::MalformedInput { line: lines, reason: format!("not UTF-8: {e}") })?;
            let line = line.trim_end_matches(['\n', '\r']);
            if line.trim().is_empty() {
                continue;
            }
            let malformed = |reason: String| ConnectorError::MalformedInput { line: lines, reason };
            // (serde would also read a message from a JSON array of its fields)
            if !line.trim_start().starts_with('{') {
                return Err(malformed("not a JSON object".into()));
            }
            // The common RECORD line in one pass (scan); every other line through serde_json.
            let message: Incoming;
            let (namespace, stream, emitted_at, data) = match scan::scan_record(line, &mut members) {
                Some(record) => {
                    (record.namespace, record.stream, record.emitted_at, RecordData::Scanned { text: record.data, members: &members })
                }
                None => {
                    message = serde_json::from_str(line).map_err(|e| malformed(json_problem(&e)))?;
                    match message.kind.as_ref() {
                        "RECORD" => {
                            let record = message.record.as_ref().ok_or_else(|| malformed("a RECORD message without a record".into()))?;
                            let changes = record.meta.as_ref().map(|m| m.changes.as_slice()).unwrap_or(&[]);
                            (record.namespace.as_deref(), record.stream.as_ref(), record.emitted_at, RecordData::Raw { data: record.data, changes })
                        }
                        "STATE" => {
                            let state = message.state.ok_or_else(|| malformed("a STATE message without a state".into()))?;
                            // Every record before this state must reach the committer first.
                            flush(encoders, &mut items)?;
                            let segment = std::mem::replace(
                                &mut counts,
                                SegmentCounts { per_stream: vec![0; encoders.len()], ..SegmentCounts::default() },
                            );
                            items.push(Item::Counts(segment));
                            items.push(Item::State { raw: state.get().to_owned(), line: lines });
                            continue;
                        }
                        // LOG, TRACE, CONTROL and future types are not for the destination to store.
                        _ => continue,
                    }
                }
            };
            let Some(index) = route.find(catalog, namespace, stream) else {
                let descriptor = StreamDescriptor { name: stream.to_owned(), namespace: namespace.map(str::to_owned) };
                *counts.unknown.entry(descriptor).or_default() += 1;
                continue;
            };
            let encoder = &mut encoders[index];
            match data {
                RecordData::Scanned { text, members } => encoder.push_members(text, members, emitted_at),
                RecordData::Raw { data, changes } => encoder.push(data, emitted_at, changes),
            }
            counts.per_stream[index] += 1;
            if encoder.rows() >= BATCH_ROWS || encoder.bytes() >= BATCH_BYTES {
                items.push(Item::Batch { stream: index, digest: encoder.take_digest(), batch: finish(encoder)? });
            }
        }
        Ok(())
    })();
    let flushed = flush(encoders, &mut items);
    items.push(Item::Counts(counts));
    if let Err(e) = result.and(flushed) {
        items.push(Item::Fail(e));
    }
    ChunkOutput { seq, lines, bytes: chunk.len() as u64, items }
}

/// The lines of `chunk`, each with its `\n` (the last one may have none), found with memchr: a
/// byte-by-byte scan (`split_inclusive`) was 6% of a sync's CPU.
fn lines_of(chunk: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = chunk;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |at| at + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        Some(line)
    })
}

/// `error`, raised at a chunk-relative line, with the line counted from the input's start.
fn after_lines(error: ConnectorError, lines_before: u64) -> ConnectorError {
    match error {
        ConnectorError::MalformedInput { line, reason } => ConnectorError::MalformedInput { line: line + lines_before, reason },
        ConnectorError::ProtocolViolation { line, what } => ConnectorError::ProtocolViolation { line: line + lines_before, what },
        other => other,
    }
}

/// What the reader made of one input, without any storage: the splitter and one parser, as in a
/// sync, up to the committer. For the fuzz targets (see [`crate::fuzzing`]) and their corpus test.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Parsed {
    /// Each stream's record batches (catalog order), in input order.
    pub batches: Vec<Vec<RecordBatch>>,
    /// RECORD messages counted per stream.
    pub records: Vec<u64>,
    /// RECORD messages of streams the catalog does not have.
    pub unknown: u64,
    /// Each STATE's JSON text, in input order.
    pub states: Vec<String>,
    /// Why reading stopped early (nothing after that line was read), the line counted from 1.
    pub failure: Option<ConnectorError>,
    /// Lines read.
    pub lines: u64,
}

/// A reader that gives at most `most` bytes per read, as a pipe does when the writer is slow.
struct ShortReads {
    data: Vec<u8>,
    at: usize,
    most: usize,
}

impl std::io::Read for ShortReads {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.most).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Reads `input` as a sync reads its stdin, `read_size` bytes per read (short reads are how a
/// pipe delivers), with the given encoders and line limit; see [`Parsed`].
#[doc(hidden)]
pub fn parse_without_storage(input: &[u8], read_size: usize, catalog: &Catalog, mut encoders: Vec<StreamEncoder>, max_line: usize) -> Parsed {
    let mut parsed = Parsed { batches: vec![Vec::new(); encoders.len()], records: vec![0; encoders.len()], ..Parsed::default() };
    let reader = std::io::BufReader::with_capacity(read_size.max(1), ShortReads { data: input.to_vec(), at: 0, most: read_size.max(1) });
    // Every line is at least one byte: the channel holds every chunk the splitter can make.
    let (chunk_tx, chunk_rx) = std::sync::mpsc::sync_channel(input.len() + 2);
    let (_recycle_tx, recycle_rx) = std::sync::mpsc::channel();
    let (in_flight_tx, _in_flight_rx) = std::sync::mpsc::sync_channel(input.len() + 2);
    if let Err(e) = split_input(Box::new(reader), chunk_tx, recycle_rx, in_flight_tx, max_line) {
        parsed.failure = Some(e);
        return parsed;
    }
    let mut route = Router::default();
    for chunk in chunk_rx.try_iter() {
        let output = parse_chunk(chunk.seq, chunk.bytes(), catalog, &mut encoders, &mut route, max_line);
        for item in output.items {
            match item {
                Item::Batch { stream, batch, .. } => parsed.batches[stream].push(batch),
                Item::Counts(counts) => {
                    parsed.records.iter_mut().zip(counts.per_stream).for_each(|(total, n)| *total += n);
                    parsed.unknown += counts.unknown.values().sum::<u64>();
                }
                Item::State { raw, .. } => parsed.states.push(raw),
                Item::Fail(e) => parsed.failure = Some(after_lines(e, parsed.lines)),
            }
        }
        parsed.lines += output.lines;
        if parsed.failure.is_some() {
            break;
        }
    }
    parsed
}

fn finish(encoder: &mut StreamEncoder) -> Result<RecordBatch> {
    let stream = format!("{encoder:?}");
    encoder.finish().map_err(|source| ConnectorError::Arrow { stream, source })
}

/// Puts chunk outputs back in input order and does the order-dependent bookkeeping: record
/// counts per state scope, absolute line numbers, the GLOBAL/STREAM rule.
struct Sequencer {
    catalog: Arc<Catalog>,
    next: u64,
    waiting: BTreeMap<u64, ChunkOutput>,
    lines_before: u64,
    counts: Counts,
    kind: Option<StateKind>,
    warned: HashSet<StreamDescriptor>,
    summary: ReadSummary,
    /// The splitter's places (see [`split_input`]); None once the committer stopped.
    in_flight: Option<std::sync::mpsc::Receiver<()>>,
}

/// Per-scope record counts since the last state of that scope.
#[derive(Default)]
struct Counts {
    global: u64,
    global_rejected: u64,
    per_stream: Vec<u64>,
    unknown_streams: HashMap<StreamDescriptor, u64>,
}

impl Sequencer {
    fn new(catalog: Arc<Catalog>, in_flight: std::sync::mpsc::Receiver<()>) -> Self {
        let per_stream = vec![0; catalog.streams.len()];
        Sequencer {
            catalog,
            next: 0,
            waiting: BTreeMap::new(),
            lines_before: 0,
            counts: Counts { per_stream: per_stream.clone(), ..Counts::default() },
            kind: None,
            warned: HashSet::new(),
            summary: ReadSummary { per_stream, ..ReadSummary::default() },
            in_flight: Some(in_flight),
        }
    }

    /// The next chunk in input order, if it has arrived.
    fn pop_ready(&mut self) -> Option<ChunkOutput> {
        let chunk = self.waiting.remove(&self.next)?;
        self.next += 1;
        // The splitter took a place before dealing this chunk: it is free again.
        if let Some(in_flight) = &self.in_flight {
            let _ = in_flight.try_recv();
        }
        Some(chunk)
    }

    fn missing_chunks(&self) -> bool {
        !self.waiting.is_empty()
    }

    fn absolute(&self, error: ConnectorError) -> ConnectorError {
        after_lines(error, self.lines_before)
    }

    fn add(&mut self, segment: SegmentCounts, emitter: &Emitter) {
        for (i, n) in segment.per_stream.into_iter().enumerate() {
            self.counts.per_stream[i] += n;
            self.counts.global += n;
            self.summary.records += n;
            if let Some(total) = self.summary.per_stream.get_mut(i) {
                *total += n;
            }
        }
        for (descriptor, n) in segment.unknown {
            self.counts.global_rejected += n;
            self.summary.rejected += n;
            if self.warned.insert(descriptor.clone()) {
                emitter.log(
                    "WARN",
                    format!(
                        "destination-delta-lake: stream {}.{} is not in the configured catalog; its records are counted as rejected and not written",
                        descriptor.namespace.as_deref().unwrap_or(""),
                        descriptor.name
                    ),
                );
            }
            *self.counts.unknown_streams.entry(descriptor).or_default() += n;
        }
    }

    /// Works out what a state covers and its `destinationStats`, and resets its scope's counts.
    fn account_state(&mut self, raw: &str, line: u64) -> Result<PendingState> {
        let line = line + self.lines_before;
        self.summary.states += 1;
        let malformed = |reason: String| ConnectorError::MalformedInput { line, reason };
        let raw_state: &RawValue = serde_json::from_str(raw).map_err(|e| malformed(format!("invalid STATE: {}", json_problem(&e))))?;
        let header: StateHeader = serde_json::from_str(raw).map_err(|e| malformed(format!("invalid STATE: {}", json_problem(&e))))?;
        let kind = match header.kind.as_deref() {
            Some("STREAM") => StateKind::Stream,
            Some("GLOBAL") | Some("LEGACY") | None => StateKind::Global,
            Some(other) => return Err(malformed(format!("unknown state type {other:?}"))),
        };
        if self.kind.is_some_and(|previous| previous != kind) {
            return Err(ConnectorError::ProtocolViolation {
                line,
                what: "the source mixed GLOBAL and STREAM states in one sync, which the Airbyte protocol forbids".into(),
            });
        }
        self.kind = Some(kind);
        let counts = &mut self.counts;
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
                    .ok_or_else(|| malformed("a STREAM state without stream.stream_descriptor".into()))?
                    .stream_descriptor;
                match self.catalog.find(descriptor.namespace.as_deref(), &descriptor.name) {
                    Some(i) => (Covers::Stream(i), std::mem::take(&mut counts.per_stream[i]), 0),
                    None => (Covers::UnknownStream, 0, counts.unknown_streams.remove(&descriptor).unwrap_or(0)),
                }
            }
        };
        let echo = state_echo(raw_state, record_count, rejected).map_err(|e| malformed(format!("invalid STATE: {e}")))?;
        let sha256 = hex::encode(Sha256::digest(raw.as_bytes()));
        Ok(PendingState { echo, covers, sha256, arrived: Instant::now() })
    }
}

/// How the committer's loop ended.
enum Outcome {
    EndOfInput,
    BadInput(ConnectorError),
    CommitFailed(ConnectorError),
}

struct Committer<'a> {
    options: &'a DestinationOptions,
    tables: Vec<BronzeTable>,
    tracker: StateTracker,
    overwrite: Vec<bool>,
    emitter: &'a Emitter,
    removed: u64,
    sequence: Sequencer,
}

impl Committer<'_> {
    /// Consumes chunk outputs in input order until the input ends, is bad, or a commit fails.
    async fn run(&mut self, mut rx: mpsc::Receiver<ChunkOutput>) -> Outcome {
        let outcome = loop {
            let deadline = self.tracker.oldest_age().map(|age| {
                tokio::time::Instant::now() + self.options.flush_interval.saturating_sub(age)
            });
            let output = tokio::select! {
                output = rx.recv() => output,
                () = sleep_until(deadline) => {
                    if let Err(e) = self.commit_and_release().await { break Outcome::CommitFailed(e); }
                    continue;
                }
            };
            let Some(output) = output else { break Outcome::EndOfInput };
            self.sequence.waiting.insert(output.seq, output);
            if let Some(stop) = self.drain_ready().await {
                break stop;
            }
        };
        // Dropping the receivers makes the parsers and the splitter stop at their next send.
        drop(rx);
        self.sequence.in_flight = None;
        outcome
    }

    /// Handles every chunk that is next in input order.
    async fn drain_ready(&mut self) -> Option<Outcome> {
        while let Some(chunk) = self.sequence.pop_ready() {
            for item in chunk.items {
                let step = match item {
                    Item::Batch { stream, batch, digest } => self.write(stream, batch, digest).await.map_err(Outcome::CommitFailed),
                    Item::Counts(segment) => {
                        self.sequence.add(segment, self.emitter);
                        Ok(())
                    }
                    Item::State { raw, line } => match self.sequence.account_state(&raw, line) {
                        Err(e) => Err(Outcome::BadInput(e)),
                        Ok(state) => {
                            if let Err(e) = self.skip_earlier_attempt(&state.sha256).await {
                                return Some(Outcome::CommitFailed(e));
                            }
                            self.tracker.push(state);
                            let due = self.options.flush_interval.is_zero()
                                || self.bytes_since_commit() >= self.options.commit_max_bytes;
                            if due { self.commit_and_release().await.map_err(Outcome::CommitFailed) } else { Ok(()) }
                        }
                    },
                    Item::Fail(e) => Err(Outcome::BadInput(self.sequence.absolute(e))),
                };
                if let Err(stop) = step {
                    return Some(stop);
                }
            }
            self.sequence.lines_before += chunk.lines;
            self.sequence.summary.lines += chunk.lines;
            self.sequence.summary.bytes += chunk.bytes;
        }
        None
    }

    fn bytes_since_commit(&self) -> u64 {
        self.tables.iter().map(BronzeTable::bytes_since_commit).sum()
    }

    async fn write(&mut self, stream: usize, batch: RecordBatch, digest: u128) -> Result<()> {
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
        self.tables[stream].write(batch, digest).await
    }

    /// A retried sync resends the records after the last state the platform saw echoed; an
    /// earlier attempt may have committed some tables further (it failed committing another).
    /// Where a table already holds its records up to this state, those written again are
    /// dropped, so that the retry lands every record once.
    async fn skip_earlier_attempt(&mut self, state_sha256: &str) -> Result<()> {
        for (i, table) in self.tables.iter_mut().enumerate() {
            if self.overwrite[i] || !table.committed_by_earlier_attempt(state_sha256) {
                continue;
            }
            let rows = table.discard_uncommitted().await?;
            self.emitter.log(
                "INFO",
                format!("destination-delta-lake: {}: {rows} records up to this state were committed by an earlier attempt of this sync; not written again", table.plan.label()),
            );
        }
        Ok(())
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
        let overwrite = &self.overwrite;
        let released = self.tracker.release(|covers| match covers {
            Covers::All => overwrite.iter().any(|o| *o),
            Covers::Stream(i) => overwrite.get(i).copied().unwrap_or(false),
            Covers::UnknownStream => false,
        });
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

    fn report(&self) -> SyncReport {
        let streams = self
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| StreamReport {
                stream: t.plan.label(),
                url: t.url.to_string(),
                description: BronzeTable::description(&t.plan),
                records_received: self.sequence.summary.per_stream.get(i).copied().unwrap_or(0),
                records_written: t.rows_committed,
                bytes_written: t.bytes_committed,
                files_written: t.files_committed,
                commits: t.commits,
                commit_seconds: t.commit_seconds.clone(),
                version: t.version(),
                newest_change: t.newest_change(),
            })
            .collect();
        SyncReport {
            streams,
            records_rejected: self.sequence.summary.rejected,
            bytes_received: self.sequence.summary.bytes,
            states_echoed: self.tracker.echoed,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_after_each_newline_like_split_inclusive() {
        for chunk in [&b""[..], b"\n", b"a", b"a\n", b"a\nb", b"a\n\nb\n", b"\r\n\r\nx"] {
            let ours: Vec<&[u8]> = lines_of(chunk).collect();
            let std: Vec<&[u8]> = chunk.split_inclusive(|&b| b == b'\n').collect();
            assert_eq!(ours, std, "{chunk:?}");
        }
    }

    #[test]
    fn json_problems_name_the_column_never_the_value() {
        let planted = "4111-1111-SECRET";
        for line in [
            format!(r#"{{"type":"RECORD","record":{{"stream":"t","emitted_at":"{planted}","data":{{}}}}}}"#),
            format!(r#"{{"type":"RECORD","record":{{"stream":"t","data":{{"card":"{planted}"}}"#),
            format!(r#"{{"type":"RECORD","record":{{"stream":"t","data":{{"card":{planted}}}}}}}"#),
            format!(r#"{{"type":{{"{planted}":1}}}}"#),
        ] {
            let error = serde_json::from_str::<Incoming>(&line).err().expect("not a message");
            let problem = json_problem(&error);
            assert!(!problem.contains("SECRET") && !problem.contains("4111"), "{problem}");
            assert!(problem.contains("column") || problem.contains("missing"), "{problem}");
        }
        let error = serde_json::from_str::<Incoming>("{}").err().expect("no type");
        assert_eq!(json_problem(&error), r#"the protocol field "type" is missing"#);
    }
}
