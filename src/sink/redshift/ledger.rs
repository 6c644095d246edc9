//! The ledger `re_dms.applied` at run time: created (and upgraded) once per process, and looked
//! up before each table-segment, which is skipped when the ledger holds it. The row itself is
//! written by the table-segment's last transaction (`sql::ledger_insert`), so a load and its
//! ledger row commit together: exactly once.

use super::load::{LoadError, RedshiftLoader};
use super::pool::{column_exists, within, Attempt};
use super::sql::{self, TargetTable};
use crate::metrics;
use crate::retry::ErrorClass;

impl RedshiftLoader {
    /// Creates the ledger if needed. At start a transient failure (Redshift rebooting, in
    /// maintenance) is only a warning: reading the source must not wait for Redshift, and the
    /// first load creates the ledger before it checks it. Any other failure is fatal.
    pub(super) async fn ensure_ledger(&self) -> Result<(), LoadError> {
        let r = async {
            let conn = self.pool.get().await?;
            self.create_ledger(conn.client()).await
        }
        .await;
        match r {
            Ok(()) => Ok(()),
            Err(a) if a.class == ErrorClass::Transient => {
                metrics::REDSHIFT_RETRIES.inc();
                tracing::warn!(error = %a, "Redshift not reachable at start; reading goes on, loads retry until it is back");
                Ok(())
            }
            Err(a) => Err(LoadError::fatal("Redshift", a)),
        }
    }

    /// Runs the ledger DDL once per process (idempotent statements, one session at a time),
    /// and upgrades a ledger from before lineages (adds the `lineage` column; its old rows keep
    /// NULL and are matched only for legacy segments, see [`sql::LEDGER_CHECK_LEGACY_SQL`]).
    pub(super) async fn create_ledger(&self, c: &tokio_postgres::Client) -> Result<(), Attempt> {
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

    /// Whether the ledger holds this table-segment: under its lineage, or (a segment from before
    /// lineages) in a lineage-less row of the old key.
    pub(super) async fn in_ledger(
        &self,
        c: &tokio_postgres::Client,
        key: &LedgerKey<'_>,
    ) -> Result<bool, Attempt> {
        let deadline = self.pool.deadline();
        let seg = i64::try_from(key.segment).unwrap_or(i64::MAX);
        let lineage = key.lineage.to_string();
        let found = within(
            deadline,
            "checking the ledger",
            c.query(sql::LEDGER_CHECK_SQL, &[&lineage, &seg, &key.source]),
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
}

/// The ledger key of one table-segment (and where its rejected rows go).
pub(super) struct LedgerKey<'a> {
    pub(super) lineage: crate::wal::Lineage,
    /// The segment is from before lineages (see `crate::wal`).
    pub(super) legacy: bool,
    pub(super) segment: u64,
    /// The source table's ledger name ([`TableManifest::ledger_name`]).
    pub(super) source: &'a str,
    pub(super) target: &'a TargetTable,
    /// The table quarantines rejected rows: the segment's spool directory (dead letters are
    /// written there before they are uploaded).
    pub(super) quarantine: Option<&'a std::path::Path>,
}
