//! Telling systemd how the daemon is doing (`Type=notify` units, `systemd/re_dms.service`):
//! `READY=1` once the WAL is recovered and the replication slot is streaming, `STOPPING=1` when
//! the drain starts, `WATCHDOG=1` every half `WatchdogSec` while the pipeline is healthy, and a
//! `STATUS=` line for `systemctl status`. Without `NOTIFY_SOCKET` (not under systemd, `--stdin`,
//! tests) every call does nothing. A failed send is logged once, never fatal: the service
//! manager's opinion must not stop the data. Also the in-place restart ([`exec_again`]) for
//! errors only a new start recovers from, which systemd must not count as failures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sd_notify::NotifyState;

static READY_SENT: AtomicBool = AtomicBool::new(false);
static SEND_FAILED: AtomicBool = AtomicBool::new(false);

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        if !SEND_FAILED.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET); going on without");
        }
    }
}

/// `READY=1` with `status`, the first time only (a reconnection is not a new start).
pub fn ready(status: &str) {
    if !READY_SENT.swap(true, Ordering::AcqRel) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }
}

/// `STOPPING=1`: the drain phase starts (sent by the signal handler, before the stop signal,
/// so it is out before the process can end).
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// A `STATUS=` line (what `systemctl status` shows).
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// When the unit sets `WatchdogSec=` (`WATCHDOG_USEC`): a task that sends `WATCHDOG=1` every
/// half period while `healthy()` holds, until the process ends (the drain included:
/// `TimeoutStopSec` bounds that). A process whose runtime no longer turns stops the pings, and
/// systemd restarts it.
pub fn spawn_watchdog(healthy: impl Fn() -> bool + Send + 'static) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    tracing::info!(
        period_ms = period.as_millis() as u64,
        "systemd watchdog enabled"
    );
    let every = (period / 2).max(Duration::from_millis(100));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if healthy() {
                send(&[NotifyState::Watchdog]);
            }
        }
    });
}

/// In-place restarts in a row, as the restarted process sees them.
const RESTARTS_ENV: &str = "RE_DMS_RESTARTS";
/// When the last in-place restart was (Unix seconds).
const RESTARTED_AT_ENV: &str = "RE_DMS_RESTARTED_AT";
/// A run this long since the last in-place restart starts the backoff over.
pub const RESTART_RESET: Duration = Duration::from_secs(600);
/// Longest wait before an in-place restart (1 s, 2 s, 4 s, ... up to this).
pub const RESTART_BACKOFF_CAP: Duration = Duration::from_secs(30);
/// In-place restarts in a row (each within [`RESTART_RESET`] of the last) before the error ends
/// the process instead: about 3.5 minutes of waits.
pub const MAX_RESTARTS_IN_A_ROW: u32 = 10;

/// How long to wait before in-place restart number `n + 1` of a row.
pub fn restart_backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.min(6)).min(RESTART_BACKOFF_CAP)
}

/// In-place restarts in a row before this one: the count the last one passed on, or 0 when
/// there was none or it was more than [`RESTART_RESET`] ago (`now` and `at` in Unix seconds).
pub fn restarts_in_a_row(count: Option<&str>, at: Option<&str>, now: u64) -> u32 {
    let (Some(count), Some(at)) = (
        count.and_then(|c| c.parse::<u32>().ok()),
        at.and_then(|a| a.parse::<u64>().ok()),
    ) else {
        return 0;
    };
    if now.saturating_sub(at) > RESTART_RESET.as_secs() {
        0
    } else {
        count
    }
}

/// In-place restarts in a row before an error only a new start recovers from, or `None` when
/// [`MAX_RESTARTS_IN_A_ROW`] were made already (the error then ends the process, and systemd's
/// restart and start limit take over: an error that comes back every time must surface).
pub fn restart_budget() -> Option<u32> {
    let n = restarts_so_far();
    (n < MAX_RESTARTS_IN_A_ROW).then_some(n)
}

/// In-place restarts in a row that led to this process, as the environment says now.
pub fn restarts_so_far() -> u32 {
    restarts_in_a_row(
        std::env::var(RESTARTS_ENV).ok().as_deref(),
        std::env::var(RESTARTED_AT_ENV).ok().as_deref(),
        unix_now(),
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Set by SIGTERM/SIGINT in the signal handler itself ([`watch_stop_signals`]), so a signal is
/// seen even when it comes after the runtime that listens for it has ended.
static STOP_SIGNALLED: LazyLock<Arc<AtomicBool>> = LazyLock::new(Arc::default);
/// Set by [`exec_again`] before its last look at [`STOP_SIGNALLED`]: from then on a SIGTERM or
/// SIGINT ends the process at once (their default action).
static EXEC_UNDER_WAY: LazyLock<Arc<AtomicBool>> = LazyLock::new(Arc::default);

/// Records every SIGTERM/SIGINT from now on, beside the runtime's own listener, for
/// [`exec_again`]. A failed registration is logged; the restart then relies on the runtime alone.
pub fn watch_stop_signals() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for signal in [SIGTERM, SIGINT] {
        // In this order: the flag is set before the handler looks at EXEC_UNDER_WAY.
        let registered =
            signal_hook::flag::register(signal, Arc::clone(&STOP_SIGNALLED)).and_then(|_| {
                signal_hook::flag::register_conditional_default(signal, Arc::clone(&EXEC_UNDER_WAY))
            });
        if let Err(e) = registered {
            tracing::warn!(signal, error = %e, "cannot watch for stop signals");
        }
    }
}

/// Whether a SIGTERM/SIGINT came since [`watch_stop_signals`]: the runtime's listener asks once
/// it is registered, so a signal between the two is not lost.
pub fn stop_signalled() -> bool {
    STOP_SIGNALLED.load(Ordering::SeqCst)
}

/// What [`exec_again`] did when it returned.
#[derive(Debug)]
pub enum NotRestarted {
    /// A SIGTERM/SIGINT came first: stop instead (recovery runs at the next start).
    StopSignalled,
    /// `execve` failed.
    Failed(std::io::Error),
}

/// Starts this program again in this process, as in-place restart number `n + 1` of a row:
/// `execve` of `/proc/self/exe` with the same arguments. The PID stays, so systemd sees its main
/// process keep running (these restarts never reach the unit's start limit), and everything else
/// starts over as after kill -9 (files and sockets are close-on-exec). Returns only when it did
/// not restart.
///
/// A stop signal is not lost on the way: once it is under way, a SIGTERM/SIGINT ends the
/// process (systemd takes that as stopped; the WAL is as safe as after kill -9), and one that
/// came before makes this stop instead ([`watch_stop_signals`] records both in the handler).
pub fn exec_again(n: u32) -> NotRestarted {
    use std::os::unix::process::CommandExt;
    // Sequentially consistent, as the handler's: if the load below misses a signal, that
    // signal's handler sees this store and ends the process.
    EXEC_UNDER_WAY.store(true, Ordering::SeqCst);
    if STOP_SIGNALLED.load(Ordering::SeqCst) {
        return NotRestarted::StopSignalled;
    }
    let mut args = std::env::args_os();
    let error = std::process::Command::new("/proc/self/exe")
        .arg0(args.next().unwrap_or_default())
        .args(args)
        .env(RESTARTS_ENV, (n + 1).to_string())
        .env(RESTARTED_AT_ENV, unix_now().to_string())
        .exec();
    NotRestarted::Failed(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_and_start_over_after_a_long_run() {
        let waits: Vec<u64> = (0..8).map(|n| restart_backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(restarts_in_a_row(None, None, 1000), 0);
        assert_eq!(restarts_in_a_row(Some("3"), Some("900"), 1000), 3);
        assert_eq!(
            restarts_in_a_row(Some("3"), Some("400"), 1000),
            3,
            "600 s ago"
        );
        assert_eq!(
            restarts_in_a_row(Some("3"), Some("399"), 1000),
            0,
            "601 s ago"
        );
        assert_eq!(restarts_in_a_row(Some("x"), Some("900"), 1000), 0);
        assert_eq!(restarts_in_a_row(Some("3"), None, 1000), 0);
    }

    #[test]
    fn a_stop_signal_before_the_exec_stops_instead_of_restarting() {
        // Should exec_again ever exec here, the new image (this test binary again) fails at
        // once instead of exec'ing again for ever.
        assert!(
            std::env::var_os(RESTARTS_ENV).is_none(),
            "exec_again restarted the process despite a stop signal"
        );
        watch_stop_signals();
        assert!(!STOP_SIGNALLED.load(Ordering::SeqCst));
        signal_hook::low_level::raise(signal_hook::consts::SIGTERM).unwrap();
        assert!(STOP_SIGNALLED.load(Ordering::SeqCst));
        // Without the flag this would exec this test binary (a restart of the whole run).
        assert!(matches!(exec_again(0), NotRestarted::StopSignalled));
    }
}
