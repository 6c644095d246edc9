//! The replication protocol client (`source::replication`) against the stack's source
//! PostgreSQL: a slot created and read back, committed transactions streamed with their WAL
//! positions, a confirmed transaction never sent again, a missing slot refused as fatal, and
//! md5 and SCRAM-SHA-256 authentication (the stack's pg_hba asks two roles for a password).

use std::time::Duration;

use re_dms::lsn::Lsn;
use re_dms::retry::ErrorClass;
use re_dms::source::replication::{Event, ReplicationError, ReplicationStream, Session};

use crate::harness::stack::{connect, wait_until, Stack};

const WAIT: Duration = Duration::from_secs(30);

/// Reads the stream until `commits` COMMIT lines arrived; returns every line with its start.
async fn read_commits(stream: &mut ReplicationStream, commits: usize) -> Vec<(Lsn, String)> {
    let mut lines = Vec::new();
    let mut seen = 0;
    tokio::time::timeout(WAIT, async {
        while seen < commits {
            match stream.next().await.expect("streaming") {
                Some(Event::XLogData { start, data, .. }) => {
                    let text = String::from_utf8(data.to_vec()).unwrap();
                    seen += usize::from(text.starts_with("COMMIT "));
                    lines.push((start, text));
                }
                Some(Event::Keepalive { .. }) => {}
                None => panic!("the server ended the stream"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{commits} commits not streamed within {WAIT:?}"));
    lines
}

async fn confirmed_flush(url: &str, slot: &str) -> Option<Lsn> {
    let c = connect(url).await;
    let row = c
        .query_opt(
            "SELECT confirmed_flush_lsn::text, active_pid FROM pg_replication_slots \
             WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap()?;
    row.get::<_, Option<String>>(0).map(|t| t.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_streams_commits_and_a_confirmed_one_is_not_sent_again() {
    let stack = Stack::get();
    let db = stack.new_source_db("repl_stream").await;
    let sql = connect(&db.url).await;
    sql.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await
        .unwrap();
    let slot = db.slot();

    let mut session = Session::connect(&db.conninfo).await.unwrap();
    let me = session.identify_system().await.unwrap();
    assert_eq!(me.database.as_deref(), Some(db.name.as_str()));
    assert!(session.slot(&slot).await.unwrap().is_none());
    let point = session.create_slot(&slot).await.unwrap();
    let state = session.slot(&slot).await.unwrap().expect("the slot exists");
    assert_eq!(state.plugin.as_deref(), Some("test_decoding"));
    assert!(!state.is_lost());

    sql.execute("INSERT INTO t VALUES (1, 'a')", &[])
        .await
        .unwrap();
    sql.execute("INSERT INTO t VALUES (2, 'it''s')", &[])
        .await
        .unwrap();
    let mut stream = session.start_replication(&slot, Lsn(0)).await.unwrap();
    let lines = read_commits(&mut stream, 2).await;
    let texts: Vec<&str> = lines.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts.len(), 6, "{texts:?}");
    assert!(texts[0].starts_with("BEGIN "), "{texts:?}");
    assert_eq!(
        texts[1],
        "table public.t: INSERT: id[integer]:1 v[text]:'a'"
    );
    // include-xids and include-timestamp: `COMMIT <xid> (at <time>)`.
    assert!(
        texts[2].starts_with("COMMIT ") && texts[2].contains(" (at "),
        "{texts:?}"
    );
    assert_eq!(
        texts[4],
        "table public.t: INSERT: id[integer]:2 v[text]:'it''s'"
    );
    assert!(lines.iter().all(|(at, _)| *at >= point), "{lines:?}");
    assert!(lines[2].0 < lines[5].0, "commit positions grow: {lines:?}");

    // Confirm the first transaction only, then reconnect: only the second comes again.
    let first = lines[2].0;
    stream.send_status(first, first, false).await.unwrap();
    wait_until(WAIT, "confirmed_flush_lsn at the first COMMIT", || async {
        confirmed_flush(&db.url, &slot).await == Some(first)
    })
    .await;
    stream.close(Duration::from_secs(5)).await;

    let mut again = Session::connect(&db.conninfo).await.unwrap();
    wait_until(WAIT, "the slot released by the closed session", || {
        let (conninfo, slot) = (db.conninfo.clone(), slot.clone());
        async move {
            let mut s = Session::connect(&conninfo).await.unwrap();
            s.slot(&slot).await.unwrap().unwrap().active_pid.is_none()
        }
    })
    .await;
    let state = again.slot(&slot).await.unwrap().unwrap();
    assert_eq!(state.confirmed_flush, Some(first));
    let mut stream = again.start_replication(&slot, Lsn(0)).await.unwrap();
    let lines = read_commits(&mut stream, 1).await;
    assert_eq!(
        lines[1].1, "table public.t: INSERT: id[integer]:2 v[text]:'it''s'",
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_slot_is_a_fatal_error_naming_it() {
    let stack = Stack::get();
    let db = stack.new_source_db("repl_missing").await;
    let session = Session::connect(&db.conninfo).await.unwrap();
    let err = match session.start_replication("no_such_slot", Lsn(0)).await {
        Err(e) => e,
        Ok(_) => panic!("streamed from a slot that does not exist"),
    };
    assert!(
        matches!(&err, ReplicationError::Server { code, .. } if code == "42704"),
        "{err:?}"
    );
    assert!(err.to_string().contains("no_such_slot"), "{err}");
    assert_eq!(err.class(), ErrorClass::Fatal);
}

/// The stack's pg_hba.conf asks `re_dms_md5` for an md5 password and `re_dms_scram` for
/// SCRAM-SHA-256 (everyone else is trusted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_and_scram_passwords_are_accepted_and_a_wrong_one_is_fatal() {
    let stack = Stack::get();
    let db = stack.new_source_db("repl_auth").await;
    let admin = connect(&db.url).await;
    for (role, encryption) in [("re_dms_md5", "md5"), ("re_dms_scram", "scram-sha-256")] {
        admin
            .batch_execute(&format!(
                "SET password_encryption = '{encryption}';
                 DROP ROLE IF EXISTS {role};
                 CREATE ROLE {role} LOGIN REPLICATION PASSWORD 'sec''ret';"
            ))
            .await
            .unwrap();
        let base = format!(
            "host={} port={} user={role} dbname={} sslmode=disable",
            stack.source_host, stack.source_port, db.name
        );
        let mut s = Session::connect(&format!("{base} password='sec\\'ret'"))
            .await
            .unwrap_or_else(|e| panic!("{role}: {e}"));
        assert_eq!(
            s.identify_system().await.unwrap().database.as_deref(),
            Some(db.name.as_str())
        );
        let err = match Session::connect(&format!("{base} password=wrong")).await {
            Err(e) => e,
            Ok(_) => panic!("{role}: a wrong password was accepted"),
        };
        assert!(
            matches!(&err, ReplicationError::Server { code, .. } if code == "28P01"),
            "{role}: {err:?}"
        );
        assert_eq!(err.class(), ErrorClass::Fatal, "{role}");
        assert!(!err.to_string().contains("wrong"), "no password in {err}");
    }
}
