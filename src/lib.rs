//! re_dms: streams a PostgreSQL database into Amazon Redshift, continuously, without losing a row.
//!
//! The modules, in pipeline order:
//!
//! ```text
//! source ──> wal ──> batch ──> csv ──> sink
//!  (test_decoding   (segmented WAL;   (one change per   (gzipped CSV    (local files, or S3 upload
//!   text from        fsync, then ack;  row; schema        + manifest per   + Redshift COPY and merge,
//!   stdin)           ingest stage)     diffs)             segment)         per-table lanes)
//! ```
//! `pipeline` wires the stages and owns the hand-offs between them; `shutdown` is the one stop
//! signal every stage waits on; `connection` is the libpq-style connection code (conninfo, TLS)
//! that the source catalog and the Redshift sink share.

// The stages, in pipeline order (a comment between each keeps rustfmt from sorting them).
// 1. Where changes come from: test_decoding text on stdin; the slot reader next.
pub mod source;
// 2. The local WAL: appended, fsynced, then acknowledged; segments are the unit of work.
pub mod wal;
// 3. One segment's changes folded into per-table load steps.
pub mod batch;
// 4. Gzipped CSV files and a manifest per segment.
pub mod csv;
// 5. Local files, or S3 + Redshift; WAL segments deleted once loaded.
pub mod sink;
// The wiring and the hand-offs between the stages.
pub mod pipeline;

// Beside the stages.
pub mod cli;
pub mod config;
pub mod connection;
pub mod failpoints;
pub mod lsn;
pub mod metrics;
pub mod report;
pub mod retry;
pub mod service;
pub mod shutdown;
pub mod status;

/// `error: cause: cause`, skipping causes already quoted in the message above them. The one
/// way an error and its `#[source]` chain become a log field or a message.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
