//! Failures and what to do about them: every error is classified as transient (retry with
//! backoff), definite (this table-segment cannot load as it is; stop the table) or fatal (stop
//! the process), in `classify`, the one place that knows.

pub mod classify;

pub use classify::{backoff, ErrorClass};
