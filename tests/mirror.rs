//! The mirror end to end: `--backfill` and `--once` of the real binary
//! against a simulated account, checked against the account lead by lead.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use common::{TestEnv, mirror_rows, run_statuses};
use kommo_simulator::SimulatorConfig;

fn account(leads: usize, tie_block: usize) -> SimulatorConfig {
    SimulatorConfig {
        leads,
        tie_block,
        ..SimulatorConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_mirrors_every_lead_exactly() {
    let env = TestEnv::start(account(5_000, 600)).await;
    env.run_ok(&["--backfill"]).await;

    env.assert_mirror_equals_account().await;
    assert_eq!(env.sim.alive_ids().len(), 5_000);
    let stats = env.sim.stats();
    assert_eq!(stats.responses_429, 0, "{stats:?}");
    assert!(stats.max_requests_in_any_second <= 7, "{stats:?}");
    let pool = env.db().await;
    assert_eq!(
        run_statuses(&pool).await,
        vec![("full".into(), "ok".into())]
    );
    let (leads_upserted, requests): (i64, i64) =
        sqlx::query_as("SELECT leads_upserted, requests FROM sync_runs")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(leads_upserted >= 5_000);
    assert_eq!(
        requests as u64, stats.requests,
        "the run counts every request it sent (leads, structure, events)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_mirrors_changes_without_rescanning() {
    let env = TestEnv::start(account(5_000, 600)).await;
    env.run_ok(&["--backfill"]).await;

    let ids = env.sim.alive_ids();
    for id in ids.iter().step_by(50).take(100) {
        assert!(env.sim.update_lead(*id));
    }
    let added: Vec<i64> = (0..20).map(|_| env.sim.add_lead()).collect();
    env.sim.reset_stats();
    env.run_ok(&["--once"]).await;

    env.assert_mirror_equals_account().await;
    // Started right after the backfill: it waits out the backfill's last
    // second rather than meet the strict window.
    assert_eq!(env.sim.stats().responses_429, 0, "{:?}", env.sim.stats());
    let lead_requests = env.sim.stats().lead_requests;
    assert!(
        lead_requests <= 4,
        "an incremental sync of 120 changes sent {lead_requests} lead requests"
    );
    let pool = env.db().await;
    let (upserted,): (i64,) =
        sqlx::query_as("SELECT leads_upserted FROM sync_runs WHERE kind = 'incremental'")
            .fetch_one(&pool)
            .await
            .unwrap();
    // The 120 changes share one second, the last of the listing: read with
    // their page, then twice more from that second to confirm the end. Far
    // from the 5,000 leads of a rescan.
    assert!(
        (120..=3 * 120 + 30).contains(&upserted),
        "incremental wrote {upserted} leads"
    );
    let found: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM leads WHERE is_deleted = 0 AND id IN ({})",
        added
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(found, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_under_churn_keeps_every_unchanged_lead_then_converges() {
    let env = TestEnv::start(account(5_000, 600)).await;
    let alive_before: HashSet<i64> = env.sim.alive_ids().into_iter().collect();
    env.sim.set_churn_per_lead_request(4);
    env.run_ok(&["--backfill"]).await;
    env.sim.set_churn_per_lead_request(0);

    // Every lead alive and untouched throughout is in the mirror after that backfill alone.
    let mutations = env.sim.mutations();
    assert!(
        mutations.len() >= 80,
        "the churn changed only {} leads",
        mutations.len()
    );
    let touched = common::touched_ids(&env.sim);
    let pool = env.db().await;
    let mirrored: HashSet<i64> = mirror_rows(&pool, "is_deleted = 0")
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    let unchanged: Vec<i64> = alive_before
        .iter()
        .filter(|id| !touched.contains(id))
        .copied()
        .collect();
    let requests = env.sim.stats().lead_requests;
    assert!(
        unchanged.len() > 4_000,
        "only {} leads left untouched by the churn of {requests} lead requests",
        unchanged.len()
    );
    let missing: Vec<&i64> = unchanged
        .iter()
        .filter(|id| !mirrored.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} unchanged leads missing after the backfill: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let unchanged_rows = mirror_rows(&pool, "TRUE").await;
    let account = env.sim.alive_leads();
    let by_id: std::collections::HashMap<i64, &serde_json::Value> = account
        .iter()
        .map(|l| (l["id"].as_i64().unwrap(), l))
        .collect();
    for row in unchanged_rows.iter().filter(|r| !touched.contains(&r.id)) {
        common::assert_row_equals_lead(row, by_id[&row.id]);
    }

    // One more --once: every alive lead equals the account.
    env.run_ok(&["--once"]).await;
    env.assert_mirror_equals_account().await;

    // One more --backfill: every deleted lead is marked deleted and still present.
    env.run_ok(&["--backfill"]).await;
    env.assert_mirror_equals_account().await;
    let deleted = env.sim.deleted_ids();
    assert!(!deleted.is_empty(), "the churn deleted no lead");
    let rows = mirror_rows(&pool, "is_deleted = 1").await;
    let marked: HashSet<i64> = rows.iter().map(|r| r.id).collect();
    for id in &deleted {
        if alive_before.contains(id) || mirrored.contains(id) {
            assert!(
                marked.contains(id),
                "deleted lead {id} is not marked deleted"
            );
        }
    }
    for row in &rows {
        assert!(
            row.deleted_at.is_some(),
            "lead {} is deleted without deleted_at",
            row.id
        );
        assert!(!row.raw.is_empty());
    }
    let stats = env.sim.stats();
    assert_eq!(stats.responses_429, 0, "{stats:?}");
    assert!(stats.max_requests_in_any_second <= 7, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_three_pages_in_one_second_are_all_mirrored() {
    // 900 leads share one updated_at: with 250 per page that is 4 pages in one
    // second. The first --once has no cursor, so it walks the whole account
    // incrementally, through the crowded second.
    let env = TestEnv::start(account(1_500, 900)).await;
    env.run_ok(&["--once"]).await;
    env.assert_mirror_equals_account().await;

    let pool = env.db().await;
    let (second, count): (i64, i64) = sqlx::query_as(
        "SELECT updated_at, COUNT(*) FROM leads GROUP BY updated_at ORDER BY 2 DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(count, 900, "the crowded second {second} is mirrored whole");

    // An incremental sync that starts just before the crowded second (its
    // cursor on it, minus the smallest overlap) walks through it again and
    // terminates.
    sqlx::query("UPDATE entity_sync_state SET incremental_cursor = ? WHERE entity = 'leads'")
        .bind(second)
        .execute(&pool)
        .await
        .unwrap();
    env.sim.reset_stats();
    env.write_config("", "[sync]\noverlap_seconds = 1\n");
    env.run_ok(&["--once"]).await;
    env.assert_mirror_equals_account().await;
    let (kind, status, upserted): (String, String, i64) = sqlx::query_as(
        "SELECT kind, status, leads_upserted FROM sync_runs ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((kind.as_str(), status.as_str()), ("incremental", "ok"));
    assert!(
        upserted >= 900,
        "the crowded second was read again: {upserted}"
    );
    assert!(env.sim.stats().lead_requests < 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_that_cannot_be_read_whole_still_marks_only_confirmed_deletions() {
    // 300 of 400 leads share one second, read 50 per page; every lead request
    // changes the account, so no two readings of the second agree.
    let env = TestEnv::start_with(account(400, 300), "page_size = 50", "").await;
    env.run_ok(&["--backfill"]).await;
    env.assert_mirror_equals_account().await;
    let pool = env.db().await;
    let crowded: i64 = sqlx::query_scalar(
        "SELECT updated_at FROM leads GROUP BY updated_at ORDER BY COUNT(*) DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let outside: i64 = sqlx::query_scalar("SELECT MIN(id) FROM leads WHERE updated_at <> ?")
        .bind(crowded)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(env.sim.delete_lead(outside));

    env.sim.set_churn_per_lead_request(1);
    let out = env.run_ok(&["--backfill"]).await;
    env.sim.set_churn_per_lead_request(0);
    assert!(
        out.stderr.contains("kept changing inside one second"),
        "the second could not be read whole: {}",
        out.stderr
    );
    // Whatever the readings missed was asked for by id: no alive lead is
    // marked deleted, and the deleted one is.
    let deleted: HashSet<i64> = env.sim.deleted_ids().into_iter().collect();
    let marked: Vec<i64> = sqlx::query_scalar("SELECT id FROM leads WHERE is_deleted = 1")
        .fetch_all(&pool)
        .await
        .unwrap();
    let false_deletions: Vec<&i64> = marked.iter().filter(|id| !deleted.contains(id)).collect();
    assert!(
        false_deletions.is_empty(),
        "alive leads marked deleted: {false_deletions:?}"
    );
    if deleted.contains(&outside) {
        assert!(
            marked.contains(&outside),
            "the deleted lead is marked deleted"
        );
    }

    // One --once later every alive lead is equal.
    env.run_ok(&["--once"]).await;
    env.assert_mirror_equals_account().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_mid_backfill_exits_3_and_keeps_progress() {
    let env = TestEnv::start(account(3_000, 300)).await;
    // The newest-lead probe, then four pages.
    env.sim.revoke_token_after_lead_requests(5);
    let out = env.run(&["--backfill"]).await;

    assert_eq!(out.code, Some(3), "{out:#?}");
    let alert_lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("alert=\"token_rejected\""))
        .collect();
    assert_eq!(alert_lines.len(), 1, "{}", out.stderr);
    assert!(
        alert_lines[0].contains("ERROR") && alert_lines[0].contains("401"),
        "{}",
        alert_lines[0]
    );
    assert!(!out.stderr.contains(&env.token) && !out.stdout.contains(&env.token));

    let pool = env.db().await;
    assert_eq!(
        run_statuses(&pool).await,
        vec![("full".into(), "unauthorized".into())]
    );
    let rows = mirror_rows(&pool, "TRUE").await;
    assert!(
        rows.len() >= 4 * 250 - 250,
        "the pages before the 401 are kept: {}",
        rows.len()
    );
    let account = env.sim.alive_leads();
    let by_id: std::collections::HashMap<i64, &serde_json::Value> = account
        .iter()
        .map(|l| (l["id"].as_i64().unwrap(), l))
        .collect();
    for row in &rows {
        common::assert_row_equals_lead(row, by_id[&row.id]);
    }
    pool.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", env.db.display());
        if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes
                    .windows(env.token.len())
                    .any(|w| w == env.token.as_bytes()),
                "the token is in {path}"
            );
        }
    }

    // The token comes back: the next run completes the mirror.
    env.sim.set_token(&env.token);
    env.run_ok(&["--backfill"]).await;
    env.assert_mirror_equals_account().await;
    let pool = env.db().await;
    assert_eq!(
        run_statuses(&pool).await,
        vec![
            ("full".into(), "unauthorized".into()),
            ("full".into(), "ok".into())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_exceeds_the_configured_rate() {
    // A stricter account (3 per second) and a small page size: many requests.
    let env = TestEnv::start_with(
        SimulatorConfig {
            rate_limit_per_second: 3,
            ..account(1_200, 0)
        },
        "requests_per_second = 3\npage_size = 60\n",
        "",
    )
    .await;
    env.run_ok(&["--backfill"]).await;
    env.assert_mirror_equals_account().await;
    let stats = env.sim.stats();
    assert!(stats.lead_requests >= 20, "{stats:?}");
    assert_eq!(stats.responses_429, 0, "{stats:?}");
    assert!(stats.max_requests_in_any_second <= 3, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_and_progress_is_kept_when_they_persist() {
    let env = TestEnv::start_with(account(1_000, 0), "max_retries = 2\n", "").await;
    env.sim.fail_next_lead_requests(2, 503);
    env.run_ok(&["--backfill"]).await;
    env.assert_mirror_equals_account().await;

    for id in env.sim.alive_ids().iter().take(10) {
        env.sim.update_lead(*id);
    }
    env.sim.fail_next_lead_requests(10, 500);
    let out = env.run(&["--once"]).await;
    assert_eq!(out.code, Some(1), "{out:#?}");
    let pool = env.db().await;
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, error FROM sync_runs ORDER BY id DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, "failed");
    assert!(error.unwrap_or_default().contains("500"));
    assert_eq!(
        mirror_rows(&pool, "is_deleted = 0").await.len(),
        1_000,
        "nothing lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_follows_deletions_and_restores_that_keep_updated_at() {
    let env = TestEnv::start(account(800, 0)).await;
    env.run_ok(&["--backfill"]).await;
    let ids = env.sim.alive_ids();
    let (kept, restored) = (ids[10], ids[20]);
    assert!(env.sim.delete_lead(kept) && env.sim.delete_lead(restored));
    env.run_ok(&["--once"]).await;
    let pool = env.db().await;
    let deleted: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM leads WHERE is_deleted = 1 AND deleted_at IS NOT NULL ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(deleted, vec![kept, restored], "--once marks deletions");

    // Restored in Kommo with its old updated_at: no keyset walk can meet it,
    // the lead_restored event brings it back.
    assert!(env.sim.restore_lead(restored));
    env.run_ok(&["--once"]).await;
    env.assert_mirror_equals_account().await;
    let (is_deleted, deleted_at): (i64, Option<i64>) =
        sqlx::query_as("SELECT is_deleted, deleted_at FROM leads WHERE id = ?")
            .bind(restored)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (is_deleted, deleted_at),
        (0, None),
        "a restored lead is alive again"
    );
    let rows = mirror_rows(&pool, "is_deleted = 1").await;
    assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), vec![kept]);
    assert!(
        rows[0].raw.contains("\"name\""),
        "the deleted lead keeps its last content"
    );
}

/// One row of `lead_field_values`.
#[derive(Debug, PartialEq, sqlx::FromRow)]
struct FieldRow {
    lead_id: i64,
    field_id: i64,
    position: i64,
    field_type: Option<String>,
    value_text: Option<String>,
    value_number: Option<f64>,
    value_bool: Option<i64>,
    value_date: Option<i64>,
    enum_id: Option<i64>,
    enum_code: Option<String>,
}

/// The detail rows of a set of leads.
#[derive(Default)]
struct Details {
    fields: BTreeMap<(i64, i64, i64), FieldRow>,
    tags: BTreeSet<(i64, i64)>,
    contacts: BTreeSet<(i64, i64, bool)>,
    companies: BTreeSet<(i64, i64)>,
}

/// What the rows of each alive lead of the account should be, computed from
/// the account's JSON with the README's typing rules.
fn expected_details(account: &[serde_json::Value]) -> Details {
    let mut d = Details::default();
    for lead in account {
        let id = lead["id"].as_i64().unwrap();
        for f in lead["custom_fields_values"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let field_id = f["field_id"].as_i64().unwrap();
            let kind = f["field_type"].as_str().map(str::to_string);
            for (pos, v) in f["values"].as_array().into_iter().flatten().enumerate() {
                let value = &v["value"];
                let (mut text, mut number, mut boolean, mut date) = (None, None, None, None);
                match (kind.as_deref(), value) {
                    (Some("numeric" | "price"), serde_json::Value::String(s)) => {
                        number = Some(s.parse::<f64>().unwrap())
                    }
                    (Some("date" | "date_time"), serde_json::Value::String(s)) => {
                        let day = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
                        date = Some(day.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp());
                    }
                    (Some("date" | "date_time"), n) => date = n.as_i64(),
                    (_, serde_json::Value::Bool(b)) => boolean = Some(i64::from(*b)),
                    (_, serde_json::Value::Number(n)) => number = n.as_f64(),
                    (_, serde_json::Value::String(s)) => text = Some(s.clone()),
                    (_, other) => panic!("unexpected value {other}"),
                }
                let row = FieldRow {
                    lead_id: id,
                    field_id,
                    position: pos as i64,
                    field_type: kind.clone(),
                    value_text: text,
                    value_number: number,
                    value_bool: boolean,
                    value_date: date,
                    enum_id: v["enum_id"].as_i64(),
                    enum_code: v["enum_code"].as_str().map(str::to_string),
                };
                d.fields.insert((id, field_id, pos as i64), row);
            }
        }
        let embedded = &lead["_embedded"];
        for t in embedded["tags"].as_array().into_iter().flatten() {
            d.tags.insert((id, t["id"].as_i64().unwrap()));
        }
        for c in embedded["contacts"].as_array().into_iter().flatten() {
            d.contacts
                .insert((id, c["id"].as_i64().unwrap(), c["is_main"] == true));
        }
        for c in embedded["companies"].as_array().into_iter().flatten() {
            d.companies.insert((id, c["id"].as_i64().unwrap()));
        }
    }
    d
}

/// Every alive lead's typed field values and links in the mirror equal the
/// account's, value for value, and no row is left for a value the lead no
/// longer has.
async fn assert_details_equal_account(env: &TestEnv) {
    let pool = env.db().await;
    let Details {
        fields,
        tags,
        contacts,
        companies,
    } = expected_details(&env.sim.alive_leads());
    let alive = "lead_id IN (SELECT id FROM leads WHERE is_deleted = 0)";
    let rows: Vec<FieldRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM lead_field_values WHERE {alive}"
    )))
    .fetch_all(&pool)
    .await
    .unwrap();
    let mirrored: BTreeMap<(i64, i64, i64), FieldRow> = rows
        .into_iter()
        .map(|r| ((r.lead_id, r.field_id, r.position), r))
        .collect();
    assert!(!fields.is_empty());
    assert_eq!(mirrored.len(), fields.len(), "field value rows");
    for (key, row) in &fields {
        assert_eq!(mirrored.get(key), Some(row), "lead_field_values {key:?}");
    }
    let got: BTreeSet<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT lead_id, tag_id FROM lead_tags WHERE {alive}"
    )))
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(got, tags, "lead_tags");
    let got: BTreeSet<(i64, i64, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT lead_id, contact_id, is_main FROM lead_contacts WHERE {alive}"
    )))
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(lead, contact, main): (i64, i64, i64)| (lead, contact, main != 0))
    .collect();
    assert_eq!(got, contacts, "lead_contacts");
    let got: BTreeSet<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT lead_id, company_id FROM lead_companies WHERE {alive}"
    )))
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(got, companies, "lead_companies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_lead_s_typed_field_values_and_links_equal_the_account_after_backfill_and_once() {
    let env = TestEnv::start(account(600, 0)).await;
    env.run_ok(&["--backfill"]).await;
    assert_details_equal_account(&env).await;

    // Updates change custom field values (some fields appear or vanish);
    // some leads are deleted, some added.
    for id in env.sim.alive_ids().iter().step_by(7) {
        assert!(env.sim.update_lead(*id));
    }
    for id in env.sim.alive_ids().iter().skip(3).step_by(40) {
        assert!(env.sim.delete_lead(*id));
    }
    for _ in 0..10 {
        env.sim.add_lead();
    }
    // Tags, contacts and field values replaced, emptied or removed.
    let ids = env.sim.alive_ids();
    assert!(env.sim.set_lead_tags(ids[1], &[30_001, 30_006]));
    assert!(env.sim.set_lead_tags(ids[2], &[]));
    assert!(
        env.sim
            .set_lead_contacts(ids[1], &[(31_000_001, true), (31_000_002, false)])
    );
    assert!(env.sim.set_lead_contacts(ids[2], &[]));
    assert!(env.sim.set_lead_custom_field(
        ids[1],
        510_006,
        serde_json::json!([
            {"value": "CRM", "enum_id": 700_201, "enum_code": "CRM"}
        ])
    ));
    assert!(
        env.sim
            .set_lead_custom_field(ids[2], 510_003, serde_json::json!(null))
    );
    env.run_ok(&["--once"]).await;
    env.assert_mirror_equals_account().await;
    assert_details_equal_account(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_round_trips_are_overlapped_by_parallel_windows_under_churn() {
    // Answers take 400 ms: one sequential walk would manage 2.5 requests a
    // second; windows walked at once overlap their round trips.
    let env = TestEnv::start_with(
        account(3_000, 300),
        "page_size = 100\n",
        "[sync]\nparallel_windows = 4\n",
    )
    .await;
    env.sim.set_latency(std::time::Duration::from_millis(400));
    let alive_before: HashSet<i64> = env.sim.alive_ids().into_iter().collect();
    env.sim.set_churn_per_lead_request(2);
    env.run_ok(&["--backfill"]).await;
    env.sim.set_churn_per_lead_request(0);
    let stats = env.sim.stats();
    assert!(
        stats.max_in_flight >= 2,
        "the windows were not walked at once: {stats:?}"
    );
    assert_eq!(stats.responses_429, 0, "{stats:?}");
    assert!(stats.max_requests_in_any_second <= 7, "{stats:?}");

    let touched = common::touched_ids(&env.sim);
    let pool = env.db().await;
    let mirrored: HashSet<i64> = mirror_rows(&pool, "is_deleted = 0")
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    let missing: Vec<i64> = alive_before
        .iter()
        .filter(|id| !touched.contains(id) && !mirrored.contains(id))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "unchanged leads missing after a parallel backfill: {missing:?}"
    );
    let windows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM full_pass_windows")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(windows, 0, "a finished pass forgets its windows");

    env.run_ok(&["--once"]).await;
    env.assert_mirror_equals_account().await;
    env.run_ok(&["--backfill"]).await;
    env.assert_mirror_equals_account().await;
    let marked: HashSet<i64> = mirror_rows(&pool, "is_deleted = 1")
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    for id in env.sim.deleted_ids() {
        if mirrored.contains(&id) || alive_before.contains(&id) {
            assert!(marked.contains(&id), "deleted lead {id} not marked deleted");
        }
    }
}

/// An incremental sync of an account where nothing changed since the last
/// sync, with leads, contacts and companies mirrored (the default): each
/// listing asked once or twice, no structure (read at the backfill, under
/// an hour ago), at most 12 requests in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_sync_with_nothing_changed_sends_at_most_twelve_requests() {
    let env = TestEnv::start(account(600, 0)).await;
    env.run_ok(&["--backfill"]).await;
    env.run_ok(&["--once"]).await;
    let logged = env.sim.request_log().len();
    env.run_ok(&["--once"]).await;
    let sent: Vec<String> = env.sim.request_log()[logged..]
        .iter()
        .map(|r| format!("{} {}?{}", r.status, r.path, r.query))
        .collect();
    assert!(sent.len() <= 12, "{} requests: {sent:#?}", sent.len());
    for listing in [
        "/api/v4/leads?",
        "/api/v4/contacts?",
        "/api/v4/companies?",
        "/api/v4/events?",
    ] {
        assert!(
            sent.iter().any(|r| r.contains(listing)),
            "{listing} not read: {sent:#?}"
        );
    }
    env.assert_mirror_equals_account().await;
}
