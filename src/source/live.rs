//! The live source stage: a test_decoding replication slot, streamed over the replication
//! protocol (`replication/`) into ingest, one [`SourcedMessage`] per XLogData.
//!
//! Acknowledgement, the rules that keep the slot from dropping a change re_dms does not hold:
//! - the flush position confirmed to the slot is the *confirmable* LSN, by `[source] ack`:
//!   - `"wal"` (default): ingest's durable LSN, the source LSN of the last COMMIT whose record
//!     an fsync of the local WAL covers;
//!   - `"loaded"`: the sink's loaded LSN, the last COMMIT of the newest complete segment that
//!     the target loaded and the WAL deleted, with every segment before it (see
//!     [`crate::sink::deliver`]). The slot then keeps everything the target lacks: a lost WAL
//!     directory costs nothing but a re-read (a new directory adopts the slot and streams again
//!     from its confirmed position; the target's merge by key makes the repeat harmless). The
//!     price: the source holds WAL for as long as loads take (`segment_max_age_secs` and the
//!     load, longer while the target is down or a table is stopped);
//!
//!   nothing later is ever confirmed;
//! - when nothing is pending (every message received is in ingest's hands, the last one was a
//!   COMMIT and the confirmable LSN has reached it), the WAL end of the server's last keepalive
//!   is confirmed too, so that an idle database, or a busy neighbouring database on the same
//!   server, never makes the slot hold WAL on the source;
//! - a position once confirmed is never sent lower again (PostgreSQL 15 would move the slot
//!   back, and hold WAL for nothing);
//! - a status update goes out every `status_interval_secs`, at once when the server asks for
//!   one, and a last time when the stage stops.
//!
//! Where streaming starts: at the last COMMIT the WAL holds (recovery's `last_commit_lsn`; after
//! a reconnect, the last COMMIT handed to ingest, which appends everything it is given or fails
//! the process). PostgreSQL sends only transactions whose commit record lies after the start
//! position, so what the WAL already holds is not sent again, and nothing after it is skipped (everything after it is also after the slot's confirmed
//! position, which never passes what the WAL holds, except for the idle keepalive positions,
//! which hold no transaction).
//!
//! Losing the connection between transactions: reconnect with capped, jittered backoff, for as
//! long as it takes, with a warning per attempt. Every status update asks the server for an
//! answer; a server silent for three status intervals and 30 s more, or a status update that
//! cannot be written within 30 s, is a lost connection (a half-open TCP connection is otherwise
//! noticed only after many minutes). Inside a transaction, its first part is in the
//! WAL already and only the recovery of a new start removes it: the stage fails, and the process
//! starts again in place (`service::exec_again`: same PID, after a backoff), so systemd's
//! start limit never sees it. A missing slot with `create_slot = false`,
//! a slot of another plugin or database, and a lost slot are fatal with what to do: a slot is
//! never re-created silently, as that would skip every change since it was lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::binding::{self, BindingError, SlotBinding};
use super::replication::{Event, ReplicationError, ReplicationStream, Session};
use crate::lsn::Lsn;
use crate::metrics;
use crate::pipeline::stage::StageHandle;
use crate::retry::classify::backoff;
use crate::shutdown::Shutdown;
use crate::wal::ingest::{Input, SourcedMessage};
use crate::wal::{is_begin, is_commit};

/// Batches of messages in flight to ingest.
pub const BATCHES_AHEAD: usize = 4;
/// A batch is handed to ingest at each COMMIT, or once it holds this many bytes.
pub const BATCH_BYTES: usize = 1 << 20;
/// A status update that cannot be written within this is a dead connection.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(30);
/// Added to three status intervals: how long the server may stay silent.
pub const SILENT_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Replication(#[from] ReplicationError),
    #[error(
        "replication slot `{slot}` does not exist and source.create_slot = false: create it \
         (SELECT pg_create_logical_replication_slot('{slot}', 'test_decoding')) or set \
         create_slot = true"
    )]
    SlotMissing { slot: String },
    #[error(
        "replication slot `{slot}` uses the {found} plugin and database {database}; re_dms needs \
         a test_decoding slot of database {wanted}: name another slot in source.slot"
    )]
    SlotMismatch {
        slot: String,
        found: String,
        database: String,
        wanted: String,
    },
    #[error(
        "replication slot `{slot}` is lost (wal_status = lost): the source removed WAL the slot \
         still needed, so changes after {confirmed} are gone from the stream. re_dms will not \
         re-create it silently: drop the slot, create it again and reload the tables (a full \
         resync); raise max_slot_wal_keep_size to keep it from happening again"
    )]
    SlotLost { slot: String, confirmed: String },
    #[error(
        "the connection to the source was lost inside a transaction (its first part is in the \
         WAL; a new start drops it and streams it again whole): {source}"
    )]
    LostInTransaction {
        /// A transient error: the connection, or a server that stopped answering.
        #[source]
        source: Box<LiveError>,
    },
    #[error(
        "replication slot `{slot}` is gone, but this WAL directory streamed from it (through LSN \
         {through}): it was dropped, and re-creating it would skip every change made since. \
         re_dms will not: create the slot and reload the tables (a full resync), then remove \
         {binding} to start this directory over"
    )]
    SlotDropped {
        slot: String,
        through: Lsn,
        binding: std::path::PathBuf,
    },
    #[error(
        "this WAL directory streams from slot `{bound}`, and source.slot, the database or the \
         cluster now names `{now}`: streaming from another slot would skip or repeat changes. \
         Use the WAL directory of that source, or a new one for this source"
    )]
    OtherSource { bound: String, now: String },
    #[error(
        "the source has not answered for {}s although every status update asks it to: the \
         connection is taken as dead",
        after.as_secs()
    )]
    Silent { after: Duration },
    #[error(
        "WAL directory {} holds positions from --stdin replays (local numbers, not source \
         LSNs) and is not bound to a slot: streaming from that position could skip changes. \
         Use a new WAL directory for the live source",
        wal_dir.display()
    )]
    ReplayHistory { wal_dir: std::path::PathBuf },
    #[error(transparent)]
    Binding(#[from] BindingError),
    #[error("the live source could not start its runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl LiveError {
    /// Worth reconnecting for (between transactions).
    fn is_transient(&self) -> bool {
        match self {
            LiveError::Replication(e) => e.class().is_transient(),
            LiveError::Silent { .. } => true,
            _ => false,
        }
    }
}

/// The live source's settings.
#[derive(Debug, Clone)]
pub struct LiveSource {
    /// The WAL directory: its `source.json` binds it to one slot (`binding.rs`).
    pub wal_dir: std::path::PathBuf,
    pub connection: String,
    pub slot: String,
    pub create_slot: bool,
    pub status_interval: Duration,
}

/// `slot` of database `db` on cluster `id`.
fn describe_binding(b: &SlotBinding) -> String {
    format!(
        "{}` of database `{}` on cluster `{}",
        b.slot, b.database, b.system_id
    )
}

/// How one connection's streaming ended without an error.
enum Ended {
    Stopped,
    /// The server ended the stream (CopyDone), e.g. a shutting-down server.
    ServerClosed,
}

/// The stage's state across connections.
struct Reader {
    config: LiveSource,
    /// The confirmable LSN (module docs): ingest's durable LSN, or the sink's loaded LSN.
    confirmable: Arc<AtomicU64>,
    /// Where the WAL ends: the last COMMIT it held when the stage started.
    resume_from: Lsn,
    stop: Shutdown,
    tx: Sender<Input>,
    pending: Vec<SourcedMessage>,
    pending_bytes: usize,
    in_txn: bool,
    /// The last COMMIT handed to ingest.
    last_commit: Lsn,
    /// The position of the last message received.
    received: Lsn,
    /// The server's WAL end from its last keepalive.
    server_end: Lsn,
    /// Since when the confirmed position is behind the server's end (lag in seconds).
    behind_since: Option<Instant>,
    /// The highest flush position confirmed so far: never sent lower again (PostgreSQL 15
    /// would move the slot back).
    confirmed: Lsn,
}

impl LiveSource {
    /// Starts streaming on a thread of its own; ingest takes the messages from the returned
    /// channel. `resume_from` is the last COMMIT the WAL holds; `confirmable` is what may be
    /// confirmed (ingest's durable LSN, or the sink's loaded LSN: see the module docs).
    pub fn spawn(
        self,
        resume_from: Lsn,
        confirmable: Arc<AtomicU64>,
        stop: Shutdown,
    ) -> (StageHandle<(), LiveError>, Receiver<Input>) {
        let (tx, rx) = crossbeam_channel::bounded(BATCHES_AHEAD);
        let handle = StageHandle::thread("source", move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(LiveError::Runtime)?;
            let mut reader = Reader {
                config: self,
                confirmable,
                resume_from,
                stop: stop.clone(),
                tx,
                pending: Vec::new(),
                pending_bytes: 0,
                in_txn: false,
                last_commit: resume_from,
                received: resume_from,
                server_end: Lsn(0),
                behind_since: None,
                confirmed: Lsn(0),
            };
            let result = runtime.block_on(reader.run());
            if let Err(e) = &result {
                // Take the process down: ingest keeps what it has, the sink drains.
                tracing::error!(error = %crate::error_chain(e), "the live source stopped");
                stop.trigger();
            }
            result
        });
        (handle, rx)
    }
}

impl Reader {
    /// Connects and streams until the stop signal, reconnecting after transient errors between
    /// transactions.
    async fn run(&mut self) -> Result<(), LiveError> {
        let mut attempt = 0u32;
        loop {
            let before = self.received;
            let error = match self.stream().await {
                Ok(Ended::Stopped) => return Ok(()),
                Ok(Ended::ServerClosed) => None,
                Err(e) => Some(e),
            };
            if self.in_txn {
                // What a reconnect would fix, only a new start fixes here (see the module note);
                // anything else is the run's error as it is.
                return Err(match error {
                    Some(e) if !e.is_transient() => e,
                    Some(e) => LiveError::LostInTransaction {
                        source: Box::new(e),
                    },
                    None => LiveError::LostInTransaction {
                        source: Box::new(LiveError::Replication(ReplicationError::Closed {
                            target: crate::connection::redact(&self.config.connection),
                            context: "streaming",
                        })),
                    },
                });
            }
            match error {
                Some(e) if !e.is_transient() => return Err(e),
                _ => {}
            }
            // A connection that streamed something starts the backoff over.
            attempt = if self.received > before {
                1
            } else {
                attempt + 1
            };
            let wait = backoff(attempt);
            metrics::SOURCE_RECONNECTS.inc();
            match &error {
                Some(e) => tracing::warn!(
                    error = %crate::error_chain(e), attempt, retry_in = ?wait,
                    "source connection failed; reconnecting"
                ),
                None => tracing::warn!(
                    attempt, retry_in = ?wait,
                    "the source ended the replication stream; reconnecting"
                ),
            }
            if self.stop.sleep(wait).await.is_err() {
                return Ok(());
            }
        }
    }

    /// One connection: check the slot, stream from the WAL's end until the stop signal or an
    /// error.
    async fn stream(&mut self) -> Result<Ended, LiveError> {
        let Some(mut session) = self
            .until_stop(Session::connect(&self.config.connection))
            .await?
        else {
            return Ok(Ended::Stopped);
        };
        let Some(confirmed) = self.until_stop(self.check_slot(&mut session)).await? else {
            return Ok(Ended::Stopped);
        };
        // The slot's position as the server has it: never confirmed lower.
        self.confirmed = self.confirmed.max(confirmed);
        // After everything handed to ingest (which appends it all, or fails the process): a
        // transaction handed over but not yet fsynced must not be streamed again.
        let from = self.last_commit;
        let slot = self.config.slot.clone();
        let Some(mut stream) = self
            .until_stop(session.start_replication(&slot, from))
            .await?
        else {
            return Ok(Ended::Stopped);
        };
        tracing::info!(slot = %slot, from = %from, "streaming from the replication slot");
        crate::metrics::health::health().source_heard();
        // The WAL was recovered before this stage started: the daemon is up (first time only).
        crate::service::ready(&format!("streaming from slot {slot}"));
        let mut status = tokio::time::interval(self.config.status_interval);
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        status.reset();
        let mut heard = Instant::now();
        loop {
            tokio::select! {
                biased;
                // The stop signal: confirm what is confirmable, end the stream.
                () = self.stop.wait() => {
                    let _ = self.send_status(&mut stream, false).await;
                    stream.close(Duration::from_secs(2)).await;
                    return Ok(Ended::Stopped);
                }
                // Periodic status update, asking for an answer: a server that stays silent
                // past `silent_after()` is a dead connection (a half-open TCP connection would
                // otherwise go unnoticed for many minutes).
                _ = status.tick() => {
                    if heard.elapsed() > self.silent_after() {
                        return Err(LiveError::Silent { after: heard.elapsed() });
                    }
                    self.send_status(&mut stream, true).await?;
                }
                // The next message (cancel-safe).
                event = stream.next() => {
                    heard = Instant::now();
                    crate::metrics::health::health().source_heard();
                    if let Some(end) = self.on_event(event?, &mut stream).await? {
                        return Ok(end);
                    }
                }
            }
        }
    }

    /// One message from the server; `Some` when streaming ends with it.
    async fn on_event(
        &mut self,
        event: Option<Event>,
        stream: &mut ReplicationStream,
    ) -> Result<Option<Ended>, LiveError> {
        match event {
            Some(Event::XLogData { start, data, .. }) => {
                self.received = self.received.max(start);
                if !self.take(SourcedMessage {
                    lsn: start,
                    raw: data,
                }) {
                    return Ok(Some(Ended::Stopped));
                }
            }
            Some(Event::Keepalive { wal_end, reply, .. }) => {
                self.server_end = self.server_end.max(wal_end);
                if reply {
                    self.send_status(stream, false).await?;
                }
            }
            None => return Ok(Some(Ended::ServerClosed)),
        }
        Ok(None)
    }

    /// Runs `work` unless the stop signal comes first (`None`).
    async fn until_stop<T, E>(
        &self,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<Option<T>, LiveError>
    where
        LiveError: From<E>,
    {
        tokio::select! {
            biased;
            () = self.stop.wait() => Ok(None),
            r = work => Ok(Some(r?)),
        }
    }

    /// How long the server may stay silent, although every status update asks for an answer.
    fn silent_after(&self) -> Duration {
        3 * self.config.status_interval + SILENT_GRACE
    }

    /// The slot exists (or is created on a first start), is test_decoding's for this database,
    /// is not lost, and is the one this WAL directory streams from. Returns the slot's
    /// confirmed position (0/0 for a new slot).
    async fn check_slot(&self, session: &mut Session) -> Result<Lsn, LiveError> {
        let slot = &self.config.slot;
        let me = session.identify_system().await?;
        let database = me.database.clone().unwrap_or_default();
        let now = SlotBinding {
            slot: slot.clone(),
            database: database.clone(),
            system_id: me.system_id.clone(),
        };
        let bound = binding::load(&self.config.wal_dir)?;
        if let Some(bound) = &bound {
            if *bound != now {
                return Err(LiveError::OtherSource {
                    bound: describe_binding(bound),
                    now: describe_binding(&now),
                });
            }
        }
        let Some(state) = session.slot(slot).await? else {
            if bound.is_some() {
                return Err(LiveError::SlotDropped {
                    slot: slot.clone(),
                    through: self.resume_from,
                    binding: self.config.wal_dir.join(binding::BINDING_FILE),
                });
            }
            if !self.config.create_slot {
                return Err(LiveError::SlotMissing { slot: slot.clone() });
            }
            // Bound once the slot exists: a stop or crash in between leaves a slot without a
            // binding, which the next start adopts (nothing was streamed yet).
            if self.resume_from != Lsn(0) {
                return Err(LiveError::ReplayHistory {
                    wal_dir: self.config.wal_dir.clone(),
                });
            }
            tracing::info!(slot = %slot, "creating the replication slot (waits for the transactions running now to end)");
            let point = session.create_slot(slot).await?;
            binding::save(&self.config.wal_dir, &now)?;
            tracing::info!(slot = %slot, consistent_point = %point, "created the replication slot");
            return Ok(Lsn(0));
        };
        let plugin = state.plugin.clone().unwrap_or_default();
        let slot_db = state.database.clone().unwrap_or_default();
        if plugin != super::replication::slot::PLUGIN || slot_db != database {
            return Err(LiveError::SlotMismatch {
                slot: slot.clone(),
                found: plugin,
                database: slot_db,
                wanted: database,
            });
        }
        if state.is_lost() {
            return Err(LiveError::SlotLost {
                slot: slot.clone(),
                confirmed: state
                    .confirmed_flush
                    .map_or_else(|| "its last confirmed position".into(), |l| l.to_string()),
            });
        }
        if bound.is_none() {
            if self.resume_from != Lsn(0) {
                return Err(LiveError::ReplayHistory {
                    wal_dir: self.config.wal_dir.clone(),
                });
            }
            // An existing slot, first streamed into this directory: bind them.
            binding::save(&self.config.wal_dir, &now)?;
        }
        Ok(state.confirmed_flush.unwrap_or_default())
    }

    /// Adds a message to the batch for ingest; hands the batch over at a COMMIT or when it is
    /// full. False when the stop signal came while ingest was not taking it.
    fn take(&mut self, message: SourcedMessage) -> bool {
        if is_begin(&message.raw) {
            self.in_txn = true;
        } else if is_commit(&message.raw) {
            self.in_txn = false;
            self.last_commit = message.lsn;
        }
        self.pending_bytes += message.raw.len();
        self.pending.push(message);
        // Outside a transaction (a COMMIT, or a non-transactional logical message) nothing is
        // held back: the idle rule needs everything received to be in ingest's hands.
        if !self.in_txn || self.pending_bytes >= BATCH_BYTES {
            self.pending_bytes = 0;
            let batch = Input::Sourced(std::mem::take(&mut self.pending));
            // Blocks while ingest is behind (it only waits on its disk): bounded memory.
            return crossbeam_channel::select! {
                send(self.tx, batch) -> sent => sent.is_ok(),
                recv(self.stop.receiver()) -> _ => false,
            };
        }
        true
    }

    /// A standby status update: flushed = what the WAL holds durably (plus, when nothing is
    /// pending, the server's WAL end: see the module's note).
    async fn send_status(
        &mut self,
        stream: &mut ReplicationStream,
        reply: bool,
    ) -> Result<(), LiveError> {
        let durable = Lsn(self.confirmable.load(Ordering::Acquire));
        let idle = !self.in_txn && self.pending.is_empty() && durable >= self.last_commit;
        let flushed = if idle {
            durable.max(self.server_end)
        } else {
            durable
        }
        .max(self.confirmed);
        let written = self.received.max(flushed);
        tokio::time::timeout(STATUS_TIMEOUT, stream.send_status(written, flushed, reply))
            .await
            .map_err(|_| LiveError::Silent {
                after: STATUS_TIMEOUT,
            })??;
        self.confirmed = flushed;
        tracing::debug!(written = %written, flushed = %flushed, idle, "status update sent");
        self.publish_lag();
        Ok(())
    }

    /// The confirmed position, the server's end and the lag between them, as gauges.
    fn publish_lag(&mut self) {
        use crate::metrics::{
            REPLICATION_LAG_BYTES, REPLICATION_LAG_SECONDS, SOURCE_CONFIRMED_LSN, SOURCE_SERVER_LSN,
        };
        let end = self.server_end.max(self.received);
        let lag = end.0.saturating_sub(self.confirmed.0);
        let since = if lag == 0 {
            self.behind_since = None;
            Duration::ZERO
        } else {
            self.behind_since.get_or_insert_with(Instant::now).elapsed()
        };
        SOURCE_CONFIRMED_LSN.set(self.confirmed.0 as f64);
        SOURCE_SERVER_LSN.set(end.0 as f64);
        REPLICATION_LAG_BYTES.set(lag as f64);
        REPLICATION_LAG_SECONDS.set(since.as_secs_f64());
    }
}
