//! Proof that replay is right: each real PostgreSQL 15 capture goes through `re_dms --stdin`
//! into the local target, the manifests are applied in order to an in-memory model of the
//! target, and every table is compared row by row with the source's final contents.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod model;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use model::{read_expected, Field, Model};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

struct Run {
    dir: tempfile::TempDir,
}

impl Run {
    fn new(extra_config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[wal]\ndirectory = \"{0}/wal\"\n{1}\n[target]\nkind = \"local\"\ndirectory = \"{0}/out\"\n",
            dir.path().display(),
            extra_config
        );
        std::fs::write(dir.path().join("re_dms.toml"), config).unwrap();
        Self { dir }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn wal(&self) -> PathBuf {
        self.dir.path().join("wal")
    }

    fn replay(&self, input: &[u8]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_re_dms"))
            .arg("--stdin")
            .arg("--config")
            .arg(self.dir.path().join("re_dms.toml"))
            .env("RE_DMS_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    fn model(&self) -> Model {
        let mut m = Model::default();
        if self.out().exists() {
            m.apply_dir(&self.out());
        }
        m
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

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

fn capture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).unwrap()
}

#[test]
fn plain_capture_replays_exactly() {
    let run = Run::new("");
    let out = run.replay(&capture("capture_plain.txt"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_fixture_state(&run.model());
    // Everything loaded: no segment left in the WAL.
    let left: Vec<_> = std::fs::read_dir(run.wal())
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            n.ends_with(".wal").then_some(n)
        })
        .collect();
    assert!(left.is_empty(), "segments left: {left:?}");
}

#[test]
fn timestamps_capture_replays_exactly() {
    let run = Run::new("");
    let out = run.replay(&capture("capture_timestamps.txt"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_fixture_state(&run.model());
}

#[test]
fn tiny_segments_replay_exactly() {
    // Many segments: TOAST-unchanged updates land in segments after their insert (subset update
    // files), the DDL changes and the truncate in others. The stock table has no `id` and its key
    // shows up only later in the stream, so it is configured, as the catalog would provide it.
    let run = Run::new(
        "segment_max_bytes = 4096\n[tables.\"inventory.stock\"]\nprimary_key = [\"warehouse\", \"sku\"]\n",
    );
    let out = run.replay(&capture("capture_plain.txt"));
    assert!(out.status.success(), "{}", stderr(&out));
    let model = run.model();
    // Segments close only between transactions: the 48 KB article insert is one of them.
    assert!(model.segments >= 2, "only {} segments", model.segments);
    let update_files = std::fs::read_dir(run.out())
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
    let run = Run::new("");
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
    let run = Run::new("");
    let input = with_bad_line(begin + 2, "table public.articles: INSERT: id[integer:1");
    let out = run.replay(&input);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
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
    let run = Run::new("");
    let out = run.replay(&text.as_bytes()[..cut]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("input ended inside the transaction"),
        "{}",
        stderr(&out)
    );
    let model = run.model();
    assert_eq!(model.tables["public.users"].rows.len(), 2);
    assert!(!model.tables.contains_key("public.articles"));
}

#[test]
fn config_errors_exit_2_naming_the_key() {
    let run = Run::new("segment_max_bytez = 5");
    let out = run.replay(b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("segment_max_bytez"),
        "{}",
        stderr(&out)
    );

    let run = Run::new("segment_max_bytes = 5");
    let out = run.replay(b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("wal.segment_max_bytes"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn table_without_findable_key_stops_with_the_config_key() {
    let run = Run::new("");
    let input = b"BEGIN 1\ntable s.t: INSERT: a[integer]:1 b[text]:'x'\nCOMMIT 1\n";
    let out = run.replay(input);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("[tables.\"s.t\"] primary_key"), "{err}");
    // Nothing was dropped: the change is still in the WAL, and a run with the key loads it.
    let with_key = format!(
        "{}\n[tables.\"s.t\"]\nprimary_key = [\"a\"]\n",
        std::fs::read_to_string(run.dir.path().join("re_dms.toml")).unwrap()
    );
    std::fs::write(run.dir.path().join("re_dms.toml"), with_key).unwrap();
    let out = run.replay(b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        run.model().tables["s.t"].rows,
        vec![vec![Some("1".to_string()), Some("x".to_string())]]
    );
}
