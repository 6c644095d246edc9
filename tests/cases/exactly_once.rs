//! Exactly-once across everything a user can do to a replay: a new WAL directory, a rerun
//! after an error, two sources into one warehouse, input overlapping what was loaded, kill -9
//! mid-stream, SIGTERM while the warehouse or S3 hangs, values changed to fit Redshift, input
//! that starts inside a transaction. Each test is one way data was lost or a process hung.
//! All into Redshift; the local target's guard against a new WAL directory is in `recovery.rs`.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::harness::binary::Output;
use crate::harness::model::Field;
use crate::harness::stack::Stack;
use crate::harness::text::{insert, txn};
use crate::harness::workload::Workload;
use crate::harness::{wait_until, ReDms};

fn delete(id: u32) -> String {
    format!("DELETE: id[integer]:{id}")
}

async fn cust(rs: &ReDms, table: &str) -> Vec<Vec<Field>> {
    let mut rows = rs
        .backend_rows(table, &["id".to_string(), "name".to_string()])
        .await;
    rows.sort();
    rows
}

fn row(id: u32, name: &str) -> Vec<Field> {
    vec![Some(id.to_string()), Some(name.to_string())]
}

fn assert_ok(out: &Output) {
    assert!(out.status.success(), "re_dms failed:\n{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_wal_directory_never_skips_data() {
    let _sim = Stack::sim_shared().await;
    let rs = ReDms::redshift("eo_new_wal").await.build();
    assert_ok(&rs.replay(txn(1, &[&insert(1, "a")]).as_bytes()));
    // A new host, a replaced disk: the WAL directory starts empty, segment ids start again.
    std::fs::remove_dir_all(rs.wal_dir()).unwrap();
    assert_ok(&rs.replay(txn(2, &[&insert(2, "b")]).as_bytes()));
    assert_eq!(
        cust(&rs, "public.cust").await,
        [row(1, "a"), row(2, "b")],
        "the second WAL directory's first segment was taken for the first one's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_and_rerun_after_exit_1_loads_everything() {
    let _sim = Stack::sim_shared().await;
    let rs = ReDms::redshift("eo_rerun").await.build();
    // The README's procedure: the input ends inside a transaction (a truncated capture)...
    let good = txn(1, &[&insert(1, "a")]);
    let whole = txn(2, &[&insert(2, "b"), &insert(3, "c")]);
    let cut = whole.lines().take(2).collect::<Vec<_>>().join("\n") + "\n";
    let out = rs.replay(format!("{good}{cut}").as_bytes());
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("inside the transaction"),
        "{}",
        out.stderr
    );
    assert_eq!(cust(&rs, "public.cust").await, [row(1, "a")]);
    // ... fix the input and run the same command on the whole of it again.
    assert_ok(&rs.replay(format!("{good}{whole}").as_bytes()));
    assert_eq!(
        cust(&rs, "public.cust").await,
        [row(1, "a"), row(2, "b"), row(3, "c")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_load_into_one_warehouse_without_skipping_each_other() {
    let _sim = Stack::sim_shared().await;
    let a = ReDms::redshift("eo_two_sources").await.build();
    let b = a.sharing_warehouse();
    let map = |to: &str| {
        let to = to.to_string();
        move |t: String| {
            t.replace(
                "max_connections = 4\n",
                &format!("max_connections = 4\nschema_map = {{ public = \"{to}\" }}\n"),
            )
        }
    };
    a.edit_config(map("src_a"));
    b.edit_config(map("src_b"));
    assert_ok(&a.replay(txn(1, &[&insert(1, "from a")]).as_bytes()));
    assert_ok(&b.replay(txn(1, &[&insert(1, "from b")]).as_bytes()));
    assert_eq!(cust(&a, "src_a.cust").await, [row(1, "from a")]);
    assert_eq!(cust(&b, "src_b.cust").await, [row(1, "from b")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_inserted_and_deleted_in_one_batch_is_deleted_from_the_target() {
    let _sim = Stack::sim_shared().await;
    let rs = ReDms::redshift("eo_insert_delete").await.build();
    assert_ok(&rs.replay(txn(1, &[&insert(1, "a"), &insert(2, "b")]).as_bytes()));
    // Input overlapping what was loaded: row 1's INSERT again, then its DELETE, in one batch.
    let overlap = txn(1, &[&insert(1, "a"), &insert(2, "b")]) + &txn(2, &[&delete(1)]);
    assert_ok(&rs.replay(overlap.as_bytes()));
    assert_eq!(cust(&rs, "public.cust").await, [row(2, "b")]);
}

/// Replays `text` paced (in `chunks` pieces), kills re_dms with SIGKILL once at least `kill_at`
/// pieces were written and a segment is loaded, then runs the whole input again.
async fn kill_paced_then_rerun(rs: &ReDms, text: &str, kill_at: usize, chunks: usize) {
    let mut run = rs.spawn_open();
    let bytes = text.as_bytes();
    let step = bytes.len().div_ceil(chunks);
    let mut killed = false;
    for (i, piece) in bytes.chunks(step).enumerate() {
        run.write(piece);
        // Pacing: segments close by age (at a COMMIT) while the input arrives.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if i + 1 >= kill_at && !rs.ledger().await.is_empty() {
            killed = true;
            break;
        }
    }
    assert!(killed, "no segment loaded while the input arrived");
    run.kill_9();
    assert_ok(&rs.replay(bytes));
}

/// Segments closed by age after a second (never by size, below 64 MiB).
async fn paced(name: &str) -> ReDms {
    ReDms::redshift(name)
        .await
        .segment_max_bytes(67108864)
        .segment_max_age_secs(1)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_paced_replay_then_a_full_rerun_equals_a_clean_run() {
    let _sim = Stack::sim_shared().await;
    // Segments close after a second of age while the paced input arrives, and the full rerun
    // folds the whole input into one segment: a row inserted before the kill (and loaded) and
    // deleted after it is inserted and deleted in one batch of the rerun.
    let mut w = Workload::three_tables(8);
    w.generate(6_000);
    let text = w.take_text();
    let clean = paced("eo_kill_clean").await;
    assert_ok(&clean.replay(text.as_bytes()));
    clean.assert_workload(&w).await;
    let chunks = 40;
    for (i, kill_at) in [10, 20, 30].into_iter().enumerate() {
        let rs = paced(&format!("eo_kill_{i}")).await;
        kill_paced_then_rerun(&rs, &text, kill_at, chunks).await;
        for t in &w.tables {
            let cols: Vec<String> = t.columns.iter().map(|(n, _)| n.to_string()).collect();
            let mut got = rs.backend_rows(&t.name, &cols).await;
            let mut want = clean.backend_rows(&t.name, &cols).await;
            got.sort();
            want.sort();
            assert_eq!(
                got.len(),
                want.len(),
                "{}: rows after a kill at piece {kill_at} (a deleted row came back?)",
                t.name
            );
            assert_eq!(got, want, "{}: kill at piece {kill_at}", t.name);
        }
        rs.assert_workload(&w).await;
    }
}

/// A TCP server on loopback that accepts connections and never answers (a hung load balancer,
/// a cluster mid-failover); counts the connections it accepted.
fn black_hole() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(conn);
        }
    });
    (port, accepted)
}

/// Starts re_dms on a small input, waits until it is stuck on the black hole, sends SIGTERM and
/// asserts it exits (non-zero, saying where it stopped) well within the documented grace.
async fn sigterm_while_hung(rs: &ReDms, accepted: &std::sync::atomic::AtomicUsize) {
    let run = rs.spawn_open();
    wait_until(Duration::from_secs(30), "re_dms connected", || async {
        accepted.load(std::sync::atomic::Ordering::SeqCst) > 0
    })
    .await;
    let asked = Instant::now();
    run.sigterm();
    let done = run.wait(Duration::from_secs(40));
    assert!(
        asked.elapsed() < Duration::from_secs(25),
        "SIGTERM took {:?}",
        asked.elapsed()
    );
    done.assert_stopped_before_eof();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_honoured_while_redshift_accepts_tcp_but_never_answers() {
    let _sim = Stack::sim_shared().await;
    let rs = ReDms::redshift("eo_hung_redshift").await.build();
    let (port, accepted) = black_hole();
    // A long connect_timeout: only the stop signal can end the wait in time.
    rs.set_config_line(
        "connection = ",
        &format!("connection = \"host=127.0.0.1 port={port} user=u dbname=d connect_timeout=600\""),
    );
    sigterm_while_hung(&rs, &accepted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_honoured_while_s3_accepts_tcp_but_never_answers() {
    let _sim = Stack::sim_shared().await;
    let rs = ReDms::redshift("eo_hung_s3").await.build();
    let (port, accepted) = black_hole();
    rs.set_config_line(
        "endpoint = ",
        &format!("endpoint = \"http://127.0.0.1:{port}\""),
    );
    sigterm_while_hung(&rs, &accepted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redshift_that_never_answers_is_a_retried_timeout_not_a_hang() {
    let _sim = Stack::sim_shared().await;
    let rs = ReDms::redshift("eo_connect_timeout").await.build();
    let (port, accepted) = black_hole();
    let real = std::fs::read_to_string(rs.config_path()).unwrap();
    rs.set_config_line(
        "connection = ",
        &format!("connection = \"host=127.0.0.1 port={port} user=u dbname=d connect_timeout=1\""),
    );
    // The input is written and stdin closed at once.
    let run = rs.spawn(txn(1, &[&insert(1, "a")]).into_bytes());
    // Connect attempts time out and are retried (each one a new connection to the hole).
    wait_until(
        Duration::from_secs(60),
        "connect attempts retried after their timeout (3 connections)",
        || async { accepted.load(std::sync::atomic::Ordering::SeqCst) >= 3 },
    )
    .await;
    run.sigterm();
    let out = run.wait(Duration::from_secs(60));
    let err = &out.stderr;
    assert!(err.contains("no answer within 1s"), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("stay in the WAL"), "{err}");
    // The WAL kept it: with the warehouse back, it loads.
    rs.edit_config(|_| real);
    assert_ok(&rs.replay(b""));
    assert_eq!(cust(&rs, "public.cust").await, [row(1, "a")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_before_eof_exits_non_zero_and_says_how_to_resume() {
    let _sim = Stack::sim_shared().await;
    let rs = ReDms::redshift("eo_sigterm_resume")
        .await
        .segment_max_age_secs(1)
        .build();
    let mut w = Workload::three_tables(21);
    w.generate(3_000);
    let text = w.take_text();
    // Half the input, up to a COMMIT: the idle segment then closes by age and loads.
    let half = text[..text.len() / 2].rfind("\nCOMMIT ").unwrap();
    let half = half + 1 + text[half + 1..].find('\n').unwrap() + 1;
    let mut run = rs.spawn_open();
    run.write(&text.as_bytes()[..half]);
    wait_until(Duration::from_secs(60), "a segment loaded", || async {
        !rs.ledger().await.is_empty()
    })
    .await;
    run.sigterm();
    let done = run.wait(Duration::from_secs(40));
    done.assert_stopped_before_eof();
    // "tail -n +L": resume from the line it names.
    let from: usize = done
        .stderr
        .split("tail -n +")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume line in: {}", done.stderr));
    assert!(from > 1, "{}", done.stderr);
    let rest: String = text
        .split_inclusive('\n')
        .skip(from - 1)
        .collect::<Vec<_>>()
        .concat();
    assert!(rest.starts_with("BEGIN"), "resume line {from}: {rest:.40}");
    assert_ok(&rs.replay(rest.as_bytes()));
    rs.assert_workload(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_starting_inside_a_transaction_is_an_error_naming_the_line() {
    let _sim = Stack::sim_shared().await;
    let rs = ReDms::redshift("eo_head_mid_txn").await.build();
    let input = format!(
        "table public.cust: {}\nCOMMIT 7\n{}",
        insert(1, "partial"),
        txn(8, &[&insert(2, "whole")])
    );
    let out = rs.replay(input.as_bytes());
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let err = &out.stderr;
    assert!(
        err.contains("line 1:") && err.contains("outside a transaction"),
        "{err}"
    );
    assert!(
        rs.ledger().await.is_empty(),
        "nothing of a partial transaction loads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_changed_to_fit_redshift_are_logged_per_table_and_column() {
    let _sim = Stack::sim_shared().await;
    let rs = ReDms::redshift("eo_visible_changes").await.build();
    let long = "x".repeat(70_000);
    let input = format!(
        "BEGIN 1\n\
         table public.odd: INSERT: id[integer]:1 t[text]:'{long}' n[numeric]:{big} \
         at[timestamp without time zone]:'infinity'\n\
         table public.odd: INSERT: id[integer]:2 t[text]:'{long}' n[numeric]:NaN \
         at[timestamp without time zone]:'2024-01-01 00:00:00'\n\
         COMMIT 1\n",
        big = "9".repeat(40)
    );
    let out = rs.replay(input.as_bytes());
    assert_ok(&out);
    let err = &out.stderr;
    for (column, what) in [
        ("t", "2 value(s) truncated"),
        ("n", "1 value(s) saturated"),
        ("n", "1 value(s) written as NULL"),
        ("at", "1 value(s) written as NULL"),
    ] {
        assert!(
            err.lines().any(|l| l.contains("WARN")
                && l.contains("public.odd")
                && l.contains(&format!("column={column}"))
                && l.contains(what)),
            "no warning for {column}: {what}\n{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_replaced_and_counted_not_a_stopped_table() {
    let _sim = Stack::sim_shared().await;
    let rs = ReDms::redshift("eo_latin1").await.build();
    let mut input = b"BEGIN 1\ntable public.cust: INSERT: id[integer]:1 name[text]:'caf".to_vec();
    input.push(0xE9); // LATIN1 e-acute: not UTF-8
    input.extend_from_slice(b"'\nCOMMIT 1\n");
    let out = rs.replay(&input);
    assert_ok(&out);
    assert!(out.stderr.contains("invalid UTF-8"), "{}", out.stderr);
    assert_eq!(cust(&rs, "public.cust").await, [row(1, "caf\u{FFFD}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_table_dropped_behind_our_back_names_the_table_and_the_remedy() {
    let _sim = Stack::sim_shared().await;
    let rs = ReDms::redshift("eo_dropped_target").await.build();
    assert_ok(&rs.replay(txn(1, &[&insert(1, "a")]).as_bytes()));
    rs.backend()
        .await
        .batch_execute("DROP TABLE public.cust")
        .await
        .unwrap();
    let out = rs.replay(txn(2, &[&insert(2, "b")]).as_bytes());
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let err = &out.stderr;
    assert!(
        err.contains("public.cust") && err.contains("does not exist") && err.contains("recreate"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_loads_the_rest_and_keeps_the_rejected_rows() {
    let _sim = Stack::sim_shared().await;
    let rs = ReDms::redshift("eo_quarantine")
        .await
        .option("tables.\"public.dates\"", "on_reject = \"quarantine\"")
        .build();
    let input = "BEGIN 1\n\
        table public.dates: INSERT: id[integer]:1 d[date]:'2024-01-01'\n\
        table public.dates: INSERT: id[integer]:2 d[date]:'2024-02-30'\n\
        table public.dates: INSERT: id[integer]:3 d[date]:'2024-03-01'\n\
        table public.cust: INSERT: id[integer]:1 name[text]:'a'\n\
        COMMIT 1\n";
    let out = rs.replay(input.as_bytes());
    assert_ok(&out);
    assert!(out.stderr.contains("quarantined"), "{}", out.stderr);
    let mut dates = rs
        .backend_rows("public.dates", &["id".to_string(), "d".to_string()])
        .await;
    dates.sort();
    assert_eq!(
        dates,
        [
            vec![Some("1".to_string()), Some("2024-01-01".to_string())],
            vec![Some("3".to_string()), Some("2024-03-01".to_string())],
        ]
    );
    assert_eq!(cust(&rs, "public.cust").await, [row(1, "a")]);
    let rejected = rs
        .backend()
        .await
        .query(
            "SELECT source_table, colname, raw_line, dead_letter FROM re_dms.rejected",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rejected.len(), 1);
    let r = &rejected[0];
    assert_eq!(r.get::<_, String>(0), "public.dates");
    assert_eq!(r.get::<_, String>(1), "d");
    assert!(r.get::<_, String>(2).contains("2024-02-30"));
    let dead_letter: String = r.get(3);
    let stack = Stack::get();
    let key = dead_letter
        .strip_prefix(&format!("s3://{}/", stack.s3_bucket))
        .unwrap()
        .to_string();
    let body = stack
        .s3_client()
        .get_object()
        .bucket(&stack.s3_bucket)
        .key(&key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("2024-02-30"),
        "dead letter {key}"
    );
}

/// A version 1 WAL segment (20-byte header, no lineage) holding `messages` after a snapshot.
fn v1_segment(id: u64, messages: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"REDMSWAL");
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    let snapshot = r#"{"starts_in_txn":false,"next_local_lsn":1,"schema":{"tables":{}}}"#;
    let records = std::iter::once((2u8, snapshot)).chain(messages.iter().map(|m| (1u8, *m)));
    for (lsn, (kind, payload)) in records.enumerate() {
        let mut body = vec![kind];
        body.extend_from_slice(&(lsn as u64).to_le_bytes());
        body.extend_from_slice(payload.as_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        out.extend_from_slice(&body);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_and_wal_from_before_lineages_upgrade_without_reapplying_or_skipping() {
    let _sim = Stack::sim_shared().await;
    let rs = ReDms::redshift("eo_upgrade").await.build();
    // What the previous release left after a crash between its commit and its WAL cleanup:
    // segment 1 applied (its ledger row has no lineage) and still in the WAL.
    rs.backend()
        .await
        .batch_execute(
            "CREATE SCHEMA re_dms; CREATE TABLE re_dms.applied (source_table VARCHAR(1024), \
             target_table VARCHAR(1024), segment BIGINT, first_lsn VARCHAR(32), \
             last_lsn VARCHAR(32), rows_upserted BIGINT, rows_deleted BIGINT, \
             rows_updated BIGINT, applied_at TIMESTAMP); \
             INSERT INTO re_dms.applied VALUES ('public.cust', 'public.cust', 1, '0/1', '0/3', \
             1, 0, 0, now()); \
             CREATE TABLE public.cust (id integer, name varchar(65535)); \
             INSERT INTO public.cust VALUES (1, 'changed since')",
        )
        .await
        .unwrap();
    std::fs::create_dir_all(rs.wal_dir()).unwrap();
    let seg = v1_segment(
        1,
        &[
            "BEGIN 1",
            &format!("table public.cust: {}", insert(1, "a")),
            "COMMIT 1",
        ],
    );
    std::fs::write(rs.wal_dir().join("00000000000000000001.wal"), seg).unwrap();
    std::fs::write(
        rs.wal_dir().join("state.json"),
        r#"{"next_segment_id":2,"next_local_lsn":4,"schema":{"tables":{}}}"#,
    )
    .unwrap();

    assert_ok(&rs.replay(txn(2, &[&insert(2, "b")]).as_bytes()));
    assert_eq!(
        cust(&rs, "public.cust").await,
        [row(1, "changed since"), row(2, "b")],
        "segment 1 was applied again, or the new segment skipped"
    );
    let ledger: Vec<(Option<String>, i64)> = rs
        .backend()
        .await
        .query(
            "SELECT lineage::text, segment FROM re_dms.applied ORDER BY segment",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(ledger.len(), 2, "{ledger:?}");
    assert_eq!(ledger[0], (None, 1));
    assert_eq!(ledger[1].1, 2);
    assert!(ledger[1].0.as_ref().is_some_and(|l| l.len() == 32));
    assert!(
        rs.wal_segments().is_empty(),
        "the legacy segment was cleaned up"
    );
}
