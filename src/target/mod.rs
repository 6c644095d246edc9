//! Targets: where a segment's files go, and when a segment counts as loaded.
//!
//! A target receives [`SegmentOutput`]s in segment order and confirms each one once every table
//! in it is durably applied; only then does the pipeline delete the WAL segment. Delivering the
//! same segment twice must change nothing (after a crash between "applied" and "deleted").
//!
//! - `local`: gzipped CSV files + `manifest.json` per segment under a directory, no network;
//! - `redshift`: S3 upload + COPY into staging tables + set-based merge, per table (`redshift/`).

pub mod local;
pub mod redshift;

use crate::config::{Config, TargetKind};
use crate::csv_out::SegmentOutput;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("local target: {0}")]
    Local(#[from] local::LocalError),
    #[error(transparent)]
    Redshift(#[from] redshift::load::LoadError),
}

/// The configured target.
pub enum Target {
    Local(local::LocalTarget),
    Redshift(std::sync::Arc<redshift::load::RedshiftLoader>),
}

impl Target {
    /// Opens the configured target; for Redshift this connects, checks the bucket and creates
    /// the ledger (failures there are fatal).
    pub async fn from_config(config: &Config) -> Result<Self, TargetError> {
        match config.target.kind {
            TargetKind::Local => Ok(Target::Local(local::LocalTarget::new(
                &config.target.directory,
            )?)),
            TargetKind::Redshift => Ok(Target::Redshift(
                redshift::load::RedshiftLoader::connect(config).await?,
            )),
        }
    }

    /// Applies one segment; returns once it is durable in the target.
    pub async fn deliver(&mut self, out: &SegmentOutput) -> Result<(), TargetError> {
        match self {
            Target::Local(t) => {
                let t = t.clone();
                let out = out.clone();
                tokio::task::spawn_blocking(move || t.deliver(&out))
                    .await
                    .map_err(|e| local::LocalError::Join(e.to_string()))??;
                Ok(())
            }
            Target::Redshift(r) => Ok(r.deliver(out).await?),
        }
    }
}
