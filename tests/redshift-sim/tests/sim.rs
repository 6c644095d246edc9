//! redshift-sim through the wire, against the local stack (tests/stack.sh: PostgreSQL + moto).
//! Needs the stack, so it runs only with the `stack-tests` feature (`make test`, `.ci/run`).
#![cfg(feature = "stack-tests")]

// The stack helpers are re_dms's test harness module (`tests/harness/stack.rs`); this crate
// uses only some of them.
#[allow(dead_code)]
#[path = "../../harness/stack.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{connect, gzip, try_connect, wait_until, Stack};
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

const WAIT: Duration = Duration::from_secs(20);

fn copy_sql(table: &str, url: &str, opts: &str) -> String {
    format!("COPY {table} FROM '{url}' ACCESS_KEY_ID 'test' SECRET_ACCESS_KEY 'test' CSV {opts}")
}

fn s3_url(stack: &Stack, key: &str) -> String {
    format!("s3://{}/{key}", stack.s3_bucket)
}

async fn count(c: &impl tokio_postgres::GenericClient, table: &str) -> i64 {
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count(*)")
        .get(0)
}

fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_round_trip_of_awkward_values() {
    let stack = Stack::get();
    let wh = stack.new_warehouse_db("sim_awkward").await;
    let c = connect(&wh.url).await;
    c.batch_execute("CREATE TABLE t (id int, s varchar(100), n int); CREATE TABLE u (LIKE t)")
        .await
        .unwrap();
    let csv = "1,\"He said \"\"hi\"\", ok\",1\n\
               2,\"line1\nline2\r\nline3\",2\n\
               3,back\\slash \\\\ x,3\n\
               4,\"unicodé ☃ 日本\",4\n\
               5,\\N,\\N\n\
               6,,\n\
               7,\"\",7\n\
               8,\"\\N\",8\n\
               9,'single' \t tab,9\n";
    stack
        .put_object("sim_awkward/part-0001.csv.gz", gzip(csv.as_bytes()))
        .await;
    let url = s3_url(stack, "sim_awkward/part-");
    // Simple protocol.
    c.batch_execute(&copy_sql("t", &url, "GZIP")).await.unwrap();
    // Extended protocol (tokio-postgres prepares, binds and executes), which reports the count.
    let n = c
        .execute(
            &copy_sql("u", &url, "GZIP COMPUPDATE OFF STATUPDATE OFF"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 9);
    let expected: Vec<(i32, Option<String>, Option<i32>)> = vec![
        (1, Some("He said \"hi\", ok".into()), Some(1)),
        (2, Some("line1\nline2\r\nline3".into()), Some(2)),
        (3, Some("back\\slash \\\\ x".into()), Some(3)),
        (4, Some("unicodé ☃ 日本".into()), Some(4)),
        (5, None, None),
        (6, Some(String::new()), None),
        (7, Some(String::new()), Some(7)),
        (8, Some("\\N".into()), Some(8)),
        (9, Some("'single' \t tab".into()), Some(9)),
    ];
    for table in ["t", "u"] {
        let rows = c
            .query(&format!("SELECT id, s, n FROM {table} ORDER BY id"), &[])
            .await
            .unwrap();
        let got: Vec<(i32, Option<String>, Option<i32>)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(got, expected, "table {table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_prefix_loads_every_key_starting_with_it() {
    let stack = Stack::get();
    let wh = stack.new_warehouse_db("sim_prefix").await;
    let c = connect(&wh.url).await;
    c.batch_execute("CREATE TABLE p (k varchar(10))")
        .await
        .unwrap();
    for (key, body) in [("1", "one\n"), ("10", "ten\n"), ("2", "two\n")] {
        stack
            .put_object(&format!("sim_prefix/x/{key}"), body.as_bytes().to_vec())
            .await;
    }
    let url = s3_url(stack, "sim_prefix/x/1");
    c.batch_execute(&copy_sql("p", &url, "")).await.unwrap();
    let rows = c.query("SELECT k FROM p ORDER BY k", &[]).await.unwrap();
    let got: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(got, vec!["one", "ten"]);
    let err = c
        .batch_execute(&copy_sql("p", &s3_url(stack, "sim_prefix/nothing"), ""))
        .await
        .unwrap_err();
    assert!(db_message(&err).contains("does not exist"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_with_manifest() {
    let stack = Stack::get();
    let wh = stack.new_warehouse_db("sim_manifest").await;
    let c = connect(&wh.url).await;
    c.batch_execute("CREATE TABLE m (id int, v varchar(10))")
        .await
        .unwrap();
    stack
        .put_object("sim_manifest/a.gz", gzip(b"1,a\n2,b\n"))
        .await;
    stack
        .put_object("sim_manifest/other/b.gz", gzip(b"3,c\n"))
        .await;
    // Not in the manifest: must not load although it shares the prefix.
    stack
        .put_object("sim_manifest/a.gz.extra", gzip(b"9,z\n"))
        .await;
    let b = &stack.s3_bucket;
    let manifest = format!(
        r#"{{"entries":[{{"url":"s3://{b}/sim_manifest/a.gz","mandatory":true}},
            {{"url":"s3://{b}/sim_manifest/other/b.gz","mandatory":true}},
            {{"url":"s3://{b}/sim_manifest/missing.gz","mandatory":false}}]}}"#
    );
    stack
        .put_object("sim_manifest/load.manifest", manifest.into_bytes())
        .await;
    let n = c
        .execute(
            &copy_sql(
                "m",
                &s3_url(stack, "sim_manifest/load.manifest"),
                "GZIP MANIFEST",
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(count(&c, "m").await, 3);

    let bad =
        format!(r#"{{"entries":[{{"url":"s3://{b}/sim_manifest/gone.gz","mandatory":true}}]}}"#);
    stack
        .put_object("sim_manifest/bad.manifest", bad.into_bytes())
        .await;
    let err = c
        .batch_execute(&copy_sql(
            "m",
            &s3_url(stack, "sim_manifest/bad.manifest"),
            "GZIP MANIFEST",
        ))
        .await
        .unwrap_err();
    assert!(db_message(&err).contains("gone.gz"), "{err}");
    assert_eq!(count(&c, "m").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn varchar_counts_bytes_unless_truncatecolumns() {
    let stack = Stack::get();
    let wh = stack.new_warehouse_db("sim_varchar").await;
    let c = connect(&wh.url).await;
    c.batch_execute("CREATE TABLE vb (id int, s varchar(5))")
        .await
        .unwrap();
    // 'ééé' is 3 characters but 6 bytes.
    stack
        .put_object("sim_varchar/d.csv", "1,abc\n2,ééé\n".as_bytes().to_vec())
        .await;
    let url = s3_url(stack, "sim_varchar/d.csv");
    let err = c
        .batch_execute(&copy_sql("vb", &url, ""))
        .await
        .unwrap_err();
    assert_eq!(
        db_message(&err),
        "Load into table 'vb' failed. Check 'stl_load_errors' system table for details."
    );
    assert_eq!(count(&c, "vb").await, 0);
    let row = c
        .query_one(
            "SELECT filename, line_number, colname, err_reason, raw_field_value \
             FROM stl_load_errors ORDER BY starttime DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), url);
    assert_eq!(row.get::<_, i64>(1), 2);
    assert_eq!(row.get::<_, String>(2), "s");
    assert_eq!(row.get::<_, String>(3), "String length exceeds DDL length");
    assert_eq!(row.get::<_, String>(4), "ééé");

    c.batch_execute(&copy_sql("vb", &url, "TRUNCATECOLUMNS"))
        .await
        .unwrap();
    let got: Vec<String> = c
        .query("SELECT s FROM vb ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(got, vec!["abc", "éé"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_inside_a_rolled_back_transaction_leaves_nothing() {
    let stack = Stack::get();
    let wh = stack.new_warehouse_db("sim_rollback").await;
    let mut c = connect(&wh.url).await;
    c.batch_execute("CREATE TABLE r (id int)").await.unwrap();
    stack
        .put_object("sim_rollback/d.csv", b"1\n2\n3\n".to_vec())
        .await;
    let url = s3_url(stack, "sim_rollback/d.csv");
    // Simple protocol, with a temp staging table created in the same transaction.
    c.batch_execute(&format!(
        "BEGIN; CREATE TEMP TABLE stage (LIKE r); {}; INSERT INTO r SELECT * FROM stage",
        copy_sql("stage", &url, "")
    ))
    .await
    .unwrap();
    assert_eq!(count(&c, "r").await, 3);
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(count(&c, "r").await, 0);
    // Extended protocol inside a transaction object.
    let tx = c.transaction().await.unwrap();
    assert_eq!(tx.execute(&copy_sql("r", &url, ""), &[]).await.unwrap(), 3);
    assert_eq!(count(&tx, "r").await, 3);
    tx.rollback().await.unwrap();
    assert_eq!(count(&c, "r").await, 0);
    // A failing COPY aborts the transaction like any error.
    let tx = c.transaction().await.unwrap();
    let err = tx
        .execute(&copy_sql("r", &s3_url(stack, "sim_rollback/none"), ""), &[])
        .await
        .unwrap_err();
    assert!(db_message(&err).contains("does not exist"), "{err}");
    let err = tx.execute("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    tx.rollback().await.unwrap();
    assert_eq!(count(&c, "r").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_statements_raise_in_the_backend() {
    let stack = Stack::get();
    let wh = stack.new_warehouse_db("sim_refused").await;
    let c = connect(&wh.url).await;
    let err = c
        .batch_execute("CREATE TABLE j (id int, doc jsonb)")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::FEATURE_NOT_SUPPORTED));
    assert_eq!(
        db_message(&err),
        "Column \"j.doc\" has unsupported type \"jsonb\"."
    );
    // Autocommit: the session is usable right away.
    c.batch_execute(
        "CREATE TABLE \"Mixed\" (id bigint identity(1,1), v text encode lzo) diststyle even \
         sortkey(id)",
    )
    .await
    .unwrap();
    let ty: String = c
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'mixed'::regclass AND attname = 'v'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ty, "character varying(256)");
    for (sql, code) in [
        (
            "INSERT INTO mixed (v) VALUES ('x') ON CONFLICT DO NOTHING",
            SqlState::SYNTAX_ERROR,
        ),
        (
            "CREATE INDEX i ON mixed (v)",
            SqlState::FEATURE_NOT_SUPPORTED,
        ),
        (
            "ALTER TABLE mixed ADD COLUMN a int, ADD COLUMN b int",
            SqlState::SYNTAX_ERROR,
        ),
        (
            "ALTER TABLE mixed ALTER COLUMN id TYPE varchar(10)",
            SqlState::FEATURE_NOT_SUPPORTED,
        ),
        (
            "CREATE TABLE big (v varchar(65536))",
            SqlState::INVALID_PARAMETER_VALUE,
        ),
    ] {
        let err = c.execute(sql, &[]).await.unwrap_err();
        assert_eq!(err.code(), Some(&code), "{sql}: {err}");
    }
    // Widening a VARCHAR works outside a transaction block, not inside one.
    c.batch_execute("ALTER TABLE mixed ALTER COLUMN v TYPE varchar(300)")
        .await
        .unwrap();
    let err = c
        .batch_execute("BEGIN; ALTER TABLE mixed ALTER COLUMN v TYPE varchar(400)")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::ACTIVE_SQL_TRANSACTION));
    let err = c.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    c.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_commits_the_open_transaction() {
    let stack = Stack::get();
    let wh = stack.new_warehouse_db("sim_truncate").await;
    let c = connect(&wh.url).await;
    c.batch_execute("CREATE TABLE a (id int); CREATE TABLE b (id int); INSERT INTO b VALUES (1)")
        .await
        .unwrap();
    c.batch_execute("BEGIN; INSERT INTO a VALUES (1); TRUNCATE b")
        .await
        .unwrap();
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        count(&c, "a").await,
        1,
        "the INSERT was committed by TRUNCATE"
    );
    assert_eq!(count(&c, "b").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_log_has_one_line_per_statement() {
    let stack = Stack::get();
    let wh = stack.new_warehouse_db("sim_log").await;
    let c = connect(&wh.url).await;
    let msgs = c
        .simple_query("SELECT 'log-marker-1'\n AS x; SELECT 2")
        .await
        .unwrap();
    assert!(msgs
        .iter()
        .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("log-marker-1"))));
    c.execute("SELECT 'log-marker-2'", &[]).await.unwrap();
    let log = stack.statements();
    assert!(
        log.iter().any(|l| l == "SELECT 'log-marker-1'  AS x"),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l == "SELECT 'log-marker-2'"), "{log:?}");
}

/// A redshift-sim of this test's own (maintenance mode would disturb the other tests).
struct OwnSim {
    child: Child,
    port: u16,
    maintenance: std::path::PathBuf,
}

impl Drop for OwnSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.maintenance);
    }
}

/// `name` keeps the maintenance files of concurrent tests apart.
fn own_sim(stack: &Stack, name: &str) -> OwnSim {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let (host, bport) = support::host_port(&stack.warehouse_backend_url);
    let maintenance = std::env::temp_dir().join(format!("rss-maint-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&maintenance);
    let child = Command::new(env!("CARGO_BIN_EXE_redshift-sim"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--backend",
            &format!("host={host} port={bport} user=postgres dbname=warehouse"),
        ])
        .args(["--s3-endpoint", &stack.s3_endpoint])
        .arg("--maintenance-file")
        .arg(&maintenance)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redshift-sim");
    OwnSim {
        child,
        port,
        maintenance,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_drops_connections_and_refuses_new_ones() {
    let stack = Stack::get();
    let wh = stack.new_warehouse_db("sim_maint").await;
    let sim = own_sim(stack, "maint");
    let url = format!("postgres://postgres@127.0.0.1:{}/{}", sim.port, wh.name);
    let c = support::wait_for(WAIT, "own redshift-sim to accept", || {
        let url = url.clone();
        async move { try_connect(&url).await.ok() }
    })
    .await;
    c.batch_execute("CREATE TABLE x (id int)").await.unwrap();
    c.batch_execute("BEGIN; INSERT INTO x VALUES (1)")
        .await
        .unwrap();

    support::set_maintenance_file(&sim.maintenance, true);
    wait_until(WAIT, "the open connection to be dropped", || async {
        c.is_closed() || c.simple_query("SELECT 1").await.is_err()
    })
    .await;
    let Err(err) = try_connect(&url).await else {
        panic!("connected during maintenance");
    };
    assert!(support::describe(&err).contains("maintenance"), "{err:?}");

    support::set_maintenance_file(&sim.maintenance, false);
    let c2 = support::wait_for(WAIT, "connections accepted again", || {
        let url = url.clone();
        async move { try_connect(&url).await.ok() }
    })
    .await;
    // The transaction open at the "reboot" was rolled back.
    assert_eq!(count(&c2, "x").await, 0);
}

/// A warehouse database of its own behind a redshift-sim of its own (this build, whichever sim
/// the stack runs), and a client connected through it.
async fn own_sim_db(stack: &Stack, name: &str) -> (OwnSim, tokio_postgres::Client) {
    let wh = stack.new_warehouse_db(name).await;
    let sim = own_sim(stack, name);
    let url = format!("postgres://postgres@127.0.0.1:{}/{}", sim.port, wh.name);
    let c = support::wait_for(WAIT, "own redshift-sim to accept", || {
        let url = url.clone();
        async move { try_connect(&url).await.ok() }
    })
    .await;
    (sim, c)
}

type LoadErrorRow = (i64, String, String, String, String);

/// This session's last COPY's stl_load_errors rows, through `pg_last_copy_id()`.
async fn last_copy_errors(c: &impl tokio_postgres::GenericClient) -> Vec<LoadErrorRow> {
    c.query(
        "SELECT line_number, colname, err_reason, raw_line, raw_field_value FROM stl_load_errors \
         WHERE query = pg_last_copy_id() ORDER BY line_number",
        &[],
    )
    .await
    .expect("stl_load_errors")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

fn load_error(line: i64, col: &str, reason: &str, raw: &str, field: &str) -> LoadErrorRow {
    (line, col.into(), reason.into(), raw.into(), field.into())
}

async fn last_copy_id(c: &impl tokio_postgres::GenericClient) -> i32 {
    c.query_one("SELECT pg_last_copy_id()", &[])
        .await
        .expect("pg_last_copy_id()")
        .get(0)
}

async fn ids(c: &impl tokio_postgres::GenericClient, table: &str) -> Vec<i32> {
    c.query(&format!("SELECT id FROM {table} ORDER BY id"), &[])
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxerror_skips_refused_records_and_records_them() {
    let stack = Stack::get();
    let (_sim, c) = own_sim_db(stack, "sim_maxerror").await;
    assert_eq!(last_copy_id(&c).await, -1, "no COPY yet");
    c.batch_execute("CREATE TABLE me (id int, s varchar(5))")
        .await
        .unwrap();
    // Line 3 is too long for varchar(5), line 6 has a field too few; line 4-5 is one record.
    let csv = "1,a\n2,b\n3,toolong\n4,\"x\ny\"\n5\n6,f\n";
    stack.put_object("sim_maxerror/d.csv", csv.into()).await;
    let url = s3_url(stack, "sim_maxerror/d.csv");
    c.batch_execute(&copy_sql("me", &url, "MAXERROR 2"))
        .await
        .unwrap();
    assert_eq!(ids(&c, "me").await, vec![1, 2, 4, 6]);
    let expected = vec![
        load_error(
            3,
            "s",
            "String length exceeds DDL length",
            "3,toolong",
            "toolong",
        ),
        load_error(6, "s", "Delimiter not found", "5", ""),
    ];
    assert_eq!(last_copy_errors(&c).await, expected);
    let id = last_copy_id(&c).await;
    assert!(id >= 1000, "{id}");
    let (n, file): (i64, String) = {
        let r = c
            .query_one(
                "SELECT count(*), min(filename) FROM stl_load_errors WHERE query = $1",
                &[&id],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((n, file.as_str()), (2, url.as_str()));

    // Extended protocol, inside a transaction block: the COPY answers its row count, the next
    // COPY gets a new id, and pg_last_copy_id() works before the COMMIT.
    c.batch_execute("TRUNCATE me").await.unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    let n = c
        .execute(&copy_sql("me", &url, "MAXERROR AS 2"), &[])
        .await
        .unwrap();
    assert_eq!(n, 4);
    let id2 = last_copy_id(&c).await;
    assert!(id2 > id, "{id2} after {id}");
    assert_eq!(last_copy_errors(&c).await, expected);
    c.batch_execute("COMMIT").await.unwrap();
    assert_eq!(count(&c, "me").await, 4);

    // In one simple Query string, pg_last_copy_id() sees the COPY just before it.
    let msgs = c
        .simple_query(&format!(
            "{}; SELECT pg_last_copy_id()",
            copy_sql("me", &url, "MAXERROR 2")
        ))
        .await
        .unwrap();
    let id3: i32 = msgs
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })
        .expect("a row");
    assert!(id3 > id2, "{id3} after {id2}");
    assert_eq!(last_copy_id(&c).await, id3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxerror_skips_records_the_backend_refuses() {
    let stack = Stack::get();
    let (_sim, mut c) = own_sim_db(stack, "sim_maxerror_be").await;
    c.batch_execute("CREATE TABLE be (id int, d date, n int NOT NULL, s varchar(10))")
        .await
        .unwrap();
    // File a: a two-line record (lines 2-3), a bad date (line 4), a bad integer (line 5).
    // File b: a NULL for the NOT NULL column (line 2).
    let a = "1,2024-01-01,1,a\n2,2024-01-02,2,\"two\nlines\"\n3,2024-02-30,3,c\n\
             4,2024-01-04,x,d\n";
    stack.put_object("sim_maxerror_be/a", a.into()).await;
    let b = "5,2024-01-05,5,e\n6,2024-01-06,,f\n";
    stack.put_object("sim_maxerror_be/b", b.into()).await;
    let url = s3_url(stack, "sim_maxerror_be/");
    // Inside a transaction block: the work before the COPY stays.
    let tx = c.transaction().await.unwrap();
    tx.execute("INSERT INTO be VALUES (0, NULL, 0, 'z')", &[])
        .await
        .unwrap();
    let n = tx
        .execute(&copy_sql("be", &url, "MAXERROR 3"), &[])
        .await
        .unwrap();
    assert_eq!(n, 3);
    let errors = last_copy_errors(&tx).await;
    tx.commit().await.unwrap();
    assert_eq!(ids(&c, "be").await, vec![0, 1, 2, 5]);
    let got: Vec<(i64, &str, &str, &str)> = errors
        .iter()
        .map(|(l, col, _, raw, field)| (*l, col.as_str(), raw.as_str(), field.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, "n", "6,2024-01-06,,f", ""),
            (4, "d", "3,2024-02-30,3,c", "2024-02-30"),
            (5, "n", "4,2024-01-04,x,d", "x"),
        ]
    );
    assert!(errors[1].2.contains("date"), "{errors:?}");
    assert!(errors[0].2.contains("not-null"), "{errors:?}");

    // Outside a transaction block (each attempt is its own implicit transaction).
    c.batch_execute("TRUNCATE be").await.unwrap();
    c.batch_execute(&copy_sql("be", &url, "MAXERROR 3"))
        .await
        .unwrap();
    assert_eq!(ids(&c, "be").await, vec![1, 2, 5]);
    assert_eq!(last_copy_errors(&c).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_refused_records_than_maxerror_fail_the_copy() {
    let stack = Stack::get();
    let (_sim, c) = own_sim_db(stack, "sim_maxerror_over").await;
    c.batch_execute("CREATE TABLE mo (id int, s varchar(3))")
        .await
        .unwrap();
    stack
        .put_object(
            "sim_maxerror_over/d.csv",
            b"1,a\n2,long\n3,c\n4,more\n".to_vec(),
        )
        .await;
    let url = s3_url(stack, "sim_maxerror_over/d.csv");
    let err = c
        .batch_execute(&copy_sql("mo", &url, "MAXERROR 1"))
        .await
        .unwrap_err();
    assert_eq!(
        db_message(&err),
        "Load into table 'mo' failed. Check 'stl_load_errors' system table for details."
    );
    let detail = err.as_db_error().and_then(|d| d.detail()).unwrap_or("");
    assert!(detail.contains("line 4"), "{detail}");
    assert_eq!(count(&c, "mo").await, 0);
    let lines: Vec<i64> = last_copy_errors(&c).await.iter().map(|e| e.0).collect();
    assert_eq!(lines, vec![2, 4]);

    // One refused by the converter, one by the backend: also two.
    stack
        .put_object("sim_maxerror_over/e.csv", b"1,a\n2,long\nx,c\n".to_vec())
        .await;
    let url = s3_url(stack, "sim_maxerror_over/e.csv");
    let err = c
        .batch_execute(&format!(
            "BEGIN; {}; COMMIT",
            copy_sql("mo", &url, "MAXERROR 1")
        ))
        .await
        .unwrap_err();
    assert!(
        db_message(&err).starts_with("Load into table 'mo' failed"),
        "{err}"
    );
    // The transaction is aborted, as after any error.
    let err = c.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(count(&c, "mo").await, 0);
    let lines: Vec<i64> = last_copy_errors(&c).await.iter().map(|e| e.0).collect();
    assert_eq!(lines, vec![2, 3]);
    // Without MAXERROR the first refused record fails the COPY, as before.
    let err = c
        .batch_execute(&copy_sql("mo", &url, ""))
        .await
        .unwrap_err();
    assert!(
        db_message(&err).starts_with("Load into table 'mo' failed"),
        "{err}"
    );
    let lines: Vec<i64> = last_copy_errors(&c).await.iter().map(|e| e.0).collect();
    assert_eq!(lines, vec![2]);
}
