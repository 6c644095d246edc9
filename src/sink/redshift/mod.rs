//! The Redshift target: S3 upload, then per table `COPY` into staging tables and a set-based
//! merge in one transaction, recorded in the `re_dms.applied` ledger (exactly-once).
//!
//! - `sql`: names, types and the statements of one table-segment (pure);
//! - `upload`: the S3 uploader; `tls`: Redshift connections; `classify`: every error as
//!   transient / definite / fatal;
//! - `load`: uploads and applies one table-segment; `lanes`: one ordered lane per target table,
//!   all lanes concurrent, segments pipelined; `quarantine`: rows Redshift rejects kept aside
//!   (dead letter + `re_dms.rejected`) for tables with `on_reject = "quarantine"`.
pub mod lanes;
pub mod load;
mod quarantine;
pub mod sql;
pub mod upload;
