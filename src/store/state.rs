//! The `sync_state` row: the cursors from which syncs resume, and the number
//! and progress of the full pass.

use sqlx::{Sqlite, SqlitePool, Transaction};

use super::StoreError;

/// Where the syncs stand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct SyncState {
    /// Largest `updated_at` mirrored; incremental syncs start here minus the overlap.
    pub incremental_cursor: Option<i64>,
    /// Largest deletion time seen in `with=only_deleted` listings.
    pub deleted_cursor: Option<i64>,
    /// Number of the current or last full pass.
    pub full_pass: i64,
    /// `updated_at` reached by the unfinished full pass; `None` when none is unfinished.
    pub full_cursor: Option<i64>,
    /// When the unfinished full pass started.
    pub full_pass_started_at: Option<i64>,
    /// `created_at` up to which lead events have been followed.
    pub events_cursor: Option<i64>,
}

/// Cursor moves that go with a page. Each cursor only ever moves forward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CursorUpdate {
    pub incremental: Option<i64>,
    pub deleted: Option<i64>,
    pub full: Option<i64>,
    pub events: Option<i64>,
}

pub async fn read(pool: &SqlitePool) -> Result<SyncState, StoreError> {
    Ok(sqlx::query_as(
        "SELECT incremental_cursor, deleted_cursor, full_pass, full_cursor, full_pass_started_at, \
         events_cursor FROM sync_state WHERE id = 1",
    )
    .fetch_one(pool)
    .await?)
}

pub async fn apply(
    tx: &mut Transaction<'static, Sqlite>,
    update: &CursorUpdate,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE sync_state SET \
         incremental_cursor = CASE WHEN ?1 IS NULL THEN incremental_cursor ELSE MAX(COALESCE(incremental_cursor, ?1), ?1) END, \
         deleted_cursor = CASE WHEN ?2 IS NULL THEN deleted_cursor ELSE MAX(COALESCE(deleted_cursor, ?2), ?2) END, \
         full_cursor = CASE WHEN ?3 IS NULL OR full_cursor IS NULL THEN full_cursor ELSE MAX(full_cursor, ?3) END, \
         events_cursor = CASE WHEN ?4 IS NULL THEN events_cursor ELSE MAX(COALESCE(events_cursor, ?4), ?4) END \
         WHERE id = 1",
    )
    .bind(update.incremental)
    .bind(update.deleted)
    .bind(update.full)
    .bind(update.events)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Continues the unfinished full pass, or opens a new one from cursor 0.
/// The first pass also starts the event cursor: events before it are
/// covered by the pass itself.
pub async fn begin_full_pass(
    tx: &mut Transaction<'static, Sqlite>,
    now: i64,
) -> Result<(i64, i64), StoreError> {
    let (pass, cursor): (i64, Option<i64>) =
        sqlx::query_as("SELECT full_pass, full_cursor FROM sync_state WHERE id = 1")
            .fetch_one(&mut **tx)
            .await?;
    if let Some(cursor) = cursor {
        return Ok((pass, cursor));
    }
    let pass = pass + 1;
    sqlx::query(
        "UPDATE sync_state SET full_pass = ?1, full_cursor = 0, full_pass_started_at = ?2, \
         events_cursor = COALESCE(events_cursor, ?2) WHERE id = 1",
    )
    .bind(pass)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok((pass, 0))
}

pub async fn close_full_pass(tx: &mut Transaction<'static, Sqlite>) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE sync_state SET full_cursor = NULL, full_pass_started_at = NULL WHERE id = 1",
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}
