//! The source stage: where changes come from, as test_decoding text.
//!
//! - `decoding`: the test_decoding grammar, parsed without copying, and framing messages out of a
//!   byte stream (what `pg_recvlogical -f -` prints);
//! - `stdin`: the `--stdin` input, read in chunks on a thread of its own;
//! - `catalog`: the source database's catalog (primary keys, column types, partitions), read
//!   once at start, optional.
//!
//! - `replication`: the replication protocol client for a test_decoding slot (connect, slot,
//!   stream, status updates);
//! - `live`: the live source stage on it: the slot streamed into ingest, and the rules for what
//!   is confirmed back; `binding`: the one slot a WAL directory streams from;
//! - `filter`: `[source] include` / `exclude`, applied by ingest before the WAL.

pub mod binding;
pub mod catalog;
pub mod decoding;
pub mod filter;
pub mod live;
pub mod replication;
pub mod stdin;
