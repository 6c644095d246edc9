//! A replication connection before streaming: connect (TCP or Unix socket, TLS by the
//! connection string's `sslmode`), start up with `replication=database` and the pinned session
//! settings, authenticate (trust, cleartext, md5, SCRAM-SHA-256), then run replication commands
//! and simple queries until `START_REPLICATION` turns it into a [`ReplicationStream`].

use std::time::Duration;

use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::{ErrorResponseBody, Message};
use postgres_protocol::message::frontend;
use tokio::net::TcpStream;
use tokio_postgres::config::Host;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

use super::stream::ReplicationStream;
use super::wire::{Backend, Stream, Wire, WireFault};
use super::ReplicationError;
use crate::connection::{describe, parse_connection, TlsMode, TlsPolicy, DEFAULT_CONNECT_TIMEOUT};
use crate::lsn::Lsn;

/// The session settings every replication connection pins, so that test_decoding prints
/// values the same way whatever the server's or the role's defaults are.
pub const SESSION_OPTIONS: &str =
    "-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3 -c IntervalStyle=postgres";

/// What `IDENTIFY_SYSTEM` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemIdentity {
    pub system_id: String,
    pub timeline: u32,
    /// The server's current WAL flush position.
    pub flushed: Lsn,
    pub database: Option<String>,
}

/// A row of a simple query: text values, `None` for NULL.
pub type Row = Vec<Option<String>>;

/// A replication connection, started up and idle.
pub struct Session {
    pub(super) wire: Wire,
    /// `user@host:port/dbname`, for messages (never the password).
    pub(super) target: String,
}

impl Session {
    /// Connects and authenticates; the whole of it must finish within the string's
    /// `connect_timeout` ([`DEFAULT_CONNECT_TIMEOUT`] when it sets none).
    pub async fn connect(conn: &str) -> Result<Session, ReplicationError> {
        let (config, policy) = parse_connection(conn)?;
        let target = describe(&config);
        let after = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        tokio::time::timeout(after, open(&config, &policy, &target))
            .await
            .map_err(|_| ReplicationError::Timeout {
                target: target.clone(),
                after,
            })?
    }

    /// `IDENTIFY_SYSTEM`.
    pub async fn identify_system(&mut self) -> Result<SystemIdentity, ReplicationError> {
        let context = "IDENTIFY_SYSTEM";
        let rows = self.simple_query(context, "IDENTIFY_SYSTEM").await?;
        let row = match rows.as_slice() {
            [row] if row.len() >= 4 => row,
            _ => return Err(self.unexpected(context, "answer (not one row of 4 columns)")),
        };
        let text = |i: usize| row[i].clone().unwrap_or_default();
        Ok(SystemIdentity {
            system_id: text(0),
            timeline: text(1)
                .parse()
                .map_err(|_| self.unexpected(context, "timeline"))?,
            flushed: text(2)
                .parse()
                .map_err(|_| self.unexpected(context, "xlogpos"))?,
            database: row[3].clone(),
        })
    }

    /// Runs `sql` (a replication command or, with `replication=database`, plain SQL) and
    /// returns its rows; `context` names it in errors. Bounded by [`COMMAND_TIMEOUT`].
    pub async fn simple_query(
        &mut self,
        context: &'static str,
        sql: &str,
    ) -> Result<Vec<Row>, ReplicationError> {
        let target = self.target.clone();
        tokio::time::timeout(COMMAND_TIMEOUT, self.run_query(context, sql))
            .await
            .map_err(|_| ReplicationError::CommandTimeout {
                target,
                context,
                after: COMMAND_TIMEOUT,
            })?
    }

    pub(super) async fn run_query(
        &mut self,
        context: &'static str,
        sql: &str,
    ) -> Result<Vec<Row>, ReplicationError> {
        frontend::query(sql, self.wire.out()).map_err(|e| self.io(context, e))?;
        self.flush(context).await?;
        let mut rows = Vec::new();
        let mut failed = None;
        loop {
            match self.read(context).await? {
                Backend::Message(Message::DataRow(body)) => {
                    rows.push(data_row(&body).map_err(|e| self.io(context, e))?);
                }
                Backend::Message(Message::ErrorResponse(body)) => {
                    failed = Some(self.server_error(context, &body));
                }
                Backend::Message(Message::ReadyForQuery(_)) => break,
                Backend::Message(
                    Message::RowDescription(_)
                    | Message::CommandComplete(_)
                    | Message::EmptyQueryResponse
                    | Message::ParameterStatus(_),
                ) => {}
                Backend::Message(Message::NoticeResponse(body)) => self.notice(&body),
                _ => return Err(self.unexpected(context, "message")),
            }
        }
        failed.map_or(Ok(rows), Err)
    }

    /// `START_REPLICATION SLOT <slot> LOGICAL <from>` with test_decoding's `include-xids` and
    /// `include-timestamp`: from here on the connection carries the slot's output. Bounded by
    /// [`COMMAND_TIMEOUT`].
    pub async fn start_replication(
        self,
        slot: &str,
        from: Lsn,
    ) -> Result<ReplicationStream, ReplicationError> {
        let target = self.target.clone();
        tokio::time::timeout(COMMAND_TIMEOUT, self.start(slot, from))
            .await
            .map_err(|_| ReplicationError::CommandTimeout {
                target,
                context: "START_REPLICATION",
                after: COMMAND_TIMEOUT,
            })?
    }

    async fn start(mut self, slot: &str, from: Lsn) -> Result<ReplicationStream, ReplicationError> {
        let context = "START_REPLICATION";
        let sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {from} (\"include-xids\" '1', \
             \"include-timestamp\" '1')",
            quote_ident(slot)
        );
        frontend::query(&sql, self.wire.out()).map_err(|e| self.io(context, e))?;
        self.flush(context).await?;
        loop {
            match self.read(context).await? {
                Backend::CopyBoth => return Ok(ReplicationStream::new(self)),
                Backend::Message(Message::ErrorResponse(body)) => {
                    let e = self.server_error(context, &body);
                    return Err(e);
                }
                Backend::Message(Message::NoticeResponse(body)) => self.notice(&body),
                Backend::Message(Message::ParameterStatus(_)) => {}
                _ => return Err(self.unexpected(context, "message")),
            }
        }
    }

    pub(super) async fn read(
        &mut self,
        context: &'static str,
    ) -> Result<Backend, ReplicationError> {
        self.wire.read().await.map_err(|f| self.fault(context, f))
    }

    pub(super) async fn flush(&mut self, context: &'static str) -> Result<(), ReplicationError> {
        self.wire.flush().await.map_err(|f| self.fault(context, f))
    }

    pub(super) fn fault(&self, context: &'static str, fault: WireFault) -> ReplicationError {
        match fault {
            WireFault::Io(e) => self.io(context, e),
            WireFault::Closed => ReplicationError::Closed {
                target: self.target.clone(),
                context,
            },
            WireFault::Malformed(what) => self.unexpected(context, &what),
        }
    }

    pub(super) fn io(&self, context: &'static str, source: std::io::Error) -> ReplicationError {
        ReplicationError::Io {
            target: self.target.clone(),
            context,
            source,
        }
    }

    pub(super) fn unexpected(&self, context: &'static str, what: &str) -> ReplicationError {
        ReplicationError::Protocol {
            target: self.target.clone(),
            context,
            what: what.to_string(),
        }
    }

    pub(super) fn server_error(
        &self,
        context: &'static str,
        body: &ErrorResponseBody,
    ) -> ReplicationError {
        let (code, message) = error_fields(body);
        ReplicationError::Server {
            target: self.target.clone(),
            context,
            code,
            message,
        }
    }

    pub(super) fn notice(&self, body: &postgres_protocol::message::backend::NoticeResponseBody) {
        let mut message = String::new();
        let mut fields = body.fields();
        while let Ok(Some(f)) = fields.next() {
            if f.type_() == b'M' {
                message = String::from_utf8_lossy(f.value_bytes()).into_owned();
            }
        }
        tracing::info!(source_db = %self.target, %message, "notice from the source");
    }
}

/// TCP or Unix socket, TLS as the policy says, then startup and authentication.
async fn open(
    config: &tokio_postgres::Config,
    policy: &TlsPolicy,
    target: &str,
) -> Result<Session, ReplicationError> {
    let connect_err = |source| ReplicationError::Connect {
        target: target.to_string(),
        source,
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let stream: Box<dyn Stream> = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => {
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(connect_err)?;
            tcp.set_nodelay(true).map_err(connect_err)?;
            negotiate_tls(tcp, host, policy, target).await?
        }
        #[cfg(unix)]
        Some(Host::Unix(dir)) => {
            let path = dir.join(format!(".s.PGSQL.{port}"));
            Box::new(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect_err)?,
            )
        }
        None => {
            return Err(ReplicationError::Protocol {
                target: target.to_string(),
                context: "connection string",
                what: "host: none given".into(),
            })
        }
    };
    let mut session = Session {
        wire: Wire::new(stream),
        target: target.to_string(),
    };
    startup(&mut session, config).await?;
    Ok(session)
}

/// SSLRequest unless `sslmode=disable`; the handshake when the server agrees.
async fn negotiate_tls(
    mut tcp: TcpStream,
    host: &str,
    policy: &TlsPolicy,
    target: &str,
) -> Result<Box<dyn Stream>, ReplicationError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if policy.mode == TlsMode::Disable {
        return Ok(Box::new(tcp));
    }
    let handshake_err = |source| ReplicationError::Handshake {
        target: target.to_string(),
        source,
    };
    let mut request = bytes::BytesMut::new();
    frontend::ssl_request(&mut request);
    tcp.write_all(&request).await.map_err(handshake_err)?;
    let answer = tcp.read_u8().await.map_err(handshake_err)?;
    if answer == b'E' {
        // A server too old for SSLRequest answers with an error message instead.
        return Err(ReplicationError::Handshake {
            target: target.to_string(),
            source: std::io::Error::other("the server answered SSLRequest with an error"),
        });
    }
    if answer != b'S' {
        if matches!(policy.mode, TlsMode::Allow | TlsMode::Prefer) {
            return Ok(Box::new(tcp));
        }
        return Err(ReplicationError::TlsRefused {
            target: target.to_string(),
        });
    }
    let mut make = policy.connector()?;
    let connect = match MakeTlsConnect::<TcpStream>::make_tls_connect(&mut make, host) {
        Ok(c) => c,
        Err(never) => match never {},
    };
    let tls = connect.connect(tcp).await.map_err(handshake_err)?;
    Ok(Box::new(tls))
}

/// The startup message and the authentication exchange, up to ReadyForQuery.
async fn startup(
    session: &mut Session,
    config: &tokio_postgres::Config,
) -> Result<(), ReplicationError> {
    let context = "startup";
    let user = config
        .get_user()
        .ok_or_else(|| ReplicationError::Protocol {
            target: session.target.clone(),
            context: "connection string",
            what: "user: none given".into(),
        })?;
    let dbname = config.get_dbname().unwrap_or(user);
    let app = config.get_application_name().unwrap_or("re_dms");
    let params = [
        ("user", user),
        ("database", dbname),
        ("replication", "database"),
        ("application_name", app),
        ("options", SESSION_OPTIONS),
    ];
    frontend::startup_message(params.iter().copied(), session.wire.out())
        .map_err(|e| session.io(context, e))?;
    session.flush(context).await?;
    authenticate(session, user, config.get_password()).await
}

/// Answers the server's authentication requests until ReadyForQuery.
async fn authenticate(
    session: &mut Session,
    user: &str,
    password: Option<&[u8]>,
) -> Result<(), ReplicationError> {
    let context = "startup";
    let mut scram: Option<ScramSha256> = None;
    let mut scram_done = false;
    loop {
        let message = match session.read(context).await? {
            Backend::Message(m) => m,
            Backend::CopyBoth => return Err(session.unexpected(context, "CopyBothResponse")),
        };
        match message {
            // SCRAM authenticates the server too: its final message must have been checked.
            Message::AuthenticationOk if scram.is_some() && !scram_done => {
                return Err(auth_err(
                    session,
                    "the server ended SCRAM without its signature",
                ))
            }
            Message::AuthenticationOk
            | Message::ParameterStatus(_)
            | Message::BackendKeyData(_) => {}
            Message::ReadyForQuery(_) => return Ok(()),
            Message::ErrorResponse(body) => return Err(session.server_error(context, &body)),
            Message::NoticeResponse(body) => session.notice(&body),
            Message::AuthenticationCleartextPassword => {
                let pw = need_password(session, password)?;
                frontend::password_message(pw, session.wire.out())
                    .map_err(|e| session.io(context, e))?;
                session.flush(context).await?;
            }
            Message::AuthenticationMd5Password(body) => {
                let pw = need_password(session, password)?;
                let hash =
                    postgres_protocol::authentication::md5_hash(user.as_bytes(), pw, body.salt());
                frontend::password_message(hash.as_bytes(), session.wire.out())
                    .map_err(|e| session.io(context, e))?;
                session.flush(context).await?;
            }
            Message::AuthenticationSasl(body) => {
                scram = Some(sasl_start(session, &body, password)?);
                session.flush(context).await?;
            }
            Message::AuthenticationSaslContinue(body) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| auth_err(session, "SCRAM out of order"))?;
                s.update(body.data())
                    .map_err(|e| auth_err(session, &e.to_string()))?;
                frontend::sasl_response(s.message(), session.wire.out())
                    .map_err(|e| session.io(context, e))?;
                session.flush(context).await?;
            }
            Message::AuthenticationSaslFinal(body) => {
                let s = scram
                    .as_mut()
                    .ok_or_else(|| auth_err(session, "SCRAM out of order"))?;
                s.finish(body.data())
                    .map_err(|e| auth_err(session, &format!("server signature: {e}")))?;
                scram_done = true;
            }
            _ => {
                return Err(auth_err(
                    session,
                    "the server asks for an authentication method re_dms does not support \
                     (supported: trust, password, md5, scram-sha-256)",
                ))
            }
        }
    }
}

/// The first SCRAM-SHA-256 message, written to the output buffer.
fn sasl_start(
    session: &mut Session,
    body: &postgres_protocol::message::backend::AuthenticationSaslBody,
    password: Option<&[u8]>,
) -> Result<ScramSha256, ReplicationError> {
    let mut mechanisms = body.mechanisms();
    let mut offered = false;
    while let Ok(Some(m)) = mechanisms.next() {
        offered |= m == SCRAM_SHA_256;
    }
    if !offered {
        return Err(auth_err(session, "the server offers no SCRAM-SHA-256"));
    }
    let pw = need_password(session, password)?;
    // Channel binding is not used (as libpq's `channel_binding=prefer` without it).
    let scram = ScramSha256::new(pw, ChannelBinding::unsupported());
    frontend::sasl_initial_response(SCRAM_SHA_256, scram.message(), session.wire.out())
        .map_err(|e| session.io("startup", e))?;
    Ok(scram)
}

fn need_password<'a>(
    session: &Session,
    password: Option<&'a [u8]>,
) -> Result<&'a [u8], ReplicationError> {
    password.ok_or_else(|| auth_err(session, "the server asks for a password and none is given"))
}

fn auth_err(session: &Session, message: &str) -> ReplicationError {
    ReplicationError::Auth {
        target: session.target.clone(),
        message: message.to_string(),
    }
}

/// SQLSTATE and message of an ErrorResponse.
fn error_fields(body: &ErrorResponseBody) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    let mut fields = body.fields();
    while let Ok(Some(f)) = fields.next() {
        let value = || String::from_utf8_lossy(f.value_bytes()).into_owned();
        match f.type_() {
            b'C' => code = value(),
            b'M' => message = value(),
            _ => {}
        }
    }
    (code, message)
}

fn data_row(body: &postgres_protocol::message::backend::DataRowBody) -> std::io::Result<Row> {
    let buf = body.buffer();
    body.ranges()
        .map(|r| Ok(r.map(|r| String::from_utf8_lossy(&buf[r]).into_owned())))
        .collect()
}

/// `"name"`, with `"` doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, with `'` doubled (standard_conforming_strings is on in every supported version).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// How long a replication command may take before the connection is considered hung.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
