//! Kills and stop signals: a backfill killed at any instant leaves a
//! consistent mirror and resumes where it stopped; SIGTERM stops a one-shot
//! after the page in flight with its progress kept.

mod common;

use std::time::{Duration, Instant};

use common::{TestEnv, mirror_rows, run_statuses};
use kommo_simulator::SimulatorConfig;

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

/// Leads the mirror holds marked deleted.
async fn deleted_count(pool: &sqlx::AnyPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM leads WHERE is_deleted = 1")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Starts a backfill and waits until at least `rows` leads are mirrored.
async fn backfill_until(env: &TestEnv, rows: i64) -> tokio::process::Child {
    backfill_until_query(env, "SELECT COUNT(*) FROM leads", rows).await
}

/// Starts a backfill and waits until `query` (one integer) reaches `at_least`.
async fn backfill_until_query(
    env: &TestEnv,
    query: &'static str,
    at_least: i64,
) -> tokio::process::Child {
    let child = env
        .command(&["--backfill"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the backfill made no progress");
        if env.on_postgres() || env.db.exists() {
            let pool = env.db().await;
            let n: Option<i64> = sqlx::query_scalar(query)
                .fetch_one(&pool)
                .await
                .unwrap_or(None);
            pool.close().await;
            if n.unwrap_or(0) >= at_least {
                return child;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn resumes_backfill_after_kill() {
    let (account, kommo) = slow_account();
    let env = TestEnv::start_with(account, kommo, "").await;
    let mut child = backfill_until(&env, 1_000).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let requests_before_kill = env.sim.stats().lead_requests;

    // Consistent after the kill: every row equals the account, the pass is unfinished.
    let pool = env.db().await;
    if !env.on_postgres() {
        let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(integrity, "ok");
    }
    let account = env.sim.alive_leads();
    let by_id: std::collections::HashMap<i64, &serde_json::Value> = account
        .iter()
        .map(|l| (l["id"].as_i64().unwrap(), l))
        .collect();
    let rows = mirror_rows(&pool, "TRUE").await;
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
    let deleted = deleted_count(&pool).await;
    assert_eq!(
        deleted, 0,
        "a resumed pass does not mistake leads seen before the kill for deleted ones"
    );
}

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
    let rows = mirror_rows(&pool, "TRUE").await;
    assert!(rows.len() < 3_000, "stopped before the end");

    env.run_ok(&["--backfill"]).await;
    env.assert_mirror_equals_account().await;
}

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
    let deleted = deleted_count(&pool).await;
    assert_eq!(deleted, 0);
}

async fn a_lead_restored_by_once_during_an_unfinished_pass_is_not_taken_for_deleted() {
    let (account, kommo) = slow_account();
    let env = TestEnv::start_with(account, kommo, "").await;
    env.run_ok(&["--backfill"]).await;
    // The lead changed longest ago: the next pass walks past it first.
    let oldest = env
        .sim
        .alive_leads()
        .iter()
        .min_by_key(|l| (l["updated_at"].as_i64().unwrap(), l["id"].as_i64().unwrap()))
        .map(|l| l["id"].as_i64().unwrap())
        .unwrap();
    assert!(env.sim.delete_lead(oldest));

    // A second pass (run 2) walks past it while it is deleted, and is killed.
    let mut child = backfill_until_query(
        &env,
        "SELECT leads_upserted FROM sync_runs WHERE id = (SELECT MAX(id) FROM sync_runs) AND id > 1",
        1_000,
    )
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let pool = env.db().await;
    let pass_open: Option<i64> = sqlx::query_scalar("SELECT full_cursor FROM sync_state")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(pass_open.is_some(), "the second pass is unfinished");

    // Restored in Kommo (its old updated_at kept); a --once brings it back.
    env.run_ok(&["--once"]).await;
    assert!(env.sim.restore_lead(oldest));
    env.run_ok(&["--once"]).await;
    let alive: i64 = sqlx::query_scalar("SELECT 1 - is_deleted FROM leads WHERE id = $1")
        .bind(oldest)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(alive, 1, "--once mirrored the restore");

    // The resumed pass never meets it (behind its cursor): still alive after it.
    env.run_ok(&["--backfill"]).await;
    env.assert_mirror_equals_account().await;
    let deleted = deleted_count(&pool).await;
    assert_eq!(deleted, 0);
}

async fn a_pass_killed_after_its_last_window_finishes_without_a_request() {
    let env = TestEnv::start_with(
        SimulatorConfig {
            leads: 500,
            tie_block: 0,
            ..SimulatorConfig::default()
        },
        "",
        "[sync]\nparallel_windows = 4\n",
    )
    .await;
    env.run_ok(&["--backfill"]).await;
    // What a kill between the last window's commit and the pass's end leaves:
    // the pass open, every window done.
    {
        let pool = env.db().await;
        for sql in [
            "UPDATE sync_state SET full_pass_started_at = 1, full_cursor = \
             (SELECT incremental_cursor FROM entity_sync_state WHERE entity = 'leads')",
            "UPDATE entity_sync_state SET full_pass_done = full_pass_done - 1 WHERE entity = 'leads'",
            "INSERT INTO full_pass_windows (full_pass, window_id, cursor, end_at, done) \
             SELECT s.full_pass, 0, e.incremental_cursor, NULL, 1 \
             FROM sync_state AS s, entity_sync_state AS e WHERE e.entity = 'leads'",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    env.sim.reset_stats();
    let out = tokio::time::timeout(Duration::from_secs(30), env.run(&["--backfill"]))
        .await
        .expect("the resumed pass ends although no window is left to walk");
    assert_eq!(out.code, Some(0), "{out:#?}");
    assert_eq!(
        env.sim.stats().lead_requests,
        1,
        "nothing was left to read but the newest lead"
    );
    let pool = env.db().await;
    let (pass_open, windows): (Option<i64>, i64) = sqlx::query_as(
        "SELECT full_cursor, (SELECT COUNT(*) FROM full_pass_windows) FROM sync_state",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((pass_open, windows), (None, 0), "the pass is closed");
    env.assert_mirror_equals_account().await;
}

/// Two `--once` started together on one mirror: one syncs, the other is
/// refused by the mirror's sync lock (a lock file, or PostgreSQL's advisory
/// lock) with a message saying so, and writes nothing, not even a run.
async fn two_syncs_at_once_one_runs_and_the_other_is_refused_writing_nothing() {
    let env = TestEnv::start_with(
        SimulatorConfig {
            leads: 600,
            tie_block: 0,
            ..SimulatorConfig::default()
        },
        "requests_per_second = 2\n",
        "[sync]\nentities = [\"leads\"]\n",
    )
    .await;
    env.run_ok(&["--backfill"]).await;
    common::change_account(&env.sim, 20);
    let runs_before = run_statuses(&env.db().await).await.len();
    let (first, second) = tokio::join!(env.run(&["--once"]), env.run(&["--once"]));
    let mut codes = [first.code, second.code];
    codes.sort_unstable();
    assert_eq!(codes, [Some(0), Some(1)], "{first:#?}\n{second:#?}");
    let refused = if first.code == Some(1) {
        &first
    } else {
        &second
    };
    assert!(
        refused
            .stderr
            .contains("another kommo-sync process is syncing"),
        "{refused:#?}"
    );
    let runs = run_statuses(&env.db().await).await;
    assert_eq!(runs.len(), runs_before + 1, "one run recorded: {runs:?}");
    assert_eq!(runs.last().unwrap().1, "ok");
    env.assert_mirror_equals_account().await;
}

/// SIGKILL at a random instant of a backfill, five times over (each start
/// resumes the pass the last one left): after every kill each mirrored lead
/// equals the account's, and the last backfill, let finish, leaves the
/// mirror exact without starting over.
async fn a_backfill_killed_at_random_pages_again_and_again_resumes_to_an_exact_mirror() {
    let env = TestEnv::start_with(
        SimulatorConfig {
            leads: 2_000,
            tie_block: 300,
            ..SimulatorConfig::default()
        },
        // 40 pages of 50 at 10 requests a second: a backfill of ~5 s.
        "requests_per_second = 10\npage_size = 50\n",
        "[sync]\nentities = [\"leads\"]\n",
    )
    .await;
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let account: std::collections::HashMap<i64, serde_json::Value> = env
        .sim
        .alive_leads()
        .into_iter()
        .map(|l| (l["id"].as_i64().unwrap(), l))
        .collect();
    let mut mirrored = Vec::new();
    for kill in 0..5 {
        let mut child = env
            .command(&["--backfill"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(rng.u64(300..2_500))).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        let rows = mirror_rows(&env.db().await, "TRUE").await;
        for row in &rows {
            let lead = account.get(&row.id).unwrap_or_else(|| {
                panic!(
                    "seed {seed}, kill {kill}: lead {} is no lead of the account",
                    row.id
                )
            });
            common::assert_row_equals_lead(row, lead);
        }
        mirrored.push(rows.len());
    }
    let before_last = *mirrored.last().unwrap() as i64;
    env.sim.reset_stats();
    env.run_ok(&["--backfill"]).await;
    env.assert_mirror_equals_account().await;
    let upserted: i64 =
        sqlx::query_scalar("SELECT leads_upserted FROM sync_runs ORDER BY id DESC LIMIT 1")
            .fetch_one(&env.db().await)
            .await
            .unwrap();
    assert!(
        before_last < 1_000 || upserted < 2_000,
        "seed {seed}: the last backfill read {upserted} leads again after the kills left {mirrored:?}: it started over"
    );
}

on_each_backend!(
    a_backfill_killed_at_random_pages_again_and_again_resumes_to_an_exact_mirror,
    two_syncs_at_once_one_runs_and_the_other_is_refused_writing_nothing,
    resumes_backfill_after_kill,
    sigterm_stops_a_backfill_after_the_page_in_flight,
    resumes_every_window_of_a_parallel_backfill_after_kill,
    a_lead_restored_by_once_during_an_unfinished_pass_is_not_taken_for_deleted,
    a_pass_killed_after_its_last_window_finishes_without_a_request,
);
