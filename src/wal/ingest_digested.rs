//! Ingest's side of a digested row change (`wal::digest`): appended from its digest, indexed
//! from it when the batcher has checked its column list, parsed again otherwise. Digests come
//! from `--stdin`'s input thread with each chunk, or are made here for a slot's messages.

use super::{Ingest, IngestError, Received, SourcedMessage};
use crate::batch::DigestedRow;
use crate::lsn::Lsn;
use crate::source::decoding::{parse_message_utf8, Digest, Message, RowDigest, Side};
use crate::wal::change;

impl Ingest {
    /// The slot's message `m`, read as line `line`, ingested from its digest: `None` when the
    /// digester does not take it (the caller parses it).
    pub(super) fn ingest_slot_digested(
        &mut self,
        m: &SourcedMessage,
        line: u64,
    ) -> Option<Result<(), IngestError>> {
        let mut side = std::mem::take(&mut self.side);
        side.names.clear();
        side.bytes.clear();
        let done = self
            .digester
            .digest(&m.raw, &mut side)
            .map(|(digest, utf8)| {
                let msg = Received {
                    line,
                    raw: &m.raw,
                    utf8,
                };
                self.ingest_digested(&msg, &digest, &side, Some(m.lsn))
            });
        self.side = side;
        done
    }

    /// A digested row change (by the input thread, or here for a slot's message at
    /// `source_lsn`): appended with the digest's prefix, then indexed from the digest, or, when
    /// the batcher has not checked its signature yet, parsed again and applied as any message.
    /// A digest this side buffer does not hold, or of a table this ingest's filter does not
    /// take, is not trusted: the message goes the common way.
    pub(super) fn ingest_digested(
        &mut self,
        msg: &Received<'_>,
        d: &RowDigest,
        side: &Side,
        source_lsn: Option<Lsn>,
    ) -> Result<(), IngestError> {
        let (Some(name), Some(prefix)) = (side.name(d), side.prefix(d)) else {
            return self.ingest_again(msg, source_lsn);
        };
        if !self.filter.takes_qualified(name) {
            return self.ingest_again(msg, source_lsn);
        }
        #[cfg(debug_assertions)]
        crate::wal::digest::check(msg.raw, msg.line, name, prefix);
        self.last_line = msg.line;
        if !self.in_txn {
            return Err(IngestError::OutsideTransaction { line: msg.line });
        }
        let lsn = self.next_lsn(source_lsn)?;
        let pos = self.wal.append_change(lsn, prefix, msg.raw)?;
        if let Some(open) = self.open.as_mut() {
            open.last_lsn = lsn;
        }
        self.read.changes += 1;
        let row = DigestedRow {
            name,
            signature: d.signature,
            prefix,
            text: msg.raw,
        };
        let line = msg.line;
        let indexed = self
            .batcher
            .index_digested(&row, pos)
            .map_err(|source| IngestError::Batch { line, lsn, source })?;
        if !indexed {
            self.reparsed += 1;
            let (message, _) = reparse(msg, source_lsn)?;
            self.apply(&message, pos, line, lsn)?;
            if let Some((_, new)) = change::split_of(&message) {
                self.batcher.adopt_signature(name, d.signature, new);
            }
        }
        self.after_message()
    }

    /// A digested message not taken from its digest: parsed here and ingested as any.
    fn ingest_again(
        &mut self,
        msg: &Received<'_>,
        source_lsn: Option<Lsn>,
    ) -> Result<(), IngestError> {
        let (message, _) = reparse(msg, source_lsn)?;
        self.ingest_frame(msg, &message, source_lsn)
    }
}

/// A digested message parsed after all (a digest is only made of a message that parses; an
/// error names the slot's LSN for a slot's message, as its first parse would have).
fn reparse<'a>(
    msg: &Received<'a>,
    source_lsn: Option<Lsn>,
) -> Result<(Message<'a>, bool), IngestError> {
    parse_message_utf8(msg.raw, msg.line).map_err(|source| match source_lsn {
        Some(lsn) => IngestError::SourcedParse { lsn, source },
        None => IngestError::Parse(source),
    })
}
