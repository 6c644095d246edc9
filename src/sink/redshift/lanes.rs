//! Table lanes: one ordered lane per target table, all lanes concurrent.
//!
//! A segment is split into one job per target table (the source tables that load into it, in
//! manifest order: a partition and its parent share a lane). Each lane is two tasks joined by a
//! one-slot channel, so a table's next segment uploads to S3 while its current one merges:
//!
//! ```text
//! submit ──job──> upload task ──(cap 1)──> apply task ──done──> TableLanes::next_done
//! ```
//!
//! Invariants:
//! - a lane applies its jobs strictly in segment order; lanes never wait for one another, so a
//!   slow table holds back only itself (and WAL cleanup), not the other tables nor the source;
//! - at most `redshift.segments_in_flight` segments (default 4) have unfinished jobs (their CSV files are on disk,
//!   only their manifests in memory);
//! - after the stop signal a lane starts no job (it reports it not applied: its segment stays
//!   in the WAL); jobs already running finish or are interrupted at their next retry wait;
//! - a definite error stops its lane for the rest of the run: the lane reports its later jobs as
//!   not applied without touching S3 or Redshift, so their segments stay in the WAL, and the
//!   other lanes go on; a fatal error ends the run;
//! - a segment counts as loaded only when every one of its jobs was applied (or found in the
//!   ledger); the caller deletes WAL segments in order, so one stopped table keeps every later
//!   segment on disk until it is fixed and the daemon restarted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::load::{LoadError, RedshiftLoader};
use super::sql::TargetTable;
use crate::csv::manifest::TableManifest;
use crate::metrics;
use crate::pipeline::handoff::SegmentOutput;
use crate::sink::SegmentDone;

/// How deep the Redshift path overlaps (`[redshift] segments_in_flight`, `uploads_ahead`).
#[derive(Debug, Clone, Copy)]
pub struct LaneLimits {
    /// Segments whose jobs may be unfinished at once.
    pub segments_in_flight: usize,
    /// Per lane, uploaded jobs that may wait for the merge.
    pub uploads_ahead: usize,
}

/// Finished jobs waiting for the scheduler; it drains them first in its loop.
const DONE_CHANNEL: usize = 1024;

/// One lane's share of one segment.
struct Job {
    out: Arc<SegmentOutput>,
    /// The lane (its first target table).
    lane: TargetTable,
    tables: Vec<LaneTable>,
}

/// One source table of a job, with where it loads.
struct LaneTable {
    manifest: TableManifest,
    target: TargetTable,
    /// Old target tables to rename to `target` first (`table_rename`).
    renamed_from: Vec<TargetTable>,
}

/// A job after its upload: the S3 URL of each file, per table (same order as `job.tables`).
struct Uploaded {
    job: Job,
    urls: Result<Vec<BTreeMap<String, String>>, LoadError>,
}

enum Outcome {
    Applied,
    /// The lane stopped earlier; the job was not attempted.
    Skipped,
}

struct Done {
    segment: u64,
    lane: String,
    result: Result<Outcome, LoadError>,
}

struct Pending {
    out: Arc<SegmentOutput>,
    remaining: usize,
    loaded: bool,
}

/// The Redshift target's scheduler: hands jobs to lanes, collects their results.
pub struct TableLanes {
    loader: Arc<RedshiftLoader>,
    limits: LaneLimits,
    lanes: BTreeMap<TargetTable, mpsc::Sender<Job>>,
    /// The lane of each target table seen this run: its own, or (a renamed table) the lane of
    /// its old name, so that its rename waits for the old name's earlier segments.
    routes: BTreeMap<TargetTable, TargetTable>,
    /// Every lane task: none ends while the lanes live, so one that does has failed (panicked).
    tasks: JoinSet<()>,
    pending: BTreeMap<u64, Pending>,
    done_tx: mpsc::Sender<Done>,
    done_rx: mpsc::Receiver<Done>,
    /// Stopped lanes (target table) and the error that stopped each.
    stopped: BTreeMap<String, String>,
    /// Every source table seen this run, with its catalog parent: checked for collisions.
    sources: BTreeMap<(String, String), Option<(String, String)>>,
}

impl TableLanes {
    pub fn new(loader: Arc<RedshiftLoader>, limits: LaneLimits) -> Self {
        let (done_tx, done_rx) = mpsc::channel(DONE_CHANNEL);
        Self {
            loader,
            limits,
            lanes: BTreeMap::new(),
            routes: BTreeMap::new(),
            tasks: JoinSet::new(),
            pending: BTreeMap::new(),
            done_tx,
            done_rx,
            stopped: BTreeMap::new(),
            sources: BTreeMap::new(),
        }
    }

    /// Whether another segment may be submitted.
    pub fn has_room(&self) -> bool {
        self.pending.len() < self.limits.segments_in_flight
    }

    /// No segment has unfinished jobs.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Splits `out` into per-lane jobs and queues them. Call only when [`Self::has_room`].
    pub async fn submit(&mut self, out: SegmentOutput) -> Result<(), LoadError> {
        let out = Arc::new(out);
        if !out.manifest.tables.is_empty() {
            self.loader.refresh_catalog(&out.manifest).await;
        }
        let tables = self.lane_tables(&out)?;
        // Keyed by the lane itself, not its text: `"a.b".c` and `a."b.c"` are two lanes.
        let mut jobs: BTreeMap<TargetTable, Vec<LaneTable>> = BTreeMap::new();
        for t in tables {
            let lane = match self.routes.get(&t.target) {
                Some(lane) => lane.clone(),
                None => {
                    let lane = t
                        .renamed_from
                        .iter()
                        .find_map(|old| self.routes.get(old))
                        .unwrap_or(&t.target)
                        .clone();
                    self.routes.insert(t.target.clone(), lane.clone());
                    lane
                }
            };
            jobs.entry(lane).or_default().push(t);
        }
        self.pending.insert(
            out.segment,
            Pending {
                out: Arc::clone(&out),
                remaining: jobs.len(),
                loaded: true,
            },
        );
        for (target, tables) in jobs {
            let lane = target.sql();
            let tx = match self.lanes.get(&target) {
                Some(tx) => tx.clone(),
                None => {
                    let tx = spawn_lane(
                        &mut self.tasks,
                        Arc::clone(&self.loader),
                        &lane,
                        self.done_tx.clone(),
                        self.limits,
                    );
                    self.lanes.insert(target.clone(), tx.clone());
                    tx
                }
            };
            let job = Job {
                out: Arc::clone(&out),
                lane: target,
                tables,
            };
            tx.send(job)
                .await
                .map_err(|_| LoadError::fatal_text(format!("the lane of table {lane} ended")))?;
        }
        Ok(())
    }

    /// The segment's tables with their targets (checked for collisions when new), a renamed
    /// table's old targets, renames last: a table of the same segment still loading under the
    /// old name goes first.
    fn lane_tables(&mut self, out: &SegmentOutput) -> Result<Vec<LaneTable>, LoadError> {
        let mut tables = Vec::with_capacity(out.manifest.tables.len());
        let mut new_source = false;
        for table in &out.manifest.tables {
            let (target, parent) = self.loader.target_of(table);
            let source = (table.schema.clone(), table.name.clone());
            if self.sources.get(&source) != Some(&parent) {
                if self.loader.catalog_knows(table) == Some(false) {
                    tracing::warn!(
                        table = %table.qualified(),
                        target = %target,
                        "table not in the source catalog (created after the last read, or dropped or renamed since): typmod-less types, and a partition loads into a table of its own"
                    );
                }
                self.sources.insert(source, parent);
                new_source = true;
            }
            // Every time, not once per target: a table may be renamed back and forth.
            let renamed_from = self.loader.renamed_from(table, &target);
            tables.push(LaneTable {
                manifest: table.clone(),
                target,
                renamed_from,
            });
        }
        if new_source {
            // Two source names folding to one target table would merge two tables' rows.
            self.loader
                .check_collisions(self.sources.iter().map(|((s, t), p)| {
                    (
                        s.as_str(),
                        t.as_str(),
                        p.as_ref().map(|(ps, pt)| (ps.as_str(), pt.as_str())),
                    )
                }))?;
        }
        tables.sort_by_key(|t| !t.renamed_from.is_empty());
        Ok(tables)
    }

    /// The next segment whose jobs have all finished (any order). Cancel-safe. Pending forever
    /// when [`Self::is_idle`]. A fatal error of any lane is returned as the error.
    pub async fn next_done(&mut self) -> Result<SegmentDone, LoadError> {
        loop {
            let finished = self
                .pending
                .iter()
                .find(|(_, p)| p.remaining == 0)
                .map(|(s, _)| *s);
            if let Some(segment) = finished {
                let p = self.pending.remove(&segment).expect("found above");
                return Ok(SegmentDone {
                    out: p.out,
                    loaded: p.loaded,
                });
            }
            let done = tokio::select! {
                biased;
                // A lane task ended: only a panic does that while the lanes live.
                Some(ended) = self.tasks.join_next() => {
                    let why = match ended {
                        Err(e) => e.to_string(),
                        Ok(()) => "ended early".to_string(),
                    };
                    return Err(LoadError::fatal_text(format!("a table lane failed: {why}")));
                }
                done = self.done_rx.recv() => match done {
                    Some(done) => done,
                    None => return Err(LoadError::fatal_text("every table lane ended")),
                },
            };
            let pending = self.pending.get_mut(&done.segment).ok_or_else(|| {
                LoadError::fatal_text(format!("a lane finished unknown segment {}", done.segment))
            })?;
            pending.remaining -= 1;
            match done.result {
                Ok(Outcome::Applied) => {}
                // Not attempted (the lane stopped earlier), or left for the next start (the stop
                // signal came while it waited to retry): it stays in the WAL.
                Ok(Outcome::Skipped) | Err(LoadError::Interrupted { .. }) => pending.loaded = false,
                Err(e @ LoadError::Definite { .. }) => {
                    pending.loaded = false;
                    metrics::TABLES_STOPPED.inc();
                    metrics::error("redshift", crate::retry::ErrorClass::Definite);
                    metrics::health::health().table_stopped(&done.lane, &e.to_string());
                    crate::report::table_stopped(&done.lane, done.segment, &e.to_string());
                    tracing::error!(
                        table = %done.lane,
                        segment = done.segment,
                        error = %e,
                        "table stopped: its segments stay in the WAL; the other tables go on"
                    );
                    self.stopped.insert(done.lane, e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Lanes stopped by a definite error, with the error, by target table.
    pub fn stopped(&self) -> &BTreeMap<String, String> {
        &self.stopped
    }
}

/// Starts a lane's two tasks; returns where its jobs go.
fn spawn_lane(
    tasks: &mut JoinSet<()>,
    loader: Arc<RedshiftLoader>,
    lane: &str,
    done_tx: mpsc::Sender<Done>,
    limits: LaneLimits,
) -> mpsc::Sender<Job> {
    let (job_tx, mut job_rx) = mpsc::channel::<Job>(limits.segments_in_flight + 1);
    let (up_tx, mut up_rx) = mpsc::channel::<Uploaded>(limits.uploads_ahead);
    // Set by the apply task when the lane stops, so the upload task stops uploading.
    let stopped = Arc::new(AtomicBool::new(false));

    let up_loader = Arc::clone(&loader);
    let up_stopped = Arc::clone(&stopped);
    let span = tracing::info_span!("upload", table = %lane);
    tasks.spawn(
        async move {
            while let Some(job) = job_rx.recv().await {
                // A stopped lane, or the drain phase: nothing new starts.
                let urls = if up_stopped.load(Ordering::Acquire) || up_loader.stop().is_triggered()
                {
                    Ok(Vec::new())
                } else {
                    upload_job(&up_loader, &job).await
                };
                if up_tx.send(Uploaded { job, urls }).await.is_err() {
                    return;
                }
            }
        }
        .instrument(span),
    );

    let lane_name = lane.to_string();
    tasks.spawn(async move {
        while let Some(Uploaded { job, urls }) = up_rx.recv().await {
            let segment = job.out.segment;
            let span = tracing::info_span!("load", table = %lane_name, segment);
            let result = if stopped.load(Ordering::Acquire) || loader.stop().is_triggered() {
                Ok(Outcome::Skipped)
            } else {
                apply_job(&loader, job, urls).instrument(span).await
            };
            if matches!(result, Err(LoadError::Definite { .. })) {
                stopped.store(true, Ordering::Release);
            }
            let done = Done {
                segment,
                lane: lane_name.clone(),
                result,
            };
            if done_tx.send(done).await.is_err() {
                return;
            }
        }
    });
    job_tx
}

async fn upload_job(
    loader: &RedshiftLoader,
    job: &Job,
) -> Result<Vec<BTreeMap<String, String>>, LoadError> {
    let mut all = Vec::with_capacity(job.tables.len());
    for table in &job.tables {
        all.push(loader.upload_table(&job.out, &table.manifest).await?);
    }
    Ok(all)
}

async fn apply_job(
    loader: &RedshiftLoader,
    job: Job,
    urls: Result<Vec<BTreeMap<String, String>>, LoadError>,
) -> Result<Outcome, LoadError> {
    let urls = urls?;
    if urls.len() != job.tables.len() {
        return Err(LoadError::fatal_text(format!(
            "lane {}: {} tables but {} upload results",
            job.lane,
            job.tables.len(),
            urls.len()
        )));
    }
    for (t, urls) in job.tables.iter().zip(&urls) {
        loader
            .apply_table(&job.out, &t.manifest, &t.target, &t.renamed_from, urls)
            .await?;
    }
    Ok(Outcome::Applied)
}
