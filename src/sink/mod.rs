//! The sink stage: where a segment's files go, and when a segment counts as loaded.
//!
//! A target (the `[target]` config section) receives [`SegmentOutput`]s in segment order and
//! reports each one done (in any order) with whether every table in it is durably applied;
//! [`deliver`] (the stage's run loop) deletes WAL segments in order, each once it and all before
//! it are loaded. Delivering the same segment twice must change nothing (after a crash between
//! "applied" and "deleted").
//!
//! - `deliver`: the run loop: ordering, backpressure, WAL cleanup, the drain phase;
//! - `local`: gzipped CSV files + `manifest.json` per segment under a directory, no network;
//! - `redshift`: S3 upload + COPY into staging tables + set-based merge, per table (`redshift/`).
//!
//! Nothing outside this folder uses `redshift` directly: the pipeline sees [`Target`] only.

pub mod deliver;
pub mod local;
pub mod redshift;

use std::sync::Arc;

use crate::config::{Config, TargetKind};
use crate::pipeline::handoff::SegmentOutput;
use crate::shutdown::Shutdown;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("local target: {0}")]
    Local(#[from] local::LocalError),
    #[error(transparent)]
    Redshift(#[from] redshift::load::LoadError),
}

/// `re_dms validate`'s checks of the Redshift target, by name: the S3 bucket accepts a put and
/// a delete under the prefix; Redshift accepts a connection and a query.
pub fn preflight(config: &Config) -> Vec<(&'static str, Result<String, String>)> {
    let (s3, redshift) = redshift::preflight(config);
    vec![("s3", s3), ("redshift", redshift)]
}

/// The configured target.
pub enum Target {
    /// Delivers one segment at a time; finished segments wait in `done` for the caller.
    Local {
        target: local::LocalTarget,
        done: std::collections::VecDeque<SegmentDone>,
    },
    Redshift(redshift::lanes::TableLanes),
}

/// A segment whose tables have all finished.
#[derive(Debug)]
pub struct SegmentDone {
    pub out: Arc<SegmentOutput>,
    /// Every table of the segment is in the warehouse: its WAL segment may go (in order).
    pub loaded: bool,
}

impl Target {
    /// Opens the configured target; for Redshift this connects, checks the bucket and creates
    /// the ledger (an endpoint down for now is a warning, any other failure fatal). The local
    /// target ignores the source catalog.
    pub async fn from_config(
        config: &Config,
        catalog: Arc<crate::source::catalog::SourceCatalog>,
        stop: &Shutdown,
    ) -> Result<Self, TargetError> {
        match config.target.kind {
            TargetKind::Local => Ok(Target::Local {
                target: local::LocalTarget::new(&config.target.directory)?,
                done: std::collections::VecDeque::new(),
            }),
            TargetKind::Redshift => {
                let limits = redshift::lanes::LaneLimits {
                    segments_in_flight: config.redshift.segments_in_flight,
                    uploads_ahead: config.redshift.uploads_ahead,
                };
                let loader =
                    redshift::load::RedshiftLoader::connect(config, catalog, stop.clone()).await?;
                Ok(Target::Redshift(redshift::lanes::TableLanes::new(
                    loader, limits,
                )))
            }
        }
    }

    /// Whether another segment may be submitted now.
    pub fn has_room(&self) -> bool {
        match self {
            Target::Local { .. } => true,
            Target::Redshift(lanes) => lanes.has_room(),
        }
    }

    /// No submitted segment is unfinished.
    pub fn is_idle(&self) -> bool {
        match self {
            Target::Local { done, .. } => done.is_empty(),
            Target::Redshift(lanes) => lanes.is_idle(),
        }
    }

    /// Starts applying one segment (the local target finishes it here).
    pub async fn submit(&mut self, out: SegmentOutput) -> Result<(), TargetError> {
        match self {
            Target::Local { target, done } => {
                let t = target.clone();
                let out = Arc::new(out);
                let o = Arc::clone(&out);
                tokio::task::spawn_blocking(move || t.deliver(&o))
                    .await
                    .map_err(|e| local::LocalError::Join(e.to_string()))??;
                done.push_back(SegmentDone { out, loaded: true });
                Ok(())
            }
            Target::Redshift(lanes) => Ok(lanes.submit(out).await?),
        }
    }

    /// The next finished segment, in any order; cancel-safe; pending forever when idle.
    pub async fn next_done(&mut self) -> Result<SegmentDone, TargetError> {
        match self {
            Target::Local { done, .. } => match done.pop_front() {
                Some(d) => Ok(d),
                None => std::future::pending().await,
            },
            Target::Redshift(lanes) => Ok(lanes.next_done().await?),
        }
    }

    /// After the last segment: the error naming every table a definite error stopped, if any.
    pub fn stopped_error(&self) -> Option<TargetError> {
        match self {
            Target::Local { .. } => None,
            Target::Redshift(lanes) if lanes.stopped().is_empty() => None,
            Target::Redshift(lanes) => Some(TargetError::Redshift(
                redshift::load::LoadError::Stopped(lanes.stopped().values().cloned().collect()),
            )),
        }
    }
}
