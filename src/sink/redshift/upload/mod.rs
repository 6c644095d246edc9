//! The S3 uploader: a segment's gzipped CSV files go to `s3://<bucket>/<prefix><segment>/<file>`
//! before Redshift `COPY`s them.
//!
//! - Every put carries `Content-MD5` (each part of a multipart upload its own), and the MD5 of the
//!   whole file in the object's metadata (`x-amz-meta-re-dms-md5`).
//! - Files stream from disk: a single put reads the file as it is sent; a multipart upload reads it
//!   part by part. Nothing holds a whole file in memory.
//! - Before uploading, a HEAD that finds the object with the same size and our MD5 (metadata, or
//!   the ETag of a single put, or the multipart ETag of our parts) counts as already uploaded: after
//!   a crash, a confirmed put is never repeated.
//! - Transient errors (throttling, 5xx, network) are retried with capped, jittered exponential
//!   backoff ([`classify::backoff`]) — forever unless `max_attempts` is set; each retry is logged
//!   with `tracing::warn!` and counted in `re_dms_s3_retries_total` and [`Uploaded::retries`].
//! - One semaphore bounds the requests in flight across all files.
//!
//! [`classify::backoff`]: crate::retry::classify::backoff

mod digest;
mod error;
mod multipart;
mod retry;

pub use error::UploadError;

use crate::config::S3Config;
use crate::retry::classify::ErrorClass;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    ProvideCredentials, Region, RequestChecksumCalculation, SharedCredentialsProvider,
};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use digest::{b64, digest_file, hex, multipart_etag, unquote, FileDigest};
use md5::{Digest, Md5};
use multipart::effective_part_size;
use retry::retry;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::wal::Lineage;
use tokio::sync::Semaphore;

/// Files larger than this go up in parts.
pub const MULTIPART_THRESHOLD: u64 = 64 * 1024 * 1024;
/// Size of each part (the last one may be smaller).
pub const PART_SIZE: u64 = 16 * 1024 * 1024;
/// S3's smallest part (except the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest single put.
const MAX_SINGLE_PUT: u64 = 5 * 1024 * 1024 * 1024;
/// Read size for hashing and for streaming bodies.
const IO_BUFFER: usize = 1024 * 1024;
/// Object metadata key holding the hex MD5 of the whole file.
const MD5_METADATA: &str = "re-dms-md5";
/// `check()` and `delete_segment()` do not retry forever.
const HOUSEKEEPING_ATTEMPTS: u32 = 4;

/// Tuning; [`Default`] is what production uses.
#[derive(Debug, Clone)]
pub struct UploaderOptions {
    /// Requests in flight at once, across all files.
    pub max_concurrency: usize,
    /// `None`: retry transient errors forever. `Some(n)`: give up after n attempts.
    pub max_attempts: Option<u32>,
    /// Files above this size use multipart upload (capped at S3's 5 GiB single-put limit).
    pub multipart_threshold: u64,
    /// Part size (at least 5 MiB; grown when a file would need more than 10,000 parts).
    pub part_size: u64,
    /// Retry waits end on this signal.
    pub stop: crate::shutdown::Shutdown,
}

impl Default for UploaderOptions {
    fn default() -> Self {
        Self {
            max_concurrency: 8,
            max_attempts: None,
            multipart_threshold: MULTIPART_THRESHOLD,
            part_size: PART_SIZE,
            stop: crate::shutdown::Shutdown::new(),
        }
    }
}

/// What `upload_file` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub key: String,
    pub url: String,
    pub size: u64,
    /// Hex MD5 of the whole file.
    pub md5_hex: String,
    /// The object's ETag as S3 reports it (quotes removed).
    pub etag: Option<String>,
    /// 0 for a single put, else the number of parts.
    pub parts: u32,
    /// The object was already there (HEAD matched): nothing was sent.
    pub already_present: bool,
    /// Retried requests (already added to `re_dms_s3_retries_total`).
    pub retries: u32,
}

/// TCP (and TLS) connect to S3.
pub const S3_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the next bytes of a response.
pub const S3_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// One request, body included (a part is at most 64 MiB by default: 5 minutes is ~220 KB/s).
pub const S3_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);

pub struct Uploader {
    client: Client,
    bucket: String,
    prefix: String,
    permits: Arc<Semaphore>,
    options: UploaderOptions,
    credentials: Option<SharedCredentialsProvider>,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("options", &self.options)
            .finish()
    }
}

impl Uploader {
    /// From `[s3]` plus the standard AWS credential chain.
    pub async fn from_config(s3: &S3Config, max_concurrency: usize) -> Result<Self, UploadError> {
        Self::with_options(
            s3,
            UploaderOptions {
                max_concurrency,
                ..UploaderOptions::default()
            },
        )
        .await
    }

    /// From `[s3]` with explicit tuning. `endpoint` (else `AWS_ENDPOINT_URL`) and
    /// `force_path_style` serve S3-compatible stores; `region` empty means the chain's region.
    pub async fn with_options(
        s3: &S3Config,
        options: UploaderOptions,
    ) -> Result<Self, UploadError> {
        if s3.bucket.is_empty() {
            return Err(UploadError::Config("`s3.bucket` is empty".to_string()));
        }
        if options.max_concurrency == 0 {
            return Err(UploadError::Config(
                "max_concurrency must be > 0".to_string(),
            ));
        }
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if !s3.region.is_empty() {
            loader = loader.region(Region::new(s3.region.clone()));
        }
        if !s3.endpoint.is_empty() {
            loader = loader.endpoint_url(s3.endpoint.clone());
        }
        let sdk = loader.load().await;
        let conf = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(s3.force_path_style)
            // We retry ourselves: every retry is logged and counted, and never gives up early.
            .retry_config(RetryConfig::disabled())
            // Content-MD5 is set on every put; no extra (aws-chunked) checksums that some
            // S3-compatible stores reject.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            // Every request has a deadline: an endpoint that accepts connections and never
            // answers is a timeout (transient: retried, logged, counted), never a hang.
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(S3_CONNECT_TIMEOUT)
                    .read_timeout(S3_READ_TIMEOUT)
                    .operation_attempt_timeout(S3_ATTEMPT_TIMEOUT)
                    .operation_timeout(S3_ATTEMPT_TIMEOUT)
                    .build(),
            )
            .build();
        Ok(Self {
            client: Client::from_conf(conf),
            bucket: s3.bucket.clone(),
            prefix: normalize_prefix(&s3.prefix),
            permits: Arc::new(Semaphore::new(options.max_concurrency)),
            options,
            credentials: sdk.credentials_provider(),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix, empty or ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The credentials of the chain, e.g. for `COPY ... ACCESS_KEY_ID ... SECRET_ACCESS_KEY`.
    pub async fn credentials(&self) -> Result<aws_sdk_s3::config::Credentials, UploadError> {
        let provider = self
            .credentials
            .as_ref()
            .ok_or_else(|| UploadError::Config("no AWS credentials provider".to_string()))?;
        provider
            .provide_credentials()
            .await
            .map_err(|e| UploadError::Config(format!("AWS credentials: {e}")))
    }

    /// `<prefix><lineage>/<segment:020>/`: every object of one segment of one WAL lineage, and
    /// nothing else (two WAL directories, or two re_dms instances sharing a prefix, never
    /// write to each other's keys).
    pub fn segment_prefix(&self, lineage: Lineage, segment: u64) -> String {
        format!("{}{lineage}/{segment:020}/", self.prefix)
    }

    /// `<prefix><lineage>/<segment:020>/<file name>`.
    pub fn key_for(&self, lineage: Lineage, segment: u64, file_name: &str) -> String {
        debug_assert!(
            !file_name.contains('/'),
            "file name with a slash: {file_name}"
        );
        format!("{}{file_name}", self.segment_prefix(lineage, segment))
    }

    /// `s3://bucket/key`.
    pub fn url_for(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    async fn permit(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.permits
            .acquire()
            .await
            .unwrap_or_else(|_| unreachable!("the upload semaphore is never closed"))
    }

    /// Uploads the file at `path` to `key` (see the module docs).
    pub async fn upload_file(&self, path: &Path, key: &str) -> Result<Uploaded, UploadError> {
        let io_err = |source| UploadError::Io {
            path: path.to_path_buf(),
            source,
        };
        let size = tokio::fs::metadata(path).await.map_err(io_err)?.len();
        let threshold = self.options.multipart_threshold.min(MAX_SINGLE_PUT);
        let part_size =
            (size > threshold).then(|| effective_part_size(self.options.part_size, size));
        let owned = path.to_path_buf();
        let digest = tokio::task::spawn_blocking(move || digest_file(&owned, part_size))
            .await
            .map_err(|e| io_err(std::io::Error::other(e.to_string())))?
            .map_err(io_err)?;
        let retries = Arc::new(AtomicU32::new(0));
        let mut out = Uploaded {
            key: key.to_string(),
            url: self.url_for(key),
            size: digest.size,
            md5_hex: hex(&digest.md5),
            etag: None,
            parts: 0,
            already_present: false,
            retries: 0,
        };
        if let Some(etag) = self.existing(key, &digest, &retries).await? {
            tracing::debug!(
                key,
                "already in S3 with the same size and MD5; not uploading"
            );
            out.etag = Some(etag);
            out.already_present = true;
        } else if let Some(part_size) = part_size {
            let mut restarts = 0;
            out.etag = loop {
                match self
                    .multipart(path, key, &digest, part_size, &retries)
                    .await
                {
                    // The upload was aborted under us (lifecycle rule, another process): start
                    // it again from the beginning, a few times.
                    Err(e) if e.code() == Some("NoSuchUpload") && restarts < 3 => {
                        restarts += 1;
                        tracing::warn!(key, restarts, error = %e, "multipart upload vanished; starting again");
                    }
                    r => break r?,
                }
            };
            out.parts = digest.parts.len() as u32;
        } else {
            let (md5_b64, md5_hex) = (b64(&digest.md5), hex(&digest.md5));
            let put = retry(&self.policy(), "PutObject", key, &retries, || async {
                let body = file_body(path, 0, digest.size).await?;
                let _permit = self.permit().await;
                let request = self.client.put_object().bucket(&self.bucket).key(key);
                request
                    .content_length(digest.size as i64)
                    .content_md5(&md5_b64)
                    .metadata(MD5_METADATA, &md5_hex)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| UploadError::s3("PutObject", &self.bucket, key, &e))
            })
            .await?;
            out.etag = put.e_tag().map(unquote);
        }
        out.retries = retries.load(Ordering::Relaxed);
        if !out.already_present {
            crate::metrics::S3_OBJECTS_UPLOADED.inc();
            crate::metrics::S3_BYTES_UPLOADED.add(out.size);
        }
        Ok(out)
    }

    /// `Some(etag)` when `key` already holds this file's content.
    async fn existing(
        &self,
        key: &str,
        digest: &FileDigest,
        retries: &AtomicU32,
    ) -> Result<Option<String>, UploadError> {
        let head = self
            .call(&self.policy(), "HeadObject", key, retries, |c| {
                c.head_object().bucket(&self.bucket).key(key).send()
            })
            .await;
        let head = match head {
            Ok(head) => head,
            Err(UploadError::S3 {
                status: Some(404), ..
            }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let etag = head.e_tag().map(unquote);
        let md5 = hex(&digest.md5);
        let same_size = head.content_length() == Some(digest.size as i64);
        let ours = |m: &String| *m == md5;
        let same_md5 = head
            .metadata()
            .and_then(|m| m.get(MD5_METADATA))
            .is_some_and(ours)
            || etag.as_deref() == Some(md5.as_str())
            || (!digest.parts.is_empty() && etag == Some(multipart_etag(&digest.parts)));
        if same_size && same_md5 {
            return Ok(Some(etag.unwrap_or_default()));
        }
        tracing::warn!(
            key,
            remote_size = head.content_length(),
            local_size = digest.size,
            remote_etag = etag.as_deref().unwrap_or(""),
            "an object with different content is at this key; replacing it"
        );
        Ok(None)
    }

    /// The bucket exists and we may put, list and delete under the prefix: puts, lists and
    /// deletes a small probe object. Missing bucket, access denied, bad credentials: fatal.
    pub async fn check(&self) -> Result<(), UploadError> {
        let policy = self.policy_with(Some(
            self.options.max_attempts.unwrap_or(HOUSEKEEPING_ATTEMPTS),
        ));
        let retries = AtomicU32::new(0);
        self.call(&policy, "HeadBucket", "", &retries, |c| {
            c.head_bucket().bucket(&self.bucket).send()
        })
        .await?;
        // Not under a segment directory (those are 20 digits): never in a COPY's way.
        let (pid, nonce) = (std::process::id(), fastrand::u32(..));
        let probe = format!("{}_re_dms_probe_{pid}_{nonce:08x}", self.prefix);
        let body: &[u8] = b"re_dms write probe\n";
        let md5 = b64(&Md5::digest(body));
        self.call(&policy, "PutObject", &probe, &retries, |c| {
            let request = c.put_object().bucket(&self.bucket).key(&probe);
            request
                .content_md5(&md5)
                .body(ByteStream::from_static(body))
                .send()
        })
        .await?;
        let listed = self
            .call(&policy, "ListObjectsV2", &probe, &retries, |c| {
                let request = c.list_objects_v2().bucket(&self.bucket);
                request.prefix(&probe).max_keys(1).send()
            })
            .await?;
        self.call(&policy, "DeleteObject", &probe, &retries, |c| {
            c.delete_object().bucket(&self.bucket).key(&probe).send()
        })
        .await?;
        if !listed.contents().iter().any(|o| o.key() == Some(&probe)) {
            return Err(UploadError::S3 {
                op: "ListObjectsV2",
                bucket: self.bucket.clone(),
                key: probe,
                class: ErrorClass::Fatal,
                status: None,
                code: None,
                detail: "the probe object just written is not listed".to_string(),
            });
        }
        Ok(())
    }

    /// Deletes a loaded segment's objects (`keys` under the segment's prefix; others are refused
    /// with a warning). Housekeeping: a failure is logged here and returned, and is never a
    /// reason to stop (callers should not treat it as fatal).
    pub async fn delete_segment(
        &self,
        lineage: Lineage,
        segment: u64,
        keys: &[String],
    ) -> Result<(), UploadError> {
        let seg_prefix = self.segment_prefix(lineage, segment);
        let (ours, foreign): (Vec<&String>, Vec<&String>) =
            keys.iter().partition(|k| k.starts_with(&seg_prefix));
        for k in foreign {
            tracing::warn!(key = %k, segment, "not deleting a key outside the segment's prefix");
        }
        let policy = self.policy_with(Some(HOUSEKEEPING_ATTEMPTS));
        let retries = AtomicU32::new(0);
        for chunk in ours.chunks(1000) {
            let result = async {
                let objects = chunk
                    .iter()
                    .map(|k| ObjectIdentifier::builder().key(k.as_str()).build())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| UploadError::Config(e.to_string()))?;
                let delete = Delete::builder()
                    .set_objects(Some(objects))
                    .quiet(true)
                    .build()
                    .map_err(|e| UploadError::Config(e.to_string()))?;
                let out = self
                    .call(&policy, "DeleteObjects", &seg_prefix, &retries, |c| {
                        let request = c.delete_objects().bucket(&self.bucket);
                        request.delete(delete.clone()).send()
                    })
                    .await?;
                match out.errors().first() {
                    None => Ok(()),
                    Some(first) => Err(UploadError::S3 {
                        op: "DeleteObjects",
                        bucket: self.bucket.clone(),
                        key: first.key().unwrap_or(&seg_prefix).to_string(),
                        class: ErrorClass::Transient,
                        status: None,
                        code: first.code().map(str::to_string),
                        detail: format!(
                            "{} of {} objects not deleted: {}",
                            out.errors().len(),
                            chunk.len(),
                            first.message().unwrap_or("")
                        ),
                    }),
                }
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(segment, error = %e, "could not delete a loaded segment's S3 objects");
                return Err(e);
            }
        }
        Ok(())
    }
}

/// `len` bytes of the file from `offset`, streamed as they are sent.
async fn file_body(path: &Path, offset: u64, len: u64) -> Result<ByteStream, UploadError> {
    ByteStream::read_from()
        .path(path)
        .offset(offset)
        .length(Length::Exact(len))
        .buffer_size(IO_BUFFER)
        .build()
        .await
        .map_err(|e| UploadError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })
}

/// `re_dms` -> `re_dms/`; `/a/b/` -> `a/b/`; empty stays empty.
fn normalize_prefix(prefix: &str) -> String {
    let p = prefix.trim_start_matches('/');
    if p.is_empty() || p.ends_with('/') {
        p.to_string()
    } else {
        format!("{p}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(normalize_prefix("re_dms/"), "re_dms/");
        assert_eq!(normalize_prefix("re_dms"), "re_dms/");
        assert_eq!(normalize_prefix("/a/b"), "a/b/");
        assert_eq!(normalize_prefix(""), "");
    }

    #[tokio::test]
    async fn keys_and_urls() -> Result<(), UploadError> {
        let s3 = S3Config {
            bucket: "b".into(),
            prefix: "re_dms".into(),
            region: "us-east-1".into(),
            endpoint: "http://127.0.0.1:9".into(),
            force_path_style: true,
        };
        let u = Uploader::from_config(&s3, 2).await?;
        let l = Lineage::from_bytes([0xab; 16]);
        let k = u.key_for(l, 7, "public.t.csv.gz");
        assert_eq!(
            k,
            format!(
                "re_dms/{}/00000000000000000007/public.t.csv.gz",
                "ab".repeat(16)
            )
        );
        assert_eq!(u.url_for(&k), format!("s3://b/{k}"));
        assert!(!u
            .key_for(l, 1, "x.csv.gz")
            .starts_with(&u.segment_prefix(l, 10)));
        assert!(!u.segment_prefix(l, 10).starts_with(&u.segment_prefix(l, 1)));
        let other = Lineage::from_bytes([0xcd; 16]);
        assert_ne!(u.segment_prefix(l, 1), u.segment_prefix(other, 1));
        Ok(())
    }
}
