//! The rows that hang off a record: its typed custom field values
//! (`{entity}_field_values`), its tags (`{entity}_tags`) and its links
//! (`lead_contacts`, `lead_companies`, `contact_companies`: one table per
//! [`Link`] of its entity). They are rewritten with their record, in the
//! page's transaction, so they never describe another version of it than
//! its table does and no stale row survives a change.

use sqlx::any::AnyArguments;
use sqlx::{Any, AssertSqlSafe, Transaction};

use super::Store;
use super::StoreError;
use super::backend::Backend;
use super::records::id_list;
use super::rows::{bind, execute_in_chunks, row_params};
use crate::kommo::{Entity, FieldValue, LEADS, Link, Record, RecordId};

/// The detail tables of `entity`, each with its id column first.
fn tables(entity: &Entity) -> Vec<String> {
    let e = entity.singular;
    let mut tables = vec![format!("{e}_field_values"), format!("{e}_tags")];
    tables.extend(entity.links.iter().map(|l| format!("{e}_{}", l.plural())));
    tables
}

/// Replaces the detail rows of `records` (alive records of `entity`, just
/// upserted): deletes the old ones and inserts the new, a few statements for
/// a whole page (multi-row inserts of bound values, as the records' own
/// upsert: no JSON built here nor parsed by SQLite).
pub async fn replace(
    tx: &mut Transaction<'static, Any>,
    entity: &Entity,
    records: &[&Record],
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let e = entity.singular;
    let backend = Backend::of(tx);
    let ids = id_list(records.iter().map(|r| r.id));
    for table in tables(entity) {
        let delete = format!("DELETE FROM {table} WHERE {e}_id {}", backend.in_ids(1));
        sqlx::query(AssertSqlSafe(delete))
            .bind(&ids)
            .execute(&mut **tx)
            .await?;
    }
    let values: Vec<(RecordId, &FieldValue)> = records
        .iter()
        .flat_map(|r| r.field_values.iter().map(move |v| (r.id, v)))
        .collect();
    let table = format!("{e}_field_values");
    let columns = format!(
        "{e}_id, field_id, position, field_type, value_text, value_number, value_bool, \
         value_date, enum_id, enum_code, field_code"
    );
    insert_rows(tx, &table, &columns, 11, &values, |args, (id, v)| {
        bind(args, *id)?;
        bind(args, v.field_id)?;
        bind(args, v.position)?;
        bind(
            args,
            v.field_type
                .as_deref()
                .map(|t| backend.text(t).into_owned()),
        )?;
        bind(
            args,
            v.text.as_deref().map(|t| backend.text(t).into_owned()),
        )?;
        // A NULL f64 is a NULL float8 from sqlx 0.9.1 on (0.9.0's `Any` sent
        // a NULL float4, and PostgreSQL then refused every later float8).
        bind(args, v.number)?;
        bind(args, v.boolean.map(i64::from))?;
        bind(args, v.date)?;
        bind(args, v.enum_id)?;
        bind(
            args,
            v.enum_code.as_deref().map(|t| backend.text(t).into_owned()),
        )?;
        bind(
            args,
            v.field_code
                .as_deref()
                .map(|t| backend.text(t).into_owned()),
        )
    })
    .await?;
    let tags: Vec<(RecordId, i64)> = records
        .iter()
        .flat_map(|r| r.tags.iter().map(move |t| (r.id, *t)))
        .collect();
    insert_rows(
        tx,
        &format!("{e}_tags"),
        &format!("{e}_id, tag_id"),
        2,
        &tags,
        |args, (id, tag)| {
            bind(args, *id)?;
            bind(args, *tag)
        },
    )
    .await?;
    for link in entity.links {
        let table = format!("{e}_{}", link.plural());
        let other = link.singular();
        match link {
            Link::Contacts => {
                let rows: Vec<(RecordId, i64, bool)> = records
                    .iter()
                    .flat_map(|r| r.contacts.iter().map(move |(c, main)| (r.id, *c, *main)))
                    .collect();
                let columns = format!("{e}_id, {other}_id, is_main");
                insert_rows(tx, &table, &columns, 3, &rows, |args, (id, c, main)| {
                    bind(args, *id)?;
                    bind(args, *c)?;
                    bind(args, i64::from(*main))
                })
                .await?;
            }
            Link::Companies => {
                let rows: Vec<(RecordId, i64)> = records
                    .iter()
                    .flat_map(|r| r.companies.iter().map(move |c| (r.id, *c)))
                    .collect();
                let columns = format!("{e}_id, {other}_id");
                insert_rows(tx, &table, &columns, 2, &rows, |args, (id, c)| {
                    bind(args, *id)?;
                    bind(args, *c)
                })
                .await?;
            }
        }
    }
    Ok(())
}

/// `INSERT INTO table (columns) VALUES (...), ... ON CONFLICT DO NOTHING`
/// for `rows`, `width` values each, a few statements in all (a row listed
/// twice in one record is kept once).
async fn insert_rows<T>(
    tx: &mut Transaction<'static, Any>,
    table: &str,
    columns: &str,
    width: usize,
    rows: &[T],
    bind_row: impl FnMut(&mut AnyArguments, &T) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let backend = Backend::of(tx);
    let sql = |n: usize| {
        let values: Vec<String> = (0..n)
            .map(|row| {
                format!(
                    "({})",
                    row_params(backend, row, width, |_, p| p.to_string())
                )
            })
            .collect();
        format!(
            "INSERT INTO {table} ({columns}) VALUES {} ON CONFLICT DO NOTHING",
            values.join(", ")
        )
    };
    execute_in_chunks(tx, rows, sql, bind_row).await
}

impl Store {
    /// Rows of each per-lead table (typed field values, tags, contacts,
    /// companies) that exists in this database, by table name.
    pub async fn lead_detail_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let pool = self.db.committed();
        let mut counts = Vec::new();
        for table in tables(&LEADS) {
            let exists = match self.db.backend() {
                Backend::Sqlite => {
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
                }
                Backend::Postgres => {
                    "SELECT COUNT(*) FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_name = $1"
                }
            };
            let is_table: i64 = sqlx::query_scalar(exists)
                .bind(&table)
                .fetch_one(pool)
                .await?;
            if is_table > 0 {
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
