//! The table of each entity (`leads`, `contacts`, `companies`): upserting
//! records exactly as received, and marking deletions without ever removing
//! a row. Table and column names come from the [`Entity`].

use std::collections::HashMap;

use sqlx::{Any, AnyPool, AssertSqlSafe, Transaction};

use super::Store;
use super::StoreError;
use super::backend::Backend;
use super::rows::{bind, execute_in_chunks, row_params};
use crate::kommo::{Column, Entity, LEADS, Record, RecordId};

/// `INSERT ... VALUES (...), (...) ON CONFLICT DO UPDATE` for `rows`
/// records of `entity`.
fn upsert_sql(backend: Backend, entity: &Entity, rows: usize) -> String {
    let table = entity.plural;
    let columns = entity.column_names().collect::<Vec<_>>().join(", ");
    // Bound: id, the scalar columns, custom_fields_values, raw, synced_at.
    let width = entity.columns.len() + 4;
    let rows: Vec<String> = (0..rows)
        .map(|row| {
            let values = row_params(backend, row, width, |i, p| {
                if i == width - 3 || i == width - 2 {
                    backend.json_of(p)
                } else {
                    p.to_string()
                }
            });
            format!("({values}, 0, NULL)")
        })
        .collect();
    let updates: Vec<String> = entity
        .column_names()
        .chain(["custom_fields_values", "raw", "synced_at"])
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO {table} (id, {columns}, custom_fields_values, raw, synced_at, is_deleted, deleted_at) \
         VALUES {} ON CONFLICT (id) DO UPDATE SET {}, is_deleted = 0, deleted_at = NULL",
        rows.join(", "),
        updates.join(", ")
    )
}

/// Upserts alive records of `entity`, a few statements for a whole page; a
/// record that was marked deleted becomes alive again. Fields of an
/// unexpected type are stored NULL with a warning (`raw` keeps them).
pub async fn upsert_alive(
    tx: &mut Transaction<'static, Any>,
    entity: &Entity,
    records: &[&Record],
    now: i64,
) -> Result<(), StoreError> {
    let backend = Backend::of(tx);
    for record in records.iter().filter(|r| !r.misfits.is_empty()) {
        tracing::warn!(
            entity = entity.plural,
            id = record.id,
            "{} {} has fields of an unexpected type ({}); stored NULL in those columns, `raw` keeps it as received",
            entity.singular,
            record.id,
            record.misfits.join(", ")
        );
    }
    let sql = |rows| upsert_sql(backend, entity, rows);
    execute_in_chunks(tx, records, sql, |args, record| {
        bind(args, record.id)?;
        for (field, column) in entity.columns.iter().zip(&record.columns) {
            match column {
                // A NULL of the column's type: PostgreSQL prepares the
                // statement once with the types of its first values.
                Column::Null if field.is_text() => bind(args, None::<String>)?,
                Column::Null => bind(args, None::<i64>)?,
                Column::Integer(n) => bind(args, *n)?,
                Column::Text(text) => bind(args, backend.text(text).into_owned())?,
            }
        }
        bind(args, record.custom_fields_json.as_deref())?;
        bind(args, record.raw.get())?;
        bind(args, now)
    })
    .await
}

/// The ids as a JSON array, for [`Backend::in_ids`]: one bound value
/// whatever the number of ids.
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
    tx: &mut Transaction<'static, Any>,
    entity: &Entity,
    lead: &Record,
    now: i64,
) -> Result<(), StoreError> {
    let table = entity.plural;
    let raw = Backend::of(tx).json(4);
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (id, updated_at, is_deleted, deleted_at, raw, synced_at) \
         VALUES ($1, $2, 1, $3, {raw}, $5) \
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
    tx: &mut Transaction<'static, Any>,
    entity: &Entity,
    id: RecordId,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {} SET is_deleted = 1, deleted_at = $2, synced_at = $2 WHERE id = $1 AND is_deleted = 0",
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
    tx: &mut Transaction<'static, Any>,
    entity: &Entity,
    ids: &[RecordId],
) -> Result<(), StoreError> {
    let e = entity.singular;
    let listed = Backend::of(tx).ids(1);
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {e}_full_pass_seen ({e}_id, full_pass) \
         SELECT j.value, s.full_pass FROM {listed} AS j, sync_state AS s \
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
    pool: &AnyPool,
    entity: &Entity,
    pass: i64,
) -> Result<Vec<RecordId>, StoreError> {
    let e = entity.singular;
    Ok(sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT id FROM {} WHERE is_deleted = 0 AND id NOT IN \
         (SELECT {e}_id FROM {e}_full_pass_seen WHERE full_pass = $1) ORDER BY id",
        entity.plural
    )))
    .bind(pass)
    .fetch_all(pool)
    .await?)
}

/// Whether the full pass has seen the record alive.
pub async fn seen_in_pass(
    pool: &AnyPool,
    entity: &Entity,
    pass: i64,
    id: RecordId,
) -> Result<bool, StoreError> {
    let e = entity.singular;
    let seen: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {e}_full_pass_seen WHERE {e}_id = $1 AND full_pass = $2"
    )))
    .bind(id)
    .bind(pass)
    .fetch_one(pool)
    .await?;
    Ok(seen > 0)
}

/// Whether each of `ids` the mirror holds is marked deleted (ids it does
/// not hold are left out).
pub async fn deleted_flags(
    pool: &AnyPool,
    backend: Backend,
    entity: &Entity,
    ids: &[RecordId],
) -> Result<HashMap<RecordId, bool>, StoreError> {
    let rows: Vec<(RecordId, i64)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT id, is_deleted FROM {} WHERE id {}",
        entity.plural,
        backend.in_ids(1)
    )))
    .bind(id_list(ids.iter().copied()))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, deleted)| (id, deleted != 0))
        .collect())
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

pub async fn counts(
    pool: &AnyPool,
    backend: Backend,
    entity: &Entity,
) -> Result<StoredLeadCounts, StoreError> {
    let (total, deleted, newest_update): (i64, i64, Option<i64>) =
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT COUNT(*), COUNT(CASE WHEN is_deleted != 0 THEN 1 END), \
             MAX(CASE WHEN is_deleted = 0 AND {} THEN updated_at END) FROM {}",
            backend.is_integer("updated_at"),
            entity.plural
        )))
        .fetch_one(pool)
        .await?;
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
        deleted_flags(db.pool(), db.backend(), entity, ids).await
    }

    /// Counts of `entity`'s records (the sync compares them before and
    /// after a step).
    pub async fn record_counts(&self, entity: &Entity) -> Result<StoredLeadCounts, StoreError> {
        let db = self.db.flushed().await?;
        counts(db.pool(), db.backend(), entity).await
    }

    /// Lead counts.
    pub async fn lead_counts(&self) -> Result<StoredLeadCounts, StoreError> {
        self.record_counts(&LEADS).await
    }

    /// The Kommo account id the mirrored leads carry, if any (for messages).
    pub async fn account_id(&self) -> Result<Option<i64>, StoreError> {
        let sql = format!(
            "SELECT account_id FROM leads WHERE {} LIMIT 1",
            self.db.backend().is_integer("account_id")
        );
        Ok(sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_optional(self.db.committed())
            .await?)
    }
}
