//! The local segmented WAL: every message is made durable here before anything else happens.
//!
//! Owns the WAL directory: segment files (`<id:020>.wal`, format in `segment.rs`) and
//! `state.json`: the directory's [`Lineage`] (created, and fsynced, when the directory is first
//! opened, before any segment), the next segment id, and, as of the end of the newest complete
//! sealed segment, the table schemas and the LSN of its last COMMIT (where a live source resumes
//! once every segment is loaded and deleted).
//!
//! A record's LSN is its position in the source's WAL when it came from a replication slot, and
//! the next number of a local sequence when it came from text (`--stdin`).
//!
//! Segment ids are never reused within a lineage, whatever the exit: the id of a new segment is
//! reserved in `state.json` (fsynced) before its file is created. Targets key their ledgers on
//! (lineage, segment id, table), so a reused id would make a target skip new data as "already
//! applied". A directory from before lineages (version 1 segments) is upgraded on open: it gets
//! a lineage, and `legacy_below` records the first id it will issue; segments below it may have
//! ledger rows without a lineage ([`SegmentFile::legacy`]).
//!
//! Invariants:
//! - a record is appended before the batcher sees it; an LSN is confirmed upstream only after the
//!   record holding its COMMIT is fsynced (group commit: see [`crate::wal::ingest`]);
//! - the first record of a segment is a schema snapshot, so a segment can be re-batched alone;
//! - a segment is deleted only after the target confirmed every table in it
//!   ([`remove_segment`]);
//! - on open, the WAL is cut after the last whole transaction (a torn record, a bad CRC, or a
//!   transaction without its COMMIT at the tail is dropped, with a loud log); what remains is
//!   handed back for re-batching and re-delivery (`recover.rs`).
//!
//! Files: `segment.rs` (the record format, reader, scanner, writer over [`segment::SegmentIo`]),
//! `change.rs` (the pre-split INSERT / UPDATE record the CSV stage formats from), `digest.rs`
//! (a row change read without a parse tree: on the `--stdin` input thread, or by ingest for a
//! slot's messages),
//! `writer.rs` (the threaded file writer), `lineage.rs`, `lock.rs` (one process per directory),
//! `recover.rs`, and `ingest.rs`: the stage that appends the input here and feeds the batcher
//! (`ingest_digested.rs`: its side of a digested row change).

pub mod change;
pub mod digest;
pub mod ingest;
pub mod lineage;
pub mod lock;
mod recover;
pub mod segment;
pub mod writer;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::batch::schema::SchemaRegistry;
use crate::lsn::Lsn;
pub use lineage::Lineage;
use segment::{RecordKind, SegmentError, SegmentWriter};

pub const STATE_FILE: &str = "state.json";

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("WAL directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("WAL segment {path}: snapshot record is unreadable: {message}")]
    Snapshot { path: PathBuf, message: String },
    #[error(
        "WAL segment {path} belongs to another WAL directory (lineage {found}, this directory's is \
         {expected}); a segment copied between WAL directories would be loaded under the wrong \
         ledger key: move it back, or out of the way"
    )]
    ForeignSegment {
        path: PathBuf,
        found: String,
        expected: Lineage,
    },
    #[error(
        "WAL segment {path} is damaged at byte {pos} ({why}) and newer segments follow it: it was \
         fsynced before them, so this is corruption, not a crash's torn tail. re_dms will not cut \
         the WAL there (that would drop the newer segments, which may be confirmed upstream): \
         restore the file, or move it and the newer segments away knowing their changes are lost"
    )]
    Damaged {
        path: PathBuf,
        pos: u64,
        why: &'static str,
    },
    #[error("WAL directory {path} is in use by another re_dms process")]
    Locked { path: PathBuf },
    #[error("WAL directory {path}: cannot create its lineage id: {source}")]
    Lineage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn dir_err(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Dir {
        path: path.to_path_buf(),
        source,
    }
}

/// The first record of every segment: what the batcher knew when the segment opened.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// The segment starts inside a transaction (the previous one was closed early for memory).
    pub starts_in_txn: bool,
    /// Next local sequence number for input without LSNs.
    pub next_local_lsn: u64,
    pub schema: SchemaRegistry,
}

/// `state.json`: what must survive the deletion of every segment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WalState {
    /// The directory's lineage; absent only in a directory from before lineages (upgraded on
    /// open).
    #[serde(default)]
    pub lineage: Option<Lineage>,
    /// Segments with a lower id were written before the directory had a lineage.
    #[serde(default)]
    pub legacy_below: u64,
    /// No segment id below this is ever issued again (reserved before each segment is created).
    pub next_segment_id: u64,
    pub next_local_lsn: u64,
    /// The LSN of the last COMMIT in a complete sealed segment: with a live source, the source
    /// position from which streaming resumes once every segment is loaded and deleted.
    #[serde(default)]
    pub last_commit_lsn: Lsn,
    pub schema: SchemaRegistry,
}

/// A sealed segment: closed, fsynced, ready to be batched.
#[derive(Debug, Clone)]
pub struct SegmentFile {
    pub id: u64,
    pub path: PathBuf,
    pub len: u64,
    /// The WAL directory's lineage (the ledger key's first part).
    pub lineage: Lineage,
    /// Written before the directory had a lineage: a ledger row without a lineage may be this
    /// segment's.
    pub legacy: bool,
}

/// What [`Wal::open`] found on disk.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Segments to re-batch and re-deliver, oldest first (already cut at the last whole
    /// transaction).
    pub segments: Vec<SegmentFile>,
    /// The schema to start from when `segments` is empty.
    pub schema: SchemaRegistry,
    pub next_local_lsn: u64,
    /// The LSN of the last COMMIT the WAL holds durably (kept segments or `state.json`): a live
    /// source resumes streaming after it.
    pub last_commit_lsn: Lsn,
    /// Records dropped from the tail because their transaction never completed.
    pub discarded_records: u64,
}

/// Opens the file I/O of a new segment file (which it must create); see [`Wal::with_segment_io`].
pub type SegmentIoFactory =
    Box<dyn FnMut(&Path) -> std::io::Result<Box<dyn segment::SegmentIo>> + Send>;

/// The WAL directory and its open segment.
pub struct Wal {
    dir: PathBuf,
    current: Option<SegmentWriter>,
    next_id: u64,
    /// `state.json` as last written.
    state: WalState,
    lineage: Lineage,
    /// New segments' file I/O, when not the default threaded writer (tests inject faults).
    segment_io: Option<SegmentIoFactory>,
}

/// True for a `COMMIT` message (with or without xid / timestamp).
pub fn is_commit(msg: &[u8]) -> bool {
    msg.starts_with(b"COMMIT") && matches!(msg.get(6), None | Some(b' '))
}

/// True for a `BEGIN` message.
pub fn is_begin(msg: &[u8]) -> bool {
    msg.starts_with(b"BEGIN") && matches!(msg.get(5), None | Some(b' '))
}

impl Wal {
    /// Opens (creating) the WAL directory and recovers what a previous run left behind.
    pub fn open(dir: &Path) -> Result<(Self, Recovery), WalError> {
        std::fs::create_dir_all(dir).map_err(dir_err(dir))?;
        let ids = segment_ids(dir)?;
        let (mut state, existed) = match load_state_file(dir)? {
            Some(s) => (s, true),
            None => (WalState::default(), false),
        };
        let next_id = ids
            .last()
            .map_or(1, |id| id + 1)
            .max(state.next_segment_id)
            .max(1);
        let lineage = match state.lineage {
            Some(l) => l,
            None => {
                let l = Lineage::generate().map_err(|source| WalError::Lineage {
                    path: dir.to_path_buf(),
                    source,
                })?;
                if existed || !ids.is_empty() {
                    state.legacy_below = next_id;
                    tracing::info!(lineage = %l, legacy_below = next_id, "WAL directory from before lineages: upgraded");
                }
                state.lineage = Some(l);
                state.next_segment_id = next_id;
                // Durable before any segment of this lineage exists.
                save_state(dir, &state)?;
                l
            }
        };
        let recovery = recover::recover(dir, &ids, &state, lineage)?;
        Ok((
            Self {
                dir: dir.to_path_buf(),
                current: None,
                next_id,
                state,
                lineage,
                segment_io: None,
            },
            recovery,
        ))
    }

    /// New segments are written through what `factory` opens instead of the default threaded
    /// file writer: how tests put a disk that fails under the WAL.
    pub fn with_segment_io(mut self, factory: SegmentIoFactory) -> Self {
        self.segment_io = Some(factory);
        self
    }

    pub fn lineage(&self) -> Lineage {
        self.lineage
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts a new segment whose first record is `snapshot`.
    pub fn begin_segment(&mut self, snapshot: &Snapshot) -> Result<(), WalError> {
        debug_assert!(self.current.is_none());
        if self.next_id >= self.state.next_segment_id {
            // Reserve the id before the file exists: whatever the exit, it is never issued again.
            let mut state = self.state.clone();
            state.next_segment_id = self.next_id + 1;
            save_state(&self.dir, &state)?;
            self.state = state;
        }
        let mut w = match self.segment_io.as_mut() {
            None => SegmentWriter::create(&self.dir, self.next_id, self.lineage)?,
            Some(open) => {
                let path = self.dir.join(segment::segment_file_name(self.next_id));
                let io = open(&path).map_err(|source| SegmentError::Io {
                    path: path.clone(),
                    source,
                })?;
                SegmentWriter::with_io(path, self.next_id, self.lineage, io)?
            }
        };
        self.next_id += 1;
        let json = serde_json::to_vec(snapshot).map_err(|e| WalError::Snapshot {
            path: w.path.clone(),
            message: e.to_string(),
        })?;
        w.append(RecordKind::Snapshot, Lsn(0), &json)?;
        self.current = Some(w);
        Ok(())
    }

    pub fn has_segment(&self) -> bool {
        self.current.is_some()
    }

    fn current(&mut self) -> &mut SegmentWriter {
        self.current.as_mut().expect("begin_segment before append")
    }

    /// Appends a message; returns its position in the current segment.
    pub fn append(&mut self, lsn: Lsn, raw: &[u8]) -> Result<u64, WalError> {
        self.append_parts(RecordKind::Message, lsn, &[raw])
    }

    /// Appends a pre-split change: `prefix` from [`change::encode_prefix`], then the message
    /// `raw` it describes; returns its position in the current segment.
    pub fn append_change(&mut self, lsn: Lsn, prefix: &[u8], raw: &[u8]) -> Result<u64, WalError> {
        self.append_parts(RecordKind::Change, lsn, &[prefix, raw])
    }

    fn append_parts(
        &mut self,
        kind: RecordKind,
        lsn: Lsn,
        parts: &[&[u8]],
    ) -> Result<u64, WalError> {
        let w = self.current();
        let before = w.len();
        let pos = w.append_parts(kind, lsn, parts)?;
        crate::metrics::WAL_BYTES_WRITTEN.add(w.len() - before);
        Ok(pos)
    }

    /// Bytes in the current segment.
    pub fn segment_len(&self) -> u64 {
        self.current.as_ref().map_or(0, SegmentWriter::len)
    }

    pub fn current_id(&self) -> Option<u64> {
        self.current.as_ref().map(|w| w.id)
    }

    pub fn current_path(&self) -> Option<&Path> {
        self.current.as_ref().map(|w| w.path.as_path())
    }

    pub fn needs_sync(&self) -> bool {
        self.current.as_ref().is_some_and(SegmentWriter::needs_sync)
    }

    /// Whether all of the open segment is known durable (none open: yes).
    pub fn is_durable(&self) -> bool {
        self.current.as_ref().is_none_or(SegmentWriter::is_durable)
    }

    /// fsync the open segment (group commit point).
    pub fn sync(&mut self) -> Result<(), WalError> {
        if let Some(w) = self.current.as_mut() {
            w.sync()?;
        }
        Ok(())
    }

    /// Starts an fsync of the open segment without waiting for it (group commit under load);
    /// `durable` runs once it is done (`SegmentWriter::sync_behind`).
    pub fn sync_behind(&mut self, durable: Box<dyn FnOnce() + Send>) -> Result<(), WalError> {
        if let Some(w) = self.current.as_mut() {
            w.sync_behind(durable)?;
        }
        Ok(())
    }

    /// Makes appended records readable through other handles (for re-reading the open segment).
    pub fn flush(&mut self) -> Result<(), WalError> {
        if let Some(w) = self.current.as_mut() {
            w.flush()?;
        }
        Ok(())
    }

    /// Closes the open segment: fsync, then hand it out for batching. When the segment ends at
    /// a transaction boundary (`complete`), `schema`, `next_local_lsn` and `last_commit_lsn`
    /// are saved in `state.json` for the day no segment is left. A segment closed inside a transaction does
    /// not save them: recovery may still cut that transaction away, and the saved schema must
    /// never run ahead of what will be loaded (its id stays reserved all the same).
    pub fn seal(
        &mut self,
        schema: &SchemaRegistry,
        next_local_lsn: u64,
        last_commit_lsn: Lsn,
        complete: bool,
    ) -> Result<Option<SegmentFile>, WalError> {
        let Some(mut w) = self.current.take() else {
            return Ok(None);
        };
        w.sync()?;
        if complete {
            let state = WalState {
                next_segment_id: self.next_id.max(self.state.next_segment_id),
                next_local_lsn,
                last_commit_lsn: last_commit_lsn.max(self.state.last_commit_lsn),
                schema: schema.clone(),
                ..self.state.clone()
            };
            save_state(&self.dir, &state)?;
            self.state = state;
        }
        crate::metrics::SEGMENTS_SEALED.inc();
        Ok(Some(SegmentFile {
            id: w.id,
            path: w.path.clone(),
            len: w.len(),
            lineage: self.lineage,
            legacy: w.id < self.state.legacy_below,
        }))
    }
}

/// The ids of the segment files in `dir`, sorted.
pub fn segment_ids(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(dir_err(dir))? {
        let entry = entry.map_err(dir_err(dir))?;
        if let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(segment::parse_segment_file_name)
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Deletes a segment the target has fully confirmed.
pub fn remove_segment(dir: &Path, id: u64) -> Result<(), WalError> {
    let path = dir.join(segment::segment_file_name(id));
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(WalError::Dir { path, source }),
    }
}

fn save_state(dir: &Path, state: &WalState) -> Result<(), WalError> {
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let json = serde_json::to_vec_pretty(state).map_err(|e| WalError::Snapshot {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, &json)?;
        f.sync_data()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(dir_err(dir))
}

/// Reads `state.json` (defaults when absent).
pub fn load_state(dir: &Path) -> Result<WalState, WalError> {
    Ok(load_state_file(dir)?.unwrap_or_default())
}

/// Reads `state.json`; `None` when absent.
fn load_state_file(dir: &Path) -> Result<Option<WalState>, WalError> {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| WalError::Snapshot {
                path,
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(WalError::Dir { path, source }),
    }
}

#[cfg(test)]
mod fault_tests;

#[cfg(test)]
mod tests {
    use super::segment::{Next, SegmentScanner};
    use super::*;

    fn write_segment(wal: &mut Wal, starts_in_txn: bool, msgs: &[&str]) -> SegmentFile {
        let snap = Snapshot {
            starts_in_txn,
            ..Snapshot::default()
        };
        wal.begin_segment(&snap).unwrap();
        for (i, m) in msgs.iter().enumerate() {
            wal.append(Lsn(i as u64 + 1), m.as_bytes()).unwrap();
        }
        wal.seal(&SchemaRegistry::default(), 1, Lsn(0), !starts_in_txn)
            .unwrap()
            .unwrap()
    }

    fn messages(path: &Path) -> Vec<String> {
        let mut s = SegmentScanner::open(path).unwrap();
        let mut out = Vec::new();
        while let Next::Record(r) = s.next_record().unwrap() {
            if r.kind == RecordKind::Message {
                out.push(String::from_utf8(r.payload.to_vec()).unwrap());
            }
        }
        out
    }

    /// A sealed segment was fsynced before the next one existed: damage there is corruption,
    /// refused by name, and nothing is cut or deleted.
    #[test]
    fn damage_before_the_newest_segment_is_refused_not_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        let first = write_segment(&mut wal, false, &["BEGIN 1", "COMMIT 1"]);
        write_segment(&mut wal, false, &["BEGIN 2", "COMMIT 2"]);
        drop(wal);
        let mut bytes = std::fs::read(&first.path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&first.path, &bytes).unwrap();
        let err = Wal::open(dir.path()).err().expect("damage refused");
        assert!(matches!(err, WalError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("newer segments follow"), "{err}");
        assert_eq!(segment_ids(dir.path()).unwrap().len(), 2, "nothing deleted");
    }

    #[test]
    fn recovery_cuts_incomplete_transaction_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, rec) = Wal::open(dir.path()).unwrap();
        assert!(rec.segments.is_empty());
        write_segment(
            &mut wal,
            false,
            &[
                "BEGIN 1",
                "table a.b: DELETE: id[integer]:1",
                "COMMIT 1",
                "BEGIN 2",
                "x",
            ],
        );
        write_segment(&mut wal, true, &["y", "z"]);
        drop(wal);
        let (_wal, rec) = Wal::open(dir.path()).unwrap();
        assert_eq!(rec.segments.len(), 1);
        assert_eq!(rec.discarded_records, 4);
        assert_eq!(
            messages(&rec.segments[0].path),
            ["BEGIN 1", "table a.b: DELETE: id[integer]:1", "COMMIT 1"]
        );
    }

    #[test]
    fn recovery_keeps_transaction_completed_in_later_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        write_segment(&mut wal, false, &["BEGIN 1", "x"]);
        write_segment(&mut wal, true, &["y", "COMMIT 1", "BEGIN 2"]);
        drop(wal);
        let (mut wal, rec) = Wal::open(dir.path()).unwrap();
        assert_eq!(rec.segments.len(), 2);
        assert_eq!(messages(&rec.segments[1].path), ["y", "COMMIT 1"]);
        // New segments get fresh ids.
        let s = write_segment(&mut wal, false, &[]);
        assert_eq!(s.id, 3);
    }

    #[test]
    fn segment_ids_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        let s = write_segment(&mut wal, false, &["BEGIN 1", "COMMIT 1"]);
        remove_segment(dir.path(), s.id).unwrap();
        drop(wal);
        let (mut wal, rec) = Wal::open(dir.path()).unwrap();
        assert!(rec.segments.is_empty());
        assert_eq!(write_segment(&mut wal, false, &[]).id, s.id + 1);
    }

    #[test]
    fn ids_are_reserved_before_use_even_when_a_segment_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        let lineage = wal.lineage();
        let a = write_segment(&mut wal, false, &["BEGIN 1", "COMMIT 1"]);
        remove_segment(dir.path(), a.id).unwrap();
        // A crash while a segment is open inside a transaction: it is never sealed.
        wal.begin_segment(&Snapshot::default()).unwrap();
        let b = wal.current_id().unwrap();
        wal.append(Lsn(5), b"BEGIN 2").unwrap();
        wal.append(Lsn(6), b"x").unwrap();
        wal.sync().unwrap();
        drop(wal);
        let (mut wal, rec) = Wal::open(dir.path()).unwrap();
        assert!(rec.segments.is_empty(), "the open transaction is cut");
        assert_eq!(wal.lineage(), lineage, "the lineage survives reopening");
        assert_eq!(write_segment(&mut wal, false, &[]).id, b + 1);
    }

    #[test]
    fn a_new_directory_gets_a_new_lineage_before_any_segment() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        let (wal1, _) = Wal::open(one.path()).unwrap();
        let (wal2, _) = Wal::open(two.path()).unwrap();
        assert_ne!(wal1.lineage(), wal2.lineage());
        assert_eq!(
            load_state(one.path()).unwrap().lineage,
            Some(wal1.lineage())
        );
    }

    #[test]
    fn a_directory_from_before_lineages_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        // Version 1: 20-byte header, and a state.json without lineage.
        let mut v1 = Vec::new();
        v1.extend_from_slice(segment::MAGIC);
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&4u64.to_le_bytes());
        let mut record = |lsn: u64, kind: u8, payload: &[u8]| {
            let mut body = vec![kind];
            body.extend_from_slice(&lsn.to_le_bytes());
            body.extend_from_slice(payload);
            v1.extend_from_slice(&(body.len() as u32).to_le_bytes());
            v1.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
            v1.extend_from_slice(&body);
        };
        record(
            0,
            2,
            br#"{"starts_in_txn":false,"next_local_lsn":1,"schema":{"tables":{}}}"#,
        );
        record(1, 1, b"BEGIN 1");
        record(2, 1, b"COMMIT 1");
        std::fs::write(dir.path().join(segment::segment_file_name(4)), &v1).unwrap();
        std::fs::write(
            dir.path().join(STATE_FILE),
            br#"{"next_segment_id":4,"next_local_lsn":1,"schema":{"tables":{}}}"#,
        )
        .unwrap();
        let (mut wal, rec) = Wal::open(dir.path()).unwrap();
        assert_eq!(rec.segments.len(), 1);
        assert!(
            rec.segments[0].legacy,
            "a version 1 segment may have lineage-less ledger rows"
        );
        assert_eq!(rec.segments[0].lineage, wal.lineage());
        let state = load_state(dir.path()).unwrap();
        assert_eq!(state.legacy_below, 5);
        let next = write_segment(&mut wal, false, &["BEGIN 2", "COMMIT 2"]);
        assert_eq!(next.id, 5);
        assert!(!next.legacy);
    }

    #[test]
    fn a_segment_of_another_lineage_is_refused() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        let (mut wal1, _) = Wal::open(one.path()).unwrap();
        let s = write_segment(&mut wal1, false, &["BEGIN 1", "COMMIT 1"]);
        let (mut wal2, _) = Wal::open(two.path()).unwrap();
        write_segment(&mut wal2, false, &["BEGIN 1", "COMMIT 1"]);
        drop(wal2);
        std::fs::copy(&s.path, two.path().join(segment::segment_file_name(9))).unwrap();
        let err = Wal::open(two.path()).err().unwrap().to_string();
        assert!(err.contains("another WAL directory"), "{err}");
    }

    #[test]
    fn a_segment_of_an_unknown_version_is_refused_not_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        let s = write_segment(&mut wal, false, &["BEGIN 1", "COMMIT 1"]);
        drop(wal);
        let mut bytes = std::fs::read(&s.path).unwrap();
        bytes[8..12].copy_from_slice(&9u32.to_le_bytes());
        std::fs::write(&s.path, &bytes).unwrap();
        let err = Wal::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("format version 9"), "{err}");
        assert!(s.path.exists());
    }

    #[test]
    fn torn_record_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        let s = write_segment(
            &mut wal,
            false,
            &["BEGIN 1", "COMMIT 1", "BEGIN 2", "COMMIT 2"],
        );
        let bytes = std::fs::read(&s.path).unwrap();
        std::fs::write(&s.path, &bytes[..bytes.len() - 2]).unwrap();
        drop(wal);
        let (_, rec) = Wal::open(dir.path()).unwrap();
        assert_eq!(messages(&rec.segments[0].path), ["BEGIN 1", "COMMIT 1"]);
        assert_eq!(rec.discarded_records, 1);
    }

    #[test]
    fn commit_and_begin_detection() {
        assert!(is_commit(b"COMMIT"));
        assert!(is_commit(b"COMMIT 784 (at 2026-11-23 07:45:04+00)"));
        assert!(!is_commit(b"COMMITTED"));
        assert!(is_begin(b"BEGIN 5"));
        assert!(!is_begin(b"table BEGIN"));
    }
}
