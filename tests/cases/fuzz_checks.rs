//! The `parse` fuzz target's checks (`fuzz/fuzz_targets/parse_checks.rs`), compiled and run here
//! too, so they cannot rot while nobody runs `cargo fuzz`: on the real captures, cut at many
//! points (messages cut in half, quoted values cut open, a first byte that splits anywhere).
use std::path::Path;

mod checks {
    include!("../../fuzz/fuzz_targets/parse_checks.rs");
}

#[test]
fn the_fuzz_checks_hold_on_the_captures_cut_anywhere() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for name in ["capture_plain.txt", "capture_timestamps.txt"] {
        let data = std::fs::read(fixtures.join(name)).expect("fixture");
        for cut in (0..data.len()).step_by(997) {
            checks::check(&data[cut..]);
            checks::check(&data[..cut]);
        }
    }
}
