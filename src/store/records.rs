//! The table of each entity (`leads`, `contacts`, `companies`): upserting
//! records exactly as received, and marking deletions without ever removing
//! a row. Table and column names come from the [`Entity`].

use std::collections::HashMap;

use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, AssertSqlSafe, Sqlite, SqlitePool, Transaction};

use super::Store;
use super::StoreError;
use crate::kommo::{Column, Entity, LEADS, Record, RecordId};

/// Leads per upsert statement. SQLite keeps, while a statement runs, a copy
/// of every page it changes (the statement journal, in memory): with 250
/// leads a statement, that copy grew with the account, as the leads of one
/// page land on more distinct B-tree pages (heaptrack, 100k leads: 15 MiB
/// of SQLite's peak; 64 rows: the heap's peak as at 25k). See
/// docs/performance.md.
const ROWS_PER_STATEMENT: usize = 64;

/// How many of `remaining` leads the next statement takes: a full statement,
/// else the largest power of two, so that at most seven statement shapes are ever
/// compiled and kept prepared (one per count would fill sqlx's cache with
/// large programs).
pub(super) fn next_chunk(remaining: usize) -> usize {
    if remaining >= ROWS_PER_STATEMENT {
        ROWS_PER_STATEMENT
    } else {
        1 << remaining.ilog2()
    }
}

/// `INSERT ... VALUES (...), (...) ON CONFLICT DO UPDATE` for `rows`
/// records of `entity`.
fn upsert_sql(entity: &Entity, rows: usize) -> String {
    let table = entity.plural;
    let columns = entity.column_names().collect::<Vec<_>>().join(", ");
    let row = format!(
        "(?{}, 0, NULL, ?, ?, ?)",
        ", ?".repeat(entity.columns.len())
    );
    let updates: Vec<String> = entity
        .column_names()
        .chain(["custom_fields_values", "raw", "synced_at"])
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO {table} (id, {columns}, is_deleted, deleted_at, custom_fields_values, raw, synced_at) \
         VALUES {} ON CONFLICT (id) DO UPDATE SET {}, is_deleted = 0, deleted_at = NULL",
        vec![row; rows].join(", "),
        updates.join(", ")
    )
}

/// Upserts alive records of `entity`, a few statements for a whole page; a
/// record that was marked deleted becomes alive again. Fields of an
/// unexpected type are stored NULL with a warning (`raw` keeps them).
pub async fn upsert_alive(
    tx: &mut Transaction<'static, Sqlite>,
    entity: &Entity,
    records: &[&Record],
    now: i64,
) -> Result<(), StoreError> {
    let mut rest = records;
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(next_chunk(rest.len()));
        rest = after;
        let mut args = SqliteArguments::default();
        for lead in chunk {
            if !lead.misfits.is_empty() {
                tracing::warn!(
                    entity = entity.plural,
                    id = lead.id,
                    "{} {} has fields of an unexpected type ({}); stored NULL in those columns, `raw` keeps it as received",
                    entity.singular,
                    lead.id,
                    lead.misfits.join(", ")
                );
            }
            bind(&mut args, lead.id)?;
            for column in &lead.columns {
                match column {
                    Column::Null => bind(&mut args, None::<i64>)?,
                    Column::Integer(n) => bind(&mut args, *n)?,
                    Column::Text(text) => bind(&mut args, text.as_str())?,
                }
            }
            bind(&mut args, lead.custom_fields_json.as_deref())?;
            bind(&mut args, lead.raw.get())?;
            bind(&mut args, now)?;
        }
        sqlx::query_with(AssertSqlSafe(upsert_sql(entity, chunk.len())), args)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Adds one bound value.
pub(super) fn bind<'q, T>(args: &mut SqliteArguments, value: T) -> Result<(), StoreError>
where
    T: sqlx::Encode<'q, Sqlite> + sqlx::Type<Sqlite>,
{
    args.add(value)
        .map_err(|e| StoreError::Sql(sqlx::Error::Encode(e)))
}

/// The ids as a JSON array, for `IN (SELECT value FROM json_each(?))`: one
/// bound value whatever the number of ids.
pub(super) fn id_list(ids: impl Iterator<Item = RecordId>) -> String {
    let mut out = String::from("[");
    for (i, id) in ids.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&id.to_string());
    }
    out.push(']');
    out
}

/// Records a record listed as deleted (leads' `with=only_deleted`): marks
/// the mirrored row deleted (keeping its last alive content), or stores the
/// minimal object when it was never seen alive.
pub async fn mark_deleted_from_listing(
    tx: &mut Transaction<'static, Sqlite>,
    entity: &Entity,
    lead: &Record,
    now: i64,
) -> Result<(), StoreError> {
    let table = entity.plural;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (id, updated_at, is_deleted, deleted_at, raw, synced_at) \
         VALUES (?, ?, 1, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET is_deleted = 1, \
         deleted_at = COALESCE({table}.deleted_at, excluded.deleted_at), synced_at = excluded.synced_at \
         WHERE {table}.is_deleted = 0"
    )))
    .bind(lead.id)
    .bind(lead.updated_at)
    .bind(now)
    .bind(lead.raw.get())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks a mirrored record deleted (it is not alive in Kommo any more); a
/// record the mirror never had is left alone.
pub async fn mark_gone(
    tx: &mut Transaction<'static, Sqlite>,
    entity: &Entity,
    id: RecordId,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {} SET is_deleted = 1, deleted_at = ?2, synced_at = ?2 WHERE id = ?1 AND is_deleted = 0",
        entity.plural
    )))
    .bind(id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Notes that the unfinished full pass, if any, has seen these records
/// alive (in `{entity}_full_pass_seen`).
///
/// Whatever run upserted them: a record a `--once` mirrors while a full
/// pass is unfinished (new, or restored) was alive after the pass started,
/// and must not be marked deleted when the pass completes without meeting
/// it.
pub async fn mark_seen(
    tx: &mut Transaction<'static, Sqlite>,
    entity: &Entity,
    ids: &[RecordId],
) -> Result<(), StoreError> {
    let e = entity.singular;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {e}_full_pass_seen ({e}_id, full_pass) \
         SELECT j.value, s.full_pass FROM json_each(?1) AS j, sync_state AS s \
         WHERE s.id = 1 AND s.full_cursor IS NOT NULL \
         ON CONFLICT ({e}_id) DO UPDATE SET full_pass = excluded.full_pass"
    )))
    .bind(id_list(ids.iter().copied()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The alive records of the mirror that the full pass has not seen, by id.
pub async fn unseen_alive(
    pool: &SqlitePool,
    entity: &Entity,
    pass: i64,
) -> Result<Vec<RecordId>, StoreError> {
    let e = entity.singular;
    Ok(sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT id FROM {} WHERE is_deleted = 0 AND id NOT IN \
         (SELECT {e}_id FROM {e}_full_pass_seen WHERE full_pass = ?) ORDER BY id",
        entity.plural
    )))
    .bind(pass)
    .fetch_all(pool)
    .await?)
}

/// Whether the full pass has seen the record alive.
pub async fn seen_in_pass(
    pool: &SqlitePool,
    entity: &Entity,
    pass: i64,
    id: RecordId,
) -> Result<bool, StoreError> {
    let e = entity.singular;
    Ok(sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM {e}_full_pass_seen WHERE {e}_id = ? AND full_pass = ?)"
    )))
    .bind(id)
    .bind(pass)
    .fetch_one(pool)
    .await?)
}

/// Whether each of `ids` the mirror holds is marked deleted (ids it does
/// not hold are left out).
pub async fn deleted_flags(
    pool: &SqlitePool,
    entity: &Entity,
    ids: &[RecordId],
) -> Result<HashMap<RecordId, bool>, StoreError> {
    let rows: Vec<(RecordId, bool)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT id, is_deleted != 0 FROM {} WHERE id IN (SELECT value FROM json_each(?))",
        entity.plural
    )))
    .bind(id_list(ids.iter().copied()))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// How many leads the mirror holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoredLeadCounts {
    pub total: i64,
    pub alive: i64,
    pub deleted: i64,
    /// Largest `updated_at` of an alive lead.
    pub newest_update: Option<i64>,
}

pub async fn counts(pool: &SqlitePool, entity: &Entity) -> Result<StoredLeadCounts, StoreError> {
    let (total, deleted, newest_update): (i64, Option<i64>, Option<i64>) =
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT COUNT(*), SUM(is_deleted), \
             MAX(CASE WHEN is_deleted = 0 AND typeof(updated_at) = 'integer' THEN updated_at END) FROM {}",
            entity.plural
        )))
    .fetch_one(pool)
    .await?;
    let deleted = deleted.unwrap_or(0);
    Ok(StoredLeadCounts {
        total,
        alive: total - deleted,
        deleted,
        newest_update,
    })
}

impl Store {
    /// The alive records of `entity` the unfinished pass has not seen, by
    /// id: what it asks Kommo about before marking any deleted.
    pub async fn unseen_alive(
        &self,
        entity: &Entity,
        pass: i64,
    ) -> Result<Vec<RecordId>, StoreError> {
        let db = self.db.flushed().await?;
        unseen_alive(db.pool(), entity, pass).await
    }

    /// Whether the pass has seen the record alive.
    pub async fn seen_in_pass(
        &self,
        entity: &Entity,
        pass: i64,
        id: RecordId,
    ) -> Result<bool, StoreError> {
        let db = self.db.flushed().await?;
        seen_in_pass(db.pool(), entity, pass, id).await
    }

    /// Whether each of `ids` the mirror holds is marked deleted.
    pub async fn deleted_flags(
        &self,
        entity: &Entity,
        ids: &[RecordId],
    ) -> Result<HashMap<RecordId, bool>, StoreError> {
        let db = self.db.flushed().await?;
        deleted_flags(db.pool(), entity, ids).await
    }

    /// Counts of `entity`'s records (the sync compares them before and
    /// after a step).
    pub async fn record_counts(&self, entity: &Entity) -> Result<StoredLeadCounts, StoreError> {
        let db = self.db.flushed().await?;
        counts(db.pool(), entity).await
    }

    /// Lead counts.
    pub async fn lead_counts(&self) -> Result<StoredLeadCounts, StoreError> {
        self.record_counts(&LEADS).await
    }

    /// The Kommo account id the mirrored leads carry, if any (for messages).
    pub async fn account_id(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT account_id FROM leads WHERE typeof(account_id) = 'integer' LIMIT 1",
        )
        .fetch_optional(self.db.committed())
        .await?)
    }
}
