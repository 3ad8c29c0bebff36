//! The migrations a mirror records: a committed migration is never edited,
//! since a mirror that applied it refuses to open once its text differs
//! (sqlx compares the checksum it recorded with the build's); the one edit
//! made in the past (migration 6) is accepted on open; a mirror that cannot
//! be migrated is refused with the real cause.

use std::collections::BTreeMap;
use std::path::Path;

use kommo_sync::store::{Store, StoreError};
use sqlx::migrate::{MigrateError, Migration, MigrationType};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, SqlSafeStr};

/// The folder sqlx embeds in the binary.
const MIGRATIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
/// Each committed migration's file name and checksum, one a line.
const CHECKSUMS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/migration_checksums.txt");

/// sqlx's checksum of a migration's text (what `_sqlx_migrations` records), in hex.
fn sqlx_checksum(sql: String) -> String {
    let migration = Migration::new(
        0,
        "".into(),
        MigrationType::Simple,
        AssertSqlSafe(sql).into_sql_str(),
        false,
    );
    migration
        .checksum
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The list of `tests/migration_checksums.txt`: file name to checksum.
fn listed_checksums() -> BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(CHECKSUMS).expect("tests/migration_checksums.txt is readable");
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, checksum) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("not \"NAME CHECKSUM\": {line:?}"));
            (name.to_string(), checksum.trim().to_string())
        })
        .collect()
}

/// Every file of `migrations/`, file name to checksum.
fn migration_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .expect("migrations/ is readable")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name, sqlx_checksum(text))
        })
        .collect()
}

#[test]
fn committed_migrations_are_never_edited() {
    let listed = listed_checksums();
    let files = migration_files(Path::new(MIGRATIONS));
    let mut problems = Vec::new();
    for (name, checksum) in &files {
        match listed.get(name) {
            Some(expected) if expected == checksum => {}
            Some(expected) => problems.push(format!(
                "migrations/{name} was edited after it was committed (checksum {checksum}, listed {expected}): \
                 a mirror that applied it no longer opens. Revert the edit and make the change in a new \
                 migration (with its line in tests/migration_checksums.txt); only an edit without any \
                 effect may stay, with the listed checksum added to EQUIVALENT_EDITS in src/store/mod.rs"
            )),
            None => problems.push(format!(
                "migrations/{name} is not in tests/migration_checksums.txt; once the migration is final, \
                 add the line \"{name} {checksum}\" (and never change it after it is committed)"
            )),
        }
    }
    for name in listed.keys().filter(|name| !files.contains_key(*name)) {
        problems.push(format!(
            "migrations/{name} is listed in tests/migration_checksums.txt but gone: a mirror that \
             applied it no longer opens (sqlx: previously applied but missing). Restore the file"
        ));
    }
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

/// sqlx's checksum of migration 6 as first committed (6761092), before its
/// edit in bec178f: what a mirror migrated by a build between the two records.
const MIGRATION_6_FIRST_CHECKSUM: &str = "323d448ff334b375e34340cdad8b93a3c5ff007bd84ea9914cb75a82b4fd23188db74dc7e8d79acb1a6cbf64c98ca764";

/// A fresh mirror at `path`, migrated by this build and closed.
async fn fresh_mirror(path: &Path) {
    Store::open(path)
        .await
        .expect("a new mirror opens")
        .close()
        .await;
}

/// Runs `sql` on the database at `path` (created if missing) outside the
/// store, binding `bytes` when given: a mirror as another build left it.
async fn tamper(path: &Path, sql: &str, bytes: Option<Vec<u8>>) {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true),
        )
        .await
        .unwrap();
    let mut query = sqlx::query(AssertSqlSafe(sql.to_string()));
    if let Some(bytes) = bytes {
        query = query.bind(bytes);
    }
    query.execute(&pool).await.unwrap();
    pool.close().await;
}

fn bytes_of_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

async fn recorded_checksum(store: &Store, version: i64) -> String {
    sqlx::query_scalar("SELECT lower(hex(checksum)) FROM _sqlx_migrations WHERE version = ?1")
        .bind(version)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_mirror_recording_the_first_text_of_migration_6_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.sqlite");
    fresh_mirror(&path).await;
    tamper(
        &path,
        "UPDATE _sqlx_migrations SET checksum = ?1 WHERE version = 6",
        Some(bytes_of_hex(MIGRATION_6_FIRST_CHECKSUM)),
    )
    .await;

    let store = Store::open(&path)
        .await
        .expect("a mirror migrated by a build between 6761092 and bec178f opens");
    // It now records the current text, and opens again as any other mirror.
    assert_eq!(
        recorded_checksum(&store, 6).await,
        listed_checksums()["0006_lead_details.sql"]
    );
    store.close().await;
    Store::open(&path).await.expect("opens again").close().await;
}

#[tokio::test]
async fn a_mirror_recording_any_other_text_of_a_migration_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.sqlite");
    fresh_mirror(&path).await;
    tamper(
        &path,
        "UPDATE _sqlx_migrations SET checksum = ?1 WHERE version = 6",
        Some(vec![0; 48]),
    )
    .await;
    let err = Store::open(&path).await.err().expect("refused");
    assert!(
        matches!(
            err,
            StoreError::Migrate {
                source: MigrateError::VersionMismatch(6),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_mirror_migrated_by_a_newer_kommo_sync_is_refused_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.sqlite");
    fresh_mirror(&path).await;
    tamper(
        &path,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from a later release', 1, ?1, 0)",
        Some(vec![0; 48]),
    )
    .await;
    let err = Store::open(&path).await.err().expect("refused");
    assert!(
        matches!(
            err,
            StoreError::Migrate {
                source: MigrateError::VersionMissing(9999),
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    for part in [
        &path.display().to_string(),
        "migration 9999",
        "a newer kommo-sync migrated it",
        "database.path",
    ] {
        assert!(message.contains(part), "no {part:?} in: {message}");
    }
}

#[tokio::test]
async fn a_migration_failing_on_a_full_database_names_the_cause_and_not_a_newer_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.sqlite");
    // A file of about 2 MiB with no mirror in it yet: under a limit of 1 MiB
    // (database.max_size_mib) the first migration cannot add a page.
    tamper(
        &path,
        "CREATE TABLE ballast AS SELECT zeroblob(2000000) AS b",
        None,
    )
    .await;
    let err = Store::open_limited(&path, Some(1))
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, StoreError::Migrate { .. }), "{err:?}");
    let message = err.to_string();
    for part in [
        &path.display().to_string(),
        "database or disk is full",
        "free space or raise the limit",
    ] {
        assert!(message.contains(part), "no {part:?} in: {message}");
    }
    assert!(!message.contains("newer"), "{message}");
}

/// A mirror migrated by a build that stopped at migration `last`, at `path`.
async fn mirror_up_to(path: &Path, last: &str) {
    let dir = tempfile::tempdir().unwrap();
    for (name, _) in migration_files(Path::new(MIGRATIONS)) {
        if name.as_str() <= last {
            std::fs::copy(Path::new(MIGRATIONS).join(&name), dir.path().join(&name)).unwrap();
        }
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true),
        )
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(dir.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    pool.close().await;
}

#[tokio::test]
async fn the_leads_cursors_and_an_unfinished_pass_survive_the_move_to_per_entity_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.sqlite");
    mirror_up_to(&path, "0010_contacts_companies.sql").await;
    // A pass left unfinished by a build before windows: its cursor, no window.
    tamper(
        &path,
        "UPDATE sync_state SET incremental_cursor = 500, deleted_cursor = 400, full_pass = 3, \
         full_cursor = 450, full_pass_started_at = 600, events_cursor = 700",
        None,
    )
    .await;
    let store = Store::open(&path).await.expect("migration 0011 applies");
    let pool = store.pool();
    let rows: Vec<(String, Option<i64>, Option<i64>, i64)> = sqlx::query_as(
        "SELECT entity, incremental_cursor, deleted_cursor, full_pass_done \
         FROM entity_sync_state ORDER BY entity",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            ("companies".into(), None, None, 0),
            ("contacts".into(), None, None, 0),
            ("leads".into(), Some(500), Some(400), 2),
        ]
    );
    let windows: Vec<(i64, String, i64, i64, i64)> =
        sqlx::query_as("SELECT full_pass, entity, window_id, cursor, done FROM full_pass_windows")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(windows, vec![(3, "leads".into(), 0, 450, 0)]);
    let state = store.sync_state().await.unwrap();
    assert_eq!(
        (state.full_pass, state.full_cursor, state.events_cursor),
        (3, Some(450), Some(700))
    );
}
