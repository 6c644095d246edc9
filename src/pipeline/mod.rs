//! The one place the stages are wired together.
//!
//! ```text
//! input thread ──(chunks, cap 4)──> ingest thread ──(sealed queue)──> CSV thread
//!   (stdin)                        (WAL + batcher)                            (gzip, tables ∥)
//!        ──(segment outputs, cap 2)──> delivery loop: gate (incomplete segments wait for the
//!                                      next complete one) -> target (Redshift: one lane per
//!                                      table, a few segments in flight) -> delete WAL segments
//!                                      in order as they are loaded
//! ```
//! Every channel is bounded and the target takes a segment only when it has room, so a slow
//! target holds back the CSV stage; ingest then spills sealed segments (drops their batch, keeps
//! the WAL file) instead of waiting, so reading goes on and memory stays bounded by
//! configuration; the CSV stage rebuilds spilled batches from disk when it gets to them.
//!
//! When ingest stops on bad input (or a stop request), what was already handed on is delivered,
//! then the WAL is recovered once more (cut at the last whole transaction) and re-delivered, so
//! every transaction complete before the bad line is loaded and nothing after it is.

pub mod handoff;

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::Duration;

use crate::batch::schema::KeySource;
use crate::config::Config;
use crate::csv::{self, CsvError, SegmentOutput};
use crate::metrics;
use crate::pipeline::handoff::{ConsumerGuard, Entry, ProducerGuard, SealedQueue};
use crate::shutdown::Shutdown;
use crate::sink::redshift::load::LoadError;
use crate::sink::{Target, TargetError};
use crate::source::catalog::SourceCatalog;
use crate::wal::ingest::{self, Ingest, IngestError, IngestLimits, Input, Interrupted, RunEnd};
use crate::wal::{self, WalError};

/// Each batch's index (with its write plan) is budgeted at this fraction of
/// `batch.max_memory_bytes`: two batches are alive at once (one filling, one being written), and
/// the rest is left for I/O buffers (input chunks, WAL and CSV buffers, gzip state) and allocator
/// slack, so the whole process stays within `max_memory_bytes`.
pub const BATCH_SHARE: u64 = 5;
/// After a stop request, how long delivery waits for the segments in flight.
pub const STOP_GRACE: Duration = Duration::from_secs(20);
/// Name of the lock file that keeps two processes off one WAL directory.
pub const LOCK_FILE: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("CSV stage: {0}")]
    Csv(#[from] CsvError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("WAL directory {path} is in use by another re_dms process")]
    Locked { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("a pipeline thread panicked: {0}")]
    Panic(String),
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub segments_loaded: u64,
    /// A stop request came before the end of the input: where the input was left.
    pub interrupted: Option<Interrupted>,
    /// Segments left in the WAL after a stop request (not loaded yet: they load at the next
    /// start).
    pub segments_left: usize,
}

/// Holds the WAL directory's lock for the life of the run.
pub struct WalLock {
    _file: std::fs::File,
}

pub fn lock_wal_dir(dir: &Path) -> Result<WalLock, PipelineError> {
    let io = |source| PipelineError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| PipelineError::Io {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(WalLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(PipelineError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(PipelineError::Io { path, source }),
    }
}

fn limits(config: &Config) -> IngestLimits {
    IngestLimits {
        segment_max_bytes: config.wal.segment_max_bytes,
        segment_max_age: Duration::from_secs(config.wal.segment_max_age_secs),
        batch_max_memory: usize::try_from(config.batch.max_memory_bytes / BATCH_SHARE)
            .unwrap_or(usize::MAX),
        spill_after: crate::pipeline::handoff::SPILL_AFTER,
    }
}

/// Keys known before the stream shows any: the source catalog's, overridden by
/// `[tables."s.t"] primary_key` (interface.md: config, then catalog, then the stream).
fn known_keys(
    config: &Config,
    catalog: &SourceCatalog,
) -> BTreeMap<String, (Vec<String>, KeySource)> {
    let mut keys: BTreeMap<String, (Vec<String>, KeySource)> = catalog
        .get()
        .map(|c| c.primary_keys())
        .unwrap_or_default()
        .into_iter()
        .map(|(table, key)| (table, (key, KeySource::Catalog)))
        .collect();
    for (table, t) in &config.tables {
        if !t.primary_key.is_empty() {
            keys.insert(table.clone(), (t.primary_key.clone(), KeySource::Config));
        }
    }
    keys
}

/// `re_dms --stdin`: replay test_decoding text from `input` into the target, then return.
///
/// A stop request while connecting to the source catalog or the target ends the run at once
/// (nothing of the input read, [`Summary::interrupted`] set): a warehouse that accepts
/// connections and never answers must not hold a shutdown.
pub async fn run_replay<R: Read + Send + 'static>(
    config: &Config,
    input: R,
    stop: Arc<Shutdown>,
) -> Result<Summary, PipelineError> {
    let _lock = lock_wal_dir(&config.wal.directory)?;
    let stopped_at_start = Summary {
        interrupted: Some(Interrupted::default()),
        ..Summary::default()
    };
    let catalog = tokio::select! {
        biased;
        // A stop request wins over a connection attempt that may never end.
        () = stop.wait() => return Ok(stopped_at_start),
        c = SourceCatalog::open(&config.source.connection) => Arc::new(c),
    };
    let mut target = tokio::select! {
        biased;
        () = stop.wait() => return Ok(stopped_at_start),
        t = Target::from_config(config, Arc::clone(&catalog)) => t?,
    };
    let (input_tx, input_rx) = sync_channel::<Input>(4);
    let reader_stop = stop.clone();
    std::thread::Builder::new()
        .name("re_dms-input".into())
        .spawn(move || crate::source::stdin::read_input(input, &input_tx, &reader_stop))
        .map_err(|e| PipelineError::Panic(e.to_string()))?;

    let mut summary = Summary::default();
    let first = run_stages(
        config,
        &catalog,
        &mut target,
        Some(input_rx),
        stop.clone(),
        &mut summary,
    )
    .await;
    match first {
        Ok(()) => {
            if stop.is_triggered() {
                summary.segments_left = wal::segment_ids(&config.wal.directory)?.len();
            }
            Ok(summary)
        }
        Err(e) => {
            // Deliver what is complete on disk before reporting the error.
            if matches!(e, PipelineError::Ingest(_)) {
                tracing::error!(error = %e, "ingest stopped: loading every complete transaction before it");
                if let Err(again) =
                    run_stages(config, &catalog, &mut target, None, stop, &mut summary).await
                {
                    tracing::error!(error = %again, "re-delivering the WAL after the error failed too");
                }
            }
            Err(e)
        }
    }
}

/// Runs ingest (recovery first, then `input` if given), the CSV stage and delivery until all
/// are done.
async fn run_stages(
    config: &Config,
    catalog: &SourceCatalog,
    target: &mut Target,
    input: Option<Receiver<Input>>,
    stop: Arc<Shutdown>,
    summary: &mut Summary,
) -> Result<(), PipelineError> {
    let wal_dir = config.wal.directory.clone();
    let spool_root = wal_dir.join("spool");
    // The spool is disposable: whatever a previous run left there is rebuilt from the WAL.
    match std::fs::remove_dir_all(&spool_root) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(PipelineError::Io {
                path: spool_root,
                source: e,
            });
        }
        _ => {}
    }
    let (wal, recovery) = ingest::open_wal(&wal_dir)?;
    // Ingest hands a sealed batch over only when the CSV stage takes it (or spills it to disk
    // when the CSV stage is stuck behind the target), so at most two batches exist at once (one
    // filling, one being written): the memory bound.
    let queue = Arc::new(SealedQueue::default());
    let queue_for_errors = Arc::clone(&queue);
    let stop_stages = Arc::clone(&stop);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<SegmentOutput>(2);

    let keys = known_keys(config, catalog);
    let limits = limits(config);
    let batch_max_memory = limits.batch_max_memory;
    let mut ingest = Ingest::new(
        wal,
        &recovery,
        keys.clone(),
        limits,
        Arc::clone(&queue),
        stop,
    );
    let segments = recovery.segments;
    let producer = Arc::clone(&queue);
    let ingest_thread = std::thread::Builder::new()
        .name("re_dms-ingest".into())
        .spawn(move || -> Result<RunEnd, IngestError> {
            let _done = ProducerGuard(&producer);
            ingest.replay(&segments)?;
            match input {
                Some(rx) => ingest.run(&rx),
                None => Ok(RunEnd::Eof),
            }
        })
        .map_err(|e| PipelineError::Panic(e.to_string()))?;

    let csv_thread = std::thread::Builder::new()
        .name("re_dms-csv".into())
        .spawn(move || -> Result<(), PipelineError> {
            let _gone = ConsumerGuard(&queue);
            while let Some(entry) = queue.take() {
                let sealed = match entry {
                    Entry::Batched(sealed) => sealed,
                    Entry::Spilled(spilled) => {
                        let _g =
                            tracing::info_span!("rebatch", segment = spilled.file.id).entered();
                        ingest::rebatch_spilled(spilled, &keys, batch_max_memory)?
                    }
                };
                let segment = sealed.file.id;
                let span = tracing::info_span!("csv", segment);
                let _g = span.enter();
                let out = csv::write_segment(sealed, &spool_root)?;
                if out_tx.blocking_send(out).is_err() {
                    tracing::debug!(segment, "delivery stopped; CSV stage ends");
                    break;
                }
            }
            Ok(())
        })
        .map_err(|e| PipelineError::Panic(e.to_string()))?;

    let delivered = deliver_loop(target, &mut out_rx, &wal_dir, summary, &stop_stages).await;
    let stopping = stop_stages.is_triggered();
    let tables_stopped = matches!(
        delivered,
        Err(PipelineError::Target(TargetError::Redshift(
            LoadError::Stopped(_)
        )))
    );
    if (delivered.is_err() && !tables_stopped) || stopping {
        // Delivery ended early (fatal target error): stop reading, and wake the CSV stage and
        // ingest wherever they wait, so that the error is reported now, not at the next input.
        stop_stages.trigger();
        queue_for_errors.consumer_gone();
    }
    drop(out_rx);
    let csv_res = join(csv_thread)?;
    let ingest_res = join(ingest_thread)?;
    match (delivered, &ingest_res) {
        // Tables stopped and the input was bad: the bad line is the error to report (and its
        // recovery pass must run); the stopped tables were logged when they stopped.
        (Err(e), Err(ingest_err))
            if tables_stopped && !matches!(ingest_err, IngestError::DownstreamClosed) =>
        {
            tracing::error!(error = %e, "tables stopped during this run");
        }
        // Otherwise the first real cause wins: a target failure makes ingest see a closed queue.
        (Err(e), _) => return Err(e),
        (Ok(()), _) => {}
    }
    csv_res?;
    match ingest_res {
        // On a stop request delivery ends first; ingest then finds the queue closed while it
        // still had input to hand on.
        Err(IngestError::DownstreamClosed) if stopping => {
            summary.interrupted.get_or_insert_with(Interrupted::default);
            Ok(())
        }
        Err(IngestError::DownstreamClosed) => Err(PipelineError::Panic(
            "the CSV stage stopped unexpectedly".into(),
        )),
        Ok(RunEnd::Stopped(at)) => {
            summary.interrupted = Some(at);
            Ok(())
        }
        Ok(RunEnd::Eof) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn join<T>(h: std::thread::JoinHandle<T>) -> Result<T, PipelineError> {
    h.join().map_err(|p| {
        PipelineError::Panic(
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default(),
        )
    })
}

/// Submits segment outputs in order (an incomplete segment waits for the next complete one) while
/// the target has room, and deletes WAL segments in order as the target reports them loaded.
///
/// On a stop request it submits nothing more and waits at most [`STOP_GRACE`] for the segments
/// in flight (a target in an outage would otherwise hold the shutdown forever); whatever is not
/// loaded stays in the WAL for the next start (an abandoned load rolls back; the ledger keeps
/// exactly-once).
async fn deliver_loop(
    target: &mut Target,
    rx: &mut tokio::sync::mpsc::Receiver<SegmentOutput>,
    wal_dir: &Path,
    summary: &mut Summary,
    stop: &Shutdown,
) -> Result<(), PipelineError> {
    let mut stop_deadline: Option<tokio::time::Instant> = None;
    // Incomplete segments waiting for the complete one that ends their transaction.
    let mut held: Vec<SegmentOutput> = Vec::new();
    // Gated segments waiting for room in the target.
    let mut ready: VecDeque<SegmentOutput> = VecDeque::new();
    // Submitted segments in order: None while running, then whether every table loaded.
    let mut submitted: BTreeMap<u64, Option<bool>> = BTreeMap::new();
    let mut input_open = true;
    loop {
        if stop_deadline.is_none() && stop.is_triggered() {
            stop_deadline = Some(tokio::time::Instant::now() + STOP_GRACE);
            let waiting = ready.len() + held.len();
            ready.clear();
            held.clear();
            input_open = false;
            tracing::info!(
                not_submitted = waiting,
                grace_secs = STOP_GRACE.as_secs(),
                "stop requested: waiting for the segments in flight; the rest stays in the WAL"
            );
        }
        if let Some(deadline) = stop_deadline {
            if target.is_idle() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    "stop: segments still in flight after the grace period are abandoned (rolled back); they stay in the WAL"
                );
                break;
            }
        }
        while target.has_room() {
            let Some(out) = ready.pop_front() else { break };
            submitted.insert(out.segment, None);
            target.submit(out).await?;
        }
        if !input_open && ready.is_empty() && target.is_idle() {
            break;
        }
        tokio::select! {
            biased;
            // Finished segments first: they make room and let the WAL shrink.
            done = target.next_done(), if !target.is_idle() => {
                let done = done?;
                let out = &done.out;
                if out.dir.exists() {
                    std::fs::remove_dir_all(&out.dir).map_err(|source| PipelineError::Io {
                        path: out.dir.clone(),
                        source,
                    })?;
                }
                submitted.insert(out.segment, Some(done.loaded));
                if done.loaded {
                    tracing::info!(
                        segment = out.segment,
                        changes = out.manifest.changes,
                        tables = out.manifest.tables.len(),
                        first_lsn = %out.manifest.first_lsn,
                        last_lsn = %out.manifest.last_lsn,
                        "segment loaded"
                    );
                }
                remove_loaded_prefix(&mut submitted, wal_dir, summary)?;
            }
            // The next segment from the CSV stage, unless some already wait for room (then the
            // CSV stage waits too: backpressure).
            out = rx.recv(), if input_open && ready.is_empty() => match out {
                Some(out) => {
                    let complete = out.complete;
                    held.push(out);
                    if complete {
                        ready.extend(held.drain(..));
                    }
                }
                None => input_open = false,
            },
            // A stop request starts the grace period; then its deadline is checked each tick.
            () = stop.wait(), if stop_deadline.is_none() => {}
            _ = tokio::time::sleep_until(stop_deadline.unwrap_or_else(tokio::time::Instant::now)),
                if stop_deadline.is_some() => {}
        }
    }
    if !held.is_empty() {
        tracing::warn!(
            segments = held.len(),
            "segments closed inside a transaction that never completed stay in the WAL"
        );
    }
    if let Some(kept) = submitted.keys().next() {
        tracing::warn!(
            from_segment = kept,
            segments = submitted.len(),
            "segments kept in the WAL (a table in them did not load, or the run stopped first)"
        );
    }
    match target.stopped_error() {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Deletes the WAL segments at the front of `submitted` that are loaded, in order: a segment
/// goes only once it and every segment before it are in the target.
fn remove_loaded_prefix(
    submitted: &mut BTreeMap<u64, Option<bool>>,
    wal_dir: &Path,
    summary: &mut Summary,
) -> Result<(), PipelineError> {
    while let Some(entry) = submitted.first_entry() {
        if *entry.get() != Some(true) {
            break;
        }
        let segment = *entry.key();
        wal::remove_segment(wal_dir, segment)?;
        entry.remove();
        metrics::SEGMENTS_LOADED.inc();
        summary.segments_loaded += 1;
    }
    Ok(())
}
