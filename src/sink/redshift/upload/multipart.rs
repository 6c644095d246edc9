//! Multipart upload: files above the threshold go up in parts, up to `max_concurrency` at
//! once, each with its own `Content-MD5`; a failed upload is aborted.

use super::digest::{b64, hex, unquote, FileDigest};
use super::retry::retry;
use super::{file_body, UploadError, Uploader, MD5_METADATA, MIN_PART_SIZE};
use crate::retry::RetryPolicy;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// S3's most parts per upload.
const MAX_PARTS: u64 = 10_000;

/// The configured part size, raised to S3's minimum and to fit in 10,000 parts.
pub(super) fn effective_part_size(configured: u64, file_size: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let needed = file_size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    configured.max(MIN_PART_SIZE).max(needed)
}

impl Uploader {
    pub(super) async fn multipart(
        &self,
        path: &Path,
        key: &str,
        digest: &FileDigest,
        part_size: u64,
        retries: &Arc<AtomicU32>,
    ) -> Result<Option<String>, UploadError> {
        let md5_hex = hex(&digest.md5);
        let created = self
            .call(&self.policy(), "CreateMultipartUpload", key, retries, |c| {
                let request = c.create_multipart_upload().bucket(&self.bucket).key(key);
                request.metadata(MD5_METADATA, &md5_hex).send()
            })
            .await?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| UploadError::Config("CreateMultipartUpload: no upload id".into()))?
            .to_string();
        let parts = match self
            .upload_parts(path, key, &upload_id, digest, part_size, retries)
            .await
        {
            Ok(parts) => parts,
            Err(e) => {
                self.abort(key, &upload_id).await;
                return Err(e);
            }
        };
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        let out = self
            .call(
                &self.policy(),
                "CompleteMultipartUpload",
                key,
                retries,
                |c| {
                    let request = c.complete_multipart_upload().bucket(&self.bucket).key(key);
                    request
                        .upload_id(&upload_id)
                        .multipart_upload(completed.clone())
                        .send()
                },
            )
            .await;
        match out {
            Ok(o) => Ok(o.e_tag().map(unquote)),
            // A retried Complete whose first answer was lost finds no upload: the object is
            // there if the first one succeeded.
            Err(e) if e.code() == Some("NoSuchUpload") => {
                match self.existing(key, digest, retries).await? {
                    Some(etag) => Ok(Some(etag)),
                    None => Err(e),
                }
            }
            Err(e) => {
                self.abort(key, &upload_id).await;
                Err(e)
            }
        }
    }

    /// Uploads every part, up to `max_concurrency` at once; returns them in order.
    async fn upload_parts(
        &self,
        path: &Path,
        key: &str,
        upload_id: &str,
        digest: &FileDigest,
        part_size: u64,
        retries: &Arc<AtomicU32>,
    ) -> Result<Vec<CompletedPart>, UploadError> {
        let mut tasks = tokio::task::JoinSet::new();
        let mut done = Vec::with_capacity(digest.parts.len());
        let mut next = 0usize;
        let mut failure: Option<UploadError> = None;
        loop {
            while failure.is_none()
                && next < digest.parts.len()
                && tasks.len() < self.options.max_concurrency
            {
                let offset = next as u64 * part_size;
                let part = PartJob {
                    client: self.client.clone(),
                    bucket: self.bucket.clone(),
                    key: key.to_string(),
                    upload_id: upload_id.to_string(),
                    path: path.to_path_buf(),
                    number: next as i32 + 1,
                    offset,
                    len: part_size.min(digest.size - offset),
                    md5: digest.parts[next],
                    permits: self.permits.clone(),
                    policy: self.policy(),
                    retries: retries.clone(),
                };
                tasks.spawn(part.run());
                next += 1;
            }
            match tasks.join_next().await {
                None => break,
                Some(Ok(Ok(part))) => done.push(part),
                Some(Ok(Err(e))) => {
                    failure.get_or_insert(e);
                    tasks.abort_all();
                }
                Some(Err(join)) if join.is_cancelled() => {}
                Some(Err(join)) => {
                    failure.get_or_insert(UploadError::Config(format!("part upload task: {join}")));
                    tasks.abort_all();
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        done.sort_by_key(|p| p.part_number());
        Ok(done)
    }

    /// Best effort: an abandoned multipart upload only costs storage until a lifecycle rule.
    async fn abort(&self, key: &str, upload_id: &str) {
        let once = self.policy_with(Some(1));
        let aborted = self
            .call(
                &once,
                "AbortMultipartUpload",
                key,
                &AtomicU32::new(0),
                |c| {
                    let request = c.abort_multipart_upload().bucket(&self.bucket).key(key);
                    request.upload_id(upload_id).send()
                },
            )
            .await;
        if let Err(e) = aborted {
            tracing::warn!(key, error = %e, "could not abort a failed multipart upload");
        }
    }
}

/// One part of a multipart upload, owned so it can run on its own task.
struct PartJob {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    path: PathBuf,
    number: i32,
    offset: u64,
    len: u64,
    md5: [u8; 16],
    permits: Arc<Semaphore>,
    policy: RetryPolicy,
    retries: Arc<AtomicU32>,
}

impl PartJob {
    async fn run(self) -> Result<CompletedPart, UploadError> {
        let md5_b64 = b64(&self.md5);
        let what = format!("PUT part {}", self.number);
        let out = retry(&self.policy, &what, &self.key, &self.retries, || async {
            let body = file_body(&self.path, self.offset, self.len).await?;
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| UploadError::Config("upload semaphore closed".to_string()))?;
            self.client
                .upload_part()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&self.upload_id)
                .part_number(self.number)
                .content_length(self.len as i64)
                .content_md5(&md5_b64)
                .body(body)
                .send()
                .await
                .map_err(|e| UploadError::s3("UploadPart", &self.bucket, &self.key, &e))
        })
        .await?;
        Ok(CompletedPart::builder()
            .part_number(self.number)
            .set_e_tag(out.e_tag().map(str::to_string))
            .build())
    }
}

#[cfg(test)]
mod tests {
    use super::super::PART_SIZE;
    use super::*;

    #[test]
    fn part_sizes() {
        assert_eq!(effective_part_size(PART_SIZE, 100 << 20), PART_SIZE);
        assert_eq!(effective_part_size(1 << 20, 100 << 20), MIN_PART_SIZE);
        // 1 TiB in 16 MiB parts would be 65,536 parts: grown to fit 10,000.
        let big = 1u64 << 40;
        let p = effective_part_size(PART_SIZE, big);
        assert!(big.div_ceil(p) <= MAX_PARTS);
        assert_eq!(p % (1 << 20), 0);
    }
}
