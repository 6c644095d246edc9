//! `tls::connect`, and the replication client's own TLS negotiation, against a real TLS
//! endpoint: a throwaway PostgreSQL 15 with `ssl=on`, a server certificate signed by a CA made
//! here, and a pg_hba.conf that accepts TCP only over TLS (`hostssl`), so every connection that
//! succeeds was encrypted and `sslmode=disable` is refused.
//!
//! The server certificate names `DNS:localhost` only (no IP address): `host=localhost` passes
//! `verify-full`, `host=127.0.0.1` passes `verify-ca` (chain only) and fails `verify-full` (name).
//!
//! The server is the test's own ([`crate::harness::postgres`]).

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use re_dms::connection::{self as tls, TlsError};
use re_dms::error_chain;
use re_dms::retry::classify::ErrorClass;
use re_dms::source::replication::{ReplicationError, Session};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;

use crate::harness::postgres::{give_to_postgres, quoted, Postgres, STARTUP_TIMEOUT};

// ------------------------------------------------------------------------------- certificates

struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA cert")
}

/// A CA, a server certificate for `DNS:localhost` signed by it, and an unrelated CA (another
/// name, another key).
fn make_pki(dir: &Path) -> Pki {
    let ca = new_ca("re_dms test CA");
    let other_ca = new_ca("re_dms unrelated CA");
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, &ca).expect("server certificate");

    let pki = Pki {
        ca: dir.join("ca.crt"),
        other_ca: dir.join("other_ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    };
    fs::write(&pki.ca, ca.pem()).expect("write ca.crt");
    fs::write(&pki.other_ca, other_ca.pem()).expect("write other_ca.crt");
    fs::write(&pki.cert, cert.pem()).expect("write server.crt");
    // PostgreSQL refuses a key file that group or others can read.
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&pki.key)
        .and_then(|mut f| f.write_all(key.serialize_pem().as_bytes()))
        .expect("write server.key");
    pki
}

// ------------------------------------------------------------------------------------ server

/// A server with `ssl=on` that accepts TCP only over TLS (`hostssl`): a plain connection finds
/// no matching pg_hba.conf line and is refused.
fn start_tls_server(pki: &Pki) -> Result<Postgres, String> {
    let conf = format!(
        "ssl = on\nssl_cert_file = {}\nssl_key_file = {}",
        quoted(&pki.cert),
        quoted(&pki.key)
    );
    Postgres::start(
        "redshift_tls",
        &conf,
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
    )
}

/// Polls until a TLS connection runs a query (pg_ctl -w already waited for the postmaster).
async fn wait_ready(pg: &Postgres) -> Result<(), String> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let conn = pg.conninfo("host=127.0.0.1 sslmode=require");
    loop {
        let err = match tls::connect(&conn).await {
            Ok(client) => match client.simple_query("SELECT 1").await {
                Ok(_) => return Ok(()),
                Err(e) => error_chain(&e),
            },
            Err(e) => error_chain(&e),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "not ready after {STARTUP_TIMEOUT:?}: {err}\n{}",
                pg.log_text()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ------------------------------------------------------------------------------------- checks

/// Connects and reports whether the session is encrypted (pg_stat_ssl).
async fn connect_ssl(conn: &str) -> Result<bool, String> {
    let client = tls::connect(conn).await.map_err(|e| error_chain(&e))?;
    let row = client
        .query_one(
            "SELECT 1::int4, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| format!("query: {}", error_chain(&e)))?;
    if row.get::<_, i32>(0) != 1 {
        return Err("SELECT 1 did not return 1".to_string());
    }
    Ok(row.get::<_, bool>(1))
}

/// A replication connection (startup with `replication=database`) and IDENTIFY_SYSTEM.
async fn replication_session(conn: &str) -> Result<(), String> {
    let mut session = Session::connect(conn).await.map_err(|e| error_chain(&e))?;
    session
        .identify_system()
        .await
        .map_err(|e| format!("IDENTIFY_SYSTEM: {}", error_chain(&e)))?;
    Ok(())
}

#[tokio::test]
async fn tls_modes_against_postgres_with_ssl() {
    let dir = tempfile::Builder::new()
        .prefix("redshift_tls.")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temporary directory");
    let pki = make_pki(dir.path());
    // The server reads its certificate and key as the postgres user.
    give_to_postgres(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let (ca, other) = (pki.ca.display(), pki.other_ca.display());
    let pg = start_tls_server(&pki).unwrap_or_else(|e| panic!("PostgreSQL 15: {e}"));
    if let Err(e) = wait_ready(&pg).await {
        panic!("PostgreSQL 15: {e}");
    }
    let port = pg.port;
    let mut failures = Vec::new();

    let succeed = [
        (
            "require, nothing verified",
            pg.conninfo("host=127.0.0.1 sslmode=require"),
        ),
        (
            "prefer takes the TLS offered",
            pg.conninfo("host=127.0.0.1 sslmode=prefer"),
        ),
        (
            "verify-full, our CA, host=localhost",
            pg.conninfo(&format!(
                "host=localhost sslmode=verify-full sslrootcert={ca}"
            )),
        ),
        (
            "verify-ca, our CA, host=127.0.0.1 (name not checked)",
            pg.conninfo(&format!(
                "host=127.0.0.1 sslmode=verify-ca sslrootcert={ca}"
            )),
        ),
        (
            "verify-full, our CA, URL form",
            format!(
                "postgres://postgres@localhost:{port}/postgres?connect_timeout=10\
                 &sslmode=verify-full&sslrootcert={ca}"
            ),
        ),
    ];
    for (case, conn) in &succeed {
        match connect_ssl(conn).await {
            Ok(true) => {}
            Ok(false) => failures.push(format!("{case}: connected without TLS")),
            Err(e) => failures.push(format!("{case}: {e}")),
        }
    }

    // `hostaddr` pins the address: with `localhost` resolving to ::1 too, the error reported
    // would otherwise be that of the last address tried.
    let certificate_failures = [
        (
            "verify-full, unrelated CA",
            pg.conninfo(&format!(
                "host=localhost hostaddr=127.0.0.1 sslmode=verify-full sslrootcert={other}"
            )),
            "unknownissuer",
        ),
        (
            "verify-ca, unrelated CA",
            pg.conninfo(&format!(
                "host=127.0.0.1 sslmode=verify-ca sslrootcert={other}"
            )),
            "unknownissuer",
        ),
        (
            "require with an unrelated sslrootcert (libpq: verify-ca)",
            pg.conninfo(&format!(
                "host=127.0.0.1 sslmode=require sslrootcert={other}"
            )),
            "unknownissuer",
        ),
        (
            "verify-full, our CA, host=127.0.0.1 not in the certificate",
            pg.conninfo(&format!(
                "host=127.0.0.1 sslmode=verify-full sslrootcert={ca}"
            )),
            "not valid for name",
        ),
    ];
    for (case, conn, want) in &certificate_failures {
        let err = match tls::connect(conn).await {
            Ok(_) => {
                failures.push(format!("{case}: connected, should have been rejected"));
                continue;
            }
            Err(e) => e,
        };
        let text = error_chain(&err).to_ascii_lowercase();
        if !text.contains("certificate") || !text.contains(want) {
            failures.push(format!(
                "{case}: want a certificate error ({want}), got: {text}"
            ));
        }
        // A certificate the client rejects will be rejected again: stop, do not retry.
        if err.class() != ErrorClass::Fatal {
            failures.push(format!("{case}: class {} for: {text}", err.class()));
        }
    }

    // Plain TCP is refused by pg_hba (hostssl only): the successes above were over TLS.
    let conn = pg.conninfo("host=127.0.0.1 sslmode=disable");
    match tls::connect(&conn).await {
        Ok(_) => failures.push("disable: connected without TLS, pg_hba not in force".to_string()),
        Err(err) => {
            let db = match &err {
                TlsError::Connect { source, .. } => source.as_db_error(),
                _ => None,
            };
            let refused = db.is_some_and(|db| {
                db.code() == &SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                    && db.message().contains("no encryption")
            });
            if !refused || err.class() != ErrorClass::Fatal {
                let class = err.class();
                failures.push(format!(
                    "disable: want a pg_hba refusal (28000, fatal), got {class}: {}",
                    error_chain(&err)
                ));
            }
        }
    }

    // The replication client negotiates TLS itself (SSLRequest, then the same connector):
    // the same cases give the same answers.
    for (case, conn) in &succeed {
        if let Err(e) = replication_session(conn).await {
            failures.push(format!("replication, {case}: {e}"));
        }
    }
    for (case, conn, want) in &certificate_failures {
        match Session::connect(conn).await {
            Ok(_) => failures.push(format!(
                "replication, {case}: connected, should have failed"
            )),
            Err(err) => {
                let text = error_chain(&err).to_ascii_lowercase();
                if !text.contains(want) || err.class() != ErrorClass::Fatal {
                    let class = err.class();
                    failures.push(format!(
                        "replication, {case}: want a fatal certificate error ({want}), got \
                         {class}: {text}"
                    ));
                }
            }
        }
    }
    match Session::connect(&pg.conninfo("host=127.0.0.1 sslmode=disable")).await {
        Ok(_) => failures.push("replication, disable: connected without TLS".to_string()),
        Err(err) => {
            let refused = matches!(&err, ReplicationError::Server { code, .. } if code == "28000");
            if !refused || err.class() != ErrorClass::Fatal {
                let class = err.class();
                failures.push(format!(
                    "replication, disable: want a pg_hba refusal (28000, fatal), got {class}: {}",
                    error_chain(&err)
                ));
            }
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}\n{}",
        failures.len(),
        2 * (succeed.len() + certificate_failures.len() + 1),
        failures.join("\n"),
        pg.log_text()
    );
}
