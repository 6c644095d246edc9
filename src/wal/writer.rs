//! A [`SegmentIo`] that hands full buffers to a writer thread, so the kernel's copy into the page
//! cache runs beside the ingest loop instead of inside it.
//!
//! `flush` and `sync` are barriers: they return only when every byte written before them is in
//! the file (and, for `sync`, durable). Buffers are recycled between the two threads, so the
//! steady state allocates nothing.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use super::segment::SegmentIo;

/// Size of the buffers handed to the writer thread.
pub const WRITE_BUFFER: usize = 1 << 20;
/// Buffers in flight at most (memory bound: this many x [`WRITE_BUFFER`]).
const IN_FLIGHT: usize = 4;

enum Job {
    Write(Vec<u8>),
    /// Reply once everything before is written (and fdatasync'ed when `durable`).
    Barrier {
        durable: bool,
        done: SyncSender<io::Result<()>>,
    },
}

pub struct ThreadedFileIo {
    buf: Vec<u8>,
    jobs: Option<SyncSender<Job>>,
    spare: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<()>>,
    /// The first write error, reported at the next barrier.
    failed: bool,
}

impl ThreadedFileIo {
    pub fn new(file: File) -> io::Result<Self> {
        let (jobs_tx, jobs_rx) = sync_channel::<Job>(IN_FLIGHT);
        let (spare_tx, spare_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT + 1);
        let thread = std::thread::Builder::new()
            .name("re_dms-wal".into())
            .spawn(move || write_loop(file, &jobs_rx, &spare_tx))?;
        Ok(Self {
            buf: Vec::with_capacity(WRITE_BUFFER),
            jobs: Some(jobs_tx),
            spare: spare_rx,
            thread: Some(thread),
            failed: false,
        })
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
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(WRITE_BUFFER));
        let full = std::mem::replace(&mut self.buf, next);
        self.send(Job::Write(full))
    }

    fn barrier(&mut self, durable: bool) -> io::Result<()> {
        self.hand_off()?;
        let (tx, rx) = sync_channel(1);
        self.send(Job::Barrier { durable, done: tx })?;
        let r = rx
            .recv()
            .map_err(|_| io::Error::other("WAL writer thread stopped"))?;
        if r.is_err() {
            self.failed = true;
        }
        r
    }
}

fn write_loop(mut file: File, jobs: &Receiver<Job>, spare: &SyncSender<Vec<u8>>) {
    let mut error: Option<io::Error> = None;
    for job in jobs {
        match job {
            Job::Write(mut buf) => {
                if error.is_none() {
                    if let Err(e) = file.write_all(&buf) {
                        error = Some(e);
                    }
                }
                buf.clear();
                let _ = spare.try_send(buf);
            }
            Job::Barrier { durable, done } => {
                let r = match error.take() {
                    Some(e) => Err(e),
                    None if durable => file.sync_data(),
                    None => Ok(()),
                };
                let _ = done.send(r);
            }
        }
    }
}

impl SegmentIo for ThreadedFileIo {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("an earlier WAL write failed"));
        }
        if self.buf.len() + bytes.len() > WRITE_BUFFER && !self.buf.is_empty() {
            self.hand_off()?;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= WRITE_BUFFER {
            self.hand_off()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.barrier(false)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.barrier(true)
    }
}

impl Drop for ThreadedFileIo {
    fn drop(&mut self) {
        // Unsynced bytes are not promised to anyone; still, write them before the file closes.
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
}
