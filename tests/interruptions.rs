//! Kills and stop signals: a backfill killed at any instant leaves a
//! consistent mirror and resumes where it stopped; SIGTERM stops a one-shot
//! after the page in flight with its progress kept.

mod common;

use std::time::{Duration, Instant};

use common::{TestEnv, mirror_rows, run_statuses};
use kommo_sync::simulator::SimulatorConfig;

fn slow_account() -> (SimulatorConfig, &'static str) {
    (
        SimulatorConfig {
            leads: 3_000,
            tie_block: 250,
            ..SimulatorConfig::default()
        },
        // 2 requests per second and 100 leads per page: a backfill of ~35 pages.
        "requests_per_second = 2\npage_size = 100\n",
    )
}

/// Starts a backfill and waits until at least `rows` leads are mirrored.
async fn backfill_until(env: &TestEnv, rows: i64) -> tokio::process::Child {
    let child = env
        .command(&["--backfill"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the backfill made no progress");
        if env.db.exists() {
            let pool = env.db().await;
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM leads")
                .fetch_one(&pool)
                .await
                .unwrap_or(0);
            pool.close().await;
            if n >= rows {
                return child;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_backfill_after_kill() {
    let (account, kommo) = slow_account();
    let env = TestEnv::start_with(account, kommo, "").await;
    let mut child = backfill_until(&env, 1_000).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let requests_before_kill = env.sim.stats().lead_requests;

    // Consistent after the kill: every row equals the account, the pass is unfinished.
    let pool = env.db().await;
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
    let account = env.sim.alive_leads();
    let by_id: std::collections::HashMap<i64, &serde_json::Value> = account
        .iter()
        .map(|l| (l["id"].as_i64().unwrap(), l))
        .collect();
    let rows = mirror_rows(&pool, "1").await;
    assert!(
        rows.len() >= 1_000 && rows.len() < 3_000,
        "{} rows",
        rows.len()
    );
    for row in &rows {
        common::assert_row_equals_lead(row, by_id[&row.id]);
    }
    let full_cursor: Option<i64> = sqlx::query_scalar("SELECT full_cursor FROM sync_state")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        full_cursor.is_some_and(|c| c > 0),
        "the cursor of the killed pass is kept"
    );
    assert_eq!(
        run_statuses(&pool).await,
        vec![("full".into(), "running".into())]
    );

    // The next backfill resumes, not from zero, and completes the mirror.
    env.sim.reset_stats();
    env.run_ok(&["--backfill"]).await;
    env.assert_mirror_equals_account().await;
    let resumed_upserted: i64 =
        sqlx::query_scalar("SELECT leads_upserted FROM sync_runs ORDER BY id DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        resumed_upserted < 3_000,
        "the resumed backfill re-read {resumed_upserted} leads: it started from zero (before the kill: {requests_before_kill} requests)"
    );
    assert_eq!(
        run_statuses(&pool).await,
        vec![
            ("full".into(), "interrupted".into()),
            ("full".into(), "ok".into())
        ],
        "the killed run is closed as interrupted"
    );
    let deleted: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM leads WHERE is_deleted = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        deleted, 0,
        "a resumed pass does not mistake leads seen before the kill for deleted ones"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_backfill_after_the_page_in_flight() {
    let (account, kommo) = slow_account();
    let env = TestEnv::start_with(account, kommo, "").await;
    let child = backfill_until(&env, 500).await;
    let pid = child.id().unwrap();
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("stops within 30 s")
        .unwrap();
    assert_eq!(out.status.code(), Some(130));

    let pool = env.db().await;
    let (status, upserted, error): (String, i64, Option<String>) =
        sqlx::query_as("SELECT status, leads_upserted, error FROM sync_runs")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, "interrupted");
    assert!(upserted >= 500);
    assert!(error.unwrap_or_default().contains("interrupted"));
    let rows = mirror_rows(&pool, "1").await;
    assert!(rows.len() < 3_000, "stopped before the end");

    env.run_ok(&["--backfill"]).await;
    env.assert_mirror_equals_account().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_every_window_of_a_parallel_backfill_after_kill() {
    let env = TestEnv::start_with(
        SimulatorConfig {
            leads: 3_000,
            tie_block: 0,
            ..SimulatorConfig::default()
        },
        "page_size = 100\n",
        "[sync]\nparallel_windows = 4\n",
    )
    .await;
    env.sim.set_latency(Duration::from_millis(400));
    let mut child = backfill_until(&env, 1_200).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    assert!(env.sim.stats().max_in_flight >= 2, "{:?}", env.sim.stats());

    let pool = env.db().await;
    let windows: Vec<(i64, i64, Option<i64>, i64)> = sqlx::query_as(
        "SELECT window_id, cursor, end_at, done FROM full_pass_windows ORDER BY window_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        windows.len() >= 2,
        "the killed pass had several windows: {windows:?}"
    );
    let mirrored_before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM leads")
        .fetch_one(&pool)
        .await
        .unwrap();

    env.run_ok(&["--backfill"]).await;
    env.assert_mirror_equals_account().await;
    let (status, resumed_upserted): (String, i64) =
        sqlx::query_as("SELECT status, leads_upserted FROM sync_runs ORDER BY id DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(status, "ok");
    assert!(
        resumed_upserted < 3_000 - mirrored_before / 2,
        "the resumed pass re-read {resumed_upserted} leads although {mirrored_before} were mirrored"
    );
    let deleted: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM leads WHERE is_deleted = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(deleted, 0);
}
