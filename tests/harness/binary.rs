//! [`ReDms`]: one test's `re_dms`: a directory of its own holding the config, the WAL and (local
//! target) the output; for Redshift also a warehouse database and an S3 prefix of its own. Runs
//! of the binary over it either go to the end ([`ReDms::replay`] gives an [`Output`]) or return
//! a [`Running`] process to write to, signal, kill -9 or wait for, always with a timeout.
//!
//! ```ignore
//! let re = ReDms::local().segment_max_bytes(4096).build();
//! let out = re.replay(&capture("capture_plain.txt"));
//! assert!(out.status.success(), "{}", out.stderr);
//!
//! // stack-tests: a warehouse database through redshift-sim, moto as S3.
//! let _sim = Stack::sim_shared().await;
//! let rs = ReDms::redshift("my_test").await.segment_max_age_secs(1).build();
//! let mut run = rs.spawn_open(); // stdin stays open until the run is waited for or killed
//! run.write(b"BEGIN 1\n");
//! run.sigterm();
//! let out = run.wait(Duration::from_secs(60)); // kills it and panics after 60 s
//! ```
//!
//! The binary is `CARGO_BIN_EXE_re_dms`, or the one `RE_DMS_TEST_BIN` names (e.g. an older build,
//! to see a test fail on the code it guards against). Every run gets `RE_DMS_LOG=warn`, the
//! stack's variables (Redshift), and `FAILPOINTS` when a spec is set (`failpoints` feature: the
//! binary prints `re_dms failpoint reached: <name>` and blocks there, see
//! [`Running::wait_for_failpoint`]).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[cfg(feature = "stack-tests")]
use super::stack::{Stack, TestDb};

/// How long [`ReDms::replay`] lets a run take before it kills it and fails the test.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(300);

/// The options of a [`ReDms`], turned into its config file by [`Builder::build`].
pub struct Builder {
    /// `(section, lines)` in file order; `{dir}` in a line is the test's directory.
    sections: Vec<(String, Vec<String>)>,
    /// Appended to the file as is.
    extra: String,
    #[cfg(feature = "stack-tests")]
    db: Option<TestDb>,
    #[cfg(feature = "failpoints")]
    failpoints: Option<String>,
}

impl Builder {
    fn new(target: &[&str]) -> Self {
        Self {
            sections: vec![
                ("wal".into(), vec!["directory = \"{dir}/wal\"".into()]),
                (
                    "target".into(),
                    target.iter().map(|l| l.to_string()).collect(),
                ),
            ],
            extra: String::new(),
            #[cfg(feature = "stack-tests")]
            db: None,
            #[cfg(feature = "failpoints")]
            failpoints: None,
        }
    }

    /// `line` in section `section` (`wal`, `redshift`, `tables."s.t"`, ...), created at the end
    /// of the file when new.
    pub fn option(mut self, section: &str, line: &str) -> Self {
        match self.sections.iter_mut().find(|(s, _)| s == section) {
            Some((_, lines)) => lines.push(line.to_string()),
            None => self
                .sections
                .push((section.to_string(), vec![line.to_string()])),
        }
        self
    }

    /// `wal.segment_max_bytes`.
    pub fn segment_max_bytes(self, bytes: u64) -> Self {
        self.option("wal", &format!("segment_max_bytes = {bytes}"))
    }

    /// `wal.segment_max_age_secs`.
    pub fn segment_max_age_secs(self, secs: u64) -> Self {
        self.option("wal", &format!("segment_max_age_secs = {secs}"))
    }

    /// `[tables."<table>"] primary_key = [...]`.
    pub fn table_key(self, table: &str, key: &[&str]) -> Self {
        let key: Vec<String> = key.iter().map(|k| format!("\"{k}\"")).collect();
        self.option(
            &format!("tables.\"{table}\""),
            &format!("primary_key = [{}]", key.join(", ")),
        )
    }

    /// `[source]` for streaming from `db` (a source database of the stack) through the
    /// replication slot `<database>_slot`, with status updates every second.
    #[cfg(feature = "stack-tests")]
    pub fn live_from(self, db: &TestDb) -> Self {
        self.live_from_with(db, "")
    }

    /// [`Builder::live_from`] with `more` appended to the source connection string (e.g.
    /// ` password=...`).
    #[cfg(feature = "stack-tests")]
    pub fn live_from_with(self, db: &TestDb, more: &str) -> Self {
        self.option("source", &format!("connection = \"{}{more}\"", db.conninfo))
            .option("source", &format!("slot = \"{}\"", db.slot()))
            .option("source", "status_interval_secs = 1")
    }

    /// Config text appended at the end of the file (whole sections, e.g. `[batch]\n...`).
    pub fn config(mut self, text: &str) -> Self {
        self.extra.push_str(text);
        self.extra.push('\n');
        self
    }

    /// `FAILPOINTS` for every run (the `fail` crate's syntax, e.g. `wal.after_sync=return`).
    #[cfg(feature = "failpoints")]
    pub fn failpoints(mut self, spec: &str) -> Self {
        self.failpoints = Some(spec.to_string());
        self
    }

    /// Makes the directory and writes the config.
    pub fn build(self) -> ReDms {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut text = String::new();
        for (section, lines) in &self.sections {
            text.push_str(&format!("[{section}]\n"));
            for l in lines {
                text.push_str(l);
                text.push('\n');
            }
            text.push('\n');
        }
        text.push_str(&self.extra);
        let text = text.replace("{dir}", &dir.path().display().to_string());
        let re = ReDms {
            dir,
            #[cfg(feature = "stack-tests")]
            db: self.db,
            #[cfg(feature = "failpoints")]
            failpoints: self.failpoints,
        };
        std::fs::write(re.config_path(), text).expect("write the config");
        re
    }
}

/// One test's re_dms (see the module's note).
pub struct ReDms {
    dir: tempfile::TempDir,
    /// Redshift: the warehouse database (its `url` goes through redshift-sim).
    #[cfg(feature = "stack-tests")]
    db: Option<TestDb>,
    #[cfg(feature = "failpoints")]
    failpoints: Option<String>,
}

impl ReDms {
    /// Into the local target (`<dir>/out`).
    pub fn local() -> Builder {
        Builder::new(&["kind = \"local\"", "directory = \"{dir}/out\""])
    }

    /// Into Redshift: a fresh warehouse database named after `name` (through redshift-sim), the
    /// stack's bucket under the prefix `<database>/`, 4 connections, and the key of the fixtures'
    /// `inventory.stock` (it shows up only late in the captures). Starts the stack if needed.
    /// Take a lease on the sim first ([`Stack::sim_shared`]).
    #[cfg(feature = "stack-tests")]
    pub async fn redshift(name: &str) -> Builder {
        Stack::assert_sim_leased();
        let stack = Stack::get();
        let db = stack.new_warehouse_db(name).await;
        let mut b = Builder::new(&["kind = \"redshift\""])
            .option("s3", &format!("bucket = \"{}\"", stack.s3_bucket))
            .option("s3", &format!("prefix = \"{}/\"", db.name))
            .option("s3", &format!("region = \"{}\"", stack.region))
            .option("s3", &format!("endpoint = \"{}\"", stack.s3_endpoint))
            .option("s3", "force_path_style = true")
            .option("redshift", &format!("connection = \"{}\"", db.conninfo))
            .option("redshift", "max_connections = 4")
            .table_key("inventory.stock", &["warehouse", "sku"]);
        b.db = Some(db);
        b
    }

    /// The test's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir().join("re_dms.toml")
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.dir().join("wal")
    }

    /// The local target's directory: one directory per loaded segment.
    pub fn out_dir(&self) -> PathBuf {
        self.dir().join("out")
    }

    /// Rewrites the config with `edit`.
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(self.config_path()).expect("read the config");
        std::fs::write(self.config_path(), edit(text)).expect("write the config");
    }

    /// Replaces the config line starting with `prefix` (e.g. `connection = `) by `line`.
    #[cfg(feature = "stack-tests")]
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

    /// `FAILPOINTS` for the next runs (None: none).
    #[cfg(feature = "failpoints")]
    pub fn set_failpoints(&mut self, spec: Option<&str>) {
        self.failpoints = spec.map(str::to_string);
    }

    /// The warehouse database (Redshift only).
    #[cfg(feature = "stack-tests")]
    pub fn db(&self) -> &TestDb {
        self.db.as_ref().expect("a Redshift ReDms")
    }

    /// A second re_dms with the same config (so the same warehouse database and S3 prefix) and a
    /// directory, so a WAL, of its own: a second source, or the same one on a new host.
    #[cfg(feature = "stack-tests")]
    pub fn sharing_warehouse(&self) -> ReDms {
        let dir = tempfile::tempdir().expect("temporary directory");
        let text = std::fs::read_to_string(self.config_path())
            .expect("read the config")
            .replace(
                &self.dir().display().to_string(),
                &dir.path().display().to_string(),
            );
        std::fs::write(dir.path().join("re_dms.toml"), text).expect("write the config");
        ReDms {
            dir,
            db: self.db.clone(),
            #[cfg(feature = "failpoints")]
            failpoints: self.failpoints.clone(),
        }
    }

    /// `re_dms <args> --config <this config>` with this re_dms's environment.
    fn command(&self, args: &[&str]) -> Command {
        let bin = std::env::var_os("RE_DMS_TEST_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_re_dms")));
        let mut c = Command::new(bin);
        c.args(args)
            .arg("--config")
            .arg(self.config_path())
            .env("RE_DMS_LOG", "warn");
        #[cfg(feature = "stack-tests")]
        if self.db.is_some() {
            for (k, v) in &Stack::get().vars {
                c.env(k, v);
            }
        }
        #[cfg(feature = "failpoints")]
        if let Some(spec) = &self.failpoints {
            c.env("FAILPOINTS", spec);
        }
        c
    }

    fn start(&self, args: &[&str]) -> Running {
        self.start_with_env(args, &[])
    }

    fn start_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting re_dms: {e}"));
        let stdin = child.stdin.take();
        let stdout = Captured::start(child.stdout.take().expect("piped stdout"));
        let stderr = Captured::start(child.stderr.take().expect("piped stderr"));
        Running {
            child: Some(child),
            stdin,
            writer: None,
            stdout,
            stderr,
        }
    }

    /// `re_dms --stdin` over `input`, to the end (killed, and the test failed, after 5 min).
    pub fn replay(&self, input: &[u8]) -> Output {
        self.spawn(input.to_vec()).wait(REPLAY_TIMEOUT)
    }

    /// Starts `re_dms --stdin` on `input` (written, then stdin closed, by a thread).
    pub fn spawn(&self, input: Vec<u8>) -> Running {
        let mut run = self.start(&["--stdin"]);
        let mut stdin = run.stdin.take().expect("piped stdin");
        run.writer = Some(std::thread::spawn(move || {
            // EPIPE when the process exited or was killed first: expected.
            let _ = stdin.write_all(&input);
        }));
        run
    }

    /// Starts `re_dms --stdin` with stdin open (and idle) until [`Running::write`] writes to it
    /// or the run is waited for or killed.
    pub fn spawn_open(&self) -> Running {
        self.start(&["--stdin"])
    }

    /// Starts `re_dms` streaming from its slot (see [`Builder::live_from`]); stdin is closed.
    #[cfg(feature = "stack-tests")]
    pub fn spawn_live(&self) -> Running {
        let mut run = self.start(&[]);
        drop(run.stdin.take());
        run
    }

    /// [`ReDms::spawn_live`] with these environment variables set too.
    #[cfg(feature = "stack-tests")]
    pub fn spawn_live_with_env(&self, env: &[(&str, &str)]) -> Running {
        let mut run = self.start_with_env(&[], env);
        drop(run.stdin.take());
        run
    }

    /// `re_dms status --json`, to the end: its output, parsed.
    #[cfg(feature = "stack-tests")]
    pub fn status_json(&self) -> serde_json::Value {
        let mut run = self.start(&["status", "--json"]);
        drop(run.stdin.take());
        let out = run.wait(REPLAY_TIMEOUT);
        assert!(out.status.success(), "{}", out.stderr);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json: {e}: {}", out.stdout))
    }

    /// `re_dms validate`, to the end.
    #[cfg(feature = "stack-tests")]
    pub fn validate(&self) -> Output {
        self.validate_with(&[])
    }

    /// `re_dms validate <args>`, to the end.
    #[cfg(feature = "stack-tests")]
    pub fn validate_with(&self, args: &[&str]) -> Output {
        let mut run = self.start(&[&["validate"], args].concat());
        drop(run.stdin.take());
        run.wait(REPLAY_TIMEOUT)
    }

    /// The WAL's segment files, sorted.
    pub fn wal_segments(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.wal_dir())
            .map(|d| {
                d.map(|e| e.expect("WAL directory entry").path())
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

    /// The local target's output applied, segment by segment, to an empty [`Model`].
    ///
    /// [`Model`]: super::model::Model
    pub fn model(&self) -> super::model::Model {
        let mut m = super::model::Model::default();
        if self.out_dir().exists() {
            m.apply_dir(&self.out_dir());
        }
        m
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    #[cfg_attr(
        not(feature = "stack-tests"),
        expect(
            dead_code,
            reason = "only `re_dms validate` prints, and only stack tests run it"
        )
    )]
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Exit 1, saying a signal stopped the run before the end of its input.
    #[cfg(feature = "stack-tests")]
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

/// Bytes a reader thread collects from a pipe as they come.
#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    closed: bool,
}

/// A pipe of the child read to the end by a thread, readable at any time.
struct Captured {
    shared: Arc<(Mutex<Buffer>, Condvar)>,
    reader: Option<JoinHandle<()>>,
}

impl Captured {
    fn start(mut pipe: impl Read + Send + 'static) -> Self {
        let shared = Arc::new((Mutex::new(Buffer::default()), Condvar::new()));
        let theirs = Arc::clone(&shared);
        let reader = std::thread::spawn(move || {
            let (buffer, grew) = &*theirs;
            let mut chunk = [0u8; 8192];
            loop {
                let n = pipe.read(&mut chunk).unwrap_or(0);
                let mut b = buffer.lock().unwrap_or_else(|e| e.into_inner());
                if n == 0 {
                    b.closed = true;
                } else {
                    b.bytes.extend_from_slice(&chunk[..n]);
                }
                grew.notify_all();
                if n == 0 {
                    return;
                }
            }
        });
        Self {
            shared,
            reader: Some(reader),
        }
    }

    fn text(&self) -> String {
        let b = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&b.bytes).into_owned()
    }

    /// Waits for the end of the pipe, then returns everything read.
    fn finish(&mut self) -> String {
        if let Some(r) = self.reader.take() {
            r.join().expect("pipe reader");
        }
        self.text()
    }

    /// Waits until what was read contains `needle`: Ok, or Err with the text so far when the
    /// pipe ended or `timeout` passed first.
    #[cfg(any(feature = "failpoints", feature = "stack-tests"))]
    fn wait_for(&self, needle: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let (buffer, grew) = &*self.shared;
        let mut b = buffer.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if String::from_utf8_lossy(&b.bytes).contains(needle) {
                return Ok(());
            }
            let now = Instant::now();
            if b.closed || now >= deadline {
                return Err(String::from_utf8_lossy(&b.bytes).into_owned());
            }
            b = grew
                .wait_timeout(b, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A re_dms started by [`ReDms::spawn`] or [`ReDms::spawn_open`]. Dropped while still running
/// (a test that failed half-way), it is killed with SIGKILL.
pub struct Running {
    /// None once reaped.
    child: Option<Child>,
    /// [`ReDms::spawn_open`]: the input, open until the run is waited for or killed.
    stdin: Option<ChildStdin>,
    /// [`ReDms::spawn`]: the thread writing the input.
    writer: Option<JoinHandle<()>>,
    stdout: Captured,
    stderr: Captured,
}

impl Running {
    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("not reaped yet")
    }

    /// Writes to the run's stdin (left open by [`ReDms::spawn_open`]) and flushes.
    pub fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("a run started by spawn_open");
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("writing to re_dms: {e}"));
    }

    /// Whether it has exited.
    #[cfg(feature = "stack-tests")]
    pub fn exited(&mut self) -> bool {
        self.child().try_wait().expect("try_wait").is_some()
    }

    /// Whether re_dms has logged `needle` so far.
    #[cfg(feature = "stack-tests")]
    pub fn logged(&self, needle: &str) -> bool {
        self.stderr.text().contains(needle)
    }

    /// Waits until re_dms has logged `needle`; panics, with its stderr, when it exits first or
    /// after `timeout`.
    #[cfg(feature = "stack-tests")]
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        if let Err(stderr) = self.stderr.wait_for(needle, timeout) {
            panic!("no `{needle}` logged within {timeout:?}; stderr:\n{stderr}");
        }
    }

    /// Sends SIGTERM (does not wait).
    #[cfg(any(feature = "stack-tests", feature = "failpoints"))]
    pub fn sigterm(&self) {
        let pid = self
            .child
            .as_ref()
            .expect("not reaped yet")
            .id()
            .to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("running kill")
            .success();
        assert!(ok, "kill -TERM {pid} failed");
    }

    /// SIGTERM, then the exit: 0 (a daemon stopped by a signal), or the test fails with its
    /// stderr (also when it is still running after `timeout`).
    #[cfg(feature = "stack-tests")]
    pub fn stop_cleanly(self, timeout: Duration) -> Output {
        self.sigterm();
        let out = self.wait(timeout);
        assert!(out.status.success(), "{}", out.stderr);
        out
    }

    /// Waits until re_dms says it reached fault point `name` (it then blocks there for good);
    /// panics, with its stderr, when it exits first or after `timeout`.
    #[cfg(feature = "failpoints")]
    pub fn wait_for_failpoint(&mut self, name: &str, timeout: Duration) {
        let line = format!("re_dms failpoint reached: {name}");
        if let Err(stderr) = self.stderr.wait_for(&line, timeout) {
            let status = self.child().try_wait().ok().flatten();
            panic!(
                "no `{line}` within {timeout:?} (exit status: {status:?}; is the binary built \
                 with the failpoints feature?); stderr:\n{stderr}"
            );
        }
    }

    /// Waits for the exit, stdin left open meanwhile; kills it and panics after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(10);
        let status = loop {
            if let Some(s) = self.child().try_wait().expect("try_wait") {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = self.child().kill();
                let status = self.child().wait().expect("reaping re_dms");
                let out = self.collect(status);
                panic!(
                    "re_dms still running after {timeout:?}; killed. stderr:\n{}",
                    out.stderr
                );
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        };
        self.collect(status)
    }

    /// SIGKILL (no clean-up of any kind), then reap.
    pub fn kill_9(mut self) -> Output {
        let _ = self.child().kill();
        let status = self.child().wait().expect("reaping re_dms");
        self.collect(status)
    }

    /// After the exit: closes stdin, joins the writer and the pipe readers.
    fn collect(&mut self, status: ExitStatus) -> Output {
        self.child = None;
        drop(self.stdin.take());
        if let Some(w) = self.writer.take() {
            w.join().expect("stdin writer");
        }
        Output {
            status,
            stdout: self.stdout.finish(),
            stderr: self.stderr.finish(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
