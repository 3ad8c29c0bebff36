//! The `leads` table: upserting leads exactly as received, and marking
//! deletions without ever removing a row.

use serde_json::Value;
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::StoreError;
use crate::kommo::{Lead, LeadId};

/// The scalar columns copied from the lead's field of the same name, "as Kommo
/// sends them" (SQLite keeps the type received: an integer stays an integer, a
/// string a string, null NULL).
pub const SCALAR_COLUMNS: [&str; 17] = [
    "name",
    "price",
    "responsible_user_id",
    "group_id",
    "status_id",
    "pipeline_id",
    "loss_reason_id",
    "source_id",
    "created_by",
    "updated_by",
    "score",
    "account_id",
    "labor_cost",
    "created_at",
    "updated_at",
    "closed_at",
    "closest_task_at",
];

const UPSERT_ALIVE: &str = "INSERT INTO leads (id, name, price, responsible_user_id, group_id, \
    status_id, pipeline_id, loss_reason_id, source_id, created_by, updated_by, score, account_id, \
    labor_cost, created_at, updated_at, closed_at, closest_task_at, is_deleted, deleted_at, \
    custom_fields_values, raw, synced_at) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, ?, ?, ?) \
    ON CONFLICT (id) DO UPDATE SET name = excluded.name, price = excluded.price, \
    responsible_user_id = excluded.responsible_user_id, group_id = excluded.group_id, \
    status_id = excluded.status_id, pipeline_id = excluded.pipeline_id, \
    loss_reason_id = excluded.loss_reason_id, source_id = excluded.source_id, \
    created_by = excluded.created_by, updated_by = excluded.updated_by, score = excluded.score, \
    account_id = excluded.account_id, labor_cost = excluded.labor_cost, \
    created_at = excluded.created_at, updated_at = excluded.updated_at, \
    closed_at = excluded.closed_at, closest_task_at = excluded.closest_task_at, \
    is_deleted = 0, deleted_at = NULL, custom_fields_values = excluded.custom_fields_values, \
    raw = excluded.raw, synced_at = excluded.synced_at";

/// Upserts an alive lead; a lead that was marked deleted becomes alive again.
pub async fn upsert_alive(
    tx: &mut Transaction<'static, Sqlite>,
    lead: &Lead,
    now: i64,
) -> Result<(), StoreError> {
    let mut query = sqlx::query(UPSERT_ALIVE).bind(lead.id);
    let mut misfits = Vec::new();
    for column in SCALAR_COLUMNS {
        let value = lead.raw.get(column).unwrap_or(&Value::Null);
        query = match (column, value) {
            (_, Value::Null) => query.bind(None::<i64>),
            ("name", Value::String(text)) => query.bind(text.as_str()),
            (_, Value::Number(n)) if column != "name" && n.is_i64() => query.bind(n.as_i64()),
            (_, other) => {
                misfits.push((column, kind_of(other)));
                query.bind(None::<i64>)
            }
        };
    }
    let custom_fields = match lead.raw.get("custom_fields_values") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Array(_)) => Some(v.to_string()),
        Some(other) => {
            misfits.push(("custom_fields_values", kind_of(other)));
            None
        }
    };
    if !misfits.is_empty() {
        let fields: Vec<String> = misfits
            .iter()
            .map(|(column, kind)| format!("{column} is {kind}"))
            .collect();
        tracing::warn!(
            lead_id = lead.id,
            "lead {} has fields of an unexpected type ({}); stored NULL in those columns, `raw` keeps the lead as received",
            lead.id,
            fields.join(", ")
        );
    }
    let raw = Value::Object(lead.raw.clone()).to_string();
    query
        .bind(custom_fields)
        .bind(raw)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// `a string`, `an object`... for the warning about a misfit.
fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() => "an integer",
        Value::Number(_) => "a fractional or out-of-range number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Records a lead listed by `with=only_deleted`: marks the mirrored row deleted
/// (keeping its last alive content), or stores the minimal object when the
/// lead was never seen alive.
pub async fn mark_deleted_from_listing(
    tx: &mut Transaction<'static, Sqlite>,
    lead: &Lead,
    now: i64,
) -> Result<(), StoreError> {
    let raw = Value::Object(lead.raw.clone()).to_string();
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
    .bind(raw)
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

/// Notes that the unfinished full pass, if any, has seen this lead alive.
///
/// Whatever run upserted it: a lead a `--once` mirrors while a full pass is
/// unfinished (new, or restored) was alive after the pass started, and must
/// not be marked deleted when the pass completes without meeting it.
pub async fn mark_seen(
    tx: &mut Transaction<'static, Sqlite>,
    id: LeadId,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO lead_full_pass_seen (lead_id, full_pass) \
         SELECT ?1, full_pass FROM sync_state WHERE id = 1 AND full_cursor IS NOT NULL \
         ON CONFLICT (lead_id) DO UPDATE SET full_pass = excluded.full_pass",
    )
    .bind(id)
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
