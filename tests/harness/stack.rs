//! The local stack (`tests/stack.sh`): a source PostgreSQL with `wal_level=logical`, a warehouse
//! PostgreSQL behind redshift-sim, and moto as S3 (`stack-tests` feature only).
//!
//! ```ignore
//! let stack = Stack::get();
//! let src = stack.new_source_db("my_test").await;       // its own source database
//! let wh = stack.new_warehouse_db("my_test").await;     // its own warehouse database (via the sim)
//! stack.put_object("my_test/part-1.csv.gz", gzip(b"1,a\n")).await;
//! ```
//!
//! Lifetime: the first `Stack::get()` of the test binary runs `tests/stack.sh up` with a state
//! directory of its own (`$CARGO_TARGET_TMPDIR/rds-<pid>`) and `RE_DMS_STACK_WATCH_PID` set to
//! this process: stack.sh leaves a watchdog that runs `stack.sh down` once this process has exited,
//! however it exits (pass, panic, abort, SIGKILL). Nothing relies on destructors or atexit.
//! To reuse a stack you started yourself: export the output of `tests/stack.sh env` (then nothing
//! is started or stopped), or set `RE_DMS_STACK_DIR` to its state directory (`up` is idempotent,
//! and no watchdog is attached).
//!
//! redshift-sim's own tests (`tests/redshift-sim/tests/sim.rs`) include this file by path.
//!
//! Shared state: redshift-sim's statement log and maintenance mode belong to the whole stack, and
//! every test of the binary runs against the same sim. A test that uses the sim holds a
//! [`SimLease`] for its whole length: [`Stack::sim_shared`] (most tests, many at once) or
//! [`Stack::sim_exclusive`] (a test that switches maintenance on, or reads the statement log and
//! must see only its own statements). Tests that use only the source, moto or the warehouse
//! backend need none.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Settings of a running stack (what `tests/stack.sh env` prints).
#[derive(Debug, Clone)]
pub struct Stack {
    /// `postgres://postgres@127.0.0.1:P/postgres` (source cluster, admin database).
    pub source_url: String,
    pub source_host: String,
    pub source_port: u16,
    /// Through redshift-sim, database `warehouse`.
    pub warehouse_url: String,
    /// The warehouse backend directly (no Redshift emulation), database `warehouse`.
    pub warehouse_backend_url: String,
    pub s3_endpoint: String,
    pub s3_bucket: String,
    pub region: String,
    pub statement_log: PathBuf,
    pub maintenance_file: PathBuf,
    /// Every variable `env` printed, for child processes (`Command::envs`).
    pub vars: Vec<(String, String)>,
}

/// A database made for one test.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub name: String,
    /// `postgres://` URL (for the warehouse: through redshift-sim).
    pub url: String,
    /// The same as libpq key=value.
    pub conninfo: String,
    /// Warehouse only: the backend directly, bypassing the sim (for checks).
    pub backend_url: Option<String>,
}

impl TestDb {
    /// The replication slot a live re_dms of this database streams from
    /// ([`crate::harness::binary::Builder::live_from`]).
    pub fn slot(&self) -> String {
        format!("{}_slot", self.name)
    }
}

static STACK: OnceLock<Stack> = OnceLock::new();

/// Who uses redshift-sim's shared state: many [`SimLease`]s of `sim_shared`, or one of
/// `sim_exclusive`.
static SIM: RwLock<()> = RwLock::const_new(());

/// A test's right to use redshift-sim (see the module's note); released when dropped.
pub struct SimLease {
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _exclusive: Option<RwLockWriteGuard<'static, ()>>,
}

impl Stack {
    /// The stack of this test binary, started on first use.
    pub fn get() -> &'static Stack {
        STACK.get_or_init(|| Stack::start().unwrap_or_else(|e| panic!("test stack: {e}")))
    }

    /// Uses redshift-sim alongside other tests: its maintenance mode stays off and its statement
    /// log is shared. Starts the stack if needed.
    pub async fn sim_shared() -> SimLease {
        Stack::get();
        SimLease {
            _shared: Some(SIM.read().await),
            _exclusive: None,
        }
    }

    /// Uses redshift-sim alone: no other test talks to it until the lease is dropped, so this
    /// one may switch maintenance on or count the statements logged. Starts the stack if needed.
    pub async fn sim_exclusive() -> SimLease {
        Stack::get();
        SimLease {
            _shared: None,
            _exclusive: Some(SIM.write().await),
        }
    }

    /// Panics unless some test holds a [`SimLease`] (a guard against a test that forgot it).
    pub fn assert_sim_leased() {
        assert!(
            SIM.try_write().is_err(),
            "a test using redshift-sim takes Stack::sim_shared() or Stack::sim_exclusive() first"
        );
    }

    fn start() -> Result<Stack, String> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        if env.iter().any(|(k, _)| k == "RE_DMS_SOURCE_URL")
            && env.iter().any(|(k, _)| k == "RE_DMS_WAREHOUSE_URL")
        {
            return Stack::from_vars(env);
        }
        let script = find_script()?;
        let (dir, owned) = match std::env::var("RE_DMS_STACK_DIR") {
            Ok(d) => (PathBuf::from(d), false),
            Err(_) => {
                let base = option_env!("CARGO_TARGET_TMPDIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(std::env::temp_dir);
                (base.join(format!("rds-{}", std::process::id())), true)
            }
        };
        let mut up = Command::new("bash");
        up.arg(&script).arg("up").env("RE_DMS_STACK_DIR", &dir);
        if owned {
            up.env("RE_DMS_STACK_WATCH_PID", std::process::id().to_string());
        }
        if let Some(bin) = option_env!("CARGO_BIN_EXE_redshift-sim") {
            up.env("RE_DMS_SIM_BIN", bin);
        }
        let out = up
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "`{} up` failed ({}):\n{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let out = Command::new("bash")
            .arg(&script)
            .arg("env")
            .env("RE_DMS_STACK_DIR", &dir)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "`{} env` failed:\n{}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Stack::from_vars(parse_env(&String::from_utf8_lossy(&out.stdout)))
    }

    fn from_vars(vars: Vec<(String, String)>) -> Result<Stack, String> {
        let get = |k: &str| {
            vars.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| format!("{k} is not set"))
        };
        Ok(Stack {
            source_url: get("RE_DMS_SOURCE_URL")?,
            source_host: get("RE_DMS_SOURCE_HOST")?,
            source_port: get("RE_DMS_SOURCE_PORT")?
                .parse()
                .map_err(|e| format!("RE_DMS_SOURCE_PORT: {e}"))?,
            warehouse_url: get("RE_DMS_WAREHOUSE_URL")?,
            warehouse_backend_url: get("RE_DMS_WAREHOUSE_BACKEND_URL")?,
            s3_endpoint: get("RE_DMS_S3_ENDPOINT")?,
            s3_bucket: get("RE_DMS_S3_BUCKET")?,
            region: get("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
            statement_log: get("RE_DMS_SIM_STATEMENT_LOG")?.into(),
            maintenance_file: get("RE_DMS_SIM_MAINTENANCE_FILE")?.into(),
            vars,
        })
    }

    /// A fresh source database (dropped first if it exists, with its replication slots).
    pub async fn new_source_db(&self, name: &str) -> TestDb {
        let name = db_name(name);
        let admin = connect(&self.source_url).await;
        admin
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE database = $1 AND NOT active",
                &[&name],
            )
            .await
            .unwrap_or_else(|e| panic!("dropping slots of {name}: {}", describe(&e)));
        recreate_db(&admin, &name).await;
        TestDb {
            url: with_db(&self.source_url, &name),
            conninfo: format!(
                "host={} port={} user=postgres dbname={name}",
                self.source_host, self.source_port
            ),
            name,
            backend_url: None,
        }
    }

    /// A fresh warehouse database; `url` goes through redshift-sim.
    pub async fn new_warehouse_db(&self, name: &str) -> TestDb {
        let name = db_name(name);
        let admin = connect(&with_db(&self.warehouse_backend_url, "postgres")).await;
        recreate_db(&admin, &name).await;
        let url = with_db(&self.warehouse_url, &name);
        let (host, port) = host_port(&url);
        TestDb {
            conninfo: format!("host={host} port={port} user=postgres dbname={name}"),
            url,
            backend_url: Some(with_db(&self.warehouse_backend_url, &name)),
            name,
        }
    }

    /// An S3 client for the stack's moto (path style, test credentials).
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        let creds =
            aws_sdk_s3::config::Credentials::new("test", "test", None, None, "re_dms-tests");
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(self.region.clone()))
            .endpoint_url(&self.s3_endpoint)
            .force_path_style(true)
            .credentials_provider(creds)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Put an object into the stack's bucket.
    pub async fn put_object(&self, key: &str, body: Vec<u8>) {
        self.s3_client()
            .put_object()
            .bucket(&self.s3_bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "put s3://{}/{key}: {}",
                    self.s3_bucket,
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            });
    }

    /// Switch redshift-sim's maintenance mode (drops and refuses connections while on).
    pub fn set_maintenance(&self, on: bool) {
        set_maintenance_file(&self.maintenance_file, on);
    }

    /// Every statement redshift-sim has received so far, one per entry.
    pub fn statements(&self) -> Vec<String> {
        std::fs::read_to_string(&self.statement_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

pub fn set_maintenance_file(path: &Path, on: bool) {
    if on {
        std::fs::write(path, b"maintenance\n")
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    } else if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            panic!("{}: {e}", path.display());
        }
    }
}

/// Connect with tokio-postgres (no TLS), driving the connection in a task.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    try_connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {}", describe(&e)))
}

pub async fn try_connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Polls `check` until it returns true; panics naming `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(timeout, what, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls `probe` (backing off from 10 ms to 200 ms) until it returns Some; panics naming `what`
/// after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// gzip `data` (what the daemon and Redshift's GZIP option use).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip to memory");
    enc.finish().expect("gzip to memory")
}

fn find_script() -> Result<PathBuf, String> {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let candidate = dir.join("tests").join("stack.sh");
        if candidate.is_file() {
            return Ok(candidate);
        }
        if !dir.pop() {
            return Err("tests/stack.sh not found above CARGO_MANIFEST_DIR".into());
        }
    }
}

fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

/// A database name from a test's name: lower-case letters, digits and `_`.
fn db_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(60);
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, 't');
    }
    s
}

async fn recreate_db(admin: &tokio_postgres::Client, name: &str) {
    for sql in [
        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        format!("CREATE DATABASE \"{name}\""),
    ] {
        admin
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    }
}

/// A tokio-postgres error with the server's message (its Display says only "db error").
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.severity(), d.message()),
        None => e.to_string(),
    }
}

/// `postgres://u@h:p/db` with another database.
fn with_db(url: &str, db: &str) -> String {
    match url.rfind('/') {
        Some(i) if i > "postgres://".len() => format!("{}/{db}", &url[..i]),
        _ => format!("{url}/{db}"),
    }
}

/// Host and port of a `postgres://user@host:port/db` URL.
pub fn host_port(url: &str) -> (String, String) {
    let rest = url.split_once('@').map_or(url, |(_, r)| r);
    let hp = rest.split('/').next().unwrap_or(rest);
    let (h, p) = hp.split_once(':').unwrap_or((hp, "5432"));
    (h.to_string(), p.to_string())
}
