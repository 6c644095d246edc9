//! The stop signal: one per process, set by SIGTERM/SIGINT (or a fatal error), seen by every
//! stage. Threads poll [`Shutdown::is_triggered`] between units of work; async waits race
//! [`Shutdown::wait`] so that no network wait outlives a stop request.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Shutdown {
    flag: AtomicBool,
    notify: Notify,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks everything to stop (idempotent).
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Completes once [`Self::trigger`] was called (at once if it already was). Cancel-safe.
    pub async fn wait(&self) {
        loop {
            // Registered before the check, so a trigger between the two is not missed.
            let notified = self.notify.notified();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn wait_returns_after_trigger_and_at_once_when_triggered() {
        let s = Arc::new(Shutdown::new());
        let waiter = tokio::spawn({
            let s = Arc::clone(&s);
            async move { s.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        s.trigger();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), s.wait())
            .await
            .expect("already triggered");
    }
}
