//! What can go wrong with the mirror, each error with what to do about it.

use super::backend::Backend;

/// A database failure, with the mirror it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the mirror {target}: {source}; {}", open_advice(*.backend))]
    Open {
        /// The file, or the URL without its password and the schema.
        target: String,
        backend: Backend,
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date: the cause, and what to do
    /// about it ([`migrate_advice`]).
    #[error("cannot migrate the mirror {target}: {source}; {}", migrate_advice(*.backend, .source))]
    Migrate {
        target: String,
        backend: Backend,
        source: sqlx::migrate::MigrateError,
    },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error(
        "pages of this run were not written after an earlier error; the next sync fetches them again"
    )]
    BatchLost,
    #[error("another kommo-sync process is syncing {0} right now; this sync is skipped")]
    Busy(String),
}

/// What to do when the mirror cannot be opened.
fn open_advice(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "check database.path and that its directory exists and is writable",
        Backend::Postgres => {
            "check database.url (host, port, user, database), the password (database.password_file or the database-password credential) and that the server accepts connections"
        }
    }
}

/// What to do about a failed migration, by its cause. Only a migration
/// recorded in the file that this build does not have means a newer
/// kommo-sync wrote it.
fn migrate_advice(backend: Backend, error: &sqlx::migrate::MigrateError) -> String {
    use sqlx::migrate::MigrateError;
    let setting = match backend {
        Backend::Sqlite => "point database.path at another file",
        Backend::Postgres => "point database.schema at another schema",
    };
    match error {
        MigrateError::VersionMissing(version) => format!(
            "the mirror records migration {version}, which this build does not have: a newer kommo-sync migrated it; run that version or a later one, or {setting}"
        ),
        MigrateError::VersionMismatch(version) => format!(
            "the mirror records another text of migration {version} than this build has: another build of kommo-sync migrated it; run that build, or {setting} and run --backfill"
        ),
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => match backend {
            Backend::Sqlite => sqlite_advice(e).to_string(),
            Backend::Postgres => {
                "check that the database user may create tables in the schema (GRANT CREATE ON SCHEMA)".to_string()
            }
        },
        _ => match backend {
            Backend::Sqlite => {
                "check database.path and that the file and its directory are writable".to_string()
            }
            Backend::Postgres => "check database.url and the user's rights on the schema".to_string(),
        },
    }
}

/// What to do about a SQLite failure, by its primary result code.
fn sqlite_advice(error: &sqlx::Error) -> &'static str {
    let code = error
        .as_database_error()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<i32>().ok());
    // Extended result codes keep the primary code in their low byte.
    match code.map(|code| code & 0xff) {
        // SQLITE_BUSY, SQLITE_LOCKED
        Some(5 | 6) => "another process holds the database locked; try again once it is done",
        // SQLITE_READONLY
        Some(8) => {
            "the file or its directory is read-only for this user; make both writable (SQLite writes its -wal and -shm files next to it)"
        }
        // SQLITE_IOERR
        Some(10) => "the disk reported an I/O error; check the disk and the file",
        // SQLITE_CORRUPT, SQLITE_NOTADB
        Some(11 | 26) => {
            "the file is damaged or is not a SQLite database; check database.path, or restore the file from a backup"
        }
        // SQLITE_FULL
        Some(13) => {
            "the disk is full or database.max_size_mib is reached; free space or raise the limit"
        }
        _ => "check that the file and its directory are writable and that the disk has space",
    }
}
