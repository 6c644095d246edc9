//! Framing and parsing ahead of ingest: text input turned into chunks of parsed (or digested)
//! messages on the input thread, so that the ingest thread (the one that must see every message
//! in order) only appends and indexes.
//!
//! A [`FramedChunk`] owns the bytes of the messages it holds and their [`ChunkFrame`]s, which
//! borrow from those bytes; it moves between threads as one value. [`Framer`] keeps what a chunk
//! could not finish (the start of a message whose end has not arrived) and the line count across
//! chunks, exactly as [`super::MessageStream`] does for input framed in place.
//!
//! A framer given a [`Digest`] hook (`--stdin`'s, from ingest) hands it, before parsing, the
//! first line of every message that starts with `table ` (except a last line without a
//! newline, at the end of input): a message the hook digests keeps only the digest (in the
//! chunk's side buffer, [`Side`]) and is never parsed on this thread; the ingest thread parses
//! it only in the cases the digest cannot serve (see `wal/digest.rs`). Whatever the hook leaves
//! is framed and parsed as without it.
//!
//! Invariants:
//! - the frames of successive chunks are the frames `MessageStream` returns for the same bytes,
//!   in the same order, with the same line numbers (a digested frame: the same line, bytes and
//!   UTF-8 flag; a hook digests only messages that parse, see [`Digest`]);
//! - a chunk ends at its first parse error, which it carries; the framer frames nothing after it
//!   (ingest stops there);
//! - read through [`Framer::read_buffer`], input bytes are not copied at all, except the
//!   unfinished message at a chunk's end (copied twice: out of the chunk, then to the front of
//!   the next buffer); pushed as pieces, each byte is copied at most once more; a message longer
//!   than a chunk grows one buffer in place and is searched once, not again per chunk.

use crossbeam_channel::{Receiver, Sender};
use self_cell::self_cell;

use super::stream::FrameScan;
use super::{Message, ParseError};

/// The frames of one chunk, borrowing from its bytes, and what their digests point into.
pub struct Frames<'a> {
    frames: Vec<ChunkFrame<'a>>,
    side: Side,
}

/// A chunk's side buffer: what its [`RowDigest`]s point into. Table names are kept as text,
/// checked as UTF-8 once, where the digest made them, not again where they are read.
#[derive(Debug, Default)]
pub struct Side {
    pub names: String,
    pub bytes: Vec<u8>,
}

impl Side {
    fn with_capacity(names: usize, bytes: usize) -> Self {
        Side {
            names: String::with_capacity(names),
            bytes: Vec::with_capacity(bytes),
        }
    }

    /// A digest's table name.
    pub fn name(&self, digest: &RowDigest) -> Option<&str> {
        self.names
            .get(digest.name.start as usize..digest.name.end as usize)
    }

    /// A digest's WAL prefix.
    pub fn prefix(&self, digest: &RowDigest) -> Option<&[u8]> {
        self.bytes
            .get(digest.prefix.start as usize..digest.prefix.end as usize)
    }
}

/// One message of a chunk: where it is, and its parse tree or what a [`Digest`] made of it.
#[derive(Debug)]
pub struct ChunkFrame<'a> {
    /// 1-based physical line the message starts on.
    pub line: u64,
    /// The message's bytes without the trailing newline.
    pub raw: &'a [u8],
    /// The parser finds all of `raw` valid UTF-8 (for a digested message: would find).
    pub utf8: bool,
    pub body: Body<'a>,
}

/// A message as ingest receives it.
#[derive(Debug)]
pub enum Body<'a> {
    /// The parse tree, borrowing from the frame's bytes.
    Parsed(Message<'a>),
    /// A row change digested on the input thread (never parsed there).
    Digested(RowDigest),
}

impl Body<'_> {
    /// The parse tree, unless the message was digested.
    pub fn message(&self) -> Option<&Message<'_>> {
        match self {
            Body::Parsed(m) => Some(m),
            Body::Digested(_) => None,
        }
    }
}

/// What a [`Digest`] keeps of a message: a number naming its column signature, and two ranges
/// of the chunk's side buffer ([`FramedChunk::side`]). Framing does not read it; the hook and
/// the one reading it (ingest) agree on what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDigest {
    pub signature: u64,
    /// In [`Side::names`].
    pub name: std::ops::Range<u32>,
    /// In [`Side::bytes`].
    pub prefix: std::ops::Range<u32>,
}

/// Work done instead of parsing a message: by a framer, on its thread, on the first line of a
/// message starting with `table ` (the message when that line parses); by ingest, on each
/// whole message from a replication slot.
pub trait Digest: Send {
    /// The digest of the message `raw` (what it points to appended to `side`) and the UTF-8
    /// flag the parser would give it (`row_scan::is_utf8`); `None`, with nothing appended, to
    /// have it parsed. A hook digests only what [`super::parse_message`] accepts as a whole
    /// message: that is the message, as without the hook (the framer takes the first newline as
    /// a message's end when the line parses); a line cut inside a quoted value never parses.
    fn digest(&mut self, raw: &[u8], side: &mut Side) -> Option<(RowDigest, bool)>;
}

self_cell!(
    struct FramedBytes {
        owner: Vec<u8>,
        #[covariant]
        dependent: Frames,
    }
);

/// Used chunks waiting to go back to their framer (see [`Framer::read_buffer`]).
const RECYCLED_CHUNKS: usize = 4;

/// Whole messages, framed and parsed or digested, with the bytes they borrow from.
///
/// Dropped, it goes back to the framer that made it (when there is room), which frees the
/// frames on its own thread, where they were allocated, and reads into the bytes again: ingest
/// spends no time freeing parse trees.
pub struct FramedChunk {
    /// Always `Some` until dropped.
    cell: Option<FramedBytes>,
    /// The message after the last frame did not parse (nothing after it was framed).
    error: Option<ParseError>,
    recycle: Sender<FramedBytes>,
}

impl Drop for FramedChunk {
    fn drop(&mut self) {
        if let Some(cell) = self.cell.take() {
            // Full or the framer gone: freed here instead.
            let _ = self.recycle.try_send(cell);
        }
    }
}

impl std::fmt::Debug for FramedChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramedChunk")
            .field(
                "bytes",
                &self.cell.as_ref().map_or(0, |c| c.borrow_owner().len()),
            )
            .field("frames", &self.frames().len())
            .field("error", &self.error)
            .finish()
    }
}

impl FramedChunk {
    /// The chunk's messages, in input order.
    pub fn frames(&self) -> &[ChunkFrame<'_>] {
        self.cell
            .as_ref()
            .map_or(&[], |c| &c.borrow_dependent().frames)
    }

    /// What the frames' [`RowDigest`]s point into.
    pub fn side(&self) -> &Side {
        static EMPTY: Side = Side {
            names: String::new(),
            bytes: Vec::new(),
        };
        self.cell
            .as_ref()
            .map_or(&EMPTY, |c| &c.borrow_dependent().side)
    }

    /// The parse error that ended the chunk, if one did.
    pub fn error(&self) -> Option<&ParseError> {
        self.error.as_ref()
    }
}

/// Turns text input, pushed in chunks of any size, into [`FramedChunk`]s.
pub struct Framer {
    /// Bytes not yet framed; `at` is relative to its start.
    pending: Vec<u8>,
    at: FrameScan,
    eof: bool,
    /// A parse error was returned: nothing more is framed.
    failed: bool,
    /// Chunks handed back when dropped.
    recycled: (Sender<FramedBytes>, Receiver<FramedBytes>),
    /// Frames in the last chunk: room reserved for the next one's.
    frames_hint: usize,
    /// Name and prefix bytes of the last chunk's side buffer, likewise.
    side_hint: (usize, usize),
    digest: Option<Box<dyn Digest>>,
}

impl std::fmt::Debug for Framer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Framer")
            .field("buffered", &self.buffered_len())
            .field("line", &self.at.line)
            .field("failed", &self.failed)
            .field("digest", &self.digest.is_some())
            .finish()
    }
}

impl Default for Framer {
    fn default() -> Self {
        Self::new()
    }
}

impl Framer {
    /// At line 1, nothing pending.
    pub fn new() -> Self {
        Framer {
            pending: Vec::new(),
            at: FrameScan::new(),
            eof: false,
            failed: false,
            recycled: crossbeam_channel::bounded(RECYCLED_CHUNKS),
            frames_hint: 0,
            side_hint: (0, 0),
            digest: None,
        }
    }

    /// Hands `digest` the first line of each message starting with `table ` from now on,
    /// before parsing it (see [`Digest`]).
    pub fn with_digest(mut self, digest: Box<dyn Digest>) -> Self {
        self.digest = Some(digest);
        self
    }

    /// A buffer to read the next input into without copying it again: the unfinished message
    /// so far, then `len` bytes of room, from the returned offset on. Fill the room (or part of
    /// it), truncate the buffer to what was filled and hand it to [`Self::push_read`] — and to
    /// nothing else: the unfinished message is held only there until then. The buffer is a
    /// chunk's handed back, if one was (its frames are freed now, on this thread, where they
    /// were allocated), else a new one.
    pub fn read_buffer(&mut self, len: usize) -> (Vec<u8>, usize) {
        // Whichever buffer is used, the chunks handed back are taken (and freed, but for one).
        let spare = self.spare(len);
        let carried = self.buffered_len();
        let mut buf = if carried >= len / 4 {
            // A long message so far: grown in place, not copied again per read.
            let mut buf = std::mem::take(&mut self.pending);
            buf.drain(..self.at.start);
            buf
        } else {
            // A new one has room for `len` after an unfinished message under a quarter of it.
            let mut buf = spare.unwrap_or_else(|| Vec::with_capacity(len + len / 4));
            if buf.len() < carried {
                buf.resize(carried, 0);
            }
            let unfinished = self.pending.get(self.at.start..).unwrap_or_default();
            buf[..carried].copy_from_slice(unfinished);
            self.pending.clear();
            buf
        };
        self.at.start = 0;
        // Only bytes never written before are zeroed.
        buf.resize(carried + len, 0);
        (buf, carried)
    }

    /// Frames what `buf`, from [`Self::read_buffer`], completes.
    pub fn push_read(&mut self, buf: Vec<u8>) -> Option<FramedChunk> {
        if self.failed {
            return None;
        }
        self.pending = buf;
        self.frame_pending()
    }

    /// The bytes of the last chunk handed back, if one was and it is not a huge message's; every
    /// chunk handed back is taken (its frames freed here, on the thread that allocated them).
    fn spare(&mut self, len: usize) -> Option<Vec<u8>> {
        let mut spare = None;
        for cell in self.recycled.1.try_iter() {
            spare = Some(cell.into_owner());
        }
        spare.filter(|b| b.capacity() <= 4 * len)
    }

    /// Frames what `bytes` completes; `None` when no message ended in them.
    pub fn push(&mut self, bytes: Vec<u8>) -> Option<FramedChunk> {
        if self.failed {
            return None;
        }
        if self.pending.is_empty() {
            self.pending = bytes;
        } else {
            self.pending.extend_from_slice(&bytes);
        }
        self.frame_pending()
    }

    /// The end of input: frames the rest (a final message without a newline, or the error
    /// for an incomplete one).
    pub fn finish(&mut self) -> Option<FramedChunk> {
        self.eof = true;
        if self.failed {
            return None;
        }
        self.frame_pending()
    }

    /// Bytes held that are not part of a chunk returned yet.
    pub fn buffered_len(&self) -> usize {
        self.pending.len().saturating_sub(self.at.start)
    }

    fn frame_pending(&mut self) -> Option<FramedChunk> {
        let mut at = self.at;
        let mut error = None;
        let eof = self.eof;
        let hint = self.frames_hint + self.frames_hint / 8;
        let side_hint = (
            self.side_hint.0 + self.side_hint.0 / 8,
            self.side_hint.1 + self.side_hint.1 / 8,
        );
        let digest = &mut self.digest;
        let cell = FramedBytes::new(std::mem::take(&mut self.pending), |buf| {
            let mut frames = Vec::with_capacity(hint);
            let mut side = Side::with_capacity(side_hint.0, side_hint.1);
            loop {
                if let Some(d) = digest.as_mut() {
                    if let Some((line, raw, (row, utf8))) =
                        at.try_line(buf, |raw| d.digest(raw, &mut side))
                    {
                        frames.push(ChunkFrame {
                            line,
                            raw,
                            utf8,
                            body: Body::Digested(row),
                        });
                        continue;
                    }
                }
                match at.next(buf, eof) {
                    Ok(Some(frame)) => frames.push(ChunkFrame {
                        line: frame.line,
                        raw: frame.raw,
                        utf8: frame.utf8,
                        body: Body::Parsed(frame.message),
                    }),
                    Ok(None) => break,
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            Frames { frames, side }
        });
        if cell.borrow_dependent().frames.is_empty() && error.is_none() {
            // Nothing ended here: keep growing the same buffer, and where the search got.
            self.pending = cell.into_owner();
            self.at = at;
            return None;
        }
        self.failed = error.is_some();
        self.frames_hint = cell.borrow_dependent().frames.len();
        let side = &cell.borrow_dependent().side;
        self.side_hint = (side.names.len(), side.bytes.len());
        self.pending = cell
            .borrow_owner()
            .get(at.start..)
            .unwrap_or_default()
            .to_vec();
        at.start = 0;
        self.at = at;
        Some(FramedChunk {
            cell: Some(cell),
            error,
            recycle: self.recycled.0.clone(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // Frames and errors against `MessageStream`'s: `tests/cases/decoding_props.rs`
    // (`framer_agrees`, fixed cases and every property case).

    #[test]
    fn a_dropped_chunk_gives_its_bytes_back_for_the_next_read() {
        let mut framer = Framer::new();
        let (mut buf, at) = framer.read_buffer(64);
        assert_eq!((buf.len(), at), (64, 0));
        let input = b"BEGIN 1\nCOMMIT 1\nBEG";
        buf[..input.len()].copy_from_slice(input);
        buf.truncate(input.len());
        let first = buf.as_ptr();
        let chunk = framer.push_read(buf).unwrap();
        assert_eq!(chunk.frames().len(), 2);
        drop(chunk);
        // The same bytes again, the unfinished message at the front, room after it.
        let (mut again, at) = framer.read_buffer(64);
        assert_eq!(again.as_ptr(), first);
        assert_eq!((again.len(), at), (67, 3));
        assert_eq!(&again[..3], b"BEG");
        again.truncate(at);
        assert!(framer.push_read(again).is_none(), "nothing new ended");
    }

    #[test]
    fn a_huge_chunks_bytes_are_not_kept() {
        let huge = || {
            let mut huge = Vec::with_capacity(1 << 20);
            huge.extend_from_slice(b"BEGIN 2\n");
            huge
        };
        let mut framer = Framer::new();
        drop(framer.push(huge()).unwrap());
        assert!(framer.read_buffer(64).0.capacity() < 1 << 20);
        // Also when the next buffer is a long unfinished message's, grown in place.
        let mut framer = Framer::new();
        let huge_chunk = framer.push(huge()).unwrap();
        let long = b"BEGIN 1\ntable public.t: INSERT: v[text]:'xxxxxxxxxxxxxxxxxxxxxxxx";
        let long_chunk = framer.push(long.to_vec()).unwrap();
        drop((huge_chunk, long_chunk));
        assert_eq!(framer.recycled.1.len(), 2);
        let (buf, at) = framer.read_buffer(64);
        assert_eq!(at, long.len() - 8);
        assert!(buf.capacity() < 1 << 20);
        assert_eq!(
            framer.recycled.1.len(),
            0,
            "a handed-back chunk left waiting"
        );
    }

    #[test]
    fn a_long_unfinished_message_grows_in_place() {
        let mut framer = Framer::new();
        let (mut buf, _) = framer.read_buffer(64);
        let input = b"BEGIN 1\ntable public.t: INSERT: v[text]:'xxxxxxxxxxxxxxxx";
        buf[..input.len()].copy_from_slice(input);
        buf.truncate(input.len());
        assert_eq!(framer.push_read(buf).unwrap().frames().len(), 1);
        let (mut buf, at) = framer.read_buffer(64);
        assert_eq!(at, input.len() - 8);
        assert_eq!(&buf[..at], &input[8..]);
        // Past a quarter of the room, the unfinished message's buffer is kept and grown.
        let held = buf.as_ptr();
        buf.truncate(at);
        assert!(framer.push_read(buf).is_none());
        let (buf, again) = framer.read_buffer(64);
        assert_eq!((buf.as_ptr(), again), (held, at));
    }

    #[test]
    fn a_message_longer_than_a_chunk_is_held_until_it_ends() {
        let mut input = b"BEGIN 5\ntable public.t: INSERT: v[text]:'".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100_000));
        input.extend_from_slice(b"'\nCOMMIT 5\n");
        let mut framer = Framer::new();
        let mut frames = 0;
        for piece in input.chunks(1000) {
            if let Some(c) = framer.push(piece.to_vec()) {
                frames += c.frames().len();
            }
            // Never more than the unfinished message (and the piece) is held.
            assert!(
                framer.buffered_len() <= 100_100,
                "{}",
                framer.buffered_len()
            );
        }
        frames += framer.finish().map_or(0, |c| c.frames().len());
        assert_eq!(frames, 3);
        assert_eq!(framer.buffered_len(), 0);
    }
}
