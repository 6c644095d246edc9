// The checks of the `parse` fuzz target, kept apart so that the main test binary compiles and
// runs them too (`tests/cases/decoding_props.rs`): `include!`d by both, so it names its imports
// and has no inner attributes.
use re_dms::source::decoding::{
    parse_message, Body, Digest, FramedChunk, Framer, MessageStream, RowDigest, Side,
};
use re_dms::source::filter::TableFilter;
use re_dms::wal::digest::{from_parse_tree, Digester};

/// (line, raw bytes, parsed ok?) for each frame or error the stream produced.
type Outcome = Vec<(u64, Vec<u8>, bool)>;

fn drain(s: &mut MessageStream, out: &mut Outcome, budget: &mut usize) {
    loop {
        assert!(*budget > 0, "the stream is not making progress");
        *budget -= 1;
        let before = s.buffered_len();
        match s.next_frame() {
            Ok(Some(f)) => {
                let again = parse_message(f.raw, f.line).expect("a framed message re-parses");
                assert_eq!(again, f.message);
                out.push((f.line, f.raw.to_vec(), true));
            }
            Ok(None) => return,
            Err(e) => {
                assert!(s.buffered_len() < before, "an error must skip input");
                out.push((e.line, Vec::new(), false));
            }
        }
    }
}

fn run(chunks: &[&[u8]]) -> Outcome {
    let mut budget = chunks.iter().map(|c| c.len()).sum::<usize>() + chunks.len() + 2;
    let mut s = MessageStream::new();
    let mut out = Vec::new();
    for chunk in chunks {
        s.push(chunk);
        drain(&mut s, &mut out, &mut budget);
    }
    s.finish();
    drain(&mut s, &mut out, &mut budget);
    assert_eq!(s.buffered_len(), 0);
    out
}

/// What a digest holds: (table name, WAL prefix).
fn digested(side: &Side, digest: &RowDigest) -> (String, Vec<u8>) {
    let name = side.name(digest).expect("a digest's table name is in its side buffer");
    let prefix = side.prefix(digest).expect("a digest's prefix is in its side buffer");
    (name.to_owned(), prefix.to_vec())
}

/// The chunk framer's frames, `--stdin`'s digest hook on it when `digest`: a digested frame
/// must be what its parse tree says.
fn run_framer(chunks: &[&[u8]], digest: bool) -> Outcome {
    fn collect(chunk: Option<FramedChunk>, out: &mut Outcome) {
        let Some(chunk) = chunk else { return };
        for f in chunk.frames() {
            let again = parse_message(f.raw, f.line).expect("a framed message re-parses");
            match &f.body {
                Body::Parsed(m) => assert_eq!(&again, m),
                Body::Digested(d) => assert_eq!(
                    from_parse_tree(f.raw, &TableFilter::default()),
                    Some(digested(chunk.side(), d)),
                    "a digest differs from its parse tree"
                ),
            }
            out.push((f.line, f.raw.to_vec(), true));
        }
        if let Some(e) = chunk.error() {
            out.push((e.line, Vec::new(), false));
        }
    }
    let mut framer = Framer::new();
    if digest {
        framer = framer.with_digest(Box::new(Digester::new(TableFilter::default())));
    }
    let mut out = Vec::new();
    for chunk in chunks {
        collect(framer.push(chunk.to_vec()), &mut out);
    }
    collect(framer.finish(), &mut out);
    out
}

/// Every check on one input.
pub fn check(data: &[u8]) {
    let _ = parse_message(data, 1);
    // Two chunks, split at the first byte's value.
    let split = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
    let (a, b) = data.split_at(split);
    let two = run(&[a, b]);
    let whole = run(&[data]);
    assert_eq!(two, whole, "framing depends on chunking");
    let upto_error = whole
        .iter()
        .position(|(_, _, ok)| !ok)
        .map_or(&whole[..], |i| &whole[..=i]);
    assert_eq!(run_framer(&[a, b], false), upto_error, "Framer and MessageStream differ");
    assert_eq!(run_framer(&[a, b], true), upto_error, "digesting Framer differs");
    // Each line twice through one digester: its own headers, then the ones kept.
    let mut digester = Digester::new(TableFilter::default());
    for line in data.split(|&b| b == b'\n').flat_map(|l| [l, l]) {
        let mut side = Side::default();
        let got = digester
            .digest(line, &mut side)
            .map(|(d, _)| digested(&side, &d));
        assert_eq!(got, from_parse_tree(line, &TableFilter::default()), "a digest differs");
    }
}
