//! The source catalog end to end: a real source database captured through a test_decoding slot,
//! replayed with `source.connection` set, into redshift-sim. Typmods shape the target columns,
//! partitions load into their root, and a source column widened later (which the stream does
//! not show) widens the target column before its wider values arrive.

use crate::harness::stack::{connect, Stack};
use crate::harness::ReDms;

/// test_decoding text of everything the slot holds, as `pg_recvlogical -f -` prints it, once it
/// holds `until` (the stack commits asynchronously, and a slot decodes only flushed WAL).
async fn drain_slot(source: &tokio_postgres::Client, slot: &str, until: &str) -> Vec<u8> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut text = String::new();
    while !text.contains(until) {
        assert!(
            std::time::Instant::now() < deadline,
            "slot {slot}: no `{until}` within 30 s; got:\n{text}"
        );
        let rows = source
            .simple_query(&format!(
                "SELECT data FROM pg_logical_slot_get_changes('{slot}', NULL, NULL)"
            ))
            .await
            .unwrap();
        for m in rows {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                text.push_str(r.get(0).unwrap());
                text.push('\n');
            }
        }
        // Nudge the WAL writer: the next call sees what it flushed.
        source.batch_execute("SELECT pg_switch_wal()").await.ok();
    }
    text.into_bytes()
}

/// `(column, data_type, character_maximum_length, numeric_precision, numeric_scale)` of a
/// warehouse table, read from the backend.
async fn columns(
    rs: &ReDms,
    table: &str,
) -> Vec<(String, String, Option<i32>, Option<i32>, Option<i32>)> {
    let c = rs.backend().await;
    let (schema, name) = table.split_once('.').unwrap();
    c.query(
        "SELECT column_name::text, data_type::text, character_maximum_length::int, \
         numeric_precision::int, numeric_scale::int FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
        &[&schema, &name],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typmods_partitions_and_widening_come_from_the_source_catalog() {
    let _sim = Stack::sim_shared().await;
    let stack = Stack::get();
    let db = stack.new_source_db("catalog_e2e").await;
    let src = connect(&db.url).await;
    src.batch_execute(
        "CREATE TABLE public.items (id integer PRIMARY KEY, code varchar(10), grade char(2), \
             price numeric(12,4), big numeric(38,0), note text);
         CREATE TABLE public.events (id integer, day date, v varchar(5), PRIMARY KEY (id, day))
             PARTITION BY RANGE (day);
         CREATE TABLE public.events_2024_01 PARTITION OF public.events
             FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
         CREATE TABLE public.events_2024_02 PARTITION OF public.events
             FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');",
    )
    .await
    .unwrap();
    // Its own statement: a slot cannot be created in a transaction that has written.
    src.batch_execute("SELECT pg_create_logical_replication_slot('catalog_e2e', 'test_decoding')")
        .await
        .unwrap();
    src.batch_execute(
        "INSERT INTO public.items VALUES
             (1, 'abcdefghij', 'x', 12345678.1234, 12345678901234567890123456789012345678, 'n'),
             (2, 'short', 'yz', -0.5, 0, NULL);
         INSERT INTO public.events VALUES (1, '2024-01-15', 'jan'), (2, '2024-02-15', 'feb'),
             (3, '2024-01-20', 'jan2');
         UPDATE public.events SET v = 'moved', day = '2024-02-20' WHERE id = 3;
         DELETE FROM public.events WHERE id = 1;",
    )
    .await
    .unwrap();
    let first = drain_slot(&src, "catalog_e2e", "'moved'").await;

    let rs = ReDms::redshift("catalog_e2e")
        .await
        .config(&format!("[source]\nconnection = \"{}\"", db.conninfo))
        .build();
    let out = rs.replay(&first);
    assert!(out.status.success(), "{}", out.stderr);

    // Typmods: VARCHAR(4n) for varchar(n) and char(n); NUMERIC(p,s) when p - s <= 28; text and
    // numeric(38,0) keep the defaults.
    let items = columns(&rs, "public.items").await;
    let want = |name: &str, ty: &str, len: Option<i32>, p: Option<i32>, s: Option<i32>| {
        (name.to_string(), ty.to_string(), len, p, s)
    };
    assert_eq!(
        items,
        vec![
            want("id", "integer", None, Some(32), Some(0)),
            want("code", "character varying", Some(40), None, None),
            want("grade", "character varying", Some(8), None, None),
            want("price", "numeric", None, Some(12), Some(4)),
            want("big", "numeric", None, Some(38), Some(10)),
            want("note", "character varying", Some(65535), None, None),
        ]
    );
    // Partitions load into their root; no table per partition.
    assert_eq!(rs.tables_in("public").await, ["events", "items"]);
    let rows = rs
        .backend_rows("public.events", &["id".into(), "day".into(), "v".into()])
        .await;
    let mut rows: Vec<String> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| v.clone().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    rows.sort();
    assert_eq!(rows, ["2|2024-02-15|feb", "3|2024-02-20|moved"]);

    // The source widens a column; the stream only shows the wider values: a 50-byte value
    // would not fit the VARCHAR(40) created for varchar(10).
    src.batch_execute(
        "ALTER TABLE public.items ALTER COLUMN code TYPE varchar(60);
         INSERT INTO public.items (id, code) VALUES (3, 'fifty characters, wider than the old forty bytes!!');",
    )
    .await
    .unwrap();
    let second = drain_slot(
        &src,
        "catalog_e2e",
        "fifty characters, wider than the old forty bytes!!",
    )
    .await;
    let log_start = std::fs::metadata(&stack.statement_log).map_or(0, |m| m.len() as usize);
    assert!(
        String::from_utf8_lossy(&second)
            .contains("fifty characters, wider than the old forty bytes!!"),
        "the capture holds the wide value"
    );
    let out = rs.replay(&second);
    assert!(out.status.success(), "{}", out.stderr);
    let code = columns(&rs, "public.items")
        .await
        .into_iter()
        .find(|c| c.0 == "code")
        .unwrap();
    assert_eq!(code.2, Some(240), "code widened to VARCHAR(4 * 60)");
    let rows = rs
        .backend_rows("public.items", &["id".into(), "code".into()])
        .await;
    assert!(
        rows.contains(&vec![
            Some("3".into()),
            Some("fifty characters, wider than the old forty bytes!!".into())
        ]),
        "{rows:?}"
    );
    let log = std::fs::read(&stack.statement_log).unwrap_or_default();
    let log = String::from_utf8_lossy(log.get(log_start..).unwrap_or_default());
    let widen = "ALTER TABLE \"public\".\"items\" ALTER COLUMN \"code\" TYPE VARCHAR(240)";
    assert_eq!(
        log.lines().filter(|l| l.contains(widen)).count(),
        1,
        "one widening statement in the sim's log"
    );
}

/// A `[source]` where nothing listens (port 1).
const UNREACHABLE_SOURCE: &str =
    "[source]\nconnection = \"host=127.0.0.1 port=1 user=nobody dbname=none connect_timeout=2\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_source_means_the_defaults_with_a_warning() {
    let _sim = Stack::sim_shared().await;
    let rs = ReDms::redshift("catalog_unreachable")
        .await
        .config(UNREACHABLE_SOURCE)
        .build();
    let text = b"BEGIN 1\n\
table public.plain: INSERT: id[integer]:1 code[character varying]:'x'\n\
COMMIT 1\n";
    let out = rs.replay(text);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr.contains("source catalog unreachable"),
        "{}",
        out.stderr
    );
    let cols = columns(&rs, "public.plain").await;
    assert_eq!(cols[1].2, Some(65535), "{cols:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reads_the_source_catalog() {
    let _sim = Stack::sim_shared().await;
    let stack = Stack::get();
    let db = stack.new_source_db("catalog_validate").await;
    let src = connect(&db.url).await;
    src.batch_execute(
        "CREATE TABLE public.p (id integer, d date) PARTITION BY RANGE (d);
         CREATE TABLE public.p1 PARTITION OF public.p FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');",
    )
    .await
    .unwrap();
    let good = ReDms::redshift("catalog_validate")
        .await
        .config(&format!("[source]\nconnection = \"{}\"", db.conninfo))
        .build();
    let out = good.validate();
    let text = &out.stdout;
    assert!(
        text.contains("ok    source.catalog: catalog read: 2 tables (1 partitions)"),
        "{text}{}",
        out.stderr
    );
    let bad = ReDms::redshift("catalog_validate_bad")
        .await
        .config(UNREACHABLE_SOURCE)
        .build();
    let out = bad.validate();
    let text = &out.stdout;
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL  source: "), "{text}");
}
