//! One writer per mirror across processes, held while a sync runs, so that
//! two processes (a daemon and a manual `--once`, say) never sync one mirror
//! at once: an exclusive lock on `<database>.lock` for SQLite, a session
//! advisory lock keyed by the schema for PostgreSQL. Released when dropped,
//! or when the process dies (by the OS, or by the server when the
//! connection closes).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use sqlx::{AnyConnection, Connection};

use super::{Store, StoreError, Target};

/// The first key of kommo-sync's advisory locks (`pg_try_advisory_lock(int,
/// int)`); the second is a hash of the schema, so each account's mirror has
/// its own lock in a shared database.
const ADVISORY_CLASS: i32 = 0x6b73_796e; // "ksyn"

/// The held lock.
pub struct SyncLock {
    _held: Held,
}

enum Held {
    File(#[allow(dead_code)] File),
    /// The connection whose session holds the advisory lock; closing it
    /// releases the lock.
    Session(#[allow(dead_code)] AnyConnection),
}

impl SyncLock {
    /// Takes the lock of the SQLite file `database` without waiting; the
    /// error says who holds it or why it cannot be taken.
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
            Ok(()) => Ok(SyncLock {
                _held: Held::File(file),
            }),
            Err(TryLockError::WouldBlock) => Err(format!(
                "another kommo-sync process is syncing {} right now; this sync is skipped",
                database.display()
            )),
            Err(TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
        }
    }
}

impl Store {
    /// Takes this mirror's sync lock without waiting; the error says who
    /// holds it or why it cannot be taken.
    pub async fn lock_sync(&self) -> Result<SyncLock, String> {
        match self.target() {
            Target::Sqlite { path, .. } => SyncLock::acquire(path),
            Target::Postgres { schema, .. } => {
                let mirror = self.describe();
                let cannot = |e: &dyn std::fmt::Display| {
                    format!(
                        "cannot take the sync lock of the mirror {mirror}: {e}; check that the server answers"
                    )
                };
                let mut connection = self
                    .pool()
                    .acquire()
                    .await
                    .map_err(|e| cannot(&e))?
                    .detach();
                let taken: i64 = sqlx::query_scalar(
                    "SELECT CASE WHEN pg_try_advisory_lock($1, hashtext($2)) THEN 1 ELSE 0 END",
                )
                .bind(ADVISORY_CLASS)
                .bind(schema.as_str())
                .fetch_one(&mut connection)
                .await
                .map_err(|e| cannot(&e))?;
                if taken == 1 {
                    Ok(SyncLock {
                        _held: Held::Session(connection),
                    })
                } else {
                    let _ = connection.close().await;
                    Err(StoreError::Busy(mirror).to_string())
                }
            }
        }
    }
}

fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}
