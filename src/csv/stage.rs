//! The CSV stage's run loop: takes sealed segments from the hand-off queue in order (rebuilding
//! spilled ones from the WAL), writes each one's files ([`super::write_segment`]) and sends the
//! output on to the sink through a bounded channel: while the sink has no room, this stage
//! waits, and ingest spills instead of waiting on it.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{write_segment, CsvError};
use crate::batch::rebuild::KnownKeys;
use crate::pipeline::handoff::{ConsumerGuard, SealedQueue, SegmentOutput};
use crate::pipeline::stage::StageHandle;

pub struct CsvStage {
    pub queue: Arc<SealedQueue>,
    pub out: mpsc::Sender<SegmentOutput>,
    /// `<wal.directory>/spool`
    pub spool_root: PathBuf,
    pub known_keys: KnownKeys,
    /// The batch index budget for rebuilding a spilled segment.
    pub batch_max_memory: usize,
}

impl CsvStage {
    /// Runs on a thread of its own until the queue is closed and drained, or the sink is gone.
    pub fn spawn(self) -> StageHandle<(), CsvError> {
        StageHandle::thread("csv", move || self.run())
    }

    fn run(self) -> Result<(), CsvError> {
        // Closes the queue however this ends, so ingest never waits on a stage that is gone.
        let _gone = ConsumerGuard(&self.queue);
        while let Some(entry) = self.queue.take() {
            let sealed = entry.into_sealed(&self.known_keys, self.batch_max_memory)?;
            let segment = sealed.file.id;
            let _span = tracing::info_span!("csv", segment).entered();
            let out = write_segment(sealed, &self.spool_root)?;
            if self.out.blocking_send(out).is_err() {
                tracing::debug!(segment, "the sink stopped; the CSV stage ends");
                break;
            }
        }
        Ok(())
    }
}
