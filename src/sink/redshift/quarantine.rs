//! Rows Redshift rejects in a table with `on_reject = "quarantine"`: its COPYs run with
//! `MAXERROR` ([`super::load::MAX_REJECTED_PER_COPY`]); after each one the rows
//! `stl_load_errors` lists for `pg_last_copy_id()` are read ([`rejected_rows`]) and, before the
//! load's transaction commits, kept ([`keep`]): a JSON-lines dead-letter object under
//! `<prefix>rejected/<lineage>/<segment>/` (a retry of the same load overwrites it) and one row
//! each in `re_dms.rejected`, in the same transaction as the rest of the batch, so a load
//! replayed after a crash records them once. Counted (`re_dms_rows_rejected_total`) and logged.

use std::path::Path;
use std::time::Duration;

use super::ledger::LedgerKey;
use super::pool::{within, Attempt};
use super::sql;
use super::upload::Uploader;
use crate::metrics;
use crate::retry::classify::ErrorClass;

/// Where a load's dead letter goes.
pub(super) struct DeadLetter<'a> {
    pub(super) uploader: &'a Uploader,
    /// The segment's spool directory: the object is written there first.
    pub(super) spool: &'a Path,
    /// Which load transaction of the table-segment.
    pub(super) load_no: usize,
}

/// The rows the session's last COPY skipped (`MAXERROR`), in file order.
pub(super) async fn rejected_rows(
    c: &tokio_postgres::Client,
    deadline: Duration,
) -> Result<Vec<sql::Rejected>, Attempt> {
    let rows = within(
        deadline,
        "reading rejected rows",
        c.query(sql::REJECTED_ROWS_SQL, &[]),
    )
    .await?;
    let text = |r: &tokio_postgres::Row, i: usize| {
        r.try_get::<_, Option<String>>(i)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    Ok(rows
        .iter()
        .map(|r| sql::Rejected {
            filename: text(r, 0),
            line_number: r.try_get::<_, Option<i64>>(1).ok().flatten().unwrap_or(0),
            colname: text(r, 2),
            err_reason: text(r, 3),
            raw_line: text(r, 4),
        })
        .collect())
}

/// Writes the dead letter, uploads it, and records `rows` in `re_dms.rejected` (inside the
/// caller's open transaction).
pub(super) async fn keep(
    c: &tokio_postgres::Client,
    deadline: Duration,
    key: &LedgerKey<'_>,
    to: &DeadLetter<'_>,
    rows: &[sql::Rejected],
) -> Result<(), Attempt> {
    let name = format!(
        "{}.{}.rejected.jsonl",
        crate::csv::file_safe(key.source),
        to.load_no
    );
    let path = to.spool.join(&name);
    std::fs::write(&path, json_lines(key, rows)).map_err(|e| Attempt {
        class: ErrorClass::Transient,
        detail: format!("writing {}: {e}", path.display()),
        cause: Some(Box::new(e)),
    })?;
    let object = format!(
        "{}rejected/{}/{:020}/{name}",
        to.uploader.prefix(),
        key.lineage,
        key.segment
    );
    to.uploader.upload_file(&path, &object).await.map_err(|e| {
        let class = e.class();
        Attempt::new(class, e)
    })?;
    let url = to.uploader.url_for(&object);
    let insert = sql::rejected_insert(
        key.lineage,
        key.segment,
        key.source,
        key.target,
        &url,
        rows,
        std::time::SystemTime::now(),
    );
    within(
        deadline,
        "recording rejected rows",
        c.batch_execute(&insert),
    )
    .await?;
    metrics::ROWS_REJECTED.add(rows.len() as u64);
    tracing::warn!(
        rows = rows.len(),
        dead_letter = %url,
        first_reason = %rows.first().map_or("", |r| r.err_reason.as_str()),
        "rows rejected by Redshift were quarantined (on_reject = \"quarantine\"): the rest of \
         the batch loads; see the dead letter and re_dms.rejected"
    );
    Ok(())
}

/// One JSON object per rejected row.
fn json_lines(key: &LedgerKey<'_>, rows: &[sql::Rejected]) -> String {
    let mut text = String::new();
    for r in rows {
        let line = serde_json::json!({
            "lineage": key.lineage.to_string(), "segment": key.segment,
            "source_table": key.source, "target_table": key.target.to_string(),
            "file": r.filename, "line_number": r.line_number, "column": r.colname,
            "reason": r.err_reason, "raw_line": r.raw_line,
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    text
}
