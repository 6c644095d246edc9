//! End to end into Redshift (the local stack: redshift-sim in front of PostgreSQL, moto as S3):
//! `re_dms --stdin` replays the real captures with `target.kind = "redshift"`, and every target
//! table is compared with the source's final contents (tests/fixtures/expected).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod model;
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use model::{read_expected, Field};
use support::{Stack, TestDb};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// One test's re_dms: its own WAL, warehouse database and S3 prefix.
pub struct Redshift {
    pub dir: tempfile::TempDir,
    pub db: TestDb,
}

impl Redshift {
    pub async fn new(name: &str, extra: &str) -> Self {
        let stack = Stack::get();
        let db = stack.new_warehouse_db(name).await;
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            r#"[wal]
directory = "{dir}/wal"
{extra}
[target]
kind = "redshift"

[s3]
bucket = "{bucket}"
prefix = "{name}/"
region = "{region}"
endpoint = "{endpoint}"
force_path_style = true

[redshift]
connection = "{conn}"
max_connections = 4

[tables."inventory.stock"]
primary_key = ["warehouse", "sku"]
"#,
            dir = dir.path().display(),
            bucket = stack.s3_bucket,
            region = stack.region,
            endpoint = stack.s3_endpoint,
            conn = db.conninfo,
        );
        std::fs::write(dir.path().join("re_dms.toml"), config).unwrap();
        Self { dir, db }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("re_dms.toml")
    }

    pub fn command(&self) -> Command {
        let stack = Stack::get();
        let mut c = Command::new(env!("CARGO_BIN_EXE_re_dms"));
        c.args(["--stdin", "--config"])
            .arg(self.config())
            .env("RE_DMS_LOG", "warn");
        for (k, v) in &stack.vars {
            c.env(k, v);
        }
        c
    }

    pub fn replay(&self, input: &[u8]) -> Output {
        let mut child = self
            .command()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let w = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        w.join().unwrap();
        out
    }

    /// Every row of `table` as text (NULL = None), columns in `columns` order.
    pub async fn rows(&self, table: &str, columns: &[String]) -> Vec<Vec<Field>> {
        let c = support::connect(&self.db.url).await;
        let cols: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
        let q = format!("SELECT {} FROM {table}", cols.join(", "));
        let mut out = Vec::new();
        for m in c.simple_query(&q).await.unwrap() {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                out.push(
                    (0..columns.len())
                        .map(|i| r.get(i).map(str::to_string))
                        .collect(),
                );
            }
        }
        out
    }
}

pub fn capture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// NUMERIC(38,10) prints trailing zeros: compare numbers by value.
fn normalize(v: &Field) -> Field {
    v.as_ref().map(|s| {
        let numeric = !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
            && s.contains('.');
        if numeric {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.clone()
        }
    })
}

async fn assert_matches_expected(rs: &Redshift, table: &str, key: &[&str]) {
    let (header, expected) = read_expected(
        &Path::new(FIXTURES)
            .join("expected")
            .join(format!("{table}.csv")),
    );
    let key_idx: Vec<usize> = key
        .iter()
        .map(|k| header.iter().position(|h| h == k).unwrap())
        .collect();
    let sort = |rows: &mut Vec<Vec<Field>>| {
        rows.sort_by(|a, b| {
            key_idx
                .iter()
                .map(|&i| &a[i])
                .cmp(key_idx.iter().map(|&i| &b[i]))
        })
    };
    let mut got = rs.rows(table, &header).await;
    let mut want = expected;
    sort(&mut got);
    sort(&mut want);
    assert_eq!(got.len(), want.len(), "{table}: row count; got {got:?}");
    for (g, w) in got.iter().zip(&want) {
        for ((h, gv), wv) in header.iter().zip(g).zip(w) {
            assert_eq!(
                normalize(gv),
                normalize(wv),
                "{table}.{h} of row {:?}",
                w[key_idx[0]]
            );
        }
    }
}

async fn assert_fixture_state(rs: &Redshift) {
    assert_matches_expected(rs, "public.users", &["id"]).await;
    assert_matches_expected(rs, "public.articles", &["id"]).await;
    assert_matches_expected(rs, "inventory.stock", &["warehouse", "sku"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_capture_loads_exactly() {
    let rs = Redshift::new("e2e_plain", "").await;
    let out = rs.replay(&capture("capture_plain.txt"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_fixture_state(&rs).await;
    // The ledger has one row per table-segment.
    let c = support::connect(&rs.db.url).await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM re_dms.applied", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_capture_loads_exactly() {
    let rs = Redshift::new("e2e_ts", "").await;
    let out = rs.replay(&capture("capture_timestamps.txt"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_fixture_state(&rs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toast_values_survive_across_segments_and_schema_changes() {
    // Tiny segments: the articles' TOAST-unchanged updates land in a later segment than their
    // insert (partial UPDATE ... FROM staging), the ADD/DROP COLUMN in others, the TRUNCATE too.
    let rs = Redshift::new("e2e_tiny", "segment_max_bytes = 4096").await;
    let out = rs.replay(&capture("capture_plain.txt"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_fixture_state(&rs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_commit_before_wal_cleanup_never_applies_twice() {
    let rs = Redshift::new("e2e_ledger", "").await;
    // First run keeps a copy of the WAL as it was before cleanup: a transaction that never ends
    // keeps the segment open, so stop after the last COMMIT by closing stdin normally, then put
    // the WAL files back as if the process had died before deleting them.
    let out = rs.replay(&capture("capture_plain.txt"));
    assert!(out.status.success(), "{}", stderr(&out));
    // Re-create the situation: replay the same capture into a fresh WAL, keep its segment...
    let wal = rs.dir.path().join("wal");
    let state = std::fs::read(wal.join("state.json")).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&state).unwrap();
    let last_id = json["next_segment_id"].as_u64().unwrap() - 1;
    // ...by writing segment `last_id` again from the same input with the same id.
    std::fs::remove_dir_all(&wal).unwrap();
    std::fs::create_dir_all(&wal).unwrap();
    let mut state_back = json.clone();
    state_back["next_segment_id"] = serde_json::json!(last_id);
    state_back["schema"] = serde_json::json!({"tables": {}});
    std::fs::write(
        wal.join("state.json"),
        serde_json::to_vec(&state_back).unwrap(),
    )
    .unwrap();
    let out = rs.replay(&capture("capture_plain.txt"));
    assert!(out.status.success(), "{}", stderr(&out));
    // Same segment id: the ledger says applied, nothing changes, nothing doubles.
    assert_fixture_state(&rs).await;
    let c = support::connect(&rs.db.url).await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM re_dms.applied", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3, "the second delivery was skipped by the ledger");
}
