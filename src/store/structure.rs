//! The account's structure in the mirror: `account`, `pipelines`,
//! `statuses`, `users`, `custom_fields`, `custom_field_enums`,
//! `loss_reasons` and `tags`.
//!
//! A sync writes what it fetched in one transaction. Each part is written
//! only when it was fetched (a `403` on users leaves `users` as it was). A
//! row Kommo lists is upserted with `is_deleted = 0`; a row it no longer
//! lists is kept and flagged `is_deleted = 1`, but only when the part's
//! listing was read whole: when an element had to be skipped (unreadable),
//! nothing of that part is flagged, since the skipped one could be any row.

use serde_json::Value;
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::StoreError;
use super::{RunCounters, Store};
use crate::kommo::structure::{AccountInfo, CustomField, LossReason, Pipeline, Tag, User};

/// One part of the structure as fetched.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Part<T> {
    /// The elements listed.
    pub items: Vec<T>,
    /// Every element was read (none skipped): rows missing from `items`
    /// may be flagged deleted.
    pub complete: bool,
}

/// What one structure phase fetched; `None` for a part not fetched.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StructureSnapshot {
    pub account: Option<AccountInfo>,
    pub pipelines: Option<Part<Pipeline>>,
    pub users: Option<Part<User>>,
    pub custom_fields: Option<Part<CustomField>>,
    pub loss_reasons: Option<Part<LossReason>>,
    pub tags: Option<Part<Tag>>,
}

/// How many rows of one structure table are listed in Kommo and how many
/// are flagged deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityCount {
    /// The table, e.g. `pipelines`.
    pub table: &'static str,
    pub alive: i64,
    pub deleted: i64,
}

/// The structure tables, in the order `--status` shows them.
pub const TABLES: [&str; 8] = [
    "account",
    "pipelines",
    "statuses",
    "users",
    "custom_fields",
    "custom_field_enums",
    "loss_reasons",
    "tags",
];

type Tx = Transaction<'static, Sqlite>;

fn raw_text(raw: &Value) -> String {
    raw.to_string()
}

/// Writes `snapshot` into `tx`.
pub async fn write(tx: &mut Tx, snapshot: &StructureSnapshot, now: i64) -> Result<(), StoreError> {
    if let Some(account) = &snapshot.account {
        write_account(tx, account, now).await?;
    }
    if let Some(part) = &snapshot.pipelines {
        write_pipelines(tx, part, now).await?;
    }
    if let Some(part) = &snapshot.users {
        for u in &part.items {
            sqlx::query(
                "INSERT INTO users (id, name, email, is_admin, is_active, raw, is_deleted, synced_at) \
                 VALUES (?, ?, ?, ?, ?, ?, 0, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
                 email = excluded.email, is_admin = excluded.is_admin, is_active = excluded.is_active, \
                 raw = excluded.raw, is_deleted = 0, synced_at = excluded.synced_at",
            )
            .bind(u.id)
            .bind(&u.name)
            .bind(&u.email)
            .bind(u.is_admin)
            .bind(u.is_active)
            .bind(raw_text(&u.raw))
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        if part.complete {
            flag_missing(tx, "users", ids(part.items.iter().map(|u| u.id)), now).await?;
        }
    }
    if let Some(part) = &snapshot.custom_fields {
        write_custom_fields(tx, part, now).await?;
    }
    if let Some(part) = &snapshot.loss_reasons {
        for r in &part.items {
            sqlx::query(
                "INSERT INTO loss_reasons (id, name, sort, raw, is_deleted, synced_at) \
                 VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
                 sort = excluded.sort, raw = excluded.raw, is_deleted = 0, synced_at = excluded.synced_at",
            )
            .bind(r.id)
            .bind(&r.name)
            .bind(r.sort)
            .bind(raw_text(&r.raw))
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        if part.complete {
            flag_missing(
                tx,
                "loss_reasons",
                ids(part.items.iter().map(|r| r.id)),
                now,
            )
            .await?;
        }
    }
    if let Some(part) = &snapshot.tags {
        for t in &part.items {
            sqlx::query(
                "INSERT INTO tags (id, name, color, raw, is_deleted, synced_at) \
                 VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
                 color = excluded.color, raw = excluded.raw, is_deleted = 0, synced_at = excluded.synced_at",
            )
            .bind(t.id)
            .bind(&t.name)
            .bind(&t.color)
            .bind(raw_text(&t.raw))
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        if part.complete {
            flag_missing(tx, "tags", ids(part.items.iter().map(|t| t.id)), now).await?;
        }
    }
    Ok(())
}

async fn write_account(tx: &mut Tx, a: &AccountInfo, now: i64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO account (id, name, subdomain, currency, timezone, raw, is_deleted, synced_at) \
         VALUES (?, ?, ?, ?, ?, ?, 0, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
         subdomain = excluded.subdomain, currency = excluded.currency, timezone = excluded.timezone, \
         raw = excluded.raw, is_deleted = 0, synced_at = excluded.synced_at",
    )
    .bind(a.id)
    .bind(&a.name)
    .bind(&a.subdomain)
    .bind(&a.currency)
    .bind(&a.timezone)
    .bind(raw_text(&a.raw))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    flag_missing(tx, "account", ids([a.id]), now).await
}

async fn write_pipelines(tx: &mut Tx, part: &Part<Pipeline>, now: i64) -> Result<(), StoreError> {
    for p in &part.items {
        sqlx::query(
            "INSERT INTO pipelines (id, name, sort, is_main, is_archive, raw, is_deleted, synced_at) \
             VALUES (?, ?, ?, ?, ?, ?, 0, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
             sort = excluded.sort, is_main = excluded.is_main, is_archive = excluded.is_archive, \
             raw = excluded.raw, is_deleted = 0, synced_at = excluded.synced_at",
        )
        .bind(p.id)
        .bind(&p.name)
        .bind(p.sort)
        .bind(p.is_main)
        .bind(p.is_archive)
        .bind(raw_text(&p.raw))
        .bind(now)
        .execute(&mut **tx)
        .await?;
        for s in &p.statuses {
            sqlx::query(
                "INSERT INTO statuses (pipeline_id, id, name, sort, type, color, is_editable, raw, \
                 is_deleted, synced_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?) \
                 ON CONFLICT (pipeline_id, id) DO UPDATE SET name = excluded.name, sort = excluded.sort, \
                 type = excluded.type, color = excluded.color, is_editable = excluded.is_editable, \
                 raw = excluded.raw, is_deleted = 0, synced_at = excluded.synced_at",
            )
            .bind(s.pipeline_id)
            .bind(s.id)
            .bind(&s.name)
            .bind(s.sort)
            .bind(s.kind)
            .bind(&s.color)
            .bind(s.is_editable)
            .bind(raw_text(&s.raw))
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
    }
    if part.complete {
        flag_missing(tx, "pipelines", ids(part.items.iter().map(|p| p.id)), now).await?;
        let pairs = pairs(
            part.items
                .iter()
                .flat_map(|p| p.statuses.iter().map(|s| (s.pipeline_id, s.id))),
        );
        flag_missing_pairs(tx, "statuses", "pipeline_id", pairs, &[], now).await?;
    }
    Ok(())
}

async fn write_custom_fields(
    tx: &mut Tx,
    part: &Part<CustomField>,
    now: i64,
) -> Result<(), StoreError> {
    for f in &part.items {
        sqlx::query(
            "INSERT INTO custom_fields (id, name, type, code, sort, is_api_only, group_id, raw, \
             is_deleted, synced_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, type = excluded.type, \
             code = excluded.code, sort = excluded.sort, is_api_only = excluded.is_api_only, \
             group_id = excluded.group_id, raw = excluded.raw, is_deleted = 0, \
             synced_at = excluded.synced_at",
        )
        .bind(f.id)
        .bind(&f.name)
        .bind(&f.kind)
        .bind(&f.code)
        .bind(f.sort)
        .bind(f.is_api_only)
        .bind(&f.group_id)
        .bind(raw_text(&f.raw))
        .bind(now)
        .execute(&mut **tx)
        .await?;
        for e in &f.enums {
            sqlx::query(
                "INSERT INTO custom_field_enums (field_id, id, value, sort, code, is_deleted, synced_at) \
                 VALUES (?, ?, ?, ?, ?, 0, ?) ON CONFLICT (field_id, id) DO UPDATE SET \
                 value = excluded.value, sort = excluded.sort, code = excluded.code, is_deleted = 0, \
                 synced_at = excluded.synced_at",
            )
            .bind(e.field_id)
            .bind(e.id)
            .bind(&e.value)
            .bind(e.sort)
            .bind(&e.code)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
    }
    if part.complete {
        flag_missing(
            tx,
            "custom_fields",
            ids(part.items.iter().map(|f| f.id)),
            now,
        )
        .await?;
        let pairs = pairs(
            part.items
                .iter()
                .flat_map(|f| f.enums.iter().map(|e| (e.field_id, e.id))),
        );
        // A field listed without an `enums` array says nothing of its options.
        let unlisted = ids(part.items.iter().filter(|f| !f.enums_listed).map(|f| f.id));
        flag_missing_pairs(tx, "custom_field_enums", "field_id", pairs, &unlisted, now).await?;
    }
    Ok(())
}

/// The ids listed.
fn ids(listed: impl IntoIterator<Item = Option<i64>>) -> Vec<i64> {
    listed.into_iter().flatten().collect()
}

/// The (parent, id) pairs listed, as JSON arrays.
fn pairs(listed: impl IntoIterator<Item = (i64, Option<i64>)>) -> Vec<Value> {
    listed
        .into_iter()
        .filter_map(|(p, id)| id.map(|id| Value::from(vec![p, id])))
        .collect()
}

/// Flags the rows of `table` whose id is not in `ids` as deleted.
async fn flag_missing(
    tx: &mut Tx,
    table: &'static str,
    ids: Vec<i64>,
    now: i64,
) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE {table} SET is_deleted = 1, synced_at = ?1 WHERE is_deleted = 0 \
         AND id NOT IN (SELECT value FROM json_each(?2))"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(Value::from(ids).to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Flags the rows of `table` whose (`parent`, id) is not in `pairs` as
/// deleted, but for the children of the `unlisted` parents.
async fn flag_missing_pairs(
    tx: &mut Tx,
    table: &'static str,
    parent: &'static str,
    pairs: Vec<Value>,
    unlisted: &[i64],
    now: i64,
) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE {table} SET is_deleted = 1, synced_at = ?1 WHERE is_deleted = 0 \
         AND ({parent}, id) NOT IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') \
         FROM json_each(?2)) AND {parent} NOT IN (SELECT value FROM json_each(?3))"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(Value::from(pairs).to_string())
        .bind(Value::from(unlisted.to_vec()).to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Rows listed and flagged deleted, per structure table.
pub async fn counts(pool: &SqlitePool) -> Result<Vec<EntityCount>, StoreError> {
    let mut counts = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let sql = format!(
            "SELECT COALESCE(SUM(is_deleted = 0), 0), COALESCE(SUM(is_deleted = 1), 0) FROM {table}"
        );
        let (alive, deleted): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_one(pool)
            .await?;
        counts.push(EntityCount {
            table,
            alive,
            deleted,
        });
    }
    Ok(counts)
}

impl Store {
    /// Writes what a structure phase fetched, with the run's counters, in
    /// one transaction.
    pub async fn write_structure(
        &self,
        run_id: i64,
        snapshot: &StructureSnapshot,
        counters: &RunCounters,
        now: i64,
    ) -> Result<(), StoreError> {
        let db = self.db.flushed().await?;
        let mut tx = db.begin().await?;
        write(&mut tx, snapshot, now).await?;
        super::runs::set_counters(&mut tx, run_id, counters).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Rows listed and flagged deleted in each structure table.
    pub async fn structure_counts(&self) -> Result<Vec<EntityCount>, StoreError> {
        counts(self.db.committed()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kommo::structure::Listed;
    use crate::store::{RunCounters, RunKind, Store};
    use serde_json::json;

    fn pipelines(body: Value) -> Part<Pipeline> {
        let listed: Listed<Pipeline> = Listed::from_json(
            "p",
            "pipelines",
            Some(json!({"_embedded": {"pipelines": body}})),
        )
        .unwrap();
        Part {
            complete: listed.skipped.is_empty(),
            items: listed.items,
        }
    }

    fn tags(ids: &[i64]) -> Part<Tag> {
        Part {
            items: ids
                .iter()
                .map(|id| Tag {
                    id: Some(*id),
                    name: Some(format!("t{id}")),
                    raw: json!({"id": id}),
                    ..Tag::default()
                })
                .collect(),
            complete: true,
        }
    }

    async fn write_snapshot(store: &Store, snapshot: StructureSnapshot, now: i64) {
        let run = store.start_run(RunKind::Incremental, now).await.unwrap();
        store
            .write_structure(run, &snapshot, &RunCounters::default(), now)
            .await
            .unwrap();
    }

    async fn rows(store: &Store, sql: &str) -> Vec<(i64, i64, i64)> {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_all(store.pool())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn rows_kommo_stops_listing_are_flagged_and_come_back_when_listed_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.sqlite")).await.unwrap();
        let two = json!([
            {"id": 1, "name": "A", "_embedded": {"statuses": [{"id": 10}, {"id": 142}]}},
            {"id": 2, "name": "B", "_embedded": {"statuses": [{"id": 20}, {"id": 142}]}}
        ]);
        write_snapshot(
            &store,
            StructureSnapshot {
                pipelines: Some(pipelines(two.clone())),
                tags: Some(tags(&[5, 6])),
                ..StructureSnapshot::default()
            },
            100,
        )
        .await;
        // Pipeline 2 and tag 6 are gone; the users listing was not read.
        write_snapshot(
            &store,
            StructureSnapshot {
                pipelines: Some(pipelines(json!([
                    {"id": 1, "name": "A", "_embedded": {"statuses": [{"id": 10}, {"id": 142}]}}
                ]))),
                tags: Some(tags(&[5])),
                ..StructureSnapshot::default()
            },
            200,
        )
        .await;
        assert_eq!(
            rows(
                &store,
                "SELECT pipeline_id, id, is_deleted FROM statuses ORDER BY 1, 2"
            )
            .await,
            vec![(1, 10, 0), (1, 142, 0), (2, 20, 1), (2, 142, 1)]
        );
        assert_eq!(
            rows(
                &store,
                "SELECT id, is_deleted, synced_at FROM tags ORDER BY id"
            )
            .await,
            vec![(5, 0, 200), (6, 1, 200)]
        );
        // Both are back.
        write_snapshot(
            &store,
            StructureSnapshot {
                pipelines: Some(pipelines(two)),
                tags: Some(tags(&[5, 6])),
                ..StructureSnapshot::default()
            },
            300,
        )
        .await;
        assert_eq!(
            rows(
                &store,
                "SELECT id, is_deleted, synced_at FROM pipelines ORDER BY id"
            )
            .await,
            vec![(1, 0, 300), (2, 0, 300)]
        );
        assert_eq!(
            rows(
                &store,
                "SELECT id, is_deleted, synced_at FROM tags ORDER BY id"
            )
            .await,
            vec![(5, 0, 300), (6, 0, 300)]
        );
    }

    #[tokio::test]
    async fn a_listing_with_an_unreadable_element_flags_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.sqlite")).await.unwrap();
        write_snapshot(
            &store,
            StructureSnapshot {
                pipelines: Some(pipelines(json!([
                    {"id": 1, "_embedded": {"statuses": [{"id": 10}]}},
                    {"id": 2, "_embedded": {"statuses": [{"id": 20}]}}
                ]))),
                ..StructureSnapshot::default()
            },
            100,
        )
        .await;
        let part = pipelines(json!([
            {"id": 1, "name": "renamed", "_embedded": {"statuses": [{"id": 10}]}},
            {"id": "two?"}
        ]));
        assert!(!part.complete);
        write_snapshot(
            &store,
            StructureSnapshot {
                pipelines: Some(part),
                ..StructureSnapshot::default()
            },
            200,
        )
        .await;
        let names: Vec<(i64, Option<String>, i64)> =
            sqlx::query_as("SELECT id, name, is_deleted FROM pipelines ORDER BY id")
                .fetch_all(store.pool())
                .await
                .unwrap();
        assert_eq!(
            names,
            vec![(1, Some("renamed".into()), 0), (2, None, 0)],
            "the readable pipeline is written, none is flagged"
        );
        let statuses = rows(
            &store,
            "SELECT pipeline_id, id, is_deleted FROM statuses ORDER BY 1",
        )
        .await;
        assert_eq!(statuses, vec![(1, 10, 0), (2, 20, 0)]);
    }

    #[tokio::test]
    async fn the_account_and_the_entity_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.sqlite")).await.unwrap();
        let account = crate::kommo::structure::AccountInfo::from_json(json!({
            "id": 31, "name": "Acme", "subdomain": "acme", "currency": "EUR",
            "_embedded": {"datetime_settings": {"timezone": "Europe/Madrid"}}
        }))
        .unwrap();
        write_snapshot(
            &store,
            StructureSnapshot {
                account: Some(account),
                tags: Some(tags(&[1, 2, 3])),
                ..StructureSnapshot::default()
            },
            100,
        )
        .await;
        let tz: String = sqlx::query_scalar("SELECT timezone FROM account WHERE id = 31")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(tz, "Europe/Madrid");
        let counts = store.structure_counts().await.unwrap();
        assert_eq!(counts.len(), TABLES.len());
        let tags = counts.iter().find(|c| c.table == "tags").unwrap();
        assert_eq!((tags.alive, tags.deleted), (3, 0));
    }
}
