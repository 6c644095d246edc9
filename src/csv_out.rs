//! The CSV stage: turns a sealed segment's batch into gzipped CSV files and a manifest.
//!
//! Owns the spool directory `<wal.directory>/spool/<segment>/`. For each table and load step it
//! writes up to three kinds of file (see [`crate::manifest`]): `delete` (key columns), `upsert`
//! (full rows) and one `update` file per distinct set of known columns (TOAST-unchanged updates).
//! Values are read back from the segment file by position (the batcher kept positions only),
//! in file order, and converted per [`crate::typemap`].
//!
//! Tables are written in parallel (`workers` threads); each file is one gzip stream at level 1:
//! on a 2-core host the CPU is the bottleneck and level 1 keeps ~4x compression of CSV text at
//! several times the speed of the default level 6 (see BENCHMARKS.md).
//!
//! The spool is disposable: after a crash it is rebuilt from the WAL, so nothing here is fsynced;
//! a target that keeps the files (the local target) makes them durable itself.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::batch::table_batch::decode_key;
use crate::batch::{Batch, RowState, Step, TableBatch, TableLoad};
use crate::decoding::{parse_message, Message, ParseError, Value};
use crate::lsn::Lsn;
use crate::manifest::{
    FileKind, FileManifest, Manifest, StepManifest, TableManifest, MANIFEST_VERSION,
};
use crate::metrics;
use crate::typemap::{value_kind, write_field, ValueKind};
use crate::wal::segment::{RecordKind, SegmentError, SegmentReader};
use crate::wal::SegmentFile;

/// gzip level of every CSV file.
pub const GZIP_LEVEL: u32 = 1;
/// Rows are formatted into a buffer and handed to the compressor in pieces of this size.
const CHUNK_BYTES: usize = 128 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("segment {segment}, record at byte {pos}: {source}")]
    Parse {
        segment: u64,
        pos: u64,
        #[source]
        source: ParseError,
    },
    #[error("segment {segment}, record at byte {pos}: {what}")]
    Record {
        segment: u64,
        pos: u64,
        what: String,
    },
}

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

/// `<root>/<segment:020>`
pub fn spool_dir(root: &Path, segment: u64) -> PathBuf {
    root.join(format!("{segment:020}"))
}

/// A file-name-safe, collision-free form of an identifier: `[A-Za-z0-9_-]` kept, everything
/// else (incl. `.`) as `%XX`.
pub fn file_safe(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len());
    for b in ident.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Writes every table of `seg` under `spool_root` and returns the manifest.
pub fn write_segment(
    seg: SealedSegment,
    spool_root: &Path,
    workers: usize,
) -> Result<SegmentOutput, CsvError> {
    let dir = spool_dir(spool_root, seg.file.id);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CsvError::Io { path, source }
    };
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&dir)(e)),
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let tables = seg.batch.tables;
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<TableManifest, CsvError>)>> = Mutex::new(Vec::new());
    let workers = workers.clamp(1, tables.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut reader = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(table) = tables.get(i) else { break };
                    let r = write_table(table, &seg.file, &dir, &mut reader);
                    results
                        .lock()
                        .expect("no panics while holding the lock")
                        .push((i, r));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("threads joined");
    results.sort_by_key(|(i, _)| *i);
    let tables = results
        .into_iter()
        .map(|(_, r)| r)
        .collect::<Result<Vec<_>, _>>()?;
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        segment: seg.file.id,
        first_lsn: seg.first_lsn,
        last_lsn: seg.last_lsn,
        changes: seg.batch.changes,
        tables,
    };
    Ok(SegmentOutput {
        segment: seg.file.id,
        dir,
        manifest,
        complete: seg.complete,
    })
}

fn write_table(
    table: &TableBatch,
    segment: &SegmentFile,
    dir: &Path,
    reader: &mut Option<SegmentReader>,
) -> Result<TableManifest, CsvError> {
    let _span =
        tracing::debug_span!("csv", table = %table.qualified(), segment = segment.id).entered();
    let prefix = format!("{}.{}", file_safe(&table.schema), file_safe(&table.name));
    let mut steps = Vec::with_capacity(table.steps.len());
    let mut key = Vec::new();
    for (n, step) in table.steps.iter().enumerate() {
        match step {
            Step::Schema(op) => steps.push(StepManifest::from(op)),
            Step::Truncate => steps.push(StepManifest::Truncate),
            Step::Load(load) => {
                if reader.is_none() {
                    *reader = Some(SegmentReader::open(&segment.path)?);
                }
                let r = reader.as_mut().expect("opened above");
                let files = write_load(load, &format!("{prefix}.{n}"), dir, r, segment.id)?;
                key.clone_from(&load.key);
                steps.push(StepManifest::Load {
                    columns: load.columns.iter().map(Into::into).collect(),
                    key: load.key.clone(),
                    files,
                });
            }
        }
    }
    Ok(TableManifest {
        schema: table.schema.clone(),
        name: table.name.clone(),
        key,
        steps,
    })
}

/// One gzipped CSV file being written.
struct CsvFile {
    path: PathBuf,
    name: String,
    enc: GzEncoder<File>,
    buf: Vec<u8>,
    rows: u64,
}

impl CsvFile {
    fn create(dir: &Path, name: String) -> Result<Self, CsvError> {
        let path = dir.join(&name);
        let file = File::create(&path).map_err(|source| CsvError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            name,
            enc: GzEncoder::new(file, Compression::new(GZIP_LEVEL)),
            buf: Vec::with_capacity(CHUNK_BYTES + 64 * 1024),
            rows: 0,
        })
    }

    /// Call after a row's fields were appended to `buf`.
    fn end_row(&mut self) -> Result<(), CsvError> {
        self.buf.push(b'\n');
        self.rows += 1;
        if self.buf.len() >= CHUNK_BYTES {
            self.enc
                .write_all(&self.buf)
                .map_err(|source| CsvError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            self.buf.clear();
        }
        Ok(())
    }

    fn finish(
        mut self,
        kind: FileKind,
        match_columns: Vec<String>,
        columns: Vec<String>,
    ) -> Result<FileManifest, CsvError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CsvError::Io { path, source }
        };
        self.enc.write_all(&self.buf).map_err(err(&self.path))?;
        let file = self.enc.finish().map_err(err(&self.path))?;
        let bytes = file.metadata().map_err(err(&self.path))?.len();
        metrics::ROWS_WRITTEN.add(self.rows);
        Ok(FileManifest {
            kind,
            path: self.name,
            match_columns,
            columns,
            rows: self.rows,
            bytes,
        })
    }
}

/// A value copied out of a record, for rows assembled from several records.
#[derive(Debug, Clone)]
enum Owned {
    Missing,
    Null,
    Unquoted(Vec<u8>),
    Quoted(Vec<u8>),
    Bits(Vec<u8>),
}

impl Owned {
    fn from_value(v: &Value<'_>) -> Self {
        match *v {
            Value::Null => Owned::Null,
            Value::UnchangedToast => Owned::Missing,
            Value::Unquoted(b) => Owned::Unquoted(b.to_vec()),
            Value::Quoted(b) => Owned::Quoted(b.to_vec()),
            Value::Bits(b) => Owned::Bits(b.to_vec()),
        }
    }
    fn as_value(&self) -> Value<'_> {
        match self {
            Owned::Missing => Value::UnchangedToast,
            Owned::Null => Value::Null,
            Owned::Unquoted(b) => Value::Unquoted(b),
            Owned::Quoted(b) => Value::Quoted(b),
            Owned::Bits(b) => Value::Bits(b),
        }
    }
}

/// A key value decoded from the batcher's index, as a [`Value`] of the column's kind.
fn key_value(kind: ValueKind, raw: Option<&[u8]>) -> Value<'_> {
    match (raw, kind) {
        (None, _) => Value::Null,
        (
            Some(b),
            ValueKind::Integer | ValueKind::Numeric | ValueKind::Float | ValueKind::Boolean,
        ) => Value::Unquoted(b),
        (Some(b), _) => Value::Quoted(b),
    }
}

fn write_key(out: &mut Vec<u8>, kinds: &[ValueKind], key: &[u8]) {
    for (i, (kind, raw)) in kinds.iter().zip(decode_key(key)).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_field(out, *kind, &key_value(*kind, raw));
    }
}

fn write_load(
    load: &TableLoad,
    prefix: &str,
    dir: &Path,
    reader: &mut SegmentReader,
    segment: u64,
) -> Result<Vec<FileManifest>, CsvError> {
    let kinds: Vec<ValueKind> = load
        .columns
        .iter()
        .map(|c| value_kind(&c.pg_type))
        .collect();
    let key_kinds: Vec<ValueKind> = load.key_idx.iter().map(|&i| kinds[i]).collect();
    let names: Vec<String> = load.columns.iter().map(|c| c.name.clone()).collect();
    let mut files = Vec::new();

    // Deletes: straight from the index.
    let mut deletes: Option<CsvFile> = None;
    // Rows whose values live in the segment, in file order of their last record.
    let mut reads: Vec<(u64, &[u8], &RowState)> = Vec::new();
    for (key, entry) in &load.rows {
        match &entry.state {
            RowState::Deleted if entry.pre_existed => {
                let f = match &mut deletes {
                    Some(f) => f,
                    None => {
                        deletes.insert(CsvFile::create(dir, format!("{prefix}.delete.csv.gz"))?)
                    }
                };
                write_key(&mut f.buf, &key_kinds, key);
                f.end_row()?;
            }
            RowState::Full(recs) | RowState::Partial { recs, .. } => {
                let last = recs.last().copied().unwrap_or_default();
                reads.push((last, key, &entry.state));
            }
            RowState::Deleted | RowState::MovedAway => {}
        }
    }
    if let Some(f) = deletes {
        files.push(f.finish(FileKind::Delete, Vec::new(), load.key.clone())?);
    }
    reads.sort_unstable_by_key(|(pos, _, _)| *pos);

    let mut upserts: Option<CsvFile> = None;
    let mut updates: Vec<Option<CsvFile>> = (0..load.subsets.len()).map(|_| None).collect();
    let mut merged: Vec<Owned> = Vec::new();
    for (last, key, state) in reads {
        let (recs, subset, moved_from) = match state {
            RowState::Full(recs) => (recs, None, None),
            RowState::Partial {
                recs,
                subset,
                moved_from,
            } => (recs, Some(*subset as usize), moved_from.as_deref()),
            _ => continue,
        };
        let (file, mask): (&mut CsvFile, Option<&[bool]>) = match subset {
            None => (
                match &mut upserts {
                    Some(f) => f,
                    None => {
                        upserts.insert(CsvFile::create(dir, format!("{prefix}.upsert.csv.gz"))?)
                    }
                },
                None,
            ),
            Some(s) => (
                match &mut updates[s] {
                    Some(f) => f,
                    None => updates[s]
                        .insert(CsvFile::create(dir, format!("{prefix}.update{s}.csv.gz"))?),
                },
                Some(&load.subsets[s]),
            ),
        };
        if mask.is_some() {
            write_key(&mut file.buf, &key_kinds, moved_from.unwrap_or(key));
            file.buf.push(b',');
        }
        if recs.len() == 1 {
            let rec = reader.read_at(last)?;
            let (pos, payload) = (rec.pos, rec.payload);
            if rec.kind != RecordKind::Message {
                return Err(CsvError::Record {
                    segment,
                    pos,
                    what: "expected a message record".into(),
                });
            }
            let msg = parse_message(payload, 0).map_err(|source| CsvError::Parse {
                segment,
                pos,
                source,
            })?;
            let tuple = new_tuple(&msg).ok_or_else(|| CsvError::Record {
                segment,
                pos,
                what: "expected an INSERT or UPDATE".into(),
            })?;
            if tuple.columns.len() != kinds.len() {
                return Err(CsvError::Record {
                    segment,
                    pos,
                    what: format!(
                        "row has {} columns, the load {}",
                        tuple.columns.len(),
                        kinds.len()
                    ),
                });
            }
            write_row(
                &mut file.buf,
                &kinds,
                mask,
                tuple.columns.iter().map(|c| c.value),
                segment,
                pos,
            )?;
        } else {
            merged.clear();
            merged.resize(kinds.len(), Owned::Missing);
            for &p in recs {
                let rec = reader.read_at(p)?;
                let msg = parse_message(rec.payload, 0).map_err(|source| CsvError::Parse {
                    segment,
                    pos: p,
                    source,
                })?;
                let tuple = new_tuple(&msg).ok_or_else(|| CsvError::Record {
                    segment,
                    pos: p,
                    what: "expected an INSERT or UPDATE".into(),
                })?;
                for (slot, c) in merged.iter_mut().zip(&tuple.columns) {
                    if c.value != Value::UnchangedToast {
                        *slot = Owned::from_value(&c.value);
                    }
                }
            }
            write_row(
                &mut file.buf,
                &kinds,
                mask,
                merged.iter().map(Owned::as_value),
                segment,
                last,
            )?;
        }
        file.end_row()?;
    }
    if let Some(f) = upserts {
        files.push(f.finish(FileKind::Upsert, Vec::new(), names.clone())?);
    }
    for (s, f) in updates.into_iter().enumerate() {
        if let Some(f) = f {
            let cols = names
                .iter()
                .zip(load.subsets[s].iter())
                .filter(|(_, k)| **k)
                .map(|(n, _)| n.clone())
                .collect();
            files.push(f.finish(FileKind::Update, load.key.clone(), cols)?);
        }
    }
    Ok(files)
}

fn new_tuple<'m, 'a>(msg: &'m Message<'a>) -> Option<&'m crate::decoding::Tuple<'a>> {
    match msg {
        Message::Insert { new: Some(t), .. } | Message::Update { new: Some(t), .. } => Some(t),
        _ => None,
    }
}

/// Writes the row's fields (all, or those in `mask`), comma separated.
fn write_row<'v>(
    out: &mut Vec<u8>,
    kinds: &[ValueKind],
    mask: Option<&[bool]>,
    values: impl Iterator<Item = Value<'v>>,
    segment: u64,
    pos: u64,
) -> Result<(), CsvError> {
    let mut first = true;
    for (i, v) in values.enumerate() {
        if mask.is_some_and(|m| !m.get(i).copied().unwrap_or(false)) {
            continue;
        }
        if v == Value::UnchangedToast {
            return Err(CsvError::Record {
                segment,
                pos,
                what: format!(
                    "column {i} is unchanged-toast-datum with no earlier value in the batch"
                ),
            });
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_field(out, kinds[i], &v);
    }
    Ok(())
}
