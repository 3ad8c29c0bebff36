//! Opening the mirror: the SQLite file in WAL mode with its pragmas, and its
//! schema brought up to date by the embedded migrations.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::StoreError;

/// How long a writer waits for a lock held by another connection or process.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens (creating if needed) and migrates the database at `path`; with
/// `max_size_mib`, writes fail once the file would pass it (SQLite's
/// `max_page_count`).
pub(super) async fn connect(
    path: &Path,
    max_size_mib: Option<u32>,
) -> Result<SqlitePool, StoreError> {
    let mut options = SqliteConnectOptions::from_str("sqlite://")
        .map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
        // Chosen by measurement (README "Performance and durability"):
        // statement journals in memory, not in a temporary file. A larger
        // page cache saved little CPU for much memory (each connection
        // has its own), so SQLite's default of 2 MiB stays.
        .pragma("temp_store", "MEMORY")
        // A checkpoint every 10,000 WAL pages (40 MiB) instead of 1,000: the
        // index pages a backfill dirties again and again are copied into
        // the database file once per checkpoint, not ten times (about 5 %
        // of a backfill's CPU). The WAL file keeps up to that size.
        .pragma("wal_autocheckpoint", "10000")
        .foreign_keys(true);
    if let Some(mib) = max_size_mib {
        // 4096-byte pages (SQLite's default page size).
        options = options.pragma("max_page_count", (u64::from(mib) * 256).to_string());
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    let migrate_error = |source| StoreError::Migrate {
        path: path.to_path_buf(),
        source,
    };
    let updated = accept_equivalent_migration_edits(&pool)
        .await
        .map_err(|e| migrate_error(sqlx::migrate::MigrateError::Execute(e)))?;
    for version in updated {
        tracing::info!(
            path = %path.display(),
            version,
            "the mirror recorded an earlier, equivalent text of this migration; recorded the current one"
        );
    }
    MIGRATOR.run(&pool).await.map_err(migrate_error)?;
    Ok(pool)
}

/// The migrations of `migrations/`, embedded in the binary and run on open.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Committed migrations whose text was later edited without changing their
/// effect, each with the checksum (sqlx's SHA-384 of the text, in hex) of
/// the earlier text. A mirror migrated by a build between the two commits
/// records the earlier checksum, which sqlx refuses as "previously applied
/// but has been modified"; [`accept_equivalent_migration_edits`] records the
/// current one instead.
///
/// - Migration 6 as committed in 6761092, edited in bec178f: the same tables
///   and indexes; the copy of tags and companies from `raw` only stopped
///   reading ids out of elements that are not JSON objects (where the first
///   text failed on them, it was rolled back and recorded nothing). Those
///   rows are rewritten with their lead at its next sync anyway.
const EQUIVALENT_EDITS: [(i64, &str); 1] = [(
    6,
    "323d448ff334b375e34340cdad8b93a3c5ff007bd84ea9914cb75a82b4fd23188db74dc7e8d79acb1a6cbf64c98ca764",
)];

/// Records the current checksum of each migration in [`EQUIVALENT_EDITS`]
/// that the file records with its earlier, equivalent checksum; returns the
/// versions updated. Nothing else in the record is touched, so any other
/// difference still fails the migration.
async fn accept_equivalent_migration_edits(pool: &SqlitePool) -> Result<Vec<i64>, sqlx::Error> {
    let recorded: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
    )
    .fetch_one(pool)
    .await?;
    let mut updated = Vec::new();
    if !recorded {
        return Ok(updated);
    }
    for (version, earlier) in EQUIVALENT_EDITS {
        // Read first: a mirror that needs nothing gets no write here.
        let checksum: Option<String> = sqlx::query_scalar(
            "SELECT lower(hex(checksum)) FROM _sqlx_migrations WHERE version = ?1",
        )
        .bind(version)
        .fetch_optional(pool)
        .await?;
        let Some(current) = MIGRATOR.iter().find(|m| m.version == version) else {
            continue;
        };
        if checksum.as_deref() != Some(earlier) {
            continue;
        }
        sqlx::query("UPDATE _sqlx_migrations SET checksum = ?1 WHERE version = ?2")
            .bind(current.checksum.as_ref())
            .bind(version)
            .execute(pool)
            .await?;
        updated.push(version);
    }
    Ok(updated)
}
