//! What can go wrong talking to S3 or reading the files to upload, classified for the caller.

use crate::retry::classify::{self, ErrorClass};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// A request to S3 failed; `detail` has the S3 error code and message or the network error.
    #[error("S3 {op} s3://{bucket}/{key}: {detail} [{class}]")]
    S3 {
        op: &'static str,
        bucket: String,
        key: String,
        class: ErrorClass,
        status: Option<u16>,
        code: Option<String>,
        detail: String,
    },
    /// Reading the local file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("S3 configuration: {0}")]
    Config(String),
    /// `max_attempts` ran out on a transient error.
    #[error("{last} (gave up after {attempts} attempts)")]
    GaveUp {
        attempts: u32,
        #[source]
        last: Box<UploadError>,
    },
    /// The stop signal came while a transient error waited for its retry.
    #[error("{last} (not retried: stopping)")]
    Stopped {
        #[source]
        last: Box<UploadError>,
    },
}

impl crate::retry::Classified for UploadError {
    fn class(&self) -> ErrorClass {
        UploadError::class(self)
    }
}

impl UploadError {
    /// Transient / definite / fatal. Local I/O errors are fatal (the disk or the files under the
    /// WAL directory are not what the pipeline expects); `GaveUp` keeps the class of its last
    /// error (usually transient: the caller may try again later).
    pub fn class(&self) -> ErrorClass {
        match self {
            UploadError::S3 { class, .. } => *class,
            UploadError::Io { .. } | UploadError::Config(_) => ErrorClass::Fatal,
            UploadError::GaveUp { last, .. } | UploadError::Stopped { last } => last.class(),
        }
    }

    /// The S3 error code (`NoSuchBucket`, `SlowDown`, ...), when S3 sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            UploadError::S3 { code, .. } => code.as_deref(),
            UploadError::GaveUp { last, .. } | UploadError::Stopped { last } => last.code(),
            _ => None,
        }
    }

    pub(super) fn s3<E>(op: &'static str, bucket: &str, key: &str, e: &SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let (failure, status, code, message, text) = classify::s3_error_parts(e);
        let class = classify::classify_s3_code(failure, status, code.as_deref(), &text);
        let detail = match (&code, &message, status) {
            (Some(c), Some(m), Some(s)) => format!("{c}: {m} (HTTP {s})"),
            (Some(c), None, Some(s)) => format!("{c} (HTTP {s})"),
            (None, _, Some(s)) if failure == classify::S3Failure::Service => {
                format!("HTTP {s}: {text}")
            }
            _ => text,
        };
        UploadError::S3 {
            op,
            bucket: bucket.to_string(),
            key: key.to_string(),
            class,
            status,
            code,
            detail,
        }
    }
}
