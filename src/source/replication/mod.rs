//! The replication protocol client for a test_decoding slot, on tokio with postgres-protocol for
//! the messages (tokio-postgres has no replication mode, and `pg_recvlogical` confirms positions
//! as soon as its output is written, before re_dms holds them durably).
//!
//! - `wire`: the stream (TCP, Unix socket, or TLS after an SSLRequest, with the same `sslmode`
//!   meanings and connector as every other connection: `crate::connection`) and message framing;
//! - `session`: startup with `replication=database` and pinned session settings
//!   ([`session::SESSION_OPTIONS`]: UTC, ISO dates, exact floats, postgres intervals), trust /
//!   cleartext / md5 / SCRAM-SHA-256 authentication, `IDENTIFY_SYSTEM`, simple queries and
//!   `START_REPLICATION`;
//! - `slot`: the slot's state (`pg_replication_slots`) and `CREATE_REPLICATION_SLOT`;
//! - `stream`: XLogData and keepalives in, standby status updates out.
//!
//! This module speaks the protocol only; it confirms exactly the positions its caller gives it.
//! Which position may be confirmed (only what the local WAL holds durably) is the caller's rule.
//!
//! Every wait here is bounded: connecting by `connect_timeout` (30 s when the string sets none),
//! each command by [`session::COMMAND_TIMEOUT`]. Streaming itself has no deadline of its own (an
//! idle slot is quiet): the caller races [`stream::ReplicationStream::next`], which is
//! cancel-safe, against its status timer, the server's keepalive interval and the stop signal.

pub mod session;
pub mod slot;
pub mod stream;
pub mod wire;

use std::time::Duration;

pub use session::{Session, SystemIdentity};
pub use slot::SlotState;
pub use stream::{Event, ReplicationStream};

use crate::connection::TlsError;

/// Everything that can go wrong on a replication connection. `target` is `user@host:port/db`,
/// never the password; `context` is what the connection was doing.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The connection string is malformed, or TLS could not be set up from it.
    #[error(transparent)]
    Conninfo(#[from] TlsError),
    #[error("connecting to {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "connecting to {target}: no answer within {}s (TCP, TLS and startup; connect_timeout)",
        after.as_secs()
    )]
    Timeout { target: String, after: Duration },
    #[error("{target}: {context}: no answer within {}s", after.as_secs())]
    CommandTimeout {
        target: String,
        context: &'static str,
        after: Duration,
    },
    #[error("connecting to {target}: the server does not accept TLS and sslmode requires it")]
    TlsRefused { target: String },
    #[error("connecting to {target}: TLS handshake: {source}")]
    Handshake {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {target}: authentication: {message}")]
    Auth { target: String, message: String },
    #[error("{target}: {context}: {message} (SQLSTATE {code})")]
    Server {
        target: String,
        context: &'static str,
        code: String,
        message: String,
    },
    #[error("{target}: {context}: the server closed the connection")]
    Closed {
        target: String,
        context: &'static str,
    },
    #[error("{target}: {context}: {source}")]
    Io {
        target: String,
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{target}: {context}: unexpected {what}")]
    Protocol {
        target: String,
        context: &'static str,
        what: String,
    },
}
