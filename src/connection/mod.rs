//! TLS for tokio-postgres connections to Redshift (and anything else speaking the protocol).
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

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::config::SslMode;
pub use tokio_postgres_rustls::MakeRustlsConnect;

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

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    Disable,
    Allow,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => TlsMode::Disable,
            "allow" => TlsMode::Allow,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            _ => return None,
        })
    }

    /// What tokio-postgres is told: whether to ask for TLS, and whether to insist.
    pub fn ssl_mode(self) -> SslMode {
        match self {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Allow | TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        }
    }
}

/// The TLS half of a connection string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsPolicy {
    pub mode: TlsMode,
    /// Extra trusted roots (PEM), from `sslrootcert`.
    pub root_cert: Option<PathBuf>,
}

impl TlsPolicy {
    /// Does this policy check the server's certificate?
    pub fn verifies(&self) -> bool {
        matches!(self.mode, TlsMode::VerifyCa | TlsMode::VerifyFull)
    }

    pub fn connector(&self) -> Result<MakeRustlsConnect, TlsError> {
        connector(self.mode, self.root_cert.as_deref())
    }
}

/// A rustls connector for `mode`; `ca_file` adds PEM roots to the platform's.
pub fn connector(mode: TlsMode, ca_file: Option<&Path>) -> Result<MakeRustlsConnect, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let config = match mode {
        TlsMode::VerifyFull => builder
            .with_root_certificates(root_store(ca_file)?)
            .with_no_client_auth(),
        TlsMode::VerifyCa => {
            let inner = WebPkiServerVerifier::builder_with_provider(
                Arc::new(root_store(ca_file)?),
                provider,
            )
            .build()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
                .with_no_client_auth()
        }
        // libpq semantics: `require` (and `prefer`/`allow` when TLS is used) encrypt the
        // connection but do not verify the server's certificate. Operators write
        // `sslmode=require` expecting exactly that; `verify-ca`/`verify-full` verify.
        // `disable` never uses the connector at all.
        TlsMode::Disable | TlsMode::Allow | TlsMode::Prefer | TlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertificateCheck { provider }))
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// The platform's roots plus those in `ca_file`.
fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (native_added, _) = roots.add_parsable_certificates(native.certs);
    if native_added == 0 && ca_file.is_none() {
        for e in &native.errors {
            tracing::warn!(error = %e, "loading the platform's CA certificates");
        }
    }
    if let Some(path) = ca_file {
        let ca_err = |message: String| TlsError::CaFile {
            path: path.to_path_buf(),
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| ca_err(e.to_string()))?;
        let mut reader = std::io::BufReader::new(file);
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut reader) {
            let cert = cert.map_err(|e| ca_err(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| ca_err(format!("not a usable CA certificate: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(ca_err("no PEM certificate in the file".to_string()));
        }
    }
    if roots.is_empty() {
        return Err(TlsError::Setup(
            "no trusted CA certificates: the platform has none (install ca-certificates) and no \
             sslrootcert was given"
                .to_string(),
        ));
    }
    Ok(roots)
}

/// `sslmode=require|prefer|allow`: accept any certificate (libpq does not verify in these modes),
/// but still check the handshake signatures so the session keys belong to that certificate.
#[derive(Debug)]
struct NoCertificateCheck {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NoCertificateCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Deliberately no verification: libpq `sslmode=require` semantics (see module docs).
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the host name is not checked.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            // webpki checks the chain before the name: a name mismatch means the chain is good.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

// ------------------------------------------------------------------------------ connection strings

/// Keys this module handles itself; the rest goes to tokio-postgres.
const TLS_KEYS: &[&str] = &["sslmode", "sslrootcert"];
/// libpq keys for client certificates, which this build does not support.
const UNSUPPORTED_KEYS: &[&str] = &["sslcert", "sslkey", "sslpassword", "sslcrl", "sslcrldir"];

fn is_url(conn: &str) -> bool {
    conn.starts_with("postgres://") || conn.starts_with("postgresql://")
}

/// Parses a libpq key=value string or a `postgres://` URL into a tokio-postgres config (with
/// `ssl_mode` set) and the TLS policy. Errors never contain the password.
pub fn parse_connection(conn: &str) -> Result<(tokio_postgres::Config, TlsPolicy), TlsError> {
    let perr = |message: String| TlsError::Parse {
        conn: redact(conn),
        message,
    };
    let (rest, tls_params) = if is_url(conn) {
        split_url(conn).map_err(perr)?
    } else {
        split_key_value(conn).map_err(perr)?
    };
    let mut mode = None;
    let mut root_cert = None;
    for (key, value) in tls_params {
        match key.as_str() {
            "sslmode" => {
                mode = Some(TlsMode::parse(&value).ok_or_else(|| {
                    perr(format!(
                        "sslmode `{value}`: expected disable, allow, prefer, require, verify-ca \
                         or verify-full"
                    ))
                })?)
            }
            "sslrootcert" => root_cert = Some(value),
            k if UNSUPPORTED_KEYS.contains(&k) => {
                return Err(perr(format!(
                    "`{k}`: client certificates are not supported"
                )))
            }
            _ => {}
        }
    }
    let mut policy = TlsPolicy {
        mode: mode.unwrap_or_default(),
        root_cert: None,
    };
    match root_cert.as_deref() {
        // libpq 16: the platform's roots, and verify-full is implied.
        Some("system") => {
            if mode.is_some_and(|m| m != TlsMode::VerifyFull) {
                return Err(perr(
                    "sslrootcert=system requires sslmode=verify-full (or no sslmode)".to_string(),
                ));
            }
            policy.mode = TlsMode::VerifyFull;
        }
        Some(path) => {
            policy.root_cert = Some(PathBuf::from(path));
            // libpq: "if a root CA file exists, sslmode=require behaves like verify-ca".
            if policy.mode == TlsMode::Require {
                policy.mode = TlsMode::VerifyCa;
            }
        }
        None => {}
    }
    let mut config = tokio_postgres::Config::from_str(&rest).map_err(|e| perr(e.to_string()))?;
    config.ssl_mode(policy.mode.ssl_mode());
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    Ok((config, policy))
}

type Split = (String, Vec<(String, String)>);
/// `(key, unescaped value, byte range of the raw value in the string)`.
type KeyValue<'a> = (&'a str, String, std::ops::Range<usize>);

/// Splits a key=value string into (the string without the TLS keys, the TLS keys).
fn split_key_value(conn: &str) -> Result<Split, String> {
    let mut rest = String::new();
    let mut tls = Vec::new();
    for (key, value, _) in key_value_pairs(conn)? {
        if TLS_KEYS.contains(&key) || UNSUPPORTED_KEYS.contains(&key) {
            tls.push((key.to_string(), value));
        } else {
            if !rest.is_empty() {
                rest.push(' ');
            }
            rest.push_str(key);
            rest.push_str("='");
            for c in value.chars() {
                if c == '\'' || c == '\\' {
                    rest.push('\\');
                }
                rest.push(c);
            }
            rest.push('\'');
        }
    }
    Ok((rest, tls))
}

/// `(key, unescaped value, byte range of the raw value)` for each `key = value` of a libpq
/// string, with libpq's quoting (`'...'`, backslash escapes).
fn key_value_pairs(conn: &str) -> Result<Vec<KeyValue<'_>>, String> {
    let bytes = conn.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        i = skip_ws(i);
        if i >= bytes.len() {
            return Ok(out);
        }
        let key_start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'=' {
            i += 1;
        }
        let key = &conn[key_start..i];
        i = skip_ws(i);
        if bytes.get(i) != Some(&b'=') {
            return Err(format!("missing `=` after `{key}`"));
        }
        i = skip_ws(i + 1);
        let value_start = i;
        let mut value = String::new();
        let quoted = bytes.get(i) == Some(&b'\'');
        if quoted {
            i += 1;
        }
        let mut closed = false;
        let mut chars = conn[i..].char_indices();
        while let Some((off, c)) = chars.next() {
            if quoted && c == '\'' {
                i += off + 1;
                closed = true;
                break;
            }
            if !quoted && c.is_whitespace() {
                i += off;
                closed = true;
                break;
            }
            if c == '\\' {
                if let Some((_, c2)) = chars.next() {
                    value.push(c2);
                }
            } else {
                value.push(c);
            }
        }
        if !closed {
            if quoted {
                return Err(format!("unterminated quoted value for `{key}`"));
            }
            i = conn.len();
        }
        if !quoted && value.is_empty() {
            return Err(format!("missing value for `{key}`"));
        }
        out.push((key, value, value_start..i));
    }
}

/// Splits a URL into (the URL without the TLS query parameters, the TLS parameters decoded).
fn split_url(conn: &str) -> Result<Split, String> {
    let Some((base, query)) = conn.split_once('?') else {
        return Ok((conn.to_string(), Vec::new()));
    };
    let mut kept = Vec::new();
    let mut tls = Vec::new();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = param
            .split_once('=')
            .ok_or_else(|| format!("query parameter without `=`: `{}`", redact_param(param)))?;
        let key_decoded = percent_decode(key)?;
        if TLS_KEYS.contains(&key_decoded.as_str())
            || UNSUPPORTED_KEYS.contains(&key_decoded.as_str())
        {
            tls.push((key_decoded, percent_decode(value)?));
        } else {
            kept.push(param);
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, tls))
}

fn redact_param(param: &str) -> &str {
    if param.to_ascii_lowercase().starts_with("password") {
        "password=***"
    } else {
        param
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` is not UTF-8 once decoded"))
}

/// The connection string with its password replaced by `***`: the only form that may be logged.
/// Works on key=value strings and URLs (`user:password@` and `?password=`); when the string
/// cannot be parsed, everything from `password` on is hidden.
pub fn redact(conn: &str) -> String {
    if is_url(conn) {
        let (base, query) = match conn.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (conn, None),
        };
        let scheme_end = base.find("://").map_or(0, |i| i + 3);
        let mut out = String::with_capacity(conn.len());
        match base.rfind('@').filter(|&at| at >= scheme_end) {
            Some(at) => {
                let creds = &base[scheme_end..at];
                out.push_str(&base[..scheme_end]);
                match creds.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    None => out.push_str(creds),
                }
                out.push_str(&base[at..]);
            }
            None => out.push_str(base),
        }
        if let Some(query) = query {
            out.push('?');
            let params: Vec<&str> = query.split('&').map(redact_param).collect();
            out.push_str(&params.join("&"));
        }
        return out;
    }
    match key_value_pairs(conn) {
        Ok(pairs) => {
            let mut out = conn.to_string();
            for (key, _, range) in pairs.iter().rev() {
                if *key == "password" {
                    out.replace_range(range.clone(), "***");
                }
            }
            out
        }
        Err(_) => match conn.to_ascii_lowercase().find("password") {
            Some(at) => format!("{}password=***", &conn[..at]),
            None => conn.to_string(),
        },
    }
}

/// `user@host:port/dbname` of a parsed config, for messages.
pub fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
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
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(target_db = %target, error = %e, "database connection ended with an error");
        }
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::ErrorClass;

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
