//! The local test stack works end to end: source PostgreSQL with logical decoding, a warehouse
//! database behind redshift-sim, and a COPY from an object in moto.

use std::time::Duration;

use crate::harness::stack::{connect, gzip, Stack};
use crate::harness::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_comes_up_and_works() {
    let _sim = Stack::sim_shared().await;
    let stack = Stack::get();

    // Source: logical decoding with test_decoding.
    let src = stack.new_source_db("selftest_src").await;
    let s = connect(&src.url).await;
    let wal_level: String = s.query_one("SHOW wal_level", &[]).await.unwrap().get(0);
    assert_eq!(wal_level, "logical");
    s.query_one(
        "SELECT pg_create_logical_replication_slot('selftest_slot', 'test_decoding')",
        &[],
    )
    .await
    .unwrap();
    s.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'x')")
        .await
        .unwrap();
    let changes: Vec<String> = wait_for(Duration::from_secs(10), "decoded insert", || {
        let s = &s;
        async move {
            let rows = s
                .query(
                    "SELECT data FROM pg_logical_slot_peek_changes('selftest_slot', NULL, NULL)",
                    &[],
                )
                .await
                .ok()?;
            let data: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            data.iter().any(|d| d.contains("INSERT")).then_some(data)
        }
    })
    .await;
    assert!(
        changes
            .iter()
            .any(|d| d == "table public.t: INSERT: id[integer]:1 v[text]:'x'"),
        "{changes:?}"
    );
    s.query_one("SELECT pg_drop_replication_slot('selftest_slot')", &[])
        .await
        .unwrap();

    // Warehouse through redshift-sim: COPY from moto.
    let wh = stack.new_warehouse_db("selftest_wh").await;
    let w = connect(&wh.url).await;
    w.batch_execute("CREATE TABLE t (id int, v varchar(10)) DISTSTYLE EVEN")
        .await
        .unwrap();
    stack
        .put_object("selftest/t.csv.gz", gzip(b"1,hello\n2,\\N\n"))
        .await;
    let n = w
        .execute(
            &format!(
                "COPY t FROM 's3://{}/selftest/t' ACCESS_KEY_ID 'test' SECRET_ACCESS_KEY 'test' \
                 CSV GZIP",
                stack.s3_bucket
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    let rows = w
        .query("SELECT id, v FROM t ORDER BY id", &[])
        .await
        .unwrap();
    let got: Vec<(i32, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(1, Some("hello".into())), (2, None)]);
    assert!(stack
        .statements()
        .iter()
        .any(|l| l.starts_with("COPY t FROM")));
}
