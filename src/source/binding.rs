//! Which slot a WAL directory streams from: `<wal directory>/source.json`, written (and fsynced)
//! the first time the live source streams into that directory, checked at every start after.
//!
//! It is what tells "a first start, create the slot" from "the slot was dropped": re-creating a
//! dropped slot would start at the server's current position and skip every change made since
//! the drop, so a directory bound to a slot that is gone is a fatal error, never a re-create.
//! It also refuses a directory streamed from another slot, database or cluster (system id).
//!
//! ```json
//! {"slot": "re_dms", "database": "app", "system_id": "7312345678901234567"}
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const BINDING_FILE: &str = "source.json";

/// The slot, database and cluster a WAL directory streams from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotBinding {
    pub slot: String,
    pub database: String,
    /// `IDENTIFY_SYSTEM`'s system id: the cluster (a restored or re-initialised one differs).
    pub system_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BindingError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a slot binding: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The directory's binding, if it has one.
pub fn load(dir: &Path) -> Result<Option<SlotBinding>, BindingError> {
    let path = dir.join(BINDING_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| BindingError::Json { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(BindingError::Io { path, source }),
    }
}

/// Writes the binding durably (temporary file, fsync, rename, directory fsync).
pub fn save(dir: &Path, binding: &SlotBinding) -> Result<(), BindingError> {
    let path = dir.join(BINDING_FILE);
    let io_err = |source| BindingError::Io {
        path: path.clone(),
        source,
    };
    let json = serde_json::to_vec_pretty(binding).map_err(|source| BindingError::Json {
        path: path.clone(),
        source,
    })?;
    replace_durably(dir, BINDING_FILE, &json).map_err(io_err)
}

/// Writes `dir/name` so that a crash leaves the old or the new contents, never a mix: a
/// temporary file, fsync, rename over `name`, directory fsync.
pub(crate) fn replace_durably(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::create_dir_all(dir)?;
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_binding_loads_back_and_none_before() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let b = SlotBinding {
            slot: "re_dms".into(),
            database: "app".into(),
            system_id: "7312345678901234567".into(),
        };
        save(dir.path(), &b).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(b));
        std::fs::write(dir.path().join(BINDING_FILE), b"{").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("source.json"), "{err}");
    }
}
