//! The SQL of one table-segment for Redshift (pure: no I/O).
//!
//! [`plan_table`] turns one table's manifest steps into [`PlanStep`]s, in the manifest's order:
//! - schema changes become [`DdlStep`]s, run one by one **outside** any transaction (Redshift
//!   refuses some ALTERs inside one), each idempotent: `IF NOT EXISTS` where Redshift has it, and
//!   a [`ColumnCheck`] the caller runs first ([`COLUMN_EXISTS_SQL`]) for column changes, which
//!   have no `IF [NOT] EXISTS` in Redshift;
//! - truncates and loads become [`PlanStep::Load`] transactions (consecutive ones share one). A
//!   truncate is `DELETE FROM`, never `TRUNCATE`, which commits the open transaction in Redshift.
//!   A load stages each file in a temp table with `COPY`, then merges set-based: `UPDATE ... FROM`
//!   per update file, `DELETE ... USING` for the delete file and the upsert file's keys, one
//!   `INSERT ... SELECT`, and drops its temp tables. Statements per load: 3 per file + 1 per
//!   update / delete file + 2 for the upsert file, whatever the row count.
//! - the last transaction ends with the ledger row ([`ledger_insert`]); a table-segment with no
//!   load gets a final transaction holding just that row. The caller skips a table-segment the
//!   ledger already holds ([`LEDGER_CHECK_SQL`]), so a crash re-runs it from its start.
//!
//! Column types are the manifest's (typmod-less), or the source catalog's with typmods when the
//! caller passes [`TablePlanInput::column_types`]. [`plan_widen`] (`widen.rs`) plans the
//! `ALTER COLUMN ... TYPE VARCHAR(n)` steps for VARCHAR columns the catalog declares wider than
//! the target holds, each guarded by a [`WidthCheck`] ([`VARCHAR_WIDTH_SQL`]).
//!
//! Everything inside a transaction uses literals, never bind parameters, so each statement is
//! one simple-protocol round trip. COPY statements carry credentials: log them only through
//! [`redact`].
//!
//! Replay: DDL steps are guarded, so re-running them from any crash point converges (the type
//! change keeps its column present throughout, see `alter_column_type`). A load re-run after
//! *later* DDL of the same table-segment already ran must not touch columns that DDL dropped, so
//! a load leaves out (of its UPDATE / INSERT column lists) every column a later step of the same
//! table-segment drops; their values would be dropped anyway. Checked against PostgreSQL by
//! crashing before each step of a plan with every step kind and replaying from the start.
//! Known limits (crash inside one table-segment's sequence, then replay): a later-dropped column
//! used as a key still appears in that load's WHERE clauses and fails the replay; a load that
//! precedes a type change in the same segment, replayed after it, writes old-type values into
//! the new-type column: fine where an implicit assignment cast exists (integer -> bigint,
//! anything -> text), a cast error otherwise (text -> integer); likewise two type changes of one
//! column in one segment.

pub mod copy;
pub mod ledger;
pub mod naming;
pub mod renames;
mod widen;

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

pub use copy::{copy_sql, redact, CopyAuth, COPY_FORMAT, LAST_COPY_COUNT_SQL};
pub use ledger::{
    ledger_insert, rejected_insert, LedgerRow, Rejected, RowCounts, LEDGER_CHECK_LEGACY_SQL,
    LEDGER_CHECK_SQL, LEDGER_DDL, LEDGER_LINEAGE_COLUMN, LEDGER_UPGRADE_SQL, REJECTED_ROWS_SQL,
};
pub use naming::{
    check_collisions, check_column_names, check_ident, copy_literal, quote_ident, quote_literal,
    target_column, Naming, SqlError, TargetTable, MAX_IDENT_BYTES,
};

use crate::csv::manifest::{ColumnManifest, FileKind, FileManifest, StepManifest, TableManifest};
use crate::csv::typemap::{redshift_type_with_typmod, typmodless_name, varchar_width};
use crate::lsn::Lsn;

pub use widen::{plan_widen, widen_columns, WidenStep, WidthCheck, VARCHAR_WIDTH_SQL};

/// What [`plan_table`] needs for one table in one segment.
#[derive(Debug, Clone)]
pub struct TablePlanInput<'a> {
    pub table: &'a TableManifest,
    pub target: TargetTable,
    pub segment: u64,
    /// The segment's WAL lineage (ledger key).
    pub lineage: crate::wal::Lineage,
    pub first_lsn: Lsn,
    pub last_lsn: Lsn,
    /// s3 URL of each file by its manifest `path`, e.g.
    /// "s3://bucket/prefix/00000000000000000012/public.users.1.upsert.csv.gz"
    pub file_urls: &'a BTreeMap<String, String>,
    pub auth: &'a CopyAuth,
    pub region: &'a str,
    /// The source catalog's `format_type` (with typmod, e.g. `character varying(20)`) of each
    /// column by source column name, when known: CREATE TABLE and ADD COLUMN then declare
    /// [`redshift_type_with_typmod`] instead of the manifest's typmod-less type, for columns
    /// whose catalog type is still the type the manifest names (otherwise the catalog is newer
    /// than the segment and the manifest's type is kept).
    pub column_types: Option<&'a BTreeMap<String, String>>,
    /// `MAXERROR` of each COPY (0: none, a rejected row fails the load): the table quarantines
    /// rejected rows (`[tables."s.t"] on_reject = "quarantine"`).
    pub max_errors: u32,
}

/// A condition on one column: run the step only if the column's presence differs from
/// `want_present` (i.e. skip when the column is already as wanted). Names are target names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnCheck {
    pub schema: String,
    pub table: String,
    pub column: String,
    pub want_present: bool,
}

/// One DDL step, run outside any transaction, after its check. `sql` is sent as one simple
/// query: it may hold several statements (the type-change swap is `BEGIN; ...; COMMIT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdlStep {
    /// `None`: always run (the statement is idempotent by itself).
    pub check: Option<ColumnCheck>,
    pub sql: String,
}

impl DdlStep {
    /// Whether to run `sql`, given whether the checked column is present now.
    pub fn should_run(&self, column_present: bool) -> bool {
        self.check
            .as_ref()
            .is_none_or(|c| column_present != c.want_present)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanStep {
    /// Statements run one by one outside any transaction, each guarded by a catalog check
    /// the caller runs first.
    Ddl(DdlStep),
    /// One transaction: BEGIN; statements...; COMMIT (the caller sends BEGIN/COMMIT).
    Load(LoadStep),
}

/// The statements of one load transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadStep {
    pub statements: Vec<String>,
    /// Each COPY among `statements`: its index there and the rows of its file, in order. The
    /// loader checks each against what the COPY loaded, so a file read short never goes
    /// unnoticed.
    pub copies: Vec<StagedCopy>,
}

/// A COPY statement of a [`LoadStep`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagedCopy {
    /// Its index in [`LoadStep::statements`].
    pub statement: usize,
    /// The rows of the file it loads.
    pub rows: u64,
}

/// Binds: `$1` schema, `$2` table, `$3` column (target names, already lower case).
pub const COLUMN_EXISTS_SQL: &str = "SELECT 1 FROM information_schema.columns \
     WHERE table_schema = $1 AND table_name = $2 AND column_name = $3";

/// Plans one table-segment (see the module docs); the ledger row's `applied_at` is now.
pub fn plan_table(input: &TablePlanInput<'_>) -> Result<Vec<PlanStep>, SqlError> {
    plan_table_at(input, SystemTime::now())
}

/// [`plan_table`] with the ledger's `applied_at` given (deterministic).
pub fn plan_table_at(
    input: &TablePlanInput<'_>,
    applied_at: SystemTime,
) -> Result<Vec<PlanStep>, SqlError> {
    let table = input.table;
    input.target.check()?;
    let source = table.qualified();
    let mut p = Planner {
        input,
        target: input.target.sql(),
        source: source.clone(),
        steps: Vec::new(),
        open: None,
        staging: 0,
        schema_created: false,
    };
    let mut added_with_rename = None;
    for (i, step) in table.steps.iter().enumerate() {
        if added_with_rename.take() == Some(i) {
            continue;
        }
        // Target columns a later step of this table-segment drops (see the module docs).
        let dropped_later: BTreeSet<String> = table.steps[i + 1..]
            .iter()
            .filter_map(|s| match s {
                StepManifest::DropColumn { name } => Some(target_column(name)),
                _ => None,
            })
            .collect();
        match step {
            StepManifest::CreateTable { columns } => p.create_table(columns)?,
            StepManifest::AddColumn { column } => p.add_column(column)?,
            StepManifest::DropColumn { name } => p.drop_column(name)?,
            StepManifest::RenameColumn { from, to } => {
                // The old name added again right after: one transaction with the rename.
                let readd = match table.steps.get(i + 1) {
                    Some(StepManifest::AddColumn { column }) if column.name == *from => {
                        added_with_rename = Some(i + 1);
                        Some(column)
                    }
                    _ => None,
                };
                p.rename_column(from, to, readd)?
            }
            StepManifest::AlterColumnType {
                name,
                from,
                redshift_type,
                ..
            } => {
                // Pointless when the column goes later anyway (and loads in between leave it out).
                if !dropped_later.contains(&target_column(name)) {
                    p.alter_column_type(name, from, redshift_type)?;
                }
            }
            StepManifest::Truncate => {
                let sql = format!("DELETE FROM {}", p.target);
                p.open().statements.push(sql);
            }
            StepManifest::Load {
                columns,
                key,
                files,
            } => p.load(columns, key, files, &dropped_later)?,
        }
    }
    let ledger_name = table.ledger_name();
    let ledger = ledger_insert(&LedgerRow {
        lineage: input.lineage,
        source_table: &ledger_name,
        target: &input.target,
        segment: input.segment,
        first_lsn: input.first_lsn,
        last_lsn: input.last_lsn,
        counts: RowCounts::of(table),
        applied_at,
    });
    p.open().statements.push(ledger);
    p.close();
    Ok(p.steps)
}

struct Planner<'a> {
    input: &'a TablePlanInput<'a>,
    /// `"schema"."table"`.
    target: String,
    /// Source `schema.table`, for errors.
    source: String,
    steps: Vec<PlanStep>,
    /// The transaction being assembled.
    open: Option<LoadStep>,
    /// Staging tables used so far (names are unique within the plan).
    staging: usize,
    schema_created: bool,
}

impl Planner<'_> {
    fn open(&mut self) -> &mut LoadStep {
        self.open.get_or_insert_with(LoadStep::default)
    }

    /// Ends the open transaction, if any (before DDL, and at the end).
    fn close(&mut self) {
        if let Some(load) = self.open.take() {
            self.steps.push(PlanStep::Load(load));
        }
    }

    fn ddl(&mut self, check: Option<(&str, bool)>, sql: String) {
        self.close();
        let check = check.map(|(column, want_present)| ColumnCheck {
            schema: self.input.target.schema.clone(),
            table: self.input.target.name.clone(),
            column: column.to_string(),
            want_present,
        });
        self.steps.push(PlanStep::Ddl(DdlStep { check, sql }));
    }

    /// A column definition for CREATE TABLE / ADD COLUMN: the catalog's typed mapping when it
    /// still describes this column's type (see [`TablePlanInput::column_types`]).
    fn column_def(&self, c: &ColumnManifest) -> Result<String, SqlError> {
        let typed = self
            .input
            .column_types
            .and_then(|types| types.get(&c.name))
            .filter(|ft| typmodless_name(ft) == c.pg_type)
            .map(|ft| redshift_type_with_typmod(ft));
        let ty = typed.as_deref().unwrap_or(&c.redshift_type);
        Ok(format!(
            "{} {}",
            quote_ident(&target_column(&c.name)),
            self.checked_type(&c.name, ty)?
        ))
    }

    /// Types come from the manifest: accept only what a type name looks like.
    fn checked_type<'t>(&self, column: &str, ty: &'t str) -> Result<&'t str, SqlError> {
        let ok = !ty.trim().is_empty()
            && ty
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b" (),_".contains(&b));
        if ok {
            Ok(ty)
        } else {
            Err(SqlError::BadType {
                table: self.source.clone(),
                column: column.to_string(),
                ty: ty.to_string(),
            })
        }
    }

    fn create_table(&mut self, columns: &[ColumnManifest]) -> Result<(), SqlError> {
        check_collisions(&self.source, columns)?;
        let defs = columns
            .iter()
            .map(|c| self.column_def(c))
            .collect::<Result<Vec<_>, _>>()?;
        if !self.schema_created {
            self.schema_created = true;
            let sql = format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                quote_ident(&self.input.target.schema)
            );
            self.ddl(None, sql);
        }
        // Source column order is kept; DISTSTYLE AUTO lets Redshift pick (and change) it.
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} ({}) DISTSTYLE AUTO",
            self.target,
            defs.join(", ")
        );
        self.ddl(None, sql);
        Ok(())
    }

    fn add_column(&mut self, column: &ColumnManifest) -> Result<(), SqlError> {
        check_collisions(&self.source, std::slice::from_ref(column))?;
        let name = target_column(&column.name);
        let sql = format!(
            "ALTER TABLE {} ADD COLUMN {}",
            self.target,
            self.column_def(column)?
        );
        self.ddl(Some((&name, true)), sql);
        Ok(())
    }

    fn drop_column(&mut self, name: &str) -> Result<(), SqlError> {
        let name = target_column(name);
        check_ident(&format!("column of table {}", self.source), &name)?;
        let sql = format!(
            "ALTER TABLE {} DROP COLUMN {}",
            self.target,
            quote_ident(&name)
        );
        self.ddl(Some((&name, false)), sql);
        Ok(())
    }

    /// `RENAME COLUMN from TO to`, skipped when `to` is there already (a replay). With `readd`
    /// (the old name added again as a new column), one transaction renames and adds, so that a
    /// crash between the two cannot leave a table a replay without the catalog's history
    /// (`renames.rs`) would not repair: that replay skips the add of `to` (present) and finds
    /// `from` (added in the same transaction).
    fn rename_column(
        &mut self,
        from: &str,
        to: &str,
        readd: Option<&ColumnManifest>,
    ) -> Result<(), SqlError> {
        let (from_t, to_t) = (target_column(from), target_column(to));
        check_ident(&format!("column of table {}", self.source), &from_t)?;
        check_ident(&format!("column of table {}", self.source), &to_t)?;
        let rename = format!(
            "ALTER TABLE {} RENAME COLUMN {} TO {}",
            self.target,
            quote_ident(&from_t),
            quote_ident(&to_t)
        );
        let sql = match readd {
            None => rename,
            Some(column) => {
                check_collisions(&self.source, std::slice::from_ref(column))?;
                format!(
                    "BEGIN; {rename}; ALTER TABLE {} ADD COLUMN {}; COMMIT",
                    self.target,
                    self.column_def(column)?
                )
            }
        };
        self.ddl(Some((&to_t, true)), sql);
        Ok(())
    }

    /// Redshift changes a column's type only by widening a VARCHAR (outside a transaction);
    /// all VARCHARs are VARCHAR(65535) today, but a wider VARCHAR(n) is honoured. Same Redshift
    /// type (e.g. `character varying` -> `text`): nothing to do. Any other change is emulated
    /// with a new column `re_dms_new_<c>` in three DDL steps, each guarded by one column check:
    /// 1. `ADD COLUMN re_dms_new_<c> NEWTYPE`                if `re_dms_new_<c>` is absent;
    /// 2. `UPDATE t SET re_dms_new_<c> = CAST(c AS NEWTYPE)` if `c` is present;
    /// 3. one transaction `BEGIN; DROP COLUMN c; RENAME COLUMN re_dms_new_<c> TO c; COMMIT`
    ///    (both are allowed in a transaction block) if `re_dms_new_<c>` is present.
    ///
    /// Step 3 being atomic, `c` never goes missing, so a load replayed before these steps always
    /// finds it. Replay from any crash point converges: after 1 or 2 it redoes 2-3; after 3 it
    /// redoes the whole conversion (a no-op cast, one table rewrite). The planner skips the change
    /// when a later step drops `c`. The column moves to the end of the table (INSERTs name their
    /// columns). `boolean` to a string type is written `true`/`false` as PostgreSQL casts it
    /// (Redshift cannot CAST a boolean to a string).
    fn alter_column_type(&mut self, name: &str, from: &str, to: &str) -> Result<(), SqlError> {
        let to = self.checked_type(name, to)?;
        let from_rs = crate::csv::typemap::redshift_type(from);
        if from_rs.eq_ignore_ascii_case(to) {
            return Ok(());
        }
        let col = target_column(name);
        check_ident(&format!("column of table {}", self.source), &col)?;
        let qcol = quote_ident(&col);
        let t = self.target.clone();
        if let (Some(old), Some(new)) = (varchar_width(&from_rs), varchar_width(to)) {
            if new > old {
                self.ddl(
                    None,
                    format!("ALTER TABLE {t} ALTER COLUMN {qcol} TYPE {to}"),
                );
            }
            return Ok(());
        }
        let tmp = format!("re_dms_new_{col}");
        check_ident(&format!("column of table {}", self.source), &tmp)?;
        let qtmp = quote_ident(&tmp);
        let is_string = |t: &str| {
            let t = t.trim_start().to_ascii_uppercase();
            t.starts_with("VARCHAR") || t.starts_with("CHAR")
        };
        let value = if from == "boolean" && is_string(to) {
            format!("CASE WHEN {qcol} THEN 'true' WHEN NOT {qcol} THEN 'false' END")
        } else {
            format!("CAST({qcol} AS {to})")
        };
        self.ddl(
            Some((&tmp, true)),
            format!("ALTER TABLE {t} ADD COLUMN {qtmp} {to}"),
        );
        self.ddl(
            Some((&col, false)),
            format!("UPDATE {t} SET {qtmp} = {value}"),
        );
        self.ddl(
            Some((&tmp, false)),
            format!(
                "BEGIN; ALTER TABLE {t} DROP COLUMN {qcol}; \
                 ALTER TABLE {t} RENAME COLUMN {qtmp} TO {qcol}; COMMIT"
            ),
        );
        Ok(())
    }

    /// Stages `file` as temp table `re_dms_stg_<n>` with `columns` (target name, type): CREATE
    /// TEMP TABLE + COPY into `sql.stage`, DROP into `sql.drops`. Returns the quoted staging name.
    fn stage(
        &mut self,
        file: &FileManifest,
        columns: &[(String, &str)],
        sql: &mut LoadSql,
    ) -> Result<String, SqlError> {
        check_column_names(&self.source, columns.iter().map(|(n, _)| n.as_str()))?;
        let url = self
            .input
            .file_urls
            .get(&file.path)
            .ok_or_else(|| SqlError::MissingUrl {
                table: self.source.clone(),
                path: file.path.clone(),
            })?;
        let name = format!("re_dms_stg_{}", self.staging);
        self.staging += 1;
        let defs: Vec<String> = columns
            .iter()
            .map(|(n, t)| format!("{} {t}", quote_ident(n)))
            .collect();
        sql.stage.push(format!(
            "CREATE TEMP TABLE {} ({})",
            quote_ident(&name),
            defs.join(", ")
        ));
        let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
        let mut copy = copy_sql(
            &self.source,
            &name,
            &names,
            url,
            self.input.auth,
            self.input.region,
        )?;
        if self.input.max_errors > 0 {
            copy.push_str(&format!(" MAXERROR {}", self.input.max_errors));
        }
        sql.copies.push(StagedCopy {
            statement: sql.stage.len(),
            rows: file.rows,
        });
        sql.stage.push(copy);
        sql.drops.push(format!("DROP TABLE {}", quote_ident(&name)));
        Ok(quote_ident(&name))
    }

    /// `"schema"."table"."k" = stg."sk" AND ...` over (target column, staging column) pairs.
    fn join(&self, stg: &str, pairs: impl Iterator<Item = (String, String)>) -> String {
        pairs
            .map(|(t, s)| {
                format!(
                    "{}.{} = {stg}.{}",
                    self.target,
                    quote_ident(&t),
                    quote_ident(&s)
                )
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// One load step: stages every file, then merges them into the target (see the module docs),
    /// appending the statements to the open transaction.
    fn load(
        &mut self,
        columns: &[ColumnManifest],
        key: &[String],
        files: &[FileManifest],
        dropped_later: &BTreeSet<String>,
    ) -> Result<(), SqlError> {
        let types = self.load_types(columns)?;
        let mut sql = LoadSql::default();
        for file in files {
            let cols = self.staged_columns(&types, file)?;
            match file.kind {
                FileKind::Update => self.merge_update(file, &cols, dropped_later, &mut sql)?,
                FileKind::Delete => self.merge_delete(file, &cols, &mut sql)?,
                FileKind::Upsert => self.merge_upsert(file, &cols, key, dropped_later, &mut sql)?,
            }
        }
        let LoadSql {
            stage,
            copies,
            updates,
            deletes,
            inserts,
            drops,
        } = sql;
        let open = self.open();
        // The staged statements come first: their indexes move by what the step holds already.
        let at = open.statements.len();
        open.copies.extend(copies.into_iter().map(|c| StagedCopy {
            statement: at + c.statement,
            ..c
        }));
        for part in [stage, updates, deletes, inserts, drops] {
            open.statements.extend(part);
        }
        Ok(())
    }

    /// The checked Redshift type of each column of a load, by source column name.
    fn load_types<'c>(
        &self,
        columns: &'c [ColumnManifest],
    ) -> Result<BTreeMap<&'c str, &'c str>, SqlError> {
        check_collisions(&self.source, columns)?;
        let mut types: BTreeMap<&str, &str> = BTreeMap::new();
        for c in columns {
            types.insert(&c.name, self.checked_type(&c.name, &c.redshift_type)?);
        }
        Ok(types)
    }

    /// The staging table's columns for `file` (target name, type): `re_dms_key_<k>` for each
    /// match column, then the file's columns.
    fn staged_columns<'c>(
        &self,
        types: &BTreeMap<&str, &'c str>,
        file: &FileManifest,
    ) -> Result<Vec<(String, &'c str)>, SqlError> {
        let typed = |c: &str, staged: String| {
            types
                .get(c)
                .map(|t| (staged, *t))
                .ok_or_else(|| SqlError::UnknownColumn {
                    table: self.source.clone(),
                    path: file.path.clone(),
                    column: c.to_string(),
                })
        };
        let mut cols = Vec::new();
        for m in &file.match_columns {
            cols.push(typed(m, format!("re_dms_key_{}", target_column(m)))?);
        }
        for c in &file.columns {
            cols.push(typed(c, target_column(c))?);
        }
        Ok(cols)
    }

    fn no_key(&self, file: &FileManifest) -> SqlError {
        SqlError::NoKey {
            table: self.source.clone(),
            path: file.path.clone(),
        }
    }

    /// An update file (rows whose unchanged TOAST columns are left out): `UPDATE ... FROM` its
    /// staging table, matched on the row's key before the change. Nothing when every column it
    /// sets is dropped later.
    fn merge_update(
        &mut self,
        file: &FileManifest,
        cols: &[(String, &str)],
        dropped_later: &BTreeSet<String>,
        sql: &mut LoadSql,
    ) -> Result<(), SqlError> {
        if file.match_columns.is_empty() {
            return Err(self.no_key(file));
        }
        let set: Vec<String> = file
            .columns
            .iter()
            .map(|c| target_column(c))
            .filter(|c| !dropped_later.contains(c))
            .collect();
        if set.is_empty() {
            return Ok(());
        }
        let stg = self.stage(file, cols, sql)?;
        let sets: Vec<String> = set
            .iter()
            .map(|c| format!("{} = {stg}.{}", quote_ident(c), quote_ident(c)))
            .collect();
        let on = self.join(
            &stg,
            file.match_columns.iter().map(|m| {
                let t = target_column(m);
                (t.clone(), format!("re_dms_key_{t}"))
            }),
        );
        sql.updates.push(format!(
            "UPDATE {} SET {} FROM {stg} WHERE {on}",
            self.target,
            sets.join(", ")
        ));
        Ok(())
    }

    /// The delete file (key columns): `DELETE ... USING` its staging table.
    fn merge_delete(
        &mut self,
        file: &FileManifest,
        cols: &[(String, &str)],
        sql: &mut LoadSql,
    ) -> Result<(), SqlError> {
        if file.columns.is_empty() {
            return Err(self.no_key(file));
        }
        let stg = self.stage(file, cols, sql)?;
        let on = self.join(
            &stg,
            file.columns
                .iter()
                .map(|c| (target_column(c), target_column(c))),
        );
        sql.deletes.push(format!(
            "DELETE FROM {} USING {stg} WHERE {on}",
            self.target
        ));
        Ok(())
    }

    /// The upsert file (full rows): `DELETE ... USING` its staging table by `key`, then
    /// `INSERT ... SELECT` from it.
    fn merge_upsert(
        &mut self,
        file: &FileManifest,
        cols: &[(String, &str)],
        key: &[String],
        dropped_later: &BTreeSet<String>,
        sql: &mut LoadSql,
    ) -> Result<(), SqlError> {
        if key.is_empty() {
            return Err(self.no_key(file));
        }
        if let Some(k) = key.iter().find(|k| !file.columns.contains(k)) {
            return Err(SqlError::UnknownColumn {
                table: self.source.clone(),
                path: file.path.clone(),
                column: k.clone(),
            });
        }
        let stg = self.stage(file, cols, sql)?;
        let on = self.join(
            &stg,
            key.iter().map(|k| (target_column(k), target_column(k))),
        );
        sql.deletes.push(format!(
            "DELETE FROM {} USING {stg} WHERE {on}",
            self.target
        ));
        // Key columns stay even if dropped later: the load's matching needs them.
        let list: Vec<String> = file
            .columns
            .iter()
            .filter(|c| key.contains(c) || !dropped_later.contains(&target_column(c)))
            .map(|c| quote_ident(&target_column(c)))
            .collect();
        let list = list.join(", ");
        sql.inserts.push(format!(
            "INSERT INTO {} ({list}) SELECT {list} FROM {stg}",
            self.target
        ));
        Ok(())
    }
}

/// The statements of one load, by group, in the order they run in its transaction.
#[derive(Default)]
struct LoadSql {
    /// CREATE TEMP TABLE + COPY of each file.
    stage: Vec<String>,
    /// The COPYs among `stage`.
    copies: Vec<StagedCopy>,
    /// One `UPDATE ... FROM` per update file.
    updates: Vec<String>,
    /// `DELETE ... USING` for the delete file and the upsert file's keys.
    deletes: Vec<String>,
    /// `INSERT ... SELECT` of the upsert file.
    inserts: Vec<String>,
    /// DROP of each staging table.
    drops: Vec<String>,
}

#[cfg(test)]
mod tests;
