//! Connection strings: a libpq key=value string or a `postgres://` URL, parsed into a
//! tokio-postgres config plus the TLS policy; redacted for messages (never a password).

use std::path::PathBuf;
use std::str::FromStr;

use super::tls::{TlsMode, TlsPolicy};
use super::{TlsError, DEFAULT_CONNECT_TIMEOUT};

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
