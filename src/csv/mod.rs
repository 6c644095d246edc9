//! The CSV stage: turns a sealed segment's batch into gzipped CSV files and a manifest.
//!
//! Owns the spool directory `<wal.directory>/spool/<segment>/`. For each table and load step it
//! writes up to three kinds of file (see [`crate::csv::manifest`]): `delete` (key columns), `upsert`
//! (full rows) and one `update` file per distinct set of known columns (TOAST-unchanged updates).
//! Values are read back from the segment file by position (the batcher kept positions only),
//! in file order, and converted per [`crate::csv::typemap`].
//!
//! One pass reads+formats, a second thread compresses; each file is one gzip stream at level 1:
//! on a 2-core host the CPU is the bottleneck and level 1 keeps ~4x compression of CSV text at
//! several times the speed of the default level 6 (see BENCHMARKS.md).
//!
//! The spool is disposable: after a crash it is rebuilt from the WAL, so nothing here is fsynced;
//! a target that keeps the files (the local target) makes them durable itself.

pub mod manifest;
pub mod typemap;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;

use crate::batch::table_batch::decode_key;
use crate::batch::{Batch, RowState, Step};
use crate::csv::manifest::{
    FileKind, FileManifest, Manifest, StepManifest, TableManifest, MANIFEST_VERSION,
};
use crate::csv::typemap::{value_kind, write_field, Adjusted, Adjustment, ValueKind};
use crate::lsn::Lsn;
use crate::metrics;
use crate::source::decoding::{parse_message, Message, ParseError, Value};
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
///
/// One pass reads the segment front to back (each record once), parses the records the batch
/// needs and formats their rows into per-file buffers; full buffers go to a compressor thread
/// that owns every file's gzip stream. So reading+formatting and compressing use both cores,
/// and the segment is read once whatever the number of tables.
pub fn write_segment(seg: SealedSegment, spool_root: &Path) -> Result<SegmentOutput, CsvError> {
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

    let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(COMPRESS_QUEUE);
    let compress_dir = dir.clone();
    let compressor = std::thread::Builder::new()
        .name("re_dms-gzip".into())
        .spawn(move || compress(&compress_dir, rx))
        .map_err(io(&dir))?;
    let mut plan = Plan {
        files: Vec::new(),
        tx,
        loads: Vec::new(),
        rows: Vec::new(),
        reads: Vec::new(),
        merged: std::collections::HashMap::new(),
        tally: Tally::default(),
    };
    let planned = plan.build(&seg.batch);
    let written = planned.and_then(|()| plan.run(&seg.file));
    if written.is_ok() {
        report_changed_values(&seg, &plan);
    }
    // Closing the channel lets the compressor finish every file.
    let Plan { files, tx, .. } = plan;
    drop(tx);
    let compressed = compressor.join().map_err(|_| CsvError::Record {
        segment: seg.file.id,
        pos: 0,
        what: "compressor thread panicked".into(),
    })?;
    written?;
    let sizes = compressed?;

    let mut tables: Vec<TableManifest> = Vec::with_capacity(seg.batch.tables.len());
    for (ti, table) in seg.batch.tables.iter().enumerate() {
        let mut steps = Vec::with_capacity(table.steps.len());
        let mut key = Vec::new();
        for (si, step) in table.steps.iter().enumerate() {
            match step {
                Step::Schema(op) => steps.push(StepManifest::from(op)),
                Step::Truncate => steps.push(StepManifest::Truncate),
                Step::Load(load) => {
                    key.clone_from(&load.key);
                    let mut out: Vec<FileManifest> = files
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| f.table == ti && f.step == si)
                        .map(|(i, f)| f.manifest(sizes.get(i).copied().unwrap_or(0)))
                        .collect();
                    out.sort_by_key(|f| (f.kind as u8, f.path.clone()));
                    steps.push(StepManifest::Load {
                        columns: load.columns.iter().map(Into::into).collect(),
                        key: load.key.clone(),
                        files: out,
                    });
                }
            }
        }
        tables.push(TableManifest {
            schema: table.schema.clone(),
            name: table.name.clone(),
            key,
            steps,
        });
    }
    let rows: u64 = files.iter().map(|f| f.rows).sum();
    metrics::ROWS_WRITTEN.add(rows);
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        segment: seg.file.id,
        lineage: seg.file.lineage,
        legacy: seg.file.legacy,
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

/// Every value changed to fit Redshift is counted and logged: one warning per table, column
/// and kind of change in the segment, with the count.
fn report_changed_values(seg: &SealedSegment, plan: &Plan<'_>) {
    for (&(load, column, change), &count) in &plan.tally.0 {
        change.counter().add(count);
        let info = &plan.loads[load as usize];
        let table = &seg.batch.tables[info.table];
        let column = info.columns.get(column).map_or("?", |c| c.name.as_str());
        tracing::warn!(
            segment = seg.file.id,
            table = %format!("{}.{}", table.schema, table.name),
            column = %column,
            values = count,
            "{count} value(s) {}",
            change.verb()
        );
    }
}

/// Buffers handed to the compressor: at most this many in flight.
const COMPRESS_QUEUE: usize = 8;

/// A piece of one file's CSV text (`data` empty = the file exists but has no more rows).
struct Chunk {
    file: usize,
    name: String,
    data: Vec<u8>,
}

/// Compresses chunks into their files; returns each file's compressed size by file index.
fn compress(dir: &Path, rx: std::sync::mpsc::Receiver<Chunk>) -> Result<Vec<u64>, CsvError> {
    let mut encoders: Vec<Option<(PathBuf, GzEncoder<File>)>> = Vec::new();
    for chunk in rx {
        if encoders.len() <= chunk.file {
            encoders.resize_with(chunk.file + 1, || None);
        }
        let slot = &mut encoders[chunk.file];
        if slot.is_none() {
            let path = dir.join(&chunk.name);
            let file = File::create(&path).map_err(|source| CsvError::Io {
                path: path.clone(),
                source,
            })?;
            *slot = Some((path, GzEncoder::new(file, Compression::new(GZIP_LEVEL))));
        }
        let (path, enc) = slot.as_mut().expect("created above");
        enc.write_all(&chunk.data).map_err(|source| CsvError::Io {
            path: path.clone(),
            source,
        })?;
    }
    let mut sizes = Vec::with_capacity(encoders.len());
    for slot in encoders {
        match slot {
            Some((path, enc)) => {
                let file = enc.finish().map_err(|source| CsvError::Io {
                    path: path.clone(),
                    source,
                })?;
                sizes.push(
                    file.metadata()
                        .map_err(|source| CsvError::Io { path, source })?
                        .len(),
                );
            }
            None => sizes.push(0),
        }
    }
    Ok(sizes)
}

/// One output file being formatted.
struct PendingFile {
    table: usize,
    step: usize,
    kind: FileKind,
    name: String,
    match_columns: Vec<String>,
    columns: Vec<String>,
    rows: u64,
    buf: Vec<u8>,
}

impl PendingFile {
    fn manifest(&self, bytes: u64) -> FileManifest {
        FileManifest {
            kind: self.kind,
            path: self.name.clone(),
            match_columns: self.match_columns.clone(),
            columns: self.columns.clone(),
            rows: self.rows,
            bytes,
        }
    }
}

/// How one load step's values are written.
struct LoadInfo<'b> {
    /// Index of the table in the batch.
    table: usize,
    columns: &'b [crate::batch::schema::ColumnDef],
    kinds: Vec<ValueKind>,
    key_kinds: Vec<ValueKind>,
    key_idx: &'b [usize],
    subsets: &'b [Box<[bool]>],
}

/// Values changed to fit Redshift in one segment: count by (load, column index, change).
#[derive(Default)]
struct Tally(std::collections::BTreeMap<(u32, usize, Adjustment), u64>);

impl Tally {
    fn note(&mut self, load: u32, column: usize, adjusted: Adjusted) {
        if !adjusted.is_empty() {
            for a in adjusted.iter() {
                *self.0.entry((load, column, a)).or_default() += 1;
            }
        }
    }
}

/// A row whose values are read from the segment: 32 bytes, pointing into the batch's index
/// (the write plan must stay small next to the index it is made from).
#[derive(Clone, Copy)]
struct RowJob<'b> {
    key: &'b [u8],
    state: &'b RowState,
    file: u32,
    load: u32,
}

struct Plan<'b> {
    files: Vec<PendingFile>,
    tx: std::sync::mpsc::SyncSender<Chunk>,
    loads: Vec<LoadInfo<'b>>,
    rows: Vec<RowJob<'b>>,
    /// (record position, row index), sorted by position before the pass.
    reads: Vec<(u64, u32)>,
    /// Values gathered so far for rows spread over several records, by row index.
    merged: std::collections::HashMap<u32, Vec<Owned>>,
    tally: Tally,
}

impl<'b> Plan<'b> {
    fn file(
        &mut self,
        table: usize,
        step: usize,
        kind: FileKind,
        name: String,
        match_columns: Vec<String>,
        columns: Vec<String>,
    ) -> usize {
        self.files.push(PendingFile {
            table,
            step,
            kind,
            name,
            match_columns,
            columns,
            rows: 0,
            buf: Vec::with_capacity(CHUNK_BYTES + 64 * 1024),
        });
        self.files.len() - 1
    }

    fn end_row(&mut self, f: usize) -> Result<(), CsvError> {
        let file = &mut self.files[f];
        file.buf.push(b'\n');
        file.rows += 1;
        if file.buf.len() >= CHUNK_BYTES {
            let data =
                std::mem::replace(&mut file.buf, Vec::with_capacity(CHUNK_BYTES + 64 * 1024));
            self.send(f, data)?;
        }
        Ok(())
    }

    fn send(&self, f: usize, data: Vec<u8>) -> Result<(), CsvError> {
        let chunk = Chunk {
            file: f,
            name: self.files[f].name.clone(),
            data,
        };
        self.tx.send(chunk).map_err(|_| CsvError::Io {
            path: PathBuf::from(&self.files[f].name),
            source: std::io::Error::other("the compressor stopped"),
        })
    }

    /// Writes delete files (from the index alone) and lists the rows to read.
    fn build(&mut self, batch: &'b Batch) -> Result<(), CsvError> {
        for (ti, table) in batch.tables.iter().enumerate() {
            let prefix = format!("{}.{}", file_safe(&table.schema), file_safe(&table.name));
            for (si, step) in table.steps.iter().enumerate() {
                let Step::Load(load) = step else { continue };
                let kinds: Vec<ValueKind> = load
                    .columns
                    .iter()
                    .map(|c| value_kind(&c.pg_type))
                    .collect();
                let key_kinds: Vec<ValueKind> = load.key_idx.iter().map(|&i| kinds[i]).collect();
                let names: Vec<String> = load.columns.iter().map(|c| c.name.clone()).collect();
                let load_no = self.loads.len() as u32;
                let (mut deletes, mut upserts) = (None, None);
                let mut updates: Vec<Option<usize>> = vec![None; load.subsets.len()];
                for (key, entry) in &load.rows {
                    let subset = match &entry.state {
                        RowState::Deleted => {
                            let f = *deletes.get_or_insert_with(|| {
                                self.file(
                                    ti,
                                    si,
                                    FileKind::Delete,
                                    format!("{prefix}.{si}.delete.csv.gz"),
                                    Vec::new(),
                                    load.key.clone(),
                                )
                            });
                            write_key(
                                &mut self.files[f].buf,
                                &key_kinds,
                                key,
                                &mut KeyTally {
                                    tally: &mut self.tally,
                                    load: load_no,
                                    key_idx: &load.key_idx,
                                },
                            );
                            self.end_row(f)?;
                            continue;
                        }
                        RowState::Full(_) => None,
                        RowState::Partial { subset, .. } => Some(*subset as usize),
                        RowState::MovedAway => continue,
                    };
                    let file = match subset {
                        None => *upserts.get_or_insert_with(|| {
                            self.file(
                                ti,
                                si,
                                FileKind::Upsert,
                                format!("{prefix}.{si}.upsert.csv.gz"),
                                Vec::new(),
                                names.clone(),
                            )
                        }),
                        Some(s) => *updates[s].get_or_insert_with(|| {
                            let cols = names
                                .iter()
                                .zip(load.subsets[s].iter())
                                .filter(|(_, k)| **k)
                                .map(|(n, _)| n.clone())
                                .collect();
                            self.file(
                                ti,
                                si,
                                FileKind::Update,
                                format!("{prefix}.{si}.update{s}.csv.gz"),
                                load.key.clone(),
                                cols,
                            )
                        }),
                    };
                    let row = self.rows.len() as u32;
                    self.rows.push(RowJob {
                        key,
                        state: &entry.state,
                        file: file as u32,
                        load: load_no,
                    });
                    if let RowState::Full(recs) | RowState::Partial { recs, .. } = &entry.state {
                        self.reads.extend(recs.iter().map(|&p| (p, row)));
                    }
                }
                self.loads.push(LoadInfo {
                    table: ti,
                    columns: &load.columns,
                    key_idx: &load.key_idx,
                    kinds,
                    key_kinds,
                    subsets: &load.subsets,
                });
            }
        }
        self.reads.sort_unstable();
        self.reads.shrink_to_fit();
        self.rows.shrink_to_fit();
        Ok(())
    }

    /// The single pass over the segment.
    fn run(&mut self, segment: &SegmentFile) -> Result<(), CsvError> {
        let seg = segment.id;
        let mut reader = SegmentReader::open(&segment.path)?;
        let reads = std::mem::take(&mut self.reads);
        for &(pos, row) in &reads {
            let rec = reader.read_at(pos)?;
            if rec.kind != RecordKind::Message {
                return Err(CsvError::Record {
                    segment: seg,
                    pos,
                    what: "expected a message record".into(),
                });
            }
            let msg = parse_message(rec.payload, 0).map_err(|source| CsvError::Parse {
                segment: seg,
                pos,
                source,
            })?;
            let tuple = new_tuple(&msg).ok_or_else(|| CsvError::Record {
                segment: seg,
                pos,
                what: "expected an INSERT or UPDATE".into(),
            })?;
            let job = self.rows[row as usize];
            let info = &self.loads[job.load as usize];
            let (recs, mask, match_key) = match job.state {
                RowState::Full(recs) => (recs, None, None),
                RowState::Partial {
                    recs,
                    subset,
                    moved_from,
                } => (
                    recs,
                    Some(&*info.subsets[*subset as usize]),
                    Some(moved_from.as_deref().unwrap_or(job.key)),
                ),
                RowState::Deleted | RowState::MovedAway => continue,
            };
            if tuple.columns.len() != info.kinds.len() {
                return Err(CsvError::Record {
                    segment: seg,
                    pos,
                    what: format!(
                        "row has {} columns, its load {}",
                        tuple.columns.len(),
                        info.kinds.len()
                    ),
                });
            }
            let f = job.file as usize;
            if recs.len() == 1 {
                let values = tuple.columns.iter().map(|c| c.value);
                write_job_row(
                    &mut self.files[f].buf,
                    info,
                    match_key,
                    mask,
                    values,
                    RowAt {
                        segment: seg,
                        pos,
                        load: job.load,
                    },
                    &mut self.tally,
                )?;
                self.end_row(f)?;
                continue;
            }
            // A row assembled from several records (unchanged TOAST values from earlier ones).
            let merged = self
                .merged
                .entry(row)
                .or_insert_with(|| vec![Owned::Missing; info.kinds.len()]);
            for (slot, c) in merged.iter_mut().zip(&tuple.columns) {
                if c.value != Value::UnchangedToast {
                    *slot = Owned::from_value(&c.value);
                }
            }
            if recs.last() == Some(&pos) {
                let merged = self.merged.remove(&row).unwrap_or_default();
                let values = merged.iter().map(Owned::as_value);
                write_job_row(
                    &mut self.files[f].buf,
                    info,
                    match_key,
                    mask,
                    values,
                    RowAt {
                        segment: seg,
                        pos,
                        load: job.load,
                    },
                    &mut self.tally,
                )?;
                self.end_row(f)?;
            }
        }
        for f in 0..self.files.len() {
            let data = std::mem::take(&mut self.files[f].buf);
            if !data.is_empty() || self.files[f].rows == 0 {
                self.send(f, data)?;
            }
        }
        Ok(())
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

/// Where the changes to key values are counted.
struct KeyTally<'t> {
    tally: &'t mut Tally,
    load: u32,
    /// Column index of each key column.
    key_idx: &'t [usize],
}

fn write_key(out: &mut Vec<u8>, kinds: &[ValueKind], key: &[u8], t: &mut KeyTally<'_>) {
    for (i, (kind, raw)) in kinds.iter().zip(decode_key(key)).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let adjusted = write_field(out, *kind, &key_value(*kind, raw));
        t.tally
            .note(t.load, t.key_idx.get(i).copied().unwrap_or(i), adjusted);
    }
}

fn new_tuple<'m, 'a>(msg: &'m Message<'a>) -> Option<&'m crate::source::decoding::Tuple<'a>> {
    match msg {
        Message::Insert { new: Some(t), .. } | Message::Update { new: Some(t), .. } => Some(t),
        _ => None,
    }
}

/// Where a row comes from: for errors, and for counting changed values.
#[derive(Clone, Copy)]
struct RowAt {
    segment: u64,
    pos: u64,
    load: u32,
}

/// One output row: the key that finds a partial row in the target (update files), then the
/// row's fields.
fn write_job_row<'v>(
    buf: &mut Vec<u8>,
    info: &LoadInfo<'_>,
    match_key: Option<&[u8]>,
    mask: Option<&[bool]>,
    values: impl Iterator<Item = Value<'v>>,
    at: RowAt,
    tally: &mut Tally,
) -> Result<(), CsvError> {
    if let Some(k) = match_key {
        let mut t = KeyTally {
            tally: &mut *tally,
            load: at.load,
            key_idx: info.key_idx,
        };
        write_key(buf, &info.key_kinds, k, &mut t);
        buf.push(b',');
    }
    write_row(buf, &info.kinds, mask, values, at, tally)
}

/// Writes the row's fields (all, or those in `mask`), comma separated.
fn write_row<'v>(
    out: &mut Vec<u8>,
    kinds: &[ValueKind],
    mask: Option<&[bool]>,
    values: impl Iterator<Item = Value<'v>>,
    at: RowAt,
    tally: &mut Tally,
) -> Result<(), CsvError> {
    let RowAt { segment, pos, load } = at;
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
        tally.note(load, i, write_field(out, kinds[i], &v));
    }
    Ok(())
}
