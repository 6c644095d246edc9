//! The `--stdin` input: test_decoding text (what `pg_recvlogical -f -` prints), read in chunks,
//! framed and parsed on a thread of its own (so that parsing runs beside ingest's appending and
//! indexing, on the other core), and sent to ingest through a bounded channel.
//!
//! A read from a pipe cannot be interrupted: after the stop signal this thread ends at its next
//! chunk, or stays blocked in `read` until the process exits (nothing waits for it).

use std::convert::Infallible;
use std::io::Read;

use crossbeam_channel::{Receiver, Sender};

use crate::pipeline::stage::StageHandle;
use crate::shutdown::Shutdown;
use crate::source::decoding::{FramedChunk, Framer};
use crate::wal::ingest::Input;

/// Input is read in chunks of this size.
pub const INPUT_CHUNK_BYTES: usize = 1 << 20;
/// Parsed chunks read ahead of ingest (each holds its bytes and their frames, ~2x the bytes).
pub const INPUT_CHUNKS_AHEAD: usize = 4;

/// Starts reading `input` through `framer` (`--stdin`'s has ingest's digest hook,
/// [`crate::wal::digest`]); ingest takes the chunks from the returned channel.
pub fn spawn<R: Read + Send + 'static>(
    input: R,
    framer: Framer,
    stop: Shutdown,
) -> (StageHandle<(), Infallible>, Receiver<Input>) {
    let (tx, rx) = crossbeam_channel::bounded(INPUT_CHUNKS_AHEAD);
    let handle = StageHandle::thread("input", move || {
        read_input(input, framer, &tx, &stop);
        Ok(())
    });
    (handle, rx)
}

/// Sends `input` in chunks parsed by `framer`, then [`Input::Eof`] (or [`Input::Failed`]);
/// returns early on the stop signal, when ingest is gone, or after a chunk that ends with a
/// parse error (ingest stops there).
pub fn read_input<R: Read>(mut input: R, mut framer: Framer, tx: &Sender<Input>, stop: &Shutdown) {
    loop {
        // The unfinished message so far, then room for this read.
        let (mut buf, carried) = framer.read_buffer(INPUT_CHUNK_BYTES);
        let mut filled = carried;
        // Fill the chunk unless the input pauses (a pipe gives what it has).
        let res = loop {
            match input.read(&mut buf[filled..]) {
                Ok(0) => break Ok(true),
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() || n < 64 * 1024 {
                        break Ok(false);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        // Handed back even when nothing was read: it holds the unfinished message.
        buf.truncate(filled);
        if !send_framed(tx, framer.push_read(buf), stop) {
            return;
        }
        match res {
            Ok(false) => {}
            Ok(true) => {
                if send_framed(tx, framer.finish(), stop) {
                    send(tx, Input::Eof, stop);
                }
                return;
            }
            Err(e) => {
                send(tx, Input::Failed(e), stop);
                return;
            }
        }
    }
}

/// Sends a parsed chunk, if there is one; false when reading should end (not sent, or the
/// chunk ends with a parse error).
fn send_framed(tx: &Sender<Input>, chunk: Option<FramedChunk>, stop: &Shutdown) -> bool {
    let Some(chunk) = chunk else {
        return true;
    };
    let failed = chunk.error().is_some();
    send(tx, Input::Text(chunk), stop) && !failed
}

/// Sends one message, waiting for room unless the stop signal comes first; false when the
/// message was not sent.
fn send(tx: &Sender<Input>, msg: Input, stop: &Shutdown) -> bool {
    crossbeam_channel::select! {
        send(tx, msg) -> sent => sent.is_ok(),
        recv(stop.receiver()) -> _ => false,
    }
}
