//! The test cases, one module per topic. Modules that need the local stack (`tests/stack.sh`:
//! PostgreSQL, redshift-sim, moto) or PostgreSQL server binaries are compiled with the
//! `stack-tests` feature only; so are the tests of mixed modules that need them.

mod decoding_props;
mod fuzz_checks;
mod recovery;
mod replay_fixtures;
mod s3_upload;
mod source_catalog;
mod spill_rebatch;

#[cfg(feature = "stack-tests")]
mod exactly_once;
#[cfg(feature = "stack-tests")]
mod live;
#[cfg(feature = "stack-tests")]
mod live_redshift;
#[cfg(feature = "stack-tests")]
mod observe;
#[cfg(feature = "stack-tests")]
mod redshift_bytea;
#[cfg(feature = "stack-tests")]
mod redshift_catalog;
#[cfg(feature = "stack-tests")]
mod redshift_e2e;
#[cfg(feature = "stack-tests")]
mod redshift_outage;
#[cfg(feature = "stack-tests")]
mod redshift_statements;
#[cfg(feature = "stack-tests")]
mod redshift_tls;
#[cfg(feature = "stack-tests")]
mod replication;
#[cfg(feature = "stack-tests")]
mod service;
#[cfg(feature = "stack-tests")]
mod stack_selftest;
