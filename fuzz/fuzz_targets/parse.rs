//! Arbitrary bytes through the test_decoding parser and framer: nothing may panic, every framed
//! message must re-parse from its raw bytes to the same message, and framing must not depend on
//! how the input was chunked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use re_dms::decoding::{parse_message, MessageStream};

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

fuzz_target!(|data: &[u8]| {
    let _ = parse_message(data, 1);
    // Two chunks, split at the first byte's value.
    let split = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
    let (a, b) = data.split_at(split);
    let two = run(&[a, b]);
    let whole = run(&[data]);
    assert_eq!(two, whole, "framing depends on chunking");
});
