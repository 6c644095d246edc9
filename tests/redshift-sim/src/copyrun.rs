//! Running a Redshift COPY on the client's backend session: read the target's columns from the
//! catalog (through the same session, so temp tables and uncommitted DDL are visible), start
//! `COPY ... FROM STDIN`, stream the converted S3 objects, and turn failures into Redshift's
//! `Load into table 't' failed` with rows in `stl_load_errors` (see `loaderr.rs`).
//!
//! MAXERROR n: a record the converter refuses is skipped while at most n records of this COPY
//! have been; a record the backend refuses (SQLSTATE class 22 or 23502, placed by its
//! `COPY t, line N` context) is left out and the whole COPY is run again, as a new implicit
//! transaction outside a transaction block, or after `ROLLBACK TO SAVEPOINT` inside one. The
//! (n+1)th refused record fails the COPY as without MAXERROR.

use crate::copycmd::CopySpec;
use crate::csvload::{ColKind, Column, Converted, Converter, LoadError, RecordError, Sent};
use crate::lexer::{quote_ident, quote_literal};
use crate::s3;
use crate::session::{Session, SessionError};
use crate::wire::{self, Frame};
use bytes::BytesMut;
use std::collections::HashMap;
use thiserror::Error;
use tokio::io::AsyncWriteExt;

const CHUNK: usize = 256 * 1024;
/// Savepoint around a MAXERROR COPY inside a transaction block.
const SAVEPOINT: &str = "rss_maxerror_copy";

/// Why a COPY failed, as the client will see it.
#[derive(Debug, Error)]
pub enum CopyFailure {
    /// The backend's own error (missing table, aborted transaction, ...), relayed as is.
    #[error("backend error")]
    Backend(Frame),
    /// A data error: Redshift's "Load into table" error plus stl_load_errors details.
    #[error("Load into table '{table}' failed. Check 'stl_load_errors' system table for details.")]
    Load {
        table: String,
        filename: String,
        record: Box<RecordError>,
    },
    /// Anything else (S3, manifest, columns), with a SQLSTATE.
    #[error("{message}")]
    Other { code: &'static str, message: String },
}

impl CopyFailure {
    pub fn write_to(&self, out: &mut BytesMut) {
        match self {
            CopyFailure::Backend(f) => out.extend_from_slice(&f.raw),
            CopyFailure::Load {
                filename, record, ..
            } => {
                let detail = format!(
                    "\n  -----------------------------------------------\n  \
                     error:  {}\n  code:      {}\n  context:   file {}, line {}, column {}, \
                     value '{}'\n  location:  redshift-sim\n  \
                     -----------------------------------------------",
                    record.reason,
                    record.code,
                    filename,
                    record.line,
                    record.colname,
                    record.raw_field.chars().take(256).collect::<String>()
                );
                wire::error_response(out, "ERROR", "XX000", &self.to_string(), Some(&detail));
            }
            CopyFailure::Other { code, message } => {
                wire::error_response(out, "ERROR", code, message, None);
            }
        }
    }
}

fn other(code: &'static str, message: impl Into<String>) -> CopyFailure {
    CopyFailure::Other {
        code,
        message: message.into(),
    }
}

/// A COPY that loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyDone {
    pub table: String,
    pub rows: u64,
    /// Records refused and skipped under MAXERROR.
    pub skipped: usize,
}

impl CopyDone {
    /// Redshift's INFO when MAXERROR let records be skipped.
    pub fn notice(&self) -> Option<String> {
        (self.skipped > 0).then(|| {
            format!(
                "Load into table '{}' completed, {} record(s) could not be loaded.  \
                 Check 'stl_load_errors' system table for details.",
                self.table, self.skipped
            )
        })
    }
}

/// A refused record and its file, for stl_load_errors.
#[derive(Debug, Clone)]
pub(crate) struct Rejected {
    pub filename: String,
    pub record: RecordError,
}

/// Where a record sent to the backend comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    /// Index in `Job::objects`.
    pub file: usize,
    pub sent: Sent,
    /// The backend's number (1-based, over the whole stream) of the record's last line.
    pub backend_line: u64,
}

/// One COPY: what its attempts share.
pub(crate) struct Job<'a> {
    pub spec: &'a CopySpec,
    pub cols: Vec<Column>,
    pub client: aws_sdk_s3::Client,
    /// The files, once listed.
    pub objects: Option<Vec<s3::Object>>,
    /// Per file: start lines of the records the backend refused, left out of later attempts.
    left_out: HashMap<usize, Vec<u64>>,
    /// Records the backend refused in earlier attempts.
    backend_rejected: Vec<Rejected>,
    /// Records the converter refused in the current attempt.
    conv_rejected: Vec<Rejected>,
}

impl Job<'_> {
    fn rejected(&self) -> usize {
        self.backend_rejected.len() + self.conv_rejected.len()
    }

    /// How many more records may be refused.
    fn allowed(&self) -> usize {
        let max = usize::try_from(self.spec.max_error).unwrap_or(usize::MAX);
        max.saturating_sub(self.rejected())
    }

    /// Every record skipped so far, by file then line.
    fn all_rejected(&self) -> Vec<Rejected> {
        let mut all: Vec<Rejected> = self
            .backend_rejected
            .iter()
            .chain(&self.conv_rejected)
            .cloned()
            .collect();
        all.sort_by(|a, b| (&a.filename, a.record.line).cmp(&(&b.filename, b.record.line)));
        all
    }
}

/// How one attempt at the COPY ended. The backend is ready for a query in every case.
enum Attempt {
    Loaded(u64),
    Failed(CopyFailure),
    /// The backend refused the data: its error, and the records that were sent.
    Backend(Frame, Vec<Origin>),
}

impl Session {
    /// Returns what was loaded, or why not. Leaves the backend ready for a query.
    pub(crate) async fn run_copy(
        &mut self,
        spec: &CopySpec,
    ) -> Result<Result<CopyDone, CopyFailure>, SessionError> {
        let query_id = crate::loaderr::next_query_id();
        self.last_copy_id = query_id;
        let (cols, table_oid) = match self.copy_columns(spec).await? {
            Ok(c) => c,
            Err(f) => return Ok(Err(f)),
        };
        let mut job = Job {
            spec,
            cols,
            client: s3::client(&self.shared.s3, spec),
            objects: None,
            left_out: HashMap::new(),
            backend_rejected: Vec::new(),
            conv_rejected: Vec::new(),
        };
        let result = self.run_attempts(&mut job).await?;
        let mut rows = job.all_rejected();
        if let Err(CopyFailure::Load {
            filename, record, ..
        }) = &result
        {
            rows.push(Rejected {
                filename: filename.clone(),
                record: (**record).clone(),
            });
        }
        self.record_load_errors(&rows, table_oid, query_id).await;
        Ok(result.map(|loaded| CopyDone {
            table: spec.table_short.clone(),
            rows: loaded,
            skipped: job.rejected(),
        }))
    }

    /// The target columns (all, or the COPY's list) and the table's oid.
    async fn copy_columns(
        &mut self,
        spec: &CopySpec,
    ) -> Result<Result<(Vec<Column>, Option<i64>), CopyFailure>, SessionError> {
        let catalog = format!(
            "SELECT a.attname, t.typname, a.atttypmod::text, t.typcategory::text, \
             format_type(a.atttypid, a.atttypmod), a.attrelid::oid::int8::text \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = {}::regclass AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            quote_literal(&spec.table)
        );
        let rows = match self.hidden(&catalog).await? {
            Ok(rows) => rows,
            Err(frame) => return Ok(Err(CopyFailure::Backend(frame))),
        };
        let mut all = Vec::new();
        let mut table_oid = None;
        for r in rows {
            let col = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            let typmod = col(2).parse::<i32>().unwrap_or(-1);
            table_oid = col(5).parse::<i64>().ok();
            all.push(Column {
                name: col(0),
                type_name: col(4),
                kind: ColKind::from_catalog(&col(1), typmod, &col(3)),
            });
        }
        let Some(names) = &spec.columns else {
            return Ok(Ok((all, table_oid)));
        };
        let mut cols = Vec::new();
        for n in names {
            match all.iter().find(|c| &c.name == n) {
                Some(c) => cols.push(c.clone()),
                None => {
                    let msg = format!(
                        "column \"{n}\" of relation \"{}\" does not exist",
                        spec.table_short
                    );
                    return Ok(Err(other("42703", msg)));
                }
            }
        }
        Ok(Ok((cols, table_oid)))
    }

    /// Attempt the COPY until it loads, or fails for good. Returns the rows loaded.
    async fn run_attempts(
        &mut self,
        job: &mut Job<'_>,
    ) -> Result<Result<u64, CopyFailure>, SessionError> {
        let savepoint = job.spec.max_error > 0 && self.status == b'T';
        if savepoint {
            if let Err(f) = self.hidden(&format!("SAVEPOINT {SAVEPOINT}")).await? {
                return Ok(Err(CopyFailure::Backend(f)));
            }
        }
        loop {
            job.conv_rejected.clear();
            let (frame, origins) = match self.copy_attempt(job).await? {
                Attempt::Loaded(rows) => {
                    if savepoint {
                        let release = format!("RELEASE SAVEPOINT {SAVEPOINT}");
                        if let Err(f) = self.hidden(&release).await? {
                            return Ok(Err(CopyFailure::Backend(f)));
                        }
                    }
                    return Ok(Ok(rows));
                }
                Attempt::Failed(f) => return Ok(Err(f)),
                Attempt::Backend(frame, origins) => (frame, origins),
            };
            let refusal = crate::loaderr::backend_rejection(job, &frame, &origins).await;
            let retry = match refusal.file {
                Some(file) if refusal.skippable && job.allowed() > 0 => {
                    let lines = job.left_out.entry(file).or_default();
                    match lines.binary_search(&refusal.rejected.record.line) {
                        Ok(_) => false, // already left out: the backend's line is off
                        Err(at) => {
                            lines.insert(at, refusal.rejected.record.line);
                            true
                        }
                    }
                }
                _ => false,
            };
            if !retry {
                return Ok(Err(CopyFailure::Load {
                    table: job.spec.table_short.clone(),
                    filename: refusal.rejected.filename,
                    record: Box::new(refusal.rejected.record),
                }));
            }
            tracing::debug!(
                file = %refusal.rejected.filename,
                line = refusal.rejected.record.line,
                "MAXERROR: the backend refused a record, copying again without it"
            );
            job.backend_rejected.push(refusal.rejected);
            if savepoint {
                let rollback = format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}");
                if let Err(f) = self.hidden(&rollback).await? {
                    return Ok(Err(CopyFailure::Backend(f)));
                }
            }
        }
    }

    /// One `COPY ... FROM STDIN` of every file, leaving out what earlier attempts refused.
    async fn copy_attempt(&mut self, job: &mut Job<'_>) -> Result<Attempt, SessionError> {
        if let Some(f) = self.start_copy_in(&job.spec.table, &job.cols).await? {
            return Ok(Attempt::Failed(f));
        }
        if job.objects.is_none() {
            match s3::resolve(&job.client, job.spec).await {
                Ok(o) => job.objects = Some(o),
                Err(e) => return self.cancel(other("XX000", e.to_string())).await,
            }
        }
        let conv = Converter {
            spec: job.spec,
            cols: &job.cols,
        };
        let objects = job.objects.as_deref().unwrap_or(&[]);
        let mut origins: Vec<Origin> = Vec::new();
        let mut backend_line = 0u64;
        for (idx, obj) in objects.iter().enumerate() {
            let data = match s3::fetch(&job.client, obj, job.spec.gzip).await {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(e) => return self.cancel(other("XX000", e.to_string())).await,
            };
            let leave_out = job.left_out.get(&idx).map_or(&[][..], Vec::as_slice);
            let allowed = job.allowed();
            let mut c = Converted::default();
            let result = conv.convert(&data, leave_out, allowed, &mut c);
            drop(data);
            let filename = obj.url();
            job.conv_rejected
                .extend(c.rejected.drain(..).map(|record| Rejected {
                    filename: filename.clone(),
                    record,
                }));
            if let Err(LoadError::Record(record)) = result {
                let table = job.spec.table_short.clone();
                let failure = CopyFailure::Load {
                    table,
                    filename,
                    record,
                };
                return self.cancel(failure).await;
            }
            for sent in c.sent {
                backend_line += sent.backend_lines;
                origins.push(Origin {
                    file: idx,
                    sent,
                    backend_line,
                });
            }
            self.send_copy_data(&c.out).await?;
        }
        self.finish_copy_in(origins).await
    }

    /// Send `COPY t (cols) FROM STDIN`; the failure when the backend does not start it.
    async fn start_copy_in(
        &mut self,
        table: &str,
        cols: &[Column],
    ) -> Result<Option<CopyFailure>, SessionError> {
        let col_list: Vec<String> = cols.iter().map(|c| quote_ident(&c.name)).collect();
        let copy_sql = format!(
            "COPY {table} ({}) FROM STDIN WITH (FORMAT csv)",
            col_list.join(", ")
        );
        let mut buf = BytesMut::new();
        wire::query(&mut buf, &copy_sql)?;
        self.bw.write_all(&buf).await?;
        // CopyInResponse, or the backend's error then ReadyForQuery.
        let mut backend_err = None;
        loop {
            let f = self.next_backend().await?;
            match f.tag {
                b'G' => return Ok(None),
                b'E' if backend_err.is_none() => backend_err = Some(f),
                b'Z' => {
                    return Ok(Some(match backend_err {
                        Some(f) => CopyFailure::Backend(f),
                        None => other("XX000", "COPY did not start"),
                    }))
                }
                _ => {}
            }
        }
    }

    async fn send_copy_data(&mut self, data: &[u8]) -> Result<(), SessionError> {
        for chunk in data.chunks(CHUNK) {
            let mut msg = BytesMut::with_capacity(chunk.len() + 5);
            wire::copy_data(&mut msg, chunk)?;
            self.bw.write_all(&msg).await?;
        }
        Ok(())
    }

    /// CopyDone, then the backend's row count or its error.
    async fn finish_copy_in(&mut self, origins: Vec<Origin>) -> Result<Attempt, SessionError> {
        let mut msg = BytesMut::new();
        wire::copy_done(&mut msg);
        self.bw.write_all(&msg).await?;
        let mut rows = 0u64;
        let mut backend_err = None;
        loop {
            let f = self.next_backend().await?;
            match f.tag {
                b'C' => {
                    let tag = String::from_utf8_lossy(f.body());
                    rows = tag
                        .trim_end_matches('\0')
                        .rsplit(' ')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                }
                b'E' if backend_err.is_none() => backend_err = Some(f),
                b'Z' => break,
                _ => {}
            }
        }
        Ok(match backend_err {
            None => Attempt::Loaded(rows),
            Some(f) => Attempt::Backend(f, origins),
        })
    }

    /// Cancel the COPY in progress (CopyFail) and wait for the backend to be ready again.
    async fn cancel(&mut self, failure: CopyFailure) -> Result<Attempt, SessionError> {
        let mut msg = BytesMut::new();
        wire::copy_fail(&mut msg, &failure.to_string());
        self.bw.write_all(&msg).await?;
        loop {
            if self.next_backend().await?.tag == b'Z' {
                return Ok(Attempt::Failed(failure));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_only_when_records_were_skipped() {
        let mut done = CopyDone {
            table: "t".into(),
            rows: 3,
            skipped: 0,
        };
        assert_eq!(done.notice(), None);
        done.skipped = 2;
        assert_eq!(
            done.notice().unwrap(),
            "Load into table 't' completed, 2 record(s) could not be loaded.  \
             Check 'stl_load_errors' system table for details."
        );
    }
}
