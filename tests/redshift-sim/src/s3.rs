//! Reading COPY sources from the S3 endpoint: prefix listing (as Redshift does, `x/1` matches
//! `x/10`), manifests, download and gunzip.

use crate::copycmd::{parse_s3_url, CopySpec, Credentials};
use aws_sdk_s3::config::{BehaviorVersion, Credentials as AwsCredentials, Region};
use aws_sdk_s3::Client;
use std::io::Read;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum S3Error {
    #[error("The specified S3 prefix '{0}' does not exist")]
    NoSuchPrefix(String),
    #[error("S3ServiceException: listing s3://{bucket}/{prefix} failed: {message}")]
    List {
        bucket: String,
        prefix: String,
        message: String,
    },
    #[error("S3ServiceException: reading {url} failed: {message}")]
    Get { url: String, message: String },
    #[error("Manifest file is not in correct json format: {0}")]
    ManifestFormat(String),
    #[error("Manifest file entry '{0}' not found")]
    MandatoryMissing(String),
    #[error("gzip: {url}: {message}")]
    Gunzip { url: String, message: String },
}

#[derive(Debug, Clone)]
pub struct S3Settings {
    pub endpoint: String,
    pub region: String,
}

/// One file to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub bucket: String,
    pub key: String,
    /// Manifest entry that may be missing.
    pub optional: bool,
}

impl Object {
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

pub fn client(settings: &S3Settings, spec: &CopySpec) -> Client {
    let creds = match &spec.credentials {
        Credentials::Keys {
            access_key_id,
            secret_access_key,
            session_token,
        } => AwsCredentials::new(
            access_key_id,
            secret_access_key,
            session_token.clone(),
            None,
            "redshift-sim-copy",
        ),
        // IAM_ROLE: the role would be assumed by Redshift; here, the sim's own keys.
        Credentials::Role => AwsCredentials::new(
            std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "test".into()),
            std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "test".into()),
            std::env::var("AWS_SESSION_TOKEN").ok(),
            None,
            "redshift-sim-role",
        ),
    };
    let region = spec
        .region
        .clone()
        .unwrap_or_else(|| settings.region.clone());
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .endpoint_url(&settings.endpoint)
        .force_path_style(true)
        .credentials_provider(creds)
        .build();
    Client::from_conf(conf)
}

/// The objects a COPY loads, in key order (prefix) or manifest order.
pub async fn resolve(client: &Client, spec: &CopySpec) -> Result<Vec<Object>, S3Error> {
    if spec.manifest {
        let url = format!("s3://{}/{}", spec.bucket, spec.key);
        let body = get(client, &spec.bucket, &spec.key)
            .await
            .map_err(|e| match e {
                S3Error::Get { message, .. } => S3Error::Get {
                    url: url.clone(),
                    message: format!("Problem reading manifest file: {message}"),
                },
                other => other,
            })?;
        return parse_manifest(&body);
    }
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let resp = client
            .list_objects_v2()
            .bucket(&spec.bucket)
            .prefix(&spec.key)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| S3Error::List {
                bucket: spec.bucket.clone(),
                prefix: spec.key.clone(),
                message: format!("{}", aws_sdk_s3::error::DisplayErrorContext(&e)),
            })?;
        for o in resp.contents() {
            if let Some(key) = o.key() {
                if !key.ends_with('/') {
                    out.push(Object {
                        bucket: spec.bucket.clone(),
                        key: key.to_string(),
                        optional: false,
                    });
                }
            }
        }
        match resp.next_continuation_token() {
            Some(t) if resp.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => break,
        }
    }
    if out.is_empty() {
        return Err(S3Error::NoSuchPrefix(format!(
            "s3://{}/{}",
            spec.bucket, spec.key
        )));
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// `{"entries": [{"url": "s3://b/k", "mandatory": true}, ...]}`
pub fn parse_manifest(body: &[u8]) -> Result<Vec<Object>, S3Error> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| S3Error::ManifestFormat(e.to_string()))?;
    let entries = v
        .get("entries")
        .and_then(|e| e.as_array())
        .ok_or_else(|| S3Error::ManifestFormat("no \"entries\" array".into()))?;
    let mut out = Vec::new();
    for e in entries {
        let url = e
            .get("url")
            .and_then(|u| u.as_str())
            .ok_or_else(|| S3Error::ManifestFormat("an entry has no \"url\"".into()))?;
        let mandatory = match e.get("mandatory") {
            None => false,
            Some(m) => m
                .as_bool()
                .ok_or_else(|| S3Error::ManifestFormat("\"mandatory\" is not a boolean".into()))?,
        };
        let (bucket, key) =
            parse_s3_url(url).ok_or_else(|| S3Error::ManifestFormat(format!("bad url '{url}'")))?;
        out.push(Object {
            bucket,
            key,
            optional: !mandatory,
        });
    }
    Ok(out)
}

/// Download one object; `Ok(None)` when an optional manifest entry is missing.
pub async fn fetch(client: &Client, obj: &Object, gzip: bool) -> Result<Option<Vec<u8>>, S3Error> {
    let body = match get(client, &obj.bucket, &obj.key).await {
        Ok(b) => b,
        Err(S3Error::Get { message, .. }) if message.contains("NoSuchKey") => {
            return if obj.optional {
                Ok(None)
            } else {
                Err(S3Error::MandatoryMissing(obj.url()))
            };
        }
        Err(e) => return Err(e),
    };
    if !gzip {
        return Ok(Some(body));
    }
    let mut out = Vec::with_capacity(body.len() * 4);
    flate2::read::MultiGzDecoder::new(body.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| S3Error::Gunzip {
            url: obj.url(),
            message: e.to_string(),
        })?;
    Ok(Some(out))
}

async fn get(client: &Client, bucket: &str, key: &str) -> Result<Vec<u8>, S3Error> {
    let url = format!("s3://{bucket}/{key}");
    let resp = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| S3Error::Get {
            url: url.clone(),
            message: format!("{}", aws_sdk_s3::error::DisplayErrorContext(&e)),
        })?;
    let data = resp.body.collect().await.map_err(|e| S3Error::Get {
        url,
        message: e.to_string(),
    })?;
    Ok(data.into_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests() {
        let m = br#"{"entries":[{"url":"s3://b/a","mandatory":true},{"url":"s3://c/d/e"}]}"#;
        let objs = parse_manifest(m).unwrap();
        assert_eq!(
            objs,
            vec![
                Object {
                    bucket: "b".into(),
                    key: "a".into(),
                    optional: false
                },
                Object {
                    bucket: "c".into(),
                    key: "d/e".into(),
                    optional: true
                }
            ]
        );
        assert!(parse_manifest(b"{}").is_err());
        assert!(parse_manifest(b"not json").is_err());
        assert!(parse_manifest(br#"{"entries":[{"url":"http://x"}]}"#).is_err());
    }
}
