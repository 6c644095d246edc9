//! Proof that replay is right: each real PostgreSQL 15 capture goes through `re_dms --stdin`
//! into the local target, the manifests are applied in order to an in-memory model of the
//! target, and every table is compared row by row with the source's final contents.

use std::path::Path;

use crate::harness::model::{read_expected, Field, Model};
use crate::harness::{capture, ReDms, FIXTURES};

/// The documented mapping applied to a source value: bytea is written as hex without `\x`.
fn mapped(column: &str, v: &Field) -> Field {
    match (column, v) {
        ("avatar", Some(s)) => Some(s.trim_start_matches("\\x").to_string()),
        _ => v.clone(),
    }
}

fn assert_table_matches(model: &Model, table: &str, key: &[&str]) {
    let (header, expected) = read_expected(
        &Path::new(FIXTURES)
            .join("expected")
            .join(format!("{table}.csv")),
    );
    let got = model
        .tables
        .get(table)
        .unwrap_or_else(|| panic!("table {table} missing in target"));
    let mut cols = got.columns.clone();
    cols.sort();
    let mut want_cols = header.clone();
    want_cols.sort();
    assert_eq!(cols, want_cols, "{table}: columns");
    // Reorder the target's rows into the expected column order.
    let idx: Vec<usize> = header
        .iter()
        .map(|h| got.columns.iter().position(|c| c == h).unwrap())
        .collect();
    let got_rows: Vec<Vec<Field>> = got
        .sorted(key)
        .into_iter()
        .map(|r| idx.iter().map(|&i| r[i].clone()).collect())
        .collect();
    let key_idx: Vec<usize> = key
        .iter()
        .map(|k| header.iter().position(|h| h == k).unwrap())
        .collect();
    let mut want_rows: Vec<Vec<Field>> = expected
        .into_iter()
        .map(|r| r.iter().zip(&header).map(|(v, h)| mapped(h, v)).collect())
        .collect();
    want_rows.sort_by(|a, b| {
        key_idx
            .iter()
            .map(|&i| &a[i])
            .cmp(key_idx.iter().map(|&i| &b[i]))
    });
    assert_eq!(got_rows.len(), want_rows.len(), "{table}: row count");
    for (g, w) in got_rows.iter().zip(&want_rows) {
        for ((h, gv), wv) in header.iter().zip(g).zip(w) {
            assert_eq!(gv, wv, "{table}: column {h} of row {:?}", &w[key_idx[0]]);
        }
    }
}

fn assert_fixture_state(model: &Model) {
    assert_table_matches(model, "public.users", &["id"]);
    assert_table_matches(model, "public.articles", &["id"]);
    assert_table_matches(model, "inventory.stock", &["warehouse", "sku"]);
}

#[test]
fn plain_capture_replays_exactly() {
    let run = ReDms::local().build();
    let out = run.replay(&capture("capture_plain.txt"));
    assert!(out.status.success(), "{}", out.stderr);
    assert_fixture_state(&run.model());
    // Everything loaded: no segment left in the WAL.
    let left: Vec<_> = std::fs::read_dir(run.wal_dir())
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.ends_with(".wal").then_some(n)
        })
        .collect();
    assert!(left.is_empty(), "segments left: {left:?}");
}

/// `[source] exclude` drops a table before the WAL: its rows are nowhere (not in the WAL, not
/// in the target), and the other tables load exactly as without the filter.
#[test]
fn an_excluded_table_never_reaches_the_wal_or_the_target() {
    let run = ReDms::local()
        .option("source", "include = [\"public.*\", \"inventory.*\"]")
        .option("source", "exclude = [\"public.art*\"]")
        .segment_max_age_secs(3600)
        .build();
    let mut open = run.spawn_open();
    open.write(&capture("capture_plain.txt"));
    crate::harness::wait_until_blocking(
        std::time::Duration::from_secs(30),
        "the capture's last COMMIT in the WAL",
        // The last transaction whole: killed earlier, recovery would keep stock rows whose key
        // the stream shows only later (a DELETE), and the replay would fail for want of it.
        || run.wal_contains(b"COMMIT 799"),
    );
    assert!(!run.wal_contains(b"table public.articles"));
    drop(open);
    let out = run.replay(b"");
    assert!(out.status.success(), "{}", out.stderr);
    let model = run.model();
    assert!(
        !model.tables.contains_key("public.articles"),
        "{:?}",
        model.tables.keys()
    );
    assert_table_matches(&model, "public.users", &["id"]);
    assert_table_matches(&model, "inventory.stock", &["warehouse", "sku"]);
}

#[test]
fn timestamps_capture_replays_exactly() {
    let run = ReDms::local().build();
    let out = run.replay(&capture("capture_timestamps.txt"));
    assert!(out.status.success(), "{}", out.stderr);
    assert_fixture_state(&run.model());
}

#[test]
fn tiny_segments_replay_exactly() {
    // Many segments: TOAST-unchanged updates land in segments after their insert (subset update
    // files), the DDL changes and the truncate in others. The stock table has no `id` and its key
    // shows up only later in the stream, so it is configured, as the catalog would provide it.
    let run = ReDms::local()
        .segment_max_bytes(4096)
        .table_key("inventory.stock", &["warehouse", "sku"])
        .build();
    let out = run.replay(&capture("capture_plain.txt"));
    assert!(out.status.success(), "{}", out.stderr);
    let model = run.model();
    // Segments close only between transactions: the 48 KB article insert is one of them.
    assert!(model.segments >= 2, "only {} segments", model.segments);
    let update_files = std::fs::read_dir(run.out_dir())
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".update")
        })
        .count();
    assert!(
        update_files >= 2,
        "TOAST-unchanged updates in later segments use update files"
    );
    assert_fixture_state(&model);
}

#[test]
fn replaying_twice_changes_nothing() {
    let run = ReDms::local().build();
    let input = capture("capture_plain.txt");
    assert!(run.replay(&input).status.success());
    let first = run.model().tables;
    assert!(run.replay(&input).status.success());
    let mut model = run.model();
    assert_eq!(model.segments, 2);
    assert_fixture_state(&model);
    for (name, t) in &first {
        model.tables.get_mut(name).unwrap().rows.sort();
        let mut rows = t.rows.clone();
        rows.sort();
        assert_eq!(model.tables[name].rows, rows, "{name}");
    }
}

/// Inserts `bad` as a line right after the `n`-th line of the capture.
fn with_bad_line(n: usize, bad: &str) -> Vec<u8> {
    let text = String::from_utf8(capture("capture_plain.txt")).unwrap();
    let mut out = String::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        out.push_str(line);
        if i + 1 == n {
            out.push_str(bad);
            out.push('\n');
        }
    }
    out.into_bytes()
}

fn line_number_of(needle: &str) -> usize {
    let text = String::from_utf8(capture("capture_plain.txt")).unwrap();
    text.lines().position(|l| l.starts_with(needle)).unwrap() + 1
}

#[test]
fn malformed_line_loads_everything_before_and_nothing_after() {
    // Garbage inside the transaction that inserts the articles: the users' transactions before
    // it are loaded, the articles are not.
    let begin = line_number_of("BEGIN 787");
    let run = ReDms::local().build();
    let input = with_bad_line(begin + 2, "table public.articles: INSERT: id[integer:1");
    let out = run.replay(&input);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let err = &out.stderr;
    assert!(err.contains(&format!("line {}", begin + 3)), "{err}");
    assert!(err.contains("id[integer:1"), "error shows the text: {err}");
    let model = run.model();
    assert!(
        !model.tables.contains_key("public.articles"),
        "nothing after the bad line"
    );
    let users = &model.tables["public.users"];
    let mut ids: Vec<_> = users.rows.iter().map(|r| r[0].clone().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["1", "3"]);
}

#[test]
fn truncated_input_is_an_error_and_loads_complete_transactions() {
    let text = String::from_utf8(capture("capture_plain.txt")).unwrap();
    let cut = text.find("COMMIT 787").unwrap();
    let run = ReDms::local().build();
    let out = run.replay(&text.as_bytes()[..cut]);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("input ended inside the transaction"),
        "{}",
        out.stderr
    );
    let model = run.model();
    assert_eq!(model.tables["public.users"].rows.len(), 2);
    assert!(!model.tables.contains_key("public.articles"));
}

#[test]
fn config_errors_exit_2_naming_the_key() {
    let run = ReDms::local()
        .option("wal", "segment_max_bytez = 5")
        .build();
    let out = run.replay(b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("segment_max_bytez"), "{}", out.stderr);

    let run = ReDms::local().segment_max_bytes(5).build();
    let out = run.replay(b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr.contains("wal.segment_max_bytes"),
        "{}",
        out.stderr
    );
}

#[test]
fn table_without_findable_key_stops_with_the_config_key() {
    let run = ReDms::local().build();
    let input = b"BEGIN 1\ntable s.t: INSERT: a[integer]:1 b[text]:'x'\nCOMMIT 1\n";
    let out = run.replay(input);
    assert_eq!(out.status.code(), Some(1));
    let err = &out.stderr;
    assert!(err.contains("[tables.\"s.t\"] primary_key"), "{err}");
    // Nothing was dropped: the change is still in the WAL, and a run with the key loads it.
    run.edit_config(|t| format!("{t}\n[tables.\"s.t\"]\nprimary_key = [\"a\"]\n"));
    let out = run.replay(b"");
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        run.model().tables["s.t"].rows,
        vec![vec![Some("1".to_string()), Some("x".to_string())]]
    );
}
