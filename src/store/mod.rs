//! The SQLite mirror: opening (WAL, busy timeout, embedded migrations) and the
//! one transaction per page that makes every sync step atomic.
//!
//! All SQL lives in this module and its children: `leads` (the mirrored rows
//! and deletion marks), `runs` (the `sync_runs` record) and `state` (cursors
//! and the full-pass bookkeeping).

mod leads;
mod runs;
mod state;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

pub use leads::StoredLeadCounts;
pub use runs::{RunCounters, RunKind, RunRecord, RunStatus};
pub use state::{CursorUpdate, DeletionVerdict, SyncState};

use crate::kommo::{Lead, LeadId};
use crate::sync::windows::Window;

/// How long a writer waits for a lock held by another connection or process.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A database failure, with the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the SQLite database {path}: {source}; check database.path and that its directory exists and is writable"
    )]
    Open { path: PathBuf, source: sqlx::Error },
    #[error(
        "cannot migrate the SQLite database {path}: {source}; was it created by a newer kommo-sync?"
    )]
    Migrate {
        path: PathBuf,
        source: sqlx::migrate::MigrateError,
    },
    #[error("SQLite error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// The mirror database.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
    /// Serializes this process's write transactions (several windows of a
    /// full pass commit pages concurrently; SQLite has one writer anyway).
    writer: Arc<tokio::sync::Mutex<()>>,
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
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Store {
            pool,
            path: path.to_path_buf(),
            writer: Arc::new(tokio::sync::Mutex::new(())),
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

    /// Closes every connection (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Answers a trivial query: the database is usable (for the watchdog).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    /// Upserts a page of leads, moves the cursors and updates the run's
    /// counters in one transaction: after a crash either all of it is there or
    /// none of it.
    pub async fn commit_page(&self, commit: PageCommit<'_>) -> Result<(), StoreError> {
        let _writer = self.writer.lock().await;
        let mut tx = self.begin().await?;
        for lead in commit.leads {
            if lead.is_deleted {
                leads::mark_deleted_from_listing(&mut tx, lead, commit.now).await?;
            } else {
                leads::upsert_alive(&mut tx, lead, commit.now).await?;
                leads::mark_seen(&mut tx, lead.id).await?;
            }
        }
        for id in commit.gone {
            leads::mark_gone(&mut tx, *id, commit.now).await?;
        }
        state::apply(&mut tx, &commit.cursor).await?;
        if let Some((pass, window)) = &commit.window {
            state::save_window(&mut tx, *pass, window).await?;
            if commit.leads.iter().any(|lead| !lead.is_deleted) {
                state::note_pass(&mut tx, *pass, state::PassNote::ListedLeads).await?;
            }
        }
        runs::set_counters(&mut tx, commit.run_id, &commit.counters).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends a full pass: marks alive leads it did not see as deleted, if the
    /// pass may (see [`DeletionVerdict`]), and closes the pass, in one
    /// transaction. Returns the verdict and how many leads were marked deleted.
    pub async fn finish_full_pass(
        &self,
        pass: i64,
        now: i64,
    ) -> Result<(DeletionVerdict, u64), StoreError> {
        let _writer = self.writer.lock().await;
        let mut tx = self.begin().await?;
        let verdict = state::deletion_verdict(&mut tx, pass).await?;
        let deleted = match verdict {
            DeletionVerdict::Allowed => leads::mark_unseen_deleted(&mut tx, pass, now).await?,
            DeletionVerdict::NothingListed | DeletionVerdict::SecondUnread => 0,
        };
        state::close_full_pass(&mut tx, pass).await?;
        tx.commit().await?;
        Ok((verdict, deleted))
    }

    /// Notes that the unfinished full pass `pass` could not read a crowded
    /// second whole: when it completes it marks nothing deleted.
    pub async fn note_full_pass_incomplete(&self, pass: i64) -> Result<(), StoreError> {
        let _writer = self.writer.lock().await;
        let mut tx = self.begin().await?;
        state::note_pass(&mut tx, pass, state::PassNote::SecondUnread).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The sync cursors.
    pub async fn sync_state(&self) -> Result<SyncState, StoreError> {
        state::read(&self.pool).await
    }

    /// Starts a full pass, or continues the unfinished one: its number and the
    /// cursor to resume from.
    pub async fn begin_full_pass(&self, now: i64) -> Result<(i64, i64), StoreError> {
        let _writer = self.writer.lock().await;
        let mut tx = self.begin().await?;
        let result = state::begin_full_pass(&mut tx, now).await?;
        tx.commit().await?;
        Ok(result)
    }

    /// The windows of a full pass.
    pub async fn full_pass_windows(&self, pass: i64) -> Result<Vec<Window>, StoreError> {
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
        let _writer = self.writer.lock().await;
        let mut tx = self.begin().await?;
        state::save_split(&mut tx, pass, shortened, new).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records the start of a run.
    pub async fn start_run(&self, kind: RunKind, now: i64) -> Result<i64, StoreError> {
        runs::start(&self.pool, kind, now).await
    }

    /// Records the end of a run.
    pub async fn finish_run(
        &self,
        run_id: i64,
        status: RunStatus,
        counters: &RunCounters,
        error: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        runs::finish(&self.pool, run_id, status, counters, error, now).await
    }

    /// Marks runs left `running` by a process that died as `interrupted`.
    /// Call only while holding the sync lock, so no live run is touched.
    pub async fn close_abandoned_runs(&self, now: i64) -> Result<u64, StoreError> {
        runs::close_abandoned(&self.pool, now).await
    }

    /// The most recent runs, newest first.
    pub async fn recent_runs(&self, limit: i64) -> Result<Vec<RunRecord>, StoreError> {
        runs::recent(&self.pool, limit).await
    }

    /// Lead counts for `--status` and the demo.
    pub async fn lead_counts(&self) -> Result<StoredLeadCounts, StoreError> {
        leads::counts(&self.pool).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RunCounters;
    use serde_json::json;

    fn lead(id: i64, updated_at: serde_json::Value) -> Lead {
        Lead::from_json(json!({"id": id, "name": "x", "updated_at": updated_at}), 0).unwrap()
    }

    /// Commits `leads` as a page of run `run_id`; with `pass`, as a page of
    /// window 0 of that full pass.
    async fn commit_page_of(store: &Store, run_id: i64, pass: Option<i64>, leads: &[Lead]) {
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
                window: pass.map(|pass| (pass, window)),
                counters: RunCounters::default(),
                now: 1,
                ..PageCommit::default()
            })
            .await
            .unwrap();
    }

    /// A page committed outside any full pass's walk (say, by a `--once`).
    async fn commit(store: &Store, run_id: i64, leads: &[Lead]) {
        commit_page_of(store, run_id, None, leads).await;
    }

    /// A page listed by window 0 of the full pass `pass`.
    async fn commit_in_window(store: &Store, run_id: i64, pass: i64, leads: &[Lead]) {
        commit_page_of(store, run_id, Some(pass), leads).await;
    }

    /// A mirror at `dir` holding leads 1 (updated_at 10) and 2 (20), not yet
    /// seen by any full pass, and a run to commit pages with.
    async fn mirror_of_two_leads(dir: &tempfile::TempDir) -> (Store, i64) {
        let store = Store::open(&dir.path().join("m.sqlite")).await.unwrap();
        let run = store.start_run(RunKind::Full, 1).await.unwrap();
        commit(&store, run, &[lead(1, json!(10)), lead(2, json!(20))]).await;
        (store, run)
    }

    async fn deleted_ids(store: &Store) -> Vec<i64> {
        sqlx::query_scalar("SELECT id FROM leads WHERE is_deleted = 1 ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_string_updated_at_never_becomes_a_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.sqlite")).await.unwrap();
        let run = store.start_run(RunKind::Full, 1).await.unwrap();
        let (pass, _) = store.begin_full_pass(1).await.unwrap();
        commit_in_window(
            &store,
            run,
            pass,
            &[lead(1, json!(100)), lead(2, json!("soon"))],
        )
        .await;
        assert_eq!(
            store.finish_full_pass(pass, 2).await.unwrap(),
            (DeletionVerdict::Allowed, 0)
        );
        assert_eq!(
            store.sync_state().await.unwrap().incremental_cursor,
            Some(100)
        );
        let counts = store.lead_counts().await.unwrap();
        assert_eq!((counts.alive, counts.newest_update), (2, Some(100)));
    }

    #[tokio::test]
    async fn leads_upserted_while_a_pass_is_open_count_as_seen_by_it() {
        let dir = tempfile::tempdir().unwrap();
        // Before any pass: mirrored, not seen by a pass.
        let (store, run) = mirror_of_two_leads(&dir).await;
        let (pass, _) = store.begin_full_pass(1).await.unwrap();
        // During the pass, lead 1 comes from another run (say, a --once),
        // and the pass's own walk lists lead 3.
        commit(&store, run, &[lead(1, json!(30))]).await;
        commit_in_window(&store, run, pass, &[lead(3, json!(40))]).await;
        assert_eq!(
            store.finish_full_pass(pass, 2).await.unwrap(),
            (DeletionVerdict::Allowed, 1),
            "only lead 2, unseen since the pass began, is marked deleted"
        );
        assert_eq!(deleted_ids(&store).await, vec![2]);
    }

    #[tokio::test]
    async fn a_pass_whose_walks_listed_nothing_marks_nothing_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (store, run) = mirror_of_two_leads(&dir).await;
        let (pass, _) = store.begin_full_pass(1).await.unwrap();
        // Only another run upserts during the pass; the pass's walks list nothing.
        commit(&store, run, &[lead(1, json!(30))]).await;
        commit_in_window(&store, run, pass, &[]).await;
        assert_eq!(
            store.finish_full_pass(pass, 2).await.unwrap(),
            (DeletionVerdict::NothingListed, 0)
        );
        assert!(deleted_ids(&store).await.is_empty());
        // The next pass starts afresh: listing lead 1 lets it mark lead 2.
        let (next, _) = store.begin_full_pass(3).await.unwrap();
        assert_eq!(next, pass + 1);
        commit_in_window(&store, run, next, &[lead(1, json!(30))]).await;
        assert_eq!(
            store.finish_full_pass(next, 4).await.unwrap(),
            (DeletionVerdict::Allowed, 1)
        );
        assert_eq!(deleted_ids(&store).await, vec![2]);
    }

    /// Closes `store` as a kill would leave it, opens it again and resumes
    /// the unfinished pass, which must be `pass`.
    async fn reopen_and_resume(store: Store, pass: i64, now: i64) -> Store {
        let path = store.path().to_path_buf();
        store.close().await;
        let store = Store::open(&path).await.unwrap();
        assert_eq!(store.begin_full_pass(now).await.unwrap().0, pass);
        store
    }

    #[tokio::test]
    async fn a_resumed_pass_keeps_what_it_noted_before_the_kill() {
        let dir = tempfile::tempdir().unwrap();
        let (store, run) = mirror_of_two_leads(&dir).await;
        let (pass, _) = store.begin_full_pass(1).await.unwrap();
        commit_in_window(&store, run, pass, &[lead(1, json!(10))]).await;

        // Killed; the next run resumes the same pass and lists nothing more.
        let store = reopen_and_resume(store, pass, 2).await;
        assert_eq!(
            store.finish_full_pass(pass, 3).await.unwrap(),
            (DeletionVerdict::Allowed, 1),
            "the leads listed before the kill still count"
        );
        assert_eq!(deleted_ids(&store).await, vec![2]);

        let (pass, _) = store.begin_full_pass(4).await.unwrap();
        commit_in_window(&store, run, pass, &[lead(1, json!(10))]).await;
        store.note_full_pass_incomplete(pass).await.unwrap();
        let store = reopen_and_resume(store, pass, 5).await;
        assert_eq!(
            store.finish_full_pass(pass, 6).await.unwrap(),
            (DeletionVerdict::SecondUnread, 0),
            "an unread second before the kill still forbids deletions"
        );
    }

    #[tokio::test]
    async fn a_pass_with_an_unread_second_marks_nothing_deleted_and_the_next_pass_does() {
        let dir = tempfile::tempdir().unwrap();
        let (store, run) = mirror_of_two_leads(&dir).await;
        let (pass, _) = store.begin_full_pass(1).await.unwrap();
        commit_in_window(&store, run, pass, &[lead(1, json!(10))]).await;
        store.note_full_pass_incomplete(pass).await.unwrap();
        assert_eq!(
            store.finish_full_pass(pass, 2).await.unwrap(),
            (DeletionVerdict::SecondUnread, 0)
        );
        assert!(deleted_ids(&store).await.is_empty());
        let (next, _) = store.begin_full_pass(3).await.unwrap();
        // A note for a pass that is not the open one changes nothing.
        store.note_full_pass_incomplete(pass).await.unwrap();
        commit_in_window(&store, run, next, &[lead(1, json!(10))]).await;
        assert_eq!(
            store.finish_full_pass(next, 4).await.unwrap(),
            (DeletionVerdict::Allowed, 1)
        );
        assert_eq!(deleted_ids(&store).await, vec![2]);
    }
}
