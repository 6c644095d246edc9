//! The sink stage's run loop: hands segment outputs to the target in order, and deletes WAL
//! segments in order as the target reports them loaded.
//!
//! Invariants:
//! - an incomplete segment (closed inside a transaction) is held until the complete segment
//!   that ends its transaction arrives; then both go, in order;
//! - a segment is submitted only while the target has room, so a slow target holds back the CSV
//!   stage (backpressure), never memory;
//! - a WAL segment is deleted only once it and every segment before it are loaded;
//! - the loaded LSN (`ack = "loaded"`, see [`crate::source::live`]) is the last LSN of the
//!   newest complete segment (one that ends at a transaction boundary) deleted that way: every
//!   transaction committed at or before it is in the target;
//! - after the stop signal nothing more is submitted; the segments in flight get until the
//!   drain deadline ([`crate::shutdown::DRAIN_GRACE`]), then are abandoned (a Redshift
//!   transaction rolls back; the ledger keeps exactly-once) and stay in the WAL.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{SegmentDone, Target, TargetError};
use crate::lsn::Lsn;
use crate::metrics;
use crate::pipeline::handoff::SegmentOutput;
use crate::pipeline::stage::StageHandle;
use crate::shutdown::Shutdown;
use crate::wal::{self, WalError};

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("removing the spool directory {path}: {source}")]
    Spool {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How the sink stage ended without a fatal error.
pub struct Delivered {
    /// Given back for another pass over the WAL (after bad input).
    pub target: Target,
    pub segments_loaded: u64,
    /// Tables a definite error stopped this run (their segments stay in the WAL).
    pub tables_stopped: Option<TargetError>,
}

pub struct Delivery {
    target: Target,
    input: mpsc::Receiver<SegmentOutput>,
    input_open: bool,
    wal_dir: PathBuf,
    stop: Shutdown,
    draining: bool,
    /// Incomplete segments waiting for the complete one that ends their transaction.
    held: Vec<SegmentOutput>,
    /// Segments ready to go, waiting for room in the target.
    ready: VecDeque<SegmentOutput>,
    /// Submitted segments in order.
    submitted: BTreeMap<u64, Submitted>,
    segments_loaded: u64,
    /// The loaded LSN (see the module docs), raised as segments are deleted.
    loaded_lsn: Arc<AtomicU64>,
}

/// A segment handed to the target.
struct Submitted {
    /// `None` while running, then whether every table loaded.
    loaded: Option<bool>,
    /// Its last LSN, when it ends at a transaction boundary.
    commit: Option<Lsn>,
}

impl Delivery {
    /// Runs as a task until the input is closed and everything submitted has finished, a fatal
    /// error, or the end of the drain phase after the stop signal.
    pub fn spawn(
        target: Target,
        input: mpsc::Receiver<SegmentOutput>,
        wal_dir: PathBuf,
        loaded_lsn: Arc<AtomicU64>,
        stop: Shutdown,
    ) -> StageHandle<Delivered, DeliverError> {
        let delivery = Self {
            target,
            input,
            input_open: true,
            wal_dir,
            stop,
            draining: false,
            held: Vec::new(),
            ready: VecDeque::new(),
            submitted: BTreeMap::new(),
            segments_loaded: 0,
            loaded_lsn,
        };
        StageHandle::task("sink", delivery.run())
    }

    async fn run(mut self) -> Result<Delivered, DeliverError> {
        loop {
            if !self.draining && self.stop.is_triggered() {
                self.start_draining();
            }
            if self.draining && self.drained() {
                break;
            }
            while self.target.has_room() {
                let Some(out) = self.ready.pop_front() else {
                    break;
                };
                let commit = out.complete.then_some(out.manifest.last_lsn);
                let entry = Submitted {
                    loaded: None,
                    commit,
                };
                self.submitted.insert(out.segment, entry);
                self.target.submit(out).await?;
            }
            if !self.input_open && self.ready.is_empty() && self.target.is_idle() {
                break;
            }
            self.next_event().await?;
        }
        self.report_kept();
        Ok(Delivered {
            tables_stopped: self.target.stopped_error(),
            target: self.target,
            segments_loaded: self.segments_loaded,
        })
    }

    /// Waits for one thing to happen and handles it.
    async fn next_event(&mut self) -> Result<(), DeliverError> {
        let deadline = self.stop.drain_deadline();
        tokio::select! {
            biased;
            // Finished segments first: they make room and let the WAL shrink.
            done = self.target.next_done(), if !self.target.is_idle() => self.finished(done?)?,
            // The next segment from the CSV stage, unless some already wait for room (then the
            // CSV stage waits too: backpressure).
            out = self.input.recv(), if self.input_open && self.ready.is_empty() => {
                self.received(out);
            }
            // The stop signal starts the drain phase (at the top of the loop).
            () = self.stop.wait(), if !self.draining => {}
            // The drain deadline (checked at the top of the loop).
            () = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)),
                if self.draining => {}
        }
        Ok(())
    }

    fn received(&mut self, out: Option<SegmentOutput>) {
        match out {
            Some(out) => {
                let complete = out.complete;
                self.held.push(out);
                if complete {
                    self.ready.extend(self.held.drain(..));
                }
            }
            None => self.input_open = false,
        }
    }

    fn start_draining(&mut self) {
        self.draining = true;
        let waiting = self.ready.len() + self.held.len();
        self.ready.clear();
        self.held.clear();
        self.input_open = false;
        tracing::info!(
            not_submitted = waiting,
            "draining: waiting for the segments in flight; the rest stays in the WAL"
        );
    }

    /// In the drain phase: whether the sink is done (idle, or out of time).
    fn drained(&self) -> bool {
        if self.target.is_idle() {
            return true;
        }
        let past = self
            .stop
            .drain_deadline()
            .is_some_and(|d| tokio::time::Instant::now() >= d);
        if past {
            tracing::warn!(
                "drain deadline reached: the segments still in flight are abandoned (rolled back); they stay in the WAL"
            );
        }
        past
    }

    fn finished(&mut self, done: SegmentDone) -> Result<(), DeliverError> {
        let out = &done.out;
        if out.dir.exists() {
            std::fs::remove_dir_all(&out.dir).map_err(|source| DeliverError::Spool {
                path: out.dir.clone(),
                source,
            })?;
        }
        if let Some(entry) = self.submitted.get_mut(&out.segment) {
            entry.loaded = Some(done.loaded);
        }
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
        self.remove_loaded_prefix()
    }

    /// Deletes the WAL segments at the front of `submitted` that are loaded, in order: a
    /// segment goes only once it and every segment before it are in the target.
    fn remove_loaded_prefix(&mut self) -> Result<(), DeliverError> {
        while let Some(entry) = self.submitted.first_entry() {
            if entry.get().loaded != Some(true) {
                break;
            }
            wal::remove_segment(&self.wal_dir, *entry.key())?;
            if let Some(commit) = entry.remove().commit {
                self.loaded_lsn.fetch_max(commit.0, Ordering::AcqRel);
            }
            metrics::SEGMENTS_LOADED.inc();
            self.segments_loaded += 1;
        }
        Ok(())
    }

    fn report_kept(&self) {
        if !self.held.is_empty() {
            tracing::warn!(
                segments = self.held.len(),
                "segments closed inside a transaction that never completed stay in the WAL"
            );
        }
        if let Some(kept) = self.submitted.keys().next() {
            tracing::warn!(
                from_segment = kept,
                segments = self.submitted.len(),
                "segments kept in the WAL (a table in them did not load, or the run stopped first)"
            );
        }
    }
}
