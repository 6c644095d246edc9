//! The hand-offs between stages: what flows from ingest to the CSV stage ([`SealedSegment`],
//! through the [`SealedQueue`]) and from the CSV stage to the sink ([`SegmentOutput`], through
//! a bounded channel the pipeline creates).
//!
//! Ingest to CSV: sealed segments, in order, either with their batch in memory or spilled (only
//! the segment's id; its batch is rebuilt from the WAL file by [`Entry::into_sealed`]).
//!
//! Why: a slow or dead target must hold back only WAL cleanup, never the source. Ingest offers
//! each sealed batch; when the CSV stage does not take it within [`SPILL_AFTER`] (it is blocked
//! behind the target), ingest drops the in-memory batch, queues the segment's id and goes on
//! reading into new segments. Once anything is spilled, every later segment is spilled too until
//! the queue drains, so segments stay in order. The CSV stage re-batches spilled segments from
//! disk (the segment's snapshot record gives the schema it started with).
//!
//! Invariants:
//! - at most one batch lives here, and only while the CSV stage is about to take it: memory
//!   stays at two batches (one filling in ingest, one in the CSV stage), however long the
//!   target is away; the spilled backlog costs a few bytes per segment;
//! - entries come out in the order they went in;
//! - when the consumer goes away, [`SealedQueue::offer`] fails (ingest stops); when the producer
//!   is done, [`SealedQueue::take`] drains what is queued, then returns `None`.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use std::path::PathBuf;

use crate::batch::rebuild::{rebuild, KnownKeys, RebuildError};
use crate::batch::Batch;
use crate::csv::manifest::Manifest;
use crate::lsn::Lsn;
use crate::metrics;
use crate::wal::SegmentFile;

/// How long ingest waits for the CSV stage to take a batch before it spills the segment. A
/// healthy CSV stage takes one within a second or two (it writes one segment at a time).
pub const SPILL_AFTER: Duration = Duration::from_secs(5);

/// A closed segment and its batch, on the way to the CSV stage.
#[derive(Debug)]
pub struct SealedSegment {
    pub file: SegmentFile,
    pub first_lsn: Lsn,
    pub last_lsn: Lsn,
    /// False when the segment was closed inside a transaction (for memory): it may be delivered
    /// only together with a later segment that ends at a transaction boundary.
    pub complete: bool,
    pub batch: Batch,
}

/// A segment's files, ready for a target.
#[derive(Debug, Clone)]
pub struct SegmentOutput {
    pub segment: u64,
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub complete: bool,
}

/// A sealed segment whose batch was dropped: rebuilt from its WAL file by the CSV stage.
#[derive(Debug, Clone)]
pub struct Spilled {
    pub file: SegmentFile,
    pub first_lsn: Lsn,
    pub last_lsn: Lsn,
    pub complete: bool,
}

#[derive(Debug)]
pub enum Entry {
    Batched(SealedSegment),
    Spilled(Spilled),
}

impl Entry {
    /// The sealed segment with its batch: a spilled one is rebuilt from its WAL file (the one
    /// function that also rebuilds segments on start), with a batch index budget of `max_mem`.
    pub fn into_sealed(
        self,
        known_keys: &KnownKeys,
        max_mem: usize,
    ) -> Result<SealedSegment, RebuildError> {
        match self {
            Entry::Batched(sealed) => Ok(sealed),
            Entry::Spilled(spilled) => {
                let _g = tracing::info_span!("rebatch", segment = spilled.file.id).entered();
                let rebuilt = rebuild(&spilled.file, known_keys, max_mem)?;
                Ok(SealedSegment {
                    file: spilled.file,
                    first_lsn: spilled.first_lsn,
                    last_lsn: spilled.last_lsn,
                    complete: spilled.complete,
                    batch: rebuilt.batch,
                })
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the CSV stage is gone")]
pub struct ConsumerGone;

#[derive(Default)]
struct State {
    queue: VecDeque<Entry>,
    /// The consumer waits in [`SealedQueue::take`] with nothing to take.
    consumer_waiting: bool,
    producer_done: bool,
    consumer_gone: bool,
}

#[derive(Default)]
pub struct SealedQueue {
    state: Mutex<State>,
    changed: Condvar,
}

impl SealedQueue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ingest: hands `sealed` over; spills the segment when the consumer has not taken
    /// everything before it and come back for more within `patience`.
    pub fn offer(&self, sealed: SealedSegment, patience: Duration) -> Result<(), ConsumerGone> {
        let deadline = Instant::now() + patience;
        let mut st = self.lock();
        loop {
            if st.consumer_gone {
                return Err(ConsumerGone);
            }
            // Only an empty queue keeps the order with a batch in memory; only a waiting
            // consumer takes it at once (so no second batch sits here).
            if st.queue.is_empty() && st.consumer_waiting {
                st.queue.push_back(Entry::Batched(sealed));
                st.consumer_waiting = false;
                self.changed.notify_all();
                return Ok(());
            }
            // Something spilled already: later segments follow it, without waiting.
            let spill_now = st.queue.iter().any(|e| matches!(e, Entry::Spilled(_)))
                || Instant::now() >= deadline;
            if spill_now {
                metrics::SEGMENTS_SPILLED.inc();
                tracing::warn!(
                    segment = sealed.file.id,
                    queued = st.queue.len() + 1,
                    "the target is behind: segment spilled to disk, reading goes on"
                );
                st.queue.push_back(Entry::Spilled(Spilled {
                    file: sealed.file,
                    first_lsn: sealed.first_lsn,
                    last_lsn: sealed.last_lsn,
                    complete: sealed.complete,
                }));
                self.changed.notify_all();
                return Ok(());
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            st = self
                .changed
                .wait_timeout(st, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Ingest: no more segments.
    pub fn producer_done(&self) {
        self.lock().producer_done = true;
        self.changed.notify_all();
    }

    /// The CSV stage: the next entry, waiting for one; `None` once the producer is done and the
    /// queue is empty, or once the consumer was declared gone (delivery failed).
    pub fn take(&self) -> Option<Entry> {
        let mut st = self.lock();
        loop {
            if let Some(e) = st.queue.pop_front() {
                st.consumer_waiting = false;
                return Some(e);
            }
            if st.producer_done || st.consumer_gone {
                return None;
            }
            st.consumer_waiting = true;
            self.changed.notify_all();
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The CSV stage stops taking (delivery ended or failed): ingest's next offer fails.
    pub fn consumer_gone(&self) {
        let mut st = self.lock();
        st.consumer_gone = true;
        st.queue.clear();
        self.changed.notify_all();
    }
}

/// Marks the consumer gone when dropped, also when the CSV stage fails or panics.
pub struct ConsumerGuard<'a>(pub &'a SealedQueue);

impl Drop for ConsumerGuard<'_> {
    fn drop(&mut self) {
        self.0.consumer_gone();
    }
}

/// Marks the producer done when dropped, also when ingest fails or panics.
pub struct ProducerGuard<'a>(pub &'a SealedQueue);

impl Drop for ProducerGuard<'_> {
    fn drop(&mut self) {
        self.0.producer_done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn sealed(id: u64) -> SealedSegment {
        SealedSegment {
            file: SegmentFile {
                id,
                path: format!("/nonexistent/{id}").into(),
                len: 0,
                lineage: crate::wal::Lineage::from_bytes([1; 16]),
                legacy: false,
            },
            first_lsn: Lsn(id),
            last_lsn: Lsn(id),
            complete: true,
            batch: Default::default(),
        }
    }

    fn id(e: &Entry) -> (u64, bool) {
        match e {
            Entry::Batched(s) => (s.file.id, true),
            Entry::Spilled(s) => (s.file.id, false),
        }
    }

    #[test]
    fn a_waiting_consumer_gets_the_batch_in_memory() {
        let q = Arc::new(SealedQueue::default());
        let q2 = Arc::clone(&q);
        let consumer = std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Some(e) = q2.take() {
                got.push(id(&e));
            }
            got
        });
        for i in 1..=3 {
            q.offer(sealed(i), Duration::from_secs(600)).unwrap();
        }
        q.producer_done();
        assert_eq!(consumer.join().unwrap(), [(1, true), (2, true), (3, true)]);
    }

    #[test]
    fn a_stuck_consumer_makes_ingest_spill_in_order_without_waiting_again() {
        let q = SealedQueue::default();
        let start = Instant::now();
        q.offer(sealed(1), Duration::from_millis(50)).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(50));
        let again = Instant::now();
        q.offer(sealed(2), Duration::from_secs(60)).unwrap();
        assert!(again.elapsed() < Duration::from_secs(1), "no second wait");
        q.producer_done();
        let got: Vec<_> = std::iter::from_fn(|| q.take()).map(|e| id(&e)).collect();
        assert_eq!(got, [(1, false), (2, false)]);
    }

    #[test]
    fn a_gone_consumer_fails_the_offer() {
        let q = SealedQueue::default();
        drop(ConsumerGuard(&q));
        assert!(q.offer(sealed(1), Duration::from_secs(60)).is_err());
    }
}
