//! Applying one uploaded table-segment: the ledger check, VARCHAR widening, the planned schema
//! steps (each outside a transaction, guarded) and the load transactions, the last one ending
//! with the ledger row. Statement count per table-segment: a small constant plus one per
//! update file and schema operation (see `sql`); never proportional to rows.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::ledger::LedgerKey;
use super::load::{LoadError, RedshiftLoader, MAX_REJECTED_PER_COPY};
use super::pool::{column_exists, within, Attempt};
use super::quarantine;
use super::sql::{self, LoadStep, PlanStep, TablePlanInput, TargetTable, WidenStep};
use crate::csv::manifest::TableManifest;
use crate::metrics;
use crate::pipeline::handoff::SegmentOutput;
use crate::retry::ErrorClass;

impl RedshiftLoader {
    /// Applies one uploaded table-segment (retrying transient errors forever): ledger check,
    /// the rename of an old target table (`renamed_from`, see `table_rename`), schema steps,
    /// then the load transaction ending with the ledger row.
    pub async fn apply_table(
        &self,
        out: &SegmentOutput,
        table: &TableManifest,
        target: &TargetTable,
        renamed_from: &[TargetTable],
        urls: &BTreeMap<String, String>,
    ) -> Result<(), LoadError> {
        let followed = self.with_table_renames(table, renamed_from);
        let renamed = self.with_renames(followed.as_ref());
        let table = renamed.as_ref();
        let ledger_name = table.ledger_name();
        let quarantined = self.quarantine.contains(&table.qualified());
        let (widen, plan) = self.plan(out, table, target, urls, quarantined)?;
        let started = std::time::Instant::now();
        self.retrying(table, "load", || async {
            let conn = self.pool.get().await?;
            if let Err(mut e) = self.create_ledger(conn.client()).await {
                conn.discard();
                // Not one table's problem: without a ledger nothing can load.
                if e.class != ErrorClass::Transient {
                    e.class = ErrorClass::Fatal;
                    e.detail = format!("creating the ledger re_dms.applied: {}", e.detail);
                }
                return Err(e);
            }
            let key = LedgerKey {
                lineage: out.manifest.lineage,
                legacy: out.manifest.legacy,
                segment: out.segment,
                source: &ledger_name,
                target,
                quarantine: quarantined.then_some(out.dir.as_path()),
            };
            // Boxed: the plan's future nests every statement's future, and its layout inline
            // here came within a few levels of rustc's query depth limit.
            let run = self.run_plan(conn.client(), &key, renamed_from, &widen, &plan);
            match Box::pin(run).await {
                Ok(applied) => {
                    if applied {
                        metrics::TABLE_SEGMENTS_LOADED.inc();
                        publish_loaded(table, target, started.elapsed());
                    }
                    Ok(())
                }
                Err(e) => {
                    // The session may be mid-transaction or broken: never reuse it.
                    conn.discard();
                    Err(e)
                }
            }
        })
        .await
    }

    /// The VARCHAR widening and the statements of `table`'s load from `out` (`sql`), with the
    /// source catalog's column types when it has the table.
    fn plan(
        &self,
        out: &SegmentOutput,
        table: &TableManifest,
        target: &TargetTable,
        urls: &BTreeMap<String, String>,
        quarantined: bool,
    ) -> Result<(Vec<WidenStep>, Vec<PlanStep>), LoadError> {
        let source = table.qualified();
        let catalog = self.catalog.get();
        let (catalog_schema, catalog_name) = self.catalog_name(table);
        let column_types = catalog
            .as_ref()
            .and_then(|c| c.column_types(&catalog_schema, &catalog_name));
        let definite = |e: sql::SqlError| LoadError::Definite {
            table: source.clone(),
            source: Attempt::new(ErrorClass::Definite, e),
        };
        let widen = match column_types {
            Some(types) => {
                sql::plan_widen(&source, target, &sql::widen_columns(types)).map_err(definite)?
            }
            None => Vec::new(),
        };
        let plan = sql::plan_table(&TablePlanInput {
            table,
            target: target.clone(),
            segment: out.segment,
            lineage: out.manifest.lineage,
            first_lsn: out.manifest.first_lsn,
            last_lsn: out.manifest.last_lsn,
            file_urls: urls,
            auth: &self.auth,
            region: &self.region,
            column_types,
            max_errors: if quarantined {
                MAX_REJECTED_PER_COPY
            } else {
                0
            },
        })
        .map_err(definite)?;
        Ok((widen, plan))
    }

    /// `table` with the drops and adds the source catalog shows to be renames turned into
    /// renames (`sql::renames`); a drop and an add it cannot tell apart are warned about.
    fn with_renames<'a>(&self, table: &'a TableManifest) -> std::borrow::Cow<'a, TableManifest> {
        let (schema, name) = self.catalog_name(table);
        let (rewritten, left) = sql::renames::apply_renames(table, |column| {
            self.catalog.previous_names(&schema, &name, column)
        });
        for (dropped, added) in left {
            let why = if self.catalog.get().is_some() {
                "the source catalog did not see the old name (renamed before re_dms read it, e.g. while it was stopped)"
            } else {
                "without source.connection re_dms cannot tell a rename (test_decoding shows only the new name)"
            };
            tracing::warn!(
                table = %table.qualified(),
                dropped = %dropped,
                added = %added,
                "column dropped and another added in one change: if the source renamed it, {why}; the target drops it with its values. To keep them, rename the target column yourself before this segment loads (the drop and the add are then skipped)"
            );
        }
        rewritten.map_or(std::borrow::Cow::Borrowed(table), std::borrow::Cow::Owned)
    }

    /// Widens target VARCHAR columns the source catalog says are wider now, each outside any
    /// transaction and only when the warehouse's column is narrower; widths already seen in the
    /// warehouse are remembered, so steady state costs no statement.
    async fn widen(&self, c: &tokio_postgres::Client, steps: &[WidenStep]) -> Result<(), Attempt> {
        let deadline = self.pool.deadline();
        for step in steps {
            let key = (
                format!("{}.{}", step.check.schema, step.check.table),
                step.check.column.clone(),
            );
            let known = self.widths_lock().get(&key).copied();
            if known.is_some_and(|w| w >= step.check.width) {
                continue;
            }
            let current: Option<i32> = within(
                deadline,
                "reading a column's width",
                c.query_opt(
                    sql::VARCHAR_WIDTH_SQL,
                    &[&step.check.schema, &step.check.table, &step.check.column],
                ),
            )
            .await?
            .and_then(|r| r.get::<_, Option<i32>>(0));
            let Some(current) = current else {
                // No such VARCHAR column (yet): the plan creates it with the catalog's width.
                continue;
            };
            if step.should_run(Some(current)) {
                tracing::info!(column = %step.check.column, from = current, to = step.check.width, "widening a VARCHAR column (the source column is wider now)");
                within(deadline, "widening a column", c.batch_execute(&step.sql)).await?;
            }
            let now = u32::try_from(current).unwrap_or(0).max(step.check.width);
            self.widths_lock().insert(key, now);
        }
        Ok(())
    }

    fn widths_lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), u32>> {
        self.widths.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The statements of one load transaction (between BEGIN and COMMIT). For a quarantining
    /// table, the rows each COPY skipped are read from `stl_load_errors` and, before the
    /// transaction commits, written to a dead-letter object in S3 and to `re_dms.rejected`.
    async fn run_load(
        &self,
        c: &tokio_postgres::Client,
        key: &LedgerKey<'_>,
        load: &LoadStep,
        load_no: usize,
    ) -> Result<(), Attempt> {
        let deadline = self.pool.deadline();
        let mut rejected = Vec::new();
        let mut copies = load.copies.iter().peekable();
        for (i, s) in load.statements.iter().enumerate() {
            within(deadline, "a load", c.batch_execute(s)).await?;
            let Some(copy) = copies.next_if(|next| next.statement == i) else {
                continue;
            };
            crate::failpoint!("apply.after_copy");
            let before = rejected.len();
            if key.quarantine.is_some() {
                rejected.extend(quarantine::rejected_rows(c, deadline).await?);
            }
            let skipped = (rejected.len() - before) as u64;
            check_copy_count(c, deadline, key.source, copy.rows, skipped).await?;
        }
        match key.quarantine {
            Some(spool) if !rejected.is_empty() => {
                let dead_letter = quarantine::DeadLetter {
                    uploader: &self.uploader,
                    spool,
                    load_no,
                };
                quarantine::keep(c, deadline, key, &dead_letter, &rejected).await
            }
            _ => Ok(()),
        }
    }

    /// Returns false when the ledger says this table-segment was already applied.
    async fn run_plan(
        &self,
        c: &tokio_postgres::Client,
        key: &LedgerKey<'_>,
        renamed_from: &[TargetTable],
        widen: &[WidenStep],
        plan: &[PlanStep],
    ) -> Result<bool, Attempt> {
        let deadline = self.pool.deadline();
        if self.in_ledger(c, key).await? {
            tracing::info!("already applied (ledger); skipping");
            return Ok(false);
        }
        self.follow_rename(c, renamed_from, key.target).await?;
        self.widen(c, widen).await?;
        let mut load_no = 0usize;
        for step in plan {
            match step {
                PlanStep::Ddl(ddl) => {
                    if let Some(check) = &ddl.check {
                        let present =
                            column_exists(c, deadline, &check.schema, &check.table, &check.column)
                                .await?;
                        if present == check.want_present {
                            continue;
                        }
                    }
                    within(deadline, "a schema change", c.batch_execute(&ddl.sql)).await?;
                }
                PlanStep::Load(load) => {
                    within(deadline, "BEGIN", c.batch_execute("BEGIN")).await?;
                    if let Err(mut a) = self.run_load(c, key, load, load_no).await {
                        let _ = within(deadline, "ROLLBACK", c.batch_execute("ROLLBACK")).await;
                        if a.detail.contains("stl_load_errors") {
                            a.detail.push_str(&load_error_detail(c, deadline).await);
                        }
                        return Err(a);
                    }
                    load_no += 1;
                    crate::failpoint!("apply.before_commit");
                    within(deadline, "COMMIT", c.batch_execute("COMMIT")).await?;
                    crate::failpoint!("apply.after_commit");
                }
            }
        }
        Ok(true)
    }
}

/// Checks that the COPY just run loaded every row of its file (`rows`), counting the rows it
/// skipped into `stl_load_errors` (`skipped`, quarantine only): a file read short (a truncated
/// object, a reader that stops at the first gzip member) is a definite error that stops the
/// table, never rows silently missing.
async fn check_copy_count(
    c: &tokio_postgres::Client,
    deadline: Duration,
    table: &str,
    rows: u64,
    skipped: u64,
) -> Result<(), Attempt> {
    let row = within(
        deadline,
        "counting the rows COPY loaded",
        c.query_one(sql::LAST_COPY_COUNT_SQL, &[]),
    )
    .await?;
    let loaded = row.try_get::<_, i64>(0).map_err(Attempt::pg)?;
    match short_copy(table, loaded, skipped, rows) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The error when a COPY did not account for every row of its file: `loaded` (what Redshift
/// says it loaded) and `skipped` (rejected under MAXERROR) must add up to `rows`.
fn short_copy(table: &str, loaded: i64, skipped: u64, rows: u64) -> Option<Attempt> {
    if u64::try_from(loaded).is_ok_and(|n| n.checked_add(skipped) == Some(rows)) {
        return None;
    }
    Some(Attempt {
        class: ErrorClass::Definite,
        detail: format!(
            "table {table}: COPY loaded {loaded} rows (and rejected {skipped}) of a file of \
             {rows}: the file was not read whole; nothing of this load was committed"
        ),
        cause: None,
    })
}

/// A committed table-segment's rows by kind and its duration, by target table.
fn publish_loaded(table: &TableManifest, target: &TargetTable, took: Duration) {
    let counts = sql::RowCounts::of(table);
    let name = target.to_string();
    metrics::rows_loaded(&name, "upsert", counts.upserted);
    metrics::rows_loaded(&name, "delete", counts.deleted);
    metrics::rows_loaded(&name, "update", counts.updated);
    metrics::load_duration(&name, took);
}

/// A definite error's detail, with what to do about it where we know.
pub(super) fn with_remedy(detail: String) -> String {
    if detail.contains("(SQLSTATE 42P01)") {
        // undefined_table: re_dms creates a target table only when it first sees its source.
        return format!(
            "{detail}: the Redshift table does not exist (dropped outside re_dms?). re_dms creates \
             a target table only the first time it sees the source table: recreate it with the \
             source's columns and restart re_dms (rows loaded before are not in it: reload them \
             from the source); this table's segments stay in the WAL until then"
        );
    }
    detail
}

/// The newest `stl_load_errors` row, when the cluster (or the simulator) has one.
async fn load_error_detail(c: &tokio_postgres::Client, deadline: Duration) -> String {
    let q = "SELECT filename, line_number, colname, err_reason FROM stl_load_errors ORDER BY starttime DESC LIMIT 1";
    match tokio::time::timeout(deadline, c.query(q, &[]))
        .await
        .unwrap_or_else(|_| Ok(Vec::new()))
    {
        Ok(rows) => rows
            .first()
            .map(|r| {
                let get = |i: usize| {
                    r.try_get::<_, Option<String>>(i)
                        .ok()
                        .flatten()
                        .unwrap_or_default()
                };
                let line = r
                    .try_get::<_, Option<i64>>(1)
                    .ok()
                    .flatten()
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| get(1));
                format!(
                    " (file {}, line {}, column {}: {})",
                    get(0).trim(),
                    line,
                    get(2).trim(),
                    get(3).trim()
                )
            })
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_must_account_for_every_row_of_its_file() {
        assert!(short_copy("s.t", 10, 0, 10).is_none());
        assert!(short_copy("s.t", 7, 3, 10).is_none(), "rejected rows count");
        for (loaded, skipped) in [(9, 0), (11, 0), (7, 2), (-1, 0), (0, 0)] {
            let e = short_copy("s.t", loaded, skipped, 10).expect("a short COPY");
            assert_eq!(e.class, ErrorClass::Definite);
            assert!(
                e.detail.contains("s.t") && e.detail.contains("of 10"),
                "{}",
                e.detail
            );
        }
    }
}
