//! A disk that fails under the WAL: a [`SegmentIo`] that runs out of space, writes short, or
//! fails an fsync once a number of bytes went through it, and a file whose fsyncs fail under
//! the WAL writer thread (the group commit under load). Each fault must end ingest with an
//! error naming the segment file and the cause; no transaction may be acknowledged (the durable
//! LSN published for upstream confirmation) that the disk does not hold; and a restart on a
//! healthy disk must find every acknowledged transaction.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::segment::{FileIo, SegmentIo};
use super::writer::{ThreadedFileIo, WalFile};
use super::Wal;
use crate::batch::rebuild::{rebuild, KnownKeys};
use crate::pipeline::handoff::SealedQueue;
use crate::shutdown::Shutdown;
use crate::source::decoding::Framer;
use crate::wal::ingest::{Ingest, IngestError, IngestLimits, Input};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `write` fails with ENOSPC.
    DiskFull,
    /// Part of the buffer reaches the file, then `write` fails.
    ShortWrite,
    /// `fsync` fails with EIO (the bytes may or may not be on disk).
    FsyncFails,
}

/// Bytes through all segments so far, and from where the fault fires.
struct Disk {
    fault: Fault,
    fail_after: u64,
    written: u64,
}

struct FaultyIo {
    inner: FileIo,
    disk: Arc<Mutex<Disk>>,
}

impl SegmentIo for FaultyIo {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.disk.lock().unwrap();
        let room = disk.fail_after.saturating_sub(disk.written);
        if (bytes.len() as u64) > room {
            match disk.fault {
                Fault::DiskFull => return Err(io::Error::from_raw_os_error(28)),
                Fault::ShortWrite => {
                    let part = usize::try_from(room).unwrap_or(0);
                    self.inner.write_all(&bytes[..part])?;
                    self.inner.flush()?;
                    disk.written += room;
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
                }
                Fault::FsyncFails => {}
            }
        }
        disk.written += bytes.len() as u64;
        self.inner.write_all(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    fn sync(&mut self) -> io::Result<()> {
        let disk = self.disk.lock().unwrap();
        if disk.fault == Fault::FsyncFails && disk.written > disk.fail_after {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.inner.sync()
    }
}

/// A real file whose fsyncs fail (EIO, as a disk's can) once more than `fail_after` bytes
/// were written to it: for the WAL writer thread, which takes a [`WalFile`], not a
/// [`SegmentIo`].
pub(super) struct FsyncFailsAfter {
    file: File,
    written: u64,
    fail_after: u64,
}

impl FsyncFailsAfter {
    pub(super) fn new(file: File, fail_after: u64) -> Self {
        Self {
            file,
            written: 0,
            fail_after,
        }
    }
}

impl Write for FsyncFailsAfter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = self.file.write(bytes)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl WalFile for FsyncFailsAfter {
    fn sync_data(&self) -> io::Result<()> {
        if self.written > self.fail_after {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.file.sync_data()
    }
}

fn transaction(n: u64) -> String {
    format!(
        "BEGIN {n}\ntable public.t: INSERT: id[integer]:{n} v[text]:'{}'\nCOMMIT {n}\n",
        "x".repeat(200)
    )
}

const TRANSACTIONS: u64 = 40;

/// Feeds one transaction at a time, waiting after each for the durable LSN to move (ingest
/// fsyncs whenever its input is idle); returns how many were acknowledged and how ingest ended.
fn ingest_until_the_fault(dir: &Path, fault: Fault) -> (u64, IngestError) {
    let disk = Arc::new(Mutex::new(Disk {
        fault,
        fail_after: 4000,
        written: 0,
    }));
    let (wal, recovery) = Wal::open(dir).unwrap();
    let wal = wal.with_segment_io(Box::new(move |path| {
        Ok(Box::new(FaultyIo {
            inner: FileIo::create(path)?,
            disk: Arc::clone(&disk),
        }) as Box<dyn SegmentIo>)
    }));
    let limits = IngestLimits {
        segment_max_bytes: 1 << 20,
        segment_max_age: Duration::from_secs(3600),
        batch_max_memory: 1 << 20,
        spill_after: Duration::ZERO,
    };
    let queue = Arc::new(SealedQueue::default());
    let mut ingest = Ingest::new(
        wal,
        &recovery,
        KnownKeys::default(),
        limits,
        queue,
        Shutdown::new(),
    );
    let durable = Arc::clone(&ingest.durable_lsn);
    let (tx, rx) = crossbeam_channel::bounded(1);
    let run = std::thread::spawn(move || ingest.run(&rx));
    let mut acked = 0;
    let mut framer = Framer::new();
    for n in 1..=TRANSACTIONS {
        let before = durable.load(Ordering::Acquire);
        let chunk = framer
            .push(transaction(n).into_bytes())
            .expect("whole transactions");
        if tx.send(Input::Text(chunk)).is_err() {
            break;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while durable.load(Ordering::Acquire) == before && !run.is_finished() {
            assert!(
                Instant::now() < deadline,
                "transaction {n} never became durable"
            );
            std::thread::yield_now();
        }
        if durable.load(Ordering::Acquire) > before {
            acked = n;
        } else {
            break;
        }
    }
    drop(tx);
    let err = run.join().unwrap().expect_err("the disk failed");
    (acked, err)
}

/// Rows of every transaction recovered from `dir` on a healthy disk.
fn recovered_rows(dir: &Path) -> u64 {
    let (_wal, recovery) = Wal::open(dir).unwrap();
    recovery
        .segments
        .iter()
        .map(|f| {
            rebuild(f, &KnownKeys::default(), 1 << 20)
                .unwrap()
                .batch
                .changes
        })
        .sum()
}

#[test]
fn a_failing_disk_ends_ingest_clearly_and_loses_nothing_acknowledged() {
    for (fault, cause) in [
        (Fault::DiskFull, "No space left on device"),
        (Fault::ShortWrite, "short write"),
        (Fault::FsyncFails, "Input/output error"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (acked, err) = ingest_until_the_fault(dir.path(), fault);
        let text = crate::error_chain(&err);
        assert!(
            text.contains(".wal") && text.contains(cause),
            "{fault:?}: the error names the segment and the cause: {text}"
        );
        assert!(
            acked > 0 && acked < TRANSACTIONS,
            "{fault:?}: the fault fired mid-stream ({acked} acknowledged)"
        );
        let rows = recovered_rows(dir.path());
        assert!(
            rows >= acked,
            "{fault:?}: {acked} transactions acknowledged, {rows} recovered"
        );
        // At most the transaction in flight when the disk failed is recovered beyond those.
        assert!(
            rows <= acked + 1,
            "{fault:?}: {rows} recovered, {acked} acknowledged"
        );
    }
}

/// Under load the group commit's fsync runs on the WAL writer thread while ingest goes on:
/// when it fails, nothing it covers is published durable, and ingest's next WAL call ends
/// the run with the fsync's error, naming the segment.
#[test]
fn a_failed_background_group_commit_acknowledges_nothing_and_ends_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, recovery) = Wal::open(dir.path()).unwrap();
    // Every fsync of the segment file fails. The first is the group commit at 16 MiB: a new
    // segment's header and snapshot are written, not fsynced (`state.json` is, apart).
    let wal = wal.with_segment_io(Box::new(|path| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(Box::new(ThreadedFileIo::new(FsyncFailsAfter::new(file, 0))?) as Box<dyn SegmentIo>)
    }));
    let limits = IngestLimits {
        segment_max_bytes: 1 << 30,
        segment_max_age: Duration::from_secs(3600),
        batch_max_memory: 1 << 30,
        spill_after: Duration::ZERO,
    };
    let mut ingest = Ingest::new(
        wal,
        &recovery,
        KnownKeys::default(),
        limits,
        Arc::new(SealedQueue::default()),
        Shutdown::new(),
    );
    let durable = Arc::clone(&ingest.durable_lsn);
    // ~27 MiB of whole transactions, all waiting before ingest starts: no idle sync between.
    let text: String = (1..=100_000).map(transaction).collect();
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut framer = Framer::new();
    for piece in text.as_bytes().chunks(1 << 20) {
        if let Some(chunk) = framer.push(piece.to_vec()) {
            tx.send(Input::Text(chunk)).unwrap();
        }
    }
    drop(tx);
    let err = ingest
        .run(&rx)
        .expect_err("the group commit's fsync failed");
    assert!(
        !rx.is_empty(),
        "seen at the end of the input, not under load"
    );
    let text = crate::error_chain(&err);
    assert!(
        text.contains(".wal") && text.contains("Input/output error"),
        "{text}"
    );
    assert_eq!(
        durable.load(Ordering::Acquire),
        0,
        "acknowledged without an fsync"
    );
    // What is on disk reopens on a healthy one (a torn tail is cut, nothing refused).
    recovered_rows(dir.path());
}
