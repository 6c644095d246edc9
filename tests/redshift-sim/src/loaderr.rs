//! `stl_load_errors`: COPY query ids, the backend's COPY errors placed back in their file, and
//! the rows written through a side connection (so they survive the client's rollback, as in
//! Redshift).

use crate::copyrun::{Job, Origin, Rejected};
use crate::csvload::{Converter, RecordError};
use crate::s3;
use crate::session::Session;
use crate::wire::{self, Frame};
use std::sync::atomic::{AtomicI32, Ordering};

static NEXT_QUERY_ID: AtomicI32 = AtomicI32::new(1000);

/// A new query id for a COPY: unique within this process, counting up from 1000.
pub fn next_query_id() -> i32 {
    NEXT_QUERY_ID.fetch_add(1, Ordering::Relaxed)
}

/// A record the backend refused during `COPY ... FROM STDIN`, placed in its file.
#[derive(Debug)]
pub(crate) struct BackendRefusal {
    pub rejected: Rejected,
    /// The file's index in the job's objects, when the record was found.
    pub file: Option<usize>,
    /// A data error MAXERROR may skip: SQLSTATE class 22 (bad integer, date, numeric
    /// overflow, ...) or 23502 (NULL in a NOT NULL column).
    pub skippable: bool,
}

/// The backend's `COPY t, line N[, column c]: "value"` context.
#[derive(Debug, Default, PartialEq, Eq)]
struct CopyContext {
    line: Option<u64>,
    column: Option<String>,
    value: Option<String>,
}

fn parse_context(context: &str) -> CopyContext {
    let Some((_, rest)) = context.split_once(", line ") else {
        return CopyContext::default();
    };
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let line = rest[..digits].parse().ok();
    let rest = &rest[digits..];
    let (column, value) = match rest.strip_prefix(", column ") {
        Some(c) => match c.split_once(": ") {
            Some((name, v)) => (Some(name.to_string()), Some(v)),
            None => (Some(c.to_string()), None),
        },
        None => (None, rest.strip_prefix(": ")),
    };
    let value = value
        .filter(|v| *v != "null input")
        .map(|v| v.strip_prefix('"').unwrap_or(v))
        .map(|v| v.strip_suffix('"').unwrap_or(v).to_string());
    CopyContext {
        line,
        column,
        value,
    }
}

/// The record whose lines include the backend's line `line`.
fn locate(origins: &[Origin], line: u64) -> Option<&Origin> {
    let i = origins.partition_point(|o| o.backend_line < line);
    origins
        .get(i)
        .filter(|o| o.backend_line - o.sent.backend_lines < line)
}

/// Redshift's err_code for a backend error.
fn err_code(sqlstate: &str) -> i32 {
    match sqlstate {
        "23502" => 1213,
        "22007" | "22008" => 1205,
        _ => 1207,
    }
}

/// A backend error during COPY (bad integer, NOT NULL, ...) as a refused record. The file is
/// read again for the record's raw text.
pub(crate) async fn backend_rejection(
    job: &Job<'_>,
    f: &Frame,
    origins: &[Origin],
) -> BackendRefusal {
    let fields = wire::error_fields(f.body());
    let field = |c: u8| wire::error_field(&fields, c).unwrap_or("");
    let sqlstate = field(b'C');
    let ctx = parse_context(field(b'W'));
    let colname = match (&ctx.column, field(b'c')) {
        (Some(c), _) => c.clone(),
        (None, c) => c.to_string(),
    };
    let col_index = job.cols.iter().position(|c| c.name == colname);
    let mut record = RecordError {
        line: 0,
        colname,
        col_type: col_index
            .and_then(|i| job.cols.get(i))
            .map(|c| c.type_name.clone())
            .unwrap_or_default(),
        reason: field(b'M').to_string(),
        code: err_code(sqlstate),
        raw_line: String::new(),
        raw_field: if ctx.column.is_some() {
            ctx.value.clone().unwrap_or_default()
        } else {
            String::new()
        },
    };
    let origin = ctx.line.and_then(|l| locate(origins, l));
    let obj = origin.and_then(|o| job.objects.as_deref()?.get(o.file));
    let mut filename = String::new();
    if let (Some(o), Some(obj)) = (origin, obj) {
        filename = obj.url();
        record.line = o.sent.line;
        if let Ok(Some(data)) = s3::fetch(&job.client, obj, job.spec.gzip).await {
            let conv = Converter {
                spec: job.spec,
                cols: &job.cols,
            };
            let (raw, values) = conv.raw_record(&data, o.sent.offset);
            record.raw_line = raw;
            if let Some(v) = col_index.and_then(|i| values.get(i)) {
                record.raw_field = v.clone();
            }
        }
    }
    BackendRefusal {
        rejected: Rejected { filename, record },
        file: origin.filter(|_| obj.is_some()).map(|o| o.file),
        skippable: sqlstate.starts_with("22") || sqlstate == "23502",
    }
}

impl Session {
    /// Insert `rows` into `stl_load_errors` through a side connection, so they survive the
    /// client's rollback as in Redshift. Best effort: a failure here is only logged.
    pub(crate) async fn record_load_errors(
        &self,
        rows: &[Rejected],
        table_oid: Option<i64>,
        query_id: i32,
    ) {
        if rows.is_empty() {
            return;
        }
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
            let mut result = Ok(());
            for row in rows {
                if let Err(e) = insert_row(&client, row, table_oid, pid, query_id).await {
                    result = Err(e);
                    break;
                }
            }
            drop(client);
            let _ = handle.await;
            result
        };
        match tokio::time::timeout(std::time::Duration::from_secs(10), work).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("could not record stl_load_errors: {e}"),
            Err(_) => tracing::warn!("could not record stl_load_errors: timed out"),
        }
    }
}

async fn insert_row(
    client: &tokio_postgres::Client,
    row: &Rejected,
    table_oid: Option<i64>,
    pid: Option<i32>,
    query_id: i32,
) -> Result<(), tokio_postgres::Error> {
    let r = &row.record;
    client
        .execute(
            "INSERT INTO public.stl_load_errors (userid, slice, tbl, starttime, session, query, \
             filename, line_number, colname, type, col_length, position, raw_line, \
             raw_field_value, err_code, err_reason) \
             VALUES (100, 0, $1, clock_timestamp(), $2, $3, $4, $5, $6, $7, '', 0, $8, $9, \
             $10, $11)",
            &[
                &table_oid,
                &pid,
                &query_id,
                &row.filename,
                &(r.line as i64),
                &r.colname,
                &r.col_type,
                &r.raw_line,
                &r.raw_field,
                &r.code,
                &r.reason,
            ],
        )
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csvload::Sent;

    #[test]
    fn contexts() {
        assert_eq!(
            parse_context("COPY t, line 3, column d: \"a, line 9\""),
            CopyContext {
                line: Some(3),
                column: Some("d".into()),
                value: Some("a, line 9".into())
            }
        );
        assert_eq!(
            parse_context("COPY t, line 12: \"\"1\",\"x\",\""),
            CopyContext {
                line: Some(12),
                column: None,
                value: Some("\"1\",\"x\",".into())
            }
        );
        assert_eq!(
            parse_context("COPY t, line 2, column c: null input").value,
            None
        );
        assert_eq!(parse_context("COPY t"), CopyContext::default());
    }

    #[test]
    fn backend_lines_find_their_record() {
        let origin = |file, line, backend_lines, backend_line| Origin {
            file,
            sent: Sent {
                line,
                offset: 0,
                backend_lines,
            },
            backend_line,
        };
        // Records of 1, 3 and 1 lines, then a second file.
        let origins = [
            origin(0, 1, 1, 1),
            origin(0, 2, 3, 4),
            origin(0, 5, 1, 5),
            origin(1, 1, 1, 6),
        ];
        let found = |l| locate(&origins, l).map(|o| (o.file, o.sent.line));
        assert_eq!(found(1), Some((0, 1)));
        assert_eq!(found(2), Some((0, 2)));
        assert_eq!(found(4), Some((0, 2)));
        assert_eq!(found(5), Some((0, 5)));
        assert_eq!(found(6), Some((1, 1)));
        assert_eq!(found(7), None);
        assert_eq!(found(0), None);
    }

    #[test]
    fn query_ids_are_unique_and_start_at_1000() {
        let a = next_query_id();
        let b = next_query_id();
        assert!(a >= 1000 && b > a, "{a} {b}");
    }
}
