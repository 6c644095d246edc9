//! The statements of the ledger `re_dms.applied` and of `re_dms.rejected` (pure, no I/O), and
//! the UTC timestamp literals they write.

use std::time::{SystemTime, UNIX_EPOCH};

use super::naming::{quote_literal, TargetTable};
use crate::csv::manifest::{FileKind, StepManifest, TableManifest};
use crate::lsn::Lsn;
use crate::wal::Lineage;

/// Creates the ledger. `applied_at` has no `DEFAULT GETDATE()`: PostgreSQL (the test stack)
/// lacks GETDATE and Redshift's portable alternatives are leader-node only; [`ledger_insert`]
/// writes it as a literal instead.
///
/// A row is looked up by (lineage, segment, source table): the WAL directory's lineage keeps
/// apart segments of other WAL directories and other re_dms instances loading into the same
/// warehouse; the source table keeps apart partitions sharing one target table. The target
/// table is recorded, not matched (see [`LEDGER_CHECK_SQL`]).
pub const LEDGER_DDL: &[&str] = &[
    "CREATE SCHEMA IF NOT EXISTS re_dms",
    "CREATE TABLE IF NOT EXISTS re_dms.applied (source_table VARCHAR(1024), \
     target_table VARCHAR(1024), segment BIGINT, first_lsn VARCHAR(32), last_lsn VARCHAR(32), \
     rows_upserted BIGINT, rows_deleted BIGINT, rows_updated BIGINT, applied_at TIMESTAMP, \
     lineage VARCHAR(32))",
    // Rows the warehouse rejected in tables with `on_reject = "quarantine"` (one row each,
    // written in the transaction that loaded the rest of their batch).
    "CREATE TABLE IF NOT EXISTS re_dms.rejected (lineage VARCHAR(32), segment BIGINT, \
     source_table VARCHAR(1024), target_table VARCHAR(1024), filename VARCHAR(1024), \
     line_number BIGINT, colname VARCHAR(127), err_reason VARCHAR(1024), \
     raw_line VARCHAR(65535), dead_letter VARCHAR(1024), rejected_at TIMESTAMP)",
];

/// The ledger column added after the first release; [`LEDGER_UPGRADE_SQL`] adds it to a ledger
/// created before (its rows keep a NULL lineage: see [`LEDGER_CHECK_LEGACY_SQL`]).
pub const LEDGER_LINEAGE_COLUMN: (&str, &str, &str) = ("re_dms", "applied", "lineage");

/// Adds the lineage column to a ledger from before lineages (run when the column is missing).
pub const LEDGER_UPGRADE_SQL: &str = "ALTER TABLE re_dms.applied ADD COLUMN lineage VARCHAR(32)";

/// Binds: `$1` lineage (32 hex digits), `$2` segment (BIGINT), `$3` source table (as in
/// [`TableManifest::ledger_name`]). The target table is not part of the check: a source
/// table's changes in a segment are applied once, wherever its target is now (a partition
/// root or a table renamed since the row was written, a `load_into` changed).
pub const LEDGER_CHECK_SQL: &str = "SELECT 1 FROM re_dms.applied WHERE lineage = $1 \
     AND segment = $2 AND source_table = $3";

/// For a segment written before its WAL directory had a lineage: a ledger row written then
/// (without lineage) under the old key (source table, segment). Binds: `$1` segment, `$2`
/// source table.
pub const LEDGER_CHECK_LEGACY_SQL: &str = "SELECT 1 FROM re_dms.applied WHERE lineage IS NULL \
     AND segment = $1 AND source_table = $2";

/// Rows per file kind of a table-segment, for the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCounts {
    pub upserted: u64,
    pub deleted: u64,
    pub updated: u64,
}

impl RowCounts {
    pub fn of(table: &TableManifest) -> Self {
        let mut c = Self::default();
        for step in &table.steps {
            if let StepManifest::Load { files, .. } = step {
                for f in files {
                    match f.kind {
                        FileKind::Upsert => c.upserted += f.rows,
                        FileKind::Delete => c.deleted += f.rows,
                        FileKind::Update => c.updated += f.rows,
                    }
                }
            }
        }
        c
    }
}

/// One ledger row.
#[derive(Debug, Clone, Copy)]
pub struct LedgerRow<'a> {
    pub lineage: Lineage,
    /// `schema.table` as in the manifest (what [`LEDGER_CHECK_SQL`] looks up).
    pub source_table: &'a str,
    pub target: &'a TargetTable,
    pub segment: u64,
    pub first_lsn: Lsn,
    pub last_lsn: Lsn,
    pub counts: RowCounts,
    pub applied_at: SystemTime,
}

/// The INSERT recording a table-segment as applied: the last statement of its last transaction.
pub fn ledger_insert(row: &LedgerRow<'_>) -> String {
    format!(
        "INSERT INTO re_dms.applied (lineage, source_table, target_table, segment, first_lsn, \
         last_lsn, rows_upserted, rows_deleted, rows_updated, applied_at) VALUES ('{}', {}, {}, \
         {}, {}, {}, {}, {}, {}, {})",
        row.lineage,
        quote_literal(row.source_table),
        quote_literal(&row.target.to_string()),
        row.segment,
        quote_literal(&row.first_lsn.to_string()),
        quote_literal(&row.last_lsn.to_string()),
        row.counts.upserted,
        row.counts.deleted,
        row.counts.updated,
        timestamp_literal(row.applied_at),
    )
}

/// `'YYYY-MM-DD HH:MM:SS.ffffff'` in UTC.
fn timestamp_literal(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "'{y:04}-{m:02}-{day:02} {:02}:{:02}:{:02}.{:06}'",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub(super) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The rows the last COPY of this session skipped (`MAXERROR`), in file order.
pub const REJECTED_ROWS_SQL: &str = "SELECT TRIM(filename), line_number, TRIM(colname), \
     TRIM(err_reason), TRIM(raw_line) FROM stl_load_errors WHERE query = pg_last_copy_id() \
     ORDER BY line_number";

/// One row a COPY skipped, as `stl_load_errors` describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejected {
    pub filename: String,
    pub line_number: i64,
    pub colname: String,
    pub err_reason: String,
    pub raw_line: String,
}

/// The INSERT of a load's rejected rows into `re_dms.rejected` (one statement for all of them;
/// at most `MAXERROR` per COPY).
pub fn rejected_insert(
    lineage: Lineage,
    segment: u64,
    source_table: &str,
    target: &TargetTable,
    dead_letter: &str,
    rows: &[Rejected],
    at: SystemTime,
) -> String {
    let at = timestamp_literal(at);
    let values: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "('{lineage}', {segment}, {}, {}, {}, {}, {}, {}, {}, {}, {at})",
                quote_literal(source_table),
                quote_literal(&target.to_string()),
                quote_literal(&r.filename),
                r.line_number,
                quote_literal(&r.colname),
                quote_literal(&r.err_reason),
                quote_literal(&r.raw_line),
                quote_literal(dead_letter),
            )
        })
        .collect();
    format!(
        "INSERT INTO re_dms.rejected (lineage, segment, source_table, target_table, filename, \
         line_number, colname, err_reason, raw_line, dead_letter, rejected_at) VALUES {}",
        values.join(", ")
    )
}
