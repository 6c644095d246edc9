//! The live source into the Redshift stand-in: a mixed workload (several tables, TOAST updates,
//! a partitioned table with rows moving between partitions, columns added and dropped while
//! streaming) ends with every target table equal to its source, compared row by row; the
//! warehouse in maintenance for 30 s mid-run with `ack = "loaded"` holds the slot back until
//! the target has the rows, then ends equal; columns renamed in the source (a key column among
//! them, and one whose old name is added again in the same transaction) keep their data, and so
//! do renamed tables (a plain one, renamed again while re_dms is stopped, renamed back, renamed
//! right after a column was added, and a partitioned root).

use std::time::{Duration, Instant};

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::binary::{Builder, Running};
use crate::harness::model::Field;
use crate::harness::slot::{confirmed_past, insert_lsn, slot_ready};
use crate::harness::stack::{connect, describe, wait_until, Stack, TestDb};
use crate::harness::ReDms;

const WAIT: Duration = Duration::from_secs(90);

/// The source tables and the columns compared (the key first).
const TABLES: [(&str, &[&str]); 3] = [
    (
        "public.customers",
        &["id", "name", "balance", "active", "tier"],
    ),
    ("public.docs", &["id", "body", "rev"]),
    ("public.events", &["id", "region", "payload"]),
];

const SCHEMA: &str = "
    CREATE TABLE public.customers (id int PRIMARY KEY, name text, balance numeric(12,2),
        active boolean);
    CREATE TABLE public.docs (id int PRIMARY KEY, body text, rev int, note text);
    CREATE TABLE public.events (id int, region text, payload text, PRIMARY KEY (region, id))
        PARTITION BY LIST (region);
    CREATE TABLE public.events_eu PARTITION OF public.events FOR VALUES IN ('eu');
    CREATE TABLE public.events_us PARTITION OF public.events FOR VALUES IN ('us');
    -- Bodies stored out of line (TOAST): hex digits do not compress below the 2 kB threshold.
    CREATE FUNCTION public.big(n int) RETURNS text LANGUAGE sql AS
        $$ SELECT string_agg(md5(n::text || '-' || i::text), '') FROM generate_series(1, 300) i $$;";

/// Transaction `n`: a customer and an event inserted, earlier ones updated (an event moved to
/// the other partition), now and then a customer deleted, a TOASTed document inserted, or a
/// document's other columns updated (its body then arrives as `unchanged-toast-datum`).
async fn transaction(c: &Client, n: i32) {
    let k = n % 37 + 1;
    let region = if n % 2 == 0 { "eu" } else { "us" };
    let mut sql = format!(
        "BEGIN;
         INSERT INTO public.customers (id, name, balance, active)
             VALUES ({n}, 'customer {n}', {n}.25, {even});
         UPDATE public.customers SET balance = balance + 1.5 WHERE id = {k};
         INSERT INTO public.events VALUES ({n}, '{region}', 'event {n}');
         UPDATE public.events SET region = CASE region WHEN 'eu' THEN 'us' ELSE 'eu' END,
             payload = payload || ' moved' WHERE id = {k};",
        even = n % 2 == 0,
    );
    if n % 5 == 0 {
        sql.push_str(&format!(
            "INSERT INTO public.docs (id, body, rev) VALUES ({n}, public.big({n}), 0);"
        ));
    }
    if n % 3 == 0 {
        sql.push_str(&format!(
            "UPDATE public.docs SET rev = rev + 1 WHERE id = {};",
            (n / 15) * 5
        ));
    }
    if n % 11 == 0 {
        sql.push_str(&format!(
            "DELETE FROM public.customers WHERE id = {};",
            n / 2
        ));
    }
    sql.push_str("COMMIT;");
    c.batch_execute(&sql).await.unwrap();
}

/// `table`'s rows, columns as text (simple query), sorted; an error when it does not exist yet.
async fn rows(c: &Client, table: &str, cols: &[&str]) -> Result<Vec<Vec<Field>>, String> {
    let quoted: Vec<String> = cols.iter().map(|c| format!("\"{c}\"")).collect();
    let q = format!("SELECT {} FROM {table}", quoted.join(", "));
    let messages = c.simple_query(&q).await.map_err(|e| describe(&e))?;
    let mut out: Vec<Vec<Field>> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..cols.len())
                    .map(|i| r.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Waits until every table of `tables` (with the columns compared) holds in the warehouse
/// exactly what it holds in the source; after [`WAIT`] fails with the first difference and
/// re_dms's stderr.
async fn wait_equal(
    source: &Client,
    re: &ReDms,
    run: Running,
    tables: &[(&str, &[&str])],
) -> Running {
    let warehouse = re.backend().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let mut first_difference = None;
        for &(table, cols) in tables {
            let want = rows(source, table, cols).await.unwrap();
            let got = rows(&warehouse, table, cols).await;
            if got.as_ref() != Ok(&want) {
                first_difference = Some(difference(table, &want, &got));
                break;
            }
        }
        let Some(difference) = first_difference else {
            return run;
        };
        if Instant::now() >= deadline {
            let out = run.kill_9();
            panic!("after {WAIT:?}: {difference}\nre_dms said:\n{}", out.stderr);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn difference(table: &str, want: &[Vec<Field>], got: &Result<Vec<Vec<Field>>, String>) -> String {
    let got = match got {
        Ok(got) => got,
        Err(e) => return format!("{table}: not readable in the warehouse: {e}"),
    };
    let missing = want.iter().find(|r| !got.contains(r));
    let extra = got.iter().find(|r| !want.contains(r));
    format!(
        "{table}: {} rows in the source, {} in the warehouse; first missing {missing:?}, first \
         extra {extra:?}",
        want.len(),
        got.len()
    )
}

/// re_dms into a fresh warehouse database named after `name`, streaming from `db`, with
/// segments closed after a second.
async fn live_into_redshift(name: &str, db: &TestDb) -> Builder {
    ReDms::redshift(name)
        .await
        .live_from(db)
        .segment_max_age_secs(1)
}

async fn source_db(name: &str) -> (TestDb, Client) {
    let db = Stack::get().new_source_db(name).await;
    let c = connect(&db.url).await;
    c.batch_execute(SCHEMA).await.unwrap();
    (db, c)
}

async fn start(re: &ReDms, c: &Client, slot: &str) -> Running {
    let run = re.spawn_live();
    wait_until(WAIT, "re_dms streaming from its slot", || {
        slot_ready(c, slot)
    })
    .await;
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_live_workload_ends_equal_row_by_row() {
    let _sim = Stack::sim_shared().await;
    let (db, c) = source_db("live_mixed").await;
    let slot = db.slot();
    let re = live_into_redshift("live_mixed", &db).await.build();
    let run = start(&re, &c, &slot).await;
    for n in 1..=60 {
        transaction(&c, n).await;
    }
    // Schema changes while streaming: a column added (and filled), one dropped.
    c.batch_execute("ALTER TABLE public.customers ADD COLUMN tier int")
        .await
        .unwrap();
    for n in 61..=120 {
        transaction(&c, n).await;
        let tier = format!(
            "UPDATE public.customers SET tier = {} WHERE id = {}",
            n % 4,
            n / 2
        );
        c.batch_execute(&tier).await.unwrap();
    }
    c.batch_execute("ALTER TABLE public.docs DROP COLUMN note")
        .await
        .unwrap();
    for n in 121..=200 {
        transaction(&c, n).await;
    }
    let run = wait_equal(&c, &re, run, &TABLES).await;
    // The partitions load into their root: no table of their own in the warehouse.
    let leaves: i64 = re
        .backend()
        .await
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('events_eu', 'events_us')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leaves, 0, "partitions got target tables of their own");
    run.stop_cleanly(WAIT);
    re.assert_ledger_unique().await;
    assert!(
        re.wal_segments().is_empty(),
        "everything loaded is out of the WAL"
    );
}

/// With `ack = "loaded"`, a warehouse in maintenance for 30 s holds the slot where the target
/// is (the WAL has the transactions, but they are confirmed only once loaded); re_dms retries
/// through it and ends equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warehouse_in_maintenance_mid_run_holds_the_slot_with_ack_loaded() {
    let _sim = Stack::sim_exclusive().await;
    let stack = Stack::get();
    let (db, c) = source_db("live_maint").await;
    c.batch_execute("ALTER TABLE public.customers ADD COLUMN tier int")
        .await
        .unwrap();
    let slot = db.slot();
    let re = live_into_redshift("live_maint", &db)
        .await
        .option("source", "ack = \"loaded\"")
        .build();
    let run = start(&re, &c, &slot).await;
    for n in 1..=20 {
        transaction(&c, n).await;
    }
    let run = wait_equal(&c, &re, run, &TABLES).await;
    let loaded = insert_lsn(&c).await;
    wait_until(WAIT, "the slot confirmed past what is loaded", || {
        confirmed_past(&c, &slot, &loaded)
    })
    .await;

    stack.set_maintenance(true);
    let until = Instant::now() + Duration::from_secs(30);
    for n in 21..=40 {
        transaction(&c, n).await;
    }
    let written = insert_lsn(&c).await;
    let mut run = run;
    while Instant::now() < until {
        if run.exited() {
            let out = run.wait(WAIT);
            panic!("re_dms exited during the maintenance:\n{}", out.stderr);
        }
        assert!(
            !confirmed_past(&c, &slot, &written).await,
            "the slot was confirmed past transactions the warehouse does not have"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stack.set_maintenance(false);

    let run = wait_equal(&c, &re, run, &TABLES).await;
    wait_until(WAIT, "the slot confirmed once loaded", || {
        confirmed_past(&c, &slot, &written)
    })
    .await;
    let stderr = run.stop_cleanly(WAIT).stderr;
    assert!(stderr.contains("retry"), "the outage is logged:\n{stderr}");
    re.assert_ledger_unique().await;
}

/// Renames in the source keep the target's data: the catalog shows the column's attnum under
/// its new name, so the target column is renamed, not dropped and added empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_columns_keep_their_data() {
    let _sim = Stack::sim_shared().await;
    let db = Stack::get().new_source_db("live_rename").await;
    let c = connect(&db.url).await;
    c.batch_execute("CREATE TABLE public.r (id int PRIMARY KEY, d text, e text)")
        .await
        .unwrap();
    let slot = db.slot();
    let re = live_into_redshift("live_rename", &db).await.build();
    let run = start(&re, &c, &slot).await;
    c.batch_execute(
        "INSERT INTO public.r SELECT i, 'd' || i, 'e' || i FROM generate_series(1, 5) i",
    )
    .await
    .unwrap();
    let run = wait_equal(&c, &re, run, &[("public.r", &["id", "d", "e"])]).await;

    c.batch_execute(
        "ALTER TABLE public.r RENAME COLUMN d TO d2;
         INSERT INTO public.r VALUES (6, 'd6', 'e6');
         UPDATE public.r SET d2 = 'updated' WHERE id = 1;",
    )
    .await
    .unwrap();
    let run = wait_equal(&c, &re, run, &[("public.r", &["id", "d2", "e"])]).await;

    // The key column.
    c.batch_execute(
        "ALTER TABLE public.r RENAME COLUMN id TO rid;
         INSERT INTO public.r VALUES (7, 'd7', 'e7');
         UPDATE public.r SET e = 'by new key' WHERE rid = 2;
         DELETE FROM public.r WHERE rid = 3;",
    )
    .await
    .unwrap();
    let run = wait_equal(&c, &re, run, &[("public.r", &["rid", "d2", "e"])]).await;

    // Renamed, and the old name added again, in one transaction.
    c.batch_execute(
        "BEGIN;
         ALTER TABLE public.r RENAME COLUMN e TO e2;
         ALTER TABLE public.r ADD COLUMN e text;
         INSERT INTO public.r VALUES (8, 'd8', 'e8', 'new e');
         UPDATE public.r SET e = 'set' WHERE rid = 4;
         COMMIT;",
    )
    .await
    .unwrap();
    let run = wait_equal(&c, &re, run, &[("public.r", &["rid", "d2", "e2", "e"])]).await;
    let columns: Vec<String> = re
        .backend()
        .await
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = 'r' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(columns, ["d2", "e", "e2", "rid"]);
    run.stop_cleanly(WAIT);
    re.assert_ledger_unique().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_tables_keep_their_data() {
    let _sim = Stack::sim_shared().await;
    let db = Stack::get().new_source_db("live_table_rename").await;
    let c = connect(&db.url).await;
    // Keys not named `id`: the renamed table's key must come from the catalog.
    c.batch_execute(
        "CREATE TABLE public.o (order_id int PRIMARY KEY, v text);
         CREATE TABLE public.pe (k int, region text, v text, PRIMARY KEY (region, k))
             PARTITION BY LIST (region);
         CREATE TABLE public.pe_eu PARTITION OF public.pe FOR VALUES IN ('eu');",
    )
    .await
    .unwrap();
    let slot = db.slot();
    let re = live_into_redshift("live_table_rename", &db).await.build();
    let run = start(&re, &c, &slot).await;
    c.batch_execute(
        "INSERT INTO public.o SELECT i, 'v' || i FROM generate_series(1, 5) i;
         INSERT INTO public.pe SELECT i, 'eu', 'v' || i FROM generate_series(1, 5) i;",
    )
    .await
    .unwrap();
    let o: &[&str] = &["order_id", "v"];
    let pe: &[&str] = &["region", "k", "v"];
    let run = wait_equal(&c, &re, run, &[("public.o", o), ("public.pe", pe)]).await;

    // Rows under the old name and the new one in one transaction (so in one segment), and a
    // partitioned root renamed under its partitions (whose rows print with the leaf's name).
    c.batch_execute(
        "BEGIN;
         INSERT INTO public.o VALUES (6, 'v6');
         ALTER TABLE public.o RENAME TO o2;
         INSERT INTO public.o2 VALUES (7, 'v7');
         UPDATE public.o2 SET v = 'updated' WHERE order_id = 1;
         ALTER TABLE public.pe RENAME TO pe2;
         INSERT INTO public.pe2 VALUES (6, 'eu', 'v6');
         UPDATE public.pe2 SET v = 'updated' WHERE k = 2;
         COMMIT;",
    )
    .await
    .unwrap();
    let run = wait_equal(&c, &re, run, &[("public.o2", o), ("public.pe2", pe)]).await;
    assert_eq!(re.tables_in("public").await, ["o2", "pe2"]);

    // Renamed while re_dms is stopped: the name history in the WAL directory remembers `o2`.
    run.stop_cleanly(WAIT);
    c.batch_execute(
        "ALTER TABLE public.o2 RENAME TO o3;
         INSERT INTO public.o3 VALUES (8, 'v8');
         DELETE FROM public.o3 WHERE order_id = 3;",
    )
    .await
    .unwrap();
    let run = start(&re, &c, &slot).await;
    let run = wait_equal(&c, &re, run, &[("public.o3", o), ("public.pe2", pe)]).await;
    assert_eq!(re.tables_in("public").await, ["o3", "pe2"]);

    // Renamed and back again; then renamed right after a column was added (the new name's
    // CREATE is skipped on the renamed table: the column must still be added).
    c.batch_execute("ALTER TABLE public.o3 RENAME TO o4; INSERT INTO public.o4 VALUES (9, 'v9');")
        .await
        .unwrap();
    let run = wait_equal(&c, &re, run, &[("public.o4", o)]).await;
    c.batch_execute(
        "BEGIN;
         ALTER TABLE public.o4 RENAME TO o3;
         INSERT INTO public.o3 VALUES (10, 'v10');
         COMMIT;",
    )
    .await
    .unwrap();
    let run = wait_equal(&c, &re, run, &[("public.o3", o)]).await;
    c.batch_execute(
        "BEGIN;
         ALTER TABLE public.o3 ADD COLUMN w text;
         ALTER TABLE public.o3 RENAME TO o6;
         INSERT INTO public.o6 VALUES (11, 'v11', 'w11');
         UPDATE public.o6 SET w = 'w1' WHERE order_id = 1;
         COMMIT;",
    )
    .await
    .unwrap();
    let o6: &[&str] = &["order_id", "v", "w"];
    let run = wait_equal(&c, &re, run, &[("public.o6", o6), ("public.pe2", pe)]).await;
    assert_eq!(re.tables_in("public").await, ["o6", "pe2"]);
    run.stop_cleanly(WAIT);
    re.assert_ledger_unique().await;
    let renamed = re
        .backend()
        .await
        .query_one(
            "SELECT count(*) FROM re_dms.applied WHERE target_table = 'public.o3'",
            &[],
        )
        .await
        .unwrap();
    assert!(
        renamed.get::<_, i64>(0) > 0,
        "ledger rows name the new table"
    );
}
