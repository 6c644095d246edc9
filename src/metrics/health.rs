//! What `/healthz` answers: healthy unless a table is stopped, the oldest unloaded WAL segment
//! is older than `[metrics] healthz_max_segment_age_secs`, or the live source read nothing (not
//! even a keepalive, which PostgreSQL sends at least every `wal_sender_timeout / 2`) for
//! `[metrics] source_silent_secs`: the server unreachable, or ingest not taking input (a stuck
//! disk), since the source reads only when ingest has room.
//!
//! The stages report into one process-wide [`Health`]; [`spawn_wal_sampler`] measures the WAL
//! directory every few seconds (the truth on disk: what is there is not loaded yet) and sets the
//! WAL gauges from it too.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use super::{TABLES_STOPPED_NOW, WAL_OLDEST_UNLOADED_AGE, WAL_PENDING_BYTES, WAL_PENDING_SEGMENTS};
use crate::shutdown::Shutdown;

/// How often the WAL directory is measured.
pub const WAL_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// The process's health as the stages report it.
#[derive(Debug, Default)]
pub struct Health {
    /// Stopped target tables and why.
    stopped: Mutex<BTreeMap<String, String>>,
    /// Milliseconds since [`epoch`] when the live source last read a message; 0: no live source.
    source_heard_ms: AtomicU64,
    /// Seconds since the oldest unloaded sealed segment was sealed, as last measured.
    oldest_unloaded_secs: AtomicU64,
}

static HEALTH: OnceLock<Health> = OnceLock::new();
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The process's [`Health`].
pub fn health() -> &'static Health {
    HEALTH.get_or_init(Health::default)
}

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Health {
    /// A target table stopped by a definite error.
    pub fn table_stopped(&self, table: &str, error: &str) {
        let mut stopped = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        stopped.insert(table.to_string(), error.to_string());
        TABLES_STOPPED_NOW.set(stopped.len() as f64);
    }

    /// The live source read a message from the server (data or keepalive), or connected.
    pub fn source_heard(&self) {
        self.source_heard_ms.store(now_ms(), Ordering::Relaxed);
    }

    fn set_oldest_unloaded(&self, secs: u64) {
        self.oldest_unloaded_secs.store(secs, Ordering::Relaxed);
    }

    /// `Ok` with a one-line summary, or every reason it is not healthy.
    pub fn check(&self, limits: &HealthLimits) -> Result<String, Vec<String>> {
        let mut problems = Vec::new();
        for (table, error) in self
            .stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            problems.push(format!("table {table} stopped: {error}"));
        }
        let oldest = self.oldest_unloaded_secs.load(Ordering::Relaxed);
        if oldest > limits.segment_age.as_secs() {
            problems.push(format!(
                "the oldest unloaded WAL segment was sealed {oldest} s ago (limit {} s)",
                limits.segment_age.as_secs()
            ));
        }
        let heard = self.source_heard_ms.load(Ordering::Relaxed);
        if heard > 0 {
            let silent = Duration::from_millis(now_ms().saturating_sub(heard));
            if silent > limits.source_silent {
                problems.push(format!(
                    "the source sent nothing for {} s (limit {} s): unreachable, or re_dms not taking input",
                    silent.as_secs(),
                    limits.source_silent.as_secs()
                ));
            }
        }
        if problems.is_empty() {
            Ok(format!("ok: oldest unloaded segment {oldest} s"))
        } else {
            Err(problems)
        }
    }
}

/// The thresholds of [`Health::check`] (`[metrics]`).
#[derive(Debug, Clone, Copy)]
pub struct HealthLimits {
    pub segment_age: Duration,
    pub source_silent: Duration,
}

/// What the WAL directory holds: segments (the open one included) and their bytes, and the age
/// of the oldest sealed one (every segment but the newest is sealed; a sealed segment is only
/// ever deleted, never written again, so its modification time is when it was sealed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalBacklog {
    pub segments: u64,
    pub bytes: u64,
    pub oldest_sealed_age: Duration,
}

/// Measures `dir` (see [`WalBacklog`]).
pub fn wal_backlog(dir: &std::path::Path) -> Result<WalBacklog, crate::wal::WalError> {
    let ids = crate::wal::segment_ids(dir)?;
    let mut backlog = WalBacklog {
        segments: ids.len() as u64,
        ..WalBacklog::default()
    };
    let now = SystemTime::now();
    for (i, id) in ids.iter().enumerate() {
        let path = dir.join(crate::wal::segment::segment_file_name(*id));
        // A segment deleted meanwhile (loaded) is simply not counted.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        backlog.bytes += meta.len();
        if i == 0 && ids.len() > 1 {
            let sealed = meta.modified().unwrap_or(now);
            backlog.oldest_sealed_age = now.duration_since(sealed).unwrap_or_default();
        }
    }
    Ok(backlog)
}

/// Measures the WAL directory every [`WAL_SAMPLE_EVERY`] until the stop signal: the WAL
/// gauges and the health's oldest-segment age.
pub fn spawn_wal_sampler(dir: PathBuf, stop: Shutdown) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WAL_SAMPLE_EVERY);
        loop {
            tokio::select! {
                biased;
                // Stopping: the figures no longer matter.
                () = stop.wait() => return,
                // Measure (a few stat calls, off the runtime's threads).
                _ = tick.tick() => {
                    let d = dir.clone();
                    let Ok(Ok(b)) = tokio::task::spawn_blocking(move || wal_backlog(&d)).await else {
                        continue;
                    };
                    WAL_PENDING_SEGMENTS.set(b.segments as f64);
                    WAL_PENDING_BYTES.set(b.bytes as f64);
                    WAL_OLDEST_UNLOADED_AGE.set(b.oldest_sealed_age.as_secs_f64());
                    health().set_oldest_unloaded(b.oldest_sealed_age.as_secs());
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhealthy_for_each_reason_and_healthy_without() {
        let limits = HealthLimits {
            segment_age: Duration::from_secs(60),
            source_silent: Duration::from_secs(1),
        };
        let h = Health::default();
        assert!(h.check(&limits).is_ok());
        h.set_oldest_unloaded(61);
        let problems = h.check(&limits).unwrap_err();
        assert!(problems[0].contains("61 s"), "{problems:?}");
        h.set_oldest_unloaded(0);
        h.table_stopped("public.t", "a row was rejected");
        let problems = h.check(&limits).unwrap_err();
        assert_eq!(problems, ["table public.t stopped: a row was rejected"]);
    }

    #[test]
    fn a_silent_source_is_unhealthy() {
        let limits = HealthLimits {
            segment_age: Duration::from_secs(60),
            source_silent: Duration::from_millis(0),
        };
        let h = Health::default();
        h.source_heard();
        std::thread::sleep(Duration::from_millis(5));
        let problems = h.check(&limits).unwrap_err();
        assert!(
            problems[0].contains("the source sent nothing"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_backlog_counts_segments_and_the_oldest_sealed_one() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(wal_backlog(dir.path()).unwrap(), WalBacklog::default());
        for (id, len) in [(3u64, 10usize), (4, 5)] {
            let path = dir.path().join(crate::wal::segment::segment_file_name(id));
            std::fs::write(path, vec![0u8; len]).unwrap();
        }
        let b = wal_backlog(dir.path()).unwrap();
        assert_eq!((b.segments, b.bytes), (2, 15));
        assert!(b.oldest_sealed_age < Duration::from_secs(60));
    }
}
