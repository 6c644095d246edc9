//! The `local` target: each segment's gzipped CSV files and its `manifest.json` in
//! `<target.directory>/<segment:020>/`.
//!
//! Delivery moves the spool directory into place, fsyncs the files (several at once), then
//! writes the manifest (temp file + rename + directory fsync): a segment directory with a
//! `manifest.json` is complete. Re-delivering a segment replaces its directory, so applying
//! twice changes nothing; a directory holding a segment of another WAL lineage (a new WAL
//! directory, another instance) is never replaced: that is an error naming both lineages.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::csv::manifest::MANIFEST_FILE;
use crate::csv::spool_dir;
use crate::pipeline::handoff::SegmentOutput;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing manifest: {0}")]
    Json(#[from] serde_json::Error),
    #[error("delivery task failed: {0}")]
    Join(String),
    #[error(
        "{path} holds segment {segment} of another WAL directory (lineage {found}, this one's is \
         {ours}); it is not replaced: point target.directory elsewhere, or move that output away"
    )]
    OtherLineage {
        path: PathBuf,
        segment: u64,
        found: String,
        ours: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LocalError + '_ {
    move |source| LocalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct LocalTarget {
    dir: PathBuf,
}

impl LocalTarget {
    pub fn new(dir: &Path) -> Result<Self, LocalError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// A segment directory already delivered is replaced only by the same WAL lineage's
    /// segment (a re-delivery); another WAL directory's segment of the same id would destroy
    /// output someone may not have read yet.
    fn check_lineage(&self, dest: &Path, out: &SegmentOutput) -> Result<(), LocalError> {
        let Ok(bytes) = std::fs::read(dest.join(MANIFEST_FILE)) else {
            return Ok(());
        };
        let found = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("lineage")?.as_str().map(str::to_string))
            .unwrap_or_else(|| "none".to_string());
        let ours = out.manifest.lineage.to_string();
        if found == ours {
            return Ok(());
        }
        Err(LocalError::OtherLineage {
            path: dest.to_path_buf(),
            segment: out.segment,
            found,
            ours,
        })
    }

    pub fn deliver(&self, out: &SegmentOutput) -> Result<(), LocalError> {
        let dest = spool_dir(&self.dir, out.segment);
        self.check_lineage(&dest, out)?;
        if dest.exists() {
            std::fs::remove_dir_all(&dest).map_err(io_err(&dest))?;
        }
        if std::fs::rename(&out.dir, &dest).is_err() {
            // Another filesystem: copy, then drop the spool.
            std::fs::create_dir_all(&dest).map_err(io_err(&dest))?;
            for entry in std::fs::read_dir(&out.dir).map_err(io_err(&out.dir))? {
                let entry = entry.map_err(io_err(&out.dir))?;
                let to = dest.join(entry.file_name());
                std::fs::copy(entry.path(), &to).map_err(io_err(&to))?;
            }
            std::fs::remove_dir_all(&out.dir).map_err(io_err(&out.dir))?;
        }
        sync_files(&dest)?;
        let tmp = dest.join(format!("{MANIFEST_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(&out.manifest)?;
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&json)
            .and_then(|()| f.sync_all())
            .map_err(io_err(&tmp))?;
        let manifest = dest.join(MANIFEST_FILE);
        std::fs::rename(&tmp, &manifest).map_err(io_err(&manifest))?;
        for d in [&dest, &self.dir] {
            File::open(d)
                .and_then(|f| f.sync_all())
                .map_err(io_err(d))?;
        }
        Ok(())
    }
}

/// Files fsynced at once: a segment has one or two per table.
const PARALLEL_SYNCS: usize = 16;

/// fsyncs every file in `dir`, up to [`PARALLEL_SYNCS`] at a time: each waits on the disk, and
/// the filesystem's journal commits concurrent ones together, so a segment's files take about
/// one fsync's time, not one per file. The first failure (in directory order, within the
/// first group that has one) is returned, after the rest of its group; later groups are not
/// synced, as the delivery has failed.
fn sync_files(dir: &Path) -> Result<(), LocalError> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        paths.push(entry.map_err(io_err(dir))?.path());
    }
    let sync = |path: &PathBuf| {
        File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(io_err(path))
    };
    for group in paths.chunks(PARALLEL_SYNCS) {
        let results: Vec<Result<(), LocalError>> = std::thread::scope(|s| {
            let started: Vec<_> = group
                .iter()
                .map(|p| {
                    let thread = std::thread::Builder::new().name("re_dms-fsync".into());
                    (p, thread.spawn_scoped(s, move || sync(p)))
                })
                .collect();
            started
                .into_iter()
                .map(|(p, started)| match started {
                    // No thread to be had: this one syncs it.
                    Err(_) => sync(p),
                    Ok(h) => h.join().unwrap_or_else(|_| {
                        Err(LocalError::Join(format!("fsync of {}", p.display())))
                    }),
                })
                .collect()
        });
        results.into_iter().collect::<Result<(), LocalError>>()?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::csv::manifest::{Manifest, MANIFEST_VERSION};
    use crate::lsn::Lsn;
    use crate::wal::lineage::Lineage;

    fn output(spool: &Path, segment: u64) -> SegmentOutput {
        SegmentOutput {
            segment,
            dir: spool.to_path_buf(),
            manifest: Manifest {
                version: MANIFEST_VERSION,
                segment,
                lineage: Lineage::generate().unwrap(),
                legacy: false,
                first_lsn: Lsn(1),
                last_lsn: Lsn(2),
                changes: 0,
                tables: Vec::new(),
            },
            complete: true,
        }
    }

    /// A spool directory `name` under `parent` holding `files` one-byte files.
    fn spool_of_files(parent: &Path, name: &str, files: usize) -> PathBuf {
        let spool = parent.join(name);
        std::fs::create_dir(&spool).unwrap();
        for i in 0..files {
            std::fs::write(spool.join(format!("t{i}.csv.gz")), [i as u8]).unwrap();
        }
        spool
    }

    /// More files than are synced at once all arrive; a file that cannot be synced (here a
    /// dangling link) fails the delivery by its path, and no manifest marks it complete.
    #[test]
    fn every_file_is_synced_and_a_failed_sync_names_its_file() {
        let tmp = tempfile::tempdir().unwrap();
        let target = LocalTarget::new(&tmp.path().join("out")).unwrap();
        let spool = spool_of_files(tmp.path(), "spool1", PARALLEL_SYNCS + 3);
        target.deliver(&output(&spool, 1)).unwrap();
        let dest = spool_dir(&tmp.path().join("out"), 1);
        assert_eq!(
            std::fs::read_dir(&dest).unwrap().count(),
            PARALLEL_SYNCS + 4,
            "every file and the manifest"
        );

        let spool = spool_of_files(tmp.path(), "spool2", PARALLEL_SYNCS + 3);
        std::os::unix::fs::symlink(tmp.path().join("gone"), spool.join("broken.csv.gz")).unwrap();
        let err = target.deliver(&output(&spool, 2)).unwrap_err();
        assert!(
            matches!(&err, LocalError::Io { path, .. } if path.ends_with("broken.csv.gz")),
            "{err}"
        );
        let dest = spool_dir(&tmp.path().join("out"), 2);
        assert!(!dest.join(MANIFEST_FILE).exists());
    }
}
