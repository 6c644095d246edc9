//! The replication slot: its state as `pg_replication_slots` shows it, and creating it.

use super::session::{quote_ident, quote_literal, Session};
use super::ReplicationError;
use crate::lsn::Lsn;

/// The output plugin re_dms reads.
pub const PLUGIN: &str = "test_decoding";

/// A slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    pub plugin: Option<String>,
    pub database: Option<String>,
    /// Where the slot resumes: everything before it was confirmed and is not sent again.
    pub confirmed_flush: Option<Lsn>,
    /// `reserved`, `extended`, `unreserved` or `lost` (WAL the slot needs was removed).
    pub wal_status: Option<String>,
    /// The backend streaming from it now, if any.
    pub active_pid: Option<u32>,
}

impl SlotState {
    /// The slot cannot deliver every change since its confirmed position any more.
    pub fn is_lost(&self) -> bool {
        self.wal_status.as_deref() == Some("lost")
    }
}

impl Session {
    /// The slot named `name`, or `None` when there is none.
    pub async fn slot(&mut self, name: &str) -> Result<Option<SlotState>, ReplicationError> {
        let context = "reading pg_replication_slots";
        let sql = format!(
            "SELECT plugin, database, confirmed_flush_lsn, wal_status, active_pid \
             FROM pg_catalog.pg_replication_slots WHERE slot_name = {}",
            quote_literal(name)
        );
        let rows = self.simple_query(context, &sql).await?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        if row.len() < 5 {
            return Err(self.unexpected(context, "row (fewer than 5 columns)"));
        }
        let confirmed_flush = match &row[2] {
            Some(text) => Some(
                text.parse()
                    .map_err(|_| self.unexpected(context, "confirmed_flush_lsn"))?,
            ),
            None => None,
        };
        let active_pid = row[4].as_deref().and_then(|p| p.parse().ok());
        let mut row = row.into_iter();
        Ok(Some(SlotState {
            plugin: row.next().flatten(),
            database: row.next().flatten(),
            confirmed_flush,
            wal_status: row.nth(1).flatten(),
            active_pid,
        }))
    }

    /// `CREATE_REPLICATION_SLOT <name> LOGICAL test_decoding`; returns its consistent point,
    /// the position from which it delivers every committed transaction. Not bounded by the
    /// command timeout: the server waits for every transaction running now to end, which may
    /// take as long as the longest of them (the caller races it against the stop signal).
    pub async fn create_slot(&mut self, name: &str) -> Result<Lsn, ReplicationError> {
        let context = "CREATE_REPLICATION_SLOT";
        let sql = format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL {PLUGIN} NOEXPORT_SNAPSHOT",
            quote_ident(name)
        );
        let rows = self.run_query(context, &sql).await?;
        let point = rows
            .first()
            .and_then(|r| r.get(1).cloned().flatten())
            .ok_or_else(|| self.unexpected(context, "answer (no consistent_point)"))?;
        point
            .parse()
            .map_err(|_| self.unexpected(context, "consistent_point"))
    }
}
