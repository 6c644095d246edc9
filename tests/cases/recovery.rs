//! Crashes and memory pressure on the local target: kill -9 mid-stream, a crash between loading
//! and WAL cleanup, transactions far larger than the batch memory budget, and a new WAL directory
//! that must not replace what another one loaded.

use std::path::Path;
use std::time::Duration;

use crate::harness::model::Model;
use crate::harness::text::{insert, txn};
use crate::harness::{capture, wait_until_blocking, ReDms};

/// A full run over `input`; panics unless it exits 0.
fn replay_ok(re: &ReDms, input: &[u8]) {
    let out = re.replay(input);
    assert!(out.status.success(), "{}", out.stderr);
}

fn loaded_segments(re: &ReDms) -> usize {
    std::fs::read_dir(re.out_dir())
        .map(|d| d.count())
        .unwrap_or(0)
}

fn plain_capture() -> String {
    String::from_utf8(capture("capture_plain.txt")).unwrap()
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
    // The segment stays open (60 s age, far below 256 MiB): nothing is loaded before the kill.
    let env = ReDms::local().segment_max_age_secs(60).build();
    let text = plain_capture();
    // Everything up to COMMIT 787 (users + the article inserts), then half of the next one.
    let commit = text.find("COMMIT 787\n").unwrap() + "COMMIT 787\n".len();
    let begin_next = text[commit..].find("table ").unwrap() + commit;
    let partial = &text[..begin_next + 40];

    let mut run = env.spawn_open();
    run.write(partial.as_bytes());
    // Nothing is loaded yet, but what was read is durable once the input pauses (group commit
    // before waiting for more).
    wait_until_blocking(Duration::from_secs(20), "COMMIT 787 in the WAL", || {
        env.wal_contains(b"COMMIT 787")
    });
    run.kill_9();
    assert_eq!(
        loaded_segments(&env),
        0,
        "nothing was loaded before the crash"
    );

    // Keep a copy of the WAL as it was, to replay a crash between loading and cleanup below.
    let saved = env.dir().join("wal-copy");
    copy_dir(&env.wal_dir(), &saved);

    replay_ok(&env, b"");
    let m = env.model();
    assert_eq!(sorted_ids(&m, "public.users"), ["1", "3"]);
    assert_eq!(sorted_ids(&m, "public.articles"), ["1", "2", "3", "4", "5"]);
    assert!(env.wal_segments().is_empty(), "loaded segments are deleted");

    // Crash after the target confirmed but before the WAL segment was deleted: the same segment
    // is delivered again and the result is the same.
    std::fs::remove_dir_all(env.wal_dir()).unwrap();
    copy_dir(&saved, &env.wal_dir());
    // state.json in the copy predates the first delivery; the segment keeps its id.
    replay_ok(&env, b"");
    let again = env.model();
    assert_eq!(
        loaded_segments(&env),
        1,
        "re-delivery replaced the same segment"
    );
    assert_eq!(again.tables, m.tables);
}

/// The WAL fsynced, and the process killed before anything else happened (`wal.after_sync`):
/// what the sync covered loads on the next start.
#[cfg(feature = "failpoints")]
#[test]
fn kill_9_right_after_a_wal_sync_then_restart_loads_what_was_synced() {
    let mut env = ReDms::local().failpoints("wal.after_sync=return").build();
    let mut run = env.spawn_open();
    run.write(txn(1, &[&insert(1, "a"), &insert(2, "b")]).as_bytes());
    run.wait_for_failpoint("wal.after_sync", Duration::from_secs(30));
    let killed = run.kill_9();
    assert_eq!(loaded_segments(&env), 0, "{}", killed.stderr);
    assert!(
        env.wal_contains(b"COMMIT 1"),
        "the WAL holds the transaction"
    );

    env.set_failpoints(None);
    replay_ok(&env, b"");
    let mut rows = env.model().tables["public.cust"].rows.clone();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            vec![Some("1".to_string()), Some("a".to_string())],
            vec![Some("2".to_string()), Some("b".to_string())],
        ]
    );
    assert!(env.wal_segments().is_empty(), "loaded segments are deleted");
}

/// A stage that does not stop after SIGTERM (ingest held at `wal.after_sync`) is named in the
/// drain log every few seconds, then abandoned after the drain deadline: re_dms exits non-zero
/// instead of hanging, and what the WAL holds loads on the next start.
#[cfg(feature = "failpoints")]
#[test]
fn a_stage_stuck_while_draining_is_named_then_abandoned() {
    let mut env = ReDms::local().failpoints("wal.after_sync=return").build();
    let mut run = env.spawn_open();
    run.write(txn(1, &[&insert(1, "a")]).as_bytes());
    run.wait_for_failpoint("wal.after_sync", Duration::from_secs(30));
    run.sigterm();
    // The drain deadline is 20 s, and a stage is abandoned 5 s after it.
    let out = run.wait(Duration::from_secs(60));
    let err = &out.stderr;
    assert!(!out.status.success(), "{err}");
    let named = err
        .lines()
        .filter(|l| l.contains("draining: still waiting") && l.contains("ingest"))
        .count();
    assert!(
        named >= 2,
        "the stuck stage is named while draining:\n{err}"
    );
    assert!(
        err.contains("did not stop within the drain deadline"),
        "{err}"
    );

    env.set_failpoints(None);
    replay_ok(&env, b"");
    let rows = env.model().tables["public.cust"].rows.clone();
    assert_eq!(
        rows,
        vec![vec![Some("1".to_string()), Some("a".to_string())]]
    );
}

#[test]
fn transaction_larger_than_memory_budget_is_loaded_whole_and_only_when_committed() {
    // 64 KiB of batch memory: the index of one batch holds a few hundred keys, so the 6,000-row
    // transaction spans many segments closed mid-transaction.
    let env = ReDms::local()
        .config("[batch]\nmax_memory_bytes = 65536")
        .build();
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
    let mut run = env.spawn_open();
    let body = &input[..input.len() - "COMMIT 1\n".len()];
    run.write(body.as_bytes());
    wait_until_blocking(
        Duration::from_secs(20),
        "the last delete in the WAL",
        || env.wal_contains(b"DELETE: id[integer]:5999"),
    );
    assert!(
        env.wal_segments().len() > 5,
        "segments closed early for memory"
    );
    run.kill_9();
    assert_eq!(
        loaded_segments(&env),
        0,
        "an uncommitted transaction is never loaded"
    );
    replay_ok(&env, b"");
    assert_eq!(
        loaded_segments(&env),
        0,
        "its WAL tail is dropped at recovery"
    );
    assert!(env.wal_segments().is_empty());

    // Then whole: every row arrives, across many segments.
    replay_ok(&env, input.as_bytes());
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

#[test]
fn the_local_target_never_replaces_another_wal_directorys_segment() {
    let re = ReDms::local().build();
    replay_ok(&re, txn(1, &[&insert(1, "a")]).as_bytes());
    std::fs::remove_dir_all(re.wal_dir()).unwrap();
    let out = re.replay(txn(2, &[&insert(2, "b")]).as_bytes());
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("another WAL directory"),
        "{}",
        out.stderr
    );
}

/// A segment written by the previous release (format version 2: every change as its
/// test_decoding text) and left unloaded is read, re-batched and loaded by this one exactly as
/// its own pre-split segment would be.
#[test]
fn a_version_2_segment_left_by_the_previous_release_loads_the_same_rows() {
    let text = plain_capture();
    let expected = ReDms::local().build();
    replay_ok(&expected, text.as_bytes());

    // This release's segment, left unloaded by a kill -9 (the segment stays open for 60 s).
    let env = ReDms::local().segment_max_age_secs(60).build();
    let mut run = env.spawn_open();
    run.write(text.as_bytes());
    let last_commit = text.trim_end().lines().last().unwrap().to_string();
    wait_until_blocking(
        Duration::from_secs(20),
        "the whole capture in the WAL",
        || env.wal_contains(last_commit.as_bytes()),
    );
    run.kill_9();
    let [segment] = env.wal_segments().try_into().unwrap();
    let (v2, changes) = as_version_2(&segment);
    assert!(changes > 0, "the segment holds pre-split change records");
    std::fs::write(&segment, v2).unwrap();

    replay_ok(&env, b"");
    assert_eq!(env.model().tables, expected.model().tables);
    assert!(
        env.wal_segments().is_empty(),
        "the old segment was loaded and deleted"
    );
}

/// The segment at `path` rewritten in format version 2 (change records as message records of
/// their text); also how many change records it held.
fn as_version_2(path: &Path) -> (Vec<u8>, usize) {
    use re_dms::wal::segment::{Next, RecordKind, SegmentScanner};
    let header = std::fs::read(path).unwrap()[..36].to_vec();
    let mut out = header.clone();
    out[8..12].copy_from_slice(&2u32.to_le_bytes());
    let mut scanner = SegmentScanner::open(path).unwrap();
    let mut changes = 0;
    while let Next::Record(r) = scanner.next_record().unwrap() {
        let (kind, payload) = match r.kind {
            RecordKind::Snapshot => (2u8, r.payload),
            RecordKind::Change => {
                changes += 1;
                (1, r.text().unwrap())
            }
            RecordKind::Message => (1, r.payload),
        };
        let mut body = vec![kind];
        body.extend_from_slice(&r.lsn.0.to_le_bytes());
        body.extend_from_slice(payload);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        out.extend_from_slice(&body);
    }
    (out, changes)
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
