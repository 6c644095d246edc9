//! Unit tests of `sql` (a file of its own to keep `sql/mod.rs` short).

use super::*;
use std::time::{Duration, UNIX_EPOCH};

fn col(name: &str, pg: &str) -> ColumnManifest {
    ColumnManifest {
        name: name.into(),
        pg_type: pg.into(),
        redshift_type: crate::csv::typemap::redshift_type(pg),
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn file(kind: FileKind, path: &str, m: &[&str], cols: &[&str], rows: u64) -> FileManifest {
    let (match_columns, columns) = (strings(m), strings(cols));
    FileManifest {
        kind,
        path: path.into(),
        match_columns,
        columns,
        rows,
        bytes: 10,
    }
}

fn load(columns: Vec<ColumnManifest>, key: &[&str], files: Vec<FileManifest>) -> StepManifest {
    let key = strings(key);
    StepManifest::Load {
        columns,
        key,
        files,
    }
}

fn alter(name: &str, from: &str, to: &str) -> StepManifest {
    let redshift_type = crate::csv::typemap::redshift_type(to);
    let (name, from, to) = (name.into(), from.into(), to.into());
    StepManifest::AlterColumnType {
        name,
        from,
        to,
        redshift_type,
    }
}

fn table(schema: &str, name: &str, steps: Vec<StepManifest>) -> TableManifest {
    let (schema, name) = (schema.into(), name.into());
    TableManifest {
        schema,
        name,
        key: vec![],
        steps,
    }
}

/// Every step kind; `rows` scales the row counts.
fn full_table(rows: u64) -> TableManifest {
    let cols = vec![
        col("Id", "integer"),
        col("Name", "text"),
        col("flag", "boolean"),
        col("data", "bytea"),
    ];
    let all = ["Id", "Name", "flag", "data"];
    let load1 = load(
        cols.clone(),
        &["Id"],
        vec![
            file(FileKind::Delete, "p.t.1.delete.csv.gz", &[], &["Id"], rows),
            file(FileKind::Upsert, "p.t.1.upsert.csv.gz", &[], &all, 2 * rows),
            file(
                FileKind::Update,
                "p.t.1.update0.csv.gz",
                &["Id"],
                &["Id", "Name"],
                rows,
            ),
            file(
                FileKind::Update,
                "p.t.1.update1.csv.gz",
                &["Id"],
                &["flag"],
                rows,
            ),
        ],
    );
    let mut cols2 = cols.clone();
    cols2.retain(|c| c.name != "flag");
    cols2.push(col("note", "text"));
    cols2[0] = col("Id", "bigint");
    let all2 = ["Id", "Name", "data", "note"];
    let load2 = load(
        cols2,
        &["Id"],
        vec![file(
            FileKind::Upsert,
            "p.t.6.upsert.csv.gz",
            &[],
            &all2,
            rows,
        )],
    );
    let column = col("note", "text");
    let steps = vec![
        StepManifest::CreateTable { columns: cols },
        load1,
        StepManifest::AddColumn { column },
        StepManifest::DropColumn {
            name: "flag".into(),
        },
        alter("Id", "integer", "bigint"),
        StepManifest::Truncate,
        load2,
    ];
    table("Sales", "Orders", steps)
}

fn plan_with(table: &TableManifest, auth: &CopyAuth) -> Result<Vec<PlanStep>, SqlError> {
    plan_quarantined(table, auth, 0)
}

fn plan_quarantined(
    table: &TableManifest,
    auth: &CopyAuth,
    max_errors: u32,
) -> Result<Vec<PlanStep>, SqlError> {
    let mut urls = BTreeMap::new();
    for s in &table.steps {
        if let StepManifest::Load { files, .. } = s {
            for f in files {
                let url = format!("s3://b/re_dms/00000000000000000007/{}", f.path);
                urls.insert(f.path.clone(), url);
            }
        }
    }
    let input = TablePlanInput {
        table,
        target: Naming::default().target_table(&table.schema, &table.name),
        segment: 7,
        lineage: crate::wal::Lineage::from_bytes([1; 16]),
        first_lsn: Lsn(1),
        last_lsn: Lsn(0x1_0000_0048),
        file_urls: &urls,
        auth,
        region: "us-east-1",
        column_types: None,
        max_errors,
    };
    // 2023-11-14 22:13:20 UTC
    plan_table_at(&input, UNIX_EPOCH + Duration::from_secs(1_700_000_000))
}

fn try_plan(table: &TableManifest) -> Result<Vec<PlanStep>, SqlError> {
    plan_with(table, &CopyAuth::IamRole("arn:aws:iam::1:role/r".into()))
}

fn plan(table: &TableManifest) -> Vec<PlanStep> {
    try_plan(table).unwrap()
}

fn loads(plan: &[PlanStep]) -> Vec<&Vec<String>> {
    let mut out = Vec::new();
    for s in plan {
        if let PlanStep::Load(l) = s {
            out.push(&l.statements);
        }
    }
    out
}

fn ddls(plan: &[PlanStep]) -> Vec<(String, Option<ColumnCheck>)> {
    let ddl = |s: &PlanStep| match s {
        PlanStep::Ddl(d) => Some((d.sql.clone(), d.check.clone())),
        PlanStep::Load(_) => None,
    };
    plan.iter().filter_map(ddl).collect()
}

fn check(c: &str, want_present: bool) -> Option<ColumnCheck> {
    let (schema, table, column) = ("sales".into(), "orders".into(), c.into());
    Some(ColumnCheck {
        schema,
        table,
        column,
        want_present,
    })
}

#[test]
fn full_plan_in_manifest_order() {
    let p = plan(&full_table(5));
    let kind = |s: &PlanStep| match s {
        PlanStep::Ddl(_) => 'D',
        PlanStep::Load(_) => 'L',
    };
    // schema, table | load1 | add, drop, alter x3 | truncate + load2 + ledger
    assert_eq!(p.iter().map(kind).collect::<String>(), "DDLDDDDDL");
    let t = "\"sales\".\"orders\"";
    let expected = vec![
        ("CREATE SCHEMA IF NOT EXISTS \"sales\"".to_string(), None),
        (
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (\"id\" INTEGER, \"name\" VARCHAR(65535), \
                 \"flag\" BOOLEAN, \"data\" VARBYTE(1024000)) DISTSTYLE AUTO"
            ),
            None,
        ),
        (
            format!("ALTER TABLE {t} ADD COLUMN \"note\" VARCHAR(65535)"),
            check("note", true),
        ),
        (
            format!("ALTER TABLE {t} DROP COLUMN \"flag\""),
            check("flag", false),
        ),
        (
            format!("ALTER TABLE {t} ADD COLUMN \"re_dms_new_id\" BIGINT"),
            check("re_dms_new_id", true),
        ),
        (
            format!("UPDATE {t} SET \"re_dms_new_id\" = CAST(\"id\" AS BIGINT)"),
            check("id", false),
        ),
        (
            format!(
                "BEGIN; ALTER TABLE {t} DROP COLUMN \"id\"; \
                 ALTER TABLE {t} RENAME COLUMN \"re_dms_new_id\" TO \"id\"; COMMIT"
            ),
            check("re_dms_new_id", false),
        ),
    ];
    assert_eq!(ddls(&p), expected);
    let l = loads(&p);
    // Truncate shares the transaction of the load after it; the ledger row ends it.
    assert_eq!(l[1][0], format!("DELETE FROM {t}"));
    assert!(l[0].iter().all(|s| !s.contains("re_dms.applied")));
    assert_eq!(
        l[1].last().unwrap(),
        "INSERT INTO re_dms.applied (lineage, source_table, target_table, segment, first_lsn, \
         last_lsn, rows_upserted, rows_deleted, rows_updated, applied_at) VALUES \
         ('01010101010101010101010101010101', 'Sales.Orders', 'sales.orders', 7, '0/1', '1/48', \
         15, 5, 10, '2023-11-14 22:13:20.000000')"
    );
    let all = l
        .iter()
        .flat_map(|v| v.iter())
        .chain(expected.iter().map(|d| &d.0));
    assert!(all
        .clone()
        .all(|s| !s.to_ascii_uppercase().contains("TRUNCATE")));
}

#[test]
fn load_statements() {
    let p = plan(&full_table(3));
    let t = "\"sales\".\"orders\"";
    let copy = |n: usize, cols: &str, path: &str| {
        format!(
            "COPY \"re_dms_stg_{n}\" ({cols}) FROM 's3://b/re_dms/00000000000000000007/{path}' \
             IAM_ROLE 'arn:aws:iam::1:role/r' REGION 'us-east-1' {COPY_FORMAT}"
        )
    };
    let (s0, s1, s2) = ("\"re_dms_stg_0\"", "\"re_dms_stg_1\"", "\"re_dms_stg_2\"");
    let expected = vec![
        format!("CREATE TEMP TABLE {s0} (\"id\" INTEGER)"),
        copy(0, "\"id\"", "p.t.1.delete.csv.gz"),
        format!(
            "CREATE TEMP TABLE {s1} (\"id\" INTEGER, \"name\" VARCHAR(65535), \
             \"flag\" BOOLEAN, \"data\" VARBYTE(1024000))"
        ),
        copy(
            1,
            "\"id\", \"name\", \"flag\", \"data\"",
            "p.t.1.upsert.csv.gz",
        ),
        format!(
            "CREATE TEMP TABLE {s2} (\"re_dms_key_id\" INTEGER, \"id\" INTEGER, \
             \"name\" VARCHAR(65535))"
        ),
        copy(
            2,
            "\"re_dms_key_id\", \"id\", \"name\"",
            "p.t.1.update0.csv.gz",
        ),
        // update1 only sets `flag`, dropped later in the segment: not staged at all.
        format!(
            "UPDATE {t} SET \"id\" = {s2}.\"id\", \"name\" = {s2}.\"name\" FROM {s2} \
             WHERE {t}.\"id\" = {s2}.\"re_dms_key_id\""
        ),
        format!("DELETE FROM {t} USING {s0} WHERE {t}.\"id\" = {s0}.\"id\""),
        format!("DELETE FROM {t} USING {s1} WHERE {t}.\"id\" = {s1}.\"id\""),
        // `flag` is dropped later in the segment: left out so a replay after the drop works.
        format!(
            "INSERT INTO {t} (\"id\", \"name\", \"data\") SELECT \"id\", \"name\", \"data\" \
             FROM {s1}"
        ),
        format!("DROP TABLE {s0}"),
        format!("DROP TABLE {s1}"),
        format!("DROP TABLE {s2}"),
    ];
    assert_eq!(loads(&p)[0], &expected);
    // Staging names stay unique across the plan's transactions.
    assert!(loads(&p)[1][1].starts_with("CREATE TEMP TABLE \"re_dms_stg_3\""));
}

#[test]
fn a_quarantining_table_copies_with_maxerror() {
    let auth = CopyAuth::IamRole("r".into());
    let copies = |max: u32| -> Vec<String> {
        let p = plan_quarantined(&full_table(3), &auth, max).unwrap();
        let mut out = Vec::new();
        for step in &p {
            if let PlanStep::Load(l) = step {
                out.extend(l.copies.iter().map(|c| l.statements[c.statement].clone()));
            }
        }
        out
    };
    assert!(!copies(0).is_empty());
    assert!(copies(0).iter().all(|c| !c.contains("MAXERROR")));
    assert!(copies(1000).iter().all(|c| c.ends_with(" MAXERROR 1000")));
}

#[test]
fn each_copy_is_known_by_its_statement_and_its_file_rows() {
    let p = plan(&full_table(3));
    let mut rows = Vec::new();
    for step in &p {
        if let PlanStep::Load(l) = step {
            let named: Vec<usize> = l.copies.iter().map(|c| c.statement).collect();
            let copies: Vec<usize> = (0..l.statements.len())
                .filter(|&i| l.statements[i].starts_with("COPY "))
                .collect();
            assert_eq!(named, copies, "{:#?}", l.statements);
            rows.extend(l.copies.iter().map(|c| c.rows));
        }
    }
    // delete, upsert, update0 (update1 only sets `flag`, dropped later: not staged); then the
    // load after the truncate, in the truncate's transaction.
    assert_eq!(rows, [3, 6, 3, 3]);
    let PlanStep::Load(last) = p.last().unwrap() else {
        panic!("{p:#?}")
    };
    assert!(last.statements[0].starts_with("DELETE FROM") && last.copies[0].statement > 0);
}

#[test]
fn statement_count_does_not_depend_on_rows() {
    let count = |p: &[PlanStep]| {
        let n = |s: &PlanStep| match s {
            PlanStep::Ddl(_) => 1,
            PlanStep::Load(l) => l.statements.len(),
        };
        p.iter().map(n).sum::<usize>()
    };
    let small = plan(&full_table(1));
    let big = plan(&full_table(1_000_000));
    assert_eq!(count(&small), count(&big));
    assert_eq!(small.len(), big.len());
    // 7 DDL + load1 (3 staged files x 3 + update + 2 deletes + insert = 13)
    // + truncate + load2 (3 + delete + insert) + ledger = 7 + 13 + 7.
    assert_eq!(count(&small), 27);
}

#[test]
fn ddl_only_segment_gets_a_ledger_transaction_and_checks_decide() {
    let p = plan(&table(
        "public",
        "t",
        vec![StepManifest::DropColumn { name: "X".into() }],
    ));
    assert_eq!(p.len(), 2);
    let PlanStep::Ddl(d) = &p[0] else {
        panic!("{p:?}")
    };
    assert_eq!(d.sql, "ALTER TABLE \"public\".\"t\" DROP COLUMN \"x\"");
    assert!(d.should_run(true) && !d.should_run(false));
    let l = loads(&p);
    assert_eq!(l[0].len(), 1);
    assert!(l[0][0].starts_with("INSERT INTO re_dms.applied"));
    let always = DdlStep {
        check: None,
        sql: String::new(),
    };
    assert!(always.should_run(true) && always.should_run(false));
}

#[test]
fn alter_type_variants() {
    let one = |steps: Vec<StepManifest>| -> Vec<String> {
        ddls(&plan(&table("s", "t", steps)))
            .into_iter()
            .map(|d| d.0)
            .collect()
    };
    assert!(one(vec![alter("c", "character varying", "text")]).is_empty());
    assert!(one(vec![alter("c", "public.mood", "text")]).is_empty());
    let b = one(vec![alter("c", "boolean", "text")]);
    assert_eq!(b.len(), 3);
    let case = "CASE WHEN \"c\" THEN 'true' WHEN NOT \"c\" THEN 'false' END";
    assert!(b[1].contains(case), "{b:?}");
    let u = one(vec![alter("c", "uuid", "text")]);
    assert!(u[1].contains("CAST(\"c\" AS VARCHAR(65535))"));
    // A later drop makes the change pointless.
    let drop = StepManifest::DropColumn { name: "c".into() };
    let d = one(vec![alter("C", "integer", "bigint"), drop]);
    assert_eq!(d, ["ALTER TABLE \"s\".\"t\" DROP COLUMN \"c\""]);
}

#[test]
fn escaping_in_identifiers_urls_and_credentials() {
    let cols = vec![col("it\"s", "integer"), col("O'k", "text")];
    let f = file(FileKind::Upsert, "x'y.csv.gz", &[], &["it\"s", "O'k"], 1);
    let mut t = table("we\"ird", "O'Brien", vec![load(cols, &["it\"s"], vec![f])]);
    let auth = CopyAuth::Keys {
        access_key_id: "AK'1".into(),
        secret_access_key: "se'cret".into(),
        session_token: None,
    };
    let p = plan_with(&t, &auth).unwrap();
    let l = loads(&p)[0];
    let stg = "CREATE TEMP TABLE \"re_dms_stg_0\" (\"it\"\"s\" INTEGER, \"o'k\" VARCHAR(65535))";
    assert_eq!(l[0], stg);
    assert_eq!(
        l[1],
        format!(
            "COPY \"re_dms_stg_0\" (\"it\"\"s\", \"o'k\") FROM \
             's3://b/re_dms/00000000000000000007/x''y.csv.gz' ACCESS_KEY_ID 'AK''1' \
             SECRET_ACCESS_KEY 'se''cret' REGION 'us-east-1' {COPY_FORMAT}"
        )
    );
    assert!(
        l[2].starts_with("DELETE FROM \"we\"\"ird\".\"o'brien\" USING"),
        "{l:?}"
    );
    // A source name holding `"` goes into the ledger quoted (see `TableManifest::ledger_name`).
    let ledger = "'\"we\"\"ird\".\"O''Brien\"', 'we\"ird.o''brien'";
    assert!(l.last().unwrap().contains(ledger), "{l:?}");
    // Colliding columns are refused with both names.
    if let StepManifest::Load { columns, .. } = &mut t.steps[0] {
        columns.push(col("O'K", "text"));
    }
    let err = try_plan(&t).unwrap_err().to_string();
    assert!(err.contains("\"O'k\"") && err.contains("\"O'K\""), "{err}");
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let with = |files: Vec<FileManifest>, key: &[&str]| {
        table("s", "t", vec![load(vec![col("id", "integer")], key, files)])
    };
    let upsert = file(FileKind::Upsert, "u.csv.gz", &[], &["id"], 1);
    let err = try_plan(&with(vec![upsert.clone()], &[])).unwrap_err();
    assert!(matches!(err, SqlError::NoKey { .. }), "{err:?}");
    let bad = file(FileKind::Upsert, "u.csv.gz", &[], &["id", "ghost"], 1);
    let err = try_plan(&with(vec![bad], &["id"])).unwrap_err().to_string();
    assert!(err.contains("ghost") && err.contains("s.t"), "{err}");
    let upd = file(FileKind::Update, "u.csv.gz", &[], &["id"], 1);
    assert!(try_plan(&with(vec![upd], &["id"])).is_err());
    // No URL for a file.
    let t = with(vec![upsert], &["id"]);
    let (empty, auth) = (BTreeMap::new(), CopyAuth::IamRole("r".into()));
    let input = TablePlanInput {
        table: &t,
        target: Naming::default().target_table("s", "t"),
        segment: 1,
        lineage: crate::wal::Lineage::from_bytes([1; 16]),
        first_lsn: Lsn(0),
        last_lsn: Lsn(0),
        file_urls: &empty,
        auth: &auth,
        region: "",
        column_types: None,
        max_errors: 0,
    };
    let err = plan_table(&input).unwrap_err().to_string();
    assert!(err.contains("u.csv.gz"), "{err}");
    // Long target names and odd types.
    let (schema, name) = ("s".into(), "t".repeat(128));
    let long = TablePlanInput {
        target: TargetTable { schema, name },
        ..input
    };
    assert!(matches!(
        plan_table(&long),
        Err(SqlError::NameTooLong { .. })
    ));
    let mut c = col("c", "integer");
    c.redshift_type = "INT; DROP TABLE x".into();
    let odd = table(
        "s",
        "t",
        vec![StepManifest::CreateTable { columns: vec![c] }],
    );
    assert!(matches!(try_plan(&odd), Err(SqlError::BadType { .. })));
}

#[test]
fn catalog_types_declare_typmods_in_create_and_add_column() {
    let cols = vec![
        col("Code", "character varying"),
        col("cc", "character"),
        col("amount", "numeric"),
        col("other", "text"),
        col("was_text", "text"),
    ];
    let steps = vec![
        StepManifest::CreateTable { columns: cols },
        StepManifest::AddColumn {
            column: col("note", "character varying"),
        },
    ];
    let t = table("s", "t", steps);
    let types: BTreeMap<String, String> = [
        ("Code", "character varying(20)"),
        ("cc", "character(3)"),
        ("amount", "numeric(12,4)"),
        ("note", "character varying(100)"),
        // The catalog is newer than the segment (text -> integer since): the manifest wins.
        ("was_text", "integer"),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_string(), t.to_string()))
    .collect();
    let (urls, auth) = (BTreeMap::new(), CopyAuth::IamRole("r".into()));
    let input = TablePlanInput {
        table: &t,
        target: Naming::default().target_table("s", "t"),
        segment: 1,
        lineage: crate::wal::Lineage::from_bytes([1; 16]),
        first_lsn: Lsn(0),
        last_lsn: Lsn(0),
        file_urls: &urls,
        auth: &auth,
        region: "",
        column_types: Some(&types),
        max_errors: 0,
    };
    let sql: Vec<String> = ddls(&plan_table(&input).unwrap())
        .into_iter()
        .map(|d| d.0)
        .collect();
    assert_eq!(
        sql[1],
        "CREATE TABLE IF NOT EXISTS \"s\".\"t\" (\"code\" VARCHAR(80), \"cc\" VARCHAR(12), \
         \"amount\" NUMERIC(12,4), \"other\" VARCHAR(65535), \"was_text\" VARCHAR(65535)) \
         DISTSTYLE AUTO"
    );
    assert_eq!(
        sql[2],
        "ALTER TABLE \"s\".\"t\" ADD COLUMN \"note\" VARCHAR(400)"
    );
}
