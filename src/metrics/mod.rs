//! Process-wide metrics, named `re_dms_<what>_<unit>[_total]` and listed in METRICS.md.
//!
//! Recorded through the `metrics` facade. [`install`] sets the process's recorder from
//! `[metrics]`: Prometheus text (served at `listen` by `serve`, with `/healthz` from `health`),
//! DogStatsD lines to `statsd` (the CloudWatch agent's StatsD listener; labels become tags), or
//! both (a fan-out). Without it (`--stdin` runs without `[metrics]`, unit tests, `re_dms status`)
//! every figure is recorded nowhere, for the cost of a no-op.
//!
//! Counters and gauges without labels are statics ([`Counter`], [`Gauge`]): their facade handle
//! is registered once, at [`install`] (so each is exported from the start, at 0), and an update
//! is then one atomic add. Labelled figures (per table, per op, per error class) go through the
//! functions below; the hot paths add them per batch, never per row.

pub mod health;
pub mod serve;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::config::MetricsConfig;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics.statsd: {0}")]
    Statsd(String),
    #[error("metrics: {0}")]
    Recorder(String),
}

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $ident:ident => $name:literal,)*) => {
        $( $(#[doc = $doc])* pub static $ident: Counter = Counter::new($name, concat!($($doc, "\n",)*)); )*
        /// Every unlabelled counter, for [`install`].
        pub static ALL: &[&Counter] = &[$(&$ident),*];
    };
}

macro_rules! gauges {
    ($($(#[doc = $doc:literal])* $ident:ident => $name:literal,)*) => {
        $( $(#[doc = $doc])* pub static $ident: Gauge = Gauge::new($name, concat!($($doc, "\n",)*)); )*
        /// Every unlabelled gauge, for [`install`].
        pub static ALL_GAUGES: &[&Gauge] = &[$(&$ident),*];
    };
}

/// A monotonically increasing counter.
#[derive(Debug)]
pub struct Counter {
    pub name: &'static str,
    help: &'static str,
    value: AtomicU64,
    handle: OnceLock<metrics::Counter>,
}

impl Counter {
    pub const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            value: AtomicU64::new(0),
            handle: OnceLock::new(),
        }
    }
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
        self.handle().increment(n);
    }
    pub fn inc(&self) {
        self.add(1);
    }
    /// The count in this process (whatever the recorder).
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
    fn handle(&self) -> &metrics::Counter {
        self.handle.get_or_init(|| metrics::counter!(self.name))
    }
}

/// A value that goes up and down.
#[derive(Debug)]
pub struct Gauge {
    pub name: &'static str,
    help: &'static str,
    /// The last value set, as `f64` bits.
    value: AtomicU64,
    handle: OnceLock<metrics::Gauge>,
}

impl Gauge {
    pub const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            value: AtomicU64::new(0),
            handle: OnceLock::new(),
        }
    }
    pub fn set(&self, v: f64) {
        self.value.store(v.to_bits(), Ordering::Relaxed);
        self.handle().set(v);
    }
    /// The last value set in this process.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.value.load(Ordering::Relaxed))
    }
    fn handle(&self) -> &metrics::Gauge {
        self.handle.get_or_init(|| metrics::gauge!(self.name))
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
    /// Bytes of CSV files uploaded to S3 (confirmed; a file already there is not counted again).
    S3_BYTES_UPLOADED => "re_dms_s3_uploaded_bytes_total",
    /// CSV files uploaded to S3 (confirmed).
    S3_OBJECTS_UPLOADED => "re_dms_s3_uploaded_objects_total",
    /// Statements sent to Redshift (DDL, COPY, merge, ledger; retries included).
    REDSHIFT_STATEMENTS => "re_dms_redshift_statements_total",
}

gauges! {
    /// Bytes of WAL segments on disk not loaded yet (the open one included).
    WAL_PENDING_BYTES => "re_dms_wal_pending_bytes",
    /// WAL segments on disk not loaded yet (the open one included).
    WAL_PENDING_SEGMENTS => "re_dms_wal_pending_segments",
    /// Seconds since the oldest sealed segment not loaded yet was sealed (0: none).
    WAL_OLDEST_UNLOADED_AGE => "re_dms_wal_oldest_unloaded_segment_age_seconds",
    /// The position last confirmed to the replication slot.
    SOURCE_CONFIRMED_LSN => "re_dms_source_confirmed_lsn",
    /// The source server's WAL end, as its last message said.
    SOURCE_SERVER_LSN => "re_dms_source_server_wal_end_lsn",
    /// Bytes of source WAL between the server's end and the confirmed position.
    REPLICATION_LAG_BYTES => "re_dms_replication_lag_bytes",
    /// Seconds since re_dms was last caught up with the source (0 while caught up).
    REPLICATION_LAG_SECONDS => "re_dms_replication_lag_seconds",
    /// Target tables stopped now by a definite error (their segments stay in the WAL).
    TABLES_STOPPED_NOW => "re_dms_redshift_tables_stopped",
    /// Bytes the batcher's index of the open segment holds (bounded by batch.max_memory_bytes),
    /// sampled at each WAL fsync.
    BATCH_MEMORY => "re_dms_batch_memory_bytes",
    /// In-place restarts in a row that led to this process (the source lost inside a
    /// transaction; 0 after an ordinary start).
    RESTARTS_IN_PLACE => "re_dms_restarts_in_place",
}

/// The op label of a row change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Op {
    pub fn label(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Truncate => "truncate",
        }
    }
}

/// Changes of `table` received (into the WAL), by op: `re_dms_changes_received_total`.
pub fn changes_received(table: &str, op: Op, n: u64) {
    if n > 0 {
        metrics::counter!("re_dms_changes_received_total", "table" => table.to_string(), "op" => op.label())
            .increment(n);
    }
}

/// Rows of `table` a committed load wrote, by file kind (`upsert`, `delete`, `update`):
/// `re_dms_redshift_rows_loaded_total`.
pub fn rows_loaded(table: &str, kind: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!("re_dms_redshift_rows_loaded_total", "table" => table.to_string(), "op" => kind)
            .increment(n);
    }
}

/// How long one table-segment's load took (ledger check to commit, retries included):
/// `re_dms_redshift_load_duration_seconds{table}`.
pub fn load_duration(table: &str, took: Duration) {
    metrics::histogram!("re_dms_redshift_load_duration_seconds", "table" => table.to_string())
        .record(took.as_secs_f64());
}

/// An error of `stage` (`source`, `s3`, `redshift`, `catalog`) by how it was handled
/// (`transient`: retried; `definite`: its table stopped; `fatal`): `re_dms_errors_total`.
pub fn error(stage: &'static str, class: crate::retry::ErrorClass) {
    let class = match class {
        crate::retry::ErrorClass::Transient => "transient",
        crate::retry::ErrorClass::Definite => "definite",
        crate::retry::ErrorClass::Fatal => "fatal",
    };
    metrics::counter!("re_dms_errors_total", "stage" => stage, "class" => class).increment(1);
}

/// Bucket bounds of every `_seconds` histogram.
const SECONDS_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// What [`install`] set up.
pub struct Exporters {
    /// Renders the Prometheus text, when `[metrics] listen` is set.
    pub prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// Sets the process's recorder from `[metrics]` (see the module docs); nothing when neither
/// `listen` nor `statsd` is set. Call once, before the stages start.
pub fn install(config: &MetricsConfig) -> Result<Exporters, MetricsError> {
    let mut fanout = metrics_util::layers::FanoutBuilder::default();
    let mut prometheus = None;
    let mut any = false;
    if !config.listen.is_empty() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                SECONDS_BUCKETS,
            )
            .map_err(|e| MetricsError::Recorder(e.to_string()))?
            .build_recorder();
        prometheus = Some(recorder.handle());
        fanout = fanout.add_recorder(recorder);
        any = true;
    }
    if !config.statsd_address().is_empty() {
        let tags = config
            .all_statsd_tags()
            .iter()
            .filter_map(|t| t.split_once(':'))
            .map(|(k, v)| metrics::Label::new(k.to_string(), v.to_string()))
            .collect();
        let recorder = metrics_exporter_dogstatsd::DogStatsDBuilder::default()
            .with_remote_address(config.statsd_address())
            .map_err(|e| MetricsError::Statsd(e.to_string()))?
            .with_global_labels(tags)
            .with_flush_interval(Duration::from_secs(10))
            .with_telemetry(false)
            .send_histograms_as_distributions(false)
            .build()
            .map_err(|e| MetricsError::Statsd(e.to_string()))?;
        fanout = fanout.add_recorder(recorder);
        any = true;
    }
    if !any {
        return Ok(Exporters { prometheus: None });
    }
    metrics::set_global_recorder(fanout.build())
        .map_err(|e| MetricsError::Recorder(e.to_string()))?;
    describe();
    Ok(Exporters { prometheus })
}

/// HELP texts, and every unlabelled figure registered (exported at 0 from the start: an
/// alarm on a figure that is absent until it first moves would never fire).
fn describe() {
    for c in ALL {
        metrics::describe_counter!(c.name, c.help.trim().replace('\n', " "));
        c.handle().increment(0);
    }
    for g in ALL_GAUGES {
        metrics::describe_gauge!(g.name, g.help.trim().replace('\n', " "));
        g.handle().set(g.get());
    }
    metrics::describe_counter!(
        "re_dms_changes_received_total",
        "Row changes received into the WAL, by table and op."
    );
    metrics::describe_counter!(
        "re_dms_redshift_rows_loaded_total",
        "Rows committed in the warehouse, by table and file kind (upsert, delete, update)."
    );
    metrics::describe_histogram!(
        "re_dms_redshift_load_duration_seconds",
        metrics::Unit::Seconds,
        "Time to load one table-segment (ledger check to commit, retries included), by table."
    );
    metrics::describe_counter!(
        "re_dms_errors_total",
        "Errors by stage and class: transient (retried), definite (table stopped), fatal."
    );
}
