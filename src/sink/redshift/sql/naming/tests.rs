//! Unit tests of `naming`, `copy` and `ledger` (a file of their own to keep `naming.rs` short).

use crate::config::Config;
use crate::config::TableConfig;
use crate::sink::redshift::sql::ledger::civil_from_days;
use crate::sink::redshift::sql::*;
use std::time::Duration;
use std::time::UNIX_EPOCH;

#[test]
fn copy_statement_escapes_and_redacts() {
    let auth = CopyAuth::Keys {
        access_key_id: "AK'1".into(),
        secret_access_key: "se'cret".into(),
        session_token: Some("tok'en".into()),
    };
    let cols = ["it\"s".to_string(), "o'k".to_string()];
    let sql = copy_sql(
        "s.t",
        "re_dms_stg_0",
        &cols,
        "s3://b/x'y.csv.gz",
        &auth,
        "eu-west-1",
    );
    let sql = sql.unwrap();
    assert_eq!(
        sql,
        format!(
            "COPY \"re_dms_stg_0\" (\"it\"\"s\", \"o'k\") FROM 's3://b/x''y.csv.gz' \
             ACCESS_KEY_ID 'AK''1' SECRET_ACCESS_KEY 'se''cret' SESSION_TOKEN 'tok''en' \
             REGION 'eu-west-1' {COPY_FORMAT}"
        )
    );
    let shown = redact(&sql, &auth);
    assert!(
        shown.contains("SECRET_ACCESS_KEY '***' SESSION_TOKEN '***'"),
        "{shown}"
    );
    assert!(
        !shown.contains("se''cret") && !shown.contains("tok''en"),
        "{shown}"
    );
    let dbg = format!("{auth:?}");
    assert!(!dbg.contains("se'cret") && !dbg.contains("tok'en"), "{dbg}");
    // `IAM_ROLE default` is the keyword; no REGION when none is configured.
    let role = CopyAuth::IamRole("default".into());
    let sql = copy_sql("s.t", "x", &cols, "s3://b/k", &role, "").unwrap();
    assert!(
        sql.contains("'s3://b/k' IAM_ROLE default CSV GZIP"),
        "{sql}"
    );
    assert_eq!(redact(&sql, &role), sql);
    // A backslash cannot be put portably into a COPY literal.
    let role = CopyAuth::IamRole("arn\\x".into());
    let err = copy_sql("s.t", "x", &cols, "s3://b/k", &role, "").unwrap_err();
    assert!(matches!(err, SqlError::UnsafeCopyValue { .. }), "{err:?}");
    assert!(!COPY_FORMAT.contains("NULL") && !COPY_FORMAT.contains("EMPTYASNULL"));
}

#[test]
fn ledger_insert_escapes_and_formats_time() {
    let target = TargetTable {
        schema: "s".into(),
        name: "it's".into(),
    };
    let sql = ledger_insert(&LedgerRow {
        lineage: crate::wal::Lineage::from_bytes([0xab; 16]),
        source_table: "s.It's\\x",
        target: &target,
        segment: 1,
        first_lsn: Lsn(0),
        last_lsn: Lsn(0x2_0000_00FF),
        counts: RowCounts {
            upserted: 1,
            deleted: 2,
            updated: 3,
        },
        // 2000-02-29 00:00:00.000123 UTC
        applied_at: UNIX_EPOCH + Duration::from_micros(951_782_400_000_123),
    });
    assert!(
        sql.ends_with(
            "VALUES ('abababababababababababababababab', ('s.It''s' || CHR(92) || 'x'), \
             's.it''s', 1, '0/0', '2/FF', 1, 2, 3, '2000-02-29 00:00:00.000123')"
        ),
        "{sql}"
    );
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
    assert_eq!(civil_from_days(20_000), (2024, 10, 4));
    assert_eq!(LEDGER_DDL[0], "CREATE SCHEMA IF NOT EXISTS re_dms");
    assert!(LEDGER_DDL[1].starts_with("CREATE TABLE IF NOT EXISTS re_dms.applied ("));
    assert!(LEDGER_DDL[1].contains("lineage VARCHAR(32)"));
    assert_eq!(
        LEDGER_CHECK_SQL,
        "SELECT 1 FROM re_dms.applied WHERE lineage = $1 AND segment = $2 AND source_table = $3"
    );
}

fn col(name: &str) -> ColumnManifest {
    ColumnManifest {
        name: name.into(),
        pg_type: "integer".into(),
        redshift_type: "INTEGER".into(),
    }
}

fn naming() -> Naming {
    let mut config = Config::default();
    config
        .redshift
        .schema_map
        .insert("Sales".into(), "Analytics".into());
    config.tables.insert(
        "Sales.orders_2024".into(),
        TableConfig {
            primary_key: vec![],
            load_into: Some("Sales.Orders".into()),
            ..TableConfig::default()
        },
    );
    config.tables.insert(
        "public.part1".into(),
        TableConfig {
            primary_key: vec![],
            load_into: Some("parent".into()),
            ..TableConfig::default()
        },
    );
    config
        .tables
        .insert("public.plain".into(), TableConfig::default());
    Naming::from_config(&config)
}

#[test]
fn target_table_applies_load_into_then_schema_map_then_folds() {
    let n = naming();
    let t = |s, t| n.target_table(s, t);
    assert_eq!(
        t("Sales", "orders_2024"),
        TargetTable {
            schema: "analytics".into(),
            name: "orders".into()
        }
    );
    assert_eq!(
        t("Sales", "Order Items").to_string(),
        "analytics.order items"
    );
    assert_eq!(t("public", "part1").to_string(), "public.parent");
    assert_eq!(t("public", "plain").to_string(), "public.plain");
    assert_eq!(t("Other", "ÉtÉ").to_string(), "other.ÉtÉ");
    assert_eq!(
        t("Sales", "Order \"X\"").sql(),
        "\"analytics\".\"order \"\"x\"\"\""
    );
}

#[test]
fn quoting() {
    assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    assert_eq!(quote_ident("Keep"), "\"Keep\"");
    assert_eq!(target_column("MixedCase"), "mixedcase");
    assert_eq!(quote_literal("it's"), "'it''s'");
    assert_eq!(quote_literal(""), "''");
    assert_eq!(quote_literal("a\\b'"), "('a' || CHR(92) || 'b''')");
    assert_eq!(quote_literal("\\"), "('' || CHR(92) || '')");
    assert_eq!(
        copy_literal("s.t", "url", "s3://b/x'y").unwrap(),
        "'s3://b/x''y'"
    );
    let err = copy_literal("s.t", "secret", "a\\b")
        .unwrap_err()
        .to_string();
    assert!(err.contains("s.t") && err.contains("secret"), "{err}");
    assert!(!err.contains("a\\b"), "the value must not be echoed: {err}");
}

#[test]
fn column_collisions_name_both() {
    check_collisions("s.t", &[col("id"), col("Name"), col("other")]).unwrap();
    let err = check_collisions("s.t", &[col("id"), col("Name"), col("NAME")]).unwrap_err();
    assert_eq!(
        err,
        SqlError::ColumnCollision {
            table: "s.t".into(),
            first: "Name".into(),
            second: "NAME".into(),
            target: "name".into()
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("\"Name\"") && msg.contains("\"NAME\"") && msg.contains("s.t"));
}

#[test]
fn long_names_are_refused() {
    let ok = "a".repeat(MAX_IDENT_BYTES);
    check_collisions("s.t", &[col(&ok)]).unwrap();
    let long = "é".repeat(64); // 128 bytes, 64 characters
    let err = check_collisions("s.t", &[col(&long)]).unwrap_err();
    assert!(
        matches!(err, SqlError::NameTooLong { bytes: 128, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&long));
    let t = TargetTable {
        schema: "s".into(),
        name: "x".repeat(200),
    };
    assert!(t.check().unwrap_err().to_string().contains("table"));
    assert!(check_ident("column", "a\0b").is_err());
}

#[test]
fn table_collisions() {
    let n = naming();
    // Partitions with load_into share their parent's target with the parent itself.
    n.check_table_collision([
        ("Sales", "orders_2024", None),
        ("Sales", "Orders", None),
        ("public", "part1", None),
        ("public", "parent", None),
        ("public", "plain", None),
        ("public", "plain", None),
    ])
    .unwrap();
    let err = n
        .check_table_collision([("public", "Users", None), ("public", "users", None)])
        .unwrap_err();
    assert_eq!(
        err,
        SqlError::TableCollision {
            first: "public.Users".into(),
            second: "public.users".into(),
            target: "public.users".into()
        }
    );
    // schema_map onto a schema that also exists in the source.
    let err = n
        .check_table_collision([("Sales", "x", None), ("analytics", "x", None)])
        .unwrap_err();
    assert!(err.to_string().contains("Sales.x"), "{err}");
    assert!(err.to_string().contains("analytics.x"), "{err}");
}

#[test]
fn partitions_go_to_their_catalog_parent() {
    let n = naming();
    let t = |s, t, p| n.target_table_with_parent(s, t, p).to_string();
    // The catalog parent, then schema_map and folding.
    assert_eq!(
        t("Sales", "Orders_EU", Some(("Sales", "Orders"))),
        "analytics.orders"
    );
    assert_eq!(t("x", "ev_ap", Some(("public", "Ev"))), "public.ev");
    // load_into wins over the catalog parent.
    assert_eq!(
        t("Sales", "orders_2024", Some(("Sales", "Other"))),
        "analytics.orders"
    );
    assert_eq!(
        t("public", "part1", Some(("public", "root"))),
        "public.parent"
    );
    // No parent: the table itself, as target_table.
    assert_eq!(
        t("Sales", "Orders", None),
        n.target_table("Sales", "Orders").to_string()
    );
    // Partitions share their parent's target with the parent and each other...
    let root = Some(("public", "ev"));
    n.check_table_collision([
        ("public", "ev", None),
        ("public", "ev_eu", root),
        ("public", "EV_US", root),
        ("public", "part1", None),
    ])
    .unwrap();
    // ...but a table mapping to a target by its own name still collides with another.
    let err = n
        .check_table_collision([
            ("public", "ev_eu", root),
            ("public", "Ev", None),
            ("public", "ev", None),
        ])
        .unwrap_err();
    assert!(err.to_string().contains("public.Ev"), "{err}");
    // The parent's target name is checked for length too.
    let long = "p".repeat(200);
    let err = n
        .check_table_collision([("public", "leaf", Some(("public", long.as_str())))])
        .unwrap_err();
    assert!(matches!(err, SqlError::NameTooLong { .. }), "{err:?}");
}
