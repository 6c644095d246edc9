//! Reporting to Sentry (cargo feature `sentry`, on by default): panics, a fatal error that ends
//! the process, and a table stopping on a definite error, each once, tagged with `table` /
//! `segment` where there is one and the release (`re_dms@<version>`).
//!
//! The DSN is `[sentry] dsn`, else `$SENTRY_DSN`; with neither, or a DSN Sentry's client cannot
//! parse (a warning), nothing is sent and nothing else changes. What leaves the process is
//! scrubbed first ([`scrub`]): connection passwords, AWS keys, and every quoted literal (where a
//! database error puts a value: `invalid input syntax for type integer: "abc"`) are replaced;
//! breadcrumbs, request data and user details are never sent. Row values therefore never leave
//! the process, and neither do passwords or keys.

/// Keeps the client alive (and flushes it when dropped, at exit).
pub struct Guard {
    #[cfg(feature = "sentry")]
    _client: Option<sentry::ClientInitGuard>,
}

/// How long the exit waits for reports still in flight.
pub const FLUSH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts reporting when a DSN is set (see the module docs). Call once, first thing in `main`.
#[cfg(feature = "sentry")]
pub fn init(config: &crate::config::SentryConfig) -> Guard {
    let dsn = if config.dsn.trim().is_empty() {
        std::env::var("SENTRY_DSN").unwrap_or_default()
    } else {
        config.dsn.clone()
    };
    if dsn.trim().is_empty() {
        return Guard { _client: None };
    }
    let dsn = match dsn.trim().parse::<sentry::types::Dsn>() {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "sentry.dsn (or SENTRY_DSN) is not a DSN: not reporting to Sentry");
            return Guard { _client: None };
        }
    };
    let mut options = sentry::ClientOptions::default();
    options.dsn = Some(dsn);
    options.release = Some(format!("re_dms@{}", env!("CARGO_PKG_VERSION")).into());
    options.environment =
        (!config.environment.is_empty()).then(|| config.environment.clone().into());
    options.send_default_pii = false;
    options.max_breadcrumbs = 0;
    options.shutdown_timeout = FLUSH_DEADLINE;
    options.before_send = Some(std::sync::Arc::new(|mut event| {
        scrub_event(&mut event);
        Some(event)
    }));
    Guard {
        _client: Some(sentry::init(options)),
    }
}

#[cfg(not(feature = "sentry"))]
pub fn init(_config: &crate::config::SentryConfig) -> Guard {
    Guard {}
}

#[cfg(feature = "sentry")]
fn scrub_event(event: &mut sentry::protocol::Event<'static>) {
    if let Some(m) = event.message.take() {
        event.message = Some(scrub(&m));
    }
    if let Some(l) = event.logentry.as_mut() {
        l.message = scrub(&l.message);
        l.params.clear();
    }
    for e in event.exception.values.iter_mut() {
        if let Some(v) = e.value.take() {
            e.value = Some(scrub(&v));
        }
    }
    event.breadcrumbs.values.clear();
    event.request = None;
    event.user = None;
    event.extra.clear();
}

/// A table stopped on a definite error: one report per table per process.
pub fn table_stopped(table: &str, segment: u64, error: &str) {
    #[cfg(feature = "sentry")]
    {
        static SENT: std::sync::Mutex<Option<std::collections::BTreeSet<String>>> =
            std::sync::Mutex::new(None);
        let mut sent = SENT.lock().unwrap_or_else(|p| p.into_inner());
        if !sent
            .get_or_insert_with(Default::default)
            .insert(table.to_string())
        {
            return;
        }
        sentry::with_scope(
            |scope| {
                scope.set_tag("table", table);
                scope.set_tag("segment", segment);
                scope.set_tag("kind", "table_stopped");
            },
            || {
                sentry::capture_message(
                    &format!("table {table} stopped: {error}"),
                    sentry::Level::Error,
                )
            },
        );
    }
    #[cfg(not(feature = "sentry"))]
    let _ = (table, segment, error);
}

/// The error that ends the process (once: the process ends).
pub fn fatal(error: &str) {
    #[cfg(feature = "sentry")]
    sentry::with_scope(
        |scope| scope.set_tag("kind", "fatal"),
        || sentry::capture_message(&format!("re_dms stopped: {error}"), sentry::Level::Fatal),
    );
    #[cfg(not(feature = "sentry"))]
    let _ = error;
}

/// `text` without what must not leave the process: the contents of every `'...'` and `"..."`
/// literal (values in database errors), `password=...` values of connection strings, the
/// password of URLs, AWS access key ids and secrets.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' || c == '"' {
            out.push(c);
            out.push('…');
            for d in chars.by_ref() {
                if d == c {
                    out.push(d);
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    hide_passwords(&out)
        .split_inclusive(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .map(|word| {
            let bare = word.trim_end_matches(|c: char| c.is_whitespace() || c == ',' || c == ';');
            let tail = &word[bare.len()..];
            if looks_like_key(bare) {
                format!("***{tail}")
            } else if let Some(at) = url_password(bare) {
                format!("{}***{}{tail}", &bare[..at.0], &bare[at.1..])
            } else {
                word.to_string()
            }
        })
        .collect()
}

/// `password = value` (any case, spaces around `=` or not) with the value replaced.
fn hide_passwords(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    while let Some(found) = lower[from..].find("password") {
        let key_end = from + found + "password".len();
        let rest = &text[key_end..];
        let eq = rest.len() - rest.trim_start().len();
        if !rest[eq..].starts_with('=') {
            out.push_str(&text[from..key_end]);
            from = key_end;
            continue;
        }
        let after_eq = key_end + eq + 1;
        let value = &text[after_eq..];
        let spaces = value.len() - value.trim_start().len();
        let start = after_eq + spaces;
        let end = start
            + text[start..]
                .find(|c: char| c.is_whitespace() || c == ',' || c == ';')
                .unwrap_or(text.len() - start);
        out.push_str(&text[from..start]);
        out.push_str("***");
        from = end;
    }
    out.push_str(&text[from..]);
    out
}

/// An AWS access key id (`AKIA…`, `ASIA…`) or a 40-character secret-looking token.
fn looks_like_key(word: &str) -> bool {
    let alnum = |w: &str| {
        w.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '/' || c == '+')
    };
    ((word.starts_with("AKIA") || word.starts_with("ASIA"))
        && word.len() >= 16
        && word
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
        || (word.len() == 40 && alnum(word))
}

/// The byte range of the password in `scheme://user:password@host`.
fn url_password(word: &str) -> Option<(usize, usize)> {
    let after_scheme = word.find("://")? + 3;
    let at = after_scheme + word[after_scheme..].find('@')?;
    let colon = after_scheme + word[after_scheme..at].find(':')? + 1;
    Some((colon, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_passwords_keys_and_values() {
        let s = scrub(
            "connect host=h password=hunter2 user=u PASSWORD = other: invalid input syntax for type integer: \"abc\" \
             at 'row value'; COPY ... ACCESS_KEY_ID 'AKIAABCDEFGHIJKLMNOP' key AKIAABCDEFGHIJKLMNOP, \
             wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY postgres://u:pw@h/db",
        );
        for secret in [
            "hunter2",
            "other",
            "abc",
            "row value",
            "AKIAABCDEFGHIJKLMNOP",
            "wJalrXUtnFEMI",
            ":pw@",
        ] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
        assert!(s.contains("invalid input syntax for type integer"), "{s}");
        assert!(s.contains("postgres://u:***@h/db"), "{s}");
    }
}
