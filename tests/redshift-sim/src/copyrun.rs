//! Running a Redshift COPY on the client's backend session: read the target's columns from the
//! catalog (through the same session, so temp tables and uncommitted DDL are visible), start
//! `COPY ... FROM STDIN`, stream the converted S3 objects, and turn failures into Redshift's
//! `Load into table 't' failed` with a row in `stl_load_errors`.

use crate::copycmd::CopySpec;
use crate::csvload::{ColKind, Column, Converter, LoadError, RecordError};
use crate::lexer::{quote_ident, quote_literal};
use crate::s3;
use crate::session::{Session, SessionError};
use crate::wire::{self, Frame};
use bytes::BytesMut;
use thiserror::Error;
use tokio::io::AsyncWriteExt;

const CHUNK: usize = 256 * 1024;

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

impl Session {
    /// Returns the number of rows loaded, or why not. Leaves the backend ready for a query.
    pub(crate) async fn run_copy(
        &mut self,
        spec: &CopySpec,
    ) -> Result<Result<u64, CopyFailure>, SessionError> {
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
        let cols = match &spec.columns {
            None => all,
            Some(names) => {
                let mut cols = Vec::new();
                for n in names {
                    match all.iter().find(|c| &c.name == n) {
                        Some(c) => cols.push(c.clone()),
                        None => {
                            return Ok(Err(other(
                                "42703",
                                format!(
                                    "column \"{n}\" of relation \"{}\" does not exist",
                                    spec.table_short
                                ),
                            )))
                        }
                    }
                }
                cols
            }
        };
        let col_list: Vec<String> = cols.iter().map(|c| quote_ident(&c.name)).collect();
        let copy_sql = format!(
            "COPY {} ({}) FROM STDIN WITH (FORMAT csv)",
            spec.table,
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
                b'G' => break,
                b'E' if backend_err.is_none() => backend_err = Some(f),
                b'Z' => {
                    return Ok(Err(match backend_err {
                        Some(f) => CopyFailure::Backend(f),
                        None => other("XX000", "COPY did not start"),
                    }))
                }
                _ => {}
            }
        }

        let client = s3::client(&self.shared.s3, spec);
        let objects = match s3::resolve(&client, spec).await {
            Ok(o) => o,
            Err(e) => return self.abort(other("XX000", e.to_string())).await,
        };
        let conv = Converter { spec, cols: &cols };
        // (file index, line) of every record sent, to place the backend's errors.
        let mut origins: Vec<(usize, u64)> = Vec::new();
        for (idx, obj) in objects.iter().enumerate() {
            let data = match s3::fetch(&client, obj, spec.gzip).await {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(e) => return self.abort(other("XX000", e.to_string())).await,
            };
            let mut out = Vec::with_capacity(data.len() + data.len() / 4);
            let mut lines = Vec::new();
            if let Err(LoadError::Record(record)) = conv.convert(&data, &mut out, &mut lines) {
                let failure = CopyFailure::Load {
                    table: spec.table_short.clone(),
                    filename: obj.url(),
                    record,
                };
                self.record_load_error(&failure, table_oid).await;
                return self.abort(failure).await;
            }
            drop(data);
            origins.extend(lines.into_iter().map(|l| (idx, l)));
            for chunk in out.chunks(CHUNK) {
                let mut msg = BytesMut::with_capacity(chunk.len() + 5);
                wire::copy_data(&mut msg, chunk)?;
                self.bw.write_all(&msg).await?;
            }
        }
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
        let Some(f) = backend_err else {
            return Ok(Ok(rows));
        };
        let failure = self.backend_load_error(spec, &f, &objects, &origins);
        self.record_load_error(&failure, table_oid).await;
        Ok(Err(failure))
    }

    /// Cancel the COPY in progress (CopyFail) and wait for the backend to be ready again.
    async fn abort(
        &mut self,
        failure: CopyFailure,
    ) -> Result<Result<u64, CopyFailure>, SessionError> {
        let mut msg = BytesMut::new();
        wire::copy_fail(&mut msg, &failure.to_string());
        self.bw.write_all(&msg).await?;
        loop {
            if self.next_backend().await?.tag == b'Z' {
                return Ok(Err(failure));
            }
        }
    }

    /// A backend error during COPY (bad integer, NOT NULL, ...) as Redshift's load error.
    fn backend_load_error(
        &self,
        spec: &CopySpec,
        f: &Frame,
        objects: &[s3::Object],
        origins: &[(usize, u64)],
    ) -> CopyFailure {
        let fields = wire::error_fields(f.body());
        let reason = wire::error_field(&fields, b'M').unwrap_or("").to_string();
        let context = wire::error_field(&fields, b'W').unwrap_or("");
        // "COPY t, line 3, column c: \"value\""
        let record_no = context
            .split("line ")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<usize>().ok());
        let colname = context
            .split(", column ")
            .nth(1)
            .and_then(|s| s.split(':').next())
            .unwrap_or("")
            .to_string();
        let raw_field = context
            .split_once(": ")
            .map(|(_, v)| v.trim_matches('"').to_string())
            .unwrap_or_default();
        let origin = record_no.and_then(|n| origins.get(n.checked_sub(1)?));
        let filename = origin
            .and_then(|(i, _)| objects.get(*i))
            .map(|o| o.url())
            .unwrap_or_default();
        CopyFailure::Load {
            table: spec.table_short.clone(),
            filename,
            record: Box::new(RecordError {
                line: origin.map_or(0, |(_, l)| *l),
                colname,
                col_type: String::new(),
                reason,
                code: 1207,
                raw_line: String::new(),
                raw_field,
            }),
        }
    }

    /// Insert the failure into `stl_load_errors` through a side connection, so it survives the
    /// client's rollback as in Redshift. Best effort: a failure here is only logged.
    async fn record_load_error(&self, failure: &CopyFailure, table_oid: Option<i64>) {
        let CopyFailure::Load {
            filename, record, ..
        } = failure
        else {
            return;
        };
        let mut conf = self.shared.backend_config.clone();
        conf.dbname(&self.database).user(&self.user);
        let pid = self.backend_pid;
        let work = async move {
            let (client, conn) = conf.connect(tokio_postgres::NoTls).await?;
            let handle = tokio::spawn(conn);
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS public.stl_load_errors (userid int, slice int, \
                     tbl int8, starttime timestamp DEFAULT now(), session int, query int, \
                     filename text, line_number int8, colname text, type text, col_length text, \
                     position int, raw_line text, raw_field_value text, err_code int, \
                     err_reason text)",
                )
                .await
                .ok();
            let r = client
                .execute(
                    "INSERT INTO public.stl_load_errors (userid, slice, tbl, session, query, \
                     filename, line_number, colname, type, col_length, position, raw_line, \
                     raw_field_value, err_code, err_reason) \
                     VALUES (100, 0, $1, $2, 0, $3, $4, $5, $6, '', 0, $7, $8, $9, $10)",
                    &[
                        &table_oid,
                        &pid,
                        &filename,
                        &(record.line as i64),
                        &record.colname,
                        &record.col_type,
                        &record.raw_line,
                        &record.raw_field,
                        &record.code,
                        &record.reason,
                    ],
                )
                .await;
            drop(client);
            let _ = handle.await;
            r.map(|_| ())
        };
        match tokio::time::timeout(std::time::Duration::from_secs(10), work).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("could not record stl_load_errors: {e}"),
            Err(_) => tracing::warn!("could not record stl_load_errors: timed out"),
        }
    }
}
