//! The write plan of one segment's CSV files, and the pass that carries it out.
//!
//! [`Plan::build`] goes over the batch's index once: it writes the delete files from the index
//! alone (their rows are keys) and lists every other row as a job with one read per record the
//! row is made of; a full row of a single record (most rows) needs no job, its read names its
//! file. [`Plan::run`] then reads those records in file order, each once, and formats the rows
//! into per-file buffers; full buffers go to the compressor as [`Chunk`]s. A row made of several
//! records (unchanged TOAST values taken from earlier ones) is gathered until its last record.
//! The pass touches the index only for rows of several records or partial updates: reaching
//! the index (hash order) from the records (file order) was a cache miss per row.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::compress::Chunk;
use super::{file_safe, CsvError};
use crate::batch::schema::ColumnDef;
use crate::batch::table_batch::decode_key;
use crate::batch::{Batch, RecPos, RowState, Step, TableLoad};
use crate::csv::manifest::{FileKind, FileManifest};
use crate::csv::typemap::{
    value_kind, write_field, write_field_utf8, Adjusted, Adjustment, ValueKind,
};
use crate::pipeline::handoff::SealedSegment;
use crate::source::decoding::{parse_message, Message, Tuple, Value};
use crate::wal::segment::{Record, RecordKind, SegmentReader};
use crate::wal::{change, SegmentFile};

use super::PIECE_BYTES;

/// One output file being formatted.
pub(super) struct PendingFile {
    pub(super) table: usize,
    pub(super) step: usize,
    kind: FileKind,
    name: String,
    match_columns: Vec<String>,
    columns: Vec<String>,
    pub(super) rows: u64,
    buf: Vec<u8>,
    /// Pieces handed to the compressor so far.
    pieces: u32,
}

impl PendingFile {
    pub(super) fn manifest(&self, bytes: u64) -> FileManifest {
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
    columns: &'b [ColumnDef],
    kinds: Vec<ValueKind>,
    key_kinds: Vec<ValueKind>,
    key_idx: &'b [usize],
    subsets: &'b [Box<[bool]>],
}

/// Values changed to fit Redshift in one segment: count by (load, column index, change).
#[derive(Default)]
struct Tally(BTreeMap<(u32, usize, Adjustment), u64>);

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

/// How a row job is written, from its state.
#[derive(Clone, Copy)]
struct RowShape<'b> {
    /// The records the row is read from, in file order.
    recs: &'b [RecPos],
    /// The columns written (update files); `None`: all.
    mask: Option<&'b [bool]>,
    /// The key that finds the row in the target (update files).
    match_key: Option<&'b [u8]>,
}

impl<'b> RowJob<'b> {
    /// `None` for a row that is not read (deleted, or moved away).
    #[inline]
    fn shape(&self, info: &LoadInfo<'b>) -> Option<RowShape<'b>> {
        match self.state {
            RowState::Full(recs) => Some(RowShape {
                recs,
                mask: None,
                match_key: None,
            }),
            RowState::Partial {
                recs,
                subset,
                moved_from,
            } => Some(RowShape {
                recs,
                mask: Some(&*info.subsets[*subset as usize]),
                match_key: Some(moved_from.as_deref().unwrap_or(self.key)),
            }),
            RowState::Deleted | RowState::MovedAway => None,
        }
    }
}

/// The files of one load step, each created when its first row comes.
struct StepFiles<'l> {
    /// Index of the table in the batch.
    table: usize,
    /// Index of the step in the table's steps.
    step: usize,
    /// `<schema>.<table>`, file-name safe.
    prefix: &'l str,
    load: &'l TableLoad,
    /// Every column's name.
    names: Vec<String>,
    delete: Option<usize>,
    upsert: Option<usize>,
    /// By known-column subset.
    updates: Vec<Option<usize>>,
}

impl<'l> StepFiles<'l> {
    fn new(table: usize, step: usize, prefix: &'l str, load: &'l TableLoad) -> Self {
        StepFiles {
            table,
            step,
            prefix,
            load,
            names: load.columns.iter().map(|c| c.name.clone()).collect(),
            delete: None,
            upsert: None,
            updates: vec![None; load.subsets.len()],
        }
    }

    /// The delete file: key columns.
    #[inline]
    fn delete(&mut self, plan: &mut Plan<'_>) -> usize {
        let (ti, si, prefix) = (self.table, self.step, self.prefix);
        *self.delete.get_or_insert_with(|| {
            plan.file(
                ti,
                si,
                FileKind::Delete,
                format!("{prefix}.{si}.delete.csv.gz"),
                Vec::new(),
                self.load.key.clone(),
            )
        })
    }

    /// The upsert file: full rows.
    #[inline]
    fn upsert(&mut self, plan: &mut Plan<'_>) -> usize {
        let (ti, si, prefix) = (self.table, self.step, self.prefix);
        *self.upsert.get_or_insert_with(|| {
            plan.file(
                ti,
                si,
                FileKind::Upsert,
                format!("{prefix}.{si}.upsert.csv.gz"),
                Vec::new(),
                self.names.clone(),
            )
        })
    }

    /// The update file of the rows whose known columns are subset `s`: the key they are matched
    /// on, then those columns.
    #[inline]
    fn update(&mut self, plan: &mut Plan<'_>, s: usize) -> usize {
        let (ti, si, prefix) = (self.table, self.step, self.prefix);
        *self.updates[s].get_or_insert_with(|| {
            let cols = self
                .names
                .iter()
                .zip(self.load.subsets[s].iter())
                .filter(|(_, k)| **k)
                .map(|(n, _)| n.clone())
                .collect();
            plan.file(
                ti,
                si,
                FileKind::Update,
                format!("{prefix}.{si}.update{s}.csv.gz"),
                self.load.key.clone(),
                cols,
            )
        })
    }
}

/// The write plan of one segment: the files, what each row job needs, the reads in file order.
pub(super) struct Plan<'b> {
    files: Vec<PendingFile>,
    tx: crossbeam_channel::Sender<Chunk>,
    loads: Vec<LoadInfo<'b>>,
    rows: Vec<RowJob<'b>>,
    /// (record position, [`RowRef`]), sorted by position before the pass.
    reads: Vec<(u64, RowRef)>,
    /// The load each file belongs to, by file index (a single-record row's read names only its
    /// file, see [`SINGLE_ROW`]).
    file_loads: Vec<u32>,
    /// Values gathered so far for rows spread over several records, by row index, and whether
    /// all of them are known valid UTF-8.
    merged: HashMap<u32, (Vec<Owned>, bool)>,
    tally: Tally,
}

impl<'b> Plan<'b> {
    /// An empty plan whose full buffers go to the compressor through `tx`.
    pub(super) fn new(tx: crossbeam_channel::Sender<Chunk>) -> Self {
        Plan {
            files: Vec::new(),
            tx,
            loads: Vec::new(),
            rows: Vec::new(),
            reads: Vec::new(),
            file_loads: Vec::new(),
            merged: HashMap::new(),
            tally: Tally::default(),
        }
    }

    /// The files planned. Drops the sender: once nothing else holds one, the channel is closed,
    /// which lets the compressor finish every file.
    pub(super) fn into_files(self) -> Vec<PendingFile> {
        self.files
    }

    fn file(
        &mut self,
        table: usize,
        step: usize,
        kind: FileKind,
        name: String,
        match_columns: Vec<String>,
        columns: Vec<String>,
    ) -> usize {
        // Files are made while their load is planned, before its `LoadInfo` is pushed.
        self.file_loads.push(self.loads.len() as u32);
        self.files.push(PendingFile {
            table,
            step,
            kind,
            name,
            match_columns,
            columns,
            rows: 0,
            buf: Vec::with_capacity(PIECE_BYTES + 64 * 1024),
            pieces: 0,
        });
        self.files.len() - 1
    }

    fn end_row(&mut self, f: usize) -> Result<(), CsvError> {
        let file = &mut self.files[f];
        file.buf.push(b'\n');
        file.rows += 1;
        if file.buf.len() >= PIECE_BYTES {
            let data =
                std::mem::replace(&mut file.buf, Vec::with_capacity(PIECE_BYTES + 64 * 1024));
            self.send(f, data)?;
        }
        Ok(())
    }

    fn send(&mut self, f: usize, data: Vec<u8>) -> Result<(), CsvError> {
        let file = &mut self.files[f];
        let chunk = Chunk {
            file: f,
            seq: file.pieces,
            name: file.name.clone(),
            data,
        };
        file.pieces += 1;
        self.tx.send(chunk).map_err(|_| CsvError::Io {
            path: PathBuf::from(&self.files[f].name),
            source: std::io::Error::other("the compressor stopped"),
        })
    }

    /// Writes delete files (from the index alone) and lists the rows to read.
    pub(super) fn build(&mut self, batch: &'b Batch) -> Result<(), CsvError> {
        for (ti, table) in batch.tables.iter().enumerate() {
            let prefix = format!("{}.{}", file_safe(&table.schema), file_safe(&table.name));
            for (si, step) in table.steps.iter().enumerate() {
                let Step::Load(load) = step else { continue };
                self.plan_load(&mut StepFiles::new(ti, si, &prefix, load), load)?;
            }
        }
        self.reads.sort_unstable();
        self.reads.shrink_to_fit();
        self.rows.shrink_to_fit();
        Ok(())
    }

    /// Plans one load step (`load`, whose files are `files`): writes its deleted rows, lists its
    /// other rows.
    fn plan_load(
        &mut self,
        files: &mut StepFiles<'_>,
        load: &'b TableLoad,
    ) -> Result<(), CsvError> {
        let kinds: Vec<ValueKind> = load
            .columns
            .iter()
            .map(|c| value_kind(&c.pg_type))
            .collect();
        let key_kinds: Vec<ValueKind> = load.key_idx.iter().map(|&i| kinds[i]).collect();
        let load_no = self.loads.len() as u32;
        for (key, entry) in load.rows.iter() {
            let file = match &entry.state {
                RowState::Deleted => {
                    let f = files.delete(self);
                    let mut t = KeyTally {
                        tally: &mut self.tally,
                        load: load_no,
                        key_idx: &load.key_idx,
                    };
                    write_key(&mut self.files[f].buf, &key_kinds, key, &mut t);
                    self.end_row(f)?;
                    continue;
                }
                RowState::Full(_) => files.upsert(self),
                RowState::Partial { subset, .. } => files.update(self, *subset as usize),
                RowState::MovedAway => continue,
            };
            self.add_job(key, &entry.state, file, load_no);
        }
        self.loads.push(LoadInfo {
            table: files.table,
            columns: &load.columns,
            key_idx: &load.key_idx,
            kinds,
            key_kinds,
            subsets: &load.subsets,
        });
        Ok(())
    }

    /// Lists a row to read: its job, and a read per record it is made of. A full row of one
    /// record (most rows) needs no job: its read names its file.
    #[inline]
    fn add_job(&mut self, key: &'b [u8], state: &'b RowState, file: usize, load: u32) {
        if let RowState::Full(recs) = state {
            if let ([pos], Ok(f)) = (recs.as_slice(), u32::try_from(file)) {
                if f < SINGLE_ROW {
                    debug_assert_eq!(self.file_loads[file], load);
                    self.reads.push((*pos, SINGLE_ROW | f));
                    return;
                }
            }
        }
        let row = self.rows.len() as u32;
        self.rows.push(RowJob {
            key,
            state,
            file: file as u32,
            load,
        });
        if let RowState::Full(recs) | RowState::Partial { recs, .. } = state {
            self.reads.extend(recs.iter().map(|&p| (p, row)));
        }
    }

    /// The single pass over the segment: every listed record once, in file order; then every
    /// file's last piece goes to the compressor. A change record (format version 3) is written
    /// from its pre-split fields; a message record (older segments) is parsed first.
    pub(super) fn run(&mut self, segment: &SegmentFile) -> Result<(), CsvError> {
        let seg = segment.id;
        let mut reader = SegmentReader::open(&segment.path)?;
        let reads = std::mem::take(&mut self.reads);
        let mut fields = Vec::new();
        for &(pos, row) in &reads {
            let rec = reader.read_at(pos)?;
            let job = RowInput {
                row,
                segment: seg,
                pos,
            };
            if rec.kind == RecordKind::Change {
                let change =
                    change::decode(rec.payload, &mut fields).ok_or_else(|| CsvError::Record {
                        segment: seg,
                        pos,
                        what: "a damaged change record".into(),
                    })?;
                let values = fields.iter().map(|f| f.value(change.text));
                self.take_record(job, fields.len(), values, change.utf8)?;
                continue;
            }
            let msg = record_message(&rec, seg, pos)?;
            let tuple = new_tuple(&msg).ok_or_else(|| CsvError::Record {
                segment: seg,
                pos,
                what: "expected an INSERT or UPDATE".into(),
            })?;
            self.take_record(job, tuple.columns.len(), tuple.values(), false)?;
        }
        self.flush()
    }

    /// Takes the `count` new values of the record at `job.pos` for row `job.row`: writes the
    /// row when the record holds all of it, else gathers its values (see [`Plan::gather`]).
    /// `utf8`: the values are known valid UTF-8.
    #[inline]
    fn take_record<'v>(
        &mut self,
        job: RowInput,
        count: usize,
        values: impl Iterator<Item = Value<'v>>,
        utf8: bool,
    ) -> Result<(), CsvError> {
        let RowInput { row, segment, pos } = job;
        if row & SINGLE_ROW != 0 {
            // Reached in file order with no look-up in the row jobs or the index: the common
            // case costs no cache miss beyond the record itself.
            let f = (row & !SINGLE_ROW) as usize;
            let load = self.file_loads[f];
            let info = &self.loads[load as usize];
            check_count(info, count, segment, pos)?;
            let at = RowAt {
                segment,
                pos,
                load,
                utf8,
            };
            let buf = &mut self.files[f].buf;
            write_job_row(buf, info, None, None, values, at, &mut self.tally)?;
            return self.end_row(f);
        }
        let job = self.rows[row as usize];
        let info = &self.loads[job.load as usize];
        let Some(shape) = job.shape(info) else {
            return Ok(());
        };
        check_count(info, count, segment, pos)?;
        let f = job.file as usize;
        let at = RowAt {
            segment,
            pos,
            load: job.load,
            utf8,
        };
        if shape.recs.len() != 1 {
            return self.gather(row, values, f, shape, at);
        }
        write_job_row(
            &mut self.files[f].buf,
            info,
            shape.match_key,
            shape.mask,
            values,
            at,
            &mut self.tally,
        )?;
        self.end_row(f)
    }

    /// A row assembled from several records (unchanged TOAST values from earlier ones): keeps
    /// the values this record has, and writes the row (to file `f`) at its last record.
    fn gather<'v>(
        &mut self,
        row: u32,
        values: impl Iterator<Item = Value<'v>>,
        f: usize,
        shape: RowShape<'_>,
        at: RowAt,
    ) -> Result<(), CsvError> {
        let info = &self.loads[at.load as usize];
        let (merged, utf8) = self
            .merged
            .entry(row)
            .or_insert_with(|| (vec![Owned::Missing; info.kinds.len()], true));
        *utf8 &= at.utf8;
        for (slot, v) in merged.iter_mut().zip(values) {
            if v != Value::UnchangedToast {
                *slot = Owned::from_value(&v);
            }
        }
        if shape.recs.last() == Some(&at.pos) {
            let (merged, utf8) = self.merged.remove(&row).unwrap_or_default();
            let values = merged.iter().map(Owned::as_value);
            write_job_row(
                &mut self.files[f].buf,
                info,
                shape.match_key,
                shape.mask,
                values,
                RowAt { utf8, ..at },
                &mut self.tally,
            )?;
            self.end_row(f)?;
        }
        Ok(())
    }

    /// Hands every file's last piece to the compressor (an empty one for a file with no rows,
    /// so that it exists).
    fn flush(&mut self) -> Result<(), CsvError> {
        for f in 0..self.files.len() {
            let data = std::mem::take(&mut self.files[f].buf);
            if !data.is_empty() || self.files[f].rows == 0 {
                self.send(f, data)?;
            }
        }
        Ok(())
    }

    /// Every value changed to fit Redshift is counted and logged: one warning per table, column
    /// and kind of change in the segment, with the count.
    pub(super) fn report_changed_values(&self, seg: &SealedSegment) {
        for (&(load, column, change), &count) in &self.tally.0 {
            change.counter().add(count);
            let info = &self.loads[load as usize];
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
}

/// The message of the record at `pos`, which must be a message record.
#[inline]
fn record_message<'r>(rec: &Record<'r>, segment: u64, pos: u64) -> Result<Message<'r>, CsvError> {
    if rec.kind != RecordKind::Message {
        return Err(CsvError::Record {
            segment,
            pos,
            what: "expected a message record".into(),
        });
    }
    parse_message(rec.payload, 0).map_err(|source| CsvError::Parse {
        segment,
        pos,
        source,
    })
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

fn new_tuple<'m, 'a>(msg: &'m Message<'a>) -> Option<&'m Tuple<'a>> {
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
    /// The row's values are known valid UTF-8.
    utf8: bool,
}

/// A record read for a row job.
#[derive(Clone, Copy)]
struct RowInput {
    row: RowRef,
    segment: u64,
    pos: u64,
}

/// What a read is for: the index of a row job, or, with [`SINGLE_ROW`] set, the file of a full
/// row made of this one record (written as soon as it is read).
type RowRef = u32;
const SINGLE_ROW: RowRef = 1 << 31;

/// A record must have as many new values as its load has columns.
fn check_count(info: &LoadInfo<'_>, count: usize, segment: u64, pos: u64) -> Result<(), CsvError> {
    if count == info.kinds.len() {
        return Ok(());
    }
    Err(CsvError::Record {
        segment,
        pos,
        what: format!("row has {count} columns, its load {}", info.kinds.len()),
    })
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
    let RowAt {
        segment,
        pos,
        load,
        utf8,
    } = at;
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
        tally.note(load, i, write_field_utf8(out, kinds[i], &v, utf8));
    }
    Ok(())
}
