//! Failures and what to do about them.
//!
//! Every error is classified, in `classify` (the one place that knows), as transient (retry
//! with backoff), definite (this table-segment cannot load as it is: stop the table) or fatal
//! (stop the process). [`RetryPolicy::run`] is the one retry loop: S3 uploads and Redshift loads
//! both go through it. Its backoff waits end early on the stop signal.

pub mod classify;

use std::future::Future;
use std::time::Duration;

pub use classify::{backoff, ErrorClass};

use crate::shutdown::Shutdown;

/// An error that knows its class.
pub trait Classified {
    fn class(&self) -> ErrorClass;
}

/// How often to try, and the stop signal that ends a backoff wait.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// `None`: transient errors are retried for as long as they last (Redshift loads: an outage
    /// must never drop a batch); `Some(n)`: give up after `n` attempts.
    pub max_attempts: Option<u32>,
    pub stop: Shutdown,
}

/// How [`RetryPolicy::run`] ended without success; each keeps the last error.
#[derive(Debug, thiserror::Error)]
pub enum RetryEnd<E: std::error::Error + 'static> {
    /// A definite or fatal error: not retried.
    #[error(transparent)]
    Failed(E),
    /// `max_attempts` ran out on transient errors.
    #[error("{last} (gave up after {attempts} attempts)")]
    GaveUp {
        attempts: u32,
        #[source]
        last: E,
    },
    /// The stop signal came during a backoff wait.
    #[error("{last} (not retried: stopping)")]
    Stopped {
        #[source]
        last: E,
    },
}

impl<E: std::error::Error + 'static> RetryEnd<E> {
    /// The last error, whatever ended the retries.
    pub fn into_last(self) -> E {
        match self {
            RetryEnd::Failed(e)
            | RetryEnd::GaveUp { last: e, .. }
            | RetryEnd::Stopped { last: e } => e,
        }
    }
}

impl RetryPolicy {
    /// Runs `attempt` until it succeeds, fails with an error that is not transient, runs out of
    /// attempts, or the stop signal comes while it waits. Before each backoff wait `on_retry`
    /// gets the attempt number, the wait and the error (to log and count it).
    pub async fn run<T, E, F, Fut>(
        &self,
        mut attempt: F,
        mut on_retry: impl FnMut(u32, Duration, &E),
    ) -> Result<T, RetryEnd<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classified + std::error::Error + 'static,
    {
        let mut n = 1u32;
        loop {
            let e = match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if e.class() != ErrorClass::Transient => return Err(RetryEnd::Failed(e)),
                Err(e) => e,
            };
            if self.max_attempts.is_some_and(|max| n >= max) {
                return Err(RetryEnd::GaveUp {
                    attempts: n,
                    last: e,
                });
            }
            let wait = backoff(n);
            on_retry(n, wait, &e);
            if self.stop.sleep(wait).await.is_err() {
                return Err(RetryEnd::Stopped { last: e });
            }
            n = n.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct E(ErrorClass);

    impl Classified for E {
        fn class(&self) -> ErrorClass {
            self.0
        }
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_and_never_retries_a_definite_error() {
        let policy = RetryPolicy {
            max_attempts: Some(2),
            stop: Shutdown::new(),
        };
        let calls = AtomicU32::new(0);
        let mut retries = 0;
        let r: Result<(), _> = policy
            .run(
                || async {
                    calls.fetch_add(1, Ordering::Relaxed);
                    Err(E(ErrorClass::Transient))
                },
                |_, _, _| retries += 1,
            )
            .await;
        assert!(matches!(r, Err(RetryEnd::GaveUp { attempts: 2, .. })));
        assert_eq!((calls.load(Ordering::Relaxed), retries), (2, 1));
        let r: Result<(), _> = policy
            .run(|| async { Err(E(ErrorClass::Definite)) }, |_, _, _| {})
            .await;
        assert!(matches!(r, Err(RetryEnd::Failed(E(ErrorClass::Definite)))));
    }

    #[tokio::test]
    async fn the_stop_signal_ends_a_backoff_wait() {
        let stop = Shutdown::new();
        let policy = RetryPolicy {
            max_attempts: None,
            stop: stop.clone(),
        };
        let r: Result<(), _> = tokio::time::timeout(
            Duration::from_secs(10),
            policy.run(
                || async { Err(E(ErrorClass::Transient)) },
                |n, _, _| {
                    if n == 3 {
                        stop.trigger();
                    }
                },
            ),
        )
        .await
        .expect("ends on the signal, not after the backoff");
        assert!(matches!(r, Err(RetryEnd::Stopped { .. })));
    }
}
