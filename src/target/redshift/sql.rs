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

#[path = "naming.rs"]
pub mod naming;

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

pub use naming::{
    check_collisions, check_column_names, check_ident, copy_literal, copy_sql, ledger_insert,
    quote_ident, quote_literal, redact, target_column, CopyAuth, LedgerRow, Naming, RowCounts,
    SqlError, TargetTable, COPY_FORMAT, LEDGER_CHECK_SQL, LEDGER_DDL, MAX_IDENT_BYTES,
};

use crate::lsn::Lsn;
use crate::manifest::{ColumnManifest, FileKind, FileManifest, StepManifest, TableManifest};

/// What [`plan_table`] needs for one table in one segment.
#[derive(Debug, Clone)]
pub struct TablePlanInput<'a> {
    pub table: &'a TableManifest,
    pub target: TargetTable,
    pub segment: u64,
    pub first_lsn: Lsn,
    pub last_lsn: Lsn,
    /// s3 URL of each file by its manifest `path`, e.g.
    /// "s3://bucket/prefix/00000000000000000012/public.users.1.upsert.csv.gz"
    pub file_urls: &'a BTreeMap<String, String>,
    pub auth: &'a CopyAuth,
    pub region: &'a str,
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
    Load(Vec<String>),
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
    for (i, step) in table.steps.iter().enumerate() {
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
                p.open().push(sql);
            }
            StepManifest::Load {
                columns,
                key,
                files,
            } => p.load(columns, key, files, &dropped_later)?,
        }
    }
    let ledger = ledger_insert(&LedgerRow {
        source_table: &source,
        target: &input.target,
        segment: input.segment,
        first_lsn: input.first_lsn,
        last_lsn: input.last_lsn,
        counts: RowCounts::of(table),
        applied_at,
    });
    p.open().push(ledger);
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
    open: Option<Vec<String>>,
    /// Staging tables used so far (names are unique within the plan).
    staging: usize,
    schema_created: bool,
}

impl Planner<'_> {
    fn open(&mut self) -> &mut Vec<String> {
        self.open.get_or_insert_with(Vec::new)
    }

    /// Ends the open transaction, if any (before DDL, and at the end).
    fn close(&mut self) {
        if let Some(statements) = self.open.take() {
            self.steps.push(PlanStep::Load(statements));
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

    fn column_def(&self, c: &ColumnManifest) -> Result<String, SqlError> {
        Ok(format!(
            "{} {}",
            quote_ident(&target_column(&c.name)),
            self.checked_type(&c.name, &c.redshift_type)?
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
        let from_rs = crate::typemap::redshift_type(from);
        if from_rs.eq_ignore_ascii_case(to) {
            return Ok(());
        }
        let col = target_column(name);
        check_ident(&format!("column of table {}", self.source), &col)?;
        let qcol = quote_ident(&col);
        let t = self.target.clone();
        if let (Some(old), Some(new)) = (varchar_len(&from_rs), varchar_len(to)) {
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
    /// TEMP TABLE + COPY into `stage`, DROP into `drops`. Returns the quoted staging name.
    fn stage(
        &mut self,
        file: &FileManifest,
        columns: &[(String, &str)],
        stage: &mut Vec<String>,
        drops: &mut Vec<String>,
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
        stage.push(format!(
            "CREATE TEMP TABLE {} ({})",
            quote_ident(&name),
            defs.join(", ")
        ));
        let names: Vec<String> = columns.iter().map(|(n, _)| n.clone()).collect();
        stage.push(copy_sql(
            &self.source,
            &name,
            &names,
            url,
            self.input.auth,
            self.input.region,
        )?);
        drops.push(format!("DROP TABLE {}", quote_ident(&name)));
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

    fn load(
        &mut self,
        columns: &[ColumnManifest],
        key: &[String],
        files: &[FileManifest],
        dropped_later: &BTreeSet<String>,
    ) -> Result<(), SqlError> {
        check_collisions(&self.source, columns)?;
        let mut types: BTreeMap<&str, &str> = BTreeMap::new();
        for c in columns {
            types.insert(&c.name, self.checked_type(&c.name, &c.redshift_type)?);
        }
        let source = self.source.clone();
        let typed = |file: &FileManifest, c: &str, staged: String| {
            types
                .get(c)
                .map(|t| (staged, *t))
                .ok_or_else(|| SqlError::UnknownColumn {
                    table: source.clone(),
                    path: file.path.clone(),
                    column: c.to_string(),
                })
        };
        let no_key = |file: &FileManifest| SqlError::NoKey {
            table: source.clone(),
            path: file.path.clone(),
        };
        let (mut stage, mut updates, mut deletes, mut inserts, mut drops) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for file in files {
            let mut cols = Vec::new();
            for m in &file.match_columns {
                cols.push(typed(file, m, format!("re_dms_key_{}", target_column(m)))?);
            }
            for c in &file.columns {
                cols.push(typed(file, c, target_column(c))?);
            }
            match file.kind {
                FileKind::Update => {
                    if file.match_columns.is_empty() {
                        return Err(no_key(file));
                    }
                    let set: Vec<String> = file
                        .columns
                        .iter()
                        .map(|c| target_column(c))
                        .filter(|c| !dropped_later.contains(c))
                        .collect();
                    if set.is_empty() {
                        continue;
                    }
                    let stg = self.stage(file, &cols, &mut stage, &mut drops)?;
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
                    updates.push(format!(
                        "UPDATE {} SET {} FROM {stg} WHERE {on}",
                        self.target,
                        sets.join(", ")
                    ));
                }
                FileKind::Delete => {
                    if file.columns.is_empty() {
                        return Err(no_key(file));
                    }
                    let stg = self.stage(file, &cols, &mut stage, &mut drops)?;
                    let on = self.join(
                        &stg,
                        file.columns
                            .iter()
                            .map(|c| (target_column(c), target_column(c))),
                    );
                    deletes.push(format!(
                        "DELETE FROM {} USING {stg} WHERE {on}",
                        self.target
                    ));
                }
                FileKind::Upsert => {
                    if key.is_empty() {
                        return Err(no_key(file));
                    }
                    if let Some(k) = key.iter().find(|k| !file.columns.contains(k)) {
                        return Err(SqlError::UnknownColumn {
                            table: source.clone(),
                            path: file.path.clone(),
                            column: k.clone(),
                        });
                    }
                    let stg = self.stage(file, &cols, &mut stage, &mut drops)?;
                    let on = self.join(
                        &stg,
                        key.iter().map(|k| (target_column(k), target_column(k))),
                    );
                    deletes.push(format!(
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
                    inserts.push(format!(
                        "INSERT INTO {} ({list}) SELECT {list} FROM {stg}",
                        self.target
                    ));
                }
            }
        }
        let open = self.open();
        for part in [stage, updates, deletes, inserts, drops] {
            open.extend(part);
        }
        Ok(())
    }
}

/// `n` of `VARCHAR(n)` / `CHARACTER VARYING(n)`.
fn varchar_len(ty: &str) -> Option<u32> {
    let t = ty.trim().to_ascii_uppercase();
    let rest = t
        .strip_prefix("VARCHAR")
        .or_else(|| t.strip_prefix("CHARACTER VARYING"))?;
    rest.trim()
        .strip_prefix('(')?
        .strip_suffix(')')?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn col(name: &str, pg: &str) -> ColumnManifest {
        ColumnManifest {
            name: name.into(),
            pg_type: pg.into(),
            redshift_type: crate::typemap::redshift_type(pg),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn file(kind: FileKind, path: &str, m: &[&str], cols: &[&str], rows: u64) -> FileManifest {
        let (match_columns, columns) = (strings(m), strings(cols));
        FileManifest {
            kind,
            path: path.into(),
            match_columns,
            columns,
            rows,
            bytes: 10,
        }
    }

    fn load(columns: Vec<ColumnManifest>, key: &[&str], files: Vec<FileManifest>) -> StepManifest {
        let key = strings(key);
        StepManifest::Load {
            columns,
            key,
            files,
        }
    }

    fn alter(name: &str, from: &str, to: &str) -> StepManifest {
        let redshift_type = crate::typemap::redshift_type(to);
        let (name, from, to) = (name.into(), from.into(), to.into());
        StepManifest::AlterColumnType {
            name,
            from,
            to,
            redshift_type,
        }
    }

    fn table(schema: &str, name: &str, steps: Vec<StepManifest>) -> TableManifest {
        let (schema, name) = (schema.into(), name.into());
        TableManifest {
            schema,
            name,
            key: vec![],
            steps,
        }
    }

    /// Every step kind; `rows` scales the row counts.
    fn full_table(rows: u64) -> TableManifest {
        let cols = vec![
            col("Id", "integer"),
            col("Name", "text"),
            col("flag", "boolean"),
            col("data", "bytea"),
        ];
        let all = ["Id", "Name", "flag", "data"];
        let load1 = load(
            cols.clone(),
            &["Id"],
            vec![
                file(FileKind::Delete, "p.t.1.delete.csv.gz", &[], &["Id"], rows),
                file(FileKind::Upsert, "p.t.1.upsert.csv.gz", &[], &all, 2 * rows),
                file(
                    FileKind::Update,
                    "p.t.1.update0.csv.gz",
                    &["Id"],
                    &["Id", "Name"],
                    rows,
                ),
                file(
                    FileKind::Update,
                    "p.t.1.update1.csv.gz",
                    &["Id"],
                    &["flag"],
                    rows,
                ),
            ],
        );
        let mut cols2 = cols.clone();
        cols2.retain(|c| c.name != "flag");
        cols2.push(col("note", "text"));
        cols2[0] = col("Id", "bigint");
        let all2 = ["Id", "Name", "data", "note"];
        let load2 = load(
            cols2,
            &["Id"],
            vec![file(
                FileKind::Upsert,
                "p.t.6.upsert.csv.gz",
                &[],
                &all2,
                rows,
            )],
        );
        let column = col("note", "text");
        let steps = vec![
            StepManifest::CreateTable { columns: cols },
            load1,
            StepManifest::AddColumn { column },
            StepManifest::DropColumn {
                name: "flag".into(),
            },
            alter("Id", "integer", "bigint"),
            StepManifest::Truncate,
            load2,
        ];
        table("Sales", "Orders", steps)
    }

    fn plan_with(table: &TableManifest, auth: &CopyAuth) -> Result<Vec<PlanStep>, SqlError> {
        let mut urls = BTreeMap::new();
        for s in &table.steps {
            if let StepManifest::Load { files, .. } = s {
                for f in files {
                    let url = format!("s3://b/re_dms/00000000000000000007/{}", f.path);
                    urls.insert(f.path.clone(), url);
                }
            }
        }
        let input = TablePlanInput {
            table,
            target: Naming::default().target_table(&table.schema, &table.name),
            segment: 7,
            first_lsn: Lsn(1),
            last_lsn: Lsn(0x1_0000_0048),
            file_urls: &urls,
            auth,
            region: "us-east-1",
        };
        // 2023-11-14 22:13:20 UTC
        plan_table_at(&input, UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    }

    fn try_plan(table: &TableManifest) -> Result<Vec<PlanStep>, SqlError> {
        plan_with(table, &CopyAuth::IamRole("arn:aws:iam::1:role/r".into()))
    }

    fn plan(table: &TableManifest) -> Vec<PlanStep> {
        try_plan(table).unwrap()
    }

    fn loads(plan: &[PlanStep]) -> Vec<&Vec<String>> {
        let mut out = Vec::new();
        for s in plan {
            if let PlanStep::Load(v) = s {
                out.push(v);
            }
        }
        out
    }

    fn ddls(plan: &[PlanStep]) -> Vec<(String, Option<ColumnCheck>)> {
        let ddl = |s: &PlanStep| match s {
            PlanStep::Ddl(d) => Some((d.sql.clone(), d.check.clone())),
            PlanStep::Load(_) => None,
        };
        plan.iter().filter_map(ddl).collect()
    }

    fn check(c: &str, want_present: bool) -> Option<ColumnCheck> {
        let (schema, table, column) = ("sales".into(), "orders".into(), c.into());
        Some(ColumnCheck {
            schema,
            table,
            column,
            want_present,
        })
    }

    #[test]
    fn full_plan_in_manifest_order() {
        let p = plan(&full_table(5));
        let kind = |s: &PlanStep| match s {
            PlanStep::Ddl(_) => 'D',
            PlanStep::Load(_) => 'L',
        };
        // schema, table | load1 | add, drop, alter x3 | truncate + load2 + ledger
        assert_eq!(p.iter().map(kind).collect::<String>(), "DDLDDDDDL");
        let t = "\"sales\".\"orders\"";
        let expected = vec![
            ("CREATE SCHEMA IF NOT EXISTS \"sales\"".to_string(), None),
            (
                format!(
                    "CREATE TABLE IF NOT EXISTS {t} (\"id\" INTEGER, \"name\" VARCHAR(65535), \
                     \"flag\" BOOLEAN, \"data\" VARBYTE(65535)) DISTSTYLE AUTO"
                ),
                None,
            ),
            (
                format!("ALTER TABLE {t} ADD COLUMN \"note\" VARCHAR(65535)"),
                check("note", true),
            ),
            (
                format!("ALTER TABLE {t} DROP COLUMN \"flag\""),
                check("flag", false),
            ),
            (
                format!("ALTER TABLE {t} ADD COLUMN \"re_dms_new_id\" BIGINT"),
                check("re_dms_new_id", true),
            ),
            (
                format!("UPDATE {t} SET \"re_dms_new_id\" = CAST(\"id\" AS BIGINT)"),
                check("id", false),
            ),
            (
                format!(
                    "BEGIN; ALTER TABLE {t} DROP COLUMN \"id\"; \
                     ALTER TABLE {t} RENAME COLUMN \"re_dms_new_id\" TO \"id\"; COMMIT"
                ),
                check("re_dms_new_id", false),
            ),
        ];
        assert_eq!(ddls(&p), expected);
        let l = loads(&p);
        // Truncate shares the transaction of the load after it; the ledger row ends it.
        assert_eq!(l[1][0], format!("DELETE FROM {t}"));
        assert!(l[0].iter().all(|s| !s.contains("re_dms.applied")));
        assert_eq!(
            l[1].last().unwrap(),
            "INSERT INTO re_dms.applied (source_table, target_table, segment, first_lsn, last_lsn, \
             rows_upserted, rows_deleted, rows_updated, applied_at) VALUES ('Sales.Orders', \
             'sales.orders', 7, '0/1', '1/48', 15, 5, 10, '2023-11-14 22:13:20.000000')"
        );
        let all = l
            .iter()
            .flat_map(|v| v.iter())
            .chain(expected.iter().map(|d| &d.0));
        assert!(all
            .clone()
            .all(|s| !s.to_ascii_uppercase().contains("TRUNCATE")));
    }

    #[test]
    fn load_statements() {
        let p = plan(&full_table(3));
        let t = "\"sales\".\"orders\"";
        let copy = |n: usize, cols: &str, path: &str| {
            format!(
                "COPY \"re_dms_stg_{n}\" ({cols}) FROM 's3://b/re_dms/00000000000000000007/{path}' \
                 IAM_ROLE 'arn:aws:iam::1:role/r' REGION 'us-east-1' {COPY_FORMAT}"
            )
        };
        let (s0, s1, s2) = ("\"re_dms_stg_0\"", "\"re_dms_stg_1\"", "\"re_dms_stg_2\"");
        let expected = vec![
            format!("CREATE TEMP TABLE {s0} (\"id\" INTEGER)"),
            copy(0, "\"id\"", "p.t.1.delete.csv.gz"),
            format!(
                "CREATE TEMP TABLE {s1} (\"id\" INTEGER, \"name\" VARCHAR(65535), \
                 \"flag\" BOOLEAN, \"data\" VARBYTE(65535))"
            ),
            copy(
                1,
                "\"id\", \"name\", \"flag\", \"data\"",
                "p.t.1.upsert.csv.gz",
            ),
            format!(
                "CREATE TEMP TABLE {s2} (\"re_dms_key_id\" INTEGER, \"id\" INTEGER, \
                 \"name\" VARCHAR(65535))"
            ),
            copy(
                2,
                "\"re_dms_key_id\", \"id\", \"name\"",
                "p.t.1.update0.csv.gz",
            ),
            // update1 only sets `flag`, dropped later in the segment: not staged at all.
            format!(
                "UPDATE {t} SET \"id\" = {s2}.\"id\", \"name\" = {s2}.\"name\" FROM {s2} \
                 WHERE {t}.\"id\" = {s2}.\"re_dms_key_id\""
            ),
            format!("DELETE FROM {t} USING {s0} WHERE {t}.\"id\" = {s0}.\"id\""),
            format!("DELETE FROM {t} USING {s1} WHERE {t}.\"id\" = {s1}.\"id\""),
            // `flag` is dropped later in the segment: left out so a replay after the drop works.
            format!(
                "INSERT INTO {t} (\"id\", \"name\", \"data\") SELECT \"id\", \"name\", \"data\" \
                 FROM {s1}"
            ),
            format!("DROP TABLE {s0}"),
            format!("DROP TABLE {s1}"),
            format!("DROP TABLE {s2}"),
        ];
        assert_eq!(loads(&p)[0], &expected);
        // Staging names stay unique across the plan's transactions.
        assert!(loads(&p)[1][1].starts_with("CREATE TEMP TABLE \"re_dms_stg_3\""));
    }

    #[test]
    fn statement_count_does_not_depend_on_rows() {
        let count = |p: &[PlanStep]| {
            let n = |s: &PlanStep| match s {
                PlanStep::Ddl(_) => 1,
                PlanStep::Load(v) => v.len(),
            };
            p.iter().map(n).sum::<usize>()
        };
        let small = plan(&full_table(1));
        let big = plan(&full_table(1_000_000));
        assert_eq!(count(&small), count(&big));
        assert_eq!(small.len(), big.len());
        // 7 DDL + load1 (3 staged files x 3 + update + 2 deletes + insert = 13)
        // + truncate + load2 (3 + delete + insert) + ledger = 7 + 13 + 7.
        assert_eq!(count(&small), 27);
    }

    #[test]
    fn ddl_only_segment_gets_a_ledger_transaction_and_checks_decide() {
        let p = plan(&table(
            "public",
            "t",
            vec![StepManifest::DropColumn { name: "X".into() }],
        ));
        assert_eq!(p.len(), 2);
        let PlanStep::Ddl(d) = &p[0] else {
            panic!("{p:?}")
        };
        assert_eq!(d.sql, "ALTER TABLE \"public\".\"t\" DROP COLUMN \"x\"");
        assert!(d.should_run(true) && !d.should_run(false));
        let l = loads(&p);
        assert_eq!(l[0].len(), 1);
        assert!(l[0][0].starts_with("INSERT INTO re_dms.applied"));
        let always = DdlStep {
            check: None,
            sql: String::new(),
        };
        assert!(always.should_run(true) && always.should_run(false));
    }

    #[test]
    fn alter_type_variants() {
        let one = |steps: Vec<StepManifest>| -> Vec<String> {
            ddls(&plan(&table("s", "t", steps)))
                .into_iter()
                .map(|d| d.0)
                .collect()
        };
        assert!(one(vec![alter("c", "character varying", "text")]).is_empty());
        assert!(one(vec![alter("c", "public.mood", "text")]).is_empty());
        let b = one(vec![alter("c", "boolean", "text")]);
        assert_eq!(b.len(), 3);
        let case = "CASE WHEN \"c\" THEN 'true' WHEN NOT \"c\" THEN 'false' END";
        assert!(b[1].contains(case), "{b:?}");
        let u = one(vec![alter("c", "uuid", "text")]);
        assert!(u[1].contains("CAST(\"c\" AS VARCHAR(65535))"));
        // A later drop makes the change pointless.
        let drop = StepManifest::DropColumn { name: "c".into() };
        let d = one(vec![alter("C", "integer", "bigint"), drop]);
        assert_eq!(d, ["ALTER TABLE \"s\".\"t\" DROP COLUMN \"c\""]);
        assert_eq!(varchar_len("VARCHAR(256)"), Some(256));
        assert_eq!(varchar_len("character varying ( 12 )"), Some(12));
        assert_eq!(varchar_len("BIGINT"), None);
    }

    #[test]
    fn escaping_in_identifiers_urls_and_credentials() {
        let cols = vec![col("it\"s", "integer"), col("O'k", "text")];
        let f = file(FileKind::Upsert, "x'y.csv.gz", &[], &["it\"s", "O'k"], 1);
        let mut t = table("we\"ird", "O'Brien", vec![load(cols, &["it\"s"], vec![f])]);
        let auth = CopyAuth::Keys {
            access_key_id: "AK'1".into(),
            secret_access_key: "se'cret".into(),
            session_token: None,
        };
        let p = plan_with(&t, &auth).unwrap();
        let l = loads(&p)[0];
        let stg =
            "CREATE TEMP TABLE \"re_dms_stg_0\" (\"it\"\"s\" INTEGER, \"o'k\" VARCHAR(65535))";
        assert_eq!(l[0], stg);
        assert_eq!(
            l[1],
            format!(
                "COPY \"re_dms_stg_0\" (\"it\"\"s\", \"o'k\") FROM \
                 's3://b/re_dms/00000000000000000007/x''y.csv.gz' ACCESS_KEY_ID 'AK''1' \
                 SECRET_ACCESS_KEY 'se''cret' REGION 'us-east-1' {COPY_FORMAT}"
            )
        );
        assert!(
            l[2].starts_with("DELETE FROM \"we\"\"ird\".\"o'brien\" USING"),
            "{l:?}"
        );
        let ledger = "VALUES ('we\"ird.O''Brien', 'we\"ird.o''brien'";
        assert!(l.last().unwrap().contains(ledger), "{l:?}");
        // Colliding columns are refused with both names.
        if let StepManifest::Load { columns, .. } = &mut t.steps[0] {
            columns.push(col("O'K", "text"));
        }
        let err = try_plan(&t).unwrap_err().to_string();
        assert!(err.contains("\"O'k\"") && err.contains("\"O'K\""), "{err}");
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let with = |files: Vec<FileManifest>, key: &[&str]| {
            table("s", "t", vec![load(vec![col("id", "integer")], key, files)])
        };
        let upsert = file(FileKind::Upsert, "u.csv.gz", &[], &["id"], 1);
        let err = try_plan(&with(vec![upsert.clone()], &[])).unwrap_err();
        assert!(matches!(err, SqlError::NoKey { .. }), "{err:?}");
        let bad = file(FileKind::Upsert, "u.csv.gz", &[], &["id", "ghost"], 1);
        let err = try_plan(&with(vec![bad], &["id"])).unwrap_err().to_string();
        assert!(err.contains("ghost") && err.contains("s.t"), "{err}");
        let upd = file(FileKind::Update, "u.csv.gz", &[], &["id"], 1);
        assert!(try_plan(&with(vec![upd], &["id"])).is_err());
        // No URL for a file.
        let t = with(vec![upsert], &["id"]);
        let (empty, auth) = (BTreeMap::new(), CopyAuth::IamRole("r".into()));
        let input = TablePlanInput {
            table: &t,
            target: Naming::default().target_table("s", "t"),
            segment: 1,
            first_lsn: Lsn(0),
            last_lsn: Lsn(0),
            file_urls: &empty,
            auth: &auth,
            region: "",
        };
        let err = plan_table(&input).unwrap_err().to_string();
        assert!(err.contains("u.csv.gz"), "{err}");
        // Long target names and odd types.
        let (schema, name) = ("s".into(), "t".repeat(128));
        let long = TablePlanInput {
            target: TargetTable { schema, name },
            ..input
        };
        assert!(matches!(
            plan_table(&long),
            Err(SqlError::NameTooLong { .. })
        ));
        let mut c = col("c", "integer");
        c.redshift_type = "INT; DROP TABLE x".into();
        let odd = table(
            "s",
            "t",
            vec![StepManifest::CreateTable { columns: vec![c] }],
        );
        assert!(matches!(try_plan(&odd), Err(SqlError::BadType { .. })));
    }
}
