//! Telling systemd how the daemon is doing (`Type=notify` units, `systemd/re_dms.service`):
//! `READY=1` once the WAL is recovered and the replication slot is streaming, `STOPPING=1` when
//! the drain starts, `WATCHDOG=1` every half `WatchdogSec` while the pipeline is healthy, and a
//! `STATUS=` line for `systemctl status`. Without `NOTIFY_SOCKET` (not under systemd, `--stdin`,
//! tests) every call does nothing. A failed send is logged once, never fatal: the service
//! manager's opinion must not stop the data.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
