//! Crashes and memory pressure: kill -9 mid-stream, a crash between loading and WAL cleanup,
//! and transactions far larger than the batch memory budget.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod model;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use model::Model;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new(extra_wal: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[wal]\ndirectory = \"{0}/wal\"\n{1}\n[target]\nkind = \"local\"\ndirectory = \"{0}/out\"\n",
            dir.path().display(),
            extra_wal
        );
        std::fs::write(dir.path().join("re_dms.toml"), config).unwrap();
        Self { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn spawn(&self) -> Child {
        Command::new(env!("CARGO_BIN_EXE_re_dms"))
            .args(["--stdin", "--config"])
            .arg(self.path("re_dms.toml"))
            .env("RE_DMS_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// A full run over `input`; panics unless it exits 0.
    fn replay(&self, input: &[u8]) {
        let mut child = self.spawn();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn model(&self) -> Model {
        let mut m = Model::default();
        if self.path("out").exists() {
            m.apply_dir(&self.path("out"));
        }
        m
    }

    fn wal_segments(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.path("wal"))
            .map(|d| {
                d.map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|e| e == "wal"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn loaded_segments(&self) -> usize {
        std::fs::read_dir(self.path("out"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// Polls `cond` every 20 ms until it holds; panics after `timeout`.
fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wal_contains(env: &Env, needle: &[u8]) -> bool {
    env.wal_segments()
        .iter()
        .any(|p| std::fs::read(p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)))
}

fn plain_capture() -> String {
    String::from_utf8(std::fs::read(Path::new(FIXTURES).join("capture_plain.txt")).unwrap())
        .unwrap()
}

fn sorted_ids(m: &Model, table: &str) -> Vec<String> {
    let mut ids: Vec<String> = m.tables[table]
        .rows
        .iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    ids.sort_by_key(|s| s.parse::<i64>().unwrap_or(i64::MAX));
    ids
}

#[test]
fn kill_9_mid_stream_then_restart_loads_every_complete_transaction() {
    let env = Env::new("");
    let text = plain_capture();
    // Everything up to COMMIT 787 (users + the article inserts), then half of the next one.
    let commit = text.find("COMMIT 787\n").unwrap() + "COMMIT 787\n".len();
    let begin_next = text[commit..].find("table ").unwrap() + commit;
    let partial = &text[..begin_next + 40];

    let mut child = env.spawn();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(partial.as_bytes()).unwrap();
    stdin.flush().unwrap();
    // The segment stays open (60 s age, far below 256 MiB): nothing is loaded yet, but what was
    // read is durable once the input pauses (group commit before waiting for more).
    wait_until(Duration::from_secs(20), "COMMIT 787 in the WAL", || {
        wal_contains(&env, b"COMMIT 787")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    assert_eq!(
        env.loaded_segments(),
        0,
        "nothing was loaded before the crash"
    );

    // Keep a copy of the WAL as it was, to replay a crash between loading and cleanup below.
    let saved = env.path("wal-copy");
    copy_dir(&env.path("wal"), &saved);

    env.replay(b"");
    let m = env.model();
    assert_eq!(sorted_ids(&m, "public.users"), ["1", "3"]);
    assert_eq!(sorted_ids(&m, "public.articles"), ["1", "2", "3", "4", "5"]);
    assert!(env.wal_segments().is_empty(), "loaded segments are deleted");

    // Crash after the target confirmed but before the WAL segment was deleted: the same segment
    // is delivered again and the result is the same.
    std::fs::remove_dir_all(env.path("wal")).unwrap();
    copy_dir(&saved, &env.path("wal"));
    // state.json in the copy predates the first delivery; the segment keeps its id.
    env.replay(b"");
    let again = env.model();
    assert_eq!(
        env.loaded_segments(),
        1,
        "re-delivery replaced the same segment"
    );
    assert_eq!(again.tables, m.tables);
}

#[test]
fn transaction_larger_than_memory_budget_is_loaded_whole_and_only_when_committed() {
    // 64 KiB of batch memory: the index of one batch holds a few hundred keys, so the 6,000-row
    // transaction spans many segments closed mid-transaction.
    let env = Env::new("[batch]\nmax_memory_bytes = 65536");
    let mut input = String::from("BEGIN 1\n");
    for i in 1..=6000 {
        input.push_str(&format!(
            "table public.t: INSERT: id[integer]:{i} v[text]:'row {i}'\n"
        ));
    }
    for i in (1..=6000).step_by(3) {
        input.push_str(&format!(
            "table public.t: UPDATE: id[integer]:{i} v[text]:'updated {i}'\n"
        ));
    }
    for i in (2..=6000).step_by(3) {
        input.push_str(&format!("table public.t: DELETE: id[integer]:{i}\n"));
    }
    input.push_str("COMMIT 1\n");

    // First without the COMMIT, killed: none of the early-closed segments may be loaded.
    let mut child = env.spawn();
    let mut stdin = child.stdin.take().unwrap();
    let body = &input[..input.len() - "COMMIT 1\n".len()];
    stdin.write_all(body.as_bytes()).unwrap();
    stdin.flush().unwrap();
    wait_until(
        Duration::from_secs(20),
        "the last delete in the WAL",
        || wal_contains(&env, b"DELETE: id[integer]:5999"),
    );
    assert!(
        env.wal_segments().len() > 5,
        "segments closed early for memory"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    assert_eq!(
        env.loaded_segments(),
        0,
        "an uncommitted transaction is never loaded"
    );
    env.replay(b"");
    assert_eq!(
        env.loaded_segments(),
        0,
        "its WAL tail is dropped at recovery"
    );
    assert!(env.wal_segments().is_empty());

    // Then whole: every row arrives, across many segments.
    env.replay(input.as_bytes());
    let m = env.model();
    assert!(m.segments > 5, "only {} segments", m.segments);
    let t = &m.tables["public.t"];
    assert_eq!(t.rows.len(), 4000);
    for row in &t.rows {
        let id: u32 = row[0].as_deref().unwrap().parse().unwrap();
        assert_ne!(id % 3, 2, "deleted row {id} is present");
        let want = if id % 3 == 1 {
            format!("updated {id}")
        } else {
            format!("row {id}")
        };
        assert_eq!(row[1].as_deref(), Some(want.as_str()));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
