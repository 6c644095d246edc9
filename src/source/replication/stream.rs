//! A replication connection in CopyBoth mode: the slot's output arriving as XLogData, the
//! server's keepalives, and the standby status updates that confirm positions back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::session::Session;
use super::wire::Backend;
use super::ReplicationError;
use crate::lsn::Lsn;

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
const PG_EPOCH_OFFSET_SECS: u64 = 946_684_800;

/// One message of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `w`: one test_decoding line (`BEGIN`, a row change, `COMMIT`). `start` is its WAL
    /// position; for a COMMIT it is the end of the commit record, the position that confirms
    /// the transaction.
    XLogData {
        start: Lsn,
        end: Lsn,
        /// When the server sent it, microseconds since 2000-01-01 UTC.
        sent_at: i64,
        data: Bytes,
    },
    /// `k`: the server's WAL end; `reply`: it wants a status update now (or it will time the
    /// connection out after `wal_sender_timeout`).
    Keepalive {
        wal_end: Lsn,
        sent_at: i64,
        reply: bool,
    },
}

/// The connection after `START_REPLICATION`.
pub struct ReplicationStream {
    session: Session,
}

impl ReplicationStream {
    pub(super) fn new(session: Session) -> Self {
        Self { session }
    }

    /// `user@host:port/dbname` of the source.
    pub fn target(&self) -> &str {
        &self.session.target
    }

    /// The next event; `None` when the server ended the stream: CopyDone, or CommandComplete
    /// (a walsender shutting down with its server ends the COPY that way, without CopyDone).
    /// Cancel-safe, so it can be raced against the status timer and the stop signal.
    pub async fn next(&mut self) -> Result<Option<Event>, ReplicationError> {
        let context = "streaming";
        loop {
            let message = match self.session.read(context).await? {
                Backend::Message(m) => m,
                Backend::CopyBoth => {
                    return Err(self.session.unexpected(context, "second CopyBothResponse"))
                }
            };
            match message {
                Message::CopyData(body) => {
                    return parse_copy_data(body.into_bytes())
                        .map(Some)
                        .map_err(|what| self.session.unexpected(context, &what))
                }
                Message::CopyDone | Message::CommandComplete(_) => return Ok(None),
                Message::ErrorResponse(body) => {
                    return Err(self.session.server_error(context, &body))
                }
                Message::NoticeResponse(body) => self.session.notice(&body),
                Message::ParameterStatus(_) => {}
                other => {
                    let what = format!("message {}", message_name(&other));
                    return Err(self.session.unexpected(context, &what));
                }
            }
        }
    }

    /// Sends a standby status update: `written` and `flushed` as re_dms holds them, `applied`
    /// = `flushed`. The server confirms `flushed` for the slot (`confirmed_flush_lsn`): WAL
    /// before it may be recycled and is never sent again.
    pub async fn send_status(
        &mut self,
        written: Lsn,
        flushed: Lsn,
        reply: bool,
    ) -> Result<(), ReplicationError> {
        let mut body = BytesMut::with_capacity(34);
        body.put_u8(b'r');
        body.put_u64(written.0);
        body.put_u64(flushed.0);
        body.put_u64(flushed.0);
        body.put_i64(pg_now());
        body.put_u8(u8::from(reply));
        let context = "standby status update";
        frontend::CopyData::new(body.freeze())
            .map_err(|e| self.session.io(context, e))?
            .write(self.session.wire.out());
        self.session.flush(context).await
    }

    /// Ends streaming politely: CopyDone, then Terminate. Best effort; the server's answer is
    /// not awaited for longer than `wait`.
    pub async fn close(mut self, wait: Duration) {
        frontend::copy_done(self.session.wire.out());
        frontend::terminate(self.session.wire.out());
        let _ = tokio::time::timeout(wait, self.session.flush("closing")).await;
    }
}

/// The protocol name of a message no stream expects, for the error.
fn message_name(message: &Message) -> &'static str {
    match message {
        Message::ReadyForQuery(_) => "ReadyForQuery",
        Message::RowDescription(_) => "RowDescription",
        Message::DataRow(_) => "DataRow",
        Message::EmptyQueryResponse => "EmptyQueryResponse",
        Message::CopyInResponse(_) => "CopyInResponse",
        Message::CopyOutResponse(_) => "CopyOutResponse",
        Message::NotificationResponse(_) => "NotificationResponse",
        Message::BackendKeyData(_) => "BackendKeyData",
        Message::AuthenticationOk => "AuthenticationOk",
        _ => "of another kind",
    }
}

/// `w` or `k` inside a CopyData.
fn parse_copy_data(mut b: Bytes) -> Result<Event, String> {
    let kind = if b.is_empty() { 0 } else { b.get_u8() };
    match kind {
        b'w' if b.len() >= 24 => {
            let start = Lsn(b.get_u64());
            let end = Lsn(b.get_u64());
            let sent_at = b.get_i64();
            Ok(Event::XLogData {
                start,
                end,
                sent_at,
                data: b,
            })
        }
        b'k' if b.len() >= 17 => Ok(Event::Keepalive {
            wal_end: Lsn(b.get_u64()),
            sent_at: b.get_i64(),
            reply: b.get_u8() != 0,
        }),
        b'w' | b'k' => Err(format!(
            "CopyData `{}` of {} bytes (too short)",
            kind.escape_ascii(),
            b.len() + 1
        )),
        _ => Err(format!("CopyData of kind `{}`", kind.escape_ascii())),
    }
}

/// Now, in microseconds since 2000-01-01 UTC.
fn pg_now() -> i64 {
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let micros = since_unix.as_micros() as i64;
    micros - (PG_EPOCH_OFFSET_SECS as i64) * 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xlogdata_and_keepalive_are_read_and_short_ones_refused() {
        let mut w = BytesMut::new();
        w.put_u8(b'w');
        w.put_u64(0x1_0000_0010);
        w.put_u64(0x1_0000_0020);
        w.put_i64(42);
        w.put_slice(b"BEGIN 7");
        assert_eq!(
            parse_copy_data(w.freeze()).unwrap(),
            Event::XLogData {
                start: Lsn(0x1_0000_0010),
                end: Lsn(0x1_0000_0020),
                sent_at: 42,
                data: Bytes::from_static(b"BEGIN 7"),
            }
        );
        let mut k = BytesMut::new();
        k.put_u8(b'k');
        k.put_u64(99);
        k.put_i64(5);
        k.put_u8(1);
        assert_eq!(
            parse_copy_data(k.freeze()).unwrap(),
            Event::Keepalive {
                wal_end: Lsn(99),
                sent_at: 5,
                reply: true
            }
        );
        let err = parse_copy_data(Bytes::from_static(b"k\0\0")).unwrap_err();
        assert!(err.contains("too short"), "{err}");
        let err = parse_copy_data(Bytes::from_static(b"x")).unwrap_err();
        assert!(err.contains("kind `x`"), "{err}");
    }

    #[test]
    fn status_time_is_on_the_postgres_epoch() {
        // 2026 is between 26 and 27 years after 2000.
        let years = pg_now() / 1_000_000 / 86_400 / 365;
        assert!((26..=27).contains(&years), "{years}");
    }
}
