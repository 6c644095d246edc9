//! The ingest stage: input -> local WAL -> batcher; closes segments and hands them on.
//!
//! Owns the WAL writer and the batcher. Runs on its own thread: appending and indexing are one
//! tight loop per message, with a bounded channel in (`--stdin` text already framed and parsed
//! or digested on the input thread, or messages with their source LSNs from a replication slot,
//! digested or parsed here, see [`crate::wal::digest`]) and the [`crate::pipeline::handoff`]
//! out: a sealed batch goes to the CSV stage when it takes it, or, when the CSV stage is stuck
//! behind a slow target, is dropped and its segment spilled (rebuilt from disk later), so a slow
//! target neither blocks reading nor grows memory.
//!
//! Invariants:
//! - every message is appended to the WAL before the batcher sees it;
//! - group commit: the WAL is fsynced before the loop waits for more input and when a segment
//!   closes (both waited for), and after at most [`GROUP_COMMIT_BYTES`] of WAL (by the WAL
//!   writer thread while ingest goes on appending); the durable LSN, published for upstream
//!   confirmation, is the last COMMIT covered by an fsync that has completed, never one asked
//!   for only; a segment is handed on only once all of it is durable;
//! - a segment closes at a transaction boundary when it reaches `segment_max_bytes`,
//!   `segment_max_age_secs` or 90% of the batcher's memory budget
//!   ([`crate::batch::CLOSE_AT_BOUNDARY_PERCENT`]), at EOF, or — anywhere, even inside a
//!   transaction — when the index reaches the whole budget (a transaction larger than it); such
//!   a segment is marked incomplete and is delivered only together with a later complete one;
//! - on start, segments left by a previous run are re-batched and re-delivered first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};

pub use crate::batch::rebuild::KnownKeys;
use crate::batch::rebuild::{rebuild, RebuildError};
use crate::batch::{BatchError, Batcher, RecPos, RecordSource};
use crate::lsn::Lsn;
use crate::metrics;
use crate::pipeline::handoff::{ProducerGuard, SealedQueue, SealedSegment};
use crate::pipeline::stage::StageHandle;
use crate::shutdown::Shutdown;
use crate::source::decoding::{parse_message_utf8, Body, FramedChunk, Message, ParseError, Side};
use crate::source::filter::{Filtered, TableFilter};
use crate::wal::digest::Digester;
use crate::wal::segment::SegmentReader;
use crate::wal::{change, Recovery, SegmentFile, Snapshot, Wal, WalError};

/// fsync at least this often (bytes of WAL) while input keeps arriving.
pub const GROUP_COMMIT_BYTES: u64 = 16 * 1024 * 1024;

/// One test_decoding message from a replication slot, with its position in the source's WAL.
#[derive(Debug, Clone)]
pub struct SourcedMessage {
    pub lsn: Lsn,
    /// The message exactly as the slot sent it (one XLogData's payload).
    pub raw: bytes::Bytes,
}

/// What the input side sends.
#[derive(Debug)]
pub enum Input {
    /// test_decoding text (what `pg_recvlogical -f -` prints), framed and parsed by a
    /// [`Framer`](crate::source::decoding::Framer) on the input side.
    Text(FramedChunk),
    /// Messages from a replication slot, in the order sent: each is stored in the WAL with its
    /// source LSN (text input gets local sequence numbers instead).
    Sourced(Vec<SourcedMessage>),
    /// End of input.
    Eof,
    /// Reading failed.
    Failed(std::io::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("reading input: {0}")]
    Input(#[source] std::io::Error),
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("message at LSN {lsn}: {source}")]
    SourcedParse {
        lsn: Lsn,
        #[source]
        source: ParseError,
    },
    #[error("line {line} (LSN {lsn}): {source}")]
    Batch {
        line: u64,
        lsn: Lsn,
        #[source]
        source: BatchError,
    },
    #[error("WAL segment {segment}: {source}")]
    Rebatch {
        segment: u64,
        #[source]
        source: BatchError,
    },
    #[error(transparent)]
    Rebuild(#[from] RebuildError),
    #[error(
        "input ended inside the transaction that began at line {line}: its changes were not loaded \
         (the capture is truncated)"
    )]
    IncompleteAtEof { line: u64 },
    #[error(
        "line {line}: a row change outside a transaction (expected BEGIN first): the input starts \
         in the middle of a transaction, and loading its tail would load a partial transaction; \
         start the input at a BEGIN line"
    )]
    OutsideTransaction { line: u64 },
    #[error("the CSV stage stopped")]
    DownstreamClosed,
}

/// How [`Ingest::run`] ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The whole input was read and handed on.
    Eof,
    /// A stop request came before the end of the input.
    Stopped(Interrupted),
}

/// Where a run stopped before the end of its input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interrupted {
    /// Input lines read (up to the start of the last message read).
    pub lines_read: u64,
    /// The line of the last COMMIT whose transaction is durable in the WAL (0: none): the input
    /// from the next line on is what a rerun still needs.
    pub durable_through_line: u64,
}

/// Limits the ingest loop works with (from `[wal]` and `[batch]`).
#[derive(Debug, Clone)]
pub struct IngestLimits {
    pub segment_max_bytes: u64,
    pub segment_max_age: Duration,
    /// Index budget of one batch: a fifth of `batch.max_memory_bytes` (see
    /// [`crate::pipeline::BATCH_SHARE`]).
    pub batch_max_memory: usize,
    /// How long a sealed batch waits for the CSV stage before its segment is spilled
    /// ([`crate::pipeline::handoff::SPILL_AFTER`] in the daemon).
    pub spill_after: Duration,
}

/// The open segment's bookkeeping.
#[derive(Debug, Clone, Copy)]
struct OpenSegment {
    opened: Instant,
    first_lsn: Lsn,
    last_lsn: Lsn,
}

pub struct Ingest {
    wal: Wal,
    batcher: Batcher,
    limits: IngestLimits,
    out: Arc<SealedQueue>,
    next_local_lsn: u64,
    in_txn: bool,
    txn_line: u64,
    /// The line of the last message read, and of the last COMMIT read.
    last_line: u64,
    commit_line: u64,
    /// The line of the last COMMIT covered by an fsync ingest waited for (idle, stop, seal).
    durable_line: u64,
    open: Option<OpenSegment>,
    synced_at_len: u64,
    last_commit_lsn: Lsn,
    /// The last COMMIT LSN known durable (for upstream confirmation).
    pub durable_lsn: Arc<AtomicU64>,
    /// `[source] include` / `exclude`.
    filter: TableFilter,
    stop: Shutdown,
    /// The prefix of the change record being appended (reused).
    change_buf: Vec<u8>,
    /// Digested rows parsed again here (the batcher had not checked their signature yet): the
    /// first per table and column list in each batch, the first after a row that went the
    /// common way changed the table's columns, and every row of a table without a known key.
    reparsed: u64,
    /// Digests messages from a slot here, before parsing them (text input is digested on the
    /// input thread), with [`Self::filter`]; `side` is what its digests point into (reused).
    digester: Digester,
    side: Side,
    /// Messages and row changes read since the metrics last had them.
    read: ReadCounts,
}

/// What ingest read, counted here and added to the metrics once per input (a chunk of text or
/// a batch of a slot's messages) and when the run ends: per message, two shared atomic adds
/// per counter would be most of a row change's bookkeeping.
#[derive(Debug, Default)]
struct ReadCounts {
    messages: u64,
    changes: u64,
}

impl ReadCounts {
    fn publish(&mut self) {
        if self.messages > 0 {
            metrics::MESSAGES_READ.add(std::mem::take(&mut self.messages));
        }
        if self.changes > 0 {
            metrics::CHANGES_READ.add(std::mem::take(&mut self.changes));
        }
    }
}

/// A message as received: where it starts and its bytes.
struct Received<'a> {
    line: u64,
    raw: &'a [u8],
    /// `raw` is valid UTF-8 (the parser checked).
    utf8: bool,
}

/// Reads messages back from the segment being written.
struct OpenSegmentSource<'a> {
    wal: &'a mut Wal,
    reader: Option<SegmentReader>,
}

impl RecordSource for OpenSegmentSource<'_> {
    fn message_at(&mut self, pos: RecPos) -> Result<Vec<u8>, BatchError> {
        if self.reader.is_none() {
            self.wal.flush().map_err(|e| match e {
                WalError::Segment(s) => BatchError::Reread(s),
                other => BatchError::Reread(crate::wal::segment::SegmentError::Io {
                    path: self.wal.dir().to_path_buf(),
                    source: std::io::Error::other(other.to_string()),
                }),
            })?;
            let path = self
                .wal
                .current_path()
                .expect("a segment is open while batching");
            self.reader = Some(SegmentReader::open(path)?);
        }
        let r = self.reader.as_mut().expect("opened above");
        Ok(r.text_at(pos)?.to_vec())
    }
}

impl Ingest {
    /// `recovery` comes from [`Wal::open`]; `known_keys` are the keys known before the stream
    /// shows any (`[tables."s.t"] primary_key`, the source catalog's), by `schema.table`.
    pub fn new(
        wal: Wal,
        recovery: &Recovery,
        known_keys: KnownKeys,
        limits: IngestLimits,
        out: Arc<SealedQueue>,
        stop: Shutdown,
    ) -> Self {
        let batcher = Batcher::new(recovery.schema.clone(), known_keys, limits.batch_max_memory);
        Self {
            wal,
            batcher,
            limits,
            out,
            next_local_lsn: recovery.next_local_lsn.max(1),
            in_txn: false,
            txn_line: 0,
            last_line: 0,
            commit_line: 0,
            durable_line: 0,
            open: None,
            synced_at_len: 0,
            last_commit_lsn: recovery.last_commit_lsn,
            // What recovery found is on disk already.
            durable_lsn: Arc::new(AtomicU64::new(recovery.last_commit_lsn.0)),
            filter: TableFilter::default(),
            stop,
            change_buf: Vec::new(),
            reparsed: 0,
            digester: Digester::new(TableFilter::default()),
            side: Side::default(),
            read: ReadCounts::default(),
        }
    }

    /// Takes only the tables `filter` takes (default: every table).
    pub fn with_filter(mut self, filter: TableFilter) -> Self {
        self.digester = Digester::new(filter.clone());
        self.filter = filter;
        self
    }

    /// Runs on a thread of its own: first the segments a previous run left (`recovered`), then
    /// `input` until its end, an error or the stop signal. The sealed queue is closed when the
    /// stage ends, however it ends.
    pub fn spawn(
        mut self,
        recovered: Vec<SegmentFile>,
        input: Option<Receiver<Input>>,
    ) -> StageHandle<RunEnd, IngestError> {
        StageHandle::thread("ingest", move || {
            let out = Arc::clone(&self.out);
            let _done = ProducerGuard(&out);
            self.replay(&recovered)?;
            match input {
                Some(rx) => self.run(&rx),
                None => Ok(RunEnd::Eof),
            }
        })
    }

    /// Re-batches segments a previous run left on disk, oldest first, and sends them on.
    pub fn replay(&mut self, segments: &[SegmentFile]) -> Result<(), IngestError> {
        for file in segments {
            let _span = tracing::info_span!("replay", segment = file.id).entered();
            let rebuilt = rebuild(
                file,
                self.batcher.known_keys(),
                self.limits.batch_max_memory,
            )?;
            tracing::info!(
                records = rebuilt.records,
                changes = rebuilt.batch.changes,
                "re-delivering a segment left by the previous run"
            );
            self.in_txn = rebuilt.ends_in_txn;
            if !rebuilt.ends_in_txn {
                self.last_commit_lsn = rebuilt.last_lsn;
            }
            // New segments start from the schema as of the last one replayed.
            self.batcher = Batcher::new(
                rebuilt.schema,
                self.batcher.known_keys().clone(),
                self.limits.batch_max_memory,
            );
            let sealed = SealedSegment {
                file: file.clone(),
                first_lsn: rebuilt.first_lsn,
                last_lsn: rebuilt.last_lsn,
                complete: !rebuilt.ends_in_txn,
                batch: rebuilt.batch,
            };
            // Like live segments, spilled when the sink is behind (a restart during an outage
            // must not hold back reading either).
            self.out
                .offer(sealed, self.limits.spill_after)
                .map_err(|_| IngestError::DownstreamClosed)?;
        }
        Ok(())
    }

    fn track_txn(&mut self, msg: &Message<'_>, line: u64, lsn: Lsn) {
        match msg {
            Message::Begin { .. } => {
                self.in_txn = true;
                self.txn_line = line;
            }
            Message::Commit { .. } => {
                self.in_txn = false;
                self.last_commit_lsn = lsn;
                self.commit_line = line;
            }
            Message::Insert { .. } | Message::Update { .. } | Message::Delete { .. } => {
                self.read.changes += 1;
            }
            _ => {}
        }
    }

    /// Reads input until EOF, an error, or a stop request; loads everything complete.
    pub fn run(&mut self, input: &Receiver<Input>) -> Result<RunEnd, IngestError> {
        let end = self.read_input(input);
        self.read.publish();
        end
    }

    fn read_input(&mut self, input: &Receiver<Input>) -> Result<RunEnd, IngestError> {
        let mut eof = false;
        loop {
            // What the last input held.
            self.read.publish();
            if eof {
                if self.in_txn {
                    return Err(IngestError::IncompleteAtEof {
                        line: self.txn_line,
                    });
                }
                self.close_segment(true)?;
                return Ok(RunEnd::Eof);
            }
            if self.stop.is_triggered() {
                tracing::info!(
                    lines_read = self.last_line,
                    "stop requested: no more input is read"
                );
                self.stop_now()?;
                return Ok(RunEnd::Stopped(Interrupted {
                    lines_read: self.last_line,
                    durable_through_line: self.durable_line,
                }));
            }
            let waited = self.next_input(input)?;
            match waited {
                Waited::Input(Input::Text(chunk)) => self.ingest_text(&chunk)?,
                Waited::Input(Input::Sourced(messages)) => self.ingest_sourced(&messages)?,
                Waited::Input(Input::Eof) => eof = true,
                Waited::Input(Input::Failed(e)) => return Err(IngestError::Input(e)),
                // Seen at the top of the loop.
                Waited::Stop => {}
                Waited::Aged => {
                    if !self.in_txn && self.segment_aged() {
                        self.close_segment(true)?;
                    }
                }
            }
        }
    }

    /// Text input, framed and parsed on the input thread (row changes digested there, see
    /// [`crate::wal::digest`]); ends with the chunk's parse error.
    fn ingest_text(&mut self, chunk: &FramedChunk) -> Result<(), IngestError> {
        let side = chunk.side();
        for frame in chunk.frames() {
            let msg = Received {
                line: frame.line,
                raw: frame.raw,
                utf8: frame.utf8,
            };
            match &frame.body {
                Body::Parsed(message) => self.ingest_frame(&msg, message, None)?,
                Body::Digested(d) => self.ingest_digested(&msg, d, side, None)?,
            }
        }
        match chunk.error() {
            Some(e) => Err(IngestError::Parse(e.clone())),
            None => Ok(()),
        }
    }

    /// Messages from a slot: each is a whole message (no framing), numbered as lines go on.
    fn ingest_sourced(&mut self, messages: &[SourcedMessage]) -> Result<(), IngestError> {
        for m in messages {
            let line = self.last_line + 1;
            // The common row change is walked, not parsed, as on `--stdin`'s input thread.
            if let Some(digested) = self.ingest_slot_digested(m, line) {
                digested?;
                continue;
            }
            let (message, utf8) = parse_message_utf8(&m.raw, line)
                .map_err(|source| IngestError::SourcedParse { lsn: m.lsn, source })?;
            let msg = Received {
                line,
                raw: &m.raw,
                utf8,
            };
            self.ingest_frame(&msg, &message, Some(m.lsn))?;
        }
        Ok(())
    }

    /// One message: appended to the WAL (opening a segment if none is open), then indexed.
    /// `source_lsn`: its position in the source's WAL; without, the next local number.
    #[inline]
    fn ingest_frame(
        &mut self,
        msg: &Received<'_>,
        message: &Message<'_>,
        source_lsn: Option<Lsn>,
    ) -> Result<(), IngestError> {
        self.last_line = msg.line;
        if !self.in_txn && is_row_change(message) {
            return Err(IngestError::OutsideTransaction { line: msg.line });
        }
        match self.filter.apply(message) {
            Filtered::Take => self.append_frame(msg, message, source_lsn),
            Filtered::Skip => {
                metrics::CHANGES_FILTERED.inc();
                Ok(())
            }
            Filtered::Rewrite(raw) => {
                let (message, utf8) = parse_message_utf8(&raw, msg.line)?;
                let msg = Received {
                    line: msg.line,
                    raw: &raw,
                    utf8,
                };
                self.append_frame(&msg, &message, source_lsn)
            }
        }
    }

    /// The next LSN of text input (`source_lsn` for a slot's), counted as read; opens a segment
    /// starting there if none is open.
    fn next_lsn(&mut self, source_lsn: Option<Lsn>) -> Result<Lsn, IngestError> {
        let lsn = source_lsn.unwrap_or(Lsn(self.next_local_lsn));
        self.next_local_lsn = self.next_local_lsn.max(lsn.0) + 1;
        self.read.messages += 1;
        if !self.wal.has_segment() {
            self.open_segment(lsn)?;
        }
        Ok(lsn)
    }

    /// Appends a message taken by the filter to the WAL, then indexes it.
    fn append_frame(
        &mut self,
        msg: &Received<'_>,
        message: &Message<'_>,
        source_lsn: Option<Lsn>,
    ) -> Result<(), IngestError> {
        let lsn = self.next_lsn(source_lsn)?;
        self.change_buf.clear();
        let pos = match change::split_of(message) {
            Some((op, new))
                if change::encode_prefix(&mut self.change_buf, op, msg.raw, msg.utf8, new) =>
            {
                self.wal.append_change(lsn, &self.change_buf, msg.raw)?
            }
            _ => self.wal.append(lsn, msg.raw)?,
        };
        if let Some(open) = self.open.as_mut() {
            open.last_lsn = lsn;
        }
        self.track_txn(message, msg.line, lsn);
        self.apply(message, pos, msg.line, lsn)?;
        self.after_message()
    }

    /// Folds `message`, in the WAL at `pos`, into the batch.
    fn apply(
        &mut self,
        message: &Message<'_>,
        pos: RecPos,
        line: u64,
        lsn: Lsn,
    ) -> Result<(), IngestError> {
        let mut src = OpenSegmentSource {
            wal: &mut self.wal,
            reader: None,
        };
        self.batcher
            .apply(message, pos, &mut src)
            .map_err(|source| IngestError::Batch { line, lsn, source })
    }

    /// Starts a segment whose first message will be `lsn`.
    fn open_segment(&mut self, lsn: Lsn) -> Result<(), IngestError> {
        let snapshot = Snapshot {
            starts_in_txn: self.in_txn,
            next_local_lsn: lsn.0,
            schema: self.batcher.registry().clone(),
        };
        self.wal.begin_segment(&snapshot)?;
        self.open = Some(OpenSegment {
            opened: Instant::now(),
            first_lsn: lsn,
            last_lsn: lsn,
        });
        self.synced_at_len = 0;
        Ok(())
    }

    /// The next input. This is the group commit point: nothing buffered is complete, so when
    /// no input is waiting, everything read is made durable before blocking.
    fn next_input(&mut self, input: &Receiver<Input>) -> Result<Waited, IngestError> {
        Ok(match input.try_recv() {
            Ok(x) => Waited::Input(x),
            Err(TryRecvError::Disconnected) => Waited::Input(Input::Eof),
            Err(TryRecvError::Empty) => {
                self.sync()?;
                self.wait_for_input(input)
            }
        })
    }

    /// Blocks until input comes, the stop signal is set, or the open segment (between
    /// transactions) reaches its age: no polling.
    fn wait_for_input(&self, input: &Receiver<Input>) -> Waited {
        let aged = match self.age_deadline() {
            Some(at) if !self.in_txn => crossbeam_channel::at(at),
            _ => crossbeam_channel::never(),
        };
        crossbeam_channel::select! {
            recv(input) -> m => Waited::Input(m.unwrap_or(Input::Eof)),
            recv(self.stop.receiver()) -> _ => Waited::Stop,
            recv(aged) -> _ => Waited::Aged,
        }
    }

    /// On a stop request: make what was read durable; a segment that ends at a transaction
    /// boundary is delivered now, an open transaction stays in the WAL for the next start.
    fn stop_now(&mut self) -> Result<(), IngestError> {
        self.sync()?;
        if !self.in_txn {
            self.close_segment(true)?;
        }
        Ok(())
    }

    fn age_deadline(&self) -> Option<Instant> {
        self.open.map(|o| o.opened + self.limits.segment_max_age)
    }

    fn segment_aged(&self) -> bool {
        self.age_deadline().is_some_and(|d| Instant::now() >= d)
    }

    fn after_message(&mut self) -> Result<(), IngestError> {
        let len = self.wal.segment_len();
        if len.saturating_sub(self.synced_at_len) >= GROUP_COMMIT_BYTES {
            self.sync_behind()?;
        }
        // Near the budget at a transaction boundary, or at the budget anywhere (a transaction
        // larger than what is left of it).
        let boundary = !self.in_txn;
        if self.batcher.memory_full() || (boundary && self.batcher.memory_nearly_full()) {
            metrics::SEGMENTS_ROTATED_FOR_MEMORY.inc();
            tracing::info!(
                memory = self.batcher.memory_used(),
                in_txn = self.in_txn,
                "batch memory budget reached: closing the segment early"
            );
            return self.close_segment(boundary);
        }
        if boundary && (len >= self.limits.segment_max_bytes || self.segment_aged()) {
            return self.close_segment(true);
        }
        Ok(())
    }

    /// The group commit under load: the WAL writer fsyncs while ingest goes on, and publishes
    /// the durable LSN (the last COMMIT read before this point) once the fsync is done.
    fn sync_behind(&mut self) -> Result<(), IngestError> {
        if self.wal.needs_sync() {
            metrics::BATCH_MEMORY.set(self.batcher.memory_used() as f64);
            crate::failpoint!("wal.before_sync");
            let durable = Arc::clone(&self.durable_lsn);
            let lsn = self.last_commit_lsn.0;
            self.wal.sync_behind(Box::new(move || {
                durable.fetch_max(lsn, Ordering::AcqRel);
            }))?;
            self.synced_at_len = self.wal.segment_len();
        }
        Ok(())
    }

    /// Makes what was read durable and waits for it (idle, stop), a group commit still at work
    /// included (and its failure returned): the durable LSN and line are those of the last
    /// COMMIT read.
    fn sync(&mut self) -> Result<(), IngestError> {
        if !self.wal.is_durable() {
            // Sampled at each fsync (group commit, idle, commit), not per message.
            metrics::BATCH_MEMORY.set(self.batcher.memory_used() as f64);
            crate::failpoint!("wal.before_sync");
            self.wal.sync()?;
            crate::failpoint!("wal.after_sync");
            self.synced_at_len = self.wal.segment_len();
            // Every transaction up to the last COMMIT read is in the synced bytes (also while
            // the next one is open: a long transaction does not hold confirmation back).
            self.durable_lsn
                .store(self.last_commit_lsn.0, Ordering::Release);
            self.durable_line = self.commit_line;
        }
        Ok(())
    }

    /// Seals the open segment and sends its batch to the CSV stage.
    fn close_segment(&mut self, complete: bool) -> Result<(), IngestError> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let batch = {
            let id = self.wal.current_id().unwrap_or_default();
            let mut src = OpenSegmentSource {
                wal: &mut self.wal,
                reader: None,
            };
            self.batcher
                .take(&mut src)
                .map_err(|source| IngestError::Rebatch {
                    segment: id,
                    source,
                })?
        };
        publish_received(&batch);
        metrics::BATCH_MEMORY.set(0.0);
        let Some(file) = self.wal.seal(
            self.batcher.registry(),
            self.next_local_lsn,
            self.last_commit_lsn,
            complete,
        )?
        else {
            return Ok(());
        };
        if complete {
            self.durable_lsn
                .store(self.last_commit_lsn.0, Ordering::Release);
            self.durable_line = self.commit_line;
        }
        tracing::debug!(
            segment = file.id,
            bytes = file.len,
            changes = batch.changes,
            complete,
            "segment sealed"
        );
        let sealed = SealedSegment {
            file,
            first_lsn: open.first_lsn,
            last_lsn: open.last_lsn,
            complete,
            batch,
        };
        self.out
            .offer(sealed, self.limits.spill_after)
            .map_err(|_| IngestError::DownstreamClosed)
    }
}

/// The changes a sealed batch received, per table and op (`re_dms_changes_received_total`).
fn publish_received(batch: &crate::batch::Batch) {
    use crate::metrics::{changes_received, Op};
    let mut name = String::new();
    for t in &batch.tables {
        name.clear();
        name.push_str(&t.schema);
        name.push('.');
        name.push_str(&t.name);
        for (op, n) in [Op::Insert, Op::Update, Op::Delete, Op::Truncate]
            .into_iter()
            .zip(t.received)
        {
            changes_received(&name, op, n);
        }
    }
}

/// What ended a wait for input.
enum Waited {
    Input(Input),
    Stop,
    Aged,
}

/// A row change: must come inside BEGIN ... COMMIT (a logical message need not).
fn is_row_change(msg: &Message<'_>) -> bool {
    matches!(
        msg,
        Message::Insert { .. }
            | Message::Update { .. }
            | Message::Delete { .. }
            | Message::Truncate { .. }
    )
}

/// Opens the WAL directory (recovering it) for a run.
pub fn open_wal(dir: &std::path::Path) -> Result<(Wal, Recovery), WalError> {
    let (wal, recovery) = Wal::open(dir)?;
    if !recovery.segments.is_empty() {
        tracing::warn!(
            segments = recovery.segments.len(),
            "WAL holds segments not yet confirmed by the target: re-delivering them"
        );
    }
    Ok((wal, recovery))
}

#[path = "ingest_digested.rs"]
mod digested;

#[cfg(test)]
#[path = "ingest_tests.rs"]
mod tests;
