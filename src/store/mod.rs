//! The mirror behind one interface, [`Store`], in SQLite or PostgreSQL:
//! every table the sync writes and reads, each in the child module of its
//! job. The sync does not know which database it writes to.
//!
//! - `backend`: which database, and the few pieces of SQL that differ;
//! - `open`: the file or schema, its settings and the embedded migrations;
//! - `writer`: the batching writer and the rule that no decision reads
//!   around the open batch;
//! - `page`: what one page of a walk changes, written together;
//! - `rows`: statements of many rows, every value bound;
//! - `lock`: one syncing process per mirror (a lock file, or an advisory
//!   lock in PostgreSQL);
//! - `records`, `record_details`: the mirrored rows, their detail rows and
//!   deletion marks;
//! - `state`: cursors and the full-pass bookkeeping;
//! - `runs`, `run_stats`: the `sync_runs` record and its figures;
//! - `structure`, `stage_history`: the account's structure and the leads'
//!   stage changes.
//!
//! All SQL lives in these modules; each adds the [`Store`] methods of its job.

mod backend;
mod error;
mod lock;
mod open;
mod page;
mod record_details;
mod records;
mod rows;
mod run_stats;
mod runs;
mod stage_history;
mod state;
mod structure;
#[cfg(test)]
mod testing;
mod writer;

use std::path::Path;

use sqlx::AnyPool;

pub use backend::Backend;
pub use error::StoreError;
pub use lock::SyncLock;
pub use open::{BUSY_TIMEOUT, Target, without_password, without_password_text};
pub use page::PageCommit;
pub use records::StoredLeadCounts;
pub use run_stats::RunGroup;
pub use runs::{RunCounters, RunKind, RunRecord, RunStatus};
pub use state::{CursorUpdate, EntityState, SyncState, Window};
pub use structure::{EntityCount, Part, StructureSnapshot};

use writer::Database;

/// The mirror database.
#[derive(Clone)]
pub struct Store {
    target: Target,
    db: Database,
}

impl Store {
    /// Opens (creating if needed) and migrates the SQLite file at `path`.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_limited(path, None).await
    }

    /// Like [`Store::open`], with writes failing once the file would pass
    /// `max_size_mib` (SQLite's `max_page_count`).
    pub async fn open_limited(path: &Path, max_size_mib: Option<u32>) -> Result<Store, StoreError> {
        Store::open_target(Target::Sqlite {
            path: path.to_path_buf(),
            max_size_mib,
        })
        .await
    }

    /// Opens (creating if needed) and migrates the mirror at `target`.
    pub async fn open_target(target: Target) -> Result<Store, StoreError> {
        let (pool, backend) = open::connect(&target).await?;
        Ok(Store {
            target,
            db: Database::new(pool, backend),
        })
    }

    /// Where the mirror is.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The mirror as messages name it: the file, or the URL without its
    /// password and the schema.
    pub fn describe(&self) -> String {
        self.target.describe()
    }

    /// The database behind the store.
    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// What is committed, for read-only queries by tests and `--status`.
    pub fn pool(&self) -> &AnyPool {
        self.db.committed()
    }

    /// Commits what is gathered, then closes every connection
    /// (checkpointing SQLite's WAL).
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// Commits the pages gathered so far.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().await
    }

    /// Answers a trivial query: the database is usable (for the watchdog).
    pub async fn ping(&self) -> bool {
        // Answered by either database.
        sqlx::query("SELECT 1")
            .execute(self.db.committed())
            .await
            .is_ok()
    }

    /// Upserts a page of leads, moves the cursors and updates the run's
    /// counters together: after a crash either all of it is there or none of
    /// it. The page joins the open batch, committed every few pages or
    /// after a second, and by the next other write or [`Store::flush`].
    pub async fn commit_page(&self, commit: PageCommit<'_>) -> Result<(), StoreError> {
        self.db.gather(&commit).await
    }
}

#[cfg(test)]
mod tests {
    use super::writer::PAGES_PER_COMMIT;
    use super::*;
    use crate::kommo::{CONTACTS, LEADS, Record, RecordId};
    use serde_json::json;

    fn lead(id: i64, updated_at: serde_json::Value) -> Record {
        Record::from_json(
            &LEADS,
            json!({"id": id, "name": "x", "updated_at": updated_at}),
        )
        .unwrap()
    }

    /// Commits `leads` (alive) and `gone` as a page of run `run_id`; with
    /// `pass`, as a page of window 0 of that full pass.
    async fn commit_page_of(
        store: &Store,
        run_id: i64,
        pass: Option<i64>,
        leads: &[Record],
        gone: &[RecordId],
    ) {
        let window = Window {
            id: 0,
            cursor: 0,
            end: None,
            done: false,
        };
        store
            .commit_page(PageCommit {
                run_id,
                records: leads,
                gone,
                window: pass.map(|pass| (pass, window)),
                counters: RunCounters::default(),
                now: 1,
                ..PageCommit::default()
            })
            .await
            .unwrap();
        store.flush().await.unwrap();
    }

    /// Hands `leads` to the writer as a page of run `run_id`, without flushing.
    async fn gather_page(store: &Store, run_id: i64, leads: &[Record]) -> Result<(), StoreError> {
        store
            .commit_page(PageCommit {
                run_id,
                records: leads,
                now: 1,
                ..PageCommit::default()
            })
            .await
    }

    async fn lead_count_seen_by_another_connection(store: &Store) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM leads")
            .fetch_one(store.pool())
            .await
            .unwrap()
    }

    async fn a_lead_listed_twice_in_a_page_is_stored_as_its_last_listing() {
        let dir = tempfile::tempdir().unwrap();
        let store = testing::open(&dir).await;
        let run = store.start_run(RunKind::Full, 1).await.unwrap();
        let first = Record::from_json(
            &LEADS,
            json!({"id": 4, "name": "old", "updated_at": 1,
            "_embedded": {"tags": [{"id": 1}]}}),
        )
        .unwrap();
        let last = Record::from_json(
            &LEADS,
            json!({"id": 4, "name": "new", "updated_at": 2,
            "_embedded": {"tags": [{"id": 2}]}}),
        )
        .unwrap();
        commit_page_of(&store, run, None, &[first, last], &[]).await;
        let (name, tags): (String, String) = sqlx::query_as(
            "SELECT name, (SELECT string_agg(CAST(tag_id AS TEXT), ',') FROM lead_tags WHERE lead_id = 4) FROM leads WHERE id = 4",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!((name.as_str(), tags.as_str()), ("new", "2"));
    }

    async fn contacts_and_companies_are_stored_with_their_phones_links_and_the_lead_view() {
        use crate::kommo::{COMPANIES, CONTACTS, Entity};
        let dir = tempfile::tempdir().unwrap();
        let store = testing::open(&dir).await;
        let run = store.start_run(RunKind::Full, 1).await.unwrap();
        let phone = |v: &str, code: &str| json!({"value": v, "enum_code": code});
        let page = |entity: &'static Entity, records: Vec<serde_json::Value>| {
            records
                .into_iter()
                .map(|r| Record::from_json(entity, r).unwrap())
                .collect::<Vec<_>>()
        };
        let companies = page(
            &COMPANIES,
            vec![
                json!({"id": 50, "name": "Acme", "updated_at": 3, "first_name": "ignored",
                "_embedded": {"tags": [{"id": 7}]}}),
            ],
        );
        let contacts = page(
            &CONTACTS,
            vec![
                json!({"id": 30, "name": "Ann Lee", "first_name": "Ann", "last_name": "Lee",
                    "updated_at": 2, "custom_fields_values": [
                        {"field_id": 1, "field_code": "PHONE", "field_type": "multitext",
                         "values": [phone("+100", "WORK"), phone("+101", "MOB")]},
                        {"field_id": 2, "field_code": "EMAIL", "field_type": "multitext",
                         "values": [phone("ann@acme.test", "PRIV")]}],
                    "_embedded": {"companies": [{"id": 50}]}}),
                json!({"id": 31, "name": "Bob", "updated_at": 2}),
            ],
        );
        let leads = page(
            &LEADS,
            vec![
                json!({"id": 1, "name": "Deal", "price": 10, "updated_at": 1,
                "_embedded": {"contacts": [{"id": 31, "is_main": false}, {"id": 30, "is_main": true}],
                              "companies": [{"id": 50}]}}),
                json!({"id": 2, "name": "Lonely", "updated_at": 1}),
            ],
        );
        for (entity, records) in [
            (&COMPANIES, &companies),
            (&CONTACTS, &contacts),
            (&LEADS, &leads),
        ] {
            store
                .commit_page(PageCommit {
                    run_id: run,
                    entity,
                    records,
                    now: 1,
                    ..PageCommit::default()
                })
                .await
                .unwrap();
        }
        store.flush().await.unwrap();
        let contact: (String, String, String, i64) = sqlx::query_as(
            "SELECT first_name, last_name, raw ->> 'name', \
             (SELECT company_id FROM contact_companies WHERE contact_id = 30) FROM contacts WHERE id = 30",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(contact, ("Ann".into(), "Lee".into(), "Ann Lee".into(), 50));
        let phones: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT phone, phone_type, position FROM contact_phones ORDER BY position",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(
            phones,
            vec![
                ("+100".into(), "WORK".into(), 0),
                ("+101".into(), "MOB".into(), 1)
            ]
        );
        let company_tag: i64 =
            sqlx::query_scalar("SELECT tag_id FROM company_tags WHERE company_id = 50")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(company_tag, 7);
        type Row = (
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let people: Vec<Row> = sqlx::query_as(
            "SELECT id, main_contact_name, main_contact_phone, main_contact_email, company_name \
             FROM leads_with_people ORDER BY id",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(
            people,
            vec![
                (
                    1,
                    Some("Ann Lee".into()),
                    Some("+100".into()),
                    Some("ann@acme.test".into()),
                    Some("Acme".into())
                ),
                (2, None, None, None, None),
            ]
        );
        store
            .commit_page(PageCommit {
                run_id: run,
                entity: &CONTACTS,
                gone: &[30],
                now: 2,
                ..PageCommit::default()
            })
            .await
            .unwrap();
        assert_eq!(store.record_counts(&CONTACTS).await.unwrap().deleted, 1);
        assert_eq!(store.record_counts(&LEADS).await.unwrap().deleted, 0);
        let name: Option<String> =
            sqlx::query_scalar("SELECT main_contact_name FROM leads_with_people WHERE id = 1")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(name, None, "a deleted contact is no lead's main contact");
    }

    #[tokio::test]
    async fn after_a_batch_is_lost_the_run_writes_no_later_page() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_limited(&dir.path().join("m.sqlite"), Some(1))
            .await
            .unwrap();
        let run = store.start_run(RunKind::Full, 1).await.unwrap();
        let big = |id: i64| {
            vec![Record::from_json(&LEADS, json!({"id": id, "name": "x".repeat(600_000)})).unwrap()]
        };
        let mut failed = false;
        for id in 1..=4 {
            if gather_page(&store, run, &big(id)).await.is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "1 MiB holds no batch of 2.4 MB");
        // A small page after the loss is refused: its progress would count on
        // the pages lost.
        let small = vec![lead(10, json!(10))];
        assert!(matches!(
            gather_page(&store, run, &small).await,
            Err(StoreError::BatchLost)
        ));
        store.flush().await.unwrap();
        // The next run writes again.
        let run = store.start_run(RunKind::Full, 2).await.unwrap();
        gather_page(&store, run, &small).await.unwrap();
        store.flush().await.unwrap();
        assert_eq!(lead_count_seen_by_another_connection(&store).await, 1);
    }

    async fn pages_commit_in_batches_and_any_other_write_or_decision_commits_them_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = testing::open(&dir).await;
        let run = store.start_run(RunKind::Full, 1).await.unwrap();
        let page = |id: i64| vec![lead(id, json!(id))];
        for id in 1..PAGES_PER_COMMIT as i64 {
            gather_page(&store, run, &page(id)).await.unwrap();
        }
        // Gathered, not yet committed: another connection sees nothing.
        assert_eq!(lead_count_seen_by_another_connection(&store).await, 0);
        // The batch's last page commits it.
        gather_page(&store, run, &page(100)).await.unwrap();
        assert_eq!(
            lead_count_seen_by_another_connection(&store).await,
            i64::from(PAGES_PER_COMMIT)
        );
        // A page then a read the sync decides on: committed before it.
        gather_page(&store, run, &page(200)).await.unwrap();
        store.sync_state().await.unwrap();
        assert_eq!(
            lead_count_seen_by_another_connection(&store).await,
            i64::from(PAGES_PER_COMMIT) + 1
        );
        // A page then the end of the run: committed before it.
        gather_page(&store, run, &page(300)).await.unwrap();
        store
            .finish_run(run, RunStatus::Ok, &RunCounters::default(), None, None, 2)
            .await
            .unwrap();
        assert_eq!(
            lead_count_seen_by_another_connection(&store).await,
            i64::from(PAGES_PER_COMMIT) + 2
        );
    }

    /// A mirror at `dir` holding leads 1 (updated_at 10) and 2 (20), not yet
    /// seen by any full pass, and a run to commit pages with.
    async fn mirror_of_two_leads(dir: &tempfile::TempDir) -> (Store, i64) {
        let store = testing::open(dir).await;
        let run = store.start_run(RunKind::Full, 1).await.unwrap();
        commit_page_of(
            &store,
            run,
            None,
            &[lead(1, json!(10)), lead(2, json!(20))],
            &[],
        )
        .await;
        (store, run)
    }

    async fn deleted_ids(store: &Store) -> Vec<i64> {
        sqlx::query_scalar("SELECT id FROM leads WHERE is_deleted = 1 ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap()
    }

    async fn leads_upserted_while_a_pass_is_open_count_as_seen_by_it() {
        let dir = tempfile::tempdir().unwrap();
        let (store, run) = mirror_of_two_leads(&dir).await;
        let (pass, _) = store.begin_full_pass(1_000).await.unwrap();
        assert_eq!(store.unseen_alive(&LEADS, pass).await.unwrap(), vec![1, 2]);
        // During the pass, lead 1 comes from another run (say, a --once),
        // and the pass's own walk lists lead 3.
        commit_page_of(&store, run, None, &[lead(1, json!(30))], &[]).await;
        commit_page_of(&store, run, Some(pass), &[lead(3, json!(40))], &[]).await;
        assert_eq!(store.unseen_alive(&LEADS, pass).await.unwrap(), vec![2]);
        assert!(store.seen_in_pass(&LEADS, pass, 3).await.unwrap());
        assert!(!store.seen_in_pass(&LEADS, pass, 2).await.unwrap());
        // Confirmed gone by id: marked deleted, no longer unseen-alive.
        commit_page_of(&store, run, Some(pass), &[], &[2]).await;
        assert_eq!(deleted_ids(&store).await, vec![2]);
        assert!(store.unseen_alive(&LEADS, pass).await.unwrap().is_empty());
    }

    async fn a_closed_pass_leaves_the_incremental_cursor_at_its_start_minus_the_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let (store, run) = mirror_of_two_leads(&dir).await;
        let (pass, _) = store.begin_full_pass(1_000).await.unwrap();
        // A lead stamped far ahead is mirrored, and moves no cursor.
        commit_page_of(&store, run, Some(pass), &[lead(3, json!(999_999))], &[]).await;
        store.finish_entity_pass(pass, &LEADS, 300).await.unwrap();
        store.finish_full_pass(pass).await.unwrap();
        let state = store.sync_state().await.unwrap();
        let leads = store.entity_state(&LEADS).await.unwrap();
        assert_eq!(leads.incremental_cursor, Some(700));
        assert_eq!(leads.full_pass_done, pass);
        assert_eq!(state.full_cursor, None);
        assert!(
            store
                .full_pass_windows(pass, &LEADS)
                .await
                .unwrap()
                .is_empty()
        );
        let contacts = store.entity_state(&CONTACTS).await.unwrap();
        assert_eq!(
            (contacts.incremental_cursor, contacts.full_pass_done),
            (None, 0),
            "an entity the pass did not walk keeps its cursor"
        );
    }

    async fn a_resumed_pass_keeps_what_it_saw_before_the_kill() {
        let dir = tempfile::tempdir().unwrap();
        let (store, run) = mirror_of_two_leads(&dir).await;
        let (pass, _) = store.begin_full_pass(1_000).await.unwrap();
        commit_page_of(&store, run, Some(pass), &[lead(1, json!(10))], &[]).await;

        // Killed; the next run resumes the same pass.
        let target = store.target().clone();
        store.close().await;
        let store = Store::open_target(target).await.unwrap();
        assert_eq!(store.begin_full_pass(2_000).await.unwrap().0, pass);
        assert_eq!(store.unseen_alive(&LEADS, pass).await.unwrap(), vec![2]);
        store.finish_entity_pass(pass, &LEADS, 0).await.unwrap();
        assert_eq!(
            store.entity_state(&LEADS).await.unwrap().incremental_cursor,
            Some(1_000),
            "the resumed pass keeps the start it had"
        );
    }

    async fn odd_types_are_stored_null_with_raw_as_received() {
        let dir = tempfile::tempdir().unwrap();
        let (store, run) = mirror_of_two_leads(&dir).await;
        let odd = Record::from_json(
            &LEADS,
            json!({
                "id": 5, "name": "nul\u{0}and 𝄞", "price": "12", "status_id": 1.5,
                "updated_at": 50, "custom_fields_values": {"a": 1}
            }),
        )
        .unwrap();
        commit_page_of(&store, run, None, std::slice::from_ref(&odd), &[]).await;
        let (name, price, status, cf, raw): (
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<String>,
            String,
        ) = sqlx::query_as(
            "SELECT name, price, status_id, CAST(custom_fields_values AS TEXT), CAST(raw AS TEXT) \
             FROM leads WHERE id = 5",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        // PostgreSQL's text holds no NUL: dropped there, `raw` keeps it.
        let sent = match store.backend() {
            Backend::Sqlite => "nul\u{0}and 𝄞",
            Backend::Postgres => "nuland 𝄞",
        };
        assert_eq!(name.as_deref(), Some(sent));
        assert_eq!((price, status, cf), (None, None, None));
        let raw: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(raw, odd.to_value());
    }

    testing::on_each_backend!(
        a_lead_listed_twice_in_a_page_is_stored_as_its_last_listing,
        contacts_and_companies_are_stored_with_their_phones_links_and_the_lead_view,
        pages_commit_in_batches_and_any_other_write_or_decision_commits_them_first,
        leads_upserted_while_a_pass_is_open_count_as_seen_by_it,
        a_closed_pass_leaves_the_incremental_cursor_at_its_start_minus_the_overlap,
        a_resumed_pass_keeps_what_it_saw_before_the_kill,
        odd_types_are_stored_null_with_raw_as_received,
    );
}
