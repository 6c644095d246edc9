//! re_dms under systemd's notify protocol (`Type=notify`), with a datagram socket of the test's
//! own standing in for systemd: no `READY=1` while the source is down (the WAL recovered, the
//! slot not connected), `READY=1` once the slot streams (and the slot is active by then),
//! `WATCHDOG=1` pings at half `WATCHDOG_USEC`, `STOPPING=1` on SIGTERM, exit 0.

use std::os::unix::net::UnixDatagram;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::postgres::Postgres;
use crate::harness::slot::slot_ready;
use crate::harness::stack::connect;
use crate::harness::ReDms;

const WAIT: Duration = Duration::from_secs(60);

/// Every datagram the socket at `path` receives, as text, on a thread of its own.
fn listen(path: &std::path::Path) -> mpsc::Receiver<String> {
    let socket = UnixDatagram::bind(path).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            if tx
                .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    rx
}

/// The first message holding `want` within `within`; every message before it is returned too.
fn wait_for(
    rx: &mpsc::Receiver<String>,
    want: &str,
    within: Duration,
) -> Result<Vec<String>, Vec<String>> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(m) if m.lines().any(|l| l == want) => {
                seen.push(m);
                return Ok(seen);
            }
            Ok(m) => seen.push(m),
            Err(_) => return Err(seen),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_once_the_slot_streams_then_watchdog_and_stopping() {
    let pg = Postgres::start(
        "notify",
        "wal_level = logical\nmax_replication_slots = 4\nmax_wal_senders = 4",
        "local all all trust\nhost all all 127.0.0.1/32 trust\n\
         host replication all 127.0.0.1/32 trust\n",
    )
    .unwrap_or_else(|e| panic!("PostgreSQL 15: {e}"));
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port);
    let slot = "notify_slot";
    let re = ReDms::local()
        .option(
            "source",
            &format!("connection = \"{}\"", pg.conninfo("host=127.0.0.1")),
        )
        .option("source", &format!("slot = \"{slot}\""))
        .build();
    pg.stop("fast").unwrap();

    let socket = re.dir().join("notify.sock");
    let rx = listen(&socket);
    let socket_path = socket.to_str().unwrap().to_string();
    let run = re.spawn_live_with_env(&[
        ("NOTIFY_SOCKET", &socket_path),
        ("WATCHDOG_USEC", "1000000"),
    ]);
    // The source is down: re_dms is up and retrying, but not ready.
    if let Ok(seen) = wait_for(&rx, "READY=1", Duration::from_secs(4)) {
        let out = run.kill_9();
        panic!("READY=1 with the source down: {seen:?}\n{}", out.stderr);
    }
    pg.start_again().unwrap();
    let seen = match wait_for(&rx, "READY=1", WAIT) {
        Ok(seen) => seen,
        Err(seen) => {
            let out = run.kill_9();
            panic!(
                "no READY=1 after the source came back: {seen:?}\n{}",
                out.stderr
            );
        }
    };
    // READY comes after START_REPLICATION: the slot is streaming by now.
    let c = connect(&url).await;
    assert!(
        slot_ready(&c, slot).await,
        "READY=1 before the slot streams"
    );
    let ready = seen.last().unwrap();
    assert!(
        ready.contains("STATUS=streaming from slot notify_slot"),
        "{ready}"
    );

    // Pings every half second (WATCHDOG_USEC / 2).
    for _ in 0..3 {
        wait_for(&rx, "WATCHDOG=1", Duration::from_secs(5)).expect("WATCHDOG=1 pings");
    }
    run.sigterm();
    wait_for(&rx, "STOPPING=1", Duration::from_secs(10)).expect("STOPPING=1 on SIGTERM");
    let out = run.wait(WAIT);
    assert!(out.status.success(), "{}", out.stderr);
}
