//! Framing: test_decoding messages out of a byte stream that arrives in chunks.
use super::{Message, ParseError};

/// One framed message.
#[derive(Debug)]
pub struct Frame<'a> {
    /// 1-based physical line the message starts on.
    pub line: u64,
    /// The message's bytes without the trailing newline (what the WAL stores).
    pub raw: &'a [u8],
    pub message: Message<'a>,
}

/// Frames messages out of bytes pushed in chunks of any size.
#[derive(Debug, Default)]
pub struct MessageStream {}

impl MessageStream {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&mut self, bytes: &[u8]) {
        let _ = bytes;
    }
    pub fn finish(&mut self) {}
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, ParseError> {
        unimplemented!("framer is being written")
    }
}
