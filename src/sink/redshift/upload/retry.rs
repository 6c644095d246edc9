//! S3 requests through the one retry policy ([`crate::retry::RetryPolicy`]): transient errors
//! are retried with capped, jittered exponential backoff, each retry logged and counted.

use super::{UploadError, Uploader};
use crate::metrics;
use crate::retry::{RetryEnd, RetryPolicy};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::Client;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};

impl Uploader {
    /// The policy of data uploads (`max_attempts` from the options).
    pub(super) fn policy(&self) -> RetryPolicy {
        self.policy_with(self.options.max_attempts)
    }

    pub(super) fn policy_with(&self, max_attempts: Option<u32>) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            stop: self.options.stop.clone(),
        }
    }

    /// One request, retried per `policy`, each attempt holding a concurrency permit.
    pub(super) async fn call<T, E, F, Fut>(
        &self,
        policy: &RetryPolicy,
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

/// Runs `attempt` per `policy`; each retry is logged, added to `re_dms_s3_retries_total` and to
/// `retries`.
pub(super) async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    key: &str,
    retries: &AtomicU32,
    attempt: F,
) -> Result<T, UploadError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, UploadError>>,
{
    let on_retry = |n: u32, delay: std::time::Duration, e: &UploadError| {
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
    };
    policy
        .run(attempt, on_retry)
        .await
        .map_err(|end| match end {
            RetryEnd::Failed(e) => e,
            RetryEnd::GaveUp { attempts, last } => UploadError::GaveUp {
                attempts,
                last: Box::new(last),
            },
            RetryEnd::Stopped { last } => UploadError::Stopped {
                last: Box::new(last),
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::ErrorClass;
    use crate::shutdown::Shutdown;

    #[tokio::test]
    async fn retry_gives_up_and_counts() {
        let retries = AtomicU32::new(0);
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy {
            max_attempts: Some(2),
            stop: Shutdown::new(),
        };
        let r: Result<(), _> = retry(&policy, "TEST", "k", &retries, || async {
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
        let r: Result<(), _> = retry(&policy, "TEST", "k", &retries, || async {
            Err(UploadError::Config("nope".into()))
        })
        .await;
        assert!(matches!(r, Err(UploadError::Config(_))));
        assert_eq!(retries.load(Ordering::Relaxed), 1);
    }
}
