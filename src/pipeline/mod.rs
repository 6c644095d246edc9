//! The one place the stages are wired together, and the hand-offs between them.
//!
//! ```text
//! source::stdin ──(chunks, cap 4)──> wal::ingest ──(handoff::SealedQueue)──> csv::stage
//!   (thread)                          (thread: WAL + batcher)                 (thread: gzip, tables ∥)
//! or source::live ─(batches, cap 4)─┘  durable LSN ──> back to source::live (status updates)
//!   (thread: the slot)
//!        ──(SegmentOutput, cap 2)──> sink::deliver (task: gate incomplete segments, submit while
//!                                    the target has room, delete WAL segments in order)
//! ```
//! Every channel is bounded and the sink takes a segment only when it has room, so a slow target
//! holds back the CSV stage; ingest then spills sealed segments (drops their batch, keeps the WAL
//! file) instead of waiting, so reading goes on and memory stays bounded by configuration.
//!
//! `run_replay` (`--stdin`) ends at the input's end; `run_live` runs until the stop signal or a
//! fatal error of the live source, which triggers the stop itself.
//!
//! Each stage's `spawn()` returns a [`stage::StageHandle`]. A run ends when the sink ends: in a
//! clean run after the input's end has flowed through; on a fatal sink error at once (the others
//! are woken and stop); after the stop signal at the end of the **drain phase**
//! ([`crate::shutdown::DRAIN_GRACE`] after the signal), during which the stages still running
//! are named every few seconds.
//!
//! When ingest stops on bad input, what was already handed on is delivered, then the WAL is
//! recovered once more (cut at the last whole transaction) and delivered again, so every
//! transaction complete before the bad line is loaded and nothing after it is.

pub mod handoff;
pub mod stage;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::batch::rebuild::KnownKeys;
use crate::batch::schema::KeySource;
use crate::config::{Ack, Config};
use crate::csv::stage::CsvStage;
use crate::csv::CsvError;
use crate::service;
use crate::shutdown::{Shutdown, DRAIN_REPORT_EVERY};
use crate::sink::deliver::{DeliverError, Delivered, Delivery};
use crate::sink::{Target, TargetError};
use crate::source::catalog::SourceCatalog;
use crate::source::decoding::Framer;
use crate::source::filter::TableFilter;
use crate::source::live::{LiveError, LiveSource};
use crate::source::stdin;
use crate::wal::ingest::{Ingest, IngestError, IngestLimits, Input, Interrupted, RunEnd};
use crate::wal::{self, Wal, WalError};
use handoff::SealedQueue;
use stage::{StageError, StageFault, StageHandle};

/// Each batch's index (with its write plan) is budgeted at this fraction of
/// `batch.max_memory_bytes`: two batches are alive at once (one filling, one being written), and
/// the rest is left for I/O buffers (input chunks, WAL and CSV buffers, gzip state) and allocator
/// slack, so the whole process stays within `max_memory_bytes`.
pub const BATCH_SHARE: u64 = 5;
/// Segment outputs the CSV stage may finish ahead of the sink.
pub const OUTPUTS_AHEAD: usize = 2;
/// After the drain deadline, how long the pipeline still waits for a stage before it leaves it
/// behind (the process exits; what it held is in the WAL).
const ABANDON_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] LiveError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("CSV stage: {0}")]
    Csv(#[from] CsvError),
    #[error(transparent)]
    Sink(#[from] DeliverError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Stage(#[from] StageFault),
    #[error("the CSV stage stopped unexpectedly")]
    CsvGone,
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error(transparent)]
    Serve(#[from] crate::metrics::serve::ServeError),
}

impl PipelineError {
    /// Only a new start recovers from it: the source was lost inside a transaction, whose first
    /// part the WAL holds until recovery drops it (`service::exec_again`).
    pub fn needs_a_new_start(&self) -> bool {
        matches!(
            self,
            PipelineError::Source(LiveError::LostInTransaction { .. })
        )
    }
}

impl<E> From<StageError<E>> for PipelineError
where
    E: std::error::Error + Into<PipelineError> + 'static,
{
    fn from(e: StageError<E>) -> Self {
        match e {
            StageError::Fault(f) => f.into(),
            StageError::Failed(e) => e.into(),
        }
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub segments_loaded: u64,
    /// The stop signal came before the end of the input: where the input was left.
    pub interrupted: Option<Interrupted>,
    /// Segments left in the WAL after the stop signal (not loaded yet: they load at the next
    /// start).
    pub segments_left: usize,
    /// The run must start again in place (`service::exec_again`), as restart number `n + 1` of
    /// a row.
    pub restart_in_place: Option<u32>,
}

/// `re_dms --stdin`: replay test_decoding text from `input` into the target, then return.
///
/// The stop signal while connecting to the source catalog or the target ends the run at once
/// (nothing of the input read, [`Summary::interrupted`] set): a warehouse that accepts
/// connections and never answers must not hold a shutdown.
pub async fn run_replay<R: Read + Send + 'static>(
    config: &Config,
    input: R,
    stop: Shutdown,
) -> Result<Summary, PipelineError> {
    let _lock = wal::lock::lock_dir(&config.wal.directory)?;
    observe(config, &stop).await?;
    let mut summary = Summary::default();
    let Some((keys, target)) = open_ends(config, &stop).await? else {
        summary.interrupted = Some(Interrupted::default());
        return Ok(summary);
    };
    // Detached: after the stop signal it may stay blocked in `read` until the process exits.
    // The input thread also does ingest's share of each row change (`wal::digest`), with the
    // same table filter.
    let digest = wal::digest::Digester::new(table_filter(config));
    let framer = Framer::new().with_digest(Box::new(digest));
    let (_input, input) = stdin::spawn(input, framer, stop.clone());
    let stages = Stages::spawn(config, &keys, target, Feed::Text(input), &stop)?;
    let (target, first) = stages.finish(&stop, &mut summary).await;
    match (first, target) {
        (Ok(()), _) => {
            if stop.is_triggered() {
                summary.segments_left = wal::segment_ids(&config.wal.directory)?.len();
            }
            Ok(summary)
        }
        // Bad input: deliver every transaction complete before it, then report it.
        (Err(e @ PipelineError::Ingest(_)), Some(target)) => {
            tracing::error!(error = %e, "ingest stopped: loading every complete transaction before it");
            let again = match Stages::spawn(config, &keys, target, Feed::Recovered, &stop) {
                Ok(stages) => stages.finish(&stop, &mut summary).await.1,
                Err(e) => Err(e),
            };
            if let Err(again) = again {
                tracing::error!(error = %again, "re-delivering the WAL after the error failed too");
            }
            Err(e)
        }
        (Err(e), _) => Err(e),
    }
}

/// `re_dms` without `--stdin`: the WAL's unloaded segments first, then the replication slot,
/// until the stop signal (or a fatal error). What is not loaded when it stops stays in the WAL
/// and loads at the next start ([`Summary::segments_left`]).
pub async fn run_live(config: &Config, stop: Shutdown) -> Result<Summary, PipelineError> {
    let _lock = wal::lock::lock_dir(&config.wal.directory)?;
    observe(config, &stop).await?;
    let mut summary = Summary::default();
    let Some((keys, target)) = open_ends(config, &stop).await? else {
        return Ok(summary);
    };
    let live = LiveSource {
        wal_dir: config.wal.directory.clone(),
        connection: config.source.connection.clone(),
        slot: config.source.slot.clone(),
        create_slot: config.source.create_slot,
        status_interval: Duration::from_secs(config.source.status_interval_secs),
    };
    let stages = Stages::spawn(config, &keys, target, Feed::Slot(live), &stop)?;
    if let Err(e) = stages.finish(&stop, &mut summary).await.1 {
        summary.restart_in_place = restart_wait(e, &stop).await?;
    }
    summary.segments_left = wal::segment_ids(&config.wal.directory)?.len();
    Ok(summary)
}

/// After an error only a new start recovers from ([`PipelineError::needs_a_new_start`]): the
/// wait before restarting in place (the caller execs; the WAL lock is held until then), as
/// restart number `n + 1` of a row. `None`: a stop was asked for (SIGTERM/SIGINT, before or
/// during the wait), so the run just stops; recovery runs at the next start. Any other error,
/// or one restart too many ([`service::restart_budget`]), is returned as the error.
async fn restart_wait(e: PipelineError, stop: &Shutdown) -> Result<Option<u32>, PipelineError> {
    let n = match service::restart_budget() {
        Some(n) if e.needs_a_new_start() => n,
        _ => return Err(e),
    };
    let wait = service::restart_backoff(n);
    tracing::warn!(
        error = %crate::error_chain(&e),
        restarts_in_a_row = n + 1,
        wait_ms = wait.as_millis() as u64,
        "restarting in place (same PID) so that recovery drops the partial transaction"
    );
    service::status("restarting in place to recover the WAL");
    tokio::select! {
        biased;
        () = stop.requested() => Ok(None),
        // systemd's watchdog task (`observe`) keeps pinging meanwhile.
        () = tokio::time::sleep(wait) => Ok(Some(n)),
    }
}

/// What watches the run, started before anything else records a figure: the metrics
/// recorder (`[metrics]`), `/metrics` and `/healthz`, the WAL directory's sampler, and systemd's
/// watchdog (READY comes from the live source once it streams, STOPPING from the signal
/// handler; the watchdog pings while the runtime turns, so a wedged process is restarted, never
/// one that is only waiting for a source or warehouse to come back).
async fn observe(config: &Config, stop: &Shutdown) -> Result<(), PipelineError> {
    let exporters = crate::metrics::install(&config.metrics)?;
    if let Some(prometheus) = exporters.prometheus {
        let limits = crate::metrics::health::HealthLimits {
            segment_age: Duration::from_secs(config.metrics.healthz_max_segment_age_secs),
            source_silent: Duration::from_secs(config.metrics.source_silent_secs),
        };
        crate::metrics::serve::spawn(&config.metrics.listen, prometheus, limits).await?;
    }
    crate::metrics::RESTARTS_IN_PLACE.set(f64::from(service::restarts_so_far()));
    crate::metrics::health::spawn_wal_sampler(config.wal.directory.clone(), stop.clone());
    crate::service::spawn_watchdog(|| true);
    Ok(())
}

/// Opens the two ends: the source catalog (for keys and types) and the target. `None` when the
/// stop signal came first.
async fn open_ends(
    config: &Config,
    stop: &Shutdown,
) -> Result<Option<(KnownKeys, Target)>, PipelineError> {
    let catalog = tokio::select! {
        biased;
        // The stop signal wins over a connection attempt that may never end.
        () = stop.wait() => return Ok(None),
        c = SourceCatalog::open(&config.source.connection, Some(&config.wal.directory)) => Arc::new(c),
    };
    let target = tokio::select! {
        biased;
        () = stop.wait() => return Ok(None),
        t = Target::from_config(config, Arc::clone(&catalog), stop) => t?,
    };
    Ok(Some((known_keys(config, &catalog), target)))
}

/// Keys known before the stream shows any: the source catalog's, overridden by
/// `[tables."s.t"] primary_key` (README, "Primary keys": config, then catalog, then the stream);
/// and the catalog to ask, from the stage threads, for a table created or renamed since.
fn known_keys(config: &Config, catalog: &Arc<SourceCatalog>) -> KnownKeys {
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
    if config.source.connection.trim().is_empty() {
        return KnownKeys::of(keys);
    }
    let catalog = Arc::clone(catalog);
    let runtime = tokio::runtime::Handle::current();
    // Called on the ingest and CSV threads (never on a runtime thread), at a segment's seal,
    // once per new table without a key: one stamp query, a full read when the catalog moved.
    let ask = move |schema: &str, table: &str| {
        runtime.block_on(catalog.refresh(false));
        let (schema, table) = catalog
            .current_name(schema, table)
            .unwrap_or_else(|| (schema.to_string(), table.to_string()));
        catalog.get()?.key_for(&schema, &table)
    };
    KnownKeys {
        keys,
        ask_catalog: Some(Arc::new(ask)),
    }
}

/// The tables `[source] include` / `exclude` take.
fn table_filter(config: &Config) -> TableFilter {
    TableFilter::new(&config.source.include, &config.source.exclude)
}

fn limits(config: &Config) -> IngestLimits {
    IngestLimits {
        segment_max_bytes: config.wal.segment_max_bytes,
        segment_max_age: Duration::from_secs(config.wal.segment_max_age_secs),
        batch_max_memory: usize::try_from(config.batch.max_memory_bytes / BATCH_SHARE)
            .unwrap_or(usize::MAX),
        spill_after: handoff::SPILL_AFTER,
    }
}

/// Where a pass's input comes from, after what the WAL holds.
enum Feed {
    /// Nothing more: only the segments recovery found.
    Recovered,
    /// `--stdin` text in chunks.
    Text(Receiver<Input>),
    /// The replication slot (the live source stage).
    Slot(LiveSource),
}

/// One pass over the WAL: ingest (recovery first, then the input if any), the CSV stage and the
/// sink, running.
struct Stages {
    /// The live source, when the input is a replication slot.
    source: Option<StageHandle<(), LiveError>>,
    ingest: StageHandle<RunEnd, IngestError>,
    csv: StageHandle<(), CsvError>,
    sink: StageHandle<Delivered, DeliverError>,
    queue: Arc<SealedQueue>,
}

impl Stages {
    fn spawn(
        config: &Config,
        keys: &KnownKeys,
        target: Target,
        feed: Feed,
        stop: &Shutdown,
    ) -> Result<Self, PipelineError> {
        let wal_dir = config.wal.directory.clone();
        // The spool is disposable: whatever a previous run left there is rebuilt from the WAL.
        let spool_root = wal_dir.join("spool");
        match std::fs::remove_dir_all(&spool_root) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(PipelineError::Io {
                    path: spool_root,
                    source: e,
                });
            }
            _ => {}
        }
        let (wal, recovery) = Wal::open(&wal_dir)?;
        if !recovery.segments.is_empty() {
            tracing::warn!(
                segments = recovery.segments.len(),
                "WAL holds segments not yet confirmed by the target: re-delivering them"
            );
        }
        let limits = limits(config);
        let batch_max_memory = limits.batch_max_memory;
        let queue = Arc::new(SealedQueue::default());
        let (out_tx, out_rx) = tokio::sync::mpsc::channel(OUTPUTS_AHEAD);
        let ingest = Ingest::new(
            wal,
            &recovery,
            keys.clone(),
            limits,
            Arc::clone(&queue),
            stop.clone(),
        )
        .with_filter(table_filter(config));
        // Every COMMIT up to the WAL's last is loaded when recovery left no segment behind.
        let loaded_lsn = Arc::new(AtomicU64::new(if recovery.segments.is_empty() {
            recovery.last_commit_lsn.0
        } else {
            0
        }));
        let (source, input) = match feed {
            Feed::Recovered => (None, None),
            Feed::Text(rx) => (None, Some(rx)),
            Feed::Slot(live) => {
                let confirmable = match config.source.ack {
                    Ack::Wal => Arc::clone(&ingest.durable_lsn),
                    Ack::Loaded => Arc::clone(&loaded_lsn),
                };
                let (handle, rx) = live.spawn(recovery.last_commit_lsn, confirmable, stop.clone());
                (Some(handle), Some(rx))
            }
        };
        Ok(Self {
            ingest: ingest.spawn(recovery.segments, input),
            source,
            csv: CsvStage {
                queue: Arc::clone(&queue),
                out: out_tx,
                spool_root,
                known_keys: keys.clone(),
                batch_max_memory,
            }
            .spawn(),
            sink: Delivery::spawn(target, out_rx, wal_dir, loaded_lsn, stop.clone()),
            queue,
        })
    }

    /// Waits for the sink to end, then for the others, and says how the pass went; gives the
    /// target back unless the sink failed.
    async fn finish(
        mut self,
        stop: &Shutdown,
        summary: &mut Summary,
    ) -> (Option<Target>, Result<(), PipelineError>) {
        let mut others: Vec<&dyn Running> = vec![&self.ingest, &self.csv];
        if let Some(source) = &self.source {
            others.push(source);
        }
        drain_wait(&mut self.sink, &others, stop).await;
        let delivered = self.sink.wait().await;
        if delivered.is_err() || stop.is_triggered() {
            // The sink ended early: stop reading, and wake the CSV stage and ingest wherever they
            // wait, so that the error is reported now, not at the next input.
            stop.trigger();
            self.queue.consumer_gone();
        }
        let csv = match drain_wait(&mut self.csv, &[&self.ingest], stop).await {
            true => Some(self.csv.wait().await),
            false => None,
        };
        let ingest = match drain_wait(&mut self.ingest, &[], stop).await {
            true => Some(self.ingest.wait().await),
            false => None,
        };
        // A live source that failed triggered the stop: its error is the run's.
        let mut source_failed = None;
        if let Some(mut source) = self.source.take() {
            // Everything downstream has ended (e.g. ingest failed on bad input): the source
            // must stop too, or it would wait for its next COMMIT to notice.
            stop.trigger();
            if drain_wait(&mut source, &[], stop).await {
                source_failed = source.wait().await.err();
            }
        }
        let delivered = match delivered {
            Ok(d) => d,
            Err(e) => return (None, Err(e.into())),
        };
        summary.segments_loaded += delivered.segments_loaded;
        let target = Some(delivered.target);
        let result = match source_failed {
            Some(e) => Err(e.into()),
            None => outcome(delivered.tables_stopped, csv, ingest, stop, summary),
        };
        (target, result)
    }
}

/// How a pass ended, from the sink's, the CSV stage's and ingest's endings (`None`: left behind
/// at the end of the drain phase).
fn outcome(
    tables_stopped: Option<TargetError>,
    csv: Option<Result<(), StageError<CsvError>>>,
    ingest: Option<Result<RunEnd, StageError<IngestError>>>,
    stop: &Shutdown,
    summary: &mut Summary,
) -> Result<(), PipelineError> {
    let bad_input = matches!(
        ingest,
        Some(Err(StageError::Failed(ref e))) if !matches!(e, IngestError::DownstreamClosed)
    );
    if let Some(e) = tables_stopped {
        if !bad_input {
            return Err(e.into());
        }
        // Tables stopped and the input was bad: the bad line is the error to report (and its
        // recovery pass must run); the stopped tables were logged when they stopped.
        tracing::error!(error = %e, "tables stopped during this run");
    }
    if let Some(csv) = csv {
        csv?;
    }
    match ingest {
        Some(Ok(RunEnd::Eof)) => Ok(()),
        Some(Ok(RunEnd::Stopped(at))) => {
            summary.interrupted = Some(at);
            Ok(())
        }
        // On the stop signal the sink ends first; ingest then finds the queue closed while it
        // still had input to hand on (or was left behind in the drain phase).
        Some(Err(StageError::Failed(IngestError::DownstreamClosed))) | None
            if stop.is_triggered() =>
        {
            summary.interrupted.get_or_insert_with(Interrupted::default);
            Ok(())
        }
        Some(Err(StageError::Failed(IngestError::DownstreamClosed))) | None => {
            Err(PipelineError::CsvGone)
        }
        Some(Err(e)) => Err(e.into()),
    }
}

/// What the drain phase reports about a stage.
trait Running {
    fn name(&self) -> &'static str;
    fn is_finished(&self) -> bool;
}

impl<T: Send + 'static, E: std::error::Error + Send + 'static> Running for StageHandle<T, E> {
    fn name(&self) -> &'static str {
        StageHandle::name(self)
    }
    fn is_finished(&self) -> bool {
        StageHandle::is_finished(self)
    }
}

/// Waits for `stage` to end. After the stop signal this is the drain phase: every
/// [`DRAIN_REPORT_EVERY`] it names the stages still running (`stage` and `others`); shortly after
/// the drain deadline it gives up on `stage` (false): the process exits without it, and what it
/// held is in the WAL.
async fn drain_wait<T, E>(
    stage: &mut StageHandle<T, E>,
    others: &[&dyn Running],
    stop: &Shutdown,
) -> bool
where
    T: Send + 'static,
    E: std::error::Error + Send + 'static,
{
    let mut report = tokio::time::interval(DRAIN_REPORT_EVERY);
    report.reset();
    loop {
        let abandon = stop.drain_deadline().map(|d| d + ABANDON_AFTER);
        tokio::select! {
            biased;
            () = stage.finished() => return true,
            // Not draining yet: the stop signal starts the drain phase.
            () = stop.wait(), if abandon.is_none() => report.reset(),
            _ = report.tick(), if abandon.is_some() => {
                let running: Vec<&str> = std::iter::once(&*stage as &dyn Running)
                    .chain(others.iter().copied())
                    .filter(|s| !s.is_finished())
                    .map(|s| s.name())
                    .collect();
                tracing::warn!(stages = ?running, "draining: still waiting for these stages");
            }
            () = tokio::time::sleep_until(abandon.unwrap_or_else(tokio::time::Instant::now)),
                if abandon.is_some() => {
                tracing::error!(
                    stage = stage.name(),
                    "the stage did not stop within the drain deadline; exiting without it \
                     (what it held is in the WAL)"
                );
                return false;
            }
        }
    }
}
