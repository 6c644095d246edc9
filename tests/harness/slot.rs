//! Asking the source how far a replication slot is: whether re_dms reads it, and whether it is
//! confirmed past a position.

use tokio_postgres::Client;

/// The slot exists, is being read, and is past its creation: a slot is listed (and active)
/// while it waits for the transactions running at its creation to end, and a transaction that
/// commits before that point is not in its stream (what was there before is an initial load's
/// job, not the stream's).
pub async fn slot_ready(c: &Client, slot: &str) -> bool {
    c.query_opt(
        "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active \
         AND confirmed_flush_lsn IS NOT NULL",
        &[&slot],
    )
    .await
    .unwrap()
    .is_some()
}

/// The server's WAL insert position now.
pub async fn insert_lsn(c: &Client) -> String {
    c.query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0)
}

/// Whether `slot` is confirmed at or past `lsn`.
pub async fn confirmed_past(c: &Client, slot: &str, lsn: &str) -> bool {
    c.query_one(
        "SELECT coalesce(confirmed_flush_lsn >= $1::text::pg_lsn, false) \
         FROM pg_replication_slots WHERE slot_name = $2",
        &[&lsn, &slot],
    )
    .await
    .unwrap()
    .get::<_, bool>(0)
}
