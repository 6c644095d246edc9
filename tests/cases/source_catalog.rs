//! `catalog::load` against the local stack's source PostgreSQL: typmods, primary keys in index
//! order, exact names, and partitions (two levels, one attached with another column order)
//! resolved to their root; the pipeline's kept connection and when it re-reads. The tests that
//! need the stack are compiled with `stack-tests` only.

#[cfg(feature = "stack-tests")]
use std::collections::BTreeMap;

use re_dms::source::catalog::{self, CatalogError};

#[cfg(feature = "stack-tests")]
use crate::harness::stack::{connect, describe, Stack};

#[cfg(feature = "stack-tests")]
fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[cfg(feature = "stack-tests")]
fn columns(v: &[(&str, &str)]) -> BTreeMap<String, String> {
    v.iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

#[cfg(feature = "stack-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_reads_typmods_keys_and_partition_roots() {
    let stack = Stack::get();
    let db = stack.new_source_db("source_catalog").await;
    let c = connect(&db.url).await;
    c.batch_execute(
        r#"
        CREATE SCHEMA "My.Schema";
        CREATE TABLE "My.Schema"."Mixed ""Q"".T" (
            b integer, "A" varchar(20), c char(3), n numeric(12,4), m numeric,
            arr varchar(20)[], gone int, ts timestamp(3),
            PRIMARY KEY (b, "A"));
        ALTER TABLE "My.Schema"."Mixed ""Q"".T" DROP COLUMN gone;
        CREATE TABLE public.pk_order (a int, b text, c date, PRIMARY KEY (c, a));
        CREATE TABLE public.nokey (x int);

        CREATE TABLE public.ev (id int, region text, at date, v varchar(5),
            PRIMARY KEY (region, id, at)) PARTITION BY LIST (region);
        CREATE TABLE public.ev_eu PARTITION OF public.ev FOR VALUES IN ('eu')
            PARTITION BY RANGE (at);
        CREATE TABLE public.ev_eu_2024 PARTITION OF public.ev_eu
            FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        CREATE SCHEMA other;
        CREATE TABLE other.ev_ap (at date NOT NULL, junk int, v varchar(5),
            region text NOT NULL, id int NOT NULL);
        ALTER TABLE other.ev_ap DROP COLUMN junk;
        ALTER TABLE public.ev ATTACH PARTITION other.ev_ap FOR VALUES IN ('ap');

        CREATE TABLE public.loose (a int, b int) PARTITION BY RANGE (a);
        CREATE TABLE public.loose_1 PARTITION OF public.loose FOR VALUES FROM (0) TO (10);
        ALTER TABLE public.loose_1 ADD PRIMARY KEY (b);
        "#,
    )
    .await
    .unwrap_or_else(|e| panic!("{}", describe(&e)));

    let cat = catalog::load(&db.conninfo).await.expect("catalog");

    // Exact names; typmods kept; dropped columns gone.
    let mixed = cat
        .table("My.Schema", "Mixed \"Q\".T")
        .expect("mixed-case table");
    assert_eq!(mixed.parent, None);
    assert_eq!(mixed.primary_key, strings(&["b", "A"]));
    assert_eq!(
        mixed.columns,
        columns(&[
            ("b", "integer"),
            ("A", "character varying(20)"),
            ("c", "character(3)"),
            ("n", "numeric(12,4)"),
            ("m", "numeric"),
            ("arr", "character varying(20)[]"),
            ("ts", "timestamp(3) without time zone"),
        ])
    );
    assert!(cat.table("my.schema", "mixed \"q\".t").is_none());

    // Key in index order, not column order; no key: none.
    assert_eq!(
        cat.table("public", "pk_order").unwrap().primary_key,
        strings(&["c", "a"])
    );
    assert_eq!(cat.key_for("public", "nokey"), None);

    // Partitions: every level names the top root; the leaf reports the root's key (inherited),
    // also when attached with another column order (its own attnums).
    let key = strings(&["region", "id", "at"]);
    for (schema, name) in [
        ("public", "ev_eu"),
        ("public", "ev_eu_2024"),
        ("other", "ev_ap"),
    ] {
        let t = cat.table(schema, name).expect(name);
        assert_eq!(
            t.parent,
            Some(("public".to_string(), "ev".to_string())),
            "{name}"
        );
        assert_eq!(t.primary_key, key, "{name}");
        assert_eq!(cat.key_for(schema, name).as_ref(), Some(&key), "{name}");
        assert_eq!(cat.parent_of(schema, name), Some(("public", "ev")));
    }
    let root = cat.table("public", "ev").unwrap();
    assert_eq!(root.parent, None);
    assert_eq!(root.primary_key, key);
    assert_eq!(root.partition_columns, strings(&["region"]));
    assert_eq!(
        cat.table("public", "ev_eu_2024").unwrap().partition_columns,
        strings(&["region", "at"])
    );
    assert_eq!(
        cat.column_types("other", "ev_ap").unwrap(),
        &columns(&[
            ("at", "date"),
            ("v", "character varying(5)"),
            ("region", "text"),
            ("id", "integer"),
        ])
    );

    // A partition keyed on its own (the root has no key): extended by the partition column.
    let loose = cat.table("public", "loose_1").unwrap();
    assert_eq!(loose.primary_key, strings(&["b"]));
    assert_eq!(cat.key_for("public", "loose_1"), Some(strings(&["b", "a"])));
    assert_eq!(cat.key_for("public", "loose"), None);

    let keys = cat.primary_keys();
    assert_eq!(keys["My.Schema.Mixed \"Q\".T"], strings(&["b", "A"]));
    assert_eq!(keys["other.ev_ap"], key);
    assert!(!keys.contains_key("public.nokey"));
    // Nothing from the system schemas.
    assert!(cat
        .tables
        .keys()
        .all(|(s, _)| !s.starts_with("pg_") && s != "information_schema"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_source_is_an_error_without_the_password() {
    // Port 1: nothing listens there; connection refused at once.
    let err = catalog::load("host=127.0.0.1 port=1 user=u password=hunter2 dbname=d")
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Connect(_)), "{err:?}");
    let msg = err.to_string();
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(msg.contains("source catalog"), "{msg}");
}

/// The pipeline's catalog keeps one connection open across refreshes, re-reads only when told
/// of a DDL change or when the catalog's stamp moved, and sees a change the stream never shows
/// (a widened varchar) through the stamp.
#[cfg(feature = "stack-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kept_catalog_connection_re_reads_only_when_the_catalog_changed() {
    use std::sync::Arc;
    let db = Stack::get().new_source_db("source_catalog_kept").await;
    let c = connect(&db.url).await;
    c.batch_execute("CREATE TABLE public.items (id int PRIMARY KEY, code varchar(20))")
        .await
        .unwrap();
    let sessions = || async {
        let rows = c
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                 AND pid <> pg_backend_pid() ORDER BY pid",
                &[],
            )
            .await
            .unwrap();
        rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>()
    };
    let kept = catalog::SourceCatalog::open(&db.conninfo, None).await;
    let first = kept.get().expect("read at open");
    let pids = sessions().await;
    assert_eq!(pids.len(), 1, "one catalog connection, kept open: {pids:?}");

    kept.refresh(false).await;
    assert!(
        Arc::ptr_eq(&first, &kept.get().unwrap()),
        "no change, no re-read"
    );
    kept.refresh(true).await;
    let forced = kept.get().unwrap();
    assert!(!Arc::ptr_eq(&first, &forced), "a DDL change seen re-reads");

    c.batch_execute("ALTER TABLE public.items ALTER COLUMN code TYPE varchar(60)")
        .await
        .unwrap();
    kept.refresh(false).await;
    let types = kept.get().unwrap().column_types("public", "items").cloned();
    assert_eq!(
        types.unwrap()["code"],
        "character varying(60)",
        "the stamp moved with the widening"
    );
    assert_eq!(sessions().await, pids, "still the same connection");
}
