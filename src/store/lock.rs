//! One writer per mirror across processes: an exclusive lock on
//! `<database>.lock`, held while a sync runs, so that two processes (a daemon
//! and a manual `--once`, say) never sync one mirror at once. Released when
//! dropped, or by the OS when the process dies.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// The held lock.
pub struct SyncLock {
    _file: File,
}

impl SyncLock {
    /// Takes the lock without waiting; the error says who holds it or why
    /// it cannot be taken.
    pub fn acquire(database: &Path) -> Result<SyncLock, String> {
        let path = lock_path(database);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| {
                format!(
                    "cannot open the lock file {}: {e}; check that its directory is writable",
                    path.display()
                )
            })?;
        match file.try_lock() {
            Ok(()) => Ok(SyncLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(format!(
                "another kommo-sync process is syncing {} right now; this sync is skipped",
                database.display()
            )),
            Err(TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
        }
    }
}

fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}
