//! The Redshift loader: uploads and applies one table-segment at a time (the lanes in
//! `lanes.rs` decide which, in what order).
//!
//! Per table: upload its files (S3), then on a pooled connection check the ledger
//! (`re_dms.applied`), run the planned steps (DDL outside transactions, each load as one
//! transaction ending with the ledger row) and commit. Errors are classified by
//! [`classify`]: transient ones retry the whole table-segment with backoff, forever, loudly;
//! a definite one (a row Redshift rejects, our SQL refused) stops that table with the detail
//! and leaves its segment on disk; a fatal one (credentials, missing bucket) stops the daemon.
//!
//! Statement count per table per segment: a small constant plus one per update file and schema
//! operation (see `sql.rs`); never proportional to rows.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Semaphore};

use super::quarantine;
use super::sql::{self, CopyAuth, Naming, PlanStep, TablePlanInput, TargetTable, WidenStep};
use super::upload::Uploader;
use crate::config::Config;
use crate::connection as tls;
use crate::csv::manifest::TableManifest;
use crate::csv::SegmentOutput;
use crate::metrics;
use crate::retry::classify::{self, ErrorClass};
use crate::source::catalog::SourceCatalog;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("table {table}: {detail}")]
    Definite { table: String, detail: String },
    #[error("{0}")]
    Fatal(String),
    /// Tables stopped by definite errors during the run; everything else was loaded.
    #[error("{} table(s) stopped; their segments stay in the WAL until the cause is fixed and re_dms restarted: {}", .0.len(), .0.join("; "))]
    Stopped(Vec<String>),
}

/// Connections to Redshift, at most `max_connections`, opened on demand and reused.
struct Pool {
    conn: String,
    permits: Semaphore,
    idle: Mutex<Vec<tokio_postgres::Client>>,
    /// `redshift.statement_timeout_secs`: set on each session (the server cancels a statement
    /// running longer) and, with [`CLIENT_DEADLINE_SLACK`], the client's own deadline for every
    /// answer (a server that never answers at all).
    statement_timeout: Duration,
}

/// How much longer than the server-side statement timeout the client waits for an answer.
pub const CLIENT_DEADLINE_SLACK: Duration = Duration::from_secs(30);

impl Pool {
    /// The client's deadline for one answer.
    fn deadline(&self) -> Duration {
        self.statement_timeout + CLIENT_DEADLINE_SLACK
    }

    async fn get(&self) -> Result<Conn<'_>, Attempt> {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the pool's semaphore is never closed");
        let reused = self.idle.lock().await.pop().filter(|c| !c.is_closed());
        let client = match reused {
            Some(c) => c,
            None => {
                let c = tls::connect(&self.conn).await.map_err(|e| Attempt {
                    class: e.class(),
                    detail: crate::error_chain(&e),
                })?;
                // Timestamps round-trip exactly only in UTC / ISO.
                let setup = format!(
                    "SET timezone TO 'UTC'; SET statement_timeout TO {}",
                    self.statement_timeout.as_millis()
                );
                within(self.deadline(), "session set-up", c.batch_execute(&setup)).await?;
                c
            }
        };
        Ok(Conn {
            pool: self,
            client: Some(client),
            _permit: permit,
        })
    }
}

/// A pooled connection; returned to the pool on drop unless it broke.
struct Conn<'p> {
    pool: &'p Pool,
    client: Option<tokio_postgres::Client>,
    _permit: tokio::sync::SemaphorePermit<'p>,
}

impl Conn<'_> {
    fn client(&self) -> &tokio_postgres::Client {
        self.client.as_ref().expect("present until drop")
    }
    /// Drops the connection instead of returning it (after an error, its state is unknown).
    fn discard(mut self) {
        self.client = None;
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            if !c.is_closed() {
                if let Ok(mut idle) = self.pool.idle.try_lock() {
                    idle.push(c);
                }
            }
        }
    }
}

/// The Redshift target.
pub struct RedshiftLoader {
    pool: Pool,
    uploader: Uploader,
    naming: Naming,
    auth: CopyAuth,
    region: String,
    catalog: Arc<SourceCatalog>,
    /// VARCHAR widths known to be in the warehouse, by (target table, column): a widening check
    /// runs once per column per process, not per segment.
    widths: std::sync::Mutex<HashMap<(String, String), u32>>,
    /// The ledger exists (created by this process).
    ledger_ready: Mutex<bool>,
    /// Source tables (`schema.table`) with `on_reject = "quarantine"`.
    quarantine: std::collections::BTreeSet<String>,
}

/// `MAXERROR` of each COPY of a quarantining table: more rejected rows than this in one file
/// fail the load (and stop the table) as without quarantine.
pub const MAX_REJECTED_PER_COPY: u32 = 1000;

/// A failure of one attempt at a table-segment, classified.
pub(super) struct Attempt {
    pub(super) class: ErrorClass,
    pub(super) detail: String,
}

impl<E: std::fmt::Display> From<(ErrorClass, E)> for Attempt {
    fn from((class, e): (ErrorClass, E)) -> Self {
        Self {
            class,
            detail: e.to_string(),
        }
    }
}

impl RedshiftLoader {
    /// Connects, checks the bucket and creates the ledger. Failures here are fatal.
    pub async fn connect(
        config: &Config,
        catalog: Arc<SourceCatalog>,
    ) -> Result<Arc<Self>, LoadError> {
        let max = config.redshift.max_connections as usize;
        let uploader = Uploader::from_config(&config.s3, max * 2)
            .await
            .map_err(|e| LoadError::Fatal(format!("S3: {e}")))?;
        uploader
            .check()
            .await
            .map_err(|e| LoadError::Fatal(format!("S3 bucket {:?}: {e}", config.s3.bucket)))?;
        let auth = if config.redshift.iam_role.is_empty() {
            copy_keys_from_chain(config).await?
        } else {
            CopyAuth::IamRole(config.redshift.iam_role.clone())
        };
        let loader = Self {
            pool: Pool {
                conn: config.redshift.connection.clone(),
                permits: Semaphore::new(max),
                idle: Mutex::new(Vec::new()),
                statement_timeout: Duration::from_secs(config.redshift.statement_timeout_secs),
            },
            uploader,
            naming: Naming::from_config(config),
            auth,
            region: config.s3.region.clone(),
            catalog,
            widths: Default::default(),
            ledger_ready: Mutex::new(false),
            quarantine: config
                .tables
                .keys()
                .filter(|t| config.quarantines(t))
                .cloned()
                .collect(),
        };
        loader.ensure_ledger().await?;
        Ok(Arc::new(loader))
    }

    /// Creates the ledger if needed. At start a transient failure (Redshift rebooting, in
    /// maintenance) is only a warning: reading the source must not wait for Redshift, and the
    /// first load creates the ledger before it checks it. Any other failure is fatal.
    async fn ensure_ledger(&self) -> Result<(), LoadError> {
        let r = async {
            let conn = self.pool.get().await?;
            self.create_ledger(conn.client()).await
        }
        .await;
        match r {
            Ok(()) => Ok(()),
            Err(Attempt {
                class: ErrorClass::Transient,
                detail,
            }) => {
                metrics::REDSHIFT_RETRIES.inc();
                tracing::warn!(error = %detail, "Redshift not reachable at start; reading goes on, loads retry until it is back");
                Ok(())
            }
            Err(a) => Err(LoadError::Fatal(format!("Redshift: {}", a.detail))),
        }
    }

    /// Runs the ledger DDL once per process (idempotent statements, one session at a time),
    /// and upgrades a ledger from before lineages (adds the `lineage` column; its old rows keep
    /// NULL and are matched only for legacy segments, see [`sql::LEDGER_CHECK_LEGACY_SQL`]).
    async fn create_ledger(&self, c: &tokio_postgres::Client) -> Result<(), Attempt> {
        let mut ready = self.ledger_ready.lock().await;
        if *ready {
            return Ok(());
        }
        let deadline = self.pool.deadline();
        for stmt in sql::LEDGER_DDL {
            within(deadline, "creating the ledger", c.batch_execute(stmt)).await?;
        }
        let (schema, table, column) = sql::LEDGER_LINEAGE_COLUMN;
        if !column_exists(c, deadline, schema, table, column).await? {
            tracing::info!("upgrading the ledger re_dms.applied: adding its lineage column");
            if let Err(e) = within(
                deadline,
                "upgrading the ledger",
                c.batch_execute(sql::LEDGER_UPGRADE_SQL),
            )
            .await
            {
                // Another re_dms may have added it meanwhile.
                if !column_exists(c, deadline, schema, table, column).await? {
                    return Err(e);
                }
            }
        }
        *ready = true;
        Ok(())
    }

    /// The target table a source table loads into (its lane): `load_into`, else its partition
    /// root by the source catalog, else itself; with the source table's catalog parent.
    pub fn target_of(&self, table: &TableManifest) -> (TargetTable, Option<(String, String)>) {
        let catalog = self.catalog.get();
        let parent = catalog
            .as_ref()
            .and_then(|c| c.parent_of(&table.schema, &table.name));
        let target = self
            .naming
            .target_table_with_parent(&table.schema, &table.name, parent);
        (target, parent.map(|(s, t)| (s.to_string(), t.to_string())))
    }

    /// Whether the source catalog (when one was read) has this table.
    pub fn catalog_knows(&self, table: &TableManifest) -> Option<bool> {
        self.catalog.knows(&table.schema, &table.name)
    }

    /// Reads the source catalog again (once per segment, after the segment is sealed, so it is
    /// at least as new as every change in it: a widened column is seen before its wide values).
    pub async fn refresh_catalog(&self) {
        self.catalog.refresh().await;
    }

    /// Checks that no two source tables seen map to one target table by accident.
    pub fn check_collisions<'a, I>(&self, tables: I) -> Result<(), LoadError>
    where
        I: IntoIterator<Item = (&'a str, &'a str, Option<(&'a str, &'a str)>)>,
    {
        self.naming
            .check_table_collision(tables)
            .map_err(|e| LoadError::Fatal(e.to_string()))
    }

    /// Uploads a table-segment's files (retrying transient errors forever); returns the S3 URL
    /// of each file by its manifest path. Objects already confirmed are not sent again.
    pub async fn upload_table(
        &self,
        out: &SegmentOutput,
        table: &TableManifest,
    ) -> Result<BTreeMap<String, String>, LoadError> {
        self.retrying(table, "upload", || async {
            let mut urls = BTreeMap::new();
            for file in table_files(table) {
                let key = self
                    .uploader
                    .key_for(out.manifest.lineage, out.segment, &file);
                self.uploader
                    .upload_file(&out.dir.join(&file), &key)
                    .await
                    .map_err(|e| Attempt {
                        class: e.class(),
                        detail: crate::error_chain(&e),
                    })?;
                urls.insert(file.clone(), self.uploader.url_for(&key));
            }
            Ok(urls)
        })
        .await
    }

    /// Applies one uploaded table-segment (retrying transient errors forever): ledger check,
    /// schema steps, then the load transaction ending with the ledger row.
    pub async fn apply_table(
        &self,
        out: &SegmentOutput,
        table: &TableManifest,
        target: &TargetTable,
        urls: &BTreeMap<String, String>,
    ) -> Result<(), LoadError> {
        let source = table.qualified();
        let ledger_name = table.ledger_name();
        let quarantined = self.quarantine.contains(&source);
        let catalog = self.catalog.get();
        let column_types = catalog
            .as_ref()
            .and_then(|c| c.column_types(&table.schema, &table.name));
        let definite = |e: sql::SqlError| LoadError::Definite {
            table: source.clone(),
            detail: e.to_string(),
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
            match self.run_plan(conn.client(), &key, &widen, &plan).await {
                Ok(applied) => {
                    if applied {
                        metrics::TABLE_SEGMENTS_LOADED.inc();
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

    /// Runs `attempt` until it succeeds or fails for good: transient failures are retried with
    /// capped, jittered backoff, forever, each one logged and counted.
    async fn retrying<T, F, Fut>(
        &self,
        table: &TableManifest,
        what: &str,
        mut attempt: F,
    ) -> Result<T, LoadError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Attempt>>,
    {
        let mut n = 0u32;
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(Attempt {
                    class: ErrorClass::Transient,
                    detail,
                }) => {
                    n += 1;
                    metrics::REDSHIFT_RETRIES.inc();
                    let wait = classify::backoff(n);
                    tracing::warn!(attempt = n, wait_ms = wait.as_millis() as u64, error = %detail, "transient {what} failure; retrying the table-segment");
                    tokio::time::sleep(wait).await;
                }
                Err(Attempt {
                    class: ErrorClass::Definite,
                    detail,
                }) => {
                    return Err(LoadError::Definite {
                        table: table.qualified(),
                        detail: with_remedy(detail),
                    })
                }
                Err(Attempt {
                    class: ErrorClass::Fatal,
                    detail,
                }) => {
                    return Err(LoadError::Fatal(format!(
                        "table {}: {detail}",
                        table.qualified()
                    )))
                }
            }
        }
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
        statements: &[String],
        load_no: usize,
    ) -> Result<(), Attempt> {
        let deadline = self.pool.deadline();
        let mut rejected = Vec::new();
        for s in statements {
            within(deadline, "a load", c.batch_execute(s)).await?;
            if key.quarantine.is_some() && sql::is_copy(s) {
                rejected.extend(quarantine::rejected_rows(c, deadline).await?);
            }
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

    /// Whether the ledger holds this table-segment: under its lineage, or (a segment from before
    /// lineages) in a lineage-less row of the old key.
    async fn in_ledger(
        &self,
        c: &tokio_postgres::Client,
        key: &LedgerKey<'_>,
    ) -> Result<bool, Attempt> {
        let deadline = self.pool.deadline();
        let seg = i64::try_from(key.segment).unwrap_or(i64::MAX);
        let lineage = key.lineage.to_string();
        let target = key.target.to_string();
        let found = within(
            deadline,
            "checking the ledger",
            c.query(
                sql::LEDGER_CHECK_SQL,
                &[&lineage, &seg, &key.source, &target],
            ),
        )
        .await?;
        if !found.is_empty() {
            return Ok(true);
        }
        if key.legacy {
            let found = within(
                deadline,
                "checking the ledger",
                c.query(sql::LEDGER_CHECK_LEGACY_SQL, &[&seg, &key.source]),
            )
            .await?;
            return Ok(!found.is_empty());
        }
        Ok(false)
    }

    /// Returns false when the ledger says this table-segment was already applied.
    async fn run_plan(
        &self,
        c: &tokio_postgres::Client,
        key: &LedgerKey<'_>,
        widen: &[WidenStep],
        plan: &[PlanStep],
    ) -> Result<bool, Attempt> {
        let deadline = self.pool.deadline();
        if self.in_ledger(c, key).await? {
            tracing::info!("already applied (ledger); skipping");
            return Ok(false);
        }
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
                PlanStep::Load(statements) => {
                    within(deadline, "BEGIN", c.batch_execute("BEGIN")).await?;
                    if let Err(mut a) = self.run_load(c, key, statements, load_no).await {
                        let _ = within(deadline, "ROLLBACK", c.batch_execute("ROLLBACK")).await;
                        if a.detail.contains("stl_load_errors") {
                            a.detail.push_str(&load_error_detail(c, deadline).await);
                        }
                        return Err(a);
                    }
                    load_no += 1;
                    within(deadline, "COMMIT", c.batch_execute("COMMIT")).await?;
                }
            }
        }
        Ok(true)
    }
}

/// The ledger key of one table-segment (and where its rejected rows go).
pub(super) struct LedgerKey<'a> {
    pub(super) lineage: crate::wal::Lineage,
    /// The segment is from before lineages (see `crate::wal`).
    legacy: bool,
    pub(super) segment: u64,
    /// The source table's ledger name ([`TableManifest::ledger_name`]).
    pub(super) source: &'a str,
    pub(super) target: &'a TargetTable,
    /// The table quarantines rejected rows: the segment's spool directory (dead letters are
    /// written there before they are uploaded).
    quarantine: Option<&'a std::path::Path>,
}

/// Whether the warehouse table `schema.table` has `column` (target names).
async fn column_exists(
    c: &tokio_postgres::Client,
    deadline: Duration,
    schema: &str,
    table: &str,
    column: &str,
) -> Result<bool, Attempt> {
    let rows = within(
        deadline,
        "checking a column",
        c.query(sql::COLUMN_EXISTS_SQL, &[&schema, &table, &column]),
    )
    .await?;
    Ok(!rows.is_empty())
}

/// Waits for one answer from Redshift at most `deadline`; a database error is classified, and
/// no answer in time is transient (the caller drops the session and retries).
pub(super) async fn within<T>(
    deadline: Duration,
    what: &str,
    answer: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Attempt> {
    match tokio::time::timeout(deadline, answer).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Attempt {
            class: classify::classify_pg(&e),
            detail: pg_detail(&e),
        }),
        Err(_) => Err(Attempt {
            class: ErrorClass::Transient,
            detail: format!(
                "Redshift gave no answer within {}s ({what}); the session is dropped",
                deadline.as_secs()
            ),
        }),
    }
}

/// A definite error's detail, with what to do about it where we know.
fn with_remedy(detail: String) -> String {
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

/// File names of every load step of a table.
fn table_files(table: &TableManifest) -> Vec<String> {
    table
        .steps
        .iter()
        .flat_map(|s| match s {
            crate::csv::manifest::StepManifest::Load { files, .. } => {
                files.iter().map(|f| f.path.clone()).collect()
            }
            _ => Vec::new(),
        })
        .collect()
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

/// The server's message with its SQLSTATE, or the client error with its causes.
pub fn pg_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        // The client's own message leaves out the cause (e.g. the TLS handshake's reason).
        None => crate::error_chain(e),
    }
}

/// Without `iam_role`, COPY passes the keys of the AWS credential chain.
async fn copy_keys_from_chain(config: &Config) -> Result<CopyAuth, LoadError> {
    use aws_config::BehaviorVersion;
    use aws_sdk_s3::config::ProvideCredentials;
    let region = aws_config::Region::new(config.s3.region.clone());
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .load()
        .await;
    let provider = shared.credentials_provider().ok_or_else(|| {
        LoadError::Fatal("no AWS credentials: set redshift.iam_role or provide keys".into())
    })?;
    let creds = tokio::time::timeout(Duration::from_secs(30), provider.provide_credentials())
        .await
        .map_err(|_| LoadError::Fatal("timed out reading AWS credentials".into()))?
        .map_err(|e| LoadError::Fatal(format!("AWS credentials: {e}")))?;
    Ok(CopyAuth::Keys {
        access_key_id: creds.access_key_id().to_string(),
        secret_access_key: creds.secret_access_key().to_string(),
        session_token: creds.session_token().map(str::to_string),
    })
}
