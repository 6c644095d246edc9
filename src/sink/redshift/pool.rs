//! Redshift sessions: a pool of at most `redshift.max_connections`, opened on demand and
//! reused; every answer waited for with a deadline ([`within`]); every failure an [`Attempt`]:
//! classified, with its cause kept.

use std::time::Duration;

use tokio::sync::{Mutex, Semaphore};

use super::sql;
use crate::connection::{self, pg_detail};
use crate::retry::classify::{classify_pg, ErrorClass};
use crate::retry::Classified;

/// The cause of a failed attempt.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure of one attempt at a table-segment, classified.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct Attempt {
    pub class: ErrorClass,
    /// For people: the server's message with its SQLSTATE, or the error with its causes (and,
    /// for a definite error, what to do about it where we know).
    pub detail: String,
    #[source]
    pub cause: Option<Cause>,
}

impl Attempt {
    /// `cause`, classified as `class`; the detail is its whole chain.
    pub fn new(class: ErrorClass, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            class,
            detail: crate::error_chain(&cause),
            cause: Some(Box::new(cause)),
        }
    }

    /// A Postgres-protocol error, classified by its SQLSTATE (or as a client error).
    pub fn pg(e: tokio_postgres::Error) -> Self {
        let class = classify_pg(&e);
        let e = PgError(e);
        Self {
            class,
            detail: e.to_string(),
            cause: Some(Box::new(e)),
        }
    }
}

impl Classified for Attempt {
    fn class(&self) -> ErrorClass {
        self.class
    }
}

/// A Postgres-protocol error as people read it ([`pg_detail`]); the original is [`PgError::pg`].
#[derive(Debug)]
pub struct PgError(tokio_postgres::Error);

impl PgError {
    pub fn pg(&self) -> &tokio_postgres::Error {
        &self.0
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&pg_detail(&self.0))
    }
}

/// No `source()`: the text already holds the client error's causes.
impl std::error::Error for PgError {}

/// Connections to Redshift, at most `max_connections`, opened on demand and reused.
pub(super) struct Pool {
    pub(super) conn: String,
    pub(super) permits: Semaphore,
    pub(super) idle: Mutex<Vec<tokio_postgres::Client>>,
    /// `redshift.statement_timeout_secs`: set on each session (the server cancels a statement
    /// running longer) and, with [`CLIENT_DEADLINE_SLACK`], the client's own deadline for every
    /// answer (a server that never answers at all).
    pub(super) statement_timeout: Duration,
}

/// How much longer than the server-side statement timeout the client waits for an answer.
pub const CLIENT_DEADLINE_SLACK: Duration = Duration::from_secs(30);

impl Pool {
    /// The client's deadline for one answer.
    pub(super) fn deadline(&self) -> Duration {
        self.statement_timeout + CLIENT_DEADLINE_SLACK
    }

    pub(super) async fn get(&self) -> Result<Conn<'_>, Attempt> {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the pool's semaphore is never closed");
        let reused = self.idle.lock().await.pop().filter(|c| !c.is_closed());
        let client = match reused {
            Some(c) => c,
            None => {
                let c = connection::connect(&self.conn).await.map_err(|e| {
                    let class = e.class();
                    Attempt::new(class, e)
                })?;
                // Timestamps round-trip exactly only in UTC / ISO.
                let setup = format!(
                    "SET timezone TO 'UTC'; SET statement_timeout TO {}",
                    self.statement_timeout.as_millis()
                );
                within(self.deadline(), "session set-up", c.batch_execute(&setup)).await?;
                c
            }
        };
        Ok(Conn {
            pool: self,
            client: Some(client),
            _permit: permit,
        })
    }
}

/// A pooled connection; returned to the pool on drop unless it broke.
pub(super) struct Conn<'p> {
    pool: &'p Pool,
    client: Option<tokio_postgres::Client>,
    _permit: tokio::sync::SemaphorePermit<'p>,
}

impl Conn<'_> {
    pub(super) fn client(&self) -> &tokio_postgres::Client {
        self.client.as_ref().expect("present until drop")
    }
    /// Drops the connection instead of returning it (after an error, its state is unknown).
    pub(super) fn discard(mut self) {
        self.client = None;
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            if !c.is_closed() {
                if let Ok(mut idle) = self.pool.idle.try_lock() {
                    idle.push(c);
                }
            }
        }
    }
}

/// Waits for one answer from Redshift at most `deadline`; a database error is classified, and
/// no answer in time is transient (the caller drops the session and retries).
pub(super) async fn within<T>(
    deadline: Duration,
    what: &str,
    answer: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, Attempt> {
    crate::metrics::REDSHIFT_STATEMENTS.inc();
    match tokio::time::timeout(deadline, answer).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Attempt::pg(e)),
        Err(_) => Err(Attempt {
            class: ErrorClass::Transient,
            detail: format!(
                "Redshift gave no answer within {}s ({what}); the session is dropped",
                deadline.as_secs()
            ),
            cause: None,
        }),
    }
}

/// Whether the warehouse table `schema.table` has `column` (target names).
pub(super) async fn column_exists(
    c: &tokio_postgres::Client,
    deadline: Duration,
    schema: &str,
    table: &str,
    column: &str,
) -> Result<bool, Attempt> {
    let rows = within(
        deadline,
        "checking a column",
        c.query(sql::COLUMN_EXISTS_SQL, &[&schema, &table, &column]),
    )
    .await?;
    Ok(!rows.is_empty())
}
