//! Process-wide counters, named `re_dms_<what>_<unit>[_total]` and listed in METRICS.md.
//!
//! Plain atomics: the hot paths bump them without locks; an exporter (Prometheus text, later
//! CloudWatch) reads them with [`snapshot`].

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $ident:ident => $name:literal,)*) => {
        $( $(#[$doc])* pub static $ident: Counter = Counter::new($name); )*
        /// Every counter, for exporters.
        pub static ALL: &[&Counter] = &[$(&$ident),*];
    };
}

/// A monotonically increasing counter.
#[derive(Debug)]
pub struct Counter {
    pub name: &'static str,
    value: AtomicU64,
}

impl Counter {
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            value: AtomicU64::new(0),
        }
    }
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

counters! {
    /// Reconnections to the source's replication slot after a lost connection.
    SOURCE_RECONNECTS => "re_dms_source_reconnects_total",
    /// Messages read from the source (or `--stdin`), all kinds.
    MESSAGES_READ => "re_dms_messages_read_total",
    /// Row changes and TRUNCATEs of tables `[source] include`/`exclude` leave out, dropped before
    /// the WAL.
    CHANGES_FILTERED => "re_dms_changes_filtered_total",
    /// Row changes (INSERT/UPDATE/DELETE) read.
    CHANGES_READ => "re_dms_changes_read_total",
    /// Bytes appended to the local WAL.
    WAL_BYTES_WRITTEN => "re_dms_wal_written_bytes_total",
    /// fsync calls on WAL segments.
    WAL_FSYNCS => "re_dms_wal_fsyncs_total",
    /// Segments closed (each becomes one batch).
    SEGMENTS_SEALED => "re_dms_segments_sealed_total",
    /// Segments closed early because the batcher reached `batch.max_memory_bytes`.
    SEGMENTS_ROTATED_FOR_MEMORY => "re_dms_segments_rotated_for_memory_total",
    /// Segments whose batch ingest dropped because the target was behind (rebuilt from disk).
    SEGMENTS_SPILLED => "re_dms_segments_spilled_total",
    /// Segments the target confirmed and the WAL deleted.
    SEGMENTS_LOADED => "re_dms_segments_loaded_total",
    /// WAL records dropped at recovery because their transaction never completed.
    WAL_RECORDS_DISCARDED => "re_dms_wal_discarded_records_total",
    /// Rows written to CSV files (all kinds).
    ROWS_WRITTEN => "re_dms_csv_rows_total",
    /// Numeric values beyond NUMERIC(38,..) range, written as the largest value of the type.
    VALUES_SATURATED => "re_dms_values_saturated_total",
    /// Values the target cannot hold (numeric NaN, infinite dates, bytea over VARBYTE's size),
    /// written as NULL.
    VALUES_NULLED => "re_dms_values_nulled_total",
    /// Strings cut to the target column's byte length on a UTF-8 boundary.
    VALUES_TRUNCATED => "re_dms_values_truncated_total",
    /// Strings holding bytes that are not UTF-8 (e.g. from a LATIN1 source), each such byte
    /// sequence replaced by U+FFFD.
    VALUES_UTF8_REPLACED => "re_dms_values_utf8_replaced_total",
    /// Redshift table-segments committed (ledger row written).
    TABLE_SEGMENTS_LOADED => "re_dms_redshift_table_segments_loaded_total",
    /// Retries of a table-segment or the ledger set-up after a transient Redshift/S3 error.
    REDSHIFT_RETRIES => "re_dms_redshift_retries_total",
    /// Rows the warehouse rejected in tables with `on_reject = "quarantine"` (kept in a
    /// dead-letter object and `re_dms.rejected`; the rest of their batch loaded).
    ROWS_REJECTED => "re_dms_rows_rejected_total",
    /// Tables stopped by a definite error (a row the warehouse rejects); their segments stay.
    TABLES_STOPPED => "re_dms_redshift_tables_stopped_total",
    /// Target tables renamed after their source table (`ALTER TABLE ... RENAME TO`).
    TABLES_RENAMED => "re_dms_redshift_tables_renamed_total",
    /// Source catalog reads that failed (unreachable source, timeout, query error).
    CATALOG_ERRORS => "re_dms_source_catalog_errors_total",
    /// Full source catalog reads (at start, after a DDL change seen in the stream, or when the
    /// catalog's stamp moved); the per-segment stamp checks are not counted.
    CATALOG_READS => "re_dms_source_catalog_reads_total",
    /// Retries of an S3 request after a transient error.
    S3_RETRIES => "re_dms_s3_retries_total",
}

/// `(name, value)` of every counter.
pub fn snapshot() -> Vec<(&'static str, u64)> {
    ALL.iter().map(|c| (c.name, c.get())).collect()
}
