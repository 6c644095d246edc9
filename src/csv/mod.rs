//! The CSV stage: turns a sealed segment's batch into gzipped CSV files and a manifest.
//!
//! Owns the spool directory `<wal.directory>/spool/<segment>/`. For each table and load step it
//! writes up to three kinds of file (see [`crate::csv::manifest`]): `delete` (key columns), `upsert`
//! (full rows) and one `update` file per distinct set of known columns (TOAST-unchanged updates).
//! Values are read back from the segment file by position (the batcher kept positions only),
//! in file order, and converted per [`crate::csv::typemap`].
//!
//! One pass reads+formats (the write plan and its pass are in `plan.rs`); the text is compressed
//! in pieces on every core, each piece a gzip member, members appended in order (`compress.rs`),
//! at level 1: on a 2-core host the CPU is the bottleneck and level 1 keeps ~3x compression of
//! CSV text at several times the speed of the default level 6 (see BENCHMARKS.md).
//!
//! The spool is disposable: after a crash it is rebuilt from the WAL, so nothing here is fsynced;
//! a target that keeps the files (the local target) makes them durable itself.

mod compress;
pub mod manifest;
mod plan;
pub mod stage;
pub mod typemap;

use std::path::{Path, PathBuf};

use crate::batch::{Batch, Step, TableLoad};
use crate::csv::manifest::{FileManifest, Manifest, StepManifest, TableManifest, MANIFEST_VERSION};
use crate::metrics;
use crate::pipeline::handoff::{SealedSegment, SegmentOutput};
use crate::source::decoding::ParseError;
use crate::wal::segment::SegmentError;
use compress::Compressor;
use plan::{PendingFile, Plan};

/// gzip level of every CSV file.
pub const GZIP_LEVEL: u32 = 1;

/// Rows are formatted into a buffer and handed to the compressor in pieces of this size (each
/// piece one gzip member).
pub const PIECE_BYTES: usize = 128 * 1024;

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
    #[error(transparent)]
    Rebuild(#[from] crate::batch::rebuild::RebuildError),
    #[error("segment {segment}, record at byte {pos}: {what}")]
    Record {
        segment: u64,
        pos: u64,
        what: String,
    },
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
    recreate_dir(&dir)?;
    let (files, sizes) = write_files(&seg, &dir)?;
    let tables = table_manifests(&seg.batch, &files, &sizes);
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

/// The error of an I/O operation on `path`.
fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CsvError {
    let path = path.to_path_buf();
    move |source| CsvError::Io { path, source }
}

/// An empty `dir`: whatever an earlier attempt left there is removed.
fn recreate_dir(dir: &Path) -> Result<(), CsvError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(dir)(e)),
    }
    std::fs::create_dir_all(dir).map_err(io_error(dir))
}

/// Writes the segment's files into `dir`: the plan's pass on this thread, compression on every
/// core ([`compress`]). Returns the files and each one's compressed size, by file index.
fn write_files(seg: &SealedSegment, dir: &Path) -> Result<(Vec<PendingFile>, Vec<u64>), CsvError> {
    let compressor = Compressor::start(dir, GZIP_LEVEL)?;
    let mut plan = Plan::new(compressor.sender());
    let planned = plan.build(&seg.batch);
    let written = planned.and_then(|()| plan.run(&seg.file));
    if written.is_ok() {
        plan.report_changed_values(seg);
    }
    // Dropping the plan's sender lets the compressor finish every file.
    let files = plan.into_files();
    let compressed = compressor.finish();
    written?;
    Ok((files, compressed?))
}

/// Every table's manifest: its steps, each load with its files (by kind, then name).
fn table_manifests(batch: &Batch, files: &[PendingFile], sizes: &[u64]) -> Vec<TableManifest> {
    let mut tables: Vec<TableManifest> = Vec::with_capacity(batch.tables.len());
    for (ti, table) in batch.tables.iter().enumerate() {
        let mut steps = Vec::with_capacity(table.steps.len());
        let mut key = Vec::new();
        for (si, step) in table.steps.iter().enumerate() {
            match step {
                Step::Schema(op) => steps.push(StepManifest::from(op)),
                Step::Truncate => steps.push(StepManifest::Truncate),
                Step::Load(load) => {
                    key.clone_from(&load.key);
                    steps.push(load_manifest(load, ti, si, files, sizes));
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
    tables
}

/// The manifest of the load that is step `si` of table `ti`.
fn load_manifest(
    load: &TableLoad,
    ti: usize,
    si: usize,
    files: &[PendingFile],
    sizes: &[u64],
) -> StepManifest {
    let mut out: Vec<FileManifest> = files
        .iter()
        .enumerate()
        .filter(|(_, f)| f.table == ti && f.step == si)
        .map(|(i, f)| f.manifest(sizes.get(i).copied().unwrap_or(0)))
        .collect();
    out.sort_by_key(|f| (f.kind as u8, f.path.clone()));
    StepManifest::Load {
        columns: load.columns.iter().map(Into::into).collect(),
        key: load.key.clone(),
        files: out,
    }
}
