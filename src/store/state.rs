//! The `sync_state` row: the cursors from which syncs resume, and the number
//! and progress of the full pass.

use sqlx::{Sqlite, SqlitePool, Transaction};

use super::Store;
use super::StoreError;

/// One window of `updated_at` of a full pass, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Number of the window within its pass.
    pub id: i64,
    /// Where the walk has reached (the next request starts here).
    pub cursor: i64,
    /// Last `updated_at` of the window (inclusive); `None` for the open window.
    pub end: Option<i64>,
    /// Walked to its end.
    pub done: bool,
}

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
         events_cursor = CASE WHEN ?3 IS NULL THEN events_cursor ELSE MAX(COALESCE(events_cursor, ?3), ?3) END \
         WHERE id = 1",
    )
    .bind(update.incremental)
    .bind(update.deleted)
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
        let windows: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM full_pass_windows WHERE full_pass = ?")
                .bind(pass)
                .fetch_one(&mut **tx)
                .await?;
        if windows == 0 {
            save_window(
                tx,
                pass,
                &Window {
                    id: 0,
                    cursor,
                    end: None,
                    done: false,
                },
            )
            .await?;
        }
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
    save_window(
        tx,
        pass,
        &Window {
            id: 0,
            cursor: 0,
            end: None,
            done: false,
        },
    )
    .await?;
    Ok((pass, 0))
}

/// Closes the pass: forgets its windows, and sets the incremental cursor to
/// the pass's start (Kommo's clock) minus `overlap`: every change since is
/// read again by the next incremental sync, whatever the pass met or missed
/// while it ran. The deleted-leads cursor moves there too (never back): a
/// lead deleted before the pass was not listed alive, so the pass asked for
/// it by id; one deleted while the pass ran is listed after that cursor.
pub async fn close_full_pass(
    tx: &mut Transaction<'static, Sqlite>,
    pass: i64,
    overlap: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE sync_state SET full_cursor = NULL, full_pass_started_at = NULL, \
         incremental_cursor = MAX(full_pass_started_at - ?1, 0), \
         deleted_cursor = MAX(COALESCE(deleted_cursor, 0), full_pass_started_at - ?1, 0) \
         WHERE id = 1 AND full_pass = ?2 AND full_cursor IS NOT NULL",
    )
    .bind(overlap)
    .bind(pass)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM full_pass_windows WHERE full_pass = ?")
        .bind(pass)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The windows of a pass.
pub async fn windows(pool: &SqlitePool, pass: i64) -> Result<Vec<Window>, StoreError> {
    let rows: Vec<(i64, i64, Option<i64>, bool)> = sqlx::query_as(
        "SELECT window_id, cursor, end_at, done FROM full_pass_windows WHERE full_pass = ? ORDER BY window_id",
    )
    .bind(pass)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, cursor, end, done)| Window {
            id,
            cursor,
            end,
            done,
        })
        .collect())
}

/// Cuts a window short and adds the window that takes the rest of its range.
/// Only this moves a window's end: a page committed meanwhile by the window's
/// walk writes its cursor and `done`, never its end.
pub async fn save_split(
    tx: &mut Transaction<'static, Sqlite>,
    pass: i64,
    shortened: &Window,
    new: &Window,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE full_pass_windows SET end_at = ? WHERE full_pass = ? AND window_id = ?")
        .bind(shortened.end)
        .bind(pass)
        .bind(shortened.id)
        .execute(&mut **tx)
        .await?;
    save_window(tx, pass, new).await
}

/// Writes a window's cursor and `done` (a new window: all of it), and the pass's lowest pending cursor into
/// `sync_state.full_cursor` (what `--status` shows).
pub async fn save_window(
    tx: &mut Transaction<'static, Sqlite>,
    pass: i64,
    window: &Window,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO full_pass_windows (full_pass, window_id, cursor, end_at, done) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (full_pass, window_id) DO UPDATE SET cursor = MAX(cursor, excluded.cursor), \
         done = excluded.done",
    )
    .bind(pass)
    .bind(window.id)
    .bind(window.cursor)
    .bind(window.end)
    .bind(window.done)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE sync_state SET full_cursor = COALESCE((SELECT MIN(cursor) FROM full_pass_windows \
         WHERE full_pass = ?1 AND done = 0), full_cursor) WHERE id = 1 AND full_cursor IS NOT NULL",
    )
    .bind(pass)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// The sync cursors.
    pub async fn sync_state(&self) -> Result<SyncState, StoreError> {
        let db = self.db.flushed().await?;
        read(db.pool()).await
    }

    /// Starts a full pass, or continues the unfinished one: its number and the
    /// cursor to resume from.
    pub async fn begin_full_pass(&self, now: i64) -> Result<(i64, i64), StoreError> {
        let db = self.db.flushed().await?;
        let mut tx = db.begin().await?;
        let result = begin_full_pass(&mut tx, now).await?;
        tx.commit().await?;
        Ok(result)
    }

    /// The windows of a full pass.
    pub async fn full_pass_windows(&self, pass: i64) -> Result<Vec<Window>, StoreError> {
        let db = self.db.flushed().await?;
        windows(db.pool(), pass).await
    }

    /// Records a split of a window in two, atomically: the window's new end
    /// and the new window (nothing else of the window changes).
    pub async fn save_split(
        &self,
        pass: i64,
        shortened: &Window,
        new: &Window,
    ) -> Result<(), StoreError> {
        let db = self.db.flushed().await?;
        let mut tx = db.begin().await?;
        save_split(&mut tx, pass, shortened, new).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Closes the full pass `pass` (its deletions are already confirmed and
    /// committed): forgets its windows and leaves the incremental cursor,
    /// and the deleted-leads cursor unless it is further on, at the pass's
    /// start minus `overlap`. Every lead of the mirror deleted before the
    /// pass began was asked for by id and is marked; one deleted since is
    /// listed deleted after that cursor.
    pub async fn finish_full_pass(&self, pass: i64, overlap: i64) -> Result<(), StoreError> {
        let db = self.db.flushed().await?;
        let mut tx = db.begin().await?;
        close_full_pass(&mut tx, pass, overlap).await?;
        tx.commit().await?;
        Ok(())
    }
}
