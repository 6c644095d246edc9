//! The source stage: where changes come from, as test_decoding text.
//!
//! Acknowledgement, in short (the full rules are in [`live`]'s note): a position is confirmed to
//! the slot only once re_dms holds everything before it: with `ack = "wal"` (default) once the
//! COMMIT is fsynced in the local WAL, with `ack = "loaded"` once the target has loaded it; the
//! server's WAL end only when nothing is pending; never lower than before. Streaming resumes at
//! the last COMMIT the WAL holds, so nothing arrives twice and nothing is skipped; a dropped or
//! lost slot is fatal, never re-created silently.
//!
//! - `decoding`: the test_decoding grammar, parsed without copying, and framing messages out of a
//!   byte stream (what `pg_recvlogical -f -` prints);
//! - `stdin`: the `--stdin` input, read in chunks on a thread of its own;
//! - `catalog`: the source database's catalog (primary keys, column types, partitions), read at
//!   start and kept current over one connection, optional; `names`: every name a table and a
//!   column had (renames), kept in the WAL directory;
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
pub mod names;
pub mod replication;
pub mod stdin;
