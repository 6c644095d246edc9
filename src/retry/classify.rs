//! One place that decides what an error means for the pipeline: retry, stop one table, or stop.
//!
//! - [`ErrorClass::Transient`]: the same request may succeed later (connection lost, throttling,
//!   serialization conflicts, a cluster in maintenance). Retry with [`backoff`], loudly.
//! - [`ErrorClass::Definite`]: this statement or this row will fail again the same way (a value
//!   Redshift rejects, a bug in our generated SQL). Stop the table it belongs to and keep its data
//!   on disk; the other tables go on.
//! - [`ErrorClass::Fatal`]: nothing will work until an operator fixes the configuration
//!   (credentials, missing database or bucket, access denied). Stop the process.
//!
//! The decisions live in plain functions over strings ([`classify_sqlstate`], [`classify_s3_code`])
//! so they can be unit-tested; [`classify_pg`] and [`classify_s3`] are thin wrappers.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use std::error::Error as StdError;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Retry later: the condition is expected to pass.
    Transient,
    /// This statement/row fails deterministically: stop the table, keep its data.
    Definite,
    /// Configuration or credentials are wrong: stop everything.
    Fatal,
}

impl ErrorClass {
    pub fn is_transient(self) -> bool {
        self == ErrorClass::Transient
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Definite => "definite",
            ErrorClass::Fatal => "fatal",
        })
    }
}

/// First retry delay.
pub const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Longest delay between two attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// Delay before retry number `attempt` (1 = first retry): exponential from [`BACKOFF_BASE`],
/// capped at [`BACKOFF_CAP`], with "equal jitter" (half fixed, half random) so that many workers
/// failing together do not retry in lockstep, while the delay still grows.
pub fn backoff(attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << exp)
        .min(BACKOFF_CAP)
        .as_millis() as u64;
    let half = ceiling / 2;
    Duration::from_millis(half + fastrand::u64(0..=ceiling - half))
}

// ------------------------------------------------------------------------------------------ Postgres

/// Messages that mean "try again" whatever SQLSTATE Redshift attached (it often says XX000).
const TRANSIENT_MESSAGES: &[&str] = &[
    "serializable isolation violation", // "ERROR: 1023 Serializable isolation violation on table"
    "conflict with concurrent transaction", // the same under SNAPSHOT isolation
    "cluster is in maintenance",
    "rebooting",
    "maintenance window",
    "terminating connection",
    "server closed the connection",
    "connection reset",
    "could not connect",
    "the database system is starting up",
    "the database system is shutting down",
    "cluster is being resized",
    "out of memory",
    "disk full",
];

/// Messages that mean "this load rejects rows": a definite data error whatever the SQLSTATE.
const DEFINITE_MESSAGES: &[&str] = &["stl_load_errors", "check 'stl_load_errors'"];

/// Classifies a server error from its SQLSTATE and message (as sent by Postgres or Redshift).
pub fn classify_sqlstate(code: &str, message: &str) -> ErrorClass {
    let lower = message.to_ascii_lowercase();
    if TRANSIENT_MESSAGES.iter().any(|m| lower.contains(m)) {
        return ErrorClass::Transient;
    }
    if DEFINITE_MESSAGES.iter().any(|m| lower.contains(m)) {
        return ErrorClass::Definite;
    }
    match code {
        // admin shutdown, crash shutdown, cannot connect now
        "57P01" | "57P02" | "57P03" => return ErrorClass::Transient,
        // query_canceled: statement timeout, or a query killed by a maintenance window
        "57014" => return ErrorClass::Transient,
        // invalid_catalog_name: the database does not exist
        "3D000" => return ErrorClass::Fatal,
        _ => {}
    }
    match code.get(..2).unwrap_or("") {
        // connection exception
        "08" => ErrorClass::Transient,
        // transaction rollback: 40001 serialization failure, 40P01 deadlock
        "40" => ErrorClass::Transient,
        // insufficient resources (disk full, out of memory, too many connections)
        "53" => ErrorClass::Transient,
        // system error (I/O error in the server)
        "58" => ErrorClass::Transient,
        // Redshift reports many internal, usually passing, conditions as XX000; the definite
        // ones (load errors) were caught by message above.
        "XX" => ErrorClass::Transient,
        // invalid authorization specification (28000), invalid password (28P01)
        "28" => ErrorClass::Fatal,
        // data exception, integrity constraint violation: a row Redshift rejects
        "22" | "23" => ErrorClass::Definite,
        // syntax error or access rule violation: in our own generated SQL this is a bug for
        // this table (stop it, keep its data), not a reason to stop every table.
        "42" => ErrorClass::Definite,
        // everything else (0A feature not supported, 25 invalid transaction state, 54 program
        // limit exceeded, 3F invalid schema, ...) is deterministic for this statement.
        _ => ErrorClass::Definite,
    }
}

/// Classifies a client-side (non-server) tokio-postgres error from its rendered text.
///
/// tokio-postgres keeps its error kinds private; their `Display` prefixes are stable
/// ("connection closed", "error communicating with the server", ...).
pub fn classify_pg_client(text: &str) -> ErrorClass {
    let lower = text.to_ascii_lowercase();
    let starts = |p: &str| lower.starts_with(p);
    if starts("error performing tls handshake") {
        // A certificate the verifier rejects will be rejected again; a handshake cut short
        // by the network will not.
        // ... and a server without TLS, or a hostaddr-only target, will not change either.
        return if lower.contains("certificate")
            || lower.contains("unknownissuer")
            || lower.contains("does not support tls")
            || lower.contains("no hostname provided")
        {
            ErrorClass::Fatal
        } else {
            ErrorClass::Transient
        };
    }
    if starts("invalid connection string")
        || starts("invalid configuration")
        || starts("authentication error")
    {
        return ErrorClass::Fatal;
    }
    if starts("connection closed")
        || starts("error communicating with the server")
        || starts("error connecting to server")
        || starts("timeout waiting for server")
        || starts("unexpected message from server")
        || starts("error parsing response from server")
    {
        return ErrorClass::Transient;
    }
    // serializing/deserializing values, wrong column counts, row counts: our bug, per statement
    ErrorClass::Definite
}

/// Classifies any tokio-postgres error.
pub fn classify_pg(e: &tokio_postgres::Error) -> ErrorClass {
    if let Some(db) = e.as_db_error() {
        return classify_sqlstate(db.code().code(), db.message());
    }
    if e.is_closed() {
        return ErrorClass::Transient;
    }
    classify_pg_client(&error_chain(e))
}

use crate::error_chain;

impl crate::connection::TlsError {
    /// Configuration problems are fatal; connection failures classify like any Postgres error.
    pub fn class(&self) -> ErrorClass {
        match self {
            crate::connection::TlsError::Connect { source, .. } => classify_pg(source),
            crate::connection::TlsError::Timeout { .. } => ErrorClass::Transient,
            _ => ErrorClass::Fatal,
        }
    }
}

impl crate::source::replication::ReplicationError {
    /// For the source there is no table to stop: what is not worth retrying stops the process.
    /// Lost connections and a slot still held by a previous session (SQLSTATE 55006, e.g. the
    /// instance that was just restarted) are retried; a missing slot (42704), refused
    /// credentials, a certificate that does not verify and a protocol the server does not
    /// speak are fatal.
    pub fn class(&self) -> ErrorClass {
        use crate::source::replication::ReplicationError as E;
        match self {
            E::Conninfo(e) => e.class(),
            E::Connect { .. }
            | E::Timeout { .. }
            | E::CommandTimeout { .. }
            | E::Closed { .. }
            | E::Io { .. } => ErrorClass::Transient,
            // rustls reports a certificate it refuses as InvalidData.
            E::Handshake { source, .. } if source.kind() == std::io::ErrorKind::InvalidData => {
                ErrorClass::Fatal
            }
            E::Handshake { .. } => ErrorClass::Transient,
            E::TlsRefused { .. } | E::Auth { .. } | E::Protocol { .. } => ErrorClass::Fatal,
            E::Server { code, .. } if code == "55006" => ErrorClass::Transient,
            E::Server { code, message, .. } => match classify_sqlstate(code, message) {
                ErrorClass::Transient => ErrorClass::Transient,
                _ => ErrorClass::Fatal,
            },
        }
    }
}

// ------------------------------------------------------------------------------------------ S3

/// How a request to S3 failed before any service error code was known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Failure {
    /// The service answered with an HTTP status and maybe an error code.
    Service,
    /// Connection refused/reset, DNS, TLS, reading the request body.
    Io,
    /// A timeout (connect, attempt or operation).
    Timeout,
    /// The request could not be built or sent because of our configuration (bad endpoint URL).
    User,
    /// Anything else the connector reported (includes credential provider failures).
    Other,
    /// The response could not be parsed.
    Response,
    /// The request could not be constructed.
    Construction,
}

/// S3 error codes that mean "retry".
const S3_TRANSIENT_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "OperationAborted",
    "BadDigest", // the body was corrupted on the way: send it again
    "ExpiredToken",
    "TokenRefreshRequired",
    "NoSuchUpload", // a multipart upload aborted under us (lifecycle rule): start it again
];

/// S3 error codes that mean "fix the configuration".
const S3_FATAL_CODES: &[&str] = &[
    "NoSuchBucket",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidBucketName",
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
    "InvalidSecurity",
    "NotSignedUp",
    // What the SDK calls a body-less HEAD 404/403: on HeadBucket, a missing bucket / no access.
    // (A HEAD on an object that is not there yet is handled before classification.)
    "NotFound",
    "Forbidden",
];

/// Classifies an S3 failure from its kind, HTTP status, error code and the rendered error chain.
pub fn classify_s3_code(
    failure: S3Failure,
    status: Option<u16>,
    code: Option<&str>,
    text: &str,
) -> ErrorClass {
    match failure {
        S3Failure::Io | S3Failure::Timeout | S3Failure::Response => ErrorClass::Transient,
        S3Failure::User | S3Failure::Construction => ErrorClass::Fatal,
        S3Failure::Other => {
            // Credential provider failures arrive here. No credentials at all, or a broken
            // profile, will not fix themselves; an instance-metadata timeout will.
            let lower = text.to_ascii_lowercase();
            if lower.contains("no providers in chain provided credentials")
                || lower.contains("credential provider was not enabled")
                || lower.contains("not properly configured")
            {
                ErrorClass::Fatal
            } else {
                ErrorClass::Transient
            }
        }
        S3Failure::Service => {
            if let Some(code) = code {
                if S3_TRANSIENT_CODES.contains(&code) {
                    return ErrorClass::Transient;
                }
                if S3_FATAL_CODES.contains(&code) {
                    return ErrorClass::Fatal;
                }
            }
            match status {
                Some(s) if s >= 500 || s == 429 || s == 408 => ErrorClass::Transient,
                // HEAD responses carry no body, hence no code: 403 is access denied, 404 on a
                // bucket is a missing bucket, 301 is the wrong region.
                Some(301 | 401 | 403) => ErrorClass::Fatal,
                Some(404) if code.is_none() => ErrorClass::Fatal,
                Some(_) => ErrorClass::Definite,
                None => ErrorClass::Transient,
            }
        }
    }
}

/// The parts of an SDK error that classification (and error messages) need:
/// `(failure kind, HTTP status, S3 error code, S3 message, full rendered chain)`.
pub fn s3_error_parts<E>(
    e: &SdkError<E, HttpResponse>,
) -> (
    S3Failure,
    Option<u16>,
    Option<String>,
    Option<String>,
    String,
)
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    let text = error_chain(e);
    match e {
        SdkError::ServiceError(ctx) => (
            S3Failure::Service,
            Some(ctx.raw().status().as_u16()),
            ctx.err().code().map(str::to_string),
            ctx.err().message().map(str::to_string),
            text,
        ),
        SdkError::DispatchFailure(d) => {
            let kind = if d.is_timeout() {
                S3Failure::Timeout
            } else if d.is_io() {
                S3Failure::Io
            } else if d.is_user() {
                S3Failure::User
            } else {
                S3Failure::Other
            };
            (kind, None, None, None, text)
        }
        SdkError::TimeoutError(_) => (S3Failure::Timeout, None, None, None, text),
        SdkError::ResponseError(r) => (
            S3Failure::Response,
            Some(r.raw().status().as_u16()),
            None,
            None,
            text,
        ),
        SdkError::ConstructionFailure(_) => (S3Failure::Construction, None, None, None, text),
        _ => (S3Failure::Other, None, None, None, text),
    }
}

/// Classifies any aws-sdk-s3 error.
pub fn classify_s3<E>(e: &SdkError<E, HttpResponse>) -> ErrorClass
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    let (failure, status, code, _, text) = s3_error_parts(e);
    classify_s3_code(failure, status, code.as_deref(), &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::*;

    #[test]
    fn sqlstates() {
        let cases: &[(&str, &str, ErrorClass)] = &[
            ("08006", "connection failure", Transient),
            ("08001", "could not establish connection", Transient),
            ("57P01", "terminating connection due to administrator command", Transient),
            ("57P02", "crash shutdown", Transient),
            ("57P03", "the database system is not accepting connections", Transient),
            ("57014", "canceling statement due to user request", Transient),
            ("40001", "could not serialize access", Transient),
            ("40P01", "deadlock detected", Transient),
            ("53100", "could not extend file: No space left on device", Transient),
            ("53300", "too many connections for role", Transient),
            (
                "XX000",
                "1023 Serializable isolation violation on table - 123, transactions forming the cycle are: 1, 2",
                Transient,
            ),
            ("XX000", "conflict with concurrent transaction", Transient),
            ("XX000", "The cluster is in maintenance mode", Transient),
            ("XX000", "Cluster is rebooting", Transient),
            (
                "XX000",
                "Load into table 'orders' failed.  Check 'stl_load_errors' system table for details.",
                Definite,
            ),
            ("22001", "value too long for type character varying(10)", Definite),
            ("22P02", "invalid input syntax for type integer: \"x\"", Definite),
            ("23505", "duplicate key value violates unique constraint", Definite),
            ("23502", "null value in column \"id\" violates not-null constraint", Definite),
            ("42703", "column \"nope\" does not exist", Definite),
            ("42P01", "relation \"s.t\" does not exist", Definite),
            ("42601", "syntax error at or near \"FROM\"", Definite),
            ("0A000", "ALTER COLUMN TYPE is not supported", Definite),
            ("25001", "ALTER TABLE ALTER COLUMN cannot run inside a transaction block", Definite),
            ("28P01", "password authentication failed for user \"loader\"", Fatal),
            ("28000", "no pg_hba.conf entry for host", Fatal),
            ("3D000", "database \"analytics\" does not exist", Fatal),
        ];
        for (code, message, want) in cases {
            assert_eq!(classify_sqlstate(code, message), *want, "{code} {message}");
        }
    }

    #[test]
    fn client_errors() {
        let cases: &[(&str, ErrorClass)] = &[
            ("connection closed", Transient),
            (
                "error communicating with the server: Connection reset by peer (os error 104)",
                Transient,
            ),
            (
                "error connecting to server: Connection refused (os error 111)",
                Transient,
            ),
            ("timeout waiting for server", Transient),
            ("error performing TLS handshake: early eof", Transient),
            (
                "error performing TLS handshake: invalid peer certificate: UnknownIssuer",
                Fatal,
            ),
            (
                "error performing TLS handshake: server does not support TLS",
                Fatal,
            ),
            ("invalid connection string: unexpected EOF", Fatal),
            ("invalid configuration: password missing", Fatal),
            ("authentication error: password missing", Fatal),
            ("error serializing parameter 0: ...", Definite),
            ("invalid column `x`", Definite),
        ];
        for (text, want) in cases {
            assert_eq!(classify_pg_client(text), *want, "{text}");
        }
    }

    #[test]
    fn s3_codes() {
        use S3Failure::*;
        let s = |status: u16, code: &str| {
            classify_s3_code(
                Service,
                Some(status),
                (!code.is_empty()).then_some(code),
                "",
            )
        };
        assert_eq!(s(503, "SlowDown"), Transient);
        assert_eq!(s(503, ""), Transient);
        assert_eq!(s(500, "InternalError"), Transient);
        assert_eq!(s(400, "RequestTimeout"), Transient);
        assert_eq!(s(400, "BadDigest"), Transient);
        assert_eq!(s(429, ""), Transient);
        assert_eq!(s(404, "NoSuchBucket"), Fatal);
        assert_eq!(s(404, ""), Fatal); // HEAD bucket on a missing bucket
        assert_eq!(s(404, "NotFound"), Fatal);
        assert_eq!(s(403, "Forbidden"), Fatal);
        assert_eq!(s(403, "AccessDenied"), Fatal);
        assert_eq!(s(403, "InvalidAccessKeyId"), Fatal);
        assert_eq!(s(403, "SignatureDoesNotMatch"), Fatal);
        assert_eq!(s(403, ""), Fatal);
        assert_eq!(s(301, "PermanentRedirect"), Fatal);
        assert_eq!(s(400, "EntityTooLarge"), Definite);
        assert_eq!(s(400, "InvalidArgument"), Definite);
        assert_eq!(
            classify_s3_code(Io, None, None, "connection refused"),
            Transient
        );
        assert_eq!(classify_s3_code(Timeout, None, None, ""), Transient);
        assert_eq!(classify_s3_code(Response, Some(200), None, ""), Transient);
        assert_eq!(classify_s3_code(User, None, None, "invalid URI"), Fatal);
        assert_eq!(
            classify_s3_code(
                Other,
                None,
                None,
                "dispatch failure: other: no providers in chain provided credentials"
            ),
            Fatal
        );
        assert_eq!(
            classify_s3_code(Other, None, None, "credentials provider timed out after 5s"),
            Transient
        );
    }

    #[test]
    fn backoff_is_capped_jittered_and_growing() {
        for attempt in 0..100 {
            let d = backoff(attempt);
            assert!(d <= BACKOFF_CAP, "{attempt}: {d:?}");
            assert!(d >= Duration::from_millis(100), "{attempt}: {d:?}");
        }
        assert!(backoff(1) <= Duration::from_millis(200));
        assert!(backoff(4) >= Duration::from_millis(800));
        assert!(backoff(30) >= BACKOFF_CAP / 2);
        let samples: std::collections::HashSet<_> = (0..50).map(|_| backoff(8)).collect();
        assert!(samples.len() > 1, "no jitter");
    }
}
