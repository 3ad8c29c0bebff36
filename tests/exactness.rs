//! A listing proves that a lead exists; its silence proves nothing. Full
//! syncs, backfills and incremental syncs against answers that are not clean
//! (empty, cut short, truncated), a bulk edit into the current second, clocks
//! that differ, a lead stamped in the future and leads that cannot be stored:
//! no alive lead is ever marked deleted, no run ends `ok` with leads missing.

mod common;

use std::collections::HashSet;

use common::{TestEnv, anomalies, change_account, mirror_rows, run_statuses};
use kommo_simulator::{Fault, FaultScope, SimulatorConfig};
use serde_json::json;

fn account(leads: usize, tie_block: usize) -> SimulatorConfig {
    SimulatorConfig {
        leads,
        tie_block,
        ..SimulatorConfig::default()
    }
}

/// A full pass walked as one window, so that faults queued for the Nth lead
/// request meet one walk, in order.
const ONE_WALK: &str = "[sync]\nparallel_windows = 1\n";

async fn a_full_sync_meeting_each_anomaly_under_churn_marks_only_deleted_leads() {
    for (name, fault) in anomalies() {
        let env = TestEnv::start(account(2_000, 300)).await;
        env.run_ok(&["--backfill"]).await;
        // The account changes between syncs, and while the full sync runs.
        change_account(&env.sim, 200);
        let deleted_before: HashSet<i64> = env.sim.deleted_ids().into_iter().collect();
        let since = env.sim.mutations().len();
        env.sim.set_churn_per_lead_request(2);
        env.sim.queue_faults(FaultScope::Leads, 3, vec![fault]);
        let out = env.run(&["--backfill"]).await;
        env.sim.set_churn_per_lead_request(0);
        assert_eq!(out.code, Some(0), "{name}: {out:#?}");

        env.assert_no_false_deletion(since).await;
        let still_deleted: HashSet<i64> = env
            .sim
            .deleted_ids()
            .into_iter()
            .filter(|id| deleted_before.contains(id))
            .collect();
        assert!(!still_deleted.is_empty());
        env.assert_marked_deleted(&still_deleted).await;
        env.run_ok(&["--once"]).await;
        env.assert_mirror_equals_account().await;
        env.assert_token_absent(&[&out]);
    }
}

async fn a_backfill_meeting_each_anomaly_is_exact_or_fails() {
    for (name, fault) in anomalies() {
        for skip in [1, 4] {
            let env = TestEnv::start(account(2_000, 300)).await;
            env.sim
                .queue_faults(FaultScope::Leads, skip, vec![fault.clone()]);
            let out = env.run(&["--backfill"]).await;
            let statuses = run_statuses(&env.db().await).await;
            match out.code {
                Some(0) => {
                    assert_eq!(statuses, vec![("full".into(), "ok".into())], "{name}");
                    env.assert_mirror_equals_account().await;
                }
                Some(1) => assert_eq!(statuses, vec![("full".into(), "failed".into())]),
                other => panic!("{name}: exit {other:?}: {out:#?}"),
            }
            env.assert_token_absent(&[&out]);
        }
    }
}

async fn a_listing_that_ends_early_with_204_is_asked_again_or_fails_the_backfill() {
    // One 204 where a page was due: asked again, the backfill is exact.
    let env = TestEnv::start(account(2_000, 0)).await;
    env.sim
        .queue_faults(FaultScope::Leads, 4, vec![Fault::Status(204)]);
    env.run_ok(&["--backfill"]).await;
    env.assert_mirror_equals_account().await;

    // Two in a row: the walk ends before Kommo's newest lead, which is alive
    // and unchanged, so the run fails and the next one walks on. (One walk:
    // with several, the two 204s could land on two walks, each asked again.)
    let env = TestEnv::start_with(account(2_000, 0), "", ONE_WALK).await;
    env.sim
        .queue_faults(FaultScope::Leads, 4, vec![Fault::Status(204); 2]);
    let out = env.run(&["--backfill"]).await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("was cut short"), "{}", out.stderr);
    assert_eq!(
        run_statuses(&env.db().await).await,
        vec![("full".into(), "failed".into())]
    );
    env.run_ok(&["--backfill"]).await;
    env.assert_mirror_equals_account().await;
    env.assert_token_absent(&[&out]);
}

async fn a_lead_restored_behind_the_walk_is_confirmed_alive_by_id_not_marked_deleted() {
    // Two requests a second, 100 leads a page: a full sync of ~20 pages.
    let env = TestEnv::start_with(
        account(2_000, 0),
        "requests_per_second = 2\npage_size = 100",
        "",
    )
    .await;
    env.run_ok(&["--backfill"]).await;
    // The oldest lead is deleted before the full sync passes it, and restored
    // (its updated_at kept) once the walk is past it: no listing shows it.
    let oldest = env
        .sim
        .alive_leads()
        .iter()
        .min_by_key(|l| (l["updated_at"].as_i64(), l["id"].as_i64()))
        .map(|l| l["id"].as_i64().unwrap())
        .unwrap();
    assert!(env.sim.delete_lead(oldest));
    env.sim.reset_stats();
    let child = env
        .command(&["--backfill"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while env.sim.stats().lead_requests < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(env.sim.restore_lead(oldest));
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("asking Kommo by id"),
        "the pass asked for the lead it did not list"
    );
    assert!(
        !env.marked_deleted().await.contains(&oldest),
        "a lead no listing showed, but alive, was marked deleted"
    );
    env.assert_mirror_equals_account().await;
}

async fn a_change_that_becomes_visible_late_is_mirrored_by_the_next_once() {
    let env = TestEnv::start(account(1_000, 0)).await;
    env.run_ok(&["--backfill"]).await;
    let id = env.sim.alive_ids()[10];
    let before = env.sim.alive_leads()[10].clone();
    assert!(
        env.sim
            .update_lead_visible_after(id, std::time::Duration::from_secs(2))
    );
    // The first --once runs while the change is invisible: it still sees the
    // old lead, and moves its cursor past the change's second.
    env.run_ok(&["--once"]).await;
    let rows = mirror_rows(&env.db().await, &format!("id = {id}")).await;
    common::assert_row_equals_lead(&rows[0], &before);
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    // Visible now, stamped in the past: the overlap brings it in.
    env.run_ok(&["--once"]).await;
    env.assert_mirror_equals_account().await;
    let rows = mirror_rows(&env.db().await, &format!("id = {id}")).await;
    assert_ne!(
        serde_json::from_str::<serde_json::Value>(&rows[0].raw).unwrap(),
        before
    );
}

async fn retries_that_keep_meeting_empty_answers_fail_the_run_and_keep_progress() {
    let env = TestEnv::start_with(account(2_000, 0), "max_retries = 1", ONE_WALK).await;
    // The first try and its one retry (of one walk) both meet an empty 200.
    env.sim
        .queue_faults(FaultScope::Leads, 3, vec![Fault::EmptyLeads; 2]);
    let out = env.run(&["--backfill"]).await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr.contains("HTTP 200 without leads"),
        "{}",
        out.stderr
    );
    let pool = env.db().await;
    assert_eq!(
        run_statuses(&pool).await,
        vec![("full".into(), "failed".into())]
    );
    let kept = mirror_rows(&pool, "TRUE").await.len();
    assert!(kept >= 250, "the pages before the failure are kept: {kept}");
    // The next backfill resumes and completes.
    env.run_ok(&["--backfill"]).await;
    env.assert_mirror_equals_account().await;
    env.assert_token_absent(&[&out]);
}

async fn a_bulk_edit_into_the_current_second_during_a_parallel_full_sync_marks_no_alive_lead_deleted()
 {
    let env = TestEnv::start(account(5_000, 600)).await;
    env.run_ok(&["--backfill"]).await;
    // Slow answers make the full sync walk several windows at once.
    env.sim.set_latency(std::time::Duration::from_millis(300));
    change_account(&env.sim, 100);
    let since = env.sim.mutations().len();
    env.sim.set_churn_per_lead_request(2);
    env.sim.schedule_bulk_update(6, 400);
    let out = env.run_ok(&["--backfill"]).await;
    env.sim.set_churn_per_lead_request(0);
    env.sim.set_latency(std::time::Duration::ZERO);
    assert_eq!(
        env.sim.bulk_updated_ids().len(),
        400,
        "the bulk edit happened"
    );
    assert!(
        env.sim.stats().max_in_flight > 1,
        "windows were walked at once: {:?}",
        env.sim.stats()
    );
    env.assert_no_false_deletion(since).await;
    env.run_ok(&["--once"]).await;
    env.assert_mirror_equals_account().await;
    env.assert_token_absent(&[&out]);
}

async fn a_server_clock_15_minutes_ahead_or_behind_keeps_the_mirror_exact() {
    for offset in [15 * 60, -15 * 60] {
        let env = TestEnv::start(account(2_000, 300)).await;
        env.sim.set_clock_offset(offset);
        env.sim.set_churn_per_lead_request(2);
        env.run_ok(&["--backfill"]).await;
        env.sim.set_churn_per_lead_request(0);
        env.run_ok(&["--once"]).await;
        env.assert_mirror_equals_account().await;

        change_account(&env.sim, 100);
        env.run_ok(&["--once"]).await;
        env.assert_mirror_equals_account().await;

        change_account(&env.sim, 100);
        let since = env.sim.mutations().len();
        env.sim.set_churn_per_lead_request(1);
        env.run_ok(&["--backfill"]).await;
        env.sim.set_churn_per_lead_request(0);
        env.assert_no_false_deletion(since).await;
        env.run_ok(&["--once"]).await;
        env.assert_mirror_equals_account().await;
        let deleted: HashSet<i64> = env.sim.deleted_ids().into_iter().collect();
        env.assert_marked_deleted(&deleted).await;
    }
}

async fn a_lead_stamped_a_year_ahead_moves_no_cursor_past_now() {
    let env = TestEnv::start(account(2_000, 0)).await;
    env.run_ok(&["--backfill"]).await;
    let ids = env.sim.alive_ids();
    let ahead = ids[7];
    assert!(env.sim.stamp_lead_ahead(ahead, 365 * 86_400));
    let out = env.run_ok(&["--once"]).await;
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(&format!("lead {ahead} is stamped")))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    let (cursor,): (i64,) =
        sqlx::query_as("SELECT incremental_cursor FROM entity_sync_state WHERE entity = 'leads'")
            .fetch_one(&env.db().await)
            .await
            .unwrap();
    assert!(
        cursor <= env.sim.server_now(),
        "the cursor {cursor} is past Kommo's now"
    );

    for id in ids.iter().skip(100).step_by(20).take(50) {
        assert!(env.sim.update_lead(*id));
    }
    for _ in 0..10 {
        env.sim.add_lead();
    }
    env.run_ok(&["--once"]).await;
    env.assert_mirror_equals_account().await;
    // A full sync mirrors it too, and leaves the cursor no later than its
    // start minus the overlap.
    env.run_ok(&["--backfill"]).await;
    env.assert_mirror_equals_account().await;
}

async fn malformed_leads_are_skipped_or_stored_and_the_mirror_moves_on() {
    let env = TestEnv::start(account(1_000, 0)).await;
    let stamp = env.sim.alive_leads()[500]["updated_at"].as_i64().unwrap();
    let odd = [
        json!({"id": 9_000_001, "name": "price as text", "price": "1500", "updated_at": stamp}),
        json!({"id": 9_000_002, "name": "fields as object", "custom_fields_values": {"a": 1}, "updated_at": stamp}),
        json!({"id": 9_000_003, "name": "nul \u{0} inside and 4-byte 𝄞 😀", "updated_at": stamp}),
    ];
    for lead in &odd {
        env.sim.add_raw_lead(lead.clone());
    }
    env.sim
        .add_raw_lead(json!({"name": "no id at all", "updated_at": stamp}));
    env.sim
        .add_raw_lead(json!({"id": "abc", "name": "id as text", "updated_at": stamp + 1}));
    let out = env.run_ok(&["--backfill"]).await;
    assert!(
        out.stderr.contains("cannot be stored (it has no id)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("unexpected type"), "{}", out.stderr);
    let pool = env.db().await;
    let (status, skipped): (String, i64) =
        sqlx::query_as("SELECT status, leads_skipped FROM sync_runs")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, "ok");
    assert!(skipped >= 2, "skipped {skipped}");

    // Every other lead is exact; the odd ones keep raw as received, typed
    // columns NULL where the type does not fit.
    let odd_ids: Vec<i64> = odd.iter().map(|l| l["id"].as_i64().unwrap()).collect();
    let account: Vec<serde_json::Value> = env
        .sim
        .alive_leads()
        .into_iter()
        .filter(|l| !odd_ids.contains(&l["id"].as_i64().unwrap()))
        .collect();
    let rows = mirror_rows(&pool, "is_deleted = 0").await;
    let (odd_rows, rows): (Vec<_>, Vec<_>) =
        rows.into_iter().partition(|r| odd_ids.contains(&r.id));
    assert_eq!(rows.len(), account.len());
    for (row, lead) in rows.iter().zip(&account) {
        common::assert_row_equals_lead(row, lead);
    }
    assert_eq!(odd_rows.len(), 3);
    for (row, lead) in odd_rows.iter().zip(&odd) {
        let raw: serde_json::Value = serde_json::from_str(&row.raw).unwrap();
        assert_eq!(&raw, lead, "raw as received");
    }
    assert_eq!(odd_rows[0].columns["price"], serde_json::Value::Null);
    assert_eq!(odd_rows[1].custom_fields_values, None);
    let name: String = sqlx::query_scalar("SELECT name FROM leads WHERE id = 9000003")
        .fetch_one(&pool)
        .await
        .unwrap();
    let sent = odd[2]["name"].as_str().unwrap();
    if env.on_postgres() {
        // PostgreSQL's text holds no NUL: the column drops it, `raw` (json,
        // checked above) keeps it escaped, as received.
        assert_eq!(name, sent.replace('\0', ""));
    } else {
        assert_eq!(name, sent);
    }

    // The next --once is not stuck on them.
    let ids = env.sim.alive_ids();
    for id in ids.iter().take(20) {
        env.sim.update_lead(*id);
    }
    env.run_ok(&["--once"]).await;
    let rows = mirror_rows(&pool, "is_deleted = 0").await;
    let by_id: std::collections::HashMap<i64, &serde_json::Value> = account
        .iter()
        .map(|l| (l["id"].as_i64().unwrap(), l))
        .collect();
    let now_account = env.sim.alive_leads();
    for lead in now_account.iter().filter(|l| {
        let id = l["id"].as_i64().unwrap();
        by_id.contains_key(&id)
    }) {
        let id = lead["id"].as_i64().unwrap();
        let row = rows.iter().find(|r| r.id == id).unwrap();
        common::assert_row_equals_lead(row, lead);
    }
    env.assert_token_absent(&[&out]);
}

async fn a_short_page_where_the_listing_seems_to_end_is_asked_again() {
    // Two leads a page, the smallest overlap (1 s: the generated leads are
    // all older, so only the changes are listed): the page from the last
    // second of a full page, cut in half, would look like the end of the
    // listing. Leads alone: two records a page would make the contacts'
    // walk hundreds of requests long.
    let env = TestEnv::start_with(
        account(20, 0),
        "page_size = 2",
        "[sync]\noverlap_seconds = 1\nentities = [\"leads\"]\n",
    )
    .await;
    env.run_ok(&["--backfill"]).await;
    let ids = env.sim.alive_ids();
    for id in ids.iter().take(3) {
        assert!(env.sim.update_lead(*id));
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    }
    // The --once: page 1 (two changes, full), then the page from its newest
    // second (the second and third changes) comes back halved.
    env.sim
        .queue_faults(FaultScope::Leads, 1, vec![Fault::ShortPage]);
    let out = env.run_ok(&["--once"]).await;
    env.assert_mirror_equals_account().await;
    env.assert_token_absent(&[&out]);
}

async fn a_lead_stamped_ahead_does_not_keep_a_slow_walk_going() {
    // One request a second: every answer's Date is a second later than the
    // last, and a lead an hour ahead must not drag the cursor along.
    let env = TestEnv::start_with(account(50, 0), "requests_per_second = 1", "").await;
    env.run_ok(&["--backfill"]).await;
    assert!(env.sim.stamp_lead_ahead(env.sim.alive_ids()[3], 3_600));
    env.sim.reset_stats();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), env.run(&["--once"]))
        .await
        .expect("the --once ends");
    assert_eq!(out.code, Some(0), "{out:#?}");
    assert!(env.sim.stats().lead_requests <= 6, "{:?}", env.sim.stats());
    env.assert_mirror_equals_account().await;
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), env.run(&["--backfill"]))
        .await
        .expect("the full sync ends");
    assert_eq!(out.code, Some(0), "{out:#?}");
    env.assert_mirror_equals_account().await;
}

/// The full sync leaves the deleted-leads cursor at its start: the next
/// `--once` lists only the leads deleted since, not the whole trash, and
/// still marks every one of them.
async fn a_once_after_a_backfill_lists_only_the_leads_deleted_since_it_began() {
    let env = TestEnv::start(account(3_000, 0)).await;
    // A trash of 700 leads (three pages), deleted an hour before the first
    // backfill.
    for id in env.sim.alive_ids().iter().step_by(4).take(700) {
        env.sim.delete_lead(*id);
    }
    env.sim.set_clock_offset(3_600);
    env.run_ok(&["--backfill"]).await;
    let ids = env.sim.alive_ids();
    for id in ids.iter().step_by(20).take(100) {
        env.sim.update_lead(*id);
    }
    let deleted: HashSet<i64> = ids.iter().skip(7).step_by(200).take(5).copied().collect();
    for id in &deleted {
        env.sim.delete_lead(*id);
    }
    let before = env.sim.request_log().len();
    env.run_ok(&["--once"]).await;
    let lead_requests: Vec<String> = env.sim.request_log()[before..]
        .iter()
        .filter(|r| r.path == "/api/v4/leads")
        .map(|r| r.query.clone())
        .collect();
    assert!(
        lead_requests.len() <= 4,
        "a --once after 100 changes sent {} lead requests: {lead_requests:#?}",
        lead_requests.len()
    );
    env.assert_mirror_equals_account().await;
    env.assert_marked_deleted(&deleted).await;
}

/// A lead deleted and restored within one second: events come newest
/// first, so the last one read for it is the deletion, which the mirror
/// already holds; it is asked for by id all the same and stays alive.
async fn a_lead_deleted_and_restored_within_one_second_is_mirrored_alive() {
    let env = TestEnv::start(account(500, 0)).await;
    env.run_ok(&["--backfill"]).await;
    let id = env.sim.alive_ids()[100];
    env.sim.freeze_clock(true);
    env.sim.delete_lead(id);
    env.run_ok(&["--once"]).await;
    assert!(env.marked_deleted().await.contains(&id));
    // Restored in the same second: its `updated_at` stays what it was
    // before, so only the events tell.
    env.sim.restore_lead(id);
    env.run_ok(&["--once"]).await;
    env.sim.freeze_clock(false);
    env.assert_mirror_equals_account().await;
}

on_each_backend!(
    a_full_sync_meeting_each_anomaly_under_churn_marks_only_deleted_leads,
    a_backfill_meeting_each_anomaly_is_exact_or_fails,
    a_listing_that_ends_early_with_204_is_asked_again_or_fails_the_backfill,
    a_lead_restored_behind_the_walk_is_confirmed_alive_by_id_not_marked_deleted,
    a_change_that_becomes_visible_late_is_mirrored_by_the_next_once,
    retries_that_keep_meeting_empty_answers_fail_the_run_and_keep_progress,
    a_bulk_edit_into_the_current_second_during_a_parallel_full_sync_marks_no_alive_lead_deleted,
    a_server_clock_15_minutes_ahead_or_behind_keeps_the_mirror_exact,
    a_lead_stamped_a_year_ahead_moves_no_cursor_past_now,
    malformed_leads_are_skipped_or_stored_and_the_mirror_moves_on,
    a_short_page_where_the_listing_seems_to_end_is_asked_again,
    a_lead_stamped_ahead_does_not_keep_a_slow_walk_going,
    a_once_after_a_backfill_lists_only_the_leads_deleted_since_it_began,
    a_lead_deleted_and_restored_within_one_second_is_mirrored_alive,
);
