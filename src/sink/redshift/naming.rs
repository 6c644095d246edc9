//! The building blocks of `sql` (pure, no I/O): target names, SQL quoting, the COPY statement
//! and the `re_dms.applied` ledger. Everything here is re-exported by `sql`.
//!
//! Redshift folds ASCII letters of identifiers to lower case **even when they are quoted** (unless
//! the cluster sets `enable_case_sensitive_identifier`, which re_dms does not assume), and allows
//! at most 127 bytes per identifier. So every target name is folded here, once, and always sent
//! quoted (`"..."`, `"` doubled): what we send is exactly what the catalog will hold, and the
//! `information_schema` checks compare against the folded names. Only ASCII letters are folded,
//! as Redshift documents; other characters are kept.
//!
//! Two source names folding to one target name (columns `Id` and `id`; tables `s.Users` and
//! `s.users`, or `a.t` mapped by `schema_map` onto an existing `b.t`) would silently merge data, so
//! they are errors naming both, except tables sent to one target on purpose: with `load_into`, or
//! partitions sent to their partition root by the source catalog.
//!
//! String literals: Redshift descends from PostgreSQL 8.0 and treats a backslash in a string
//! literal as an escape (its LIKE docs write the default escape as `'\\'`), while PostgreSQL (the
//! test stack's backend) has `standard_conforming_strings = on`. A literal containing a backslash
//! would read differently in the two, so [`quote_literal`] spells backslashes as `CHR(92)`, which
//! both read the same; COPY's options take plain literals only, so [`copy_literal`] refuses them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::csv::manifest::{ColumnManifest, FileKind, StepManifest, TableManifest};
use crate::lsn::Lsn;
use crate::wal::Lineage;

/// Redshift's identifier limit, in bytes.
pub const MAX_IDENT_BYTES: usize = 127;

/// Everything the planner refuses, naming the table / column / value concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    #[error(
        "table {table}: columns {first:?} and {second:?} both become column {target:?} in Redshift \
         (identifiers are folded to lower case); rename one in the source"
    )]
    ColumnCollision {
        table: String,
        first: String,
        second: String,
        target: String,
    },
    #[error(
        "tables {first} and {second} both load into Redshift table {target} (names are folded to \
         lower case; check redshift.schema_map); use [tables.\"{second}\"] load_into if intended"
    )]
    TableCollision {
        first: String,
        second: String,
        target: String,
    },
    #[error("{what} {name:?} is {bytes} bytes long; Redshift allows at most {MAX_IDENT_BYTES}")]
    NameTooLong {
        what: String,
        name: String,
        bytes: usize,
    },
    #[error("{what} {name:?} contains a NUL character, which no identifier may hold")]
    InvalidName { what: String, name: String },
    #[error(
        "table {table}: {what} contains a backslash or NUL, which COPY cannot be given portably"
    )]
    UnsafeCopyValue { table: String, what: String },
    #[error("table {table}, column {column:?}: {ty:?} is not a Redshift type name")]
    BadType {
        table: String,
        column: String,
        ty: String,
    },
    #[error("table {table}: no S3 URL for file {path:?}")]
    MissingUrl { table: String, path: String },
    #[error("table {table}: file {path:?} names column {column:?}, which its load does not list")]
    UnknownColumn {
        table: String,
        path: String,
        column: String,
    },
    #[error(
        "table {table}: file {path:?} needs the table's key but it has none \
         (set [tables.\"{table}\"] primary_key)"
    )]
    NoKey { table: String, path: String },
}

/// A table in Redshift: schema and name, already folded to lower case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetTable {
    pub schema: String,
    pub name: String,
}

impl TargetTable {
    /// `"schema"."name"`, ready for SQL.
    pub fn sql(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// Both parts within Redshift's limits.
    pub fn check(&self) -> Result<(), SqlError> {
        check_ident("schema", &self.schema)?;
        check_ident("table", &self.name)
    }
}

impl fmt::Display for TargetTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Source table -> target table, from `redshift.schema_map`, `[tables."s.t"] load_into` and
/// (passed in by the caller) the partition parent the source catalog names.
#[derive(Debug, Clone, Default)]
pub struct Naming {
    schema_map: BTreeMap<String, String>,
    /// Exact source `schema.table` -> `load_into` value as written.
    load_into: BTreeMap<String, String>,
}

impl Naming {
    pub fn from_config(config: &Config) -> Self {
        Self::new(
            config.redshift.schema_map.clone(),
            config
                .tables
                .iter()
                .filter_map(|(k, t)| t.load_into.clone().map(|l| (k.clone(), l)))
                .collect(),
        )
    }

    pub fn new(schema_map: BTreeMap<String, String>, load_into: BTreeMap<String, String>) -> Self {
        Self {
            schema_map,
            load_into,
        }
    }

    /// Where source table `schema.table` goes, not knowing its partition parent:
    /// [`Naming::target_table_with_parent`] with `None`.
    pub fn target_table(&self, schema: &str, table: &str) -> TargetTable {
        self.target_table_with_parent(schema, table, None)
    }

    /// Where source table `schema.table` goes: `load_into` first (its value is in source
    /// namespace, `schema.table`; without a `.` it names a table in the same schema), then
    /// `parent` (the partition root the source catalog names for a partition, `(schema,
    /// table)`), then the table itself; then `schema_map` on the schema, then folding to lower
    /// case. Lengths are checked by [`TargetTable::check`] (the planner does).
    pub fn target_table_with_parent(
        &self,
        schema: &str,
        table: &str,
        parent: Option<(&str, &str)>,
    ) -> TargetTable {
        let (s, t) = match self.load_into.get(&format!("{schema}.{table}")) {
            Some(into) => match into.split_once('.') {
                Some((s, t)) => (s, t),
                None => (schema, into.as_str()),
            },
            None => parent.unwrap_or((schema, table)),
        };
        let s = self.schema_map.get(s).map(String::as_str).unwrap_or(s);
        TargetTable {
            schema: fold(s),
            name: fold(t),
        }
    }

    /// Whether `schema.table` was sent elsewhere on purpose.
    pub fn has_load_into(&self, schema: &str, table: &str) -> bool {
        self.load_into.contains_key(&format!("{schema}.{table}"))
    }

    /// Given every source table seen (`(schema, table, catalog parent)`), reports two that map
    /// to one target table without asking for it. Tables with `load_into`, and partitions sent
    /// to their parent by the catalog, may share a target with each other and with (at most)
    /// one table that maps there by its own name (the parent itself).
    pub fn check_table_collision<'a, I>(&self, tables: I) -> Result<(), SqlError>
    where
        I: IntoIterator<Item = (&'a str, &'a str, Option<(&'a str, &'a str)>)>,
    {
        let mut by_name: BTreeMap<TargetTable, String> = BTreeMap::new();
        for (schema, table, parent) in tables {
            let target = self.target_table_with_parent(schema, table, parent);
            target.check()?;
            if parent.is_some() || self.has_load_into(schema, table) {
                continue;
            }
            let source = format!("{schema}.{table}");
            match by_name.get(&target) {
                Some(first) if *first != source => {
                    return Err(SqlError::TableCollision {
                        first: first.clone(),
                        second: source,
                        target: target.to_string(),
                    })
                }
                Some(_) => {}
                None => {
                    by_name.insert(target, source);
                }
            }
        }
        Ok(())
    }
}

/// Redshift's folding: ASCII letters to lower case.
fn fold(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// The target name of a source column (folded to lower case).
pub fn target_column(name: &str) -> String {
    fold(name)
}

/// `"name"` with `"` doubled. Does not fold: pass target names.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Checks one target identifier: at most [`MAX_IDENT_BYTES`], no NUL. `what` names it in errors
/// (`"column of table s.t"`).
pub fn check_ident(what: &str, name: &str) -> Result<(), SqlError> {
    if name.contains('\0') {
        return Err(SqlError::InvalidName {
            what: what.to_string(),
            name: name.to_string(),
        });
    }
    if name.len() > MAX_IDENT_BYTES {
        return Err(SqlError::NameTooLong {
            what: what.to_string(),
            name: name.to_string(),
            bytes: name.len(),
        });
    }
    Ok(())
}

/// Two columns of `table` folding to one target name is an error naming both; so is a name
/// too long for Redshift.
pub fn check_collisions(table: &str, columns: &[ColumnManifest]) -> Result<(), SqlError> {
    check_column_names(table, columns.iter().map(|c| c.name.as_str()))
}

/// [`check_collisions`] over bare names.
pub fn check_column_names<'a>(
    table: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), SqlError> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for name in names {
        let target = target_column(name);
        check_ident(&format!("column of table {table}"), &target)?;
        if let Some(first) = seen.insert(target.clone(), name) {
            if first != name {
                return Err(SqlError::ColumnCollision {
                    table: table.to_string(),
                    first: first.to_string(),
                    second: name.to_string(),
                    target,
                });
            }
        }
    }
    Ok(())
}

/// A string literal that reads the same in Redshift and PostgreSQL: `'...'` with `'` doubled,
/// and each backslash spelled `CHR(92)` (see the module docs), e.g. `('a' || CHR(92) || 'b')`.
/// Only for places that take expressions (not COPY options).
pub fn quote_literal(value: &str) -> String {
    let plain = |s: &str| format!("'{}'", s.replace('\'', "''"));
    if !value.contains('\\') {
        return plain(value);
    }
    let parts: Vec<String> = value.split('\\').map(plain).collect();
    format!("({})", parts.join(" || CHR(92) || "))
}

/// A plain literal for a COPY option (URL, credentials, region): refuses backslashes and NUL,
/// which cannot be written portably (see the module docs). `what` names the value in errors.
pub fn copy_literal(table: &str, what: &str, value: &str) -> Result<String, SqlError> {
    if value.contains('\\') || value.contains('\0') {
        return Err(SqlError::UnsafeCopyValue {
            table: table.to_string(),
            what: what.to_string(),
        });
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

/// How COPY reaches S3.
#[derive(Clone, PartialEq, Eq)]
pub enum CopyAuth {
    /// `IAM_ROLE 'arn:...'` (`default` is passed as the keyword).
    IamRole(String),
    /// `ACCESS_KEY_ID '..' SECRET_ACCESS_KEY '..' [SESSION_TOKEN '..']`.
    Keys {
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
    },
}

impl fmt::Debug for CopyAuth {
    /// Never prints secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyAuth::IamRole(r) => f.debug_tuple("IamRole").field(r).finish(),
            CopyAuth::Keys {
                access_key_id,
                session_token,
                ..
            } => f
                .debug_struct("Keys")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"***")
                .field("session_token", &session_token.as_ref().map(|_| "***"))
                .finish(),
        }
    }
}

/// Creates the ledger. `applied_at` has no `DEFAULT GETDATE()`: PostgreSQL (the test stack)
/// lacks GETDATE and Redshift's portable alternatives are leader-node only; [`ledger_insert`]
/// writes it as a literal instead.
///
/// The key of a row is (lineage, segment, source table, target table): the WAL directory's
/// lineage keeps apart segments of other WAL directories and other re_dms instances loading into
/// the same warehouse; the source table keeps apart partitions sharing one target table.
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

/// The rows the last COPY of this session skipped (`MAXERROR`), in file order.
pub const REJECTED_ROWS_SQL: &str = "SELECT TRIM(filename), line_number, TRIM(colname), \
     TRIM(err_reason), TRIM(raw_line) FROM stl_load_errors WHERE query = pg_last_copy_id() \
     ORDER BY line_number";

/// Whether a planned statement is a COPY (see [`copy_sql`]).
pub fn is_copy(sql: &str) -> bool {
    sql.starts_with("COPY ")
}

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

/// The ledger column added after the first release; [`LEDGER_UPGRADE_SQL`] adds it to a ledger
/// created before (its rows keep a NULL lineage: see [`LEDGER_CHECK_LEGACY_SQL`]).
pub const LEDGER_LINEAGE_COLUMN: (&str, &str, &str) = ("re_dms", "applied", "lineage");

/// Adds the lineage column to a ledger from before lineages (run when the column is missing).
pub const LEDGER_UPGRADE_SQL: &str = "ALTER TABLE re_dms.applied ADD COLUMN lineage VARCHAR(32)";

/// Binds: `$1` lineage (32 hex digits), `$2` segment (BIGINT), `$3` source table (as in
/// [`TableManifest::ledger_name`]), `$4` target table (`schema.table`, folded).
pub const LEDGER_CHECK_SQL: &str = "SELECT 1 FROM re_dms.applied WHERE lineage = $1 \
     AND segment = $2 AND source_table = $3 AND target_table = $4";

/// For a segment written before its WAL directory had a lineage: a ledger row written then
/// (without lineage) under the old key (source table, segment). Binds: `$1` segment, `$2`
/// source table.
pub const LEDGER_CHECK_LEGACY_SQL: &str = "SELECT 1 FROM re_dms.applied WHERE lineage IS NULL \
     AND segment = $1 AND source_table = $2";

/// COPY's format options. No `NULL AS`: Redshift's default null string is `\N`, what the CSV
/// stage writes unquoted, and leaving it out avoids a backslash in a literal (read differently
/// by Redshift and PostgreSQL, see `naming`). A quoted `"\N"` is the two-character text: the
/// CSV stage quotes every string so it is never taken for NULL (the simulator does so; real
/// Redshift is documented to match `NULL AS` on the field, which we believe applies to the
/// unquoted form only - verify with `re_dms verify`). No EMPTYASNULL / BLANKSASNULL (`""` stays
/// an empty string), no ACCEPTINVCHARS (input is valid UTF-8), no TRUNCATECOLUMNS (the CSV
/// stage already cut strings to the column's bytes; an overflow should fail loudly).
pub const COPY_FORMAT: &str =
    "CSV GZIP TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF";

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
fn civil_from_days(days: i64) -> (i64, i64, i64) {
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

/// The COPY of one file into a staging table (`columns` are its target column names, in the
/// file's order). `table` names the source table in errors.
pub fn copy_sql(
    table: &str,
    staging: &str,
    columns: &[String],
    url: &str,
    auth: &CopyAuth,
    region: &str,
) -> Result<String, SqlError> {
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let mut sql = format!(
        "COPY {} ({}) FROM {} ",
        quote_ident(staging),
        cols.join(", "),
        copy_literal(table, "the S3 URL", url)?
    );
    match auth {
        CopyAuth::IamRole(role) if role.eq_ignore_ascii_case("default") => {
            sql.push_str("IAM_ROLE default");
        }
        CopyAuth::IamRole(role) => {
            sql.push_str("IAM_ROLE ");
            sql.push_str(&copy_literal(table, "redshift.iam_role", role)?);
        }
        CopyAuth::Keys {
            access_key_id,
            secret_access_key,
            session_token,
        } => {
            sql.push_str("ACCESS_KEY_ID ");
            sql.push_str(&copy_literal(table, "the access key id", access_key_id)?);
            sql.push_str(" SECRET_ACCESS_KEY ");
            sql.push_str(&copy_literal(
                table,
                "the secret access key",
                secret_access_key,
            )?);
            if let Some(token) = session_token {
                sql.push_str(" SESSION_TOKEN ");
                sql.push_str(&copy_literal(table, "the session token", token)?);
            }
        }
    }
    if !region.is_empty() {
        sql.push_str(" REGION ");
        sql.push_str(&copy_literal(table, "s3.region", region)?);
    }
    sql.push(' ');
    sql.push_str(COPY_FORMAT);
    Ok(sql)
}

/// `sql` with the secret key and session token of `auth` replaced by `***`, for logs.
pub fn redact(sql: &str, auth: &CopyAuth) -> String {
    let CopyAuth::Keys {
        secret_access_key,
        session_token,
        ..
    } = auth
    else {
        return sql.to_string();
    };
    let mut out = sql.to_string();
    for secret in std::iter::once(secret_access_key).chain(session_token) {
        if !secret.is_empty() {
            out = out.replace(&format!("'{}'", secret.replace('\'', "''")), "'***'");
        }
    }
    out
}

#[cfg(test)]
#[path = "naming_tests.rs"]
mod tests;
