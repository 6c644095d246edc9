//! A throwaway PostgreSQL 15 server of one test's own, for what the shared stack cannot offer:
//! a server with its own `postgresql.conf` and `pg_hba.conf` (TLS only, say), or one a test may
//! stop and start again (a source restart).
//!
//! The server runs in a temporary directory under `CARGO_TARGET_TMPDIR` on a free loopback port,
//! kept across restarts. It is stopped by a drop guard (also when an assertion fails) and,
//! should this process die without unwinding, by a watchdog shell that waits for this process
//! to exit. If PostgreSQL cannot be started the test fails: there is no skip. `RE_DMS_PG_BIN`
//! overrides `/usr/lib/postgresql/15/bin`, as for `tests/stack.sh`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long PostgreSQL may take to initialise, start or stop.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

fn pg_bin(name: &str) -> PathBuf {
    std::env::var_os("RE_DMS_PG_BIN")
        .map_or_else(
            || PathBuf::from("/usr/lib/postgresql/15/bin"),
            PathBuf::from,
        )
        .join(name)
}

fn is_root() -> bool {
    // /proc/self belongs to this process's effective user.
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A PostgreSQL server binary, run as the `postgres` user when we are root (initdb, pg_ctl and
/// postgres refuse root), as `tests/stack.sh` does.
fn as_pg(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Hands `path` (recursively) to the `postgres` user when we are root, so that the server can
/// use it (its data directory, or a key and certificate it reads).
pub fn give_to_postgres(path: &Path) -> Result<(), String> {
    if !is_root() {
        return Ok(());
    }
    let mut chown = Command::new("chown");
    chown.arg("-R").arg("postgres:postgres").arg(path);
    run(chown, "chown to the postgres user")
}

/// Single-quoted for postgresql.conf and for sh.
pub fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "''"))
}

fn pg_ctl_start(data: &Path, log: &Path, port: u16) -> Result<(), String> {
    let mut pg_ctl = as_pg(&pg_bin("pg_ctl"));
    pg_ctl.arg("-D").arg(data).arg("-l").arg(log);
    pg_ctl.args(["-w", "-t", &STARTUP_TIMEOUT.as_secs().to_string()]);
    pg_ctl.args(["-o", &format!("-p {port}"), "start"]);
    run(pg_ctl, "pg_ctl start")
}

/// A running server; dropping it stops the server, then removes its directory.
pub struct Postgres {
    data: PathBuf,
    log: PathBuf,
    pub port: u16,
    /// Dropped after `drop` has stopped the server.
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// A new cluster in a directory named after `name` (superuser `postgres`, UTF8, C locale,
    /// listening on 127.0.0.1 only) with `conf` appended to its postgresql.conf and `hba` as its
    /// pg_hba.conf, started on a free port.
    pub fn start(name: &str, conf: &str, hba: &str) -> Result<Postgres, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}."))
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .map_err(|e| format!("temporary directory: {e}"))?;
        let data = dir.path().join("data");
        let log = dir.path().join("postgres.log");
        // Unix socket paths are limited to 107 bytes; without a socket dir only TCP is used.
        let sock = if dir.path().as_os_str().len() <= 80 {
            quoted(dir.path())
        } else {
            "''".to_string()
        };
        give_to_postgres(dir.path())?;
        let mut initdb = as_pg(&pg_bin("initdb"));
        initdb.arg("-D").arg(&data);
        initdb.args(["-U", "postgres", "-A", "trust", "-E", "UTF8"]);
        initdb.args(["--locale=C", "--no-sync"]);
        run(initdb, "initdb")?;
        let conf = format!(
            "\n# --- {name} test ---\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = {sock}\nfsync = off\nmax_connections = 20\n{conf}\n"
        );
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .map_err(|e| format!("postgresql.conf: {e}"))?;
        file.write_all(conf.as_bytes())
            .map_err(|e| format!("postgresql.conf: {e}"))?;
        fs::write(data.join("pg_hba.conf"), hba).map_err(|e| format!("pg_hba.conf: {e}"))?;

        // The free port may be taken by someone else before the server binds it: try again.
        for attempt in 1..=3 {
            let port = super::free_port();
            match pg_ctl_start(&data, &log, port) {
                Ok(()) => {
                    let server = Postgres {
                        data,
                        log,
                        port,
                        _dir: dir,
                    };
                    server.watchdog()?;
                    return Ok(server);
                }
                Err(e) => {
                    let log_text = fs::read_to_string(&log).unwrap_or_default();
                    if attempt < 3 && log_text.contains("could not bind") {
                        continue;
                    }
                    return Err(format!("{e}\n--- {} ---\n{log_text}", log.display()));
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Stops the server (`mode`: `fast` ends sessions and checkpoints, `immediate` is a crash)
    /// and waits until it is down.
    pub fn stop(&self, mode: &str) -> Result<(), String> {
        let mut pg_ctl = as_pg(&pg_bin("pg_ctl"));
        pg_ctl.arg("-D").arg(&self.data);
        pg_ctl.args([
            "-m",
            mode,
            "-w",
            "-t",
            &STARTUP_TIMEOUT.as_secs().to_string(),
        ]);
        pg_ctl.arg("stop");
        run(pg_ctl, "pg_ctl stop")
    }

    /// Starts the stopped server again on the same port.
    pub fn start_again(&self) -> Result<(), String> {
        pg_ctl_start(&self.data, &self.log, self.port)
            .map_err(|e| format!("{e}\n{}", self.log_text()))
    }

    /// Stops the server once this process has exited, in case it dies without unwinding
    /// (SIGKILL, abort). A detached shell: `sh` returns at once, its subshell outlives us.
    fn watchdog(&self) -> Result<(), String> {
        let mut stop = String::new();
        if is_root() {
            stop.push_str("runuser -u postgres -- ");
        }
        stop.push_str(&format!(
            "{} -D {} -m immediate stop",
            quoted(&pg_bin("pg_ctl")),
            quoted(&self.data)
        ));
        let script = format!(
            "(while kill -0 {} 2>/dev/null; do sleep 1; done; {stop}) \
             </dev/null >/dev/null 2>&1 &",
            std::process::id()
        );
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(script);
        run(sh, "start the watchdog")
    }

    /// A libpq key=value conninfo for database `postgres`, with `rest` appended.
    pub fn conninfo(&self, rest: &str) -> String {
        format!(
            "port={} user=postgres dbname=postgres connect_timeout=10 {rest}",
            self.port
        )
    }

    /// The last 40 lines of the server's log.
    pub fn log_text(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("--- {} (tail) ---\n{}", self.log.display(), tail.join("\n"))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Err(e) = self.stop("immediate") {
            // Already stopped by the test, or never started: nothing to report then.
            if !e.contains("Is server running?") {
                eprintln!("postgres: {e}");
            }
        }
    }
}
