//! What the test cases share.
//!
//! - [`ReDms`] (`binary.rs`): the one way to run the `re_dms` binary: it writes a config for the
//!   local target or for Redshift, then either replays an input to the end (a
//!   [`binary::Output`]) or starts a [`binary::Running`] process to write to, signal, kill -9 or
//!   wait for (always with a timeout).
//! - [`model`]: an in-memory model of a target, fed with the local target's manifests.
//! - [`text`]: hand-written test_decoding lines; [`FIXTURES`] and [`capture`]: the real captures.
//! - With the `stack-tests` feature: [`stack`] (the local stack of `tests/stack.sh`: source
//!   PostgreSQL, redshift-sim, moto; test databases; who may use the sim's shared state),
//!   [`warehouse`] (reading and checking what a Redshift [`ReDms`] loaded) and [`workload`]
//!   (generated changes with the final state they lead to), and [`postgres`]: a throwaway server
//!   of one test's own (its own configuration; stopped and started again at will), and
//!   [`slot`]: how far a replication slot is.
//!
//! Without `stack-tests` nothing here starts or needs a database: `tests/stack.sh` is only run by
//! [`stack::Stack::get`], which does not exist then.

pub mod binary;
pub mod model;
#[cfg(feature = "stack-tests")]
pub mod postgres;
#[cfg(feature = "stack-tests")]
pub mod slot;
#[cfg(feature = "stack-tests")]
pub mod stack;
pub mod text;
#[cfg(feature = "stack-tests")]
pub mod warehouse;
#[cfg(feature = "stack-tests")]
pub mod workload;

use std::path::Path;
use std::time::{Duration, Instant};

pub use binary::ReDms;
#[cfg(feature = "stack-tests")]
pub use stack::{wait_for, wait_until};

/// The real PostgreSQL 15 captures and the source's final contents (`tests/fixtures/README.md`).
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// A capture of `tests/fixtures`, e.g. `capture_plain.txt`.
pub fn capture(name: &str) -> Vec<u8> {
    let path = Path::new(FIXTURES).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A free TCP port on loopback (bound, read, released).
#[cfg(feature = "stack-tests")]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on loopback")
        .port()
}

#[cfg(feature = "stack-tests")]
/// `GET path` on `addr`: (status code, body).
pub fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not HTTP: {out}"))?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Polls `check` (backing off from 10 ms to 200 ms) until it returns true; panics naming `what`
/// after `timeout`.
pub fn wait_until_blocking(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    while !check() {
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
