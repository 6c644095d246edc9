//! Recovery on open: what a previous run left in the WAL directory. Every segment is scanned in
//! order; the WAL is cut just after the last record that ends outside a transaction (a torn
//! record, a bad CRC, a header that never reached the disk, or a transaction without its COMMIT
//! at the tail is dropped, with a loud log); segments before the cut are handed back for
//! re-batching, the one holding it is truncated there, the rest deleted. Damage in any segment
//! but the newest is refused (it was fsynced before the next one existed: corruption, not a
//! torn tail). Kept segments are fsynced before recovery reports the last COMMIT they hold,
//! since after a kill -9 their tail may be only in the page cache.

use std::path::Path;

use crate::lsn::Lsn;

use super::segment::{self, Next, RecordKind, SegmentError, SegmentScanner};
use super::{
    dir_err, is_begin, is_commit, Lineage, Recovery, SegmentFile, Snapshot, WalError, WalState,
};

/// Where the WAL may be cut: just after this record, everything before is whole transactions.
#[derive(Debug, Clone, Copy)]
struct Cut {
    seg_index: usize,
    end: u64,
    /// Messages of that segment before the cut (none: the segment is dropped whole).
    messages: u64,
}

/// A segment's header must carry this directory's lineage; a version 1 header (none) is
/// accepted only below `legacy_below`.
fn check_lineage(
    scanner: &SegmentScanner,
    state: &WalState,
    lineage: Lineage,
) -> Result<(), WalError> {
    let found = match scanner.lineage {
        Some(l) if l == lineage => return Ok(()),
        None if scanner.id < state.legacy_below => return Ok(()),
        Some(l) => l.to_string(),
        None => "none (a version 1 segment)".to_string(),
    };
    Err(WalError::ForeignSegment {
        path: scanner.path.clone(),
        found,
        expected: lineage,
    })
}

/// Scans every segment, cuts after the last whole transaction, deletes what lies beyond.
pub(super) fn recover(
    dir: &Path,
    ids: &[u64],
    state: &WalState,
    lineage: Lineage,
) -> Result<Recovery, WalError> {
    let mut scan = Scan::default();
    for (seg_index, &id) in ids.iter().enumerate() {
        scan.segment(dir, seg_index, id, state, lineage)?;
        if let Some((pos, why)) = scan.torn {
            // Every segment but the newest was fsynced before the next one was created: damage
            // there is corruption, not a crash's torn tail, and cutting would delete later
            // segments whose changes may already be confirmed upstream.
            if seg_index + 1 < ids.len() {
                return Err(WalError::Damaged {
                    path: dir.join(segment::segment_file_name(id)),
                    pos,
                    why,
                });
            }
            break;
        }
    }
    let mut recovery = Recovery {
        schema: state.schema.clone(),
        next_local_lsn: state.next_local_lsn,
        ..Recovery::default()
    };
    if let Some(snap) = &scan.first_snapshot {
        recovery.schema = snap.schema.clone();
        recovery.next_local_lsn = recovery.next_local_lsn.max(snap.next_local_lsn);
    }
    recovery.next_local_lsn = recovery.next_local_lsn.max(scan.last_lsn + 1);
    recovery.last_commit_lsn = state.last_commit_lsn.max(scan.last_commit_lsn);
    recovery.discarded_records = scan.records_after_cut;
    if scan.records_after_cut > 0 {
        tracing::warn!(
            records = scan.records_after_cut,
            "WAL: dropping the tail of a transaction that never completed; it was never confirmed upstream"
        );
        crate::metrics::WAL_RECORDS_DISCARDED.add(scan.records_after_cut);
    }
    recovery.segments = apply_cut(dir, ids, scan.cut, state, lineage)?;
    Ok(recovery)
}

/// What [`recover`] learns reading the segments in order.
#[derive(Default)]
struct Scan {
    first_snapshot: Option<Snapshot>,
    /// After the last record that ends outside a transaction.
    cut: Option<Cut>,
    in_txn: bool,
    records_after_cut: u64,
    /// A torn record or header (where, why): nothing after it counts.
    torn: Option<(u64, &'static str)>,
    last_lsn: u64,
    /// The last COMMIT before the cut.
    last_commit_lsn: Lsn,
}

impl Scan {
    /// Reads one segment's records, moving the cut along.
    fn segment(
        &mut self,
        dir: &Path,
        seg_index: usize,
        id: u64,
        state: &WalState,
        lineage: Lineage,
    ) -> Result<(), WalError> {
        let path = dir.join(segment::segment_file_name(id));
        let mut scanner = match SegmentScanner::open(&path) {
            Ok(s) => s,
            Err(SegmentError::BadHeader { .. }) => {
                // Created but the header never reached the disk: an empty tail segment.
                self.torn = Some((0, "header never written"));
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        check_lineage(&scanner, state, lineage)?;
        let mut seg_messages = 0u64;
        loop {
            let r = match scanner.next_record()? {
                Next::End => return Ok(()),
                Next::Torn { pos, why } => {
                    tracing::warn!(
                        segment = id,
                        pos,
                        why,
                        "WAL: torn record at the tail, cutting"
                    );
                    self.torn = Some((pos, why));
                    return Ok(());
                }
                Next::Record(r) => r,
            };
            match r.kind {
                RecordKind::Snapshot => {
                    let snap: Snapshot =
                        serde_json::from_slice(r.payload).map_err(|e| WalError::Snapshot {
                            path: path.clone(),
                            message: e.to_string(),
                        })?;
                    if self.first_snapshot.is_none() {
                        self.in_txn = snap.starts_in_txn;
                        self.first_snapshot = Some(snap);
                    }
                }
                // A change record is an INSERT or UPDATE: never a transaction boundary.
                RecordKind::Change => {
                    seg_messages += 1;
                    self.last_lsn = self.last_lsn.max(r.lsn.0);
                    self.records_after_cut += 1;
                }
                RecordKind::Message => {
                    seg_messages += 1;
                    self.last_lsn = self.last_lsn.max(r.lsn.0);
                    self.records_after_cut += 1;
                    if is_begin(r.payload) {
                        self.in_txn = true;
                    } else if is_commit(r.payload) {
                        self.in_txn = false;
                        self.last_commit_lsn = r.lsn;
                    }
                }
            }
            if !self.in_txn {
                self.cut = Some(Cut {
                    seg_index,
                    end: r.end,
                    messages: seg_messages,
                });
                self.records_after_cut = 0;
            }
        }
    }
}

/// Keeps the segments up to the cut (truncating the one holding it) and deletes the rest;
/// returns those kept, in order.
fn apply_cut(
    dir: &Path,
    ids: &[u64],
    cut: Option<Cut>,
    state: &WalState,
    lineage: Lineage,
) -> Result<Vec<SegmentFile>, WalError> {
    let mut kept = Vec::new();
    for (seg_index, &id) in ids.iter().enumerate() {
        let path = dir.join(segment::segment_file_name(id));
        let len = match cut {
            Some(c) if seg_index < c.seg_index => {
                std::fs::metadata(&path).map_err(dir_err(dir))?.len()
            }
            Some(c) if seg_index == c.seg_index && c.messages > 0 => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(dir_err(dir))?;
                if f.metadata().map_err(dir_err(dir))?.len() != c.end {
                    f.set_len(c.end).map_err(dir_err(dir))?;
                    f.sync_all().map_err(dir_err(dir))?;
                }
                c.end
            }
            _ => {
                std::fs::remove_file(&path).map_err(dir_err(dir))?;
                continue;
            }
        };
        // What a crash left in the page cache is on disk before anything is confirmed from it.
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(dir_err(dir))?;
        kept.push(SegmentFile {
            id,
            path,
            len,
            lineage,
            legacy: id < state.legacy_below,
        });
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(dir_err(dir))?;
    Ok(kept)
}
