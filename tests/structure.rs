//! The account's structure and the stage history end to end: `--backfill`
//! and `--once` of the real binary against a simulated account, each
//! structure table and the stage history compared with what the simulator
//! itself holds (`structure()`, `status_events()`), not with the mirror.

mod common;

use std::time::Duration;

use common::TestEnv;
use kommo_simulator::SimulatorConfig;
use serde_json::{Value, json};
use sqlx::AnyPool;

/// The structure read at every sync, not once an hour: these tests change
/// it between syncs and look for the change after the next one.
const EVERY_SYNC: &str = "[sync]\nstructure_refresh_minutes = 0\n";

fn account(leads: usize) -> SimulatorConfig {
    SimulatorConfig {
        leads,
        tie_block: 0,
        ..SimulatorConfig::default()
    }
}

/// Rows of `sql`, whose one column is a JSON object per row.
async fn json_rows(pool: &AnyPool, sql: &str) -> Vec<Value> {
    let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(pool)
        .await
        .unwrap();
    rows.iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect()
}

fn int(v: &Value) -> Value {
    match v {
        Value::Bool(b) => json!(i64::from(*b)),
        other => other.clone(),
    }
}

fn sorted_by_id(items: &Value) -> Vec<Value> {
    let mut items = items.as_array().cloned().unwrap_or_default();
    items.sort_by_key(|i| i["id"].as_i64());
    items
}

/// Asserts every structure table equals the simulated account's structure
/// now, every row listed (no flagged or stale row).
async fn assert_structure_equals_account(env: &TestEnv) {
    let pool = env.db().await;
    let s = env.sim.structure();

    let account = json_rows(
        &pool,
        "SELECT json_object('id', id, 'name', name, 'subdomain', subdomain, 'currency', currency, \
         'timezone', timezone, 'is_deleted', is_deleted) FROM account ORDER BY id",
    )
    .await;
    let a = &s["account"];
    assert_eq!(
        account,
        vec![json!({
            "id": a["id"], "name": a["name"], "subdomain": a["subdomain"],
            "currency": a["currency"],
            "timezone": a["_embedded"]["datetime_settings"]["timezone"], "is_deleted": 0
        })]
    );

    let pipelines = sorted_by_id(&s["pipelines"]);
    let want: Vec<Value> = pipelines
        .iter()
        .map(|p| {
            json!({"id": p["id"], "name": p["name"], "sort": p["sort"], "is_main": int(&p["is_main"]),
                   "is_archive": int(&p["is_archive"]), "raw": p, "is_deleted": 0})
        })
        .collect();
    let got = json_rows(
        &pool,
        "SELECT json_object('id', id, 'name', name, 'sort', sort, 'is_main', is_main, \
         'is_archive', is_archive, 'raw', json(raw), 'is_deleted', is_deleted) FROM pipelines ORDER BY id",
    )
    .await;
    assert_eq!(got, want, "pipelines");

    let mut want: Vec<Value> = pipelines
        .iter()
        .flat_map(|p| {
            let pid = p["id"].clone();
            p["_embedded"]["statuses"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |st| {
                    json!({"pipeline_id": pid, "id": st["id"], "name": st["name"], "sort": st["sort"],
                           "type": st["type"], "color": st["color"], "raw": st, "is_deleted": 0})
                })
        })
        .collect();
    want.sort_by_key(|v| (v["pipeline_id"].as_i64(), v["id"].as_i64()));
    let got = json_rows(
        &pool,
        "SELECT json_object('pipeline_id', pipeline_id, 'id', id, 'name', name, 'sort', sort, \
         'type', type, 'color', color, 'raw', json(raw), 'is_deleted', is_deleted) FROM statuses \
         ORDER BY pipeline_id, id",
    )
    .await;
    assert_eq!(got, want, "statuses");

    let want: Vec<Value> = sorted_by_id(&s["users"])
        .iter()
        .map(|u| {
            json!({"id": u["id"], "name": u["name"], "email": u["email"],
                   "is_admin": int(&u["rights"]["is_admin"]), "is_active": int(&u["rights"]["is_active"]),
                   "raw": u, "is_deleted": 0})
        })
        .collect();
    let got = json_rows(
        &pool,
        "SELECT json_object('id', id, 'name', name, 'email', email, 'is_admin', is_admin, \
         'is_active', is_active, 'raw', json(raw), 'is_deleted', is_deleted) FROM users ORDER BY id",
    )
    .await;
    assert_eq!(got, want, "users");

    let fields = sorted_by_id(&s["custom_fields"]);
    let want: Vec<Value> = fields
        .iter()
        .map(|f| {
            json!({"id": f["id"], "name": f["name"], "type": f["type"], "code": f["code"],
                   "sort": f["sort"], "raw": f, "is_deleted": 0})
        })
        .collect();
    let got = json_rows(
        &pool,
        "SELECT json_object('id', id, 'name', name, 'type', type, 'code', code, 'sort', sort, \
         'raw', json(raw), 'is_deleted', is_deleted) FROM custom_fields \
         WHERE entity_type = 'leads' ORDER BY id",
    )
    .await;
    assert_eq!(got, want, "custom_fields");
    let mut want: Vec<Value> = fields
        .iter()
        .flat_map(|f| {
            let fid = f["id"].clone();
            f["enums"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |e| {
                    json!({"field_id": fid, "id": e["id"], "value": e["value"], "sort": e["sort"], "is_deleted": 0})
                })
        })
        .collect();
    want.sort_by_key(|v| (v["field_id"].as_i64(), v["id"].as_i64()));
    assert!(!want.is_empty());
    let got = json_rows(
        &pool,
        "SELECT json_object('field_id', field_id, 'id', id, 'value', value, 'sort', sort, \
         'is_deleted', is_deleted) FROM custom_field_enums WHERE field_id IN \
         (SELECT id FROM custom_fields WHERE entity_type = 'leads') ORDER BY field_id, id",
    )
    .await;
    assert_eq!(got, want, "custom_field_enums");

    let want: Vec<Value> = sorted_by_id(&s["loss_reasons"])
        .iter()
        .map(|r| json!({"id": r["id"], "name": r["name"], "sort": r["sort"], "raw": r, "is_deleted": 0}))
        .collect();
    let got = json_rows(
        &pool,
        "SELECT json_object('id', id, 'name', name, 'sort', sort, 'raw', json(raw), \
         'is_deleted', is_deleted) FROM loss_reasons ORDER BY id",
    )
    .await;
    assert_eq!(got, want, "loss_reasons");

    let want: Vec<Value> = sorted_by_id(&s["tags"])
        .iter()
        .map(|t| json!({"id": t["id"], "name": t["name"], "color": t["color"], "raw": t, "is_deleted": 0}))
        .collect();
    let got = json_rows(
        &pool,
        "SELECT json_object('id', id, 'name', name, 'color', color, 'raw', json(raw), \
         'is_deleted', is_deleted) FROM tags ORDER BY id",
    )
    .await;
    assert_eq!(got, want, "tags");
}

/// Asserts the stage history holds every stage change of the account once.
async fn assert_stage_history_equals_account(env: &TestEnv) {
    let mut want: Vec<Value> = env
        .sim
        .status_events()
        .iter()
        .map(|e| {
            json!({"event_id": e.event_id, "lead_id": e.lead_id,
                   "from_pipeline_id": e.from_pipeline, "from_status_id": e.from_status,
                   "to_pipeline_id": e.to_pipeline, "to_status_id": e.to_status,
                   "changed_at": e.created_at, "changed_by": e.created_by})
        })
        .collect();
    want.sort_by(|a, b| a["event_id"].as_str().cmp(&b["event_id"].as_str()));
    assert!(!want.is_empty(), "the account has a stage history");
    let got = json_rows(
        &env.db().await,
        "SELECT json_object('event_id', event_id, 'lead_id', lead_id, \
         'from_pipeline_id', from_pipeline_id, 'from_status_id', from_status_id, \
         'to_pipeline_id', to_pipeline_id, 'to_status_id', to_status_id, \
         'changed_at', changed_at, 'changed_by', changed_by) FROM lead_status_changes ORDER BY event_id",
    )
    .await;
    assert_eq!(got.len(), want.len(), "stage changes: mirror vs account");
    assert_eq!(got, want);
}

/// An open lead of the account and another stage of its pipeline.
fn open_lead_and_next_stage(env: &TestEnv, skip: usize) -> (i64, i64, i64) {
    let s = env.sim.structure();
    let lead = env
        .sim
        .alive_leads()
        .into_iter()
        .filter(|l| !matches!(l["status_id"].as_i64(), Some(142 | 143)))
        .filter(|l| l["pipeline_id"].is_i64() && l["status_id"].is_i64())
        .nth(skip)
        .expect("an open lead");
    let (id, pipeline, status) = (
        lead["id"].as_i64().unwrap(),
        lead["pipeline_id"].as_i64().unwrap(),
        lead["status_id"].as_i64().unwrap(),
    );
    let stages: Vec<i64> = s["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == pipeline)
        .unwrap()["_embedded"]["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| st["id"].as_i64().unwrap())
        .filter(|st| *st != status && *st != 143)
        .collect();
    (id, pipeline, stages[skip % stages.len()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_mirrors_the_structure_and_the_whole_stage_history() {
    let env = TestEnv::start_with(account(1_500), "", EVERY_SYNC).await;
    env.sim.set_timezone("America/Sao_Paulo", "-03:00");
    let out = env.run_ok(&["--backfill"]).await;
    assert_structure_equals_account(&env).await;
    assert_stage_history_equals_account(&env).await;
    env.assert_mirror_equals_account().await;
    let stats = env.sim.stats();
    assert_eq!(stats.responses_429, 0, "{stats:?}");

    // --status counts each mirrored entity.
    let status = env.run_ok(&["--status"]).await;
    let pipelines = env.sim.structure()["pipelines"].as_array().unwrap().len();
    let changes = env.sim.status_events().len();
    for line in [
        format!("pipelines:           {pipelines}"),
        format!("stage history:       {changes} stage changes"),
        "lead tags:           ".to_string(),
        "users:               8".to_string(),
    ] {
        assert!(status.stdout.contains(&line), "{line}: {}", status.stdout);
    }
    env.assert_token_absent(&[&out, &status]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_users_stages_tags_fields_and_loss_reasons_show_after_once() {
    let env = TestEnv::start_with(account(800), "", EVERY_SYNC).await;
    env.run_ok(&["--backfill"]).await;
    let s = env.sim.structure();
    let user = s["users"][2]["id"].as_i64().unwrap();
    let pipeline = s["pipelines"][0]["id"].as_i64().unwrap();
    let stage = s["pipelines"][0]["_embedded"]["statuses"][1]["id"]
        .as_i64()
        .unwrap();
    assert!(env.sim.rename_user(user, "Renamed «user»"));
    assert!(env.sim.rename_status(pipeline, stage, "Renamed stage"));
    assert!(env.sim.rename_status(pipeline, 142, "Won here"));
    assert!(
        env.sim
            .rename_tag(s["tags"][0]["id"].as_i64().unwrap(), "renamed tag")
    );
    assert!(env.sim.rename_custom_field(
        s["custom_fields"][0]["id"].as_i64().unwrap(),
        "Renamed field"
    ));
    assert!(env.sim.rename_loss_reason(
        s["loss_reasons"][0]["id"].as_i64().unwrap(),
        "Renamed reason"
    ));
    let new_tag = env.sim.add_tag("brand new");
    let lead = env.sim.alive_ids()[0];
    assert!(env.sim.set_lead_tags(lead, &[new_tag]));

    env.run_ok(&["--once"]).await;
    assert_structure_equals_account(&env).await;
    let pool = env.db().await;
    // Names are joined from the structure: the renamed stage of pipeline
    // `pipeline` only (142 keeps its name in the other pipelines).
    let won_names: Vec<(i64, String)> = sqlx::query_as(
        "SELECT DISTINCT pipeline_id, status_name FROM leads_named WHERE status_id = 142 ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (p, name) in &won_names {
        let want = if *p == pipeline {
            "Won here"
        } else {
            "Closed - won"
        };
        assert_eq!(name, want, "pipeline {p}");
    }
    let user_names: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT responsible_user_name FROM leads_named WHERE responsible_user_id = ?",
    )
    .bind(user)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        user_names.iter().all(|n| n == "Renamed «user»"),
        "{user_names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_changes_between_syncs_appear_once_each_after_once() {
    let env = TestEnv::start_with(account(800), "", EVERY_SYNC).await;
    env.run_ok(&["--backfill"]).await;
    let before = env.sim.status_events().len();
    for i in 0..6 {
        let (id, pipeline, stage) = open_lead_and_next_stage(&env, i);
        assert!(env.sim.change_lead_status(id, pipeline, stage));
    }
    // One lead moved twice, within the same second.
    let (id, pipeline, stage) = open_lead_and_next_stage(&env, 10);
    assert!(env.sim.change_lead_status(id, pipeline, stage));
    assert!(env.sim.change_lead_status(id, pipeline, 142));
    assert_eq!(env.sim.status_events().len(), before + 8);

    let logged = env.sim.request_log().len();
    env.run_ok(&["--once"]).await;
    assert_stage_history_equals_account(&env).await;
    // What the structure and the stage history add to an incremental sync:
    // two requests per structure listing (a listing is whole when two
    // readings agree), and none for the stage changes, which come with the
    // deletions and restores in the events listing (its end said twice).
    let mut paths: Vec<String> = env.sim.request_log()[logged..]
        .iter()
        .map(|r| r.path.clone())
        .filter(|p| {
            !["/api/v4/leads", "/api/v4/contacts", "/api/v4/companies"].contains(&p.as_str())
        })
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/api/v4/account",
            "/api/v4/companies/custom_fields",
            "/api/v4/companies/custom_fields",
            "/api/v4/contacts/custom_fields",
            "/api/v4/contacts/custom_fields",
            "/api/v4/events",
            "/api/v4/events",
            "/api/v4/leads/custom_fields",
            "/api/v4/leads/custom_fields",
            "/api/v4/leads/loss_reasons",
            "/api/v4/leads/loss_reasons",
            "/api/v4/leads/pipelines",
            "/api/v4/leads/pipelines",
            "/api/v4/leads/tags",
            "/api/v4/leads/tags",
            "/api/v4/users",
            "/api/v4/users",
        ]
    );
    // The overlap reads them again: still once each.
    env.run_ok(&["--once"]).await;
    assert_stage_history_equals_account(&env).await;
    env.assert_mirror_equals_account().await;
    let (status, closed): (i64, Option<i64>) =
        sqlx::query_as("SELECT status_id, closed_at FROM leads WHERE id = ?")
            .bind(id)
            .fetch_one(&env.db().await)
            .await
            .unwrap();
    assert_eq!(status, 142);
    assert!(closed.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_changes_made_during_a_backfill_appear_once_each_after_once() {
    let env = TestEnv::start_with(account(2_000), "", EVERY_SYNC).await;
    // Slow answers keep the backfill running while the stages change.
    env.sim.set_latency(Duration::from_millis(150));
    let mut backfill = env
        .command(&["--backfill"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        common::wait_for(Duration::from_secs(30), || async {
            env.sim.stats().lead_requests >= 3
        })
        .await
    );
    for i in 0..5 {
        let (id, pipeline, stage) = open_lead_and_next_stage(&env, i);
        assert!(env.sim.change_lead_status(id, pipeline, stage));
    }
    assert!(
        backfill.try_wait().unwrap().is_none(),
        "the changes were made while the backfill ran"
    );
    let status = tokio::time::timeout(Duration::from_secs(120), backfill.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    env.sim.set_latency(Duration::ZERO);
    env.run_ok(&["--once"]).await;
    assert_stage_history_equals_account(&env).await;
    env.assert_mirror_equals_account().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_admin_rights_warns_about_users_and_still_mirrors_leads() {
    let env = TestEnv::start_with(account(600), "", EVERY_SYNC).await;
    env.sim.set_users_forbidden(true);
    let out = env.run_ok(&["--backfill"]).await;
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("api/v4/users"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(warnings[0].contains("admin"), "{}", warnings[0]);
    env.assert_mirror_equals_account().await;
    let pool = env.db().await;
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(users, 0);
    let pipelines: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pipelines")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(pipelines > 0, "the rest of the structure is mirrored");

    // Allowed once, then forbidden again: the users mirrored stay as they were.
    env.sim.set_users_forbidden(false);
    env.run_ok(&["--once"]).await;
    assert_structure_equals_account(&env).await;
    let user = env.sim.structure()["users"][0]["id"].as_i64().unwrap();
    env.sim.set_users_forbidden(true);
    assert!(env.sim.rename_user(user, "Not seen"));
    let out = env.run_ok(&["--once"]).await;
    assert!(out.stderr.contains("api/v4/users"), "{}", out.stderr);
    let (name, deleted): (String, i64) =
        sqlx::query_as("SELECT name, is_deleted FROM users WHERE id = ?")
            .bind(user)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_ne!(name, "Not seen");
    assert_eq!(deleted, 0);
    let flagged: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE is_deleted = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(flagged, 0);
    env.assert_token_absent(&[&out]);
}

/// What a quiet incremental sync reads: no structure listing while the
/// last reading is under `sync.structure_refresh_minutes` old (60 by
/// default), all of it once it is that old.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_structure_is_read_again_only_once_its_last_reading_is_an_hour_old() {
    let env = TestEnv::start(account(300)).await;
    env.run_ok(&["--backfill"]).await;
    let structure_requests = |from: usize| {
        env.sim.request_log()[from..]
            .iter()
            .filter(|r| {
                r.path == "/api/v4/account"
                    || r.path.ends_with("/custom_fields")
                    || r.path.ends_with("/pipelines")
                    || r.path.ends_with("/users")
                    || r.path.ends_with("/tags")
                    || r.path.ends_with("/loss_reasons")
            })
            .count()
    };
    let s = env.sim.structure();
    let pipeline = s["pipelines"][0]["id"].as_i64().unwrap();
    assert!(env.sim.rename_status(pipeline, 142, "Won, renamed"));
    let logged = env.sim.request_log().len();
    env.run_ok(&["--once"]).await;
    assert_eq!(structure_requests(logged), 0);
    let pool = env.db().await;
    let won = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT name FROM statuses WHERE pipeline_id = ? AND id = 142",
        )
        .bind(pipeline)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert_eq!(won().await, "Closed - won", "not read yet");

    // An hour later (the last reading moved an hour back), all of it.
    sqlx::query("UPDATE sync_state SET structure_read_at = structure_read_at - 3600")
        .execute(&pool)
        .await
        .unwrap();
    let logged = env.sim.request_log().len();
    env.run_ok(&["--once"]).await;
    assert!(
        structure_requests(logged) >= 13,
        "{}",
        structure_requests(logged)
    );
    assert_eq!(won().await, "Won, renamed");
    assert_structure_equals_account(&env).await;
}

/// A lead changed to carry a field the mirror does not hold yet has the
/// structure read in the same incremental sync, however recent the last
/// reading: its values are named, not NULL, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_a_changed_lead_names_is_read_in_the_same_incremental_sync() {
    let env = TestEnv::start(account(300)).await;
    env.run_ok(&["--backfill"]).await;
    let field = env.sim.add_custom_field("Brand new field");
    let lead = env.sim.alive_ids()[3];
    assert!(
        env.sim
            .set_lead_custom_field(lead, field, json!([{"value": "hello"}]))
    );
    env.run_ok(&["--once"]).await;
    let pool = env.db().await;
    let named: Option<String> = sqlx::query_scalar(
        "SELECT field_name FROM lead_custom_field_values WHERE lead_id = ? AND field_id = ?",
    )
    .bind(lead)
    .bind(field)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(named.as_deref(), Some("Brand new field"));
    assert_structure_equals_account(&env).await;
}
