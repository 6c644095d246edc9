//! The S3 uploader against a real S3 API server: the stack's moto (`stack-tests` feature), each
//! test with a bucket of its own; and against a port where nothing listens.

use re_dms::config::S3Config;
use re_dms::retry::classify::ErrorClass;
use re_dms::sink::redshift::upload::{Uploader, UploaderOptions};
use std::io::Write;
use std::net::TcpListener;
use std::sync::Once;

/// Credentials for the SDK's default chain (moto accepts any), set once per test binary.
fn aws_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ] {
            if std::env::var_os(k).is_none() {
                std::env::set_var(k, v);
            }
        }
    });
}

fn bounded() -> UploaderOptions {
    UploaderOptions {
        max_concurrency: 4,
        max_attempts: Some(5),
        ..UploaderOptions::default()
    }
}

fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(bytes).expect("write temp file");
    f.flush().expect("flush temp file");
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_is_transient_and_bounded() {
    aws_env();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let s3 = S3Config {
        bucket: "nowhere".into(),
        prefix: String::new(),
        region: "us-east-1".into(),
        endpoint: format!("http://127.0.0.1:{port}"),
        force_path_style: true,
    };
    let up = Uploader::with_options(
        &s3,
        UploaderOptions {
            max_attempts: Some(2),
            ..bounded()
        },
    )
    .await
    .expect("uploader");
    let file = temp_file(b"x");
    let err = up
        .upload_file(file.path(), "k.csv.gz")
        .await
        .expect_err("nothing listens there");
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
    assert!(
        err.to_string().contains("gave up after 2 attempts"),
        "{err}"
    );
}

/// Against the stack's moto.
#[cfg(feature = "stack-tests")]
mod moto {
    use super::*;
    use crate::harness::stack::Stack;

    const LINEAGE: re_dms::wal::Lineage = re_dms::wal::Lineage::from_bytes([0x5a; 16]);

    fn s3_config(bucket: &str) -> S3Config {
        let stack = Stack::get();
        S3Config {
            bucket: bucket.to_string(),
            prefix: "re_dms/".to_string(),
            region: stack.region.clone(),
            endpoint: stack.s3_endpoint.clone(),
            force_path_style: true,
        }
    }

    fn unique_bucket(name: &str) -> String {
        format!(
            "re-dms-{name}-{}-{:06x}",
            std::process::id(),
            fastrand::u32(..1 << 24)
        )
    }

    /// An uploader on a fresh bucket.
    async fn uploader(name: &str, options: UploaderOptions) -> Uploader {
        let bucket = unique_bucket(name);
        let up = Uploader::with_options(&s3_config(&bucket), options)
            .await
            .expect("uploader");
        up.client()
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create bucket");
        up
    }

    /// Deterministic, incompressible-looking bytes.
    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..len).map(|_| rng.u8(..)).collect()
    }

    async fn get(up: &Uploader, key: &str) -> Vec<u8> {
        up.client()
            .get_object()
            .bucket(up.bucket())
            .key(key)
            .send()
            .await
            .expect("get object")
            .body
            .collect()
            .await
            .expect("read object")
            .into_bytes()
            .to_vec()
    }

    fn md5_hex(bytes: &[u8]) -> String {
        use md5::Digest;
        md5::Md5::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn single_put_with_md5_and_idempotent_reupload() {
        aws_env();
        let up = uploader("single", bounded()).await;
        let bytes = data(300_000, 1);
        let file = temp_file(&bytes);
        let key = up.key_for(LINEAGE, 42, "public.orders.csv.gz");
        assert!(key.ends_with(&format!(
            "re_dms/{LINEAGE}/00000000000000000042/public.orders.csv.gz"
        )));

        let first = up.upload_file(file.path(), &key).await.expect("upload");
        assert!(!first.already_present);
        assert_eq!(first.parts, 0);
        assert_eq!(first.size, bytes.len() as u64);
        assert_eq!(first.md5_hex, md5_hex(&bytes));
        assert_eq!(first.etag.as_deref(), Some(md5_hex(&bytes).as_str()));
        assert_eq!(first.url, format!("s3://{}/{key}", up.bucket()));
        assert_eq!(get(&up, &key).await, bytes);
        let head = up
            .client()
            .head_object()
            .bucket(up.bucket())
            .key(&key)
            .send()
            .await
            .expect("head");
        assert_eq!(
            head.metadata().and_then(|m| m.get("re-dms-md5")),
            Some(&md5_hex(&bytes))
        );

        // Again: HEAD finds it, nothing is sent.
        let again = up.upload_file(file.path(), &key).await.expect("re-upload");
        assert!(again.already_present, "{again:?}");
        assert_eq!(again.etag, first.etag);

        // Different content at the same key replaces the object.
        let other = data(300_000, 2);
        let file2 = temp_file(&other);
        let replaced = up.upload_file(file2.path(), &key).await.expect("replace");
        assert!(!replaced.already_present);
        assert_eq!(get(&up, &key).await, other);

        // An empty file is a valid object.
        let empty = temp_file(b"");
        let key0 = up.key_for(LINEAGE, 42, "public.empty.csv.gz");
        let e = up.upload_file(empty.path(), &key0).await.expect("empty");
        assert_eq!(e.size, 0);
        assert!(get(&up, &key0).await.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn multipart_upload_and_idempotent_reupload() {
        aws_env();
        let options = UploaderOptions {
            multipart_threshold: 8 * 1024 * 1024,
            part_size: 6 * 1024 * 1024,
            ..bounded()
        };
        let up = uploader("multi", options).await;
        let bytes = data(20_000_000, 3);
        let file = temp_file(&bytes);
        let key = up.key_for(LINEAGE, 7, "sales.order_items.csv.gz");

        let first = up
            .upload_file(file.path(), &key)
            .await
            .expect("multipart upload");
        assert_eq!(first.parts, 4, "{first:?}"); // 6 + 6 + 6 + 2 MiB-ish
        assert!(!first.already_present);
        assert_eq!(first.size, bytes.len() as u64);
        assert!(
            first.etag.as_deref().is_some_and(|e| e.ends_with("-4")),
            "multipart ETag: {:?}",
            first.etag
        );
        let got = get(&up, &key).await;
        assert_eq!(got.len(), bytes.len());
        assert!(got == bytes, "downloaded object differs");

        let again = up.upload_file(file.path(), &key).await.expect("re-upload");
        assert!(again.already_present, "{again:?}");

        // No multipart upload left behind.
        let pending = up
            .client()
            .list_multipart_uploads()
            .bucket(up.bucket())
            .send()
            .await
            .expect("list multipart uploads");
        assert!(pending.uploads().is_empty(), "{:?}", pending.uploads());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn check_and_missing_bucket() {
        aws_env();
        let up = uploader("check", bounded()).await;
        up.check().await.expect("check on an existing bucket");
        // The probe is gone.
        let listed = up
            .client()
            .list_objects_v2()
            .bucket(up.bucket())
            .send()
            .await
            .expect("list");
        assert!(listed.contents().is_empty(), "{:?}", listed.contents());

        let missing = Uploader::with_options(&s3_config(&unique_bucket("missing")), bounded())
            .await
            .expect("uploader");
        let err = missing.check().await.expect_err("missing bucket");
        assert_eq!(err.class(), ErrorClass::Fatal, "{err}");

        let file = temp_file(b"1,a\n");
        let err = missing
            .upload_file(file.path(), &missing.key_for(LINEAGE, 1, "t.csv.gz"))
            .await
            .expect_err("upload to a missing bucket");
        assert_eq!(err.class(), ErrorClass::Fatal, "{err}");
        assert_eq!(err.code(), Some("NoSuchBucket"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delete_segment_deletes_only_that_segment() {
        aws_env();
        let up = uploader("delete", bounded()).await;
        let file = temp_file(b"1,a\n");
        let mut keys = Vec::new();
        for (seg, name) in [(5, "a.csv.gz"), (5, "b.csv.gz"), (50, "a.csv.gz")] {
            let key = up.key_for(LINEAGE, seg, name);
            up.upload_file(file.path(), &key).await.expect("upload");
            keys.push(key);
        }
        let list = |up: &Uploader| {
            let client = up.client().clone();
            let bucket = up.bucket().to_string();
            async move {
                let out = client
                    .list_objects_v2()
                    .bucket(bucket)
                    .send()
                    .await
                    .expect("list");
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string))
                    .collect::<Vec<_>>()
            }
        };
        // Named keys; a key of another segment is refused, not deleted.
        up.delete_segment(LINEAGE, 5, &[keys[0].clone(), keys[2].clone()])
            .await
            .expect("delete named keys");
        assert_eq!(list(&up).await, vec![keys[1].clone(), keys[2].clone()]);
        up.delete_segment(LINEAGE, 5, &keys[1..2])
            .await
            .expect("delete the rest");
        assert_eq!(list(&up).await, vec![keys[2].clone()]);
    }
}
