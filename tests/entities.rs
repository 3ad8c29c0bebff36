//! Contacts and companies are mirrored as exactly as leads, by the same
//! sync: each test here runs one body for both kinds (and checks leads
//! alongside). A listing proves that a record exists; its silence proves
//! nothing, whichever entity it lists.

mod common;

use std::collections::HashSet;

use common::records::{ALL_ENTITIES, LINKED_KINDS, change_records, table};
use common::{RunOutput, TestEnv, change_account, run_statuses};
use kommo_simulator::{Fault, FaultScope, RecordKind, RecordListing, SimulatorConfig};
use serde_json::{Value, json};

/// An account of 300 leads and `records` contacts and companies each, with
/// bulk-import blocks of `tie_block`.
fn account(records: usize, tie_block: usize) -> SimulatorConfig {
    SimulatorConfig {
        leads: 300,
        contacts: records,
        companies: records,
        tie_block,
        ..SimulatorConfig::default()
    }
}

/// The anomalies of the lead tests, and a 204 where a page was due.
fn anomalies() -> Vec<(&'static str, Fault)> {
    let mut all = common::anomalies();
    all.push(("204", Fault::Status(204)));
    all
}

async fn assert_every_entity_equals_account(env: &TestEnv) {
    env.assert_mirror_equals_account().await;
    for kind in LINKED_KINDS {
        env.assert_records_equal_account(kind).await;
    }
}

/// The incremental cursor of `kind` (`entity_sync_state`).
async fn incremental_cursor(env: &TestEnv, kind: RecordKind) -> Option<i64> {
    sqlx::query_scalar("SELECT incremental_cursor FROM entity_sync_state WHERE entity = $1")
        .bind(table(kind).0)
        .fetch_optional(&env.db().await)
        .await
        .unwrap()
        .flatten()
}

/// The `raw` column of the record `id` of `kind`.
async fn raw_of(env: &TestEnv, kind: RecordKind, id: i64) -> Value {
    let sql = format!(
        "SELECT CAST(raw AS TEXT) FROM {} WHERE id = $1",
        table(kind).0
    );
    let raw: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(&env.db().await)
        .await
        .unwrap();
    serde_json::from_str(&raw).unwrap()
}

/// Asserts exactly one ERROR line with `alert` in the run's log.
fn assert_one_alert(out: &RunOutput, alert: &str) {
    let lines = TestEnv::alert_lines(out, alert);
    assert_eq!(lines.len(), 1, "{alert}: {}", out.stderr);
    assert!(lines[0].contains("ERROR"), "{}", lines[0]);
}

/// Asserts exactly one `api_filter_unavailable` ERROR line in the run's
/// log, naming a record of `ids` as the one outside the question: the
/// listing that told is that kind's.
fn assert_alert_names_one_of(out: &RunOutput, ids: &[i64]) {
    assert_one_alert(out, "api_filter_unavailable");
    let line = TestEnv::alert_lines(out, "api_filter_unavailable")[0];
    assert!(
        ids.iter()
            .any(|id| line.contains(&format!(" {id} updated at"))),
        "{line}"
    );
}

/// Asserts the mirror holds no record of any entity marked deleted.
async fn assert_nothing_marked_deleted(env: &TestEnv, context: &str) {
    assert!(env.marked_deleted().await.is_empty(), "{context}: leads");
    for kind in LINKED_KINDS {
        let marked = env.marked_deleted_of(kind).await;
        assert!(
            marked.is_empty(),
            "{context}: {}: {marked:?}",
            table(kind).0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_mirrors_every_contact_and_company_crowded_seconds_included() {
    let env = TestEnv::start_with(account(1_500, 0), "", ALL_ENTITIES).await;
    for kind in LINKED_KINDS {
        assert!(env.sim.crowd_one_second_of(kind, 600).is_some());
    }
    env.run_ok(&["--backfill"]).await;
    assert_every_entity_equals_account(&env).await;
    // The people behind each lead, as the view shows them.
    let pool = env.db().await;
    let (leads, named): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(main_contact_name) FROM leads_with_people")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(leads, env.sim.alive_ids().len() as i64);
    assert!(named > 0, "some leads have a main contact with a name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_during_a_backfill_leaves_no_contact_or_company_missing_or_falsely_deleted() {
    let env = TestEnv::start_with(account(1_200, 200), "", ALL_ENTITIES).await;
    for kind in LINKED_KINDS {
        env.sim.set_churn_per_request_of(kind, 3);
    }
    env.run_ok(&["--backfill"]).await;
    for kind in LINKED_KINDS {
        env.sim.set_churn_per_request_of(kind, 0);
        assert!(!env.sim.mutations_of(kind).is_empty(), "{kind:?} churned");
        env.assert_no_false_deletion_of(kind).await;
    }
    // What changed during the backfill, the next incremental sync reads.
    env.run_ok(&["--once"]).await;
    assert_every_entity_equals_account(&env).await;
    for kind in LINKED_KINDS {
        let deleted: HashSet<i64> = env.sim.deleted_ids_of(kind).into_iter().collect();
        let marked = env.marked_deleted_of(kind).await;
        assert!(
            marked.is_subset(&deleted),
            "{}: marked deleted but alive: {:?}",
            table(kind).0,
            marked.difference(&deleted).collect::<Vec<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_meeting_each_anomaly_on_contacts_or_companies_is_exact_or_fails() {
    for kind in LINKED_KINDS {
        for (name, fault) in anomalies() {
            let env = TestEnv::start_with(account(800, 300), "", ALL_ENTITIES).await;
            env.sim.queue_faults(
                FaultScope::Records(kind, RecordListing::All),
                2,
                vec![fault.clone()],
            );
            let out = env.run(&["--backfill"]).await;
            let statuses = run_statuses(&env.db().await).await;
            match out.code {
                Some(0) => {
                    assert_eq!(
                        statuses,
                        vec![("full".into(), "ok".into())],
                        "{kind:?} {name}"
                    );
                    assert_every_entity_equals_account(&env).await;
                }
                Some(1) => {
                    assert_eq!(
                        statuses,
                        vec![("full".into(), "failed".into())],
                        "{kind:?} {name}"
                    );
                    env.run_ok(&["--backfill"]).await;
                    assert_every_entity_equals_account(&env).await;
                }
                other => panic!("{kind:?} {name}: exit {other:?}: {out:#?}"),
            }
            for kind in LINKED_KINDS {
                env.assert_no_false_deletion_of(kind).await;
            }
            env.assert_token_absent(&[&out]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anomaly_on_a_full_sync_marks_only_deleted_contacts_and_companies() {
    for kind in LINKED_KINDS {
        for (name, fault) in anomalies() {
            let env = TestEnv::start_with(account(800, 300), "", ALL_ENTITIES).await;
            env.run_ok(&["--backfill"]).await;
            let gone: Vec<i64> = env.sim.alive_ids_of(kind).into_iter().step_by(97).collect();
            for id in &gone {
                assert!(env.sim.delete_record(kind, *id));
            }
            env.sim.queue_faults(
                FaultScope::Records(kind, RecordListing::All),
                1,
                vec![fault.clone()],
            );
            let out = env.run(&["--backfill"]).await;
            if out.code != Some(0) {
                assert_eq!(out.code, Some(1), "{kind:?} {name}: {out:#?}");
                env.run_ok(&["--backfill"]).await;
            }
            env.assert_no_false_deletion_of(kind).await;
            let marked = env.marked_deleted_of(kind).await;
            assert_eq!(
                marked,
                gone.iter().copied().collect::<HashSet<i64>>(),
                "{kind:?} {name}: exactly the deleted ones are marked"
            );
            assert_every_entity_equals_account(&env).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_and_restores_between_syncs_reach_the_mirror_through_the_events() {
    let env = TestEnv::start_with(account(600, 0), "", ALL_ENTITIES).await;
    env.run_ok(&["--backfill"]).await;
    for kind in LINKED_KINDS {
        let ids = env.sim.alive_ids_of(kind);
        for id in &ids[..6] {
            assert!(env.sim.delete_record(kind, *id));
        }
        // Deleted, then restored before the next sync: alive all along.
        assert!(env.sim.restore_record(kind, ids[0]));
        env.sim.update_record(kind, ids[10]);
        env.sim.add_record(kind);
    }
    env.sim.reset_stats();
    env.run_ok(&["--once"]).await;
    assert_every_entity_equals_account(&env).await;
    for kind in LINKED_KINDS {
        let ids = env.sim.alive_ids_of(kind);
        let marked = env.marked_deleted_of(kind).await;
        assert_eq!(marked.len(), 5, "{kind:?}: {marked:?}");
        assert!(
            !marked.contains(&ids[0]),
            "{kind:?}: the restored one is alive"
        );
    }
    // Restored after the sync marked them: alive again at the next one.
    for kind in LINKED_KINDS {
        let deleted = env.sim.deleted_ids_of(kind);
        assert!(env.sim.restore_record(kind, deleted[0]));
    }
    env.run_ok(&["--once"]).await;
    assert_every_entity_equals_account(&env).await;
    for kind in LINKED_KINDS {
        assert_eq!(env.marked_deleted_of(kind).await.len(), 4, "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_killed_among_the_contacts_resumes_to_an_exact_mirror() {
    let (config, kommo) = (
        account(2_000, 0),
        "requests_per_second = 3\npage_size = 100\n",
    );
    let env = TestEnv::start_with(config, kommo, ALL_ENTITIES).await;
    let mut child = env
        .command(&["--backfill"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the leads are walked whole, while the contacts (walked
    // alongside, ten times as many) are not.
    let started = std::time::Instant::now();
    loop {
        assert!(
            started.elapsed().as_secs() < 120,
            "the leads were never done"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if !env.db.exists() {
            continue;
        }
        let pool = env.db().await;
        let done: i64 = sqlx::query_scalar(
            "SELECT full_pass_done FROM entity_sync_state WHERE entity = 'leads'",
        )
        .fetch_one(&pool)
        .await
        .unwrap_or(0);
        pool.close().await;
        if done >= 1 {
            break;
        }
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let pool = env.db().await;
    let (leads_done, contacts_done, contacts, open): (i64, i64, i64, Option<i64>) =
        sqlx::query_as(
            "SELECT (SELECT full_pass_done FROM entity_sync_state WHERE entity = 'leads'), \
             COALESCE((SELECT full_pass_done FROM entity_sync_state WHERE entity = 'contacts'), 0), \
             (SELECT COUNT(*) FROM contacts), (SELECT full_cursor FROM sync_state)",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        leads_done >= 1 && contacts_done == 0 && contacts > 0 && open.is_some(),
        "killed among the contacts, the pass open: leads done {leads_done}, contacts done \
         {contacts_done}, {contacts} contacts"
    );
    pool.close().await;
    let resumed_at = tokio::time::Instant::now();
    env.run_ok(&["--backfill"]).await;
    assert!(
        !env.sim
            .request_log()
            .iter()
            .filter(|r| r.at >= resumed_at)
            .any(|r| r.path == "/api/v4/leads"
                && (r.query.contains("order%5Bupdated_at%5D=asc")
                    || r.query.contains("order[updated_at]=asc"))),
        "the resumed pass does not walk the leads again"
    );
    assert_every_entity_equals_account(&env).await;
    for kind in LINKED_KINDS {
        env.assert_no_false_deletion_of(kind).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typo_in_sync_entities_is_refused_with_exit_2() {
    let env = TestEnv::start_with(
        account(10, 0),
        "",
        "[sync]\nentities = [\"leads\", \"contact\"]\n",
    )
    .await;
    let out = env.run(&["--once"]).await;
    assert_eq!(out.code, Some(2), "{out:#?}");
    assert!(
        out.stderr.contains("sync.entities") && out.stderr.contains("\"contact\""),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_entity_keeps_its_own_custom_field_definitions_sync_after_sync() {
    let env = TestEnv::start_with(account(300, 0), "", ALL_ENTITIES).await;
    env.run_ok(&["--backfill"]).await;
    env.run_ok(&["--once"]).await;
    let pool = env.db().await;
    let leads_fields = env.sim.structure()["custom_fields"]
        .as_array()
        .unwrap()
        .len() as i64;
    let per_entity: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT entity_type, SUM(is_deleted = 0), SUM(is_deleted) FROM custom_fields \
         GROUP BY entity_type ORDER BY entity_type",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let alive = |e: &str| per_entity.iter().find(|r| r.0 == e).map(|r| r.1);
    assert_eq!(alive("leads"), Some(leads_fields), "{per_entity:?}");
    assert!(alive("contacts").unwrap_or(0) >= 2, "{per_entity:?}");
    assert!(alive("companies").unwrap_or(0) >= 4, "{per_entity:?}");
    assert!(
        per_entity.iter().all(|r| r.2 == 0),
        "no listing flagged another entity's fields deleted: {per_entity:?}"
    );
    // Every value of a contact or company belongs to a field of its entity,
    // and the phone and email fields carry their codes.
    for (table, entity) in [("contact", "contacts"), ("company", "companies")] {
        let sql = format!(
            "SELECT COUNT(*) FROM {table}_field_values AS v \
             LEFT JOIN custom_fields AS f ON f.id = v.field_id AND f.entity_type = '{entity}' \
             WHERE f.id IS NULL OR f.code IS NOT v.field_code"
        );
        let orphans: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(orphans, 0, "{table} values without their field definition");
        let sql = format!("SELECT COUNT(*) FROM {table}_field_values WHERE field_code = 'PHONE'");
        let phones: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(phones > 0, "{table}: phones");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_filters_on_the_contacts_or_companies_fail_the_run_with_the_alert_and_mark_nothing_deleted()
 {
    for kind in LINKED_KINDS {
        // `kind` spans three pages; leads and the other kind fit in one, so
        // that, all changed since the last sync, an unfiltered answer of
        // theirs is the filtered one: only `kind`'s listing tells.
        let count = |k: RecordKind| if k == kind { 300 } else { 60 };
        let config = SimulatorConfig {
            leads: 60,
            contacts: count(RecordKind::Contact),
            companies: count(RecordKind::Company),
            tie_block: 0,
            ..SimulatorConfig::default()
        };
        let env = TestEnv::start_with(config, "page_size = 100", ALL_ENTITIES).await;
        env.run_ok(&["--backfill"]).await;
        assert_every_entity_equals_account(&env).await;
        let gone = env.sim.alive_ids_of(kind)[5];
        assert!(env.sim.delete_record(kind, gone));
        for id in env.sim.alive_ids() {
            assert!(env.sim.update_lead(id));
        }
        for other in LINKED_KINDS.into_iter().filter(|k| *k != kind) {
            for id in env.sim.alive_ids_of(other) {
                assert!(env.sim.update_record(other, id));
            }
        }
        let cursor = incremental_cursor(&env, kind).await;
        assert!(cursor.is_some(), "{kind:?}: the backfill set the cursor");

        env.sim.set_filters_ignored(true);
        let asked_before = env.sim.request_log().len();
        let once = env.run(&["--once"]).await;
        assert_eq!(once.code, Some(1), "{kind:?}: {once:#?}");
        assert_alert_names_one_of(&once, &env.sim.alive_ids_of(kind));
        let asked: usize = env.sim.request_log()[asked_before..]
            .iter()
            .filter(|r| r.path == kind.path())
            .count();
        assert!(
            (1..=3).contains(&asked),
            "{kind:?}: {asked} requests to {} after the first unfiltered answer",
            kind.path()
        );
        let pool = env.db().await;
        assert_eq!(
            run_statuses(&pool).await.last(),
            Some(&("incremental".into(), "failed".into())),
            "{kind:?}"
        );
        assert_eq!(
            incremental_cursor(&env, kind).await,
            cursor,
            "{kind:?}: the cursor did not move"
        );
        assert_nothing_marked_deleted(&env, &format!("{kind:?} --once")).await;
        // The walks before the one that told are kept, leads alongside.
        env.assert_mirror_equals_account().await;
        if kind == RecordKind::Company {
            env.assert_records_equal_account(RecordKind::Contact).await;
        }

        // A full sync meets the same account: it stops, and reconciles no
        // deletion from walks it never finished.
        let backfill = env.run(&["--backfill"]).await;
        assert_eq!(backfill.code, Some(1), "{kind:?}: {backfill:#?}");
        assert_alert_names_one_of(&backfill, &env.sim.alive_ids_of(kind));
        assert_eq!(
            run_statuses(&pool).await.last(),
            Some(&("full".into(), "failed".into())),
            "{kind:?}"
        );
        assert_eq!(incremental_cursor(&env, kind).await, cursor, "{kind:?}");
        assert_nothing_marked_deleted(&env, &format!("{kind:?} --backfill")).await;

        // Filters honoured again: the next runs mirror the account, the
        // deletion included.
        env.sim.set_filters_ignored(false);
        env.run_ok(&["--once"]).await;
        assert_every_entity_equals_account(&env).await;
        assert_eq!(
            env.marked_deleted_of(kind).await,
            HashSet::from([gone]),
            "{kind:?}"
        );
        env.run_ok(&["--backfill"]).await;
        assert_every_entity_equals_account(&env).await;
        assert_eq!(
            env.marked_deleted_of(kind).await,
            HashSet::from([gone]),
            "{kind:?}"
        );
        env.assert_token_absent(&[&once, &backfill]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_or_company_stamped_a_year_ahead_moves_no_cursor_past_now() {
    const YEAR: i64 = 365 * 86_400;
    let env = TestEnv::start_with(account(400, 0), "", ALL_ENTITIES).await;
    env.run_ok(&["--backfill"]).await;
    let lead = env.sim.alive_ids()[7];
    assert!(env.sim.stamp_lead_ahead(lead, YEAR));
    let mut ahead = vec![(RecordKind::Lead, lead)];
    for kind in LINKED_KINDS {
        let id = env.sim.alive_ids_of(kind)[7];
        assert!(env.sim.stamp_ahead(kind, id, YEAR));
        ahead.push((kind, id));
    }
    let out = env.run_ok(&["--once"]).await;
    for (kind, id) in &ahead {
        let warnings = out
            .stderr
            .lines()
            .filter(|l| l.contains("WARN") && l.contains(&format!(" {id} is stamped")))
            .count();
        assert_eq!(warnings, 1, "{kind:?} {id}: {}", out.stderr);
    }
    let assert_cursors_not_past_now = |when: &'static str| {
        let env = &env;
        async move {
            let now = env.sim.server_now();
            for kind in RecordKind::ALL {
                let cursor = incremental_cursor(env, kind).await;
                assert!(
                    cursor.is_some_and(|c| c <= now),
                    "{when}: {kind:?}: the cursor {cursor:?} is past Kommo's now {now}"
                );
            }
        }
    };
    assert_cursors_not_past_now("--once").await;
    // The record is mirrored as served, its future stamp included.
    for (kind, id) in &ahead[1..] {
        let raw = raw_of(&env, *kind, *id).await;
        assert!(
            raw["updated_at"].as_i64().unwrap() > env.sim.server_now() + YEAR / 2,
            "{kind:?} {id}: {raw}"
        );
    }

    // Changes made after it are not hidden behind it.
    change_account(&env.sim, 40);
    for kind in LINKED_KINDS {
        let ids = env.sim.alive_ids_of(kind);
        for id in ids.iter().skip(100).step_by(10).take(20) {
            assert!(env.sim.update_record(kind, *id));
        }
        for _ in 0..5 {
            env.sim.add_record(kind);
        }
    }
    env.run_ok(&["--once"]).await;
    assert_every_entity_equals_account(&env).await;
    assert_cursors_not_past_now("second --once").await;
    env.run_ok(&["--backfill"]).await;
    assert_every_entity_equals_account(&env).await;
    assert_cursors_not_past_now("--backfill").await;
    for kind in LINKED_KINDS {
        env.assert_no_false_deletion_of(kind).await;
    }
    env.assert_token_absent(&[&out]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_clock_15_minutes_ahead_or_behind_keeps_contacts_and_companies_exact() {
    for offset in [15 * 60, -15 * 60] {
        let env = TestEnv::start_with(account(400, 100), "", ALL_ENTITIES).await;
        env.sim.set_clock_offset(offset);
        let churn = |n: usize| {
            for kind in RecordKind::ALL {
                env.sim.set_churn_per_request_of(kind, n);
            }
        };
        churn(2);
        env.run_ok(&["--backfill"]).await;
        churn(0);
        for kind in LINKED_KINDS {
            assert!(!env.sim.mutations_of(kind).is_empty(), "{kind:?} churned");
            env.assert_no_false_deletion_since(kind, 0, &HashSet::new(), "the churned backfill")
                .await;
        }
        env.run_ok(&["--once"]).await;
        assert_every_entity_equals_account(&env).await;

        change_account(&env.sim, 40);
        for kind in LINKED_KINDS {
            change_records(&env.sim, kind, 40);
        }
        env.run_ok(&["--once"]).await;
        assert_every_entity_equals_account(&env).await;

        change_account(&env.sim, 40);
        for kind in LINKED_KINDS {
            change_records(&env.sim, kind, 40);
        }
        let since = env.sim.mutations().len();
        let since_of = LINKED_KINDS.map(|kind| env.sim.mutations_of(kind).len());
        churn(1);
        env.run_ok(&["--backfill"]).await;
        churn(0);
        env.assert_no_false_deletion(since).await;
        for (kind, since) in LINKED_KINDS.into_iter().zip(since_of) {
            env.assert_no_false_deletion_since(kind, since, &HashSet::new(), "the second backfill")
                .await;
        }
        env.run_ok(&["--once"]).await;
        assert_every_entity_equals_account(&env).await;
        for kind in LINKED_KINDS {
            // Every deletion the mirror saw the record of is marked, and
            // nothing else is.
            let deleted: HashSet<i64> = env.sim.deleted_ids_of(kind).into_iter().collect();
            let marked = env.marked_deleted_of(kind).await;
            assert!(
                !marked.is_empty(),
                "{offset} {kind:?}: deletions were marked"
            );
            assert!(
                marked.is_subset(&deleted),
                "{offset} {kind:?}: marked but alive: {:?}",
                marked.difference(&deleted).collect::<Vec<_>>()
            );
        }
        let deleted: HashSet<i64> = env.sim.deleted_ids().into_iter().collect();
        env.assert_marked_deleted(&deleted).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_contacts_and_companies_are_skipped_or_stored_and_the_mirror_moves_on() {
    let env = TestEnv::start_with(account(400, 0), "", ALL_ENTITIES).await;
    let mut odd_ids = Vec::new();
    for kind in LINKED_KINDS {
        let stamp = env.sim.alive_records(kind)[200]["updated_at"]
            .as_i64()
            .unwrap();
        let odd = [
            json!({"id": 9_000_001, "name": "responsible as text", "responsible_user_id": "12", "updated_at": stamp}),
            json!({"id": 9_000_002, "name": "fields as object", "custom_fields_values": {"a": 1}, "updated_at": stamp}),
            json!({"id": 9_000_003, "name": "nul \u{0} inside and 4-byte 𝄞 😀", "updated_at": stamp}),
        ];
        odd_ids = odd.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        for record in odd {
            env.sim.add_raw_record(kind, record);
        }
        env.sim
            .add_raw_record(kind, json!({"name": "no id at all", "updated_at": stamp}));
        env.sim.add_raw_record(
            kind,
            json!({"id": "abc", "name": "id as text", "updated_at": stamp + 1}),
        );
    }
    let out = env.run_ok(&["--backfill"]).await;
    for singular in ["contact", "company"] {
        for says in [
            format!("Kommo sent a {singular} that cannot be stored (it has no id)"),
            format!("Kommo sent a {singular} that cannot be stored (its id is not a positive"),
            format!("{singular} 9000001 has fields of an unexpected type"),
            format!("{singular} 9000002 has fields of an unexpected type"),
        ] {
            assert!(out.stderr.contains(&says), "{says}: {}", out.stderr);
        }
    }
    let pool = env.db().await;
    let (status, skipped): (String, i64) =
        sqlx::query_as("SELECT status, leads_skipped FROM sync_runs")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, "ok");
    assert_eq!(skipped, 0, "leads_skipped counts leads only");

    // Every record is exact, the odd ones with `raw` as received (the
    // simulator serves them as given) and NULL where the type does not fit.
    assert_every_entity_equals_account(&env).await;
    for kind in LINKED_KINDS {
        let (table, _) = table(kind);
        let alive = env.sim.alive_ids_of(kind);
        assert!(odd_ids.iter().all(|id| alive.contains(id)), "{table}");
        let sql = format!(
            "SELECT responsible_user_id IS NULL, custom_fields_values IS NULL, name \
             FROM {table} WHERE id IN (9000001, 9000002, 9000003) ORDER BY id"
        );
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(rows.len(), 3, "{table}");
        assert_eq!(rows[0].0, 1, "{table}: a text responsible_user_id is NULL");
        assert_eq!(
            rows[1].1, 1,
            "{table}: an object custom_fields_values is NULL"
        );
        assert_eq!(rows[2].2, "nul \u{0} inside and 4-byte 𝄞 😀", "{table}");
    }

    // The next --once is not stuck on them.
    change_account(&env.sim, 20);
    for kind in LINKED_KINDS {
        for id in env.sim.alive_ids_of(kind).iter().step_by(15).take(20) {
            assert!(env.sim.update_record(kind, *id));
        }
        env.sim.add_record(kind);
    }
    let once = env.run_ok(&["--once"]).await;
    assert_eq!(
        run_statuses(&pool).await.last(),
        Some(&("incremental".into(), "ok".into()))
    );
    assert_every_entity_equals_account(&env).await;
    env.assert_token_absent(&[&out, &once]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_or_company_change_that_becomes_visible_late_is_mirrored_by_the_next_once() {
    const LAG: std::time::Duration = std::time::Duration::from_secs(6);
    let env = TestEnv::start_with(account(300, 0), "", ALL_ENTITIES).await;
    env.run_ok(&["--backfill"]).await;
    let mut late = Vec::new();
    for kind in RecordKind::ALL {
        let id = env.sim.alive_ids_of(kind)[10];
        // Leads are mirrored as listed `with=contacts`.
        let before = if kind == RecordKind::Lead {
            env.sim.alive_leads()[10].clone()
        } else {
            env.sim.alive_records(kind)[10].clone()
        };
        assert_eq!(before["id"].as_i64(), Some(id));
        late.push((kind, id, before));
    }
    let changed_at = std::time::Instant::now();
    let changed_second = env.sim.server_now();
    for (kind, id, _) in &late {
        assert!(env.sim.update_visible_after(*kind, *id, LAG));
        // A change seen at once, as late or later: the walk passes the
        // invisible change's second.
        assert!(
            env.sim
                .update_record(*kind, env.sim.alive_ids_of(*kind)[20])
        );
    }
    // The first --once runs while the changes are invisible: it still sees
    // the old records, and moves its cursors past the changes' second.
    env.run_ok(&["--once"]).await;
    assert!(
        changed_at.elapsed() < LAG,
        "the first --once ended before the changes became visible"
    );
    for (kind, id, before) in &late {
        assert_eq!(&raw_of(&env, *kind, *id).await, before, "{kind:?} {id}");
        let cursor = incremental_cursor(&env, *kind).await;
        assert!(
            cursor.is_some_and(|c| c >= changed_second),
            "{kind:?}: the cursor {cursor:?} is before the change's second {changed_second}"
        );
    }
    tokio::time::sleep(
        LAG.saturating_sub(changed_at.elapsed()) + std::time::Duration::from_millis(500),
    )
    .await;
    // Visible now, stamped in the past: the overlap brings them in.
    env.run_ok(&["--once"]).await;
    assert_every_entity_equals_account(&env).await;
    for (kind, id, before) in &late {
        assert_ne!(&raw_of(&env, *kind, *id).await, before, "{kind:?} {id}");
    }
}
