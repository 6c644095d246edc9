//! A spilled segment (its in-memory batch dropped while the target was behind) must load exactly
//! as the batch ingest built would have: the same manifest and the same CSV rows, through schema
//! changes, TOAST subsets, key changes and segments closed inside a transaction for memory.
//!
//! Each capture is ingested twice into WALs of their own with tiny segments and a tiny memory
//! budget: once with a CSV stage taking every batch from memory, once with every segment spilled
//! (nobody takes them until ingest is done) and rebuilt from disk. Both runs' outputs must be
//! identical, segment by segment.

use re_dms::shutdown::Shutdown;
use re_dms::source::decoding::Framer;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use re_dms::pipeline::handoff::SegmentOutput;
use re_dms::pipeline::handoff::{ConsumerGuard, Entry, SealedQueue};
use re_dms::wal::ingest::{Ingest, IngestLimits, Input, KnownKeys};

const BUDGET: usize = 16 * 1024;

fn limits(spill_after: Duration) -> IngestLimits {
    IngestLimits {
        segment_max_bytes: 4096,
        segment_max_age: Duration::from_secs(3600),
        batch_max_memory: BUDGET,
        spill_after,
    }
}

/// Ingests `input` into a fresh WAL under `dir`; `spill` makes the consumer start only after
/// ingest is done (so every segment is spilled). Returns each segment's manifest and the
/// decompressed contents of its files, in order, and how many entries came spilled.
fn run(input: &[u8], dir: &Path, spill: bool) -> (Vec<(SegmentOutput, Vec<String>)>, usize) {
    let (wal, recovery) = re_dms::wal::Wal::open(&dir.join("wal")).unwrap();
    let queue = Arc::new(SealedQueue::default());
    let keys = KnownKeys::default();
    let patience = if spill {
        Duration::ZERO
    } else {
        Duration::from_secs(600)
    };
    let ingest = Ingest::new(
        wal,
        &recovery,
        keys.clone(),
        limits(patience),
        Arc::clone(&queue),
        Shutdown::new(),
    );
    let (tx, rx) = crossbeam_channel::bounded(2);
    let mut framer = Framer::new();
    for chunk in [framer.push(input.to_vec()), framer.finish()]
        .into_iter()
        .flatten()
    {
        tx.send(Input::Text(chunk)).unwrap();
    }
    tx.send(Input::Eof).unwrap();
    let mut ingest_stage = Some(ingest.spawn(Vec::new(), Some(rx)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    if spill {
        runtime
            .block_on(ingest_stage.take().unwrap().wait())
            .unwrap();
    }
    let spool = dir.join("spool");
    let mut outputs = Vec::new();
    let mut spilled = 0;
    {
        let _gone = ConsumerGuard(&queue);
        while let Some(entry) = queue.take() {
            if matches!(entry, Entry::Spilled(_)) {
                spilled += 1;
            }
            let sealed = entry.into_sealed(&keys, BUDGET).unwrap();
            let out = re_dms::csv::write_segment(sealed, &spool).unwrap();
            let mut files = Vec::new();
            for t in &out.manifest.tables {
                for step in &t.steps {
                    if let re_dms::csv::manifest::StepManifest::Load { files: fs, .. } = step {
                        for f in fs {
                            let gz = std::fs::File::open(out.dir.join(&f.path)).unwrap();
                            let mut text = String::new();
                            flate2::read::MultiGzDecoder::new(gz)
                                .read_to_string(&mut text)
                                .unwrap();
                            files.push(format!("{}\n{text}", f.path));
                        }
                    }
                }
            }
            outputs.push((out, files));
        }
    }
    if let Some(t) = ingest_stage {
        runtime.block_on(t.wait()).unwrap();
    }
    (outputs, spilled)
}

/// The capture three times over (its schema changes then run again, from the first shape), each
/// time followed by a transaction of 200 inserts that no segment can hold whole at [`BUDGET`].
fn input_from(capture: &str) -> Vec<u8> {
    let text = String::from_utf8(crate::harness::capture(capture)).unwrap();
    let mut input = String::new();
    for round in 0..3 {
        input.push_str(&text);
        input.push_str(&format!("BEGIN {}\n", 900 + round));
        for i in 0..200 {
            input.push_str(&format!(
                "table public.bulk: INSERT: id[integer]:{} note[text]:'round {round} row {i}'\n",
                round * 1000 + i
            ));
        }
        input.push_str(&format!("COMMIT {}\n", 900 + round));
    }
    input.into_bytes()
}

fn same_output_when_spilled(capture: &str) {
    let input = input_from(capture);
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (direct, spilled_direct) = run(&input, a.path(), false);
    let (rebuilt, spilled) = run(&input, b.path(), true);
    assert_eq!(spilled_direct, 0, "{capture}: the direct run spilled");
    assert_eq!(spilled, rebuilt.len(), "{capture}: every segment spilled");
    assert!(
        direct.len() >= 5,
        "{capture}: only {} segments",
        direct.len()
    );
    assert!(
        direct.iter().any(|(o, _)| !o.complete),
        "{capture}: no segment closed inside a transaction; lower the budget"
    );
    assert_eq!(direct.len(), rebuilt.len(), "{capture}: segment count");
    for ((d, dfiles), (r, rfiles)) in direct.iter().zip(&rebuilt) {
        // Two WAL directories: two lineages; everything else is the same.
        let mut r_manifest = r.manifest.clone();
        r_manifest.lineage = d.manifest.lineage;
        assert_eq!(d.manifest, r_manifest, "{capture}: segment {}", d.segment);
        assert_eq!(d.complete, r.complete, "{capture}: segment {}", d.segment);
        assert_eq!(dfiles, rfiles, "{capture}: segment {} files", d.segment);
    }
}

#[test]
fn plain_capture_spilled_loads_the_same() {
    same_output_when_spilled("capture_plain.txt");
}

#[test]
fn timestamps_capture_spilled_loads_the_same() {
    same_output_when_spilled("capture_timestamps.txt");
}
