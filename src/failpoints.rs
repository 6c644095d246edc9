//! Named fault points where tests stop re_dms at a precise moment (cargo feature `failpoints`,
//! compiled out otherwise).
//!
//! `FAILPOINTS="<name>=return"` (the `fail` crate's syntax) makes the thread that reaches
//! `<name>` print `re_dms failpoint reached: <name>` to stderr and block there for good: a test
//! waits for that line, then kills the process with SIGKILL, exactly at that point.
//!
//! The points, in pipeline order:
//! - `wal.before_sync`: ingest is about to fsync the WAL or, under load, to ask the WAL writer
//!   for a group commit (what it appended is not durable yet);
//! - `wal.after_sync`: ingest has fsynced the WAL and waited for it (idle or stop; its durable
//!   LSN is about to be published);
//! - `apply.after_copy`: a COPY into a staging table ran, inside its load transaction;
//! - `apply.before_commit`: every statement of a load transaction ran (the last one's ledger
//!   row included), COMMIT not sent yet;
//! - `apply.after_commit`: the load transaction committed; its WAL segment is not deleted yet.

/// Marks a fault point (see the module's note). Does nothing without the `failpoints` feature.
#[macro_export]
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        {
            let _ = ::fail::eval($name, |_| $crate::failpoints::reached($name));
        }
    };
}

/// Reads `FAILPOINTS` from the environment; keep the guard for the life of the process.
#[cfg(feature = "failpoints")]
pub fn setup() -> fail::FailScenario<'static> {
    fail::FailScenario::setup()
}

/// Announces the point on stderr and blocks this thread until the process is killed.
#[cfg(feature = "failpoints")]
pub fn reached(name: &str) {
    eprintln!("re_dms failpoint reached: {name}");
    loop {
        std::thread::park();
    }
}
