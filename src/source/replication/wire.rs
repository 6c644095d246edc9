//! The bytes of a replication connection: the stream (TCP, a Unix socket, or TLS over TCP) and
//! the framing of backend messages.
//!
//! postgres-protocol parses the backend messages and writes the frontend ones, but it does not
//! know CopyBothResponse (`W`), which is how the server answers `START_REPLICATION`: framing is
//! done here, and `W` is recognised before the rest is handed to postgres-protocol.
//!
//! Reading is cancel-safe: a partly received message stays in the read buffer, so a caller may
//! race [`Wire::read`] against a timer or the stop signal and read again later.

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest backend message accepted: one XLogData holds one test_decoding line (one row
/// change), and PostgreSQL's own limit for one value is 1 GiB. A longer message is refused with
/// an error rather than allocated: memory stays bounded whatever the stream says.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// What a stream must do to carry a connection.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One backend message.
pub enum Backend {
    /// `W`: the connection is now in CopyBoth mode (the answer to `START_REPLICATION`).
    CopyBoth,
    Message(Message),
}

/// Why reading or writing failed, before the caller says what it was doing.
#[derive(Debug)]
pub enum WireFault {
    Io(std::io::Error),
    /// The server closed the connection.
    Closed,
    /// Bytes that are not a backend message.
    Malformed(String),
}

impl From<std::io::Error> for WireFault {
    fn from(e: std::io::Error) -> Self {
        WireFault::Io(e)
    }
}

/// A connection's stream and its buffers.
pub struct Wire {
    stream: Box<dyn Stream>,
    read: BytesMut,
    write: BytesMut,
}

impl Wire {
    pub fn new(stream: Box<dyn Stream>) -> Self {
        Self {
            stream,
            read: BytesMut::with_capacity(64 * 1024),
            write: BytesMut::with_capacity(1024),
        }
    }

    /// The output buffer: frontend messages are written into it, then [`Wire::flush`]ed.
    pub fn out(&mut self) -> &mut BytesMut {
        &mut self.write
    }

    /// Sends what was written into [`Wire::out`].
    pub async fn flush(&mut self) -> Result<(), WireFault> {
        self.stream.write_all(&self.write).await?;
        self.write.clear();
        self.stream.flush().await?;
        Ok(())
    }

    /// The next backend message. Cancel-safe (see the module's note).
    pub async fn read(&mut self) -> Result<Backend, WireFault> {
        loop {
            if let Some(message) = self.frame()? {
                return Ok(message);
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return Err(WireFault::Closed);
            }
        }
    }

    /// A whole message from the read buffer, if one is there.
    fn frame(&mut self) -> Result<Option<Backend>, WireFault> {
        if self.read.len() < 5 {
            return Ok(None);
        }
        let tag = self.read[0];
        let len = u32::from_be_bytes([self.read[1], self.read[2], self.read[3], self.read[4]]);
        let len = len as usize;
        if !(4..=MAX_MESSAGE_BYTES).contains(&len) {
            return Err(WireFault::Malformed(format!(
                "message `{}` claims a length of {len} bytes",
                tag.escape_ascii()
            )));
        }
        if self.read.len() < 1 + len {
            self.read.reserve(1 + len - self.read.len());
            return Ok(None);
        }
        if tag == b'W' {
            let _ = self.read.split_to(1 + len);
            return Ok(Some(Backend::CopyBoth));
        }
        match Message::parse(&mut self.read) {
            Ok(Some(m)) => Ok(Some(Backend::Message(m))),
            Ok(None) => Err(WireFault::Malformed(format!(
                "message `{}` of {len} bytes could not be framed",
                tag.escape_ascii()
            ))),
            Err(e) => Err(WireFault::Malformed(format!(
                "message `{}`: {e}",
                tag.escape_ascii()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[tokio::test]
    async fn messages_split_anywhere_are_framed_whole() {
        let (client, mut server) = tokio::io::duplex(7);
        let mut wire = Wire::new(Box::new(client));
        let mut bytes = message(b'W', &[0, 0, 0]);
        bytes.extend(message(b'd', b"wxyz"));
        bytes.extend(message(b'Z', b"I"));
        tokio::spawn(async move {
            for b in bytes.chunks(3) {
                server.write_all(b).await.unwrap();
            }
        });
        assert!(matches!(wire.read().await.unwrap(), Backend::CopyBoth));
        match wire.read().await.unwrap() {
            Backend::Message(Message::CopyData(d)) => assert_eq!(d.data(), b"wxyz"),
            _ => panic!("not CopyData"),
        }
        assert!(matches!(
            wire.read().await.unwrap(),
            Backend::Message(Message::ReadyForQuery(_))
        ));
        assert!(matches!(wire.read().await, Err(WireFault::Closed)));
    }

    #[tokio::test]
    async fn a_length_that_cannot_be_a_message_is_an_error() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut wire = Wire::new(Box::new(client));
        server.write_all(&[b'd', 0, 0, 0, 2]).await.unwrap();
        match wire.read().await {
            Err(WireFault::Malformed(m)) => assert!(m.contains("length of 2"), "{m}"),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("a message"),
        }
    }
}
