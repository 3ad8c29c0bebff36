//! The rows that hang off a lead: its typed custom field values
//! (`lead_field_values`) and its links (`lead_tags`, `lead_contacts`,
//! `lead_companies`). They are rewritten with their lead, in the page's
//! transaction, so they never describe another version of it than `leads`
//! does and no stale row survives a change.

use sqlx::sqlite::SqliteArguments;
use sqlx::{AssertSqlSafe, Sqlite, Transaction};

use super::StoreError;
use super::leads::{bind, id_list};
use crate::kommo::{FieldValue, Lead, LeadId};

/// The tables rewritten with their lead.
const TABLES: [&str; 4] = [
    "lead_field_values",
    "lead_tags",
    "lead_contacts",
    "lead_companies",
];

/// Rows per insert statement, whatever the table (10 bound values a row at
/// most: well below SQLite's limit of 32,766).
const ROWS_PER_STATEMENT: usize = 1000;

/// Replaces the detail rows of `leads` with what they carry now.
pub async fn replace(
    tx: &mut Transaction<'static, Sqlite>,
    leads: &[&Lead],
) -> Result<(), StoreError> {
    if leads.is_empty() {
        return Ok(());
    }
    let ids = id_list(leads.iter().map(|l| l.id));
    for table in TABLES {
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE lead_id IN (SELECT value FROM json_each(?))"
        )))
        .bind(&ids)
        .execute(&mut **tx)
        .await?;
    }

    let values: Vec<(LeadId, &FieldValue)> = leads
        .iter()
        .flat_map(|l| l.field_values.iter().map(|v| (l.id, v)))
        .collect();
    insert(
        tx,
        "lead_field_values (lead_id, field_id, position, field_type, value_text, \
         value_number, value_bool, value_date, enum_id, enum_code)",
        10,
        &values,
        |args, (lead_id, v)| {
            bind(args, *lead_id)?;
            bind(args, v.field_id)?;
            bind(args, v.position)?;
            bind(args, v.field_type.clone())?;
            bind(args, v.text.clone())?;
            bind(args, v.number)?;
            bind(args, v.boolean)?;
            bind(args, v.date)?;
            bind(args, v.enum_id)?;
            bind(args, v.enum_code.clone())
        },
    )
    .await?;
    let tags: Vec<(LeadId, i64)> = leads
        .iter()
        .flat_map(|l| l.tags.iter().map(|t| (l.id, *t)))
        .collect();
    insert(
        tx,
        "lead_tags (lead_id, tag_id)",
        2,
        &tags,
        |args, (l, t)| {
            bind(args, *l)?;
            bind(args, *t)
        },
    )
    .await?;
    let contacts: Vec<(LeadId, (i64, bool))> = leads
        .iter()
        .flat_map(|l| l.contacts.iter().map(|c| (l.id, *c)))
        .collect();
    insert(
        tx,
        "lead_contacts (lead_id, contact_id, is_main)",
        3,
        &contacts,
        |args, (l, (contact, main))| {
            bind(args, *l)?;
            bind(args, *contact)?;
            bind(args, *main)
        },
    )
    .await?;
    let companies: Vec<(LeadId, i64)> = leads
        .iter()
        .flat_map(|l| l.companies.iter().map(|c| (l.id, *c)))
        .collect();
    insert(
        tx,
        "lead_companies (lead_id, company_id)",
        2,
        &companies,
        |args, (l, c)| {
            bind(args, *l)?;
            bind(args, *c)
        },
    )
    .await
}

/// Inserts `rows` into `target` (`table (columns)`), many rows a statement;
/// a repeated key (the same tag twice on a lead) is kept once.
async fn insert<T: Sync>(
    tx: &mut Transaction<'static, Sqlite>,
    target: &str,
    width: usize,
    rows: &[T],
    bind_row: fn(&mut SqliteArguments, &T) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let placeholder = format!("(?{})", ", ?".repeat(width - 1));
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut args = SqliteArguments::default();
        for row in chunk {
            bind_row(&mut args, row)?;
        }
        let sql = format!(
            "INSERT OR IGNORE INTO {target} VALUES {}",
            vec![placeholder.as_str(); chunk.len()].join(", ")
        );
        sqlx::query_with(AssertSqlSafe(sql), args)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
