//! The leads' stage history: `lead_status_changes`, one row per
//! `lead_status_changed` event however often it is read (the event id is
//! the key), and `sync_state.stage_history_cursor`, the `created_at` up to
//! which the history was followed.

use sqlx::{Any, AnyPool, AssertSqlSafe, Transaction};

use super::StoreError;
use super::backend::Backend;
use super::{RunCounters, Store};
use crate::kommo::StatusChange;

type Tx = Transaction<'static, Any>;

/// Inserts the changes not yet recorded; returns how many were new.
pub async fn insert(tx: &mut Tx, changes: &[StatusChange]) -> Result<u64, StoreError> {
    let mut added = 0;
    for c in changes {
        added += sqlx::query(
            "INSERT INTO lead_status_changes (event_id, lead_id, from_pipeline_id, from_status_id, \
             to_pipeline_id, to_status_id, changed_at, changed_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&c.event_id)
        .bind(c.lead_id)
        .bind(c.from_pipeline_id)
        .bind(c.from_status_id)
        .bind(c.to_pipeline_id)
        .bind(c.to_status_id)
        .bind(c.changed_at)
        .bind(c.changed_by)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    Ok(added)
}

/// Moves the cursor forward to `until` (never back).
pub async fn advance_cursor(tx: &mut Tx, until: i64) -> Result<(), StoreError> {
    let forward = Backend::of(tx).greatest("COALESCE(stage_history_cursor, $1)", "$1");
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE sync_state SET stage_history_cursor = {forward} WHERE id = 1"
    )))
    .bind(until)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The cursor; `None` before the history was first followed.
pub async fn cursor(pool: &AnyPool) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT stage_history_cursor FROM sync_state WHERE id = 1")
            .fetch_one(pool)
            .await?,
    )
}

/// Stage changes recorded.
pub async fn count(pool: &AnyPool) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM lead_status_changes")
            .fetch_one(pool)
            .await?,
    )
}

impl Store {
    /// Records stage changes (each event once) and, with `until`, moves the
    /// stage-history cursor there, with the run's counters, in one
    /// transaction; returns how many changes were new.
    pub async fn commit_status_changes(
        &self,
        run_id: i64,
        changes: &[StatusChange],
        until: Option<i64>,
        counters: &RunCounters,
    ) -> Result<u64, StoreError> {
        let db = self.db.flushed().await?;
        let mut tx = db.begin().await?;
        let added = insert(&mut tx, changes).await?;
        if let Some(until) = until {
            advance_cursor(&mut tx, until).await?;
        }
        super::runs::set_counters(&mut tx, run_id, counters).await?;
        tx.commit().await?;
        Ok(added)
    }

    /// `created_at` up to which stage changes were followed; `None` before
    /// the first walk of the history.
    pub async fn stage_history_cursor(&self) -> Result<Option<i64>, StoreError> {
        let db = self.db.flushed().await?;
        cursor(db.pool()).await
    }

    /// Stage changes recorded.
    pub async fn stage_change_count(&self) -> Result<i64, StoreError> {
        count(self.db.committed()).await
    }
}
