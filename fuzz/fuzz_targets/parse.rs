//! Arbitrary bytes through the test_decoding parser and framers: nothing may panic, every framed
//! message must re-parse from its raw bytes to the same message, framing must not depend on how
//! the input was chunked, and the chunk framer `--stdin` uses (`Framer`) must give what the
//! stream gives, up to and including the stream's first error (where the framer stops). The
//! checks are in `parse_checks.rs`, which the main test suite also runs on the real captures.
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("parse_checks.rs");

fuzz_target!(|data: &[u8]| check(data));
