//! The live source end to end: `re_dms` streaming from a replication slot of the stack's source
//! into the local target, compared with the source row by row; the slot's confirmed position
//! following what the WAL holds, idle included; kill -9 at random moments while the source is
//! busy, each time started again, ending exact; the source server restarting under it; SIGTERM
//! ending with exit 0.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::harness::binary::{Builder, Running};
use crate::harness::model::Field;
use crate::harness::postgres::Postgres;
use crate::harness::slot::{confirmed_past, insert_lsn, slot_ready};
use crate::harness::stack::{connect, wait_until, Stack, TestDb};
use crate::harness::{free_port, http_get, ReDms};

const WAIT: Duration = Duration::from_secs(60);
/// How many times the kill -9 test kills re_dms while the source is busy.
const KILLS: u64 = 12;

/// The local target's rows of `public.t` sorted by id (as text); `None` while a segment is
/// still being written.
fn target_rows(re: &ReDms) -> Option<Vec<Vec<Field>>> {
    if let Ok(dir) = std::fs::read_dir(re.out_dir()) {
        for entry in dir {
            if !entry.ok()?.path().join("manifest.json").exists() {
                return None;
            }
        }
    }
    let model = re.model();
    Some(
        model
            .tables
            .get("public.t")
            .map(|t| t.sorted(&["id"]))
            .unwrap_or_default(),
    )
}

async fn source_rows(c: &Client) -> Vec<Vec<Field>> {
    let mut rows: Vec<Vec<Field>> = c
        .query("SELECT id::text, v FROM public.t", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| vec![r.get::<_, Option<String>>(0), r.get::<_, Option<String>>(1)])
        .collect();
    rows.sort();
    rows
}

/// Waits until the local target holds exactly what the source holds; after [`WAIT`], kills
/// `run` and fails with its stderr.
async fn wait_equal(re: &ReDms, c: &Client, run: Running) -> Running {
    let want = source_rows(c).await;
    let deadline = Instant::now() + WAIT;
    while target_rows(re).as_ref() != Some(&want) {
        if Instant::now() >= deadline {
            let out = run.kill_9();
            panic!(
                "the target is not equal to the source after {WAIT:?}; re_dms said:\n{}",
                out.stderr
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run
}

/// Builds `builder`, starts re_dms streaming and waits until it reads `slot` (past creation).
async fn start_live(builder: Builder, c: &Client, slot: &str) -> (ReDms, Running) {
    let re = builder.build();
    let run = re.spawn_live();
    wait_until(WAIT, "re_dms streaming from its slot", || {
        slot_ready(c, slot)
    })
    .await;
    (re, run)
}

/// Transaction `n` of a small mixed workload: inserts, an update of an earlier row, now and
/// then a delete and a TOAST-sized value.
async fn transaction(c: &Client, n: i32) {
    let big = if n % 7 == 0 {
        "x".repeat(5000)
    } else {
        format!("v{n}")
    };
    c.batch_execute(&format!(
        "BEGIN;
         INSERT INTO public.t VALUES ({a}, 'row {a}'), ({b}, '{big}');
         UPDATE public.t SET v = v || ' updated' WHERE id = {upd};
         DELETE FROM public.t WHERE id = {del};
         COMMIT;",
        a = 2 * n,
        b = 2 * n + 1,
        upd = n,
        del = if n % 3 == 0 { n / 2 } else { -1 },
    ))
    .await
    .unwrap();
}

/// re_dms streaming `db` into the local target with 1 s segments, reading its slot (see
/// [`start_live`]); with the slot's name.
async fn stream_local(db: &TestDb, c: &Client) -> (ReDms, Running, String) {
    let slot = db.slot();
    let builder = ReDms::local().live_from(db).segment_max_age_secs(1);
    let (re, run) = start_live(builder, c, &slot).await;
    (re, run, slot)
}

async fn new_source(name: &str) -> (TestDb, Client) {
    let db = Stack::get().new_source_db(name).await;
    let c = connect(&db.url).await;
    c.batch_execute("CREATE TABLE public.t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    (db, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_stream_loads_exactly_and_confirms_what_the_wal_holds() {
    let (db, c) = new_source("live_basic").await;
    let (re, run, slot) = stream_local(&db, &c).await;
    for n in 1..=40 {
        transaction(&c, n).await;
    }
    let end = insert_lsn(&c).await;
    let run = wait_equal(&re, &c, run).await;

    // Idle now: the slot is confirmed up to the server's WAL end, past the last commit.
    wait_until(WAIT, "confirmed_flush_lsn past the last commit", || {
        confirmed_past(&c, &slot, &end)
    })
    .await;

    // `status` shows the slot, its position and its lag, and where the WAL ends.
    let status = re.status_json();
    let slot_status = &status["slot"];
    assert_eq!(slot_status["active"], true, "{status}");
    assert!(
        slot_status["lag_bytes"].as_i64().is_some_and(|b| b >= 0),
        "{status}"
    );
    assert!(slot_status["confirmed_flush_lsn"].is_string(), "{status}");
    assert_ne!(status["wal_last_commit_lsn"], "0/0", "{status}");

    let out = run.stop_cleanly(WAIT);
    assert!(re.wal_segments().is_empty(), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_while_streaming_then_restarts_end_exact() {
    let (db, c) = new_source("live_kill").await;
    let (re, mut run, _) = stream_local(&db, &c).await;
    // The workload runs until the last kill: every kill lands while the source is busy.
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let url = db.url.clone();
    let writing = std::sync::Arc::clone(&busy);
    let writer = tokio::spawn(async move {
        let c = connect(&url).await;
        // Paced (a transaction every 5 ms at most): enough to be busy at every kill, few
        // enough rows for the comparison at the end.
        let mut pace = tokio::time::interval(Duration::from_millis(5));
        let mut n = 0;
        while writing.load(std::sync::atomic::Ordering::Relaxed) {
            pace.tick().await;
            n += 1;
            transaction(&c, n).await;
        }
        n
    });
    for kill in 0..KILLS {
        // A moment of its own each time, between 0.2 and 1.2 s into the run.
        let at = 200 + (kill * 7919 + 311) % 1000;
        tokio::time::sleep(Duration::from_millis(at)).await;
        assert!(
            !writer.is_finished(),
            "kill {kill}: the workload ended early"
        );
        let killed = run.kill_9();
        assert!(
            !killed.stderr.contains("panicked"),
            "kill {kill}: {}",
            killed.stderr
        );
        run = re.spawn_live();
    }
    busy.store(false, std::sync::atomic::Ordering::Relaxed);
    let transactions = writer.await.unwrap();
    assert!(transactions > 100, "only {transactions} transactions");
    let run = wait_equal(&re, &c, run).await;
    run.stop_cleanly(WAIT);
}

/// Ingest held just before its fsync (`wal.before_sync`): the slot is never confirmed past
/// what the WAL holds durably, so after kill -9 the transaction is streamed again and loaded.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_confirmed_to_the_slot_before_the_wal_fsync() {
    let (db, c) = new_source("live_ack").await;
    let slot = db.slot();
    let (mut re, mut run) = start_live(
        ReDms::local()
            .live_from(&db)
            .segment_max_age_secs(1)
            .failpoints("wal.before_sync=return"),
        &c,
        &slot,
    )
    .await;
    transaction(&c, 1).await;
    let end = insert_lsn(&c).await;
    run.wait_for_failpoint("wal.before_sync", WAIT);
    // Several status updates (one a second) go out while ingest is held.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !confirmed_past(&c, &slot, &end).await,
            "the slot was confirmed past a transaction the WAL does not hold"
        );
    }
    run.kill_9();
    re.set_failpoints(None);
    let run = wait_equal(&re, &c, re.spawn_live()).await;
    assert_eq!(target_rows(&re).unwrap().len(), 2);
    run.stop_cleanly(WAIT);
}

/// A slot dropped behind re_dms's back is never re-created (that would skip every change made
/// since): the start fails saying so. A fresh directory with `create_slot = false` and no slot
/// fails too, naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_slot_is_a_fatal_error_not_a_silent_re_create() {
    let (db, c) = new_source("live_dropped").await;
    let (re, run, slot) = stream_local(&db, &c).await;
    transaction(&c, 1).await;
    let run = wait_equal(&re, &c, run).await;
    run.stop_cleanly(WAIT);

    c.execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .unwrap();
    transaction(&c, 2).await;
    let out = re.spawn_live().wait(WAIT);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("is gone") && out.stderr.contains("would skip every change"),
        "{}",
        out.stderr
    );
    let slots: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, 0, "the slot was re-created");

    let fresh = ReDms::local()
        .live_from(&db)
        .option("source", "create_slot = false")
        .build();
    let out = fresh.spawn_live().wait(WAIT);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("create_slot = false"), "{}", out.stderr);
}

/// Nothing happens in re_dms's database while a neighbour on the same server writes: the slot's
/// confirmed position still follows the server's WAL, so the source does not keep WAL for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_slot_is_confirmed_while_another_database_writes() {
    let (db, c) = new_source("live_idle").await;
    let (neighbour, n) = new_source("live_idle_neighbour").await;
    let slot = db.slot();
    let (re, run) = start_live(ReDms::local().live_from(&db), &c, &slot).await;
    for i in 1..=200 {
        transaction(&n, i).await;
    }
    let end = insert_lsn(&n).await;
    wait_until(
        WAIT,
        "the idle slot confirmed past the neighbour's writes",
        || confirmed_past(&c, &slot, &end),
    )
    .await;
    assert!(
        re.wal_segments().is_empty(),
        "nothing of the neighbour's reached the WAL"
    );
    drop(neighbour);
    run.stop_cleanly(WAIT);
}

/// The server ends re_dms's replication connection between transactions (as a restart or a
/// failover would): re_dms reconnects by itself and goes on from where the WAL ends, with
/// nothing lost or repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_server_ends_between_transactions_is_reopened() {
    let (db, c) = new_source("live_reconnect").await;
    let (re, run, slot) = stream_local(&db, &c).await;
    for n in 1..=10 {
        transaction(&c, n).await;
    }
    let mut run = run;
    for round in 0..2 {
        // Between transactions: everything written so far is streamed (and loaded).
        wait_until(WAIT, "re_dms reading its slot", || slot_ready(&c, &slot)).await;
        run = wait_equal(&re, &c, run).await;
        let ended: i64 = c
            .query_one(
                "SELECT count(pg_terminate_backend(active_pid)) FROM pg_replication_slots \
                 WHERE slot_name = $1 AND active_pid IS NOT NULL",
                &[&slot],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(ended, 1, "round {round}: the walsender was not running");
        for n in 11 + 10 * round..=20 + 10 * round {
            transaction(&c, n).await;
        }
    }
    let run = wait_equal(&re, &c, run).await;
    assert!(slot_ready(&c, &slot).await, "re_dms reads the slot again");
    let out = run.stop_cleanly(WAIT);
    assert!(
        out.stderr.contains("reconnecting"),
        "the reconnects are logged:\n{}",
        out.stderr
    );
}

/// The PID of the walsender streaming `slot`, if one does.
async fn active_pid(c: &Client, slot: &str) -> Option<i32> {
    c.query_one(
        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
        &[&slot],
    )
    .await
    .unwrap()
    .get(0)
}

/// The server ends re_dms's replication connection while a large transaction streams: its
/// first part is in the WAL, so re_dms starts itself again in place (the process goes on, no
/// exit for systemd to count), recovery drops that part, and the transaction arrives again
/// whole: the target ends exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_inside_a_transaction_restarts_in_place() {
    let (db, c) = new_source("live_lost_in_txn").await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let slot = db.slot();
    let builder = ReDms::local()
        .live_from(&db)
        .segment_max_age_secs(1)
        .option("metrics", &format!("listen = \"{metrics}\""));
    let (re, run) = start_live(builder, &c, &slot).await;
    transaction(&c, 1).await;
    let run = wait_equal(&re, &c, run).await;
    // The connection must end while a transaction streams; if the whole of one arrived first
    // (a race this test can lose), try again with the next.
    for attempt in 0..4 {
        let first = 1_000_000 + attempt * 200_000;
        c.batch_execute(&format!(
            "INSERT INTO public.t SELECT g, 'big ' || g FROM generate_series({first}, {}) g",
            first + 199_999
        ))
        .await
        .unwrap();
        let early = format!("id[integer]:{} ", first + 100);
        wait_until(
            WAIT,
            "the large transaction's first rows in the WAL",
            || async { re.wal_contains(early.as_bytes()) },
        )
        .await;
        let walsender = active_pid(&c, &slot).await;
        let _: Option<bool> = c
            .query_one("SELECT pg_terminate_backend($1)", &[&walsender])
            .await
            .unwrap()
            .get(0);
        // Streaming again on a new connection: a restart in place logs before it connects.
        wait_until(WAIT, "re_dms streaming again", || async {
            active_pid(&c, &slot)
                .await
                .is_some_and(|p| Some(p) != walsender)
        })
        .await;
        if run.logged("restarting in place") {
            break;
        }
    }
    assert!(
        run.logged("restarting in place"),
        "the connection never ended inside a transaction"
    );
    let mut run = wait_equal(&re, &c, run).await;
    assert!(!run.exited(), "re_dms restarted in place, it did not exit");
    // The new image serves its figures on the same port, and says how it came to be.
    let (status, scrape) = http_get(&metrics, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    assert!(
        scrape.lines().any(|l| l == "re_dms_restarts_in_place 1"),
        "{scrape}"
    );
    transaction(&c, 2).await;
    let run = wait_equal(&re, &c, run).await;
    let out = run.stop_cleanly(WAIT);
    assert!(
        out.stderr.contains("lost inside a transaction"),
        "why is logged:\n{}",
        out.stderr
    );
}

/// The source server itself restarts mid-run, once shut down cleanly and once crashed
/// (`immediate`): re_dms keeps running, reconnects when the server is back, and goes on from
/// where its WAL ends, with nothing lost or repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_server_restarts_mid_run() {
    let pg = Postgres::start(
        "live_restart",
        "wal_level = logical\nmax_replication_slots = 4\nmax_wal_senders = 4",
        "local all all trust\nhost all all 127.0.0.1/32 trust\n\
         host replication all 127.0.0.1/32 trust\n",
    )
    .unwrap_or_else(|e| panic!("PostgreSQL 15: {e}"));
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port);
    let c = connect(&url).await;
    c.batch_execute("CREATE TABLE public.t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let slot = "restart_slot";
    let (re, mut run) = start_live(
        ReDms::local()
            .option(
                "source",
                &format!("connection = \"{}\"", pg.conninfo("host=127.0.0.1")),
            )
            .option("source", &format!("slot = \"{slot}\""))
            .option("source", "status_interval_secs = 1")
            .segment_max_age_secs(1),
        &c,
        slot,
    )
    .await;
    let mut n = 0;
    for mode in ["fast", "immediate"] {
        let c = connect(&url).await;
        for _ in 0..15 {
            n += 1;
            transaction(&c, n).await;
        }
        run = wait_equal(&re, &c, run).await;
        pg.stop(mode)
            .unwrap_or_else(|e| panic!("stop ({mode}): {e}"));
        // Down for a few status intervals: re_dms waits for it, it does not exit.
        tokio::time::sleep(Duration::from_secs(3)).await;
        if run.exited() {
            let out = run.wait(WAIT);
            panic!(
                "re_dms exited while the source was down ({mode}):\n{}",
                out.stderr
            );
        }
        pg.start_again().unwrap_or_else(|e| panic!("{e}"));
    }
    let c = connect(&url).await;
    wait_until(WAIT, "re_dms reading its slot again", || {
        slot_ready(&c, slot)
    })
    .await;
    for _ in 0..15 {
        n += 1;
        transaction(&c, n).await;
    }
    let run = wait_equal(&re, &c, run).await;
    let out = run.stop_cleanly(WAIT);
    assert!(
        out.stderr.contains("reconnecting"),
        "the reconnects are logged:\n{}",
        out.stderr
    );
}
