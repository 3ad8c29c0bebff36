//! The migrations a mirror records: a committed migration is never edited,
//! since a mirror that applied it refuses to open once its text differs
//! (sqlx compares the checksum it recorded with the build's).

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::migrate::{Migration, MigrationType};
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
                 migration (with its line in tests/migration_checksums.txt)"
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
