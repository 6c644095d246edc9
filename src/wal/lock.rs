//! The WAL directory's lock: one process per WAL directory (file `lock`, `flock`-style, released
//! by the kernel when the process ends, however it ends).

use std::path::Path;

use super::WalError;

/// Name of the lock file inside the WAL directory.
pub const LOCK_FILE: &str = "lock";

/// Holds the WAL directory's lock for as long as it lives.
#[derive(Debug)]
pub struct WalLock {
    _file: std::fs::File,
}

/// Creates `dir` if needed and locks it; another process holding it is [`WalError::Locked`].
pub fn lock_dir(dir: &Path) -> Result<WalLock, WalError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WalError::Dir { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(WalLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(WalError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(io(&path)(source)),
    }
}
