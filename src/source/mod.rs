//! The source stage: where changes come from, as test_decoding text.
//!
//! - `decoding`: the test_decoding grammar, parsed without copying, and framing messages out of a
//!   byte stream (what `pg_recvlogical -f -` prints);
//! - `stdin`: the `--stdin` input, read in chunks on a thread of its own;
//! - `catalog`: the source database's catalog (primary keys, column types, partitions), read
//!   once at start, optional.
//!
//! The live replication-slot reader will live here too.

pub mod catalog;
pub mod decoding;
pub mod stdin;
