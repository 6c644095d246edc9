//! Tests of the ingest stage: LSNs kept, rotation at transaction boundaries, the group commit
//! under load, parse errors named by their LSN.

use super::*;
use crate::pipeline::handoff::Entry;
use crate::source::decoding::Framer;
use crate::wal::segment::{Next, RecordKind, SegmentScanner};

fn sourced(lsn: u64, raw: &'static str) -> SourcedMessage {
    SourcedMessage {
        lsn: Lsn(lsn),
        raw: bytes::Bytes::from_static(raw.as_bytes()),
    }
}

/// Ingest into the WAL at `dir`; sealed batches are dropped (spilled) at once.
fn ingest_into(dir: &std::path::Path) -> Ingest {
    ingest_with(dir, 1 << 20).0
}

/// Ingest into the WAL at `dir` with a batch budget of `batch_max_memory`, and the queue
/// its sealed segments go to (spilled at once).
fn ingest_with(dir: &std::path::Path, batch_max_memory: usize) -> (Ingest, Arc<SealedQueue>) {
    ingest_limited(dir, 1 << 20, batch_max_memory)
}

/// As [`ingest_with`], segments closing at `segment_max_bytes`.
fn ingest_limited(
    dir: &std::path::Path,
    segment_max_bytes: u64,
    batch_max_memory: usize,
) -> (Ingest, Arc<SealedQueue>) {
    let (wal, recovery) = Wal::open(dir).unwrap();
    let limits = IngestLimits {
        segment_max_bytes,
        segment_max_age: Duration::from_secs(3600),
        batch_max_memory,
        spill_after: Duration::ZERO,
    };
    let queue = Arc::new(SealedQueue::default());
    let ingest = Ingest::new(
        wal,
        &recovery,
        KnownKeys::default(),
        limits,
        Arc::clone(&queue),
        Shutdown::new(),
    );
    (ingest, queue)
}

/// Messages from a slot keep their LSNs in the WAL, and the last COMMIT's LSN is known on
/// the next open: from the kept segments, and from `state.json` once they are deleted.
#[test]
fn sourced_messages_keep_their_lsns_and_the_last_commit_outlives_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut ingest = ingest_into(dir.path());
    let durable = Arc::clone(&ingest.durable_lsn);
    let (tx, rx) = crossbeam_channel::bounded(4);
    let input = [
        sourced(0x100, "BEGIN 7"),
        sourced(0x110, "table public.t: INSERT: id[integer]:1"),
        sourced(0x150, "COMMIT 7"),
        sourced(0x120, "BEGIN 8"),
        sourced(0x160, "table public.t: INSERT: id[integer]:2"),
        sourced(0x1a0, "COMMIT 8"),
    ];
    tx.send(Input::Sourced(input[..3].to_vec())).unwrap();
    tx.send(Input::Sourced(input[3..].to_vec())).unwrap();
    drop(tx);
    assert_eq!(ingest.run(&rx).unwrap(), RunEnd::Eof);
    assert_eq!(durable.load(Ordering::Acquire), 0x1a0);
    drop(ingest);

    let (_wal, recovery) = Wal::open(dir.path()).unwrap();
    assert_eq!(recovery.last_commit_lsn, Lsn(0x1a0));
    let [segment] = recovery.segments.as_slice() else {
        panic!("one segment: {:?}", recovery.segments);
    };
    let mut scanner = SegmentScanner::open(&segment.path).unwrap();
    let mut lsns = Vec::new();
    while let Next::Record(r) = scanner.next_record().unwrap() {
        if r.kind != RecordKind::Snapshot {
            lsns.push(r.lsn.0);
        }
    }
    assert_eq!(lsns, input.iter().map(|m| m.lsn.0).collect::<Vec<_>>());

    crate::wal::remove_segment(dir.path(), segment.id).unwrap();
    let (_wal, recovery) = Wal::open(dir.path()).unwrap();
    assert!(recovery.segments.is_empty());
    assert_eq!(recovery.last_commit_lsn, Lsn(0x1a0));
}

/// Under load the group commit does not wait: ingest goes on after [`GROUP_COMMIT_BYTES`],
/// and the WAL writer publishes the durable LSN once its fsync is done: a COMMIT before
/// that point, never one after it (nothing here waits for an fsync).
#[test]
fn a_group_commit_under_load_publishes_the_durable_lsn_from_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ingest, _queue) = ingest_limited(dir.path(), 1 << 30, 1 << 30);
    let durable = Arc::clone(&ingest.durable_lsn);
    let value = "x".repeat(64 * 1024);
    let txns = 300u64; // ~19 MiB of WAL: one group commit, then ~3 MiB more
    let mut messages = Vec::new();
    for t in 0..txns {
        let insert = format!("table public.t: INSERT: id[integer]:{t} v[text]:'{value}'");
        for (i, raw) in [format!("BEGIN {t}"), insert, format!("COMMIT {t}")]
            .into_iter()
            .enumerate()
        {
            messages.push(SourcedMessage {
                lsn: Lsn(0x1000 + t * 0x10 + i as u64),
                raw: bytes::Bytes::from(raw),
            });
        }
    }
    let last_commit = 0x1000 + (txns - 1) * 0x10 + 2;
    ingest.ingest_sourced(&messages).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while durable.load(Ordering::Acquire) == 0 {
        assert!(Instant::now() < deadline, "no durable LSN published");
        std::thread::sleep(Duration::from_millis(5));
    }
    let published = durable.load(Ordering::Acquire);
    assert_eq!(published % 0x10, 2, "a COMMIT's LSN: {published:#x}");
    assert!(
        published < last_commit,
        "{published:#x} covers what no fsync was asked for"
    );
}

/// A busy stream of small transactions rotates on memory at transaction boundaries: every
/// segment is complete (loaded as soon as it is written), none waits for a later one.
#[test]
fn memory_rotation_waits_for_a_transaction_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let (mut ingest, queue) = ingest_with(dir.path(), 64 * 1024);
    // The DELETE tells the key, so rows are indexed (and count against the budget) at once.
    let mut text = String::from("BEGIN 1\ntable public.t: DELETE: id[integer]:-1\nCOMMIT 1\n");
    for txn in 2..400 {
        text.push_str(&format!("BEGIN {txn}\n"));
        for row in 0..5 {
            let id = txn * 5 + row;
            text.push_str(&format!("table public.t: INSERT: id[integer]:{id}\n"));
        }
        text.push_str(&format!("COMMIT {txn}\n"));
    }
    let (tx, rx) = crossbeam_channel::bounded(2);
    let chunk = Framer::new().push(text.into_bytes()).unwrap();
    tx.send(Input::Text(chunk)).unwrap();
    drop(tx);
    assert_eq!(ingest.run(&rx).unwrap(), RunEnd::Eof);
    queue.producer_done();
    let mut sealed = Vec::new();
    while let Some(Entry::Spilled(s)) = queue.take() {
        sealed.push(s.complete);
    }
    assert!(sealed.len() > 3, "rotated on memory: {sealed:?}");
    assert!(
        sealed.iter().all(|c| *c),
        "every segment complete: {sealed:?}"
    );
}

#[test]
fn a_message_from_a_slot_that_does_not_parse_names_its_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let mut ingest = ingest_into(dir.path());
    let (tx, rx) = crossbeam_channel::bounded(1);
    tx.send(Input::Sourced(vec![
        sourced(0x100, "BEGIN 7"),
        sourced(0x2_0000_0110, "table public.t: FROB: id[integer]:1"),
    ]))
    .unwrap();
    drop(tx);
    let err = ingest.run(&rx).unwrap_err();
    assert!(err.to_string().contains("LSN 2/110"), "{err}");
}

/// What ingest read reaches the metrics once per input, and also when the run ends on an
/// error inside an input: nothing counted is left behind.
#[test]
fn read_counts_reach_the_metrics_when_a_run_ends_on_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut ingest = ingest_into(dir.path());
    let changes_before = metrics::CHANGES_READ.get();
    let messages_before = metrics::MESSAGES_READ.get();
    let (tx, rx) = crossbeam_channel::bounded(1);
    tx.send(Input::Sourced(vec![
        sourced(0x100, "BEGIN 7"),
        sourced(0x110, "table public.t: INSERT: id[integer]:1"),
        sourced(0x120, "table public.t: INSERT: id[integer]:2"),
        sourced(0x130, "table public.t: FROB: id[integer]:3"),
    ]))
    .unwrap();
    drop(tx);
    ingest.run(&rx).unwrap_err();
    assert_eq!((ingest.read.messages, ingest.read.changes), (0, 0));
    // Other tests count too, at the same time: at least these.
    assert!(metrics::CHANGES_READ.get() >= changes_before + 2);
    assert!(metrics::MESSAGES_READ.get() >= messages_before + 3);
}

/// Every kind of row change around the digest's common case: schema changes (a column added, a
/// type changed, back to an earlier list; by digested rows and by a TOAST update between rows
/// of one list, which the digester does not digest or learn from), key changes, tables whose
/// key is learned late, a table the filter leaves out, a truncate, several transactions.
const DIGEST_MIX: &str = "BEGIN 1\n\
table public.t: INSERT: id[integer]:1 v[text]:'a'\n\
table public.t: INSERT: id[integer]:2 v[text]:'b''s'\n\
table public.t: UPDATE: id[integer]:1 v[text]:'c'\n\
table public.k: INSERT: a[integer]:1 b[text]:'x'\n\
table public.k: UPDATE: a[integer]:1 b[text]:'y'\n\
table public.skip: INSERT: id[integer]:1\n\
COMMIT 1\n\
BEGIN 2\n\
table public.t: INSERT: id[integer]:3 v[text]:'d' w[integer]:7\n\
table public.t: UPDATE: id[integer]:3 v[text]:unchanged-toast-datum w[integer]:8\n\
table public.t: INSERT: id[integer]:4 v[text]:'e' w[bigint]:9\n\
table public.t: INSERT: id[integer]:5 v[text]:'f'\n\
table public.t: UPDATE: old-key: id[integer]:5 new-tuple: id[integer]:6 v[text]:'g'\n\
table public.t: UPDATE: id[integer]:6 v[text]:'h'\n\
table public.t: DELETE: id[integer]:2\n\
table public.k: DELETE: a[integer]:1\n\
table public.k: INSERT: a[integer]:2 b[text]:null\n\
table public.k: UPDATE: a[integer]:2 b[text]:'z'\n\
COMMIT 2\n\
BEGIN 3\n\
table public.t: INSERT: id[integer]:7 v[text]:'i'\n\
table public.t: INSERT: id[integer]:2 v[text]:'j'\n\
table public.t: INSERT: id[integer]:9 v[text]:'l' w[integer]:1\n\
table public.t: INSERT: id[integer]:10 v[text]:'m'\n\
table public.t: UPDATE: id[integer]:10 v[text]:'n'\n\
table public.t: UPDATE: id[integer]:7 v[text]:unchanged-toast-datum x[integer]:1\n\
table public.t: INSERT: id[integer]:11 v[text]:'o'\n\
table public.t: UPDATE: id[integer]:11 v[text]:'p'\n\
COMMIT 3\n\
BEGIN 4\n\
table public.t: TRUNCATE: (no-flags)\n\
table public.t: INSERT: id[integer]:8 v[text]:'k'\n\
COMMIT 4\n";

/// Keys known from the start (composite, its columns in the middle and at the end of the row,
/// quoted with `''`, NULL, bits), a key change onto a key an INSERT then takes again (the
/// load's conflict, restarted), a message that is not valid UTF-8, and segments small enough
/// to rotate several times.
const DIGEST_KEYED: &[u8] = b"BEGIN 1\n\
table public.c: INSERT: x[text]:'q' b[text]:'it''s' y[integer]:1 a[integer]:1\n\
table public.c: INSERT: x[text]:'r' b[text]:null y[integer]:2 a[integer]:2\n\
table public.c: UPDATE: x[text]:'s' b[text]:'it''s' y[integer]:3 a[integer]:1\n\
table public.c: INSERT: x[text]:'\xff\xfe' b[text]:'z' y[integer]:4 a[integer]:3\n\
table public.c: UPDATE: old-key: b[text]:'z' a[integer]:3 new-tuple: x[text]:'t' b[text]:'w' y[integer]:5 a[integer]:3\n\
table public.c: INSERT: x[text]:'u' b[text]:'z' y[integer]:6 a[integer]:3\n\
table public.v: INSERT: id[bit varying]:B101 v[text]:'a'\n\
table public.v: UPDATE: id[bit varying]:B101 v[text]:'b'\n\
COMMIT 1\n\
BEGIN 2\n\
table public.c: UPDATE: x[text]:'v' b[text]:'it''s' y[integer]:7 a[integer]:1\n\
table public.v: INSERT: id[bit varying]:B11 v[text]:'c'\n\
COMMIT 2\n\
BEGIN 3\n\
table public.c: INSERT: x[text]:'w' b[text]:'k' y[integer]:8 a[integer]:9\n\
table public.c: UPDATE: x[text]:'x' b[text]:'k' y[integer]:9 a[integer]:9\n\
COMMIT 3\n";

/// How [`ingested`] runs.
struct DigestRun {
    filter: fn() -> TableFilter,
    keys: fn() -> KnownKeys,
    segment_max_bytes: u64,
}

fn mix_filter() -> TableFilter {
    TableFilter::new(&["*".to_string()], &["public.skip".to_string()])
}

fn keyed() -> KnownKeys {
    let key = |k: &[&str]| {
        let key = k.iter().map(|c| c.to_string()).collect();
        (key, crate::batch::schema::KeySource::Config)
    };
    KnownKeys::of(
        [
            ("public.c".to_string(), key(&["b", "a"])),
            ("public.v".to_string(), key(&["id"])),
        ]
        .into(),
    )
}

/// How [`ingested`] feeds ingest.
#[derive(Clone, Copy, PartialEq)]
enum Feed {
    /// Through a framer in 37-byte pieces, without a digest hook.
    Parsed,
    /// The same, the framer digesting (as `--stdin` does).
    Digested,
    /// Each message as a slot's, its LSN the number text input would give it (ingest digests
    /// them itself).
    Slot,
}

/// What ingest made of `text` fed as `feed` says: every WAL record of every segment, the last
/// batch (its steps, counts and memory), how many frames the framer digested and how many
/// digested rows were parsed again.
fn ingested(text: &[u8], run: &DigestRun, feed: Feed) -> (Vec<String>, Vec<String>, usize, u64) {
    let dir = tempfile::tempdir().unwrap();
    let (wal, recovery) = Wal::open(dir.path()).unwrap();
    let limits = IngestLimits {
        segment_max_bytes: run.segment_max_bytes,
        segment_max_age: Duration::from_secs(3600),
        batch_max_memory: 1 << 20,
        spill_after: Duration::ZERO,
    };
    let queue = Arc::new(SealedQueue::default());
    let mut ingest = Ingest::new(wal, &recovery, (run.keys)(), limits, queue, Shutdown::new())
        .with_filter((run.filter)());
    let mut framer = Framer::new();
    if feed == Feed::Digested {
        framer = framer.with_digest(Box::new(crate::wal::digest::Digester::new((run.filter)())));
    }
    let mut digested = 0;
    if feed == Feed::Slot {
        // Whole messages, as a slot sends them (a value's newlines inside).
        let framed = Framer::new().push(text.to_vec()).unwrap();
        let raws = framed.frames().iter().map(|f| f.raw);
        let messages: Vec<SourcedMessage> = (1..)
            .zip(raws)
            .map(|(lsn, raw)| SourcedMessage {
                lsn: Lsn(lsn),
                raw: bytes::Bytes::copy_from_slice(raw),
            })
            .collect();
        for piece in messages.chunks(5) {
            ingest.ingest_sourced(piece).unwrap();
        }
    }
    let mut chunks: Vec<_> = text
        .chunks(37)
        .filter(|_| feed != Feed::Slot)
        .filter_map(|piece| framer.push(piece.to_vec()))
        .collect();
    chunks.extend(framer.finish().filter(|_| feed != Feed::Slot));
    for chunk in &chunks {
        digested += chunk
            .frames()
            .iter()
            .filter(|f| matches!(f.body, crate::source::decoding::Body::Digested(_)))
            .count();
        ingest.ingest_text(chunk).unwrap();
    }
    let mut steps = vec![format!(
        "changes {} memory {}",
        ingest.batcher.changes(),
        ingest.batcher.memory_used()
    )];
    let mut src = OpenSegmentSource {
        wal: &mut ingest.wal,
        reader: None,
    };
    let batch = ingest.batcher.take(&mut src).unwrap();
    for t in &batch.tables {
        steps.push(format!("{} received {:?}", t.qualified(), t.received));
        for step in &t.steps {
            steps.push(match step {
                crate::batch::Step::Load(l) => format!(
                    "load {:?} key {:?} changes {} mem {} rows {:?} subsets {:?}",
                    l.columns,
                    l.key,
                    l.changes,
                    l.mem,
                    l.rows.iter().collect::<Vec<_>>(),
                    l.subsets
                ),
                other => format!("{other:?}"),
            });
        }
    }
    ingest.wal.flush().unwrap();
    let mut records = Vec::new();
    for id in crate::wal::segment_ids(dir.path()).unwrap() {
        records.push(format!("segment {id}"));
        let path = dir.path().join(format!("{id:020}.wal"));
        let mut scanner = SegmentScanner::open(&path).unwrap();
        while let Next::Record(r) = scanner.next_record().unwrap() {
            records.push(format!("{:?} {} {:?}", r.kind, r.lsn.0, r.payload));
        }
    }
    (records, steps, digested, ingest.reparsed)
}

/// `records` from [`ingested`] without their LSNs.
fn without_lsns(records: &[String]) -> Vec<String> {
    let drop_lsn = |r: &String| {
        let mut words = r.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some(kind), Some(_lsn), Some(payload)) => format!("{kind} {payload}"),
            _ => r.clone(),
        }
    };
    records.iter().map(drop_lsn).collect()
}

/// Digesting row changes on the input thread changes nothing ingest writes or batches.
#[test]
fn digested_rows_give_the_same_wal_records_and_batch_as_parse_trees() {
    let run = DigestRun {
        filter: mix_filter,
        keys: KnownKeys::default,
        segment_max_bytes: 1 << 20,
    };
    let (records, steps, none, _) = ingested(DIGEST_MIX.as_bytes(), &run, Feed::Parsed);
    let (d_records, d_steps, digested, reparsed) =
        ingested(DIGEST_MIX.as_bytes(), &run, Feed::Digested);
    assert_eq!(none, 0);
    // Every INSERT and UPDATE without TOAST, an old key or the filter's exclusion.
    assert_eq!(digested, 19);
    // Parsed again: rows of a table whose key is not known yet (t's 6 until its old-key
    // UPDATE, k's 2 until its DELETE), then the first row under each new column list (ids 9
    // and 10) and the first after the TOAST update changed t's columns (id 11): 11. The other
    // 8 were indexed from their digests (in debug builds, checked against a parse).
    assert_eq!(reparsed, 11);
    assert_eq!(d_records, records);
    assert_eq!(d_steps, steps);
    // A slot's messages, digested by ingest itself: the same again (but for the LSNs: the
    // excluded table's row keeps one here).
    let (s_records, s_steps, _, s_reparsed) = ingested(DIGEST_MIX.as_bytes(), &run, Feed::Slot);
    assert_eq!(without_lsns(&s_records), without_lsns(&records));
    assert_eq!((s_steps, s_reparsed), (steps.clone(), 11));
    assert!(
        steps.iter().any(|s| s.contains("AddColumn")) && steps.iter().any(|s| s == "Truncate"),
        "{steps:#?}"
    );
}

/// The same with keys known from the start, a load's conflict, non-UTF-8 text, the default
/// filter and segments rotating.
#[test]
fn digested_rows_with_known_keys_across_segments_match_parse_trees() {
    let run = DigestRun {
        filter: TableFilter::default,
        keys: keyed,
        segment_max_bytes: 700,
    };
    let (records, steps, _, _) = ingested(DIGEST_KEYED, &run, Feed::Parsed);
    let (d_records, d_steps, digested, reparsed) = ingested(DIGEST_KEYED, &run, Feed::Digested);
    assert_eq!(digested, 11);
    // The first row of each table in each of the three segments (c and v in the first two, c in
    // the last); the other 6 from their digests.
    assert_eq!(reparsed, 5);
    assert_eq!(d_records, records);
    assert_eq!(d_steps, steps);
    let (s_records, s_steps, _, s_reparsed) = ingested(DIGEST_KEYED, &run, Feed::Slot);
    assert_eq!(
        (s_records, s_steps, s_reparsed),
        (records.clone(), steps.clone(), 5)
    );
    let segments = records.iter().filter(|r| r.starts_with("segment")).count();
    assert_eq!(segments, 3, "{records:#?}");
}

/// A slot's messages whose quoted values hold newlines are digested whole, with the same WAL
/// records and batch as parsed.
#[test]
fn slot_messages_spanning_lines_are_digested_as_they_parse() {
    let run = DigestRun {
        filter: TableFilter::default,
        keys: keyed,
        segment_max_bytes: 1 << 20,
    };
    let text = b"BEGIN 1\n\
        table public.v: INSERT: id[integer]:1 v[text]:'a\nb'\n\
        table public.v: INSERT: id[integer]:2 v[text]:'\r\n'\n\
        table public.v: UPDATE: id[integer]:1 v[text]:'c''\nd'\n\
        COMMIT 1\n";
    let (records, steps, _, _) = ingested(text, &run, Feed::Parsed);
    let (s_records, s_steps, _, reparsed) = ingested(text, &run, Feed::Slot);
    assert_eq!((s_records, s_steps), (records, steps));
    // Digested, all three: the first parsed again (its signature new to the batch), the others
    // indexed from their digests.
    assert_eq!(reparsed, 1);
}

/// A digest of a table ingest's own filter leaves out is not trusted: the row is filtered as
/// any other, not written.
#[test]
fn a_digest_of_a_table_the_filter_leaves_out_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut ingest = ingest_into(dir.path()).with_filter(mix_filter());
    let digester = crate::wal::digest::Digester::new(TableFilter::default());
    let mut framer = Framer::new().with_digest(Box::new(digester));
    let text = "BEGIN 1\ntable public.skip: INSERT: id[integer]:1\n\
        table public.t: INSERT: id[integer]:2\nCOMMIT 1\n";
    let chunk = framer.push(text.as_bytes().to_vec()).unwrap();
    ingest.ingest_text(&chunk).unwrap();
    ingest.wal.flush().unwrap();
    let mut scanner = SegmentScanner::open(ingest.wal.current_path().unwrap()).unwrap();
    let mut texts = Vec::new();
    while let Next::Record(r) = scanner.next_record().unwrap() {
        if r.kind == RecordKind::Change {
            texts.push(String::from_utf8_lossy(change::text_of(r.payload).unwrap()).into_owned());
        }
    }
    assert_eq!(texts, ["table public.t: INSERT: id[integer]:2"]);
}
