//! re_dms: streams a PostgreSQL database into Amazon Redshift, continuously, without losing a row.
//!
//! ```text
//! test_decoding slot ──> local segmented WAL ──> per-table batcher ──> gzipped CSV ──> target
//!  (decoding, source)     (wal)                   (batch)               (csv_out)      (target)
//! ```
//! `pipeline` is the one place that wires the stages together.

pub mod decoding;
