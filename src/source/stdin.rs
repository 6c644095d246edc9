//! The `--stdin` input: test_decoding text (what `pg_recvlogical -f -` prints) read in chunks.

use std::io::Read;

use crate::shutdown::Shutdown;
use crate::wal::ingest::Input;

/// Input is read in chunks of this size.
pub const INPUT_CHUNK_BYTES: usize = 1 << 20;

pub fn read_input<R: Read>(mut input: R, tx: &std::sync::mpsc::SyncSender<Input>, stop: &Shutdown) {
    loop {
        if stop.is_triggered() {
            return;
        }
        let mut buf = vec![0u8; INPUT_CHUNK_BYTES];
        let mut filled = 0;
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
        if filled > 0 {
            buf.truncate(filled);
            if tx.send(Input::Bytes(buf)).is_err() {
                return;
            }
        }
        match res {
            Ok(false) => {}
            Ok(true) => {
                let _ = tx.send(Input::Eof);
                return;
            }
            Err(e) => {
                let _ = tx.send(Input::Failed(e));
                return;
            }
        }
    }
}
