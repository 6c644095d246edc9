//! What an operator watches, end to end: re_dms live into the Redshift stand-in with `[metrics]
//! listen` and `statsd` set. `/metrics` serves every figure METRICS.md lists (labelled per table
//! and op where it says so, a histogram for load durations), the same figures arrive as
//! DogStatsD lines with their tags on a UDP socket of the test's own, and `/healthz` is 200 until
//! a table stops on a row the warehouse refuses, then 503 naming that table and why.

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use crate::harness::slot::slot_ready;
use crate::harness::stack::{connect, wait_until, Stack};
use crate::harness::{free_port, http_get as get, ReDms};

const WAIT: Duration = Duration::from_secs(90);

/// The metric names METRICS.md lists (first column of its tables).
fn documented_metrics() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/METRICS.md")).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("| `re_dms_"))
        .filter_map(|l| l.split('`').next())
        .map(|n| format!("re_dms_{n}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_statsd_and_healthz_tell_what_happens() {
    let _sim = Stack::sim_shared().await;
    let db = Stack::get().new_source_db("observe").await;
    let c = connect(&db.url).await;
    c.batch_execute(
        "CREATE TABLE public.m (id int PRIMARY KEY, v text);
         CREATE TABLE public.strict (id int PRIMARY KEY, v text);",
    )
    .await
    .unwrap();
    let statsd = UdpSocket::bind("127.0.0.1:0").unwrap();
    statsd
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let slot = db.slot();
    let re = ReDms::redshift("observe")
        .await
        .live_from(&db)
        .segment_max_age_secs(1)
        .option("metrics", &format!("listen = \"{listen}\""))
        .option(
            "metrics",
            &format!("statsd = \"{}\"", statsd.local_addr().unwrap()),
        )
        .option("metrics", "statsd_tags = [\"instance:observe\"]")
        .build();
    // A warehouse table with a NOT NULL column the source lacks: that table stops on its first
    // row (a narrower column would be widened from the source catalog).
    re.backend()
        .await
        .batch_execute(
            "CREATE TABLE public.strict (id integer, v varchar(100), extra integer NOT NULL)",
        )
        .await
        .unwrap();
    let run = re.spawn_live();
    wait_until(WAIT, "re_dms streaming from its slot", || {
        slot_ready(&c, &slot)
    })
    .await;
    assert_eq!(get(&listen, "/healthz").map(|r| r.0), Ok(200));
    assert_eq!(get(&listen, "/nothing").map(|r| r.0), Ok(404));

    c.batch_execute(
        "INSERT INTO public.m SELECT i, 'v' || i FROM generate_series(1, 5) i;
         UPDATE public.m SET v = 'changed' WHERE id = 1;
         DELETE FROM public.m WHERE id = 2;",
    )
    .await
    .unwrap();
    let loaded = "re_dms_redshift_rows_loaded_total{table=\"public.m\",op=\"upsert\"}";
    let deadline = Instant::now() + WAIT;
    let scrape = loop {
        let (status, body) = get(&listen, "/metrics").unwrap();
        assert_eq!(status, 200);
        if body.lines().any(|l| l.starts_with(loaded)) {
            break body;
        }
        if Instant::now() > deadline {
            let out = run.kill_9();
            panic!("no {loaded} after {WAIT:?}:\n{body}\n{}", out.stderr);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for line in [
        "re_dms_changes_received_total{table=\"public.m\",op=\"insert\"} 5",
        "re_dms_changes_received_total{table=\"public.m\",op=\"update\"} 1",
        "re_dms_changes_received_total{table=\"public.m\",op=\"delete\"} 1",
        "re_dms_redshift_load_duration_seconds_bucket{table=\"public.m\",le=\"+Inf\"}",
        "# HELP re_dms_wal_fsyncs_total",
        "# TYPE re_dms_redshift_load_duration_seconds histogram",
    ] {
        assert!(scrape.contains(line), "no {line:?} in:\n{scrape}");
    }
    // Every documented figure is served (the labelled error counter only once an error
    // happened, the load histogram as its _bucket/_sum/_count series).
    for name in documented_metrics() {
        if name == "re_dms_errors_total" {
            continue;
        }
        assert!(
            scrape.contains(&format!("\n{name}")),
            "{name} (METRICS.md) is not served:\n{scrape}"
        );
    }
    // `status` has each target table's last load from the ledger; `validate` every source check.
    let status = re.status_json();
    let m = status["loaded"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["target_table"] == "public.m"))
        .unwrap_or_else(|| panic!("public.m in status's loaded tables: {status}"));
    assert!(m["segment"].as_i64().is_some_and(|s| s >= 1), "{status}");
    assert!(
        m["last_lsn"].as_str().is_some_and(|l| l.contains('/')),
        "{status}"
    );
    let out = re.validate();
    for line in [
        "ok    source.wal_level: logical",
        "ok    source.replication_privilege: role postgres may replicate",
        "ok    source.slot: slot ",
        "ok    source.max_wal_senders: ",
    ] {
        assert!(out.stdout.contains(line), "no {line:?} in:\n{}", out.stdout);
    }
    let lsn: f64 = scrape
        .lines()
        .find_map(|l| l.strip_prefix("re_dms_source_confirmed_lsn "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(lsn > 0.0, "confirmed LSN served:\n{scrape}");

    // The same figures as DogStatsD lines, tagged.
    let is_inserts =
        |l: &&str| l.starts_with("re_dms_changes_received_total:") && l.contains("op:insert");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = String::new();
    let mut buf = [0u8; 65536];
    while !lines.lines().any(|l| is_inserts(&l)) && Instant::now() < deadline {
        if let Ok(n) = statsd.recv(&mut buf) {
            lines.push_str(&String::from_utf8_lossy(&buf[..n]));
            lines.push('\n');
        }
    }
    let received = lines
        .lines()
        .find(is_inserts)
        .unwrap_or_else(|| panic!("no tagged changes_received line in:\n{lines}"));
    assert!(received.contains("|c|#"), "{received}");
    assert!(received.contains("table:public.m"), "{received}");
    assert!(received.contains("instance:observe"), "{received}");

    // A table stops: /healthz says so.
    c.batch_execute("INSERT INTO public.strict VALUES (1, 'v1')")
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let unhealthy = loop {
        let (status, body) = get(&listen, "/healthz").unwrap();
        if status == 503 {
            break body;
        }
        if Instant::now() > deadline {
            let out = run.kill_9();
            panic!(
                "/healthz stayed {status} ({body}) with a table stopped:\n{}",
                out.stderr
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        unhealthy.contains("table \"public\".\"strict\" stopped") && unhealthy.contains("extra"),
        "{unhealthy}"
    );
    let (_, scrape) = get(&listen, "/metrics").unwrap();
    assert!(
        scrape.contains("re_dms_redshift_tables_stopped 1"),
        "{scrape}"
    );
    assert!(
        scrape.contains("re_dms_errors_total{stage=\"redshift\",class=\"definite\"} 1"),
        "{scrape}"
    );
    run.sigterm();
    let _ = run.wait(WAIT);
}

/// Secrets in the config and the environment, a distinctive row value, every log level on: a
/// full live run into the stand-in, with a restart, prints none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_row_value_in_any_log_line() {
    const SOURCE_PW: &str = "SourcePw-d81f2c";
    const WAREHOUSE_PW: &str = "WarehousePw-93ab1e";
    const KEY_ID: &str = "AKIAKEYID7Q2W9E";
    const SECRET_KEY: &str = "SecretKey-5e8c7a1f0b";
    const ROW_VALUE: &str = "RowValue-4c1d9e";
    let _sim = Stack::sim_shared().await;
    let db = Stack::get().new_source_db("no_secrets").await;
    let c = connect(&db.url).await;
    c.batch_execute("CREATE TABLE public.s (id int PRIMARY KEY, v text, n numeric)")
        .await
        .unwrap();
    let slot = db.slot();
    let re = ReDms::redshift("no_secrets")
        .await
        .live_from_with(&db, &format!(" password={SOURCE_PW}"))
        .segment_max_age_secs(1)
        .build();
    // [redshift] comes before [source] in the file: its connection line is the first.
    let warehouse = &re.db().conninfo;
    re.set_config_line(
        "connection = ",
        &format!("connection = \"{warehouse} password={WAREHOUSE_PW}\""),
    );
    assert!(std::fs::read_to_string(re.config_path())
        .unwrap()
        .contains(SOURCE_PW));
    let env = [
        ("RE_DMS_LOG", "trace"),
        ("AWS_ACCESS_KEY_ID", KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ];
    let run = re.spawn_live_with_env(&env);
    wait_until(WAIT, "re_dms streaming from its slot", || {
        slot_ready(&c, &slot)
    })
    .await;
    c.batch_execute(&format!(
        "INSERT INTO public.s VALUES (1, '{ROW_VALUE}', 1.5);
         UPDATE public.s SET n = 2.5 WHERE id = 1;"
    ))
    .await
    .unwrap();
    let warehouse_rows = || async {
        re.backend()
            .await
            .query("SELECT v FROM public.s WHERE n = 2.5", &[])
            .await
            .map(|r| r.len())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + WAIT;
    while warehouse_rows().await != 1 {
        if Instant::now() > deadline {
            let out = run.kill_9();
            panic!("not loaded after {WAIT:?}:\n{}", out.stderr);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    run.sigterm();
    let out = run.wait(WAIT);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.lines().any(|l| l.contains(" DEBUG ")) && all.lines().any(|l| l.contains(" TRACE ")),
        "debug and trace logging on:\n{all}"
    );
    for secret in [SOURCE_PW, WAREHOUSE_PW, KEY_ID, SECRET_KEY, ROW_VALUE] {
        if let Some(line) = all.lines().find(|l| l.contains(secret)) {
            panic!("{secret} in the log: {line}");
        }
    }
}

/// `validate` names each source problem with its remedy: a role without REPLICATION, a slot
/// that does not exist with `create_slot = false`; exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_names_each_source_problem() {
    let db = Stack::get().new_source_db("validate_source").await;
    let c = connect(&db.url).await;
    c.batch_execute(
        "DO $$ BEGIN CREATE ROLE re_dms_norepl LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;",
    )
    .await
    .unwrap();
    let conninfo = db.conninfo.replace("user=postgres", "user=re_dms_norepl");
    let re = ReDms::local()
        .option("source", &format!("connection = \"{conninfo}\""))
        .option("source", "slot = \"nowhere_slot\"")
        .option("source", "create_slot = false")
        .build();
    let out = re.validate();
    assert_eq!(out.status.code(), Some(1), "{}", out.stdout);
    for line in [
        "ok    source.wal_level: logical",
        "FAIL  source.replication_privilege: role re_dms_norepl lacks REPLICATION: ALTER ROLE re_dms_norepl REPLICATION",
        "FAIL  source.slot: slot nowhere_slot does not exist and source.create_slot = false",
    ] {
        assert!(out.stdout.contains(line), "no {line:?} in:\n{}", out.stdout);
    }
}

/// `validate --startup` (systemd's ExecStartPre) lets a start go ahead while the source cannot be
/// reached (re_dms waits for it), where plain `validate` fails.
#[test]
fn validate_startup_warns_about_an_unreachable_source() {
    let re = ReDms::local()
        .option(
            "source",
            "connection = \"host=127.0.0.1 port=1 user=u dbname=d connect_timeout=2\"",
        )
        .build();
    let strict = re.validate();
    assert_eq!(strict.status.code(), Some(1), "{}", strict.stdout);
    assert!(
        strict.stdout.contains("FAIL  source: "),
        "{}",
        strict.stdout
    );
    let startup = re.validate_with(&["--startup"]);
    assert_eq!(startup.status.code(), Some(0), "{}", startup.stdout);
    assert!(
        startup.stdout.contains("WARN  source: "),
        "{}",
        startup.stdout
    );
    assert!(!startup.stdout.contains("FAIL"), "{}", startup.stdout);
}

/// A stand-in for Sentry's ingest: every request body POSTed to it, as text.
fn sentry_collector() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::BufRead;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let bodies = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream);
            let mut length = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            bodies
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
        }
    });
    (format!("http://publickey@127.0.0.1:{port}/42"), seen)
}

/// With `[sentry] dsn`, a table stopping is reported once, tagged with the table, the segment
/// and the release, and the process's fatal end too; no report holds the row value or the
/// source's password. (The stand-in's load errors do not quote the value, so what `scrub` removes
/// is checked by its unit test in `src/report.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentry_gets_a_stopped_table_once_without_values_or_secrets() {
    const ROW_VALUE: &str = "RowValue-sentry-8d1";
    const SOURCE_PW: &str = "SourcePw-sentry-2b7";
    let _sim = Stack::sim_shared().await;
    let db = Stack::get().new_source_db("sentry_report").await;
    let c = connect(&db.url).await;
    c.batch_execute("CREATE TABLE public.t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let (dsn, reports) = sentry_collector();
    let slot = db.slot();
    let re = ReDms::redshift("sentry_report")
        .await
        .live_from_with(&db, &format!(" password={SOURCE_PW}"))
        .segment_max_age_secs(1)
        .option("sentry", &format!("dsn = \"{dsn}\""))
        .build();
    // The warehouse's v is an integer: the load fails.
    re.backend()
        .await
        .batch_execute("CREATE TABLE public.t (id integer, v integer)")
        .await
        .unwrap();
    let run = re.spawn_live();
    wait_until(WAIT, "re_dms streaming from its slot", || {
        slot_ready(&c, &slot)
    })
    .await;
    for i in 0..3 {
        c.batch_execute(&format!("INSERT INTO public.t VALUES ({i}, '{ROW_VALUE}')"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    let deadline = Instant::now() + WAIT;
    while !reports
        .lock()
        .unwrap()
        .iter()
        .any(|r| r.contains("stopped"))
    {
        if Instant::now() > deadline {
            let out = run.kill_9();
            panic!("no report of the stopped table:\n{}", out.stderr);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    run.sigterm();
    let out = run.wait(WAIT);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a stopped table ends the run with 1"
    );
    let reports = reports.lock().unwrap().clone();
    let stopped: Vec<&String> = reports
        .iter()
        .filter(|r| r.contains("\"table_stopped\""))
        .collect();
    assert_eq!(
        stopped.len(),
        1,
        "one report per stopped table: {reports:#?}"
    );
    let stopped = stopped[0];
    for want in [
        "\"table\":\"\\\"public\\\".\\\"t\\\"\"",
        "\"segment\":",
        "re_dms@",
    ] {
        assert!(stopped.contains(want), "no {want} in {stopped}");
    }
    assert!(
        reports.iter().any(|r| r.contains("\"fatal\"")),
        "the fatal end is reported: {reports:#?}"
    );
    for r in &reports {
        for secret in [ROW_VALUE, SOURCE_PW] {
            assert!(!r.contains(secret), "{secret} sent to Sentry: {r}");
        }
    }
}
