//! Retries: transient S3 errors are retried with capped, jittered exponential backoff, each
//! retry logged and counted.

use super::{UploadError, Uploader};
use crate::metrics;
use crate::retry::classify::{backoff, ErrorClass};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::Client;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

impl Uploader {
    pub(super) fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.options.max_attempts,
        }
    }

    /// One request, retried per `policy`, each attempt holding a concurrency permit.
    pub(super) async fn call<T, E, F, Fut>(
        &self,
        policy: RetryPolicy,
        op: &'static str,
        key: &str,
        retries: &AtomicU32,
        request: F,
    ) -> Result<T, UploadError>
    where
        F: Fn(&Client) -> Fut,
        Fut: Future<Output = Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        retry(policy, op, key, retries, || async {
            let _permit = self.permit().await;
            let result = request(&self.client).await;
            result.map_err(|e| UploadError::s3(op, &self.bucket, key, &e))
        })
        .await
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct RetryPolicy {
    pub(super) max_attempts: Option<u32>,
}

/// Runs `attempt` until it succeeds, fails with a non-transient error, or `max_attempts` runs out.
pub(super) async fn retry<T, F, Fut>(
    policy: RetryPolicy,
    what: &str,
    key: &str,
    retries: &AtomicU32,
    mut attempt: F,
) -> Result<T, UploadError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, UploadError>>,
{
    let mut n = 1u32;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if e.class() == ErrorClass::Transient => {
                if policy.max_attempts.is_some_and(|max| n >= max) {
                    return Err(UploadError::GaveUp {
                        attempts: n,
                        last: Box::new(e),
                    });
                }
                let delay = backoff(n);
                tracing::warn!(
                    op = what,
                    key,
                    attempt = n,
                    retry_in_ms = delay.as_millis() as u64,
                    error = %e,
                    "S3 request failed; retrying"
                );
                metrics::S3_RETRIES.inc();
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(delay).await;
                n = n.saturating_add(1);
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retry_gives_up_and_counts() {
        let retries = AtomicU32::new(0);
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy {
            max_attempts: Some(2),
        };
        let r: Result<(), _> = retry(policy, "TEST", "k", &retries, || async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(UploadError::S3 {
                op: "Test",
                bucket: "b".into(),
                key: "k".into(),
                class: ErrorClass::Transient,
                status: Some(503),
                code: Some("SlowDown".into()),
                detail: "slow down".into(),
            })
        })
        .await;
        assert!(matches!(r, Err(UploadError::GaveUp { attempts: 2, .. })));
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        assert_eq!(retries.load(Ordering::Relaxed), 1);
        // Non-transient errors are not retried.
        let r: Result<(), _> = retry(policy, "TEST", "k", &retries, || async {
            Err(UploadError::Config("nope".into()))
        })
        .await;
        assert!(matches!(r, Err(UploadError::Config(_))));
        assert_eq!(retries.load(Ordering::Relaxed), 1);
    }
}
