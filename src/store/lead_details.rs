//! The rows that hang off a lead: its typed custom field values
//! (`lead_field_values`) and its links (`lead_tags`, `lead_contacts`,
//! `lead_companies`). They are rewritten with their lead, in the page's
//! transaction, so they never describe another version of it than `leads`
//! does and no stale row survives a change.

use serde_json::{Value, json};
use sqlx::{Sqlite, Transaction};

use super::Store;
use super::StoreError;
use super::leads::id_list;
use crate::kommo::Lead;

/// Empties the detail rows of the leads whose ids are the JSON array `?1`.
const DELETES: [&str; 4] = [
    "DELETE FROM lead_field_values WHERE lead_id IN (SELECT value FROM json_each(?1))",
    "DELETE FROM lead_tags WHERE lead_id IN (SELECT value FROM json_each(?1))",
    "DELETE FROM lead_contacts WHERE lead_id IN (SELECT value FROM json_each(?1))",
    "DELETE FROM lead_companies WHERE lead_id IN (SELECT value FROM json_each(?1))",
];

/// Inserts the rows of the JSON array of arrays `?1`. One statement whatever
/// the number of rows: SQLite compiles it once, and sqlx keeps it prepared
/// (a multi-row `VALUES` list would be a new statement for every count). A
/// repeated key (the same tag twice on a lead) is kept once.
const INSERT_FIELD_VALUES: &str = "INSERT OR IGNORE INTO lead_field_values \
    (lead_id, field_id, position, field_type, value_text, value_number, value_bool, \
    value_date, enum_id, enum_code) \
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
    value ->> 6, value ->> 7, value ->> 8, value ->> 9 FROM json_each(?1)";
const INSERT_TAGS: &str = "INSERT OR IGNORE INTO lead_tags (lead_id, tag_id) \
    SELECT value ->> 0, value ->> 1 FROM json_each(?1)";
const INSERT_CONTACTS: &str = "INSERT OR IGNORE INTO lead_contacts (lead_id, contact_id, is_main) \
    SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1)";
const INSERT_COMPANIES: &str = "INSERT OR IGNORE INTO lead_companies (lead_id, company_id) \
    SELECT value ->> 0, value ->> 1 FROM json_each(?1)";

/// Replaces the detail rows of `leads` with what they carry now.
pub async fn replace(
    tx: &mut Transaction<'static, Sqlite>,
    leads: &[&Lead],
) -> Result<(), StoreError> {
    if leads.is_empty() {
        return Ok(());
    }
    let ids = id_list(leads.iter().map(|l| l.id));
    for delete in DELETES {
        sqlx::query(delete).bind(&ids).execute(&mut **tx).await?;
    }
    let mut values = Vec::new();
    let mut tags = Vec::new();
    let mut contacts = Vec::new();
    let mut companies = Vec::new();
    for lead in leads {
        let id = lead.id;
        for v in &lead.field_values {
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
                v.enum_code
            ]));
        }
        tags.extend(lead.tags.iter().map(|t| json!([id, t])));
        contacts.extend(
            lead.contacts
                .iter()
                .map(|(c, main)| json!([id, c, i64::from(*main)])),
        );
        companies.extend(lead.companies.iter().map(|c| json!([id, c])));
    }
    for (sql, rows) in [
        (INSERT_FIELD_VALUES, values),
        (INSERT_TAGS, tags),
        (INSERT_CONTACTS, contacts),
        (INSERT_COMPANIES, companies),
    ] {
        if !rows.is_empty() {
            sqlx::query(sql)
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
        for table in [
            "lead_field_values",
            "lead_tags",
            "lead_contacts",
            "lead_companies",
        ] {
            let is_table: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?)",
            )
            .bind(table)
            .fetch_one(pool)
            .await?;
            if is_table {
                let sql = format!("SELECT COUNT(*) FROM {table}");
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(pool)
                    .await?;
                counts.push((table.to_string(), n));
            }
        }
        Ok(counts)
    }
}
