//! A [`SegmentIo`] that hands full buffers to a writer thread, so the kernel's copy into the page
//! cache runs beside the ingest loop instead of inside it.
//!
//! `flush`, `sync` and `await_syncs` are barriers: they return only when every byte written
//! before them is in the file (and, for `sync`, durable; for `await_syncs`, every group commit
//! before it done). `sync_behind` is the group commit that does not wait:
//! the writer thread fsyncs in turn and then runs the caller's `durable` action (which
//! publishes the durable LSN), while ingest goes on appending; jobs run in order, so a later
//! barrier also waits for it. A failed write or fsync is seen by the next call of any kind,
//! with its error, and no `durable` action runs after it. Buffers are recycled between the two
//! threads, so the steady state allocates nothing.
//!
//! Records ([`SegmentIo::write_record`]) go into a buffer whole, their CRC field still zero,
//! with their place noted; the writer thread seals each ([`seal_record`]) before the buffer
//! reaches the file, so the CRC is computed beside the ingest loop, over bytes copied once. No
//! bytes reach the file unsealed: readers of the file (after a barrier) see whole records.

use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::segment::{seal_record, SegmentIo};

/// Size of the buffers handed to the writer thread.
pub const WRITE_BUFFER: usize = 1 << 20;
/// Buffers in flight at most (memory bound: this many x [`WRITE_BUFFER`]).
const IN_FLIGHT: usize = 4;

/// What the writer thread needs of its file: a trait so that tests can make an fsync fail.
pub trait WalFile: Write + Send + 'static {
    fn sync_data(&self) -> io::Result<()>;
}

impl WalFile for File {
    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }
}

/// Bytes for the file, and where the records in them start and end (each sealed there).
struct Filled {
    bytes: Vec<u8>,
    records: Vec<(usize, usize)>,
}

impl Filled {
    /// Empty, with room for [`WRITE_BUFFER`] bytes.
    fn new() -> Self {
        Self {
            bytes: Vec::with_capacity(WRITE_BUFFER),
            records: Vec::new(),
        }
    }
    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

enum Job {
    Write(Filled),
    /// Reply once everything before is written (and fdatasync'ed when `durable`).
    Barrier {
        durable: bool,
        done: SyncSender<io::Result<()>>,
    },
    /// fdatasync everything before, then run the action (not after a failure).
    SyncBehind(Box<dyn FnOnce() + Send>),
}

pub struct ThreadedFileIo {
    buf: Filled,
    jobs: Option<SyncSender<Job>>,
    spare: Receiver<Filled>,
    thread: Option<JoinHandle<()>>,
    /// Set by the writer thread at its first failure (kept there, and returned by the next
    /// barrier); every call looks at it first.
    failed: Arc<AtomicBool>,
}

impl ThreadedFileIo {
    pub fn new(file: impl WalFile) -> io::Result<Self> {
        let (jobs_tx, jobs_rx) = sync_channel::<Job>(IN_FLIGHT);
        let (spare_tx, spare_rx) = sync_channel::<Filled>(IN_FLIGHT + 1);
        let failed = Arc::new(AtomicBool::new(false));
        let writer_failed = Arc::clone(&failed);
        let thread = std::thread::Builder::new()
            .name("re_dms-wal".into())
            .spawn(move || write_loop(file, &jobs_rx, &spare_tx, &writer_failed))?;
        Ok(Self {
            buf: Filled::new(),
            jobs: Some(jobs_tx),
            spare: spare_rx,
            thread: Some(thread),
            failed,
        })
    }

    /// The writer thread's failure, when it had one: its error (from a barrier, the first time).
    fn check_failed(&mut self) -> io::Result<()> {
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let (tx, rx) = sync_channel(1);
        self.send(Job::Barrier {
            durable: false,
            done: tx,
        })?;
        match rx.recv() {
            Ok(Err(e)) => Err(e),
            _ => Err(io::Error::other("an earlier WAL write or fsync failed")),
        }
    }

    fn send(&mut self, job: Job) -> io::Result<()> {
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("WAL writer closed"))?;
        jobs.send(job)
            .map_err(|_| io::Error::other("WAL writer thread stopped"))
    }

    fn hand_off(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self.spare.try_recv().unwrap_or_else(|_| Filled::new());
        let full = std::mem::replace(&mut self.buf, next);
        self.send(Job::Write(full))
    }

    /// Hands the buffer off first when `len` more bytes would take it past [`WRITE_BUFFER`].
    fn make_room(&mut self, len: usize) -> io::Result<()> {
        if self.buf.bytes.len() + len > WRITE_BUFFER && !self.buf.is_empty() {
            self.hand_off()?;
        }
        Ok(())
    }

    fn hand_off_full(&mut self) -> io::Result<()> {
        if self.buf.bytes.len() >= WRITE_BUFFER {
            self.hand_off()?;
        }
        Ok(())
    }

    fn barrier(&mut self, durable: bool) -> io::Result<()> {
        self.check_failed()?;
        self.hand_off()?;
        let (tx, rx) = sync_channel(1);
        self.send(Job::Barrier { durable, done: tx })?;
        rx.recv()
            .map_err(|_| io::Error::other("WAL writer thread stopped"))?
    }
}

fn write_loop(
    mut file: impl WalFile,
    jobs: &Receiver<Job>,
    spare: &SyncSender<Filled>,
    failed: &AtomicBool,
) {
    // The first failure's error, for the next barrier; `failed` (set with it) is what every job
    // looks at, here and on the ingest side.
    let mut error: Option<io::Error> = None;
    let fail = |error: &mut Option<io::Error>, e: io::Error| {
        *error = Some(e);
        failed.store(true, Ordering::Release);
    };
    for job in jobs {
        match job {
            Job::Write(mut buf) => {
                if !failed.load(Ordering::Acquire) {
                    for &(start, end) in &buf.records {
                        seal_record(&mut buf.bytes[start..end]);
                    }
                    if let Err(e) = file.write_all(&buf.bytes) {
                        fail(&mut error, e);
                    }
                }
                buf.bytes.clear();
                buf.records.clear();
                let _ = spare.try_send(buf);
            }
            Job::SyncBehind(durable) => {
                if !failed.load(Ordering::Acquire) {
                    match file.sync_data() {
                        Ok(()) => durable(),
                        Err(e) => fail(&mut error, e),
                    }
                }
            }
            Job::Barrier { durable, done } => {
                let r = match error.take() {
                    Some(e) => Err(e),
                    None if failed.load(Ordering::Acquire) => {
                        Err(io::Error::other("an earlier WAL write or fsync failed"))
                    }
                    // After a failed fsync the pages may be lost for good: never again.
                    None if durable => file.sync_data().inspect_err(|_| {
                        failed.store(true, Ordering::Release);
                    }),
                    None => Ok(()),
                };
                let _ = done.send(r);
            }
        }
    }
}

impl SegmentIo for ThreadedFileIo {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.check_failed()?;
        self.make_room(bytes.len())?;
        self.buf.bytes.extend_from_slice(bytes);
        self.hand_off_full()
    }

    /// The record goes into one buffer whole (a larger one alone), sealed by the writer.
    fn write_record(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        self.check_failed()?;
        self.make_room(parts.iter().map(|p| p.len()).sum())?;
        let start = self.buf.bytes.len();
        parts
            .iter()
            .for_each(|p| self.buf.bytes.extend_from_slice(p));
        self.buf.records.push((start, self.buf.bytes.len()));
        self.hand_off_full()
    }

    fn flush(&mut self) -> io::Result<()> {
        self.barrier(false)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.barrier(true)
    }

    fn sync_behind(&mut self, durable: Box<dyn FnOnce() + Send>) -> io::Result<()> {
        self.check_failed()?;
        self.hand_off()?;
        self.send(Job::SyncBehind(durable))
    }

    /// Jobs run in order: a barrier returns once every earlier group commit is done, with the
    /// first failure.
    fn await_syncs(&mut self) -> io::Result<()> {
        self.barrier(false)
    }
}

impl Drop for ThreadedFileIo {
    fn drop(&mut self) {
        // Unsynced bytes are not promised to anyone; still, write them before the file closes.
        // Queued group commits run first (their durable actions too, unless one failed).
        let _ = self.hand_off();
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::fault_tests::FsyncFailsAfter;

    #[test]
    fn barriers_make_writes_visible_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut io = ThreadedFileIo::new(File::create(&path).unwrap()).unwrap();
        let mut want = Vec::new();
        for i in 0..5000u32 {
            let chunk = vec![(i % 251) as u8; (i as usize * 37) % 3000];
            io.write_all(&chunk).unwrap();
            want.extend_from_slice(&chunk);
            if i % 997 == 0 {
                io.flush().unwrap();
                assert_eq!(std::fs::read(&path).unwrap(), want);
            }
        }
        io.sync().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), want);
        io.write_all(b"tail").unwrap();
        drop(io);
        want.extend_from_slice(b"tail");
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }

    /// Records reach the file sealed, in order with plain writes: across buffer ends, one
    /// larger than a buffer, and seen by a reader after each flush.
    #[test]
    fn records_are_sealed_by_the_writer_before_they_reach_the_file() {
        use crate::wal::segment::RECORD_HEADER_LEN;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut io = ThreadedFileIo::new(File::create(&path).unwrap()).unwrap();
        let mut want = Vec::new();
        for i in 0..3000u32 {
            if i % 7 == 0 {
                io.write_all(b"plain").unwrap();
                want.extend_from_slice(b"plain");
            }
            let len = if i == 1500 {
                WRITE_BUFFER + 3
            } else {
                (i as usize * 53) % 900
            };
            let body = vec![(i % 251) as u8; len];
            let head_len = u32::try_from(len).unwrap().to_le_bytes();
            // The header's CRC field is zero until sealed; the body in two parts.
            let head = [&head_len[..], &[0; 4]].concat();
            let (a, b) = body.split_at(len / 3);
            io.write_record(&[&head, a, b]).unwrap();
            let mut record = [&head[..], &body].concat();
            let crc = crc32c::crc32c(&record[RECORD_HEADER_LEN as usize..]);
            record[4..8].copy_from_slice(&crc.to_le_bytes());
            want.extend_from_slice(&record);
            if i % 499 == 0 {
                io.flush().unwrap();
                assert_eq!(std::fs::read(&path).unwrap(), want, "after record {i}");
            }
        }
        drop(io);
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }

    #[test]
    fn sync_behind_runs_its_action_after_the_bytes_are_in_the_file_and_barriers_wait_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut io = ThreadedFileIo::new(File::create(&path).unwrap()).unwrap();
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        for i in 0..20u8 {
            io.write_all(&vec![i; 100_000]).unwrap();
            let (seen, path) = (seen_tx.clone(), path.clone());
            io.sync_behind(Box::new(move || {
                let len = std::fs::metadata(&path).unwrap().len();
                seen.send((i, len)).unwrap();
            }))
            .unwrap();
        }
        io.sync().unwrap();
        // Every action ran before the barrier returned, in order, each after its bytes.
        let seen: Vec<(u8, u64)> = seen_rx.try_iter().collect();
        assert_eq!(seen.len(), 20);
        for (n, (i, len)) in seen.into_iter().enumerate() {
            assert_eq!(i as usize, n);
            assert!(
                len >= (n as u64 + 1) * 100_000,
                "action {n} ran at {len} bytes"
            );
        }
    }

    #[test]
    fn after_a_failed_write_no_action_runs_and_every_call_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        File::create(&path).unwrap();
        // Read-only: the writer thread's first write fails.
        let mut io = ThreadedFileIo::new(File::open(&path).unwrap()).unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        io.write_all(b"lost").unwrap();
        let flag = Arc::clone(&ran);
        io.sync_behind(Box::new(move || flag.store(true, Ordering::SeqCst)))
            .unwrap();
        let err = io.sync().unwrap_err();
        assert_ne!(
            err.kind(),
            io::ErrorKind::Other,
            "the write's own error: {err}"
        );
        assert!(
            !ran.load(Ordering::SeqCst),
            "durable action after a failed write"
        );
        assert!(io.write_all(b"more").is_err());
        let flag = Arc::clone(&ran);
        assert!(io
            .sync_behind(Box::new(move || flag.store(true, Ordering::SeqCst)))
            .is_err());
        assert!(io.sync().is_err());
        assert!(!ran.load(Ordering::SeqCst));
    }

    #[test]
    fn await_syncs_waits_for_earlier_group_commits_and_returns_the_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut io = ThreadedFileIo::new(File::create(&path).unwrap()).unwrap();
        let ran = Arc::new(AtomicBool::new(false));
        io.write_all(&[1; 100_000]).unwrap();
        let flag = Arc::clone(&ran);
        io.sync_behind(Box::new(move || flag.store(true, Ordering::SeqCst)))
            .unwrap();
        io.await_syncs().unwrap();
        assert!(
            ran.load(Ordering::SeqCst),
            "returned before the group commit"
        );

        // Read-only: the write fails (its group commit is then skipped), and so does the wait,
        // with the write's own error (a failing fsync: the test after next).
        let mut io = ThreadedFileIo::new(File::open(&path).unwrap()).unwrap();
        io.write_all(b"lost").unwrap();
        io.sync_behind(Box::new(|| {})).unwrap();
        let err = io.await_syncs().unwrap_err();
        assert_ne!(err.kind(), io::ErrorKind::Other, "{err}");
    }

    /// Counts the fsyncs and waits a segment writer asks its I/O for.
    struct Counting {
        inner: ThreadedFileIo,
        syncs: Arc<std::sync::atomic::AtomicUsize>,
        awaits: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl SegmentIo for Counting {
        fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
            self.inner.write_all(bytes)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
        fn sync(&mut self) -> io::Result<()> {
            self.syncs.fetch_add(1, Ordering::SeqCst);
            self.inner.sync()
        }
        fn sync_behind(&mut self, durable: Box<dyn FnOnce() + Send>) -> io::Result<()> {
            self.inner.sync_behind(durable)
        }
        fn await_syncs(&mut self) -> io::Result<()> {
            self.awaits.fetch_add(1, Ordering::SeqCst);
            self.inner.await_syncs()
        }
    }

    #[test]
    fn a_sync_after_a_group_commit_waits_for_it_instead_of_fsyncing_again() {
        use crate::lsn::Lsn;
        use crate::wal::segment::{RecordKind, SegmentWriter};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000001.wal");
        let (syncs, awaits) = (Arc::default(), Arc::default());
        let io = Counting {
            inner: ThreadedFileIo::new(File::create(&path).unwrap()).unwrap(),
            syncs: Arc::clone(&syncs),
            awaits: Arc::clone(&awaits),
        };
        let lineage = crate::wal::Lineage::from_bytes([1; 16]);
        let mut w = SegmentWriter::with_io(path, 1, lineage, Box::new(io)).unwrap();
        let counts = || (syncs.load(Ordering::SeqCst), awaits.load(Ordering::SeqCst));
        w.append(RecordKind::Message, Lsn(1), b"BEGIN 1").unwrap();
        w.sync_behind(Box::new(|| {})).unwrap();
        assert!(!w.is_durable());
        w.sync().unwrap();
        assert!(w.is_durable());
        assert_eq!(counts(), (0, 1), "(fsyncs, waits)");
        // New bytes: an fsync; nothing new: nothing at all.
        w.append(RecordKind::Message, Lsn(2), b"COMMIT 1").unwrap();
        w.sync().unwrap();
        w.sync().unwrap();
        assert_eq!(counts(), (1, 1), "(fsyncs, waits)");
    }

    #[test]
    fn a_failed_group_commit_fsync_runs_no_action_and_every_later_call_fails() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("f")).unwrap();
        let mut io = ThreadedFileIo::new(FsyncFailsAfter::new(file, 1000)).unwrap();
        let (ran_tx, ran_rx) = std::sync::mpsc::channel();
        let action = |n: u8| {
            let tx = ran_tx.clone();
            Box::new(move || tx.send(n).unwrap()) as Box<dyn FnOnce() + Send>
        };
        io.write_all(&[1; 1000]).unwrap();
        io.sync_behind(action(1)).unwrap();
        io.await_syncs().unwrap();
        io.write_all(&[2; 1000]).unwrap();
        io.sync_behind(action(2)).unwrap();
        let err = io.await_syncs().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(5), "the fsync's own error: {err}");
        // After a failed fsync the pages may be gone: nothing more is accepted, and nothing is
        // published durable.
        assert!(io.write_all(&[3; 1000]).is_err());
        assert!(io.sync_behind(action(3)).is_err());
        assert!(io.sync().is_err());
        assert!(io.await_syncs().is_err());
        drop(io);
        assert_eq!(ran_rx.try_iter().collect::<Vec<_>>(), vec![1]);
    }
}
