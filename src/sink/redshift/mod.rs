//! The Redshift target: S3 upload, then per table `COPY` into staging tables and a set-based
//! merge in one transaction, recorded in the `re_dms.applied` ledger (exactly-once).
//!
//! By job:
//! - `lanes`: one ordered lane per target table, all lanes concurrent, segments pipelined;
//! - `load`: the loader a lane calls: uploads one table-segment and applies it, through the one
//!   retry policy ([`crate::retry`]);
//! - `upload`: the S3 uploader (multipart, digests, idempotent re-upload);
//! - `sql`: the statements, pure: naming and quoting, COPY, the ledger's, the plan of one
//!   table-segment, VARCHAR widening;
//! - `pool`: Redshift sessions (connections from [`crate::connection`]) and answer deadlines;
//! - `ledger`: the ledger at run time (create, upgrade, look up);
//! - `apply`: one table-segment's schema steps and load transactions;
//! - `table_rename`: a source table's rename followed in the warehouse (`RENAME TO`);
//! - `quarantine`: rows Redshift rejects kept aside (dead letter + `re_dms.rejected`) for tables
//!   with `on_reject = "quarantine"`.
//!
//! `preflight` is what `re_dms validate` checks here.

mod apply;
pub mod lanes;
mod ledger;
pub mod load;
pub mod pool;
mod quarantine;
pub mod sql;
mod table_rename;
pub mod upload;

use crate::config::Config;

/// The S3 bucket accepts a put/delete under the prefix; Redshift accepts a connection and a query.
pub fn preflight(config: &Config) -> (Result<String, String>, Result<String, String>) {
    use crate::connection as tls;
    use crate::error_chain;
    use upload::Uploader;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return (Err(e.to_string()), Err(e.to_string())),
    };
    rt.block_on(async {
        let s3 = async {
            let up = Uploader::from_config(&config.s3, 1)
                .await
                .map_err(|e| error_chain(&e))?;
            up.check().await.map_err(|e| error_chain(&e))?;
            Ok(format!(
                "bucket {:?} writable under {:?}",
                config.s3.bucket,
                up.prefix()
            ))
        };
        let rs = async {
            let c = tls::connect(&config.redshift.connection)
                .await
                .map_err(|e| error_chain(&e))?;
            let row = c
                .query_one("SELECT version()", &[])
                .await
                .map_err(|e| crate::connection::pg_detail(&e))?;
            let version: String = row.try_get(0).unwrap_or_default();
            Ok(format!(
                "connected to {} ({version})",
                tls::redact(&config.redshift.connection)
            ))
        };
        let s3 = tokio::time::timeout(std::time::Duration::from_secs(60), s3)
            .await
            .unwrap_or_else(|_| Err("timed out after 60 s".into()));
        let rs = tokio::time::timeout(std::time::Duration::from_secs(60), rs)
            .await
            .unwrap_or_else(|_| Err("timed out after 60 s".into()));
        (s3, rs)
    })
}
