//! The one writer of the mirror and the rule that keeps reads honest.
//!
//! The pages of a run are gathered in one transaction, committed every
//! [`PAGES_PER_COMMIT`] pages or [`COMMIT_AFTER`]: most of a page's cost is
//! the B-tree and index pages it dirties, which the next pages dirty again,
//! so a commit of several pages writes each of them once. Each page still
//! commits whole with its cursors and counters, so a kill loses at most the
//! pages of the open transaction, which the next run fetches again from the
//! cursors committed before them.
//!
//! The rule that nothing reads around the open transaction is held by this
//! type, not by its callers: the pool is reached only through
//! [`Database::flushed`] (every gathered page committed, and no page joins
//! while the guard lives: for every other write and every read a decision
//! depends on) or [`Database::committed`] (what other connections see: for
//! display, metrics and tests).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Any, AnyPool, Transaction};
use tokio::sync::{Mutex, MutexGuard};

use super::StoreError;
use super::backend::Backend;
use super::page::{self, PageCommit};

/// Pages gathered in one transaction at most.
pub(super) const PAGES_PER_COMMIT: u32 = 8;

/// The longest a page waits for its commit while further pages arrive.
const COMMIT_AFTER: Duration = Duration::from_secs(1);

/// The pool and the batch, behind the rule above.
#[derive(Clone)]
pub(super) struct Database {
    pool: AnyPool,
    backend: Backend,
    /// Serializes this process's write transactions (several windows of a
    /// full pass commit pages concurrently; SQLite has one writer anyway),
    /// and holds the transaction pages are gathered in.
    batch: Arc<Mutex<Batch>>,
}

/// The transaction the pages of a run are gathered in.
#[derive(Default)]
struct Batch {
    open: Option<(Transaction<'static, Any>, u32, Instant)>,
    /// A batch of this run was rolled back: the run's later pages are refused,
    /// since their windows' progress counts on the pages lost with it.
    lost: bool,
}

impl Batch {
    /// Commits the gathered pages, if any.
    async fn commit(&mut self) -> Result<(), StoreError> {
        if let Some((tx, _, _)) = self.open.take()
            && let Err(e) = tx.commit().await
        {
            self.lost = true;
            return Err(e.into());
        }
        Ok(())
    }
}

/// The database with nothing gathered left uncommitted; no page joins a
/// batch while it lives.
pub(super) struct Flushed<'a> {
    _batch: MutexGuard<'a, Batch>,
    pool: &'a AnyPool,
    backend: Backend,
}

impl<'a> Flushed<'a> {
    /// For reads and single statements. (The pool, not the guard, is
    /// borrowed: the guard holds a transaction, which is not `Sync`, so a
    /// future must not keep a reference to it across an await.)
    pub(super) fn pool(&self) -> &'a AnyPool {
        self.pool
    }

    /// The database, for the SQL that differs.
    pub(super) fn backend(&self) -> Backend {
        self.backend
    }

    /// A transaction of its own, for a write that commits whole.
    pub(super) fn begin(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Any>, StoreError>> + Send + 'a {
        let pool = self.pool;
        async move { Ok(pool.begin().await?) }
    }
}

impl Database {
    pub(super) fn new(pool: AnyPool, backend: Backend) -> Database {
        Database {
            pool,
            backend,
            batch: Arc::new(Mutex::new(Batch::default())),
        }
    }

    /// What is committed, without the pages of the open batch: for display,
    /// metrics and tests, never for a decision of the sync.
    pub(super) fn committed(&self) -> &AnyPool {
        &self.pool
    }

    /// The database, for the SQL that differs.
    pub(super) fn backend(&self) -> Backend {
        self.backend
    }

    /// Commits the open batch and holds the writer: see [`Flushed`].
    pub(super) async fn flushed(&self) -> Result<Flushed<'_>, StoreError> {
        let mut batch = self.batch.lock().await;
        batch.commit().await?;
        Ok(Flushed {
            _batch: batch,
            pool: &self.pool,
            backend: self.backend,
        })
    }

    /// Like [`Database::flushed`], at the start of a run: a batch lost by an
    /// earlier run no longer refuses pages.
    pub(super) async fn flushed_for_new_run(&self) -> Result<Flushed<'_>, StoreError> {
        let mut batch = self.batch.lock().await;
        batch.lost = false;
        batch.commit().await?;
        Ok(Flushed {
            _batch: batch,
            pool: &self.pool,
            backend: self.backend,
        })
    }

    /// Commits the pages gathered so far.
    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        self.batch.lock().await.commit().await
    }

    /// Commits what is gathered, then closes every connection
    /// (checkpointing SQLite's WAL).
    pub(super) async fn close(&self) {
        if let Err(e) = self.flush().await {
            tracing::error!(error = %e, "the last pages could not be committed; the next sync fetches them again");
        }
        self.pool.close().await;
    }

    /// Adds a page to the open batch (opening one if needed) and commits the
    /// batch when it is full or old enough.
    pub(super) async fn gather(&self, commit: &PageCommit<'_>) -> Result<(), StoreError> {
        let mut batch = self.batch.lock().await;
        if batch.lost {
            return Err(StoreError::BatchLost);
        }
        let (mut tx, pages, opened) = match batch.open.take() {
            Some(open) => open,
            None => (self.pool.begin().await?, 0, Instant::now()),
        };
        // On an error the transaction is dropped, rolling back the pages
        // gathered with this one along with their cursors.
        if let Err(e) = page::write(&mut tx, commit).await {
            batch.lost = true;
            return Err(e);
        }
        if pages + 1 >= PAGES_PER_COMMIT || opened.elapsed() >= COMMIT_AFTER {
            if let Err(e) = tx.commit().await {
                batch.lost = true;
                return Err(e.into());
            }
        } else {
            batch.open = Some((tx, pages + 1, opened));
        }
        Ok(())
    }
}
