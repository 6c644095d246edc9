//! One client connection: the startup relay, then a message loop that forwards everything
//! unchanged except the SQL in Query/Parse, and runs the statements the sim handles itself (COPY
//! from S3, TRUNCATE's implicit commit) on the same backend session, so they take part in the
//! client's transaction.
//!
//! Bookkeeping: `outstanding` counts ReadyForQuery messages the backend still owes (one per Query,
//! Sync, FunctionCall, and one for the startup). Before the sim sends its own statements it relays
//! everything up to the last owed ReadyForQuery, so responses never interleave.
//!
//! Extended protocol: a Parse of a special statement is registered and forwarded as a no-op `DO`
//! statement; its Bind is forwarded; at Execute the sim sends a Sync of its own (swallowing that
//! ReadyForQuery), runs the statement as simple queries, answers the Execute with CommandComplete
//! or ErrorResponse, and after an error drops the client's messages up to its Sync, as PostgreSQL
//! does. Caveat: that Sync ends an implicit transaction early, so a pipeline of several Executes
//! before one Sync is not atomic around a special statement.

use crate::rewrite::{self, Plan, Planned};
use crate::wire::{self, Cursor, Frame, FrameReader, WireError};
use crate::Shared;
use bytes::BytesMut;
use std::collections::HashMap;
use std::sync::Arc;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;

#[derive(Debug, Error)]
pub enum SessionError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("backend closed the connection")]
    BackendClosed,
}

const FLUSH_AT: usize = 64 * 1024;
/// What a special statement's Parse becomes in the backend.
const PLACEHOLDER: &str = "DO $rss$BEGIN END$rss$";

/// A statement the sim runs itself.
#[derive(Debug, Clone)]
pub enum Special {
    Copy(Box<crate::copycmd::CopySpec>),
    Truncate(String),
}

pub struct Session {
    pub(crate) shared: Arc<Shared>,
    cr: FrameReader<OwnedReadHalf>,
    cw: OwnedWriteHalf,
    pub(crate) br: FrameReader<OwnedReadHalf>,
    pub(crate) bw: OwnedWriteHalf,
    to_backend: BytesMut,
    to_client: BytesMut,
    outstanding: usize,
    pub(crate) status: u8,
    error_since_sync: bool,
    discard_until_sync: bool,
    stmts: HashMap<Vec<u8>, Special>,
    portals: HashMap<Vec<u8>, Special>,
    pub(crate) database: String,
    pub(crate) user: String,
    pub(crate) backend_pid: Option<i32>,
    /// Query id of the last COPY this session ran (`pg_last_copy_id()`), -1 before any.
    pub(crate) last_copy_id: i32,
    /// Rows the last COPY loaded (`pg_last_copy_count()`): 0 before any, or after one that
    /// failed.
    last_copy_count: i64,
    maint: watch::Receiver<bool>,
    maint_open: bool,
}

/// Serve one client connection until either side closes.
pub async fn serve(client: TcpStream, shared: Arc<Shared>) -> Result<(), SessionError> {
    let _ = client.set_nodelay(true);
    let (cr, mut cw) = client.into_split();
    let mut cr = FrameReader::new(cr);
    let startup = loop {
        let Some(packet) = cr.startup().await? else {
            return Ok(());
        };
        let code = i32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        match code {
            wire::SSL_REQUEST | wire::GSSENC_REQUEST => cw.write_all(b"N").await?,
            wire::CANCEL_REQUEST => {
                let mut b = TcpStream::connect(shared.backend_addr()).await?;
                b.write_all(&packet).await?;
                let _ = b.shutdown().await;
                return Ok(());
            }
            wire::PROTOCOL_3 => break packet,
            other => {
                let msg = format!(
                    "unsupported frontend protocol {}.{}",
                    other >> 16,
                    other & 0xffff
                );
                return fatal(&mut cw, "0A000", &msg).await;
            }
        }
    };
    if *shared.maintenance.borrow() {
        return fatal(&mut cw, "57P03", crate::MAINTENANCE_REFUSED).await;
    }
    let mut params = wire::startup_params(&startup)?;
    let get = |params: &[(String, String)], k: &str| {
        params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    };
    let user = match get(&params, "user") {
        Some(u) => u,
        None => {
            params.push(("user".into(), shared.default_user.clone()));
            shared.default_user.clone()
        }
    };
    let database = match get(&params, "database") {
        Some(d) => d,
        None => {
            params.push(("database".into(), shared.default_db.clone()));
            shared.default_db.clone()
        }
    };
    let backend = match TcpStream::connect(shared.backend_addr()).await {
        Ok(b) => b,
        Err(e) => {
            let msg = format!("redshift-sim could not connect to its backend: {e}");
            return fatal(&mut cw, "08006", &msg).await;
        }
    };
    let _ = backend.set_nodelay(true);
    let (br, mut bw) = backend.into_split();
    bw.write_all(&wire::startup_message(&params)).await?;
    let maint = shared.maintenance.clone();
    let mut s = Session {
        shared,
        cr,
        cw,
        br: FrameReader::new(br),
        bw,
        to_backend: BytesMut::new(),
        to_client: BytesMut::new(),
        outstanding: 1,
        status: b'I',
        error_since_sync: false,
        discard_until_sync: false,
        stmts: HashMap::new(),
        portals: HashMap::new(),
        database,
        user,
        backend_pid: None,
        last_copy_id: -1,
        last_copy_count: 0,
        maint,
        maint_open: true,
    };
    s.run().await
}

async fn fatal(cw: &mut OwnedWriteHalf, code: &str, msg: &str) -> Result<(), SessionError> {
    let mut out = BytesMut::new();
    wire::error_response(&mut out, "FATAL", code, msg, None);
    cw.write_all(&out).await?;
    let _ = cw.shutdown().await;
    Ok(())
}

impl Session {
    async fn run(&mut self) -> Result<(), SessionError> {
        loop {
            tokio::select! {
                biased;
                changed = self.maint.changed(), if self.maint_open => {
                    if changed.is_err() {
                        self.maint_open = false;
                    } else if *self.maint.borrow() {
                        self.flush_client().await?;
                        return fatal(&mut self.cw, "57P01", crate::MAINTENANCE_DROPPED).await;
                    }
                }
                f = self.br.next() => match f? {
                    None => {
                        self.flush_client().await?;
                        return Ok(());
                    }
                    Some(f) => self.on_backend(f).await?,
                },
                f = self.cr.next() => match f? {
                    None => return Ok(()),
                    Some(f) => self.on_client(f).await?,
                },
            }
        }
    }

    async fn flush_client(&mut self) -> Result<(), SessionError> {
        if !self.to_client.is_empty() {
            self.cw.write_all(&self.to_client).await?;
            self.to_client.clear();
        }
        Ok(())
    }

    pub(crate) async fn flush_backend(&mut self) -> Result<(), SessionError> {
        if !self.to_backend.is_empty() {
            self.bw.write_all(&self.to_backend).await?;
            self.to_backend.clear();
        }
        Ok(())
    }

    pub(crate) async fn next_backend(&mut self) -> Result<Frame, SessionError> {
        let f = self.br.next().await?.ok_or(SessionError::BackendClosed)?;
        match f.tag {
            b'Z' => {
                self.status = f.body().first().copied().unwrap_or(b'I');
                if self.status == b'I' {
                    self.portals.clear();
                }
            }
            b'K' => {
                self.backend_pid = Cursor::new(f.body()).i32().ok();
            }
            _ => {}
        }
        Ok(f)
    }

    async fn on_backend(&mut self, f: Frame) -> Result<(), SessionError> {
        match f.tag {
            b'Z' => {
                self.outstanding = self.outstanding.saturating_sub(1);
                self.status = f.body().first().copied().unwrap_or(b'I');
                self.error_since_sync = false;
                if self.status == b'I' {
                    self.portals.clear();
                }
            }
            b'E' => self.error_since_sync = true,
            b'K' => self.backend_pid = Cursor::new(f.body()).i32().ok(),
            _ => {}
        }
        self.to_client.extend_from_slice(&f.raw);
        if !matches!(f.tag, b'D' | b'd') || self.to_client.len() > FLUSH_AT {
            self.flush_client().await?;
        }
        Ok(())
    }

    async fn forward(&mut self, f: &Frame, flush: bool) -> Result<(), SessionError> {
        self.to_backend.extend_from_slice(&f.raw);
        if flush || self.to_backend.len() > FLUSH_AT {
            self.flush_backend().await?;
        }
        Ok(())
    }

    async fn on_client(&mut self, f: Frame) -> Result<(), SessionError> {
        if self.discard_until_sync && !matches!(f.tag, b'S' | b'X') {
            return Ok(());
        }
        match f.tag {
            b'Q' => self.on_query(f).await,
            b'P' => self.on_parse(f).await,
            b'B' => {
                let mut c = Cursor::new(f.body());
                let portal = c.cstr()?.to_vec();
                let stmt = c.cstr()?;
                match self.stmts.get(stmt).cloned() {
                    Some(sp) => self.portals.insert(portal, sp),
                    None => self.portals.remove(&portal),
                };
                self.forward(&f, false).await
            }
            b'E' => {
                let portal = Cursor::new(f.body()).cstr()?.to_vec();
                match self.portals.get(&portal).cloned() {
                    Some(sp) => self.execute_special(sp).await,
                    None => self.forward(&f, false).await,
                }
            }
            b'C' => {
                let mut c = Cursor::new(f.body());
                let kind = c.u8()?;
                let name = c.cstr()?;
                if kind == b'S' {
                    self.stmts.remove(name);
                } else {
                    self.portals.remove(name);
                }
                self.forward(&f, false).await
            }
            b'S' => {
                self.discard_until_sync = false;
                self.outstanding += 1;
                self.forward(&f, true).await
            }
            b'F' => {
                self.outstanding += 1;
                self.forward(&f, true).await
            }
            b'D' => self.forward(&f, false).await,
            _ => self.forward(&f, true).await,
        }
    }

    fn log_statements(&self, planned: &[Planned]) {
        for p in planned {
            self.shared.log_statement(&p.original);
        }
    }

    fn in_block(&self) -> bool {
        self.status != b'I'
    }

    async fn on_query(&mut self, f: Frame) -> Result<(), SessionError> {
        let sql = Cursor::new(f.body()).cstr()?;
        let Ok(sql) = std::str::from_utf8(sql) else {
            self.shared.log_statement(&String::from_utf8_lossy(sql));
            self.outstanding += 1;
            return self.forward(&f, true).await;
        };
        let planned = rewrite::plan_query(sql, self.in_block());
        self.log_statements(&planned);
        if planned.is_empty() {
            self.outstanding += 1;
            return self.forward(&f, true).await;
        }
        if let Some(text) = rewrite::join_pass(&planned) {
            let text = self.last_copy(&text);
            tracing::debug!(sql = %text, "query");
            wire::query(&mut self.to_backend, &text)?;
            self.outstanding += 1;
            return self.flush_backend().await;
        }
        self.run_segments(planned).await
    }

    async fn on_parse(&mut self, f: Frame) -> Result<(), SessionError> {
        let mut c = Cursor::new(f.body());
        let name = c.cstr()?.to_vec();
        let sql = c.cstr()?;
        let params = c.rest().to_vec();
        let Ok(sql) = std::str::from_utf8(sql) else {
            self.shared.log_statement(&String::from_utf8_lossy(sql));
            self.stmts.remove(&name);
            return self.forward(&f, false).await;
        };
        let planned = rewrite::plan_query(sql, self.in_block());
        self.log_statements(&planned);
        let special = match planned.as_slice() {
            [one] => match &one.plan {
                Plan::Copy(spec) => Some(Special::Copy(spec.clone())),
                Plan::Truncate(sql) => Some(Special::Truncate(sql.clone())),
                Plan::Pass(_) => None,
            },
            _ => None,
        };
        let text = match special {
            Some(sp) => {
                self.stmts.insert(name.clone(), sp);
                PLACEHOLDER.to_string()
            }
            None => {
                self.stmts.remove(&name);
                let text = match rewrite::join_pass(&planned) {
                    Some(t) if !planned.is_empty() => t,
                    _ => sql.to_string(),
                };
                self.last_copy(&text)
            }
        };
        tracing::debug!(sql = %text, "parse");
        wire::parse(&mut self.to_backend, &name, &text, &params);
        Ok(())
    }

    /// Relay everything the backend owes up to its last ReadyForQuery. With `swallow_last` that
    /// last ReadyForQuery (answering the sim's own Sync) is not relayed; returns whether an error
    /// was seen since the client's previous Sync.
    async fn drain(&mut self, swallow_last: bool) -> Result<bool, SessionError> {
        self.flush_backend().await?;
        while self.outstanding > 0 {
            let f = self.br.next().await?.ok_or(SessionError::BackendClosed)?;
            if f.tag == b'Z' && self.outstanding == 1 && swallow_last {
                self.outstanding = 0;
                self.status = f.body().first().copied().unwrap_or(b'I');
                let had_error = self.error_since_sync;
                self.error_since_sync = false;
                self.flush_client().await?;
                return Ok(had_error);
            }
            self.on_backend(f).await?;
        }
        self.flush_client().await?;
        Ok(false)
    }

    /// A simple Query containing statements the sim runs itself: run them one by one.
    async fn run_segments(&mut self, planned: Vec<Planned>) -> Result<(), SessionError> {
        self.drain(false).await?;
        for p in planned {
            let ok = match p.plan {
                Plan::Pass(sql) => {
                    let sql = self.last_copy(&sql);
                    tracing::debug!(sql = %sql, "query");
                    self.sub_query(&sql).await?
                }
                Plan::Copy(spec) => self.copy_for_client(&spec).await?,
                Plan::Truncate(sql) => self.truncate(&sql).await?,
            };
            if !ok {
                break;
            }
        }
        let status = self.status;
        wire::ready_for_query(&mut self.to_client, status);
        self.flush_client().await
    }

    async fn execute_special(&mut self, sp: Special) -> Result<(), SessionError> {
        wire::sync(&mut self.to_backend);
        self.outstanding += 1;
        if self.drain(true).await? {
            // The client's batch already failed: PostgreSQL would skip to its Sync.
            self.discard_until_sync = true;
            return Ok(());
        }
        let ok = match sp {
            Special::Copy(spec) => self.copy_for_client(&spec).await?,
            Special::Truncate(sql) => self.truncate(&sql).await?,
        };
        if !ok {
            self.discard_until_sync = true;
        }
        self.flush_client().await
    }

    /// Send one Query of the sim's choosing and relay its results (not its ReadyForQuery).
    /// Returns false when it failed.
    async fn sub_query(&mut self, sql: &str) -> Result<bool, SessionError> {
        wire::query(&mut self.to_backend, sql)?;
        self.flush_backend().await?;
        let mut ok = true;
        loop {
            let f = self.next_backend().await?;
            match f.tag {
                b'Z' => return Ok(ok),
                b'E' => ok = false,
                _ => {}
            }
            self.to_client.extend_from_slice(&f.raw);
            if self.to_client.len() > FLUSH_AT {
                self.flush_client().await?;
            }
        }
    }

    /// Run a query for the sim's own use: its rows (text) or the backend's ErrorResponse.
    pub(crate) async fn hidden(
        &mut self,
        sql: &str,
    ) -> Result<Result<Vec<Vec<Option<String>>>, Frame>, SessionError> {
        wire::query(&mut self.to_backend, sql)?;
        self.flush_backend().await?;
        let mut rows = Vec::new();
        let mut err = None;
        loop {
            let f = self.next_backend().await?;
            match f.tag {
                b'Z' => return Ok(err.map_or(Ok(rows), Err)),
                b'D' => rows.push(wire::data_row(f.body())?),
                b'E' if err.is_none() => err = Some(f),
                _ => {}
            }
        }
    }

    /// Redshift commits the open transaction before a TRUNCATE; so does the sim.
    async fn truncate(&mut self, sql: &str) -> Result<bool, SessionError> {
        if self.status == b'T' {
            if let Err(e) = self.hidden("COMMIT").await? {
                self.to_client.extend_from_slice(&e.raw);
                return Ok(false);
            }
        }
        self.sub_query(sql).await
    }

    /// `sql` with the last COPY's id and row count in place of the functions that ask for them.
    fn last_copy(&self, sql: &str) -> String {
        let sql = rewrite::substitute_last_copy_id(sql, self.last_copy_id.into());
        rewrite::substitute_last_copy_count(&sql, self.last_copy_count)
    }

    /// Run a COPY from S3 and answer the client with CommandComplete or an ErrorResponse.
    async fn copy_for_client(
        &mut self,
        spec: &crate::copycmd::CopySpec,
    ) -> Result<bool, SessionError> {
        let result = self.run_copy(spec).await?;
        let ok = result.is_ok();
        self.last_copy_count = 0;
        match result {
            Ok(done) => {
                self.last_copy_count = i64::try_from(done.rows).unwrap_or(i64::MAX);
                if let Some(msg) = done.notice() {
                    wire::notice_response(&mut self.to_client, "INFO", "00000", &msg);
                }
                let tag = format!("COPY {}", done.rows);
                wire::command_complete(&mut self.to_client, &tag);
            }
            Err(e) => e.write_to(&mut self.to_client),
        }
        Ok(ok)
    }
}
