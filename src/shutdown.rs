//! The stop signal: one per process, set by SIGTERM/SIGINT (or by a fatal error), seen by every
//! stage and every wait.
//!
//! One signal, three ways to wait on it:
//! - async code races [`Shutdown::wait`] (a `tokio_util` cancellation token) against whatever it
//!   waits for: a connection, a statement, a lane queue;
//! - backoff sleeps use [`Shutdown::sleep`], which ends early on the signal;
//! - threads that wait on a channel add [`Shutdown::receiver`] to their `crossbeam_channel::select!`:
//!   it becomes ready (disconnected) when the signal is set, so no thread polls a flag.
//!
//! After the signal the pipeline drains: stages finish what is in flight and stop, within
//! [`DRAIN_GRACE`] of the signal ([`Shutdown::drain_deadline`]); what is not loaded by then stays
//! in the WAL for the next start.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long the drain phase after a stop signal may take before what is still in flight is
/// abandoned (an abandoned Redshift transaction rolls back; its segment stays in the WAL).
pub const DRAIN_GRACE: Duration = Duration::from_secs(20);

/// How often the drain phase names the stages it still waits for.
pub const DRAIN_REPORT_EVERY: Duration = Duration::from_secs(5);

/// The stop signal. Clones share it.
#[derive(Debug, Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    token: CancellationToken,
    /// Cancelled by [`Shutdown::request`]: the stop was asked for (SIGTERM/SIGINT), not set
    /// after a failure.
    requested: CancellationToken,
    /// Dropped on the signal: every clone of `closed` then reads as disconnected.
    open: Mutex<Option<Sender<()>>>,
    closed: Receiver<()>,
    at: OnceLock<Instant>,
}

/// A wait that ended because of the stop signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped by the shutdown signal")]
pub struct Stopped;

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (open, closed) = crossbeam_channel::bounded(0);
        Self {
            inner: Arc::new(Inner {
                token: CancellationToken::new(),
                requested: CancellationToken::new(),
                open: Mutex::new(Some(open)),
                closed,
                at: OnceLock::new(),
            }),
        }
    }

    /// Asks everything to stop (idempotent; the first call starts the drain clock).
    pub fn trigger(&self) {
        self.inner.at.get_or_init(Instant::now);
        self.inner
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.inner.token.cancel();
    }

    /// A stop asked for from outside (SIGTERM/SIGINT): triggers, and is remembered as such.
    pub fn request(&self) {
        self.inner.requested.cancel();
        self.trigger();
    }

    /// Completes once [`Self::request`] was called. Cancel-safe.
    pub async fn requested(&self) {
        self.inner.requested.cancelled().await;
    }

    pub fn is_requested(&self) -> bool {
        self.inner.requested.is_cancelled()
    }

    pub fn is_triggered(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// Completes once [`Self::trigger`] was called (at once if it already was). Cancel-safe.
    pub async fn wait(&self) {
        self.inner.token.cancelled().await;
    }

    /// For `crossbeam_channel::select!` in threads: ready (disconnected) once the signal is set.
    pub fn receiver(&self) -> &Receiver<()> {
        &self.inner.closed
    }

    /// Sleeps for `d`, or less when the signal comes first.
    pub async fn sleep(&self, d: Duration) -> Result<(), Stopped> {
        tokio::select! {
            biased;
            () = self.wait() => Err(Stopped),
            () = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// When the drain phase ends: [`DRAIN_GRACE`] after the signal; `None` before it.
    pub fn drain_deadline(&self) -> Option<Instant> {
        self.inner.at.get().map(|at| *at + DRAIN_GRACE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_requested_stop_is_told_apart_from_one_after_a_failure() {
        let s = Shutdown::new();
        s.trigger();
        assert!(s.is_triggered() && !s.is_requested());
        let asked = tokio::spawn({
            let s = s.clone();
            async move { s.requested().await }
        });
        tokio::task::yield_now().await;
        assert!(!asked.is_finished(), "a failure's stop is not a request");
        s.request();
        tokio::time::timeout(Duration::from_secs(5), asked)
            .await
            .expect("the request wakes its waiters")
            .unwrap();
        assert!(s.is_requested());
    }

    #[tokio::test]
    async fn wait_returns_after_trigger_and_at_once_when_triggered() {
        let s = Shutdown::new();
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert!(s.drain_deadline().is_none());
        s.trigger();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), s.wait())
            .await
            .expect("already triggered");
        assert!(s.drain_deadline().is_some());
    }

    #[test]
    fn a_thread_selecting_on_the_receiver_wakes_on_the_signal() {
        let s = Shutdown::new();
        let (_keep, never) = crossbeam_channel::bounded::<u8>(1);
        let t = std::thread::spawn({
            let s = s.clone();
            move || {
                crossbeam_channel::select! {
                    recv(never) -> _ => "input",
                    recv(s.receiver()) -> _ => "stopped",
                }
            }
        });
        s.trigger();
        assert_eq!(t.join().unwrap(), "stopped");
    }

    #[tokio::test]
    async fn sleep_ends_early_on_the_signal() {
        let s = Shutdown::new();
        s.trigger();
        let r = tokio::time::timeout(Duration::from_secs(5), s.sleep(Duration::from_secs(3600)))
            .await
            .expect("not the whole hour");
        assert_eq!(r, Err(Stopped));
    }
}
