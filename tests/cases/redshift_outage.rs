//! Redshift going away and coming back, re_dms dying at the worst moments, a table whose rows
//! Redshift rejects, and S3 down at start. Maintenance mode and the statement log belong to the
//! whole redshift-sim, so the tests that use them hold it alone ([`Stack::sim_exclusive`]).

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

#[cfg(not(feature = "failpoints"))]
use std::io::{Read, Seek, SeekFrom};
#[cfg(not(feature = "failpoints"))]
use std::path::PathBuf;

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::harness::stack::{connect, SimLease, Stack};
use crate::harness::workload::{Kind, Workload};
use crate::harness::{wait_until, ReDms};

/// Switches maintenance off when dropped (also when the test panics).
struct MaintenanceOff;

impl Drop for MaintenanceOff {
    fn drop(&mut self) {
        Stack::get().set_maintenance(false);
    }
}

/// The sim to this test alone; prints how long the test took, waiting for the sim and stack
/// start-up left out.
struct Alone {
    since: Instant,
    _sim: SimLease,
}

impl Alone {
    async fn start() -> Self {
        let sim = Stack::sim_exclusive().await;
        Self {
            since: Instant::now(),
            _sim: sim,
        }
    }
}

impl Drop for Alone {
    fn drop(&mut self) {
        eprintln!(
            "{}: {:?}",
            std::thread::current().name().unwrap_or("test"),
            self.since.elapsed()
        );
    }
}

/// The statements the sim logs from now on, read incrementally.
#[cfg(not(feature = "failpoints"))]
struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: String,
}

#[cfg(not(feature = "failpoints"))]
impl LogTail {
    fn from_now() -> Self {
        let path = Stack::get().statement_log.clone();
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Self {
            path,
            offset,
            partial: String::new(),
        }
    }

    /// Complete lines logged since the last call.
    fn new_lines(&mut self) -> Vec<String> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        f.seek(SeekFrom::Start(self.offset)).unwrap();
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).unwrap();
        self.offset += buf.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        let mut lines: Vec<String> = self.partial.split('\n').map(str::to_string).collect();
        self.partial = lines.pop().unwrap_or_default();
        lines
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_window_mid_run_is_retried_until_it_passes() {
    let _alone = Alone::start().await;
    let stack = Stack::get();
    // ~3.7 MB of input in 64 KiB segments: about 60 segments of 3 tables each, several seconds.
    let mut w = Workload::three_tables(11);
    let text = w.generate(30_000).take_text();
    let rs = ReDms::redshift("outage_maintenance")
        .await
        .segment_max_bytes(65536)
        .build();
    let mut run = rs.spawn(text.into_bytes());

    // The first table-segment committed (read through the backend, bypassing the sim).
    wait_until(Duration::from_secs(30), "a first ledger row", || async {
        !rs.ledger().await.is_empty()
    })
    .await;
    assert!(
        !run.exited(),
        "the run finished before maintenance could start; make the input larger"
    );
    let _off = MaintenanceOff;
    stack.set_maintenance(true);
    let on = Instant::now();
    let at_start = rs.ledger().await.len();
    // Whatever was in flight when it started is rolled back or finished within a moment (the
    // sim checks the file every 100 ms, and lets a COPY it runs finish); after that nothing
    // may commit until maintenance ends.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = rs.ledger().await.len();
    tokio::time::sleep(Duration::from_secs(15).saturating_sub(on.elapsed())).await;
    let at_end = rs.ledger().await.len();
    assert!(!run.exited(), "re_dms gave up during maintenance");
    stack.set_maintenance(false);
    let off = Instant::now();
    assert_eq!(
        settled, at_end,
        "table-segments committed while the cluster was in maintenance"
    );

    let done = run.wait(Duration::from_secs(120));
    eprintln!(
        "ledger rows: {at_start} when maintenance began, {at_end} when it ended; run finished \
         {:?} after it ended",
        off.elapsed()
    );
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        done.stderr.contains("retrying"),
        "no retry was logged:\n{}",
        done.stderr
    );
    rs.assert_workload(&w).await;
    let ledger = rs.assert_ledger_unique().await;
    assert!(
        ledger.len() > at_end,
        "loading went on after maintenance ended"
    );
    assert!(rs.wal_segments().is_empty(), "loaded segments are deleted");
}

/// Where [`kill_then_restart`] kills re_dms.
struct KillAt {
    /// `failpoints` feature: the fault point it is stopped at.
    #[cfg(feature = "failpoints")]
    failpoint: &'static str,
    /// Without it: the sim's statement log is polled for a statement starting with this.
    #[cfg(not(feature = "failpoints"))]
    statement: &'static str,
}

/// Starts re_dms on a segment (default settings: the whole input is one segment, so it is all
/// in the WAL before the first statement of its load), kills it with SIGKILL at `at`, restarts
/// it with an empty stdin (recovery re-delivers the WAL) and checks the warehouse is exact with
/// nothing applied twice.
///
/// With the `failpoints` feature re_dms stops at the fault point and waits there to be killed.
/// Without it, the sim's statement log is polled every 2 ms and the kill lands a moment after
/// the statement was logged.
async fn kill_then_restart(name: &str, seed: u64, at: KillAt) {
    let _alone = Alone::start().await;
    let mut w = Workload::three_tables(seed);
    #[cfg_attr(not(feature = "failpoints"), allow(unused_mut))]
    let mut rs = ReDms::redshift(name).await.build();
    // Rows already in the warehouse, so the killed load has deletes and updates of loaded rows.
    let out = rs.replay(w.generate(1_000).take_text().as_bytes());
    assert!(out.status.success(), "{}", out.stderr);

    let text = w.generate(5_000).take_text();
    #[cfg(feature = "failpoints")]
    let (run, seen) = {
        rs.set_failpoints(Some(&format!("{}=return", at.failpoint)));
        let mut run = rs.spawn(text.into_bytes());
        run.wait_for_failpoint(at.failpoint, Duration::from_secs(30));
        rs.set_failpoints(None);
        (run, format!("failpoint {}", at.failpoint))
    };
    #[cfg(not(feature = "failpoints"))]
    let (run, seen) = {
        let trigger = at.statement;
        let mut log = LogTail::from_now();
        let mut run = rs.spawn(text.into_bytes());
        let deadline = Instant::now() + Duration::from_secs(30);
        let seen = 'poll: loop {
            for l in log.new_lines() {
                if l.starts_with(trigger) {
                    break 'poll l;
                }
            }
            assert!(!run.exited(), "re_dms exited before `{trigger}` was logged");
            assert!(Instant::now() < deadline, "no `{trigger}` within 30 s");
            std::thread::sleep(Duration::from_millis(2));
        };
        (run, seen)
    };
    let killed = run.kill_9();
    assert_eq!(
        killed.status.signal(),
        Some(9),
        "re_dms was killed (not already finished): {:?}\n{}",
        killed.status,
        killed.stderr
    );
    let after_kill = rs.ledger().await;
    eprintln!(
        "{name}: killed on {:.60}...; {} ledger rows then (3 from the first run)",
        seen,
        after_kill.len(),
    );
    assert!(!rs.wal_segments().is_empty(), "the WAL keeps the segment");

    // The kill may land before the table's COMMIT reached the sim or after it: either the
    // transaction rolled back (no ledger row: the restart loads it again) or it committed (its
    // ledger row makes the restart skip it). The assertions below hold in both cases.
    let done = rs.spawn(Vec::new()).wait(Duration::from_secs(60));
    assert!(done.status.success(), "{}", done.stderr);
    rs.assert_workload(&w).await;
    let ledger = rs.assert_ledger_unique().await;
    let mut segments: Vec<i64> = ledger.iter().map(|(_, s)| *s).collect();
    segments.sort_unstable();
    segments.dedup();
    assert_eq!(
        ledger.len(),
        3 * segments.len(),
        "every table once per segment: {ledger:?}"
    );
    assert_eq!(segments.len(), 2, "one segment per run: {ledger:?}");
    assert!(rs.wal_segments().is_empty(), "loaded segments are deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_copy_and_commit_then_restart_applies_once() {
    let at = KillAt {
        // A COPY into a staging table ran, inside the load transaction.
        #[cfg(feature = "failpoints")]
        failpoint: "apply.after_copy",
        #[cfg(not(feature = "failpoints"))]
        statement: "COPY ",
    };
    kill_then_restart("outage_kill_copy", 21, at).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_commit_and_wal_cleanup_then_restart_applies_once() {
    // The ledger row is the last statement of a table-segment's transaction: the kill lands
    // just before or just after its COMMIT, before the WAL segment is deleted either way. With
    // failpoints: just before (every statement ran, the ledger row's included; COMMIT not sent).
    let at = KillAt {
        #[cfg(feature = "failpoints")]
        failpoint: "apply.before_commit",
        #[cfg(not(feature = "failpoints"))]
        statement: "INSERT INTO re_dms.applied",
    };
    kill_then_restart("outage_kill_ledger", 22, at).await;
}

/// The other side of the COMMIT, which only a fault point reaches for sure: the load committed
/// (its ledger row with it) and the WAL segment is not deleted yet.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_commit_before_wal_cleanup_then_restart_applies_once() {
    let at = KillAt {
        failpoint: "apply.after_commit",
    };
    kill_then_restart("outage_kill_committed", 23, at).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_rows_stop_their_table_keep_the_segment_and_load_the_others() {
    let _alone = Alone::start().await;
    let mut w = Workload::new(
        31,
        vec![
            (
                "public.good",
                vec![("id", Kind::Int), ("label", Kind::Text), ("n", Kind::Int)],
            ),
            ("public.narrow", vec![("id", Kind::Int), ("v", Kind::Text)]),
            ("public.baddate", vec![("id", Kind::Int), ("d", Kind::Date)]),
        ],
    );
    w.generate(1_500);
    // A date the warehouse cannot parse: its COPY fails (a stl_load_errors row).
    w.begin();
    w.insert_raw(2, &["'2024-02-30'"], vec![None]);
    w.commit();
    let text = w.take_text();

    let rs = ReDms::redshift("outage_definite").await.build();
    // The warehouse table exists already, with a column too narrow for the source's text:
    // staging works, the INSERT into it fails (value too long).
    let c = connect(&rs.db().url).await;
    c.batch_execute("CREATE TABLE public.narrow (id integer, v varchar(3))")
        .await
        .unwrap();

    let done = rs.spawn(text.into_bytes()).wait(Duration::from_secs(60));
    eprintln!("{}", done.stderr);
    assert_eq!(done.status.code(), Some(1), "{}", done.stderr);
    let last = done.stderr.lines().last().unwrap_or_default().to_string();
    assert!(
        last.contains("table public.narrow") || last.contains("table public.baddate"),
        "the final message names the table: {last}"
    );
    // Both failures are reported, each with its table and the warehouse's detail.
    let line_of = |table: &str| {
        done.stderr
            .lines()
            .find(|l| l.contains(&format!("table {table}:")))
            .unwrap_or_else(|| panic!("no error for {table}:\n{}", done.stderr))
            .to_string()
    };
    let narrow = line_of("public.narrow");
    assert!(
        narrow.contains("value too long for type character varying(3)"),
        "{narrow}"
    );
    let baddate = line_of("public.baddate");
    assert!(baddate.contains("stl_load_errors"), "{baddate}");
    assert!(
        baddate.contains("column d"),
        "the load error's detail: {baddate}"
    );

    // Nothing lost: the segment stays in the WAL; the other table is loaded and recorded.
    assert_eq!(rs.wal_segments().len(), 1, "the WAL keeps the segment");
    assert!(rs.wal_contains(b"table public.narrow: INSERT"));
    assert!(rs.wal_contains(b"'2024-02-30'"));
    rs.assert_table(&w.tables[0]).await;
    let ledger = rs.ledger().await;
    assert_eq!(ledger, vec![("public.good".to_string(), ledger[0].1)]);
    for t in ["public.narrow", "public.baddate"] {
        let n: i64 = rs
            .backend()
            .await
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{t}: its load rolled back");
    }

    // Once the operator widens the column, the next start loads the narrow table from the
    // kept segment (the good one is not applied again); the bad date still stops its table.
    c.batch_execute("ALTER TABLE public.narrow ALTER COLUMN v TYPE varchar(65535)")
        .await
        .unwrap();
    let again = rs.spawn(Vec::new()).wait(Duration::from_secs(60));
    assert_eq!(again.status.code(), Some(1), "{}", again.stderr);
    assert!(
        again.stderr.contains("table public.baddate:"),
        "{}",
        again.stderr
    );
    assert!(
        !again.stderr.contains("table public.narrow:"),
        "{}",
        again.stderr
    );
    rs.assert_table(&w.tables[0]).await;
    rs.assert_table(&w.tables[1]).await;
    let ledger = rs.assert_ledger_unique().await;
    let tables: Vec<&str> = ledger.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tables, ["public.good", "public.narrow"]);
    assert_eq!(
        rs.wal_segments().len(),
        1,
        "the WAL still keeps the segment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_table_does_not_hold_back_the_others_in_later_segments() {
    let _alone = Alone::start().await;
    let mut w = Workload::new(
        32,
        vec![
            (
                "public.good",
                vec![("id", Kind::Int), ("label", Kind::Text)],
            ),
            ("public.narrow", vec![("id", Kind::Int), ("v", Kind::Text)]),
        ],
    );
    w.generate(3_000);
    let text = w.take_text();
    let rs = ReDms::redshift("outage_lanes")
        .await
        .segment_max_bytes(32768)
        .build();
    let c = connect(&rs.db().url).await;
    c.batch_execute("CREATE TABLE public.narrow (id integer, v varchar(3))")
        .await
        .unwrap();

    let done = rs.spawn(text.into_bytes()).wait(Duration::from_secs(120));
    assert_eq!(done.status.code(), Some(1), "{}", done.stderr);
    assert!(
        done.stderr.contains("table public.narrow:"),
        "{}",
        done.stderr
    );
    // The good table went on through every segment after the narrow one stopped.
    rs.assert_table(&w.tables[0]).await;
    let ledger = rs.assert_ledger_unique().await;
    let count = |t: &str| ledger.iter().filter(|(n, _)| n == t).count();
    let (good, narrow) = (count("public.good"), count("public.narrow"));
    assert!(good >= 3, "the workload spans several segments: {ledger:?}");
    assert!(narrow < good, "the narrow table stopped: {ledger:?}");
    // Every segment from the narrow table's failure on stays in the WAL, even those whose
    // good-table part is loaded.
    assert_eq!(
        rs.wal_segments().len() + narrow,
        good,
        "segments kept: {:?}, ledger: {ledger:?}",
        rs.wal_segments()
    );

    // Fixed by the operator: the restart loads the rest of the narrow table only.
    c.batch_execute("ALTER TABLE public.narrow ALTER COLUMN v TYPE varchar(65535)")
        .await
        .unwrap();
    let again = rs.spawn(Vec::new()).wait(Duration::from_secs(120));
    assert!(again.status.success(), "{}", again.stderr);
    rs.assert_workload(&w).await;
    let ledger = rs.assert_ledger_unique().await;
    let count = |t: &str| ledger.iter().filter(|(n, _)| n == t).count();
    assert_eq!(count("public.narrow"), good, "{ledger:?}");
    assert_eq!(count("public.good"), good, "{ledger:?}");
    assert!(rs.wal_segments().is_empty(), "loaded segments are deleted");
}

/// The last row change of a capture's text (reaching the WAL means all of it did).
fn last_change(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| l.starts_with("table "))
        .expect("a row change in the text")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_goes_on_while_redshift_is_away() {
    let _alone = Alone::start().await;
    let stack = Stack::get();
    // ~7 MB in 256 KiB segments: far more segments than the stages between ingest and the
    // target hold, so all of it reaches the WAL only if ingest does not wait for Redshift.
    let mut w = Workload::three_tables(41);
    let text = w.generate(60_000).take_text();
    let last = last_change(&text);
    let rs = ReDms::redshift("outage_spill")
        .await
        .segment_max_bytes(262144)
        .build();
    let _off = MaintenanceOff;
    stack.set_maintenance(true);
    let mut run = rs.spawn(text.into_bytes());

    let deadline = Instant::now() + Duration::from_secs(90);
    while !rs.wal_contains(last.as_bytes()) {
        assert!(!run.exited(), "re_dms exited while Redshift was away");
        assert!(
            Instant::now() < deadline,
            "the input did not reach the WAL while Redshift was away"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let segments = rs.wal_segments().len();
    assert!(
        segments >= 20,
        "only {segments} segments: make the input larger"
    );
    assert!(rs.ledger().await.is_empty(), "nothing loads in maintenance");
    stack.set_maintenance(false);

    let done = run.wait(Duration::from_secs(180));
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        done.stderr.contains("segment spilled to disk"),
        "{}",
        done.stderr
    );
    rs.assert_workload(&w).await;
    let ledger = rs.assert_ledger_unique().await;
    assert_eq!(
        ledger.len(),
        3 * segments,
        "every table of every segment, once"
    );
    assert!(rs.wal_segments().is_empty(), "loaded segments are deleted");
}

/// A loopback port, held from now until the test binary exits (so no other test can take it),
/// where a service comes up late: until `up` is set every connection is closed at once
/// (nothing answers), then each is forwarded to `to` (`host:port`), both ways.
fn late_service(to: &str) -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("its address").port();
    let up = Arc::new(AtomicBool::new(false));
    let (to, is_up) = (to.to_string(), Arc::clone(&up));
    std::thread::spawn(move || {
        for inbound in listener.incoming().flatten() {
            if !is_up.load(Ordering::SeqCst) {
                continue;
            }
            let Ok(outbound) = TcpStream::connect(&to) else {
                continue;
            };
            let (Ok(mut up_in), Ok(mut up_out)) = (inbound.try_clone(), outbound.try_clone())
            else {
                continue;
            };
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut up_in, &mut up_out);
                let _ = up_out.shutdown(std::net::Shutdown::Write);
            });
            let (mut down_in, mut down_out) = (outbound, inbound);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut down_in, &mut down_out);
                let _ = down_out.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_unreachable_at_start_is_a_warning_and_loads_wait_for_it() {
    let _sim = Stack::sim_shared().await;
    let stack = Stack::get();
    // Nothing answers at the endpoint re_dms is given until the forwarding starts below.
    let (port, s3_up) = late_service(
        stack
            .s3_endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/'),
    );
    let mut w = Workload::three_tables(43);
    let text = w.generate(4_000).take_text();
    let last = last_change(&text);
    let rs = ReDms::redshift("s3_down_at_start")
        .await
        .segment_max_bytes(262144)
        .build();
    rs.set_config_line(
        "endpoint = ",
        &format!("endpoint = \"http://127.0.0.1:{port}\""),
    );
    let mut run = rs.spawn(text.into_bytes());
    run.wait_for_log("S3 not reachable at start", Duration::from_secs(60));
    wait_until(
        Duration::from_secs(60),
        "the whole input in the WAL while S3 is down",
        || async { rs.wal_contains(last.as_bytes()) },
    )
    .await;
    assert!(!run.exited(), "re_dms exited while S3 was down");
    assert!(rs.ledger().await.is_empty(), "nothing loads without S3");

    s3_up.store(true, Ordering::SeqCst);
    let done = run.wait(Duration::from_secs(120));
    assert!(done.status.success(), "{}", done.stderr);
    rs.assert_workload(&w).await;
    rs.assert_ledger_unique().await;
    assert!(rs.wal_segments().is_empty(), "loaded segments are deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_error_ends_the_run_even_while_the_input_is_idle() {
    let _alone = Alone::start().await;
    let stack = Stack::get();
    let s3 = stack.s3_client();
    let bucket = format!("re-dms-gone-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let rs = ReDms::redshift("outage_fatal_idle")
        .await
        .segment_max_age_secs(1)
        .build();
    rs.set_config_line("bucket = ", &format!("bucket = \"{bucket}\""));

    let mut run = rs.spawn_open();
    run.write(b"BEGIN 1\ntable public.t: INSERT: id[integer]:1\nCOMMIT 1\n");
    wait_until(
        Duration::from_secs(30),
        "the first segment loaded",
        || async { !rs.ledger().await.is_empty() },
    )
    .await;

    // The bucket disappears (a fatal error), then one more transaction arrives; stdin stays
    // open and idle afterwards.
    let listed = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
    for o in listed.contents() {
        s3.delete_object()
            .bucket(&bucket)
            .key(o.key().unwrap())
            .send()
            .await
            .unwrap();
    }
    s3.delete_bucket().bucket(&bucket).send().await.unwrap();
    run.write(b"BEGIN 2\ntable public.t: INSERT: id[integer]:2\nCOMMIT 2\n");

    // Exits by itself (stdin still open); `wait` kills and fails the test after 60 s.
    let done = run.wait(Duration::from_secs(60));
    assert_eq!(done.status.code(), Some(1), "{}", done.stderr);
    assert!(done.stderr.contains("NoSuchBucket"), "{}", done.stderr);
    assert!(
        rs.wal_contains(b"table public.t: INSERT: id[integer]:2"),
        "the unloaded transaction stays in the WAL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_outage_stops_within_the_grace_period_and_keeps_the_wal() {
    let _alone = Alone::start().await;
    let stack = Stack::get();
    let rs = ReDms::redshift("outage_sigterm")
        .await
        .segment_max_age_secs(1)
        .build();
    let _off = MaintenanceOff;
    stack.set_maintenance(true);
    let mut run = rs.spawn_open();
    let line = b"table public.t: INSERT: id[integer]:1";
    run.write(b"BEGIN 1\n");
    run.write(line);
    run.write(b"\nCOMMIT 1\n");
    wait_until(Duration::from_secs(30), "the change in the WAL", || async {
        rs.wal_contains(line)
    })
    .await;
    // Let the segment age out and reach the (unreachable) target.
    wait_until(
        Duration::from_secs(30),
        "the segment handed to the target",
        || async {
            std::fs::read_dir(rs.wal_dir().join("spool")).is_ok_and(|mut d| d.next().is_some())
        },
    )
    .await;

    run.sigterm();
    // Stops within the grace period although Redshift is away; `wait` fails the test after 60 s.
    let done = run.wait(Duration::from_secs(60));
    // The input was still open: the run did not finish, and says so.
    done.assert_stopped_before_eof();
    assert!(
        rs.wal_contains(line),
        "the unloaded change stays in the WAL"
    );

    // Back from maintenance: the next start loads it.
    stack.set_maintenance(false);
    let done = rs.spawn(Vec::new()).wait(Duration::from_secs(120));
    assert!(done.status.success(), "{}", done.stderr);
    let rows = rs.backend_rows("public.t", &["id".into()]).await;
    assert_eq!(rows, vec![vec![Some("1".to_string())]]);
    assert!(rs.wal_segments().is_empty(), "loaded segments are deleted");
}
