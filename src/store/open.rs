//! Opening the mirror: the SQLite file in WAL mode with its pragmas, or the
//! PostgreSQL schema of this account, and its tables brought up to date by
//! the embedded migrations of that database.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions, Executor};

use super::StoreError;
use super::backend::Backend;

/// How long a writer waits for a lock held by another connection or process.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long opening a PostgreSQL mirror waits for the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the mirror is (its `Debug` shows no password).
#[derive(Clone)]
pub enum Target {
    /// A SQLite file; with `max_size_mib`, writes fail once the file would
    /// pass it (SQLite's `max_page_count`).
    Sqlite {
        path: PathBuf,
        max_size_mib: Option<u32>,
    },
    /// A schema of a PostgreSQL database.
    Postgres {
        /// The URL to connect with, its password included: never shown.
        url: url::Url,
        /// The schema of this account's mirror (a plain identifier).
        schema: String,
    },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Target {
    /// The database of the target.
    pub fn backend(&self) -> Backend {
        match self {
            Target::Sqlite { .. } => Backend::Sqlite,
            Target::Postgres { .. } => Backend::Postgres,
        }
    }

    /// The mirror as messages name it: the file, or the URL without its
    /// password and the schema.
    pub fn describe(&self) -> String {
        match self {
            Target::Sqlite { path, .. } => path.display().to_string(),
            Target::Postgres { url, schema } => {
                format!("{} (schema {schema})", without_password(url))
            }
        }
    }
}

/// `url` with its password, if any, left out.
pub fn without_password(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(None);
    }
    shown.to_string()
}

/// `text`, a URL that may not parse, with what stands between the user's
/// `:` and the `@` left out: for messages about a URL that was refused.
pub fn without_password_text(text: &str) -> String {
    let Some(start) = text.find("://").map(|i| i + 3) else {
        return text.to_string();
    };
    let authority_end = text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| start + i);
    let authority = &text[start..authority_end];
    let Some(at) = authority.rfind('@') else {
        return text.to_string();
    };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}{}",
            &text[..start],
            &userinfo[..colon],
            &text[start + at..]
        ),
        None => text.to_string(),
    }
}

/// Opens (creating if needed) and migrates the mirror at `target`.
pub(super) async fn connect(target: &Target) -> Result<(AnyPool, Backend), StoreError> {
    sqlx::any::install_default_drivers();
    let backend = target.backend();
    let open_error = |source| StoreError::Open {
        target: target.describe(),
        backend,
        source,
    };
    let migrate_error = |source| StoreError::Migrate {
        target: target.describe(),
        backend,
        source,
    };
    match target {
        Target::Sqlite { path, max_size_mib } => {
            let pool = connect_sqlite(path, *max_size_mib)
                .await
                .map_err(open_error)?;
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
            SQLITE_MIGRATOR.run(&pool).await.map_err(migrate_error)?;
            Ok((pool, Backend::Sqlite))
        }
        Target::Postgres { url, schema } => {
            let pool = connect_postgres(url, schema).await.map_err(open_error)?;
            POSTGRES_MIGRATOR.run(&pool).await.map_err(migrate_error)?;
            Ok((pool, Backend::Postgres))
        }
    }
}

/// The SQLite file with its pragmas on every connection.
async fn connect_sqlite(path: &Path, max_size_mib: Option<u32>) -> Result<AnyPool, sqlx::Error> {
    let url = SqliteConnectOptions::from_str("sqlite://")?
        .filename(path)
        .create_if_missing(true)
        .to_url_lossy();
    let mut pragmas = format!(
        "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
         PRAGMA foreign_keys = ON; \
         PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 10000;",
        BUSY_TIMEOUT.as_millis()
    );
    // Chosen by measurement (README "Performance and durability"):
    // statement journals in memory, not in a temporary file. A larger page
    // cache saved little CPU for much memory (each connection has its own),
    // so SQLite's default of 2 MiB stays. A checkpoint every 10,000 WAL
    // pages (40 MiB) instead of 1,000: the index pages a backfill dirties
    // again and again are copied into the database file once per
    // checkpoint, not ten times (about 5 % of a backfill's CPU).
    if let Some(mib) = max_size_mib {
        // 4096-byte pages (SQLite's default page size).
        pragmas.push_str(&format!(
            " PRAGMA max_page_count = {};",
            u64::from(mib) * 256
        ));
    }
    AnyPoolOptions::new()
        .max_connections(4)
        .after_connect(move |conn, _| {
            let pragmas = pragmas.clone();
            Box::pin(async move {
                conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(pragmas)))
                    .await
                    .map(|_| ())
            })
        })
        .connect_with(AnyConnectOptions::from_url(&url)?)
        .await
}

/// The PostgreSQL database, every connection in the account's schema
/// (created if missing).
async fn connect_postgres(url: &url::Url, schema: &str) -> Result<AnyPool, sqlx::Error> {
    let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
    let pool = AnyPoolOptions::new()
        .max_connections(4)
        // A server that does not answer fails the open within this long
        // (sqlx retries refused connections until then).
        .acquire_timeout(CONNECT_TIMEOUT)
        .after_connect({
            let quoted = quoted.clone();
            move |conn, _| {
                let set = format!("SET search_path TO {quoted}");
                Box::pin(async move { conn.execute(sqlx::AssertSqlSafe(set)).await.map(|_| ()) })
            }
        })
        .connect_with(AnyConnectOptions::from_url(url)?)
        .await?;
    pool.execute(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {quoted}"
    )))
    .await?;
    Ok(pool)
}

/// The SQLite migrations of `migrations/`, embedded in the binary and run on open.
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The PostgreSQL twin of `migrations/`, in `migrations/postgres/`.
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

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
async fn accept_equivalent_migration_edits(pool: &AnyPool) -> Result<Vec<i64>, sqlx::Error> {
    let recorded: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(pool)
    .await?;
    let mut updated = Vec::new();
    if recorded == 0 {
        return Ok(updated);
    }
    for (version, earlier) in EQUIVALENT_EDITS {
        // Read first: a mirror that needs nothing gets no write here.
        let checksum: Option<String> = sqlx::query_scalar(
            "SELECT lower(hex(checksum)) FROM _sqlx_migrations WHERE version = $1",
        )
        .bind(version)
        .fetch_optional(pool)
        .await?;
        let Some(current) = SQLITE_MIGRATOR.iter().find(|m| m.version == version) else {
            continue;
        };
        if checksum.as_deref() != Some(earlier) {
            continue;
        }
        sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2")
            .bind(current.checksum.as_ref())
            .bind(version)
            .execute(pool)
            .await?;
        updated.push(version);
    }
    Ok(updated)
}
