//! One WAL segment file: header, framed records, sequential scan and positioned reads.
//!
//! On-disk format (little endian):
//! ```text
//! header:  b"REDMSWAL" | u32 version (=3) | u64 segment id | 16 bytes lineage    (36 bytes)
//! record:  u32 body length | u32 CRC32C(body) | body
//! body:    u8 kind | u64 lsn | payload
//! ```
//! Kinds: 1 = a test_decoding message exactly as received (payload = message bytes without the
//! trailing newline); 2 = a schema snapshot (JSON), always the first record of a segment, so a
//! segment can be re-batched on its own after a crash; 3 (version 3 on) = an INSERT or UPDATE
//! pre-split: the message as received plus where each new value lies in it (format in
//! `change.rs`), so the CSV stage writes rows without parsing the text again.
//!
//! The lineage is the WAL directory's random id ([`Lineage`]): targets key their ledgers on
//! (lineage, segment id), so segments of another directory never match each other's rows.
//! Version 1 segments (20-byte header, no lineage) were written before lineages existed; they
//! are read as such ([`SegmentScanner::lineage`] is `None`). Version 2 segments (kinds 1 and 2
//! only) are read as they are: their row changes are parsed from the text. A kind-3 record in a
//! segment older than version 3 is damage, not data. Any other version is refused with a message
//! naming it, never misread.
//!
//! A record's position is the byte offset of its header; the batcher keeps positions instead of
//! values and the CSV writer reads the records back from the (page-cached) file.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use smallvec::SmallVec;

use super::lineage::Lineage;
use crate::lsn::Lsn;

pub const MAGIC: &[u8; 8] = b"REDMSWAL";
pub const VERSION: u32 = 3;
/// The first version with [`RecordKind::Change`] records.
pub const VERSION_CHANGES: u32 = 3;
/// Header length of the current version.
pub const HEADER_LEN: u64 = 36;
/// Header length of version 1 (no lineage).
pub const HEADER_LEN_V1: u64 = 20;
/// u32 length + u32 CRC.
pub const RECORD_HEADER_LEN: u64 = 8;
/// u8 kind + u64 lsn.
pub const BODY_PREFIX_LEN: usize = 9;
/// Refuse to allocate for a length field larger than this while scanning: it is a torn or
/// corrupted header, not a record (PostgreSQL values are at most 1 GiB).
pub const MAX_RECORD_LEN: u32 = 1 << 31;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    Message = 1,
    Snapshot = 2,
    /// An INSERT or UPDATE, pre-split (`change.rs`); version 3 segments on.
    Change = 3,
}

impl RecordKind {
    /// The kind of byte `b` in a segment of format `version`.
    fn from_u8(b: u8, version: u32) -> Option<Self> {
        match b {
            1 => Some(RecordKind::Message),
            2 => Some(RecordKind::Snapshot),
            3 if version >= VERSION_CHANGES => Some(RecordKind::Change),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("WAL segment {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("WAL segment {path}: not a re_dms WAL segment (bad header)")]
    BadHeader { path: PathBuf },
    #[error(
        "WAL segment {path}: format version {version} is not one this re_dms reads (1 to \
         {VERSION}); it was written by a newer re_dms: run that version until the WAL is empty"
    )]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("WAL segment {path}: record at byte {pos} is damaged ({why})")]
    BadRecord {
        path: PathBuf,
        pos: u64,
        why: &'static str,
    },
}

impl SegmentError {
    /// The I/O error's wrapping for the segment file at `path` (for `map_err`).
    fn io(path: &Path) -> impl FnOnce(io::Error) -> SegmentError + '_ {
        move |source| SegmentError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The file operations a segment writer needs; behind a trait so tests can inject faults.
pub trait SegmentIo: Send {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Make everything written so far readable by other file handles (no durability).
    fn flush(&mut self) -> io::Result<()>;
    /// Make everything written so far durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Start making everything written so far durable and run `durable` once it is; may return
    /// before that (a writer thread's fsync). `durable` never runs when the sync fails: the
    /// failure comes back from a later call. By default a plain [`sync`](Self::sync).
    fn sync_behind(&mut self, durable: Box<dyn FnOnce() + Send>) -> io::Result<()> {
        self.sync()?;
        durable();
        Ok(())
    }
    /// Wait until every `sync_behind` started so far is done; the failure of one that failed.
    /// By default a plain [`sync`](Self::sync) (right, and one fsync more than needed).
    fn await_syncs(&mut self) -> io::Result<()> {
        self.sync()
    }
    /// Writes one record: `parts` one after the other, the first starting with its header
    /// (CRC field zero). [`seal_record`] fills in the CRC before the record reaches the file:
    /// here by default, or on a writer thread ([`super::writer::ThreadedFileIo`], off the
    /// ingest loop).
    fn write_record(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let mut record = parts.concat();
        seal_record(&mut record);
        self.write_all(&record)
    }
}

/// Fills in the CRC32C of one whole record (header included, its CRC field ignored): over
/// everything after the header.
pub fn seal_record(record: &mut [u8]) {
    let crc = crc32c::crc32c(&record[RECORD_HEADER_LEN as usize..]);
    record[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// A buffered file with `fdatasync`, all on the caller's thread: what the fault tests wrap.
/// Segments of a running WAL are written through [`super::writer::ThreadedFileIo`].
pub struct FileIo {
    file: BufWriter<File>,
}

impl FileIo {
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(Self {
            file: BufWriter::with_capacity(1 << 20, file),
        })
    }
}

impl SegmentIo for FileIo {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()
    }
    /// `sync_behind` is the default here: done (or failed) before it returned.
    fn await_syncs(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub fn segment_file_name(id: u64) -> String {
    format!("{id:020}.wal")
}

/// Parses `00000000000000000012.wal` back to 12.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".wal")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

fn encode_header(id: u64, lineage: Lineage) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&id.to_le_bytes());
    h[20..36].copy_from_slice(lineage.as_bytes());
    h
}

/// Appends records to one segment.
pub struct SegmentWriter {
    pub id: u64,
    pub path: PathBuf,
    io: Box<dyn SegmentIo>,
    /// Bytes written (buffered or not) = position of the next record.
    len: u64,
    /// Bytes known durable.
    synced_len: u64,
    /// Bytes whose sync was asked for ([`sync_behind`](Self::sync_behind) may still be at it).
    requested_len: u64,
}

impl SegmentWriter {
    /// Creates a new segment file and writes its header (not yet synced).
    pub fn create(dir: &Path, id: u64, lineage: Lineage) -> Result<Self, SegmentError> {
        let path = dir.join(segment_file_name(id));
        let io = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(super::writer::ThreadedFileIo::new)
            .map_err(SegmentError::io(&path))?;
        Self::with_io(path, id, lineage, Box::new(io))
    }

    /// A writer over any [`SegmentIo`], header included.
    pub fn with_io(
        path: PathBuf,
        id: u64,
        lineage: Lineage,
        mut io: Box<dyn SegmentIo>,
    ) -> Result<Self, SegmentError> {
        io.write_all(&encode_header(id, lineage))
            .map_err(SegmentError::io(&path))?;
        Ok(Self {
            id,
            path,
            io,
            len: HEADER_LEN,
            synced_len: 0,
            requested_len: 0,
        })
    }

    /// Appends one record; returns its position.
    pub fn append(
        &mut self,
        kind: RecordKind,
        lsn: Lsn,
        payload: &[u8],
    ) -> Result<u64, SegmentError> {
        self.append_parts(kind, lsn, &[payload])
    }

    /// Appends one record whose payload is `parts` one after the other (a change record's
    /// prefix and the message as received; the WAL writer's io copies them once, into its
    /// buffer); returns its position.
    pub fn append_parts(
        &mut self,
        kind: RecordKind,
        lsn: Lsn,
        parts: &[&[u8]],
    ) -> Result<u64, SegmentError> {
        let pos = self.len;
        let payload_len: usize = parts.iter().map(|p| p.len()).sum();
        let body_len = BODY_PREFIX_LEN + payload_len;
        let body_len32 = u32::try_from(body_len)
            .ok()
            .filter(|l| *l < MAX_RECORD_LEN)
            .ok_or_else(|| SegmentError::Io {
                path: self.path.clone(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "record larger than 2 GiB"),
            })?;
        // Length, CRC (filled in by the io's `seal_record`), kind and LSN.
        let mut head = [0u8; RECORD_HEADER_LEN as usize + BODY_PREFIX_LEN];
        head[..4].copy_from_slice(&body_len32.to_le_bytes());
        head[8] = kind as u8;
        head[9..].copy_from_slice(&lsn.0.to_le_bytes());
        let mut all: SmallVec<[&[u8]; 4]> = SmallVec::with_capacity(parts.len() + 1);
        all.push(&head);
        all.extend_from_slice(parts);
        self.io
            .write_record(&all)
            .map_err(SegmentError::io(&self.path))?;
        self.len += RECORD_HEADER_LEN + body_len as u64;
        Ok(pos)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len <= HEADER_LEN
    }

    /// True when bytes were written since the last [`sync`](Self::sync) or
    /// [`sync_behind`](Self::sync_behind).
    pub fn needs_sync(&self) -> bool {
        self.requested_len < self.len
    }

    /// True when every appended record is known durable (a [`sync`](Self::sync) covered it; a
    /// [`sync_behind`](Self::sync_behind) alone does not say so).
    pub fn is_durable(&self) -> bool {
        self.synced_len >= self.len
    }

    /// Makes written records visible to readers of the file (not durable).
    pub fn flush(&mut self) -> Result<(), SegmentError> {
        self.io.flush().map_err(SegmentError::io(&self.path))
    }

    /// Makes every appended record durable, and waits for any [`sync_behind`](Self::sync_behind)
    /// still at work.
    pub fn sync(&mut self) -> Result<(), SegmentError> {
        if !self.is_durable() {
            let fsync = self.needs_sync();
            let res = if fsync {
                self.io.sync()
            } else {
                // Every byte is in a `sync_behind` already: its fsync is waited for, not
                // repeated (on a disk, an fsync with nothing new still flushes its cache).
                self.io.await_syncs()
            };
            res.map_err(SegmentError::io(&self.path))?;
            if fsync {
                crate::metrics::WAL_FSYNCS.inc();
            }
            self.synced_len = self.len;
            self.requested_len = self.len;
        }
        Ok(())
    }

    /// Starts making every appended record durable; `durable` runs once they are (at once, or
    /// on the writer thread after its fsync), never when the sync fails. Nothing to do, nothing
    /// runs: what an earlier call covers is published by that call's `durable`.
    pub fn sync_behind(&mut self, durable: Box<dyn FnOnce() + Send>) -> Result<(), SegmentError> {
        if self.needs_sync() {
            self.io
                .sync_behind(durable)
                .map_err(SegmentError::io(&self.path))?;
            crate::metrics::WAL_FSYNCS.inc();
            self.requested_len = self.len;
        }
        Ok(())
    }
}

/// One record read back.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub pos: u64,
    /// Position just past this record.
    pub end: u64,
    pub kind: RecordKind,
    pub lsn: Lsn,
    pub payload: &'a [u8],
}

impl<'a> Record<'a> {
    /// The test_decoding message of a message or change record, as received; `None` for a
    /// snapshot, or a change record whose payload does not hold its text whole.
    pub fn text(&self) -> Option<&'a [u8]> {
        match self.kind {
            RecordKind::Message => Some(self.payload),
            RecordKind::Change => super::change::text_of(self.payload),
            RecordKind::Snapshot => None,
        }
    }
}

/// Outcome of reading the next record while scanning.
pub enum Next<'a> {
    Record(Record<'a>),
    /// Clean end of file.
    End,
    /// A partial or damaged record starts at `pos`: everything from there on is a torn tail.
    Torn {
        pos: u64,
        why: &'static str,
    },
}

/// Reads a segment front to back, checking every CRC.
pub struct SegmentScanner {
    pub id: u64,
    pub path: PathBuf,
    /// The WAL lineage in the header; `None` for a version 1 segment.
    pub lineage: Option<Lineage>,
    /// The segment's format version.
    pub version: u32,
    reader: BufReader<File>,
    pos: u64,
    buf: Vec<u8>,
}

impl SegmentScanner {
    pub fn open(path: &Path) -> Result<Self, SegmentError> {
        let file = File::open(path).map_err(SegmentError::io(path))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let bad = || SegmentError::BadHeader {
            path: path.to_path_buf(),
        };
        let mut h = [0u8; HEADER_LEN as usize];
        reader
            .read_exact(&mut h[..HEADER_LEN_V1 as usize])
            .map_err(|_| bad())?;
        if &h[..8] != MAGIC {
            return Err(bad());
        }
        let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
        let (len, lineage) = match version {
            1 => (HEADER_LEN_V1, None),
            2..=VERSION => {
                reader
                    .read_exact(&mut h[HEADER_LEN_V1 as usize..])
                    .map_err(|_| bad())?;
                let mut l = [0u8; 16];
                l.copy_from_slice(&h[20..36]);
                (HEADER_LEN, Some(Lineage::from_bytes(l)))
            }
            version => {
                return Err(SegmentError::UnsupportedVersion {
                    path: path.to_path_buf(),
                    version,
                })
            }
        };
        let mut id = [0u8; 8];
        id.copy_from_slice(&h[12..20]);
        Ok(Self {
            id: u64::from_le_bytes(id),
            path: path.to_path_buf(),
            lineage,
            version,
            reader,
            pos: len,
            buf: Vec::new(),
        })
    }

    pub fn next_record(&mut self) -> Result<Next<'_>, SegmentError> {
        let pos = self.pos;
        let mut head = [0u8; RECORD_HEADER_LEN as usize];
        match read_full(&mut self.reader, &mut head) {
            Ok(0) => return Ok(Next::End),
            Ok(n) if n < head.len() => {
                return Ok(Next::Torn {
                    pos,
                    why: "partial record header",
                })
            }
            Ok(_) => {}
            Err(source) => {
                return Err(SegmentError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        }
        let (len, crc) = split_header(&head);
        if len < BODY_PREFIX_LEN as u32 || len >= MAX_RECORD_LEN {
            return Ok(Next::Torn {
                pos,
                why: "impossible record length",
            });
        }
        self.buf.resize(len as usize, 0);
        match read_full(&mut self.reader, &mut self.buf) {
            Ok(n) if n < len as usize => {
                return Ok(Next::Torn {
                    pos,
                    why: "partial record body",
                })
            }
            Ok(_) => {}
            Err(source) => {
                return Err(SegmentError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        }
        if crc32c::crc32c(&self.buf) != crc {
            return Ok(Next::Torn {
                pos,
                why: "CRC mismatch",
            });
        }
        let Some(record) = decode_body(&self.buf, pos, self.version) else {
            return Ok(Next::Torn {
                pos,
                why: "unknown record kind",
            });
        };
        self.pos = record.end;
        Ok(Next::Record(record))
    }
}

fn split_header(head: &[u8; 8]) -> (u32, u32) {
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    (len, crc)
}

fn decode_body(body: &[u8], pos: u64, version: u32) -> Option<Record<'_>> {
    let kind = RecordKind::from_u8(*body.first()?, version)?;
    let lsn_bytes: [u8; 8] = body.get(1..9)?.try_into().ok()?;
    Some(Record {
        pos,
        end: pos + RECORD_HEADER_LEN + body.len() as u64,
        kind,
        lsn: Lsn(u64::from_le_bytes(lsn_bytes)),
        payload: &body[BODY_PREFIX_LEN..],
    })
}

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Random access to the records of a sealed (or flushed) segment, with a read-ahead window so
/// that reading positions in increasing order costs one `pread` per window, not per record.
pub struct SegmentReader {
    path: PathBuf,
    file: File,
    /// The segment's format version (from its header).
    version: u32,
    window: Vec<u8>,
    window_start: u64,
    window_len: usize,
    window_cap: usize,
}

/// Read-ahead window of a [`SegmentReader`].
pub const READ_WINDOW: usize = 1 << 20;

impl SegmentReader {
    pub fn open(path: &Path) -> Result<Self, SegmentError> {
        let file = File::open(path).map_err(SegmentError::io(path))?;
        let mut head = [0u8; 12];
        let bad = || SegmentError::BadHeader {
            path: path.to_path_buf(),
        };
        file.read_exact_at(&mut head, 0).map_err(|_| bad())?;
        if &head[..8] != MAGIC {
            return Err(bad());
        }
        let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        if !(1..=VERSION).contains(&version) {
            return Err(SegmentError::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            version,
            window: Vec::new(),
            window_start: 0,
            window_len: 0,
            window_cap: READ_WINDOW,
        })
    }

    fn bad(&self, pos: u64, why: &'static str) -> SegmentError {
        SegmentError::BadRecord {
            path: self.path.clone(),
            pos,
            why,
        }
    }

    /// The record at `pos` (verified against its CRC).
    pub fn read_at(&mut self, pos: u64) -> Result<Record<'_>, SegmentError> {
        let head = self.bytes_at(pos, RECORD_HEADER_LEN as usize)?;
        let head: [u8; 8] = head.try_into().map_err(|_| self.bad(pos, "short header"))?;
        let (len, crc) = split_header(&head);
        if len < BODY_PREFIX_LEN as u32 || len >= MAX_RECORD_LEN {
            return Err(self.bad(pos, "impossible record length"));
        }
        let body_pos = pos + RECORD_HEADER_LEN;
        self.bytes_at(body_pos, len as usize)?;
        let off = (body_pos - self.window_start) as usize;
        let body = &self.window[off..off + len as usize];
        if crc32c::crc32c(body) != crc {
            return Err(SegmentError::BadRecord {
                path: self.path.clone(),
                pos,
                why: "CRC mismatch",
            });
        }
        decode_body(body, pos, self.version).ok_or_else(|| SegmentError::BadRecord {
            path: self.path.clone(),
            pos,
            why: "unknown record kind",
        })
    }

    /// The test_decoding message of the message or change record at `pos` ([`Record::text`]).
    pub fn text_at(&mut self, pos: u64) -> Result<&[u8], SegmentError> {
        let path = self.path.clone();
        self.read_at(pos)?.text().ok_or(SegmentError::BadRecord {
            path,
            pos,
            why: "not a message record",
        })
    }

    /// Ensures `[pos, pos+len)` is inside the window; returns it.
    fn bytes_at(&mut self, pos: u64, len: usize) -> Result<&[u8], SegmentError> {
        let inside = pos >= self.window_start
            && pos + len as u64 <= self.window_start + self.window_len as u64;
        if !inside {
            let want = len.max(self.window_cap);
            self.window.resize(want, 0);
            let mut n = 0;
            while n < want {
                match self.file.read_at(&mut self.window[n..want], pos + n as u64) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(source) => {
                        return Err(SegmentError::Io {
                            path: self.path.clone(),
                            source,
                        })
                    }
                }
            }
            self.window_start = pos;
            self.window_len = n;
            if n < len {
                return Err(self.bad(pos, "record extends past end of file"));
            }
            if self.window.len() > self.window_cap {
                // A single huge record: don't keep the big buffer around afterwards.
                self.window.shrink_to(want);
            }
        }
        let off = (pos - self.window_start) as usize;
        Ok(&self.window[off..off + len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(path: &Path) -> (Vec<(u64, Vec<u8>)>, Option<u64>) {
        let mut s = SegmentScanner::open(path).unwrap();
        let mut out = Vec::new();
        loop {
            match s.next_record().unwrap() {
                Next::Record(r) => out.push((r.lsn.0, r.payload.to_vec())),
                Next::End => return (out, None),
                Next::Torn { pos, .. } => return (out, Some(pos)),
            }
        }
    }

    #[test]
    fn write_scan_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(dir.path(), 7, Lineage::from_bytes([7; 16])).unwrap();
        let big = vec![b'x'; 3 * READ_WINDOW];
        let p1 = w.append(RecordKind::Snapshot, Lsn(0), b"{}").unwrap();
        let p2 = w.append(RecordKind::Message, Lsn(5), b"BEGIN 1").unwrap();
        let p3 = w.append(RecordKind::Message, Lsn(6), &big).unwrap();
        w.sync().unwrap();
        assert!(p1 < p2 && p2 < p3);
        let (recs, torn) = collect(&w.path);
        assert_eq!(torn, None);
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[1], (5, b"BEGIN 1".to_vec()));
        let mut r = SegmentReader::open(&w.path).unwrap();
        assert_eq!(r.read_at(p3).unwrap().payload.len(), big.len());
        assert_eq!(r.read_at(p2).unwrap().payload, b"BEGIN 1");
        assert_eq!(r.read_at(p1).unwrap().kind, RecordKind::Snapshot);
    }

    #[test]
    fn torn_tail_and_bad_crc_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(dir.path(), 1, Lineage::from_bytes([1; 16])).unwrap();
        w.append(RecordKind::Message, Lsn(1), b"BEGIN").unwrap();
        let p = w.append(RecordKind::Message, Lsn(2), b"COMMIT").unwrap();
        w.sync().unwrap();
        let full = std::fs::read(&w.path).unwrap();
        // Partial last record.
        std::fs::write(&w.path, &full[..full.len() - 3]).unwrap();
        assert_eq!(collect(&w.path), (vec![(1, b"BEGIN".to_vec())], Some(p)));
        // Flipped bit in the last record.
        let mut bad = full.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        std::fs::write(&w.path, &bad).unwrap();
        assert_eq!(collect(&w.path).1, Some(p));
    }

    #[test]
    fn headers_carry_the_lineage_and_version_1_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let lineage = Lineage::from_bytes([3; 16]);
        let mut w = SegmentWriter::create(dir.path(), 2, lineage).unwrap();
        w.append(RecordKind::Message, Lsn(1), b"BEGIN").unwrap();
        w.sync().unwrap();
        let s = SegmentScanner::open(&w.path).unwrap();
        assert_eq!((s.id, s.lineage), (2, Some(lineage)));
        assert_eq!(collect(&w.path).0, vec![(1, b"BEGIN".to_vec())]);
        // The same record behind a version 1 header (no lineage).
        let bytes = std::fs::read(&w.path).unwrap();
        let mut v1 = bytes[..HEADER_LEN_V1 as usize].to_vec();
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&bytes[HEADER_LEN as usize..]);
        let path = dir.path().join("v1.wal");
        std::fs::write(&path, v1).unwrap();
        let s = SegmentScanner::open(&path).unwrap();
        assert_eq!((s.id, s.lineage), (2, None));
        assert_eq!(collect(&path).0, vec![(1, b"BEGIN".to_vec())]);
    }

    /// Change records exist from version 3 on: in an older segment the kind is damage.
    #[test]
    fn a_change_record_in_a_version_2_segment_is_not_read_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::create(dir.path(), 4, Lineage::from_bytes([4; 16])).unwrap();
        let p = w.append(RecordKind::Change, Lsn(1), b"x").unwrap();
        w.sync().unwrap();
        assert_eq!(collect(&w.path), (vec![(1, b"x".to_vec())], None));
        let mut bytes = std::fs::read(&w.path).unwrap();
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        std::fs::write(&w.path, bytes).unwrap();
        assert_eq!(collect(&w.path), (vec![], Some(p)));
        let err = SegmentReader::open(&w.path)
            .unwrap()
            .read_at(p)
            .unwrap_err();
        assert!(err.to_string().contains("unknown record kind"), "{err}");
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(parse_segment_file_name("42.wal"), None);
        assert_eq!(parse_segment_file_name("00000000000000000042.tmp"), None);
    }
}
