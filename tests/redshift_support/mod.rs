//! Helpers for the tests that run `re_dms --stdin` into the local Redshift (redshift-sim in front
//! of PostgreSQL, moto as S3): [`Redshift`] gives one test its own WAL, warehouse database, S3
//! prefix and config; [`Running`] is a re_dms started without waiting (to kill it, or to change
//! the sim's state mid-run); [`Workload`] generates test_decoding text over a few tables and
//! computes the final state the warehouse must hold.
//!
//! A test binary using this declares `mod model; mod support; mod redshift_support;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::model::{read_expected, Field};
use crate::support::{self, Stack, TestDb};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// One test's re_dms: its own WAL, warehouse database and S3 prefix.
pub struct Redshift {
    pub dir: tempfile::TempDir,
    pub db: TestDb,
}

impl Redshift {
    /// `extra` goes into the `[wal]` section (e.g. `segment_max_bytes = 4096`).
    pub async fn new(name: &str, extra: &str) -> Self {
        let stack = Stack::get();
        let db = stack.new_warehouse_db(name).await;
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            r#"[wal]
directory = "{dir}/wal"
{extra}
[target]
kind = "redshift"

[s3]
bucket = "{bucket}"
prefix = "{name}/"
region = "{region}"
endpoint = "{endpoint}"
force_path_style = true

[redshift]
connection = "{conn}"
max_connections = 4

[tables."inventory.stock"]
primary_key = ["warehouse", "sku"]
"#,
            dir = dir.path().display(),
            bucket = stack.s3_bucket,
            region = stack.region,
            endpoint = stack.s3_endpoint,
            conn = db.conninfo,
        );
        std::fs::write(dir.path().join("re_dms.toml"), config).unwrap();
        Self { dir, db }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("re_dms.toml")
    }

    /// Rewrites the config file with `edit` (e.g. a `str::replace` of one line).
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(self.config()).unwrap();
        std::fs::write(self.config(), edit(text)).unwrap();
    }

    /// Replaces the config line starting with `prefix` (e.g. `connection = `) by `line`.
    pub fn set_config_line(&self, prefix: &str, line: &str) {
        self.edit_config(|t| {
            let old = t
                .lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no config line starts with {prefix:?}"))
                .to_string();
            t.replace(&old, line)
        });
    }

    /// A second re_dms loading into the same warehouse database and S3 prefix, with its own
    /// WAL directory (a second source, or the same one on a new host).
    pub fn sharing_warehouse(&self) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(self.config()).unwrap().replace(
            &self.dir.path().display().to_string(),
            &dir.path().display().to_string(),
        );
        std::fs::write(dir.path().join("re_dms.toml"), text).unwrap();
        Self {
            dir,
            db: self.db.clone(),
        }
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.dir.path().join("wal")
    }

    /// `re_dms --stdin --config ...` with the stack's environment and `RE_DMS_LOG=warn`.
    /// `RE_DMS_TEST_BIN` names another binary to run (e.g. an older build, to see a test fail
    /// on the code it guards against).
    pub fn command(&self) -> Command {
        let stack = Stack::get();
        let bin = std::env::var_os("RE_DMS_TEST_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_re_dms")));
        let mut c = Command::new(bin);
        c.args(["--stdin", "--config"])
            .arg(self.config())
            .env("RE_DMS_LOG", "warn");
        for (k, v) in &stack.vars {
            c.env(k, v);
        }
        c
    }

    /// A whole run over `input`.
    pub fn replay(&self, input: &[u8]) -> Output {
        let mut child = self
            .command()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let w = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        w.join().unwrap();
        out
    }

    /// Starts re_dms on `input` (written, then stdin closed, by a thread) without waiting.
    pub fn spawn(&self, input: Vec<u8>) -> Running {
        let (mut run, mut stdin) = self.spawn_open();
        run.writer = Some(std::thread::spawn(move || {
            // EPIPE when the process was killed: expected.
            let _ = stdin.write_all(&input);
        }));
        run
    }

    /// Starts re_dms with its stdin left to the caller: open (and idle) until dropped.
    pub fn spawn_open(&self) -> (Running, ChildStdin) {
        let mut child = self
            .command()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        });
        let run = Running {
            child,
            writer: None,
            stderr: Some(stderr),
        };
        (run, stdin)
    }

    /// Every row of `table` as text (NULL = None), columns in `columns` order (through the sim).
    pub async fn rows(&self, table: &str, columns: &[String]) -> Vec<Vec<Field>> {
        rows_at(&self.db.url, table, columns).await
    }

    /// The same read from the backend directly: not in the sim's statement log, and working
    /// while the sim is in maintenance.
    pub async fn backend_rows(&self, table: &str, columns: &[String]) -> Vec<Vec<Field>> {
        rows_at(self.db.backend_url.as_ref().unwrap(), table, columns).await
    }

    /// A connection to the warehouse database bypassing the sim.
    pub async fn backend(&self) -> tokio_postgres::Client {
        support::connect(self.db.backend_url.as_ref().unwrap()).await
    }

    /// `(source_table, segment)` of every ledger row, sorted; empty before the ledger exists.
    pub async fn ledger(&self) -> Vec<(String, i64)> {
        let c = self.backend().await;
        let rows = match c
            .query(
                "SELECT source_table::text, segment FROM re_dms.applied ORDER BY 1, 2",
                &[],
            )
            .await
        {
            Ok(rows) => rows,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
                return Vec::new()
            }
            Err(e) => panic!("reading the ledger: {}", support::describe(&e)),
        };
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    }

    /// The WAL's segment files, sorted.
    pub fn wal_segments(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.wal_dir())
            .map(|d| {
                d.map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|e| e == "wal"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Whether some WAL segment holds `needle`.
    pub fn wal_contains(&self, needle: &[u8]) -> bool {
        self.wal_segments()
            .iter()
            .any(|p| std::fs::read(p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)))
    }

    /// Asserts the warehouse holds exactly `w`'s final state (read from the backend).
    pub async fn assert_workload(&self, w: &Workload) {
        for t in &w.tables {
            self.assert_table(t).await;
        }
    }

    /// Asserts the warehouse table holds exactly `t`'s final state (read from the backend).
    pub async fn assert_table(&self, t: &GenTable) {
        let cols: Vec<String> = t.columns.iter().map(|(n, _)| n.to_string()).collect();
        let mut got = self.backend_rows(&t.name, &cols).await;
        got.sort_by_key(|r| r[0].as_deref().unwrap().parse::<i64>().unwrap());
        let want: Vec<&Vec<Field>> = t.rows.values().collect();
        assert_eq!(
            got.len(),
            want.len(),
            "{}: row count (got {} rows, want {})",
            t.name,
            got.len(),
            want.len()
        );
        for (g, w) in got.iter().zip(want) {
            for ((c, gv), wv) in cols.iter().zip(g).zip(w) {
                assert_eq!(
                    normalize(gv),
                    normalize(wv),
                    "{}.{c} of row id {:?}",
                    t.name,
                    w[0]
                );
            }
        }
    }

    /// Asserts the ledger has exactly one row per (table, segment) and returns the segments.
    pub async fn assert_ledger_unique(&self) -> Vec<(String, i64)> {
        let ledger = self.ledger().await;
        let mut dedup = ledger.clone();
        dedup.dedup();
        assert_eq!(ledger, dedup, "a table-segment was recorded twice");
        ledger
    }
}

async fn rows_at(url: &str, table: &str, columns: &[String]) -> Vec<Vec<Field>> {
    let c = support::connect(url).await;
    let cols: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    let q = format!("SELECT {} FROM {table}", cols.join(", "));
    let mut out = Vec::new();
    for m in c
        .simple_query(&q)
        .await
        .unwrap_or_else(|e| panic!("{q}: {}", support::describe(&e)))
    {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            out.push(
                (0..columns.len())
                    .map(|i| r.get(i).map(str::to_string))
                    .collect(),
            );
        }
    }
    out
}

/// A re_dms started by [`Redshift::spawn`].
pub struct Running {
    pub child: Child,
    writer: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<String>>,
}

/// How a [`Running`] ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stderr: String,
}

impl Finished {
    /// Exit 1, saying a signal stopped the run before the end of its input.
    pub fn assert_stopped_before_eof(&self) {
        assert_eq!(self.status.code(), Some(1), "{}", self.stderr);
        assert!(
            self.stderr
                .contains("stopped by a signal before the end of the input"),
            "{}",
            self.stderr
        );
    }
}

impl Running {
    /// Whether it has exited (without reaping more than `try_wait` does).
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits for the exit; kills it and panics after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self.collect();
                panic!("re_dms still running after {timeout:?}; killed. stderr:\n{err}");
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        };
        Finished {
            status,
            stderr: self.collect(),
        }
    }

    /// Sends SIGTERM (does not wait).
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// SIGKILL (no clean-up of any kind), then reap.
    pub fn kill_9(mut self) -> Finished {
        let _ = self.child.kill();
        let status = self.child.wait().unwrap();
        Finished {
            status,
            stderr: self.collect(),
        }
    }

    fn collect(&mut self) -> String {
        if let Some(w) = self.writer.take() {
            w.join().unwrap();
        }
        self.stderr
            .take()
            .map(|h| h.join().unwrap())
            .unwrap_or_default()
    }
}

pub fn capture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// NUMERIC(38,10) prints trailing zeros: compare numbers by value.
pub fn normalize(v: &Field) -> Field {
    v.as_ref().map(|s| {
        let numeric = !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
            && s.contains('.');
        if numeric {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.clone()
        }
    })
}

pub async fn assert_matches_expected(rs: &Redshift, table: &str, key: &[&str]) {
    let (header, expected) = read_expected(
        &Path::new(FIXTURES)
            .join("expected")
            .join(format!("{table}.csv")),
    );
    let key_idx: Vec<usize> = key
        .iter()
        .map(|k| header.iter().position(|h| h == k).unwrap())
        .collect();
    let sort = |rows: &mut Vec<Vec<Field>>| {
        rows.sort_by(|a, b| {
            key_idx
                .iter()
                .map(|&i| &a[i])
                .cmp(key_idx.iter().map(|&i| &b[i]))
        })
    };
    let mut got = rs.rows(table, &header).await;
    let mut want = expected;
    sort(&mut got);
    sort(&mut want);
    assert_eq!(got.len(), want.len(), "{table}: row count; got {got:?}");
    for (g, w) in got.iter().zip(&want) {
        for ((h, gv), wv) in header.iter().zip(g).zip(w) {
            assert_eq!(
                normalize(gv),
                normalize(wv),
                "{table}.{h} of row {:?}",
                w[key_idx[0]]
            );
        }
    }
}

pub async fn assert_fixture_state(rs: &Redshift) {
    assert_matches_expected(rs, "public.users", &["id"]).await;
    assert_matches_expected(rs, "public.articles", &["id"]).await;
    assert_matches_expected(rs, "inventory.stock", &["warehouse", "sku"]).await;
}

// ------------------------------------------------------------------------- generated workloads

/// A column's kind: how values are generated, printed by test_decoding, and read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    BigInt,
    Text,
    Varchar,
    Bool,
    Numeric,
    Date,
}

impl Kind {
    /// The type name test_decoding prints.
    fn pg(self) -> &'static str {
        match self {
            Kind::Int => "integer",
            Kind::BigInt => "bigint",
            Kind::Text => "text",
            Kind::Varchar => "character varying",
            Kind::Bool => "boolean",
            Kind::Numeric => "numeric",
            Kind::Date => "date",
        }
    }
}

/// One generated table: the key is its first column, `id`.
#[derive(Debug, Clone)]
pub struct GenTable {
    /// `schema.table`.
    pub name: String,
    pub columns: Vec<(&'static str, Kind)>,
    /// Final state by id: values as the warehouse prints them (NULL = None).
    pub rows: BTreeMap<i64, Vec<Field>>,
    next_id: i64,
}

/// A value: how test_decoding prints it, and how the warehouse prints it back.
struct Value {
    printed: String,
    stored: Field,
}

/// Generated test_decoding text over some tables, with the final state it leads to.
pub struct Workload {
    pub tables: Vec<GenTable>,
    pub text: String,
    pub changes: usize,
    pub transactions: usize,
    rng: fastrand::Rng,
    xid: u64,
}

impl Workload {
    /// Three tables of varied types: `public.customers`, `public.orders`, `shop.items`.
    pub fn three_tables(seed: u64) -> Self {
        use Kind::*;
        Self::new(
            seed,
            vec![
                (
                    "public.customers",
                    vec![
                        ("id", BigInt),
                        ("name", Varchar),
                        ("active", Bool),
                        ("score", Numeric),
                    ],
                ),
                (
                    "public.orders",
                    vec![
                        ("id", Int),
                        ("customer_id", BigInt),
                        ("note", Text),
                        ("qty", Int),
                        ("placed", Date),
                    ],
                ),
                (
                    "shop.items",
                    vec![
                        ("id", Int),
                        ("label", Text),
                        ("price", Numeric),
                        ("in_stock", Bool),
                    ],
                ),
            ],
        )
    }

    pub fn new(seed: u64, tables: Vec<(&str, Vec<(&'static str, Kind)>)>) -> Self {
        Self {
            tables: tables
                .into_iter()
                .map(|(name, columns)| GenTable {
                    name: name.to_string(),
                    columns,
                    rows: BTreeMap::new(),
                    next_id: 1,
                })
                .collect(),
            text: String::new(),
            changes: 0,
            transactions: 0,
            rng: fastrand::Rng::with_seed(seed),
            xid: 1000,
        }
    }

    /// Appends `changes` more changes in transactions of 5..=15 changes: ~50% inserts, ~30%
    /// updates (whole new row, as test_decoding prints them), ~20% deletes, tables at random.
    pub fn generate(&mut self, changes: usize) -> &mut Self {
        let mut left = changes;
        while left > 0 {
            let n = self.rng.usize(5..=15).min(left);
            self.begin();
            for _ in 0..n {
                let t = self.rng.usize(0..self.tables.len());
                let roll = self.rng.u32(0..10);
                if self.tables[t].rows.is_empty() || roll < 5 {
                    self.insert(t);
                } else if roll < 8 {
                    self.update(t);
                } else {
                    self.delete(t);
                }
            }
            self.commit();
            left -= n;
        }
        self
    }

    pub fn begin(&mut self) {
        self.xid += 1;
        self.text.push_str(&format!("BEGIN {}\n", self.xid));
    }

    pub fn commit(&mut self) {
        self.text.push_str(&format!("COMMIT {}\n", self.xid));
        self.transactions += 1;
    }

    /// Inserts a new row into table `t` (its next id).
    pub fn insert(&mut self, t: usize) {
        let id = self.tables[t].next_id;
        self.tables[t].next_id += 1;
        self.write_row(t, "INSERT", id);
    }

    /// Inserts a row into table `t` (its next id) with the other columns' values as given,
    /// printed (e.g. a value the warehouse rejects); `stored` is what the warehouse would hold
    /// for them.
    pub fn insert_raw(&mut self, t: usize, printed: &[&str], stored: Vec<Field>) {
        let id = self.tables[t].next_id;
        self.tables[t].next_id += 1;
        let table = &self.tables[t];
        let (key, key_kind) = table.columns[0];
        let mut line = format!(
            "table {}: INSERT: {key}[{}]:{id}",
            table.name,
            key_kind.pg()
        );
        for ((c, k), v) in table.columns[1..].iter().zip(printed) {
            line.push_str(&format!(" {c}[{}]:{v}", k.pg()));
        }
        self.text.push_str(&line);
        self.text.push('\n');
        let mut row = vec![Some(id.to_string())];
        row.extend(stored);
        self.tables[t].rows.insert(id, row);
        self.changes += 1;
    }

    fn update(&mut self, t: usize) {
        let id = self.pick(t);
        self.write_row(t, "UPDATE", id);
    }

    fn delete(&mut self, t: usize) {
        let id = self.pick(t);
        let table = &mut self.tables[t];
        table.rows.remove(&id);
        let line = format!(
            "table {}: DELETE: id[{}]:{id}\n",
            table.name,
            table.columns[0].1.pg()
        );
        self.text.push_str(&line);
        self.changes += 1;
    }

    /// A random existing id of table `t`.
    fn pick(&mut self, t: usize) -> i64 {
        let n = self.tables[t].rows.len();
        let i = self.rng.usize(0..n);
        *self.tables[t].rows.keys().nth(i).unwrap()
    }

    fn write_row(&mut self, t: usize, op: &str, id: i64) {
        let columns = self.tables[t].columns.clone();
        let mut line = format!("table {}: {op}:", self.tables[t].name);
        let mut stored = Vec::with_capacity(columns.len());
        for (i, (c, k)) in columns.iter().enumerate() {
            let v = if i == 0 {
                Value {
                    printed: id.to_string(),
                    stored: Some(id.to_string()),
                }
            } else {
                self.value(*k)
            };
            line.push_str(&format!(" {c}[{}]:{}", k.pg(), v.printed));
            stored.push(v.stored);
        }
        line.push('\n');
        self.text.push_str(&line);
        self.tables[t].rows.insert(id, stored);
        self.changes += 1;
    }

    fn value(&mut self, k: Kind) -> Value {
        let r = &mut self.rng;
        if r.u32(0..20) == 0 {
            return Value {
                printed: "null".into(),
                stored: None,
            };
        }
        let plain = |s: String| Value {
            printed: s.clone(),
            stored: Some(s),
        };
        match k {
            Kind::Int => plain(r.i32(-100_000..100_000).to_string()),
            Kind::BigInt => plain(r.i64(-(1 << 50)..(1 << 50)).to_string()),
            Kind::Bool => {
                let b = r.bool();
                Value {
                    printed: b.to_string(),
                    stored: Some(if b { "t" } else { "f" }.into()),
                }
            }
            Kind::Numeric => {
                let units = r.i64(-10_000_000..10_000_000);
                let s = format!(
                    "{}{}.{:03}",
                    if units < 0 { "-" } else { "" },
                    units.abs() / 1000,
                    units.abs() % 1000
                );
                plain(s)
            }
            Kind::Date => {
                let s = format!(
                    "{:04}-{:02}-{:02}",
                    r.u32(1990..2030),
                    r.u32(1..=12),
                    r.u32(1..=28)
                );
                Value {
                    printed: format!("'{s}'"),
                    stored: Some(s),
                }
            }
            Kind::Text | Kind::Varchar => {
                const PIECES: &[&str] = &[
                    "plain",
                    "with, comma",
                    "a \"quoted\" word",
                    "it's",
                    "café",
                    "tab\there",
                    "two\nlines",
                    "back\\slash",
                    "",
                    " ",
                    "\\N",
                ];
                let n = r.usize(1..=3);
                let mut s = String::new();
                for _ in 0..n {
                    s.push_str(PIECES[r.usize(0..PIECES.len())]);
                }
                if r.u32(0..4) != 0 {
                    s.push_str(&r.u32(..).to_string());
                }
                Value {
                    printed: format!("'{}'", s.replace('\'', "''")),
                    stored: Some(s),
                }
            }
        }
    }

    /// The text generated so far, leaving the state (the next text continues from it).
    pub fn take_text(&mut self) -> String {
        std::mem::take(&mut self.text)
    }

    /// Rows of all tables.
    pub fn row_count(&self) -> usize {
        self.tables.iter().map(|t| t.rows.len()).sum()
    }
}
