//! The Redshift loader: uploads and applies one table-segment at a time (the lanes in
//! `lanes.rs` decide which, in what order).
//!
//! Per table: upload its files (S3, here), then on a pooled connection (`pool`) check the
//! ledger (`ledger`), run the planned steps and commit (`apply`). Every attempt goes through the
//! one retry policy ([`crate::retry::RetryPolicy`]): transient failures retry the whole
//! table-segment with backoff, forever, loudly, until the stop signal; a definite one (a row
//! Redshift rejects, our SQL refused) stops that table with the detail and leaves its segment
//! on disk; a fatal one (credentials, missing bucket) stops the daemon.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Semaphore};

use super::apply::with_remedy;
use super::pool::{Attempt, Cause, Pool};
use super::sql::{CopyAuth, Naming, TargetTable};
use super::upload::Uploader;
use crate::config::Config;
use crate::csv::manifest::{Manifest, StepManifest, TableManifest};
use crate::metrics;
use crate::pipeline::handoff::SegmentOutput;
use crate::retry::{ErrorClass, RetryEnd, RetryPolicy};
use crate::shutdown::Shutdown;
use crate::source::catalog::SourceCatalog;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// This table-segment cannot load as it is: its table stops, the others go on.
    #[error("table {table}: {source}")]
    Definite {
        table: String,
        #[source]
        source: Attempt,
    },
    /// Nothing will load until an operator fixes something: the daemon stops.
    #[error("{context}{}", .source.as_ref().map(|s| format!(": {s}")).unwrap_or_default())]
    Fatal {
        context: String,
        #[source]
        source: Option<Cause>,
    },
    /// The stop signal came while the table-segment waited for a retry: it stays in the WAL.
    #[error("table {table}: not loaded, stopping: {source}")]
    Interrupted {
        table: String,
        #[source]
        source: Attempt,
    },
    /// Tables stopped by definite errors during the run; everything else was loaded.
    #[error("{} table(s) stopped; their segments stay in the WAL until the cause is fixed and re_dms restarted: {}", .0.len(), .0.join("; "))]
    Stopped(Vec<String>),
}

impl LoadError {
    pub fn fatal(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        LoadError::Fatal {
            context: context.into(),
            source: Some(Box::new(source)),
        }
    }

    /// A fatal error with no cause beyond its text (a lane that ended, a missing setting).
    pub fn fatal_text(context: impl Into<String>) -> Self {
        LoadError::Fatal {
            context: context.into(),
            source: None,
        }
    }
}

/// The Redshift target.
pub struct RedshiftLoader {
    pub(super) pool: Pool,
    pub(super) uploader: Uploader,
    pub(super) naming: Naming,
    pub(super) auth: CopyAuth,
    pub(super) region: String,
    pub(super) catalog: Arc<SourceCatalog>,
    /// VARCHAR widths known to be in the warehouse, by (target table, column): a widening check
    /// runs once per column per process, not per segment.
    pub(super) widths: std::sync::Mutex<HashMap<(String, String), u32>>,
    /// The ledger exists (created by this process).
    pub(super) ledger_ready: Mutex<bool>,
    /// Source tables (`schema.table`) with `on_reject = "quarantine"`.
    pub(super) quarantine: std::collections::BTreeSet<String>,
    /// Retry waits end on the stop signal.
    stop: Shutdown,
}

/// `MAXERROR` of each COPY of a quarantining table: more rejected rows than this in one file
/// fail the load (and stop the table) as without quarantine.
pub const MAX_REJECTED_PER_COPY: u32 = 1000;

impl RedshiftLoader {
    /// Connects, checks the bucket and creates the ledger. S3 or Redshift that cannot be
    /// reached now (an outage, a maintenance window) is a warning: reading goes on and every
    /// upload and load retries until it is back. Anything else (no such bucket, access denied,
    /// bad credentials) is fatal.
    pub async fn connect(
        config: &Config,
        catalog: Arc<SourceCatalog>,
        stop: Shutdown,
    ) -> Result<Arc<Self>, LoadError> {
        let max = config.redshift.max_connections as usize;
        let uploader = Uploader::from_config(&config.s3, max * 2)
            .await
            .map_err(|e| LoadError::fatal("S3", e))?;
        if let Err(e) = uploader.check().await {
            if e.class() != ErrorClass::Transient {
                return Err(LoadError::fatal(
                    format!("S3 bucket {:?}", config.s3.bucket),
                    e,
                ));
            }
            // Its retries are counted (re_dms_s3_retries_total) and logged where they ran.
            tracing::warn!(
                bucket = %config.s3.bucket,
                error = %crate::error_chain(&e),
                "S3 not reachable at start; reading goes on, uploads retry until it is back"
            );
        }
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
            stop,
        };
        loader.ensure_ledger().await?;
        Ok(Arc::new(loader))
    }

    /// The target table a source table loads into (its lane): `load_into`, else its partition
    /// root by the source catalog, else itself; with the source table's catalog parent. A name
    /// the catalog no longer has but knew for a table it has now (renamed since the segment was
    /// written) stands for that table's current name (`table_rename`).
    pub fn target_of(&self, table: &TableManifest) -> (TargetTable, Option<(String, String)>) {
        let (schema, name) = self.catalog_name(table);
        let catalog = self.catalog.get();
        let parent = catalog.as_ref().and_then(|c| c.parent_of(&schema, &name));
        let target = if self.naming.has_load_into(&table.schema, &table.name) {
            self.naming.target_table(&table.schema, &table.name)
        } else {
            self.naming.target_table_with_parent(&schema, &name, parent)
        };
        (target, parent.map(|(s, t)| (s.to_string(), t.to_string())))
    }

    /// The name the source catalog has `table` under now: its own, or, renamed since, the new
    /// one (`SourceCatalog::current_name`).
    pub(super) fn catalog_name(&self, table: &TableManifest) -> (String, String) {
        self.catalog
            .current_name(&table.schema, &table.name)
            .unwrap_or_else(|| (table.schema.clone(), table.name.clone()))
    }

    /// The stop signal (lanes start nothing new after it).
    pub fn stop(&self) -> &Shutdown {
        &self.stop
    }

    /// Whether the source catalog (when one was read) has this table.
    pub fn catalog_knows(&self, table: &TableManifest) -> Option<bool> {
        self.catalog.knows(&table.schema, &table.name)
    }

    /// Brings the source catalog up to date for `manifest` (after the segment is sealed, so the
    /// catalog is at least as new as every change in it: a widened column is seen before its
    /// wide values): a full read when the segment shows a schema change or a table the catalog
    /// lacks, else only when the catalog's stamp moved (`source::catalog`).
    pub async fn refresh_catalog(&self, manifest: &Manifest) {
        let ddl_seen = manifest.tables.iter().any(|t| {
            self.catalog_knows(t) == Some(false)
                || t.steps.iter().any(StepManifest::is_schema_change)
        });
        self.catalog.refresh(ddl_seen).await;
    }

    /// Checks that no two source tables seen map to one target table by accident.
    pub fn check_collisions<'a, I>(&self, tables: I) -> Result<(), LoadError>
    where
        I: IntoIterator<Item = (&'a str, &'a str, Option<(&'a str, &'a str)>)>,
    {
        self.naming
            .check_table_collision(tables)
            .map_err(|e| LoadError::fatal("table names", e))
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
                    .map_err(|e| {
                        let class = e.class();
                        Attempt::new(class, e)
                    })?;
                urls.insert(file.clone(), self.uploader.url_for(&key));
            }
            Ok(urls)
        })
        .await
    }

    /// Runs `attempt` through the retry policy: transient failures are retried with capped,
    /// jittered backoff, forever (until the stop signal), each one logged and counted.
    pub(super) async fn retrying<T, F, Fut>(
        &self,
        table: &TableManifest,
        what: &str,
        attempt: F,
    ) -> Result<T, LoadError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Attempt>>,
    {
        let policy = RetryPolicy {
            max_attempts: None,
            stop: self.stop.clone(),
        };
        let on_retry = |n: u32, wait: Duration, e: &Attempt| {
            metrics::REDSHIFT_RETRIES.inc();
            metrics::error(if what == "upload" { "s3" } else { "redshift" }, e.class);
            tracing::warn!(attempt = n, wait_ms = wait.as_millis() as u64, error = %e, "transient {what} failure; retrying the table-segment");
        };
        let table = table.qualified();
        policy
            .run(attempt, on_retry)
            .await
            .map_err(|end| match end {
                RetryEnd::Stopped { last } => LoadError::Interrupted {
                    table,
                    source: last,
                },
                RetryEnd::Failed(mut last) if last.class == ErrorClass::Definite => {
                    last.detail = with_remedy(last.detail);
                    LoadError::Definite {
                        table,
                        source: last,
                    }
                }
                RetryEnd::Failed(last) | RetryEnd::GaveUp { last, .. } => {
                    LoadError::fatal(format!("table {table}"), last)
                }
            })
    }
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
        LoadError::fatal_text("no AWS credentials: set redshift.iam_role or provide keys")
    })?;
    let creds = tokio::time::timeout(Duration::from_secs(30), provider.provide_credentials())
        .await
        .map_err(|_| LoadError::fatal_text("timed out reading AWS credentials"))?
        .map_err(|e| LoadError::fatal("AWS credentials", e))?;
    Ok(CopyAuth::Keys {
        access_key_id: creds.access_key_id().to_string(),
        secret_access_key: creds.secret_access_key().to_string(),
        session_token: creds.session_token().map(str::to_string),
    })
}
