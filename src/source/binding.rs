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
    let tmp = dir.join(format!("{BINDING_FILE}.tmp"));
    let io_err = |source| BindingError::Io {
        path: path.clone(),
        source,
    };
    let json = serde_json::to_vec_pretty(binding).map_err(|source| BindingError::Json {
        path: path.clone(),
        source,
    })?;
    std::fs::create_dir_all(dir).map_err(io_err)?;
    let mut f = std::fs::File::create(&tmp).map_err(io_err)?;
    f.write_all(&json).map_err(io_err)?;
    f.sync_all().map_err(io_err)?;
    std::fs::rename(&tmp, &path).map_err(io_err)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err)
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
