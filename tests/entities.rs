//! Contacts and companies are mirrored as exactly as leads, by the same
//! sync: each test here runs one body for both kinds (and checks leads
//! alongside). A listing proves that a record exists; its silence proves
//! nothing, whichever entity it lists.

mod common;

use std::collections::HashSet;

use common::records::{ALL_ENTITIES, LINKED_KINDS, table};
use common::{TestEnv, run_statuses};
use kommo_simulator::{Fault, FaultScope, RecordListing, SimulatorConfig};

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
    // Killed once some contacts are mirrored (the leads are done by then).
    let started = std::time::Instant::now();
    loop {
        assert!(started.elapsed().as_secs() < 120, "no contact was mirrored");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if !env.db.exists() {
            continue;
        }
        let pool = env.db().await;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM contacts")
            .fetch_one(&pool)
            .await
            .unwrap_or(0);
        pool.close().await;
        if n >= 300 {
            break;
        }
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let pool = env.db().await;
    let (leads_done, open): (i64, Option<i64>) = sqlx::query_as(
        "SELECT (SELECT full_pass_done FROM entity_sync_state WHERE entity = 'leads'), \
         (SELECT full_cursor FROM sync_state)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        leads_done >= 1 && open.is_some(),
        "killed among the contacts, the pass open"
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
