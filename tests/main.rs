//! The integration tests: one test binary, so the harness compiles once and every helper is
//! used somewhere. `harness` holds what the tests share (the `ReDms` builder that runs the
//! binary, the local stack, the target model, generated workloads); `cases` holds the tests,
//! one module per topic.
//!
//! `cargo test` alone runs what needs nothing started: the parser's property tests, the replay
//! proof and crash tests against the local target, the spill rebuild. The `stack-tests` feature
//! adds the tests against the local stack (`tests/stack.sh`: PostgreSQL, redshift-sim, moto),
//! and `failpoints` (a re_dms built with fault points) the tests that stop it at one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cases;
mod harness;
