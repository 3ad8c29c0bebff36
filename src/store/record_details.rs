//! The rows that hang off a record: its typed custom field values
//! (`{entity}_field_values`), its tags (`{entity}_tags`) and its links
//! (`lead_contacts`, `lead_companies`, `contact_companies`: one table per
//! [`Link`] of its entity). They are rewritten with their record, in the
//! page's transaction, so they never describe another version of it than
//! its table does and no stale row survives a change.

use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Sqlite, Transaction};

use super::Store;
use super::StoreError;
use super::records::id_list;
use crate::kommo::{Entity, LEADS, Link, Record};

/// The detail tables of `entity`, each with its id column first.
fn tables(entity: &Entity) -> Vec<String> {
    let e = entity.singular;
    let mut tables = vec![format!("{e}_field_values"), format!("{e}_tags")];
    tables.extend(entity.links.iter().map(|l| format!("{e}_{}", l.plural())));
    tables
}

/// Replaces the detail rows of `records` (alive records of `entity`, just
/// upserted): deletes the old ones and inserts the new, a few statements for
/// a whole page (rows travel as one JSON array per table).
pub async fn replace(
    tx: &mut Transaction<'static, Sqlite>,
    entity: &Entity,
    records: &[&Record],
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let e = entity.singular;
    let ids = id_list(records.iter().map(|r| r.id));
    for table in tables(entity) {
        let delete =
            format!("DELETE FROM {table} WHERE {e}_id IN (SELECT value FROM json_each(?1))");
        sqlx::query(AssertSqlSafe(delete))
            .bind(&ids)
            .execute(&mut **tx)
            .await?;
    }
    let mut values = Vec::new();
    let mut tags = Vec::new();
    let mut links: Vec<Vec<Value>> = vec![Vec::new(); entity.links.len()];
    for record in records {
        let id = record.id;
        for v in &record.field_values {
            values.push(json!([
                id,
                v.field_id,
                v.position,
                v.field_type,
                v.text,
                v.number,
                v.boolean.map(i64::from),
                v.date,
                v.enum_id,
                v.enum_code,
                v.field_code
            ]));
        }
        tags.extend(record.tags.iter().map(|t| json!([id, t])));
        for (rows, link) in links.iter_mut().zip(entity.links) {
            match link {
                Link::Contacts => rows.extend(
                    record
                        .contacts
                        .iter()
                        .map(|(c, main)| json!([id, c, i64::from(*main)])),
                ),
                Link::Companies => rows.extend(record.companies.iter().map(|c| json!([id, c]))),
            }
        }
    }
    let mut inserts = vec![
        (
            format!(
                "INSERT OR IGNORE INTO {e}_field_values \
                 ({e}_id, field_id, position, field_type, value_text, value_number, value_bool, \
                 value_date, enum_id, enum_code, field_code) \
                 SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
                 value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10 FROM json_each(?1)"
            ),
            values,
        ),
        (
            format!(
                "INSERT OR IGNORE INTO {e}_tags ({e}_id, tag_id) \
                 SELECT value ->> 0, value ->> 1 FROM json_each(?1)"
            ),
            tags,
        ),
    ];
    for (link, rows) in entity.links.iter().zip(links) {
        let other = link.singular();
        let sql = match link {
            Link::Contacts => format!(
                "INSERT OR IGNORE INTO {e}_{} ({e}_id, {other}_id, is_main) \
                 SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1)",
                link.plural()
            ),
            Link::Companies => format!(
                "INSERT OR IGNORE INTO {e}_{} ({e}_id, {other}_id) \
                 SELECT value ->> 0, value ->> 1 FROM json_each(?1)",
                link.plural()
            ),
        };
        inserts.push((sql, rows));
    }
    for (sql, rows) in inserts {
        if !rows.is_empty() {
            sqlx::query(AssertSqlSafe(sql))
                .bind(Value::Array(rows).to_string())
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

impl Store {
    /// Rows of each per-lead table (typed field values, tags, contacts,
    /// companies) that exists in this database, by table name.
    pub async fn lead_detail_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let pool = self.db.committed();
        let mut counts = Vec::new();
        for table in tables(&LEADS) {
            let is_table: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?)",
            )
            .bind(&table)
            .fetch_one(pool)
            .await?;
            if is_table {
                let sql = format!("SELECT COUNT(*) FROM {table}");
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(pool)
                    .await?;
                counts.push((table, n));
            }
        }
        Ok(counts)
    }
}
