//! Where the syncs stand: each entity's cursors and the last full pass that
//! walked it whole (`entity_sync_state`), and the `sync_state` row (the
//! number, start and progress of the full pass, the events cursor); the
//! windows of an unfinished full pass, per entity (`full_pass_windows`).

use sqlx::{Any, AnyPool, AssertSqlSafe, Transaction};

use super::Store;
use super::StoreError;
use super::backend::Backend;
use crate::kommo::Entity;

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

/// Where the syncs stand, for the whole account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct SyncState {
    /// Number of the current or last full pass.
    pub full_pass: i64,
    /// `updated_at` reached by the unfinished full pass (the smallest cursor
    /// of its open windows); `None` when none is unfinished.
    pub full_cursor: Option<i64>,
    /// When the unfinished full pass started.
    pub full_pass_started_at: Option<i64>,
    /// `created_at` up to which deletion and restore events have been followed.
    pub events_cursor: Option<i64>,
    /// When the structure was last read and written (this machine's clock).
    pub structure_read_at: Option<i64>,
}

/// Where one entity's syncs stand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct EntityState {
    /// Largest `updated_at` mirrored; incremental syncs start here minus the overlap.
    pub incremental_cursor: Option<i64>,
    /// Largest deletion time seen in `with=only_deleted` listings (leads).
    pub deleted_cursor: Option<i64>,
    /// The last full pass that walked the entity whole and confirmed its
    /// deletions.
    pub full_pass_done: i64,
}

/// Cursor moves that go with a page: `incremental` and `deleted` are the
/// page's entity's, `events` the account's. Each cursor only ever moves
/// forward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CursorUpdate {
    pub incremental: Option<i64>,
    pub deleted: Option<i64>,
    pub events: Option<i64>,
}

pub async fn read(pool: &AnyPool) -> Result<SyncState, StoreError> {
    Ok(sqlx::query_as(
        "SELECT full_pass, full_cursor, full_pass_started_at, events_cursor, structure_read_at \
         FROM sync_state WHERE id = 1",
    )
    .fetch_one(pool)
    .await?)
}

pub async fn read_entity(pool: &AnyPool, entity: &Entity) -> Result<EntityState, StoreError> {
    Ok(sqlx::query_as(
        "SELECT incremental_cursor, deleted_cursor, full_pass_done FROM entity_sync_state WHERE entity = $1",
    )
    .bind(entity.plural)
    .fetch_optional(pool)
    .await?
    .unwrap_or_default())
}

/// Moves the cursors of `update` (see [`CursorUpdate`]).
pub async fn apply(
    tx: &mut Transaction<'static, Any>,
    entity: &Entity,
    update: &CursorUpdate,
) -> Result<(), StoreError> {
    let backend = Backend::of(tx);
    if update.incremental.is_some() || update.deleted.is_some() {
        // Each cursor moves only forward; a cursor not moved keeps its value.
        let forward = |column: &str, param: &str| {
            format!(
                "{column} = COALESCE({}, entity_sync_state.{column})",
                backend.greatest(
                    &format!("COALESCE(entity_sync_state.{column}, {param})"),
                    param
                )
            )
        };
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO entity_sync_state (entity, incremental_cursor, deleted_cursor) VALUES ($1, $2, $3) \
             ON CONFLICT (entity) DO UPDATE SET {}, {}",
            forward("incremental_cursor", "$2"),
            forward("deleted_cursor", "$3"),
        )))
        .bind(entity.plural)
        .bind(update.incremental)
        .bind(update.deleted)
        .execute(&mut **tx)
        .await?;
    }
    if update.events.is_some() {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE sync_state SET events_cursor = {} WHERE id = 1",
            backend.greatest("COALESCE(events_cursor, $1)", "$1")
        )))
        .bind(update.events)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Starts a full pass, or continues the unfinished one: its number and the
/// cursor it had reached (0 for a new pass). The first pass also starts the
/// events cursor (earlier deletions are caught by the pass itself).
pub async fn begin_full_pass(
    tx: &mut Transaction<'static, Any>,
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
        "UPDATE sync_state SET full_pass = $1, full_cursor = 0, full_pass_started_at = $2, \
         events_cursor = COALESCE(events_cursor, $2) WHERE id = 1",
    )
    .bind(pass)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok((pass, 0))
}

/// The windows of `entity` in pass `pass`, the first one opened when its
/// walk begins; `None` when the pass has already walked it whole.
pub async fn entity_windows(
    tx: &mut Transaction<'static, Any>,
    pass: i64,
    entity: &Entity,
) -> Result<Option<Vec<Window>>, StoreError> {
    let done: Option<i64> =
        sqlx::query_scalar("SELECT full_pass_done FROM entity_sync_state WHERE entity = $1")
            .bind(entity.plural)
            .fetch_optional(&mut **tx)
            .await?;
    if done.is_some_and(|done| done >= pass) {
        return Ok(None);
    }
    let mut windows = windows(&mut **tx, pass, entity).await?;
    if windows.is_empty() {
        let first = Window {
            id: 0,
            cursor: 0,
            end: None,
            done: false,
        };
        save_window(tx, pass, entity, &first).await?;
        windows.push(first);
    }
    Ok(Some(windows))
}

/// Ends `entity`'s part of pass `pass` (its deletions are confirmed and
/// committed): forgets its windows, notes the pass done for it, and leaves
/// its incremental cursor, and its deleted cursor unless it is further on,
/// at the pass's start minus `overlap`. Every record of the mirror deleted
/// before the pass began was asked for by id and is marked; one deleted
/// since is met after that cursor.
pub async fn finish_entity_pass(
    tx: &mut Transaction<'static, Any>,
    pass: i64,
    entity: &Entity,
    overlap: i64,
) -> Result<(), StoreError> {
    let backend = Backend::of(tx);
    let start = backend.greatest("full_pass_started_at - $2", "0");
    let deleted = backend.greatest(
        "COALESCE(entity_sync_state.deleted_cursor, 0)",
        "excluded.deleted_cursor",
    );
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO entity_sync_state (entity, incremental_cursor, deleted_cursor, full_pass_done) \
         SELECT $1, {start}, {start}, $3 \
         FROM sync_state WHERE id = 1 AND full_pass = $3 AND full_cursor IS NOT NULL \
         ON CONFLICT (entity) DO UPDATE SET incremental_cursor = excluded.incremental_cursor, \
         deleted_cursor = {deleted}, full_pass_done = excluded.full_pass_done"
    )))
    .bind(entity.plural)
    .bind(overlap)
    .bind(pass)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM full_pass_windows WHERE full_pass = $1 AND entity = $2")
        .bind(pass)
        .bind(entity.plural)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Closes the full pass `pass`, every entity of it finished.
pub async fn close_full_pass(
    tx: &mut Transaction<'static, Any>,
    pass: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE sync_state SET full_cursor = NULL, full_pass_started_at = NULL \
         WHERE id = 1 AND full_pass = $1 AND full_cursor IS NOT NULL",
    )
    .bind(pass)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM full_pass_windows WHERE full_pass = $1")
        .bind(pass)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The windows of `entity` in a full pass, by id.
pub async fn windows<'e, E>(
    executor: E,
    pass: i64,
    entity: &Entity,
) -> Result<Vec<Window>, StoreError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let rows: Vec<(i64, i64, Option<i64>, i64)> = sqlx::query_as(
        "SELECT window_id, cursor, end_at, done FROM full_pass_windows \
         WHERE full_pass = $1 AND entity = $2 ORDER BY window_id",
    )
    .bind(pass)
    .bind(entity.plural)
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, cursor, end, done)| Window {
            id,
            cursor,
            end,
            done: done != 0,
        })
        .collect())
}

/// Records a split: the shortened window's new end and the new window.
pub async fn save_split(
    tx: &mut Transaction<'static, Any>,
    pass: i64,
    entity: &Entity,
    shortened: &Window,
    new: &Window,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE full_pass_windows SET end_at = $1 WHERE full_pass = $2 AND entity = $3 AND window_id = $4",
    )
    .bind(shortened.end)
    .bind(pass)
    .bind(entity.plural)
    .bind(shortened.id)
    .execute(&mut **tx)
    .await?;
    save_window(tx, pass, entity, new).await
}

/// Saves a window's progress (its cursor only moves forward) and the pass's
/// `full_cursor` (the smallest cursor of its open windows).
pub async fn save_window(
    tx: &mut Transaction<'static, Any>,
    pass: i64,
    entity: &Entity,
    window: &Window,
) -> Result<(), StoreError> {
    let cursor = Backend::of(tx).greatest("full_pass_windows.cursor", "excluded.cursor");
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO full_pass_windows (full_pass, entity, window_id, cursor, end_at, done) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (full_pass, entity, window_id) DO UPDATE SET cursor = {cursor}, \
         done = excluded.done"
    )))
    .bind(pass)
    .bind(entity.plural)
    .bind(window.id)
    .bind(window.cursor)
    .bind(window.end)
    .bind(i64::from(window.done))
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE sync_state SET full_cursor = COALESCE((SELECT MIN(cursor) FROM full_pass_windows \
         WHERE full_pass = $1 AND done = 0), full_cursor) WHERE id = 1 AND full_cursor IS NOT NULL",
    )
    .bind(pass)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Where the syncs stand, for the whole account.
    pub async fn sync_state(&self) -> Result<SyncState, StoreError> {
        let db = self.db.flushed().await?;
        read(db.pool()).await
    }

    /// Where `entity`'s syncs stand.
    pub async fn entity_state(&self, entity: &Entity) -> Result<EntityState, StoreError> {
        let db = self.db.flushed().await?;
        read_entity(db.pool(), entity).await
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

    /// The windows of `entity` in the pass (see [`entity_windows`]).
    pub async fn entity_windows(
        &self,
        pass: i64,
        entity: &Entity,
    ) -> Result<Option<Vec<Window>>, StoreError> {
        let db = self.db.flushed().await?;
        let mut tx = db.begin().await?;
        let result = entity_windows(&mut tx, pass, entity).await?;
        tx.commit().await?;
        Ok(result)
    }

    /// The windows of `entity` in a full pass, as stored.
    pub async fn full_pass_windows(
        &self,
        pass: i64,
        entity: &Entity,
    ) -> Result<Vec<Window>, StoreError> {
        let db = self.db.flushed().await?;
        windows(db.pool(), pass, entity).await
    }

    /// Records a split of a window in two, atomically: the window's new end
    /// and the new window (nothing else of the window changes).
    pub async fn save_split(
        &self,
        pass: i64,
        entity: &Entity,
        shortened: &Window,
        new: &Window,
    ) -> Result<(), StoreError> {
        let db = self.db.flushed().await?;
        let mut tx = db.begin().await?;
        save_split(&mut tx, pass, entity, shortened, new).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends `entity`'s part of the pass (see [`finish_entity_pass`]).
    pub async fn finish_entity_pass(
        &self,
        pass: i64,
        entity: &Entity,
        overlap: i64,
    ) -> Result<(), StoreError> {
        let db = self.db.flushed().await?;
        let mut tx = db.begin().await?;
        finish_entity_pass(&mut tx, pass, entity, overlap).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Closes the full pass `pass`, every entity of it finished.
    pub async fn finish_full_pass(&self, pass: i64) -> Result<(), StoreError> {
        let db = self.db.flushed().await?;
        let mut tx = db.begin().await?;
        close_full_pass(&mut tx, pass).await?;
        tx.commit().await?;
        Ok(())
    }
}
