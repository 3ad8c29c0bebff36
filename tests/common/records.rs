//! Contacts and companies beside leads: the mirror's table of each
//! simulator kind, and the comparison of a table with the account, field
//! values, tags and links included.

use std::collections::{BTreeSet, HashSet};

use kommo_simulator::{Mutation, RecordKind, Simulator};
use serde_json::Value;

use super::TestEnv;

/// The `[sync]` section that mirrors every entity.
pub const ALL_ENTITIES: &str = "[sync]\nentities = [\"leads\", \"contacts\", \"companies\"]\n";

/// Contacts and companies: the kinds leads link to.
pub const LINKED_KINDS: [RecordKind; 2] = [RecordKind::Contact, RecordKind::Company];

/// The mirror's table of `kind` and the prefix of its detail tables.
pub fn table(kind: RecordKind) -> (&'static str, &'static str) {
    match kind {
        RecordKind::Lead => ("leads", "lead"),
        RecordKind::Contact => ("contacts", "contact"),
        RecordKind::Company => ("companies", "company"),
    }
}

/// Like [`super::change_account`] for the records of `kind`: `n` updates,
/// `n / 4` deletions, `n / 4` additions, and every other deleted record
/// restored.
pub fn change_records(sim: &Simulator, kind: RecordKind, n: usize) {
    let ids = sim.alive_ids_of(kind);
    let step = (ids.len() / (n + n / 4 + 1)).max(1);
    let mut picked = ids.iter().step_by(step);
    for id in picked.by_ref().take(n) {
        assert!(sim.update_record(kind, *id));
    }
    for id in picked.by_ref().take(n / 4) {
        assert!(sim.delete_record(kind, *id));
    }
    for _ in 0..n / 4 {
        sim.add_record(kind);
    }
    for id in sim.deleted_ids_of(kind).iter().step_by(2) {
        assert!(sim.restore_record(kind, *id));
    }
}

/// The ids of `_embedded.{key}` of a record.
fn embedded_ids(record: &Value, key: &str) -> BTreeSet<i64> {
    record["_embedded"][key]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["id"].as_i64()).collect())
        .unwrap_or_default()
}

/// How many typed values a record's `custom_fields_values` hold.
fn value_count(record: &Value) -> i64 {
    record["custom_fields_values"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .filter(|f| f["field_id"].as_i64().is_some())
                .map(|f| f["values"].as_array().map_or(0, |v| v.len() as i64))
                .sum()
        })
        .unwrap_or(0)
}

impl TestEnv {
    /// Asserts that the alive records of `kind` in the mirror are exactly
    /// the account's: the same ids, `raw` equal to the record as served,
    /// `name` and `updated_at` in their columns, as many typed field values,
    /// the same tags and (contacts) the same company.
    pub async fn assert_records_equal_account(&self, kind: RecordKind) {
        let (table, e) = table(kind);
        let expected = self.sim.alive_records(kind);
        let pool = self.db().await;
        let sql = format!(
            "SELECT id, name, updated_at, CAST(raw AS TEXT), \
             (SELECT COUNT(*) FROM {e}_field_values WHERE {e}_id = t.id), \
             (SELECT string_agg(CAST(tag_id AS TEXT), ',') FROM {e}_tags WHERE {e}_id = t.id) \
             FROM {table} AS t WHERE is_deleted = 0 ORDER BY id"
        );
        type Row = (
            i64,
            Option<String>,
            Option<i64>,
            String,
            i64,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&pool)
            .await
            .unwrap();
        let mirror_ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let account_ids: Vec<i64> = expected.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(
            (mirror_ids.len(), &mirror_ids),
            (account_ids.len(), &account_ids),
            "alive {table} differ"
        );
        for ((id, name, updated_at, raw, values, tags), record) in rows.iter().zip(&expected) {
            let raw: Value = serde_json::from_str(raw).unwrap();
            assert_eq!(&raw, record, "{table} {id}: raw is the record as served");
            assert_eq!(name.as_deref(), record["name"].as_str(), "{table} {id}");
            assert_eq!(*updated_at, record["updated_at"].as_i64(), "{table} {id}");
            assert_eq!(*values, value_count(record), "{table} {id}: field values");
            let tags: BTreeSet<i64> = tags
                .as_deref()
                .map(|t| t.split(',').map(|x| x.parse().unwrap()).collect())
                .unwrap_or_default();
            assert_eq!(tags, embedded_ids(record, "tags"), "{table} {id}: tags");
        }
        if kind == RecordKind::Contact {
            let links: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT l.contact_id, l.company_id FROM contact_companies AS l \
                 JOIN contacts AS c ON c.id = l.contact_id WHERE c.is_deleted = 0 \
                 ORDER BY 1, 2",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            let expected_links: Vec<(i64, i64)> = expected
                .iter()
                .flat_map(|c| {
                    let id = c["id"].as_i64().unwrap();
                    embedded_ids(c, "companies")
                        .into_iter()
                        .map(move |co| (id, co))
                })
                .collect();
            assert_eq!(links, expected_links, "contact_companies");
        }
    }

    /// Ids of `kind` the mirror holds marked deleted.
    pub async fn marked_deleted_of(&self, kind: RecordKind) -> HashSet<i64> {
        let sql = format!("SELECT id FROM {} WHERE is_deleted = 1", table(kind).0);
        let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.db().await)
            .await
            .unwrap();
        ids.into_iter().collect()
    }

    /// Asserts that every record of `kind` the mirror holds deleted is
    /// deleted in the account (a listing's silence proved nothing).
    pub async fn assert_no_false_deletion_of(&self, kind: RecordKind) {
        let alive: HashSet<i64> = self.sim.alive_ids_of(kind).into_iter().collect();
        let false_deletions: Vec<i64> = self
            .marked_deleted_of(kind)
            .await
            .into_iter()
            .filter(|id| alive.contains(id))
            .collect();
        assert!(
            false_deletions.is_empty(),
            "alive {} marked deleted: {false_deletions:?}",
            table(kind).0
        );
    }

    /// Asserts that no record of `kind` alive in the account is marked
    /// deleted, except records restored after its mutation number `since`
    /// (a restore that follows the walk's passage, `updated_at` unchanged,
    /// is the next --once's to mirror, through its event) and records in
    /// `marked_before` (marked before the run judged, which a run that
    /// failed may have left as they were; pass an empty set to judge every
    /// mark). `context` names the run in the message, which lists each
    /// falsely deleted record with its history of mutations.
    pub async fn assert_no_false_deletion_since(
        &self,
        kind: RecordKind,
        since: usize,
        marked_before: &HashSet<i64>,
        context: &str,
    ) {
        let mutations = self.sim.mutations_of(kind);
        let restored_late: HashSet<i64> = mutations[since..]
            .iter()
            .filter_map(|m| match m {
                Mutation::Restored(id) => Some(*id),
                _ => None,
            })
            .collect();
        let alive: HashSet<i64> = self.sim.alive_ids_of(kind).into_iter().collect();
        let false_deletions: Vec<(i64, Vec<&Mutation>)> = self
            .marked_deleted_of(kind)
            .await
            .into_iter()
            .filter(|id| !marked_before.contains(id))
            .filter(|id| alive.contains(id) && !restored_late.contains(id))
            .map(|id| (id, mutations.iter().filter(|m| m.id() == id).collect()))
            .collect();
        assert!(
            false_deletions.is_empty(),
            "after {context}: alive {} marked deleted (with their history): {false_deletions:?}",
            table(kind).0
        );
    }
}
