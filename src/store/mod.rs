//! The SQLite mirror: opening (WAL, busy timeout, embedded migrations) and the
//! one transaction per page that makes every sync step atomic.
//!
//! All SQL lives in this module and its children: `leads` (the mirrored rows
//! and deletion marks), `runs` (the `sync_runs` record) and `state` (cursors
//! and the full-pass bookkeeping).

mod lead_details;
mod leads;
mod run_stats;
mod runs;
mod state;
// The account's structure and the stage history (see the block at the end).
mod stage_history;
mod structure;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

pub use leads::StoredLeadCounts;
pub use run_stats::RunGroup;
pub use runs::{RunCounters, RunKind, RunRecord, RunStatus};
pub use state::{CursorUpdate, SyncState, Window};
pub use structure::{EntityCount, Part, StructureSnapshot};

use crate::alert::Alert;
use crate::kommo::{Lead, LeadId};

/// How long a writer waits for a lock held by another connection or process.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A database failure, with the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the SQLite database {path}: {source}; check database.path and that its directory exists and is writable"
    )]
    Open { path: PathBuf, source: sqlx::Error },
    /// The schema could not be brought up to date: the cause, and what to do
    /// about it ([`migrate_advice`]).
    #[error("cannot migrate the SQLite database {path}: {source}; {}", migrate_advice(.source))]
    Migrate {
        path: PathBuf,
        source: sqlx::migrate::MigrateError,
    },
    #[error("SQLite error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error(
        "pages of this run were not written after an earlier error; the next sync fetches them again"
    )]
    BatchLost,
}

/// What to do about a failed migration, by its cause. Only a migration
/// recorded in the file that this build does not have means a newer
/// kommo-sync wrote it.
fn migrate_advice(error: &sqlx::migrate::MigrateError) -> String {
    use sqlx::migrate::MigrateError;
    match error {
        MigrateError::VersionMissing(version) => format!(
            "the file records migration {version}, which this build does not have: a newer kommo-sync migrated it; run that version or a later one, or point database.path at another file"
        ),
        MigrateError::VersionMismatch(version) => format!(
            "the file records another text of migration {version} than this build has: another build of kommo-sync migrated it; run that build, or point database.path at a new file and run --backfill"
        ),
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => {
            sqlite_advice(e).to_string()
        }
        _ => "check database.path and that the file and its directory are writable".to_string(),
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

/// The mirror database.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
    /// Serializes this process's write transactions (several windows of a
    /// full pass commit pages concurrently; SQLite has one writer anyway),
    /// and holds the transaction pages are gathered in.
    writer: Arc<tokio::sync::Mutex<Writer>>,
}

/// Pages gathered in one transaction at most: most of a page's cost is the
/// B-tree and index pages it dirties, which the next pages dirty again, so a
/// commit of several pages writes each of them once.
const PAGES_PER_COMMIT: u32 = 8;

/// The longest a page waits for its commit while further pages arrive.
const COMMIT_AFTER: Duration = Duration::from_secs(1);

/// The transaction the pages of a run are gathered in.
///
/// Each page still commits whole with its cursors and counters, so a kill
/// loses at most the pages of the open transaction, which the next run
/// fetches again from the cursors committed before them. Every other write
/// and every read the sync decides on commits the open transaction first
/// ([`Store::flushed_writer`]), so nothing reads around it.
#[derive(Default)]
struct Writer {
    open: Option<(Transaction<'static, Sqlite>, u32, std::time::Instant)>,
    /// A batch of this run was rolled back: the run's later pages are refused,
    /// since their windows' progress counts on the pages lost with it.
    lost_batch: bool,
}

impl Writer {
    /// Commits the gathered pages, if any.
    async fn flush(&mut self) -> Result<(), StoreError> {
        if let Some((tx, _, _)) = self.open.take()
            && let Err(e) = tx.commit().await
        {
            self.lost_batch = true;
            return Err(e.into());
        }
        Ok(())
    }
}

/// What one page changes, committed together.
#[derive(Debug, Default)]
pub struct PageCommit<'a> {
    /// The run this page belongs to.
    pub run_id: i64,
    /// Leads to upsert (or, with `is_deleted`, to mark deleted).
    pub leads: &'a [Lead],
    /// Leads known to be gone: marked deleted when the mirror has them alive.
    pub gone: &'a [LeadId],
    /// Cursors to move.
    pub cursor: CursorUpdate,
    /// The full-pass window this page advances, as it stands after the page.
    pub window: Option<(i64, Window)>,
    /// The run's counters after this page.
    pub counters: RunCounters,
    /// Unix seconds of the write.
    pub now: i64,
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_limited(path, None).await
    }

    /// Like [`Store::open`], with writes failing once the file would pass
    /// `max_size_mib` (SQLite's `max_page_count`).
    pub async fn open_limited(path: &Path, max_size_mib: Option<u32>) -> Result<Store, StoreError> {
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
        Ok(Store {
            pool,
            path: path.to_path_buf(),
            writer: Arc::new(tokio::sync::Mutex::new(Writer::default())),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection pool, for read-only queries by tests and `--status`.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Commits what is gathered, then closes every connection
    /// (checkpointing the WAL).
    pub async fn close(&self) {
        if let Err(e) = self.flush().await {
            tracing::error!(error = %e, "the last pages could not be committed; the next sync fetches them again");
        }
        self.pool.close().await;
    }

    /// Commits the pages gathered so far.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.writer.lock().await.flush().await
    }

    /// The writer, with nothing gathered left uncommitted.
    async fn flushed_writer(&self) -> Result<tokio::sync::MutexGuard<'_, Writer>, StoreError> {
        let mut writer = self.writer.lock().await;
        writer.flush().await?;
        Ok(writer)
    }

    /// Answers a trivial query: the database is usable (for the watchdog).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// Upserts a page of leads, moves the cursors and updates the run's
    /// counters together: after a crash either all of it is there or none of
    /// it. The page joins the open transaction, committed every
    /// [`PAGES_PER_COMMIT`] pages or [`COMMIT_AFTER`], and by the next other
    /// write or [`Store::flush`].
    pub async fn commit_page(&self, commit: PageCommit<'_>) -> Result<(), StoreError> {
        let mut writer = self.writer.lock().await;
        if writer.lost_batch {
            return Err(StoreError::BatchLost);
        }
        let (mut tx, pages, opened) = match writer.open.take() {
            Some(open) => open,
            None => (self.begin().await?, 0, std::time::Instant::now()),
        };
        // On an error the transaction is dropped, rolling back the pages
        // gathered with this one along with their cursors.
        if let Err(e) = write_page(&mut tx, &commit).await {
            writer.lost_batch = true;
            return Err(e);
        }
        if pages + 1 >= PAGES_PER_COMMIT || opened.elapsed() >= COMMIT_AFTER {
            if let Err(e) = tx.commit().await {
                writer.lost_batch = true;
                return Err(e.into());
            }
        } else {
            writer.open = Some((tx, pages + 1, opened));
        }
        Ok(())
    }

    /// Closes the full pass `pass` (its deletions are already confirmed and
    /// committed): forgets its windows and leaves the incremental cursor at
    /// the pass's start minus `overlap`.
    pub async fn finish_full_pass(&self, pass: i64, overlap: i64) -> Result<(), StoreError> {
        let _writer = self.flushed_writer().await?;
        let mut tx = self.begin().await?;
        state::close_full_pass(&mut tx, pass, overlap).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The alive leads of the mirror the unfinished pass has not seen, by id:
    /// what it asks Kommo about before marking any deleted.
    pub async fn unseen_alive_leads(&self, pass: i64) -> Result<Vec<LeadId>, StoreError> {
        let _writer = self.flushed_writer().await?;
        leads::unseen_alive(&self.pool, pass).await
    }

    /// Whether the pass has seen the lead alive.
    pub async fn seen_in_pass(&self, pass: i64, id: LeadId) -> Result<bool, StoreError> {
        let _writer = self.flushed_writer().await?;
        leads::seen_in_pass(&self.pool, pass, id).await
    }

    /// The sync cursors.
    pub async fn sync_state(&self) -> Result<SyncState, StoreError> {
        let _writer = self.flushed_writer().await?;
        state::read(&self.pool).await
    }

    /// Starts a full pass, or continues the unfinished one: its number and the
    /// cursor to resume from.
    pub async fn begin_full_pass(&self, now: i64) -> Result<(i64, i64), StoreError> {
        let _writer = self.flushed_writer().await?;
        let mut tx = self.begin().await?;
        let result = state::begin_full_pass(&mut tx, now).await?;
        tx.commit().await?;
        Ok(result)
    }

    /// The windows of a full pass.
    pub async fn full_pass_windows(&self, pass: i64) -> Result<Vec<Window>, StoreError> {
        let _writer = self.flushed_writer().await?;
        state::windows(&self.pool, pass).await
    }

    /// Records a split of a window in two, atomically: the window's new end
    /// and the new window (nothing else of the window changes).
    pub async fn save_split(
        &self,
        pass: i64,
        shortened: &Window,
        new: &Window,
    ) -> Result<(), StoreError> {
        let _writer = self.flushed_writer().await?;
        let mut tx = self.begin().await?;
        state::save_split(&mut tx, pass, shortened, new).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records the start of a run.
    pub async fn start_run(&self, kind: RunKind, now: i64) -> Result<i64, StoreError> {
        let mut writer = self.writer.lock().await;
        writer.lost_batch = false;
        writer.flush().await?;
        runs::start(&self.pool, kind, now).await
    }

    /// Records the end of a run.
    pub async fn finish_run(
        &self,
        run_id: i64,
        status: RunStatus,
        counters: &RunCounters,
        error: Option<&str>,
        alert: Option<Alert>,
        now: i64,
    ) -> Result<(), StoreError> {
        let _writer = self.flushed_writer().await?;
        runs::finish(&self.pool, run_id, status, counters, error, alert, now).await
    }

    /// Marks runs left `running` by a process that died as `interrupted`.
    /// Call only while holding the sync lock, so no live run is touched.
    pub async fn close_abandoned_runs(&self, now: i64) -> Result<u64, StoreError> {
        let _writer = self.flushed_writer().await?;
        runs::close_abandoned(&self.pool, now).await
    }

    /// When the last run of `kind` that ended `ok` started.
    pub async fn last_ok_start(&self, kind: RunKind) -> Result<Option<i64>, StoreError> {
        runs::last_ok_start(&self.pool, kind).await
    }

    /// The counters of the run in progress, if any (for the progress line).
    pub async fn running_run_counters(&self) -> Result<Option<RunCounters>, StoreError> {
        runs::running_counters(&self.pool).await
    }

    /// The most recent runs, newest first.
    pub async fn recent_runs(&self, limit: i64) -> Result<Vec<RunRecord>, StoreError> {
        runs::recent(&self.pool, limit).await
    }

    /// The Kommo account id the mirrored leads carry, if any.
    pub async fn account_id(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT account_id FROM leads WHERE typeof(account_id) = 'integer' LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Lead counts for `--status` and the demo.
    pub async fn lead_counts(&self) -> Result<StoredLeadCounts, StoreError> {
        self.flush().await?;
        leads::counts(&self.pool).await
    }
}

/// The statements of one page.
async fn write_page(
    tx: &mut Transaction<'static, Sqlite>,
    commit: &PageCommit<'_>,
) -> Result<(), StoreError> {
    // A lead listed twice in one page counts as its last listing.
    let mut last: HashMap<LeadId, &Lead> = HashMap::with_capacity(commit.leads.len());
    for lead in commit.leads {
        last.insert(lead.id, lead);
    }
    let (deleted, mut alive): (Vec<&Lead>, Vec<&Lead>) =
        last.into_values().partition(|lead| lead.is_deleted);
    for lead in deleted {
        leads::mark_deleted_from_listing(tx, lead, commit.now).await?;
    }
    if !alive.is_empty() {
        // In id order: each B-tree is walked forward, not jumped about.
        alive.sort_unstable_by_key(|lead| lead.id);
        leads::upsert_alive(tx, &alive, commit.now).await?;
        lead_details::replace(tx, &alive).await?;
        let ids: Vec<LeadId> = alive.iter().map(|lead| lead.id).collect();
        leads::mark_seen(tx, &ids).await?;
    }
    for id in commit.gone {
        leads::mark_gone(tx, *id, commit.now).await?;
    }
    state::apply(tx, &commit.cursor).await?;
    if let Some((pass, window)) = &commit.window {
        state::save_window(tx, *pass, window).await?;
    }
    runs::set_counters(tx, commit.run_id, &commit.counters).await?;
    Ok(())
}

// The account's structure and the leads' stage history.
impl Store {
    /// Writes what a structure phase fetched, with the run's counters, in
    /// one transaction (see [`structure`]).
    pub async fn write_structure(
        &self,
        run_id: i64,
        snapshot: &StructureSnapshot,
        counters: &RunCounters,
        now: i64,
    ) -> Result<(), StoreError> {
        let _writer = self.flushed_writer().await?;
        let mut tx = self.begin().await?;
        structure::write(&mut tx, snapshot, now).await?;
        runs::set_counters(&mut tx, run_id, counters).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records stage changes (each event once) and, with `until`, moves the
    /// stage-history cursor there, with the run's counters, in one
    /// transaction; returns how many changes were new.
    pub async fn commit_status_changes(
        &self,
        run_id: i64,
        changes: &[crate::kommo::StatusChange],
        until: Option<i64>,
        counters: &RunCounters,
    ) -> Result<u64, StoreError> {
        let _writer = self.flushed_writer().await?;
        let mut tx = self.begin().await?;
        let added = stage_history::insert(&mut tx, changes).await?;
        if let Some(until) = until {
            stage_history::advance_cursor(&mut tx, until).await?;
        }
        runs::set_counters(&mut tx, run_id, counters).await?;
        tx.commit().await?;
        Ok(added)
    }

    /// `created_at` up to which stage changes were followed; `None` before
    /// the first walk of the history.
    pub async fn stage_history_cursor(&self) -> Result<Option<i64>, StoreError> {
        stage_history::cursor(&self.pool).await
    }

    /// Stage changes recorded.
    pub async fn stage_change_count(&self) -> Result<i64, StoreError> {
        stage_history::count(&self.pool).await
    }

    /// Rows listed and flagged deleted in each structure table.
    pub async fn structure_counts(&self) -> Result<Vec<EntityCount>, StoreError> {
        structure::counts(&self.pool).await
    }

    /// Rows of each per-lead table (typed field values, tags, contacts,
    /// companies) that exists in this database, by table name.
    pub async fn lead_detail_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut counts = Vec::new();
        for table in [
            "lead_field_values",
            "lead_tags",
            "lead_contacts",
            "lead_companies",
        ] {
            let is_table: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?)",
            )
            .bind(table)
            .fetch_one(&self.pool)
            .await?;
            if is_table {
                let sql = format!("SELECT COUNT(*) FROM {table}");
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&self.pool)
                    .await?;
                counts.push((table.to_string(), n));
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RunCounters;
    use serde_json::json;

    fn lead(id: i64, updated_at: serde_json::Value) -> Lead {
        Lead::from_json(json!({"id": id, "name": "x", "updated_at": updated_at})).unwrap()
    }

    /// Commits `leads` (alive) and `gone` as a page of run `run_id`; with
    /// `pass`, as a page of window 0 of that full pass.
    async fn commit_page_of(
        store: &Store,
        run_id: i64,
        pass: Option<i64>,
        leads: &[Lead],
        gone: &[LeadId],
    ) {
        let window = Window {
            id: 0,
            cursor: 0,
            end: None,
            done: false,
        };
        store
            .commit_page(PageCommit {
                run_id,
                leads,
                gone,
                window: pass.map(|pass| (pass, window)),
                counters: RunCounters::default(),
                now: 1,
                ..PageCommit::default()
            })
            .await
            .unwrap();
        store.flush().await.unwrap();
    }

    /// Hands `leads` to the writer as a page of run `run_id`, without flushing.
    async fn gather_page(store: &Store, run_id: i64, leads: &[Lead]) -> Result<(), StoreError> {
        store
            .commit_page(PageCommit {
                run_id,
                leads,
                now: 1,
                ..PageCommit::default()
            })
            .await
    }

    async fn lead_count_seen_by_another_connection(store: &Store) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM leads")
            .fetch_one(store.pool())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_lead_listed_twice_in_a_page_is_stored_as_its_last_listing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.sqlite")).await.unwrap();
        let run = store.start_run(RunKind::Full, 1).await.unwrap();
        let first = Lead::from_json(json!({"id": 4, "name": "old", "updated_at": 1,
            "_embedded": {"tags": [{"id": 1}]}}))
        .unwrap();
        let last = Lead::from_json(json!({"id": 4, "name": "new", "updated_at": 2,
            "_embedded": {"tags": [{"id": 2}]}}))
        .unwrap();
        commit_page_of(&store, run, None, &[first, last], &[]).await;
        let (name, tags): (String, String) = sqlx::query_as(
            "SELECT name, (SELECT group_concat(tag_id) FROM lead_tags WHERE lead_id = 4) FROM leads WHERE id = 4",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!((name.as_str(), tags.as_str()), ("new", "2"));
    }

    #[tokio::test]
    async fn after_a_batch_is_lost_the_run_writes_no_later_page() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_limited(&dir.path().join("m.sqlite"), Some(1))
            .await
            .unwrap();
        let run = store.start_run(RunKind::Full, 1).await.unwrap();
        let big = |id: i64| {
            vec![Lead::from_json(json!({"id": id, "name": "x".repeat(600_000)})).unwrap()]
        };
        let mut failed = false;
        for id in 1..=4 {
            if gather_page(&store, run, &big(id)).await.is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "1 MiB holds no batch of 2.4 MB");
        // A small page after the loss is refused: its progress would count on
        // the pages lost.
        let small = vec![lead(10, json!(10))];
        assert!(matches!(
            gather_page(&store, run, &small).await,
            Err(StoreError::BatchLost)
        ));
        store.flush().await.unwrap();
        // The next run writes again.
        let run = store.start_run(RunKind::Full, 2).await.unwrap();
        gather_page(&store, run, &small).await.unwrap();
        store.flush().await.unwrap();
        assert_eq!(lead_count_seen_by_another_connection(&store).await, 1);
    }

    #[tokio::test]
    async fn pages_commit_in_batches_and_any_other_write_or_decision_commits_them_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.sqlite")).await.unwrap();
        let run = store.start_run(RunKind::Full, 1).await.unwrap();
        let page = |id: i64| vec![lead(id, json!(id))];
        for id in 1..PAGES_PER_COMMIT as i64 {
            gather_page(&store, run, &page(id)).await.unwrap();
        }
        // Gathered, not yet committed: another connection sees nothing.
        assert_eq!(lead_count_seen_by_another_connection(&store).await, 0);
        // The batch's last page commits it.
        gather_page(&store, run, &page(100)).await.unwrap();
        assert_eq!(
            lead_count_seen_by_another_connection(&store).await,
            i64::from(PAGES_PER_COMMIT)
        );
        // A page then a read the sync decides on: committed before it.
        gather_page(&store, run, &page(200)).await.unwrap();
        store.sync_state().await.unwrap();
        assert_eq!(
            lead_count_seen_by_another_connection(&store).await,
            i64::from(PAGES_PER_COMMIT) + 1
        );
        // A page then the end of the run: committed before it.
        gather_page(&store, run, &page(300)).await.unwrap();
        store
            .finish_run(run, RunStatus::Ok, &RunCounters::default(), None, None, 2)
            .await
            .unwrap();
        assert_eq!(
            lead_count_seen_by_another_connection(&store).await,
            i64::from(PAGES_PER_COMMIT) + 2
        );
    }

    /// A mirror at `dir` holding leads 1 (updated_at 10) and 2 (20), not yet
    /// seen by any full pass, and a run to commit pages with.
    async fn mirror_of_two_leads(dir: &tempfile::TempDir) -> (Store, i64) {
        let store = Store::open(&dir.path().join("m.sqlite")).await.unwrap();
        let run = store.start_run(RunKind::Full, 1).await.unwrap();
        commit_page_of(
            &store,
            run,
            None,
            &[lead(1, json!(10)), lead(2, json!(20))],
            &[],
        )
        .await;
        (store, run)
    }

    async fn deleted_ids(store: &Store) -> Vec<i64> {
        sqlx::query_scalar("SELECT id FROM leads WHERE is_deleted = 1 ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn leads_upserted_while_a_pass_is_open_count_as_seen_by_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, run) = mirror_of_two_leads(&dir).await;
        let (pass, _) = store.begin_full_pass(1_000).await.unwrap();
        assert_eq!(store.unseen_alive_leads(pass).await.unwrap(), vec![1, 2]);
        // During the pass, lead 1 comes from another run (say, a --once),
        // and the pass's own walk lists lead 3.
        commit_page_of(&store, run, None, &[lead(1, json!(30))], &[]).await;
        commit_page_of(&store, run, Some(pass), &[lead(3, json!(40))], &[]).await;
        assert_eq!(store.unseen_alive_leads(pass).await.unwrap(), vec![2]);
        assert!(store.seen_in_pass(pass, 3).await.unwrap());
        assert!(!store.seen_in_pass(pass, 2).await.unwrap());
        // Confirmed gone by id: marked deleted, no longer unseen-alive.
        commit_page_of(&store, run, Some(pass), &[], &[2]).await;
        assert_eq!(deleted_ids(&store).await, vec![2]);
        assert!(store.unseen_alive_leads(pass).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_closed_pass_leaves_the_incremental_cursor_at_its_start_minus_the_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let (store, run) = mirror_of_two_leads(&dir).await;
        let (pass, _) = store.begin_full_pass(1_000).await.unwrap();
        // A lead stamped far ahead is mirrored, and moves no cursor.
        commit_page_of(&store, run, Some(pass), &[lead(3, json!(999_999))], &[]).await;
        store.finish_full_pass(pass, 300).await.unwrap();
        let state = store.sync_state().await.unwrap();
        assert_eq!(state.incremental_cursor, Some(700));
        assert_eq!(state.full_cursor, None);
        assert!(store.full_pass_windows(pass).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_resumed_pass_keeps_what_it_saw_before_the_kill() {
        let dir = tempfile::tempdir().unwrap();
        let (store, run) = mirror_of_two_leads(&dir).await;
        let (pass, _) = store.begin_full_pass(1_000).await.unwrap();
        commit_page_of(&store, run, Some(pass), &[lead(1, json!(10))], &[]).await;

        // Killed; the next run resumes the same pass.
        let path = store.path().to_path_buf();
        store.close().await;
        let store = Store::open(&path).await.unwrap();
        assert_eq!(store.begin_full_pass(2_000).await.unwrap().0, pass);
        assert_eq!(store.unseen_alive_leads(pass).await.unwrap(), vec![2]);
        store.finish_full_pass(pass, 0).await.unwrap();
        assert_eq!(
            store.sync_state().await.unwrap().incremental_cursor,
            Some(1_000),
            "the resumed pass keeps the start it had"
        );
    }

    #[tokio::test]
    async fn odd_types_are_stored_null_with_raw_as_received() {
        let dir = tempfile::tempdir().unwrap();
        let (store, run) = mirror_of_two_leads(&dir).await;
        let odd = Lead::from_json(json!({
            "id": 5, "name": "nul\u{0}and 𝄞", "price": "12", "status_id": 1.5,
            "updated_at": 50, "custom_fields_values": {"a": 1}
        }))
        .unwrap();
        commit_page_of(&store, run, None, std::slice::from_ref(&odd), &[]).await;
        let (name, price, status, cf, raw): (
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<String>,
            String,
        ) = sqlx::query_as(
            "SELECT name, price, status_id, custom_fields_values, raw FROM leads WHERE id = 5",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(name.as_deref(), Some("nul\u{0}and 𝄞"));
        assert_eq!((price, status, cf), (None, None, None));
        let raw: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(raw, odd.to_value());
    }
}
