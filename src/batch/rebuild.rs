//! Rebuilding a batch from a sealed WAL segment: the one way a batch comes back from disk, used
//! on start for segments a previous run left (ingest's replay) and for segments spilled while
//! the sink was behind (the CSV stage).
//!
//! A segment starts with a schema snapshot record, so it is re-batched alone: a fresh batcher
//! starts from that schema and indexes every record again, exactly as ingest did the first time.

use crate::batch::schema::SchemaRegistry;
use crate::batch::{Batch, BatchError, Batcher, RecPos, RecordSource};
use crate::lsn::Lsn;
use crate::source::decoding::{parse_message, Message, ParseError};
use crate::wal::segment::{Next, RecordKind, SegmentError, SegmentReader, SegmentScanner};
use crate::wal::{SegmentFile, Snapshot};

use super::schema::KeySource;

/// Keys known before the stream shows any, by `schema.table`: `[tables."s.t"] primary_key`,
/// then the source catalog's as read at start; and, for a table neither names (created or
/// renamed since), the source catalog asked when a batch needs that table's key.
/// `(schema, table)` -> the source catalog's key of that table now.
pub type AskCatalog = std::sync::Arc<dyn Fn(&str, &str) -> Option<Vec<String>> + Send + Sync>;

#[derive(Clone, Default)]
pub struct KnownKeys {
    pub keys: std::collections::BTreeMap<String, (Vec<String>, KeySource)>,
    /// `(schema, table)` -> the catalog's key now; `None` without a catalog.
    pub ask_catalog: Option<AskCatalog>,
}

impl KnownKeys {
    /// Only these keys, no catalog to ask.
    pub fn of(keys: std::collections::BTreeMap<String, (Vec<String>, KeySource)>) -> Self {
        Self {
            keys,
            ask_catalog: None,
        }
    }

    /// The source catalog's key of `schema.table` now, when there is a catalog to ask.
    pub fn from_catalog(&self, schema: &str, table: &str) -> Option<Vec<String>> {
        self.ask_catalog.as_ref().and_then(|ask| ask(schema, table))
    }
}

impl std::fmt::Debug for KnownKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownKeys")
            .field("keys", &self.keys)
            .field("ask_catalog", &self.ask_catalog.is_some())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("WAL segment {}: bad snapshot record: {message}", path.display())]
    Snapshot {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("WAL segment {segment}, record at byte {pos}: {source}")]
    Parse {
        segment: u64,
        pos: u64,
        #[source]
        source: ParseError,
    },
    #[error("WAL segment {segment}: {source}")]
    Batch {
        segment: u64,
        #[source]
        source: BatchError,
    },
}

/// A segment's batch, rebuilt.
#[derive(Debug)]
pub struct Rebuilt {
    pub batch: Batch,
    /// LSNs of the first and last message records (zero for a segment without any).
    pub first_lsn: Lsn,
    pub last_lsn: Lsn,
    /// Whether the segment starts and ends inside a transaction.
    pub starts_in_txn: bool,
    pub ends_in_txn: bool,
    /// The schema as of the segment's end (where the next segment starts).
    pub schema: SchemaRegistry,
    pub records: u64,
}

/// Reads messages back from a sealed segment by position.
pub struct SealedSource(pub SegmentReader);

impl RecordSource for SealedSource {
    fn message_at(&mut self, pos: RecPos) -> Result<Vec<u8>, BatchError> {
        Ok(self.0.text_at(pos)?.to_vec())
    }
}

/// Re-batches `file` from its snapshot record on, with a batch index budget of `max_mem`.
pub fn rebuild(
    file: &SegmentFile,
    known_keys: &KnownKeys,
    max_mem: usize,
) -> Result<Rebuilt, RebuildError> {
    let mut scanner = SegmentScanner::open(&file.path)?;
    let mut src = SealedSource(SegmentReader::open(&file.path)?);
    let batch_err = |source| RebuildError::Batch {
        segment: file.id,
        source,
    };
    let mut batcher: Option<Batcher> = None;
    let mut out = Rebuilt {
        batch: Batch::default(),
        first_lsn: Lsn(0),
        last_lsn: Lsn(0),
        starts_in_txn: false,
        ends_in_txn: false,
        schema: SchemaRegistry::default(),
        records: 0,
    };
    while let Next::Record(rec) = scanner.next_record()? {
        if rec.kind == RecordKind::Snapshot {
            let snap: Snapshot =
                serde_json::from_slice(rec.payload).map_err(|e| RebuildError::Snapshot {
                    path: file.path.clone(),
                    message: e.to_string(),
                })?;
            out.starts_in_txn = snap.starts_in_txn;
            out.ends_in_txn = snap.starts_in_txn;
            batcher = Some(Batcher::new(snap.schema, known_keys.clone(), max_mem));
            continue;
        }
        let Some(b) = batcher.as_mut() else {
            return Err(RebuildError::Snapshot {
                path: file.path.clone(),
                message: "no snapshot record before the first message".into(),
            });
        };
        let text = rec
            .text()
            .ok_or(RebuildError::Segment(SegmentError::BadRecord {
                path: file.path.clone(),
                pos: rec.pos,
                why: "a change record that does not hold its message",
            }))?;
        let msg = parse_message(text, 0).map_err(|source| RebuildError::Parse {
            segment: file.id,
            pos: rec.pos,
            source,
        })?;
        match msg {
            Message::Begin { .. } => out.ends_in_txn = true,
            Message::Commit { .. } => out.ends_in_txn = false,
            _ => {}
        }
        if out.records == 0 {
            out.first_lsn = rec.lsn;
        }
        out.records += 1;
        out.last_lsn = rec.lsn;
        b.apply(&msg, rec.pos, &mut src).map_err(batch_err)?;
    }
    if let Some(b) = batcher.as_mut() {
        out.batch = b.take(&mut src).map_err(batch_err)?;
        out.schema = b.registry().clone();
    }
    Ok(out)
}
