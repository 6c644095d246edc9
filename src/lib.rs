//! re_dms: streams a PostgreSQL database into Amazon Redshift, continuously, without losing a row.
//!
//! ```text
//! test_decoding ──> local segmented WAL ──> per-table batcher ──> gzipped CSV ──> target
//!  (decoding)        (wal, ingest)           (batch, schema)       (csv_out,       (target)
//!                                                                   typemap, manifest)
//! ```
//! `pipeline` is the one place that wires the stages together.

pub mod batch;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod csv_out;
pub mod decoding;
pub mod ingest;
pub mod lsn;
pub mod manifest;
pub mod metrics;
pub mod pipeline;
pub mod schema;
pub mod sealed_queue;
pub mod shutdown;
pub mod status;
pub mod target;
pub mod typemap;
pub mod wal;
