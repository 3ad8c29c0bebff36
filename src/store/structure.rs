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
use sqlx::{Any, AnyPool, Transaction};

use super::StoreError;
use super::backend::Backend;
use super::{RunCounters, Store};
use crate::kommo::structure::{
    AccountInfo, CustomField, FieldEnum, LossReason, Pipeline, Status, Tag, User,
};
use crate::kommo::{Entity, LEADS};

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
    /// The custom field definitions of each entity synced (`leads`...).
    pub custom_fields: Vec<(&'static str, Option<Part<CustomField>>)>,
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

type Tx = Transaction<'static, Any>;

/// A value of a structure row, bound by its type.
enum Cell<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Bool(Option<bool>),
}

/// A structure element as a row: its table, key and columns, and its cells
/// in the order `KEY`, then `COLUMNS`, then `raw` when `WITH_RAW`. Every
/// structure table is written by [`upsert`] from this one description.
trait StructureRow {
    const TABLE: &'static str;
    const KEY: &'static [&'static str];
    const COLUMNS: &'static [&'static str];
    /// The element as received is kept in `raw` (all but the field options).
    const WITH_RAW: bool = true;
    fn cells(&self) -> Vec<Cell<'_>>;
}

fn text(value: &Option<String>) -> Cell<'_> {
    Cell::Text(value.as_deref())
}

impl StructureRow for AccountInfo {
    const TABLE: &'static str = "account";
    const KEY: &'static [&'static str] = &["id"];
    const COLUMNS: &'static [&'static str] = &["name", "subdomain", "currency", "timezone"];
    fn cells(&self) -> Vec<Cell<'_>> {
        vec![
            Cell::Int(self.id),
            text(&self.name),
            text(&self.subdomain),
            text(&self.currency),
            text(&self.timezone),
        ]
    }
}

impl StructureRow for Pipeline {
    const TABLE: &'static str = "pipelines";
    const KEY: &'static [&'static str] = &["id"];
    const COLUMNS: &'static [&'static str] = &["name", "sort", "is_main", "is_archive"];
    fn cells(&self) -> Vec<Cell<'_>> {
        vec![
            Cell::Int(self.id),
            text(&self.name),
            Cell::Int(self.sort),
            Cell::Bool(self.is_main),
            Cell::Bool(self.is_archive),
        ]
    }
}

impl StructureRow for Status {
    const TABLE: &'static str = "statuses";
    const KEY: &'static [&'static str] = &["pipeline_id", "id"];
    const COLUMNS: &'static [&'static str] = &["name", "sort", "type", "color", "is_editable"];
    fn cells(&self) -> Vec<Cell<'_>> {
        vec![
            Cell::Int(Some(self.pipeline_id)),
            Cell::Int(self.id),
            text(&self.name),
            Cell::Int(self.sort),
            Cell::Int(self.kind),
            text(&self.color),
            Cell::Bool(self.is_editable),
        ]
    }
}

impl StructureRow for User {
    const TABLE: &'static str = "users";
    const KEY: &'static [&'static str] = &["id"];
    const COLUMNS: &'static [&'static str] = &["name", "email", "is_admin", "is_active"];
    fn cells(&self) -> Vec<Cell<'_>> {
        vec![
            Cell::Int(self.id),
            text(&self.name),
            text(&self.email),
            Cell::Bool(self.is_admin),
            Cell::Bool(self.is_active),
        ]
    }
}

impl StructureRow for CustomField {
    const TABLE: &'static str = "custom_fields";
    const KEY: &'static [&'static str] = &["id"];
    const COLUMNS: &'static [&'static str] = &[
        "name",
        "type",
        "code",
        "sort",
        "is_api_only",
        "group_id",
        "entity_type",
    ];
    fn cells(&self) -> Vec<Cell<'_>> {
        vec![
            Cell::Int(self.id),
            text(&self.name),
            text(&self.kind),
            text(&self.code),
            Cell::Int(self.sort),
            Cell::Bool(self.is_api_only),
            text(&self.group_id),
            Cell::Text(Some(self.entity_type)),
        ]
    }
}

impl StructureRow for FieldEnum {
    const TABLE: &'static str = "custom_field_enums";
    const KEY: &'static [&'static str] = &["field_id", "id"];
    const COLUMNS: &'static [&'static str] = &["value", "sort", "code"];
    const WITH_RAW: bool = false;
    fn cells(&self) -> Vec<Cell<'_>> {
        vec![
            Cell::Int(Some(self.field_id)),
            Cell::Int(self.id),
            text(&self.value),
            Cell::Int(self.sort),
            text(&self.code),
        ]
    }
}

impl StructureRow for LossReason {
    const TABLE: &'static str = "loss_reasons";
    const KEY: &'static [&'static str] = &["id"];
    const COLUMNS: &'static [&'static str] = &["name", "sort"];
    fn cells(&self) -> Vec<Cell<'_>> {
        vec![Cell::Int(self.id), text(&self.name), Cell::Int(self.sort)]
    }
}

impl StructureRow for Tag {
    const TABLE: &'static str = "tags";
    const KEY: &'static [&'static str] = &["id"];
    const COLUMNS: &'static [&'static str] = &["name", "color"];
    fn cells(&self) -> Vec<Cell<'_>> {
        vec![Cell::Int(self.id), text(&self.name), text(&self.color)]
    }
}

/// The element as received, for `raw`.
trait Received {
    fn raw(&self) -> &Value;
}

macro_rules! received {
    ($($row:ty),+) => {$(
        impl Received for $row {
            fn raw(&self) -> &Value {
                &self.raw
            }
        }
    )+};
}

received!(
    AccountInfo,
    Pipeline,
    Status,
    User,
    CustomField,
    LossReason,
    Tag
);

impl Received for FieldEnum {
    fn raw(&self) -> &Value {
        &Value::Null
    }
}

/// Upserts `rows` into their table, listed (`is_deleted = 0`) as of `now`.
async fn upsert<R: StructureRow + Received + Sync>(
    tx: &mut Tx,
    rows: Vec<&R>,
    now: i64,
) -> Result<(), StoreError> {
    let mut columns: Vec<&str> = R::KEY.iter().chain(R::COLUMNS).copied().collect();
    if R::WITH_RAW {
        columns.push("raw");
    }
    let updates: Vec<String> = columns[R::KEY.len()..]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let backend = Backend::of(tx);
    let mut marks: Vec<String> = (1..=columns.len()).map(|n| format!("${n}")).collect();
    if R::WITH_RAW {
        let raw = marks.len();
        marks[raw - 1] = backend.json(raw);
    }
    let sql = format!(
        "INSERT INTO {table} ({columns}, is_deleted, synced_at) VALUES ({marks}, 0, ${now}) \
         ON CONFLICT ({key}) DO UPDATE SET {updates}, is_deleted = 0, synced_at = excluded.synced_at",
        table = R::TABLE,
        columns = columns.join(", "),
        marks = marks.join(", "),
        now = columns.len() + 1,
        key = R::KEY.join(", "),
        updates = updates.join(", "),
    );
    for row in rows {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
        for cell in row.cells() {
            query = match cell {
                Cell::Int(v) => query.bind(v),
                Cell::Text(v) => query.bind(v.map(|t| backend.text(t).into_owned())),
                Cell::Bool(v) => query.bind(v.map(i64::from)),
            };
        }
        if R::WITH_RAW {
            query = query.bind(row.raw().to_string());
        }
        query.bind(now).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Writes `snapshot` into `tx`.
pub async fn write(tx: &mut Tx, snapshot: &StructureSnapshot, now: i64) -> Result<(), StoreError> {
    if let Some(account) = &snapshot.account {
        upsert(tx, vec![account], now).await?;
        flag_missing(tx, "account", ids([account.id]), now).await?;
    }
    if let Some(part) = &snapshot.pipelines {
        upsert(tx, part.items.iter().collect(), now).await?;
        upsert(
            tx,
            part.items.iter().flat_map(|p| &p.statuses).collect(),
            now,
        )
        .await?;
        if part.complete {
            flag_missing(tx, "pipelines", ids(part.items.iter().map(|p| p.id)), now).await?;
            let pairs = pairs(
                part.items
                    .iter()
                    .flat_map(|p| p.statuses.iter().map(|s| (s.pipeline_id, s.id))),
            );
            flag_missing_pairs(tx, "statuses", "pipeline_id", pairs, &[], now).await?;
        }
    }
    if let Some(part) = &snapshot.users {
        upsert(tx, part.items.iter().collect(), now).await?;
        if part.complete {
            flag_missing(tx, "users", ids(part.items.iter().map(|u| u.id)), now).await?;
        }
    }
    for (entity_type, part) in &snapshot.custom_fields {
        let Some(part) = part else {
            continue;
        };
        upsert(tx, part.items.iter().collect(), now).await?;
        upsert(tx, part.items.iter().flat_map(|f| &f.enums).collect(), now).await?;
        if part.complete {
            // Only this entity's fields: each entity lists its own.
            let listed = ids(part.items.iter().map(|f| f.id));
            let sql = format!(
                "UPDATE custom_fields SET is_deleted = 1, synced_at = $1 WHERE is_deleted = 0 \
                 AND entity_type = $3 AND id NOT {}",
                Backend::of(tx).in_ids(2)
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(Value::from(listed).to_string())
                .bind(*entity_type)
                .execute(&mut **tx)
                .await?;
            let pairs = pairs(
                part.items
                    .iter()
                    .flat_map(|f| f.enums.iter().map(|e| (e.field_id, e.id))),
            );
            // A field listed without an `enums` array says nothing of its
            // options, and another entity's fields are not this listing's.
            let mut unlisted = ids(part.items.iter().filter(|f| !f.enums_listed).map(|f| f.id));
            let others: Vec<i64> =
                sqlx::query_scalar("SELECT id FROM custom_fields WHERE entity_type != $1")
                    .bind(*entity_type)
                    .fetch_all(&mut **tx)
                    .await?;
            unlisted.extend(others);
            flag_missing_pairs(tx, "custom_field_enums", "field_id", pairs, &unlisted, now).await?;
        }
    }
    if let Some(part) = &snapshot.loss_reasons {
        upsert(tx, part.items.iter().collect(), now).await?;
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
        upsert(tx, part.items.iter().collect(), now).await?;
        if part.complete {
            flag_missing(tx, "tags", ids(part.items.iter().map(|t| t.id)), now).await?;
        }
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
        "UPDATE {table} SET is_deleted = 1, synced_at = $1 WHERE is_deleted = 0 AND id NOT {}",
        Backend::of(tx).in_ids(2)
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
    let backend = Backend::of(tx);
    let sql = format!(
        "UPDATE {table} SET is_deleted = 1, synced_at = $1 WHERE is_deleted = 0 \
         AND ({parent}, id) NOT IN (SELECT parent, id FROM {} AS pairs) AND {parent} NOT {}",
        backend.pairs(2),
        backend.in_ids(3)
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
pub async fn counts(pool: &AnyPool) -> Result<Vec<EntityCount>, StoreError> {
    let mut counts = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let sql = format!(
            "SELECT COUNT(CASE WHEN is_deleted = 0 THEN 1 END), COUNT(CASE WHEN is_deleted = 1 THEN 1 END) FROM {table}"
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
        sqlx::query("UPDATE sync_state SET structure_read_at = $1 WHERE id = 1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        super::runs::set_counters(&mut tx, run_id, counters).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether an alive record updated at or after its entity's `from`
    /// (each entity's walk start of an incremental sync: what it wrote)
    /// names something of the structure the mirror does not hold: a lead's
    /// stage or loss reason, or a custom field of any record's values.
    /// Users and tags are left out (users are listed only to admins; tags
    /// are written with their records). Each entity is read through its
    /// `(is_deleted, updated_at)` index: only the records of the walk.
    pub async fn names_unknown_structure(
        &self,
        from: &[(&'static Entity, i64)],
    ) -> Result<bool, StoreError> {
        for &(entity, since) in from {
            let (table, singular) = (entity.plural, entity.singular);
            let mut sql = format!(
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM {table} AS r \
                   JOIN {singular}_field_values AS v ON v.{singular}_id = r.id \
                   WHERE r.is_deleted = 0 AND r.updated_at >= $1 AND NOT EXISTS \
                   (SELECT 1 FROM custom_fields AS f WHERE f.id = v.field_id))"
            );
            if std::ptr::eq(entity, &LEADS) {
                sql.push_str(
                    " OR EXISTS (SELECT 1 FROM leads AS l \
                       WHERE l.is_deleted = 0 AND l.updated_at >= $1 AND ( \
                       (l.pipeline_id IS NOT NULL AND l.status_id IS NOT NULL AND NOT EXISTS \
                         (SELECT 1 FROM statuses AS s \
                          WHERE s.pipeline_id = l.pipeline_id AND s.id = l.status_id)) \
                       OR (l.loss_reason_id IS NOT NULL AND l.loss_reason_id != 0 AND NOT EXISTS \
                         (SELECT 1 FROM loss_reasons AS x WHERE x.id = l.loss_reason_id))))",
                );
            }
            sql.push_str(" THEN 1 ELSE 0 END");
            // Table names come from the entity constants, never from input.
            let unknown: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(since)
                .fetch_one(self.db.committed())
                .await?;
            if unknown != 0 {
                return Ok(true);
            }
        }
        Ok(false)
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

    async fn rows_kommo_stops_listing_are_flagged_and_come_back_when_listed_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::testing::open(&dir).await;
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

    async fn a_listing_with_an_unreadable_element_flags_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::testing::open(&dir).await;
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

    async fn the_account_and_the_entity_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::testing::open(&dir).await;
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

    crate::store::testing::on_each_backend!(
        rows_kommo_stops_listing_are_flagged_and_come_back_when_listed_again,
        a_listing_with_an_unreadable_element_flags_nothing,
        the_account_and_the_entity_counts,
    );
}
