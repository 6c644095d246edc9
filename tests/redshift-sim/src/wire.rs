//! PostgreSQL v3 wire framing: a cancel-safe frame reader, the few message bodies the sim looks
//! into, and builders for the backend messages it writes itself.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::message::frontend;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Larger messages than this are treated as a protocol violation (PostgreSQL's own limit for
/// most messages is 1 GB).
const MAX_MESSAGE: usize = 1 << 30;
/// Startup packets are small; PostgreSQL refuses more than 10000 bytes.
const MAX_STARTUP: usize = 10_000;

pub const SSL_REQUEST: i32 = 80_877_103;
pub const GSSENC_REQUEST: i32 = 80_877_104;
pub const CANCEL_REQUEST: i32 = 80_877_102;
pub const PROTOCOL_3: i32 = 196_608;

#[derive(Debug, Error)]
pub enum WireError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol violation: {0}")]
    Protocol(String),
}

/// One tagged message, kept byte for byte for relaying.
#[derive(Debug, Clone)]
pub struct Frame {
    pub tag: u8,
    pub raw: Bytes,
}

impl Frame {
    pub fn body(&self) -> &[u8] {
        self.raw.get(5..).unwrap_or(&[])
    }
}

pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(64 * 1024),
        }
    }

    /// The next tagged message, or None at a clean end of stream. Cancel-safe: all state lives in
    /// the buffer and the only await is `read_buf`.
    pub async fn next(&mut self) -> Result<Option<Frame>, WireError> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                if len < 4 || len as usize > MAX_MESSAGE {
                    return Err(WireError::Protocol(format!("message length {len}")));
                }
                let total = len as usize + 1;
                if self.buf.len() >= total {
                    let raw = self.buf.split_to(total).freeze();
                    return Ok(Some(Frame { tag: raw[0], raw }));
                }
                self.buf.reserve(total - self.buf.len());
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(WireError::Protocol("connection closed mid-message".into()))
                };
            }
        }
    }

    /// An untagged startup-phase packet (length included), or None at end of stream.
    pub async fn startup(&mut self) -> Result<Option<Bytes>, WireError> {
        loop {
            if self.buf.len() >= 4 {
                let len = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                if len < 8 || len as usize > MAX_STARTUP {
                    return Err(WireError::Protocol(format!("startup packet length {len}")));
                }
                if self.buf.len() >= len as usize {
                    return Ok(Some(self.buf.split_to(len as usize).freeze()));
                }
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }
}

/// Reads fields out of a message body.
pub struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Cursor { b }
    }

    pub fn cstr(&mut self) -> Result<&'a [u8], WireError> {
        let n = self
            .b
            .iter()
            .position(|&c| c == 0)
            .ok_or_else(|| WireError::Protocol("unterminated string".into()))?;
        let s = &self.b[..n];
        self.b = &self.b[n + 1..];
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        if self.b.is_empty() {
            return Err(WireError::Protocol("short message".into()));
        }
        Ok(self.b.get_u8())
    }

    pub fn i16(&mut self) -> Result<i16, WireError> {
        if self.b.len() < 2 {
            return Err(WireError::Protocol("short message".into()));
        }
        Ok(self.b.get_i16())
    }

    pub fn i32(&mut self) -> Result<i32, WireError> {
        if self.b.len() < 4 {
            return Err(WireError::Protocol("short message".into()));
        }
        Ok(self.b.get_i32())
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.b.len() < n {
            return Err(WireError::Protocol("short message".into()));
        }
        let s = &self.b[..n];
        self.b = &self.b[n..];
        Ok(s)
    }

    pub fn rest(&self) -> &'a [u8] {
        self.b
    }
}

/// Startup parameters (after length and protocol code).
pub fn startup_params(packet: &[u8]) -> Result<Vec<(String, String)>, WireError> {
    let mut c = Cursor::new(packet.get(8..).unwrap_or(&[]));
    let mut out = Vec::new();
    loop {
        let k = c.cstr()?;
        if k.is_empty() {
            return Ok(out);
        }
        let v = c.cstr()?;
        out.push((
            String::from_utf8_lossy(k).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ));
    }
}

pub fn startup_message(params: &[(String, String)]) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_i32(PROTOCOL_3);
    for (k, v) in params {
        put_cstr(&mut body, k.as_bytes());
        put_cstr(&mut body, v.as_bytes());
    }
    body.put_u8(0);
    let mut out = BytesMut::with_capacity(body.len() + 4);
    out.put_i32(body.len() as i32 + 4);
    out.extend_from_slice(&body);
    out
}

fn put_cstr(buf: &mut BytesMut, s: &[u8]) {
    // A NUL inside would end the string early; clients cannot send one anyway.
    buf.extend(s.iter().copied().filter(|&b| b != 0));
    buf.put_u8(0);
}

/// Append a tagged message with `body`.
pub fn put_message(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.put_u8(tag);
    out.put_i32(body.len() as i32 + 4);
    out.extend_from_slice(body);
}

/// A Query message; a NUL in `sql` (which no client can send) is an error.
pub fn query(out: &mut BytesMut, sql: &str) -> Result<(), WireError> {
    frontend::query(sql, out)?;
    Ok(())
}

/// Parse message with a replaced query text and the original parameter section.
pub fn parse(out: &mut BytesMut, name: &[u8], sql: &str, params: &[u8]) {
    let mut body = BytesMut::new();
    put_cstr(&mut body, name);
    put_cstr(&mut body, sql.as_bytes());
    body.extend_from_slice(params);
    put_message(out, b'P', &body);
}

pub fn sync(out: &mut BytesMut) {
    frontend::sync(out);
}

pub fn copy_data(out: &mut BytesMut, data: &[u8]) -> Result<(), WireError> {
    frontend::CopyData::new(data)?.write(out);
    Ok(())
}

pub fn copy_done(out: &mut BytesMut) {
    frontend::copy_done(out);
}

pub fn copy_fail(out: &mut BytesMut, why: &str) {
    let why: String = why.chars().filter(|&c| c != '\0').collect();
    if frontend::copy_fail(&why, out).is_err() {
        frontend::copy_done(out);
    }
}

pub fn command_complete(out: &mut BytesMut, tag: &str) {
    let mut body = BytesMut::new();
    put_cstr(&mut body, tag.as_bytes());
    put_message(out, b'C', &body);
}

pub fn ready_for_query(out: &mut BytesMut, status: u8) {
    put_message(out, b'Z', &[status]);
}

/// An ErrorResponse (`severity` ERROR or FATAL).
pub fn error_response(
    out: &mut BytesMut,
    severity: &str,
    code: &str,
    message: &str,
    detail: Option<&str>,
) {
    put_fields(out, b'E', severity, code, message, detail);
}

/// A NoticeResponse (`severity` INFO, NOTICE, WARNING).
pub fn notice_response(out: &mut BytesMut, severity: &str, code: &str, message: &str) {
    put_fields(out, b'N', severity, code, message, None);
}

fn put_fields(
    out: &mut BytesMut,
    tag: u8,
    severity: &str,
    code: &str,
    message: &str,
    detail: Option<&str>,
) {
    let mut body = BytesMut::new();
    for (f, v) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ] {
        body.put_u8(f);
        put_cstr(&mut body, v.as_bytes());
    }
    if let Some(d) = detail {
        body.put_u8(b'D');
        put_cstr(&mut body, d.as_bytes());
    }
    body.put_u8(0);
    put_message(out, tag, &body);
}

/// Fields of an ErrorResponse/NoticeResponse body.
pub fn error_fields(body: &[u8]) -> Vec<(u8, String)> {
    let mut c = Cursor::new(body);
    let mut out = Vec::new();
    while let Ok(code) = c.u8() {
        if code == 0 {
            break;
        }
        match c.cstr() {
            Ok(v) => out.push((code, String::from_utf8_lossy(v).into_owned())),
            Err(_) => break,
        }
    }
    out
}

pub fn error_field(fields: &[(u8, String)], code: u8) -> Option<&str> {
    fields
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, v)| v.as_str())
}

/// Columns of a DataRow in text format.
pub fn data_row(body: &[u8]) -> Result<Vec<Option<String>>, WireError> {
    let mut c = Cursor::new(body);
    let n = c.i16()?;
    let mut out = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let len = c.i32()?;
        if len < 0 {
            out.push(None);
        } else {
            let v = c.take(len as usize)?;
            out.push(Some(String::from_utf8_lossy(v).into_owned()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_split_across_reads() {
        let mut msgs = BytesMut::new();
        query(&mut msgs, "select 1").unwrap();
        sync(&mut msgs);
        let (a, b) = msgs.split_at(3);
        let data = [a, b].concat();
        let mut r = FrameReader::new(data.as_slice());
        let f = r.next().await.unwrap().unwrap();
        assert_eq!(f.tag, b'Q');
        assert_eq!(Cursor::new(f.body()).cstr().unwrap(), b"select 1");
        assert_eq!(r.next().await.unwrap().unwrap().tag, b'S');
        assert!(r.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn rejects_bad_lengths() {
        let mut r = FrameReader::new(&[b'Q', 0, 0, 0, 1][..]);
        assert!(r.next().await.is_err());
        let mut r = FrameReader::new(&[b'Q', 0x7f, 0xff, 0xff, 0xff][..]);
        assert!(r.next().await.is_err());
        let mut r = FrameReader::new(&[0u8, 0, 0, 2][..]);
        assert!(r.startup().await.is_err());
    }

    #[test]
    fn startup_round_trip() {
        let params = vec![
            ("user".to_string(), "u".to_string()),
            ("database".into(), "d".into()),
        ];
        let msg = startup_message(&params);
        assert_eq!(startup_params(&msg).unwrap(), params);
    }

    #[test]
    fn errors_and_rows() {
        let mut b = BytesMut::new();
        error_response(&mut b, "ERROR", "XX000", "boom", Some("why"));
        let f = error_fields(&b[5..]);
        assert_eq!(error_field(&f, b'M'), Some("boom"));
        assert_eq!(error_field(&f, b'D'), Some("why"));
        let mut n = BytesMut::new();
        notice_response(&mut n, "INFO", "00000", "note");
        assert_eq!(n[0], b'N');
        let f = error_fields(&n[5..]);
        assert_eq!(error_field(&f, b'S'), Some("INFO"));
        assert_eq!(error_field(&f, b'M'), Some("note"));
        let row = [0u8, 2, 0, 0, 0, 1, b'x', 0xff, 0xff, 0xff, 0xff];
        assert_eq!(data_row(&row).unwrap(), vec![Some("x".into()), None]);
        assert!(data_row(&[0, 1, 0, 0, 0, 9]).is_err());
    }
}
