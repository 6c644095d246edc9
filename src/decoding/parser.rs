//! The test_decoding grammar: one message from its raw bytes.
use super::{Message, ParseError};

/// Parses one complete test_decoding message: `raw` holds the message without its trailing
/// newline. `line` is the 1-based physical line the message starts on, used only in errors.
pub fn parse_message(raw: &[u8], line: u64) -> Result<Message<'_>, ParseError> {
    let _ = (raw, line);
    unimplemented!("parser is being written")
}
