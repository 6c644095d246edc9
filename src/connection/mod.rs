//! Connections that speak the PostgreSQL protocol, shared by the source catalog and the Redshift
//! sink: libpq-style connection strings (`conninfo.rs`), TLS with libpq's `sslmode` meanings
//! (`tls.rs`), and [`connect`], which bounds the whole connection by `connect_timeout`.
//!
//! tokio-postgres 0.7 understands `sslmode=disable|prefer|require` only, and never verifies
//! anything itself: verification is whatever the TLS connector does. [`parse_connection`] takes a
//! libpq key=value string or a `postgres://` URL, removes the TLS keys it handles itself
//! (`sslmode`, `sslrootcert`) and returns the rest as a [`tokio_postgres::Config`] plus the
//! [`TlsPolicy`] that [`TlsPolicy::connector`] turns into a rustls connector. The semantics follow
//! libpq, because that is what operators expect from those words:
//!
//! | sslmode       | TLS                               | certificate checked                  |
//! |---------------|-----------------------------------|--------------------------------------|
//! | `disable`     | never                             | -                                    |
//! | `allow`       | if the server offers it (`prefer`)| no                                   |
//! | `prefer`      | if the server offers it (default) | no                                   |
//! | `require`     | always                            | no (libpq: encrypt, do not verify) * |
//! | `verify-ca`   | always                            | chain to a trusted root              |
//! | `verify-full` | always                            | chain and host name                  |
//!
//! \* as in libpq, `require` with an explicit `sslrootcert` behaves like `verify-ca`.
//! Trusted roots are the platform's (rustls-native-certs) plus the PEM file `sslrootcert` names;
//! `sslrootcert=system` means the platform's roots and implies `verify-full` (libpq 16).
//!
//! Passwords never reach a log line or an error message: see [`redact`].

mod conninfo;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

pub use conninfo::{describe, parse_connection, redact};
pub use tls::{connector, MakeRustlsConnect, TlsMode, TlsPolicy};

/// When the connection string sets no `connect_timeout`: an unreachable cluster fails (and is
/// retried) instead of hanging on the operating system's TCP timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The connection string is malformed or names something unsupported. `conn` is redacted.
    #[error("connection string `{conn}`: {message}")]
    Parse { conn: String, message: String },
    #[error("sslrootcert {}: {message}", path.display())]
    CaFile { path: PathBuf, message: String },
    #[error("TLS set-up: {0}")]
    Setup(String),
    /// Connecting failed; `target` is `user@host:port/dbname`, never the password.
    #[error("connecting to {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// TCP connect, TLS handshake and startup together took longer than `connect_timeout`
    /// (e.g. a load balancer that accepts connections and never answers).
    #[error(
        "connecting to {target}: no answer within {}s (TCP, TLS and startup; connect_timeout)",
        after.as_secs()
    )]
    Timeout { target: String, after: Duration },
}

/// Connects with the TLS policy of `conn`; the connection runs on its own task, which logs how it
/// ended (without the password). The whole of it (TCP, TLS handshake, startup and
/// authentication) must finish within `connect_timeout` ([`DEFAULT_CONNECT_TIMEOUT`] when the
/// string sets none), as libpq's `connect_timeout` does: tokio-postgres applies it to the TCP
/// connect alone.
pub async fn connect(conn: &str) -> Result<tokio_postgres::Client, TlsError> {
    let (config, policy) = parse_connection(conn)?;
    let tls = policy.connector()?;
    let target = describe(&config);
    let after = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let (client, connection) = tokio::time::timeout(after, config.connect(tls))
        .await
        .map_err(|_| TlsError::Timeout {
            target: target.clone(),
            after,
        })?
        .map_err(|source| TlsError::Connect {
            target: target.clone(),
            source,
        })?;
    tokio::spawn(drive(connection, target));
    Ok(client)
}

/// Runs a connection until it ends. Server notices (`NOTICE: schema "re_dms" already exists,
/// skipping` on every `IF NOT EXISTS`) are logged at debug, not at info as tokio-postgres would:
/// they are routine. An error end is a warning with the server's detail.
async fn drive<S, T>(mut connection: tokio_postgres::Connection<S, T>, target: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(tokio_postgres::AsyncMessage::Notice(n))) => {
                tracing::debug!(target_db = %target, severity = n.severity(), notice = n.message(), "server notice");
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                let error = pg_detail(&e);
                tracing::warn!(target_db = %target, error = %error, "database connection ended with an error");
                return;
            }
            None => return,
        }
    }
}

/// The server's message with its SQLSTATE, or the client error with its causes.
pub fn pg_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        // The client's own message leaves out the cause (e.g. the TLS handshake's reason).
        None => crate::error_chain(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::ErrorClass;
    use std::path::Path;
    use tokio_postgres::config::SslMode;

    #[test]
    fn redacts_key_value_passwords() {
        assert_eq!(
            redact("host=h user=u password=secret dbname=d"),
            "host=h user=u password=*** dbname=d"
        );
        assert_eq!(
            redact("host=h password = 'se cr\\'et' port=5439"),
            "host=h password = *** port=5439"
        );
        assert_eq!(
            redact("host=h password='unterminated"),
            "host=h password=***"
        );
        assert_eq!(redact("host=h user=u"), "host=h user=u");
    }

    #[test]
    fn redacts_url_passwords() {
        assert_eq!(
            redact("postgres://loader:s3cr@t@cluster:5439/db?sslmode=require"),
            "postgres://loader:***@cluster:5439/db?sslmode=require"
        );
        assert_eq!(redact("postgresql://u@h/db"), "postgresql://u@h/db");
        assert_eq!(
            redact("postgres://h/db?user=u&password=x&sslmode=verify-full"),
            "postgres://h/db?user=u&password=***&sslmode=verify-full"
        );
    }

    #[test]
    fn parse_errors_do_not_leak_password() {
        let e = parse_connection("host=h password=hunter2 sslmode=bogus").unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(e.class(), ErrorClass::Fatal);
        let e = parse_connection("host=h password=hunter2 nonsense=1").unwrap_err();
        assert!(!format!("{e} {e:?}").contains("hunter2"));
        let e = parse_connection("postgres://u:hunter2@h/db?nonsense=1").unwrap_err();
        assert!(!format!("{e} {e:?}").contains("hunter2"));
    }

    #[test]
    fn sslmodes() -> Result<(), TlsError> {
        let (c, p) = parse_connection("host=h user=u dbname=d sslmode=verify-full")?;
        assert_eq!(p.mode, TlsMode::VerifyFull);
        assert_eq!(c.get_ssl_mode(), SslMode::Require);
        assert_eq!(c.get_dbname(), Some("d"));

        let (c, p) = parse_connection("host=h sslmode=require")?;
        assert_eq!(
            (p.mode, c.get_ssl_mode()),
            (TlsMode::Require, SslMode::Require)
        );
        assert!(!p.verifies());

        let (c, p) = parse_connection("host=h sslmode=disable")?;
        assert_eq!(
            (p.mode, c.get_ssl_mode()),
            (TlsMode::Disable, SslMode::Disable)
        );

        let (c, p) = parse_connection("host=h")?;
        assert_eq!(
            (p.mode, c.get_ssl_mode()),
            (TlsMode::Prefer, SslMode::Prefer)
        );
        assert_eq!(c.get_connect_timeout(), Some(&DEFAULT_CONNECT_TIMEOUT));

        let (_, p) = parse_connection("host=h sslmode=require sslrootcert=/etc/ca.pem")?;
        assert_eq!(p.mode, TlsMode::VerifyCa);
        assert_eq!(p.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));

        let (_, p) = parse_connection("host=h sslrootcert=system")?;
        assert_eq!(p.mode, TlsMode::VerifyFull);
        assert_eq!(p.root_cert, None);

        let (c, p) = parse_connection(
            "postgres://u:pw@cluster.example:5439/analytics?sslmode=verify-ca&sslrootcert=%2Ftmp%2Fca.pem&application_name=re_dms",
        )?;
        assert_eq!(p.mode, TlsMode::VerifyCa);
        assert_eq!(p.root_cert.as_deref(), Some(Path::new("/tmp/ca.pem")));
        assert_eq!(c.get_ssl_mode(), SslMode::Require);
        assert_eq!(c.get_dbname(), Some("analytics"));
        assert_eq!(c.get_password(), Some(&b"pw"[..]));
        assert_eq!(c.get_application_name(), Some("re_dms"));
        assert_eq!(c.get_ports(), &[5439]);

        let (c, _) = parse_connection("host=h password='it\\'s' user='a b'")?;
        assert_eq!(c.get_password(), Some(&b"it's"[..]));
        assert_eq!(c.get_user(), Some("a b"));

        assert!(parse_connection("host=h sslcert=/x").is_err());
        assert!(parse_connection("host=h sslmode=require sslrootcert=system").is_err());
        Ok(())
    }

    #[test]
    fn connectors_build() -> Result<(), TlsError> {
        for mode in [
            TlsMode::Disable,
            TlsMode::Prefer,
            TlsMode::Require,
            TlsMode::VerifyCa,
            TlsMode::VerifyFull,
        ] {
            // VerifyCa/VerifyFull need the platform's roots; skip where there are none.
            match connector(mode, None) {
                Ok(_) => {}
                Err(TlsError::Setup(m)) if m.contains("no trusted CA") => {}
                Err(e) => return Err(e),
            }
        }
        let missing = connector(TlsMode::VerifyFull, Some(Path::new("/nonexistent/ca.pem")));
        assert!(matches!(missing, Err(TlsError::CaFile { .. })));
        Ok(())
    }

    /// A server that answers SSLRequest with `N` (as redshift-sim and a plain PostgreSQL do) and
    /// then rejects the password; returns its port and how many SSLRequests it saw.
    async fn fake_server() -> (u16, tokio::task::JoinHandle<u32>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut ssl_requests = 0;
            loop {
                let len = sock.read_u32().await.expect("length") as usize;
                let mut body = vec![0u8; len - 4];
                sock.read_exact(&mut body).await.expect("body");
                if body[..4] == 80877103u32.to_be_bytes() {
                    ssl_requests += 1;
                    sock.write_all(b"N").await.expect("N");
                    continue;
                }
                // Startup message: reject it like a wrong password.
                let mut fields = Vec::new();
                for (tag, value) in [
                    (b'S', "FATAL"),
                    (b'V', "FATAL"),
                    (b'C', "28P01"),
                    (b'M', "password authentication failed for user \"u\""),
                ] {
                    fields.push(tag);
                    fields.extend_from_slice(value.as_bytes());
                    fields.push(0);
                }
                fields.push(0);
                let mut msg = vec![b'E'];
                msg.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
                msg.extend_from_slice(&fields);
                sock.write_all(&msg).await.expect("error response");
                return ssl_requests;
            }
        });
        (port, task)
    }

    #[tokio::test]
    async fn plain_fallback_and_password_never_in_errors() {
        for (mode, want_ssl_requests) in [("prefer", 1), ("disable", 0)] {
            let (port, server) = fake_server().await;
            let conn = format!(
                "host=127.0.0.1 port={port} user=u password=hunter2 dbname=d sslmode={mode}"
            );
            let err = connect(&conn).await.expect_err("password rejected");
            let text = format!("{err} {err:?}");
            assert!(!text.contains("hunter2"), "{text}");
            assert!(
                text.contains("28P01") || text.contains("password authentication"),
                "{text}"
            );
            assert_eq!(err.class(), ErrorClass::Fatal, "{text}");
            assert_eq!(server.await.expect("server"), want_ssl_requests, "{mode}");
        }
        // `require` against a server without TLS: a configuration problem, not a passing one.
        let (port, server) = fake_server().await;
        let err = connect(&format!(
            "host=127.0.0.1 port={port} user=u sslmode=require"
        ))
        .await
        .expect_err("no TLS");
        assert_eq!(err.class(), ErrorClass::Fatal, "{err}");
        server.abort();
    }
}
