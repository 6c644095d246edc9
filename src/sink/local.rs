//! The `local` target: each segment's gzipped CSV files and its `manifest.json` in
//! `<target.directory>/<segment:020>/`.
//!
//! Delivery moves the spool directory into place, fsyncs the files, then writes the manifest
//! (temp file + rename + directory fsync): a segment directory with a `manifest.json` is
//! complete. Re-delivering a segment replaces its directory, so applying twice changes nothing;
//! a directory holding a segment of another WAL lineage (a new WAL directory, another instance)
//! is never replaced: that is an error naming both lineages.

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
        for entry in std::fs::read_dir(&dest).map_err(io_err(&dest))? {
            let path = entry.map_err(io_err(&dest))?.path();
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io_err(&path))?;
        }
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
