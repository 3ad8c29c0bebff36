//! The `leads` table: upserting leads exactly as received, and marking
//! deletions without ever removing a row.

use std::collections::HashMap;

use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, AssertSqlSafe, Sqlite, SqlitePool, Transaction};

use super::Store;
use super::StoreError;
use crate::kommo::{Column, Lead, LeadId, SCALAR_COLUMNS};

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
fn next_chunk(remaining: usize) -> usize {
    if remaining >= ROWS_PER_STATEMENT {
        ROWS_PER_STATEMENT
    } else {
        1 << remaining.ilog2()
    }
}

/// `INSERT ... VALUES (...), (...) ON CONFLICT DO UPDATE` for `rows` leads.
fn upsert_sql(rows: usize) -> String {
    let columns = SCALAR_COLUMNS.join(", ");
    let row = format!(
        "(?{}, 0, NULL, ?, ?, ?)",
        ", ?".repeat(SCALAR_COLUMNS.len())
    );
    let updates: Vec<String> = SCALAR_COLUMNS
        .iter()
        .chain(&["custom_fields_values", "raw", "synced_at"])
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO leads (id, {columns}, is_deleted, deleted_at, custom_fields_values, raw, synced_at) \
         VALUES {} ON CONFLICT (id) DO UPDATE SET {}, is_deleted = 0, deleted_at = NULL",
        vec![row; rows].join(", "),
        updates.join(", ")
    )
}

/// Upserts alive leads, a few statements for a whole page; a lead that was
/// marked deleted becomes alive again. Fields of an unexpected type are
/// stored NULL with a warning (`raw` keeps them).
pub async fn upsert_alive(
    tx: &mut Transaction<'static, Sqlite>,
    leads: &[&Lead],
    now: i64,
) -> Result<(), StoreError> {
    let mut rest = leads;
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(next_chunk(rest.len()));
        rest = after;
        let mut args = SqliteArguments::default();
        for lead in chunk {
            if !lead.misfits.is_empty() {
                tracing::warn!(
                    lead_id = lead.id,
                    "lead {} has fields of an unexpected type ({}); stored NULL in those columns, `raw` keeps the lead as received",
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
        sqlx::query_with(AssertSqlSafe(upsert_sql(chunk.len())), args)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Adds one bound value.
fn bind<'q, T>(args: &mut SqliteArguments, value: T) -> Result<(), StoreError>
where
    T: sqlx::Encode<'q, Sqlite> + sqlx::Type<Sqlite>,
{
    args.add(value)
        .map_err(|e| StoreError::Sql(sqlx::Error::Encode(e)))
}

/// The ids as a JSON array, for `IN (SELECT value FROM json_each(?))`: one
/// bound value whatever the number of ids.
pub(super) fn id_list(ids: impl Iterator<Item = LeadId>) -> String {
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

/// Records a lead listed by `with=only_deleted`: marks the mirrored row deleted
/// (keeping its last alive content), or stores the minimal object when the
/// lead was never seen alive.
pub async fn mark_deleted_from_listing(
    tx: &mut Transaction<'static, Sqlite>,
    lead: &Lead,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO leads (id, updated_at, is_deleted, deleted_at, raw, synced_at) \
         VALUES (?, ?, 1, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET is_deleted = 1, \
         deleted_at = COALESCE(leads.deleted_at, excluded.deleted_at), synced_at = excluded.synced_at \
         WHERE leads.is_deleted = 0",
    )
    .bind(lead.id)
    .bind(lead.updated_at)
    .bind(now)
    .bind(lead.raw.get())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks a mirrored lead deleted (it is not alive in Kommo any more); a lead
/// the mirror never had is left alone.
pub async fn mark_gone(
    tx: &mut Transaction<'static, Sqlite>,
    id: LeadId,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE leads SET is_deleted = 1, deleted_at = ?2, synced_at = ?2 WHERE id = ?1 AND is_deleted = 0",
    )
    .bind(id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Notes that the unfinished full pass, if any, has seen these leads alive.
///
/// Whatever run upserted them: a lead a `--once` mirrors while a full pass is
/// unfinished (new, or restored) was alive after the pass started, and must
/// not be marked deleted when the pass completes without meeting it.
pub async fn mark_seen(
    tx: &mut Transaction<'static, Sqlite>,
    ids: &[LeadId],
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO lead_full_pass_seen (lead_id, full_pass) \
         SELECT j.value, s.full_pass FROM json_each(?1) AS j, sync_state AS s \
         WHERE s.id = 1 AND s.full_cursor IS NOT NULL \
         ON CONFLICT (lead_id) DO UPDATE SET full_pass = excluded.full_pass",
    )
    .bind(id_list(ids.iter().copied()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The alive leads of the mirror that the full pass has not seen, by id.
pub async fn unseen_alive(pool: &SqlitePool, pass: i64) -> Result<Vec<LeadId>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM leads WHERE is_deleted = 0 AND id NOT IN \
         (SELECT lead_id FROM lead_full_pass_seen WHERE full_pass = ?) ORDER BY id",
    )
    .bind(pass)
    .fetch_all(pool)
    .await?)
}

/// Whether the full pass has seen the lead alive.
pub async fn seen_in_pass(pool: &SqlitePool, pass: i64, id: LeadId) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM lead_full_pass_seen WHERE lead_id = ? AND full_pass = ?)",
    )
    .bind(id)
    .bind(pass)
    .fetch_one(pool)
    .await?)
}

/// Whether each of `ids` the mirror holds is marked deleted (ids it does
/// not hold are left out).
pub async fn deleted_flags(
    pool: &SqlitePool,
    ids: &[LeadId],
) -> Result<HashMap<LeadId, bool>, StoreError> {
    let rows: Vec<(LeadId, bool)> = sqlx::query_as(
        "SELECT id, is_deleted != 0 FROM leads WHERE id IN (SELECT value FROM json_each(?))",
    )
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

pub async fn counts(pool: &SqlitePool) -> Result<StoredLeadCounts, StoreError> {
    let (total, deleted, newest_update): (i64, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), SUM(is_deleted), \
         MAX(CASE WHEN is_deleted = 0 AND typeof(updated_at) = 'integer' THEN updated_at END) FROM leads",
    )
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
    /// The alive leads of the mirror the unfinished pass has not seen, by id:
    /// what it asks Kommo about before marking any deleted.
    pub async fn unseen_alive_leads(&self, pass: i64) -> Result<Vec<LeadId>, StoreError> {
        let db = self.db.flushed().await?;
        unseen_alive(db.pool(), pass).await
    }

    /// Whether the pass has seen the lead alive.
    pub async fn seen_in_pass(&self, pass: i64, id: LeadId) -> Result<bool, StoreError> {
        let db = self.db.flushed().await?;
        seen_in_pass(db.pool(), pass, id).await
    }

    /// Whether each of `ids` the mirror holds is marked deleted.
    pub async fn lead_deleted_flags(
        &self,
        ids: &[LeadId],
    ) -> Result<HashMap<LeadId, bool>, StoreError> {
        let db = self.db.flushed().await?;
        deleted_flags(db.pool(), ids).await
    }

    /// Lead counts (the sync compares them before and after a step).
    pub async fn lead_counts(&self) -> Result<StoredLeadCounts, StoreError> {
        let db = self.db.flushed().await?;
        counts(db.pool()).await
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
