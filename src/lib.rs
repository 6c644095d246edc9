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

pub mod batch;
pub mod csv;
pub mod pipeline;
pub mod sink;
pub mod source;
pub mod wal;

pub mod cli;
pub mod config;
pub mod connection;
pub mod failpoints;
pub mod lsn;
pub mod metrics;
pub mod retry;
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
